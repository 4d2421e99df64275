/* What a built policy says about itself (policy_stats()): its counts, content digest, source and
 * load time, under policy.h's names. Plain types, apart from policy.h so that the built policy's
 * record layout (policy_rec.h) can embed them without including the whole API: this header must
 * never include policy.h or declare functions. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/digest.h"

/** Where a policy came from (policy_source_name() gives it as text). */
enum policy_source {
	POLICY_SOURCE_BUNDLED = 0, /**< The list compiled into the binary. */
	POLICY_SOURCE_REDIS = 1,
	POLICY_SOURCE_SNAPSHOT = 2,
	POLICY_SOURCE_HELD = 3,    /**< The policy in force plus what a held Redis load adds. */
};

/** Counts and identity of a built policy. */
struct policy_stats {
	size_t deny;      /**< Names with a deny rule. */
	size_t allow;     /**< Names with an allow rule. */
	size_t reasons;   /**< Rules that carry a reason. */
	size_t invalid;   /**< Entries skipped as invalid while building. */
	struct digest digest; /**< SHA-256 of the content: equal iff the content is. */
	uint64_t version; /**< digest's first 8 octets: for display only, never to compare. */
	enum policy_source source;
	int64_t loaded_at; /**< Unix time it was loaded, as stamped by policy_set_loaded_at(). */
};
