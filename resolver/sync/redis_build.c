/* The build runs on the thread pool: it copies the keys carried over from the policy in force
 * (which cannot be retired meanwhile: only this loop publishes), builds the trie, diffs it and
 * asks the guard, and for a held load builds the merge. Back on the loop the guard decides again
 * (a rollback or a consent may have come meanwhile); the guard's state is saved before anything
 * it describes is published. Never publishes what lifts names it could not keep protected. */
#include "config.h"

#include "resolver/sync/redis_build.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "resolver/base/log.h"
#include "resolver/sync/redis_audit.h"
#include "resolver/sync/redis_save.h"
#include "resolver/sync/snapshot.h"

static int publish_built(redis_sync_t *r, policy_t *p);

/* The accept command that shows the diff it consents to, for the held digest `held`: from this
 * instance's snapshot (the last policy it published whole) when it is this list's; else from the
 * baseline's digest, which the tool finds as the bundled list or the snapshot with it. */
static void accept_hint(redis_sync_t *r, const struct digest *held, char *buf, size_t cap)
{
	char full[DIGEST_HEX + 1], base[DIGEST_HEX + 1];
	digest_hex(held, full);
	digest_hex(guard_baseline(r->guard), base);
	struct codec_meta meta;
	const char *path = r->o->snapshot;
	if (path[0] && snapshot_peek(path, &meta) == 0 && strcmp(meta.prefix, r->o->redis_prefix) == 0 &&
	    meta.db == r->o->redis_db)
		snprintf(buf, cap, "embargo-policy accept --from %s %s", path, full);
	else if (path[0])
		snprintf(buf, cap, "embargo-policy accept --snapshot %s --from %s %s", path, base, full);
	else
		snprintf(buf, cap, "embargo-policy accept --from %s %s", base, full);
}

/* The candidate is held: the policy in force stays, and the log says so loudly, once per
 * candidate. */
static void hold_load(redis_sync_t *r, enum guard_verdict v, const policy_t *p)
{
	const struct policy_stats *st = policy_stats(p);
	atomic_fetch_add(&r->stats->held_loads, 1);
	/* Shown as "lifted/baseline": the names it would lift of those the baseline denies. */
	size_t removed = r->decision.lifted, base = r->decision.base;
	size_t of = guard_baseline_deny(r->guard);
	char vshort[DIGEST_SHORT_HEX + 1];
	digest_short(&st->digest, vshort);
	if (r->held != v || !digest_is_equal(&r->held_digest, &st->digest)) {
		char names[600], cs[200], bshort[DIGEST_SHORT_HEX + 1], hint[4500];
		guard_names_text(&r->lifted, names, sizeof(names));
		redis_state_describe_current(r, cs, sizeof(cs));
		digest_short(guard_baseline(r->guard), bshort);
		accept_hint(r, &st->digest, hint, sizeof(hint));
		if (v == GUARD_HOLD_MISSING)
			log_err("POLICY LOAD HELD: redis has no %s but has other policy keys, which "
				"would lift all %zu deny rules in force%s; still enforcing %s. If redis "
				"lost its data, restore it (embargo-policy restore); if this is intended, "
				"run %s", r->keys[REDIS_STATE_KEY_DENY], removed, names, cs, hint);
		else
			log_err("POLICY LOAD HELD: redis now holds %zu deny rules, which would lift %zu "
				"names denied since the consented baseline %s%s, more than --max-shrink "
				"allows (%zu of %zu%s); still enforcing %s. If redis lost its data, restore "
				"it (embargo-policy restore); if the removal is intended, run "
				"%s", st->deny, removed, bshort, names, r->decision.allowed, base,
				guard_is_rolled_back(r->guard) ? ", none after a redis rollback" : "", cs,
				hint);
		r->consent_said = CONSENT_NONE;
		redis_audit_append(r, "held", "redis", policy_store_current(r->store), p);
	}
	if (r->decision.consent != CONSENT_NONE && r->decision.consent != r->consent_said)
		log_err("consent in %s (by %s) does not release version %s: %s",
			r->keys[REDIS_STATE_KEY_ACCEPT], r->consent.by[0] ? r->consent.by : "?",
			vshort, consent_fault_text(r->decision.consent));
	r->consent_said = r->decision.consent;
	guard_held(r->guard, &st->digest, r->decision.cap, (int64_t)time(NULL));
	r->held = v;
	r->held_digest = st->digest;
	r->in_sync = 0; /* Redis differs from the policy in force: read every key next time. */
	redis_state_set_hold(r,
			     v == GUARD_HOLD_MISSING ? REDIS_SYNC_HOLD_MISSING : REDIS_SYNC_HOLD_SHRINK,
			     removed, of, st->version);
}

static void unhold(redis_sync_t *r)
{
	if (r->hold_shown)
		redis_state_set_hold(r, REDIS_SYNC_HOLD_NONE, 0, 0, 0);
	r->held = GUARD_PUBLISH;
	memset(&r->held_digest, 0, sizeof(r->held_digest));
	r->warned_empty = 0;
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
	redis_state_yield_to_workers();
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
		redis_state_load_done(r);
		return;
	}
	if (!p) {
		redis_state_load_failed(r, "out of memory building the policy");
		return;
	}
	redis_state_load_worked(r);
	const struct policy_stats *cur = policy_stats(policy_store_current(r->store));
	const struct policy_stats *st = policy_stats(p);
	if (digest_is_equal(&cur->digest, &st->digest)) {
		if (guard_is_rolled_back(r->guard))
			log_info("redis holds the policy in force: the rollback mark is cleared");
		guard_in_sync(r->guard);
		redis_save_guard_state(r);
	}
	if (cur->source == POLICY_SOURCE_REDIS && digest_is_equal(&cur->digest, &st->digest)) {
		policy_free(p); /* Unchanged: Redis holds what is in force (again). */
		policy_free(merged);
		policy_free(next_prot);
		if (r->held != GUARD_PUBLISH)
			log_info("redis holds the policy in force again: the held load is dropped");
		unhold(r);
		r->in_sync = 1;
		redis_state_load_done(r);
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
		redis_state_load_failed(r, "the names the load lifts could not be kept protected");
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
			redis_save_guard_state(r);
			(void)publish_built(r, merged);
		} else {
			policy_free(next_prot);
			redis_save_guard_state(r);
			redis_state_load_done(r);
		}
		return;
	}
	policy_free(merged); /* Built for a hold that a consent made needless meanwhile. */
	int consented = v == GUARD_CONSENTED;
	if (consented)
		log_warn("policy load lifts %zu names denied since the consented baseline, more than "
			 "--max-shrink allows; released by the consent in %s by %s", r->decision.lifted,
			 r->keys[REDIS_STATE_KEY_ACCEPT], r->consent.by[0] ? r->consent.by : "?");
	unhold(r);
	r->in_sync = 1;
	uint64_t t_end = redis_state_now_ms(r);
	policy_set_loaded_at(p, time(NULL));
	char what[40] = "";
	static const char *const names[REDIS_STATE_NKEYS] = {"deny", "allow", "reason"};
	for (int k = 0; k < REDIS_STATE_NKEYS; k++)
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
	redis_save_guard_state(r);
	if (publish_built(r, p) == 0)
		redis_audit_append(r, consented ? "consented" : "published",
				   consented && c.by[0] ? c.by : "redis", from, p);
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
		redis_state_load_done(r);
		return -ENOMEM;
	}
	if (r->o->snapshot[0]) {
		if (r->saving)
			r->save_again = 1;
		else
			redis_save_start(r);
	}
	redis_state_load_done(r);
	return 0;
}

void redis_build_start(redis_sync_t *r)
{
	/* The trie is built off this loop, which keeps serving Redis meanwhile. */
	r->phase = REDIS_STATE_BUILDING;
	r->building = r->builder;
	r->builder = NULL;
	r->work.data = r;
	if (uv_queue_work(r->loop, &r->work, build_work, on_built) < 0) {
		policy_builder_free(r->building);
		redis_state_load_failed(r, "cannot queue the policy build");
	}
}
