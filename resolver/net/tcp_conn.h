/* One TCP connection of a worker and the worker's TCP state, as the accept path (tcp.c) and a
 * connection's life (tcp_conn.c) share them. A connection carries DNS messages with their
 * length (port 53), the same inside TLS (DoT), or HTTP/2 inside TLS (DoH, whose requests and
 * streams are https.c's): one session, one set of limits, whatever it carries. It must never be
 * included outside resolver/net/: the rest of the tree sees tcp.h. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "resolver/base/client.h"
#include "resolver/base/options.h"
#include "resolver/net/https.h"
#include "resolver/base/tls.h"

#define TCP_MAX_INFLIGHT 64 /* Upstream questions per connection; reading pauses above it. */
#define TCP_READ_MAX (2 * 65537)
#define TCP_TLS_READ 16384 /* Ciphertext read at once from an encrypted connection. */
#define TCP_CORK_MAX 16384 /* Answers held for one record at most, before they go out. */

struct tcp_listener;

struct tcp_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	struct client client;        /* Its session points back here (DoH: to h). */
	struct worker *w;
	struct tcp_conn *prev, *next;
	tls_session_t *tls;          /* DoT and DoH: the session between the socket and buf. */
	https_t *h;                  /* DoH: the HTTP/2 session that buf's plaintext goes to. */
	uint64_t accepted;           /* When it was accepted (the handshake's deadline runs). */
	int tls_failed;              /* The session failed: its alert goes out, then it closes. */
	int corked;                  /* Answers to this batch of questions are held... */
	size_t cork_bytes;           /* ...this many octets of them so far. */
	uint8_t *buf;
	size_t len, cap;
	size_t queued;               /* Answer bytes handed to libuv and not yet written. */
	size_t held;                 /* DoH: answer bytes its streams hold, not yet written. */
	uint64_t msg_started;        /* When the first byte of a partial message came; 0: none. */
	uint64_t last_active;        /* Last whole message read or answer written. */
	uint64_t requests;           /* DoH: requests h had taken when last looked at. */
	unsigned inflight;
	int reading;
	int processing;              /* conn_process() is running: a nested call only asks again. */
	int again;
	int eof;                     /* The client half-closed: answer what is in flight, then close. */
	int uncounted;               /* Closed: its queued bytes left the worker's total. */
	int open_handles;
	int closing;
};

struct tcp_state {
	struct tcp_listener *listeners[3 * OPTIONS_MAX_ADDRS];
	struct sockaddr_storage addrs[3 * OPTIONS_MAX_ADDRS]; /* Each listener's. */
	unsigned nlisten;
	struct tcp_conn *head, *tail; /* Oldest first. */
	unsigned nconns;
	size_t queued;                /* Answer bytes queued or held for all open connections. */
	uint8_t tls_in[TCP_TLS_READ]; /* Ciphertext just read, before the session takes it. */
	uint8_t frame[2 + 65535];     /* A DoT answer with its length, before encryption. */
};

/** A connection on w's loop, its handles initialised (tcp_conn_close() frees it), not listed.
 *  @return it, or NULL when out of memory. */
struct tcp_conn *tcp_conn_new(struct worker *w);

/** Set c (accepted, listed, admitted) up for DoT, or with doh for DoH: the TLS session and the
 *  HTTP/2 session, with the worker's credentials. @return 0, or -1 when they could not be made
 *  (c is then closed, and counted). */
int tcp_conn_secure(struct tcp_conn *c, int doh);

/** Start c: its deadlines run and it reads. */
void tcp_conn_start(struct tcp_conn *c);

/** Close c (its memory goes when libuv has closed its handles). A closed one is a no-op. */
void tcp_conn_close(struct tcp_conn *c);

/** May c be closed to make room: nothing in flight, nothing queued? */
int tcp_conn_is_idle(const struct tcp_conn *c);
