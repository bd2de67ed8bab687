/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The core side of the catalog: dirty-block queue, row images, durable
 * claims and the reclaim-ahead reserve (see journal.h and the crash
 * guarantee in kvbm.h). A block's durable_claim is set as soon as the
 * writer takes an image of it (the row may commit from then on) and
 * cleared only when a reclaim record listing it has committed; blocks
 * with a claim are never handed out by kvbm_allocate. Blocks move
 * reclaim_pending -> freeing -> reserve and reset_unsafe -> reset_freeing
 * -> reset as the writer takes and commits them, or back on failure.
 */
#include <assert.h>
#include <stdlib.h>

#include "manager.h"
#include "metrics.h"

static void image_of(kvbm_manager *mgr, uint32_t b, struct kvbm__image *img)
{
	struct kvbm__slot *s = &mgr->slots[b];

	img->block = b;
	img->hash = s->hash;
	img->parent = s->parent;
	img->position = s->position;
	img->access_tick = s->access_tick;
	img->access_count = s->access_count;
	img->priority = s->priority;
	img->retention = s->retention;
	/* Active blocks are not in the policy; their last use stands in for
	 * the key, which places them after everything released before. */
	img->evict_key = s->state == KVBM__SLOT_INACTIVE
				 ? mgr->evict->order_key(mgr->evict_state, b)
				 : s->access_tick;
	img->frequency = mgr->evict->frequency
				 ? mgr->evict->frequency(mgr->evict_state, b, s->hash)
				 : img->access_count;
	img->tokens = kvbm__row_tokens_take(mgr, b);
	img->key = kvbm__row_key_take(mgr, b);
	img->fresh = !s->row_taken;
	s->row_taken = 1;
	s->durable_claim = 1;
}

/* Move blocks waiting for a durable free record onto a freeing list. */
static void take_frees(kvbm_manager *mgr, enum kvbm__list_id from, enum kvbm__list_id to,
		       struct kvbm__take *t)
{
	uint32_t b;

	while (t->n_freed < t->freed_cap && (b = kvbm__list_pop_head(mgr, from)) != KVBM__NIL) {
		kvbm__list_push_tail(mgr, to, b);
		t->freed[t->n_freed++] = b;
	}
}

void kvbm__journal_take(kvbm_manager *mgr, uint32_t reserve_target, struct kvbm__take *t)
{
	pthread_mutex_lock(&mgr->lock);
	mgr->reserve_target = reserve_target;
	/* Free blocks already serve allocations without a wait; reclaiming
	 * cached blocks beyond that would only lose them from a restore. */
	const uint32_t free_blocks = kvbm__reset_pool(mgr);
	if (reserve_target > free_blocks)
		kvbm__journal_reclaim_locked(mgr, reserve_target - free_blocks);
	t->n_freed = 0;
	take_frees(mgr, KVBM__IN_RECLAIM_PENDING, KVBM__IN_FREEING, t);
	take_frees(mgr, KVBM__IN_RESET_UNSAFE, KVBM__IN_RESET_FREEING, t);
	t->n = 0;
	/* Under eviction pressure (blocks are being evicted, and the free
	 * blocks no longer cover the reserve) keep transactions short, so the
	 * next reclaim never waits long behind rows in flight, and commit
	 * reclaims alone when an allocation already waits for them. A cache
	 * that filled up but evicts nothing (filling, or serving hits) writes
	 * full batches: 512 rows to a commit made a 1M-block drain 1,838
	 * commits instead of 128, up to 30% slower, and under hits alone the
	 * writer's many commits slowed the hits. An allocation that comes
	 * then, and outruns the reserve, does not wait for the whole batch:
	 * the writer commits the rows it has written and gives the rest back
	 * (kvbm__journal_waiting; docs/BENCHMARKS.md). */
	const bool pressure = free_blocks < reserve_target && t->evicting;
	t->pressure = pressure;
	const uint32_t pressure_cap = t->pressure_cap ? t->pressure_cap : 512;
	uint32_t cap = t->cap;
	if (kvbm__journal_waiting(mgr) && t->n_freed)
		cap = 0;
	else if (pressure && cap > pressure_cap)
		cap = pressure_cap;
	/* Newest first only under eviction pressure: otherwise (a cache
	 * filling up) the oldest rows are the next block ids, and SQLite
	 * appends them to the table fastest in that order. */
	const bool oldest_first = t->oldest_first || !pressure;
	while (t->n < cap && mgr->dirty_count > 0) {
		uint32_t b;
		if (oldest_first) {
			b = mgr->dirty[mgr->dirty_head];
			mgr->dirty_head = (mgr->dirty_head + 1) % mgr->block_count;
		} else {
			b = mgr->dirty[(mgr->dirty_head + mgr->dirty_count - 1) % mgr->block_count];
		}
		mgr->dirty_count--;
		struct kvbm__slot *s = &mgr->slots[b];
		s->dirty = 0;
		/* A block that no longer holds a hash needs no row: if an old
		 * row of it committed, the block is on a free list above. */
		if (s->state == KVBM__SLOT_PRIMARY || s->state == KVBM__SLOT_INACTIVE)
			image_of(mgr, b, &t->imgs[t->n++]);
	}
	t->pending = mgr->dirty_count + mgr->reclaim_pending.count + mgr->reset_unsafe.count;
	t->evictions = mgr->m.evictions;
	t->reserve_have = mgr->reserve.count + mgr->freeing.count;
	pthread_mutex_unlock(&mgr->lock);
}

bool kvbm__journal_waiting(kvbm_manager *mgr)
{
	return __atomic_load_n(&mgr->alloc_waiters, __ATOMIC_RELAXED) != 0;
}

/* An image taken and not written: the block is dirty again, its token
 * copy and key go back to it. Claims taken for the image stay set: the
 * row is not on disk, but assuming it might be is the safe side. */
static void give_back(kvbm_manager *mgr, const struct kvbm__image *img)
{
	kvbm__journal_mark(mgr, img->block);
	if (img->tokens)
		kvbm__row_tokens_give_back(mgr, img);
	if (img->key)
		kvbm__row_key_give_back(mgr, img->block, img->hash, img->key);
}

void kvbm__journal_committed(kvbm_manager *mgr, const struct kvbm__take *t, uint64_t duration_ns)
{
	pthread_mutex_lock(&mgr->lock);
	for (uint32_t i = 0; i < t->n_freed; i++) {
		const uint32_t b = t->freed[i];
		struct kvbm__slot *s = &mgr->slots[b];
		/* Whatever happened to the block since the take, no committed
		 * row claims a hash for it any more: a block matched back into
		 * use gets a new row (and claim) when its image is next taken. */
		s->durable_claim = 0;
		/* A reclaimed block freed meanwhile (kvbm_reset_inactive) went
		 * to reset_unsafe: it is as safe as the others now. */
		if (s->list == KVBM__IN_FREEING)
			kvbm__list_move(mgr, b, KVBM__IN_RESERVE);
		else if (s->list == KVBM__IN_RESET_FREEING || s->list == KVBM__IN_RESET_UNSAFE)
			kvbm__list_move(mgr, b, KVBM__IN_RESET);
	}
	for (uint32_t i = 0; i < t->n_written; i++) {
		free(t->imgs[i].tokens);
		kvbm__key_free(mgr, t->imgs[i].key);
	}
	for (uint32_t i = t->n_written; i < t->n; i++)
		give_back(mgr, &t->imgs[i]);
	mgr->m.catalog_rows_committed += t->n_written;
	mgr->m.catalog_reclaim_rows += t->reclaim_rows;
	mgr->m.catalog_blocks_reclaimed += t->n_freed;
	mgr->m.catalog_commits++;
	mgr->m.catalog_flush_ns_last = duration_ns;
	kvbm__metrics_observe_flush(mgr, duration_ns);
	if (duration_ns > mgr->m.catalog_flush_ns_max)
		mgr->m.catalog_flush_ns_max = duration_ns;
	mgr->journal_error = KVBM_OK;
	mgr->m.catalog_failing = 0;
	mgr->commit_gen++;
	pthread_cond_broadcast(&mgr->journal_cv);
	pthread_mutex_unlock(&mgr->lock);
}

void kvbm__journal_failed(kvbm_manager *mgr, const struct kvbm__take *t, kvbm_status code)
{
	pthread_mutex_lock(&mgr->lock);
	for (uint32_t i = 0; i < t->n; i++)
		give_back(mgr, &t->imgs[i]);
	for (uint32_t i = 0; i < t->n_freed; i++) {
		const uint32_t b = t->freed[i];
		struct kvbm__slot *s = &mgr->slots[b];
		/* Elsewhere: matched back into use, or freed into reset_unsafe;
		 * its old row may stand either way, and the claim says so. */
		if (s->list == KVBM__IN_FREEING)
			kvbm__list_move(mgr, b, KVBM__IN_RECLAIM_PENDING);
		else if (s->list == KVBM__IN_RESET_FREEING)
			kvbm__list_move(mgr, b, KVBM__IN_RESET_UNSAFE);
	}
	mgr->m.catalog_failures++;
	mgr->m.catalog_failing = 1;
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
		 * disk: the block is safe at once, unless older victims are
		 * still waiting for their reclaim to commit. Then it queues
		 * behind them, so the reserve hands out victims in exactly the
		 * order the policy gave them (kvbm.h, "Reserve": under LRU a
		 * catalog never changes what is evicted). */
		const bool behind = mgr->reclaim_pending.count || mgr->freeing.count;
		kvbm__list_push_tail(mgr, s->durable_claim || behind ? KVBM__IN_RECLAIM_PENDING
								      : KVBM__IN_RESERVE, b);
		moved++;
	}
	return moved;
}

void kvbm__journal_unreclaim_locked(kvbm_manager *mgr)
{
	uint32_t b;

	/* Newest victim first: each goes back just before everything still in
	 * the policy (it was a victim, so older than all of it), which a
	 * key-ordered insert finds at once; oldest first would make each
	 * insert walk past the ones put back before it. */
	while ((b = kvbm__list_pop_tail(mgr, KVBM__IN_RECLAIM_PENDING)) != KVBM__NIL ||
	       (b = kvbm__list_pop_tail(mgr, KVBM__IN_FREEING)) != KVBM__NIL ||
	       (b = kvbm__list_pop_tail(mgr, KVBM__IN_RESERVE)) != KVBM__NIL) {
		struct kvbm__slot *s = &mgr->slots[b];
		s->state = KVBM__SLOT_INACTIVE;
		kvbm__pool_unevict(mgr, b);
		kvbm__pool_policy_insert(mgr, b, s->release_tick, s->first_tick);
		mgr->inactive_count++;
		kvbm__journal_mark(mgr, b);
	}
}

size_t kvbm__journal_policy_state(kvbm_manager *mgr, uint8_t **out)
{
	size_t n = 0;

	*out = NULL;
	pthread_mutex_lock(&mgr->lock);
	if (mgr->evict->state_export) {
		/* The size holds until the next policy operation: both calls
		 * under one hold of the lock. */
		n = mgr->evict->state_export(mgr->evict_state, NULL, 0);
		if (n && (*out = malloc(n)))
			mgr->evict->state_export(mgr->evict_state, *out, n);
		else
			n = 0;
	}
	pthread_mutex_unlock(&mgr->lock);
	return n;
}

kvbm_status kvbm__journal_policy_restore_read(kvbm_manager *mgr, size_t len,
					     kvbm__state_read read, void *ctx)
{
	kvbm_status st = KVBM_OK;
	uint8_t *buf = NULL;

	pthread_mutex_lock(&mgr->lock);
	if (mgr->evict->state_import_read) {
		st = mgr->evict->state_import_read(mgr->evict_state, len, read, ctx);
	} else if (mgr->evict->state_import) {
		if (!(buf = malloc(len ? len : 1)))
			st = KVBM_E_NOMEM;
		else if ((st = read(ctx, 0, buf, len)) == KVBM_OK)
			st = mgr->evict->state_import(mgr->evict_state, buf, len);
	}
	pthread_mutex_unlock(&mgr->lock);
	free(buf);
	return st;
}

void kvbm__journal_unreclaim(kvbm_manager *mgr)
{
	pthread_mutex_lock(&mgr->lock);
	kvbm__journal_unreclaim_locked(mgr);
	pthread_mutex_unlock(&mgr->lock);
}

uint32_t kvbm__journal_peak_request(kvbm_manager *mgr)
{
	pthread_mutex_lock(&mgr->lock);
	const uint32_t peak = mgr->peak_request;
	mgr->peak_request = 0;
	pthread_mutex_unlock(&mgr->lock);
	return peak;
}
