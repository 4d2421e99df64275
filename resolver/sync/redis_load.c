/* The load's read: INFO and the audit tail, then one MULTI with the keys' types and sizes and
 * the consent record, then SSCAN/HSCAN in bounded batches straight into a policy builder. A
 * change other than an addition notified while the keys are read tears the read: it is thrown
 * away and read again; a barrier on the notification connection after the last scan reply proves
 * that no such notification is still on its way. Runs on the loop; never builds nor publishes. */
#include "config.h"

#include "resolver/sync/redis_load.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "policy/fnv.h"
#include "resolver/base/log.h"
#include "resolver/sync/redis_audit.h"
#include "resolver/sync/redis_build.h"
#include "resolver/sync/redis_save.h"

#define COALESCE_MS 5          /* A burst of changes (a pipeline, an import) becomes one load. */
#define SCAN_COUNT "20000"

static void note_invalid(struct redis_state_invalid *il, const char *key, const char *member,
			 size_t len)
{
	/* A sum, so that the order Redis returns members in does not matter. */
	il->hash += fnv_bytes(fnv_bytes(FNV_BASIS, key, strlen(key)), member, len);
	if (il->count < REDIS_STATE_INVALID_LOGGED) {
		/* Formatted apart: key lives in the same struct as the lines, which GCC's
		 * -Wrestrict cannot tell apart once this is inlined. */
		char line[sizeof(il->lines[0])];
		snprintf(line, sizeof(line), "%s member '%.*s'", key, (int)(len > 100 ? 100 : len),
			 member);
		memcpy(il->lines[il->count], line, sizeof(line));
	}
	il->count++;
}

static void on_coalesced(uv_timer_t *t);

/* Every key is read: build, unless a policy key changed while it was read. */
static void read_complete(redis_sync_t *r)
{
	if (r->torn) {
		/* What was read may mix the state before the change with the state after (a key
		 * replaced by RENAME or MULTI mid-scan): never publish it; read again. */
		if (!r->torn_logged)
			log_info("redis policy changed while it was being read; reading it again");
		r->torn_logged = 1;
		r->dirty = 0;
		r->reread = REDIS_STATE_ALL_KEYS;
		int closing = r->closing;
		redis_state_load_done(r); /* May free r when closing. */
		if (!closing) /* Once the burst of changes has settled. */
			uv_timer_start(&r->coalesce, on_coalesced, COALESCE_MS, 0);
		return;
	}
	r->torn_logged = 0;
	r->t_read = redis_state_now_ms(r);
	redis_build_start(r);
}

static void read_done(redis_sync_t *r)
{
	/* Each key's invalid members are logged when they change, not at every read. */
	for (int k = 0; k < REDIS_STATE_NKEYS; k++) {
		if (!(r->scanning & (1u << k))) {
			/* Carried over: so are its invalid members, for the count in the stats. */
			policy_builder_count_invalid(r->builder, r->invalid_count[k]);
			continue;
		}
		const struct redis_state_invalid *il = &r->il[k];
		r->invalid_count[k] = il->count;
		if (il->hash == r->invalid_hash[k])
			continue;
		for (size_t i = 0; i < il->count && i < REDIS_STATE_INVALID_LOGGED; i++)
			log_warn("skipped invalid policy entry: %s", il->lines[i]);
		if (il->count > REDIS_STATE_INVALID_LOGGED)
			log_warn("skipped %zu invalid entries of %s in all", il->count, r->keys[k]);
		r->invalid_hash[k] = il->hash;
	}
	/* A notification of a change made before the last scan reply is already on its way on
	 * the other connection; the barrier's answer comes after it. */
	r->load_barrier = r->notify ? redis_link_barrier(r->link) : 0;
	if (!r->load_barrier)
		read_complete(r); /* Interval re-reads: nothing could tell of a change meanwhile. */
}

static void send_scan(redis_sync_t *r, int key, const char *cursor);

/* Entries of one scan reply handed to the builder at a time. */
#define ITEMS_RUN 256

struct items_run {
	redis_sync_t *r;
	int key;
	const redisReply *const *members; /* This run's names (HSCAN: field, value pairs). */
	size_t stride;
};

static void item_invalid(void *ctx, size_t i)
{
	const struct items_run *run = ctx;
	const redisReply *m = run->members[i * run->stride];
	note_invalid(&run->r->il[run->key], run->r->keys[run->key],
		     m->type == REDIS_REPLY_STRING ? m->str : "",
		     m->type == REDIS_REPLY_STRING ? m->len : 0);
}

/* Add a scan reply's members (SSCAN) or field/value pairs (HSCAN) to the builder.
 * @return 0 or -ENOMEM. */
static int add_items(redis_sync_t *r, int key, const redisReply *items)
{
	size_t stride = key == REDIS_STATE_KEY_REASON ? 2 : 1;
	size_t count = items->elements / stride;
	enum policy_action action = key == REDIS_STATE_KEY_DENY    ? POLICY_DENY
				    : key == REDIS_STATE_KEY_ALLOW ? POLICY_ALLOW
								   : POLICY_PASS;
	struct policy_entry e[ITEMS_RUN];
	for (size_t base = 0; base < count; base += ITEMS_RUN) {
		size_t n = count - base < ITEMS_RUN ? count - base : ITEMS_RUN;
		const redisReply *const *m =
			(const redisReply *const *)items->element + base * stride;
		for (size_t i = 0; i < n; i++) {
			const redisReply *k = m[i * stride], *v = stride == 2 ? m[i * 2 + 1] : NULL;
			int ok = k->type == REDIS_REPLY_STRING &&
				 (!v || v->type == REDIS_REPLY_STRING);
			e[i] = (struct policy_entry){.name = ok ? k->str : NULL,
						     .len = ok ? k->len : 0,
						     .action = action,
						     .reason = v && ok ? v->str : NULL,
						     .reason_len = v && ok ? v->len : 0};
		}
		struct items_run run = {.r = r, .key = key, .members = m, .stride = stride};
		if (policy_builder_put_many(r->builder, e, n, item_invalid, &run) < 0)
			return -ENOMEM;
	}
	return 0;
}

static void on_scan(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	struct redis_state_scan *sc = privdata;
	redis_sync_t *r = sc->r;
	redisReply *reply = reply_ptr;
	if (!reply || !r->builder || r->phase != REDIS_STATE_READING)
		return; /* Disconnected, or the load was abandoned. */
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY) {
		/* The key changed type under the scan, or Redis is busy: keep the current policy,
		 * read again. */
		char why[200];
		snprintf(why, sizeof(why), "scan of %s: %s", r->keys[sc->key],
			 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		redis_state_load_failed(r, why);
		return;
	}
	/* Ask for the next batch first: Redis reads it while this thread parses this one. */
	const char *cursor = reply->element[0]->str;
	int last = strcmp(cursor, "0") == 0;
	if (!last)
		send_scan(r, sc->key, cursor);
	const redisReply *items = reply->element[1];
	if (add_items(r, sc->key, items) < 0) {
		redis_state_load_failed(r, "out of memory reading the policy");
		return;
	}
	if (!last)
		return;
	if (--r->scans_left == 0)
		read_done(r);
}

static void send_scan(redis_sync_t *r, int key, const char *cursor)
{
	redisAsyncContext *ac = redis_link_commands(r->link);
	if (!ac)
		return; /* The link is down: it said so, and the load was dropped. */
	redisAsyncCommand(ac, on_scan, &r->scans[key], "%s %s %s COUNT " SCAN_COUNT,
			  key == REDIS_STATE_KEY_REASON ? "HSCAN" : "SSCAN", r->keys[key], cursor);
}

static void on_types(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_sync_t *r = privdata;
	redisReply *reply = reply_ptr;
	if (!reply || r->phase != REDIS_STATE_READING)
		return;
	if (reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements != REDIS_STATE_NCHANNELS + REDIS_STATE_NKEYS) {
		/* -BUSY, -LOADING, a refused command: the EXEC fails whole. */
		redis_state_load_failed(r, reply->type == REDIS_REPLY_ERROR ? reply->str
									  : "unexpected reply");
		return;
	}
	static const char *const want[REDIS_STATE_NKEYS] = {"set", "set", "hash"};
	int present = 0, bad = 0;
	for (int k = 0; k < REDIS_STATE_NKEYS; k++) {
		const redisReply *t = reply->element[k];
		if (t->type == REDIS_REPLY_ERROR) {
			redis_state_load_failed(r, t->str);
			return;
		}
		const char *type = (t->type == REDIS_REPLY_STATUS || t->type == REDIS_REPLY_STRING)
					   ? t->str
					   : "";
		if (strcmp(type, "none") == 0)
			continue;
		present |= 1 << k;
		bad |= strcmp(type, want[k]) != 0;
	}
	if (bad) {
		/* An operator error; it must never empty the policy. Retried until mended. */
		char why[300];
		snprintf(why, sizeof(why), "policy keys have the wrong type (%s and %s must be sets, "
			 "%s a hash)", r->keys[0], r->keys[1], r->keys[2]);
		redis_state_load_failed(r, why);
		return;
	}
	/* The consent record: the fields a consent has, whatever else the hash holds (a reply
	 * of bounded size), or none (a consent of another shape is none). */
	const redisReply *c = reply->element[REDIS_STATE_KEY_ACCEPT];
	r->consent = (struct consent){0};
	if (c->type == REDIS_REPLY_ARRAY && c->elements == CONSENT_FIELDS) {
		unsigned seen = 0;
		for (size_t i = 0; i < CONSENT_FIELDS; i++) {
			const redisReply *v = c->element[i];
			const char *f = CONSENT_FIELD_NAMES[i];
			if (v->type == REDIS_REPLY_STRING)
				seen |= consent_set_field(&r->consent, f, strlen(f), v->str, v->len);
		}
		consent_finish(&r->consent, seen);
	}
	r->deny_missing = present && !(present & (1 << REDIS_STATE_KEY_DENY));
	if (!present) {
		/* Fail closed: an empty Redis never lifts the list in force. */
		redis_state_load_worked(r);
		r->in_sync = 0;
		redis_state_set_hold(r, REDIS_SYNC_HOLD_EMPTY, 0, 0, 0);
		if (!r->warned_empty) {
			char cur[200];
			redis_state_describe_current(r, cur, sizeof(cur));
			log_warn("redis has none of %s, %s, %s; enforcing %s (load a list with "
				 "embargo-policy import)", r->keys[0], r->keys[1], r->keys[2], cur);
			r->warned_empty = 1;
		}
		redis_state_load_done(r);
		return;
	}
	r->builder = policy_builder_new();
	if (!r->builder) {
		redis_state_load_failed(r, "out of memory reading the policy");
		return;
	}
	memset(&r->il, 0, sizeof(r->il));
	/* Keys not to be read again come from the policy in force, if that came from Redis. A key
	 * gone from Redis has nothing to carry. */
	const policy_t *cur = policy_store_current(r->store);
	/* The next policy is most likely about the size of this one: room for it up front saves
	 * rehashing and copying while a million members stream in. */
	const struct policy_stats *cs = policy_stats(cur);
	size_t names = cs->deny + cs->allow + cs->reasons;
	(void)policy_builder_reserve(r->builder, names, names * 32);
	if (policy_stats(cur)->source != POLICY_SOURCE_REDIS || !r->in_sync)
		r->scanning = REDIS_STATE_ALL_KEYS;
	/* A key is carried over only if it has as many members as when it was last read: a change
	 * that sent no notification (SWAPDB, DEBUG RELOAD, a resync not noticed) is read. */
	for (int k = 0; k < REDIS_STATE_NKEYS; k++) {
		const redisReply *n = reply->element[REDIS_STATE_NCHANNELS + k];
		long long card = n->type == REDIS_REPLY_INTEGER ? n->integer : -1;
		if (card != r->card[k])
			r->scanning |= 1u << k;
		if (r->scanning & (1u << k))
			r->card[k] = card;
	}
	unsigned carry = REDIS_STATE_ALL_KEYS & ~r->scanning & (unsigned)present;
	r->scans_left = 0;
	for (int k = 0; k < REDIS_STATE_NKEYS; k++)
		if ((present & (1 << k)) && (r->scanning & (1u << k)))
			r->scans_left++;
	for (int k = 0; k < REDIS_STATE_NKEYS; k++)
		if ((present & (1 << k)) && (r->scanning & (1u << k)))
			send_scan(r, k, "0");
	/* The rest is copied from the policy in force by the build, off this loop. */
	static const unsigned parts[REDIS_STATE_NKEYS] = {POLICY_PART_DENY, POLICY_PART_ALLOW,
							  POLICY_PART_REASON};
	r->carry_parts = 0;
	for (int k = 0; k < REDIS_STATE_NKEYS; k++)
		if (carry & (1u << k))
			r->carry_parts |= parts[k];
	if (r->scans_left == 0)
		read_done(r);
}

void redis_load_start(redis_sync_t *r)
{
	if (r->closing)
		return;
	redisAsyncContext *ac = redis_link_commands(r->link);
	if (!ac)
		return;
	if (r->phase != REDIS_STATE_IDLE) {
		r->dirty = 1; /* One more load once this one is done. */
		return;
	}
	uv_timer_stop(&r->timer);
	/* A window with no hold moves the baseline to the policy in force (--max-shrink-window):
	 * at most the budget can be lifted without consent in each window. */
	const policy_t *in_force = policy_store_current(r->store);
	if (policy_stats(in_force)->source != POLICY_SOURCE_HELD &&
	    guard_window(r->guard, in_force, r->o->max_shrink_window, (int64_t)time(NULL))) {
		log_info("no held load for %us: the policy in force (version %016" PRIx64 ") is now "
			 "the baseline lifts are counted against", r->o->max_shrink_window,
			 policy_stats(in_force)->version);
		redis_save_guard_state(r);
	}
	r->phase = REDIS_STATE_READING;
	r->dirty = 0;
	r->torn = 0;
	/* What Redis says of itself comes before the policy (same connection, in order), so a
	 * rollback is known when the load is decided. */
	redis_audit_ask_history(r, ac);
	r->scanning = r->reread ? r->reread : REDIS_STATE_ALL_KEYS;
	r->reread = 0;
	r->t_start = redis_state_now_ms(r);
	redisAsyncCommand(ac, NULL, NULL, "MULTI");
	for (int k = 0; k < REDIS_STATE_NKEYS; k++)
		redisAsyncCommand(ac, NULL, NULL, "TYPE %s", r->keys[k]);
	redisAsyncCommand(ac, NULL, NULL, "HMGET %s %s %s %s %s %s %s %s",
			  r->keys[REDIS_STATE_KEY_ACCEPT], CONSENT_FIELD_NAMES[0], CONSENT_FIELD_NAMES[1],
			  CONSENT_FIELD_NAMES[2], CONSENT_FIELD_NAMES[3], CONSENT_FIELD_NAMES[4],
			  CONSENT_FIELD_NAMES[5], CONSENT_FIELD_NAMES[6]);
	for (int k = 0; k < REDIS_STATE_NKEYS; k++)
		redisAsyncCommand(ac, NULL, NULL, "%s %s",
				  k == REDIS_STATE_KEY_REASON ? "HLEN" : "SCARD", r->keys[k]);
	redisAsyncCommand(ac, on_types, r, "EXEC");
}

static void on_coalesced(uv_timer_t *t)
{
	redis_load_start(t->data);
}

void redis_load_on_changed(void *ctx, unsigned channel, int adds)
{
	redis_sync_t *r = ctx;
	if (r->closing)
		return;
	/* Only the key that changed is read again; the others are carried over. A new consent
	 * matters only to a held load, which reads every key anyway. */
	r->reread |= channel == REDIS_STATE_KEY_ACCEPT ? REDIS_STATE_ALL_KEYS : 1u << channel;
	/* During a read, a change that only adds (SADD, HSET) leaves every member the read
	 * started with in place, and SSCAN/HSCAN return those: what is read is the old policy
	 * plus some of the additions, never less. Anything else (SREM, DEL, RENAME, expiry,
	 * eviction...) may have torn the read. */
	if (r->phase == REDIS_STATE_READING && !adds)
		r->torn = 1;
	if (r->phase != REDIS_STATE_IDLE)
		r->dirty = 1;
	else if (!uv_is_active((uv_handle_t *)&r->coalesce))
		uv_timer_start(&r->coalesce, on_coalesced, COALESCE_MS, 0);
}

void redis_load_on_barrier(void *ctx, unsigned acked)
{
	redis_sync_t *r = ctx;
	if (r->load_barrier && acked >= r->load_barrier && r->phase == REDIS_STATE_READING) {
		r->load_barrier = 0;
		read_complete(r);
	}
}

void redis_load_on_resynced(void *ctx)
{
	redis_sync_t *r = ctx;
	r->reread = REDIS_STATE_ALL_KEYS;
	if (r->phase == REDIS_STATE_IDLE)
		redis_load_start(r);
	else
		r->dirty = 1;
}
