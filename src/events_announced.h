/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What each tier has announced through a ZeroMQ publisher (events_zmq.c),
 * so a manager's CLEARED can be sent as a BlockRemoved of its own blocks.
 */
#ifndef KVBM_EVENTS_ANNOUNCED_H
#define KVBM_EVENTS_ANNOUNCED_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Routers apply AllBlocksCleared to the whole worker (llm-d: "pod-wide
 * ... across all tiers"; Dynamo clears the worker), while a kvbm CLEARED
 * is about one manager. So a publisher sends AllBlocksCleared only in its
 * first batch (a new worker process: whatever a router holds for it is
 * gone) and turns every later CLEARED (another manager opening, a
 * memory-only manager closing, an event overflow) into a BlockRemoved of
 * exactly the hashes that manager's tier announced through it. That needs
 * the announced set: an open-addressing set of hashes per tier, 8 bytes a
 * slot, at most half full. */

struct kvbm__announced {
	char *tier;
	uint64_t *slots; /* 0 = empty; hash 0 is kept in has_zero */
	uint32_t cap, count;
	bool has_zero;
};

static inline uint32_t kvbm__announced_slot(const struct kvbm__announced *t, uint64_t h)
{
	return (uint32_t)((h * 0x9e3779b97f4a7c15ull) >> 32) & (t->cap - 1);
}

static inline bool kvbm__announced_grow(struct kvbm__announced *t)
{
	const uint32_t cap = t->cap ? t->cap * 2 : 64;
	uint64_t *slots = calloc(cap, sizeof(*slots));

	if (!slots)
		return false;
	uint64_t *old = t->slots;
	const uint32_t old_cap = t->cap;
	t->slots = slots;
	t->cap = cap;
	for (uint32_t i = 0; i < old_cap; i++)
		if (old[i]) {
			uint32_t j = kvbm__announced_slot(t, old[i]);
			while (t->slots[j])
				j = (j + 1) & (cap - 1);
			t->slots[j] = old[i];
		}
	free(old);
	return true;
}

static inline bool kvbm__announced_add(struct kvbm__announced *t, uint64_t h)
{
	if (h == 0) {
		t->has_zero = true;
		return true;
	}
	if ((t->count + 1) * 2 > t->cap && !kvbm__announced_grow(t))
		return false;
	uint32_t j = kvbm__announced_slot(t, h);
	while (t->slots[j] && t->slots[j] != h)
		j = (j + 1) & (t->cap - 1);
	if (!t->slots[j]) {
		t->slots[j] = h;
		t->count++;
	}
	return true;
}

/* Linear-probing delete with backward shift (no tombstones). */
static inline void kvbm__announced_del(struct kvbm__announced *t, uint64_t h)
{
	if (h == 0) {
		t->has_zero = false;
		return;
	}
	if (!t->cap)
		return;
	uint32_t j = kvbm__announced_slot(t, h);
	while (t->slots[j] && t->slots[j] != h)
		j = (j + 1) & (t->cap - 1);
	if (!t->slots[j])
		return;
	t->slots[j] = 0;
	t->count--;
	for (uint32_t k = (j + 1) & (t->cap - 1); t->slots[k]; k = (k + 1) & (t->cap - 1)) {
		const uint32_t home = kvbm__announced_slot(t, t->slots[k]);
		/* move k to the hole j unless its home lies in (j, k] */
		if (((k - home) & (t->cap - 1)) >= ((k - j) & (t->cap - 1))) {
			t->slots[j] = t->slots[k];
			t->slots[k] = 0;
			j = k;
		}
	}
}

#endif /* KVBM_EVENTS_ANNOUNCED_H */
