/* The effective settings as config-file lines (embargo --check-config): what a flag or the
 * config file changed and every default, in the order of --help. It never prints the Redis
 * password (that line is commented out, PASSWORD in its place) and changes no setting. */
#include "config.h"

#include "resolver/base/options.h"

#include <arpa/inet.h>
#include <stdio.h>

#include "resolver/base/local_zone.h"

static void cidr(const struct options_cidr *c, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	inet_ntop(c->family, c->addr, a, sizeof(a));
	snprintf(buf, cap, "%s/%u", a, c->prefix);
}

void options_print(const struct options *o, FILE *f)
{
	char buf[INET6_ADDRSTRLEN + 16 + 8 + NAME_MAXTEXT];
	for (unsigned i = 0; i < o->nlisten; i++) {
		options_format_addr(&o->listen[i], buf, sizeof(buf));
		fprintf(f, "listen %s\n", buf);
	}
	for (unsigned i = 0; i < o->nlisten_tls; i++) {
		options_format_addr(&o->listen_tls[i], buf, sizeof(buf));
		fprintf(f, "listen-tls %s\n", buf);
	}
	if (o->tls_cert[0])
		fprintf(f, "tls-cert %s\n", o->tls_cert);
	if (o->tls_key[0])
		fprintf(f, "tls-key %s\n", o->tls_key);
	fprintf(f, "tls-handshake-timeout %u\ntls-handshake-rate %u\n", o->tls_handshake_ms,
		o->tls_handshake_rate);
	if (o->resolver_name[0])
		fprintf(f, "resolver-name %s\n", o->resolver_name);
	else
		fprintf(f, "# resolver-name: the first DNS name of the certificate\n");
	for (unsigned i = 0; i < o->nlisten_https; i++) {
		options_format_addr(&o->listen_https[i], buf, sizeof(buf));
		fprintf(f, "listen-https %s\n", buf);
	}
	fprintf(f, "https-path %s\n", o->https_path);
	for (unsigned i = 0; i < o->nupstream; i++) {
		options_format_upstream(o, i, buf, sizeof(buf));
		fprintf(f, "upstream %s\n", buf);
	}
	if (o->upstream_ca[0])
		fprintf(f, "upstream-ca %s\n", o->upstream_ca);
	else
		fprintf(f, "# upstream-ca: the system's CA store\n");
	fprintf(f, "resolv-conf %s\n", o->resolv_conf);
	if (o->redis_password[0]) /* Not printed: put it in place of PASSWORD. */
		fprintf(f, "# redis redis://%s:PASSWORD@%s:%d/%d\n", o->redis_user, o->redis_host,
			o->redis_port, o->redis_db);
	else
		fprintf(f, "redis redis://%s:%d/%d\n", o->redis_host, o->redis_port, o->redis_db);
	fprintf(f, "redis-prefix %s\n", o->redis_prefix);
	fprintf(f, "reload-interval %u\n", o->reload_ms / 1000);
	fprintf(f, "redis-timeout %u\n", o->redis_timeout_ms);
	if (o->max_shrink.off)
		fprintf(f, "max-shrink off\n");
	else
		fprintf(f, "max-shrink %u%%,%zu\n", o->max_shrink.percent, o->max_shrink.count);
	if (o->max_shrink_window)
		fprintf(f, "max-shrink-window %u\n", o->max_shrink_window);
	else
		fprintf(f, "max-shrink-window off\n");
	if (o->consent_key_file[0])
		fprintf(f, "consent-key %s\n", o->consent_key_file);
	fprintf(f, "snapshot %s\n", o->snapshot[0] ? o->snapshot : "off");
	for (unsigned i = 0; i < o->nstatus_allow; i++) {
		cidr(&o->status_allow[i], buf, sizeof(buf));
		fprintf(f, "status-allow %s\n", buf);
	}
	fprintf(f, "block-ttl %u\n", (unsigned)o->block_ttl);
	fprintf(f, "ede-code %u\n", (unsigned)o->ede_code);
	static const char *const modes[] = {"nxdomain", "nodata", "refused", "sinkhole"};
	fprintf(f, "deny-mode %s\n", modes[o->deny_mode & 3]);
	inet_ntop(AF_INET, o->sinkhole4, buf, sizeof(buf));
	fprintf(f, "sinkhole-a %s\n", buf);
	inet_ntop(AF_INET6, o->sinkhole6, buf, sizeof(buf));
	fprintf(f, "sinkhole-aaaa %s\n", buf);
	fprintf(f, "max-ttl %u\nmin-ttl %u\nmax-client-ttl %u\n", (unsigned)o->max_ttl,
		(unsigned)o->min_ttl, (unsigned)o->max_client_ttl);
	fprintf(f, "stale-max %u\nstale-timeout %u\nprefetch %s\n", (unsigned)o->stale_max,
		o->stale_timeout_ms, o->prefetch ? "yes" : "no");
	fprintf(f, "upstream-trust-ad %s\n", o->upstream_trust_ad ? "yes" : "no");
	char zone[NAME_MAXTEXT + 2];
	for (unsigned i = 0; i < LOCAL_ZONES; i++)
		if (o->local_off[i / 64] & (1ull << (i % 64)))
			fprintf(f, "no-local-zone %s\n", local_zone_name(i, zone, sizeof(zone)));
	for (unsigned i = 0; i < o->nlocal_data; i++)
		fprintf(f, "local-data %s\n", o->local_data[i]);
	fprintf(f, "timeout %u\n", o->timeout_ms);
	fprintf(f, "cache-size %zu\n", o->cache_bytes >> 20);
	if (o->threads)
		fprintf(f, "threads %u\n", o->threads);
	else
		fprintf(f, "# threads: one per core\n");
	static const char *const acts[] = {"allow", "allow-snoop", "refuse", "deny"};
	for (unsigned i = 0; i < o->nacl; i++) {
		cidr(&o->acl[i].net, buf, sizeof(buf));
		unsigned a = o->acl[i].action == OPTIONS_ACL_ALLOW   ? 0
			     : o->acl[i].action == OPTIONS_ACL_SNOOP ? 1
			     : o->acl[i].action == OPTIONS_ACL_REFUSE ? 2
								      : 3;
		fprintf(f, "%s %s\n", acts[a], buf);
	}
	fprintf(f, "# then the default access list: loopback, RFC 1918, RFC 6598, link-local and ULA "
		   "allowed, others refused\n");
	fprintf(f, "ratelimit %u\nratelimit-slip %u\nratelimit-prefix %u/%u\n", o->ratelimit,
		o->ratelimit_slip, o->ratelimit_v4_prefix, o->ratelimit_v6_prefix);
	fprintf(f, "tcp-max-conns %u\ntcp-per-addr %u\ntcp-idle-timeout %u\ntcp-max-queued %zu\n"
		   "tcp-max-queued-total %zu\n",
		o->tcp_max_conns, o->tcp_per_addr, o->tcp_idle_ms, o->tcp_max_queued,
		o->tcp_max_queued_total);
	fprintf(f, "outgoing-range %u\nclient-pending %u\njostle-timeout %u\n", o->outgoing_range,
		o->client_pending, o->jostle_ms);
	fprintf(f, "use-0x20 %s\nupstream-cookies %s\n", o->use_0x20 ? "yes" : "no",
		o->cookies ? "yes" : "no");
	if (o->metrics.ss_family) {
		options_format_addr(&o->metrics, buf, sizeof(buf));
		fprintf(f, "metrics %s\n", buf);
	} else {
		fprintf(f, "# metrics: off\n");
	}
	if (o->query_log[0])
		fprintf(f, "query-log %s\nquery-log-sample %u\n%s", o->query_log, o->query_log_sample,
			o->query_log_denied_only ? "query-log-denied-only\n" : "");
	else
		fprintf(f, "# query-log: off\n");
	fprintf(f, "hit-counters %s\n", o->hit_counters ? "yes" : "no");
	fprintf(f, "report-clients %s\n", o->report_clients ? "yes" : "no");
	fprintf(f, "report-retention %u\n", o->report_retention_days);
	fprintf(f, "report-max-clients %u\n", o->report_max_clients);
	if (o->user[0])
		fprintf(f, "user %s\n", o->user);
	else
		fprintf(f, "# user: embargo if that user exists (when started as root)\n");
	static const char *const levels[] = {"error", "warn", "info", "debug"};
	fprintf(f, "log-level %s\n", levels[o->log_level & 3]);
}
