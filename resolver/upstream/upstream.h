/* Forwarding to upstream resolvers for one worker loop, built so that an off-path attacker
 * cannot get a forged answer accepted (Unbound's outside_network is the model): every attempt
 * goes out from its own connected UDP socket on a fresh random port, with a CSPRNG ID, random
 * letter case (0x20) and a DNS cookie, and a reply counts only if it comes to that socket from
 * that address and port and echoes ID, question (case included) and cookie. Identical questions
 * in flight share one upstream query. The upstream query is embargo's own (1232-octet EDNS, DO
 * and CD kept, nothing else of the client's). An error RCODE (SERVFAIL, REFUSED, FORMERR,
 * NOTIMP) moves a question to the next upstream, and no upstream is asked a question twice that
 * it answered so; timeouts move it on too, up to four attempts. Per-upstream RTT and health pick
 * the best: only real round trips and timeouts move them, never an RCODE a client can provoke.
 * A dead upstream is skipped until a probe finds it back. Queries in flight live in fixed
 * pools. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "resolver/base/client.h"
#include "resolver/observe/latency.h"
#include "resolver/base/options.h"
#include "resolver/base/wire.h"
#include "resolver/upstream/upstream_types.h"

/** Forwarding state on loop (owned: upstream_close). NULL on failure, with *err set. */
upstream_t *upstream_new(uv_loop_t *loop, const struct options *o, upstream_answer_cb cb,
			 void *ctx, int *err);

/** Close the sockets and timers; the memory is freed once libuv has closed them all. Queries
 *  in flight are dropped without callbacks. NULL is a no-op. */
void upstream_close(upstream_t *u);

/** Forward query (copied) for client c; with stale_ms > 0 the callback is asked to answer it
 *  from the cache (UPSTREAM_DUE) when no answer came within stale_ms. A client whose ops are
 *  NULL is a cache refresh: it joins no question already in flight (-EALREADY), never jostles,
 *  and refreshes are at most an eighth of the questions in flight. @return 0; -ENOBUFS when
 *  the pool is full and no query in it is old enough to jostle; -EMSGSIZE when the query is
 *  too large to keep. On error the callback never runs. */
int upstream_forward(upstream_t *u, const struct client *c, const uint8_t *query, size_t len,
		     const struct wire_query *q, unsigned stale_ms);

/** A session (a TCP connection) went away: its clients' answers go to no one (c->session is
 *  NULL in their callbacks). */
void upstream_forget(upstream_t *u, const void *session);

/** Questions in flight now (refreshes included). */
unsigned upstream_pending(const upstream_t *u);

/** Statistics (borrowed). */
const struct upstream_stats *upstream_stats(const upstream_t *u);

/** Time every accepted UDP answer into per_upstream[i] (i: the upstream's index in
 *  options.upstream; OPTIONS_MAX_ADDRS of them, borrowed, written on u's loop only), from the
 *  attempt's send. NULL stops it. */
void upstream_set_latency(upstream_t *u, struct latency_hist *per_upstream);

/** Is a local UDP port of this address family one that some worker's upstream socket holds
 *  now? (The loop guard: a query from such a port on this host is one of ours come back.)
 *  Any thread. */
bool upstream_is_own_port(int family, uint16_t port);

/** Refuse upstreams that are embargo's own listen addresses (a forwarding loop): an upstream
 *  equal to a listen address, or on a wildcard listener's port at an address of this host.
 *  @return 0, or -ELOOP with a message in err. */
int upstream_check_loop(const struct options *o, char *err, size_t errlen);

/** With tls:// upstreams, can their CAs (--upstream-ca, else the system's store) be read?
 *  @return 0, or a negative errno with the reason in err. */
int upstream_check_tls(const struct options *o, char *err, size_t errlen);
