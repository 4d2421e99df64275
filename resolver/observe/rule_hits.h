/* Denials counted per rule, for the metrics (and, later, hit counters in Redis): one table per
 * worker, written only by that worker and read by any thread. A rule takes a slot the first time
 * it denies (its name written once, then published); a full table counts the rest as "other",
 * so memory and label cardinality stay bounded. Counting never locks or allocates. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/name.h"

typedef struct rule_hits rule_hits_t;

/** Slots per worker: distinct rules counted one by one. */
#define RULE_HITS_SLOTS 1024

/** A table. @return it (owned: rule_hits_free), or NULL when out of memory. */
rule_hits_t *rule_hits_new(void);
/** Free a table. NULL is a no-op. */
void rule_hits_free(rule_hits_t *h);

/** Count a denial by the rule made of the topmost depth labels of name. Owner thread only. */
void rule_hits_add(rule_hits_t *h, const struct name *name, unsigned depth);

/** One rule's count. */
struct rule_hit {
	uint64_t tag; /* The same rule has the same tag in every table. */
	uint64_t count;
	char rule[NAME_MAXTEXT + 2];
};

/** Add h's counts into out[0..*n) (merging rules already there; at most max), the rest into
 *  *other. Any thread; counts may lag by a few denials. */
void rule_hits_merge(const rule_hits_t *h, struct rule_hit *out, size_t *n, size_t max,
		     uint64_t *other);
