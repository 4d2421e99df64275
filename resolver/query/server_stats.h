/* The serving counters every layer of a worker adds to (transports, the query path, the upstream
 * side) and the query types they count one by one: plain numbers, written by one worker and
 * summed by resolver/server.c for the metrics. No behaviour, and it must never include the
 * layers that fill them. */
#pragma once

#include <stdint.h>

/** The query types counted one by one (metrics); all others count together. */
#define SERVER_QTYPE_LIST(X) \
	X(A, 1) X(AAAA, 28) X(CNAME, 5) X(MX, 15) X(TXT, 16) X(NS, 2) X(SOA, 6) X(PTR, 12) \
	X(SRV, 33) X(HTTPS, 65) X(SVCB, 64) X(DS, 43) X(DNSKEY, 48) X(CAA, 257) X(ANY, 255)
#define SERVER_QTYPE_COUNT(name, value) +1
#define SERVER_QTYPES (0 SERVER_QTYPE_LIST(SERVER_QTYPE_COUNT) + 1)
#define SERVER_RCODES 7

/** The HTTP statuses DoH answers with (metrics), each counted. */
#define SERVER_HTTPS_STATUS_LIST(X) X(200) X(400) X(404) X(405) X(413) X(415) X(431)
#define SERVER_HTTPS_STATUS_COUNT(code) +1
#define SERVER_HTTPS_STATUSES (0 SERVER_HTTPS_STATUS_LIST(SERVER_HTTPS_STATUS_COUNT))

/** The status's index in server_stats.https_status (SERVER_HTTPS_STATUSES: not counted). */
static inline unsigned server_https_status_index(unsigned status)
{
	unsigned i = 0;
#define SERVER_HTTPS_STATUS_INDEX(code) if (status == (code)) return i; i++;
	SERVER_HTTPS_STATUS_LIST(SERVER_HTTPS_STATUS_INDEX)
#undef SERVER_HTTPS_STATUS_INDEX
	return i;
}

/** The qtype's index in server_stats.qtype. */
static inline unsigned server_qtype_index(uint16_t qtype)
{
	unsigned i = 0;
#define SERVER_QTYPE_INDEX(name, value) if (qtype == (value)) return i; i++;
	SERVER_QTYPE_LIST(SERVER_QTYPE_INDEX)
#undef SERVER_QTYPE_INDEX
	return i;
}

/** Counters summed over all workers. */
struct server_stats {
	uint64_t queries;     /**< Queries parsed (UDP and TCP). */
	uint64_t denied;      /**< Answered NXDOMAIN by policy (name or CNAME target). */
	uint64_t cache_hits;
	uint64_t forwarded;
	uint64_t servfail;    /**< No upstream answered in time, or too many in flight. */
	uint64_t formerr;     /**< Readable header, unreadable question. */
	uint64_t dropped;     /**< Unreadable packets and send failures. */
	uint64_t tcp_conns;
	uint64_t refused;     /**< Turned away by the access list (REFUSED or dropped). */
	uint64_t rate_limited; /**< Answers over the rate limit (slipped or dropped). */
	uint64_t tcp_refused; /**< TCP connections closed at once: over a cap. */
	uint64_t tcp_evicted; /**< Idle TCP connections closed to make room. */
	uint64_t tcp_timeouts; /**< TCP connections cut by the idle or message deadline. */
	uint64_t looped;      /**< Queries from embargo's own upstream sockets, dropped. */
	uint64_t queries_tcp; /**< Of queries: over TCP (port 53). */
	uint64_t queries_dot; /**< Of queries: over TLS (DoT). */
	uint64_t queries_doh; /**< Of queries: over HTTPS (DoH). */
	uint64_t https_status[SERVER_HTTPS_STATUSES]; /**< DoH responses by status. */
	uint64_t https_streams_refused; /**< HTTP/2 streams over the concurrent stream cap. */
	uint64_t https_reset_floods;    /**< Connections closed: stream resets over the cap. */
	uint64_t https_header_floods;   /**< Connections closed: a header block over the cap. */
	uint64_t https_protocol_errors; /**< Connections ended for an HTTP/2 protocol error
					 *   (nghttp2's: bad frames, flow control, floods of
					 *   SETTINGS or PING) or for not speaking HTTP/2. */
	uint64_t tls_handshakes;  /**< TLS handshakes done (resumed ones too). */
	uint64_t tls_resumed;     /**< Of them: resumed from a session ticket. */
	uint64_t tls_failed;      /**< TLS connections closed for a failed handshake or record. */
	uint64_t tls_handshake_timeouts; /**< Closed: no handshake within the timeout. */
	uint64_t tls_rate_limited; /**< Closed unread: over --tls-handshake-rate. */
	uint64_t tcp_open;    /**< TCP connections open now (a gauge). */
	uint64_t up_sent, up_answered, up_timeouts, up_soft_failures, up_ignored, up_tcp_fallbacks,
		up_merged, up_tls_handshakes, up_tls_resumed, up_tls_failures; /**< The upstream side's (ignored:
				mismatched answers of any kind; TLS: toward tls:// upstreams). */
	uint64_t rcode[SERVER_RCODES]; /**< Answers by RCODE 0..5, then all others. */
	uint64_t qtype[SERVER_QTYPES]; /**< Queries by SERVER_QTYPE_LIST type, then all others. */
	uint64_t local;       /**< Answered from local zones and local data. */
	uint64_t cache_misses; /**< Lookups that found no fresh answer (stale ones included). */
	uint64_t stale_served; /**< Expired answers served (RFC 8767). */
	uint64_t prefetches;  /**< Cache entries refreshed before they expired. */
	uint64_t chain_unreadable; /**< Answers whose CNAME/DNAME target could not be read:
				    *   SERVFAIL (the policy cannot clear what it cannot read). */
	uint64_t servfail_remembered; /**< SERVFAIL from the memory of recent upstream failures. */
	uint64_t tcp_shed;    /**< TCP connections closed because the worker's queued answers
			       *   passed --tcp-max-queued-total (the largest holders first). */
};
