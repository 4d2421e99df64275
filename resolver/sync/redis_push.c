/* What the resolvers push to Redis besides reading the policy: rule hit counters (HINCRBY on
 * PREFIX:hits) and the daily client report (a script per 512 entries on PREFIX:clients:DAY).
 * Command builders only: the caller owns the connection, counts the replies and logs refusals.
 * They never touch the policy keys. */
#include "config.h"

#include "resolver/sync/redis_push.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

unsigned redis_push_hits(redisAsyncContext *ac, const char *prefix, const struct rule_hit *hits,
			 size_t n, redisCallbackFn *cb, void *privdata)
{
	char key[REDIS_PUSH_PREFIX_MAX + 8];
	snprintf(key, sizeof(key), "%s:hits", prefix);
	unsigned sent = 0;
	for (size_t i = 0; i < n; i++)
		if (redisAsyncCommand(ac, cb, privdata, "HINCRBY %s %s %llu", key, hits[i].rule,
				      (unsigned long long)hits[i].count) == REDIS_OK)
			sent++;
	return sent;
}

/* One day's hash: per client "n|ADDR" (denials), "t|ADDR" (of them over TCP), "f|ADDR" and
 * "l|ADDR" (first and last seen, Unix seconds; the earliest and the latest any instance saw)
 * and "r|ADDR|RULE" (denials by that rule); the key expires ARGV[1] seconds after its last
 * write. A script, so that several instances' first and last seen merge exactly, and so that
 * the hash stays bounded whatever sources a flood forges: past ARGV[2] clients in the day
 * ("#clients" counts them) new clients count as the client "*", and past ARGV[3] rules for one
 * client ("#r|ADDR") its new rules count as the rule "*". */
static const char REPORT_SCRIPT[] =
	"local k, maxc, maxr = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"
	"for i = 4, #ARGV, 6 do\n"
	"  local a, r, n, t = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])\n"
	"  local f, l = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])\n"
	"  if redis.call('HEXISTS', k, 'n|' .. a) == 0 then\n"
	"    if tonumber(redis.call('HGET', k, '#clients') or '0') >= maxc then a = '*'\n"
	"    else redis.call('HINCRBY', k, '#clients', 1) end\n"
	"  end\n"
	"  if redis.call('HEXISTS', k, 'r|' .. a .. '|' .. r) == 0 then\n"
	"    if tonumber(redis.call('HGET', k, '#r|' .. a) or '0') >= maxr then r = '*'\n"
	"    else redis.call('HINCRBY', k, '#r|' .. a, 1) end\n"
	"  end\n"
	"  redis.call('HINCRBY', k, 'n|' .. a, n)\n"
	"  if t > 0 then redis.call('HINCRBY', k, 't|' .. a, t) end\n"
	"  redis.call('HINCRBY', k, 'r|' .. a .. '|' .. r, n)\n"
	"  local was = tonumber(redis.call('HGET', k, 'f|' .. a))\n"
	"  if not was or f < was then redis.call('HSET', k, 'f|' .. a, f) end\n"
	"  was = tonumber(redis.call('HGET', k, 'l|' .. a))\n"
	"  if not was or l > was then redis.call('HSET', k, 'l|' .. a, l) end\n"
	"end\n"
	"redis.call('EXPIRE', k, ARGV[1])\n"
	"return 0\n";

/* Entries per script run: a run blocks Redis while it lasts. */
#define REPORT_PER_EVAL 512

int redis_push_report(redisAsyncContext *ac, const char *prefix, const struct client_denial *e,
		      size_t n, const struct redis_report_limits *lim, redisCallbackFn *cb,
		      void *privdata)
{
	int sent = 0;
	/* EVAL script 1 KEY TTL MAX-CLIENTS MAX-RULES, then per entry: address, rule, count, over
	 * TCP, first, last. */
	enum { FIXED = 7, PER = 6 };
	const char **argv = malloc((FIXED + PER * REPORT_PER_EVAL) * sizeof(*argv));
	size_t *lens = malloc((FIXED + PER * REPORT_PER_EVAL) * sizeof(*lens));
	char(*text)[PER - 1][48] = malloc(REPORT_PER_EVAL * sizeof(*text));
	char *done = calloc(n ? n : 1, 1);
	if (!argv || !lens || !text || !done) {
		free(argv);
		free(lens);
		free(text);
		free(done);
		return -ENOMEM;
	}
	char key[REDIS_PUSH_PREFIX_MAX + 32], ttl[24], maxc[24], maxr[24];
	snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)lim->retention_days * 86400u);
	snprintf(maxc, sizeof(maxc), "%u", lim->max_clients);
	snprintf(maxr, sizeof(maxr), "%u", lim->max_rules);
	const char *fixed[FIXED] = {"EVAL", REPORT_SCRIPT, "1", key, ttl, maxc, maxr};
	memcpy(argv, fixed, sizeof(fixed));
	/* Each entry goes to the day (UTC) of its last denial; a batch rarely spans two. */
	for (size_t start = 0; start < n; start++) {
		if (done[start])
			continue;
		time_t last = (time_t)e[start].last;
		struct tm tm;
		gmtime_r(&last, &tm);
		int keylen = snprintf(key, sizeof(key), "%s:clients:%04d-%02d-%02d", prefix,
				      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
		int64_t from = (int64_t)last - tm.tm_hour * 3600 - tm.tm_min * 60 - tm.tm_sec;
		for (size_t i = start; i < n;) {
			unsigned k = 0;
			for (; i < n && k < REPORT_PER_EVAL; i++) {
				if (done[i] || e[i].last < from || e[i].last >= from + 86400)
					continue;
				done[i] = 1;
				client_report_addr_text(&e[i], text[k][0], sizeof(text[k][0]));
				snprintf(text[k][1], sizeof(text[k][1]), "%llu", (unsigned long long)e[i].count);
				snprintf(text[k][2], sizeof(text[k][2]), "%llu", (unsigned long long)e[i].tcp);
				snprintf(text[k][3], sizeof(text[k][3]), "%lld", (long long)e[i].first);
				snprintf(text[k][4], sizeof(text[k][4]), "%lld", (long long)e[i].last);
				const char *v[PER] = {text[k][0], e[i].rule,   text[k][1],
						      text[k][2], text[k][3], text[k][4]};
				memcpy(&argv[FIXED + PER * k], v, sizeof(v));
				k++;
			}
			if (k == 0)
				break;
			for (unsigned j = 0; j < FIXED + PER * k; j++)
				lens[j] = j == 1 ? sizeof(REPORT_SCRIPT) - 1 : j == 3 ? (size_t)keylen : strlen(argv[j]);
			if (redisAsyncCommandArgv(ac, cb, privdata, (int)(FIXED + PER * k), argv, lens) ==
			    REDIS_OK)
				sent++;
		}
	}
	free(argv);
	free(lens);
	free(text);
	free(done);
	return sent;
}

