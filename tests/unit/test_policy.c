/* Rules, verdicts, reasons, carrying parts over and the bundled list. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "policy/list.h"
#include "policy/policy.h"
#include "policy/trie.h"

TestSuite(policy);

static policy_builder_t *b;

static void add(enum policy_action a, const char *s)
{
	cr_assert_eq(policy_builder_add(b, a, s, strlen(s)), 0, "%s", s);
}

static struct policy_verdict decide(const policy_t *p, const char *s)
{
	struct name n;
	cr_assert_eq(name_from_text(&n, s, strlen(s)), 0);
	struct policy_verdict v;
	policy_lookup(p, &n, &v);
	return v;
}

static int name_valid(const char *s)
{
	struct name n;
	return name_from_text(&n, s, strlen(s)) == 0;
}

/* The deciding rule's name: the suffix of s that the verdict covers. */
static const char *rule_of(const char *s, struct policy_verdict v)
{
	static char buf[NAME_MAXTEXT + 2];
	struct name n;
	cr_assert_eq(name_from_text(&n, s, strlen(s)), 0);
	cr_assert_geq(name_suffix_to_text(&n, v.depth, buf, sizeof(buf)), 0);
	return buf;
}

Test(policy, allow_inside_deny_inside_allow)
{
	b = policy_builder_new();
	add(POLICY_ALLOW, "com");
	add(POLICY_DENY, "example.com");
	add(POLICY_ALLOW, "support.example.com");
	add(POLICY_DENY, "evil.support.example.com");
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	cr_assert_not_null(p);
	cr_expect_eq(decide(p, "other.com").action, POLICY_ALLOW);
	cr_expect_eq(decide(p, "example.com").action, POLICY_DENY);
	cr_expect_eq(decide(p, "www.example.com").action, POLICY_DENY);
	cr_expect_eq(decide(p, "support.example.com").action, POLICY_ALLOW);
	cr_expect_eq(decide(p, "a.support.example.com").action, POLICY_ALLOW);
	struct policy_verdict v = decide(p, "x.EVIL.support.example.com");
	cr_expect_eq(v.action, POLICY_DENY);
	cr_expect_str_eq(rule_of("x.EVIL.support.example.com", v), "evil.support.example.com");
	cr_expect_eq(v.depth, 4);
	cr_expect_eq(decide(p, "example.org").action, POLICY_PASS);
	cr_expect_null(decide(p, "example.org").reason);
	const struct policy_stats *st = policy_stats(p);
	cr_expect_eq(st->deny, 2);
	cr_expect_eq(st->allow, 2);
	cr_expect_eq(st->source, POLICY_SOURCE_REDIS);
	policy_free(p);
}

/* A batch of received queries gets the verdicts each would get alone: actions, depths and
 * reasons, across more names than one trie batch holds. */
Test(policy, lookup_many_matches_one_by_one)
{
	b = policy_builder_new();
	add(POLICY_ALLOW, "com");
	add(POLICY_DENY, "example.com");
	add(POLICY_ALLOW, "support.example.com");
	add(POLICY_DENY, "evil.support.example.com");
	cr_assert_eq(policy_builder_set_reason(b, "example.com", 11, "sanctioned", 10), 0);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	cr_assert_not_null(p);
	static const char *const qs[] = {
		"other.com", "example.com", "www.example.com", "support.example.com",
		"a.support.example.com", "x.EVIL.support.example.com", "example.org", ".",
		"com", "evil.support.example.com", "a.b.c.d.e.f.example.com", "org",
	};
	enum { N = 3 * TRIE_BATCH + 3 };
	struct name names[N];
	const struct name *np[N];
	struct policy_verdict got[N];
	size_t nq = sizeof(qs) / sizeof(qs[0]);
	for (size_t i = 0; i < N; i++) {
		const char *q = qs[i % nq];
		cr_assert_eq(name_from_text(&names[i], q, strlen(q)), 0);
		np[i] = &names[i];
	}
	policy_lookup_many(p, np, N, got);
	for (size_t i = 0; i < N; i++) {
		struct policy_verdict want = decide(p, qs[i % nq]);
		cr_expect_eq(got[i].action, want.action, "%s", qs[i % nq]);
		if (want.action != POLICY_PASS)
			cr_expect_eq(got[i].depth, want.depth, "%s", qs[i % nq]);
		cr_expect_eq(got[i].reason, want.reason, "%s", qs[i % nq]);
	}
	cr_expect_str_eq(got[2].reason, "sanctioned");
	policy_free(p);
}

Test(policy, allow_wins_a_tie)
{
	b = policy_builder_new();
	add(POLICY_DENY, "example.com");
	add(POLICY_ALLOW, "EXAMPLE.com.");
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	cr_expect_eq(decide(p, "www.example.com").action, POLICY_ALLOW);
	policy_free(p);
}

Test(policy, reasons_before_and_after_rules)
{
	b = policy_builder_new();
	const char r1[] = "first reason", r2[] = "second\treason\n";
	cr_assert_eq(policy_builder_set_reason(b, "a.example", 9, r1, strlen(r1)), 0);
	add(POLICY_DENY, "a.example");
	add(POLICY_DENY, "b.example");
	cr_assert_eq(policy_builder_set_reason(b, "B.Example.", 10, r2, strlen(r2)), 0);
	add(POLICY_DENY, "c.example");
	cr_assert_eq(policy_builder_set_reason(b, "orphan.example", 14, "x", 1), 0);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	cr_expect_str_eq(decide(p, "www.a.example").reason, "first reason");
	cr_expect_str_eq(decide(p, "b.example").reason, "second reason ", "control characters become spaces");
	cr_expect_null(decide(p, "c.example").reason);
	cr_expect_eq(decide(p, "orphan.example").action, POLICY_PASS, "a reason alone is no rule");
	cr_expect_eq(policy_stats(p)->reasons, 2);
	policy_free(p);
}

Test(policy, long_reason_is_cut_on_utf8_boundary)
{
	b = policy_builder_new();
	char reason[1000];
	/* "é" is two octets; 500 of them cross the limit in the middle of nothing. */
	for (int i = 0; i < 500; i++)
		memcpy(reason + 2 * i, "\xc3\xa9", 2);
	add(POLICY_DENY, "x.example");
	cr_assert_eq(policy_builder_set_reason(b, "x.example", 9, reason, 1000), 0);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	const char *got = decide(p, "x.example").reason;
	cr_assert_leq(strlen(got), POLICY_REASON_MAX);
	cr_assert_eq(strlen(got) % 2, 0);
	policy_free(p);
}

Test(policy, invalid_members_are_counted_and_skipped)
{
	b = policy_builder_new();
	const char *bad[] = {"", "a..b", "has space.com", "x.", ".", "toolong"};
	char label64[80];
	memset(label64, 'a', 64);
	strcpy(label64 + 64, ".com");
	bad[5] = label64;
	add(POLICY_DENY, "good.example");
	int invalid = 0;
	for (int i = 0; i < 6; i++)
		if (policy_builder_add(b, POLICY_DENY, bad[i], strlen(bad[i])) == -EINVAL)
			invalid++;
	/* "x." is a valid name and "." is the root: both are rules, not errors. */
	cr_expect_eq(invalid, 4);
	cr_expect_eq(policy_builder_invalid(b), 4);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	cr_expect_eq(policy_stats(p)->invalid, 4);
	cr_expect_eq(decide(p, "good.example").action, POLICY_DENY);
	policy_free(p);
}

Test(policy, version_ignores_order_and_sees_content)
{
	policy_builder_t *x = policy_builder_new(), *y = policy_builder_new(),
			 *z = policy_builder_new();
	policy_builder_add(x, POLICY_DENY, "a.example", 9);
	policy_builder_add(x, POLICY_DENY, "b.example", 9);
	policy_builder_add(y, POLICY_DENY, "b.example", 9);
	policy_builder_add(y, POLICY_DENY, "A.example", 9);
	policy_builder_add(z, POLICY_DENY, "a.example", 9);
	policy_builder_add(z, POLICY_ALLOW, "b.example", 9);
	policy_t *px = policy_build(x, POLICY_SOURCE_REDIS);
	policy_t *py = policy_build(y, POLICY_SOURCE_REDIS);
	policy_t *pz = policy_build(z, POLICY_SOURCE_REDIS);
	cr_expect_eq(policy_stats(px)->version, policy_stats(py)->version);
	cr_expect_neq(policy_stats(px)->version, policy_stats(pz)->version);
	policy_free(px);
	policy_free(py);
	policy_free(pz);
	policy_free(NULL);
	policy_builder_free(NULL);
}

/* A large policy's digest is computed on a thread beside its trie's build: the same as the
 * same content's built in another order, and another content's differs. */
Test(policy, a_large_policy_digest_ignores_order_and_sees_content)
{
	enum { N = 60000 };
	policy_builder_t *x = policy_builder_new(), *y = policy_builder_new(),
			 *z = policy_builder_new();
	char name[64];
	for (int i = 0; i < N; i++) {
		int n = snprintf(name, sizeof(name), "n%d.example", i);
		policy_builder_add(x, POLICY_DENY, name, (size_t)n);
		n = snprintf(name, sizeof(name), "n%d.example", N - 1 - i);
		policy_builder_add(y, POLICY_DENY, name, (size_t)n);
		if (i == 0)
			policy_builder_set_reason(y, name, (size_t)n, "r", 1);
		n = snprintf(name, sizeof(name), "n%d.example", i == 7 ? N : i);
		policy_builder_add(z, POLICY_DENY, name, (size_t)n);
	}
	policy_builder_set_reason(x, "n59999.example", 14, "r", 1);
	policy_builder_set_reason(z, "n59999.example", 14, "r", 1);
	policy_t *px = policy_build(x, POLICY_SOURCE_REDIS);
	policy_t *py = policy_build(y, POLICY_SOURCE_REDIS);
	policy_t *pz = policy_build(z, POLICY_SOURCE_REDIS);
	cr_assert(px && py && pz);
	cr_expect(digest_is_equal(&policy_stats(px)->digest, &policy_stats(py)->digest));
	cr_expect_not(digest_is_equal(&policy_stats(px)->digest, &policy_stats(pz)->digest));
	policy_free(px);
	policy_free(py);
	policy_free(pz);
}

Test(policy, bundled_list_denies_the_vendor)
{
	policy_t *p = list_bundled();
	cr_assert_not_null(p);
	struct policy_verdict v = decide(p, "dnl-01.geo.kaspersky.com");
	cr_expect_eq(v.action, POLICY_DENY);
	cr_expect_str_eq(rule_of("dnl-01.geo.kaspersky.com", v), "kaspersky.com");
	cr_expect_not_null(strstr(v.reason, "Final Determination"));
	cr_expect_eq(decide(p, "ksn.kaspersky-labs.com").action, POLICY_DENY);
	cr_expect_eq(decide(p, "notkaspersky.com").action, POLICY_PASS);
	/* Commented-out candidates stay disabled. */
	cr_expect_eq(decide(p, "drweb.com").action, POLICY_PASS);
	cr_expect_eq(policy_stats(p)->invalid, 0);
	cr_expect_geq(policy_stats(p)->deny, 40);
	cr_expect_eq(policy_stats(p)->source, POLICY_SOURCE_BUNDLED);
	policy_free(p);
}

static void note_bad(void *ctx, size_t i)
{
	size_t *bad = ctx;
	bad[++bad[0]] = i;
}

/* The bulk path (Redis scans, snapshots) must build what one-by-one calls build, across runs of
 * its read-ahead and with invalid entries anywhere. */
Test(policy, put_many_matches_one_by_one)
{
	enum { N = 300 };
	static char names[N][32], reasons[N][32];
	static struct policy_entry e[N];
	policy_builder_t *one = policy_builder_new(), *many = policy_builder_new();
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), i % 37 == 5 ? "bad name %d" : "n%d.example",
			 i % 250);
		snprintf(reasons[i], sizeof(reasons[i]), "why %d", i);
		enum policy_action a = i % 3 == 0   ? POLICY_DENY
				       : i % 3 == 1 ? POLICY_ALLOW
						    : POLICY_PASS;
		int with_reason = a == POLICY_PASS || i % 4 == 0;
		e[i] = (struct policy_entry){.name = names[i], .len = strlen(names[i]), .action = a,
					     .reason = with_reason ? reasons[i] : NULL,
					     .reason_len = with_reason ? strlen(reasons[i]) : 0};
		if (a != POLICY_PASS)
			policy_builder_add(one, a, names[i], strlen(names[i]));
		else
			policy_builder_set_reason(one, names[i], strlen(names[i]), reasons[i],
						  strlen(reasons[i]));
		if (a != POLICY_PASS && with_reason && name_valid(names[i]))
			policy_builder_set_reason(one, names[i], strlen(names[i]), reasons[i],
						  strlen(reasons[i]));
	}
	e[7].name = NULL; /* Not a string, as a Redis reply element can be. */
	size_t bad[N + 1] = {0};
	cr_assert_eq(policy_builder_put_many(many, e, N, note_bad, bad), 0);
	cr_assert_eq(policy_builder_invalid(many), policy_builder_invalid(one) + 1);
	cr_assert_eq(bad[0], policy_builder_invalid(many));
	for (size_t k = 1; k <= bad[0]; k++)
		cr_expect(bad[k] == 7 || bad[k] % 37 == 5, "entry %zu reported", bad[k]);
	/* Entry 7 (an allow, no reason) is only in the one-by-one build: add it to the bulk one. */
	policy_builder_add(many, POLICY_ALLOW, names[7], strlen(names[7]));
	policy_t *p1 = policy_build(one, POLICY_SOURCE_REDIS);
	policy_t *p2 = policy_build(many, POLICY_SOURCE_REDIS);
	cr_assert(p1 && p2);
	cr_expect_eq(policy_stats(p2)->version, policy_stats(p1)->version);
	cr_expect_eq(policy_stats(p2)->deny, policy_stats(p1)->deny);
	cr_expect_eq(policy_stats(p2)->allow, policy_stats(p1)->allow);
	cr_expect_eq(policy_stats(p2)->reasons, policy_stats(p1)->reasons);
	policy_free(p1);
	policy_free(p2);
}

Test(policy, carry_parts_over_to_a_new_builder)
{
	b = policy_builder_new();
	add(POLICY_DENY, "example.com");
	add(POLICY_ALLOW, "support.example.com");
	policy_builder_set_reason(b, "example.com", 11, "old reason", 10);
	policy_builder_set_reason(b, "orphan.example", 14, "waiting", 7);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);

	/* A reload that re-read only the deny set: allow rules and reasons come from p. */
	b = policy_builder_new();
	cr_assert_eq(policy_builder_add_from(b, p, POLICY_PART_ALLOW | POLICY_PART_REASON), 0);
	add(POLICY_DENY, "example.com");
	add(POLICY_DENY, "orphan.example");
	policy_t *q = policy_build(b, POLICY_SOURCE_REDIS);
	cr_expect_str_eq(decide(q, "www.example.com").reason, "old reason");
	cr_expect_eq(decide(q, "a.support.example.com").action, POLICY_ALLOW);
	cr_expect_str_eq(decide(q, "orphan.example").reason, "waiting",
			 "a reason without a rule is carried too");
	policy_builder_t *full = policy_builder_new();
	policy_builder_add(full, POLICY_DENY, "example.com", 11);
	policy_builder_add(full, POLICY_DENY, "orphan.example", 14);
	policy_builder_add(full, POLICY_ALLOW, "support.example.com", 19);
	policy_builder_set_reason(full, "example.com", 11, "old reason", 10);
	policy_builder_set_reason(full, "orphan.example", 14, "waiting", 7);
	policy_t *f = policy_build(full, POLICY_SOURCE_REDIS);
	cr_expect_eq(policy_stats(q)->version, policy_stats(f)->version,
		     "the same policy as a full read");
	policy_free(f);

	/* Nothing carried of a part not asked for. */
	b = policy_builder_new();
	cr_assert_eq(policy_builder_add_from(b, p, POLICY_PART_DENY), 0);
	policy_t *r = policy_build(b, POLICY_SOURCE_REDIS);
	cr_expect_eq(decide(r, "a.support.example.com").action, POLICY_DENY);
	cr_expect_null(decide(r, "example.com").reason);
	policy_free(p);
	policy_free(q);
	policy_free(r);
}

Test(policy, version_sees_reasons_without_rules)
{
	/* Regression: a reason set before its rule left the version unchanged, so the reloaded
	 * policy was not published and a later carry-over lost the reason. */
	policy_builder_t *x = policy_builder_new(), *y = policy_builder_new();
	policy_builder_add(x, POLICY_DENY, "a.example", 9);
	policy_builder_add(y, POLICY_DENY, "a.example", 9);
	policy_builder_set_reason(y, "later.example", 13, "soon denied", 11);
	policy_t *px = policy_build(x, POLICY_SOURCE_REDIS);
	policy_t *py = policy_build(y, POLICY_SOURCE_REDIS);
	cr_expect_neq(policy_stats(px)->version, policy_stats(py)->version);
	cr_expect_eq(policy_stats(py)->reasons, 0, "only rules' reasons are counted");
	policy_free(px);
	policy_free(py);
}
