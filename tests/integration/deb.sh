#!/usr/bin/env bash
# The Debian package: dpkg-buildpackage -us -uc -b on a copy of the source tree (its unit tests
# included), then the .deb as built: its files, the conffile, the libraries it depends on, the
# service enabled and started by its maintainer scripts, lintian without an error, and the daemon,
# config and unit taken out of it (dpkg-deb -x) checked. Nothing is installed on this machine.
# Skipped (77) without dpkg-buildpackage or debhelper, without debian/ (the release tarball of
# make distcheck), and in a sanitizer build: the package is built with Debian's flags, not the
# build's, so one run in the normal build tells all.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}

# Not for this tree or this build (not a missing dependency): skipped, under CI too.
skip_all() {
	echo "ok 1 # SKIP $*"
	echo "integration: 0 passed, 0 failed, 1 skipped"
	exit 77
}
[ -f "$srcdir/debian/control" ] || skip_all "no debian/ in $srcdir (a release tarball has none)"
builddir=$(cd "$(dirname "$EMBARGO")/.." && pwd)
grep -qE '^SAN_CFLAGS = .' "$builddir/Makefile" 2>/dev/null &&
	skip_all "sanitizer build: the package is checked in the normal build"

. "$srcdir/tests/integration/lib.sh"
# A missing tool is a skip, and under CI=true a failure.
command -v dpkg-buildpackage >/dev/null 2>&1 || skip_script "dpkg-buildpackage not found (apt-get install dpkg-dev)"
command -v dh >/dev/null 2>&1 || skip_script "debhelper not found (apt-get install debhelper)"
[ -x "$EMBARGO" ] || die "$EMBARGO not built"
VERSION=$("$EMBARGO" --version | awk '{print $2}')
[ -n "$VERSION" ] || die "$EMBARGO --version: no version"
SRC="$WORK/pkg/embargo"
ROOT="$WORK/root"
DEB=""

# What the source tree holds (a tarball has no git to list it), less .git and build directories.
copy_tree() {
	local entry
	mkdir -p "$SRC"
	for entry in "$srcdir"/* "$srcdir"/.[!.]*; do
		[ -e "$entry" ] || continue
		case ${entry##*/} in .git | autom4te.cache) continue ;; esac
		[ -d "$entry" ] && [ -f "$entry/config.status" ] && continue
		cp -a "$entry" "$SRC/" || return 1
	done
	chmod -R u+w "$SRC"
}
# These two run whatever ONLY says: every test after them reads the package.
ONLY='' check "the source tree copied, without .git and build directories" copy_tree

# Not under the make check that runs us (its jobserver, srcdir), niced and on one core: the
# other integration tests run alongside, some of them timing answers.
build_package() {
	(cd "$SRC" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u srcdir -u DESTDIR \
		DEB_BUILD_OPTIONS=parallel=1 nice -n 10 dpkg-buildpackage -us -uc -b) >"$WORK/build.out" 2>&1 ||
		{ tail -n 40 "$WORK/build.out"; return 1; }
	grep -qE '^# PASS: +[1-9]' "$WORK/build.out" || { echo "no unit test ran in the package build"; return 1; }
	DEB=$(echo "$WORK"/pkg/embargo_*.deb)
	[ -f "$DEB" ] || { echo "no embargo_*.deb: $(ls "$WORK/pkg")"; return 1; }
	[ "$(dpkg-deb -f "$DEB" Version)" = "$VERSION" ] ||
		{ echo "package version $(dpkg-deb -f "$DEB" Version), embargo --version $VERSION"; return 1; }
}
ONLY='' check "dpkg-buildpackage -us -uc -b builds embargo_$VERSION, its unit tests passing" build_package
[ -f "$DEB" ] || die "no package built: $WORK/build.out"

contents() {
	local f missing=""
	dpkg-deb -c "$DEB" | awk '{ sub(/^\./, "", $6); print $6 }' >"$WORK/contents" || return 1
	for f in /usr/bin/embargo /usr/bin/embargo-policy /usr/share/man/man8/embargo.8.gz \
		/usr/share/man/man8/embargo-policy.8.gz /etc/embargo/embargo.conf \
		/lib/systemd/system/embargo.service /usr/share/doc/embargo/copyright \
		/usr/share/doc/embargo/README.md.gz /usr/share/doc/embargo/examples/grafana-embargo.json; do
		grep -qxF "$f" "$WORK/contents" || missing="$missing $f"
	done
	[ -z "$missing" ] || { echo "missing from the package:$missing"; return 1; }
}
check "dpkg-deb -c: programs, man pages, embargo.conf, the unit, docs and the dashboard" contents

conffile() {
	dpkg-deb -I "$DEB" conffiles | grep -qxF /etc/embargo/embargo.conf ||
		{ echo "conffiles: $(dpkg-deb -I "$DEB" conffiles 2>&1)"; return 1; }
}
check "dpkg-deb -I: /etc/embargo/embargo.conf is a conffile" conffile

depends() {
	local depends lib missing=""
	depends=$(dpkg-deb -f "$DEB" Depends)
	for lib in libuv1 libldns3 libhiredis libmicrohttpd libsystemd0; do
		grep -qE "(^|, )$lib" <<<"$depends" || missing="$missing $lib"
	done
	[ -z "$missing" ] || { echo "Depends: $depends lacks:$missing"; return 1; }
}
check "Depends names the libraries embargo is linked with" depends

# dh_installsystemd's snippets: enable on installation, then start (restart on upgrade).
maintainer_scripts() {
	mkdir -p "$WORK/control"
	dpkg-deb -e "$DEB" "$WORK/control" || return 1
	grep -qF "deb-systemd-helper enable 'embargo.service'" "$WORK/control/postinst" &&
		grep -qF "_dh_action=start" "$WORK/control/postinst" &&
		grep -qF "deb-systemd-invoke \$_dh_action 'embargo.service'" "$WORK/control/postinst" ||
		{ echo "postinst neither enables nor starts embargo.service:"; cat "$WORK/control/postinst"; return 1; }
	grep -qF "deb-systemd-invoke stop 'embargo.service'" "$WORK/control/prerm" ||
		{ echo "prerm does not stop embargo.service"; return 1; }
	grep -qF /var/lib/private/embargo "$WORK/control/postrm" ||
		{ echo "postrm does not purge the state directory"; return 1; }
}
check "postinst enables and starts embargo.service, prerm stops it, purge removes its state" maintainer_scripts

lint() {
	lintian "$WORK"/pkg/embargo_*.changes >"$WORK/lintian.out" 2>&1
	! grep -E '^E: ' "$WORK/lintian.out"
}
if need_or_skip lintian lintian "lintian: no error"; then
	check "lintian: no error" lint
	sed -n 's/^\([WI]: \)/#   lintian \1/p' "$WORK/lintian.out"
fi

extract() { dpkg-deb -x "$DEB" "$ROOT"; }
check "dpkg-deb -x extracts the package" extract

daemon_runs() {
	[ "$("$ROOT/usr/bin/embargo" --version)" = "embargo $VERSION" ] || { echo "embargo --version"; return 1; }
	[ "$("$ROOT/usr/bin/embargo-policy" --version)" = "embargo-policy $VERSION" ] ||
		{ echo "embargo-policy --version"; return 1; }
	cmp "$srcdir/contrib/embargo.conf" "$ROOT/etc/embargo/embargo.conf" || return 1
	# An upstream named: a machine with no nameserver in /etc/resolv.conf gives no default one.
	"$ROOT/usr/bin/embargo" --upstream 192.0.2.53 --check-config "$ROOT/etc/embargo/embargo.conf"
}
check "the packaged embargo runs, and accepts the packaged embargo.conf (--check-config)" daemon_runs

unit_verified() {
	local unit="$ROOT/lib/systemd/system/embargo.service" out man=(--man=no)
	grep -qxF "ExecStart=/usr/bin/embargo --config /etc/embargo/embargo.conf" "$unit" &&
		grep -qxF "Type=notify" "$unit" || { echo "ExecStart or Type=notify:"; cat "$unit"; return 1; }
	# systemd-analyze checks that ExecStart exists and (through man) the Documentation pages.
	mkdir -p "$WORK/unit"
	sed "s|^ExecStart=/usr/bin/|ExecStart=$ROOT/usr/bin/|" "$unit" >"$WORK/unit/embargo.service"
	command -v man >/dev/null 2>&1 && man=()
	out=$(MANPATH="$ROOT/usr/share/man" systemd-analyze verify "${man[@]}" "$WORK/unit/embargo.service" 2>&1) &&
		[ -z "$out" ] || { echo "$out"; return 1; }
}
if need_or_skip systemd-analyze systemd "systemd-analyze verify: the packaged unit"; then
	check "systemd-analyze verify: the packaged unit (Type=notify), nothing to say" unit_verified
fi

finish
