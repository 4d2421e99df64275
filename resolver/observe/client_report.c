/* Two tables per worker: the worker counts into `live`; client_report_publish swaps it with
 * `handed` once the reader has emptied that one. The tables are open-addressing, keyed by a
 * SipHash of (family, address, rule key) under a per-process random key (one for all workers,
 * so the main loop's batch merges their entries by tag), since the addresses are the clients'
 * to choose; a short probe bounds each insertion. The worker's side never blocks or allocates
 * (the hand-off is a try-lock), and nothing here talks to Redis. */
#include "config.h"

#include "resolver/observe/client_report.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/base/siphash.h"

#define PROBES 16

struct table {
	unsigned n;
	uint16_t used[CLIENT_REPORT_SLOTS]; /* Slots in use, to visit and clear only those. */
	struct client_denial slot[CLIENT_REPORT_SLOTS]; /* tag 0: free. */
};

static struct siphash_key key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_failed;

static void make_key(void)
{
	key_failed = siphash_key_random(&key) < 0;
}

struct client_report {
	struct table *live, *handed; /* handed: the reader's while handed->n > 0. */
	pthread_mutex_t lock;        /* Guards handed and the swap. */
	atomic_ullong dropped;
};

client_report_t *client_report_new(void)
{
	client_report_t *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->live = calloc(1, sizeof(struct table));
	r->handed = calloc(1, sizeof(struct table));
	pthread_once(&key_once, make_key);
	if (!r->live || !r->handed || key_failed || pthread_mutex_init(&r->lock, NULL) != 0) {
		free(r->live);
		free(r->handed);
		free(r);
		return NULL;
	}
	return r;
}

void client_report_free(client_report_t *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->live);
	free(r->handed);
	free(r);
}

void client_report_add(client_report_t *r, const struct sockaddr_storage *addr, int stream,
		       const struct name *name, unsigned depth, int64_t now)
{
	/* The key: family, 16 address octets, then the rule's lookup key (its first depth labels,
	 * root first). */
	uint8_t k[1 + 16 + NAME_MAXWIRE + 1];
	memset(k, 0, 17);
	if (addr->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			k[0] = AF_INET;
			memcpy(k + 1, a->s6_addr + 12, 4);
		} else {
			k[0] = AF_INET6;
			memcpy(k + 1, a->s6_addr, 16);
		}
	} else if (addr->ss_family == AF_INET) {
		k[0] = AF_INET;
		memcpy(k + 1, &((const struct sockaddr_in *)addr)->sin_addr, 4);
	} else {
		return;
	}
	size_t len = 0;
	for (unsigned i = 0; i < depth && len < name->keylen && name->key[len]; i++)
		len += 1u + name->key[len];
	memcpy(k + 17, name->key, len);
	uint64_t tag = siphash(&key, k, 17 + len) | 1u;
	struct table *t = r->live;
	for (unsigned probe = 0; probe < PROBES; probe++) {
		unsigned i = (unsigned)(tag + probe) & (CLIENT_REPORT_SLOTS - 1);
		struct client_denial *d = &t->slot[i];
		if (d->tag == tag) {
			d->count++;
			d->tcp += stream != 0;
			d->last = now;
			return;
		}
		if (d->tag == 0) {
			if (name_suffix_to_text(name, depth, d->rule, sizeof(d->rule)) < 0)
				break;
			d->tag = tag;
			d->count = 1;
			d->tcp = stream != 0;
			d->first = d->last = now;
			d->family = k[0];
			memcpy(d->addr, k + 1, 16);
			t->used[t->n++] = (uint16_t)i;
			return;
		}
	}
	atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
}

void client_report_publish(client_report_t *r)
{
	if (r->live->n == 0 || pthread_mutex_trylock(&r->lock) != 0)
		return;
	if (r->handed->n == 0) {
		struct table *t = r->handed;
		r->handed = r->live;
		r->live = t;
	}
	pthread_mutex_unlock(&r->lock);
}

size_t client_report_take(client_report_t *r,
			  void (*fn)(void *ctx, const struct client_denial *d), void *ctx)
{
	pthread_mutex_lock(&r->lock);
	struct table *t = r->handed;
	size_t n = t->n;
	for (unsigned k = 0; k < t->n; k++) {
		struct client_denial *d = &t->slot[t->used[k]];
		fn(ctx, d);
		d->tag = 0;
	}
	t->n = 0;
	pthread_mutex_unlock(&r->lock);
	return n;
}

uint64_t client_report_dropped(const client_report_t *r)
{
	return atomic_load_explicit(&r->dropped, memory_order_relaxed);
}

void client_report_addr_text(const struct client_denial *d, char *buf, size_t cap)
{
	if (!inet_ntop(d->family, d->addr, buf, (socklen_t)cap) && cap)
		buf[0] = '\0';
}

int client_report_batch_init(struct client_report_batch *b, size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->icap = 2;
	while (b->icap < cap * 2)
		b->icap *= 2;
	b->e = calloc(cap, sizeof(*b->e));
	b->index = calloc(b->icap, sizeof(*b->index));
	if (!b->e || !b->index) {
		client_report_batch_free(b);
		return -ENOMEM;
	}
	b->cap = cap;
	return 0;
}

void client_report_batch_free(struct client_report_batch *b)
{
	free(b->e);
	free(b->index);
	memset(b, 0, sizeof(*b));
}

void client_report_batch_add(struct client_report_batch *b, const struct client_denial *d)
{
	/* At most half full: a free slot is always found. */
	size_t i = (size_t)d->tag & (b->icap - 1);
	for (; b->index[i]; i = (i + 1) & (b->icap - 1)) {
		struct client_denial *e = &b->e[b->index[i] - 1];
		if (e->tag == d->tag && e->family == d->family && memcmp(e->addr, d->addr, 16) == 0 &&
		    strcmp(e->rule, d->rule) == 0) {
			e->count += d->count;
			e->tcp += d->tcp;
			if (d->first < e->first)
				e->first = d->first;
			if (d->last > e->last)
				e->last = d->last;
			return;
		}
	}
	if (b->n == b->cap) {
		b->dropped += d->count;
		return;
	}
	b->e[b->n] = *d;
	b->index[i] = (uint32_t)++b->n;
}

void client_report_batch_clear(struct client_report_batch *b)
{
	memset(b->index, 0, b->icap * sizeof(*b->index));
	b->n = 0;
}
