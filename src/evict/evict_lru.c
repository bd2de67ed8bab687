/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LRU: evict the block released longest ago. A hit takes the block out of
 * the pool and its next release puts it back as the most recent, so
 * recency is "last release". An intrusive doubly linked list over block
 * ids gives O(1) insert, remove and victim with no allocation after
 * create. Releasing a sequence tail first leaves the tail nearer the head,
 * so continuations go before the prefixes they extend.
 */
#include <stdlib.h>

#include "evict.h"
#include "evict_list.h"

struct lru {
	uint32_t *prev, *next;
	uint64_t *key;
	struct kvbm__dlist order; /* head = least recently released */
};

static void lru_destroy(void *st)
{
	struct lru *l = st;

	if (!l)
		return;
	free(l->prev);
	free(l->next);
	free(l->key);
	free(l);
}

static kvbm_status lru_create(const struct kvbm__evict_params *p, void **out)
{
	struct lru *l = calloc(1, sizeof(*l));

	if (!l)
		return KVBM_E_NOMEM;
	l->prev = malloc(p->block_count * sizeof(*l->prev));
	l->next = malloc(p->block_count * sizeof(*l->next));
	l->key = malloc(p->block_count * sizeof(*l->key));
	if (!l->prev || !l->next || !l->key) {
		lru_destroy(l);
		return KVBM_E_NOMEM;
	}
	kvbm__dlist_init(&l->order);
	*out = l;
	return KVBM_OK;
}

static void lru_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct lru *l = st;

	l->key[b] = e->tick;
	/* Keys are release ticks, so this appends, except for a block
	 * kvbm_unpin puts back at the recency it had. */
	kvbm__dlist_insert_by_key(l->prev, l->next, &l->order, l->key, b);
}

static void lru_prefetch(void *st, uint32_t b)
{
	const struct lru *l = st;

	__builtin_prefetch(&l->key[b], 1);
	__builtin_prefetch(&l->prev[b], 1);
	__builtin_prefetch(&l->next[b], 1);
}

static void lru_remove(void *st, uint32_t b)
{
	struct lru *l = st;

	kvbm__dlist_unlink(l->prev, l->next, &l->order, b);
}

static bool lru_victim(void *st, uint32_t *b)
{
	struct lru *l = st;

	if (l->order.head == KVBM__LIST_NIL)
		return false;
	*b = l->order.head;
	lru_remove(l, *b);
	return true;
}

static uint64_t lru_order_key(void *st, uint32_t b)
{
	const struct lru *l = st;

	return l->key[b];
}

static uint32_t lru_peek(void *st, uint32_t n, uint32_t *out, uint32_t *scratch)
{
	const struct lru *l = st;

	(void)scratch;
	return kvbm__dlist_peek(l->next, &l->order, n, out);
}

const struct kvbm__evict_ops kvbm__evict_lru = {
	.name = "lru",
	.create = lru_create,
	.destroy = lru_destroy,
	.insert = lru_insert,
	.remove = lru_remove,
	.victim = lru_victim,
	.order_key = lru_order_key,
	.prefetch = lru_prefetch,
	.peek = lru_peek,
};
