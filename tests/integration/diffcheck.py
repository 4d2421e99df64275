#!/usr/bin/python3
"""Send the corpus (corpus.py's JSON lines on stdin) to embargo and to Unbound, compare.

Usage: diffcheck.py EMBARGO-PORT UNBOUND-PORT < corpus
Each query goes to embargo, then the same bytes to Unbound, in corpus order (so repeats are
answered from both caches). Compared: the rcode, the header flags QR AA TC RD RA AD CD, the
question as echoed (letter case included), OPT presence, EDNS version and the DO echo, the EDE
codes, and every section's RRsets as sets (owner names without case, TTLs ignored, rdata in
canonical form). Queries for names embargo's policy denies are not compared: embargo's answer is
checked on its own. A difference is allowed only by a rule in ALLOWED below, and for the corpus
of the default seed (DIFF_SEED unset or 20240620) each rule must allow exactly the number of
queries PINNED says: a change in what embargo or Unbound answers that moves queries from one
rule to another, or from "agree" to a rule, fails too. Prints one line per disagreement (up to
20, a few of each kind), a tally, then "# N agree, M allowed differences, K disagree"; exits 1 if
K > 0 or a pinned count differs.
"""
import json
import os
import socket
import struct
import sys
import time

try:
    import dns.edns
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdatatype
except ImportError:
    sys.exit("Bail out! dnspython missing for /usr/bin/python3 (apt-get install -y python3-dnspython)")

TIMEOUT = 1.0
FLAGS = [("qr", 0x8000), ("aa", 0x0400), ("tc", 0x0200), ("rd", 0x0100), ("ra", 0x0080),
         ("ad", 0x0020), ("cd", 0x0010)]
SOA_T, RRSIG_T, NSEC_T, CNAME_T = 6, 46, 47, 5


def build(e, qid):
    """The query's wire form, built by hand: any class, any type, the name's case kept."""
    flags = (0x0100 if e["rd"] else 0) | (0x0010 if e["cd"] else 0) | (0x0020 if e["ad"] else 0)
    name = b"".join(bytes([len(l)]) + l.encode() for l in e["qname"].rstrip(".").split(".")) + b"\0"
    arcount = 0 if e["edns"] is None else 1
    wire = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, arcount) + name
    wire += struct.pack("!HH", e["qtype"], e["qclass"])
    if arcount:
        wire += b"\0" + struct.pack("!HHIH", 41, e["edns"], 0x8000 if e["do"] else 0, 0)
    return wire


SPENT = {}


def exchange(wire, port, tcp):
    t0 = time.monotonic()
    try:
        return exchange1(wire, port, tcp)
    finally:
        SPENT.setdefault(port, []).append((time.monotonic() - t0, wire))


def exchange1(wire, port, tcp):
    try:
        if tcp:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
                s.sendall(struct.pack("!H", len(wire)) + wire)
                buf = b""
                while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                    chunk = s.recv(65535)
                    if not chunk:
                        return None
                    buf += chunk
                return buf[2:2 + struct.unpack("!H", buf[:2])[0]]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(TIMEOUT)
            s.connect(("127.0.0.1", port))
            s.send(wire)
            while True:
                reply = s.recv(65535)
                if reply[:2] == wire[:2]:
                    return reply
    except OSError:
        return None


def rrsets(section):
    out = {}
    for rrset in section:
        key = (rrset.name.to_text().lower(), rrset.rdclass, rrset.rdtype, rrset.covers)
        out.setdefault(key, set()).update(rd.to_digestable() for rd in rrset)
    return out


def normal(wire, query):
    """What is compared of one answer: a dict, or a string for no answer or an unparsable one."""
    if wire is None:
        return "no answer"
    try:
        m = dns.message.from_wire(wire, ignore_trailing=True, question_only=False)
    except Exception as exc:  # A malformed answer is an outcome to compare, too.
        return "unparsable: %s" % type(exc).__name__
    flags = struct.unpack("!H", wire[2:4])[0]
    qend = len(query) - (11 if query[11] else 0)  # The question, without the OPT record.
    n = {
        "rcode": dns.rcode.to_text(m.rcode()),
        "flags": " ".join(f for f, bit in FLAGS if flags & bit),
        "question": wire[12:qend] == query[12:qend] and "echoed" or wire[12:qend].hex(),
        "opt": None if m.edns < 0 else "v%d%s" % (m.edns, " do" if m.ednsflags & 0x8000 else ""),
        "ede": sorted(int(o.code) for o in m.options if o.otype == dns.edns.EDE) if m.edns >= 0 else [],
        "ede_text": [o.text for o in m.options if o.otype == dns.edns.EDE] if m.edns >= 0 else [],
        "answer": rrsets(m.answer),
        "authority": rrsets(m.authority),
        "additional": rrsets(m.additional),
    }
    return n


def short(n):
    if isinstance(n, str):
        return n
    def sec(s):
        return ",".join(sorted("%s/%s%s" % (k[0], dns.rdatatype.to_text(k[2]),
                                            "" if len(v) == 1 else "x%d" % len(v))
                               for k, v in s.items())) or "-"
    return "%s [%s] opt=%s ede=%s q=%s an=%s ns=%s ar=%s" % (
        n["rcode"], n["flags"], n["opt"], n["ede"], n["question"], sec(n["answer"]),
        sec(n["authority"]), sec(n["additional"]))


def diff_fields(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return ["answer"] if a != b else []
    return [k for k in ("rcode", "flags", "question", "opt", "ede", "answer", "authority",
                        "additional") if a[k] != b[k]]


def describe(e):
    bits = [e["qname"], str(dns.rdatatype.to_text(e["qtype"]))]
    if e["qclass"] != 1:
        bits.append("CLASS%d" % e["qclass"])
    bits.append("edns=%s" % e["edns"])
    bits += [f for f in ("do", "cd", "ad", "tcp") if e[f]]
    if not e["rd"]:
        bits.append("rd=0")
    return "#%d %s" % (e["n"], " ".join(bits))


NS_T, A_T, AAAA_T, TXT_T, ANY_T = 2, 1, 28, 16, 255
CH_CLASS = 3


def is_answer(n):
    return isinstance(n, dict)


def only(fields, allowed):
    return set(fields) <= set(allowed)


def extra(big, small):
    """The RRsets of big beyond small, or None if small is not contained in big."""
    if any(k not in big or not v <= big[k] for k, v in small.items()):
        return None
    return {k: v for k, v in big.items() if k not in small or v != small[k]}


def at_or_above(owner, qname):
    q = qname.lower().rstrip(".") + "."
    return owner == "." or q == owner or q.endswith("." + owner)


def trimmed_referral_data(e, emb, unb, fields):
    """embargo's authority has the zone's NS RRset (the query's or a CNAME target's) (and with DO its RRSIG) and its additional
    section those name servers' addresses, which Unbound left out; all else is the same."""
    if not only(fields, ("authority", "additional")) or emb["rcode"] != "NOERROR" or not emb["answer"]:
        return False
    auth, add = extra(emb["authority"], unb["authority"]), extra(emb["additional"], unb["additional"])
    if auth is None or add is None:
        return False
    targets = set()
    names = [e["qname"]] + [k[0] for k in emb["answer"]]  # With the CNAME targets' zones.
    for (owner, _, rtype, covers), rdatas in auth.items():
        if not any(at_or_above(owner, n) for n in names) or NS_T not in (rtype, covers):
            return False
        if rtype == NS_T:
            targets |= {dns.name.from_wire(rd, 0)[0].to_text().lower() for rd in rdatas}
    return all(owner in targets and (rtype in (A_T, AAAA_T) or covers in (A_T, AAAA_T))
               for owner, _, rtype, covers in add)


def any_subset(e, emb, unb, fields):
    """ANY: embargo relays the upstream's answer (NSD gives one RRset, RFC 8482), Unbound adds
    whatever RRsets of the name its cache holds."""
    if e["qtype"] != ANY_T or not only(fields, ("answer", "authority", "additional")):
        return False
    if emb["rcode"] != "NOERROR" or not emb["answer"]:
        return False
    return extra(unb["answer"], emb["answer"]) is not None


def truncated_content(e, emb, unb, fields):
    """Both truncated: embargo's TC answer is empty, Unbound's holds what fitted."""
    return ("tc" in emb["flags"].split() and emb["flags"] == unb["flags"] and
            only(fields, ("answer", "authority", "additional")) and
            not (emb["answer"] or emb["authority"] or emb["additional"]))


CHAOS_IDENTITY = {"version.bind.", "version.server.", "id.server.", "hostname.bind."}


def chaos_identity(e, emb, unb, fields):
    return (e["qclass"] == CH_CLASS and e["qname"].lower() in CHAOS_IDENTITY and
            emb["rcode"] == "REFUSED" and not emb["answer"] and unb["rcode"] == "NOERROR")


def chaos_status(e, emb, unb, fields):
    return (e["qclass"] == CH_CLASS and e["qname"].lower() == "policy.embargo." and
            e["qtype"] == TXT_T and emb["rcode"] == "NOERROR" and unb["rcode"] == "REFUSED")


BYPASS_ZONES = ("resolver.arpa.", "use-application-dns.net.", "mask.icloud.com.",
                "mask-h2.icloud.com.")


def bypass_zone(e, emb, unb, fields):
    """embargo answers these itself (AA, the zone's SOA); Unbound forwards them."""
    name = e["qname"].lower()
    zone = next((z for z in BYPASS_ZONES if name == z or name.endswith("." + z)), None)
    return (zone is not None and "aa" in emb["flags"].split() and
            emb["rcode"] in ("NXDOMAIN", "NOERROR") and
            list(emb["authority"]) == [(zone, 1, SOA_T, 0)])


def servfail_ede(e, emb, unb, fields):
    return (fields == ["ede"] and emb["rcode"] == unb["rcode"] == "SERVFAIL" and
            emb["ede"] == [22] and unb["ede"] == [])


UPSTREAM_PAYLOAD = 1232  # The EDNS size embargo (resolver/upstream/upstream_state.h) and Unbound ask upstream with.


def udp_limit(e):
    """The largest UDP answer the query allows: its EDNS payload size (below 512 counts as 512,
    RFC 6891 6.2.5), 512 without EDNS; None over TCP."""
    if e["tcp"]:
        return None
    return 512 if e["edns"] is None else max(512, e["edns"])


def small_buffer_fit(e, emb, unb, fields):
    """Both fit a positive answer into a small UDP buffer without TC by leaving records out:
    embargo leaves out the additional section (a pointer there may lead into the authority
    section), Unbound the authority section (it never sends the NS RRset of a positive answer).
    Only over UDP, and only for a buffer smaller than the 1232 octets both ask their upstream
    for (so the upstream's whole answer may not fit it): 512 or no EDNS in this corpus."""
    limit = udp_limit(e)
    return (limit is not None and limit < UPSTREAM_PAYLOAD and
            only(fields, ("authority", "additional")) and emb["rcode"] == "NOERROR" and
            emb["answer"] and "tc" not in emb["flags"].split() and emb["flags"] == unb["flags"]
            and not emb["additional"] and not unb["authority"])


def chain_left_open(e, emb, unb, fields):
    """embargo relays the upstream's NOERROR answer whose CNAME chain ends at a target the
    answer does not hold; Unbound chases the target and fails (SERVFAIL)."""
    if emb["rcode"] != "NOERROR" or unb["rcode"] != "SERVFAIL":
        return False
    cnames = {rd for k, v in emb["answer"].items() if k[2] == CNAME_T for rd in v}
    owners = {k[0] for k in emb["answer"]}
    return bool(cnames) and any(dns.name.from_wire(rd, 0)[0].to_text().lower() not in owners
                                for rd in cnames)


# Deliberate design differences. Each rule: (name, reason, match(entry, embargo, unbound, fields))
# where fields lists what differs; a rule must say exactly which queries and which fields.
ALLOWED = [
    ("NS and glue kept in a positive answer", "Unbound as a forwarder drops the zone's NS "
     "RRset from the authority section of positive answers (and the name servers' addresses "
     "from the additional section); embargo relays the upstream's sections. Lowest-ranked "
     "data (RFC 2181 5.4.1) that no stub acts on; the answer section is identical",
     trimmed_referral_data),
    ("ANY answered with the upstream's subset", "RFC 8482: any non-empty subset of the RRsets "
     "is a correct ANY answer; Unbound adds the RRsets its cache holds for the name, embargo "
     "relays the upstream's answer (NSD gives one RRset)", any_subset),
    ("empty truncated answer", "both set TC with the same rcode and flags; a client discards "
     "a truncated answer and asks again over TCP (RFC 1035 4.2.1, RFC 7766 5); embargo's TC "
     "answers carry no records, Unbound's what fitted", truncated_content),
    ("CH identity names refused", "embargo discloses no version or host name (as Unbound with "
     "hide-version and hide-identity); Unbound's defaults answer them", chaos_identity),
    ("CH TXT policy.embargo", "embargo's status name (README); Unbound has none", chaos_status),
    ("bypass-protection local zones", "resolver.arpa, use-application-dns.net, mask.icloud.com "
     "and mask-h2.icloud.com are answered by embargo itself (README, --no-local-zone); Unbound "
     "forwards them", bypass_zone),
    ("EDE 22 on an upstream failure", "embargo documents SERVFAIL with EDE 22 when no upstream "
     "answers usefully (RFC 8914: 'or they potentially refused to reply'); Unbound 1.17 sends "
     "no EDE for a forwarder's REFUSED", servfail_ede),
    ("a small buffer fitted differently", "RFC 2181 9: records beyond the answer section may "
     "be left out without TC; embargo drops the additional section, Unbound never sends the "
     "authority section of a positive answer; the answer sections are the same",
     small_buffer_fit),
    ("CNAME chain left open by the upstream", "embargo forwards to recursive resolvers and "
     "relays their answer, chasing no CNAME itself (a recursive upstream completes the chain); "
     "here the upstream is authoritative and the target's zone is served by nobody, which "
     "Unbound's forwarder chases into a SERVFAIL", chain_left_open),
]


# How many queries each rule allows in the corpus of the default seed (diff.sh's 2,000 queries).
PINNED_SEED = "20240620"
PINNED = {
    "ANY answered with the upstream's subset": 58,
    "CH TXT policy.embargo": 11,
    "CH identity names refused": 26,
    "CNAME chain left open by the upstream": 13,
    "EDE 22 on an upstream failure": 13,
    "NS and glue kept in a positive answer": 710,
    "a small buffer fitted differently": 1,
    "bypass-protection local zones": 32,
    "empty truncated answer": 21,
}


def cause(e, emb, unb, fields):
    """A short label for a disagreement, for the tally (never used to allow anything)."""
    if not is_answer(emb):
        return "no answer from embargo (%s)" % emb
    if not is_answer(unb):
        return "no answer from Unbound (%s)" % unb
    ef, uf = emb["flags"].split(), unb["flags"].split()
    if "cd" in uf and "cd" not in ef:
        emb2 = dict(emb, flags=" ".join(f for f, _ in FLAGS if f in ef or f == "cd"))
        rest = diff_fields(emb2, unb)
        if not rest or any(r[2](e, emb2, unb, rest) for r in ALLOWED):
            return "CD not echoed (only difference)"
        return "CD not echoed, and: " + cause(e, emb2, unb, rest)
    if not e["rd"] and emb["rcode"] == "REFUSED" and "aa" in uf:
        return "RD=0: embargo refuses, Unbound answers its local zone"
    if not e["rd"] and fields == ["ede"] and emb["rcode"] == unb["rcode"] == "REFUSED":
        return "RD=0 REFUSED: EDE %s vs Unbound's %s" % (emb["ede"], unb["ede"])
    cnames = {rd for k, v in emb["answer"].items() if k[2] == CNAME_T for rd in v}
    owners = {k[0] for k in emb["answer"]}
    if (emb["rcode"] == "NOERROR" and unb["rcode"] == "SERVFAIL" and
            any(dns.name.from_wire(rd, 0)[0].to_text().lower() not in owners for rd in cnames)):
        return "CNAME chain ends outside the upstream's answer: relayed, Unbound chases it"
    if "tc" in ef and "tc" not in uf:
        return "TC where Unbound fits the answer by dropping optional records"
    return "differ in " + ",".join(fields)


def check_deny(e, n):
    """embargo's own answer for a denied name; returns the problems found."""
    if isinstance(n, str):
        return [n]
    bad = []
    if n["rcode"] != "NXDOMAIN":
        bad.append("rcode " + n["rcode"])
    want = "qr" + (" rd" if e["rd"] else "") + " ra" + (" cd" if e["cd"] else "")
    if n["flags"] != want:
        bad.append("flags [%s], want [%s]" % (n["flags"], want))
    if n["question"] != "echoed":
        bad.append("question not echoed")
    soa = [k for k in n["authority"] if k[2] == SOA_T]
    if len(soa) != 1 or not any(rd.startswith(b"\x07embargo\x07invalid\x00")
                                for rd in n["authority"][soa[0]]):
        bad.append("no embargo.invalid SOA in authority")
    for s in ("answer", "authority", "additional"):
        if any(k[2] in (RRSIG_T, NSEC_T) for k in n[s]):
            bad.append("RRSIG/NSEC in " + s)
    if e["edns"] is not None:
        if n["opt"] is None:
            bad.append("no OPT")
        if n["ede"] != [16] or n["ede_text"] != [e["deny"]]:
            bad.append("EDE %s %s, want 16 %r" % (n["ede"], n["ede_text"], e["deny"]))
    elif n["opt"] is not None:
        bad.append("OPT without EDNS in the query")
    return bad


def main():
    eport, uport = int(sys.argv[1]), int(sys.argv[2])
    agree, allowed, disagree = 0, {}, []
    for line in sys.stdin:
        e = json.loads(line)
        wire = build(e, 1 + e["n"] % 65000)
        emb = normal(exchange(wire, eport, e["tcp"]), wire)
        if e["deny"] is not None:
            bad = check_deny(e, emb)
            if bad:
                disagree.append("%s: denied name: %s\n#     embargo: %s"
                                % (describe(e), "; ".join(bad), short(emb)))
            else:
                agree += 1
            continue
        unb = normal(exchange(wire, uport, e["tcp"]), wire)
        fields = diff_fields(emb, unb)
        if not fields:
            agree += 1
            continue
        rule = None
        if is_answer(emb) and is_answer(unb):
            rule = next((r for r in ALLOWED if r[2](e, emb, unb, fields)), None)
        if rule:
            allowed[rule[0]] = allowed.get(rule[0], 0) + 1
            continue
        disagree.append("%s: %s\n#     embargo: %s\n#     unbound: %s"
                        % (describe(e), cause(e, emb, unb, fields), short(emb), short(unb)))
    # The first disagreements of each kind, 20 in all.
    shown, per_kind = 0, {}
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    for d in disagree:
        kind = d.split(": ", 1)[1].split("\n")[0].split(": ")[0]
        per_kind[kind] = per_kind.get(kind, 0) + 1
        if shown < limit and per_kind[kind] <= max(2, limit // 8):
            print("# " + d)
            shown += 1
    for port, who in ((eport, "embargo"), (uport, "unbound")):
        spent = sorted(SPENT.get(port, []), key=lambda x: x[0], reverse=True)
        print("# %s: %.1f s in all" % (who, sum(t for t, _ in spent)))
        if os.environ.get("DIFF_SLOW"):
            for t, w in spent[:10]:
                m = dns.message.from_wire(w)
                print("#   %.2f s %s" % (t, m.question[0]))
    kinds = {}
    for d in disagree:
        kind = d.split(": ", 1)[1].split("\n")[0]
        kind = kind.split(": ")[0] if kind.startswith("denied name") else kind
        kinds[kind] = kinds.get(kind, 0) + 1
    for kind, count in sorted(kinds.items(), key=lambda x: -x[1]):
        print("# disagree: %s: %d" % (kind, count))
    for name, count in sorted(allowed.items()):
        print("# allowed: %s: %d" % (name, count))
    print("# %d agree, %d allowed differences, %d disagree"
          % (agree, sum(allowed.values()), len(disagree)))
    moved = []
    if os.environ.get("DIFF_SEED", PINNED_SEED) == PINNED_SEED:
        moved = ["%s: %d, pinned %d" % (r[0], allowed.get(r[0], 0), PINNED.get(r[0], 0))
                 for r in ALLOWED if allowed.get(r[0], 0) != PINNED.get(r[0], 0)]
        for m in moved:
            print("# allowed count changed (seed %s): %s" % (PINNED_SEED, m))
    return 1 if disagree or moved else 0


if __name__ == "__main__":
    sys.exit(main())
