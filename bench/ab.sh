#!/usr/bin/env bash
# bench/ab.sh OLD_EMBARGO NEW_EMBARGO: two embargo builds side by side on loopback, measured in
# turns (ROUNDS, default 5, of DURATION seconds, default 5, per path), so that both see the
# same machine noise. Cache hits and denials (bundled list, no Redis); one worker each; the same
# NSD upstream (NEW_ARGS: extra settings for the new one, e.g. --metrics or --query-log, to
# measure a feature against the same build without it; OLD_ARGS: the same for the old one). Prints CPU per answered query for each round and the medians, and their ratio.
set -eu
OLD=$1
NEW=$2
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
srcdir=${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$srcdir/tests/integration/lib.sh"
need nsd nsd
need dnsperf dnsperf
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

NSD=$(free_port)
start_nsd "$NSD"
NOREDIS="redis://127.0.0.1:$(free_port)"
# The bench zone is test., a default local zone in builds that have them: handed back.
local_test() { "$1" --no-local-zone test. --version >/dev/null 2>&1 && echo --no-local-zone test.; }
P_OLD=$(free_port)
P_NEW=$(free_port)
"$OLD" --listen "127.0.0.1:$P_OLD" --upstream "127.0.0.1:$NSD" --threads 1 --snapshot off \
	--redis "$NOREDIS" $(local_test "$OLD") ${OLD_ARGS:-} >"$WORK/old.log" 2>&1 &
PID_OLD=$!
PIDS+=($PID_OLD)
"$NEW" --listen "127.0.0.1:$P_NEW" --upstream "127.0.0.1:$NSD" --threads 1 --snapshot off \
	--redis "$NOREDIS" $(local_test "$NEW") ${NEW_ARGS:-} >"$WORK/new.log" 2>&1 &
PID_NEW=$!
PIDS+=($PID_NEW)
wait_for 10 grep -q "serving on" "$WORK/old.log" || die "old did not start"
wait_for 10 grep -q "serving on" "$WORK/new.log" || die "new did not start"

python3 - "$WORK" <<'PY'
import random, sys
work = sys.argv[1]
random.seed(5)
hits = ["www.test A", "www.test AAAA", "ns.test A", "big.test TXT", "www.example.org A"]
open(work + "/hits.txt", "w").write("\n".join(hits * 2000) + "\n")
bl = ["h%d.kaspersky.com A" % random.randrange(100000) for _ in range(10000)]
open(work + "/blocked.txt", "w").write("\n".join(bl) + "\n")
PY

measure() { # PID PORT FILE -> cpu us per answered query
	local pid=$1 port=$2 file=$3 before after out answered
	before=$(cpu_ticks "$pid")
	out=$(dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$DURATION" -c 4 -q 200 2>&1)
	after=$(cpu_ticks "$pid")
	answered=$(awk '/Queries completed:/ {print $3}' <<<"$out")
	awk -v a="$answered" -v c=$((after - before)) -v hz="$HZ" \
		'BEGIN { printf "%.3f\n", (a > 0 ? c / hz / a * 1e6 : 0) }'
}

for f in hits blocked; do # warm-up: the cache fills
	dnsperf -s 127.0.0.1 -p "$P_OLD" -d "$WORK/$f.txt" -l 1 -c 4 -q 200 >/dev/null 2>&1 || true
	dnsperf -s 127.0.0.1 -p "$P_NEW" -d "$WORK/$f.txt" -l 1 -c 4 -q 200 >/dev/null 2>&1 || true
done
for f in hits blocked; do
	: >"$WORK/$f.old"
	: >"$WORK/$f.new"
done
for r in $(seq 1 "$ROUNDS"); do
	for f in hits blocked; do
		# Alternate which goes first, so neither always follows the other.
		if [ $((r % 2)) -eq 1 ]; then
			measure "$PID_OLD" "$P_OLD" "$WORK/$f.txt" >>"$WORK/$f.old"
			measure "$PID_NEW" "$P_NEW" "$WORK/$f.txt" >>"$WORK/$f.new"
		else
			measure "$PID_NEW" "$P_NEW" "$WORK/$f.txt" >>"$WORK/$f.new"
			measure "$PID_OLD" "$P_OLD" "$WORK/$f.txt" >>"$WORK/$f.old"
		fi
	done
done
median() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
printf '%-8s %-40s %-40s %8s %8s %6s\n' path "old (us/query per round)" "new" old new new/old
for f in hits blocked; do
	o=$(median "$WORK/$f.old")
	n=$(median "$WORK/$f.new")
	printf '%-8s %-40s %-40s %8s %8s %6s\n' "$f" "$(tr '\n' ' ' <"$WORK/$f.old")" \
		"$(tr '\n' ' ' <"$WORK/$f.new")" "$o" "$n" "$(awk -v a="$o" -v b="$n" 'BEGIN {printf "%.2f", b / a}')"
done
