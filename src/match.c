/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registry lookups: prefix match, scattered match and presence queries.
 * Each takes the manager lock once for the whole array, reserves every
 * reference it might hand out before it changes anything (so KVBM_E_NOMEM
 * leaves no partial result), and resurrects inactive blocks it hits.
 */
#include "manager.h"

/* Lookups are independent cache misses: prefetch a chunk of registry slots,
 * resolve them, and prefetch each block slot as soon as its id is known
 * (not kvbm__registry_find_batch then a second pass: that issues the slot
 * prefetches later, 75-79 -> 85 ns per inactive hit in bench_core). The registry does
 * not change until the caller acts on ids, so the answers stay valid. */
#define CHUNK 32u

static uint32_t lookup_chunk(const kvbm_manager *mgr, const kvbm_hash *hashes, uint32_t n,
			     uint32_t *ids)
{
	const uint32_t len = n < CHUNK ? n : CHUNK;

	for (uint32_t j = 0; j < len; j++)
		kvbm__registry_prefetch(&mgr->registry, hashes[j]);
	for (uint32_t j = 0; j < len; j++) {
		ids[j] = kvbm__registry_find(&mgr->registry, hashes[j]);
		if (ids[j] != KVBM__NIL)
			__builtin_prefetch(&mgr->slots[ids[j]]);
	}
	return len;
}

static kvbm_immutable hit(kvbm_manager *mgr, uint32_t b)
{
	kvbm__pool_resurrect(mgr, b);
	kvbm__pool_touch(mgr, b);
	return kvbm__ref_new(mgr, b);
}

kvbm_status kvbm_match(kvbm_manager *mgr, const kvbm_hash *hashes, uint32_t n,
		       kvbm_immutable *out, uint32_t *matched)
{
	KVBM_CHECK_ARG(mgr, mgr && matched && (n == 0 || (hashes && out)));
	uint32_t i = 0;
	KVBM_LOCK(mgr);
	const kvbm_status st = kvbm__refs_reserve(mgr, n);
	if (st == KVBM_OK) {
		uint32_t ids[CHUNK];
		while (i < n) {
			const uint32_t len = lookup_chunk(mgr, hashes + i, n - i, ids);
			uint32_t hits = 0;
			while (hits < len && ids[hits] != KVBM__NIL)
				hits++;
			for (uint32_t j = 0; j < hits; j++)
				out[i + j] = hit(mgr, ids[j]);
			i += hits;
			if (hits < len)
				break;
		}
		mgr->m.match_hashes_requested += n;
		mgr->m.match_blocks_returned += i;
	}
	KVBM_UNLOCK(mgr);
	*matched = i;
	return st;
}

kvbm_status kvbm_match_scattered(kvbm_manager *mgr, const kvbm_hash *hashes, uint32_t n,
				 kvbm_immutable *out, uint32_t *found)
{
	KVBM_CHECK_ARG(mgr, mgr && found && (n == 0 || (hashes && out)));
	uint32_t hits = 0;
	KVBM_LOCK(mgr);
	const kvbm_status st = kvbm__refs_reserve(mgr, n);
	if (st == KVBM_OK) {
		uint32_t ids[CHUNK];
		for (uint32_t i = 0; i < n;) {
			const uint32_t len = lookup_chunk(mgr, hashes + i, n - i, ids);
			for (uint32_t j = 0; j < len; j++, i++) {
				if (ids[j] == KVBM__NIL) {
					out[i] = (kvbm_immutable){0};
					continue;
				}
				out[i] = hit(mgr, ids[j]);
				hits++;
			}
		}
		mgr->m.scan_hashes_requested += n;
		mgr->m.scan_blocks_returned += hits;
	}
	KVBM_UNLOCK(mgr);
	*found = hits;
	return st;
}

kvbm_status kvbm_contains(kvbm_manager *mgr, const kvbm_hash *hashes, uint32_t n, bool *present,
			  uint32_t *n_present, uint32_t *prefix)
{
	KVBM_CHECK_ARG(mgr, mgr && (n == 0 || hashes));
	uint32_t count = 0, run = 0;
	bool in_prefix = true;
	KVBM_LOCK(mgr);
	for (uint32_t i = 0; i < n; i += CHUNK) {
		const uint32_t len = n - i < CHUNK ? n - i : CHUNK;
		uint32_t ids[CHUNK];
		kvbm__registry_find_batch(&mgr->registry, hashes + i, len, ids);
		for (uint32_t j = 0; j < len; j++) {
			const bool p = ids[j] != KVBM__NIL;
			if (present)
				present[i + j] = p;
			count += p;
			in_prefix = in_prefix && p;
			run += in_prefix;
		}
	}
	KVBM_UNLOCK(mgr);
	if (n_present)
		*n_present = count;
	if (prefix)
		*prefix = run;
	return KVBM_OK;
}

/* Re-enter an inactive block at the most-recently-used end of its policy,
 * as a release does, but without a hit: access_count and the match metrics
 * stay, and first_tick is kept so ARC files the block as reused (T2). */
static void refresh(kvbm_manager *mgr, uint32_t b)
{
	struct kvbm__slot *s = &mgr->slots[b];

	mgr->evict->remove(mgr->evict_state, b);
	s->release_tick = ++mgr->clock;
	kvbm__pool_policy_insert(mgr, b, s->release_tick, s->first_tick);
	kvbm__journal_mark(mgr, b); /* the catalog keeps the eviction order */
}

/* kvbm_touch for a policy that orders every hash itself (its use op):
 * it also hears of hashes being written, pinned, or only remembered as
 * evicted. Whether an inactive block moved: 1 or 0. */
static uint32_t use(kvbm_manager *mgr, kvbm_hash h)
{
	const uint32_t b = kvbm__registry_find(&mgr->registry, h);

	if (b != KVBM__NIL && mgr->slots[b].state == KVBM__SLOT_RECLAIM) {
		kvbm__pool_take_back(mgr, b); /* as below */
		kvbm__pool_make_inactive(mgr, b);
	}
	mgr->evict->use(mgr->evict_state, h);
	if (b == KVBM__NIL || mgr->slots[b].state != KVBM__SLOT_INACTIVE)
		return 0;
	kvbm__journal_mark(mgr, b); /* the catalog keeps the eviction order */
	return 1;
}

kvbm_status kvbm_touch(kvbm_manager *mgr, const kvbm_hash *hashes, uint32_t n, uint32_t *n_touched)
{
	KVBM_CHECK_ARG(mgr, mgr && (n == 0 || hashes));
	uint32_t moved = 0;
	KVBM_LOCK(mgr);
	for (uint32_t i = 0; i < n; i++) {
		if (mgr->evict->use) {
			moved += use(mgr, hashes[i]);
			continue;
		}
		const uint32_t b = kvbm__registry_find(&mgr->registry, hashes[i]);
		if (b == KVBM__NIL)
			continue;
		if (mgr->slots[b].state == KVBM__SLOT_INACTIVE) {
			refresh(mgr, b);
			moved++;
		} else if (mgr->slots[b].state == KVBM__SLOT_RECLAIM) {
			/* The catalog writer took it ahead as a next victim; a
			 * recent use takes it back, as a hit would, minus the
			 * hit (the writer reclaims another one instead). */
			kvbm__pool_take_back(mgr, b);
			kvbm__pool_make_inactive(mgr, b);
			moved++;
		} else if (mgr->slots[b].state == KVBM__SLOT_PRIMARY)
			/* In use: not in the policy. The new recency is what
			 * kvbm_unpin returns it to (a plain release makes it
			 * the most recent anyway). */
			mgr->slots[b].release_tick = ++mgr->clock;
	}
	KVBM_UNLOCK(mgr);
	if (n_touched)
		*n_touched = moved;
	return KVBM_OK;
}

kvbm_status kvbm_locate(kvbm_manager *mgr, const kvbm_hash *hashes, uint32_t n, uint32_t *blocks,
			uint32_t *n_found)
{
	KVBM_CHECK_ARG(mgr, mgr && (n == 0 || (hashes && blocks)));
	uint32_t found = 0;
	KVBM_LOCK(mgr);
	for (uint32_t i = 0; i < n; i++) {
		blocks[i] = kvbm__registry_find(&mgr->registry, hashes[i]);
		found += blocks[i] != KVBM__NIL;
	}
	KVBM_UNLOCK(mgr);
	if (n_found)
		*n_found = found;
	return KVBM_OK;
}
