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
static const struct guard_consent none = {0};

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

Test(guard, flushall_then_one_write_is_held)
{
	/* 40 rules in force; Redis lost them and got one new name. */
	policy_t *in_force = make(40, NULL, NULL, NULL);
	policy_t *after = make(0, "newvendor.example", NULL, NULL);
	struct guard_diff d;
	guard_diff(in_force, after, &d);
	cr_expect_eq(d.deny_removed.count, 40);
	uint64_t v = policy_stats(after)->version;
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_REDIS, 40, &d, v, 0, &none),
		     GUARD_HOLD_SHRINK);
	/* Consent to another version does not release it; to this one it does. */
	struct guard_consent other = {.present = 1, .version = v + 1};
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_REDIS, 40, &d, v, 0, &other),
		     GUARD_HOLD_SHRINK);
	struct guard_consent yes = {.present = 1, .version = v};
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_SNAPSHOT, 40, &d, v, 0, &yes),
		     GUARD_CONSENTED);
	policy_free(in_force);
	policy_free(after);
}

Test(guard, few_removals_pass_and_the_limit_is_exact)
{
	policy_t *in_force = make(40, NULL, NULL, NULL);
	policy_t *four = make(36, NULL, NULL, NULL);
	policy_t *five = make(35, NULL, NULL, NULL);
	struct guard_diff d;
	guard_diff(in_force, four, &d);
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_REDIS, 40, &d, 1, 0, &none),
		     GUARD_PUBLISH);
	guard_diff(in_force, five, &d);
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_REDIS, 40, &d, 1, 0, &none),
		     GUARD_HOLD_SHRINK);
	struct guard_limits off = {.off = 1};
	cr_expect_eq(guard_check(&off, POLICY_SOURCE_REDIS, 40, &d, 1, 0, &none), GUARD_PUBLISH);
	policy_free(in_force);
	policy_free(four);
	policy_free(five);
}

Test(guard, missing_deny_key_is_held_even_when_small)
{
	struct guard_diff d = {.deny_removed = {.count = 1}};
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_REDIS, 1, &d, 7, 1, &none),
		     GUARD_HOLD_MISSING);
	struct guard_consent yes = {.present = 1, .version = 7};
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_REDIS, 1, &d, 7, 1, &yes),
		     GUARD_CONSENTED);
	/* Nothing in force to lose: not held. */
	struct guard_diff empty = {0};
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_REDIS, 0, &empty, 7, 1, &none),
		     GUARD_PUBLISH);
}

Test(guard, only_an_exact_consent_releases_even_against_the_bundled_list)
{
	/* A consent left over from before the deny key was evicted must not release the loss,
	 * whether the policy in force is the bundled list (a fresh instance) or operator data. */
	struct guard_diff d = {.deny_removed = {.count = 40}};
	struct guard_consent old = {.present = 1, .version = 99};
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_BUNDLED, 40, &d, 7, 0, &none),
		     GUARD_HOLD_SHRINK);
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_BUNDLED, 40, &d, 7, 0, &old),
		     GUARD_HOLD_SHRINK);
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_BUNDLED, 40, &d, 7, 1, &old),
		     GUARD_HOLD_MISSING);
	struct guard_consent exact = {.present = 1, .version = 7};
	cr_expect_eq(guard_check(&defaults, POLICY_SOURCE_BUNDLED, 40, &d, 7, 0, &exact),
		     GUARD_CONSENTED);
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
