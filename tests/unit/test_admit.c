/* Admission: the access list (defaults, longest prefix, the operator's entries), the rate limit
 * with slip per client prefix, and the per-client share of the pending pool, driven directly. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "resolver/query/admit.h"
#include "resolver/base/options.h"

TestSuite(admit);

static struct sockaddr_storage addr(const char *s)
{
	struct sockaddr_storage ss;
	cr_assert_eq(options_parse_addr(s, 53, &ss), 0, "%s", s);
	return ss;
}

/* Options with the defaults, then argv. */
static struct options opts(int argc, char **argv)
{
	struct options o;
	char err[256];
	char *full[32] = {"embargo", "--upstream", "192.0.2.53"};
	for (int i = 0; i < argc; i++)
		full[3 + i] = argv[i];
	cr_assert_eq(options_parse(&o, 3 + argc, full, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	return o;
}

static enum options_acl access_of(admit_t *a, const char *s)
{
	struct sockaddr_storage ss = addr(s);
	return admit_access(a, &ss);
}

Test(admit, default_networks_answered_others_refused)
{
	struct options o = opts(0, NULL);
	admit_t *a = admit_new(&o);
	cr_assert_not_null(a);
	const char *allowed[] = {"127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.254",
				 "192.168.1.1", "100.64.0.1", "100.127.255.254", "169.254.1.1", "::1",
				 "fe80::1", "fd00::1", "fc12::5"};
	for (size_t i = 0; i < sizeof(allowed) / sizeof(*allowed); i++)
		cr_expect_eq(access_of(a, allowed[i]), OPTIONS_ACL_ALLOW, "%s", allowed[i]);
	const char *refused[] = {"8.8.8.8", "172.32.0.1", "172.15.255.255", "100.128.0.1",
				 "198.18.0.2", "192.169.0.1", "2001:db8::1", "::2", "fec0::1"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++)
		cr_expect_eq(access_of(a, refused[i]), OPTIONS_ACL_REFUSE, "%s", refused[i]);
	/* Asked again: the memo gives the same answers. */
	cr_expect_eq(access_of(a, "8.8.8.8"), OPTIONS_ACL_REFUSE);
	cr_expect_eq(access_of(a, "10.1.2.3"), OPTIONS_ACL_ALLOW);
	admit_free(a);
}

Test(admit, longest_prefix_wins_and_operator_beats_default)
{
	char *argv[] = {"--allow", "198.18.0.0/15", "--deny", "198.18.5.0/24", "--allow-snoop",
			"198.18.5.7", "--refuse", "10.0.0.0/8", "--deny", "0.0.0.0/0"};
	struct options o = opts(10, argv);
	admit_t *a = admit_new(&o);
	cr_expect_eq(access_of(a, "198.19.1.1"), OPTIONS_ACL_ALLOW);
	cr_expect_eq(access_of(a, "198.18.5.1"), OPTIONS_ACL_DROP);
	cr_expect_eq(access_of(a, "198.18.5.7"), OPTIONS_ACL_SNOOP);
	/* Same length as the default 10.0.0.0/8 allow: the operator's entry wins. */
	cr_expect_eq(access_of(a, "10.9.9.9"), OPTIONS_ACL_REFUSE);
	/* And the operator's 0.0.0.0/0 beats the default's refusal of the rest. */
	cr_expect_eq(access_of(a, "8.8.8.8"), OPTIONS_ACL_DROP);
	cr_expect_eq(access_of(a, "127.0.0.1"), OPTIONS_ACL_ALLOW);
	cr_expect_eq(access_of(a, "2001:db8::1"), OPTIONS_ACL_REFUSE);
	admit_free(a);
}

Test(admit, rate_limit_per_prefix_with_slip)
{
	char *argv[] = {"--ratelimit", "10", "--ratelimit-slip", "3"};
	struct options o = opts(4, argv);
	admit_t *a = admit_new(&o);
	struct sockaddr_storage c1 = addr("198.18.1.7"), c2 = addr("198.18.1.200"),
				other = addr("198.18.2.7"), lo = addr("127.0.0.1");
	uint64_t t = 5000;
	unsigned ok = 0, slip = 0, drop = 0;
	for (int i = 0; i < 40; i++) {
		/* Two addresses of one /24 share its budget. */
		enum admit_rate r = admit_rate(a, i % 2 ? &c1 : &c2, t);
		ok += r == ADMIT_RATE_OK;
		slip += r == ADMIT_RATE_SLIP;
		drop += r == ADMIT_RATE_DROP;
	}
	cr_expect_eq(ok, 10);
	cr_expect_eq(slip, 10); /* Every third of the 30 over the limit. */
	cr_expect_eq(drop, 20);
	/* Another prefix and loopback are not limited meanwhile. */
	for (int i = 0; i < 10; i++)
		cr_expect_eq(admit_rate(a, &other, t), ADMIT_RATE_OK);
	for (int i = 0; i < 1000; i++)
		cr_expect_eq(admit_rate(a, &lo, t), ADMIT_RATE_OK);
	/* The next second starts afresh. */
	cr_expect_eq(admit_rate(a, &c1, t + 1000), ADMIT_RATE_OK);
	cr_expect_eq(admit_stats(a)->rate_slipped, 10);
	cr_expect_eq(admit_stats(a)->rate_dropped, 20);
	admit_free(a);
}

Test(admit, rate_limit_ipv6_prefix_and_off)
{
	char *argv[] = {"--ratelimit", "2", "--ratelimit-prefix", "24/56", "--ratelimit-slip", "0"};
	struct options o = opts(6, argv);
	admit_t *a = admit_new(&o);
	struct sockaddr_storage x = addr("2001:db8:0:1::1"), y = addr("2001:db8:0:ff::2"),
				z = addr("2001:db8:0:100::1");
	cr_expect_eq(admit_rate(a, &x, 0), ADMIT_RATE_OK);
	cr_expect_eq(admit_rate(a, &y, 0), ADMIT_RATE_OK); /* Same /56. */
	cr_expect_eq(admit_rate(a, &x, 0), ADMIT_RATE_DROP); /* Slip 0: never truncated. */
	cr_expect_eq(admit_rate(a, &z, 0), ADMIT_RATE_OK);   /* Another /56. */
	admit_free(a);

	char *off[] = {"--ratelimit", "0"};
	o = opts(2, off);
	a = admit_new(&o);
	for (int i = 0; i < 10000; i++)
		cr_expect_eq(admit_rate(a, &x, 0), ADMIT_RATE_OK);
	admit_free(a);
}

/* --ratelimit-prefix other than the default: 16/48 makes every /16 (every /48) one client,
 * so two addresses in different /24s of one /16 share a budget, and another /16 has its own. */
Test(admit, rate_limit_prefix_setting)
{
	char *argv[] = {"--ratelimit", "2", "--ratelimit-prefix", "16/48", "--ratelimit-slip", "0"};
	struct options o = opts(6, argv);
	admit_t *a = admit_new(&o);
	struct sockaddr_storage x = addr("198.18.1.1"), y = addr("198.18.200.2"),
				z = addr("198.19.1.1"), v6a = addr("2001:db8:0:1::1"),
				v6b = addr("2001:db8:0:ff00::1"), v6c = addr("2001:db8:1::1");
	cr_expect_eq(admit_rate(a, &x, 0), ADMIT_RATE_OK);
	cr_expect_eq(admit_rate(a, &y, 0), ADMIT_RATE_OK);
	cr_expect_eq(admit_rate(a, &x, 0), ADMIT_RATE_DROP, "198.18.1.1 and 198.18.200.2: one /16");
	cr_expect_eq(admit_rate(a, &y, 0), ADMIT_RATE_DROP);
	cr_expect_eq(admit_rate(a, &z, 0), ADMIT_RATE_OK, "198.19/16 is another client");
	cr_expect_eq(admit_rate(a, &v6a, 0), ADMIT_RATE_OK);
	cr_expect_eq(admit_rate(a, &v6b, 0), ADMIT_RATE_OK);
	cr_expect_eq(admit_rate(a, &v6a, 0), ADMIT_RATE_DROP, "one /48");
	cr_expect_eq(admit_rate(a, &v6c, 0), ADMIT_RATE_OK, "2001:db8:1::/48 is another client");
	admit_free(a);
}

Test(admit, pending_share_is_capped_and_given_back)
{
	char *argv[] = {"--client-pending", "3"};
	struct options o = opts(2, argv);
	admit_t *a = admit_new(&o);
	struct sockaddr_storage c = addr("10.0.0.1"), d = addr("10.0.0.2"),
				v6a = addr("2001:db8::1"), v6b = addr("2001:db8::ffff");
	for (int i = 0; i < 3; i++)
		cr_expect_eq(admit_pending_take(a, &c), 0);
	cr_expect_eq(admit_pending_take(a, &c), -EDQUOT);
	cr_expect_eq(admit_pending_take(a, &d), 0);
	admit_pending_give(a, &c);
	cr_expect_eq(admit_pending_held(a, &c), 2);
	cr_expect_eq(admit_pending_take(a, &c), 0);
	/* An IPv6 host's whole /64 is one client. */
	for (int i = 0; i < 3; i++)
		cr_expect_eq(admit_pending_take(a, i % 2 ? &v6a : &v6b), 0);
	cr_expect_eq(admit_pending_take(a, &v6a), -EDQUOT);
	cr_expect_eq(admit_stats(a)->pending_refused, 2);
	admit_free(a);
}

/* Thousands of clients come and go in every order: the open-addressing table keeps every
 * count exact (backward-shift deletion must not lose an entry behind a freed slot). */
Test(admit, pending_share_survives_churn)
{
	char *argv[] = {"--client-pending", "2"};
	struct options o = opts(2, argv);
	admit_t *a = admit_new(&o);
	enum { N = 4000 };
	static unsigned held[N];
	memset(held, 0, sizeof(held));
	unsigned seed = 12345;
	for (int step = 0; step < 200000; step++) {
		seed = seed * 1103515245 + 12345;
		unsigned i = (seed >> 8) % N;
		char text[32];
		snprintf(text, sizeof(text), "10.%u.%u.1", i / 256, i % 256);
		struct sockaddr_storage ss = addr(text);
		if ((seed >> 4) & 1) {
			int rc = admit_pending_take(a, &ss);
			cr_assert_eq(rc, held[i] < 2 ? 0 : -EDQUOT, "step %d client %u", step, i);
			if (rc == 0)
				held[i]++;
		} else if (held[i]) {
			admit_pending_give(a, &ss);
			held[i]--;
		}
		cr_assert_eq(admit_pending_held(a, &ss), held[i], "step %d client %u", step, i);
	}
	for (unsigned i = 0; i < N; i++) {
		char text[32];
		snprintf(text, sizeof(text), "10.%u.%u.1", i / 256, i % 256);
		struct sockaddr_storage ss = addr(text);
		cr_assert_eq(admit_pending_held(a, &ss), held[i], "client %u", i);
	}
	admit_free(a);
}
