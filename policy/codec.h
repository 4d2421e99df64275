/* The policy snapshot codec: a policy as text that survives a restart. One header line carries
 * the format, the rule count, the content digest (SHA-256), when and from which Redis prefix and
 * database the policy was saved, and a checksum over all of that and the body; the body has one
 * line per rule. The codec sees a policy only through policy.h (policy_rule_next,
 * policy_builder_put_many), and it never does I/O: text in, policy out, and back. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

/** The format codec_encode() writes. */
#define CODEC_FORMAT 3
/** Room for a Redis key prefix, with its NUL. */
#define CODEC_PREFIX_MAX 64

/** Where a snapshot came from. Format 1 files carry no prefix and database: they read back as
 *  "embargo" and 0, the defaults of the only daemon that wrote them. */
struct codec_meta {
	unsigned format;		/**< As read; codec_encode() ignores it and writes 3. */
	int64_t saved_at;		/**< Unix time. */
	char prefix[CODEC_PREFIX_MAX];	/**< Redis key prefix: non-empty, no white space. */
	int db;				/**< Redis database number. */
};

/** Serialise p: the header "embargo-policy-snapshot 3 rules=N digest=D saved=T prefix=P db=N
 *  checksum=C" (D and C: 64 hex digits of SHA-256), then one "d|a|da TAB name [TAB reason]" line per rule and one
 *  "r TAB name TAB reason" line per reason whose name has no rule.
 *  @return 0 with *out (owned: free()) and *len; -EINVAL for a prefix that is empty or has
 *  white space; -ENOMEM. */
int codec_encode(const policy_t *p, const struct codec_meta *meta, char **out, size_t *len);

/** Parse a snapshot of format 1, 2 or 3. The format, checksum, rule count and (format 3) digest
 *  are checked,
 *  so a damaged or truncated snapshot is refused whole.
 *  @return 0 with *out (owned, source POLICY_SOURCE_SNAPSHOT) and *meta; -EPROTONOSUPPORT for a
 *  well-formed header of another format (meta->format says which); -EBADMSG when corrupt;
 *  -ENOMEM. */
int codec_decode(const char *text, size_t len, policy_t **out, struct codec_meta *meta);

/** Read what can still be read of a damaged snapshot: every well-formed body line (a line cut
 *  off at the end is dropped: a shorter name is another name) and the header's meta when the
 *  header parses (else meta is zeroed). No checksum is checked.
 *  @return 0 with *out (owned), *kept rules and *dropped lines; -ENOMEM. */
int codec_salvage(const char *text, size_t len, policy_t **out, struct codec_meta *meta,
		  size_t *kept, size_t *dropped);

/** The policy to enforce from a damaged snapshot: the deny rules and reasons of salvaged (see
 *  codec_salvage), of intact (the previous intact generation, may be NULL) and of extra (may be
 *  NULL: the bundled list), and only the allow rules salvaged and intact both have, so that
 *  damaged bytes can only over-block. @return owned, NULL when out of memory. */
policy_t *codec_recover(const policy_t *salvaged, const policy_t *intact, const policy_t *extra);
