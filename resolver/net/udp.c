/* UDP transport. The listener's socket is read by the worker itself (uv_poll, level-triggered):
 * up to RECV_BATCH datagrams per recvmmsg(), RECV_ROUNDS calls per wake-up, where uv_udp takes
 * at most 20 and then calls recvmmsg() again to see it empty. Answers go into a send queue of
 * preallocated slots, flushed before the loop blocks and after each round of I/O. It never
 * allocates per datagram and never looks at the policy: each batch goes whole to
 * query_handle_batch(). */
#include "config.h"

#include "resolver/net/udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resolver/query/answer.h"
#include "resolver/query/query.h"
#include "resolver/query/worker.h"

#define SENDQ_LEN 64
#define UDP_MAX 4096          /* Largest UDP answer sent (answer_udp_limit). */
#define RECV_BATCH QUERY_BATCH
#define RECV_ROUNDS 4         /* recvmmsg() calls per wake-up while they come back full. */
#define RECV_SIZE 8192        /* Longer UDP queries are dropped as truncated. */
#define UDP_RCVBUF (4 << 20)  /* Receive buffer asked for each UDP listener. */
#define CMSG_SPACE_PKTINFO 64 /* Room for one in_pktinfo or in6_pktinfo control message. */

/* Each allocated alone: a question upstream holds its listener (client.session) for the answer
 * until a reload closes it (the question then forgets it). */
struct listener {
	uv_poll_t poll;
	int fd;
	int family;
	int pktinfo; /* A wildcard address: answers need their source set. */
	struct worker *w;
};

struct send_item {
	int fd;
	struct sockaddr_storage addr;
	struct client_local local;
	uint64_t arrived_ns;  /* The query's arrival (0: untimed), for the answer latency. */
	uint8_t path;         /* How it was decided (enum query_log_decision). */
	uint16_t len;
	uint8_t buf[UDP_MAX];
};

struct udp_state {
	struct listener *listeners[OPTIONS_MAX_ADDRS];
	struct sockaddr_storage addrs[OPTIONS_MAX_ADDRS]; /* Each listener's. */
	unsigned nlisten;
	uint8_t *recv_buf;
	struct query_batch batch;
	struct sockaddr_storage from[RECV_BATCH];
	struct mmsghdr msgs[RECV_BATCH];
	struct iovec iov[RECV_BATCH];
	uint8_t control[RECV_BATCH][CMSG_SPACE_PKTINFO];
	struct send_item *sendq;
	unsigned nsend;
};

/* ---- Sending ----------------------------------------------------------------------------- */

/* Set the source of an answer: the address the query was sent to, on its interface. */
static size_t put_pktinfo(const struct send_item *it, uint8_t *control, size_t cap)
{
	memset(control, 0, cap);
	struct msghdr m = {.msg_control = control, .msg_controllen = cap};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (it->local.family == AF_INET) {
		struct in_pktinfo pi = {.ipi_ifindex = 0, .ipi_spec_dst = it->local.addr.v4};
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		return CMSG_SPACE(sizeof(pi));
	}
	struct in6_pktinfo pi = {.ipi6_addr = it->local.addr.v6,
				 .ipi6_ifindex = (unsigned)it->local.ifindex};
	c->cmsg_level = IPPROTO_IPV6;
	c->cmsg_type = IPV6_PKTINFO;
	c->cmsg_len = CMSG_LEN(sizeof(pi));
	memcpy(CMSG_DATA(c), &pi, sizeof(pi));
	return CMSG_SPACE(sizeof(pi));
}

void udp_flush(struct worker *w)
{
	struct udp_state *st = w->udp;
	struct mmsghdr msgs[SENDQ_LEN];
	struct iovec iov[SENDQ_LEN];
	uint8_t control[SENDQ_LEN][CMSG_SPACE_PKTINFO];
	unsigned i = 0;
	if (w->timed && st->nsend) {
		/* An answer is answered once it leaves: one clock read for the whole batch. */
		uint64_t now = uv_hrtime();
		for (unsigned j = 0; j < st->nsend; j++) {
			const struct send_item *it = &st->sendq[j];
			if (it->arrived_ns)
				latency_observe(&w->lat_path[it->path],
						now > it->arrived_ns ? now - it->arrived_ns : 0);
		}
	}
	while (i < st->nsend) {
		/* One sendmmsg() per run of replies on the same socket. */
		int fd = st->sendq[i].fd;
		unsigned n = 0;
		for (unsigned j = i; j < st->nsend && st->sendq[j].fd == fd; j++, n++) {
			struct send_item *it = &st->sendq[j];
			iov[n] = (struct iovec){.iov_base = it->buf, .iov_len = it->len};
			memset(&msgs[n], 0, sizeof(msgs[n]));
			msgs[n].msg_hdr.msg_name = &it->addr;
			msgs[n].msg_hdr.msg_namelen = it->addr.ss_family == AF_INET6
							      ? sizeof(struct sockaddr_in6)
							      : sizeof(struct sockaddr_in);
			msgs[n].msg_hdr.msg_iov = &iov[n];
			msgs[n].msg_hdr.msg_iovlen = 1;
			if (it->local.family) {
				msgs[n].msg_hdr.msg_control = control[n];
				msgs[n].msg_hdr.msg_controllen =
					put_pktinfo(it, control[n], sizeof(control[n]));
			}
		}
		unsigned sent = 0;
		while (sent < n) {
			int r = sendmmsg(fd, msgs + sent, n - sent, 0);
			if (r > 0) {
				sent += (unsigned)r;
			} else if (r < 0 && errno == EINTR) {
				continue;
			} else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				break; /* The socket buffer is full: what is left is lost. */
			} else {
				/* This datagram cannot go (its address, say): skip it only. */
				w->st.dropped++;
				sent++;
			}
		}
		w->st.dropped += n - sent;
		i += n;
	}
	st->nsend = 0;
}

static void send_udp(struct worker *w, const struct client *c, const uint8_t *bytes, size_t len)
{
	struct udp_state *st = w->udp;
	const struct listener *l = c->session;
	if (st->nsend == SENDQ_LEN)
		udp_flush(w);
	struct send_item *it = &st->sendq[st->nsend++];
	it->fd = l->fd;
	it->addr = c->addr;
	it->local = c->local;
	it->arrived_ns = c->arrived_ns;
	it->path = w->answer_path;
	it->len = (uint16_t)len;
	memcpy(it->buf, bytes, len);
}

/* Send an answer; when it exceeds what the client accepts, without its optional records, and
 * if it still does not fit, truncated (TC, question only). */
static void udp_reply(const struct client *c, const uint8_t *query, const struct wire_query *q,
		      const uint8_t *ans, size_t len)
{
	const struct listener *l = c->session;
	if (l->fd < 0)
		return;
	if (len > answer_udp_limit(q)) {
		uint8_t fit[4096];
		size_t n = wire_shrink(ans, len, answer_udp_limit(q), q->edns_do, fit);
		if (n) {
			send_udp(l->w, c, fit, n);
			return;
		}
	}
	if (len > answer_udp_limit(q)) {
		uint8_t tc[WIRE_HEADER + NAME_MAXWIRE + 4 + 64];
		int n = answer_error(tc, sizeof(tc), query, q, wire_rcode(ans), -1, NULL);
		if (n < 0)
			return;
		tc[2] |= WIRE_FLAG_TC >> 8;
		send_udp(l->w, c, tc, (size_t)n);
		return;
	}
	send_udp(l->w, c, ans, len);
}

static const struct client_ops UDP_OPS = {.reply = udp_reply, .done = NULL};

/* ---- Receiving --------------------------------------------------------------------------- */

/* Where the datagram was sent, from its control message. */
static void read_pktinfo(struct msghdr *m, struct client_local *local)
{
	local->family = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			local->family = AF_INET;
			local->ifindex = pi.ipi_ifindex;
			local->addr.v4 = pi.ipi_addr;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			local->family = AF_INET6;
			local->ifindex = (int)pi.ipi6_ifindex;
			local->addr.v6 = pi.ipi6_addr;
		}
	}
}

static void udp_readable(uv_poll_t *h, int status, int events)
{
	struct listener *l = h->data;
	struct worker *w = l->w;
	struct udp_state *st = w->udp;
	struct query_batch *b = &st->batch;
	(void)events;
	if (status < 0)
		return;
	for (unsigned round = 0; round < RECV_ROUNDS; round++) {
		int got = recvmmsg(l->fd, st->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return; /* Drained (EAGAIN); other errors are the socket's and pass. */
		b->n = 0;
		uint64_t arrived = w->timed ? uv_hrtime() : 0; /* One clock read per batch. */
		for (int i = 0; i < got; i++) {
			struct mmsghdr *m = &st->msgs[i];
			if (m->msg_hdr.msg_flags & MSG_TRUNC) {
				w->st.dropped++;
				continue;
			}
			unsigned k = b->n++;
			struct client *c = &b->client[k];
			c->ops = &UDP_OPS;
			c->session = l;
			c->stream = 0;
			c->arrived_ns = arrived;
			memcpy(&c->addr, &st->from[i], m->msg_hdr.msg_namelen);
			if (l->pktinfo)
				read_pktinfo(&m->msg_hdr, &c->local);
			else
				c->local.family = 0;
			b->pkt[k] = st->iov[i].iov_base;
			b->len[k] = m->msg_len;
		}
		for (int i = 0; i < got; i++) { /* What recvmmsg() changed of the headers. */
			st->msgs[i].msg_hdr.msg_namelen = sizeof(st->from[i]);
			if (st->msgs[i].msg_hdr.msg_control)
				st->msgs[i].msg_hdr.msg_controllen = CMSG_SPACE_PKTINFO;
		}
		query_handle_batch(w, b);
		if (got < RECV_BATCH)
			return;
	}
}

/* ---- Set-up ------------------------------------------------------------------------------ */

int udp_bound_socket(const struct sockaddr_storage *ss, int type, int reuseport)
{
	int fd = socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (type == SOCK_DGRAM) {
		/* Room for bursts: the default (~208 KiB) holds only ~256 queued queries. Best effort:
		 * the kernel caps it at net.core.rmem_max. */
		int size = UDP_RCVBUF;
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	}
	if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) ||
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (const struct sockaddr *)ss, options_addr_len(ss)) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int udp_init(struct worker *w)
{
	struct udp_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	w->udp = st;
	st->recv_buf = malloc((size_t)RECV_BATCH * RECV_SIZE);
	st->sendq = malloc(SENDQ_LEN * sizeof(*st->sendq));
	if (!st->recv_buf || !st->sendq)
		return -ENOMEM;
	for (unsigned i = 0; i < RECV_BATCH; i++) {
		st->iov[i] = (struct iovec){.iov_base = st->recv_buf + (size_t)i * RECV_SIZE,
					    .iov_len = RECV_SIZE};
		st->msgs[i].msg_hdr = (struct msghdr){
			.msg_name = &st->from[i],
			.msg_namelen = sizeof(st->from[i]),
			.msg_iov = &st->iov[i],
			.msg_iovlen = 1,
		};
	}
	return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Close l (no longer listed): the questions upstream that came through it forget it (their
 * answers, still cached, go to no one), and it is freed once its handle has closed. */
static void retire(struct worker *w, struct listener *l)
{
	worker_forget_session(w, l);
	uv_close((uv_handle_t *)&l->poll, on_listener_closed);
	close(l->fd);
	l->fd = -1;
}

int udp_listen(struct worker *w, const struct sockaddr_storage *ss, char *err, size_t errlen)
{
	struct udp_state *st = w->udp;
	char addr[80];
	options_format_addr(ss, addr, sizeof(addr));
	if (st->nlisten == OPTIONS_MAX_ADDRS) {
		snprintf(err, errlen, "cannot listen on UDP %s: too many listeners", addr);
		return -EMFILE;
	}
	struct listener *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "cannot listen on UDP %s: out of memory", addr);
		return -ENOMEM;
	}
	l->w = w;
	l->family = ss->ss_family;
	int fd = udp_bound_socket(ss, SOCK_DGRAM, 1);
	if (fd < 0) {
		free(l);
		snprintf(err, errlen, "cannot listen on UDP %s: %s", addr, strerror(-fd));
		return fd;
	}
	if (options_is_wildcard(ss)) {
		int one = 1;
		int rc = ss->ss_family == AF_INET6
				 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))
				 : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
		if (rc < 0) {
			rc = -errno;
			close(fd);
			free(l);
			snprintf(err, errlen, "cannot listen on UDP %s: PKTINFO: %s", addr, strerror(-rc));
			return rc;
		}
		l->pktinfo = 1;
		/* Every listener of this worker shares the headers: all get room for control. */
		for (unsigned i = 0; i < RECV_BATCH; i++) {
			st->msgs[i].msg_hdr.msg_control = st->control[i];
			st->msgs[i].msg_hdr.msg_controllen = CMSG_SPACE_PKTINFO;
		}
	}
	l->fd = fd;
	int rc = uv_poll_init_socket(&w->loop, &l->poll, fd);
	if (rc < 0) {
		close(fd); /* No handle to close. */
		free(l);
		snprintf(err, errlen, "cannot listen on UDP %s: %s", addr, uv_strerror(rc));
		return rc;
	}
	l->poll.data = l;
	rc = uv_poll_start(&l->poll, UV_READABLE, udp_readable);
	if (rc < 0) {
		uv_close((uv_handle_t *)&l->poll, on_listener_closed);
		close(fd);
		snprintf(err, errlen, "cannot listen on UDP %s: %s", addr, uv_strerror(rc));
		return rc;
	}
	st->addrs[st->nlisten] = *ss;
	st->listeners[st->nlisten++] = l;
	return 0;
}

int udp_listening(const struct worker *w, const struct sockaddr_storage *ss)
{
	return options_find_addr(w->udp->addrs, w->udp->nlisten, ss) >= 0;
}

void udp_unlisten(struct worker *w, const struct sockaddr_storage *ss)
{
	struct udp_state *st = w->udp;
	int i = options_find_addr(st->addrs, st->nlisten, ss);
	if (i < 0)
		return;
	struct listener *l = st->listeners[i];
	st->nlisten--;
	st->listeners[i] = st->listeners[st->nlisten];
	st->addrs[i] = st->addrs[st->nlisten];
	retire(w, l);
}

void udp_pause(struct worker *w)
{
	struct udp_state *st = w->udp;
	if (!st)
		return;
	for (unsigned i = 0; i < st->nlisten; i++)
		uv_poll_stop(&st->listeners[i]->poll);
}

void udp_close(struct worker *w)
{
	struct udp_state *st = w->udp;
	if (!st)
		return;
	while (st->nlisten)
		retire(w, st->listeners[--st->nlisten]);
}

void udp_free(struct worker *w)
{
	struct udp_state *st = w->udp;
	if (!st)
		return;
	free(st->recv_buf);
	free(st->sendq);
	free(st);
	w->udp = NULL;
}
