/* The digest of a built policy's content, the identity every "unchanged?", consent and snapshot
 * check compares: SHA-256 over the records in an order that depends on the content alone, not on
 * the order the rules arrived in. It reads a policy being built (policy_build) and never changes
 * it; the SHA-256 text forms and comparisons are policy/digest.h's. */
#pragma once

#include "policy/digest.h"

struct policy;

/** The content digest of p (its records and reasons) into *d. @return 0 or -ENOMEM. */
int policy_digest_content(const struct policy *p, struct digest *d);
