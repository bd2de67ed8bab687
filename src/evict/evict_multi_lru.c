/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Multi-level LRU with TinyLFU frequencies, as the seed's MultiLRU: four
 * LRU lists (tiers); a block entering the pool joins the tier its hash's
 * estimated frequency earns (below thresholds[0]: tier 0, below [1]: 1,
 * below [2]: 2, else 3), and the victim is the least recently released
 * block of the lowest non-empty tier. Frequencies come from a count-min
 * sketch (4 rows of 4-bit counters, width the next power of two >= the
 * block count) bumped on every registration and hit; after 10 x
 * block_count bumps every counter is halved, so old popularity fades
 * (TinyLFU's aging, sample size as in Caffeine). Each tier is a list
 * ordered by release tick, so the order key is the tick and a restore
 * (frequency first, then insert in key order) rebuilds tiers and order.
 */
#include <stdlib.h>
#include <string.h>

#include "evict.h"
#include "evict_list.h"

#define TIERS 4
#define ROWS 4

struct mlru {
	uint32_t *prev, *next;
	uint8_t *tier;
	uint64_t *key;
	struct kvbm__dlist tier_list[TIERS];
	uint8_t threshold[3];
	uint8_t *sketch; /* ROWS x width counters, one per byte, 0..15 */
	uint64_t width_mask;
	uint64_t bumps, sample;
};

static void mlru_destroy(void *st)
{
	struct mlru *m = st;

	if (!m)
		return;
	free(m->prev);
	free(m->next);
	free(m->tier);
	free(m->key);
	free(m->sketch);
	free(m);
}

static kvbm_status mlru_create(const struct kvbm__evict_params *p, void **out)
{
	struct mlru *m = calloc(1, sizeof(*m));
	uint64_t width = 64;

	if (!m)
		return KVBM_E_NOMEM;
	while (width < p->block_count)
		width <<= 1;
	m->width_mask = width - 1;
	m->sample = 10ull * p->block_count;
	memcpy(m->threshold, p->thresholds, sizeof(m->threshold));
	m->prev = malloc(p->block_count * sizeof(*m->prev));
	m->next = malloc(p->block_count * sizeof(*m->next));
	m->tier = malloc(p->block_count);
	m->key = malloc(p->block_count * sizeof(*m->key));
	m->sketch = calloc(ROWS * width, 1);
	if (!m->prev || !m->next || !m->tier || !m->key || !m->sketch) {
		mlru_destroy(m);
		return KVBM_E_NOMEM;
	}
	for (int t = 0; t < TIERS; t++)
		kvbm__dlist_init(&m->tier_list[t]);
	*out = m;
	return KVBM_OK;
}

/* Counter of hash in row r: independent positions from one 64-bit hash
 * by multiplying with a different odd constant per row. */
static uint8_t *cell(struct mlru *m, kvbm_hash h, int r)
{
	static const uint64_t mul[ROWS] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full,
					   0x165667B19E3779F9ull, 0xD6E8FEB86659FD93ull};
	const uint64_t x = (h ^ (h >> 29)) * mul[r];

	return &m->sketch[(uint64_t)r * (m->width_mask + 1) + ((x >> 32) & m->width_mask)];
}

static uint32_t estimate(struct mlru *m, kvbm_hash h)
{
	uint32_t f = 15;

	for (int r = 0; r < ROWS; r++) {
		const uint8_t c = *cell(m, h, r);
		if (c < f)
			f = c;
	}
	return f;
}

static void age(struct mlru *m)
{
	for (uint64_t i = 0; i < ROWS * (m->width_mask + 1); i++)
		m->sketch[i] >>= 1;
	m->bumps /= 2;
}

static void mlru_touch(void *st, kvbm_hash h, bool registered)
{
	(void)registered; /* every use counts */
	struct mlru *m = st;
	const uint32_t f = estimate(m, h);

	/* Conservative update: raise only the counters at the minimum, which
	 * keeps collisions from inflating the estimate. */
	for (int r = 0; r < ROWS; r++) {
		uint8_t *c = cell(m, h, r);
		if (*c == f && f < 15)
			(*c)++;
	}
	if (++m->bumps >= m->sample)
		age(m);
}

static uint32_t mlru_frequency(void *st, uint32_t b, kvbm_hash h)
{
	(void)b;
	return estimate(st, h);
}

static void mlru_restore_frequency(void *st, kvbm_hash h, uint32_t freq)
{
	struct mlru *m = st;

	if (freq > 15)
		freq = 15;
	for (int r = 0; r < ROWS; r++) {
		uint8_t *c = cell(m, h, r);
		if (*c < freq)
			*c = (uint8_t)freq;
	}
}

static void mlru_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct mlru *m = st;
	const uint32_t f = estimate(m, e->hash);
	const int t = f < m->threshold[0] ? 0 : f < m->threshold[1] ? 1 : f < m->threshold[2] ? 2 : 3;

	m->tier[b] = (uint8_t)t;
	m->key[b] = e->tick;
	kvbm__dlist_append(m->prev, m->next, &m->tier_list[t], b);
}

static void mlru_remove(void *st, uint32_t b)
{
	struct mlru *m = st;

	kvbm__dlist_unlink(m->prev, m->next, &m->tier_list[m->tier[b]], b);
}

static bool mlru_victim(void *st, uint32_t *b)
{
	struct mlru *m = st;

	for (int t = 0; t < TIERS; t++) {
		if (m->tier_list[t].head != KVBM__LIST_NIL) {
			*b = m->tier_list[t].head;
			mlru_remove(m, *b);
			return true;
		}
	}
	return false;
}

static uint64_t mlru_order_key(void *st, uint32_t b)
{
	return ((const struct mlru *)st)->key[b];
}

/* Victims leave the coldest tier first and change no frequency. */
static uint32_t mlru_peek(void *st, uint32_t n, uint32_t *out, uint32_t *scratch)
{
	const struct mlru *m = st;
	uint32_t got = 0;

	(void)scratch;
	for (int t = 0; t < TIERS && got < n; t++)
		got += kvbm__dlist_peek(m->next, &m->tier_list[t], n - got, out + got);
	return got;
}

const struct kvbm__evict_ops kvbm__evict_multi_lru = {
	.name = "multi-lru",
	.create = mlru_create,
	.destroy = mlru_destroy,
	.insert = mlru_insert,
	.remove = mlru_remove,
	.victim = mlru_victim,
	.peek = mlru_peek,
	.order_key = mlru_order_key,
	.touch = mlru_touch,
	.frequency = mlru_frequency,
	.restore_frequency = mlru_restore_frequency,
};
