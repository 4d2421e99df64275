/* QSBR store. Each retired policy remembers every reader's epoch at retirement; it may be
 * freed once each reader was inactive then or has advanced its epoch since. The writer reads a
 * reader's active flag before its epoch: policy_store_publish() explains why that order. The
 * writer never waits for a reader: a policy still held stays retired until a later reclaim. */
#include "config.h"

#include "policy/store.h"

#include <errno.h>
#include <stdlib.h>

struct retired {
	policy_t *policy;
	struct retired *next;
	unsigned long epochs[]; /* ULONG_MAX: reader was inactive at retirement. */
};

struct policy_store {
	_Atomic(policy_t *) current;
	unsigned nreaders;
	struct retired *retired;
	struct policy_reader *readers;
};

policy_store_t *policy_store_new(unsigned nreaders, policy_t *p)
{
	policy_store_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->readers = aligned_alloc(64, ((nreaders ? nreaders : 1) * sizeof(*s->readers) + 63) / 64 * 64);
	if (!s->readers) {
		free(s);
		return NULL;
	}
	for (unsigned i = 0; i < nreaders; i++) {
		atomic_init(&s->readers[i].epoch, 0);
		atomic_init(&s->readers[i].active, 0);
	}
	s->nreaders = nreaders;
	atomic_init(&s->current, p);
	return s;
}

void policy_store_free(policy_store_t *s)
{
	if (!s)
		return;
	while (s->retired) {
		struct retired *r = s->retired;
		s->retired = r->next;
		policy_free(r->policy);
		free(r);
	}
	policy_free(atomic_load(&s->current));
	free(s->readers);
	free(s);
}

struct policy_reader *policy_store_reader(policy_store_t *s, unsigned i)
{
	return i < s->nreaders ? &s->readers[i] : NULL;
}

/* Only the reader itself writes its active flag, so it may read it relaxed and pay for the
 * sequentially consistent store (ordered before the pointer load, against the writer's exchange
 * and its load of the flag) once per loop iteration rather than once per query. */
const policy_t *policy_store_enter(policy_store_t *s, struct policy_reader *r)
{
	if (!atomic_load_explicit(&r->active, memory_order_relaxed))
		atomic_store(&r->active, 1);
	return atomic_load(&s->current);
}

int policy_store_publish(policy_store_t *s, policy_t *p)
{
	struct retired *r = malloc(sizeof(*r) + s->nreaders * sizeof(r->epochs[0]));
	if (!r)
		return -ENOMEM;
	r->policy = atomic_exchange(&s->current, p);
	/* Why a reader that may hold the old policy is never missed, in C11 terms (not only on
	 * x86). A reader that holds it loaded `current` before the exchange; all four of its
	 * active = 1 store, that load, the exchange and the load of `active` below are
	 * sequentially consistent, so they sit in that order in the single total order S.
	 *  - Let A be the reader's last active = 1 store before the exchange in S. The load of
	 *    `active` below follows A in S, so it reads A or a store after A: never an older 0.
	 *  - It reads 0: a later quiescent state ended every section that began with A or
	 *    before, and the release store of that 0 makes the reader's reads of the old policy
	 *    happen before our free. A section begun after that 0 stores active = 1 after our
	 *    load in S, so its load of `current` follows the exchange and sees the new policy.
	 *    So "inactive" (ULONG_MAX) is safe.
	 *  - It reads 1 from some store B (A or later): B is a release store, so everything
	 *    before B in the reader, including the epoch increment that opened B's section,
	 *    happens before the epoch load that follows, which therefore reads that section's
	 *    epoch or a later one: e is never older than the section holding the policy, and
	 *    reclaim frees only once the epoch has moved past e (an acquire load of the
	 *    reader's release increment, so its reads happen before the free).
	 * Loading the epoch first would break the second case: an acquire load of `epoch` may
	 * return a stale value when nothing orders it after the reader's increment, and then a
	 * newer section could be recorded under an older epoch and freed under the reader. */
	for (unsigned i = 0; i < s->nreaders; i++) {
		struct policy_reader *rd = &s->readers[i];
		int active = atomic_load(&rd->active);
		unsigned long e = atomic_load_explicit(&rd->epoch, memory_order_acquire);
		r->epochs[i] = active ? e : (unsigned long)-1;
	}
	r->next = s->retired;
	s->retired = r;
	policy_store_reclaim(s);
	return 0;
}

size_t policy_store_reclaim(policy_store_t *s)
{
	size_t left = 0;
	struct retired **pp = &s->retired;
	while (*pp) {
		struct retired *r = *pp;
		int done = 1;
		for (unsigned i = 0; i < s->nreaders && done; i++)
			if (r->epochs[i] != (unsigned long)-1 &&
			    atomic_load_explicit(&s->readers[i].epoch, memory_order_acquire) ==
				    r->epochs[i])
				done = 0;
		if (done) {
			*pp = r->next;
			policy_free(r->policy);
			free(r);
		} else {
			pp = &r->next;
			left++;
		}
	}
	return left;
}

const policy_t *policy_store_current(policy_store_t *s)
{
	return atomic_load(&s->current);
}
