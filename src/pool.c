/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pools and the transitions between them: the reset lists, the
 * inactive pool behind the eviction policy, and the catalog's reclaim
 * lists. Every function here runs with the manager lock held and keeps
 * the counts in struct kvbm_manager in step with the slot states, so that
 * reset + inactive + held == total holds after every call.
 */
#include <assert.h>

#include "events.h"
#include "manager.h"

static struct kvbm__list *list_of(kvbm_manager *mgr, enum kvbm__list_id id)
{
	switch (id) {
	case KVBM__IN_RESET: return &mgr->reset;
	case KVBM__IN_RESET_UNSAFE: return &mgr->reset_unsafe;
	case KVBM__IN_RECLAIM_PENDING: return &mgr->reclaim_pending;
	case KVBM__IN_RESERVE: return &mgr->reserve;
	case KVBM__IN_FREEING: return &mgr->freeing;
	case KVBM__IN_RESET_FREEING: return &mgr->reset_freeing;
	case KVBM__IN_NONE: break;
	}
	assert(!"slot is on no list");
	return NULL;
}

void kvbm__list_push_tail(kvbm_manager *mgr, enum kvbm__list_id id, uint32_t b)
{
	struct kvbm__list *l = list_of(mgr, id);
	struct kvbm__slot *s = &mgr->slots[b];

	assert(s->list == KVBM__IN_NONE);
	s->list = (uint8_t)id;
	s->prev = l->tail;
	s->next = KVBM__NIL;
	if (l->tail != KVBM__NIL)
		mgr->slots[l->tail].next = b;
	else
		l->head = b;
	l->tail = b;
	l->count++;
}

void kvbm__list_unlink(kvbm_manager *mgr, uint32_t b)
{
	struct kvbm__slot *s = &mgr->slots[b];
	struct kvbm__list *l = list_of(mgr, (enum kvbm__list_id)s->list);

	if (s->prev != KVBM__NIL)
		mgr->slots[s->prev].next = s->next;
	else
		l->head = s->next;
	if (s->next != KVBM__NIL)
		mgr->slots[s->next].prev = s->prev;
	else
		l->tail = s->prev;
	l->count--;
	s->list = KVBM__IN_NONE;
}

void kvbm__list_move(kvbm_manager *mgr, uint32_t b, enum kvbm__list_id to)
{
	kvbm__list_unlink(mgr, b);
	kvbm__list_push_tail(mgr, to, b);
}

uint32_t kvbm__list_pop_tail(kvbm_manager *mgr, enum kvbm__list_id id)
{
	const uint32_t b = list_of(mgr, id)->tail;

	if (b != KVBM__NIL)
		kvbm__list_unlink(mgr, b);
	return b;
}

uint32_t kvbm__list_pop_head(kvbm_manager *mgr, enum kvbm__list_id id)
{
	const uint32_t b = list_of(mgr, id)->head;

	if (b != KVBM__NIL)
		kvbm__list_unlink(mgr, b);
	return b;
}

void kvbm__pool_free_block(kvbm_manager *mgr, uint32_t b)
{
	struct kvbm__slot *s = &mgr->slots[b];

	s->state = KVBM__SLOT_RESET;
	s->gen = kvbm__next_gen(s->gen);
	s->epoch = 0;
	s->hash = 0;
	s->row_taken = 0;
	s->parent = 0;
	s->position = KVBM_POSITION_UNKNOWN;
	s->refs = s->dups = 0;
	/* A committed row may still say this block holds its old hash: such a
	 * block waits on reset_unsafe until a reclaim record listing it
	 * commits. */
	kvbm__list_push_tail(mgr, s->durable_claim ? KVBM__IN_RESET_UNSAFE : KVBM__IN_RESET, b);
	kvbm__pool_policy_forget(mgr, b);
}

void kvbm__pool_drop_hash(kvbm_manager *mgr, uint32_t b)
{
	struct kvbm__slot *s = &mgr->slots[b];

	kvbm__registry_prefetch_presence(&mgr->registry, s->hash);
	const bool removed = kvbm__registry_remove(&mgr->registry, s->hash);

	assert(removed);
	(void)removed;
	if (mgr->events)
		kvbm__events_push(mgr, KVBM_EVENT_REMOVED, b);
	s->epoch = 0;
	s->first_tick = 0;
	kvbm__row_extras_drop(mgr, b);
	/* No dirty mark: a block without a hash has no row to write. If a
	 * row of it committed, durable_claim keeps it off the reset list
	 * until the writer has recorded it free (journal.c). */
}

void kvbm__pool_policy_insert(kvbm_manager *mgr, uint32_t b, uint64_t tick, uint64_t first_tick)
{
	const struct kvbm__slot *s = &mgr->slots[b];
	const struct kvbm__evict_entry e = {
		.hash = s->hash,
		.parent = s->parent,
		.position = s->position,
		.priority = s->priority,
		.retention = s->retention,
		.tick = tick,
		.first_tick = first_tick,
	};

	mgr->evict->insert(mgr->evict_state, b, &e);
}

void kvbm__pool_make_inactive(kvbm_manager *mgr, uint32_t b)
{
	kvbm__pool_make_inactive_at(mgr, b, 0);
}

void kvbm__pool_make_inactive_at(kvbm_manager *mgr, uint32_t b, uint64_t tick)
{
	struct kvbm__slot *s = &mgr->slots[b];

	assert(s->state == KVBM__SLOT_PRIMARY && s->refs == 0 && s->dups == 0);
	mgr->n_primary--;
	if (s->reset_on_release) {
		kvbm__pool_drop_hash(mgr, b);
		kvbm__pool_free_block(mgr, b);
		return;
	}
	s->release_tick = tick ? tick : ++mgr->clock;
	if (s->first_tick == 0)
		s->first_tick = s->release_tick;
	s->state = KVBM__SLOT_INACTIVE;
	kvbm__pool_policy_insert(mgr, b, s->release_tick, s->first_tick);
	mgr->inactive_count++;
	kvbm__journal_mark(mgr, b);
}

static bool take_back(kvbm_manager *mgr, uint32_t b, bool keep_place)
{
	struct kvbm__slot *s = &mgr->slots[b];

	if (s->state == KVBM__SLOT_INACTIVE) {
		if (keep_place && mgr->evict->hold)
			mgr->evict->hold(mgr->evict_state, b);
		else
			mgr->evict->remove(mgr->evict_state, b);
		mgr->inactive_count--;
	} else if (s->state == KVBM__SLOT_RECLAIM) {
		kvbm__list_unlink(mgr, b);
		kvbm__pool_unevict(mgr, b);
	} else {
		return false;
	}
	s->state = KVBM__SLOT_PRIMARY;
	mgr->n_primary++;
	kvbm__journal_mark(mgr, b);
	return true;
}

void kvbm__pool_unevict(kvbm_manager *mgr, uint32_t b)
{
	if (mgr->evict->unevict)
		mgr->evict->unevict(mgr->evict_state, b);
}

bool kvbm__pool_take_back(kvbm_manager *mgr, uint32_t b)
{
	return take_back(mgr, b, false);
}

bool kvbm__pool_pin_back(kvbm_manager *mgr, uint32_t b)
{
	return take_back(mgr, b, true);
}

void kvbm__pool_resurrect(kvbm_manager *mgr, uint32_t b)
{
	if (kvbm__pool_take_back(mgr, b))
		mgr->m.resurrections++;
}

void kvbm__pool_touch(kvbm_manager *mgr, uint32_t b)
{
	struct kvbm__slot *s = &mgr->slots[b];

	/* A registration zeroed the count; every use since raised it. */
	const bool registered = s->access_count == 0;
	s->access_count++;
	s->access_tick = ++mgr->clock;
	if (mgr->evict->touch)
		mgr->evict->touch(mgr->evict_state, s->hash, registered);
	kvbm__journal_mark(mgr, b);
}
