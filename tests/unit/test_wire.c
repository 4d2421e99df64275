/* The query parser and record iterator, held to ldns's reading of the same packets. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>

#include "ldns_util.h"
#include "resolver/base/wire.h"

TestSuite(wire);

Test(wire, parses_a_plain_query)
{
	size_t len;
	uint8_t *pkt = make_query("WwW.Example.COM.", LDNS_RR_TYPE_AAAA, 0, 0x1234, &len);
	struct wire_query q;
	cr_assert_eq(wire_parse_query(pkt, len, &q), 0);
	cr_expect_eq(q.id, 0x1234);
	cr_expect_eq(q.qtype, LDNS_RR_TYPE_AAAA);
	cr_expect_eq(q.qclass, LDNS_RR_CLASS_IN);
	cr_expect(q.flags & WIRE_FLAG_RD);
	cr_expect_not(q.has_edns);
	cr_expect_eq(q.edns_udp_size, 512);
	cr_expect_eq(q.qname_len, 17);
	cr_expect_eq(q.question_end, 12 + 17 + 4);
	struct name want;
	name_from_text(&want, "www.example.com", 15);
	cr_expect_arr_eq(q.qname.key, want.key, want.keylen);
	free(pkt);
}

Test(wire, parses_edns_and_do)
{
	size_t len;
	uint8_t *pkt = make_query("example.com.", LDNS_RR_TYPE_A, 2, 7, &len);
	struct wire_query q;
	cr_assert_eq(wire_parse_query(pkt, len, &q), 0);
	cr_expect(q.has_edns);
	cr_expect(q.edns_do);
	cr_expect_eq(q.edns_udp_size, 1232);
	cr_expect_eq(q.edns_version, 0);
	free(pkt);
}

Test(wire, root_query)
{
	size_t len;
	uint8_t *pkt = make_query(".", LDNS_RR_TYPE_NS, 0, 1, &len);
	struct wire_query q;
	cr_assert_eq(wire_parse_query(pkt, len, &q), 0);
	cr_expect_eq(q.qname.nlabels, 0);
	cr_expect_eq(q.qname_len, 1);
	free(pkt);
}

Test(wire, unreadable_headers_are_dropped)
{
	uint8_t pkt[64] = {0};
	struct wire_query q;
	cr_expect_eq(wire_parse_query(pkt, 11, &q), -EINVAL);
	cr_expect_eq(wire_parse_query(pkt, 0, &q), -EINVAL);
	size_t len;
	uint8_t *r = make_query("example.com.", LDNS_RR_TYPE_A, 0, 1, &len);
	r[2] |= 0x80; /* QR: a response must never be answered. */
	cr_expect_eq(wire_parse_query(r, len, &q), -EINVAL);
	free(r);
}

Test(wire, bad_questions_are_formerr)
{
	size_t len;
	uint8_t *pkt = make_query("example.com.", LDNS_RR_TYPE_A, 1, 1, &len);
	struct wire_query q;
	/* Cut inside the name, inside the type, and before the OPT ends. */
	cr_expect_eq(wire_parse_query(pkt, 16, &q), -EBADMSG);
	cr_expect_eq(q.question_end, 0);
	cr_expect_eq(q.id, 1);
	cr_expect_eq(wire_parse_query(pkt, 12 + 13 + 2, &q), -EBADMSG);
	cr_expect_eq(wire_parse_query(pkt, len - 1, &q), -EBADMSG);
	/* QDCOUNT 0 and 2. */
	pkt[5] = 0;
	cr_expect_eq(wire_parse_query(pkt, len, &q), -EBADMSG);
	pkt[5] = 2;
	cr_expect_eq(wire_parse_query(pkt, len, &q), -EBADMSG);
	pkt[5] = 1;
	/* A compression pointer as the question name. */
	uint8_t ptr[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1};
	cr_expect_eq(wire_parse_query(ptr, sizeof(ptr), &q), -EBADMSG);
	free(pkt);
}

Test(wire, opcode_other_than_query_is_notimp)
{
	size_t len;
	uint8_t *pkt = make_query("example.com.", LDNS_RR_TYPE_A, 0, 1, &len);
	pkt[2] |= 2 << 3; /* STATUS */
	struct wire_query q;
	cr_expect_eq(wire_parse_query(pkt, len, &q), -ENOTSUP);
	cr_expect_gt(q.question_end, 0, "the question is read all the same");
	free(pkt);

	/* A NOTIFY with EDNS: question and OPT read, so the NOTIMP can echo them. */
	pkt = make_query("Example.com.", LDNS_RR_TYPE_SOA, 1, 2, &len);
	pkt[2] = (uint8_t)((pkt[2] & 0x87) | 4 << 3);
	cr_expect_eq(wire_parse_query(pkt, len, &q), -ENOTSUP);
	cr_expect_eq(q.question_end, 12 + 13 + 4);
	cr_expect_eq(q.qtype, LDNS_RR_TYPE_SOA);
	cr_expect(q.has_edns);
	/* Without a readable question: still NOTIMP, with no question. */
	pkt[5] = 0;
	cr_expect_eq(wire_parse_query(pkt, len, &q), -ENOTSUP);
	cr_expect_eq(q.question_end, 0);
	free(pkt);
}

Test(wire, two_opt_records_are_formerr)
{
	size_t len;
	uint8_t *pkt = make_query("example.com.", LDNS_RR_TYPE_A, 1, 1, &len);
	uint8_t two[600];
	memcpy(two, pkt, len);
	memcpy(two + len, pkt + len - 11, 11);
	two[11] = 2;
	struct wire_query q;
	cr_expect_eq(wire_parse_query(two, len + 11, &q), -EBADMSG);
	free(pkt);
}

Test(wire, iterates_compressed_records)
{
	const char *rrs[] = {"a|www.example.com. 300 IN CNAME web.example.com.",
			     "a|web.example.com. 60 IN A 192.0.2.1",
			     "n|example.com. 3600 IN NS ns.example.com.",
			     "x|ns.example.com. 3600 IN A 192.0.2.53"};
	size_t len;
	uint8_t *pkt = make_reply("www.example.com.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, rrs, 4, &len);
	struct wire_rr_iter it;
	struct wire_rr rr;
	cr_assert_eq(wire_rr_begin(&it, pkt, len), 0);
	const uint16_t types[] = {LDNS_RR_TYPE_CNAME, LDNS_RR_TYPE_A, LDNS_RR_TYPE_NS, LDNS_RR_TYPE_A};
	const uint32_t ttls[] = {300, 60, 3600, 3600};
	const uint8_t sections[] = {1, 1, 2, 3};
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(wire_rr_next(&it, &rr), 1);
		cr_expect_eq(rr.type, types[i]);
		cr_expect_eq(rr.ttl, ttls[i]);
		cr_expect_eq(rr.section, sections[i]);
		cr_expect_eq(wire_get32(pkt + rr.ttl_off), ttls[i]);
	}
	cr_expect_eq(wire_rr_next(&it, &rr), 0);
	/* Any truncation is an error, never a read past the end. */
	for (size_t cut = 12; cut < len; cut++) {
		int rc = wire_rr_begin(&it, pkt, cut);
		while (rc == 0 && (rc = wire_rr_next(&it, &rr)) > 0)
			rc = 0;
		cr_expect_lt(rc, 0, "cut at %zu", cut);
	}
	free(pkt);
}

/* Random corruption of valid queries: whatever our parser accepts, ldns must read the same way. */
Test(wire, agrees_with_ldns_on_mutated_queries, .timeout = 60)
{
	unsigned seed = 7;
	const char *names[] = {"example.com.", "a.b.c.d.e.f.g.", "xn--bcher-kva.example.", "."};
	int accepted = 0;
	for (int i = 0; i < 20000; i++) {
		size_t len;
		uint8_t *pkt = make_query(names[i % 4], LDNS_RR_TYPE_A, i % 3, (uint16_t)i, &len);
		int flips = 1 + rand_r(&seed) % 3;
		for (int f = 0; f < flips; f++)
			pkt[rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
		size_t cut = (rand_r(&seed) % 4 == 0) ? (size_t)rand_r(&seed) % (len + 1) : len;
		struct wire_query q;
		int rc = wire_parse_query(pkt, cut, &q);
		if (rc == 0) {
			accepted++;
			ldns_pkt *lp = NULL;
			cr_assert_eq(ldns_wire2pkt(&lp, pkt, cut), LDNS_STATUS_OK, "iteration %d", i);
			ldns_rr *question = ldns_rr_list_rr(ldns_pkt_question(lp), 0);
			cr_assert_not_null(question);
			cr_expect_eq(ldns_rr_get_type(question), q.qtype);
			cr_expect_eq(ldns_rr_get_class(question), q.qclass);
			cr_expect_eq(ldns_pkt_id(lp), q.id);
			cr_expect_eq(ldns_pkt_edns(lp) ? 1 : 0, q.has_edns ? 1 : 0, "iteration %d", i);
			ldns_rdf *owner = ldns_rr_owner(question);
			ldns_dname2canonical(owner);
			char *text = ldns_rdf2str(owner);
			struct name n;
			size_t tl = strlen(text);
			/* ldns escapes odd octets; compare only plain names. */
			if (!strpbrk(text, "\\") && name_from_text(&n, text, tl) == 0) {
				cr_expect_eq(n.keylen, q.qname.keylen, "%s", text);
				cr_expect_arr_eq(n.key, q.qname.key, n.keylen, "%s", text);
			}
			free(text);
			ldns_pkt_free(lp);
		}
		free(pkt);
	}
	cr_expect_gt(accepted, 1000, "mutations should often leave a valid query");
}

Test(wire, removes_cookie_options_only)
{
	size_t len;
	uint8_t *q = make_query("example.com.", LDNS_RR_TYPE_A, 1, 1, &len);
	uint8_t pkt[600];
	memcpy(pkt, q, len);
	const uint8_t opts[] = {0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,     /* COOKIE */
				0, 3, 0, 2, 'n', 's',                    /* NSID */
				0, 10, 0, 8, 9, 9, 9, 9, 9, 9, 9, 9};    /* COOKIE */
	memcpy(pkt + len, opts, sizeof(opts));
	wire_put16(pkt + len - 2, sizeof(opts)); /* The OPT ends the packet: its RDLENGTH. */
	size_t n = wire_remove_edns_option(pkt, len + sizeof(opts), WIRE_EDNS_COOKIE);
	cr_assert_eq(n, len + 6);
	cr_expect_eq(wire_get16(pkt + len - 2), 6);
	cr_expect_arr_eq(pkt + len, opts + 12, 6);
	struct wire_query wq;
	cr_expect_eq(wire_parse_query(pkt, n, &wq), 0);
	cr_expect(wq.has_edns);
	/* Nothing to remove, and malformed options: unchanged. */
	cr_expect_eq(wire_remove_edns_option(pkt, n, WIRE_EDNS_COOKIE), n);
	wire_put16(pkt + len - 2, 6);
	pkt[len + 3] = 200;
	cr_expect_eq(wire_remove_edns_option(pkt, n, 3), n);
	free(q);
}

Test(wire, edns_options_found_and_opt_removed)
{
	size_t len;
	uint8_t *q = make_query("www.example.", LDNS_RR_TYPE_A, 1, 7, &len);
	uint8_t buf[512];
	memcpy(buf, q, len);
	free(q);
	static const uint8_t opts[] = {0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 8, 0, 0};
	memcpy(buf + len, opts, sizeof(opts));
	wire_put16(buf + len - 2, sizeof(opts));
	len += sizeof(opts);
	size_t off, olen;
	cr_assert_eq(wire_find_edns_option(buf, len, WIRE_EDNS_COOKIE, &off, &olen), 1);
	cr_expect_eq(olen, 8);
	cr_expect_eq(buf[off], 1);
	cr_assert_eq(wire_find_edns_option(buf, len, WIRE_EDNS_ECS, &off, &olen), 1);
	cr_expect_eq(olen, 0);
	cr_expect_eq(wire_find_edns_option(buf, len, 12, &off, &olen), 0);
	/* An option running past the OPT record: malformed. */
	wire_put16(buf + len - 2, 9);
	cr_expect_eq(wire_find_edns_option(buf, len, 12, &off, &olen), -EBADMSG);
	wire_put16(buf + len - 2, 0);
	size_t n = wire_remove_opt(buf, len);
	cr_expect_eq(n, len - sizeof(opts) - 11);
	cr_expect_eq(wire_get16(buf + 10), 0);
	struct wire_query wq;
	cr_expect_eq(wire_parse_query(buf, n, &wq), 0);
	cr_expect_not(wq.has_edns);
}

/* Append an empty OPT record (the last record) to a reply from make_reply(). */
static size_t with_opt(uint8_t *buf, const uint8_t *pkt, size_t len)
{
	static const uint8_t opt[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0};
	memcpy(buf, pkt, len);
	memcpy(buf + len, opt, sizeof(opt));
	wire_put16(buf + 10, (uint16_t)(wire_get16(buf + 10) + 1));
	return len + sizeof(opt);
}

/* A positive answer too big for the client loses its additional records (not the OPT), then
 * its authority section; a negative one keeps its SOA or does not fit at all. */
Test(wire, shrink_drops_optional_records_first)
{
	const char *rrs[] = {"a|www.example.com. 300 IN A 192.0.2.1",
			     "n|example.com. 3600 IN NS ns1.example.com.",
			     "n|example.com. 3600 IN NS ns2.example.com.",
			     "x|ns1.example.com. 3600 IN A 192.0.2.53",
			     "x|ns2.example.com. 3600 IN A 192.0.2.54"};
	size_t raw_len;
	uint8_t *raw = make_reply("www.example.com.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, rrs, 5, &raw_len);
	uint8_t pkt[512], out[512];
	size_t len = with_opt(pkt, raw, raw_len);
	cr_expect_eq(wire_shrink(pkt, len, len, false, out), len, "it fits as it is");
	size_t n = wire_shrink(pkt, len, len - 1, false, out);
	cr_assert_gt(n, 0);
	cr_expect_eq(wire_get16(out + 6), 1);
	cr_expect_eq(wire_get16(out + 8), 2, "the authority section stays when it fits");
	cr_expect_eq(wire_get16(out + 10), 1, "only the OPT is left in the additional section");
	struct wire_rr opt;
	cr_expect_eq(wire_find_opt(out, n, &opt), 1);
	size_t answer_only = 12 + 17 + 4 + 16 + 11;
	n = wire_shrink(pkt, len, answer_only, false, out);
	cr_expect_eq(n, answer_only);
	cr_expect_eq(wire_get16(out + 8), 0);
	cr_expect_eq(wire_shrink(pkt, len, answer_only - 1, false, out), 0, "the answer itself must fit");
	free(raw);

	const char *neg[] = {"n|example.com. 3600 IN SOA ns1.example.com. h.example.com. 1 2 3 4 5",
			     "x|ns1.example.com. 3600 IN A 192.0.2.53"};
	raw = make_reply("nx.example.com.", LDNS_RR_TYPE_A, LDNS_RCODE_NXDOMAIN, neg, 2, &raw_len);
	len = with_opt(pkt, raw, raw_len);
	n = wire_shrink(pkt, len, len - 1, false, out);
	cr_assert_gt(n, 0);
	cr_expect_eq(wire_get16(out + 8), 1, "a negative answer keeps its SOA");
	cr_expect_eq(wire_shrink(pkt, len, n - 1, false, out), 0);
	free(raw);
}

/* A wildcard answer's NSEC proof sits in the authority section: a DO client needs it to
 * validate, so for it the answer is not shrunk by dropping that section (it gets TC); a client
 * without DO gets the answer alone. */
Test(wire, shrinking_keeps_proofs_for_do_clients)
{
	const char *rrs[] = {"a|www.example.com. 300 IN A 192.0.2.1",
			     "a|www.example.com. 300 IN RRSIG A 8 2 300 20300101000000 20200101000000 1 example.com. AAAA",
			     "n|a.example.com. 300 IN NSEC z.example.com. A RRSIG NSEC",
			     "n|a.example.com. 300 IN RRSIG NSEC 8 3 300 20300101000000 20200101000000 1 example.com. AAAA"};
	size_t raw_len;
	uint8_t *raw = make_reply("www.example.com.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, rrs, 4, &raw_len);
	uint8_t pkt[1024], out[1024];
	size_t len = with_opt(pkt, raw, raw_len);
	size_t n = wire_shrink(pkt, len, len - 1, false, out);
	cr_assert_gt(n, 0);
	cr_expect_eq(wire_get16(out + 8), 0, "without DO the authority section may go");
	cr_expect_eq(wire_shrink(pkt, len, len - 1, true, out), 0, "with DO: TC, proofs kept whole");
	cr_expect_eq(wire_shrink(pkt, len, len, true, out), len);
	free(raw);

	/* An RRSIG of the NS set alone is no proof: it may go, even for a DO client. */
	const char *ns[] = {"a|www.example.com. 300 IN A 192.0.2.1",
			    "n|example.com. 300 IN NS ns1.example.com.",
			    "n|example.com. 300 IN RRSIG NS 8 2 300 20300101000000 20200101000000 1 example.com. AAAA"};
	raw = make_reply("www.example.com.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, ns, 3, &raw_len);
	len = with_opt(pkt, raw, raw_len);
	n = wire_shrink(pkt, len, len - 1, true, out);
	cr_assert_gt(n, 0);
	cr_expect_eq(wire_get16(out + 8), 0);
	free(raw);
}

/* EDE goes into the OPT when it is the last record and there is room; never past cap. */
Test(wire, adds_an_ede_to_the_last_opt)
{
	const char *rrs[] = {"a|www.example.com. 300 IN A 192.0.2.1"};
	size_t raw_len;
	uint8_t *raw = make_reply("www.example.com.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, rrs, 1, &raw_len);
	uint8_t pkt[512];
	size_t len = with_opt(pkt, raw, raw_len);
	cr_expect_eq(wire_add_ede(pkt, len, len + 6 + 2, 3, "abc"), len, "no room: unchanged");
	size_t n = wire_add_ede(pkt, len, sizeof(pkt), 3, "abc");
	cr_assert_eq(n, len + 9);
	size_t off, olen;
	cr_assert_eq(wire_find_edns_option(pkt, n, 15, &off, &olen), 1);
	cr_expect_eq(olen, 5);
	cr_expect_eq(wire_get16(pkt + off), 3);
	cr_expect_eq(memcmp(pkt + off + 2, "abc", 3), 0);
	cr_expect_eq(wire_add_ede(raw, raw_len, 512, 3, ""), raw_len, "no OPT: unchanged");
	free(raw);
}
