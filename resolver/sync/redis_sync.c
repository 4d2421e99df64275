/* The Redis synchroniser's face: its life (made with its link and timers, freed once libuv has
 * closed them all), what the link says of the connection (up, down, the first policy awaited at
 * start) and the hit counters and client reports pushed on its command connection. The load
 * itself is redis_load.c's (read), redis_build.c's (build, decide, publish) and redis_save.c's
 * (snapshot, guard state), over the state in redis_state.h; all of it runs on the main thread's
 * loop. This file must never read the policy or publish it. */
#include "config.h"

#include "resolver/sync/redis_sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "resolver/base/log.h"
#include "resolver/sync/redis_link.h"
#include "resolver/sync/redis_load.h"
#include "resolver/sync/redis_push.h"
#include "resolver/sync/redis_state.h"

#define STARTUP_WAIT_MS 2000

/* Redis answers (again): anything may have changed meanwhile, so read everything. */
static void on_link_up(void *ctx, int notify)
{
	redis_sync_t *r = ctx;
	/* Redis answers: wait for the whole policy however long a big one takes to read, rather
	 * than start on a stale one. Only a lost connection starts without it. */
	uv_timer_stop(&r->startup);
	atomic_store(&r->stats->connected, 1);
	if (r->was_up)
		atomic_fetch_add(&r->stats->reconnects, 1);
	r->was_up = 1;
	r->notify = notify;
	r->reread = REDIS_STATE_ALL_KEYS;
	redis_load_start(r);
}

/* Both connections are gone: keep the policy; the link reconnects and says when it is back. */
static void on_link_down(void *ctx, const char *why, int first)
{
	redis_sync_t *r = ctx;
	atomic_store(&r->stats->connected, 0);
	r->notify = 0;
	redis_state_drop_builder(r); /* A read in progress is lost; a build in progress goes on. */
	uv_timer_stop(&r->coalesce);
	if (r->phase == REDIS_STATE_IDLE)
		uv_timer_stop(&r->timer);
	if (first) {
		char cur[200];
		redis_state_describe_current(r, cur, sizeof(cur));
		log_warn("redis %s:%d unavailable (%s); enforcing %s; retrying", r->o->redis_host,
			 r->o->redis_port, why, cur);
	}
	if (!r->ready) {
		const struct policy_stats *st = policy_stats(policy_store_current(r->store));
		log_warn("starting without redis: enforcing the %s", policy_source_name(st->source));
		redis_state_become_ready(r);
	}
}

static void on_startup_timeout(uv_timer_t *t)
{
	redis_sync_t *r = t->data;
	if (!r->ready) {
		const struct policy_stats *st = policy_stats(policy_store_current(r->store));
		log_warn("redis did not answer within %d ms: enforcing the %s for now",
			 STARTUP_WAIT_MS, policy_source_name(st->source));
		redis_state_become_ready(r);
	}
}

static void timer_closed(uv_handle_t *h)
{
	redis_sync_t *r = h->data;
	r->open_handles--;
	redis_state_maybe_free(r);
}

static void link_closed(void *ctx)
{
	redis_sync_t *r = ctx;
	r->link_open = 0;
	redis_state_maybe_free(r);
}

redis_sync_t *redis_sync_new(uv_loop_t *loop, const struct options *o, policy_store_t *store,
			     guard_t *guard, redis_sync_ready_cb ready, redis_sync_hold_cb hold,
			     void *ctx)
{
	redis_sync_t *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->guard = guard;
	/* Nothing is known of this Redis's past until redis_sync_seed_history() says otherwise. */
	snprintf(r->history.redis, sizeof(r->history.redis), "%s:%d/%d", o->redis_host,
		 o->redis_port, o->redis_db);
	r->history.fresh = 1;
	r->loop = loop;
	r->o = o;
	r->store = store;
	r->stats = &r->own_stats;
	r->ready_cb = ready;
	r->hold_cb = hold;
	r->saver = policy_store_reader(store, o->threads);
	r->ctx = ctx;
	r->start_load = redis_load_start;
	r->load_backoff_ms = REDIS_STATE_LOAD_BACKOFF_MIN_MS;
	r->hold_shown = 1; /* A predecessor's hold stays on show until this link's first load. */
	static const char *const suffix[REDIS_STATE_NCHANNELS] = {"deny", "allow", "reason",
								 "accept"};
	char channels[REDIS_STATE_NCHANNELS][128];
	const char *chan[REDIS_STATE_NCHANNELS];
	for (int k = 0; k < REDIS_STATE_NCHANNELS; k++) {
		snprintf(r->keys[k], sizeof(r->keys[k]), "%s:%s", o->redis_prefix, suffix[k]);
		snprintf(channels[k], sizeof(channels[k]), "__keyspace@%d__:%s", o->redis_db,
			 r->keys[k]);
		chan[k] = channels[k];
		if (k < REDIS_STATE_NKEYS)
			r->scans[k] = (struct redis_state_scan){.r = r, .key = k};
	}
	uv_timer_t *timers[] = {&r->timer, &r->startup, &r->coalesce, &r->save_retry};
	for (int i = 0; i < 4; i++) {
		uv_timer_init(loop, timers[i]);
		timers[i]->data = r;
	}
	r->open_handles = 4;
	uv_timer_start(&r->startup, on_startup_timeout, STARTUP_WAIT_MS, 0);
	static const struct redis_link_events events = {
		.up = on_link_up,
		.changed = redis_load_on_changed,
		.barrier = redis_load_on_barrier,
		.resynced = redis_load_on_resynced,
		.down = on_link_down,
	};
	r->link = redis_link_new(loop, o, chan, REDIS_STATE_NCHANNELS, &events, r);
	if (!r->link) {
		r->closing = 1;
		for (int i = 0; i < 4; i++)
			uv_close((uv_handle_t *)timers[i], timer_closed);
		return NULL;
	}
	r->link_open = 1;
	return r;
}

void redis_sync_close_then(redis_sync_t *r, void (*closed)(void *ctx), void *ctx)
{
	if (!r) {
		closed(ctx); /* Nothing to close (a link that could not be made). */
		return;
	}
	r->closed = closed;
	r->closed_ctx = ctx;
	redis_sync_close(r);
}

void redis_sync_close(redis_sync_t *r)
{
	if (!r)
		return;
	r->closing = 1;
	/* What it does while closing counts no more in the shared counters (a successor may). */
	atomic_store(&r->stats->connected, 0);
	r->stats = &r->own_stats;
	uv_close((uv_handle_t *)&r->timer, timer_closed);
	uv_close((uv_handle_t *)&r->startup, timer_closed);
	uv_close((uv_handle_t *)&r->coalesce, timer_closed);
	uv_close((uv_handle_t *)&r->save_retry, timer_closed);
	if (r->phase == REDIS_STATE_READING)
		redis_state_drop_builder(r);
	redis_link_close(r->link, link_closed);
	r->link = NULL;
}

static void on_hits_added(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_sync_t *r = privdata;
	redisReply *reply = reply_ptr;
	(void)ac;
	r->pushes--;
	if (reply && reply->type == REDIS_REPLY_ERROR && !r->warned_hits) {
		log_warn("redis refused the hit counters (%s:hits): %s", r->o->redis_prefix, reply->str);
		r->warned_hits = 1;
	}
}

int redis_sync_add_hits(redis_sync_t *r, const struct rule_hit *hits, size_t n)
{
	redisAsyncContext *ac = r->link ? redis_link_commands(r->link) : NULL;
	if (!ac || r->closing)
		return -ENOTCONN;
	r->pushes += redis_push_hits(ac, r->o->redis_prefix, hits, n, on_hits_added, r);
	return 0;
}

static void on_report_added(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_sync_t *r = privdata;
	redisReply *reply = reply_ptr;
	(void)ac;
	r->pushes--;
	if (reply && reply->type == REDIS_REPLY_ERROR && !r->warned_report) {
		log_warn("redis refused the client report (%s:clients:*): %s", r->o->redis_prefix,
			 reply->str);
		r->warned_report = 1;
	}
}

int redis_sync_add_client_report(redis_sync_t *r, const struct client_denial *e, size_t n,
				 const struct redis_report_limits *lim)
{
	redisAsyncContext *ac = r->link ? redis_link_commands(r->link) : NULL;
	if (!ac || r->closing)
		return -ENOTCONN;
	int sent = redis_push_report(ac, r->o->redis_prefix, e, n, lim, on_report_added, r);
	if (sent < 0)
		return sent;
	r->pushes += (unsigned)sent;
	return 0;
}

unsigned redis_sync_pushes(const redis_sync_t *r)
{
	return r->pushes;
}

void redis_sync_count(redis_sync_t *r, struct redis_sync_stats *stats)
{
	/* Counters go on from what stats holds (a predecessor's); the state is this one's. */
	atomic_store(&stats->connected, atomic_load(&r->stats->connected));
	atomic_fetch_add(&stats->reconnects, atomic_load(&r->stats->reconnects));
	atomic_fetch_add(&stats->loads, atomic_load(&r->stats->loads));
	atomic_fetch_add(&stats->held_loads, atomic_load(&r->stats->held_loads));
	if (atomic_load(&r->stats->last_load_ms))
		atomic_store(&stats->last_load_ms, atomic_load(&r->stats->last_load_ms));
	atomic_fetch_add(&stats->snapshot_failures, atomic_load(&r->stats->snapshot_failures));
	if (atomic_load(&r->stats->snapshot_saved_at))
		atomic_store(&stats->snapshot_saved_at, atomic_load(&r->stats->snapshot_saved_at));
	r->stats = stats;
}

void redis_sync_seed_history(redis_sync_t *r, const struct redis_history *h)
{
	/* Another Redis's history is none: its run_id would look like a restart, and a restart of
	 * this one would not be seen. */
	if (strcmp(h->redis, r->history.redis) != 0)
		return;
	r->history = *h;
	r->history.fresh = !h->run_id[0];
}

const struct redis_history *redis_sync_history(const redis_sync_t *r)
{
	return &r->history;
}
