/* Consents: an operator's approval of one policy transition, bound to the digest it starts from
 * and the digest it releases, to one prefix and database, to a time window and to a random nonce
 * that is used once. With a consent key (Ed25519, nettle), only a consent signed by the holder of
 * the private key counts: a list editor with write access to Redis cannot approve their own
 * change. Text in, verdicts out: it never does I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/digest.h"

/** Octets of Ed25519 keys and signatures. */
#define CONSENT_KEY_LEN 32
#define CONSENT_SIG_LEN 64
/** Hex digits of a nonce. */
#define CONSENT_NONCE_HEX 32
/** Default lifetime of a consent, seconds. */
#define CONSENT_TTL_DEFAULT 86400
/** Longest lifetime a consent may claim, seconds. */
#define CONSENT_TTL_MAX (7 * 86400)

/** A consent as read from PREFIX:accept (fields from, to, at, expires, nonce, by, why, sig). */
struct consent {
	bool present;          /**< The record exists and has the shape below. */
	struct digest from;    /**< The policy the transition starts from. */
	struct digest to;      /**< The policy it releases. */
	int64_t at, expires;   /**< Unix seconds. */
	char nonce[CONSENT_NONCE_HEX + 1];
	char by[64];
	bool has_sig;
	uint8_t sig[CONSENT_SIG_LEN];
};

/** Why a consent does not release a candidate. */
enum consent_fault {
	CONSENT_OK = 0,
	CONSENT_NONE,       /**< No consent record. */
	CONSENT_OTHER_TO,   /**< It releases another policy. */
	CONSENT_OTHER_FROM, /**< It starts from a policy this instance does not enforce. */
	CONSENT_EXPIRED,    /**< Outside [at, expires], or claims more than CONSENT_TTL_MAX. */
	CONSENT_USED,       /**< Its nonce was used before (a replay, e.g. after a rollback). */
	CONSENT_UNSIGNED,   /**< A consent key is configured and it carries no signature. */
	CONSENT_BAD_SIG,    /**< Its signature does not verify with the consent key. */
};

/** A fault as text for logs. */
const char *consent_fault_text(enum consent_fault f);

/** The exact text that is signed: every field that binds the consent, and who gave it, one per
 *  line ("embargo-consent 2").
 *  @return its length (< cap) or -ENOSPC. */
int consent_message(const struct consent *c, const char *prefix, int db, char *buf, size_t cap);

/** Whether c's signature verifies with pub for prefix and db. */
bool consent_signature_is_valid(const struct consent *c, const uint8_t *pub, const char *prefix,
				int db);

/** Sign c (sets sig and has_sig) with the private key priv. */
void consent_sign(struct consent *c, const uint8_t *priv, const char *prefix, int db);

/** The public key of the private key priv. */
void consent_public_key(const uint8_t *priv, uint8_t *pub);

/** Parse a key file's text: "embargo-consent-key ed25519 public|private HEX\n".
 *  @return 0 with key[0..32) and *is_private, or -EINVAL. */
int consent_key_parse(const char *text, size_t len, uint8_t *key, bool *is_private);

/** A key file's text into buf (at least 120 octets). */
void consent_key_format(const uint8_t *key, bool is_private, char *buf, size_t cap);

/** The fields of a consent record in PREFIX:accept, as read (HMGET) in this order. */
#define CONSENT_FIELDS 7
extern const char *const CONSENT_FIELD_NAMES[CONSENT_FIELDS];

/** Set one field of a consent record as read from Redis (hostile: anything malformed leaves the
 *  consent incomplete). Fields: from, to (64 hex), at, expires (decimal), nonce (32 hex), by,
 *  sig (128 hex); others are ignored. @return a bit for the required field set (OR them into
 *  `seen` for consent_finish), 0 for others and for a malformed value. */
unsigned consent_set_field(struct consent *c, const char *name, size_t nlen, const char *val,
			   size_t vlen);

/** Mark c present if `seen` has every required field (from, to, at, expires, nonce). */
void consent_finish(struct consent *c, unsigned seen);
