/* Upstream questions (upstream_question.h). Every attempt has the same timeout, so appending
 * keeps the FIFO in deadline order and one timer for its head is enough. A question's end takes
 * it off every list it is on (FIFO, merge table, TCP link) before its slot returns to the pool;
 * taking it off a link is here, not in upstream_tcp, so that the end needs nothing above it.
 * Must not read a socket. */
#include "config.h"

#include "resolver/upstream/upstream_question.h"

#include <string.h>

#include "resolver/upstream/upstream_due.h"
#include "resolver/upstream/upstream_health.h"
#include "resolver/upstream/upstream_sock.h"

static void timer_cb(uv_timer_t *t);

/* ---- The FIFO of attempts --------------------------------------------------------------- */

void upstream_question_fifo_remove(upstream_t *u, struct pending *p)
{
	if (!p->in_fifo)
		return;
	if (p->prev)
		p->prev->next = p->next;
	else
		u->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		u->tail = p->prev;
	p->prev = p->next = NULL;
	p->in_fifo = 0;
}

static void arm_timer(upstream_t *u)
{
	if (!u->head || u->closing) {
		uv_timer_stop(&u->timer);
		return;
	}
	uint64_t now = uv_now(u->loop);
	uv_timer_start(&u->timer, timer_cb,
		       u->head->deadline > now ? u->head->deadline - now : 0, 0);
}

static void fifo_append(upstream_t *u, struct pending *p)
{
	p->prev = u->tail;
	p->next = NULL;
	if (u->tail)
		u->tail->next = p;
	else
		u->head = p;
	u->tail = p;
	p->in_fifo = 1;
	if (u->head == p)
		arm_timer(u);
}

/* ---- Our own query ---------------------------------------------------------------------- */

/* Write the question's header and OPT record for the next attempt to upstream i: a new ID,
 * new letter case, the upstream's cookie. */
static void prepare_query(upstream_t *u, struct pending *p, unsigned i)
{
	uint8_t *b = p->query;
	wire_put16(b, upstream_state_random16(u));
	uint8_t *name = b + WIRE_HEADER;
	/* 0x20: each letter's case from one random bit; without it, lower case. */
	uint8_t bits[NAME_MAXWIRE / 8 + 1];
	if (p->use_0x20)
		upstream_state_random_bytes(u, bits, (p->name_len + 7) / 8);
	for (unsigned k = 0; k < p->name_len;) {
		unsigned l = name[k++];
		for (unsigned e = k + l; k < e; k++) {
			uint8_t c = name[k] | 0x20;
			if (c < 'a' || c > 'z')
				continue;
			name[k] = p->use_0x20 && (bits[k / 8] >> (k % 8)) & 1 ? (uint8_t)(c & ~0x20) : c;
		}
	}
	/* OPT: root owner, type 41, our size, extended RCODE 0, version 0, DO as the clients. */
	size_t off = WIRE_HEADER + p->name_len + 4 + 11;
	uint8_t *opt = b + off - 11;
	uint16_t rdlen = 0;
	struct health *h = &u->health[i];
	p->cookie_sent = 0;
	if (u->o->cookies) {
		wire_put16(b + off, WIRE_EDNS_COOKIE);
		wire_put16(b + off + 2, (uint16_t)(8 + h->server_cookie_len));
		memcpy(b + off + 4, h->client_cookie, 8);
		memcpy(b + off + 12, h->server_cookie, h->server_cookie_len);
		rdlen = (uint16_t)(12 + h->server_cookie_len);
		p->cookie_sent = 1;
	}
	if (u->o->upstream_tls[i]) {
		/* Over TLS, padded to a multiple of 128 octets (RFC 7830, RFC 8467 4.1): the
		 * records' length does not tell the name's. At most 512 octets (OUT_MAX). */
		size_t end = off + rdlen + 4, pad = (128 - end % 128) % 128;
		wire_put16(b + off + rdlen, WIRE_EDNS_PADDING);
		wire_put16(b + off + rdlen + 2, (uint16_t)pad);
		memset(b + end, 0, pad);
		rdlen = (uint16_t)(rdlen + 4 + pad);
	}
	wire_put16(opt + 9, rdlen);
	p->len = (uint16_t)(off + rdlen);
}

/* ---- Finishing ---------------------------------------------------------------------------- */

static void table_remove(upstream_t *u, struct pending *p)
{
	if (!p->in_table)
		return;
	struct pending **pp = &u->buckets[p->hash & (MERGE_BUCKETS - 1)];
	while (*pp != p)
		pp = &(*pp)->hnext;
	*pp = p->hnext;
	p->in_table = 0;
}

/* Take p off its link. Unless its answer came (answered), its ID stays retired on the link:
 * an answer to it may still come, and must not be taken for a later question's. */
void upstream_question_link_unlink(struct pending *p, int answered)
{
	struct tcp_link *l = p->link;
	if (!answered && p->link_sent)
		l->retired[l->nretired++ % 256] = wire_get16(p->query);
	if (p->link_prev)
		p->link_prev->link_next = p->link_next;
	else
		l->head = p->link_next;
	if (p->link_next)
		p->link_next->link_prev = p->link_prev;
	else
		l->tail = p->link_prev;
	p->link = NULL;
	p->link_prev = p->link_next = NULL;
	l->nout--;
	l->u->nfetches--;
	if (l->nout == 0)
		l->idle_since = uv_now(l->u->loop);
}

static void release(upstream_t *u, struct pending *p)
{
	upstream_question_fifo_remove(u, p);
	table_remove(u, p);
	if (p->sock)
		upstream_sock_close(p->sock);
	if (p->link)
		upstream_question_link_unlink(p, 0);
	p->next = u->free;
	u->free = p;
	u->npending--;
}

/* Finish p with reply (NULL: failure): every waiter gets its own copy, then p is released. */
void upstream_question_finish(upstream_t *u, struct pending *p, const uint8_t *reply, size_t len)
{
	upstream_question_fifo_remove(u, p);
	/* No new waiter may join a question that is being answered. */
	table_remove(u, p);
	if (reply) {
		u->stats.answered++;
		/* The normalised answer: embargo offers recursion whatever the upstream is (an
		 * authoritative server clears RA) and is no authority (AA clear, as Unbound, BIND
		 * and PowerDNS Recursor answer); the upstream's cookie is embargo's, not the
		 * clients'; a client that sent no OPT gets none (RFC 6891 7). */
		memcpy(u->deliver, reply, len);
		u->deliver[3] |= WIRE_FLAG_RA;
		u->deliver[2] &= (uint8_t)~(WIRE_FLAG_AA >> 8); /* embargo is not the authority. */
		len = wire_remove_edns_option(u->deliver, len, WIRE_EDNS_COOKIE);
		if (!p->has_edns)
			len = wire_remove_opt(u->deliver, len);
	} else {
		u->stats.timeouts++;
	}
	struct waiter *w = p->waiters;
	p->waiters = p->last_waiter = NULL;
	unsigned first = UPSTREAM_FIRST;
	while (w) {
		struct waiter *next = w->next;
		upstream_due_remove(u, w);
		if (w->refresh)
			u->nrefresh--;
		if (!u->closing) {
			uint8_t *out = NULL;
			if (reply) {
				out = u->out;
				memcpy(out, u->deliver, len);
				wire_answer_patch(out, w->query, &w->q);
			}
			u->cb(u->ctx, &w->client, w->query, &w->q, out, reply ? len : 0,
			      reply ? NULL : &p->why, first | (w->answered ? UPSTREAM_ANSWERED : 0) |
				      (reply ? (p->upstream + 1u) << UPSTREAM_INDEX_SHIFT : 0));
			first = 0;
		}
		w->next = u->free_waiters;
		u->free_waiters = w;
		w = next;
	}
	release(u, p);
}

/* ---- Attempts and timeouts ---------------------------------------------------------------- */

void upstream_question_next_attempt(upstream_t *u, struct pending *p)
{
	unsigned i = p->force ? p->force - 1u : upstream_health_pick(u, p);
	p->force = 0;
	p->upstream = (uint8_t)i;
	p->tried |= (uint16_t)(1u << i);
	p->case_mismatch = 0;
	prepare_query(u, p, i);
	if (u->o->upstream_tls[i]) {
		/* Over its TLS link, never in clear text; in the FIFO first, as a link that fails
		 * at once hands p to upstream_question_attempt_failed(). */
		p->deadline = uv_now(u->loop) + u->attempt_ms;
		fifo_append(u, p);
		u->tls_send(u, p, i);
		return;
	}
	p->sock = upstream_sock_open(u, i, p->query, p->len);
	if (p->sock)
		p->sock->p = p;
	else
		p->why.given_up = 1; /* No socket here: if it fails, that says nothing of it. */
	p->deadline = uv_now(u->loop) + u->attempt_ms;
	fifo_append(u, p);
}

/* An attempt is over without an answer: ask the next upstream now, or give up. */
void upstream_question_attempt_failed(upstream_t *u, struct pending *p)
{
	upstream_question_fifo_remove(u, p);
	if (p->sock)
		upstream_sock_close(p->sock);
	if (p->link)
		upstream_question_link_unlink(p, 0); /* A TLS attempt: its ID stays retired. */
	unsigned all = (1u << u->o->nupstream) - 1;
	if (p->attempt + 1 >= ATTEMPTS || uv_now(u->loop) >= p->expire ||
	    (p->rejected & all) == all) {
		upstream_question_finish(u, p, NULL, 0);
		return;
	}
	p->attempt++;
	upstream_question_next_attempt(u, p);
}

/* Upstream i answered p with an error RCODE (SERVFAIL, REFUSED, FORMERR, NOTIMP...): it is not
 * asked p again; the next upstream may answer. Its RCODE and EDE are kept for the client if
 * none does. A first BADCOOKIE is asked again of the same upstream, with its new cookie. */
void upstream_question_rejected(upstream_t *u, struct pending *p, unsigned i,
				const uint8_t *reply, size_t len, unsigned rcode)
{
	u->stats.soft_failures++;
	if (rcode == WIRE_RCODE_BADCOOKIE && !p->badcookie_retried) {
		/* Its new server cookie is kept (upstream_cookie_check): the same upstream is asked
		 * once more with it (RFC 7873 5.3), a question of cookies, not of this question. */
		p->badcookie_retried = 1;
		p->force = (uint8_t)(i + 1);
		upstream_question_attempt_failed(u, p);
		return;
	}
	p->rejected |= (uint16_t)(1u << i);
	p->why.rejected = 1;
	p->why.rcode = (uint8_t)(rcode > 15 ? WIRE_RCODE_SERVFAIL : rcode);
	p->why.ede_code = -1;
	p->why.ede_text[0] = '\0';
	/* The EDE of a SERVFAIL is the upstream's own failure to resolve (6 DNSSEC Bogus, 9 DNSKEY
	 * Missing...), worth the client's knowing; that of a REFUSED (18 Prohibited, 20 Not
	 * Authoritative) is about embargo as the upstream's client, not about the question. */
	size_t off, olen;
	if (rcode == WIRE_RCODE_SERVFAIL &&
	    wire_find_edns_option(reply, len, WIRE_EDNS_EDE, &off, &olen) > 0 && olen >= 2) {
		p->why.ede_code = (int16_t)(wire_get16(reply + off) & 0x7FFF);
		size_t tl = olen - 2 < UPSTREAM_EDE_TEXT_MAX ? olen - 2 : UPSTREAM_EDE_TEXT_MAX;
		for (size_t k = 0; k < tl; k++) {
			uint8_t c = reply[off + 2 + k];
			p->why.ede_text[k] = c >= 0x20 && c < 0x7F ? (char)c : '?';
		}
		p->why.ede_text[tl] = '\0';
	}
	upstream_question_attempt_failed(u, p);
}

static void timer_cb(uv_timer_t *t)
{
	upstream_t *u = t->data;
	uint64_t now = uv_now(u->loop);
	while (u->head && u->head->deadline <= now) {
		struct pending *p = u->head;
		const struct tcp_link *l = p->link;
		if (l && l->connected && (!l->ready || now - p->link_sent < u->attempt_ms) &&
		    now < p->expire) {
			/* A TLS attempt whose link is connected but still shaking hands, or that was
			 * written less than an attempt's time ago: its time runs from the write, not
			 * from the connect (a fresh link costs two or three round trips more). */
			upstream_question_fifo_remove(u, p);
			p->deadline = now + u->attempt_ms;
			fifo_append(u, p);
			continue;
		}
		if (p->case_mismatch && p->use_0x20) {
			/* The upstream answered, in the wrong case only: the same upstream is asked
			 * once more without 0x20 (Unbound's caps fallback does likewise). */
			p->use_0x20 = 0;
			p->case_mismatch = 0;
			p->force = (uint8_t)(p->upstream + 1);
		} else if (p->sock || l) {
			/* No answer over UDP; or a TLS link not connected within an attempt's
			 * time, or that took the question an attempt's time ago. */
			upstream_health_mark_down(u, p->upstream);
		}
		upstream_question_attempt_failed(u, p);
	}
	arm_timer(u);
}
