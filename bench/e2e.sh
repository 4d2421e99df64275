#!/usr/bin/env bash
# bench/e2e.sh [RULES...]: embargo against Unbound and dnsdist, on loopback, in one run.
# For each policy size (default 100000 1000000) every server gets the same rules and the same
# local upstream (NSD): embargo (1 worker), Unbound 1.17 (1 thread, local-zone always_nxdomain)
# and dnsdist 1.7 (packet cache, SuffixMatchNode). dnsperf sends cache hits, blocked names and a
# 90/10 mix; the figures are queries per second and CPU per answered query (server utime+stime
# from /proc over answered queries), with ratios to Unbound; plus load time and RSS. A bare
# recvmmsg/sendmmsg responder (bench/bare) gives the floor. Installs what it needs from
# Debian packages; cleans up after itself. DURATION (default 10) seconds per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DURATION=${DURATION:-10}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100000 1000000)

missing=()
for p in unbound dnsdist dnsperf nsd redis-server knot-dnsutils python3; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	for s in unbound dnsdist nsd; do "${sudo[@]}" service "$s" stop >/dev/null 2>&1 || true; done
fi
make -C "$BUILD" -s resolver/embargo tool/embargo-policy bench/bare >/dev/null

srcdir=.
EMBARGO=$BUILD/resolver/embargo
. tests/integration/lib.sh
NSD=$(free_port)
start_nsd "$NSD"
HZ=$(getconf CLK_TCK)

cpu_ticks() { # PID: utime+stime of all its threads
	awk '{print $14 + $15}' "/proc/$1/stat"
}
rss_mib() {
	awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$1/status"
}

# measure NAME PID PORT FILE: dnsperf against PORT; prints "qps cpu_us_per_query"
measure() {
	local pid=$2 port=$3 file=$4 before after out answered qps
	dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l 2 -c 4 -q 200 >/dev/null 2>&1 || true # warm-up
	before=$(cpu_ticks "$pid")
	out=$(dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$DURATION" -c 4 -q 200 2>&1)
	after=$(cpu_ticks "$pid")
	answered=$(awk '/Queries completed:/ {print $3}' <<<"$out")
	qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
	awk -v a="$answered" -v q="$qps" -v c=$((after - before)) -v hz="$HZ" \
		'BEGIN { printf "%.0f %.2f\n", q, (a > 0 ? c / hz / a * 1e6 : 0) }'
}

# ready PORT NAME SECONDS: wait until NAME is denied (NXDOMAIN) at PORT, asking every 10 ms
# (kdig's shortest timeout, 1 s, would blur load times).
ready() {
	python3 - "$@" <<'PY'
import socket, struct, sys, time
port, name, limit = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
wire = b"".join(bytes([len(l)]) + l for l in name.encode().split(b".")) + b"\0"
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + wire + b"\0\1\0\1"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.01)
end = time.time() + limit
while time.time() < end:
    s.sendto(q, ("127.0.0.1", port))
    try:
        if s.recv(4096)[3] & 15 == 3:
            sys.exit(0)
    except OSError:
        time.sleep(0.01)
sys.exit(1)
PY
}

# run_server NAME PORT COMMAND...: start a server, time its load, then measure every mix.
run_server() {
	local name=$1 port=$2 t0 pid
	shift 2
	t0=$(date +%s%3N)
	"$@" >"$WORK/$name.log" 2>&1 &
	pid=$!
	PIDS+=($pid)
	ready "$port" "$PROBE" 300 || die "$name not ready: $(tail -5 "$WORK/$name.log")"
	echo "$name: loaded in $(($(date +%s%3N) - t0)) ms, RSS $(rss_mib $pid) MiB" | tee -a "$RESULTS"
	for mix in hits blocked mix; do
		row "$name" "$N" "$mix" $(measure "$name" "$pid" "$port" "$WORK/$mix.txt")
	done
	kill "$pid"
}

RESULTS=$WORK/results.txt
: >"$RESULTS"
row() { printf '%-8s %-9s %-8s %10s %12s\n' "$@" | tee -a "$RESULTS"; }

for N in "${SIZES[@]}"; do
	echo "== $N rules"
	python3 - "$N" "$WORK" <<'PY'
import random, sys
n, work = int(sys.argv[1]), sys.argv[2]
random.seed(11)
tlds = ["com", "net", "org", "ru", "de", "io", "info"]
rules = ["r%d-%x.%s" % (i, random.getrandbits(32), random.choice(tlds)) for i in range(n)]
open(work + "/rules.txt", "w").write("\n".join(rules) + "\n")
hits = ["www.test A", "www.test AAAA", "notkaspersky.com A", "www.notkaspersky.com A",
        "kaspersky.com.example.org A", "www.example.org A", "ns.test A", "blocked.test A",
        "support.blocked.test A", "big.test TXT"]
blocked = ["h%d.%s A" % (random.randrange(1000), random.choice(rules)) for _ in range(100000)]
open(work + "/hits.txt", "w").write("\n".join(hits * 1000) + "\n")
open(work + "/blocked.txt", "w").write("\n".join(blocked) + "\n")
mix = []
for i in range(100000):
    mix.append(blocked[i] if i % 10 == 0 else hits[i % len(hits)])
open(work + "/mix.txt", "w").write("\n".join(mix) + "\n")
# Unbound: one local-zone per rule; dnsdist: a file its Lua reads.
with open(work + "/unbound-zones.conf", "w") as f:
    for r in rules:
        f.write('local-zone: "%s." always_nxdomain\n' % r)
PY
	PROBE="h1.$(head -1 "$WORK/rules.txt")"
	row server size mix qps cpu_us/query

	# embargo
	RP=$(free_port)
	start_redis "$RP"
	"$BUILD/tool/embargo-policy" --redis "redis://127.0.0.1:$RP" import "$WORK/rules.txt" >/dev/null 2>&1
	# These rules replace the bundled list a fresh embargo starts with: the operator's consent
	# (bound to the transition from the bundled list; a build before bound consents had only
	# "accept").
	if "$BUILD/tool/embargo-policy" --redis "redis://127.0.0.1:$RP" digest >/dev/null 2>&1; then
		POLICY_TOOL=$BUILD/tool/embargo-policy consent_first --redis "redis://127.0.0.1:$RP"
	else
		"$BUILD/tool/embargo-policy" --redis "redis://127.0.0.1:$RP" accept >/dev/null
	fi
	EP=$(free_port)
	run_server embargo "$EP" "$EMBARGO" --listen "127.0.0.1:$EP" --threads 1 \
		--upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$RP" --snapshot off --cache-size 256 \
		--no-local-zone test.

	# Unbound
	UP=$(free_port)
	cat >"$WORK/unbound.conf" <<CONF
server:
	interface: 127.0.0.1@$UP
	port: $UP
	num-threads: 1
	do-ip6: no
	username: ""
	chroot: ""
	directory: "$WORK"
	pidfile: "$WORK/unbound.pid"
	logfile: "$WORK/unbound.log"
	use-syslog: no
	do-not-query-localhost: no
	access-control: 127.0.0.0/8 allow
	module-config: "iterator"
	msg-cache-size: 64m
	rrset-cache-size: 128m
	include: "$WORK/unbound-zones.conf"
forward-zone:
	name: "."
	forward-addr: 127.0.0.1@$NSD
remote-control:
	control-enable: no
CONF
	run_server unbound "$UP" unbound -d -c "$WORK/unbound.conf"

	# dnsdist
	DP=$(free_port)
	cat >"$WORK/dnsdist.conf" <<CONF
setLocal("127.0.0.1:$DP")
setSecurityPollSuffix("")
newServer({address="127.0.0.1:$NSD", checkInterval=3600})
pc = newPacketCache(1000000, {maxTTL=86400})
getPool(""):setCache(pc)
smn = newSuffixMatchNode()
for line in io.lines("$WORK/rules.txt") do smn:add(newDNSName(line)) end
addAction(SuffixMatchNodeRule(smn), RCodeAction(DNSRCode.NXDOMAIN))
CONF
	run_server dnsdist "$DP" dnsdist --supervised --disable-syslog -C "$WORK/dnsdist.conf"

	# The floor: no DNS work at all.
	BP=$(free_port)
	"$BUILD/bench/bare" "$BP" &
	PID=$!
	PIDS+=($PID)
	sleep 0.3
	row bare "$N" hits $(measure bare "$PID" "$BP" "$WORK/hits.txt")
	kill "$PID"
done

echo
echo "== CPU per query relative to Unbound (same size and mix)"
awk '$4 ~ /^[0-9.]+$/ && NF == 5 { cpu[$1 " " $2 " " $3] = $5; key[$2 " " $3] = 1 }
     END { for (k in key) { u = cpu["unbound " k]; if (u > 0)
		printf "%-16s embargo %.2fx  dnsdist %.2fx  bare %s\n", k, cpu["embargo " k] / u,
		       cpu["dnsdist " k] / u, (cpu["bare " k] ? sprintf("%.2fx", cpu["bare " k] / u) : "-") } }' \
	"$RESULTS" | sort

# What each server spends above the floor. The bare responder answers the hits file only, so
# this is cache hits; where the floor itself is much of Unbound's cost, this is the figure
# that shows the DNS work.
echo
echo "== CPU per cache hit above the bare responder (us per query)"
awk '$4 ~ /^[0-9.]+$/ && NF == 5 && $3 == "hits" { cpu[$1 " " $2] = $5; size[$2] = 1 }
     END { for (n in size) if (cpu["bare " n] > 0)
		printf "%-9s embargo +%.2f  unbound +%.2f  dnsdist +%.2f  (bare %.2f)\n", n,
		       cpu["embargo " n] - cpu["bare " n], cpu["unbound " n] - cpu["bare " n],
		       cpu["dnsdist " n] - cpu["bare " n], cpu["bare " n] }' "$RESULTS" | sort -n
