/* The built policy: holds (policy_ref/policy_free), lookups of one name or a batch, and the walks
 * over its records (policy_rule_next, policy_each_missing). A built policy is immutable and read
 * by many threads without locks; only its hold count changes. This file never builds or changes
 * one: policy_builder.c does, into the layout of policy_rec.h. */
#include "config.h"

#include "policy/policy.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_rec.h"
#include "policy/trie.h"

policy_t *policy_ref(const policy_t *p)
{
	policy_t *q = (policy_t *)p; /* Only the count changes: the content stays immutable. */
	atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
	return q;
}

void policy_free(policy_t *p)
{
	if (!p)
		return;
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
		return; /* Another holder keeps it. */
	trie_free(p->trie);
	free(p->recs);
	free(p->pool.bytes);
	free(p);
}

static void verdict_of(const policy_t *p, uint32_t w, unsigned depth, struct policy_verdict *v)
{
	uint32_t reason = p->recs[w];
	v->action = (rec_bytes(p, w)[0] & ACT_ALLOW) ? POLICY_ALLOW : POLICY_DENY;
	v->depth = depth;
	v->reason = reason == NONE ? NULL : p->pool.bytes + reason;
}

void policy_lookup(const policy_t *p, const struct name *q, struct policy_verdict *v)
{
	uint32_t w;
	unsigned depth;
	if (trie_lookup(p->trie, q, &w, &depth) < 0)
		*v = (struct policy_verdict){.action = POLICY_PASS};
	else
		verdict_of(p, w, depth, v);
}

void policy_lookup_many(const policy_t *p, const struct name *const *qs, size_t n,
			struct policy_verdict *v)
{
	struct trie_match m[TRIE_BATCH];
	for (size_t base = 0; base < n; base += TRIE_BATCH) {
		size_t k = n - base < TRIE_BATCH ? n - base : TRIE_BATCH;
		trie_lookup_many(p->trie, qs + base, k, m);
		for (size_t i = 0; i < k; i++) {
			if (m[i].found)
				verdict_of(p, m[i].value, m[i].depth, &v[base + i]);
			else
				v[base + i] = (struct policy_verdict){.action = POLICY_PASS};
		}
	}
}

/* The name of the record at word w, with its label count. */
static void rec_name(const policy_t *p, size_t w, struct name *n)
{
	const uint8_t *rb = rec_bytes(p, w);
	memcpy(n->key, rb + 2, rb[1]);
	n->keylen = rb[1];
	unsigned labels = 0;
	for (size_t i = 0; i < n->keylen && n->key[i]; i += 1 + n->key[i])
		labels++;
	n->nlabels = (uint8_t)labels;
}

static unsigned parts_of(unsigned actions)
{
	return ((actions & ACT_DENY) ? POLICY_PART_DENY : 0) |
	       ((actions & ACT_ALLOW) ? POLICY_PART_ALLOW : 0);
}

int policy_rule_next(const policy_t *p, size_t *cursor, struct policy_rule *r)
{
	size_t w = *cursor;
	if (w >= p->recs_words)
		return 0;
	const uint8_t *rb = rec_bytes(p, w);
	rec_name(p, w, &r->name);
	r->parts = parts_of(rb[0]);
	r->reason = p->recs[w] == NONE ? NULL : p->pool.bytes + p->recs[w];
	*cursor = w + rec_words(rb[1]);
	return 1;
}

/* Compare one batch of p's rules (record words w[0..n), names q) with other. */
static void missing_batch(const policy_t *p, const policy_t *other, unsigned parts,
			  const size_t *w, const struct name *const *q, size_t n,
			  policy_missing_cb cb, void *ctx)
{
	struct trie_match m[TRIE_BATCH];
	trie_lookup_many(other->trie, q, n, m);
	for (size_t i = 0; i < n; i++) {
		int exact = m[i].found && m[i].depth == q[i]->nlabels;
		unsigned mine = parts_of(rec_bytes(p, w[i])[0]);
		unsigned theirs = exact ? parts_of(rec_bytes(other, m[i].value)[0]) : 0;
		static const enum policy_part each[] = {POLICY_PART_DENY, POLICY_PART_ALLOW};
		for (int k = 0; k < 2; k++)
			if ((parts & each[k]) && (mine & each[k]) && !(theirs & each[k]))
				cb(ctx, q[i], each[k]);
		if ((parts & POLICY_PART_REASON) && exact) {
			uint32_t a = p->recs[w[i]], b = other->recs[m[i].value];
			const char *ra = a == NONE ? "" : p->pool.bytes + a;
			const char *rb = b == NONE ? "" : other->pool.bytes + b;
			if (strcmp(ra, rb) != 0)
				cb(ctx, q[i], POLICY_PART_REASON);
		}
	}
}

void policy_each_missing(const policy_t *p, const policy_t *other, unsigned parts,
			 policy_missing_cb cb, void *ctx)
{
	struct name names[TRIE_BATCH];
	const struct name *q[TRIE_BATCH];
	size_t ws[TRIE_BATCH], n = 0;
	for (size_t w = 0; w < p->recs_words;) {
		const uint8_t *rb = rec_bytes(p, w);
		if (rb[0]) {
			rec_name(p, w, &names[n]);
			q[n] = &names[n];
			ws[n++] = w;
		}
		w += rec_words(rb[1]);
		if (n == TRIE_BATCH) {
			missing_batch(p, other, parts, ws, q, n, cb, ctx);
			n = 0;
		}
	}
	if (n)
		missing_batch(p, other, parts, ws, q, n, cb, ctx);
}

const struct policy_stats *policy_stats(const policy_t *p)
{
	return &p->stats;
}

size_t policy_memory(const policy_t *p)
{
	return sizeof(*p) + trie_memory(p->trie) + p->recs_words * sizeof(*p->recs) + p->pool.cap;
}

const char *policy_source_name(enum policy_source source)
{
	switch (source) {
	case POLICY_SOURCE_BUNDLED:
		return "bundled list";
	case POLICY_SOURCE_REDIS:
		return "redis";
	case POLICY_SOURCE_HELD:
		return "policy in force plus a held load's additions";
	case POLICY_SOURCE_SNAPSHOT:
		return "snapshot";
	}
	return "unknown";
}

void policy_set_loaded_at(policy_t *p, int64_t unix_time)
{
	p->stats.loaded_at = unix_time;
}
