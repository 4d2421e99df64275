/* embargo-policy: the tool for the people who edit the list. `import` loads lists into Redis
 * (pipelined, many members per command, progress for large files); `explain` says which rule
 * decides a name, deciding with the daemon's own policy code over just the rules on the name's
 * path, so it cannot disagree with the daemon. */
#include "config.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "resolver/options.h"

#define BATCH 1000             /* Members per SADD, field-value pairs per HSET. */
#define PROGRESS_EVERY 100000  /* Lines. */
#define INVALID_SHOWN 100

#define USAGE \
	"Usage: embargo-policy [--redis URL] [--redis-prefix NAME] COMMAND ...\n" \
	"Edit and inspect the policy embargo enforces (kept in Redis).\n\n" \
	"  import [--allow] FILE...  add the names in FILE to NAME:deny (or NAME:allow), reasons\n" \
	"                            to NAME:reason; FILE holds \"domain TAB reason\" lines, plain\n" \
	"                            domains, or hosts-file lines (\"0.0.0.0 domain\"); '-' is stdin\n" \
	"  explain NAME...           which rule decides NAME, and why\n\n" \
	"  --redis URL               redis://[:PASSWORD@]HOST[:PORT][/DB] (default redis://127.0.0.1:6379)\n" \
	"  --redis-prefix NAME       key prefix (default embargo)\n"

/* One Redis command with many arguments, sent when full; replies are read in bounded groups. */
struct batch {
	redisContext *rc;
	int pairs;          /* HSET: arguments come in field-value pairs. */
	const char **argv;  /* argv[0] command, argv[1] key, then the collected arguments. */
	size_t *argl;
	size_t argc;
	size_t pending;     /* Commands sent whose replies are not read yet. */
	char key[96];
};

struct import {
	const char *file;
	struct batch members, reasons;
	size_t entries, with_reason, invalid, lines;
	int progress;
};

static int batch_init(struct batch *b, redisContext *rc, const char *cmd, const char *key,
		      int pairs)
{
	memset(b, 0, sizeof(*b));
	b->rc = rc;
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

/* Read the replies of everything sent. */
static int batch_drain(struct batch *b)
{
	for (; b->pending > 0; b->pending--) {
		redisReply *reply;
		if (redisGetReply(b->rc, (void **)&reply) != REDIS_OK) {
			fprintf(stderr, "embargo-policy: redis: %s\n", b->rc->errstr);
			return -EIO;
		}
		int err = reply->type == REDIS_REPLY_ERROR;
		if (err)
			fprintf(stderr, "embargo-policy: redis refused %s %s: %s\n", b->argv[0], b->key,
				reply->str);
		freeReplyObject(reply);
		if (err)
			return -EIO;
	}
	return 0;
}

static int batch_flush(struct batch *b)
{
	if (b->argc == 2)
		return 0;
	int rc = redisAppendCommandArgv(b->rc, (int)b->argc, b->argv, b->argl);
	batch_clear(b);
	if (rc != REDIS_OK)
		return -ENOMEM;
	/* Keep a bounded number of commands in flight. */
	if (++b->pending >= 64)
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

static int import_file(redisContext *rc, const char *prefix, int allow, const char *file)
{
	size_t len;
	char *text = read_file(file, &len);
	if (!text) {
		fprintf(stderr, "embargo-policy: cannot read %s: %s\n", file, strerror(errno));
		return -EIO;
	}
	struct import im = {.file = file, .progress = len > (4u << 20)};
	char key[96];
	snprintf(key, sizeof(key), "%s:%s", prefix, allow ? "allow" : "deny");
	int status = batch_init(&im.members, rc, "SADD", key, 0);
	snprintf(key, sizeof(key), "%s:reason", prefix);
	if (status == 0)
		status = batch_init(&im.reasons, rc, "HSET", key, 1);
	if (status == 0) {
		long bad = policy_list_parse(text, len, on_entry, on_invalid, &im);
		status = bad < 0 ? (int)bad : 0;
	}
	if (status == 0)
		status = batch_flush(&im.members);
	if (status == 0)
		status = batch_flush(&im.reasons);
	/* Replies arrive in the order sent, whichever batch sent them. */
	if (status == 0) {
		im.members.pending += im.reasons.pending;
		im.reasons.pending = 0;
		status = batch_drain(&im.members);
	}
	if (status == 0) {
		if (im.invalid > INVALID_SHOWN)
			fprintf(stderr, "%s: %zu more invalid entries not shown\n", file,
				im.invalid - INVALID_SHOWN);
		printf("%s: %zu names added to %s:%s (%zu with reasons), %zu invalid lines skipped\n",
		       file, im.entries, prefix, allow ? "allow" : "deny", im.with_reason, im.invalid);
	}
	batch_free(&im.members);
	batch_free(&im.reasons);
	free(text);
	return status;
}

/* Decide name over the rules on its path, read from Redis. */
static int explain(redisContext *rc, const char *prefix, const char *text)
{
	struct name n;
	if (name_from_text(&n, text, strlen(text)) < 0) {
		printf("%s: not a valid domain name\n", text);
		return 1;
	}
	/* Every ancestor on label boundaries, the root included. */
	char names[128][NAME_MAXTEXT + 2];
	unsigned count = 0;
	for (unsigned depth = 0; depth <= n.nlabels; depth++)
		name_suffix_to_text(&n, depth, names[count++], sizeof(names[0]));
	const char *kinds[] = {"deny", "allow"};
	for (unsigned i = 0; i < count; i++) {
		for (int k = 0; k < 2; k++)
			redisAppendCommand(rc, "SISMEMBER %s:%s %s", prefix, kinds[k], names[i]);
		redisAppendCommand(rc, "HGET %s:reason %s", prefix, names[i]);
	}
	redisAppendCommand(rc, "EXISTS %s:deny %s:allow %s:reason", prefix, prefix, prefix);
	policy_builder_t *b = policy_builder_new();
	int status = b ? 0 : 1, path = 0;
	for (unsigned i = 0; i < count; i++) {
		redisReply *r[3];
		for (int k = 0; k < 3; k++)
			if (redisGetReply(rc, (void **)&r[k]) != REDIS_OK) {
				fprintf(stderr, "embargo-policy: redis: %s\n", rc->errstr);
				policy_builder_free(b);
				return 1;
			}
		int deny = r[0]->type == REDIS_REPLY_INTEGER && r[0]->integer == 1;
		int allow = r[1]->type == REDIS_REPLY_INTEGER && r[1]->integer == 1;
		if (b && deny)
			policy_builder_add(b, POLICY_DENY, names[i], strlen(names[i]));
		if (b && allow)
			policy_builder_add(b, POLICY_ALLOW, names[i], strlen(names[i]));
		if (b && r[2]->type == REDIS_REPLY_STRING)
			policy_builder_set_reason(b, names[i], strlen(names[i]), r[2]->str, r[2]->len);
		if (deny || allow) {
			if (!path++)
				printf("%s: rules on its path, most general first:\n", text);
			printf("  %-40s %s%s%s\n", names[i], deny ? "deny" : "", deny && allow ? "+" : "",
			       allow ? "allow" : "");
		}
		for (int k = 0; k < 3; k++)
			freeReplyObject(r[k]);
	}
	redisReply *exists;
	if (redisGetReply(rc, (void **)&exists) != REDIS_OK) {
		policy_builder_free(b);
		return 1;
	}
	if (exists->type == REDIS_REPLY_INTEGER && exists->integer == 0)
		printf("note: redis holds none of %s:deny, %s:allow, %s:reason; embargo enforces its "
		       "snapshot or bundled list instead\n", prefix, prefix, prefix);
	freeReplyObject(exists);
	policy_t *p = b ? policy_build(b, POLICY_SOURCE_REDIS) : NULL;
	if (!p)
		return 1;
	struct policy_verdict v;
	policy_lookup(p, &n, &v);
	char rule[NAME_MAXTEXT + 2];
	name_suffix_to_text(&n, v.depth, rule, sizeof(rule));
	if (v.action == POLICY_DENY)
		printf("%s: DENIED by %s:deny member '%s'\n  reason: %s\n", text, prefix, rule,
		       v.reason ? v.reason : "(none; answers say \"denied by policy: <rule>\")");
	else if (v.action == POLICY_ALLOW)
		printf("%s: ALLOWED by %s:allow member '%s' (the most specific rule wins)\n", text,
		       prefix, rule);
	else
		printf("%s: no rule applies; forwarded to the upstream\n", text);
	policy_free(p);
	return status;
}

int main(int argc, char **argv)
{
	struct options o;
	memset(&o, 0, sizeof(o));
	if (options_parse_redis_url(&o, "redis://127.0.0.1:6379") < 0)
		return 1;
	const char *prefix = "embargo";
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			fputs(USAGE, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("embargo-policy %s\n", PACKAGE_VERSION);
			return 0;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "embargo-policy: %s needs a value\n", argv[i]);
			return 2;
		}
		if (strcmp(argv[i], "--redis") == 0) {
			if (options_parse_redis_url(&o, argv[++i]) < 0) {
				fprintf(stderr, "embargo-policy: --redis: expected "
						"redis://[:PASSWORD@]HOST[:PORT][/DB], got '%s'\n", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--redis-prefix") == 0) {
			prefix = argv[++i];
		} else {
			fprintf(stderr, "embargo-policy: unknown option '%s' (see --help)\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc || (strcmp(argv[i], "import") != 0 && strcmp(argv[i], "explain") != 0)) {
		fputs(USAGE, stderr);
		return 2;
	}
	const char *cmd = argv[i++];
	int allow = 0;
	if (strcmp(cmd, "import") == 0 && i < argc && strcmp(argv[i], "--allow") == 0) {
		allow = 1;
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "embargo-policy: %s needs at least one %s\n", cmd,
			strcmp(cmd, "import") == 0 ? "FILE" : "NAME");
		return 2;
	}

	struct timeval tv = {.tv_sec = 5};
	redisContext *rc = redisConnectWithTimeout(o.redis_host, o.redis_port, tv);
	if (!rc || rc->err) {
		fprintf(stderr, "embargo-policy: cannot reach redis %s:%d: %s\n", o.redis_host,
			o.redis_port, rc ? rc->errstr : "out of memory");
		redisFree(rc);
		return 1;
	}
	int status = 0;
	redisReply *reply = NULL;
	if (o.redis_password[0])
		reply = redisCommand(rc, "AUTH %s", o.redis_password);
	if (o.redis_password[0] && (!reply || reply->type == REDIS_REPLY_ERROR))
		status = 1;
	freeReplyObject(reply);
	reply = NULL;
	if (status == 0 && o.redis_db) {
		reply = redisCommand(rc, "SELECT %d", o.redis_db);
		if (!reply || reply->type == REDIS_REPLY_ERROR)
			status = 1;
		freeReplyObject(reply);
	}
	if (status) {
		fprintf(stderr, "embargo-policy: redis refused AUTH or SELECT\n");
		redisFree(rc);
		return 1;
	}
	for (; i < argc && status == 0; i++) {
		if (strcmp(cmd, "import") == 0)
			status = import_file(rc, prefix, allow, argv[i]) < 0 ? 1 : 0;
		else
			status = explain(rc, prefix, argv[i]);
	}
	redisFree(rc);
	return status;
}
