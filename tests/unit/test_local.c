/* Local zones and local data: what is answered here (rcode, records, AA), what goes on to the
 * upstreams, and what --no-local-zone hands back; answers read back with ldns. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>

#include "ldns_util.h"
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
	local_t *l = local_new(o, err, sizeof(err));
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
