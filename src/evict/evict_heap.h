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

#endif /* KVBM_EVICT_HEAP_H */
