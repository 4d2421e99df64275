/* Policy builder and snapshot. The builder deduplicates names in an open-addressing map over
 * lookup-format keys so that deny, allow and reason entries for one name merge into one rule;
 * policy_build() hands the rules to a trie and keeps the strings in one pool. */
#include "config.h"

#include "policy/policy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/trie.h"

#define NONE UINT32_MAX
#define ACT_DENY 1u
#define ACT_ALLOW 2u

struct rule {
	uint32_t key;    /* Lookup-format key in the pool; the name's text is made at build. */
	uint32_t reason; /* NUL-terminated reason in the pool, or NONE. */
	uint16_t keylen;
	uint16_t actions;
};

struct pool {
	char *bytes;
	size_t len, cap;
};

struct policy_builder {
	struct pool pool;
	struct rule *rules;
	size_t count, cap;
	uint32_t *map; /* Rule index + 1, 0 = empty; size is a power of two. */
	size_t map_size;
	size_t invalid;
};

/* A built policy keeps its rules in one array of 4-octet words, a record per name in the order
 * the builder saw them (reason-only names included): a word with the reason's offset in the pool
 * (or NONE), then the octets [actions][keylen][lookup-format key], padded to a word. The trie's
 * values are record offsets, so the record a lookup lands on holds the key that checks the match
 * and the actions and reason that decide it: one cache line after the trie's slot. */
struct policy {
	trie_t *trie;
	uint32_t *recs;
	size_t recs_words;
	size_t count; /* Records. */
	struct pool pool; /* Reasons. */
	struct policy_stats stats;
};

static inline const uint8_t *rec_bytes(const policy_t *p, size_t w)
{
	return (const uint8_t *)(p->recs + w + 1);
}

/* Words a record with a key of keylen octets takes. */
static inline size_t rec_words(size_t keylen)
{
	return 1 + (2 + keylen + 3) / 4;
}

static const uint8_t *rec_key(const void *ctx, uint32_t w, size_t *len)
{
	const uint8_t *b = rec_bytes(ctx, w);
	*len = b[1];
	return b + 2;
}

static int pool_put(struct pool *p, const void *bytes, size_t len, int nul, uint32_t *off)
{
	size_t need = p->len + len + (nul ? 1 : 0);
	if (need > UINT32_MAX)
		return -ENOMEM;
	if (need > p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 4096;
		while (cap < need)
			cap *= 2;
		char *b = realloc(p->bytes, cap);
		if (!b)
			return -ENOMEM;
		p->bytes = b;
		p->cap = cap;
	}
	*off = (uint32_t)p->len;
	memcpy(p->bytes + p->len, bytes, len);
	p->len += len;
	if (nul)
		p->bytes[p->len++] = '\0';
	return 0;
}

static uint64_t hash_bytes(uint64_t h, const void *bytes, size_t len)
{
	const uint8_t *s = bytes;
	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL; /* FNV-1a, 64 bit. */
	}
	return h;
}

policy_builder_t *policy_builder_new(void)
{
	policy_builder_t *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->map_size = 1024;
	b->map = calloc(b->map_size, sizeof(*b->map));
	if (!b->map) {
		free(b);
		return NULL;
	}
	return b;
}

void policy_builder_free(policy_builder_t *b)
{
	if (!b)
		return;
	free(b->pool.bytes);
	free(b->rules);
	free(b->map);
	free(b);
}

static int map_grow(policy_builder_t *b)
{
	size_t size = b->map_size * 2;
	uint32_t *map = calloc(size, sizeof(*map));
	if (!map)
		return -ENOMEM;
	for (size_t i = 0; i < b->count; i++) {
		const struct rule *r = &b->rules[i];
		const uint8_t *key = (const uint8_t *)b->pool.bytes + r->key;
		size_t h = (size_t)hash_bytes(0xcbf29ce484222325ULL, key, r->keylen) & (size - 1);
		while (map[h])
			h = (h + 1) & (size - 1);
		map[h] = (uint32_t)i + 1;
	}
	free(b->map);
	b->map = map;
	b->map_size = size;
	return 0;
}

/* The rule for name n, created with no actions when absent. */
static struct rule *rule_get(policy_builder_t *b, const struct name *n)
{
	size_t mask = b->map_size - 1;
	size_t h = (size_t)hash_bytes(0xcbf29ce484222325ULL, n->key, n->keylen) & mask;
	for (; b->map[h]; h = (h + 1) & mask) {
		struct rule *r = &b->rules[b->map[h] - 1];
		if (r->keylen == n->keylen && memcmp(b->pool.bytes + r->key, n->key, n->keylen) == 0)
			return r;
	}
	if ((b->count + 1) * 2 > b->map_size) {
		if (map_grow(b) < 0)
			return NULL;
		return rule_get(b, n);
	}
	if (b->count == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		struct rule *rules = realloc(b->rules, cap * sizeof(*rules));
		if (!rules)
			return NULL;
		b->rules = rules;
		b->cap = cap;
	}
	struct rule r = {.reason = NONE, .keylen = n->keylen, .actions = 0};
	if (pool_put(&b->pool, n->key, n->keylen, 0, &r.key) < 0)
		return NULL;
	b->rules[b->count] = r;
	b->map[h] = (uint32_t)++b->count;
	return &b->rules[b->count - 1];
}

int policy_builder_add(policy_builder_t *b, enum policy_action action, const char *name,
		       size_t len)
{
	struct name n;
	if ((action != POLICY_DENY && action != POLICY_ALLOW) ||
	    name_from_text(&n, name, len) < 0) {
		b->invalid++;
		return -EINVAL;
	}
	struct rule *r = rule_get(b, &n);
	if (!r)
		return -ENOMEM;
	r->actions |= (uint16_t)(action == POLICY_DENY ? ACT_DENY : ACT_ALLOW);
	return 0;
}

/* Length of reason cut to POLICY_REASON_MAX octets without splitting a UTF-8 sequence. */
static size_t reason_cut(const char *reason, size_t len)
{
	if (len <= POLICY_REASON_MAX)
		return len;
	len = POLICY_REASON_MAX;
	while (len > 0 && ((unsigned char)reason[len] & 0xC0) == 0x80)
		len--;
	return len;
}

int policy_builder_set_reason(policy_builder_t *b, const char *name, size_t len,
			      const char *reason, size_t reason_len)
{
	struct name n;
	if (name_from_text(&n, name, len) < 0) {
		b->invalid++;
		return -EINVAL;
	}
	struct rule *r = rule_get(b, &n);
	if (!r)
		return -ENOMEM;
	/* Reasons go into text answers and logs: control characters become spaces. */
	char clean[POLICY_REASON_MAX];
	size_t clen = reason_cut(reason, reason_len);
	for (size_t i = 0; i < clen; i++) {
		unsigned char c = (unsigned char)reason[i];
		clean[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	uint32_t off;
	if (pool_put(&b->pool, clean, clen, 1, &off) < 0)
		return -ENOMEM;
	r->reason = off;
	return 0;
}

int policy_builder_add_from(policy_builder_t *b, const policy_t *p, unsigned parts)
{
	/* p's records hold every name its builder saw, reason-only ones included. */
	for (size_t w = 0; w < p->recs_words;) {
		const uint8_t *rb = rec_bytes(p, w);
		uint32_t src_reason = p->recs[w];
		unsigned src_actions = rb[0];
		w += rec_words(rb[1]);
		unsigned actions = 0;
		if ((parts & POLICY_PART_DENY) && (src_actions & ACT_DENY))
			actions |= ACT_DENY;
		if ((parts & POLICY_PART_ALLOW) && (src_actions & ACT_ALLOW))
			actions |= ACT_ALLOW;
		int reason = (parts & POLICY_PART_REASON) && src_reason != NONE;
		if (!actions && !reason)
			continue;
		struct name n;
		memcpy(n.key, rb + 2, rb[1]);
		n.keylen = rb[1];
		struct rule *r = rule_get(b, &n);
		if (!r)
			return -ENOMEM;
		r->actions |= (uint16_t)actions;
		if (reason) {
			const char *why = p->pool.bytes + src_reason;
			uint32_t off;
			if (pool_put(&b->pool, why, strlen(why), 1, &off) < 0)
				return -ENOMEM;
			r->reason = off; /* The pool moved, the rules did not. */
		}
	}
	return 0;
}

void policy_builder_count_invalid(policy_builder_t *b, size_t n)
{
	b->invalid += n;
}

size_t policy_builder_invalid(const policy_builder_t *b)
{
	return b->invalid;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Does s[0..len) spell an address that hosts files use to sink names? */
static int is_sink_address(const char *s, size_t len)
{
	static const char *const sinks[] = {"0.0.0.0", "127.0.0.1", "::", "::1", "0:0:0:0:0:0:0:0"};
	for (size_t i = 0; i < sizeof(sinks) / sizeof(sinks[0]); i++)
		if (strlen(sinks[i]) == len && memcmp(sinks[i], s, len) == 0)
			return 1;
	return 0;
}

long policy_list_parse(const char *text, size_t len, policy_entry_cb on_entry,
		       policy_invalid_cb on_invalid, void *ctx)
{
	long bad = 0;
	size_t lineno = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		const char *line = p, *s = p, *e = eol;
		size_t line_len = (size_t)(eol - p);
		p = eol + 1;
		lineno++;
		while (s < e && is_space(*s))
			s++;
		while (e > s && is_space(e[-1]))
			e--;
		if (s == e || *s == '#')
			continue;
		const char *f1e = s;
		while (f1e < e && !is_space(*f1e))
			f1e++;
		const char *domain = s, *dend = f1e, *rest = f1e;
		if (f1e < e && *f1e == ' ' && is_sink_address(s, (size_t)(f1e - s))) {
			/* Hosts file: "0.0.0.0 name [comment]". */
			domain = f1e;
			while (domain < e && is_space(*domain))
				domain++;
			dend = domain;
			while (dend < e && !is_space(*dend))
				dend++;
			rest = e;
		}
		const char *reason = NULL;
		size_t reason_len = 0;
		int ok = 1;
		if (rest < e && *rest == '\t') {
			reason = rest + 1;
			reason_len = (size_t)(e - reason);
		} else if (rest < e) {
			/* Anything else after the name must be a comment. */
			const char *c = rest;
			while (c < e && is_space(*c))
				c++;
			ok = c == e || *c == '#';
		}
		struct name n;
		char normal[NAME_MAXTEXT + 2];
		if (!ok || name_from_text(&n, domain, (size_t)(dend - domain)) < 0 ||
		    name_to_text(&n, normal, sizeof(normal)) < 0) {
			bad++;
			if (on_invalid)
				on_invalid(ctx, lineno, line, line_len);
			continue;
		}
		int rc = on_entry(ctx, lineno, normal, reason, reason_len);
		if (rc < 0)
			return rc;
	}
	return bad;
}

struct add_list {
	policy_builder_t *b;
	policy_invalid_cb on_invalid;
	void *ctx;
};

static int add_entry(void *ctx, size_t line, const char *name, const char *reason,
		     size_t reason_len)
{
	struct add_list *al = ctx;
	int rc = policy_builder_add(al->b, POLICY_DENY, name, strlen(name));
	if (rc == 0 && reason_len > 0)
		rc = policy_builder_set_reason(al->b, name, strlen(name), reason, reason_len);
	return rc;
}

static void add_invalid(void *ctx, size_t line, const char *text, size_t len)
{
	struct add_list *al = ctx;
	al->b->invalid++;
	if (al->on_invalid)
		al->on_invalid(al->ctx, line, text, len);
}

size_t policy_builder_add_list(policy_builder_t *b, const char *text, size_t len,
			       policy_invalid_cb on_invalid, void *ctx)
{
	struct add_list al = {.b = b, .on_invalid = on_invalid, .ctx = ctx};
	long bad = policy_list_parse(text, len, add_entry, add_invalid, &al);
	return bad > 0 ? (size_t)bad : 0;
}

policy_t *policy_build(policy_builder_t *b, enum policy_source source)
{
	policy_t *p = calloc(1, sizeof(*p));
	uint32_t *values = NULL;
	if (!p)
		goto fail;
	size_t words = 0, nvalues = 0;
	for (size_t i = 0; i < b->count; i++) {
		words += rec_words(b->rules[i].keylen);
		nvalues += b->rules[i].actions != 0;
	}
	p->recs = malloc((words ? words : 1) * sizeof(*p->recs));
	values = malloc((nvalues ? nvalues : 1) * sizeof(*values));
	if (!p->recs || !values)
		goto fail;

	uint64_t version = 0;
	size_t w = 0, nv = 0;
	for (size_t i = 0; i < b->count; i++) {
		const struct rule *r = &b->rules[i];
		const uint8_t *key = (const uint8_t *)b->pool.bytes + r->key;
		const char *reason = r->reason == NONE ? NULL : b->pool.bytes + r->reason;
		size_t rw = rec_words(r->keylen);
		p->recs[w + rw - 1] = 0; /* Padding. */
		p->recs[w] = NONE;
		uint8_t *rb = (uint8_t *)(p->recs + w + 1);
		rb[0] = (uint8_t)r->actions;
		rb[1] = (uint8_t)r->keylen;
		memcpy(rb + 2, key, r->keylen);
		if (reason && pool_put(&p->pool, reason, strlen(reason), 1, &p->recs[w]) < 0)
			goto fail;
		if (!r->actions) {
			/* A reason without a rule: not enforced, but part of the content, so that a
			 * policy carried over (policy_builder_add_from) is never stale. */
			if (reason) {
				uint64_t h = hash_bytes(0x84222325cbf29ce4ULL, key, r->keylen);
				version += hash_bytes(h, reason, strlen(reason));
			}
		} else {
			values[nv++] = (uint32_t)w;
			if (r->actions & ACT_DENY)
				p->stats.deny++;
			if (r->actions & ACT_ALLOW)
				p->stats.allow++;
			/* Sum of per-rule hashes: the same rules give the same version in any order. */
			uint64_t h = hash_bytes(0xcbf29ce484222325ULL, key, r->keylen);
			h = hash_bytes(h, &r->actions, sizeof(r->actions));
			if (reason) {
				h = hash_bytes(h, reason, strlen(reason));
				p->stats.reasons++;
			}
			version += h;
		}
		w += rw;
	}
	p->recs_words = w;
	p->count = b->count;
	if (w > TRIE_VALUE_MAX)
		goto fail;
	p->trie = trie_build(values, nv, rec_key, p);
	if (!p->trie)
		goto fail;
	free(values);

	char *bytes = realloc(p->pool.bytes, p->pool.len ? p->pool.len : 1);
	if (bytes) {
		p->pool.bytes = bytes;
		p->pool.cap = p->pool.len;
	}
	p->stats.invalid = b->invalid;
	p->stats.version = version;
	p->stats.source = source;
	policy_builder_free(b);
	return p;
fail:
	free(values);
	policy_free(p);
	policy_builder_free(b);
	return NULL;
}

void policy_free(policy_t *p)
{
	if (!p)
		return;
	trie_free(p->trie);
	free(p->recs);
	free(p->pool.bytes);
	free(p);
}

void policy_lookup(const policy_t *p, const struct name *q, struct policy_verdict *v)
{
	uint32_t w;
	unsigned depth;
	if (trie_lookup(p->trie, q, &w, &depth) < 0) {
		*v = (struct policy_verdict){.action = POLICY_PASS};
		return;
	}
	uint32_t reason = p->recs[w];
	v->action = (rec_bytes(p, w)[0] & ACT_ALLOW) ? POLICY_ALLOW : POLICY_DENY;
	v->depth = depth;
	v->reason = reason == NONE ? NULL : p->pool.bytes + reason;
}

const struct policy_stats *policy_stats(const policy_t *p)
{
	return &p->stats;
}

size_t policy_memory(const policy_t *p)
{
	return sizeof(*p) + trie_memory(p->trie) + p->recs_words * sizeof(*p->recs) + p->pool.cap;
}

policy_t *policy_bundled(void)
{
	policy_builder_t *b = policy_builder_new();
	if (!b)
		return NULL;
	policy_builder_add_list(b, policy_bundled_tsv, strlen(policy_bundled_tsv), NULL, NULL);
	return policy_build(b, POLICY_SOURCE_BUNDLED);
}

const char *policy_source_name(enum policy_source source)
{
	switch (source) {
	case POLICY_SOURCE_BUNDLED:
		return "bundled list";
	case POLICY_SOURCE_REDIS:
		return "redis";
	case POLICY_SOURCE_SNAPSHOT:
		return "snapshot";
	}
	return "unknown";
}

void policy_set_loaded_at(policy_t *p, int64_t unix_time)
{
	p->stats.loaded_at = unix_time;
}

#define SNAPSHOT_MAGIC "embargo-policy-snapshot 1"

int policy_encode(const policy_t *p, int64_t saved_at, char **out, size_t *len)
{
	/* Body first, so the header can carry its checksum. */
	size_t cap = 4096 + p->pool.len + p->recs_words * 4 + p->count * 8, blen = 0;
	char *body = malloc(cap);
	if (!body)
		return -ENOMEM;
	size_t rules = 0;
	for (size_t w = 0; w < p->recs_words;) {
		const uint8_t *rb = rec_bytes(p, w);
		unsigned actions = rb[0];
		uint32_t reason_off = p->recs[w];
		w += rec_words(rb[1]);
		if (!actions && reason_off == NONE)
			continue;
		/* "r": a reason waiting for its rule; kept so the snapshot has the whole content. */
		const char *flags = actions == (ACT_DENY | ACT_ALLOW) ? "da"
				    : actions == ACT_DENY		? "d"
				    : actions == ACT_ALLOW		? "a"
									: "r";
		struct name n;
		memcpy(n.key, rb + 2, rb[1]);
		n.keylen = rb[1];
		char name[NAME_MAXTEXT + 2];
		if (name_suffix_to_text(&n, NAME_MAXWIRE, name, sizeof(name)) < 0)
			continue; /* Cannot happen: the key came from a valid name. */
		const char *reason = reason_off == NONE ? NULL : p->pool.bytes + reason_off;
		size_t need = strlen(flags) + strlen(name) + (reason ? strlen(reason) + 1 : 0) + 3;
		if (blen + need > cap) {
			cap = (blen + need) * 2;
			char *b = realloc(body, cap);
			if (!b) {
				free(body);
				return -ENOMEM;
			}
			body = b;
		}
		blen += (size_t)sprintf(body + blen, "%s\t%s%s%s\n", flags, name, reason ? "\t" : "",
					reason ? reason : "");
		rules++;
	}
	/* The checksum covers the header's fields as well as the body. */
	char fields[120], header[180];
	snprintf(fields, sizeof(fields), "rules=%zu version=%016" PRIx64 " saved=%" PRId64, rules,
		 p->stats.version, saved_at);
	uint64_t sum = hash_bytes(hash_bytes(0xcbf29ce484222325ULL, fields, strlen(fields)), body, blen);
	int hlen = snprintf(header, sizeof(header), SNAPSHOT_MAGIC " %s checksum=%016" PRIx64 "\n",
			    fields, sum);
	char *all = malloc((size_t)hlen + blen + 1);
	if (!all) {
		free(body);
		return -ENOMEM;
	}
	memcpy(all, header, (size_t)hlen);
	memcpy(all + hlen, body, blen);
	all[hlen + blen] = '\0';
	free(body);
	*out = all;
	*len = (size_t)hlen + blen;
	return 0;
}

int policy_decode(const char *text, size_t len, policy_t **out, int64_t *saved_at)
{
	const char *nl = memchr(text, '\n', len);
	if (!nl || (size_t)(nl - text) >= 200)
		return -EBADMSG;
	char header[200];
	memcpy(header, text, (size_t)(nl - text));
	header[nl - text] = '\0';
	size_t rules;
	uint64_t version, checksum;
	int64_t saved;
	int used = 0;
	if (sscanf(header, SNAPSHOT_MAGIC " rules=%zu version=%" SCNx64 " saved=%" SCNd64
				       " checksum=%" SCNx64 "%n",
		   &rules, &version, &saved, &checksum, &used) != 4 ||
	    header[used] != '\0')
		return -EBADMSG;
	const char *body = nl + 1;
	size_t blen = len - (size_t)(body - text);
	char fields[120];
	snprintf(fields, sizeof(fields), "rules=%zu version=%016" PRIx64 " saved=%" PRId64, rules,
		 version, saved);
	if (hash_bytes(hash_bytes(0xcbf29ce484222325ULL, fields, strlen(fields)), body, blen) !=
	    checksum)
		return -EBADMSG;

	policy_builder_t *b = policy_builder_new();
	if (!b)
		return -ENOMEM;
	size_t seen = 0;
	for (const char *line = body, *end = body + blen; line < end;) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			goto corrupt;
		const char *t1 = memchr(line, '\t', (size_t)(eol - line));
		if (!t1)
			goto corrupt;
		const char *name = t1 + 1;
		const char *t2 = memchr(name, '\t', (size_t)(eol - name));
		const char *nend = t2 ? t2 : eol;
		size_t flen = (size_t)(t1 - line);
		int deny = memchr(line, 'd', flen) != NULL, allow = memchr(line, 'a', flen) != NULL;
		int reason_only = flen == 1 && line[0] == 'r';
		if ((!deny && !allow && !reason_only) || flen > 2 || (reason_only && !t2))
			goto corrupt;
		int rc = 0;
		if (deny)
			rc = policy_builder_add(b, POLICY_DENY, name, (size_t)(nend - name));
		if (rc == 0 && allow)
			rc = policy_builder_add(b, POLICY_ALLOW, name, (size_t)(nend - name));
		if (rc == 0 && t2)
			rc = policy_builder_set_reason(b, name, (size_t)(nend - name), t2 + 1,
						       (size_t)(eol - t2 - 1));
		if (rc == -ENOMEM) {
			policy_builder_free(b);
			return -ENOMEM;
		}
		if (rc < 0)
			goto corrupt;
		seen++;
		line = eol + 1;
	}
	if (seen != rules)
		goto corrupt;
	policy_t *p = policy_build(b, POLICY_SOURCE_SNAPSHOT);
	if (!p)
		return -ENOMEM;
	if (p->stats.version != version) {
		policy_free(p);
		return -EBADMSG;
	}
	*out = p;
	*saved_at = saved;
	return 0;
corrupt:
	policy_builder_free(b);
	return -EBADMSG;
}
