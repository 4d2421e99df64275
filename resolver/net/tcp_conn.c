/* A TCP connection's life. Each has one timer, re-armed for whichever deadline is nearest: a
 * message that has begun must be whole within the idle timeout of its first byte (more bytes do
 * not extend it), and a connection with nothing to do closes after the idle timeout. Answers
 * are written at once; their bytes count as queued until libuv has written them, and above the
 * bound reading (and answering what is buffered) stops until the client drains them. A DoT
 * connection (RFC 7858) is the same session with GnuTLS between the socket and the messages
 * (resolver/base/tls.c), its handshake due within --tls-handshake-timeout; a DoH connection
 * (RFC 8484) hands its plaintext to its HTTP/2 session (resolver/net/https.c) instead of
 * framing it, and that session writes through this file, so its answers count as queued too
 * (and those its streams hold, as held). It never looks at the policy or the cache: each
 * message goes whole to query_handle(), and it never accepts or lists connections (tcp.c). */
#include "config.h"

#include "resolver/net/tcp_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/query/query.h"
#include "resolver/query/worker.h"

struct tcp_write {
	uv_write_t req;
	struct tcp_conn *conn;
	size_t len;
	uint8_t bytes[];
};

static void conn_resume(struct tcp_conn *c);
static void conn_arm(struct tcp_conn *c);

static unsigned conn_inflight(const struct tcp_conn *c)
{
	return c->h ? https_inflight(c->h) : c->inflight;
}

/* ---- Answers ----------------------------------------------------------------------------- */

/* The worker's answers waiting for slow readers exceed --tcp-max-queued-total: close the
 * connections holding the most until they fit (Unbound's stream-wait-size), so that many
 * clients that never read cannot hold each its own bound at once. */
static void shed(struct worker *w)
{
	struct tcp_state *st = w->tcp;
	while (st->queued > w->o->tcp_max_queued_total) {
		struct tcp_conn *most = NULL;
		for (struct tcp_conn *c = st->head; c; c = c->next)
			if (!most || c->queued + c->held > most->queued + most->held)
				most = c;
		if (!most || most->queued + most->held == 0)
			return;
		w->st.tcp_shed++;
		tcp_conn_close(most);
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
		tcp_conn_close(c);
		return;
	}
	/* DoH writes frames the client asks for (PING, SETTINGS): only its requests and their
	 * answers from upstream keep it alive. */
	if (!c->h)
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
		tcp_conn_close(c);
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

/* Plaintext for c's TLS session. A cork holds a batch's answers for fewer records and writes,
 * up to a bound: past it they go out, and count as queued like any. @return 0 or -EPROTO. */
static int tls_write(struct tcp_conn *c, const uint8_t *bytes, size_t len)
{
	int rc = tls_session_write(c->tls, bytes, len);
	if (rc == 0 && c->corked && (c->cork_bytes += len) >= TCP_CORK_MAX) {
		rc = tls_session_uncork(c->tls);
		tls_session_cork(c->tls);
		c->cork_bytes = 0;
	}
	return rc;
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
		tcp_conn_close(c);
		return;
	}
	if (c->tls) {
		if (c->tls_failed || len > 65535)
			return;
		uint8_t *frame = c->w->tcp->frame;
		wire_put16(frame, (uint16_t)len);
		memcpy(frame + 2, ans, len);
		if (tls_write(c, frame, 2 + len) < 0 && !c->closing) {
			c->w->st.tls_failed++;
			tcp_conn_close(c);
		}
		return;
	}
	struct tcp_write *wr = malloc(sizeof(*wr) + 2 + len);
	if (!wr) {
		tcp_conn_close(c);
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

/* ---- What a DoH connection's HTTP/2 session is given ------------------------------------- */

static int doh_send(void *ctx, const uint8_t *bytes, size_t len)
{
	struct tcp_conn *c = ctx;
	if (c->closing || c->tls_failed)
		return -EPIPE;
	if (tls_write(c, bytes, len) < 0) {
		if (!c->closing) {
			c->w->st.tls_failed++;
			tcp_conn_close(c);
		}
		return -EPIPE;
	}
	return c->closing ? -EPIPE : 0;
}

static size_t doh_room(void *ctx)
{
	struct tcp_conn *c = ctx;
	size_t max = c->w->o->tcp_max_queued;
	/* Nothing goes out before the handshake is done (the server's SETTINGS wait for it). */
	if (c->closing || c->tls_failed || !tls_session_is_ready(c->tls) || c->queued >= max)
		return 0;
	return max - c->queued;
}

/* Answers its streams hold count toward the same bounds as those queued: four times
 * --tcp-max-queued for the connection (a client that never reads, or never opens its flow
 * control window), --tcp-max-queued-total for the worker. */
static void doh_held(void *ctx, size_t held)
{
	struct tcp_conn *c = ctx;
	if (c->closing)
		return;
	struct tcp_state *st = c->w->tcp;
	st->queued = st->queued - c->held + held;
	c->held = held;
	if (c->queued + c->held > 4 * c->w->o->tcp_max_queued) {
		c->w->st.tcp_timeouts++;
		tcp_conn_close(c);
		return;
	}
	if (st->queued > c->w->o->tcp_max_queued_total)
		shed(c->w);
}

static void doh_wake(void *ctx)
{
	struct tcp_conn *c = ctx;
	if (c->closing)
		return;
	c->last_active = uv_now(&c->w->loop);
	conn_resume(c);
}

static const struct https_io HTTPS_IO = {
	.send = doh_send, .room = doh_room, .held = doh_held, .wake = doh_wake};

/* ---- Sessions ---------------------------------------------------------------------------- */

static void conn_closed(uv_handle_t *h)
{
	struct tcp_conn *c = h->data;
	if (--c->open_handles > 0)
		return;
	https_free(c->h);
	tls_session_free(c->tls);
	free(c->buf);
	free(c);
}

struct tcp_conn *tcp_conn_new(struct worker *w)
{
	struct tcp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->w = w;
	uv_tcp_init(&w->loop, &c->tcp);
	uv_timer_init(&w->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->open_handles = 2;
	c->client = (struct client){
		.ops = &TCP_OPS, .session = c, .stream = 1, .transport = CLIENT_TCP};
	return c;
}

void tcp_conn_close(struct tcp_conn *c)
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
	st->queued -= c->queued + c->held;
	c->uncounted = 1;
	if (c->h)
		https_close(c->h); /* Its questions upstream are forgotten. */
	else if (c->inflight > 0)
		worker_forget_session(w, c);
	/* Questions it starts from here on (answering may re-enter it) go to no one. */
	c->client.session = NULL;
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
	uv_close((uv_handle_t *)&c->timer, conn_closed);
}

/* May be closed to make room: nothing in flight and nothing queued (a partial message, which
 * a client can keep sending a byte at a time, does not protect it). */
int tcp_conn_is_idle(const struct tcp_conn *c)
{
	return conn_inflight(c) == 0 && c->queued == 0 && c->held == 0;
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
		tcp_conn_close(c);
		return;
	}
	uint64_t since = c->msg_started ? c->msg_started : c->last_active;
	if (conn_inflight(c) == 0 && now >= since + w->o->tcp_idle_ms) {
		w->st.tcp_timeouts++;
		tcp_conn_close(c);
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
	if (conn_inflight(c) > 0)
		at = now + c->w->o->tcp_idle_ms;
	if (c->tls && !tls_session_is_ready(c->tls) && !c->tls_failed)
		at = c->accepted + c->w->o->tls_handshake_ms;
	uv_timer_start(&c->timer, conn_timeout, at > now ? at - now : 0, 0);
}

/* Room for the next read or decryption into buf: grow it while it has little left. */
static void conn_grow(struct tcp_conn *c)
{
	if (c->cap - c->len < 4096 && c->cap < TCP_READ_MAX) {
		size_t cap = c->cap ? c->cap * 2 : 4096;
		if (cap > TCP_READ_MAX)
			cap = TCP_READ_MAX;
		uint8_t *b = realloc(c->buf, cap);
		if (b) {
			c->buf = b;
			c->cap = cap;
		}
	}
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tcp_conn *c = h->data;
	(void)suggested;
	if (c->tls) {
		*buf = uv_buf_init((char *)c->w->tcp->tls_in, TCP_TLS_READ);
		return;
	}
	conn_grow(c);
	*buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* May this connection take another message now? */
static int conn_may_process(const struct tcp_conn *c)
{
	if (c->closing)
		return 0;
	if (c->h) /* Reading goes on through the handshake: its limits are those of TLS. */
		return !c->tls_failed && (!tls_session_is_ready(c->tls) || https_may_read(c->h));
	return c->inflight < TCP_MAX_INFLIGHT && c->queued < c->w->o->tcp_max_queued;
}

static void conn_stop_reading(struct tcp_conn *c)
{
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
}

/* DoH: the plaintext goes to the HTTP/2 session, which takes what the limits allow. */
static void conn_process_https(struct tcp_conn *c)
{
	ssize_t used = https_input(c->h, c->buf, c->len);
	if (c->closing)
		return;
	if (used < 0) {
		tcp_conn_close(c);
		return;
	}
	if (used > 0) {
		memmove(c->buf, c->buf + used, c->len - (size_t)used);
		c->len -= (size_t)used;
	}
	if (https_requests(c->h) != c->requests) {
		c->requests = https_requests(c->h);
		c->last_active = uv_now(&c->w->loop);
	}
	if (https_is_over(c->h)) {
		/* GOAWAY sent or received, or not HTTP/2: what is written goes out, then it closes
		 * (conn_input, once the cork is off). */
		c->eof = 1;
		c->len = 0;
		conn_stop_reading(c);
	}
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
		if (c->h) {
			conn_process_https(c);
			continue;
		}
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
	 * from now, for bytes that came with the message before it). HTTP/2 has no such message:
	 * its requests keep it alive. */
	if (c->len == 0 || c->h)
		c->msg_started = 0;
	else if (off > 0 || !c->msg_started)
		c->msg_started = uv_now(&c->w->loop);
	if (!conn_may_process(c))
		conn_stop_reading(c);
	conn_arm(c);
}

/* DoT and DoH: decrypt what the session holds into buf while buf has room. @return the
 * plaintext octets added. The peer's close_notify is a half-close: c->eof, as a TCP FIN is; a
 * failed handshake or record is one too, with c->tls_failed, so that GnuTLS's alert goes out. */
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
			conn_stop_reading(c);
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
			conn_stop_reading(c);
			break;
		}
		if (n == 0)
			break;
		c->len += (size_t)n;
		added += (size_t)n;
	}
	return added;
}

/* Answer what the connection holds: when encrypted, decrypt and answer until the session has
 * nothing more to give now or the limits stop it, the answers corked together. */
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
			tcp_conn_close(c);
		}
	}
	/* A DoH session that is over closes once it has nothing more to write. */
	if (!c->closing && c->h && c->eof && https_inflight(c->h) == 0 && c->queued == 0)
		tcp_conn_close(c);
}

/* Does the buffer hold a whole message not yet answered? */
static int has_message(const struct tcp_conn *c)
{
	return !c->h && c->len >= 2 && c->len >= 2u + wire_get16(c->buf);
}

/* Something changed (an answer written, a question over): answer what is buffered if the
 * limits allow, then read again; after a half-close, close once everything is answered. DoH
 * first writes what waited for room. */
static void conn_resume(struct tcp_conn *c)
{
	if (c->closing)
		return;
	if (c->processing) {
		c->again = 1;
		return;
	}
	if (c->h && !c->tls_failed && https_flush(c->h) < 0) {
		tcp_conn_close(c);
		return;
	}
	if (c->reading)
		return;
	if (conn_may_process(c))
		conn_input(c);
	if (c->closing)
		return;
	if (c->eof) {
		if (conn_inflight(c) == 0 && c->queued == 0 && !has_message(c))
			tcp_conn_close(c);
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
	if (nread == UV_EOF) {
		/* A half-close still gets the answers to what it sent (RFC 7766 6.2.4). */
		c->eof = 1;
		conn_stop_reading(c);
		conn_resume(c);
		return;
	}
	if (nread < 0) {
		tcp_conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	if (c->tls) {
		if (c->tls_failed)
			return;
		if (tls_session_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread) < 0) {
			c->w->st.tls_failed++;
			tcp_conn_close(c);
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

int tcp_conn_secure(struct tcp_conn *c, int doh)
{
	struct worker *w = c->w;
	/* DoH offers h2 alone: a client that offers only HTTP/1.1 gets TLS's alert, one without
	 * ALPN that speaks HTTP/1 a 505 (https.c). */
	c->tls = w->tls ? tls_session_new(w->tls, doh ? "h2" : "dot", tls_out, c) : NULL;
	if (c->tls && doh)
		c->h = https_new(w, &c->client, &HTTPS_IO, c);
	if (!c->tls || (doh && !c->h)) {
		w->st.tls_failed++;
		tcp_conn_close(c);
		return -1;
	}
	c->client.transport = doh ? CLIENT_DOH : CLIENT_DOT;
	return 0;
}

void tcp_conn_start(struct tcp_conn *c)
{
	uv_tcp_nodelay(&c->tcp, 1);
	c->last_active = c->accepted;
	conn_arm(c);
	conn_resume(c);
}
