/* Hashed label trie; a lookup never allocates or changes it. A node's hash is chained from its
 * parent's: h(child) = step(h(parent), label), so the hashes of all of a query's ancestors come
 * from one pass over its key, before any memory is touched. Slots hold tag << 32 | payload,
 * payload = HAS_CHILDREN | (value + 1) with 0 for "no name ends here"; a slot of 0 is empty (tags
 * are never 0). The table uses linear probing from home(h) and stays at most 70% full.
 *
 * Exactness rests on two rules. The build: a node is never placed behind another node with the
 * same tag in its probe run (when that would happen the build starts over with another seed), so
 * a probe for a node that exists finds that node. The lookup: a walk follows the true path as long
 * as the true nodes exist; a tag can only lead it astray where the true node does not exist, and
 * every candidate found from there on is false. So the deepest candidate whose key matches the
 * query (checked deepest first) is the right answer. */
#include "config.h"

#include "policy/trie.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy/mem.h"

#define HAS_CHILDREN UINT32_C(0x80000000)
#define VALUE_MASK UINT32_C(0x7FFFFFFF)
#define NO_SLOT UINT32_MAX
#define MAX_LABELS 128	    /* A name has at most 127 labels. */
#define PREFETCH_LEVELS 8   /* Levels whose slots a lookup prefetches before walking. */
#define MAX_SEEDS 16	    /* Seeds tried before a build gives up. */

struct trie {
	uint64_t *slots;
	uint32_t nslots;
	uint32_t tag_mask;
	uint32_t root; /* The root's payload. */
	uint64_t seed;
	unsigned reseeds; /* Seeds the build gave up on before this one. */
	size_t count;  /* Names stored. */
	size_t nodes;
	trie_key_fn key_of;
	const void *ctx;
};

/* Where the build first made a node: an item whose key passes through it, and its depth. */
struct origin {
	uint32_t item;
	uint32_t depth;
};

static inline uint64_t fmix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* The hash of the child labelled l ([len][bytes]) of the node hashed h. With padded set, the 8
 * octets from every word start of the label may be read (a struct name's key has NAME_KEYPAD
 * spare octets); without it only the label is read. Both give the same hash. */
static inline uint64_t step_with(uint64_t h, const uint8_t *l, int padded)
{
	unsigned len = l[0];
	const uint8_t *p = l + 1;
	uint64_t acc = h ^ ((uint64_t)len << 56);
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		acc = (acc ^ w) * 0x9E3779B97F4A7C15ULL;
		acc ^= acc >> 29;
		p += 8;
		len -= 8;
	}
	uint64_t w = 0;
	if (padded) {
		if (len) {
			memcpy(&w, p, 8);
			w &= ~UINT64_C(0) >> (64 - 8 * len);
		}
	} else {
		for (unsigned i = 0; i < len; i++)
			w |= (uint64_t)p[i] << (8 * i);
	}
	return fmix(acc ^ w);
}

static inline uint64_t step(uint64_t h, const uint8_t *l)
{
	return step_with(h, l, 0);
}

static inline uint32_t home(const trie_t *t, uint64_t h)
{
	return (uint32_t)(((uint64_t)(uint32_t)h * t->nslots) >> 32);
}

static inline uint32_t tag_of(const trie_t *t, uint64_t h)
{
	uint32_t tag = (uint32_t)(h >> 32) & t->tag_mask;
	return tag ? tag : 1;
}

/* The payload of the node hashed h, 0 when no slot carries its tag. */
static inline uint32_t find(const trie_t *t, uint64_t h)
{
	uint32_t tag = tag_of(t, h);
	for (uint32_t pos = home(t, h);;) {
		uint64_t s = t->slots[pos];
		if (!s)
			return 0;
		if ((uint32_t)(s >> 32) == tag)
			return (uint32_t)s;
		if (++pos == t->nslots)
			pos = 0;
	}
}

/* Whether the first d labels of keys a and b (both at least that deep) are equal. */
static int same_path(const uint8_t *a, const uint8_t *b, unsigned d)
{
	while (d-- > 0) {
		if (*a != *b || memcmp(a + 1, b + 1, *a) != 0)
			return 0;
		a += 1 + *a;
		b += 1 + *b;
	}
	return 1;
}

/* One attempt with t->seed and t->nslots: 0, -EAGAIN when a tag would shadow another (try
 * another seed) or -ENOSPC when the nodes outgrow the table. */
static int build_once(trie_t *t, const uint32_t *values, size_t count, struct origin *origin)
{
	memset(t->slots, 0, (size_t)t->nslots * sizeof(*t->slots));
	t->root = 0;
	t->nodes = 0;
	t->count = 0;
	size_t limit = (size_t)t->nslots * 7 / 10;
	for (size_t i = 0; i < count; i++) {
		size_t klen;
		const uint8_t *key = t->key_of(t->ctx, values[i], &klen);
		uint64_t h = t->seed;
		uint32_t at = NO_SLOT; /* The root. */
		unsigned d = 0;
		for (size_t off = 0; key[off]; off += 1u + key[off]) {
			h = step(h, key + off);
			d++;
			uint32_t tag = tag_of(t, h), pos = home(t, h);
			for (;;) {
				uint64_t s = t->slots[pos];
				if (!s) {
					if (t->nodes >= limit)
						return -ENOSPC;
					t->slots[pos] = (uint64_t)tag << 32;
					origin[pos] = (struct origin){.item = (uint32_t)i, .depth = d};
					t->nodes++;
					break;
				}
				if ((uint32_t)(s >> 32) == tag) {
					size_t olen;
					const uint8_t *okey =
						t->key_of(t->ctx, values[origin[pos].item], &olen);
					if (origin[pos].depth == d && same_path(key, okey, d))
						break; /* This node, made by an earlier name. */
					return -EAGAIN;
				}
				if (++pos == t->nslots)
					pos = 0;
			}
			if (at == NO_SLOT)
				t->root |= HAS_CHILDREN;
			else
				t->slots[at] |= HAS_CHILDREN;
			at = pos;
		}
		uint32_t *payload = at == NO_SLOT ? &t->root : NULL;
		uint32_t old = payload ? *payload : (uint32_t)t->slots[at];
		uint32_t now = (old & HAS_CHILDREN) | (values[i] + 1);
		if (payload)
			*payload = now;
		else
			t->slots[at] = (t->slots[at] & ~(uint64_t)UINT32_MAX) | now;
		if (!(old & VALUE_MASK))
			t->count++;
	}
	return 0;
}

trie_t *trie_build_tagged(const uint32_t *values, size_t count, trie_key_fn key_of,
			  const void *ctx, unsigned tag_bits)
{
	if (tag_bits < 1 || tag_bits > 32)
		return NULL;
	for (size_t i = 0; i < count; i++)
		if (values[i] > TRIE_VALUE_MAX)
			return NULL;
	trie_t *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->key_of = key_of;
	t->ctx = ctx;
	t->tag_mask = tag_bits == 32 ? UINT32_MAX : (UINT32_C(1) << tag_bits) - 1;
	/* Most policies are names under a few shared parents: about one node per name. */
	uint64_t want = ((uint64_t)count + count / 8 + 16) * 10 / 7 + 1;
	t->seed = 0x9ae16a3b2f90404fULL;
	struct origin *origin = NULL;
	for (int seeds = 0; seeds < MAX_SEEDS;) {
		if (want >= UINT32_MAX)
			goto fail;
		if (!t->slots || want != t->nslots) {
			free(t->slots);
			free(origin);
			t->nslots = (uint32_t)want;
			t->slots = mem_alloc((size_t)want * sizeof(*t->slots));
			origin = mem_alloc((size_t)want * sizeof(*origin));
			if (!t->slots || !origin)
				goto fail;
		}
		int rc = build_once(t, values, count, origin);
		if (rc == 0) {
			free(origin);
			return t;
		}
		if (rc == -ENOSPC) {
			want *= 2;
		} else {
			t->seed = fmix(t->seed + 1);
			t->reseeds = (unsigned)++seeds;
		}
	}
fail:
	free(origin);
	trie_free(t);
	return NULL;
}

trie_t *trie_build(const uint32_t *values, size_t count, trie_key_fn key_of, const void *ctx)
{
	return trie_build_tagged(values, count, key_of, ctx, 32);
}

void trie_free(trie_t *t)
{
	if (!t)
		return;
	free(t->slots);
	free(t);
}

/* A lookup in progress: the hashes of the query's ancestors, then the depths where a name ends
 * along the walk. */
struct walk {
	const struct name *q;
	unsigned n;			 /* Labels hashed. */
	unsigned nc;			 /* Candidates found. */
	uint64_t hs[MAX_LABELS];	 /* hs[d]: hash of q's topmost d + 1 labels. */
	uint16_t ends[MAX_LABELS + 1];	 /* ends[d]: key octets of q's topmost d labels. */
	uint32_t cand[MAX_LABELS + 1];	 /* Values, shallowest first... */
	uint8_t cdepth[MAX_LABELS + 1]; /* ...and their depths. */
};

/* Hash q's ancestors and prefetch the slots of the first levels. */
static void walk_hash(const trie_t *t, struct walk *k, const struct name *q)
{
	uint64_t h = t->seed;
	unsigned n = 0;
	k->q = q;
	k->ends[0] = 0;
	if (t->root & HAS_CHILDREN) {
		for (size_t off = 0; q->key[off] && n < MAX_LABELS; off += 1u + q->key[off]) {
			h = step_with(h, q->key + off, 1);
			if (n < PREFETCH_LEVELS)
				__builtin_prefetch(&t->slots[home(t, h)]);
			k->hs[n++] = h;
			k->ends[n] = (uint16_t)(off + 1u + q->key[off]);
		}
	}
	k->n = n;
}

/* Walk down while the nodes exist, collecting the depths where a name ends. */
static void walk_down(const trie_t *t, struct walk *k)
{
	unsigned nc = 0;
	if (t->root & VALUE_MASK) {
		k->cand[nc] = (t->root & VALUE_MASK) - 1;
		k->cdepth[nc++] = 0;
	}
	for (unsigned d = 0; d < k->n; d++) {
		uint32_t p = find(t, k->hs[d]);
		if (!p)
			break;
		if (p & VALUE_MASK) {
			k->cand[nc] = (p & VALUE_MASK) - 1;
			k->cdepth[nc++] = (uint8_t)(d + 1);
		}
		if (!(p & HAS_CHILDREN))
			break;
	}
	k->nc = nc;
}

/* Deepest first: the first candidate whose name is really q's ancestor decides. */
static int walk_check(const trie_t *t, const struct walk *k, uint32_t *value, unsigned *depth)
{
	for (unsigned i = k->nc; i-- > 0;) {
		size_t len;
		const uint8_t *key = t->key_of(t->ctx, k->cand[i], &len);
		size_t want = k->ends[k->cdepth[i]];
		if (len == want + 1 && memcmp(key, k->q->key, want) == 0) {
			*value = k->cand[i];
			*depth = k->cdepth[i];
			return 0;
		}
	}
	return -ENOENT;
}

int trie_lookup(const trie_t *t, const struct name *q, uint32_t *value, unsigned *depth)
{
	struct walk k;
	walk_hash(t, &k, q);
	walk_down(t, &k);
	return walk_check(t, &k, value, depth);
}

void trie_lookup_many(const trie_t *t, const struct name *const *qs, size_t n,
		      struct trie_match *out)
{
	struct walk k[TRIE_BATCH];
	for (size_t base = 0; base < n; base += TRIE_BATCH) {
		size_t m = n - base < TRIE_BATCH ? n - base : TRIE_BATCH;
		/* Each stage's loads are issued for the whole batch before the next stage needs
		 * them: one memory round trip per stage rather than per query. */
		for (size_t i = 0; i < m; i++)
			walk_hash(t, &k[i], qs[base + i]);
		for (size_t i = 0; i < m; i++) {
			walk_down(t, &k[i]);
			if (k[i].nc) {
				const char *r = (const char *)t->key_of(t->ctx,
									k[i].cand[k[i].nc - 1], NULL);
				__builtin_prefetch(r);
				__builtin_prefetch(r + 63);
			}
		}
		for (size_t i = 0; i < m; i++) {
			struct trie_match *o = &out[base + i];
			o->found = walk_check(t, &k[i], &o->value, &o->depth) == 0;
		}
	}
}

size_t trie_count(const trie_t *t)
{
	return t->count;
}

unsigned trie_reseeds(const trie_t *t)
{
	return t->reseeds;
}

size_t trie_memory(const trie_t *t)
{
	return sizeof(*t) + (size_t)t->nslots * sizeof(*t->slots);
}
