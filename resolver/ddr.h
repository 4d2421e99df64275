/* DDR (Discovery of Designated Resolvers, RFC 9462) for embargo itself: the plain description of
 * its encrypted listeners (struct local_ddr) that the local answers serve at _dns.resolver.arpa
 * SVCB, built from the settings and the certificate in force, and the name clients verify it by.
 * It sits in the top layer because it reads both the settings and the TLS credentials
 * (resolver/net/); resolver/query/local.c gets only the description and must never see a
 * certificate. It never answers a query and keeps no state. */
#pragma once

#include <stddef.h>

#include "resolver/base/options.h"
#include "resolver/base/tls.h"
#include "resolver/query/local.h"

/** The name DDR designates embargo by: o's --resolver-name, else the first DNS name of tls's
 *  certificate (tls may be NULL) when it is one an SVCB record can carry.
 *  @return it (borrowed from o or tls), or NULL when there is neither. */
const char *ddr_name(const struct options *o, const tls_creds_t *tls);

/** The local answers o leaves in force (local_new) with DDR's records for o's encrypted
 *  listeners, whose TargetName is ddr_name(o, tls) ("." when NULL).
 *  @return the table (owned: local_free), NULL with a message in err. */
local_t *ddr_local_new(const struct options *o, const tls_creds_t *tls, char *err,
		       size_t errlen);

/** Say in the log what DDR designates under o and tls, prefix first (e.g. "SIGHUP: "): a
 *  warning when clients cannot verify it (no name, or a certificate not valid for it). Nothing
 *  when o has no encrypted listener. */
void ddr_say(const struct options *o, const tls_creds_t *tls, const char *prefix);
