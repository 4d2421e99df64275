/* TCP listeners and the accept path: connections sit in one list per worker, oldest first, so
 * that the oldest idle one is found for eviction. A new connection is admitted before it costs
 * anything: the access list, the per-address cap, room under the worker's cap (evicting the
 * oldest idle connection, RFC 7766 6.2.3) and, for DoT and DoH, --tls-handshake-rate, all
 * before a TLS handshake. What a connection does once accepted is tcp_conn.c's. It never reads
 * or writes a connection itself, and never looks at a query. */
#include "config.h"

#include "resolver/net/tcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resolver/net/tcp_conn.h"
#include "resolver/net/udp.h"
#include "resolver/query/worker.h"

struct tcp_listener { /* Each allocated alone, freed when its handle has closed. */
	uv_tcp_t tcp;
	struct worker *w;
	enum tcp_kind kind;
};

/* ---- Accepting -------------------------------------------------------------------------- */

static int same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	/* An IPv6 host owns its whole /64. */
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 8) == 0;
}

/* Room for the new connection fresh (already listed, last): under the per-address cap, and
 * under the worker's cap once the oldest idle connection (if any) is closed. @return 0 or -1. */
static int make_room(struct worker *w, struct tcp_conn *fresh)
{
	struct tcp_state *st = w->tcp;
	unsigned same = 0;
	struct tcp_conn *idle = NULL;
	for (struct tcp_conn *c = st->head; c; c = c->next) {
		if (c == fresh)
			continue;
		if (same_host(&c->client.addr, &fresh->client.addr))
			same++;
		if (!idle && tcp_conn_is_idle(c))
			idle = c;
	}
	if (same >= w->o->tcp_per_addr)
		return -1;
	if (st->nconns - 1 < w->o->tcp_max_conns)
		return 0;
	if (!idle)
		return -1;
	w->st.tcp_evicted++;
	tcp_conn_close(idle);
	return 0;
}

static void on_accept(uv_stream_t *server, int status)
{
	struct tcp_listener *l = server->data;
	struct worker *w = l->w;
	struct tcp_state *st = w->tcp;
	if (status < 0)
		return;
	struct tcp_conn *c = tcp_conn_new(w);
	if (!c)
		return;
	c->prev = st->tail;
	if (st->tail)
		st->tail->next = c;
	else
		st->head = c;
	st->tail = c;
	st->nconns++;
	w->st.tcp_conns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		tcp_conn_close(c);
		return;
	}
	int plen = sizeof(c->client.addr);
	uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->client.addr, &plen);
	/* Only clients that would be answered take a slot (or make room by evicting one), and
	 * all of it before a TLS handshake costs anything. */
	enum options_acl acl = admit_access(w->admit, &c->client.addr);
	c->accepted = uv_now(&w->loop);
	if (acl == OPTIONS_ACL_DROP || acl == OPTIONS_ACL_REFUSE) {
		w->st.tcp_refused++;
		tcp_conn_close(c);
		return;
	}
	/* Over its network's handshake cap: closed before it can make room (evict another). */
	if (l->kind != TCP_KIND_DNS && admit_handshake(w->admit, &c->client.addr, c->accepted) < 0) {
		tcp_conn_close(c); /* Counted by admission (tls_rate_limited). */
		return;
	}
	if (make_room(w, c) < 0) {
		w->st.tcp_refused++;
		tcp_conn_close(c);
		return;
	}
	if (l->kind != TCP_KIND_DNS && tcp_conn_secure(c, l->kind == TCP_KIND_DOH) < 0)
		return;
	tcp_conn_start(c);
}

/* ---- Set-up ------------------------------------------------------------------------------ */

int tcp_init(struct worker *w)
{
	w->tcp = calloc(1, sizeof(*w->tcp));
	return w->tcp ? 0 : -ENOMEM;
}

static void on_listener_closed(uv_handle_t *h)
{
	free(h->data);
}

int tcp_listen(struct worker *w, const struct sockaddr_storage *ss, enum tcp_kind kind, char *err,
	       size_t errlen)
{
	struct tcp_state *st = w->tcp;
	char addr[80];
	options_format_addr(ss, addr, sizeof(addr));
	if (st->nlisten == sizeof(st->listeners) / sizeof(*st->listeners)) {
		snprintf(err, errlen, "cannot listen on TCP %s: too many listeners", addr);
		return -EMFILE;
	}
	struct tcp_listener *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "cannot listen on TCP %s: out of memory", addr);
		return -ENOMEM;
	}
	l->w = w;
	l->kind = kind;
	int fd = udp_bound_socket(ss, SOCK_STREAM, 1);
	if (fd < 0) {
		free(l);
		snprintf(err, errlen, "cannot listen on TCP %s: %s", addr, strerror(-fd));
		return fd;
	}
	uv_tcp_init(&w->loop, &l->tcp);
	l->tcp.data = l;
	int rc = uv_tcp_open(&l->tcp, fd);
	if (rc < 0)
		close(fd);
	else
		rc = uv_listen((uv_stream_t *)&l->tcp, 256, on_accept);
	if (rc < 0) {
		uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
		snprintf(err, errlen, "cannot listen on TCP %s: %s", addr, uv_strerror(rc));
		return rc;
	}
	st->addrs[st->nlisten] = *ss;
	st->listeners[st->nlisten++] = l;
	return 0;
}

int tcp_listening(const struct worker *w, const struct sockaddr_storage *ss)
{
	return options_find_addr(w->tcp->addrs, w->tcp->nlisten, ss) >= 0;
}

void tcp_unlisten(struct worker *w, const struct sockaddr_storage *ss)
{
	struct tcp_state *st = w->tcp;
	int i = options_find_addr(st->addrs, st->nlisten, ss);
	if (i < 0)
		return;
	uv_close((uv_handle_t *)&st->listeners[i]->tcp, on_listener_closed);
	st->nlisten--;
	st->listeners[i] = st->listeners[st->nlisten];
	st->addrs[i] = st->addrs[st->nlisten];
}

void tcp_stop_accepting(struct worker *w)
{
	struct tcp_state *st = w->tcp;
	if (!st)
		return;
	while (st->nlisten) {
		struct tcp_listener *l = st->listeners[--st->nlisten];
		uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
	}
}

void tcp_close(struct worker *w)
{
	struct tcp_state *st = w->tcp;
	if (!st)
		return;
	tcp_stop_accepting(w);
	while (st->head)
		tcp_conn_close(st->head);
}

void tcp_free(struct worker *w)
{
	free(w->tcp);
	w->tcp = NULL;
}

unsigned tcp_open_count(const struct worker *w)
{
	return w->tcp ? w->tcp->nconns : 0;
}
