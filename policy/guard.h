/* The held-load rule: a policy read from Redis that would lift more denied names than the
 * operator allows (--max-shrink) is held, not enforced, because Redis losing its data looks just
 * like an operator deleting the list. Lifts are counted against a consented baseline,
 * cumulatively (many small removals add up), with the smaller of the baseline's and the
 * candidate's sizes as the base (inflating the list first gains nothing), and an allow rule
 * lifts what it shadows. Only a consent bound to the exact transition, unused and unexpired
 * (signed, with a consent key), releases more. Pure policy logic: it never talks to Redis,
 * reads the clock or does I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "policy/consent.h"
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

/** ", a.example, b.example and 3 more)" style text of n for a log line, into buf. */
void guard_names_text(const struct guard_names *n, char *buf, size_t cap);

/** "deny +1 (a.example) -2 (b.example, c.example), allow +0 -0, reasons changed 0", into buf. */
void guard_diff_text(const struct guard_diff *d, char *buf, size_t cap);

/** Compare `to` with `from`, rule by rule (off the query path: a million rules take about a
 *  quarter of a second). */
void guard_diff(const policy_t *from, const policy_t *to, struct guard_diff *d);

enum guard_verdict {
	GUARD_PUBLISH = 0,      /**< Within the budget. */
	GUARD_CONSENTED = 1,    /**< Over the budget, released by a valid consent. */
	GUARD_HOLD_SHRINK = 2,  /**< Lifts more than the budget. */
	GUARD_HOLD_MISSING = 3, /**< The deny key is missing while other policy keys exist. */
};

/** Deny rules a load may lift from a policy with `deny` of them. */
size_t guard_allowed(const struct guard_limits *l, size_t deny);

/** The guard's state: the consented baseline (the last consented policy, or the one a fresh
 *  start enforced), the protected set (every name the baseline or any policy enforced since
 *  denied), whether a rollback of Redis was seen, the candidate held, and the consents used.
 *  Changed only by the thread that publishes; read by a build on the thread pool meanwhile. */
typedef struct guard guard_t;

/** A guard whose baseline and protected set are start (a hold on it is taken), at time now.
 *  @return owned (guard_free), NULL when out of memory. */
guard_t *guard_new(const policy_t *start, int64_t now);

/** Free g and drop its holds. NULL is a no-op. */
void guard_free(guard_t *g);

/** Names the candidate lifts against the protected set: each name the protected set denies
 *  (at its deny rules) that cand does not, and each allow rule of cand that the baseline did not
 *  have and that makes a protected name pass. in_force and d (cand's diff against it) allow a
 *  shortcut: when the protected set is the policy in force and cand removes no deny rule and adds
 *  no allow rule, nothing is lifted. Off the loop: a million rules take a fraction of a second. */
void guard_lifts(const guard_t *g, const policy_t *cand, const policy_t *in_force,
		 const struct guard_diff *d, struct guard_names *lifted);

/** The protected set after p is enforced too: a deny-only policy of every name the protected
 *  set or p denies. @return owned, NULL when out of memory. */
policy_t *guard_union(const guard_t *g, const policy_t *p);

/** What guard_decide() concluded besides the verdict. */
struct guard_decision {
	size_t base;    /**< min(the budget's base, deny rules of the candidate). */
	size_t allowed; /**< Lifts allowed without consent (0 after a rollback). */
	size_t lifted;  /**< Lifts counted: the candidate's and those carried over a restart. */
	size_t cap;     /**< What a hold now would cap later loads at (guard_held). */
	enum consent_fault consent; /**< Why the consent did not release it (CONSENT_OK: it did). */
};

/** Decide whether cand (lifting `lifted` names, see guard_lifts) may replace in_force. A consent
 *  may start from the baseline, the policy in force, or the last policy published whole (what
 *  the snapshot holds while a held load's merge is in force).
 *  A candidate the guard holds stays held whatever the limits now are (a reload releases
 *  nothing); only a consent bound to exactly this transition releases it.
 *  @param consent_key NULL, or the Ed25519 public key every consent must be signed with. */
enum guard_verdict guard_decide(const guard_t *g, const struct guard_limits *l,
				const policy_t *cand, const policy_t *in_force, size_t lifted,
				int deny_missing, const struct consent *c,
				const uint8_t *consent_key, const char *prefix, int db, int64_t now,
				struct guard_decision *out);

/** p was published with verdict v (GUARD_HOLD_*: p is a held load's merge), lifting `lifted`
 *  names (guard_lifts). A consented p becomes the baseline (and the budget's base) and the
 *  consent's nonce is used; otherwise the protected set grows to cover p: next (owned, may be
 *  NULL) is guard_union(g, p), needed when p lifted anything.
 *  @return 0, or -ENOMEM when p lifted names and next is NULL: the protected set is then left
 *  as it was (the caller should not have published p; nothing leaves the set either way). */
int guard_published(guard_t *g, const policy_t *p, enum guard_verdict v,
		    const struct consent *c, size_t lifted, policy_t *next, int64_t now);

/** A candidate with digest d is held; cap is guard_decision.cap (the allowance of the limits in
 *  force over the budget's base). Until a consent or a quiet window, no later candidate may lift
 *  more than the smallest such cap, whatever limits a reload brings or content it has. */
void guard_held(guard_t *g, const struct digest *d, size_t cap, int64_t now);

/** Redis holds the policy in force again: a rollback mark is cleared and nothing is held (the
 *  cap stays). */
void guard_in_sync(guard_t *g);

/** Redis lost data (it restarted, its replication offset went back, its audit stream is older
 *  than seen): no lift is allowed without consent until the baseline moves. */
void guard_rollback(guard_t *g);

/** Whether a rollback was seen since the baseline last moved. */
bool guard_is_rolled_back(const guard_t *g);

/** --max-shrink-window: once `window` seconds have passed with no held load and since the
 *  baseline last moved, the baseline and protected set move to in_force. The budget's base never
 *  grows this way (only a consent raises it), and a rollback mark stays.
 *  @return whether it moved. */
bool guard_window(guard_t *g, const policy_t *in_force, int64_t window, int64_t now);

/** What a restart must not forget (resolver/sync/guard_state.c keeps it beside the snapshot). */
struct guard_state {
	size_t base;           /**< The budget's base: deny rules; grows only with a consent. */
	size_t spent;          /**< Lifts of the last publication since the baseline. */
	size_t carried;        /**< Lifts carried over a restart (counted until it moves). */
	int64_t based_at;      /**< When the baseline last moved. */
	int64_t quiet_since;   /**< When a load was last held (or based_at). */
	bool rollback;         /**< A rollback was seen. */
	bool has_held;         /**< A load is held: this one. */
	struct digest held;
	bool capped;           /**< Since a hold, later loads may lift at most cap. */
	size_t cap;
};

/** The state to save, and to restore at start (after guard_new with the snapshot: the base is
 *  capped at its deny rules; carried should be set to the saved spent). */
void guard_get_state(const guard_t *g, struct guard_state *st);
void guard_set_state(guard_t *g, const struct guard_state *st);

/** The baseline's digest and deny rules, and the protected set (borrowed, valid until the guard
 *  changes). */
const struct digest *guard_baseline(const guard_t *g);
size_t guard_baseline_deny(const guard_t *g);
const policy_t *guard_protected(const guard_t *g);

/** Remember a used consent nonce until it expires. At most GUARD_USED_MAX are kept; the ones
 *  that expire first go first. @return 0, -EINVAL for a malformed nonce. */
#define GUARD_USED_MAX 1024
int guard_mark_used(guard_t *g, const char *nonce, int64_t expires);

/** Whether nonce was used. */
bool guard_is_used(const guard_t *g, const char *nonce);

/** The i-th used nonce and its expiry, for saving. @return 1, or 0 past the last. */
int guard_used_at(const guard_t *g, size_t i, const char **nonce, int64_t *expires);

/** Parse --max-shrink: "off", "P%", "N" or "P%,N" (either order). @return 0 or -EINVAL. */
int guard_parse_limits(const char *text, struct guard_limits *l);
