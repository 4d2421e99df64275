#!/bin/sh
# The tree's architecture, checked: every file of policy/, resolver/ and tool/ opens with a
# comment that says what it must not do, and has at most MAX_LINES lines; no include climbs from a lower layer to a higher one;
# and the include graph between modules (x.c and x.h are one module) has no cycle. A call needs
# its callee's header, so a circle of calls shows up here as a circle of includes.
# Run from anywhere: sh tests/layers.sh (make check runs it).
set -u
top=${srcdir:-$(dirname "$0")/..}
cd "$top" || exit 1
MAX_LINES=${MAX_LINES:-700}
fail=0
say() { echo "layers: $*" >&2; fail=1; }

# Layers from the top down; a file may include its own folder's files and those of any layer
# below its own. tool/ is a program beside the daemon: it may use policy/, resolver/base/ and the
# snapshot files' module, nothing else of the daemon.
rank() {
	case $1 in
	tool) echo 0 ;;
	resolver) echo 1 ;;
	resolver/net) echo 2 ;;
	resolver/query) echo 3 ;;
	resolver/upstream) echo 4 ;;
	resolver/sync) echo 5 ;;
	resolver/observe) echo 6 ;;
	resolver/base) echo 7 ;;
	policy) echo 8 ;;
	*) echo -1 ;;
	esac
}

files=$(find policy resolver tool -name '*.[ch]' ! -name bundled.c | sort)
[ -n "$files" ] || { say "no sources under $top"; exit 1; }
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
for f in $files; do
	dir=${f%/*}
	r=$(rank "$dir")
	[ "$r" -ge 0 ] || say "$f: folder $dir is not a known layer (add it to tests/layers.sh)"
	n=$(wc -l < "$f")
	[ "$n" -le "$MAX_LINES" ] || say "$f: $n lines (at most $MAX_LINES)"
	if ! head -c 2 "$f" | grep -q '^/\*'; then
		say "$f: does not open with a comment saying what it does"
	elif ! awk 'NR == 1, /\*\//' "$f" | grep -qi 'must not\|never'; then
		say "$f: its opening comment does not say what it must not do (\"must not\" or \"never\")"
	fi
	mod=${f%.*}
	for inc in $(sed -n 's/^#[[:space:]]*include[[:space:]]*"\(.*\)".*/\1/p' "$f"); do
		[ "$inc" = config.h ] && continue
		[ -f "$inc" ] || { say "$f: includes $inc, not a path from the top of the tree"; continue; }
		idir=${inc%/*}
		ir=$(rank "$idir")
		if [ "$dir" = tool ]; then
			case $inc in
			policy/* | resolver/base/* | resolver/sync/snapshot.h | tool/*) ;;
			*) say "$f: the list tool includes $inc (only policy/, resolver/base/ and resolver/sync/snapshot.h)" ;;
			esac
		elif [ "$ir" -lt "$r" ]; then
			say "$f: includes $inc, a layer above its own ($idir over $dir)"
		fi
		imod=${inc%.*}
		[ "$imod" != "$mod" ] && echo "$mod $imod" >> "$edges"
	done
done
# tsort names a loop on stderr; a module that includes itself is left out above.
if ! sort -u "$edges" | tsort > /dev/null 2> "$edges.err"; then
	say "the include graph between modules has a cycle:"
	grep -v 'input contains a loop' "$edges.err" | sed 's/^tsort: /  /' >&2
fi
rm -f "$edges.err"
[ $fail -eq 0 ] && echo "layers: $(echo "$files" | wc -l) files, no cycle, no climbing include, none over $MAX_LINES lines"
exit $fail
