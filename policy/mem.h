/* Big arrays (policy tables of megabytes) on transparent huge pages where the kernel offers them
 * for the asking (the "madvise" setting): a 2 MiB page faults in once where 512 small pages
 * fault one by one, which on this kind of machine made first-touching a 1M-rule policy cost a
 * quarter of its build, and lookups miss the TLB less. Small arrays use plain malloc. It never
 * maps memory itself, so every pointer from here is freed with free(). */
#pragma once

#include <stddef.h>

/** Uninitialised memory for size octets, NULL when out of memory. */
void *mem_alloc(size_t size);

/** Zeroed memory for n * size octets, NULL when out of memory or on overflow. */
void *mem_calloc(size_t n, size_t size);

/** Resize p (from mem_alloc, malloc or NULL), keeping its first min(used, size) octets, where
 *  used is how much of p is in use. NULL when out of memory, p left as it was. */
void *mem_realloc(void *p, size_t used, size_t size);
