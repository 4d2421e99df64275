/* Answers embargo writes itself: policy denials, errors and truncation markers. Each is built
 * into a caller's buffer (preallocated per worker), echoing the client's question byte for byte
 * so that its letter case survives. It never allocates or sends: callers send what it built. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "resolver/base/wire.h"

#define ANSWER_EDNS_UDP_SIZE 1232 /**< The UDP size embargo advertises (DNS flag day 2020). */

/* Extended DNS Error codes used here, RFC 8914 section 4. */
#define ANSWER_EDE_OTHER 0
#define ANSWER_EDE_STALE 3
#define ANSWER_EDE_BLOCKED 15
#define ANSWER_EDE_CENSORED 16
#define ANSWER_EDE_FILTERED 17
#define ANSWER_EDE_PROHIBITED 18
#define ANSWER_EDE_NOT_AUTHORITATIVE 20
#define ANSWER_EDE_NO_REACHABLE_AUTHORITY 22

/** What a denial looks like (--deny-mode). Each keeps the EDE and its reason. */
enum answer_deny_mode {
	ANSWER_DENY_NXDOMAIN = 0, /**< NXDOMAIN with the rule's SOA. */
	ANSWER_DENY_NODATA,       /**< NOERROR, no answer, the rule's SOA. */
	ANSWER_DENY_REFUSED,      /**< REFUSED. */
	ANSWER_DENY_SINKHOLE,     /**< A/AAAA: the sinkhole address; other types: as NODATA. */
};

/** How to write a denial. Strings are borrowed for the call. */
struct answer_deny {
	enum answer_deny_mode mode;
	const uint8_t *sinkhole4; /**< 4 octets (A answers in sinkhole mode). */
	const uint8_t *sinkhole6; /**< 16 octets (AAAA answers). */
	unsigned depth;      /**< Labels covered by the rule: the SOA owner is that suffix... */
	const struct name *owner; /**< ...of this name (a CNAME target), or of the qname if NULL. */
	const char *rule;    /**< The rule, for the default EXTRA-TEXT. */
	const char *reason;  /**< EXTRA-TEXT; NULL gives "denied by policy: <rule>". */
	uint32_t ttl;        /**< SOA TTL and MINIMUM. */
	uint32_t serial;     /**< SOA SERIAL: ties the answer to a policy version. */
	uint16_t ede_code;   /**< The EDE of every denial (15, 16 or 17). */
};

/** A denial in d->mode (by default NXDOMAIN with the SOA of the deciding rule) and, for EDNS
 *  clients, an EDE with the reason; never AA, never a signature. The EXTRA-TEXT is shortened
 *  (on a UTF-8 boundary) to keep the answer within cap.
 *  @return the answer's length, or -ENOSPC. */
int answer_deny(uint8_t *out, size_t cap, const uint8_t *query, const struct wire_query *q,
		const struct answer_deny *d);

/** An answer carrying only rcode (which may be extended, e.g. BADVERS), the question when it
 *  was readable (q->question_end > 0), and an OPT with an optional EDE for EDNS clients.
 *  @param ede_code  -1 for none. @return the length, or -ENOSPC. */
int answer_error(uint8_t *out, size_t cap, const uint8_t *query, const struct wire_query *q,
		 unsigned rcode, int ede_code, const char *ede_text);

/** One record of a locally built answer. Its owner is the topmost `depth` labels of the query
 *  name (written as a pointer into the echoed question); rdata is uncompressed wire, borrowed. */
struct answer_rr {
	unsigned depth;
	uint16_t type;
	uint32_t ttl;
	const uint8_t *rdata;
	uint16_t rdlen;
};

/** An authoritative answer embargo holds itself (local zones, local data): rcode, AA set, the
 *  records of the answer and authority sections in class IN, an OPT for EDNS clients; never a
 *  signature. @return the length, or -ENOSPC. */
int answer_local(uint8_t *out, size_t cap, const uint8_t *query, const struct wire_query *q,
		 unsigned rcode, const struct answer_rr *an, unsigned nan,
		 const struct answer_rr *ns, unsigned nns);

/** NOERROR with one TXT record of text (at most 255 octets) answering the question itself,
 *  in the question's class, TTL 0: for CH-class status queries. @return the length, or -ENOSPC. */
int answer_txt(uint8_t *out, size_t cap, const uint8_t *query, const struct wire_query *q,
	       const char *text);

/** The client's size limit for an answer over UDP. */
static inline size_t answer_udp_limit(const struct wire_query *q)
{
	if (!q->has_edns)
		return 512;
	return q->edns_udp_size < 4096 ? q->edns_udp_size : 4096;
}
