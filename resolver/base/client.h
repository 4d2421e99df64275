/* The client of one query, as its transport hands it to the query path: who asked, where the
 * question arrived, and how to answer. The query path answers only through ops, so it never
 * knows whether the question came over UDP, TCP, TLS or HTTPS; pending upstream queries keep a
 * copy and answer through the same ops later. */
#pragma once

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "resolver/base/wire.h"

struct client;

/** What a query came over (the query log's and the metrics' label). */
enum client_transport {
	CLIENT_UDP = 0,
	CLIENT_TCP,
	CLIENT_DOT, /**< DNS over TLS (RFC 7858). */
	CLIENT_DOH, /**< DNS over HTTPS (RFC 8484). */
};

/** The query log's and the metrics' names of enum client_transport. */
#define CLIENT_TRANSPORT_NAMES {"udp", "tcp", "dot", "doh"}
#define CLIENT_TRANSPORTS 4

/** A transport's answers. */
struct client_ops {
	/** Send ans, the answer to query (parsed as q), to c; the transport truncates, queues or
	 *  drops it as it must. Everything is borrowed for the call. */
	void (*reply)(const struct client *c, const uint8_t *query, const struct wire_query *q,
		      const uint8_t *ans, size_t len);
	/** A query of c that went upstream is over (after its reply, if any). May be NULL. */
	void (*done)(const struct client *c);
};

/** Where a datagram arrived, so that the answer leaves from that address (IP_PKTINFO). */
struct client_local {
	int ifindex;
	uint8_t family; /**< 0: unknown, let the kernel choose. */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} addr;
};

struct client {
	const struct client_ops *ops;
	void *session;                /**< The transport's: listener or connection. */
	struct sockaddr_storage addr; /**< The client's address and port. */
	struct client_local local;
	uint8_t stream;               /**< 1: a stream transport, no size limit but 65535. */
	uint8_t transport;            /**< enum client_transport: what it came over. */
	uint32_t stream_id;           /**< The transport's: DoH, the HTTP/2 stream to answer on. */
	uint64_t arrived_ns;          /**< uv_hrtime() when it arrived (0: not taken, no query log). */
};
