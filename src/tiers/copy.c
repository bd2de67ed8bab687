/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registration in one tier of blocks another tier holds
 * (kvbm_stage_from): the lower tier's copy gets the upper block's hash and
 * lineage, so prefix views, lineage eviction and events see one chain.
 */
#include <stdlib.h>

#include "manager.h"

static int cmp_u32(const void *a, const void *b)
{
	const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

struct lineage {
	kvbm_hash parent;
	uint32_t position;
};

/* src's lineage of every hash, under src's lock only. */
static kvbm_status read_lineage(kvbm_manager *dst, kvbm_manager *src, const kvbm_hash *hashes,
				uint32_t n, struct lineage *out)
{
	kvbm_status st = KVBM_OK;

	KVBM_LOCK(src);
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t b = kvbm__registry_find(&src->registry, hashes[i]);
		if (b == KVBM__NIL) {
			st = KVBM_E_NOTFOUND;
			kvbm__fail(dst, st, "tier %s does not hold hash %016llx (entry %u)", src->tier,
				   (unsigned long long)hashes[i], i);
			break;
		}
		out[i] = (struct lineage){src->slots[b].parent, src->slots[b].position};
	}
	KVBM_UNLOCK(src);
	return st;
}

kvbm_status kvbm_stage_from(kvbm_manager *dst, const kvbm_mutable *blocks, uint32_t n,
			    kvbm_manager *src, const kvbm_hash *hashes, kvbm_complete *out)
{
	KVBM_CHECK_ARG(dst, dst && src && dst != src && (n == 0 || (blocks && hashes && out)));
	if (dst->block_size != src->block_size)
		return kvbm__fail(dst, KVBM_E_INVAL, "block sizes differ: %s has %u, %s %u",
				  dst->tier, dst->block_size, src->tier, src->block_size);
	if (n == 0)
		return KVBM_OK;
	struct lineage *lin = malloc((size_t)n * sizeof(*lin));
	if (!lin)
		return kvbm__fail(dst, KVBM_E_NOMEM, "cannot stage %u blocks", n);
	kvbm_status st = read_lineage(dst, src, hashes, n, lin);
	if (st != KVBM_OK) {
		free(lin);
		return st;
	}
	/* All or nothing: every guard live, none named twice (staging the
	 * first would leave the second looking stale only halfway through). */
	uint32_t *ids = malloc((size_t)n * sizeof(*ids));
	if (!ids) {
		free(lin);
		return kvbm__fail(dst, KVBM_E_NOMEM, "cannot stage %u blocks", n);
	}
	for (uint32_t i = 0; i < n; i++)
		ids[i] = blocks[i].block;
	qsort(ids, n, sizeof(*ids), cmp_u32);
	KVBM_LOCK(dst);
	for (uint32_t i = 0; i < n && st == KVBM_OK; i++) {
		if (!kvbm__mutable_live(dst, blocks[i]) || (i > 0 && ids[i] == ids[i - 1])) {
			st = KVBM_E_STALE;
			dst->m.stale_handles++;
			kvbm__fail(dst, st, "mutable handle for block %u is stale or repeated",
				   kvbm__mutable_live(dst, blocks[i]) ? ids[i] : blocks[i].block);
		}
	}
	for (uint32_t i = 0; i < n && st == KVBM_OK; i++) {
		const uint32_t pos = lin[i].position;
		out[i] = kvbm__stage_locked(dst, blocks[i].block, hashes[i], lin[i].parent, pos);
	}
	KVBM_UNLOCK(dst);
	free(ids);
	free(lin);
	return st;
}
