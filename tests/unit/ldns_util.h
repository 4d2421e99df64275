/* Test helpers: build packets with ldns, the independent reference for our wire code. */
#pragma once

#include <criterion/criterion.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>

/* A query for name/type in wire form (caller frees). edns: 0 none, 1 EDNS, 2 EDNS with DO. */
static inline uint8_t *make_query(const char *name, ldns_rr_type type, int edns, uint16_t id,
				  size_t *len)
{
	ldns_pkt *pkt = NULL;
	cr_assert_eq(ldns_pkt_query_new_frm_str(&pkt, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
		     LDNS_STATUS_OK);
	ldns_pkt_set_id(pkt, id);
	if (edns) {
		ldns_pkt_set_edns_udp_size(pkt, 1232);
		ldns_pkt_set_edns_do(pkt, edns == 2);
	}
	uint8_t *wire = NULL;
	cr_assert_eq(ldns_pkt2wire(&wire, pkt, len), LDNS_STATUS_OK);
	ldns_pkt_free(pkt);
	/* ldns lower-cases nothing: the name keeps the case given. */
	return wire;
}

/* A response to the question name/type with the given records ("section|rr" strings,
 * section a/n/x), rcode and flags. Caller frees. */
static inline uint8_t *make_reply(const char *name, ldns_rr_type type, ldns_pkt_rcode rcode,
				  const char *const *rrs, size_t nrr, size_t *len)
{
	ldns_pkt *pkt = NULL;
	cr_assert_eq(ldns_pkt_query_new_frm_str(&pkt, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
		     LDNS_STATUS_OK);
	ldns_pkt_set_qr(pkt, true);
	ldns_pkt_set_ra(pkt, true);
	ldns_pkt_set_rcode(pkt, (uint8_t)rcode);
	for (size_t i = 0; i < nrr; i++) {
		ldns_rr *rr = NULL;
		cr_assert_eq(ldns_rr_new_frm_str(&rr, rrs[i] + 2, 0, NULL, NULL), LDNS_STATUS_OK,
			     "%s", rrs[i]);
		ldns_pkt_section s = rrs[i][0] == 'a' ? LDNS_SECTION_ANSWER
				     : rrs[i][0] == 'n' ? LDNS_SECTION_AUTHORITY
							: LDNS_SECTION_ADDITIONAL;
		ldns_pkt_push_rr(pkt, s, rr);
	}
	uint8_t *wire = NULL;
	cr_assert_eq(ldns_pkt2wire(&wire, pkt, len), LDNS_STATUS_OK);
	ldns_pkt_free(pkt);
	return wire;
}
