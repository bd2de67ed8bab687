/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lineage-aware, leaf first, as the seed's lineage backend and SGLang's
 * radix cache: a block is never evicted while one of its children (a block
 * whose parent hash is this block's hash) is in the pool; among the leaves
 * the least recently released goes first. Evicting a shared prefix while
 * its continuations stay cached wastes them: a prefix match stops at the
 * first miss, so they could never be hit again.
 *
 * A map from hash to (block in the pool, number of children in the pool)
 * lets a block learn about children that entered before it (a sequence
 * released tail first), and a heap of the leaves keyed by release tick
 * gives the victim. The order key is the tick; the leaf structure follows
 * from the parent links, so a restore in key order rebuilds it.
 *
 * Parent hashes come from callers, so they can form a cycle (A's parent B,
 * B's parent A: found by fuzzing). Then no block of the cycle is a leaf,
 * and the pool would have blocks but no victim. A plain release-order list
 * of every pooled block gives the fallback: the least recently released
 * block goes, which breaks the cycle.
 */
#include <stdlib.h>

#include "evict.h"
#include "evict_heap.h"
#include "evict_hmap.h"
#include "evict_list.h"

#define NIL UINT32_MAX

struct lineage {
	struct kvbm__heap leaves;
	struct kvbm__hmap nodes; /* hash -> a: block in pool or NIL, b: children in pool */
	uint32_t *prev, *next;   /* every pooled block in release order */
	struct kvbm__dlist all;
	kvbm_hash *hash, *parent;
	uint64_t *tick;
};

static void lineage_destroy(void *st)
{
	struct lineage *l = st;

	if (!l)
		return;
	kvbm__heap_free(&l->leaves);
	free(l->nodes.e);
	free(l->hash);
	free(l->parent);
	free(l->tick);
	free(l->prev);
	free(l->next);
	free(l);
}

static kvbm_status lineage_create(const struct kvbm__evict_params *p, void **out)
{
	struct lineage *l = calloc(1, sizeof(*l));

	if (!l)
		return KVBM_E_NOMEM;
	/* Each pooled block holds its own entry and at most one parent's. */
	const bool ok = kvbm__heap_init(&l->leaves, p->block_count) == KVBM_OK &&
			kvbm__hmap_init(&l->nodes, 2 * p->block_count) == KVBM_OK &&
			(l->hash = malloc(p->block_count * sizeof(*l->hash))) &&
			(l->parent = malloc(p->block_count * sizeof(*l->parent))) &&
			(l->tick = malloc(p->block_count * sizeof(*l->tick))) &&
			(l->prev = malloc(p->block_count * sizeof(*l->prev))) &&
			(l->next = malloc(p->block_count * sizeof(*l->next)));
	if (!ok) {
		lineage_destroy(l);
		return KVBM_E_NOMEM;
	}
	kvbm__dlist_init(&l->all);
	*out = l;
	return KVBM_OK;
}

static void lineage_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct lineage *l = st;
	struct kvbm__hmap_entry *self = kvbm__hmap_get(&l->nodes, e->hash, b, 0);

	self->a = b;
	const uint32_t children = self->b;
	l->hash[b] = e->hash;
	l->parent[b] = e->parent;
	l->tick[b] = e->tick;
	kvbm__dlist_append(l->prev, l->next, &l->all, b);
	if (e->parent && e->parent != e->hash) {
		struct kvbm__hmap_entry *p = kvbm__hmap_get(&l->nodes, e->parent, NIL, 0);
		if (++p->b == 1 && p->a != NIL)
			kvbm__heap_remove(&l->leaves, p->a); /* no longer a leaf */
	}
	if (children == 0)
		kvbm__heap_push(&l->leaves, b, e->tick);
}

static void lineage_remove(void *st, uint32_t b)
{
	struct lineage *l = st;
	struct kvbm__hmap_entry *self = kvbm__hmap_find(&l->nodes, l->hash[b]);

	kvbm__dlist_unlink(l->prev, l->next, &l->all, b);
	if (self->b == 0)
		kvbm__heap_remove(&l->leaves, b);
	self->a = NIL;
	if (self->b == 0)
		kvbm__hmap_erase(&l->nodes, self);
	const kvbm_hash parent = l->parent[b];
	if (!parent || parent == l->hash[b])
		return;
	struct kvbm__hmap_entry *p = kvbm__hmap_find(&l->nodes, parent);
	if (--p->b > 0)
		return;
	if (p->a != NIL)
		kvbm__heap_push(&l->leaves, p->a, l->tick[p->a]); /* a leaf again */
	else
		kvbm__hmap_erase(&l->nodes, p);
}

static bool lineage_victim(void *st, uint32_t *out)
{
	struct lineage *l = st;
	uint32_t b = kvbm__heap_min(&l->leaves);

	if (b == NIL)
		b = l->all.head; /* only a parent cycle is left: break it */
	if (b == NIL)
		return false;
	lineage_remove(l, b);
	*out = b;
	return true;
}

static uint64_t lineage_order_key(void *st, uint32_t b)
{
	return ((const struct lineage *)st)->tick[b];
}

const struct kvbm__evict_ops kvbm__evict_lineage = {
	.name = "lineage",
	.create = lineage_create,
	.destroy = lineage_destroy,
	.insert = lineage_insert,
	.remove = lineage_remove,
	.victim = lineage_victim,
	.order_key = lineage_order_key,
};
