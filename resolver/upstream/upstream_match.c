/* Reply matching (upstream_match.h): the bytes of a reply against the question p last sent,
 * over UDP or TCP alike. Checks that need state (the socket, the cookie) are the callers'; this
 * file must not keep any. */
#include "config.h"

#include "resolver/upstream/upstream_match.h"

#include <string.h>

enum upstream_match upstream_match_question(const struct pending *p, const uint8_t *reply,
					    size_t len)
{
	size_t qend = WIRE_HEADER + p->name_len + 4u;
	if (len < qend || wire_get16(reply) != wire_get16(p->query) ||
	    !(wire_get16(reply + 2) & WIRE_FLAG_QR) || (reply[2] & 0x78) != 0 ||
	    wire_get16(reply + 4) != 1)
		return UPSTREAM_MATCH_NONE;
	if (memcmp(reply + WIRE_HEADER, p->query + WIRE_HEADER, qend - WIRE_HEADER) == 0)
		return UPSTREAM_MATCH_EXACT;
	/* Letters may differ in case only; label lengths (<= 63, never a letter's code with
	 * 0x20 set), type and class must be equal. */
	size_t nend = WIRE_HEADER + p->name_len;
	for (size_t k = WIRE_HEADER; k < nend; k++) {
		uint8_t a = reply[k], b = p->query[k];
		if (a != b && !((a | 0x20) == (b | 0x20) && (b | 0x20) >= 'a' && (b | 0x20) <= 'z'))
			return UPSTREAM_MATCH_NONE;
	}
	if (memcmp(reply + nend, p->query + nend, 4) != 0)
		return UPSTREAM_MATCH_NONE;
	return UPSTREAM_MATCH_CASE;
}

/* The answer's RCODE including its extended bits from the OPT record. */
unsigned upstream_match_full_rcode(const uint8_t *reply, size_t len)
{
	unsigned rcode = wire_rcode(reply);
	struct wire_rr opt;
	if (wire_find_opt(reply, len, &opt) > 0)
		rcode |= (opt.ttl >> 24) << 4;
	return rcode;
}
