/* Big-array allocation (see policy/mem.h): transparent huge pages for policy tables of
 * megabytes, plain malloc below that. It keeps no state and never maps memory itself
 * (posix_memalign, then advice), so everything it returns is freed with free(). */
#include "config.h"

#include "policy/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)
#define BIG (2 * HUGE_PAGE) /* From here an array is worth huge pages. */

void *mem_alloc(size_t size)
{
	if (size < BIG)
		return malloc(size ? size : 1);
	void *p;
	if (posix_memalign(&p, HUGE_PAGE, size) != 0)
		return NULL;
#ifdef MADV_HUGEPAGE
	(void)madvise(p, size, MADV_HUGEPAGE); /* Advice only: without it, small pages. */
#endif
	return p;
}

void *mem_calloc(size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	if (n * size < BIG)
		return calloc(n ? n : 1, size ? size : 1);
	void *p = mem_alloc(n * size);
	if (p)
		memset(p, 0, n * size);
	return p;
}

void *mem_realloc(void *p, size_t used, size_t size)
{
	if (size < BIG)
		return realloc(p, size ? size : 1);
	void *q = mem_alloc(size);
	if (!q)
		return NULL;
	if (p)
		memcpy(q, p, used < size ? used : size);
	free(p);
	return q;
}
