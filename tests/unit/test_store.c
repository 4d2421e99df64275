/* QSBR publication: a retired policy outlives every reader that may hold it, and no longer. */
#include "config.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "policy/store.h"

TestSuite(store);

static policy_t *one_rule(const char *name)
{
	policy_builder_t *b = policy_builder_new();
	policy_builder_add(b, POLICY_DENY, name, strlen(name));
	return policy_build(b, POLICY_SOURCE_REDIS);
}

Test(store, retired_policy_waits_for_active_readers)
{
	policy_t *p1 = one_rule("one.example");
	policy_store_t *s = policy_store_new(2, p1);
	struct policy_reader *r0 = policy_store_reader(s, 0), *r1 = policy_store_reader(s, 1);
	cr_assert_null(policy_store_reader(s, 2));

	cr_assert_eq(policy_store_enter(s, r0), p1);
	/* r1 is idle: it cannot hold p1. */
	cr_assert_eq(policy_store_publish(s, one_rule("two.example")), 0);
	cr_assert_eq(policy_store_reclaim(s), 1, "r0 may still read the old policy");
	cr_assert_neq(policy_store_enter(s, r1), p1);
	cr_assert_eq(policy_store_reclaim(s), 1);
	policy_store_quiescent(r0);
	cr_assert_eq(policy_store_reclaim(s), 0, "r0 passed a quiescent state");
	policy_store_quiescent(r1);
	policy_store_free(s);
	policy_store_free(NULL);
}

Test(store, idle_readers_do_not_delay_reclaim)
{
	policy_store_t *s = policy_store_new(4, one_rule("a.example"));
	for (int i = 0; i < 10; i++)
		cr_assert_eq(policy_store_publish(s, one_rule("b.example")), 0);
	cr_assert_eq(policy_store_reclaim(s), 0);
	policy_store_free(s);
}

struct reader_arg {
	policy_store_t *s;
	struct policy_reader *r;
	atomic_int *stop;
	atomic_long lookups;
	long wrong;
};

static void *reader(void *arg)
{
	struct reader_arg *a = arg;
	struct name n;
	name_from_text(&n, "www.a.example", 13);
	while (!atomic_load(a->stop)) {
		for (int i = 0; i < 100; i++) {
			struct policy_verdict v;
			policy_lookup(policy_store_enter(a->s, a->r), &n, &v);
			if (v.action != POLICY_DENY)
				a->wrong++;
			atomic_fetch_add_explicit(&a->lookups, 1, memory_order_relaxed);
		}
		policy_store_quiescent(a->r);
	}
	return NULL;
}

/* Under ASan this fails with a use-after-free if a policy is freed too early. */
Test(store, concurrent_readers_and_publishes, .timeout = 60)
{
	policy_store_t *s = policy_store_new(2, one_rule("a.example"));
	atomic_int stop;
	atomic_init(&stop, 0);
	pthread_t t[2];
	struct reader_arg args[2];
	for (int i = 0; i < 2; i++) {
		args[i] = (struct reader_arg){.s = s, .r = policy_store_reader(s, (unsigned)i),
					      .stop = &stop};
		atomic_init(&args[i].lookups, 0);
		pthread_create(&t[i], NULL, reader, &args[i]);
	}
	/* Publish until both readers have read across many swaps (bounded, for slow machines). */
	for (int i = 0; i < 2000 || ((atomic_load(&args[0].lookups) < 100000 ||
				      atomic_load(&args[1].lookups) < 100000) && i < 2000000); i++) {
		cr_assert_eq(policy_store_publish(s, one_rule("a.example")), 0);
		policy_store_reclaim(s);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	cr_expect_eq(policy_store_reclaim(s), 0);
	cr_expect_gt(atomic_load(&args[0].lookups), 0);
	cr_expect_gt(atomic_load(&args[1].lookups), 0);
	cr_expect_eq(args[0].wrong + args[1].wrong, 0);
	policy_store_free(s);
}
