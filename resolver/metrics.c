/* Metrics rendering (Prometheus text exposition format 0.0.4) and the HTTP endpoint. Counter
 * names end in _total; every family has HELP and TYPE; label sets are bounded (transports,
 * RCODEs, the query types of SERVER_QTYPE_LIST and "other"). A scrape only reads: it must never
 * change a counter, the cache or the policy in force. */
#include "config.h"

#include "resolver/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include "policy/policy.h"
#include "resolver/observe/query_log.h"

struct metrics {
	struct MHD_Daemon *httpd;
	struct metrics_sources src;
};

/* ---- Text building ------------------------------------------------------------------------ */

struct text {
	char *buf;
	size_t len, cap;
	int failed;
};

static void put(struct text *t, const char *fmt, ...)
{
	if (t->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap * 2 + (size_t)n;
		char *b = realloc(t->buf, cap);
		if (!b) {
			t->failed = 1;
			return;
		}
		t->buf = b;
		t->cap = cap;
	}
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(struct text *t, const char *name, const char *help, unsigned long long v)
{
	family(t, name, "counter", help);
	put(t, "%s %llu\n", name, v);
}

static void gauge(struct text *t, const char *name, const char *help, double v)
{
	family(t, name, "gauge", help);
	put(t, "%s %.17g\n", name, v);
}

/* One histogram's series: cumulative buckets by upper bound in seconds, then sum and count.
 * labels: "name=\"value\"," (with the comma), or "". */
static void histogram(struct text *t, const char *name, const char *labels,
		      const uint64_t bucket[LATENCY_BUCKETS], uint64_t sum_ns)
{
	static const char *const le[LATENCY_BUCKETS] = {
#define LATENCY_LE(ns) #ns,
		LATENCY_BOUNDS_NS(LATENCY_LE)
#undef LATENCY_LE
		"+Inf"};
	unsigned long long cum = 0;
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++) {
		cum += bucket[i];
		if (i == LATENCY_BUCKETS - 1)
			put(t, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, cum);
		else
			put(t, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels,
			    strtod(le[i], NULL) / 1e9, cum);
	}
	put(t, "%s_sum{%.*s} %.9f\n", name, (int)(strlen(labels) ? strlen(labels) - 1 : 0), labels,
	    (double)sum_ns / 1e9);
	put(t, "%s_count{%.*s} %llu\n", name, (int)(strlen(labels) ? strlen(labels) - 1 : 0), labels,
	    cum);
}

static void latency_metrics(struct text *t, const struct metrics_sources *src)
{
	uint64_t bucket[LATENCY_BUCKETS], sum;
	char labels[128];
	family(t, "embargo_answer_duration_seconds", "histogram",
	       "Time from a query's arrival to its answer, by how it was decided.");
	for (unsigned d = 0; d < QUERY_LOG_DECISIONS; d++) {
		server_path_latency(src->server, d, bucket, &sum);
		snprintf(labels, sizeof(labels), "path=\"%s\",", query_log_decision_name(d));
		histogram(t, "embargo_answer_duration_seconds", labels, bucket, sum);
	}
	family(t, "embargo_upstream_duration_seconds", "histogram",
	       "Time from sending a question over UDP to an upstream to its accepted answer.");
	struct sockaddr_storage up[OPTIONS_MAX_ADDRS];
	unsigned n = server_upstreams(src->server, up);
	for (unsigned i = 0; i < n; i++) {
		char addr[80];
		options_format_addr(&up[i], addr, sizeof(addr));
		server_upstream_latency(src->server, i, bucket, &sum);
		snprintf(labels, sizeof(labels), "upstream=\"%s\",", addr);
		histogram(t, "embargo_upstream_duration_seconds", labels, bucket, sum);
	}
}

/* ---- Process --------------------------------------------------------------------------------- */

static void process_metrics(struct text *t, const struct metrics_sources *src)
{
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	unsigned long utime = 0, stime = 0;
	long rss = 0;
	FILE *f = fopen("/proc/self/stat", "r");
	if (f) {
		char line[1024];
		if (fgets(line, sizeof(line), f)) {
			/* Fields after the command name, which may hold spaces: from the last ')'. */
			char *p = strrchr(line, ')');
			if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
					       "%*d %*d %*d %*d %*d %*d %*u %*u %ld",
					&utime, &stime, &rss) != 3)
				utime = stime = 0, rss = 0;
		}
		fclose(f);
	}
	unsigned fds = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				fds++;
		closedir(d);
		fds--; /* The directory's own descriptor. */
	}
	struct rlimit rl;
	double max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (double)rl.rlim_cur : 0;
	family(t, "process_cpu_seconds_total", "counter", "User and system CPU time spent, seconds.");
	put(t, "process_cpu_seconds_total %.2f\n",
	    tick > 0 ? (double)(utime + stime) / (double)tick : 0);
	gauge(t, "process_resident_memory_bytes", "Resident memory size, bytes.",
	      (double)rss * (double)page);
	gauge(t, "process_open_fds", "Open file descriptors.", fds);
	gauge(t, "process_max_fds", "The open file descriptor limit.", max_fds);
	gauge(t, "process_start_time_seconds", "Start time of the process, seconds since the epoch.",
	      (double)src->started);
}

/* ---- The families ------------------------------------------------------------------------ */

static const char *const RCODE_NAMES[SERVER_RCODES] = {"NOERROR", "FORMERR", "SERVFAIL",
						       "NXDOMAIN", "NOTIMP", "REFUSED", "other"};

/* A label value: backslash, double quote and newline escaped. */
static void label(struct text *t, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			put(t, "\\%c", *v);
		else if (*v == '\n')
			put(t, "\\n");
		else
			put(t, "%c", *v);
	}
}

static int by_count(const void *a, const void *b)
{
	const struct rule_hit *x = a, *y = b;
	return x->count < y->count ? 1 : x->count > y->count ? -1 : strcmp(x->rule, y->rule);
}

#define TOP_RULES 100

/* Denials by rule (the TOP_RULES most frequent, the rest as "other") and by the reason the
 * policy in force gives each rule; called with the policy entered. */
static void denial_metrics(struct text *t, const struct metrics_sources *src, const policy_t *pol)
{
	size_t max = (size_t)server_workers(src->server) * RULE_HITS_SLOTS, n = 0;
	struct rule_hit *hits = malloc(max * sizeof(*hits));
	uint64_t other = 0;
	if (!hits) {
		t->failed = 1;
		return;
	}
	server_rule_hits(src->server, hits, &n, max, &other);
	qsort(hits, n, sizeof(*hits), by_count);
	/* Reasons: looked up now, in the policy in force ("" for a rule it no longer has). */
	const char **reason = calloc(n ? n : 1, sizeof(*reason));
	if (!reason) {
		free(hits);
		t->failed = 1;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct name nm;
		struct policy_verdict v;
		reason[i] = "";
		if (name_from_text(&nm, hits[i].rule, strlen(hits[i].rule)) == 0) {
			policy_lookup(pol, &nm, &v);
			if (v.action == POLICY_DENY && v.reason)
				reason[i] = v.reason;
		}
	}
	family(t, "embargo_denied_by_rule_total", "counter",
	       "Denials by the rule that matched: the 100 most frequent, the rest as other.");
	uint64_t rest = other;
	for (size_t i = 0; i < n; i++) {
		if (i >= TOP_RULES) {
			rest += hits[i].count;
			continue;
		}
		put(t, "embargo_denied_by_rule_total{rule=\"");
		label(t, hits[i].rule);
		put(t, "\"} %llu\n", (unsigned long long)hits[i].count);
	}
	put(t, "embargo_denied_by_rule_total{rule=\"other\"} %llu\n", (unsigned long long)rest);
	family(t, "embargo_denied_by_reason_total", "counter",
	       "Denials by the reason of the rule that matched (\"\" for none).");
	for (size_t i = 0; i < n; i++) {
		size_t j = 0;
		while (j < i && strcmp(reason[j], reason[i]) != 0)
			j++;
		if (j < i)
			continue; /* Counted with its first rule. */
		uint64_t sum = 0;
		for (size_t k = i; k < n; k++)
			if (strcmp(reason[k], reason[i]) == 0)
				sum += hits[k].count;
		put(t, "embargo_denied_by_reason_total{reason=\"");
		label(t, reason[i]);
		put(t, "\"} %llu\n", (unsigned long long)sum);
	}
	free(reason);
	free(hits);
}

static void policy_metrics(struct text *t, const struct metrics_sources *src)
{
	const policy_t *pol = policy_store_enter(src->store, src->reader);
	denial_metrics(t, src, pol);
	const struct policy_stats *st = policy_stats(pol);
	static const char *const sources[] = {"bundled", "snapshot", "redis", "held-merge"};
	const char *source = st->source == POLICY_SOURCE_REDIS      ? sources[2]
			     : st->source == POLICY_SOURCE_SNAPSHOT ? sources[1]
			     : st->source == POLICY_SOURCE_HELD     ? sources[3]
								    : sources[0];
	family(t, "embargo_policy_info", "gauge", "The policy in force: its version and source.");
	put(t, "embargo_policy_info{version=\"%016llx\",source=\"%s\"} 1\n",
	    (unsigned long long)st->version, source);
	family(t, "embargo_policy_rules", "gauge", "Entries of the policy in force, by kind.");
	put(t, "embargo_policy_rules{kind=\"deny\"} %zu\n", st->deny);
	put(t, "embargo_policy_rules{kind=\"allow\"} %zu\n", st->allow);
	put(t, "embargo_policy_rules{kind=\"reason\"} %zu\n", st->reasons);
	put(t, "embargo_policy_rules{kind=\"invalid\"} %zu\n", st->invalid);
	gauge(t, "embargo_policy_loaded_timestamp_seconds",
	      "When the policy in force was loaded, seconds since the epoch.", (double)st->loaded_at);
	time_t now = time(NULL);
	gauge(t, "embargo_policy_age_seconds", "Seconds since the policy in force was loaded.",
	      st->loaded_at && now > (time_t)st->loaded_at ? (double)(now - (time_t)st->loaded_at) : 0);
	policy_store_quiescent(src->reader);
	gauge(t, "embargo_policy_held", "1 while a policy load is held back from enforcement.",
	      server_hold(src->server) != REDIS_SYNC_HOLD_NONE);
}

char *metrics_render(const struct metrics_sources *src, size_t *len)
{
	struct text t = {.buf = malloc(16384), .cap = 16384};
	if (!t.buf)
		return NULL;
	t.buf[0] = '\0';
	struct server_stats s;
	server_stats(src->server, &s);
	struct cache_usage cu;
	cache_usage(src->cache, &cu);

	put(&t, "# HELP embargo_build_info The running build.\n# TYPE embargo_build_info gauge\n"
		"embargo_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	family(&t, "embargo_queries_total", "counter", "Queries received, by transport.");
	put(&t, "embargo_queries_total{transport=\"udp\"} %llu\n",
	    (unsigned long long)(s.queries - s.queries_tcp - s.queries_dot - s.queries_doh));
	put(&t, "embargo_queries_total{transport=\"tcp\"} %llu\n", (unsigned long long)s.queries_tcp);
	put(&t, "embargo_queries_total{transport=\"dot\"} %llu\n", (unsigned long long)s.queries_dot);
	put(&t, "embargo_queries_total{transport=\"doh\"} %llu\n", (unsigned long long)s.queries_doh);
	family(&t, "embargo_queries_by_type_total", "counter", "Queries received, by query type.");
	static const char *const QTYPE_NAMES[SERVER_QTYPES] = {
#define QTYPE_NAME(name, value) #name,
		SERVER_QTYPE_LIST(QTYPE_NAME)
#undef QTYPE_NAME
		"other"};
	for (unsigned i = 0; i < SERVER_QTYPES; i++)
		put(&t, "embargo_queries_by_type_total{qtype=\"%s\"} %llu\n", QTYPE_NAMES[i],
		    (unsigned long long)s.qtype[i]);
	family(&t, "embargo_answers_total", "counter", "Answers sent, by RCODE.");
	for (unsigned i = 0; i < SERVER_RCODES; i++)
		put(&t, "embargo_answers_total{rcode=\"%s\"} %llu\n", RCODE_NAMES[i],
		    (unsigned long long)s.rcode[i]);
	counter(&t, "embargo_denied_total", "Queries denied by the policy (name or CNAME target).",
		s.denied);
	counter(&t, "embargo_local_answers_total", "Queries answered from local zones and local data.",
		s.local);
	counter(&t, "embargo_forwarded_total", "Queries sent on to the upstreams.", s.forwarded);
	counter(&t, "embargo_servfail_total", "SERVFAIL answers: no upstream in time, or no room.",
		s.servfail);
	counter(&t, "embargo_formerr_total", "Queries with a readable header and an unreadable question.",
		s.formerr);
	counter(&t, "embargo_dropped_total", "Unreadable packets and answers that could not be sent.",
		s.dropped);
	counter(&t, "embargo_refused_total", "Queries turned away by the access list.", s.refused);
	counter(&t, "embargo_rate_limited_total", "Answers over the rate limit (slipped or dropped).",
		s.rate_limited);
	counter(&t, "embargo_looped_total", "Queries from embargo's own upstream sockets, dropped.",
		s.looped);
	counter(&t, "embargo_tcp_shed_total",
		"TCP connections closed because the answers queued to a worker's slow readers passed "
		"--tcp-max-queued-total.",
		s.tcp_shed);
	counter(&t, "embargo_tls_handshakes_total", "TLS handshakes done (DoT), resumed ones too.",
		s.tls_handshakes);
	counter(&t, "embargo_tls_resumed_total", "TLS handshakes that resumed a session (a ticket).",
		s.tls_resumed);
	counter(&t, "embargo_tls_failed_total",
		"TLS connections closed because the handshake or a record failed.", s.tls_failed);
	counter(&t, "embargo_tls_handshake_timeouts_total",
		"TLS connections closed with no handshake within --tls-handshake-timeout.",
		s.tls_handshake_timeouts);
	counter(&t, "embargo_tls_rate_limited_total",
		"TLS connections closed unread: over --tls-handshake-rate for their network.",
		s.tls_rate_limited);
	family(&t, "embargo_https_responses_total", "counter", "DoH responses, by HTTP status.");
	static const unsigned HTTPS_STATUSES[SERVER_HTTPS_STATUSES] = {
#define HTTPS_STATUS(code) code,
		SERVER_HTTPS_STATUS_LIST(HTTPS_STATUS)
#undef HTTPS_STATUS
	};
	for (unsigned i = 0; i < SERVER_HTTPS_STATUSES; i++)
		put(&t, "embargo_https_responses_total{status=\"%u\"} %llu\n", HTTPS_STATUSES[i],
		    (unsigned long long)s.https_status[i]);
	counter(&t, "embargo_https_streams_refused_total",
		"HTTP/2 streams refused: over the 100 concurrent streams of a DoH connection.",
		s.https_streams_refused);
	counter(&t, "embargo_https_reset_floods_total",
		"DoH connections closed: more stream resets in a second than the cap (rapid reset).",
		s.https_reset_floods);
	counter(&t, "embargo_https_header_floods_total",
		"DoH connections closed: a header block (HEADERS and CONTINUATION) over 16 KiB.",
		s.https_header_floods);
	counter(&t, "embargo_https_protocol_errors_total",
		"DoH connections ended for an HTTP/2 protocol error, a flood nghttp2 caught, or a "
		"client that does not speak HTTP/2.",
		s.https_protocol_errors);
	counter(&t, "embargo_servfail_remembered_total",
		"SERVFAIL answers from the memory of questions that failed upstream a moment ago.",
		s.servfail_remembered);
	counter(&t, "embargo_chain_unreadable_total",
		"Answers refused (SERVFAIL) because a CNAME or DNAME target could not be read.",
		s.chain_unreadable);

	counter(&t, "embargo_cache_hits_total", "Answers from the cache.", s.cache_hits);
	counter(&t, "embargo_cache_misses_total", "Lookups that found no fresh answer.", s.cache_misses);
	counter(&t, "embargo_cache_stale_served_total", "Expired answers served (RFC 8767).",
		s.stale_served);
	counter(&t, "embargo_cache_prefetches_total", "Entries refreshed before they expired.",
		s.prefetches);
	counter(&t, "embargo_cache_evictions_total", "Entries evicted to stay within the cache size.",
		cu.evictions);
	gauge(&t, "embargo_cache_entries", "Entries in the cache.", (double)cu.entries);
	gauge(&t, "embargo_cache_bytes", "Bytes held by the cache.", (double)cu.bytes);

	counter(&t, "embargo_upstream_queries_total", "Questions sent to upstreams (every attempt).",
		s.up_sent);
	counter(&t, "embargo_upstream_answers_total", "Upstream answers accepted.", s.up_answered);
	counter(&t, "embargo_upstream_timeouts_total", "Questions no upstream answered in time.",
		s.up_timeouts);
	counter(&t, "embargo_upstream_errors_total",
		"Upstream answers that were soft failures (SERVFAIL, REFUSED, ...).", s.up_soft_failures);
	counter(&t, "embargo_upstream_ignored_total",
		"Upstream packets ignored: wrong ID, question, case or cookie.", s.up_ignored);
	counter(&t, "embargo_upstream_tcp_fallbacks_total", "Truncated answers fetched over TCP.",
		s.up_tcp_fallbacks);
	counter(&t, "embargo_upstream_merged_total", "Questions that joined one already in flight.",
		s.up_merged);
	counter(&t, "embargo_upstream_tls_handshakes_total",
		"TLS connections made to tls:// upstreams (each carries many questions).",
		s.up_tls_handshakes);
	counter(&t, "embargo_upstream_tls_resumed_total",
		"TLS connections to tls:// upstreams that resumed a session (no full handshake).",
		s.up_tls_resumed);
	counter(&t, "embargo_upstream_tls_failures_total",
		"TLS connections to tls:// upstreams that failed: handshake, certificate or record.",
		s.up_tls_failures);

	counter(&t, "embargo_tcp_connections_total", "TCP connections accepted.", s.tcp_conns);
	gauge(&t, "embargo_tcp_connections_open", "TCP connections open.", (double)s.tcp_open);
	counter(&t, "embargo_tcp_refused_total", "TCP connections closed at once: over a cap.",
		s.tcp_refused);
	counter(&t, "embargo_tcp_evicted_total", "Idle TCP connections closed to make room.",
		s.tcp_evicted);
	counter(&t, "embargo_tcp_timeouts_total", "TCP connections cut by a deadline.", s.tcp_timeouts);

	latency_metrics(&t, src);
	policy_metrics(&t, src);
	const struct redis_sync_stats *r = src->redis;
	gauge(&t, "embargo_redis_connected", "1 while the link to Redis is up.",
	      atomic_load(&r->connected));
	counter(&t, "embargo_redis_reconnects_total", "Times the link to Redis came back.",
		atomic_load(&r->reconnects));
	counter(&t, "embargo_policy_loads_total", "Policy loads from Redis published.",
		atomic_load(&r->loads));
	counter(&t, "embargo_policy_held_loads_total", "Policy loads held back (the held-load rule).",
		atomic_load(&r->held_loads));
	gauge(&t, "embargo_policy_load_seconds", "Read and build time of the last published load.",
	      (double)atomic_load(&r->last_load_ms) / 1000.0);
	counter(&t, "embargo_snapshot_save_failures_total",
		"Policy snapshot saves that failed (the file on disk is older than the policy).",
		atomic_load(&r->snapshot_failures));
	long long saved = atomic_load(&r->snapshot_saved_at);
	if (saved > 0)
		gauge(&t, "embargo_snapshot_age_seconds",
		      "Seconds since the policy snapshot was last written (it is written at each change).",
		      (double)(time(NULL) - saved));
	if (src->report_dropped)
		counter(&t, "embargo_client_report_dropped_total",
			"Denials the client report could not count (tables full, or Redis away too long).",
			atomic_load(src->report_dropped));
	process_metrics(&t, src);
	if (t.failed) {
		free(t.buf);
		return NULL;
	}
	*len = t.len;
	return t.buf;
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
			     const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **state)
{
	struct metrics *m = cls;
	(void)version;
	(void)upload;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(conn, 405, strdup("only GET\n"), 9, "text/plain");
	if (*upload_len)
		return MHD_NO;
	(void)state;
	if (strcmp(url, "/metrics") == 0) {
		size_t len;
		char *body = metrics_render(&m->src, &len);
		if (!body)
			return reply(conn, 500, strdup("out of memory\n"), 14, "text/plain");
		return reply(conn, 200, body, len, "text/plain; version=0.0.4; charset=utf-8");
	}
	if (strcmp(url, "/health") == 0) {
		/* Serving with a policy in force (the workers start only once one is settled); a
		 * snapshot that cannot be saved degrades it without taking it out of service. */
		int up = atomic_load(m->src.serving) != 0;
		const char *text = !up ? "starting or stopping\n"
				   : atomic_load(&m->src.redis->snapshot_failing)
					   ? "ok; policy snapshot not saved (see the log)\n"
					   : "ok\n";
		return reply(conn, up ? 200 : 503, strdup(text), strlen(text), "text/plain");
	}
	return reply(conn, 404, strdup("not found: /metrics, /health\n"), 29, "text/plain");
}

metrics_t *metrics_new(const struct options *o, const struct metrics_sources *src, char *err,
		       size_t errlen)
{
	metrics_t *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->src = *src;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
	if (o->metrics.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	uint16_t port = ntohs(o->metrics.ss_family == AF_INET6
				      ? ((const struct sockaddr_in6 *)&o->metrics)->sin6_port
				      : ((const struct sockaddr_in *)&o->metrics)->sin_port);
	/* A scraper or two, each answered within a few milliseconds: a small bound on both. */
	m->httpd = MHD_start_daemon(flags, port, NULL, NULL, on_request, m,
				    MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&o->metrics,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
				    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)4,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (!m->httpd) {
		char addr[64];
		options_format_addr(&o->metrics, addr, sizeof(addr));
		snprintf(err, errlen, "--metrics: cannot serve HTTP on %s (address in use?)", addr);
		free(m);
		return NULL;
	}
	return m;
}

void metrics_free(metrics_t *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->httpd);
	free(m);
}
