/* TLS for the stream transports, GnuTLS driven from our own buffers (Knot Resolver's daemon does
 * the same), as a server for the encrypted listeners and as a client toward TLS upstreams: the
 * transport hands in the ciphertext it read and gets the plaintext back, and
 * GnuTLS's output goes out through the transport's push function, so GnuTLS never touches a
 * socket and the loop never blocks. Credentials (the certificate pair, the priorities, the
 * session ticket master key) are read once, shared by every worker and reference-counted, so a
 * reload can bring a new pair while connections made with the old one go on. It must never
 * decide anything about a query: it only carries bytes. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct tls_creds tls_creds_t;
typedef struct tls_session tls_session_t;

/** Read the PEM certificate chain and private key and check that they belong together.
 *  @return 0 and *out (owned: tls_creds_unref), or a negative errno with the reason in err. */
int tls_creds_new(tls_creds_t **out, const char *cert_file, const char *key_file, char *err,
		  size_t errlen);

/** The name DDR designates embargo by: the first DNS name (dNSName) of the certificate's
 *  SubjectAltName that is not a wildcard, read when the pair was loaded.
 *  @return it (borrowed: valid while c is), or "" when the certificate has none. */
const char *tls_creds_name(const tls_creds_t *c);

/** Is the certificate valid for host name name (its SubjectAltName, RFC 6125 rules)? */
int tls_creds_is_valid_for(const tls_creds_t *c, const char *name);

/** Give to (before any session uses it) the session ticket key of from, so that tickets issued
 *  with a certificate a reload replaces still resume. @return 0, or -EINVAL. */
int tls_creds_keep_tickets(tls_creds_t *to, const tls_creds_t *from);

/** Take a reference (any thread). */
void tls_creds_ref(tls_creds_t *c);

/** Drop a reference; the last one frees the credentials (any thread). NULL is a no-op. */
void tls_creds_unref(tls_creds_t *c);

/** Credentials of a client (toward TLS upstreams): the CAs a server's certificate must chain
 *  to, from ca_file (PEM) or, when it is NULL or "", the system's store.
 *  @return 0 and *out (owned: tls_creds_unref), or a negative errno with the reason in err. */
int tls_client_creds_new(tls_creds_t **out, const char *ca_file, char *err, size_t errlen);

/** Where a session's ciphertext goes: copy bytes[0..len) out. @return 0, or a negative errno
 *  (the session is then broken). */
typedef int (*tls_push_cb)(void *ctx, const uint8_t *bytes, size_t len);

/** A server session on c (a reference is taken) with ALPN alpn (NUL-terminated, e.g. "dot").
 *  @return the session (owned: tls_session_free), NULL when out of memory. */
tls_session_t *tls_session_new(tls_creds_t *c, const char *alpn, tls_push_cb push, void *ctx);

/** A client session on client credentials c (a reference is taken) toward a server whose
 *  certificate must chain to c's CAs and be valid for name (a DNS name, sent as SNI, or an
 *  address in text), offering ALPN alpn. The handshake starts at the first tls_session_read().
 *  @return the session (owned: tls_session_free), NULL when out of memory. */
tls_session_t *tls_client_session_new(tls_creds_t *c, const char *name, const char *alpn,
				      tls_push_cb push, void *ctx);

/** Why the session failed (the certificate's faults after a failed verification), for a log
 *  line: into buf[0..cap), which is returned; "" when it has not failed. */
const char *tls_session_why(const tls_session_t *s, char *buf, size_t cap);

/** Free a session and drop its reference to its credentials. NULL is a no-op. */
void tls_session_free(tls_session_t *s);

/** Hand in ciphertext read from the peer: it is kept (at most TLS_INPUT_MAX octets waiting)
 *  until tls_session_read() has used it. @return 0, or -ENOBUFS when it does not fit. */
int tls_session_feed(tls_session_t *s, const uint8_t *bytes, size_t len);

/** Most ciphertext a session keeps waiting: two whole records. */
#define TLS_INPUT_MAX (2 * (16384 + 2048))

/** Go on with the handshake, then decrypt into out[0..cap). @return the plaintext octets
 *  written (0: nothing yet, more ciphertext needed), or -EPIPE when the peer closed the
 *  session, -EPROTO when the handshake or a record failed. */
ssize_t tls_session_read(tls_session_t *s, uint8_t *out, size_t cap);

/** Is the handshake done? */
int tls_session_is_ready(const tls_session_t *s);

/** Does the session hold plaintext or whole records that tls_session_read() has not given out
 *  (it stopped because out was full)? */
int tls_session_has_pending(const tls_session_t *s);

/** Encrypt bytes[0..len) (the handshake must be done); the records go to the push function.
 *  @return 0 or -EPROTO. */
int tls_session_write(tls_session_t *s, const uint8_t *bytes, size_t len);

/** Hold what tls_session_write() is given (records of up to 16 KiB) until tls_session_uncork():
 *  answers to a batch of questions go out as few records and writes. The caller bounds what it
 *  writes meanwhile. */
void tls_session_cork(tls_session_t *s);

/** Encrypt and push what a cork held. @return 0 or -EPROTO. */
int tls_session_uncork(tls_session_t *s);

/** Send a close_notify alert (best effort, through the push function). */
void tls_session_bye(tls_session_t *s);

/** Did the client resume an earlier session (a ticket)? (Either side.) */
int tls_session_is_resumed(const tls_session_t *s);

/** A client's: the data that resumes this session on a new connection (the server's ticket),
 *  once the server has sent one, into *data (owned: free()) and *len. @return 0, or -EAGAIN
 *  when it has not sent one (yet), -ENOMEM. */
int tls_session_resume_data(const tls_session_t *s, uint8_t **data, size_t *len);

/** A client's, before its handshake: offer to resume the session that data[0..len) saved.
 *  The server may refuse, and then a full handshake verifies its certificate as always.
 *  @return 0 or -EINVAL. */
int tls_session_resume(tls_session_t *s, const uint8_t *data, size_t len);
