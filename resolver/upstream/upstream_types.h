/* The types of upstream.h's interface: the answer callback with its flags and the failure it
 * reports, and the forwarding counters. They sit apart from upstream.h, under its names, so that
 * the modules of resolver/upstream/ below upstream.c use them without including upstream.h (that
 * would make a circle with upstream.c). Declarations only: it must never hold code or state. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "resolver/base/client.h"
#include "resolver/base/wire.h"

/** One worker loop's forwarding state (opaque outside resolver/upstream/). */
typedef struct upstream upstream_t;

/** Flags of an answer callback. */
enum {
	UPSTREAM_FIRST = 1,    /**< The question's first client: its answer is the one cached. */
	UPSTREAM_DUE = 2,      /**< No answer yet, and this client's stale timeout has passed:
				    answer it from the cache if possible (then return 1); the
				    question goes on. reply is NULL. */
	UPSTREAM_ANSWERED = 4, /**< The client was answered at its UPSTREAM_DUE: do not answer
				    it again. */
};
/** With an answer, flags >> UPSTREAM_INDEX_SHIFT is 1 + the index (in options.upstream) of the
 *  upstream that gave it. */
#define UPSTREAM_INDEX_SHIFT 8

/** Longest EDE text kept from an upstream's failure. */
#define UPSTREAM_EDE_TEXT_MAX 80

/** Why a question got no answer. */
struct upstream_failure {
	uint8_t rejected;  /**< 1: an upstream answered it with an error RCODE (rcode), and the
				others did too or did not answer in time; 0: none answered in
				time (timeouts, refused connections). */
	uint8_t given_up;  /**< 1: embargo gave the question up itself (a full pool jostled it,
				no memory): no verdict on the question, not to be remembered. */
	uint8_t rcode;     /**< The last error RCODE (SERVFAIL, REFUSED...), when rejected. */
	int16_t ede_code;  /**< That answer's Extended DNS Error (RFC 8914), -1: none. */
	char ede_text[UPSTREAM_EDE_TEXT_MAX + 1]; /**< Its text, printable ASCII only. */
};

/** Delivers the answer to one client of a forwarded question (reply NULL: no upstream
 *  answered, and why says why). reply already carries the client's ID and question case.
 *  Called for every client, also those whose session is gone (c->session NULL), once at the
 *  end with flags 0 or UPSTREAM_FIRST (| UPSTREAM_ANSWERED), and for a client forwarded with a
 *  stale timeout also once before with UPSTREAM_DUE (reply and why NULL) if that passes
 *  first. All arguments are borrowed for the call; the callback may modify reply in place.
 *  @return 1 when it answered the client at UPSTREAM_DUE, else 0. */
typedef int (*upstream_answer_cb)(void *ctx, const struct client *c, const uint8_t *query,
				  const struct wire_query *q, uint8_t *reply, size_t len,
				  const struct upstream_failure *why, unsigned flags);

/** Per-worker forwarding statistics. */
struct upstream_stats {
	uint64_t sent, answered, timeouts, mismatched, case_mismatched, cookie_mismatched,
		soft_failures, merged, tcp_fallbacks, tcp_full, pool_full, jostled, sockets_full,
		probes, tls_handshakes, tls_resumed, tls_failures;
};
