/* An immutable label trie over names in lookup format (policy/name.h). A builder collects
 * (name, value) pairs off the query path; trie_build() sorts them and lays the trie out
 * breadth-first in one node array, so each node's children are contiguous and sorted and a lookup
 * is one binary search per label with no allocation. A built trie is never modified, so any
 * number of threads may read it without locks. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/name.h"

typedef struct trie trie_t;
typedef struct trie_builder trie_builder_t;

/** A new, empty builder (owned: trie_builder_free). NULL when out of memory. */
trie_builder_t *trie_builder_new(void);
/** Free a builder. NULL is a no-op. */
void trie_builder_free(trie_builder_t *b);
/** Add name with value. A name added twice keeps the last value. @return 0 or -ENOMEM. */
int trie_builder_add(trie_builder_t *b, const struct name *n, uint32_t value);

/** Build the trie from everything added (the builder stays valid and unchanged).
 *  @return the trie (owned: trie_free), NULL when out of memory. */
trie_t *trie_build(const trie_builder_t *b);
/** Free a trie. NULL is a no-op. */
void trie_free(trie_t *t);

/** Find the deepest name in t that is q or an ancestor of q on label boundaries.
 *  @param depth  receives how many labels of q (from the root) the match covers.
 *  @return 0 with *value and *depth set, or -ENOENT when nothing matches. */
int trie_lookup(const trie_t *t, const struct name *q, uint32_t *value, unsigned *depth);

/** Number of names stored. */
size_t trie_count(const trie_t *t);
/** Bytes of heap the trie holds. */
size_t trie_memory(const trie_t *t);
