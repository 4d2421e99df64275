/* The process's table of upstreams that send cookies: see cookie_seen.h. A static table: it
 * never allocates, and only an add takes the lock. */
#include "config.h"

#include "resolver/upstream/cookie_seen.h"

#include <pthread.h>
#include <stdatomic.h>

struct cookie_seen {
	struct sockaddr_storage addr; /* Written once, before the entry is published. */
	_Atomic uint8_t on;
	_Atomic uint32_t gen;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct cookie_seen table[COOKIE_SEEN_MAX];
static _Atomic unsigned count; /* Entries published (release after their address is written). */

struct cookie_seen *cookie_seen_find(const struct sockaddr_storage *a, unsigned *scanned)
{
	unsigned n = atomic_load_explicit(&count, memory_order_acquire);
	for (unsigned k = *scanned; k < n; k++)
		if (options_same_addr(&table[k].addr, a))
			return &table[k];
	*scanned = n;
	return NULL;
}

struct cookie_seen *cookie_seen_add(const struct sockaddr_storage *a)
{
	unsigned scanned = 0;
	struct cookie_seen *e = cookie_seen_find(a, &scanned);
	if (e)
		return e;
	pthread_mutex_lock(&lock);
	e = cookie_seen_find(a, &scanned); /* Added meanwhile by another worker? */
	if (!e && scanned < COOKIE_SEEN_MAX) {
		e = &table[scanned];
		e->addr = *a;
		atomic_store_explicit(&count, scanned + 1, memory_order_release);
	}
	pthread_mutex_unlock(&lock);
	return e;
}

bool cookie_seen_is_on(const struct cookie_seen *e)
{
	return atomic_load_explicit(&e->on, memory_order_relaxed) != 0;
}

void cookie_seen_on(struct cookie_seen *e)
{
	atomic_store_explicit(&e->on, 1, memory_order_relaxed);
}

uint32_t cookie_seen_off(struct cookie_seen *e)
{
	atomic_store_explicit(&e->on, 0, memory_order_relaxed);
	return atomic_fetch_add_explicit(&e->gen, 1, memory_order_release) + 1;
}

uint32_t cookie_seen_gen(const struct cookie_seen *e)
{
	return atomic_load_explicit(&e->gen, memory_order_acquire);
}
