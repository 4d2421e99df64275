/* The held-load rule: a policy read from Redis that would lift more deny rules at once than the
 * operator allows (--max-shrink) is held, not enforced, because Redis losing its data looks just
 * like an operator deleting the list. Pure policy logic: no Redis, no clock, no I/O; the Redis
 * synchroniser feeds it the policy in force, the candidate and the consent read from Redis. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/name.h"
#include "policy/policy.h"

/** How many deny rules one load may lift: at most `percent` of those in force (rounded up, at
 *  least one) and at most `count`. */
struct guard_limits {
	unsigned percent; /**< 0-100. */
	size_t count;     /**< 0: every removal is held. */
	int off;          /**< 1: never hold (--max-shrink off). */
};

/** Defaults: 10% and 1000. */
#define GUARD_PERCENT 10
#define GUARD_COUNT 1000

/** Names shown per list in a diff. */
#define GUARD_NAMES 5

/** Rules one kind of change touches: how many, and the first few names. */
struct guard_names {
	size_t count;
	char names[GUARD_NAMES][NAME_MAXTEXT + 2];
};

/** What a candidate policy changes against the policy in force. */
struct guard_diff {
	struct guard_names deny_added, deny_removed, allow_added, allow_removed, reason_changed;
};

/** Compare `to` with `from`, rule by rule (off the query path: a million rules take about a
 *  quarter of a second). */
void guard_diff(const policy_t *from, const policy_t *to, struct guard_diff *d);

/** What Redis said besides the candidate's rules. */
struct guard_consent {
	int present;      /**< PREFIX:accept exists. */
	uint64_t version; /**< The version it consents to. */
};

enum guard_verdict {
	GUARD_PUBLISH = 0,      /**< Within the limit. */
	GUARD_CONSENTED = 1,    /**< Over the limit, but the operator consented to this version. */
	GUARD_HOLD_SHRINK = 2,  /**< Lifts too many deny rules at once. */
	GUARD_HOLD_MISSING = 3, /**< The deny key is missing while other policy keys exist. */
};

/** Deny rules a load may lift from a policy with `deny` of them. */
size_t guard_allowed(const struct guard_limits *l, size_t deny);

/** Decide whether `candidate` (its version and its diff against the policy in force, whose
 *  source and deny count are given) may replace it. Only a consent to exactly the candidate's
 *  version releases a held candidate, whatever the policy in force came from: a consent left
 *  over from before a partial loss (the deny key evicted) must not release the loss.
 *  deny_missing: the candidate's deny key was absent from Redis while another policy key was
 *  present. */
enum guard_verdict guard_check(const struct guard_limits *l, enum policy_source in_force,
			       size_t in_force_deny, const struct guard_diff *d, uint64_t version,
			       int deny_missing, const struct guard_consent *c);

/** Parse --max-shrink: "off", "P%", "N" or "P%,N" (either order). @return 0 or -EINVAL. */
int guard_parse_limits(const char *text, struct guard_limits *l);
