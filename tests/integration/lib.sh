# Helpers for the integration tests: loopback ports and namespace subnets reserved in a ledger
# shared by every script running on the machine, real servers started and always stopped, and a
# tiny pass/fail/skip tally. Sourced by every script in tests/integration.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/embargo-it.XXXXXX")
# A build tree has embargo-policy in tool/, the scripts' default; an installed embargo has it
# beside the daemon.
if [ -n "${EMBARGO:-}" ] && [ -n "${POLICY_TOOL:-}" ] && [ ! -x "$POLICY_TOOL" ] &&
	[ -x "$(dirname "$EMBARGO")/embargo-policy" ]; then
	POLICY_TOOL=$(dirname "$EMBARGO")/embargo-policy
fi
PIDS=()
# EMBARGO_DAEMONS[PID]=NAME for each embargo daemon started here: finish requires exit status 0.
declare -A EMBARGO_DAEMONS=()
PASSED=0
FAILED=0
SKIPPED=0

cleanup() {
	local status=$? pid
	set +e # Benchmarks run with -e; a server already gone must not fail the cleanup.
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
	ledger_release
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
	need curl curl
	[ -x "$EMBARGO" ] || die "$EMBARGO not built"
}

# The ledger: one file per reserved port or subnet under $LEDGER, holding the reserving script's
# PID, created under an flock so that scripts running at once never get the same one. Released by
# cleanup; an entry whose script is gone (killed before its cleanup) is taken back.
LEDGER=${EMBARGO_LEDGER:-/tmp/embargo-ledger}
mkdir -p "$LEDGER" 2>/dev/null && chmod 1777 "$LEDGER" 2>/dev/null
# ledger_take NAME: reserve NAME for this script; fails if another live script holds it.
ledger_take() {
	local entry="$LEDGER/$1" owner fd rc=1
	exec {fd}>>"$LEDGER/.lock" || return 1
	flock "$fd"
	if [ -e "$entry" ]; then
		owner=$(cat "$entry" 2>/dev/null)
		# Held by a live script (this one included): not free. Held by a dead one: taken back.
		if [ -n "$owner" ] && [ -d "/proc/$owner" ]; then
			exec {fd}>&-
			return 1
		fi
		rm -f "$entry"
	fi
	(set -o noclobber && echo $$ >"$entry") 2>/dev/null && rc=0
	exec {fd}>&-
	return $rc
}
# ledger_release: give back every entry this script holds.
ledger_release() {
	local entry
	for entry in "$LEDGER"/port.* "$LEDGER"/net.*; do
		[ -f "$entry" ] && [ "$(cat "$entry" 2>/dev/null)" = "$$" ] && rm -f "$entry"
	done
	return 0
}

# free_port: a port free for both UDP and TCP on loopback, reserved in the ledger until this script
# ends; below the kernel's ephemeral range so that no client socket can take it before the bind.
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
		# Taken by something outside the ledger (or by a script with an older lib.sh): next.
		ss -Htuln 2>/dev/null | awk '{print $5}' | grep -qE "[:.]$p\$" && continue
		ledger_take "port.$p" && { echo "$p"; return; }
	done
}

# free_subnet: a /24 of 198.18.0.0/15 (RFC 2544, benchmarking) for a network namespace, reserved in
# the ledger until this script ends and on no interface now; printed as its first three octets
# ("198.18.7"), the script adds ".1" and so on.
free_subnet() {
	local n net
	while :; do
		n=$((RANDOM % 512))
		net="198.$((18 + n / 256)).$((n % 256))"
		[ -n "$(ip -o addr show to "$net.0/24" 2>/dev/null)" ] && continue
		ledger_take "net.$net" && { echo "$net"; return; }
	done
}

# wait_for SECONDS COMMAND...: retry COMMAND every 0.1 s until it succeeds, for SECONDS times
# TIME_SCALE (3 in the sanitizer build, which runs several times slower).
wait_for() {
	local deadline=$((SECONDS + $1 * ${TIME_SCALE:-1}))
	shift
	while [ "$SECONDS" -le "$deadline" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# pause SECONDS: sleep SECONDS (a fraction allowed) times TIME_SCALE. Only for a wait that no
# condition can end: for something not to happen, or to let a peer act at a given pace.
pause() {
	sleep "$(awk -v s="$1" -v k="${TIME_SCALE:-1}" 'BEGIN { printf "%.3f", s * k }')"
}

ok() {
	PASSED=$((PASSED + 1))
	echo "ok $((PASSED + FAILED + SKIPPED)) - $1"
}

# skip REASON: a test that cannot run here (TAP's SKIP directive), counted apart from the passes.
skip() {
	SKIPPED=$((SKIPPED + 1))
	echo "ok $((PASSED + FAILED + SKIPPED)) # SKIP $1"
}

# need_or_skip COMMAND PACKAGE WHAT: true if COMMAND is installed; otherwise WHAT is skipped, and
# under CI=true it fails instead (CI installs every dependency: a skip there hides a hole).
need_or_skip() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ "${CI:-}" = true ]; then
		not_ok "$3" "$1 not found (apt-get install -y $2), and CI=true: a missing dependency fails"
	else
		skip "$3: $1 not found (apt-get install -y $2)"
	fi
	return 1
}

# skip_script REASON: nothing in this script can run here (a missing dependency): exit 77,
# automake's SKIP; under CI=true a failure.
skip_script() {
	if [ "${CI:-}" = true ]; then
		echo "not ok 1 - $1 (CI=true: a missing dependency fails)"
		echo "integration: 0 passed, 1 failed, 0 skipped"
		exit 1
	fi
	echo "ok 1 # SKIP $1"
	echo "integration: 0 passed, 0 failed, 1 skipped"
	exit 77
}

# stop_pid PID: stop a helper process the test started (a fake upstream, a client) with SIGTERM
# and reap it. True when it ended by that signal or had already exited 0; anything else (it died
# of something else before) is said and false.
stop_pid() {
	local status=0
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null || status=$?
	case $status in
	0 | 143) return 0 ;;
	*) echo "process $1 ended with status $status, not by the SIGTERM sent to it"; return 1 ;;
	esac
}

not_ok() {
	FAILED=$((FAILED + 1))
	echo "not ok $((PASSED + FAILED + SKIPPED)) - $1"
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
	EMBARGO_DAEMONS[$pid]=$name
	eval "PID_$name=$pid"
	wait_for 10 grep -q "serving on" "$WORK/$name.log" ||
		die "embargo $name did not start: $(cat "$WORK/$name.log")"
}

# test_ca DIR: a throwaway CA, DIR/ca.pem and DIR/ca.key, for the encrypted listeners' checks.
test_ca() {
	mkdir -p "$1"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=embargo test CA" -keyout "$1/ca.key" -out "$1/ca.pem" 2>"$1/openssl.log" ||
		die "openssl: cannot make the test CA: $(cat "$1/openssl.log")"
}

# test_cert DIR NAME SAN [CN]: a P-256 key DIR/NAME.key and a server certificate DIR/NAME.pem
# signed by test_ca's CA, with subjectAltName SAN ("" for none), and DIR/NAME.chain (the
# certificate, then the CA).
test_cert() {
	local dir=$1 name=$2 san=$3 cn=${4:-$2}
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
		-keyout "$dir/$name.key" -out "$dir/$name.csr" 2>>"$dir/openssl.log" &&
		{ [ -z "$san" ] || echo "subjectAltName=$san"; echo "extendedKeyUsage=serverAuth"; } \
			>"$dir/$name.ext" &&
		openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
			-CAcreateserial -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.pem" \
			2>>"$dir/openssl.log" &&
		cat "$dir/$name.pem" "$dir/ca.pem" >"$dir/$name.chain" ||
		die "openssl: cannot make certificate $name: $(cat "$dir/openssl.log")"
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

# stop_all LIMIT PID...: SIGTERM to each, SIGKILL to what still runs after LIMIT seconds; prints
# "PID STATUS" for each (127: already waited for by its test). Runs in this shell: only it can
# wait for its children.
stop_all() {
	local limit=$1 pid deadline left
	shift
	[ $# -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null
	deadline=$((SECONDS + limit))
	while [ "$SECONDS" -le "$deadline" ]; do
		left=0
		for pid; do kill -0 "$pid" 2>/dev/null && left=1; done
		[ $left -eq 0 ] && break
		sleep 0.1
	done
	for pid; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
	for pid; do
		wait "$pid" 2>/dev/null
		echo "$pid $?"
	done
}

# finish: every server started here stopped with SIGTERM and waited for (embargo's first: they
# may write to Redis as they stop); each embargo daemon must exit 0. Only then are the logs read
# for sanitizer reports: LeakSanitizer speaks at exit. Then the plan and the closing line; exits 1
# on a failure. These two checks run whatever ONLY says.
finish() {
	local pid status name embargo=() others=() bad=() reports
	for pid in "${PIDS[@]}"; do
		if [ -n "${EMBARGO_DAEMONS[$pid]:-}" ]; then
			embargo+=("$pid")
		elif [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == *embargo ]]; then
			# Started by the script itself rather than by start_embargo: an embargo all the same.
			EMBARGO_DAEMONS[$pid]="pid $pid"
			embargo+=("$pid")
		else
			others+=("$pid")
		fi
	done
	stop_all $((10 * ${TIME_SCALE:-1})) "${embargo[@]}" >"$WORK/stopped"
	while read -r pid status; do
		name=${EMBARGO_DAEMONS[$pid]}
		case $status in
		0 | 127) ;;
		137) bad+=("embargo $name: still running $((10 * ${TIME_SCALE:-1})) s after SIGTERM (killed)") ;;
		*) bad+=("embargo $name: exit status $status after SIGTERM; the end of $WORK/$name.log:"
			"$(tail -n 5 "$WORK/$name.log" 2>/dev/null)") ;;
		esac
	done <"$WORK/stopped"
	stop_all 5 "${others[@]}" >/dev/null
	PIDS=()
	if [ ${#bad[@]} -eq 0 ]; then
		ok "every embargo daemon stopped on SIGTERM with exit status 0"
	else
		not_ok "every embargo daemon stopped on SIGTERM with exit status 0" "${bad[@]}"
	fi
	reports=$(grep -H -n -E "runtime error|AddressSanitizer|LeakSanitizer" "$WORK"/*.log 2>/dev/null)
	if [ -z "$reports" ]; then
		ok "no sanitizer reports from any daemon"
	else
		not_ok "no sanitizer reports from any daemon" "$(head -n 40 <<<"$reports")"
	fi
	echo "1..$((PASSED + FAILED + SKIPPED))"
	echo "integration: $PASSED passed, $FAILED failed, $SKIPPED skipped"
	[ "$FAILED" -eq 0 ]
}

# consent_first [GLOBAL-OPTIONS...]: consent to what Redis holds replacing the bundled list a
# fresh instance enforces (an operator does this once, when the list they import lacks the
# bundled names): accept, from the bundled list, to the digest Redis holds now.
consent_first() {
	"$POLICY_TOOL" "$@" --by test accept --from bundled "$("$POLICY_TOOL" "$@" digest)" >/dev/null
}
