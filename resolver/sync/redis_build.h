/* What a load's read becomes: the policy built off the loop on libuv's thread pool, with its
 * diff and the guard's first verdict, then decided again on the loop and published, held (with
 * what it denies anew merged on top of the policy in force) or dropped as unchanged (see
 * policy/guard.h). Only this module publishes; it never reads the policy from Redis. */
#pragma once

#include "resolver/sync/redis_state.h"

/** Build what the load read (r->builder, taken over) and the keys it carries over
 *  (r->carry_parts) off the loop, then decide and publish it; the load then ends. */
void redis_build_start(redis_sync_t *r);
