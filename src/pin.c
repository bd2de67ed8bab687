/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pins: references that keep blocks out of eviction without counting as
 * use. kvbm_pin takes a reference like a scattered match but records no
 * hit (no access count, no policy touch, no match metrics); kvbm_unpin
 * drops it, and a block whose last reference that was goes back into the
 * policy at the recency it had (its last release, or a kvbm_touch since),
 * not as the most recent block. This is how vLLM's offloading managers
 * treat a block being loaded, or an already-stored block a store names:
 * protected while it lasts, its place in the eviction order unchanged.
 * Exact for the policies that keep release order by key (lru, arc,
 * adaptive), and for vllm-arc, which keeps a pinned block in its list
 * (its hold op); the others re-insert it as a fresh release.
 */
#include <stdlib.h>

#include "manager.h"

kvbm_status kvbm_pin(kvbm_manager *mgr, const kvbm_hash *hashes, uint32_t n, kvbm_immutable *out,
		     uint32_t *found)
{
	KVBM_CHECK_ARG(mgr, mgr && found && (n == 0 || (hashes && out)));
	uint32_t hits = 0;
	KVBM_LOCK(mgr);
	const kvbm_status st = kvbm__refs_reserve(mgr, n);
	for (uint32_t i = 0; st == KVBM_OK && i < n; i++) {
		const uint32_t b = kvbm__registry_find(&mgr->registry, hashes[i]);
		if (b == KVBM__NIL) {
			out[i] = (kvbm_immutable){0};
			continue;
		}
		kvbm__pool_pin_back(mgr, b); /* a pin is not a hit */
		out[i] = kvbm__ref_new(mgr, b);
		hits++;
	}
	KVBM_UNLOCK(mgr);
	*found = hits;
	return st;
}

/* A block whose last pin went, to be put back at `key`. */
struct back {
	uint32_t block;
	uint64_t key;
};

static int by_key(const void *a, const void *b)
{
	const uint64_t x = ((const struct back *)a)->key, y = ((const struct back *)b)->key;

	return x < y ? -1 : x > y;
}

/*
 * A block whose last pin goes is made inactive at the release tick it had,
 * one policy insert at its old place: never first as the newest (a policy
 * would take that for a hit). They go in in ascending key order: blocks
 * loaded together were touched together, so their keys are the newest in
 * the pool and each
 * insert lands at the tail: O(1), where putting them back one by one in
 * the caller's order (vLLM touches a prefix backwards) would walk past the
 * ones already back. Without memory for the list, each goes back at once.
 */
kvbm_status kvbm_unpin(kvbm_manager *mgr, const kvbm_immutable *hs, uint32_t n)
{
	KVBM_CHECK_ARG(mgr, mgr && (hs || n == 0));
	struct back local[64];
	struct back *backs = n <= 64 ? local : malloc((size_t)n * sizeof(*backs));
	uint32_t n_back = 0;
	kvbm_status st = KVBM_OK;
	KVBM_LOCK(mgr);
	for (uint32_t i = 0; i < n; i++) {
		if (hs[i].gen == 0)
			continue;
		if (!kvbm__ref_live(mgr, hs[i])) {
			mgr->m.stale_handles++;
			st = kvbm__fail(mgr, KVBM_E_STALE, "pinned handle for block %u is stale",
					hs[i].block);
			continue;
		}
		const uint32_t b = hs[i].block;
		const struct kvbm__slot *s = &mgr->slots[b];
		/* first_tick != 0: the block was cached before, so it has a
		 * recency to return to; a fresh registration has none. */
		const bool had_place = s->state == KVBM__SLOT_PRIMARY && s->first_tick != 0;
		const uint64_t key = s->release_tick;
		if (!kvbm__ref_put(mgr, hs[i]))
			continue;
		/* A policy that holds pinned blocks puts it back in place itself. */
		if (!had_place || mgr->evict->hold)
			kvbm__pool_make_inactive(mgr, b);
		else if (backs)
			backs[n_back++] = (struct back){.block = b, .key = key};
		else
			kvbm__pool_make_inactive_at(mgr, b, key);
	}
	if (n_back > 1)
		qsort(backs, n_back, sizeof(*backs), by_key);
	for (uint32_t i = 0; i < n_back; i++)
		kvbm__pool_make_inactive_at(mgr, backs[i].block, backs[i].key);
	KVBM_UNLOCK(mgr);
	if (backs != local)
		free(backs);
	return st;
}
