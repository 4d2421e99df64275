/* Answers built by embargo, read back with ldns. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>

#include "ldns_util.h"
#include "resolver/query/answer.h"

TestSuite(answer);

static ldns_pkt *read_back(const uint8_t *wire, int len)
{
	cr_assert_gt(len, 0);
	ldns_pkt *pkt = NULL;
	cr_assert_eq(ldns_wire2pkt(&pkt, wire, (size_t)len), LDNS_STATUS_OK);
	return pkt;
}

/* The EDE option of pkt: its code, and its text copied into text[cap]. -1 if none. */
static int ede_of(const ldns_pkt *pkt, char *text, size_t cap)
{
	ldns_rdf *data = ldns_pkt_edns_data(pkt);
	if (!data)
		return -1;
	const uint8_t *p = ldns_rdf_data(data);
	size_t len = ldns_rdf_size(data);
	for (size_t off = 0; off + 4 <= len;) {
		uint16_t code = (uint16_t)(p[off] << 8 | p[off + 1]);
		uint16_t olen = (uint16_t)(p[off + 2] << 8 | p[off + 3]);
		if (code == 15 && olen >= 2) {
			size_t tl = olen - 2u < cap - 1 ? olen - 2u : cap - 1;
			memcpy(text, p + off + 6, tl);
			text[tl] = '\0';
			return p[off + 4] << 8 | p[off + 5];
		}
		off += 4u + olen;
	}
	return -1;
}

static struct wire_query parse(const uint8_t *wire, size_t len)
{
	struct wire_query q;
	cr_assert_eq(wire_parse_query(wire, len, &q), 0);
	return q;
}

Test(answer, deny_with_reason)
{
	size_t len;
	uint8_t *query = make_query("WWW.Kaspersky.COM.", LDNS_RR_TYPE_A, 2, 0xBEEF, &len);
	struct wire_query q = parse(query, len);
	struct answer_deny d = {.depth = 2, .rule = "kaspersky.com", .reason = "sanctioned vendor",
				.ttl = 60, .serial = 42, .ede_code = 16};
	uint8_t out[1232];
	int n = answer_deny(out, sizeof(out), query, &q, &d);
	ldns_pkt *pkt = read_back(out, n);
	cr_expect_eq(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NXDOMAIN);
	cr_expect_eq(ldns_pkt_id(pkt), 0xBEEF);
	cr_expect(ldns_pkt_qr(pkt));
	cr_expect(ldns_pkt_ra(pkt));
	cr_expect(ldns_pkt_rd(pkt));
	cr_expect_not(ldns_pkt_aa(pkt));
	cr_expect_eq(ldns_pkt_ancount(pkt), 0);
	cr_expect_eq(ldns_pkt_nscount(pkt), 1);
	/* The question is echoed byte for byte, case included. */
	cr_expect_arr_eq(out + 12, query + 12, q.question_end - 12);
	ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(pkt), 0);
	cr_expect_eq(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
	char *owner = ldns_rdf2str(ldns_rr_owner(soa));
	cr_expect_str_eq(owner, "Kaspersky.COM.", "the owner points into the echoed question");
	free(owner);
	cr_expect_eq(ldns_rr_ttl(soa), 60);
	cr_expect_eq(ldns_rdf2native_int32(ldns_rr_rdf(soa, 2)), 42);
	cr_expect_eq(ldns_rdf2native_int32(ldns_rr_rdf(soa, 6)), 60);
	char *mname = ldns_rdf2str(ldns_rr_rdf(soa, 1));
	cr_expect_str_eq(mname, "hostmaster.embargo.invalid.");
	free(mname);
	cr_expect(ldns_pkt_edns(pkt));
	cr_expect(ldns_pkt_edns_do(pkt));
	cr_expect_eq(ldns_pkt_edns_udp_size(pkt), ANSWER_EDNS_UDP_SIZE);
	char text[600];
	cr_expect_eq(ede_of(pkt, text, sizeof(text)), 16);
	cr_expect_str_eq(text, "sanctioned vendor");
	ldns_pkt_free(pkt);
	free(query);
}

Test(answer, deny_without_reason_names_the_rule)
{
	size_t len;
	uint8_t *query = make_query("a.b.example.org.", LDNS_RR_TYPE_TXT, 1, 1, &len);
	struct wire_query q = parse(query, len);
	struct answer_deny d = {.depth = 2, .rule = "example.org", .ttl = 30, .ede_code = 17};
	uint8_t out[1232];
	ldns_pkt *pkt = read_back(out, answer_deny(out, sizeof(out), query, &q, &d));
	char text[600];
	cr_expect_eq(ede_of(pkt, text, sizeof(text)), 17);
	cr_expect_str_eq(text, "denied by policy: example.org");
	cr_expect_not(ldns_pkt_edns_do(pkt));
	ldns_pkt_free(pkt);
	free(query);
}

Test(answer, deny_without_edns_has_no_opt)
{
	size_t len;
	uint8_t *query = make_query("kaspersky.com.", LDNS_RR_TYPE_A, 0, 1, &len);
	struct wire_query q = parse(query, len);
	struct answer_deny d = {.depth = 2, .rule = "kaspersky.com", .reason = "r", .ttl = 60,
				.ede_code = 16};
	uint8_t out[512];
	int n = answer_deny(out, sizeof(out), query, &q, &d);
	ldns_pkt *pkt = read_back(out, n);
	cr_expect_eq(ldns_pkt_arcount(pkt), 0);
	cr_expect_not(ldns_pkt_edns(pkt));
	ldns_pkt_free(pkt);
	free(query);
}

Test(answer, long_reason_is_cut_to_fit)
{
	size_t len;
	uint8_t *query = make_query("x.example.", LDNS_RR_TYPE_A, 1, 1, &len);
	struct wire_query q = parse(query, len);
	char reason[1000];
	memset(reason, 'r', sizeof(reason) - 1);
	reason[999] = '\0';
	struct answer_deny d = {.depth = 1, .rule = "example", .reason = reason, .ttl = 60,
				.ede_code = 16};
	uint8_t out[512];
	int n = answer_deny(out, sizeof(out), query, &q, &d);
	cr_assert_leq(n, 512);
	ldns_pkt *pkt = read_back(out, n);
	char text[1000];
	cr_expect_eq(ede_of(pkt, text, sizeof(text)), 16);
	cr_expect_gt(strlen(text), 300);
	ldns_pkt_free(pkt);
	free(query);
}

Test(answer, deny_for_a_cname_target_names_the_target_rule)
{
	size_t len;
	uint8_t *query = make_query("www.innocent.example.", LDNS_RR_TYPE_A, 1, 9, &len);
	struct wire_query q = parse(query, len);
	struct name target;
	name_from_text(&target, "dl.kaspersky.com", 16);
	struct answer_deny d = {.depth = 2, .owner = &target, .rule = "kaspersky.com",
				.ttl = 60, .ede_code = 16};
	uint8_t out[1232];
	ldns_pkt *pkt = read_back(out, answer_deny(out, sizeof(out), query, &q, &d));
	char *owner = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_authority(pkt), 0)));
	cr_expect_str_eq(owner, "kaspersky.com.");
	free(owner);
	ldns_pkt_free(pkt);
	free(query);
}

Test(answer, formerr_without_a_question)
{
	uint8_t query[] = {0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a'};
	struct wire_query q;
	cr_assert_eq(wire_parse_query(query, sizeof(query), &q), -EBADMSG);
	uint8_t out[512];
	ldns_pkt *pkt = read_back(out, answer_error(out, sizeof(out), query, &q, WIRE_RCODE_FORMERR,
						    -1, NULL));
	cr_expect_eq(ldns_pkt_get_rcode(pkt), LDNS_RCODE_FORMERR);
	cr_expect_eq(ldns_pkt_id(pkt), 0xABCD);
	cr_expect_eq(ldns_pkt_qdcount(pkt), 0);
	ldns_pkt_free(pkt);
}

/* RFC 1035 4.1.1: the opcode is copied into the answer; a NOTIMP to an UPDATE is an UPDATE's, with
 * its question. */
Test(answer, notimp_copies_the_opcode_and_question)
{
	size_t len;
	uint8_t *query = make_query("example.com.", LDNS_RR_TYPE_SOA, 0, 7, &len);
	query[2] = (uint8_t)((query[2] & 0x87) | 5 << 3); /* UPDATE */
	struct wire_query q;
	cr_assert_eq(wire_parse_query(query, len, &q), -ENOTSUP);
	uint8_t out[512];
	int n = answer_error(out, sizeof(out), query, &q, WIRE_RCODE_NOTIMP, -1, NULL);
	ldns_pkt *pkt = read_back(out, n);
	cr_expect_eq(ldns_pkt_get_opcode(pkt), LDNS_PACKET_UPDATE);
	cr_expect_eq(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOTIMPL);
	cr_expect_eq(ldns_pkt_qdcount(pkt), 1);
	cr_expect_eq(ldns_pkt_id(pkt), 7);
	ldns_pkt_free(pkt);
	free(query);
}

Test(answer, servfail_with_ede_and_badvers)
{
	size_t len;
	uint8_t *query = make_query("example.com.", LDNS_RR_TYPE_A, 1, 5, &len);
	struct wire_query q = parse(query, len);
	uint8_t out[512];
	ldns_pkt *pkt = read_back(out, answer_error(out, sizeof(out), query, &q,
						    WIRE_RCODE_SERVFAIL, 22, "no upstream"));
	cr_expect_eq(ldns_pkt_get_rcode(pkt), LDNS_RCODE_SERVFAIL);
	char text[100];
	cr_expect_eq(ede_of(pkt, text, sizeof(text)), 22);
	cr_expect_str_eq(text, "no upstream");
	ldns_pkt_free(pkt);

	int n = answer_error(out, sizeof(out), query, &q, WIRE_RCODE_BADVERS, -1, NULL);
	pkt = read_back(out, n);
	cr_expect_eq(ldns_pkt_get_rcode(pkt), 0, "the low bits of BADVERS are 0");
	cr_expect_eq(ldns_pkt_edns_extended_rcode(pkt), 1, "the high bits travel in the OPT");
	ldns_pkt_free(pkt);
	free(query);
}

Test(answer, chaos_txt)
{
	size_t len;
	ldns_pkt *qp = NULL;
	cr_assert_eq(ldns_pkt_query_new_frm_str(&qp, "policy.embargo.", LDNS_RR_TYPE_TXT,
						LDNS_RR_CLASS_CH, LDNS_RD), LDNS_STATUS_OK);
	uint8_t *query = NULL;
	cr_assert_eq(ldns_pkt2wire(&query, qp, &len), LDNS_STATUS_OK);
	ldns_pkt_free(qp);
	struct wire_query q = parse(query, len);
	uint8_t out[512];
	ldns_pkt *pkt = read_back(out, answer_txt(out, sizeof(out), query, &q, "version=1 deny=2"));
	cr_expect_eq(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NOERROR);
	cr_expect(ldns_pkt_aa(pkt));
	ldns_rr *txt = ldns_rr_list_rr(ldns_pkt_answer(pkt), 0);
	cr_expect_eq(ldns_rr_get_class(txt), LDNS_RR_CLASS_CH);
	char *text = ldns_rdf2str(ldns_rr_rdf(txt, 0));
	cr_expect_str_eq(text, "\"version=1 deny=2\"");
	free(text);
	ldns_pkt_free(pkt);
	free(query);
}

/* Each deny mode: its rcode and sections, the EDE kept, never AA or a signature. */
Test(answer, deny_modes)
{
	static const uint8_t sink4[4] = {0, 0, 0, 0}, sink6[16] = {0};
	static const uint8_t alt4[4] = {192, 0, 2, 99};
	struct {
		enum answer_deny_mode mode;
		ldns_rr_type type;
		ldns_pkt_rcode rcode;
		size_t an, ns;
		const char *rdata;
	} cases[] = {
		{ANSWER_DENY_NXDOMAIN, LDNS_RR_TYPE_A, LDNS_RCODE_NXDOMAIN, 0, 1, NULL},
		{ANSWER_DENY_NODATA, LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, 0, 1, NULL},
		{ANSWER_DENY_NODATA, LDNS_RR_TYPE_MX, LDNS_RCODE_NOERROR, 0, 1, NULL},
		{ANSWER_DENY_REFUSED, LDNS_RR_TYPE_A, LDNS_RCODE_REFUSED, 0, 0, NULL},
		{ANSWER_DENY_SINKHOLE, LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, 1, 0, "0.0.0.0"},
		{ANSWER_DENY_SINKHOLE, LDNS_RR_TYPE_AAAA, LDNS_RCODE_NOERROR, 1, 0, "::"},
		{ANSWER_DENY_SINKHOLE, LDNS_RR_TYPE_TXT, LDNS_RCODE_NOERROR, 0, 1, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		size_t len;
		uint8_t *query = make_query("dl.Kaspersky.com.", cases[i].type, 2, 7, &len);
		struct wire_query q = parse(query, len);
		struct answer_deny d = {.mode = cases[i].mode, .sinkhole4 = sink4, .sinkhole6 = sink6,
					.depth = 2, .rule = "kaspersky.com", .reason = "sanctioned",
					.ttl = 60, .ede_code = 16};
		uint8_t out[1232];
		ldns_pkt *pkt = read_back(out, answer_deny(out, sizeof(out), query, &q, &d));
		cr_expect_eq(ldns_pkt_get_rcode(pkt), cases[i].rcode, "case %zu", i);
		cr_expect_eq(ldns_pkt_ancount(pkt), cases[i].an, "case %zu", i);
		cr_expect_eq(ldns_pkt_nscount(pkt), cases[i].ns, "case %zu", i);
		cr_expect_not(ldns_pkt_aa(pkt), "case %zu", i);
		cr_expect_not(ldns_pkt_ad(pkt), "case %zu", i);
		char text[64];
		cr_expect_eq(ede_of(pkt, text, sizeof(text)), 16, "case %zu", i);
		cr_expect_str_eq(text, "sanctioned", "case %zu", i);
		if (cases[i].rdata) {
			ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(pkt), 0);
			char *addr = ldns_rdf2str(ldns_rr_rdf(rr, 0));
			cr_expect_str_eq(addr, cases[i].rdata, "case %zu", i);
			cr_expect_eq(ldns_rr_ttl(rr), 60);
			free(addr);
		}
		ldns_pkt_free(pkt);
		free(query);
	}
	/* Another sinkhole address. */
	size_t len;
	uint8_t *query = make_query("dl.kaspersky.com.", LDNS_RR_TYPE_A, 0, 7, &len);
	struct wire_query q = parse(query, len);
	struct answer_deny d = {.mode = ANSWER_DENY_SINKHOLE, .sinkhole4 = alt4, .sinkhole6 = sink6,
				.depth = 2, .rule = "kaspersky.com", .ttl = 60, .ede_code = 16};
	uint8_t out[512];
	ldns_pkt *pkt = read_back(out, answer_deny(out, sizeof(out), query, &q, &d));
	char *addr = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(pkt), 0), 0));
	cr_expect_str_eq(addr, "192.0.2.99");
	cr_expect_eq(ldns_pkt_arcount(pkt), 0, "no OPT for a client without EDNS");
	free(addr);
	ldns_pkt_free(pkt);
	free(query);
}
