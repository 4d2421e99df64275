/* embargo-policy's shared parts: the Redis connection, scans, reading the policy keys the way
 * the daemon does (same builder calls, so the same content gives the same version), and the
 * audit and consent records. Everything is blocking: the tool does one thing and exits, so this
 * file must never be linked into the daemon. */
#include "config.h"

#include "tool/policy_tool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int policy_tool_keys(struct policy_tool *t)
{
	static const char *const suffix[] = {"deny", "allow", "reason", "accept", "audit"};
	char *keys[] = {t->deny, t->allow, t->reason, t->accept, t->audit};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if ((size_t)snprintf(keys[i], sizeof(t->deny), "%s:%s", t->prefix, suffix[i]) >=
		    sizeof(t->deny))
			return -ENAMETOOLONG;
	return 0;
}

int policy_tool_connect(struct policy_tool *t)
{
	const struct options *o = t->opts;
	struct timeval tv = {.tv_sec = 5};
	t->rc = redisConnectWithTimeout(o->redis_host, o->redis_port, tv);
	if (!t->rc || t->rc->err) {
		fprintf(stderr, "embargo-policy: cannot reach redis %s:%d: %s\n", o->redis_host,
			o->redis_port, t->rc ? t->rc->errstr : "out of memory");
		redisFree(t->rc);
		t->rc = NULL;
		return -EIO;
	}
	/* Replies of big scans take longer than a connect. */
	struct timeval rw = {.tv_sec = 60};
	redisSetTimeout(t->rc, rw);
	redisReply *r = NULL;
	if (o->redis_user[0])
		r = policy_tool_cmd(t, "AUTH %s %s", o->redis_user, o->redis_password);
	else if (o->redis_password[0])
		r = policy_tool_cmd(t, "AUTH %s", o->redis_password);
	int ok = r || !o->redis_password[0];
	freeReplyObject(r);
	if (ok && o->redis_db) {
		r = policy_tool_cmd(t, "SELECT %d", o->redis_db);
		ok = r != NULL;
		freeReplyObject(r);
	}
	return ok ? 0 : -EIO;
}

redisReply *policy_tool_cmd(struct policy_tool *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(t->rc, fmt, ap);
	va_end(ap);
	if (!r) {
		fprintf(stderr, "embargo-policy: redis: %s\n", t->rc->errstr);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		const char *sp = strchr(fmt, ' ');
		fprintf(stderr, "embargo-policy: redis refused %.*s: %s\n",
			sp ? (int)(sp - fmt) : (int)strlen(fmt), fmt, r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

int policy_tool_scan(struct policy_tool *t, const char *cmd, const char *key,
		     const char *pattern, policy_tool_scan_cb cb, void *ctx)
{
	char cursor[32] = "0";
	size_t stride = strcmp(cmd, "HSCAN") == 0 ? 2 : 1;
	do {
		const char *argv[7] = {cmd, key, cursor, "COUNT", POLICY_TOOL_SCAN_COUNT, "MATCH",
				       pattern};
		redisReply *r = redisCommandArgv(t->rc, pattern ? 7 : 5, argv, NULL);
		if (!r) {
			fprintf(stderr, "embargo-policy: redis: %s\n", t->rc->errstr);
			return -EIO;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[0]->len >= sizeof(cursor) ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			fprintf(stderr, "embargo-policy: %s %s failed: %s\n", cmd, key,
				r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			freeReplyObject(r);
			return -EIO;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
		const redisReply *items = r->element[1];
		int rc = cb(ctx, (const redisReply *const *)items->element, items->elements / stride);
		freeReplyObject(r);
		if (rc < 0)
			return rc;
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

/* Entries handed to the builder at a time, as the daemon's synchroniser does. */
#define RUN 256

struct read_key {
	policy_builder_t *b;
	enum policy_action action;
};

static int read_batch(void *ctx, const redisReply *const *items, size_t n)
{
	const struct read_key *rk = ctx;
	size_t stride = rk->action == POLICY_PASS ? 2 : 1;
	struct policy_entry e[RUN];
	for (size_t base = 0; base < n; base += RUN) {
		size_t run = n - base < RUN ? n - base : RUN;
		for (size_t i = 0; i < run; i++) {
			const redisReply *k = items[(base + i) * stride];
			const redisReply *v = stride == 2 ? items[(base + i) * 2 + 1] : NULL;
			int ok = k->type == REDIS_REPLY_STRING && (!v || v->type == REDIS_REPLY_STRING);
			e[i] = (struct policy_entry){.name = ok ? k->str : NULL,
						     .len = ok ? k->len : 0,
						     .action = rk->action,
						     .reason = v && ok ? v->str : NULL,
						     .reason_len = v && ok ? v->len : 0};
		}
		if (policy_builder_put_many(rk->b, e, run, NULL, NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

int policy_tool_read(struct policy_tool *t, const char *deny, const char *allow,
		     const char *reason, policy_t **out)
{
	policy_builder_t *b = policy_builder_new();
	if (!b) {
		fprintf(stderr, "embargo-policy: out of memory\n");
		return -ENOMEM;
	}
	struct read_key rk[3] = {{b, POLICY_DENY}, {b, POLICY_ALLOW}, {b, POLICY_PASS}};
	const char *keys[3] = {deny, allow, reason};
	int rc = 0;
	for (int k = 0; k < 3 && rc == 0; k++)
		rc = policy_tool_scan(t, k == 2 ? "HSCAN" : "SSCAN", keys[k], NULL, read_batch,
				      &rk[k]);
	if (rc < 0) {
		if (rc == -ENOMEM)
			fprintf(stderr, "embargo-policy: out of memory\n");
		policy_builder_free(b);
		return rc;
	}
	*out = policy_build(b, POLICY_SOURCE_REDIS);
	if (!*out) {
		fprintf(stderr, "embargo-policy: out of memory\n");
		return -ENOMEM;
	}
	return 0;
}

int policy_tool_append_audit(struct policy_tool *t, size_t added, size_t removed,
			     const struct digest *digest)
{
	char v[DIGEST_SHORT_HEX + 1], full[DIGEST_HEX + 1], at[24], a[24], r[24];
	digest_short(digest, v);
	digest_hex(digest, full);
	snprintf(at, sizeof(at), "%lld", (long long)time(NULL));
	snprintf(a, sizeof(a), "%zu", added);
	snprintf(r, sizeof(r), "%zu", removed);
	const char *argv[] = {"XADD", t->audit, "MAXLEN", "~", POLICY_TOOL_AUDIT_MAX, "*",
			      "time", at, "by", t->by, "command", t->command,
			      "added", a, "removed", r, "why", t->why, "version", v, "digest", full};
	return redisAppendCommandArgv(t->rc, 22, argv, NULL) == REDIS_OK ? 0 : -ENOMEM;
}

static void print_names(const char *what, const struct guard_names *g)
{
	if (g->count == 0)
		return;
	printf("  %-15s %zu:", what, g->count);
	for (size_t i = 0; i < g->count && i < GUARD_NAMES; i++)
		printf(" %s", g->names[i]);
	printf("%s\n", g->count > GUARD_NAMES ? " ..." : "");
}

void policy_tool_print_diff(const struct guard_diff *d)
{
	print_names("deny added", &d->deny_added);
	print_names("deny removed", &d->deny_removed);
	print_names("allow added", &d->allow_added);
	print_names("allow removed", &d->allow_removed);
	print_names("reason changed", &d->reason_changed);
	if (!d->deny_added.count && !d->deny_removed.count && !d->allow_added.count &&
	    !d->allow_removed.count && !d->reason_changed.count)
		printf("  no change\n");
}

int policy_tool_lifts(const policy_t *before, const policy_t *after, const struct guard_diff *d,
		      struct guard_names *lifted, size_t *allowed)
{
	guard_t *g = guard_new(before, 0);
	if (!g) {
		fprintf(stderr, "embargo-policy: out of memory\n");
		return -ENOMEM;
	}
	guard_lifts(g, after, before, d, lifted);
	guard_free(g);
	const struct guard_limits l = {.percent = GUARD_PERCENT, .count = GUARD_COUNT};
	size_t a = policy_stats(before)->deny, b = policy_stats(after)->deny;
	*allowed = guard_allowed(&l, a < b ? a : b);
	return 0;
}

int policy_tool_audit(struct policy_tool *t, size_t added, size_t removed)
{
	policy_t *p;
	int rc = policy_tool_read(t, t->deny, t->allow, t->reason, &p);
	if (rc < 0)
		return rc;
	rc = policy_tool_append_audit(t, added, removed, &policy_stats(p)->digest);
	policy_free(p);
	redisReply *r = NULL;
	if (rc == 0 && redisGetReply(t->rc, (void **)&r) != REDIS_OK)
		rc = -EIO;
	if (rc == 0 && r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "embargo-policy: redis refused XADD %s: %s\n", t->audit, r->str);
		rc = -EIO;
	} else if (rc < 0) {
		fprintf(stderr, "embargo-policy: cannot write the audit entry: %s\n",
			t->rc->err ? t->rc->errstr : strerror(-rc));
	}
	freeReplyObject(r);
	return rc;
}

int policy_tool_exec_replies(struct policy_tool *t, size_t queued)
{
	int rc = 0;
	for (size_t i = 0; i < queued + 2; i++) {
		redisReply *r;
		if (redisGetReply(t->rc, (void **)&r) != REDIS_OK) {
			fprintf(stderr, "embargo-policy: redis: %s\n", t->rc->errstr);
			return -EIO;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			/* A command refused while queueing (an ACL, say) aborts the EXEC. */
			if (rc == 0)
				fprintf(stderr, "embargo-policy: redis refused the change: %s\n", r->str);
			rc = -EIO;
		} else if (i == queued + 1 && r->type == REDIS_REPLY_NIL && rc == 0) {
			rc = -EAGAIN;
		} else if (i == queued + 1 && r->type == REDIS_REPLY_ARRAY) {
			for (size_t k = 0; k < r->elements; k++)
				if (r->element[k]->type == REDIS_REPLY_ERROR && rc == 0) {
					fprintf(stderr, "embargo-policy: redis refused part of the "
							"change: %s\n", r->element[k]->str);
					rc = -EIO;
				}
		}
		freeReplyObject(r);
	}
	return rc;
}

int policy_tool_glob(const char *name, const char *tail, char *buf, size_t cap)
{
	size_t o = 0;
	for (const char *c = name; *c; c++) {
		char tmp[5];
		int n;
		if (*c >= 'a' && *c <= 'z')
			n = snprintf(tmp, sizeof(tmp), "[%c%c]", *c, *c - 'a' + 'A');
		else if (strchr("*?[]\\^-", *c))
			n = snprintf(tmp, sizeof(tmp), "\\%c", *c);
		else
			n = snprintf(tmp, sizeof(tmp), "%c", *c);
		if (o + (size_t)n >= cap)
			return -ENOSPC;
		memcpy(buf + o, tmp, (size_t)n);
		o += (size_t)n;
	}
	if (o + strlen(tail) >= cap)
		return -ENOSPC;
	memcpy(buf + o, tail, strlen(tail) + 1);
	return 0;
}

int policy_tool_normal(const char *text, size_t len, char *buf)
{
	struct name n;
	if (name_from_text(&n, text, len) < 0 || name_to_text(&n, buf, NAME_MAXTEXT + 2) < 0)
		return -EINVAL;
	return 0;
}
