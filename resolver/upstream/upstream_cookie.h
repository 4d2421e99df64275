/* One worker's DNS cookies (RFC 7873) with each upstream: the check of a reply's cookie against
 * our client cookie, the server cookie kept for the next queries, and whether an upstream is
 * expected to send cookies at all, as any worker has seen (cookie_seen). Private to
 * resolver/upstream/. It reads the replies it is given: it must not send, receive or write a
 * query. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "resolver/upstream/cookie_seen.h"
#include "resolver/upstream/upstream_state.h"

/** Upstream i's entry in the process's cookie table (borrowed: it lives as long as the
 *  process), cached in its health once found; added when add. NULL when it has none. */
struct cookie_seen *upstream_cookie_entry(upstream_t *u, unsigned i, int add);

/** Does upstream i send cookies, as far as any worker knows? Drops this worker's server cookie
 *  when a probe found the upstream answering without. */
int upstream_cookie_expected(upstream_t *u, unsigned i);

/** Check reply[len]'s cookie from upstream i and keep its server cookie. @return 0 or -1 (a
 *  forgery or garbage). */
int upstream_cookie_check(upstream_t *u, unsigned i, const uint8_t *reply, size_t len,
			  int over_tcp);
