/* Reloads: on the main thread, server_reload() checks the new listen
 * addresses, queues the reload for every worker and wakes it, and server_reclaim() frees the
 * reloads no worker reads any more; on a worker's thread, server_reload_take() takes one on
 * (listeners, access list, upstreams, local answers) and server_reload_show_gens() tells the
 * main thread which generations it still reads. It never frees a reload a worker may still
 * read, and never creates or stops workers (server.c). */
#include "config.h"

#include "resolver/server_reload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "resolver/base/log.h"
#include "resolver/net/tcp.h"
#include "resolver/base/tls.h"
#include "resolver/net/udp.h"
#include "resolver/query/query.h"
#include "resolver/query/worker.h"

static int same_upstreams(const struct options *a, const struct options *b)
{
	if (a->nupstream != b->nupstream || a->timeout_ms != b->timeout_ms ||
	    a->use_0x20 != b->use_0x20 || a->cookies != b->cookies ||
	    a->outgoing_range != b->outgoing_range || a->jostle_ms != b->jostle_ms ||
	    strcmp(a->upstream_ca, b->upstream_ca) != 0)
		return 0;
	for (unsigned i = 0; i < a->nupstream; i++)
		if (options_addr_len(&a->upstream[i]) != options_addr_len(&b->upstream[i]) ||
		    memcmp(&a->upstream[i], &b->upstream[i], options_addr_len(&a->upstream[i])) != 0 ||
		    a->upstream_tls[i] != b->upstream_tls[i] ||
		    strcmp(a->upstream_tls_name[i], b->upstream_tls_name[i]) != 0)
			return 0;
	return 1;
}

/* Listen on what n names and on nothing else: listeners on the addresses n keeps go on
 * untouched. The main thread has made sure that the new addresses are free (server_reload); a
 * worker that still fails to bind one says so, the others serve it, and it is not tried again
 * until a reload adds it anew (by then another program's socket with SO_REUSEPORT could hold
 * it, and a bind would silently share its traffic). */
static void reopen_listeners(struct worker *w, const struct options *n)
{
	udp_flush(w); /* The send queue names the sockets that are about to close. */
	for (unsigned i = 0; i < w->o->nlisten; i++) {
		const struct sockaddr_storage *was = &w->o->listen[i];
		if (options_find_addr(n->listen, n->nlisten, was) < 0) {
			udp_unlisten(w, was);
			tcp_unlisten(w, was);
		}
	}
	char err[160];
	for (unsigned i = 0; i < n->nlisten; i++) {
		if (options_find_addr(w->o->listen, w->o->nlisten, &n->listen[i]) >= 0)
			continue; /* Checked and bound before (or failed then). */
		if (!udp_listening(w, &n->listen[i]) &&
		    udp_listen(w, &n->listen[i], err, sizeof(err)) < 0)
			log_err("worker %u: SIGHUP: %s", w->index, err);
		if (!tcp_listening(w, &n->listen[i]) &&
		    tcp_listen(w, &n->listen[i], 0, err, sizeof(err)) < 0)
			log_err("worker %u: SIGHUP: %s", w->index, err);
	}
}

/* Take on a configuration re-read on SIGHUP, between two queries: access list and limits, local
 * answers, every setting read per query, the listeners; new upstreams get a new upstream side
 * while the old one answers what it already holds. */
void server_reload_take(struct worker *w)
{
	const struct server_reload *r =
		atomic_exchange_explicit(&w->reload, NULL, memory_order_acquire);
	if (!r)
		return;
	if (!w->stopping)
		reopen_listeners(w, r->o);
	if (admit_reconfigure(w->admit, r->o) < 0)
		log_warn("worker %u: out of memory: the access list stays as it was", w->index);
	w->o = r->o;
	w->o_gen = r->gen;
	w->local = r->local;
	w->tls = r->tls;
	w->gen_changed = 1;
	w->up_lag = 0;
	server_reload_upstreams(w);
}

void server_reload_upstreams(struct worker *w)
{
	if (same_upstreams(w->up_o, w->o)) {
		w->up_lag = 0;
		return;
	}
	int rc;
	upstream_t *u = w->nup_old < sizeof(w->up_old) / sizeof(w->up_old[0])
				? upstream_new(&w->loop, w->o, query_upstream_answer, w, &rc)
				: NULL;
	if (!u) {
		/* Tried again every 200 ms (query.c refuses to forward meanwhile when the new
		 * upstreams are tls:// and the old ones are not). */
		if (!w->up_lag)
			log_warn("worker %u: cannot change upstreams now (too many reloads at once, "
				 "or out of memory): the old ones stay until it can%s", w->index,
				 w->o->upstream_tls[0] && !w->up_o->upstream_tls[0]
					 ? "; meanwhile nothing is forwarded, as the new ones are TLS"
					 : "");
		w->up_lag = 1;
		w->up_lag_retry = uv_now(&w->loop) + 200;
		return;
	}
	if (w->up_lag)
		log_info("worker %u: upstreams changed", w->index);
	w->up_lag = 0;
	const struct options *was = w->up_o;
	w->up_old_gen[w->nup_old] = w->up_gen;
	w->up_old[w->nup_old++] = w->up;
	w->up = u;
	w->up_o = w->o;
	w->up_gen = w->o_gen;
	w->gen_changed = 1;
	upstream_set_latency(u, w->o->metrics.ss_family ? w->lat_up : NULL);
	/* A position that now holds another upstream starts its histogram again. */
	for (unsigned i = 0; i < OPTIONS_MAX_ADDRS; i++)
		if (i >= w->o->nupstream || i >= was->nupstream ||
		    !options_same_addr(&was->upstream[i], &w->o->upstream[i]))
			latency_clear(&w->lat_up[i]);
}

/* Show the main thread which reloads w reads (server_reclaim). */
void server_reload_show_gens(struct worker *w)
{
	uv_mutex_lock(&w->server->gens_lock);
	unsigned n = 0;
	w->shown_gens[n++] = w->o_gen;
	w->shown_gens[n++] = w->up_gen;
	for (unsigned i = 0; i < w->nup_old; i++)
		w->shown_gens[n++] = w->up_old_gen[i];
	w->nshown_gens = n;
	uv_mutex_unlock(&w->server->gens_lock);
	w->gen_changed = 0;
}

/* SO_REUSEPORT would let a second embargo (of the same user) share an address and silently take
 * half its traffic: first make sure nobody holds it, for UDP and TCP. */
int server_reload_check_free(const struct sockaddr_storage *ss, char *err, size_t errlen)
{
	static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
	for (unsigned t = 0; t < 2; t++) {
		int fd = udp_bound_socket(ss, types[t], 0);
		if (fd >= 0) {
			close(fd);
			continue;
		}
		char addr[80];
		options_format_addr(ss, addr, sizeof(addr));
		snprintf(err, errlen, "cannot listen on %s %s: %s",
			 types[t] == SOCK_DGRAM ? "UDP" : "TCP", addr, strerror(-fd));
		return fd;
	}
	return 0;
}

const struct options *server_options(server_t *s)
{
	return s->current;
}

const struct tls_creds *server_tls(server_t *s)
{
	return s->tls_current;
}

unsigned server_upstreams(server_t *s, struct sockaddr_storage out[OPTIONS_MAX_ADDRS])
{
	uv_mutex_lock(&s->upstreams_lock);
	unsigned n = s->nupstreams;
	memcpy(out, s->upstreams, n * sizeof(*out));
	uv_mutex_unlock(&s->upstreams_lock);
	return n;
}

/* May any worker still read reload r? */
static int reload_read(server_t *s, const struct server_reload *r)
{
	for (unsigned i = 0; i < s->nworkers; i++) {
		const struct worker *w = &s->workers[i];
		if (w->shown_gens[0] < r->gen)
			return 1; /* It has not passed r: it may be taking it on right now. */
		for (unsigned k = 0; k < w->nshown_gens; k++)
			if (w->shown_gens[k] == r->gen)
				return 1;
	}
	return 0;
}

unsigned server_reclaim(server_t *s, const struct options *const *pinned, unsigned npinned)
{
	if (s->nreloads < 2)
		return 0; /* The newest is in force. */
	/* Those to free go to the end of the array (the lock only guards the workers' gens). */
	unsigned kept = 0, n = s->nreloads;
	uv_mutex_lock(&s->gens_lock);
	for (unsigned i = 0; i < n; i++) {
		struct server_reload *r = s->reloads[i];
		int pin = r->o == s->current || reload_read(s, r);
		for (unsigned k = 0; k < npinned; k++)
			pin |= r->o == pinned[k];
		if (pin) {
			s->reloads[i] = s->reloads[kept];
			s->reloads[kept++] = r;
		}
	}
	uv_mutex_unlock(&s->gens_lock);
	for (unsigned i = kept; i < n; i++) {
		struct server_reload *r = s->reloads[i];
		local_free(r->local);
		tls_creds_unref(r->tls);
		options_clear(r->o);
		free(r->o);
		free(r);
	}
	s->nreloads = kept;
	return n - kept;
}

/* Can a reload listen on the addresses of o that the server does not listen on yet? */
static int check_new_listeners(server_t *s, const struct options *o, char *err, size_t errlen)
{
	const struct options *cur = server_options(s);
	for (unsigned i = 0; i < o->nlisten; i++) {
		const struct sockaddr_storage *ss = &o->listen[i];
		if (options_find_addr(cur->listen, cur->nlisten, ss) >= 0)
			continue; /* Kept: its sockets stay open. */
		int rc = server_reload_check_free(ss, err, errlen);
		if (rc == 0)
			continue;
		size_t len = strlen(err);
		if (rc == -EACCES) {
			snprintf(err + len, errlen - len,
				 " (a port below 1024 needs root or CAP_NET_BIND_SERVICE, which embargo "
				 "gives up when it drops root: restart it)");
		} else if (rc == -EADDRINUSE) {
			/* A wildcard and another address of the same port: ours holds one. */
			const struct sockaddr_storage *near = NULL;
			for (unsigned k = 0; k < cur->nlisten && !near; k++)
				if (cur->listen[k].ss_family == ss->ss_family &&
				    options_port(&cur->listen[k]) == options_port(ss) &&
				    (options_is_wildcard(ss) || options_is_wildcard(&cur->listen[k])))
					near = &cur->listen[k];
			char addr[80];
			if (near) {
				options_format_addr(near, addr, sizeof(addr));
				snprintf(err + len, errlen - len,
					 " (it overlaps %s, which embargo listens on: drop that one "
					 "in one reload and add this one in the next, or restart)",
					 addr);
			} else {
				snprintf(err + len, errlen - len, " (another program holds it)");
			}
		}
		return rc;
	}
	return 0;
}

int server_reload(server_t *s, struct options *o, local_t *local, struct tls_creds *tls,
		  char *err, size_t errlen)
{
	int rc = upstream_check_loop(o, err, errlen);
	if (rc == 0)
		rc = upstream_check_tls(o, err, errlen);
	if (rc == 0)
		rc = check_new_listeners(s, o, err, errlen);
	if (rc < 0)
		return rc;
	snprintf(err, errlen, "out of memory");
	struct server_reload **all = realloc(s->reloads, (s->nreloads + 1) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	s->reloads = all;
	struct server_reload *r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->o = o;
	r->local = local;
	/* A new certificate, or the one in force for the connections from now on. */
	if (tls) {
		s->tls_current = tls;
	} else if (s->tls_current) {
		tls_creds_ref(s->tls_current);
		tls = s->tls_current;
	}
	r->tls = tls;
	r->gen = ++s->gen;
	s->reloads[s->nreloads++] = r;
	s->current = o;
	uv_mutex_lock(&s->upstreams_lock);
	memcpy(s->upstreams, o->upstream, sizeof(s->upstreams));
	s->nupstreams = o->nupstream;
	uv_mutex_unlock(&s->upstreams_lock);
	for (unsigned i = 0; i < s->nworkers; i++) {
		atomic_store_explicit(&s->workers[i].reload, r, memory_order_release);
		if (s->workers[i].started == 1)
			uv_async_send(&s->workers[i].wake);
	}
	return 0;
}
