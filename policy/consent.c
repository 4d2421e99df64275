/* Consent binding and signatures. The signed message names the format, the list (prefix and
 * database) and every field a verifier checks, so a signature for one transition, list or time
 * window cannot be replayed for another. Ed25519 from nettle's hogweed. It never reads a file,
 * Redis or the clock: callers hand it key text and record fields, and policy/guard.c judges
 * expiry and reuse. */
#include "config.h"

#include "policy/consent.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <nettle/eddsa.h>

const char *consent_fault_text(enum consent_fault f)
{
	switch (f) {
	case CONSENT_OK:
		return "valid";
	case CONSENT_NONE:
		return "no consent";
	case CONSENT_OTHER_TO:
		return "the consent releases another policy";
	case CONSENT_OTHER_FROM:
		return "the consent starts from a policy this instance does not enforce";
	case CONSENT_EXPIRED:
		return "the consent has expired or is not valid yet";
	case CONSENT_USED:
		return "the consent was used before (a replay)";
	case CONSENT_UNSIGNED:
		return "the consent is not signed and --consent-key requires a signature";
	case CONSENT_BAD_SIG:
		return "the consent's signature does not verify with --consent-key";
	}
	return "?";
}

int consent_message(const struct consent *c, const char *prefix, int db, char *buf, size_t cap)
{
	char from[DIGEST_HEX + 1], to[DIGEST_HEX + 1];
	digest_hex(&c->from, from);
	digest_hex(&c->to, to);
	int n = snprintf(buf, cap,
			 "embargo-consent 2\nprefix=%s\ndb=%d\nfrom=%s\nto=%s\nat=%" PRId64
			 "\nexpires=%" PRId64 "\nnonce=%s\nby=%s\n",
			 prefix, db, from, to, c->at, c->expires, c->nonce, c->by);
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

bool consent_signature_is_valid(const struct consent *c, const uint8_t *pub, const char *prefix,
				int db)
{
	char msg[512];
	int n = consent_message(c, prefix, db, msg, sizeof(msg));
	if (n < 0 || !c->has_sig)
		return false;
	return ed25519_sha512_verify(pub, (size_t)n, (const uint8_t *)msg, c->sig) == 1;
}

void consent_public_key(const uint8_t *priv, uint8_t *pub)
{
	ed25519_sha512_public_key(pub, priv);
}

void consent_sign(struct consent *c, const uint8_t *priv, const char *prefix, int db)
{
	char msg[512];
	int n = consent_message(c, prefix, db, msg, sizeof(msg));
	uint8_t pub[CONSENT_KEY_LEN];
	consent_public_key(priv, pub);
	ed25519_sha512_sign(pub, priv, n < 0 ? 0 : (size_t)n, (const uint8_t *)msg, c->sig);
	c->has_sig = n >= 0;
}

const char *const CONSENT_FIELD_NAMES[CONSENT_FIELDS] = {"from",  "to", "at", "expires",
								"nonce", "by", "sig"};

#define KEY_MAGIC "embargo-consent-key ed25519 "

int consent_key_parse(const char *text, size_t len, uint8_t *key, bool *is_private)
{
	size_t m = strlen(KEY_MAGIC);
	if (len < m || memcmp(text, KEY_MAGIC, m) != 0)
		return -EINVAL;
	const char *s = text + m, *end = text + len;
	bool priv;
	if ((size_t)(end - s) > 8 && memcmp(s, "private ", 8) == 0) {
		priv = true;
		s += 8;
	} else if ((size_t)(end - s) > 7 && memcmp(s, "public ", 7) == 0) {
		priv = false;
		s += 7;
	} else {
		return -EINVAL;
	}
	size_t hl = 0;
	while (s + hl < end && s[hl] && strchr("0123456789abcdefABCDEF", s[hl]))
		hl++;
	/* Only a line end may follow. */
	for (const char *t = s + hl; t < end; t++)
		if (*t != '\n' && *t != '\r')
			return -EINVAL;
	if (digest_hex_decode(s, hl, key, CONSENT_KEY_LEN) < 0)
		return -EINVAL;
	*is_private = priv;
	return 0;
}

void consent_key_format(const uint8_t *key, bool is_private, char *buf, size_t cap)
{
	char hex[2 * CONSENT_KEY_LEN + 1];
	digest_hex_encode(key, CONSENT_KEY_LEN, hex);
	snprintf(buf, cap, KEY_MAGIC "%s %s\n", is_private ? "private" : "public", hex);
}

enum { F_FROM = 1, F_TO = 2, F_AT = 4, F_EXPIRES = 8, F_NONCE = 16 };
#define F_ALL (F_FROM | F_TO | F_AT | F_EXPIRES | F_NONCE)

static bool name_is(const char *name, size_t nlen, const char *want)
{
	return nlen == strlen(want) && memcmp(name, want, nlen) == 0;
}

static int parse_time(const char *s, size_t len, int64_t *t)
{
	if (len == 0 || len > 12)
		return -EINVAL;
	int64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*t = v;
	return 0;
}

unsigned consent_set_field(struct consent *c, const char *name, size_t nlen, const char *val,
			   size_t vlen)
{
	if (name_is(name, nlen, "from"))
		return digest_parse(val, vlen, &c->from) == 0 ? F_FROM : 0;
	if (name_is(name, nlen, "to"))
		return digest_parse(val, vlen, &c->to) == 0 ? F_TO : 0;
	if (name_is(name, nlen, "at"))
		return parse_time(val, vlen, &c->at) == 0 ? F_AT : 0;
	if (name_is(name, nlen, "expires"))
		return parse_time(val, vlen, &c->expires) == 0 ? F_EXPIRES : 0;
	if (name_is(name, nlen, "nonce")) {
		uint8_t tmp[CONSENT_NONCE_HEX / 2];
		if (digest_hex_decode(val, vlen, tmp, sizeof(tmp)) < 0)
			return 0;
		digest_hex_encode(tmp, sizeof(tmp), c->nonce); /* Lowercase: a replay in capitals is the same. */
		return F_NONCE;
	}
	if (name_is(name, nlen, "by")) {
		size_t n = vlen < sizeof(c->by) - 1 ? vlen : sizeof(c->by) - 1;
		memcpy(c->by, val, n);
		c->by[n] = '\0';
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)c->by[i] < 0x20 || c->by[i] == 0x7f)
				c->by[i] = '?';
	} else if (name_is(name, nlen, "sig")) {
		c->has_sig = digest_hex_decode(val, vlen, c->sig, CONSENT_SIG_LEN) == 0;
	}
	return 0;
}

void consent_finish(struct consent *c, unsigned seen)
{
	c->present = (seen & F_ALL) == F_ALL;
}
