/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vLLM's offloading ARC (ARCCachePolicy in vllm/v1/kv_offload/cpu_manager.py),
 * decision for decision, so that kvbm.vllm with cache_policy="arc" stores,
 * evicts and hands out blocks exactly as vLLM's CPUOffloadingManager does.
 * It differs from kvbm's own ARC (evict_arc.c) wherever vLLM does:
 *
 *  - T1 and T2 hold every block of the tier, not only the inactive ones: a
 *    block being written enters T1 when its store is prepared (staged), a
 *    block being loaded or protected by a store keeps its place (hold).
 *    Both count in |T1| and are skipped as victims;
 *  - the target size p of T1 is a float and moves only when a touch names
 *    a ghost: B1 by max(1, |B2|/|B1|) up to c, B2 by max(1, |B1|/|B2|)
 *    down to 0. A store of a ghost hash only forgets the ghost;
 *  - a touch moves a written block of T1 to T2's newest end, a block of T2
 *    to T2's newest end, a block still being written to T1's newest end;
 *    a release (store completed, load completed) moves nothing;
 *  - victims come from T1 while |T1| (minus the victims already chosen in
 *    this allocation) >= floor(p), else from T2 (T2 also when T1 has no
 *    free block); with neither, the whole allocation fails (can_evict),
 *    even when T1 has free blocks and floor(p) sent the choice to T2;
 *  - B1 and B2 are exact LRU lists of hashes, each at most c long, their
 *    oldest forgotten first; a ghost touched moves to its list's newest end.
 *
 * Exact lists need exact membership, so ghosts are hashes in a map, not the
 * fingerprint table of evict_ghost.h: one map from hash to node (a block id
 * below c, c + a ghost node above), at most 3c entries. p and the ghosts
 * are not persisted: after a restart they start empty, as a fresh vLLM
 * manager would.
 */
#include <stdlib.h>

#include "evict.h"
#include "evict_hmap.h"
#include "evict_list.h"

enum { T1, T2 };
enum { OUT, IN_FLIGHT, READY, HELD }; /* a block's state as the policy sees it */

struct varc {
	uint32_t c;
	double p; /* a float in vLLM too: its fractional steps decide floor(p) */
	uint32_t *prev, *next;
	uint64_t *key; /* place stamp, increasing along each list */
	kvbm_hash *hash;
	uint8_t *state, *list;
	struct kvbm__dlist t[2];
	uint32_t *gprev, *gnext; /* ghost nodes 0..2c-1 */
	kvbm_hash *ghash;
	uint8_t *glist;
	struct kvbm__dlist b[2];
	uint32_t gfree; /* free ghost nodes, chained through gnext */
	struct kvbm__hmap map; /* hash -> node in .a (.b = 1 keeps it off the free pair) */
	uint64_t clock;
	kvbm_hash stash_hash; /* restore_frequency() just before insert() */
	uint8_t stash_list;
	bool stashed;
};

static void varc_destroy(void *st)
{
	struct varc *a = st;

	if (!a)
		return;
	free(a->prev);
	free(a->next);
	free(a->key);
	free(a->hash);
	free(a->state);
	free(a->list);
	free(a->gprev);
	free(a->gnext);
	free(a->ghash);
	free(a->glist);
	free(a->map.e);
	free(a);
}

static kvbm_status varc_create(const struct kvbm__evict_params *p, void **out)
{
	struct varc *a = calloc(1, sizeof(*a));

	if (!a)
		return KVBM_E_NOMEM;
	const uint32_t c = a->c = p->block_count;
	const size_t g = 2 * (size_t)c;
	const bool ok = c <= UINT32_MAX / 3 && (a->prev = malloc(c * sizeof(*a->prev))) &&
			(a->next = malloc(c * sizeof(*a->next))) &&
			(a->key = malloc(c * sizeof(*a->key))) &&
			(a->hash = calloc(c, sizeof(*a->hash))) && (a->state = calloc(c, 1)) &&
			(a->list = calloc(c, 1)) && (a->gprev = malloc(g * sizeof(*a->gprev))) &&
			(a->gnext = malloc(g * sizeof(*a->gnext))) &&
			(a->ghash = malloc(g * sizeof(*a->ghash))) && (a->glist = calloc(g, 1)) &&
			kvbm__hmap_init(&a->map, 3 * c) == KVBM_OK;
	if (!ok) {
		varc_destroy(a);
		return KVBM_E_NOMEM;
	}
	for (int l = T1; l <= T2; l++) {
		kvbm__dlist_init(&a->t[l]);
		kvbm__dlist_init(&a->b[l]);
	}
	for (size_t i = 0; i < g; i++)
		a->gnext[i] = i + 1 < g ? (uint32_t)(i + 1) : KVBM__LIST_NIL;
	a->gfree = g ? 0 : KVBM__LIST_NIL;
	*out = a;
	return KVBM_OK;
}

/* Point h at node (replacing whatever it named). */
static void map_set(struct varc *a, kvbm_hash h, uint32_t node)
{
	kvbm__hmap_get(&a->map, h, node, 1)->a = node;
}

/* Forget h if it still names node (a duplicate may have taken it over). */
static void map_drop(struct varc *a, kvbm_hash h, uint32_t node)
{
	struct kvbm__hmap_entry *e = kvbm__hmap_find(&a->map, h);

	if (e && e->a == node)
		kvbm__hmap_erase(&a->map, e);
}

static void ghost_unlink(struct varc *a, uint32_t g)
{
	kvbm__dlist_unlink(a->gprev, a->gnext, &a->b[a->glist[g]], g);
}

static void ghost_free(struct varc *a, uint32_t g)
{
	ghost_unlink(a, g);
	map_drop(a, a->ghash[g], a->c + g);
	a->gnext[g] = a->gfree;
	a->gfree = g;
}

/* vLLM's insert: a hash stored again leaves whichever ghost held it,
 * without moving p. */
static void ghost_forget(struct varc *a, kvbm_hash h)
{
	const struct kvbm__hmap_entry *e = kvbm__hmap_find(&a->map, h);

	if (e && e->a >= a->c)
		ghost_free(a, e->a - a->c);
}

/* Remember h as evicted from list l. Trimming the oldest before the append
 * keeps each ghost at c entries, as vLLM's trim after a batch does: the
 * last c hashes evicted from a list are the same either way. */
static void ghost_push(struct varc *a, int l, kvbm_hash h)
{
	const struct kvbm__hmap_entry *e = kvbm__hmap_find(&a->map, h);

	if (e && e->a < a->c)
		return; /* a duplicate of h is still cached: not a ghost */
	if (e)
		ghost_free(a, e->a - a->c);
	if (a->b[l].size >= a->c)
		ghost_free(a, a->b[l].head);
	const uint32_t g = a->gfree;
	a->gfree = a->gnext[g];
	a->ghash[g] = h;
	a->glist[g] = (uint8_t)l;
	kvbm__dlist_append(a->gprev, a->gnext, &a->b[l], g);
	map_set(a, h, a->c + g);
}

/* Block b at the newest end of list l. */
static void place(struct varc *a, uint32_t b, int l)
{
	a->list[b] = (uint8_t)l;
	a->key[b] = ++a->clock;
	kvbm__dlist_append(a->prev, a->next, &a->t[l], b);
}

static void unlink_block(struct varc *a, uint32_t b)
{
	kvbm__dlist_unlink(a->prev, a->next, &a->t[a->list[b]], b);
}

static void drop(struct varc *a, uint32_t b)
{
	if (a->state[b] == OUT)
		return;
	unlink_block(a, b);
	map_drop(a, a->hash[b], b);
	a->state[b] = OUT;
}

/* A new block for h, newest in T1 (vLLM's insert). */
static void enter(struct varc *a, uint32_t b, kvbm_hash h, uint8_t state)
{
	ghost_forget(a, h);
	a->hash[b] = h;
	a->state[b] = state;
	place(a, b, T1);
	map_set(a, h, b);
}

static void varc_staged(void *st, uint32_t b, kvbm_hash h)
{
	struct varc *a = st;

	drop(a, b);
	enter(a, b, h, IN_FLIGHT);
}

static void varc_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct varc *a = st;

	if ((a->state[b] == IN_FLIGHT || a->state[b] == HELD) && a->hash[b] == e->hash) {
		a->state[b] = READY; /* written or unpinned: in place */
		return;
	}
	drop(a, b);
	if (a->stashed && a->stash_hash == e->hash) {
		/* A catalog restore, in ascending key order: the lists come
		 * back in the order and membership they had. */
		a->stashed = false;
		ghost_forget(a, e->hash);
		a->hash[b] = e->hash;
		a->state[b] = READY;
		a->list[b] = a->stash_list;
		a->key[b] = e->tick;
		if (a->clock < e->tick)
			a->clock = e->tick;
		kvbm__dlist_insert_by_key(a->prev, a->next, &a->t[a->list[b]], a->key, b);
		map_set(a, e->hash, b);
		return;
	}
	/* Back from a hit (a kvbm_match, which vLLM's manager never makes),
	 * or registered without staging: a store as vLLM would make it. */
	enter(a, b, e->hash, READY);
}

static void varc_remove(void *st, uint32_t b)
{
	drop(st, b);
}

static void varc_forget(void *st, uint32_t b)
{
	drop(st, b);
}

static void varc_hold(void *st, uint32_t b)
{
	struct varc *a = st;

	a->state[b] = HELD;
}

static void varc_use(void *st, kvbm_hash h)
{
	struct varc *a = st;
	const struct kvbm__hmap_entry *e = kvbm__hmap_find(&a->map, h);

	if (!e)
		return;
	const uint32_t node = e->a;
	if (node < a->c) {
		/* "Just prepared to be stored, not really touched twice." */
		const int to = a->list[node] == T1 && a->state[node] == IN_FLIGHT ? T1 : T2;
		unlink_block(a, node);
		place(a, node, to);
		return;
	}
	const uint32_t g = node - a->c;
	const double b1 = a->b[T1].size, b2 = a->b[T2].size;
	if (a->glist[g] == T1) {
		const double d = b2 / b1 > 1 ? b2 / b1 : 1;
		a->p = a->p + d < a->c ? a->p + d : a->c;
	} else {
		const double d = b1 / b2 > 1 ? b1 / b2 : 1;
		a->p = a->p - d > 0 ? a->p - d : 0;
	}
	const int l = a->glist[g];
	ghost_unlink(a, g);
	kvbm__dlist_append(a->gprev, a->gnext, &a->b[l], g);
}

/* The first block at or after b (along its list) that may be evicted. */
static uint32_t free_from(const struct varc *a, uint32_t b)
{
	while (b != KVBM__LIST_NIL && a->state[b] != READY)
		b = a->next[b];
	return b;
}

static bool from_t1(const struct varc *a, uint32_t t1_size)
{
	return t1_size >= (uint32_t)a->p; /* vLLM: virtual_t1_size >= int(p) */
}

static bool varc_victim(void *st, uint32_t *out)
{
	struct varc *a = st;
	uint32_t b = KVBM__LIST_NIL;
	int l = T1;

	if (from_t1(a, a->t[T1].size))
		b = free_from(a, a->t[T1].head);
	if (b == KVBM__LIST_NIL) {
		l = T2;
		b = free_from(a, a->t[T2].head);
	}
	if (b == KVBM__LIST_NIL) { /* vLLM fails here; kvbm's drains go on */
		l = T1;
		b = free_from(a, a->t[T1].head);
	}
	if (b == KVBM__LIST_NIL)
		return false;
	const kvbm_hash h = a->hash[b];
	drop(a, b);
	ghost_push(a, l, h);
	*out = b;
	return true;
}

/* vLLM's evict(n) choosing its candidates before it changes anything: the
 * next free block of a list is after the one chosen before. */
static bool varc_can_evict(void *st, uint32_t n)
{
	const struct varc *a = st;
	uint32_t t1_size = a->t[T1].size;
	uint32_t c1 = free_from(a, a->t[T1].head), c2 = free_from(a, a->t[T2].head);

	for (uint32_t i = 0; i < n; i++) {
		if (from_t1(a, t1_size) && c1 != KVBM__LIST_NIL) {
			c1 = free_from(a, a->next[c1]);
			t1_size--;
		} else if (c2 != KVBM__LIST_NIL) {
			c2 = free_from(a, a->next[c2]);
		} else {
			return false;
		}
	}
	return true;
}

static uint64_t varc_order_key(void *st, uint32_t b)
{
	return ((const struct varc *)st)->key[b];
}

static uint32_t varc_frequency(void *st, uint32_t b, kvbm_hash hash)
{
	const struct varc *a = st;

	return a->state[b] != OUT && a->hash[b] == hash && a->list[b] == T2;
}

static void varc_restore_frequency(void *st, kvbm_hash hash, uint32_t freq)
{
	struct varc *a = st;

	a->stash_hash = hash;
	a->stash_list = freq ? T2 : T1;
	a->stashed = true;
}

const struct kvbm__evict_ops kvbm__evict_vllm_arc = {
	.name = "vllm-arc",
	.create = varc_create,
	.destroy = varc_destroy,
	.insert = varc_insert,
	.remove = varc_remove,
	.victim = varc_victim,
	.order_key = varc_order_key,
	.frequency = varc_frequency,
	.restore_frequency = varc_restore_frequency,
	.staged = varc_staged,
	.forget = varc_forget,
	.hold = varc_hold,
	.use = varc_use,
	.can_evict = varc_can_evict,
};
