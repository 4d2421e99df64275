/* The settings and their table: struct options, each setting's id and long name (getopt's
 * table, which the config file shares), and options_table_apply(), the one handler per setting
 * that the command line and the config file both go through, so the two cannot drift apart.
 * One value at a time: it must not read files but --consent-key, nor know argv order or
 * defaults (options.c). struct options, OPTIONS_*, OPT_*, options_parse_redis_url() and
 * options_lost() keep the options_ names the rest of the tree knows them by. */
#pragma once

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policy/guard.h"
#include "resolver/base/addr.h"
#include "resolver/base/local_zone.h"

/** Listen, upstream and status-allow entries, each. */
#define OPTIONS_MAX_ADDRS 16

/** What the access list does with a client (Unbound's access-control actions). */
enum options_acl {
	OPTIONS_ACL_ALLOW = 0, /**< Answer (queries with RD=0 are refused). */
	OPTIONS_ACL_SNOOP,     /**< Answer, and answer RD=0 queries from the cache. */
	OPTIONS_ACL_REFUSE,    /**< REFUSED with EDE 18 (Prohibited). */
	OPTIONS_ACL_DROP,      /**< Send nothing. */
};

/** One access-list entry. */
struct options_acl_rule {
	struct options_cidr net;
	enum options_acl action;
};

/** Access-list entries. */
#define OPTIONS_MAX_ACL 64

#define OPTIONS_MAX_LOCAL_DATA 1024 /**< --local-data records. */

/** The settings in effect: options_parse() fills it, defaults first. */
struct options {
	struct sockaddr_storage listen[OPTIONS_MAX_ADDRS];
	unsigned nlisten;
	struct sockaddr_storage listen_tls[OPTIONS_MAX_ADDRS]; /**< DNS over TLS (RFC 7858). */
	unsigned nlisten_tls;
	char tls_cert[256];           /**< PEM certificate chain of the encrypted listeners. */
	char tls_key[256];            /**< PEM private key of tls_cert. */
	unsigned tls_handshake_ms;    /**< A TLS handshake not done by then is closed. */
	unsigned tls_handshake_rate;  /**< New handshakes per second per --ratelimit-prefix net. */
	char resolver_name[NAME_MAXTEXT + 1]; /**< DDR's TargetName (no trailing dot); empty: the
				       *   certificate's first DNS name. */
	struct sockaddr_storage listen_https[OPTIONS_MAX_ADDRS]; /**< DNS over HTTPS (RFC 8484). */
	unsigned nlisten_https;
	char https_path[128];         /**< The DoH path, '/' and no query ("/dns-query"). */
	struct sockaddr_storage upstream[OPTIONS_MAX_ADDRS];
	unsigned nupstream;
	uint8_t upstream_tls[OPTIONS_MAX_ADDRS]; /**< 1: DNS over TLS to it (tls://, RFC 7858). */
	char upstream_tls_name[OPTIONS_MAX_ADDRS][NAME_MAXTEXT + 1]; /**< The name its
				       *   certificate must be valid for; empty: its address. */
	char upstream_ca[256];        /**< PEM CAs for TLS upstreams; empty: the system store. */
	char redis_host[256];
	int redis_port;
	char redis_user[128];         /**< ACL user; empty: the default user. */
	char redis_password[256];
	int redis_db;
	char redis_prefix[64];
	char resolv_conf[256];        /**< Where default upstreams come from. */
	unsigned threads;             /**< Worker loops; 0 = one per core. */
	uint32_t block_ttl;           /**< TTL of denied answers, seconds. */
	uint16_t ede_code;            /**< 15, 16 or 17. */
	int deny_mode;                /**< enum answer_deny_mode. */
	uint8_t sinkhole4[4], sinkhole6[16]; /**< Sinkhole-mode addresses. */
	unsigned timeout_ms;          /**< Overall upstream timeout per query. */
	size_t cache_bytes;
	unsigned reload_ms;           /**< Redis re-read interval without notifications. */
	unsigned redis_timeout_ms;    /**< A Redis connection silent this long is dropped. */
	struct guard_limits max_shrink; /**< Deny rules one load may lift before it is held. */
	unsigned max_shrink_window;   /**< Seconds without a hold after which the baseline moves
				       *   to the policy in force; 0: only a consent moves it. */
	char consent_key_file[256];   /**< --consent-key; empty: consents need no signature. */
	uint8_t consent_key[32];      /**< Its Ed25519 public key, when consent_key_file is set. */
	char snapshot[256];           /**< Snapshot file; empty: none. */
	struct options_cidr status_allow[OPTIONS_MAX_ADDRS]; /**< Who may ask policy.embargo. CH. */
	unsigned nstatus_allow;
	struct options_acl_rule acl[OPTIONS_MAX_ACL]; /**< The operator's; defaults follow. */
	unsigned nacl;
	unsigned ratelimit;           /**< Answers per second per client prefix; 0: off. */
	unsigned ratelimit_slip;      /**< Every Nth limited answer goes out truncated; 0: none. */
	unsigned ratelimit_v4_prefix, ratelimit_v6_prefix; /**< Bits that make a client prefix. */
	unsigned tcp_max_conns;       /**< TCP connections per worker. */
	unsigned tcp_per_addr;        /**< TCP connections per client address, per worker. */
	unsigned tcp_idle_ms;         /**< Idle limit, and deadline for one whole message. */
	size_t tcp_max_queued;        /**< Answer bytes queued per connection before reading stops. */
	size_t tcp_max_queued_total;  /**< Answer bytes queued to all of a worker's connections:
				       *   above it the ones holding the most are closed. */
	unsigned outgoing_range;      /**< Upstream UDP sockets open at once, per worker. */
	unsigned client_pending;      /**< Pending upstream questions per client, per worker. */
	unsigned jostle_ms;           /**< A full pool drops a query older than this for a new one. */
	int use_0x20;                 /**< Random letter case on upstream questions. */
	uint32_t max_ttl;             /**< Longest an answer is cached, seconds. */
	uint32_t max_client_ttl;      /**< Largest TTL handed to clients, seconds. */
	uint32_t min_ttl;             /**< Shortest an answer is cached, seconds. */
	uint32_t stale_max;           /**< Serve answers expired at most this long ago; 0: off. */
	unsigned stale_timeout_ms;    /**< A client with a stale answer at hand waits this long. */
	int prefetch;                 /**< Refresh entries asked for in their last tenth of TTL. */
	int upstream_trust_ad;        /**< Pass the upstreams' AD bit (to DO or AD clients). */
	uint64_t local_off[LOCAL_ZONE_WORDS]; /**< Default local zones handed back (local_zone_off). */
	const char *local_data[OPTIONS_MAX_LOCAL_DATA]; /**< "NAME TYPE RDATA" (options_clear). */
	unsigned nlocal_data;
	int cookies;                  /**< DNS cookies toward upstreams. */
	struct sockaddr_storage metrics; /**< The metrics endpoint; ss_family 0: none. */
	char user[64];                /**< Run as this user once the sockets are bound (root). */
	char query_log[256];          /**< Query log file, "-" for stdout; empty: none. */
	unsigned query_log_sample;    /**< Log one query in this many. */
	int query_log_denied_only;
	int hit_counters;             /**< Add denials per rule to PREFIX:hits in Redis. */
	int report_clients;           /**< Add denials per client to PREFIX:clients:DAY. */
	unsigned report_retention_days; /**< Each day's key expires this long after its last write. */
	unsigned report_max_clients;  /**< Clients per day key; the rest count as "*". */
	int log_level;                /**< enum log_level. */
	uint64_t given[2];            /**< Settings given by a flag or the file (bit per setting). */
	int config_unterminated;      /**< The file's last line has no newline (cut short?). */
	int check_config;             /**< Print the effective settings and exit. */
};

/** The settings' ids, as getopt_long() returns them; OPT_LISTEN up to OPT_END each have a bit in
 *  options.given. */
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
	OPT_LISTEN_TLS, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_HANDSHAKE, OPT_TLS_HANDSHAKE_RATE,
	OPT_RESOLVER_NAME,
	OPT_UPSTREAM_CA,
	OPT_LISTEN_HTTPS, OPT_HTTPS_PATH,
	OPT_END
};

/** The long options, ending with a NULL name: getopt's table and the config file's names. */
extern const struct option options_table_long[];

/** Lists given on the command line replace those from the config file. */
struct options_table_lists {
	int listen_from_flags, upstream_from_flags, status_from_flags, acl_from_flags;
	int listen_tls_from_flags, listen_https_from_flags;
};

/** Apply setting opt, named name (for messages), with value val (NULL for flags without one):
 *  check it and store it in o. from_flags: it comes from the command line (ls says which lists
 *  it has begun anew). @return 0, or -EINVAL with a message in err. */
int options_table_apply(struct options *o, int opt, const char *name, const char *val,
			int from_flags, struct options_table_lists *ls, char *err, size_t errlen);

/** Parse --upstream tls://ADDR[:PORT][#NAME] (port 853 by default) into o->upstream[i] and its
 *  TLS fields. @return 0, or -EINVAL with a message in err. */
int options_parse_tls_upstream(struct options *o, unsigned i, const char *val, char *err,
			       size_t errlen);

/** Parse redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] into o. @return 0 or -EINVAL. */
int options_parse_redis_url(struct options *o, const char *url);

/** The settings was was given (by a flag or its file) that now is not, as "a, b" into names
 *  ("" if none): a file read while half written lacks its last lines, and each would fall back
 *  to its default. upstream and resolv-conf stand in for each other. @return how many. */
unsigned options_lost(const struct options *was, const struct options *now, char *names,
		      size_t cap);
