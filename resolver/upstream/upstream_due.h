/* Serve-stale deadlines: the clients forwarded with a stale timeout, in one list in deadline
 * order under one timer; when a client's time has passed, the answer callback is asked to answer
 * it from the cache (UPSTREAM_DUE). Private to resolver/upstream/. Must not end a question or
 * touch a socket: the question goes on whatever the callback does. */
#pragma once

#include "resolver/upstream/upstream_state.h"

/** Take w off the list (a no-op when it is not on it). */
void upstream_due_remove(upstream_t *u, struct waiter *w);

/** Put w, with w->due set, at the end of the list. */
void upstream_due_append(upstream_t *u, struct waiter *w);
