/* SNAPSHOT.guard: "embargo-guard 1", then one "key value..." line per field (see the header). */
#include "config.h"

#include "resolver/guard_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "embargo-guard 1\n"

int guard_state_format(const guard_t *g, const struct redis_history *h, int64_t now, char *buf,
		       size_t cap)
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
	PUT("redis %s\n", h->redis[0] ? h->redis : "-");
	PUT("run_id %s\n", h->run_id[0] ? h->run_id : "-");
	PUT("offset %lld\n", h->offset);
	PUT("audit %" PRIu64 "-%" PRIu64 " %d\n", h->audit_ms, h->audit_seq, h->audit_seen);
	PUT("rollback %d\n", st.rollback ? 1 : 0);
	PUT("base %zu\nspent %zu\n", st.base, st.spent);
	PUT("based_at %" PRId64 "\nquiet_since %" PRId64 "\n", st.based_at, st.quiet_since);
	if (st.has_held) {
		char hex[DIGEST_HEX + 1];
		digest_hex(&st.held, hex);
		PUT("held %s %zu\n", hex, st.held_allowed);
	}
	const char *nonce;
	int64_t expires;
	for (size_t i = 0; guard_used_at(g, i, &nonce, &expires); i++)
		if (expires > now)
			PUT("used %s %" PRId64 "\n", nonce, expires);
#undef PUT
	return (int)len;
}

int guard_state_load(const char *path, guard_t *g, struct redis_history *h, char *err,
		     size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return rc;
	}
	struct guard_state st;
	guard_get_state(g, &st);
	struct redis_history hh = {0};
	char line[400];
	size_t bad = 0;
	int magic = fgets(line, sizeof(line), f) && strcmp(line, MAGIC) == 0;
	while (magic && fgets(line, sizeof(line), f)) {
		char a[80], b[80], big[300];
		long long x, y;
		int ok = 1;
		if (sscanf(line, "redis %299s", big) == 1)
			snprintf(hh.redis, sizeof(hh.redis), "%s", strcmp(big, "-") ? big : "");
		else if (sscanf(line, "run_id %47s", a) == 1)
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
			st.carried = (size_t)x; /* Counted on top of what is lifted from here on. */
		else if (sscanf(line, "based_at %lld", &x) == 1)
			st.based_at = x;
		else if (sscanf(line, "quiet_since %lld", &x) == 1)
			st.quiet_since = x;
		else if (sscanf(line, "held %79s %lld", a, &y) == 2 && y >= 0 &&
			 digest_parse(a, strlen(a), &st.held) == 0) {
			st.has_held = true;
			st.held_allowed = (size_t)y;
		} else if (sscanf(line, "used %79s %lld", b, &y) == 2)
			ok = guard_mark_used(g, b, y) == 0;
		else
			ok = 0;
		bad += !ok;
	}
	fclose(f);
	guard_set_state(g, &st);
	*h = hh;
	if (!magic || bad) {
		snprintf(err, errlen, "%s: %s", path,
			 magic ? "damaged lines skipped" : "not an embargo guard state file");
		return -EBADMSG;
	}
	return 0;
}
