/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The core's half of a catalog restore (the catalog's is
 * src/catalog/restore.c). What a restored block holds is independent of
 * every other block, so it is written into the slot table by the threads
 * that read the rows, each in block order over blocks of its own, where
 * the writes are sequential and the slot table's page faults are taken
 * on two cores. The registry's content does not depend on the order
 * either, as long as no hash is given twice: the readers enter the hashes
 * too (kvbm__restore_claim). Only the eviction policy needs the restore's
 * eviction order: kvbm__restore_block does that part, on one thread. A
 * hash given twice must go to the block first in eviction order, so then
 * the readers' entries are dropped and kvbm__restore_block does the
 * registry's part as well, refusing the later block exactly as if the
 * blocks had been restored one by one.
 */
#include "manager.h"

static void blank_slot(struct kvbm__slot *s)
{
	*s = (struct kvbm__slot){.position = KVBM_POSITION_UNKNOWN,
				 .priority = KVBM_PRIORITY_DEFAULT};
}

void kvbm__restore_blank(kvbm_manager *mgr, struct kvbm__list *part, uint32_t b)
{
	struct kvbm__slot *s = &mgr->slots[b];

	blank_slot(s);
	s->list = KVBM__IN_RESET;
	s->prev = part->tail;
	s->next = KVBM__NIL;
	if (part->tail != KVBM__NIL)
		mgr->slots[part->tail].next = b;
	else
		part->head = b;
	part->tail = b;
	part->count++;
}

void kvbm__restore_stage(kvbm_manager *mgr, const struct kvbm__image *img)
{
	struct kvbm__slot *s = &mgr->slots[img->block];

	*s = (struct kvbm__slot){
		.hash = img->hash,
		.parent = img->parent,
		.access_tick = img->access_tick,
		.position = img->position,
		.prev = KVBM__NIL,
		.next = KVBM__NIL,
		.access_count = img->access_count,
		.priority = img->priority,
		.retention = img->retention,
		.state = KVBM__SLOT_INACTIVE,
		.reset_on_release = mgr->reset_on_release,
		.durable_claim = 1,
		.row_taken = 1,
	};
}

void kvbm__restore_staged(const kvbm_manager *mgr, uint32_t b, struct kvbm__image *img)
{
	const struct kvbm__slot *s = &mgr->slots[b];

	*img = (struct kvbm__image){.block = b, .hash = s->hash, .parent = s->parent,
				    .position = s->position};
}

bool kvbm__restore_restored(const kvbm_manager *mgr, uint32_t b)
{
	return mgr->slots[b].state == KVBM__SLOT_INACTIVE;
}

void kvbm__restore_prefetch(const kvbm_manager *mgr, uint32_t b)
{
	/* A slot straddles two cache lines. */
	__builtin_prefetch(&mgr->slots[b], 1);
	__builtin_prefetch((const char *)&mgr->slots[b + 1] - 1, 1);
	if (mgr->evict->prefetch)
		mgr->evict->prefetch(mgr->evict_state, b);
}

void kvbm__restore_prefetch_probe(const kvbm_manager *mgr, uint32_t b)
{
	kvbm__registry_prefetch(&mgr->registry, mgr->slots[b].hash);
}

bool kvbm__restore_wants_frequency(const kvbm_manager *mgr)
{
	return mgr->evict->restore_frequency != NULL;
}

void kvbm__restore_uses(kvbm_manager *mgr)
{
	if (mgr->evict->restore_uses)
		mgr->evict->restore_uses(mgr->evict_state);
}

uint32_t kvbm__restore_frequency(const kvbm_manager *mgr, uint32_t b)
{
	const struct kvbm__slot *s = &mgr->slots[b];

	return mgr->evict->frequency ? mgr->evict->frequency(mgr->evict_state, b, s->hash)
				     : s->access_count;
}

bool kvbm__restore_claim(kvbm_manager *mgr, uint32_t b)
{
	return kvbm__registry_insert_shared(&mgr->registry, mgr->slots[b].hash, b);
}

void kvbm__restore_claimed(kvbm_manager *mgr, bool all, uint32_t n)
{
	if (all)
		mgr->registry.count = n;
	else
		kvbm__registry_clear(&mgr->registry);
}

void kvbm__restore_unstage(kvbm_manager *mgr, uint32_t b, bool claimed)
{
	if (claimed)
		(void)kvbm__registry_remove(&mgr->registry, mgr->slots[b].hash);
	blank_slot(&mgr->slots[b]);
}

kvbm_status kvbm__restore_block(kvbm_manager *mgr, uint32_t b, uint64_t evict_key,
				uint32_t frequency, bool claimed)
{
	if (b >= mgr->block_count)
		return kvbm__fail(mgr, KVBM_E_CORRUPT, "row for block %u is out of range (block_count %u)",
				  b, mgr->block_count);
	struct kvbm__slot *s = &mgr->slots[b];
	/* A staged slot has no epoch until this call gives it one. */
	if (s->state != KVBM__SLOT_INACTIVE || s->epoch != 0)
		return kvbm__fail(mgr, KVBM_E_CORRUPT, "block %u is restored twice", b);
	if (!claimed && kvbm__registry_find(&mgr->registry, s->hash) != KVBM__NIL) {
		const kvbm_hash hash = s->hash;
		blank_slot(s);
		return kvbm__fail(mgr, KVBM_E_CORRUPT, "hash %016llx is claimed by two blocks",
				  (unsigned long long)hash);
	}
	mgr->epoch_next = kvbm__next_gen(mgr->epoch_next);
	s->epoch = mgr->epoch_next;
	/* Keys become the new ticks, so the clock must stay ahead of them. */
	const uint64_t key = evict_key > mgr->clock ? evict_key : mgr->clock + 1;
	mgr->clock = key > s->access_tick ? key : s->access_tick;
	s->release_tick = s->first_tick = key;
	if (!claimed)
		kvbm__registry_insert(&mgr->registry, s->hash, b);
	if (mgr->evict->restore_frequency)
		mgr->evict->restore_frequency(mgr->evict_state, s->hash, frequency);
	kvbm__pool_policy_insert(mgr, b, key, key);
	mgr->inactive_count++;
	return KVBM_OK;
}

void kvbm__restore_end(kvbm_manager *mgr, const struct kvbm__list *parts, int n, bool relink)
{
	struct kvbm__list *reset = &mgr->reset;

	*reset = (struct kvbm__list){KVBM__NIL, KVBM__NIL, 0};
	if (relink) {
		/* Blocks refused in eviction order go back among the others in
		 * block order, where a one-by-one restore would have left them. */
		for (uint32_t b = 0; b < mgr->block_count; b++)
			if (mgr->slots[b].state == KVBM__SLOT_RESET) {
				mgr->slots[b].list = KVBM__IN_NONE;
				kvbm__list_push_tail(mgr, KVBM__IN_RESET, b);
			}
		return;
	}
	for (int k = 0; k < n; k++) {
		if (!parts[k].count)
			continue;
		if (reset->tail != KVBM__NIL) {
			mgr->slots[reset->tail].next = parts[k].head;
			mgr->slots[parts[k].head].prev = reset->tail;
		} else {
			reset->head = parts[k].head;
		}
		reset->tail = parts[k].tail;
		reset->count += parts[k].count;
	}
}
