/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Intrusive doubly linked lists over block ids, the recency order most
 * policies keep: prev/next arrays sized for block_count at create, one
 * head/tail/size per list, O(1) append and unlink, no allocation.
 */
#ifndef KVBM_EVICT_LIST_H
#define KVBM_EVICT_LIST_H

#include "kvbm.h"

#define KVBM__LIST_NIL UINT32_MAX

struct kvbm__dlist {
	uint32_t head, tail; /* head: the oldest */
	uint32_t size;
};

static inline void kvbm__dlist_init(struct kvbm__dlist *l)
{
	l->head = l->tail = KVBM__LIST_NIL;
	l->size = 0;
}

static inline void kvbm__dlist_append(uint32_t *prev, uint32_t *next, struct kvbm__dlist *l,
				      uint32_t b)
{
	prev[b] = l->tail;
	next[b] = KVBM__LIST_NIL;
	if (l->tail != KVBM__LIST_NIL)
		next[l->tail] = b;
	else
		l->head = b;
	l->tail = b;
	l->size++;
}

static inline void kvbm__dlist_unlink(uint32_t *prev, uint32_t *next, struct kvbm__dlist *l,
				      uint32_t b)
{
	if (prev[b] != KVBM__LIST_NIL)
		next[prev[b]] = next[b];
	else
		l->head = next[b];
	if (next[b] != KVBM__LIST_NIL)
		prev[next[b]] = prev[b];
	else
		l->tail = prev[b];
	l->size--;
}

#endif /* KVBM_EVICT_LIST_H */
