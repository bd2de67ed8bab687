/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fixed-capacity hash map from sequence hash to two u32 values, for
 * policies that must find blocks by hash (a parent, a ghost entry). Open
 * addressing, linear probing, Fibonacci hashing, backward-shift deletion;
 * sized at create for the most entries it can hold at load <= 1/2, so it
 * never allocates afterwards. An entry is free when a == UINT32_MAX and
 * b == 0; callers never store that pair.
 */
#ifndef KVBM_EVICT_HMAP_H
#define KVBM_EVICT_HMAP_H

#include <stdlib.h>

#include "kvbm.h"

struct kvbm__hmap_entry {
	kvbm_hash key;
	uint32_t a, b;
};

struct kvbm__hmap {
	struct kvbm__hmap_entry *e;
	uint64_t mask;
	unsigned shift;
};

static inline bool kvbm__hmap_free_slot(const struct kvbm__hmap_entry *e)
{
	return e->a == UINT32_MAX && e->b == 0;
}

static inline kvbm_status kvbm__hmap_init(struct kvbm__hmap *m, uint32_t max_entries)
{
	uint64_t cap = 16;
	unsigned bits = 4;

	while (cap < 2ull * max_entries) {
		cap <<= 1;
		bits++;
	}
	m->e = malloc(cap * sizeof(*m->e));
	if (!m->e)
		return KVBM_E_NOMEM;
	for (uint64_t i = 0; i < cap; i++)
		m->e[i] = (struct kvbm__hmap_entry){.a = UINT32_MAX};
	m->mask = cap - 1;
	m->shift = 64 - bits;
	return KVBM_OK;
}

static inline uint64_t kvbm__hmap_home(const struct kvbm__hmap *m, kvbm_hash k)
{
	return (k * 0x9E3779B97F4A7C15ull) >> m->shift;
}

/* The entry of key, or NULL. */
static inline struct kvbm__hmap_entry *kvbm__hmap_find(struct kvbm__hmap *m, kvbm_hash k)
{
	for (uint64_t i = kvbm__hmap_home(m, k);; i = (i + 1) & m->mask) {
		if (kvbm__hmap_free_slot(&m->e[i]))
			return NULL;
		if (m->e[i].key == k)
			return &m->e[i];
	}
}

/* The entry of key, created as (a, b) if absent. */
static inline struct kvbm__hmap_entry *kvbm__hmap_get(struct kvbm__hmap *m, kvbm_hash k,
						      uint32_t a, uint32_t b)
{
	uint64_t i = kvbm__hmap_home(m, k);

	for (; !kvbm__hmap_free_slot(&m->e[i]); i = (i + 1) & m->mask)
		if (m->e[i].key == k)
			return &m->e[i];
	m->e[i] = (struct kvbm__hmap_entry){.key = k, .a = a, .b = b};
	return &m->e[i];
}

/* Remove the entry e points at (from find/get). */
static inline void kvbm__hmap_erase(struct kvbm__hmap *m, struct kvbm__hmap_entry *e)
{
	uint64_t hole = (uint64_t)(e - m->e);

	for (uint64_t j = (hole + 1) & m->mask; !kvbm__hmap_free_slot(&m->e[j]);
	     j = (j + 1) & m->mask) {
		const uint64_t h = kvbm__hmap_home(m, m->e[j].key);
		if (((j - h) & m->mask) >= ((j - hole) & m->mask)) {
			m->e[hole] = m->e[j];
			hole = j;
		}
	}
	m->e[hole] = (struct kvbm__hmap_entry){.a = UINT32_MAX};
}

#endif /* KVBM_EVICT_HMAP_H */
