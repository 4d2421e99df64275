/* Label trie: sorted keys laid out breadth-first into one array of nodes. Labels live in one
 * byte pool as [len][bytes]; children are ordered by (len, bytes), the same order memcmp() gives
 * whole lookup-format keys, so the build is a single pass over sorted keys. A node with many
 * children (a TLD under a big list) also gets an open-addressing hash table of them, so a lookup
 * costs one probe per label there instead of a bisection that misses the cache at every step. */
#include "config.h"

#include "policy/trie.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NO_VALUE UINT32_MAX
#define NO_CHILD UINT32_MAX
#define WIDE 16 /* Children from which a node gets a hash table. */

struct entry {
	uint32_t key;   /* Offset of the lookup-format key in the builder's pool. */
	uint32_t value;
	uint32_t seq;   /* Insertion order, so the last duplicate wins after sorting. */
};

struct trie_builder {
	uint8_t *pool;
	size_t pool_len, pool_cap;
	struct entry *entries;
	size_t count, cap;
};

struct node {
	uint32_t label;   /* Offset of [len][bytes] in the label pool; the root's is unused. */
	uint32_t child;   /* Index of the first child. */
	uint32_t nchild;
	uint32_t value;   /* NO_VALUE when no name ends here. */
	uint32_t table;   /* With nchild >= WIDE: offset of its hash table in tables. */
};

struct trie {
	struct node *nodes;
	size_t nnodes;
	uint32_t *tables; /* Child indexes or NO_CHILD; each table's size is table_size(nchild). */
	size_t tables_len;
	uint8_t *labels;
	size_t labels_len;
	size_t count;
};

trie_builder_t *trie_builder_new(void)
{
	return calloc(1, sizeof(struct trie_builder));
}

void trie_builder_free(trie_builder_t *b)
{
	if (!b)
		return;
	free(b->pool);
	free(b->entries);
	free(b);
}

int trie_builder_add(trie_builder_t *b, const struct name *n, uint32_t value)
{
	if (value == NO_VALUE)
		return -EINVAL;
	if (b->pool_len + n->keylen > b->pool_cap) {
		size_t cap = b->pool_cap ? b->pool_cap * 2 : 4096;
		while (cap < b->pool_len + n->keylen)
			cap *= 2;
		if (cap > UINT32_MAX)
			return -ENOMEM;
		uint8_t *p = realloc(b->pool, cap);
		if (!p)
			return -ENOMEM;
		b->pool = p;
		b->pool_cap = cap;
	}
	if (b->count == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		struct entry *e = realloc(b->entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		b->entries = e;
		b->cap = cap;
	}
	memcpy(b->pool + b->pool_len, n->key, n->keylen);
	b->entries[b->count] = (struct entry){
		.key = (uint32_t)b->pool_len, .value = value, .seq = (uint32_t)b->count};
	b->pool_len += n->keylen;
	b->count++;
	return 0;
}

/* Keys end in a 0 octet that sorts before any label length, so memcmp over the shorter
 * length plus one byte never reads past either key. */
static int key_cmp(const uint8_t *a, const uint8_t *b)
{
	for (;;) {
		if (*a != *b)
			return *a < *b ? -1 : 1;
		if (*a == 0)
			return 0;
		int c = memcmp(a + 1, b + 1, *a);
		if (c)
			return c;
		a += 1 + *a;
		b += 1 + *b;
	}
}

/* Length of a lookup-format key, terminator included. */
static unsigned key_len(const uint8_t *key)
{
	unsigned n = 0;
	while (key[n])
		n += 1u + key[n];
	return n + 1;
}

/* A builder entry with its key resolved to a pointer, so qsort needs no context. */
struct sorted {
	const uint8_t *key;
	uint32_t value;
	uint32_t seq;
	uint8_t keylen; /* Of the key less its terminator: at most 254. */
};

static int entry_cmp(const void *x, const void *y)
{
	const struct sorted *a = x, *b = y;
	/* One memcmp over the shorter key and its terminator orders keys label by label. */
	unsigned len = (a->keylen < b->keylen ? a->keylen : b->keylen) + 1u;
	int c = memcmp(a->key, b->key, len);
	if (c)
		return c;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* The label of key at depth d (0 = topmost), or NULL if the key has only d labels. */
static const uint8_t *label_at(const uint8_t *key, unsigned d)
{
	while (d-- > 0)
		key += 1 + *key;
	return *key ? key : NULL;
}

static int label_cmp(const uint8_t *a, const uint8_t *b)
{
	if (*a != *b)
		return *a < *b ? -1 : 1;
	return memcmp(a + 1, b + 1, *a);
}

static uint32_t label_hash(const uint8_t *l)
{
	uint32_t h = 2166136261u;
	for (unsigned i = 0; i <= *l; i++) {
		h ^= l[i];
		h *= 16777619u; /* FNV-1a, 32 bit. */
	}
	return h ^ (h >> 15);
}

/* The power of two holding nchild at a load of at most 3/4, so probes stay short. */
static inline size_t table_size(uint32_t nchild)
{
	uint64_t need = (uint64_t)nchild + nchild / 3 + 1;
	return (size_t)1 << (64 - __builtin_clzll(need - 1));
}

/* Give every wide node its hash table. */
static int build_tables(trie_t *t)
{
	size_t total = 0;
	for (size_t i = 0; i < t->nnodes; i++)
		if (t->nodes[i].nchild >= WIDE)
			total += table_size(t->nodes[i].nchild);
	if (total == 0)
		return 0;
	if (total > UINT32_MAX)
		return -ENOMEM;
	t->tables = malloc(total * sizeof(*t->tables));
	if (!t->tables)
		return -ENOMEM;
	memset(t->tables, 0xFF, total * sizeof(*t->tables));
	for (size_t i = 0; i < t->nnodes; i++) {
		struct node *n = &t->nodes[i];
		if (n->nchild < WIDE)
			continue;
		size_t size = table_size(n->nchild);
		uint32_t *table = t->tables + t->tables_len;
		n->table = (uint32_t)t->tables_len;
		for (uint32_t c = n->child; c < n->child + n->nchild; c++) {
			size_t h = label_hash(t->labels + t->nodes[c].label) & (size - 1);
			while (table[h] != NO_CHILD)
				h = (h + 1) & (size - 1);
			table[h] = c;
		}
		t->tables_len += size;
	}
	return 0;
}

struct span {
	uint32_t node, lo, hi, depth;
};

trie_t *trie_build(const trie_builder_t *b)
{
	trie_t *t = calloc(1, sizeof(*t));
	struct sorted *sorted = NULL;
	struct span *queue = NULL;
	if (!t)
		goto fail;

	size_t n = b->count;
	sorted = malloc((n ? n : 1) * sizeof(*sorted));
	if (!sorted)
		goto fail;
	for (size_t i = 0; i < n; i++)
		sorted[i] = (struct sorted){.key = b->pool + b->entries[i].key,
					    .value = b->entries[i].value, .seq = b->entries[i].seq,
					    .keylen = key_len(b->pool + b->entries[i].key) - 1u};
	/* Callers often add in order already (policy_build does): then one pass checks it. */
	size_t in_order = 1;
	while (in_order < n && entry_cmp(&sorted[in_order - 1], &sorted[in_order]) < 0)
		in_order++;
	if (in_order < n)
		qsort(sorted, n, sizeof(*sorted), entry_cmp);

	/* Drop duplicates, keeping the last added (sorted last by seq). */
	size_t u = 0;
	for (size_t i = 0; i < n; i++) {
		if (u > 0 && key_cmp(sorted[u - 1].key, sorted[i].key) == 0)
			sorted[u - 1] = sorted[i];
		else
			sorted[u++] = sorted[i];
	}
	n = u;
	t->count = n;

	/* A node per distinct prefix: at most the sum of label counts, plus the root. */
	size_t max_nodes = 1, label_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *k = sorted[i].key;
		while (*k) {
			max_nodes++;
			label_bytes += 1 + *k;
			k += 1 + *k;
		}
	}
	t->nodes = malloc(max_nodes * sizeof(*t->nodes));
	t->labels = malloc(label_bytes ? label_bytes : 1);
	queue = malloc(max_nodes * sizeof(*queue));
	if (!t->nodes || !t->labels || !queue)
		goto fail;

	t->nodes[0] = (struct node){.label = 0, .child = 0, .nchild = 0, .value = NO_VALUE};
	t->nnodes = 1;
	size_t qhead = 0, qtail = 0;
	queue[qtail++] = (struct span){.node = 0, .lo = 0, .hi = (uint32_t)n, .depth = 0};

	while (qhead < qtail) {
		struct span s = queue[qhead++];
		uint32_t i = s.lo;
		/* Keys ending exactly here sort first within the span. */
		if (i < s.hi && !label_at(sorted[i].key, s.depth)) {
			t->nodes[s.node].value = sorted[i].value;
			i++;
		}
		/* Count the distinct labels at this depth: they become contiguous children. */
		uint32_t nchild = 0;
		const uint8_t *prev = NULL;
		for (uint32_t j = i; j < s.hi; j++) {
			const uint8_t *l = label_at(sorted[j].key, s.depth);
			if (!prev || label_cmp(prev, l) != 0)
				nchild++;
			prev = l;
		}
		t->nodes[s.node].child = (uint32_t)t->nnodes;
		t->nodes[s.node].nchild = nchild;
		uint32_t c = (uint32_t)t->nnodes - 1;
		prev = NULL;
		for (uint32_t j = i; j < s.hi; j++) {
			const uint8_t *l = label_at(sorted[j].key, s.depth);
			if (!prev || label_cmp(prev, l) != 0) {
				c++;
				memcpy(t->labels + t->labels_len, l, 1 + (size_t)*l);
				t->nodes[c] = (struct node){.label = (uint32_t)t->labels_len,
							    .value = NO_VALUE, .table = 0};
				t->labels_len += 1 + (size_t)*l;
				queue[qtail++] = (struct span){.node = c, .lo = j, .hi = j + 1,
							       .depth = s.depth + 1};
			} else {
				queue[qtail - 1].hi = j + 1;
			}
			prev = l;
		}
		t->nnodes += nchild;
	}

	/* Give back what the upper bounds over-reserved. */
	struct node *nodes = realloc(t->nodes, t->nnodes * sizeof(*t->nodes));
	if (nodes)
		t->nodes = nodes;
	uint8_t *labels = realloc(t->labels, t->labels_len ? t->labels_len : 1);
	if (labels)
		t->labels = labels;
	if (build_tables(t) < 0)
		goto fail;
	free(queue);
	free(sorted);
	return t;
fail:
	free(queue);
	free(sorted);
	trie_free(t);
	return NULL;
}

void trie_free(trie_t *t)
{
	if (!t)
		return;
	free(t->nodes);
	free(t->labels);
	free(t->tables);
	free(t);
}

/* The child of node labelled l, or NULL. */
static inline const struct node *find_child(const trie_t *t, const struct node *node,
					    const uint8_t *l)
{
	if (node->nchild >= WIDE) {
		const uint32_t *table = t->tables + node->table;
		size_t mask = table_size(node->nchild) - 1;
		for (size_t h = label_hash(l) & mask; table[h] != NO_CHILD; h = (h + 1) & mask) {
			const struct node *c = &t->nodes[table[h]];
			if (label_cmp(t->labels + c->label, l) == 0)
				return c;
		}
		return NULL;
	}
	/* Few children: bisect the sorted run. */
	uint32_t lo = node->child, hi = node->child + node->nchild;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = label_cmp(t->labels + t->nodes[mid].label, l);
		if (c == 0)
			return &t->nodes[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int trie_lookup(const trie_t *t, const struct name *q, uint32_t *value, unsigned *depth)
{
	const struct node *node = &t->nodes[0];
	const uint8_t *k = q->key;
	unsigned d = 0;
	int found = 0;

	for (;;) {
		if (node->value != NO_VALUE) {
			*value = node->value;
			*depth = d;
			found = 1;
		}
		if (*k == 0 || node->nchild == 0 || !(node = find_child(t, node, k)))
			break;
		k += 1 + *k;
		d++;
	}
	return found ? 0 : -ENOENT;
}

size_t trie_count(const trie_t *t)
{
	return t->count;
}

size_t trie_memory(const trie_t *t)
{
	return sizeof(*t) + t->nnodes * sizeof(struct node) + t->labels_len +
	       t->tables_len * sizeof(*t->tables);
}
