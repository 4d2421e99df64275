/* SipHash-1-3 (Aumasson and Bernstein; the variant Rust and CPython use for their tables): a
 * keyed hash, so that peers who choose the names and addresses we hash cannot choose which
 * bucket they land in without the key. Every user draws its key at start with
 * siphash_key_random(); a key must never be fixed or derived from anything a peer sees. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/** A 128-bit key. */
struct siphash_key {
	uint64_t k0, k1;
};

/** Fill key from the kernel's CSPRNG. @return 0 or a negative errno. */
int siphash_key_random(struct siphash_key *key);

/** The hash of bytes[len] under key. */
uint64_t siphash(const struct siphash_key *key, const void *bytes, size_t len);
