/* The consents this instance has used, kept in a file beside the snapshot (PATH.consents), so
 * that a Redis rolled back to an older consent cannot replay it, even after a restart. One line
 * per nonce with its expiry; expired ones are dropped when the file is written. */
#pragma once

#include <stddef.h>

#include "policy/guard.h"

/** Mark the nonces saved at path used in g. A missing file is none. @return 0, or a negative
 *  errno with a message in err (a damaged line is skipped and counted in err, not fatal). */
int consent_state_load(const char *path, guard_t *g, char *err, size_t errlen);

/** Save g's used nonces that have not expired by now to path, atomically. @return 0, or a
 *  negative errno with a message in err. */
int consent_state_save(const char *path, const guard_t *g, int64_t now, char *err, size_t errlen);
