/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Zeroed memory for a per-block table of a fixed size (table_alloc.c).
 * kvbm__table_free must be given the size it was allocated with.
 */
#ifndef KVBM_TABLE_ALLOC_H
#define KVBM_TABLE_ALLOC_H

#include <stddef.h>

void *kvbm__table_alloc(size_t bytes);
/* Zeroed too, starting on a 64-byte line (records that must not straddle
 * two), on ordinary pages: a policy's tables, which a restore's merge
 * reaches at random right after they are mapped, where a huge page's
 * first touch now and then stalled for compaction (the merge of 1M
 * blocks in 120 ms instead of 36). Past 8 MiB its own mapping, populated
 * at once (the kernel zeroes it in one call: no pass of our own over the
 * 63 MB of adaptive's records and ghost at 1M blocks, and no fault per
 * page later), the same memory every time (glibc's allocator moves its
 * mmap threshold as tables of about that size come and go). Freed by
 * kvbm__table_free_lines with the same size. */
void *kvbm__table_alloc_lines(size_t bytes);
void kvbm__table_free(void *p, size_t bytes);
void kvbm__table_free_lines(void *p, size_t bytes);

#endif /* KVBM_TABLE_ALLOC_H */
