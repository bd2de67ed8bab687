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
 * Exact for the policies that keep release order by key (lru, arc); the
 * others re-insert it as a fresh release.
 */
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
		const uint64_t resurrections = mgr->m.resurrections;
		kvbm__pool_resurrect(mgr, b);
		mgr->m.resurrections = resurrections; /* a pin is not a hit */
		out[i] = kvbm__ref_new(mgr, b);
		hits++;
	}
	KVBM_UNLOCK(mgr);
	*found = hits;
	return st;
}

/* Block b just went inactive with a new tick: put it back at `key`. */
static void rekey(kvbm_manager *mgr, uint32_t b, uint64_t key)
{
	struct kvbm__slot *s = &mgr->slots[b];

	mgr->evict->remove(mgr->evict_state, b);
	s->release_tick = key;
	const struct kvbm__evict_entry e = {
		.hash = s->hash,
		.parent = s->parent,
		.position = s->position,
		.priority = s->priority,
		.retention = s->retention,
		.tick = key,
		.first_tick = s->first_tick,
	};
	mgr->evict->insert(mgr->evict_state, b, &e);
	kvbm__journal_mark(mgr, b);
}

kvbm_status kvbm_unpin(kvbm_manager *mgr, const kvbm_immutable *hs, uint32_t n)
{
	KVBM_CHECK_ARG(mgr, mgr && (hs || n == 0));
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
		kvbm__ref_drop(mgr, hs[i]);
		if (had_place && s->state == KVBM__SLOT_INACTIVE)
			rekey(mgr, b, key);
	}
	KVBM_UNLOCK(mgr);
	return st;
}
