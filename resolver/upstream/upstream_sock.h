/* One attempt's or probe's connected UDP socket, on a port the kernel picks at random, from the
 * worker's fixed pool (struct outsock), and the process-wide count of the local ports these hold
 * (the loop guard). Private to resolver/upstream/. A socket sends the one datagram it is opened
 * with; it must not read or match anything: u->readable (upstream_reply) reads it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resolver/upstream/upstream_state.h"

/** A connected UDP socket to upstream i that has sent data[len] (borrowed for the call).
 *  @return it (u's: upstream_sock_close ends it), or NULL (counted) when none can be had. */
struct outsock *upstream_sock_open(upstream_t *u, unsigned i, const uint8_t *data, size_t len);

/** Close s and detach it from its question or probe; its slot returns to the pool in the close
 *  callback. */
void upstream_sock_close(struct outsock *s);

/** Does some worker's upstream socket hold this local UDP port of this family now? Any thread. */
bool upstream_sock_is_own_port(int family, uint16_t port);
