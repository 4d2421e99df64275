#!/usr/bin/env bash
# The cache as operators of Unbound expect it: serve-stale (RFC 8767) when the upstream stops
# answering, never for a name or CNAME target denied meanwhile; prefetch of popular entries
# before they expire; --min-ttl. Real redis-server, NSD, tests/integration/fakedns.py and kdig.
# The checks are independent: each starts what it uses (ONLY= runs any of them alone). They
# share NSD, which serve_stale, stale_off and min_ttl stop and let go on again, and Redis.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need_all

REDIS=$(free_port)
NSD=$(free_port)
start_redis "$REDIS"
start_nsd "$NSD"
NSD_PID=${PIDS[-1]}
R() { redis-cli -p "$REDIS" "$@" >/dev/null; }
R del embargo:deny embargo:allow embargo:reason
R sadd embargo:deny kaspersky.com
consent_first --redis "redis://127.0.0.1:$REDIS"

# NSD serves from its children's children: the whole tree stops (a silent upstream) and goes on.
nsd_tree() {
	local p=$1 c
	echo "$p"
	for c in $(pgrep -P "$p"); do nsd_tree "$c"; done
}
nsd_stop() { kill -STOP $(nsd_tree "$NSD_PID"); }
nsd_cont() { kill -CONT $(nsd_tree "$NSD_PID"); }

# ms: milliseconds since the epoch.
ms() { date +%s%3N; }

# NSD answers, the answers expire, NSD stops (SIGSTOP: silent, as a dead network): the expired
# answer is served with TTL 30 and EDE 3 once the stale timeout passes, and not before the
# policy is asked again: a name whose CNAME target was denied meanwhile is denied.
serve_stale() {
	local p out t0 t1
	p=$(free_port)
	start_embargo stale "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--reload-interval 1 --stale-timeout 500 --timeout 4000 --prefetch no
	# (With EDNS, as the questions below: EDNS is part of the cache key.)
	q "$p" @127.0.0.1 stale1.test A +edns +short | grep -qx 192.0.2.91 || { echo "no first answer"; return 1; }
	q "$p" @127.0.0.1 stalecname.test A +edns +short | grep -qx 192.0.2.94 || { echo "no chain"; return 1; }
	sleep 2.5 # Both expired (TTL 2).
	nsd_stop
	R sadd embargo:deny stalecname-target.test
	wait_for 5 by_policy "$p" stalecname-target.test || { nsd_cont; echo "rule not loaded"; return 1; }
	t0=$(ms)
	out=$(q "$p" @127.0.0.1 stale1.test A +edns)
	t1=$(ms)
	echo "stale answer after $((t1 - t0)) ms (stale timeout 500 ms)"
	local chain
	chain=$(q "$p" @127.0.0.1 stalecname.test A +edns)
	nsd_cont
	grep -q "status: NOERROR" <<<"$out" && grep -qE "^stale1\.test\.\s+30\s+IN\s+A\s+192.0.2.91" <<<"$out" &&
		grep -q "EDE: 3 (Stale Answer)" <<<"$out" || { echo "stale: $out"; return 1; }
	[ $((t1 - t0)) -ge 450 ] && [ $((t1 - t0)) -lt 1500 ] || { echo "waited $((t1 - t0)) ms"; return 1; }
	grep -q "status: NXDOMAIN" <<<"$chain" && grep -q "EDE: 16" <<<"$chain" &&
		! grep -q "192.0.2.94" <<<"$chain" || { echo "denied target served stale: $chain"; return 1; }
	# The upstream is back (a probe finds it): a fresh answer again, without EDE.
	wait_for 10 eval "q $p @127.0.0.1 stale2.test A +edns +timeout=1 | grep -q 192.0.2.92"
	out=$(q "$p" @127.0.0.1 stale2.test A +edns)
	grep -q "192.0.2.92" <<<"$out" && ! grep -q "EDE" <<<"$out" || { echo "after: $out"; return 1; }
	R srem embargo:deny stalecname-target.test
}
check "serve-stale: TTL 30 and EDE 3 after the stale timeout, never for a target denied meanwhile" serve_stale

# With --stale-max 0 the same outage is SERVFAIL.
stale_off() {
	local p out
	p=$(free_port)
	start_embargo nostale "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--stale-max 0 --timeout 1000
	q "$p" @127.0.0.1 stale2.test A +edns +short | grep -qx 192.0.2.92 || return 1
	sleep 2.5
	nsd_stop
	out=$(q "$p" @127.0.0.1 stale2.test A +edns)
	nsd_cont
	grep -q "status: SERVFAIL" <<<"$out" || { echo "$out"; return 1; }
}
check "serve-stale off (--stale-max 0): SERVFAIL" stale_off

# --min-ttl keeps a 2-second answer for 60 seconds, with TTLs to match.
min_ttl() {
	local p out
	p=$(free_port)
	start_embargo minttl "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--min-ttl 60 --stale-max 0 --timeout 1000
	q "$p" @127.0.0.1 minttl.test A +short | grep -qx 192.0.2.95 || return 1
	sleep 2.5
	nsd_stop
	out=$(q "$p" @127.0.0.1 minttl.test A)
	nsd_cont
	grep -qE "^minttl\.test\.\s+5[0-9]\s+IN\s+A\s+192.0.2.95" <<<"$out" || { echo "$out"; return 1; }
}
check "--min-ttl: a 2-second answer kept and served for 60 seconds" min_ttl

# Prefetch: the fake upstream answers with TTL 20; a question 18.6 s later (in the last tenth) is
# answered from the cache at once and refreshes the entry; later questions, past the first
# answer's expiry, come from the refreshed entry: the upstream saw exactly two questions.
prefetch() {
	local f p out t0 t1 n
	f=$(free_port)
	start_fake prefetch "$f" --ttl 20 --answer 192.0.2.77
	p=$(free_port)
	start_embargo prefetch "$p" --upstream "127.0.0.1:$f" --redis "redis://127.0.0.1:$REDIS"
	q "$p" @127.0.0.1 popular.example A +short | grep -qx 192.0.2.77 || { echo "first"; return 1; }
	sleep 18.6
	t0=$(ms)
	q "$p" @127.0.0.1 popular.example A +short | grep -qx 192.0.2.77 || { echo "in the window"; return 1; }
	t1=$(ms)
	# The refresh reaches the upstream: two questions (then no more, checked below).
	wait_for 5 eval '[ "$(grep -ci "popular.example" "$WORK/prefetch.queries")" -ge 2 ]'
	local before
	before=$(grep -ci "popular.example" "$WORK/prefetch.queries")
	sleep 1.5 # Past the first answer's expiry.
	for _ in 1 2 3; do
		q "$p" @127.0.0.1 popular.example A +short | grep -qx 192.0.2.77 || { echo "after"; return 1; }
	done
	n=$(grep -ci "popular.example" "$WORK/prefetch.queries")
	echo "upstream questions: $before before the first answer expired, $n in all; the client in the window waited $((t1 - t0)) ms"
	[ "$before" -eq 2 ] && [ "$n" -eq 2 ] || { cat "$WORK/prefetch.queries"; return 1; }
	[ $((t1 - t0)) -lt 300 ] || return 1
}
check "prefetch: one refresh in the last tenth of the TTL, the client never waits" prefetch

# A name denied while its question is upstream (the fake upstream holds "slow" names 1.5 s) is
# denied when the answer comes: the policy is asked again then.
denied_in_flight() {
	local f p out
	f=$(free_port)
	start_fake inflight "$f" --delay-ms 1500
	p=$(free_port)
	start_embargo inflight "$p" --upstream "127.0.0.1:$f" --redis "redis://127.0.0.1:$REDIS" \
		--timeout 8000
	q "$p" @127.0.0.1 slow.inflight.example A +edns +timeout=6 >"$WORK/inflight.out" &
	local client=$!
	wait_for 5 grep -qi "slow.inflight.example" "$WORK/inflight.queries" ||
		{ echo "the question never went upstream"; return 1; }
	R sadd embargo:deny inflight.example
	wait "$client"
	out=$(cat "$WORK/inflight.out")
	R srem embargo:deny inflight.example
	grep -q "status: NXDOMAIN" <<<"$out" && grep -q "EDE: 16" <<<"$out" || { echo "$out"; return 1; }
}
check "a name denied while its question is upstream is denied when the answer comes" denied_in_flight

finish
