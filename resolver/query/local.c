/* Local zones and local data on the query path: the zones and records in force (from
 * resolver/base/local_zone.c's catalogue and parser), sorted once, and the answer each kind
 * gives; DDR's SVCB records (RFC 9460 wire form) are written once from their description. It
 * must not parse text or allocate per query. */
#include "config.h"

#include "resolver/query/local.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/query/answer.h"
#include "resolver/base/addr.h"
#include "resolver/base/local_zone.h"

/* Wire rdata of the default zones' records (Unbound's). */
static const uint8_t LOCALHOST[] = {9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0};
static const uint8_t SOA[] = {9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0,
			      6, 'n', 'o', 'b', 'o', 'd', 'y', 7, 'i', 'n', 'v', 'a', 'l', 'i', 'd', 0,
			      0, 0, 0, 1, 0, 0, 0x0e, 0x10, 0, 0, 0x04, 0xb0,
			      0, 0x09, 0x3a, 0x80, 0, 0, 0x2a, 0x30}; /* 1 3600 1200 604800 10800 */
static const uint8_t LOOPBACK4[] = {127, 0, 0, 1};
static const uint8_t LOOPBACK6[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

struct zone {
	struct name name;
	enum local_zone_kind kind;
	unsigned index; /* Its bit in options.local_off. */
	bool ptr_apex;  /* ::1's reverse zone: PTR localhost at the apex. */
	bool ptr_one;   /* 127.in-addr.arpa: PTR localhost at 1.0.0.127. */
};

/* The zones under one top-level label, zone[lo..hi). */
struct tld {
	uint8_t label[NAME_MAXLABEL + 1]; /* Length octet and letters, as in the key. */
	unsigned lo, hi;
};

struct local {
	struct zone zone[LOCAL_ZONES]; /* In force, sorted by key. */
	unsigned nzone;
	struct tld tld[16];
	unsigned ntld;
	struct local_zone_record *data; /* Sorted by key, then type. */
	unsigned ndata;
	struct local_zone_record ddr[LOCAL_DDR_MAX]; /* SVCB records, by SvcPriority; no name. */
	unsigned nddr;
	struct name ddr_arpa; /* _dns.resolver.arpa; keylen 0 when resolver.arpa is handed back. */
	struct name ddr_own;  /* _dns.TARGET (--resolver-name); keylen 0 when none. */
};

/* Where clients ask whom a resolver they know by address designates (RFC 9462 section 4). */
#define DDR_ARPA "_dns.resolver.arpa"
/* The SvcParamKeys written (RFC 9460 section 14.3.2, RFC 9461 section 5). */
enum { KEY_ALPN = 1, KEY_PORT = 3, KEY_IPV4HINT = 4, KEY_IPV6HINT = 6, KEY_DOHPATH = 7 };
#define DDR_PATH_MAX 1024 /* Longest dohpath template taken. */

static int key_cmp(const struct name *a, const struct name *b)
{
	size_t n = a->keylen < b->keylen ? a->keylen : b->keylen;
	int c = memcmp(a->key, b->key, n);
	return c ? c : (int)a->keylen - (int)b->keylen;
}

/* The same name? Lengths first: most queries differ there. A keylen of 0 matches nothing. */
static bool same_name(const struct name *a, const struct name *b)
{
	return a->keylen == b->keylen && memcmp(a->key, b->key, a->keylen) == 0;
}

static int zone_cmp(const void *a, const void *b)
{
	return key_cmp(&((const struct zone *)a)->name, &((const struct zone *)b)->name);
}

static int record_cmp(const void *a, const void *b)
{
	const struct local_zone_record *x = a, *y = b;
	int c = key_cmp(&x->name, &y->name);
	return c ? c : (int)x->type - (int)y->type;
}

static const struct zone *find_zone(const local_t *l, const struct name *qname);

/* ---- The table ----------------------------------------------------------------------------- */

void local_free(local_t *l)
{
	if (!l)
		return;
	for (unsigned i = 0; i < l->ndata; i++)
		free(l->data[i].rdata);
	free(l->data);
	for (unsigned i = 0; i < l->nddr; i++)
		free(l->ddr[i].rdata);
	free(l);
}

static uint8_t *put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

/* One SvcParam: key, length, value. */
static uint8_t *param(uint8_t *p, unsigned key, const void *value, size_t len)
{
	p = put16(p, key);
	p = put16(p, (unsigned)len);
	memcpy(p, value, len);
	return p + len;
}

/* The SVCB rdata of endpoint e (ServiceMode, RFC 9460 section 2.2): priority, target, then the
 * SvcParams in increasing key order, as the RFC requires. @return 0, or -EINVAL with a message. */
static int ddr_record(struct local_zone_record *r, unsigned priority, const struct name *target,
		      const struct local_ddr_endpoint *e, char *err, size_t errlen)
{
	size_t alen = e->alpn ? strlen(e->alpn) : 0;
	size_t plen = e->dohpath ? strlen(e->dohpath) : 0;
	if (alen == 0 || alen > 255 || plen > DDR_PATH_MAX ||
	    (e->addr.ss_family != AF_INET && e->addr.ss_family != AF_INET6)) {
		snprintf(err, errlen, "DDR: endpoint %u is not one SVCB can describe", priority);
		return -EINVAL;
	}
	uint8_t buf[2 + NAME_MAXWIRE + 4 + 256 + 4 + 2 + 4 + 16 + 4 + DDR_PATH_MAX];
	uint8_t *p = put16(buf, priority);
	int n = name_suffix_to_wire(target, target->nlabels, p, NAME_MAXWIRE);
	if (n < 0)
		abort(); /* A struct name always fits. */
	p += n;
	uint8_t alpn[256] = {(uint8_t)alen};
	memcpy(alpn + 1, e->alpn, alen);
	p = param(p, KEY_ALPN, alpn, 1 + alen);
	uint8_t port[2];
	put16(port, options_port(&e->addr));
	p = param(p, KEY_PORT, port, 2);
	/* A wildcard listener's addresses are those clients already use: no hint. */
	if (!options_is_wildcard(&e->addr)) {
		if (e->addr.ss_family == AF_INET)
			p = param(p, KEY_IPV4HINT, &((const struct sockaddr_in *)&e->addr)->sin_addr, 4);
		else
			p = param(p, KEY_IPV6HINT, &((const struct sockaddr_in6 *)&e->addr)->sin6_addr,
				  16);
	}
	if (e->dohpath)
		p = param(p, KEY_DOHPATH, e->dohpath, plen);
	r->type = WIRE_TYPE_SVCB;
	r->ttl = LOCAL_DDR_TTL;
	r->rdlen = (uint16_t)(p - buf);
	r->rdata = malloc(r->rdlen);
	if (!r->rdata) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memcpy(r->rdata, buf, r->rdlen);
	return 0;
}

/* DDR's records from d, and the names they answer at. */
static int ddr_new(local_t *l, const struct local_ddr *d, char *err, size_t errlen)
{
	struct name target;
	const char *t = d->target && *d->target ? d->target : ".";
	size_t tlen = strlen(t);
	if (tlen > 1 && t[tlen - 1] == '.')
		tlen--;
	if (name_from_text(&target, t, tlen) < 0) {
		snprintf(err, errlen, "DDR: '%s' is not a name SVCB can carry", t);
		return -EINVAL;
	}
	if (d->nendpoint > LOCAL_DDR_MAX) {
		snprintf(err, errlen, "DDR: more than %u endpoints", (unsigned)LOCAL_DDR_MAX);
		return -EINVAL;
	}
	for (unsigned i = 0; i < d->nendpoint; i++, l->nddr++)
		if (ddr_record(&l->ddr[i], i + 1, &target, &d->endpoint[i], err, errlen) < 0)
			return -EINVAL;
	/* _dns.resolver.arpa, unless --no-local-zone handed resolver.arpa back to the upstreams. */
	if (name_from_text(&l->ddr_arpa, DDR_ARPA, strlen(DDR_ARPA)) < 0)
		abort();
	if (!find_zone(l, &l->ddr_arpa))
		l->ddr_arpa.keylen = 0;
	if (d->answer_target && target.nlabels > 0) {
		char own[NAME_MAXTEXT + 8];
		snprintf(own, sizeof(own), "_dns.%.*s", (int)tlen, t);
		if (name_from_text(&l->ddr_own, own, strlen(own)) < 0) {
			snprintf(err, errlen, "DDR: '%s' is too long a name", own);
			return -EINVAL;
		}
		if (same_name(&l->ddr_own, &l->ddr_arpa))
			l->ddr_own.keylen = 0;
	}
	return 0;
}

local_t *local_new(const struct options *o, const struct local_ddr *ddr, char *err,
		   size_t errlen)
{
	local_t *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	char buf[64];
	for (unsigned i = 0; i < LOCAL_ZONES; i++) {
		if (o->local_off[i / 64] & (1ull << (i % 64)))
			continue;
		struct zone *z = &l->zone[l->nzone];
		const char *t = local_zone_name(i, buf, sizeof(buf));
		if (name_from_text(&z->name, t, strlen(t)) < 0)
			abort(); /* The table above is broken. */
		z->kind = local_zone_kind(i);
		z->index = i;
		z->ptr_apex = i == 2;
		z->ptr_one = i == 1;
		l->nzone++;
	}
	qsort(l->zone, l->nzone, sizeof(l->zone[0]), zone_cmp);
	for (unsigned i = 0; i < l->nzone; i++) {
		const uint8_t *label = l->zone[i].name.key;
		struct tld *t = l->ntld ? &l->tld[l->ntld - 1] : NULL;
		if (!t || memcmp(t->label, label, 1u + label[0]) != 0) {
			if (l->ntld == sizeof(l->tld) / sizeof(l->tld[0]))
				abort(); /* More top-level labels than the table holds. */
			t = &l->tld[l->ntld++];
			memcpy(t->label, label, 1u + label[0]);
			t->lo = i;
		}
		t->hi = i + 1;
		/* The search below finds the zone before a name: zones never nest. */
		if (i > 0 && name_is_below(&l->zone[i].name, &l->zone[i - 1].name))
			abort();
	}
	if (o->nlocal_data) {
		l->data = calloc(o->nlocal_data, sizeof(*l->data));
		if (!l->data) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		for (unsigned i = 0; i < o->nlocal_data; i++, l->ndata++)
			if (local_zone_parse_data(o->local_data[i], &l->data[i], err, errlen) < 0)
				goto fail;
		qsort(l->data, l->ndata, sizeof(l->data[0]), record_cmp);
	}
	if (ddr && ddr->nendpoint && ddr_new(l, ddr, err, errlen) < 0)
		goto fail;
	return l;
fail:
	local_free(l);
	return NULL;
}

/* ---- Answers ------------------------------------------------------------------------------- */

/* The DDR records under the query's own name (SVCB or ANY), or NODATA for other types. */
static int ddr_answer(const local_t *l, const uint8_t *query, const struct wire_query *q,
		      uint8_t *out, size_t cap)
{
	struct answer_rr an[LOCAL_DDR_MAX];
	unsigned n = 0;
	if (q->qtype == WIRE_TYPE_SVCB || q->qtype == WIRE_TYPE_ANY)
		for (; n < l->nddr; n++)
			an[n] = (struct answer_rr){q->qname.nlabels, WIRE_TYPE_SVCB, l->ddr[n].ttl,
						   l->ddr[n].rdata, l->ddr[n].rdlen};
	return answer_local(out, cap, query, q, WIRE_RCODE_NOERROR, an, n, NULL, 0);
}

static const struct zone *find_zone(const local_t *l, const struct name *qname)
{
	const uint8_t *label = qname->key;
	for (unsigned t = 0; t < l->ntld; t++) {
		const struct tld *d = &l->tld[t];
		if (d->label[0] != label[0] || memcmp(d->label + 1, label + 1, label[0]) != 0)
			continue;
		/* The last zone not after the name is the only one that can hold it. */
		unsigned lo = d->lo, hi = d->hi;
		while (hi - lo > 1) {
			unsigned mid = lo + (hi - lo) / 2;
			if (key_cmp(&l->zone[mid].name, qname) <= 0)
				lo = mid;
			else
				hi = mid;
		}
		const struct zone *z = &l->zone[lo];
		return name_is_below(qname, &z->name) ? z : NULL;
	}
	return NULL;
}

static int data_answer(const local_t *l, const uint8_t *query, const struct wire_query *q,
		       uint8_t *out, size_t cap, unsigned lo)
{
	unsigned hi = lo;
	while (hi < l->ndata && key_cmp(&l->data[hi].name, &q->qname) == 0)
		hi++;
	struct answer_rr an[64];
	unsigned n = 0;
	for (int pass = 0; pass < 2 && n == 0; pass++)
		for (unsigned i = lo; i < hi && n < 64; i++) {
			const struct local_zone_record *r = &l->data[i];
			/* The asked type (or all, for ANY); failing that a CNAME stands in. */
			bool take = pass == 0 ? r->type == q->qtype || q->qtype == WIRE_TYPE_ANY
					      : r->type == WIRE_TYPE_CNAME;
			if (take)
				an[n++] = (struct answer_rr){q->qname.nlabels, r->type, r->ttl, r->rdata,
							     r->rdlen};
		}
	return answer_local(out, cap, query, q, WIRE_RCODE_NOERROR, an, n, NULL, 0);
}

int local_answer(const local_t *l, const uint8_t *query, const struct wire_query *q, uint8_t *out,
		 size_t cap)
{
	if (q->qclass != 1)
		return 0;
	if (l->ndata) {
		unsigned lo = 0, hi = l->ndata;
		while (lo < hi) {
			unsigned mid = lo + (hi - lo) / 2;
			if (key_cmp(&l->data[mid].name, &q->qname) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < l->ndata && key_cmp(&l->data[lo].name, &q->qname) == 0)
			return data_answer(l, query, q, out, cap, lo);
	}
	if (l->nddr) {
		/* _dns.TARGET is answered as local data; at _dns.resolver.arpa other types are
		 * the zone's NODATA, with its SOA. */
		bool svcb = q->qtype == WIRE_TYPE_SVCB || q->qtype == WIRE_TYPE_ANY;
		if (same_name(&l->ddr_own, &q->qname) || (svcb && same_name(&l->ddr_arpa, &q->qname)))
			return ddr_answer(l, query, q, out, cap);
	}
	const struct zone *z = find_zone(l, &q->qname);
	if (!z)
		return 0;
	unsigned zd = z->name.nlabels;
	bool apex = q->qname.nlabels == zd, any = q->qtype == WIRE_TYPE_ANY;
	struct answer_rr soa = {zd, WIRE_TYPE_SOA, LOCAL_TTL, SOA, sizeof(SOA)};
	struct answer_rr an[4];
	unsigned n = 0;
	unsigned rcode = WIRE_RCODE_NOERROR;
	switch (z->kind) {
	case LOCAL_ZONE_NXDOMAIN:
		rcode = WIRE_RCODE_NXDOMAIN;
		break;
	case LOCAL_ZONE_NODATA:
		break;
	case LOCAL_ZONE_REDIRECT: {
		/* Every name below answers as the apex, under its own name. */
		unsigned d = q->qname.nlabels;
		if (any || q->qtype == WIRE_TYPE_A)
			an[n++] = (struct answer_rr){d, WIRE_TYPE_A, LOCAL_TTL, LOOPBACK4, 4};
		if (any || q->qtype == WIRE_TYPE_AAAA)
			an[n++] = (struct answer_rr){d, WIRE_TYPE_AAAA, LOCAL_TTL, LOOPBACK6, 16};
		if (any || q->qtype == WIRE_TYPE_NS)
			an[n++] = (struct answer_rr){d, WIRE_TYPE_NS, LOCAL_TTL, LOCALHOST,
						     sizeof(LOCALHOST)};
		if (any || q->qtype == WIRE_TYPE_SOA)
			an[n++] = (struct answer_rr){d, WIRE_TYPE_SOA, LOCAL_TTL, SOA, sizeof(SOA)};
		break;
	}
	case LOCAL_ZONE_STATIC: {
		static const uint8_t ONE[] = {1, '0', 1, '0', 1, '1', 0}; /* 0.0.1 from the top */
		bool ptr_here = (apex && z->ptr_apex) ||
				(z->ptr_one && q->qname.nlabels == zd + 3 &&
				 memcmp(q->qname.key + z->name.keylen - 1, ONE, sizeof(ONE)) == 0);
		if (!apex && !ptr_here) {
			rcode = WIRE_RCODE_NXDOMAIN;
			break;
		}
		if (ptr_here && (any || q->qtype == WIRE_TYPE_PTR))
			an[n++] = (struct answer_rr){q->qname.nlabels, WIRE_TYPE_PTR, LOCAL_TTL,
						     LOCALHOST, sizeof(LOCALHOST)};
		if (apex && (any || q->qtype == WIRE_TYPE_SOA))
			an[n++] = soa;
		if (apex && (any || q->qtype == WIRE_TYPE_NS))
			an[n++] = (struct answer_rr){zd, WIRE_TYPE_NS, LOCAL_TTL, LOCALHOST,
						     sizeof(LOCALHOST)};
		break;
	}
	}
	/* No answer: the zone's SOA says why (NXDOMAIN or NODATA), as Unbound's local zones. */
	return answer_local(out, cap, query, q, rcode, an, n, n ? NULL : &soa, n ? 0 : 1);
}
