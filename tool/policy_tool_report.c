/* embargo-policy report: which clients were denied, fleet-wide. Every instance run with
 * --report-clients adds to one hash per UTC day, PREFIX:clients:YYYY-MM-DD, with the fields
 * "n|ADDR" (denials), "t|ADDR" (of them over TCP), "f|ADDR" and "l|ADDR" (first and last seen,
 * Unix seconds) and "r|ADDR|RULE" (denials by that rule); ADDR "*" holds the clients past the
 * day's bound, RULE "*" a client's rules past its bound. The report reads the days --since
 * covers, keeps a client's day when its last denial that day falls in the window, sums the days
 * and prints the clients, most recently seen first, with their rules and the rules' reasons.
 * Redis is shared: a field whose address or rule embargo would not have written is skipped, so
 * nothing but addresses and rule names reaches the output. It never writes to Redis. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/fnv.h"
#include "resolver/base/json.h"
#include "tool/policy_tool.h"

struct rule_count {
	char *rule;
	const char *reason; /* Borrowed from the reasons read at the end; NULL: none. */
	uint64_t count;
};

struct client {
	char addr[48];
	uint64_t denied, tcp;
	int64_t first, last; /* 0: not seen yet. */
	struct rule_count *rules;
	size_t nrules, caprules;
};

/* Clients by address: open addressing over an array that grows. */
struct clients {
	struct client *c;
	size_t n, cap;
	size_t *slot; /* 1 + index in c; 0: free. */
	size_t nslot;
};

static void clients_free(struct clients *s)
{
	for (size_t i = 0; i < s->n; i++) {
		for (size_t k = 0; k < s->c[i].nrules; k++)
			free(s->c[i].rules[k].rule);
		free(s->c[i].rules);
	}
	free(s->c);
	free(s->slot);
	memset(s, 0, sizeof(*s));
}

static int clients_grow(struct clients *s)
{
	size_t nslot = s->nslot ? s->nslot * 2 : 64;
	size_t *slot = calloc(nslot, sizeof(*slot));
	struct client *c = realloc(s->c, nslot / 2 * sizeof(*c));
	if (!slot || !c) {
		free(slot);
		if (c)
			s->c = c;
		return -ENOMEM;
	}
	s->c = c;
	s->cap = nslot / 2;
	for (size_t i = 0; i < s->n; i++) {
		size_t h = fnv_bytes(FNV_BASIS, s->c[i].addr, strlen(s->c[i].addr)) & (nslot - 1);
		while (slot[h])
			h = (h + 1) & (nslot - 1);
		slot[h] = i + 1;
	}
	free(s->slot);
	s->slot = slot;
	s->nslot = nslot;
	return 0;
}

/* The client of addr (len octets), made if new. NULL: out of memory, or not an address. */
static struct client *client_of(struct clients *s, const char *addr, size_t len)
{
	if (len == 0 || len >= sizeof(s->c->addr))
		return NULL;
	if (s->n * 2 >= s->nslot && clients_grow(s) < 0)
		return NULL;
	size_t h = fnv_bytes(FNV_BASIS, addr, len) & (s->nslot - 1);
	for (; s->slot[h]; h = (h + 1) & (s->nslot - 1)) {
		struct client *c = &s->c[s->slot[h] - 1];
		if (strlen(c->addr) == len && memcmp(c->addr, addr, len) == 0)
			return c;
	}
	struct client *c = &s->c[s->n];
	memset(c, 0, sizeof(*c));
	memcpy(c->addr, addr, len);
	s->slot[h] = ++s->n;
	return c;
}

/* A client's count for rule: added to (set: replaced, for a day's own field read again). */
static int add_rule(struct client *c, const char *rule, size_t len, uint64_t count, int set)
{
	for (size_t k = 0; k < c->nrules; k++)
		if (strlen(c->rules[k].rule) == len && memcmp(c->rules[k].rule, rule, len) == 0) {
			c->rules[k].count = set ? count : c->rules[k].count + count;
			return 0;
		}
	if (c->nrules == c->caprules) {
		size_t cap = c->caprules ? c->caprules * 2 : 4;
		struct rule_count *r = realloc(c->rules, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		c->rules = r;
		c->caprules = cap;
	}
	char *copy = strndup(rule, len);
	if (!copy)
		return -ENOMEM;
	c->rules[c->nrules++] = (struct rule_count){.rule = copy, .count = count};
	return 0;
}

/* addr (len octets) as embargo writes it, into buf[48]: an IPv4 or IPv6 address in inet_ntop's
 * form, or "*". @return 0, or -EINVAL for anything else. */
static int clean_addr(const char *addr, size_t len, char *buf)
{
	uint8_t bin[16];
	if (len == 0 || len >= 48)
		return -EINVAL;
	memcpy(buf, addr, len);
	buf[len] = '\0';
	if (strcmp(buf, "*") == 0)
		return 0;
	int family = memchr(addr, ':', len) ? AF_INET6 : AF_INET;
	if (inet_pton(family, buf, bin) != 1 || !inet_ntop(family, bin, buf, 48))
		return -EINVAL;
	return 0;
}

/* rule (len octets) as embargo writes it: a name in normal form, or "*". */
static int clean_rule(const char *rule, size_t len)
{
	char normal[NAME_MAXTEXT + 2];
	if (len == 1 && rule[0] == '*')
		return 0;
	if (len == 0 || len > NAME_MAXTEXT || policy_tool_normal(rule, len, normal) < 0 ||
	    strlen(normal) != len || memcmp(normal, rule, len) != 0)
		return -EINVAL;
	return 0;
}

/* One HSCAN batch of a day's hash into the day's clients. A day's field holds that day's
 * total, so a field SCAN returns twice is taken once (values are set, not added). Fields of
 * other kinds ("#clients", the bounds' counters), other addresses or rules, and values that
 * are not counts are skipped. */
static int read_day(void *ctx, const redisReply *const *items, size_t n)
{
	struct clients *day = ctx;
	for (size_t i = 0; i < n; i++) {
		const redisReply *f = items[2 * i], *v = items[2 * i + 1];
		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || f->len < 3 ||
		    f->str[1] != '|' || !strchr("ntflr", f->str[0]))
			continue;
		char *end;
		long long value = strtoll(v->str, &end, 10);
		if (end == v->str || *end || value < 0)
			continue;
		const char *addr = f->str + 2;
		const char *bar = f->str[0] == 'r' ? memchr(addr, '|', f->len - 2) : NULL;
		if (f->str[0] == 'r' && !bar)
			continue;
		size_t alen = bar ? (size_t)(bar - addr) : f->len - 2;
		char clean[48];
		if (clean_addr(addr, alen, clean) < 0)
			continue;
		const char *rule = bar ? bar + 1 : NULL;
		size_t rlen = bar ? (size_t)(f->str + f->len - rule) : 0;
		if (rule && clean_rule(rule, rlen) < 0)
			continue;
		struct client *c = client_of(day, clean, strlen(clean));
		if (!c)
			return -ENOMEM;
		switch (f->str[0]) {
		case 'n':
			c->denied = (uint64_t)value;
			break;
		case 't':
			c->tcp = (uint64_t)value;
			break;
		case 'f':
			c->first = value;
			break;
		case 'l':
			c->last = value;
			break;
		case 'r':
			if (add_rule(c, rule, rlen, (uint64_t)value, 1) < 0)
				return -ENOMEM;
			break;
		}
	}
	return 0;
}

/* Add the day's clients last seen at or after `from` into total. */
static int merge_day(struct clients *total, const struct clients *day, int64_t from)
{
	for (size_t i = 0; i < day->n; i++) {
		const struct client *d = &day->c[i];
		if (d->last < from || d->denied == 0)
			continue;
		struct client *c = client_of(total, d->addr, strlen(d->addr));
		if (!c)
			return -ENOMEM;
		c->denied += d->denied;
		c->tcp += d->tcp;
		if (!c->first || (d->first && d->first < c->first))
			c->first = d->first;
		if (d->last > c->last)
			c->last = d->last;
		for (size_t k = 0; k < d->nrules; k++)
			if (add_rule(c, d->rules[k].rule, strlen(d->rules[k].rule), d->rules[k].count, 0) <
			    0)
				return -ENOMEM;
	}
	return 0;
}

static int by_last_seen(const void *a, const void *b)
{
	const struct client *x = a, *y = b;
	if (x->last != y->last)
		return x->last > y->last ? -1 : 1;
	if (x->denied != y->denied)
		return x->denied > y->denied ? -1 : 1;
	return strcmp(x->addr, y->addr);
}

static int by_count(const void *a, const void *b)
{
	const struct rule_count *x = a, *y = b;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->rule, y->rule);
}

/* "7d", "24h", "90m", "3600s", "2w" (a bare number is seconds) into seconds. */
static int parse_since(const char *s, int64_t *out)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	if (end == s || v <= 0)
		return -EINVAL;
	long long unit = !*end ? 1
			 : strcmp(end, "s") == 0 ? 1
			 : strcmp(end, "m") == 0 ? 60
			 : strcmp(end, "h") == 0 ? 3600
			 : strcmp(end, "d") == 0 ? 86400
			 : strcmp(end, "w") == 0 ? 604800
						 : 0;
	if (!unit || v > 3650LL * 86400 / unit)
		return -EINVAL;
	*out = v * unit;
	return 0;
}

static void utc_text(int64_t t, const char *fmt, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!gmtime_r(&tt, &tm) || !strftime(buf, cap, fmt, &tm))
		snprintf(buf, cap, "%lld", (long long)t);
}

/* A CSV field: quoted when it holds a comma, quote or line break (RFC 4180). */
static void csv_field(const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

enum format { TABLE, CSV, JSON };

/* Rules shown per client in the table; csv and json list them all. */
#define TABLE_RULES 3

static void print_json(const struct client *c, int comma)
{
	char first[32], last[32];
	utc_text(c->first, "%Y-%m-%dT%H:%M:%SZ", first, sizeof(first));
	utc_text(c->last, "%Y-%m-%dT%H:%M:%SZ", last, sizeof(last));
	printf("%s\n  {\"client\": \"", comma ? "," : "");
	json_text(stdout, c->addr);
	printf("\", \"denied\": %llu, \"denied_tcp\": %llu, \"first_seen\": \"%s\", "
	       "\"last_seen\": \"%s\", \"rules\": [",
	       (unsigned long long)c->denied, (unsigned long long)c->tcp, first, last);
	for (size_t k = 0; k < c->nrules; k++) {
		printf("%s{\"rule\": \"", k ? ", " : "");
		json_text(stdout, c->rules[k].rule);
		printf("\", \"denied\": %llu, \"reason\": ", (unsigned long long)c->rules[k].count);
		if (c->rules[k].reason) {
			putchar('"');
			json_text(stdout, c->rules[k].reason);
			putchar('"');
		} else {
			fputs("null", stdout);
		}
		putchar('}');
	}
	fputs("]}", stdout);
}

/* rules: "rule=count;..."; reasons: "rule=reason;..." for those that have one. */
static void print_csv(const struct client *c)
{
	char first[32], last[32];
	utc_text(c->first, "%Y-%m-%d %H:%M:%S", first, sizeof(first));
	utc_text(c->last, "%Y-%m-%d %H:%M:%S", last, sizeof(last));
	csv_field(c->addr);
	printf(",%llu,%llu,%s,%s,", (unsigned long long)c->denied, (unsigned long long)c->tcp, first,
	       last);
	putchar('"');
	for (size_t k = 0; k < c->nrules; k++)
		printf("%s%s=%llu", k ? ";" : "", c->rules[k].rule, (unsigned long long)c->rules[k].count);
	fputs("\",\"", stdout);
	int any = 0;
	for (size_t k = 0; k < c->nrules; k++) {
		if (!c->rules[k].reason)
			continue;
		printf("%s%s=", any++ ? ";" : "", c->rules[k].rule);
		for (const char *r = c->rules[k].reason; *r; r++) {
			if (*r == '"')
				putchar('"');
			putchar(*r);
		}
	}
	fputs("\"\n", stdout);
}

static void print_row(const struct client *c)
{
	char first[32], last[32], denied[48];
	utc_text(c->first, "%Y-%m-%d %H:%M:%S", first, sizeof(first));
	utc_text(c->last, "%Y-%m-%d %H:%M:%S", last, sizeof(last));
	snprintf(denied, sizeof(denied), "%llu (%llu)", (unsigned long long)c->denied,
		 (unsigned long long)c->tcp);
	printf("%-39s %14s  %-19s  %-19s  ", c->addr, denied, first, last);
	for (size_t k = 0; k < c->nrules && k < TABLE_RULES; k++)
		printf("%s%s %llu%s%s", k ? "; " : "", c->rules[k].rule,
		       (unsigned long long)c->rules[k].count, c->rules[k].reason ? ": " : "",
		       c->rules[k].reason ? c->rules[k].reason : "");
	if (c->nrules > TABLE_RULES)
		printf("; and %zu more", c->nrules - TABLE_RULES);
	putchar('\n');
}

static void print_report(const struct clients *s, enum format fmt, int64_t from)
{
	if (fmt == TABLE && s->n == 0) {
		char since[32];
		utc_text(from, "%Y-%m-%d %H:%M:%S", since, sizeof(since));
		printf("no client was denied since %s UTC\n", since);
		return;
	}
	if (fmt == CSV)
		puts("client,denied,denied_tcp,first_seen,last_seen,rules,reasons");
	if (fmt == TABLE)
		printf("%-39s %14s  %-19s  %-19s  %s\n", "CLIENT", "DENIED (TCP)", "FIRST SEEN (UTC)",
		       "LAST SEEN (UTC)", "RULES (DENIALS: REASON)");
	if (fmt == JSON)
		putchar('[');
	for (size_t i = 0; i < s->n; i++) {
		if (fmt == JSON)
			print_json(&s->c[i], i > 0);
		else if (fmt == CSV)
			print_csv(&s->c[i]);
		else
			print_row(&s->c[i]);
	}
	if (fmt == JSON)
		puts(s->n ? "\n]" : "]");
}

static int by_text(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Each distinct rule's reason from PREFIX:reason, one pipelined HGET per distinct rule. The
 * replies are kept in *replies (freed by the caller) and the reasons point into them. */
static int read_reasons(struct policy_tool *t, struct clients *s, redisReply ***replies,
			size_t *nreplies)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += s->c[i].nrules;
	char **rules = malloc((n ? n : 1) * sizeof(*rules));
	*replies = calloc(n ? n : 1, sizeof(**replies));
	if (!rules || !*replies) {
		free(rules);
		return -ENOMEM;
	}
	n = 0;
	for (size_t i = 0; i < s->n; i++)
		for (size_t k = 0; k < s->c[i].nrules; k++)
			rules[n++] = s->c[i].rules[k].rule;
	if (n > 1)
		qsort(rules, n, sizeof(*rules), by_text);
	size_t distinct = 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(rules[i], "*") != 0 && (distinct == 0 || strcmp(rules[distinct - 1], rules[i]) != 0))
			rules[distinct++] = rules[i];
	for (size_t i = 0; i < distinct; i++)
		redisAppendCommand(t->rc, "HGET %s %s", t->reason, rules[i]);
	int rc = 0;
	*nreplies = 0;
	for (size_t i = 0; i < distinct; i++) {
		redisReply *r;
		if (redisGetReply(t->rc, (void **)&r) != REDIS_OK) {
			fprintf(stderr, "embargo-policy: redis: %s\n", t->rc->errstr);
			rc = -EIO;
			break;
		}
		(*replies)[(*nreplies)++] = r;
	}
	for (size_t i = 0; rc == 0 && i < s->n; i++)
		for (size_t k = 0; k < s->c[i].nrules; k++) {
			char *key = s->c[i].rules[k].rule;
			char **at = bsearch(&key, rules, distinct, sizeof(*rules), by_text);
			const redisReply *r = at ? (*replies)[at - rules] : NULL;
			if (r && r->type == REDIS_REPLY_STRING && r->len > 0)
				s->c[i].rules[k].reason = r->str;
		}
	free(rules);
	return rc;
}

int policy_tool_report(struct policy_tool *t, int argc, char **argv)
{
	int64_t since = 7 * 86400;
	enum format fmt = TABLE;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
			if (parse_since(argv[++i], &since) < 0) {
				fprintf(stderr, "embargo-policy: report --since: expected a duration like "
						"7d, 24h, 30m or 2w (at most 10 years), got '%s'\n",
					argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "table") == 0)
				fmt = TABLE;
			else if (strcmp(argv[i], "csv") == 0)
				fmt = CSV;
			else if (strcmp(argv[i], "json") == 0)
				fmt = JSON;
			else {
				fprintf(stderr, "embargo-policy: report --format: expected table, csv or "
						"json, got '%s'\n",
					argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "embargo-policy: usage: report [--since DURATION] "
					"[--format table|csv|json]\n");
			return 2;
		}
	}
	if (policy_tool_connect(t) < 0)
		return 1;
	int64_t now = (int64_t)time(NULL), from = now - since;
	struct clients total = {0};
	int rc = 0;
	/* Every UTC day from the window's start to today. */
	for (int64_t day = from - from % 86400; day <= now && rc == 0; day += 86400) {
		char key[160], date[16];
		utc_text(day, "%Y-%m-%d", date, sizeof(date));
		snprintf(key, sizeof(key), "%s:clients:%s", t->prefix, date);
		struct clients d = {0};
		rc = policy_tool_scan(t, "HSCAN", key, NULL, read_day, &d);
		if (rc == 0)
			rc = merge_day(&total, &d, from);
		clients_free(&d);
	}
	redisReply **replies = NULL;
	size_t nreplies = 0;
	if (rc == 0)
		rc = read_reasons(t, &total, &replies, &nreplies);
	if (rc == 0) {
		for (size_t i = 0; i < total.n; i++)
			if (total.c[i].nrules > 1)
				qsort(total.c[i].rules, total.c[i].nrules, sizeof(*total.c[i].rules),
				      by_count);
		/* Sorting moves the clients: the address index is not used again. */
		if (total.n > 1)
			qsort(total.c, total.n, sizeof(*total.c), by_last_seen);
		print_report(&total, fmt, from);
	} else if (rc == -ENOMEM) {
		fprintf(stderr, "embargo-policy: report: out of memory\n");
	}
	for (size_t i = 0; i < nreplies; i++)
		freeReplyObject(replies[i]);
	free(replies);
	clients_free(&total);
	return rc == 0 ? 0 : 1;
}
