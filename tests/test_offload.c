/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The two calls an offloading manager (kvbm.vllm) builds on: kvbm_touch,
 * which reorders eviction without counting a hit, and pull-mode events,
 * which an offloading manager drains synchronously after each call. Every
 * expectation is an eviction choice or an event list that the wrong
 * behaviour would change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

#define BS 16u

/* Register hash on a fresh block and release it: it becomes inactive. */
static void cache(kvbm_manager *mgr, kvbm_hash hash)
{
	assert_int_equal(kvbm_immutable_release(mgr, kvbm_test_make(mgr, hash)), KVBM_OK);
}

/* Allocate one block and return the hash its eviction dropped (0: none).
 * The block stays held (close releases it), so the next call evicts too. */
static kvbm_hash evict_one(kvbm_manager *mgr)
{
	kvbm_mutable m;
	kvbm_hash ev = 0;
	uint32_t n_ev = 0;

	assert_int_equal(kvbm_allocate_ex(mgr, 1, &m, &ev, &n_ev), KVBM_OK);
	return n_ev ? ev : 0;
}

static void test_touch_reorders_lru(void **state)
{
	kvbm_manager *mgr = kvbm_test_open(3, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	const kvbm_hash a = 0xa, b = 0xb, c = 0xc, missing = 0xdead;
	uint32_t moved = 99;

	cache(mgr, a);
	cache(mgr, b);
	cache(mgr, c);
	const kvbm_hash touched[] = {a, missing};
	assert_int_equal(kvbm_touch(mgr, touched, 2, &moved), KVBM_OK);
	assert_int_equal(moved, 1); /* the unregistered hash is skipped */
	assert_int_equal(evict_one(mgr), b); /* a moved behind c */
	assert_int_equal(evict_one(mgr), c);
	assert_int_equal(evict_one(mgr), a);
	kvbm_test_assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	(void)state;
}

static void test_touch_counts_no_hit(void **state)
{
	kvbm_manager *mgr = kvbm_test_open(4, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	kvbm_metrics before, after;
	const kvbm_hash a = 0xa;

	cache(mgr, a);
	const kvbm_block_info info_before = kvbm_test_info(mgr, 0);
	assert_int_equal(kvbm_metrics_read(mgr, &before), KVBM_OK);
	assert_int_equal(kvbm_touch(mgr, &a, 1, NULL), KVBM_OK);
	assert_int_equal(kvbm_metrics_read(mgr, &after), KVBM_OK);
	assert_int_equal(after.resurrections, before.resurrections);
	assert_int_equal(after.match_blocks_returned, before.match_blocks_returned);
	assert_int_equal(after.match_hashes_requested, before.match_hashes_requested);
	/* Still inactive, unreferenced: touch takes no reference. */
	const kvbm_block_info info_after = kvbm_test_info(mgr, 0);
	assert_int_equal(info_after.state, KVBM_BLOCK_INACTIVE);
	assert_int_equal(info_after.ref_count, info_before.ref_count);
	kvbm_test_assert_counts(mgr, 3, 1, 0, 0, 0, 0);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	(void)state;
}

static void test_touch_skips_referenced(void **state)
{
	kvbm_manager *mgr = kvbm_test_open(2, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	const kvbm_hash a = 0xa, b = 0xb;
	uint32_t moved = 99;

	kvbm_immutable ha = kvbm_test_make(mgr, a);
	cache(mgr, b);
	assert_int_equal(kvbm_touch(mgr, &a, 1, &moved), KVBM_OK);
	assert_int_equal(moved, 0);
	kvbm_test_assert_counts(mgr, 0, 1, 0, 0, 1, 0);
	assert_int_equal(kvbm_immutable_release(mgr, ha), KVBM_OK);
	assert_int_equal(evict_one(mgr), b); /* a's recency is its release */
	assert_int_equal(kvbm_touch(mgr, NULL, 1, NULL), KVBM_E_INVAL);
	assert_int_equal(kvbm_touch(mgr, NULL, 0, NULL), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	(void)state;
}

/* ARC files a touched block as used twice (T2), so a newer block used
 * once (T1) goes first; LRU would evict the older, touched one. */
static void test_touch_promotes_arc(void **state)
{
	const kvbm_evict_policy policies[] = {KVBM_EVICT_ARC, KVBM_EVICT_LRU};
	const kvbm_hash a = 0xa, b = 0xb;

	for (int i = 0; i < 2; i++) {
		kvbm_manager *mgr = kvbm_test_open(2, BS, policies[i], KVBM_DUP_ALLOW);
		cache(mgr, a);
		assert_int_equal(kvbm_touch(mgr, &a, 1, NULL), KVBM_OK);
		cache(mgr, b);
		assert_int_equal(evict_one(mgr), policies[i] == KVBM_EVICT_ARC ? b : a);
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
	}
	(void)state;
}

static void test_locate_takes_nothing(void **state)
{
	kvbm_manager *mgr = kvbm_test_open(4, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	const kvbm_hash hs[] = {0xa, 0xdead, 0xb};
	uint32_t blocks[3], found = 0;

	cache(mgr, 0xa);
	cache(mgr, 0xb);
	kvbm_metrics before, after;
	assert_int_equal(kvbm_metrics_read(mgr, &before), KVBM_OK);
	assert_int_equal(kvbm_locate(mgr, hs, 3, blocks, &found), KVBM_OK);
	assert_int_equal(found, 2);
	assert_int_equal(blocks[0], 0);
	assert_int_equal(blocks[1], UINT32_MAX);
	assert_int_equal(blocks[2], 1);
	assert_int_equal(kvbm_metrics_read(mgr, &after), KVBM_OK);
	assert_int_equal(after.resurrections, before.resurrections);
	kvbm_test_assert_counts(mgr, 2, 2, 0, 0, 0, 0);
	assert_int_equal(evict_one(mgr), 0); /* reset first: order untouched */
	assert_int_equal(evict_one(mgr), 0);
	assert_int_equal(evict_one(mgr), 0xa);
	assert_int_equal(kvbm_locate(mgr, NULL, 1, blocks, NULL), KVBM_E_INVAL);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	(void)state;
}

/* With a catalog the writer takes the next victims out of the policy
 * ahead of time (its reserve); a touch must still save such a block. */
static void test_touch_takes_back_reserve(void **state)
{
	char *dir = kvbm_test_tmpdir("touch");
	char path[512];
	kvbm_config cfg;

	snprintf(path, sizeof(path), "%s/cat.db", dir);
	kvbm_config_init(&cfg);
	cfg.block_count = 3;
	cfg.block_size = BS;
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	cfg.catalog_reserve = 2;
	cfg.evict_policy = KVBM_EVICT_LRU; /* the victims asserted are LRU's, as in the tests above */
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	cache(mgr, 0xa);
	cache(mgr, 0xb);
	cache(mgr, 0xc);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	kvbm_mutable m;
	kvbm_hash ev[1];
	uint32_t n_ev = 0;
	/* An allocation makes the writer fill its reserve (a, then b). */
	assert_int_equal(kvbm_allocate_ex(mgr, 1, &m, ev, &n_ev), KVBM_OK);
	assert_int_equal(ev[0], 0xa);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	const kvbm_hash b = 0xb;
	uint32_t moved = 0;
	assert_int_equal(kvbm_touch(mgr, &b, 1, &moved), KVBM_OK);
	assert_int_equal(moved, 1);
	kvbm_metrics met;
	assert_int_equal(kvbm_metrics_read(mgr, &met), KVBM_OK);
	assert_int_equal(met.resurrections, 0);
	assert_int_equal(evict_one(mgr), 0xc);
	assert_int_equal(evict_one(mgr), 0xb);
	kvbm_test_assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
	(void)state;
}

/* A pinned block is never evicted, its unpin restores its place, and a pin
 * counts no hit: the eviction order is as if the pin never happened. */
static void test_pin_keeps_place(void **state)
{
	const kvbm_evict_policy policies[] = {KVBM_EVICT_LRU, KVBM_EVICT_ARC, KVBM_EVICT_ADAPTIVE};

	for (int i = 0; i < 3; i++) {
		kvbm_manager *mgr = kvbm_test_open(4, BS, policies[i], KVBM_DUP_ALLOW);
		const kvbm_hash a = 0xa, b = 0xb, c = 0xc, d = 0xd;
		kvbm_immutable pin;
		uint32_t found = 0;
		kvbm_metrics before, after;

		cache(mgr, a);
		cache(mgr, b);
		cache(mgr, c);
		cache(mgr, d);
		assert_int_equal(kvbm_metrics_read(mgr, &before), KVBM_OK);
		assert_int_equal(kvbm_pin(mgr, &a, 1, &pin, &found), KVBM_OK);
		assert_int_equal(found, 1);
		assert_int_equal(kvbm_metrics_read(mgr, &after), KVBM_OK);
		assert_int_equal(after.resurrections, before.resurrections);
		assert_int_equal(after.scan_blocks_returned, before.scan_blocks_returned);
		assert_int_equal(evict_one(mgr), b); /* a is pinned: skipped */
		assert_int_equal(kvbm_unpin(mgr, &pin, 1), KVBM_OK);
		assert_int_equal(kvbm_unpin(mgr, &pin, 1), KVBM_E_STALE);
		assert_int_equal(evict_one(mgr), a); /* back at the head, not the tail */
		assert_int_equal(evict_one(mgr), c);
		kvbm_test_assert_invariants(mgr);
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
	}
	(void)state;
}

/* Pins released in any order put each block back where it was, near the
 * head or near the tail of a longer order. */
static void test_unpin_restores_order(void **state)
{
	const kvbm_evict_policy policies[] = {KVBM_EVICT_LRU, KVBM_EVICT_ARC, KVBM_EVICT_ADAPTIVE};

	for (int p = 0; p < 3; p++) {
		kvbm_manager *mgr = kvbm_test_open(8, BS, policies[p], KVBM_DUP_ALLOW);
		const kvbm_hash hs[] = {1, 2, 3, 4, 5, 6, 7, 8};
		const kvbm_hash pinned[] = {7, 2, 5};
		kvbm_immutable pins[3];
		uint32_t found = 0;

		for (int i = 0; i < 8; i++)
			cache(mgr, hs[i]);
		assert_int_equal(kvbm_pin(mgr, pinned, 3, pins, &found), KVBM_OK);
		assert_int_equal(found, 3);
		assert_int_equal(evict_one(mgr), 1);
		assert_int_equal(kvbm_unpin(mgr, &pins[1], 1), KVBM_OK); /* 2: near the head */
		assert_int_equal(kvbm_unpin(mgr, &pins[0], 1), KVBM_OK); /* 7: near the tail */
		assert_int_equal(kvbm_unpin(mgr, &pins[2], 1), KVBM_OK); /* 5: the middle */
		for (int i = 1; i < 8; i++)
			assert_int_equal(evict_one(mgr), hs[i]);
		kvbm_test_assert_invariants(mgr);
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
	}
	(void)state;
}

/* A touch while pinned is the recency the unpin returns to. */
static void test_touch_while_pinned(void **state)
{
	kvbm_manager *mgr = kvbm_test_open(3, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	const kvbm_hash a = 0xa, b = 0xb, c = 0xc, miss = 0x99;
	kvbm_immutable pins[2];
	uint32_t found = 0;

	cache(mgr, a);
	cache(mgr, b);
	cache(mgr, c);
	const kvbm_hash want[] = {a, miss};
	assert_int_equal(kvbm_pin(mgr, want, 2, pins, &found), KVBM_OK);
	assert_int_equal(found, 1);
	assert_int_equal(pins[1].gen, 0);
	assert_int_equal(kvbm_touch(mgr, &a, 1, NULL), KVBM_OK);
	assert_int_equal(kvbm_unpin(mgr, pins, 2), KVBM_OK);
	assert_int_equal(evict_one(mgr), b);
	assert_int_equal(evict_one(mgr), c);
	assert_int_equal(evict_one(mgr), a);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	(void)state;
}

static kvbm_manager *open_pull(uint32_t n, const char *catalog)
{
	kvbm_config cfg;

	kvbm_config_init(&cfg);
	cfg.block_count = n;
	cfg.block_size = BS;
	cfg.event_sink = kvbm_event_pull_sink;
	cfg.catalog_path = catalog;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	return kvbm_test_open_cfg(&cfg);
}

static size_t take(kvbm_manager *mgr, kvbm_event *out, size_t cap)
{
	size_t n = 99;

	assert_int_equal(kvbm_events_take(mgr, out, cap, &n, NULL), KVBM_OK);
	return n;
}

static void test_pull_events_in_order(void **state)
{
	kvbm_manager *mgr = open_pull(1, NULL);
	kvbm_event ev[8];

	/* Synchronous: every event of a call is there when it returns. */
	assert_int_equal(take(mgr, ev, 8), 1);
	assert_int_equal(ev[0].kind, KVBM_EVENT_CLEARED);
	assert_int_equal(take(mgr, ev, 8), 0);
	cache(mgr, 0xa);
	assert_int_equal(take(mgr, ev, 8), 1);
	assert_int_equal(ev[0].kind, KVBM_EVENT_STORED);
	assert_int_equal(ev[0].hash, 0xa);
	assert_int_equal(ev[0].num_tokens, BS);
	cache(mgr, 0xb); /* evicts a */
	/* A small cap leaves the rest queued, in order. */
	assert_int_equal(take(mgr, ev, 1), 1);
	assert_int_equal(ev[0].kind, KVBM_EVENT_REMOVED);
	assert_int_equal(ev[0].hash, 0xa);
	assert_int_equal(take(mgr, ev, 8), 1);
	assert_int_equal(ev[0].kind, KVBM_EVENT_STORED);
	assert_int_equal(ev[0].hash, 0xb);
	kvbm_metrics m;
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_int_equal(m.events_emitted, 4);
	assert_int_equal(m.event_batches, 4);
	cache(mgr, 0xc); /* left queued: close discards it */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	(void)state;
}

/* Token copies of taken events are kvbm's: readable until the next take,
 * then freed; whatever is still queued at close is freed too (ASan's and
 * valgrind's leak checks hold this test to it). */
static void test_pull_tokens_owned(void **state)
{
	kvbm_manager *mgr = open_pull(4, NULL);
	kvbm_event ev[8];
	uint32_t toks[BS];

	for (uint32_t i = 0; i < BS; i++)
		toks[i] = 100 + i;
	const char *keys[] = {"mm-1"};
	for (uint32_t k = 0; k < 3; k++) {
		kvbm_mutable m;
		kvbm_complete c;
		kvbm_immutable h;
		const kvbm_token_block tb = {.tokens = toks, .num_tokens = BS, .position = 0,
					     .lora_name = "adapter", .extra_keys = keys,
					     .n_extra_keys = 1};
		toks[0] = 100 + k; /* three distinct blocks */
		assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
		assert_int_equal(kvbm_stage_tokens(mgr, m, &tb, &c), KVBM_OK);
		assert_int_equal(kvbm_register(mgr, c, &h), KVBM_OK);
		assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	}
	assert_int_equal(take(mgr, ev, 2), 2); /* CLEARED, the first STORED */
	assert_int_equal(ev[1].kind, KVBM_EVENT_STORED);
	assert_non_null(ev[1].tokens);
	assert_int_equal(ev[1].tokens[0], 100);
	assert_string_equal(ev[1].lora_name, "adapter");
	assert_int_equal(ev[1].n_extra_keys, 1);
	assert_string_equal(ev[1].extra_keys, "mm-1");
	assert_int_equal(take(mgr, ev, 1), 1); /* frees the previous take's copies */
	assert_int_equal(ev[0].tokens[0], 101);
	assert_int_equal(kvbm_close(mgr), KVBM_OK); /* one taken, one queued: both freed */
	(void)state;
}

static void test_pull_errors(void **state)
{
	kvbm_manager *mgr = kvbm_test_open(2, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	kvbm_event ev[1];
	size_t n = 99;

	assert_int_equal(kvbm_events_take(mgr, ev, 1, &n, NULL), KVBM_E_MISUSE);
	assert_int_equal(n, 0);
	kvbm_test_assert_msg(mgr, "kvbm_event_pull_sink");
	assert_int_equal(kvbm_events_take(mgr, NULL, 1, &n, NULL), KVBM_E_INVAL);
	assert_int_equal(kvbm_events_take(NULL, ev, 1, &n, NULL), KVBM_E_INVAL);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_event_pull_sink(NULL, NULL); /* a marker: harmless when called */
	(void)state;
}

/* After a restart the queue starts with CLEARED, then the restored block,
 * under the catalog's incarnation, which a second run increments. */
static void test_pull_restore_announcement(void **state)
{
	char *dir = kvbm_test_tmpdir("offload");
	char path[512];
	kvbm_event ev[8];
	uint64_t inc1 = 0, inc2 = 0;
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/cat.db", dir);
	kvbm_manager *mgr = open_pull(4, path);
	assert_int_equal(kvbm_events_take(mgr, ev, 8, &n, &inc1), KVBM_OK);
	cache(mgr, 0x77);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	mgr = open_pull(4, path);
	assert_int_equal(kvbm_events_take(mgr, ev, 8, &n, &inc2), KVBM_OK);
	assert_int_equal(n, 2);
	assert_int_equal(ev[0].kind, KVBM_EVENT_CLEARED);
	assert_int_equal(ev[1].kind, KVBM_EVENT_STORED);
	assert_int_equal(ev[1].hash, 0x77);
	assert_true(inc2 > inc1);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_touch_reorders_lru),
		cmocka_unit_test(test_touch_counts_no_hit),
		cmocka_unit_test(test_touch_skips_referenced),
		cmocka_unit_test(test_touch_promotes_arc),
		cmocka_unit_test(test_locate_takes_nothing),
		cmocka_unit_test(test_touch_takes_back_reserve),
		cmocka_unit_test(test_pin_keeps_place),
		cmocka_unit_test(test_unpin_restores_order),
		cmocka_unit_test(test_touch_while_pinned),
		cmocka_unit_test(test_pull_events_in_order),
		cmocka_unit_test(test_pull_tokens_owned),
		cmocka_unit_test(test_pull_errors),
		cmocka_unit_test(test_pull_restore_announcement),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
