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

/* Insert b so the list stays in ascending key order (key[] per block; b's
 * own key already set). The usual key is the newest, an append; a block
 * re-entering at an older recency (kvbm_unpin) is placed by searching from
 * both ends at once, so the cost is its distance from the nearer end.
 * Equal keys go after the ones already there. */
static inline void kvbm__dlist_insert_by_key(uint32_t *prev, uint32_t *next, struct kvbm__dlist *l,
					     const uint64_t *key, uint32_t b)
{
	uint32_t after = l->tail, before = l->head;

	/* after: from the tail, the last entry with key <= key[b];
	 * before: from the head, the first entry with key > key[b]. */
	while (after != KVBM__LIST_NIL && key[after] > key[b]) {
		if (key[before] > key[b]) {
			after = prev[before];
			break;
		}
		after = prev[after];
		before = next[before];
	}
	if (after == l->tail) {
		kvbm__dlist_append(prev, next, l, b);
		return;
	}
	before = after == KVBM__LIST_NIL ? l->head : next[after];
	prev[b] = after;
	next[b] = before;
	prev[before] = b;
	if (after != KVBM__LIST_NIL)
		next[after] = b;
	else
		l->head = b;
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

/* Up to n entries of a list from its head, oldest first. */
static inline uint32_t kvbm__dlist_peek(const uint32_t *next, const struct kvbm__dlist *l,
					uint32_t n, uint32_t *out)
{
	uint32_t got = 0;

	for (uint32_t b = l->head; got < n && b != KVBM__LIST_NIL; b = next[b])
		out[got++] = b;
	return got;
}

#endif /* KVBM_EVICT_LIST_H */
