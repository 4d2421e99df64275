/* What the upstreams could not answer, remembered for a few seconds (RFC 9520, RFC 2308 7): a
 * question that every upstream refused, failed or left unanswered is answered SERVFAIL from
 * here, with the reason the upstream gave, instead of being asked again at once, so that a
 * client repeating a failing question cannot make embargo send it upstream over and over. One
 * per worker (no lock), direct-mapped on the cache key's keyed hash, of fixed size: a flood of
 * failing names only evicts older failures, and forgetting one costs one more upstream
 * question. It must never hold answers: a remembered failure never replaces a cached answer,
 * so serve-stale still has the expired one. */
#pragma once

#include <stdint.h>

#include "resolver/upstream/upstream.h"

typedef struct failcache failcache_t;

/** Slots per worker. */
#define FAILCACHE_SLOTS 4096
/** How long a failure is remembered, ms (RFC 9520 4: at least 1 s; 5 s as the issue of
 *  retries against availability goes). */
#define FAILCACHE_TTL_MS 5000

/** An empty memory. @return it (owned: failcache_free), NULL when out of memory. */
failcache_t *failcache_new(void);

/** Free it. NULL is a no-op. */
void failcache_free(failcache_t *f);

/** Remember that the question whose cache key hash is hash failed for why (borrowed, copied),
 *  until now_ms + FAILCACHE_TTL_MS. */
void failcache_put(failcache_t *f, uint64_t hash, const struct upstream_failure *why,
		   uint64_t now_ms);

/** The failure remembered for hash at now_ms (borrowed until the next put), or NULL. */
const struct upstream_failure *failcache_get(const failcache_t *f, uint64_t hash, uint64_t now_ms);
