/* The types the Redis synchroniser shares with its owner: its counters, the kinds of hold a
 * status answer shows, and its callbacks. Apart from redis_sync.h (which includes this) so that
 * the synchroniser's own modules below it use them without including the module at the top of
 * the folder; they keep the redis_sync_ names of the public API they belong to. Types only:
 * it must never hold functions or state. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct redis_sync redis_sync_t;

/** What the synchroniser counts, for the metrics: written on the main loop, read by any thread. */
struct redis_sync_stats {
	atomic_int connected;              /**< 1 while the link to Redis is up. */
	atomic_ullong reconnects;          /**< Times the link came back after being down. */
	atomic_ullong loads;               /**< Loads published. */
	atomic_ullong held_loads;          /**< Loads held back (the held-load rule). */
	atomic_ullong last_load_ms;        /**< Read and build time of the last published load. */
	atomic_ullong snapshot_failures;   /**< Snapshot saves that failed. */
	atomic_int snapshot_failing;       /**< 1 while the last save failed. */
	atomic_llong snapshot_saved_at;    /**< Unix time of the last good save (or of the
					    *   snapshot read at start); 0: none. */
};

/** What a status answer says about a policy load held back from enforcement. */
enum redis_sync_hold {
	REDIS_SYNC_HOLD_NONE = 0,
	REDIS_SYNC_HOLD_SHRINK,  /**< It would lift too many deny rules at once. */
	REDIS_SYNC_HOLD_MISSING, /**< The deny key is missing while other policy keys exist. */
	REDIS_SYNC_HOLD_EMPTY,   /**< Redis holds none of the policy keys. */
};

/** Called once, when the first policy to enforce is settled: loaded from Redis, or Redis found
 *  unreachable (or empty of policy keys) so that the bundled list stays in force. */
typedef void (*redis_sync_ready_cb)(void *ctx);

/** Called whenever a load is held back from enforcement or released (kind REDIS_SYNC_HOLD_NONE):
 *  how many of the `of` deny rules in force it would lift, and its version. */
typedef void (*redis_sync_hold_cb)(void *ctx, enum redis_sync_hold kind, size_t removed, size_t of,
				   uint64_t version);
