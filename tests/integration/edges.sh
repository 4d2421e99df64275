#!/usr/bin/env bash
# Protocol edges, each tried as a client or an upstream that bends the rules would: meta-query
# types and other opcodes answered here, never forwarded; failures retried once per upstream and
# remembered briefly; serve-stale on every kind of failure; CNAME targets that cannot be read;
# the upstream's EDE passed on. Real redis-server, tests/integration/fakedns.py, kdig and
# dnspython (Debian's, in /usr/bin/python3).
# The checks are independent: each starts what it uses (ONLY= runs any of them alone).
# meta_types, other_opcodes, failures_once and unreadable_chain share the instance meta started
# above them and its fake upstream; each reads that query log and log only for its own names.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need_all
SCALE=${TIME_SCALE:-1}

REDIS=$(free_port)
start_redis "$REDIS"
R() { redis-cli -p "$REDIS" "$@" >/dev/null; }
R del embargo:deny embargo:allow embargo:reason
R sadd embargo:deny kaspersky.com listed.example
consent_first --redis "redis://127.0.0.1:$REDIS"

# ask PORT QTYPE NAME [OPCODE]: one UDP question by dnspython, printed as "RCODE OPCODE QDCOUNT".
ask() {
	/usr/bin/python3 - "$@" <<'PY'
import sys, dns.message, dns.query, dns.opcode, dns.rcode, dns.rdatatype, dns.flags
port, qtype, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
q = dns.message.make_query(name, dns.rdatatype.from_text(qtype), use_edns=0)
if len(sys.argv) > 4:
    q.set_opcode(dns.opcode.from_text(sys.argv[4]))
    q.flags &= ~dns.flags.RD
r = dns.query.udp(q, "127.0.0.1", port=port, timeout=3, ignore_unexpected=True)
print(dns.rcode.to_text(r.rcode()), dns.opcode.to_text(r.opcode()), len(r.question))
PY
}

F=$(free_port)
start_fake meta "$F"
P=$(free_port)
M=$(free_port)
start_embargo meta "$P" --upstream "127.0.0.1:$F" --redis "redis://127.0.0.1:$REDIS" \
	--metrics "127.0.0.1:$M"

# Zone transfers are REFUSED (as Unbound), the meta types FORMERR; none goes upstream.
meta_types() {
	local t out
	for t in AXFR IXFR; do
		out=$(ask "$P" "$t" "xfr-$t.example") || return 1
		[ "$out" = "REFUSED QUERY 1" ] || { echo "$t: $out"; return 1; }
	done
	out=$(q "$P" @127.0.0.1 axfr-tcp.example AXFR 2>&1) # kdig asks AXFR over TCP
	grep -q "REFUSED" <<<"$out" || { echo "AXFR over TCP: $out"; return 1; }
	for t in OPT TSIG TKEY MAILA MAILB TYPE128 TYPE248; do
		out=$(ask "$P" "$t" "meta-$t.example") || return 1
		[ "$out" = "FORMERR QUERY 1" ] || { echo "$t: $out"; return 1; }
	done
	# A type just outside the meta range is an ordinary question, forwarded.
	out=$(ask "$P" TYPE249 "meta-ok.example") # TKEY: meta
	[ "$out" = "FORMERR QUERY 1" ] || { echo "TKEY as 249: $out"; return 1; }
	out=$(ask "$P" TYPE127 "plain-127.example")
	[ "$out" = "NOERROR QUERY 1" ] || { echo "type 127: $out"; return 1; }
	! grep -qiE "xfr-|axfr-tcp|meta-" "$WORK/meta.queries" || { echo "forwarded:"; cat "$WORK/meta.queries"; return 1; }
	grep -qi "plain-127" "$WORK/meta.queries" || { echo "type 127 was not forwarded"; return 1; }
}
check "AXFR and IXFR are REFUSED, meta types FORMERR, none forwarded" meta_types

# RFC 1035 4.1.1: an answer copies the opcode; a NOTIFY or UPDATE gets NOTIMP with its question.
other_opcodes() {
	local op out
	for op in NOTIFY UPDATE; do
		out=$(ask "$P" SOA "op-$op.example" "$op") || return 1
		[ "$out" = "NOTIMP $op 1" ] || { echo "$op: $out"; return 1; }
	done
}
check "NOTIFY and UPDATE get NOTIMP with their opcode and question" other_opcodes

# An upstream's error answer: its EDE reaches the client (RFC 8914 3); the question is asked once
# per upstream, not four times, and the failure is remembered (RFC 9520) so that a client
# repeating it within 5 s is answered from that memory, not by asking again.
failures_once() {
	local i out n
	for i in 1 2 3 4 5 6; do
		out=$(q "$P" @127.0.0.1 servfail-once.example A +edns)
		grep -q "status: SERVFAIL" <<<"$out" && grep -q "EDE: 6 (DNSSEC Bogus): 'fake'" <<<"$out" ||
			{ echo "answer $i: $out"; return 1; }
	done
	n=$(grep -ci " servfail-once.example" "$WORK/meta.queries")
	echo "the upstream saw $n questions for 6 client questions (2 workers)"
	[ "$n" -ge 1 ] && [ "$n" -le 2 ] || { cat "$WORK/meta.queries"; return 1; }
	# Remembered 5 s, then asked again.
	sleep 5.2
	q "$P" @127.0.0.1 servfail-once.example A +edns >/dev/null
	[ "$(grep -ci " servfail-once.example" "$WORK/meta.queries")" -gt "$n" ] ||
		{ echo "not asked again after 5 s"; return 1; }
}
check "an upstream's error answer: its EDE passed on, asked once per upstream, remembered 5 s" failures_once

# Serve-stale (RFC 8767) on every kind of failure to refresh: a closed port (ICMP refused), an
# upstream answering REFUSED, one answering SERVFAIL: the expired answer with EDE 3, at once.
stale_on_failures() {
	local f p kind out fpid
	f=$(free_port)
	p=$(free_port)
	start_fake stalefail "$f" --ttl 1 --answer 192.0.2.55
	fpid=${PIDS[-1]}
	start_embargo stalefail "$p" --upstream "127.0.0.1:$f" --redis "redis://127.0.0.1:$REDIS" \
		--prefetch no
	for kind in closed refused servfail; do
		q "$p" @127.0.0.1 "stale-$kind.example" A +edns +short | grep -qx 192.0.2.55 ||
			{ echo "$kind: no first answer"; return 1; }
	done
	stop_pid "$fpid" || return 1
	sleep 1.5 # Expired (TTL 1).
	for kind in closed refused servfail; do
		case $kind in
		refused) start_fake stalefail-r "$f" --mode refused && fpid=${PIDS[-1]} ;;
		servfail) start_fake stalefail-s "$f" --mode servfail && fpid=${PIDS[-1]} ;;
		esac
		out=$(q "$p" @127.0.0.1 "stale-$kind.example" A +edns)
		grep -q "status: NOERROR" <<<"$out" && grep -q "EDE: 3 (Stale Answer)" <<<"$out" &&
			grep -qE "^stale-$kind\.example\.\s+30\s+IN\s+A\s+192.0.2.55" <<<"$out" ||
			{ echo "$kind: $out"; return 1; }
		if [ "$kind" != closed ]; then
			stop_pid "$fpid" || return 1
		fi
	done
}
check "serve-stale on a refused connection, on REFUSED and on SERVFAIL" stale_on_failures

# Serve-stale with two upstreams (RFC 8767): a name is cached from both (TTL 1), both are
# stopped, and once the TTL ran out HOW fails every refresh: closed-silent (the first a closed
# port, ICMP refused; the second a black hole), or refused (both answer REFUSED). The client gets
# the expired answer with EDE 3 within --stale-timeout (timed), long before --timeout, and never
# the SERVFAIL (EDE 22) that ends a question no upstream answered.
stale_two() {
	local how=$1 tag=stale2${1%%-*} f1 f2 p out t0 t1 ms
	f1=$(free_port)
	f2=$(free_port)
	p=$(free_port)
	start_fake "$tag-1" "$f1" --ttl 1 --answer 192.0.2.57
	local pid1=${PIDS[-1]}
	start_fake "$tag-2" "$f2" --ttl 1 --answer 192.0.2.57
	local pid2=${PIDS[-1]}
	# A stale answer is due after 500 ms; the question is given up only after 5 s (--timeout).
	start_embargo "$tag" "$p" --upstream "127.0.0.1:$f1" --upstream "127.0.0.1:$f2" \
		--redis "redis://127.0.0.1:$REDIS" --prefetch no --stale-timeout 500 --timeout $((5000 * SCALE))
	q "$p" @127.0.0.1 "stale2-$how.example" A +edns +short | grep -qx 192.0.2.57 ||
		{ echo "no first answer"; return 1; }
	stop_pid "$pid1" && stop_pid "$pid2" || return 1
	case $how in
	closed-silent) # The first a closed port (ICMP refused), the second a black hole.
		start_fake "$tag-s" "$f2" --mode silent ;;
	refused) # Both answer REFUSED.
		start_fake "$tag-r1" "$f1" --mode refused
		start_fake "$tag-r2" "$f2" --mode refused ;;
	esac
	sleep 1.5 # Expired (TTL 1).
	t0=$(date +%s%3N)
	out=$(kdig -p "$p" +timeout=$((8 * SCALE)) +retry=0 @127.0.0.1 "stale2-$how.example" A +edns)
	t1=$(date +%s%3N)
	ms=$((t1 - t0))
	echo "$how: answered in $ms ms (--stale-timeout 500, --timeout $((5000 * SCALE)))"
	grep -q "status: NOERROR" <<<"$out" && grep -q "EDE: 3 (Stale Answer)" <<<"$out" &&
		grep -qE "^stale2-$how\.example\.\s+30\s+IN\s+A\s+192.0.2.57" <<<"$out" ||
		{ echo "$out"; return 1; }
	# Well before the full timeout: the stale timeout (and a margin for a slow machine).
	[ "$ms" -lt $((2000 * SCALE)) ] || { echo "not within the stale timeout"; return 1; }
}
check "serve-stale with two upstreams, one a closed port and one silent: within --stale-timeout" \
	stale_two closed-silent
check "serve-stale with two upstreams that both answer REFUSED" stale_two refused

# One client network cannot take every TCP refetch: 70 questions whose UDP answers are truncated
# and whose TCP answers take 1.5 s, from 127.0.0.1, hold at most its network's share (16) of the
# worker's link slots; the rest get an empty truncated answer (to retry over TCP themselves),
# never SERVFAIL, and a client in another /24, 127.1.0.2, still has its answer fetched whole.
# (Before, 64 slots for everyone: 64 held, 6 SERVFAIL, and the other client SERVFAIL at once.)
fetch_share() {
	local f p out t0 t1
	f=$(free_port)
	p=$(free_port)
	start_fake share "$f" --delay-ms 1500 --big-bytes 800
	start_embargo share "$p" --upstream "127.0.0.1:$f" --redis "redis://127.0.0.1:$REDIS" \
		--threads 1 --timeout 6000
	/usr/bin/python3 - "$p" "$SCALE" >"$WORK/share.out" <<'PY' &
import socket, struct, sys, time
port, scale = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
for i in range(70):
    name = b"".join(bytes([len(l)]) + l for l in (b"big%d" % i, b"slow", b"example")) + b"\0"
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    s.sendto(struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 1) + name + struct.pack("!HH", 16, 1) + opt,
             ("127.0.0.1", port))
got = {"answered": 0, "truncated": 0, "servfail": 0, "other": 0}
s.settimeout(0.2)
end = time.time() + 4 * scale
while time.time() < end and sum(got.values()) < 70:
    try:
        r = s.recv(65535)
    except socket.timeout:
        continue
    flags, an = struct.unpack("!H", r[2:4])[0], struct.unpack("!H", r[6:8])[0]
    if flags & 0xF == 2:
        got["servfail"] += 1
    elif flags & 0x0200:
        got["truncated"] += 1
    elif an > 0:
        got["answered"] += 1
    else:
        got["other"] += 1
print(" ".join("%s=%d" % kv for kv in got.items()))
PY
	local flood=$!
	# The other client asks once the flood's 70 questions went upstream (the refetches it can
	# take are then taken).
	wait_for 3 eval '[ "$(grep -ci " big[0-9]*\.slow\.example" "$WORK/share.queries")" -ge 70 ]' ||
		{ echo "the flood did not reach the upstream"; return 1; }
	t0=$(date +%s%3N)
	out=$(kdig -p "$p" +timeout=$((5 * SCALE)) +retry=0 -b 127.1.0.2 @127.0.0.1 big-other.slow.example \
		TXT +edns)
	t1=$(date +%s%3N)
	wait "$flood"
	echo "127.0.0.1: $(cat "$WORK/share.out"); 127.1.0.2 answered in $((t1 - t0)) ms"
	grep -q "status: NOERROR" <<<"$out" && grep -q "TXT" <<<"$out" || { echo "$out"; return 1; }
	grep -q "servfail=0" "$WORK/share.out" && ! grep -q "truncated=0" "$WORK/share.out" ||
		return 1
	grep -qE "answered=(1[0-9]|[0-9])( |$)" "$WORK/share.out" || { echo "more than its share"; return 1; }
}
check "TCP refetches: one client holds at most its share, the rest get TC, never SERVFAIL" fetch_share

# Many clients that never read: each may hold its own bound of queued answers, but together no
# more than --tcp-max-queued-total (1 MiB here) per worker; above it the connections holding
# the most are closed first. 96 connections pipeline 400 questions each for a 60 KB answer and
# never read: most are closed (each holds about 124 KB, so about 8 fit), the rest stay open.
slow_readers() {
	local f p m open shed
	f=$(free_port)
	p=$(free_port)
	m=$(free_port)
	start_fake slowread "$f"
	start_embargo slowread "$p" --upstream "127.0.0.1:$f" --redis "redis://127.0.0.1:$REDIS" \
		--threads 1 --tcp-per-addr 200 --tcp-max-queued 65540 --tcp-max-queued-total 1048576 \
		--metrics "127.0.0.1:$m"
	q "$p" @127.0.0.1 big.example TXT +tcp >/dev/null || { echo "no first answer"; return 1; }
	/usr/bin/python3 - "$p" <<'PY' &
import socket, struct, sys, time
port = int(sys.argv[1])
name = b"\x03big\x07example\x00"
conns = []
for c in range(96):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    conns.append(s)
qs = b"".join(struct.pack("!H", 12 + len(name) + 4) + struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0)
              + name + struct.pack("!HH", 16, 1) for i in range(400))
for s in conns:
    try:
        s.send(qs)
    except OSError:
        pass
time.sleep(20)
PY
	local readers=$!
	shed_count() { curl -s "http://127.0.0.1:$m/metrics" | awk '/^embargo_tcp_shed_total/ {print $2}'; }
	wait_for $((6 * SCALE)) eval '[ "$(shed_count)" -ge 80 ]'
	pause 0.5 # (more would be shed now if the bound did not hold)
	open=$(ss -Htn state established "( sport = :$p )" | wc -l)
	shed=$(shed_count)
	stop_pid "$readers" || return 1
	echo "of 96 readers that never read, $open connections still open; $shed shed"
	[ "$open" -ge 1 ] && [ "$open" -le 16 ] || { echo "queued answers not bounded per worker"; return 1; }
	[ "${shed:-0}" -ge 80 ] || return 1
	q "$p" @127.0.0.1 big.example TXT +tcp | grep -q "status: NOERROR" || { echo "not serving"; return 1; }
}
check "slow readers: answers queued per worker stay within --tcp-max-queued-total" slow_readers

# A CNAME or DNAME whose target the policy cannot read (a forward compression pointer that lands
# on kaspersky.com, or a pointer to itself) fails closed: SERVFAIL, counted in
# embargo_chain_unreadable_total (each answer once), logged once, not cached.
unreadable_chain() {
	local n out before
	chain_count() {
		curl -s "http://127.0.0.1:$M/metrics" | awk '/^embargo_chain_unreadable_total / {print $2}'
	}
	before=$(chain_count)
	[ -n "$before" ] || { echo "no embargo_chain_unreadable_total in the metrics"; return 1; }
	for n in badchain.example loopchain.example baddname.example; do
		out=$(q "$P" @127.0.0.1 "$n" A +edns 2>&1)
		grep -q "status: SERVFAIL" <<<"$out" && ! grep -q "192.0.2.66" <<<"$out" ||
			{ echo "$n: $out"; return 1; }
	done
	# Asked again: not from the cache (the upstream is asked again), SERVFAIL again.
	for n in badchain.example baddname.example; do
		out=$(q "$P" @127.0.0.1 "$n" A +edns 2>&1)
		grep -q "status: SERVFAIL" <<<"$out" || { echo "$n again: $out"; return 1; }
		[ "$(grep -ci " $n" "$WORK/meta.queries")" -ge 2 ] ||
			{ echo "the unreadable answer for $n was cached"; return 1; }
	done
	# Five unreadable answers, five counted (the counter may lag the answers a moment).
	wait_for 3 eval '[ "$(chain_count)" = $((before + 5)) ]' ||
		{ echo "embargo_chain_unreadable_total went from $before to $(chain_count), not +5"; return 1; }
	echo "embargo_chain_unreadable_total: $before before, $(chain_count) after five unreadable answers"
	[ "$(grep -c "CNAME or DNAME target that cannot be read" "$WORK/meta.log")" -le 2 ] ||
		{ echo "logged more than once a minute per worker"; return 1; }
}
check "a CNAME or DNAME target the policy cannot read is SERVFAIL, counted, never relayed or cached" \
	unreadable_chain

finish
