/* What one worker knows of each upstream's health, and the choice it makes with it: a smoothed
 * RTT, with penalties for soft failures, picks the upstream of each attempt; one that times out
 * is marked down and skipped, and probed with a doubling back-off until it answers. Only real
 * round trips and timeouts move it, never an RCODE a client can provoke. Private to
 * resolver/upstream/. It sends probes but must not read or match replies: upstream_reply does. */
#pragma once

#include <stdint.h>

#include "resolver/upstream/upstream_state.h"

/** Start (or stop) the probe timer for the earliest probe due or deadline of a dead upstream. */
void upstream_health_arm_probe_timer(upstream_t *u);

/** Upstream i timed out: skipped until a probe finds it back (logged once). */
void upstream_health_mark_down(upstream_t *u, unsigned i);

/** Upstream i answered: live again (logged when it was down), its probe closed. */
void upstream_health_mark_up(upstream_t *u, unsigned i);

/** Upstream i answered in rtt ms: its smoothed RTT moves, and it is live. */
void upstream_health_note_rtt(upstream_t *u, unsigned i, uint64_t rtt);

/** Upstream i refused a connection (ICMP): it loses preference (counted in soft_failures). */
void upstream_health_note_soft_failure(upstream_t *u, unsigned i);

/** The upstream for p's next attempt (an index in o->upstream); aborts when every upstream has
 *  rejected p, which upstream_question_attempt_failed() never lets happen. */
unsigned upstream_health_pick(upstream_t *u, struct pending *p);

/** Upstream i answered p: the upstreams that rejected p lose preference. */
void upstream_health_penalise_rejecters(upstream_t *u, const struct pending *p, unsigned i);
