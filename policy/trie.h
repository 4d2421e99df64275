/* An immutable label trie over names in lookup format (policy/name.h), laid out for the memory
 * system rather than for pointer chasing. A node is a name (a path of labels from the root); it
 * is identified by a 64-bit hash chained label by label down its path, and every node lives in
 * one open-addressing table of 8-octet slots (a 32-bit tag of the hash and the node's payload).
 * A lookup hashes all the query's ancestors first, prefetches their slots at once, then walks
 * down from the root, so the cache misses of the levels overlap instead of queueing.
 *
 * The trie keeps no names of its own: the caller owns the records the values stand for and
 * hands the trie a function giving a value's key. Tags are not names, so the deepest candidate
 * a walk finds is checked against that key before it is returned; the build guarantees that a
 * name in the trie is always found, and the check removes any false candidate, so lookups are
 * exact. A built trie is never modified, so any number of threads may read it without locks. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/name.h"

typedef struct trie trie_t;

/** Largest value a trie holds. */
#define TRIE_VALUE_MAX (UINT32_C(0x7FFFFFFF) - 1)

/** The lookup-format key of the name a value was added with (ending in its 0 octet), and its
 *  length with the terminator in *len. It must stay valid and unchanged while the trie is used.
 *  With len NULL it must read nothing and return the start of what a call with len reads and a
 *  caller then reads of the value (up to 64 octets), for trie_lookup_many() to prefetch. */
typedef const uint8_t *(*trie_key_fn)(const void *ctx, uint32_t value, size_t *len);

/** Build a trie of values[0..count), each standing for the name key_of(ctx, value) gives;
 *  when two values have the same name the later one is kept. key_of and ctx are kept for
 *  lookups. @return the trie (owned: trie_free), NULL when out of memory or a value is over
 *  TRIE_VALUE_MAX. */
trie_t *trie_build(const uint32_t *values, size_t count, trie_key_fn key_of, const void *ctx);

/** trie_build() with tags cut to tag_bits (1..32), for tests that need tags to collide. */
trie_t *trie_build_tagged(const uint32_t *values, size_t count, trie_key_fn key_of,
			  const void *ctx, unsigned tag_bits);

/** Free a trie. NULL is a no-op. */
void trie_free(trie_t *t);

/** Find the deepest name in t that is q or an ancestor of q on label boundaries.
 *  @param depth  receives how many labels of q (from the root) the match covers.
 *  @return 0 with *value and *depth set, or -ENOENT when nothing matches. */
int trie_lookup(const trie_t *t, const struct name *q, uint32_t *value, unsigned *depth);

/** Lookups trie_lookup_many() overlaps. */
#define TRIE_BATCH 16

/** One result of trie_lookup_many(). */
struct trie_match {
	int found;	/**< 1 with value and depth set, 0 when nothing matches. */
	uint32_t value;
	unsigned depth;
};

/** trie_lookup() of each of qs[0..n) into out[0..n), in batches of TRIE_BATCH whose memory
 *  accesses overlap: each batch waits for memory about twice rather than twice per name. */
void trie_lookup_many(const trie_t *t, const struct name *const *qs, size_t n,
		      struct trie_match *out);

/** Number of names stored. */
size_t trie_count(const trie_t *t);
/** Seeds the build gave up on (a tag would have shadowed another) before the one it kept:
 *  how tests see that short tags made it start over. */
unsigned trie_reseeds(const trie_t *t);
/** Bytes of heap the trie holds. */
size_t trie_memory(const trie_t *t);
