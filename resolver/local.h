/* Names embargo answers itself and never forwards: the doors around the filter (DDR's
 * resolver.arpa, Firefox's DoH canary, Apple's Private Relay canary), each handed back to the
 * upstreams with --no-local-zone. A zone covers its name and everything below it; the check is a
 * few prefix comparisons of the query's lookup-format key, cheap enough for every query. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "policy/name.h"
#include "resolver/options.h"

/** How a local zone answers. */
enum local_type {
	LOCAL_NXDOMAIN = 0, /**< NXDOMAIN with the zone's SOA. */
	LOCAL_NODATA,       /**< NOERROR, no answer, the zone's SOA. */
};

/** What local_find() found. */
struct local_match {
	enum local_type type;
	unsigned depth; /**< Labels of the zone's name (the SOA owner is that suffix). */
};

/** Build the zones' keys; call once before any local_find() (the daemon: before its workers
 *  start). Idempotent. */
void local_init(void);

/** Is qname in one of the local zones that o leaves in force? Sets *m if so. */
bool local_find(const struct options *o, const struct name *qname, struct local_match *m);

/** The index of the default local zone named text (presentation form, trailing dot optional),
 *  the bit that --no-local-zone sets in options.local_off; -1 when there is none. */
int local_zone_index(const char *text);
