/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Allocation: all or nothing, reset pool first, then eviction in the
 * policy's order. Without a catalog an eviction is immediate. With one, a
 * block whose hash a committed catalog row may still claim is never handed
 * out: allocation takes the reset pool, then the reserve the writer
 * reclaimed ahead (free rows already committed), and only when those run
 * short does it queue more victims for the writer and wait, bounded by
 * cfg.catalog_wait_ms.
 */
#include <assert.h>
#include <errno.h>
#include <time.h>

#include "manager.h"

static void hand_out(kvbm_manager *mgr, uint32_t b, kvbm_mutable *out)
{
	struct kvbm__slot *s = &mgr->slots[b];

	s->state = KVBM__SLOT_MUTABLE;
	s->gen = kvbm__next_gen(s->gen);
	s->hash = 0;
	s->row_taken = 0;
	s->parent = 0;
	s->position = KVBM_POSITION_UNKNOWN;
	s->reset_on_release = mgr->reset_on_release;
	s->priority = KVBM_PRIORITY_DEFAULT;
	s->retention = 0;
	s->access_count = 0;
	s->first_tick = 0;
	mgr->n_mutable++;
	mgr->m.inflight_mutable++;
	*out = (kvbm_mutable){.block = b, .gen = s->gen};
}

/* Evict a block that is in the registry but no longer in the policy. */
static uint32_t evict(kvbm_manager *mgr, uint32_t b, kvbm_hash *evicted, uint32_t *n_evicted)
{
	if (evicted)
		evicted[*n_evicted] = mgr->slots[b].hash;
	(*n_evicted)++;
	kvbm__pool_drop_hash(mgr, b);
	return b;
}

/* Blocks a caller can have right now without waiting. */
static uint32_t ready(const kvbm_manager *mgr)
{
	if (!mgr->journal_on)
		return mgr->reset.count + kvbm__inactive_pool(mgr);
	return mgr->reset.count + mgr->reserve.count;
}

/* Whether the policy's own rule finds the victims n blocks need (vllm-arc
 * may refuse with inactive blocks left, as vLLM's ARC does). With a
 * catalog the writer takes victims ahead, so this is the writer's call. */
static bool policy_agrees(kvbm_manager *mgr, uint32_t n)
{
	if (!mgr->evict->can_evict || mgr->journal_on)
		return true;
	const uint32_t spare = mgr->reset.count + mgr->reserve.count +
			       mgr->reclaim_pending.count + mgr->freeing.count;
	return n <= spare || mgr->evict->can_evict(mgr->evict_state, n - spare);
}

static uint32_t available(const kvbm_manager *mgr)
{
	return kvbm__reset_pool(mgr) + kvbm__inactive_pool(mgr);
}

/* Victims taken from the policy at once, up to this many: their slots are
 * prefetched together, so the evictions of one allocation wait for one
 * miss, not one each (a victim released long ago is cold, and only a
 * policy whose order follows block ids, as LRU's does on a steady cycle,
 * finds its victims' slots streamed in by the hardware). */
#define VICTIM_BATCH 16

static void take(kvbm_manager *mgr, uint32_t n, kvbm_mutable *out, kvbm_hash *evicted,
		 uint32_t *n_evicted)
{
	uint32_t from_reset = 0, ev = 0;
	uint32_t victims[VICTIM_BATCH], n_victims = 0, next_victim = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t b;
		if (next_victim < n_victims) {
			b = victims[next_victim++];
			mgr->inactive_count--;
			evict(mgr, b, evicted, &ev);
		} else if ((b = kvbm__list_pop_head(mgr, KVBM__IN_RESET)) != KVBM__NIL) {
			from_reset++;
		} else if ((b = kvbm__list_pop_head(mgr, KVBM__IN_RESERVE)) != KVBM__NIL ||
			   (!mgr->journal_on &&
			    ((b = kvbm__list_pop_head(mgr, KVBM__IN_RECLAIM_PENDING)) != KVBM__NIL ||
			     (b = kvbm__list_pop_head(mgr, KVBM__IN_FREEING)) != KVBM__NIL))) {
			evict(mgr, b, evicted, &ev);
		} else {
			/* The reset and reserve lists are empty and stay so
			 * for the rest of this allocation: every block left
			 * to hand out is a victim. */
			n_victims = n - i < VICTIM_BATCH ? n - i : VICTIM_BATCH;
			for (uint32_t k = 0; k < n_victims; k++) {
				const bool got = mgr->evict->victim(mgr->evict_state, &victims[k]);
				assert(got && !mgr->journal_on);
				(void)got;
				const char *s = (const char *)&mgr->slots[victims[k]];
				__builtin_prefetch(s);
				__builtin_prefetch(s + sizeof(struct kvbm__slot) - 1);
			}
			/* In a hierarchy each eviction also updates its
			 * index: the victims' entries miss together too. */
			if (mgr->registry.presence)
				for (uint32_t k = 0; k < n_victims; k++)
					kvbm__presence_prefetch(mgr->registry.presence,
								mgr->slots[victims[k]].hash);
			b = victims[0];
			next_victim = 1;
			mgr->inactive_count--;
			evict(mgr, b, evicted, &ev);
		}
		hand_out(mgr, b, &out[i]);
	}
	mgr->m.allocations += n;
	mgr->m.allocations_from_reset += from_reset;
	mgr->m.evictions += ev;
	*n_evicted = ev;
	/* Refill the reserve before it runs dry, so allocations rarely wait. */
	if (mgr->journal_on && from_reset < n &&
	    mgr->reserve.count + mgr->reclaim_pending.count + mgr->freeing.count <
		    mgr->reserve_target / 2)
		kvbm__catalog_wake(mgr->catalog);
}

/* Queue enough victims for the writer that `need` more blocks become safe
 * once it commits. */
static void reclaim_for(kvbm_manager *mgr, uint32_t need)
{
	const uint32_t coming = mgr->reset_unsafe.count + mgr->reset_freeing.count +
				mgr->reclaim_pending.count + mgr->freeing.count;

	if (coming < need)
		kvbm__journal_reclaim_locked(mgr, mgr->reserve.count + mgr->reclaim_pending.count +
							  (need - coming));
}

static void deadline_after(struct timespec *ts, uint32_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

kvbm_status kvbm_allocate_ex(kvbm_manager *mgr, uint32_t n, kvbm_mutable *out,
			     kvbm_hash *evicted, uint32_t *n_evicted)
{
	KVBM_CHECK_ARG(mgr, mgr && out && n > 0);
	kvbm_status st = KVBM_OK;
	uint32_t ev = 0;
	bool waited = false;
	struct timespec deadline;

	pthread_mutex_lock(&mgr->lock);
	if (n > mgr->peak_request)
		mgr->peak_request = n;
	for (;;) {
		if (available(mgr) < n) {
			st = kvbm__fail(mgr, KVBM_E_EXHAUSTED,
					"cannot allocate %u blocks: %u free or evictable", n,
					available(mgr));
			break;
		}
		if (ready(mgr) >= n && !policy_agrees(mgr, n)) {
			st = kvbm__fail(mgr, KVBM_E_EXHAUSTED,
					"cannot allocate %u blocks: the %s policy finds too few victims",
					n, mgr->evict->name);
			break;
		}
		if (ready(mgr) >= n) {
			take(mgr, n, out, evicted, &ev);
			break;
		}
		/* Catalog attached and the safe supply is short. Victims whose
		 * rows never reached the file are safe at once; for the others,
		 * wait for the writer to commit their reclaim. */
		reclaim_for(mgr, n - ready(mgr));
		if (ready(mgr) >= n) {
			take(mgr, n, out, evicted, &ev);
			break;
		}
		if (!waited) {
			waited = true;
			mgr->m.catalog_alloc_waits++;
			deadline_after(&deadline, mgr->cfg.catalog_wait_ms);
		}
		kvbm__catalog_wake(mgr->catalog);
		const uint64_t gen = mgr->commit_gen;
		int rc = 0;
		/* Atomic: the writer reads it between rows, without the lock. */
		__atomic_add_fetch(&mgr->alloc_waiters, 1, __ATOMIC_RELAXED);
		while (mgr->commit_gen == gen && mgr->journal_on && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&mgr->journal_cv, &mgr->lock, &deadline);
		__atomic_sub_fetch(&mgr->alloc_waiters, 1, __ATOMIC_RELAXED);
		/* A failing writer retries (and on a full disk makes room first),
		 * so keep waiting for it until the deadline, then say why. */
		if (rc == ETIMEDOUT && ready(mgr) < n) {
			if (mgr->journal_on && mgr->journal_error != KVBM_OK)
				st = kvbm__fail(mgr, mgr->journal_error,
						"catalog writer is failing (%s): %u evicted blocks could "
						"not be recorded free within %u ms",
						kvbm_strerror(mgr->journal_error), n - ready(mgr),
						mgr->cfg.catalog_wait_ms);
			else
				st = kvbm__fail(mgr, KVBM_E_BUSY,
						"catalog writer did not free %u blocks within %u ms",
						n - ready(mgr), mgr->cfg.catalog_wait_ms);
			break;
		}
	}
	pthread_mutex_unlock(&mgr->lock);
	if (n_evicted)
		*n_evicted = ev;
	return st;
}

kvbm_status kvbm_allocate(kvbm_manager *mgr, uint32_t n, kvbm_mutable *out)
{
	return kvbm_allocate_ex(mgr, n, out, NULL, NULL);
}

kvbm_status kvbm_reset_inactive(kvbm_manager *mgr, uint32_t *n_dropped)
{
	KVBM_CHECK_ARG(mgr, mgr);
	uint32_t dropped = 0, b;

	pthread_mutex_lock(&mgr->lock);
	while (mgr->evict->victim(mgr->evict_state, &b)) {
		mgr->inactive_count--;
		kvbm__pool_drop_hash(mgr, b);
		kvbm__pool_free_block(mgr, b);
		dropped++;
	}
	while ((b = kvbm__list_pop_head(mgr, KVBM__IN_RESERVE)) != KVBM__NIL ||
	       (b = kvbm__list_pop_head(mgr, KVBM__IN_FREEING)) != KVBM__NIL ||
	       (b = kvbm__list_pop_head(mgr, KVBM__IN_RECLAIM_PENDING)) != KVBM__NIL) {
		kvbm__pool_drop_hash(mgr, b);
		kvbm__pool_free_block(mgr, b);
		dropped++;
	}
	pthread_mutex_unlock(&mgr->lock);
	if (n_dropped)
		*n_dropped = dropped;
	return KVBM_OK;
}
