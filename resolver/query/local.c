/* Local zones and local data on the query path: the zones and records in force (from
 * resolver/base/local_zone.c's catalogue and parser), sorted once, and the answer each kind
 * gives. It must not parse text or allocate per query. */
#include "config.h"

#include "resolver/query/local.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/query/answer.h"
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
};

static int key_cmp(const struct name *a, const struct name *b)
{
	size_t n = a->keylen < b->keylen ? a->keylen : b->keylen;
	int c = memcmp(a->key, b->key, n);
	return c ? c : (int)a->keylen - (int)b->keylen;
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

/* ---- The table ----------------------------------------------------------------------------- */

void local_free(local_t *l)
{
	if (!l)
		return;
	for (unsigned i = 0; i < l->ndata; i++)
		free(l->data[i].rdata);
	free(l->data);
	free(l);
}

local_t *local_new(const struct options *o, char *err, size_t errlen)
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
	return l;
fail:
	local_free(l);
	return NULL;
}

/* ---- Answers ------------------------------------------------------------------------------- */

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
