/* The policy builder: deny, allow and reason entries are deduplicated in an open-addressing map
 * over lookup-format keys, so that all entries for one name merge into one rule; policy_build()
 * writes the rules as the built policy's records (policy_rec.h), hands them to a trie and keeps
 * the reasons in one pool. It never changes a built policy (policy_builder_add_from only reads
 * one); lookups are policy.c's. List text is read by policy/list.c and snapshots by
 * policy/codec.c, both through policy.h. Exports policy_build() too, under its policy.h name;
 * a large policy's digest is computed on a thread of its own while its trie is built. */
#include "config.h"

#include "policy/policy.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "policy/digest.h"
#include "policy/mem.h"
#include "policy/policy_digest.h"
#include "policy/policy_rec.h"
#include "policy/trie.h"

struct rule {
	uint32_t key;    /* Lookup-format key in the pool; the name's text is made at build. */
	uint32_t reason; /* NUL-terminated reason in the pool, or NONE. */
	uint16_t keylen;
	uint16_t actions;
};

struct policy_builder {
	struct pool pool;
	struct rule *rules;
	size_t count, cap;
	uint64_t *map; /* tag << 32 | (rule index + 1), 0 = empty; size is a power of two. */
	size_t map_size;
	size_t invalid;
};

static const uint8_t *rec_key(const void *ctx, uint32_t w, size_t *len)
{
	const policy_t *p = ctx;
	if (!len)
		return (const uint8_t *)(p->recs + w); /* The whole record, for prefetching. */
	const uint8_t *b = rec_bytes(p, w);
	*len = b[1];
	return b + 2;
}

static int pool_put(struct pool *p, const void *bytes, size_t len, int nul, uint32_t *off)
{
	size_t need = p->len + len + (nul ? 1 : 0);
	if (need > UINT32_MAX)
		return -ENOMEM;
	if (need > p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 4096;
		while (cap < need)
			cap *= 2;
		char *b = mem_realloc(p->bytes, p->len, cap);
		if (!b)
			return -ENOMEM;
		p->bytes = b;
		p->cap = cap;
	}
	*off = (uint32_t)p->len;
	memcpy(p->bytes + p->len, bytes, len);
	p->len += len;
	if (nul)
		p->bytes[p->len++] = '\0';
	return 0;
}

policy_builder_t *policy_builder_new(void)
{
	policy_builder_t *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->map_size = 1024;
	b->map = calloc(b->map_size, sizeof(*b->map));
	if (!b->map) {
		free(b);
		return NULL;
	}
	return b;
}

void policy_builder_free(policy_builder_t *b)
{
	if (!b)
		return;
	free(b->pool.bytes);
	free(b->rules);
	free(b->map);
	free(b);
}

/* A 64-bit hash of a key, a word at a time (FNV's octet at a time was a tenth of a reload). */
static uint64_t hash_key(const uint8_t *p, size_t len)
{
	uint64_t h = 0x9E3779B97F4A7C15ULL ^ len;
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	uint64_t w = 0;
	for (size_t i = 0; i < len; i++)
		w |= (uint64_t)p[i] << (8 * i);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 29);
}

/* The map stores a 32-bit tag of each key's hash, and a slot's position comes from the tag
 * alone: probes compare tags and touch a rule only on a match, and growing needs no keys. */
static inline uint32_t map_tag(uint64_t h)
{
	return (uint32_t)(h >> 32);
}

static int map_resize(policy_builder_t *b, size_t size)
{
	uint64_t *map = mem_calloc(size, sizeof(*map));
	if (!map)
		return -ENOMEM;
	for (size_t i = 0; i < b->map_size; i++) {
		if (!b->map[i])
			continue;
		size_t h = (size_t)(b->map[i] >> 32) & (size - 1);
		while (map[h])
			h = (h + 1) & (size - 1);
		map[h] = b->map[i];
	}
	free(b->map);
	b->map = map;
	b->map_size = size;
	return 0;
}

int policy_builder_reserve(policy_builder_t *b, size_t names, size_t octets)
{
	size_t size = b->map_size;
	while (size < 2 * (b->count + names))
		size *= 2;
	if (size != b->map_size && map_resize(b, size) < 0)
		return -ENOMEM;
	if (b->count + names > b->cap) {
		struct rule *rules = mem_realloc(b->rules, b->count * sizeof(*rules),
						 (b->count + names) * sizeof(*rules));
		if (!rules)
			return -ENOMEM;
		b->rules = rules;
		b->cap = b->count + names;
	}
	if (b->pool.len + octets > b->pool.cap && b->pool.len + octets <= UINT32_MAX) {
		char *bytes = mem_realloc(b->pool.bytes, b->pool.len, b->pool.len + octets);
		if (!bytes)
			return -ENOMEM;
		b->pool.bytes = bytes;
		b->pool.cap = b->pool.len + octets;
	}
	return 0;
}

/* The rule for name n (whose key hashes to hash), created with no actions when absent. */
static struct rule *rule_get_hashed(policy_builder_t *b, const struct name *n, uint64_t hash)
{
	uint32_t tag = map_tag(hash);
	size_t mask = b->map_size - 1;
	size_t h = tag & mask;
	for (; b->map[h]; h = (h + 1) & mask) {
		if ((uint32_t)(b->map[h] >> 32) != tag)
			continue;
		struct rule *r = &b->rules[(uint32_t)b->map[h] - 1];
		if (r->keylen == n->keylen && memcmp(b->pool.bytes + r->key, n->key, n->keylen) == 0)
			return r;
	}
	if ((b->count + 1) * 2 > b->map_size) {
		if (map_resize(b, b->map_size * 2) < 0)
			return NULL;
		return rule_get_hashed(b, n, hash);
	}
	if (b->count == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		struct rule *rules =
			mem_realloc(b->rules, b->count * sizeof(*rules), cap * sizeof(*rules));
		if (!rules)
			return NULL;
		b->rules = rules;
		b->cap = cap;
	}
	struct rule r = {.reason = NONE, .keylen = n->keylen, .actions = 0};
	if (pool_put(&b->pool, n->key, n->keylen, 0, &r.key) < 0)
		return NULL;
	b->rules[b->count] = r;
	b->map[h] = (uint64_t)tag << 32 | (uint32_t)++b->count;
	return &b->rules[b->count - 1];
}

static struct rule *rule_get(policy_builder_t *b, const struct name *n)
{
	return rule_get_hashed(b, n, hash_key(n->key, n->keylen));
}

/* Bulk loads parse and hash this many names, prefetching their map slots, before probing any:
 * the probes' cache misses then overlap instead of queueing one by one. */
#define AHEAD 32

static inline uint64_t map_prefetch(const policy_builder_t *b, const struct name *n)
{
	uint64_t h = hash_key(n->key, n->keylen);
	__builtin_prefetch(&b->map[map_tag(h) & (b->map_size - 1)]);
	return h;
}

int policy_builder_add(policy_builder_t *b, enum policy_action action, const char *name,
		       size_t len)
{
	struct name n;
	if ((action != POLICY_DENY && action != POLICY_ALLOW) ||
	    name_from_text(&n, name, len) < 0) {
		b->invalid++;
		return -EINVAL;
	}
	struct rule *r = rule_get(b, &n);
	if (!r)
		return -ENOMEM;
	r->actions |= (uint16_t)(action == POLICY_DENY ? ACT_DENY : ACT_ALLOW);
	return 0;
}

/* Length of reason cut to POLICY_REASON_MAX octets without splitting a UTF-8 sequence. */
static size_t reason_cut(const char *reason, size_t len)
{
	if (len <= POLICY_REASON_MAX)
		return len;
	len = POLICY_REASON_MAX;
	while (len > 0 && ((unsigned char)reason[len] & 0xC0) == 0x80)
		len--;
	return len;
}

/* Give r the reason: cut to POLICY_REASON_MAX, control characters (which would go into text
 * answers and logs) made spaces. */
static int rule_set_reason(policy_builder_t *b, struct rule *r, const char *reason,
			   size_t reason_len)
{
	char clean[POLICY_REASON_MAX];
	size_t clen = reason_cut(reason, reason_len);
	for (size_t i = 0; i < clen; i++) {
		unsigned char c = (unsigned char)reason[i];
		clean[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	uint32_t off;
	if (pool_put(&b->pool, clean, clen, 1, &off) < 0)
		return -ENOMEM;
	r->reason = off;
	return 0;
}

int policy_builder_set_reason(policy_builder_t *b, const char *name, size_t len,
			      const char *reason, size_t reason_len)
{
	struct name n;
	if (name_from_text(&n, name, len) < 0) {
		b->invalid++;
		return -EINVAL;
	}
	struct rule *r = rule_get(b, &n);
	if (!r)
		return -ENOMEM;
	return rule_set_reason(b, r, reason, reason_len);
}

int policy_builder_put_many(policy_builder_t *b, const struct policy_entry *e, size_t count,
			    void (*on_invalid)(void *ctx, size_t i), void *ctx)
{
	struct name n[AHEAD];
	uint64_t h[AHEAD];
	for (size_t base = 0; base < count; base += AHEAD) {
		size_t run = count - base < AHEAD ? count - base : AHEAD;
		for (size_t i = 0; i < run; i++) {
			const struct policy_entry *x = &e[base + i];
			int ok = x->name && (x->action != POLICY_PASS || x->reason) &&
				 (x->action == POLICY_PASS || x->action == POLICY_DENY ||
				  x->action == POLICY_ALLOW) &&
				 name_from_text(&n[i], x->name, x->len) == 0;
			if (!ok) {
				n[i].keylen = 0; /* Skipped below. */
				b->invalid++;
				if (on_invalid)
					on_invalid(ctx, base + i);
				continue;
			}
			h[i] = map_prefetch(b, &n[i]);
		}
		for (size_t i = 0; i < run; i++) {
			if (!n[i].keylen)
				continue;
			const struct policy_entry *x = &e[base + i];
			struct rule *r = rule_get_hashed(b, &n[i], h[i]);
			if (!r)
				return -ENOMEM;
			if (x->action != POLICY_PASS)
				r->actions |= (uint16_t)(x->action == POLICY_DENY ? ACT_DENY : ACT_ALLOW);
			if (x->reason && rule_set_reason(b, r, x->reason, x->reason_len) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

int policy_builder_add_from(policy_builder_t *b, const policy_t *p, unsigned parts)
{
	/* p's records hold every name its builder saw, reason-only ones included. */
	struct name n[AHEAD];
	uint64_t h[AHEAD];
	unsigned actions[AHEAD];
	uint32_t reason[AHEAD];
	for (size_t w = 0; w < p->recs_words;) {
		size_t run = 0;
		while (run < AHEAD && w < p->recs_words) {
			const uint8_t *rb = rec_bytes(p, w);
			uint32_t src_reason = p->recs[w];
			unsigned src_actions = rb[0];
			w += rec_words(rb[1]);
			unsigned a = 0;
			if ((parts & POLICY_PART_DENY) && (src_actions & ACT_DENY))
				a |= ACT_DENY;
			if ((parts & POLICY_PART_ALLOW) && (src_actions & ACT_ALLOW))
				a |= ACT_ALLOW;
			uint32_t why = (parts & POLICY_PART_REASON) ? src_reason : NONE;
			if (!a && why == NONE)
				continue;
			memcpy(n[run].key, rb + 2, rb[1]);
			n[run].keylen = rb[1];
			h[run] = map_prefetch(b, &n[run]);
			actions[run] = a;
			reason[run++] = why;
		}
		for (size_t i = 0; i < run; i++) {
			struct rule *r = rule_get_hashed(b, &n[i], h[i]);
			if (!r)
				return -ENOMEM;
			r->actions |= (uint16_t)actions[i];
			if (reason[i] != NONE) {
				const char *why = p->pool.bytes + reason[i];
				uint32_t off;
				if (pool_put(&b->pool, why, strlen(why), 1, &off) < 0)
					return -ENOMEM;
				r->reason = off; /* The pool moved, the rules did not. */
			}
		}
	}
	return 0;
}

int policy_builder_add_allows_in(policy_builder_t *b, const policy_t *p, const policy_t *other)
{
	size_t cursor = 0;
	struct policy_rule r;
	while (policy_rule_next(p, &cursor, &r)) {
		if (!(r.parts & POLICY_PART_ALLOW))
			continue;
		struct policy_verdict v;
		policy_lookup(other, &r.name, &v);
		if (v.action != POLICY_ALLOW || v.depth != r.name.nlabels)
			continue;
		char text[NAME_MAXTEXT + 2];
		int len = name_to_text(&r.name, text, sizeof(text));
		if (len >= 0 && policy_builder_add(b, POLICY_ALLOW, text, (size_t)len) == -ENOMEM)
			return -ENOMEM;
	}
	return 0;
}

void policy_builder_count_invalid(policy_builder_t *b, size_t n)
{
	b->invalid += n;
}

size_t policy_builder_invalid(const policy_builder_t *b)
{
	return b->invalid;
}

/* Policies of this many records or more have their digest computed on a thread of its own. */
#define DIGEST_THREAD_MIN 50000

struct digest_job {
	const policy_t *p;
	struct digest d;
	int rc;
};

static void *digest_run(void *arg)
{
	struct digest_job *j = arg;
	j->rc = policy_digest_content(j->p, &j->d);
	return NULL;
}

policy_t *policy_build(policy_builder_t *b, enum policy_source source)
{
	return policy_build_digested(b, source, NULL);
}

policy_t *policy_build_digested(policy_builder_t *b, enum policy_source source,
				const struct digest *known)
{
	policy_t *p = calloc(1, sizeof(*p));
	uint32_t *values = NULL;
	if (!p)
		goto fail;
	atomic_init(&p->refs, 1);
	size_t words = 0, nvalues = 0;
	for (size_t i = 0; i < b->count; i++) {
		words += rec_words(b->rules[i].keylen);
		nvalues += b->rules[i].actions != 0;
	}
	p->recs = mem_alloc((words ? words : 1) * sizeof(*p->recs));
	values = mem_alloc((nvalues ? nvalues : 1) * sizeof(*values));
	if (!p->recs || !values)
		goto fail;

	size_t w = 0, nv = 0;
	for (size_t i = 0; i < b->count; i++) {
		const struct rule *r = &b->rules[i];
		const uint8_t *key = (const uint8_t *)b->pool.bytes + r->key;
		const char *reason = r->reason == NONE ? NULL : b->pool.bytes + r->reason;
		size_t rw = rec_words(r->keylen);
		p->recs[w + rw - 1] = 0; /* Padding. */
		p->recs[w] = NONE;
		uint8_t *rb = (uint8_t *)(p->recs + w + 1);
		rb[0] = (uint8_t)r->actions;
		rb[1] = (uint8_t)r->keylen;
		memcpy(rb + 2, key, r->keylen);
		if (reason && pool_put(&p->pool, reason, strlen(reason), 1, &p->recs[w]) < 0)
			goto fail;
		if (r->actions) {
			values[nv++] = (uint32_t)w;
			if (r->actions & ACT_DENY)
				p->stats.deny++;
			if (r->actions & ACT_ALLOW)
				p->stats.allow++;
			if (reason)
				p->stats.reasons++;
		}
		w += rw;
	}
	p->recs_words = w;
	p->count = b->count;
	if (w > TRIE_VALUE_MAX)
		goto fail;
	char *bytes = realloc(p->pool.bytes, p->pool.len ? p->pool.len : 1);
	if (bytes) {
		p->pool.bytes = bytes;
		p->pool.cap = p->pool.len;
	}
	/* The records and reasons are final: the digest reads them beside the trie's build, on
	 * another core for a large policy (both only read them). */
	struct digest_job job = {p, {{0}}, 0};
	pthread_t t;
	int threaded = !known && b->count >= DIGEST_THREAD_MIN &&
		       pthread_create(&t, NULL, digest_run, &job) == 0;
	if (known)
		job.d = *known;
	else if (!threaded)
		digest_run(&job);
	p->trie = trie_build(values, nv, rec_key, p);
	if (threaded)
		pthread_join(t, NULL);
	if (!p->trie || job.rc < 0)
		goto fail;
	free(values);
	values = NULL;
	p->stats.invalid = b->invalid;
	p->stats.digest = job.d;
	p->stats.version = digest_u64(&p->stats.digest);
	p->stats.source = source;
	policy_builder_free(b);
	return p;
fail:
	free(values);
	policy_free(p);
	policy_builder_free(b);
	return NULL;
}
