/* Names embargo answers itself and never forwards, as Unbound's default local zones: localhost
 * (RFC 6761), the special-use names test., invalid., onion., home.arpa., service.arpa., the
 * reverse zones of loopback and of private, shared, link-local, documentation and ULA space
 * (RFC 6303, RFC 7793), and the doors around the filter (DDR's resolver.arpa, Firefox's DoH
 * canary, Apple's Private Relay canary). Each default can be handed back to the upstreams with
 * --no-local-zone. On top of them, --local-data records ("NAME TYPE RDATA", parsed with ldns)
 * answer their exact name, as Unbound's local-data in a transparent zone.
 *
 * The check runs on every query: the zones are sorted in lookup format and grouped by top-level
 * label, so a name outside them costs a few length comparisons. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resolver/base/local_zone.h"
#include "resolver/base/options.h"
#include "resolver/base/wire.h"

typedef struct local local_t;

/** TTL of the default zones' records, as Unbound's. */
#define LOCAL_TTL 10800

/** The local answers that o leaves in force, with o's --local-data records.
 *  @return the table (owned: local_free), NULL with a message in err. */
local_t *local_new(const struct options *o, char *err, size_t errlen);
/** Free a table. NULL is a no-op. */
void local_free(local_t *l);

/** Answer q locally when its name is local data or in a local zone: writes the answer into
 *  out[cap]. @return its length; 0 when q goes on to the cache and the upstreams; -ENOSPC when
 *  the answer does not fit in cap. */
int local_answer(const local_t *l, const uint8_t *query, const struct wire_query *q, uint8_t *out,
		 size_t cap);
