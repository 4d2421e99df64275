/* SNAPSHOT.guard: "embargo-guard 2", one "key value..." line per field (see the header), and an
 * "end" line with the SHA-256 of everything before it, so that a file cut at a line boundary or
 * damaged is refused whole rather than read in part. It never talks to Redis and never decides
 * a load: policy/guard.c decides, and this file keeps what it needs. */
#include "config.h"

#include "resolver/sync/guard_state.h"

#include "resolver/sync/snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAGIC "embargo-guard 2\n"

int guard_state_format(const guard_t *g, const struct redis_history *h, const char *prefix,
		       int db, int64_t now, char *buf, size_t cap)
{
	struct guard_state st;
	guard_get_state(g, &st);
	size_t len = 0;
#define PUT(...)                                                                                   \
	do {                                                                                       \
		int n_ = snprintf(buf + len, cap - len, __VA_ARGS__);                              \
		if (n_ < 0 || (size_t)n_ >= cap - len)                                             \
			return -ENOSPC;                                                            \
		len += (size_t)n_;                                                                 \
	} while (0)
	PUT("%s", MAGIC);
	PUT("prefix %s %d\n", prefix, db);
	PUT("redis %s\n", h->redis[0] ? h->redis : "-");
	PUT("run_id %s\n", h->run_id[0] ? h->run_id : "-");
	PUT("offset %lld\n", h->offset);
	PUT("audit %" PRIu64 "-%" PRIu64 " %d\n", h->audit_ms, h->audit_seq, h->audit_seen);
	PUT("rollback %d\n", st.rollback ? 1 : 0);
	PUT("base %zu\nspent %zu\n", st.base, st.spent > st.carried ? st.spent : st.carried);
	PUT("based_at %" PRId64 "\nquiet_since %" PRId64 "\n", st.based_at, st.quiet_since);
	if (st.has_held) {
		char hex[DIGEST_HEX + 1];
		digest_hex(&st.held, hex);
		PUT("held %s\n", hex);
	}
	if (st.capped)
		PUT("cap %zu\n", st.cap);
	const char *nonce;
	int64_t expires;
	for (size_t i = 0; guard_used_at(g, i, &nonce, &expires); i++)
		if (expires > now)
			PUT("used %s %" PRId64 "\n", nonce, expires);
	struct digest sum;
	digest_of(buf, len, &sum);
	char hex[DIGEST_HEX + 1];
	digest_hex(&sum, hex);
	PUT("end %s\n", hex);
#undef PUT
	return (int)len;
}

/* The file's text (owned) and length, NUL-terminated. */
static int read_all(const char *path, char **text, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n + 1024 > cap) {
			if (cap >= (16u << 20))
				break; /* No state file is this big. */
			char *b = realloc(buf, cap * 2);
			if (!b)
				break;
			buf = b;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	int bad = ferror(f) || !buf || !feof(f);
	fclose(f);
	if (bad) {
		free(buf);
		return -EIO;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

int guard_state_check(const char *path, const char *prefix, int db)
{
	char *text;
	size_t len;
	int rc = read_all(path, &text, &len);
	if (rc < 0)
		return rc;
	char p[80];
	int d;
	rc = sscanf(text, "embargo-guard 2\nprefix %79s %d", p, &d) == 2 &&
			     (strcmp(p, prefix) != 0 || d != db)
		     ? -EXDEV
		     : 0;
	free(text);
	return rc;
}

int guard_state_load(const char *path, const char *prefix, int db, guard_t *g,
		     struct redis_history *h, char *err, size_t errlen)
{
	char *text;
	size_t len;
	int rc = read_all(path, &text, &len);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	/* The end line's digest covers every line before it. */
	char *end = len > 70 ? strstr(text, "\nend ") : NULL;
	struct digest want, got;
	if (strncmp(text, MAGIC, strlen(MAGIC)) != 0 || !end ||
	    digest_parse(end + 5, strcspn(end + 5, "\n"), &want) < 0 ||
	    end + 5 + DIGEST_HEX + 1 != text + len || end[5 + DIGEST_HEX] != '\n') {
		snprintf(err, errlen, "%s is not a whole embargo guard state file", path);
		free(text);
		return -EBADMSG;
	}
	digest_of(text, (size_t)(end + 1 - text), &got);
	if (!digest_is_equal(&want, &got)) {
		snprintf(err, errlen, "%s is damaged (checksum)", path);
		free(text);
		return -EBADMSG;
	}
	end[1] = '\0';
	struct guard_state st;
	guard_get_state(g, &st);
	struct redis_history hh = {0};
	size_t bad = 0, nused = 0;
	int bound = 0;
	/* Used nonces are taken only once the whole file is known good. */
	struct {
		char nonce[CONSENT_NONCE_HEX + 1];
		int64_t expires;
	} *used = calloc(GUARD_USED_MAX, sizeof(*used));
	if (!used) {
		free(text);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (char *line = text + strlen(MAGIC), *next; *line; line = next) {
		next = strchr(line, '\n');
		*next++ = '\0';
		char a[80], big[300];
		long long x, y;
		int d, ok = 1;
		if (sscanf(line, "prefix %79s %d", a, &d) == 2) {
			if (strcmp(a, prefix) != 0 || d != db) {
				snprintf(err, errlen, "%s belongs to redis prefix '%s' db %d, not '%s' "
					 "db %d", path, a, d, prefix, db);
				free(text);
				free(used);
				return -EXDEV;
			}
			bound = 1;
		} else if (sscanf(line, "redis %299s", big) == 1)
			snprintf(hh.redis, sizeof(hh.redis), "%s", strcmp(big, "-") ? big : "");
		else if (sscanf(line, "run_id %79s", a) == 1)
			snprintf(hh.run_id, sizeof(hh.run_id), "%s", strcmp(a, "-") ? a : "");
		else if (sscanf(line, "offset %lld", &x) == 1)
			hh.offset = x;
		else if (sscanf(line, "audit %" SCNu64 "-%" SCNu64 " %d", &hh.audit_ms, &hh.audit_seq,
				&hh.audit_seen) == 3)
			;
		else if (sscanf(line, "rollback %lld", &x) == 1)
			st.rollback = x != 0;
		else if (sscanf(line, "base %lld", &x) == 1 && x >= 0)
			st.base = (size_t)x;
		else if (sscanf(line, "spent %lld", &x) == 1 && x >= 0)
			st.spent = st.carried = (size_t)x; /* Counted on top of what is lifted now. */
		else if (sscanf(line, "based_at %lld", &x) == 1)
			st.based_at = x;
		else if (sscanf(line, "quiet_since %lld", &x) == 1)
			st.quiet_since = x;
		else if (sscanf(line, "held %79s", a) == 1 && digest_parse(a, strlen(a), &st.held) == 0)
			st.has_held = true;
		else if (sscanf(line, "cap %lld", &x) == 1 && x >= 0) {
			st.capped = true;
			st.cap = (size_t)x;
		} else if (sscanf(line, "used %79s %lld", a, &y) == 2) {
			ok = strlen(a) == CONSENT_NONCE_HEX && nused < GUARD_USED_MAX;
			if (ok) {
				memcpy(used[nused].nonce, a, CONSENT_NONCE_HEX + 1);
				used[nused++].expires = y;
			}
		} else
			ok = 0;
		bad += !ok;
	}
	free(text);
	if (!bound || bad) {
		snprintf(err, errlen, "%s: %s", path, bound ? "lines it does not know" : "no prefix line");
		free(used);
		return -EBADMSG;
	}
	for (size_t i = 0; i < nused; i++)
		(void)guard_mark_used(g, used[i].nonce, used[i].expires);
	free(used);
	guard_set_state(g, &st);
	*h = hh;
	return 0;
}

void guard_state_fail_closed(guard_t *g)
{
	/* Nothing known of what was spent, held or consented: as after a rollback, and the whole
	 * budget counted as spent until a consent or a quiet window. */
	struct guard_state st;
	guard_get_state(g, &st);
	st.rollback = true;
	st.spent = st.carried = st.base + 1;
	guard_set_state(g, &st);
}

int guard_state_save(const char *path, const guard_t *g, const struct redis_history *h,
		     const char *prefix, int db, char **written, char *err, size_t errlen)
{
	size_t cap = 4096 + (size_t)GUARD_USED_MAX * 64;
	char *text = malloc(cap);
	int len = text ? guard_state_format(g, h, prefix, db, (int64_t)time(NULL), text, cap)
		       : -ENOMEM;
	if (len < 0) {
		free(text);
		snprintf(err, errlen, "%s", strerror(-len));
		return len;
	}
	if (*written && strcmp(*written, text) == 0) {
		free(text);
		return 0;
	}
	if (guard_state_check(path, prefix, db) == -EXDEV) {
		snprintf(err, errlen, "%s belongs to another redis prefix or database: not overwritten "
			 "(move it away, or give this instance its own --snapshot)", path);
		free(text);
		return -EXDEV;
	}
	int rc = snapshot_write_file(path, text, (size_t)len, err, errlen);
	if (rc < 0) {
		free(text);
		return rc;
	}
	free(*written);
	*written = text;
	return 0;
}
