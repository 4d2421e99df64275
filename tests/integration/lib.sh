# Helpers for the integration tests: free loopback ports, real servers started and always
# stopped, and a tiny pass/fail ledger. Sourced by run.sh.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/embargo-it.XXXXXX")
PIDS=()
PASSED=0
FAILED=0

cleanup() {
	local status=$? pid
	set +e # Benchmarks run with -e; a server already gone must not fail the cleanup.
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
	if [ "$status" -ne 0 ] || [ "$FAILED" -gt 0 ] || [ -n "${KEEP_WORK:-}" ]; then
		echo "# logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

die() {
	# Also on stderr: inside check() stdout goes to a file.
	echo "Bail out! $*" | tee /dev/stderr
	exit 99
}

need() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found (apt-get install -y $2; ./quickstart.sh check installs it)"
}

# Every tool the integration tests use, and the daemon itself.
need_all() {
	need redis-server redis-server
	need redis-cli redis-tools
	need nsd nsd
	need kdig knot-dnsutils
	need ss iproute2
	need python3 python3
	[ -x "$EMBARGO" ] || die "$EMBARGO not built"
}

# A port free for both UDP and TCP on loopback, below the kernel's ephemeral range so that no
# client socket can take it between this check and the bind.
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
		if ! ss -Htuln 2>/dev/null | awk '{print $5}' | grep -qE "[:.]$p\$"; then
			echo "$p"
			return
		fi
	done
}

# wait_for SECONDS COMMAND...: retry COMMAND every 0.1 s until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	while [ "$SECONDS" -le "$deadline" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

ok() {
	PASSED=$((PASSED + 1))
	echo "ok $((PASSED + FAILED)) - $1"
}

# skip REASON: a test that cannot run here, counted as passed (TAP's SKIP directive).
skip() {
	PASSED=$((PASSED + 1))
	echo "ok $((PASSED + FAILED)) # SKIP $1"
}

not_ok() {
	FAILED=$((FAILED + 1))
	echo "not ok $((PASSED + FAILED)) - $1"
	shift
	local line
	for line in "$@"; do
		echo "#   $line"
	done
}

# check NAME COMMAND...: one test. COMMAND runs in this shell (not a subshell), so the
# servers it starts are tracked and stopped like the others.
check() {
	local name=$1
	shift
	# ONLY=WORDS runs just the tests whose names contain WORDS (when debugging one).
	[ -n "${ONLY:-}" ] && [[ $name != *"$ONLY"* ]] && return 0
	if "$@" >"$WORK/check.out" 2>&1; then
		ok "$name"
		# SHOW=1 prints what a passing test measured, too (figures for notes and the README).
		[ -n "${SHOW:-}" ] && sed 's/^/#   /' "$WORK/check.out"
	else
		not_ok "$name" "$(cat "$WORK/check.out")"
	fi
}

start_redis() { # PORT [REDIS-SERVER ARGS...], e.g. --replicaof 127.0.0.1 PORT
	local port=$1
	shift
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$WORK" --logfile "$WORK/redis-$port.log" "$@" &
	PIDS+=($!)
	# A password-protected server answers NOAUTH: up all the same.
	wait_for 10 eval "redis-cli -p $port ping 2>&1 | grep -qE 'PONG|NOAUTH'" ||
		die "redis-server on port $port did not start"
}

start_nsd() { # PORT
	local dir="$WORK/nsd"
	mkdir -p "$dir"
	cp "$srcdir/tests/integration/zone.test" "$dir/test.zone"
	cp "$srcdir/tests/integration/zone.vendor" "$dir/vendor.zone"
	cp "$srcdir/tests/integration/zone.lookalike" "$dir/lookalike.zone"
	start_nsd_zones "$1" www.test test.:test.zone kaspersky.com.:vendor.zone \
		notkaspersky.com.:lookalike.zone example.org.:lookalike.zone
}

# start_nsd_zones PORT PROBE-NAME ZONE:FILE...: NSD on PORT serving each ZONE from FILE in
# $WORK/nsd; up once PROBE-NAME A answers.
start_nsd_zones() {
	local port=$1 probe=$2 dir="$WORK/nsd" z
	shift 2
	mkdir -p "$dir"
	cat >"$dir/nsd.conf" <<CONF
server:
	ip-address: 127.0.0.1@$port
	port: $port
	username: ""
	chroot: ""
	zonesdir: "$dir"
	database: ""
	zonelistfile: "$dir/zone.list"
	xfrdfile: "$dir/xfrd.state"
	pidfile: "$dir/nsd.pid"
	logfile: "$dir/nsd.log"
	server-count: 1
	verbosity: 1
	# NSD limits answers to 200/s per client network by default: a resolver is one client.
	rrl-ratelimit: 0
remote-control:
	control-enable: no
CONF
	for z in "$@"; do
		printf 'zone:\n\tname: "%s"\n\tzonefile: "%s"\n' "${z%%:*}" "${z#*:}" >>"$dir/nsd.conf"
	done
	nsd -d -c "$dir/nsd.conf" &
	PIDS+=($!)
	wait_for 10 eval "kdig @127.0.0.1 -p $port +timeout=1 +retry=0 $probe A | grep -q 'status: NOERROR'" ||
		die "nsd on port $port did not start: $(cat "$dir/nsd.log" 2>/dev/null)"
}

# start_fake NAME PORT ARGS...: tests/integration/fakedns.py as an upstream on PORT, its query log
# in $WORK/NAME.queries (source port, ID and name as read, letter case kept).
start_fake() {
	local name=$1 port=$2
	shift 2
	python3 "$srcdir/tests/integration/fakedns.py" --port "$port" --log "$WORK/$name.queries" \
		--lifetime 900 "$@" >"$WORK/fake-$name.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 eval "ss -Hlnt | grep -q '127.0.0.1:$port '" ||
		die "fake upstream $name did not start: $(cat "$WORK/fake-$name.log")"
}

# start_embargo NAME PORT ARGS...: the daemon in the background, log in $WORK/NAME.log. The
# tests' own zone is test., a default local zone (RFC 6761): handed back to the upstream here.
start_embargo() {
	local name=$1 port=$2
	shift 2
	start_embargo_as_is "$name" "$port" --no-local-zone test. "$@"
}

# start_embargo_as_is NAME PORT ARGS...: the same with embargo's default local zones all kept.
start_embargo_as_is() {
	local name=$1 port=$2
	shift 2
	"$EMBARGO" --listen "127.0.0.1:$port" --threads 2 --snapshot "$WORK/$name.snapshot" "$@" \
		>"$WORK/$name.log" 2>&1 &
	local pid=$!
	PIDS+=($pid)
	eval "PID_$name=$pid"
	wait_for 10 grep -q "serving on" "$WORK/$name.log" ||
		die "embargo $name did not start: $(cat "$WORK/$name.log")"
}

# by_policy PORT NAME: NAME is denied by embargo itself: NXDOMAIN with EDE 16 (the NXDOMAIN that
# NSD gives for a name missing from its zone has no EDE).
by_policy() {
	local out
	out=$(kdig -p "$1" +timeout=1 +retry=0 @127.0.0.1 "$2" +edns)
	grep -q "status: NXDOMAIN" <<<"$out" && grep -q "EDE: 16" <<<"$out"
}

# q PORT ARGS...: kdig with short timeouts.
q() {
	local port=$1
	shift
	kdig -p "$port" +timeout=3 +retry=0 "$@"
}

# finish: the sanitizer check every suite ends with (in the ASan/UBSan build any report aborts
# the daemon; name it here, once, plainly), the plan and the closing line; exits 1 on a failure.
finish() {
	sanitizers_quiet() {
		! grep -l "runtime error\|AddressSanitizer\|LeakSanitizer" "$WORK"/*.log
	}
	check "no sanitizer reports from any daemon" sanitizers_quiet
	echo "1..$((PASSED + FAILED))"
	echo "integration: $PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

# consent_first [GLOBAL-OPTIONS...]: consent to what Redis holds replacing the bundled list a
# fresh instance enforces (an operator does this once, when the list they import lacks the
# bundled names): accept, from the bundled list, to the digest Redis holds now.
consent_first() {
	"$POLICY_TOOL" "$@" --by test accept --from bundled "$("$POLICY_TOOL" "$@" digest)" >/dev/null
}
