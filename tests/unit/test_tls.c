/* resolver/base/tls.c against a GnuTLS client in memory: the handshake with ALPN, records both
 * ways, resumption from a ticket, the peer's close_notify, and what a hostile peer can send
 * (bytes that are not TLS, too much ciphertext at once, a certificate and key that do not
 * match). The certificates are made here with GnuTLS's x509 API. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "resolver/base/tls.h"

/* One direction of the wire. */
struct pipe {
	uint8_t bytes[1 << 20];
	size_t len, off;
};

static struct pipe c2s, s2c; /* Client to server, server to client. */
static char dir[64], cert_one[96], key_one[96], key_two[96];

static void pipe_put(struct pipe *p, const void *data, size_t len)
{
	cr_assert_leq(p->len + len, sizeof(p->bytes));
	memcpy(p->bytes + p->len, data, len);
	p->len += len;
}

static int server_push(void *ctx, const uint8_t *bytes, size_t len)
{
	(void)ctx;
	pipe_put(&s2c, bytes, len);
	return 0;
}

static ssize_t client_push(gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
	(void)ptr;
	pipe_put(&c2s, data, len);
	return (ssize_t)len;
}

static ssize_t client_pull(gnutls_transport_ptr_t ptr, void *data, size_t len)
{
	gnutls_session_t g = ptr;
	size_t have = s2c.len - s2c.off;
	if (have == 0) {
		gnutls_transport_set_errno(g, EAGAIN);
		return -1;
	}
	size_t n = have < len ? have : len;
	memcpy(data, s2c.bytes + s2c.off, n);
	s2c.off += n;
	return (ssize_t)n;
}

static void write_pem(const char *path, const gnutls_datum_t *d)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(d->data, 1, d->size, f), d->size);
	fclose(f);
}

/* A self-signed certificate for dns.test into cert (NULL: none) and its key into key. */
static void make_pair(const char *cert, const char *key)
{
	gnutls_x509_privkey_t k;
	gnutls_x509_crt_t crt;
	gnutls_datum_t d;
	cr_assert_eq(gnutls_x509_privkey_init(&k), 0);
	cr_assert_eq(gnutls_x509_privkey_generate(k, GNUTLS_PK_ECDSA,
						  GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
		     0);
	cr_assert_eq(gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d), 0);
	write_pem(key, &d);
	gnutls_free(d.data);
	if (cert) {
		cr_assert_eq(gnutls_x509_crt_init(&crt), 0);
		unsigned char serial[8] = {1, 2, 3, 4, 5, 6, 7, 8};
		time_t now = time(NULL);
		cr_assert_eq(gnutls_x509_crt_set_version(crt, 3), 0);
		cr_assert_eq(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), 0);
		cr_assert_eq(gnutls_x509_crt_set_activation_time(crt, now - 3600), 0);
		cr_assert_eq(gnutls_x509_crt_set_expiration_time(crt, now + 86400), 0);
		cr_assert_eq(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
							   "dns.test", 8), 0);
		cr_assert_eq(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "dns.test",
								  8, GNUTLS_FSAN_SET), 0);
		cr_assert_eq(gnutls_x509_crt_set_key(crt, k), 0);
		cr_assert_eq(gnutls_x509_crt_sign2(crt, crt, k, GNUTLS_DIG_SHA256, 0), 0);
		cr_assert_eq(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d), 0);
		write_pem(cert, &d);
		gnutls_free(d.data);
		gnutls_x509_crt_deinit(crt);
	}
	gnutls_x509_privkey_deinit(k);
}

static void setup(void)
{
	memset(&c2s, 0, sizeof(c2s));
	memset(&s2c, 0, sizeof(s2c));
	snprintf(dir, sizeof(dir), "/tmp/test_tls.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(cert_one, sizeof(cert_one), "%s/one.pem", dir);
	snprintf(key_one, sizeof(key_one), "%s/one.key", dir);
	snprintf(key_two, sizeof(key_two), "%s/two.key", dir);
	make_pair(cert_one, key_one);
	make_pair(NULL, key_two);
}

static void teardown(void)
{
	unlink(cert_one);
	unlink(key_one);
	unlink(key_two);
	rmdir(dir);
}

struct client {
	gnutls_session_t g;
	gnutls_certificate_credentials_t cred;
};

/* A client offering ALPN alpn (NULL: none); it does not verify the certificate. */
static void client_new(struct client *c, const char *alpn)
{
	cr_assert_eq(gnutls_init(&c->g, GNUTLS_CLIENT | GNUTLS_NONBLOCK), 0);
	cr_assert_eq(gnutls_set_default_priority(c->g), 0);
	cr_assert_eq(gnutls_certificate_allocate_credentials(&c->cred), 0);
	cr_assert_eq(gnutls_credentials_set(c->g, GNUTLS_CRD_CERTIFICATE, c->cred), 0);
	if (alpn) {
		gnutls_datum_t p = {(unsigned char *)alpn, (unsigned)strlen(alpn)};
		cr_assert_eq(gnutls_alpn_set_protocols(c->g, &p, 1, 0), 0);
	}
	gnutls_transport_set_ptr(c->g, c->g);
	gnutls_transport_set_push_function(c->g, client_push);
	gnutls_transport_set_pull_function(c->g, client_pull);
}

static void client_free(struct client *c)
{
	gnutls_deinit(c->g);
	gnutls_certificate_free_credentials(c->cred);
}

/* Hand the server what the client wrote. */
static ssize_t server_take(tls_session_t *s, uint8_t *out, size_t cap)
{
	if (c2s.len > c2s.off) {
		cr_assert_eq(tls_session_feed(s, c2s.bytes + c2s.off, c2s.len - c2s.off), 0);
		c2s.off = c2s.len;
	}
	return tls_session_read(s, out, cap);
}

/* Run both sides' handshakes to the end. */
static void handshake(struct client *c, tls_session_t *s)
{
	uint8_t out[64];
	int rc = GNUTLS_E_AGAIN;
	for (int round = 0; round < 20 && (rc != 0 || !tls_session_is_ready(s)); round++) {
		if (rc != 0)
			rc = gnutls_handshake(c->g);
		cr_assert(rc == 0 || rc == GNUTLS_E_AGAIN, "client: %s", gnutls_strerror(rc));
		cr_assert_geq(server_take(s, out, sizeof(out)), 0);
	}
	cr_assert_eq(rc, 0);
	cr_assert(tls_session_is_ready(s));
}

TestSuite(tls, .init = setup, .fini = teardown);

Test(tls, handshake_alpn_and_records_both_ways)
{
	tls_creds_t *creds;
	char err[256];
	cr_assert_eq(tls_creds_new(&creds, cert_one, key_one, err, sizeof(err)), 0, "%s", err);
	tls_session_t *s = tls_session_new(creds, "dot", server_push, NULL);
	tls_creds_unref(creds); /* The session holds its own reference. */
	cr_assert_not_null(s);
	struct client c;
	client_new(&c, "dot");
	handshake(&c, s);
	gnutls_datum_t proto;
	cr_assert_eq(gnutls_alpn_get_selected_protocol(c.g, &proto), 0);
	cr_assert_eq(proto.size, 3);
	cr_assert_eq(memcmp(proto.data, "dot", 3), 0);
	cr_assert_geq(gnutls_protocol_get_version(c.g), GNUTLS_TLS1_2);

	/* Client to server: two records, read back whole, in order. */
	cr_assert_eq(gnutls_record_send(c.g, "\x00\x05hello", 7), 7);
	cr_assert_eq(gnutls_record_send(c.g, "\x00\x05world", 7), 7);
	uint8_t out[64];
	cr_assert_eq(server_take(s, out, sizeof(out)), 14);
	cr_assert_eq(memcmp(out, "\x00\x05hello\x00\x05world", 14), 0);
	cr_assert_not(tls_session_has_pending(s));

	/* A small buffer: the rest stays pending until read. */
	cr_assert_eq(gnutls_record_send(c.g, "0123456789", 10), 10);
	cr_assert_eq(server_take(s, out, 4), 4);
	cr_assert(tls_session_has_pending(s));
	cr_assert_eq(tls_session_read(s, out + 4, sizeof(out) - 4), 6);
	cr_assert_eq(memcmp(out, "0123456789", 10), 0);

	/* Server to client. */
	cr_assert_eq(tls_session_write(s, (const uint8_t *)"answer", 6), 0);
	char got[16];
	ssize_t n;
	do
		n = gnutls_record_recv(c.g, got, sizeof(got));
	while (n == GNUTLS_E_AGAIN && s2c.off < s2c.len);
	cr_assert_eq(n, 6, "%s", gnutls_strerror((int)n));
	cr_assert_eq(memcmp(got, "answer", 6), 0);

	/* The client says goodbye: what it sent before still comes, then the end. */
	cr_assert_eq(gnutls_record_send(c.g, "last", 4), 4);
	cr_assert_eq(gnutls_bye(c.g, GNUTLS_SHUT_WR), 0);
	cr_assert_eq(server_take(s, out, sizeof(out)), 4);
	cr_assert_eq(tls_session_read(s, out, sizeof(out)), -EPIPE);
	client_free(&c);
	tls_session_free(s);
}

Test(tls, not_tls_is_a_protocol_error)
{
	tls_creds_t *creds;
	char err[256];
	cr_assert_eq(tls_creds_new(&creds, cert_one, key_one, err, sizeof(err)), 0, "%s", err);
	tls_session_t *s = tls_session_new(creds, "dot", server_push, NULL);
	tls_creds_unref(creds);
	/* A plain DNS query over TCP sent to the TLS port. */
	static const uint8_t dns[] = {0, 29, 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w',
				      'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c',
				      'o', 'm', 0, 0, 1, 0, 1};
	cr_assert_eq(tls_session_feed(s, dns, sizeof(dns)), 0);
	uint8_t out[64];
	cr_assert_eq(tls_session_read(s, out, sizeof(out)), -EPROTO);
	cr_assert_not(tls_session_is_ready(s));
	tls_session_free(s);
}

Test(tls, ciphertext_beyond_the_bound_is_refused)
{
	tls_creds_t *creds;
	char err[256];
	cr_assert_eq(tls_creds_new(&creds, cert_one, key_one, err, sizeof(err)), 0, "%s", err);
	tls_session_t *s = tls_session_new(creds, "dot", server_push, NULL);
	tls_creds_unref(creds);
	static uint8_t junk[TLS_INPUT_MAX];
	memset(junk, 0x16, sizeof(junk));
	cr_assert_eq(tls_session_feed(s, junk, sizeof(junk)), 0);
	cr_assert_eq(tls_session_feed(s, junk, 1), -ENOBUFS);
	tls_session_free(s);
}

Test(tls, a_key_of_another_certificate_is_refused_with_the_reason)
{
	tls_creds_t *creds = NULL;
	char err[256] = "";
	cr_assert_lt(tls_creds_new(&creds, cert_one, key_two, err, sizeof(err)), 0);
	cr_assert_null(creds);
	cr_assert(strstr(err, cert_one) && strstr(err, key_two), "%s", err);
	cr_assert_lt(tls_creds_new(&creds, "/nonexistent.pem", key_one, err, sizeof(err)), 0);
	cr_assert(strstr(err, "/nonexistent.pem"), "%s", err);
}

Test(tls, a_ticket_resumes_the_session)
{
	tls_creds_t *creds;
	char err[256];
	cr_assert_eq(tls_creds_new(&creds, cert_one, key_one, err, sizeof(err)), 0, "%s", err);
	struct client c;
	tls_session_t *s = tls_session_new(creds, "dot", server_push, NULL);
	client_new(&c, "dot");
	handshake(&c, s);
	/* TLS 1.3 sends the ticket after the handshake: let the client read it. */
	char got[16];
	(void)gnutls_record_recv(c.g, got, sizeof(got));
	gnutls_datum_t data;
	cr_assert_eq(gnutls_session_get_data2(c.g, &data), 0);
	cr_assert_not(tls_session_is_resumed(s));
	client_free(&c);
	tls_session_free(s);

	/* A new connection (another session, maybe another worker) with the same credentials. */
	memset(&c2s, 0, sizeof(c2s));
	memset(&s2c, 0, sizeof(s2c));
	s = tls_session_new(creds, "dot", server_push, NULL);
	client_new(&c, "dot");
	cr_assert_eq(gnutls_session_set_data(c.g, data.data, data.size), 0);
	gnutls_free(data.data);
	handshake(&c, s);
	cr_assert(gnutls_session_is_resumed(c.g));
	cr_assert(tls_session_is_resumed(s));
	client_free(&c);
	tls_session_free(s);
	tls_creds_unref(creds);
}
