/* Keeps the policy store in step with Redis: loads <prefix>:deny, <prefix>:allow and
 * <prefix>:reason with SSCAN/HSCAN, re-reading any read that a change tore, builds the policy off
 * the query path and publishes it unless it would lift too many deny rules at once (held: see
 * policy/guard.h); re-reads on an interval and reconnects with backoff. Runs on the main
 * thread's libuv loop through hiredis' async API, and must never be called from a worker. Its
 * types are in redis_sync_types.h. */
#pragma once

#include <uv.h>

#include "policy/guard.h"
#include "policy/store.h"
#include <stdatomic.h>

#include "resolver/base/options.h"
#include "resolver/observe/client_report.h"
#include "resolver/sync/redis_history.h"
#include "resolver/sync/redis_push.h"
#include "resolver/sync/redis_sync_types.h"
#include "resolver/observe/rule_hits.h"

/** Start syncing store from Redis on loop, deciding loads with guard. o, store and guard are
 *  borrowed and must outlive it (the guard outlives links: a reload's new link goes on from the
 *  same baseline, held load and used consents); the
 *  store must have o->threads + 1 reader slots: the last one is the snapshot saver's.
 *  @return the synchroniser (owned: redis_sync_close), NULL when out of memory. */
redis_sync_t *redis_sync_new(uv_loop_t *loop, const struct options *o, policy_store_t *store,
			     guard_t *guard, redis_sync_ready_cb ready, redis_sync_hold_cb hold,
			     void *ctx);

/** Add denials per client and rule to the hashes PREFIX:clients:YYYY-MM-DD (the UTC day of
 *  each entry's last denial), merged with what other instances added, within lim (one EVAL
 *  per 512 entries on the command connection).
 *  @return 0 (sent), -ENOTCONN (keep them for later), -ENOMEM. */
int redis_sync_add_client_report(redis_sync_t *r, const struct client_denial *e, size_t n,
				 const struct redis_report_limits *lim);

/** Hit counter and client report commands sent and not answered yet (a stop waits for them). */
unsigned redis_sync_pushes(const redis_sync_t *r);

/** Count into stats (borrowed; it must outlive r) from now on, adding to what it holds (a
 *  predecessor's counts). Call once, after redis_sync_new(). */
void redis_sync_count(redis_sync_t *r, struct redis_sync_stats *stats);

/** What an earlier link, or the state file of an earlier run, knew of this Redis's history
 *  (copied; ignored when it is about another Redis). Call once, after redis_sync_new(); without
 *  it, the first thing Redis says of itself counts as a rollback (nothing is known). */
void redis_sync_seed_history(redis_sync_t *r, const struct redis_history *h);

/** This link's knowledge of Redis's history (borrowed, valid until the link changes it). */
const struct redis_history *redis_sync_history(const redis_sync_t *r);

/** Disconnect and free once libuv has closed everything. NULL is a no-op. */
void redis_sync_close(redis_sync_t *r);

/** The same, and closed(ctx) once it is all closed and freed (a successor may then take its
 *  reader slot). */
void redis_sync_close_then(redis_sync_t *r, void (*closed)(void *ctx), void *ctx);

/** Add counts to the hash PREFIX:hits (HINCRBY RULE N, pipelined on the command connection).
 *  A refusal (an ACL without the right) is logged once. @return 0, or -ENOTCONN when Redis is
 *  not connected (the caller keeps the counts for the next try). */
int redis_sync_add_hits(redis_sync_t *r, const struct rule_hit *hits, size_t n);
