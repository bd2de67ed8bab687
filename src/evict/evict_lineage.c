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
 * A block that leaves the pool without being evicted (a hit, most often a
 * scattered match or weak upgrade on a block in mid-chain) while one of
 * its children is still pooled stays in the map as a ghost, as in the
 * seed: its parent keeps counting it as a child, so the parent is not
 * made a leaf (and evicted) while the ghost's descendants stay cached.
 * When the ghost's last child leaves, the ghost is pruned and its parent
 * may become a leaf again; a block that returns takes its ghost's place.
 * Ghosts are bounded by block_count (a slot per ghost for its parent
 * hash); past that a block leaves as it did before ghosts, unlinked.
 * An evicted block never leaves a ghost: it is gone from the cache.
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
#define GHOST_TAG 0x80000000u /* a ghost's map value a: tag | slot (block ids < 2^30) */

struct lineage {
	struct kvbm__heap leaves;
	/* hash -> a: block in pool, GHOST_TAG | ghost slot, or NIL for a
	 * parent known only from its children; b: children in the map */
	struct kvbm__hmap nodes;
	uint32_t *prev, *next;   /* every pooled block in release order */
	struct kvbm__dlist all;
	kvbm_hash *hash, *parent;
	uint64_t *tick;
	kvbm_hash *ghost_parent;  /* per ghost slot */
	uint32_t *ghost_next;     /* free list of ghost slots */
	uint32_t ghost_free;
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
	free(l->ghost_parent);
	free(l->ghost_next);
	free(l);
}

static kvbm_status lineage_create(const struct kvbm__evict_params *p, void **out)
{
	struct lineage *l = calloc(1, sizeof(*l));

	if (!l)
		return KVBM_E_NOMEM;
	/* Each pooled block and each ghost holds its own entry and at most
	 * one parent's. */
	const bool ok = kvbm__heap_init(&l->leaves, p->block_count) == KVBM_OK &&
			kvbm__hmap_init(&l->nodes, 4 * p->block_count) == KVBM_OK &&
			(l->ghost_parent = malloc(p->block_count * sizeof(*l->ghost_parent))) &&
			(l->ghost_next = malloc(p->block_count * sizeof(*l->ghost_next))) &&
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
	for (uint32_t i = 0; i < p->block_count; i++)
		l->ghost_next[i] = i + 1 < p->block_count ? i + 1 : NIL;
	l->ghost_free = 0;
	*out = l;
	return KVBM_OK;
}

static bool is_block(uint32_t a)
{
	return (a & GHOST_TAG) == 0;
}

static bool is_ghost(uint32_t a)
{
	return a != NIL && (a & GHOST_TAG);
}

/* Whether a block or ghost of hash h with this parent counts in it. */
static bool linked(kvbm_hash h, kvbm_hash parent)
{
	return parent && parent != h;
}

static kvbm_hash ghost_release(struct lineage *l, uint32_t a)
{
	const uint32_t slot = a & ~GHOST_TAG;

	l->ghost_next[slot] = l->ghost_free;
	l->ghost_free = slot;
	return l->ghost_parent[slot];
}

/* One child of `parent` left the map: the parent becomes a leaf if it is a
 * pooled block without children, and a childless ghost or placeholder is
 * erased, a ghost's own parent losing a child in turn (iterative: chains
 * of ghosts can be long). */
static void child_gone(struct lineage *l, kvbm_hash parent)
{
	for (;;) {
		struct kvbm__hmap_entry *p = kvbm__hmap_find(&l->nodes, parent);
		if (--p->b > 0)
			return;
		if (is_block(p->a)) {
			kvbm__heap_push(&l->leaves, p->a, l->tick[p->a]);
			return;
		}
		const kvbm_hash h = parent;
		const bool ghost = is_ghost(p->a);
		parent = ghost ? ghost_release(l, p->a) : 0;
		kvbm__hmap_erase(&l->nodes, p);
		if (!ghost || !linked(h, parent))
			return;
	}
}

/* A child of `parent` entered the map: a pooled parent is a leaf no more. */
static void child_added(struct lineage *l, kvbm_hash parent)
{
	struct kvbm__hmap_entry *p = kvbm__hmap_get(&l->nodes, parent, NIL, 0);

	if (++p->b == 1 && is_block(p->a))
		kvbm__heap_remove(&l->leaves, p->a);
}

static void lineage_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct lineage *l = st;
	struct kvbm__hmap_entry *self = kvbm__hmap_get(&l->nodes, e->hash, b, 0);
	/* A ghost is already counted in the parent it had. */
	const kvbm_hash was_linked_to =
		is_ghost(self->a) ? ghost_release(l, self->a) : 0;

	self->a = b;
	const uint32_t children = self->b;
	l->hash[b] = e->hash;
	l->parent[b] = e->parent;
	l->tick[b] = e->tick;
	kvbm__dlist_append(l->prev, l->next, &l->all, b);
	if (children == 0)
		kvbm__heap_push(&l->leaves, b, e->tick);
	if (was_linked_to == e->parent && linked(e->hash, e->parent))
		return;
	if (linked(e->hash, e->parent))
		child_added(l, e->parent);
	if (linked(e->hash, was_linked_to))
		child_gone(l, was_linked_to); /* a caller changed the parent */
}

/* Block b leaves the pool; a hit leaves a ghost if b has children. */
static void leave(struct lineage *l, uint32_t b, bool ghost)
{
	struct kvbm__hmap_entry *self = kvbm__hmap_find(&l->nodes, l->hash[b]);
	const kvbm_hash parent = l->parent[b];

	kvbm__dlist_unlink(l->prev, l->next, &l->all, b);
	if (self->b == 0) {
		kvbm__heap_remove(&l->leaves, b);
		kvbm__hmap_erase(&l->nodes, self);
	} else if (ghost && l->ghost_free != NIL) {
		const uint32_t slot = l->ghost_free;
		l->ghost_free = l->ghost_next[slot];
		l->ghost_parent[slot] = parent;
		self->a = GHOST_TAG | slot;
		return; /* still its parent's child */
	} else {
		self->a = NIL; /* a placeholder its children keep */
	}
	if (linked(l->hash[b], parent))
		child_gone(l, parent);
}

static void lineage_remove(void *st, uint32_t b)
{
	leave(st, b, true);
}

static bool lineage_victim(void *st, uint32_t *out)
{
	struct lineage *l = st;
	uint32_t b = kvbm__heap_min(&l->leaves);

	if (b == NIL)
		b = l->all.head; /* only a parent cycle is left: break it */
	if (b == NIL)
		return false;
	leave(l, b, false);
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
