/* embargo-policy accept and keygen: consents bound to one transition. accept names the version
 * the operator was shown, refuses when Redis holds anything else, prints what the transition
 * lifts, and writes a consent that names both digests, expires, carries a fresh nonce (each
 * resolver uses it once) and, with --sign, an Ed25519 signature the resolvers check against
 * --consent-key. keygen makes that key pair. It never writes the policy keys (only PREFIX:accept
 * and the audit), and keygen never overwrites a file. */
#include "config.h"

#include <ctype.h>
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
	"[--snapshot SNAPSHOT] [--ttl DURATION] [--why TEXT] VERSION\n"

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

/* The policy with digest d, to diff against: the bundled list, a generation of the snapshot at
 * path (as saved, or its deny rules with the bundled list's, as a resolver enforces a snapshot of
 * another prefix). @return it (owned), or NULL. */
static policy_t *policy_with_digest(struct policy_tool *t, const struct digest *d, const char *path)
{
	policy_t *bundled = list_bundled();
	if (!bundled || digest_is_equal(&policy_stats(bundled)->digest, d))
		return bundled;
	policy_t *found = NULL;
	for (int g = 0; g < SNAPSHOT_GENERATIONS && !found; g++) {
		char gen[4200], err[512];
		if (g)
			snprintf(gen, sizeof(gen), "%s.%d", path, g);
		else
			snprintf(gen, sizeof(gen), "%s", path);
		policy_t *snap = NULL;
		struct codec_meta meta;
		if (snapshot_load(gen, &snap, &meta, err, sizeof(err)) < 0)
			continue;
		if (strcmp(meta.prefix, t->prefix) == 0 && meta.db == t->opts->redis_db &&
		    digest_is_equal(&policy_stats(snap)->digest, d)) {
			found = snap;
			break;
		}
		policy_builder_t *b = policy_builder_new();
		if (b && policy_builder_add_from(b, bundled, POLICY_PART_DENY | POLICY_PART_REASON) == 0 &&
		    policy_builder_add_from(b, snap, POLICY_PART_DENY | POLICY_PART_REASON) == 0) {
			policy_t *both = policy_build(b, POLICY_SOURCE_SNAPSHOT);
			if (both && digest_is_equal(&policy_stats(both)->digest, d))
				found = both;
			else
				policy_free(both);
		} else {
			policy_builder_free(b);
		}
		policy_free(snap);
	}
	policy_free(bundled);
	return found;
}

/* The policy the transition starts from, always as rules (its diff is shown and counted): a
 * snapshot an instance wrote, the bundled list, or a digest given in full that one of those
 * has (looked up at `path`, the snapshot the resolvers save). */
static int transition_from(struct policy_tool *t, const char *from, const char *path,
			   struct digest *d, policy_t **snap)
{
	*snap = NULL;
	if (strlen(from) == DIGEST_HEX && digest_parse(from, DIGEST_HEX, d) == 0) {
		*snap = policy_with_digest(t, d, path);
		if (*snap)
			return 0;
		fprintf(stderr, "embargo-policy: no policy with digest %s found (the bundled list, "
				"%s and its older generations): accept shows the diff it consents to, "
				"so pass --from SNAPSHOT, the snapshot file of the policy the resolvers "
				"enforce (or --snapshot SNAPSHOT to look there for the digest)\n", from, path);
		return -ENOENT;
	}
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

/* The held load's full digest, when the tool can learn it from the short version the operator
 * was shown: from the guard state a resolver saved beside its snapshot (`held`), else from the
 * resolvers' "held" entries in the audit stream. @return 1 with *full; 0 when unknown; -EINVAL
 * when the audit stream names two held digests with that version (refused: give all 64). */
static int held_digest(struct policy_tool *t, const char *path, const char *version,
		       struct digest *full)
{
	char guard[4200], line[256];
	snprintf(guard, sizeof(guard), "%s.guard", path);
	FILE *f = fopen(guard, "r");
	int known = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char hex[DIGEST_HEX + 2];
		if (sscanf(line, "held %65s", hex) == 1 && strlen(hex) == DIGEST_HEX &&
		    digest_parse(hex, DIGEST_HEX, full) == 0 &&
		    digest_has_prefix(full, version, strlen(version)))
			known = 1;
	}
	if (f)
		fclose(f);
	if (known)
		return 1;
	redisReply *r = policy_tool_cmd(t, "XREVRANGE %s + - COUNT 1000", t->audit);
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
		    e->element[1]->type != REDIS_REPLY_ARRAY)
			continue;
		const redisReply *kv = e->element[1];
		const char *cmd = "", *digest = "";
		for (size_t k = 0; k + 1 < kv->elements; k += 2) {
			if (kv->element[k]->type != REDIS_REPLY_STRING ||
			    kv->element[k + 1]->type != REDIS_REPLY_STRING)
				continue;
			if (strcmp(kv->element[k]->str, "command") == 0)
				cmd = kv->element[k + 1]->str;
			else if (strcmp(kv->element[k]->str, "digest") == 0)
				digest = kv->element[k + 1]->str;
		}
		struct digest d;
		if (strcmp(cmd, "held by the resolvers") != 0 || strlen(digest) != DIGEST_HEX ||
		    digest_parse(digest, DIGEST_HEX, &d) < 0 ||
		    !digest_has_prefix(&d, version, strlen(version)))
			continue;
		if (known && !digest_is_equal(&d, full)) {
			fprintf(stderr, "embargo-policy: the audit stream names two held loads with "
					"version %s: nothing accepted; give the whole digest (64 hex digits) "
					"the resolver logged\n", version);
			freeReplyObject(r);
			return -EINVAL;
		}
		*full = d;
		known = 1;
	}
	freeReplyObject(r);
	return known;
}

int policy_tool_consent_accept(struct policy_tool *t, int argc, char **argv)
{
	const char *sign = NULL, *from_arg = NULL, *version = NULL;
	const char *path = POLICY_TOOL_SNAPSHOT;
	int64_t ttl = CONSENT_TTL_DEFAULT;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--why") == 0 && i + 1 < argc) {
			t->why = argv[++i];
		} else if (strcmp(argv[i], "--sign") == 0 && i + 1 < argc) {
			sign = argv[++i];
		} else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
			from_arg = argv[++i];
		} else if (strcmp(argv[i], "--snapshot") == 0 && i + 1 < argc) {
			path = argv[++i];
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
	char version_lc[DIGEST_HEX + 1];
	for (size_t k = 0; k <= vlen; k++)
		version_lc[k] = (char)tolower((unsigned char)version[k]);
	version = version_lc;
	if (!from_arg)
		from_arg = path;
	uint8_t priv[CONSENT_KEY_LEN];
	if (sign && read_key(sign, priv, true) < 0)
		return 1;
	struct consent c = {.present = true};
	policy_t *snap = NULL, *p = NULL;
	int status = 1;
	if (transition_from(t, from_arg, path, &c.from, &snap) < 0)
		return 1;
	if (policy_tool_connect(t) < 0)
		goto done;
	/* Consent to exactly what is read: if a key changes before EXEC, nothing is written. */
	redisReply *r = policy_tool_cmd(t, "WATCH %s %s %s", t->deny, t->allow, t->reason);
	if (!r)
		goto done;
	freeReplyObject(r);
	/* All of the held load's digest is compared when it can be known, not the 16 digits shown. */
	struct digest held;
	int known = vlen == DIGEST_HEX ? (digest_parse(version, vlen, &held) == 0)
				       : held_digest(t, strcmp(from_arg, "bundled") != 0 &&
							 access(from_arg, R_OK) == 0 ? from_arg : path,
						 version, &held);
	if (known < 0 || policy_tool_read(t, t->deny, t->allow, t->reason, &p) < 0)
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
	char now_hex[DIGEST_HEX + 1], held_hex[DIGEST_HEX + 1];
	digest_hex(&st->digest, now_hex);
	if (known && !digest_is_equal(&st->digest, &held)) {
		digest_hex(&held, held_hex);
		fprintf(stderr, "embargo-policy: redis now holds digest %s, not %s, the held load "
				"version %s names: nothing accepted (see embargo-policy diff)\n", now_hex,
			held_hex, version);
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
	printf("transition from version %s to %s (%zu deny, %zu allow rules, %zu reasons; digest "
	       "%s):\n", from_v, now_v, st->deny, st->allow, st->reasons, now_hex);
	if (!known)
		printf("  (only the %zu digits given were compared: no held load with them is "
		       "known here; give all 64 to compare all of it)\n", vlen);
	struct guard_diff d;
	guard_diff(snap, p, &d);
	policy_tool_print_diff(&d);
	struct guard_names lifted;
	size_t allowed;
	if (policy_tool_lifts(snap, p, &d, &lifted, &allowed) == 0)
		printf("  it lifts %zu denied names\n", lifted.count);
	added = d.deny_added.count + d.allow_added.count;
	removed = d.deny_removed.count + d.allow_removed.count;
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
