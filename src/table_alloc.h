/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Zeroed memory for a per-block table of a fixed size (table_alloc.c).
 * kvbm__table_free must be given the size it was allocated with.
 */
#ifndef KVBM_TABLE_ALLOC_H
#define KVBM_TABLE_ALLOC_H

#include <stddef.h>

void *kvbm__table_alloc(size_t bytes);
/* The same, starting on a 64-byte line at every size (records that must
 * not straddle two lines); freed by kvbm__table_free with the same size. */
void *kvbm__table_alloc_lines(size_t bytes);
void kvbm__table_free(void *p, size_t bytes);

#endif /* KVBM_TABLE_ALLOC_H */
