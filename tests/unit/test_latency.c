/* Latency histograms: each observation lands in the first bucket whose bound it does not
 * exceed (a bound itself included), beyond the last bound in +Inf, and the sum adds up. */
#include "config.h"

#include <criterion/criterion.h>

#include "resolver/observe/latency.h"

TestSuite(latency);

static const uint64_t BOUND[] = {
#define B(ns) ns##ull,
	LATENCY_BOUNDS_NS(B)
#undef B
};

Test(latency, buckets_by_bound)
{
	static struct latency_hist h;
	cr_assert_eq(LATENCY_BUCKETS, sizeof(BOUND) / sizeof(BOUND[0]) + 1);
	latency_observe(&h, 0);                  /* bucket 0 */
	latency_observe(&h, BOUND[0]);           /* bucket 0: a bound is in its own bucket */
	latency_observe(&h, BOUND[0] + 1);       /* bucket 1 */
	latency_observe(&h, BOUND[3]);           /* bucket 3 */
	latency_observe(&h, BOUND[LATENCY_BUCKETS - 2] + 1); /* +Inf */
	latency_observe(&h, UINT64_C(1) << 62);  /* +Inf */
	uint64_t b[LATENCY_BUCKETS] = {0}, sum = 0;
	latency_add(&h, b, &sum);
	cr_assert_eq(b[0], 2);
	cr_assert_eq(b[1], 1);
	cr_assert_eq(b[2], 0);
	cr_assert_eq(b[3], 1);
	cr_assert_eq(b[LATENCY_BUCKETS - 1], 2);
	cr_assert_eq(sum, BOUND[0] * 2 + 1 + BOUND[3] + BOUND[LATENCY_BUCKETS - 2] + 1 +
				  (UINT64_C(1) << 62));
	/* Adding a second time doubles (a scrape sums the workers' histograms). */
	latency_add(&h, b, &sum);
	cr_assert_eq(b[0], 4);
	latency_clear(&h);
	uint64_t c[LATENCY_BUCKETS] = {0}, csum = 0;
	latency_add(&h, c, &csum);
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++)
		cr_assert_eq(c[i], 0);
	cr_assert_eq(csum, 0);
}

Test(latency, bounds_increase)
{
	for (unsigned i = 1; i < LATENCY_BUCKETS - 1; i++)
		cr_assert_gt(BOUND[i], BOUND[i - 1]);
}
