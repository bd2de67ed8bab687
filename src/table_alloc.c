/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Zeroed memory for the per-block tables (slot table, registry). A large
 * manager reaches them at random (a restore's merge, every lookup), so
 * with 4 KiB pages nearly every access also misses the TLB, and their
 * first touch costs a page fault per 4 KiB. Large tables are mapped on
 * their own, aligned to 2 MiB and advised as huge pages where the system
 * offers them (Linux transparent huge pages in "madvise" mode); elsewhere,
 * or if the advice is refused, they are ordinary zeroed pages.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "table_alloc.h"

#define HUGE_BYTES ((size_t)2 << 20)
/* Below this a table is small enough for the allocator's own pages. */
#define MAP_BYTES ((size_t)8 << 20)

static size_t mapped_size(size_t bytes)
{
	return (bytes + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
}

void *kvbm__table_alloc(size_t bytes)
{
	if (bytes < MAP_BYTES)
		return calloc(1, bytes ? bytes : 1);
	const size_t size = mapped_size(bytes);
	/* Map one huge page more, then cut the unaligned ends off. */
	char *raw = mmap(NULL, size + HUGE_BYTES, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	const uintptr_t at = ((uintptr_t)raw + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1);
	char *p = (char *)at;
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	if (raw + size + HUGE_BYTES > p + size)
		munmap(p + size, (size_t)(raw + size + HUGE_BYTES - (p + size)));
#ifdef MADV_HUGEPAGE
	(void)madvise(p, size, MADV_HUGEPAGE);
#endif
	return p;
}

void *kvbm__table_alloc_lines(size_t bytes)
{
	if (bytes >= MAP_BYTES) {
		/* Populated now: faulted in one by one later, a cache filling
		 * up (every block id new) took a fault per 4 KiB on the fast
		 * path, 1.6x slower with a catalog, whose writer faults too. */
		void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		return p == MAP_FAILED ? NULL : p; /* page-aligned */
	}
	/* aligned_alloc wants a multiple of the alignment. */
	const size_t n = bytes ? (bytes + 63) & ~(size_t)63 : 64;
	void *p = aligned_alloc(64, n);
	if (p)
		memset(p, 0, n);
	return p;
}

void kvbm__table_free_lines(void *p, size_t bytes)
{
	if (!p)
		return;
	if (bytes >= MAP_BYTES)
		munmap(p, bytes);
	else
		free(p);
}

void kvbm__table_free(void *p, size_t bytes)
{
	if (!p)
		return;
	if (bytes < MAP_BYTES)
		free(p);
	else
		munmap(p, mapped_size(bytes));
}
