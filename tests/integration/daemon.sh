#!/usr/bin/env bash
# The daemon's life as a service: it tells systemd when it is ready and when it stops
# (sd_notify), and SIGTERM stops it cleanly: no new query is read, the questions already upstream
# are answered (for up to 2 s), and it exits 0. Real embargo, tests/integration/fakedns.py as
# the upstream, kdig as the client.
# The checks are independent: each starts what it uses (ONLY= runs any of them alone). They share
# one fake upstream, whose query log each check reads only for the names it asked itself.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
. "$srcdir/tests/integration/lib.sh"

need_all
need dnsperf dnsperf
NOREDIS="redis://127.0.0.1:$(free_port)" # Nobody listens: the bundled list is enforced.

F=$(free_port)
start_fake fake "$F" --delay-ms 1000

ms() { date +%s%3N; }

# sd_notify: READY=1 once serving, STOPPING=1 at SIGTERM, on the socket systemd would pass.
notify() {
	grep -q "HAVE_LIBSYSTEMD 1" "$(dirname "$EMBARGO")/../config.h" 2>/dev/null ||
		{ echo "built without libsystemd: nothing to test"; return 0; }
	python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
with open(sys.argv[2], 'a') as f:
    while True:
        try:
            f.write(s.recv(4096).decode() + '\n'); f.flush()
        except socket.timeout:
            break" "$WORK/notify.sock" "$WORK/notify.log" &
	PIDS+=($!)
	wait_for 5 test -S "$WORK/notify.sock" || return 1
	local p
	p=$(free_port)
	NOTIFY_SOCKET="$WORK/notify.sock" start_embargo notified "$p" --upstream "127.0.0.1:$F" \
		--redis "$NOREDIS"
	wait_for 5 grep -q "READY=1" "$WORK/notify.log" || { cat "$WORK/notify.log"; return 1; }
	kill -TERM "$PID_notified"
	wait "$PID_notified"
	wait_for 5 grep -q "STOPPING=1" "$WORK/notify.log" || { cat "$WORK/notify.log"; return 1; }
	cat "$WORK/notify.log"
}
check "sd_notify: READY=1 when serving, STOPPING=1 at SIGTERM" notify

# SIGTERM while a question is upstream (the fake upstream holds "slow" names 1 s): the client
# still gets its answer, and embargo exits 0 soon after.
# stop_timed NAME: SIGTERM to embargo NAME and wait; sets RC (its exit status) and TOOK (ms).
stop_timed() {
	local pid t0
	eval "pid=\$PID_$1"
	t0=$(ms)
	kill -TERM "$pid"
	wait "$pid"
	RC=$?
	TOOK=$(($(ms) - t0))
	echo "exit status $RC, $TOOK ms after SIGTERM"
}

drain() {
	local p out
	p=$(free_port)
	start_embargo drain "$p" --upstream "127.0.0.1:$F" --redis "$NOREDIS" --timeout 8000
	q "$p" @127.0.0.1 slow.drain.example A >"$WORK/drain.out" &
	local client=$!
	# SIGTERM once the question is upstream (the fake upstream logs what it reads).
	wait_for 5 grep -qi "slow.drain.example" "$WORK/fake.queries" || return 1
	stop_timed drain
	wait "$client"
	out=$(cat "$WORK/drain.out")
	grep -q "status: NOERROR" <<<"$out" && grep -q "192.0.2.1" <<<"$out" || { echo "$out"; return 1; }
	[ "$RC" -eq 0 ] && [ "$TOOK" -lt 2500 ] || return 1
	grep -q "SIGTERM received: stopping" "$WORK/drain.log"
}
check "SIGTERM: the question already upstream is answered, then exit 0" drain

# An upstream that never answers holds the stop for 2 s at most.
bounded() {
	local p
	p=$(free_port)
	start_embargo bounded "$p" --upstream "127.0.0.1:$F" --redis "$NOREDIS" --timeout 10000
	q "$p" @127.0.0.1 x.hole A +timeout=1 >/dev/null &
	wait_for 5 grep -qi "x.hole" "$WORK/fake.queries" || return 1
	stop_timed bounded
	[ "$RC" -eq 0 ] && [ "$TOOK" -lt 3000 ] && [ "$TOOK" -ge 1800 ]
}
check "SIGTERM with a question that is never answered: exit 0 after 2 s" bounded

# Started as root: the sockets are bound, then embargo runs as --user with no capability left,
# and still answers.
privileges() {
	local p status
	p=$(free_port)
	start_embargo dropped "$p" --upstream "127.0.0.1:$F" --redis "$NOREDIS" --user nobody
	status=$(cat "/proc/$PID_dropped/status")
	grep "^Uid:\|^Gid:\|^CapEff:\|^CapPrm:\|^Groups:" <<<"$status"
	grep -qE "^Uid:\s+65534\s+65534\s+65534\s+65534$" <<<"$status" || return 1
	grep -qE "^Gid:\s+65534\s+65534\s+65534\s+65534$" <<<"$status" || return 1
	grep -qE "^CapEff:\s+0+$" <<<"$status" && grep -qE "^CapPrm:\s+0+$" <<<"$status" || return 1
	grep -qE "^Groups:\s*$" <<<"$status" || return 1
	q "$p" @127.0.0.1 localhost A +short | grep -qx 127.0.0.1 || { echo "no answer"; return 1; }
	grep -q "running as nobody" "$WORK/dropped.log" || return 1
	"$EMBARGO" --listen "127.0.0.1:$(free_port)" --upstream "127.0.0.1:$F" --redis "$NOREDIS" \
		--snapshot off --user no-such-user-here 2>"$WORK/nouser.err"
	[ $? -eq 1 ] && grep -q "no such user" "$WORK/nouser.err" || { cat "$WORK/nouser.err"; return 1; }
}
if [ "$(id -u)" -eq 0 ]; then
	check "started as root: runs as --user with no capability, and answers" privileges
else
	skip "started as root: runs as --user with no capability (not root: nothing to drop)"
fi

# --check-config prints the effective settings as a config file that reads back the same;
# a bad file exits 2 with the line.
check_config() {
	printf 'upstream 192.0.2.53\nlocal-data printer.lan A 192.168.1.5\ndeny-mode sinkhole\n' \
		>"$WORK/c1.conf"
	"$EMBARGO" --check-config "$WORK/c1.conf" --ratelimit 50 >"$WORK/c1.out" || return 1
	grep -qx "deny-mode sinkhole" "$WORK/c1.out" && grep -qx "ratelimit 50" "$WORK/c1.out" &&
		grep -qx "local-data printer.lan A 192.168.1.5" "$WORK/c1.out" || { cat "$WORK/c1.out"; return 1; }
	"$EMBARGO" --check-config "$WORK/c1.out" >"$WORK/c2.out" || return 1
	diff "$WORK/c1.out" "$WORK/c2.out" || return 1
	printf 'upstream 192.0.2.53\nmax-ttl soon\n' >"$WORK/bad.conf"
	"$EMBARGO" --check-config "$WORK/bad.conf" 2>"$WORK/bad.err"
	[ $? -eq 2 ] && grep -q "bad.conf:2: --max-ttl" "$WORK/bad.err" || { cat "$WORK/bad.err"; return 1; }
	echo "$(wc -l <"$WORK/c1.out") lines"
}
check "--check-config: effective settings that read back the same; a bad file exits 2" check_config

# SIGHUP during a dnsperf run: a new upstream and a new deny mode are taken on, dnsperf loses
# no question, and both upstreams were asked; a bad file then keeps the running configuration.
reload() {
	local g p
	g=$(free_port)
	start_fake fake2 "$g" --answer 192.0.2.2
	printf 'upstream 127.0.0.1:%s\ndeny-mode nxdomain\n' "$F" >"$WORK/live.conf"
	p=$(free_port)
	start_embargo live "$p" --config "$WORK/live.conf" --redis "$NOREDIS"
	q "$p" @127.0.0.1 dl.kaspersky.com A | grep -q "status: NXDOMAIN" || return 1
	# 2,000 names no cache holds, and a denied one every 100th, at 1,000 a second: the reload
	# comes half-way through dnsperf's run.
	awk 'BEGIN { for (i = 0; i < 2000; i++) print (i % 100 == 50 ? "dl.kaspersky.com A" : "q" i ".stream.example A") }' \
		>"$WORK/stream.txt"
	dnsperf -s 127.0.0.1 -p "$p" -d "$WORK/stream.txt" -n 1 -c 1 -Q 1000 -t 2 >"$WORK/stream.out" 2>&1 &
	local client=$!
	sleep 1
	printf 'upstream 127.0.0.1:%s\ndeny-mode sinkhole\n' "$g" >"$WORK/live.conf"
	kill -HUP "$PID_live"
	wait "$client"
	grep -E "Queries (sent|completed|lost)" "$WORK/stream.out"
	local old new
	old=$(grep -ci "stream.example" "$WORK/fake.queries")
	new=$(grep -ci "stream.example" "$WORK/fake2.queries")
	echo "asked of the old upstream: $old, of the new: $new"
	grep -q "Queries sent: *2000" "$WORK/stream.out" &&
		grep -q "Queries completed: *2000 " "$WORK/stream.out" &&
		grep -q "Queries lost: *0 " "$WORK/stream.out" &&
		[ "$old" -gt 0 ] && [ "$new" -gt 0 ] && [ $((old + new)) -ge 1980 ] || return 1
	q "$p" @127.0.0.1 dl.kaspersky.com A +short | grep -qx 0.0.0.0 || { echo "deny mode"; return 1; }
	grep -q "SIGHUP: configuration read again: upstreams 127.0.0.1:$g" "$WORK/live.log" ||
		{ echo "no reload line for $g"; return 1; }
	# A bad file: said, and the running configuration stays.
	printf 'upstream 127.0.0.1:%s\nmax-ttl soon\n' "$F" >"$WORK/live.conf"
	kill -HUP "$PID_live"
	wait_for 5 grep -q "the running configuration stays" "$WORK/live.log" || { echo "bad file"; return 1; }
	# A file read while half written: cut in a line, or without its last lines. Refused (a cut
	# line is another value; a lost one would fall back to its default).
	printf 'upstream 127.0.0.1:%s\ndeny-mode sinkhole\nmax-ttl 36' "$F" >"$WORK/live.conf"
	kill -HUP "$PID_live"
	wait_for 5 grep -q "does not end with a newline" "$WORK/live.log" || { echo "cut line"; return 1; }
	printf 'upstream 127.0.0.1:%s\n' "$F" >"$WORK/live.conf"
	kill -HUP "$PID_live"
	wait_for 5 grep -q "no longer sets deny-mode" "$WORK/live.log" || { echo "lost line"; return 1; }
	q "$p" @127.0.0.1 dl.kaspersky.com A +short | grep -qx 0.0.0.0 || { echo "deny mode after"; return 1; }
	q "$p" @127.0.0.1 after.stream.example A +short | grep -qx 192.0.2.2 || { echo "upstream after"; return 1; }
	grep "SIGHUP" "$WORK/live.log" | sed 's/^[^ ]* //'
}
check "SIGHUP: a new upstream and deny mode taken on without losing a query; a bad file is refused" reload

# A TCP client whose question waits on the upstream side a reload replaced goes away: the old
# side's answer must reach no one (under ASan a use of the freed connection aborts the daemon).
reload_tcp_gone() {
	local g p
	g=$(free_port)
	start_fake fake3 "$g" --answer 192.0.2.3
	printf 'upstream 127.0.0.1:%s\ntimeout 8000\n' "$F" >"$WORK/gone.conf"
	p=$(free_port)
	start_embargo gone "$p" --config "$WORK/gone.conf" --redis "$NOREDIS" --threads 1
	python3 - "$p" <<'PY' &
import socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
name = b"\4slow\4gone\7example\0"
q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + name + b"\0\1\0\1"
s.sendall(struct.pack("!H", len(q)) + q)
time.sleep(0.6)
# A reset, not a half-close (which embargo would answer before it closes).
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
PY
	local client=$!
	wait_for 5 grep -qi "slow.gone.example" "$WORK/fake.queries" || return 1
	printf 'upstream 127.0.0.1:%s\ntimeout 8000\n' "$g" >"$WORK/gone.conf"
	kill -HUP "$PID_gone"
	wait "$client"
	sleep 1 # The old side answers now (the fake upstream holds "slow" names 1 s).
	q "$p" @127.0.0.1 after.gone.example A +short | grep -qx 192.0.2.3 || { echo "not answering"; return 1; }
	kill -0 "$PID_gone" || { echo "embargo died"; return 1; }
}
check "a TCP client gone after a reload: the replaced upstream side's answer reaches no one" reload_tcp_gone

# SIGHUP with another Redis and prefix: the old link closes, the new one loads (its first load
# under the held-load rule like any), and changes then come from the new Redis only.
# two_redis: two fresh Redis servers, their ports in r1 and r2 (the caller's locals).
two_redis() {
	r1=$(free_port)
	r2=$(free_port)
	start_redis "$r1"
	start_redis "$r2"
}

reload_redis() {
	local r1 r2 p tool=$(dirname "$EMBARGO")/../tool/embargo-policy
	two_redis
	redis-cli -p "$r1" sadd embargo:deny kaspersky.com one.example >/dev/null
	redis-cli -p "$r2" sadd two:deny kaspersky.com one.example two.example >/dev/null
	POLICY_TOOL=$tool consent_first --redis "redis://127.0.0.1:$r1" || return 1
	POLICY_TOOL=$tool consent_first --redis "redis://127.0.0.1:$r2" --redis-prefix two || return 1
	printf 'upstream 127.0.0.1:%s\nredis redis://127.0.0.1:%s\n' "$F" "$r1" >"$WORK/rr.conf"
	p=$(free_port)
	start_embargo rr "$p" --config "$WORK/rr.conf"
	wait_for 5 grep -q "policy loaded from redis" "$WORK/rr.log" || { echo "first load"; return 1; }
	by_policy "$p" www.one.example && ! by_policy "$p" www.two.example || { echo "before"; return 1; }
	printf 'upstream 127.0.0.1:%s\nredis redis://127.0.0.1:%s\nredis-prefix two\n' "$F" "$r2" \
		>"$WORK/rr.conf"
	kill -HUP "$PID_rr"
	wait_for 5 by_policy "$p" www.two.example || { echo "two.example not denied"; return 1; }
	grep -q "SIGHUP: syncing from redis://127.0.0.1:$r2/0, prefix two" "$WORK/rr.log" || return 1
	redis-cli -p "$r2" sadd two:deny three.example >/dev/null
	wait_for 5 by_policy "$p" www.three.example || { echo "no change from the new redis"; return 1; }
	redis-cli -p "$r1" sadd embargo:deny four.example >/dev/null
	sleep 1.5
	! by_policy "$p" www.four.example || { echo "a change from the old redis"; return 1; }
	# An empty Redis (a wrong URL, say) lifts nothing: the policy in force stays.
	local r3
	r3=$(free_port)
	start_redis "$r3"
	printf 'upstream 127.0.0.1:%s\nredis redis://127.0.0.1:%s\nredis-prefix embargo\n' "$F" "$r3" \
		>"$WORK/rr.conf"
	kill -HUP "$PID_rr"
	wait_for 5 grep -q "redis has none of" "$WORK/rr.log" || { echo "not kept"; return 1; }
	by_policy "$p" www.three.example && by_policy "$p" www.kaspersky.com || { echo "lifted"; return 1; }
	q "$p" @127.0.0.1 CH TXT policy.embargo. +short | grep -q "held=redis-empty" ||
		{ echo "the empty redis is not shown"; return 1; }
	# Back to a Redis that holds the policy in force: the empty one's hold is no longer shown.
	printf 'upstream 127.0.0.1:%s\nredis redis://127.0.0.1:%s\nredis-prefix two\n' "$F" "$r2" \
		>"$WORK/rr.conf"
	kill -HUP "$PID_rr"
	wait_for 5 eval "q $p @127.0.0.1 CH TXT policy.embargo. +short | grep -q source=redis" &&
		wait_for 5 eval "! q $p @127.0.0.1 CH TXT policy.embargo. +short | grep -q held=" ||
		{ echo "a hold of the old redis still shown"; q "$p" @127.0.0.1 CH TXT policy.embargo. +short; return 1; }
	grep "SIGHUP\|policy loaded\|has none" "$WORK/rr.log" | sed 's/^[^ ]* //'
}
check "SIGHUP: another Redis and prefix taken on; changes then come from the new one only" reload_redis

# A held load's merge is in force (a Redis that lost most rules and gained one) when SIGHUP
# moves to a Redis that has policy keys but no deny key: the new link measures against the deny
# rules in force when the hold began, and holds it as a missing deny key.
reload_redis_held() {
	local r1 r2 p tool=$(dirname "$EMBARGO")/../tool/embargo-policy
	two_redis
	redis-cli -p "$r1" sadd embargo:deny $(seq -f "r%g.example" 1 20) >/dev/null
	POLICY_TOOL=$tool consent_first --redis "redis://127.0.0.1:$r1" || return 1
	redis-cli -p "$r2" sadd embargo:allow ok.example >/dev/null
	printf 'upstream 127.0.0.1:%s\nredis redis://127.0.0.1:%s\n' "$F" "$r1" >"$WORK/rh.conf"
	p=$(free_port)
	start_embargo rh "$p" --config "$WORK/rh.conf"
	wait_for 5 grep -q "policy loaded from redis" "$WORK/rh.log" || { echo "first load"; return 1; }
	redis-cli -p "$r1" srem embargo:deny $(seq -f "r%g.example" 1 10) >/dev/null
	redis-cli -p "$r1" sadd embargo:deny new.example >/dev/null
	wait_for 5 eval "q $p @127.0.0.1 CH TXT policy.embargo. +short | grep -q 'source=held-merge deny=21.*held=shrink held_removes=10/20'" ||
		{ echo "no held merge"; q "$p" @127.0.0.1 CH TXT policy.embargo. +short; return 1; }
	printf 'upstream 127.0.0.1:%s\nredis redis://127.0.0.1:%s\n' "$F" "$r2" >"$WORK/rh.conf"
	kill -HUP "$PID_rh"
	wait_for 5 eval "q $p @127.0.0.1 CH TXT policy.embargo. +short | grep -q 'held=deny-key-missing held_removes=21/20'" ||
		{ echo "not held as a missing deny key of 20"; q "$p" @127.0.0.1 CH TXT policy.embargo. +short; return 1; }
	by_policy "$p" www.r1.example && by_policy "$p" www.new.example || { echo "lifted"; return 1; }
	q "$p" @127.0.0.1 CH TXT policy.embargo. +short
}
check "SIGHUP to a Redis without a deny key while a held merge is in force: held against the rules in force when the hold began" reload_redis_held

# SIGHUP with other listen addresses: the new one opens (UDP and TCP), the dropped one closes
# while a TCP connection it accepted goes on, and the one kept serves a dnsperf run through the
# reload without losing a question. A new address another program holds, or an upstream that is
# one of our own listen addresses, is refused and the running configuration stays.
reload_listen() {
	local p1 p2 p3 p4 pid
	p1=$(free_port)
	p2=$(free_port)
	p3=$(free_port)
	printf 'upstream 127.0.0.1:%s\nlisten 127.0.0.1:%s\nlisten 127.0.0.1:%s\n' "$F" "$p1" "$p2" \
		>"$WORK/ls.conf"
	"$EMBARGO" --config "$WORK/ls.conf" --redis "$NOREDIS" --snapshot off --threads 2 \
		>"$WORK/ls.log" 2>&1 &
	pid=$!
	PIDS+=($pid)
	wait_for 10 grep -q "serving on" "$WORK/ls.log" || { cat "$WORK/ls.log"; return 1; }
	# A TCP connection to the address about to go: asks once before the reload, once after.
	/usr/bin/python3 - "$p2" "$WORK/ls.go" >"$WORK/ls.tcp" 2>&1 <<'PY' &
import os, socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(5)
def ask(qid):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\x09localhost\x00\x00\x01\x00\x01"
    s.sendall(struct.pack("!H", len(q)) + q)
    n = struct.unpack("!H", s.recv(2))[0]
    a = b""
    while len(a) < n:
        a += s.recv(n - len(a))
    print("answer", struct.unpack("!H", a[:2])[0], "rcode", a[3] & 15, flush=True)
ask(1)
for _ in range(600):  # At most 30 s: a failed test never says go.
    if os.path.exists(sys.argv[2]):
        break
    time.sleep(0.05)
ask(2)
PY
	local client=$!
	PIDS+=($client)
	wait_for 5 grep -q "answer 1 rcode 0" "$WORK/ls.tcp" || { cat "$WORK/ls.tcp"; return 1; }
	awk 'BEGIN { for (i = 0; i < 1500; i++) print "localhost A" }' >"$WORK/ls.txt"
	dnsperf -s 127.0.0.1 -p "$p1" -d "$WORK/ls.txt" -n 1 -c 1 -Q 1000 -t 2 >"$WORK/ls.perf" 2>&1 &
	local perf=$!
	# A question upstream through the address about to go (the fake holds "slow" names 1 s): its
	# answer comes after the socket closed and is dropped (under ASan, a use of the freed
	# listener would abort the daemon).
	kdig -p "$p2" +timeout=3 +retry=0 @127.0.0.1 slow.ls.example A >"$WORK/ls.slow" 2>&1 &
	local slow=$!
	sleep 0.5
	p4=$(free_port)
	printf 'upstream 127.0.0.1:%s\nlisten 127.0.0.1:%s\nlisten 127.0.0.1:%s\nlisten 0.0.0.0:%s\n' \
		"$F" "$p1" "$p3" "$p4" >"$WORK/ls.conf"
	grep -qi "slow.ls.example" "$WORK/fake.queries" || { echo "the slow question is not upstream"; return 1; }
	kill -HUP "$pid"
	wait_for 5 grep -q "listening now on 127.0.0.1:$p3, 0.0.0.0:$p4 too" "$WORK/ls.log" || { echo "no open line"; return 1; }
	grep -q "no longer listening on 127.0.0.1:$p2" "$WORK/ls.log" || { echo "no close line"; return 1; }
	wait "$perf"
	grep -E "Queries (sent|completed|lost)" "$WORK/ls.perf"
	grep -q "Queries completed: *1500 " "$WORK/ls.perf" && grep -q "Queries lost: *0 " "$WORK/ls.perf" ||
		{ echo "the kept listener lost questions"; return 1; }
	q "$p3" @127.0.0.1 localhost A +short | grep -qx 127.0.0.1 || { echo "new UDP"; return 1; }
	q "$p3" @127.0.0.1 localhost A +short +tcp | grep -qx 127.0.0.1 || { echo "new TCP"; return 1; }
	# A wildcard added: its answers leave from the address asked (kdig takes no other source).
	q "$p4" @127.0.0.1 localhost A +short | grep -qx 127.0.0.1 || { echo "new wildcard"; return 1; }
	q "$p1" @127.0.0.1 localhost A +short +tcp | grep -qx 127.0.0.1 || { echo "kept TCP"; return 1; }
	! kdig -p "$p2" +timeout=1 +retry=0 @127.0.0.1 localhost A +short | grep -q 127.0.0.1 ||
		{ echo "the dropped address still answers UDP"; return 1; }
	! kdig -p "$p2" +timeout=1 +retry=0 +tcp @127.0.0.1 localhost A +short | grep -q 127.0.0.1 ||
		{ echo "the dropped address still accepts TCP"; return 1; }
	touch "$WORK/ls.go"
	wait "$client"
	wait "$slow"
	! grep -q "status: NOERROR" "$WORK/ls.slow" || { echo "answered through a closed socket"; return 1; }
	grep -q "answer 2 rcode 0" "$WORK/ls.tcp" || { echo "the open TCP connection was cut"; cat "$WORK/ls.tcp"; return 1; }
	# An address another program holds (a second fake upstream's): refused, nothing changes.
	local g
	g=$(free_port)
	start_fake lsheld "$g"
	printf 'upstream 127.0.0.1:%s\nlisten 127.0.0.1:%s\nlisten 127.0.0.1:%s\ndeny-mode sinkhole\n' \
		"$F" "$p3" "$g" >"$WORK/ls.conf"
	kill -HUP "$pid"
	wait_for 5 grep -q "cannot listen on UDP 127.0.0.1:$g: Address already in use (another program holds it): the running configuration stays" "$WORK/ls.log" ||
		{ grep SIGHUP "$WORK/ls.log"; return 1; }
	q "$p1" @127.0.0.1 localhost A +short | grep -qx 127.0.0.1 || { echo "p1 closed by a refused reload"; return 1; }
	# A wildcard over an address we serve on the same port: refused, with the way round it.
	printf 'upstream 127.0.0.1:%s\nlisten 127.0.0.1:%s\nlisten 127.0.0.1:%s\nlisten 0.0.0.0:%s\nlisten 0.0.0.0:%s\n' \
		"$F" "$p1" "$p3" "$p4" "$p1" >"$WORK/ls.conf"
	kill -HUP "$pid"
	wait_for 5 grep -q "cannot listen on UDP 0.0.0.0:$p1: Address already in use (it overlaps 127.0.0.1:$p1, which embargo listens on: drop that one in one reload and add this one in the next" "$WORK/ls.log" ||
		{ grep SIGHUP "$WORK/ls.log"; return 1; }
	# A file read half written, without its listen lines: refused, not moved to the default.
	printf 'upstream 127.0.0.1:%s\ndeny-mode sinkhole\n' "$F" >"$WORK/ls.conf"
	kill -HUP "$pid"
	wait_for 5 grep -q "the configuration no longer sets listen (" "$WORK/ls.log" ||
		{ grep SIGHUP "$WORK/ls.log"; return 1; }
	# An upstream that is one of our listen addresses would loop: refused too.
	printf 'upstream 127.0.0.1:%s\nlisten 127.0.0.1:%s\ndeny-mode sinkhole\n' "$p1" "$p1" >"$WORK/ls.conf"
	kill -HUP "$pid"
	wait_for 5 grep -q "upstream 127.0.0.1:$p1 is embargo's own listen address" "$WORK/ls.log" ||
		{ grep SIGHUP "$WORK/ls.log"; return 1; }
	q "$p3" @127.0.0.1 localhost A +short | grep -qx 127.0.0.1 || { echo "p3 closed by a refused reload"; return 1; }
	q "$p1" @127.0.0.1 dl.kaspersky.com A | grep -q "status: NXDOMAIN" || { echo "deny mode changed"; return 1; }
	grep "SIGHUP" "$WORK/ls.log" | sed 's/^[^ ]* //'
}
check "SIGHUP: a listen address added opens, one dropped closes (its TCP connection goes on); a held one is refused" reload_listen

# A privileged port added by SIGHUP: refused with the reason once embargo has dropped root;
# opened when it runs as the systemd unit runs it (an unprivileged user that keeps
# CAP_NET_BIND_SERVICE as an ambient capability).
# priv_start NAME PORT [LAUNCHER...] -- [EMBARGO ARGS...]: embargo on PORT from $dir/NAME.conf
# (readable by nobody), started through LAUNCHER (setpriv ...) if any; its pid in pid.
priv_start() {
	local name=$1 port=$2
	shift 2
	local launch=()
	while [ "$1" != "--" ]; do launch+=("$1"); shift; done
	shift
	printf 'upstream 127.0.0.1:%s\nlisten 127.0.0.1:%s\n' "$F" "$port" >"$dir/$name.conf"
	chmod 644 "$dir/$name.conf"
	"${launch[@]}" "$EMBARGO" --config "$dir/$name.conf" --redis "$NOREDIS" --snapshot off "$@" \
		>"$WORK/priv-$name.log" 2>&1 &
	pid=$!
	PIDS+=($pid)
	wait_for 10 grep -q "serving on" "$WORK/priv-$name.log" || { cat "$WORK/priv-$name.log"; return 1; }
	# Then the low port is added.
	printf 'listen 127.0.0.1:%s\n' "$low" >>"$dir/$name.conf"
	kill -HUP "$pid"
}

reload_privileged() {
	local dir=$WORK/priv p low=$LOW x pid
	mkdir -p "$dir" && chmod 755 "$WORK" "$dir"
	p=$(free_port)
	priv_start a "$p" -- --user nobody || return 1
	wait_for 5 grep -q "cannot listen on UDP 127.0.0.1:$low: Permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE" "$WORK/priv-a.log" ||
		{ grep SIGHUP "$WORK/priv-a.log"; return 1; }
	q "$p" @127.0.0.1 localhost A +short | grep -qx 127.0.0.1 || { echo "not serving after"; return 1; }
	kill "$pid"
	wait "$pid"
	priv_start b "$(free_port)" setpriv --reuid nobody --regid nogroup --clear-groups \
		--inh-caps +net_bind_service --ambient-caps +net_bind_service -- || return 1
	grep -E "^(Uid|CapEff):" "/proc/$pid/status"
	wait_for 5 grep -q "listening now on 127.0.0.1:$low too" "$WORK/priv-b.log" ||
		{ grep SIGHUP "$WORK/priv-b.log"; return 1; }
	q "$low" @127.0.0.1 localhost A +short | grep -qx 127.0.0.1 || { echo "port $low not answering"; return 1; }
	q "$low" @127.0.0.1 localhost A +short +tcp | grep -qx 127.0.0.1 || { echo "port $low not over TCP"; return 1; }
	kill "$pid"
	wait "$pid"
}
LOW=0
for x in $(seq 990 -1 900); do
	if [ -z "$(ss -Hlnu "sport = :$x")$(ss -Hlnt "sport = :$x")" ]; then LOW=$x; break; fi
done
if [ "$(id -u)" -eq 0 ] && [ "$LOW" -gt 0 ]; then
	check "SIGHUP adds a port below 1024: refused once root is dropped, opened with CAP_NET_BIND_SERVICE" reload_privileged
else
	skip "SIGHUP adds a port below 1024 (needs root and a free port below 1000)"
fi

# 300 reloads, each a new configuration (500 local-data lines, the upstream switched between two,
# questions upstream meanwhile): the settings no worker, upstream side or Redis link reads any
# more are freed, so the daemon does not grow with them (each kept cost about 60 KB: 17 MB
# here). Sanitizer builds keep freed memory in quarantine: there the RSS says nothing and is not
# checked, but any use of freed settings aborts the daemon.
reload_memory() {
	local p pid a b i g ld
	p=$(free_port)
	g=$(free_port)
	start_fake memup "$g" --answer 192.0.2.7
	ld=$(seq -f "local-data h%g.lan A 192.0.2.9" 1 500)
	mem_conf() { # UPSTREAM-PORT DENY-MODE
		printf 'upstream 127.0.0.1:%s\nlisten 127.0.0.1:%s\ndeny-mode %s\n%s\n' "$1" "$p" "$2" "$ld" \
			>"$WORK/mem.tmp" && mv "$WORK/mem.tmp" "$WORK/mem.conf"
	}
	mem_conf "$F" nxdomain
	"$EMBARGO" --config "$WORK/mem.conf" --redis "$NOREDIS" --snapshot off --threads 2 \
		>"$WORK/mem.log" 2>&1 &
	pid=$!
	PIDS+=($pid)
	wait_for 10 grep -q "serving on" "$WORK/mem.log" || { cat "$WORK/mem.log"; return 1; }
	# 100 first: the worker threads' malloc arenas settle (upstream sides come and go in them).
	for i in $(seq 1 100); do
		if [ $((i % 2)) = 0 ]; then mem_conf "$F" nxdomain; else mem_conf "$g" refused; fi
		kill -HUP "$pid"
		sleep 0.01
	done
	sleep 0.5
	a=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
	for i in $(seq 1 300); do
		if [ $((i % 2)) = 0 ]; then mem_conf "$F" nxdomain; else mem_conf "$g" refused; fi
		kill -HUP "$pid"
		# Slow names wait 1 s at the first upstream: old upstream sides still answering.
		[ $((i % 10)) = 0 ] && kdig -p "$p" +timeout=2 +retry=0 @127.0.0.1 "slow$i.mem.example" A >/dev/null 2>&1 &
		sleep 0.01
	done
	wait_for 10 eval "[ \$(grep -c 'configuration read again' '$WORK/mem.log') -ge 380 ]" ||
		{ echo "reloads: $(grep -c 'configuration read again' "$WORK/mem.log")"; return 1; }
	sleep 2.5 # The slow questions are over, their upstream sides closed.
	q "$p" @127.0.0.1 dl.kaspersky.com A | grep -q "status: NXDOMAIN" || { echo "deny mode"; return 1; }
	q "$p" @127.0.0.1 h500.lan A +short | grep -qx 192.0.2.9 || { echo "local data"; return 1; }
	b=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
	echo "RSS after 100 reloads: $a kB; after 400: $b kB"
	if grep -qE '^SAN_CFLAGS = .' "$(dirname "$EMBARGO")/../Makefile" 2>/dev/null; then
		echo "(sanitizer build: not checked)"
	else
		[ $((b - a)) -lt 3000 ] || { echo "grew $((b - a)) kB"; return 1; }
	fi
	kill "$pid"
	wait "$pid"
}
check "300 reloads: the settings no worker reads any more are freed (RSS grows less than 3 MB)" reload_memory

# --log-level warn: the info lines are gone, the warnings stay.
log_level() {
	local p
	p=$(free_port)
	"$EMBARGO" --listen "127.0.0.1:$p" --upstream "127.0.0.1:$F" --redis "$NOREDIS" \
		--snapshot off --log-level warn >"$WORK/quiet.log" 2>&1 &
	local pid=$!
	PIDS+=($pid)
	wait_for 5 grep -q "starting without redis" "$WORK/quiet.log" || { cat "$WORK/quiet.log"; return 1; }
	q "$p" @127.0.0.1 localhost A +short | grep -qx 127.0.0.1 || return 1
	kill "$pid"
	wait "$pid"
	! grep -q " info: " "$WORK/quiet.log" || { cat "$WORK/quiet.log"; return 1; }
	"$EMBARGO" --log-level loud 2>/dev/null
	[ $? -eq 2 ]
}
check "--log-level" log_level

finish
