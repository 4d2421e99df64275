/* The policy snapshot file: written after every successful load so that embargo started while
 * Redis is down enforces the last policy it had, not just the bundled list. Writes are atomic
 * (temporary file, fsync, rename, fsync of the directory); reads verify the checksum. It never
 * talks to Redis or decides what is enforced: its callers do. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/codec.h"
#include "policy/policy.h"

/** Files kept: PATH and its three older generations PATH.1 to PATH.3. */
#define SNAPSHOT_GENERATIONS 4

/** Write p to path atomically, with meta (when, and the Redis prefix and database it came from;
 *  meta->format is ignored), after moving the older generations down. A file at path saved from
 *  another prefix or database is never overwritten.
 *  @return 0, or a negative errno with a message in err (-EEXIST: another list's file). */
int snapshot_save(const char *path, const policy_t *p, const struct codec_meta *meta, char *err,
		  size_t errlen);

/** The meta of the snapshot at path, from its header alone. @return 0, -ENOENT, -EBADMSG. */
int snapshot_peek(const char *path, struct codec_meta *meta);

/** Replace the file at path with text[0..len) atomically (temporary file, fsync, rename, fsync
 *  of the directory). @return 0, or a negative errno with a message in err. */
int snapshot_write_file(const char *path, const char *text, size_t len, char *err, size_t errlen);

/** Read the policy saved at path.
 *  @return 0 with *out (owned) and *meta; -ENOENT when there is no file; -EPROTONOSUPPORT when
 *  it has a format this embargo does not read; -EBADMSG when it is corrupt; another negative
 *  errno on I/O errors. A message is in err on failure. */
int snapshot_load(const char *path, policy_t **out, struct codec_meta *meta, char *err,
		  size_t errlen);

/** What snapshot_load_any() enforced, besides an intact newest file (0). */
enum { SNAPSHOT_OLDER = 1, SNAPSHOT_RECOVERED = 2 };

/** The daemon's start-up read: the newest intact file; or, when it is missing, the newest intact
 *  older generation (SNAPSHOT_OLDER); or, when it is damaged, what can still be read of it
 *  together with the newest intact older generation, or with extra (the bundled list) when there
 *  is none (SNAPSHOT_RECOVERED, see codec_recover). note says what was done or what failed.
 *  @return 0, SNAPSHOT_OLDER or SNAPSHOT_RECOVERED with *out (owned) and *meta (zeroed prefix:
 *  unknown); or a negative errno (-ENOENT: no snapshot at all). */
int snapshot_load_any(const char *path, const policy_t *extra, policy_t **out,
		      struct codec_meta *meta, char *note, size_t notelen);
