/* GnuTLS on our buffers: the pull function reads the ciphertext the transport fed, the push
 * function hands GnuTLS's output to the transport, so a session is driven entirely by
 * tls_session_read() and tls_session_write() on the worker's loop. Session tickets are encrypted
 * with keys GnuTLS derives from one master key per set of credentials (time-based, so every
 * worker derives the same ones) and rotates every three ticket lifetimes: TICKET_LIFETIME_S of
 * 4 h rotates them every 12 h, and a ticket of the period before still resumes. The server
 * certificate is kept parsed beside the pair, for the name DDR designates embargo by. A client
 * session (toward a TLS upstream) verifies the server's chain and name in the handshake and
 * fails it otherwise; it offers no certificate. It must never read or write a socket itself. */
#include "config.h"

#include "resolver/base/tls.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TLS 1.2 and 1.3 only (RFC 8996 retired 1.0 and 1.1; RFC 7858 asks for 1.2 at least). */
#define PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define TICKET_LIFETIME_S (4 * 3600)

struct tls_creds {
	atomic_uint refs;
	gnutls_certificate_credentials_t cert;
	gnutls_priority_t prio;
	gnutls_datum_t ticket_key; /* The master key of the session tickets. */
	gnutls_x509_crt_t crt;     /* The server certificate, parsed; NULL if it could not be. */
	char name[256];            /* Its first dNSName that is not a wildcard; "" if none. */
};

struct tls_session {
	gnutls_session_t g;
	tls_creds_t *creds;
	tls_push_cb push;
	void *ctx;
	uint8_t *in;      /* Ciphertext fed and not yet pulled: in[off..len). */
	size_t off, len, cap;
	int ready;
	int eof;          /* The peer sent close_notify; given out once what came before it is. */
	int err;          /* The GnuTLS error that failed it; 0: none. */
	char peer[256];   /* A client's: the name the server's certificate must be valid for
			   * (GnuTLS keeps the pointer, not a copy). */
};

/* Parse the server certificate (the chain's first) and take its first dNSName that is not a
 * wildcard: a wildcard cannot be an SVCB TargetName. A certificate GnuTLS took but this cannot
 * read leaves no name, which DDR says in the log; it does not stop the listeners. */
static void read_name(tls_creds_t *c)
{
	gnutls_datum_t der; /* GnuTLS's own copy: valid while c->cert is, never freed here. */
	if (gnutls_certificate_get_crt_raw(c->cert, 0, 0, &der) < 0 ||
	    gnutls_x509_crt_init(&c->crt) < 0) {
		c->crt = NULL;
		return;
	}
	if (gnutls_x509_crt_import(c->crt, &der, GNUTLS_X509_FMT_DER) < 0) {
		gnutls_x509_crt_deinit(c->crt);
		c->crt = NULL;
		return;
	}
	for (unsigned seq = 0; seq < 1024; seq++) {
		char san[sizeof(c->name)];
		size_t size = sizeof(san);
		unsigned critical;
		int type = gnutls_x509_crt_get_subject_alt_name(c->crt, seq, san, &size, &critical);
		if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
			continue; /* Longer than any DNS name. */
		if (type < 0)
			break;
		if (type != GNUTLS_SAN_DNSNAME || size == 0 || size >= sizeof(san) ||
		    memchr(san, '\0', size) || memchr(san, '*', size))
			continue;
		memcpy(c->name, san, size);
		c->name[size] = '\0';
		return;
	}
}

const char *tls_creds_name(const tls_creds_t *c)
{
	return c->name;
}

int tls_creds_is_valid_for(const tls_creds_t *c, const char *name)
{
	return c->crt && gnutls_x509_crt_check_hostname2(c->crt, name, 0) != 0;
}

/* Credentials with their certificate store and priorities, the rest filled by fill(c, arg):
 * the server's pair and ticket key, or the client's CAs. fill returns a GnuTLS error (with
 * the reason in err, else the GnuTLS text is used) or 0. */
static int creds_new(tls_creds_t **out, int (*fill)(tls_creds_t *, const void *, char *, size_t),
		     const void *arg, char *err, size_t errlen)
{
	tls_creds_t *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	atomic_init(&c->refs, 1);
	err[0] = '\0';
	int rc = gnutls_certificate_allocate_credentials(&c->cert);
	if (rc >= 0)
		rc = fill(c, arg, err, errlen);
	if (rc >= 0)
		rc = gnutls_priority_init(&c->prio, PRIORITIES, NULL);
	if (rc < 0) {
		if (!err[0])
			snprintf(err, errlen, "TLS: %s", gnutls_strerror(rc));
		tls_creds_unref(c);
		return rc == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EINVAL;
	}
	*out = c;
	return 0;
}

struct pair {
	const char *cert, *key;
};

static int fill_server(tls_creds_t *c, const void *arg, char *err, size_t errlen)
{
	const struct pair *p = arg;
	int rc = gnutls_certificate_set_x509_key_file2(c->cert, p->cert, p->key,
						       GNUTLS_X509_FMT_PEM, NULL, 0);
	if (rc < 0) {
		snprintf(err, errlen, "--tls-cert %s, --tls-key %s: %s", p->cert, p->key,
			 gnutls_strerror(rc));
		return rc;
	}
	read_name(c);
	return gnutls_session_ticket_key_generate(&c->ticket_key);
}

int tls_creds_new(tls_creds_t **out, const char *cert_file, const char *key_file, char *err,
		  size_t errlen)
{
	struct pair p = {cert_file, key_file};
	return creds_new(out, fill_server, &p, err, errlen);
}

/* A client's CAs: a file, or the system's store; a source with no certificate is an error. */
static int fill_client(tls_creds_t *c, const void *arg, char *err, size_t errlen)
{
	const char *ca_file = arg;
	int rc = ca_file && *ca_file
			 ? gnutls_certificate_set_x509_trust_file(c->cert, ca_file, GNUTLS_X509_FMT_PEM)
			 : gnutls_certificate_set_x509_system_trust(c->cert);
	if (rc > 0)
		return 0;
	if (ca_file && *ca_file)
		snprintf(err, errlen, "--upstream-ca %s: %s", ca_file,
			 rc < 0 ? gnutls_strerror(rc) : "no certificate in it");
	else
		snprintf(err, errlen, "the system's CA store: %s (give --upstream-ca FILE)",
			 rc < 0 ? gnutls_strerror(rc) : "no certificate in it");
	return rc < 0 ? rc : GNUTLS_E_FILE_ERROR;
}

int tls_client_creds_new(tls_creds_t **out, const char *ca_file, char *err, size_t errlen)
{
	return creds_new(out, fill_client, ca_file, err, errlen);
}

int tls_creds_keep_tickets(tls_creds_t *to, const tls_creds_t *from)
{
	if (!from || from->ticket_key.size != to->ticket_key.size)
		return -EINVAL;
	memcpy(to->ticket_key.data, from->ticket_key.data, to->ticket_key.size);
	return 0;
}

void tls_creds_ref(tls_creds_t *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void tls_creds_unref(tls_creds_t *c)
{
	if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (c->ticket_key.data) {
		gnutls_memset(c->ticket_key.data, 0, c->ticket_key.size);
		gnutls_free(c->ticket_key.data);
	}
	if (c->crt)
		gnutls_x509_crt_deinit(c->crt);
	if (c->prio)
		gnutls_priority_deinit(c->prio);
	if (c->cert)
		gnutls_certificate_free_credentials(c->cert);
	free(c);
}

static ssize_t pull(gnutls_transport_ptr_t ptr, void *data, size_t len)
{
	tls_session_t *s = ptr;
	size_t have = s->len - s->off;
	if (have == 0) {
		gnutls_transport_set_errno(s->g, EAGAIN);
		return -1;
	}
	size_t n = have < len ? have : len;
	memcpy(data, s->in + s->off, n);
	s->off += n;
	if (s->off == s->len)
		s->off = s->len = 0;
	return (ssize_t)n;
}

static ssize_t push(gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
	tls_session_t *s = ptr;
	if (s->push(s->ctx, data, len) < 0) {
		gnutls_transport_set_errno(s->g, EPIPE);
		return -1;
	}
	return (ssize_t)len;
}

/* A session of either side on c, its transport our pull and push functions. */
static tls_session_t *session_alloc(tls_creds_t *c, unsigned side, tls_push_cb push_cb, void *ctx)
{
	tls_session_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (gnutls_init(&s->g, side | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
		free(s);
		return NULL;
	}
	tls_creds_ref(c);
	s->creds = c;
	s->push = push_cb;
	s->ctx = ctx;
	gnutls_transport_set_ptr(s->g, s);
	gnutls_transport_set_pull_function(s->g, pull);
	gnutls_transport_set_push_function(s->g, push);
	return s;
}

tls_session_t *tls_session_new(tls_creds_t *c, const char *alpn, tls_push_cb push_cb, void *ctx)
{
	tls_session_t *s = session_alloc(c, GNUTLS_SERVER, push_cb, ctx);
	if (!s)
		return NULL;
	gnutls_datum_t proto = {(unsigned char *)alpn, (unsigned)strlen(alpn)};
	if (gnutls_priority_set(s->g, c->prio) < 0 ||
	    gnutls_credentials_set(s->g, GNUTLS_CRD_CERTIFICATE, c->cert) < 0 ||
	    gnutls_alpn_set_protocols(s->g, &proto, 1,
				      GNUTLS_ALPN_SERVER_PRECEDENCE | GNUTLS_ALPN_MANDATORY) < 0) {
		tls_session_free(s);
		return NULL;
	}
	gnutls_certificate_server_set_request(s->g, GNUTLS_CERT_IGNORE);
	/* The expiration sets the tickets' lifetime, and their keys rotate every three of it. */
	gnutls_db_set_cache_expiration(s->g, TICKET_LIFETIME_S);
	(void)gnutls_session_ticket_enable_server(s->g, &c->ticket_key);
	/* The transport times the handshake out (--tls-handshake-timeout), not GnuTLS; and a
	 * handshake message may not be longer than a record (no client certificates are asked
	 * for), so a client half way through one holds 16 KiB, not GnuTLS's default 128. */
	gnutls_handshake_set_timeout(s->g, 0);
	gnutls_handshake_set_max_packet_length(s->g, 16384);
	return s;
}

tls_session_t *tls_client_session_new(tls_creds_t *c, const char *name, const char *alpn,
				      tls_push_cb push_cb, void *ctx)
{
	tls_session_t *s = session_alloc(c, GNUTLS_CLIENT, push_cb, ctx);
	if (!s)
		return NULL;
	if (strlen(name) >= sizeof(s->peer)) {
		tls_session_free(s);
		return NULL;
	}
	strcpy(s->peer, name);
	name = s->peer;
	struct in6_addr a;
	int literal = inet_pton(AF_INET, name, &a) == 1 || inet_pton(AF_INET6, name, &a) == 1;
	gnutls_datum_t proto = {(unsigned char *)alpn, (unsigned)strlen(alpn)};
	/* SNI carries DNS names only (RFC 6066 3); the name check takes addresses too (an IP
	 * SubjectAltName, as 1.1.1.1's certificate has). */
	if (gnutls_priority_set(s->g, c->prio) < 0 ||
	    gnutls_credentials_set(s->g, GNUTLS_CRD_CERTIFICATE, c->cert) < 0 ||
	    (!literal && gnutls_server_name_set(s->g, GNUTLS_NAME_DNS, name, strlen(name)) < 0) ||
	    gnutls_alpn_set_protocols(s->g, &proto, 1, 0) < 0) {
		tls_session_free(s);
		return NULL;
	}
	gnutls_session_set_verify_cert(s->g, name, 0);
	gnutls_handshake_set_timeout(s->g, 0); /* The transport times it out. */
	return s;
}

const char *tls_session_why(const tls_session_t *s, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (!s->err)
		return buf;
	gnutls_datum_t out = {NULL, 0};
	if (s->err == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR &&
	    gnutls_certificate_verification_status_print(gnutls_session_get_verify_cert_status(s->g),
							 GNUTLS_CRT_X509, &out, 0) == 0) {
		snprintf(buf, cap, "certificate not accepted: %s", (const char *)out.data);
		gnutls_free(out.data);
		for (size_t n = strlen(buf); n > 0 && buf[n - 1] == ' ';) /* GnuTLS ends with one. */
			buf[--n] = '\0';
	} else {
		snprintf(buf, cap, "%s", gnutls_strerror(s->err));
	}
	return buf;
}

void tls_session_free(tls_session_t *s)
{
	if (!s)
		return;
	gnutls_deinit(s->g);
	tls_creds_unref(s->creds);
	free(s->in);
	free(s);
}

int tls_session_feed(tls_session_t *s, const uint8_t *bytes, size_t len)
{
	if (s->off > 0) {
		memmove(s->in, s->in + s->off, s->len - s->off);
		s->len -= s->off;
		s->off = 0;
	}
	if (s->len + len > TLS_INPUT_MAX)
		return -ENOBUFS;
	if (s->len + len > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + len)
			cap *= 2;
		if (cap > TLS_INPUT_MAX)
			cap = TLS_INPUT_MAX;
		uint8_t *in = realloc(s->in, cap);
		if (!in)
			return -ENOBUFS;
		s->in = in;
		s->cap = cap;
	}
	memcpy(s->in + s->len, bytes, len);
	s->len += len;
	return 0;
}

/* A fatal error: tell the peer why with the alert GnuTLS has for it (not after an alert of the
 * peer's, nor when the push itself failed). @return -EPROTO. */
static ssize_t failed(tls_session_t *s, int rc)
{
	s->err = rc;
	if (rc != GNUTLS_E_FATAL_ALERT_RECEIVED && rc != GNUTLS_E_PUSH_ERROR)
		(void)gnutls_alert_send_appropriate(s->g, rc);
	return -EPROTO;
}

ssize_t tls_session_read(tls_session_t *s, uint8_t *out, size_t cap)
{
	while (!s->ready) {
		int rc = gnutls_handshake(s->g);
		if (rc == GNUTLS_E_SUCCESS)
			s->ready = 1;
		else if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED)
			return 0;
		else if (gnutls_error_is_fatal(rc))
			return failed(s, rc);
		/* A warning alert: go on. */
	}
	size_t got = 0;
	while (got < cap && !s->eof) {
		ssize_t n = gnutls_record_recv(s->g, out + got, cap - got);
		if (n > 0) {
			got += (size_t)n;
		} else if (n == 0) {
			s->eof = 1;
		} else if (n == GNUTLS_E_AGAIN) {
			break;
		} else if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_WARNING_ALERT_RECEIVED) {
			continue;
		} else if (n == GNUTLS_E_PREMATURE_TERMINATION) {
			s->eof = 1;
		} else {
			/* Fatal, or a renegotiation embargo does not do (GNUTLS_E_REHANDSHAKE). */
			if (got > 0)
				return (ssize_t)got; /* The error comes again at the next call. */
			return failed(s, (int)n);
		}
	}
	if (got == 0 && s->eof)
		return -EPIPE;
	return (ssize_t)got;
}

int tls_session_is_ready(const tls_session_t *s)
{
	return s->ready;
}

int tls_session_has_pending(const tls_session_t *s)
{
	return s->ready && !s->eof &&
	       (gnutls_record_check_pending(s->g) > 0 || s->len > s->off);
}

int tls_session_write(tls_session_t *s, const uint8_t *bytes, size_t len)
{
	if (!s->ready)
		return -EPROTO;
	while (len > 0) {
		ssize_t n = gnutls_record_send(s->g, bytes, len);
		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n <= 0)
			return -EPROTO; /* The push function never says "again": it copies. */
		bytes += n;
		len -= (size_t)n;
	}
	return 0;
}

void tls_session_cork(tls_session_t *s)
{
	if (s->ready)
		gnutls_record_cork(s->g);
}

int tls_session_uncork(tls_session_t *s)
{
	if (!s->ready)
		return 0;
	for (;;) {
		int rc = gnutls_record_uncork(s->g, GNUTLS_RECORD_WAIT);
		if (rc >= 0)
			return 0;
		if (rc != GNUTLS_E_INTERRUPTED && rc != GNUTLS_E_AGAIN)
			return -EPROTO;
	}
}

void tls_session_bye(tls_session_t *s)
{
	if (s->ready)
		(void)gnutls_bye(s->g, GNUTLS_SHUT_WR);
}

int tls_session_is_resumed(const tls_session_t *s)
{
	return gnutls_session_is_resumed(s->g) != 0;
}

int tls_session_resume_data(const tls_session_t *s, uint8_t **data, size_t *len)
{
	if (!s->ready || !(gnutls_session_get_flags(s->g) & GNUTLS_SFLAGS_SESSION_TICKET))
		return -EAGAIN;
	gnutls_datum_t d = {NULL, 0};
	if (gnutls_session_get_data2(s->g, &d) < 0 || !d.size)
		return -EAGAIN;
	*data = malloc(d.size);
	if (!*data) {
		gnutls_free(d.data);
		return -ENOMEM;
	}
	memcpy(*data, d.data, d.size);
	*len = d.size;
	gnutls_free(d.data);
	return 0;
}

int tls_session_resume(tls_session_t *s, const uint8_t *data, size_t len)
{
	return gnutls_session_set_data(s->g, data, len) < 0 ? -EINVAL : 0;
}
