/* Upstream sockets (upstream_sock.h): one connected UDP socket per attempt, so the kernel picks
 * a fresh random port for each and delivers only what comes from the upstream's address and
 * port. Slots return to the pool only in their close callback. Must not read the socket: that
 * is u->readable's job. */
#include "config.h"

#include "resolver/upstream/upstream_sock.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

/* Local ports held by upstream sockets of every worker, per address family, counted. */
static _Atomic uint8_t own_ports[2][65536];

static int family_index(int family)
{
	return family == AF_INET6 ? 1 : 0;
}

bool upstream_sock_is_own_port(int family, uint16_t port)
{
	return atomic_load_explicit(&own_ports[family_index(family)][port], memory_order_relaxed) != 0;
}

static void sock_closed(uv_handle_t *h)
{
	struct outsock *s = h->data;
	upstream_t *u = s->u;
	s->next_free = u->free_socks;
	u->free_socks = s;
	upstream_state_unref(u);
}

/* Close s; its slot returns to the pool in the close callback. */
void upstream_sock_close(struct outsock *s)
{
	upstream_t *u = s->u;
	if (s->p && s->p->sock == s)
		s->p->sock = NULL;
	s->p = NULL;
	if (s->probe && u->health[s->upstream].probe == s)
		u->health[s->upstream].probe = NULL;
	if (s->port)
		atomic_fetch_sub_explicit(&own_ports[s->family][s->port], 1, memory_order_relaxed);
	uv_close((uv_handle_t *)&s->poll, sock_closed);
	close(s->fd); /* The poll is stopped by uv_close(); the fd may go now. */
	s->fd = -1;
}

struct outsock *upstream_sock_open(upstream_t *u, unsigned i, const uint8_t *data, size_t len)
{
	const struct sockaddr_storage *to = &u->o->upstream[i];
	struct outsock *s = u->free_socks;
	if (!s) {
		u->stats.sockets_full++;
		return NULL;
	}
	int fd = socket(to->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		u->stats.sockets_full++;
		return NULL;
	}
	/* Never fragment what we send, and ignore path-MTU news (ICMP that anyone can forge):
	 * with a 1232-octet EDNS size the answers need no fragments either. */
	int omit = to->ss_family == AF_INET6 ? IPV6_PMTUDISC_OMIT : IP_PMTUDISC_OMIT;
	if (to->ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &omit, sizeof(omit));
	else
		(void)setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &omit, sizeof(omit));
	/* connect() binds an ephemeral port that Linux picks at random for each socket, and from
	 * then on the kernel delivers only datagrams from the upstream's address and port. */
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	if (connect(fd, (const struct sockaddr *)to, options_addr_len(to)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&local, &llen) < 0 ||
	    uv_poll_init_socket(u->loop, &s->poll, fd) < 0) {
		close(fd);
		u->stats.sockets_full++;
		return NULL;
	}
	u->free_socks = s->next_free;
	u->open_handles++;
	s->poll.data = s;
	s->fd = fd;
	s->u = u;
	s->p = NULL;
	s->probe = 0;
	s->upstream = (uint8_t)i;
	s->port = ntohs(local.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&local)->sin6_port
						    : ((struct sockaddr_in *)&local)->sin_port);
	/* An IPv4-mapped destination makes this an IPv4 flow: its port is taken among IPv4's. */
	s->family = (uint8_t)family_index(
		to->ss_family == AF_INET6 &&
				IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)to)->sin6_addr)
			? AF_INET
			: to->ss_family);
	atomic_fetch_add_explicit(&own_ports[s->family][s->port], 1, memory_order_relaxed);
	s->sent_at = uv_now(u->loop);
	s->sent_ns = u->latency ? uv_hrtime() : 0;
	if (uv_poll_start(&s->poll, UV_READABLE, u->readable) < 0) {
		upstream_sock_close(s);
		return NULL;
	}
	/* A failed send (EAGAIN, unreachable) is retried by the timeout like a lost packet. */
	if (send(fd, data, len, 0) >= 0)
		u->stats.sent++;
	return s;
}
