/* Upstream health and choice (upstream_health.h). Health is per worker, kept in u->health and
 * changed on the worker's loop only; dead upstreams share one probe timer. A probe is a socket
 * of upstream_sock's flagged as a probe, and its reply comes back through upstream_reply; this
 * file must not read a socket nor judge a reply. */
#include "config.h"

#include "resolver/upstream/upstream_health.h"

#include <stdlib.h>
#include <string.h>

#include "resolver/base/log.h"
#include "resolver/upstream/upstream_sock.h"

#define PROBE_FIRST_MS 1000
#define PROBE_MAX_MS 60000
#define SRTT_PENALTY_MS 1000  /* Added to an upstream's RTT when it refuses a connection, or
			       * fails a question another upstream answers. */
#define SRTT_MAX_MS 30000

static void probe_timer_cb(uv_timer_t *t);

void upstream_health_arm_probe_timer(upstream_t *u)
{
	if (u->closing)
		return;
	uint64_t next = UINT64_MAX;
	for (unsigned i = 0; i < u->o->nupstream; i++) {
		const struct health *h = &u->health[i];
		if (h->probe && h->probe_deadline < next)
			next = h->probe_deadline;
		else if (!h->probe && h->down && h->probe_at < next)
			next = h->probe_at;
	}
	if (next == UINT64_MAX) {
		uv_timer_stop(&u->probe_timer);
		return;
	}
	uint64_t now = uv_now(u->loop);
	uv_timer_start(&u->probe_timer, probe_timer_cb, next > now ? next - now : 0, 0);
}

void upstream_health_mark_down(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	if (h->down)
		return;
	char addr[80];
	options_format_addr(&u->o->upstream[i], addr, sizeof(addr));
	log_warn("upstream %s does not answer: skipped until a probe finds it back", addr);
	h->down = 1;
	if (!h->unproven)
		h->probe_backoff_ms = PROBE_FIRST_MS;
	h->probe_at = uv_now(u->loop) + h->probe_backoff_ms;
	upstream_health_arm_probe_timer(u);
}

void upstream_health_mark_up(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	if (!h->down)
		return;
	char addr[80];
	options_format_addr(&u->o->upstream[i], addr, sizeof(addr));
	log_info("upstream %s answers again", addr);
	h->down = 0;
	if (h->probe)
		upstream_sock_close(h->probe);
	upstream_health_arm_probe_timer(u);
}

void upstream_health_note_rtt(upstream_t *u, unsigned i, uint64_t rtt)
{
	struct health *h = &u->health[i];
	uint32_t r = rtt > SRTT_MAX_MS ? SRTT_MAX_MS : (uint32_t)rtt + 1;
	h->unproven = 0;
	h->srtt_ms = h->srtt_ms ? (h->srtt_ms * 7 + r) / 8 : r;
	upstream_health_mark_up(u, i);
}

static void srtt_penalty(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	h->srtt_ms = h->srtt_ms + SRTT_PENALTY_MS > SRTT_MAX_MS ? SRTT_MAX_MS
								 : h->srtt_ms + SRTT_PENALTY_MS;
}

void upstream_health_note_soft_failure(upstream_t *u, unsigned i)
{
	srtt_penalty(u, i);
	u->stats.soft_failures++;
}

/* The upstream for p's next attempt: the fastest live one not yet asked in this round, else a
 * dead one not yet asked (all may be dead), else a new round. One that answered p with an
 * error RCODE is never asked again (upstream_question_attempt_failed() stops when all
 * have). */
unsigned upstream_health_pick(upstream_t *u, struct pending *p)
{
	unsigned n = u->o->nupstream;
	if (((p->tried | p->rejected) & ((1u << n) - 1)) == (1u << n) - 1)
		p->tried = p->rejected;
	int best = -1;
	for (int pass = 0; pass < 2 && best < 0; pass++)
		for (unsigned i = 0; i < n; i++) {
			if (p->tried & (1u << i) || u->health[i].down != pass)
				continue;
			if (best < 0 || u->health[i].srtt_ms < u->health[best].srtt_ms)
				best = (int)i;
		}
	if (best < 0)
		abort(); /* upstream_question_attempt_failed() never asks for one when every
			  * upstream rejected p. */
	return (unsigned)best;
}

/* Upstream i answered p, which others had answered with an error RCODE: those did worse than
 * another upstream on the same question, which a client cannot make happen unless they really
 * differ, so they lose preference as for a refused connection (an upstream that refuses every
 * question does not stay the first asked). An error on a question every upstream fails moves
 * nothing. */
void upstream_health_penalise_rejecters(upstream_t *u, const struct pending *p, unsigned i)
{
	for (unsigned k = 0; k < u->o->nupstream; k++)
		if (k != i && (p->rejected & (1u << k)))
			srtt_penalty(u, k);
}

/* "." NS with our OPT: a question every resolver answers, if only with REFUSED. */
static void probe_send(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	uint8_t q[WIRE_HEADER + 1 + 4 + 11 + 4 + 8 + 32] = {0};
	size_t qlen = WIRE_HEADER + 1 + 4 + 11;
	h->probe_txid = upstream_state_random16(u);
	wire_put16(q, h->probe_txid);
	wire_put16(q + 2, WIRE_FLAG_RD);
	wire_put16(q + 4, 1);
	wire_put16(q + 10, 1);
	wire_put16(q + WIRE_HEADER + 1, 2); /* NS */
	wire_put16(q + WIRE_HEADER + 3, WIRE_CLASS_IN);
	uint8_t *opt = q + WIRE_HEADER + 5;
	wire_put16(opt + 1, WIRE_TYPE_OPT);
	wire_put16(opt + 3, EDNS_SIZE);
	if (u->o->cookies) {
		wire_put16(q + qlen, WIRE_EDNS_COOKIE);
		wire_put16(q + qlen + 2, (uint16_t)(8 + h->server_cookie_len));
		memcpy(q + qlen + 4, h->client_cookie, 8);
		memcpy(q + qlen + 12, h->server_cookie, h->server_cookie_len);
		wire_put16(opt + 9, (uint16_t)(12 + h->server_cookie_len));
		qlen += 12 + h->server_cookie_len;
	}
	struct outsock *s = upstream_sock_open(u, i, q, qlen);
	u->stats.probes++;
	if (s) {
		s->probe = 1;
		h->probe = s;
		h->probe_deadline = uv_now(u->loop) + u->attempt_ms;
	}
}

/* The next probe of a dead upstream after twice the last wait, at most PROBE_MAX_MS. */
static void back_off(struct health *h, uint64_t now)
{
	h->probe_backoff_ms =
		h->probe_backoff_ms * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : h->probe_backoff_ms * 2;
	h->probe_at = now + h->probe_backoff_ms;
}

static void probe_timer_cb(uv_timer_t *t)
{
	upstream_t *u = t->data;
	uint64_t now = uv_now(u->loop);
	for (unsigned i = 0; i < u->o->nupstream; i++) {
		struct health *h = &u->health[i];
		if (!h->down)
			continue;
		if (h->probe && h->probe_deadline <= now) {
			upstream_sock_close(h->probe);
			back_off(h, now);
		} else if (!h->probe && h->probe_at <= now && u->o->upstream_tls[i]) {
			/* Over TLS (never in clear text): a link whose verified handshake marks i
			 * up; the next is due after the back-off. */
			u->tls_probe(u, i);
			back_off(h, now);
		} else if (!h->probe && h->probe_at <= now) {
			probe_send(u, i);
			if (!h->probe)
				h->probe_at = now + h->probe_backoff_ms;
		}
	}
	upstream_health_arm_probe_timer(u);
}
