/* Upstream forwarding. Three fixed pools per worker: waiters (a client's query, copied), pending
 * upstream questions (each with its waiters, merged by a keyed hash of the normalised question)
 * and sockets (one per attempt; freed to the pool in their close callback). Attempts time out
 * through one FIFO in deadline order (every attempt has the same timeout) and one timer; probes
 * of dead upstreams have their own timer. */
#include "config.h"

#include "resolver/upstream/upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "resolver/upstream/cookie_seen.h"
#include "resolver/base/log.h"
#include "resolver/base/siphash.h"

#define POOL_SIZE 4096        /* Waiters, and pending questions. */
#define QUERY_MAX 1500        /* Longest client query kept. */
#define OUT_MAX 512           /* Our own upstream query: header, name, OPT with a cookie. */
#define ATTEMPTS 4            /* Attempts per question; each has timeout / ATTEMPTS. */
#define MERGE_BUCKETS 8192
#define FETCH_MAX 256         /* Questions waiting on TCP links per worker. */
#define FETCH_PER_CLIENT 16   /* Of those, asked first by one client (--ratelimit-prefix). */
#define LINK_IDLE_MS 10000    /* A link with nothing to wait for closes after this. */
#define LINK_RETRIES 8        /* Times a question moves to a new link when one is closed. */
#define RECV_MAX 65535
#define RECV_PER_WAKE 8       /* Datagrams read from one socket per wake-up. */
#define EDNS_SIZE 1232        /* What we advertise upstream (DNS flag day 2020). */
#define PROBE_FIRST_MS 1000
#define PROBE_MAX_MS 60000
#define SRTT_PENALTY_MS 1000  /* Added to an upstream's RTT when it refuses a connection, or
			       * fails a question another upstream answers. */
#define SRTT_MAX_MS 30000

struct pending;

/* A client's query waiting for an upstream answer. */
struct waiter {
	struct waiter *next;
	struct waiter *due_prev, *due_next; /* The serve-stale list, in deadline order. */
	uint64_t due;                       /* When a stale answer is due (0: none). */
	uint8_t in_due;
	uint8_t answered;                   /* It got a stale answer; the question goes on. */
	uint8_t refresh;                    /* A cache refresh: no client (ops NULL). */
	struct client client;
	struct wire_query q;
	uint16_t len;
	uint8_t query[QUERY_MAX];
};

/* One attempt's connected UDP socket, or a probe's. */
struct outsock {
	uv_poll_t poll;
	int fd;
	uint16_t port;        /* Local, for the loop guard. */
	uint8_t family;       /* family_index() of the socket's. */
	uint8_t upstream;
	uint8_t probe;        /* A probe of a dead upstream, not an attempt. */
	uint64_t sent_at;
	uint64_t sent_ns;     /* uv_hrtime(), for the latency histogram. */
	upstream_t *u;
	struct pending *p;    /* The question it asks; NULL once abandoned. */
	struct outsock *next_free;
};

struct tcp_link;

struct pending {
	struct pending *prev, *next; /* FIFO of attempts in deadline order, or the free list. */
	struct pending *hnext;       /* Merge table chain. */
	struct outsock *sock;        /* The attempt in flight over UDP. */
	struct tcp_link *link;        /* The TCP connection it waits on (a truncated answer). */
	struct pending *link_prev, *link_next;
	struct waiter *waiters, *last_waiter;
	uint64_t hash;
	uint64_t deadline;           /* This attempt's. */
	uint64_t expire;             /* The whole question's. */
	uint64_t started;
	uint16_t keylen;
	uint16_t len;                /* Of query. */
	uint16_t name_len;           /* Of the question name at query + 12. */
	uint16_t tried;              /* Upstreams asked in this round (bit per upstream). */
	uint8_t attempt;
	uint8_t upstream;
	uint8_t use_0x20;
	uint8_t case_mismatch;       /* This attempt saw its ID and name in another case. */
	uint8_t force;               /* Upstream + 1 that the next attempt must ask; 0: pick. */
	uint8_t link_retried;        /* Times moved to a new TCP link after one failed. */
	uint64_t link_sent;          /* When it was written to its link (0: not yet). */
	uint8_t cookie_sent;
	uint8_t in_fifo;
	uint8_t in_table;
	uint8_t has_edns;            /* Of its clients: they all agree (it is in the key). */
	uint16_t rejected;           /* Upstreams that answered it with an error RCODE: never
				      * asked it again (bit per upstream). */
	uint8_t badcookie_retried;   /* A BADCOOKIE was answered by asking again with the cookie. */
	struct upstream_failure why; /* The last such answer's RCODE and EDE. */
	uint8_t key[NAME_MAXWIRE + 1 + 5];
	uint8_t query[OUT_MAX];
};

/* A TCP connection to one upstream, kept open and shared: questions whose UDP answer was
 * truncated are written to it back to back and matched as their answers come, in any order. */
struct tcp_link {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect;
	upstream_t *u;
	unsigned upstream;
	int connected;
	int closing;
	int open_handles;
	struct pending *head, *tail; /* Questions waiting on it, oldest first. */
	unsigned nout;
	uint64_t idle_since;
	uint64_t opened;             /* When the connect began. */
	uint64_t last_rx;            /* When the last whole message came (0: none yet). */
	uint16_t retired[256];       /* IDs of questions given up on it, whose answers may come. */
	unsigned nretired;
	size_t len, cap;
	uint8_t *buf;
};

/* One message written to a link (its own copy: the question may end before the write). */
struct link_write {
	uv_write_t req;
	uint8_t bytes[];
};

/* What one worker knows of one upstream. */
struct health {
	uint32_t srtt_ms;            /* Smoothed RTT plus soft-failure penalties; 0: unknown. */
	uint8_t down;                /* Timed out or refused the connection: skipped. */
	uint32_t probe_backoff_ms;
	uint64_t probe_at;           /* When the next probe goes (while down). */
	struct outsock *probe;       /* The probe in flight. */
	uint64_t probe_deadline;
	uint16_t probe_txid;
	uint8_t client_cookie[8];
	uint8_t server_cookie[32];
	uint8_t server_cookie_len;
	struct cookie_seen *cookie;  /* Its entry in the process's cookie table, once found. */
	unsigned cookie_scanned;     /* Entries of that table looked through without finding it. */
	uint32_t cookie_gen;         /* Its entry's generation when this worker last read it. */
};

struct upstream {
	uv_loop_t *loop;
	const struct options *o;
	upstream_answer_cb cb;
	void *ctx;
	struct latency_hist *latency; /* One per upstream (index in o->upstream); NULL: none. */
	uv_timer_t timer, probe_timer, due_timer;
	struct waiter *due_head, *due_tail;
	int open_handles;
	int closing;
	struct waiter *waiter_pool, *free_waiters;
	struct pending *pool, *free;
	struct pending *head, *tail;
	struct outsock *socks, *free_socks;
	unsigned nsocks;
	unsigned npending, max_pending; /* Questions in flight; at most half the sockets. */
	unsigned nrefresh;           /* Cache refreshes waiting: at most max_pending / 8. */
	struct pending **buckets;
	struct tcp_link *links[OPTIONS_MAX_ADDRS];
	unsigned nfetches;           /* Questions waiting on links, all upstreams. */
	struct siphash_key hkey;
	struct health health[OPTIONS_MAX_ADDRS];
	unsigned attempt_ms;
	uint8_t rnd[256];
	unsigned rnd_pos;
	uint8_t *recv_buf;           /* RECV_MAX: a datagram. */
	uint8_t *deliver;            /* RECV_MAX: the answer normalised for clients. */
	uint8_t *out;                /* RECV_MAX: one client's copy. */
	struct upstream_stats stats;
};

/* Local ports held by upstream sockets of every worker, per address family, counted. */
static _Atomic uint8_t own_ports[2][65536];

static int family_index(int family)
{
	return family == AF_INET6 ? 1 : 0;
}

static void timer_cb(uv_timer_t *t);
static void probe_timer_cb(uv_timer_t *t);
static void due_timer_cb(uv_timer_t *t);
static void next_attempt(upstream_t *u, struct pending *p);

/* ---- Randomness ------------------------------------------------------------------------- */

/* Bytes from the kernel's CSPRNG, drawn 256 at a time. */
static void random_bytes(upstream_t *u, void *out, size_t n)
{
	uint8_t *o = out;
	while (n > 0) {
		if (u->rnd_pos == sizeof(u->rnd)) {
			size_t got = 0;
			while (got < sizeof(u->rnd)) {
				ssize_t r = getrandom(u->rnd + got, sizeof(u->rnd) - got, 0);
				if (r > 0)
					got += (size_t)r;
				else if (errno != EINTR)
					abort(); /* getrandom() on a booted kernel does not fail. */
			}
			u->rnd_pos = 0;
		}
		size_t take = sizeof(u->rnd) - u->rnd_pos;
		if (take > n)
			take = n;
		memcpy(o, u->rnd + u->rnd_pos, take);
		u->rnd_pos += (unsigned)take;
		o += take;
		n -= take;
	}
}

static uint16_t random16(upstream_t *u)
{
	uint8_t b[2];
	random_bytes(u, b, 2);
	return (uint16_t)(b[0] << 8 | b[1]);
}

/* ---- Addresses -------------------------------------------------------------------------- */

bool upstream_is_own_port(int family, uint16_t port)
{
	return atomic_load_explicit(&own_ports[family_index(family)][port], memory_order_relaxed) != 0;
}

/* ---- The FIFO of attempts --------------------------------------------------------------- */

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

/* ---- Sockets ---------------------------------------------------------------------------- */

static void unref(upstream_t *u)
{
	if (--u->open_handles > 0)
		return;
	free(u->waiter_pool);
	free(u->pool);
	free(u->socks);
	free(u->buckets);
	free(u->recv_buf);
	free(u->deliver);
	free(u->out);
	free(u);
}

static void sock_closed(uv_handle_t *h)
{
	struct outsock *s = h->data;
	upstream_t *u = s->u;
	s->next_free = u->free_socks;
	u->free_socks = s;
	unref(u);
}

/* Close s; its slot returns to the pool in the close callback. */
static void sock_close(struct outsock *s)
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

static void sock_readable(uv_poll_t *h, int status, int events);

/* A connected UDP socket to upstream i on a port the kernel picks at random, sending data.
 * @return the socket, or NULL (counted) when none can be had. */
static struct outsock *sock_open(upstream_t *u, unsigned i, const uint8_t *data, size_t len)
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
	if (uv_poll_start(&s->poll, UV_READABLE, sock_readable) < 0) {
		sock_close(s);
		return NULL;
	}
	/* A failed send (EAGAIN, unreachable) is retried by the timeout like a lost packet. */
	if (send(fd, data, len, 0) >= 0)
		u->stats.sent++;
	return s;
}

/* ---- Health ------------------------------------------------------------------------------ */

static void arm_probe_timer(upstream_t *u)
{
	if (u->closing)
		return;
	uint64_t next = UINT64_MAX;
	for (unsigned i = 0; i < u->o->nupstream; i++) {
		const struct health *h = &u->health[i];
		if (h->probe && h->probe_deadline < next)
			next = h->probe_deadline;
		else if (!h->probe && h->down && h->probe_at < next)
			next = h->probe_at;
	}
	if (next == UINT64_MAX) {
		uv_timer_stop(&u->probe_timer);
		return;
	}
	uint64_t now = uv_now(u->loop);
	uv_timer_start(&u->probe_timer, probe_timer_cb, next > now ? next - now : 0, 0);
}

static void mark_down(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	if (h->down)
		return;
	char addr[80];
	options_format_addr(&u->o->upstream[i], addr, sizeof(addr));
	log_warn("upstream %s does not answer: skipped until a probe finds it back", addr);
	h->down = 1;
	h->probe_backoff_ms = PROBE_FIRST_MS;
	h->probe_at = uv_now(u->loop) + h->probe_backoff_ms;
	arm_probe_timer(u);
}

static void mark_up(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	if (!h->down)
		return;
	char addr[80];
	options_format_addr(&u->o->upstream[i], addr, sizeof(addr));
	log_info("upstream %s answers again", addr);
	h->down = 0;
	if (h->probe)
		sock_close(h->probe);
	arm_probe_timer(u);
}

static void note_rtt(upstream_t *u, unsigned i, uint64_t rtt)
{
	struct health *h = &u->health[i];
	uint32_t r = rtt > SRTT_MAX_MS ? SRTT_MAX_MS : (uint32_t)rtt + 1;
	h->srtt_ms = h->srtt_ms ? (h->srtt_ms * 7 + r) / 8 : r;
	mark_up(u, i);
}

static void srtt_penalty(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	h->srtt_ms = h->srtt_ms + SRTT_PENALTY_MS > SRTT_MAX_MS ? SRTT_MAX_MS
								 : h->srtt_ms + SRTT_PENALTY_MS;
}

static void note_soft_failure(upstream_t *u, unsigned i)
{
	srtt_penalty(u, i);
	u->stats.soft_failures++;
}

/* The upstream for p's next attempt: the fastest live one not yet asked in this round, else a
 * dead one not yet asked (all may be dead), else a new round. One that answered p with an
 * error RCODE is never asked again (attempt_failed() stops when all have). */
static unsigned pick(upstream_t *u, struct pending *p)
{
	unsigned n = u->o->nupstream;
	if (((p->tried | p->rejected) & ((1u << n) - 1)) == (1u << n) - 1)
		p->tried = p->rejected;
	int best = -1;
	for (int pass = 0; pass < 2 && best < 0; pass++)
		for (unsigned i = 0; i < n; i++) {
			if (p->tried & (1u << i) || u->health[i].down != pass)
				continue;
			if (best < 0 || u->health[i].srtt_ms < u->health[best].srtt_ms)
				best = (int)i;
		}
	if (best < 0)
		abort(); /* attempt_failed() never asks for one when every upstream rejected p. */
	return (unsigned)best;
}

/* ---- Our own query ---------------------------------------------------------------------- */

/* Write the question's header and OPT record for the next attempt to upstream i: a new ID,
 * new letter case, the upstream's cookie. */
static void prepare_query(upstream_t *u, struct pending *p, unsigned i)
{
	uint8_t *b = p->query;
	wire_put16(b, random16(u));
	uint8_t *name = b + WIRE_HEADER;
	/* 0x20: each letter's case from one random bit; without it, lower case. */
	uint8_t bits[NAME_MAXWIRE / 8 + 1];
	if (p->use_0x20)
		random_bytes(u, bits, (p->name_len + 7) / 8);
	for (unsigned k = 0; k < p->name_len;) {
		unsigned l = name[k++];
		for (unsigned e = k + l; k < e; k++) {
			uint8_t c = name[k] | 0x20;
			if (c < 'a' || c > 'z')
				continue;
			name[k] = p->use_0x20 && (bits[k / 8] >> (k % 8)) & 1 ? (uint8_t)(c & ~0x20) : c;
		}
	}
	/* OPT: root owner, type 41, our size, extended RCODE 0, version 0, DO as the clients. */
	size_t off = WIRE_HEADER + p->name_len + 4 + 11;
	uint8_t *opt = b + off - 11;
	uint16_t rdlen = 0;
	struct health *h = &u->health[i];
	p->cookie_sent = 0;
	if (u->o->cookies) {
		wire_put16(b + off, WIRE_EDNS_COOKIE);
		wire_put16(b + off + 2, (uint16_t)(8 + h->server_cookie_len));
		memcpy(b + off + 4, h->client_cookie, 8);
		memcpy(b + off + 12, h->server_cookie, h->server_cookie_len);
		rdlen = (uint16_t)(12 + h->server_cookie_len);
		p->cookie_sent = 1;
	}
	wire_put16(opt + 9, rdlen);
	p->len = (uint16_t)(off + rdlen);
}

/* ---- Finishing ---------------------------------------------------------------------------- */

static void table_remove(upstream_t *u, struct pending *p)
{
	if (!p->in_table)
		return;
	struct pending **pp = &u->buckets[p->hash & (MERGE_BUCKETS - 1)];
	while (*pp != p)
		pp = &(*pp)->hnext;
	*pp = p->hnext;
	p->in_table = 0;
}

static void link_unlink(struct pending *p, int answered);

static void release(upstream_t *u, struct pending *p)
{
	fifo_remove(u, p);
	table_remove(u, p);
	if (p->sock)
		sock_close(p->sock);
	if (p->link)
		link_unlink(p, 0);
	p->next = u->free;
	u->free = p;
	u->npending--;
}

/* ---- Serve-stale deadlines ---------------------------------------------------------------- */

/* Every waiter has the same stale timeout, so the list is in deadline order as appended. */
static void due_arm(upstream_t *u)
{
	if (!u->due_head) {
		uv_timer_stop(&u->due_timer);
		return;
	}
	uint64_t now = uv_now(u->loop);
	uv_timer_start(&u->due_timer, due_timer_cb, u->due_head->due > now ? u->due_head->due - now : 0,
		       0);
}

static void due_remove(upstream_t *u, struct waiter *w)
{
	if (!w->in_due)
		return;
	if (w->due_prev)
		w->due_prev->due_next = w->due_next;
	else
		u->due_head = w->due_next;
	if (w->due_next)
		w->due_next->due_prev = w->due_prev;
	else
		u->due_tail = w->due_prev;
	w->due_prev = w->due_next = NULL;
	w->in_due = 0;
}

static void due_append(upstream_t *u, struct waiter *w)
{
	w->due_prev = u->due_tail;
	w->due_next = NULL;
	if (u->due_tail)
		u->due_tail->due_next = w;
	else
		u->due_head = w;
	u->due_tail = w;
	w->in_due = 1;
	if (u->due_head == w)
		due_arm(u);
}

/* A client that may have a stale answer has waited long enough: the query path answers it from
 * the cache if it still can, and its question goes on as the entry's refresh. */
static void due_timer_cb(uv_timer_t *t)
{
	upstream_t *u = t->data;
	uint64_t now = uv_now(u->loop);
	while (u->due_head && u->due_head->due <= now) {
		struct waiter *w = u->due_head;
		due_remove(u, w);
		if (u->cb(u->ctx, &w->client, w->query, &w->q, NULL, 0, NULL, UPSTREAM_DUE))
			w->answered = 1;
	}
	due_arm(u);
}

/* Finish p with reply (NULL: failure): every waiter gets its own copy, then p is released. */
static void finish(upstream_t *u, struct pending *p, const uint8_t *reply, size_t len)
{
	fifo_remove(u, p);
	/* No new waiter may join a question that is being answered. */
	table_remove(u, p);
	if (reply) {
		u->stats.answered++;
		/* The normalised answer: embargo offers recursion whatever the upstream is (an
		 * authoritative server clears RA) and is no authority (AA clear, as Unbound, BIND
		 * and PowerDNS Recursor answer); the upstream's cookie is embargo's, not the
		 * clients'; a client that sent no OPT gets none (RFC 6891 7). */
		memcpy(u->deliver, reply, len);
		u->deliver[3] |= WIRE_FLAG_RA;
		u->deliver[2] &= (uint8_t)~(WIRE_FLAG_AA >> 8); /* embargo is not the authority. */
		len = wire_remove_edns_option(u->deliver, len, WIRE_EDNS_COOKIE);
		if (!p->has_edns)
			len = wire_remove_opt(u->deliver, len);
	} else {
		u->stats.timeouts++;
	}
	struct waiter *w = p->waiters;
	p->waiters = p->last_waiter = NULL;
	unsigned first = UPSTREAM_FIRST;
	while (w) {
		struct waiter *next = w->next;
		due_remove(u, w);
		if (w->refresh)
			u->nrefresh--;
		if (!u->closing) {
			uint8_t *out = NULL;
			if (reply) {
				out = u->out;
				memcpy(out, u->deliver, len);
				wire_answer_patch(out, w->query, &w->q);
			}
			u->cb(u->ctx, &w->client, w->query, &w->q, out, reply ? len : 0,
			      reply ? NULL : &p->why, first | (w->answered ? UPSTREAM_ANSWERED : 0) |
				      (reply ? (p->upstream + 1u) << UPSTREAM_INDEX_SHIFT : 0));
			first = 0;
		}
		w->next = u->free_waiters;
		u->free_waiters = w;
		w = next;
	}
	release(u, p);
}

/* ---- Replies over UDP --------------------------------------------------------------------- */

/* How reply relates to p's question. */
enum match { MATCH_NONE, MATCH_CASE, MATCH_EXACT };

static enum match question_match(const struct pending *p, const uint8_t *reply, size_t len)
{
	size_t qend = WIRE_HEADER + p->name_len + 4u;
	if (len < qend || wire_get16(reply) != wire_get16(p->query) ||
	    !(wire_get16(reply + 2) & WIRE_FLAG_QR) || (reply[2] & 0x78) != 0 ||
	    wire_get16(reply + 4) != 1)
		return MATCH_NONE;
	if (memcmp(reply + WIRE_HEADER, p->query + WIRE_HEADER, qend - WIRE_HEADER) == 0)
		return MATCH_EXACT;
	/* Letters may differ in case only; label lengths (<= 63, never a letter's code with
	 * 0x20 set), type and class must be equal. */
	size_t nend = WIRE_HEADER + p->name_len;
	for (size_t k = WIRE_HEADER; k < nend; k++) {
		uint8_t a = reply[k], b = p->query[k];
		if (a != b && !((a | 0x20) == (b | 0x20) && (b | 0x20) >= 'a' && (b | 0x20) <= 'z'))
			return MATCH_NONE;
	}
	if (memcmp(reply + nend, p->query + nend, 4) != 0)
		return MATCH_NONE;
	return MATCH_CASE;
}

/* ---- Cookies -------------------------------------------------------------------------------- */

/* Upstream i's entry in the process's table of upstreams that send cookies (cached in its
 * health once found), added when add; NULL when it has none. */
static struct cookie_seen *cookie_entry(upstream_t *u, unsigned i, int add)
{
	struct health *h = &u->health[i];
	if (!h->cookie)
		h->cookie = cookie_seen_find(&u->o->upstream[i], &h->cookie_scanned);
	if (!h->cookie && add) {
		h->cookie = cookie_seen_add(&u->o->upstream[i]);
		if (!h->cookie) {
			static atomic_flag said = ATOMIC_FLAG_INIT;
			if (!atomic_flag_test_and_set(&said))
				log_warn("more than %d upstreams have sent cookies since the start: "
					 "later ones are enforced per worker only", COOKIE_SEEN_MAX);
		}
	}
	return h->cookie;
}

/* Does upstream i send cookies, as far as any worker knows? Drops this worker's server cookie
 * when a probe found the upstream answering without. */
static int cookie_expected(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	struct cookie_seen *e = cookie_entry(u, i, 0);
	if (e && cookie_seen_gen(e) != h->cookie_gen) {
		h->cookie_gen = cookie_seen_gen(e);
		h->server_cookie_len = 0;
	}
	return h->server_cookie_len || (e && cookie_seen_is_on(e));
}

/* The upstream's cookie check (RFC 7873 5.3): a reply to a query with our client cookie that
 * carries a cookie must echo ours; its server cookie is kept for the next queries. @return 0
 * or -1 (a forgery or garbage). */
static int check_cookie(upstream_t *u, unsigned i, const uint8_t *reply, size_t len,
			int over_tcp)
{
	size_t off, olen;
	int rc = wire_find_edns_option(reply, len, WIRE_EDNS_COOKIE, &off, &olen);
	if (rc < 0)
		return -1;
	struct health *h = &u->health[i];
	/* Without a cookie: fine from an upstream that never sent one to any worker, and over TCP
	 * (which an off-path attacker cannot forge, and where some servers leave cookies out). */
	if (rc == 0)
		return !over_tcp && cookie_expected(u, i) ? -1 : 0;
	if (olen < 8 || memcmp(reply + off, h->client_cookie, 8) != 0)
		return -1;
	if (olen >= 16 && olen <= 40) {
		struct cookie_seen *e = h->server_cookie_len ? NULL : cookie_entry(u, i, 1);
		if (e) {
			h->cookie_gen = cookie_seen_gen(e);
			cookie_seen_on(e);
		}
		h->server_cookie_len = (uint8_t)(olen - 8);
		memcpy(h->server_cookie, reply + off + 8, olen - 8);
	}
	return 0;
}

/* The answer's RCODE including its extended bits from the OPT record. */
static unsigned full_rcode(const uint8_t *reply, size_t len)
{
	unsigned rcode = wire_rcode(reply);
	struct wire_rr opt;
	if (wire_find_opt(reply, len, &opt) > 0)
		rcode |= (opt.ttl >> 24) << 4;
	return rcode;
}

static void fetch_start(upstream_t *u, struct pending *p, unsigned upstream,
			const uint8_t *truncated, size_t len);

/* An attempt is over without an answer: ask the next upstream now, or give up. */
static void attempt_failed(upstream_t *u, struct pending *p)
{
	fifo_remove(u, p);
	if (p->sock)
		sock_close(p->sock);
	unsigned all = (1u << u->o->nupstream) - 1;
	if (p->attempt + 1 >= ATTEMPTS || uv_now(u->loop) >= p->expire ||
	    (p->rejected & all) == all) {
		finish(u, p, NULL, 0);
		return;
	}
	p->attempt++;
	next_attempt(u, p);
}

/* The probe's question: the root, NS, IN. */
static const uint8_t PROBE_QUESTION[] = {0, 0, 2, 0, 1};

static int check_cookie(upstream_t *u, unsigned i, const uint8_t *reply, size_t len,
			int over_tcp);

/* Upstream i answered p, which others had answered with an error RCODE: those did worse than
 * another upstream on the same question, which a client cannot make happen unless they really
 * differ, so they lose preference as for a refused connection (an upstream that refuses every
 * question does not stay the first asked). An error on a question every upstream fails moves
 * nothing. */
static void penalise_rejecters(upstream_t *u, const struct pending *p, unsigned i)
{
	for (unsigned k = 0; k < u->o->nupstream; k++)
		if (k != i && (p->rejected & (1u << k)))
			srtt_penalty(u, k);
}

/* Upstream i answered p with an error RCODE (SERVFAIL, REFUSED, FORMERR, NOTIMP...): it is not
 * asked p again; the next upstream may answer. Its RCODE and EDE are kept for the client if
 * none does. A first BADCOOKIE is asked again of the same upstream, with its new cookie. */
static void rejected(upstream_t *u, struct pending *p, unsigned i, const uint8_t *reply,
		     size_t len, unsigned rcode)
{
	u->stats.soft_failures++;
	if (rcode == WIRE_RCODE_BADCOOKIE && !p->badcookie_retried) {
		/* Its new server cookie is kept (check_cookie): the same upstream is asked once more
		 * with it (RFC 7873 5.3), a question of cookies, not of this question. */
		p->badcookie_retried = 1;
		p->force = (uint8_t)(i + 1);
		attempt_failed(u, p);
		return;
	}
	p->rejected |= (uint16_t)(1u << i);
	p->why.rejected = 1;
	p->why.rcode = (uint8_t)(rcode > 15 ? WIRE_RCODE_SERVFAIL : rcode);
	p->why.ede_code = -1;
	p->why.ede_text[0] = '\0';
	/* The EDE of a SERVFAIL is the upstream's own failure to resolve (6 DNSSEC Bogus, 9 DNSKEY
	 * Missing...), worth the client's knowing; that of a REFUSED (18 Prohibited, 20 Not
	 * Authoritative) is about embargo as the upstream's client, not about the question. */
	size_t off, olen;
	if (rcode == WIRE_RCODE_SERVFAIL &&
	    wire_find_edns_option(reply, len, WIRE_EDNS_EDE, &off, &olen) > 0 && olen >= 2) {
		p->why.ede_code = (int16_t)(wire_get16(reply + off) & 0x7FFF);
		size_t tl = olen - 2 < UPSTREAM_EDE_TEXT_MAX ? olen - 2 : UPSTREAM_EDE_TEXT_MAX;
		for (size_t k = 0; k < tl; k++) {
			uint8_t c = reply[off + 2 + k];
			p->why.ede_text[k] = c >= 0x20 && c < 0x7F ? (char)c : '?';
		}
		p->why.ede_text[tl] = '\0';
	}
	attempt_failed(u, p);
}

static void probe_reply(upstream_t *u, struct outsock *s, const uint8_t *reply, size_t len)
{
	unsigned i = s->upstream;
	struct health *h = &u->health[i];
	/* Any answer to the probe's question (any RCODE) shows the upstream is back. */
	if (len < WIRE_HEADER + sizeof(PROBE_QUESTION) || wire_get16(reply) != h->probe_txid ||
	    !(wire_get16(reply + 2) & WIRE_FLAG_QR) || wire_get16(reply + 4) != 1 ||
	    memcmp(reply + WIRE_HEADER, PROBE_QUESTION, sizeof(PROBE_QUESTION)) != 0) {
		u->stats.mismatched++;
		return;
	}
	if (u->o->cookies) {
		size_t off, olen;
		int rc = wire_find_edns_option(reply, len, WIRE_EDNS_COOKIE, &off, &olen);
		if (rc == 0 && cookie_expected(u, i)) {
			/* The probe carried our cookie and the answer none: this upstream no longer
			 * does cookies, and must not stay unusable for it, in any worker. */
			h->server_cookie_len = 0;
			struct cookie_seen *e = cookie_entry(u, i, 0);
			if (e)
				h->cookie_gen = cookie_seen_off(e);
		} else if (check_cookie(u, i, reply, len, 0) < 0) {
			u->stats.cookie_mismatched++;
			return;
		}
	}
	mark_up(u, i);
}

static void handle_reply(upstream_t *u, struct outsock *s, uint8_t *reply, size_t len)
{
	struct pending *p = s->p;
	unsigned i = s->upstream;
	enum match m = question_match(p, reply, len);
	if (m == MATCH_NONE) {
		u->stats.mismatched++;
		return;
	}
	if (m == MATCH_CASE && !p->use_0x20) {
		/* Asked in lower case without 0x20: the upstream's own case is its to choose. */
		m = MATCH_EXACT;
	}
	if (m == MATCH_CASE) {
		/* Right socket, ID and name, wrong letter case: a forgery, or an upstream that does
		 * not keep case. It is ignored, so a forgery ends nothing; if no answer in the right
		 * case comes before the attempt times out, this question (only: an attacker who
		 * floods until the real answer is dropped must not switch 0x20 off for good) is
		 * asked again without 0x20 (timer_cb). */
		u->stats.case_mismatched++;
		p->case_mismatch = 1;
		return;
	}
	if (p->cookie_sent && check_cookie(u, i, reply, len, 0) < 0) {
		u->stats.cookie_mismatched++;
		return;
	}
	unsigned rcode = full_rcode(reply, len);
	/* An error RCODE is an answer, in its real time: a client that asks questions an upstream
	 * cannot answer must not steer the choice of upstream. */
	note_rtt(u, i, uv_now(u->loop) - s->sent_at);
	if (rcode != WIRE_RCODE_NOERROR && rcode != WIRE_RCODE_NXDOMAIN) {
		rejected(u, p, i, reply, len, rcode);
		return;
	}
	if (u->latency && s->sent_ns)
		latency_observe(&u->latency[i], uv_hrtime() - s->sent_ns);
	penalise_rejecters(u, p, i);
	if (wire_get16(reply + 2) & WIRE_FLAG_TC) {
		/* Fetched whole over TCP, even for a UDP client: the cache keeps it whole. */
		fifo_remove(u, p);
		sock_close(s);
		fetch_start(u, p, i, reply, len);
		return;
	}
	finish(u, p, reply, len);
}

static void sock_readable(uv_poll_t *h, int status, int events)
{
	struct outsock *s = h->data;
	upstream_t *u = s->u;
	(void)events;
	for (unsigned k = 0; k < RECV_PER_WAKE && s->fd >= 0; k++) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(s->fd, u->recv_buf, RECV_MAX, MSG_DONTWAIT,
				     (struct sockaddr *)&from, &flen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && status == 0)
			return;
		if (n < 0) {
			/* ICMP unreachable on a connected socket: nobody listens there, or someone
			 * forged the ICMP (it needs only our port). This attempt ends and the upstream
			 * loses preference, but it is not taken for dead on one packet. */
			unsigned i = s->upstream;
			struct pending *p = s->p;
			if (s->probe) {
				struct health *hl = &u->health[i];
				sock_close(s);
				hl->probe_at = uv_now(u->loop) + hl->probe_backoff_ms;
				arm_probe_timer(u);
				return;
			}
			note_soft_failure(u, i);
			if (p)
				attempt_failed(u, p);
			else
				sock_close(s);
			return;
		}
		/* The kernel filters on the connected address already; check it all the same. */
		if (!options_same_addr(&from, &u->o->upstream[s->upstream])) {
			u->stats.mismatched++;
			continue;
		}
		if (s->probe) {
			probe_reply(u, s, u->recv_buf, (size_t)n);
			return;
		}
		if (!s->p)
			return;
		handle_reply(u, s, u->recv_buf, (size_t)n);
	}
}

/* ---- Attempts and timeouts ---------------------------------------------------------------- */

static void next_attempt(upstream_t *u, struct pending *p)
{
	unsigned i = p->force ? p->force - 1u : pick(u, p);
	p->force = 0;
	p->upstream = (uint8_t)i;
	p->tried |= (uint16_t)(1u << i);
	p->case_mismatch = 0;
	prepare_query(u, p, i);
	p->sock = sock_open(u, i, p->query, p->len);
	if (p->sock)
		p->sock->p = p;
	else
		p->why.given_up = 1; /* No socket here: if it fails, that says nothing of it. */
	p->deadline = uv_now(u->loop) + u->attempt_ms;
	fifo_append(u, p);
}

static void timer_cb(uv_timer_t *t)
{
	upstream_t *u = t->data;
	uint64_t now = uv_now(u->loop);
	while (u->head && u->head->deadline <= now) {
		struct pending *p = u->head;
		if (p->case_mismatch && p->use_0x20) {
			/* The upstream answered, in the wrong case only: the same upstream is asked
			 * once more without 0x20 (Unbound's caps fallback does likewise). */
			p->use_0x20 = 0;
			p->case_mismatch = 0;
			p->force = (uint8_t)(p->upstream + 1);
		} else if (p->sock) {
			mark_down(u, p->upstream);
		}
		attempt_failed(u, p);
	}
	arm_timer(u);
}

/* "." NS with our OPT: a question every resolver answers, if only with REFUSED. */
static void probe_send(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	uint8_t q[WIRE_HEADER + 1 + 4 + 11 + 4 + 8 + 32] = {0};
	size_t qlen = WIRE_HEADER + 1 + 4 + 11;
	h->probe_txid = random16(u);
	wire_put16(q, h->probe_txid);
	wire_put16(q + 2, WIRE_FLAG_RD);
	wire_put16(q + 4, 1);
	wire_put16(q + 10, 1);
	wire_put16(q + WIRE_HEADER + 1, 2); /* NS */
	wire_put16(q + WIRE_HEADER + 3, WIRE_CLASS_IN);
	uint8_t *opt = q + WIRE_HEADER + 5;
	wire_put16(opt + 1, WIRE_TYPE_OPT);
	wire_put16(opt + 3, EDNS_SIZE);
	if (u->o->cookies) {
		wire_put16(q + qlen, WIRE_EDNS_COOKIE);
		wire_put16(q + qlen + 2, (uint16_t)(8 + h->server_cookie_len));
		memcpy(q + qlen + 4, h->client_cookie, 8);
		memcpy(q + qlen + 12, h->server_cookie, h->server_cookie_len);
		wire_put16(opt + 9, (uint16_t)(12 + h->server_cookie_len));
		qlen += 12 + h->server_cookie_len;
	}
	struct outsock *s = sock_open(u, i, q, qlen);
	u->stats.probes++;
	if (s) {
		s->probe = 1;
		h->probe = s;
		h->probe_deadline = uv_now(u->loop) + u->attempt_ms;
	}
}

static void probe_timer_cb(uv_timer_t *t)
{
	upstream_t *u = t->data;
	uint64_t now = uv_now(u->loop);
	for (unsigned i = 0; i < u->o->nupstream; i++) {
		struct health *h = &u->health[i];
		if (!h->down)
			continue;
		if (h->probe && h->probe_deadline <= now) {
			sock_close(h->probe);
			h->probe_backoff_ms = h->probe_backoff_ms * 2 > PROBE_MAX_MS
						      ? PROBE_MAX_MS
						      : h->probe_backoff_ms * 2;
			h->probe_at = now + h->probe_backoff_ms;
		} else if (!h->probe && h->probe_at <= now) {
			probe_send(u, i);
			if (!h->probe)
				h->probe_at = now + h->probe_backoff_ms;
		}
	}
	arm_probe_timer(u);
}

/* ---- TCP fallback: shared, pipelined links ------------------------------------------------ */

/* Take p off its link. Unless its answer came (answered), its ID stays retired on the link:
 * an answer to it may still come, and must not be taken for a later question's. */
static void link_unlink(struct pending *p, int answered)
{
	struct tcp_link *l = p->link;
	if (!answered && p->link_sent)
		l->retired[l->nretired++ % 256] = wire_get16(p->query);
	if (p->link_prev)
		p->link_prev->link_next = p->link_next;
	else
		l->head = p->link_next;
	if (p->link_next)
		p->link_next->link_prev = p->link_prev;
	else
		l->tail = p->link_prev;
	p->link = NULL;
	p->link_prev = p->link_next = NULL;
	l->nout--;
	l->u->nfetches--;
	if (l->nout == 0)
		l->idle_since = uv_now(l->u->loop);
}

static void link_closed(uv_handle_t *h)
{
	struct tcp_link *l = h->data;
	if (--l->open_handles > 0)
		return;
	upstream_t *u = l->u;
	free(l->buf);
	free(l);
	unref(u);
}

static void fetch_start(upstream_t *u, struct pending *p, unsigned i, const uint8_t *truncated,
			size_t len);

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
		link_unlink(p, 0);
		/* Moved up to LINK_RETRIES times; a server that closes (or resets) after each answer
		 * still answers one question per connection. */
		if (retry && !u->closing && p->link_retried < LINK_RETRIES) {
			p->link_retried++;
			fetch_start(u, p, l->upstream, NULL, 0);
		} else {
			finish(u, p, NULL, 0);
		}
	}
}

static void link_close(struct tcp_link *l)
{
	link_close_retry(l, 0);
}

static void link_written(uv_write_t *req, int status)
{
	struct tcp_link *l = req->data;
	free(req);
	/* The upstream closed or reset the connection under our writes: as when reading. */
	if (status < 0 && status != UV_ECANCELED)
		link_close_retry(l, 1);
}

static void link_send(struct tcp_link *l, struct pending *p)
{
	/* An upstream that does not read: what waits to be written is bounded. */
	if (uv_stream_get_write_queue_size((uv_stream_t *)&l->tcp) > 64 * 1024) {
		link_close(l);
		return;
	}
	struct link_write *wr = malloc(sizeof(*wr) + 2 + p->len);
	if (!wr) {
		link_unlink(p, 0);
		p->why.given_up = 1;
		finish(l->u, p, NULL, 0);
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

static void link_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tcp_link *l = h->data;
	(void)suggested;
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
	*buf = uv_buf_init((char *)l->buf + l->len, (unsigned)(l->cap - l->len));
}

/* One whole message from the link: the answer of the question with its ID and exact question
 * (and cookie); anything else is ignored. */
static void link_message(struct tcp_link *l, const uint8_t *msg, size_t len)
{
	upstream_t *u = l->u;
	struct pending *p = l->head;
	while (p && question_match(p, msg, len) != MATCH_EXACT)
		p = p->link_next;
	if (!p || (p->cookie_sent && check_cookie(u, l->upstream, msg, len, 1) < 0)) {
		u->stats.mismatched++;
		return;
	}
	l->last_rx = uv_now(u->loop);
	link_unlink(p, 1);
	unsigned rcode = full_rcode(msg, len);
	if (rcode != WIRE_RCODE_NOERROR && rcode != WIRE_RCODE_NXDOMAIN) {
		/* As over UDP: the next upstream may answer (over UDP first, like any attempt). */
		rejected(u, p, l->upstream, msg, len, rcode);
		return;
	}
	penalise_rejecters(u, p, l->upstream);
	finish(u, p, msg, len);
}

static void link_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct tcp_link *l = st->data;
	(void)buf;
	if (nread < 0) {
		link_close_retry(l, 1);
		return;
	}
	l->len += (size_t)nread;
	size_t off = 0;
	while (!l->closing && l->len - off >= 2) {
		size_t n = wire_get16(l->buf + off);
		if (l->len - off < 2 + n)
			break;
		link_message(l, l->buf + off + 2, n);
		off += 2 + n;
	}
	if (l->closing)
		return;
	if (off > 0) {
		memmove(l->buf, l->buf + off, l->len - off);
		l->len -= off;
	}
	if (l->len == l->cap && l->cap >= 2 * 65537) /* Cannot happen with DNS messages. */
		link_close(l);
}

static void link_connected(uv_connect_t *req, int status)
{
	struct tcp_link *l = req->data;
	if (l->closing)
		return;
	if (status < 0 || uv_read_start((uv_stream_t *)&l->tcp, link_alloc, link_read) < 0) {
		link_close(l);
		return;
	}
	l->connected = 1;
	uv_tcp_nodelay(&l->tcp, 1);
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
	/* Connecting for longer than a question may wait: the upstream drops SYNs. */
	if (!l->connected && now >= l->opened + u->o->timeout_ms) {
		link_close(l);
		return;
	}
	for (struct pending *p = l->head, *next; p && !l->closing; p = next) {
		next = p->link_next;
		if (p->expire > now)
			continue;
		if (l->last_rx < p->link_sent) {
			/* Nothing at all came back since this question was written: the link is
			 * stuck (a wedged server, lost NAT state). Drop it, and what waits on it. */
			link_close(l);
			return;
		}
		link_unlink(p, 0);
		finish(u, p, NULL, 0);
	}
	if (!l->closing && l->nout == 0 && now >= l->idle_since + LINK_IDLE_MS)
		link_close(l);
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
	if (uv_tcp_connect(&l->connect, &l->tcp, (const struct sockaddr *)&u->o->upstream[i],
			   link_connected) < 0) {
		link_close(l);
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

/* Ask p's question of upstream i again over TCP, on the shared link (same case and cookie, an
 * ID no other question on the link has): its UDP answer, truncated[len] (NULL when p moves from
 * a closed link), had TC. With every link slot taken, or p's first client's network holding
 * its share of them, p's clients get the truncated answer (a UDP client retries over TCP
 * itself; the query path answers SERVFAIL to a TCP client), so one network's slow truncated
 * answers cannot turn everyone's into SERVFAIL. Other failures finish p with SERVFAIL. */
static void fetch_start(upstream_t *u, struct pending *p, unsigned i, const uint8_t *truncated,
			size_t len)
{
	int full = u->nfetches >= FETCH_MAX || (p->waiters && fetches_of(u, p) >= FETCH_PER_CLIENT);
	if (full || p->expire <= uv_now(u->loop)) {
		if (full) {
			u->stats.tcp_full++;
			p->why.given_up = 1; /* No room here: no verdict on the question. */
		}
		finish(u, p, full ? truncated : NULL, full ? len : 0);
		return;
	}
	struct tcp_link *l = link_get(u, i);
	if (!l) {
		p->why.given_up = 1;
		finish(u, p, NULL, 0);
		return;
	}
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
			wire_put16(p->query, random16(u));
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
	u->nfetches++;
	u->stats.tcp_fallbacks++;
	if (l->connected)
		link_send(l, p);
}

/* ---- Life cycle --------------------------------------------------------------------------- */

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
	u->nsocks = o->outgoing_range;
	/* A socket returns to the pool only in its close callback, on the next loop iteration:
	 * with twice as many sockets as questions, a question that replaces a finished one in the
	 * same iteration still finds a socket. */
	u->max_pending = u->nsocks / 2 < POOL_SIZE ? u->nsocks / 2 : POOL_SIZE;
	u->waiter_pool = calloc(POOL_SIZE, sizeof(*u->waiter_pool));
	u->pool = calloc(POOL_SIZE, sizeof(*u->pool));
	u->socks = calloc(u->nsocks, sizeof(*u->socks));
	u->buckets = calloc(MERGE_BUCKETS, sizeof(*u->buckets));
	u->recv_buf = malloc(RECV_MAX);
	u->deliver = malloc(RECV_MAX);
	u->out = malloc(RECV_MAX);
	u->rnd_pos = sizeof(u->rnd);
	if (!u->waiter_pool || !u->pool || !u->socks || !u->buckets || !u->recv_buf ||
	    !u->deliver || !u->out || siphash_key_random(&u->hkey) < 0) {
		u->open_handles = 1;
		unref(u);
		*err = -ENOMEM;
		return NULL;
	}
	for (int i = POOL_SIZE - 1; i >= 0; i--) {
		u->pool[i].next = u->free;
		u->free = &u->pool[i];
		u->waiter_pool[i].next = u->free_waiters;
		u->free_waiters = &u->waiter_pool[i];
	}
	for (int i = (int)u->nsocks - 1; i >= 0; i--) {
		u->socks[i].next_free = u->free_socks;
		u->socks[i].u = u;
		u->free_socks = &u->socks[i];
	}
	for (unsigned i = 0; i < o->nupstream; i++)
		random_bytes(u, u->health[i].client_cookie, 8);
	uv_timer_init(loop, &u->timer);
	uv_timer_init(loop, &u->probe_timer);
	uv_timer_init(loop, &u->due_timer);
	u->timer.data = u->probe_timer.data = u->due_timer.data = u;
	u->open_handles = 3;
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
	for (unsigned i = 0; i < OPTIONS_MAX_ADDRS; i++)
		if (u->links[i])
			link_close(u->links[i]);
	for (unsigned i = 0; i < POOL_SIZE; i++) {
		struct pending *p = &u->pool[i];
		if (p->waiters)
			finish(u, p, NULL, 0);
	}
	for (unsigned i = 0; i < u->o->nupstream; i++)
		if (u->health[i].probe)
			sock_close(u->health[i].probe);
	uv_close((uv_handle_t *)&u->timer, handle_closed);
	uv_close((uv_handle_t *)&u->probe_timer, handle_closed);
	uv_close((uv_handle_t *)&u->due_timer, handle_closed);
}

/* The merge key: the question as the cache keys it (lower-case name, type, class, EDNS, DO,
 * CD), so that one upstream answer fits every waiter. */
static size_t merge_key(uint8_t *key, const struct wire_query *q)
{
	memcpy(key, q->qname.key, q->qname.keylen);
	uint8_t *k = key + q->qname.keylen;
	wire_put16(k, q->qtype);
	wire_put16(k + 2, q->qclass);
	k[4] = (uint8_t)((q->has_edns ? 1 : 0) | (q->edns_do ? 2 : 0) |
			 ((q->flags & WIRE_FLAG_CD) ? 4 : 0));
	return q->qname.keylen + 5u;
}

/* Make room when a pool is empty: the oldest attempt, if older than the jostle timeout, is
 * given up (its clients get SERVFAIL), as Unbound's jostle-timeout does. */
static int jostle(upstream_t *u)
{
	struct pending *old = u->head;
	if (!old || uv_now(u->loop) < old->started + u->o->jostle_ms)
		return -ENOBUFS;
	u->stats.jostled++;
	old->why.given_up = 1;
	finish(u, old, NULL, 0);
	return 0;
}

int upstream_forward(upstream_t *u, const struct client *c, const uint8_t *query, size_t len,
		     const struct wire_query *q, unsigned stale_ms)
{
	if (len > QUERY_MAX || WIRE_HEADER + q->qname_len + 4u + 11 + 12 + 32 > OUT_MAX)
		return -EMSGSIZE;
	if (!u->free_waiters && jostle(u) < 0) {
		u->stats.pool_full++;
		return -ENOBUFS;
	}
	uint8_t key[sizeof(((struct pending *)0)->key)];
	size_t keylen = merge_key(key, q);
	uint64_t hash = siphash(&u->hkey, key, keylen);
	struct pending *p = u->buckets[hash & (MERGE_BUCKETS - 1)];
	while (p && !(p->hash == hash && p->keylen == keylen && memcmp(p->key, key, keylen) == 0))
		p = p->hnext;
	/* A cache refresh (no client) joins no question already asked, takes only free room (it
	 * never jostles a client's question) and at most an eighth of the questions in flight. */
	int refresh = c->ops == NULL;
	if (refresh && p)
		return -EALREADY;
	if (refresh && (!u->free || !u->free_waiters || u->npending >= u->max_pending ||
			u->nrefresh >= u->max_pending / 8)) {
		u->stats.pool_full++;
		return -ENOBUFS;
	}
	if (p) {
		u->stats.merged++;
	} else {
		if ((!u->free || u->npending >= u->max_pending) && jostle(u) < 0) {
			u->stats.pool_full++;
			return -ENOBUFS;
		}
		if (!u->free_waiters) { /* The jostled question freed no waiter of its own. */
			u->stats.pool_full++;
			return -ENOBUFS;
		}
		p = u->free;
		u->free = p->next;
		u->npending++;
		memset(p, 0, offsetof(struct pending, key));
		p->hash = hash;
		p->keylen = (uint16_t)keylen;
		memcpy(p->key, key, keylen);
		p->has_edns = q->has_edns;
		p->why.ede_code = -1;
		p->use_0x20 = (uint8_t)u->o->use_0x20;
		p->started = uv_now(u->loop);
		p->expire = p->started + u->o->timeout_ms;
		/* Header and question; prepare_query() writes ID, case and OPT per attempt. */
		uint8_t *b = p->query;
		/* AD asks for the AD bit whether or not the client set DO (RFC 6840 5.7). */
		wire_put16(b + 2, (uint16_t)(WIRE_FLAG_RD | WIRE_FLAG_AD | (q->flags & WIRE_FLAG_CD)));
		wire_put16(b + 4, 1);
		wire_put16(b + 6, 0);
		wire_put16(b + 8, 0);
		wire_put16(b + 10, 1);
		p->name_len = q->qname_len;
		memcpy(b + WIRE_HEADER, query + WIRE_HEADER, q->qname_len);
		for (unsigned k = 0; k < q->qname_len; k++)
			if (b[WIRE_HEADER + k] >= 'A' && b[WIRE_HEADER + k] <= 'Z')
				b[WIRE_HEADER + k] |= 0x20;
		uint8_t *t = b + WIRE_HEADER + q->qname_len;
		wire_put16(t, q->qtype);
		wire_put16(t + 2, q->qclass);
		uint8_t *opt = t + 4;
		opt[0] = 0;
		wire_put16(opt + 1, WIRE_TYPE_OPT);
		wire_put16(opt + 3, EDNS_SIZE);
		wire_put32(opt + 5, q->edns_do ? 0x8000u : 0);
		struct pending **bucket = &u->buckets[hash & (MERGE_BUCKETS - 1)];
		p->hnext = *bucket;
		*bucket = p;
		p->in_table = 1;
	}
	struct waiter *w = u->free_waiters;
	u->free_waiters = w->next;
	w->next = NULL;
	w->answered = 0;
	w->in_due = 0;
	w->refresh = (uint8_t)refresh;
	u->nrefresh += (unsigned)refresh;
	if (stale_ms) {
		w->due = uv_now(u->loop) + stale_ms;
		due_append(u, w);
	}
	w->client = *c;
	w->q = *q;
	w->len = (uint16_t)len;
	memcpy(w->query, query, len);
	if (p->last_waiter)
		p->last_waiter->next = w;
	else
		p->waiters = w;
	p->last_waiter = w;
	if (!p->in_fifo && !p->link)
		next_attempt(u, p);
	return 0;
}

void upstream_forget(upstream_t *u, const void *session)
{
	for (unsigned i = 0; i < POOL_SIZE; i++)
		if (u->waiter_pool[i].client.session == session)
			u->waiter_pool[i].client.session = NULL;
}

unsigned upstream_pending(const upstream_t *u)
{
	return u->npending;
}

const struct upstream_stats *upstream_stats(const upstream_t *u)
{
	return &u->stats;
}

void upstream_set_latency(upstream_t *u, struct latency_hist *per_upstream)
{
	u->latency = per_upstream;
}

/* ---- The loop check at start-up ----------------------------------------------------------- */

/* Is ss (its address only) loopback or an address of one of this host's interfaces? */
static int is_local(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET &&
	    (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127)
		return 1;
	if (ss->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr))
		return 1;
	struct options_cidr host[64];
	unsigned n = options_host_addrs(host, 64);
	return options_cidr_match(host, n, ss);
}

int upstream_check_loop(const struct options *o, char *err, size_t errlen)
{
	for (unsigned i = 0; i < o->nupstream; i++) {
		const struct sockaddr_storage *up = &o->upstream[i];
		for (unsigned j = 0; j < o->nlisten; j++) {
			const struct sockaddr_storage *l = &o->listen[j];
			if (l->ss_family != up->ss_family || options_port(l) != options_port(up))
				continue;
			if (options_same_addr(l, up) || (options_is_wildcard(l) && is_local(up))) {
				char a[80], b[80];
				options_format_addr(up, a, sizeof(a));
				options_format_addr(l, b, sizeof(b));
				snprintf(err, errlen,
					 "upstream %s is embargo's own listen address %s: it would "
					 "forward queries to itself (set --upstream, or --resolv-conf "
					 "to a file naming the real resolvers)",
					 a, b);
				return -ELOOP;
			}
		}
	}
	return 0;
}
