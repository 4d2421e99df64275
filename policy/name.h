/* Domain names in "lookup format": labels from the root down, each as [len][bytes], lower-cased,
 * ending in a 0 octet, so that memcmp() orders names label by label and a domain's whole subtree
 * is contiguous. A struct name is a fixed-size value: building one never allocates. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NAME_MAXWIRE 255   /**< Longest name in wire format, RFC 1035 2.3.4. */
#define NAME_MAXLABEL 63   /**< Longest label. */
#define NAME_MAXTEXT 254   /**< Longest presentation form without the trailing dot. */

#define NAME_KEYPAD 8 /**< Spare octets after the longest key, so readers may load 8 at a time. */

/** A name in lookup format. key[0..keylen) ends with the 0 octet; the root is key = {0}. The
 *  octets after the key are unspecified. */
struct name {
	uint8_t key[NAME_MAXWIRE + 1 + NAME_KEYPAD];
	uint16_t keylen;
	uint8_t nlabels;
};

/** Parse presentation text (no escapes; letters, digits, '-', '_'; trailing dot optional; "."
 *  is the root). A last label of digits only (an IPv4 address such as 0.0.0.0) is invalid.
 *  @return 0, or -EINVAL for an invalid or over-long name. */
int name_from_text(struct name *n, const char *text, size_t len);

/** Parse an uncompressed wire name at wire[0..len). *wirelen gets its length in the packet.
 *  @return 0, -EBADMSG if malformed or compressed. */
int name_from_wire(struct name *n, const uint8_t *wire, size_t len, size_t *wirelen);

/** Parse a possibly compressed wire name at pkt[off] inside pkt[0..len). *next gets the offset
 *  just after the name's bytes at off. pkt is a whole message: pointers must go back, and not
 *  into its 12-octet header. @return 0 or -EBADMSG (bad pointer, too long). */
int name_from_packet(struct name *n, const uint8_t *pkt, size_t len, size_t off, size_t *next);

/** Write the presentation form without trailing dot ("." for the root) into buf[cap].
 *  @return its length, or -ENOSPC. */
int name_to_text(const struct name *n, char *buf, size_t cap);

/** Write the topmost `depth` labels of n in wire format (leaf first, uncompressed).
 *  @return the length written, or -ENOSPC. */
int name_suffix_to_wire(const struct name *n, unsigned depth, uint8_t *out, size_t cap);

/** Presentation form of the topmost `depth` labels of n (the name of a rule it matched). */
int name_suffix_to_text(const struct name *n, unsigned depth, char *buf, size_t cap);

/** Is n at or below z (z's key without its final 0 starts n's key)? */
static inline bool name_is_below(const struct name *n, const struct name *z)
{
	return n->keylen >= z->keylen && __builtin_memcmp(n->key, z->key, z->keylen - 1u) == 0;
}
