#!/usr/bin/env bash
# Fail closed by construction: each way a review made listed names resolve, replayed against the
# real daemon and Redis: a rollback of Redis (an old dump after kill -9) with an old consent in
# it, the allow set, many small removals, inflating first, a collision of the old 64-bit
# versions, a consent to whatever Redis holds, a consent any client can write, and a reload that
# loosened the limits. Each check asks what a client sees: a listed name stays denied.
# The checks are independent (each starts its own Redis and embargo), except unknown_format: it
# copies the snapshot and its older generation that two_restarts left (tr.snapshot, .1) and wants
# the names tr enforced. ONLY= its words alone fail ("no older generation"), and no ONLY= word
# selects both: run it with the whole script.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need_all

NSD=$(free_port)
start_nsd "$NSD"
LIST="$srcdir/policy/sanctioned-vendors.tsv"
SCALE=${TIME_SCALE:-1}
SIX="kaspersky.de kaspersky.cz kaspersky.be kaspersky.ca kaspersky.fr kaspersky.it"

status_of() { q "$1" @127.0.0.1 CH TXT policy.embargo. +short; }
held_version() { status_of "$1" | grep -o "held_version=[0-9a-f]*" | cut -d= -f2; }
# listed_denied PORT: every name of the bundled list, and a name below one, is denied by embargo.
listed_denied() {
	local name
	for name in $(grep -v '^#' "$LIST" | cut -f1); do
		by_policy "$1" "$name" || { echo "$name resolves"; return 1; }
	done
	by_policy "$1" www.kaspersky.com || { echo "www.kaspersky.com resolves"; return 1; }
}
all_denied() { # PORT NAME...
	local port=$1 name
	shift
	for name in "$@"; do
		by_policy "$port" "$name" || { echo "$name resolves"; return 1; }
	done
}
# with_list NAME: a new Redis holding the bundled list (port in $RP_NAME, dump NAME.rdb) and a
# free port for an embargo (in $EP_NAME).
with_list() {
	local rp ep
	rp=$(free_port)
	ep=$(free_port)
	eval "RP_$1=$rp EP_$1=$ep"
	start_redis "$rp" --dbfilename "$1.rdb"
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" import "$LIST" >/dev/null
}
followed() { # NAME: embargo NAME follows Redis's notifications
	wait_for $((5 * SCALE)) grep -q "following policy changes" "$WORK/$1.log" ||
		{ cat "$WORK/$1.log"; return 1; }
}
# setup NAME [EMBARGO ARGS...]: with_list NAME, and an embargo NAME that enforces it and follows
# its changes.
setup() {
	local name=$1 rp ep
	shift
	with_list "$name" || return 1
	eval "rp=\$RP_$name ep=\$EP_$name"
	start_embargo "$name" "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 30 --timeout 500 "$@"
	followed "$name" || return 1
	wait_for $((5 * SCALE)) grep -q "policy loaded from redis" "$WORK/$name.log"
}
# conf NAME RP LINES...: $WORK/NAME.conf with the upstream and Redis lines, then LINES.
conf() {
	local name=$1 rp=$2
	shift 2
	{ printf 'upstream 127.0.0.1:%s\nredis redis://127.0.0.1:%s\n' "$NSD" "$rp"; printf '%s\n' "$@"; } \
		>"$WORK/$name.conf"
}
# setup_conf NAME LINES...: with_list NAME, and an embargo NAME started from conf NAME LINES.
setup_conf() {
	local name=$1 rp ep
	shift
	with_list "$name" || return 1
	eval "rp=\$RP_$name ep=\$EP_$name"
	conf "$name" "$rp" "$@"
	start_embargo "$name" "$ep" --config "$WORK/$name.conf"
	followed "$name"
}
held() { # PORT: the status shows a held load
	wait_for $((5 * SCALE)) eval "status_of $1 | grep -q held=" || { status_of "$1"; return 1; }
}
settled() { # PORT: no held load
	wait_for $((5 * SCALE)) eval "! status_of $1 | grep -q held=" || { status_of "$1"; return 1; }
}
# kill9_restart PORT NAME: Redis on PORT killed (no shutdown save) and started again on its last
# dump, as after a crash: its data rolls back to that dump.
kill9_restart() {
	local pid
	pid=$(redis-cli -p "$1" info server | tr -d '\r' | sed -n 's/^process_id://p')
	kill -9 "$pid"
	sleep 0.3
	start_redis "$1" --dbfilename "$2.rdb"
}
R() { local p=$1; shift; redis-cli -p "$p" "$@" >/dev/null; }
# http URL: the body (python3: no curl needed).
http() {
	python3 -c "
import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" "$1" 2>/dev/null
}

rollback_consent() {
	setup rb || return 1
	local rp=$RP_rb ep=$EP_rb v
	# A deliberate lift of six names, which the approver consents to.
	# shellcheck disable=SC2086 # Six names.
	R "$rp" srem embargo:deny $SIX
	held "$ep" || return 1
	v=$(held_version "$ep")
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" --by approver accept --from "$WORK/rb.snapshot" \
		"$v" >/dev/null || return 1
	settled "$ep" || return 1
	! by_policy "$ep" kaspersky.de || { echo "consented lift not enforced"; return 1; }
	R "$rp" save # The dump: 34 names, and the consent that released them.
	# The six come back on the list, with ten new names: all enforced.
	# shellcheck disable=SC2086
	R "$rp" sadd embargo:deny $SIX new1.example new2.example new3.example new4.example \
		new5.example new6.example new7.example new8.example new9.example new10.example
	wait_for $((3 * SCALE)) by_policy "$ep" new10.example || return 1
	# Redis crashes and comes back on the old dump: the six are lifted again, the ten are gone,
	# and the old consent is back. The consent was used; Redis restarted: all stay denied.
	kill9_restart "$rp" rb
	held "$ep" || return 1
	# shellcheck disable=SC2086
	all_denied "$ep" $SIX new1.example new10.example || return 1
	listed_denied "$ep" || return 1
	grep -q "^d	new10.example$" "$WORK/rb.snapshot" || { echo "snapshot overwritten"; return 1; }
	grep -q "redis restarted (new run_id)" "$WORK/rb.log" || { echo "restart not seen"; return 1; }
}
check "RDB rollback with an old consent in it: the consent is not replayed, nothing is lifted" \
	rollback_consent

rollback_small() {
	setup rs || return 1
	local rp=$RP_rs ep=$EP_rs
	R "$rp" save
	# Four additions: within the 10% budget if they were removals of an operator.
	R "$rp" sadd embargo:deny add1.example add2.example add3.example add4.example
	wait_for $((3 * SCALE)) by_policy "$ep" add4.example || return 1
	kill9_restart "$rp" rs
	held "$ep" || return 1
	all_denied "$ep" add1.example add2.example add3.example add4.example || return 1
	grep -q "^d	add4.example$" "$WORK/rs.snapshot" || { echo "snapshot overwritten"; return 1; }
	# A removal after the rollback is held too, until consent; an addition is enforced.
	R "$rp" sadd embargo:deny after.example
	wait_for $((3 * SCALE)) by_policy "$ep" after.example || return 1
	all_denied "$ep" add1.example && listed_denied "$ep"
}
check "RDB rollback of 4 additions (within the budget): held, the 4 stay denied" rollback_small

audit_cut() {
	setup au || return 1
	local rp=$RP_au ep=$EP_au
	# The audit stream loses its newest entries (here: all of them): a rollback too, so even one
	# removal, within the budget otherwise, is held.
	R "$rp" del embargo:audit
	R "$rp" srem embargo:deny kaspersky.de
	held "$ep" || return 1
	by_policy "$ep" kaspersky.de || return 1
	grep -q "the audit stream is gone" "$WORK/au.log" || { cat "$WORK/au.log"; return 1; }
}
check "the audit stream cut back: no lift, however small, until consent" audit_cut

allow_all() {
	setup al || return 1
	local ep=$EP_al ep2
	# A second instance on the same Redis: the resolvers' audit entries are written once.
	ep2=$(free_port)
	start_embargo al2 "$ep2" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$RP_al" \
		--reload-interval 30
	followed al2 || return 1
	# The wrong file imported into the allow set: every listed name allowed in one load.
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$RP_al" import --allow "$LIST" >/dev/null || return 1
	held "$ep" && held "$ep2" || return 1
	status_of "$ep" | grep -q "held_removes=40/40" || { status_of "$ep"; return 1; }
	listed_denied "$ep" && listed_denied "$ep2" || return 1
	# The hold is in the audit stream, once, whatever wrote the change.
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$RP_al" log >"$WORK/al.logs" || return 1
	[ "$(grep -c "  redis  held by the resolvers  +40 -0  " "$WORK/al.logs")" = 1 ] ||
		{ cat "$WORK/al.logs"; return 1; }
}
check "the allow set with every listed name: held, every name denied, the hold audited once" allow_all

slicing() {
	setup sl || return 1
	local rp=$RP_sl ep=$EP_sl left names cut i
	# 19 removals, each of 10% of what remains, 0.4 s apart.
	for i in $(seq 19); do
		names=$(redis-cli -p "$rp" smembers embargo:deny | sort)
		left=$(wc -l <<<"$names")
		cut=$(((left + 9) / 10))
		[ "$left" -gt 0 ] || break
		# shellcheck disable=SC2046
		R "$rp" srem embargo:deny $(head -n "$cut" <<<"$names")
		sleep 0.4
	done
	held "$ep" || return 1
	# At most 4 of the 40 (10%) were lifted; the rest stay denied.
	local denied=0 name
	for name in $(grep -v '^#' "$LIST" | cut -f1); do
		by_policy "$ep" "$name" && denied=$((denied + 1))
	done
	echo "$denied of 40 still denied"
	[ "$denied" -ge 36 ]
}
check "slicing: 19 removals of 10% of what remains, 0.4 s apart: at most 4 lifted" slicing

inflate() {
	setup in || return 1
	local rp=$RP_in ep=$EP_in i
	for i in $(seq 360); do
		printf '*3\r\n$4\r\nSADD\r\n$12\r\nembargo:deny\r\n$%d\r\njunk%d.test\r\n' $((${#i} + 9)) "$i"
	done | redis-cli -p "$rp" --pipe >/dev/null
	wait_for $((5 * SCALE)) by_policy "$ep" junk360.test || return 1
	# shellcheck disable=SC2046
	R "$rp" srem embargo:deny $(grep -v '^#' "$LIST" | cut -f1)
	held "$ep" || return 1
	listed_denied "$ep"
}
check "inflate then remove: 360 junk names, then the 40 listed ones removed: held" inflate

collision() {
	# Two policies whose old 64-bit versions (sums of FNV-1a hashes) are equal.
	local rp ep
	rp=$(free_port)
	ep=$(free_port)
	start_redis "$rp"
	R "$rp" sadd embargo:deny a226586.example b6842595.example
	consent_first --redis "redis://127.0.0.1:$rp"
	start_embargo co "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 30
	wait_for $((5 * SCALE)) by_policy "$ep" a226586.example || { cat "$WORK/co.log"; return 1; }
	# The list replaced by the colliding one: not "unchanged", but two names lifted: held.
	printf 'MULTI\nDEL embargo:deny\nSADD embargo:deny c1721784.example d546788.example\nEXEC\n' |
		redis-cli -p "$rp" >/dev/null
	held "$ep" || return 1
	all_denied "$ep" a226586.example b6842595.example || return 1
	# And after a restart, still.
	kill "$PID_co"
	wait "$PID_co" 2>/dev/null
	start_embargo co2 "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 30 --snapshot "$WORK/co.snapshot"
	held "$ep" || return 1
	all_denied "$ep" a226586.example b6842595.example
}
check "two lists with the same old 64-bit version are different: held, nothing lifted" collision

accept_shown() {
	setup ac || return 1
	local rp=$RP_ac ep=$EP_ac v
	# shellcheck disable=SC2086
	R "$rp" srem embargo:deny $SIX
	held "$ep" || return 1
	v=$(held_version "$ep")
	# Meanwhile the deny key is deleted: the version the operator was shown is not what Redis
	# holds now, and accept refuses.
	R "$rp" del embargo:deny
	if "$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" accept --from "$WORK/ac.snapshot" "$v" \
		>"$WORK/ac.out" 2>&1; then
		cat "$WORK/ac.out"
		return 1
	fi
	grep -q "not $v: nothing accepted" "$WORK/ac.out" || { cat "$WORK/ac.out"; return 1; }
	listed_denied "$ep" || return 1
	# The wrong file with import --replace: shown and refused.
	printf 'other.example\n' >"$WORK/wrong.txt"
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" import "$LIST" >/dev/null || return 1
	if "$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" import --replace "$WORK/wrong.txt" \
		>"$WORK/ac.out" 2>&1; then
		echo "replaced with the wrong file"
		return 1
	fi
	[ "$(redis-cli -p "$rp" scard embargo:deny)" = 40 ] || { echo "redis changed"; return 1; }
	listed_denied "$ep"
}
check "accept takes the version shown and refuses anything else; import --replace shows and refuses" \
	accept_shown

accept_diff() {
	setup ad || return 1
	local rp=$RP_ad ep=$EP_ad v digest cmd
	# A list that is not the bundled one (whose digest the tool knows without a file).
	R "$rp" sadd embargo:deny extra.example
	wait_for $((5 * SCALE)) eval "grep -q '^d	extra.example$' $WORK/ad.snapshot" || return 1
	# shellcheck disable=SC2086
	R "$rp" srem embargo:deny $SIX
	held "$ep" || return 1
	v=$(held_version "$ep")
	# Only the digest it starts from, with no policy of that digest where the tool looks: it
	# cannot show the diff, so it refuses and writes nothing.
	digest=$(head -1 "$WORK/ad.snapshot" | sed -n 's/.* digest=\([0-9a-f]*\) .*/\1/p')
	if "$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" accept --from "$digest" "$v" >"$WORK/ad.out" 2>&1; then
		cat "$WORK/ad.out"
		echo "accepted without showing the diff"
		return 1
	fi
	grep -q "pass --from SNAPSHOT" "$WORK/ad.out" && [ "$(redis-cli -p "$rp" exists embargo:accept)" = 0 ] ||
		{ cat "$WORK/ad.out"; return 1; }
	# The command the daemon's log recommends shows the diff, and the audit has its counts.
	cmd=$(grep -o "run embargo-policy accept .*" "$WORK/ad.log" | tail -1 | cut -d' ' -f3-)
	# shellcheck disable=SC2086 # Its words are arguments.
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" --by approver $cmd >"$WORK/ad.out" 2>&1 ||
		{ echo "$cmd:"; cat "$WORK/ad.out"; return 1; }
	grep -qE '^  deny removed +6: ' "$WORK/ad.out" || { echo "$cmd:"; cat "$WORK/ad.out"; return 1; }
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" log | grep -qE '  approver  accept .*  \+0 -6  ' ||
		{ "$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" log; return 1; }
	settled "$ep" && ! by_policy "$ep" kaspersky.de
}
check "accept shows the diff it consents to (the log's command) and audits its counts, or refuses" \
	accept_diff

signed() {
	"$POLICY_TOOL" keygen "$WORK/approver.key" "$WORK/approver.pub" >/dev/null || return 1
	setup sg --consent-key "$WORK/approver.pub" || return 1
	local rp=$RP_sg ep=$EP_sg v now from to
	# shellcheck disable=SC2086
	R "$rp" srem embargo:deny $SIX
	held "$ep" || return 1
	v=$(held_version "$ep")
	# A list editor writes a well-formed consent with redis-cli: unsigned, it is ignored.
	now=$(date +%s)
	from=$(head -1 "$WORK/sg.snapshot" | sed -n 's/.* digest=\([0-9a-f]*\) .*/\1/p')
	to=$("$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" digest)
	R "$rp" hset embargo:accept from "$from" to "$to" at "$now" expires $((now + 600)) \
		nonce 00112233445566778899aabbccddeeff by editor
	wait_for $((3 * SCALE)) grep -q "not signed and --consent-key requires a signature" \
		"$WORK/sg.log" || { cat "$WORK/sg.log"; return 1; }
	# shellcheck disable=SC2086
	all_denied "$ep" $SIX || return 1
	# An unsigned accept, or one signed with another key, is ignored as well.
	"$POLICY_TOOL" keygen "$WORK/other.key" "$WORK/other.pub" >/dev/null || return 1
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" accept --sign "$WORK/other.key" \
		--from "$WORK/sg.snapshot" "$v" >/dev/null || return 1
	wait_for $((3 * SCALE)) grep -q "signature does not verify" "$WORK/sg.log" ||
		{ cat "$WORK/sg.log"; return 1; }
	# shellcheck disable=SC2086
	all_denied "$ep" $SIX || return 1
	# The approver's signed consent releases it.
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" --by approver accept --sign "$WORK/approver.key" \
		--from "$WORK/sg.snapshot" "$v" >/dev/null || return 1
	settled "$ep" || return 1
	! by_policy "$ep" kaspersky.de || { echo "signed consent not followed"; return 1; }
	# The private key is refused where the public one belongs.
	if "$EMBARGO" --check-config /dev/null --consent-key "$WORK/approver.key" >/dev/null 2>&1; then
		echo "a private key taken as --consent-key"
		return 1
	fi
}
check "--consent-key: a consent written with redis-cli, or signed by another key, releases nothing" signed

reload_off() {
	setup_conf off "max-shrink 10%,1000" "reload-interval 30" || return 1
	local rp=$RP_off ep=$EP_off
	# shellcheck disable=SC2086
	R "$rp" srem embargo:deny $SIX
	held "$ep" || return 1
	conf off "$rp" "max-shrink off" "reload-interval 30"
	kill -HUP "$PID_off"
	wait_for $((5 * SCALE)) grep -q "SIGHUP: syncing from" "$WORK/off.log" || { cat "$WORK/off.log"; return 1; }
	sleep 1
	held "$ep" || return 1
	# shellcheck disable=SC2086
	all_denied "$ep" $SIX
}
check "a reload to --max-shrink off releases no held load" reload_off

window_reload() {
	# A quiet window has passed while a load is held; a reload that only touches the Redis
	# settings (a new link), then one to --max-shrink off, then a changed reason: still held.
	setup_conf wr "max-shrink-window 2" "reload-interval 30" || return 1
	local rp=$RP_wr ep=$EP_wr
	# shellcheck disable=SC2086
	R "$rp" srem embargo:deny $SIX
	held "$ep" || return 1
	sleep 3
	conf wr "$rp" "max-shrink-window 2" "reload-interval 31"
	kill -HUP "$PID_wr"
	wait_for $((5 * SCALE)) grep -q "SIGHUP: syncing from" "$WORK/wr.log" || return 1
	sleep 1
	# shellcheck disable=SC2086
	held "$ep" && all_denied "$ep" $SIX || return 1
	conf wr "$rp" "max-shrink-window 2" "reload-interval 31" "max-shrink off"
	kill -HUP "$PID_wr"
	sleep 1
	R "$rp" hset embargo:reason kaspersky.com "edited reason"
	sleep 1
	# shellcheck disable=SC2086
	held "$ep" && all_denied "$ep" $SIX
}
check "a quiet window and reloads (new link, --max-shrink off) and a changed reason release nothing" \
	window_reload

window_inflate() {
	# Inflate, wait out the quiet window (the baseline moves to the inflated list), then remove
	# the listed names: the budget's base never grew, so it is held.
	setup wi --max-shrink-window 2 || return 1
	local rp=$RP_wi ep=$EP_wi i
	for i in $(seq 400); do
		printf '*3\r\n$4\r\nSADD\r\n$12\r\nembargo:deny\r\n$%d\r\njunk%d.test\r\n' $((${#i} + 9)) "$i"
	done | redis-cli -p "$rp" --pipe >/dev/null
	wait_for $((5 * SCALE)) by_policy "$ep" junk400.test || return 1
	sleep 3
	R "$rp" sadd embargo:deny tick.example
	wait_for $((5 * SCALE)) grep -q "is now the baseline lifts are counted against" "$WORK/wi.log" ||
		{ cat "$WORK/wi.log"; return 1; }
	# shellcheck disable=SC2046
	R "$rp" srem embargo:deny $(grep -v '^#' "$LIST" | cut -f1)
	held "$ep" && listed_denied "$ep"
}
check "inflate, wait out the quiet window, then remove the listed names: held" window_inflate

restart_both() {
	# Redis comes back on an older dump while embargo is down too (a power cut): embargo's
	# state file remembers Redis's run_id, so the rollback is seen after the restart.
	setup rr || return 1
	local rp=$RP_rr ep=$EP_rr
	R "$rp" save
	R "$rp" sadd embargo:deny add1.example add2.example add3.example add4.example
	wait_for $((5 * SCALE)) eval "grep -q '^d	add4.example$' $WORK/rr.snapshot" || return 1
	kill "$PID_rr"
	wait "$PID_rr" 2>/dev/null
	kill9_restart "$rp" rr
	start_embargo rr2 "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 30 --snapshot "$WORK/rr.snapshot"
	held "$ep" || { cat "$WORK/rr2.log"; return 1; }
	all_denied "$ep" add1.example add2.example add3.example add4.example || return 1
	grep -q "redis restarted (new run_id)" "$WORK/rr2.log" || { cat "$WORK/rr2.log"; return 1; }
}
check "Redis and embargo restarted together, Redis on an older dump: held after the restart" \
	restart_both

# restart BASE OLD NEW: stop embargo OLD and start NEW on the port, Redis and snapshot of the
# instance setup BASE made.
restart() {
	local ep rp
	eval "ep=\$EP_$1 rp=\$RP_$1"
	eval "kill \$PID_$2; wait \$PID_$2 2>/dev/null"
	start_embargo "$3" "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 30 --timeout 500 --snapshot "$WORK/$1.snapshot"
	followed "$3"
}

two_restarts() {
	# The budget spent is remembered across restarts, also across one whose first load is held.
	setup tr || return 1
	local rp=$RP_tr ep=$EP_tr
	R "$rp" srem embargo:deny kaspersky.de kaspersky.cz kaspersky.be kaspersky.ca
	wait_for $((5 * SCALE)) eval "! by_policy $ep kaspersky.de" || return 1
	# Eight more removed while embargo is down: its first load after the restart is held.
	kill "$PID_tr"
	wait "$PID_tr" 2>/dev/null
	R "$rp" srem embargo:deny kaspersky.fr kaspersky.it kaspersky.ru kaspersky.ua kaspersky.cn \
		kaspersky.co.uk kaspersky.co.jp kaspersky.com.br
	restart tr tr tr2 || return 1
	held "$ep" || return 1
	R "$rp" sadd embargo:deny kaspersky.fr kaspersky.it kaspersky.ru kaspersky.ua kaspersky.cn \
		kaspersky.co.uk kaspersky.co.jp kaspersky.com.br
	settled "$ep" || return 1
	restart tr tr2 tr3 || return 1
	R "$rp" srem embargo:deny kaspersky.fr
	held "$ep" && by_policy "$ep" kaspersky.fr
}
check "two restarts, one with a held first load: the 4 lifted before still count, a 5th is held" \
	two_restarts

readd_after_loosening() {
	# Held; a reload loosens the limits; the editor puts the names back (published, lifts
	# nothing) and removes them again: the cap the hold set still applies.
	setup_conf rl "reload-interval 30" || return 1
	local rp=$RP_rl ep=$EP_rl
	# shellcheck disable=SC2086
	R "$rp" srem embargo:deny $SIX
	held "$ep" || return 1
	conf rl "$rp" "reload-interval 30" "max-shrink 50%"
	kill -HUP "$PID_rl"
	wait_for $((5 * SCALE)) grep -q "SIGHUP: syncing from" "$WORK/rl.log" || return 1
	# shellcheck disable=SC2086
	R "$rp" sadd embargo:deny $SIX tick.example
	wait_for $((5 * SCALE)) by_policy "$ep" tick.example || return 1
	# shellcheck disable=SC2086
	R "$rp" srem embargo:deny $SIX
	held "$ep" || return 1
	# shellcheck disable=SC2086
	all_denied "$ep" $SIX
}
check "held, a reload loosens the limits, the names put back and removed again: still held" \
	readd_after_loosening

restored() {
	# Two names lifted (within the budget), then 30 removed: held. Redis restored: nothing held
	# any more, and the next change applies (the hold's cap comes from the budget's base, not
	# from the 8 names the held load kept).
	setup rs2 || return 1
	local rp=$RP_rs2 ep=$EP_rs2 thirty
	R "$rp" srem embargo:deny kaspersky.de kaspersky.cz
	wait_for $((5 * SCALE)) eval "! by_policy $ep kaspersky.de" || return 1
	thirty=$(redis-cli -p "$rp" smembers embargo:deny | sort | head -30)
	# shellcheck disable=SC2086
	R "$rp" srem embargo:deny $thirty
	held "$ep" || return 1
	# shellcheck disable=SC2086
	R "$rp" sadd embargo:deny $thirty
	settled "$ep" || return 1
	R "$rp" sadd embargo:deny tick2.example
	wait_for $((5 * SCALE)) by_policy "$ep" tick2.example || return 1
	status_of "$ep" | grep -q "source=redis" && ! status_of "$ep" | grep -q held= ||
		{ status_of "$ep"; return 1; }
}
check "two lifted, 30 held, Redis restored: nothing held, the next change applies" restored

state_lost() {
	# The snapshot is there but the state beside it is gone: nothing is known of what was
	# spent, so even one removal is held until a consent.
	setup sl2 || return 1
	local rp=$RP_sl2 ep=$EP_sl2
	kill "$PID_sl2"
	wait "$PID_sl2" 2>/dev/null
	rm -f "$WORK/sl2.snapshot.guard"
	start_embargo sl3 "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 30 --snapshot "$WORK/sl2.snapshot"
	followed sl3 || return 1
	grep -q "guard state: cannot read .*sl2.snapshot.guard" "$WORK/sl3.log" || { cat "$WORK/sl3.log"; return 1; }
	R "$rp" srem embargo:deny kaspersky.de
	held "$ep" && by_policy "$ep" kaspersky.de
}
check "the state beside the snapshot lost: one removal is held" state_lost

unknown_format() {
	# The newest snapshot's format digit damaged (or a newer embargo's file): its older
	# generation is enforced, not the bundled list alone.
	local ep g
	ep=$(free_port)
	[ -s "$WORK/tr.snapshot.1" ] || { echo "no older generation"; return 1; }
	for g in "" .1 .2 .3; do [ -f "$WORK/tr.snapshot$g" ] && cp "$WORK/tr.snapshot$g" "$WORK/uf.snapshot$g"; done
	sed -i '1s/^embargo-policy-snapshot 3 /embargo-policy-snapshot 4 /' "$WORK/uf.snapshot"
	start_embargo uf "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$(free_port)" \
		--snapshot "$WORK/uf.snapshot"
	grep -q "uf.snapshot is damaged: enforcing .* with the older generation .*uf.snapshot.1" \
		"$WORK/uf.log" || { cat "$WORK/uf.log"; return 1; }
	# What tr enforced.
	all_denied "$ep" kaspersky.fr kaspersky.ru www.kaspersky.com
}
check "a snapshot of a format this embargo does not read: its older generation is enforced" \
	unknown_format

save_failure() {
	# The disk under the snapshot goes away: an error in the log, a counter and /health say so;
	# the save is retried (every --reload-interval, here 3 s, or once a minute if that is
	# sooner) with no change to the policy, and saved as soon as the disk is back.
	local rp ep mp dir=$WORK/snapdir
	rp=$(free_port)
	ep=$(free_port)
	mp=$(free_port)
	mkdir -p "$dir"
	start_redis "$rp"
	"$POLICY_TOOL" --redis "redis://127.0.0.1:$rp" import "$LIST" >/dev/null || return 1
	start_embargo sf "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 3 --snapshot "$dir/policy.snapshot" --metrics "127.0.0.1:$mp"
	wait_for $((5 * SCALE)) eval "[ -s $dir/policy.snapshot ]" || { cat "$WORK/sf.log"; return 1; }
	rm -rf "$dir"
	R "$rp" sadd embargo:deny unsaved.example
	wait_for $((5 * SCALE)) grep -q "error: policy snapshot not saved: cannot create" "$WORK/sf.log" ||
		{ cat "$WORK/sf.log"; return 1; }
	local metrics health
	metrics=$(http "http://127.0.0.1:$mp/metrics")
	grep -qE '^embargo_snapshot_save_failures_total [1-9]' <<<"$metrics" &&
		grep -qE '^embargo_snapshot_age_seconds [0-9]' <<<"$metrics" ||
		{ grep snapshot <<<"$metrics"; return 1; }
	health=$(http "http://127.0.0.1:$mp/health")
	[ "$health" = "ok; policy snapshot not saved (see the log)" ] || { echo "health: $health"; return 1; }
	# Retried with nothing changed in Redis: the failures count on.
	wait_for $((10 * SCALE)) eval "http http://127.0.0.1:$mp/metrics |
		grep -qE '^embargo_snapshot_save_failures_total ([2-9]|[1-9][0-9])'" ||
		{ http "http://127.0.0.1:$mp/metrics" | grep snapshot_save; return 1; }
	mkdir -p "$dir"
	wait_for $((10 * SCALE)) grep -q "policy snapshot saved to $dir/policy.snapshot again" "$WORK/sf.log" ||
		{ cat "$WORK/sf.log"; return 1; }
	grep -q "^d	unsaved.example$" "$dir/policy.snapshot" || return 1
	[ "$(http "http://127.0.0.1:$mp/health")" = ok ] || { echo "health not back"; return 1; }
}
check "a snapshot that cannot be saved: an error, embargo_snapshot_save_failures_total, /health" save_failure

finish
