#!/usr/bin/env bash
# embargo quick start.
#   ./quickstart.sh        install what is missing, build, start Redis on 127.0.0.1:6379 if none
#                          answers, load the bundled list if embargo:deny does not exist, and run
#                          embargo in the foreground on 127.0.0.1:5354 (Ctrl-C stops it)
#   ./quickstart.sh check  the same set-up, then every unit and integration test, once in a
#                          normal build and once under ASan/UBSan, then make distcheck (the
#                          release tarball builds, passes make check from a read-only tree,
#                          installs and uninstalls)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
MODE=${1:-run}
case "$MODE" in
run | check) ;;
*)
	echo "usage: $0 [check]" >&2
	exit 2
	;;
esac

PACKAGES=(build-essential autoconf automake libtool pkg-config
	libuv1-dev libldns-dev libhiredis-dev libcriterion-dev nettle-dev libgnutls28-dev libnghttp2-dev openssl
	redis-server redis-tools nsd knot-dnsutils dnsutils iproute2 python3
	unbound ldnsutils python3-dnspython libmicrohttpd-dev libsystemd-dev prometheus mandoc
	debhelper lintian dnsperf curl nghttp2-client)

say() { printf '==> %s\n' "$*"; }

install_missing() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return
	say "installing ${missing[*]}"
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	# Debian starts these services on install; the tests start their own on free ports.
	for p in nsd unbound prometheus prometheus-node-exporter; do
		"${sudo[@]}" service "$p" stop >/dev/null 2>&1 || true
	done
}

# build DIR CONFIGURE-ARGS...: an out-of-tree build, so normal and sanitizer builds coexist.
build() {
	local dir=$1
	shift
	[ -x configure ] || { say "autoreconf"; autoreconf -fi >/dev/null; }
	mkdir -p "$dir"
	# Reconfigure when configure changed or the build was configured with other flags.
	if [ ! -f "$dir/Makefile" ] || [ configure -nt "$dir/Makefile" ] ||
		[ "$("$dir/config.status" --config)" != "$(printf "'%s' " "$@" | sed 's/ $//')" ]; then
		say "configuring $dir $*"
		(cd "$dir" && ../configure -q "$@")
	fi
	say "building in $dir"
	make -C "$dir" -j"$(nproc)" >"$dir/build.log" 2>&1 || {
		cat "$dir/build.log"
		exit 1
	}
}

start_redis() {
	if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
		say "redis already answers on 127.0.0.1:6379"
	else
		say "starting redis-server on 127.0.0.1:6379"
		redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
			--dir /tmp --logfile /tmp/embargo-quickstart-redis.log >/dev/null
		for _ in $(seq 50); do
			redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
			sleep 0.1
		done
	fi
	if [ "$(redis-cli -h 127.0.0.1 -p 6379 exists embargo:deny)" = 0 ]; then
		say "loading policy/sanctioned-vendors.tsv into embargo:deny and embargo:reason"
		./build/tool/embargo-policy import policy/sanctioned-vendors.tsv
	else
		say "embargo:deny exists in redis: left as it is"
	fi
}

# Sum the closing lines of Criterion and the integration scripts in the given logs (passed,
# failed, skipped); a script that stopped before its closing line counts as one failure.
summary() {
	local f
	for f in "$@"; do
		[ -f "$f" ] || continue
		cat "$f"
		case "$f" in *.sh.log) grep -qE "^[a-z]+: [0-9]+ passed, [0-9]+ failed" "$f" ||
			echo "script: 0 passed, 1 failed" ;; esac
	done | LC_ALL=C awk '
		/Synthesis: Tested:/ { for (i = 1; i <= NF; i++) {
			if ($i == "Passing:") p += $(i + 1)
			if ($i == "Failing:" || $i == "Crashing:") f += $(i + 1) } }
		/^[a-z]+: [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4
			if ($7 == "skipped") s += $6 }
		END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }'
}

run_check() { # DIR
	say "make check in $1"
	if ! make -C "$1" -s -j"$(nproc)" check; then
		cat "$1/test-suite.log" || true
		return 1
	fi
}

# The release tarball made in DIR builds from a read-only source tree, passes make check there,
# and installs and uninstalls cleanly (programs, man pages, example config, systemd unit).
run_distcheck() { # DIR
	say "make distcheck in $1"
	if ! make -C "$1" -s -j"$(nproc)" distcheck >"$1/distcheck.log" 2>&1; then
		tail -n 40 "$1/distcheck.log"
		cat "$1"/embargo-*/_build/sub/test-suite.log 2>/dev/null || true
		return 1
	fi
}

install_missing
if [ "$MODE" = check ]; then
	build build --enable-werror
	start_redis
	status=0
	run_check build || status=1
	build build-asan --enable-werror --enable-sanitizers
	TIME_SCALE=3 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		run_check build-asan || status=1
	[ "$status" -ne 0 ] || run_distcheck build || status=1
	summary build/tests/unit/*.log build/tests/integration/*.sh.log build/tests/fuzz/*.sh.log \
		build-asan/tests/unit/*.log build-asan/tests/integration/*.sh.log \
		build-asan/tests/fuzz/*.sh.log
	exit $status
fi

build build --enable-werror
start_redis
cat <<MSG
==> embargo runs below on 127.0.0.1:5354, forwarding to the nameservers in /etc/resolv.conf.
    In another terminal, try:
      dig @127.0.0.1 -p 5354 www.kaspersky.com       # denied: NXDOMAIN, EDE 16 with the reason
      dig @127.0.0.1 -p 5354 example.com              # forwarded upstream
      redis-cli SADD embargo:deny example.com         # denied from now on, within a second
      redis-cli SREM embargo:deny example.com         # and lifted again
      build/tool/embargo-policy explain www.example.com
      kdig @127.0.0.1 -p 5354 CH TXT policy.embargo.  # the policy version in force
    Ctrl-C stops it.
MSG
exec ./build/resolver/embargo --listen 127.0.0.1:5354 --redis redis://127.0.0.1:6379 \
	--snapshot build/policy.snapshot
