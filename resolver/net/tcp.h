/* TCP for one worker (RFC 7766): sessions that pipeline queries and get answers in any order,
 * each with named bounds: answers in flight, answer bytes queued for a client that does not
 * read, a deadline for each whole message and for idleness, connections per worker and per
 * client address, and the oldest idle connection closed to make room (RFC 7766 6.2.3). It never
 * decides about policy: the query path does, and answers through the client's ops. */
#pragma once

#include <stddef.h>
#include <sys/socket.h>

struct worker;

/** Set up w's TCP state. @return 0 or -ENOMEM. */
int tcp_init(struct worker *w);

/** Listen on ss (SO_REUSEPORT); with tls, for DNS over TLS with the worker's credentials.
 *  @return 0 or a negative errno with a message in err. */
int tcp_listen(struct worker *w, const struct sockaddr_storage *ss, int tls, char *err,
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
