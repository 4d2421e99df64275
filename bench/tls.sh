#!/usr/bin/env bash
# bench/tls.sh [RULES]: DNS over TLS, embargo against Unbound 1.17 and dnsdist 1.7 (Debian's) in
# one run, with the same rules (default 10000, plus embargo's bundled list's vendor names for the
# denials) and the same local upstream (NSD). For each server on one thread: CPU per answered
# query over kept-open DoT connections (dnsperf -m dot, 4 connections) for cache hits and for
# denials, and new TLS handshakes per second with the server's CPU per handshake (openssl
# s_time -new: a full handshake each, no resumption). embargo's port-53 TCP is measured too, for
# the ratio DoT/TCP. Figures are ratios within the run. Certificates are made here. DURATION
# (default 10) seconds per measurement. DNS over HTTPS the same way, with h2load (nghttp2's HTTP/2
# load generator: 4 connections, 16 streams each, GET ?dns= of the same questions): Debian's
# dnsperf 2.10 keeps one answer buffer per DoH connection, so answers that arrive in one TLS
# record (as embargo and dnsdist send the answers of a batch) overwrite each other there, and it
# counts them lost. Installs what it needs from Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DURATION=${DURATION:-10}
N=${1:-10000}
missing=()
for p in unbound dnsdist dnsperf nsd redis-server knot-dnsutils python3 openssl nghttp2-client; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	for s in unbound dnsdist nsd; do "${sudo[@]}" service "$s" stop >/dev/null 2>&1 || true; done
fi
make -C "$BUILD" -s resolver/embargo tool/embargo-policy >/dev/null

srcdir=.
EMBARGO=$BUILD/resolver/embargo
. tests/integration/lib.sh
NSD=$(free_port)
start_nsd "$NSD"
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Certificates: a throwaway CA and a server certificate for dns.test and 127.0.0.1 (P-256).
test_ca "$WORK"
test_cert "$WORK" server "DNS:dns.test,IP:127.0.0.1" dns.test

python3 - "$N" "$WORK" <<'PY'
import random, sys
n, work = int(sys.argv[1]), sys.argv[2]
random.seed(11)
tlds = ["com", "net", "org", "ru", "de", "io", "info"]
rules = ["r%d-%x.%s" % (i, random.getrandbits(32), random.choice(tlds)) for i in range(n)]
open(work + "/rules.txt", "w").write("\n".join(rules) + "\n")
hits = ["www.test A", "www.test AAAA", "notkaspersky.com A", "www.example.org A", "ns.test A",
        "blocked.test A", "big.test TXT"]
open(work + "/hits.txt", "w").write("\n".join(hits * 1000) + "\n")
blocked = ["h%d.%s A" % (random.randrange(1000), random.choice(rules)) for _ in range(100000)]
open(work + "/blocked.txt", "w").write("\n".join(blocked) + "\n")
# DoH: the same questions as GET URLs (ID 0, RD, no EDNS), base64url without padding.
import base64, struct
def url(line):
    name, qtype = line.split()
    wire = struct.pack(">HHHHHH", 0, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        wire += bytes([len(label)]) + label.encode()
    wire += b"\0" + struct.pack(">HH", {"A": 1, "AAAA": 28, "TXT": 16}[qtype], 1)
    return "/dns-query?dns=" + base64.urlsafe_b64encode(wire).decode().rstrip("=")
open(work + "/hits.urls", "w").write("\n".join(url(h) for h in hits) + "\n")
open(work + "/blocked.urls", "w").write("\n".join(url(b) for b in blocked[:5000]) + "\n")
with open(work + "/unbound-zones.conf", "w") as f:
    for r in rules:
        f.write('local-zone: "%s." always_nxdomain\n' % r)
PY
PROBE="h1.$(head -1 "$WORK/rules.txt")"

# measure PID MODE PORT FILE: prints "qps cpu_us_per_query" over MODE (tcp or dot).
measure() {
	local pid=$1 mode=$2 port=$3 file=$4 before after out answered qps
	dnsperf -m "$mode" -s 127.0.0.1 -p "$port" -d "$file" -l 2 -c 4 -q 200 >/dev/null 2>&1 || true
	before=$(cpu_ticks "$pid")
	out=$(dnsperf -m "$mode" -s 127.0.0.1 -p "$port" -d "$file" -l "$DURATION" -c 4 -q 200 2>&1)
	after=$(cpu_ticks "$pid")
	answered=$(awk '/Queries completed:/ {print $3}' <<<"$out")
	qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
	awk -v a="$answered" -v q="$qps" -v c=$((after - before)) -v hz="$HZ" \
		'BEGIN { printf "%.0f %.2f\n", q, (a > 0 ? c / hz / a * 1e6 : 0) }'
}
# handshakes PID PORT: prints "handshakes_per_second cpu_us_per_handshake" (openssl s_time -new).
handshakes() {
	local pid=$1 port=$2 before after out n secs
	before=$(cpu_ticks "$pid")
	out=$(openssl s_time -connect "127.0.0.1:$port" -new -time "$DURATION" 2>&1 || true)
	after=$(cpu_ticks "$pid")
	n=$(awk '/connections in [0-9.]+ real seconds/ {print $1; exit}' <<<"$out")
	secs=$(awk '/connections in [0-9.]+ real seconds/ {print $4; exit}' <<<"$out")
	awk -v n="${n:-0}" -v s="${secs:-1}" -v c=$((after - before)) -v hz="$HZ" \
		'BEGIN { printf "%.0f %.1f\n", n / s, (n > 0 ? c / hz / n * 1e6 : 0) }'
}
# doh PID PORT FILE: prints "qps cpu_us_per_query" over DoH (h2load: the paths of FILE, in turn).
doh() {
	local pid=$1 port=$2 file=$3 before after out done secs
	sed "s|^|https://127.0.0.1:$port|" "$file" >"$file.$port"
	h2load -i "$file.$port" -c 4 -m 16 -D 2 >/dev/null 2>&1 || true
	before=$(cpu_ticks "$pid")
	out=$(h2load -i "$file.$port" -c 4 -m 16 -D "$DURATION" 2>&1 || true)
	after=$(cpu_ticks "$pid")
	done=$(awk '/^requests:/ {print $8}' <<<"$out")
	secs=$(awk '/^finished in/ {print $3 + 0}' <<<"$out")
	grep -q "status codes: .* 0 4xx, 0 5xx" <<<"$out" || echo "h2load: $(grep -E '^(requests|status)' <<<"$out")" >&2
	awk -v d="${done:-0}" -v s="${secs:-1}" -v c=$((after - before)) -v hz="$HZ" \
		'BEGIN { printf "%.0f %.2f\n", d / (s > 0 ? s : 1), (d > 0 ? c / hz / d * 1e6 : 0) }'
}
ready() { # PORT: the probe name is denied over UDP
	wait_for 120 eval "kdig @127.0.0.1 -p $1 +timeout=1 +retry=0 $PROBE | grep -q NXDOMAIN"
}

RESULTS=$WORK/results.txt
row() { printf '%-8s %-10s %10s %12s\n' "$@" | tee -a "$RESULTS"; }
echo "== $N rules, one thread each"
row server path rate cpu_us
# run NAME PID PLAIN_PORT TLS_PORT HTTPS_PORT: every measurement of one server.
run() {
	local name=$1 pid=$2 port=$3 tport=$4 hport=$5
	ready "$port" || die "$name not ready: $(tail -5 "$WORK/$name.log")"
	if [ "$name" = embargo ]; then
		row "$name" tcp-hits $(measure "$pid" tcp "$port" "$WORK/hits.txt")
		row "$name" tcp-denied $(measure "$pid" tcp "$port" "$WORK/blocked.txt")
	fi
	row "$name" dot-hits $(measure "$pid" dot "$tport" "$WORK/hits.txt")
	row "$name" dot-denied $(measure "$pid" dot "$tport" "$WORK/blocked.txt")
	row "$name" handshake $(handshakes "$pid" "$tport")
	row "$name" doh-hits $(doh "$pid" "$hport" "$WORK/hits.urls")
	row "$name" doh-denied $(doh "$pid" "$hport" "$WORK/blocked.urls")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
}

# embargo
RP=$(free_port)
start_redis "$RP"
"$BUILD/tool/embargo-policy" --redis "redis://127.0.0.1:$RP" import "$WORK/rules.txt" >/dev/null 2>&1
POLICY_TOOL=$BUILD/tool/embargo-policy consent_first --redis "redis://127.0.0.1:$RP"
EP=$(free_port)
ET=$(free_port)
EH=$(free_port)
"$EMBARGO" --listen "127.0.0.1:$EP" --listen-tls "127.0.0.1:$ET" --listen-https "127.0.0.1:$EH" \
	--tls-cert "$WORK/server.chain" \
	--tls-key "$WORK/server.key" --threads 1 --upstream "127.0.0.1:$NSD" \
	--redis "redis://127.0.0.1:$RP" --snapshot off --no-local-zone test. --tls-handshake-rate 0 \
	>"$WORK/embargo.log" 2>&1 &
PIDS+=($!)
run embargo $! "$EP" "$ET" "$EH"

# Unbound
UP=$(free_port)
UT=$(free_port)
UH=$(free_port)
cat >"$WORK/unbound.conf" <<CONF
server:
	interface: 127.0.0.1@$UP
	interface: 127.0.0.1@$UT
	interface: 127.0.0.1@$UH
	port: $UP
	tls-port: $UT
	https-port: $UH
	http-endpoint: "/dns-query"
	tls-service-key: "$WORK/server.key"
	tls-service-pem: "$WORK/server.chain"
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
	incoming-num-tcp: 100
	include: "$WORK/unbound-zones.conf"
forward-zone:
	name: "."
	forward-addr: 127.0.0.1@$NSD
remote-control:
	control-enable: no
CONF
unbound -d -c "$WORK/unbound.conf" >"$WORK/unbound.out" 2>&1 &
PIDS+=($!)
run unbound $! "$UP" "$UT" "$UH"

# dnsdist
DP=$(free_port)
DT=$(free_port)
DH=$(free_port)
cat >"$WORK/dnsdist.conf" <<CONF
setLocal("127.0.0.1:$DP")
addTLSLocal("127.0.0.1:$DT", "$WORK/server.chain", "$WORK/server.key")
addDOHLocal("127.0.0.1:$DH", "$WORK/server.chain", "$WORK/server.key", "/dns-query")
setSecurityPollSuffix("")
newServer({address="127.0.0.1:$NSD", checkInterval=3600})
pc = newPacketCache(1000000, {maxTTL=86400})
getPool(""):setCache(pc)
smn = newSuffixMatchNode()
for line in io.lines("$WORK/rules.txt") do smn:add(newDNSName(line)) end
addAction(SuffixMatchNodeRule(smn), RCodeAction(DNSRCode.NXDOMAIN))
CONF
dnsdist --supervised --disable-syslog -C "$WORK/dnsdist.conf" >"$WORK/dnsdist.log" 2>&1 &
PIDS+=($!)
run dnsdist $! "$DP" "$DT" "$DH"

echo
echo "== CPU relative to Unbound (same path); embargo's DoT against its own TCP"
awk '$3 ~ /^[0-9.]+$/ { cpu[$1 " " $2] = $4; path[$2] = 1 }
     END { for (p in path) if (cpu["unbound " p] > 0)
		printf "%-10s embargo %.2fx  dnsdist %.2fx\n", p, cpu["embargo " p] / cpu["unbound " p],
		       cpu["dnsdist " p] / cpu["unbound " p]
	   if (cpu["embargo tcp-hits"] > 0)
		printf "embargo DoT/TCP: hits %.2fx, denials %.2fx\n",
		       cpu["embargo dot-hits"] / cpu["embargo tcp-hits"],
		       cpu["embargo dot-denied"] / cpu["embargo tcp-denied"] }' "$RESULTS"
