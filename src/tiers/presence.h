/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The presence index of a hierarchy (presence.c): sequence hash -> mask
 * of the tiers whose registry holds it, so a cross-tier lookup is one
 * probe per hash whatever the number of tiers. Each member tier's
 * registry updates it (registry.c) under that tier's lock; tiers write
 * concurrently with each other and with lock-free readers, so the index
 * synchronises itself (striped seqlocks, see presence.c). It does not
 * know managers or locks: the hierarchy attaches and detaches it.
 */
#ifndef KVBM_PRESENCE_H
#define KVBM_PRESENCE_H

#include "kvbm.h"

struct kvbm__presence_entry {
	kvbm_hash hash;
	uint32_t mask; /* bit t: tier t holds hash; 0 = empty slot */
	uint32_t pad;
};

struct kvbm__presence {
	struct kvbm__presence_entry *slots;
	uint32_t *seq;       /* per stripe: odd while a writer holds it */
	uint64_t mask;       /* capacity - 1, capacity a power of two >= 2 * max entries */
	uint32_t shift;      /* 64 - log2(capacity), for Fibonacci hashing */
	uint32_t stripe_bits; /* log2(slots per stripe) */
	uint32_t stripes;
};

/* An index for up to max_entries hashes (the sum of the tiers' block
 * counts): allocated once, never grows. KVBM_E_NOMEM. */
kvbm_status kvbm__presence_new(uint64_t max_entries, struct kvbm__presence **out);
void kvbm__presence_free(struct kvbm__presence *p);

static inline uint64_t kvbm__presence_home(const struct kvbm__presence *p, kvbm_hash h)
{
	return (h * 0x9E3779B97F4A7C15ull) >> p->shift;
}

/* Start loading hash's home slot, e.g. while the registry's own probe
 * misses the cache, so the index's miss overlaps it. */
static inline void kvbm__presence_prefetch(const struct kvbm__presence *p, kvbm_hash hash)
{
	__builtin_prefetch(&p->slots[kvbm__presence_home(p, hash)]);
}

/* Tier `bit` now holds hash / no longer holds it. Any thread; concurrent
 * with other writers and readers. A tier's own calls must be serialised
 * (its manager lock does it), and set only a bit it does not hold. */
void kvbm__presence_set(struct kvbm__presence *p, kvbm_hash hash, uint32_t bit);
void kvbm__presence_clear(struct kvbm__presence *p, kvbm_hash hash, uint32_t bit);

/* masks[i] = the tier mask of hashes[i], each a consistent snapshot of
 * that hash's entry (0 if no tier holds it). Lock-free; any thread. */
void kvbm__presence_lookup(struct kvbm__presence *p, const kvbm_hash *hashes, uint32_t n,
			   uint8_t *masks);

#endif /* KVBM_PRESENCE_H */
