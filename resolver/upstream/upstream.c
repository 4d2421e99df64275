/* Upstream forwarding for one worker loop: its life cycle, and a client's query joining or
 * opening a question. Three fixed pools per worker: waiters (a client's query, copied), pending
 * questions (each with its waiters, merged by a keyed hash of the normalised question) and
 * sockets (one per attempt; freed to the pool in their close callback). The rest of a question's
 * life is the job of the upstream_*.c modules below; this file must not read a socket or match a
 * reply. Also the start-up check against forwarding to ourselves. */
#include "config.h"

#include "resolver/upstream/upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/base/siphash.h"
#include "resolver/upstream/upstream_due.h"
#include "resolver/upstream/upstream_question.h"
#include "resolver/upstream/upstream_reply.h"
#include "resolver/upstream/upstream_sock.h"
#include "resolver/upstream/upstream_state.h"
#include "resolver/upstream/upstream_tcp.h"

#define POOL_SIZE 4096        /* Waiters, and pending questions. */

/* ---- Addresses -------------------------------------------------------------------------- */

bool upstream_is_own_port(int family, uint16_t port)
{
	return upstream_sock_is_own_port(family, port);
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
	u->readable = upstream_reply_readable;
	u->tls_send = upstream_tcp_tls_send;
	u->tls_probe = upstream_tcp_tls_probe;
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
		upstream_state_unref(u);
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
		upstream_state_random_bytes(u, u->health[i].client_cookie, 8);
	char why[256];
	int rc = o->nupstream > 0 && o->upstream_tls[0]
			 ? tls_client_creds_new(&u->tls, o->upstream_ca, why, sizeof(why))
			 : 0;
	if (rc < 0) { /* upstream_check_tls() said why before any worker began. */
		u->open_handles = 1;
		upstream_state_unref(u);
		*err = rc;
		return NULL;
	}
	uv_timer_init(loop, &u->timer);
	uv_timer_init(loop, &u->probe_timer);
	uv_timer_init(loop, &u->due_timer);
	u->timer.data = u->probe_timer.data = u->due_timer.data = u;
	u->open_handles = 3;
	return u;
}

static void handle_closed(uv_handle_t *h)
{
	upstream_state_unref(h->data);
}

void upstream_close(upstream_t *u)
{
	if (!u)
		return;
	u->closing = 1;
	/* Queries in flight are dropped: the server is going away. */
	for (unsigned i = 0; i < OPTIONS_MAX_ADDRS; i++)
		if (u->links[i])
			upstream_tcp_link_close(u->links[i]);
	for (unsigned i = 0; i < POOL_SIZE; i++) {
		struct pending *p = &u->pool[i];
		if (p->waiters)
			upstream_question_finish(u, p, NULL, 0);
	}
	for (unsigned i = 0; i < u->o->nupstream; i++)
		if (u->health[i].probe)
			upstream_sock_close(u->health[i].probe);
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
	upstream_question_finish(u, old, NULL, 0);
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
		/* Header and question; upstream_question writes ID, case and OPT per attempt. */
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
		upstream_due_append(u, w);
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
		upstream_question_next_attempt(u, p);
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
		/* A tls:// upstream loops back through a DoT listener, a plain one through UDP/TCP. */
		const struct sockaddr_storage *ls = o->upstream_tls[i] ? o->listen_tls : o->listen;
		unsigned nls = o->upstream_tls[i] ? o->nlisten_tls : o->nlisten;
		for (unsigned j = 0; j < nls; j++) {
			const struct sockaddr_storage *l = &ls[j];
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

int upstream_check_tls(const struct options *o, char *err, size_t errlen)
{
	if (o->nupstream == 0 || !o->upstream_tls[0])
		return 0;
	tls_creds_t *c = NULL;
	int rc = tls_client_creds_new(&c, o->upstream_ca, err, errlen);
	tls_creds_unref(c);
	return rc;
}
