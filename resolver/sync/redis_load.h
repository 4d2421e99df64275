/* The synchroniser's loads from Redis: what to read (while the policy in force is what Redis
 * held, only the keys a notification or a changed size says changed; else, and after a
 * reconnect, a resync or a failure, every key), read with SSCAN/HSCAN on the link's command
 * connection; a read that a change tore is thrown away. One load at a time on the loop; a change
 * during one makes one more. It never publishes: a whole read goes to redis_build.h. */
#pragma once

#include "resolver/sync/redis_state.h"

/** Start a load, or mark one more to follow the load in progress; nothing while the link is
 *  down (its return starts one) or r is closing. */
void redis_load_start(redis_sync_t *r);

/** The link's `changed` event: channel (REDIS_STATE_KEY_*) changed; adds: only by additions. */
void redis_load_on_changed(void *ctx, unsigned channel, int adds);

/** The link's `barrier` event: a read waiting for a barrier up to acked is whole. */
void redis_load_on_barrier(void *ctx, unsigned acked);

/** The link's `resynced` event: read every key again. */
void redis_load_on_resynced(void *ctx);
