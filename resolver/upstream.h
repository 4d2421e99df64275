/* Forwarding to upstream resolvers for one worker loop. Queries in flight live in a fixed pool
 * (no allocation per query), are found by a random transaction ID, and time out through one
 * FIFO list and one timer: every attempt has the same timeout, so the list is in deadline order.
 * A truncated answer is fetched again over TCP, so the cache holds it whole. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "resolver/options.h"
#include "resolver/wire.h"

typedef struct upstream upstream_t;

/** Where an answer goes. Opaque to this module except `conn`, which upstream_forget() matches. */
struct upstream_client {
	void *udp;                     /**< The UDP listener the query came in on (the server's),
					 *   or NULL for TCP. */
	struct sockaddr_storage addr;  /**< The UDP client's address. */
	void *conn;                    /**< The TCP connection, or NULL for UDP. */
};

/** Delivers the upstream's answer for a forwarded query (reply NULL: no upstream answered in
 *  time), already carrying the client's ID. All arguments are borrowed for the duration of the
 *  call; the callback may modify reply in place. */
typedef void (*upstream_answer_cb)(void *ctx, const struct upstream_client *client,
				   const uint8_t *query, size_t query_len,
				   const struct wire_query *q, uint8_t *reply, size_t len);

/** Per-worker forwarding statistics. */
struct upstream_stats {
	uint64_t sent, answered, timeouts, mismatched, tcp_fallbacks, pool_full;
};

/** Forwarding state on loop (owned: upstream_close). NULL on failure, with *err set. */
upstream_t *upstream_new(uv_loop_t *loop, const struct options *o, upstream_answer_cb cb,
			 void *ctx, int *err);

/** Close the sockets and timers; the memory is freed once libuv has closed them all. NULL ok. */
void upstream_close(upstream_t *u);

/** Forward query (copied) for client. @return 0, -ENOBUFS when too many queries are in flight,
 *  -EMSGSIZE when the query is too large to keep. On error the callback never runs. */
int upstream_forward(upstream_t *u, const struct upstream_client *client, const uint8_t *query,
		     size_t len, const struct wire_query *q);

/** A TCP client went away: its queries still in flight will be answered to no one. */
void upstream_forget(upstream_t *u, const void *conn);

/** Statistics (borrowed). */
const struct upstream_stats *upstream_stats(const upstream_t *u);
