/* Which clients were denied, by which rules, and when (--report-clients): each worker counts its
 * denials per (client address, rule) in a table of its own, and hands the table to the main
 * loop at most a few times a second, which merges the workers' and adds them to Redis. The
 * worker never waits: the hand-off is a try-lock and a pointer swap, and while the main loop
 * has not taken the last table the worker goes on counting in its own. A full table counts the
 * rest as dropped, so memory stays bounded whatever the clients send. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policy/name.h"

typedef struct client_report client_report_t;

/** Rules kept per client and day in Redis; its other rules count as the rule "*". */
#define REPORT_MAX_RULES 16

/** Distinct (client, rule) pairs a worker counts between two hand-offs. */
#define CLIENT_REPORT_SLOTS 4096

/** One client's denials by one rule. */
struct client_denial {
	uint64_t tag;          /**< Hash of family, address and rule: the same pair, the same tag. */
	uint64_t count;
	uint64_t tcp;          /**< Of count, over a stream (a handshake: the address is real). */
	int64_t first, last;   /**< Unix seconds. */
	uint8_t family;        /**< AF_INET or AF_INET6. */
	uint8_t addr[16];
	char rule[NAME_MAXTEXT + 2];
};

/** A worker's collector. @return it (owned: client_report_free), or NULL when out of memory. */
client_report_t *client_report_new(void);
/** Free. NULL is a no-op. */
void client_report_free(client_report_t *r);

/** Count a denial of the client at addr (over a stream transport when stream) by the rule made
 *  of the topmost depth labels of name, at now (Unix seconds). An IPv4-mapped IPv6 address
 *  counts as the IPv4 one. Owner only. */
void client_report_add(client_report_t *r, const struct sockaddr_storage *addr, int stream,
		       const struct name *name, unsigned depth, int64_t now);

/** Hand what was counted to the reader if it took the last hand-off; else keep counting.
 *  Owner only; never waits. */
void client_report_publish(client_report_t *r);

/** Take the handed entries (any one reader thread): fn is called for each, borrowed for the
 *  call. @return how many. */
size_t client_report_take(client_report_t *r,
			  void (*fn)(void *ctx, const struct client_denial *d), void *ctx);

/** Denials not counted because a table was full (any thread). */
uint64_t client_report_dropped(const client_report_t *r);

/** The address as text ("198.18.0.2", "2001:db8::1") into buf (at least 46 octets). */
void client_report_addr_text(const struct client_denial *d, char *buf, size_t cap);

/** The main loop's merge of the workers' hand-offs, kept until Redis has it: entries merged by
 *  tag (counts added, first the earliest, last the latest), at most cap of them. */
struct client_report_batch {
	struct client_denial *e;
	uint32_t *index; /* Open addressing by tag: 1 + position in e; 0: free. */
	size_t n, cap, icap;
	uint64_t dropped; /**< Denials with no room (the batch full). */
};

/** @return 0, or -ENOMEM. */
int client_report_batch_init(struct client_report_batch *b, size_t cap);
void client_report_batch_free(struct client_report_batch *b);
/** Merge d into b (d borrowed). */
void client_report_batch_add(struct client_report_batch *b, const struct client_denial *d);
/** Empty b (once Redis has its entries). */
void client_report_batch_clear(struct client_report_batch *b);
