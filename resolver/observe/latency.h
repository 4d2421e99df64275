/* Latency histograms: fixed buckets from 10 us to 2.5 s (Prometheus' cumulative form is made
 * on export). One writer thread per histogram increments plain load/store atomics, so an
 * observation costs a few instructions and never a lock or a wait; any thread reads them. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

/** Upper bounds in nanoseconds; the last bucket (no bound) is +Inf. */
#define LATENCY_BOUNDS_NS(X) \
	X(10000) X(25000) X(50000) X(100000) X(250000) X(500000) X(1000000) X(2500000) X(5000000) X(10000000) \
	X(25000000) X(50000000) X(100000000) X(250000000) X(500000000) X(1000000000) \
	X(2500000000)
#define LATENCY_COUNT_ONE(ns) +1
#define LATENCY_BUCKETS (0 LATENCY_BOUNDS_NS(LATENCY_COUNT_ONE) + 1)

struct latency_hist {
	atomic_ullong bucket[LATENCY_BUCKETS]; /**< Not cumulative: each bucket's own count. */
	atomic_ullong sum_ns;
};

/** Count one observation of ns nanoseconds. Only the histogram's one writer thread. */
static inline void latency_observe(struct latency_hist *h, uint64_t ns)
{
	static const uint64_t bound[] = {
#define LATENCY_BOUND(ns) ns##ull,
		LATENCY_BOUNDS_NS(LATENCY_BOUND)
#undef LATENCY_BOUND
	};
	unsigned i = 0;
	while (i < LATENCY_BUCKETS - 1 && ns > bound[i])
		i++;
	atomic_store_explicit(&h->bucket[i],
			      atomic_load_explicit(&h->bucket[i], memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_store_explicit(&h->sum_ns,
			      atomic_load_explicit(&h->sum_ns, memory_order_relaxed) + ns,
			      memory_order_relaxed);
}

/** Start again from nothing. Only the writer thread. */
static inline void latency_clear(struct latency_hist *h)
{
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++)
		atomic_store_explicit(&h->bucket[i], 0, memory_order_relaxed);
	atomic_store_explicit(&h->sum_ns, 0, memory_order_relaxed);
}

/** Add h's counts into bucket[] and *sum_ns. Any thread. */
static inline void latency_add(const struct latency_hist *h, uint64_t bucket[LATENCY_BUCKETS],
			       uint64_t *sum_ns)
{
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++)
		bucket[i] += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
	*sum_ns += atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}
