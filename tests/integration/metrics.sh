#!/usr/bin/env bash
# The metrics endpoint: counters match the queries sent (by transport, type, rcode, rule and
# reason; cache hits; local answers), the output passes promtool, /health answers, and a real
# Prometheus server scraping embargo on loopback reads a counter back through its HTTP API.
# The checks share one daemon (metrics) and one Redis, and run in order: counters_match sends the
# only queries metrics answers and wants each count exact; scraped waits for Prometheus to read
# counters_match's 5 denials; dashboard queries scraped's Prometheus and reads counters_match's
# scrape; redis_link restarts Redis empty, so it stays last. promtool_passes scrapes for itself
# when counters_match has not, and the others start their own daemons. ONLY= scraped's or
# dashboard's words fail without counters_match's (ONLY=metrics fails dashboard): run those two
# with the whole script.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need_all
need promtool prometheus
need prometheus prometheus

REDIS=$(free_port)
NSD=$(free_port)
EP=$(free_port)
MP=$(free_port)
start_redis "$REDIS"
start_nsd "$NSD"
R() { redis-cli -p "$REDIS" "$@" >/dev/null; }
R del embargo:deny embargo:allow embargo:reason
R sadd embargo:deny blocked.test kaspersky.com
R hset embargo:reason blocked.test "test rule: blocked"
consent_first --redis "redis://127.0.0.1:$REDIS"
start_embargo metrics "$EP" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
	--metrics "127.0.0.1:$MP"
wait_for 5 grep -q "policy loaded from redis" "$WORK/metrics.log" || die "policy not loaded"

# get PATH: the endpoint's body (python3: no curl needed).
get() {
	python3 -c "
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen('http://127.0.0.1:$MP' + sys.argv[1], timeout=5)
    print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)" "$1" 2>/dev/null
}
# value NAME{LABELS}: one sample's value from the last scrape.
value() { awk -v k="$1 " 'index($0, k) == 1 {print $NF}' "$WORK/scrape"; }

# The queries: 1 forwarded and 4 cache hits (www.test A), 3 denials by blocked.test (one over
# TCP) and 2 by kaspersky.com, 2 local answers, 1 AAAA forwarded.
queries() {
	local i
	for i in 1 2 3 4 5; do q "$EP" @127.0.0.1 www.test A +short >/dev/null; done
	for i in 1 2; do q "$EP" @127.0.0.1 blocked.test A >/dev/null; done
	q "$EP" @127.0.0.1 x.blocked.test A +tcp >/dev/null
	for i in 1 2; do q "$EP" @127.0.0.1 dl.kaspersky.com A >/dev/null; done
	for i in 1 2; do q "$EP" @127.0.0.1 localhost A >/dev/null; done
	q "$EP" @127.0.0.1 www.test AAAA >/dev/null
}

# histograms_consistent FILE: every histogram's buckets grow with le, +Inf equals _count, and
# a path's sum is below count x the last finite bound (nothing lost its way into +Inf).
histograms_consistent() {
	python3 - "$1" <<'PY'
import re, sys
series = {}
for line in open(sys.argv[1]):
    m = re.match(r'^(embargo_[a-z_]+_seconds)_(bucket|sum|count)\{(.*)\} (\S+)$', line)
    if not m:
        continue
    name, part, labels, v = m.groups()
    le = re.search(r'le="([^"]+)"', labels)
    key = (name, re.sub(r',?le="[^"]+"', '', labels))
    s = series.setdefault(key, {"buckets": []})
    if part == "bucket":
        s["buckets"].append((float(le.group(1)), float(v)))
    else:
        s[part] = float(v)
assert series, "no histograms"
for key, s in series.items():
    b = s["buckets"]
    assert [x[0] for x in b] == sorted(x[0] for x in b), key
    assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), (key, b)
    assert b[-1][0] == float("inf") and b[-1][1] == s["count"], (key, b[-1], s)
    assert s["sum"] <= s["count"] * 2.5, (key, s)
    assert s["count"] == 0 or s["sum"] > 0, (key, s)
print("%d histograms consistent" % len(series))
PY
}

# scrape: GET /metrics into $WORK/scrape (the body); false unless 200.
scrape() {
	get /metrics >"$WORK/scrape.raw"
	head -1 "$WORK/scrape.raw" | grep -qx 200 || { head -3 "$WORK/scrape.raw"; return 1; }
	tail -n +2 "$WORK/scrape.raw" >"$WORK/scrape"
}

counters_match() {
	queries
	# The workers publish their counters on their own time: scraped until the last answer
	# counted (13 queries) is in, then every figure must be exact.
	wait_for 5 eval 'scrape && [ "$(value "embargo_answer_duration_seconds_count{path=\"forwarded\"}")" = 2 ] &&
		[ "$(value "embargo_queries_total{transport=\"udp\"}")" = 12 ]' || { echo "never 12 UDP queries"; }
	scrape || return 1
	local line sample want got bad=0
	while read -r line; do
		sample=${line% *}
		want=${line##* }
		got=$(value "$sample")
		[ "$got" = "$want" ] || { echo "$sample: $got, want $want"; bad=1; }
	done <<EXPECT
embargo_queries_total{transport="udp"} 12
embargo_queries_total{transport="tcp"} 1
embargo_queries_by_type_total{qtype="A"} 12
embargo_queries_by_type_total{qtype="AAAA"} 1
embargo_answers_total{rcode="NXDOMAIN"} 5
embargo_answers_total{rcode="NOERROR"} 8
embargo_denied_total 5
embargo_denied_by_rule_total{rule="blocked.test"} 3
embargo_denied_by_rule_total{rule="kaspersky.com"} 2
embargo_denied_by_reason_total{reason="test rule: blocked"} 3
embargo_denied_by_reason_total{reason=""} 2
embargo_cache_hits_total 4
embargo_forwarded_total 2
embargo_local_answers_total 2
embargo_tcp_connections_total 1
embargo_policy_rules{kind="deny"} 2
embargo_policy_held 0
embargo_redis_connected 1
embargo_redis_reconnects_total 0
embargo_policy_loads_total 1
embargo_policy_held_loads_total 0
embargo_answer_duration_seconds_count{path="denied"} 5
embargo_answer_duration_seconds_count{path="cache"} 4
embargo_answer_duration_seconds_count{path="forwarded"} 2
embargo_answer_duration_seconds_count{path="local"} 2
embargo_answer_duration_seconds_count{path="stale"} 0
embargo_upstream_duration_seconds_count{upstream="127.0.0.1:$NSD"} 2
EXPECT
	[ $bad -eq 0 ] || return 1
	histograms_consistent "$WORK/scrape" || return 1
	grep -q '^embargo_policy_info{version="[0-9a-f]\{16\}",source="redis"} 1$' "$WORK/scrape" ||
		{ grep policy_info "$WORK/scrape"; return 1; }
	grep -q "^process_resident_memory_bytes [1-9]" "$WORK/scrape" || return 1
	echo "$(grep -c '^embargo_\|^process_' "$WORK/scrape") samples in $(wc -c <"$WORK/scrape") bytes"
}
check "metrics count the queries sent: transport, type, rcode, rule, reason, cache, local" counters_match

promtool_passes() {
	[ -s "$WORK/scrape" ] || scrape || return 1 # (counters_match's, or one of its own)
	promtool check metrics <"$WORK/scrape"
}
check "the metrics pass promtool check metrics" promtool_passes

health() {
	get /health | head -1 | grep -qx 200 && get /nothing | head -1 | grep -qx 404
}
check "/health answers 200 while serving; other paths 404" health

# A real Prometheus scraping embargo every second; the counter read back through its API.
PROM_PORT=
scraped() {
	local pp
	pp=$(free_port)
	PROM_PORT=$pp
	mkdir -p "$WORK/prom"
	cat >"$WORK/prom/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: embargo
    static_configs:
      - targets: ["127.0.0.1:$MP"]
CONF
	prometheus --config.file="$WORK/prom/prometheus.yml" --storage.tsdb.path="$WORK/prom/data" \
		--web.listen-address="127.0.0.1:$pp" >"$WORK/prometheus.log" 2>&1 &
	PIDS+=($!)
	local api="http://127.0.0.1:$pp/api/v1/query?query=embargo_denied_total"
	read_back() {
		python3 -c "
import json, sys, urllib.request
r = json.load(urllib.request.urlopen(sys.argv[1], timeout=2))
res = r['data']['result']
print(res[0]['value'][1] if res else '')" "$api" 2>/dev/null | grep -qx 5
	}
	wait_for 40 read_back || { tail -5 "$WORK/prometheus.log"; return 1; }
	echo "Prometheus read embargo_denied_total = 5"
}
check "a Prometheus server scrapes embargo and reads embargo_denied_total back" scraped

# The Grafana dashboard in contrib/: valid JSON, every metric it uses is one embargo exports,
# and the Prometheus above accepts and evaluates each of its queries.
dashboard() {
	[ -n "$PROM_PORT" ] || return 1
	python3 - "$srcdir/contrib/grafana-embargo.json" "$WORK/scrape" "$PROM_PORT" <<'PY'
import json, re, sys, urllib.parse, urllib.request
dash = json.load(open(sys.argv[1]))
exported = set()
for l in open(sys.argv[2]):
    if l.startswith("# TYPE "):
        name, kind = l.split()[2:4]
        exported |= {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
n = 0
for p in dash["panels"]:
    for t in p["targets"]:
        expr = t["expr"]
        used = set(re.findall(r"\b(?:embargo|process)_[a-z_]+", expr))
        missing = used - exported
        assert not missing, "%s: %s not exported" % (p["title"], missing)
        q = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        url = "http://127.0.0.1:%s/api/v1/query?query=%s" % (sys.argv[3], urllib.parse.quote(q))
        r = json.load(urllib.request.urlopen(url, timeout=5))
        assert r["status"] == "success", (p["title"], r)
        n += 1
print("%d panels, %d queries evaluated by Prometheus" % (len(dash["panels"]), n))
PY
}
check "the Grafana dashboard's queries use exported metrics and evaluate in Prometheus" dashboard

# The query log: one JSON line per query, each parsed by python3 with the fields the README
# lists; SIGUSR1 after a rename (logrotate) starts a new file; sampling and denials only.
query_log() {
	local p
	p=$(free_port)
	start_embargo qlog "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--query-log "$WORK/queries.log"
	wait_for 5 grep -q "policy loaded from redis" "$WORK/qlog.log" || return 1
	EP=$p queries
	wait_for 5 eval "[ \$(wc -l <'$WORK/queries.log') -ge 13 ]" || { cat "$WORK/queries.log"; return 1; }
	mv "$WORK/queries.log" "$WORK/queries.log.1"
	kill -USR1 "$PID_qlog"
	wait_for 5 grep -q "query log reopened" "$WORK/qlog.log" || return 1
	# The writer reopens at its next pass (every 50 ms), which creates the new file.
	wait_for 5 test -e "$WORK/queries.log" || { echo "not reopened"; return 1; }
	q "$p" @127.0.0.1 Blocked.Test A >/dev/null
	wait_for 5 test -s "$WORK/queries.log" || { echo "nothing written after the reopening"; return 1; }
	python3 - "$WORK/queries.log.1" "$WORK/queries.log" <<'PY' || return 1
import json, sys
old = [json.loads(l) for l in open(sys.argv[1])]
new = [json.loads(l) for l in open(sys.argv[2])]
assert len(old) == 13, len(old)
keys = {"time", "client", "port", "qname", "qtype", "rcode", "decision", "latency_us", "transport"}
for e in old + new:
    assert keys <= set(e), e
count = lambda d: sum(1 for e in old if e["decision"] == d)
assert count("denied") == 5 and count("cache") == 4 and count("forwarded") == 2 and count("local") == 2, old
assert sum(1 for e in old if e["transport"] == "tcp") == 1
d = [e for e in old if e["decision"] == "denied" and e["qname"] == "blocked.test."][0]
assert d["rule"] == "blocked.test" and d["reason"] == "test rule: blocked" and d["rcode"] == "NXDOMAIN", d
f = [e for e in old if e["decision"] == "forwarded"][0]
assert f["upstream"].startswith("127.0.0.1:"), f
assert len(new) == 1 and new[0]["qname"].lower() == "blocked.test." and new[0]["decision"] == "denied", new
print("%d lines before the rotation, %d after; e.g. %s" % (len(old), len(new), json.dumps(d)))
PY
}
check "query log: a JSON line per query with its decision, rule and reason; reopened on SIGUSR1" query_log

query_log_filters() {
	local p
	p=$(free_port)
	start_embargo qlogf "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--query-log "$WORK/denied.log" --query-log-denied-only
	EP=$p queries
	wait_for 5 eval "[ \$(wc -l <'$WORK/denied.log') -ge 5 ]" || return 1
	sleep "0.$((2 * ${TIME_SCALE:-1}))" # (no line more may come: a settle, not a wait)
	[ "$(wc -l <"$WORK/denied.log")" -eq 5 ] && ! grep -qv '"decision":"denied"' "$WORK/denied.log" ||
		{ cat "$WORK/denied.log"; return 1; }
	p=$(free_port)
	start_embargo qlogs "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--query-log "$WORK/sampled.log" --query-log-sample 4 --threads 1
	local i
	for i in $(seq 1 40); do q "$p" @127.0.0.1 localhost A >/dev/null; done
	wait_for 5 eval "[ \$(wc -l <'$WORK/sampled.log') -ge 10 ]" || { wc -l "$WORK/sampled.log"; return 1; }
	sleep "0.$((2 * ${TIME_SCALE:-1}))" # (no line more may come)
	[ "$(wc -l <"$WORK/sampled.log")" -eq 10 ]
}
check "query log: --query-log-denied-only and --query-log-sample" query_log_filters

# Hit counters: denials per rule reach the Redis hash embargo:hits within a few seconds, and a
# second round adds to them (nothing counted twice).
hit_counters() {
	local p
	p=$(free_port)
	R del embargo:hits
	start_embargo hits "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--hit-counters yes
	wait_for 5 grep -q "policy loaded from redis" "$WORK/hits.log" || return 1
	EP=$p queries
	wait_for 5 eval "[ \"\$(redis-cli -p $REDIS hget embargo:hits blocked.test)\" = 3 ]" ||
		{ redis-cli -p "$REDIS" hgetall embargo:hits; return 1; }
	wait_for 5 eval "[ \"\$(redis-cli -p $REDIS hget embargo:hits kaspersky.com)\" = 2 ]" || return 1
	EP=$p queries
	wait_for 5 eval "[ \"\$(redis-cli -p $REDIS hget embargo:hits blocked.test)\" = 6 ]" ||
		{ redis-cli -p "$REDIS" hgetall embargo:hits; return 1; }
	sleep "$((15 * ${TIME_SCALE:-1} / 10)).5" # (no count more may come: pushed once a second)
	redis-cli -p "$REDIS" hgetall embargo:hits
	[ "$(redis-cli -p "$REDIS" hget embargo:hits blocked.test)" = 6 ] &&
		[ "$(redis-cli -p "$REDIS" hget embargo:hits kaspersky.com)" = 4 ] &&
		[ "$(redis-cli -p "$REDIS" hlen embargo:hits)" = 2 ]
}
check "hit counters: denials per rule added to embargo:hits in Redis once a second" hit_counters

# Redis goes away and comes back: the link's state and its reconnection are in the metrics.
redis_link() {
	sample() { get /metrics | awk -v k="$1" '$1 == k {print $2}'; }
	redis-cli -p "$REDIS" shutdown nosave >/dev/null 2>&1
	wait_for 10 eval "[ \"\$(sample embargo_redis_connected)\" = 0 ]" || { echo "still connected"; return 1; }
	start_redis "$REDIS"
	wait_for 15 eval "[ \"\$(sample embargo_redis_connected)\" = 1 ]" || { echo "not back"; return 1; }
	[ "$(sample embargo_redis_reconnects_total)" = 1 ] || { sample embargo_redis_reconnects_total; return 1; }
}
check "metrics: the Redis link seen down, then back (one reconnection)" redis_link

finish
