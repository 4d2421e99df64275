/* Publication of policy snapshots to reader threads, quiescent-state based (QSBR): the writer
 * swaps the current pointer with one atomic exchange; readers never lock, they mark themselves
 * active before reading and quiescent between loop iterations; an old snapshot is freed only
 * after every reader that could hold it has passed a quiescent state. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>

#include "policy/policy.h"

typedef struct policy_store policy_store_t;

/** One reader thread's state. Embedded in the store; fields are private. */
struct policy_reader {
	_Alignas(64) atomic_ulong epoch; /* Advanced at every quiescent state. */
	atomic_int active;               /* 1 while the reader may hold a snapshot. */
};

/** A store for up to nreaders readers holding p (owned by the store from now on).
 *  @return the store (owned: policy_store_free), NULL when out of memory. */
policy_store_t *policy_store_new(unsigned nreaders, policy_t *p);

/** Free the store, the current policy and all retired ones. No reader may be active. NULL ok. */
void policy_store_free(policy_store_t *s);

/** Reader i's slot (borrowed, lives as long as the store). */
struct policy_reader *policy_store_reader(policy_store_t *s, unsigned i);

/** Reader side: the current policy (borrowed), valid until this reader's next
 *  policy_store_quiescent(). */
const policy_t *policy_store_enter(policy_store_t *s, struct policy_reader *r);

/** Reader side: this reader holds no snapshot now (call between loop iterations). */
static inline void policy_store_quiescent(struct policy_reader *r)
{
	atomic_store_explicit(&r->active, 0, memory_order_release);
	atomic_fetch_add_explicit(&r->epoch, 1, memory_order_release);
}

/** Writer side: make p current (the store owns it) and retire the previous one. */
int policy_store_publish(policy_store_t *s, policy_t *p);

/** Writer side: free retired policies whose grace period is over. @return how many remain. */
size_t policy_store_reclaim(policy_store_t *s);

/** Writer side: the current policy (borrowed, valid until the writer publishes again). */
const policy_t *policy_store_current(policy_store_t *s);
