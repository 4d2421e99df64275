/* The packet cache: keys, TTL rules (RFC 2308), patching on a hit, expiry and the size bound. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>

#include "ldns_util.h"
#include "resolver/query/cache.h"

TestSuite(cache);

static struct wire_query parse(const uint8_t *wire, size_t len)
{
	struct wire_query q;
	cr_assert_eq(wire_parse_query(wire, len, &q), 0);
	return q;
}

Test(cache, key_ignores_case_but_not_type_or_do)
{
	size_t l1, l2, l3, l4;
	uint8_t *a = make_query("Example.COM.", LDNS_RR_TYPE_A, 1, 1, &l1);
	uint8_t *b = make_query("example.com.", LDNS_RR_TYPE_A, 1, 2, &l2);
	uint8_t *c = make_query("example.com.", LDNS_RR_TYPE_AAAA, 1, 3, &l3);
	uint8_t *d = make_query("example.com.", LDNS_RR_TYPE_A, 2, 4, &l4);
	struct wire_query qa = parse(a, l1), qb = parse(b, l2), qc = parse(c, l3), qd = parse(d, l4);
	struct cache_key ka, kb, kc, kd;
	cache_t *cache = cache_new(1 << 20, 1);
	cache_key_make(cache, &ka, &qa);
	cache_key_make(cache, &kb, &qb);
	cache_key_make(cache, &kc, &qc);
	cache_key_make(cache, &kd, &qd);
	cache_free(cache);
	cr_expect_eq(ka.len, kb.len);
	cr_expect_arr_eq(ka.bytes, kb.bytes, ka.len);
	cr_expect_eq(ka.hash, kb.hash);
	cr_expect_neq(ka.hash, kc.hash);
	cr_expect_neq(ka.hash, kd.hash);
	free(a);
	free(b);
	free(c);
	free(d);
}

Test(cache, ttl_rules)
{
	size_t len;
	const char *pos[] = {"a|x.example. 300 IN CNAME y.example.", "a|y.example. 60 IN A 192.0.2.1",
			     "n|example. 3600 IN NS ns.example."};
	uint8_t *r = make_reply("x.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, pos, 3, &len);
	cr_expect_eq(cache_ttl(r, len), 60, "the lowest TTL");
	cr_expect(cache_has_chain(r, len));
	r[2] |= WIRE_FLAG_TC >> 8;
	cr_expect_eq(cache_ttl(r, len), 0, "truncated answers are not cached");
	free(r);

	const char *neg[] = {"n|example. 900 IN SOA ns.example. h.example. 1 2 3 4 120"};
	r = make_reply("x.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NXDOMAIN, neg, 1, &len);
	cr_expect_eq(cache_ttl(r, len), 120, "min(SOA TTL, MINIMUM)");
	cr_expect_not(cache_has_chain(r, len));
	free(r);
	const char *neg2[] = {"n|example. 30 IN SOA ns.example. h.example. 1 2 3 4 120"};
	r = make_reply("x.example.", LDNS_RR_TYPE_AAAA, LDNS_RCODE_NOERROR, neg2, 1, &len);
	cr_expect_eq(cache_ttl(r, len), 30, "NODATA, SOA TTL lower");
	free(r);
	r = make_reply("x.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NXDOMAIN, NULL, 0, &len);
	cr_expect_eq(cache_ttl(r, len), 0, "no SOA, no negative caching");
	free(r);
	r = make_reply("x.example.", LDNS_RR_TYPE_A, LDNS_RCODE_SERVFAIL, NULL, 0, &len);
	cr_expect_eq(cache_ttl(r, len), 0);
	free(r);
	const char *big[] = {"a|x.example. 999999 IN A 192.0.2.1"};
	r = make_reply("x.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, big, 1, &len);
	cr_expect_eq(cache_ttl(r, len), CACHE_MAX_TTL);
	free(r);
}

Test(cache, hit_is_patched_for_the_client)
{
	cache_t *c = cache_new(1 << 20, 4);
	size_t rlen, qlen;
	const char *rrs[] = {"a|www.example. 300 IN A 192.0.2.1", "n|example. 100 IN NS ns.example."};
	uint8_t *reply = make_reply("www.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, rrs, 2, &rlen);
	uint8_t *q1 = make_query("www.example.", LDNS_RR_TYPE_A, 0, 1, &qlen);
	struct wire_query q = parse(q1, qlen);
	struct cache_key k;
	cache_key_make(c, &k, &q);
	cr_assert_eq(cache_put(c, &k, reply, rlen, cache_ttl(reply, rlen), 1000), 0);

	size_t q2len;
	uint8_t *q2 = make_query("WWW.EXAMPLE.", LDNS_RR_TYPE_A, 0, 0x4242, &q2len);
	struct wire_query q2p = parse(q2, q2len);
	cache_key_make(c, &k, &q2p);
	uint8_t out[4096];
	struct cache_hit hit;
	int n = cache_get(c, &k, 1000 + 30500, q2, &q2p, out, sizeof(out), &hit, UINT32_MAX, false);
	cr_assert_eq(n, (int)rlen);
	cr_expect_not(hit.has_chain);
	cr_expect_not(hit.stale);
	cr_expect_not(hit.prefetch, "prefetch is off by default");
	ldns_pkt *pkt = NULL;
	cr_assert_eq(ldns_wire2pkt(&pkt, out, (size_t)n), LDNS_STATUS_OK);
	cr_expect_eq(ldns_pkt_id(pkt), 0x4242);
	cr_expect_arr_eq(out + 12, q2 + 12, 14, "the client's question case");
	cr_expect_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(pkt), 0)), 300 - 30);
	cr_expect_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_authority(pkt), 0)), 100 - 30);
	ldns_pkt_free(pkt);

	/* Expired: the lowest TTL (100 s) has passed. */
	cr_expect_eq(cache_get(c, &k, 1000 + 100000, q2, &q2p, out, sizeof(out), &hit, UINT32_MAX, true),
		     -ENOENT);
	struct cache_usage u;
	cache_usage(c, &u);
	cr_expect_eq(u.entries, 0, "without serve-stale an expired entry is dropped when met");
	free(reply);
	free(q1);
	free(q2);
	cache_free(c);
	cache_free(NULL);
}

/* Workers share the cache, each with its own loop clock: an entry stored by a worker whose clock
 * is a few milliseconds ahead is read by one behind it. Its age is zero, never a wrapped huge
 * number that ages every TTL to 0. */
Test(cache, an_entry_from_a_clock_ahead_is_new)
{
	cache_t *c = cache_new(1 << 20, 2);
	size_t rlen, qlen;
	const char *rrs[] = {"a|www.example. 300 IN A 192.0.2.1"};
	uint8_t *reply = make_reply("www.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, rrs, 1, &rlen);
	uint8_t *q1 = make_query("www.example.", LDNS_RR_TYPE_A, 0, 1, &qlen);
	struct wire_query q = parse(q1, qlen);
	struct cache_key k;
	cache_key_make(c, &k, &q);
	cr_assert_eq(cache_put(c, &k, reply, rlen, 300, 5000), 0, "stored at 5000 ms (worker A)");
	uint8_t out[4096];
	struct cache_hit hit;
	int n = cache_get(c, &k, 4999, q1, &q, out, sizeof(out), &hit, UINT32_MAX, false);
	cr_assert_eq(n, (int)rlen, "read at 4999 ms (worker B, 1 ms behind)");
	cr_expect_not(hit.stale);
	ldns_pkt *pkt = NULL;
	cr_assert_eq(ldns_wire2pkt(&pkt, out, (size_t)n), LDNS_STATUS_OK);
	cr_expect_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(pkt), 0)), 300);
	ldns_pkt_free(pkt);
	free(reply);
	free(q1);
	cache_free(c);
}

Test(cache, stays_within_its_size)
{
	const size_t max = 64 * 1024;
	cache_t *c = cache_new(max, 2);
	for (int i = 0; i < 5000; i++) {
		char name[64];
		snprintf(name, sizeof(name), "n%d.example.", i);
		char rr[128];
		snprintf(rr, sizeof(rr), "a|%s 300 IN A 192.0.2.1", name);
		const char *rrs[] = {rr};
		size_t rlen, qlen;
		uint8_t *reply = make_reply(name, LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, rrs, 1, &rlen);
		uint8_t *query = make_query(name, LDNS_RR_TYPE_A, 0, 1, &qlen);
		struct wire_query q = parse(query, qlen);
		struct cache_key k;
		cache_key_make(c, &k, &q);
		cr_assert_eq(cache_put(c, &k, reply, rlen, 300, 0), 0);
		free(reply);
		free(query);
	}
	struct cache_usage u;
	cache_usage(c, &u);
	cr_expect_leq(u.bytes, max);
	cr_expect_gt(u.entries, 100);
	cr_expect_lt(u.entries, 5000);
	cr_expect_eq(u.evictions, 5000 - u.entries, "every entry not held was evicted by LRU");
	cache_free(c);
}

Test(cache, a_live_entry_is_never_replaced)
{
	cache_t *c = cache_new(1 << 20, 1);
	size_t len1, len2, qlen;
	const char *good[] = {"a|www.example. 300 IN A 192.0.2.1"};
	const char *forged[] = {"a|www.example. 86400 IN A 6.6.6.6"};
	uint8_t *r1 = make_reply("www.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, good, 1, &len1);
	uint8_t *r2 = make_reply("www.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, forged, 1, &len2);
	uint8_t *q1 = make_query("www.example.", LDNS_RR_TYPE_A, 0, 1, &qlen);
	struct wire_query q = parse(q1, qlen);
	struct cache_key k;
	cache_key_make(c, &k, &q);
	cr_assert_eq(cache_put(c, &k, r1, len1, 300, 1000), 0);
	cr_expect_eq(cache_put(c, &k, r2, len2, 86400, 2000), -EEXIST);
	uint8_t out[4096];
	struct cache_hit hit;
	int n = cache_get(c, &k, 3000, q1, &q, out, sizeof(out), &hit, UINT32_MAX, false);
	cr_assert_eq(n, (int)len1);
	cr_expect_eq(memcmp(out + n - 4, "\300\000\002\001", 4), 0, "the live answer was replaced");
	/* Once it has expired, a new answer takes its place. */
	cr_expect_eq(cache_put(c, &k, r2, len2, 86400, 1000 + 300001), 0);
	free(r1);
	free(r2);
	free(q1);
	cache_free(c);
}

Test(cache, keys_are_hashed_under_a_secret)
{
	size_t qlen;
	uint8_t *q1 = make_query("www.example.", LDNS_RR_TYPE_A, 0, 1, &qlen);
	struct wire_query q = parse(q1, qlen);
	cache_t *a = cache_new(1 << 16, 1), *b = cache_new(1 << 16, 1);
	struct cache_key ka, kb;
	cache_key_make(a, &ka, &q);
	cache_key_make(b, &kb, &q);
	cr_expect_neq(ka.hash, kb.hash, "two caches hash alike: the key is not secret");
	free(q1);
	cache_free(a);
	cache_free(b);
}

/* RFC 8767: an expired entry is kept for the stale window, handed out only to a caller that asks
 * for it (with TTL 30), and dropped after the window. */
Test(cache, stale_answers_within_the_window)
{
	cache_t *c = cache_new(1 << 20, 1);
	cache_configure(c, 3600, false, 2000);
	size_t rlen, qlen;
	const char *rrs[] = {"a|www.example. 60 IN A 192.0.2.1"};
	uint8_t *reply = make_reply("www.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, rrs, 1, &rlen);
	uint8_t *q1 = make_query("www.example.", LDNS_RR_TYPE_A, 0, 7, &qlen);
	struct wire_query q = parse(q1, qlen);
	struct cache_key k;
	cache_key_make(c, &k, &q);
	cr_assert_eq(cache_put(c, &k, reply, rlen, 60, 0), 0);
	uint8_t out[4096];
	struct cache_hit hit;
	cr_expect_eq(cache_get(c, &k, 61000, q1, &q, out, sizeof(out), &hit, 300, false), -ESTALE);
	int n = cache_get(c, &k, 61000, q1, &q, out, sizeof(out), &hit, 300, true);
	cr_assert_eq(n, (int)rlen);
	cr_expect(hit.stale);
	ldns_pkt *pkt = NULL;
	cr_assert_eq(ldns_wire2pkt(&pkt, out, (size_t)n), LDNS_STATUS_OK);
	cr_expect_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(pkt), 0)), CACHE_STALE_TTL);
	ldns_pkt_free(pkt);
	/* A client TTL cap below 30 s holds for stale answers too. */
	n = cache_get(c, &k, 61000, q1, &q, out, sizeof(out), &hit, 5, true);
	cr_assert_eq(ldns_wire2pkt(&pkt, out, (size_t)n), LDNS_STATUS_OK);
	cr_expect_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(pkt), 0)), 5);
	ldns_pkt_free(pkt);
	/* Past the window: gone. */
	cr_expect_eq(cache_get(c, &k, 60000 + 3600000, q1, &q, out, sizeof(out), &hit, 300, true),
		     -ENOENT);
	struct cache_usage u;
	cache_usage(c, &u);
	cr_expect_eq(u.entries, 0);
	free(reply);
	free(q1);
	cache_free(c);
}

/* Prefetch: a hit in the last tenth of the TTL hands out one refresh; only while it may be under
 * way may an answer replace the live entry, and a refresh that never came is handed out again. */
Test(cache, prefetch_once_in_the_last_tenth)
{
	cache_t *c = cache_new(1 << 20, 1);
	cache_configure(c, 0, true, 2000);
	size_t len1, len2, qlen;
	const char *old[] = {"a|www.example. 100 IN A 192.0.2.1"};
	const char *fresh[] = {"a|www.example. 100 IN A 192.0.2.2"};
	uint8_t *r1 = make_reply("www.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, old, 1, &len1);
	uint8_t *r2 = make_reply("www.example.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, fresh, 1, &len2);
	uint8_t *q1 = make_query("www.example.", LDNS_RR_TYPE_A, 0, 7, &qlen);
	struct wire_query q = parse(q1, qlen);
	struct cache_key k;
	cache_key_make(c, &k, &q);
	cr_assert_eq(cache_put(c, &k, r1, len1, 100, 0), 0);
	uint8_t out[4096];
	struct cache_hit hit;
	cr_assert_gt(cache_get(c, &k, 89000, q1, &q, out, sizeof(out), &hit, 300, false), 0);
	cr_expect_not(hit.prefetch, "11 s of 100 left: not yet");
	cr_expect_eq(cache_put(c, &k, r2, len2, 100, 89000), -EEXIST);
	cr_assert_gt(cache_get(c, &k, 91000, q1, &q, out, sizeof(out), &hit, 300, false), 0);
	cr_expect(hit.prefetch, "9 s of 100 left: refresh");
	cr_assert_gt(cache_get(c, &k, 92000, q1, &q, out, sizeof(out), &hit, 300, false), 0);
	cr_expect_not(hit.prefetch, "one refresh at a time");
	cr_expect_eq(cache_put(c, &k, r2, len2, 100, 93000), -EEXIST, "the refresh's time is over");
	cr_assert_gt(cache_get(c, &k, 93500, q1, &q, out, sizeof(out), &hit, 300, false), 0);
	cr_expect(hit.prefetch, "a refresh that never came is handed out again");
	cr_expect_eq(cache_put(c, &k, r2, len2, 100, 94000), 0, "the refresh replaces the entry");
	int n = cache_get(c, &k, 95000, q1, &q, out, sizeof(out), &hit, 300, false);
	cr_assert_eq(n, (int)len2);
	cr_expect_eq(memcmp(out + n - 4, "\300\000\002\002", 4), 0);
	cr_expect_not(hit.prefetch);
	free(r1);
	free(r2);
	free(q1);
	cache_free(c);
}
