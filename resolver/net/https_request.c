/* Reading a DoH request's fields as nghttp2 hands them over, one at a time: nothing is kept of
 * a field but what decides the answer, and the DNS message is kept in one buffer that grows to
 * at most HTTPS_BODY_MAX. It never parses the DNS message (the query path does) and never
 * answers (https.c does). */
#include "config.h"

#include "resolver/net/https_request.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNS_MESSAGE "application/dns-message"

static int name_is(const uint8_t *name, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int grow(struct https_request *r, size_t need)
{
	if (need > HTTPS_BODY_MAX)
		return -1;
	if (need <= r->msg_cap)
		return 0;
	size_t cap = r->msg_cap ? r->msg_cap : 512;
	while (cap < need)
		cap *= 2;
	if (cap > HTTPS_BODY_MAX)
		cap = HTTPS_BODY_MAX; /* need fits: checked above. */
	uint8_t *m = realloc(r->msg, cap);
	if (!m)
		return -1;
	r->msg = m;
	r->msg_cap = cap;
	return 0;
}

/* :path: is it ours, and its first dns= parameter decoded into msg. */
static void read_path(struct https_request *r, const char *ours, const uint8_t *v, size_t len)
{
	const uint8_t *q = memchr(v, '?', len);
	size_t plen = q ? (size_t)(q - v) : len;
	r->path_ok = plen == strlen(ours) && memcmp(v, ours, plen) == 0;
	if (!r->path_ok || !q || r->method == HTTPS_M_POST)
		return; /* A POST's question is its body. */
	const uint8_t *p = q + 1, *end = v + len;
	while (p < end) {
		const uint8_t *amp = memchr(p, '&', (size_t)(end - p));
		const uint8_t *pe = amp ? amp : end;
		if (pe - p >= 4 && memcmp(p, "dns=", 4) == 0) {
			size_t tlen = (size_t)(pe - p - 4);
			ssize_t n = -1;
			if (grow(r, tlen / 4 * 3 + 3) == 0)
				n = https_request_base64url((const char *)p + 4, tlen, r->msg, r->msg_cap);
			r->dns = n > 0 ? 1 : 2;
			r->msg_len = n > 0 ? (size_t)n : 0;
			return;
		}
		p = pe + 1;
	}
}

void https_request_header(struct https_request *r, const char *path, const uint8_t *name,
			  size_t namelen, const uint8_t *value, size_t valuelen, int trailer)
{
	if (r->headers_too_big)
		return;
	r->header_bytes += namelen + valuelen + 32;
	if (r->header_bytes > HTTPS_HEADER_MAX) {
		r->headers_too_big = 1;
		return;
	}
	if (trailer)
		return;
	if (name_is(name, namelen, ":method")) {
		r->method = HTTPS_M_OTHER;
		if (name_is(value, valuelen, "GET"))
			r->method = HTTPS_M_GET;
		else if (name_is(value, valuelen, "POST"))
			r->method = HTTPS_M_POST;
		if (r->method == HTTPS_M_POST && r->dns) {
			/* A POST's question is its body alone (RFC 8484 4.1): a dns= of its path,
			 * read before the method came, is dropped. */
			r->dns = 0;
			r->msg_len = 0;
		}
	} else if (name_is(name, namelen, ":path")) {
		read_path(r, path, value, valuelen);
	} else if (name_is(name, namelen, "content-type")) {
		/* The media type, its parameters (if any) aside; it is case-insensitive. */
		size_t n = strlen(DNS_MESSAGE);
		r->ctype_ok = valuelen >= n &&
			      strncasecmp((const char *)value, DNS_MESSAGE, n) == 0 &&
			      (valuelen == n || value[n] == ';' || value[n] == ' ');
	} else if (name_is(name, namelen, "content-length")) {
		/* nghttp2 has checked that it is a number and will check the body against it. */
		unsigned long n = 0;
		for (size_t i = 0; i < valuelen && n <= HTTPS_BODY_MAX; i++)
			n = n * 10 + (unsigned long)(value[i] - '0');
		r->body_too_big = n > HTTPS_BODY_MAX;
	}
}

int https_request_body(struct https_request *r, const uint8_t *data, size_t len)
{
	if (r->method != HTTPS_M_POST || r->body_too_big)
		return 0;

	if (r->msg_len + len > HTTPS_BODY_MAX) {
		r->body_too_big = 1;
		https_request_clear(r);
		return -1;
	}
	if (grow(r, r->msg_len + len) < 0)
		return 0;
	memcpy(r->msg + r->msg_len, data, len);
	r->msg_len += len;
	return 1;
}

unsigned https_request_status(const struct https_request *r)
{
	if (r->headers_too_big)
		return 431;
	if (!r->path_ok)
		return 404;
	if (r->method == HTTPS_M_GET)
		return r->dns == 1 ? 0 : 400;
	if (r->method != HTTPS_M_POST)
		return 405;
	if (!r->ctype_ok)
		return 415;

	return r->body_too_big ? 413 : 0;
}

void https_request_clear(struct https_request *r)
{
	free(r->msg);
	r->msg = NULL;
	r->msg_len = r->msg_cap = 0;
}

static int b64url(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '-' ? 62 : c == '_' ? 63 : -1;
}

ssize_t https_request_base64url(const char *text, size_t len, uint8_t *out, size_t cap)
{
	for (unsigned pad = 0; pad < 2 && len > 0 && text[len - 1] == '='; pad++)
		len--;
	if (len % 4 == 1)
		return -1;
	if (len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
		return -1;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64url(text[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	return (ssize_t)n;
}
