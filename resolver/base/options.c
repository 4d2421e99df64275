/* Settings parsing: the defaults, the --help text, and options_parse(), which reads the config
 * file first (options_file.c) and the command line after it, so that flags win whatever their
 * order; each value goes through the one handler of its setting (options_table.c). Defaults
 * left unset by both are filled last (listen, status-allow, the upstreams from resolv.conf).
 * It never checks a value itself (options_table.c does) and never exits the process. */
#include "config.h"

#include "resolver/base/options.h"

#include "policy/name.h"
#include "resolver/base/options_file.h"
#include "resolver/base/resolv_conf.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SNAPSHOT "/var/lib/embargo/policy.snapshot"

#define USAGE \
	"Usage: embargo [OPTION]...\n" \
	"A filtering DNS resolver: denies the names in its Redis policy, forwards the rest.\n\n" \
	"  --listen ADDR:PORT     listen on UDP and TCP (repeatable; [IPv6]:PORT);\n" \
	"                         default 127.0.0.1:53 and [::1]:53\n" \
	"  --listen-tls ADDR:PORT listen for DNS over TLS (RFC 7858; repeatable; port 853 unless\n" \
	"                         given); needs --tls-cert and --tls-key\n" \
	"  --tls-cert FILE        PEM certificate chain of the encrypted listeners (read again\n" \
	"                         on SIGHUP)\n" \
	"  --tls-key FILE         PEM private key of --tls-cert\n" \
	"  --tls-handshake-timeout MS  close a TLS connection whose handshake is not done by\n" \
	"                         then (default 5000)\n" \
	"  --tls-handshake-rate N new TLS handshakes per second from one --ratelimit-prefix\n" \
	"                         network, per worker; more are closed unread (default 100;\n" \
	"                         0: no cap)\n" \
	"  --listen-https ADDR:PORT  listen for DNS over HTTPS (RFC 8484, HTTP/2; repeatable;\n" \
	"                         port 443 unless given); needs --tls-cert and --tls-key\n" \
	"  --https-path PATH      the DoH path: GET PATH?dns=... and POST PATH (default\n" \
	"                         /dns-query)\n" \
	"  --resolver-name NAME   the name in the certificate that encrypted listeners announce\n" \
	"                         to clients through _dns.resolver.arpa SVCB (DDR, RFC 9462),\n" \
	"                         and answer _dns.NAME SVCB for (default: the certificate's first\n" \
	"                         DNS name that is not a wildcard)\n" \
	"  --upstream ADDR[:PORT] forward to this resolver (repeatable);\n" \
	"                         default: the nameservers in /etc/resolv.conf\n" \
	"  --upstream tls://ADDR[:PORT][#NAME]\n" \
	"                         forward over TLS (RFC 7858; port 853 unless given), its\n" \
	"                         certificate valid for NAME (default: for ADDR); never in clear\n" \
	"                         text: all upstreams are tls:// or none\n" \
	"  --upstream-ca FILE     PEM CAs that TLS upstreams' certificates must chain to\n" \
	"                         (default: the system's store)\n" \
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
	"                         upstreams' DoH; with --listen-tls or --listen-https,\n" \
	"                         _dns.resolver.arpa SVCB names embargo's own),\n" \
	"                         use-application-dns.net, mask.icloud.com,\n" \
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

/* --upstream tls://ADDR[:PORT][#NAME] (853 by default, Unbound's ADDR@PORT#NAME): the name
 * the upstream's certificate must be valid for, or without one its address. */
int options_parse_tls_upstream(struct options *o, unsigned i, const char *val, char *err,
			       size_t errlen)
{
	const char *addr = val + 6, *hash = strchr(addr, '#');
	char a[128];
	size_t alen = hash ? (size_t)(hash - addr) : strlen(addr);
	if (alen == 0 || alen >= sizeof(a))
		return fail(err, errlen, "--upstream: expected tls://ADDR[:PORT][#NAME], got '%s'%s",
			    val, "");
	memcpy(a, addr, alen);
	a[alen] = '\0';
	if (options_parse_addr(a, 853, &o->upstream[i]) < 0)
		return fail(err, errlen, "--upstream: not an address: '%s' in '%s'", a, val);
	o->upstream_tls[i] = 1;
	o->upstream_tls_name[i][0] = '\0';
	if (!hash)
		return 0;
	const char *nm = hash + 1;
	size_t len = strlen(nm);
	if (len > 1 && nm[len - 1] == '.')
		len--;
	struct name n;
	if (len == 0 || len > NAME_MAXTEXT || name_from_text(&n, nm, len) < 0 || n.nlabels == 0)
		return fail(err, errlen, "--upstream: '%s' in '%s' is not a domain name (the one "
			    "the upstream's certificate is for)", nm, val);
	memcpy(o->upstream_tls_name[i], nm, len);
	o->upstream_tls_name[i][len] = '\0';
	return 0;
}

void options_format_upstream(const struct options *o, unsigned i, char *buf, size_t cap)
{
	char a[64];
	options_format_addr(&o->upstream[i], a, sizeof(a));
	if (!o->upstream_tls[i])
		snprintf(buf, cap, "%s", a);
	else
		snprintf(buf, cap, "tls://%s%s%s", a, o->upstream_tls_name[i][0] ? "#" : "",
			 o->upstream_tls_name[i]);
}

int options_read_resolv_conf(struct options *o, const char *path)
{
	return resolv_conf_read(path, o->upstream, &o->nupstream, OPTIONS_MAX_ADDRS);
}

void options_clear(struct options *o)
{
	for (unsigned i = 0; i < o->nlocal_data; i++)
		free((void *)o->local_data[i]);
	o->nlocal_data = 0;
}

/* Does an address of a (--listen-NAME) take a TCP port of one of b (--listenBNAME): the same
 * address and port, or a wildcard on the port? @return 0, or -EINVAL with the message in err. */
static int overlap(const struct sockaddr_storage *a, unsigned na, const char *name,
		   const struct sockaddr_storage *b, unsigned nb, const char *bname, char *err,
		   size_t errlen)
{
	for (unsigned i = 0; i < na; i++)
		for (unsigned k = 0; k < nb; k++) {
			const struct sockaddr_storage *t = &a[i], *l = &b[k];
			if (t->ss_family == l->ss_family && options_port(t) == options_port(l) &&
			    (options_same_addr(t, l) || options_is_wildcard(t) ||
			     options_is_wildcard(l))) {
				char s[80];
				options_format_addr(t, s, sizeof(s));
				snprintf(err, errlen, "--listen-%s %s overlaps a --listen%s address", name, s,
					 bname);
				return -EINVAL;
			}
		}
	return 0;
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
	o->tls_handshake_ms = 5000;
	o->tls_handshake_rate = 100;
	strcpy(o->https_path, "/dns-query");
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
	struct options_table_lists ls = {0};

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
		if (path && options_file_load(o, path, &ls, err, errlen) < 0)
			return -EINVAL;
	}
	ls.listen_from_flags = ls.upstream_from_flags = ls.status_from_flags = 0;
	ls.acl_from_flags = 0;

	optind = 0; /* GNU getopt: start afresh (options are parsed again on SIGHUP). */
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "", options_table_long, NULL)) != -1) {
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
		for (const struct option *lo = options_table_long; lo->name; lo++)
			if (lo->val == opt)
				name = lo->name;
		if (options_table_apply(o, opt, name, optarg, 1, &ls, err, errlen) < 0)
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
	if ((o->nlisten_tls > 0 || o->nlisten_https > 0) && (!o->tls_cert[0] || !o->tls_key[0]))
		return fail(err, errlen, "--listen-%s needs --tls-cert and --tls-key%s",
			    o->nlisten_tls > 0 ? "tls" : "https", "");
	/* All are TCP: one port with SO_REUSEPORT on two of them would split its connections. */
	if (overlap(o->listen_tls, o->nlisten_tls, "tls", o->listen, o->nlisten, "", err, errlen) ||
	    overlap(o->listen_https, o->nlisten_https, "https", o->listen, o->nlisten, "", err,
		    errlen) ||
	    overlap(o->listen_https, o->nlisten_https, "https", o->listen_tls, o->nlisten_tls, "-tls",
		    err, errlen))
		return -EINVAL;
	/* Never in clear text: with one tls:// upstream, a question could otherwise go to
	 * another in the open, and what TLS hid would be seen after all. */
	unsigned ntls = 0;
	for (unsigned i = 0; i < o->nupstream; i++)
		ntls += o->upstream_tls[i];
	if (ntls > 0 && ntls < o->nupstream)
		return fail(err, errlen, "--upstream: %s; give every upstream as tls:// or none%s",
			    "some upstreams are tls:// and some are not, so questions could still go "
			    "out in clear text", "");
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
