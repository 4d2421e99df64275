/* The held-load rule and the diff it rests on. A diff walks both policies' rules and looks each
 * up in the other in batches (policy_each_missing), keeping counts and the first names; the lifts
 * walk the protected set's deny rules and the candidate's allow rules the same way. The protected
 * set is a policy held by reference (policy_ref): the one in force itself, unless names were
 * lifted within the budget; of the baseline only its digest and size are kept. It never talks to
 * Redis, reads the clock or does I/O: callers pass the policies and the time. */
#include "config.h"

#include "policy/guard.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void note(struct guard_names *n, const struct name *name)
{
	if (n->count < GUARD_NAMES &&
	    name_suffix_to_text(name, name->nlabels, n->names[n->count], sizeof(n->names[0])) < 0)
		n->names[n->count][0] = '\0';
	n->count++;
}

struct sides {
	struct guard_names *deny, *allow, *reason;
};

static void on_missing(void *ctx, const struct name *n, enum policy_part part)
{
	const struct sides *s = ctx;
	if (part == POLICY_PART_DENY)
		note(s->deny, n);
	else if (part == POLICY_PART_ALLOW)
		note(s->allow, n);
	else if (s->reason)
		note(s->reason, n);
}

void guard_diff(const policy_t *from, const policy_t *to, struct guard_diff *d)
{
	memset(d, 0, sizeof(*d));
	if (digest_is_equal(&policy_stats(from)->digest, &policy_stats(to)->digest))
		return; /* Equal content. */
	struct sides removed = {&d->deny_removed, &d->allow_removed, &d->reason_changed};
	struct sides added = {&d->deny_added, &d->allow_added, NULL};
	policy_each_missing(from, to, POLICY_PART_DENY | POLICY_PART_ALLOW | POLICY_PART_REASON,
			    on_missing, &removed);
	policy_each_missing(to, from, POLICY_PART_DENY | POLICY_PART_ALLOW, on_missing, &added);
}

void guard_names_text(const struct guard_names *n, char *buf, size_t cap)
{
	buf[0] = '\0';
	size_t shown = n->count < GUARD_NAMES ? n->count : GUARD_NAMES;
	for (size_t i = 0; i < shown; i++) {
		size_t used = strlen(buf);
		snprintf(buf + used, cap - used, "%s%s", i ? ", " : " (", n->names[i]);
	}
	size_t used = strlen(buf);
	if (n->count > shown)
		snprintf(buf + used, cap - used, " and %zu more)", n->count - shown);
	else if (shown)
		snprintf(buf + used, cap - used, ")");
}

void guard_diff_text(const struct guard_diff *d, char *buf, size_t cap)
{
	char da[600], dr[600], aa[600], ar[600], rc[600];
	guard_names_text(&d->deny_added, da, sizeof(da));
	guard_names_text(&d->deny_removed, dr, sizeof(dr));
	guard_names_text(&d->allow_added, aa, sizeof(aa));
	guard_names_text(&d->allow_removed, ar, sizeof(ar));
	guard_names_text(&d->reason_changed, rc, sizeof(rc));
	snprintf(buf, cap, "deny +%zu%s -%zu%s, allow +%zu%s -%zu%s, reasons changed %zu%s",
		 d->deny_added.count, da, d->deny_removed.count, dr, d->allow_added.count, aa,
		 d->allow_removed.count, ar, d->reason_changed.count, rc);
}

size_t guard_allowed(const struct guard_limits *l, size_t deny)
{
	if (l->off)
		return SIZE_MAX;
	size_t share = (deny * l->percent + 99) / 100;
	if (share < 1 && l->percent > 0)
		share = 1;
	return share < l->count ? share : l->count;
}

struct used {
	char nonce[CONSENT_NONCE_HEX + 1];
	int64_t expires;
};

struct guard {
	struct digest baseline; /* Of the baseline: only its digest and size are needed. */
	size_t baseline_deny;
	policy_t *prot;     /* Held: the protected set. */
	struct digest last; /* The last policy published whole (not a held load's merge). */
	atomic_bool rollback; /* Set by the loop while a build reads it. */
	struct guard_state st;
	struct used used[GUARD_USED_MAX];
	size_t nused;
};

guard_t *guard_new(const policy_t *start, int64_t now)
{
	guard_t *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->baseline = policy_stats(start)->digest;
	g->baseline_deny = policy_stats(start)->deny;
	g->prot = policy_ref(start);
	g->last = policy_stats(start)->digest;
	g->st.based_at = g->st.quiet_since = now;
	g->st.base = policy_stats(start)->deny;
	return g;
}

void guard_get_state(const guard_t *g, struct guard_state *st)
{
	*st = g->st;
	st->rollback = atomic_load(&g->rollback);
}

void guard_set_state(guard_t *g, const struct guard_state *st)
{
	g->st = *st;
	/* The base never grows without a consent, whatever a state file says. */
	size_t deny = g->baseline_deny;
	if (g->st.base > deny)
		g->st.base = deny;
	atomic_store(&g->rollback, st->rollback);
}

void guard_free(guard_t *g)
{
	if (!g)
		return;
	policy_free(g->prot);
	free(g);
}

/* Lookups are made in batches of this many names. */
#define LIFT_BATCH 64

struct batch {
	struct name names[LIFT_BATCH];
	const struct name *q[LIFT_BATCH];
	struct policy_verdict self[LIFT_BATCH], cand[LIFT_BATCH];
	size_t n;
};

/* Protected deny rules that cand no longer denies. */
static void lift_denies(const guard_t *g, const policy_t *cand, struct batch *b,
			struct guard_names *lifted)
{
	/* Without allow rules every deny rule of the protected set is in force there. */
	int check_self = policy_stats(g->prot)->allow > 0;
	policy_lookup_many(cand, b->q, b->n, b->cand);
	if (check_self)
		policy_lookup_many(g->prot, b->q, b->n, b->self);
	for (size_t i = 0; i < b->n; i++)
		if ((!check_self || b->self[i].action == POLICY_DENY) &&
		    b->cand[i].action != POLICY_DENY)
			note(lifted, b->q[i]);
	b->n = 0;
}

/* Allow rules of cand that the protected set does not have, under a protected deny. */
static void lift_allows(const guard_t *g, const policy_t *cand, struct batch *b,
			struct guard_names *lifted)
{
	policy_lookup_many(cand, b->q, b->n, b->cand);
	policy_lookup_many(g->prot, b->q, b->n, b->self);
	for (size_t i = 0; i < b->n; i++) {
		unsigned labels = b->q[i]->nlabels;
		/* An allow rule the protected set has too (in force all along) lifts nothing new. */
		int in_baseline = b->self[i].action == POLICY_ALLOW && b->self[i].depth == labels;
		/* A protected deny rule on this very name was counted with the deny rules. */
		int counted = b->self[i].depth == labels;
		if (!in_baseline && !counted && b->self[i].action == POLICY_DENY &&
		    b->cand[i].action != POLICY_DENY)
			note(lifted, b->q[i]);
	}
	b->n = 0;
}

void guard_lifts(const guard_t *g, const policy_t *cand, const policy_t *in_force,
		 const struct guard_diff *d, struct guard_names *lifted)
{
	memset(lifted, 0, sizeof(*lifted));
	if (g->prot == in_force && d && d->deny_removed.count == 0 && d->allow_added.count == 0)
		return; /* Every protected deny rule is still there, and no allow rule is new. */
	struct batch *b = malloc(sizeof(*b));
	if (!b) {
		/* Fail closed: count every protected rule as lifted, so that only consent passes. */
		lifted->count = policy_stats(g->prot)->deny + 1;
		return;
	}
	b->n = 0;
	size_t cursor = 0;
	struct policy_rule r;
	while (policy_rule_next(g->prot, &cursor, &r)) {
		if (!(r.parts & POLICY_PART_DENY))
			continue;
		b->names[b->n] = r.name;
		b->q[b->n] = &b->names[b->n];
		if (++b->n == LIFT_BATCH)
			lift_denies(g, cand, b, lifted);
	}
	if (b->n)
		lift_denies(g, cand, b, lifted);
	cursor = 0;
	while (policy_stats(cand)->allow && policy_rule_next(cand, &cursor, &r)) {
		if (!(r.parts & POLICY_PART_ALLOW))
			continue;
		b->names[b->n] = r.name;
		b->q[b->n] = &b->names[b->n];
		if (++b->n == LIFT_BATCH)
			lift_allows(g, cand, b, lifted);
	}
	if (b->n)
		lift_allows(g, cand, b, lifted);
	free(b);
}

/* Add p's deny rules that are in force in p (not passed by an allow rule) to b. */
static int add_denied(policy_builder_t *b, const policy_t *p)
{
	if (policy_stats(p)->allow == 0)
		return policy_builder_add_from(b, p, POLICY_PART_DENY);
	size_t cursor = 0;
	struct policy_rule r;
	while (policy_rule_next(p, &cursor, &r)) {
		if (!(r.parts & POLICY_PART_DENY))
			continue;
		struct policy_verdict v;
		policy_lookup(p, &r.name, &v);
		if (v.action != POLICY_DENY)
			continue;
		char text[NAME_MAXTEXT + 2];
		int len = name_to_text(&r.name, text, sizeof(text));
		if (len < 0)
			continue;
		int rc = policy_builder_add(b, POLICY_DENY, text, (size_t)len);
		if (rc == -ENOMEM)
			return rc;
	}
	return 0;
}

policy_t *guard_union(const guard_t *g, const policy_t *p)
{
	policy_builder_t *b = policy_builder_new();
	if (!b)
		return NULL;
	/* Allow rules only where both have them: an allow rule either one lacks leaves the names
	 * below it denied in that one, so protected. */
	if (add_denied(b, g->prot) < 0 || add_denied(b, p) < 0 ||
	    policy_builder_add_allows_in(b, p, g->prot) < 0) {
		policy_builder_free(b);
		return NULL;
	}
	return policy_build(b, POLICY_SOURCE_REDIS);
}

static enum consent_fault check_consent(const guard_t *g, const policy_t *cand,
					const policy_t *in_force, const struct consent *c,
					const uint8_t *key, const char *prefix, int db, int64_t now)
{
	if (!c || !c->present)
		return CONSENT_NONE;
	if (!digest_is_equal(&c->to, &policy_stats(cand)->digest))
		return CONSENT_OTHER_TO;
	if (!digest_is_equal(&c->from, &g->baseline) &&
	    !digest_is_equal(&c->from, &policy_stats(in_force)->digest) &&
	    !digest_is_equal(&c->from, &g->last))
		return CONSENT_OTHER_FROM;
	/* Five minutes of clock skew between the approver's machine and this one. */
	if (now + 300 < c->at || now >= c->expires || c->expires - c->at > CONSENT_TTL_MAX)
		return CONSENT_EXPIRED;
	if (guard_is_used(g, c->nonce))
		return CONSENT_USED;
	if (key && !c->has_sig)
		return CONSENT_UNSIGNED;
	if (key && !consent_signature_is_valid(c, key, prefix, db))
		return CONSENT_BAD_SIG;
	return CONSENT_OK;
}

enum guard_verdict guard_decide(const guard_t *g, const struct guard_limits *l,
				const policy_t *cand, const policy_t *in_force, size_t lifted,
				int deny_missing, const struct consent *c,
				const uint8_t *consent_key, const char *prefix, int db, int64_t now,
				struct guard_decision *out)
{
	size_t cd = policy_stats(cand)->deny;
	out->base = g->st.base < cd ? g->st.base : cd;
	out->allowed = l->off ? SIZE_MAX : atomic_load(&g->rollback) ? 0 : guard_allowed(l, out->base);
	/* Once a load was held, the allowance of the limits then in force stays the most any later
	 * load (with any content, under any limits a reload brings) may use, until a consent or a
	 * quiet window. */
	out->cap = l->off ? SIZE_MAX : guard_allowed(l, g->st.base);
	if (g->st.capped && g->st.cap < out->allowed)
		out->allowed = g->st.cap;
	out->lifted = lifted + g->st.carried;
	out->consent = CONSENT_NONE;
	enum guard_verdict held;
	int sticky = g->st.has_held && digest_is_equal(&g->st.held, &policy_stats(cand)->digest);
	if (deny_missing && g->st.base > 0 && (!l->off || g->st.has_held))
		held = GUARD_HOLD_MISSING;
	else if (out->lifted > out->allowed || (sticky && out->lifted > 0))
		held = GUARD_HOLD_SHRINK;
	else
		return GUARD_PUBLISH;
	out->consent = check_consent(g, cand, in_force, c, consent_key, prefix, db, now);
	return out->consent == CONSENT_OK ? GUARD_CONSENTED : held;
}

static void set_policy(policy_t **slot, policy_t *p)
{
	policy_free(*slot);
	*slot = p;
}

int guard_published(guard_t *g, const policy_t *p, enum guard_verdict v,
		    const struct consent *c, size_t lifted, policy_t *next, int64_t now)
{
	if (v == GUARD_CONSENTED) {
		(void)guard_mark_used(g, c->nonce, c->expires);
		policy_free(next);
		g->baseline = policy_stats(p)->digest;
		g->baseline_deny = policy_stats(p)->deny;
		set_policy(&g->prot, policy_ref(p));
		g->last = policy_stats(p)->digest;
		g->st.base = policy_stats(p)->deny;
		g->st.based_at = g->st.quiet_since = now;
		g->st.carried = g->st.spent = 0;
		g->st.has_held = g->st.capped = false;
		atomic_store(&g->rollback, false);
		return 0;
	}
	if (v == GUARD_PUBLISH) {
		g->st.has_held = false;
		g->last = policy_stats(p)->digest;
		g->st.spent = lifted + g->st.carried;
	}
	if (lifted == 0 && v == GUARD_PUBLISH) {
		policy_free(next);
		set_policy(&g->prot, policy_ref(p)); /* It lifted nothing: it denies all g->prot did. */
		return 0;
	}
	if (!next)
		return -ENOMEM; /* The protected set stays as it was: nothing leaves it. */
	set_policy(&g->prot, next);
	return 0;
}

void guard_held(guard_t *g, const struct digest *d, size_t cap, int64_t now)
{
	if (!g->st.capped || cap < g->st.cap)
		g->st.cap = cap;
	g->st.capped = true;
	g->st.has_held = true;
	g->st.held = *d;
	g->st.quiet_since = now;
}

void guard_in_sync(guard_t *g)
{
	/* Redis holds the policy in force again (restored, or it never lost anything): nothing is
	 * held. The cap a hold set stays. */
	atomic_store(&g->rollback, false);
	g->st.has_held = false;
}

void guard_rollback(guard_t *g)
{
	atomic_store(&g->rollback, true);
}

bool guard_is_rolled_back(const guard_t *g)
{
	return atomic_load(&g->rollback);
}

bool guard_window(guard_t *g, const policy_t *in_force, int64_t window, int64_t now)
{
	if (!window || g->st.has_held || now - g->st.quiet_since < window ||
	    now - g->st.based_at < window ||
	    digest_is_equal(&g->baseline, &policy_stats(in_force)->digest))
		return false;
	g->baseline = policy_stats(in_force)->digest;
	g->baseline_deny = policy_stats(in_force)->deny;
	set_policy(&g->prot, policy_ref(in_force));
	/* The base never grows without consent: a list inflated first gains nothing. The rollback
	 * mark stays: only a consent, or Redis holding the policy in force again, clears it. */
	size_t deny = policy_stats(in_force)->deny;
	if (deny < g->st.base)
		g->st.base = deny;
	g->st.based_at = g->st.quiet_since = now;
	g->st.carried = g->st.spent = 0;
	g->st.capped = false;
	return true;
}

const struct digest *guard_baseline(const guard_t *g)
{
	return &g->baseline;
}

size_t guard_baseline_deny(const guard_t *g)
{
	return g->baseline_deny;
}

const policy_t *guard_protected(const guard_t *g)
{
	return g->prot;
}

int guard_mark_used(guard_t *g, const char *nonce, int64_t expires)
{
	if (strlen(nonce) != CONSENT_NONCE_HEX)
		return -EINVAL;
	if (guard_is_used(g, nonce))
		return 0;
	if (g->nused == GUARD_USED_MAX) {
		/* Full: the one that expires first makes room (an expired one cannot be replayed). */
		size_t first = 0;
		for (size_t i = 1; i < g->nused; i++)
			if (g->used[i].expires < g->used[first].expires)
				first = i;
		g->used[first] = g->used[--g->nused];
	}
	struct used *u = &g->used[g->nused++];
	memcpy(u->nonce, nonce, CONSENT_NONCE_HEX + 1);
	u->expires = expires;
	return 0;
}

bool guard_is_used(const guard_t *g, const char *nonce)
{
	for (size_t i = 0; i < g->nused; i++)
		if (strcmp(g->used[i].nonce, nonce) == 0)
			return true;
	return false;
}

int guard_used_at(const guard_t *g, size_t i, const char **nonce, int64_t *expires)
{
	if (i >= g->nused)
		return 0;
	*nonce = g->used[i].nonce;
	*expires = g->used[i].expires;
	return 1;
}

static int parse_number(const char *s, size_t len, unsigned long long max, unsigned long long *v)
{
	if (len == 0 || len > 12)
		return -EINVAL;
	unsigned long long x = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		x = x * 10 + (unsigned)(s[i] - '0');
	}
	if (x > max)
		return -EINVAL;
	*v = x;
	return 0;
}

int guard_parse_limits(const char *text, struct guard_limits *l)
{
	struct guard_limits out = {.percent = 100, .count = SIZE_MAX};
	if (strcmp(text, "off") == 0) {
		*l = (struct guard_limits){.percent = 100, .count = SIZE_MAX, .off = 1};
		return 0;
	}
	int have_pct = 0, have_count = 0;
	for (const char *s = text;;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		unsigned long long v;
		if (len > 0 && s[len - 1] == '%') {
			if (have_pct || parse_number(s, len - 1, 100, &v) < 0)
				return -EINVAL;
			out.percent = (unsigned)v;
			have_pct = 1;
		} else {
			if (have_count || parse_number(s, len, 1000000000ULL, &v) < 0)
				return -EINVAL;
			out.count = (size_t)v;
			have_count = 1;
		}
		if (!comma)
			break;
		s = comma + 1;
	}
	*l = out;
	return 0;
}
