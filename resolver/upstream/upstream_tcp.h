/* The TCP fetch of a question whose UDP answer was truncated: one shared, pipelined link per
 * upstream, its questions written back to back and their answers matched as they come, in any
 * order; bounded per worker and per client network. Private to resolver/upstream/. Must not
 * send over UDP: an error RCODE hands the question back to upstream_question, whose next attempt
 * goes over UDP like any other. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "resolver/upstream/upstream_state.h"

/** Ask p's question of upstream i again over TCP; truncated[len] (borrowed for the call) is its
 *  UDP answer with TC, given to p's clients when no link has room (NULL when p moves from a
 *  closed link). */
void upstream_tcp_fetch_start(upstream_t *u, struct pending *p, unsigned i,
			      const uint8_t *truncated, size_t len);

/** Close link l; the questions waiting on it fail. Its memory goes in the close callbacks. */
void upstream_tcp_link_close(struct tcp_link *l);

/** Send p's attempt (prepared for upstream i, a tls:// one) over i's shared TLS link, opened
 *  when there is none; p stays in the FIFO of attempts, which times it out as over UDP. */
void upstream_tcp_tls_send(upstream_t *u, struct pending *p, unsigned i);

/** Probe dead TLS upstream i: a link is opened (if none is), and its verified handshake marks
 *  i up. */
void upstream_tcp_tls_probe(upstream_t *u, unsigned i);
