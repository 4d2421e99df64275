#!/usr/bin/env bash
# DNS over HTTPS (RFC 8484) with clients nobody here wrote: kdig +https (POST and GET) and curl
# (--doh-url resolving a name, and plain requests for each error status); then what a hostile
# client does, with a bare HTTP/2 client written frame by frame (tests/integration/h2raw.py,
# Python's standard library only): more streams than the cap, 10,000 stream resets (RSS
# measured), a header block that never ends, answers it never lets out, a handshake it never
# finishes, more connections than its address may have, an address the access list drops.
# Certificates are made here, with a throwaway CA. Real NSD, kdig, curl.
# The checks share the instance "doh" (its counters only grow: each check compares before and
# after) except those that start their own.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
. "$srcdir/tests/integration/lib.sh"

need_all
need openssl openssl
need curl curl
PY=/usr/bin/python3 # Debian's: its ssl module carries the hand-made clients.
export PYTHONPATH="$srcdir/tests/integration"

# ---- Certificates ------------------------------------------------------------------------------

TLS=$WORK/tls
test_ca "$TLS"
test_cert "$TLS" server "DNS:dns.test,IP:127.0.0.1" dns.test
CERT=(--tls-cert "$TLS/server.chain" --tls-key "$TLS/server.key")

NSD=$(free_port)
start_nsd "$NSD"
NOREDIS="redis://127.0.0.1:$(free_port)"

# fat.test: 20 TXT records of 251 octets, a 5 KB answer, from --local-data.
FAT=()
pad=$(printf 'x%.0s' $(seq 1 250))
for i in $(seq 10 29); do FAT+=(--local-data "fat.test TXT \"$i$pad\""); done

EP=$(free_port)
HP=$(free_port)
MP=$(free_port)
start_embargo doh "$EP" --listen-https "127.0.0.1:$HP" "${CERT[@]}" --upstream "127.0.0.1:$NSD" \
	--redis "$NOREDIS" --metrics "127.0.0.1:$MP" --query-log "$WORK/doh.qlog" --threads 1 \
	--tcp-max-queued 65540 "${FAT[@]}"
URL="https://127.0.0.1:$HP/dns-query"

# hq ARGS...: kdig over HTTPS, verifying the certificate against the test CA and dns.test.
hq() {
	kdig @127.0.0.1 -p "$HP" +https +tls-ca="$TLS/ca.pem" +tls-hostname=dns.test +timeout=3 \
		+retry=0 "$@"
}
# metric NAME [PORT]: its value on the instance "doh" (or the one whose metrics are on PORT).
metric() {
	curl -s "http://127.0.0.1:${2:-$MP}/metrics" | awk -v m="$1" '$1 == m {print $2}'
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# grew_less BEFORE AFTER KB: RSS grew by less than KB. Sanitizer builds keep freed memory in
# quarantine: there the RSS says nothing and is not checked (a use of freed memory aborts).
grew_less() {
	if grep -qE '^SAN_CFLAGS = .' "$(dirname "$EMBARGO")/../Makefile" 2>/dev/null; then
		echo "(sanitizer build: RSS not checked)"
		return 0
	fi
	[ $(($2 - $1)) -lt "$3" ]
}
# b64q NAME TYPE ID: the query for NAME TYPE with ID in base64url without padding.
b64q() {
	"$PY" - "$@" <<'PY'
import base64, struct, sys
name, qtype, qid = sys.argv[1], {"A": 1, "TXT": 16, "AAAA": 28}[sys.argv[2]], int(sys.argv[3], 0)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
for label in name.split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\x00" + struct.pack(">HH", qtype, 1)
print(base64.urlsafe_b64encode(q).decode().rstrip("="))
PY
}
# code ARGS...: the HTTP status curl gets.
code() { curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS/ca.pem" "$@"; }

# ---- Answers -----------------------------------------------------------------------------------

denied_over_https() {
	local out
	out=$(hq kaspersky.com A +edns) || { echo "$out"; return 1; }
	echo "$out"
	grep -q "HTTP session (HTTP/2-POST)-(dns.test/dns-query)-(status: 200)" <<<"$out" &&
		grep -q "status: NXDOMAIN" <<<"$out" &&
		grep -q "EDE: 16 (Censored): 'US Commerce" <<<"$out" &&
		grep -q "embargo.invalid" <<<"$out"
}
check "a listed name over DoH (kdig, POST): NXDOMAIN, EDE 16 with its reason, the policy's SOA" \
	denied_over_https

get_over_https() {
	local out
	out=$(hq +https-get www.test A) || { echo "$out"; return 1; }
	echo "$out"
	grep -q "HTTP session (HTTP/2-GET)" <<<"$out" && grep -q "status: NOERROR" <<<"$out" &&
		grep -q "192.0.2.1" <<<"$out" || return 1
	out=$(hq +https-get kaspersky.ru AAAA +edns)
	grep -q "status: NXDOMAIN" <<<"$out" && grep -q "EDE: 16" <<<"$out" || { echo "$out"; return 1; }
	# The query log and the metrics name the transport.
	wait_for 5 grep -q '"qname":"www.test.".*"transport":"doh"' "$WORK/doh.qlog" || {
		tail -3 "$WORK/doh.qlog"; return 1; }
	[ "$(metric 'embargo_queries_total{transport="doh"}')" -ge 3 ]
}
check "kdig +https-get: a name from the upstream and a listed one; query log and metrics say doh" \
	get_over_https

curl_resolves() {
	# curl asks embargo for ns.test (127.0.0.1, from NSD), then fetches embargo's metrics by
	# that name: the fetch works only if the DoH answer did.
	local out
	out=$(curl -sS -v --max-time 5 --cacert "$TLS/ca.pem" --doh-url "$URL" \
		"http://ns.test:$MP/metrics" 2>&1) || { echo "$out" | tail -20; return 1; }
	grep -q "embargo_queries_total" <<<"$out" && grep -q "Connected to ns.test (127.0.0.1)" <<<"$out" ||
		{ echo "$out" | tail -20; return 1; }
	# A listed name does not resolve.
	out=$(curl -sS -v --max-time 5 --cacert "$TLS/ca.pem" --doh-url "$URL" \
		"http://usa.kaspersky.com:$MP/" 2>&1) && { echo "resolved: $out"; return 1; }
	# curl says NXDOMAIN as a bad RCODE, and gives up (6: could not resolve).
	grep -q "DoH: Bad RCODE type A for usa.kaspersky.com" <<<"$out" && grep -q "^curl: (6)" <<<"$out" ||
		{ echo "$out"; return 1; }
}
check "curl --doh-url resolves a name through embargo, and not a listed one" curl_resolves

dnsperf_doh() {
	need_or_skip dnsperf dnsperf "dnsperf -m doh" || return 0
	# One question in flight per connection: Debian's dnsperf 2.10 keeps one answer buffer per
	# connection, so answers that arrive in one TLS record (embargo sends the answers of a
	# batch together) overwrite each other there; with several in flight see h2load below.
	printf 'www.test A\nkaspersky.com A\nbig.test TXT\n' >"$WORK/perf.txt"
	local out
	out=$(dnsperf -m doh -s 127.0.0.1 -p "$HP" -d "$WORK/perf.txt" -l 2 -c 2 -q 1 2>&1)
	echo "$out" | grep -E "Queries (sent|completed|lost)|return codes"
	# dnsperf's DoH client paces itself (about 130 a second here, 33 under the sanitizers
	# with the suite running): every question answered is the check, not a rate.
	grep -qE "Queries lost: +0 " <<<"$out" &&
		[ "$(awk '/Queries completed:/ {print $3}' <<<"$out")" -ge 10 ]
}
check "dnsperf -m doh: every query answered" dnsperf_doh

h2load_pipelined() {
	need_or_skip h2load nghttp2-client "h2load over DoH" || return 0
	# 2 connections with 32 streams each in flight, GET of three questions in turn: every
	# request gets 200 and its answer (h2load counts the bytes of each response body).
	local out
	printf '%s\n' "$URL?dns=$(b64q www.test A 0)" "$URL?dns=$(b64q kaspersky.com A 0)" \
		"$URL?dns=$(b64q big.test TXT 0)" >"$WORK/h2load.urls"
	out=$(h2load -i "$WORK/h2load.urls" -n 3000 -c 2 -m 32 2>&1)
	grep -E "^(requests|status codes|traffic)" <<<"$out"
	grep -q "^requests: 3000 total, 3000 started, 3000 done, 3000 succeeded" <<<"$out" &&
		grep -q "^status codes: 3000 2xx" <<<"$out"
}
check "h2load, 64 streams in flight over 2 connections: 3,000 requests, 3,000 answers" \
	h2load_pipelined

headers_and_ids() {
	# The ID the client sent comes back (0 as RFC 8484 4.1 asks, or any other), and the
	# answer may be kept as long as its smallest TTL.
	local q0 q1 hdr id age
	q0=$(b64q www.test A 0)
	q1=$(b64q www.test A 0x4a5b)
	hdr=$(curl -s -D - -o "$WORK/a0" --cacert "$TLS/ca.pem" "$URL?dns=$q0") || return 1
	echo "$hdr"
	grep -qi "^content-type: application/dns-message" <<<"$hdr" || return 1
	age=$(sed -n 's/^cache-control: max-age=\([0-9]*\).*/\1/ip' <<<"$hdr")
	echo "max-age $age"
	[ -n "$age" ] && [ "$age" -gt 0 ] && [ "$age" -le 300 ] || return 1
	id=$(od -An -tx1 -N2 "$WORK/a0" | tr -d ' ')
	[ "$id" = 0000 ] || { echo "ID $id"; return 1; }
	curl -s -o "$WORK/a1" --cacert "$TLS/ca.pem" "$URL?dns=$q1" || return 1
	id=$(od -An -tx1 -N2 "$WORK/a1" | tr -d ' ')
	[ "$id" = 4a5b ] || { echo "ID $id"; return 1; }
	# A denied answer lives as long as its SOA says (--block-ttl 60).
	hdr=$(curl -s -D - -o /dev/null --cacert "$TLS/ca.pem" "$URL?dns=$(b64q kaspersky.com A 0)")
	grep -qi "^cache-control: max-age=60" <<<"$hdr" || { echo "$hdr"; return 1; }
}
check "cache-control max-age is the answer's smallest TTL; the client's ID comes back" headers_and_ids

error_statuses() {
	local - q before after s
	set -f # The URLs hold '?' and '*'.
	q=$(b64q www.test A 0)
	printf '\x00\x00\x01\x00\x00\x01' >"$WORK/short.bin"
	head -c 70000 /dev/zero >"$WORK/big.bin"
	curl -s -o "$WORK/q.bin" --cacert "$TLS/ca.pem" "$URL?dns=$q" # any body, for the 415
	before=$(curl -s "http://127.0.0.1:$MP/metrics" | grep '^embargo_https_responses_total')
	local -a want=(
		"400 $URL?dns=not*base64"
		"400 $URL?ct=application/dns-message"
		"400 $URL?dns=AAAA"
		"400 -H content-type:application/dns-message --data-binary @$WORK/short.bin $URL"
		"404 https://127.0.0.1:$HP/other?dns=$q"
		"405 -X PUT $URL?dns=$q"
		"413 -H content-type:application/dns-message --data-binary @$WORK/big.bin $URL"
		"413 -H content-type:application/dns-message -H transfer-encoding:chunked --data-binary @$WORK/big.bin $URL"
		"415 -H content-type:text/plain --data-binary @$WORK/q.bin $URL"
	)
	for w in "${want[@]}"; do
		# shellcheck disable=SC2086 # the words are the arguments
		s=$(code ${w#* })
		echo "$s (want ${w%% *}): ${w#* }"
		[ "$s" = "${w%% *}" ] || return 1
	done
	after=$(curl -s "http://127.0.0.1:$MP/metrics" | grep '^embargo_https_responses_total')
	echo "$after"
	for s in 400:4 404:1 405:1 413:2 415:1; do
		local b a
		b=$(awk -v m="embargo_https_responses_total{status=\"${s%:*}\"}" '$1 == m {print $2}' <<<"$before")
		a=$(awk -v m="embargo_https_responses_total{status=\"${s%:*}\"}" '$1 == m {print $2}' <<<"$after")
		[ "$a" -eq $((b + ${s#*:})) ] || { echo "status ${s%:*}: $b -> $a"; return 1; }
	done
	# HTTP/1.1 is not spoken: a client that offers it alone in ALPN gets the TLS alert for that
	# (RFC 7301), one that offers nothing and speaks it anyway a 505.
	local out
	out=$(curl -sS --http1.1 --cacert "$TLS/ca.pem" "$URL?dns=$q" 2>&1) && { echo "$out"; return 1; }
	echo "curl --http1.1: $out"
	grep -q "no application protocol" <<<"$out" || return 1
	"$PY" - "$HP" "$TLS/ca.pem" <<'PY'
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5),
                    server_hostname="dns.test")
s.sendall(b"GET /dns-query?dns=AAAA HTTP/1.1\r\nHost: dns.test\r\n\r\n")
reply = b""
while chunk := s.recv(4096):
    reply += chunk
print(reply.decode(errors="replace").splitlines()[0])
sys.exit(0 if reply.startswith(b"HTTP/1.1 505 ") else 1)
PY
}
check "400 (bad base64, no dns, no DNS message), 404, 405, 413 (with and without length), 415; HTTP/1.1 refused" \
	error_statuses

ddr_names_doh() {
	# DDR (RFC 9462) designates the DoH listener: ALPN h2 and the path's template (RFC 9461;
	# kdig 3.2 prints dohpath as key7).
	local out
	out=$(q "$EP" @127.0.0.1 _dns.resolver.arpa SVCB +short)
	echo "$out"
	[ "$out" = "1 dns.test. alpn=h2 port=$HP ipv4hint=127.0.0.1 key7=\"/dns-query{?dns}\"" ]
}
check "_dns.resolver.arpa SVCB names the DoH listener (alpn h2, dohpath)" ddr_names_doh

# ---- Limits -----------------------------------------------------------------------------------

stream_cap() {
	local before
	before=$(metric embargo_https_streams_refused_total)
	"$PY" - "$HP" "$TLS/ca.pem" <<'PY' || return 1
import sys
from h2raw import *
port, ca = int(sys.argv[1]), sys.argv[2]
s = connect(port, ca)
# 101 POST requests whose bodies never come, each holding a stream: the last is refused.
post = request(b"/dns-query", b"POST", [(b"content-type", b"application/dns-message")])
s.sendall(b"".join(frame(HEADERS, END_HEADERS, 2 * i + 1, post) for i in range(101)))
reset = {}
s.settimeout(3)
try:
    for f in frames(s):
        if f is None:
            sys.exit("closed")
        if f[0] == RST_STREAM:
            reset[f[2]] = int.from_bytes(f[3], "big")
except TimeoutError:
    pass
print("reset:", reset)
# The 101st (stream 201) refused, the 100 before it open; and one more after it is refused too.
if reset != {201: REFUSED_STREAM}:
    sys.exit(1)
s.sendall(frame(HEADERS, END_HEADERS, 203, post))
for f in frames(s):
    if f and f[0] == RST_STREAM and f[2] == 203:
        break
    if f is None:
        sys.exit("closed")
PY
	echo "refused: $before -> $(metric embargo_https_streams_refused_total)"
	[ "$(metric embargo_https_streams_refused_total)" -eq $((before + 2)) ]
}
check "streams over the cap of 100 are refused (REFUSED_STREAM), and counted" stream_cap

reset_flood() {
	local pid=$PID_doh rss0 rss1 before
	before=$(metric embargo_https_reset_floods_total)
	hq www.test A >/dev/null # In the cache: every request is answerable at once.
	rss0=$(rss "$pid")
	"$PY" - "$HP" "$TLS/ca.pem" <<'PY' || return 1
import sys, time
from h2raw import *
port, ca = int(sys.argv[1]), sys.argv[2]
path = b"/dns-query?dns=AAABAAABAAAAAAAAA3d3dwR0ZXN0AAABAAE"  # www.test A, ID 0
pair = lambda i: get(i, path) + frame(RST_STREAM, 0, i, CANCEL.to_bytes(4, "big"))
# 100 connections, each with 100 requests reset at once (the cap is 100 a second): 10,000
# resets, and each connection still answers after them.
t0 = time.monotonic()
for c in range(100):
    s = connect(port, ca)
    s.sendall(b"".join(pair(2 * i + 1) for i in range(100)) + get(201, path))
    for f in frames(s):
        if f is None:
            sys.exit(f"connection {c} closed after 100 resets")
        if f[0] == HEADERS and f[2] == 201:
            if not is_200(f[3]):
                sys.exit(f"connection {c}: not 200")
            break
    s.close()
print(f"10,000 resets on 100 connections in {time.monotonic() - t0:.1f} s")
# One connection with 10,000 at once: closed after the 101st.
s = connect(port, ca)
try:
    s.sendall(b"".join(pair(2 * i + 1) for i in range(10000)))
except OSError:
    pass
t0 = time.monotonic()
s.settimeout(5)
try:
    for f in frames(s):
        if f is None:
            break
except TimeoutError:
    sys.exit("still open after 10,000 resets")
print(f"10,000 resets on one connection: closed in {time.monotonic() - t0:.2f} s")
PY
	rss1=$(rss "$pid")
	echo "RSS $rss0 kB -> $rss1 kB; reset floods $before -> $(metric embargo_https_reset_floods_total)"
	[ "$(metric embargo_https_reset_floods_total)" -eq $((before + 1)) ] &&
		grew_less "$rss0" "$rss1" 2048
}
check "10,000 stream resets hold no memory (RSS grows < 2 MiB); over 100 a second the connection closes" \
	reset_flood

header_flood() {
	local before
	before=$(metric embargo_https_header_floods_total)
	"$PY" - "$HP" "$TLS/ca.pem" <<'PY' || return 1
import sys
from h2raw import *
port, ca = int(sys.argv[1]), sys.argv[2]
s = connect(port, ca)
# A header block that never ends: HEADERS, then CONTINUATION frames of 4 KB, none the last.
s.sendall(frame(HEADERS, 0, 1, request(b"/dns-query?dns=AAAA")))
pad = literal(b"x-pad", b"y" * 4000)
s.settimeout(5)
sent = 0
try:
    for _ in range(1000):
        s.sendall(frame(CONTINUATION, 0, 1, pad))
        sent += 1
except OSError:
    pass
try:
    for f in frames(s):
        if f is None:
            break
except TimeoutError:
    sys.exit("still open")
print(f"closed after {sent} CONTINUATION frames were sent")
PY
	echo "header floods: $before -> $(metric embargo_https_header_floods_total)"
	[ "$(metric embargo_https_header_floods_total)" -eq $((before + 1)) ]
}
check "a header block over 16 KiB (a CONTINUATION flood) closes the connection" header_flood

window_never_opens() {
	# 100 questions for a 5 KB answer, and a window of 0: what the streams hold counts as
	# queued, so requests are taken only while it is under --tcp-max-queued (64 KiB here): at
	# most 14 of the 100 are answered (held), the rest wait (so it is not closed at once for
	# holding four times the bound), and with nothing taken the connection is closed by the
	# idle deadline (10 s; the client waits 15).
	local before pid=$PID_doh rss0 rss1
	before=$(metric embargo_tcp_timeouts_total)
	hq fat.test TXT >/dev/null
	rss0=$(rss "$pid")
	"$PY" - "$HP" "$TLS/ca.pem" <<'PY' || return 1
import sys
from h2raw import *
port, ca = int(sys.argv[1]), sys.argv[2]
s = connect(port, ca, first=settings(window=0))
path = b"/dns-query?dns=AAABAAABAAAAAAAAA2ZhdAR0ZXN0AAAQAAE"  # fat.test TXT
import time
t0 = time.monotonic()
s.sendall(b"".join(get(2 * i + 1, path) for i in range(100)))
s.settimeout(15)
try:
    for f in frames(s):
        if f is None:
            break
except TimeoutError:
    sys.exit("still open")
took = time.monotonic() - t0
print(f"closed after {took:.1f} s")
sys.exit(0 if took >= 8 else 1)
PY
	rss1=$(rss "$pid")
	echo "RSS $rss0 kB -> $rss1 kB; cut $before -> $(metric embargo_tcp_timeouts_total)"
	[ "$(metric embargo_tcp_timeouts_total)" -ge $((before + 1)) ] && grew_less "$rss0" "$rss1" 8192
}
check "answers a client never lets out (window 0) count as queued: requests wait at the bound, idle close" \
	window_never_opens

shed() {
	# Two such clients on a worker whose answers may hold 64 KiB in all: one is shed.
	local sp hp mp
	sp=$(free_port)
	hp=$(free_port)
	mp=$(free_port)
	start_embargo shed "$sp" --listen-https "127.0.0.1:$hp" "${CERT[@]}" --threads 1 \
		--upstream "127.0.0.1:$NSD" --redis "$NOREDIS" --metrics "127.0.0.1:$mp" \
		--tcp-max-queued-total 65540 "${FAT[@]}"
	"$PY" - "$hp" "$TLS/ca.pem" <<'PY' || return 1
import sys, time
from h2raw import *
port, ca = int(sys.argv[1]), sys.argv[2]
path = b"/dns-query?dns=AAABAAABAAAAAAAAA2ZhdAR0ZXN0AAAQAAE"  # fat.test TXT
conns = []
for c in range(2):
    s = connect(port, ca, first=settings(window=0))
    s.sendall(b"".join(get(2 * i + 1, path) for i in range(10)))
    conns.append(s)
    time.sleep(0.3)
closed = 0
for s in conns:
    s.settimeout(1)
    try:
        for f in frames(s):
            if f is None:
                closed += 1
                break
    except TimeoutError:
        pass
print(f"{closed} of 2 closed")
sys.exit(0 if closed >= 1 else 1)
PY
	echo "shed: $(metric embargo_tcp_shed_total "$mp")"
	[ "$(metric embargo_tcp_shed_total "$mp")" -ge 1 ]
}
check "answers held for DoH clients count toward --tcp-max-queued-total: the largest is shed" shed

tcp_limits_apply() {
	# What tcp.c applies before a handshake holds for DoH: the access list (127.0.0.2 is
	# dropped), the per-address cap (2 here), and the handshake deadline (1 s).
	local lp hp
	lp=$(free_port)
	hp=$(free_port)
	start_embargo limits "$lp" --listen-https "127.0.0.1:$hp" "${CERT[@]}" \
		--upstream "127.0.0.1:$NSD" --redis "$NOREDIS" --threads 1 --tcp-per-addr 2 \
		--tls-handshake-timeout 1000 --tcp-idle-timeout 20000 --deny 127.0.0.2/32
	"$PY" - "$hp" "$TLS/ca.pem" <<'PY'
import socket, sys, time
from h2raw import *
port, ca = int(sys.argv[1]), sys.argv[2]
def closed_within(s, limit):
    s.settimeout(limit)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
# The access list: closed unread.
denied = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
if not closed_within(denied, 1):
    sys.exit("a dropped address was kept")
# Two silent connections fill the address's cap: a third is closed at once.
t0 = time.monotonic()
silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
time.sleep(0.2)
third = socket.create_connection(("127.0.0.1", port))
if not closed_within(third, 0.5):
    sys.exit("a third connection from one address was kept")
# The silent ones never said hello: closed at the handshake deadline, not the idle one.
for s in silent:
    if not closed_within(s, 5):
        sys.exit("a silent connection was kept")
took = time.monotonic() - t0
print(f"silent connections closed after {took:.2f} s")
if not 0.8 <= took <= 3.5:
    sys.exit(1)
# And with room again, a client is served.
s = connect(port, ca)
s.sendall(get(1, b"/dns-query?dns=AAABAAABAAAAAAAAA3d3dwR0ZXN0AAABAAE"))
for f in frames(s):
    if f is None or (f[0] == HEADERS and f[2] == 1):
        sys.exit(0 if f and is_200(f[3]) else "not answered")
PY
}
check "the access list, the per-address cap and the handshake deadline apply to DoH" tcp_limits_apply

finish
