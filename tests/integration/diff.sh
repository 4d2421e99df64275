#!/usr/bin/env bash
# Differential test: the same corpus of 2,000 queries (corpus.py) to embargo and to Unbound, both
# forwarding to one NSD that serves diff.example and a signed.example signed at test time. Every
# difference is a disagreement unless diffcheck.py's ALLOWED table names it with a reason; names
# embargo's policy denies are checked against embargo's deny answer instead.
# One check, differential, on the servers started above it: there is no order to depend on.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"
. "$srcdir/tests/integration/signed.sh"

need_all
need_signing

REDIS=$(free_port)
NSD=$(free_port)
EP=$(free_port)
UP=$(free_port)
while [ "$UP" = "$EP" ] || [ "$UP" = "$NSD" ] || [ "$UP" = "$REDIS" ]; do UP=$(free_port); done

sign_zone
start_zones_nsd "$NSD"
start_redis "$REDIS"
R() { redis-cli -p "$REDIS" "$@" >/dev/null; }
R del embargo:deny embargo:allow embargo:reason
R sadd embargo:deny denied.diff.example denied.signed.example
R sadd embargo:allow ok.denied.diff.example
R hset embargo:reason denied.diff.example "diff test: denied"
consent_first --redis "redis://127.0.0.1:$REDIS"
# With every default local zone of embargo's kept: they are compared with Unbound's.
start_embargo_as_is diff "$EP" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS"
wait_for 5 grep -q "policy loaded from redis" "$WORK/diff.log" || die "policy not loaded"

# Unbound as a plain forwarder (no validation: embargo does not validate either), answers as
# complete as the upstream's (minimal-responses: no, as embargo passes the upstream's sections),
# with Extended DNS Errors on (embargo always sends them), TTLs untouched by prefetching.
start_unbound unbound "$UP" "	module-config: \"iterator\"
	qname-minimisation: no
	minimal-responses: no
	ede: yes
	prefetch: no
forward-zone:
	name: \".\"
	forward-addr: 127.0.0.1@$NSD"

differential() {
	local t0=$SECONDS
	"$PY" "$srcdir/tests/integration/corpus.py" --seed "${DIFF_SEED:-20240620}" >"$WORK/corpus.jsonl" ||
		return 1
	"$PY" "$srcdir/tests/integration/diffcheck.py" "$EP" "$UP" "${DIFF_SHOW:-20}" <"$WORK/corpus.jsonl"
	local rc=$?
	echo "# ($((SECONDS - t0)) s)"
	return $rc
}
check "embargo answers the corpus as Unbound does" differential
# The summary line also when the test passes (a failing check prints it with its output).
[ "$FAILED" -eq 0 ] && grep -E "^# [0-9]+ agree" "$WORK/check.out"
finish
