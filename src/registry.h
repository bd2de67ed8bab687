/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry: sequence hash -> block id, one entry per registered hash
 * (the primary, or the inactive block that holds it). Open addressing with
 * linear probing and backward-shift deletion, sized at open for the most
 * entries it can ever hold (one per block), so it never grows or
 * allocates after kvbm__registry_init. Not thread-safe by itself: the
 * manager lock guards it. A tier in a hierarchy also mirrors every change
 * into the hierarchy's presence index (src/tiers/presence.h), from here,
 * so that no path that changes the registry can miss it.
 */
#ifndef KVBM_REGISTRY_H
#define KVBM_REGISTRY_H

#include "kvbm.h"
#include "tiers/presence.h"

struct kvbm__registry_entry {
	kvbm_hash hash;
	uint32_t block; /* UINT32_MAX = empty */
};

struct kvbm__registry {
	struct kvbm__registry_entry *slots;
	uint64_t mask;     /* capacity - 1, capacity a power of two >= 2 * max entries */
	uint32_t shift;    /* 64 - log2(capacity), for Fibonacci hashing */
	uint32_t count;
	/* The presence index of the hierarchy this tier is in, NULL outside
	 * one (kvbm_hierarchy_create/free set it under the manager lock);
	 * every insertion and removal sets or clears bit presence_bit. */
	struct kvbm__presence *presence;
	uint32_t presence_bit;
};

kvbm_status kvbm__registry_init(struct kvbm__registry *r, uint32_t max_entries);
void kvbm__registry_free(struct kvbm__registry *r);
/* Home slot of a hash: Fibonacci hashing, so sequential keys spread out. */
static inline uint64_t kvbm__registry_home(const struct kvbm__registry *r, kvbm_hash h)
{
	return (h * 0x9E3779B97F4A7C15ull) >> r->shift;
}

/* Start loading the home slot of hash into the cache: lookups of a batch
 * miss the cache independently, so issuing them together overlaps them. */
static inline void kvbm__registry_prefetch(const struct kvbm__registry *r, kvbm_hash hash)
{
	__builtin_prefetch(&r->slots[kvbm__registry_home(r, hash)]);
}

/* In a hierarchy, start loading hash's presence entry, which inserting
 * or removing hash will update: issued before the registry's own probe,
 * the two misses overlap. Outside one, a NULL test. */
static inline void kvbm__registry_prefetch_presence(const struct kvbm__registry *r,
						    kvbm_hash hash)
{
	if (r->presence)
		kvbm__presence_prefetch(r->presence, hash);
}

/* Block id holding hash, or UINT32_MAX. */
uint32_t kvbm__registry_find(const struct kvbm__registry *r, kvbm_hash hash);

/* kvbm__registry_find of n hashes (a batch of a few dozen) into ids, their
 * home slots prefetched together first: the lookups miss the cache
 * independently, so issuing the loads at once overlaps the misses. */
static inline void kvbm__registry_find_batch(const struct kvbm__registry *r,
					     const kvbm_hash *hashes, uint32_t n, uint32_t *ids)
{
	for (uint32_t j = 0; j < n; j++)
		kvbm__registry_prefetch(r, hashes[j]);
	for (uint32_t j = 0; j < n; j++)
		ids[j] = kvbm__registry_find(r, hashes[j]);
}
/* Insert; hash must not be present and count < max_entries. */
void kvbm__registry_insert(struct kvbm__registry *r, kvbm_hash hash, uint32_t block);
/* Insert from one of several threads filling an empty registry at once
 * (a restore's readers), with no other access meanwhile: false, and
 * nothing inserted, if hash is already present. count is not kept: the
 * caller sets it once the threads are joined. */
bool kvbm__registry_insert_shared(struct kvbm__registry *r, kvbm_hash hash, uint32_t block);
/* Empty the registry. */
void kvbm__registry_clear(struct kvbm__registry *r);
/* Remove hash; returns false if it was not present. */
bool kvbm__registry_remove(struct kvbm__registry *r, kvbm_hash hash);

#endif /* KVBM_REGISTRY_H */
