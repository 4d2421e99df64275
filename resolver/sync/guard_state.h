/* What the held-load rule must not forget across a restart, kept beside the snapshot in
 * SNAPSHOT.guard: the budget's base and what was spent of it, a load held and the cap a hold set,
 * the rollback mark, the consents used (so that a Redis rolled back to an older consent cannot
 * replay it), and what Redis said of its history (run_id, replication offset, audit tail), so
 * that a Redis that came back from an older dump while embargo was down is still seen. Bound to
 * its prefix and database, checksummed whole, written atomically when it changed (before the
 * policy it describes is published). Another prefix's or database's file is never overwritten. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/guard.h"
#include "resolver/sync/redis_history.h"

/** Restore g and h from path, written for prefix and db.
 *  @return 0; -ENOENT (no file); -EBADMSG (damaged, cut or unknown: nothing restored); -EXDEV
 *  (another prefix's or database's: nothing restored); a message in err. */
int guard_state_load(const char *path, const char *prefix, int db, guard_t *g,
		     struct redis_history *h, char *err, size_t errlen);

/** Whether the file at path may be replaced by prefix and db's state: 0, -EXDEV when it is
 *  another prefix's or database's, or a negative errno when it cannot be read. */
int guard_state_check(const char *path, const char *prefix, int db);

/** The state file's text for g and h (used nonces that expire after now), into buf.
 *  @return its length, or -ENOSPC. */
int guard_state_format(const guard_t *g, const struct redis_history *h, const char *prefix,
		       int db, int64_t now, char *buf, size_t cap);

/** Write g and h's state to path unless it is what *written (owned, may be NULL) says was
 *  written last; on success *written becomes the new text.
 *  @return 0; -EXDEV when path is another prefix's or database's (not overwritten); another
 *  negative errno; a message in err. */
int guard_state_save(const char *path, const guard_t *g, const struct redis_history *h,
		     const char *prefix, int db, char **written, char *err, size_t errlen);

/** The state file of a snapshot that exists is missing, damaged or another's: a rollback mark,
 *  and the budget counted as spent, until a consent (or a quiet window for the budget). */
void guard_state_fail_closed(guard_t *g);
