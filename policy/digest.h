/* Content digests: SHA-256 (nettle) of a policy's canonical content, the identity that every
 * "unchanged?", consent and snapshot check compares in full. A 64-bit FNV sum served before and
 * could be collided by anyone choosing rules; short forms (16 hex digits) are for display only.
 * It never does I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Octets in a digest. */
#define DIGEST_LEN 32
/** Hex digits of a digest, and of its short (display) form. */
#define DIGEST_HEX 64
#define DIGEST_SHORT_HEX 16

struct digest {
	uint8_t b[DIGEST_LEN];
};

/** SHA-256 of bytes[0..len) into *d. */
void digest_of(const void *bytes, size_t len, struct digest *d);

/** The 64 lowercase hex digits of d into buf[65]. */
void digest_hex(const struct digest *d, char *buf);

/** The first 16 hex digits of d into buf[17] (for display; never compare these). */
void digest_short(const struct digest *d, char *buf);

/** The first 8 octets as a number (the short version shown in logs and status answers). */
uint64_t digest_u64(const struct digest *d);

/** Parse exactly 64 hex digits (either case). @return 0 or -EINVAL. */
int digest_parse(const char *hex, size_t len, struct digest *d);

/** Whether a and b are the same digest (all 32 octets). */
bool digest_is_equal(const struct digest *a, const struct digest *b);

/** Whether hex (16 to 64 hex digits, either case) is a prefix of d's hex form. Fewer than 16
 *  digits never match: a short prefix would let the wrong policy through. */
bool digest_has_prefix(const struct digest *d, const char *hex, size_t len);

/** Parse exactly 2n hex digits (either case) into bytes[0..n). @return 0 or -EINVAL. */
int digest_hex_decode(const char *hex, size_t len, uint8_t *bytes, size_t n);

/** bytes[0..n) as lowercase hex into buf[2n + 1]. */
void digest_hex_encode(const uint8_t *bytes, size_t n, char *buf);

/** Whether d is all zero (no digest). */
bool digest_is_zero(const struct digest *d);
