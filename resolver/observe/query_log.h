/* The query log: one JSON line per answered query (or one in N, or denials only), written by a
 * thread of its own from a bounded ring per worker. A worker never waits for it: when its ring
 * is full the entry is dropped and counted. SIGUSR1 reopens the file (logrotate). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/name.h"
#include "resolver/base/options.h"

typedef struct query_log query_log_t;
struct query_log_ring;

/** How a query was decided. */
enum query_log_decision {
	QUERY_LOG_DENIED = 0,
	QUERY_LOG_LOCAL,
	QUERY_LOG_CACHE,
	QUERY_LOG_STALE,
	QUERY_LOG_FORWARDED,
	QUERY_LOG_REFUSED, /**< Not served: access list, RD=0, class, CHAOS. */
	QUERY_LOG_ERROR,   /**< FORMERR, NOTIMP, BADVERS, SERVFAIL of our own. */
};
#define QUERY_LOG_DECISIONS 7

/** The decision's name as the log (and the metrics' path label) spell it. */
const char *query_log_decision_name(unsigned decision);

/** One line of the log, filled by a worker. */
struct query_log_entry {
	uint64_t time_ns;     /**< uv_hrtime() when answered. */
	uint32_t latency_us;  /**< From the datagram's or message's arrival. */
	uint16_t qtype;
	uint8_t rcode, decision, transport; /**< transport: enum client_transport. */
	uint8_t family;       /**< AF_INET, AF_INET6. */
	uint16_t port;
	uint8_t addr[16];
	uint8_t qname_len;    /**< Wire form, as asked (letter case kept). */
	uint8_t qname[NAME_MAXWIRE];
	char rule[NAME_MAXTEXT + 2]; /**< For denials. */
	char reason[160];            /**< For denials, cut. */
	char upstream[48];           /**< For forwarded answers: "ADDR:PORT". */
};

/** Open o->query_log ("-": stdout) and start the writer for nworkers rings.
 *  @return the log (owned: query_log_free), or NULL with a message in err. */
query_log_t *query_log_new(const struct options *o, unsigned nworkers, char *err, size_t errlen);

/** Write what the rings hold, stop the writer, close the file. NULL is a no-op. */
void query_log_free(query_log_t *l);

/** Reopen the file at the writer's next pass (any thread, e.g. on SIGUSR1). */
void query_log_reopen(query_log_t *l);

/** Worker i's ring (borrowed). */
struct query_log_ring *query_log_ring(query_log_t *l, unsigned i);

/** Should the worker log this query (sampling, denials only)? Worker thread only. */
bool query_log_wanted(struct query_log_ring *r, bool denied);

/** Slot for the worker's next entry, or NULL when the ring is full (then counted as dropped);
 *  query_log_commit() publishes it. Worker thread only. */
struct query_log_entry *query_log_next(struct query_log_ring *r);
void query_log_commit(struct query_log_ring *r);

/** Entries dropped on full rings, all workers (any thread). */
uint64_t query_log_dropped(const query_log_t *l);
