/* The client report's bounds and hand-off: counts per (client, rule) merge across workers, an
 * IPv4-mapped address is the IPv4 one, a hand-off the reader has not taken yet keeps counting
 * in the worker's table, and a full table or batch counts the rest as dropped: every denial is
 * either reported or counted as dropped. */
#include "config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "resolver/observe/client_report.h"

TestSuite(client_report);

static struct name named(const char *text)
{
	struct name n;
	cr_assert_eq(name_from_text(&n, text, strlen(text)), 0, "%s", text);
	return n;
}

static struct sockaddr_storage v4(const char *text)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *a = (struct sockaddr_in *)&ss;
	a->sin_family = AF_INET;
	cr_assert_eq(inet_pton(AF_INET, text, &a->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *text)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
	a->sin6_family = AF_INET6;
	cr_assert_eq(inet_pton(AF_INET6, text, &a->sin6_addr), 1);
	return ss;
}

static void into_batch(void *ctx, const struct client_denial *d)
{
	client_report_batch_add(ctx, d);
}

static const struct client_denial *find(const struct client_report_batch *b, const char *addr,
					const char *rule)
{
	for (size_t i = 0; i < b->n; i++) {
		char text[64];
		client_report_addr_text(&b->e[i], text, sizeof(text));
		if (strcmp(text, addr) == 0 && strcmp(b->e[i].rule, rule) == 0)
			return &b->e[i];
	}
	return NULL;
}

Test(client_report, merges_across_workers)
{
	client_report_t *w1 = client_report_new(), *w2 = client_report_new();
	cr_assert(w1 && w2);
	struct name dl = named("dl.kaspersky.com"), up = named("a.b.kaspersky.com"),
		    other = named("x.blocked.test");
	struct sockaddr_storage a = v4("198.18.0.2"), mapped = v6("::ffff:198.18.0.2"),
				b6 = v6("2001:db8::7");
	client_report_add(w1, &a, 0, &dl, 2, 100);
	client_report_add(w1, &a, 0, &up, 2, 105);     /* same rule, kaspersky.com */
	client_report_add(w2, &mapped, 1, &dl, 2, 90); /* the same client, another worker, TCP */
	client_report_add(w2, &a, 0, &other, 2, 101);
	client_report_add(w2, &b6, 0, &dl, 2, 103);
	client_report_publish(w1);
	client_report_publish(w2);
	struct client_report_batch b;
	cr_assert_eq(client_report_batch_init(&b, 64), 0);
	cr_assert_eq(client_report_take(w1, into_batch, &b), 1);
	cr_assert_eq(client_report_take(w2, into_batch, &b), 3);
	cr_assert_eq(b.n, 3);
	const struct client_denial *k = find(&b, "198.18.0.2", "kaspersky.com");
	cr_assert(k);
	cr_assert_eq(k->count, 3);
	cr_assert_eq(k->tcp, 1);
	cr_assert_eq(k->first, 90);
	cr_assert_eq(k->last, 105);
	k = find(&b, "198.18.0.2", "blocked.test");
	cr_assert(k && k->count == 1);
	k = find(&b, "2001:db8::7", "kaspersky.com");
	cr_assert(k && k->count == 1 && k->first == 103);
	/* Taken: nothing is handed twice. */
	cr_assert_eq(client_report_take(w1, into_batch, &b), 0);
	client_report_batch_clear(&b);
	cr_assert_eq(b.n, 0);
	client_report_batch_free(&b);
	client_report_free(w1);
	client_report_free(w2);
}

Test(client_report, untaken_handoff_keeps_counting)
{
	client_report_t *w = client_report_new();
	cr_assert(w);
	struct name dl = named("dl.kaspersky.com");
	struct sockaddr_storage a = v4("198.18.0.2");
	client_report_add(w, &a, 0, &dl, 2, 1);
	client_report_publish(w);
	/* The reader has not taken it: the next denials stay in the worker's table. */
	client_report_add(w, &a, 0, &dl, 2, 2);
	client_report_add(w, &a, 0, &dl, 2, 3);
	client_report_publish(w);
	struct client_report_batch b;
	cr_assert_eq(client_report_batch_init(&b, 8), 0);
	client_report_take(w, into_batch, &b);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.e[0].count, 1);
	client_report_publish(w);
	client_report_take(w, into_batch, &b);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.e[0].count, 3);
	cr_assert_eq(b.e[0].last, 3);
	client_report_batch_free(&b);
	client_report_free(w);
}

/* A spoofing flood of distinct sources: the table holds what it can, the rest is dropped and
 * counted, and nothing is both. */
Test(client_report, full_table_drops_and_counts)
{
	client_report_t *w = client_report_new();
	cr_assert(w);
	struct name dl = named("dl.kaspersky.com");
	const unsigned total = CLIENT_REPORT_SLOTS * 3;
	for (unsigned i = 0; i < total; i++) {
		struct sockaddr_storage a = {0};
		struct sockaddr_in *in = (struct sockaddr_in *)&a;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(0xC6120000u + i); /* 198.18.x.y */
		client_report_add(w, &a, 0, &dl, 2, i);
	}
	client_report_publish(w);
	struct client_report_batch b;
	cr_assert_eq(client_report_batch_init(&b, CLIENT_REPORT_SLOTS), 0);
	size_t taken = client_report_take(w, into_batch, &b);
	uint64_t counted = 0;
	for (size_t i = 0; i < b.n; i++)
		counted += b.e[i].count;
	cr_assert_leq(taken, CLIENT_REPORT_SLOTS);
	cr_assert_gt(client_report_dropped(w), 0);
	cr_assert_eq(counted + client_report_dropped(w), total);
	/* The batch is bounded too: a second table's worth of new clients is dropped there. */
	client_report_t *w2 = client_report_new();
	cr_assert(w2);
	struct sockaddr_storage c = v4("198.19.0.1");
	client_report_add(w2, &c, 0, &dl, 2, 5);
	client_report_publish(w2);
	size_t before = b.n;
	client_report_take(w2, into_batch, &b);
	cr_assert(b.n == before + 1 || (b.n == b.cap && b.dropped == 1));
	client_report_batch_free(&b);
	client_report_free(w);
	client_report_free(w2);
}
