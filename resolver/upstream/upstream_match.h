/* Does an upstream's reply answer our question: the same ID, QR set, opcode 0, and one question
 * equal to ours, letter case included (or in another case only); and the answer's full RCODE.
 * Private to resolver/upstream/. Pure functions of the bytes and the question: no state, and
 * never a socket. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "resolver/upstream/upstream_state.h"

/** How reply relates to p's question. */
enum upstream_match { UPSTREAM_MATCH_NONE, UPSTREAM_MATCH_CASE, UPSTREAM_MATCH_EXACT };

/** How reply[len] (hostile, borrowed for the call) relates to p's question as last sent. */
enum upstream_match upstream_match_question(const struct pending *p, const uint8_t *reply,
					    size_t len);

/** The answer's RCODE including its extended bits from the OPT record. */
unsigned upstream_match_full_rcode(const uint8_t *reply, size_t len);
