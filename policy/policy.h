/* The filtering policy: deny and allow rules with reasons, compiled into an immutable snapshot
 * (a trie plus a rule table). A snapshot is built off the query path by one thread and then only
 * read, so workers share it without locks; policy/store.h publishes and retires snapshots.
 * The builder is policy_builder.c, the lookups and walks policy.c. A built policy must never
 * change after policy_build() (only its hold count does), and nothing here does I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/digest.h"
#include "policy/name.h"
#include "policy/policy_stats.h"

typedef struct policy policy_t;
typedef struct policy_builder policy_builder_t;

enum policy_action {
	POLICY_PASS = 0,  /**< No rule matched. */
	POLICY_DENY = 1,
	POLICY_ALLOW = 2,
};

/** Longest reason kept; longer ones are cut on a UTF-8 boundary. */
#define POLICY_REASON_MAX 400

/** The decision for one name. Strings are borrowed from the policy and live as long as it. */
struct policy_verdict {
	enum policy_action action;
	unsigned depth;     /**< Labels of the query name covered by the deciding rule: the rule
			     *   is the name's suffix of that many labels (name_suffix_to_text). */
	const char *reason; /**< Its reason, NULL when it has none. */
};

/** A new builder (owned: policy_builder_free or policy_build). NULL when out of memory. */
policy_builder_t *policy_builder_new(void);
/** Free a builder. NULL is a no-op. */
void policy_builder_free(policy_builder_t *b);

/** Make room for about `names` more names and `octets` more octets of keys and reasons, so a
 *  large load neither rehashes nor copies as it grows. A hint only. @return 0 or -ENOMEM. */
int policy_builder_reserve(policy_builder_t *b, size_t names, size_t octets);

/** Add a deny or allow rule for name[0..len) (text). Invalid names are counted and skipped.
 *  @return 0, -EINVAL (skipped) or -ENOMEM. */
int policy_builder_add(policy_builder_t *b, enum policy_action action, const char *name,
		       size_t len);

/** Attach a reason to a name's rule (the rule may be added before or after). */
int policy_builder_set_reason(policy_builder_t *b, const char *name, size_t len,
			      const char *reason, size_t reason_len);

/** One entry for policy_builder_put_many(). */
struct policy_entry {
	const char *name; /**< Text, not NUL-terminated; NULL counts as invalid. */
	size_t len;
	enum policy_action action; /**< POLICY_PASS: a reason only. */
	const char *reason;        /**< NULL: none. */
	size_t reason_len;
};

/** policy_builder_add() and policy_builder_set_reason() for e[0..count), the same as one by one
 *  but faster on large batches (names are hashed and their map slots fetched ahead).
 *  on_invalid (may be NULL) gets the index of each entry skipped as invalid.
 *  @return 0 or -ENOMEM. */
int policy_builder_put_many(policy_builder_t *b, const struct policy_entry *e, size_t count,
			    void (*on_invalid)(void *ctx, size_t i), void *ctx);

/** Parts of a policy, for policy_builder_add_from(). */
enum policy_part {
	POLICY_PART_DENY = 1,
	POLICY_PART_ALLOW = 2,
	POLICY_PART_REASON = 4,
};

/** Add the given parts (a mask of enum policy_part) of p's rules to b, as if they had been
 *  added one by one: a reload that re-reads one Redis key carries the others over this way.
 *  Reasons are carried for names without rules too. @return 0 or -ENOMEM. */
int policy_builder_add_from(policy_builder_t *b, const policy_t *p, unsigned parts);

/** Add the allow rules of p that other has too (on exactly the same name) to b.
 *  @return 0 or -ENOMEM. */
int policy_builder_add_allows_in(policy_builder_t *b, const policy_t *p, const policy_t *other);

/** Count n more invalid entries (skipped elsewhere, such as in carried-over parts). */
void policy_builder_count_invalid(policy_builder_t *b, size_t n);

/** Entries skipped so far as invalid. */
size_t policy_builder_invalid(const policy_builder_t *b);

/** Compile the rules. Consumes b, which is freed whatever the result.
 *  @return the policy (owned: policy_free), NULL when out of memory. */
policy_t *policy_build(policy_builder_t *b, enum policy_source source);

/** policy_build() for content whose digest is known already (known, not NULL), as a snapshot
 *  file carries it under a checksum of the whole file that was checked: the digest is taken,
 *  not computed again. Never for content from elsewhere. */
policy_t *policy_build_digested(policy_builder_t *b, enum policy_source source,
				const struct digest *known);

/** Another hold on p, which then lives until as many policy_free() calls as holds.
 *  @return p (owned by the caller too). Any thread; p itself stays immutable. */
policy_t *policy_ref(const policy_t *p);

/** Drop a hold on a policy, freeing it with the last. NULL is a no-op. */
void policy_free(policy_t *p);

/** Decide q: the most specific rule on q or its ancestors wins; allow wins a tie with deny. */
void policy_lookup(const policy_t *p, const struct name *q, struct policy_verdict *v);

/** policy_lookup() of each of qs[0..n) into v[0..n), with the memory accesses of up to
 *  TRIE_BATCH names overlapping: what a worker does with a batch of received queries. */
void policy_lookup_many(const policy_t *p, const struct name *const *qs, size_t n,
			struct policy_verdict *v);

/** Counts and version of p (borrowed, lives as long as p). */
const struct policy_stats *policy_stats(const policy_t *p);

/** Record when p was loaded (for logs and status queries); call before publishing p. */
void policy_set_loaded_at(policy_t *p, int64_t unix_time);

/** Bytes of heap p holds. */
size_t policy_memory(const policy_t *p);

/** One rule of a policy, as policy_rule_next() gives it. */
struct policy_rule {
	struct name name;   /**< The rule's name (nlabels set). */
	unsigned parts;     /**< POLICY_PART_DENY and/or POLICY_PART_ALLOW; 0: a reason only. */
	const char *reason; /**< Borrowed from the policy; NULL when none. */
};

/** The next rule of p in the order they were built; *cursor starts at 0.
 *  @return 1 with *r filled, 0 after the last. */
int policy_rule_next(const policy_t *p, size_t *cursor, struct policy_rule *r);

/** Called by policy_each_missing() for each rule missing from the other policy. */
typedef void (*policy_missing_cb)(void *ctx, const struct name *n, enum policy_part part);

/** For each rule of p with a part in `parts` (POLICY_PART_DENY, _ALLOW) that `other` lacks on
 *  exactly the same name, call cb once per part missing; with POLICY_PART_REASON also for each
 *  rule of both whose reason differs (reasons of names without rules are not compared).
 *  Lookups into `other` are batched, so a million rules take a fraction of a second. */
void policy_each_missing(const policy_t *p, const policy_t *other, unsigned parts,
			 policy_missing_cb cb, void *ctx);

/** Name of a source, for logs. */
const char *policy_source_name(enum policy_source source);
