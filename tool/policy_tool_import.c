/* embargo-policy import and restore: whole lists into Redis. A plain import adds members
 * (pipelined, many per command) and never removes one; --replace and restore write temporary
 * keys first and then swap them in with one MULTI that also writes the consent to the shrink it
 * causes and the audit entry, so readers see the old policy or the new one, never a mix. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy/guard.h"
#include "policy/list.h"
#include "tool/policy_tool.h"
#include "resolver/sync/snapshot.h"

#define BATCH 1000             /* Members per SADD, field-value pairs per HSET. */
#define IN_FLIGHT 64           /* Commands sent before their replies are read. */
#define PROGRESS_EVERY 100000  /* Lines. */
#define INVALID_SHOWN 100

/* One Redis command with many arguments, sent when full. Batches on one connection share the
 * count of replies not read yet. */
struct batch {
	redisContext *rc;
	size_t *pending;
	int pairs;          /* HSET: arguments come in field-value pairs. */
	const char **argv;  /* argv[0] command, argv[1] key, then the collected arguments. */
	size_t *argl;
	size_t argc;
	char key[128];
};

static int batch_init(struct batch *b, redisContext *rc, size_t *pending, const char *cmd,
		      const char *key, int pairs)
{
	memset(b, 0, sizeof(*b));
	b->rc = rc;
	b->pending = pending;
	b->pairs = pairs;
	snprintf(b->key, sizeof(b->key), "%s", key);
	size_t cap = 2 + (size_t)BATCH * (pairs ? 2 : 1);
	b->argv = calloc(cap, sizeof(*b->argv));
	b->argl = calloc(cap, sizeof(*b->argl));
	if (!b->argv || !b->argl)
		return -ENOMEM;
	b->argv[0] = cmd;
	b->argl[0] = strlen(cmd);
	b->argv[1] = b->key;
	b->argl[1] = strlen(b->key);
	b->argc = 2;
	return 0;
}

static void batch_clear(struct batch *b)
{
	for (size_t i = 2; i < b->argc; i++)
		free((char *)b->argv[i]);
	b->argc = 2;
}

static void batch_free(struct batch *b)
{
	if (b->argv)
		batch_clear(b);
	free(b->argv);
	free(b->argl);
}

/* Read the replies of everything sent on the connection. */
static int batch_drain(struct batch *b)
{
	int rc = 0;
	for (; *b->pending > 0; (*b->pending)--) {
		redisReply *reply;
		if (redisGetReply(b->rc, (void **)&reply) != REDIS_OK) {
			fprintf(stderr, "embargo-policy: redis: %s\n", b->rc->errstr);
			return -EIO;
		}
		if (reply->type == REDIS_REPLY_ERROR && rc == 0) {
			fprintf(stderr, "embargo-policy: redis refused a write: %s\n", reply->str);
			rc = -EIO;
		}
		freeReplyObject(reply);
	}
	return rc;
}

static int batch_flush(struct batch *b)
{
	if (b->argc == 2)
		return 0;
	int rc = redisAppendCommandArgv(b->rc, (int)b->argc, b->argv, b->argl);
	batch_clear(b);
	if (rc != REDIS_OK)
		return -ENOMEM;
	if (++*b->pending >= IN_FLIGHT)
		return batch_drain(b);
	return 0;
}

static int batch_add(struct batch *b, const char *s, size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, s, len);
	copy[len] = '\0';
	b->argv[b->argc] = copy;
	b->argl[b->argc] = len;
	b->argc++;
	if (b->argc - 2 >= (size_t)BATCH * (b->pairs ? 2 : 1))
		return batch_flush(b);
	return 0;
}

struct import {
	const char *file;
	size_t pending;
	struct batch members, reasons;
	size_t entries, with_reason, invalid, lines;
	int progress;
};

static int on_entry(void *ctx, size_t line, const char *name, const char *reason,
		    size_t reason_len)
{
	struct import *im = ctx;
	int rc = batch_add(&im->members, name, strlen(name));
	if (rc == 0 && reason_len > 0) {
		rc = batch_add(&im->reasons, name, strlen(name));
		if (rc == 0)
			rc = batch_add(&im->reasons, reason, reason_len);
		im->with_reason++;
	}
	im->entries++;
	if (im->progress && line / PROGRESS_EVERY != im->lines / PROGRESS_EVERY)
		fprintf(stderr, "%s: %zu lines...\n", im->file, line);
	im->lines = line;
	return rc;
}

static void on_invalid(void *ctx, size_t line, const char *text, size_t len)
{
	struct import *im = ctx;
	if (im->invalid++ < INVALID_SHOWN)
		fprintf(stderr, "%s:%zu: invalid entry skipped: %.*s\n", im->file, line,
			(int)(len > 200 ? 200 : len), text);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap) {
			if (ferror(f)) {
				free(buf);
				buf = NULL;
			}
			break;
		}
		char *b = realloc(buf, cap * 2);
		if (!b) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = b;
		cap *= 2;
	}
	if (f != stdin)
		fclose(f);
	*len = n;
	return buf;
}

/* Add the entries of file to the set `members` and their reasons to the hash `reasons`. */
static int import_file(struct policy_tool *t, const char *members, const char *reasons,
		       const char *file, struct import *im)
{
	size_t len;
	char *text = read_file(file, &len);
	if (!text) {
		fprintf(stderr, "embargo-policy: cannot read %s: %s\n", file, strerror(errno));
		return -EIO;
	}
	*im = (struct import){.file = file, .progress = len > (4u << 20)};
	int status = batch_init(&im->members, t->rc, &im->pending, "SADD", members, 0);
	if (status == 0)
		status = batch_init(&im->reasons, t->rc, &im->pending, "HSET", reasons, 1);
	if (status == 0) {
		long bad = list_parse(text, len, on_entry, on_invalid, im);
		status = bad < 0 ? (int)bad : 0;
	}
	if (status == 0)
		status = batch_flush(&im->members);
	if (status == 0)
		status = batch_flush(&im->reasons);
	if (status == 0)
		status = batch_drain(&im->members);
	if (status == 0 && im->invalid > INVALID_SHOWN)
		fprintf(stderr, "%s: %zu more invalid entries not shown\n", file,
			im->invalid - INVALID_SHOWN);
	if (status == -ENOMEM)
		fprintf(stderr, "embargo-policy: out of memory\n");
	batch_free(&im->members);
	batch_free(&im->reasons);
	free(text);
	return status;
}

static long long set_size(struct policy_tool *t, const char *key)
{
	redisReply *r = policy_tool_cmd(t, "SCARD %s", key);
	long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
	freeReplyObject(r);
	return n;
}

/* Temporary keys of this process: deny, allow, reason. */
struct temp {
	char key[3][128];
};

static void temp_names(struct policy_tool *t, struct temp *tmp)
{
	const char *real[3] = {t->deny, t->allow, t->reason};
	for (int k = 0; k < 3; k++)
		snprintf(tmp->key[k], sizeof(tmp->key[k]), "%s.tmp.%ld", real[k], (long)getpid());
}

static void temp_drop(struct policy_tool *t, const struct temp *tmp)
{
	freeReplyObject(policy_tool_cmd(t, "DEL %s %s %s", tmp->key[0], tmp->key[1], tmp->key[2]));
}

/* Make the real keys of `parts` (bit k: deny, allow, reason) hold what the temporary keys hold
 * (deleted when their temporary key does not exist), in one transaction with the audit entry.
 * The diff is printed first; a change that lifts more denied names than the default
 * --max-shrink allows is refused without --yes, and even then no consent is written: the
 * resolvers hold it until an approver runs `embargo-policy accept`. */
static int replace(struct policy_tool *t, unsigned parts, const struct temp *tmp,
		   const char *what, struct digest *digest)
{
	const char *real[3] = {t->deny, t->allow, t->reason};
	const char *src[3];
	policy_t *before = NULL, *after = NULL;
	int rc = 0;
	/* The keys kept go into the version: if one changes before EXEC, nothing is written. */
	for (int k = 0; k < 3 && rc == 0; k++) {
		src[k] = parts & (1u << k) ? tmp->key[k] : real[k];
		if (!(parts & (1u << k))) {
			redisReply *r = policy_tool_cmd(t, "WATCH %s", real[k]);
			rc = r ? 0 : -EIO;
			freeReplyObject(r);
		}
	}
	if (rc == 0)
		rc = policy_tool_read(t, real[0], real[1], real[2], &before);
	if (rc == 0)
		rc = policy_tool_read(t, src[0], src[1], src[2], &after);
	int exists[3] = {0, 0, 0};
	for (int k = 0; k < 3 && rc == 0; k++) {
		if (!(parts & (1u << k)))
			continue;
		redisReply *r = policy_tool_cmd(t, "EXISTS %s", tmp->key[k]);
		rc = r && r->type == REDIS_REPLY_INTEGER ? 0 : -EIO;
		exists[k] = rc == 0 && r->integer > 0;
		freeReplyObject(r);
	}
	if (rc < 0)
		goto done;
	struct guard_diff d;
	guard_diff(before, after, &d);
	size_t added = d.deny_added.count + d.allow_added.count;
	size_t removed = d.deny_removed.count + d.allow_removed.count;
	const struct policy_stats *st = policy_stats(after);
	printf("%s against what redis holds:\n", what);
	policy_tool_print_diff(&d);
	struct guard_names lifted;
	size_t allowed;
	rc = policy_tool_lifts(before, after, &d, &lifted, &allowed);
	fflush(stdout); /* The diff before what stderr says of it. */
	if (rc == 0 && lifted.count > allowed && !t->yes) {
		fprintf(stderr, "embargo-policy: %s would lift %zu denied names, more than --max-shrink "
				"allows at once (%zu); nothing written. Resolvers would hold it until an "
				"approver runs embargo-policy accept; to write it anyway, add --yes\n",
			what, lifted.count, allowed);
		rc = -EPERM;
	}
	if (rc < 0)
		goto done;
	size_t queued = 0;
	redisAppendCommand(t->rc, "MULTI");
	for (int k = 0; k < 3; k++) {
		if (!(parts & (1u << k)))
			continue;
		if (exists[k])
			redisAppendCommand(t->rc, "RENAME %s %s", tmp->key[k], real[k]);
		else
			redisAppendCommand(t->rc, "DEL %s", real[k]);
		queued++;
	}
	rc = policy_tool_append_audit(t, added, removed, &st->digest);
	queued += 1;
	redisAppendCommand(t->rc, "EXEC");
	if (rc == 0)
		rc = policy_tool_exec_replies(t, queued);
	if (rc == -EAGAIN)
		fprintf(stderr, "embargo-policy: the policy changed in redis while %s was being "
				"written; nothing changed, run it again\n", what);
	if (rc == 0) {
		char v[DIGEST_SHORT_HEX + 1];
		*digest = st->digest;
		digest_short(&st->digest, v);
		printf("%s: redis now holds %zu deny, %zu allow rules, %zu reasons (+%zu -%zu); "
		       "version %s\n", what, st->deny, st->allow, st->reasons, added, removed, v);
		if (lifted.count > allowed)
			printf("resolvers hold it until an approver runs: embargo-policy accept %s\n", v);
	}
done:
	if (rc < 0) {
		/* A failed MULTI leaves the connection usable; drop what was staged. */
		freeReplyObject(redisCommand(t->rc, "UNWATCH"));
		temp_drop(t, tmp);
	}
	policy_free(before);
	policy_free(after);
	return rc;
}

int policy_tool_import_run(struct policy_tool *t, int argc, char **argv)
{
	int allow = 0, replace_all = 0, i = 0;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--allow") == 0)
			allow = 1;
		else if (strcmp(argv[i], "--replace") == 0)
			replace_all = 1;
		else if (strcmp(argv[i], "--yes") == 0)
			t->yes = 1;
		else {
			fprintf(stderr, "embargo-policy: import: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc || (replace_all && argc - i != 1)) {
		fprintf(stderr, "embargo-policy: import needs %s\n",
			replace_all ? "exactly one FILE with --replace" : "at least one FILE");
		return 2;
	}
	if (policy_tool_connect(t) < 0)
		return 1;
	const char *kind = allow ? "allow" : "deny";
	const char *key = allow ? t->allow : t->deny;
	struct import im;
	if (replace_all) {
		struct temp tmp;
		temp_names(t, &tmp);
		temp_drop(t, &tmp);
		int k = allow ? 1 : 0;
		int rc = import_file(t, tmp.key[k], tmp.key[2], argv[i], &im);
		if (rc < 0) {
			temp_drop(t, &tmp);
			return 1;
		}
		printf("%s: %zu names for %s (%zu with reasons), %zu invalid lines skipped\n",
		       argv[i], im.entries, kind, im.with_reason, im.invalid);
		struct digest digest;
		return replace(t, 1u << k | 4u, &tmp, argv[i], &digest) < 0 ? 1 : 0;
	}
	long long before = set_size(t, key);
	if (before < 0)
		return 1;
	for (; i < argc; i++) {
		if (import_file(t, key, t->reason, argv[i], &im) < 0)
			return 1;
		printf("%s: %zu names added to %s (%zu with reasons), %zu invalid lines skipped\n",
		       argv[i], im.entries, key, im.with_reason, im.invalid);
		fflush(stdout); /* In order with the next file's messages on stderr. */
	}
	long long after = set_size(t, key);
	if (after < 0)
		return 1;
	return policy_tool_audit(t, after > before ? (size_t)(after - before) : 0, 0) < 0 ? 1 : 0;
}

/* Write p's rules and reasons to the temporary keys. */
static int stage_policy(struct policy_tool *t, const policy_t *p, const struct temp *tmp)
{
	size_t pending = 0;
	struct batch deny, allow, reason;
	int rc = batch_init(&deny, t->rc, &pending, "SADD", tmp->key[0], 0);
	if (rc == 0)
		rc = batch_init(&allow, t->rc, &pending, "SADD", tmp->key[1], 0);
	if (rc == 0)
		rc = batch_init(&reason, t->rc, &pending, "HSET", tmp->key[2], 1);
	size_t cursor = 0;
	struct policy_rule r;
	while (rc == 0 && policy_rule_next(p, &cursor, &r)) {
		char name[NAME_MAXTEXT + 2];
		int len = name_to_text(&r.name, name, sizeof(name));
		if (len < 0)
			continue;
		if (r.parts & POLICY_PART_DENY)
			rc = batch_add(&deny, name, (size_t)len);
		if (rc == 0 && (r.parts & POLICY_PART_ALLOW))
			rc = batch_add(&allow, name, (size_t)len);
		if (rc == 0 && r.reason) {
			rc = batch_add(&reason, name, (size_t)len);
			if (rc == 0)
				rc = batch_add(&reason, r.reason, strlen(r.reason));
		}
	}
	if (rc == 0)
		rc = batch_flush(&deny);
	if (rc == 0)
		rc = batch_flush(&allow);
	if (rc == 0)
		rc = batch_flush(&reason);
	if (rc == 0 || pending > 0) {
		int drained = batch_drain(&deny);
		rc = rc ? rc : drained;
	}
	if (rc == -ENOMEM)
		fprintf(stderr, "embargo-policy: out of memory\n");
	batch_free(&deny);
	batch_free(&allow);
	batch_free(&reason);
	return rc;
}

int policy_tool_import_restore(struct policy_tool *t, int argc, char **argv)
{
	int force = 0, i = 0;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--force") == 0) {
			force = 1;
		} else if (strcmp(argv[i], "--yes") == 0) {
			t->yes = 1;
		} else {
			fprintf(stderr, "embargo-policy: restore: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if (argc - i > 1) {
		fprintf(stderr, "embargo-policy: restore takes one SNAPSHOT file\n");
		return 2;
	}
	const char *path = i < argc ? argv[i] : POLICY_TOOL_SNAPSHOT;
	char err[512];
	policy_t *p = NULL;
	struct codec_meta meta;
	int rc = snapshot_load(path, &p, &meta, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "embargo-policy: %s\n", err);
		return 1;
	}
	if (meta.prefix[0] && strcmp(meta.prefix, t->prefix) != 0 && !force) {
		fprintf(stderr, "embargo-policy: %s was saved from redis prefix '%s', not '%s' "
				"(--redis-prefix); restore --force writes it anyway\n", path,
			meta.prefix, t->prefix);
		policy_free(p);
		return 1;
	}
	if (policy_tool_connect(t) < 0) {
		policy_free(p);
		return 1;
	}
	struct temp tmp;
	temp_names(t, &tmp);
	temp_drop(t, &tmp);
	struct digest digest;
	rc = stage_policy(t, p, &tmp);
	if (rc == 0)
		rc = replace(t, 7u, &tmp, path, &digest);
	else
		temp_drop(t, &tmp);
	if (rc == 0 && !digest_is_equal(&digest, &policy_stats(p)->digest)) {
		char a[DIGEST_SHORT_HEX + 1], b[DIGEST_SHORT_HEX + 1];
		digest_short(&digest, a);
		digest_short(&policy_stats(p)->digest, b);
		fprintf(stderr, "embargo-policy: warning: redis holds version %s, the snapshot was "
				"version %s\n", a, b);
	}
	policy_free(p);
	return rc < 0 ? 1 : 0;
}
