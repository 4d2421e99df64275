/* What the synchroniser keeps on disk: the policy snapshot, saved on libuv's thread pool after a
 * publication (overlapping the next load, never delaying one), and the guard's state file
 * SNAPSHOT.guard, written on the loop before the policy it describes is in force. It never
 * talks to Redis and never publishes. */
#pragma once

#include "resolver/sync/redis_state.h"

/** A failed snapshot save is tried again after this, or after --reload-interval if that is
 *  sooner, until one works; the error is logged at most this often. */
#define REDIS_SAVE_RETRY_MS 60000

/** Save the policy in force to the snapshot on the thread pool (r->saving while it runs; a
 *  policy published meanwhile is saved next, see r->save_again). */
void redis_save_start(redis_sync_t *r);

/** Write the guard's state (SNAPSHOT.guard) when it changed; failures are logged. */
void redis_save_guard_state(redis_sync_t *r);
