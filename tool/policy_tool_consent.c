/* embargo-policy accept and keygen: consents bound to one transition. accept names the version
 * the operator was shown, refuses when Redis holds anything else, prints what the transition
 * lifts, and writes a consent that names both digests, expires, carries a fresh nonce (each
 * resolver uses it once) and, with --sign, an Ed25519 signature the resolvers check against
 * --consent-key. keygen makes that key pair. It never writes the policy keys (only PREFIX:accept
 * and the audit), and keygen never overwrites a file. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "policy/list.h"
#include "policy/consent.h"
#include "tool/policy_tool.h"
#include "resolver/sync/snapshot.h"

#define ACCEPT_USAGE \
	"embargo-policy: usage: accept [--sign PRIVATE-KEY] [--from SNAPSHOT|DIGEST|bundled] " \
	"[--ttl DURATION] [--why TEXT] VERSION\n"

static int random_bytes(uint8_t *b, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(b + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		got += (size_t)r;
	}
	return 0;
}

static int read_key(const char *path, uint8_t *key, bool want_private)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "embargo-policy: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	char text[256];
	size_t n = fread(text, 1, sizeof(text), f);
	fclose(f);
	bool is_private = false;
	if (n == sizeof(text) || consent_key_parse(text, n, key, &is_private) < 0 ||
	    is_private != want_private) {
		fprintf(stderr, "embargo-policy: %s is not an embargo %s consent key\n", path,
			want_private ? "private" : "public");
		return -EINVAL;
	}
	return 0;
}

/* Seconds of "30m", "24h", "7d" or plain seconds; 0 on error. */
static int64_t parse_ttl(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	long long unit = !*end || !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60
			 : !strcmp(end, "h") ? 3600 : !strcmp(end, "d") ? 86400 : 0;
	if (v <= 0 || !unit || v > CONSENT_TTL_MAX / unit)
		return 0;
	return v * unit;
}

/* The policy the transition starts from: a digest given in full, or a snapshot an instance
 * wrote (its rules are then diffed). */
static int transition_from(struct policy_tool *t, const char *from, struct digest *d,
			   policy_t **snap)
{
	*snap = NULL;
	if (strlen(from) == DIGEST_HEX && digest_parse(from, DIGEST_HEX, d) == 0)
		return 0;
	if (strcmp(from, "bundled") == 0) {
		/* A fresh instance (no snapshot yet) enforces the list compiled into it. */
		*snap = list_bundled();
		if (!*snap) {
			fprintf(stderr, "embargo-policy: out of memory\n");
			return -ENOMEM;
		}
		*d = policy_stats(*snap)->digest;
		return 0;
	}
	char err[512];
	struct codec_meta meta;
	if (snapshot_load(from, snap, &meta, err, sizeof(err)) < 0) {
		fprintf(stderr, "embargo-policy: %s\nembargo-policy: the consent must name the policy "
				"the resolvers enforce now: give --from with the snapshot an instance "
				"saved, or its digest (64 hex digits)\n", err);
		return -EINVAL;
	}
	if (strcmp(meta.prefix, t->prefix) != 0 || meta.db != t->opts->redis_db) {
		fprintf(stderr, "embargo-policy: %s was saved from prefix '%s' db %d, not '%s' db %d\n",
			from, meta.prefix, meta.db, t->prefix, t->opts->redis_db);
		policy_free(*snap);
		*snap = NULL;
		return -EINVAL;
	}
	*d = policy_stats(*snap)->digest;
	return 0;
}

int policy_tool_consent_accept(struct policy_tool *t, int argc, char **argv)
{
	const char *sign = NULL, *from_arg = POLICY_TOOL_SNAPSHOT, *version = NULL;
	int64_t ttl = CONSENT_TTL_DEFAULT;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--why") == 0 && i + 1 < argc) {
			t->why = argv[++i];
		} else if (strcmp(argv[i], "--sign") == 0 && i + 1 < argc) {
			sign = argv[++i];
		} else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
			from_arg = argv[++i];
		} else if (strcmp(argv[i], "--ttl") == 0 && i + 1 < argc) {
			if (!(ttl = parse_ttl(argv[++i]))) {
				fprintf(stderr, "embargo-policy: --ttl: a duration up to 7d, such as 24h\n");
				return 2;
			}
		} else if (argv[i][0] != '-' && !version) {
			version = argv[i];
		} else {
			fprintf(stderr, ACCEPT_USAGE);
			return 2;
		}
	}
	size_t vlen = version ? strlen(version) : 0;
	if (!version || vlen < DIGEST_SHORT_HEX || vlen > DIGEST_HEX ||
	    strspn(version, "0123456789abcdefABCDEF") != vlen) {
		fprintf(stderr, "%sVERSION: the held version a resolver showed (held_version=, 16 to "
				"64 hex digits)\n", ACCEPT_USAGE);
		return 2;
	}
	uint8_t priv[CONSENT_KEY_LEN];
	if (sign && read_key(sign, priv, true) < 0)
		return 1;
	struct consent c = {.present = true};
	policy_t *snap = NULL, *p = NULL;
	int status = 1;
	if (transition_from(t, from_arg, &c.from, &snap) < 0)
		return 1;
	if (policy_tool_connect(t) < 0)
		goto done;
	/* Consent to exactly what is read: if a key changes before EXEC, nothing is written. */
	redisReply *r = policy_tool_cmd(t, "WATCH %s %s %s", t->deny, t->allow, t->reason);
	if (!r)
		goto done;
	freeReplyObject(r);
	if (policy_tool_read(t, t->deny, t->allow, t->reason, &p) < 0)
		goto done;
	const struct policy_stats *st = policy_stats(p);
	char now_v[DIGEST_SHORT_HEX + 1], from_v[DIGEST_SHORT_HEX + 1];
	digest_short(&st->digest, now_v);
	digest_short(&c.from, from_v);
	if (!digest_has_prefix(&st->digest, version, vlen)) {
		fprintf(stderr, "embargo-policy: redis now holds version %s, not %s: nothing accepted "
				"(see embargo-policy diff)\n", now_v, version);
		goto done;
	}
	if (digest_is_equal(&st->digest, &c.from)) {
		printf("redis holds version %s, which the resolvers already enforce: nothing to "
		       "accept\n", now_v);
		status = 0;
		goto done;
	}
	c.to = st->digest;
	size_t added = 0, removed = 0;
	printf("transition from version %s to %s (%zu deny, %zu allow rules, %zu reasons):\n",
	       from_v, now_v, st->deny, st->allow, st->reasons);
	if (snap) {
		struct guard_diff d;
		guard_diff(snap, p, &d);
		policy_tool_print_diff(&d);
		struct guard_names lifted;
		size_t allowed;
		if (policy_tool_lifts(snap, p, &d, &lifted, &allowed) == 0)
			printf("  it lifts %zu denied names\n", lifted.count);
		added = d.deny_added.count + d.allow_added.count;
		removed = d.deny_removed.count + d.allow_removed.count;
	}
	uint8_t nonce[CONSENT_NONCE_HEX / 2];
	if (random_bytes(nonce, sizeof(nonce)) < 0) {
		fprintf(stderr, "embargo-policy: no random numbers: %s\n", strerror(errno));
		goto done;
	}
	digest_hex_encode(nonce, sizeof(nonce), c.nonce);
	c.at = (int64_t)time(NULL);
	c.expires = c.at + ttl;
	snprintf(c.by, sizeof(c.by), "%s", t->by);
	for (char *b = c.by; *b; b++) /* As the resolvers read it, so that a signature verifies. */
		if ((unsigned char)*b < 0x20 || *b == 0x7f)
			*b = '?';
	char sig[2 * CONSENT_SIG_LEN + 1] = "";
	if (sign) {
		consent_sign(&c, priv, t->prefix, t->opts->redis_db);
		digest_hex_encode(c.sig, CONSENT_SIG_LEN, sig);
	}
	char from_hex[DIGEST_HEX + 1], to_hex[DIGEST_HEX + 1], at[24], expires[24];
	digest_hex(&c.from, from_hex);
	digest_hex(&c.to, to_hex);
	snprintf(at, sizeof(at), "%" PRId64, c.at);
	snprintf(expires, sizeof(expires), "%" PRId64, c.expires);
	redisAppendCommand(t->rc, "MULTI");
	/* The record is replaced whole: no field of an older consent (a signature) may remain. */
	redisAppendCommand(t->rc, "DEL %s", t->accept);
	const char *hset[] = {"HSET", t->accept, "from", from_hex, "to", to_hex, "at", at,
			      "expires", expires, "nonce", c.nonce, "by", c.by, "why", t->why,
			      "version", now_v, "sig", sig};
	int n = sign ? 20 : 18;
	int rc = redisAppendCommandArgv(t->rc, n, hset, NULL) == REDIS_OK ? 0 : -ENOMEM;
	if (rc == 0)
		rc = policy_tool_append_audit(t, added, removed, &st->digest);
	redisAppendCommand(t->rc, "EXEC");
	if (rc == 0)
		rc = policy_tool_exec_replies(t, 3);
	if (rc == -EAGAIN)
		fprintf(stderr, "embargo-policy: the policy changed in redis while it was being read; "
				"nothing accepted, run it again\n");
	if (rc == 0) {
		char until[32];
		time_t e = (time_t)c.expires;
		struct tm tm;
		strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&e, &tm));
		printf("accepted version %s from %s, valid until %s, %s\n", now_v, from_v, until,
		       sign ? "signed" : "unsigned");
		status = 0;
	}
done:
	policy_free(snap);
	policy_free(p);
	return status;
}

static int write_new(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		fprintf(stderr, "embargo-policy: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	size_t len = strlen(text);
	int rc = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0 ? 0 : -EIO;
	if (close(fd) < 0 || rc < 0) {
		fprintf(stderr, "embargo-policy: cannot write %s\n", path);
		unlink(path);
		return -EIO;
	}
	return 0;
}

int policy_tool_consent_keygen(struct policy_tool *t, int argc, char **argv)
{
	(void)t;
	if (argc != 2) {
		fprintf(stderr, "embargo-policy: usage: keygen PRIVATE-FILE PUBLIC-FILE\n");
		return 2;
	}
	uint8_t priv[CONSENT_KEY_LEN], pub[CONSENT_KEY_LEN];
	if (random_bytes(priv, sizeof(priv)) < 0) {
		fprintf(stderr, "embargo-policy: no random numbers: %s\n", strerror(errno));
		return 1;
	}
	consent_public_key(priv, pub);
	char text[160];
	consent_key_format(priv, true, text, sizeof(text));
	if (write_new(argv[0], text, 0600) < 0)
		return 1;
	consent_key_format(pub, false, text, sizeof(text));
	if (write_new(argv[1], text, 0644) < 0) {
		unlink(argv[0]);
		return 1;
	}
	memset(priv, 0, sizeof(priv));
	printf("private key (keep it with the approver, never on a resolver): %s\n"
	       "public key (--consent-key on every resolver): %s\n", argv[0], argv[1]);
	return 0;
}

int policy_tool_consent_digest(struct policy_tool *t, int argc, char **argv)
{
	(void)argv;
	if (argc != 0) {
		fprintf(stderr, "embargo-policy: usage: digest\n");
		return 2;
	}
	policy_t *p;
	if (policy_tool_connect(t) < 0 || policy_tool_read(t, t->deny, t->allow, t->reason, &p) < 0)
		return 1;
	char hex[DIGEST_HEX + 1];
	digest_hex(&policy_stats(p)->digest, hex);
	printf("%s\n", hex);
	policy_free(p);
	return 0;
}
