/* An open-addressing table keyed by a hash of the rule's lookup-format key (the prefix of the
 * denied name's key that the rule covers). Rules come from the policy, not from clients, so the
 * plain FNV hash is enough; the slot's tag is stored last (release), after its name. A denial is
 * counted without a lock or an allocation, so the worker never waits for a reader. */
#include "config.h"

#include "resolver/observe/rule_hits.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "policy/fnv.h"

struct slot {
	_Atomic uint64_t tag; /* Hash | 1 once the name is written; 0: free. */
	_Atomic uint64_t count;
	char rule[NAME_MAXTEXT + 2];
};

struct rule_hits {
	_Atomic uint64_t other;
	struct slot slots[RULE_HITS_SLOTS];
};

rule_hits_t *rule_hits_new(void)
{
	return calloc(1, sizeof(struct rule_hits));
}

void rule_hits_free(rule_hits_t *h)
{
	free(h);
}

void rule_hits_add(rule_hits_t *h, const struct name *name, unsigned depth)
{
	/* The rule's key is the first depth labels of name's key (root first). */
	size_t len = 0;
	for (unsigned i = 0; i < depth && len < name->keylen && name->key[len]; i++)
		len += 1u + name->key[len];
	uint64_t tag = fnv_bytes(FNV_BASIS, name->key, len) | 1u;
	for (unsigned probe = 0; probe < 16; probe++) {
		struct slot *s = &h->slots[(tag + probe) & (RULE_HITS_SLOTS - 1)];
		uint64_t t = atomic_load_explicit(&s->tag, memory_order_relaxed);
		if (t == tag) {
			atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
			return;
		}
		if (t == 0) {
			if (name_suffix_to_text(name, depth, s->rule, sizeof(s->rule)) < 0)
				break;
			atomic_store_explicit(&s->count, 1, memory_order_relaxed);
			atomic_store_explicit(&s->tag, tag, memory_order_release);
			return;
		}
	}
	atomic_fetch_add_explicit(&h->other, 1, memory_order_relaxed);
}

void rule_hits_merge(const rule_hits_t *h, struct rule_hit *out, size_t *n, size_t max,
		     uint64_t *other)
{
	*other += atomic_load_explicit(&h->other, memory_order_relaxed);
	for (unsigned i = 0; i < RULE_HITS_SLOTS; i++) {
		const struct slot *s = &h->slots[i];
		uint64_t tag = atomic_load_explicit(&s->tag, memory_order_acquire);
		if (tag == 0)
			continue;
		uint64_t c = atomic_load_explicit(&s->count, memory_order_relaxed);
		size_t j = 0;
		while (j < *n && out[j].tag != tag)
			j++;
		if (j < *n) {
			out[j].count += c;
		} else if (*n < max) {
			memcpy(out[j].rule, s->rule, sizeof(out[j].rule));
			out[j].tag = tag;
			out[j].count = c;
			(*n)++;
		} else {
			*other += c;
		}
	}
}
