/* Which upstreams send DNS cookies (RFC 7873), as any worker has seen: once one has, every worker
 * ignores that upstream's UDP answers without a cookie, not only the worker that saw it (each
 * keeps its own client and server cookies). One table for the process: an entry is added under
 * a lock and never moves or goes, so workers find and read entries without the lock; a probe
 * that finds the upstream answering without cookies clears the entry and bumps its generation,
 * and each worker drops the server cookie it holds when it sees the new generation. Bounded:
 * COOKIE_SEEN_MAX upstreams since the start (the upstreams of this and many earlier reloads);
 * beyond that cookie_seen_add() finds no room and the caller enforces per worker only. No I/O
 * and no libuv. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "resolver/base/options.h"

#define COOKIE_SEEN_MAX (4 * OPTIONS_MAX_ADDRS)

/** One upstream's entry (borrowed: it lives as long as the process). */
struct cookie_seen;

/** The entry of upstream address a, looked for without the lock among the entries added since
 *  *scanned (which it advances: 0 the first time), or NULL. Any thread. */
struct cookie_seen *cookie_seen_find(const struct sockaddr_storage *a, unsigned *scanned);

/** The entry of a, added if it has none. @return it, or NULL when the table is full. */
struct cookie_seen *cookie_seen_add(const struct sockaddr_storage *a);

/** Does the upstream send cookies, as far as any worker has seen? */
bool cookie_seen_is_on(const struct cookie_seen *e);

/** A worker has had a server cookie from it. */
void cookie_seen_on(struct cookie_seen *e);

/** A probe found it answering without a cookie: off, and a new generation. @return that. */
uint32_t cookie_seen_off(struct cookie_seen *e);

/** Its generation: when it changes, a worker drops the server cookie it holds. */
uint32_t cookie_seen_gen(const struct cookie_seen *e);
