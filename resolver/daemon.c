/* What the daemon's life cycle shares between its start (resolver/main.c) and its reloads
 * (resolver/reload.c): telling systemd how it stands, fitting the upstream sockets into the
 * open-file limit, and starting a Redis link that reports to the daemon. Main-thread code only;
 * it must not be called from a worker. */
#include "config.h"

#include "resolver/daemon.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "resolver/base/log.h"

/* Tell systemd (Type=notify) how the daemon stands; nothing without libsystemd or outside
 * systemd (no NOTIFY_SOCKET). */
void daemon_notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
	sd_notify(0, state);
#else
	(void)state;
#endif
}


static void on_ready(void *ctx)
{
	struct daemon *d = ctx;
	if (d->started)
		return; /* A Redis taken on by a reload: the workers serve already. */
	const struct policy_stats *st = policy_stats(policy_store_current(d->store));
	int rc = server_start(d->server);
	if (rc < 0) {
		log_err("cannot start worker threads: %s", uv_strerror(rc));
		uv_kill(getpid(), SIGTERM);
		return;
	}
	d->started = 1;
	atomic_store(&d->serving, 1);
	daemon_notify("READY=1\nSTATUS=serving");
	/* This thread reads and parses the policy; the workers (started at nice 0) come first. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 5);
	char addrs[3 * OPTIONS_MAX_ADDRS * 64] = "", one[56];
	for (unsigned i = 0; i < d->o.nlisten; i++) {
		options_format_addr(&d->o.listen[i], one, sizeof(one));
		strcat(addrs, i ? ", " : "");
		strcat(addrs, one);
	}
	strcat(addrs, " (UDP and TCP)");
	/* Then the encrypted listeners. */
	for (unsigned i = 0; i < d->o.nlisten_tls; i++) {
		options_format_addr(&d->o.listen_tls[i], one, sizeof(one));
		strcat(addrs, ", ");
		strcat(addrs, one);
		strcat(addrs, " (DoT)");
	}
	for (unsigned i = 0; i < d->o.nlisten_https; i++) {
		options_format_addr(&d->o.listen_https[i], one, sizeof(one));
		strcat(addrs, ", ");
		strcat(addrs, one);
		strcat(addrs, " (DoH)");
	}
	log_info("serving on %s, %u workers; enforcing %s: %zu deny, %zu allow rules, "
		 "version %016llx", addrs, server_workers(d->server), policy_source_name(st->source),
		 st->deny, st->allow, (unsigned long long)st->version);
}

static void on_hold(void *ctx, enum redis_sync_hold kind, size_t removed, size_t of,
		    uint64_t version)
{
	struct daemon *d = ctx;
	server_set_hold(d->server, kind, removed, of, version);
}

redis_sync_t *daemon_redis_new(struct daemon *d, const struct options *o)
{
	redis_sync_t *r = redis_sync_new(d->loop, o, d->store, d->guard, on_ready, on_hold, d);
	if (r) {
		redis_sync_count(r, &d->redis_stats);
		redis_sync_seed_history(r, &d->history);
	}
	return r;
}

/* Each upstream query has its own socket: raise the descriptor limit to what the system
 * allows, and shrink the outgoing range so that every worker's fits with room to spare for
 * listeners, TCP clients, Redis and files (Unbound checks its outgoing-range the same way). */
void daemon_fit_outgoing_range(struct options *o)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	rlim_t reserve = 256 + (rlim_t)o->threads * (o->tcp_max_conns + 2u * o->nlisten + 64);
	rlim_t room = rl.rlim_cur > reserve ? rl.rlim_cur - reserve : 0;
	rlim_t each = room / o->threads;
	if (each < o->outgoing_range) {
		unsigned fit = each < 16 ? 16 : (unsigned)each;
		log_warn("open-file limit %llu: --outgoing-range lowered from %u to %u per worker",
			 (unsigned long long)rl.rlim_cur, o->outgoing_range, fit);
		o->outgoing_range = fit;
	}
}
