/* Sharded packet cache. Each shard is a chained hash table plus an intrusive LRU list under
 * one mutex; entries are single allocations holding key and answer. Expired entries stay for
 * the stale window (serve-stale), are dropped when met after it, and by LRU eviction. It never
 * looks at the policy: resolver/query/query.c asks the policy before the cache. */
#include "config.h"

#include "resolver/query/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/base/siphash.h"

struct entry {
	struct entry *hnext;
	struct entry *prev, *next; /* LRU: head is most recent. */
	uint64_t hash;
	uint64_t stored_ms, expire_ms;
	uint16_t keylen;
	uint16_t len;
	bool has_chain;
	uint64_t refresh_until_ms; /* A refresh was handed out; its answer may replace this entry
				      until then (one refresh at a time). */
	uint8_t bytes[]; /* Key, then answer. */
};

struct shard {
	pthread_mutex_t lock;
	struct entry **buckets;
	size_t nbuckets; /* Power of two. */
	size_t count, bytes, max_bytes;
	uint64_t evictions;
	struct entry *head, *tail;
	char pad[64];
};

struct cache {
	struct siphash_key hkey;
	unsigned nshards; /* Power of two. */
	uint64_t stale_ms; /* How long an expired entry may still be served. */
	bool prefetch;
	uint64_t refresh_ms; /* How long a handed-out refresh may take. */
	struct shard *shards;
};

static size_t entry_size(const struct entry *e)
{
	return sizeof(*e) + e->keylen + e->len;
}

cache_t *cache_new(size_t max_bytes, unsigned nshards)
{
	unsigned n = 1;
	while (n < nshards)
		n <<= 1;
	cache_t *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->shards = calloc(n, sizeof(*c->shards));
	if (!c->shards) {
		free(c);
		return NULL;
	}
	c->nshards = n;
	if (siphash_key_random(&c->hkey) < 0) {
		free(c->shards);
		free(c);
		return NULL;
	}
	for (unsigned i = 0; i < n; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_init(&s->lock, NULL);
		s->nbuckets = 1024;
		s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
		s->max_bytes = max_bytes / n;
		if (!s->buckets) {
			c->nshards = i + 1;
			cache_free(c);
			return NULL;
		}
	}
	return c;
}

void cache_configure(cache_t *c, uint32_t stale_max, bool prefetch, unsigned refresh_ms)
{
	c->stale_ms = (uint64_t)stale_max * 1000;
	c->prefetch = prefetch;
	c->refresh_ms = refresh_ms;
}

void cache_free(cache_t *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		for (struct entry *e = s->head, *next; e; e = next) {
			next = e->next;
			free(e);
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(c->shards);
	free(c);
}

void cache_key_make(const cache_t *c, struct cache_key *k, const struct wire_query *q)
{
	memcpy(k->bytes, q->qname.key, q->qname.keylen);
	uint8_t *p = k->bytes + q->qname.keylen;
	wire_put16(p, q->qtype);
	wire_put16(p + 2, q->qclass);
	p[4] = (uint8_t)((q->has_edns ? 1 : 0) | (q->edns_do ? 2 : 0) |
			 ((q->flags & WIRE_FLAG_CD) ? 4 : 0));
	k->len = (uint16_t)(q->qname.keylen + 5);
	k->hash = siphash(&c->hkey, k->bytes, k->len);
}

uint32_t cache_ttl(const uint8_t *reply, size_t len)
{
	struct wire_rr_iter it;
	struct wire_rr rr;
	if (wire_rr_begin(&it, reply, len) < 0)
		return 0;
	uint16_t flags = wire_get16(reply + 2);
	unsigned rcode = flags & 0xF;
	unsigned ancount = wire_get16(reply + 6);
	if (flags & WIRE_FLAG_TC)
		return 0;
	int negative = rcode == WIRE_RCODE_NXDOMAIN || (rcode == WIRE_RCODE_NOERROR && ancount == 0);
	if (!negative && rcode != WIRE_RCODE_NOERROR)
		return 0;
	uint32_t ttl = CACHE_MAX_TTL;
	int soa = 0, rc;
	while ((rc = wire_rr_next(&it, &rr)) > 0) {
		/* Every TTL served counts (dnsdist does the same), so none ages past zero. */
		if (rr.type == WIRE_TYPE_OPT)
			continue;
		if (rr.ttl < ttl)
			ttl = rr.ttl;
		if (rr.section == 2 && negative && rr.type == WIRE_TYPE_SOA && rr.rdlen >= 22) {
			/* RFC 2308 5: the lesser of the SOA's TTL and its MINIMUM field. */
			uint32_t minimum = wire_get32(reply + rr.rdata + rr.rdlen - 4);
			uint32_t neg = rr.ttl < minimum ? rr.ttl : minimum;
			if (neg < ttl)
				ttl = neg;
			soa = 1;
		}
	}
	if (rc < 0 || (negative && !soa))
		return 0; /* Without an SOA a negative answer must not be cached (RFC 2308 5). */
	return ttl > 0x7FFFFFFF ? 0 : ttl;
}

bool cache_has_chain(const uint8_t *reply, size_t len)
{
	struct wire_rr_iter it;
	struct wire_rr rr;
	if (wire_rr_begin(&it, reply, len) < 0)
		return false;
	while (wire_rr_next(&it, &rr) > 0 && rr.section == 1)
		if (rr.type == WIRE_TYPE_CNAME || rr.type == WIRE_TYPE_DNAME)
			return true;
	return false;
}

static void lru_unlink(struct shard *s, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		s->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct shard *s, struct entry *e)
{
	e->prev = NULL;
	e->next = s->head;
	if (s->head)
		s->head->prev = e;
	s->head = e;
	if (!s->tail)
		s->tail = e;
}

static void entry_remove(struct shard *s, struct entry *e)
{
	struct entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(s, e);
	s->count--;
	s->bytes -= entry_size(e);
	free(e);
}

static struct entry *find(struct shard *s, const struct cache_key *k)
{
	for (struct entry *e = s->buckets[k->hash & (s->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == k->hash && e->keylen == k->len && memcmp(e->bytes, k->bytes, k->len) == 0)
			return e;
	return NULL;
}

static void grow(struct shard *s)
{
	size_t n = s->nbuckets * 2;
	struct entry **b = calloc(n, sizeof(*b));
	if (!b)
		return; /* Longer chains, still correct. */
	for (size_t i = 0; i < s->nbuckets; i++) {
		for (struct entry *e = s->buckets[i], *next; e; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

static struct shard *shard_of(cache_t *c, uint64_t hash)
{
	return &c->shards[(hash >> 48) & (c->nshards - 1)];
}

int cache_put(cache_t *c, const struct cache_key *k, const uint8_t *reply, size_t len,
	      uint32_t ttl, uint64_t now_ms)
{
	if (ttl == 0 || len > UINT16_MAX)
		return -EINVAL;
	struct shard *s = shard_of(c, k->hash);
	struct entry *e = malloc(sizeof(*e) + k->len + len);
	if (!e)
		return -ENOMEM;
	*e = (struct entry){.hash = k->hash, .stored_ms = now_ms,
			    .expire_ms = now_ms + (uint64_t)ttl * 1000, .keylen = k->len,
			    .len = (uint16_t)len, .has_chain = cache_has_chain(reply, len)};
	memcpy(e->bytes, k->bytes, k->len);
	memcpy(e->bytes + k->len, reply, len);
	size_t size = entry_size(e);
	if (size > s->max_bytes) {
		free(e);
		return -ENOSPC;
	}

	pthread_mutex_lock(&s->lock);
	struct entry *old = find(s, k);
	if (old && old->expire_ms > now_ms && now_ms >= old->refresh_until_ms) {
		/* Only an expired entry, or one whose refresh was asked for, is replaced: an answer
		 * accepted while a good one is live (a spoof that won a race, say) must not
		 * overwrite it for up to a day. */
		pthread_mutex_unlock(&s->lock);
		free(e);
		return -EEXIST;
	}
	if (old)
		entry_remove(s, old);
	while (s->bytes + size > s->max_bytes && s->tail) {
		entry_remove(s, s->tail);
		s->evictions++;
	}
	if (s->count >= s->nbuckets)
		grow(s);
	struct entry **bucket = &s->buckets[k->hash & (s->nbuckets - 1)];
	e->hnext = *bucket;
	*bucket = e;
	lru_push(s, e);
	s->count++;
	s->bytes += size;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int cache_get(cache_t *c, const struct cache_key *k, uint64_t now_ms, const uint8_t *query,
	      const struct wire_query *q, uint8_t *out, size_t cap, struct cache_hit *hit,
	      uint32_t max_ttl, bool stale_ok)
{
	struct shard *s = shard_of(c, k->hash);
	pthread_mutex_lock(&s->lock);
	struct entry *e = find(s, k);
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	hit->stale = e->expire_ms <= now_ms;
	hit->prefetch = false;
	if (hit->stale) {
		if (now_ms - e->expire_ms >= c->stale_ms) {
			entry_remove(s, e);
			pthread_mutex_unlock(&s->lock);
			return -ENOENT;
		}
		if (!stale_ok) {
			pthread_mutex_unlock(&s->lock);
			return -ESTALE;
		}
	}
	if (e->len > cap) {
		pthread_mutex_unlock(&s->lock);
		return -ENOSPC;
	}
	if (!hit->stale && c->prefetch && now_ms >= e->refresh_until_ms &&
	    (e->expire_ms - now_ms) * 10 <= e->expire_ms - e->stored_ms) {
		/* In the last tenth of its TTL: this caller refreshes it, and nobody else while the
		 * refresh may be under way. */
		e->refresh_until_ms = now_ms + c->refresh_ms;
		hit->prefetch = true;
	}
	size_t len = e->len;
	uint64_t stored = e->stored_ms;
	hit->has_chain = e->has_chain;
	memcpy(out, e->bytes + e->keylen, len);
	if (s->head != e) {
		lru_unlink(s, e);
		lru_push(s, e);
	}
	pthread_mutex_unlock(&s->lock);

	/* Same key means same name length, so the client's question fits exactly. */
	wire_answer_patch(out, query, q);
	if (hit->stale) {
		uint32_t ttl = max_ttl < CACHE_STALE_TTL ? max_ttl : CACHE_STALE_TTL;
		wire_clamp_ttls(out, len, ttl, ttl);
	}
	else
		/* Workers share the cache but each stamps with its own loop clock: an entry stored
		 * by a worker whose clock runs ahead is younger than zero here, and is served as new,
		 * never with an age that wrapped (every TTL 0). */
		wire_age_ttls(out, len, now_ms > stored ? (uint32_t)((now_ms - stored) / 1000) : 0,
			      max_ttl);
	return (int)len;
}

void cache_usage(cache_t *c, struct cache_usage *u)
{
	*u = (struct cache_usage){0};
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		u->entries += s->count;
		u->bytes += s->bytes;
		u->evictions += s->evictions;
		pthread_mutex_unlock(&s->lock);
	}
}
