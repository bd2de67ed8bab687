/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the calls an offloading manager makes (kvbm.vllm) on a
 * small memory-only manager in pull-event mode: cache a hash (allocate,
 * stage, register, release), kvbm_touch, kvbm_pin, kvbm_unpin (one pin or
 * a batch), kvbm_locate, kvbm_events_take, and allocations that evict.
 * Under LRU a shadow model predicts the whole eviction order: a block's key
 * is its last release or touch (touched while pinned included), a pinned
 * block is never a victim and returns to its key's place when unpinned.
 * Every victim kvbm_allocate_ex reports must be the model's, every taken
 * event the model's next one. Under ARC only what holds for any policy is
 * checked: victims are cached and unpinned, events match, counts add up.
 *
 * Input: byte 0 block count (2..33), byte 1 bit 0 policy (0 LRU, 1 ARC),
 * then one operation per byte with arguments from the following bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kvbm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_HASH 24      /* hashes 1..N_HASH */
#define MAX_PINS 64
#define MAX_EVENTS 16384 /* two per operation at most */

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_offload: %s:%d: check failed: %s\n",        \
				__FILE__, __LINE__, #cond);                             \
			__builtin_trap();                                               \
		}                                                                       \
	} while (0)

struct model {
	bool lru;
	uint32_t total, held; /* held: mutable blocks this target keeps */
	bool cached[N_HASH + 1];  /* registered (inactive or pinned) */
	uint32_t pins[N_HASH + 1];  /* live pins per hash */
	uint64_t key[N_HASH + 1];   /* recency: last release or touch */
	uint64_t clock;
	kvbm_immutable pin[MAX_PINS];
	kvbm_hash pin_hash[MAX_PINS];
	uint32_t n_pin;
	kvbm_event expect[MAX_EVENTS]; /* events not yet taken */
	uint32_t n_expect;
};

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t next(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint32_t n_cached(const struct model *m)
{
	uint32_t n = 0;

	for (int h = 1; h <= N_HASH; h++)
		n += m->cached[h];
	return n;
}

/* The model's next victim: the unpinned cached hash with the oldest key. */
static kvbm_hash model_victim(const struct model *m)
{
	kvbm_hash best = 0;

	for (int h = 1; h <= N_HASH; h++)
		if (m->cached[h] && !m->pins[h] && (!best || m->key[h] < m->key[best]))
			best = (kvbm_hash)h;
	return best;
}

static void expect_event(struct model *m, kvbm_event_kind kind, kvbm_hash h)
{
	if (m->n_expect < MAX_EVENTS)
		m->expect[m->n_expect++] = (kvbm_event){.kind = kind, .hash = h};
}

/* Account for what kvbm_allocate_ex evicted, checking it against the model. */
static void evicted(struct model *m, const kvbm_hash *ev, uint32_t n_ev)
{
	for (uint32_t i = 0; i < n_ev; i++) {
		const kvbm_hash h = ev[i];
		CHECK(h >= 1 && h <= N_HASH && m->cached[h] && !m->pins[h]);
		if (m->lru)
			CHECK(h == model_victim(m));
		m->cached[h] = false;
		expect_event(m, KVBM_EVENT_REMOVED, h);
	}
}

static void op_cache(kvbm_manager *mgr, struct model *m, kvbm_hash h)
{
	kvbm_mutable mu;
	kvbm_complete c;
	kvbm_immutable ref;
	kvbm_hash ev[1];
	uint32_t n_ev = 0;

	if (m->cached[h])
		return;
	const uint32_t free_blocks = m->total - m->held - n_cached(m);
	const kvbm_status st = kvbm_allocate_ex(mgr, 1, &mu, ev, &n_ev);
	if (st == KVBM_E_EXHAUSTED) {
		CHECK(free_blocks == 0 && model_victim(m) == 0);
		return;
	}
	CHECK(st == KVBM_OK);
	CHECK(n_ev == (free_blocks == 0 ? 1u : 0u));
	evicted(m, ev, n_ev);
	CHECK(kvbm_stage(mgr, mu, h, kvbm_block_size(mgr), &c) == KVBM_OK);
	CHECK(kvbm_register(mgr, c, &ref) == KVBM_OK);
	CHECK(kvbm_immutable_release(mgr, ref) == KVBM_OK);
	m->cached[h] = true;
	m->key[h] = ++m->clock;
	expect_event(m, KVBM_EVENT_STORED, h);
}

static void op_touch(kvbm_manager *mgr, struct model *m, struct input *in)
{
	kvbm_hash hs[3];
	const uint32_t n = 1 + next(in) % 3;
	uint32_t moved = 0, want = 0;

	for (uint32_t i = 0; i < n; i++)
		hs[i] = 1 + next(in) % N_HASH;
	CHECK(kvbm_touch(mgr, hs, n, &moved) == KVBM_OK);
	for (uint32_t i = 0; i < n; i++) {
		if (!m->cached[hs[i]])
			continue;
		want += m->pins[hs[i]] == 0; /* pinned: new recency, not moved now */
		m->key[hs[i]] = ++m->clock;
	}
	CHECK(moved == want);
}

static void op_pin(kvbm_manager *mgr, struct model *m, kvbm_hash h)
{
	kvbm_immutable p;
	uint32_t found = 9;

	if (m->n_pin == MAX_PINS)
		return;
	CHECK(kvbm_pin(mgr, &h, 1, &p, &found) == KVBM_OK);
	CHECK(found == (m->cached[h] ? 1u : 0u));
	if (!found) {
		CHECK(p.gen == 0);
		return;
	}
	m->pins[h]++;
	m->pin[m->n_pin] = p;
	m->pin_hash[m->n_pin++] = h;
}

/* Unpin the pins at [from, from + n) of the list, in one call. */
static void op_unpin(kvbm_manager *mgr, struct model *m, uint32_t from, uint32_t n)
{
	if (from + n > m->n_pin)
		return;
	CHECK(kvbm_unpin(mgr, &m->pin[from], n) == KVBM_OK);
	for (uint32_t i = from; i < from + n; i++)
		m->pins[m->pin_hash[i]]--;
	/* Unpinned blocks keep their keys: the model needs no reordering. A
	 * stale second unpin is detected and changes nothing. */
	CHECK(kvbm_unpin(mgr, &m->pin[from], 1) == KVBM_E_STALE);
	memmove(&m->pin[from], &m->pin[from + n], (m->n_pin - from - n) * sizeof(m->pin[0]));
	memmove(&m->pin_hash[from], &m->pin_hash[from + n],
		(m->n_pin - from - n) * sizeof(m->pin_hash[0]));
	m->n_pin -= n;
}

static void op_locate(kvbm_manager *mgr, const struct model *m, kvbm_hash h)
{
	uint32_t block = 7, found = 9;
	bool present = false;

	CHECK(kvbm_locate(mgr, &h, 1, &block, &found) == KVBM_OK);
	CHECK(found == (m->cached[h] ? 1u : 0u));
	CHECK((block != UINT32_MAX) == m->cached[h]);
	CHECK(kvbm_contains(mgr, &h, 1, &present, NULL, NULL) == KVBM_OK);
	CHECK(present == m->cached[h]);
}

static void op_take(kvbm_manager *mgr, struct model *m, size_t cap)
{
	kvbm_event ev[8];
	size_t n = 99;

	CHECK(kvbm_events_take(mgr, ev, cap, &n, NULL) == KVBM_OK);
	CHECK(n <= cap && n <= m->n_expect);
	for (size_t i = 0; i < n; i++) {
		CHECK(ev[i].kind == m->expect[i].kind);
		if (ev[i].kind != KVBM_EVENT_CLEARED)
			CHECK(ev[i].hash == m->expect[i].hash);
	}
	memmove(m->expect, m->expect + n, (m->n_expect - n) * sizeof(m->expect[0]));
	m->n_expect -= (uint32_t)n;
}

/* Allocate and keep up to 3 blocks (forcing evictions), or give them back. */
static void op_hold(kvbm_manager *mgr, struct model *m, uint32_t n, kvbm_mutable *held)
{
	kvbm_hash ev[3];
	uint32_t n_ev = 0;

	if (m->held) {
		for (uint32_t i = 0; i < m->held; i++)
			CHECK(kvbm_mutable_release(mgr, held[i]) == KVBM_OK);
		m->held = 0;
		return;
	}
	const uint32_t free_blocks = m->total - n_cached(m);
	uint32_t evictable = 0;
	for (int h = 1; h <= N_HASH; h++)
		evictable += m->cached[h] && !m->pins[h];
	const kvbm_status st = kvbm_allocate_ex(mgr, n, held, ev, &n_ev);
	if (st == KVBM_E_EXHAUSTED) {
		CHECK(free_blocks + evictable < n);
		return;
	}
	CHECK(st == KVBM_OK && free_blocks + evictable >= n);
	CHECK(n_ev == (n > free_blocks ? n - free_blocks : 0));
	evicted(m, ev, n_ev);
	m->held = n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	static struct model m;
	kvbm_mutable held[3];
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;

	memset(&m, 0, sizeof(m));
	kvbm_config_init(&cfg);
	cfg.block_count = 2 + next(&in) % 32;
	cfg.block_size = 4;
	m.lru = (next(&in) & 1) == 0;
	cfg.evict_policy = m.lru ? KVBM_EVICT_LRU : KVBM_EVICT_ARC;
	cfg.event_sink = kvbm_event_pull_sink;
	m.total = cfg.block_count;
	if (kvbm_open(&cfg, &mgr) != KVBM_OK)
		return 0;
	expect_event(&m, KVBM_EVENT_CLEARED, 0);
	while (in.n) {
		const uint8_t op = next(&in);
		const kvbm_hash h = 1 + next(&in) % N_HASH;
		switch (op % 8) {
		case 0:
		case 1:
			op_cache(mgr, &m, h);
			break;
		case 2:
			op_touch(mgr, &m, &in);
			break;
		case 3:
			op_pin(mgr, &m, h);
			break;
		case 4:
			if (m.n_pin)
				op_unpin(mgr, &m, (uint32_t)(h % m.n_pin), 1);
			break;
		case 5: /* a batch, released in any order of keys */
			if (m.n_pin)
				op_unpin(mgr, &m, 0, 1 + (uint32_t)(h % m.n_pin));
			break;
		case 6:
			op_locate(mgr, &m, h);
			op_take(mgr, &m, h % 9);
			break;
		default:
			op_hold(mgr, &m, 1 + (uint32_t)(h % 3), held);
			break;
		}
		kvbm_pool_counts c;
		CHECK(kvbm_pool_counts_read(mgr, &c) == KVBM_OK);
		CHECK(c.reset + c.inactive + c.mutable_ + c.staged + c.registered + c.duplicate == c.total);
		CHECK(c.registry == n_cached(&m));
		CHECK(c.mutable_ == m.held);
	}
	op_take(mgr, &m, 8);
	CHECK(kvbm_unpin(mgr, m.pin, m.n_pin) == KVBM_OK);
	CHECK(kvbm_close(mgr) == KVBM_OK);
	return 0;
}
