/* The Redis synchroniser's two connections: one for commands, one subscribed to the policy keys'
 * keyspace channels (notifications turned on with CONFIG SET where needed and permitted). It
 * reconnects with backoff, drops a connection that answers nothing for --redis-timeout
 * (heartbeats: PING on one, a re-SUBSCRIBE barrier on the other), and watches INFO replication
 * for a replica's full resync. What it learns it reports through callbacks; what the policy is,
 * it never knows. Runs on one libuv loop through hiredis' async API. */
#pragma once

#include <hiredis/async.h>
#include <uv.h>

#include "resolver/base/options.h"

typedef struct redis_link redis_link_t;

/** Most channels a link subscribes to. */
#define REDIS_LINK_CHANNELS 8

/** What the link tells its owner. Each is called on the loop, never after redis_link_close(). */
struct redis_link_events {
	/** Redis answers (again). notify: keyspace notifications are followed; 0: they cannot be
	 *  had (said once in the log), so changes come only from re-reads. Either way anything
	 *  may have changed meanwhile. */
	void (*up)(void *ctx, int notify);
	/** An event on channels[i]; adds: it only added members or fields (SADD, HSET). */
	void (*changed)(void *ctx, unsigned i, int adds);
	/** Barriers up to number `acked` (see redis_link_barrier) were answered. */
	void (*barrier)(void *ctx, unsigned acked);
	/** The replica Redis resynchronised with its primary, which sends no keyspace events. */
	void (*resynced)(void *ctx);
	/** Both connections are gone (why). first: the link was up, or had never been, until now:
	 *  a transition to report. The link reconnects by itself. */
	void (*down)(void *ctx, const char *why, int first);
};

/** Connect to the Redis of o and subscribe to channels[0..n) (copied; n at most
 *  REDIS_LINK_CHANNELS). o is borrowed and must outlive the link.
 *  @return the link (owned: redis_link_close), NULL when out of memory. */
redis_link_t *redis_link_new(uv_loop_t *loop, const struct options *o, const char *const *channels,
			     unsigned n, const struct redis_link_events *ev, void *ctx);

/** The command connection (borrowed, valid until the next callback of the link or return to
 *  the loop), or NULL unless Redis answers. Replies to commands sent on it come back NULL when
 *  the link goes down. */
redisAsyncContext *redis_link_commands(const redis_link_t *l);

/** Send a barrier on the notification connection: its answer (the barrier callback) comes
 *  after every notification Redis queued before it. @return its number, 0 when notifications
 *  are not followed (nothing is sent). */
unsigned redis_link_barrier(redis_link_t *l);

/** Disconnect; `closed` (may be NULL) is called once every handle and connection is freed, and
 *  the link with them. NULL is a no-op. */
void redis_link_close(redis_link_t *l, void (*closed)(void *ctx));
