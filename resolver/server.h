/* The query-serving side of the daemon: one libuv loop per worker thread, each with its own
 * UDP and TCP sockets on every listen address (SO_REUSEPORT lets the kernel spread clients), its
 * own upstream state and a send queue flushed with one sendmmsg() per loop iteration. Workers
 * share only the policy store (lock-free reads) and the sharded answer cache; another thread
 * must not touch a running worker's loop or sockets, only wake it. Reloads: server_reload.h. */
#pragma once

#include <stdint.h>

#include "policy/store.h"
#include "resolver/query/cache.h"
#include "resolver/observe/client_report.h"
#include "resolver/observe/latency.h"
#include "resolver/base/options.h"
#include "resolver/query/local.h"
#include "resolver/observe/query_log.h"
#include "resolver/observe/rule_hits.h"
#include "resolver/upstream/upstream.h"
#include "resolver/query/server_stats.h"
#include "resolver/sync/redis_sync.h"
#include "resolver/server_reload.h"

typedef struct server server_t;

/** Create the workers and bind every socket now, so that bind errors surface at once; no query
 *  is read before server_start(). The store and cache are borrowed and must outlive the server.
 *  @return 0 and *out (owned: server_free), or a negative errno with a message in err. */
int server_new(server_t **out, const struct options *o, policy_store_t *store, cache_t *cache,
	       char *err, size_t errlen);

/** Start the worker threads. @return 0 or a negative errno. */
int server_start(server_t *s);

/** How long stopping workers keep answering the questions already sent upstream. */
#define SERVER_DRAIN_MS 2000

/** Stop the workers (if started) and wait for them: each stops reading and accepting, answers
 *  what is already upstream for up to SERVER_DRAIN_MS, then closes. The counters stay
 *  readable. Idempotent. */
void server_stop(server_t *s);

/** Stop the workers (if running), close every socket and free the server. NULL is a no-op. */
void server_free(server_t *s);

/** Current counters; each is read without locks and may lag by a few queries. */
void server_stats(server_t *s, struct server_stats *out);

/** Tell status answers (CH TXT policy.embargo.) about a held load: its kind, how many of the
 *  deny rules in force it would lift, and its version. Called from the main thread; workers
 *  read it without locks (fields may mix for an instant while it changes). */
void server_set_hold(server_t *s, enum redis_sync_hold kind, size_t removed, size_t of,
		     uint64_t version);

/** Denials per rule summed over the workers into out[0..*n) (*n = 0 first; at most max), the
 *  rest into *other. Any thread. */
void server_rule_hits(server_t *s, struct rule_hit *out, size_t *n, size_t max, uint64_t *other);

/** Answer latency for the queries decided as decision (enum query_log_decision), summed over
 *  the workers into bucket[] and *sum_ns (zeroed first). Any thread. */
void server_path_latency(server_t *s, unsigned decision, uint64_t bucket[LATENCY_BUCKETS],
			 uint64_t *sum_ns);

/** The same for the upstream at index i of the options in force (server_options()). */
void server_upstream_latency(server_t *s, unsigned i, uint64_t bucket[LATENCY_BUCKETS],
			     uint64_t *sum_ns);

/** --report-clients: the denials per client and rule the workers handed over since the last
 *  call (after server_stop(), all they counted), each passed to fn (borrowed); *dropped gets
 *  the denials no table had room for, since the start. Any one thread. @return how many. */
size_t server_client_report(server_t *s, void (*fn)(void *ctx, const struct client_denial *d),
			    void *ctx, uint64_t *dropped);

/** Give worker i ring i of log (before server_start()). */
void server_set_query_log(server_t *s, query_log_t *log);

/** The kind of the held load set by server_set_hold() (any thread). */
enum redis_sync_hold server_hold(const server_t *s);

/** Upstream counters summed over all workers; valid only after server_stop(). */
void server_upstream_stats(server_t *s, struct upstream_stats *out);

/** Number of worker loops. */
unsigned server_workers(const server_t *s);
