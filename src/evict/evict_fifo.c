/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FIFO: evict in the order registrations first entered the inactive pool.
 * Unlike LRU, a hit does not refresh a block: when it is released again it
 * goes back to its original place. Fresh blocks released tail first still
 * enter tail first, so continuations go before their prefixes. A binary
 * min-heap on the first-entry tick (with each block's heap index, for
 * O(log n) removal on a hit) keeps returning blocks in their old place.
 */
#include <stdlib.h>

#include "evict.h"
#include "evict_heap.h"

#define NIL UINT32_MAX

struct fifo {
	uint32_t *heap;  /* block ids, heap-ordered by key */
	uint32_t *index; /* block -> heap position */
	uint64_t *key;   /* block -> first-entry tick */
	uint32_t size;
};

static void fifo_destroy(void *st)
{
	struct fifo *f = st;

	if (!f)
		return;
	free(f->heap);
	free(f->index);
	free(f->key);
	free(f);
}

static kvbm_status fifo_create(const struct kvbm__evict_params *p, void **out)
{
	struct fifo *f = calloc(1, sizeof(*f));

	if (!f)
		return KVBM_E_NOMEM;
	f->heap = malloc(p->block_count * sizeof(*f->heap));
	f->index = malloc(p->block_count * sizeof(*f->index));
	f->key = malloc(p->block_count * sizeof(*f->key));
	if (!f->heap || !f->index || !f->key) {
		fifo_destroy(f);
		return KVBM_E_NOMEM;
	}
	*out = f;
	return KVBM_OK;
}

static void place(struct fifo *f, uint32_t pos, uint32_t b)
{
	f->heap[pos] = b;
	f->index[b] = pos;
}

static void sift_up(struct fifo *f, uint32_t pos)
{
	const uint32_t b = f->heap[pos];

	while (pos > 0) {
		const uint32_t parent = (pos - 1) / 2;
		if (f->key[f->heap[parent]] <= f->key[b])
			break;
		place(f, pos, f->heap[parent]);
		pos = parent;
	}
	place(f, pos, b);
}

static void sift_down(struct fifo *f, uint32_t pos)
{
	const uint32_t b = f->heap[pos];

	for (;;) {
		uint32_t child = 2 * pos + 1;
		if (child >= f->size)
			break;
		if (child + 1 < f->size && f->key[f->heap[child + 1]] < f->key[f->heap[child]])
			child++;
		if (f->key[f->heap[child]] >= f->key[b])
			break;
		place(f, pos, f->heap[child]);
		pos = child;
	}
	place(f, pos, b);
}

static void fifo_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct fifo *f = st;

	f->key[b] = e->first_tick;
	place(f, f->size++, b);
	sift_up(f, f->size - 1);
}

static void fifo_remove(void *st, uint32_t b)
{
	struct fifo *f = st;
	const uint32_t pos = f->index[b];
	const uint32_t last = f->heap[--f->size];

	if (pos == f->size)
		return;
	place(f, pos, last);
	sift_down(f, pos);
	sift_up(f, f->index[last]);
}

static bool fifo_victim(void *st, uint32_t *b)
{
	struct fifo *f = st;

	if (f->size == 0)
		return false;
	*b = f->heap[0];
	fifo_remove(f, *b);
	return true;
}

static uint64_t fifo_order_key(void *st, uint32_t b)
{
	const struct fifo *f = st;

	return f->key[b];
}

static uint32_t fifo_peek(void *st, uint32_t n, uint32_t *out, uint32_t *scratch)
{
	const struct fifo *f = st;

	return kvbm__heap_peek_ids(f->heap, f->size, f->key, n, out, scratch);
}

const struct kvbm__evict_ops kvbm__evict_fifo = {
	.name = "fifo",
	.create = fifo_create,
	.destroy = fifo_destroy,
	.insert = fifo_insert,
	.remove = fifo_remove,
	.victim = fifo_victim,
	.peek = fifo_peek,
	.order_key = fifo_order_key,
};
