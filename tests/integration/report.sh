#!/usr/bin/env bash
# The client report end to end: two instances with --report-clients share one Redis; two
# clients in a network namespace made here (198.18.0.0/15) are denied by both; embargo-policy
# report then prints both clients fleet-wide (denials summed over the instances, first and last
# seen, rules with their reasons, most recently seen first) as JSON, CSV and a table. Also: the
# day keys' retention, the --since window, a hash with hostile fields, and an instance without
# the flag reporting nothing. The checks run in order: retention and since_window read the day's
# key that fleet_report fills (ONLY= either alone fails).
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need_all
need ip iproute2
[ "$(id -u)" -eq 0 ] || skip_script "the clients live in a network namespace: needs root"

REDIS=$(free_port)
NSD=$(free_port)
start_redis "$REDIS"
start_nsd "$NSD"
R() { redis-cli -p "$REDIS" "$@"; }
P() { "$POLICY_TOOL" --redis "redis://127.0.0.1:$REDIS" "$@"; }
R del embargo:deny embargo:allow embargo:reason >/dev/null
R sadd embargo:deny kaspersky.com blocked.test >/dev/null
R hset embargo:reason kaspersky.com "US Commerce Final Determination 2024-06-20, sales ban" >/dev/null
consent_first --redis "redis://127.0.0.1:$REDIS"

# The namespace: the host side holds $NET.1, the clients are $NET.2 (X) and $NET.3 (Y).
NS="embargo-r$$"
NET=$(free_subnet)
X="$NET.2"
Y="$NET.3"
netns_down() {
	ip link del "vr$$h" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	return 0
}
trap 'netns_down; cleanup' EXIT
ip netns add "$NS" && ip link add "vr$$h" type veth peer name "vr$$c" netns "$NS" ||
	die "cannot make a network namespace"
ip addr add "$NET.1/24" dev "vr$$h" && ip link set "vr$$h" up
for a in "$X" "$Y"; do ip -n "$NS" addr add "$a/24" dev "vr$$c"; done
ip -n "$NS" link set "vr$$c" up && ip -n "$NS" link set lo up
from() { # SOURCE PORT NAME [KDIG ARGS...]: one query from SOURCE in the namespace
	local src=$1 port=$2 name=$3
	shift 3
	ip netns exec "$NS" kdig @"$NET.1" -p "$port" -b "$src" +timeout=2 +retry=0 "$name" A +edns "$@"
}

E1=$(free_port)
E2=$(free_port)
E3=$(free_port)
start_embargo one "$E1" --listen "$NET.1:$E1" --allow "$NET.0/24" --upstream "127.0.0.1:$NSD" \
	--redis "redis://127.0.0.1:$REDIS" --report-clients yes
start_embargo two "$E2" --listen "$NET.1:$E2" --allow "$NET.0/24" --upstream "127.0.0.1:$NSD" \
	--redis "redis://127.0.0.1:$REDIS" --report-clients yes --report-retention 30
start_embargo plain "$E3" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS"
for n in one two plain; do
	wait_for 5 grep -q "policy loaded from redis" "$WORK/$n.log" || die "$n: policy not loaded"
done

# The checks read today's key (UTC): not in the last half minute of a day.
left=$((86400 - $(date +%s) % 86400))
[ "$left" -gt 30 ] || sleep $((left + 1))
DAYKEY="embargo:clients:$(date -u +%F)"
T0=$(date +%s)
fleet_report() {
	local out i
	# X: 3 denials by kaspersky.com at one, 2 by blocked.test at two, and an allowed name.
	for i in 1 2 3; do from "$X" "$E1" "dl$i.kaspersky.com" | grep -q "EDE: 16" || return 1; done
	from "$X" "$E2" "x.blocked.test" | grep -q "EDE: 16" || return 1
	from "$X" "$E2" "x.blocked.test" +tcp | grep -q "EDE: 16" || return 1
	from "$X" "$E1" www.test | grep -q "status: NOERROR" || return 1
	# 127.0.0.1 is denied by the instance without --report-clients: it must not show.
	by_policy "$E3" dl.kaspersky.com || { echo "not denied at plain"; return 1; }
	# Y, in a later second than any of X's (the report's times are in seconds): 1 denial at two,
	# then the most recently seen.
	local tx
	tx=$(date +%s)
	wait_for 3 eval '[ "$(date +%s)" -gt "$tx" ]' || return 1
	from "$Y" "$E2" "ksn.kaspersky.com" | grep -q "EDE: 16" || return 1
	T1=$(date +%s)
	wait_for 5 eval "[ \"\$(R hget $DAYKEY n\|$Y)\" = 1 ] && [ \"\$(R hget $DAYKEY n\|$X)\" = 5 ]" ||
		{ R hgetall "$DAYKEY"; return 1; }
	P report --format json >"$WORK/report.json" || return 1
	python3 - "$WORK/report.json" "$X" "$Y" "$T0" "$T1" <<'PY'
import json, sys, datetime
rows = json.load(open(sys.argv[1]))
x, y, t0, t1 = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def ts(s):
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp())
assert [r["client"] for r in rows] == [y, x], [r["client"] for r in rows]
ry, rx = rows
assert rx["denied"] == 5 and ry["denied"] == 1, rows
assert rx["denied_tcp"] == 1 and ry["denied_tcp"] == 0, rows
assert [(r["rule"], r["denied"]) for r in rx["rules"]] == [("kaspersky.com", 3), ("blocked.test", 2)], rx
assert rx["rules"][0]["reason"].startswith("US Commerce") and rx["rules"][1]["reason"] is None, rx
assert ry["rules"] == [{"rule": "kaspersky.com", "denied": 1, "reason": rx["rules"][0]["reason"]}], ry
for r in rows:
    assert t0 <= ts(r["first_seen"]) <= ts(r["last_seen"]) <= t1, r
assert ts(ry["last_seen"]) > ts(rx["first_seen"]), rows
print("json: %s 5 (1 over TCP; kaspersky.com 3, blocked.test 2), %s 1; first/last seen within the run" % (x, y))
PY
	[ $? -eq 0 ] || return 1
	P report --format csv >"$WORK/report.csv" || return 1
	python3 - "$WORK/report.csv" "$X" "$Y" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r["client"] for r in rows] == [sys.argv[3], sys.argv[2]], rows
assert rows[1]["denied"] == "5" and rows[1]["denied_tcp"] == "1", rows
assert rows[1]["rules"] == "kaspersky.com=3;blocked.test=2", rows
assert rows[1]["reasons"].startswith("kaspersky.com=US Commerce Final Determination 2024-06-20, sales"), rows
print("csv: %d rows, the reason with its comma quoted" % len(rows))
PY
	[ $? -eq 0 ] || return 1
	out=$(P report)
	echo "$out"
	[ "$(wc -l <<<"$out")" -eq 3 ] && grep -q "^CLIENT " <<<"$out" &&
		grep -q "^$X  *5 (1)  .*kaspersky.com 3: US Commerce.*; blocked.test 2\$" <<<"$out" &&
		grep -q "^$Y  *1 (0) " <<<"$out"
}
check "two instances, two clients in a namespace: report as JSON, CSV and a table, fleet-wide" fleet_report

retention() {
	local ttl
	ttl=$(R ttl "$DAYKEY")
	echo "TTL of $DAYKEY: $ttl s"
	[ "$ttl" -gt $((30 * 86400 - 60)) ] && [ "$ttl" -le $((30 * 86400)) ]
}
check "each day's key expires 30 days after its last write" retention

# A day 10 days back, written by hand: outside the default 7 days, inside --since 14d; with
# fields no instance writes (hostile or corrupt), which the report skips.
since_window() {
	local old oldkey t
	t=$(($(date +%s) - 10 * 86400))
	old=$(date -u -d "@$t" +%F)
	oldkey="embargo:clients:$old"
	R hset "$oldkey" "n|198.18.9.9" 7 "f|198.18.9.9" "$t" "l|198.18.9.9" "$t" \
		"r|198.18.9.9|kaspersky.com" 7 "r|198.18.9.9" 5 "n|" 3 "x|y" 1 "n|198.18.9.8" -4 \
		"n|$(printf 'a%.0s' {1..80})" 1 "l|198.18.9.7" notanumber "r|198.18.9.9|" 2 \
		'n|a"},{"client":"evil' 9 "n|b,c
=cmd" 9 'r|198.18.9.9|x"y' 3 "r|198.18.9.9|UPPER.example" 3 "n|198.18.9.6" 2 "l|198.18.9.6" "$t" >/dev/null
	P report | grep -q "198.18.9.9" && { echo "10 days back shown in the last 7 days"; return 1; }
	P report --since 14d --format csv | python3 -c "
import csv, sys; rows = list(csv.DictReader(sys.stdin)); assert len(rows) == 4, rows
assert all(r['client'].replace('.', '').replace(':', '').isalnum() for r in rows), rows" || return 1
	P report --since 14d | grep -q "evil\|cmd\|UPPER" && { echo "a hostile field shown"; return 1; }
	P report --since 3d --format json | python3 -c "
import json, sys; rows = json.load(sys.stdin); assert len(rows) == 2, rows" || return 1
	P report --since 14d --format json >"$WORK/since.json" || return 1
	python3 - "$WORK/since.json" <<'PY'
import json, sys
rows = {r["client"]: r for r in json.load(open(sys.argv[1]))}
assert set(rows) >= {"198.18.9.9", "198.18.9.6"} and len(rows) == 4, sorted(rows)
assert rows["198.18.9.6"]["rules"] == [], rows["198.18.9.6"]
r = rows["198.18.9.9"]
assert r["denied"] == 7 and [(x["rule"], x["denied"]) for x in r["rules"]] == [("kaspersky.com", 7)], r
print("--since 14d: 4 clients (2 from 10 days back, one with no rule), hostile fields skipped")
PY
	[ $? -eq 0 ] || return 1
	R del "$oldkey" >/dev/null
	P report --since 7x 2>&1 | grep -q "expected a duration" || { echo "--since 7x: no reason"; return 1; }
	P report --format xml 2>&1 | grep -q "expected table, csv or json" ||
		{ echo "--format xml: no reason"; return 1; }
	P report --format xml >/dev/null 2>&1
	[ $? -eq 2 ] || { echo "--format xml: not exit 2"; return 1; }
	P report --since 7x >/dev/null 2>&1
	[ $? -eq 2 ]
}
check "--since windows the days read; fields no instance writes are skipped; bad arguments exit 2" since_window

# The bounds a spoofing flood meets in Redis, and a stop that still reports: an instance with
# --report-max-clients 1 under a prefix of its own; X hits 17 distinct rules (16 kept, the rest
# as "*"), Y comes second (counted as the client "*"); SIGTERM at once after the last denial.
bounds_and_stop() {
	local e i day="bound:clients:$(date -u +%F)"
	for i in $(seq 17); do R sadd bound:deny "r$i.example" >/dev/null; done
	consent_first --redis "redis://127.0.0.1:$REDIS" --redis-prefix bound
	e=$(free_port)
	start_embargo bound "$e" --listen "$NET.1:$e" --allow "$NET.0/24" --upstream "127.0.0.1:$NSD" \
		--redis "redis://127.0.0.1:$REDIS" --redis-prefix bound --report-clients yes \
		--report-max-clients 1
	wait_for 5 grep -q "policy loaded from redis" "$WORK/bound.log" || return 1
	for i in $(seq 17); do from "$X" "$e" "www.r$i.example" | grep -q "EDE: 16" || return 1; done
	# X in the day's hash first: Y then finds the one client place taken.
	wait_for 5 eval '[ "$(R hget "$day" "n|$X")" = 17 ]' || { R hgetall "$day"; return 1; }
	from "$Y" "$e" "www.r1.example" | grep -q "EDE: 16" || return 1
	from "$Y" "$e" "www.r2.example" | grep -q "EDE: 16" || return 1
	kill -TERM "$PID_bound"
	wait "$PID_bound"
	local rc=$?
	echo "exit $rc; $(R hlen "$day") fields"
	[ $rc -eq 0 ] || return 1
	[ "$(R hget "$day" "n|$X")" = 17 ] && [ "$(R hget "$day" "r|$X|*")" = 1 ] &&
		[ "$(R hget "$day" "#r|$X")" = 16 ] && [ "$(R hget "$day" "n|*")" = 2 ] &&
		[ -z "$(R hget "$day" "n|$Y")" ] || { R hgetall "$day"; return 1; }
	P --redis-prefix bound report --format json | python3 -c "
import json, sys
rows = {r['client']: r for r in json.load(sys.stdin)}
assert set(rows) == {'$X', '*'}, rows
assert len(rows['$X']['rules']) == 17 and rows['*']['denied'] == 2, rows
print('$X: 17 denials, 16 rules and *; the second client as *: 2')"
}
check "a day's hash is bounded (clients past --report-max-clients, rules past 16 as *); a stop still reports" bounds_and_stop

finish
