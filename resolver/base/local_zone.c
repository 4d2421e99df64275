/* The catalogue of local answers that the settings may name: Unbound's default local zones and
 * embargo's own (their names, how each answers, handing them back with --no-local-zone), and the
 * parser of --local-data records (ldns, text to wire). Used by the settings to check what they
 * are given and by resolver/query/local.c to build the table in force; it must not answer
 * queries or keep state. */
#include "config.h"

#include "resolver/base/local_zone.h"

#include <errno.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct zone_def {
	const char *text;
	enum local_zone_kind kind;
};

/* Unbound's default local zones (services/localzone.c, util/as112.c), then embargo's own. */
static const struct zone_def ZONES[] = {
	{"localhost", LOCAL_ZONE_REDIRECT},
	{"127.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", LOCAL_ZONE_STATIC},
	{"test", LOCAL_ZONE_STATIC},
	{"invalid", LOCAL_ZONE_STATIC},
	{"onion", LOCAL_ZONE_STATIC},
	{"home.arpa", LOCAL_ZONE_STATIC},
	{"service.arpa", LOCAL_ZONE_STATIC},
	{"10.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"16.172.in-addr.arpa", LOCAL_ZONE_STATIC}, {"17.172.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"18.172.in-addr.arpa", LOCAL_ZONE_STATIC}, {"19.172.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"20.172.in-addr.arpa", LOCAL_ZONE_STATIC}, {"21.172.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"22.172.in-addr.arpa", LOCAL_ZONE_STATIC}, {"23.172.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"24.172.in-addr.arpa", LOCAL_ZONE_STATIC}, {"25.172.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"26.172.in-addr.arpa", LOCAL_ZONE_STATIC}, {"27.172.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"28.172.in-addr.arpa", LOCAL_ZONE_STATIC}, {"29.172.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"30.172.in-addr.arpa", LOCAL_ZONE_STATIC}, {"31.172.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"168.192.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"0.in-addr.arpa", LOCAL_ZONE_STATIC},
	/* 100.64.0.0/10, RFC 6598 (RFC 7793): 64..127.100.in-addr.arpa, filled in below. */
	{"254.169.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"2.0.192.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"100.51.198.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"113.0.203.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"255.255.255.255.in-addr.arpa", LOCAL_ZONE_STATIC},
	{"0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", LOCAL_ZONE_STATIC},
	{"d.f.ip6.arpa", LOCAL_ZONE_STATIC},
	{"8.e.f.ip6.arpa", LOCAL_ZONE_STATIC}, {"9.e.f.ip6.arpa", LOCAL_ZONE_STATIC},
	{"a.e.f.ip6.arpa", LOCAL_ZONE_STATIC}, {"b.e.f.ip6.arpa", LOCAL_ZONE_STATIC},
	{"8.b.d.0.1.0.0.2.ip6.arpa", LOCAL_ZONE_STATIC},
	/* RFC 9462 (DDR): a _dns.resolver.arpa SVCB answer from a public upstream would send
	 * Windows, Apple and Android clients to that upstream's DoH past embargo; the zone has no
	 * data but, with encrypted listeners, the SVCB records that name embargo's own
	 * (resolver/query/local.c). The canaries answer NXDOMAIN: Firefox then keeps its default
	 * DoH off, and Apple's Private Relay stays off. */
	{"resolver.arpa", LOCAL_ZONE_NODATA},
	{"use-application-dns.net", LOCAL_ZONE_NXDOMAIN},
	{"mask.icloud.com", LOCAL_ZONE_NXDOMAIN},
	{"mask-h2.icloud.com", LOCAL_ZONE_NXDOMAIN},
};
#define NDEFS (sizeof(ZONES) / sizeof(ZONES[0]))
#define NSHARED 64 /* 64..127.100.in-addr.arpa */
_Static_assert(LOCAL_ZONES == NDEFS + NSHARED, "LOCAL_ZONES counts the table");

enum local_zone_kind local_zone_kind(unsigned i)
{
	return i < NDEFS ? ZONES[i].kind : LOCAL_ZONE_STATIC;
}

const char *local_zone_name(unsigned i, char *buf, size_t cap)
{
	if (i >= LOCAL_ZONES)
		return NULL;
	if (i < NDEFS)
		return ZONES[i].text;
	snprintf(buf, cap, "%u.100.in-addr.arpa", 64 + (unsigned)(i - NDEFS));
	return buf;
}

int local_zone_off(uint64_t *off, const char *text)
{
	size_t len = strlen(text);
	if (len > 1 && text[len - 1] == '.')
		len--;
	struct name top;
	if (name_from_text(&top, text, len) < 0)
		return -EINVAL;
	int n = 0;
	char buf[64];
	for (unsigned i = 0; i < LOCAL_ZONES; i++) {
		const char *zt = local_zone_name(i, buf, sizeof(buf));
		struct name z;
		if (name_from_text(&z, zt, strlen(zt)) == 0 && name_is_below(&z, &top)) {
			off[i / 64] |= 1ull << (i % 64);
			n++;
		}
	}
	return n > 0 ? n : -EINVAL;
}

int local_zone_parse_data(const char *text, struct local_zone_record *r, char *err, size_t errlen)
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

int local_zone_check_data(const char *text, char *err, size_t errlen)
{
	struct local_zone_record r;
	if (local_zone_parse_data(text, &r, err, errlen) < 0)
		return -EINVAL;
	free(r.rdata);
	return 0;
}
