/* TCP for one worker (RFC 7766): listeners and the connections they accept, for DNS on port 53,
 * DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484), each connection with named bounds:
 * answers in flight, answer bytes queued for a client that does not read, a deadline for each
 * whole message and for idleness, connections per worker and per client address, and the
 * oldest idle connection closed to make room (RFC 7766 6.2.3). The listeners and the accept
 * path are tcp.c's, a connection's life is tcp_conn.c's. It never decides about policy: the
 * query path does, and answers through the client's ops. */
#pragma once

#include <stddef.h>
#include <sys/socket.h>

struct worker;

/** Set up w's TCP state. @return 0 or -ENOMEM. */
int tcp_init(struct worker *w);

/** What a listener's connections carry. */
enum tcp_kind {
	TCP_KIND_DNS = 0, /**< DNS messages with their 2-octet length (port 53). */
	TCP_KIND_DOT = 1, /**< The same inside TLS, ALPN dot (RFC 7858). */
	TCP_KIND_DOH = 2, /**< HTTP/2 inside TLS, ALPN h2 (RFC 8484). */
};

/** Listen on ss (SO_REUSEPORT) for connections of kind (the encrypted ones with the worker's
 *  credentials). @return 0 or a negative errno with a message in err. */
int tcp_listen(struct worker *w, const struct sockaddr_storage *ss, enum tcp_kind kind, char *err,
	       size_t errlen);

/** Is w listening on ss? */
int tcp_listening(const struct worker *w, const struct sockaddr_storage *ss);

/** Close w's listener on ss, if any (a reload). The connections it accepted go on. */
void tcp_unlisten(struct worker *w, const struct sockaddr_storage *ss);

/** Close every listener and connection (their handles close with the loop). */
void tcp_close(struct worker *w);

/** Accept no more connections; those open go on until tcp_close(). */
void tcp_stop_accepting(struct worker *w);

/** TCP connections open on w now (0 before tcp_init). */
unsigned tcp_open_count(const struct worker *w);

/** Free w's TCP state once its loop has closed every handle. */
void tcp_free(struct worker *w);
