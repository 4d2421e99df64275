/* SHA-256 digests and their text forms. Nettle is used because it is Debian-packaged, already a
 * GnuTLS dependency (the encrypted transports will link it anyway), and uses the CPU's SHA
 * instructions where they exist, so digesting a million rules costs tens of milliseconds. It
 * keeps no state and never does I/O: callers hand it bytes. */
#include "config.h"

#include "policy/digest.h"

#include <errno.h>
#include <string.h>

#include <nettle/sha2.h>

void digest_of(const void *bytes, size_t len, struct digest *d)
{
	struct sha256_ctx c;
	sha256_init(&c);
	sha256_update(&c, len, bytes);
	sha256_digest(&c, DIGEST_LEN, d->b);
}

void digest_hex_encode(const uint8_t *bytes, size_t n, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		buf[2 * i] = hex[bytes[i] >> 4];
		buf[2 * i + 1] = hex[bytes[i] & 15];
	}
	buf[2 * n] = '\0';
}

void digest_hex(const struct digest *d, char *buf)
{
	digest_hex_encode(d->b, DIGEST_LEN, buf);
}

void digest_short(const struct digest *d, char *buf)
{
	char full[DIGEST_HEX + 1];
	digest_hex(d, full);
	memcpy(buf, full, DIGEST_SHORT_HEX);
	buf[DIGEST_SHORT_HEX] = '\0';
}

uint64_t digest_u64(const struct digest *d)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | d->b[i];
	return v;
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int digest_hex_decode(const char *hex, size_t len, uint8_t *bytes, size_t n)
{
	if (len != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		bytes[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int digest_parse(const char *hex, size_t len, struct digest *d)
{
	struct digest out;
	if (digest_hex_decode(hex, len, out.b, DIGEST_LEN) < 0)
		return -EINVAL;
	*d = out;
	return 0;
}

bool digest_is_equal(const struct digest *a, const struct digest *b)
{
	return memcmp(a->b, b->b, DIGEST_LEN) == 0;
}

bool digest_has_prefix(const struct digest *d, const char *hex, size_t len)
{
	if (len < DIGEST_SHORT_HEX || len > DIGEST_HEX)
		return false;
	for (size_t i = 0; i < len; i++) {
		int v = nibble(hex[i]);
		uint8_t o = d->b[i / 2];
		if (v < 0 || v != ((i & 1) ? (o & 15) : (o >> 4)))
			return false;
	}
	return true;
}

bool digest_is_zero(const struct digest *d)
{
	static const struct digest zero;
	return digest_is_equal(d, &zero);
}
