/* Answer building. Names in the SOA are compressed against the echoed question, so the answer
 * stays small whatever the rule; only the EDE text is shortened when space runs out. It never
 * allocates and never sends: the caller owns the buffer and the client. */
#include "config.h"

#include "resolver/query/answer.h"

#include <errno.h>
#include <string.h>

/* "embargo.invalid." in wire form: a name that can never resolve (RFC 6761). */
static const uint8_t MNAME[] = {7, 'e', 'm', 'b', 'a', 'r', 'g', 'o', 7, 'i', 'n', 'v', 'a', 'l', 'i', 'd', 0};
static const uint8_t RNAME_LABEL[] = {10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r'};

/* Header and question; returns the offset after them. */
static size_t write_head(uint8_t *out, const uint8_t *query, const struct wire_query *q,
			 unsigned rcode, int with_question)
{
	/* The opcode is copied, as RFC 1035 4.1.1 asks (a NOTIMP to a NOTIFY is a NOTIFY's). */
	uint16_t flags = WIRE_FLAG_QR | WIRE_FLAG_RA |
			 (q->flags & (WIRE_FLAG_OPCODE | WIRE_FLAG_RD | WIRE_FLAG_CD)) | (rcode & 0xF);
	wire_put16(out, q->id);
	wire_put16(out + 2, flags);
	wire_put16(out + 4, with_question ? 1 : 0);
	memset(out + 6, 0, 6);
	if (!with_question)
		return WIRE_HEADER;
	memcpy(out + WIRE_HEADER, query + WIRE_HEADER, q->question_end - WIRE_HEADER);
	return q->question_end;
}

/* Length of text cut to at most max octets without splitting a UTF-8 sequence. */
static size_t utf8_cut(const char *text, size_t len, size_t max)
{
	if (len <= max)
		return len;
	len = max;
	while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
		len--;
	return len;
}

/* An OPT record with an optional EDE, cut to fit cap; returns its end or 0 if nothing fits. */
static size_t write_opt(uint8_t *out, size_t off, size_t cap, const struct wire_query *q,
			unsigned rcode, int ede_code, const char *prefix, const char *text)
{
	if (off + 11 > cap)
		return 0;
	uint8_t *p = out + off;
	p[0] = 0;
	wire_put16(p + 1, WIRE_TYPE_OPT);
	wire_put16(p + 3, ANSWER_EDNS_UDP_SIZE);
	uint32_t ttl = ((uint32_t)(rcode >> 4) << 24) | (q->edns_do ? 0x8000u : 0);
	wire_put32(p + 5, ttl);
	size_t end = off + 11;
	uint16_t rdlen = 0;
	if (ede_code >= 0 && end + 6 <= cap) {
		size_t plen = prefix ? strlen(prefix) : 0;
		size_t tlen = text ? strlen(text) : 0;
		size_t room = cap - end - 6;
		if (plen > room)
			plen = tlen = 0;
		else
			tlen = utf8_cut(text ? text : "", tlen, room - plen);
		wire_put16(out + end, 15);
		wire_put16(out + end + 2, (uint16_t)(2 + plen + tlen));
		wire_put16(out + end + 4, (uint16_t)ede_code);
		if (plen)
			memcpy(out + end + 6, prefix, plen);
		if (tlen)
			memcpy(out + end + 6 + plen, text, tlen);
		rdlen = (uint16_t)(6 + plen + tlen);
	}
	wire_put16(p + 9, rdlen);
	wire_put16(out + 10, 1); /* ARCOUNT */
	return end + rdlen;
}

/* The denial's OPT with its EDE (the reason, or the rule), for EDNS clients. */
static int deny_ede(uint8_t *out, size_t off, size_t cap, const struct wire_query *q,
		    const struct answer_deny *d)
{
	if (!q->has_edns)
		return (int)off;
	unsigned rcode = out[3] & 0xF;
	size_t end;
	if (d->reason)
		end = write_opt(out, off, cap, q, rcode, d->ede_code, NULL, d->reason);
	else
		end = write_opt(out, off, cap, q, rcode, d->ede_code, "denied by policy: ", d->rule);
	return end ? (int)end : (int)off;
}

int answer_deny(uint8_t *out, size_t cap, const uint8_t *query, const struct wire_query *q,
		const struct answer_deny *d)
{
	/* Worst case before the EDE: header, question, SOA with compressed owner and RNAME. */
	if (cap < (size_t)q->question_end + 2 + 10 + sizeof(MNAME) + sizeof(RNAME_LABEL) + 2 + 20 + 11)
		return -ENOSPC;
	if (d->mode == ANSWER_DENY_REFUSED) {
		size_t off = write_head(out, query, q, WIRE_RCODE_REFUSED, 1);
		return deny_ede(out, off, cap, q, d);
	}
	int sink = d->mode == ANSWER_DENY_SINKHOLE &&
		   (q->qtype == WIRE_TYPE_A || q->qtype == WIRE_TYPE_AAAA);
	if (sink) {
		/* The sinkhole address, owned by the question's name, with the denial's TTL. */
		size_t off = write_head(out, query, q, WIRE_RCODE_NOERROR, 1);
		size_t alen = q->qtype == WIRE_TYPE_A ? 4 : 16;
		uint8_t *p = out + off;
		wire_put16(p, 0xC000 | WIRE_HEADER);
		wire_put16(p + 2, q->qtype);
		wire_put16(p + 4, 1);
		wire_put32(p + 6, d->ttl);
		wire_put16(p + 10, (uint16_t)alen);
		memcpy(p + 12, alen == 4 ? d->sinkhole4 : d->sinkhole6, alen);
		wire_put16(out + 6, 1); /* ANCOUNT */
		return deny_ede(out, off + 12 + alen, cap, q, d);
	}
	size_t off = write_head(out, query, q,
				d->mode == ANSWER_DENY_NXDOMAIN ? WIRE_RCODE_NXDOMAIN
								: WIRE_RCODE_NOERROR,
				1);

	if (d->owner) {
		/* A rule that matched a CNAME target: write its name out. */
		int n = name_suffix_to_wire(d->owner, d->depth, out + off, cap - off);
		if (n < 0 || off + (size_t)n + 10 + sizeof(MNAME) + sizeof(RNAME_LABEL) + 22 > cap)
			return -ENOSPC;
		off += (size_t)n;
	} else {
		/* The rule is a suffix of the query name: point into the echoed question. */
		size_t owner = WIRE_HEADER;
		for (unsigned skip = q->qname.nlabels - d->depth; skip > 0; skip--)
			owner += 1 + (size_t)query[owner];
		wire_put16(out + off, (uint16_t)(0xC000 | owner));
		off += 2;
	}
	uint8_t *p = out + off; /* TYPE, CLASS, TTL, RDLENGTH, then RDATA at off + 10. */
	wire_put16(p, WIRE_TYPE_SOA);
	wire_put16(p + 2, 1);
	wire_put32(p + 4, d->ttl);
	size_t rdata = off + 10;
	memcpy(out + rdata, MNAME, sizeof(MNAME));
	size_t rname = rdata + sizeof(MNAME);
	memcpy(out + rname, RNAME_LABEL, sizeof(RNAME_LABEL));
	wire_put16(out + rname + sizeof(RNAME_LABEL), (uint16_t)(0xC000 | rdata));
	size_t nums = rname + sizeof(RNAME_LABEL) + 2;
	wire_put32(out + nums, d->serial);
	wire_put32(out + nums + 4, 3600);  /* REFRESH */
	wire_put32(out + nums + 8, 600);   /* RETRY */
	wire_put32(out + nums + 12, 86400); /* EXPIRE */
	wire_put32(out + nums + 16, d->ttl);
	off = nums + 20;
	wire_put16(p + 8, (uint16_t)(off - rdata));
	wire_put16(out + 8, 1); /* NSCOUNT */
	return deny_ede(out, off, cap, q, d);
}

int answer_error(uint8_t *out, size_t cap, const uint8_t *query, const struct wire_query *q,
		 unsigned rcode, int ede_code, const char *ede_text)
{
	int with_question = q->question_end > 0;
	if (cap < (with_question ? q->question_end : (size_t)WIRE_HEADER))
		return -ENOSPC;
	size_t off = write_head(out, query, q, rcode, with_question);
	if (!q->has_edns)
		return (int)off;
	size_t end = write_opt(out, off, cap, q, rcode, ede_code, NULL, ede_text);
	return end ? (int)end : (int)off;
}

/* Records owned by suffixes of the question's name; returns the end, or 0 if they do not fit. */
static size_t write_rrs(uint8_t *out, size_t off, size_t cap, const uint8_t *query,
			const struct wire_query *q, const struct answer_rr *rr, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (off + 12 + (size_t)rr[i].rdlen > cap)
			return 0;
		size_t owner = WIRE_HEADER;
		unsigned depth = rr[i].depth < q->qname.nlabels ? rr[i].depth : q->qname.nlabels;
		for (unsigned skip = q->qname.nlabels - depth; skip > 0; skip--)
			owner += 1 + (size_t)query[owner];
		uint8_t *p = out + off;
		wire_put16(p, (uint16_t)(0xC000 | owner));
		wire_put16(p + 2, rr[i].type);
		wire_put16(p + 4, 1);
		wire_put32(p + 6, rr[i].ttl);
		wire_put16(p + 10, rr[i].rdlen);
		memcpy(p + 12, rr[i].rdata, rr[i].rdlen);
		off += 12 + (size_t)rr[i].rdlen;
	}
	return off;
}

int answer_local(uint8_t *out, size_t cap, const uint8_t *query, const struct wire_query *q,
		 unsigned rcode, const struct answer_rr *an, unsigned nan,
		 const struct answer_rr *ns, unsigned nns)
{
	if (cap < q->question_end)
		return -ENOSPC;
	size_t off = write_head(out, query, q, rcode, 1);
	off = write_rrs(out, off, cap, query, q, an, nan);
	if (off)
		off = write_rrs(out, off, cap, query, q, ns, nns);
	if (!off)
		return -ENOSPC;
	wire_put16(out + 6, (uint16_t)nan);
	wire_put16(out + 8, (uint16_t)nns);
	out[2] |= WIRE_FLAG_AA >> 8;
	if (!q->has_edns)
		return (int)off;
	size_t end = write_opt(out, off, cap, q, rcode, -1, NULL, NULL);
	return end ? (int)end : (int)off;
}

int answer_txt(uint8_t *out, size_t cap, const uint8_t *query, const struct wire_query *q,
	       const char *text)
{
	size_t tlen = strlen(text);
	if (tlen > 255)
		tlen = 255;
	if (cap < (size_t)q->question_end + 12 + 1 + tlen + 11)
		return -ENOSPC;
	size_t off = write_head(out, query, q, WIRE_RCODE_NOERROR, 1);
	uint8_t *p = out + off;
	wire_put16(p, 0xC000 | WIRE_HEADER); /* The owner is the question's name. */
	wire_put16(p + 2, 16);               /* TXT */
	wire_put16(p + 4, q->qclass);
	wire_put32(p + 6, 0);
	wire_put16(p + 10, (uint16_t)(1 + tlen));
	p[12] = (uint8_t)tlen;
	memcpy(p + 13, text, tlen);
	off += 13 + tlen;
	wire_put16(out + 6, 1); /* ANCOUNT */
	out[2] |= WIRE_FLAG_AA >> 8;
	if (!q->has_edns)
		return (int)off;
	size_t end = write_opt(out, off, cap, q, 0, -1, NULL, NULL);
	return end ? (int)end : (int)off;
}
