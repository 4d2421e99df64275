/* resolver/net/https.c against an nghttp2 client in memory, without sockets or TLS: the client's
 * frames go to https_input(), what the session sends comes back to the client. The query path is
 * a stand-in (query_handle() below) that answers at once or keeps the question "upstream" until
 * the test answers it. What a client sees is checked: statuses, headers, the DNS answer and its
 * ID; and what a hostile one meets: the stream cap, the reset cap, a header block flood, the
 * body and header bounds, answers held for a client that does not open its window. */
#include "config.h"

#include <criterion/criterion.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/base/wire.h"
#include "resolver/net/https.h"
#include "resolver/query/query.h"
#include "resolver/query/worker.h"

/* ---- The query path, stood in for -------------------------------------------------------- */

static int upstream_mode;        /* 0: answer at once; 1: keep the question upstream. */
static struct client pending[128];
static uint8_t pending_query[128][512];
static size_t pending_len[128];
static unsigned npending, forgotten;

/* The answer to query: the question with one A record of TTL 300 and, in authority, an SOA of
 * TTL 3600 whose MINIMUM is 900 (so max-age is 300). */
static size_t make_answer(const uint8_t *query, size_t len, uint8_t *ans)
{
	struct wire_query q;
	cr_assert_eq(wire_parse_query(query, len, &q), 0);
	memcpy(ans, query, q.question_end);
	ans[2] |= 0x80;
	wire_put16(ans + 6, 1);
	wire_put16(ans + 8, 1);
	wire_put16(ans + 10, 0);
	size_t n = q.question_end;
	static const uint8_t a[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1};
	memcpy(ans + n, a, sizeof(a));
	n += sizeof(a);
	static const uint8_t soa[] = {
		0xc0, 12, 0, 6, 0, 1, 0, 0, 0x0e, 0x10, 0, 26, /* TTL 3600, RDLENGTH 26 */
		1, 'a', 0, 1, 'b', 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
		0, 0, 0x03, 0x84 /* MINIMUM 900 */};
	memcpy(ans + n, soa, sizeof(soa));
	return n + sizeof(soa);
}

int query_handle(struct worker *w, const struct client *c, const uint8_t *pkt, size_t len)
{
	(void)w;
	if (upstream_mode) {
		cr_assert_lt(npending, 128);
		cr_assert_leq(len, sizeof(pending_query[0]));
		pending[npending] = *c;
		memcpy(pending_query[npending], pkt, len);
		pending_len[npending++] = len;
		return 1;
	}
	uint8_t ans[600];
	size_t n = make_answer(pkt, len, ans);
	/* The ID the query path puts in is not the client's: https.c must give its own back. */
	ans[0] = 0xee;
	c->ops->reply(c, pkt, NULL, ans, n);
	return 0;
}

/* Answer the i-th question kept upstream, then end it, as the upstream side does. */
static void answer_pending(unsigned i)
{
	uint8_t ans[600];
	size_t n = make_answer(pending_query[i], pending_len[i], ans);
	pending[i].ops->reply(&pending[i], pending_query[i], NULL, ans, n);
	pending[i].ops->done(&pending[i]);
}

void upstream_forget(upstream_t *u, const void *session)
{
	(void)u;
	(void)session;
	forgotten++;
}

/* ---- The connection, stood in for -------------------------------------------------------- */

static struct worker w;
static struct options o;
static https_t *h;
static nghttp2_session *cl;
static uint8_t c2s[1 << 21], s2c[1 << 21];
static size_t c2s_len, s2c_len;
static size_t room = 1 << 20, held_said;
static unsigned wakes;

static int io_send(void *ctx, const uint8_t *bytes, size_t len)
{
	(void)ctx;
	cr_assert_leq(s2c_len + len, sizeof(s2c));
	memcpy(s2c + s2c_len, bytes, len);
	s2c_len += len;
	return 0;
}

static size_t io_room(void *ctx)
{
	(void)ctx;
	return room;
}

static void io_held(void *ctx, size_t held)
{
	(void)ctx;
	held_said = held;
}

static void io_wake(void *ctx)
{
	(void)ctx;
	wakes++;
	https_flush(h); /* As the connection does: what waited goes on. */
}

static const struct https_io IO = {
	.send = io_send, .room = io_room, .held = io_held, .wake = io_wake};

/* What the client saw on each stream. */
struct seen {
	unsigned status;
	char ctype[64], cache[64], allow[32];
	uint8_t body[70000];
	size_t body_len;
	int closed;
	uint32_t error;
};
static struct seen seen[2048];
static int goaway;

static struct seen *seen_of(int32_t id)
{
	cr_assert(id > 0 && id < 4096 && id % 2 == 1);
	return &seen[id / 2];
}

static ssize_t cl_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *u)
{
	(void)s;
	(void)flags;
	(void)u;
	cr_assert_leq(c2s_len + len, sizeof(c2s));
	memcpy(c2s + c2s_len, data, len);
	c2s_len += len;
	return (ssize_t)len;
}

static int cl_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *u)
{
	(void)s;
	(void)namelen;
	(void)flags;
	(void)u;
	struct seen *e = seen_of(f->hd.stream_id);
	if (strcmp((const char *)name, ":status") == 0)
		e->status = (unsigned)atoi((const char *)value);
	else if (strcmp((const char *)name, "content-type") == 0)
		snprintf(e->ctype, sizeof(e->ctype), "%.*s", (int)valuelen, value);
	else if (strcmp((const char *)name, "cache-control") == 0)
		snprintf(e->cache, sizeof(e->cache), "%.*s", (int)valuelen, value);
	else if (strcmp((const char *)name, "allow") == 0)
		snprintf(e->allow, sizeof(e->allow), "%.*s", (int)valuelen, value);
	return 0;
}

static int cl_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *u)
{
	(void)s;
	(void)flags;
	(void)u;
	struct seen *e = seen_of(id);
	cr_assert_leq(e->body_len + len, sizeof(e->body));
	memcpy(e->body + e->body_len, data, len);
	e->body_len += len;
	return 0;
}

static int cl_close(nghttp2_session *s, int32_t id, uint32_t error, void *u)
{
	(void)s;
	(void)u;
	seen_of(id)->closed = 1;
	seen_of(id)->error = error;
	return 0;
}

static int cl_frame(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
	(void)s;
	(void)u;
	if (f->hd.type == NGHTTP2_GOAWAY)
		goaway = 1;
	return 0;
}

/* A client session with settings iv (n of them) and its preface queued; with stingy, it never
 * opens its flow-control windows again. */
static void client_new(const nghttp2_settings_entry *iv, size_t n, int stingy)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	cr_assert_eq(nghttp2_session_callbacks_new(&cb), 0);
	cr_assert_eq(nghttp2_option_new(&opt), 0);
	nghttp2_session_callbacks_set_send_callback(cb, cl_send);
	nghttp2_session_callbacks_set_on_header_callback(cb, cl_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cl_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, cl_close);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cl_frame);
	/* A hostile client does not wait for our SETTINGS to know the stream cap. */
	nghttp2_option_set_peer_max_concurrent_streams(opt, 1000);
	nghttp2_option_set_max_send_header_block_length(opt, 1 << 20);
	nghttp2_option_set_no_auto_window_update(opt, stingy);
	cr_assert_eq(nghttp2_session_client_new2(&cl, cb, NULL, opt), 0);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	cr_assert_eq(nghttp2_submit_settings(cl, NGHTTP2_FLAG_NONE, iv, n), 0);
}

static void setup(void)
{
	memset(&w, 0, sizeof(w));
	memset(&o, 0, sizeof(o));
	memset(seen, 0, sizeof(seen));
	strcpy(o.https_path, "/dns-query");
	w.o = &o;
	w.up = (upstream_t *)&w; /* Never looked into: upstream_forget() above counts. */
	cr_assert_eq(uv_loop_init(&w.loop), 0);
	c2s_len = s2c_len = 0;
	room = 1 << 20;
	held_said = 0;
	wakes = npending = forgotten = 0;
	upstream_mode = 0;
	goaway = 0;
	struct client proto = {.transport = CLIENT_TCP};
	h = https_new(&w, &proto, &IO, NULL);
	cr_assert_not_null(h);
	client_new(NULL, 0, 0);
}

static void teardown(void)
{
	https_free(h);
	nghttp2_session_del(cl);
	cr_assert_eq(uv_loop_close(&w.loop), 0);
}

/* Move frames both ways until neither side has more. @return what the last https_input()
 * returned that was negative, else 0. */
static ssize_t pump(void)
{
	for (int round = 0; round < 1000; round++) {
		cr_assert_geq(nghttp2_session_send(cl), 0);
		size_t had = c2s_len;
		if (c2s_len > 0) {
			ssize_t used = https_input(h, c2s, c2s_len);
			if (used < 0)
				return used;
			memmove(c2s, c2s + used, c2s_len - (size_t)used);
			c2s_len -= (size_t)used;
		}
		size_t got = s2c_len;
		if (s2c_len > 0) {
			cr_assert_eq(nghttp2_session_mem_recv(cl, s2c, s2c_len), (ssize_t)s2c_len);
			s2c_len = 0;
		}
		if (got == 0 && (had == 0 || c2s_len == had) && !nghttp2_session_want_write(cl))
			return 0;
	}
	cr_assert_fail("the two sessions never settled");
	return 0;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}

/* A query for www.test A with id. @return its length. */
static size_t query(uint8_t *out, uint16_t id)
{
	static const uint8_t q[] = {0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w',
				    4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
	memcpy(out, q, sizeof(q));
	wire_put16(out, id);
	return sizeof(q);
}

static int32_t get(const char *path)
{
	nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "dns.test"),
			   NV(":path", path)};
	int32_t id = nghttp2_submit_request(cl, NULL, nv, 4, NULL, NULL);
	cr_assert_gt(id, 0);
	return id;
}

/* GET path?dns= with the query for www.test of id. */
/* path: /dns-query?ct&dns= and our question with ID id, base64url. */
static void query_path(char path[128], uint16_t id)
{
	uint8_t q[64];
	size_t n = query(q, id);
	static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	strcpy(path, "/dns-query?ct&dns=");
	size_t p = strlen(path);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)q[i] << 16 | (i + 1 < n ? q[i + 1] << 8 : 0) | (i + 2 < n ? q[i + 2] : 0);
		path[p++] = B64[v >> 18 & 63];
		path[p++] = B64[v >> 12 & 63];
		if (i + 1 < n)
			path[p++] = B64[v >> 6 & 63];
		if (i + 2 < n)
			path[p++] = B64[v & 63];
	}
	path[p] = 0;
}

static int32_t get_query(uint16_t id)
{
	char path[128];
	query_path(path, id);
	return get(path);
}

struct body {
	const uint8_t *bytes;
	size_t len, off;
};

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			 uint32_t *flags, nghttp2_data_source *src, void *u)
{
	(void)s;
	(void)id;
	(void)u;
	struct body *b = src->ptr;
	size_t n = b->len - b->off < length ? b->len - b->off : length;
	memcpy(buf, b->bytes + b->off, n);
	b->off += n;
	if (b->off == b->len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* POST body (kept by the caller until it is sent) to path with content type ctype (NULL:
 * none) and, with clen, a content-length. */
static int32_t post_to(const char *path, struct body *b, const char *ctype, int clen)
{
	char len[24];
	snprintf(len, sizeof(len), "%zu", b->len);
	nghttp2_nv nv[6] = {NV(":method", "POST"), NV(":scheme", "https"),
			    NV(":authority", "dns.test"), NV(":path", path)};
	size_t n = 4;
	if (ctype)
		nv[n++] = (nghttp2_nv)NV("content-type", ctype);
	if (clen)
		nv[n++] = (nghttp2_nv)NV("content-length", len);
	nghttp2_data_provider dp = {.source.ptr = b, .read_callback = read_body};
	int32_t id = nghttp2_submit_request(cl, NULL, nv, n, &dp, NULL);
	cr_assert_gt(id, 0);
	return id;
}

static int32_t post(struct body *b, const char *ctype, int clen)
{
	return post_to("/dns-query", b, ctype, clen);
}

static unsigned status_count(unsigned status)
{
	return (unsigned)w.st.https_status[server_https_status_index(status)];
}

TestSuite(https, .init = setup, .fini = teardown);

/* ---- Answers ----------------------------------------------------------------------------- */

Test(https, get_and_post_answered_with_the_id_sent_and_max_age)
{
	int32_t g = get_query(0);
	uint8_t q[64];
	struct body b = {q, query(q, 0x1234), 0};
	int32_t p = post(&b, "application/dns-message", 1);
	cr_assert_eq(pump(), 0);
	uint8_t want[600];
	size_t n = make_answer(q, b.len, want);
	for (int i = 0; i < 2; i++) {
		struct seen *e = seen_of(i ? p : g);
		cr_expect_eq(e->status, 200);
		cr_expect_str_eq(e->ctype, "application/dns-message");
		/* The A record's 300, under the SOA's 3600 and its MINIMUM of 900. */
		cr_expect_str_eq(e->cache, "max-age=300");
		cr_assert_eq(e->body_len, n);
		cr_expect_eq(wire_get16(e->body), i ? 0x1234 : 0, "the ID the client sent");
		cr_expect_eq(memcmp(e->body + 2, want + 2, n - 2), 0);
		cr_expect(e->closed);
	}
	cr_expect_eq(status_count(200), 2);
	cr_expect_eq(https_requests(h), 2);
	cr_expect_eq(held_said, 0, "every answer went out");
}

Test(https, a_post_is_its_body_alone_whatever_its_path_says)
{
	/* RFC 8484 4.1: a POST's question is its body; a dns= in its path is not read. */
	char path[128];
	query_path(path, 0x7777);
	uint8_t q[64];
	struct body b = {q, query(q, 0x1234), 0};
	int32_t p = post_to(path, &b, "application/dns-message", 1);
	cr_assert_eq(pump(), 0);
	struct seen *e = seen_of(p);
	cr_expect_eq(e->status, 200);
	cr_assert_geq(e->body_len, 12);
	cr_expect_eq(wire_get16(e->body), 0x1234, "the body's question, not the path's");
	cr_expect_eq(wire_get16(e->body + 4), 1, "one question");
}

Test(https, each_error_status)
{
	int32_t bad64 = get("/dns-query?dns=AA!A");
	int32_t none = get("/dns-query?ct=application/dns-message");
	int32_t junk = get("/dns-query?dns=AAAA"); /* Three octets: no DNS header. */
	int32_t other = get("/other?dns=AAAA");
	nghttp2_nv del[] = {NV(":method", "DELETE"), NV(":scheme", "https"),
			    NV(":authority", "dns.test"), NV(":path", "/dns-query")};
	int32_t method = nghttp2_submit_request(cl, NULL, del, 4, NULL, NULL);
	uint8_t q[64];
	struct body b1 = {q, query(q, 1), 0};
	int32_t type = post(&b1, "text/plain", 1);
	static uint8_t big[HTTPS_BODY_MAX + 1];
	struct body b2 = {big, sizeof(big), 0}, b3 = {big, sizeof(big), 0};
	int32_t len = post(&b2, "application/dns-message", 1);
	int32_t chunked = post(&b3, "application/dns-message", 0);
	cr_assert_eq(pump(), 0);
	cr_expect_eq(seen_of(bad64)->status, 400);
	cr_expect_eq(seen_of(none)->status, 400);
	cr_expect_eq(seen_of(junk)->status, 400);
	cr_expect_eq(seen_of(other)->status, 404);
	cr_expect_eq(seen_of(method)->status, 405);
	cr_expect_str_eq(seen_of(method)->allow, "GET, POST");
	cr_expect_eq(seen_of(type)->status, 415);
	cr_expect_eq(seen_of(len)->status, 413, "told by content-length");
	cr_expect_eq(seen_of(chunked)->status, 413, "one octet over, without content-length");
	cr_expect_eq(status_count(400), 3);
	cr_expect_eq(status_count(404), 1);
	cr_expect_eq(status_count(405), 1);
	cr_expect_eq(status_count(413), 2);
	cr_expect_eq(status_count(415), 1);
	cr_expect_eq(https_requests(h), 0, "none reached the query path");
	/* And the connection goes on. */
	int32_t g = get_query(7);
	cr_assert_eq(pump(), 0);
	cr_expect_eq(seen_of(g)->status, 200);
}

Test(https, decoded_headers_over_the_bound_get_431)
{
	/* 40 fields of 500 octets: the encoder indexes the value once and refers to it after, so
	 * the block is small and the list 21 KB. */
	char value[501];
	memset(value, 'x', 500);
	value[500] = 0;
	nghttp2_nv nv[44] = {NV(":method", "GET"), NV(":scheme", "https"),
			     NV(":authority", "dns.test"), NV(":path", "/dns-query?dns=AAAA")};
	for (int i = 4; i < 44; i++)
		nv[i] = (nghttp2_nv)NV("x-pad", value);
	int32_t id = nghttp2_submit_request(cl, NULL, nv, 44, NULL, NULL);
	cr_assert_eq(pump(), 0);
	cr_expect_eq(seen_of(id)->status, 431);
	cr_expect_eq(w.st.https_header_floods, 0, "the block itself was small");
}

Test(https, bodies_give_their_window_back)
{
	/* Five bodies of 60000 octets, one after the other, are more than the connection's window
	 * of HTTPS_WINDOW: each must be given back once used. */
	static uint8_t body[60000];
	size_t n = query(body, 9);
	(void)n;
	for (int i = 0; i < 5; i++) {
		struct body b = {body, sizeof(body), 0};
		int32_t id = post(&b, "application/dns-message", 1);
		cr_assert_eq(pump(), 0);
		cr_expect_neq(seen_of(id)->status, 0, "body %d answered", i);
	}
}

/* ---- Limits ------------------------------------------------------------------------------ */

Test(https, streams_over_the_cap_are_refused)
{
	/* 101 requests whose bodies never come: each holds a stream. */
	nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "https"),
			   NV(":authority", "dns.test"), NV(":path", "/dns-query"),
			   NV("content-type", "application/dns-message")};
	int32_t ids[HTTPS_MAX_STREAMS + 1];
	for (int i = 0; i <= HTTPS_MAX_STREAMS; i++) {
		ids[i] = nghttp2_submit_headers(cl, NGHTTP2_FLAG_NONE, -1, NULL, nv, 5, NULL);
		cr_assert_gt(ids[i], 0);
	}
	cr_assert_eq(pump(), 0);
	cr_expect_eq(seen_of(ids[HTTPS_MAX_STREAMS - 1])->closed, 0, "the 100th is open");
	cr_expect(seen_of(ids[HTTPS_MAX_STREAMS])->closed, "the 101st is refused");
	cr_expect_eq(seen_of(ids[HTTPS_MAX_STREAMS])->error, NGHTTP2_REFUSED_STREAM);
	cr_expect_eq(w.st.https_streams_refused, 1);
}

/* A request opened and reset at once, the reset sent (a request still unsent would only be
 * dropped by the client library). */
static void open_and_reset(void)
{
	nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "https"),
			   NV(":authority", "dns.test"), NV(":path", "/dns-query"),
			   NV("content-type", "application/dns-message")};
	int32_t id = nghttp2_submit_headers(cl, NGHTTP2_FLAG_NONE, -1, NULL, nv, 5, NULL);
	cr_assert_gt(id, 0);
	cr_assert_eq(nghttp2_session_send(cl), 0);
	cr_assert_eq(nghttp2_submit_rst_stream(cl, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL), 0);
	cr_assert_eq(nghttp2_session_send(cl), 0);
}

Test(https, resets_over_the_cap_close_the_connection)
{
	/* HTTPS_MAX_RESETS in a second are a client changing its mind; one more closes. */
	for (int i = 0; i < HTTPS_MAX_RESETS; i++)
		open_and_reset();
	cr_assert_eq(pump(), 0);
	cr_expect_eq(w.st.https_reset_floods, 0);
	open_and_reset();
	cr_expect_lt(pump(), 0, "the connection must close");
	cr_expect_eq(w.st.https_reset_floods, 1);
}

Test(https, a_header_block_over_the_bound_closes_the_connection)
{
	/* Values nothing compresses well: HEADERS and CONTINUATION frames over 16 KiB. */
	static char value[30001];
	for (int i = 0; i < 30000; i++)
		value[i] = (char)(33 + (i * 7919 + i / 7) % 90);
	nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "dns.test"),
			   NV(":path", "/dns-query?dns=AAAA"), NV("x-flood", value)};
	nv[4].flags = NGHTTP2_NV_FLAG_NO_INDEX;
	cr_assert_gt(nghttp2_submit_request(cl, NULL, nv, 5, NULL, NULL), 0);
	cr_expect_lt(pump(), 0, "the connection must close");
	cr_expect_eq(w.st.https_header_floods, 1);
}

Test(https, questions_in_flight_are_capped_and_answers_after_a_reset_dropped)
{
	upstream_mode = 1;
	int32_t ids[HTTPS_MAX_INFLIGHT + 6];
	for (int i = 0; i < HTTPS_MAX_INFLIGHT + 6; i++)
		ids[i] = get_query((uint16_t)i);
	cr_assert_eq(pump(), 0);
	cr_expect_eq(https_inflight(h), HTTPS_MAX_INFLIGHT);
	cr_expect_eq(npending, HTTPS_MAX_INFLIGHT, "the rest wait for a free slot");
	cr_expect_eq(https_may_read(h), 0);
	/* The client gives up on the first question; its answer comes all the same. */
	cr_assert_eq(nghttp2_submit_rst_stream(cl, NGHTTP2_FLAG_NONE, ids[0], NGHTTP2_CANCEL), 0);
	cr_assert_eq(pump(), 0);
	answer_pending(0);
	cr_assert_eq(pump(), 0);
	cr_expect_eq(seen_of(ids[0])->status, 0, "a reset stream gets nothing");
	cr_expect_eq(wakes, 1);
	cr_expect_eq(npending, HTTPS_MAX_INFLIGHT + 1, "a slot freed: the next one went up");
	unsigned first = npending;
	for (unsigned i = 1; i < first; i++)
		answer_pending(i);
	cr_assert_eq(pump(), 0);
	cr_expect_eq(npending, HTTPS_MAX_INFLIGHT + 6);
	for (unsigned i = first; i < npending; i++)
		answer_pending(i);
	cr_assert_eq(pump(), 0);
	for (int i = 1; i < HTTPS_MAX_INFLIGHT + 6; i++)
		cr_expect_eq(seen_of(ids[i])->status, 200, "stream %d", ids[i]);
	cr_expect_eq(https_inflight(h), 0);
	/* Closed with a question upstream: it is forgotten there. */
	get_query(99);
	cr_assert_eq(pump(), 0);
	https_close(h);
	cr_expect_eq(forgotten, 1);
	answer_pending(npending - 1); /* Comes anyway (in a race): goes nowhere. */
}

Test(https, no_room_no_requests_and_answers_held_count)
{
	cr_assert_eq(pump(), 0); /* The prefaces. */
	room = 0;
	int32_t id = get_query(3);
	cr_assert_eq(nghttp2_session_send(cl), 0);
	cr_expect_eq(https_input(h, c2s, c2s_len), 0, "nothing read without room to answer");
	room = 1 << 20;
	cr_assert_eq(pump(), 0);
	cr_expect_eq(seen_of(id)->status, 200);
	cr_assert_eq(held_said, 0);
}

Test(https, answers_a_client_lets_wait_are_held_and_counted)
{
	/* A client whose streams' windows are 10 octets and never grow: the rest of its answer is
	 * held, and the connection is told so (it counts toward its bounds). */
	nghttp2_session_del(cl);
	nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 10};
	client_new(&iv, 1, 1);
	int32_t id = get_query(3);
	int32_t slow = get_query(4);
	cr_assert_eq(pump(), 0);
	uint8_t q[64], ans[600];
	size_t n = make_answer(q, query(q, 3), ans);
	cr_expect_eq(seen_of(id)->body_len, 10);
	cr_expect_eq(seen_of(slow)->body_len, 10);
	cr_expect_eq(held_said, 2 * (n - 10), "the rest is held");
}

Test(https, many_requests_read_at_once_stop_taking_at_the_bound_of_what_is_held)
{
	/* A client that never opens its windows sends 50 requests at once, each answered at once
	 * (from the cache): what the streams hold counts against the connection's room, so the
	 * requests past it wait instead of each holding an answer. */
	nghttp2_session_del(cl);
	nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 10};
	client_new(&iv, 1, 1);
	room = 500;
	for (uint16_t i = 0; i < 50; i++)
		get_query((uint16_t)(100 + i));
	cr_assert_eq(pump(), 0);
	uint8_t q[64], ans[600];
	size_t n = make_answer(q, query(q, 3), ans);
	cr_expect_lt(held_said, room + n, "held %zu octets with room for %zu", held_said, room);
	unsigned answered = 0;
	for (uint16_t i = 0; i < 50; i++)
		answered += seen_of(1 + 2 * i)->status == 200;
	cr_expect_lt(answered, 50, "the requests past the bound wait");
	room = 1 << 20;
}

Test(https, http1_gets_505_and_the_session_ends)
{
	nghttp2_session_del(cl);
	client_new(NULL, 0, 0); /* Never sent. */
	const char *req = "GET /dns-query?dns=AAAA HTTP/1.1\r\nHost: dns.test\r\n\r\n";
	cr_assert_eq(https_input(h, (const uint8_t *)req, strlen(req)), (ssize_t)strlen(req));
	cr_expect(s2c_len > 13 && memcmp(s2c, "HTTP/1.1 505 ", 13) == 0, "%.*s", (int)s2c_len, s2c);
	cr_expect(https_is_over(h));
	cr_expect_eq(w.st.https_protocol_errors, 1);
	s2c_len = 0;
}

/* ---- Helpers ----------------------------------------------------------------------------- */

Test(https, base64url)
{
	uint8_t out[16];
	cr_expect_eq(https_request_base64url("AAABAAAB", 8, out, sizeof(out)), 6);
	cr_expect_eq(https_request_base64url("_-8", 3, out, sizeof(out)), 2);
	cr_expect(out[0] == 0xff && out[1] == 0xef);
	cr_expect_eq(https_request_base64url("_-8=", 4, out, sizeof(out)), 2, "padding tolerated");
	cr_expect_eq(https_request_base64url("ab+/", 4, out, sizeof(out)), -1, "base64, not url");
	cr_expect_eq(https_request_base64url("abcde", 5, out, sizeof(out)), -1, "no such length");
	cr_expect_eq(https_request_base64url("AAAAAAAA", 8, out, 5), -1, "does not fit");
}

Test(https, max_age_is_the_smallest_ttl)
{
	uint8_t q[64], ans[600];
	size_t n = make_answer(q, query(q, 1), ans);
	cr_expect_eq(wire_min_ttl(ans, n), 300);
	/* Without the A record: the SOA's MINIMUM (900) is below its TTL (3600). */
	uint8_t neg[600];
	size_t qlen = 26;
	memcpy(neg, ans, qlen);
	memcpy(neg + qlen, ans + qlen + 16, n - qlen - 16);
	wire_put16(neg + 6, 0);
	cr_expect_eq(wire_min_ttl(neg, n - 16), 900);
	wire_put16(neg + 8, 0);
	cr_expect_eq(wire_min_ttl(neg, qlen), 0, "no record: 0");
}
