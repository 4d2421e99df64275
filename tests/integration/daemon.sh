#!/usr/bin/env bash
# The daemon's life as a service: it tells systemd when it is ready and when it stops
# (sd_notify), and SIGTERM stops it cleanly: no new query is read, the questions already upstream
# are answered (for up to 2 s), and it exits 0. Real embargo, tests/integration/fakedns.py as
# the upstream, kdig as the client.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
. "$srcdir/tests/integration/lib.sh"

need_all
FAKE="$srcdir/tests/integration/fakedns.py"
NOREDIS="redis://127.0.0.1:$(free_port)" # Nobody listens: the bundled list is enforced.

F=$(free_port)
python3 "$FAKE" --port "$F" --log "$WORK/fake.queries" --delay-ms 1000 --lifetime 300 \
	>"$WORK/fake.log" 2>&1 &
PIDS+=($!)
wait_for 10 eval "ss -Hlnt | grep -q '127.0.0.1:$F '" || die "fake upstream did not start"

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
drain() {
	local p t0 t1 rc out
	p=$(free_port)
	start_embargo drain "$p" --upstream "127.0.0.1:$F" --redis "$NOREDIS" --timeout 8000
	q "$p" @127.0.0.1 slow.drain.example A >"$WORK/drain.out" &
	local client=$!
	sleep 0.3
	t0=$(ms)
	kill -TERM "$PID_drain"
	wait "$PID_drain"
	rc=$?
	t1=$(ms)
	wait "$client"
	out=$(cat "$WORK/drain.out")
	echo "exit status $rc, $((t1 - t0)) ms after SIGTERM"
	grep -q "status: NOERROR" <<<"$out" && grep -q "192.0.2.1" <<<"$out" || { echo "$out"; return 1; }
	[ "$rc" -eq 0 ] && [ $((t1 - t0)) -lt 2500 ] || return 1
	grep -q "SIGTERM received: stopping" "$WORK/drain.log"
}
check "SIGTERM: the question already upstream is answered, then exit 0" drain

# An upstream that never answers holds the stop for 2 s at most.
bounded() {
	local p t0 t1 rc
	p=$(free_port)
	start_embargo bounded "$p" --upstream "127.0.0.1:$F" --redis "$NOREDIS" --timeout 10000
	q "$p" @127.0.0.1 x.hole A +timeout=1 >/dev/null &
	sleep 0.3
	t0=$(ms)
	kill -TERM "$PID_bounded"
	wait "$PID_bounded"
	rc=$?
	t1=$(ms)
	echo "exit status $rc, $((t1 - t0)) ms after SIGTERM"
	[ "$rc" -eq 0 ] && [ $((t1 - t0)) -lt 3000 ] && [ $((t1 - t0)) -ge 1800 ]
}
check "SIGTERM with a question that is never answered: exit 0 after 2 s" bounded

finish
