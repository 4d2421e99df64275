#!/usr/bin/env python3
"""The query corpus of the differential test (diff.sh), deterministic for a given --seed.

Every base question (name, type, class) from the zones in zone.diff and zone.signed, the
special-use zones of RFC 6761/6303/7686/8375 and embargo's policy is asked once plainly (RD,
EDNS 1232, lower case, UDP), then in random variants until there are at least --count queries:
with and without EDNS, buffer sizes from 512 to 65535, DO, CD, AD, RD=0, 0x20-like mixed case,
TCP. Later repeats of a question are answered from the resolvers' caches, so cached answers are
compared too. Prints one JSON object per line:
  {"n", "qname", "qtype", "qclass", "rd", "cd", "ad", "edns" (payload, or null), "do", "tcp",
   "deny" (the reason embargo must give, or null: compare with Unbound)}
Needs no dnspython (types and classes are numbers).
"""
import argparse
import json
import random

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV = 1, 2, 5, 6, 12, 15, 16, 28, 33
DNAME, DS, RRSIG, NSEC, DNSKEY, HTTPS, CAA, ANY, UNKNOWN = 39, 43, 46, 47, 48, 65, 257, 255, 65280
IN, CH, HS, NONE, CLASS_ANY, CLASS42 = 1, 3, 4, 254, 255, 42

# The policy diff.sh loads into Redis (deny, allow, reasons): names under a denied name, or
# whose answer leads there by CNAME, are checked against embargo's deny answer, not Unbound.
DENY = {"denied.diff.example": "diff test: denied", "denied.signed.example": None}
ALLOW = ["ok.denied.diff.example"]
CNAME_TO = {"todenied.diff.example": "denied.diff.example",
            "todenied2.diff.example": "c-todenied.diff.example",
            "c-todenied.diff.example": "www.denied.diff.example"}


def denied(name, follow=True):
    """The reason embargo gives for NAME (itself or, when follow, its CNAME chain: a question
    without RD is never forwarded, so its chain is never seen), '' for none, or None."""
    name = name.lower().rstrip(".")
    for _ in range(8):
        if not any(name == a or name.endswith("." + a) for a in ALLOW):
            for rule, reason in DENY.items():
                if name == rule or name.endswith("." + rule):
                    return reason if reason else "denied by policy: " + rule
        if not follow or name not in CNAME_TO:
            return None
        name = CNAME_TO[name]
    return None


D, S = "diff.example", "signed.example"
BASE = [
    # diff.example: positive, NODATA, NXDOMAIN, every type the zone has.
    (D, [SOA, NS, A, MX, TXT, ANY, AAAA, DNSKEY, DS, CAA]),
    ("www." + D, [A, AAAA, TXT, MX, ANY, HTTPS, SRV, PTR, CNAME]),
    ("Mixed." + D, [A, AAAA]),
    ("multi." + D, [A, AAAA, ANY]),
    ("mail." + D, [A, AAAA]),
    ("mx." + D, [MX, A]),
    ("txt." + D, [TXT]),
    ("mid." + D, [TXT, ANY]),       # 512 < answer < 1232 bytes
    ("big." + D, [TXT, A]),         # 1232 < answer < 4096
    ("huge." + D, [TXT]),           # > 4096
    ("_sip._tcp." + D, [SRV]),
    ("caa." + D, [CAA]),
    ("svc." + D, [HTTPS, A, AAAA]),
    ("ptr." + D, [PTR]),
    ("odd." + D, [UNKNOWN, A]),
    ("c1." + D, [A, AAAA, TXT, CNAME]),
    ("c3." + D, [A]),
    ("cbig." + D, [TXT]),
    ("cnx." + D, [A]),
    ("cout." + D, [A, AAAA]),
    ("cgone." + D, [A]),
    ("old." + D, [DNAME, A]),
    ("www.old." + D, [A, AAAA]),
    ("mail.old." + D, [MX]),
    ("nothere.old." + D, [A]),
    ("foo.wild." + D, [A, TXT, AAAA]),
    ("a.b.wild." + D, [A]),
    ("wild." + D, [A]),
    ("deep." + D, [A]),
    ("nonterminal.deep." + D, [A]),
    ("empty.nonterminal.deep." + D, [A]),
    ("nope." + D, [A, AAAA, TXT, MX]),
    ("a.b.nope." + D, [A]),
    ("ok.denied." + D, [A]),
    # Denied by policy (checked on embargo alone).
    ("denied." + D, [A, TXT, AAAA]),
    ("www.denied." + D, [A]),
    ("x.y.denied." + D, [A]),
    ("todenied." + D, [A]),
    ("todenied2." + D, [A]),
    ("denied." + S, [A]),
    # signed.example: DNSSEC data with DO.
    (S, [SOA, NS, DNSKEY, DS, MX, ANY, NSEC, RRSIG]),
    ("www." + S, [A, AAAA, TXT, RRSIG, NSEC]),
    ("mail." + S, [A]),
    ("txt." + S, [TXT]),
    ("alias." + S, [A, CNAME]),
    ("bogus." + S, [A]),
    ("x.wild." + S, [A, AAAA]),
    ("nope." + S, [A, DS]),
    ("sub." + S, [DS]),
    # Nobody serves these: the upstream refuses.
    ("www.unserved.example", [A]),
    ("example", [SOA]),
    # Special-use names: Unbound's default local zones (RFC 6761, 6303, 7686, 8375, 6598).
    ("localhost", [A, AAAA, SOA, NS, TXT]),
    ("foo.localhost", [A, AAAA]),
    ("x.onion", [A]),
    ("onion", [SOA]),
    ("x.invalid", [A]),
    ("invalid", [SOA]),
    ("x.test", [A]),
    ("home.arpa", [SOA, NS]),
    ("printer.home.arpa", [A]),
    ("10.in-addr.arpa", [SOA, NS]),
    ("1.0.0.10.in-addr.arpa", [PTR]),
    ("1.1.168.192.in-addr.arpa", [PTR]),
    ("1.0.16.172.in-addr.arpa", [PTR]),
    ("1.0.0.127.in-addr.arpa", [PTR]),
    ("127.in-addr.arpa", [SOA]),
    ("1.0.64.100.in-addr.arpa", [PTR]),
    ("64.100.in-addr.arpa", [SOA]),
    ("1.0.254.169.in-addr.arpa", [PTR]),
    ("1.2.0.192.in-addr.arpa", [PTR]),
    ("0.in-addr.arpa", [SOA]),
    ("255.255.255.255.in-addr.arpa", [PTR]),
    ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", [PTR]),
    ("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", [PTR]),
    ("1.0.0.0.d.f.ip6.arpa", [PTR]),
    ("d.f.ip6.arpa", [SOA]),
    ("1.0.8.e.f.ip6.arpa", [PTR]),
    ("8.b.d.0.1.0.0.2.ip6.arpa", [SOA]),
    # embargo's own local zones (bypass protection; Unbound has none of these).
    ("_dns.resolver.arpa", [64]),
    ("use-application-dns.net", [A]),
    ("mask.icloud.com", [A]),
]
CHAOS = [("version.bind", TXT), ("id.server", TXT), ("hostname.bind", TXT),
         ("version.server", TXT), ("policy.embargo", TXT), ("www.diff.example", A),
         ("authors.bind", TXT)]
ODD_CLASS = [("www." + D, A, HS), ("www." + D, A, NONE), ("www." + D, A, CLASS_ANY),
             ("www." + D, A, CLASS42), ("www." + D, TXT, CLASS42)]


def questions():
    out = []
    for name, types in BASE:
        out += [(name, t, IN) for t in types]
    out += [(n, t, CH) for n, t in CHAOS]
    out += ODD_CLASS
    return out


def mixed_case(rng, name):
    return "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name)


def variant(rng, n, q, plain):
    name, qtype, qclass = q
    entry = {"n": n, "qname": name + ".", "qtype": qtype, "qclass": qclass, "rd": 1, "cd": 0,
             "ad": 0, "edns": 1232, "do": 0, "tcp": 0}
    if not plain:
        entry["edns"] = rng.choice([None, None, 512, 1232, 1232, 1400, 4096, 65535])
        entry["do"] = int(entry["edns"] is not None and rng.random() < 0.4)
        entry["cd"] = int(rng.random() < 0.25)
        entry["ad"] = int(rng.random() < 0.15)
        entry["rd"] = int(rng.random() >= 0.05)
        entry["tcp"] = int(rng.random() < 0.15)
        case = rng.random()
        if case < 0.35:
            entry["qname"] = mixed_case(rng, entry["qname"])
        elif case < 0.45:
            entry["qname"] = entry["qname"].upper()
    entry["deny"] = denied(name, entry.get("rd", 1)) if qclass == IN else None
    return entry


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=20240620)
    p.add_argument("--count", type=int, default=2000)
    args = p.parse_args()
    rng = random.Random(args.seed)
    qs = questions()
    corpus = [variant(rng, i, q, True) for i, q in enumerate(qs)]
    # Signed names are asked with DO more often, big answers in more sizes.
    # Other classes only now and then: a resolver that does not answer them costs a timeout.
    weights = [0.2 if q[2] not in (IN, CH) else
               3 if q[0].endswith(S) or q[0].startswith(("big", "huge", "mid", "cbig")) else 1
               for q in qs]
    while len(corpus) < args.count:
        q = rng.choices(qs, weights)[0]
        corpus.append(variant(rng, len(corpus), q, False))
    for e in corpus:
        print(json.dumps(e, sort_keys=True))


if __name__ == "__main__":
    main()
