#!/usr/bin/env bash
# bench/live.sh [RULES...]: how fast a policy change is enforced, and what a reload costs.
# For each size (default 100000 1000000) it loads that many rules (with reasons) into a Redis
# primary that has a replica, runs one embargo on each, and measures:
#   - propagation: from redis-cli-equivalent SADD returning on the primary until a query sees the
#     name denied, over CHANGES changes (default 100): p50/p99/max for the primary's instance and
#     for the fleet (both instances);
#   - a full reload: its read and build times (from the log), peak RSS growth during the swap,
#     and the latency of queries answered meanwhile (p50/p99/max, lost);
#   - start-up from the snapshot file alone (Redis down) until the first query is answered.
# Everything runs on loopback: NSD answers the probe names, nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CHANGES=${CHANGES:-100}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100000 1000000)
srcdir=.
EMBARGO=$BUILD/resolver/embargo
POLICY_TOOL=$BUILD/tool/embargo-policy
. tests/integration/lib.sh
for t in redis-server nsd kdig python3; do need "$t" "$t"; done
[ -x "$EMBARGO" ] || die "build first: ./quickstart.sh check or make -C $BUILD"

NSD=$(free_port)
start_nsd "$NSD"

for N in "${SIZES[@]}"; do
	echo "== $N rules"
	PP=$(free_port)
	RP=$(free_port)
	start_redis "$PP"
	start_redis "$RP" --replicaof 127.0.0.1 "$PP"
	python3 - "$N" >"$WORK/rules-$N.tsv" <<'PY'
import random, sys
random.seed(7)
tlds = ["com", "net", "org", "ru", "de", "io", "co.uk", "info"]
for i in range(int(sys.argv[1])):
    print("r%d-%x.%s\tbench rule %d" % (i, random.getrandbits(32), random.choice(tlds), i))
PY
	start=$(date +%s%3N)
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$PP" import "$WORK/rules-$N.tsv" 2>/dev/null
	echo "import into redis: $(($(date +%s%3N) - start)) ms"
	# These rules replace the bundled list a fresh embargo starts with: the operator's consent
	# (bound to the transition from the bundled list; a build before bound consents had only
	# "accept").
	if "$POLICY_TOOL" --redis "redis://127.0.0.1:$PP" digest >/dev/null 2>&1; then
		consent_first --redis "redis://127.0.0.1:$PP"
	else
		"$POLICY_TOOL" --redis "redis://127.0.0.1:$PP" accept >/dev/null
	fi
	wait_for 60 eval "redis-cli -p $RP scard embargo:deny | grep -qx $N" || die "replica not in sync"
	EA=$(free_port)
	EB=$(free_port)
	start=$(date +%s%3N)
	start_embargo "a$N" "$EA" --threads 1 --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$PP"
	echo "embargo start to serving with $N rules: $(($(date +%s%3N) - start)) ms ($(grep -o 'read [0-9]* ms[^,]*, built [0-9]* ms' "$WORK/a$N.log" | head -1))"
	start_embargo "b$N" "$EB" --threads 1 --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$RP"
	PA=$(eval echo "\$PID_a$N")
	python3 - "$PP" "$EA" "$EB" "$CHANGES" "$PA" "$WORK/a$N.log" <<'PY'
import os, random, socket, struct, sys, time
pp, ea, eb, changes, pid, log = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
r = socket.create_connection(("127.0.0.1", pp))
def redis(*args):
    r.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return r.recv(65536)
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
qid = 0
DENIED = b"\x07embargo\x07invalid\x00"  # The MNAME of embargo's denials.
def ask(port, name, timeout=0.5):
    """rcode of one query (99 for embargo's own denial), its latency in seconds; (None, timeout)
    when lost."""
    global qid
    qid = (qid + 1) & 0xFFFF
    wire = b"".join(bytes([len(l)]) + l for l in name.encode().split(b".")) + b"\0"
    t = time.perf_counter()
    dns.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + b"\0\1\0\1", ("127.0.0.1", port))
    dns.settimeout(timeout)
    while True:
        try:
            data = dns.recv(4096)
        except socket.timeout:
            return None, timeout
        if struct.unpack(">H", data[:2])[0] == qid:
            return (99 if DENIED in data else data[3] & 15), time.perf_counter() - t
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]
def show(label, xs):
    print("%-34s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms  (%d changes)" % (
        label, pct(xs, .5) * 1e3, pct(xs, .99) * 1e3, max(xs) * 1e3, len(xs)))
one, fleet = [], []
for i in range(changes):
    name = "p%d-%x.bench.test" % (i, random.getrandbits(32))
    for port in (ea, eb):
        rc, _ = ask(port, name, 3)
        assert rc == 3, "probe %s: rcode %s" % (name, rc)  # NXDOMAIN from NSD, not denied yet
    redis(b"SADD", b"embargo:deny", name.encode())
    t0 = time.perf_counter()
    done = {}
    while len(done) < 2:
        for port in (ea, eb):
            if port in done:
                continue
            if ask(port, name, 0.5)[0] == 99:
                done[port] = time.perf_counter() - t0
        time.sleep(0.002)
    one.append(done[ea])
    fleet.append(max(done.values()))
show("propagation, one instance:", one)
show("propagation, primary+replica fleet:", fleet)

# A full reload under query load: latencies of queries answered meanwhile.
def rss(kind):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(kind):
            return int(line.split()[1])
steady = rss("VmRSS:")
lines_before = open(log).read().count("policy loaded from redis")
lat, lost = [], 0
redis(b"SADD", b"embargo:deny", b"reload-trigger.bench.test")
t_end = time.perf_counter() + 60
while time.perf_counter() < t_end:
    rc, l = ask(ea, "r1-x.bench.test" if len(lat) % 2 else "www.test", 0.5)
    if rc is None:
        lost += 1
    else:
        lat.append(l)
    if open(log).read().count("policy loaded from redis") > lines_before and len(lat) > 1000:
        break
peak = rss("VmHWM:")
last = [l for l in open(log) if "policy loaded from redis" in l][-1]
print("full reload: %s" % last.split("KiB; ")[-1].split("; changes")[0].strip())
print("RSS %d MiB steady, %d MiB at the peak of a reload (VmHWM)" % (steady // 1024, peak // 1024))
print("queries during the reload: %d answered, %d lost; latency p50 %.3f ms  p99 %.3f ms  max %.3f ms" % (
    len(lat), lost, pct(lat, .5) * 1e3, pct(lat, .99) * 1e3, max(lat) * 1e3))
PY
	kill "$(eval echo "\$PID_a$N")" "$(eval echo "\$PID_b$N")" 2>/dev/null || true

	# Start-up from the snapshot the first instance saved, with Redis out of reach.
	cp "$WORK/a$N.snapshot" "$WORK/s$N.snapshot"
	ES=$(free_port)
	start=$(date +%s%3N)
	start_embargo "s$N" "$ES" --threads 1 --upstream "127.0.0.1:$NSD" \
		--redis "redis://127.0.0.1:$(free_port)"
	echo "embargo start to serving from the snapshot, Redis down: $(($(date +%s%3N) - start)) ms" \
		"($(grep -o 'saved [^;]*; loaded in [0-9]* ms' "$WORK/s$N.log" | sed 's/.*; //'))"
	q "$ES" @127.0.0.1 "h1.$(head -1 "$WORK/rules-$N.tsv" | cut -f1)" | grep -q "status: NXDOMAIN" ||
		die "the snapshot instance does not deny the first rule"
	kill "$(eval echo "\$PID_s$N")" 2>/dev/null || true
done
