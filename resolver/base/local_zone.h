/* The catalogue of local answers the settings may name: the default local zones (Unbound's, as
 * localhost, RFC 6303/7793 reverse zones and the special-use names, plus embargo's own doors
 * around the filter), each with how it answers and a bit in options.local_off, and the parser of
 * --local-data records (ldns). Settings check their input with it; resolver/query/local.c builds
 * the table in force from it. It never answers a query. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/name.h"

/** How a default zone answers. */
enum local_zone_kind {
	LOCAL_ZONE_STATIC,   /**< Unbound's "static": SOA and NS at the apex, NODATA there,
			      *   NXDOMAIN below. */
	LOCAL_ZONE_REDIRECT, /**< localhost: every name at or below it is 127.0.0.1 / ::1. */
	LOCAL_ZONE_NODATA,   /**< resolver.arpa: NODATA for every name (but embargo's own DDR
			      *   records, resolver/query/local.c). */
	LOCAL_ZONE_NXDOMAIN, /**< The canaries: NXDOMAIN for every name, the apex too. */
};

/** How many default zones there are (43 named, then 64..127.100.in-addr.arpa). */
#define LOCAL_ZONES (43 + 64)

/** TTL of --local-data records that give none. */
#define LOCAL_DATA_TTL 3600

/** One --local-data record in wire form. */
struct local_zone_record {
	struct name name;
	uint16_t type;
	uint32_t ttl;
	uint16_t rdlen;
	uint8_t *rdata; /**< Owned: free(). */
};

/** The name of default local zone i (its bit in options.local_off), presentation form.
 *  @return the name (static, or written into buf[cap], which needs 24 octets), or NULL when
 *  there is no zone i. */
const char *local_zone_name(unsigned i, char *buf, size_t cap);

/** How default zone i (< LOCAL_ZONES) answers. */
enum local_zone_kind local_zone_kind(unsigned i);

/** Words of a bit set with a bit per default zone (options.local_off). */
#define LOCAL_ZONE_WORDS ((LOCAL_ZONES + 63) / 64)

/** Hand back (set in off, LOCAL_ZONE_WORDS words) every default zone at or below text
 *  (presentation form, trailing dot optional), as Unbound's nodefault.
 *  @return how many, or -EINVAL when none. */
int local_zone_off(uint64_t *off, const char *text);

/** Parse one --local-data record, "NAME [TTL] [IN] TYPE RDATA", into *r (r->rdata owned by the
 *  caller). @return 0, or -EINVAL with a message in err. */
int local_zone_parse_data(const char *text, struct local_zone_record *r, char *err,
			  size_t errlen);

/** Check one --local-data record. @return 0, or -EINVAL with a message in err. */
int local_zone_check_data(const char *text, char *err, size_t errlen);
