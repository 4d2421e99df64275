/* What the commands of embargo-policy share: one blocking Redis connection, the policy key
 * names, reading the keys into a policy exactly as the daemon does (so versions agree), and the
 * audit and consent records every change writes. Single-threaded; errors are printed here, once,
 * and returned as a negative errno. The tool must not use the daemon's code beyond policy/,
 * resolver/base/ and resolver/sync/snapshot.h (tests/layers.sh checks). */
#pragma once

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/guard.h"
#include "policy/policy.h"
#include "resolver/base/options.h"

/** Members asked for per SSCAN/HSCAN round trip. */
#define POLICY_TOOL_SCAN_COUNT "10000"
/** Entries the audit stream keeps (approximately: MAXLEN ~). */
#define POLICY_TOOL_AUDIT_MAX "10000"
/** Default snapshot file, as the daemon's --snapshot. */
#define POLICY_TOOL_SNAPSHOT "/var/lib/embargo/policy.snapshot"

/** One run of the tool. Strings are borrowed from argv or the environment. */
struct policy_tool {
	redisContext *rc;
	const char *prefix;
	const char *by;   /**< Who, for audit and consent records. */
	const char *why;  /**< Free text, "" when none. */
	int yes;          /**< --yes: write a change that lifts more than the budget. */
	char command[1024]; /**< The command line after the global options, for the audit. */
	const struct options *opts; /**< Where Redis is. */
	char deny[96], allow[96], reason[96], accept[96], audit[96]; /**< Key names. */
};

/** Fill the key names from t->prefix. @return 0 or -ENAMETOOLONG. */
int policy_tool_keys(struct policy_tool *t);

/** Connect to t->opts' Redis, AUTH (with the ACL user when there is one) and SELECT. Commands
 *  call it after checking their arguments, so usage errors need no Redis. @return 0 or -EIO. */
int policy_tool_connect(struct policy_tool *t);

/** Run one command (hiredis format). @return the reply (owned: freeReplyObject), NULL after
 *  printing the error, also when Redis answered with an error. */
redisReply *policy_tool_cmd(struct policy_tool *t, const char *fmt, ...);

/** Called with one SSCAN (n names) or HSCAN (n field/value pairs, items 2n long) batch,
 *  borrowed for the call. @return 0 to go on, a negative errno to stop. */
typedef int (*policy_tool_scan_cb)(void *ctx, const redisReply *const *items, size_t n);

/** SSCAN or HSCAN (cmd) key to the end, COUNT POLICY_TOOL_SCAN_COUNT, with MATCH pattern
 *  unless NULL. A missing key is empty. @return 0 or a negative errno. */
int policy_tool_scan(struct policy_tool *t, const char *cmd, const char *key,
		     const char *pattern, policy_tool_scan_cb cb, void *ctx);

/** Build the policy the daemon would build from these keys (deny and allow sets, reason hash;
 *  any may be missing), with policy_builder_put_many like it.
 *  @return 0 with *out (owned: policy_free), or a negative errno. */
int policy_tool_read(struct policy_tool *t, const char *deny, const char *allow,
		     const char *reason, policy_t **out);

/** Queue XADD PREFIX:audit of one change: who, why, the command, the counts and the digest of
 *  what Redis then holds (field version: its short form; digest: all of it). */
int policy_tool_append_audit(struct policy_tool *t, size_t added, size_t removed,
			     const struct digest *digest);

/** Print a diff's counts and first names, one line per kind that changed. */
void policy_tool_print_diff(const struct guard_diff *d);

/** What `after` lifts against `before` (as the daemon counts it: removed deny rules and new
 *  allow rules that make a denied name pass) and how many the default --max-shrink allows at
 *  once. @return 0 or -ENOMEM. */
int policy_tool_lifts(const policy_t *before, const policy_t *after, const struct guard_diff *d,
		      struct guard_names *lifted, size_t *allowed);

/** After a change made outside MULTI: read the policy now in Redis and XADD its audit entry.
 *  @return 0 or a negative errno. */
int policy_tool_audit(struct policy_tool *t, size_t added, size_t removed);

/** Read the replies of MULTI, `queued` commands and EXEC sent with redisAppendCommand.
 *  @return 0; -EAGAIN when EXEC was aborted (a WATCHed key changed); -EIO. */
int policy_tool_exec_replies(struct policy_tool *t, size_t queued);

/** A case-insensitive glob for a normal-form name (lower case, no trailing dot) into buf:
 *  "[eE][xX]..." with glob metacharacters escaped, then `tail` ("*" or ""). @return 0 or
 *  -ENOSPC. */
int policy_tool_glob(const char *name, const char *tail, char *buf, size_t cap);

/** Normal form of text (lower case, no trailing dot) into buf[NAME_MAXTEXT + 2].
 *  @return 0 or -EINVAL. */
int policy_tool_normal(const char *text, size_t len, char *buf);

/* The commands, each in its own file: argv holds the command's arguments after its name.
 * Each returns the exit status: 0 ok, 1 failure, 2 usage. */
int policy_tool_import_run(struct policy_tool *t, int argc, char **argv);
int policy_tool_import_restore(struct policy_tool *t, int argc, char **argv);
int policy_tool_edit_add(struct policy_tool *t, int argc, char **argv);
int policy_tool_edit_remove(struct policy_tool *t, int argc, char **argv);
int policy_tool_consent_accept(struct policy_tool *t, int argc, char **argv);
int policy_tool_consent_keygen(struct policy_tool *t, int argc, char **argv);
int policy_tool_consent_digest(struct policy_tool *t, int argc, char **argv);
int policy_tool_inspect_explain(struct policy_tool *t, int argc, char **argv);
int policy_tool_inspect_diff(struct policy_tool *t, int argc, char **argv);
int policy_tool_inspect_verify(struct policy_tool *t, int argc, char **argv);
int policy_tool_inspect_log(struct policy_tool *t, int argc, char **argv);
int policy_tool_report(struct policy_tool *t, int argc, char **argv);
