/* The built policy's layout, shared by the files that write it (policy_builder.c), digest it
 * (policy_digest.c) and read it (policy.c). It must never be included outside policy/ (nor by a
 * header), so policy_t stays opaque everywhere else. Header only: the struct and two inline
 * helpers, under the names they had inside policy.c (NONE, ACT_*, struct pool, rec_*), kept to
 * leave the moved code as it was. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy_stats.h"
#include "policy/trie.h"

/** No offset: a record without a reason, a rule without one in the builder. */
#define NONE UINT32_MAX
/** The actions octet of a record (and of a builder's rule). */
#define ACT_DENY 1u
#define ACT_ALLOW 2u

/** A string pool: octets appended one after another, referred to by offset. */
struct pool {
	char *bytes;
	size_t len, cap;
};

/** A built policy keeps its rules in one array of 4-octet words, a record per name in the order
 * the builder saw them (reason-only names included): a word with the reason's offset in the pool
 * (or NONE), then the octets [actions][keylen][lookup-format key], padded to a word. The trie's
 * values are record offsets, so the record a lookup lands on holds the key that checks the match
 * and the actions and reason that decide it: one cache line after the trie's slot. */
struct policy {
	trie_t *trie;
	uint32_t *recs;
	size_t recs_words;
	size_t count; /* Records. */
	struct pool pool; /* Reasons. */
	struct policy_stats stats;
	atomic_int refs; /* Holders: the store, a guard's baseline... (policy_ref). */
};

/** The octets of the record at word w: [actions][keylen][key]. */
static inline const uint8_t *rec_bytes(const struct policy *p, size_t w)
{
	return (const uint8_t *)(p->recs + w + 1);
}

/** Words a record with a key of keylen octets takes. */
static inline size_t rec_words(size_t keylen)
{
	return 1 + (2 + keylen + 3) / 4;
}

