/* Redis synchroniser. One timer drives both reconnects (backoff 100 ms doubling to 1 s) and
 * periodic reloads; state changes (connected, lost, no policy keys, bad members) are logged when
 * they change, not on every reload. */
#include "config.h"

#include "resolver/redis_sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "resolver/log.h"
#include "resolver/redis_uv.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define STARTUP_WAIT_MS 2000
#define INVALID_LOGGED 10

enum link_state { LINK_UNKNOWN, LINK_UP, LINK_DOWN };

struct redis_sync {
	uv_loop_t *loop;
	const struct options *o;
	policy_store_t *store;
	redis_sync_ready_cb ready_cb;
	void *ctx;
	redisAsyncContext *ac;
	uv_timer_t timer;
	uv_timer_t startup;
	int open_timers;
	int closing;
	int ready;
	int loading;
	unsigned backoff_ms;
	enum link_state link;
	int warned_empty;
	uint64_t invalid_hash;
	char keys[3][80]; /* deny, allow, reason */
};

static void connect_now(redis_sync_t *r);

static void maybe_free(redis_sync_t *r)
{
	if (r->closing && r->open_timers == 0 && !r->ac)
		free(r);
}

static void become_ready(redis_sync_t *r)
{
	if (r->ready)
		return;
	r->ready = 1;
	uv_timer_stop(&r->startup);
	r->ready_cb(r->ctx);
}

static void describe_current(redis_sync_t *r, char *buf, size_t cap)
{
	const struct policy_stats *st = policy_stats(policy_store_current(r->store));
	snprintf(buf, cap, "%s, %zu deny and %zu allow rules, version %016llx",
		 policy_source_name(st->source), st->deny, st->allow, (unsigned long long)st->version);
}

static void on_timer(uv_timer_t *t)
{
	redis_sync_t *r = t->data;
	connect_now(r);
}

static void schedule(redis_sync_t *r, unsigned ms)
{
	if (!r->closing)
		uv_timer_start(&r->timer, on_timer, ms, 0);
}

static void link_down(redis_sync_t *r, const char *why)
{
	if (r->link != LINK_DOWN) {
		char cur[200];
		describe_current(r, cur, sizeof(cur));
		log_warn("redis %s:%d unavailable (%s); enforcing %s; retrying", r->o->redis_host,
			 r->o->redis_port, why, cur);
		r->link = LINK_DOWN;
	}
	if (!r->ready) {
		log_warn("starting without redis: enforcing the bundled sanctioned-vendor list");
		become_ready(r);
	}
	schedule(r, r->backoff_ms);
	r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static uint64_t hash_str(uint64_t h, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

struct invalid_log {
	uint64_t hash;
	size_t count;
	char lines[INVALID_LOGGED][160];
};

static void note_invalid(struct invalid_log *il, const char *key, const char *member, size_t len)
{
	/* A sum, so that the order Redis returns members in does not matter. */
	il->hash += hash_str(hash_str(0xcbf29ce484222325ULL, key, strlen(key)), member, len);
	if (il->count < INVALID_LOGGED)
		snprintf(il->lines[il->count], sizeof(il->lines[0]), "%s member '%.*s'", key,
			 (int)(len > 100 ? 100 : len), member);
	il->count++;
}

/* Add the members of a SMEMBERS reply as rules. @return 0 or -EINVAL if not a set. */
static int add_members(policy_builder_t *b, enum policy_action action, const redisReply *set,
		       const char *key, struct invalid_log *il)
{
	if (set->type != REDIS_REPLY_ARRAY)
		return -EINVAL;
	for (size_t i = 0; i < set->elements; i++) {
		const redisReply *m = set->element[i];
		if (m->type != REDIS_REPLY_STRING ||
		    policy_builder_add(b, action, m->str, m->len) == -EINVAL)
			note_invalid(il, key, m->str ? m->str : "", m->str ? m->len : 0);
	}
	return 0;
}

static void on_exec(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_sync_t *r = privdata;
	redisReply *reply = reply_ptr;
	r->loading = 0;
	if (!reply || r->closing)
		return; /* Disconnected: on_disconnect takes over. */
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
		log_err("redis policy read failed: %s", reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		become_ready(r);
		schedule(r, r->o->reload_ms);
		return;
	}
	redisReply **e = reply->element;
	if (e[3]->type == REDIS_REPLY_INTEGER && e[3]->integer == 0) {
		/* Fail closed: an empty Redis never lifts the bundled list. */
		if (!r->warned_empty) {
			char cur[200];
			describe_current(r, cur, sizeof(cur));
			log_warn("redis has none of %s, %s, %s; enforcing %s (load a list with "
				 "SADD %s ...)", r->keys[0], r->keys[1], r->keys[2], cur, r->keys[0]);
			r->warned_empty = 1;
		}
		become_ready(r);
		schedule(r, r->o->reload_ms);
		return;
	}
	r->warned_empty = 0;

	policy_builder_t *b = policy_builder_new();
	struct invalid_log il = {0};
	int bad = !b;
	if (b) {
		bad |= add_members(b, POLICY_DENY, e[0], r->keys[0], &il) < 0;
		bad |= add_members(b, POLICY_ALLOW, e[1], r->keys[1], &il) < 0;
		if (e[2]->type != REDIS_REPLY_ARRAY) {
			bad = 1;
		} else {
			for (size_t i = 0; i + 1 < e[2]->elements; i += 2) {
				const redisReply *k = e[2]->element[i], *v = e[2]->element[i + 1];
				if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
				    policy_builder_set_reason(b, k->str, k->len, v->str, v->len) == -EINVAL)
					note_invalid(&il, r->keys[2], k->str ? k->str : "", k->str ? k->len : 0);
			}
		}
	}
	if (bad) {
		/* A key of the wrong type is an operator error; never let it empty the policy. */
		char cur[200];
		describe_current(r, cur, sizeof(cur));
		log_err("redis policy keys have the wrong type (%s and %s must be sets, %s a hash); "
			"keeping %s", r->keys[0], r->keys[1], r->keys[2], cur);
		policy_builder_free(b);
		become_ready(r);
		schedule(r, r->o->reload_ms);
		return;
	}
	if (il.hash != r->invalid_hash) {
		for (size_t i = 0; i < il.count && i < INVALID_LOGGED; i++)
			log_warn("skipped invalid policy entry: %s", il.lines[i]);
		if (il.count > INVALID_LOGGED)
			log_warn("skipped %zu invalid policy entries in all", il.count);
		r->invalid_hash = il.hash;
	}

	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	if (!p) {
		log_err("out of memory building the policy; keeping the current one");
	} else {
		const struct policy_stats *cur = policy_stats(policy_store_current(r->store));
		const struct policy_stats *st = policy_stats(p);
		if (cur->source == POLICY_SOURCE_REDIS && cur->version == st->version) {
			policy_free(p); /* Unchanged. */
		} else {
			log_info("policy loaded from redis: %zu deny, %zu allow, %zu reasons, %zu invalid "
				 "skipped, version %016llx, %zu KiB", st->deny, st->allow, st->reasons,
				 st->invalid, (unsigned long long)st->version, policy_memory(p) >> 10);
			if (policy_store_publish(r->store, p) < 0) {
				log_err("out of memory publishing the policy; keeping the current one");
				policy_free(p);
			}
		}
	}
	become_ready(r);
	schedule(r, r->o->reload_ms);
}

static void on_auth(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_sync_t *r = privdata;
	redisReply *reply = reply_ptr;
	if (reply && reply->type == REDIS_REPLY_ERROR) {
		log_err("redis refused AUTH or SELECT: %s", reply->str);
		redisAsyncDisconnect(ac);
	}
	(void)r;
}

static void load(redis_sync_t *r)
{
	if (!r->ac || r->loading)
		return;
	r->loading = 1;
	redisAsyncCommand(r->ac, NULL, NULL, "MULTI");
	redisAsyncCommand(r->ac, NULL, NULL, "SMEMBERS %s", r->keys[0]);
	redisAsyncCommand(r->ac, NULL, NULL, "SMEMBERS %s", r->keys[1]);
	redisAsyncCommand(r->ac, NULL, NULL, "HGETALL %s", r->keys[2]);
	redisAsyncCommand(r->ac, NULL, NULL, "EXISTS %s %s %s", r->keys[0], r->keys[1], r->keys[2]);
	redisAsyncCommand(r->ac, on_exec, r, "EXEC");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	redis_sync_t *r = ac->data;
	if (status != REDIS_OK) {
		r->ac = NULL; /* hiredis frees the context after this callback. */
		if (r->closing) {
			maybe_free(r);
			return;
		}
		link_down(r, ac->errstr);
		return;
	}
	r->backoff_ms = BACKOFF_MIN_MS;
	if (r->link != LINK_UP)
		log_info("connected to redis %s:%d", r->o->redis_host, r->o->redis_port);
	r->link = LINK_UP;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	redis_sync_t *r = ac->data;
	r->ac = NULL;
	r->loading = 0;
	if (r->closing) {
		maybe_free(r);
		return;
	}
	uv_timer_stop(&r->timer);
	link_down(r, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void connect_now(redis_sync_t *r)
{
	if (r->closing)
		return;
	if (r->ac) {
		load(r); /* Connected: this tick is a reload. */
		return;
	}
	redisAsyncContext *ac = redisAsyncConnect(r->o->redis_host, r->o->redis_port);
	if (!ac) {
		link_down(r, "out of memory");
		return;
	}
	if (ac->err) {
		char why[128];
		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac);
		link_down(r, why);
		return;
	}
	ac->data = r;
	if (redis_uv_attach(ac, r->loop) < 0) {
		redisAsyncFree(ac);
		link_down(r, "cannot attach to the event loop");
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	r->ac = ac;
	/* Queued until the connection is up. */
	if (r->o->redis_password[0])
		redisAsyncCommand(ac, on_auth, r, "AUTH %s", r->o->redis_password);
	if (r->o->redis_db)
		redisAsyncCommand(ac, on_auth, r, "SELECT %d", r->o->redis_db);
	load(r);
}

static void on_startup_timeout(uv_timer_t *t)
{
	redis_sync_t *r = t->data;
	if (!r->ready) {
		log_warn("redis did not answer within %d ms: enforcing the bundled list for now",
			 STARTUP_WAIT_MS);
		become_ready(r);
	}
}

redis_sync_t *redis_sync_new(uv_loop_t *loop, const struct options *o, policy_store_t *store,
			     redis_sync_ready_cb ready, void *ctx)
{
	redis_sync_t *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->loop = loop;
	r->o = o;
	r->store = store;
	r->ready_cb = ready;
	r->ctx = ctx;
	r->backoff_ms = BACKOFF_MIN_MS;
	snprintf(r->keys[0], sizeof(r->keys[0]), "%s:deny", o->redis_prefix);
	snprintf(r->keys[1], sizeof(r->keys[1]), "%s:allow", o->redis_prefix);
	snprintf(r->keys[2], sizeof(r->keys[2]), "%s:reason", o->redis_prefix);
	uv_timer_init(loop, &r->timer);
	uv_timer_init(loop, &r->startup);
	r->timer.data = r->startup.data = r;
	r->open_timers = 2;
	uv_timer_start(&r->startup, on_startup_timeout, STARTUP_WAIT_MS, 0);
	connect_now(r);
	return r;
}

static void timer_closed(uv_handle_t *h)
{
	redis_sync_t *r = h->data;
	r->open_timers--;
	maybe_free(r);
}

void redis_sync_close(redis_sync_t *r)
{
	if (!r)
		return;
	r->closing = 1;
	uv_close((uv_handle_t *)&r->timer, timer_closed);
	uv_close((uv_handle_t *)&r->startup, timer_closed);
	if (r->ac)
		redisAsyncDisconnect(r->ac);
}
