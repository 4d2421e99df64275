#!/usr/bin/env bash
# Live policy: keyspace notifications, the interval fallback, snapshots, Redis restarts and a
# primary/replica fleet, with real redis-server, NSD and kdig on loopback.
# The checks run in order on one daemon (live) and one Redis: snapshot, corrupt_snapshot and
# other_prefix_snapshot read the snapshot that burst's loads wrote (burst77.test ...), and
# redis_restart and status come after them; ONLY= one of those alone fails.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need_all

NSD=$(free_port)
start_nsd "$NSD"

# is_denied PORT NAME: denied by embargo's policy (NXDOMAIN with EDE 16), not NSD's NXDOMAIN for
# a name its zone lacks (most names the policy gets below, burst1.test and so on, are not in it).
is_denied() {
	by_policy "$@"
}
is_answered() { # PORT NAME
	q "$1" @127.0.0.1 "$2" +timeout=1 | grep -q "status: NOERROR"
}
not_denied() { # PORT NAME: answered (whatever the upstream said), and not by embargo's denial
	local out
	out=$(q "$1" @127.0.0.1 "$2" +timeout=1 +edns)
	grep -q "status:" <<<"$out" && ! grep -q "EDE: 16" <<<"$out"
}
# loaded NAME: embargo NAME has loaded the policy from Redis (the checks below change it there).
loaded() {
	wait_for 5 grep -q "policy loaded from redis" "$WORK/$1.log" || { cat "$WORK/$1.log"; return 1; }
}
ms() { date +%s%3N; }

# within MS COMMAND...: COMMAND succeeds within MS milliseconds (polled every 10 ms). The
# sanitizer build runs several times slower: TIME_SCALE stretches the limits there, while the
# normal build holds embargo to them exactly.
within() {
	local limit=$(($1 * ${TIME_SCALE:-1})) start
	shift
	start=$(ms)
	while :; do
		"$@" >/dev/null 2>&1 && { echo "$(($(ms) - start)) ms"; return 0; }
		[ $(($(ms) - start)) -gt "$limit" ] && { echo "not within $limit ms"; return 1; }
		sleep 0.01
	done
}

RP=$(free_port)
EP=$(free_port)
start_redis "$RP"
R() { redis-cli -p "$RP" "$@" >/dev/null; }
redis-cli -p "$RP" config set notify-keyspace-events Ex >/dev/null
R sadd embargo:deny blocked.test
# Thirty rules: the held-load rule lets 3 names be lifted (10%) without consent; the changes
# below lift 2 (www.test, and support.blocked.test allowed again after its allow rule went).
for i in $(seq 29); do R sadd embargo:deny "fill$i.test"; done
R sadd embargo:allow support.blocked.test
R hset embargo:reason blocked.test "first reason"
# This policy does not hold the bundled list, which a fresh instance enforces: the operator's
# consent lets the first load replace it (see the held-load rule in the README).
consent_first --redis "redis://127.0.0.1:$RP"
start_embargo live "$EP" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$RP" \
	--reload-interval 30
wait_for 5 grep -q "following policy changes through keyspace notifications" "$WORK/live.log" ||
	die "no notifications: $(cat "$WORK/live.log")"
loaded live >/dev/null || die "policy not loaded: $(cat "$WORK/live.log")"

flags_kept() {
	local flags
	flags=$(redis-cli -p "$RP" config get notify-keyspace-events | tail -1)
	# Redis reorders the flags; what was there stays, what embargo needs is added.
	for f in E x K g s h; do
		[[ $flags == *$f* ]] || { echo "flag $f missing from '$flags'"; return 1; }
	done
}
check "notifications turned on, keeping the flags already set" flags_kept

changes() {
	is_answered "$EP" www.test || return 1
	R sadd embargo:deny www.test
	within 1000 is_denied "$EP" www.test || { echo "SADD"; return 1; }
	R srem embargo:deny www.test
	within 1000 is_answered "$EP" www.test || { echo "SREM"; return 1; }
	R hset embargo:reason blocked.test "second reason"
	within 1000 eval 'q "$EP" @127.0.0.1 blocked.test +edns | grep -q "second reason"' ||
		{ echo "HSET"; return 1; }
	is_answered "$EP" support.blocked.test || { echo "allow"; return 1; }
	R del embargo:allow
	within 1000 is_denied "$EP" support.blocked.test || { echo "DEL allow"; return 1; }
	R sadd embargo:allow support.blocked.test
	within 1000 is_answered "$EP" support.blocked.test || { echo "SADD allow"; return 1; }
}
check "SADD, SREM, HSET and DEL enforced within 1 s (reload interval 30 s)" changes

burst() {
	# 2000 changes in one pipeline are coalesced: few loads, and the last state wins.
	local before after
	before=$(grep -c "policy loaded from redis" "$WORK/live.log")
	for i in $(seq 2000); do
		printf '*3\r\n$4\r\nSADD\r\n$12\r\nembargo:deny\r\n$%d\r\nburst%d.test\r\n' $((${#i} + 10)) "$i"
	done | redis-cli -p "$RP" --pipe >/dev/null
	within 2000 is_denied "$EP" burst2000.test || return 1
	pause 0.3 # Loads still to come (there should be none) are counted too.
	after=$(grep -c "policy loaded from redis" "$WORK/live.log")
	echo "$((after - before)) loads for 2000 changes"
	[ $((after - before)) -le 20 ] || return 1
	is_denied "$EP" burst1.test
}
check "a burst of 2000 changes is coalesced into a few loads" burst

snapshot() {
	local ep2 out
	[ -s "$WORK/live.snapshot" ] || { echo "no snapshot written"; return 1; }
	head -1 "$WORK/live.snapshot" | grep -q "^embargo-policy-snapshot 3 rules=[0-9]* digest=[0-9a-f]\{64\} .* prefix=embargo db=0 " ||
		{ head -1 "$WORK/live.snapshot"; return 1; }
	# Started while Redis is down: the snapshot is enforced, allow rules and reasons included.
	ep2=$(free_port)
	cp "$WORK/live.snapshot" "$WORK/down.snapshot"
	start_embargo down "$ep2" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$(free_port)" \
		--snapshot "$WORK/down.snapshot"
	grep -q "enforcing the snapshot" "$WORK/down.log" || { cat "$WORK/down.log"; return 1; }
	out=$(q "$ep2" @127.0.0.1 www.blocked.test +edns)
	grep -q "EDE: 16 (Censored): 'second reason'" <<<"$out" || { echo "$out"; return 1; }
	is_answered "$ep2" support.blocked.test || { echo "allow rule lost"; return 1; }
	is_denied "$ep2" burst77.test || return 1
	is_answered "$ep2" kaspersky.com || { echo "bundled list used instead"; return 1; }
}
check "snapshot written after loads and enforced when started without Redis" snapshot

corrupt_snapshot() {
	local ep3 ep5
	ep3=$(free_port)
	cp "$WORK/live.snapshot" "$WORK/bad.snapshot"
	printf 'x' | dd of="$WORK/bad.snapshot" bs=1 seek=200 conv=notrunc 2>/dev/null
	start_embargo bad "$ep3" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$(free_port)" \
		--snapshot "$WORK/bad.snapshot"
	# No older generation beside it: what can still be read, with the bundled list; no allow
	# rule (one read from damaged bytes could lift a name).
	grep -q "bad.snapshot is damaged and has no intact older generation" "$WORK/bad.log" ||
		{ cat "$WORK/bad.log"; return 1; }
	local name
	for name in kaspersky.com www.blocked.test burst77.test support.blocked.test; do
		is_denied "$ep3" "$name" || { echo "$name not denied (damaged file alone)"; return 1; }
	done
	# Truncated by 30 bytes, with its older generations beside it: what is readable of it
	# together with the newest intact one, allow rules where both agree.
	# Three previous generations are kept (PATH.1 to PATH.3), and no fourth.
	[ -s "$WORK/live.snapshot.1" ] && [ -s "$WORK/live.snapshot.2" ] && [ -s "$WORK/live.snapshot.3" ] ||
		{ echo "no generations: $(ls "$WORK" | grep '^live.snapshot' | tr '\n' ' ')"; return 1; }
	[ ! -e "$WORK/live.snapshot.4" ] || { echo "a fourth older generation"; return 1; }
	local g
	for g in "" .1 .2 .3; do cp "$WORK/live.snapshot$g" "$WORK/cut.snapshot$g"; done
	truncate -s -30 "$WORK/cut.snapshot"
	ep5=$(free_port)
	start_embargo cut "$ep5" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$(free_port)" \
		--snapshot "$WORK/cut.snapshot"
	grep -q "cut.snapshot is damaged: enforcing the [0-9]* rules still readable in it (1 lines dropped) with the older generation .*cut.snapshot.1" \
		"$WORK/cut.log" || { cat "$WORK/cut.log"; return 1; }
	for name in www.blocked.test burst77.test burst1999.test; do
		is_denied "$ep5" "$name" || { echo "$name not denied (cut file)"; return 1; }
	done
	is_answered "$ep5" kaspersky.com || { echo "the bundled list added beside an intact generation"; return 1; }
}
check "a damaged snapshot: what is readable, with its older generation or the bundled list" corrupt_snapshot

other_prefix_snapshot() {
	# A restart with a mistyped --redis-prefix: Redis has no keys under it. The snapshot of the
	# real list is enforced with the bundled list (deny rules only: over-blocking is the safe
	# mistake), the first import under the typo is held, and the snapshot is not overwritten.
	local ep4 rp4 head
	ep4=$(free_port)
	rp4=$(free_port)
	start_redis "$rp4"
	cp "$WORK/live.snapshot" "$WORK/other.snapshot"
	head=$(head -1 "$WORK/other.snapshot")
	start_embargo other "$ep4" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp4" \
		--redis-prefix embarg0 --snapshot "$WORK/other.snapshot" --reload-interval 30
	grep -q "saved from redis prefix 'embargo' db 0, not 'embarg0' db 0: enforcing its deny rules together with the bundled list" \
		"$WORK/other.log" || { cat "$WORK/other.log"; return 1; }
	is_denied "$ep4" kaspersky.com && is_denied "$ep4" www.blocked.test &&
		is_denied "$ep4" burst77.test || return 1
	wait_for 5 grep -q "following policy changes" "$WORK/other.log" || return 1
	redis-cli -p "$rp4" sadd embarg0:deny typo.test >/dev/null
	wait_for 5 eval 'q "$ep4" @127.0.0.1 CH TXT policy.embargo. +short | grep -q held=shrink' ||
		{ cat "$WORK/other.log"; return 1; }
	is_denied "$ep4" www.blocked.test && is_denied "$ep4" typo.test || return 1
	same_head() { [ "$(head -1 "$WORK/other.snapshot")" = "$head" ]; }
	same_head || { echo "snapshot overwritten"; return 1; }
	# Even once a load under the typo is published, the real list's snapshot stays.
	# The log says how to consent: where the tool finds the baseline (the snapshot with the
	# bundled list), its whole digest, and the held load's.
	local cmd
	cmd=$(grep -o "run embargo-policy accept --snapshot [^ ]* --from [0-9a-f]\{64\} [0-9a-f]\{64\}$" \
		"$WORK/other.log" | tail -1 | cut -d' ' -f3-)
	[ -n "$cmd" ] || { cat "$WORK/other.log"; return 1; }
	# shellcheck disable=SC2086 # accept --snapshot FILE --from DIGEST DIGEST.
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp4" --redis-prefix embarg0 --by test $cmd \
		>/dev/null || return 1
	wait_for 5 grep -q "not overwritten (move it away" "$WORK/other.log" || { cat "$WORK/other.log"; return 1; }
	same_head || { echo "snapshot overwritten"; return 1; }
}
check "a restart with a mistyped prefix: the real list's snapshot with the bundled list, held, kept" \
	other_prefix_snapshot

redis_restart() {
	local pid held
	redis-cli -p "$RP" shutdown nosave >/dev/null 2>&1
	wait_for 5 grep -q "unavailable" "$WORK/live.log" || { echo "loss not noticed"; return 1; }
	is_denied "$EP" blocked.test || { echo "policy lost while redis is down"; return 1; }
	# It comes back empty (no persistence) and gets one write: that is data loss, not a
	# policy change. Reconnected within 1 s, notifications re-enabled on the new server; the
	# load is held and every rule in force stays.
	start_redis "$RP"
	R sadd embargo:deny later.test
	within 3000 eval 'q "$EP" @127.0.0.1 CH TXT policy.embargo. +short | grep -q held=shrink' ||
		{ cat "$WORK/live.log"; return 1; }
	by_policy "$EP" blocked.test && by_policy "$EP" burst77.test || { echo "rules lifted"; return 1; }
	# What the held load adds is enforced meanwhile.
	within 1000 is_denied "$EP" later.test || { echo "addition not enforced while held"; return 1; }
	# The operator consents to the new content: it applies, and notifications work again.
	held=$(q "$EP" @127.0.0.1 CH TXT policy.embargo. +short | grep -o "held_version=[0-9a-f]*" | cut -d= -f2)
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$RP" --by test accept --from "$WORK/live.snapshot" \
		"$held" >/dev/null || { echo "accept refused"; return 1; }
	within 1000 not_denied "$EP" burst77.test || { echo "consent not followed"; return 1; }
	is_denied "$EP" later.test || { echo "later.test lifted"; return 1; }
	R sadd embargo:deny after-restart2.test
	within 1000 is_denied "$EP" after-restart2.test || { echo "notifications not back"; return 1; }
	[ "$(grep -c "unavailable" "$WORK/live.log")" -eq 1 ] || { echo "transition logged more than once"; return 1; }
}
check "Redis restarted: policy kept, reconnected, changes enforced again" redis_restart

no_config() {
	# CONFIG renamed away: embargo says so once and re-reads on the interval.
	local rp ep
	rp=$(free_port)
	ep=$(free_port)
	start_redis "$rp" --rename-command CONFIG ""
	redis-cli -p "$rp" sadd embargo:deny blocked.test >/dev/null
	consent_first --redis "redis://127.0.0.1:$rp"
	start_embargo poll "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 1
	grep -q "no keyspace notifications from redis" "$WORK/poll.log" || { cat "$WORK/poll.log"; return 1; }
	loaded poll || return 1
	redis-cli -p "$rp" sadd embargo:deny www.test >/dev/null
	within 2500 is_denied "$ep" www.test || return 1
	[ "$(grep -c "no keyspace notifications" "$WORK/poll.log")" -eq 1 ] || return 1
}
check "without CONFIG: interval re-reads, logged once" no_config

hanging_redis() {
	# A "Redis" that never completes a connection (a full accept backlog): embargo gives up
	# each attempt after 2 s, serves the bundled list meanwhile, keeps retrying, and stops
	# cleanly (no leak of the half-open connection under ASan).
	local hp ep
	hp=$(free_port)
	ep=$(free_port)
	python3 - "$hp" "$WORK/hang.ready" <<'PY' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(0)
held = []
for _ in range(4):  # Fill the backlog, then never accept: later SYNs go unanswered.
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", int(sys.argv[1])))
    held.append(c)
open(sys.argv[2], "w").close()
time.sleep(60)
PY
	PIDS+=($!)
	wait_for 5 test -e "$WORK/hang.ready" || { echo "the hanging listener did not start"; return 1; }
	start_embargo hang "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$hp"
	is_denied "$ep" kaspersky.com || return 1
	wait_for 8 grep -q "connection attempt timed out" "$WORK/hang.log" || { cat "$WORK/hang.log"; return 1; }
	kill -INT "$PID_hang"
	wait "$PID_hang" || { echo "exit status $?"; return 1; }
	grep -q "stopped:" "$WORK/hang.log"
}
check "a Redis connection that hangs is given up, retried, and does not block a clean stop" hanging_redis

fleet() {
	# A primary, a replica, one embargo on each: a change on the primary reaches both.
	local pp rp ea eb
	pp=$(free_port)
	rp=$(free_port)
	ea=$(free_port)
	eb=$(free_port)
	start_redis "$pp"
	start_redis "$rp" --replicaof 127.0.0.1 "$pp"
	wait_for 10 eval "redis-cli -p $rp info replication | grep -q master_link_status:up" ||
		{ echo "replica not in sync"; return 1; }
	redis-cli -p "$pp" sadd embargo:deny blocked.test >/dev/null
	consent_first --redis "redis://127.0.0.1:$pp"
	start_embargo fleeta "$ea" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$pp" --reload-interval 30
	start_embargo fleetb "$eb" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" --reload-interval 30
	wait_for 5 grep -q "following policy changes" "$WORK/fleetb.log" || { cat "$WORK/fleetb.log"; return 1; }
	loaded fleeta && loaded fleetb || return 1
	is_answered "$ea" www.test && is_answered "$eb" www.test || return 1
	redis-cli -p "$pp" sadd embargo:deny www.test >/dev/null
	within 1000 is_denied "$ea" www.test || { echo "primary's instance"; return 1; }
	within 1000 is_denied "$eb" www.test || { echo "replica's instance"; return 1; }
	redis-cli -p "$pp" srem embargo:deny www.test >/dev/null
	within 1000 is_answered "$eb" www.test || { echo "SREM on the replica's instance"; return 1; }
	within 1000 is_answered "$ea" www.test || { echo "SREM on the primary's instance"; return 1; }
	# Both say which policy they enforce: the same version.
	local va vb
	va=$(q "$ea" @127.0.0.1 CH TXT policy.embargo. +short)
	vb=$(q "$eb" @127.0.0.1 CH TXT policy.embargo. +short)
	grep -q "version=[0-9a-f]\{16\} source=redis deny=1 allow=0" <<<"$va" || { echo "$va"; return 1; }
	[ "${va%% *}" = "${vb%% *}" ] || { echo "versions differ: $va / $vb"; return 1; }
}
check "fleet: a change on the primary is enforced by instances on primary and replica within 1 s" fleet

status() {
	local out ep4
	out=$(q "$EP" @127.0.0.1 CH TXT policy.embargo. +tcp)
	grep -q "status: NOERROR" <<<"$out" && grep -q '"version=[0-9a-f]* source=redis' <<<"$out" ||
		{ echo "$out"; return 1; }
	grep -q "version=$(grep -o 'version [0-9a-f]*' "$WORK/live.log" | tail -1 | cut -d' ' -f2)" <<<"$out" ||
		{ echo "not the version logged: $out"; return 1; }
	q "$EP" @127.0.0.1 CH TXT version.bind | grep -q "status: REFUSED" || return 1
	# Clients outside --status-allow are refused.
	ep4=$(free_port)
	start_embargo acl "$ep4" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$RP" \
		--status-allow 192.0.2.0/24
	q "$ep4" @127.0.0.1 CH TXT policy.embargo. | grep -q "status: REFUSED"
}
check "CH TXT policy.embargo. tells allowed clients the version in force" status

tool() {
	local rp out
	rp=$(free_port)
	start_redis "$rp"
	printf '# a comment\nfirst.example\tReason one\nbad name.example\n0.0.0.0 hosts.example\n\nUPPER.Example.\n' >"$WORK/list.txt"
	out=$("$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" import "$WORK/list.txt" 2>&1) || { echo "$out"; return 1; }
	grep -q "list.txt:3: invalid entry skipped: bad name.example" <<<"$out" || { echo "$out"; return 1; }
	grep -q "3 names added to embargo:deny (1 with reasons), 1 invalid lines skipped" <<<"$out" || { echo "$out"; return 1; }
	# Idempotent: importing again changes nothing.
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" import "$WORK/list.txt" >/dev/null 2>&1
	[ "$(redis-cli -p "$rp" scard embargo:deny)" = 3 ] || return 1
	redis-cli -p "$rp" sismember embargo:deny upper.example | grep -q 1 || { echo "not normalised"; return 1; }
	[ "$(redis-cli -p "$rp" hget embargo:reason first.example)" = "Reason one" ] || return 1
	echo support.first.example | "$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" import --allow - >/dev/null || return 1
	out=$("$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" explain www.first.example x.support.first.example nothing.example)
	grep -q "www.first.example: DENIED by embargo:deny member 'first.example'" <<<"$out" || { echo "$out"; return 1; }
	grep -q "reason: Reason one" <<<"$out" || { echo "$out"; return 1; }
	grep -q "x.support.first.example: ALLOWED by embargo:allow member 'support.first.example'" <<<"$out" ||
		{ echo "$out"; return 1; }
	grep -q "nothing.example: no rule applies" <<<"$out" || { echo "$out"; return 1; }
	"$POLICY_TOOL" --bogus 2>/dev/null
	[ $? -eq 2 ]
}
check "embargo-policy import (formats, bad lines by number, idempotent) and explain" tool

finish
