/* The process's table of upstreams that send cookies: found without the lock after an add, off
 * with a new generation, and bounded (a full table adds nothing and says so with NULL). */
#include "config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "resolver/upstream/cookie_seen.h"

TestSuite(cookie_seen);

static struct sockaddr_storage addr(unsigned n)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	in->sin_port = htons(53);
	in->sin_addr.s_addr = htonl(0xC0000200u + n); /* 192.0.2.n */
	return ss;
}

Test(cookie_seen, found_by_every_worker_and_turned_off_with_a_new_generation)
{
	struct sockaddr_storage a = addr(1), b = addr(2);
	unsigned scanned = 0;
	cr_expect_null(cookie_seen_find(&a, &scanned));
	struct cookie_seen *e = cookie_seen_add(&a);
	cr_assert_not_null(e);
	cr_expect_eq(cookie_seen_add(&a), e, "one entry per upstream");
	cr_expect_eq(cookie_seen_find(&a, &scanned), e, "another worker finds it");
	unsigned other = 0;
	cr_expect_null(cookie_seen_find(&b, &other));
	cr_expect_not(cookie_seen_is_on(e));
	cookie_seen_on(e);
	cr_expect(cookie_seen_is_on(e));
	uint32_t gen = cookie_seen_gen(e);
	cr_expect_eq(cookie_seen_off(e), gen + 1);
	cr_expect_not(cookie_seen_is_on(e));
	cr_expect_eq(cookie_seen_gen(e), gen + 1);
}

Test(cookie_seen, a_full_table_adds_nothing)
{
	for (unsigned n = 0; n < COOKIE_SEEN_MAX; n++) {
		struct sockaddr_storage a = addr(n);
		cr_assert_not_null(cookie_seen_add(&a), "entry %u", n);
	}
	struct sockaddr_storage more = addr(COOKIE_SEEN_MAX);
	cr_expect_null(cookie_seen_add(&more));
	struct sockaddr_storage first = addr(0);
	cr_expect_not_null(cookie_seen_add(&first), "those in it are still found");
}
