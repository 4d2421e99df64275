/* Redis's history as the synchroniser sees it: before each load, INFO and the audit stream's
 * tail (a rollback sets the guard's rollback mark, saved at once), and after each publication or
 * hold, the transition appended to PREFIX:audit. Replies come on the loop through the link's
 * command connection; parsing is redis_history.c's. It never publishes nor decides a load. */
#pragma once

#include <hiredis/async.h>

#include "resolver/sync/redis_state.h"

/** Ask Redis (on ac, the command connection) what it says of its history: INFO, then the newest
 *  audit entry. Sent ahead of the policy's reads, so a rollback is known when the load is
 *  decided. */
void redis_audit_ask_history(redis_sync_t *r, redisAsyncContext *ac);

/** The transition from `from` to `to` (r->diff; kind "published", "held" or "consented"; by:
 *  who consented, or "redis") into the audit stream (once fleet-wide); counted in r->pushes
 *  until answered. Nothing while the link is down or r is closing. */
void redis_audit_append(redis_sync_t *r, const char *kind, const char *by, const policy_t *from,
			const policy_t *to);
