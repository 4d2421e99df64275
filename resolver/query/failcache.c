/* A per-worker memory of failed questions: see failcache.h. It never does I/O or reads the
 * clock: callers pass the time. */
#include "config.h"

#include "resolver/query/failcache.h"

#include <stdlib.h>

struct slot {
	uint64_t hash;
	uint64_t until_ms; /* 0: empty. */
	struct upstream_failure why;
};

struct failcache {
	struct slot slot[FAILCACHE_SLOTS];
};

failcache_t *failcache_new(void)
{
	return calloc(1, sizeof(struct failcache));
}

void failcache_free(failcache_t *f)
{
	free(f);
}

void failcache_put(failcache_t *f, uint64_t hash, const struct upstream_failure *why,
		   uint64_t now_ms)
{
	struct slot *s = &f->slot[hash % FAILCACHE_SLOTS];
	s->hash = hash;
	s->until_ms = now_ms + FAILCACHE_TTL_MS;
	s->why = *why;
}

const struct upstream_failure *failcache_get(const failcache_t *f, uint64_t hash, uint64_t now_ms)
{
	const struct slot *s = &f->slot[hash % FAILCACHE_SLOTS];
	if (s->until_ms == 0 || s->hash != hash || now_ms >= s->until_ms)
		return NULL;
	return &s->why;
}
