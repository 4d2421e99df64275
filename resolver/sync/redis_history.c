/* Rollback marks from INFO and the audit stream's tail; transitions into the audit stream. It
 * owns no connection and never decides a hold: it says why a reply looks like a rollback, and
 * resolver/sync/redis_audit.c acts on it. */
#include "config.h"

#include "resolver/sync/redis_history.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const char *redis_history_info(struct redis_history *h, const char *info)
{
	char run_id[sizeof(h->run_id)] = "";
	long long offset = -1;
	const char *f = strstr(info, "run_id:");
	if (f)
		sscanf(f, "run_id:%47[0-9a-f]", run_id);
	f = strstr(info, "master_repl_offset:");
	if (f)
		sscanf(f, "master_repl_offset:%lld", &offset);
	const char *why = NULL;
	if (h->fresh)
		why = run_id[0] ? "nothing is known here of redis's past (a first start, or another redis)"
				: "redis tells no run_id and nothing is known here of its past";
	else if (h->run_id[0] && run_id[0] && strcmp(run_id, h->run_id) != 0)
		why = "redis restarted (new run_id)";
	else if (h->run_id[0] && offset >= 0 && offset < h->offset)
		why = "redis's replication offset went back";
	if (run_id[0]) {
		if (strcmp(run_id, h->run_id) != 0 || offset >= 0)
			h->offset = offset; /* Kept when this INFO did not tell it. */
		snprintf(h->run_id, sizeof(h->run_id), "%s", run_id);
		h->fresh = 0;
	}
	return why;
}

const char *redis_history_audit(struct redis_history *h, const redisReply *reply)
{
	if (reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
	    strncmp(reply->str, "WRONGTYPE", 9) == 0) {
		/* Something else under the stream's name: the stream is gone (said when it goes). */
		int was = h->audit_seen && (h->audit_ms || h->audit_seq);
		h->audit_ms = h->audit_seq = 0;
		h->audit_seen = 1;
		return was ? "the audit stream is gone (its key holds something else)" : NULL;
	}
	if (!reply || reply->type != REDIS_REPLY_ARRAY)
		return NULL; /* Refused (an ACL without XREVRANGE): not watched. */
	uint64_t ms = 0, seq = 0;
	if (reply->elements >= 1) {
		const redisReply *e = reply->element[0];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    sscanf(e->element[0]->str, "%" SCNu64 "-%" SCNu64, &ms, &seq) != 2)
			return NULL;
	}
	const char *why = NULL;
	if (h->audit_seen && (ms < h->audit_ms || (ms == h->audit_ms && seq < h->audit_seq)))
		why = reply->elements ? "the audit stream's newest entry is older than one seen before"
				      : "the audit stream is gone";
	h->audit_ms = ms;
	h->audit_seq = seq;
	h->audit_seen = 1;
	return why;
}

/* KEYS[1] the stream, KEYS[2] the once-per-transition marker (for five minutes: the fleet's
 * instances append within seconds of each other, and a transition made again later is news); ARGV[1] the digest of the new
 * policy when an entry of the tool's with it makes this one redundant (else ""), ARGV[2...] the
 * entry's fields and values. */
static const char APPEND_SCRIPT[] =
	"if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 300) == false then return 0 end\n"
	"local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
	"if #last == 1 and ARGV[1] ~= '' then\n"
	"  local f = last[1][2]\n"
	"  for i = 1, #f, 2 do\n"
	"    if f[i] == 'digest' and f[i + 1] == ARGV[1] then return 0 end\n"
	"  end\n"
	"end\n"
	"redis.call('XADD', KEYS[1], 'MAXLEN', '~', 10000, '*', unpack(ARGV, 2))\n"
	"return 1\n";

static void names_text(const struct guard_names *n, char *buf, size_t cap)
{
	buf[0] = '\0';
	for (size_t i = 0; i < n->count && i < GUARD_NAMES; i++) {
		size_t used = strlen(buf);
		snprintf(buf + used, cap - used, "%s%s", i ? " " : "", n->names[i]);
	}
	if (n->count > GUARD_NAMES) {
		size_t used = strlen(buf);
		snprintf(buf + used, cap - used, " and %zu more", n->count - GUARD_NAMES);
	}
}

int redis_history_append(redisAsyncContext *ac, const char *prefix, const char *kind,
			 const char *by, const policy_t *from, const policy_t *to,
			 const struct guard_diff *d, redisCallbackFn *cb, void *privdata)
{
	char stream[160], marker[300], from_hex[DIGEST_HEX + 1], to_hex[DIGEST_HEX + 1];
	char v[DIGEST_SHORT_HEX + 1], at[24], added[24], removed[24], cmd[64];
	char names_added[600], names_removed[600];
	digest_hex(&policy_stats(from)->digest, from_hex);
	digest_hex(&policy_stats(to)->digest, to_hex);
	digest_short(&policy_stats(to)->digest, v);
	snprintf(stream, sizeof(stream), "%s:audit", prefix);
	snprintf(marker, sizeof(marker), "%s:audit:seen:%s:%.16s:%.16s", prefix, kind, from_hex,
		 to_hex);
	snprintf(at, sizeof(at), "%lld", (long long)time(NULL));
	snprintf(added, sizeof(added), "%zu", d->deny_added.count + d->allow_added.count);
	snprintf(removed, sizeof(removed), "%zu", d->deny_removed.count + d->allow_removed.count);
	snprintf(cmd, sizeof(cmd), "%s by the resolvers", kind);
	names_text(&d->deny_added, names_added, sizeof(names_added));
	names_text(&d->deny_removed, names_removed, sizeof(names_removed));
	/* A hold is news even when the tool recorded the change that caused it. */
	const char *skip_if = strcmp(kind, "held") == 0 ? "" : to_hex;
	const char *argv[] = {"EVAL", APPEND_SCRIPT, "2", stream, marker, skip_if,
			      "time", at, "by", by, "command", cmd, "added", added,
			      "removed", removed, "why", "", "version", v, "digest", to_hex,
			      "from", from_hex, "deny_added", names_added,
			      "deny_removed", names_removed};
	int argc = (int)(sizeof(argv) / sizeof(argv[0]));
	return redisAsyncCommandArgv(ac, cb, privdata, argc, argv, NULL) == REDIS_OK ? 0 : -ENOMEM;
}
