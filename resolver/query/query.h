/* The life of a query, whatever its transport: admit (access list, rate limit, parse), decide
 * (policy, then cache, then upstream) and answer through the client's ops. Transports call in
 * here; it must never know the client's socket or include a transport's header. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "resolver/base/client.h"
#include "resolver/base/wire.h"

struct worker;
struct upstream_failure;

#define QUERY_BATCH 64

/** Queries received together (one recvmmsg()): parsed, looked up together, answered in order.
 *  The transport fills n, client, pkt and len; the rest is the query path's scratch. */
struct query_batch {
	unsigned n;
	struct client client[QUERY_BATCH];
	const uint8_t *pkt[QUERY_BATCH];
	size_t len[QUERY_BATCH];
	struct wire_query q[QUERY_BATCH];
	uint8_t mode[QUERY_BATCH]; /* What query_admit() let through. */
};

/** Answer the query pkt[len] from c (borrowed for the call; copied if it goes upstream).
 *  @return 1 when it went upstream: c->ops->done() follows once it is over; else 0. */
int query_handle(struct worker *w, const struct client *c, const uint8_t *pkt, size_t len);

/** Answer every query of b; b->n is 0 afterwards. */
void query_handle_batch(struct worker *w, struct query_batch *b);

/** The worker's upstream answer callback (upstream_answer_cb); ctx is the worker. */
int query_upstream_answer(void *ctx, const struct client *c, const uint8_t *query,
			  const struct wire_query *q, uint8_t *reply, size_t len,
			  const struct upstream_failure *why, unsigned flags);
