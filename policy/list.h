/* The list-text formats operators feed embargo: "domain TAB reason" lines (TSV), plain domains,
 * and hosts-file lines ("0.0.0.0 a.example b.example # comment"). One pass over the text, which
 * never allocates and never opens a file: each entry goes to a callback, which may add it to a
 * builder or send it to Redis. */
#pragma once

#include <stddef.h>

#include "policy/policy.h"

/** Called for each invalid entry: a line, or one name of a hosts line. Line numbers start at 1;
 *  text is the whole line (borrowed for the call). */
typedef void (*list_invalid_cb)(void *ctx, size_t line, const char *text, size_t len);

/** Called for each valid entry: the name in normal form (lower case, no trailing dot,
 *  NUL-terminated) and its reason (not NUL-terminated, reason_len 0 when none). A hosts line
 *  gives one call per name, each with the same line number and no reason.
 *  @return 0 to go on, a negative errno to stop the parse with it. */
typedef int (*list_entry_cb)(void *ctx, size_t line, const char *name, const char *reason,
			     size_t reason_len);

/** Parse a list: "domain TAB reason" lines, plain domains, or hosts-file lines (a sink address
 *  such as 0.0.0.0 or ::1, whitespace, then one or more names); '#' starts a comment, except
 *  inside a TSV reason. Strings are borrowed for the callback.
 *  @return the number of invalid entries, or the negative errno an entry callback stopped with. */
long list_parse(const char *text, size_t len, list_entry_cb on_entry, list_invalid_cb on_invalid,
		void *ctx);

/** Add deny rules (with their reasons) for every entry of a list to b; invalid entries are
 *  counted in b (policy_builder_invalid) and passed to on_invalid (may be NULL).
 *  @return the number of invalid entries skipped, or -ENOMEM. */
long list_add_to_builder(policy_builder_t *b, const char *text, size_t len,
			 list_invalid_cb on_invalid, void *ctx);

/** A policy holding the bundled sanctioned-vendor list (owned), NULL when out of memory. */
policy_t *list_bundled(void);

/** The bundled list's text (TSV), compiled in from policy/sanctioned-vendors.tsv. */
extern const char list_bundled_tsv[];
