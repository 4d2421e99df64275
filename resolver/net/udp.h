/* UDP for one worker: listeners read in recvmmsg() batches handed to the query path whole, and
 * answers queued and flushed with one sendmmsg() per socket run and loop iteration. A wildcard
 * listener learns each datagram's destination (IP_PKTINFO, IPV6_RECVPKTINFO) and answers from
 * it, so clients of a multi-homed host see the address they asked. It never decides about
 * policy: the query path does, and answers through the client's ops. */
#pragma once

#include <stddef.h>
#include <sys/socket.h>

struct worker;

/** Set up w's UDP state (buffers preallocated once). @return 0 or -ENOMEM. */
int udp_init(struct worker *w);

/** Listen on ss (SO_REUSEPORT: every worker binds it). @return 0 or a negative errno with a
 *  message in err. */
int udp_listen(struct worker *w, const struct sockaddr_storage *ss, char *err, size_t errlen);

/** Is w listening on ss? */
int udp_listening(const struct worker *w, const struct sockaddr_storage *ss);

/** Close w's listener on ss, if any (a reload; flush the send queue first). Answers still due
 *  upstream for queries that came through it go to no one. */
void udp_unlisten(struct worker *w, const struct sockaddr_storage *ss);

/** Send every queued answer. */
void udp_flush(struct worker *w);

/** Stop reading and close every listener (their polls close with the loop). */
void udp_close(struct worker *w);

/** Stop reading queries; the sockets stay open for the answers still due. */
void udp_pause(struct worker *w);

/** Free w's UDP state once its loop has closed every handle. */
void udp_free(struct worker *w);

/** A socket of the given type bound to ss (shared by the TCP listeners). With reuseport,
 *  each worker may bind the same address. @return the fd or a negative errno. */
int udp_bound_socket(const struct sockaddr_storage *ss, int type, int reuseport);
