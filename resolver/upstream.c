/* Upstream forwarding. A pending query keeps its transaction ID across retries, so an answer
 * from any upstream asked is accepted; answers must come from a configured upstream address and
 * echo the question, or they are ignored as possible spoofs. */
#include "config.h"

#include "resolver/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/log.h"

#define POOL_SIZE 4096
#define QUERY_MAX 1500
#define ATTEMPTS 4
#define RECV_CHUNKS 16
#define RECV_CHUNK (64 * 1024) /* libuv's recvmmsg slices buffers into 64 KiB datagrams. */

struct tcp_fetch;

struct pending {
	struct pending *prev, *next; /* FIFO of attempts in deadline order, or the free list. */
	uint64_t deadline;           /* This attempt's. */
	uint64_t expire;             /* The whole query's. */
	struct tcp_fetch *fetch;
	struct upstream_client client;
	struct wire_query q;         /* q.id is the client's ID. */
	uint16_t txid;
	uint16_t len;
	uint8_t attempt;
	uint8_t upstream;
	uint8_t in_fifo;
	uint8_t query[QUERY_MAX];   /* Carries txid, not the client's ID. */
};

struct tcp_fetch {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect;
	uv_write_t write;
	upstream_t *u;
	struct pending *p;           /* NULL once the query is finished. */
	struct tcp_fetch *prev, *next;
	uint8_t prefix[2];
	int open_handles;
	size_t len, cap;
	uint8_t *buf;
};

struct upstream {
	uv_loop_t *loop;
	const struct options *o;
	upstream_answer_cb cb;
	void *ctx;
	uv_udp_t sock[2]; /* IPv4, IPv6. */
	int have_sock[2];
	uv_timer_t timer;
	int open_handles;
	int closing;
	struct pending *pool, *free;
	struct pending *head, *tail;
	struct tcp_fetch *fetches;
	uint16_t *by_txid; /* Pool index + 1, 0 when free. */
	uint64_t rng;
	unsigned preferred;
	unsigned attempt_ms;
	uint8_t *recv_buf;
	struct upstream_stats stats;
};

static void timer_cb(uv_timer_t *t);

static uint64_t next_random(upstream_t *u)
{
	/* xorshift64*: fast, and seeded from the kernel; IDs need unpredictability to an off-path
	 * attacker, not cryptographic strength (the question echo is checked too). */
	u->rng ^= u->rng >> 12;
	u->rng ^= u->rng << 25;
	u->rng ^= u->rng >> 27;
	return u->rng * 0x2545F4914F6CDD1DULL;
}

static int family_index(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? 1 : 0;
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static void fifo_remove(upstream_t *u, struct pending *p)
{
	if (!p->in_fifo)
		return;
	if (p->prev)
		p->prev->next = p->next;
	else
		u->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		u->tail = p->prev;
	p->prev = p->next = NULL;
	p->in_fifo = 0;
}

static void arm_timer(upstream_t *u)
{
	if (!u->head || u->closing) {
		uv_timer_stop(&u->timer);
		return;
	}
	uint64_t now = uv_now(u->loop);
	uv_timer_start(&u->timer, timer_cb,
		       u->head->deadline > now ? u->head->deadline - now : 0, 0);
}

static void fifo_append(upstream_t *u, struct pending *p)
{
	p->prev = u->tail;
	p->next = NULL;
	if (u->tail)
		u->tail->next = p;
	else
		u->head = p;
	u->tail = p;
	p->in_fifo = 1;
	if (u->head == p)
		arm_timer(u);
}

static void release(upstream_t *u, struct pending *p)
{
	fifo_remove(u, p);
	u->by_txid[p->txid] = 0;
	if (p->fetch) {
		p->fetch->p = NULL;
		p->fetch = NULL;
	}
	p->next = u->free;
	u->free = p;
}

/* Finish p with reply (NULL: failure), then release it. */
static void finish(upstream_t *u, struct pending *p, uint8_t *reply, size_t len)
{
	fifo_remove(u, p);
	if (reply) {
		wire_put16(reply, p->q.id);
		u->stats.answered++;
	} else {
		u->stats.timeouts++;
	}
	if (!u->closing && (p->client.udp || p->client.conn)) {
		/* The callback sees the query with the client's ID again. */
		wire_put16(p->query, p->q.id);
		u->cb(u->ctx, &p->client, p->query, p->len, &p->q, reply, len);
	}
	release(u, p);
}

static void send_attempt(upstream_t *u, struct pending *p)
{
	const struct options *o = u->o;
	p->upstream = (uint8_t)((u->preferred + p->attempt) % o->nupstream);
	const struct sockaddr_storage *to = &o->upstream[p->upstream];
	int fi = family_index(to);
	if (u->have_sock[fi]) {
		uv_buf_t b = uv_buf_init((char *)p->query, p->len);
		/* A failed send (EAGAIN, unreachable) is retried by the timeout like a lost packet. */
		if (uv_udp_try_send(&u->sock[fi], &b, 1, (const struct sockaddr *)to) >= 0)
			u->stats.sent++;
	}
	p->deadline = uv_now(u->loop) + u->attempt_ms;
	fifo_append(u, p);
}

static void timer_cb(uv_timer_t *t)
{
	upstream_t *u = t->data;
	uint64_t now = uv_now(u->loop);
	while (u->head && u->head->deadline <= now) {
		struct pending *p = u->head;
		fifo_remove(u, p);
		if (p->attempt + 1 >= ATTEMPTS || now >= p->expire) {
			finish(u, p, NULL, 0);
			continue;
		}
		p->attempt++;
		send_attempt(u, p);
	}
	arm_timer(u);
}

/* Does reply answer p's question? */
static int question_matches(const struct pending *p, const uint8_t *reply, size_t len)
{
	if (len < WIRE_HEADER || !(wire_get16(reply + 2) & WIRE_FLAG_QR) || wire_get16(reply + 4) != 1)
		return 0;
	struct name n;
	size_t nlen;
	if (name_from_wire(&n, reply + WIRE_HEADER, len - WIRE_HEADER, &nlen) < 0 ||
	    WIRE_HEADER + nlen + 4 > len)
		return 0;
	const uint8_t *t = reply + WIRE_HEADER + nlen;
	return n.keylen == p->q.qname.keylen && memcmp(n.key, p->q.qname.key, n.keylen) == 0 &&
	       wire_get16(t) == p->q.qtype && wire_get16(t + 2) == p->q.qclass;
}

/* ---- TCP fallback ---------------------------------------------------------------------- */

/* One of u's handles has closed; the last one frees u (only possible once closing). */
static void unref(upstream_t *u)
{
	if (--u->open_handles > 0)
		return;
	free(u->by_txid);
	free(u->pool);
	free(u->recv_buf);
	free(u);
}

static void fetch_closed(uv_handle_t *h)
{
	struct tcp_fetch *f = h->data;
	if (--f->open_handles > 0)
		return;
	upstream_t *u = f->u;
	free(f->buf);
	free(f);
	unref(u);
}

static void fetch_end(struct tcp_fetch *f, uint8_t *reply, size_t len)
{
	upstream_t *u = f->u;
	if (f->p) {
		struct pending *p = f->p;
		f->p = NULL;
		p->fetch = NULL;
		finish(u, p, reply, len);
	}
	if (f->prev)
		f->prev->next = f->next;
	else
		u->fetches = f->next;
	if (f->next)
		f->next->prev = f->prev;
	if (!uv_is_closing((uv_handle_t *)&f->tcp)) {
		uv_close((uv_handle_t *)&f->tcp, fetch_closed);
		uv_close((uv_handle_t *)&f->timer, fetch_closed);
	}
}

static void fetch_timeout(uv_timer_t *t)
{
	fetch_end(t->data, NULL, 0);
}

static void fetch_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tcp_fetch *f = h->data;
	if (f->cap - f->len < 4096 && f->cap < 65537) {
		size_t cap = f->cap ? f->cap * 2 : 8192;
		if (cap > 65537)
			cap = 65537;
		uint8_t *b = realloc(f->buf, cap);
		if (b) {
			f->buf = b;
			f->cap = cap;
		}
	}
	*buf = uv_buf_init((char *)f->buf + f->len, (unsigned)(f->cap - f->len));
}

static void fetch_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct tcp_fetch *f = s->data;
	if (nread < 0) {
		fetch_end(f, NULL, 0);
		return;
	}
	f->len += (size_t)nread;
	if (f->len < 2)
		return;
	size_t need = wire_get16(f->buf);
	if (f->len < 2 + need) {
		if (f->len == f->cap && f->cap >= 65537)
			fetch_end(f, NULL, 0);
		return;
	}
	if (f->p && wire_get16(f->buf + 2) == f->p->txid && question_matches(f->p, f->buf + 2, need))
		fetch_end(f, f->buf + 2, need);
	else
		fetch_end(f, NULL, 0);
}

static void fetch_written(uv_write_t *req, int status)
{
	struct tcp_fetch *f = req->data;
	if (status < 0 && !uv_is_closing((uv_handle_t *)&f->tcp))
		fetch_end(f, NULL, 0);
}

static void fetch_connected(uv_connect_t *req, int status)
{
	struct tcp_fetch *f = req->data;
	if (status < 0 || !f->p) {
		if (status != UV_ECANCELED)
			fetch_end(f, NULL, 0);
		return;
	}
	wire_put16(f->prefix, f->p->len);
	uv_buf_t bufs[2] = {uv_buf_init((char *)f->prefix, 2),
			    uv_buf_init((char *)f->p->query, f->p->len)};
	f->write.data = f;
	if (uv_write(&f->write, (uv_stream_t *)&f->tcp, bufs, 2, fetch_written) < 0 ||
	    uv_read_start((uv_stream_t *)&f->tcp, fetch_alloc, fetch_read) < 0)
		fetch_end(f, NULL, 0);
}

/* Ask p's upstream again over TCP; on failure p is finished with SERVFAIL. */
static void fetch_start(upstream_t *u, struct pending *p, unsigned upstream)
{
	fifo_remove(u, p);
	uint64_t now = uv_now(u->loop);
	struct tcp_fetch *f = calloc(1, sizeof(*f));
	if (!f || p->expire <= now) {
		free(f);
		finish(u, p, NULL, 0);
		return;
	}
	f->u = u;
	f->p = p;
	p->fetch = f;
	uv_tcp_init(u->loop, &f->tcp);
	uv_timer_init(u->loop, &f->timer);
	f->tcp.data = f->timer.data = f->connect.data = f;
	f->open_handles = 2;
	u->open_handles++;
	f->next = u->fetches;
	if (u->fetches)
		u->fetches->prev = f;
	u->fetches = f;
	u->stats.tcp_fallbacks++;
	uv_timer_start(&f->timer, fetch_timeout, p->expire - now, 0);
	if (uv_tcp_connect(&f->connect, &f->tcp, (const struct sockaddr *)&u->o->upstream[upstream],
			   fetch_connected) < 0)
		fetch_end(f, NULL, 0);
}

/* ---- UDP ------------------------------------------------------------------------------- */

static void recv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	upstream_t *u = h->data;
	*buf = uv_buf_init((char *)u->recv_buf, RECV_CHUNKS * RECV_CHUNK);
}

static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
		    unsigned flags)
{
	upstream_t *u = h->data;
	if (nread < WIRE_HEADER || !addr)
		return; /* Errors, empty reads and the end-of-batch call carry nothing. */
	uint8_t *reply = (uint8_t *)buf->base;
	size_t len = (size_t)nread;
	unsigned from = 0;
	while (from < u->o->nupstream && !same_addr(&u->o->upstream[from], addr))
		from++;
	uint16_t idx = u->by_txid[wire_get16(reply)];
	struct pending *p = idx ? &u->pool[idx - 1] : NULL;
	if (from == u->o->nupstream || !p || p->fetch || !question_matches(p, reply, len)) {
		u->stats.mismatched++;
		return;
	}
	u->preferred = from;
	/* A truncated answer is fetched whole over TCP even for a UDP client: the cache keeps it
	 * and later clients get it (or its truncation) without asking upstream again. */
	if (wire_get16(reply + 2) & WIRE_FLAG_TC)
		fetch_start(u, p, from);
	else
		finish(u, p, reply, len);
}

static int open_socket(upstream_t *u, int fi)
{
	struct sockaddr_storage any;
	memset(&any, 0, sizeof(any));
	any.ss_family = fi ? AF_INET6 : AF_INET;
	int rc = uv_udp_init_ex(u->loop, &u->sock[fi], (unsigned)any.ss_family | UV_UDP_RECVMMSG);
	if (rc < 0)
		return rc;
	u->sock[fi].data = u;
	u->have_sock[fi] = 1;
	u->open_handles++;
	rc = uv_udp_bind(&u->sock[fi], (const struct sockaddr *)&any, 0);
	if (rc == 0)
		rc = uv_udp_recv_start(&u->sock[fi], recv_alloc, recv_cb);
	return rc;
}

upstream_t *upstream_new(uv_loop_t *loop, const struct options *o, upstream_answer_cb cb,
			 void *ctx, int *err)
{
	upstream_t *u = calloc(1, sizeof(*u));
	if (!u) {
		*err = -ENOMEM;
		return NULL;
	}
	u->loop = loop;
	u->o = o;
	u->cb = cb;
	u->ctx = ctx;
	u->attempt_ms = o->timeout_ms / ATTEMPTS;
	u->pool = calloc(POOL_SIZE, sizeof(*u->pool));
	u->by_txid = calloc(65536, sizeof(*u->by_txid));
	u->recv_buf = malloc(RECV_CHUNKS * RECV_CHUNK);
	if (!u->pool || !u->by_txid || !u->recv_buf) {
		free(u->pool);
		free(u->by_txid);
		free(u->recv_buf);
		free(u);
		*err = -ENOMEM;
		return NULL;
	}
	for (int i = POOL_SIZE - 1; i >= 0; i--) {
		u->pool[i].next = u->free;
		u->free = &u->pool[i];
	}
	if (uv_random(NULL, NULL, &u->rng, sizeof(u->rng), 0, NULL) < 0 || u->rng == 0)
		u->rng = uv_hrtime() | 1;
	uv_timer_init(loop, &u->timer);
	u->timer.data = u;
	u->open_handles = 1;

	int need[2] = {0, 0};
	for (unsigned i = 0; i < o->nupstream; i++)
		need[family_index(&o->upstream[i])] = 1;
	for (int fi = 0; fi < 2; fi++) {
		if (!need[fi])
			continue;
		int rc = open_socket(u, fi);
		if (rc < 0) {
			*err = rc;
			upstream_close(u);
			return NULL;
		}
	}
	return u;
}

static void handle_closed(uv_handle_t *h)
{
	unref(h->data);
}

void upstream_close(upstream_t *u)
{
	if (!u)
		return;
	u->closing = 1;
	/* Queries in flight are dropped: the server is going away. */
	while (u->fetches)
		fetch_end(u->fetches, NULL, 0);
	uv_close((uv_handle_t *)&u->timer, handle_closed);
	for (int fi = 0; fi < 2; fi++)
		if (u->have_sock[fi])
			uv_close((uv_handle_t *)&u->sock[fi], handle_closed);
}

int upstream_forward(upstream_t *u, const struct upstream_client *client, const uint8_t *query,
		     size_t len, const struct wire_query *q)
{
	if (len > QUERY_MAX)
		return -EMSGSIZE;
	struct pending *p = u->free;
	if (!p) {
		u->stats.pool_full++;
		return -ENOBUFS;
	}
	u->free = p->next;
	uint16_t txid;
	do
		txid = (uint16_t)(next_random(u) >> 48);
	while (u->by_txid[txid]);
	u->by_txid[txid] = (uint16_t)(p - u->pool + 1);
	p->txid = txid;
	p->client = *client;
	p->q = *q;
	p->len = (uint16_t)len;
	p->attempt = 0;
	p->fetch = NULL;
	p->in_fifo = 0;
	p->expire = uv_now(u->loop) + u->o->timeout_ms;
	memcpy(p->query, query, len);
	wire_put16(p->query, txid);
	send_attempt(u, p);
	return 0;
}

void upstream_forget(upstream_t *u, const void *conn)
{
	for (unsigned i = 0; i < POOL_SIZE; i++)
		if (u->pool[i].client.conn == conn)
			u->pool[i].client.conn = NULL;
}

const struct upstream_stats *upstream_stats(const upstream_t *u)
{
	return &u->stats;
}
