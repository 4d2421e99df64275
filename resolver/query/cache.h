/* Packet cache shared by all workers: whole upstream answers keyed on the normalised question
 * (lower-cased name, type, class, EDNS, DO and CD). Sharded by key hash, each shard behind its own
 * mutex with an LRU list, bounded in bytes. A hit copies the answer into the caller's buffer and
 * patches ID, question case and TTLs there, so no lock is held while the reply is sent. Keys
 * are hashed with SipHash under a key drawn at start. It never looks at the policy or a socket. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resolver/base/wire.h"

typedef struct cache cache_t;

/** The normalised question of a query. */
struct cache_key {
	uint64_t hash;
	uint16_t len;
	uint8_t bytes[NAME_MAXWIRE + 1 + 5];
};

/** Longest TTL kept, seconds (RFC 2308 suggests a day for negative answers; used for all). */
#define CACHE_MAX_TTL 86400
/** TTL of a stale answer's records (RFC 8767 4: 30 s). */
#define CACHE_STALE_TTL 30

/** A cache of at most max_bytes split over nshards (rounded up to a power of two).
 *  @return the cache (owned: cache_free), NULL when out of memory. */
cache_t *cache_new(size_t max_bytes, unsigned nshards);
/** Serve-stale and prefetch: an entry expired less than stale_max seconds ago is kept for
 *  cache_get(stale_ok); with prefetch, a hit in the last tenth of an entry's TTL hands its
 *  caller the refresh, whose answer may replace the entry for refresh_ms (no other refresh is
 *  handed out meanwhile). Default: neither. Call before any lookup. */
void cache_configure(cache_t *c, uint32_t stale_max, bool prefetch, unsigned refresh_ms);

/** Free a cache. NULL is a no-op. */
void cache_free(cache_t *c);

/** The key of query q, hashed under c's secret key (so clients cannot pick colliding names). */
void cache_key_make(const cache_t *c, struct cache_key *k, const struct wire_query *q);

/** How long reply may be cached, seconds: its lowest TTL, and for negative answers no longer
 *  than RFC 2308 allows (SOA TTL and MINIMUM); 0 when it must not be cached. */
uint32_t cache_ttl(const uint8_t *reply, size_t len);

/** Does reply's answer section hold a CNAME or DNAME (whose targets the policy must see)? */
bool cache_has_chain(const uint8_t *reply, size_t len);

/** Store reply under k for ttl seconds from now_ms (a monotonic clock in ms). An entry that
 *  is still live is never replaced (a spoofed answer cannot overwrite a good one), unless its
 *  refresh was handed out (prefetch):
 *  @return 0, -EEXIST when a live entry holds k, or another negative errno. */
int cache_put(cache_t *c, const struct cache_key *k, const uint8_t *reply, size_t len,
	      uint32_t ttl, uint64_t now_ms);

/** What a lookup found besides the answer. */
struct cache_hit {
	bool has_chain; /**< cache_has_chain() of the answer. */
	bool stale;     /**< Expired (within the stale window): TTLs set to CACHE_STALE_TTL, or
			     max_ttl if lower. */
	bool prefetch;  /**< The caller is to refresh this entry (it alone). */
};

/** Look k up; on a hit copy the answer into out[cap], patched for the client's query (ID,
 *  question bytes, TTLs aged and capped at max_ttl). An expired entry within the stale window
 *  is copied only when stale_ok. @return its length; -ENOENT on a miss; -ESTALE when only a
 *  stale answer is there and !stale_ok; -ENOSPC if it does not fit. */
int cache_get(cache_t *c, const struct cache_key *k, uint64_t now_ms, const uint8_t *query,
	      const struct wire_query *q, uint8_t *out, size_t cap, struct cache_hit *hit,
	      uint32_t max_ttl, bool stale_ok);

/** What the cache holds, and what LRU has evicted. */
struct cache_usage {
	size_t entries, bytes;
	uint64_t evictions;
};

/** Take each shard's lock to read its usage: for statistics, not the query path. */
void cache_usage(cache_t *c, struct cache_usage *u);
