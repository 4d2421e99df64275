#!/usr/bin/env bash
# DNS over TLS toward the upstreams (--upstream tls://ADDR[:PORT][#NAME]): embargo forwards to
# Unbound's own DoT listener (Unbound in front of NSD, answering over TLS only, logging every
# query it gets), verifying its certificate against the name given, or its address; one kept
# connection carries many questions; a certificate that is not valid for the name, or not
# signed by a trusted CA, gets SERVFAIL and never a question in clear text (a plain UDP and TCP
# listener on the same address and port counts what reaches it); a dead TLS upstream is
# skipped and found back by a probe (a verified TLS handshake); serve-stale when the only upstream stops.
# Certificates are made here, with a throwaway CA. Real Unbound, NSD, kdig, openssl, dnsperf.
# Checks run in order: serve_stale stops the shared Unbound, so it comes last.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
. "$srcdir/tests/integration/lib.sh"

need_all
need openssl openssl
need unbound unbound
SCALE=${TIME_SCALE:-1}

TLS=$WORK/tls
test_ca "$TLS"
test_cert "$TLS" up "DNS:up.test,IP:127.0.0.1" "up.test"
test_cert "$TLS" nameonly "DNS:up.test" "up.test"
OTHER=$WORK/other
test_ca "$OTHER" # A CA embargo is not told of, nor the system.
test_cert "$OTHER" up "DNS:up.test,IP:127.0.0.1" "up.test"

NSD=$(free_port)
start_nsd "$NSD"
NOREDIS="redis://127.0.0.1:$(free_port)"

# start_unbound NAME PORT CERT-PREFIX [SERVER-LINE]: Unbound answering over TLS only on
# 127.0.0.1:PORT (no UDP, no plain TCP) with the pair PREFIX.chain/PREFIX.key, test. from NSD;
# its log, every query it got among it, in $WORK/NAME.log.
start_unbound() {
	local name=$1 port=$2 cert=$3 extra=${4:-}
	cat >"$WORK/$name.conf" <<EOF
server:
	$extra
	interface: 127.0.0.1@$port
	tls-port: $port
	tls-service-pem: "$cert.chain"
	tls-service-key: "$cert.key"
	do-udp: no
	do-daemonize: no
	use-syslog: no
	logfile: "$WORK/$name.log"
	log-queries: yes
	verbosity: 1
	chroot: ""
	username: ""
	directory: "$WORK"
	pidfile: ""
	do-not-query-localhost: no
	module-config: "iterator"
	qname-minimisation: no
	local-zone: "test." nodefault
	access-control: 127.0.0.0/8 allow
stub-zone:
	name: "test."
	stub-addr: 127.0.0.1@$NSD
EOF
	unbound -c "$WORK/$name.conf" >"$WORK/$name.out" 2>&1 &
	PIDS+=($!)
	eval "UNBOUND_$name=$!"
	wait_for $((10 * SCALE)) eval "kdig @127.0.0.1 -p $port +tls-ca=$TLS/ca.pem +tls-hostname=up.test \
		+timeout=1 +retry=0 www.test A 2>/dev/null | grep -q 'status: NOERROR'" ||
		die "unbound $name on port $port did not start: $(cat "$WORK/$name.out" "$WORK/$name.log")"
}

# start_counter PORT FILE TCP: a plain listener on the address and port of TLS upstreams that
# must never be asked in clear text: UDP always (Unbound leaves it free with do-udp: no), and
# with TCP=1 TCP too (accepted and closed at once: no TLS there). FILE says "UDP TCP": the
# datagrams and connections that came. Its PID in COUNTER_PID.
start_counter() {
	python3 -c '
import socket, sys, threading
port, path, tcp = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
n = [0, 0]
lock = threading.Lock()
def seen(k):
    with lock:
        n[k] += 1
        open(path, "w").write("%d %d" % (n[0], n[1]))
open(path, "w").write("0 0")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", port))
def udp():
    while True:
        u.recvfrom(4096)
        seen(0)
if not tcp:
    udp()
threading.Thread(target=udp, daemon=True).start()
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", port))
t.listen(16)
while True:
    c, _ = t.accept()
    seen(1)
    c.close()
' "$1" "$2" "$3" &
	COUNTER_PID=$!
	PIDS+=($!)
	wait_for 5 test -s "$2" || die "the plain counter on port $1 did not start"
}
datagrams() { cut -d' ' -f1 "$1"; }

UP=$(free_port)
start_unbound unbound "$UP" "$TLS/up"
# UDP of the live upstream's port is free (do-udp: no): a clear-text fallback would land here.
start_counter "$UP" "$WORK/up.count" 0
# A dead upstream: its port held by a counter (TCP taken and closed: no TLS), so that nothing
# else takes it, and what reaches it in clear text is seen.
DEAD=$(free_port)
start_counter "$DEAD" "$WORK/dead.count" 1
DEAD_PID=$COUNTER_PID

EP=$(free_port)
MP=$(free_port)
start_embargo main "$EP" --upstream "tls://127.0.0.1:$UP#up.test" --upstream-ca "$TLS/ca.pem" \
	--redis "$NOREDIS" --metrics "127.0.0.1:$MP" --stale-max 3600 --stale-timeout 500

metric() { # PORT NAME
	curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'
}
# asked NAME: how many times Unbound logged a query for NAME (case as it came).
asked() {
	grep -ci " $1\. A IN" "$WORK/unbound.log"
}

# ---- Answers over TLS -----------------------------------------------------------------------

forwarded() {
	local out
	out=$(q "$EP" @127.0.0.1 www.test A) || { echo "$out"; return 1; }
	grep -q "status: NOERROR" <<<"$out" && grep -q "192.0.2.1" <<<"$out" || { echo "$out"; return 1; }
	# Unbound got it, over TLS (it has nothing else open), and the UDP port saw nothing.
	wait_for 5 eval '[ "$(asked www.test)" -ge 1 ]' || { tail -5 "$WORK/unbound.log"; return 1; }
	[ "$(metric "$MP" embargo_upstream_tls_handshakes_total)" -ge 1 ] &&
		[ "$(datagrams "$WORK/up.count")" -eq 0 ]
}
check "a name forwarded over TLS to Unbound's DoT listener, its certificate verified" forwarded

denied() {
	by_policy "$EP" kaspersky.com || return 1
	[ "$(asked kaspersky.com)" -eq 0 ]
}
check "a listed name is denied by the policy (EDE 16) and never reaches the TLS upstream" denied

kept_open() {
	need_or_skip dnsperf dnsperf "many questions over one kept TLS link" || return 0
	local before after out i
	before=$(metric "$MP" embargo_upstream_tls_handshakes_total)
	for i in $(seq 1 400); do echo "n$i.kept.test A"; done >"$WORK/kept.txt"
	out=$(dnsperf -s 127.0.0.1 -p "$EP" -d "$WORK/kept.txt" -n 1 -c 4 -Q 400 -t 5 2>&1)
	echo "$out" | grep -E "Queries (sent|completed|lost)|NXDOMAIN"
	grep -qE "Queries lost: +0 " <<<"$out" || return 1
	after=$(metric "$MP" embargo_upstream_tls_handshakes_total)
	echo "handshakes: $before -> $after"
	# 400 distinct questions, every one asked of Unbound; at most a new link per worker (2).
	[ "$((after - before))" -le 2 ] && [ "$(grep -ci "kept.test. A IN" "$WORK/unbound.log")" -ge 400 ]
}
check "400 questions go over kept, pipelined TLS links: at most one new handshake per worker" kept_open

case_0x20() {
	# The question reaches Unbound with embargo's random letter case (0x20), and its answer,
	# in that case, is taken.
	local out
	out=$(q "$EP" @127.0.0.1 later.test A)
	grep -q "192.0.2.81" <<<"$out" || { echo "$out"; return 1; }
	wait_for 5 grep -qi " later.test. A IN" "$WORK/unbound.log" || return 1
	grep -i " later.test. A IN" "$WORK/unbound.log"
	grep -i " later.test. A IN" "$WORK/unbound.log" | grep -q "[A-Z]"
}
check "0x20 over TLS: the question goes in random letter case and its answer is taken" case_0x20

resumed() {
	# Unbound closes a connection idle for 0.5 s; the next question's new connection offers
	# the ticket the first one got, and resumes: no certificate sent, no full handshake.
	local p ep mp out
	p=$(free_port)
	start_unbound quick "$p" "$TLS/up" "tcp-idle-timeout: 500"
	ep=$(free_port)
	mp=$(free_port)
	start_embargo resume "$ep" --threads 1 --redis "$NOREDIS" --metrics "127.0.0.1:$mp" \
		--upstream "tls://127.0.0.1:$p#up.test" --upstream-ca "$TLS/ca.pem"
	out=$(q "$ep" @127.0.0.1 www.test A)
	grep -q "192.0.2.1" <<<"$out" || { echo "$out"; return 1; }
	pause 1.5
	out=$(q "$ep" @127.0.0.1 later.test A)
	grep -q "192.0.2.81" <<<"$out" || { echo "$out"; return 1; }
	echo "handshakes $(metric "$mp" embargo_upstream_tls_handshakes_total)," \
		"resumed $(metric "$mp" embargo_upstream_tls_resumed_total)"
	[ "$(metric "$mp" embargo_upstream_tls_handshakes_total)" -eq 2 ] &&
		[ "$(metric "$mp" embargo_upstream_tls_resumed_total)" -eq 1 ]
}
check "a new connection to a TLS upstream resumes the last session (its ticket)" resumed

# ---- Verification, and never clear text -----------------------------------------------------

# refused_by_tls NAME PORT ARGS...: an instance whose TLS upstream cannot be verified: SERVFAIL,
# the reason in its log, a failure counted, and no question at Unbound nor in clear text.
refused_by_tls() {
	local name=$1 port=$2 mp out
	shift 2
	mp=$(free_port)
	start_embargo "$name" "$port" --redis "$NOREDIS" --metrics "127.0.0.1:$mp" "$@"
	out=$(q "$port" @127.0.0.1 "$name.test" A)
	grep -q "status: SERVFAIL" <<<"$out" || { echo "$out"; return 1; }
	grep "TLS handshake failed" "$WORK/$name.log" || return 1
	[ "$(metric "$mp" embargo_upstream_tls_failures_total)" -ge 1 ] &&
		[ "$(asked "$name.test")" -eq 0 ] && [ "$(datagrams "$WORK/up.count")" -eq 0 ]
}

wrong_name() {
	refused_by_tls wrongname "$(free_port)" --upstream "tls://127.0.0.1:$UP#other.test" \
		--upstream-ca "$TLS/ca.pem" || return 1
	grep -q "certificate not accepted: .*name" "$WORK/wrongname.log"
}
check "a certificate not valid for the name given: SERVFAIL, why in the log, nothing in clear text" \
	wrong_name

untrusted() {
	# The system's store (no --upstream-ca) does not hold the test CA.
	refused_by_tls untrusted "$(free_port)" --upstream "tls://127.0.0.1:$UP#up.test" || return 1
	grep -qi "certificate not accepted: .*not trusted" "$WORK/untrusted.log"
}
check "a certificate from a CA nobody trusts: SERVFAIL, why in the log" untrusted

by_address() {
	# Without #NAME the certificate must be valid for the address: Unbound's is (IP SAN), a
	# second Unbound's (DNS name only) is not.
	local p2 ep out
	ep=$(free_port)
	start_embargo byaddr "$ep" --redis "$NOREDIS" --upstream "tls://127.0.0.1:$UP" \
		--upstream-ca "$TLS/ca.pem"
	out=$(q "$ep" @127.0.0.1 www.test A)
	grep -q "192.0.2.1" <<<"$out" || { echo "$out"; return 1; }
	p2=$(free_port)
	start_unbound nameonly "$p2" "$TLS/nameonly"
	refused_by_tls noaddr "$(free_port)" --upstream "tls://127.0.0.1:$p2" \
		--upstream-ca "$TLS/ca.pem"
}
check "without a name the certificate is checked against the address (IP SubjectAltName)" by_address

mixed_refused() {
	local out
	out=$("$EMBARGO" --listen "127.0.0.1:$(free_port)" --redis "$NOREDIS" \
		--upstream "tls://127.0.0.1:$UP#up.test" --upstream "127.0.0.1:$NSD" 2>&1)
	[ $? -eq 2 ] && grep -q "clear text" <<<"$out" || { echo "$out"; return 1; }
	out=$("$EMBARGO" --listen "127.0.0.1:$(free_port)" --redis "$NOREDIS" \
		--upstream "tls://127.0.0.1:$UP#up.test" --upstream-ca "$WORK/none.pem" 2>&1)
	[ $? -ne 0 ] && grep -q "upstream-ca" <<<"$out" || { echo "$out"; return 1; }
}
check "TLS and clear-text upstreams mixed, or an unreadable --upstream-ca: refused at start" \
	mixed_refused

mute_upstream() {
	# An upstream that takes the connection and never answers the ClientHello: with it the
	# only upstream, the client gets SERVFAIL once --timeout (1 s) runs out, not later, and
	# embargo gives the connection up then too (not at the 10 s idle close).
	local mp ep t0 t1 out
	mp=$(free_port)
	python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
held = []
end = time.time() + 120
s.settimeout(1)
while time.time() < end:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
' "$mp" &
	PIDS+=($!)
	wait_for 5 eval "ss -Hlnt | grep -q '127.0.0.1:$mp '" || return 1
	ep=$(free_port)
	start_embargo mute "$ep" --threads 1 --redis "$NOREDIS" --timeout 1000 \
		--upstream "tls://127.0.0.1:$mp#up.test" --upstream-ca "$TLS/ca.pem"
	t0=$(date +%s%N)
	out=$(q "$ep" @127.0.0.1 m1.test A +timeout=$((5 * SCALE)))
	t1=$(date +%s%N)
	echo "SERVFAIL after $(((t1 - t0) / 1000000)) ms"
	grep -q "status: SERVFAIL" <<<"$out" || { echo "$out"; return 1; }
	[ $(((t1 - t0) / 1000000)) -ge 900 ] && [ $(((t1 - t0) / 1000000)) -lt $((2000 * SCALE)) ] ||
		return 1
	wait_for $((3 * SCALE)) eval "[ -z \"\$(ss -Htn state established 'dport = :$mp')\" ]" ||
		{ ss -Htn state established "dport = :$mp"; return 1; }
}
check "an upstream that never finishes the TLS handshake: SERVFAIL at --timeout, the connection given up" \
	mute_upstream

# ---- Health: a dead TLS upstream skipped, found back by a probe over TLS ---------------------

dead_then_back() {
	local ep t0 t1 out ms
	ep=$(free_port)
	start_embargo health "$ep" --threads 1 --redis "$NOREDIS" --upstream-ca "$TLS/ca.pem" \
		--upstream "tls://127.0.0.1:$DEAD#up.test" --upstream "tls://127.0.0.1:$UP#up.test"
	for n in a b c d; do q "$ep" @127.0.0.1 "$n.health.test" A >/dev/null; done
	wait_for 5 grep -q "tls://127.0.0.1:$DEAD: TLS handshake failed" "$WORK/health.log" ||
		{ cat "$WORK/health.log"; return 1; }
	t0=$(date +%s%N)
	out=$(q "$ep" @127.0.0.1 later.test A)
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	grep -q "192.0.2.81" <<<"$out" || { echo "$out"; return 1; }
	echo "answered in $ms ms with the dead upstream skipped; at the dead one: $(cat "$WORK/dead.count")"
	[ "$ms" -lt $((300 * SCALE)) ] || return 1
	# Connections came (TLS attempts), never a datagram.
	[ "$(datagrams "$WORK/dead.count")" -eq 0 ] || return 1
	# Now a DoT server comes up on that port: a probe, over TLS, finds it back.
	kill "$DEAD_PID"
	wait "$DEAD_PID" 2>/dev/null
	start_unbound revived "$DEAD" "$TLS/up"
	wait_for $((20 * SCALE)) grep -q "upstream 127.0.0.1:$DEAD answers again" "$WORK/health.log" ||
		{ tail -5 "$WORK/health.log"; return 1; }
}
check "a dead TLS upstream is skipped, then found back by a probe over TLS" dead_then_back

# ---- Against an upstream written here (tests/integration/dotfake.py) ------------------------

# start_dotfake NAME PORT MODE: the fake DoT upstream (lower: answers with the name in lower
# case; silent: never answers), its questions logged in $WORK/NAME.queries.
start_dotfake() {
	python3 "$srcdir/tests/integration/dotfake.py" --port "$2" --cert "$TLS/up.chain" \
		--key "$TLS/up.key" --log "$WORK/$1.queries" --mode "$3" --lifetime 900 \
		>"$WORK/$1.out" 2>&1 &
	PIDS+=($!)
	wait_for 10 eval "ss -Hlnt | grep -q '127.0.0.1:$2 '" ||
		die "dotfake $1 did not start: $(cat "$WORK/$1.out")"
}

padded_and_case() {
	local fp ep out n long
	fp=$(free_port)
	start_dotfake lower "$fp" lower
	ep=$(free_port)
	start_embargo lowercase "$ep" --redis "$NOREDIS" --upstream "tls://127.0.0.1:$fp#up.test" \
		--upstream-ca "$TLS/ca.pem"
	long=$(printf 'x%.0s' $(seq 1 60))
	for n in a ab abcdefgh "$long.$long"; do
		out=$(q "$ep" @127.0.0.1 "$n.mixed.test" A)
		grep -q "192.0.2.7" <<<"$out" || { echo "$out"; return 1; }
	done
	cat "$WORK/lower.queries"
	# Every question padded to a multiple of 128 octets (RFC 8467), whatever its name's length.
	awk '{ split($1, l, "="); split($2, p, "="); if (l[2] % 128 != 0 || p[2] != 1) bad = 1 }
	     END { exit bad }' "$WORK/lower.queries" || { echo "not padded"; return 1; }
	# An answer in another letter case is taken over TLS: each name asked once, not again
	# without 0x20 after an attempt's time.
	[ "$(grep -c . "$WORK/lower.queries")" -eq 4 ]
}
check "questions over TLS are padded to 128 octets; an answer in another letter case is taken" \
	padded_and_case

handshake_only() {
	# An upstream that completes the handshake and never answers: a probe's handshake brings
	# it back, its questions time out again, and its probe back-off goes on doubling (1, 2,
	# 4, 8 s) instead of starting again at 1 s each time.
	local fp ep end again
	fp=$(free_port)
	start_dotfake silent "$fp" silent
	ep=$(free_port)
	start_embargo silentup "$ep" --threads 1 --redis "$NOREDIS" --upstream-ca "$TLS/ca.pem" \
		--upstream "tls://127.0.0.1:$fp#up.test"
	local kids=()
	end=$((SECONDS + 12 * SCALE))
	while [ "$SECONDS" -lt "$end" ]; do
		q "$ep" @127.0.0.1 "q$RANDOM.silent.test" A +timeout=1 >/dev/null 2>&1 &
		kids+=($!)
		sleep 0.25
	done
	wait "${kids[@]}"
	grep -E "answers again|does not answer" "$WORK/silentup.log" | cut -c12-23,60-
	# The gaps between two comebacks, in ms: they grow (2, 4, 8 s...); with a back-off that
	# starts again at 1 s each time they stay near 1 s.
	local gaps
	gaps=$(grep "answers again" "$WORK/silentup.log" | cut -c12-23 |
		awk -F'[:.]' '{ t = (($1 * 60 + $2) * 60 + $3) * 1000 + $4 } NR > 1 { print t - last } { last = t }')
	echo "gaps between comebacks (ms):" $gaps
	[ "$(wc -w <<<"$gaps")" -ge 2 ] && [ "$(tail -n1 <<<"$gaps")" -ge 3500 ]
}
check "an upstream that shakes hands and never answers: the probe back-off keeps doubling" \
	handshake_only

# ---- SIGHUP from clear text to TLS -------------------------------------------------------------

plain_to_tls_held() {
	# Four reloads each leave an old upstream side answering a slow question (3 s), so the
	# fifth, to a TLS upstream, cannot be taken on at once: meanwhile nothing is forwarded (never
	# to the old clear-text upstream), and once the old sides are done the TLS one is used.
	local a b ep conf i out kids=()
	a=$(free_port)
	b=$(free_port)
	start_fake slowa "$a" --delay-all-ms 3000
	start_fake slowb "$b" --delay-all-ms 3000
	ep=$(free_port)
	conf=$WORK/hup.conf
	printf 'upstream 127.0.0.1:%s\nredis %s\ntimeout 6000\n' "$a" "$NOREDIS" >"$conf"
	start_embargo hup "$ep" --threads 1 --config "$conf"
	for i in 1 2 3 4; do
		q "$ep" @127.0.0.1 "slow$i.test" A +timeout=8 >/dev/null 2>&1 &
		kids+=($!)
		wait_for 5 eval "grep -qi 'slow$i.test' '$WORK/slowa.queries' '$WORK/slowb.queries'" ||
			{ echo "slow$i not asked"; return 1; }
		printf 'upstream 127.0.0.1:%s\nredis %s\ntimeout 6000\n' \
			"$([ $((i % 2)) -eq 1 ] && echo "$b" || echo "$a")" "$NOREDIS" >"$conf"
		kill -HUP "$PID_hup"
		wait_for 5 eval "[ \$(grep -c 'SIGHUP: configuration read again' '$WORK/hup.log') -ge $i ]" ||
			{ tail -3 "$WORK/hup.log"; return 1; }
	done
	q "$ep" @127.0.0.1 "slow5.test" A +timeout=8 >/dev/null 2>&1 &
	kids+=($!)
	wait_for 5 eval "grep -qi 'slow5.test' '$WORK/slowa.queries' '$WORK/slowb.queries'" || return 1
	printf 'upstream tls://127.0.0.1:%s#up.test\nupstream-ca %s\nredis %s\ntimeout 6000\n' \
		"$UP" "$TLS/ca.pem" "$NOREDIS" >"$conf"
	kill -HUP "$PID_hup"
	wait_for 5 grep -q "meanwhile nothing is forwarded, as the new ones are TLS" "$WORK/hup.log" ||
		{ tail -5 "$WORK/hup.log"; return 1; }
	out=$(q "$ep" @127.0.0.1 held.test A +edns)
	echo "$out" | grep -E "status|EDE"
	grep -q "status: SERVFAIL" <<<"$out" && grep -q "upstreams changing to TLS" <<<"$out" ||
		return 1
	# The new side once the old ones are done, and the question goes over TLS.
	wait_for $((10 * SCALE)) grep -q "worker 0: upstreams changed" "$WORK/hup.log" ||
		{ tail -5 "$WORK/hup.log"; return 1; }
	out=$(q "$ep" @127.0.0.1 later.test A)
	grep -q "192.0.2.81" <<<"$out" || { echo "$out"; return 1; }
	wait "${kids[@]}"
	! grep -qi "held.test\|later.test" "$WORK/slowa.queries" "$WORK/slowb.queries"
}
check "SIGHUP to TLS upstreams that a worker cannot take on yet: nothing in clear text meanwhile" \
	plain_to_tls_held

# ---- Serve-stale when the only (TLS) upstream stops: last, it stops the shared Unbound --------

serve_stale() {
	local out
	out=$(q "$EP" @127.0.0.1 stale1.test A +edns) # EDNS is part of the cache key.
	grep -q "192.0.2.91" <<<"$out" || { echo "$out"; return 1; }
	kill "$UNBOUND_unbound"
	wait "$UNBOUND_unbound" 2>/dev/null
	sleep $((3 * SCALE)) # stale1's TTL (2 s) runs out.
	out=$(q "$EP" @127.0.0.1 stale1.test A +edns)
	grep -q "192.0.2.91" <<<"$out" && grep -q "EDE: 3 (Stale Answer)" <<<"$out" ||
		{ echo "$out"; return 1; }
}
check "the TLS upstream stopped: an expired answer is served stale with EDE 3" serve_stale

finish
