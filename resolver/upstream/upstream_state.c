/* The worker's random bytes and the end of its memory (struct upstream: upstream_state.h).
 * Random bytes come from getrandom() 256 at a time, kept in struct upstream, so that an ID or a
 * name's letter case costs no system call. The memory goes only when the last libuv handle that
 * points into it has closed. Must not touch a socket or a timer. */
#include "config.h"

#include "resolver/upstream/upstream_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Bytes from the kernel's CSPRNG, drawn 256 at a time. */
void upstream_state_random_bytes(upstream_t *u, void *out, size_t n)
{
	uint8_t *o = out;
	while (n > 0) {
		if (u->rnd_pos == sizeof(u->rnd)) {
			size_t got = 0;
			while (got < sizeof(u->rnd)) {
				ssize_t r = getrandom(u->rnd + got, sizeof(u->rnd) - got, 0);
				if (r > 0)
					got += (size_t)r;
				else if (errno != EINTR)
					abort(); /* getrandom() on a booted kernel does not fail. */
			}
			u->rnd_pos = 0;
		}
		size_t take = sizeof(u->rnd) - u->rnd_pos;
		if (take > n)
			take = n;
		memcpy(o, u->rnd + u->rnd_pos, take);
		u->rnd_pos += (unsigned)take;
		o += take;
		n -= take;
	}
}

uint16_t upstream_state_random16(upstream_t *u)
{
	uint8_t b[2];
	upstream_state_random_bytes(u, b, 2);
	return (uint16_t)(b[0] << 8 | b[1]);
}

void upstream_state_unref(upstream_t *u)
{
	if (--u->open_handles > 0)
		return;
	free(u->waiter_pool);
	free(u->pool);
	free(u->socks);
	free(u->buckets);
	free(u->recv_buf);
	free(u->deliver);
	free(u->out);
	for (unsigned i = 0; i < OPTIONS_MAX_ADDRS; i++)
		free(u->health[i].ticket);
	tls_creds_unref(u->tls);
	free(u);
}
