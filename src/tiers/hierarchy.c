/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hierarchy of tiers (kvbm_hierarchy): presence of a chain across the
 * tiers' registries and the onboarding plan. Each tier keeps its own
 * registry and lock; a lookup visits the tiers fastest first, one lock at
 * a time, so it never holds two managers' locks (no lock order to keep
 * with anything else) and never slows a tier's fast path.
 */
#include <stdlib.h>
#include <string.h>

#include "manager.h"

struct kvbm_hierarchy {
	uint32_t n;
	kvbm_manager *tiers[KVBM_TIERS_MAX];
};

/* Hashes looked up per lock acquisition: bounds how long a lookup holds a
 * tier's lock, and the stack it needs. */
#define SPAN 256u
/* Registry probes in flight at once: independent cache misses overlap.
 * (probe_tier issues each prefetch as it picks the hashes a batch still
 * needs; kvbm__registry_find_batch over a gathered copy measured ~6 ns per
 * hash slower in bench_tiers.) */
#define BATCH 32u

kvbm_status kvbm_hierarchy_create(kvbm_manager *const *tiers, uint32_t n, kvbm_hierarchy **out)
{
	kvbm_manager *first = tiers && n ? tiers[0] : NULL;

	KVBM_CHECK_ARG(first, tiers && out && n > 0 && n <= KVBM_TIERS_MAX);
	*out = NULL;
	for (uint32_t i = 0; i < n; i++) {
		KVBM_CHECK_ARG(first, tiers[i]);
		for (uint32_t j = 0; j < i; j++)
			if (tiers[j] == tiers[i] || strcmp(tiers[j]->tier, tiers[i]->tier) == 0)
				return kvbm__fail(first, KVBM_E_INVAL,
						  "tiers %u and %u are one tier (%s)", j, i,
						  tiers[i]->tier);
	}
	kvbm_hierarchy *h = calloc(1, sizeof(*h));
	if (!h)
		return kvbm__fail(first, KVBM_E_NOMEM, "cannot allocate a hierarchy");
	h->n = n;
	memcpy(h->tiers, tiers, n * sizeof(*tiers));
	*out = h;
	return KVBM_OK;
}

void kvbm_hierarchy_free(kvbm_hierarchy *h)
{
	free(h);
}

uint32_t kvbm_hierarchy_tiers(const kvbm_hierarchy *h)
{
	return h ? h->n : 0;
}

/* Set bit `bit` of masks[i] for every hash the tier holds; with
 * `unresolved`, only for hashes no faster tier holds (masks[i] == 0): an
 * onboarding plan needs only the fastest tier of each block. */
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
		memset(m, 0, len);
		/* Fastest first: the offload protocol registers a block below
		 * before it leaves above, so a block on its way down is seen. */
		for (uint32_t t = 0; t < h->n; t++)
			probe_tier(h->tiers[t], hashes + at, len, (uint8_t)t, !masks && t > 0, m);
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
