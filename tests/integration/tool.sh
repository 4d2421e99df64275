#!/usr/bin/env bash
# embargo-policy against a real redis-server on a free loopback port: every command, checked by
# what Redis holds afterwards (redis-cli SMEMBERS, HGETALL, XLEN), not by what the tool prints.
# The daemon itself only writes the snapshot files that restore and diff read.
# The checks are independent: each writes what it reads into Redis (ONLY= runs any of them alone).
# diff_snapshot, restore, restore_prefix and acl_user read the snapshot the daemon writes above
# them once its held load is consented to: by released, or by the script when ONLY= skips it.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need redis-server redis-server
need redis-cli redis-tools
need ss iproute2
[ -x "$EMBARGO" ] || die "$EMBARGO not built"
[ -x "$POLICY_TOOL" ] || die "$POLICY_TOOL not built"

RP=$(free_port)
start_redis "$RP"
R() { redis-cli -p "$RP" "$@"; }
P() { "$POLICY_TOOL" --redis "redis://127.0.0.1:$RP" "$@"; }
# members KEY: a set's members, sorted, on one line.
members() { R smembers "$1" | sort | tr '\n' ' '; }
# pairs KEY: a hash as sorted "field=value" words.
pairs() { R hgetall "$1" | paste -d= - - | sort | tr '\n' ' '; }
same() { # WHAT GOT WANT
	[ "$2" = "$3" ] || { echo "$1: got '$2', want '$3'"; return 1; }
}
reset() { R del embargo:deny embargo:allow embargo:reason embargo:accept embargo:audit >/dev/null; }
# audit FIELD: that field of the newest audit entry.
audit() { R xrevrange embargo:audit + - count 1 | awk -v f="$1" 'p { print; exit } $0 == f { p = 1 }'; }
no_temp_keys() { same "temporary keys" "$(R --scan --pattern '*tmp*' | tr '\n' ' ')" ""; }

import_tsv() {
	reset
	printf 'a.example\tReason A\nB.Example.\tReason B\nc.example\n# comment\nbad name\n' >"$WORK/l.tsv"
	P import "$WORK/l.tsv" || return 1
	same deny "$(members embargo:deny)" "a.example b.example c.example " &&
		same reason "$(pairs embargo:reason)" "a.example=Reason A b.example=Reason B " &&
		same "audit entries" "$(R xlen embargo:audit)" 1 &&
		same "audit added" "$(audit added)" 3
}
check "import of a TSV file: names in normal form, reasons, one audit entry" import_tsv

import_hosts() {
	reset
	printf '0.0.0.0 h1.example H2.example # two names\n127.0.0.1\th3.example\n::1 h4.example\n' \
		>"$WORK/hosts"
	P import "$WORK/hosts" || return 1
	same deny "$(members embargo:deny)" "h1.example h2.example h3.example h4.example "
}
check "import of a hosts file with several names a line" import_hosts

digest_and_accept() {
	reset
	printf 'a.example\tReason A\nb.example\nc.example\n' >"$WORK/order.tsv"
	P import "$WORK/order.tsv" >/dev/null && R sadd embargo:allow ok.a.example >/dev/null || return 1
	local d1 bundled
	d1=$(P digest) || return 1
	[[ $d1 =~ ^[0-9a-f]{64}$ ]] || { echo "digest '$d1' is not 64 hex digits"; return 1; }
	# The consent names the transition: from the bundled list to exactly what Redis holds.
	P --by alice --why "first order" accept --from bundled "${d1:0:16}" >"$WORK/accept.out" ||
		{ cat "$WORK/accept.out"; return 1; }
	grep -q "^accepted version ${d1:0:16} from [0-9a-f]\{16\}, valid until .*, unsigned$" \
		"$WORK/accept.out" || { cat "$WORK/accept.out"; return 1; }
	grep -qE '^  deny removed +40:' "$WORK/accept.out" || { cat "$WORK/accept.out"; return 1; }
	local at expires nonce
	at=$(R hget embargo:accept at) expires=$(R hget embargo:accept expires) nonce=$(R hget embargo:accept nonce)
	same to "$(R hget embargo:accept to)" "$d1" && same by "$(R hget embargo:accept by)" alice &&
		same why "$(R hget embargo:accept why)" "first order" &&
		same lifetime "$((expires - at))" 86400 || return 1
	[[ $nonce =~ ^[0-9a-f]{32}$ ]] || { echo "nonce '$nonce'"; return 1; }
	bundled=$(R hget embargo:accept from)
	[[ $bundled =~ ^[0-9a-f]{64}$ ]] && [ "$bundled" != "$d1" ] || { echo "from '$bundled'"; return 1; }
	# A second consent to the same transition has a new nonce: each is used once.
	P accept --from bundled "$d1" >/dev/null || return 1
	[ "$(R hget embargo:accept nonce)" != "$nonce" ] || { echo "nonce reused"; return 1; }
	# A version Redis does not hold is refused, and nothing is written.
	nonce=$(R hget embargo:accept nonce)
	if P accept --from bundled 0123456789abcdef 2>"$WORK/accept.err"; then
		echo "accepted a version redis does not hold"
		return 1
	fi
	grep -q "redis now holds version ${d1:0:16}, not 0123456789abcdef" "$WORK/accept.err" &&
		same "consent kept" "$(R hget embargo:accept nonce)" "$nonce" || { cat "$WORK/accept.err"; return 1; }
	# Fewer than 16 digits or a lifetime over 7 days: usage errors.
	P accept --from bundled "${d1:0:8}" 2>/dev/null; same "short version" $? 2 || return 1
	P accept --from bundled --ttl 8d "$d1" 2>/dev/null; same "8d" $? 2 || return 1
	# The same policy written in another order and spelling has the same digest.
	reset
	R sadd embargo:deny C.EXAMPLE. b.example >/dev/null
	R sadd embargo:allow ok.a.example >/dev/null
	R hset embargo:reason a.example "Reason A" >/dev/null
	R sadd embargo:deny a.example >/dev/null
	same "digest in another order" "$(P digest)" "$d1" || return 1
	R srem embargo:deny b.example >/dev/null
	[ "$(P digest)" != "$d1" ] || { echo "digest did not change"; return 1; }
}
check "digest and accept: a consent from one digest to another, its nonce, its lifetime" digest_and_accept

accept_full_digest() {
	reset
	printf 'a.example\nb.example\n' >"$WORK/full.tsv"
	P import "$WORK/full.tsv" >/dev/null || return 1
	local d other
	d=$(P digest)
	other=${d:0:16}$(printf '%048d' 0)
	[ "$other" != "$d" ] || other=${d:0:16}$(printf '%048d' 1)
	# The resolvers hold a load whose digest shares the 16 digits shown with what Redis holds
	# now (as a collision would): accept of those 16 digits compares all 64, and refuses.
	R xadd embargo:audit '*' command "held by the resolvers" version "${d:0:16}" digest "$other" >/dev/null
	if P accept --from bundled "${d:0:16}" >"$WORK/full.out" 2>&1; then
		cat "$WORK/full.out"
		echo "accepted another digest than the held one"
		return 1
	fi
	grep -q "redis now holds digest $d, not $other" "$WORK/full.out" &&
		same "consent" "$(R exists embargo:accept)" 0 || { cat "$WORK/full.out"; return 1; }
	# All 64 digits given: they are what is compared.
	P accept --from bundled "$d" >/dev/null && same to "$(R hget embargo:accept to)" "$d"
}
check "accept compares the held load's whole digest, not the 16 digits shown" accept_full_digest

replace() {
	reset
	R sadd embargo:deny old.example x.example >/dev/null
	R sadd embargo:allow keep.example >/dev/null
	R hset embargo:reason old.example "old reason" >/dev/null
	printf 'new1.example\tNew 1\nNew2.Example.\n' >"$WORK/new.tsv"
	# It lifts both names in force: more than --max-shrink allows, so it shows and refuses.
	if P --why "quarterly list" import --replace "$WORK/new.tsv" >"$WORK/replace.out" 2>&1; then
		echo "replaced without --yes"
		return 1
	fi
	grep -qE '^  deny removed +2: ' "$WORK/replace.out" &&
		grep -q "would lift 2 denied names" "$WORK/replace.out" &&
		same "deny untouched" "$(members embargo:deny)" "old.example x.example " &&
		no_temp_keys || { cat "$WORK/replace.out"; return 1; }
	P --why "quarterly list" import --replace --yes "$WORK/new.tsv" >"$WORK/replace.out" ||
		{ cat "$WORK/replace.out"; return 1; }
	same deny "$(members embargo:deny)" "new1.example new2.example " &&
		same allow "$(members embargo:allow)" "keep.example " &&
		same reason "$(pairs embargo:reason)" "new1.example=New 1 " && no_temp_keys || return 1
	# No consent is written for you: resolvers hold it until an approver accepts it.
	same "consent" "$(R exists embargo:accept)" 0 &&
		grep -q "resolvers hold it until an approver runs: embargo-policy accept" "$WORK/replace.out" &&
		same "audit command" "$(audit command)" "import --replace --yes $WORK/new.tsv" &&
		same "audit added/removed" "$(audit added)/$(audit removed)" 2/2 &&
		same "audit digest" "$(audit digest)" "$(P digest)"
}
check "import --replace: shows the diff, refuses beyond the budget without --yes, no consent" replace

replace_empty() {
	reset
	R sadd embargo:deny gone.example >/dev/null
	R sadd embargo:allow keep.example >/dev/null
	: >"$WORK/empty.txt"
	P import --replace --yes "$WORK/empty.txt" >/dev/null || return 1
	same "deny exists" "$(R exists embargo:deny)" 0 && same allow "$(members embargo:allow)" \
		"keep.example " && no_temp_keys
}
check "import --replace with an empty file deletes the set" replace_empty

replace_allow() {
	reset
	R sadd embargo:deny d.example >/dev/null
	R sadd embargo:allow stale.example >/dev/null
	printf 'fresh.d.example\n' >"$WORK/allow.txt"
	# The new allow rule lifts one denied name: within the budget.
	P import --replace --allow "$WORK/allow.txt" >/dev/null || return 1
	same allow "$(members embargo:allow)" "fresh.d.example " &&
		same deny "$(members embargo:deny)" "d.example " && no_temp_keys
}
check "import --replace --allow replaces the allow set only" replace_allow

# A snapshot written by the daemon from a known policy.
reset
R sadd embargo:deny a.example B.Example. c.example >/dev/null
R sadd embargo:allow ok.a.example >/dev/null
R hset embargo:reason a.example "Reason A" >/dev/null
EP=$(free_port)
start_embargo snap "$EP" --upstream 127.0.0.1:9 --redis "redis://127.0.0.1:$RP"
SNAP="$WORK/snap.snapshot"
# Lifting the bundled list's 40 rules is more than --max-shrink allows: the daemon holds the load
# until a consent names exactly the transition from the bundled list to the digest it read.
snap_digest() {
	head -1 "$SNAP" 2>/dev/null | sed -n 's/.* digest=\([0-9a-f]*\) .*/\1/p'
}
released() {
	wait_for 10 grep -q "POLICY LOAD HELD" "$WORK/snap.log" || { cat "$WORK/snap.log"; return 1; }
	# While held, the daemon enforces the bundled list plus what Redis adds, and saves nothing.
	sleep 0.5
	[ ! -s "$SNAP" ] || { echo "snapshot written while held: $(head -1 "$SNAP")"; return 1; }
	local held v
	held=$(q "$EP" @127.0.0.1 CH TXT policy.embargo. +short | grep -o "held_version=[0-9a-f]*" | cut -d= -f2)
	v=$(P digest)
	same "held version" "$held" "${v:0:16}" || return 1
	P accept --from bundled "$held" >/dev/null || return 1
	wait_for 10 eval '[ "$(snap_digest)" = "$v" ]' || { cat "$WORK/snap.log"; return 1; }
	! grep -q "kaspersky.com" "$SNAP" || { echo "bundled list still in the snapshot"; return 1; }
}
check "the daemon enforces a held load once accept consents to its digest" released
# (ONLY= without released: the consent written here, for the snapshot the checks below read.)
[ -n "$(R hget embargo:accept to)" ] || consent_first --redis "redis://127.0.0.1:$RP"
wait_for 10 eval '[ "$(snap_digest)" = "$(R hget embargo:accept to)" ]' ||
	die "no snapshot of the consented policy: $(cat "$WORK/snap.log")"
kill "$PID_snap"
wait "$PID_snap" 2>/dev/null
SNAP_DIGEST=$(snap_digest)

diff_snapshot() {
	R sadd embargo:deny new.example >/dev/null
	R srem embargo:deny c.example >/dev/null
	R hset embargo:reason a.example "Reason A, amended" >/dev/null
	local out
	out=$(P diff "$SNAP") || { echo "$out"; return 1; }
	grep -qE '^  deny added +1: new.example$' <<<"$out" &&
		grep -qE '^  deny removed +1: c.example$' <<<"$out" &&
		grep -qE '^  reason changed +1: a.example$' <<<"$out" &&
		! grep -qE 'allow (added|removed)' <<<"$out" || { echo "$out"; return 1; }
}
check "diff: names added, removed and with a changed reason against a snapshot" diff_snapshot

restore() {
	R sadd embargo:allow extra.example >/dev/null
	P --why "redis lost its data" restore "$SNAP" || return 1
	same deny "$(members embargo:deny)" "a.example b.example c.example " &&
		same allow "$(members embargo:allow)" "ok.a.example " &&
		same reason "$(pairs embargo:reason)" "a.example=Reason A " && no_temp_keys &&
		same "digest (the daemon's)" "$(P digest)" "$SNAP_DIGEST" &&
		same "audit why" "$(audit why)" "redis lost its data" &&
		same "diff after restore" "$(P diff "$SNAP" | tail -1)" "same rules and reasons"
}
check "restore: Redis holds exactly the snapshot, the daemon's digest" restore

restore_budget() {
	# Redis holds the snapshot's rules and 20 more: restoring the (stale) snapshot would lift
	# the 20, more than --max-shrink allows at once. Shown and refused without --yes.
	reset
	P restore --yes "$SNAP" >/dev/null || return 1
	# shellcheck disable=SC2046 # Twenty names.
	R sadd embargo:deny $(seq -f "later%g.example" 20) >/dev/null
	if P --why "stale snapshot" restore "$SNAP" >"$WORK/rb.out" 2>&1; then
		echo "restored without --yes"
		return 1
	fi
	grep -qE '^  deny removed +20: ' "$WORK/rb.out" &&
		grep -q "would lift 20 denied names" "$WORK/rb.out" &&
		same "deny untouched" "$(R scard embargo:deny)" 23 && no_temp_keys ||
		{ cat "$WORK/rb.out"; return 1; }
	P --why "stale snapshot" restore --yes "$SNAP" >"$WORK/rb.out" || { cat "$WORK/rb.out"; return 1; }
	same deny "$(members embargo:deny)" "a.example b.example c.example " &&
		same "audit added/removed" "$(audit added)/$(audit removed)" 0/20 &&
		same "consent" "$(R exists embargo:accept)" 0 && no_temp_keys
}
check "restore: a lift beyond the budget is shown and refused without --yes" restore_budget

restore_prefix() {
	if P --redis-prefix other restore "$SNAP" 2>"$WORK/prefix.err"; then
		echo "restore under another prefix succeeded"
		return 1
	fi
	grep -q "prefix 'embargo'" "$WORK/prefix.err" || { cat "$WORK/prefix.err"; return 1; }
	same "other:deny after refusal" "$(R exists other:deny)" 0 || return 1
	P --redis-prefix other restore --force "$SNAP" >/dev/null &&
		same "other:deny" "$(members other:deny)" "a.example b.example c.example "
}
check "restore refuses a snapshot of another prefix unless --force" restore_prefix

remove_spellings() {
	reset
	R sadd embargo:deny Example.COM. example.com www.Example.COM keep.example >/dev/null
	R hset embargo:reason Example.COM. "Reason E" keep.example K >/dev/null
	P remove example.com || return 1
	same deny "$(members embargo:deny)" "keep.example www.Example.COM " &&
		same reason "$(pairs embargo:reason)" "keep.example=K " &&
		same "audit removed" "$(audit removed)" 1
}
check "remove example.com lifts members written Example.COM. and their reasons" remove_spellings

add_normal() {
	reset
	P add WWW.Shop.Example. "Reason S" && P add --allow Ok.Shop.Example || return 1
	same deny "$(members embargo:deny)" "www.shop.example " &&
		same allow "$(members embargo:allow)" "ok.shop.example " &&
		same reason "$(pairs embargo:reason)" "www.shop.example=Reason S " || return 1
	P add "bad name" 2>/dev/null
	same "exit status for an invalid name" $? 2 && same "deny members" "$(R scard embargo:deny)" 1
}
check "add writes names in normal form; an invalid name exits 2" add_normal

explain_spelling() {
	reset
	R sadd embargo:deny Example.COM. >/dev/null
	R hset embargo:reason Example.COM. "Reason E" >/dev/null
	local out
	out=$(P explain www.example.com) || return 1
	grep -q "www.example.com: DENIED by embargo:deny member 'example.com'" <<<"$out" &&
		grep -q "reason: Reason E" <<<"$out" || { echo "$out"; return 1; }
}
check "explain finds a member written in another case with a trailing dot" explain_spelling

verify_members() {
	reset
	R sadd embargo:deny good.example "bad name" 192.0.2.1 >/dev/null
	R hset embargo:reason orphan.example "nobody" good.example G >/dev/null
	local out status
	out=$(P verify)
	status=$?
	same "verify exit status" "$status" 1 || return 1
	grep -q "'bad name' skipped: not a domain name" <<<"$out" &&
		grep -q "'192.0.2.1' skipped: IP literal" <<<"$out" &&
		grep -q "'orphan.example' skipped: a reason for a name without" <<<"$out" &&
		! grep -q "good.example" <<<"$out" || { echo "$out"; return 1; }
	R srem embargo:deny "bad name" 192.0.2.1 >/dev/null
	R hdel embargo:reason orphan.example >/dev/null
	P verify >/dev/null || { echo "verify of a clean policy failed"; return 1; }
	R set embargo:allow oops >/dev/null
	out=$(P verify)
	status=$?
	R del embargo:allow >/dev/null
	same "exit status with a wrong type" "$status" 1 && grep -q "embargo:allow: wrong type string" <<<"$out"
}
check "verify names skipped members and wrong types, and exits 1" verify_members

log_entries() {
	reset
	P --by alice --why "ticket 7" add one.example >/dev/null &&
		P --by bob add two.example >/dev/null &&
		P --by carol --why "ticket 9" remove one.example >/dev/null || return 1
	same "audit entries" "$(R xlen embargo:audit)" 3 || return 1
	local out
	out=$(P log -n 2) || return 1
	same "lines" "$(wc -l <<<"$out")" 2 &&
		grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z  carol  remove one.example  \+0 -1  [0-9a-f]{16}  ticket 9$' \
			<<<"$(head -1 <<<"$out")" &&
		grep -qE '  bob  add two.example  \+1 -0  [0-9a-f]{16}$' <<<"$(tail -1 <<<"$out")" ||
		{ echo "$out"; return 1; }
}
check "log: newest first, with --by and --why" log_entries

acl_user() {
	reset
	# The ACL line README.md documents for the people who edit the list.
	R ACL SETUSER editor on '>pw' '~embargo:*' resetchannels +@read +@write +multi +exec \
		+watch +unwatch +select >/dev/null || return 1
	local U=(--redis "redis://editor:pw@127.0.0.1:$RP") cmd
	printf 'acl.example\tR\n' >"$WORK/acl.tsv"
	for cmd in "import $WORK/acl.tsv" "import --replace $WORK/acl.tsv" "add two.example" \
		"remove two.example" "digest" "accept --from $SNAP DIGEST" "explain www.acl.example" \
		"verify" "log" "diff $SNAP" "restore $SNAP"; do
		cmd=${cmd/DIGEST/$(P digest)}
		# shellcheck disable=SC2086 # Words of cmd are arguments.
		"$POLICY_TOOL" "${U[@]}" $cmd >"$WORK/acl.out" 2>&1 ||
			{ echo "$cmd as editor:"; cat "$WORK/acl.out"; return 1; }
	done
	same deny "$(members embargo:deny)" "a.example b.example c.example " || return 1
	if "$POLICY_TOOL" --redis "redis://editor:wrong@127.0.0.1:$RP" verify 2>/dev/null; then
		echo "a wrong password was accepted"
		return 1
	fi
}
check "an ACL user with the documented rights runs every command; a wrong password fails" acl_user

finish
