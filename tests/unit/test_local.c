/* Local zones and local data: what is answered here (rcode, records, AA), what goes on to the
 * upstreams, and what --no-local-zone hands back; DDR's SVCB records for embargo's own encrypted
 * endpoints (RFC 9460/9461/9462). Answers read back with ldns. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>

#include "ldns_util.h"
#include "resolver/base/addr.h"
#include "resolver/query/local.h"
#include "resolver/base/options.h"
#include "resolver/base/wire.h"

TestSuite(local);

/* The local answer to name/type under l: its rcode and answer count, or -1 when it goes on. */
static int ask(const local_t *l, const char *name, ldns_rr_type type, int *ancount, int *aa)
{
	size_t qlen;
	uint8_t *query = make_query(name, type, 0, 7, &qlen);
	struct wire_query q;
	cr_assert_eq(wire_parse_query(query, qlen, &q), 0, "%s", name);
	uint8_t out[1024];
	int n = local_answer(l, query, &q, out, sizeof(out));
	free(query);
	if (n == 0)
		return -1;
	cr_assert_gt(n, 0, "%s: %d", name, n);
	ldns_pkt *pkt = NULL;
	cr_assert_eq(ldns_wire2pkt(&pkt, out, (size_t)n), LDNS_STATUS_OK, "%s", name);
	int rcode = ldns_pkt_get_rcode(pkt);
	*ancount = ldns_pkt_ancount(pkt);
	*aa = ldns_pkt_aa(pkt);
	ldns_pkt_free(pkt);
	return rcode;
}

static local_t *make(struct options *o)
{
	char err[256];
	local_t *l = local_new(o, NULL, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	return l;
}

Test(local, default_zones_as_unbound)
{
	struct options o = {0};
	local_t *l = make(&o);
	const struct {
		const char *name;
		ldns_rr_type type;
		int rcode, ancount;
	} cases[] = {
		{"localhost.", LDNS_RR_TYPE_A, 0, 1},
		{"a.b.LocalHost.", LDNS_RR_TYPE_AAAA, 0, 1},
		{"localhost.", LDNS_RR_TYPE_MX, 0, 0},
		{"localhost.", LDNS_RR_TYPE_ANY, 0, 4},
		{"1.0.0.127.in-addr.arpa.", LDNS_RR_TYPE_PTR, 0, 1},
		{"2.0.0.127.in-addr.arpa.", LDNS_RR_TYPE_PTR, 3, 0},
		{"127.in-addr.arpa.", LDNS_RR_TYPE_NS, 0, 1},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
		 LDNS_RR_TYPE_PTR, 0, 1},
		{"x.test.", LDNS_RR_TYPE_A, 3, 0},
		{"test.", LDNS_RR_TYPE_SOA, 0, 1},
		{"test.", LDNS_RR_TYPE_A, 0, 0},
		{"a.b.onion.", LDNS_RR_TYPE_A, 3, 0},
		{"x.invalid.", LDNS_RR_TYPE_A, 3, 0},
		{"printer.home.arpa.", LDNS_RR_TYPE_A, 3, 0},
		{"5.1.168.192.in-addr.arpa.", LDNS_RR_TYPE_PTR, 3, 0},
		{"5.1.16.172.in-addr.arpa.", LDNS_RR_TYPE_PTR, 3, 0},
		{"5.1.31.172.in-addr.arpa.", LDNS_RR_TYPE_PTR, 3, 0},
		{"1.1.64.100.in-addr.arpa.", LDNS_RR_TYPE_PTR, 3, 0},
		{"1.1.127.100.in-addr.arpa.", LDNS_RR_TYPE_PTR, 3, 0},
		{"1.2.3.10.in-addr.arpa.", LDNS_RR_TYPE_PTR, 3, 0},
		{"x.d.f.ip6.arpa.", LDNS_RR_TYPE_PTR, 3, 0},
		{"x.b.e.f.ip6.arpa.", LDNS_RR_TYPE_PTR, 3, 0},
		{"_dns.resolver.arpa.", LDNS_RR_TYPE_SVCB, 0, 0},
		{"mask.icloud.com.", LDNS_RR_TYPE_A, 3, 0},
		{"use-application-dns.net.", LDNS_RR_TYPE_A, 3, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int an, aa;
		int rc = ask(l, cases[i].name, cases[i].type, &an, &aa);
		cr_expect_eq(rc, cases[i].rcode, "%s: rcode %d", cases[i].name, rc);
		cr_expect_eq(an, cases[i].ancount, "%s: %d answers", cases[i].name, an);
		cr_expect(aa, "%s: AA", cases[i].name);
	}
	/* Neighbours of the zones go on to the upstreams. */
	const char *forwarded[] = {"www.example.com.", "localhost.example.", "1.2.3.4.in-addr.arpa.",
				   "1.15.172.in-addr.arpa.", "1.32.172.in-addr.arpa.",
				   "1.128.100.in-addr.arpa.", "1.63.100.in-addr.arpa.",
				   "x.c.f.ip6.arpa.", "icloud.com.", "x.mask-h3.icloud.com.",
				   "arpa.", "in-addr.arpa.", "com.", "testing.", "."};
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++) {
		int an, aa;
		cr_expect_eq(ask(l, forwarded[i], LDNS_RR_TYPE_A, &an, &aa), -1, "%s", forwarded[i]);
	}
	local_free(l);
	local_free(NULL);
}

Test(local, handed_back_at_or_below_a_name)
{
	struct options o = {0};
	cr_expect_eq(local_zone_off(o.local_off, "test."), 1);
	cr_expect_eq(local_zone_off(o.local_off, "ip6.arpa"), 8);
	cr_expect_eq(local_zone_off(o.local_off, "example.com"), -EINVAL);
	cr_expect_eq(local_zone_off(o.local_off, "bad name"), -EINVAL);
	local_t *l = make(&o);
	int an, aa;
	cr_expect_eq(ask(l, "www.test.", LDNS_RR_TYPE_A, &an, &aa), -1);
	cr_expect_eq(ask(l, "x.d.f.ip6.arpa.", LDNS_RR_TYPE_PTR, &an, &aa), -1);
	cr_expect_eq(ask(l, "x.onion.", LDNS_RR_TYPE_A, &an, &aa), 3, "others stay");
	local_free(l);
}

Test(local, local_data_answers_its_name_only)
{
	struct options o = {0};
	const char *rrs[] = {"printer.lan A 192.168.1.5", "printer.lan A 192.168.1.6",
			     "printer.lan 60 IN TXT \"room 2\"", "alias.lan CNAME printer.lan",
			     "printer.home.arpa AAAA fd00::5"};
	for (size_t i = 0; i < 5; i++)
		o.local_data[o.nlocal_data++] = rrs[i];
	local_t *l = make(&o);
	int an, aa;
	cr_expect_eq(ask(l, "PRINTER.lan.", LDNS_RR_TYPE_A, &an, &aa), 0);
	cr_expect_eq(an, 2, "both A records");
	cr_expect_eq(ask(l, "printer.lan.", LDNS_RR_TYPE_TXT, &an, &aa), 0);
	cr_expect_eq(an, 1);
	cr_expect_eq(ask(l, "printer.lan.", LDNS_RR_TYPE_MX, &an, &aa), 0);
	cr_expect_eq(an, 0, "other types NODATA");
	cr_expect_eq(ask(l, "alias.lan.", LDNS_RR_TYPE_A, &an, &aa), 0);
	cr_expect_eq(an, 1, "the CNAME stands in");
	cr_expect_eq(ask(l, "x.printer.lan.", LDNS_RR_TYPE_A, &an, &aa), -1, "below: forwarded");
	cr_expect_eq(ask(l, "printer.home.arpa.", LDNS_RR_TYPE_AAAA, &an, &aa), 0);
	cr_expect_eq(an, 1, "local data inside a local zone");
	cr_expect_eq(ask(l, "scanner.home.arpa.", LDNS_RR_TYPE_AAAA, &an, &aa), 3);
	/* Too big for the buffer: -ENOSPC, never a write past it. */
	size_t qlen;
	uint8_t *query = make_query("printer.lan.", LDNS_RR_TYPE_A, 0, 7, &qlen);
	struct wire_query q;
	cr_assert_eq(wire_parse_query(query, qlen, &q), 0);
	uint8_t out[64];
	for (size_t cap = 0; cap < 61; cap++)
		cr_expect_eq(local_answer(l, query, &q, out, cap), -ENOSPC, "cap %zu", cap);
	free(query);
	local_free(l);

	char err[256];
	cr_expect_eq(local_zone_check_data("x.lan A 1.2.3", err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "x.lan A 1.2.3"), "%s", err);
	cr_expect_eq(local_zone_check_data("x.lan CH TXT hi", err, sizeof(err)), -EINVAL);
	cr_expect_eq(local_zone_check_data("x.lan RRSIG A 13 2 60 20300101000000 20200101000000 1 lan. AAAA", err, sizeof(err)), -EINVAL);
	cr_expect_eq(local_zone_check_data("x.lan 30 IN MX 10 mail.lan", err, sizeof(err)), 0, "%s", err);
}

/* ---- DDR ------------------------------------------------------------------------------------ */

/* The answer to name/type under l, parsed (owned: ldns_pkt_free); NULL when it goes on. */
static ldns_pkt *answer(const local_t *l, const char *name, ldns_rr_type type)
{
	size_t qlen;
	uint8_t *query = make_query(name, type, 1, 9, &qlen);
	struct wire_query q;
	cr_assert_eq(wire_parse_query(query, qlen, &q), 0, "%s", name);
	uint8_t out[2048];
	int n = local_answer(l, query, &q, out, sizeof(out));
	free(query);
	if (n == 0)
		return NULL;
	cr_assert_gt(n, 0, "%s: %d", name, n);
	ldns_pkt *pkt = NULL;
	cr_assert_eq(ldns_wire2pkt(&pkt, out, (size_t)n), LDNS_STATUS_OK, "%s", name);
	return pkt;
}

/* One SVCB record as text: "PRIORITY TARGET PARAMS" with ldns's presentation of each field. */
static void svcb_text(const ldns_rr *rr, char *buf, size_t cap)
{
	cr_assert_eq(ldns_rr_get_type(rr), LDNS_RR_TYPE_SVCB);
	cr_assert_eq(ldns_rr_rd_count(rr), 3, "priority, target and one SvcParams field");
	char *target = ldns_rdf2str(ldns_rr_rdf(rr, 1));
	char *params = ldns_rdf2str(ldns_rr_rdf(rr, 2));
	cr_assert(target && params);
	snprintf(buf, cap, "%u %s %s", (unsigned)ldns_rdf2native_int16(ldns_rr_rdf(rr, 0)), target,
		 params);
	free(target);
	free(params);
}

static struct local_ddr_endpoint endpoint(const char *alpn, const char *addr, uint16_t port,
					  const char *dohpath)
{
	struct local_ddr_endpoint e = {.alpn = alpn, .dohpath = dohpath};
	cr_assert_eq(options_parse_addr(addr, port, &e.addr), 0, "%s", addr);
	return e;
}

/* DoT on 192.0.2.1:853 and [2001:db8::1]:8853, DoH on the IPv4 wildcard, port 443. */
static struct local_ddr three(const char *target)
{
	struct local_ddr d = {.target = target};
	d.endpoint[d.nendpoint++] = endpoint("dot", "192.0.2.1", 853, NULL);
	d.endpoint[d.nendpoint++] = endpoint("dot", "[2001:db8::1]:8853", 853, NULL);
	d.endpoint[d.nendpoint++] = endpoint("h2", "0.0.0.0", 443, "/dns-query{?dns}");
	return d;
}

static const char *const THREE[] = {
	"1 dns.example. alpn=dot port=853 ipv4hint=192.0.2.1",
	"2 dns.example. alpn=dot port=8853 ipv6hint=2001:db8::1",
	"3 dns.example. alpn=h2 port=443 dohpath=/dns-query{?dns}",
};

/* The SVCB answer at name: one record per endpoint, in order, AA, owner the name asked. */
static void expect_three(const local_t *l, const char *name, const char *owner)
{
	ldns_pkt *pkt = answer(l, name, LDNS_RR_TYPE_SVCB);
	cr_assert_not_null(pkt, "%s: answered here", name);
	cr_expect_eq(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
	cr_expect(ldns_pkt_aa(pkt));
	ldns_rr_list *an = ldns_pkt_answer(pkt);
	cr_assert_eq(ldns_rr_list_rr_count(an), 3, "%s", name);
	for (size_t i = 0; i < 3; i++) {
		ldns_rr *rr = ldns_rr_list_rr(an, i);
		char text[512], *o = ldns_rdf2str(ldns_rr_owner(rr));
		svcb_text(rr, text, sizeof(text));
		cr_expect_str_eq(text, THREE[i], "%s record %zu: %s", name, i, text);
		cr_expect_str_eq(o, owner);
		cr_expect_eq(ldns_rr_ttl(rr), LOCAL_DDR_TTL);
		free(o);
	}
	ldns_pkt_free(pkt);
}

Test(local, ddr_designates_the_encrypted_endpoints)
{
	struct options o = {0};
	struct local_ddr d = three("dns.example");
	char err[256];
	local_t *l = local_new(&o, &d, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	expect_three(l, "_dns.resolver.arpa.", "_dns.resolver.arpa.");
	expect_three(l, "_DNS.Resolver.ARPA.", "_DNS.Resolver.ARPA."); /* The client's case. */

	/* The SvcParams on the wire: keys 1, 3, 4 / 6, 7 in increasing order (RFC 9460 2.2). */
	ldns_pkt *pkt = answer(l, "_dns.resolver.arpa.", LDNS_RR_TYPE_SVCB);
	const uint16_t keys[3][4] = {{1, 3, 4, 0}, {1, 3, 6, 0}, {1, 3, 7, 0}};
	for (size_t i = 0; i < 3; i++) {
		const ldns_rdf *p = ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(pkt), i), 2);
		const uint8_t *w = ldns_rdf_data(p);
		size_t at = 0, k = 0;
		while (at + 4 <= ldns_rdf_size(p)) {
			cr_assert_lt(k, 3);
			cr_expect_eq((w[at] << 8) | w[at + 1], keys[i][k], "record %zu key %zu", i, k);
			at += 4 + (size_t)((w[at + 2] << 8) | w[at + 3]);
			k++;
		}
		cr_expect_eq(at, ldns_rdf_size(p));
		cr_expect_eq(k, 3, "record %zu: three params", i);
	}
	ldns_pkt_free(pkt);

	/* Other types at _dns.resolver.arpa and other names of the zone stay NODATA. */
	int an, aa;
	const char *nodata[][2] = {{"_dns.resolver.arpa.", "AAAA"}, {"_dns.resolver.arpa.", "HTTPS"},
				   {"resolver.arpa.", "SVCB"}, {"x._dns.resolver.arpa.", "SVCB"},
				   {"_dns.x.resolver.arpa.", "SVCB"}};
	for (size_t i = 0; i < sizeof(nodata) / sizeof(nodata[0]); i++) {
		ldns_rr_type t = ldns_get_rr_type_by_name(nodata[i][1]);
		cr_expect_eq(ask(l, nodata[i][0], t, &an, &aa), 0, "%s %s", nodata[i][0], nodata[i][1]);
		cr_expect_eq(an, 0, "%s %s: NODATA", nodata[i][0], nodata[i][1]);
	}
	/* Without --resolver-name, _dns.NAME is the upstreams'. */
	cr_expect_eq(ask(l, "_dns.dns.example.", LDNS_RR_TYPE_SVCB, &an, &aa), -1);
	local_free(l);
}

Test(local, ddr_without_endpoints_is_nodata)
{
	struct options o = {0};
	struct local_ddr none = {.target = "dns.example", .answer_target = true};
	char err[256];
	local_t *with[2] = {local_new(&o, NULL, err, sizeof(err)),
			    local_new(&o, &none, err, sizeof(err))};
	for (int i = 0; i < 2; i++) {
		cr_assert_not_null(with[i], "%s", err);
		int an, aa;
		cr_expect_eq(ask(with[i], "_dns.resolver.arpa.", LDNS_RR_TYPE_SVCB, &an, &aa), 0);
		cr_expect_eq(an, 0, "NODATA, as with no encrypted listener");
		cr_expect_eq(ask(with[i], "_dns.dns.example.", LDNS_RR_TYPE_SVCB, &an, &aa), -1);
		local_free(with[i]);
	}
}

Test(local, ddr_answers_at_the_resolver_name)
{
	struct options o = {0};
	struct local_ddr d = three("dns.example.");
	d.answer_target = true;
	char err[256];
	local_t *l = local_new(&o, &d, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	expect_three(l, "_dns.dns.example.", "_dns.dns.example.");
	expect_three(l, "_dns.resolver.arpa.", "_dns.resolver.arpa.");
	int an, aa;
	cr_expect_eq(ask(l, "_dns.dns.example.", LDNS_RR_TYPE_A, &an, &aa), 0, "other types...");
	cr_expect_eq(an, 0, "...NODATA, never forwarded");
	cr_expect(aa);
	cr_expect_eq(ask(l, "x._dns.dns.example.", LDNS_RR_TYPE_SVCB, &an, &aa), -1, "below it");
	cr_expect_eq(ask(l, "dns.example.", LDNS_RR_TYPE_SVCB, &an, &aa), -1);
	local_free(l);
}

Test(local, ddr_target_and_hand_back)
{
	/* No name: TargetName "." (the owner name, RFC 9461). */
	struct options o = {0};
	struct local_ddr d = {.target = NULL, .answer_target = true};
	d.endpoint[d.nendpoint++] = endpoint("dot", "[::]:853", 853, NULL);
	char err[256];
	local_t *l = local_new(&o, &d, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	ldns_pkt *pkt = answer(l, "_dns.resolver.arpa.", LDNS_RR_TYPE_SVCB);
	cr_assert_not_null(pkt);
	cr_assert_eq(ldns_rr_list_rr_count(ldns_pkt_answer(pkt)), 1);
	char text[512];
	svcb_text(ldns_rr_list_rr(ldns_pkt_answer(pkt), 0), text, sizeof(text));
	cr_expect_str_eq(text, "1 . alpn=dot port=853", "the IPv6 wildcard: no hint: %s", text);
	ldns_pkt_free(pkt);
	local_free(l);

	/* --no-local-zone resolver.arpa hands the zone back, DDR's name with it. */
	cr_assert_eq(local_zone_off(o.local_off, "resolver.arpa"), 1);
	d.target = "dns.example";
	l = local_new(&o, &d, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	int an, aa;
	cr_expect_eq(ask(l, "_dns.resolver.arpa.", LDNS_RR_TYPE_SVCB, &an, &aa), -1);
	cr_expect_eq(ask(l, "_dns.dns.example.", LDNS_RR_TYPE_SVCB, &an, &aa), 0);
	cr_expect_eq(an, 1, "the resolver's own name stays answered");
	local_free(l);

	/* A description SVCB cannot carry is refused with a reason, never served. */
	struct options fresh = {0};
	d.target = "bad name";
	cr_expect_null(local_new(&fresh, &d, err, sizeof(err)));
	cr_expect_not_null(strstr(err, "bad name"), "%s", err);
	d.target = "dns.example";
	d.endpoint[0].alpn = NULL;
	cr_expect_null(local_new(&fresh, &d, err, sizeof(err)));
}
