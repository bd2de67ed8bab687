/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Victim previews (kvbm_peek_victims): the blocks the next allocations
 * would evict, for a server that copies them to a lower tier first.
 */
#include <stdlib.h>

#include "manager.h"

/* Up to n blocks of a core list, from its head. */
static uint32_t list_peek(const kvbm_manager *mgr, const struct kvbm__list *l, uint32_t n,
			  uint32_t *out)
{
	uint32_t got = 0;

	for (uint32_t b = l->head; got < n && b != KVBM__NIL; b = mgr->slots[b].next)
		out[got++] = b;
	return got;
}

kvbm_status kvbm_peek_victims(kvbm_manager *mgr, uint32_t n, kvbm_victim *out, uint32_t *count)
{
	KVBM_CHECK_ARG(mgr, mgr && out && count);
	*count = 0;
	if (!mgr->evict->peek)
		return kvbm__fail(mgr, KVBM_E_UNSUPPORTED, "policy %s cannot preview its victims",
				  mgr->evict->name);
	if (n > mgr->block_count)
		n = mgr->block_count;
	if (n == 0)
		return KVBM_OK;
	uint32_t *ids = malloc((size_t)n * sizeof(*ids));
	uint32_t *scratch = malloc((2 * (size_t)n + 1) * sizeof(*scratch));
	if (!ids || !scratch) {
		free(ids);
		free(scratch);
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot preview %u victims", n);
	}
	KVBM_LOCK(mgr);
	/* kvbm_allocate's order: the writer's reserve (reclaims committed),
	 * then the reclaims being committed, then those still queued, all in
	 * the policy's order, then the policy's next. */
	uint32_t got = list_peek(mgr, &mgr->reserve, n, ids);
	got += list_peek(mgr, &mgr->freeing, n - got, ids + got);
	got += list_peek(mgr, &mgr->reclaim_pending, n - got, ids + got);
	got += mgr->evict->peek(mgr->evict_state, n - got, ids + got, scratch);
	for (uint32_t i = 0; i < got; i++) {
		const struct kvbm__slot *s = &mgr->slots[ids[i]];
		out[i] = (kvbm_victim){
			.block = ids[i], .position = s->position, .hash = s->hash, .parent = s->parent};
	}
	KVBM_UNLOCK(mgr);
	free(ids);
	free(scratch);
	*count = got;
	return KVBM_OK;
}
