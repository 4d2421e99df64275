/* Admission: who may ask (an access list, longest prefix wins, as Unbound's access-control),
 * how fast (a response rate limit per client prefix with slip, as Unbound's ip-ratelimit and
 * BIND's RRL), and how many upstream questions one client may keep waiting (its share of the
 * worker's pending pool). One instance per worker, so nothing here locks; it never touches a
 * socket or reads the clock: callers pass the time, and unit tests drive it directly. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "resolver/base/options.h"

typedef struct admit admit_t;

/** What the rate limit says about one more answer to a client. */
enum admit_rate {
	ADMIT_RATE_OK = 0, /**< Within the limit: answer in full. */
	ADMIT_RATE_SLIP,   /**< Over it, but this one goes out truncated and empty (TC=1). */
	ADMIT_RATE_DROP,   /**< Over it: send nothing. */
};

/** Admission state for one worker, configured from o (borrowed: must outlive it).
 *  @return owned (admit_free), or NULL when out of memory or without a random key. */
admit_t *admit_new(const struct options *o);

/** Free a. NULL is a no-op. */
void admit_free(admit_t *a);

/** Take o's access list and limits (o borrowed as in admit_new), keeping the rate windows and
 *  the pending shares. @return 0, or -ENOMEM (then the access list stays as it was; the
 *  limits are o's, and a no longer reads the old options). */
int admit_reconfigure(admit_t *a, const struct options *o);

/** The access-list action for a client address: OPTIONS_ACL_*. */
enum options_acl admit_access(admit_t *a, const struct sockaddr_storage *client);

/** Count one answer to client at now_ms (a monotonic clock in ms) against its prefix's rate.
 *  Loopback clients and a limit of 0 are never limited. */
enum admit_rate admit_rate(admit_t *a, const struct sockaddr_storage *client, uint64_t now_ms);

/** Count one new TLS handshake from client at now_ms against its prefix's
 *  --tls-handshake-rate per second. Loopback clients and a rate of 0 are never capped.
 *  @return 0, or -EBUSY: over the cap, close the connection unread. */
int admit_handshake(admit_t *a, const struct sockaddr_storage *client, uint64_t now_ms);

/** Take one of client's pending upstream slots. @return 0, or -EDQUOT when it holds its share. */
int admit_pending_take(admit_t *a, const struct sockaddr_storage *client);

/** Give back a slot taken by admit_pending_take(). */
void admit_pending_give(admit_t *a, const struct sockaddr_storage *client);

/** Slots client holds now (for tests). */
unsigned admit_pending_held(admit_t *a, const struct sockaddr_storage *client);

/** Is the address loopback (127.0.0.0/8 or ::1)? */
bool admit_is_loopback(const struct sockaddr_storage *ss);

/** Counters of what admission turned away. */
struct admit_stats {
	uint64_t refused, dropped, rate_slipped, rate_dropped, pending_refused, handshakes_refused;
};

/** Statistics (borrowed; only this worker writes them). */
struct admit_stats *admit_stats(admit_t *a);
