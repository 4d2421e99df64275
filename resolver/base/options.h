/* The daemon's settings: defaults, an optional --config file of "key value" lines using the
 * long flag names, then the command line, which wins. Parsing never exits the process; main()
 * turns a failure into one line on stderr and exit status 2. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "policy/guard.h"
#include "resolver/base/local_zone.h"

#define OPTIONS_MAX_ADDRS 16

/** An address prefix (CIDR). */
struct options_cidr {
	int family;      /**< AF_INET or AF_INET6. */
	uint8_t addr[16];
	unsigned prefix; /**< Bits that must match. */
};

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

#define OPTIONS_MAX_ACL 64

#define OPTIONS_MAX_LOCAL_DATA 1024 /**< --local-data records. */

struct options {
	struct sockaddr_storage listen[OPTIONS_MAX_ADDRS];
	unsigned nlisten;
	struct sockaddr_storage upstream[OPTIONS_MAX_ADDRS];
	unsigned nupstream;
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
	uint64_t given;               /**< Settings given by a flag or the file (bit per setting). */
	int config_unterminated;      /**< The file's last line has no newline (cut short?). */
	int check_config;             /**< Print the effective settings and exit. */
};

/** Outcome of options_parse besides errors. */
enum { OPTIONS_RUN = 0, OPTIONS_EXIT = 1 };

/** Fill o from defaults, --config and argv. --help and --version print to stdout and return
 *  OPTIONS_EXIT. @return OPTIONS_RUN, OPTIONS_EXIT, or -EINVAL with a message in err. */
int options_parse(struct options *o, int argc, char **argv, char *err, size_t errlen);

/** Parse "ADDR", "ADDR:PORT", "[V6]" or "[V6]:PORT" (a bare IPv6 address is accepted too).
 *  @return 0 or -EINVAL. */
int options_parse_addr(const char *s, uint16_t default_port, struct sockaddr_storage *ss);

/** Parse redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] into o. @return 0 or -EINVAL. */
int options_parse_redis_url(struct options *o, const char *url);

/** Append the nameservers of a resolv.conf file. @return how many, or a negative errno. */
int options_read_resolv_conf(struct options *o, const char *path);

/** Parse "ADDR/BITS" or a bare address (all bits). @return 0 or -EINVAL. */
int options_parse_cidr(const char *s, struct options_cidr *c);

/** Is the address in one of the n prefixes? */
int options_cidr_match(const struct options_cidr *list, unsigned n, const struct sockaddr_storage *ss);

/** The length of ss's sockaddr for its family (bind, connect). */
socklen_t options_addr_len(const struct sockaddr_storage *ss);

/** ss's port, in host order. */
uint16_t options_port(const struct sockaddr_storage *ss);

/** Do a and b hold the same family, address and port? */
int options_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/** The index of ss in list[0..n) (options_same_addr), or -1. */
int options_find_addr(const struct sockaddr_storage *list, unsigned n,
		      const struct sockaddr_storage *ss);

/** Is ss the wildcard address of its family (0.0.0.0 or ::)? */
int options_is_wildcard(const struct sockaddr_storage *ss);

/** This host's interface addresses (each as a full-length prefix), at most max, into list.
 *  @return how many. */
unsigned options_host_addrs(struct options_cidr *list, unsigned max);

/** Free what options_parse() allocated for o (the local data lines); o itself is the caller's. */
void options_clear(struct options *o);

/** The settings was was given (by a flag or its file) that now is not, as "a, b" into names
 *  ("" if none): a file read while half written lacks its last lines, and each would fall back
 *  to its default. upstream and resolv-conf stand in for each other. @return how many. */
unsigned options_lost(const struct options *was, const struct options *now, char *names,
		      size_t cap);

/** Write the effective settings as config-file lines (the Redis password hidden). */
void options_print(const struct options *o, FILE *f);

/** "ADDR:PORT" or "[V6]:PORT" for logs. */
void options_format_addr(const struct sockaddr_storage *ss, char *buf, size_t cap);
