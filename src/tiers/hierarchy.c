/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hierarchy of tiers (kvbm_hierarchy): presence of a chain across the
 * tiers and the onboarding plan, answered one of two ways.
 *
 * Without an index a lookup visits the tiers' registries fastest first,
 * one lock at a time, so it never holds two managers' locks (no lock
 * order to keep with anything else) and adds nothing to a tier's fast
 * path; each further tier is one more probe per hash.
 *
 * With KVBM_HIERARCHY_PRESENCE_INDEX the hierarchy owns a presence index
 * (presence.c), hash -> mask of the tiers holding it, which every member
 * tier's registry updates under that tier's own lock; a lookup reads the
 * index alone, one probe per hash for all tiers, and takes no manager
 * lock. Creating the hierarchy fills the index from each tier's registry
 * under that tier's lock; freeing it detaches each tier the same way.
 * The index is opt-in because each registration and eviction of a member
 * tier then pays a second random access, which costs more than it saves
 * wherever most looked-up blocks are then registered (BENCHMARKS.md).
 */
#include <stdlib.h>
#include <string.h>

#include "manager.h"
#include "presence.h"

struct kvbm_hierarchy {
	uint32_t n;
	kvbm_manager *tiers[KVBM_TIERS_MAX];
	struct kvbm__presence *index;
};

/* Hashes looked up per pass (and per lock acquisition without the
 * index): bounds how long a lookup holds a tier's lock, and the stack. */
#define SPAN 256u
/* Registry probes in flight at once without the index: independent cache
 * misses overlap. (probe_tier issues each prefetch as it picks the hashes
 * a batch still needs; kvbm__registry_find_batch over a gathered copy
 * measured ~6 ns per hash slower in bench_tiers.) */
#define BATCH 32u

/* Enter every hash of mgr's registry as tier bit's, and from now on have
 * the registry keep it so. Under mgr's lock, so no registration or
 * eviction of mgr falls between the copy and the attachment. */
static kvbm_status attach(kvbm_hierarchy *h, uint32_t bit)
{
	kvbm_manager *mgr = h->tiers[bit];
	struct kvbm__registry *r = &mgr->registry;

	KVBM_LOCK(mgr);
	if (r->presence) {
		KVBM_UNLOCK(mgr);
		return kvbm__fail(h->tiers[0], KVBM_E_BUSY,
				  "tier %u (%s) is already in a hierarchy", bit, mgr->tier);
	}
	for (uint64_t i = 0; i <= r->mask; i++) {
		if (i + 8 <= r->mask && r->slots[i + 8].block != KVBM__NIL)
			kvbm__presence_prefetch(h->index, r->slots[i + 8].hash);
		if (r->slots[i].block != KVBM__NIL)
			kvbm__presence_set(h->index, r->slots[i].hash, bit);
	}
	r->presence = h->index;
	r->presence_bit = bit;
	KVBM_UNLOCK(mgr);
	return KVBM_OK;
}

static void detach(kvbm_hierarchy *h, uint32_t bit)
{
	kvbm_manager *mgr = h->tiers[bit];

	KVBM_LOCK(mgr);
	mgr->registry.presence = NULL;
	mgr->registry.presence_bit = 0;
	KVBM_UNLOCK(mgr);
}

kvbm_status kvbm_hierarchy_create(kvbm_manager *const *tiers, uint32_t n, uint32_t flags,
				  kvbm_hierarchy **out)
{
	kvbm_manager *first = tiers && n ? tiers[0] : NULL;

	KVBM_CHECK_ARG(first, tiers && out && n > 0 && n <= KVBM_TIERS_MAX);
	if (flags & ~KVBM_HIERARCHY_PRESENCE_INDEX)
		return kvbm__fail(first, KVBM_E_INVAL, "unknown hierarchy flags 0x%x", flags);
	*out = NULL;
	uint64_t blocks = 0;
	for (uint32_t i = 0; i < n; i++) {
		KVBM_CHECK_ARG(first, tiers[i]);
		for (uint32_t j = 0; j < i; j++)
			if (tiers[j] == tiers[i] || strcmp(tiers[j]->tier, tiers[i]->tier) == 0)
				return kvbm__fail(first, KVBM_E_INVAL,
						  "tiers %u and %u are one tier (%s)", j, i,
						  tiers[i]->tier);
		blocks += tiers[i]->block_count;
	}
	kvbm_hierarchy *h = calloc(1, sizeof(*h));
	if (!h)
		return kvbm__fail(first, KVBM_E_NOMEM, "cannot allocate a hierarchy");
	h->n = n;
	memcpy(h->tiers, tiers, n * sizeof(*tiers));
	if (!(flags & KVBM_HIERARCHY_PRESENCE_INDEX)) {
		*out = h;
		return KVBM_OK;
	}
	if (kvbm__presence_new(blocks, &h->index) != KVBM_OK) {
		free(h);
		return kvbm__fail(first, KVBM_E_NOMEM,
				  "cannot allocate a hierarchy's presence index for %llu blocks",
				  (unsigned long long)blocks);
	}
	for (uint32_t t = 0; t < n; t++) {
		const kvbm_status st = attach(h, t);
		if (st != KVBM_OK) {
			while (t-- > 0)
				detach(h, t);
			kvbm__presence_free(h->index);
			free(h);
			return st;
		}
	}
	*out = h;
	return KVBM_OK;
}

void kvbm_hierarchy_free(kvbm_hierarchy *h)
{
	if (!h)
		return;
	if (h->index) {
		for (uint32_t t = 0; t < h->n; t++)
			detach(h, t);
		kvbm__presence_free(h->index);
	}
	free(h);
}

uint32_t kvbm_hierarchy_tiers(const kvbm_hierarchy *h)
{
	return h ? h->n : 0;
}

/* Without the index: set bit `bit` of masks[i] for every hash the tier
 * holds; with `unresolved`, only for hashes no faster tier holds
 * (masks[i] == 0): an onboarding plan needs only the fastest tier of each
 * block. */
static void probe_tier(kvbm_manager *mgr, const kvbm_hash *hashes, uint32_t n, uint8_t bit,
		       bool unresolved, uint8_t *masks)
{
	const struct kvbm__registry *r = &mgr->registry;
	uint32_t at[BATCH];

	KVBM_LOCK(mgr);
	for (uint32_t i = 0; i < n;) {
		uint32_t len = 0;
		for (; i < n && len < BATCH; i++) {
			if (unresolved && masks[i])
				continue;
			kvbm__registry_prefetch(r, hashes[i]);
			at[len++] = i;
		}
		for (uint32_t j = 0; j < len; j++)
			if (kvbm__registry_find(r, hashes[at[j]]) != KVBM__NIL)
				masks[at[j]] |= (uint8_t)(1u << bit);
	}
	KVBM_UNLOCK(mgr);
}

kvbm_status kvbm_hierarchy_lookup(kvbm_hierarchy *h, const kvbm_hash *hashes, uint32_t n,
				  uint8_t *masks, uint8_t *fastest, uint32_t *prefix)
{
	if (!h || (n > 0 && !hashes))
		return h ? kvbm__fail(h->tiers[0], KVBM_E_INVAL,
				      "invalid argument: hashes is NULL with n = %u", n)
			 : KVBM_E_INVAL;
	uint32_t run = 0;
	bool in_prefix = true;
	uint8_t local[SPAN];

	for (uint32_t at = 0; at < n; at += SPAN) {
		const uint32_t len = n - at < SPAN ? n - at : SPAN;
		uint8_t *m = masks ? masks + at : local;
		if (h->index) {
			kvbm__presence_lookup(h->index, hashes + at, len, m);
		} else {
			memset(m, 0, len);
			/* Fastest first: the offload protocol registers a block
			 * below before it leaves above, so a block on its way
			 * down is seen. */
			for (uint32_t t = 0; t < h->n; t++)
				probe_tier(h->tiers[t], hashes + at, len, (uint8_t)t,
					   !masks && t > 0, m);
		}
		for (uint32_t j = 0; j < len; j++) {
			if (fastest)
				fastest[at + j] = m[j] ? (uint8_t)__builtin_ctz(m[j]) : 0xff;
			in_prefix = in_prefix && m[j];
			run += in_prefix;
		}
	}
	if (prefix)
		*prefix = run;
	return KVBM_OK;
}
