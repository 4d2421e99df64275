/* What the held-load rule must not forget across a restart, kept beside the snapshot in
 * SNAPSHOT.guard: the budget's base and what was spent of it, a load held and its allowance, the
 * rollback mark, the consents used (so that a Redis rolled back to an older consent cannot replay
 * it), and what Redis said of its history (run_id, replication offset, audit tail), so that a
 * Redis that came back from an older dump while embargo was down is still seen. Written
 * atomically, only when it changed. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/guard.h"
#include "resolver/redis_history.h"

/** Restore g and h from path. A missing file is nothing to restore (-ENOENT). A damaged line
 *  is skipped and said in err (-EBADMSG), the rest restored. */
int guard_state_load(const char *path, guard_t *g, struct redis_history *h, char *err,
		     size_t errlen);

/** The state file's text for g and h (used nonces that expire after now), into buf.
 *  @return its length, or -ENOSPC. */
int guard_state_format(const guard_t *g, const struct redis_history *h, int64_t now, char *buf,
		       size_t cap);
