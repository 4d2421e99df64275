/* Worker loops. Every query takes the same path whatever its transport: parse in place, policy
 * check, cache, then upstream; answers go out through respond(), which queues UDP replies for the
 * next sendmmsg() flush (in uv_prepare before the loop blocks and in uv_check after I/O) and
 * writes TCP replies at once. Only TCP connections and their writes allocate. */
#include "config.h"

#include "resolver/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "resolver/answer.h"
#include "resolver/log.h"
#include "resolver/upstream.h"
#include "resolver/wire.h"

#define SENDQ_LEN 64
#define UDP_MAX 4096           /* Largest UDP answer sent (answer_udp_limit). */
#define RECV_BATCH 64        /* Datagrams per recvmmsg(). */
#define RECV_ROUNDS 4         /* recvmmsg() calls per wake-up while they come back full. */
#define RECV_SIZE 8192        /* Longer UDP queries are dropped as truncated. */
#define UDP_RCVBUF (4 << 20)  /* Receive buffer asked for each UDP listener. */
#define ANSWER_MAX 65535
#define TCP_IDLE_MS 10000
#define TCP_MAX_CONNS 512      /* Per worker. */
#define TCP_MAX_INFLIGHT 64    /* Per connection; reading pauses above it. */

/* Every counter of struct server_stats, for publishing and summing. */
#define STAT_FIELDS(X) \
	X(queries) X(denied) X(cache_hits) X(forwarded) X(servfail) X(formerr) X(dropped) X(tcp_conns)

struct worker;

struct send_item {
	int fd;
	struct sockaddr_storage addr;
	uint16_t len;
	uint8_t buf[UDP_MAX];
};

/* A UDP socket read by the worker itself: libuv's loop reports it readable (uv_poll), and
 * udp_readable() takes up to RECV_BATCH datagrams per recvmmsg(), where uv_udp takes at most
 * 20 and then calls recvmmsg() again to see it empty. */
struct listener {
	uv_poll_t poll;
	int fd;
	uv_tcp_t tcp;
	struct worker *w;
};

struct tcp_conn {
	uv_tcp_t tcp;
	uv_timer_t idle;
	struct sockaddr_storage peer;
	struct worker *w;
	struct tcp_conn *prev, *next;
	uint8_t *buf;
	size_t len, cap;
	unsigned inflight;
	int reading;
	int open_handles;
	int closing;
};

struct tcp_write {
	uv_write_t req;
	struct tcp_conn *conn;
	uint8_t bytes[];
};

/* Datagrams received in one recvmmsg() (udp_readable); the message headers and their
 * buffers are set up once (worker_init). */
struct rx_batch {
	unsigned n;
	struct upstream_client client[RECV_BATCH];
	const uint8_t *pkt[RECV_BATCH];
	size_t len[RECV_BATCH];
	struct wire_query q[RECV_BATCH];
	struct sockaddr_storage from[RECV_BATCH];
	struct mmsghdr msgs[RECV_BATCH];
	struct iovec iov[RECV_BATCH];
};

struct worker {
	server_t *server;
	unsigned index;
	uv_loop_t loop;
	uv_thread_t thread;
	int loop_ready, started;
	uv_async_t stop;
	uv_prepare_t prepare;
	uv_check_t check;
	struct listener listeners[OPTIONS_MAX_ADDRS];
	unsigned nlisten;
	upstream_t *up;
	struct policy_reader *reader;
	struct tcp_conn *conns;
	unsigned nconns;
	uint8_t *recv_buf;
	struct rx_batch rx;
	struct send_item *sendq;
	unsigned nsend;
	uint8_t *answer;
	struct server_stats st; /* Written only by this worker. */
	/* st, published once per loop iteration for other threads to read. */
#define SHOWN(f) _Alignas(8) atomic_ullong shown_##f;
	STAT_FIELDS(SHOWN)
#undef SHOWN
};

struct server {
	const struct options *o;
	policy_store_t *store;
	cache_t *cache;
	unsigned nworkers;
	struct worker *workers;
	/* A held policy load, for status answers (server_set_hold). */
	atomic_int hold_kind;
	atomic_size_t hold_removed, hold_of;
	atomic_uint_fast64_t hold_version;
};

/* ---- Sending ----------------------------------------------------------------------------- */

static void flush(struct worker *w)
{
	struct mmsghdr msgs[SENDQ_LEN];
	struct iovec iov[SENDQ_LEN];
	unsigned i = 0;
	while (i < w->nsend) {
		/* One sendmmsg() per run of replies on the same socket. */
		int fd = w->sendq[i].fd;
		unsigned n = 0;
		for (unsigned j = i; j < w->nsend && w->sendq[j].fd == fd; j++, n++) {
			struct send_item *it = &w->sendq[j];
			iov[n] = (struct iovec){.iov_base = it->buf, .iov_len = it->len};
			memset(&msgs[n], 0, sizeof(msgs[n]));
			msgs[n].msg_hdr.msg_name = &it->addr;
			msgs[n].msg_hdr.msg_namelen = it->addr.ss_family == AF_INET6
							      ? sizeof(struct sockaddr_in6)
							      : sizeof(struct sockaddr_in);
			msgs[n].msg_hdr.msg_iov = &iov[n];
			msgs[n].msg_hdr.msg_iovlen = 1;
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
	w->nsend = 0;
}

static void send_udp(struct worker *w, const struct listener *l, const struct sockaddr_storage *to,
		     const uint8_t *bytes, size_t len)
{
	if (w->nsend == SENDQ_LEN)
		flush(w);
	struct send_item *it = &w->sendq[w->nsend++];
	it->fd = l->fd;
	it->addr = *to;
	it->len = (uint16_t)len;
	memcpy(it->buf, bytes, len);
}

static void tcp_conn_close(struct tcp_conn *c);

static void tcp_written(uv_write_t *req, int status)
{
	struct tcp_write *wr = (struct tcp_write *)req;
	if (status < 0 && status != UV_ECANCELED)
		tcp_conn_close(wr->conn);
	free(wr);
}

static void send_tcp(struct tcp_conn *c, const uint8_t *bytes, size_t len)
{
	if (c->closing)
		return;
	struct tcp_write *wr = malloc(sizeof(*wr) + 2 + len);
	if (!wr) {
		tcp_conn_close(c);
		return;
	}
	wr->conn = c;
	wire_put16(wr->bytes, (uint16_t)len);
	memcpy(wr->bytes + 2, bytes, len);
	uv_buf_t b = uv_buf_init((char *)wr->bytes, (unsigned)(2 + len));
	if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, tcp_written) < 0) {
		free(wr);
		tcp_conn_close(c);
	}
}

/* Send an answer to client, truncating it (TC, question only) when it exceeds what the client
 * accepts over UDP. */
static void respond(struct worker *w, const struct upstream_client *client, const uint8_t *query,
		    const struct wire_query *q, const uint8_t *ans, size_t len)
{
	if (client->conn) {
		send_tcp(client->conn, ans, len);
		return;
	}
	if (len > answer_udp_limit(q)) {
		uint8_t tc[WIRE_HEADER + NAME_MAXWIRE + 4 + 64];
		int n = answer_error(tc, sizeof(tc), query, q, wire_rcode(ans), -1, NULL);
		if (n < 0)
			return;
		tc[2] |= WIRE_FLAG_TC >> 8;
		send_udp(w, client->udp, &client->addr, tc, (size_t)n);
		return;
	}
	send_udp(w, client->udp, &client->addr, ans, len);
}

/* ---- Queries ----------------------------------------------------------------------------- */

static void answer_with_error(struct worker *w, const struct upstream_client *client,
			      const uint8_t *query, const struct wire_query *q, unsigned rcode,
			      int ede, const char *text)
{
	size_t cap = client->conn ? ANSWER_MAX : answer_udp_limit(q);
	int n = answer_error(w->answer, cap, query, q, rcode, ede, text);
	if (n > 0)
		respond(w, client, query, q, w->answer, (size_t)n);
}

static void deny(struct worker *w, const struct upstream_client *client, const uint8_t *query,
		 const struct wire_query *q, const policy_t *pol, const struct policy_verdict *v,
		 const struct name *owner)
{
	const struct options *o = w->server->o;
	/* The rule's name goes into the EDE text only when it has no reason. */
	char rule[NAME_MAXTEXT + 2] = "";
	if (!v->reason)
		name_suffix_to_text(owner ? owner : &q->qname, v->depth, rule, sizeof(rule));
	struct answer_deny d = {
		.depth = v->depth,
		.owner = owner,
		.rule = rule,
		.reason = v->reason,
		.ttl = o->block_ttl,
		.serial = (uint32_t)policy_stats(pol)->version,
		.ede_code = o->ede_code,
	};
	size_t cap = client->conn ? ANSWER_MAX : answer_udp_limit(q);
	int n = answer_deny(w->answer, cap, query, q, &d);
	w->st.denied++;
	if (n > 0) {
		respond(w, client, query, q, w->answer, (size_t)n);
		return;
	}
	/* Only a long CNAME target in a 512-octet answer can fail to fit: deny without the SOA. */
	answer_with_error(w, client, query, q, WIRE_RCODE_NXDOMAIN, o->ede_code, v->reason);
}

/* Is a CNAME or DNAME target in ans's answer section denied? Sets *v and *target if so. */
static int chain_denied(const policy_t *pol, const uint8_t *ans, size_t len,
			struct policy_verdict *v, struct name *target)
{
	struct wire_rr_iter it;
	struct wire_rr rr;
	if (wire_rr_begin(&it, ans, len) < 0)
		return 0;
	while (wire_rr_next(&it, &rr) > 0 && rr.section == 1) {
		if (rr.type != WIRE_TYPE_CNAME && rr.type != WIRE_TYPE_DNAME)
			continue;
		size_t next;
		if (name_from_packet(target, ans, len, rr.rdata, &next) < 0)
			continue;
		policy_lookup(pol, target, v);
		if (v->action == POLICY_DENY)
			return 1;
	}
	return 0;
}

/* "policy.embargo" in lookup format. */
static const uint8_t STATUS_NAME[] = {7, 'e', 'm', 'b', 'a', 'r', 'g', 'o', 6, 'p', 'o', 'l', 'i', 'c', 'y', 0};

/* CH-class queries: TXT policy.embargo. tells allowed clients which policy is in force (as
 * version.bind tells a version); everything else in CHAOS is refused, never forwarded. */
static void status_query(struct worker *w, const struct upstream_client *client,
			 const uint8_t *query, const struct wire_query *q)
{
	const struct options *o = w->server->o;
	int is_status = q->qname.keylen == sizeof(STATUS_NAME) &&
			memcmp(q->qname.key, STATUS_NAME, sizeof(STATUS_NAME)) == 0 &&
			(q->qtype == WIRE_TYPE_TXT || q->qtype == WIRE_TYPE_ANY);
	if (!is_status || !options_cidr_match(o->status_allow, o->nstatus_allow, &client->addr)) {
		answer_with_error(w, client, query, q, WIRE_RCODE_REFUSED, -1, NULL);
		return;
	}
	const policy_t *pol = policy_store_enter(w->server->store, w->reader);
	const struct policy_stats *st = policy_stats(pol);
	char when[32] = "unknown", text[256];
	time_t t = (time_t)st->loaded_at;
	struct tm tm;
	if (t > 0 && gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(text, sizeof(text),
		 "version=%016llx source=%s deny=%zu allow=%zu reasons=%zu invalid=%zu loaded=%s",
		 (unsigned long long)st->version,
		 st->source == POLICY_SOURCE_REDIS ? "redis"
		 : st->source == POLICY_SOURCE_SNAPSHOT ? "snapshot"
		 : st->source == POLICY_SOURCE_HELD ? "held-merge" : "bundled",
		 st->deny, st->allow, st->reasons, st->invalid, when);
	struct server *sv = w->server;
	int hold = atomic_load_explicit(&sv->hold_kind, memory_order_relaxed);
	if (hold != SERVER_HOLD_NONE) {
		static const char *const kinds[] = {"", "shrink", "deny-key-missing", "redis-empty"};
		size_t used = strlen(text);
		snprintf(text + used, sizeof(text) - used, " held=%s",
			 kinds[hold > SERVER_HOLD_EMPTY ? 0 : hold]);
		used = strlen(text);
		if (hold != SERVER_HOLD_EMPTY)
			snprintf(text + used, sizeof(text) - used,
				 " held_removes=%zu/%zu held_version=%016llx",
				 atomic_load_explicit(&sv->hold_removed, memory_order_relaxed),
				 atomic_load_explicit(&sv->hold_of, memory_order_relaxed),
				 (unsigned long long)atomic_load_explicit(&sv->hold_version,
									 memory_order_relaxed));
	}
	size_t cap = client->conn ? ANSWER_MAX : answer_udp_limit(q);
	int n = answer_txt(w->answer, cap, query, q, text);
	if (n > 0)
		respond(w, client, query, q, w->answer, (size_t)n);
}

/* Parse a query and answer it when that needs no policy (malformed, not a QUERY, CHAOS).
 * @return 1 when q goes on to the policy: query_decide(). */
static int query_admit(struct worker *w, const struct upstream_client *client,
		       const uint8_t *pkt, size_t len, struct wire_query *q)
{
	int rc = wire_parse_query(pkt, len, q);
	if (rc == -EINVAL) {
		w->st.dropped++;
		return 0;
	}
	w->st.queries++;
	if (rc == -EBADMSG) {
		w->st.formerr++;
		answer_with_error(w, client, pkt, q, WIRE_RCODE_FORMERR, -1, NULL);
		return 0;
	}
	if (rc == -ENOTSUP) {
		answer_with_error(w, client, pkt, q, WIRE_RCODE_NOTIMP, -1, NULL);
		return 0;
	}
	if (q->has_edns && q->edns_version != 0) {
		answer_with_error(w, client, pkt, q, WIRE_RCODE_BADVERS, -1, NULL);
		return 0;
	}
	if (q->qclass == WIRE_CLASS_CH) {
		status_query(w, client, pkt, q);
		return 0;
	}
	return 1;
}

/* Answer an admitted query given the policy's verdict on its name: deny, the cache, or the
 * upstream. The policy comes first, so a newly denied name is never served from the cache. */
static void query_decide(struct worker *w, const struct upstream_client *client,
			 const uint8_t *pkt, size_t len, const struct wire_query *q,
			 const policy_t *pol, struct policy_verdict v)
{
	if (v.action == POLICY_DENY) {
		deny(w, client, pkt, q, pol, &v, NULL);
		return;
	}

	struct cache_key key;
	bool has_chain;
	cache_key_make(&key, q);
	int n = cache_get(w->server->cache, &key, uv_now(&w->loop), pkt, q, w->answer, ANSWER_MAX,
			  &has_chain);
	if (n > 0) {
		struct name target;
		if (has_chain && chain_denied(pol, w->answer, (size_t)n, &v, &target)) {
			deny(w, client, pkt, q, pol, &v, &target);
			return;
		}
		w->st.cache_hits++;
		respond(w, client, pkt, q, w->answer, (size_t)n);
		return;
	}

	if (upstream_forward(w->up, client, pkt, len, q) < 0) {
		w->st.servfail++;
		answer_with_error(w, client, pkt, q, WIRE_RCODE_SERVFAIL, -1, NULL);
		return;
	}
	w->st.forwarded++;
	if (client->conn)
		((struct tcp_conn *)client->conn)->inflight++;
}

static void handle_query(struct worker *w, const struct upstream_client *client,
			 const uint8_t *pkt, size_t len)
{
	struct wire_query q;
	if (!query_admit(w, client, pkt, len, &q))
		return;
	const policy_t *pol = policy_store_enter(w->server->store, w->reader);
	struct policy_verdict v;
	policy_lookup(pol, &q.qname, &v);
	query_decide(w, client, pkt, len, &q, pol, v);
}

/* The datagrams of one recvmmsg() batch: parsed, then their names looked up together (their
 * memory accesses overlap), then answered in order. */
static void handle_batch(struct worker *w)
{
	struct rx_batch *b = &w->rx;
	const struct name *names[RECV_BATCH];
	struct policy_verdict v[RECV_BATCH];
	unsigned go[RECV_BATCH], n = 0;
	for (unsigned i = 0; i < b->n; i++)
		if (query_admit(w, &b->client[i], b->pkt[i], b->len[i], &b->q[i])) {
			names[n] = &b->q[i].qname;
			go[n++] = i;
		}
	b->n = 0;
	if (n == 0)
		return;
	const policy_t *pol = policy_store_enter(w->server->store, w->reader);
	policy_lookup_many(pol, names, n, v);
	for (unsigned j = 0; j < n; j++) {
		unsigned i = go[j];
		query_decide(w, &b->client[i], b->pkt[i], b->len[i], &b->q[i], pol, v[j]);
	}
}

static void tcp_resume(struct tcp_conn *c);

static void answer_from_upstream(struct worker *w, const struct upstream_client *client,
				 const uint8_t *query, const struct wire_query *q, uint8_t *reply,
				 size_t len)
{
	if (!reply) {
		w->st.servfail++;
		answer_with_error(w, client, query, q, WIRE_RCODE_SERVFAIL,
				  ANSWER_EDE_NO_REACHABLE_AUTHORITY, "no upstream answered in time");
		return;
	}
	/* embargo offers recursion whatever the upstream is (an authoritative server clears RA),
	 * and the upstream's DNS cookie is for embargo, not for this or any later client. */
	reply[3] |= WIRE_FLAG_RA;
	len = wire_remove_edns_option(reply, len, WIRE_EDNS_COOKIE);
	const policy_t *pol = policy_store_enter(w->server->store, w->reader);
	struct policy_verdict v;
	struct name target;
	int denied = chain_denied(pol, reply, len, &v, &target);
	uint32_t ttl = cache_ttl(reply, len);
	if (ttl > 0) {
		struct cache_key key;
		cache_key_make(&key, q);
		cache_put(w->server->cache, &key, reply, len, ttl, uv_now(&w->loop));
	}
	if (denied)
		deny(w, client, query, q, pol, &v, &target);
	else
		respond(w, client, query, q, reply, len);
}

static void on_upstream_answer(void *ctx, const struct upstream_client *client,
			       const uint8_t *query, size_t query_len, const struct wire_query *q,
			       uint8_t *reply, size_t len)
{
	struct worker *w = ctx;
	answer_from_upstream(w, client, query, q, reply, len);
	if (client->conn) {
		struct tcp_conn *c = client->conn;
		c->inflight--;
		tcp_resume(c);
	}
}

/* ---- UDP --------------------------------------------------------------------------------- */

/* The listener's socket is readable: take datagrams in batches of RECV_BATCH, each batch
 * parsed, looked up together (their memory accesses overlap) and answered before the next. A
 * short batch means the socket is drained; the poll is level-triggered, so anything that came
 * meanwhile, or is left after RECV_ROUNDS, wakes the loop again. */
static void udp_readable(uv_poll_t *h, int status, int events)
{
	struct listener *l = h->data;
	struct worker *w = l->w;
	struct rx_batch *b = &w->rx;
	(void)events;
	if (status < 0)
		return;
	for (unsigned round = 0; round < RECV_ROUNDS; round++) {
		int got = recvmmsg(l->fd, b->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return; /* Drained (EAGAIN); other errors are the socket's and pass. */
		b->n = 0;
		for (int i = 0; i < got; i++) {
			const struct mmsghdr *m = &b->msgs[i];
			if (m->msg_hdr.msg_flags & MSG_TRUNC) {
				w->st.dropped++;
				continue;
			}
			unsigned k = b->n++;
			b->client[k] = (struct upstream_client){.udp = l, .conn = NULL};
			memcpy(&b->client[k].addr, &b->from[i], m->msg_hdr.msg_namelen);
			b->pkt[k] = b->iov[i].iov_base;
			b->len[k] = m->msg_len;
		}
		for (int i = 0; i < got; i++) /* What recvmmsg() changed of the headers. */
			b->msgs[i].msg_hdr.msg_namelen = sizeof(b->from[i]);
		handle_batch(w);
		if (got < RECV_BATCH)
			return;
	}
}

/* Stop reading a listener's UDP socket and close it (the poll is stopped at once). */
static void udp_close(struct listener *l)
{
	uv_close((uv_handle_t *)&l->poll, NULL);
	close(l->fd);
	l->fd = -1;
}

/* ---- TCP --------------------------------------------------------------------------------- */

static void tcp_conn_closed(uv_handle_t *h)
{
	struct tcp_conn *c = h->data;
	if (--c->open_handles > 0)
		return;
	free(c->buf);
	free(c);
}

static void tcp_conn_close(struct tcp_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	struct worker *w = c->w;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	upstream_forget(w->up, c);
	uv_close((uv_handle_t *)&c->tcp, tcp_conn_closed);
	uv_close((uv_handle_t *)&c->idle, tcp_conn_closed);
}

static void tcp_idle(uv_timer_t *t)
{
	struct tcp_conn *c = t->data;
	if (c->inflight > 0)
		uv_timer_again(t);
	else
		tcp_conn_close(c);
}

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tcp_conn *c = h->data;
	if (c->cap - c->len < 4096 && c->cap < 2 * 65537) {
		size_t cap = c->cap ? c->cap * 2 : 4096;
		if (cap > 2 * 65537)
			cap = 2 * 65537;
		uint8_t *b = realloc(c->buf, cap);
		if (b) {
			c->buf = b;
			c->cap = cap;
		}
	}
	*buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void tcp_process(struct tcp_conn *c);

/* Reading was paused at the in-flight limit: finish what is buffered, then read again. */
static void tcp_resume(struct tcp_conn *c)
{
	if (c->closing || c->reading || c->inflight >= TCP_MAX_INFLIGHT)
		return;
	tcp_process(c);
	if (!c->closing && !c->reading && c->inflight < TCP_MAX_INFLIGHT &&
	    uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc, tcp_read) == 0)
		c->reading = 1;
}

/* Answer every complete message in the buffer (RFC 7766: answers may go out in any order),
 * pausing reading while too many are in flight. */
static void tcp_process(struct tcp_conn *c)
{
	struct upstream_client client = {.udp = NULL, .addr = c->peer, .conn = c};
	size_t off = 0;
	while (!c->closing && c->inflight < TCP_MAX_INFLIGHT && c->len - off >= 2) {
		size_t flen = wire_get16(c->buf + off);
		if (c->len - off < 2 + flen)
			break;
		handle_query(c->w, &client, c->buf + off + 2, flen);
		off += 2 + flen;
	}
	if (c->closing)
		return;
	if (off > 0) {
		memmove(c->buf, c->buf + off, c->len - off);
		c->len -= off;
	}
	if (c->inflight >= TCP_MAX_INFLIGHT && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
}

static void tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct tcp_conn *c = s->data;
	if (nread < 0) {
		tcp_conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	uv_timer_again(&c->idle);
	tcp_process(c);
}

static void tcp_accept(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct worker *w = l->w;
	if (status < 0)
		return;
	struct tcp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->w = w;
	uv_tcp_init(&w->loop, &c->tcp);
	uv_timer_init(&w->loop, &c->idle);
	c->tcp.data = c->idle.data = c;
	c->open_handles = 2;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	w->st.tcp_conns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || w->nconns > TCP_MAX_CONNS) {
		tcp_conn_close(c);
		return;
	}
	int plen = sizeof(c->peer);
	uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &plen);
	uv_tcp_nodelay(&c->tcp, 1);
	uv_timer_start(&c->idle, tcp_idle, TCP_IDLE_MS, TCP_IDLE_MS);
	tcp_resume(c);
}

/* ---- Loop hooks -------------------------------------------------------------------------- */

static void publish_stats(struct worker *w)
{
#define PUBLISH(f) atomic_store_explicit(&w->shown_##f, w->st.f, memory_order_relaxed);
	STAT_FIELDS(PUBLISH)
#undef PUBLISH
}

static void on_prepare(uv_prepare_t *h)
{
	struct worker *w = h->data;
	flush(w);
	publish_stats(w);
	/* The loop may block now: this worker holds no policy snapshot until its next callback. */
	policy_store_quiescent(w->reader);
}

static void on_check(uv_check_t *h)
{
	flush(h->data);
}

static void on_stop(uv_async_t *h)
{
	struct worker *w = h->data;
	flush(w);
	publish_stats(w);
	for (unsigned i = 0; i < w->nlisten; i++) {
		udp_close(&w->listeners[i]);
		uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
	}
	w->nlisten = 0;
	while (w->conns)
		tcp_conn_close(w->conns);
	upstream_close(w->up);
	w->up = NULL;
	uv_close((uv_handle_t *)&w->prepare, NULL);
	uv_close((uv_handle_t *)&w->check, NULL);
	uv_close((uv_handle_t *)&w->stop, NULL);
	policy_store_quiescent(w->reader);
}

static void worker_main(void *arg)
{
	struct worker *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* ---- Set-up ------------------------------------------------------------------------------ */

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* A bound socket; with reuseport set, each worker can bind the same address. */
static int bound_socket(const struct sockaddr_storage *ss, int type, int reuseport)
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
	    bind(fd, (const struct sockaddr *)ss, addr_len(ss)) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static int listener_open(struct worker *w, struct listener *l, const struct sockaddr_storage *ss,
			 char *err, size_t errlen)
{
	char addr[80];
	options_format_addr(ss, addr, sizeof(addr));
	l->w = w;
	int fd = bound_socket(ss, SOCK_DGRAM, 1);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on UDP %s: %s", addr, strerror(-fd));
		return fd;
	}
	l->fd = fd;
	int rc = uv_poll_init_socket(&w->loop, &l->poll, fd);
	if (rc < 0) {
		close(fd); /* No handle to close. */
		snprintf(err, errlen, "cannot listen on UDP %s: %s", addr, uv_strerror(rc));
		return rc;
	}
	l->poll.data = l;
	rc = uv_poll_start(&l->poll, UV_READABLE, udp_readable);
	if (rc < 0) {
		udp_close(l);
		snprintf(err, errlen, "cannot listen on UDP %s: %s", addr, uv_strerror(rc));
		return rc;
	}
	fd = bound_socket(ss, SOCK_STREAM, 1);
	uv_tcp_init(&w->loop, &l->tcp);
	l->tcp.data = l;
	if (fd < 0) {
		rc = fd;
		snprintf(err, errlen, "cannot listen on TCP %s: %s", addr, strerror(-fd));
	} else {
		rc = uv_tcp_open(&l->tcp, fd);
		if (rc < 0)
			close(fd);
		else
			rc = uv_listen((uv_stream_t *)&l->tcp, 256, tcp_accept);
		if (rc < 0)
			snprintf(err, errlen, "cannot listen on TCP %s: %s", addr, uv_strerror(rc));
	}
	if (rc < 0) {
		udp_close(l);
		uv_close((uv_handle_t *)&l->tcp, NULL);
		return rc;
	}
	return 0;
}

static int worker_init(server_t *s, struct worker *w, unsigned index, char *err, size_t errlen)
{
	const struct options *o = s->o;
	w->server = s;
	w->index = index;
	w->reader = policy_store_reader(s->store, index);
	w->recv_buf = malloc(RECV_BATCH * RECV_SIZE);
	w->sendq = malloc(SENDQ_LEN * sizeof(*w->sendq));
	w->answer = malloc(ANSWER_MAX);
	if (!w->recv_buf || !w->sendq || !w->answer) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	struct rx_batch *b = &w->rx;
	for (unsigned i = 0; i < RECV_BATCH; i++) {
		b->iov[i] = (struct iovec){.iov_base = w->recv_buf + (size_t)i * RECV_SIZE,
					   .iov_len = RECV_SIZE};
		b->msgs[i].msg_hdr = (struct msghdr){
			.msg_name = &b->from[i],
			.msg_namelen = sizeof(b->from[i]),
			.msg_iov = &b->iov[i],
			.msg_iovlen = 1,
		};
	}
	int rc = uv_loop_init(&w->loop);
	if (rc < 0) {
		snprintf(err, errlen, "cannot create an event loop: %s", uv_strerror(rc));
		return rc;
	}
	w->loop_ready = 1;
	uv_async_init(&w->loop, &w->stop, on_stop);
	uv_prepare_init(&w->loop, &w->prepare);
	uv_check_init(&w->loop, &w->check);
	w->stop.data = w->prepare.data = w->check.data = w;
	uv_prepare_start(&w->prepare, on_prepare);
	uv_check_start(&w->check, on_check);
	w->up = upstream_new(&w->loop, o, on_upstream_answer, w, &rc);
	if (!w->up) {
		snprintf(err, errlen, "cannot open upstream sockets: %s", uv_strerror(rc));
		return rc;
	}
	for (unsigned i = 0; i < o->nlisten; i++) {
		rc = listener_open(w, &w->listeners[i], &o->listen[i], err, errlen);
		if (rc < 0)
			return rc;
		w->nlisten++;
	}
	return 0;
}

/* Close a worker that never started: run its loop until every handle is gone. */
static void worker_teardown(struct worker *w)
{
	if (w->loop_ready) {
		if (!uv_is_closing((uv_handle_t *)&w->stop))
			on_stop(&w->stop);
		uv_run(&w->loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&w->loop) != 0)
			log_warn("worker %u: event loop still had open handles at exit", w->index);
	}
	free(w->recv_buf);
	free(w->sendq);
	free(w->answer);
}

int server_new(server_t **out, const struct options *o, policy_store_t *store, cache_t *cache,
	       char *err, size_t errlen)
{
	server_t *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->o = o;
	s->store = store;
	s->cache = cache;
	s->nworkers = o->threads;
	s->workers = aligned_alloc(64, (s->nworkers * sizeof(struct worker) + 63) / 64 * 64);
	if (!s->workers) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memset(s->workers, 0, s->nworkers * sizeof(struct worker));
	/* SO_REUSEPORT would let a second embargo (of the same user) share our addresses and
	 * silently take half the traffic: first make sure nobody holds them. */
	static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
	for (unsigned i = 0; i < o->nlisten; i++) {
		for (unsigned t = 0; t < 2; t++) {
			int type = types[t];
			int fd = bound_socket(&o->listen[i], type, 0);
			if (fd >= 0) {
				close(fd);
				continue;
			}
			char addr[80];
			options_format_addr(&o->listen[i], addr, sizeof(addr));
			snprintf(err, errlen, "cannot listen on %s %s: %s", type == SOCK_DGRAM ? "UDP" : "TCP",
				 addr, strerror(-fd));
			free(s->workers);
			free(s);
			return fd;
		}
	}
	for (unsigned i = 0; i < s->nworkers; i++) {
		int rc = worker_init(s, &s->workers[i], i, err, errlen);
		if (rc < 0) {
			server_free(s);
			return rc;
		}
	}
	*out = s;
	return 0;
}

int server_start(server_t *s)
{
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
		int rc = uv_thread_create(&w->thread, worker_main, w);
		if (rc < 0)
			return rc;
		w->started = 1;
	}
	return 0;
}

void server_stop(server_t *s)
{
	for (unsigned i = 0; i < s->nworkers; i++)
		if (s->workers[i].started == 1)
			uv_async_send(&s->workers[i].stop);
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
		if (w->started == 1) {
			uv_thread_join(&w->thread);
			w->started = 2; /* Joined; its loop is empty. */
		}
	}
}

void server_free(server_t *s)
{
	if (!s)
		return;
	server_stop(s);
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
		if (w->started) {
			if (uv_loop_close(&w->loop) != 0)
				log_warn("worker %u: event loop still had open handles at exit", i);
			free(w->recv_buf);
			free(w->sendq);
			free(w->answer);
		} else {
			worker_teardown(w);
		}
	}
	free(s->workers);
	free(s);
}

void server_stats(server_t *s, struct server_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
#define SUM(f) out->f += atomic_load_explicit(&w->shown_##f, memory_order_relaxed);
		STAT_FIELDS(SUM)
#undef SUM
	}
}

void server_set_hold(server_t *s, enum server_hold kind, size_t removed, size_t of,
		     uint64_t version)
{
	atomic_store_explicit(&s->hold_removed, removed, memory_order_relaxed);
	atomic_store_explicit(&s->hold_of, of, memory_order_relaxed);
	atomic_store_explicit(&s->hold_version, version, memory_order_relaxed);
	atomic_store_explicit(&s->hold_kind, (int)kind, memory_order_release);
}

unsigned server_workers(const server_t *s)
{
	return s->nworkers;
}
