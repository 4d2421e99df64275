/* One DoH request (RFC 8484 4.1) as its header fields and body arrive: its method, whether its
 * path is ours, its DNS message (GET's ?dns= in base64url, or POST's body), its content type,
 * and the bounds on its header fields and body; then the HTTP status it gets before its DNS
 * message is read. It never sees HTTP/2 or I/O (the session, https.c, feeds it) and never holds
 * more than one DNS message. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** Octets of one request's header fields, name, value and 32 each (RFC 9113
 *  SETTINGS_MAX_HEADER_LIST_SIZE); more get 431. Also the bound on an encoded header block. */
#define HTTPS_HEADER_MAX 16384
/** A DNS message's octets, the most a POST body may hold; more get 413. */
#define HTTPS_BODY_MAX 65535

enum https_method { HTTPS_M_NONE, HTTPS_M_GET, HTTPS_M_POST, HTTPS_M_OTHER };

struct https_request {
	uint8_t method;          /**< enum https_method */
	uint8_t path_ok;         /**< :path is --https-path (before any '?'). */
	uint8_t dns;             /**< GET's ?dns=: 0 none, 1 decoded into msg, 2 not base64url. */
	uint8_t ctype_ok;        /**< content-type: application/dns-message. */
	uint8_t headers_too_big; /**< Over HTTPS_HEADER_MAX: 431. */
	uint8_t body_too_big;    /**< content-length or the body over HTTPS_BODY_MAX: 413. */
	size_t header_bytes;
	uint8_t *msg;            /**< The DNS message (owned: https_request_clear). */
	size_t msg_len, msg_cap;
};

/** A header field (trailer: of the trailers, which only count toward the bound); path is
 *  --https-path. name and value are borrowed for the call. */
void https_request_header(struct https_request *r, const char *path, const uint8_t *name,
			  size_t namelen, const uint8_t *value, size_t valuelen, int trailer);

/** Body octets. @return 1 when kept in msg, 0 when not (not a POST, too big already, or out of
 *  memory), -1 when they make the body too big: msg is dropped, and the request gets 413. */
int https_request_body(struct https_request *r, const uint8_t *data, size_t len);

/** The error status the request gets whatever its DNS message says (404, 405, 400 for a GET
 *  without a readable dns parameter, 415, 413, 431), or 0. */
unsigned https_request_status(const struct https_request *r);

/** Free the DNS message. */
void https_request_clear(struct https_request *r);

/** Decode base64url without padding (RFC 4648 5; one or two trailing '=' are tolerated) into
 *  out. @return the octets written, or -1 when text is not base64url or out is too small. */
ssize_t https_request_base64url(const char *text, size_t len, uint8_t *out, size_t cap);
