/* Serve-stale deadlines (upstream_due.h). Every client has the same stale timeout, so appending
 * keeps the list in deadline order and one timer for its head is enough. Must not free a waiter:
 * that is the end of its question (upstream_question). */
#include "config.h"

#include "resolver/upstream/upstream_due.h"

static void due_timer_cb(uv_timer_t *t);

/* Every waiter has the same stale timeout, so the list is in deadline order as appended. */
static void due_arm(upstream_t *u)
{
	if (!u->due_head) {
		uv_timer_stop(&u->due_timer);
		return;
	}
	uint64_t now = uv_now(u->loop);
	uv_timer_start(&u->due_timer, due_timer_cb, u->due_head->due > now ? u->due_head->due - now : 0,
		       0);
}

void upstream_due_remove(upstream_t *u, struct waiter *w)
{
	if (!w->in_due)
		return;
	if (w->due_prev)
		w->due_prev->due_next = w->due_next;
	else
		u->due_head = w->due_next;
	if (w->due_next)
		w->due_next->due_prev = w->due_prev;
	else
		u->due_tail = w->due_prev;
	w->due_prev = w->due_next = NULL;
	w->in_due = 0;
}

void upstream_due_append(upstream_t *u, struct waiter *w)
{
	w->due_prev = u->due_tail;
	w->due_next = NULL;
	if (u->due_tail)
		u->due_tail->due_next = w;
	else
		u->due_head = w;
	u->due_tail = w;
	w->in_due = 1;
	if (u->due_head == w)
		due_arm(u);
}

/* A client that may have a stale answer has waited long enough: the query path answers it from
 * the cache if it still can, and its question goes on as the entry's refresh. */
static void due_timer_cb(uv_timer_t *t)
{
	upstream_t *u = t->data;
	uint64_t now = uv_now(u->loop);
	while (u->due_head && u->due_head->due <= now) {
		struct waiter *w = u->due_head;
		upstream_due_remove(u, w);
		if (u->cb(u->ctx, &w->client, w->query, &w->q, NULL, 0, NULL, UPSTREAM_DUE))
			w->answered = 1;
	}
	due_arm(u);
}
