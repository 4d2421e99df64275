/* The metrics endpoint: Prometheus text format on /metrics and a health check on /health, over
 * HTTP from libmicrohttpd's own thread, so a scrape never runs on a worker. Workers keep their
 * counters and publish them once per loop iteration; a scrape sums them (server_stats), reads
 * the cache's usage and the policy in force through a reader slot of its own. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include "policy/store.h"
#include "resolver/query/cache.h"
#include "resolver/base/options.h"
#include "resolver/sync/redis_sync.h"
#include "resolver/server.h"

typedef struct metrics metrics_t;

/** What a scrape reads; all borrowed, and they must outlive the endpoint. */
struct metrics_sources {
	server_t *server;
	cache_t *cache;
	policy_store_t *store;
	struct policy_reader *reader; /**< A reader slot used only by the endpoint's thread. */
	const atomic_int *serving;    /**< Non-zero while the workers answer queries. */
	time_t started;               /**< When the process started. */
	const struct redis_sync_stats *redis; /**< The Redis link's counters. */
	const atomic_ullong *report_dropped;  /**< Client report denials not counted; NULL: off. */
};

/** Serve o->metrics (ADDR:PORT). @return the endpoint (owned: metrics_free), or NULL with a
 *  message in err (the address cannot be bound, say). */
metrics_t *metrics_new(const struct options *o, const struct metrics_sources *src, char *err,
		       size_t errlen);

/** Stop serving and free. NULL is a no-op. */
void metrics_free(metrics_t *m);

/** The whole /metrics text for src into a new buffer (owned: free()); *len gets its length.
 *  @return NULL when out of memory. */
char *metrics_render(const struct metrics_sources *src, size_t *len);
