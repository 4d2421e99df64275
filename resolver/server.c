/* Worker loops: server.c creates them, binds their sockets, runs each on its own thread and
 * stops them; what happens inside is the transports' (udp.c, tcp.c) and the query path's
 * (query.c). Workers share only the policy store (lock-free reads) and the sharded cache. */
#include "config.h"

#include "resolver/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "resolver/query/local.h"
#include "resolver/base/log.h"
#include "resolver/query/query.h"
#include "resolver/net/tcp.h"
#include "resolver/net/udp.h"
#include "resolver/query/worker.h"

/* ---- Loop hooks -------------------------------------------------------------------------- */

#define UPSTREAM_STAT_FIELDS(X) \
	X(sent) X(answered) X(timeouts) X(mismatched) X(case_mismatched) X(cookie_mismatched) \
	X(soft_failures) X(merged) X(tcp_fallbacks) X(tcp_full) X(pool_full) X(jostled) \
	X(sockets_full) X(probes)

static void add_upstream_stats(struct upstream_stats *to, const struct upstream_stats *from)
{
#define ADD(f) to->f += from->f;
	UPSTREAM_STAT_FIELDS(ADD)
#undef ADD
}

/* The worker's upstream counters: the current upstream's, those replaced by reloads and those
 * they still hold. */
static struct upstream_stats worker_upstream_stats(const struct worker *w)
{
	struct upstream_stats u = w->up_retired;
	if (w->up)
		add_upstream_stats(&u, upstream_stats(w->up));
	for (unsigned i = 0; i < w->nup_old; i++)
		add_upstream_stats(&u, upstream_stats(w->up_old[i]));
	return u;
}

/* Upstreams replaced by a reload close once nothing waits on them. */
static void retire_upstreams(struct worker *w, int all)
{
	for (unsigned i = 0; i < w->nup_old;) {
		upstream_t *u = w->up_old[i];
		if (!all && upstream_pending(u) > 0) {
			i++;
			continue;
		}
		add_upstream_stats(&w->up_retired, upstream_stats(u));
		upstream_close(u);
		w->nup_old--;
		w->up_old[i] = w->up_old[w->nup_old];
		w->up_old_gen[i] = w->up_old_gen[w->nup_old];
		w->gen_changed = 1;
	}
}

static int same_upstreams(const struct options *a, const struct options *b)
{
	if (a->nupstream != b->nupstream || a->timeout_ms != b->timeout_ms ||
	    a->use_0x20 != b->use_0x20 || a->cookies != b->cookies ||
	    a->outgoing_range != b->outgoing_range || a->jostle_ms != b->jostle_ms)
		return 0;
	for (unsigned i = 0; i < a->nupstream; i++)
		if (options_addr_len(&a->upstream[i]) != options_addr_len(&b->upstream[i]) ||
		    memcmp(&a->upstream[i], &b->upstream[i], options_addr_len(&a->upstream[i])) != 0)
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
		    tcp_listen(w, &n->listen[i], err, sizeof(err)) < 0)
			log_err("worker %u: SIGHUP: %s", w->index, err);
	}
}

/* Take on a configuration re-read on SIGHUP, between two queries: access list and limits, local
 * answers, every setting read per query, the listeners; new upstreams get a new upstream side
 * while the old one answers what it already holds. */
static void take_reload(struct worker *w)
{
	const struct server_reload *r =
		atomic_exchange_explicit(&w->reload, NULL, memory_order_acquire);
	if (!r)
		return;
	if (!w->stopping)
		reopen_listeners(w, r->o);
	if (admit_reconfigure(w->admit, r->o) < 0)
		log_warn("worker %u: out of memory: the access list stays as it was", w->index);
	if (!same_upstreams(w->up_o, r->o)) {
		int rc;
		upstream_t *u = w->nup_old < sizeof(w->up_old) / sizeof(w->up_old[0])
					? upstream_new(&w->loop, r->o, query_upstream_answer, w, &rc)
					: NULL;
		if (u) {
			const struct options *was = w->up_o;
			w->up_old_gen[w->nup_old] = w->up_gen;
			w->up_old[w->nup_old++] = w->up;
			w->up = u;
			w->up_o = r->o;
			w->up_gen = r->gen;
			upstream_set_latency(u, r->o->metrics.ss_family ? w->lat_up : NULL);
			/* A position that now holds another upstream starts its histogram again. */
			for (unsigned i = 0; i < OPTIONS_MAX_ADDRS; i++)
				if (i >= r->o->nupstream || i >= was->nupstream ||
				    !options_same_addr(&was->upstream[i], &r->o->upstream[i]))
					latency_clear(&w->lat_up[i]);
		} else {
			log_warn("worker %u: cannot change upstreams now (too many reloads at once, or "
				 "out of memory); the old ones stay", w->index);
		}
	}
	w->o = r->o;
	w->o_gen = r->gen;
	w->local = r->local;
	w->gen_changed = 1;
}

/* Show the main thread which reloads w reads (server_reclaim). */
static void show_gens(struct worker *w)
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

static void publish_stats(struct worker *w)
{
	/* Admission keeps its own counters; they show as the server's. */
	const struct admit_stats *a = admit_stats(w->admit);
	w->st.rate_limited = a->rate_slipped + a->rate_dropped;
	w->st.tcp_open = tcp_open_count(w);
	if (w->up) {
		struct upstream_stats u = worker_upstream_stats(w);
		w->st.up_sent = u.sent;
		w->st.up_answered = u.answered;
		w->st.up_timeouts = u.timeouts;
		w->st.up_soft_failures = u.soft_failures;
		w->st.up_ignored = u.mismatched + u.case_mismatched + u.cookie_mismatched;
		w->st.up_tcp_fallbacks = u.tcp_fallbacks;
		w->st.up_merged = u.merged;
	}
#define PUBLISH(f) atomic_store_explicit(&w->shown_##f, w->st.f, memory_order_relaxed);
	WORKER_STAT_FIELDS(PUBLISH)
#undef PUBLISH
#define PUBLISH_ARRAY(f, n) \
	for (unsigned k = 0; k < (n); k++) \
		atomic_store_explicit(&w->shown_##f[k], w->st.f[k], memory_order_relaxed);
	WORKER_STAT_ARRAYS(PUBLISH_ARRAY)
#undef PUBLISH_ARRAY
}

static void on_prepare(uv_prepare_t *h)
{
	struct worker *w = h->data;
	udp_flush(w);
	publish_stats(w);
	if (w->gen_changed)
		show_gens(w); /* The handles closed in the last iteration are gone now. */
	/* The loop may block now: this worker holds no policy snapshot until its next callback. */
	policy_store_quiescent(w->reader);
}

static void on_check(uv_check_t *h)
{
	struct worker *w = h->data;
	udp_flush(w);
	take_reload(w);
	if (w->nup_old)
		retire_upstreams(w, 0);
}

static void on_wake(uv_async_t *h)
{
	take_reload(h->data);
}

/* Close everything: the worker's loop then runs out of handles and its thread ends. */
static void finish_stop(struct worker *w)
{
	udp_flush(w);
	publish_stats(w);
	udp_close(w);
	tcp_close(w);
	if (w->up)
		w->up_stats = worker_upstream_stats(w);
	retire_upstreams(w, 1);
	upstream_close(w->up);
	w->up = NULL;
	uv_close((uv_handle_t *)&w->prepare, NULL);
	uv_close((uv_handle_t *)&w->check, NULL);
	uv_close((uv_handle_t *)&w->stop, NULL);
	uv_close((uv_handle_t *)&w->drain, NULL);
	uv_close((uv_handle_t *)&w->wake, NULL);
	uv_close((uv_handle_t *)&w->report_timer, NULL);
	policy_store_quiescent(w->reader);
}

/* --report-clients: what this worker counted goes to the main loop (if it took the last). */
static void on_report_timer(uv_timer_t *t)
{
	struct worker *w = t->data;
	client_report_publish(w->report);
}

static void on_drain(uv_timer_t *t)
{
	struct worker *w = t->data;
	unsigned pending = w->up ? upstream_pending(w->up) : 0;
	for (unsigned i = 0; i < w->nup_old; i++)
		pending += upstream_pending(w->up_old[i]);
	if (pending > 0 && uv_now(&w->loop) < w->drain_until)
		return;
	uv_timer_stop(t);
	finish_stop(w);
}

/* Stop: no new query is read or accepted; the questions already upstream are answered for up to
 * SERVER_DRAIN_MS, then everything closes. */
static void on_stop(uv_async_t *h)
{
	struct worker *w = h->data;
	if (uv_is_active((uv_handle_t *)&w->drain) || uv_is_closing((uv_handle_t *)&w->drain))
		return;
	w->stopping = 1;
	udp_pause(w);
	tcp_stop_accepting(w);
	w->drain_until = uv_now(&w->loop) + SERVER_DRAIN_MS;
	uv_timer_start(&w->drain, on_drain, 0, 20);
}

static void worker_main(void *arg)
{
	struct worker *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* ---- Set-up ------------------------------------------------------------------------------ */

static int worker_init(server_t *s, struct worker *w, unsigned index, char *err, size_t errlen)
{
	const struct options *o = s->o;
	w->server = s;
	w->o = o;
	w->index = index;
	w->local = s->local;
	w->reader = policy_store_reader(s->store, index);
	w->answer = malloc(WORKER_ANSWER_MAX);
	w->admit = admit_new(o);
	w->hits = rule_hits_new();
	w->fails = failcache_new();
	w->report = o->report_clients ? client_report_new() : NULL;
	if (!w->answer || !w->admit || !w->hits || !w->fails || (o->report_clients && !w->report) ||
	    udp_init(w) < 0 || tcp_init(w) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = uv_loop_init(&w->loop);
	if (rc < 0) {
		snprintf(err, errlen, "cannot create an event loop: %s", uv_strerror(rc));
		return rc;
	}
	w->loop_ready = 1;
	uv_async_init(&w->loop, &w->stop, on_stop);
	uv_prepare_init(&w->loop, &w->prepare);
	uv_check_init(&w->loop, &w->check);
	uv_timer_init(&w->loop, &w->drain);
	uv_async_init(&w->loop, &w->wake, on_wake);
	uv_timer_init(&w->loop, &w->report_timer);
	w->stop.data = w->prepare.data = w->check.data = w->drain.data = w->wake.data = w;
	w->report_timer.data = w;
	uv_prepare_start(&w->prepare, on_prepare);
	uv_check_start(&w->check, on_check);
	if (w->report)
		uv_timer_start(&w->report_timer, on_report_timer, SERVER_REPORT_MS, SERVER_REPORT_MS);
	w->up = upstream_new(&w->loop, o, query_upstream_answer, w, &rc);
	w->up_o = o;
	if (!w->up) {
		snprintf(err, errlen, "cannot open upstream sockets: %s", uv_strerror(rc));
		return rc;
	}
	upstream_set_latency(w->up, o->metrics.ss_family ? w->lat_up : NULL);
	for (unsigned i = 0; i < o->nlisten; i++) {
		rc = udp_listen(w, &o->listen[i], err, errlen);
		if (rc == 0)
			rc = tcp_listen(w, &o->listen[i], err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Free what a worker allocated, once its loop is closed. */
static void worker_free(struct worker *w)
{
	udp_free(w);
	tcp_free(w);
	admit_free(w->admit);
	w->admit = NULL;
	rule_hits_free(w->hits);
	w->hits = NULL;
	failcache_free(w->fails);
	w->fails = NULL;
	client_report_free(w->report);
	w->report = NULL;
	free(w->answer);
	w->answer = NULL;
}

/* Close a worker that never started: run its loop until every handle is gone. */
static void worker_teardown(struct worker *w)
{
	if (w->loop_ready) {
		if (!uv_is_closing((uv_handle_t *)&w->stop))
			on_stop(&w->stop);
		uv_run(&w->loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&w->loop) != 0)
			log_warn("worker %u: event loop still had open handles at exit", w->index);
	}
	worker_free(w);
}

/* SO_REUSEPORT would let a second embargo (of the same user) share an address and silently take
 * half its traffic: first make sure nobody holds it, for UDP and TCP. */
static int check_free(const struct sockaddr_storage *ss, char *err, size_t errlen)
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

int server_new(server_t **out, const struct options *o, policy_store_t *store, cache_t *cache,
	       char *err, size_t errlen)
{
	int rc = upstream_check_loop(o, err, errlen);
	if (rc < 0)
		return rc;
	server_t *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->o = o;
	s->store = store;
	s->cache = cache;
	s->local = local_new(o, err, errlen);
	if (!s->local) {
		free(s);
		return -EINVAL;
	}
	s->nworkers = o->threads;
	s->workers = aligned_alloc(64, (s->nworkers * sizeof(struct worker) + 63) / 64 * 64);
	if (!s->workers) {
		local_free(s->local);
		free(s);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memset(s->workers, 0, s->nworkers * sizeof(struct worker));
	s->current = o;
	memcpy(s->upstreams, o->upstream, sizeof(s->upstreams));
	s->nupstreams = o->nupstream;
	for (unsigned i = 0; i < s->nworkers; i++)
		s->workers[i].timed = o->metrics.ss_family != 0;
	rc = 0;
	for (unsigned i = 0; i < o->nlisten && rc == 0; i++)
		rc = check_free(&o->listen[i], err, errlen);
	if (rc == 0 && uv_mutex_init(&s->upstreams_lock) < 0) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
	} else if (rc == 0 && uv_mutex_init(&s->gens_lock) < 0) {
		uv_mutex_destroy(&s->upstreams_lock);
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
	}
	if (rc < 0) {
		free(s->workers);
		local_free(s->local);
		free(s);
		return rc;
	}
	for (unsigned i = 0; i < s->nworkers; i++) {
		rc = worker_init(s, &s->workers[i], i, err, errlen);
		if (rc < 0) {
			server_free(s);
			return rc;
		}
	}
	*out = s;
	return 0;
}

int server_start(server_t *s)
{
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
		int rc = uv_thread_create(&w->thread, worker_main, w);
		if (rc < 0)
			return rc;
		w->started = 1;
	}
	return 0;
}

void server_stop(server_t *s)
{
	for (unsigned i = 0; i < s->nworkers; i++)
		if (s->workers[i].started == 1)
			uv_async_send(&s->workers[i].stop);
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
		if (w->started == 1) {
			uv_thread_join(&w->thread);
			w->started = 2; /* Joined; its loop is empty. */
		}
	}
}

void server_free(server_t *s)
{
	if (!s)
		return;
	server_stop(s);
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
		if (w->started) {
			if (uv_loop_close(&w->loop) != 0)
				log_warn("worker %u: event loop still had open handles at exit", i);
			worker_free(w);
		} else {
			worker_teardown(w);
		}
	}
	free(s->workers);
	local_free(s->local);
	for (unsigned i = 0; i < s->nreloads; i++) {
		local_free(s->reloads[i]->local);
		options_clear(s->reloads[i]->o);
		free(s->reloads[i]->o);
		free(s->reloads[i]);
	}
	free(s->reloads);
	uv_mutex_destroy(&s->upstreams_lock);
	uv_mutex_destroy(&s->gens_lock);
	free(s);
}

void server_stats(server_t *s, struct server_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
#define SUM(f) out->f += atomic_load_explicit(&w->shown_##f, memory_order_relaxed);
		WORKER_STAT_FIELDS(SUM)
#undef SUM
#define SUM_ARRAY(f, n) \
	for (unsigned k = 0; k < (n); k++) \
		out->f[k] += atomic_load_explicit(&w->shown_##f[k], memory_order_relaxed);
		WORKER_STAT_ARRAYS(SUM_ARRAY)
#undef SUM_ARRAY
	}
}

void server_set_hold(server_t *s, enum redis_sync_hold kind, size_t removed, size_t of,
		     uint64_t version)
{
	atomic_store_explicit(&s->hold_removed, removed, memory_order_relaxed);
	atomic_store_explicit(&s->hold_of, of, memory_order_relaxed);
	atomic_store_explicit(&s->hold_version, version, memory_order_relaxed);
	atomic_store_explicit(&s->hold_kind, (int)kind, memory_order_release);
}

unsigned server_workers(const server_t *s)
{
	return s->nworkers;
}

void server_upstream_stats(server_t *s, struct upstream_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < s->nworkers; i++) {
		add_upstream_stats(out, &s->workers[i].up_stats);
	}
}

enum redis_sync_hold server_hold(const server_t *s)
{
	return (enum redis_sync_hold)atomic_load_explicit(&s->hold_kind, memory_order_relaxed);
}

void server_rule_hits(server_t *s, struct rule_hit *out, size_t *n, size_t max, uint64_t *other)
{
	*n = 0;
	*other = 0;
	for (unsigned i = 0; i < s->nworkers; i++)
		if (s->workers[i].hits)
			rule_hits_merge(s->workers[i].hits, out, n, max, other);
}

void server_path_latency(server_t *s, unsigned decision, uint64_t bucket[LATENCY_BUCKETS],
			 uint64_t *sum_ns)
{
	memset(bucket, 0, LATENCY_BUCKETS * sizeof(*bucket));
	*sum_ns = 0;
	for (unsigned i = 0; i < s->nworkers && decision < QUERY_LOG_DECISIONS; i++)
		latency_add(&s->workers[i].lat_path[decision], bucket, sum_ns);
}

void server_upstream_latency(server_t *s, unsigned i, uint64_t bucket[LATENCY_BUCKETS],
			     uint64_t *sum_ns)
{
	memset(bucket, 0, LATENCY_BUCKETS * sizeof(*bucket));
	*sum_ns = 0;
	for (unsigned k = 0; k < s->nworkers && i < OPTIONS_MAX_ADDRS; k++)
		latency_add(&s->workers[k].lat_up[i], bucket, sum_ns);
}

const struct options *server_options(server_t *s)
{
	return s->current;
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
		options_clear(r->o);
		free(r->o);
		free(r);
	}
	s->nreloads = kept;
	return n - kept;
}

size_t server_client_report(server_t *s, void (*fn)(void *ctx, const struct client_denial *d),
			    void *ctx, uint64_t *dropped)
{
	size_t n = 0;
	*dropped = 0;
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
		if (!w->report)
			continue;
		n += client_report_take(w->report, fn, ctx);
		if (w->started == 2) {
			/* Joined: its own table is no one's now; hand it over too. */
			client_report_publish(w->report);
			n += client_report_take(w->report, fn, ctx);
		}
		*dropped += client_report_dropped(w->report);
	}
	return n;
}

void server_set_query_log(server_t *s, query_log_t *log)
{
	for (unsigned i = 0; i < s->nworkers; i++) {
		s->workers[i].qlog = query_log_ring(log, i);
		s->workers[i].timed |= s->workers[i].qlog != NULL;
	}
}

/* Can a reload listen on the addresses of o that the server does not listen on yet? */
static int check_new_listeners(server_t *s, const struct options *o, char *err, size_t errlen)
{
	const struct options *cur = server_options(s);
	for (unsigned i = 0; i < o->nlisten; i++) {
		const struct sockaddr_storage *ss = &o->listen[i];
		if (options_find_addr(cur->listen, cur->nlisten, ss) >= 0)
			continue; /* Kept: its sockets stay open. */
		int rc = check_free(ss, err, errlen);
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

int server_reload(server_t *s, struct options *o, local_t *local, char *err, size_t errlen)
{
	int rc = upstream_check_loop(o, err, errlen);
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
