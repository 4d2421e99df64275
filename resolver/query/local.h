/* Names embargo answers itself and never forwards, as Unbound's default local zones: localhost
 * (RFC 6761), the special-use names test., invalid., onion., home.arpa., service.arpa., the
 * reverse zones of loopback and of private, shared, link-local, documentation and ULA space
 * (RFC 6303, RFC 7793), and the doors around the filter (DDR's resolver.arpa, Firefox's DoH
 * canary, Apple's Private Relay canary). Each default can be handed back to the upstreams with
 * --no-local-zone. On top of them, --local-data records ("NAME TYPE RDATA", parsed with ldns)
 * answer their exact name, as Unbound's local-data in a transparent zone, and with encrypted
 * listeners _dns.resolver.arpa SVCB designates embargo itself (DDR, RFC 9462), from a plain
 * description the top layer builds: this module never reads a certificate or a socket.
 *
 * The check runs on every query: the zones are sorted in lookup format and grouped by top-level
 * label, so a name outside them costs a few length comparisons. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "resolver/base/local_zone.h"
#include "resolver/base/options.h"
#include "resolver/base/wire.h"

typedef struct local local_t;

/** TTL of the default zones' records, as Unbound's. */
#define LOCAL_TTL 10800

/** TTL of the DDR records: a reload may bring a certificate with another name. */
#define LOCAL_DDR_TTL 300

/** Encrypted endpoints a DDR description holds: every --listen-tls, and as many for DoH. */
#define LOCAL_DDR_MAX (2 * OPTIONS_MAX_ADDRS)

/** One encrypted endpoint of embargo's, as DDR designates it (RFC 9461, RFC 9462). */
struct local_ddr_endpoint {
	const char *alpn;    /**< Its ALPN protocol id: "dot", or "h2" for DoH. Borrowed. */
	const char *dohpath; /**< DoH's URI template (RFC 9461), e.g. "/dns-query{?dns}"; NULL
			      *   for DoT. Borrowed. */
	struct sockaddr_storage addr; /**< Where it listens: its port, and its address as the
				       *   ipv4hint or ipv6hint unless it is a wildcard. */
};

/** What DDR answers say about embargo: the name its certificate is valid for and its encrypted
 *  endpoints, in the order of their SvcPriority (1, 2, ...). Built by the top layer from the
 *  settings and the certificate; local_new() copies what it keeps. */
struct local_ddr {
	const char *target;  /**< The TargetName (presentation form, the resolver's name), or NULL
			      *   for "." (the owner name: clients cannot verify it). Borrowed. */
	bool answer_target;  /**< Answer _dns.TARGET SVCB too, as local data (--resolver-name). */
	struct local_ddr_endpoint endpoint[LOCAL_DDR_MAX];
	unsigned nendpoint;  /**< 0: no DDR answers (resolver.arpa stays NODATA). */
};

/** The local answers that o leaves in force, with o's --local-data records and, when ddr has
 *  endpoints (NULL: none), the DDR records at _dns.resolver.arpa (unless --no-local-zone hands
 *  resolver.arpa back). ddr is borrowed for the call.
 *  @return the table (owned: local_free), NULL with a message in err. */
local_t *local_new(const struct options *o, const struct local_ddr *ddr, char *err,
		   size_t errlen);
/** Free a table. NULL is a no-op. */
void local_free(local_t *l);

/** Answer q locally when its name is local data or in a local zone: writes the answer into
 *  out[cap]. @return its length; 0 when q goes on to the cache and the upstreams; -ENOSPC when
 *  the answer does not fit in cap. */
int local_answer(const local_t *l, const uint8_t *query, const struct wire_query *q, uint8_t *out,
		 size_t cap);
