/* Command builders for what the resolvers push to Redis: rule hit counters and the daily client
 * report. No state: the caller owns the connection and counts the replies (cb gets each). They
 * never touch the policy keys, only PREFIX:hits and PREFIX:clients:DAY. */
#pragma once

#include <hiredis/async.h>
#include <stddef.h>

#include "resolver/observe/client_report.h"
#include "resolver/observe/rule_hits.h"

/** Longest key prefix (the options' limit). */
#define REDIS_PUSH_PREFIX_MAX 64

/** Bounds of the client report in Redis. */
struct redis_report_limits {
	unsigned retention_days; /**< Each day's key expires this long after its last write. */
	unsigned max_clients;    /**< Clients per day; the rest count as the client "*". */
	unsigned max_rules;      /**< Rules per client per day; the rest count as the rule "*". */
};

/** HINCRBY PREFIX:hits RULE N for each of hits[0..n). @return commands sent. */
unsigned redis_push_hits(redisAsyncContext *ac, const char *prefix, const struct rule_hit *hits,
			 size_t n, redisCallbackFn *cb, void *privdata);

/** Add denials per client and rule to the hashes PREFIX:clients:YYYY-MM-DD (the UTC day of each
 *  entry's last denial), merged with what other instances added, within lim: one EVAL per 512
 *  entries. @return commands sent, or -ENOMEM (nothing sent). */
int redis_push_report(redisAsyncContext *ac, const char *prefix, const struct client_denial *e,
		      size_t n, const struct redis_report_limits *lim, redisCallbackFn *cb,
		      void *privdata);
