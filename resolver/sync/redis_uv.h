/* hiredis on a libuv loop. Debian 12's hiredis 0.14 adapter drops poll errors, so a refused
 * connection is never reported and its handle never closed; this adapter hands errors to hiredis
 * as read/write readiness (as hiredis >= 1.0 does), which then sees the socket error. It knows
 * no Redis command and must not touch the socket's bytes: it only tells hiredis when to act. */
#pragma once

#include <hiredis/async.h>
#include <uv.h>

/** Drive ac from loop. The adapter's memory is freed after hiredis cleans the context up.
 *  @return 0 or a negative errno. */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);
