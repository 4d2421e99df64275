/* embargo: the daemon's entry point. The main thread owns the policy (Redis sync, publication,
 * reclamation) and signals; worker threads (resolver/server.c) answer queries. Workers start only
 * once the first policy is settled, so no query is answered before the whole policy is loaded.
 * The main thread never answers a query. */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "policy/list.h"
#include "policy/store.h"
#include "resolver/query/cache.h"
#include "resolver/sync/guard_state.h"
#include "resolver/daemon.h"
#include "resolver/base/log.h"
#include "resolver/metrics.h"
#include "resolver/base/options.h"
#include "resolver/sync/redis_sync.h"
#include "resolver/reload.h"
#include "resolver/server.h"
#include "resolver/sync/snapshot.h"

#define RECLAIM_MS 50

static void on_reclaim(uv_timer_t *t)
{
	struct daemon *d = t->data;
	const policy_t *current = policy_store_current(d->store);
	/* The settings of reloads that no worker reads any more go (a Redis link's stay). */
	if (d->server) {
		const struct options *pinned[] = {d->redis_o, d->redis_next};
		server_reclaim(d->server, pinned, 2);
	}
	/* Once a replaced policy is freed, give its pages back: glibc keeps them otherwise, and a
	 * big policy left behind would double the daemon's footprint. */
	if (policy_store_reclaim(d->store) == 0 && current != d->trimmed_for) {
		malloc_trim(0);
		d->trimmed_for = current;
	}
}

static size_t push_hits(struct daemon *d);
static void on_report_timer(uv_timer_t *t);

/* The last step of a stop: the Redis link and the main loop's handles close. */
static void close_main(struct daemon *d)
{
	redis_sync_close(d->redis);
	d->redis = NULL;
	uv_close((uv_handle_t *)&d->reclaim, NULL);
	uv_close((uv_handle_t *)&d->final_push, NULL);
}

/* Stopping: the last hit counts and client report wait for Redis's answer (at most a second). */
static void on_final_push(uv_timer_t *t)
{
	struct daemon *d = t->data;
	if (d->redis && redis_sync_pushes(d->redis) > 0 && uv_now(d->loop) < d->final_until)
		return;
	if (d->redis && redis_sync_pushes(d->redis) > 0)
		log_warn("stopping: redis did not confirm the last hit counts and client report");
	uv_timer_stop(t);
	close_main(d);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;
	log_info("%s received: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
	d->stopping = 1;
	atomic_store(&d->serving, 0);
	daemon_notify("STOPPING=1");
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigusr1, NULL);
	reload_close(d);
	/* The workers answer what is upstream (at most SERVER_DRAIN_MS) and hand over their last
	 * counts; then those go to Redis while the link is still up. */
	if (d->server)
		server_stop(d->server);
	size_t unpushed = d->hits ? push_hits(d) : 0;
	if (unpushed > 0)
		log_warn("stopping: the hit counts of %zu rules not added to redis (no link)", unpushed);
	if (d->o.report_clients)
		on_report_timer(&d->report_timer);
	uv_close((uv_handle_t *)&d->hits_timer, NULL);
	uv_close((uv_handle_t *)&d->report_timer, NULL);
	if (d->report.n > 0)
		log_warn("stopping: %zu clients' denials not added to the client report (redis away)",
			 d->report.n);
	if (d->redis && redis_sync_pushes(d->redis) > 0) {
		d->final_until = uv_now(d->loop) + 1000;
		uv_timer_start(&d->final_push, on_final_push, 10, 10);
		return;
	}
	close_main(d);
}

/* Started as root: give it up for o->user (default embargo, when that user exists) once every
 * socket is bound. setuid() from root clears every capability, in every thread (glibc applies
 * it to all of them). @return 0, or -1 when the user was asked for and cannot be taken on. */
static int drop_privileges(const struct options *o)
{
	if (geteuid() != 0)
		return 0;
	const char *name = o->user[0] ? o->user : "embargo";
	struct passwd *pw = getpwnam(name);
	if (!pw) {
		if (o->user[0]) {
			log_err("--user %s: no such user", name);
			return -1;
		}
		log_warn("running as root: there is no user 'embargo' to run as (create it, or set "
			 "--user)");
		return 0;
	}
	if (pw->pw_uid == 0)
		return 0; /* --user root: asked for. */
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_err("cannot run as %s: %s", name, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		log_err("dropped to %s but could become root again", name);
		return -1;
	}
	log_info("running as %s (uid %u, gid %u)", name, (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	return 0;
}

/* SIGUSR1: logrotate moved the query log; the writer opens a new one. */
static void on_usr1(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;
	(void)signum;
	if (d->qlog) {
		query_log_reopen(d->qlog);
		log_info("SIGUSR1 received: query log reopened");
	}
}

static int by_tag(const void *a, const void *b)
{
	uint64_t x = ((const struct rule_hit *)a)->tag, y = ((const struct rule_hit *)b)->tag;
	return x < y ? -1 : x > y;
}

/* --hit-counters: what each rule denied since the last push goes to Redis in one pipeline; while
 * Redis is away the counts wait (nothing is counted twice, nothing lost but on exit).
 * @return how many rules' counts wait. */
static size_t push_hits(struct daemon *d)
{
	size_t n;
	uint64_t other;
	server_rule_hits(d->server, d->hits, &n, d->hits_max, &other);
	qsort(d->hits, n, sizeof(*d->hits), by_tag);
	/* d->hits becomes the deltas (in place), d->sent the totals once they are pushed. */
	size_t nd = 0;
	for (size_t i = 0; i < n; i++) {
		struct rule_hit *was = bsearch(&d->hits[i], d->sent, d->nsent, sizeof(*d->sent), by_tag);
		uint64_t before = was ? was->count : 0;
		if (d->hits[i].count > before) {
			d->hits[nd] = d->hits[i];
			d->hits[nd].count -= before;
			nd++;
		}
	}
	if (nd == 0 || !d->redis || redis_sync_add_hits(d->redis, d->hits, nd) < 0)
		return nd;
	/* Pushed: the totals now include them. */
	for (size_t i = 0; i < nd; i++) {
		struct rule_hit *was = bsearch(&d->hits[i], d->sent, d->nsent, sizeof(*d->sent), by_tag);
		if (was) {
			was->count += d->hits[i].count;
		} else if (d->nsent < d->hits_max) {
			d->sent[d->nsent++] = d->hits[i];
			qsort(d->sent, d->nsent, sizeof(*d->sent), by_tag);
		}
	}
	return 0;
}

static void on_hits_timer(uv_timer_t *t)
{
	push_hits(t->data);
}

/* --report-clients: the workers' denials per client and rule, merged, go to Redis in a script
 * run or a few; while Redis is away they wait in the batch (full: counted as dropped). */
static void take_denial(void *ctx, const struct client_denial *e)
{
	client_report_batch_add(ctx, e);
}

static void on_report_timer(uv_timer_t *t)
{
	struct daemon *d = t->data;
	uint64_t dropped;
	server_client_report(d->server, take_denial, &d->report, &dropped);
	dropped += d->report.dropped;
	atomic_store(&d->report_dropped, dropped);
	/* Said at most once a minute: a flood would say it every second. */
	uint64_t now = uv_now(d->loop);
	if (dropped > d->report_said && (!d->report_said_at || now - d->report_said_at >= 60000)) {
		log_warn("client report: %llu denials not counted (more clients and rules than the "
			 "tables hold, or Redis away too long)",
			 (unsigned long long)(dropped - d->report_said));
		d->report_said = dropped;
		d->report_said_at = now;
	}
	const struct redis_report_limits lim = {
		.retention_days = d->o.report_retention_days,
		.max_clients = d->o.report_max_clients,
		.max_rules = REPORT_MAX_RULES,
	};
	if (d->report.n == 0 || !d->redis ||
	    redis_sync_add_client_report(d->redis, d->report.e, d->report.n, &lim) < 0)
		return;
	client_report_batch_clear(&d->report);
}

/* The bundled list's deny rules and reasons with p's: what a snapshot of another prefix or
 * database, or a damaged one, is enforced with. p's allow rules are left out (they could lift a
 * bundled name). Consumes p. */
static policy_t *with_bundled(policy_t *p)
{
	policy_t *bundled = list_bundled();
	policy_builder_t *b = policy_builder_new();
	policy_t *out = NULL;
	if (bundled && b &&
	    policy_builder_add_from(b, bundled, POLICY_PART_DENY | POLICY_PART_REASON) == 0 &&
	    policy_builder_add_from(b, p, POLICY_PART_DENY | POLICY_PART_REASON) == 0) {
		out = policy_build(b, POLICY_SOURCE_SNAPSHOT);
		b = NULL;
	}
	policy_builder_free(b);
	policy_free(bundled);
	policy_free(p);
	return out;
}

/* The policy to enforce until Redis is read: the snapshot (or what can be recovered of it), never
 * less than the bundled list when it is not this deployment's own. */
static policy_t *initial_policy(const struct options *o, int64_t *saved_at, int *snap_rc)
{
	*snap_rc = -ENOENT;
	if (o->snapshot[0]) {
		policy_t *p = NULL, *bundled = list_bundled();
		struct codec_meta meta;
		char note[1024];
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int rc = bundled ? snapshot_load_any(o->snapshot, bundled, &p, &meta, note, sizeof(note))
				 : -ENOMEM;
		*snap_rc = rc;
		policy_free(bundled);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (rc > 0)
			log_err("policy snapshot: %s", note);
		if (rc >= 0 && meta.prefix[0] &&
		    (strcmp(meta.prefix, o->redis_prefix) != 0 || meta.db != o->redis_db)) {
			/* Another deployment's policy, or a mistyped prefix: enforcing it alone could
			 * deny what this one allows, and dropping it could lift the real list. Both,
			 * with the bundled list: a mistake can only over-block. */
			log_err("the policy snapshot %s was saved from redis prefix '%s' db %d, not '%s' "
				"db %d: enforcing its deny rules together with the bundled list until redis "
				"is read (a wrong --redis-prefix?)", o->snapshot, meta.prefix, meta.db,
				o->redis_prefix, o->redis_db);
			p = with_bundled(p);
			if (!p)
				return NULL;
			*snap_rc = SNAPSHOT_RECOVERED; /* Not the list this instance enforced. */
		}
		if (rc >= 0) {
			const struct policy_stats *st = policy_stats(p);
			char when[32];
			time_t t = (time_t)meta.saved_at;
			struct tm tm;
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
			long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
			log_info("snapshot %s: %zu deny, %zu allow rules, version %016llx, saved %s; "
				 "loaded in %ld ms",
				 o->snapshot, st->deny, st->allow, (unsigned long long)st->version, when, ms);
			policy_set_loaded_at(p, time(NULL));
			*saved_at = meta.saved_at;
			return p;
		}
		if (rc == -ENOENT)
			log_info("no policy snapshot at %s yet", o->snapshot);
		else
			log_err("ignoring the policy snapshot: %s; using the bundled list", note);
	}
	policy_t *p = list_bundled();
	if (p)
		policy_set_loaded_at(p, time(NULL));
	return p;
}

int main(int argc, char **argv)
{
	static struct daemon d;
	char err[512];
	/* Policies come and go in arrays of megabytes: give each its own mapping, so freeing the
	 * old one returns its memory at once instead of leaving it in the heap (glibc would
	 * otherwise raise this threshold to 32 MiB after the first big free). */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	int rc = options_parse(&d.o, argc, argv, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "embargo: %s\n", err);
		return 2;
	}
	if (rc == OPTIONS_EXIT)
		return 0;
	signal(SIGPIPE, SIG_IGN);
	/* A reload or a logrotate during start-up must not kill the daemon (their handlers come
	 * with the main loop). */
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	if (d.o.check_config) {
		/* Valid (options_parse would have refused it otherwise), local data included. */
		options_print(&d.o, stdout);
		return 0;
	}
	log_set_level((enum log_level)d.o.log_level);
	if (d.o.threads == 0)
		d.o.threads = uv_available_parallelism();
	daemon_fit_outgoing_range(&d.o);

	/* Until Redis answers, the last snapshot or else the bundled list is enforced: fail closed. */
	int64_t saved_at = 0;
	int snap_rc;
	policy_t *initial = initial_policy(&d.o, &saved_at, &snap_rc);
	atomic_store(&d.redis_stats.snapshot_saved_at, (long long)saved_at);
	/* One reader slot per worker, one for the thread that saves snapshots, one for metrics. */
	d.store = initial ? policy_store_new(d.o.threads + 2, initial) : NULL;
	d.cache = cache_new(d.o.cache_bytes, d.o.threads * 8);
	if (d.cache)
		cache_configure(d.cache, d.o.stale_max, d.o.prefetch, d.o.timeout_ms);
	/* What a fresh start enforces is the baseline that lifts are first counted against. */
	d.guard = initial ? guard_new(initial, (int64_t)time(NULL)) : NULL;
	if (d.guard && d.o.snapshot[0]) {
		char path[300];
		snprintf(path, sizeof(path), "%s.guard", d.o.snapshot);
		rc = guard_state_load(path, d.o.redis_prefix, d.o.redis_db, d.guard, &d.history, err,
				      sizeof(err));
		/* Only a snapshot read whole with its own state, or a first start with neither, is
		 * known; anything else (a snapshot without its state: lost, damaged, another list's,
		 * from an embargo before it; or state beside a snapshot that was not read whole)
		 * leaves what was spent, held or consented unknown. */
		if ((snap_rc == 0 && rc < 0) || (snap_rc != 0 && snap_rc != -ENOENT) ||
		    (snap_rc == -ENOENT && rc != -ENOENT)) {
			if (rc == 0)
				snprintf(err, sizeof(err), "the snapshot it describes was not read whole");
			log_err("guard state: %s; until a consent (or a quiet window) no load may lift "
				"any denied name", err);
			guard_state_fail_closed(d.guard);
		}
	}
	if (!d.o.consent_key_file[0])
		log_warn("no --consent-key: anyone who may write %s:accept in redis can consent to a "
			 "held load; give the approver a key (embargo-policy keygen) for a two-person "
			 "rule", d.o.redis_prefix);
	if (!d.store || !d.cache || !d.guard) {
		log_err("out of memory at start-up");
		return 1;
	}
	rc = server_new(&d.server, &d.o, d.store, d.cache, err, sizeof(err));
	if (rc < 0) {
		log_err("%s", err);
		policy_store_free(d.store);
		cache_free(d.cache);
		return 1;
	}
	if (d.o.metrics.ss_family) {
		struct metrics_sources src = {
			.server = d.server,
			.cache = d.cache,
			.store = d.store,
			.reader = policy_store_reader(d.store, d.o.threads + 1),
			.serving = &d.serving,
			.started = time(NULL),
			.redis = &d.redis_stats,
			.report_dropped = d.o.report_clients ? &d.report_dropped : NULL,
		};
		d.metrics = metrics_new(&d.o, &src, err, sizeof(err));
		if (!d.metrics) {
			log_err("%s", err);
			server_free(d.server);
			policy_store_free(d.store);
			cache_free(d.cache);
			return 1;
		}
	}
	if (d.o.query_log[0]) {
		/* Opened before the privileges go: the file may be root's (logrotate's create). */
		d.qlog = query_log_new(&d.o, d.o.threads, err, sizeof(err));
		if (!d.qlog) {
			log_err("%s", err);
			metrics_free(d.metrics);
			server_free(d.server);
			policy_store_free(d.store);
			cache_free(d.cache);
			return 1;
		}
		server_set_query_log(d.server, d.qlog);
	}
	if (drop_privileges(&d.o) < 0) {
		query_log_free(d.qlog);
		metrics_free(d.metrics);
		server_free(d.server);
		policy_store_free(d.store);
		cache_free(d.cache);
		return 1;
	}
	/* The certificate was read as root; a renewal is read on SIGHUP as the user embargo runs
	 * as now, and would keep failing unseen until the old one expires. */
	if ((d.o.nlisten_tls > 0 || d.o.nlisten_https > 0) &&
	    (access(d.o.tls_cert, R_OK) < 0 || access(d.o.tls_key, R_OK) < 0))
		log_warn("%s or %s cannot be read by the user embargo runs as: a renewed certificate "
			 "will not load on SIGHUP (make both readable by that user or its group)",
			 d.o.tls_cert, d.o.tls_key);
	char ups[OPTIONS_MAX_ADDRS * 340] = "", one[340];
	for (unsigned i = 0; i < d.o.nupstream; i++) {
		options_format_upstream(&d.o, i, one, sizeof(one));
		strcat(ups, i ? ", " : "");
		strcat(ups, one);
	}
	log_info("embargo %s starting: upstreams %s; policy from redis://%s:%d keys %s:*",
		 PACKAGE_VERSION, ups, d.o.redis_host, d.o.redis_port, d.o.redis_prefix);

	d.loop = uv_default_loop();
	uv_signal_init(d.loop, &d.sigint);
	uv_signal_init(d.loop, &d.sigterm);
	d.sigint.data = d.sigterm.data = &d;
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_timer_init(d.loop, &d.hits_timer);
	d.hits_timer.data = &d;
	if (d.o.hit_counters) {
		d.hits_max = (size_t)d.o.threads * RULE_HITS_SLOTS;
		d.hits = calloc(d.hits_max, sizeof(*d.hits));
		d.sent = calloc(d.hits_max, sizeof(*d.sent));
		if (!d.hits || !d.sent) {
			log_err("out of memory at start-up");
			return 1;
		}
		uv_timer_start(&d.hits_timer, on_hits_timer, 1000, 1000);
	}
	uv_timer_init(d.loop, &d.report_timer);
	uv_timer_init(d.loop, &d.final_push);
	d.report_timer.data = d.final_push.data = &d;
	if (d.o.report_clients) {
		/* Room for every worker's full table twice: one second's, and one while Redis is away. */
		if (client_report_batch_init(&d.report, (size_t)d.o.threads * CLIENT_REPORT_SLOTS * 2) <
		    0) {
			log_err("out of memory at start-up");
			return 1;
		}
		uv_timer_start(&d.report_timer, on_report_timer, 1000, 1000);
	}
	d.argc = argc;
	d.argv = argv;
	reload_init(&d);
	uv_signal_init(d.loop, &d.sigusr1);
	d.sigusr1.data = &d;
	uv_signal_start(&d.sigusr1, on_usr1, SIGUSR1);
	uv_timer_init(d.loop, &d.reclaim);
	d.reclaim.data = &d;
	uv_timer_start(&d.reclaim, on_reclaim, RECLAIM_MS, RECLAIM_MS);
	d.redis = daemon_redis_new(&d, &d.o);
	if (!d.redis) {
		log_err("out of memory at start-up");
		return 1;
	}
	d.redis_o = &d.o;

	uv_run(d.loop, UV_RUN_DEFAULT);

	struct server_stats st;
	struct upstream_stats us;
	metrics_free(d.metrics);
	server_stop(d.server);
	if (d.qlog) {
		uint64_t dropped = query_log_dropped(d.qlog);
		query_log_free(d.qlog); /* Writes what the rings still hold. */
		if (dropped)
			log_warn("query log: %llu lines dropped on full rings", (unsigned long long)dropped);
	}
	server_stats(d.server, &st);
	server_upstream_stats(d.server, &us);
	server_free(d.server);
#define U(x) (unsigned long long)(x)
	log_info("stopped: %llu queries, %llu denied, %llu cache hits, %llu local, %llu forwarded, "
		 "%llu servfail, "
		 "%llu formerr, %llu dropped, %llu tcp connections; refused %llu, rate-limited %llu, "
		 "looped %llu; tcp refused %llu, evicted %llu, timed out %llu",
		 U(st.queries), U(st.denied), U(st.cache_hits), U(st.local), U(st.forwarded), U(st.servfail),
		 U(st.formerr), U(st.dropped), U(st.tcp_conns), U(st.refused), U(st.rate_limited),
		 U(st.looped), U(st.tcp_refused), U(st.tcp_evicted), U(st.tcp_timeouts));
	struct cache_usage cu;
	cache_usage(d.cache, &cu);
	log_info("cache: %llu hits, %llu misses, %llu stale served, %llu prefetches; %llu entries, "
		 "%llu bytes, %llu evicted",
		 U(st.cache_hits), U(st.cache_misses), U(st.stale_served), U(st.prefetches),
		 U(cu.entries), U(cu.bytes), U(cu.evictions));
	log_info("upstream: %llu sent, %llu answered, %llu timed out, %llu soft failures, "
		 "%llu merged, %llu tcp fallbacks (%llu over the cap), %llu jostled, %llu pool full, "
		 "%llu sockets short, %llu probes; ignored: %llu mismatched, %llu case mismatched, "
		 "%llu cookie mismatched",
		 U(us.sent), U(us.answered), U(us.timeouts), U(us.soft_failures), U(us.merged),
		 U(us.tcp_fallbacks), U(us.tcp_full), U(us.jostled), U(us.pool_full),
		 U(us.sockets_full), U(us.probes), U(us.mismatched), U(us.case_mismatched),
		 U(us.cookie_mismatched));
#undef U
	cache_free(d.cache);
	guard_free(d.guard);
	policy_store_free(d.store);
	free(d.hits);
	client_report_batch_free(&d.report);
	free(d.sent);
	if (uv_loop_close(d.loop) != 0)
		log_warn("main loop still had open handles at exit");
	return 0;
}
