/* UDP replies (upstream_reply.h). Each socket is connected, so the kernel already filters on the
 * upstream's address and port; the check is made again here all the same. A reply that does not
 * match is counted and ignored, so a forgery ends nothing. Must not send. */
#include "config.h"

#include "resolver/upstream/upstream_reply.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "resolver/upstream/upstream_cookie.h"
#include "resolver/upstream/upstream_health.h"
#include "resolver/upstream/upstream_match.h"
#include "resolver/upstream/upstream_question.h"
#include "resolver/upstream/upstream_sock.h"
#include "resolver/upstream/upstream_state.h"
#include "resolver/upstream/upstream_tcp.h"

#define RECV_PER_WAKE 8       /* Datagrams read from one socket per wake-up. */

/* The probe's question: the root, NS, IN. */
static const uint8_t PROBE_QUESTION[] = {0, 0, 2, 0, 1};

static void probe_reply(upstream_t *u, struct outsock *s, const uint8_t *reply, size_t len)
{
	unsigned i = s->upstream;
	struct health *h = &u->health[i];
	/* Any answer to the probe's question (any RCODE) shows the upstream is back. */
	if (len < WIRE_HEADER + sizeof(PROBE_QUESTION) || wire_get16(reply) != h->probe_txid ||
	    !(wire_get16(reply + 2) & WIRE_FLAG_QR) || wire_get16(reply + 4) != 1 ||
	    memcmp(reply + WIRE_HEADER, PROBE_QUESTION, sizeof(PROBE_QUESTION)) != 0) {
		u->stats.mismatched++;
		return;
	}
	if (u->o->cookies) {
		size_t off, olen;
		int rc = wire_find_edns_option(reply, len, WIRE_EDNS_COOKIE, &off, &olen);
		if (rc == 0 && upstream_cookie_expected(u, i)) {
			/* The probe carried our cookie and the answer none: this upstream no longer
			 * does cookies, and must not stay unusable for it, in any worker. */
			h->server_cookie_len = 0;
			struct cookie_seen *e = upstream_cookie_entry(u, i, 0);
			if (e)
				h->cookie_gen = cookie_seen_off(e);
		} else if (upstream_cookie_check(u, i, reply, len, 0) < 0) {
			u->stats.cookie_mismatched++;
			return;
		}
	}
	upstream_health_mark_up(u, i);
}

static void handle_reply(upstream_t *u, struct outsock *s, uint8_t *reply, size_t len)
{
	struct pending *p = s->p;
	unsigned i = s->upstream;
	enum upstream_match m = upstream_match_question(p, reply, len);
	if (m == UPSTREAM_MATCH_NONE) {
		u->stats.mismatched++;
		return;
	}
	if (m == UPSTREAM_MATCH_CASE && !p->use_0x20) {
		/* Asked in lower case without 0x20: the upstream's own case is its to choose. */
		m = UPSTREAM_MATCH_EXACT;
	}
	if (m == UPSTREAM_MATCH_CASE) {
		/* Right socket, ID and name, wrong letter case: a forgery, or an upstream that does
		 * not keep case. It is ignored, so a forgery ends nothing; if no answer in the right
		 * case comes before the attempt times out, this question (only: an attacker who
		 * floods until the real answer is dropped must not switch 0x20 off for good) is
		 * asked again without 0x20 (upstream_question's timer). */
		u->stats.case_mismatched++;
		p->case_mismatch = 1;
		return;
	}
	if (p->cookie_sent && upstream_cookie_check(u, i, reply, len, 0) < 0) {
		u->stats.cookie_mismatched++;
		return;
	}
	unsigned rcode = upstream_match_full_rcode(reply, len);
	/* An error RCODE is an answer, in its real time: a client that asks questions an upstream
	 * cannot answer must not steer the choice of upstream. */
	upstream_health_note_rtt(u, i, uv_now(u->loop) - s->sent_at);
	if (rcode != WIRE_RCODE_NOERROR && rcode != WIRE_RCODE_NXDOMAIN) {
		upstream_question_rejected(u, p, i, reply, len, rcode);
		return;
	}
	if (u->latency && s->sent_ns)
		latency_observe(&u->latency[i], uv_hrtime() - s->sent_ns);
	upstream_health_penalise_rejecters(u, p, i);
	if (wire_get16(reply + 2) & WIRE_FLAG_TC) {
		/* Fetched whole over TCP, even for a UDP client: the cache keeps it whole. */
		upstream_question_fifo_remove(u, p);
		upstream_sock_close(s);
		upstream_tcp_fetch_start(u, p, i, reply, len);
		return;
	}
	upstream_question_finish(u, p, reply, len);
}

void upstream_reply_readable(uv_poll_t *h, int status, int events)
{
	struct outsock *s = h->data;
	upstream_t *u = s->u;
	(void)events;
	for (unsigned k = 0; k < RECV_PER_WAKE && s->fd >= 0; k++) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(s->fd, u->recv_buf, RECV_MAX, MSG_DONTWAIT,
				     (struct sockaddr *)&from, &flen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && status == 0)
			return;
		if (n < 0) {
			/* ICMP unreachable on a connected socket: nobody listens there, or someone
			 * forged the ICMP (it needs only our port). This attempt ends and the upstream
			 * loses preference, but it is not taken for dead on one packet. */
			unsigned i = s->upstream;
			struct pending *p = s->p;
			if (s->probe) {
				struct health *hl = &u->health[i];
				upstream_sock_close(s);
				hl->probe_at = uv_now(u->loop) + hl->probe_backoff_ms;
				upstream_health_arm_probe_timer(u);
				return;
			}
			upstream_health_note_soft_failure(u, i);
			if (p)
				upstream_question_attempt_failed(u, p);
			else
				upstream_sock_close(s);
			return;
		}
		/* The kernel filters on the connected address already; check it all the same. */
		if (!options_same_addr(&from, &u->o->upstream[s->upstream])) {
			u->stats.mismatched++;
			continue;
		}
		if (s->probe) {
			probe_reply(u, s, u->recv_buf, (size_t)n);
			return;
		}
		if (!s->p)
			return;
		handle_reply(u, s, u->recv_buf, (size_t)n);
	}
}
