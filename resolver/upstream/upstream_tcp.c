/* TCP fetches and TLS upstreams (upstream_tcp.h): links are kept open and shared, one per
 * upstream and worker; a link frees its memory only when both its handles have closed. A link to
 * a tls:// upstream carries every octet through a GnuTLS client session (resolver/base/tls.c)
 * that verified the upstream's certificate, and its questions are attempts like UDP ones, timed
 * out by the FIFO of attempts. A question's answer over TCP is matched as over UDP (ID, question
 * with its case, cookie) except that a missing cookie is accepted. Must not send over UDP, and
 * never writes a question to a TLS link in clear text. */
#include "config.h"

#include "resolver/upstream/upstream_tcp.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/base/log.h"

#include "resolver/upstream/upstream_cookie.h"
#include "resolver/upstream/upstream_health.h"
#include "resolver/upstream/upstream_match.h"
#include "resolver/upstream/upstream_question.h"

#define FETCH_MAX 256         /* Questions waiting on TCP links per worker. */
#define FETCH_PER_CLIENT 16   /* Of those, asked first by one client (--ratelimit-prefix). */
#define LINK_IDLE_MS 10000    /* A link with nothing to wait for closes after this. */
#define LINK_RETRIES 8        /* Times a question moves to a new link when one is closed. */

/* One message written to a link (its own copy: the question may end before the write). */
struct link_write {
	uv_write_t req;
	uint8_t bytes[];
};

static void link_closed(uv_handle_t *h)
{
	struct tcp_link *l = h->data;
	if (--l->open_handles > 0)
		return;
	upstream_t *u = l->u;
	tls_session_free(l->tls);
	free(l->buf);
	free(l);
	upstream_state_unref(u);
}

/* Close l. The questions waiting on it fail (SERVFAIL), unless the upstream is closing; with
 * retry (the upstream closed or reset the connection, which servers do after some answers or
 * when idle), they move to a new link instead. */
static void link_close_retry(struct tcp_link *l, int retry)
{
	if (l->closing)
		return;
	l->closing = 1;
	upstream_t *u = l->u;
	if (u->links[l->upstream] == l)
		u->links[l->upstream] = NULL; /* New questions open a new link. */
	uv_close((uv_handle_t *)&l->tcp, link_closed);
	uv_close((uv_handle_t *)&l->timer, link_closed);
	while (l->head) {
		struct pending *p = l->head;
		upstream_question_link_unlink(p, 0);
		/* Moved up to LINK_RETRIES times; a server that closes (or resets) after each answer
		 * still answers one question per connection. */
		int again = retry && !u->closing && p->link_retried < LINK_RETRIES;
		p->link_retried += again;
		if (l->tls && again)
			upstream_tcp_tls_send(u, p, l->upstream); /* The same attempt, a new link. */
		else if (l->tls && !u->closing)
			upstream_question_attempt_failed(u, p); /* The next upstream, or the end. */
		else if (again)
			upstream_tcp_fetch_start(u, p, l->upstream, NULL, 0);
		else
			upstream_question_finish(u, p, NULL, 0);
	}
}

/* The TLS session of l failed (rc from tls_session_read): a handshake that failed, before any
 * answer, says the upstream cannot be used (a certificate not valid for its name, no common
 * protocol), so it is marked down and probed like one that does not answer; its questions go
 * to the next attempt. A failure after the handshake is a connection's end, as a reset. */
static void link_tls_failed(struct tcp_link *l, ssize_t rc)
{
	upstream_t *u = l->u;
	if (l->closing)
		return; /* A write's late error on a link closed already. */
	if (l->ready && rc == -EPIPE) {
		link_close_retry(l, 1); /* close_notify: the upstream closed an idle link. */
		return;
	}
	u->stats.tls_failures++;
	if (!l->ready) {
		char addr[80], why[256];
		options_format_addr(&u->o->upstream[l->upstream], addr, sizeof(addr));
		if (!tls_session_why(l->tls, why, sizeof(why))[0])
			snprintf(why, sizeof(why), "%s",
				 rc == -ETIMEDOUT       ? "not done within --timeout"
				 : rc == -ECONNREFUSED ? "the connection was refused"
						       : "the connection closed or failed before it was done");
		if (!u->health[l->upstream].down)
			log_warn("upstream tls://%s: TLS handshake failed: %s", addr, why);
		upstream_health_mark_down(u, l->upstream);
	}
	link_close_retry(l, l->ready);
}

void upstream_tcp_link_close(struct tcp_link *l)
{
	link_close_retry(l, 0);
}

static void link_written(uv_write_t *req, int status)
{
	struct tcp_link *l = req->data;
	free(req);
	/* The upstream closed or reset the connection under our writes: as when reading. */
	if (status < 0 && status != UV_ECANCELED) {
		if (l->tls && !l->ready)
			link_tls_failed(l, -EPIPE);
		else
			link_close_retry(l, 1);
	}
}

/* GnuTLS's records for l go out as they come (tls_push_cb): copied, since the session reuses
 * its buffer. */
static int link_push(void *ctx, const uint8_t *bytes, size_t len)
{
	struct tcp_link *l = ctx;
	if (l->closing)
		return -EPIPE;
	struct link_write *wr = malloc(sizeof(*wr) + len);
	if (!wr)
		return -ENOMEM;
	memcpy(wr->bytes, bytes, len);
	wr->req.data = l;
	uv_buf_t b = uv_buf_init((char *)wr->bytes, (unsigned)len);
	if (uv_write(&wr->req, (uv_stream_t *)&l->tcp, &b, 1, link_written) < 0) {
		free(wr);
		return -EPIPE;
	}
	return 0;
}

/* Write one message (2-octet length, then msg) to TLS link l. @return 0, or -1 when the
 * session failed (l is closing). */
static int link_tls_write(struct tcp_link *l, const uint8_t *msg, size_t len)
{
	uint8_t frame[2 + OUT_MAX];
	wire_put16(frame, (uint16_t)len);
	memcpy(frame + 2, msg, len);
	if (tls_session_write(l->tls, frame, 2 + len) == 0)
		return 0;
	l->u->stats.tls_failures++;
	link_close_retry(l, 1);
	return -1;
}

static void link_send(struct tcp_link *l, struct pending *p)
{
	/* An upstream that does not read: what waits to be written is bounded. */
	if (uv_stream_get_write_queue_size((uv_stream_t *)&l->tcp) > 64 * 1024) {
		upstream_tcp_link_close(l);
		return;
	}
	if (l->tls) {
		p->link_sent = uv_now(l->u->loop);
		p->link_sent_ns = uv_hrtime();
		(void)link_tls_write(l, p->query, p->len);
		return;
	}
	struct link_write *wr = malloc(sizeof(*wr) + 2 + p->len);
	if (!wr) {
		upstream_question_link_unlink(p, 0);
		p->why.given_up = 1;
		upstream_question_finish(l->u, p, NULL, 0);
		return;
	}
	p->link_sent = uv_now(l->u->loop);
	wire_put16(wr->bytes, p->len);
	memcpy(wr->bytes + 2, p->query, p->len);
	wr->req.data = l;
	uv_buf_t b = uv_buf_init((char *)wr->bytes, 2u + p->len);
	if (uv_write(&wr->req, (uv_stream_t *)&l->tcp, &b, 1, link_written) < 0) {
		free(wr);
		link_close_retry(l, 1);
	}
}

/* Room for at least 4 KiB more in l->buf, up to two whole messages. */
static void link_room(struct tcp_link *l)
{
	if (l->cap - l->len < 4096 && l->cap < 2 * 65537) {
		size_t cap = l->cap ? l->cap * 2 : 8192;
		if (cap > 2 * 65537)
			cap = 2 * 65537;
		uint8_t *b = realloc(l->buf, cap);
		if (b) {
			l->buf = b;
			l->cap = cap;
		}
	}
}

static void link_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tcp_link *l = h->data;
	(void)suggested;
	if (l->tls) {
		/* Ciphertext, fed to the session at once: the worker's datagram buffer, which
		 * nothing else uses between this and link_read. At most one record's worth, so
		 * that it always fits beside what the session holds (TLS_INPUT_MAX). */
		*buf = uv_buf_init((char *)l->u->recv_buf, 16384);
		return;
	}
	link_room(l);
	*buf = uv_buf_init((char *)l->buf + l->len, (unsigned)(l->cap - l->len));
}

/* Keep the ticket TLS link l's session got (TLS 1.3 sends it after the handshake: looked for at
 * each answer until there is one) for the next link to the same upstream. */
static void link_keep_ticket(struct tcp_link *l)
{
	uint8_t *t;
	size_t len;
	if (l->ticket_kept || tls_session_resume_data(l->tls, &t, &len) < 0)
		return;
	struct health *h = &l->u->health[l->upstream];
	free(h->ticket);
	h->ticket = t;
	h->ticket_len = len;
	l->ticket_kept = 1;
}

/* One whole message from the link: the answer of the question with its ID and exact question
 * (and cookie); anything else is ignored. */
static void link_message(struct tcp_link *l, const uint8_t *msg, size_t len)
{
	upstream_t *u = l->u;
	/* Over TLS an answer in another letter case is taken: the link is authenticated, so 0x20
	 * guards nothing there, and an upstream that does not keep case is not asked again. */
	struct pending *p = l->head;
	enum upstream_match m;
	while (p && (m = upstream_match_question(p, msg, len)) != UPSTREAM_MATCH_EXACT &&
	       !(m == UPSTREAM_MATCH_CASE && l->tls))
		p = p->link_next;
	if (!p || (p->cookie_sent && upstream_cookie_check(u, l->upstream, msg, len, 1) < 0)) {
		u->stats.mismatched++;
		return;
	}
	l->last_rx = uv_now(u->loop);
	if (l->tls) {
		/* An attempt's round trip, as over UDP: it moves the upstream's RTT. */
		uint64_t rtt = l->last_rx - p->link_sent;
		upstream_health_note_rtt(u, l->upstream, rtt);
		if (u->latency)
			latency_observe(&u->latency[l->upstream], uv_hrtime() - p->link_sent_ns);
		link_keep_ticket(l);
	}
	upstream_question_link_unlink(p, 1);
	unsigned rcode = upstream_match_full_rcode(msg, len);
	if (rcode != WIRE_RCODE_NOERROR && rcode != WIRE_RCODE_NXDOMAIN) {
		/* As over UDP: the next upstream may answer (over UDP first, like any attempt). */
		upstream_question_rejected(u, p, l->upstream, msg, len, rcode);
		return;
	}
	upstream_health_penalise_rejecters(u, p, l->upstream);
	upstream_question_finish(u, p, msg, len);
}

/* Take the whole messages out of l->buf. @return -1 when l closed meanwhile. */
static int link_parse(struct tcp_link *l)
{
	size_t off = 0;
	while (!l->closing && l->len - off >= 2) {
		size_t n = wire_get16(l->buf + off);
		if (l->len - off < 2 + n)
			break;
		link_message(l, l->buf + off + 2, n);
		off += 2 + n;
	}
	if (l->closing)
		return -1;
	if (off > 0) {
		memmove(l->buf, l->buf + off, l->len - off);
		l->len -= off;
	}
	if (l->len == l->cap && l->cap >= 2 * 65537) { /* Cannot happen with DNS messages. */
		upstream_tcp_link_close(l);
		return -1;
	}
	return 0;
}

/* The TLS handshake of l is done: what waited goes out. A probe's link brings its upstream
 * back: it took the connection and showed a certificate valid for its name, which a resolver
 * that is down does not; one that then does not answer (a TLS proxy before a dead resolver) is
 * marked down again by the timeouts of its questions, and its probe back-off goes on doubling
 * until an answer comes (health.unproven). */
static void link_tls_ready(struct tcp_link *l)
{
	upstream_t *u = l->u;
	l->ready = 1;
	u->stats.tls_handshakes++;
	u->stats.tls_resumed += tls_session_is_resumed(l->tls) != 0;
	if (l->probing) {
		l->probing = 0;
		u->health[l->upstream].unproven = u->health[l->upstream].down;
		upstream_health_mark_up(u, l->upstream);
	}
	for (struct pending *p = l->head, *next; p && !l->closing; p = next) {
		next = p->link_next;
		link_send(l, p);
	}
}

/* Decrypt what the session holds into l->buf and take the messages out, until it needs more
 * ciphertext. */
static void link_tls_pump(struct tcp_link *l)
{
	while (!l->closing) {
		link_room(l);
		if (l->cap == l->len) { /* No memory for what the session holds. */
			link_close_retry(l, 1);
			return;
		}
		ssize_t n = tls_session_read(l->tls, l->buf + l->len, l->cap - l->len);
		if (n < 0) {
			link_tls_failed(l, n);
			return;
		}
		if (!l->ready && tls_session_is_ready(l->tls))
			link_tls_ready(l);
		if (n == 0 && !tls_session_has_pending(l->tls))
			return;
		l->len += (size_t)n;
		if (link_parse(l) < 0)
			return;
	}
}

static void link_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct tcp_link *l = st->data;
	if (nread < 0) {
		if (l->tls && !l->ready) {
			/* Closed in the handshake: as a handshake that failed. */
			link_tls_failed(l, -EPROTO);
			return;
		}
		link_close_retry(l, 1);
		return;
	}
	if (l->tls) {
		if (nread > 0 && tls_session_feed(l->tls, (const uint8_t *)buf->base,
						  (size_t)nread) < 0) {
			link_tls_failed(l, -EPROTO);
			return;
		}
		link_tls_pump(l);
		return;
	}
	l->len += (size_t)nread;
	(void)link_parse(l);
}

static void link_connected(uv_connect_t *req, int status)
{
	struct tcp_link *l = req->data;
	if (l->closing)
		return;
	if (status < 0 || uv_read_start((uv_stream_t *)&l->tcp, link_alloc, link_read) < 0) {
		if (l->tls) /* Refused: as a handshake that failed, the upstream is down. */
			link_tls_failed(l, status == UV_ECONNREFUSED ? -ECONNREFUSED : -EPIPE);
		else
			upstream_tcp_link_close(l);
		return;
	}
	l->connected = 1;
	uv_tcp_nodelay(&l->tcp, 1);
	if (l->tls) {
		link_tls_pump(l); /* The ClientHello. */
		return;
	}
	l->ready = 1;
	for (struct pending *p = l->head, *next; p && !l->closing; p = next) {
		next = p->link_next;
		link_send(l, p);
	}
}

/* Every 100 ms: questions past their deadline fail; an idle link closes. */
static void link_tick(uv_timer_t *t)
{
	struct tcp_link *l = t->data;
	upstream_t *u = l->u;
	uint64_t now = uv_now(u->loop);
	/* Connecting (and shaking hands) for longer than a question may wait: the upstream drops
	 * SYNs, or never finishes its TLS handshake. */
	if (!l->ready && now >= l->opened + u->o->timeout_ms) {
		if (l->tls) {
			link_tls_failed(l, -ETIMEDOUT);
			return;
		}
		upstream_tcp_link_close(l);
		return;
	}
	/* Questions on a TLS link are attempts in the FIFO, which times them out; their clients'
	 * callbacks may end any question, so this walk is for the TCP fetches only. */
	for (struct pending *p = l->tls ? NULL : l->head, *next; p && !l->closing; p = next) {
		next = p->link_next;
		if (p->expire > now)
			continue;
		if (l->last_rx < p->link_sent) {
			/* Nothing at all came back since this question was written: the link is
			 * stuck (a wedged server, lost NAT state). Drop it, and what waits on it. */
			upstream_tcp_link_close(l);
			return;
		}
		upstream_question_link_unlink(p, 0);
		upstream_question_finish(u, p, NULL, 0);
	}
	if (!l->closing && l->nout == 0 && now >= l->idle_since + LINK_IDLE_MS)
		upstream_tcp_link_close(l);
}

static struct tcp_link *link_get(upstream_t *u, unsigned i)
{
	struct tcp_link *l = u->links[i];
	if (l)
		return l;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->u = u;
	l->upstream = i;
	uv_tcp_init(u->loop, &l->tcp);
	uv_timer_init(u->loop, &l->timer);
	l->tcp.data = l->timer.data = l->connect.data = l;
	l->open_handles = 2;
	u->open_handles++;
	l->idle_since = l->opened = uv_now(u->loop);
	u->links[i] = l;
	uv_timer_start(&l->timer, link_tick, 100, 100);
	if (u->o->upstream_tls[i]) {
		/* Its certificate must be valid for the name given, else for its address. */
		char name[NAME_MAXTEXT + 1];
		const struct sockaddr_storage *a = &u->o->upstream[i];
		if (u->o->upstream_tls_name[i][0])
			strcpy(name, u->o->upstream_tls_name[i]);
		else if (a->ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, name,
				  sizeof(name));
		else
			inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, name,
				  sizeof(name));
		l->tls = u->tls ? tls_client_session_new(u->tls, name, "dot", link_push, l) : NULL;
		if (!l->tls) {
			upstream_tcp_link_close(l);
			return NULL;
		}
		/* The last ticket: no full handshake if the upstream still takes it (one it does
		 * not take costs nothing but a full handshake, which verifies as always). */
		const struct health *h = &u->health[i];
		if (h->ticket)
			(void)tls_session_resume(l->tls, h->ticket, h->ticket_len);
	}
	if (uv_tcp_connect(&l->connect, &l->tcp, (const struct sockaddr *)&u->o->upstream[i],
			   link_connected) < 0) {
		upstream_tcp_link_close(l);
		return NULL;
	}
	return l;
}

/* Questions on links that p's first client's network asked first (as --ratelimit-prefix counts
 * a network: a /24, an IPv6 /56), at most FETCH_MAX to look at. Refreshes (no address) are one
 * network of their own. */
static unsigned fetches_of(upstream_t *u, const struct pending *p)
{
	const struct sockaddr_storage *who = &p->waiters->client.addr;
	struct options_cidr net = {.family = who->ss_family};
	if (who->ss_family == AF_INET6) {
		memcpy(net.addr, &((const struct sockaddr_in6 *)who)->sin6_addr, 16);
		net.prefix = u->o->ratelimit_v6_prefix;
	} else if (who->ss_family == AF_INET) {
		memcpy(net.addr, &((const struct sockaddr_in *)who)->sin_addr, 4);
		net.prefix = u->o->ratelimit_v4_prefix;
	}
	unsigned n = 0;
	for (unsigned i = 0; i < u->o->nupstream; i++) {
		const struct tcp_link *l = u->links[i];
		for (const struct pending *o = l ? l->head : NULL; o; o = o->link_next)
			n += o->waiters && options_cidr_match(&net, 1, &o->waiters->client.addr);
	}
	return n;
}

/* Put p at the end of l's questions, with an ID no other question on l has (or had, for an
 * answer that may still come). */
static void link_append(struct tcp_link *l, struct pending *p)
{
	int clash;
	do {
		uint16_t id = wire_get16(p->query);
		clash = 0;
		for (struct pending *o = l->head; o && !clash; o = o->link_next)
			clash = wire_get16(o->query) == id;
		unsigned n = l->nretired < 256 ? l->nretired : 256;
		for (unsigned k = 0; k < n && !clash; k++)
			clash = l->retired[k] == id;
		if (clash)
			wire_put16(p->query, upstream_state_random16(l->u));
	} while (clash);
	p->link_sent = 0;
	p->link = l;
	p->link_prev = l->tail;
	p->link_next = NULL;
	if (l->tail)
		l->tail->link_next = p;
	else
		l->head = p;
	l->tail = p;
	l->nout++;
	l->u->nfetches++;
}

/* Ask p's question of upstream i again over TCP, on the shared link (same case and cookie, an
 * ID no other question on the link has): its UDP answer, truncated[len] (NULL when p moves from
 * a closed link), had TC. With every link slot taken, or p's first client's network holding
 * its share of them, p's clients get the truncated answer (a UDP client retries over TCP
 * itself; the query path answers SERVFAIL to a TCP client), so one network's slow truncated
 * answers cannot turn everyone's into SERVFAIL. Other failures finish p with SERVFAIL. */
void upstream_tcp_fetch_start(upstream_t *u, struct pending *p, unsigned i,
			      const uint8_t *truncated, size_t len)
{
	int full = u->nfetches >= FETCH_MAX || (p->waiters && fetches_of(u, p) >= FETCH_PER_CLIENT);
	if (full || p->expire <= uv_now(u->loop)) {
		if (full) {
			u->stats.tcp_full++;
			p->why.given_up = 1; /* No room here: no verdict on the question. */
		}
		upstream_question_finish(u, p, full ? truncated : NULL, full ? len : 0);
		return;
	}
	struct tcp_link *l = link_get(u, i);
	if (!l) {
		p->why.given_up = 1;
		upstream_question_finish(u, p, NULL, 0);
		return;
	}
	link_append(l, p);
	u->stats.tcp_fallbacks++;
	if (l->ready)
		link_send(l, p);
}

void upstream_tcp_tls_send(upstream_t *u, struct pending *p, unsigned i)
{
	struct tcp_link *l = link_get(u, i);
	if (!l) {
		p->why.given_up = 1; /* No memory: its attempt times out, saying nothing of i. */
		return;
	}
	link_append(l, p);
	u->stats.sent++;
	if (l->ready)
		link_send(l, p);
}

void upstream_tcp_tls_probe(upstream_t *u, unsigned i)
{
	struct tcp_link *l = u->links[i];
	if (l && l->probing && !l->ready)
		return; /* One already shaking hands to see. */
	if (l && l->ready) /* Questions timed out on it: it proves nothing; a new one will. */
		link_close_retry(l, 1);
	l = link_get(u, i);
	u->stats.probes++;
	if (l)
		l->probing = 1;
}
