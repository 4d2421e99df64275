/* The settings' table and handlers (see options_table.h): getopt's long options, one case per
 * setting in options_table_apply() with its bounds and its message, the value parsers they
 * share, and the bit each sets in options.given (options_lost reads them back). Messages name
 * the setting as given, so the same text serves a flag and a config-file line. It must not
 * read files (but --consent-key) or depend on where a value came from, beyond from_flags. */
#include "config.h"

#include "resolver/base/options_table.h"

#include "policy/consent.h"
#include "policy/name.h"
#include "resolver/base/local_zone.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
	snprintf(err, errlen, fmt, a, b);
	return -EINVAL;
}

int options_parse_redis_url(struct options *o, const char *url)
{
	const char *s = url;
	if (strncmp(s, "redis://", 8) != 0)
		return -EINVAL;
	s += 8;
	o->redis_user[0] = '\0';
	o->redis_password[0] = '\0';
	const char *at = strrchr(s, '@');
	if (at) {
		/* redis://:PASSWORD@ for the default user, redis://USER:PASSWORD@ for an ACL user
		 * (Redis 6 and later): both go to AUTH. */
		const char *colon = memchr(s, ':', (size_t)(at - s));
		if (!colon || (size_t)(at - colon - 1) >= sizeof(o->redis_password) ||
		    (size_t)(colon - s) >= sizeof(o->redis_user))
			return -EINVAL;
		memcpy(o->redis_user, s, (size_t)(colon - s));
		o->redis_user[colon - s] = '\0';
		memcpy(o->redis_password, colon + 1, (size_t)(at - colon - 1));
		o->redis_password[at - colon - 1] = '\0';
		s = at + 1;
	}
	const char *slash = strchr(s, '/');
	size_t hp = slash ? (size_t)(slash - s) : strlen(s);
	char hostport[300];
	if (hp == 0 || hp >= sizeof(hostport))
		return -EINVAL;
	memcpy(hostport, s, hp);
	hostport[hp] = '\0';
	o->redis_db = 0;
	if (slash && slash[1]) {
		char *end;
		long db = strtol(slash + 1, &end, 10);
		if (*end != '\0' || db < 0 || db > 1000000)
			return -EINVAL;
		o->redis_db = (int)db;
	}
	o->redis_port = 6379;
	char *host = hostport;
	char *port = NULL;
	if (host[0] == '[') {
		char *end = strchr(host, ']');
		if (!end)
			return -EINVAL;
		*end = '\0';
		host++;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1])
			return -EINVAL;
	} else if ((port = strchr(host, ':'))) {
		*port++ = '\0';
	}
	if (port) {
		char *end;
		long p = strtol(port, &end, 10);
		if (*port == '\0' || *end || p < 1 || p > 65535)
			return -EINVAL;
		o->redis_port = (int)p;
	}
	if (!*host || strlen(host) >= sizeof(o->redis_host))
		return -EINVAL;
	strcpy(o->redis_host, host);
	return 0;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* A duration: seconds, or a number with s, m, h or d; "off" is 0. */
static int parse_window(const char *s, unsigned *out)
{
	if (strcmp(s, "off") == 0) {
		*out = 0;
		return 0;
	}
	char *end;
	if (!(*s >= '0' && *s <= '9'))
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	unsigned long unit = *end == 's' || !*end ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600
			     : *end == 'd' ? 86400 : 0;
	if (errno || !unit || (*end && end[1]) || v == 0 || v > 365UL * 86400 / unit)
		return -EINVAL;
	*out = (unsigned)(v * unit);
	return 0;
}

/* Read the public key of --consent-key. A private key given by mistake is refused: it must
 * stay with the approver, never on a resolver. */
static int read_consent_key(struct options *o, char *err, size_t errlen)
{
	FILE *f = fopen(o->consent_key_file, "r");
	if (!f)
		return fail(err, errlen, "--consent-key %s: %s", o->consent_key_file, strerror(errno));
	char text[256];
	size_t n = fread(text, 1, sizeof(text), f);
	fclose(f);
	bool is_private = false;
	if (n == sizeof(text) || consent_key_parse(text, n, o->consent_key, &is_private) < 0)
		return fail(err, errlen, "--consent-key %s: not an embargo consent key (make one with "
			    "embargo-policy keygen)%s", o->consent_key_file, "");
	if (is_private)
		return fail(err, errlen, "--consent-key %s is a private key: give the resolver the "
			    "public one and keep the private key with the approver%s",
			    o->consent_key_file, "");
	return 0;
}

_Static_assert(OPT_END - OPT_LISTEN <= 128, "options.given has a bit per setting");
#define GIVEN_WORD(opt) (((opt) - OPT_LISTEN) / 64)
#define GIVEN(opt) ((uint64_t)1 << (((opt) - OPT_LISTEN) % 64))

const struct option options_table_long[] = {
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"listen-tls", required_argument, NULL, OPT_LISTEN_TLS},
	{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
	{"tls-key", required_argument, NULL, OPT_TLS_KEY},
	{"tls-handshake-timeout", required_argument, NULL, OPT_TLS_HANDSHAKE},
	{"tls-handshake-rate", required_argument, NULL, OPT_TLS_HANDSHAKE_RATE},
	{"listen-https", required_argument, NULL, OPT_LISTEN_HTTPS},
	{"https-path", required_argument, NULL, OPT_HTTPS_PATH},
	{"resolver-name", required_argument, NULL, OPT_RESOLVER_NAME},
	{"upstream-ca", required_argument, NULL, OPT_UPSTREAM_CA},
	{"upstream", required_argument, NULL, OPT_UPSTREAM},
	{"resolv-conf", required_argument, NULL, OPT_RESOLV},
	{"redis", required_argument, NULL, OPT_REDIS},
	{"redis-prefix", required_argument, NULL, OPT_PREFIX},
	{"reload-interval", required_argument, NULL, OPT_RELOAD},
	{"snapshot", required_argument, NULL, OPT_SNAPSHOT},
	{"redis-timeout", required_argument, NULL, OPT_REDIS_TIMEOUT},
	{"max-shrink", required_argument, NULL, OPT_MAX_SHRINK},
	{"max-shrink-window", required_argument, NULL, OPT_SHRINK_WINDOW},
	{"consent-key", required_argument, NULL, OPT_CONSENT_KEY},
	{"status-allow", required_argument, NULL, OPT_STATUS_ALLOW},
	{"block-ttl", required_argument, NULL, OPT_TTL},
	{"ede-code", required_argument, NULL, OPT_EDE},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"cache-size", required_argument, NULL, OPT_CACHE},
	{"threads", required_argument, NULL, OPT_THREADS},
	{"allow", required_argument, NULL, OPT_ALLOW},
	{"allow-snoop", required_argument, NULL, OPT_ALLOW_SNOOP},
	{"refuse", required_argument, NULL, OPT_REFUSE},
	{"deny", required_argument, NULL, OPT_DENY},
	{"ratelimit", required_argument, NULL, OPT_RATELIMIT},
	{"ratelimit-slip", required_argument, NULL, OPT_RATELIMIT_SLIP},
	{"ratelimit-prefix", required_argument, NULL, OPT_RATELIMIT_PREFIX},
	{"tcp-max-conns", required_argument, NULL, OPT_TCP_MAX},
	{"tcp-per-addr", required_argument, NULL, OPT_TCP_PER_ADDR},
	{"tcp-idle-timeout", required_argument, NULL, OPT_TCP_IDLE},
	{"tcp-max-queued", required_argument, NULL, OPT_TCP_QUEUED},
	{"tcp-max-queued-total", required_argument, NULL, OPT_TCP_QUEUED_TOTAL},
	{"outgoing-range", required_argument, NULL, OPT_OUTGOING},
	{"client-pending", required_argument, NULL, OPT_CLIENT_PENDING},
	{"jostle-timeout", required_argument, NULL, OPT_JOSTLE},
	{"use-0x20", required_argument, NULL, OPT_0X20},
	{"deny-mode", required_argument, NULL, OPT_DENY_MODE},
	{"max-ttl", required_argument, NULL, OPT_MAX_TTL},
	{"no-local-zone", required_argument, NULL, OPT_NO_LOCAL},
	{"local-data", required_argument, NULL, OPT_LOCAL_DATA},
	{"max-client-ttl", required_argument, NULL, OPT_MAX_CLIENT_TTL},
	{"min-ttl", required_argument, NULL, OPT_MIN_TTL},
	{"stale-max", required_argument, NULL, OPT_STALE_MAX},
	{"stale-timeout", required_argument, NULL, OPT_STALE_TIMEOUT},
	{"prefetch", required_argument, NULL, OPT_PREFETCH},
	{"metrics", required_argument, NULL, OPT_METRICS},
	{"upstream-trust-ad", required_argument, NULL, OPT_TRUST_AD},
	{"sinkhole-a", required_argument, NULL, OPT_SINK4},
	{"sinkhole-aaaa", required_argument, NULL, OPT_SINK6},
	{"upstream-cookies", required_argument, NULL, OPT_COOKIES},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"verbose", no_argument, NULL, OPT_VERBOSE},
	{"user", required_argument, NULL, OPT_USER},
	{"hit-counters", required_argument, NULL, OPT_HITS},
	{"report-clients", required_argument, NULL, OPT_REPORT},
	{"report-retention", required_argument, NULL, OPT_REPORT_DAYS},
	{"report-max-clients", required_argument, NULL, OPT_REPORT_MAX},
	{"query-log", required_argument, NULL, OPT_QLOG},
	{"query-log-sample", required_argument, NULL, OPT_QLOG_SAMPLE},
	{"query-log-denied-only", no_argument, NULL, OPT_QLOG_DENIED},
	{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	{"check-config", optional_argument, NULL, OPT_CHECK_CONFIG},
	{"help", no_argument, NULL, OPT_HELP},
	{"version", no_argument, NULL, OPT_VERSION},
	{NULL, 0, NULL, 0},
};

int options_table_apply(struct options *o, int opt, const char *name, const char *val,
			int from_flags, struct options_table_lists *ls, char *err, size_t errlen)
{
	unsigned long v;
	o->given[GIVEN_WORD(opt)] |= GIVEN(opt);
	switch (opt) {
	case OPT_LISTEN:
	case OPT_UPSTREAM: {
		int listen = opt == OPT_LISTEN;
		struct sockaddr_storage *list = listen ? o->listen : o->upstream;
		unsigned *n = listen ? &o->nlisten : &o->nupstream;
		int *flagged = listen ? &ls->listen_from_flags : &ls->upstream_from_flags;
		if (from_flags && !*flagged) {
			*n = 0;
			*flagged = 1;
		}
		if (*n >= OPTIONS_MAX_ADDRS)
			return fail(err, errlen, "too many --%s addresses (at most 16)%s", name, "");
		if (!listen && strncmp(val, "tls://", 6) == 0)
			return options_parse_tls_upstream(o, *n, val, err, errlen) < 0 ? -EINVAL
										: ((*n)++, 0);
		if (options_parse_addr(val, 53, &list[*n]) < 0)
			return fail(err, errlen, "--%s: not an address: '%s'", name, val);
		if (!listen) {
			o->upstream_tls[*n] = 0;
			o->upstream_tls_name[*n][0] = '\0';
		}
		(*n)++;
		return 0;
	}
	case OPT_UPSTREAM_CA:
		if (strlen(val) >= sizeof(o->upstream_ca) || !*val)
			return fail(err, errlen, "--%s: expected a file name, got '%s'", name, val);
		strcpy(o->upstream_ca, val);
		return 0;
	case OPT_LISTEN_TLS:
	case OPT_LISTEN_HTTPS: {
		int https = opt == OPT_LISTEN_HTTPS;
		unsigned *n = https ? &o->nlisten_https : &o->nlisten_tls;
		int *fresh = https ? &ls->listen_https_from_flags : &ls->listen_tls_from_flags;
		if (from_flags && !*fresh) {
			*n = 0;
			*fresh = 1;
		}
		if (*n >= OPTIONS_MAX_ADDRS)
			return fail(err, errlen, "too many --%s addresses (at most 16)%s", name, "");
		struct sockaddr_storage *to = https ? &o->listen_https[*n] : &o->listen_tls[*n];
		if (options_parse_addr(val, https ? 443 : 853, to) < 0)
			return fail(err, errlen, "--%s: not an address: '%s'", name, val);
		(*n)++;
		return 0;
	}
	case OPT_HTTPS_PATH:
		/* A path as it arrives in :path, compared octet for octet: no query, no fragment,
		 * nothing a client would have to escape. */
		if (val[0] != '/' || strlen(val) >= sizeof(o->https_path) ||
		    strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				"/-._~") != strlen(val))
			return fail(err, errlen, "--%s: expected a path such as /dns-query (letters, "
				    "digits, '/-._~', at most 127), got '%s'", name, val);
		strcpy(o->https_path, val);
		return 0;
	case OPT_TLS_CERT:
	case OPT_TLS_KEY: {
		char *path = opt == OPT_TLS_CERT ? o->tls_cert : o->tls_key;
		if (strlen(val) >= sizeof(o->tls_cert) || !*val)
			return fail(err, errlen, "--%s: expected a file name, got '%s'", name, val);
		strcpy(path, val);
		return 0;
	}
	case OPT_TLS_HANDSHAKE:
		if (parse_uint(val, 100, 60000, &v) < 0)
			return fail(err, errlen, "--%s: expected milliseconds 100..60000, got '%s'", name, val);
		o->tls_handshake_ms = (unsigned)v;
		return 0;
	case OPT_TLS_HANDSHAKE_RATE:
		if (parse_uint(val, 0, 1000000, &v) < 0)
			return fail(err, errlen, "--%s: expected handshakes per second 0..1000000 (0: no "
				    "cap), got '%s'", name, val);
		o->tls_handshake_rate = (unsigned)v;
		return 0;
	case OPT_RESOLVER_NAME: {
		/* DDR answers _dns.NAME too: that name must be one as well. */
		size_t len = strlen(val);
		if (len > 1 && val[len - 1] == '.')
			len--;
		struct name n;
		char dns[NAME_MAXTEXT + 8];
		if (len > NAME_MAXTEXT || name_from_text(&n, val, len) < 0 || n.nlabels == 0 ||
		    snprintf(dns, sizeof(dns), "_dns.%.*s", (int)len, val) < 0 ||
		    name_from_text(&n, dns, strlen(dns)) < 0)
			return fail(err, errlen, "--%s: expected a domain name (the one in the TLS "
				    "certificate), got '%s'", name, val);
		memcpy(o->resolver_name, val, len);
		o->resolver_name[len] = '\0';
		return 0;
	}
	case OPT_RESOLV:
		if (strlen(val) >= sizeof(o->resolv_conf))
			return fail(err, errlen, "--%s: path too long: '%s'", name, val);
		strcpy(o->resolv_conf, val);
		return 0;
	case OPT_REDIS:
		if (options_parse_redis_url(o, val) < 0)
			return fail(err, errlen,
				    "--%s: expected redis://[:PASSWORD@]HOST[:PORT][/DB], got '%s'",
				    name, val);
		return 0;
	case OPT_PREFIX:
		if (!*val || strlen(val) >= sizeof(o->redis_prefix) || strpbrk(val, " \t\r\n\v\f"))
			return fail(err, errlen, "--%s: invalid key prefix '%s'", name, val);
		strcpy(o->redis_prefix, val);
		return 0;
	case OPT_STATUS_ALLOW:
		if (from_flags && !ls->status_from_flags) {
			o->nstatus_allow = 0;
			ls->status_from_flags = 1;
		}
		if (o->nstatus_allow >= OPTIONS_MAX_ADDRS)
			return fail(err, errlen, "too many --%s prefixes (at most 16)%s", name, "");
		if (options_parse_cidr(val, &o->status_allow[o->nstatus_allow]) < 0)
			return fail(err, errlen, "--%s: expected ADDR[/BITS], got '%s'", name, val);
		o->nstatus_allow++;
		return 0;
	case OPT_SNAPSHOT:
		if (strlen(val) >= sizeof(o->snapshot) || !*val)
			return fail(err, errlen, "--%s: expected a file name or 'off', got '%s'", name, val);
		strcpy(o->snapshot, strcmp(val, "off") == 0 ? "" : val);
		return 0;
	case OPT_REDIS_TIMEOUT:
		if (parse_uint(val, 100, 600000, &v) < 0)
			return fail(err, errlen, "--%s: expected milliseconds 100..600000, got '%s'", name, val);
		o->redis_timeout_ms = (unsigned)v;
		return 0;
	case OPT_MAX_SHRINK:
		if (guard_parse_limits(val, &o->max_shrink) < 0)
			return fail(err, errlen, "--%s: expected P%%, N, P%%,N or off, got '%s'", name, val);
		return 0;
	case OPT_SHRINK_WINDOW:
		if (parse_window(val, &o->max_shrink_window) < 0)
			return fail(err, errlen, "--%s: expected a duration (30m, 24h, 7d, 3600) up to 365d "
				    "or 'off', got '%s'", name, val);
		return 0;
	case OPT_CONSENT_KEY:
		if (strlen(val) >= sizeof(o->consent_key_file) || !*val)
			return fail(err, errlen, "--%s: expected a file name, got '%s'", name, val);
		strcpy(o->consent_key_file, val);
		return read_consent_key(o, err, errlen);
	case OPT_RELOAD:
		if (parse_uint(val, 1, 86400, &v) < 0)
			return fail(err, errlen, "--%s: expected seconds 1..86400, got '%s'", name, val);
		o->reload_ms = (unsigned)v * 1000;
		return 0;
	case OPT_TTL:
		if (parse_uint(val, 0, 604800, &v) < 0)
			return fail(err, errlen, "--%s: expected seconds 0..604800, got '%s'", name, val);
		o->block_ttl = (uint32_t)v;
		return 0;
	case OPT_EDE:
		if (parse_uint(val, 15, 17, &v) < 0)
			return fail(err, errlen,
				    "--%s: expected 15 (Blocked), 16 (Censored) or 17 (Filtered), got '%s'",
				    name, val);
		o->ede_code = (uint16_t)v;
		return 0;
	case OPT_TIMEOUT:
		if (parse_uint(val, 100, 60000, &v) < 0)
			return fail(err, errlen, "--%s: expected milliseconds 100..60000, got '%s'",
				    name, val);
		o->timeout_ms = (unsigned)v;
		return 0;
	case OPT_CACHE:
		if (parse_uint(val, 1, 65536, &v) < 0)
			return fail(err, errlen, "--%s: expected MiB 1..65536, got '%s'", name, val);
		o->cache_bytes = (size_t)v << 20;
		return 0;
	case OPT_THREADS:
		if (parse_uint(val, 1, 256, &v) < 0)
			return fail(err, errlen, "--%s: expected 1..256, got '%s'", name, val);
		o->threads = (unsigned)v;
		return 0;
	case OPT_ALLOW:
	case OPT_ALLOW_SNOOP:
	case OPT_REFUSE:
	case OPT_DENY: {
		if (from_flags && !ls->acl_from_flags) {
			o->nacl = 0;
			ls->acl_from_flags = 1;
		}
		if (o->nacl >= OPTIONS_MAX_ACL)
			return fail(err, errlen, "too many access-list entries (at most 64)%s%s", "", "");
		struct options_acl_rule *r = &o->acl[o->nacl];
		if (options_parse_cidr(val, &r->net) < 0)
			return fail(err, errlen, "--%s: expected ADDR[/BITS], got '%s'", name, val);
		r->action = opt == OPT_ALLOW	     ? OPTIONS_ACL_ALLOW
			    : opt == OPT_ALLOW_SNOOP ? OPTIONS_ACL_SNOOP
			    : opt == OPT_REFUSE	     ? OPTIONS_ACL_REFUSE
						     : OPTIONS_ACL_DROP;
		o->nacl++;
		return 0;
	}
	case OPT_RATELIMIT:
		if (parse_uint(val, 0, 10000000, &v) < 0)
			return fail(err, errlen, "--%s: expected answers per second (0: off), got '%s'", name, val);
		o->ratelimit = (unsigned)v;
		return 0;
	case OPT_RATELIMIT_SLIP:
		if (parse_uint(val, 0, 100, &v) < 0)
			return fail(err, errlen, "--%s: expected 0..100, got '%s'", name, val);
		o->ratelimit_slip = (unsigned)v;
		return 0;
	case OPT_RATELIMIT_PREFIX: {
		unsigned long v4, v6;
		char a[16], b[16];
		if (sscanf(val, "%15[0-9]/%15[0-9]", a, b) != 2 || parse_uint(a, 8, 32, &v4) < 0 ||
		    parse_uint(b, 16, 128, &v6) < 0)
			return fail(err, errlen, "--%s: expected V4BITS/V6BITS such as 24/56, got '%s'", name, val);
		o->ratelimit_v4_prefix = (unsigned)v4;
		o->ratelimit_v6_prefix = (unsigned)v6;
		return 0;
	}
	case OPT_TCP_MAX:
		if (parse_uint(val, 1, 100000, &v) < 0)
			return fail(err, errlen, "--%s: expected 1..100000, got '%s'", name, val);
		o->tcp_max_conns = (unsigned)v;
		return 0;
	case OPT_TCP_PER_ADDR:
		if (parse_uint(val, 1, 100000, &v) < 0)
			return fail(err, errlen, "--%s: expected 1..100000, got '%s'", name, val);
		o->tcp_per_addr = (unsigned)v;
		return 0;
	case OPT_TCP_IDLE:
		if (parse_uint(val, 100, 600000, &v) < 0)
			return fail(err, errlen, "--%s: expected milliseconds 100..600000, got '%s'", name, val);
		o->tcp_idle_ms = (unsigned)v;
		return 0;
	case OPT_TCP_QUEUED:
		if (parse_uint(val, 65540, 1UL << 30, &v) < 0)
			return fail(err, errlen, "--%s: expected bytes 65540..1073741824, got '%s'", name, val);
		o->tcp_max_queued = (size_t)v;
		return 0;
	case OPT_TCP_QUEUED_TOTAL:
		if (parse_uint(val, 65540, 1UL << 34, &v) < 0)
			return fail(err, errlen, "--%s: expected bytes 65540..17179869184, got '%s'", name,
				    val);
		o->tcp_max_queued_total = (size_t)v;
		return 0;
	case OPT_OUTGOING:
		if (parse_uint(val, 16, 65536, &v) < 0)
			return fail(err, errlen, "--%s: expected 16..65536, got '%s'", name, val);
		o->outgoing_range = (unsigned)v;
		return 0;
	case OPT_CLIENT_PENDING:
		if (parse_uint(val, 1, 65536, &v) < 0)
			return fail(err, errlen, "--%s: expected 1..65536, got '%s'", name, val);
		o->client_pending = (unsigned)v;
		return 0;
	case OPT_JOSTLE:
		if (parse_uint(val, 0, 60000, &v) < 0)
			return fail(err, errlen, "--%s: expected milliseconds 0..60000, got '%s'", name, val);
		o->jostle_ms = (unsigned)v;
		return 0;
	case OPT_0X20:
	case OPT_COOKIES:
	case OPT_PREFETCH:
	case OPT_HITS:
	case OPT_REPORT:
	case OPT_TRUST_AD: {
		int yes = strcmp(val, "yes") == 0, no = strcmp(val, "no") == 0;
		if (!yes && !no)
			return fail(err, errlen, "--%s: expected yes or no, got '%s'", name, val);
		*(opt == OPT_0X20      ? &o->use_0x20
		  : opt == OPT_COOKIES ? &o->cookies
		  : opt == OPT_PREFETCH ? &o->prefetch
		  : opt == OPT_HITS    ? &o->hit_counters
		  : opt == OPT_REPORT  ? &o->report_clients
					: &o->upstream_trust_ad) = yes;
		return 0;
	}
	case OPT_REPORT_DAYS:
		if (parse_uint(val, 1, 3650, &v) < 0)
			return fail(err, errlen, "--%s: expected days 1..3650, got '%s'", name, val);
		o->report_retention_days = (unsigned)v;
		return 0;
	case OPT_REPORT_MAX:
		if (parse_uint(val, 1, 10000000, &v) < 0)
			return fail(err, errlen, "--%s: expected 1..10000000, got '%s'", name, val);
		o->report_max_clients = (unsigned)v;
		return 0;
	case OPT_MIN_TTL:
	case OPT_STALE_MAX:
		if (parse_uint(val, 0, 604800, &v) < 0)
			return fail(err, errlen, "--%s: expected seconds 0..604800, got '%s'", name, val);
		*(opt == OPT_MIN_TTL ? &o->min_ttl : &o->stale_max) = (uint32_t)v;
		return 0;
	case OPT_METRICS: {
		/* A port is required: there is no default port to guess. */
		struct sockaddr_storage ss;
		if (options_parse_addr(val, 0, &ss) < 0 ||
		    (ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					     : ((struct sockaddr_in6 *)&ss)->sin6_port) == 0)
			return fail(err, errlen, "--%s: expected ADDR:PORT, got '%s'", name, val);
		o->metrics = ss;
		return 0;
	}
	case OPT_STALE_TIMEOUT:
		if (parse_uint(val, 0, 60000, &v) < 0)
			return fail(err, errlen, "--%s: expected milliseconds 0..60000, got '%s'", name, val);
		o->stale_timeout_ms = (unsigned)v;
		return 0;
	case OPT_NO_LOCAL:
		if (local_zone_off(o->local_off, val) < 0)
			return fail(err, errlen, "--%s: no default local zone is at or below '%s' (see --help)",
				    name, val);
		return 0;
	case OPT_LOCAL_DATA: {
		if (o->nlocal_data >= OPTIONS_MAX_LOCAL_DATA)
			return fail(err, errlen, "too many --%s records (at most 1024)%s", name, "");
		char msg[400];
		if (local_zone_check_data(val, msg, sizeof(msg)) < 0)
			return fail(err, errlen, "%s%s", msg, "");
		char *copy = strdup(val);
		if (!copy)
			return fail(err, errlen, "--%s: out of memory%s", name, "");
		o->local_data[o->nlocal_data++] = copy;
		return 0;
	}
	case OPT_MAX_TTL:
	case OPT_MAX_CLIENT_TTL:
		if (parse_uint(val, 1, 604800, &v) < 0)
			return fail(err, errlen, "--%s: expected seconds 1..604800, got '%s'", name, val);
		*(opt == OPT_MAX_TTL ? &o->max_ttl : &o->max_client_ttl) = (uint32_t)v;
		return 0;
	case OPT_DENY_MODE: {
		static const char *const modes[] = {"nxdomain", "nodata", "refused", "sinkhole"};
		for (int m = 0; m < 4; m++)
			if (strcmp(val, modes[m]) == 0) {
				o->deny_mode = m;
				return 0;
			}
		return fail(err, errlen, "--%s: expected nxdomain, nodata, refused or sinkhole, got '%s'",
			    name, val);
	}
	case OPT_SINK4:
		if (inet_pton(AF_INET, val, o->sinkhole4) != 1)
			return fail(err, errlen, "--%s: expected an IPv4 address, got '%s'", name, val);
		return 0;
	case OPT_SINK6:
		if (inet_pton(AF_INET6, val, o->sinkhole6) != 1)
			return fail(err, errlen, "--%s: expected an IPv6 address, got '%s'", name, val);
		return 0;
	case OPT_VERBOSE:
		o->log_level = 3;
		return 0;
	case OPT_QLOG:
		if (!*val || strlen(val) >= sizeof(o->query_log))
			return fail(err, errlen, "--%s: expected a file or -, got '%s'", name, val);
		strcpy(o->query_log, val);
		return 0;
	case OPT_QLOG_SAMPLE:
		if (parse_uint(val, 1, 1000000, &v) < 0)
			return fail(err, errlen, "--%s: expected 1..1000000, got '%s'", name, val);
		o->query_log_sample = (unsigned)v;
		return 0;
	case OPT_QLOG_DENIED:
		o->query_log_denied_only = 1;
		return 0;
	case OPT_USER:
		if (!*val || strlen(val) >= sizeof(o->user))
			return fail(err, errlen, "--%s: expected a user name, got '%s'", name, val);
		strcpy(o->user, val);
		return 0;
	case OPT_LOG_LEVEL: {
		static const char *const levels[] = {"error", "warn", "info", "debug"};
		for (int l = 0; l < 4; l++)
			if (strcmp(val, levels[l]) == 0) {
				o->log_level = l;
				return 0;
			}
		return fail(err, errlen, "--%s: expected error, warn, info or debug, got '%s'", name, val);
	}
	}
	return fail(err, errlen, "unknown setting '%s'%s", name, "");
}

unsigned options_lost(const struct options *was, const struct options *now, char *names,
		      size_t cap)
{
	/* --upstream and --resolv-conf name the upstreams either way: one stands for the other. */
	_Static_assert(GIVEN_WORD(OPT_UPSTREAM) == 0 && GIVEN_WORD(OPT_RESOLV) == 0,
		       "both in the first word");
	uint64_t either = GIVEN(OPT_UPSTREAM) | GIVEN(OPT_RESOLV);
	uint64_t lost[2] = {was->given[0] & ~now->given[0], was->given[1] & ~now->given[1]};
	if (now->given[0] & either)
		lost[0] &= ~either;
	/* The encrypted listeners and their certificate's files change only with a restart: a
	 * reload keeps them (resolver/reload.c), so one that leaves them out loses nothing. */
	static const int KEPT[] = {OPT_LISTEN_TLS, OPT_LISTEN_HTTPS, OPT_TLS_CERT, OPT_TLS_KEY};
	for (unsigned i = 0; i < sizeof(KEPT) / sizeof(KEPT[0]); i++)
		lost[GIVEN_WORD(KEPT[i])] &= ~GIVEN(KEPT[i]);
	unsigned n = 0;
	size_t used = 0;
	names[0] = '\0';
	for (const struct option *lo = options_table_long; lo->name; lo++) {
		if (lo->val < OPT_LISTEN || lo->val >= OPT_END ||
		    !(lost[GIVEN_WORD(lo->val)] & GIVEN(lo->val)))
			continue;
		lost[GIVEN_WORD(lo->val)] &= ~GIVEN(lo->val); /* Named once (a setting may have two names). */
		n++;
		int w = snprintf(names + used, cap - used, "%s%s", used ? ", " : "", lo->name);
		if (w > 0 && (size_t)w < cap - used)
			used += (size_t)w;
	}
	return n;
}
