/* The memory of failed questions: remembered for FAILCACHE_TTL_MS, per question (hash), in a
 * fixed table where a flood only evicts older failures. */
#include "config.h"

#include <criterion/criterion.h>
#include <string.h>

#include "resolver/query/failcache.h"

TestSuite(failcache);

Test(failcache, remembered_for_its_time_and_per_question)
{
	failcache_t *f = failcache_new();
	cr_assert_not_null(f);
	struct upstream_failure why = {.rejected = 1, .rcode = 2, .ede_code = 6};
	strcpy(why.ede_text, "bogus");
	cr_expect_null(failcache_get(f, 42, 1000), "nothing yet");
	failcache_put(f, 42, &why, 1000);
	const struct upstream_failure *got = failcache_get(f, 42, 1000);
	cr_assert_not_null(got);
	cr_expect_eq(got->ede_code, 6);
	cr_expect_str_eq(got->ede_text, "bogus");
	cr_expect_not_null(failcache_get(f, 42, 1000 + FAILCACHE_TTL_MS - 1));
	cr_expect_null(failcache_get(f, 42, 1000 + FAILCACHE_TTL_MS), "forgotten after its time");
	cr_expect_null(failcache_get(f, 43, 1000), "another question");
	/* Same slot, another question: it takes the slot; the first is forgotten, never confused. */
	failcache_put(f, 42, &why, 1000);
	failcache_put(f, 42 + FAILCACHE_SLOTS, &why, 1001);
	cr_expect_null(failcache_get(f, 42, 1001));
	cr_expect_not_null(failcache_get(f, 42 + FAILCACHE_SLOTS, 1001));
	failcache_free(f);
	failcache_free(NULL);
}

/* A flood of failing names stays within the table: at most FAILCACHE_SLOTS remembered. */
Test(failcache, a_flood_stays_bounded)
{
	failcache_t *f = failcache_new();
	struct upstream_failure why = {.ede_code = -1};
	for (uint64_t h = 0; h < 10 * FAILCACHE_SLOTS; h++)
		failcache_put(f, h * 0x9E3779B97F4A7C15ull, &why, 5000);
	unsigned kept = 0;
	for (uint64_t h = 0; h < 10 * FAILCACHE_SLOTS; h++)
		kept += failcache_get(f, h * 0x9E3779B97F4A7C15ull, 5000) != NULL;
	cr_expect_leq(kept, FAILCACHE_SLOTS);
	cr_expect_gt(kept, 0);
	failcache_free(f);
}
