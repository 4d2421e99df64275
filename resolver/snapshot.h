/* The policy snapshot file: written after every successful load so that embargo started while
 * Redis is down enforces the last policy it had, not just the bundled list. Writes are atomic
 * (temporary file, fsync, rename, fsync of the directory); reads verify the checksum. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "policy/codec.h"
#include "policy/policy.h"

/** Write p to path atomically, with meta (when, and the Redis prefix and database it came from;
 *  meta->format is ignored). @return 0, or a negative errno with a message in err. */
int snapshot_save(const char *path, const policy_t *p, const struct codec_meta *meta, char *err,
		  size_t errlen);

/** Replace the file at path with text[0..len) atomically (temporary file, fsync, rename, fsync
 *  of the directory). @return 0, or a negative errno with a message in err. */
int snapshot_write_file(const char *path, const char *text, size_t len, char *err, size_t errlen);

/** Read the policy saved at path.
 *  @return 0 with *out (owned) and *meta; -ENOENT when there is no file; -EPROTONOSUPPORT when
 *  it has a format this embargo does not read; -EBADMSG when it is corrupt; another negative
 *  errno on I/O errors. A message is in err on failure. */
int snapshot_load(const char *path, policy_t **out, struct codec_meta *meta, char *err,
		  size_t errlen);
