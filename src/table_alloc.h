/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Zeroed memory for a per-block table of a fixed size (table_alloc.c).
 * kvbm__table_free must be given the size it was allocated with.
 */
#ifndef KVBM_TABLE_ALLOC_H
#define KVBM_TABLE_ALLOC_H

#include <stddef.h>

void *kvbm__table_alloc(size_t bytes);
void kvbm__table_free(void *p, size_t bytes);

#endif /* KVBM_TABLE_ALLOC_H */
