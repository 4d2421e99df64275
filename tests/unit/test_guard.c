/* The held-load rule: limits, consent, and the diff it rests on. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "policy/guard.h"

/* A policy with deny rules d0..d(n-1).example, plus the given extra deny and allow names. */
static policy_t *make(size_t n, const char *extra_deny, const char *allow, const char *reason)
{
	policy_builder_t *b = policy_builder_new();
	cr_assert(b);
	char name[64];
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "d%zu.example", i);
		cr_assert_eq(policy_builder_add(b, POLICY_DENY, name, strlen(name)), 0);
	}
	if (extra_deny)
		cr_assert_eq(policy_builder_add(b, POLICY_DENY, extra_deny, strlen(extra_deny)), 0);
	if (allow)
		cr_assert_eq(policy_builder_add(b, POLICY_ALLOW, allow, strlen(allow)), 0);
	if (reason)
		cr_assert_eq(policy_builder_set_reason(b, "d0.example", 10, reason, strlen(reason)), 0);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	cr_assert(p);
	return p;
}

static const struct guard_limits defaults = {.percent = GUARD_PERCENT, .count = GUARD_COUNT};

TestSuite(guard);

Test(guard, allowed_share_rounds_up_and_is_capped)
{
	/* The bundled list has 40 names: 4 may go at once, the 5th is held. */
	cr_expect_eq(guard_allowed(&defaults, 40), 4);
	cr_expect_eq(guard_allowed(&defaults, 3), 1);
	cr_expect_eq(guard_allowed(&defaults, 0), 1);
	cr_expect_eq(guard_allowed(&defaults, 1000000), 1000);
	struct guard_limits zero = {.percent = 10, .count = 0};
	cr_expect_eq(guard_allowed(&zero, 40), 0);
}

Test(guard, diff_counts_and_names_each_kind)
{
	policy_t *a = make(40, "gone.example", "ok.d1.example", "first");
	policy_t *b = make(38, "new.example", NULL, "second");
	struct guard_diff d;
	guard_diff(a, b, &d);
	/* d38, d39 and gone.example left; new.example came; the allow rule left; d0's reason. */
	cr_expect_eq(d.deny_removed.count, 3);
	cr_expect_eq(d.deny_added.count, 1);
	cr_expect_str_eq(d.deny_added.names[0], "new.example");
	cr_expect_eq(d.allow_removed.count, 1);
	cr_expect_str_eq(d.allow_removed.names[0], "ok.d1.example");
	cr_expect_eq(d.allow_added.count, 0);
	cr_expect_eq(d.reason_changed.count, 1);
	cr_expect_str_eq(d.reason_changed.names[0], "d0.example");
	int saw_gone = 0;
	for (size_t i = 0; i < GUARD_NAMES && i < d.deny_removed.count; i++)
		saw_gone |= strcmp(d.deny_removed.names[i], "gone.example") == 0;
	cr_expect(saw_gone);
	guard_diff(a, a, &d);
	cr_expect_eq(d.deny_removed.count + d.deny_added.count + d.reason_changed.count, 0);
	policy_free(a);
	policy_free(b);
}

Test(guard, diff_is_exact_not_by_ancestor)
{
	/* A rule on a name still covered by its parent's rule is a removed rule all the same. */
	policy_t *a = make(2, "sub.d0.example", NULL, NULL);
	policy_t *b = make(2, NULL, NULL, NULL);
	struct guard_diff d;
	guard_diff(a, b, &d);
	cr_expect_eq(d.deny_removed.count, 1);
	cr_expect_str_eq(d.deny_removed.names[0], "sub.d0.example");
	policy_free(a);
	policy_free(b);
}

/* A policy with deny rules for the given names (NULL-terminated) and allow rules. */
static policy_t *rules(const char *const *deny, const char *const *allow)
{
	policy_builder_t *b = policy_builder_new();
	cr_assert(b);
	for (size_t i = 0; deny && deny[i]; i++)
		cr_assert_eq(policy_builder_add(b, POLICY_DENY, deny[i], strlen(deny[i])), 0);
	for (size_t i = 0; allow && allow[i]; i++)
		cr_assert_eq(policy_builder_add(b, POLICY_ALLOW, allow[i], strlen(allow[i])), 0);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	cr_assert(p);
	return p;
}

/* Deny rules junk0..junk(n-1).example, and plus's deny rules when plus is not NULL. */
static policy_t *junk(int n, const policy_t *plus)
{
	policy_builder_t *b = policy_builder_new();
	char name[64];
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "junk%d.example", i);
		cr_assert_eq(policy_builder_add(b, POLICY_DENY, name, strlen(name)), 0);
	}
	if (plus)
		cr_assert_eq(policy_builder_add_from(b, plus, POLICY_PART_DENY), 0);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	cr_assert(p);
	return p;
}

/* What the guard makes of cand against in_force, as the synchroniser asks it. */
static enum guard_verdict judge(guard_t *g, const struct guard_limits *l, const policy_t *in_force,
				const policy_t *cand, const struct consent *c, const uint8_t *key,
				int64_t now, size_t *lifted)
{
	struct guard_diff d;
	struct guard_names names;
	struct guard_decision dec;
	guard_diff(in_force, cand, &d);
	guard_lifts(g, cand, in_force, &d, &names);
	if (lifted)
		*lifted = names.count;
	return guard_decide(g, l, cand, in_force, names.count, 0, c, key, "embargo", 0, now, &dec);
}

/* Publish cand as the synchroniser does after a verdict that lets it through. */
static void publish(guard_t *g, const policy_t *cand, enum guard_verdict v,
		    const struct consent *c, int64_t now)
{
	struct guard_diff d;
	struct guard_names names;
	guard_diff(guard_protected(g), cand, &d);
	guard_lifts(g, cand, guard_protected(g), &d, &names);
	policy_t *next = names.count ? guard_union(g, cand) : NULL;
	cr_assert_eq(guard_published(g, cand, v, c, names.count, next, now), 0);
}

#define NOW 1800000000

/* A consent from -> to, valid for a day from NOW, with nonce n. */
static struct consent consent(const policy_t *from, const policy_t *to, unsigned n)
{
	struct consent c = {.present = true, .at = NOW, .expires = NOW + 86400};
	c.from = policy_stats(from)->digest;
	c.to = policy_stats(to)->digest;
	snprintf(c.nonce, sizeof(c.nonce), "%032x", n);
	return c;
}

Test(guard, flushall_then_one_write_is_held)
{
	/* 40 rules in force; Redis lost them and got one new name. */
	policy_t *in_force = make(40, NULL, NULL, NULL);
	policy_t *after = make(0, "newvendor.example", NULL, NULL);
	guard_t *g = guard_new(in_force, NOW);
	size_t lifted;
	cr_expect_eq(judge(g, &defaults, in_force, after, NULL, NULL, NOW, &lifted),
		     GUARD_HOLD_SHRINK);
	cr_expect_eq(lifted, 40);
	/* A consent to another policy does not release it; to this one it does. */
	struct consent other = consent(in_force, in_force, 1);
	cr_expect_eq(judge(g, &defaults, in_force, after, &other, NULL, NOW, NULL),
		     GUARD_HOLD_SHRINK);
	struct consent yes = consent(in_force, after, 2);
	cr_expect_eq(judge(g, &defaults, in_force, after, &yes, NULL, NOW, NULL), GUARD_CONSENTED);
	guard_free(g);
	policy_free(in_force);
	policy_free(after);
}

Test(guard, few_removals_pass_and_the_limit_is_exact)
{
	policy_t *in_force = make(40, NULL, NULL, NULL);
	policy_t *four = make(36, NULL, NULL, NULL);
	policy_t *five = make(35, NULL, NULL, NULL);
	guard_t *g = guard_new(in_force, NOW);
	cr_expect_eq(judge(g, &defaults, in_force, four, NULL, NULL, NOW, NULL), GUARD_PUBLISH);
	cr_expect_eq(judge(g, &defaults, in_force, five, NULL, NULL, NOW, NULL), GUARD_HOLD_SHRINK);
	struct guard_limits off = {.off = 1};
	cr_expect_eq(judge(g, &off, in_force, five, NULL, NULL, NOW, NULL), GUARD_PUBLISH);
	guard_free(g);
	policy_free(in_force);
	policy_free(four);
	policy_free(five);
}

Test(guard, slicing_adds_up_against_the_baseline)
{
	/* Removals of 10% of what remains, one load each: every one alone is within the limit,
	 * but together they are counted against the baseline, so the fifth lift is held. */
	policy_t *base = make(40, NULL, NULL, NULL);
	guard_t *g = guard_new(base, NOW);
	policy_t *in_force = policy_ref(base);
	size_t n = 40, held_at = 0;
	for (int step = 0; step < 19 && !held_at; step++) {
		size_t cut = (n + 9) / 10;
		policy_t *next = make(n - cut, NULL, NULL, NULL);
		size_t lifted;
		enum guard_verdict v = judge(g, &defaults, in_force, next, NULL, NULL, NOW, &lifted);
		cr_expect_eq(lifted, 40 - (n - cut), "cumulative lifts at step %d", step);
		if (v == GUARD_PUBLISH) {
			publish(g, next, v, NULL, NOW);
			policy_free(in_force);
			in_force = next;
			n -= cut;
		} else {
			held_at = 40 - (n - cut);
			policy_free(next);
		}
	}
	cr_expect_eq(held_at, 8, "held once more than 4 of the 40 would be lifted (at %zu)", held_at);
	cr_expect_eq(n, 36);
	guard_free(g);
	policy_free(in_force);
	policy_free(base);
}

Test(guard, inflating_first_gains_nothing)
{
	/* 360 junk names added (published: additions), then the 40 real ones removed: 40 of 400
	 * would be 10%, but the base is the smaller of the baseline (40) and the candidate. */
	policy_t *base = make(40, NULL, NULL, NULL);
	guard_t *g = guard_new(base, NOW);
	policy_t *inflated = junk(360, base);
	policy_t *junk_only = junk(360, NULL);
	cr_expect_eq(judge(g, &defaults, base, inflated, NULL, NULL, NOW, NULL), GUARD_PUBLISH);
	publish(g, inflated, GUARD_PUBLISH, NULL, NOW);
	size_t lifted;
	cr_expect_eq(judge(g, &defaults, inflated, junk_only, NULL, NULL, NOW, &lifted),
		     GUARD_HOLD_SHRINK);
	cr_expect_eq(lifted, 40);
	/* And the junk added since is protected too: removing 5 of it alone is held. */
	policy_t *less = make(40, NULL, NULL, NULL);
	cr_expect_eq(judge(g, &defaults, inflated, less, NULL, NULL, NOW, &lifted),
		     GUARD_HOLD_SHRINK);
	cr_expect_eq(lifted, 360);
	guard_free(g);
	policy_free(base);
	policy_free(inflated);
	policy_free(junk_only);
	policy_free(less);
}

Test(guard, an_allow_rule_lifts_what_it_shadows)
{
	static const char *const deny[] = {"kaspersky.com", "kaspersky.ru", "kaspersky.de",
					   "kaspersky.fr", "kaspersky.it", "kaspersky.ua", NULL};
	static const char *const old_allow[] = {"support.kaspersky.com", NULL};
	policy_t *base = rules(deny, old_allow);
	guard_t *g = guard_new(base, NOW);
	/* Every listed name allowed, the deny rules kept: all 6 lifted in one load. */
	static const char *const all[] = {"kaspersky.com", "kaspersky.ru", "kaspersky.de",
					  "kaspersky.fr", "kaspersky.it", "kaspersky.ua",
					  "support.kaspersky.com", NULL};
	policy_t *shadowed = rules(deny, all);
	size_t lifted;
	cr_expect_eq(judge(g, &defaults, base, shadowed, NULL, NULL, NOW, &lifted),
		     GUARD_HOLD_SHRINK);
	cr_expect_eq(lifted, 6);
	/* An allow rule on a parent lifts nothing: the more specific deny rules still win. */
	static const char *const tld[] = {"com", "ru", "de", "support.kaspersky.com", NULL};
	policy_t *parents = rules(deny, tld);
	cr_expect_eq(judge(g, &defaults, base, parents, NULL, NULL, NOW, &lifted), GUARD_PUBLISH);
	cr_expect_eq(lifted, 0);
	/* Removing the deny rules under such a parent allow does lift them. */
	static const char *const three[] = {"kaspersky.fr", "kaspersky.it", "kaspersky.ua", NULL};
	policy_t *parents_only = rules(three, tld);
	cr_expect_eq(judge(g, &defaults, base, parents_only, NULL, NULL, NOW, &lifted),
		     GUARD_HOLD_SHRINK);
	cr_expect_eq(lifted, 3);
	policy_free(parents_only);
	/* An allow rule below a deny lifts one name; the baseline's own allow rule none. */
	static const char *const one[] = {"support.kaspersky.com", "updates.kaspersky.ru", NULL};
	policy_t *below = rules(deny, one);
	cr_expect_eq(judge(g, &defaults, base, below, NULL, NULL, NOW, &lifted), GUARD_PUBLISH);
	cr_expect_eq(lifted, 1);
	policy_t *same = rules(deny, old_allow);
	cr_expect_eq(judge(g, &defaults, base, same, NULL, NULL, NOW, &lifted), GUARD_PUBLISH);
	cr_expect_eq(lifted, 0);
	guard_free(g);
	policy_free(base);
	policy_free(shadowed);
	policy_free(parents);
	policy_free(below);
	policy_free(same);
}

Test(guard, consent_is_bound_to_its_transition_time_and_nonce)
{
	policy_t *base = make(40, NULL, NULL, NULL);
	policy_t *cut = make(20, NULL, NULL, NULL);
	policy_t *other = make(19, NULL, NULL, NULL);
	guard_t *g = guard_new(base, NOW);
	struct consent c = consent(base, cut, 7);
	cr_expect_eq(judge(g, &defaults, base, cut, &c, NULL, NOW, NULL), GUARD_CONSENTED);
	/* Another target, another origin, outside its window, too long a window. */
	cr_expect_eq(judge(g, &defaults, base, other, &c, NULL, NOW, NULL), GUARD_HOLD_SHRINK);
	struct consent wrong_from = consent(other, cut, 8);
	cr_expect_eq(judge(g, &defaults, base, cut, &wrong_from, NULL, NOW, NULL),
		     GUARD_HOLD_SHRINK);
	cr_expect_eq(judge(g, &defaults, base, cut, &c, NULL, NOW + 86400, NULL), GUARD_HOLD_SHRINK);
	cr_expect_eq(judge(g, &defaults, base, cut, &c, NULL, NOW - 3600, NULL), GUARD_HOLD_SHRINK);
	struct consent long_lived = c;
	long_lived.expires = NOW + 30 * 86400;
	cr_expect_eq(judge(g, &defaults, base, cut, &long_lived, NULL, NOW, NULL),
		     GUARD_HOLD_SHRINK);
	struct consent incomplete = c;
	incomplete.present = false;
	cr_expect_eq(judge(g, &defaults, base, cut, &incomplete, NULL, NOW, NULL),
		     GUARD_HOLD_SHRINK);
	/* Used once: after it released cut, the baseline is cut; a rollback to base and back to
	 * cut... and the same consent shown again for the same transition is a replay. */
	publish(g, cut, GUARD_CONSENTED, &c, NOW);
	cr_expect(guard_is_used(g, c.nonce));
	cr_expect(digest_is_equal(guard_baseline(g), &policy_stats(cut)->digest));
	/* An instance back on base (a restart with the used nonces from its state file) sees the
	 * same consent again: a replay. */
	guard_t *again = guard_new(base, NOW);
	cr_assert_eq(guard_mark_used(again, c.nonce, c.expires), 0);
	cr_expect_eq(judge(again, &defaults, base, cut, &c, NULL, NOW, NULL), GUARD_HOLD_SHRINK);
	guard_free(again);
	guard_free(g);
	policy_free(base);
	policy_free(cut);
	policy_free(other);
}

Test(guard, a_consent_key_requires_a_good_signature)
{
	uint8_t priv[CONSENT_KEY_LEN], priv2[CONSENT_KEY_LEN], pub[CONSENT_KEY_LEN];
	for (int i = 0; i < CONSENT_KEY_LEN; i++) {
		priv[i] = (uint8_t)(i * 7 + 1);
		priv2[i] = (uint8_t)(i * 11 + 3);
	}
	consent_public_key(priv, pub);
	policy_t *base = make(40, NULL, NULL, NULL);
	policy_t *cut = make(20, NULL, NULL, NULL);
	guard_t *g = guard_new(base, NOW);
	struct consent c = consent(base, cut, 9);
	/* Unsigned: refused when a key is configured, accepted without one. */
	cr_expect_eq(judge(g, &defaults, base, cut, &c, pub, NOW, NULL), GUARD_HOLD_SHRINK);
	cr_expect_eq(judge(g, &defaults, base, cut, &c, NULL, NOW, NULL), GUARD_CONSENTED);
	consent_sign(&c, priv, "embargo", 0);
	cr_expect_eq(judge(g, &defaults, base, cut, &c, pub, NOW, NULL), GUARD_CONSENTED);
	/* Signed by another key; a signed field changed after signing; another prefix. */
	struct consent wrong_key = c;
	consent_sign(&wrong_key, priv2, "embargo", 0);
	cr_expect_eq(judge(g, &defaults, base, cut, &wrong_key, pub, NOW, NULL), GUARD_HOLD_SHRINK);
	struct consent tampered = c;
	tampered.expires += 1;
	cr_expect_eq(judge(g, &defaults, base, cut, &tampered, pub, NOW, NULL), GUARD_HOLD_SHRINK);
	cr_expect(!consent_signature_is_valid(&c, pub, "other", 0));
	cr_expect(!consent_signature_is_valid(&c, pub, "embargo", 1));
	cr_expect(consent_signature_is_valid(&c, pub, "embargo", 0));
	guard_free(g);
	policy_free(base);
	policy_free(cut);
}

Test(guard, a_rollback_allows_no_lift_until_consent)
{
	policy_t *base = make(40, NULL, NULL, NULL);
	policy_t *one_less = make(39, NULL, NULL, NULL);
	policy_t *more = make(41, NULL, NULL, NULL);
	guard_t *g = guard_new(base, NOW);
	cr_expect_eq(judge(g, &defaults, base, one_less, NULL, NULL, NOW, NULL), GUARD_PUBLISH);
	guard_rollback(g);
	cr_expect_eq(judge(g, &defaults, base, one_less, NULL, NULL, NOW, NULL), GUARD_HOLD_SHRINK);
	cr_expect_eq(judge(g, &defaults, base, more, NULL, NULL, NOW, NULL), GUARD_PUBLISH,
		     "additions are never held");
	struct consent c = consent(base, one_less, 3);
	cr_expect_eq(judge(g, &defaults, base, one_less, &c, NULL, NOW, NULL), GUARD_CONSENTED);
	publish(g, one_less, GUARD_CONSENTED, &c, NOW);
	cr_expect(!guard_is_rolled_back(g));
	guard_free(g);
	policy_free(base);
	policy_free(one_less);
	policy_free(more);
}

Test(guard, a_held_load_stays_held_whatever_the_new_limits)
{
	policy_t *base = make(40, NULL, NULL, NULL);
	policy_t *cut = make(10, NULL, NULL, NULL);
	policy_t *cut2 = make(9, "other.example", NULL, NULL);
	policy_t *small = make(37, NULL, NULL, NULL);
	guard_t *g = guard_new(base, NOW);
	cr_expect_eq(judge(g, &defaults, base, cut, NULL, NULL, NOW, NULL), GUARD_HOLD_SHRINK);
	guard_held(g, &policy_stats(cut)->digest, 4, NOW);
	/* A reload to --max-shrink off: the held load stays held, and so does any other content
	 * (one more name, a changed reason) that lifts more than the allowance it was held with. */
	struct guard_limits off = {.off = 1};
	cr_expect_eq(judge(g, &off, base, cut, NULL, NULL, NOW, NULL), GUARD_HOLD_SHRINK);
	cr_expect_eq(judge(g, &off, base, cut2, NULL, NULL, NOW, NULL), GUARD_HOLD_SHRINK);
	cr_expect_eq(judge(g, &off, base, small, NULL, NULL, NOW, NULL), GUARD_PUBLISH);
	guard_free(g);
	policy_free(base);
	policy_free(cut);
	policy_free(cut2);
	policy_free(small);
}

Test(guard, the_window_never_raises_the_base_nor_clears_a_rollback)
{
	policy_t *base = make(40, NULL, NULL, NULL);
	guard_t *g = guard_new(base, NOW);
	/* Inflated to 400, then a quiet window: the baseline moves, the base does not grow. */
	policy_t *inflated = junk(360, base);
	publish(g, inflated, GUARD_PUBLISH, NULL, NOW);
	cr_expect(!guard_window(g, inflated, 86400, NOW + 100), "not before the window");
	cr_expect(guard_window(g, inflated, 86400, NOW + 86400));
	cr_expect(digest_is_equal(guard_baseline(g), &policy_stats(inflated)->digest));
	/* Every listed name removed, 40 of 400: 10%, but the base is still 40: 4 allowed. */
	policy_t *junk_only = junk(360, NULL);
	size_t lifted;
	cr_expect_eq(judge(g, &defaults, inflated, junk_only, NULL, NULL, NOW + 86400, &lifted),
		     GUARD_HOLD_SHRINK);
	cr_expect_eq(lifted, 40);
	/* A rollback survives a window; Redis holding the policy in force again clears it. */
	guard_rollback(g);
	policy_t *one_less = make(39, NULL, NULL, NULL);
	cr_expect(!guard_window(g, inflated, 86400, NOW + 3 * 86400), "the baseline is in force");
	cr_expect(guard_is_rolled_back(g));
	guard_in_sync(g);
	cr_expect(!guard_is_rolled_back(g));
	guard_free(g);
	policy_free(base);
	policy_free(inflated);
	policy_free(junk_only);
	policy_free(one_less);
}

Test(guard, a_restart_carries_what_was_spent_and_the_hold)
{
	policy_t *base = make(40, NULL, NULL, NULL);
	policy_t *three_less = make(37, NULL, NULL, NULL);
	policy_t *five_less = make(35, NULL, NULL, NULL);
	guard_t *g = guard_new(base, NOW);
	cr_expect_eq(judge(g, &defaults, base, three_less, NULL, NULL, NOW, NULL), GUARD_PUBLISH);
	publish(g, three_less, GUARD_PUBLISH, NULL, NOW);
	struct guard_state st;
	guard_get_state(g, &st);
	cr_expect_eq(st.spent, 3);
	cr_expect_eq(st.base, 40);
	/* Restarted on its snapshot (37 rules) with the saved state: 3 spent are carried, so 2
	 * more lifts exceed the 4 allowed. */
	guard_t *r = guard_new(three_less, NOW);
	st.carried = st.spent;
	guard_set_state(r, &st);
	size_t lifted;
	struct guard_diff d;
	struct guard_names names;
	struct guard_decision dec;
	guard_diff(three_less, five_less, &d);
	guard_lifts(r, five_less, three_less, &d, &names);
	lifted = names.count;
	cr_expect_eq(lifted, 2);
	cr_expect_eq(guard_decide(r, &defaults, five_less, three_less, lifted, 0, NULL, NULL,
				  "embargo", 0, NOW, &dec), GUARD_HOLD_SHRINK);
	cr_expect_eq(dec.lifted, 5);
	cr_expect_eq(dec.base, 35);
	guard_free(r);
	guard_free(g);
	policy_free(base);
	policy_free(three_less);
	policy_free(five_less);
}

Test(guard, missing_deny_key_is_held_even_when_small)
{
	policy_t *base = make(1, NULL, NULL, NULL);
	policy_t *none_left = make(0, NULL, NULL, "x");
	guard_t *g = guard_new(base, NOW);
	struct guard_decision dec;
	cr_expect_eq(guard_decide(g, &defaults, none_left, base, 0, 1, NULL, NULL, "embargo", 0, NOW,
				  &dec), GUARD_HOLD_MISSING);
	struct consent c = consent(base, none_left, 4);
	cr_expect_eq(guard_decide(g, &defaults, none_left, base, 0, 1, &c, NULL, "embargo", 0, NOW,
				  &dec), GUARD_CONSENTED);
	guard_free(g);
	/* Nothing in force to lose: not held. */
	policy_t *empty = make(0, NULL, NULL, NULL);
	g = guard_new(empty, NOW);
	cr_expect_eq(guard_decide(g, &defaults, none_left, empty, 0, 1, NULL, NULL, "embargo", 0, NOW,
				  &dec), GUARD_PUBLISH);
	guard_free(g);
	policy_free(base);
	policy_free(none_left);
	policy_free(empty);
}

/* The version embargo used before: a sum of 64-bit FNV-1a hashes of each rule. */
static uint64_t old_version(const char *const *deny)
{
	uint64_t v = 0;
	for (size_t i = 0; deny[i]; i++) {
		struct name n;
		cr_assert_eq(name_from_text(&n, deny[i], strlen(deny[i])), 0);
		uint16_t actions = 1;
		uint64_t h = 0xcbf29ce484222325ULL;
		for (size_t k = 0; k < n.keylen; k++)
			h = (h ^ n.key[k]) * 0x100000001b3ULL;
		for (size_t k = 0; k < sizeof(actions); k++)
			h = (h ^ ((const uint8_t *)&actions)[k]) * 0x100000001b3ULL;
		v += h;
	}
	return v;
}

Test(guard, policies_with_the_same_old_version_are_different)
{
	/* Found by a generalised-birthday search (two lists of 2^23 pairs, 18 s on one core). */
	static const char *const a[] = {"a226586.example", "b6842595.example", NULL};
	static const char *const b[] = {"c1721784.example", "d546788.example", NULL};
	cr_assert_eq(old_version(a), old_version(b), "the old versions collide");
	policy_t *pa = rules(a, NULL), *pb = rules(b, NULL);
	cr_expect(!digest_is_equal(&policy_stats(pa)->digest, &policy_stats(pb)->digest));
	struct guard_diff d;
	guard_diff(pa, pb, &d);
	cr_expect_eq(d.deny_removed.count, 2);
	cr_expect_eq(d.deny_added.count, 2);
	guard_t *g = guard_new(pa, NOW);
	size_t lifted;
	cr_expect_eq(judge(g, &defaults, pa, pb, NULL, NULL, NOW, &lifted), GUARD_HOLD_SHRINK);
	cr_expect_eq(lifted, 2);
	guard_free(g);
	policy_free(pa);
	policy_free(pb);
}

Test(guard, used_consents_are_bounded_and_expire_first_out)
{
	policy_t *base = make(1, NULL, NULL, NULL);
	guard_t *g = guard_new(base, NOW);
	char nonce[CONSENT_NONCE_HEX + 1];
	for (unsigned i = 0; i < GUARD_USED_MAX + 10; i++) {
		snprintf(nonce, sizeof(nonce), "%032x", i);
		cr_assert_eq(guard_mark_used(g, nonce, NOW + 1000 + i), 0);
	}
	snprintf(nonce, sizeof(nonce), "%032x", 0);
	cr_expect(!guard_is_used(g, nonce), "the first to expire made room");
	snprintf(nonce, sizeof(nonce), "%032x", GUARD_USED_MAX + 9);
	cr_expect(guard_is_used(g, nonce));
	cr_expect_eq(guard_mark_used(g, "short", NOW), -EINVAL);
	guard_free(g);
	policy_free(base);
}

Test(guard, parse_limits)
{
	struct guard_limits l;
	cr_assert_eq(guard_parse_limits("10%,1000", &l), 0);
	cr_expect_eq(l.percent, 10);
	cr_expect_eq(l.count, 1000);
	cr_expect_eq(l.off, 0);
	cr_assert_eq(guard_parse_limits("500,25%", &l), 0);
	cr_expect_eq(l.percent, 25);
	cr_expect_eq(l.count, 500);
	cr_assert_eq(guard_parse_limits("5%", &l), 0);
	cr_expect_eq(guard_allowed(&l, 1000000000), 50000000);
	cr_assert_eq(guard_parse_limits("0", &l), 0);
	cr_expect_eq(guard_allowed(&l, 40), 0);
	cr_assert_eq(guard_parse_limits("off", &l), 0);
	cr_expect(l.off);
	const char *bad[] = {"", "%", "101%", "10%,", ",5", "5%,6%", "1,2", "-1", "x", "10 %"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(guard_parse_limits(bad[i], &l), -EINVAL, "accepted '%s'", bad[i]);
}
