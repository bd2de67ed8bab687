/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Priority with retention, as TensorRT-LLM's KV cache retention config:
 * callers give a registered block a priority 0..100 (default 35; a system
 * prompt might get 90) and optionally a retention, a number of release
 * ticks after its registration first entered the pool during which that
 * priority holds; after it the block counts as default priority. The
 * victim is the block of lowest effective priority, least recently
 * released first among equals.
 *
 * One heap keyed by (effective priority, release tick) gives the victim;
 * a second heap keyed by expiry tick lets the policy demote blocks whose
 * retention ran out, lazily, when a victim is asked for. The policy's
 * clock is the largest release tick it has seen. The order key is the
 * release tick; priorities and retentions are restored from the rows.
 */
#include <stdlib.h>

#include "evict.h"
#include "evict_heap.h"

#define NIL UINT32_MAX
#define TICK_BITS 56
#define TICK_MASK ((1ull << TICK_BITS) - 1)

struct prio {
	struct kvbm__heap order;  /* key: priority << 56 | tick */
	struct kvbm__heap expiry; /* blocks whose priority will decay */
	uint8_t *expiring;        /* block is in the expiry heap */
	uint64_t *tick;
	uint64_t now;
};

static void prio_destroy(void *st)
{
	struct prio *p = st;

	if (!p)
		return;
	kvbm__heap_free(&p->order);
	kvbm__heap_free(&p->expiry);
	free(p->expiring);
	free(p->tick);
	free(p);
}

static kvbm_status prio_create(const struct kvbm__evict_params *params, void **out)
{
	struct prio *p = calloc(1, sizeof(*p));

	if (!p)
		return KVBM_E_NOMEM;
	const bool ok = kvbm__heap_init(&p->order, params->block_count) == KVBM_OK &&
			kvbm__heap_init(&p->expiry, params->block_count) == KVBM_OK &&
			(p->expiring = calloc(params->block_count, 1)) &&
			(p->tick = malloc(params->block_count * sizeof(*p->tick)));
	if (!ok) {
		prio_destroy(p);
		return KVBM_E_NOMEM;
	}
	*out = p;
	return KVBM_OK;
}

static uint64_t order_of(uint32_t priority, uint64_t tick)
{
	return (uint64_t)priority << TICK_BITS | (tick & TICK_MASK);
}

static void prio_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct prio *p = st;
	uint32_t priority = e->priority > 100 ? 100 : e->priority;

	if (e->tick > p->now)
		p->now = e->tick;
	p->tick[b] = e->tick;
	if (e->retention && priority != KVBM_PRIORITY_DEFAULT) {
		const uint64_t expires = e->first_tick + e->retention;
		if (expires <= p->now) {
			priority = KVBM_PRIORITY_DEFAULT;
		} else {
			kvbm__heap_push(&p->expiry, b, expires);
			p->expiring[b] = 1;
		}
	}
	kvbm__heap_push(&p->order, b, order_of(priority, e->tick));
}

static void prio_remove(void *st, uint32_t b)
{
	struct prio *p = st;

	kvbm__heap_remove(&p->order, b);
	if (p->expiring[b]) {
		kvbm__heap_remove(&p->expiry, b);
		p->expiring[b] = 0;
	}
}

static bool prio_victim(void *st, uint32_t *out)
{
	struct prio *p = st;
	uint32_t b;

	while ((b = kvbm__heap_min(&p->expiry)) != NIL && p->expiry.key[b] <= p->now) {
		kvbm__heap_remove(&p->expiry, b);
		p->expiring[b] = 0;
		kvbm__heap_rekey(&p->order, b, order_of(KVBM_PRIORITY_DEFAULT, p->tick[b]));
	}
	if ((b = kvbm__heap_min(&p->order)) == NIL)
		return false;
	prio_remove(p, b);
	*out = b;
	return true;
}

static uint64_t prio_order_key(void *st, uint32_t b)
{
	return ((const struct prio *)st)->tick[b];
}

const struct kvbm__evict_ops kvbm__evict_priority = {
	.name = "priority",
	.create = prio_create,
	.destroy = prio_destroy,
	.insert = prio_insert,
	.remove = prio_remove,
	.victim = prio_victim,
	.order_key = prio_order_key,
};
