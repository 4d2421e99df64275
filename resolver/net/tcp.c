/* TCP transport. Connections sit in one list per worker, oldest first, so that the oldest idle
 * one is found for eviction. Each has one timer, re-armed for whichever deadline is nearest: a
 * message that has begun must be whole within the idle timeout of its first byte (more bytes do
 * not extend it), and a connection with nothing to do closes after the idle timeout. Answers
 * are written at once; their bytes count as queued until libuv has written them, and above the
 * bound reading (and answering what is buffered) stops until the client drains them. A DoT
 * connection (RFC 7858) is the same session with GnuTLS between the socket and the messages
 * (resolver/net/tls.c): its ciphertext is fed in, the plaintext framed as on port 53, and its
 * handshake must be done within --tls-handshake-timeout. It never looks at the policy or the
 * cache: each message goes whole to query_handle(). */
#include "config.h"

#include "resolver/net/tcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resolver/query/query.h"
#include "resolver/net/tls.h"
#include "resolver/net/udp.h"
#include "resolver/query/worker.h"

#define TCP_MAX_INFLIGHT 64 /* Upstream questions per connection; reading pauses above it. */
#define READ_MAX (2 * 65537)
#define TLS_READ 16384 /* Ciphertext read at once from a DoT connection. */
#define TLS_CORK_MAX 16384 /* Answers held for one record at most, before they go out. */

struct tcp_listener { /* Each allocated alone, freed when its handle has closed. */
	uv_tcp_t tcp;
	struct worker *w;
	int tls; /* DNS over TLS. */
};

struct tcp_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	struct client client;        /* Its session points back here. */
	struct worker *w;
	struct tcp_conn *prev, *next;
	tls_session_t *tls;          /* DoT: the session between the socket and buf. */
	uint64_t accepted;           /* When it was accepted (the handshake's deadline runs). */
	int tls_failed;              /* The session failed: its alert goes out, then it closes. */
	int corked;                  /* Answers to this batch of questions are held... */
	size_t cork_bytes;           /* ...this many octets of them so far. */
	uint8_t *buf;
	size_t len, cap;
	size_t queued;               /* Answer bytes handed to libuv and not yet written. */
	uint64_t msg_started;        /* When the first byte of a partial message came; 0: none. */
	uint64_t last_active;        /* Last whole message read or answer written. */
	unsigned inflight;
	int reading;
	int processing;              /* conn_process() is running: a nested call only asks again. */
	int again;
	int eof;                     /* The client half-closed: answer what is in flight, then close. */
	int uncounted;               /* Closed: its queued bytes left the worker's total. */
	int open_handles;
	int closing;
};

struct tcp_write {
	uv_write_t req;
	struct tcp_conn *conn;
	size_t len;
	uint8_t bytes[];
};

struct tcp_state {
	struct tcp_listener *listeners[OPTIONS_MAX_ADDRS];
	struct sockaddr_storage addrs[OPTIONS_MAX_ADDRS]; /* Each listener's. */
	unsigned nlisten;
	struct tcp_conn *head, *tail; /* Oldest first. */
	unsigned nconns;
	size_t queued;                /* Answer bytes queued to all open connections. */
	uint8_t tls_in[TLS_READ];     /* Ciphertext just read, before the session takes it. */
	uint8_t frame[2 + 65535];     /* A DoT answer with its length, before encryption. */
};

static void conn_close(struct tcp_conn *c);
static void conn_resume(struct tcp_conn *c);
static void conn_arm(struct tcp_conn *c);

/* ---- Answers ------------------------------------------------------------------------------ */

/* The worker's answers waiting for slow readers exceed --tcp-max-queued-total: close the
 * connections holding the most until they fit (Unbound's stream-wait-size), so that many
 * clients that never read cannot hold each its own bound at once. */
static void shed(struct worker *w)
{
	struct tcp_state *st = w->tcp;
	while (st->queued > w->o->tcp_max_queued_total) {
		struct tcp_conn *most = NULL;
		for (struct tcp_conn *c = st->head; c; c = c->next)
			if (!most || c->queued > most->queued)
				most = c;
		if (!most || most->queued == 0)
			return;
		w->st.tcp_shed++;
		conn_close(most);
	}
}

static void written(uv_write_t *req, int status)
{
	struct tcp_write *wr = (struct tcp_write *)req;
	struct tcp_conn *c = wr->conn;
	c->queued -= wr->len;
	if (!c->uncounted)
		c->w->tcp->queued -= wr->len;
	free(wr);
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	c->last_active = uv_now(&c->w->loop);
	conn_resume(c);
}

/* Hand wr (wr->len bytes) to libuv and count it as queued. @return 0, or -1 (c is closed). */
static int conn_queue(struct tcp_conn *c, struct tcp_write *wr)
{
	wr->conn = c;
	uv_buf_t b = uv_buf_init((char *)wr->bytes, (unsigned)wr->len);
	if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, written) < 0) {
		free(wr);
		conn_close(c);
		return -1;
	}
	c->queued += wr->len;
	c->w->tcp->queued += wr->len;
	if (c->w->tcp->queued > c->w->o->tcp_max_queued_total)
		shed(c->w);
	return 0;
}

/* GnuTLS's output for c (the session's push function): written as an answer is. */
static int tls_out(void *ctx, const uint8_t *bytes, size_t len)
{
	struct tcp_conn *c = ctx;
	if (c->closing)
		return -EPIPE;
	struct tcp_write *wr = malloc(sizeof(*wr) + len);
	if (!wr)
		return -ENOMEM;
	wr->len = len;
	memcpy(wr->bytes, bytes, len);
	return conn_queue(c, wr) < 0 ? -EPIPE : 0;
}

static void tcp_reply(const struct client *cl, const uint8_t *query, const struct wire_query *q,
		      const uint8_t *ans, size_t len)
{
	struct tcp_conn *c = cl->session;
	(void)query;
	(void)q;
	if (!c || c->closing)
		return;
	/* Reading stops at the bound, but answers to questions already upstream still come: a
	 * client that lets them pile up to four times the bound is closed. */
	if (c->queued + 2 + len > 4 * c->w->o->tcp_max_queued) {
		c->w->st.tcp_timeouts++;
		conn_close(c);
		return;
	}
	if (c->tls) {
		if (c->tls_failed || len > 65535)
			return;
		uint8_t *frame = c->w->tcp->frame;
		wire_put16(frame, (uint16_t)len);
		memcpy(frame + 2, ans, len);
		int rc = tls_session_write(c->tls, frame, 2 + len);
		/* A cork holds a batch's answers for fewer records and writes, up to a bound: past
		 * it they go out, and count as queued like any. */
		if (rc == 0 && c->corked && (c->cork_bytes += 2 + len) >= TLS_CORK_MAX) {
			rc = tls_session_uncork(c->tls);
			tls_session_cork(c->tls);
			c->cork_bytes = 0;
		}
		if (rc < 0 && !c->closing) {
			c->w->st.tls_failed++;
			conn_close(c);
		}
		return;
	}
	struct tcp_write *wr = malloc(sizeof(*wr) + 2 + len);
	if (!wr) {
		conn_close(c);
		return;
	}
	wr->len = 2 + len;
	wire_put16(wr->bytes, (uint16_t)len);
	memcpy(wr->bytes + 2, ans, len);
	conn_queue(c, wr);
}

/* A question that went upstream is over (its answer, if any, is queued). */
static void tcp_done(const struct client *cl)
{
	struct tcp_conn *c = cl->session;
	if (!c)
		return; /* Closed meanwhile. */
	c->inflight--;
	if (!c->closing)
		conn_resume(c);
}

static const struct client_ops TCP_OPS = {.reply = tcp_reply, .done = tcp_done};

/* ---- Sessions ---------------------------------------------------------------------------- */

static void conn_closed(uv_handle_t *h)
{
	struct tcp_conn *c = h->data;
	if (--c->open_handles > 0)
		return;
	tls_session_free(c->tls);
	free(c->buf);
	free(c);
}

static void conn_close(struct tcp_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	struct worker *w = c->w;
	struct tcp_state *st = w->tcp;
	if (c->prev)
		c->prev->next = c->next;
	else
		st->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		st->tail = c->prev;
	st->nconns--;
	/* Its answers still queued are freed as libuv cancels them; they count no more. */
	st->queued -= c->queued;
	c->uncounted = 1;
	if (c->inflight > 0)
		worker_forget_session(w, c);
	/* Questions it starts from here on (answering may re-enter it) go to no one. */
	c->client.session = NULL;
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
	uv_close((uv_handle_t *)&c->timer, conn_closed);
}

/* May be closed to make room: nothing in flight and nothing queued (a partial message, which
 * a client can keep sending a byte at a time, does not protect it). */
static int conn_is_idle(const struct tcp_conn *c)
{
	return c->inflight == 0 && c->queued == 0;
}

static void conn_timeout(uv_timer_t *t)
{
	struct tcp_conn *c = t->data;
	struct worker *w = c->w;
	uint64_t now = uv_now(&w->loop);
	if (c->tls && !tls_session_is_ready(c->tls) && !c->tls_failed) {
		/* Until the handshake is done, its own deadline is the only one. */
		if (now < c->accepted + w->o->tls_handshake_ms) {
			conn_arm(c);
			return;
		}
		w->st.tls_handshake_timeouts++;
		conn_close(c);
		return;
	}
	uint64_t since = c->msg_started ? c->msg_started : c->last_active;
	if (c->inflight == 0 && now >= since + w->o->tcp_idle_ms) {
		w->st.tcp_timeouts++;
		conn_close(c);
		return;
	}
	conn_arm(c);
}

/* Arm the timer for the nearest deadline. While questions are upstream none runs: they end
 * within the upstream timeout, and the deadline is then counted from the last activity. */
static void conn_arm(struct tcp_conn *c)
{
	if (c->closing)
		return;
	uint64_t now = uv_now(&c->w->loop);
	uint64_t since = c->msg_started ? c->msg_started : c->last_active;
	uint64_t at = since + c->w->o->tcp_idle_ms;
	if (c->inflight > 0)
		at = now + c->w->o->tcp_idle_ms;
	if (c->tls && !tls_session_is_ready(c->tls) && !c->tls_failed)
		at = c->accepted + c->w->o->tls_handshake_ms;
	uv_timer_start(&c->timer, conn_timeout, at > now ? at - now : 0, 0);
}

static void conn_grow(struct tcp_conn *c);

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tcp_conn *c = h->data;
	(void)suggested;
	if (c->tls) {
		*buf = uv_buf_init((char *)c->w->tcp->tls_in, TLS_READ);
		return;
	}
	conn_grow(c);
	*buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* Room for the next read or decryption into buf: grow it while it has little left. */
static void conn_grow(struct tcp_conn *c)
{
	if (c->cap - c->len < 4096 && c->cap < READ_MAX) {
		size_t cap = c->cap ? c->cap * 2 : 4096;
		if (cap > READ_MAX)
			cap = READ_MAX;
		uint8_t *b = realloc(c->buf, cap);
		if (b) {
			c->buf = b;
			c->cap = cap;
		}
	}
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* May this connection take another message now? */
static int conn_may_process(const struct tcp_conn *c)
{
	return !c->closing && c->inflight < TCP_MAX_INFLIGHT &&
	       c->queued < c->w->o->tcp_max_queued;
}

/* Answer every complete message in the buffer (RFC 7766: answers may go out in any order),
 * stopping while too many are in flight or too many answer bytes are queued. Answering may end
 * other questions of this connection (a full pool gives up an old one) and so call back into
 * here: such a nested call only asks the running one to go round again. */
static void conn_process(struct tcp_conn *c)
{
	if (c->processing) {
		c->again = 1;
		return;
	}
	c->processing = 1;
	size_t off = 0;
	do {
		c->again = 0;
		while (conn_may_process(c) && c->len - off >= 2) {
			size_t flen = wire_get16(c->buf + off);
			if (c->len - off < 2 + flen)
				break;
			c->last_active = uv_now(&c->w->loop);
			off += 2 + flen;
			c->client.arrived_ns = c->w->timed ? uv_hrtime() : 0;
			if (query_handle(c->w, &c->client, c->buf + off - flen, flen))
				c->inflight++;
		}
	} while (c->again && !c->closing);
	c->processing = 0;
	if (c->closing)
		return;
	if (off > 0) {
		memmove(c->buf, c->buf + off, c->len - off);
		c->len -= off;
	}
	/* The next message has begun if any byte of it is here; its deadline runs from then (or
	 * from now, for bytes that came with the message before it). */
	if (c->len == 0)
		c->msg_started = 0;
	else if (off > 0 || !c->msg_started)
		c->msg_started = uv_now(&c->w->loop);
	if (!conn_may_process(c) && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
	conn_arm(c);
}

/* DoT: decrypt what the session holds into buf while buf has room. @return the plaintext
 * octets added. The peer's close_notify is a half-close: c->eof, as a TCP FIN is; a failed
 * handshake or record is one too, with c->tls_failed, so that GnuTLS's alert goes out. */
static size_t conn_decrypt(struct tcp_conn *c)
{
	struct worker *w = c->w;
	int was_ready = tls_session_is_ready(c->tls);
	size_t added = 0;
	for (;;) {
		conn_grow(c);
		if (c->len == c->cap)
			break;
		ssize_t n = tls_session_read(c->tls, c->buf + c->len, c->cap - c->len);
		if (!was_ready && tls_session_is_ready(c->tls)) {
			was_ready = 1;
			w->st.tls_handshakes++;
			w->st.tls_resumed += tls_session_is_resumed(c->tls) != 0;
			c->last_active = uv_now(&w->loop);
		}
		if (n == -EPIPE) {
			c->eof = 1;
			if (c->reading) {
				uv_read_stop((uv_stream_t *)&c->tcp);
				c->reading = 0;
			}
			break;
		}
		if (n < 0) {
			/* The alert goes out first: no more reading, then the close once nothing is
			 * queued (conn_resume), or at the next deadline. A connection the push already
			 * closed (shed, or a failed write) was counted there. */
			if (c->closing)
				break;
			w->st.tls_failed++;
			c->tls_failed = 1;
			c->eof = 1;
			c->len = 0;
			if (c->reading) {
				uv_read_stop((uv_stream_t *)&c->tcp);
				c->reading = 0;
			}
			break;
		}
		if (n == 0)
			break;
		c->len += (size_t)n;
		added += (size_t)n;
	}
	return added;
}

/* Answer what the connection holds: for DoT, decrypt and answer until the session has nothing
 * more to give now or the limits stop it. */
static void conn_input(struct tcp_conn *c)
{
	size_t added;
	int cork = c->tls && !c->tls_failed && !c->corked && tls_session_is_ready(c->tls);
	if (cork) {
		tls_session_cork(c->tls);
		c->corked = 1;
		c->cork_bytes = 0;
	}
	do {
		added = c->tls && !c->tls_failed ? conn_decrypt(c) : 0;
		conn_process(c);
	} while (added > 0 && !c->closing && conn_may_process(c));
	if (cork) {
		c->corked = 0;
		if (!c->closing && tls_session_uncork(c->tls) < 0) {
			c->w->st.tls_failed++;
			conn_close(c);
		}
	}
}

/* Does the buffer hold a whole message not yet answered? */
static int has_message(const struct tcp_conn *c)
{
	return c->len >= 2 && c->len >= 2u + wire_get16(c->buf);
}

/* Something changed (an answer written, a question over): answer what is buffered if the
 * limits allow, then read again; after a half-close, close once everything is answered. */
static void conn_resume(struct tcp_conn *c)
{
	if (c->closing || c->reading)
		return;
	if (c->processing) {
		c->again = 1;
		return;
	}
	if (conn_may_process(c))
		conn_input(c);
	if (c->closing)
		return;
	if (c->eof) {
		if (c->inflight == 0 && c->queued == 0 && !has_message(c))
			conn_close(c);
		return;
	}
	if (conn_may_process(c) &&
	    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) == 0) {
		c->reading = 1;
		/* Time spent paused by our own limits does not count against the client's message. */
		if (c->msg_started)
			c->msg_started = uv_now(&c->w->loop);
	}
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct tcp_conn *c = s->data;
	(void)buf;
	if (nread == UV_EOF) {
		/* A half-close still gets the answers to what it sent (RFC 7766 6.2.4). */
		c->eof = 1;
		uv_read_stop(s);
		c->reading = 0;
		conn_resume(c);
		return;
	}
	if (nread < 0) {
		conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	if (c->tls) {
		if (c->tls_failed)
			return;
		if (tls_session_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread) < 0) {
			c->w->st.tls_failed++;
			conn_close(c);
			return;
		}
		conn_input(c);
		if (!c->closing && c->eof)
			conn_resume(c);
		return;
	}
	c->len += (size_t)nread;
	conn_process(c);
}

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
		if (!idle && conn_is_idle(c))
			idle = c;
	}
	if (same >= w->o->tcp_per_addr)
		return -1;
	if (st->nconns - 1 < w->o->tcp_max_conns)
		return 0;
	if (!idle)
		return -1;
	w->st.tcp_evicted++;
	conn_close(idle);
	return 0;
}

static void on_accept(uv_stream_t *server, int status)
{
	struct tcp_listener *l = server->data;
	struct worker *w = l->w;
	struct tcp_state *st = w->tcp;
	if (status < 0)
		return;
	struct tcp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->w = w;
	uv_tcp_init(&w->loop, &c->tcp);
	uv_timer_init(&w->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->open_handles = 2;
	c->client = (struct client){
		.ops = &TCP_OPS, .session = c, .stream = 1, .transport = CLIENT_TCP};
	c->prev = st->tail;
	if (st->tail)
		st->tail->next = c;
	else
		st->head = c;
	st->tail = c;
	st->nconns++;
	w->st.tcp_conns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
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
		conn_close(c);
		return;
	}
	/* Over its network's handshake cap: closed before it can make room (evict another). */
	if (l->tls && admit_handshake(w->admit, &c->client.addr, c->accepted) < 0) {
		conn_close(c); /* Counted by admission (tls_rate_limited). */
		return;
	}
	if (make_room(w, c) < 0) {
		w->st.tcp_refused++;
		conn_close(c);
		return;
	}
	if (l->tls) {
		c->tls = w->tls ? tls_session_new(w->tls, "dot", tls_out, c) : NULL;
		if (!c->tls) {
			w->st.tls_failed++;
			conn_close(c);
			return;
		}
		c->client.transport = CLIENT_DOT;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->last_active = c->accepted;
	conn_arm(c);
	conn_resume(c);
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

int tcp_listen(struct worker *w, const struct sockaddr_storage *ss, int tls, char *err,
	       size_t errlen)
{
	struct tcp_state *st = w->tcp;
	char addr[80];
	options_format_addr(ss, addr, sizeof(addr));
	if (st->nlisten == OPTIONS_MAX_ADDRS) {
		snprintf(err, errlen, "cannot listen on TCP %s: too many listeners", addr);
		return -EMFILE;
	}
	struct tcp_listener *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "cannot listen on TCP %s: out of memory", addr);
		return -ENOMEM;
	}
	l->w = w;
	l->tls = tls;
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
		conn_close(st->head);
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
