/* What Redis says about its own history, and what embargo adds to it. A rollback (Redis restarted
 * from an older dump, a failover to a replica that was behind, the audit stream cut back) looks
 * like removals and may bring back an old consent: a new run_id, a replication offset that went
 * back, or an audit stream whose newest entry is older than one seen before marks it. Every
 * transition the daemon publishes or holds is appended to PREFIX:audit ("by redis"), once
 * fleet-wide, unless the change's own tool already recorded it. It owns no connection and never
 * decides a hold. */
#pragma once

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>

#include "policy/guard.h"
#include "policy/policy.h"

/** The history one link has seen. Zero it to start. */
struct redis_history {
	char redis[300]; /* host:port/db it is about; a history of another Redis is no history. */
	int fresh;       /* Nothing is known of this Redis's past: the first INFO is a rollback. */
	char run_id[48];
	long long offset;
	uint64_t audit_ms, audit_seq; /* The newest audit entry seen; 0-0: none. */
	int audit_seen;
};

/** An INFO reply's text. @return why it looks like a rollback, or NULL. */
const char *redis_history_info(struct redis_history *h, const char *info);

/** An XREVRANGE PREFIX:audit + - COUNT 1 reply. @return why it looks like a rollback, or NULL
 *  (also for a refusal: the audit stream is then not watched). */
const char *redis_history_audit(struct redis_history *h, const redisReply *reply);

/** Append the transition from `from` to `to` (its diff d; kind "published", "held" or
 *  "consented"; by: who consented, or "redis") to PREFIX:audit with one EVAL, which skips it
 *  when another instance already appended it or the newest entry already has `to`'s digest (the
 *  tool's own record of the change; a hold is always appended). cb gets the reply (see redisAsyncCommandArgv). */
int redis_history_append(redisAsyncContext *ac, const char *prefix, const char *kind,
			 const char *by, const policy_t *from, const policy_t *to,
			 const struct guard_diff *d, redisCallbackFn *cb, void *privdata);
