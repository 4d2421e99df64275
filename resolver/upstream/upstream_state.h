/* The state of one worker loop's upstream side, private to resolver/upstream/: the entries of
 * its fixed pools (waiters, pending questions, sockets), its TCP links, what it knows of each
 * upstream, and struct upstream that holds them, touched on that loop only. Beside the layout,
 * the worker's CSPRNG buffer and the freeing of its memory once its last libuv handle has
 * closed. Must not touch a socket, a timer or a question's life: the other modules do. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "resolver/base/options.h"
#include "resolver/base/siphash.h"
#include "resolver/base/tls.h"
#include "resolver/base/wire.h"
#include "resolver/observe/latency.h"
#include "resolver/upstream/cookie_seen.h"
#include "resolver/upstream/upstream_types.h"

#define QUERY_MAX 1500        /* Longest client query kept. */
#define OUT_MAX 512           /* Our own upstream query: header, name, OPT with a cookie. */
#define ATTEMPTS 4            /* Attempts per question; each has timeout / ATTEMPTS. */
#define MERGE_BUCKETS 8192
#define RECV_MAX 65535
#define EDNS_SIZE 1232        /* What we advertise upstream (DNS flag day 2020). */

struct pending;

/* A client's query waiting for an upstream answer. */
struct waiter {
	struct waiter *next;
	struct waiter *due_prev, *due_next; /* The serve-stale list, in deadline order. */
	uint64_t due;                       /* When a stale answer is due (0: none). */
	uint8_t in_due;
	uint8_t answered;                   /* It got a stale answer; the question goes on. */
	uint8_t refresh;                    /* A cache refresh: no client (ops NULL). */
	struct client client;
	struct wire_query q;
	uint16_t len;
	uint8_t query[QUERY_MAX];
};

/* One attempt's connected UDP socket, or a probe's. */
struct outsock {
	uv_poll_t poll;
	int fd;
	uint16_t port;        /* Local, for the loop guard. */
	uint8_t family;       /* family_index() of the socket's. */
	uint8_t upstream;
	uint8_t probe;        /* A probe of a dead upstream, not an attempt. */
	uint64_t sent_at;
	uint64_t sent_ns;     /* uv_hrtime(), for the latency histogram. */
	upstream_t *u;
	struct pending *p;    /* The question it asks; NULL once abandoned. */
	struct outsock *next_free;
};

struct tcp_link;

struct pending {
	struct pending *prev, *next; /* FIFO of attempts in deadline order, or the free list. */
	struct pending *hnext;       /* Merge table chain. */
	struct outsock *sock;        /* The attempt in flight over UDP. */
	struct tcp_link *link;        /* The TCP connection it waits on (a truncated answer). */
	struct pending *link_prev, *link_next;
	struct waiter *waiters, *last_waiter;
	uint64_t hash;
	uint64_t deadline;           /* This attempt's. */
	uint64_t expire;             /* The whole question's. */
	uint64_t started;
	uint16_t keylen;
	uint16_t len;                /* Of query. */
	uint16_t name_len;           /* Of the question name at query + 12. */
	uint16_t tried;              /* Upstreams asked in this round (bit per upstream). */
	uint8_t attempt;
	uint8_t upstream;
	uint8_t use_0x20;
	uint8_t case_mismatch;       /* This attempt saw its ID and name in another case. */
	uint8_t force;               /* Upstream + 1 that the next attempt must ask; 0: pick. */
	uint8_t link_retried;        /* Times moved to a new TCP link after one failed. */
	uint64_t link_sent;          /* When it was written to its link (0: not yet). */
	uint64_t link_sent_ns;       /* The same, uv_hrtime(), for the latency histogram. */
	uint8_t cookie_sent;
	uint8_t in_fifo;
	uint8_t in_table;
	uint8_t has_edns;            /* Of its clients: they all agree (it is in the key). */
	uint16_t rejected;           /* Upstreams that answered it with an error RCODE: never
				      * asked it again (bit per upstream). */
	uint8_t badcookie_retried;   /* A BADCOOKIE was answered by asking again with the cookie. */
	struct upstream_failure why; /* The last such answer's RCODE and EDE. */
	uint8_t key[NAME_MAXWIRE + 1 + 5];
	uint8_t query[OUT_MAX];
};

/* A TCP connection to one upstream, kept open and shared: questions whose UDP answer was
 * truncated are written to it back to back and matched as their answers come, in any order. */
struct tcp_link {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect;
	upstream_t *u;
	unsigned upstream;
	int connected;
	int closing;
	int open_handles;
	struct pending *head, *tail; /* Questions waiting on it, oldest first. */
	unsigned nout;
	uint64_t idle_since;
	uint64_t opened;             /* When the connect began. */
	uint64_t last_rx;            /* When the last whole message came (0: none yet). */
	uint16_t retired[256];       /* IDs of questions given up on it, whose answers may come. */
	unsigned nretired;
	size_t len, cap;
	uint8_t *buf;                /* What came in, plaintext: messages not yet whole. */
	tls_session_t *tls;          /* To a tls:// upstream: every octet goes through it. */
	int ready;                   /* Connected, and its TLS handshake (if any) done. */
	int probing;                 /* Opened to probe a dead TLS upstream: its handshake
				      * brings the upstream back. */
	int ticket_kept;             /* Its session's ticket is in health.ticket. */
};

/* What one worker knows of one upstream. */
struct health {
	uint32_t srtt_ms;            /* Smoothed RTT plus soft-failure penalties; 0: unknown. */
	uint8_t down;                /* Timed out or refused the connection: skipped. */
	uint8_t unproven;            /* Up again by a TLS probe's handshake, no answer since: if
				      * it goes down again, its probe back-off goes on growing. */
	uint8_t *ticket;             /* A TLS upstream's last session ticket (resumption data):
				      * a new link offers it. Owned; NULL: none. */
	size_t ticket_len;
	uint32_t probe_backoff_ms;
	uint64_t probe_at;           /* When the next probe goes (while down). */
	struct outsock *probe;       /* The probe in flight. */
	uint64_t probe_deadline;
	uint16_t probe_txid;
	uint8_t client_cookie[8];
	uint8_t server_cookie[32];
	uint8_t server_cookie_len;
	struct cookie_seen *cookie;  /* Its entry in the process's cookie table, once found. */
	unsigned cookie_scanned;     /* Entries of that table looked through without finding it. */
	uint32_t cookie_gen;         /* Its entry's generation when this worker last read it. */
};

struct upstream {
	uv_loop_t *loop;
	const struct options *o;
	upstream_answer_cb cb;
	void *ctx;
	uv_poll_cb readable;          /* Reads the sockets: upstream_reply_readable, set by
				       * upstream_new, so that upstream_sock need not include it. */
	/* Ask p's attempt of TLS upstream i over its link, and probe dead TLS upstream i:
	 * upstream_tcp's, set by upstream_new, so that upstream_question and upstream_health
	 * need not include it (it includes them). */
	void (*tls_send)(upstream_t *u, struct pending *p, unsigned i);
	void (*tls_probe)(upstream_t *u, unsigned i);
	tls_creds_t *tls;             /* The CAs of TLS upstreams; NULL with none. */
	struct latency_hist *latency; /* One per upstream (index in o->upstream); NULL: none. */
	uv_timer_t timer, probe_timer, due_timer;
	struct waiter *due_head, *due_tail;
	int open_handles;
	int closing;
	struct waiter *waiter_pool, *free_waiters;
	struct pending *pool, *free;
	struct pending *head, *tail;
	struct outsock *socks, *free_socks;
	unsigned nsocks;
	unsigned npending, max_pending; /* Questions in flight; at most half the sockets. */
	unsigned nrefresh;           /* Cache refreshes waiting: at most max_pending / 8. */
	struct pending **buckets;
	struct tcp_link *links[OPTIONS_MAX_ADDRS];
	unsigned nfetches;           /* Questions waiting on links, all upstreams. */
	struct siphash_key hkey;
	struct health health[OPTIONS_MAX_ADDRS];
	unsigned attempt_ms;
	uint8_t rnd[256];
	unsigned rnd_pos;
	uint8_t *recv_buf;           /* RECV_MAX: a datagram. */
	uint8_t *deliver;            /* RECV_MAX: the answer normalised for clients. */
	uint8_t *out;                /* RECV_MAX: one client's copy. */
	struct upstream_stats stats;
};

/** Fill out[n] with bytes from the kernel's CSPRNG, drawn 256 at a time into u's buffer. */
void upstream_state_random_bytes(upstream_t *u, void *out, size_t n);

/** Two bytes of upstream_state_random_bytes(), as a number (an ID). */
uint16_t upstream_state_random16(upstream_t *u);

/** One of u's open handles has closed (or u's creation failed with open_handles 1): the last
 *  frees u with its pools and buffers. */
void upstream_state_unref(upstream_t *u);
