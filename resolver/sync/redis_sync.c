/* Redis synchroniser. A load checks the three keys' types and sizes and reads the consent record
 * in one MULTI, reads the keys with SSCAN/HSCAN in bounded batches (never one huge reply), builds
 * the policy and its diff against the policy in force on libuv's thread pool, and publishes it
 * from the loop unless policy/guard.c holds it (it would lift too many deny rules: Redis lost its
 * data); a snapshot is then saved on the pool too. Changes arrive as keyspace notifications
 * through resolver/sync/redis_link.c and are coalesced: one load at a time, and one more if anything
 * changed meanwhile. A change other than an addition that is notified while the keys are being
 * read makes the read torn: it is thrown away and read again; a barrier on the notification
 * connection after the last scan reply proves that no such notification is still on its way.
 * Where notifications cannot be had, the policy is re-read every --reload-interval. */
#include "config.h"

#include "resolver/sync/redis_sync.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "policy/fnv.h"
#include "policy/guard.h"
#include "resolver/sync/guard_state.h"
#include "resolver/base/log.h"
#include "resolver/sync/redis_history.h"
#include "resolver/sync/redis_link.h"
#include "resolver/sync/redis_push.h"
#include "resolver/sync/snapshot.h"

#define LOAD_BACKOFF_MIN_MS 100
#define LOAD_BACKOFF_MAX_MS 5000 /* A failed load (-BUSY, -LOADING...) is retried this often. */
#define STARTUP_WAIT_MS 2000
#define COALESCE_MS 5          /* A burst of changes (a pipeline, an import) becomes one load. */
#define SAFETY_RELOAD_MS 300000 /* Re-read even with notifications, in case one was lost. */
#define SCAN_COUNT "20000"
#define INVALID_LOGGED 10

enum phase { IDLE, READING, BUILDING };
/* The policy keys, then the consent record (read with each load, never scanned). */
enum { KEY_DENY, KEY_ALLOW, KEY_REASON, NKEYS, KEY_ACCEPT = NKEYS, NCHANNELS };
#define ALL_KEYS ((1u << NKEYS) - 1)

struct invalid_log {
	uint64_t hash;
	size_t count;
	char lines[INVALID_LOGGED][160];
};

struct scan {
	redis_sync_t *r;
	int key;
};

struct redis_sync {
	uv_loop_t *loop;
	const struct options *o;
	policy_store_t *store;
	redis_sync_ready_cb ready_cb;
	redis_sync_hold_cb hold_cb;
	void *ctx;
	redis_link_t *link;
	int link_open;          /* Until redis_link_close() has finished. */
	uv_timer_t timer;       /* Periodic re-reads and retries. */
	uv_timer_t startup;
	uv_timer_t coalesce;
	uv_work_t work;
	int open_handles;
	int closing;
	int ready;
	enum phase phase;
	int dirty;              /* A change was notified during the current load. */
	unsigned reread;        /* Keys (1 << KEY_*) the next load must read from Redis. */
	unsigned scanning;      /* Keys the current load reads; the others it carries over. */
	int notify;             /* Notifications are followed. */
	unsigned load_backoff_ms;
	char last_fail[200];    /* Why the last load failed; logged once while it repeats. */
	int warned_empty;
	int warned_hits;        /* A HINCRBY was refused: said once. */
	int warned_report;      /* The client report was refused: said once. */
	unsigned pushes;        /* Hit counter and report commands not answered yet. */
	struct redis_sync_stats *stats; /* Borrowed; a local one until redis_sync_count(). */
	struct redis_sync_stats own_stats;
	void (*closed)(void *ctx); /* Called once everything is closed and freed. */
	void *closed_ctx;
	int was_up;             /* The link has been up before (a new up is a reconnection). */
	unsigned load_barrier;  /* The barrier the load in progress waits for; 0: none. */
	int torn;               /* A policy key changed while the load read it. */
	int torn_logged;
	/* The held-load rule. in_sync: the policy in force is what Redis held at the last load, so
	 * a load may carry unchanged keys over from it. */
	int in_sync;
	enum guard_verdict held;
	uint64_t held_version;
	int hold_shown;         /* Status answers may show a hold: this link's, or a predecessor's. */
	guard_t *guard;         /* Borrowed from the daemon: it outlives links. */
	struct consent consent; /* As read by the load in progress. */
	enum consent_fault consent_said; /* The last consent fault logged, for held_version. */
	struct redis_history history; /* To tell a rollback (redis_history.h). */
	int warned_audit;       /* The daemon's audit entries were refused: said once. */
	char *state_written;    /* The guard state file as last written. */
	int state_refused;      /* It belongs to another prefix: said once. */
	int deny_missing;
	uint64_t invalid_hash[NKEYS];  /* Of each key's invalid members when last logged. */
	long long card[NKEYS];         /* SCARD/HLEN of each key when last read. */
	size_t invalid_count[NKEYS];   /* Of each key's invalid members when last read. */
	char keys[NCHANNELS][80];
	struct scan scans[NKEYS];
	/* The load in progress. */
	policy_builder_t *builder;
	struct invalid_log il[NKEYS];
	int scans_left;
	uint64_t t_start, t_read;
	policy_builder_t *building; /* Handed to the thread pool. */
	unsigned carry_parts;       /* What it copies from the policy in force (POLICY_PART_*). */
	policy_t *built;
	struct guard_diff diff;     /* Of built against the policy in force. */
	struct guard_names lifted;  /* What built lifts against the guard's protected set. */
	enum guard_verdict verdict; /* Of the guard on built. */
	struct guard_decision decision;
	policy_t *merged;           /* Built held: the policy in force plus what built adds. */
	policy_t *next_prot;        /* The protected set should built (or merged) be published. */
	/* The snapshot save, which overlaps the next load and never delays a publication: the
	 * saving thread reads the policy through its own reader slot of the store, so a policy
	 * replaced meanwhile is not freed under it. A policy published during a save is saved
	 * next. */
	uv_work_t save_req;
	struct policy_reader *saver;
	int saving;
	int save_again;
	int save_rc, last_save_rc;
	char save_err[512];
	uint64_t save_said_ms;  /* When a failing save was last logged (once a minute). */
};

static void start_load(redis_sync_t *r);

static uint64_t now_ms(redis_sync_t *r)
{
	uv_update_time(r->loop);
	return uv_now(r->loop);
}

static void maybe_free(redis_sync_t *r)
{
	if (r->closing && r->open_handles == 0 && !r->link_open && r->phase == IDLE && !r->saving) {
		void (*closed)(void *) = r->closed;
		void *ctx = r->closed_ctx;
		free(r->state_written);
		free(r);
		if (closed)
			closed(ctx);
	}
}

static void set_hold(redis_sync_t *r, enum redis_sync_hold kind, size_t removed, size_t of,
		     uint64_t version)
{
	r->hold_shown = kind != REDIS_SYNC_HOLD_NONE;
	if (r->hold_cb)
		r->hold_cb(r->ctx, kind, removed, of, version);
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
	snprintf(buf, cap, "%s, %zu deny and %zu allow rules, version %016" PRIx64,
		 policy_source_name(st->source), st->deny, st->allow, st->version);
}

static void on_timer(uv_timer_t *t)
{
	redis_sync_t *r = t->data;
	r->reread = ALL_KEYS; /* A periodic re-read of everything, or a retry. */
	start_load(r);        /* Nothing while the link is down: it reports when it is back. */
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

static void drop_builder(redis_sync_t *r)
{
	policy_builder_free(r->builder);
	r->builder = NULL;
	r->load_barrier = 0;
	if (r->phase == READING)
		r->phase = IDLE;
}

/* ---- Loading ----------------------------------------------------------------------------- */

static void note_invalid(struct invalid_log *il, const char *key, const char *member, size_t len)
{
	/* A sum, so that the order Redis returns members in does not matter. */
	il->hash += fnv_bytes(fnv_bytes(FNV_BASIS, key, strlen(key)), member, len);
	if (il->count < INVALID_LOGGED) {
		/* Formatted apart: key lives in the same struct as the lines, which GCC's
		 * -Wrestrict cannot tell apart once this is inlined. */
		char line[sizeof(il->lines[0])];
		snprintf(line, sizeof(line), "%s member '%.*s'", key, (int)(len > 100 ? 100 : len),
			 member);
		memcpy(il->lines[il->count], line, sizeof(line));
	}
	il->count++;
}

/* The load found nothing to publish: the policy in force stays. */
static void load_done(redis_sync_t *r)
{
	drop_builder(r);
	r->phase = IDLE;
	r->torn = 0;
	if (r->closing) {
		maybe_free(r);
		return;
	}
	become_ready(r);
	if (r->dirty) {
		r->dirty = 0;
		start_load(r);
		return;
	}
	schedule_reread(r);
}

static int publish_built(redis_sync_t *r, policy_t *p);
static void save_guard_state(redis_sync_t *r);
static void on_saved(uv_work_t *w, int status);

/* A load that reached Redis and finished (published, unchanged or held): failures are over. */
static void load_worked(redis_sync_t *r)
{
	r->load_backoff_ms = LOAD_BACKOFF_MIN_MS;
	if (r->last_fail[0])
		log_info("policy loads from redis work again");
	r->last_fail[0] = '\0';
	r->torn_logged = 0;
}

/* The load could not finish (-BUSY, -LOADING, a key changed type, out of memory): keep the
 * policy in force and the pending change, and try again soon, backing off to 5 s. */
static void load_failed(redis_sync_t *r, const char *why)
{
	if (strcmp(why, r->last_fail) != 0) {
		char cur[200];
		describe_current(r, cur, sizeof(cur));
		log_err("policy load from redis failed: %s; keeping %s; retrying", why, cur);
		snprintf(r->last_fail, sizeof(r->last_fail), "%s", why);
	}
	r->reread = ALL_KEYS;
	r->dirty = 0;
	int closing = r->closing;
	load_done(r); /* May free r when closing. */
	if (closing)
		return;
	/* load_done scheduled the periodic re-read; the retry comes sooner. */
	schedule(r, r->load_backoff_ms);
	r->load_backoff_ms = r->load_backoff_ms * 2 > LOAD_BACKOFF_MAX_MS ? LOAD_BACKOFF_MAX_MS
									 : r->load_backoff_ms * 2;
}

/* The candidate is held: the policy in force stays, and the log says so loudly, once per
 * candidate. */
static void audit(redis_sync_t *r, const char *kind, const char *by, const policy_t *from,
		  const policy_t *to);

static void hold_load(redis_sync_t *r, enum guard_verdict v, const policy_t *p)
{
	const struct policy_stats *st = policy_stats(p);
	atomic_fetch_add(&r->stats->held_loads, 1);
	/* Shown as "lifted/baseline": the names it would lift of those the baseline denies. */
	size_t removed = r->decision.lifted, base = r->decision.base;
	size_t of = guard_baseline_deny(r->guard);
	char vshort[DIGEST_SHORT_HEX + 1];
	digest_short(&st->digest, vshort);
	if (r->held != v || r->held_version != st->version) {
		char names[600], cs[200], bshort[DIGEST_SHORT_HEX + 1], bfull[DIGEST_HEX + 1];
		guard_names_text(&r->lifted, names, sizeof(names));
		describe_current(r, cs, sizeof(cs));
		const struct digest *bd = guard_baseline(r->guard);
		digest_short(bd, bshort);
		digest_hex(bd, bfull);
		if (v == GUARD_HOLD_MISSING)
			log_err("POLICY LOAD HELD: redis has no %s but has other policy keys, which "
				"would lift all %zu deny rules in force%s; still enforcing %s. If redis "
				"lost its data, restore it (embargo-policy restore); if this is intended, "
				"run embargo-policy accept --from %s %s", r->keys[KEY_DENY], removed, names,
				cs, bfull, vshort);
		else
			log_err("POLICY LOAD HELD: redis now holds %zu deny rules, which would lift %zu "
				"names denied since the consented baseline %s%s, more than --max-shrink "
				"allows (%zu of %zu%s); still enforcing %s. If redis lost its data, restore "
				"it (embargo-policy restore); if the removal is intended, run "
				"embargo-policy accept --from %s %s", st->deny, removed, bshort, names,
				r->decision.allowed, base,
				guard_is_rolled_back(r->guard) ? ", none after a redis rollback" : "", cs,
				bfull, vshort);
		r->consent_said = CONSENT_NONE;
		audit(r, "held", "redis", policy_store_current(r->store), p);
	}
	if (r->decision.consent != CONSENT_NONE && r->decision.consent != r->consent_said)
		log_err("consent in %s (by %s) does not release version %s: %s", r->keys[KEY_ACCEPT],
			r->consent.by[0] ? r->consent.by : "?", vshort,
			consent_fault_text(r->decision.consent));
	r->consent_said = r->decision.consent;
	guard_held(r->guard, &st->digest, r->decision.cap, (int64_t)time(NULL));
	r->held = v;
	r->held_version = st->version;
	r->in_sync = 0; /* Redis differs from the policy in force: read every key next time. */
	set_hold(r, v == GUARD_HOLD_MISSING ? REDIS_SYNC_HOLD_MISSING : REDIS_SYNC_HOLD_SHRINK, removed,
		 of, st->version);
}

static void unhold(redis_sync_t *r)
{
	if (r->hold_shown)
		set_hold(r, REDIS_SYNC_HOLD_NONE, 0, 0, 0);
	r->held = GUARD_PUBLISH;
	r->held_version = 0;
	r->warned_empty = 0;
}

static void save_work(uv_work_t *w);

static void start_save(redis_sync_t *r)
{
	r->saving = 1;
	r->save_req.data = r;
	if (uv_queue_work(r->loop, &r->save_req, save_work, on_saved) < 0)
		r->saving = 0;
}

static void on_saved(uv_work_t *w, int status)
{
	redis_sync_t *r = w->data;
	r->saving = 0;
	uint64_t now = now_ms(r);
	if (r->save_rc < 0) {
		/* The last line of defence is stale: an error, repeated once a minute while it lasts. */
		atomic_fetch_add(&r->stats->snapshot_failures, 1);
		atomic_store(&r->stats->snapshot_failing, 1);
		if (r->save_rc != r->last_save_rc || now - r->save_said_ms >= 60000) {
			log_err("policy snapshot not saved: %s", r->save_err);
			r->save_said_ms = now;
		}
	} else if (r->save_rc == 0) {
		atomic_store(&r->stats->snapshot_failing, 0);
		atomic_store(&r->stats->snapshot_saved_at, (long long)time(NULL));
	}
	if (r->save_rc == 0 && r->last_save_rc < 0)
		log_info("policy snapshot saved to %s again", r->o->snapshot);
	r->last_save_rc = r->save_rc;
	if (r->save_again) {
		/* Also when stopping: the loop runs until it is done, so that the snapshot holds
		 * the last policy enforced. */
		r->save_again = 0;
		start_save(r);
		if (!r->saving)
			maybe_free(r);
		return;
	}
	maybe_free(r);
}

/* Building and saving yield the CPU to the workers answering queries. */
static void yield_to_workers(void)
{
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
}

static void save_work(uv_work_t *w)
{
	redis_sync_t *r = w->data;
	yield_to_workers();
	/* Whatever is current now: only published policies are ever saved, and of those not a
	 * held load's merge, which is no state Redis ever had (and whose deny count must not
	 * become the base of the held-load rule after a restart). */
	const policy_t *p = policy_store_enter(r->store, r->saver);
	if (policy_stats(p)->source == POLICY_SOURCE_HELD) {
		policy_store_quiescent(r->saver);
		r->save_rc = r->last_save_rc;
		return;
	}
	struct codec_meta meta = {.saved_at = time(NULL), .db = r->o->redis_db};
	snprintf(meta.prefix, sizeof(meta.prefix), "%s", r->o->redis_prefix);
	r->save_rc = snapshot_save(r->o->snapshot, p, &meta, r->save_err, sizeof(r->save_err));
	policy_store_quiescent(r->saver);
}

/* The guard's verdict on p. The guard changes only on this thread's loop, between builds; the
 * rollback mark it reads is atomic. */
static enum guard_verdict decide(redis_sync_t *r, const policy_t *p)
{
	const struct options *o = r->o;
	return guard_decide(r->guard, &o->max_shrink, p, policy_store_current(r->store),
			    r->lifted.count, r->deny_missing, &r->consent,
			    o->consent_key_file[0] ? o->consent_key : NULL, o->redis_prefix, o->redis_db,
			    (int64_t)time(NULL), &r->decision);
}

static void build_work(uv_work_t *w)
{
	redis_sync_t *r = w->data;
	yield_to_workers();
	/* The policy in force cannot be retired meanwhile: only this loop publishes, after. */
	if (r->carry_parts &&
	    policy_builder_add_from(r->building, policy_store_current(r->store), r->carry_parts) < 0) {
		policy_builder_free(r->building);
		r->built = NULL;
		return;
	}
	r->built = policy_build(r->building, POLICY_SOURCE_REDIS);
	r->merged = NULL;
	if (!r->built)
		return;
	r->next_prot = NULL;
	const policy_t *cur = policy_store_current(r->store);
	guard_diff(cur, r->built, &r->diff);
	/* Lifts count against the guard's protected set (the consented baseline and everything
	 * enforced since), not against the policy in force: many small removals add up. */
	guard_lifts(r->guard, r->built, cur, &r->diff, &r->lifted);
	r->verdict = decide(r, r->built);
	if (r->verdict == GUARD_PUBLISH && r->lifted.count > 0)
		r->next_prot = guard_union(r->guard, r->built); /* Protected stays protected. */
	if ((r->verdict != GUARD_HOLD_SHRINK && r->verdict != GUARD_HOLD_MISSING) ||
	    r->diff.deny_added.count == 0)
		return;
	/* Held: nothing it lifts is enforced, but what it denies anew is, on top of the policy
	 * in force; of allow rules only those both have (a new one lifts, and one it dropped
	 * leaves names it means to deny). */
	policy_builder_t *b = policy_builder_new();
	if (b && policy_builder_add_from(b, cur, POLICY_PART_DENY | POLICY_PART_REASON) == 0 &&
	    policy_builder_add_from(b, r->built, POLICY_PART_DENY | POLICY_PART_REASON) == 0 &&
	    policy_builder_add_allows_in(b, cur, r->built) == 0)
		r->merged = policy_build(b, POLICY_SOURCE_HELD);
	else
		policy_builder_free(b);
	/* What a merge enforces is protected too: its additions cannot be lifted silently later. */
	if (r->merged)
		r->next_prot = guard_union(r->guard, r->merged);
}

static void on_built(uv_work_t *w, int status)
{
	redis_sync_t *r = w->data;
	policy_t *p = r->built, *merged = r->merged, *next_prot = r->next_prot;
	r->built = r->merged = r->next_prot = NULL;
	if (r->closing) {
		policy_free(p);
		policy_free(merged);
		policy_free(next_prot);
		load_done(r);
		return;
	}
	if (!p) {
		load_failed(r, "out of memory building the policy");
		return;
	}
	load_worked(r);
	const struct policy_stats *cur = policy_stats(policy_store_current(r->store));
	const struct policy_stats *st = policy_stats(p);
	if (digest_is_equal(&cur->digest, &st->digest)) {
		if (guard_is_rolled_back(r->guard))
			log_info("redis holds the policy in force: the rollback mark is cleared");
		guard_in_sync(r->guard);
		save_guard_state(r);
	}
	if (cur->source == POLICY_SOURCE_REDIS && digest_is_equal(&cur->digest, &st->digest)) {
		policy_free(p); /* Unchanged: Redis holds what is in force (again). */
		policy_free(merged);
		policy_free(next_prot);
		if (r->held != GUARD_PUBLISH)
			log_info("redis holds the policy in force again: the held load is dropped");
		unhold(r);
		r->in_sync = 1;
		load_done(r);
		return;
	}
	/* Decided again here: a rollback may have been seen, or a consent become valid, while it
	 * was built. */
	enum guard_verdict v = decide(r, p);
	if (v == GUARD_PUBLISH && r->lifted.count > 0 && !next_prot) {
		/* What it lifts could not be kept protected (out of memory, or the build judged it
		 * held and made no protection): publishing it would forget them. Read it again. */
		policy_free(p);
		policy_free(merged);
		load_failed(r, "the names the load lifts could not be kept protected");
		return;
	}
	if (v == GUARD_HOLD_SHRINK || v == GUARD_HOLD_MISSING) {
		if (r->verdict == GUARD_PUBLISH) { /* Held after all: its union is not needed. */
			policy_free(next_prot);
			next_prot = NULL;
		}
		hold_load(r, v, p);
		if (merged) {
			char names[600];
			guard_names_text(&r->diff.deny_added, names, sizeof(names));
			log_warn("while the load is held, enforcing the %zu deny rules it adds%s on "
				 "top of the policy in force", r->diff.deny_added.count, names);
			policy_set_loaded_at(merged, time(NULL));
		}
		policy_free(p);
		if (merged) {
			/* The protected set grows by what the merge enforces (stays as it was if it
			 * could not be built), on disk before the merge is in force. */
			(void)guard_published(r->guard, merged, v, NULL, 0, next_prot,
					      (int64_t)time(NULL));
			save_guard_state(r);
			(void)publish_built(r, merged);
		} else {
			policy_free(next_prot);
			save_guard_state(r);
			load_done(r);
		}
		return;
	}
	policy_free(merged); /* Built for a hold that a consent made needless meanwhile. */
	int consented = v == GUARD_CONSENTED;
	if (consented)
		log_warn("policy load lifts %zu names denied since the consented baseline, more than "
			 "--max-shrink allows; released by the consent in %s by %s", r->decision.lifted,
			 r->keys[KEY_ACCEPT], r->consent.by[0] ? r->consent.by : "?");
	unhold(r);
	r->in_sync = 1;
	uint64_t t_end = now_ms(r);
	policy_set_loaded_at(p, time(NULL));
	char what[40] = "";
	static const char *const names[NKEYS] = {"deny", "allow", "reason"};
	for (int k = 0; k < NKEYS; k++)
		if (r->scanning & (1u << k))
			snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s%s",
				 what[0] ? "+" : "", names[k]);
	char changes[4000];
	guard_diff_text(&r->diff, changes, sizeof(changes));
	log_info("policy loaded from redis: %zu deny, %zu allow, %zu reasons, %zu invalid skipped, "
		 "version %016" PRIx64 ", %zu KiB; read %" PRIu64 " ms (%s), built %" PRIu64 " ms; "
		 "changes against %s %016" PRIx64 ": %s",
		 st->deny, st->allow, st->reasons, st->invalid, st->version, policy_memory(p) >> 10,
		 r->t_read - r->t_start, what, t_end - r->t_read, policy_source_name(cur->source),
		 cur->version, changes);
	atomic_fetch_add(&r->stats->loads, 1);
	atomic_store(&r->stats->last_load_ms, t_end - r->t_start);
	struct consent c = r->consent;
	/* Held: publishing may free the policy it replaces at once (no reader holds it). */
	policy_t *from = policy_ref(policy_store_current(r->store));
	/* Written ahead: what this publication spends (or the consent it uses) is on disk before
	 * the policy is in force, so a crash between the two can only over-count. */
	(void)guard_published(r->guard, p, v, &c, r->lifted.count, next_prot, (int64_t)time(NULL));
	save_guard_state(r);
	if (publish_built(r, p) == 0)
		audit(r, consented ? "consented" : "published", consented && c.by[0] ? c.by : "redis",
		      from, p);
	policy_free(from);
}

/* Enforce p, start saving it, and end the load: the next one may start while the save runs.
 * @return 0, or -ENOMEM when p could not be published (and was freed). p stays valid after a
 * success until the loop returns (only this loop publishes and reclaims). */
static int publish_built(redis_sync_t *r, policy_t *p)
{
	if (policy_store_publish(r->store, p) < 0) {
		log_err("out of memory publishing the policy; keeping the current one");
		r->in_sync = 0; /* Redis differs from the policy in force. */
		policy_free(p);
		load_done(r);
		return -ENOMEM;
	}
	if (r->o->snapshot[0]) {
		if (r->saving)
			r->save_again = 1;
		else
			start_save(r);
	}
	load_done(r);
	return 0;
}

/* The guard's state on disk (SNAPSHOT.guard), when it changed: a restart must not forget the
 * consents used, a hold, what was spent of the budget, or Redis's history. */
static void save_guard_state(redis_sync_t *r)
{
	if (!r->o->snapshot[0])
		return;
	char path[300], err[600];
	snprintf(path, sizeof(path), "%s.guard", r->o->snapshot);
	int rc = guard_state_save(path, r->guard, &r->history, r->o->redis_prefix, r->o->redis_db,
				  &r->state_written, err, sizeof(err));
	if (rc == -EXDEV && !r->state_refused)
		log_err("guard state not saved: %s", err);
	else if (rc < 0 && rc != -EXDEV)
		log_err("guard state not saved: %s (a restart would forget the held load, the budget "
			"spent and the consents used)", err);
	r->state_refused = rc == -EXDEV;
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
		r->reread = ALL_KEYS;
		int closing = r->closing;
		load_done(r); /* May free r when closing. */
		if (!closing) /* Once the burst of changes has settled. */
			uv_timer_start(&r->coalesce, on_coalesced, COALESCE_MS, 0);
		return;
	}
	r->torn_logged = 0;
	r->t_read = now_ms(r);
	/* The trie is built off this loop, which keeps serving Redis meanwhile. */
	r->phase = BUILDING;
	r->building = r->builder;
	r->builder = NULL;
	r->work.data = r;
	if (uv_queue_work(r->loop, &r->work, build_work, on_built) < 0) {
		policy_builder_free(r->building);
		load_failed(r, "cannot queue the policy build");
	}
}

static void read_done(redis_sync_t *r)
{
	/* Each key's invalid members are logged when they change, not at every read. */
	for (int k = 0; k < NKEYS; k++) {
		if (!(r->scanning & (1u << k))) {
			/* Carried over: so are its invalid members, for the count in the stats. */
			policy_builder_count_invalid(r->builder, r->invalid_count[k]);
			continue;
		}
		const struct invalid_log *il = &r->il[k];
		r->invalid_count[k] = il->count;
		if (il->hash == r->invalid_hash[k])
			continue;
		for (size_t i = 0; i < il->count && i < INVALID_LOGGED; i++)
			log_warn("skipped invalid policy entry: %s", il->lines[i]);
		if (il->count > INVALID_LOGGED)
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
	size_t stride = key == KEY_REASON ? 2 : 1;
	size_t count = items->elements / stride;
	enum policy_action action = key == KEY_DENY    ? POLICY_DENY
				    : key == KEY_ALLOW ? POLICY_ALLOW
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
	struct scan *sc = privdata;
	redis_sync_t *r = sc->r;
	redisReply *reply = reply_ptr;
	if (!reply || !r->builder || r->phase != READING)
		return; /* Disconnected, or the load was abandoned. */
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY) {
		/* The key changed type under the scan, or Redis is busy: keep the current policy,
		 * read again. */
		char why[200];
		snprintf(why, sizeof(why), "scan of %s: %s", r->keys[sc->key],
			 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		load_failed(r, why);
		return;
	}
	/* Ask for the next batch first: Redis reads it while this thread parses this one. */
	const char *cursor = reply->element[0]->str;
	int last = strcmp(cursor, "0") == 0;
	if (!last)
		send_scan(r, sc->key, cursor);
	const redisReply *items = reply->element[1];
	if (add_items(r, sc->key, items) < 0) {
		load_failed(r, "out of memory reading the policy");
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
	redisAsyncCommand(ac, on_scan, &r->scans[key],
			  "%s %s %s COUNT " SCAN_COUNT, key == KEY_REASON ? "HSCAN" : "SSCAN",
			  r->keys[key], cursor);
}

static void on_types(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_sync_t *r = privdata;
	redisReply *reply = reply_ptr;
	if (!reply || r->phase != READING)
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != NCHANNELS + NKEYS) {
		/* -BUSY, -LOADING, a refused command: the EXEC fails whole. */
		load_failed(r, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		return;
	}
	static const char *const want[NKEYS] = {"set", "set", "hash"};
	int present = 0, bad = 0;
	for (int k = 0; k < NKEYS; k++) {
		const redisReply *t = reply->element[k];
		if (t->type == REDIS_REPLY_ERROR) {
			load_failed(r, t->str);
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
		load_failed(r, why);
		return;
	}
	/* The consent record: the fields a consent has, whatever else the hash holds (a reply
	 * of bounded size), or none (a consent of another shape is none). */
	const redisReply *c = reply->element[KEY_ACCEPT];
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
	r->deny_missing = present && !(present & (1 << KEY_DENY));
	if (!present) {
		/* Fail closed: an empty Redis never lifts the list in force. */
		load_worked(r);
		r->in_sync = 0;
		set_hold(r, REDIS_SYNC_HOLD_EMPTY, 0, 0, 0);
		if (!r->warned_empty) {
			char cur[200];
			describe_current(r, cur, sizeof(cur));
			log_warn("redis has none of %s, %s, %s; enforcing %s (load a list with "
				 "embargo-policy import)", r->keys[0], r->keys[1], r->keys[2], cur);
			r->warned_empty = 1;
		}
		load_done(r);
		return;
	}
	r->builder = policy_builder_new();
	if (!r->builder) {
		load_failed(r, "out of memory reading the policy");
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
		r->scanning = ALL_KEYS;
	/* A key is carried over only if it has as many members as when it was last read: a change
	 * that sent no notification (SWAPDB, DEBUG RELOAD, a resync not noticed) is read. */
	for (int k = 0; k < NKEYS; k++) {
		const redisReply *n = reply->element[NCHANNELS + k];
		long long card = n->type == REDIS_REPLY_INTEGER ? n->integer : -1;
		if (card != r->card[k])
			r->scanning |= 1u << k;
		if (r->scanning & (1u << k))
			r->card[k] = card;
	}
	unsigned carry = ALL_KEYS & ~r->scanning & (unsigned)present;
	r->scans_left = 0;
	for (int k = 0; k < NKEYS; k++)
		if ((present & (1 << k)) && (r->scanning & (1u << k)))
			r->scans_left++;
	for (int k = 0; k < NKEYS; k++)
		if ((present & (1 << k)) && (r->scanning & (1u << k)))
			send_scan(r, k, "0");
	/* The rest is copied from the policy in force by the build, off this loop. */
	static const unsigned parts[NKEYS] = {POLICY_PART_DENY, POLICY_PART_ALLOW, POLICY_PART_REASON};
	r->carry_parts = 0;
	for (int k = 0; k < NKEYS; k++)
		if (carry & (1u << k))
			r->carry_parts |= parts[k];
	if (r->scans_left == 0)
		read_done(r);
}

static void rolled_back(redis_sync_t *r, const char *why)
{
	if (!why || guard_is_rolled_back(r->guard))
		return;
	log_warn("%s: redis may have come back from an older state, so until a consent (or redis "
		 "holding the policy in force) no load may lift any denied name", why);
	guard_rollback(r->guard);
	save_guard_state(r);
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
static void audit(redis_sync_t *r, const char *kind, const char *by, const policy_t *from,
		  const policy_t *to)
{
	redisAsyncContext *ac = redis_link_commands(r->link);
	if (!ac || r->closing)
		return;
	if (redis_history_append(ac, r->o->redis_prefix, kind, by, from, to, &r->diff, on_audited,
				 r) == 0)
		r->pushes++;
}

static void start_load(redis_sync_t *r)
{
	if (r->closing)
		return;
	redisAsyncContext *ac = redis_link_commands(r->link);
	if (!ac)
		return;
	if (r->phase != IDLE) {
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
		save_guard_state(r);
	}
	r->phase = READING;
	r->dirty = 0;
	r->torn = 0;
	/* What Redis says of itself comes before the policy (same connection, in order), so a
	 * rollback is known when the load is decided. */
	redisAsyncCommand(ac, on_info, r, "INFO");
	redisAsyncCommand(ac, on_audit_tail, r, "XREVRANGE %s:audit + - COUNT 1", r->o->redis_prefix);
	r->scanning = r->reread ? r->reread : ALL_KEYS;
	r->reread = 0;
	r->t_start = now_ms(r);
	redisAsyncCommand(ac, NULL, NULL, "MULTI");
	for (int k = 0; k < NKEYS; k++)
		redisAsyncCommand(ac, NULL, NULL, "TYPE %s", r->keys[k]);
	redisAsyncCommand(ac, NULL, NULL, "HMGET %s %s %s %s %s %s %s %s", r->keys[KEY_ACCEPT],
			  CONSENT_FIELD_NAMES[0], CONSENT_FIELD_NAMES[1], CONSENT_FIELD_NAMES[2],
			  CONSENT_FIELD_NAMES[3], CONSENT_FIELD_NAMES[4], CONSENT_FIELD_NAMES[5],
			  CONSENT_FIELD_NAMES[6]);
	for (int k = 0; k < NKEYS; k++)
		redisAsyncCommand(ac, NULL, NULL, "%s %s", k == KEY_REASON ? "HLEN" : "SCARD",
				  r->keys[k]);
	redisAsyncCommand(ac, on_types, r, "EXEC");
}

/* ---- What the link tells ------------------------------------------------------------------ */

static void on_coalesced(uv_timer_t *t)
{
	start_load(t->data);
}

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
	r->reread = ALL_KEYS;
	start_load(r);
}

static void on_link_changed(void *ctx, unsigned channel, int adds)
{
	redis_sync_t *r = ctx;
	if (r->closing)
		return;
	/* Only the key that changed is read again; the others are carried over. A new consent
	 * matters only to a held load, which reads every key anyway. */
	r->reread |= channel == KEY_ACCEPT ? ALL_KEYS : 1u << channel;
	/* During a read, a change that only adds (SADD, HSET) leaves every member the read
	 * started with in place, and SSCAN/HSCAN return those: what is read is the old policy
	 * plus some of the additions, never less. Anything else (SREM, DEL, RENAME, expiry,
	 * eviction...) may have torn the read. */
	if (r->phase == READING && !adds)
		r->torn = 1;
	if (r->phase != IDLE)
		r->dirty = 1;
	else if (!uv_is_active((uv_handle_t *)&r->coalesce))
		uv_timer_start(&r->coalesce, on_coalesced, COALESCE_MS, 0);
}

static void on_link_barrier(void *ctx, unsigned acked)
{
	redis_sync_t *r = ctx;
	if (r->load_barrier && acked >= r->load_barrier && r->phase == READING) {
		r->load_barrier = 0;
		read_complete(r);
	}
}

static void on_link_resynced(void *ctx)
{
	redis_sync_t *r = ctx;
	r->reread = ALL_KEYS;
	if (r->phase == IDLE)
		start_load(r);
	else
		r->dirty = 1;
}

/* Both connections are gone: keep the policy; the link reconnects and says when it is back. */
static void on_link_down(void *ctx, const char *why, int first)
{
	redis_sync_t *r = ctx;
	atomic_store(&r->stats->connected, 0);
	r->notify = 0;
	drop_builder(r); /* A read in progress is lost; a build in progress goes on. */
	uv_timer_stop(&r->coalesce);
	if (r->phase == IDLE)
		uv_timer_stop(&r->timer);
	if (first) {
		char cur[200];
		describe_current(r, cur, sizeof(cur));
		log_warn("redis %s:%d unavailable (%s); enforcing %s; retrying", r->o->redis_host,
			 r->o->redis_port, why, cur);
	}
	if (!r->ready) {
		const struct policy_stats *st = policy_stats(policy_store_current(r->store));
		log_warn("starting without redis: enforcing the %s", policy_source_name(st->source));
		become_ready(r);
	}
}

static void on_startup_timeout(uv_timer_t *t)
{
	redis_sync_t *r = t->data;
	if (!r->ready) {
		const struct policy_stats *st = policy_stats(policy_store_current(r->store));
		log_warn("redis did not answer within %d ms: enforcing the %s for now",
			 STARTUP_WAIT_MS, policy_source_name(st->source));
		become_ready(r);
	}
}

static void timer_closed(uv_handle_t *h)
{
	redis_sync_t *r = h->data;
	r->open_handles--;
	maybe_free(r);
}

static void link_closed(void *ctx)
{
	redis_sync_t *r = ctx;
	r->link_open = 0;
	maybe_free(r);
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
	r->load_backoff_ms = LOAD_BACKOFF_MIN_MS;
	r->hold_shown = 1; /* A predecessor's hold stays on show until this link's first load. */
	static const char *const suffix[NCHANNELS] = {"deny", "allow", "reason", "accept"};
	char channels[NCHANNELS][128];
	const char *chan[NCHANNELS];
	for (int k = 0; k < NCHANNELS; k++) {
		snprintf(r->keys[k], sizeof(r->keys[k]), "%s:%s", o->redis_prefix, suffix[k]);
		snprintf(channels[k], sizeof(channels[k]), "__keyspace@%d__:%s", o->redis_db,
			 r->keys[k]);
		chan[k] = channels[k];
		if (k < NKEYS)
			r->scans[k] = (struct scan){.r = r, .key = k};
	}
	uv_timer_t *timers[] = {&r->timer, &r->startup, &r->coalesce};
	for (int i = 0; i < 3; i++) {
		uv_timer_init(loop, timers[i]);
		timers[i]->data = r;
	}
	r->open_handles = 3;
	uv_timer_start(&r->startup, on_startup_timeout, STARTUP_WAIT_MS, 0);
	static const struct redis_link_events events = {
		.up = on_link_up,
		.changed = on_link_changed,
		.barrier = on_link_barrier,
		.resynced = on_link_resynced,
		.down = on_link_down,
	};
	r->link = redis_link_new(loop, o, chan, NCHANNELS, &events, r);
	if (!r->link) {
		r->closing = 1;
		for (int i = 0; i < 3; i++)
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
	if (r->phase == READING)
		drop_builder(r);
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
