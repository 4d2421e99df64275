/* The life of an upstream question (struct pending), from its first attempt to its end. Each
 * attempt asks the upstream that upstream_health picks, with a new ID and letter case, and times
 * out through one FIFO in deadline order under one timer; a timeout or an error RCODE moves the
 * question to the next upstream, up to ATTEMPTS. Its end gives every waiter its own copy of the
 * answer (or the failure) and takes it off every list. Private to resolver/upstream/. Must not
 * read a socket: replies come through upstream_reply and upstream_tcp. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "resolver/upstream/upstream_state.h"

/** Take p off the FIFO of attempts (a no-op when it is not on it). */
void upstream_question_fifo_remove(upstream_t *u, struct pending *p);

/** Take p off its TCP link; unless its answer came (answered), its ID stays retired there. */
void upstream_question_link_unlink(struct pending *p, int answered);

/** End p with reply[len] (NULL: failure, p->why says why), borrowed for the call: every waiter
 *  gets its own copy through the answer callback, then p returns to the pool. */
void upstream_question_finish(upstream_t *u, struct pending *p, const uint8_t *reply, size_t len);

/** Send p's next attempt (to p->force - 1, else the upstream picked) and queue its timeout. */
void upstream_question_next_attempt(upstream_t *u, struct pending *p);

/** An attempt is over without an answer: ask the next upstream now, or give up (finish). */
void upstream_question_attempt_failed(upstream_t *u, struct pending *p);

/** Upstream i answered p with an error RCODE in reply[len] (borrowed for the call): it is not
 *  asked p again, and the next attempt goes on (a first BADCOOKIE: to the same upstream). */
void upstream_question_rejected(upstream_t *u, struct pending *p, unsigned i,
				const uint8_t *reply, size_t len, unsigned rcode);
