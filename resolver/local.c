/* Local zones and local data: the default zones' table, the answers each kind gives, and the
 * --local-data records parsed with ldns into wire form once, at start. */
#include "config.h"

#include "resolver/local.h"

#include <errno.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/answer.h"

/* How a default zone answers. */
enum kind {
	STATIC,   /* Unbound's "static": SOA and NS at the apex, NODATA there, NXDOMAIN below. */
	REDIRECT, /* localhost: every name at or below it is 127.0.0.1 / ::1. */
	NODATA,   /* resolver.arpa: NODATA for every name (no DDR records yet). */
	NXDOMAIN, /* The canaries: NXDOMAIN for every name, the apex too (as Pi-hole). */
};

struct zone_def {
	const char *text;
	enum kind kind;
};

/* Unbound's default local zones (services/localzone.c, util/as112.c), then embargo's own. */
static const struct zone_def ZONES[] = {
	{"localhost", REDIRECT},
	{"127.in-addr.arpa", STATIC},
	{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", STATIC},
	{"test", STATIC},
	{"invalid", STATIC},
	{"onion", STATIC},
	{"home.arpa", STATIC},
	{"service.arpa", STATIC},
	{"10.in-addr.arpa", STATIC},
	{"16.172.in-addr.arpa", STATIC}, {"17.172.in-addr.arpa", STATIC},
	{"18.172.in-addr.arpa", STATIC}, {"19.172.in-addr.arpa", STATIC},
	{"20.172.in-addr.arpa", STATIC}, {"21.172.in-addr.arpa", STATIC},
	{"22.172.in-addr.arpa", STATIC}, {"23.172.in-addr.arpa", STATIC},
	{"24.172.in-addr.arpa", STATIC}, {"25.172.in-addr.arpa", STATIC},
	{"26.172.in-addr.arpa", STATIC}, {"27.172.in-addr.arpa", STATIC},
	{"28.172.in-addr.arpa", STATIC}, {"29.172.in-addr.arpa", STATIC},
	{"30.172.in-addr.arpa", STATIC}, {"31.172.in-addr.arpa", STATIC},
	{"168.192.in-addr.arpa", STATIC},
	{"0.in-addr.arpa", STATIC},
	/* 100.64.0.0/10, RFC 6598 (RFC 7793): 64..127.100.in-addr.arpa, filled in below. */
	{"254.169.in-addr.arpa", STATIC},
	{"2.0.192.in-addr.arpa", STATIC},
	{"100.51.198.in-addr.arpa", STATIC},
	{"113.0.203.in-addr.arpa", STATIC},
	{"255.255.255.255.in-addr.arpa", STATIC},
	{"0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", STATIC},
	{"d.f.ip6.arpa", STATIC},
	{"8.e.f.ip6.arpa", STATIC}, {"9.e.f.ip6.arpa", STATIC},
	{"a.e.f.ip6.arpa", STATIC}, {"b.e.f.ip6.arpa", STATIC},
	{"8.b.d.0.1.0.0.2.ip6.arpa", STATIC},
	/* RFC 9462 (DDR): a _dns.resolver.arpa SVCB answer from a public upstream would send
	 * Windows, Apple and Android clients to that upstream's DoH past embargo; until embargo has
	 * encrypted listeners of its own, the zone has no data. The canaries answer NXDOMAIN: Firefox
	 * then keeps its default DoH off, and Apple's Private Relay stays off. */
	{"resolver.arpa", NODATA},
	{"use-application-dns.net", NXDOMAIN},
	{"mask.icloud.com", NXDOMAIN},
	{"mask-h2.icloud.com", NXDOMAIN},
};
#define NDEFS (sizeof(ZONES) / sizeof(ZONES[0]))
#define NSHARED 64 /* 64..127.100.in-addr.arpa */
#define NZONES (NDEFS + NSHARED)
_Static_assert(NZONES <= 64 * sizeof(((struct options *)0)->local_off) / sizeof(uint64_t),
	       "options.local_off has a bit per zone");

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
	enum kind kind;
	unsigned index; /* Its bit in options.local_off. */
	bool ptr_apex;  /* ::1's reverse zone: PTR localhost at the apex. */
	bool ptr_one;   /* 127.in-addr.arpa: PTR localhost at 1.0.0.127. */
};

/* The zones under one top-level label, zone[lo..hi). */
struct tld {
	uint8_t label[NAME_MAXLABEL + 1]; /* Length octet and letters, as in the key. */
	unsigned lo, hi;
};

struct record {
	struct name name;
	uint16_t type;
	uint32_t ttl;
	uint16_t rdlen;
	uint8_t *rdata; /* Owned. */
};

struct local {
	struct zone zone[NZONES]; /* In force, sorted by key. */
	unsigned nzone;
	struct tld tld[16];
	unsigned ntld;
	struct record *data; /* Sorted by key, then type. */
	unsigned ndata;
};

static const char *zone_text(unsigned i, char *buf, size_t cap)
{
	if (i < NDEFS)
		return ZONES[i].text;
	snprintf(buf, cap, "%u.100.in-addr.arpa", 64 + (unsigned)(i - NDEFS));
	return buf;
}

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
	const struct record *x = a, *y = b;
	int c = key_cmp(&x->name, &y->name);
	return c ? c : (int)x->type - (int)y->type;
}

/* Is n at or below z (z's key without its final 0 starts n's key)? */
static bool is_below(const struct name *n, const struct name *z)
{
	return n->keylen >= z->keylen && memcmp(n->key, z->key, z->keylen - 1u) == 0;
}

const char *local_zone_name(unsigned i, char *buf, size_t cap)
{
	if (i >= NZONES)
		return NULL;
	if (i < NDEFS)
		snprintf(buf, cap, "%s", ZONES[i].text);
	else
		zone_text(i, buf, cap);
	return buf;
}

int local_zone_off(struct options *o, const char *text)
{
	size_t len = strlen(text);
	if (len > 1 && text[len - 1] == '.')
		len--;
	struct name top;
	if (name_from_text(&top, text, len) < 0)
		return -EINVAL;
	int n = 0;
	char buf[64];
	for (unsigned i = 0; i < NZONES; i++) {
		const char *zt = zone_text(i, buf, sizeof(buf));
		struct name z;
		if (name_from_text(&z, zt, strlen(zt)) == 0 && is_below(&z, &top)) {
			o->local_off[i / 64] |= 1ull << (i % 64);
			n++;
		}
	}
	return n > 0 ? n : -EINVAL;
}

/* ---- Local data ---------------------------------------------------------------------------- */

static int parse_record(const char *text, struct record *r, char *err, size_t errlen)
{
	ldns_rr *rr = NULL;
	uint8_t *wire = NULL;
	size_t size = 0;
	char *owner = NULL;
	ldns_status s = ldns_rr_new_frm_str(&rr, text, LOCAL_DATA_TTL, NULL, NULL);
	if (s != LDNS_STATUS_OK) {
		snprintf(err, errlen, "--local-data: '%s': %s", text, ldns_get_errorstr_by_id(s));
		return -EINVAL;
	}
	if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN) {
		snprintf(err, errlen, "--local-data: '%s': only class IN is served", text);
		goto fail;
	}
	ldns_rr_type t = ldns_rr_get_type(rr);
	if (t == LDNS_RR_TYPE_OPT || t == LDNS_RR_TYPE_RRSIG || t == LDNS_RR_TYPE_ANY ||
	    t == LDNS_RR_TYPE_AXFR || t == LDNS_RR_TYPE_IXFR) {
		snprintf(err, errlen, "--local-data: '%s': type %u cannot be local data", text,
			 (unsigned)t);
		goto fail;
	}
	owner = ldns_rdf2str(ldns_rr_owner(rr));
	size_t olen = owner ? strlen(owner) : 0;
	if (olen > 1 && owner[olen - 1] == '.')
		olen--;
	if (!owner || name_from_text(&r->name, owner, olen) < 0) {
		snprintf(err, errlen, "--local-data: '%s': the name is not one embargo serves", text);
		goto fail;
	}
	if (ldns_rr2wire(&wire, rr, LDNS_SECTION_ANSWER, &size) != LDNS_STATUS_OK) {
		snprintf(err, errlen, "--local-data: '%s': cannot encode it", text);
		goto fail;
	}
	size_t at = ldns_rdf_size(ldns_rr_owner(rr)) + 10;
	if (size < at || size - at > 65535) {
		snprintf(err, errlen, "--local-data: '%s': cannot encode it", text);
		goto fail;
	}
	r->type = (uint16_t)t;
	r->ttl = ldns_rr_ttl(rr);
	r->rdlen = (uint16_t)(size - at);
	r->rdata = malloc(r->rdlen ? r->rdlen : 1);
	if (!r->rdata) {
		snprintf(err, errlen, "--local-data: out of memory");
		goto fail;
	}
	memcpy(r->rdata, wire + at, r->rdlen);
	free(wire);
	free(owner);
	ldns_rr_free(rr);
	return 0;
fail:
	free(wire);
	free(owner);
	ldns_rr_free(rr);
	return -EINVAL;
}

int local_data_check(const char *text, char *err, size_t errlen)
{
	struct record r;
	if (parse_record(text, &r, err, errlen) < 0)
		return -EINVAL;
	free(r.rdata);
	return 0;
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
	for (unsigned i = 0; i < NZONES; i++) {
		if (o->local_off[i / 64] & (1ull << (i % 64)))
			continue;
		struct zone *z = &l->zone[l->nzone];
		const char *t = zone_text(i, buf, sizeof(buf));
		if (name_from_text(&z->name, t, strlen(t)) < 0)
			abort(); /* The table above is broken. */
		z->kind = i < NDEFS ? ZONES[i].kind : STATIC;
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
		if (i > 0 && is_below(&l->zone[i].name, &l->zone[i - 1].name))
			abort();
	}
	if (o->nlocal_data) {
		l->data = calloc(o->nlocal_data, sizeof(*l->data));
		if (!l->data) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		for (unsigned i = 0; i < o->nlocal_data; i++, l->ndata++)
			if (parse_record(o->local_data[i], &l->data[i], err, errlen) < 0)
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
		return is_below(qname, &z->name) ? z : NULL;
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
			const struct record *r = &l->data[i];
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
	case NXDOMAIN:
		rcode = WIRE_RCODE_NXDOMAIN;
		break;
	case NODATA:
		break;
	case REDIRECT: {
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
	case STATIC: {
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
