/* The daemon's state, owned by the main thread: resolver/main.c starts and stops it, and
 * resolver/reload.c takes on a configuration read again on SIGHUP. A worker must never touch it:
 * what the workers need reaches them through resolver/server.c. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "policy/guard.h"
#include "policy/store.h"
#include "resolver/query/cache.h"
#include "resolver/observe/client_report.h"
#include "resolver/metrics.h"
#include "resolver/base/options.h"
#include "resolver/observe/query_log.h"
#include "resolver/sync/redis_sync.h"
#include "resolver/observe/rule_hits.h"
#include "resolver/server.h"

struct daemon {
	struct options o;
	uv_loop_t *loop;
	policy_store_t *store;
	cache_t *cache;
	server_t *server;
	redis_sync_t *redis;
	metrics_t *metrics;
	struct redis_sync_stats redis_stats; /* Read by the metrics thread. */
	query_log_t *qlog;
	uv_signal_t sigusr1;
	uv_timer_t hits_timer;       /* --hit-counters: once a second. */
	struct rule_hit *hits, *sent; /* Scratch, and what Redis has been given (by tag). */
	size_t nsent, hits_max;
	uv_timer_t report_timer;     /* --report-clients: once a second. */
	uv_timer_t final_push;       /* Stopping: waits for Redis to confirm the last pushes. */
	uint64_t final_until;
	struct client_report_batch report; /* Taken from the workers, not yet in Redis. */
	atomic_ullong report_dropped; /* Denials the report could not count (the metrics'). */
	uint64_t report_said, report_said_at; /* Last said in the log, and when (ms). */
	atomic_int serving;          /* Workers answering (the metrics' /health). */
	uv_signal_t sigint, sigterm;
	uv_timer_t reclaim;
	const policy_t *trimmed_for; /* The policy current at the last malloc_trim(). */
	int started;
	int stopping;
	/* The held-load rule's state (baseline, protected set, held load, used consents): the
	 * daemon's, so that a reload's new Redis link goes on from it. */
	guard_t *guard;
	struct redis_history history; /* What is known of Redis's past, for the next link. */
	/* SIGHUP (reload.c). */
	int argc;
	char **argv;                 /* To read the configuration again. */
	uv_signal_t sighup;
	const struct options *redis_o; /* The Redis settings d->redis syncs with. */
	const struct options *redis_next; /* A reload's, once the old link has closed. */
	redis_sync_t *redis_old;     /* The link a reload replaces, until its pushes are confirmed. */
	uv_timer_t redis_switch;     /* Waits for those, then watches the old link close. */
	uint64_t switch_until;
	int switch_closing;          /* The old link is closing; the new one waits for it. */
	int switch_said;             /* That closing took long has been said. */
};

/** Tell systemd (Type=notify) how the daemon stands (sd_notify); nothing without libsystemd
 *  or outside systemd. */
void daemon_notify(const char *state);

/** Lower o->outgoing_range so that every worker's sockets fit the open-file limit (raised to
 *  its maximum first), with room for listeners, TCP clients, Redis and files. */
void daemon_fit_outgoing_range(struct options *o);

/** Start syncing the policy from the Redis that o names (borrowed: it must outlive the link),
 *  reporting to d: readiness, held loads, and the counters in d->redis_stats, which go on from
 *  what a predecessor counted. @return the link (d->redis is the caller's to set), or NULL when
 *  out of memory. */
redis_sync_t *daemon_redis_new(struct daemon *d, const struct options *o);
