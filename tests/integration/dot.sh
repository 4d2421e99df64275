#!/usr/bin/env bash
# DNS over TLS (RFC 7858) with clients nobody here wrote: kdig +tls, openssl s_client, Unbound
# forwarding over TLS, dnsperf -m dot. The same policy and answers as port 53; the certificate
# read again on SIGHUP (a bad pair keeps the running one); session resumption; and the limits a
# hostile client meets: a handshake that never finishes, a flood of handshakes from one network
# (clients from elsewhere: a network namespace), the access list before the handshake, a client
# that never reads. Certificates are made here, with a throwaway CA. Real NSD, kdig, openssl.
# The checks share the instance "dot" (its counters only grow: each check compares before and
# after) except reload, handshake_timeout and slow_reader, which start their own; the namespace
# checks share the instance "outside".
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
. "$srcdir/tests/integration/lib.sh"

need_all
need openssl openssl
SCALE=${TIME_SCALE:-1}
PY=/usr/bin/python3 # Debian's: its ssl module is the client of the hand-made checks.

# ---- Certificates ------------------------------------------------------------------------------

TLS=$WORK/tls
test_ca "$TLS"
test_cert "$TLS" one "DNS:dns.test,IP:127.0.0.1" "dns.test one"
test_cert "$TLS" two "DNS:dns.test,IP:127.0.0.1" "dns.test two"

NSD=$(free_port)
start_nsd "$NSD"
NOREDIS="redis://127.0.0.1:$(free_port)"

EP=$(free_port)
TP=$(free_port)
MP=$(free_port)
start_embargo dot "$EP" --listen-tls "127.0.0.1:$TP" --tls-cert "$TLS/one.chain" \
	--tls-key "$TLS/one.key" --upstream "127.0.0.1:$NSD" --redis "$NOREDIS" \
	--metrics "127.0.0.1:$MP" --query-log "$WORK/dot.qlog"

# tq PORT ARGS...: kdig over TLS, verifying the certificate against the test CA and dns.test.
tq() {
	local port=$1
	shift
	kdig @127.0.0.1 -p "$port" +tls-ca="$TLS/ca.pem" +tls-hostname=dns.test +timeout=3 +retry=0 "$@"
}
# metric NAME: its value on the instance "dot".
metric() {
	curl -s "http://127.0.0.1:$MP/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

# ---- Answers -----------------------------------------------------------------------------------

denied_over_tls() {
	local out
	out=$(tq "$TP" kaspersky.com A +edns) || { echo "$out"; return 1; }
	echo "$out"
	grep -q "TLS session (TLS1.3)" <<<"$out" && grep -q "status: NXDOMAIN" <<<"$out" &&
		grep -q "EDE: 16 (Censored): 'US Commerce" <<<"$out" &&
		grep -q "embargo.invalid" <<<"$out"
}
check "a listed name over DoT: NXDOMAIN, EDE 16 with its reason, the policy's SOA" denied_over_tls

forwarded_over_tls() {
	local out
	out=$(tq "$TP" www.test A) || { echo "$out"; return 1; }
	grep -q "status: NOERROR" <<<"$out" && grep -q "192.0.2.1" <<<"$out" || { echo "$out"; return 1; }
	# The query log and the metrics name the transport.
	wait_for 5 grep -q '"qname":"www.test.".*"transport":"dot"' "$WORK/dot.qlog" || {
		tail -3 "$WORK/dot.qlog"; return 1; }
	[ "$(metric 'embargo_queries_total{transport="dot"}')" -ge 2 ]
}
check "a name from the upstream over DoT; the query log and metrics say transport dot" forwarded_over_tls

pipelined() {
	# One connection, several questions in a row (kdig +keepopen), answered on it.
	local out before after
	before=$(metric embargo_tls_handshakes_total)
	out=$(tq "$TP" +keepopen www.test A kaspersky.ru AAAA big.test TXT) || { echo "$out"; return 1; }
	[ "$(grep -c 'status: ' <<<"$out")" -eq 3 ] && grep -q "status: NXDOMAIN" <<<"$out" &&
		grep -q '"0123456789' <<<"$out" || { echo "$out"; return 1; }
	after=$(metric embargo_tls_handshakes_total)
	echo "handshakes: $before -> $after"
	[ "$after" -eq $((before + 1)) ]
}
check "three questions on one DoT connection, one handshake" pipelined

tls12_and_alpn() {
	local out
	out=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$TP" -alpn dot -tls1_2 \
		-CAfile "$TLS/ca.pem" -verify_hostname dns.test 2>&1)
	grep -q "Protocol *: TLSv1.2" <<<"$out" && grep -q "ALPN protocol: dot" <<<"$out" &&
		grep -q "Verify return code: 0 (ok)" <<<"$out" || { echo "$out"; return 1; }
	# TLS 1.1 and older are refused.
	out=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$TP" -tls1_1 2>&1)
	grep -q "Cipher is (NONE)" <<<"$out" || { echo "$out"; return 1; }
	# A client that offers only another protocol (h2: a web client) is refused with the
	# no_application_protocol alert (RFC 7301), not served DNS.
	out=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$TP" -alpn h2 2>&1)
	grep -q "Cipher is (NONE)" <<<"$out" && grep -q "no application protocol" <<<"$out" ||
		{ echo "$out"; return 1; }
}
check "TLS 1.2 with ALPN dot and a verified chain; TLS 1.1 refused; ALPN h2 only refused with its alert" \
	tls12_and_alpn

resumed() {
	local before after out
	before=$(metric embargo_tls_resumed_total)
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$TP" -tls1_2 -CAfile "$TLS/ca.pem" \
		-sess_out "$WORK/sess.pem" >/dev/null 2>&1
	out=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$TP" -tls1_2 \
		-CAfile "$TLS/ca.pem" -sess_in "$WORK/sess.pem" 2>&1)
	grep -q "^Reused" <<<"$out" || { grep -E "^(New|Reused)" <<<"$out"; return 1; }
	after=$(metric embargo_tls_resumed_total)
	echo "resumed: $before -> $after"
	[ "$after" -eq $((before + 1)) ]
}
check "a session ticket resumes a session (counted)" resumed

unbound_forwards_over_tls() {
	need_or_skip unbound unbound "Unbound as a DoT client" || return 0
	local up=$((0)) out
	up=$(free_port)
	cat >"$WORK/unbound.conf" <<EOF
server:
	interface: 127.0.0.1@$up
	port: $up
	do-daemonize: no
	use-syslog: no
	logfile: "$WORK/unbound.log"
	chroot: ""
	username: ""
	directory: "$WORK"
	pidfile: ""
	do-not-query-localhost: no
	tls-cert-bundle: "$TLS/ca.pem"
	module-config: "iterator"
	qname-minimisation: no
	local-zone: "test." nodefault
forward-zone:
	name: "."
	forward-tls-upstream: yes
	forward-addr: 127.0.0.1@$TP#dns.test
EOF
	unbound -c "$WORK/unbound.conf" >"$WORK/unbound.out" 2>&1 &
	PIDS+=($!)
	wait_for 10 eval "ss -Hlnu | grep -q '127.0.0.1:$up '" || { cat "$WORK/unbound.out"; return 1; }
	out=$(q "$up" @127.0.0.1 kaspersky.com A)
	grep -q "status: NXDOMAIN" <<<"$out" || { echo "$out"; return 1; }
	out=$(q "$up" @127.0.0.1 later.test A)
	grep -q "192.0.2.81" <<<"$out" || { echo "$out"; return 1; }
	# It came to embargo over TLS.
	wait_for 5 grep -q '"qname":"later.test.".*"transport":"dot"' "$WORK/dot.qlog"
}
check "Unbound forwarding over TLS to embargo: a listed name denied, another resolved" \
	unbound_forwards_over_tls

dnsperf_dot() {
	need_or_skip dnsperf dnsperf "dnsperf -m dot" || return 0
	printf 'www.test A\nkaspersky.com A\nbig.test TXT\n' >"$WORK/perf.txt"
	local out
	out=$(dnsperf -m dot -s 127.0.0.1 -p "$TP" -d "$WORK/perf.txt" -l 2 -c 4 -Q 500 2>&1)
	echo "$out" | grep -E "Queries (sent|completed|lost)"
	grep -qE "Queries lost: +0 " <<<"$out" &&
		[ "$(awk '/Queries completed:/ {print $3}' <<<"$out")" -ge 200 ]
}
check "dnsperf -m dot: every query answered" dnsperf_dot

# ---- The certificate read again on SIGHUP -------------------------------------------------------

fingerprint() { # PORT: the SHA-256 fingerprint of the certificate a new connection sees
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$1" -servername dns.test 2>/dev/null |
		openssl x509 -noout -fingerprint -sha256 2>/dev/null
}
reload() {
	local rp tp conf out
	rp=$(free_port)
	tp=$(free_port)
	cp "$TLS/one.chain" "$WORK/live.chain"
	cp "$TLS/one.key" "$WORK/live.key"
	conf=$WORK/reload.conf
	printf 'listen-tls 127.0.0.1:%s\ntls-cert %s\ntls-key %s\nupstream 127.0.0.1:%s\nredis %s\n' \
		"$tp" "$WORK/live.chain" "$WORK/live.key" "$NSD" "$NOREDIS" >"$conf"
	start_embargo reload "$rp" --config "$conf"
	local want_one want_two
	want_one=$(openssl x509 -in "$TLS/one.pem" -noout -fingerprint -sha256)
	want_two=$(openssl x509 -in "$TLS/two.pem" -noout -fingerprint -sha256)
	[ "$(fingerprint "$tp")" = "$want_one" ] || { echo "not the first certificate"; return 1; }
	# A renewal: the files change, SIGHUP, and a new connection sees the new certificate.
	cp "$TLS/two.chain" "$WORK/live.chain"
	cp "$TLS/two.key" "$WORK/live.key"
	kill -HUP "$PID_reload"
	wait_for 5 eval '[ "$(fingerprint "$tp")" = "$want_two" ]' ||
		{ echo "still $(fingerprint "$tp")"; tail -3 "$WORK/reload.log"; return 1; }
	# A bad pair (the new certificate with the old key): the running one stays, and says why.
	cp "$TLS/one.key" "$WORK/live.key"
	kill -HUP "$PID_reload"
	wait_for 5 grep -q "the running certificate stays" "$WORK/reload.log" ||
		{ tail -3 "$WORK/reload.log"; return 1; }
	[ "$(fingerprint "$tp")" = "$want_two" ] || { echo "the certificate changed"; return 1; }
	out=$(tq "$tp" kaspersky.com A)
	grep -q "status: NXDOMAIN" <<<"$out" || { echo "$out"; return 1; }
	# A ticket from before a reload still resumes after it.
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$tp" -tls1_2 -sess_out "$WORK/r.sess" \
		>/dev/null 2>&1
	cp "$TLS/two.key" "$WORK/live.key"
	kill -HUP "$PID_reload"
	wait_for 5 eval '[ "$(grep -c "certificate .* read again" "$WORK/reload.log")" -ge 2 ]' ||
		{ tail -3 "$WORK/reload.log"; return 1; }
	out=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$tp" -tls1_2 -sess_in "$WORK/r.sess" 2>&1)
	grep -q "^Reused" <<<"$out" || { echo "a ticket from before the reload: $(grep -E "^(New|Reused)" <<<"$out")"; return 1; }
	# A file without listen-tls: that needs a restart; the rest of the reload is taken, and DoT
	# goes on.
	grep -v '^listen-tls' "$conf" >"$conf.new" && echo "log-level warn" >>"$conf.new" &&
		mv "$conf.new" "$conf"
	kill -HUP "$PID_reload"
	wait_for 5 grep -q "listen-tls needs a restart; kept as it was" "$WORK/reload.log" ||
		{ tail -3 "$WORK/reload.log"; return 1; }
	out=$(tq "$tp" kaspersky.com A)
	grep -q "status: NXDOMAIN" <<<"$out"
}
check "SIGHUP reads the certificate again (tickets go on resuming); a pair that does not match keeps the running one; listen-tls left out is kept" \
	reload

# ---- Limits -----------------------------------------------------------------------------------

# handshake_timeout NAME HANDSHAKE_MS IDLE_MS LOW HIGH: a client that connects and never says
# hello, and one that stops half way through, are closed between LOW and HIGH seconds.
handshake_timeout() {
	local hp tp
	hp=$(free_port)
	tp=$(free_port)
	start_embargo "$1" "$hp" --listen-tls "127.0.0.1:$tp" --tls-cert "$TLS/one.chain" \
		--tls-key "$TLS/one.key" --upstream "127.0.0.1:$NSD" --redis "$NOREDIS" \
		--tls-handshake-timeout "$2" --tcp-idle-timeout "$3"
	"$PY" - "$tp" "$4" "$5" <<'PY'
import socket, sys, time
port, low, high = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
silent = socket.create_connection(("127.0.0.1", port))
half = socket.create_connection(("127.0.0.1", port))
half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
t0 = time.monotonic()
for s in (silent, half):
    s.settimeout(10)
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    took = time.monotonic() - t0
    print(f"closed after {took:.2f} s, {len(data)} octets")
    if data or not low <= took <= high:
        sys.exit(1)
PY
}
check "a TLS handshake not done within --tls-handshake-timeout is closed (the idle limit is 20 s)" \
	handshake_timeout hs 1000 20000 0.8 3.5
check "an idle limit shorter than --tls-handshake-timeout does not cut a handshake short" \
	handshake_timeout hs2 2500 500 2.2 5

slow_reader() {
	local sp tp pid rss0 rss1
	sp=$(free_port)
	tp=$(free_port)
	start_embargo slow "$sp" --listen-tls "127.0.0.1:$tp" --tls-cert "$TLS/one.chain" \
		--tls-key "$TLS/one.key" --upstream "127.0.0.1:$NSD" --redis "$NOREDIS" --threads 1 \
		--tcp-max-queued 65540
	pid=$PID_slow
	q "$sp" @127.0.0.1 big.test TXT >/dev/null # In the cache: every answer is immediate.
	rss0=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
	# Up to 400,000 questions for a 900-octet answer (360 MB of answers), and never a read:
	# embargo must stop reading (the client's sends then stall) and hold little meanwhile.
	"$PY" - "$tp" "$TLS/ca.pem" <<'PY'
import socket, ssl, struct, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="dns.test")
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
q = bytes.fromhex("1234010000010000000000000362696704746573740000100001")
msg = struct.pack(">H", len(q)) + q
s.settimeout(3)
sent = 0
try:
    for _ in range(400000):
        s.sendall(msg)
        sent += 1
except (socket.timeout, OSError):
    pass
print(f"sent {sent} of 400000 questions before embargo stopped reading")
time.sleep(1)
sys.exit(0 if sent < 400000 else 1)
PY
	[ $? -eq 0 ] || return 1
	rss1=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
	echo "RSS $rss0 kB -> $rss1 kB"
	if grep -qE '^SAN_CFLAGS = .' "$(dirname "$EMBARGO")/../Makefile" 2>/dev/null; then
		echo "(sanitizer build: freed memory stays in quarantine, the RSS is not checked)"
	else
		[ $((rss1 - rss0)) -lt 16384 ]
	fi
}
check "a DoT client that never reads: embargo stops reading from it (RSS grows < 16 MiB)" \
	slow_reader

# ---- Clients from elsewhere: a network namespace ----------------------------------------------

NS="embargo-dot$$"
A0=$(free_subnet) # refused
A1=$(free_subnet) # allowed: the flood
A2=$(free_subnet) # allowed: another network
netns_up() {
	[ "$(id -u)" -eq 0 ] || return 1
	ip netns add "$NS" || return 1
	ip link add "vd$$h" type veth peer name "vd$$c" netns "$NS" || return 1
	ip addr add $A0.1/24 dev "vd$$h"
	ip addr add $A1.1/24 dev "vd$$h"
	ip addr add $A2.1/24 dev "vd$$h"
	ip link set "vd$$h" up
	ip -n "$NS" addr add $A0.2/24 dev "vd$$c"
	ip -n "$NS" addr add $A1.2/24 dev "vd$$c"
	ip -n "$NS" addr add $A2.2/24 dev "vd$$c"
	ip -n "$NS" link set "vd$$c" up
	ip -n "$NS" link set lo up
}
netns_down() {
	ip link del "vd$$h" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	return 0
}
trap 'netns_down; cleanup' EXIT

# handshakes SOURCE N: N TLS handshakes to the "outside" instance from SOURCE, in the namespace;
# prints how many completed and the whole seconds they took (rounded up), then keeps them open for
# 3 s (each holds a connection slot meanwhile).
handshakes() {
	ip netns exec "$NS" "$PY" - "$A1.1" "$OTP" "$1" "$2" "$TLS/ca.pem" <<'PY'
import math, socket, ssl, sys, time
host, port, src, n, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
done = 0
held = []
t0 = time.monotonic()
for _ in range(n):
    try:
        raw = socket.create_connection((host, port), timeout=3, source_address=(src, 0))
        held.append(ctx.wrap_socket(raw, server_hostname="dns.test"))
        done += 1
    except (OSError, ssl.SSLError):
        pass
print(done, math.ceil(time.monotonic() - t0), flush=True)
time.sleep(3)
PY
}

if netns_up; then
	OP=$(free_port)
	OTP=$(free_port)
	OMP=$(free_port)
	start_embargo outside "$OP" --listen-tls "0.0.0.0:$OTP" --tls-cert "$TLS/one.chain" \
		--tls-key "$TLS/one.key" --upstream "127.0.0.1:$NSD" --redis "$NOREDIS" --threads 1 \
		--allow "$A1.0/24" --allow "$A2.0/24" --tls-handshake-rate 5 --metrics "127.0.0.1:$OMP" \
		--tcp-max-conns 8
	om() { curl -s "http://127.0.0.1:$OMP/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

	refused_before_handshake() {
		local before after out
		before=$(om embargo_tls_handshakes_total)
		out=$(ip netns exec "$NS" bash -c "echo | timeout 5 openssl s_client -connect $A1.1:$OTP \
			-bind $A0.2:0 2>&1")
		grep -q "Protocol *: TLS" <<<"$out" && { echo "a handshake from a refused network"; return 1; }
		after=$(om embargo_tls_handshakes_total)
		echo "handshakes $before -> $after, refused $(om embargo_tcp_refused_total)"
		[ "$after" -eq "$before" ] && [ "$(om embargo_tcp_refused_total)" -ge 1 ]
	}
	check "a client outside the access list is closed before any handshake" refused_before_handshake

	handshake_cap() {
		local flood secs other _ idle evicted
		# The worker is full of idle port-53 connections: only a handshake admitted may
		# make room (evict one), a capped one must not.
		"$PY" -c 'import socket, sys, time
s = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(8)]
time.sleep(60)' "$OP" &
		idle=$!
		wait_for 5 eval "[ \$(ss -Htn state established '( sport = :$OP )' | wc -l) -ge 8 ]"
		read -r flood secs < <(handshakes "$A1.2" 40)
		evicted=$(om embargo_tcp_evicted_total)
		read -r other _ < <(handshakes "$A2.2" 3)
		kill "$idle" 2>/dev/null
		wait "$idle" 2>/dev/null
		echo "from the flooding network: $flood of 40 in ${secs} s; from another: $other of 3;" \
			"capped $(om embargo_tls_rate_limited_total); idle connections evicted by" \
			"the flood $evicted"
		[ "$evicted" -le "$flood" ] || return 1
		# 5 a second: at most 5 in each second the burst touched.
		[ "$flood" -ge 5 ] && [ "$flood" -le $((5 * (secs + 1))) ] && [ "$flood" -lt 40 ] &&
			[ "$other" -eq 3 ] &&
			[ "$(om embargo_tls_rate_limited_total)" -eq $((40 - flood)) ]
	}
	check "--tls-handshake-rate caps one network's handshakes while another network is served" \
		handshake_cap
else
	skip "network namespace checks (need root and ip netns)"
fi

finish
