/* Admission. The access list is sorted once, longest prefix first, and each worker memoises the
 * action of recent addresses in a small direct-mapped table. The rate limiter and the pending
 * share are hash tables under a random SipHash key, so a peer cannot aim its addresses at
 * another client's slot: the rate table is direct-mapped (a collision only forgets a count, which
 * never limits an innocent client), the share table is exact (open addressing, bounded by the
 * pool it guards). The per-query checks never allocate or lock: the tables are made at start and
 * on a reload. */
#include "config.h"

#include "resolver/query/admit.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/base/siphash.h"

#define MEMO_SLOTS 256
#define RATE_SLOTS 16384
#define HANDSHAKE_SLOTS 4096
/* Twice the most clients that can hold pending queries at once (the upstream pool: 4096). */
#define SHARE_SLOTS 8192

/* An address reduced to a key: family and 16 octets (IPv4 in the first 4). */
struct addr_key {
	uint8_t family;
	uint8_t bytes[16];
};

struct memo {
	struct addr_key key;
	uint8_t valid;
	uint8_t action;
};

struct rate_slot {
	struct addr_key key;
	uint32_t second; /* The window counted, +1 so that 0 means unused. */
	uint32_t count;
	uint32_t limited;
};

struct share_slot {
	struct addr_key key;
	uint32_t held; /* 0: the slot is free. */
};

struct admit {
	const struct options *o;
	struct options_acl_rule *rules; /* The operator's and the defaults, longest prefix first. */
	unsigned nrules;
	struct siphash_key hkey;
	struct memo memo[MEMO_SLOTS];
	struct rate_slot *rate;
	struct rate_slot *handshake; /* New TLS handshakes per prefix and second. */
	struct share_slot *share;
	size_t share_slots; /* Power of two. */
	struct admit_stats stats;
};

/* Answered by default (Unbound answers only localhost; a network's own DNS server answers its
 * private ranges): loopback, RFC 1918, RFC 6598 shared space, link-local, ULA. Everything else
 * is refused. */
static const struct {
	const char *cidr;
	enum options_acl action;
} DEFAULT_ACL[] = {
	{"127.0.0.0/8", OPTIONS_ACL_ALLOW},	  {"::1/128", OPTIONS_ACL_ALLOW},
	{"10.0.0.0/8", OPTIONS_ACL_ALLOW},	  {"172.16.0.0/12", OPTIONS_ACL_ALLOW},
	{"192.168.0.0/16", OPTIONS_ACL_ALLOW},	  {"100.64.0.0/10", OPTIONS_ACL_ALLOW},
	{"169.254.0.0/16", OPTIONS_ACL_ALLOW},	  {"fe80::/10", OPTIONS_ACL_ALLOW},
	{"fc00::/7", OPTIONS_ACL_ALLOW},	  {"0.0.0.0/0", OPTIONS_ACL_REFUSE},
	{"::/0", OPTIONS_ACL_REFUSE},
};
#define NDEFAULT (sizeof(DEFAULT_ACL) / sizeof(DEFAULT_ACL[0]))

static void key_of(struct addr_key *k, const struct sockaddr_storage *ss, unsigned bits)
{
	memset(k, 0, sizeof(*k));
	k->family = (uint8_t)ss->ss_family;
	const uint8_t *a;
	unsigned len;
	if (ss->ss_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
		len = 16;
	} else {
		a = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
		len = 4;
	}
	if (bits > len * 8)
		bits = len * 8;
	memcpy(k->bytes, a, bits / 8);
	if (bits % 8)
		k->bytes[bits / 8] = a[bits / 8] & (uint8_t)(0xFF00 >> (bits % 8));
}

static bool rule_matches(const struct options_cidr *c, const struct addr_key *k)
{
	if (c->family != k->family)
		return false;
	unsigned full = c->prefix / 8, rest = c->prefix % 8;
	if (memcmp(k->bytes, c->addr, full) != 0)
		return false;
	return !rest || !((k->bytes[full] ^ c->addr[full]) & (0xFF00 >> rest) & 0xFF);
}

static int by_prefix_desc(const void *a, const void *b)
{
	const struct options_acl_rule *x = a, *y = b;
	/* Longest first; qsort is not stable, so ties keep the order they were given. */
	if (x->net.prefix != y->net.prefix)
		return x->net.prefix < y->net.prefix ? 1 : -1;
	return x < y ? -1 : x > y;
}

bool admit_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return false;
}

/* The access list of o: the operator's entries first, so that at equal length they win over
 * the defaults; longest prefix first. @return it (owned), or NULL. */
static struct options_acl_rule *make_rules(const struct options *o, unsigned *n)
{
	struct options_acl_rule *rules = calloc(o->nacl + NDEFAULT, sizeof(*rules));
	if (!rules)
		return NULL;
	memcpy(rules, o->acl, o->nacl * sizeof(*rules));
	*n = o->nacl;
	for (size_t i = 0; i < NDEFAULT; i++) {
		struct options_acl_rule *r = &rules[(*n)++];
		options_parse_cidr(DEFAULT_ACL[i].cidr, &r->net);
		r->action = DEFAULT_ACL[i].action;
	}
	qsort(rules, *n, sizeof(*rules), by_prefix_desc);
	return rules;
}

admit_t *admit_new(const struct options *o)
{
	admit_t *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->o = o;
	a->rules = make_rules(o, &a->nrules);
	a->rate = calloc(RATE_SLOTS, sizeof(*a->rate));
	a->handshake = calloc(HANDSHAKE_SLOTS, sizeof(*a->handshake));
	a->share_slots = SHARE_SLOTS;
	a->share = calloc(SHARE_SLOTS, sizeof(*a->share));
	if (!a->rules || !a->rate || !a->handshake || !a->share || siphash_key_random(&a->hkey) < 0) {
		admit_free(a);
		return NULL;
	}
	return a;
}

int admit_reconfigure(admit_t *a, const struct options *o)
{
	unsigned n;
	a->o = o; /* Even when the list cannot change: the old options may be freed. */
	struct options_acl_rule *rules = make_rules(o, &n);
	if (!rules)
		return -ENOMEM;
	free(a->rules);
	a->rules = rules;
	a->nrules = n;
	memset(a->memo, 0, sizeof(a->memo)); /* Answers of the old list. */
	return 0;
}

void admit_free(admit_t *a)
{
	if (!a)
		return;
	free(a->rules);
	free(a->rate);
	free(a->handshake);
	free(a->share);
	free(a);
}

enum options_acl admit_access(admit_t *a, const struct sockaddr_storage *client)
{
	struct addr_key k;
	key_of(&k, client, 128);
	/* The memo only saves time, so a cheap hash does: a peer that makes its addresses collide
	 * only sends itself down the list. */
	uint64_t w0, w1;
	memcpy(&w0, k.bytes, 8);
	memcpy(&w1, k.bytes + 8, 8);
	uint64_t mix = (w0 ^ (w1 * 0x9E3779B97F4A7C15ULL) ^ k.family) * 0xFF51AFD7ED558CCDULL;
	struct memo *m = &a->memo[(mix >> 56) & (MEMO_SLOTS - 1)];
	if (m->valid && memcmp(&m->key, &k, sizeof(k)) == 0)
		return (enum options_acl)m->action;
	enum options_acl action = OPTIONS_ACL_REFUSE; /* Another family: nobody listed it. */
	for (unsigned i = 0; i < a->nrules; i++)
		if (rule_matches(&a->rules[i].net, &k)) {
			action = a->rules[i].action;
			break;
		}
	m->key = k;
	m->valid = 1;
	m->action = (uint8_t)action;
	return action;
}

enum admit_rate admit_rate(admit_t *a, const struct sockaddr_storage *client, uint64_t now_ms)
{
	const struct options *o = a->o;
	if (o->ratelimit == 0 || admit_is_loopback(client))
		return ADMIT_RATE_OK;
	struct addr_key k;
	key_of(&k, client,
	       client->ss_family == AF_INET6 ? o->ratelimit_v6_prefix : o->ratelimit_v4_prefix);
	struct rate_slot *s = &a->rate[siphash(&a->hkey, &k, sizeof(k)) & (RATE_SLOTS - 1)];
	uint32_t second = (uint32_t)(now_ms / 1000) + 1;
	if (s->second != second || memcmp(&s->key, &k, sizeof(k)) != 0) {
		/* A new window, or another prefix in this slot: either starts counting afresh (and
		 * a prefix that stays over its limit keeps its slip rhythm within the window). */
		if (memcmp(&s->key, &k, sizeof(k)) != 0)
			s->limited = 0;
		s->key = k;
		s->second = second;
		s->count = 0;
	}
	if (++s->count <= o->ratelimit)
		return ADMIT_RATE_OK;
	s->limited++;
	if (o->ratelimit_slip && s->limited % o->ratelimit_slip == 0) {
		a->stats.rate_slipped++;
		return ADMIT_RATE_SLIP;
	}
	a->stats.rate_dropped++;
	return ADMIT_RATE_DROP;
}

int admit_handshake(admit_t *a, const struct sockaddr_storage *client, uint64_t now_ms)
{
	const struct options *o = a->o;
	if (o->tls_handshake_rate == 0 || admit_is_loopback(client))
		return 0;
	struct addr_key k;
	key_of(&k, client,
	       client->ss_family == AF_INET6 ? o->ratelimit_v6_prefix : o->ratelimit_v4_prefix);
	/* Direct-mapped under the secret key, as the answer rate: a collision only restarts a
	 * count, which never turns away an innocent network. */
	struct rate_slot *s =
		&a->handshake[siphash(&a->hkey, &k, sizeof(k)) & (HANDSHAKE_SLOTS - 1)];
	uint32_t second = (uint32_t)(now_ms / 1000) + 1;
	if (s->second != second || memcmp(&s->key, &k, sizeof(k)) != 0) {
		s->key = k;
		s->second = second;
		s->count = 0;
	}
	if (++s->count <= o->tls_handshake_rate)
		return 0;
	a->stats.handshakes_refused++;
	return -EBUSY;
}

/* The share belongs to an address; an IPv6 host owns its whole /64. */
static struct share_slot *share_find(admit_t *a, const struct sockaddr_storage *client,
				     struct addr_key *k)
{
	key_of(k, client, client->ss_family == AF_INET6 ? 64 : 32);
	size_t mask = a->share_slots - 1;
	size_t i = siphash(&a->hkey, k, sizeof(*k)) & mask;
	for (size_t probes = 0; probes < a->share_slots; probes++, i = (i + 1) & mask) {
		struct share_slot *s = &a->share[i];
		if (s->held == 0 || memcmp(&s->key, k, sizeof(*k)) == 0)
			return s;
	}
	return NULL; /* Cannot happen: the table has more slots than the pool has queries. */
}

int admit_pending_take(admit_t *a, const struct sockaddr_storage *client)
{
	struct addr_key k;
	struct share_slot *s = share_find(a, client, &k);
	if (!s || s->held >= a->o->client_pending) {
		a->stats.pending_refused++;
		return -EDQUOT;
	}
	s->key = k;
	s->held++;
	return 0;
}

unsigned admit_pending_held(admit_t *a, const struct sockaddr_storage *client)
{
	struct addr_key k;
	struct share_slot *s = share_find(a, client, &k);
	return s && s->held ? s->held : 0;
}

void admit_pending_give(admit_t *a, const struct sockaddr_storage *client)
{
	struct addr_key k;
	struct share_slot *s = share_find(a, client, &k);
	if (!s || s->held == 0)
		return;
	if (--s->held > 0)
		return;
	/* Backward-shift deletion keeps every probe sequence unbroken without tombstones. */
	size_t mask = a->share_slots - 1;
	size_t hole = (size_t)(s - a->share);
	for (size_t j = (hole + 1) & mask; a->share[j].held; j = (j + 1) & mask) {
		size_t home = siphash(&a->hkey, &a->share[j].key, sizeof(k)) & mask;
		/* Move j into the hole unless its home lies cyclically in (hole, j]. */
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			a->share[hole] = a->share[j];
			a->share[j].held = 0;
			hole = j;
		}
	}
}

struct admit_stats *admit_stats(admit_t *a)
{
	return &a->stats;
}
