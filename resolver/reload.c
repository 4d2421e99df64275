/* SIGHUP: see reload.h. Main-thread code: it must never touch a worker's state itself;
 * server_reload() hands the new settings to the workers. */
#include "config.h"

#include "resolver/reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/ddr.h"
#include "resolver/base/tls.h"
#include "resolver/query/local.h"
#include "resolver/base/log.h"

#define SWITCH_PUSH_WAIT_MS 1000 /* For the old Redis to confirm the counts sent to it. */
#define SWITCH_SLOW_MS 5000      /* An old link still closing then is said. */

/* Do a and b name the same Redis, keys and load rules? */
static int same_redis(const struct options *a, const struct options *b)
{
	return strcmp(a->redis_host, b->redis_host) == 0 && a->redis_port == b->redis_port &&
	       strcmp(a->redis_user, b->redis_user) == 0 &&
	       strcmp(a->redis_password, b->redis_password) == 0 && a->redis_db == b->redis_db &&
	       strcmp(a->redis_prefix, b->redis_prefix) == 0 && a->reload_ms == b->reload_ms &&
	       a->redis_timeout_ms == b->redis_timeout_ms &&
	       a->max_shrink.percent == b->max_shrink.percent &&
	       a->max_shrink.count == b->max_shrink.count && a->max_shrink.off == b->max_shrink.off &&
	       a->max_shrink_window == b->max_shrink_window &&
	       strcmp(a->consent_key_file, b->consent_key_file) == 0 &&
	       memcmp(a->consent_key, b->consent_key, sizeof(a->consent_key)) == 0;
}

/* redis://HOST:PORT/DB, prefix P (no user or password: for the log). */
static void redis_text(const struct options *o, char *buf, size_t cap)
{
	snprintf(buf, cap, "redis://%s:%u/%d, prefix %s", o->redis_host, (unsigned)o->redis_port,
		 o->redis_db, o->redis_prefix);
}

/* A reload changed Redis: the old link is closed and freed; the new one starts. */
static void on_redis_closed(void *ctx)
{
	struct daemon *d = ctx;
	d->switch_closing = 0;
	uv_timer_stop(&d->redis_switch);
	const struct options *o = d->redis_next;
	d->redis_next = NULL;
	if (d->stopping || !o)
		return;
	if (d->switch_said)
		log_info("SIGHUP: the old redis link has closed");
	d->switch_said = 0;
	d->redis = daemon_redis_new(d, o);
	if (!d->redis) {
		log_err("SIGHUP: out of memory: no Redis link; the policy in force stays");
		d->redis_o = NULL; /* The next SIGHUP tries again, whatever Redis it names. */
		return;
	}
	d->redis_o = o;
	char url[400];
	redis_text(o, url, sizeof(url));
	log_info("SIGHUP: syncing from %s", url);
}

/* The old link takes long to close: it waits for a policy build or a snapshot save. */
static void on_switch_slow(uv_timer_t *t)
{
	struct daemon *d = t->data;
	d->switch_said = 1;
	log_warn("SIGHUP: the old redis link is still closing (a policy build or snapshot save has "
		 "not finished); the new redis waits for it, and the policy in force stays");
}

/* The old link closes; the policy in force stays meanwhile. */
static void close_old(struct daemon *d)
{
	redis_sync_t *old = d->redis_old;
	d->redis_old = NULL;
	if (old)
		d->history = *redis_sync_history(old); /* The next link may be the same Redis. */
	d->switch_closing = 1;
	uv_timer_start(&d->redis_switch, on_switch_slow, SWITCH_SLOW_MS, 0);
	redis_sync_close_then(old, on_redis_closed, d); /* At once when there is no old link. */
}

/* The hit counts and client report the old link has sent are confirmed first (a close would
 * drop them), for at most SWITCH_PUSH_WAIT_MS. */
static void on_switch_pushes(uv_timer_t *t)
{
	struct daemon *d = t->data;
	unsigned left = redis_sync_pushes(d->redis_old);
	if (left > 0 && uv_now(d->loop) < d->switch_until)
		return;
	if (left > 0)
		log_warn("SIGHUP: the old redis did not confirm %u hit-counter and client-report "
			 "commands in time: their counts may be lost", left);
	uv_timer_stop(t);
	close_old(d);
}

/* Move to the Redis n names: its first load then passes the held-load rule like any other. */
static void switch_redis(struct daemon *d, const struct options *n)
{
	char url[400];
	redis_text(n, url, sizeof(url));
	d->redis_next = n;
	if (d->redis_old || d->switch_closing) {
		log_warn("SIGHUP: %s: will be taken once the last change's link has closed", url);
		return;
	}
	log_info("SIGHUP: Redis changes to %s: closing the old link", url);
	d->redis_old = d->redis;
	d->redis = NULL; /* New counts wait for the new link. */
	if (d->redis_old && redis_sync_pushes(d->redis_old) > 0) {
		d->switch_until = uv_now(d->loop) + SWITCH_PUSH_WAIT_MS;
		uv_timer_start(&d->redis_switch, on_switch_pushes, 10, 10);
		return;
	}
	close_old(d);
}

/* A file read while it was being written lacks its last lines, or ends in the middle of one: a
 * setting the running configuration was given and n is not would fall back to its default
 * (another Redis or prefix, a looser --max-shrink, the loopback port 53), and a cut value is
 * another value. @return 1 (said) when n looks so. */
static int cut_short(const struct options *was, const struct options *n)
{
	char names[512];
	if (n->config_unterminated) {
		log_err("SIGHUP: the configuration file does not end with a newline (read while half "
			"written?): the running configuration stays");
		return 1;
	}
	if (options_lost(was, n, names, sizeof(names)) > 0) {
		log_err("SIGHUP: the configuration no longer sets %s (a file read while half "
			"written?): the running configuration stays; to mean a default, write it out",
			names);
		return 1;
	}
	return 0;
}

/* Settings a reload cannot change (threads, cache, files, privileges): n keeps
 * the running ones, and each that differs is named once in the log. */
static void keep_fixed(struct options *n, const struct options *o)
{
#define KEEP(field, what)                                                                     \
	do {                                                                                  \
		if (memcmp(&n->field, &o->field, sizeof(o->field)) != 0)                      \
			log_warn("SIGHUP: %s needs a restart; kept as it was", what);         \
		memcpy(&n->field, &o->field, sizeof(o->field));                               \
	} while (0)
	if (n->threads == 0)
		n->threads = o->threads; /* One per core, as resolved at start. */
	KEEP(threads, "threads");
	KEEP(snapshot, "snapshot");
	KEEP(cache_bytes, "cache-size");
	KEEP(stale_max, "stale-max");
	KEEP(prefetch, "prefetch");
	KEEP(metrics, "metrics");
	KEEP(query_log, "query-log");
	KEEP(query_log_sample, "query-log-sample");
	KEEP(query_log_denied_only, "query-log-denied-only");
	KEEP(hit_counters, "hit-counters");
	KEEP(report_clients, "report-clients");
	KEEP(report_retention_days, "report-retention");
	KEEP(report_max_clients, "report-max-clients");
	KEEP(user, "user");
	if (n->nlisten_tls != o->nlisten_tls ||
	    memcmp(n->listen_tls, o->listen_tls, sizeof(o->listen_tls)) != 0)
		log_warn("SIGHUP: listen-tls needs a restart; kept as it was");
	memcpy(n->listen_tls, o->listen_tls, sizeof(o->listen_tls));
	n->nlisten_tls = o->nlisten_tls;
	if (n->nlisten_https != o->nlisten_https ||
	    memcmp(n->listen_https, o->listen_https, sizeof(o->listen_https)) != 0)
		log_warn("SIGHUP: listen-https needs a restart; kept as it was");
	memcpy(n->listen_https, o->listen_https, sizeof(o->listen_https));
	n->nlisten_https = o->nlisten_https;
	/* The listeners stay, so their certificate's files do unless the file names others. */
	if ((o->nlisten_tls > 0 || o->nlisten_https > 0) && (!n->tls_cert[0] || !n->tls_key[0])) {
		log_warn("SIGHUP: tls-cert and tls-key are needed while listen-tls or listen-https "
			 "is; kept as they were");
		memcpy(n->tls_cert, o->tls_cert, sizeof(o->tls_cert));
		memcpy(n->tls_key, o->tls_key, sizeof(o->tls_key));
	}
#undef KEEP
}

/* The addresses of a that b does not listen on, into buf ("" if none). */
static void listen_missing(const struct options *a, const struct options *b, char *buf, size_t cap)
{
	size_t len = 0;
	buf[0] = 0;
	for (unsigned i = 0; i < a->nlisten; i++) {
		if (options_find_addr(b->listen, b->nlisten, &a->listen[i]) >= 0)
			continue;
		char one[80];
		options_format_addr(&a->listen[i], one, sizeof(one));
		int w = snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", one);
		if (w < 0 || (size_t)w >= cap - len)
			return;
		len += (size_t)w;
	}
}

/* A reload that changed the listen addresses: which opened and which closed. */
static void log_listen_changes(const struct options *was, const struct options *now)
{
	char opened[OPTIONS_MAX_ADDRS * 56], closed[OPTIONS_MAX_ADDRS * 56];
	listen_missing(now, was, opened, sizeof(opened));
	listen_missing(was, now, closed, sizeof(closed));
	if (opened[0])
		log_info("SIGHUP: listening now on %s too", opened);
	if (closed[0])
		log_info("SIGHUP: no longer listening on %s (its TCP connections go on)", closed);
}

/* SIGHUP: read the configuration again (the file and the same flags, flags still winning). A bad
 * file keeps the running configuration and says why; a good one is taken on by each worker
 * between two queries, without a restart or a lost query. */
static void on_hup(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;
	(void)signum;
	if (!d->started) {
		log_warn("SIGHUP ignored: not serving yet");
		return;
	}
	struct options *n = malloc(sizeof(*n));
	char err[512];
	if (!n) {
		log_err("SIGHUP: out of memory: the running configuration stays");
		return;
	}
	int rc = options_parse(n, d->argc, d->argv, err, sizeof(err));
	if (rc != OPTIONS_RUN) {
		log_err("SIGHUP: %s: the running configuration stays", rc < 0 ? err : "nothing to run");
		options_clear(n);
		free(n);
		return;
	}
	const struct options *was = server_options(d->server);
	if (cut_short(was, n)) {
		options_clear(n);
		free(n);
		return;
	}
	keep_fixed(n, &d->o);
	daemon_fit_outgoing_range(n);
	/* The certificate is read again (a renewal); a pair that fails keeps the one in force. */
	tls_creds_t *tls = NULL;
	if (n->nlisten_tls > 0 || n->nlisten_https > 0) {
		if (tls_creds_new(&tls, n->tls_cert, n->tls_key, err, sizeof(err)) < 0) {
			log_err("SIGHUP: %s: the running certificate stays", err);
			tls = NULL;
		} else {
			(void)tls_creds_keep_tickets(tls, server_tls(d->server));
			log_info("SIGHUP: certificate %s read again", n->tls_cert);
		}
	}
	/* DDR names the certificate in force from now on: the new one, or the running one kept. */
	const tls_creds_t *was_tls = server_tls(d->server), *now_tls = tls ? tls : was_tls;
	const char *was_name = ddr_name(was, was_tls), *now_name = ddr_name(n, now_tls);
	int ddr_changed = (!was_name) != (!now_name) ||
			  (was_name && now_name && strcmp(was_name, now_name) != 0);
	local_t *local = ddr_local_new(n, now_tls, err, sizeof(err));
	if (!local || server_reload(d->server, n, local, tls, err, sizeof(err)) < 0) {
		log_err("SIGHUP: %s: the running configuration stays", err);
		local_free(local);
		tls_creds_unref(tls);
		options_clear(n);
		free(n);
		return;
	}
	log_listen_changes(was, n);
	log_set_level((enum log_level)n->log_level);
	if (ddr_changed || tls)
		ddr_say(n, now_tls, "SIGHUP: ");
	const struct options *linked = d->redis_next ? d->redis_next : d->redis_o;
	if (!linked || !same_redis(n, linked))
		switch_redis(d, n);
	char ups[OPTIONS_MAX_ADDRS * 340] = "", one[340];
	for (unsigned i = 0; i < n->nupstream; i++) {
		options_format_upstream(n, i, one, sizeof(one));
		strcat(ups, i ? ", " : "");
		strcat(ups, one);
	}
	log_info("SIGHUP: configuration read again: upstreams %s; taken on by every worker", ups);
}

void reload_init(struct daemon *d)
{
	uv_timer_init(d->loop, &d->redis_switch);
	d->redis_switch.data = d;
	uv_signal_init(d->loop, &d->sighup);
	d->sighup.data = d;
	uv_signal_start(&d->sighup, on_hup, SIGHUP);
}

void reload_close(struct daemon *d)
{
	uv_close((uv_handle_t *)&d->sighup, NULL);
	uv_close((uv_handle_t *)&d->redis_switch, NULL);
	if (d->redis_old) {
		unsigned left = redis_sync_pushes(d->redis_old);
		if (left > 0)
			log_warn("stopping: the old redis did not confirm %u hit-counter and "
				 "client-report commands: their counts may be lost", left);
		redis_sync_close(d->redis_old);
		d->redis_old = NULL;
	}
}
