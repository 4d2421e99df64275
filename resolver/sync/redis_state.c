/* The end of each load and what follows it: the next load if a change came meanwhile, else the
 * periodic re-read (rare when notifications tell of changes); a failed load is retried sooner,
 * backing off to 5 s. Runs on the loop; a load is started only through r->start_load (the
 * module above), so that this one never reads Redis nor publishes. */
#include "config.h"

#include "resolver/sync/redis_state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "resolver/base/log.h"

#define SAFETY_RELOAD_MS 300000 /* Re-read even with notifications, in case one was lost. */

uint64_t redis_state_now_ms(redis_sync_t *r)
{
	uv_update_time(r->loop);
	return uv_now(r->loop);
}

void redis_state_maybe_free(redis_sync_t *r)
{
	if (r->closing && r->open_handles == 0 && !r->link_open && r->phase == REDIS_STATE_IDLE &&
	    !r->saving) {
		void (*closed)(void *) = r->closed;
		void *ctx = r->closed_ctx;
		free(r->state_written);
		free(r);
		if (closed)
			closed(ctx);
	}
}

void redis_state_set_hold(redis_sync_t *r, enum redis_sync_hold kind, size_t removed, size_t of,
			  uint64_t version)
{
	r->hold_shown = kind != REDIS_SYNC_HOLD_NONE;
	if (r->hold_cb)
		r->hold_cb(r->ctx, kind, removed, of, version);
}

void redis_state_become_ready(redis_sync_t *r)
{
	if (r->ready)
		return;
	r->ready = 1;
	uv_timer_stop(&r->startup);
	r->ready_cb(r->ctx);
}

void redis_state_describe_current(redis_sync_t *r, char *buf, size_t cap)
{
	const struct policy_stats *st = policy_stats(policy_store_current(r->store));
	snprintf(buf, cap, "%s, %zu deny and %zu allow rules, version %016" PRIx64,
		 policy_source_name(st->source), st->deny, st->allow, st->version);
}

static void on_timer(uv_timer_t *t)
{
	redis_sync_t *r = t->data;
	r->reread = REDIS_STATE_ALL_KEYS; /* A periodic re-read of everything, or a retry. */
	r->start_load(r);  /* Nothing while the link is down: it reports when it is back. */
}

static void schedule(redis_sync_t *r, unsigned ms)
{
	if (!r->closing)
		uv_timer_start(&r->timer, on_timer, ms, 0);
}

/* The next periodic re-read: rare when notifications tell of changes, else every interval. */
static void schedule_reread(redis_sync_t *r)
{
	if (!redis_link_commands(r->link)) {
		uv_timer_stop(&r->timer); /* The link is down: its return starts the next load. */
		return;
	}
	unsigned ms = r->o->reload_ms;
	if (r->notify && ms < SAFETY_RELOAD_MS)
		ms = SAFETY_RELOAD_MS;
	schedule(r, ms);
}

void redis_state_drop_builder(redis_sync_t *r)
{
	policy_builder_free(r->builder);
	r->builder = NULL;
	r->load_barrier = 0;
	if (r->phase == REDIS_STATE_READING)
		r->phase = REDIS_STATE_IDLE;
}

/* The load found nothing to publish: the policy in force stays. */
void redis_state_load_done(redis_sync_t *r)
{
	redis_state_drop_builder(r);
	r->phase = REDIS_STATE_IDLE;
	r->torn = 0;
	if (r->closing) {
		redis_state_maybe_free(r);
		return;
	}
	redis_state_become_ready(r);
	if (r->dirty) {
		r->dirty = 0;
		r->start_load(r);
		return;
	}
	schedule_reread(r);
}

/* A load that reached Redis and finished (published, unchanged or held): failures are over. */
void redis_state_load_worked(redis_sync_t *r)
{
	r->load_backoff_ms = REDIS_STATE_LOAD_BACKOFF_MIN_MS;
	if (r->last_fail[0])
		log_info("policy loads from redis work again");
	r->last_fail[0] = '\0';
	r->torn_logged = 0;
}

/* The load could not finish (-BUSY, -LOADING, a key changed type, out of memory): keep the
 * policy in force and the pending change, and try again soon, backing off to 5 s. */
void redis_state_load_failed(redis_sync_t *r, const char *why)
{
	if (strcmp(why, r->last_fail) != 0) {
		char cur[200];
		redis_state_describe_current(r, cur, sizeof(cur));
		log_err("policy load from redis failed: %s; keeping %s; retrying", why, cur);
		snprintf(r->last_fail, sizeof(r->last_fail), "%s", why);
	}
	r->reread = REDIS_STATE_ALL_KEYS;
	r->dirty = 0;
	int closing = r->closing;
	redis_state_load_done(r); /* May free r when closing. */
	if (closing)
		return;
	/* load_done scheduled the periodic re-read; the retry comes sooner. */
	schedule(r, r->load_backoff_ms);
	r->load_backoff_ms = r->load_backoff_ms * 2 > REDIS_STATE_LOAD_BACKOFF_MAX_MS
				     ? REDIS_STATE_LOAD_BACKOFF_MAX_MS
				     : r->load_backoff_ms * 2;
}

/* Building and saving yield the CPU to the workers answering queries. */
void redis_state_yield_to_workers(void)
{
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
}
