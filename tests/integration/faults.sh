#!/usr/bin/env bash
# Fail closed under Redis faults: data loss (FLUSHALL, a restart without persistence, a missing
# deny key, a replica resynchronised from an emptied primary) never lifts rules, a key replaced
# mid-read never publishes a torn policy, a silent or busy Redis is noticed and recovered, and an
# ACL user without channels still gets the policy. Real redis-server, NSD and kdig on loopback.
# The checks are independent (each starts its own Redis and embargo), except consent: it releases
# the hold that flushall left on flushall's instance (flush) and reads its snapshot. ONLY= consent's
# words alone fail; ONLY=held runs flushall before it.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need_all

NSD=$(free_port)
start_nsd "$NSD"
LIST="$srcdir/policy/sanctioned-vendors.tsv"
SCALE=${TIME_SCALE:-1}

status_of() { # PORT: the CH TXT policy.embargo. answer
	q "$1" @127.0.0.1 CH TXT policy.embargo. +short
}
is_denied() { # PORT NAME: denied by embargo, not by NSD
	by_policy "$@"
}
is_answered() { # PORT NAME
	q "$1" @127.0.0.1 "$2" +timeout=1 | grep -q "status: NOERROR"
}
not_denied() { # PORT NAME: answered, and not by a denial (whatever the upstream said)
	local out
	out=$(q "$1" @127.0.0.1 "$2" +timeout=2 +edns)
	grep -q "status:" <<<"$out" && ! grep -q "EDE: 16" <<<"$out"
}
# consent_any PORT: the operator's consent to what Redis holds now, which lets a first load
# replace the bundled list that a fresh instance starts with (the policies below are not it).
consent_any() {
	consent_first --redis "redis://127.0.0.1:$1"
}
# bundled_denied PORT: every name of the bundled list, and a name below one, is denied.
bundled_denied() {
	local name
	for name in $(grep -v '^#' "$LIST" | cut -f1); do
		is_denied "$1" "$name" || { echo "$name resolves"; return 1; }
	done
	is_denied "$1" www.kaspersky.com || { echo "www.kaspersky.com resolves"; return 1; }
}
# snapshot_keeps_bundled FILE: the snapshot file still denies every name of the bundled list.
snapshot_keeps_bundled() {
	local name
	for name in $(grep -v '^#' "$LIST" | cut -f1); do
		grep -q "^d	$name	" "$1" || { echo "snapshot lost $name"; return 1; }
	done
}
# Start embargo NAME on a new port (in $EP_NAME) against Redis port RP.
start_on() { # NAME RP ARGS...
	local name=$1 rp=$2 port
	shift 2
	port=$(free_port)
	eval "EP_$name=$port"
	start_embargo "$name" "$port" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 30 --timeout 500 "$@"
}
followed() { # NAME: embargo NAME follows notifications
	wait_for $((5 * SCALE)) grep -q "following policy changes" "$WORK/$1.log" ||
		{ cat "$WORK/$1.log"; return 1; }
}
# with_bundled NAME: a new Redis (its port in $RP_NAME) holding the bundled list, and an embargo
# NAME (its port in $EP_NAME) that has loaded it and follows its changes.
with_bundled() {
	local rp
	rp=$(free_port)
	eval "RP_$1=$rp"
	start_redis "$rp"
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" import "$LIST" >/dev/null || return 1
	start_on "$1" "$rp"
	followed "$1"
}

flushall() {
	with_bundled flush || return 1
	local rp=$RP_flush
	bundled_denied "$EP_flush" || return 1
	redis-cli -p "$rp" flushall >/dev/null
	redis-cli -p "$rp" sadd embargo:deny newvendor.example >/dev/null
	# The load that follows is held: the 40 rules stay, and the status says why.
	wait_for $((5 * SCALE)) eval 'status_of $EP_flush | grep -q "held=shrink held_removes=40/40"' ||
		{ status_of "$EP_flush"; cat "$WORK/flush.log"; return 1; }
	bundled_denied "$EP_flush" || return 1
	# What it adds is enforced meanwhile (a feed of new names keeps working); nothing is lifted.
	is_denied "$EP_flush" newvendor.example || { echo "addition not enforced"; return 1; }
	redis-cli -p "$rp" sadd embargo:deny another.example >/dev/null
	wait_for $((3 * SCALE)) is_denied "$EP_flush" another.example || { echo "second addition"; return 1; }
	bundled_denied "$EP_flush" || return 1
	status_of "$EP_flush" | grep -q "held=shrink" || { status_of "$EP_flush"; return 1; }
	# Many additions do not raise the share that may be lifted: 400 new names, ten times the
	# list, and the 40 lost rules are still held.
	local i
	for i in $(seq 400); do
		printf '*3\r\n$4\r\nSADD\r\n$12\r\nembargo:deny\r\n$%d\r\nfeed%d.test\r\n' $((${#i} + 9)) "$i"
	done | redis-cli -p "$rp" --pipe >/dev/null
	wait_for $((5 * SCALE)) is_denied "$EP_flush" feed400.test || { echo "feed not enforced"; return 1; }
	redis-cli -p "$rp" sadd embargo:deny one-more.example >/dev/null
	wait_for $((3 * SCALE)) is_denied "$EP_flush" one-more.example || return 1
	status_of "$EP_flush" | grep -q "held=shrink held_removes=40/40" || { status_of "$EP_flush"; return 1; }
	bundled_denied "$EP_flush" || return 1
	snapshot_keeps_bundled "$WORK/flush.snapshot" || return 1
	# A held load's merge is never saved: the snapshot is still the policy from before.
	! grep -q "newvendor.example" "$WORK/flush.snapshot" || { echo "merge saved"; return 1; }
	# A restart without Redis enforces the snapshot: the 40 rules.
	local ep
	ep=$(free_port)
	cp "$WORK/flush.snapshot" "$WORK/flush2.snapshot"
	start_embargo flush2 "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$(free_port)"
	bundled_denied "$ep"
}
check "FLUSHALL then one SADD: held, every listed name still denied, snapshot keeps 40 rules" flushall

consent() {
	# The operator meant it: a consent to exactly the held version releases it.
	local held
	held=$(status_of "$EP_flush" | grep -o "held_version=[0-9a-f]*" | cut -d= -f2)
	[ -n "$held" ] || { status_of "$EP_flush"; return 1; }
	local rp=$RP_flush
	# A consent to another version releases nothing; the tool will not even write one.
	local now zero
	now=$(date +%s)
	zero=0000000000000000000000000000000000000000000000000000000000000000
	redis-cli -p "$rp" hset embargo:accept from "$zero" to "$zero" at "$now" \
		expires $((now + 600)) nonce 0123456789abcdef0123456789abcdef >/dev/null
	wait_for $((3 * SCALE)) grep -q "does not release version" "$WORK/flush.log" ||
		{ echo "the wrong consent was never read"; return 1; }
	is_denied "$EP_flush" www.kaspersky.com || { echo "released by a wrong consent"; return 1; }
	! "$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" accept --from "$WORK/flush.snapshot" \
		0123456789abcdef >/dev/null 2>&1 || { echo "accept of another version"; return 1; }
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" --by test accept --from "$WORK/flush.snapshot" \
		"$held" >/dev/null || { echo "accept refused"; return 1; }
	wait_for $((3 * SCALE)) is_answered "$EP_flush" www.kaspersky.com ||
		{ cat "$WORK/flush.log"; return 1; }
	is_denied "$EP_flush" newvendor.example && is_denied "$EP_flush" another.example || return 1
	! status_of "$EP_flush" | grep -q held || { status_of "$EP_flush"; return 1; }
	# Now a few deliberate removals pass as before.
	redis-cli -p "$rp" srem embargo:deny another.example >/dev/null
	wait_for $((2 * SCALE)) not_denied "$EP_flush" another.example
}
check "a consent to the held version releases it; later small SREMs pass" consent

restart_empty() {
	with_bundled restart || return 1
	local rp=$RP_restart
	redis-cli -p "$rp" shutdown nosave >/dev/null 2>&1
	wait_for 5 eval '! redis-cli -p $rp ping >/dev/null 2>&1'
	start_redis "$rp"
	redis-cli -p "$rp" sadd embargo:deny newvendor.example >/dev/null
	wait_for $((5 * SCALE)) eval 'status_of $EP_restart | grep -q "held=shrink"' ||
		{ status_of "$EP_restart"; cat "$WORK/restart.log"; return 1; }
	bundled_denied "$EP_restart" || return 1
	snapshot_keeps_bundled "$WORK/restart.snapshot"
}
check "Redis restarted empty, then a write: held, every listed name still denied" restart_empty

small_removals() {
	# Up to 10% of the rules is a change, not a loss: 4 of the 40 may go. The budget is
	# counted against the baseline across loads, so a fifth removal later is held too.
	with_bundled small || return 1
	local rp=$RP_small
	redis-cli -p "$rp" srem embargo:deny kaspersky.de kaspersky.cz kaspersky.be kaspersky.ca >/dev/null
	wait_for $((2 * SCALE)) not_denied "$EP_small" kaspersky.de || { echo "4 removals not enforced"; return 1; }
	redis-cli -p "$rp" srem embargo:deny kaspersky.ru >/dev/null
	wait_for $((3 * SCALE)) eval 'status_of $EP_small | grep -q "held=shrink held_removes=5/40"' ||
		{ status_of "$EP_small"; return 1; }
	is_denied "$EP_small" kaspersky.ru || return 1
	# Put back, the hold ends; five at once are held as well.
	redis-cli -p "$rp" sadd embargo:deny kaspersky.ru >/dev/null
	wait_for $((3 * SCALE)) eval '! status_of $EP_small | grep -q held' || { status_of "$EP_small"; return 1; }
	redis-cli -p "$rp" srem embargo:deny kaspersky.ru kaspersky.ua kaspersky.cn kaspersky.co.uk kaspersky.co.jp >/dev/null
	wait_for $((3 * SCALE)) eval 'status_of $EP_small | grep -q "held=shrink held_removes=9/40"' ||
		{ status_of "$EP_small"; return 1; }
	is_denied "$EP_small" kaspersky.ru
}
check "SREM of 4 of 40 names lifts them; a fifth, later or at once, is held" small_removals

deny_missing() {
	local rp
	rp=$(free_port)
	start_redis "$rp"
	redis-cli -p "$rp" sadd embargo:deny blocked.test >/dev/null
	redis-cli -p "$rp" hset embargo:reason blocked.test "test rule" >/dev/null
	consent_any "$rp"
	start_on missing "$rp"
	followed missing || return 1
	is_denied "$EP_missing" www.blocked.test || return 1
	redis-cli -p "$rp" del embargo:deny >/dev/null
	wait_for $((3 * SCALE)) eval 'status_of $EP_missing | grep -q "held=deny-key-missing"' ||
		{ status_of "$EP_missing"; cat "$WORK/missing.log"; return 1; }
	is_denied "$EP_missing" www.blocked.test
}
check "DEL embargo:deny while reasons exist: held, even for one rule" deny_missing

# sadd_cmds KEY PREFIX [EXTRA-MEMBER...]: the Redis protocol that adds a million members
# "PREFIX0.example"... and the extras to KEY, in SADDs of 1000.
sadd_cmds() {
	python3 - "$@" <<'PY'
import sys
key, prefix, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
out = sys.stdout.buffer
def cmd(*args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        a = a.encode()
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))
for base in range(0, 1000000, 1000):
    cmd("SADD", key, *["%s%d.example" % (prefix, i) for i in range(base, base + 1000)])
if extra:
    cmd("SADD", key, *extra)
PY
}
big_set() { # PORT KEY PREFIX [EXTRA-MEMBER...]
	local port=$1
	shift
	sadd_cmds "$@" | redis-cli -p "$port" --pipe >/dev/null
}

torn() {
	local rp n
	rp=$(free_port)
	start_redis "$rp"
	big_set "$rp" embargo:deny old
	[ "$(redis-cli -p "$rp" scard embargo:deny)" -eq 1000000 ] || { echo "set not written"; return 1; }
	# The guard would hold a torn read too; turn it off to see the read itself.
	start_on torn "$rp" --max-shrink off
	followed torn || return 1
	wait_for $((20 * SCALE)) grep -q "policy loaded from redis: 1000000 deny" "$WORK/torn.log" ||
		{ cat "$WORK/torn.log"; return 1; }
	# Replace the key while embargo scans it: first with RENAME...
	big_set "$rp" embargo:deny.new new marker1.test
	redis-cli -p "$rp" sadd embargo:deny trigger1.test >/dev/null
	pause 0.2
	redis-cli -p "$rp" rename embargo:deny.new embargo:deny >/dev/null
	wait_for $((30 * SCALE)) is_denied "$EP_torn" marker1.test || { cat "$WORK/torn.log"; return 1; }
	# ...then with MULTI; DEL; SADD...; EXEC.
	redis-cli -p "$rp" sadd embargo:deny trigger2.test >/dev/null
	pause 0.2
	{ printf 'MULTI\r\nDEL embargo:deny\r\n'; sadd_cmds embargo:deny other marker2.test; printf 'EXEC\r\n'; } |
		redis-cli -p "$rp" --pipe >/dev/null
	wait_for $((30 * SCALE)) is_denied "$EP_torn" marker2.test || { cat "$WORK/torn.log"; return 1; }
	pause 1 # A load still under way is published meanwhile, and counted below.
	# Every policy published held one whole set: 1000000 (old), 1000001 (+ a trigger or marker)
	# or 1000002; a torn read would mix members of both.
	n=$(grep -o "policy loaded from redis: [0-9]* deny" "$WORK/torn.log" | awk '{print $5}' |
		grep -vcE '^100000[012]$')
	[ "$n" -eq 0 ] || { grep "policy loaded" "$WORK/torn.log"; return 1; }
	not_denied "$EP_torn" old5.example || { echo "old members still enforced"; return 1; }
	is_denied "$EP_torn" other7.example || { echo "other7.example not denied"; return 1; }
	# A feed that only adds, faster than a million members can be read, tears nothing: the
	# read holds every member it started with. Each load is published; none is thrown away.
	local i before
	before=$(grep -c "reading it again" "$WORK/torn.log")
	for i in $(seq 12); do
		redis-cli -p "$rp" sadd embargo:deny "feed$i.test" >/dev/null
		pause 0.25
	done
	wait_for $((10 * SCALE)) is_denied "$EP_torn" feed12.test || { echo "feed not enforced"; return 1; }
	[ "$(grep -c "reading it again" "$WORK/torn.log")" -eq "$before" ] ||
		{ echo "additions tore a read"; return 1; }
}
check "a million-member key replaced by RENAME or MULTI mid-read never publishes a torn policy" torn

# A TCP relay to Redis whose open connections go silent on SIGUSR1 (a partition: nothing is
# closed, nothing answered); connections made after that relay again.
start_relay() { # LISTEN-PORT REDIS-PORT
	python3 - "$1" "$2" <<'PY' &
import signal, socket, sys, threading
listen, target = int(sys.argv[1]), int(sys.argv[2])
frozen = []
conns = []
def freeze(*_):
    for c in list(conns):
        c["frozen"] = True
signal.signal(signal.SIGUSR1, freeze)
def pump(src, dst, state):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if state["frozen"]:
                continue  # Swallowed: the peer hears nothing, and nothing is closed.
            dst.sendall(data)
    except OSError:
        pass
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", listen))
s.listen(16)
s.settimeout(1.0)
import time
deadline = time.time() + 120
while time.time() < deadline:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    r = socket.create_connection(("127.0.0.1", target))
    state = {"frozen": False}
    conns.append(state)
    threading.Thread(target=pump, args=(c, r, state), daemon=True).start()
    threading.Thread(target=pump, args=(r, c, state), daemon=True).start()
PY
	PIDS+=($!)
	RELAY_PID=$!
	wait_for 5 redis-cli -p "$1" ping || die "relay on $1 did not start"
}

partition() {
	local rp xp
	rp=$(free_port)
	xp=$(free_port)
	start_redis "$rp"
	redis-cli -p "$rp" sadd embargo:deny blocked.test >/dev/null
	consent_any "$rp"
	start_relay "$xp" "$rp"
	start_on part "$xp"
	followed part || return 1
	is_denied "$EP_part" blocked.test || return 1
	kill -USR1 "$RELAY_PID"
	# Written while embargo's connections hear nothing: it must notice within a few seconds,
	# reconnect (new connections relay again) and read the change.
	redis-cli -p "$rp" sadd embargo:deny www.test >/dev/null
	wait_for $((8 * SCALE)) is_denied "$EP_part" www.test || { cat "$WORK/part.log"; return 1; }
	is_denied "$EP_part" blocked.test || return 1
	grep -q "unavailable (no answer for" "$WORK/part.log" || { cat "$WORK/part.log"; return 1; }
}
check "a silent connection (partition) is dropped within seconds, reconnected and re-read" partition

paused() {
	local rp
	rp=$(free_port)
	start_redis "$rp" --enable-debug-command local
	redis-cli -p "$rp" sadd embargo:deny blocked.test >/dev/null
	consent_any "$rp"
	start_on paused "$rp"
	followed paused || return 1
	redis-cli -p "$rp" debug sleep 10 >/dev/null &
	local sleeper=$!
	sleep 4.5
	# Meanwhile queries are answered from the policy in force.
	is_denied "$EP_paused" www.blocked.test || return 1
	is_answered "$EP_paused" www.test || return 1
	wait "$sleeper"
	redis-cli -p "$rp" sadd embargo:deny www.test >/dev/null
	wait_for $((5 * SCALE)) is_denied "$EP_paused" www.test || { cat "$WORK/paused.log"; return 1; }
	[ "$(grep -c "unavailable" "$WORK/paused.log")" -eq 1 ] ||
		{ echo "not reported once"; cat "$WORK/paused.log"; return 1; }
}
check "a paused Redis (DEBUG SLEEP) is reported once; the policy stays; changes after it apply" paused

busy() {
	local rp
	rp=$(free_port)
	start_redis "$rp" --busy-reply-threshold 50
	redis-cli -p "$rp" sadd embargo:deny blocked.test >/dev/null
	consent_any "$rp"
	start_on busy "$rp"
	followed busy || return 1
	# The script's write notifies embargo at once; its load then meets -BUSY until the
	# script ends, and must be retried rather than left for the periodic re-read.
	redis-cli -p "$rp" eval "redis.call('SADD', KEYS[1], 'www.test')
		local t = redis.call('TIME')
		while true do
			local n = redis.call('TIME')
			if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 1500000 then break end
		end" 1 embargo:deny >/dev/null
	wait_for $((6 * SCALE)) is_denied "$EP_busy" www.test || { cat "$WORK/busy.log"; return 1; }
}
check "-BUSY during a load: retried with backoff, the change applied" busy

acl_no_channels() {
	# An ACL user who may read the keys but not subscribe: embargo falls back to interval
	# re-reads with one log line, and serves the policy.
	local rp
	rp=$(free_port)
	start_redis "$rp" --notify-keyspace-events 'Kg$shxe'
	redis-cli -p "$rp" sadd embargo:deny blocked.test >/dev/null
	consent_any "$rp"
	redis-cli -p "$rp" acl setuser nochan on '>pw' resetchannels '~embargo:*' '+@all' >/dev/null
	local ep
	ep=$(free_port)
	start_embargo nochan "$ep" --upstream "127.0.0.1:$NSD" \
		--redis "redis://nochan:pw@127.0.0.1:$rp" --reload-interval 1
	wait_for $((5 * SCALE)) grep -q "no keyspace notifications from redis" "$WORK/nochan.log" ||
		{ cat "$WORK/nochan.log"; return 1; }
	wait_for $((3 * SCALE)) is_denied "$ep" www.blocked.test || { cat "$WORK/nochan.log"; return 1; }
	redis-cli -p "$rp" sadd embargo:deny www.test >/dev/null
	wait_for $((3 * SCALE)) is_denied "$ep" www.test || return 1
	[ "$(grep -c "no keyspace notifications" "$WORK/nochan.log")" -eq 1 ] || return 1
}
check "an ACL user without channels: interval re-reads, logged once" acl_no_channels

least_privilege() {
	# The README's ACL line for embargo itself: read the policy keys and the consent, subscribe
	# to their keyspace channels, CONFIG GET, INFO; nothing else.
	local rp ep out
	rp=$(free_port)
	# As the README says to configure it: all the events embargo wants, so it needs no CONFIG SET.
	start_redis "$rp" --notify-keyspace-events 'Kg$lshzxe'
	redis-cli -p "$rp" sadd embargo:deny blocked.test >/dev/null
	consent_any "$rp"
	redis-cli -p "$rp" acl setuser embargo on '>s3cret' resetkeys '%R~embargo:*' resetchannels \
		'&__keyspace@0__:embargo:*' -@all +ping +type +sscan +hscan +hmget +scard +hlen +multi \
		+exec +subscribe +config\|get +info +xrevrange >/dev/null
	# The resolvers' own audit entries: a script that appends to the stream once fleet-wide.
	redis-cli -p "$rp" acl setuser embargo '%RW~embargo:audit*' +eval +xadd +set >/dev/null
	ep=$(free_port)
	start_embargo acl "$ep" --upstream "127.0.0.1:$NSD" \
		--redis "redis://embargo:s3cret@127.0.0.1:$rp" --reload-interval 30
	followed acl || return 1
	is_denied "$ep" www.blocked.test || return 1
	redis-cli -p "$rp" sadd embargo:deny www.test >/dev/null
	wait_for $((2 * SCALE)) is_denied "$ep" www.test || { cat "$WORK/acl.log"; return 1; }
	! grep -qiE "refused|NOPERM|failed" "$WORK/acl.log" || { cat "$WORK/acl.log"; return 1; }
	# Its audit entry is there, by the resolvers.
	redis-cli -p "$rp" xrange embargo:audit - + | grep -q "published by the resolvers" ||
		{ echo "no audit entry by the resolvers"; return 1; }
	# The user really is that narrow.
	out=$(redis-cli -p "$rp" --user embargo --pass s3cret --no-auth-warning sadd embargo:deny x.test)
	grep -q NOPERM <<<"$out" || { echo "embargo's user may write: $out"; return 1; }
}
check "embargo runs as a least-privilege ACL user (AUTH user password)" least_privilege

replica_resync() {
	local pp rp
	pp=$(free_port)
	rp=$(free_port)
	start_redis "$pp"
	start_redis "$rp" --replicaof 127.0.0.1 "$pp"
	wait_for 10 eval "redis-cli -p $rp info replication | grep -q master_link_status:up" ||
		{ echo "replica not in sync"; return 1; }
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$pp" import "$LIST" >/dev/null || return 1
	wait_for 5 eval '[ "$(redis-cli -p $rp scard embargo:deny)" = 40 ]' || return 1
	start_on replica "$rp"
	followed replica || return 1
	bundled_denied "$EP_replica" || return 1
	# The primary restarts empty; the replica resynchronises from it in full, which sends no
	# keyspace events: only the replication check can tell.
	redis-cli -p "$pp" shutdown nosave >/dev/null 2>&1
	wait_for 5 eval '! redis-cli -p $pp ping >/dev/null 2>&1'
	start_redis "$pp"
	wait_for 15 eval '[ "$(redis-cli -p $rp dbsize)" = 0 ] && redis-cli -p $rp info replication | grep -q master_link_status:up' ||
		{ echo "replica did not resync"; return 1; }
	wait_for $((5 * SCALE)) eval 'status_of $EP_replica | grep -q "held=redis-empty"' ||
		{ status_of "$EP_replica"; cat "$WORK/replica.log"; return 1; }
	bundled_denied "$EP_replica" || return 1
	redis-cli -p "$pp" sadd embargo:deny newvendor.example >/dev/null
	wait_for $((5 * SCALE)) eval 'status_of $EP_replica | grep -q "held=shrink"' ||
		{ status_of "$EP_replica"; return 1; }
	bundled_denied "$EP_replica"
}
check "a replica resynchronised from an emptied primary is noticed and held" replica_resync

finish
