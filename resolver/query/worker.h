/* What the daemon's internal modules share about one worker loop: server.c creates and runs
 * workers, the transports of net/ receive and send on them, query.c answers. It must not be included
 * outside those: the public face is server.h. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "policy/store.h"
#include "resolver/query/admit.h"
#include "resolver/query/cache.h"
#include "resolver/observe/client_report.h"
#include "resolver/observe/latency.h"
#include "resolver/query/local.h"
#include "resolver/observe/rule_hits.h"
#include "resolver/base/options.h"
#include "resolver/observe/query_log.h"
#include "resolver/query/server_stats.h"
#include "resolver/query/failcache.h"
#include "resolver/upstream/upstream.h"

#define WORKER_ANSWER_MAX 65535
/* How often a worker hands its client report over (the main loop pushes once a second). */
#define SERVER_REPORT_MS 500

/* Every counter of struct server_stats, for publishing and summing. */
#define WORKER_STAT_FIELDS(X) \
	X(queries) X(denied) X(cache_hits) X(forwarded) X(servfail) X(formerr) X(dropped) \
	X(tcp_conns) X(refused) X(rate_limited) X(tcp_refused) X(tcp_evicted) X(tcp_timeouts) \
	X(looped) X(local) X(cache_misses) X(stale_served) X(prefetches) X(queries_tcp) X(tcp_open) \
	X(queries_dot) X(tls_handshakes) X(tls_resumed) X(tls_failed) X(tls_handshake_timeouts) \
	X(tls_rate_limited) X(queries_doh) X(https_streams_refused) X(https_reset_floods) \
	X(https_header_floods) X(https_protocol_errors) \
	X(up_sent) X(up_answered) X(up_timeouts) X(up_soft_failures) X(up_ignored) \
	X(up_tcp_fallbacks) X(up_merged) X(up_tls_handshakes) X(up_tls_resumed) X(up_tls_failures) \
	X(chain_unreadable) X(servfail_remembered) X(tcp_shed)
/* And the arrays among them. */
#define WORKER_STAT_ARRAYS(X) X(rcode, SERVER_RCODES) X(qtype, SERVER_QTYPES) \
	X(https_status, SERVER_HTTPS_STATUSES)

struct udp_state;
struct tcp_state;
struct tls_creds;

struct worker {
	struct server *server;
	const struct options *o;
	unsigned index;
	uv_loop_t loop;
	uv_thread_t thread;
	int loop_ready, started;
	int stopping;            /* Reading and accepting no more: a reload opens no listener. */
	uv_async_t stop;
	uv_prepare_t prepare;
	uv_check_t check;
	uv_timer_t drain;        /* Stopping: answers still due from the upstreams. */
	uv_async_t wake;         /* A reload waits (a worker without traffic would not see it). */
	uint64_t drain_until;
	struct udp_state *udp;   /* udp.c's */
	struct tcp_state *tcp;   /* tcp.c's (and its connections', tcp_conn.c) */
	upstream_t *up;
	const struct options *up_o; /* The options up was made with (a reload may keep it). */
	int up_lag;              /* A reload's new upstreams could not be taken yet: retried. */
	uint64_t up_lag_retry;   /* When next (the loop's clock). */
	admit_t *admit;
	rule_hits_t *hits;       /* Denials per rule (metrics). */
	client_report_t *report; /* Denials per client (--report-clients); NULL: off. */
	uv_timer_t report_timer; /* Hands report over every SERVER_REPORT_MS. */
	struct query_log_ring *qlog; /* NULL: no query log. */
	int timed;               /* Arrival times taken: a query log or metrics. */
	/* Answer latency from arrival, by how the query was decided (enum query_log_decision),
	 * and each upstream's, by its index in options.upstream (metrics). */
	struct latency_hist lat_path[QUERY_LOG_DECISIONS];
	uint8_t answer_path;     /* The decision of the answer being sent (UDP times it at flush). */
	struct latency_hist lat_up[OPTIONS_MAX_ADDRS];
	const char *ql_rule, *ql_reason; /* The denial being answered, for its log line. */
	const struct sockaddr_storage *ql_upstream; /* The upstream that gave the answer. */
	struct policy_reader *reader;
	uint8_t *answer;         /* WORKER_ANSWER_MAX octets for the answer being built. */
	/* This host's addresses, for the loop guard: read at most once a second, and only when
	 * a query comes from a port that one of our upstream sockets holds. */
	struct options_cidr self[32];
	unsigned nself;
	uint64_t self_at;
	failcache_t *fails;      /* Questions that failed upstream a moment ago. */
	uint64_t chain_said_ms;  /* When an unreadable CNAME/DNAME target was last logged. */
	struct server_stats st;  /* Written only by this worker. */
	struct upstream_stats up_stats; /* The upstream's, kept when it closes. */
	struct upstream_stats up_retired; /* Of upstreams replaced by a reload, summed. */
	upstream_t *up_old[4];   /* Replaced by a reload: answering what they still hold. */
	unsigned nup_old;
	/* The reload generation (0: the start's) of the options w->o, w->up and each up_old side
	 * read. They are shown to the main thread (under server.gens_lock) at the next on_prepare,
	 * when the handles closed meanwhile are gone; a reload no worker shows and every worker
	 * has passed may be freed (server_reclaim). */
	unsigned o_gen, up_gen, up_old_gen[4];
	int gen_changed;
	unsigned shown_gens[6], nshown_gens; /* [0] is o_gen: the newest this worker took. */
	const local_t *local;    /* The local answers in force (the server's, or a reload's). */
	struct tls_creds *tls;   /* The certificate in force for new DoT connections (borrowed from
				  * the server or a reload; each session takes a reference). */
	_Atomic(const struct server_reload *) reload; /* A new configuration to take on. */
	/* st, published once per loop iteration for other threads to read. */
#define WORKER_SHOWN(f) _Alignas(8) atomic_ullong shown_##f;
	WORKER_STAT_FIELDS(WORKER_SHOWN)
#undef WORKER_SHOWN
#define WORKER_SHOWN_ARRAY(f, n) atomic_ullong shown_##f[n];
	WORKER_STAT_ARRAYS(WORKER_SHOWN_ARRAY)
#undef WORKER_SHOWN_ARRAY
};

/* A configuration re-read on SIGHUP, for the workers to take on between two queries. */
struct server_reload {
	struct options *o; /* Owned by the server. */
	local_t *local;    /* Owned by the server. */
	struct tls_creds *tls; /* A reference owned by the reload; NULL: no TLS listener. */
	unsigned gen;      /* 1, 2, ...: the start's options are 0. */
};

struct server {
	const struct options *o;
	const struct options *current; /* o, or the newest reload's (the main thread's). */
	policy_store_t *store;
	cache_t *cache;
	local_t *local; /* Owned. */
	struct tls_creds *tls; /* The start's certificate (a reference); NULL: no TLS listener. */
	struct tls_creds *tls_current; /* The newest reload's or tls (the main thread's). */
	/* The reloads' options and local answers, oldest first, each kept until no worker reads
	 * it (server_reclaim). */
	struct server_reload **reloads; /* Each allocated alone: workers hold pointers to them. */
	unsigned nreloads;
	unsigned gen;                  /* The newest reload's. */
	uv_mutex_t gens_lock; /* The workers' shown_gens. */
	/* The upstream addresses in force, for the metrics thread. */
	uv_mutex_t upstreams_lock;
	struct sockaddr_storage upstreams[OPTIONS_MAX_ADDRS];
	unsigned nupstreams;
	unsigned nworkers;
	struct worker *workers;
	/* A held policy load, for status answers (server_set_hold). */
	atomic_int hold_kind;
	atomic_size_t hold_removed, hold_of;
	atomic_uint_fast64_t hold_version;
};

/** A session (a TCP connection) went away: none of its questions waiting on any upstream side
 *  of w (the current one, and those a reload replaced) may answer it. */
static inline void worker_forget_session(struct worker *w, const void *session)
{
	if (w->up)
		upstream_forget(w->up, session);
	for (unsigned i = 0; i < w->nup_old; i++)
		upstream_forget(w->up_old[i], session);
}
