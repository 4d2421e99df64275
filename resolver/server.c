/* Worker loops: server.c creates them, binds their sockets, runs each on its own thread and
 * stops them; what happens inside is the transports' (udp.c, tcp.c) and the query path's
 * (query.c). Workers share only the policy store (lock-free reads) and the sharded cache.
 * Reloads taken on by running workers, and their reclaiming, are server_reload.c's. It never
 * answers a query itself, and must not free a worker's memory before its loop is closed. */
#include "config.h"

#include "resolver/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "resolver/ddr.h"
#include "resolver/query/local.h"
#include "resolver/base/log.h"
#include "resolver/query/query.h"
#include "resolver/net/tcp.h"
#include "resolver/base/tls.h"
#include "resolver/net/udp.h"
#include "resolver/query/worker.h"

/* ---- Loop hooks -------------------------------------------------------------------------- */

#define UPSTREAM_STAT_FIELDS(X) \
	X(sent) X(answered) X(timeouts) X(mismatched) X(case_mismatched) X(cookie_mismatched) \
	X(soft_failures) X(merged) X(tcp_fallbacks) X(tcp_full) X(pool_full) X(jostled) \
	X(sockets_full) X(probes) X(tls_handshakes) X(tls_resumed) X(tls_failures)

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

static void publish_stats(struct worker *w)
{
	/* Admission keeps its own counters; they show as the server's. */
	const struct admit_stats *a = admit_stats(w->admit);
	w->st.rate_limited = a->rate_slipped + a->rate_dropped;
	w->st.tls_rate_limited = a->handshakes_refused;
	w->st.tcp_open = tcp_open_count(w);
	if (w->up) {
		struct upstream_stats u = worker_upstream_stats(w);
		w->st.up_sent = u.sent;
		w->st.up_answered = u.answered;
		w->st.up_timeouts = u.timeouts;
		w->st.up_soft_failures = u.soft_failures;
		w->st.up_ignored = u.mismatched + u.case_mismatched + u.cookie_mismatched;
		w->st.up_tcp_fallbacks = u.tcp_fallbacks;
		w->st.up_tls_handshakes = u.tls_handshakes;
		w->st.up_tls_resumed = u.tls_resumed;
		w->st.up_tls_failures = u.tls_failures;
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
		server_reload_show_gens(w); /* The handles closed in the last iteration are gone now. */
	/* The loop may block now: this worker holds no policy snapshot until its next callback. */
	policy_store_quiescent(w->reader);
}

static void on_check(uv_check_t *h)
{
	struct worker *w = h->data;
	udp_flush(w);
	server_reload_take(w);
	if (w->nup_old)
		retire_upstreams(w, 0);
	if (w->up_lag && uv_now(&w->loop) >= w->up_lag_retry)
		server_reload_upstreams(w);
}

static void on_wake(uv_async_t *h)
{
	server_reload_take(h->data);
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
	w->tls = s->tls;
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
			rc = tcp_listen(w, &o->listen[i], 0, err, errlen);
		if (rc < 0)
			return rc;
	}
	for (unsigned i = 0; i < o->nlisten_tls; i++) {
		rc = tcp_listen(w, &o->listen_tls[i], 1, err, errlen);
		if (rc < 0)
			return rc;
	}
	for (unsigned i = 0; i < o->nlisten_https; i++) {
		rc = tcp_listen(w, &o->listen_https[i], TCP_KIND_DOH, err, errlen);
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

int server_new(server_t **out, const struct options *o, policy_store_t *store, cache_t *cache,
	       char *err, size_t errlen)
{
	int rc = upstream_check_loop(o, err, errlen);
	if (rc == 0)
		rc = upstream_check_tls(o, err, errlen);
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
	if ((o->nlisten_tls > 0 || o->nlisten_https > 0) &&
	    tls_creds_new(&s->tls, o->tls_cert, o->tls_key, err, errlen) < 0) {
		free(s);
		return -EINVAL;
	}
	/* DDR's records name the certificate's name: the pair is read first. */
	s->local = ddr_local_new(o, s->tls, err, errlen);
	if (!s->local) {
		tls_creds_unref(s->tls);
		free(s);
		return -EINVAL;
	}
	ddr_say(o, s->tls, "");
	s->tls_current = s->tls;
	s->nworkers = o->threads;
	s->workers = aligned_alloc(64, (s->nworkers * sizeof(struct worker) + 63) / 64 * 64);
	if (!s->workers) {
		local_free(s->local);
		tls_creds_unref(s->tls);
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
		rc = server_reload_check_free(&o->listen[i], err, errlen);
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
		tls_creds_unref(s->tls);
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
	tls_creds_unref(s->tls);
	for (unsigned i = 0; i < s->nreloads; i++) {
		local_free(s->reloads[i]->local);
		tls_creds_unref(s->reloads[i]->tls);
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
