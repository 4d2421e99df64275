/* DNS over HTTPS (RFC 8484) on one connection: an nghttp2 server session fed with the plaintext
 * its TLS session decrypted, and each request (GET with ?dns=, POST of application/dns-message)
 * made a query_handle() call whose client answers on the request's stream. The connection
 * (tcp_conn.c) hands the plaintext in and gives the functions that write and say how much room
 * is left, so this module never touches a socket, TLS or a timer, and never includes the
 * connection's header. A request holds nothing but its stream; each bound a client can push
 * against is named here and counted in the worker's stats. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "resolver/base/client.h"
#include "resolver/net/https_request.h"

struct worker;

typedef struct https https_t;

/** Concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS; RFC 9113 asks for no
 *  fewer than 100). More are refused (RST_STREAM REFUSED_STREAM) and counted. */
#define HTTPS_MAX_STREAMS 100
/** Questions upstream per connection: taking requests pauses above it (as tcp.c's). */
#define HTTPS_MAX_INFLIGHT 64
/** Stream resets by the client per connection in one second; more close the connection
 *  (rapid reset, CVE-2023-44487). */
#define HTTPS_MAX_RESETS 100
/* HTTPS_HEADER_MAX bounds a request's header block, encoded (HEADERS and CONTINUATION frames;
 * more close the connection: a CONTINUATION flood) and decoded (more get 431); HTTPS_BODY_MAX a
 * POST body (more get 413): https_request.h. */
/** Request body octets a connection may have sent and we not yet used: its flow-control window
 *  (each stream's is HTTPS_BODY_MAX + 1, so one octet too many is seen and gets 413). */
#define HTTPS_WINDOW (2 * 65536)
/** The HPACK table of our answers' headers. */
#define HTTPS_HPACK_TABLE 4096

/** What the connection gives its HTTP/2 session. ctx is the connection's. */
struct https_io {
	/** Send plaintext to the client. @return 0, or a negative errno when the connection has
	 *  closed (then nothing more is sent). */
	int (*send)(void *ctx, const uint8_t *bytes, size_t len);
	/** Octets the connection takes now before its queued-bytes bound (0: wait for a write). */
	size_t (*room)(void *ctx);
	/** The answer octets the session holds, not yet handed to send(), are now held. May close
	 *  the connection (a bound). */
	void (*held)(void *ctx, size_t held);
	/** A question that went upstream is over: the connection may take more. */
	void (*wake)(void *ctx);
};

/** A server session for the client proto (its address; copied) on w, writing through io.
 *  @return the session (owned: https_free), NULL when out of memory. */
https_t *https_new(struct worker *w, const struct client *proto, const struct https_io *io,
		   void *ctx);

/** The connection is closing: questions upstream are forgotten, nothing more is sent. */
void https_close(https_t *h);

/** Free the session (https_close() first if it was not). NULL is a no-op. */
void https_free(https_t *h);

/** Take plaintext from the client: frames are read and requests answered while the limits
 *  allow (questions in flight, room to write). @return the octets used (the rest waits for
 *  the next call), or -1 when the connection must close now (a bound, counted, or a broken
 *  session). */
ssize_t https_input(https_t *h, const uint8_t *bytes, size_t len);

/** Write what the session has to send while the connection has room; take requests that
 *  waited for room. @return 0, or -1 when the connection must close now. */
int https_flush(https_t *h);

/** May the session take more plaintext now? */
int https_may_read(const https_t *h);

/** Is the session over (GOAWAY sent, or not HTTP/2): nothing more will be read? */
int https_is_over(const https_t *h);

/** Questions of this session upstream now. */
unsigned https_inflight(const https_t *h);

/** Requests taken so far (a connection that takes none is idle). */
uint64_t https_requests(const https_t *h);
