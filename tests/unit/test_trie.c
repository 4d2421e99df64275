/* The label trie: boundaries, case, the root, deep names, and random names against a naive
 * reference, once with full tags and once with tags cut short so that they collide often. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/trie.h"

TestSuite(trie);

static struct name nm(const char *s)
{
	struct name n;
	cr_assert_eq(name_from_text(&n, s, strlen(s)), 0, "%s", s);
	return n;
}

/* The names the values of the trie under test stand for: value i is keys[i]. */
static struct name *keys;

/* Keys read to check a candidate: a lookup reads one per candidate it checks, deepest first, and
 * stops at the first true one, so the reads beyond one per hit are false candidates. */
static size_t key_reads;

static const uint8_t *key_of(const void *ctx, uint32_t value, size_t *len)
{
	const struct name *names = ctx;
	if (len) {
		*len = names[value].keylen;
		key_reads++;
	}
	return names[value].key;
}

static trie_t *build_tagged(const char *const *names, size_t count, unsigned tag_bits)
{
	free(keys);
	keys = malloc((count ? count : 1) * sizeof(*keys));
	uint32_t *values = malloc((count ? count : 1) * sizeof(*values));
	cr_assert(keys && values);
	for (size_t i = 0; i < count; i++) {
		keys[i] = nm(names[i]);
		values[i] = (uint32_t)i;
	}
	trie_t *t = trie_build_tagged(values, count, key_of, keys, tag_bits);
	free(values);
	cr_assert_not_null(t);
	return t;
}

static trie_t *build(const char *const *names, size_t count)
{
	return build_tagged(names, count, 32);
}

/* The value found for s, or -1. */
static long find(const trie_t *t, const char *s, unsigned *depth)
{
	struct name n = nm(s);
	uint32_t v;
	unsigned d;
	if (trie_lookup(t, &n, &v, &d) < 0)
		return -1;
	if (depth)
		*depth = d;
	return v;
}

Test(trie, empty)
{
	trie_t *t = build(NULL, 0);
	cr_assert_eq(find(t, "example.com", NULL), -1);
	cr_assert_eq(find(t, ".", NULL), -1);
	cr_assert_eq(trie_count(t), 0);
	trie_free(t);
	trie_free(NULL);
}

Test(trie, label_boundaries)
{
	const char *names[] = {"kaspersky.com"};
	trie_t *t = build(names, 1);
	unsigned d;
	cr_expect_eq(find(t, "kaspersky.com", &d), 0);
	cr_expect_eq(d, 2);
	cr_expect_eq(find(t, "www.kaspersky.com", &d), 0);
	cr_expect_eq(d, 2);
	cr_expect_eq(find(t, "a.b.c.kaspersky.com", NULL), 0);
	cr_expect_eq(find(t, "notkaspersky.com", NULL), -1);
	cr_expect_eq(find(t, "kaspersky.com.example.org", NULL), -1);
	cr_expect_eq(find(t, "com", NULL), -1);
	cr_expect_eq(find(t, "kaspersky.co", NULL), -1);
	cr_expect_eq(find(t, "kaspersky.comm", NULL), -1);
	cr_expect_eq(find(t, "kaspersky", NULL), -1);
	cr_expect_eq(find(t, ".", NULL), -1);
	trie_free(t);
}

Test(trie, case_is_ignored)
{
	const char *names[] = {"KasPersky.COM"};
	trie_t *t = build(names, 1);
	cr_expect_eq(find(t, "WWW.KASPERSKY.COM.", NULL), 0);
	cr_expect_eq(find(t, "kaspersky.com", NULL), 0);
	trie_free(t);
}

Test(trie, root_rule_matches_everything)
{
	const char *names[] = {".", "example.com"};
	trie_t *t = build(names, 2);
	unsigned d;
	cr_expect_eq(find(t, "anything.org", &d), 0);
	cr_expect_eq(d, 0);
	cr_expect_eq(find(t, ".", NULL), 0);
	cr_expect_eq(find(t, "www.example.com", &d), 1);
	cr_expect_eq(d, 2);
	trie_free(t);
}

Test(trie, deepest_match_wins)
{
	const char *names[] = {"com", "example.com", "a.b.example.com"};
	trie_t *t = build(names, 3);
	unsigned d;
	cr_expect_eq(find(t, "x.a.b.example.com", &d), 2);
	cr_expect_eq(d, 4);
	cr_expect_eq(find(t, "b.example.com", &d), 1);
	cr_expect_eq(d, 2);
	cr_expect_eq(find(t, "org.com", &d), 0);
	cr_expect_eq(d, 1);
	trie_free(t);
}

Test(trie, deep_names)
{
	/* 127 one-octet labels: the deepest legal name. */
	char deep[300];
	size_t w = 0;
	for (int i = 0; i < 127; i++) {
		deep[w++] = (char)('a' + i % 26);
		deep[w++] = '.';
	}
	deep[w - 1] = '\0';
	const char *names[] = {deep, deep + 200};
	trie_t *t = build(names, 2);
	unsigned d;
	cr_expect_eq(find(t, deep, &d), 0);
	cr_expect_eq(d, 127);
	cr_expect_eq(find(t, deep + 2, &d), 1);
	cr_expect_eq(d, 27);
	trie_free(t);
}

Test(trie, duplicates_keep_last_value)
{
	const char *names[] = {"dup.example", "other.example", "DUP.example."};
	trie_t *t = build(names, 3);
	cr_expect_eq(find(t, "dup.example", NULL), 2);
	cr_expect_eq(trie_count(t), 2);
	trie_free(t);
}

Test(trie, values_over_the_limit_are_refused)
{
	struct name n = nm("example.com");
	uint32_t v = TRIE_VALUE_MAX + 1;
	cr_expect_null(trie_build(&v, 1, key_of, &n));
	v = 0;
	trie_t *t = trie_build(&v, 1, key_of, &n);
	cr_assert_not_null(t);
	trie_free(t);
}

Test(trie, deep_policies_grow_the_table)
{
	/* Every rule four labels below its own parents: about four nodes a name, where the first
	 * table is sized for about one. */
	enum { N = 3000 };
	static char buf[N][64];
	const char *names[N];
	for (int i = 0; i < N; i++) {
		snprintf(buf[i], sizeof(buf[i]), "a%d.b%d.c%d.d%d.org", i, i, i, i);
		names[i] = buf[i];
	}
	trie_t *t = build(names, N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(find(t, names[i], NULL), i);
	cr_expect_eq(find(t, "b7.c7.d7.org", NULL), -1);
	cr_expect_eq(trie_count(t), N);
	trie_free(t);
}

Test(trie, siblings_of_different_lengths)
{
	const char *names[] = {"b.x", "aa.x", "a.x", "ab.x", "ba.x", "c.x", "zzzz.x", "z.x"};
	trie_t *t = build(names, 8);
	for (size_t i = 0; i < 8; i++)
		cr_expect_eq(find(t, names[i], NULL), (long)i, "%s", names[i]);
	cr_expect_eq(find(t, "zz.x", NULL), -1);
	cr_expect_eq(find(t, "x", NULL), -1);
	trie_free(t);
}

/* Naive reference: probe a sorted list of rule strings with every suffix of the name, longest
 * first, so the first hit is the most specific rule. */
struct ref {
	const char *name;
	long value;
};

static int ref_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ref *)a)->name, ((const struct ref *)b)->name);
}

static long naive(const struct ref *sorted, size_t count, const char *q, unsigned *depth)
{
	unsigned labels = 1;
	for (const char *p = q; *p; p++)
		labels += *p == '.';
	for (const char *s = q; s; labels--) {
		struct ref key = {.name = s};
		const struct ref *hit = bsearch(&key, sorted, count, sizeof(*sorted), ref_cmp);
		if (hit) {
			*depth = labels;
			return hit->value;
		}
		s = strchr(s, '.');
		if (s)
			s++;
	}
	return -1;
}

/* Rules use the first ntld TLDs; queries also use "io", which no rule has, to miss. */
static void random_name(char *buf, unsigned *seed, int max_labels, int ntld)
{
	static const char *tlds[] = {"com", "net", "org", "ru", "de", "io"};
	int labels = 1 + rand_r(seed) % max_labels;
	size_t w = 0;
	for (int l = 0; l < labels; l++) {
		int len = 1 + rand_r(seed) % 3; /* Short labels from a small alphabet collide often. */
		for (int i = 0; i < len; i++)
			buf[w++] = (char)('a' + rand_r(seed) % 4);
		buf[w++] = '.';
	}
	strcpy(buf + w, tlds[rand_r(seed) % ntld]);
}

/* What against_naive() saw the trie do. */
struct seen {
	unsigned reseeds;	  /* Seeds the build gave up on. */
	size_t false_candidates; /* Candidates single lookups found and refused. */
};

/* nrules random rules, then nqueries random names looked up in the trie and the reference. */
static struct seen against_naive(int nrules, int nqueries, unsigned tag_bits)
{
	struct seen seen = {0};
	unsigned seed = 2024;
	char **rules = malloc((size_t)nrules * sizeof(*rules));
	for (int i = 0; i < nrules; i++) {
		char buf[64];
		random_name(buf, &seed, 4, 5);
		rules[i] = strdup(buf);
	}
	trie_t *t = build_tagged((const char *const *)rules, (size_t)nrules, tag_bits);
	/* Duplicates: the trie keeps the last; make the reference do the same by blanking earlier
	 * copies. */
	for (int i = 0; i < nrules; i++) {
		uint32_t v;
		unsigned d;
		struct name n = nm(rules[i]);
		cr_assert_eq(trie_lookup(t, &n, &v, &d), 0);
		if (v != (uint32_t)i)
			rules[i][0] = '\0';
	}

	/* Reference index: the live rules, sorted; values are recovered from string identity. */
	struct ref *live = malloc((size_t)nrules * sizeof(*live));
	size_t nlive = 0;
	for (int i = 0; i < nrules; i++)
		if (rules[i][0])
			live[nlive++] = (struct ref){.name = rules[i], .value = i};
	qsort(live, nlive, sizeof(*live), ref_cmp);
	cr_assert_eq(trie_count(t), nlive);

	/* Each query alone, and in batches of a size that is no multiple of TRIE_BATCH. */
	enum { BATCH = 2 * TRIE_BATCH + 5 };
	struct name batch[BATCH];
	const struct name *bq[BATCH];
	long bwant[BATCH];
	unsigned bdepth[BATCH];
	struct trie_match bm[BATCH];
	size_t nb = 0;
	int hits = 0;
	for (int i = 0; i < nqueries; i++) {
		char q[80];
		random_name(q, &seed, 6, 6);
		unsigned d1 = 0, d2 = 0;
		long want = naive(live, nlive, q, &d2);
		size_t reads = key_reads;
		long got = find(t, q, &d1);
		seen.false_candidates += key_reads - reads - (got >= 0);
		cr_assert_eq(got, want, "%s: trie %ld, naive %ld", q, got, want);
		if (want >= 0) {
			hits++;
			cr_assert_eq(d1, d2, "%s", q);
		}
		batch[nb] = nm(q);
		bq[nb] = &batch[nb];
		bwant[nb] = want;
		bdepth[nb++] = d2;
		if (nb == BATCH || i == nqueries - 1) {
			trie_lookup_many(t, bq, nb, bm);
			for (size_t j = 0; j < nb; j++) {
				cr_assert_eq(bm[j].found ? (long)bm[j].value : -1, bwant[j],
					     "batched query %zu of %zu", j, nb);
				if (bm[j].found)
					cr_assert_eq(bm[j].depth, bdepth[j]);
			}
			nb = 0;
		}
	}
	cr_expect_gt(hits, nqueries / 10, "the random names should hit rules often");
	cr_expect_lt(hits, nqueries, "and miss sometimes");

	seen.reseeds = trie_reseeds(t);
	trie_free(t);
	for (int i = 0; i < nrules; i++)
		free(rules[i]);
	free(rules);
	free(live);
	return seen;
}

Test(trie, random_100k_against_naive, .timeout = 120)
{
	struct seen seen = against_naive(100000, 20000, 32);
	cr_expect_eq(seen.reseeds, 0, "full tags: the first seed serves");
}

/* Short tags: a probe meets a stranger's tag every thousand steps or so, so walks find false
 * candidates and builds must reseed, and the answers must still match the reference. The counts
 * are asserted so that the test cannot pass without exercising what it is for. */
Test(trie, colliding_tags_against_naive, .timeout = 120)
{
	struct seen a = against_naive(400, 200000, 10);
	struct seen b = against_naive(1000, 100000, 12);
	cr_expect_gt(a.false_candidates, 0, "10-bit tags must lead some walks astray");
	cr_expect_gt(b.false_candidates, 0, "12-bit tags must lead some walks astray");
	cr_expect_gt(b.reseeds, 0, "1000 names under 12-bit tags must make the build reseed");
	cr_log_info("false candidates %zu and %zu; reseeds %u and %u", a.false_candidates,
		    b.false_candidates, a.reseeds, b.reseeds);
}

/* With one-bit tags no seed avoids shadowing: the build gives up instead of going inexact. */
Test(trie, hopeless_tags_give_up)
{
	enum { N = 200 };
	struct name n[N];
	uint32_t values[N];
	for (int i = 0; i < N; i++) {
		char buf[32];
		snprintf(buf, sizeof(buf), "n%d.com", i);
		n[i] = nm(buf);
		values[i] = (uint32_t)i;
	}
	cr_expect_null(trie_build_tagged(values, N, key_of, n, 1));
	/* The same names with 16-bit tags: a seed is found, so it was the tags that failed. */
	trie_t *t = trie_build_tagged(values, N, key_of, n, 16);
	cr_expect_not_null(t);
	trie_free(t);
	cr_expect_null(trie_build_tagged(values, N, key_of, n, 0), "0 bits is no tag at all");
}
