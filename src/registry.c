/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hash -> block table of the registry. Sequence hashes are XXH3 outputs,
 * but callers may also register small or sequential values, so the slot
 * index comes from Fibonacci hashing (one multiply) rather than the low
 * bits. Load factor stays at or below 1/2, which keeps linear probes short
 * and lets deletion shift entries back instead of leaving tombstones.
 */
#include <assert.h>
#include <sched.h>
#include <stdlib.h>

#include "registry.h"
#include "table_alloc.h"

#define EMPTY UINT32_MAX
/* An entry a shared insert has claimed but not yet filled (block ids are
 * below KVBM_MAX_BLOCKS). */
#define BUSY (UINT32_MAX - 1)

kvbm_status kvbm__registry_init(struct kvbm__registry *r, uint32_t max_entries)
{
	uint64_t cap = 16;
	uint32_t bits = 4;

	while (cap < 2ull * max_entries) {
		cap <<= 1;
		bits++;
	}
	r->slots = kvbm__table_alloc(cap * sizeof(*r->slots));
	if (!r->slots)
		return KVBM_E_NOMEM;
	for (uint64_t i = 0; i < cap; i++)
		r->slots[i].block = EMPTY;
	r->mask = cap - 1;
	r->shift = 64 - bits;
	r->count = 0;
	r->presence = NULL;
	r->presence_bit = 0;
	return KVBM_OK;
}

void kvbm__registry_free(struct kvbm__registry *r)
{
	kvbm__table_free(r->slots, (r->mask + 1) * sizeof(*r->slots));
	r->slots = NULL;
}

uint32_t kvbm__registry_find(const struct kvbm__registry *r, kvbm_hash hash)
{
	for (uint64_t i = kvbm__registry_home(r, hash);; i = (i + 1) & r->mask) {
		const struct kvbm__registry_entry *e = &r->slots[i];
		if (e->block == EMPTY)
			return EMPTY;
		if (e->hash == hash)
			return e->block;
	}
}

void kvbm__registry_insert(struct kvbm__registry *r, kvbm_hash hash, uint32_t block)
{
	uint64_t i = kvbm__registry_home(r, hash);

	while (r->slots[i].block != EMPTY)
		i = (i + 1) & r->mask;
	r->slots[i].hash = hash;
	r->slots[i].block = block;
	r->count++;
	if (r->presence)
		kvbm__presence_set(r->presence, hash, r->presence_bit);
}

/* An entry is claimed by moving its block from EMPTY to BUSY, filled, then
 * published by storing the block with release order: a thread that finds
 * a block other than EMPTY or BUSY (acquire) sees the hash beside it. */
bool kvbm__registry_insert_shared(struct kvbm__registry *r, kvbm_hash hash, uint32_t block)
{
	for (uint64_t i = kvbm__registry_home(r, hash);; i = (i + 1) & r->mask) {
		struct kvbm__registry_entry *e = &r->slots[i];
		uint32_t b = __atomic_load_n(&e->block, __ATOMIC_ACQUIRE);
		if (b == EMPTY) {
			if (__atomic_compare_exchange_n(&e->block, &b, BUSY, false, __ATOMIC_ACQUIRE,
							__ATOMIC_ACQUIRE)) {
				e->hash = hash;
				__atomic_store_n(&e->block, block, __ATOMIC_RELEASE);
				/* A restore runs at open, before any hierarchy
				 * can hold the tier: no index to update. */
				assert(!r->presence);
				return true;
			}
		}
		/* Another thread is between its claim and its store. */
		while (b == BUSY) {
			sched_yield();
			b = __atomic_load_n(&e->block, __ATOMIC_ACQUIRE);
		}
		if (e->hash == hash)
			return false;
	}
}

void kvbm__registry_clear(struct kvbm__registry *r)
{
	for (uint64_t i = 0; i <= r->mask; i++) {
		if (r->presence && r->slots[i].block != EMPTY)
			kvbm__presence_clear(r->presence, r->slots[i].hash, r->presence_bit);
		r->slots[i].block = EMPTY;
	}
	r->count = 0;
}

bool kvbm__registry_remove(struct kvbm__registry *r, kvbm_hash hash)
{
	uint64_t i = kvbm__registry_home(r, hash);

	for (;; i = (i + 1) & r->mask) {
		if (r->slots[i].block == EMPTY)
			return false;
		if (r->slots[i].hash == hash)
			break;
	}
	/* Backward-shift deletion: move later entries of the probe run into
	 * the hole when their home slot does not lie between hole and them. */
	uint64_t hole = i;
	for (uint64_t j = (i + 1) & r->mask; r->slots[j].block != EMPTY;
	     j = (j + 1) & r->mask) {
		const uint64_t h = kvbm__registry_home(r, r->slots[j].hash);
		const bool movable = ((j - h) & r->mask) >= ((j - hole) & r->mask);
		if (movable) {
			r->slots[hole] = r->slots[j];
			hole = j;
		}
	}
	r->slots[hole].block = EMPTY;
	r->count--;
	if (r->presence)
		kvbm__presence_clear(r->presence, hash, r->presence_bit);
	return true;
}
