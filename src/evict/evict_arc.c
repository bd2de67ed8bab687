/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ARC (Megiddo and Modha, FAST 2003), adapted to an inactive pool: T1
 * holds blocks used once, T2 blocks used at least twice, both least
 * recently released first; B1 and B2 remember the hashes last evicted from
 * each. A target size p for T1 moves with the traffic: a block asked for
 * again soon after T1 dropped it (a B1 hit) means recency matters, so p
 * grows; a B2 hit means frequency matters, so p shrinks. The victim comes
 * from T1 while T1 is above p, else from T2.
 *
 * Where 2Q always sacrifices blocks used once, ARC only does so while that
 * pays: on the Mooncake trace (long reuse distances, many one-off prompt
 * tails) it behaves like 2Q, on multi-turn chat (the newest blocks are the
 * next turn's prefix) like LRU. Parameters: c = block_count as in the
 * paper; each ghost spans the last 4 x block_count hashes evicted from its
 * list (reuse distances on real traces run to several capacities; an entry
 * costs 8 bytes in a direct-mapped table), fixed for every capacity. The catalog persists T1/T2 membership as the
 * frequency (1 = T2) and the release tick as the order key; p and the
 * ghosts start empty after a restart.
 */
#include <stdlib.h>

#include "evict.h"
#include "evict_ghost.h"
#include "evict_list.h"

#define GHOST_PER_BLOCK 4
enum { T1, T2 };

struct arc {
	uint32_t *prev, *next;
	uint64_t *key;
	uint8_t *list;
	kvbm_hash *hash;
	struct kvbm__dlist lists[2];
	uint32_t c, p;
	struct kvbm__ghost ghost[2]; /* B1, B2 */
	kvbm_hash stash_hash;          /* restore_frequency() just before insert() */
	uint32_t stash_list;
	bool stashed;
};

static void arc_destroy(void *st)
{
	struct arc *a = st;

	if (!a)
		return;
	free(a->prev);
	free(a->next);
	free(a->key);
	free(a->list);
	free(a->hash);
	kvbm__ghost_free(&a->ghost[0]);
	kvbm__ghost_free(&a->ghost[1]);
	free(a);
}

static kvbm_status arc_create(const struct kvbm__evict_params *p, void **out)
{
	struct arc *a = calloc(1, sizeof(*a));

	if (!a)
		return KVBM_E_NOMEM;
	a->c = p->block_count;
	const uint32_t span = p->block_count > UINT32_MAX / GHOST_PER_BLOCK
				      ? UINT32_MAX
				      : p->block_count * GHOST_PER_BLOCK;
	const bool ok = (a->prev = malloc(p->block_count * sizeof(*a->prev))) &&
			(a->next = malloc(p->block_count * sizeof(*a->next))) &&
			(a->key = calloc(p->block_count, sizeof(*a->key))) &&
			(a->list = calloc(p->block_count, 1)) &&
			(a->hash = calloc(p->block_count, sizeof(*a->hash))) &&
			kvbm__ghost_init(&a->ghost[T1], span) == KVBM_OK &&
			kvbm__ghost_init(&a->ghost[T2], span) == KVBM_OK;
	if (!ok) {
		arc_destroy(a);
		return KVBM_E_NOMEM;
	}
	kvbm__dlist_init(&a->lists[T1]);
	kvbm__dlist_init(&a->lists[T2]);
	*out = a;
	return KVBM_OK;
}

/* Which ghost remembered h (-1: none); h is forgotten there. */
static int ghost_take(struct arc *a, kvbm_hash h)
{
	if (kvbm__ghost_take(&a->ghost[T1], h))
		return T1;
	if (kvbm__ghost_take(&a->ghost[T2], h))
		return T2;
	return -1;
}

static void append(struct arc *a, uint32_t b, int l, uint64_t key)
{
	a->list[b] = (uint8_t)l;
	a->key[b] = key;
	/* In tick order: an append, except for a block kvbm_unpin puts back
	 * at the recency it had. */
	kvbm__dlist_insert_by_key(a->prev, a->next, &a->lists[l], a->key, b);
}

static void arc_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct arc *a = st;
	int l = T1;

	if (a->stashed && a->stash_hash == e->hash) {
		a->stashed = false; /* restore: the list the catalog recorded */
		l = a->stash_list ? T2 : T1;
	} else if (a->hash[b] == e->hash && e->tick == a->key[b]) {
		/* Ticks are unique, so this is b back at the tick it left with
		 * (kvbm_unpin, or a reclaim undone at close). A pin is no use:
		 * b goes back to its list, so a block a ghost hit put in T2,
		 * used once, stays there, and the ghost is not asked. */
		l = a->list[b];
	} else if (e->first_tick != e->tick && a->hash[b] == e->hash) {
		l = T2; /* back from a hit: used twice */
	} else {
		const uint32_t b1 = kvbm__ghost_size(&a->ghost[T1]);
		const uint32_t b2 = kvbm__ghost_size(&a->ghost[T2]);
		switch (ghost_take(a, e->hash)) {
		case T1: { /* T1 was too small */
			const uint32_t d = b2 > b1 && b1 ? b2 / b1 : 1;
			a->p = a->c - a->p > d ? a->p + d : a->c;
			l = T2;
			break;
		}
		case T2: { /* T2 was too small */
			const uint32_t d = b1 > b2 && b2 ? b1 / b2 : 1;
			a->p = a->p > d ? a->p - d : 0;
			l = T2;
			break;
		}
		default:
			break;
		}
	}
	a->hash[b] = e->hash;
	append(a, b, l, e->tick);
}

static void arc_remove(void *st, uint32_t b)
{
	struct arc *a = st;

	kvbm__dlist_unlink(a->prev, a->next, &a->lists[a->list[b]], b);
}

static bool arc_victim(void *st, uint32_t *out)
{
	struct arc *a = st;
	const uint32_t t1 = a->lists[T1].size, t2 = a->lists[T2].size;
	const int l = t1 > 0 && (t1 > a->p || t2 == 0) ? T1 : T2;
	const uint32_t b = a->lists[l].head;

	if (b == KVBM__LIST_NIL)
		return false;
	arc_remove(a, b);
	kvbm__ghost_add(&a->ghost[l], a->hash[b]);
	*out = b;
	return true;
}

/* The reserve gives victim b back: it was never evicted, so its ghost
 * entry goes (a later registration of the hash is no ghost hit). */
static void arc_unevict(void *st, uint32_t b)
{
	struct arc *a = st;

	(void)kvbm__ghost_take(&a->ghost[a->list[b]], a->hash[b]);
}

static void arc_touch(void *st, kvbm_hash hash, bool registered)
{
	const struct arc *a = st;

	if (!registered) /* a hit's release looks nothing up */
		return;
	kvbm__ghost_prefetch(&a->ghost[T1], hash);
	kvbm__ghost_prefetch(&a->ghost[T2], hash);
}

static uint64_t arc_order_key(void *st, uint32_t b)
{
	return ((const struct arc *)st)->key[b];
}

static uint32_t arc_frequency(void *st, uint32_t b, kvbm_hash hash)
{
	const struct arc *a = st;

	return a->hash[b] == hash && a->list[b] == T2 ? 1 : 0;
}

static void arc_restore_frequency(void *st, kvbm_hash hash, uint32_t freq)
{
	struct arc *a = st;

	a->stash_hash = hash;
	a->stash_list = freq != 0;
	a->stashed = true;
}

/* arc_victim's choice replayed on cursors: evicting changes the list
 * sizes but not p, so the sequence follows from the two lists alone. */
static uint32_t arc_peek(void *st, uint32_t n, uint32_t *out, uint32_t *scratch)
{
	const struct arc *a = st;
	uint32_t size[2] = {a->lists[T1].size, a->lists[T2].size};
	uint32_t at[2] = {a->lists[T1].head, a->lists[T2].head};
	uint32_t got = 0;

	(void)scratch;
	while (got < n) {
		const int l = size[T1] > 0 && (size[T1] > a->p || size[T2] == 0) ? T1 : T2;
		if (at[l] == KVBM__LIST_NIL)
			break;
		out[got++] = at[l];
		at[l] = a->next[at[l]];
		size[l]--;
	}
	return got;
}

const struct kvbm__evict_ops kvbm__evict_arc = {
	.name = "arc",
	.create = arc_create,
	.destroy = arc_destroy,
	.insert = arc_insert,
	.remove = arc_remove,
	.victim = arc_victim,
	.unevict = arc_unevict,
	.peek = arc_peek,
	.order_key = arc_order_key,
	.touch = arc_touch,
	.frequency = arc_frequency,
	.restore_frequency = arc_restore_frequency,
};
