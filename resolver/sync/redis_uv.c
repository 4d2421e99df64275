/* hiredis event hooks on a uv_poll_t. The poll handle outlives the context: cleanup detaches
 * it and uv_close frees it in the close callback. It never reads or writes the socket itself:
 * hiredis does, when told it is ready. */
#include "config.h"

#include "resolver/sync/redis_uv.h"

#include <errno.h>
#include <stdlib.h>

struct redis_uv {
	uv_poll_t poll;
	redisAsyncContext *ac; /* NULL once hiredis has cleaned up. */
	int events;
};

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct redis_uv *p = h->data;
	/* On an error, let hiredis try what it waits for: it reads the socket error itself. */
	int ev = status < 0 ? p->events : events;
	if (p->ac && (ev & UV_READABLE))
		redisAsyncHandleRead(p->ac);
	if (p->ac && (ev & UV_WRITABLE))
		redisAsyncHandleWrite(p->ac);
}

static void update(struct redis_uv *p, int add, int del)
{
	p->events = (p->events | add) & ~del;
	if (p->events)
		uv_poll_start(&p->poll, p->events, on_poll);
	else
		uv_poll_stop(&p->poll);
}

static void add_read(void *privdata)
{
	update(privdata, UV_READABLE, 0);
}

static void del_read(void *privdata)
{
	update(privdata, 0, UV_READABLE);
}

static void add_write(void *privdata)
{
	update(privdata, UV_WRITABLE, 0);
}

static void del_write(void *privdata)
{
	update(privdata, 0, UV_WRITABLE);
}

static void on_close(uv_handle_t *h)
{
	free(h->data);
}

static void cleanup(void *privdata)
{
	struct redis_uv *p = privdata;
	p->ac = NULL;
	uv_close((uv_handle_t *)&p->poll, on_close);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
	if (ac->ev.data)
		return -EEXIST;
	struct redis_uv *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	int rc = uv_poll_init(loop, &p->poll, ac->c.fd);
	if (rc < 0) {
		free(p);
		return rc;
	}
	p->poll.data = p;
	p->ac = ac;
	ac->ev.addRead = add_read;
	ac->ev.delRead = del_read;
	ac->ev.addWrite = add_write;
	ac->ev.delWrite = del_write;
	ac->ev.cleanup = cleanup;
	ac->ev.data = p;
	/* A context still connecting waits for writability (hiredis >= 1.0 does the same). */
	if (!(ac->c.flags & REDIS_CONNECTED))
		add_write(p);
	return 0;
}
