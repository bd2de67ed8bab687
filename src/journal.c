/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The core side of the catalog: dirty-block queue, row images, durable
 * claims and the reclaim-ahead reserve (see journal.h and the crash
 * guarantee in kvbm.h). A block's durable_claim is set as soon as the
 * writer takes a REGISTERED image of it (the row may commit from then on)
 * and cleared only when a FREE image of it has committed; blocks with a
 * claim are never handed out by kvbm_allocate.
 */
#include <assert.h>

#include "manager.h"

static void image_of(kvbm_manager *mgr, uint32_t b, struct kvbm__image *img)
{
	struct kvbm__slot *s = &mgr->slots[b];
	const bool registered = s->state == KVBM__SLOT_PRIMARY || s->state == KVBM__SLOT_INACTIVE;

	img->block = b;
	img->state = registered ? KVBM__ROW_REGISTERED : KVBM__ROW_FREE;
	img->hash = registered ? s->hash : 0;
	img->parent = registered ? s->parent : 0;
	img->position = registered ? s->position : KVBM_POSITION_UNKNOWN;
	img->access_tick = s->access_tick;
	img->access_count = registered ? s->access_count : 0;
	img->priority = s->priority;
	img->retention = s->retention;
	/* Active blocks are not in the policy; their last use stands in for
	 * the key, which places them after everything released before. */
	if (s->state == KVBM__SLOT_INACTIVE)
		img->evict_key = mgr->evict->order_key(mgr->evict_state, b);
	else
		img->evict_key = registered ? s->access_tick : 0;
	img->frequency = registered && mgr->evict->frequency
				 ? mgr->evict->frequency(mgr->evict_state, b, s->hash)
				 : img->access_count;
	if (registered)
		s->durable_claim = 1;
}

void kvbm__journal_take(kvbm_manager *mgr, struct kvbm__image *out, uint32_t cap, uint32_t *n,
			uint32_t *pending)
{
	uint32_t taken = 0;

	pthread_mutex_lock(&mgr->lock);
	while (taken < cap && mgr->dirty_count > 0) {
		const uint32_t b = mgr->dirty[mgr->dirty_head];
		mgr->dirty_head = (mgr->dirty_head + 1) % mgr->block_count;
		mgr->dirty_count--;
		mgr->slots[b].dirty = 0;
		image_of(mgr, b, &out[taken++]);
	}
	*n = taken;
	if (pending)
		*pending = mgr->dirty_count;
	pthread_mutex_unlock(&mgr->lock);
}

void kvbm__journal_committed(kvbm_manager *mgr, const struct kvbm__image *imgs, uint32_t n,
			     uint64_t duration_ns)
{
	pthread_mutex_lock(&mgr->lock);
	for (uint32_t i = 0; i < n; i++) {
		struct kvbm__slot *s = &mgr->slots[imgs[i].block];
		if (imgs[i].state != KVBM__ROW_FREE) {
			s->durable_claim = 1;
			continue;
		}
		s->durable_claim = 0;
		if (s->list == KVBM__IN_RESET_UNSAFE) {
			kvbm__list_unlink(mgr, imgs[i].block);
			kvbm__list_push_tail(mgr, KVBM__IN_RESET, imgs[i].block);
		} else if (s->list == KVBM__IN_RECLAIM_PENDING) {
			kvbm__list_unlink(mgr, imgs[i].block);
			kvbm__list_push_tail(mgr, KVBM__IN_RESERVE, imgs[i].block);
		}
	}
	mgr->m.catalog_rows_committed += n;
	mgr->m.catalog_commits++;
	mgr->m.catalog_flush_ns_last = duration_ns;
	if (duration_ns > mgr->m.catalog_flush_ns_max)
		mgr->m.catalog_flush_ns_max = duration_ns;
	mgr->journal_error = KVBM_OK;
	mgr->commit_gen++;
	pthread_cond_broadcast(&mgr->journal_cv);
	pthread_mutex_unlock(&mgr->lock);
}

void kvbm__journal_failed(kvbm_manager *mgr, const struct kvbm__image *imgs, uint32_t n,
			  kvbm_status code)
{
	pthread_mutex_lock(&mgr->lock);
	/* Claims taken for REGISTERED images stay set: the failed row is not
	 * on disk, but assuming it might be is the safe side. */
	for (uint32_t i = 0; i < n; i++)
		kvbm__journal_mark(mgr, imgs[i].block);
	mgr->m.catalog_failures++;
	mgr->m.catalog_last_error = code;
	mgr->journal_error = code;
	mgr->commit_gen++;
	pthread_cond_broadcast(&mgr->journal_cv);
	pthread_mutex_unlock(&mgr->lock);
}

uint32_t kvbm__journal_reclaim_locked(kvbm_manager *mgr, uint32_t target)
{
	uint32_t moved = 0, b;

	while (mgr->reserve.count + mgr->reclaim_pending.count < target &&
	       mgr->evict->victim(mgr->evict_state, &b)) {
		struct kvbm__slot *s = &mgr->slots[b];
		mgr->inactive_count--;
		s->state = KVBM__SLOT_RECLAIM;
		/* A registration whose row was never taken claims nothing on
		 * disk: the block is safe at once. */
		kvbm__list_push_tail(mgr, s->durable_claim ? KVBM__IN_RECLAIM_PENDING
							   : KVBM__IN_RESERVE, b);
		kvbm__journal_mark(mgr, b);
		moved++;
	}
	return moved;
}

void kvbm__journal_unreclaim_locked(kvbm_manager *mgr)
{
	uint32_t b;

	while ((b = kvbm__list_pop_head(mgr, KVBM__IN_RESERVE)) != KVBM__NIL ||
	       (b = kvbm__list_pop_head(mgr, KVBM__IN_RECLAIM_PENDING)) != KVBM__NIL) {
		struct kvbm__slot *s = &mgr->slots[b];
		const struct kvbm__evict_entry e = {
			.hash = s->hash,
			.parent = s->parent,
			.position = s->position,
			.priority = s->priority,
			.retention = s->retention,
			.tick = s->release_tick,
			.first_tick = s->first_tick,
		};
		s->state = KVBM__SLOT_INACTIVE;
		mgr->evict->insert(mgr->evict_state, b, &e);
		mgr->inactive_count++;
		kvbm__journal_mark(mgr, b);
	}
}

uint32_t kvbm__journal_reclaim(kvbm_manager *mgr, uint32_t target)
{
	pthread_mutex_lock(&mgr->lock);
	const uint32_t moved = kvbm__journal_reclaim_locked(mgr, target);
	pthread_mutex_unlock(&mgr->lock);
	return moved;
}

uint32_t kvbm__journal_reserve_target(kvbm_manager *mgr)
{
	/* Free blocks already serve allocations without a wait; reclaiming
	 * cached blocks beyond that would only cost their catalog rows. */
	pthread_mutex_lock(&mgr->lock);
	const uint32_t have = mgr->reset.count + mgr->reset_unsafe.count;
	const uint32_t want = mgr->cfg.catalog_reserve;
	pthread_mutex_unlock(&mgr->lock);
	return want > have ? want - have : 0;
}

void kvbm__journal_detach(kvbm_manager *mgr)
{
	uint32_t b;

	pthread_mutex_lock(&mgr->lock);
	mgr->journal_on = false;
	for (uint32_t i = 0; i < mgr->block_count; i++) {
		mgr->slots[i].durable_claim = 0;
		mgr->slots[i].dirty = 0;
	}
	mgr->dirty_count = 0;
	while ((b = kvbm__list_pop_head(mgr, KVBM__IN_RESET_UNSAFE)) != KVBM__NIL)
		kvbm__list_push_tail(mgr, KVBM__IN_RESET, b);
	mgr->m.catalog_detached = 1;
	mgr->commit_gen++;
	pthread_cond_broadcast(&mgr->journal_cv);
	pthread_mutex_unlock(&mgr->lock);
}

kvbm_status kvbm__restore_block(kvbm_manager *mgr, const struct kvbm__image *img)
{
	if (img->block >= mgr->block_count)
		return kvbm__fail(mgr, KVBM_E_CORRUPT, "row for block %u is out of range (block_count %u)",
				  img->block, mgr->block_count);
	struct kvbm__slot *s = &mgr->slots[img->block];
	if (s->state != KVBM__SLOT_RESET)
		return kvbm__fail(mgr, KVBM_E_CORRUPT, "block %u is restored twice", img->block);
	if (kvbm__registry_find(&mgr->registry, img->hash) != KVBM__NIL)
		return kvbm__fail(mgr, KVBM_E_CORRUPT, "hash %016llx is claimed by two blocks",
				  (unsigned long long)img->hash);
	kvbm__list_unlink(mgr, img->block);
	s->state = KVBM__SLOT_INACTIVE;
	s->hash = img->hash;
	s->parent = img->parent;
	s->position = img->position;
	s->access_count = img->access_count;
	s->access_tick = img->access_tick;
	s->priority = img->priority;
	s->retention = img->retention;
	s->reset_on_release = mgr->reset_on_release;
	s->durable_claim = 1;
	mgr->epoch_next = kvbm__next_gen(mgr->epoch_next);
	s->epoch = mgr->epoch_next;
	/* Keys become the new ticks, so the clock must stay ahead of them. */
	const uint64_t key = img->evict_key > mgr->clock ? img->evict_key : mgr->clock + 1;
	mgr->clock = key > img->access_tick ? key : img->access_tick;
	s->release_tick = s->first_tick = key;
	kvbm__registry_insert(&mgr->registry, img->hash, img->block);
	if (mgr->evict->restore_frequency)
		mgr->evict->restore_frequency(mgr->evict_state, img->hash, img->frequency);
	const struct kvbm__evict_entry e = {
		.hash = s->hash,
		.parent = s->parent,
		.position = s->position,
		.priority = s->priority,
		.retention = s->retention,
		.tick = key,
		.first_tick = key,
	};
	mgr->evict->insert(mgr->evict_state, img->block, &e);
	mgr->inactive_count++;
	return KVBM_OK;
}
