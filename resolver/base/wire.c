/* Wire parsing in place: bounds are checked before every read, compression pointers may only
 * point backwards (which also rules out loops), and counts are validated against the bytes. It
 * never allocates and keeps no state: every function works on the caller's buffer. */
#include "config.h"

#include "resolver/base/wire.h"

#include <errno.h>
#include <string.h>

int wire_skip_name(const uint8_t *pkt, size_t len, size_t off)
{
	size_t wire = 1;
	for (;;) {
		if (off >= len)
			return -EBADMSG;
		uint8_t l = pkt[off];
		if (l == 0)
			return (int)(off + 1);
		if ((l & 0xC0) == 0xC0)
			return off + 2 <= len ? (int)(off + 2) : -EBADMSG;
		if (l > 63)
			return -EBADMSG;
		wire += 1 + (size_t)l;
		if (wire > 255)
			return -EBADMSG;
		off += 1 + (size_t)l;
	}
}

int wire_rr_begin(struct wire_rr_iter *it, const uint8_t *pkt, size_t len)
{
	if (len < WIRE_HEADER)
		return -EBADMSG;
	it->pkt = pkt;
	it->len = len;
	it->off = WIRE_HEADER;
	for (unsigned q = wire_get16(pkt + 4); q > 0; q--) {
		int next = wire_skip_name(pkt, len, it->off);
		if (next < 0 || (size_t)next + 4 > len)
			return -EBADMSG;
		it->off = (size_t)next + 4;
	}
	it->left[0] = 0;
	it->left[1] = wire_get16(pkt + 6);
	it->left[2] = wire_get16(pkt + 8);
	it->left[3] = wire_get16(pkt + 10);
	it->section = 1;
	return 0;
}

int wire_rr_next(struct wire_rr_iter *it, struct wire_rr *rr)
{
	while (it->section < 4 && it->left[it->section] == 0)
		it->section++;
	if (it->section >= 4)
		return 0;
	int next = wire_skip_name(it->pkt, it->len, it->off);
	if (next < 0 || (size_t)next + 10 > it->len)
		return -EBADMSG;
	const uint8_t *p = it->pkt + next;
	rr->owner = (uint16_t)it->off;
	rr->type = wire_get16(p);
	rr->rclass = wire_get16(p + 2);
	rr->ttl_off = (uint16_t)(next + 4);
	rr->ttl = wire_get32(p + 4);
	rr->rdlen = wire_get16(p + 8);
	rr->rdata = (uint16_t)(next + 10);
	rr->section = it->section;
	if ((size_t)rr->rdata + rr->rdlen > it->len)
		return -EBADMSG;
	it->off = (size_t)rr->rdata + rr->rdlen;
	it->left[it->section]--;
	return 1;
}

int wire_parse_query(const uint8_t *pkt, size_t len, struct wire_query *q)
{
	if (len < WIRE_HEADER)
		return -EINVAL;
	q->id = wire_get16(pkt);
	q->flags = wire_get16(pkt + 2);
	q->question_end = 0;
	q->has_edns = false;
	q->edns_do = false;
	q->edns_version = 0;
	q->edns_udp_size = 512;
	if (q->flags & WIRE_FLAG_QR)
		return -EINVAL; /* Never answer a response: that is how reflection loops start. */
	/* Another opcode (NOTIFY, UPDATE, STATUS...) is NOTIMP; its question and OPT are still
	 * read when they parse, so the answer can echo them (RFC 1035 4.1.1). */
	int bad = ((q->flags >> 11) & 0xF) != 0 ? -ENOTSUP : -EBADMSG;
	if (wire_get16(pkt + 4) != 1)
		return bad;

	size_t qlen;
	if (name_from_wire(&q->qname, pkt + WIRE_HEADER, len - WIRE_HEADER, &qlen) < 0)
		return bad;
	size_t off = WIRE_HEADER + qlen;
	if (off + 4 > len)
		return bad;
	q->qname_len = (uint16_t)qlen;
	q->qtype = wire_get16(pkt + off);
	q->qclass = wire_get16(pkt + off + 2);
	q->question_end = (uint16_t)(off + 4);

	/* Find the OPT record, if any; every record must be well formed. */
	struct wire_rr_iter it;
	struct wire_rr rr;
	int rc;
	if (wire_rr_begin(&it, pkt, len) < 0)
		return bad;
	while ((rc = wire_rr_next(&it, &rr)) > 0) {
		if (rr.type != WIRE_TYPE_OPT)
			continue;
		/* RFC 6891 6.1.1: one OPT, in the additional section, owned by the root. */
		if (q->has_edns || rr.section != 3 || pkt[rr.owner] != 0) {
			q->has_edns = false;
			return bad;
		}
		q->has_edns = true;
		q->edns_udp_size = rr.rclass < 512 ? 512 : rr.rclass;
		q->edns_version = (uint8_t)(rr.ttl >> 16);
		q->edns_do = (rr.ttl & 0x8000) != 0;
	}
	/* Bytes after the last record are ignored, as most servers do. */
	if (rc < 0)
		return bad;
	return bad == -ENOTSUP ? -ENOTSUP : 0;
}

size_t wire_remove_edns_option(uint8_t *pkt, size_t len, uint16_t code)
{
	struct wire_rr_iter it;
	struct wire_rr rr;
	if (wire_rr_begin(&it, pkt, len) < 0)
		return len;
	while (wire_rr_next(&it, &rr) > 0) {
		if (rr.type != WIRE_TYPE_OPT)
			continue;
		size_t off = rr.rdata, end = (size_t)rr.rdata + rr.rdlen;
		while (off + 4 <= end) {
			size_t olen = 4u + wire_get16(pkt + off + 2);
			if (off + olen > end)
				return len; /* Malformed options: leave the packet as it is. */
			if (wire_get16(pkt + off) != code) {
				off += olen;
				continue;
			}
			memmove(pkt + off, pkt + off + olen, len - off - olen);
			len -= olen;
			end -= olen;
			wire_put16(pkt + rr.rdata - 2, (uint16_t)(end - rr.rdata));
		}
		return len;
	}
	return len;
}

int wire_find_opt(const uint8_t *pkt, size_t len, struct wire_rr *opt)
{
	struct wire_rr_iter it;
	int rc;
	if (wire_rr_begin(&it, pkt, len) < 0)
		return -EBADMSG;
	while ((rc = wire_rr_next(&it, opt)) > 0)
		if (opt->type == WIRE_TYPE_OPT)
			return 1;
	return rc < 0 ? -EBADMSG : 0;
}

int wire_find_edns_option(const uint8_t *pkt, size_t len, uint16_t code, size_t *off,
			  size_t *olen)
{
	struct wire_rr rr;
	int rc = wire_find_opt(pkt, len, &rr);
	if (rc <= 0)
		return rc;
	size_t at = rr.rdata, end = (size_t)rr.rdata + rr.rdlen;
	while (at + 4 <= end) {
		size_t l = wire_get16(pkt + at + 2);
		if (at + 4 + l > end)
			return -EBADMSG;
		if (wire_get16(pkt + at) == code) {
			*off = at + 4;
			*olen = l;
			return 1;
		}
		at += 4 + l;
	}
	return at == end ? 0 : -EBADMSG;
}

size_t wire_remove_opt(uint8_t *pkt, size_t len)
{
	struct wire_rr rr;
	if (wire_find_opt(pkt, len, &rr) <= 0 || rr.section != 3)
		return len;
	size_t start = rr.owner, end = (size_t)rr.rdata + rr.rdlen;
	memmove(pkt + start, pkt + end, len - end);
	wire_put16(pkt + 10, (uint16_t)(wire_get16(pkt + 10) - 1));
	return len - (end - start);
}

void wire_answer_patch(uint8_t *ans, const uint8_t *query, const struct wire_query *q)
{
	wire_put16(ans, q->id);
	ans[2] = (uint8_t)((ans[2] & ~(WIRE_FLAG_RD >> 8)) | ((q->flags & WIRE_FLAG_RD) >> 8));
	ans[3] = (uint8_t)((ans[3] & ~WIRE_FLAG_CD) | (q->flags & WIRE_FLAG_CD));
	memcpy(ans + WIRE_HEADER, query + WIRE_HEADER, q->qname_len);
}

/* Every TTL but the OPT's: aged by age seconds (never below 0), then put into [min, max]. */
static void adjust_ttls(uint8_t *pkt, size_t len, uint32_t age, uint32_t min, uint32_t max)
{
	struct wire_rr_iter it;
	struct wire_rr rr;
	if (wire_rr_begin(&it, pkt, len) < 0)
		return;
	while (wire_rr_next(&it, &rr) > 0) {
		if (rr.type == WIRE_TYPE_OPT)
			continue;
		uint32_t ttl = rr.ttl > age ? rr.ttl - age : 0;
		wire_put32(pkt + rr.ttl_off, ttl < min ? min : ttl > max ? max : ttl);
	}
}

void wire_age_ttls(uint8_t *pkt, size_t len, uint32_t age, uint32_t max)
{
	adjust_ttls(pkt, len, age, 0, max);
}

void wire_clamp_ttls(uint8_t *pkt, size_t len, uint32_t min, uint32_t max)
{
	adjust_ttls(pkt, len, 0, min, max);
}

uint32_t wire_min_ttl(const uint8_t *pkt, size_t len)
{
	struct wire_rr_iter it;
	struct wire_rr rr;
	if (wire_rr_begin(&it, pkt, len) < 0)
		return 0;
	uint32_t min = UINT32_MAX;
	int rc;
	while ((rc = wire_rr_next(&it, &rr)) == 1) {
		if (rr.section > 2)
			continue;
		uint32_t ttl = rr.ttl;
		/* A negative answer lives as long as the SOA's TTL and MINIMUM both allow. */
		if (rr.type == WIRE_TYPE_SOA && rr.section == 2 && rr.rdlen >= 22 &&
		    wire_get32(pkt + rr.rdata + rr.rdlen - 4) < ttl)
			ttl = wire_get32(pkt + rr.rdata + rr.rdlen - 4);
		if (ttl < min)
			min = ttl;
	}
	return rc < 0 || min == UINT32_MAX ? 0 : min;
}

size_t wire_add_ede(uint8_t *pkt, size_t len, size_t cap, uint16_t code, const char *text)
{
	struct wire_rr opt;
	if (wire_find_opt(pkt, len, &opt) <= 0 || opt.rdata + opt.rdlen != len)
		return len;
	size_t tlen = strlen(text);
	if (len + 6 + tlen > cap || opt.rdlen + 6u + tlen > 65535)
		return len;
	wire_put16(pkt + len, 15);
	wire_put16(pkt + len + 2, (uint16_t)(2 + tlen));
	wire_put16(pkt + len + 4, code);
	memcpy(pkt + len + 6, text, tlen);
	wire_put16(pkt + opt.rdata - 2, (uint16_t)(opt.rdlen + 6 + tlen));
	return len + 6 + tlen;
}

size_t wire_shrink(const uint8_t *pkt, size_t len, size_t limit, bool keep_proofs, uint8_t *out)
{
	if (len <= limit) {
		memcpy(out, pkt, len);
		return len;
	}
	struct wire_rr_iter it;
	struct wire_rr rr;
	if (wire_rr_begin(&it, pkt, len) < 0)
		return 0;
	size_t an_end = it.off, ns_end = it.off, opt_off = 0, opt_len = 0;
	int rc, ns_proofs = 0;
	while ((rc = wire_rr_next(&it, &rr)) > 0) {
		size_t end = (size_t)rr.rdata + rr.rdlen;
		if (rr.section == 1)
			an_end = ns_end = end;
		else if (rr.section == 2) {
			ns_end = end;
			/* An RRSIG alone (of the NS set) proves nothing a validator needs. */
			ns_proofs |= rr.type == WIRE_TYPE_NSEC || rr.type == WIRE_TYPE_NSEC3;
		}
		else if (rr.type == WIRE_TYPE_OPT && !opt_len) {
			opt_off = rr.owner;
			opt_len = end - rr.owner;
		}
	}
	if (rc < 0)
		return 0;
	unsigned ancount = wire_get16(pkt + 6);
	/* The additional section goes first (the OPT stays), then, for an answer with records,
	 * the authority section; a negative answer needs its SOA (and proofs), and a DO client the
	 * NSEC/NSEC3 proofs of a positive one (a wildcard's): without them it cannot validate, so
	 * it gets TC instead (RFC 4035 3.1.1). */
	size_t keep = ns_end;
	unsigned nscount = wire_get16(pkt + 8);
	if (keep + opt_len > limit && ancount > 0 && !(keep_proofs && ns_proofs)) {
		keep = an_end;
		nscount = 0;
	}
	if (keep + opt_len > limit)
		return 0;
	memcpy(out, pkt, keep);
	memcpy(out + keep, pkt + opt_off, opt_len);
	wire_put16(out + 8, (uint16_t)nscount);
	wire_put16(out + 10, opt_len ? 1 : 0);
	return keep + opt_len;
}
