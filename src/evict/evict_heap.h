/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An indexed binary min-heap of block ids ordered by a 64-bit key per
 * block, for policies whose victim is "the smallest key" and whose blocks
 * leave from the middle (hits): push, pop, remove and re-key in O(log n),
 * all arrays sized once for block_count, no allocation afterwards.
 */
#ifndef KVBM_EVICT_HEAP_H
#define KVBM_EVICT_HEAP_H

#include <stdlib.h>

#include "kvbm.h"

struct kvbm__heap {
	uint32_t *ids;   /* heap order */
	uint32_t *pos;   /* block -> index in ids */
	uint64_t *key;   /* block -> key */
	uint32_t size;
};

static inline kvbm_status kvbm__heap_init(struct kvbm__heap *h, uint32_t blocks)
{
	h->ids = malloc((size_t)blocks * sizeof(*h->ids));
	h->pos = malloc((size_t)blocks * sizeof(*h->pos));
	h->key = malloc((size_t)blocks * sizeof(*h->key));
	h->size = 0;
	return h->ids && h->pos && h->key ? KVBM_OK : KVBM_E_NOMEM;
}

static inline void kvbm__heap_free(struct kvbm__heap *h)
{
	free(h->ids);
	free(h->pos);
	free(h->key);
}

static inline void kvbm__heap_place(struct kvbm__heap *h, uint32_t i, uint32_t b)
{
	h->ids[i] = b;
	h->pos[b] = i;
}

static inline void kvbm__heap_up(struct kvbm__heap *h, uint32_t i)
{
	const uint32_t b = h->ids[i];

	while (i > 0) {
		const uint32_t parent = (i - 1) / 2;
		if (h->key[h->ids[parent]] <= h->key[b])
			break;
		kvbm__heap_place(h, i, h->ids[parent]);
		i = parent;
	}
	kvbm__heap_place(h, i, b);
}

static inline void kvbm__heap_down(struct kvbm__heap *h, uint32_t i)
{
	const uint32_t b = h->ids[i];

	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= h->size)
			break;
		if (c + 1 < h->size && h->key[h->ids[c + 1]] < h->key[h->ids[c]])
			c++;
		if (h->key[h->ids[c]] >= h->key[b])
			break;
		kvbm__heap_place(h, i, h->ids[c]);
		i = c;
	}
	kvbm__heap_place(h, i, b);
}

static inline void kvbm__heap_push(struct kvbm__heap *h, uint32_t b, uint64_t key)
{
	h->key[b] = key;
	kvbm__heap_place(h, h->size++, b);
	kvbm__heap_up(h, h->size - 1);
}

static inline void kvbm__heap_remove(struct kvbm__heap *h, uint32_t b)
{
	const uint32_t i = h->pos[b], last = h->ids[--h->size];

	if (last == b)
		return;
	kvbm__heap_place(h, i, last);
	kvbm__heap_up(h, i);
	kvbm__heap_down(h, h->pos[last]);
}

static inline void kvbm__heap_rekey(struct kvbm__heap *h, uint32_t b, uint64_t key)
{
	h->key[b] = key;
	kvbm__heap_up(h, h->pos[b]);
	kvbm__heap_down(h, h->pos[b]);
}

/* Smallest-key block, or UINT32_MAX when empty. */
static inline uint32_t kvbm__heap_min(const struct kvbm__heap *h)
{
	return h->size ? h->ids[0] : UINT32_MAX;
}

/* The n smallest-key entries of a binary heap (ids in heap order, key per
 * block), smallest first, without touching it: a second heap of candidate
 * positions starts at the root, and each position taken adds its two
 * children, so it never holds more than 2n + 1 (scratch). Equal keys come
 * out in an order the real heap's pops need not share; kvbm's keys are
 * release ticks, which are unique. */
static inline uint32_t kvbm__heap_peek_ids(const uint32_t *ids, uint32_t size, const uint64_t *key,
					   uint32_t n, uint32_t *out, uint32_t *scratch)
{
	uint32_t got = 0, cand = 0;

#define KVBM__PK(i) key[ids[scratch[i]]]
	if (size)
		scratch[cand++] = 0;
	while (got < n && cand) {
		const uint32_t pos = scratch[0];
		out[got++] = ids[pos];
		/* pop the candidate heap's root, then push pos's children */
		scratch[0] = scratch[--cand];
		for (uint32_t i = 0;;) {
			uint32_t c = 2 * i + 1;
			if (c >= cand)
				break;
			if (c + 1 < cand && KVBM__PK(c + 1) < KVBM__PK(c))
				c++;
			if (KVBM__PK(c) >= KVBM__PK(i))
				break;
			const uint32_t t = scratch[i];
			scratch[i] = scratch[c];
			scratch[c] = t;
			i = c;
		}
		for (uint32_t child = 2 * pos + 1; child <= 2 * pos + 2 && child < size; child++) {
			uint32_t i = cand++;
			scratch[i] = child;
			while (i > 0 && KVBM__PK((i - 1) / 2) > KVBM__PK(i)) {
				const uint32_t t = scratch[i];
				scratch[i] = scratch[(i - 1) / 2];
				scratch[(i - 1) / 2] = t;
				i = (i - 1) / 2;
			}
		}
	}
#undef KVBM__PK
	return got;
}

#endif /* KVBM_EVICT_HEAP_H */
