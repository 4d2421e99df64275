#!/usr/bin/env bash
# make install as a package build does it, into a scratch DESTDIR: both programs, both man pages
# (clean under mandoc's lint, every option of --help in them), the annotated example config (every
# setting of --help in it, its defaults the daemon's own, accepted by the installed daemon
# commented out and uncommented), the systemd unit (systemd-analyze verify), and make uninstall.
# The checks run in order on one DESTDIR: install first, uninstall last.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
. "$srcdir/tests/integration/lib.sh"

need mandoc mandoc
need kdig knot-dnsutils
need ss iproute2
[ -x "$EMBARGO" ] || die "$EMBARGO not built"
builddir=$(cd "$(dirname "$EMBARGO")/.." && pwd)
[ -f "$builddir/Makefile" ] || die "no Makefile in $builddir"
ROOT="$WORK/root"

# make as from a shell: not the jobserver or the variables of the make check that runs us.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory -C "$builddir" "$@"; }

# The installation directories as the build's Makefile has them (configure's prefix and the rest).
dirs=$(mk -f Makefile -f - show-install-dirs <<'MK'
show-install-dirs:
	@echo "bindir='$(bindir)' mandir='$(mandir)' man8dir='$(man8dir)'"
	@echo "embargoconfdir='$(embargoconfdir)' systemdsystemunitdir='$(systemdsystemunitdir)'"
MK
) || die "cannot read the installation directories from $builddir/Makefile"
eval "$dirs"
[ -n "$bindir" ] && [ -n "$mandir" ] && [ -n "$man8dir" ] && [ -n "$embargoconfdir" ] && [ -n "$systemdsystemunitdir" ] ||
	die "installation directories incomplete: $dirs"
# configure --without-systemdsystemunitdir: no unit is installed, and none is looked for.
UNITS=("$systemdsystemunitdir/embargo.service")
[ "$systemdsystemunitdir" = no ] && UNITS=()
DAEMON="$ROOT$bindir/embargo"
CONF="$ROOT$embargoconfdir/embargo.conf"
UNIT="$ROOT$systemdsystemunitdir/embargo.service"

install_tree() { mk install DESTDIR="$ROOT"; }
check "make install DESTDIR=... succeeds" install_tree

files_in_place() {
	local f status=0
	for f in "$bindir/embargo" "$bindir/embargo-policy"; do
		[ -f "$ROOT$f" ] && [ -x "$ROOT$f" ] || { echo "$f: missing or not executable"; status=1; }
	done
	for f in "$man8dir/embargo.8" "$man8dir/embargo-policy.8" "$embargoconfdir/embargo.conf" \
		"${UNITS[@]}"; do
		[ -f "$ROOT$f" ] && [ ! -x "$ROOT$f" ] || { echo "$f: missing or executable"; status=1; }
	done
	[ "$("$DAEMON" --version)" = "$("$EMBARGO" --version)" ] || { echo "installed daemon: wrong version"; status=1; }
	return $status
}
check "programs (executable), man pages, example config and unit installed" files_in_place

man_lint() {
	local out
	out=$(mandoc -T lint -W warning "$ROOT$man8dir/embargo.8" "$ROOT$man8dir/embargo-policy.8" 2>&1) &&
		[ -z "$out" ] || { echo "$out"; return 1; }
}
check "mandoc -T lint -W warning: nothing to say about either man page" man_lint

# every_word PAGE WORDS...: the rendered page has each word, whole (--redis is not --redis-prefix).
# every_item PAGE WORDS...: each word starts a line of the rendered page (a list item).
rendered() { mandoc -T ascii "$1" | sed 's/.\x08//g'; }
# missing_in PAGE BEFORE AFTER WORDS...: the words of WORDS that the rendered page lacks between
# the patterns BEFORE and AFTER.
missing_in() {
	local page=$1 before=$2 after=$3 w text missing=""
	shift 3
	text=$(rendered "$page") || return 1
	for w in "$@"; do
		grep -qE -- "$before$w$after" <<<"$text" || missing="$missing $w"
	done
	echo "$missing"
}
every_word() {
	local missing
	missing=$(missing_in "$1" "(^|[^a-z0-9-])" "([^a-z0-9-]|\$)" "${@:2}") || return 1
	[ -z "$missing" ] || { echo "not in $(basename "$1"):$missing"; return 1; }
}
every_item() {
	local missing
	missing=$(missing_in "$1" "^ +" "( |\$)" "${@:2}") || return 1
	[ -z "$missing" ] || { echo "no item in $(basename "$1") for:$missing"; return 1; }
}
daemon_options() { "$DAEMON" --help | grep -oE '^  --[a-z0-9-]+' | sed 's/^  //'; }
# at_least N WHAT WORDS: the scrape of --help found at least N words (a help text reformatted
# past the scrape must fail the checks that read it, not make them vacuous).
at_least() {
	local n=$1 what=$2 count
	count=$(wc -w <<<"$3")
	[ "$count" -ge "$n" ] || { echo "only $count $what scraped from --help (at least $n expected): $3"; return 1; }
}
# What --help lists today, less a small margin: 60 daemon options, 12 commands and 18 options of
# embargo-policy.
MIN_DAEMON_OPTIONS=55
MIN_TOOL_COMMANDS=10
MIN_TOOL_OPTIONS=15
man_has_options() {
	local options
	options=$(daemon_options)
	at_least $MIN_DAEMON_OPTIONS "options of embargo" "$options" || return 1
	# shellcheck disable=SC2086
	every_item "$ROOT$man8dir/embargo.8" $options
}
check "embargo(8) has every option of embargo --help" man_has_options
# The commands (the first word of each line under Commands:) and every --option of the help.
tool_help() { "$ROOT$bindir/embargo-policy" --help; }
tool_commands() { tool_help | awk '/^Commands:/ { c = 1; next } /^Options:/ { c = 0 } c && /^  [a-z]/ { print $1 }' | sort -u; }
tool_options() { tool_help | grep -oE -- '--[a-z][a-z-]*' | sort -u; }
man_has_commands() {
	local commands options
	commands=$(tool_commands)
	options=$(tool_options)
	at_least $MIN_TOOL_COMMANDS "commands of embargo-policy" "$commands" || return 1
	at_least $MIN_TOOL_OPTIONS "options of embargo-policy" "$options" || return 1
	# shellcheck disable=SC2086
	every_item "$ROOT$man8dir/embargo-policy.8" $commands || return 1
	every_word "$ROOT$man8dir/embargo-policy.8" $options
}
check "embargo-policy(8) has every command and option of embargo-policy --help" man_has_commands

# The example config. Setting lines are "# NAME [VALUE]" with NAME a daemon option; the comment
# above each says "Example" when its value is an example rather than the default.
settings() { daemon_options | sed 's/^--//' | grep -vxE 'config|check-config|help|version'; }
NAMES=$(settings | paste -sd'|')
uncomment() { sed -E "s/^# ($NAMES)( |\$)/\\1\\2/" "$CONF"; }
config_complete() {
	local name missing=""
	# Every option but --config, --check-config, --help and --version.
	at_least $((MIN_DAEMON_OPTIONS - 4)) "settings" "$(settings)" || return 1
	for name in $(settings); do
		grep -qE "^# $name( |\$)" "$CONF" || missing="$missing $name"
	done
	[ -z "$missing" ] || { echo "settings of embargo --help missing from embargo.conf:$missing"; return 1; }
}
check "embargo.conf has every setting of embargo --help, commented out" config_complete

commented_accepted() {
	{ cat "$CONF"; echo "upstream 127.0.0.1"; } >"$WORK/commented.conf"
	[ "$(grep -cvE '^(#|$)' "$WORK/commented.conf")" = 1 ] || { echo "lines not commented out"; return 1; }
	"$DAEMON" --check-config "$WORK/commented.conf" >"$WORK/commented.print"
}
check "installed daemon accepts embargo.conf as installed (plus an upstream)" commented_accepted

uncommented_accepted() {
	# The example consent key is made here: any 32 octets are a well-formed public key.
	printf 'embargo-consent-key ed25519 public %064d\n' 7 >"$WORK/consent.pub"
	uncomment | sed "s|^consent-key .*|consent-key $WORK/consent.pub|" >"$WORK/uncommented.conf"
	[ "$(grep -cvE '^(#|$)' "$WORK/uncommented.conf")" = "$(grep -cE "^# ($NAMES)( |\$)" "$CONF")" ] ||
		{ echo "embargo.conf has lines that are neither comments nor commented-out settings"; return 1; }
	"$DAEMON" --check-config "$WORK/uncommented.conf" >/dev/null
}
check "installed daemon accepts every line of embargo.conf uncommented" uncommented_accepted

# The values shown are the defaults: the non-example lines uncommented change nothing that
# --check-config prints (the built-in access list prints as a comment unless given).
defaults_are_defaults() {
	awk -v names="^# ($NAMES)( |\$)" '
		$0 ~ names { if (!example) { sub(/^# /, ""); print }; next }
		/^# / { example = /Example/ }' "$CONF" >"$WORK/defaults.conf"
	echo "upstream 127.0.0.1" >>"$WORK/defaults.conf"
	"$DAEMON" --check-config "$WORK/defaults.conf" | grep -vE '^(allow|refuse) ' >"$WORK/defaults.print" &&
		diff "$WORK/commented.print" "$WORK/defaults.print"
}
check "embargo.conf's values not marked as examples are the daemon's defaults" defaults_are_defaults

started_with_config() {
	local port
	port=$(free_port)
	# Nobody answers at that Redis address: the bundled list is enforced, at once.
	"$DAEMON" --config "$WORK/commented.conf" --listen "127.0.0.1:$port" --threads 1 \
		--redis "redis://127.0.0.1:$(free_port)" --snapshot "$WORK/installed.snapshot" \
		>"$WORK/installed.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_for 10 grep -q "serving on" "$WORK/installed.log" || { cat "$WORK/installed.log"; return 1; }
	by_policy "$port" www.kaspersky.com || { echo "www.kaspersky.com not denied"; return 1; }
	kill -TERM "$pid"
	wait "$pid" || { echo "exit status $? after SIGTERM"; return 1; }
}
check "installed daemon serves with embargo.conf, denies, and stops on SIGTERM with 0" started_with_config

# shellcheck disable=SC2154 # mandir comes from the eval of the Makefile's directories.
unit_verified() {
	grep -qxF "ExecStart=$bindir/embargo --config $embargoconfdir/embargo.conf" "$UNIT" ||
		{ echo "ExecStart is not $bindir/embargo --config $embargoconfdir/embargo.conf:"; grep ExecStart "$UNIT"; return 1; }
	# systemd-analyze checks that ExecStart exists and (through man) the Documentation pages:
	# point both into DESTDIR.
	mkdir -p "$WORK/unit"
	sed "s|^ExecStart=$bindir/|ExecStart=$ROOT$bindir/|" "$UNIT" >"$WORK/unit/embargo.service"
	local out man=(--man=no)
	command -v man >/dev/null 2>&1 && man=()
	out=$(MANPATH="$ROOT$mandir" systemd-analyze verify "${man[@]}" "$WORK/unit/embargo.service" 2>&1) &&
		[ -z "$out" ] || { echo "$out"; return 1; }
}
if [ ${#UNITS[@]} -eq 0 ]; then
	skip "configured --without-systemdsystemunitdir: no unit installed"
elif need_or_skip systemd-analyze systemd "systemd-analyze verify: the installed unit"; then
	check "systemd-analyze verify: the installed unit, nothing to say" unit_verified
fi

# An upgrade (make install again) keeps the operator's edited config; uninstall keeps it too.
upgrade_keeps_config() {
	echo "# the operator's edit" >>"$CONF"
	mk install DESTDIR="$ROOT" || return 1
	grep -q "# the operator's edit" "$CONF" || { echo "make install overwrote the edited config"; return 1; }
	mk uninstall DESTDIR="$ROOT" || return 1
	[ -f "$CONF" ] || { echo "make uninstall removed the edited config"; return 1; }
	rm -f "$CONF"
	mk install DESTDIR="$ROOT"
}
check "make install again keeps an edited embargo.conf, and uninstall leaves it" upgrade_keeps_config

uninstalled() {
	mk uninstall DESTDIR="$ROOT" || return 1
	local left
	left=$(find "$ROOT" -type f)
	[ -z "$left" ] || { echo "left after make uninstall: $left"; return 1; }
}
check "make uninstall DESTDIR=... removes every file" uninstalled

finish
