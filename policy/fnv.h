/* FNV-1a, 64 bit: a fast hash for sorting rules, rule-hit tables, the checksums of format 1 and 2
 * snapshots and logs' change detection. Not for hash tables facing hostile keys, and not
 * collision-resistant against someone who chooses the input, so it must never decide identity:
 * policy versions and consents compare SHA-256 digests (policy/digest.h). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/** The FNV-1a offset basis: the h to start a hash with. */
#define FNV_BASIS 0xcbf29ce484222325ULL

/** Continue hash h over bytes[0..len). */
static inline uint64_t fnv_bytes(uint64_t h, const void *bytes, size_t len)
{
	const uint8_t *s = bytes;
	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}
