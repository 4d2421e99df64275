/* embargo-policy explain, diff, verify and log: questions about the policy. Each one decides
 * with the daemon's own code (name parsing, the builder, the lookup, guard_diff), so the tool
 * cannot disagree with the daemon about a name, a member or a version. They never write to
 * Redis or to a file. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/guard.h"
#include "tool/policy_tool.h"
#include "resolver/sync/snapshot.h"

/* What Redis holds for one name on the path of the name explained. */
struct step {
	int deny, allow;
	char *reason;
	char spelled[2][NAME_MAXTEXT + 2]; /* The deny and allow members, as written. */
};

struct path {
	const struct name *q;
	struct step step[NAME_MAXWIRE / 2 + 2];
	int kind; /* 0 deny, 1 allow, 2 reason: what the scan reads. */
};

/* Keep the members that are the name explained or one of its ancestors. */
static int on_path(void *ctx, const redisReply *const *items, size_t n)
{
	struct path *p = ctx;
	size_t stride = p->kind == 2 ? 2 : 1;
	for (size_t i = 0; i < n; i++) {
		const redisReply *m = items[i * stride];
		struct name a;
		if (m->type != REDIS_REPLY_STRING || name_from_text(&a, m->str, m->len) < 0 ||
		    a.keylen > p->q->keylen || memcmp(a.key, p->q->key, a.keylen - 1u) != 0)
			continue;
		/* Equal keys up to a's end are whole labels: a is on the path. */
		struct step *s = &p->step[a.nlabels];
		if (p->kind < 2) {
			*(p->kind == 0 ? &s->deny : &s->allow) = 1;
			snprintf(s->spelled[p->kind], sizeof(s->spelled[0]), "%.*s", (int)m->len, m->str);
		} else if (items[i * 2 + 1]->type == REDIS_REPLY_STRING) {
			free(s->reason);
			s->reason = strndup(items[i * 2 + 1]->str, items[i * 2 + 1]->len);
			if (!s->reason)
				return -ENOMEM;
		}
	}
	return 0;
}

/* Read the rules on q's path: the root by its only spelling, the rest with one scan per key
 * matching any case of q's top-level label (members written in another case or with a trailing
 * dot count, as they do in the daemon). */
static int read_path(struct policy_tool *t, struct path *p)
{
	const char *keys[3] = {t->deny, t->allow, t->reason};
	for (int k = 0; k < 3; k++) {
		redisReply *r = policy_tool_cmd(t, k < 2 ? "SISMEMBER %s ." : "HGET %s .", keys[k]);
		if (!r)
			return -EIO;
		if (k < 2 && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
			*(k == 0 ? &p->step[0].deny : &p->step[0].allow) = 1;
			snprintf(p->step[0].spelled[k], sizeof(p->step[0].spelled[0]), ".");
		} else if (k == 2 && r->type == REDIS_REPLY_STRING) {
			p->step[0].reason = strndup(r->str, r->len);
		}
		freeReplyObject(r);
	}
	if (p->q->nlabels == 0)
		return 0;
	char tld[NAME_MAXLABEL + 1], pattern[NAME_MAXLABEL * 4 + 8] = "*";
	memcpy(tld, p->q->key + 1, p->q->key[0]);
	tld[p->q->key[0]] = '\0';
	if (policy_tool_glob(tld, "*", pattern + 1, sizeof(pattern) - 1) < 0)
		return -ENOSPC;
	for (p->kind = 0; p->kind < 3; p->kind++) {
		int rc = policy_tool_scan(t, p->kind == 2 ? "HSCAN" : "SSCAN", keys[p->kind], pattern,
					  on_path, p);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int explain(struct policy_tool *t, const char *text)
{
	struct name n;
	if (name_from_text(&n, text, strlen(text)) < 0) {
		printf("%s: not a valid domain name\n", text);
		return 1;
	}
	struct path *p = calloc(1, sizeof(*p));
	policy_builder_t *b = policy_builder_new();
	int status = 1;
	if (!p || !b) {
		fprintf(stderr, "embargo-policy: out of memory\n");
		goto done;
	}
	p->q = &n;
	if (read_path(t, p) < 0)
		goto done;
	int rules = 0;
	for (unsigned d = 0; d <= n.nlabels; d++) {
		struct step *s = &p->step[d];
		char rule[NAME_MAXTEXT + 2];
		name_suffix_to_text(&n, d, rule, sizeof(rule));
		if (s->deny)
			policy_builder_add(b, POLICY_DENY, rule, strlen(rule));
		if (s->allow)
			policy_builder_add(b, POLICY_ALLOW, rule, strlen(rule));
		if (s->reason)
			policy_builder_set_reason(b, rule, strlen(rule), s->reason, strlen(s->reason));
		if (!s->deny && !s->allow)
			continue;
		if (!rules++)
			printf("%s: rules on its path, most general first:\n", text);
		printf("  %-40s %s%s%s", rule, s->deny ? "deny" : "", s->deny && s->allow ? "+" : "",
		       s->allow ? "allow" : "");
		for (int k = 0; k < 2; k++)
			if ((k ? s->allow : s->deny) && strcmp(s->spelled[k], rule) != 0)
				printf("  (%s member written '%s')", k ? "allow" : "deny", s->spelled[k]);
		printf("\n");
	}
	redisReply *exists = policy_tool_cmd(t, "EXISTS %s %s %s", t->deny, t->allow, t->reason);
	if (!exists)
		goto done;
	if (exists->type == REDIS_REPLY_INTEGER && exists->integer == 0)
		printf("note: redis holds none of %s, %s, %s; embargo enforces its snapshot or "
		       "bundled list instead\n", t->deny, t->allow, t->reason);
	freeReplyObject(exists);
	policy_t *pol = policy_build(b, POLICY_SOURCE_REDIS);
	b = NULL;
	if (!pol)
		goto done;
	struct policy_verdict v;
	policy_lookup(pol, &n, &v);
	char rule[NAME_MAXTEXT + 2];
	name_suffix_to_text(&n, v.depth, rule, sizeof(rule));
	if (v.action == POLICY_DENY)
		printf("%s: DENIED by %s member '%s'\n  reason: %s\n", text, t->deny, rule,
		       v.reason ? v.reason : "(none; answers say \"denied by policy: <rule>\")");
	else if (v.action == POLICY_ALLOW)
		printf("%s: ALLOWED by %s member '%s' (the most specific rule wins)\n", text,
		       t->allow, rule);
	else
		printf("%s: no rule applies; forwarded to the upstream\n", text);
	policy_free(pol);
	status = 0;
done:
	if (p)
		for (unsigned d = 0; d <= n.nlabels; d++)
			free(p->step[d].reason);
	free(p);
	policy_builder_free(b);
	return status;
}

int policy_tool_inspect_explain(struct policy_tool *t, int argc, char **argv)
{
	if (argc < 1) {
		fprintf(stderr, "embargo-policy: usage: explain NAME...\n");
		return 2;
	}
	if (policy_tool_connect(t) < 0)
		return 1;
	int status = 0;
	for (int i = 0; i < argc && status == 0; i++)
		status = explain(t, argv[i]);
	return status;
}

static void iso_time(int64_t unix_time, char *buf, size_t cap)
{
	time_t tt = (time_t)unix_time;
	struct tm tm;
	if (!gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, cap, "%lld", (long long)unix_time);
}

int policy_tool_inspect_diff(struct policy_tool *t, int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "embargo-policy: usage: diff [SNAPSHOT]\n");
		return 2;
	}
	const char *path = argc == 1 ? argv[0] : POLICY_TOOL_SNAPSHOT;
	char err[512], v[DIGEST_SHORT_HEX + 1], saved[32];
	policy_t *snap = NULL, *redis = NULL;
	struct codec_meta meta;
	if (snapshot_load(path, &snap, &meta, err, sizeof(err)) < 0) {
		fprintf(stderr, "embargo-policy: %s\n", err);
		return 1;
	}
	int status = 1;
	if (policy_tool_connect(t) < 0 ||
	    policy_tool_read(t, t->deny, t->allow, t->reason, &redis) < 0)
		goto done;
	const struct policy_stats *a = policy_stats(snap), *b = policy_stats(redis);
	digest_short(&a->digest, v);
	iso_time(meta.saved_at, saved, sizeof(saved));
	printf("snapshot %s (prefix %s, db %d, saved %s): version %s, %zu deny, %zu allow, "
	       "%zu reasons\n", path, meta.prefix, meta.db, saved, v, a->deny, a->allow, a->reasons);
	digest_short(&b->digest, v);
	printf("redis %s:*: version %s, %zu deny, %zu allow, %zu reasons\n", t->prefix, v, b->deny,
	       b->allow, b->reasons);
	if (digest_is_equal(&a->digest, &b->digest)) {
		printf("same rules and reasons\n");
	} else {
		struct guard_diff d;
		guard_diff(snap, redis, &d);
		printf("redis against the snapshot:\n");
		policy_tool_print_diff(&d);
		struct guard_names lifted;
		size_t allowed;
		if (policy_tool_lifts(snap, redis, &d, &lifted, &allowed) == 0 && lifted.count)
			printf("it lifts %zu denied names (%zu may go without consent): if redis lost "
			       "data, embargo-policy restore; if it is meant, embargo-policy accept %s\n",
			       lifted.count, allowed, v);
	}
	status = 0;
done:
	policy_free(snap);
	policy_free(redis);
	return status;
}

/* Why the daemon skips a member: the wording operators see in verify. */
static const char *invalid_why(const char *s, size_t len)
{
	char text[NAME_MAXTEXT + 2];
	unsigned char addr[16];
	if (len == 0)
		return "empty";
	if (len < sizeof(text)) {
		memcpy(text, s, len);
		text[len] = '\0';
		if (inet_pton(AF_INET, text, addr) == 1 || inet_pton(AF_INET6, text, addr) == 1)
			return "IP literal, not a domain name";
	}
	const char *last = s, *end = s + len;
	if (end[-1] == '.' && len > 1)
		end--;
	size_t label = 0;
	int digits = 1;
	for (const char *c = s; c < end; c++) {
		if (*c == '.') {
			if (label > NAME_MAXLABEL)
				return "label longer than 63 octets";
			label = 0;
			last = c + 1;
			digits = 1;
			continue;
		}
		label++;
		digits &= *c >= '0' && *c <= '9';
	}
	if (label > NAME_MAXLABEL)
		return "label longer than 63 octets";
	if ((size_t)(end - s) > NAME_MAXTEXT - 1)
		return "name longer than 255 octets";
	if (digits && last < end)
		return "IP literal (the last label is all digits)";
	return "not a domain name (empty label, space or a character outside a-z 0-9 - _)";
}

struct verify {
	struct policy_tool *t;
	const char *key;
	int kind;        /* 0 deny, 1 allow, 2 reason. */
	policy_builder_t *rules;
	const policy_t *with_rules; /* For reasons: the deny and allow rules. */
	size_t members, skipped;
};

static void show_member(const struct verify *v, const char *s, size_t len, const char *why)
{
	printf("%s: '", v->key);
	for (size_t i = 0; i < len && i < 100; i++)
		putchar((unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
	printf("%s' skipped: %s\n", len > 100 ? "..." : "", why);
}

static int verify_batch(void *ctx, const redisReply *const *items, size_t n)
{
	struct verify *v = ctx;
	size_t stride = v->kind == 2 ? 2 : 1;
	for (size_t i = 0; i < n; i++) {
		const redisReply *m = items[i * stride];
		v->members++;
		if (m->type != REDIS_REPLY_STRING)
			continue;
		struct name nm;
		if (name_from_text(&nm, m->str, m->len) < 0) {
			v->skipped++;
			show_member(v, m->str, m->len, invalid_why(m->str, m->len));
			continue;
		}
		if (v->kind < 2) {
			if (policy_builder_add(v->rules, v->kind ? POLICY_ALLOW : POLICY_DENY, m->str,
					       m->len) == -ENOMEM)
				return -ENOMEM;
			continue;
		}
		struct policy_verdict verdict;
		policy_lookup(v->with_rules, &nm, &verdict);
		if (verdict.action == POLICY_PASS || verdict.depth != nm.nlabels) {
			v->skipped++;
			show_member(v, m->str, m->len, "a reason for a name without a deny or allow rule");
		}
	}
	return 0;
}

int policy_tool_inspect_verify(struct policy_tool *t, int argc, char **argv)
{
	(void)argv;
	if (argc > 0) {
		fprintf(stderr, "embargo-policy: usage: verify\n");
		return 2;
	}
	if (policy_tool_connect(t) < 0)
		return 1;
	const char *keys[] = {t->deny, t->allow, t->reason, t->accept, t->audit};
	const char *want[] = {"set", "set", "hash", "hash", "stream"};
	int wrong = 0, usable[3];
	for (int k = 0; k < 5; k++) {
		redisReply *r = policy_tool_cmd(t, "TYPE %s", keys[k]);
		if (!r || r->type != REDIS_REPLY_STATUS) {
			freeReplyObject(r);
			return 1;
		}
		int ok = strcmp(r->str, want[k]) == 0 || strcmp(r->str, "none") == 0;
		if (!ok) {
			wrong++;
			printf("%s: wrong type %s (want %s)%s\n", keys[k], r->str, want[k],
			       k < 3 ? "; the daemon keeps the policy in force and loads nothing" : "");
		}
		if (k < 3)
			usable[k] = ok;
		freeReplyObject(r);
	}
	struct verify v[3];
	policy_t *rules = NULL;
	policy_builder_t *b = policy_builder_new();
	if (!b)
		return 1;
	int rc = 0;
	for (int k = 0; k < 3 && rc == 0; k++) {
		v[k] = (struct verify){.t = t, .key = keys[k], .kind = k, .rules = b};
		if (k == 2) {
			rules = policy_build(b, POLICY_SOURCE_REDIS);
			b = NULL;
			if (!rules) {
				rc = -ENOMEM;
				break;
			}
			v[k].with_rules = rules;
		}
		if (usable[k])
			rc = policy_tool_scan(t, k == 2 ? "HSCAN" : "SSCAN", keys[k], NULL,
					      verify_batch, &v[k]);
	}
	policy_builder_free(b);
	policy_free(rules);
	if (rc < 0) {
		if (rc == -ENOMEM)
			fprintf(stderr, "embargo-policy: out of memory\n");
		return 1;
	}
	size_t skipped = v[0].skipped + v[1].skipped + v[2].skipped;
	printf("%s: %zu members, %s: %zu members, %s: %zu fields; %zu skipped, %d wrong types\n",
	       t->deny, v[0].members, t->allow, v[1].members, t->reason, v[2].members, skipped,
	       wrong);
	return skipped || wrong ? 1 : 0;
}

static const redisReply *field(const redisReply *fields, const char *name)
{
	for (size_t i = 0; i + 1 < fields->elements; i += 2)
		if (fields->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(fields->element[i]->str, name) == 0 &&
		    fields->element[i + 1]->type == REDIS_REPLY_STRING)
			return fields->element[i + 1];
	return NULL;
}

int policy_tool_inspect_log(struct policy_tool *t, int argc, char **argv)
{
	long count = 20;
	if (argc == 2 && strcmp(argv[0], "-n") == 0) {
		char *end;
		count = strtol(argv[1], &end, 10);
		if (*end || count <= 0 || count > 10000) {
			fprintf(stderr, "embargo-policy: log -n: expected 1 to 10000, got '%s'\n",
				argv[1]);
			return 2;
		}
	} else if (argc != 0) {
		fprintf(stderr, "embargo-policy: usage: log [-n N]\n");
		return 2;
	}
	if (policy_tool_connect(t) < 0)
		return 1;
	redisReply *r = policy_tool_cmd(t, "XREVRANGE %s + - COUNT %ld", t->audit, count);
	if (!r)
		return 1;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[1]->type != REDIS_REPLY_ARRAY)
			continue;
		const redisReply *f = e->element[1];
		const redisReply *at = field(f, "time"), *by = field(f, "by"),
				 *cmd = field(f, "command"), *added = field(f, "added"),
				 *removed = field(f, "removed"), *version = field(f, "version"),
				 *why = field(f, "why");
		char when[32];
		iso_time(at ? strtoll(at->str, NULL, 10) : 0, when, sizeof(when));
		printf("%s  %s  %s  +%s -%s  %s%s%s\n", when, by ? by->str : "?",
		       cmd ? cmd->str : "?", added ? added->str : "?", removed ? removed->str : "?",
		       version ? version->str : "?", why && why->len ? "  " : "",
		       why && why->len ? why->str : "");
	}
	freeReplyObject(r);
	return 0;
}
