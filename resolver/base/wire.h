/* A small, strict DNS wire parser for the query path: it reads a packet in place, never
 * allocates and never trusts a length it has not checked. ldns stays in use in the tests, which
 * hold this parser to ldns's reading of the same packets. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/name.h"

#define WIRE_HEADER 12

enum {
	WIRE_RCODE_NOERROR = 0,
	WIRE_RCODE_FORMERR = 1,
	WIRE_RCODE_SERVFAIL = 2,
	WIRE_RCODE_NXDOMAIN = 3,
	WIRE_RCODE_NOTIMP = 4,
	WIRE_RCODE_REFUSED = 5,
	WIRE_RCODE_BADVERS = 16, /* Extended: upper 8 bits travel in the OPT TTL. */
};

enum {
	WIRE_TYPE_A = 1,
	WIRE_TYPE_NS = 2,
	WIRE_TYPE_PTR = 12,
	WIRE_TYPE_AAAA = 28,
	WIRE_TYPE_CNAME = 5,
	WIRE_TYPE_SOA = 6,
	WIRE_TYPE_DNAME = 39,
	WIRE_TYPE_OPT = 41,
	WIRE_TYPE_RRSIG = 46,
	WIRE_TYPE_NSEC = 47,
	WIRE_TYPE_NSEC3 = 50,
	WIRE_TYPE_SVCB = 64,
	WIRE_TYPE_TXT = 16,
	WIRE_TYPE_TKEY = 249,
	WIRE_TYPE_TSIG = 250,
	WIRE_TYPE_IXFR = 251,
	WIRE_TYPE_AXFR = 252,
	WIRE_TYPE_MAILB = 253,
	WIRE_TYPE_MAILA = 254,
	WIRE_TYPE_ANY = 255,
};

#define WIRE_CLASS_IN 1
#define WIRE_CLASS_CH 3
#define WIRE_CLASS_ANY 255

#define WIRE_FLAG_QR 0x8000
#define WIRE_FLAG_OPCODE 0x7800
#define WIRE_FLAG_AA 0x0400
#define WIRE_FLAG_TC 0x0200
#define WIRE_FLAG_RD 0x0100
#define WIRE_FLAG_RA 0x0080
#define WIRE_FLAG_AD 0x0020
#define WIRE_FLAG_CD 0x0010

/** What the query path needs to know about a query; all offsets index the packet. */
struct wire_query {
	uint16_t id;
	uint16_t flags;
	uint16_t qtype;
	uint16_t qclass;
	uint16_t qname_len;     /**< Wire length of the question name, at offset 12. */
	uint16_t question_end;  /**< Offset just past QCLASS. */
	bool has_edns;
	bool edns_do;
	uint8_t edns_version;
	uint16_t edns_udp_size; /**< Client's advertised size; 512 without EDNS. */
	struct name qname;      /**< Lower-cased, in lookup format. */
};

/** Parse a query.
 *  @return 0; -EINVAL when even the header cannot be trusted (too short, or a response): drop;
 *  -EBADMSG when the header is readable but the rest is not: FORMERR; -ENOTSUP for an opcode
 *  other than QUERY: NOTIMP. On -EBADMSG and -ENOTSUP, q->id and q->flags are set and
 *  q->question_end is 0 when the question itself could not be read; on -ENOTSUP the question
 *  and the OPT record are read as for a QUERY when they parse (the answer echoes them). */
int wire_parse_query(const uint8_t *pkt, size_t len, struct wire_query *q);

/** Is qtype one no record has (RFC 6895 3.1: the meta types: OPT, TSIG, TKEY, MAILA, MAILB,
 *  128-248), zone transfers (AXFR, IXFR) aside? */
static inline int wire_is_meta_type(uint16_t qtype)
{
	return qtype == WIRE_TYPE_OPT || qtype == WIRE_TYPE_TSIG || qtype == WIRE_TYPE_TKEY ||
	       qtype == WIRE_TYPE_MAILA || qtype == WIRE_TYPE_MAILB || (qtype >= 128 && qtype <= 248);
}

/** Offset just past the (possibly compressed) name at pkt[off], or -EBADMSG. */
int wire_skip_name(const uint8_t *pkt, size_t len, size_t off);

/** One resource record as iterated by wire_rr_next(). */
struct wire_rr {
	uint16_t owner;   /**< Offset of the owner name. */
	uint16_t type;
	uint16_t rclass;
	uint16_t ttl_off; /**< Offset of the 4-octet TTL. */
	uint32_t ttl;
	uint16_t rdata;   /**< Offset of RDATA. */
	uint16_t rdlen;
	uint8_t section;  /**< 1 answer, 2 authority, 3 additional. */
};

/** Iterator over the records of a message, past its question section. */
struct wire_rr_iter {
	const uint8_t *pkt;
	size_t len;
	size_t off;
	unsigned left[4];
	uint8_t section;
};

/** Start iterating pkt's records. @return 0 or -EBADMSG (bad header or question section). */
int wire_rr_begin(struct wire_rr_iter *it, const uint8_t *pkt, size_t len);

/** The next record. @return 1 with *rr set, 0 at the end, -EBADMSG when malformed. */
int wire_rr_next(struct wire_rr_iter *it, struct wire_rr *rr);

#define WIRE_EDNS_COOKIE 10 /**< RFC 7873. */
#define WIRE_EDNS_EDE 15    /**< RFC 8914. */
#define WIRE_EDNS_ECS 8     /**< RFC 7871. */
#define WIRE_EDNS_PADDING 12 /**< RFC 7830. */
#define WIRE_RCODE_BADCOOKIE 23

/** Remove every EDNS option `code` from pkt's OPT record in place.
 *  @return the new length (len when there was nothing to remove or pkt is malformed). */
size_t wire_remove_edns_option(uint8_t *pkt, size_t len, uint16_t code);

/** Find pkt's OPT record. @return 1 with *opt set, 0 when there is none, -EBADMSG when the
 *  packet's records are malformed. */
int wire_find_opt(const uint8_t *pkt, size_t len, struct wire_rr *opt);

/** Find EDNS option `code` in pkt's OPT record. @return 1 with *off (its data) and *olen set,
 *  0 when there is none (or no OPT), -EBADMSG when the packet or its options are malformed. */
int wire_find_edns_option(const uint8_t *pkt, size_t len, uint16_t code, size_t *off,
			  size_t *olen);

/** Remove the OPT record from pkt in place (for a client that sent none, RFC 6891 7).
 *  @return the new length. */
size_t wire_remove_opt(uint8_t *pkt, size_t len);

/** Lower every record's TTL (not the OPT's) by age seconds, to no less than 0 and no more than
 *  max, in place. */
void wire_age_ttls(uint8_t *pkt, size_t len, uint32_t age, uint32_t max);

/** Set every TTL in pkt (but the OPT's) into [min, max]. */
void wire_clamp_ttls(uint8_t *pkt, size_t len, uint32_t min, uint32_t max);

/** The smallest TTL of pkt's answer and authority records, an SOA's no more than its MINIMUM
 *  (RFC 2308 5): how long the whole answer may be kept (RFC 8484 5.1). 0 with none, or when
 *  pkt is malformed. */
uint32_t wire_min_ttl(const uint8_t *pkt, size_t len);

/** Add an Extended DNS Error (RFC 8914) with text to pkt's OPT record, when the OPT is the
 *  last record and the result fits in cap. @return the new length (len when nothing was
 *  added). */
size_t wire_add_ede(uint8_t *pkt, size_t len, size_t cap, uint16_t code, const char *text);

/** Fit pkt into limit octets as Unbound does for UDP (RFC 2181 9): without its additional
 *  records but the OPT, then, if it has answer records, without its authority section too;
 *  TC stays clear, as the answer is whole. With keep_proofs (a DO client) an authority
 *  section that holds denial proofs (NSEC, NSEC3: a wildcard answer's) is never dropped.
 *  Written to out (limit octets). @return the new length; 0 when even that does not fit (the
 *  client needs TC). */
size_t wire_shrink(const uint8_t *pkt, size_t len, size_t limit, bool keep_proofs, uint8_t *out);

/** Make ans (an answer to the same question) an answer to query: its ID, its RD bit and its
 *  question name, letter case included. The names must have the same wire length. */
void wire_answer_patch(uint8_t *ans, const uint8_t *query, const struct wire_query *q);

static inline uint16_t wire_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t wire_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void wire_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wire_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline unsigned wire_rcode(const uint8_t *pkt)
{
	return pkt[3] & 0x0F;
}
