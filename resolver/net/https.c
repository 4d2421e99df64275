/* DoH over nghttp2: the library keeps HPACK, flow control and the streams' states; we keep, per
 * stream, what the request said (method, path, content type, the DNS message) and the answer
 * being sent. A request whole (END_STREAM) waits as "ready" until the connection's limits let
 * it in (questions in flight, room to write), so one read of many requests never outruns them;
 * its answer comes back through the client's ops on its stream id and is dropped if the client
 * reset the stream meanwhile. Body octets are given back to flow control only once used, so a
 * connection never holds more request body than its window. It must never touch a socket, TLS
 * or a timer, and never include the connection's header (tcp_conn.h includes this one). */
#include "config.h"

#include "resolver/net/https.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/base/wire.h"
#include "resolver/net/https_request.h"
#include "resolver/query/query.h"
#include "resolver/query/worker.h"

#define CHUNK 4096    /* Plaintext handed to nghttp2 at once: requests are taken in between. */
#define OUT_MAX 16384 /* Frames gathered into one write: one TLS record. */

struct stream {
	struct stream *prev, *next; /* The session's streams, oldest first. */
	int32_t id;
	uint8_t ready;              /* Whole, waiting to be taken. */
	uint8_t answered;           /* A response is submitted. */
	struct https_request r;
	size_t window;              /* Body octets kept and not yet given back to flow control. */
	uint8_t *ans;               /* The answer being sent: ans[ans_off..ans_len). */
	size_t ans_len, ans_off;
};

struct https {
	nghttp2_session *ng;
	struct worker *w;
	struct client client;       /* Each request's client, but for its stream id. */
	const struct https_io *io;
	void *ctx;
	struct stream *head, *tail;
	unsigned nstreams;
	unsigned waiting;           /* Streams ready and not yet taken. */
	unsigned inflight;
	uint64_t requests;
	size_t held, held_said;     /* Answer octets not yet sent; as last told to io->held. */
	size_t block;               /* Encoded octets of the header block being read. */
	uint64_t reset_second;      /* The second the client's resets are counted in, and how many. */
	unsigned resets;
	size_t received;            /* Plaintext octets read (nothing is written before the
				     * client's whole preface: an HTTP/1 client gets 505 alone). */
	int processing;             /* In https_input() or https_flush(): replies wait for it. */
	int not_h2;                 /* Not HTTP/2: answered with 505, nothing more is read. */
	int fatal;                  /* A callback met a bound (counted): close now. */
	int closed;
};

/* ---- Responses --------------------------------------------------------------------------- */

static ssize_t read_answer(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
			   uint32_t *flags, nghttp2_data_source *source, void *user)
{
	https_t *h = user;
	struct stream *s = source->ptr;
	(void)ng;
	(void)id;
	size_t n = s->ans_len - s->ans_off;
	if (n > length)
		n = length;
	memcpy(buf, s->ans + s->ans_off, n);
	s->ans_off += n;
	h->held -= n;
	if (s->ans_off == s->ans_len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		free(s->ans);
		s->ans = NULL;
		s->ans_len = s->ans_off = 0;
	}
	return (ssize_t)n;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}

/* Submit the response status with body[0..len) (a DNS answer when status is 200). */
static int respond(https_t *h, struct stream *s, unsigned status, const uint8_t *body, size_t len)
{
	char code[8], clen[24], age[32];
	snprintf(code, sizeof(code), "%u", status);
	snprintf(clen, sizeof(clen), "%zu", len);
	nghttp2_nv nv[4] = {NV(":status", code), NV("content-length", clen)};
	size_t n = 2;
	if (status == 200) {
		snprintf(age, sizeof(age), "max-age=%u", (unsigned)wire_min_ttl(body, len));
		nv[n++] = (nghttp2_nv)NV("content-type", "application/dns-message");
		nv[n++] = (nghttp2_nv)NV("cache-control", age);
	} else if (status == 405) {
		nv[n++] = (nghttp2_nv)NV("allow", "GET, POST");
	}
	nghttp2_data_provider dp = {.source.ptr = s, .read_callback = read_answer};
	if (len > 0) {
		s->ans = malloc(len);
		if (!s->ans)
			return -1;
		memcpy(s->ans, body, len);
		s->ans_len = len;
		s->ans_off = 0;
	}
	if (nghttp2_submit_response(h->ng, s->id, nv, n, len > 0 ? &dp : NULL) != 0) {
		free(s->ans);
		s->ans = NULL;
		s->ans_len = 0;
		return -1;
	}
	h->held += len;
	s->answered = 1;
	unsigned i = server_https_status_index(status);
	if (i < SERVER_HTTPS_STATUSES)
		h->w->st.https_status[i]++;
	return 0;
}

/* Tell the connection how many answer octets are held, when that changed. */
static void sync_held(https_t *h)
{
	if (h->closed || h->held == h->held_said)
		return;
	h->held_said = h->held;
	h->io->held(h->ctx, h->held);
}

/* Serialise frames into OUT_MAX-octet writes while the connection has room. @return 0 or -1. */
static int write_out(https_t *h)
{
	static _Thread_local uint8_t out[OUT_MAX];
	if (h->not_h2 || h->received < NGHTTP2_CLIENT_MAGIC_LEN)
		return 0;
	size_t used = 0, budget = h->io->room(h->ctx);
	while (budget > 0 && !h->closed) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(h->ng, &p);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		budget = (size_t)n < budget ? budget - (size_t)n : 0;
		if (used + (size_t)n > OUT_MAX && used > 0) {
			if (h->io->send(h->ctx, out, used) < 0)
				return -1;
			used = 0;
		}
		if ((size_t)n > OUT_MAX) {
			if (h->io->send(h->ctx, p, (size_t)n) < 0)
				return -1;
			continue;
		}
		memcpy(out + used, p, (size_t)n);
		used += (size_t)n;
	}
	if (used > 0 && !h->closed && h->io->send(h->ctx, out, used) < 0)
		return -1;
	return 0;
}

/* ---- The query path's answers ------------------------------------------------------------ */

static void doh_reply(const struct client *cl, const uint8_t *query, const struct wire_query *q,
		      const uint8_t *ans, size_t len)
{
	https_t *h = cl->session;
	(void)q;
	if (!h || h->closed)
		return;
	struct stream *s = nghttp2_session_get_stream_user_data(h->ng, (int32_t)cl->stream_id);
	if (!s || s->answered || len < WIRE_HEADER)
		return; /* Reset by the client meanwhile. */
	if (respond(h, s, 200, ans, len) < 0)
		return;
	/* RFC 8484 4.1: the answer carries the ID the client sent (0, as it should). */
	memcpy(s->ans, query, 2);
	if (!h->processing && https_flush(h) < 0)
		return; /* The connection is closed or closes: it saw the failure. */
}

static void doh_done(const struct client *cl)
{
	https_t *h = cl->session;
	if (!h || h->closed)
		return;
	h->inflight--;
	/* Over without an answer (the query path always gives one, but a stream must not wait
	 * for nothing): the stream is reset. */
	struct stream *s = nghttp2_session_get_stream_user_data(h->ng, (int32_t)cl->stream_id);
	if (s && !s->answered)
		(void)nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
	if (!h->processing)
		h->io->wake(h->ctx);
}

static const struct client_ops DOH_OPS = {.reply = doh_reply, .done = doh_done};

/* May another request be taken? Answers the streams hold count as if queued: many requests
 * read at once for big answers from the cache stop at the bound, as answers written do. */
static int may_take(const https_t *h)
{
	return !h->closed && h->inflight < HTTPS_MAX_INFLIGHT && h->io->room(h->ctx) > h->held;
}

/* Give the body octets s kept back to flow control: it may send more. */
static void give_back(https_t *h, struct stream *s)
{
	if (s->window > 0)
		(void)nghttp2_session_consume(h->ng, s->id, s->window);
	s->window = 0;
}

/* Answer s, whole: an HTTP error, or its DNS message to the query path. */
static void take(https_t *h, struct stream *s)
{
	s->ready = 0;
	h->waiting--;
	unsigned status = https_request_status(&s->r);
	struct wire_query q;
	if (status == 0) {
		/* What the query path would drop or answer FORMERR, unread, is a bad request here. */
		int rc = wire_parse_query(s->r.msg, s->r.msg_len, &q);
		if (rc == -EINVAL || rc == -EBADMSG)
			status = 400;
	}
	if (status != 0) {
		give_back(h, s);
		(void)respond(h, s, status, NULL, 0);
		return;
	}
	h->requests++;
	struct client c = h->client;
	c.stream_id = (uint32_t)s->id;
	c.arrived_ns = h->w->timed ? uv_hrtime() : 0;
	if (query_handle(h->w, &c, s->r.msg, s->r.msg_len))
		h->inflight++;
	else if (!s->answered) /* Dropped by the query path (say, the access list changed). */
		(void)nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_REFUSED_STREAM);
	give_back(h, s);
	https_request_clear(&s->r);
}

/* Take the requests that are whole, oldest first, while the limits allow. */
static void take_requests(https_t *h)
{
	for (struct stream *s = h->head; s && h->waiting > 0 && may_take(h); s = s->next)
		if (s->ready) {
			take(h, s);
			sync_held(h); /* The connection's bounds apply within one read. */
		}
}

/* ---- nghttp2's callbacks ----------------------------------------------------------------- */

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user)
{
	https_t *h = user;
	(void)ng;
	if (hd->type == NGHTTP2_HEADERS)
		h->block = hd->length;
	else if (hd->type == NGHTTP2_CONTINUATION)
		h->block += hd->length;
	else
		return 0;
	if (h->block <= HTTPS_HEADER_MAX)
		return 0;
	h->w->st.https_header_floods++;
	h->fatal = 1;
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
	https_t *h = user;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	s->id = f->hd.stream_id;
	s->prev = h->tail;
	if (h->tail)
		h->tail->next = s;
	else
		h->head = s;
	h->tail = s;
	h->nstreams++;
	nghttp2_session_set_stream_user_data(ng, s->id, s);
	return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
	https_t *h = user;
	(void)flags;
	struct stream *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
	if (s)
		https_request_header(&s->r, h->w->o->https_path, name, namelen, value, valuelen,
				     f->headers.cat != NGHTTP2_HCAT_REQUEST);
	return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *user)
{
	(void)flags;
	(void)user;
	struct stream *s = nghttp2_session_get_stream_user_data(ng, id);
	int kept = s && !s->answered ? https_request_body(&s->r, data, len) : 0;
	if (kept > 0) {
		s->window += len;
		return 0;
	}
	if (kept < 0) { /* Too big: what it kept goes back too. */
		len += s->window;
		s->window = 0;
	}
	/* Not kept: its window goes back at once. */
	(void)nghttp2_session_consume(ng, id, len);
	return 0;
}

/* A RST_STREAM from the client: over HTTPS_MAX_RESETS in one second closes the connection
 * (rapid reset: each reset stream costs us its set-up while the client pays nothing). Counted
 * here whatever nghttp2's own limiter does: it runs after this callback. */
static int count_reset(https_t *h)
{
	uint64_t second = uv_now(&h->w->loop) / 1000;
	if (second != h->reset_second) {
		h->reset_second = second;
		h->resets = 0;
	}
	if (++h->resets <= HTTPS_MAX_RESETS)
		return 0;
	h->w->st.https_reset_floods++;
	h->fatal = 1;
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
	https_t *h = user;
	if (f->hd.type == NGHTTP2_RST_STREAM)
		return count_reset(h);
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	struct stream *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
	if (!s || s->answered || s->ready)
		return 0;
	if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
		s->ready = 1;
		h->waiting++;
	} else if (f->hd.type == NGHTTP2_HEADERS && https_request_status(&s->r) != 0) {
		/* A body follows, but the answer is known: say it now, and drop the body. */
		(void)respond(h, s, https_request_status(&s->r), NULL, 0);
	}
	return 0;
}

static void stream_free(https_t *h, struct stream *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		h->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		h->tail = s->prev;
	h->nstreams--;
	if (s->ready)
		h->waiting--;
	h->held -= s->ans_len - s->ans_off;
	free(s->ans);
	https_request_clear(&s->r);
	free(s);
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
	https_t *h = user;
	(void)error_code;
	struct stream *s = nghttp2_session_get_stream_user_data(ng, id);
	if (!s)
		return 0;
	/* Body octets it kept go back to the connection's window. */
	if (s->window > 0)
		(void)nghttp2_session_consume_connection(ng, s->window);
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	stream_free(h, s);
	return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int lib_error, void *user)
{
	https_t *h = user;
	(void)ng;
	/* Over SETTINGS_MAX_CONCURRENT_STREAMS: refused while the client has not acknowledged our
	 * settings, a connection error once it has. */
	if (f->hd.type == NGHTTP2_HEADERS &&
	    (lib_error == NGHTTP2_ERR_REFUSED_STREAM ||
	     (lib_error == NGHTTP2_ERR_PROTO && h->nstreams >= HTTPS_MAX_STREAMS)))
		h->w->st.https_streams_refused++;
	return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
	https_t *h = user;
	(void)ng;
	if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
		h->w->st.https_protocol_errors++;
	return 0;
}

/* ---- The session ------------------------------------------------------------------------- */

https_t *https_new(struct worker *w, const struct client *proto, const struct https_io *io,
		   void *ctx)
{
	https_t *h = calloc(1, sizeof(*h));
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;
	if (!h || nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
		goto fail;
	h->w = w;
	h->io = io;
	h->ctx = ctx;
	h->client = *proto;
	h->client.ops = &DOH_OPS;
	h->client.session = h;
	h->client.stream = 1;
	h->client.transport = CLIENT_DOH;
	nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
	/* Windows are given back as bodies are used, not as they arrive; closed streams are not
	 * kept for priorities (a reset flood would keep them). */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_no_closed_streams(opt, 1);
	nghttp2_option_set_max_deflate_dynamic_table_size(opt, HTTPS_HPACK_TABLE);
#if HAVE_DECL_NGHTTP2_OPTION_SET_STREAM_RESET_RATE_LIMIT
	/* nghttp2's own limiter (1.57, and Debian's 1.52 security updates) stays behind ours, so
	 * that the close is ours and counted. */
	nghttp2_option_set_stream_reset_rate_limit(opt, 10 * HTTPS_MAX_RESETS, 2 * HTTPS_MAX_RESETS);
#endif
	if (nghttp2_session_server_new2(&h->ng, cb, h, opt) != 0)
		goto fail;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, HTTPS_MAX_STREAMS},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, HTTPS_BODY_MAX + 1},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HTTPS_HEADER_MAX},
		{NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, HTTPS_HPACK_TABLE},
		{NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
	};
	if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(*iv)) != 0 ||
	    nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, HTTPS_WINDOW) != 0)
		goto fail;
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	return h;
fail:
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	if (h)
		nghttp2_session_del(h->ng);
	free(h);
	return NULL;
}

void https_close(https_t *h)
{
	if (h->closed)
		return;
	h->closed = 1;
	if (h->inflight > 0)
		worker_forget_session(h->w, h);
	h->client.session = NULL;
}

void https_free(https_t *h)
{
	if (!h)
		return;
	https_close(h);
	nghttp2_session_del(h->ng); /* It calls no callback. */
	while (h->head)
		stream_free(h, h->head);
	free(h);
}

/* mem_recv failed with err. @return 0 when the session ends quietly (not HTTP/2), or -1. */
static int input_failed(https_t *h, ssize_t err)
{
	if (h->fatal)
		return -1; /* A bound, counted where it was met. */
	h->w->st.https_protocol_errors++;
	if (err != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
		return -1;
	/* An HTTP/1 client (no ALPN h2): told so, then closed once it is written. */
	static const char NOT_H2[] = "HTTP/1.1 505 HTTP Version Not Supported\r\n"
				     "content-type: text/plain\r\ncontent-length: 27\r\n"
				     "connection: close\r\n\r\nDNS over HTTPS: HTTP/2 only";
	h->not_h2 = 1;
	return h->io->send(h->ctx, (const uint8_t *)NOT_H2, sizeof(NOT_H2) - 1) < 0 ? -1 : 0;
}

ssize_t https_input(https_t *h, const uint8_t *bytes, size_t len)
{
	if (h->closed)
		return -1;
	if (h->not_h2)
		return (ssize_t)len;
	h->processing = 1;
	int rc = 0;
	size_t used = 0;
	take_requests(h);
	while (used < len && h->waiting == 0 && may_take(h) && !h->not_h2) {
		size_t n = len - used < CHUNK ? len - used : CHUNK;
		ssize_t got = nghttp2_session_mem_recv(h->ng, bytes + used, n);
		if (got < 0) {
			rc = input_failed(h, got);
			used = len;
			break;
		}
		used += (size_t)got;
		h->received += (size_t)got;
		take_requests(h);
	}
	if (rc == 0 && !h->closed)
		rc = write_out(h);
	h->processing = 0;
	sync_held(h);
	return rc < 0 || h->closed ? -1 : (ssize_t)used;
}

int https_flush(https_t *h)
{
	if (h->closed)
		return -1;
	if (h->processing)
		return 0;
	h->processing = 1;
	take_requests(h);
	int rc = write_out(h);
	h->processing = 0;
	sync_held(h);
	return rc < 0 || h->closed ? -1 : 0;
}

int https_may_read(const https_t *h)
{
	return !h->not_h2 && h->waiting == 0 && may_take(h);
}

int https_is_over(const https_t *h)
{
	return h->not_h2 ||
	       (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng));
}

unsigned https_inflight(const https_t *h)
{
	return h->inflight;
}

uint64_t https_requests(const https_t *h)
{
	return h->requests;
}
