/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Two queues with a ghost, after 2Q (Johnson and Shasha, VLDB 1994): a
 * probation LRU for blocks used once, a protected LRU for blocks used at
 * least twice, and a ghost list of recently evicted hashes. On a prefix
 * cache most blocks are the unique tail of one prompt and never return,
 * while a block that came back once is likely to come back again (on the
 * Mooncake trace: 42% of blocks are ever reused, 84% of reused ones are
 * reused again). So:
 *
 *  - a newly registered block enters probation, unless its hash is in the
 *    ghost (it was evicted and asked for again): then it is protected;
 *  - a block that returns to the pool after a hit is protected;
 *  - the victim is probation's least recently released block, and only
 *    when probation is empty protected's; every victim's hash enters the
 *    ghost.
 *
 * The one parameter is the ghost's span: the last 4 x block_count evicted
 * hashes (8 bytes each in a direct-mapped table, far below one KV block's
 * size), because reuse distances on real traces run to several cache
 * capacities. Kept for every capacity. The
 * catalog persists a block's queue as its frequency (1 protected) and its
 * release tick as the order key; a restore rebuilds both.
 */
#include <stdlib.h>

#include "evict.h"
#include "evict_ghost.h"
#include "evict_list.h"

#define GHOST_PER_BLOCK 4
enum { PROBATION, PROTECTED };

struct tq {
	uint32_t *prev, *next;
	uint64_t *key;
	uint8_t *queue;
	kvbm_hash *hash;
	struct kvbm__dlist queues[2];
	struct kvbm__ghost ghost;
	kvbm_hash stash_hash;          /* restore_frequency() just before insert() */
	uint32_t stash_queue;
	bool stashed;
};

static void tq_destroy(void *st)
{
	struct tq *t = st;

	if (!t)
		return;
	free(t->prev);
	free(t->next);
	free(t->key);
	free(t->queue);
	free(t->hash);
	kvbm__ghost_free(&t->ghost);
	free(t);
}

static kvbm_status tq_create(const struct kvbm__evict_params *p, void **out)
{
	struct tq *t = calloc(1, sizeof(*t));

	if (!t)
		return KVBM_E_NOMEM;
	const uint32_t span = p->block_count > UINT32_MAX / GHOST_PER_BLOCK
				      ? UINT32_MAX
				      : p->block_count * GHOST_PER_BLOCK;
	const bool ok = (t->prev = malloc(p->block_count * sizeof(*t->prev))) &&
			(t->next = malloc(p->block_count * sizeof(*t->next))) &&
			(t->key = malloc(p->block_count * sizeof(*t->key))) &&
			(t->queue = calloc(p->block_count, 1)) &&
			(t->hash = calloc(p->block_count, sizeof(*t->hash))) &&
			kvbm__ghost_init(&t->ghost, span) == KVBM_OK;
	if (!ok) {
		tq_destroy(t);
		return KVBM_E_NOMEM;
	}
	kvbm__dlist_init(&t->queues[PROBATION]);
	kvbm__dlist_init(&t->queues[PROTECTED]);
	*out = t;
	return KVBM_OK;
}

static void append(struct tq *t, uint32_t b, int q, uint64_t key)
{
	t->queue[b] = (uint8_t)q;
	t->key[b] = key;
	kvbm__dlist_append(t->prev, t->next, &t->queues[q], b);
}

static void tq_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct tq *t = st;
	int q;

	if (t->stashed && t->stash_hash == e->hash) {
		t->stashed = false; /* restore: the queue the catalog recorded */
		q = t->stash_queue ? PROTECTED : PROBATION;
	} else if (e->first_tick != e->tick && t->hash[b] == e->hash) {
		q = PROTECTED; /* back from a hit */
	} else {
		q = kvbm__ghost_take(&t->ghost, e->hash) ? PROTECTED : PROBATION;
	}
	t->hash[b] = e->hash;
	append(t, b, q, e->tick);
}

static void tq_remove(void *st, uint32_t b)
{
	struct tq *t = st;

	kvbm__dlist_unlink(t->prev, t->next, &t->queues[t->queue[b]], b);
}

static bool tq_victim(void *st, uint32_t *out)
{
	struct tq *t = st;
	const int q = t->queues[PROBATION].size ? PROBATION : PROTECTED;
	const uint32_t b = t->queues[q].head;

	if (b == KVBM__LIST_NIL)
		return false;
	tq_remove(t, b);
	kvbm__ghost_add(&t->ghost, t->hash[b]);
	*out = b;
	return true;
}

/* The reserve gives victim b back: it was never evicted, so its ghost
 * entry goes (a later registration of the hash is no ghost hit). */
static void tq_unevict(void *st, uint32_t b)
{
	struct tq *t = st;

	(void)kvbm__ghost_take(&t->ghost, t->hash[b]);
}

static void tq_touch(void *st, kvbm_hash hash, bool registered)
{
	if (registered) /* a hit's release looks nothing up */
		kvbm__ghost_prefetch(&((struct tq *)st)->ghost, hash);
}

static uint64_t tq_order_key(void *st, uint32_t b)
{
	return ((const struct tq *)st)->key[b];
}

static uint32_t tq_frequency(void *st, uint32_t b, kvbm_hash hash)
{
	const struct tq *t = st;

	/* An active block that was never released is a newcomer. */
	return t->hash[b] == hash && t->queue[b] == PROTECTED ? 1 : 0;
}

static void tq_restore_frequency(void *st, kvbm_hash hash, uint32_t freq)
{
	struct tq *t = st;

	t->stash_hash = hash;
	t->stash_queue = freq != 0;
	t->stashed = true;
}

/* Probation drains before protected, and a victim moves nothing else. */
static uint32_t tq_peek(void *st, uint32_t n, uint32_t *out, uint32_t *scratch)
{
	const struct tq *t = st;
	uint32_t got = kvbm__dlist_peek(t->next, &t->queues[PROBATION], n, out);

	(void)scratch;
	return got + kvbm__dlist_peek(t->next, &t->queues[PROTECTED], n - got, out + got);
}

const struct kvbm__evict_ops kvbm__evict_two_queue = {
	.name = "2q",
	.create = tq_create,
	.destroy = tq_destroy,
	.insert = tq_insert,
	.remove = tq_remove,
	.victim = tq_victim,
	.unevict = tq_unevict,

	.peek = tq_peek,
	.order_key = tq_order_key,
	.touch = tq_touch,
	.frequency = tq_frequency,
	.restore_frequency = tq_restore_frequency,
};
