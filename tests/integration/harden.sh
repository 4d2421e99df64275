#!/usr/bin/env bash
# Safe to face a real network: forged upstream answers are not accepted, identical questions are
# merged, dead and refusing upstreams are routed around, forwarding loops are refused, TCP abuse
# stays bounded, and clients outside the allowed networks, or over their rate, are turned away.
# Real embargo processes; upstreams are NSD and tests/integration/fakedns.py on loopback; clients
# "from elsewhere" live in a network namespace made here (198.18.0.0/15).
# Each section's daemons are started and stopped between the checks, whatever ONLY= says, and most
# checks use only those (ONLY= runs them alone). Two read the closing counters of a daemon stopped
# after the checks before them: spoof_counters counts the forged answers that inband_spoof_rejected
# (and drowned_answer_keeps_0x20 and raw_spoof_old_port) sent to spoof, and share_counted the
# SERVFAILs of pending_share's flood. Either alone fails; ONLY=forged and ONLY="client's" run each
# with the check it needs.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
. "$srcdir/tests/integration/lib.sh"

need_all
NOREDIS="redis://127.0.0.1:$(free_port)" # Nobody listens: the bundled list is enforced.


# stop_embargo NAME: SIGTERM, wait, so that its closing counters are in its log.
stop_embargo() {
	local pid
	eval "pid=\$PID_$1"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# counter NAME WORDS: the number before WORDS in the daemon's closing lines.
counter() {
	grep -oE "[0-9]+ $2" "$WORK/$1.log" | tail -1 | grep -oE "^[0-9]+"
}

ip4() { # PORT NAME: the A record embargo gives, or the status
	local out
	out=$(kdig -p "$1" +timeout=4 +retry=0 @127.0.0.1 "$2")
	grep -oE "^[^;].*[[:space:]]A[[:space:]]+[0-9.]+$" <<<"$out" | awk '{print $NF}' | head -1
	grep -q "status: NOERROR" <<<"$out" || grep -oE "status: [A-Z]+" <<<"$out"
}

# ---- Upstream side -------------------------------------------------------------------------

F1=$(free_port)
start_fake f1 "$F1" --delay-ms 1500
EP=$(free_port)
start_embargo spoof "$EP" --upstream "127.0.0.1:$F1" --redis "$NOREDIS" --timeout 8000

fresh_ports_ids_case() {
	: >"$WORK/f1.queries"
	seq 1 500 | xargs -P 8 -I{} kdig -p "$EP" +timeout=4 +retry=0 @127.0.0.1 \
		"ports{}.example.test" +short >"$WORK/ports.out"
	[ "$(grep -c '^192.0.2.1$' "$WORK/ports.out")" -eq 500 ] || { echo "answers:"; sort "$WORK/ports.out" | uniq -c; return 1; }
	local n ports ids mixed
	n=$(grep -ci "ports[0-9]*\.example\.test" "$WORK/f1.queries")
	ports=$(grep -i "ports" "$WORK/f1.queries" | awk '{print $1}' | sort -u | wc -l)
	ids=$(grep -i "ports" "$WORK/f1.queries" | awk '{print $2}' | sort -u | wc -l)
	# 0x20: a name of 17+ letters comes out all lower case once in 2^17 by chance.
	mixed=$(grep -i "ports" "$WORK/f1.queries" | awk '{print $3}' | grep -c '[A-Z]')
	echo "queries $n, distinct source ports $ports, distinct IDs $ids, with upper case $mixed"
	[ "$n" -ge 500 ] && [ "$ports" -ge 400 ] && [ "$ids" -ge 400 ] && [ "$mixed" -ge 495 ]
}
check "500 forwarded queries: fresh random source ports and IDs, random letter case" fresh_ports_ids_case

# The fake upstream itself floods the query's own port, from the upstream's own address and
# port, with a forged answer (6.6.6.6, question in lower case) for every one of the 65536 IDs,
# then answers (192.0.2.1): all an off-path attacker could do once it guessed the port.
inband_spoof_rejected() {
	local n
	for n in spoofaaaaaaaaaaaaaaaaaaaaa1 spoofbbbbbbbbbbbbbbbbbbbbbbbb2 spoofccccccccccccccccccccc3; do
		[ "$(ip4 "$EP" "$n.test")" = "192.0.2.1" ] || { echo "$n: $(ip4 "$EP" "$n.test")"; return 1; }
		# And what the cache keeps is the real answer.
		[ "$(ip4 "$EP" "$n.test")" = "192.0.2.1" ] || { echo "$n cached: $(ip4 "$EP" "$n.test")"; return 1; }
	done
}
check "a forged answer for every ID, from the upstream's address and port, is not accepted" inband_spoof_rejected

# The flood drowns the real answer: the question is asked again without 0x20 and answered, and
# the next question still goes with 0x20 (and its forgeries are still refused).
drowned_answer_keeps_0x20() {
	local a b
	a=$(ip4 "$EP" spoofdropaaaaaaaaaaaaaaaaa1.test)
	b=$(ip4 "$EP" spoofafterdropbbbbbbbbbbbbbb2.test)
	echo "drowned: $a; the next name: $b"
	[ "$a" = "192.0.2.1" ] && [ "$b" = "192.0.2.1" ]
}
check "a flood that drowns one real answer does not switch 0x20 off" drowned_answer_keeps_0x20

# An attacker outside floods the port a previous query used (read on the upstream), from the
# upstream's address and port (a raw socket), with every ID for a name being resolved.
raw_spoof_old_port() {
	[ "$(id -u)" -eq 0 ] || { echo "needs root for a raw socket"; return 1; }
	ip4 "$EP" slow.first.test >/dev/null
	local port
	port=$(grep -i "slow.first.test" "$WORK/f1.queries" | tail -1 | awk '{print $1}')
	[ -n "$port" ] || return 1
	python3 - "$port" "$F1" <<'PY' &
import socket, struct, sys
dport, sport = int(sys.argv[1]), int(sys.argv[2])
qname = b"".join(bytes([len(l)]) + l for l in b"slow.second.test".split(b".")) + b"\0"
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
src = dst = socket.inet_aton("127.0.0.1")
for rnd in range(2):
    for i in range(65536):
        dns = struct.pack("!HHHHHH", i, 0x8180, 1, 1, 0, 0) + qname + struct.pack("!HH", 1, 1)
        dns += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + socket.inet_aton("6.6.6.6")
        udp = struct.pack("!HHHH", sport, dport, 8 + len(dns), 0) + dns
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
        try:
            raw.sendto(ip + udp, ("127.0.0.1", 0))
        except OSError:
            pass
PY
	local spoofer=$!
	sleep 0.1
	local got
	got=$(ip4 "$EP" slow.second.test)
	wait "$spoofer"
	echo "answer: $got"
	[ "$got" = "192.0.2.1" ] && [ "$(ip4 "$EP" slow.second.test)" = "192.0.2.1" ]
}
check "a flood of every ID to a previous query's port is not accepted or cached" raw_spoof_old_port

# Questions are merged per worker, as Unbound merges per thread: one worker here.
EP1=$(free_port)
start_embargo merge "$EP1" --upstream "127.0.0.1:$F1" --redis "$NOREDIS" --timeout 8000 --threads 1
merged_questions() {
	: >"$WORK/f1.queries"
	seq 1 50 | xargs -P 50 -I{} kdig -p "$EP1" +timeout=4 +retry=0 @127.0.0.1 \
		slow.merge.test +short >"$WORK/merge.out"
	local answered upstream
	answered=$(grep -c '^192.0.2.1$' "$WORK/merge.out")
	upstream=$(grep -ci "slow\.merge\.test" "$WORK/f1.queries")
	echo "answered $answered of 50; upstream saw $upstream queries"
	[ "$answered" -eq 50 ] && [ "$upstream" -eq 1 ]
}
check "identical questions from 50 clients at once reach the upstream as one query" merged_questions
stop_embargo merge

stop_embargo spoof
spoof_counters() {
	local tried
	tried=$(counter spoof "mismatched,")
	echo "forged answers seen and ignored: $tried"
	[ "${tried:-0}" -gt 10000 ]
}
check "the forged answers reached embargo and were counted as ignored" spoof_counters

F2=$(free_port)
start_fake wrong "$F2" --mode wrongport
EP=$(free_port)
start_embargo wrong "$EP" --upstream "127.0.0.1:$F2" --redis "$NOREDIS" --timeout 1000
wrong_port_ignored() {
	local got
	got=$(ip4 "$EP" www.wrong.test)
	echo "answer: $got"
	[ "$got" = "status: SERVFAIL" ] && grep -qi "www.wrong.test" "$WORK/wrong.queries"
}
check "an answer from the upstream's address but another port is ignored" wrong_port_ignored
stop_embargo wrong

F3=$(free_port)
start_fake mangle "$F3" --mode mangle
EP=$(free_port)
start_embargo mangle "$EP" --upstream "127.0.0.1:$F3" --redis "$NOREDIS"
case_fallback() {
	[ "$(ip4 "$EP" Www.Mangled.Test)" = "192.0.2.1" ] || return 1
	stop_embargo mangle
	local n
	n=$(counter mangle "case mismatched")
	echo "case mismatched: $n"
	[ "${n:-0}" -ge 1 ]
}
check "an upstream that loses the letter case is asked again without 0x20" case_fallback

# Without 0x20 the question goes in lower case and the upstream's own case is accepted at once.
EP=$(free_port)
start_embargo mangleno20 "$EP" --upstream "127.0.0.1:$F3" --redis "$NOREDIS" --use-0x20 no \
	--timeout 8000
no_0x20_takes_any_case() {
	local start end got
	start=$(date +%s%N)
	got=$(ip4 "$EP" Www.Other-Mangled.Test)
	end=$(date +%s%N)
	echo "answer $got in $(((end - start) / 1000000)) ms"
	# Far below one attempt's timeout (2 s here), which refusing the case would cost.
	[ "$got" = "192.0.2.1" ] && [ $(((end - start) / 1000000)) -lt 1500 ]
}
check "with 0x20 off, an answer in the upstream's own case is taken at once" no_0x20_takes_any_case
stop_embargo mangleno20

DEAD=$(free_port)
start_fake dead "$DEAD" --mode silent
F4=$(free_port)
start_fake second "$F4" --answer 192.0.2.2
EP=$(free_port)
start_embargo dead "$EP" --upstream "127.0.0.1:$DEAD" --upstream "127.0.0.1:$F4" \
	--redis "$NOREDIS" --timeout 2000
dead_first_upstream() {
	local start=$SECONDS i ok=0
	for i in $(seq 1 100); do
		[ "$(ip4 "$EP" "n$i.dead.test")" = "192.0.2.2" ] && ok=$((ok + 1))
	done
	local took=$((SECONDS - start))
	# One attempt times out after 500 ms: 100 timeouts would take 50 s.
	echo "$ok of 100 answered in $took s"
	[ "$ok" -eq 100 ] && [ "$took" -le 15 ]
}
check "first upstream dead: 100 queries finish in far less than 100 timeouts" dead_first_upstream
stop_embargo dead

F5=$(free_port)
start_fake refusing "$F5" --mode refused
EP=$(free_port)
start_embargo refusing "$EP" --upstream "127.0.0.1:$F5" --upstream "127.0.0.1:$F4" \
	--redis "$NOREDIS"
refused_moves_on() {
	local i
	for i in $(seq 1 10); do
		local got
		got=$(ip4 "$EP" "r$i.refused.test")
		[ "$got" = "192.0.2.2" ] || { echo "r$i: $got"; return 1; }
	done
}
check "first upstream answering REFUSED: the answers come from the second" refused_moves_on
stop_embargo refusing

own_address_refused() {
	local p
	p=$(free_port)
	if "$EMBARGO" --listen "127.0.0.1:$p" --upstream "127.0.0.1:$p" --redis "$NOREDIS" \
		--snapshot off >"$WORK/own.log" 2>&1; then
		return 1
	fi
	grep -q "own listen address" "$WORK/own.log" || { cat "$WORK/own.log"; return 1; }
	if "$EMBARGO" --listen "0.0.0.0:$p" --upstream "127.0.0.1:$p" --redis "$NOREDIS" \
		--snapshot off >"$WORK/own.log" 2>&1; then
		return 1
	fi
	grep -q "own listen address" "$WORK/own.log"
}
check "an upstream that is embargo's own listen address is refused at start" own_address_refused

# The same loop that the start-up check cannot see: an IPv4-mapped IPv6 upstream address that
# reaches our IPv4 listener. The queries that come back from our own sockets are dropped.
loop_guard() {
	local p
	p=$(free_port)
	start_embargo loop "$p" --upstream "[::ffff:127.0.0.1]:$p" --redis "$NOREDIS" --timeout 1000
	local got
	got=$(ip4 "$p" www.loop.test)
	stop_embargo loop
	local looped queries
	looped=$(grep -oE "looped [0-9]+" "$WORK/loop.log" | grep -oE "[0-9]+")
	queries=$(grep -oE "stopped: [0-9]+ queries" "$WORK/loop.log" | grep -oE "[0-9]+")
	echo "answer $got; looped $looped; queries $queries"
	[ "$got" = "status: SERVFAIL" ] && [ "${looped:-0}" -ge 1 ] && [ "$queries" -eq 1 ]
}
check "queries from embargo's own upstream sockets are dropped (loop guard)" loop_guard

EP=$(free_port)
start_embargo snoop "$EP" --upstream "127.0.0.1:$F4" --redis "$NOREDIS" --allow-snoop 127.0.0.2
no_recursion() {
	[ "$(ip4 "$EP" www.cached.test)" = "192.0.2.2" ] || return 1
	local a b c
	a=$(q "$EP" @127.0.0.1 +norecurse www.cached.test | grep -oE "status: [A-Z]+")
	b=$(q "$EP" @127.0.0.1 -b 127.0.0.2 +norecurse www.cached.test +short)
	c=$(q "$EP" @127.0.0.1 -b 127.0.0.2 +norecurse www.not-cached.test | grep -oE "status: [A-Z]+")
	echo "RD=0 from an ordinary client: $a; from a snooper: '$b' (cached), $c (not cached)"
	[ "$a" = "status: REFUSED" ] && [ "$b" = "192.0.2.2" ] && [ "$c" = "status: REFUSED" ] &&
		! grep -qi "not-cached" "$WORK/second.queries"
}
check "queries without RD are refused, except the cache for clients allowed to snoop" no_recursion
stop_embargo snoop

# ---- TCP -----------------------------------------------------------------------------------

NSD=$(free_port)
start_nsd "$NSD"
EP=$(free_port)
start_embargo tcp "$EP" --upstream "127.0.0.1:$F1" --redis "$NOREDIS" --tcp-idle-timeout 3000 \
	--tcp-per-addr 8 --threads 1 --timeout 8000

tcp_fallback_reused() {
	: >"$WORK/f1.queries"
	# Each client from an address of its own: their retries over TCP (the answer is too big
	# for UDP) must not meet --tcp-per-addr 8, which a slow (sanitizer) build made them do.
	seq 1 20 | xargs -P 20 -I{} kdig -p "$EP" +timeout=$((4 * ${TIME_SCALE:-1})) +retry=0 \
		-b 127.0.1.{} @127.0.0.1 "big{}.test" TXT >"$WORK/big.out" 2>/dev/null
	local whole conns
	whole=$(grep -c "Received 6" "$WORK/big.out")
	conns=$(grep -c "tcp-connection" "$WORK/f1.queries")
	echo "$whole of 20 truncated answers fetched whole over $conns TCP connection(s)"
	[ "$whole" -eq 20 ] && [ "$conns" -eq 1 ]
}
check "truncated answers are fetched over one reused, pipelined TCP connection" tcp_fallback_reused

# An upstream that closes its TCP connections after each answer (as servers may when busy):
# the questions still waiting move to a new connection.
F6=$(free_port)
start_fake oneshot "$F6" --tcp-answers 1
EP6=$(free_port)
start_embargo oneshot "$EP6" --upstream "127.0.0.1:$F6" --redis "$NOREDIS" --threads 1 \
	--timeout 8000
tcp_fallback_reconnects() {
	seq 1 6 | xargs -P 6 -I{} kdig -p "$EP6" +timeout=9 +retry=0 @127.0.0.1 "big{}.test" TXT \
		>"$WORK/oneshot.out" 2>/dev/null
	local whole
	whole=$(grep -c "Received 6" "$WORK/oneshot.out")
	echo "$whole of 6 whole over $(grep -c tcp-connection "$WORK/oneshot.queries") connections"
	[ "$whole" -eq 6 ]
}
check "questions waiting on a TCP connection the upstream closes move to a new one" tcp_fallback_reconnects
stop_embargo oneshot

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# 10,000 pipelined queries for a cached 60 KB answer from a client that never reads.
tcp_never_reads() {
	kdig -p "$EP" +tcp +timeout=4 @127.0.0.1 big.test TXT >/dev/null || return 1
	local before after
	before=$(rss_kib "$PID_tcp")
	python3 - "$EP" <<'PY' &
import socket, struct, sys, time
port = int(sys.argv[1])
q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x03big\x04test\x00" + struct.pack("!HH", 16, 1)
msg = (struct.pack("!H", len(q)) + q) * 10000
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.setblocking(False)
sent = 0
deadline = time.time() + 8
while sent < len(msg) and time.time() < deadline:
    try:
        sent += s.send(msg[sent:sent + 65536])
    except BlockingIOError:
        time.sleep(0.05)
time.sleep(max(0, deadline - time.time()))
s.close()
PY
	local client=$!
	# Measured once embargo has stopped reading the client, its answers queued up to the bound:
	# the client's questions then pile up unread in the kernel (the socket's receive queue).
	# Should embargo never stop reading, RSS is measured after the wait all the same.
	local unread=0
	queued() { ss -Htn state established "( sport = :$EP )" | awk '$1 > m {m = $1} END {print m + 0}'; }
	wait_for 4 eval '[ "$(queued)" -ge 65536 ]' && unread=$(queued)
	after=$(rss_kib "$PID_tcp")
	local other
	other=$(kdig -p "$EP" +tcp +timeout=3 @127.0.0.1 www.other.test +short)
	wait "$client"
	echo "RSS before $before KiB, while abused $after KiB ($unread octets of questions unread); another client got '$other'"
	[ "$other" = "192.0.2.1" ] && [ $((after - before)) -lt 32768 ]
}
check "a TCP client that pipelines 10,000 queries and never reads: RSS bounded, others answered" tcp_never_reads

slowloris_cut() {
	python3 - "$EP" <<'PY'
import socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x03www\x04test\x00" + struct.pack("!HH", 1, 1)
msg = struct.pack("!H", len(q)) + q
start = time.time()
for b in msg:
    try:
        s.send(bytes([b]))
    except OSError:
        break
    time.sleep(1)
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            break
    except BlockingIOError:
        pass
    except OSError:
        # A reset is a cut too: closed while a byte just sent was unread (a race with the
        # deadline's timer), the kernel answers RST rather than FIN.
        break
    s.setblocking(True)
took = time.time() - start
print("cut after %.1f s" % took)
sys.exit(0 if took < 6 else 1)
PY
}
check "a client sending a byte a second is cut off by the message deadline" slowloris_cut

tcp_per_address_cap() {
	python3 - "$EP" <<'PY'
import socket, struct, sys, time
port = int(sys.argv[1])
conns = []
for i in range(20):
    conns.append(socket.create_connection(("127.0.0.1", port)))
time.sleep(0.5)
alive = 0
for s in conns:
    s.setblocking(False)
    try:
        alive += 0 if s.recv(1) == b"" else 1
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
# Another address still connects and is answered.
q = struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\x03www\x04test\x00" + struct.pack("!HH", 1, 1)
o = socket.socket()
o.bind(("127.0.0.2", 0))
o.connect(("127.0.0.1", port))
o.sendall(struct.pack("!H", len(q)) + q)
o.settimeout(3)
ans = o.recv(2)
print("connections from 127.0.0.1 kept open: %d of 20; 127.0.0.2 answered: %s" % (alive, len(ans) == 2))
sys.exit(0 if alive == 8 and len(ans) == 2 else 1)
PY
}
check "a connection flood from one address hits its cap while another address is answered" tcp_per_address_cap

half_close_answered() {
	python3 - "$EP" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
q = struct.pack("!HHHHHH", 11, 0x0100, 1, 0, 0, 0) + b"\x04slow\x04half\x04test\x00" + struct.pack("!HH", 1, 1)
s.sendall(struct.pack("!H", len(q)) + q)
s.shutdown(socket.SHUT_WR)
s.settimeout(5)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
ok = (len(data) > 14 and struct.unpack("!H", data[2:4])[0] == 11 and data[5] & 0x0F == 0
      and struct.unpack("!H", data[8:10])[0] == 1)
print("answer after half-close: %d octets, rcode %d" % (len(data), data[5] & 0x0F if len(data) > 5 else -1))
sys.exit(0 if ok else 1)
PY
}
check "a half-closed TCP connection still gets the answer in flight" half_close_answered
stop_embargo tcp

EP=$(free_port)
start_embargo tcpfull "$EP" --upstream "127.0.0.1:$F1" --redis "$NOREDIS" --threads 1 \
	--tcp-max-conns 4
tcp_full_evicts_oldest_idle() {
	python3 - "$EP" <<'PY'
import socket, struct, sys, time
port = int(sys.argv[1])
q = struct.pack("!HHHHHH", 5, 0x0100, 1, 0, 0, 0) + b"\x03www\x04full\x04test\x00" + struct.pack("!HH", 1, 1)
def closed(s):
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
idle = []
for i in range(4):
    s = socket.socket()
    s.bind(("127.0.0.%d" % (2 + i), 0))
    s.connect(("127.0.0.1", port))
    idle.append(s)
    time.sleep(0.05)
n = socket.socket()
n.bind(("127.0.0.9", 0))
n.connect(("127.0.0.1", port))
n.sendall(struct.pack("!H", len(q)) + q)
n.settimeout(3)
answered = len(n.recv(2)) == 2
time.sleep(0.2)
state = [closed(s) for s in idle]
print("new client answered: %s; idle connections closed, oldest first: %s" % (answered, state))
sys.exit(0 if answered and state == [True, False, False, False] else 1)
PY
}
check "a full worker closes its oldest idle TCP connection for a new client" tcp_full_evicts_oldest_idle
stop_embargo tcpfull

# A TCP client's questions fill a small pool; each new one gives up (jostles) an old one of the
# same connection, whose SERVFAIL re-enters that connection while it is being read.
EP=$(free_port)
start_embargo jostle "$EP" --upstream "127.0.0.1:$F1" --redis "$NOREDIS" --threads 1 \
	--outgoing-range 128 --jostle-timeout 0 --client-pending 1000 --timeout 400
tcp_jostled_own_questions() {
	python3 - "$EP" <<'PY' || return 1
import socket, struct, sys
port = int(sys.argv[1])
def q(i):
    name = b"".join(bytes([len(l)]) + l for l in (b"j%d" % i, b"hole", b"test")) + b"\0"
    m = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1)
    return struct.pack("!H", len(m)) + m
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"".join(q(i) for i in range(200)))
s.settimeout(5)
got = 0
buf = b""
while got < 150:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
        n = struct.unpack("!H", buf[:2])[0]
        buf = buf[2 + n:]
        got += 1
print("answers (SERVFAIL for the jostled): %d" % got)
sys.exit(0 if got >= 150 else 1)
PY
	kill -0 "$PID_jostle" && [ "$(ip4 "$EP" www.after-jostle.test)" = "192.0.2.1" ]
}
check "questions of one TCP connection that jostle each other leave the daemon serving" tcp_jostled_own_questions
stop_embargo jostle

# ---- Pending pool share ----------------------------------------------------------------------

EP=$(free_port)
# No jostling here (it would make room too): the share alone must keep the pool open.
start_embargo share "$EP" --upstream "127.0.0.1:$F1" --redis "$NOREDIS" --threads 1 \
	--client-pending 100 --timeout 6000 --jostle-timeout 60000
pending_share() {
	# 127.0.0.1 asks 5000 names under a black hole at once (the pool holds 4096); 127.0.0.2
	# asks an ordinary name. The flood's questions would hold the pool for 6 s: the other
	# client's 4 s leave room for a slow (sanitizer, busy CI) daemon without hiding a full pool.
	python3 - "$EP" <<'PY' &
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(5000):
    name = b"".join(bytes([len(l)]) + l for l in (b"r%d" % i, b"hole", b"test")) + b"\0"
    q = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1)
    s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
time.sleep(6)
PY
	local flood=$!
	# The flood holds its share once its questions reach the upstream.
	wait_for 5 eval '[ "$(grep -ciE " r[0-9]+\.hole\.test" "$WORK/f1.queries")" -ge 100 ]' ||
		{ echo "the flood never reached the upstream"; return 1; }
	local got
	got=$(kdig -p "$EP" +timeout=4 +retry=0 @127.0.0.1 -b 127.0.0.2 www.share.test +short)
	wait "$flood"
	echo "other client got '$got'"
	[ "$got" = "192.0.2.1" ]
}
check "one client's flood of black-holed names leaves the pending pool to others" pending_share
stop_embargo share
share_counted() {
	local n
	n=$(grep -oE "[0-9]+ servfail" "$WORK/share.log" | grep -oE "^[0-9]+")
	echo "servfail answers: $n"
	[ "${n:-0}" -ge 4800 ]
}
check "queries over the client's share are answered SERVFAIL at once" share_counted

# ---- Clients from elsewhere: a network namespace ---------------------------------------------

NS="embargo-t$$"
# Subnets of 198.18.0.0/15 of this run's own, reserved in lib.sh's ledger (two scripts or runs
# at once must not share routes).
A0=$(free_subnet) # refused network: .1 and .3 here, .2 in the namespace
A1=$(free_subnet) # allowed
A2=$(free_subnet) # allowed, another prefix
V6="fd00:${A0//./:}"
netns_up() {
	[ "$(id -u)" -eq 0 ] || return 1
	ip netns add "$NS" || return 1
	ip link add "veth$$h" type veth peer name "veth$$c" netns "$NS" || return 1
	ip addr add $A0.1/24 dev "veth$$h"
	ip addr add $A0.3/24 dev "veth$$h"
	ip addr add $A1.1/24 dev "veth$$h"
	ip addr add $A2.1/24 dev "veth$$h"
	ip addr add $V6::1/64 dev "veth$$h" nodad
	ip addr add $V6::3/64 dev "veth$$h" nodad
	ip link set "veth$$h" up
	ip -n "$NS" addr add $A0.2/24 dev "veth$$c"
	ip -n "$NS" addr add $A1.2/24 dev "veth$$c"
	ip -n "$NS" addr add $A2.2/24 dev "veth$$c"
	ip -n "$NS" addr add $V6::2/64 dev "veth$$c" nodad
	ip -n "$NS" link set "veth$$c" up
	ip -n "$NS" link set lo up
	ip netns exec "$NS" true
}
netns_down() {
	ip link del "veth$$h" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	return 0
}
trap 'netns_down; cleanup' EXIT
nsq() { # SERVER PORT ARGS...: kdig from inside the namespace
	local server=$1 port=$2
	shift 2
	ip netns exec "$NS" kdig @"$server" -p "$port" +timeout=2 +retry=0 "$@"
}

if netns_up; then
	EP=$(free_port)
	start_embargo acl "$EP" --listen "0.0.0.0:$EP" --listen "[::]:$EP" --upstream "127.0.0.1:$F1" --redis "$NOREDIS" \
		--allow "$A1.0/24" --allow "$A2.0/24" --ratelimit 50 --ratelimit-slip 2
	outside_refused() {
		local out
		out=$(nsq "$A0.1" "$EP" -b "$A0.2" www.acl.test +edns)
		grep -q "status: REFUSED" <<<"$out" && grep -q "EDE: 18" <<<"$out" || { echo "$out"; return 1; }
		out=$(nsq "$A0.1" "$EP" -b "$A1.2" www.acl.test)
		grep -q "status: NOERROR" <<<"$out" && grep -q "192.0.2.1" <<<"$out"
	}
	check "a client outside the allowed networks gets REFUSED with EDE 18; one inside is answered" outside_refused

	pktinfo_source() {
		# A wildcard listener answers from the address asked: kdig takes an answer only from it.
		nsq "$A0.3" "$EP" -b "$A1.2" www.second-address.test +short | grep -qx 192.0.2.1 &&
			nsq "$A1.1" "$EP" -b "$A1.2" www.third-address.test +short | grep -qx 192.0.2.1 &&
			nsq "$V6::3" "$EP" www.v6-second.test +short | grep -qx 192.0.2.1 &&
			nsq "$V6::1" "$EP" www.v6-first.test +short | grep -qx 192.0.2.1
	}
	check "a wildcard listener answers from the address the query was sent to" pktinfo_source

	ratelimit_prefix() {
		# $A1.2 floods 1000 queries in a second: at most the limit (50) plus the slipped
		# half of the rest come back, and those are truncated and empty. Meanwhile a client of
		# another prefix ($A2.2) is answered.
		ip netns exec "$NS" python3 - "$EP" "$A1" >"$WORK/rate.out" <<'PY' &
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2] + ".2", 0))
s.settimeout(0.5)
for i in range(1000):
    q = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + b"\x03www\x04rate\x04test\x00" + struct.pack("!HH", 1, 1)
    s.sendto(q, (sys.argv[2] + ".1", int(sys.argv[1])))
full = tc = 0
try:
    while True:
        a, _ = s.recvfrom(4096)
        if a[2] & 0x02:
            tc += 1
        else:
            full += 1
except socket.timeout:
    pass
print(full, tc)
PY
		local flood=$!
		local other
		other=$(nsq "$A2.1" "$EP" -b "$A2.2" www.rate-other.test +short)
		wait "$flood"
		local full tc
		read -r full tc <"$WORK/rate.out"
		echo "flooding prefix: $full full answers, $tc truncated; another prefix got '$other'"
		[ "$full" -le 120 ] && [ "$tc" -ge 100 ] && [ "$tc" -le 600 ] && [ "$other" = "192.0.2.1" ]
	}
	check "rate limiting caps a flood from one prefix, slips truncated answers, spares others" ratelimit_prefix
	stop_embargo acl
else
	echo "# no network namespace here (not root?): access-list, rate-limit and PKTINFO tests fail"
	not_ok "network namespace for clients from elsewhere"
fi

finish
