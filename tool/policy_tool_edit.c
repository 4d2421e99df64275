/* embargo-policy add and remove: small edits by hand. Names are matched in normal form
 * (lower case, no trailing dot), as the daemon matches them, so `remove example.com` also lifts a
 * member written "Example.COM."; such spellings are found with a case-insensitive SSCAN MATCH.
 * It never writes a consent: whether the resolvers enforce a large removal is still for the
 * held-load rule to decide. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool/policy_tool.h"

/* The members (or hash fields) of one key that spell one name. */
struct spellings {
	const char *normal;
	size_t stride; /* 1: SSCAN, 2: HSCAN. */
	char **text;
	size_t count, cap;
};

static int collect(void *ctx, const redisReply *const *items, size_t n)
{
	struct spellings *s = ctx;
	for (size_t i = 0; i < n; i++) {
		const redisReply *m = items[i * s->stride];
		char normal[NAME_MAXTEXT + 2];
		if (m->type != REDIS_REPLY_STRING || policy_tool_normal(m->str, m->len, normal) < 0 ||
		    strcmp(normal, s->normal) != 0)
			continue;
		if (s->count == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 4;
			char **text = realloc(s->text, cap * sizeof(*text));
			if (!text)
				return -ENOMEM;
			s->text = text;
			s->cap = cap;
		}
		s->text[s->count] = strndup(m->str, m->len);
		if (!s->text[s->count])
			return -ENOMEM;
		s->count++;
	}
	return 0;
}

static void spellings_free(struct spellings *s)
{
	for (size_t i = 0; i < s->count; i++)
		free(s->text[i]);
	free(s->text);
}

/* Every member of key (a set, or a hash with stride 2) that spells `normal`. The glob matches
 * any case and any tail; the tail is checked in normal form (only a trailing dot passes). */
static int find_spellings(struct policy_tool *t, const char *key, size_t stride,
			  const char *normal, struct spellings *s)
{
	*s = (struct spellings){.normal = normal, .stride = stride};
	char pattern[NAME_MAXTEXT * 4 + 8];
	if (policy_tool_glob(normal, "*", pattern, sizeof(pattern)) < 0)
		return -ENOSPC;
	int rc = policy_tool_scan(t, stride == 2 ? "HSCAN" : "SSCAN", key, pattern, collect, s);
	if (rc == -ENOMEM)
		fprintf(stderr, "embargo-policy: out of memory\n");
	return rc;
}

/* Send cmd key s->text... and return the integer reply (members removed), or -1. */
static long long remove_all(struct policy_tool *t, const char *cmd, const char *key,
			    const struct spellings *s)
{
	if (s->count == 0)
		return 0;
	const char **argv = calloc(s->count + 2, sizeof(*argv));
	if (!argv)
		return -1;
	argv[0] = cmd;
	argv[1] = key;
	for (size_t i = 0; i < s->count; i++)
		argv[i + 2] = s->text[i];
	redisReply *r = redisCommandArgv(t->rc, (int)s->count + 2, argv, NULL);
	free(argv);
	long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
	if (n < 0)
		fprintf(stderr, "embargo-policy: %s %s failed: %s\n", cmd, key,
			r && r->type == REDIS_REPLY_ERROR ? r->str : t->rc->errstr);
	freeReplyObject(r);
	return n;
}

/* Leading --allow; returns the index of the first operand. */
static int kind_option(int argc, char **argv, int *allow)
{
	int i = 0;
	*allow = 0;
	if (i < argc && strcmp(argv[i], "--allow") == 0) {
		*allow = 1;
		i++;
	}
	return i;
}

int policy_tool_edit_add(struct policy_tool *t, int argc, char **argv)
{
	int allow, i = kind_option(argc, argv, &allow);
	if (argc - i < 1 || argc - i > 2 || strncmp(argv[i], "--", 2) == 0) {
		fprintf(stderr, "embargo-policy: usage: add [--allow] NAME [REASON]\n");
		return 2;
	}
	char normal[NAME_MAXTEXT + 2];
	if (policy_tool_normal(argv[i], strlen(argv[i]), normal) < 0) {
		fprintf(stderr, "embargo-policy: add: '%s' is not a valid domain name\n", argv[i]);
		return 2;
	}
	const char *reason = argc - i == 2 ? argv[i + 1] : NULL;
	if (policy_tool_connect(t) < 0)
		return 1;
	const char *key = allow ? t->allow : t->deny;
	redisReply *r = policy_tool_cmd(t, "SADD %s %s", key, normal);
	if (!r)
		return 1;
	size_t added = r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? (size_t)r->integer : 0;
	freeReplyObject(r);
	if (reason) {
		r = policy_tool_cmd(t, "HSET %s %s %s", t->reason, normal, reason);
		if (!r)
			return 1;
		freeReplyObject(r);
	}
	printf("%s: %s %s%s\n", normal, added ? "added to" : "already in", key,
	       reason ? " (reason set)" : "");
	return policy_tool_audit(t, added, 0) < 0 ? 1 : 0;
}

int policy_tool_edit_remove(struct policy_tool *t, int argc, char **argv)
{
	int allow, first = kind_option(argc, argv, &allow);
	if (first >= argc) {
		fprintf(stderr, "embargo-policy: usage: remove [--allow] NAME...\n");
		return 2;
	}
	char (*normal)[NAME_MAXTEXT + 2] = calloc((size_t)argc, sizeof(*normal));
	if (!normal)
		return 1;
	for (int i = first; i < argc; i++)
		if (policy_tool_normal(argv[i], strlen(argv[i]), normal[i]) < 0) {
			fprintf(stderr, "embargo-policy: remove: '%s' is not a valid domain name\n",
				argv[i]);
			free(normal);
			return 2;
		}
	if (policy_tool_connect(t) < 0) {
		free(normal);
		return 1;
	}
	const char *key = allow ? t->allow : t->deny, *other = allow ? t->deny : t->allow;
	size_t removed = 0;
	int status = 0;
	for (int i = first; i < argc && status == 0; i++) {
		struct spellings s, kept, reasons = {0};
		if (find_spellings(t, key, 1, normal[i], &s) < 0) {
			spellings_free(&s);
			status = 1;
			break;
		}
		long long n = remove_all(t, "SREM", key, &s);
		/* A reason only shows in denied answers: keep it while the other kind of rule (an
		 * allow rule lifted, the deny rule still there) still needs it. */
		int still = 0;
		if (n >= 0 && allow) {
			if (find_spellings(t, other, 1, normal[i], &kept) < 0)
				n = -1;
			still = kept.count > 0;
			spellings_free(&kept);
		}
		long long h = 0;
		if (n >= 0 && !still) {
			h = find_spellings(t, t->reason, 2, normal[i], &reasons) < 0
				    ? -1
				    : remove_all(t, "HDEL", t->reason, &reasons);
		}
		if (n < 0 || h < 0) {
			status = 1;
		} else if (n == 0) {
			printf("%s: not in %s\n", normal[i], key);
		} else {
			printf("%s: removed from %s", normal[i], key);
			int other_spelling = 0;
			for (size_t k = 0; k < s.count; k++)
				other_spelling |= strcmp(s.text[k], normal[i]) != 0;
			if (other_spelling) {
				printf(" (members");
				for (size_t k = 0; k < s.count; k++)
					printf(" '%s'", s.text[k]);
				printf(")");
			}
			printf("%s\n", h > 0 ? "; reason deleted" : "");
		}
		removed += n > 0; /* Rules, not spellings. */
		spellings_free(&s);
		spellings_free(&reasons);
	}
	free(normal);
	if (policy_tool_audit(t, 0, removed) < 0)
		status = 1;
	return status;
}
