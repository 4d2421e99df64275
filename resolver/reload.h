/* SIGHUP: the configuration read again (the file and the same flags, flags still winning) and
 * taken on without a restart or a lost query. The workers take on what they read per query, the
 * access list and limits, local answers, upstreams and listeners between two queries
 * (resolver/server.c); the Redis link moves here. A file that is bad or half written, or that
 * names an address embargo cannot listen on, keeps the running configuration and says why. A
 * reload never publishes a policy: a new Redis link's first load passes the held-load rule. */
#pragma once

#include "resolver/daemon.h"

/** Handle SIGHUP on d's loop (once it serves: earlier ones are ignored and said). */
void reload_init(struct daemon *d);

/** Stopping: no more reloads; a link a reload was replacing closes now. */
void reload_close(struct daemon *d);
