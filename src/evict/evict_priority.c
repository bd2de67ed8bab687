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
 *
 * A restore re-inserts a block with its last release tick as its first
 * one, so the expiry cannot be recomputed from the row's key: a block
 * whose retention ran out before a restart would get its priority back
 * for another `retention` ticks. The frequency column carries the expiry
 * instead, relative to the release tick (the row's key): EXPIRY_TAG | k,
 * the priority decays k ticks after that release (k = 0: it already had).
 * The tag tells these rows from those of a run under another policy
 * (sketch counts, queue flags, access counts: all far below 2^31); such a
 * row, or 0 (nothing decays), leaves the expiry to the first-entry rule.
 */
#include <stdlib.h>

#include "evict.h"
#include "evict_heap.h"

#define NIL UINT32_MAX
#define TICK_BITS 56
#define TICK_MASK ((1ull << TICK_BITS) - 1)
#define EXPIRY_TAG (1u << 31)

struct prio {
	struct kvbm__heap order;  /* key: priority << 56 | tick */
	struct kvbm__heap expiry; /* blocks whose priority will decay */
	uint8_t *expiring;        /* block is in the expiry heap */
	uint64_t *tick;
	uint64_t *expires;        /* tick the priority decays at; 0 = never */
	kvbm_hash *hash;          /* hash of the block's last stay in the pool */
	uint64_t now;
	kvbm_hash stash_hash;     /* restore_frequency() just before insert() */
	uint32_t stash_freq;
	bool stashed;
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
	free(p->expires);
	free(p->hash);
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
			(p->tick = malloc(params->block_count * sizeof(*p->tick))) &&
			(p->expires = calloc(params->block_count, sizeof(*p->expires))) &&
			(p->hash = calloc(params->block_count, sizeof(*p->hash)));
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

/* The tick e's priority decays at, 0 for never: from the restored row if
 * restore_frequency() just named this hash, else from the first entry. */
static uint64_t expiry_of(struct prio *p, const struct kvbm__evict_entry *e, uint32_t priority)
{
	const bool restored = p->stashed && p->stash_hash == e->hash;

	p->stashed = false;
	if (!e->retention || priority == KVBM_PRIORITY_DEFAULT)
		return 0;
	if (restored && (p->stash_freq & EXPIRY_TAG)) {
		/* Clamped: it can never be later than a fresh retention. */
		const uint64_t after = p->stash_freq & ~EXPIRY_TAG;
		return e->tick + (after < e->retention ? after : e->retention);
	}
	return e->first_tick + e->retention;
}

static void prio_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct prio *p = st;
	uint32_t priority = e->priority > 100 ? 100 : e->priority;

	if (e->tick > p->now)
		p->now = e->tick;
	p->tick[b] = e->tick;
	p->hash[b] = e->hash;
	p->expires[b] = expiry_of(p, e, priority);
	if (p->expires[b] != 0) {
		if (p->expires[b] <= p->now) {
			priority = KVBM_PRIORITY_DEFAULT;
		} else {
			kvbm__heap_push(&p->expiry, b, p->expires[b]);
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

/* Demote the blocks whose retention ran out by now. Lazy: done before a
 * victim is chosen, and equally before a preview, since demoting earlier
 * changes no decision (now only grows, so an expired block stays expired,
 * and frequency() reads expires[], which this keeps). */
static void settle(struct prio *p)
{
	uint32_t b;

	while ((b = kvbm__heap_min(&p->expiry)) != NIL && p->expiry.key[b] <= p->now) {
		kvbm__heap_remove(&p->expiry, b);
		p->expiring[b] = 0;
		kvbm__heap_rekey(&p->order, b, order_of(KVBM_PRIORITY_DEFAULT, p->tick[b]));
	}
}

static bool prio_victim(void *st, uint32_t *out)
{
	struct prio *p = st;
	uint32_t b;

	settle(p);
	if ((b = kvbm__heap_min(&p->order)) == NIL)
		return false;
	prio_remove(p, b);
	*out = b;
	return true;
}

/* Victims come out of the order heap by key, and a victim moves nothing
 * else: now changes only on insert. */
static uint32_t prio_peek(void *st, uint32_t n, uint32_t *out, uint32_t *scratch)
{
	struct prio *p = st;

	settle(p);
	return kvbm__heap_peek_ids(p->order.ids, p->order.size, p->order.key, n, out, scratch);
}

static uint64_t prio_order_key(void *st, uint32_t b)
{
	return ((const struct prio *)st)->tick[b];
}

/* The expiry relative to the release tick, encoded as the file comment
 * says. An active block reports its last stay in the pool; its row is
 * keyed by its last use instead, so a restore moves its expiry later by
 * the ticks between that release and that use. A block never in the pool
 * under this hash reports 0. */
static uint32_t prio_frequency(void *st, uint32_t b, kvbm_hash hash)
{
	const struct prio *p = st;

	if (p->hash[b] != hash || p->expires[b] == 0)
		return 0;
	if (p->expires[b] <= p->tick[b])
		return EXPIRY_TAG;
	const uint64_t after = p->expires[b] - p->tick[b];
	return EXPIRY_TAG | (uint32_t)(after < EXPIRY_TAG - 1 ? after : EXPIRY_TAG - 1);
}

static void prio_restore_frequency(void *st, kvbm_hash hash, uint32_t freq)
{
	struct prio *p = st;

	p->stash_hash = hash;
	p->stash_freq = freq;
	p->stashed = true;
}

const struct kvbm__evict_ops kvbm__evict_priority = {
	.name = "priority",
	.create = prio_create,
	.destroy = prio_destroy,
	.insert = prio_insert,
	.remove = prio_remove,
	.victim = prio_victim,
	.order_key = prio_order_key,
	.frequency = prio_frequency,
	.restore_frequency = prio_restore_frequency,
	.peek = prio_peek,
};
