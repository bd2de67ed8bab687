/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The order a restore hands blocks to the policy in: ascending eviction
 * key, ties by block id. Rows are read in block order, so a stable sort by
 * key alone gives it.
 */
#ifndef KVBM_RESTORE_ORDER_H
#define KVBM_RESTORE_ORDER_H

#include <stddef.h>
#include <stdint.h>

#include "kvbm.h"

/* What the ordered step needs of a staged block besides its slot (16
 * bytes: the sort moves each entry once per pass). */
struct kvbm__order {
	uint64_t evict_key;
	uint32_t block;
	uint32_t frequency;
};

/* Stable sort of a[0..n) by evict_key; tmp holds n entries. Returns the
 * one of a and tmp that holds the result. */
struct kvbm__order *kvbm__order_sort(struct kvbm__order *a, struct kvbm__order *tmp, size_t n);

/* Does x go before y? */
static inline bool kvbm__order_before(const struct kvbm__order *x, const struct kvbm__order *y)
{
	return x->evict_key != y->evict_key ? x->evict_key < y->evict_key : x->block < y->block;
}

#endif /* KVBM_RESTORE_ORDER_H */
