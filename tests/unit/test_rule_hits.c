/* Per-rule denial counts: one slot per rule, merged across tables by tag, and a full table counts
 * the rest as "other" (its bound). */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "resolver/observe/rule_hits.h"

TestSuite(rule_hits);

static struct name named(const char *text)
{
	struct name n;
	cr_assert_eq(name_from_text(&n, text, strlen(text)), 0, "%s", text);
	return n;
}

Test(rule_hits, counts_per_rule_and_merges)
{
	rule_hits_t *a = rule_hits_new(), *b = rule_hits_new();
	cr_assert(a && b);
	struct name x = named("dl.kaspersky.com"), y = named("a.b.kaspersky.com"),
		    z = named("www.blocked.test");
	rule_hits_add(a, &x, 2);
	rule_hits_add(a, &y, 2);
	rule_hits_add(b, &x, 2);
	rule_hits_add(b, &z, 2);
	struct rule_hit out[8];
	size_t n = 0;
	uint64_t other = 0;
	rule_hits_merge(a, out, &n, 8, &other);
	rule_hits_merge(b, out, &n, 8, &other);
	cr_assert_eq(n, 2);
	cr_expect_eq(other, 0);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(out[i].rule, "kaspersky.com") == 0)
			cr_expect_eq(out[i].count, 3);
		else
			cr_expect(strcmp(out[i].rule, "blocked.test") == 0 && out[i].count == 1, "%s",
				  out[i].rule);
	}
	rule_hits_free(a);
	rule_hits_free(b);
	rule_hits_free(NULL);
}

Test(rule_hits, a_full_table_counts_the_rest_as_other)
{
	rule_hits_t *h = rule_hits_new();
	char text[64];
	for (int i = 0; i < 3 * RULE_HITS_SLOTS; i++) {
		snprintf(text, sizeof(text), "r%d.example", i);
		struct name n = named(text);
		rule_hits_add(h, &n, 2);
	}
	static struct rule_hit out[RULE_HITS_SLOTS];
	size_t n = 0;
	uint64_t other = 0;
	rule_hits_merge(h, out, &n, RULE_HITS_SLOTS, &other);
	uint64_t counted = 0;
	for (size_t i = 0; i < n; i++)
		counted += out[i].count;
	cr_expect_leq(n, RULE_HITS_SLOTS);
	cr_expect_gt(other, 0, "nothing overflowed");
	cr_expect_eq(counted + other, 3 * RULE_HITS_SLOTS, "a denial was lost");
	rule_hits_free(h);
}
