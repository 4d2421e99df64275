/* Settings parsing. Each setting has one handler used by both the config file and the command
 * line, so the two cannot drift apart. */
#include "config.h"

#include "resolver/base/options.h"

#include "policy/consent.h"
#include "resolver/base/local_zone.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SNAPSHOT "/var/lib/embargo/policy.snapshot"

#define USAGE \
	"Usage: embargo [OPTION]...\n" \
	"A filtering DNS resolver: denies the names in its Redis policy, forwards the rest.\n\n" \
	"  --listen ADDR:PORT     listen on UDP and TCP (repeatable; [IPv6]:PORT);\n" \
	"                         default 127.0.0.1:53 and [::1]:53\n" \
	"  --upstream ADDR[:PORT] forward to this resolver (repeatable);\n" \
	"                         default: the nameservers in /etc/resolv.conf\n" \
	"  --resolv-conf FILE     where default upstreams are read (default /etc/resolv.conf)\n" \
	"  --redis URL            redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n" \
	"                         (default redis://127.0.0.1:6379)\n" \
	"  --redis-prefix NAME    policy keys are NAME:deny, NAME:allow, NAME:reason (default embargo)\n" \
	"  --reload-interval SEC  re-read the policy this often where Redis gives no keyspace\n" \
	"                         notifications (default 5)\n" \
	"  --redis-timeout MS     a Redis connection that answers nothing for this long is dropped\n" \
	"                         and reconnected (default 3000)\n" \
	"  --max-shrink LIMIT     hold a policy load that would lift more deny rules at once than\n" \
	"                         LIMIT: 'P%', 'N', 'P%,N' or 'off' (default 10%,1000), counted\n" \
	"                         against the last consented policy, across loads\n" \
	"  --max-shrink-window T  after T with no held load, the policy in force becomes the\n" \
	"                         baseline lifts are counted against: '30m', '24h' (default), '7d',\n" \
	"                         or 'off' (only a consent moves it)\n" \
	"  --consent-key FILE     only consents signed with the matching private key release a held\n" \
	"                         load (embargo-policy keygen; default: unsigned consents count)\n" \
	"  --snapshot FILE        save each policy loaded to FILE, and enforce it when started\n" \
	"                         while Redis is down (default " DEFAULT_SNAPSHOT "; 'off': none)\n" \
	"  --block-ttl SEC        TTL of denied answers (default 60)\n" \
	"  --ede-code N           Extended DNS Error for denials: 15 Blocked, 16 Censored (default),\n" \
	"                         17 Filtered\n" \
	"  --deny-mode MODE       how a denial looks: nxdomain (default), nodata, refused, or\n" \
	"                         sinkhole (A/AAAA answered with --sinkhole-a/--sinkhole-aaaa,\n" \
	"                         default 0.0.0.0 and ::; other types NODATA); always with the EDE\n" \
	"  --sinkhole-a ADDR      the A answer of sinkhole mode\n" \
	"  --sinkhole-aaaa ADDR   the AAAA answer of sinkhole mode\n" \
	"  --max-ttl SEC          cache an answer for at most SEC (default 86400)\n" \
	"  --min-ttl SEC          cache an answer for at least SEC (default 0)\n" \
	"  --max-client-ttl SEC   hand clients TTLs of at most SEC, so that a name denied later\n" \
	"                         is asked again soon (default 300)\n" \
	"  --stale-max SEC        when no upstream answers, serve an answer expired at most SEC ago\n" \
	"                         with TTL 30 and EDE 3 (RFC 8767; default 86400; 0: never)\n" \
	"  --stale-timeout MS     a client with such an answer at hand waits at most MS for the\n" \
	"                         upstreams before it gets it (default 1800)\n" \
	"  --prefetch yes|no      refresh an answer asked for in the last tenth of its TTL, so\n" \
	"                         popular names never expire for clients (default yes)\n" \
	"  --upstream-trust-ad yes|no  pass the upstreams' AD bit to clients that set DO or AD\n" \
	"                         (default no: AD is cleared)\n" \
	"  --no-local-zone NAME   forward NAME and the default local zones below it rather than\n" \
	"                         answer them locally (repeatable; Unbound's nodefault). Defaults:\n" \
	"                         localhost (127.0.0.1, ::1), test, invalid, onion, home.arpa,\n" \
	"                         service.arpa, the reverse zones of loopback, RFC 1918, RFC 6598,\n" \
	"                         link-local, documentation and ULA space (NXDOMAIN below the\n" \
	"                         zone), resolver.arpa (NODATA: DDR cannot send clients to the\n" \
	"                         upstreams' DoH), use-application-dns.net, mask.icloud.com,\n" \
	"                         mask-h2.icloud.com (NXDOMAIN: Firefox's DoH and Apple's Private\n" \
	"                         Relay stay off)\n" \
	"  --local-data RR        answer this record locally, e.g. \"printer.lan A 192.168.1.5\"\n" \
	"                         (repeatable; TTL 3600 unless given; other types of that name\n" \
	"                         NODATA, names below it forwarded)\n" \
	"  --timeout MS           give up on upstreams after this long: SERVFAIL (default 2000)\n" \
	"  --cache-size MIB       answer cache size (default 64)\n" \
	"  --threads N            worker loops (default: one per core)\n" \
	"  --allow CIDR           answer clients in CIDR (repeatable; longest prefix wins; default:\n" \
	"                         loopback, RFC 1918, RFC 6598, link-local and ULA networks)\n" \
	"  --allow-snoop CIDR     as --allow, and answer queries without RD from the cache\n" \
	"  --refuse CIDR          answer REFUSED with EDE 18 (the default for other networks)\n" \
	"  --deny CIDR            drop queries from CIDR without an answer\n" \
	"  --ratelimit N          answers per second per client prefix over UDP, loopback exempt\n" \
	"                         (default 1000; 0: off)\n" \
	"  --ratelimit-slip N     every Nth answer over the limit goes out truncated (default 2;\n" \
	"                         0: drop them all)\n" \
	"  --ratelimit-prefix V4/V6  bits that make a client prefix (default 24/56)\n" \
	"  --tcp-max-conns N      TCP connections per worker; when full the oldest idle one is\n" \
	"                         closed (default 512)\n" \
	"  --tcp-per-addr N       TCP connections per client address, per worker (default 32)\n" \
	"  --tcp-idle-timeout MS  close an idle TCP connection, or one that takes longer to send\n" \
	"                         a whole message, after MS (default 10000)\n" \
	"  --tcp-max-queued BYTES answers queued to one TCP client before embargo stops reading\n" \
	"                         from it (default 262144)\n" \
	"  --tcp-max-queued-total BYTES  answers queued to all TCP clients of a worker; above it\n" \
	"                         the clients holding the most are closed first (default 4194304)\n" \
	"  --outgoing-range N     upstream UDP sockets (one per query) per worker (default 4096)\n" \
	"  --client-pending N     upstream questions one client may keep waiting, per worker\n" \
	"                         (default 512)\n" \
	"  --jostle-timeout MS    when the pending pool is full, a query older than MS makes room\n" \
	"                         (default 200)\n" \
	"  --use-0x20 yes|no      random letter case on upstream questions (default yes)\n" \
	"  --upstream-cookies yes|no  DNS cookies toward upstreams (default yes)\n" \
	"  --status-allow CIDR    clients that may ask CH TXT policy.embargo. for the policy in\n" \
	"                         force (repeatable; default 127.0.0.0/8 and ::1)\n" \
	"  --metrics ADDR:PORT    serve Prometheus metrics on http://ADDR:PORT/metrics and a\n" \
	"                         health check on /health (default: off)\n" \
	"  --config FILE          read settings from FILE: one \"name value\" per line, names as\n" \
	"                         above without dashes; command-line flags win\n" \
	"  --query-log FILE       one JSON line per query (time, client, qname, qtype, rcode,\n" \
	"                         decision, rule, reason, upstream, latency, transport) to FILE,\n" \
	"                         or - for stdout; reopened on SIGUSR1 (default: off)\n" \
	"  --query-log-sample N   log one query in N (default 1)\n" \
	"  --query-log-denied-only  log denials only\n" \
	"  --hit-counters yes|no  add denials per rule to the Redis hash PREFIX:hits once a second\n" \
	"                         (HINCRBY; default no)\n" \
	"  --report-clients yes|no  add each client's denials (count, first and last seen, rules)\n" \
	"                         to the Redis hash PREFIX:clients:DAY once a second, for\n" \
	"                         embargo-policy report (default no)\n" \
	"  --report-retention DAYS  keep each day's client report this long (default 30)\n" \
	"  --report-max-clients N  clients per day in the report; more count as \"*\" (default\n" \
	"                         10000)\n" \
	"  --user NAME            when started as root, run as NAME once the sockets are bound\n" \
	"                         (default: embargo, if that user exists)\n" \
	"  --log-level LEVEL      error, warn, info (default) or debug\n" \
	"  --check-config [FILE]  read FILE (or --config) and the flags, print the effective\n" \
	"                         settings and exit: 0 when valid, 2 when not\n" \
	"  --verbose              log debug messages (--log-level debug)\n" \
	"  --help                 show this help\n" \
	"  --version              show the version\n"

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
	snprintf(err, errlen, fmt, a, b);
	return -EINVAL;
}

int options_parse_addr(const char *s, uint16_t default_port, struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL;
	size_t hlen;
	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end)
			return -EINVAL;
		hlen = (size_t)(end - s - 1);
		if (hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hlen);
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return -EINVAL;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL; /* A bare IPv6 address. */
		hlen = colon ? (size_t)(colon - s) : strlen(s);
		if (hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, hlen);
		if (colon)
			port = colon + 1;
	}
	host[hlen] = '\0';
	long p = default_port;
	if (port) {
		char *end;
		p = strtol(port, &end, 10);
		if (*port == '\0' || *end != '\0' || p < 1 || p > 65535)
			return -EINVAL;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)p);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)p);
		return 0;
	}
	return -EINVAL;
}

int options_parse_cidr(const char *s, struct options_cidr *c)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	memset(c, 0, sizeof(*c));
	unsigned max;
	if (inet_pton(AF_INET, host, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}
	c->prefix = max;
	if (slash) {
		char *end;
		long bits = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || bits < 0 || bits > (long)max)
			return -EINVAL;
		c->prefix = (unsigned)bits;
	}
	return 0;
}

int options_cidr_match(const struct options_cidr *list, unsigned n, const struct sockaddr_storage *ss)
{
	const uint8_t *a = ss->ss_family == AF_INET6
				   ? ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr
				   : (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
	for (unsigned i = 0; i < n; i++) {
		const struct options_cidr *c = &list[i];
		if (c->family != ss->ss_family)
			continue;
		unsigned full = c->prefix / 8, rest = c->prefix % 8;
		if (memcmp(a, c->addr, full) != 0)
			continue;
		if (rest && ((a[full] ^ c->addr[full]) & (0xFF00 >> rest) & 0xFF))
			continue;
		return 1;
	}
	return 0;
}

unsigned options_host_addrs(struct options_cidr *list, unsigned max)
{
	struct ifaddrs *ifa;
	unsigned n = 0;
	if (getifaddrs(&ifa) < 0)
		return 0;
	for (struct ifaddrs *it = ifa; it && n < max; it = it->ifa_next) {
		if (!it->ifa_addr ||
		    (it->ifa_addr->sa_family != AF_INET && it->ifa_addr->sa_family != AF_INET6))
			continue;
		struct options_cidr *c = &list[n++];
		memset(c, 0, sizeof(*c));
		c->family = it->ifa_addr->sa_family;
		c->prefix = c->family == AF_INET6 ? 128 : 32;
		memcpy(c->addr,
		       c->family == AF_INET6
			       ? (const void *)&((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr
			       : (const void *)&((struct sockaddr_in *)it->ifa_addr)->sin_addr,
		       c->prefix / 8);
	}
	freeifaddrs(ifa);
	return n;
}

socklen_t options_addr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

uint16_t options_port(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
					      : ((const struct sockaddr_in *)ss)->sin_port);
}

int options_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

int options_find_addr(const struct sockaddr_storage *list, unsigned n,
		      const struct sockaddr_storage *ss)
{
	for (unsigned i = 0; i < n; i++)
		if (options_same_addr(&list[i], ss))
			return (int)i;
	return -1;
}

int options_is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

void options_format_addr(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	char host[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, cap, "%s:%u", host, ntohs(in->sin_port));
	}
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

int options_read_resolv_conf(struct options *o, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char line[512];
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		char ns[256];
		if (sscanf(line, " nameserver %255s", ns) != 1)
			continue;
		/* A scoped IPv6 address (fe80::1%eth0) is not supported; skip it. */
		if (strchr(ns, '%') || o->nupstream >= OPTIONS_MAX_ADDRS)
			continue;
		if (options_parse_addr(ns, 53, &o->upstream[o->nupstream]) == 0) {
			o->nupstream++;
			found++;
		}
	}
	fclose(f);
	return found;
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

enum {
	OPT_LISTEN = 256, OPT_UPSTREAM, OPT_RESOLV, OPT_REDIS, OPT_PREFIX, OPT_RELOAD, OPT_TTL,
	OPT_EDE, OPT_TIMEOUT, OPT_CACHE, OPT_THREADS, OPT_CONFIG, OPT_VERBOSE, OPT_HELP, OPT_VERSION,
	OPT_SNAPSHOT, OPT_STATUS_ALLOW, OPT_REDIS_TIMEOUT, OPT_MAX_SHRINK, OPT_ALLOW, OPT_ALLOW_SNOOP,
	OPT_REFUSE, OPT_DENY, OPT_RATELIMIT, OPT_RATELIMIT_SLIP, OPT_RATELIMIT_PREFIX, OPT_TCP_MAX,
	OPT_TCP_PER_ADDR, OPT_TCP_IDLE, OPT_TCP_QUEUED, OPT_TCP_QUEUED_TOTAL, OPT_OUTGOING,
	OPT_CLIENT_PENDING, OPT_JOSTLE,
	OPT_0X20, OPT_COOKIES, OPT_DENY_MODE, OPT_SINK4, OPT_SINK6,
	OPT_MAX_TTL, OPT_MAX_CLIENT_TTL, OPT_TRUST_AD, OPT_NO_LOCAL, OPT_LOCAL_DATA,
	OPT_MIN_TTL, OPT_STALE_MAX, OPT_STALE_TIMEOUT, OPT_PREFETCH, OPT_METRICS,
	OPT_USER, OPT_LOG_LEVEL, OPT_CHECK_CONFIG, OPT_QLOG, OPT_QLOG_SAMPLE, OPT_QLOG_DENIED,
	OPT_HITS, OPT_REPORT, OPT_REPORT_DAYS, OPT_REPORT_MAX, OPT_SHRINK_WINDOW, OPT_CONSENT_KEY,
	OPT_END
};
_Static_assert(OPT_END - OPT_LISTEN <= 64, "options.given has a bit per setting");
#define GIVEN(opt) ((uint64_t)1 << ((opt) - OPT_LISTEN))

static const struct option LONG_OPTIONS[] = {
	{"listen", required_argument, NULL, OPT_LISTEN},
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

/* Lists given on the command line replace those from the config file. */
struct list_state {
	int listen_from_flags, upstream_from_flags, status_from_flags, acl_from_flags;
};

static int apply(struct options *o, int opt, const char *name, const char *val, int from_flags,
		 struct list_state *ls, char *err, size_t errlen)
{
	unsigned long v;
	o->given |= GIVEN(opt);
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
		if (options_parse_addr(val, 53, &list[*n]) < 0)
			return fail(err, errlen, "--%s: not an address: '%s'", name, val);
		(*n)++;
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

static int load_config(struct options *o, const char *path, struct list_state *ls, char *err,
		       size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "--config: cannot open '%s': %s", path, strerror(errno));
		return -EINVAL;
	}
	char line[1024];
	int lineno = 0, rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		lineno++;
		o->config_unterminated = strchr(line, '\n') == NULL;
		char *s = line + strspn(line, " \t");
		s[strcspn(s, "\r\n")] = '\0';
		if (!*s || *s == '#')
			continue;
		char *val = s + strcspn(s, " \t");
		if (*val)
			*val++ = '\0';
		val += strspn(val, " \t");
		int opt = 0;
		for (const struct option *lo = LONG_OPTIONS; lo->name; lo++)
			if (strcmp(lo->name, s) == 0)
				opt = lo->val;
		if (!opt || opt == OPT_CONFIG || opt == OPT_HELP || opt == OPT_VERSION ||
		    opt == OPT_CHECK_CONFIG) {
			snprintf(err, errlen, "%s:%d: unknown setting '%s'", path, lineno, s);
			rc = -EINVAL;
			break;
		}
		char msg[512];
		rc = apply(o, opt, s, val, 0, ls, msg, sizeof(msg));
		if (rc < 0)
			snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
	}
	fclose(f);
	return rc;
}

void options_clear(struct options *o)
{
	for (unsigned i = 0; i < o->nlocal_data; i++)
		free((void *)o->local_data[i]);
	o->nlocal_data = 0;
}

unsigned options_lost(const struct options *was, const struct options *now, char *names,
		      size_t cap)
{
	uint64_t either = GIVEN(OPT_UPSTREAM) | GIVEN(OPT_RESOLV);
	uint64_t lost = was->given & ~now->given;
	if (now->given & either)
		lost &= ~either;
	unsigned n = 0;
	size_t used = 0;
	names[0] = '\0';
	for (const struct option *lo = LONG_OPTIONS; lo->name; lo++) {
		if (lo->val < OPT_LISTEN || lo->val >= OPT_END || !(lost & GIVEN(lo->val)))
			continue;
		lost &= ~GIVEN(lo->val); /* Named once (a setting may have two names). */
		n++;
		int w = snprintf(names + used, cap - used, "%s%s", used ? ", " : "", lo->name);
		if (w > 0 && (size_t)w < cap - used)
			used += (size_t)w;
	}
	return n;
}

int options_parse(struct options *o, int argc, char **argv, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	strcpy(o->redis_host, "127.0.0.1");
	o->redis_port = 6379;
	strcpy(o->redis_prefix, "embargo");
	strcpy(o->resolv_conf, "/etc/resolv.conf");
	strcpy(o->snapshot, DEFAULT_SNAPSHOT);
	o->block_ttl = 60;
	o->ede_code = 16;
	o->timeout_ms = 2000;
	o->cache_bytes = (size_t)64 << 20;
	o->reload_ms = 5000;
	o->redis_timeout_ms = 3000;
	o->max_shrink = (struct guard_limits){.percent = GUARD_PERCENT, .count = GUARD_COUNT};
	o->max_shrink_window = 86400;
	o->ratelimit = 1000;
	o->ratelimit_slip = 2;
	o->ratelimit_v4_prefix = 24;
	o->ratelimit_v6_prefix = 56;
	o->tcp_max_conns = 512;
	o->tcp_per_addr = 32;
	o->tcp_idle_ms = 10000;
	o->tcp_max_queued = 256 * 1024;
	o->tcp_max_queued_total = 4 * 1024 * 1024;
	o->outgoing_range = 4096;
	o->client_pending = 512;
	o->jostle_ms = 200;
	o->use_0x20 = 1;
	o->cookies = 1;
	o->max_ttl = 86400;
	o->max_client_ttl = 300;
	o->report_retention_days = 30;
	o->report_max_clients = 10000;
	o->stale_max = 86400;
	o->log_level = 2;
	o->query_log_sample = 1;
	o->stale_timeout_ms = 1800;
	o->prefetch = 1;
	struct list_state ls = {0};

	/* The config file first, so that flags override it whatever their order. */
	for (int i = 1; i < argc; i++) {
		const char *path = NULL;
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			path = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			path = argv[i] + 9;
		else if (strncmp(argv[i], "--check-config=", 15) == 0)
			path = argv[i] + 15;
		else if (strcmp(argv[i], "--check-config") == 0 && i + 1 < argc && argv[i + 1][0] != '-')
			path = argv[i + 1];
		if (path && load_config(o, path, &ls, err, errlen) < 0)
			return -EINVAL;
	}
	ls.listen_from_flags = ls.upstream_from_flags = ls.status_from_flags = 0;
	ls.acl_from_flags = 0;

	optind = 0; /* GNU getopt: start afresh (options are parsed again on SIGHUP). */
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "", LONG_OPTIONS, NULL)) != -1) {
		if (opt == '?' || opt == ':') {
			const char *arg = argv[optind - 1];
			if (optopt)
				return fail(err, errlen, "option '%s' needs a value%s", arg, "");
			return fail(err, errlen, "unknown option '%s' (see --help)%s", arg, "");
		}
		if (opt == OPT_HELP) {
			fputs(USAGE, stdout);
			return OPTIONS_EXIT;
		}
		if (opt == OPT_VERSION) {
			printf("embargo %s\n", PACKAGE_VERSION);
			return OPTIONS_EXIT;
		}
		if (opt == OPT_CONFIG)
			continue;
		if (opt == OPT_CHECK_CONFIG) {
			o->check_config = 1;
			if (!optarg && optind < argc && argv[optind][0] != '-')
				optind++; /* Its FILE, read above. */
			continue;
		}
		const char *name = "";
		for (const struct option *lo = LONG_OPTIONS; lo->name; lo++)
			if (lo->val == opt)
				name = lo->name;
		if (apply(o, opt, name, optarg, 1, &ls, err, errlen) < 0)
			return -EINVAL;
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument '%s' (see --help)%s", argv[optind], "");

	if (o->min_ttl > o->max_ttl) {
		snprintf(err, errlen, "--min-ttl %u is above --max-ttl %u", (unsigned)o->min_ttl,
			 (unsigned)o->max_ttl);
		return -EINVAL;
	}
	if (o->nstatus_allow == 0) {
		options_parse_cidr("127.0.0.0/8", &o->status_allow[0]);
		options_parse_cidr("::1", &o->status_allow[1]);
		o->nstatus_allow = 2;
	}
	if (o->nlisten == 0) {
		options_parse_addr("127.0.0.1", 53, &o->listen[0]);
		options_parse_addr("[::1]", 53, &o->listen[1]);
		o->nlisten = 2;
	}
	if (o->nupstream == 0) {
		int n = options_read_resolv_conf(o, o->resolv_conf);
		if (n < 0)
			return fail(err, errlen, "no --upstream given and cannot read %s: %s",
				    o->resolv_conf, strerror(-n));
		if (n == 0)
			return fail(err, errlen, "no --upstream given and no nameserver in %s%s",
				    o->resolv_conf, "");
	}
	return OPTIONS_RUN;
}
