#!/usr/bin/env bash
# DNSSEC-transparent forwarding: DO and CD reach the upstream, DNSSEC records come back intact
# (UDP, TCP, cache) or, for a small buffer, TC rather than an answer without its NSEC proofs; CD
# is part of the cache key, AD passes only as --upstream-trust-ad allows, and a denied answer
# carries neither AD nor signatures. Upstreams: NSD serving the signed zone (signed.sh), and a
# validating Unbound in front of it with the zone's DS as trust anchor.
# The checks are independent: each asks the daemons started above them what it then checks,
# no_do_no_sigs caching the DO answer first itself (ONLY= runs any of them alone).
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
VU=$(free_port)
E1=$(free_port) # upstream NSD
E2=$(free_port) # upstream the validator, --upstream-trust-ad yes
E3=$(free_port) # upstream the validator, default (no)
sign_zone
start_zones_nsd "$NSD"
start_redis "$REDIS"
R() { redis-cli -p "$REDIS" "$@" >/dev/null; }
R del embargo:deny embargo:allow embargo:reason
R sadd embargo:deny denied.signed.example
R hset embargo:reason denied.signed.example "dnssec test: denied"
consent_first --redis "redis://127.0.0.1:$REDIS"

echo "$SIGNED_DS" >"$WORK/anchor.ds"
start_unbound validator "$VU" "	module-config: \"validator iterator\"
	trust-anchor-file: \"$WORK/anchor.ds\"
	val-permissive-mode: no
	qname-minimisation: no
	minimal-responses: no
forward-zone:
	name: \".\"
	forward-addr: 127.0.0.1@$NSD"

REDIS_URL="redis://127.0.0.1:$REDIS"
start_embargo nsd "$E1" --upstream "127.0.0.1:$NSD" --redis "$REDIS_URL"
start_embargo trusting "$E2" --upstream "127.0.0.1:$VU" --upstream-trust-ad yes --redis "$REDIS_URL"
start_embargo plain "$E3" --upstream "127.0.0.1:$VU" --redis "$REDIS_URL"
for n in nsd trusting plain; do
	wait_for 5 grep -q "policy loaded from redis" "$WORK/$n.log" || die "policy not loaded ($n)"
done

# ask PORT NAME TYPE [udp|tcp] [FLAG...]: one query (flags: do cd ad nord bufsize=N), printed
# as "RCODE FLAGS | ede CODE ... | SECTION RRs ..." with TTLs left out, or "none".
ask() {
	"$PY" - "$@" <<'PY'
import socket, struct, sys
import dns.edns, dns.flags, dns.message, dns.query, dns.rcode, dns.rdatatype
port, name, rtype = int(sys.argv[1]), sys.argv[2], sys.argv[3]
tcp = len(sys.argv) > 4 and sys.argv[4] == "tcp"
opts = sys.argv[5:]
bufsize = next((int(o.split("=")[1]) for o in opts if o.startswith("bufsize=")), 4096)
q = dns.message.make_query(name, rtype, use_edns=0, payload=bufsize, want_dnssec="do" in opts)
if "cd" in opts:
    q.flags |= dns.flags.CD
if "ad" in opts:
    q.flags |= dns.flags.AD
if "nord" in opts:
    q.flags &= ~dns.flags.RD
try:
    r = (dns.query.tcp if tcp else dns.query.udp)(q, "127.0.0.1", timeout=3, port=port)
except Exception as exc:
    print("none", type(exc).__name__)
    sys.exit()
flags = dns.flags.to_text(r.flags).lower()
out = ["%s %s" % (dns.rcode.to_text(r.rcode()), flags)]
out += ["ede %d" % o.code for o in r.options if o.otype == dns.edns.EDE]
for sec, rrsets in (("an", r.answer), ("ns", r.authority), ("ar", r.additional)):
    for rrset in rrsets:
        for rd in rrset:
            out.append("%s %s %s %s" % (sec, rrset.name.to_text().lower(),
                                        dns.rdatatype.to_text(rrset.rdtype), rd.to_text()))
print(" | ".join(out))
PY
}

has_flag() { # ANSWER FLAG: the answer's header has FLAG
	local head=${1%% |*}
	[[ " ${head#* } " == *" $2 "* ]]
}

# no_ad ANSWER: an answer came (an rcode, not "none" after a timeout) and its header has no AD.
no_ad() {
	[[ $1 =~ ^[A-Z]+\  ]] && [[ $1 != none* ]] && ! has_flag "$1" ad
}

# denied_by_embargo ANSWER NAME: embargo's own denial of NAME (the rule): NXDOMAIN with EDE 16 and
# the policy's SOA (embargo.invalid), never an upstream's NXDOMAIN.
denied_by_embargo() {
	grep -q "^NXDOMAIN " <<<"$1" && grep -q "| ede 16 |" <<<"$1" &&
		grep -q "ns $2. SOA embargo.invalid." <<<"$1"
}

# The DNSSEC records embargo hands back are NSD's, byte for byte: compare every RR (TTL aside)
# of NSD's own answer with embargo's over UDP, over TCP, and the repeat from embargo's cache.
intact() {
	"$PY" - "$NSD" "$E1" <<'PY'
import sys
import dns.flags, dns.message, dns.query, dns.rdatatype
nsd, emb = int(sys.argv[1]), int(sys.argv[2])
cases = [("www.signed.example.", "A"), ("signed.example.", "DNSKEY"), ("sub.signed.example.", "DS"),
         ("nope.signed.example.", "A"), ("www.signed.example.", "TXT"), ("x.wild.signed.example.", "A"),
         ("alias.signed.example.", "A"), ("signed.example.", "NSEC")]
def records(r):
    out = set()
    for sec, rrsets in (("an", r.answer), ("ns", r.authority), ("ar", r.additional)):
        for rrset in rrsets:
            for rd in rrset:
                out.add((sec, rrset.name.to_text().lower(), rrset.rdtype, rrset.covers,
                         rd.to_wire()))
    return out
bad = 0
for name, rtype in cases:
    q = dns.message.make_query(name, rtype, use_edns=0, payload=4096, want_dnssec=True)
    want = dns.query.tcp(q, "127.0.0.1", port=nsd, timeout=3)
    sigs = [x for x in records(want) if x[2] in (46, 47, 48, 43)]
    if not sigs:
        print("%s %s: NSD gave no DNSSEC records" % (name, rtype)); bad += 1
    for how in ("udp", "tcp", "udp-cached", "tcp-cached"):
        r = (dns.query.tcp if how.startswith("tcp") else dns.query.udp)(
            q, "127.0.0.1", port=emb, timeout=3)
        if r.rcode() != want.rcode() or not r.ednsflags & dns.flags.DO:
            print("%s %s %s: rcode %s, DO echoed %s" % (name, rtype, how, r.rcode(),
                                                         bool(r.ednsflags & dns.flags.DO))); bad += 1
        if r.flags & dns.flags.TC:
            print("%s %s %s: truncated" % (name, rtype, how)); bad += 1
        got = records(r)
        if got != records(want):
            print("%s %s %s: missing %s, extra %s" % (name, rtype, how, sorted(records(want) - got),
                                                      sorted(got - records(want)))); bad += 1
print("%d questions compared 4 ways, %d differences" % (len(cases), bad))
sys.exit(1 if bad else 0)
PY
}
check "DO forwarded: RRSIG, NSEC, DNSKEY and DS byte for byte as NSD's (UDP, TCP, cache)" intact

# RFC 4035 3.1.1: a DO client whose UDP buffer cannot hold an answer and the NSEC that proves it
# (a wildcard's: no closer name exists) gets TC and retries over TCP; it never gets the answer
# with its authority section left out, which it could not validate. The name's long labels
# make answer and authority (about 560 octets) too big for 512, the answer alone not.
proofs_or_tc() {
	"$PY" - "$E1" <<'PY'
import sys
import dns.flags, dns.message, dns.query, dns.rdatatype
port = int(sys.argv[1])
name = "x" * 63 + "." + "y" * 40 + ".wild.signed.example."
q = dns.message.make_query(name, "A", use_edns=0, payload=512, want_dnssec=True)
whole = dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
if not any(r.rdtype == dns.rdatatype.NSEC for r in whole.authority) or not whole.answer:
    print("over TCP no answer with an NSEC proof:", whole); sys.exit(1)
whole.additional = []
with_proofs = len(whole.to_wire())
whole.authority = []
answer_only = len(whole.to_wire())
print("answer alone %d octets, with its proofs %d, buffer 512" % (answer_only, with_proofs))
if not answer_only <= 512 < with_proofs:
    print("the sizes do not test the rule"); sys.exit(1)
r = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
tc = bool(r.flags & dns.flags.TC)
nsec = any(x.rdtype == dns.rdatatype.NSEC for x in r.authority)
print("UDP: TC %s, %d answer RRsets, NSEC in authority %s" % (tc, len(r.answer), nsec))
if r.answer and not nsec:
    print("the answer without its proofs:", r); sys.exit(1)
sys.exit(0 if tc else 1)
PY
}
check "a DO client whose UDP buffer cannot hold a wildcard answer's NSEC proof gets TC" proofs_or_tc

no_do_no_sigs() {
	local out
	ask "$E1" www.signed.example A udp do >/dev/null # The DO answer cached first (intact's too).
	out=$(ask "$E1" www.signed.example A udp)
	grep -q "an www.signed.example. A 192.0.2.100" <<<"$out" || { echo "$out"; return 1; }
	! grep -q RRSIG <<<"$out" || { echo "RRSIG without DO: $out"; return 1; }
}
check "without DO the answer has no signatures (DO is part of the cache key)" no_do_no_sigs

# The validator answers SERVFAIL for bogus.signed.example unless CD is set: first the CD
# answer goes into embargo's cache, then a query without CD must not be answered from it.
cd_key() {
	local out
	out=$(ask "$E3" bogus.signed.example A udp do cd)
	grep -q "^NOERROR" <<<"$out" && grep -q "192.0.2.98" <<<"$out" || { echo "CD: $out"; return 1; }
	out=$(ask "$E3" bogus.signed.example A udp do)
	grep -q "^SERVFAIL" <<<"$out" || { echo "without CD after CD: $out"; return 1; }
	out=$(ask "$E3" bogus.signed.example A udp do cd)
	grep -q "^NOERROR" <<<"$out" || { echo "CD again: $out"; return 1; }
	out=$(ask "$E3" bogus.signed.example A tcp)
	grep -q "^SERVFAIL" <<<"$out" || { echo "TCP without CD: $out"; return 1; }
}
check "CD is forwarded and part of the cache key (bogus data only with CD)" cd_key

# RFC 4035 3.1.6: CD is copied into the answer. NSD does not echo it, so this shows whether
# embargo sets it from the client's query (as it does RD) rather than passing the upstream's.
cd_echo() {
	local out how
	for how in "udp do cd" "tcp cd" "udp do cd"; do # The last one from the cache.
		out=$(ask "$E1" www.signed.example A $how)
		has_flag "$out" cd || { echo "$how: CD not echoed: $out"; return 1; }
	done
	out=$(ask "$E1" nope.signed.example A udp cd)
	has_flag "$out" cd || { echo "NXDOMAIN: CD not echoed: $out"; return 1; }
}
check "the client's CD is echoed in forwarded and cached answers" cd_echo

ad_trusted() {
	local out
	out=$(ask "$VU" www.signed.example A udp do)
	has_flag "$out" ad || { echo "the validator sets no AD: $out"; return 1; }
	out=$(ask "$E2" www.signed.example A udp do)
	has_flag "$out" ad || { echo "DO: no AD: $out"; return 1; }
	out=$(ask "$E2" www.signed.example AAAA udp ad)
	has_flag "$out" ad || { echo "AD: no AD: $out"; return 1; }
	out=$(ask "$E2" www.signed.example A udp)
	no_ad "$out" || { echo "neither DO nor AD: AD or no answer: $out"; return 1; }
	out=$(ask "$E2" www.signed.example AAAA tcp)
	no_ad "$out" || { echo "neither DO nor AD (TCP): AD or no answer: $out"; return 1; }
	out=$(ask "$E2" www.signed.example A tcp ad)
	has_flag "$out" ad || { echo "AD over TCP: no AD: $out"; return 1; }
}
check "--upstream-trust-ad yes: AD reaches clients that set DO or AD, no others" ad_trusted

ad_untrusted() {
	local out how
	for how in "udp do" "udp ad" "tcp do ad" "udp do ad" "udp"; do
		out=$(ask "$E3" www.signed.example A $how)
		grep -q "^NOERROR" <<<"$out" || { echo "$how: $out"; return 1; }
		no_ad "$out" || { echo "$how: AD passed: $out"; return 1; }
	done
}
check "--upstream-trust-ad no (default): AD never passed" ad_untrusted

denied_plain() {
	local out port how
	for port in "$E1" "$E2"; do
		for how in "udp do" "udp do ad" "tcp do ad" "udp do cd"; do
			out=$(ask "$port" denied.signed.example A $how)
			denied_by_embargo "$out" denied.signed.example ||
				{ echo "$how: not denied by embargo: $out"; return 1; }
			no_ad "$out" || { echo "$how: AD on a denied answer: $out"; return 1; }
			! grep -qE "RRSIG|NSEC" <<<"$out" || { echo "$how: DNSSEC records: $out"; return 1; }
		done
	done
}
check "a denied answer has no AD and no RRSIG or NSEC, even with DO" denied_plain

denied_cd() {
	local out how
	# www.denied.signed.example is not in the zone: the upstream's answer is NXDOMAIN too, so
	# only EDE 16 and the policy's SOA show that embargo denied it.
	for how in "udp do cd" "tcp do cd" "udp cd"; do
		out=$(ask "$E2" www.denied.signed.example A $how)
		denied_by_embargo "$out" denied.signed.example ||
			{ echo "$how: not denied by embargo: $out"; return 1; }
		has_flag "$out" cd || { echo "$how: CD not echoed: $out"; return 1; }
	done
}
check "a denied answer to DO+CD echoes CD" denied_cd

finish
