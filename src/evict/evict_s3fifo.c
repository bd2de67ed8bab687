/* SPDX-License-Identifier: Apache-2.0 */
/*
 * S3-FIFO (Yang et al., SOSP 2023), adapted to an inactive pool: a small
 * FIFO queue S takes blocks entering the pool for the first time, a main
 * queue M holds blocks that proved useful, and a ghost queue G remembers
 * the hashes recently evicted from S. Most cached blocks of an inference
 * server are used once (the unique tail of a prompt); S lets them go
 * quickly without passing through M, so the shared prefixes in M are not
 * flushed by a burst of one-off blocks, which is what hurts LRU.
 *
 *  - A block enters S, or M directly if its hash is in G (it was evicted
 *    too early once).
 *  - A hit takes the block out of the pool; when it returns it goes back
 *    to its old place in the same queue, with its 2-bit counter raised.
 *  - Victim: while S holds at least 10% of the pool, take S's oldest: if
 *    it was hit it moves to M, else it is evicted and its hash enters G.
 *    Otherwise take M's oldest: if its counter is non-zero it is
 *    decremented and the block re-queued (a second chance), else evicted.
 *
 * Parameters are the paper's, fixed for every capacity: S = 10% of the
 * pool, counters saturate at 3, G remembers as many hashes as there are
 * blocks. Queues are heaps keyed by queue-entry sequence so a returning
 * block regains its position. The catalog persists each block's queue and
 * counter as its frequency (counter + 4 if in M) and its queue key as the
 * order key; a restore rebuilds both.
 */
#include <stdlib.h>

#include "evict.h"
#include "evict_heap.h"
#include "evict_hmap.h"

enum { NOWHERE, SMALL, MAIN };
#define SMALL_PERCENT 10
#define FREQ_MAX 3

struct s3 {
	struct kvbm__heap small, main;
	uint8_t *where, *freq;
	kvbm_hash *hash;
	uint64_t seq;            /* queue-entry sequence */
	kvbm_hash *ghost;        /* ring of evicted hashes */
	uint32_t ghost_cap, ghost_head, ghost_count;
	struct kvbm__hmap ghost_index; /* hash -> ring slot (a), 1 (b) */
	kvbm_hash stash_hash;    /* restore_frequency() just before insert() */
	uint32_t stash_freq;
	bool stashed;
};

static void s3_destroy(void *st)
{
	struct s3 *s = st;

	if (!s)
		return;
	kvbm__heap_free(&s->small);
	kvbm__heap_free(&s->main);
	free(s->where);
	free(s->freq);
	free(s->hash);
	free(s->ghost);
	free(s->ghost_index.e);
	free(s);
}

static kvbm_status s3_create(const struct kvbm__evict_params *p, void **out)
{
	struct s3 *s = calloc(1, sizeof(*s));

	if (!s)
		return KVBM_E_NOMEM;
	s->ghost_cap = p->block_count;
	const bool ok = kvbm__heap_init(&s->small, p->block_count) == KVBM_OK &&
			kvbm__heap_init(&s->main, p->block_count) == KVBM_OK &&
			(s->where = calloc(p->block_count, 1)) &&
			(s->freq = calloc(p->block_count, 1)) &&
			(s->hash = calloc(p->block_count, sizeof(*s->hash))) &&
			(s->ghost = malloc((size_t)s->ghost_cap * sizeof(*s->ghost))) &&
			kvbm__hmap_init(&s->ghost_index, s->ghost_cap) == KVBM_OK;
	if (!ok) {
		s3_destroy(s);
		return KVBM_E_NOMEM;
	}
	*out = s;
	return KVBM_OK;
}

static void ghost_add(struct s3 *s, kvbm_hash h)
{
	if (s->ghost_count == s->ghost_cap) {
		const uint32_t old = s->ghost_head;
		struct kvbm__hmap_entry *e = kvbm__hmap_find(&s->ghost_index, s->ghost[old]);
		if (e && e->a == old)
			kvbm__hmap_erase(&s->ghost_index, e);
		s->ghost_head = (s->ghost_head + 1) % s->ghost_cap;
		s->ghost_count--;
	}
	const uint32_t slot = (s->ghost_head + s->ghost_count) % s->ghost_cap;
	s->ghost[slot] = h;
	s->ghost_count++;
	kvbm__hmap_get(&s->ghost_index, h, slot, 1)->a = slot;
}

/* True if h was in G; it leaves G either way. */
static bool ghost_take(struct s3 *s, kvbm_hash h)
{
	struct kvbm__hmap_entry *e = kvbm__hmap_find(&s->ghost_index, h);

	if (!e)
		return false;
	kvbm__hmap_erase(&s->ghost_index, e);
	return true;
}

static void enqueue(struct s3 *s, uint32_t b, int where, uint64_t key)
{
	s->where[b] = (uint8_t)where;
	kvbm__heap_push(where == SMALL ? &s->small : &s->main, b, key);
}

static void s3_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct s3 *s = st;

	if (e->tick > s->seq)
		s->seq = e->tick;
	if (s->stashed && s->stash_hash == e->hash) {
		/* Restore: the queue and counter the catalog recorded. */
		s->stashed = false;
		s->hash[b] = e->hash;
		s->freq[b] = (uint8_t)(s->stash_freq & 3);
		enqueue(s, b, s->stash_freq & 4 ? MAIN : SMALL, e->tick);
		return;
	}
	if (s->hash[b] == e->hash && s->where[b] != NOWHERE && e->first_tick != e->tick) {
		/* Back from a hit: same queue, same place, counter up. */
		if (s->freq[b] < FREQ_MAX)
			s->freq[b]++;
		enqueue(s, b, s->where[b], (s->where[b] == SMALL ? s->small : s->main).key[b]);
		return;
	}
	s->hash[b] = e->hash;
	s->freq[b] = 0;
	enqueue(s, b, ghost_take(s, e->hash) ? MAIN : SMALL, ++s->seq);
}

static void s3_remove(void *st, uint32_t b)
{
	struct s3 *s = st;

	/* where[b] stays: the block returns to this queue after its hit. */
	kvbm__heap_remove(s->where[b] == SMALL ? &s->small : &s->main, b);
}

static bool s3_victim(void *st, uint32_t *out)
{
	struct s3 *s = st;

	for (;;) {
		const uint32_t total = s->small.size + s->main.size;
		if (total == 0)
			return false;
		if (s->small.size > 0 &&
		    (s->main.size == 0 || (uint64_t)s->small.size * 100 >= (uint64_t)total * SMALL_PERCENT)) {
			const uint32_t b = kvbm__heap_min(&s->small);
			kvbm__heap_remove(&s->small, b);
			if (s->freq[b] > 0) {
				s->freq[b] = 0;
				enqueue(s, b, MAIN, ++s->seq);
				continue;
			}
			ghost_add(s, s->hash[b]);
			s->where[b] = NOWHERE;
			*out = b;
			return true;
		}
		const uint32_t b = kvbm__heap_min(&s->main);
		kvbm__heap_remove(&s->main, b);
		if (s->freq[b] > 0) {
			s->freq[b]--;
			enqueue(s, b, MAIN, ++s->seq);
			continue;
		}
		s->where[b] = NOWHERE;
		*out = b;
		return true;
	}
}

static uint64_t s3_order_key(void *st, uint32_t b)
{
	const struct s3 *s = st;

	return (s->where[b] == SMALL ? s->small : s->main).key[b];
}

static uint32_t s3_frequency(void *st, uint32_t b, kvbm_hash hash)
{
	const struct s3 *s = st;

	if (s->hash[b] != hash || s->where[b] == NOWHERE)
		return 0; /* registered, never in the pool yet: a newcomer */
	return s->freq[b] | (s->where[b] == MAIN ? 4u : 0u);
}

static void s3_restore_frequency(void *st, kvbm_hash hash, uint32_t freq)
{
	struct s3 *s = st;

	s->stash_hash = hash;
	s->stash_freq = freq & 7;
	s->stashed = true;
}

const struct kvbm__evict_ops kvbm__evict_s3fifo = {
	.name = "s3fifo",
	.create = s3_create,
	.destroy = s3_destroy,
	.insert = s3_insert,
	.remove = s3_remove,
	.victim = s3_victim,
	.order_key = s3_order_key,
	.frequency = s3_frequency,
	.restore_frequency = s3_restore_frequency,
};
