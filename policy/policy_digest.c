/* A built policy's content digest: the records are sorted by a hash of
 * their key (radix sort; runs of equal hashes, which a hostile list can make long, by the key
 * itself) and fed to nettle's SHA-256 with every field's length, prefetching records ahead.
 * It never writes the policy, and the result must not depend on the order rules arrived in. */
#include "config.h"

#include "policy/policy_digest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include "policy/fnv.h"
#include "policy/mem.h"
#include "policy/policy.h"
#include "policy/policy_rec.h"

/* Order of records for the digest: by 32 bits of a hash of the key (only to spread them; ties,
 * which a hostile list can make, are ordered by the key itself), so the order is a function of
 * the content alone, whatever order the rules arrived in. An entry is the hash above the record's
 * word offset (below 2^32: policy_build checks it). */
struct order_ctx {
	const policy_t *p;
};

static int key_cmp(const struct order_ctx *c, uint64_t a, uint64_t b)
{
	const uint8_t *ka = rec_bytes(c->p, (uint32_t)a), *kb = rec_bytes(c->p, (uint32_t)b);
	size_t n = ka[1] < kb[1] ? ka[1] : kb[1];
	int r = memcmp(ka + 2, kb + 2, n);
	return r ? r : (int)ka[1] - (int)kb[1];
}

/* Insertion sort of o[0..n) by key (short runs of equal hashes only). */
static void sort_run(const struct order_ctx *c, uint64_t *o, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint64_t x = o[i];
		size_t j = i;
		for (; j > 0 && key_cmp(c, x, o[j - 1]) < 0; j--)
			o[j] = o[j - 1];
		o[j] = x;
	}
}

static _Thread_local const struct order_ctx *qsort_ctx; /* A long run is hostile input. */
static int order_qcmp(const void *a, const void *b)
{
	return key_cmp(qsort_ctx, *(const uint64_t *)a, *(const uint64_t *)b);
}

/* SHA-256 over the canonical content: the tag "embargo-policy 1", then per record (rule or
 * reason-only name) in the order above: actions, key length, the lookup-format key, and the
 * reason's length (two octets, 0xffff for none) and text. Every field has its length, so two
 * different contents never encode to the same bytes. @return 0 or -ENOMEM. */
int policy_digest_content(const struct policy *p, struct digest *d)
{
	size_t cap = p->count ? p->count : 1;
	uint64_t *o = mem_alloc(cap * sizeof(*o)), *tmp = mem_alloc(cap * sizeof(*tmp));
	size_t *counts = calloc(65536, sizeof(*counts));
	if (!o || !tmp || !counts) {
		free(o);
		free(tmp);
		free(counts);
		return -ENOMEM;
	}
	size_t n = 0;
	for (size_t w = 0; w < p->recs_words;) {
		const uint8_t *rb = rec_bytes(p, w);
		if (rb[0] || p->recs[w] != NONE) {
			uint64_t h = fnv_bytes(FNV_BASIS, rb + 2, rb[1]);
			o[n++] = (h ^ h >> 32) << 32 | (uint32_t)w;
		}
		w += rec_words(rb[1]);
	}
	/* LSD radix sort on the upper 32 bits, 16 a pass: linear in the rules. */
	for (int shift = 32; shift < 64; shift += 16) {
		memset(counts, 0, 65536 * sizeof(*counts));
		for (size_t i = 0; i < n; i++)
			counts[(o[i] >> shift) & 0xffff]++;
		size_t sum = 0;
		for (size_t k = 0; k < 65536; k++) {
			size_t c = counts[k];
			counts[k] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			tmp[counts[(o[i] >> shift) & 0xffff]++] = o[i];
		uint64_t *t = o;
		o = tmp;
		tmp = t;
	}
	struct order_ctx ctx = {p};
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && o[j] >> 32 == o[i] >> 32)
			j++;
		if (j - i > 16) {
			qsort_ctx = &ctx;
			qsort(o + i, j - i, sizeof(*o), order_qcmp);
		} else if (j - i > 1) {
			sort_run(&ctx, o + i, j - i);
		}
		i = j;
	}
	struct sha256_ctx c;
	sha256_init(&c);
	static const char tag[] = "embargo-policy 1";
	sha256_update(&c, sizeof(tag), (const uint8_t *)tag);
	/* The records are read out of order: fetch them well ahead, so the misses overlap. */
	enum { DIGEST_AHEAD = 16 };
	for (size_t i = 0; i < n && i < DIGEST_AHEAD; i++)
		__builtin_prefetch(p->recs + (uint32_t)o[i]);
	for (size_t i = 0; i < n; i++) {
		if (i + DIGEST_AHEAD < n) {
			__builtin_prefetch(p->recs + (uint32_t)o[i + DIGEST_AHEAD]);
			uint32_t ahead = p->recs[(uint32_t)o[i + DIGEST_AHEAD / 2]];
			if (ahead != NONE)
				__builtin_prefetch(p->pool.bytes + ahead);
		}
		uint32_t w = (uint32_t)o[i];
		const uint8_t *rb = rec_bytes(p, w);
		uint8_t head[2 + 255 + 2];
		memcpy(head, rb, 2 + rb[1]);
		size_t len = 2 + rb[1];
		uint32_t r = p->recs[w];
		const char *reason = r == NONE ? NULL : p->pool.bytes + r;
		size_t rl = reason ? strlen(reason) : 0xffff;
		head[len++] = (uint8_t)(rl >> 8);
		head[len++] = (uint8_t)rl;
		sha256_update(&c, len, head);
		if (reason)
			sha256_update(&c, rl, (const uint8_t *)reason);
	}
	sha256_digest(&c, DIGEST_LEN, d->b);
	free(o);
	free(tmp);
	free(counts);
	return 0;
}
