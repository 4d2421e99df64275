/* bench/lookup: policy lookup cost at 1k, 100k and 1M rules, hits and misses, against baselines
 * measured in the same run: a hash set of rule names probed with every suffix of the query name
 * (what a simple filter does), and ldns's radix tree and red-black tree probed with every
 * ancestor of the name in lookup format. The trie is timed one name at a time and in batches
 * (policy_lookup_many, as a worker does with one recvmmsg batch). The machine's own limit is
 * printed too: one dependent load from memory of the policy's size, which a lookup of a name
 * not in cache cannot beat. Prints ns per lookup (p50/p99/mean), build time and bytes per rule.
 * Usage: bench/lookup [max-rules] */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <ldns/ldns.h>

#include "policy/policy.h"

#define QUERIES 200000
#define BATCH 16 /* Lookups per clock read, so the clock's own cost stays small. */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A registrable-looking name: 6-12 letters, under one of a few TLDs. */
static void random_domain(char *buf)
{
	static const char *tlds[] = {"com", "net", "org", "ru", "de", "io", "co.uk"};
	int len = 6 + (int)(next() % 7);
	for (int i = 0; i < len; i++)
		buf[i] = (char)('a' + next() % 26);
	buf[len] = '.';
	strcpy(buf + len + 1, tlds[next() % 7]);
}

/* ---- Baseline: open-addressing hash set of names, probed per suffix. ---- */
struct hset {
	char **slots;
	size_t mask;
};

static uint64_t hash_str(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void hset_add(struct hset *h, char *name)
{
	size_t i = hash_str(name, strlen(name)) & h->mask;
	while (h->slots[i]) {
		if (strcmp(h->slots[i], name) == 0)
			return;
		i = (i + 1) & h->mask;
	}
	h->slots[i] = name;
}

static int hset_has(const struct hset *h, const char *s, size_t len)
{
	size_t i = hash_str(s, len) & h->mask;
	for (; h->slots[i]; i = (i + 1) & h->mask)
		if (strncmp(h->slots[i], s, len) == 0 && h->slots[i][len] == '\0')
			return 1;
	return 0;
}

/* The baseline's lookup: lower-case, then each suffix on a label boundary, longest first. */
static int hset_lookup(const struct hset *h, const char *name)
{
	char low[256];
	size_t len = strlen(name);
	for (size_t i = 0; i < len; i++)
		low[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] + 32) : name[i];
	for (size_t off = 0; off < len;) {
		if (hset_has(h, low + off, len - off))
			return 1;
		const char *dot = memchr(low + off, '.', len - off);
		if (!dot)
			break;
		off = (size_t)(dot - low) + 1;
	}
	return 0;
}

/* ---- Baselines: ldns's radix and red-black trees over lookup-format keys. ---- */
struct lkey {
	const uint8_t *bytes;
	size_t len;
};

static int lkey_cmp(const void *x, const void *y)
{
	const struct lkey *a = x, *b = y;
	int c = memcmp(a->bytes, b->bytes, a->len < b->len ? a->len : b->len);
	return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* A name's key without its terminator, and the key length at each label boundary (root first):
 * a rule matches when one of those prefixes is a stored key. */
static unsigned ancestors(const char *q, struct name *n, size_t *ends)
{
	name_from_text(n, q, strlen(q));
	unsigned count = 0;
	for (size_t p = 0; n->key[p]; p += 1u + n->key[p])
		ends[count++] = p + 1u + n->key[p];
	return count;
}

static int radix_lookup(ldns_radix_t *radix, const char *q)
{
	struct name n;
	size_t ends[128];
	for (unsigned d = ancestors(q, &n, ends); d-- > 0;)
		if (ldns_radix_search(radix, n.key, (radix_strlen_t)ends[d]))
			return 1;
	return 0;
}

static int rbtree_lookup(ldns_rbtree_t *tree, const char *q)
{
	struct name n;
	size_t ends[128];
	for (unsigned d = ancestors(q, &n, ends); d-- > 0;) {
		struct lkey k = {.bytes = n.key, .len = ends[d]};
		if (ldns_rbtree_search(tree, &k))
			return 1;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct figures {
	double p50, p99, mean;
};

static struct figures summarise(uint64_t *batches, size_t n)
{
	qsort(batches, n, sizeof(*batches), cmp_u64);
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += batches[i];
	return (struct figures){.p50 = (double)batches[n / 2] / BATCH,
				.p99 = (double)batches[n * 99 / 100] / BATCH,
				.mean = (double)sum / (double)n / BATCH};
}

static volatile int sink;

/* One structure's lookup of a name in text form: 1 on a match. */
typedef int (*lookup_fn)(void *ctx, const char *q);

/* embargo: text to lookup format (as the wire parser does per query), then the trie. */
static int trie_text_lookup(void *ctx, const char *q)
{
	struct name n;
	struct policy_verdict v;
	name_from_text(&n, q, strlen(q));
	policy_lookup(ctx, &n, &v);
	return v.action == POLICY_DENY;
}

static int hset_text_lookup(void *ctx, const char *q)
{
	return hset_lookup(ctx, q);
}

static int radix_text_lookup(void *ctx, const char *q)
{
	return radix_lookup(ctx, q);
}

static int rbtree_text_lookup(void *ctx, const char *q)
{
	return rbtree_lookup(ctx, q);
}

/* embargo, batched: BATCH names parsed, then one policy_lookup_many(). */
static int trie_batch_lookup(void *ctx, char (*qs)[128])
{
	struct name n[BATCH];
	const struct name *np[BATCH];
	struct policy_verdict v[BATCH];
	for (size_t j = 0; j < BATCH; j++) {
		name_from_text(&n[j], qs[j], strlen(qs[j]));
		np[j] = &n[j];
	}
	policy_lookup_many(ctx, np, BATCH, v);
	int found = 0;
	for (size_t j = 0; j < BATCH; j++)
		found += v[j].action == POLICY_DENY;
	return found;
}

static struct figures time_batched(void *ctx, char (*qs)[128], uint64_t *batches, int *found)
{
	*found = 0;
	for (size_t i = 0; i < QUERIES / BATCH; i++) {
		uint64_t s = now_ns();
		*found += trie_batch_lookup(ctx, qs + i * BATCH);
		batches[i] = now_ns() - s;
	}
	return summarise(batches, QUERIES / BATCH);
}

/* The machine's limit: ns per dependent load, chasing a random cycle through `bytes` of memory
 * on huge pages as the policy's big arrays are. */
static double load_latency(size_t bytes)
{
	size_t n = bytes / 64; /* One pointer per cache line. */
	if (n < 2)
		n = 2;
	uint64_t *a;
	if (posix_memalign((void **)&a, 2u << 20, n * 64) != 0)
		return 0;
#ifdef MADV_HUGEPAGE
	(void)madvise(a, n * 64, MADV_HUGEPAGE);
#endif
	size_t *order = malloc(n * sizeof(*order));
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = next() % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (size_t i = 0; i < n; i++)
		a[order[i] * 8] = order[(i + 1) % n] * 8;
	enum { LOADS = 2000000 };
	size_t at = order[0] * 8;
	uint64_t s = now_ns();
	for (int i = 0; i < LOADS; i++)
		at = a[at];
	double ns = (double)(now_ns() - s) / LOADS;
	sink = (int)at;
	free(order);
	free(a);
	return ns;
}

/* Time QUERIES lookups in batches; *found gets the number of matches. */
static struct figures time_lookups(lookup_fn f, void *ctx, char (*qs)[128], uint64_t *batches,
				   int *found)
{
	*found = 0;
	for (size_t i = 0; i < QUERIES / BATCH; i++) {
		uint64_t s = now_ns();
		for (size_t j = 0; j < BATCH; j++)
			*found += f(ctx, qs[i * BATCH + j]);
		batches[i] = now_ns() - s;
	}
	return summarise(batches, QUERIES / BATCH);
}

static void run(size_t nrules)
{
	char **rules = malloc(nrules * sizeof(*rules));
	for (size_t i = 0; i < nrules; i++) {
		char buf[64];
		random_domain(buf);
		rules[i] = strdup(buf);
	}

	uint64_t t0 = now_ns();
	policy_builder_t *b = policy_builder_new();
	for (size_t i = 0; i < nrules; i++)
		policy_builder_add(b, POLICY_DENY, rules[i], strlen(rules[i]));
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	double build_s = (double)(now_ns() - t0) / 1e9;

	struct hset h = {0};
	size_t size = 1;
	while (size < nrules * 2)
		size <<= 1;
	h.slots = calloc(size, sizeof(*h.slots));
	h.mask = size - 1;
	for (size_t i = 0; i < nrules; i++)
		hset_add(&h, rules[i]);

	/* The same rules in ldns's trees, keyed like the trie but without the terminator. */
	uint8_t *keys = malloc(nrules * 256);
	struct lkey *lkeys = malloc(nrules * sizeof(*lkeys));
	ldns_rbnode_t *nodes = calloc(nrules, sizeof(*nodes));
	ldns_radix_t *radix = ldns_radix_create();
	ldns_rbtree_t *rbtree = ldns_rbtree_create(lkey_cmp);
	for (size_t i = 0; i < nrules; i++) {
		struct name n;
		name_from_text(&n, rules[i], strlen(rules[i]));
		memcpy(keys + i * 256, n.key, n.keylen - 1u);
		lkeys[i] = (struct lkey){.bytes = keys + i * 256, .len = n.keylen - 1u};
		ldns_radix_insert(radix, keys + i * 256, (radix_strlen_t)lkeys[i].len, rules[i]);
		nodes[i].key = &lkeys[i];
		ldns_rbtree_insert(rbtree, &nodes[i]);
	}

	/* Queries as a resolver sees them: host names below the rules (hits) or below random
	 * domains (misses), in mixed case. */
	char (*hits)[128] = malloc(QUERIES * sizeof(*hits));
	char (*misses)[128] = malloc(QUERIES * sizeof(*misses));
	for (size_t i = 0; i < QUERIES; i++) {
		snprintf(hits[i], sizeof(hits[i]), "Host%u.cdn.%s", (unsigned)(next() % 1000),
			 rules[next() % nrules]);
		char d[64];
		random_domain(d);
		snprintf(misses[i], sizeof(misses[i]), "www.%s", d);
	}

	uint64_t *batches = malloc(QUERIES / BATCH * sizeof(*batches));
	const char *kinds[] = {"hit", "miss"};
	for (int k = 0; k < 2; k++) {
		char (*qs)[128] = k == 0 ? hits : misses;
		static const lookup_fn fns[] = {trie_text_lookup, hset_text_lookup,
						radix_text_lookup, rbtree_text_lookup};
		static const char *const names[] = {"embargo trie", "suffix hash set", "ldns radix",
						    "ldns rbtree"};
		void *ctxs[] = {p, &h, radix, rbtree};
		struct figures fig[5];
		int found[5];
		for (int s2 = 0; s2 < 4; s2++)
			fig[s2] = time_lookups(fns[s2], ctxs[s2], qs, batches, &found[s2]);
		fig[4] = time_batched(p, qs, batches, &found[4]);
		sink = found[0];
		if (found[1] != found[0] || found[2] != found[0] || found[3] != found[0] ||
		    found[4] != found[0])
			fprintf(stderr, "bench/lookup: structures disagree (%d %d %d %d %d)\n",
				found[0], found[1], found[2], found[3], found[4]);
		for (int s2 = 0; s2 < 5; s2++)
			printf("%8zu rules %-4s  %-16s p50 %7.1f ns  p99 %7.1f ns  mean %7.1f ns  "
			       "(%.2fx the trie)\n", nrules, kinds[k],
			       s2 < 4 ? names[s2] : "embargo batched", fig[s2].p50, fig[s2].p99,
			       fig[s2].mean, fig[s2].mean / fig[0].mean);
	}
	printf("%8zu rules build %.3f s, %.1f bytes per rule in the policy; one dependent load "
	       "from memory of that size: %.1f ns\n", nrules, build_s,
	       (double)policy_memory(p) / (double)nrules, load_latency(policy_memory(p)));

	ldns_radix_free(radix);
	ldns_rbtree_free(rbtree);
	free(nodes);
	free(lkeys);
	free(keys);
	free(batches);
	free(hits);
	free(misses);
	free(h.slots);
	policy_free(p);
	for (size_t i = 0; i < nrules; i++)
		free(rules[i]);
	free(rules);
}

int main(int argc, char **argv)
{
	size_t max = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	printf("bench/lookup: ns per lookup, timed in batches of %d (name parsing included)\n", BATCH);
	const size_t sizes[] = {1000, 100000, 1000000};
	for (size_t i = 0; i < 3 && sizes[i] <= max; i++)
		run(sizes[i]);
	return 0;
}
