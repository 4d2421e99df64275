/* Whatever Redis says of its past is checked against what this link (or the state file) knew:
 * a rollback found in an INFO or audit tail reply marks the guard once and is saved. A refused
 * INFO with nothing known counts as a rollback; a refused audit entry is said once. Replies are
 * handled on the loop; this module only ever sets the rollback mark, never clears it. */
#include "config.h"

#include "resolver/sync/redis_audit.h"

#include <hiredis/hiredis.h>

#include "resolver/base/log.h"
#include "resolver/sync/redis_history.h"
#include "resolver/sync/redis_save.h"

static void rolled_back(redis_sync_t *r, const char *why)
{
	if (!why || guard_is_rolled_back(r->guard))
		return;
	log_warn("%s: redis may have come back from an older state, so until a consent (or redis "
		 "holding the policy in force) no load may lift any denied name", why);
	guard_rollback(r->guard);
	redis_save_guard_state(r);
}

/* INFO and the audit stream's tail come before the policy (same connection, in order), so a
 * rollback is known when the load is decided. */
static void on_info(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_sync_t *r = privdata;
	redisReply *reply = reply_ptr;
	(void)ac;
	if (!reply || r->closing)
		return;
	if (reply->type != REDIS_REPLY_STRING) {
		/* Refused (an ACL without INFO; said by the link's own INFO): with nothing known of
		 * this Redis's past, it is taken as a rollback, as it would be if INFO answered. */
		if (r->history.fresh)
			rolled_back(r, "redis does not answer INFO and nothing is known of its past");
		return;
	}
	rolled_back(r, redis_history_info(&r->history, reply->str));
}

static void on_audit_tail(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_sync_t *r = privdata;
	(void)ac;
	if (reply_ptr && !r->closing)
		rolled_back(r, redis_history_audit(&r->history, reply_ptr));
}

void redis_audit_ask_history(redis_sync_t *r, redisAsyncContext *ac)
{
	redisAsyncCommand(ac, on_info, r, "INFO");
	redisAsyncCommand(ac, on_audit_tail, r, "XREVRANGE %s:audit + - COUNT 1", r->o->redis_prefix);
}

static void on_audited(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_sync_t *r = privdata;
	redisReply *reply = reply_ptr;
	(void)ac;
	r->pushes--;
	if (reply && reply->type == REDIS_REPLY_ERROR && !r->warned_audit) {
		log_warn("redis refused the resolvers' audit entry (%s:audit): %s; changes made with "
			 "redis-cli are then only in the log", r->o->redis_prefix, reply->str);
		r->warned_audit = 1;
	}
}

/* The transition from `from` to `to` into the audit stream (once fleet-wide). */
void redis_audit_append(redis_sync_t *r, const char *kind, const char *by, const policy_t *from,
			const policy_t *to)
{
	redisAsyncContext *ac = redis_link_commands(r->link);
	if (!ac || r->closing)
		return;
	if (redis_history_append(ac, r->o->redis_prefix, kind, by, from, to, &r->diff, on_audited,
				 r) == 0)
		r->pushes++;
}
