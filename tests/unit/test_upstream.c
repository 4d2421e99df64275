/* The upstream side on a real loop, against UDP sockets the test holds as upstreams: the query
 * that goes out is embargo's own (new ID, random case, 1232-octet EDNS with DO, our cookie and
 * nothing of the client's), forged answers are ignored (wrong ID, wrong case, wrong port),
 * identical questions are merged, soft failures move on, a lost case falls back, and the pool's
 * limits hold. */
#include "config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ldns_util.h"
#include "resolver/upstream/upstream.h"

TestSuite(upstream);

struct answer {
	int calls, firsts, failures;
	uint16_t id;
	uint8_t name[64];
	size_t len;
};
static struct answer got;

static struct upstream_failure why_got;

static int on_answer(void *ctx, const struct client *c, const uint8_t *query,
		     const struct wire_query *q, uint8_t *reply, size_t len,
		     const struct upstream_failure *why, unsigned flags)
{
	(void)ctx;
	(void)c;
	(void)query;
	got.calls++;
	got.firsts += (flags & UPSTREAM_FIRST) ? 1 : 0;
	if (!reply) {
		got.failures++;
		if (why)
			why_got = *why;
		return 0;
	}
	got.id = wire_get16(reply);
	memcpy(got.name, reply + WIRE_HEADER, q->qname_len);
	got.len = len;
	return 0;
}

/* A UDP socket on 127.0.0.1 that plays an upstream; its address in *ss. */
static int fake_upstream(struct sockaddr_storage *ss)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof(*ss));
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)in, sizeof(*in)), 0);
	socklen_t l = sizeof(*in);
	getsockname(fd, (struct sockaddr *)in, &l);
	return fd;
}

/* Run the loop for ms, or until fd (if >= 0) is readable. @return 1 when it is. */
static int pump(uv_loop_t *loop, int fd, int ms)
{
	uint64_t end = uv_hrtime() / 1000000 + (uint64_t)ms;
	while (uv_hrtime() / 1000000 < end) {
		uv_run(loop, UV_RUN_NOWAIT);
		if (fd >= 0) {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			if (poll(&p, 1, 1) == 1)
				return 1;
		} else {
			usleep(1000);
		}
	}
	return 0;
}

/* Receive one upstream query at fd within ms. @return its length, 0 if none came. */
static size_t take_query(uv_loop_t *loop, int fd, uint8_t *buf, struct sockaddr_storage *from,
			 int ms)
{
	if (!pump(loop, fd, ms))
		return 0;
	socklen_t fl = sizeof(*from);
	ssize_t n = recvfrom(fd, buf, 4096, 0, (struct sockaddr *)from, &fl);
	cr_assert_gt(n, 0);
	return (size_t)n;
}

/* An answer to query q[len] (same ID and question), one A record, rcode. */
static size_t answer_to(const uint8_t *q, size_t qlen, uint8_t *out, unsigned rcode)
{
	struct wire_query wq;
	(void)qlen;
	size_t qend = WIRE_HEADER;
	while (q[qend])
		qend += 1u + q[qend];
	qend += 5;
	(void)wq;
	memcpy(out, q, qend);
	wire_put16(out + 2, (uint16_t)(WIRE_FLAG_QR | WIRE_FLAG_RD | WIRE_FLAG_RA | rcode));
	wire_put16(out + 6, rcode ? 0 : 1);
	wire_put16(out + 8, 0);
	wire_put16(out + 10, 0);
	size_t n = qend;
	if (!rcode) {
		static const uint8_t rr[] = {0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 7};
		memcpy(out + n, rr, sizeof(rr));
		n += sizeof(rr);
	}
	return n;
}

struct setup {
	uv_loop_t loop;
	struct options o;
	upstream_t *up;
	struct client client;
};

static void start(struct setup *s, int argc, char **argv)
{
	char err[256];
	char *full[32] = {"embargo"};
	for (int i = 0; i < argc; i++)
		full[1 + i] = argv[i];
	cr_assert_eq(options_parse(&s->o, 1 + argc, full, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_assert_eq(uv_loop_init(&s->loop), 0);
	int rc;
	s->up = upstream_new(&s->loop, &s->o, on_answer, NULL, &rc);
	cr_assert_not_null(s->up);
	static int session;
	static const struct client_ops ops = {0}; /* Answers go to on_answer(); NULL ops is a refresh. */
	memset(&s->client, 0, sizeof(s->client));
	s->client.session = &session;
	s->client.ops = &ops;
	s->client.addr.ss_family = AF_INET;
	memset(&got, 0, sizeof(got));
}

static void stop(struct setup *s)
{
	upstream_close(s->up);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&s->loop), 0);
}

static int forward(struct setup *s, const char *name, int edns, uint16_t id, uint8_t *extra,
		   size_t extra_len)
{
	size_t len;
	uint8_t *q = make_query(name, LDNS_RR_TYPE_A, edns, id, &len);
	uint8_t buf[512];
	memcpy(buf, q, len);
	free(q);
	if (extra_len) { /* EDNS options appended to the OPT record, which comes last. */
		memcpy(buf + len, extra, extra_len);
		wire_put16(buf + len - 2, (uint16_t)(wire_get16(buf + len - 2) + extra_len));
		len += extra_len;
	}
	struct wire_query wq;
	cr_assert_eq(wire_parse_query(buf, len, &wq), 0);
	return upstream_forward(s->up, &s->client, buf, len, &wq, 0);
}

static char *addr_arg(const struct sockaddr_storage *ss)
{
	static char bufs[4][64];
	static int k;
	char *b = bufs[k++ % 4];
	options_format_addr(ss, b, 64);
	return b;
}

Test(upstream, the_query_sent_is_embargos_own)
{
	struct sockaddr_storage up, from;
	int fd = fake_upstream(&up);
	struct setup s;
	start(&s, 2, (char *[]){"--upstream", addr_arg(&up)});
	/* The client's own ECS (8) and cookie (10) options must not go upstream. */
	uint8_t opts[] = {0, 8, 0, 7, 0, 1, 24, 0, 198, 18, 0, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
	cr_assert_eq(forward(&s, "www.example.com.", 2, 0x1234, opts, sizeof(opts)), 0);
	uint8_t q[4096];
	size_t n = take_query(&s.loop, fd, q, &from, 1000);
	cr_assert_gt(n, 0);
	ldns_pkt *pkt = NULL;
	cr_assert_eq(ldns_wire2pkt(&pkt, q, n), LDNS_STATUS_OK);
	cr_expect(ldns_pkt_rd(pkt));
	cr_expect_eq(ldns_pkt_edns_udp_size(pkt), 1232);
	cr_expect(ldns_pkt_edns_do(pkt));
	size_t off, olen;
	cr_expect_eq(wire_find_edns_option(q, n, WIRE_EDNS_ECS, &off, &olen), 0);
	cr_assert_eq(wire_find_edns_option(q, n, WIRE_EDNS_COOKIE, &off, &olen), 1);
	cr_expect_eq(olen, 8);
	cr_expect_neq(memcmp(q + off, opts + 15, 8), 0, "the client's cookie went upstream");
	char *name = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(pkt), 0)));
	cr_expect_eq(strcasecmp(name, "www.example.com."), 0, "%s", name);
	free(name);
	ldns_pkt_free(pkt);
	close(fd);
	stop(&s);
}

Test(upstream, forged_answers_are_ignored)
{
	struct sockaddr_storage up, from;
	int fd = fake_upstream(&up);
	struct setup s;
	start(&s, 4, (char *[]){"--upstream", addr_arg(&up), "--timeout", "4000"});
	cr_assert_eq(forward(&s, "Mixed.Case.Example.", 0, 0x4242, NULL, 0), 0);
	uint8_t q[4096], a[4096];
	size_t n = take_query(&s.loop, fd, q, &from, 1000);
	cr_assert_gt(n, 0);
	size_t alen = answer_to(q, n, a, 0);
	socklen_t fl = from.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	/* Wrong ID. */
	wire_put16(a, (uint16_t)(wire_get16(q) + 1));
	sendto(fd, a, alen, 0, (struct sockaddr *)&from, fl);
	/* Right ID, question in other case. */
	wire_put16(a, wire_get16(q));
	for (size_t k = WIRE_HEADER; a[k]; k++)
		a[k] ^= (a[k] >= 'A' && a[k] <= 'Z') || (a[k] >= 'a' && a[k] <= 'z') ? 0x20 : 0;
	sendto(fd, a, alen, 0, (struct sockaddr *)&from, fl);
	/* Right everything, from another port. */
	alen = answer_to(q, n, a, 0);
	struct sockaddr_storage other;
	int fd2 = fake_upstream(&other);
	sendto(fd2, a, alen, 0, (struct sockaddr *)&from, fl);
	pump(&s.loop, -1, 150);
	cr_expect_eq(got.calls, 0, "a forged answer was accepted");
	cr_expect_geq(upstream_stats(s.up)->mismatched + upstream_stats(s.up)->case_mismatched, 2);

	/* The real one: the client's ID and letter case come back. */
	sendto(fd, a, alen, 0, (struct sockaddr *)&from, fl);
	pump(&s.loop, -1, 150);
	cr_assert_eq(got.calls, 1);
	cr_expect_eq(got.failures, 0);
	cr_expect_eq(got.id, 0x4242);
	cr_expect_eq(memcmp(got.name, "\5Mixed\4Case\7Example", 19), 0);
	close(fd2);
	close(fd);
	stop(&s);
}

Test(upstream, identical_questions_share_one_query)
{
	struct sockaddr_storage up, from;
	int fd = fake_upstream(&up);
	struct setup s;
	start(&s, 2, (char *[]){"--upstream", addr_arg(&up)});
	cr_assert_eq(forward(&s, "www.example.com.", 1, 1, NULL, 0), 0);
	cr_assert_eq(forward(&s, "WWW.example.COM.", 1, 2, NULL, 0), 0);
	cr_assert_eq(forward(&s, "www.example.com.", 1, 3, NULL, 0), 0);
	uint8_t q[4096], a[4096];
	size_t n = take_query(&s.loop, fd, q, &from, 1000);
	cr_assert_gt(n, 0);
	uint8_t q2[4096];
	struct sockaddr_storage f2;
	cr_expect_eq(take_query(&s.loop, fd, q2, &f2, 200), 0, "a second upstream query was sent");
	size_t alen = answer_to(q, n, a, 0);
	sendto(fd, a, alen, 0, (struct sockaddr *)&from,
	       from.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	pump(&s.loop, -1, 150);
	cr_expect_eq(got.calls, 3);
	cr_expect_eq(got.firsts, 1);
	cr_expect_eq(got.id, 3);
	cr_expect_eq(upstream_stats(s.up)->merged, 2);
	close(fd);
	stop(&s);
}

Test(upstream, soft_failure_moves_to_the_next_upstream)
{
	struct sockaddr_storage u1, u2, from;
	int fd1 = fake_upstream(&u1), fd2 = fake_upstream(&u2);
	struct setup s;
	start(&s, 4, (char *[]){"--upstream", addr_arg(&u1), "--upstream", addr_arg(&u2)});
	cr_assert_eq(forward(&s, "www.example.com.", 1, 9, NULL, 0), 0);
	uint8_t q[4096], a[4096];
	size_t n = take_query(&s.loop, fd1, q, &from, 1000);
	cr_assert_gt(n, 0);
	size_t alen = answer_to(q, n, a, WIRE_RCODE_REFUSED);
	sendto(fd1, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	/* At once, not after a timeout. */
	n = take_query(&s.loop, fd2, q, &from, 100);
	cr_assert_gt(n, 0, "the second upstream was not asked at once");
	alen = answer_to(q, n, a, 0);
	sendto(fd2, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	pump(&s.loop, -1, 100);
	cr_expect_eq(got.calls, 1);
	cr_expect_eq(got.failures, 0);
	cr_expect_eq(upstream_stats(s.up)->soft_failures, 1);
	close(fd1);
	close(fd2);
	stop(&s);
}

/* An error RCODE is not retried at the upstream that gave it: with two upstreams that both
 * answer REFUSED the question goes out twice, not four times (a client cannot make one query
 * into a burst), and the failure keeps the last upstream's RCODE and EDE for the client. */
Test(upstream, each_upstream_rejects_a_question_once)
{
	struct sockaddr_storage u1, u2, from;
	int fd1 = fake_upstream(&u1), fd2 = fake_upstream(&u2);
	struct setup s;
	start(&s, 6, (char *[]){"--upstream", addr_arg(&u1), "--upstream", addr_arg(&u2), "--timeout",
				"2000"});
	cr_assert_eq(forward(&s, "www.example.com.", 1, 9, NULL, 0), 0);
	uint8_t q[4096], a[4096];
	int fds[2] = {fd1, fd2}, asked[2] = {0, 0};
	for (int round = 0; round < 4; round++) {
		int answered = 0;
		for (int k = 0; k < 2; k++) {
			size_t n = take_query(&s.loop, fds[k], q, &from, round < 2 ? 300 : 100);
			if (!n)
				continue;
			asked[k]++;
			size_t alen = answer_to(q, n, a, k == 0 ? WIRE_RCODE_REFUSED : WIRE_RCODE_SERVFAIL);
			if (k == 1) { /* OPT with EDE 6 (DNSSEC Bogus), text "bogus\x01". */
				static const uint8_t opt[] = {0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 12,
							      0, 15, 0, 8, 0, 6, 'b', 'o', 'g', 'u', 's', 1};
				memcpy(a + alen, opt, sizeof(opt));
				alen += sizeof(opt);
				wire_put16(a + 10, 1);
			}
			sendto(fds[k], a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
			answered = 1;
		}
		if (!answered && round >= 2)
			break;
	}
	pump(&s.loop, -1, 50);
	cr_expect_eq(asked[0], 1, "the first upstream was asked %d times", asked[0]);
	cr_expect_eq(asked[1], 1, "the second upstream was asked %d times", asked[1]);
	cr_expect_eq(got.failures, 1);
	cr_expect_eq(why_got.rejected, 1);
	cr_expect_eq(why_got.rcode, WIRE_RCODE_SERVFAIL);
	cr_expect_eq(why_got.ede_code, 6);
	cr_expect_str_eq(why_got.ede_text, "bogus?", "control characters are not passed on");
	close(fd1);
	close(fd2);
	stop(&s);
}

/* An upstream's EDE text is hostile input: at most UPSTREAM_EDE_TEXT_MAX octets reach a client,
 * printable ASCII only. */
Test(upstream, an_upstream_ede_text_is_cut_to_its_bound)
{
	struct sockaddr_storage up, from;
	int fd = fake_upstream(&up);
	struct setup s;
	start(&s, 2, (char *[]){"--upstream", addr_arg(&up)});
	cr_assert_eq(forward(&s, "www.example.com.", 1, 9, NULL, 0), 0);
	uint8_t q[4096], a[4096];
	size_t n = take_query(&s.loop, fd, q, &from, 1000);
	cr_assert_gt(n, 0);
	size_t alen = answer_to(q, n, a, WIRE_RCODE_SERVFAIL);
	size_t tl = 300;
	static const uint8_t opt[] = {0, 0, 41, 4, 0xD0, 0, 0, 0, 0};
	memcpy(a + alen, opt, sizeof(opt));
	wire_put16(a + alen + 9, (uint16_t)(4 + 2 + tl));
	wire_put16(a + alen + 11, 15);
	wire_put16(a + alen + 13, (uint16_t)(2 + tl));
	wire_put16(a + alen + 15, 9);
	memset(a + alen + 17, 'x', tl);
	alen += 17 + tl;
	wire_put16(a + 10, 1);
	sendto(fd, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	pump(&s.loop, -1, 100);
	cr_assert_eq(got.failures, 1);
	cr_expect_eq(why_got.ede_code, 9);
	cr_expect_eq(strlen(why_got.ede_text), UPSTREAM_EDE_TEXT_MAX);
	close(fd);
	stop(&s);
}

/* An error RCODE on a question that every upstream fails (one a client can ask at will) is an
 * answer in its real time: it does not push its upstream behind a slower one, or a client asking
 * failing questions would steer every client's choice of upstream. An upstream that fails a
 * question another one answers does lose preference (one that refuses everything does not stay
 * the first asked). */
Test(upstream, an_error_rcode_steers_only_when_another_answers)
{
	struct sockaddr_storage u1, u2, from;
	int fd1 = fake_upstream(&u1), fd2 = fake_upstream(&u2);
	struct setup s;
	start(&s, 4, (char *[]){"--upstream", addr_arg(&u1), "--upstream", addr_arg(&u2)});
	uint8_t q[4096], a[4096];
	/* Each answers once, the second slowly, so its RTT is the higher. */
	cr_assert_eq(forward(&s, "warm1.example.com.", 1, 7, NULL, 0), 0);
	size_t n = take_query(&s.loop, fd1, q, &from, 1000);
	cr_assert_gt(n, 0);
	size_t alen = answer_to(q, n, a, 0);
	sendto(fd1, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	pump(&s.loop, -1, 20);
	cr_assert_eq(forward(&s, "warm2.example.com.", 1, 8, NULL, 0), 0);
	n = take_query(&s.loop, fd2, q, &from, 1000);
	cr_assert_gt(n, 0, "the upstream of unknown RTT is tried");
	pump(&s.loop, -1, 60);
	alen = answer_to(q, n, a, 0);
	sendto(fd2, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	pump(&s.loop, -1, 20);
	memset(&got, 0, sizeof(got));
	cr_assert_eq(forward(&s, "fails.example.com.", 1, 9, NULL, 0), 0);
	n = take_query(&s.loop, fd1, q, &from, 1000);
	cr_assert_gt(n, 0, "the faster upstream is asked first");
	alen = answer_to(q, n, a, WIRE_RCODE_SERVFAIL);
	sendto(fd1, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	n = take_query(&s.loop, fd2, q, &from, 300);
	cr_assert_gt(n, 0);
	pump(&s.loop, -1, 60);
	alen = answer_to(q, n, a, WIRE_RCODE_SERVFAIL); /* Fails everywhere. */
	sendto(fd2, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	pump(&s.loop, -1, 50);
	cr_expect_eq(got.failures, 1);
	/* The next question still goes to the first upstream, the faster one. */
	cr_assert_eq(forward(&s, "next.example.com.", 1, 10, NULL, 0), 0);
	n = take_query(&s.loop, fd1, q, &from, 200);
	cr_assert_gt(n, 0, "an error on a question every upstream fails moved the choice");
	/* It refuses this one, which the second answers: now the second is preferred. */
	alen = answer_to(q, n, a, WIRE_RCODE_REFUSED);
	sendto(fd1, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	n = take_query(&s.loop, fd2, q, &from, 300);
	cr_assert_gt(n, 0);
	alen = answer_to(q, n, a, 0);
	sendto(fd2, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	pump(&s.loop, -1, 50);
	cr_assert_eq(forward(&s, "after.example.com.", 1, 11, NULL, 0), 0);
	n = take_query(&s.loop, fd2, q, &from, 200);
	cr_expect_gt(n, 0, "an upstream refusing what another answers kept its preference");
	close(fd1);
	close(fd2);
	stop(&s);
}

/* BADCOOKIE (RFC 7873 5.3) is about cookies, not the question: the same upstream is asked once
 * more, with the server cookie it just sent, and its answer taken. */
Test(upstream, badcookie_is_asked_again)
{
	struct sockaddr_storage up, from;
	int fd = fake_upstream(&up);
	struct setup s;
	start(&s, 2, (char *[]){"--upstream", addr_arg(&up)});
	cr_assert_eq(forward(&s, "www.example.com.", 1, 9, NULL, 0), 0);
	uint8_t q[4096], a[4096];
	size_t n = take_query(&s.loop, fd, q, &from, 1000);
	cr_assert_gt(n, 0);
	/* BADCOOKIE: 23, its low 4 bits in the header, the rest in the OPT's TTL. */
	size_t alen = answer_to(q, n, a, 23 & 0xF);
	static const uint8_t opt[] = {0, 0, 41, 4, 0xD0, 23 >> 4, 0, 0, 0, 0, 0};
	memcpy(a + alen, opt, sizeof(opt));
	alen += sizeof(opt);
	wire_put16(a + 10, 1);
	sendto(fd, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	n = take_query(&s.loop, fd, q, &from, 300);
	cr_assert_gt(n, 0, "not asked again after BADCOOKIE");
	alen = answer_to(q, n, a, 0);
	sendto(fd, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	pump(&s.loop, -1, 50);
	cr_expect_eq(got.calls, 1);
	cr_expect_eq(got.failures, 0);
	close(fd);
	stop(&s);
}

Test(upstream, lost_case_falls_back_without_0x20)
{
	struct sockaddr_storage up, from;
	int fd = fake_upstream(&up);
	struct setup s;
	start(&s, 4, (char *[]){"--upstream", addr_arg(&up), "--timeout", "800"});
	cr_assert_eq(forward(&s, "abcdefghijklmnop.example.", 0, 5, NULL, 0), 0);
	uint8_t q[4096], a[4096];
	size_t n = take_query(&s.loop, fd, q, &from, 1000);
	cr_assert_gt(n, 0);
	/* This upstream answers in lower case. */
	size_t alen = answer_to(q, n, a, 0);
	for (size_t k = WIRE_HEADER; a[k]; k++)
		a[k] = (uint8_t)tolower(a[k]);
	sendto(fd, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	/* After the attempt's timeout (200 ms), asked again in lower case. */
	n = take_query(&s.loop, fd, q, &from, 500);
	cr_assert_gt(n, 0);
	for (size_t k = WIRE_HEADER; q[k]; k++)
		cr_assert(!(q[k] >= 'A' && q[k] <= 'Z'), "the retry still has 0x20 case");
	alen = answer_to(q, n, a, 0);
	sendto(fd, a, alen, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in));
	pump(&s.loop, -1, 100);
	cr_expect_eq(got.calls, 1);
	cr_expect_eq(got.failures, 0);
	close(fd);
	stop(&s);
}

Test(upstream, a_full_pool_refuses_then_jostles_the_oldest)
{
	struct sockaddr_storage up;
	int fd = fake_upstream(&up);
	struct setup s;
	start(&s, 6, (char *[]){"--upstream", addr_arg(&up), "--outgoing-range", "16",
				"--jostle-timeout", "200"});
	char name[64];
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "n%d.example.", i);
		cr_assert_eq(forward(&s, name, 0, (uint16_t)i, NULL, 0), 0, "question %d", i);
	}
	cr_expect_eq(forward(&s, "late.example.", 0, 99, NULL, 0), -ENOBUFS);
	pump(&s.loop, -1, 250);
	cr_expect_eq(forward(&s, "late.example.", 0, 99, NULL, 0), 0);
	cr_expect_eq(got.failures, 1, "the oldest question was not given up");
	cr_expect_eq(upstream_stats(s.up)->jostled, 1);
	close(fd);
	stop(&s);
}

/* A cache refresh (a client without ops) joins no question already asked, takes at most an
 * eighth of the questions in flight, and never jostles a client's question. */
Test(upstream, refreshes_are_bounded_and_never_jostle)
{
	struct sockaddr_storage up;
	int fd = fake_upstream(&up);
	struct setup s;
	/* 16 sockets: 8 questions in flight, 1 of them a refresh. */
	start(&s, 6, (char *[]){"--upstream", addr_arg(&up), "--outgoing-range", "16",
				"--jostle-timeout", "0"});
	const struct client_ops *ops = s.client.ops;
	cr_assert_eq(forward(&s, "asked.example.", 0, 1, NULL, 0), 0);
	s.client.ops = NULL;
	cr_expect_eq(forward(&s, "asked.example.", 0, 2, NULL, 0), -EALREADY);
	cr_expect_eq(forward(&s, "r1.example.", 0, 3, NULL, 0), 0);
	cr_expect_eq(forward(&s, "r2.example.", 0, 4, NULL, 0), -ENOBUFS, "over an eighth");
	s.client.ops = ops;
	stop(&s);

	/* 32 sockets: 16 in flight, 2 refreshes; a full pool refuses the second. */
	start(&s, 6, (char *[]){"--upstream", addr_arg(&up), "--outgoing-range", "32",
				"--jostle-timeout", "0"});
	ops = s.client.ops;
	s.client.ops = NULL;
	cr_expect_eq(forward(&s, "r1.example.", 0, 3, NULL, 0), 0);
	s.client.ops = ops;
	char name[64];
	for (int i = 0; i < 15; i++) {
		snprintf(name, sizeof(name), "n%d.example.", i);
		cr_assert_eq(forward(&s, name, 0, (uint16_t)(10 + i), NULL, 0), 0, "question %d", i);
	}
	s.client.ops = NULL;
	cr_expect_eq(forward(&s, "r2.example.", 0, 40, NULL, 0), -ENOBUFS, "a full pool");
	cr_expect_eq(upstream_stats(s.up)->jostled, 0, "a refresh jostled a client's question");
	s.client.ops = ops;
	close(fd);
	stop(&s);
}
