/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every block transition of kvbm.h, one test each: allocation (reset pool
 * first, then eviction, all or nothing), staging, unstaging, releases,
 * registration under both duplication policies, references, weak handles,
 * reset-on-release and closing with blocks held. Error paths live in
 * test_errors.c; match and eviction order in test_match.c and test_pool.c.
 */
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

#define BS 4u  /* block size: small, so token counts are easy to get wrong */
#define NB 8u  /* blocks per manager */

static int setup_allow(void **state)
{
	*state = kvbm_test_open(NB, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	return 0;
}

static int setup_reject(void **state)
{
	*state = kvbm_test_open(NB, BS, KVBM_EVICT_LRU, KVBM_DUP_REJECT);
	return 0;
}

static int teardown(void **state)
{
	kvbm_manager *mgr = *state;

	kvbm_test_assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	return 0;
}

static bool present(kvbm_manager *mgr, kvbm_hash h)
{
	bool p = false;

	assert_int_equal(kvbm_contains(mgr, &h, 1, &p, NULL, NULL), KVBM_OK);
	return p;
}

static uint32_t refs_of(kvbm_manager *mgr, kvbm_immutable h)
{
	uint32_t n = 0;

	assert_int_equal(kvbm_immutable_ref_count(mgr, h, &n), KVBM_OK);
	return n;
}

/* Make the hashes inactive in this order (each registered, then released). */
static void make_inactive(kvbm_manager *mgr, const kvbm_hash *hashes, uint32_t n,
			  uint32_t *blocks)
{
	for (uint32_t i = 0; i < n; i++) {
		const kvbm_immutable h = kvbm_test_make(mgr, hashes[i]);
		if (blocks)
			blocks[i] = h.block;
		assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
		kvbm_test_assert_invariants(mgr);
	}
}

static void lifecycle__config_defaults(void **state)
{
	kvbm_config cfg;

	(void)state;
	memset(&cfg, 0xa5, sizeof(cfg));
	kvbm_config_init(&cfg);
	assert_int_equal(cfg.block_count, 0);
	assert_int_equal(cfg.block_size, 16);
	assert_string_equal(cfg.tier, "G1");
	assert_int_equal(cfg.dup_policy, KVBM_DUP_ALLOW);
	assert_int_equal(cfg.evict_policy, KVBM_EVICT_ADAPTIVE);
	assert_false(cfg.reset_on_release);
	assert_null(cfg.catalog_path);
	assert_null(cfg.event_sink);
	kvbm_config_init(NULL); /* documented as ignored */
}

static void lifecycle__open_puts_every_block_in_reset(void **state)
{
	kvbm_manager *mgr = *state;

	assert_int_equal(kvbm_total_blocks(mgr), NB);
	assert_int_equal(kvbm_block_size(mgr), BS);
	assert_int_equal(kvbm_available_blocks(mgr), NB);
	kvbm_test_assert_counts(mgr, NB, 0, 0, 0, 0, 0);
	for (uint32_t b = 0; b < NB; b++) {
		const kvbm_block_info info = kvbm_test_info(mgr, b);
		assert_int_equal(info.state, KVBM_BLOCK_RESET);
		assert_int_equal(info.ref_count, 0);
		assert_int_equal(info.hash, 0);
		assert_false(info.reset_on_release);
	}
}

static void lifecycle__allocate_hands_out_distinct_mutable_blocks(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m[NB];
	bool seen[NB] = {false};

	assert_int_equal(kvbm_allocate(mgr, 3, m), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 3, 0, 3, 0, 0, 0);
	assert_int_equal(kvbm_allocate(mgr, NB - 3, m + 3), KVBM_OK);
	kvbm_test_assert_counts(mgr, 0, 0, NB, 0, 0, 0);
	for (uint32_t i = 0; i < NB; i++) {
		assert_true(m[i].block < NB);
		assert_false(seen[m[i].block]);
		seen[m[i].block] = true;
		assert_int_not_equal(m[i].gen, 0);
		assert_int_equal(kvbm_test_info(mgr, m[i].block).state, KVBM_BLOCK_MUTABLE);
	}
	assert_int_equal(kvbm_available_blocks(mgr), 0);
	for (uint32_t i = 0; i < NB; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB, 0, 0, 0, 0, 0);
}

static void lifecycle__allocate_takes_reset_before_evicting(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash hs[3] = {101, 102, 103};
	kvbm_mutable m[NB];
	kvbm_hash ev[NB];
	uint32_t n_ev = 99;

	make_inactive(mgr, hs, 3, NULL);
	kvbm_test_assert_counts(mgr, NB - 3, 3, 0, 0, 0, 0);
	assert_int_equal(kvbm_available_blocks(mgr), NB);
	/* Everything the reset pool has: no eviction yet. */
	assert_int_equal(kvbm_allocate_ex(mgr, NB - 3, m, ev, &n_ev), KVBM_OK);
	assert_int_equal(n_ev, 0);
	for (uint32_t i = 0; i < 3; i++)
		assert_true(present(mgr, hs[i]));
	kvbm_test_assert_counts(mgr, 0, 3, NB - 3, 0, 0, 0);
	/* One more: the least recently released hash goes. */
	assert_int_equal(kvbm_allocate_ex(mgr, 1, m + NB - 3, ev, &n_ev), KVBM_OK);
	assert_int_equal(n_ev, 1);
	assert_int_equal(ev[0], 101);
	assert_false(present(mgr, 101));
	assert_true(present(mgr, 102));
	const kvbm_block_info info = kvbm_test_info(mgr, m[NB - 3].block);
	assert_int_equal(info.state, KVBM_BLOCK_MUTABLE);
	assert_int_equal(info.hash, 0);
	kvbm_test_assert_counts(mgr, 0, 2, NB - 2, 0, 0, 0);
	for (uint32_t i = 0; i < NB - 2; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
}

static void lifecycle__allocate_mixes_reset_and_evicted_in_one_call(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash hs[4] = {201, 202, 203, 204};
	kvbm_mutable hold[NB], m[NB];
	kvbm_hash ev[NB];
	uint32_t blocks[4], n_ev = 0;

	make_inactive(mgr, hs, 4, blocks);
	assert_int_equal(kvbm_allocate(mgr, NB - 5, hold), KVBM_OK); /* 1 reset left */
	kvbm_test_assert_counts(mgr, 1, 4, NB - 5, 0, 0, 0);
	assert_int_equal(kvbm_allocate_ex(mgr, 3, m, ev, &n_ev), KVBM_OK);
	assert_int_equal(n_ev, 2);
	assert_int_equal(ev[0], 201);
	assert_int_equal(ev[1], 202);
	/* The evicted blocks are among those handed out. */
	int got = 0;
	for (uint32_t i = 0; i < 3; i++)
		got += m[i].block == blocks[0] || m[i].block == blocks[1];
	assert_int_equal(got, 2);
	kvbm_test_assert_counts(mgr, 0, 2, NB - 2, 0, 0, 0);
	/* evicted may be NULL while n_evicted is reported. */
	assert_int_equal(kvbm_allocate_ex(mgr, 1, m + 3, NULL, &n_ev), KVBM_OK);
	assert_int_equal(n_ev, 1);
	assert_false(present(mgr, 203));
	assert_true(present(mgr, 204));
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	for (uint32_t i = 0; i < NB - 5; i++)
		assert_int_equal(kvbm_mutable_release(mgr, hold[i]), KVBM_OK);
}

static void lifecycle__allocate_exhausted_takes_nothing(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash hs[2] = {301, 302};
	kvbm_mutable hold[NB], m[NB + 1];
	kvbm_hash ev[NB + 1];
	uint32_t n_ev = 77;

	make_inactive(mgr, hs, 2, NULL);
	assert_int_equal(kvbm_allocate(mgr, NB - 4, hold), KVBM_OK);
	kvbm_test_assert_counts(mgr, 2, 2, NB - 4, 0, 0, 0);
	memset(m, 0, sizeof(m));
	assert_int_equal(kvbm_allocate_ex(mgr, 5, m, ev, &n_ev), KVBM_E_EXHAUSTED);
	kvbm_test_assert_error(mgr, KVBM_E_EXHAUSTED, "5");
	assert_int_equal(n_ev, 0);
	/* Nothing taken: counts, cached hashes and out[] untouched. */
	kvbm_test_assert_counts(mgr, 2, 2, NB - 4, 0, 0, 0);
	assert_true(present(mgr, 301));
	assert_true(present(mgr, 302));
	for (uint32_t i = 0; i < 5; i++)
		assert_int_equal(m[i].gen, 0);
	assert_int_equal(kvbm_allocate(mgr, NB + 1, m), KVBM_E_EXHAUSTED);
	kvbm_test_assert_counts(mgr, 2, 2, NB - 4, 0, 0, 0);
	/* Exactly what is available still works. */
	assert_int_equal(kvbm_allocate(mgr, 4, m), KVBM_OK);
	kvbm_test_assert_counts(mgr, 0, 0, NB, 0, 0, 0);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	for (uint32_t i = 0; i < NB - 4; i++)
		assert_int_equal(kvbm_mutable_release(mgr, hold[i]), KVBM_OK);
}

static void lifecycle__mutable_release_returns_block_to_reset(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_mutable_release(mgr, m), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, m.block).state, KVBM_BLOCK_RESET);
	kvbm_test_assert_counts(mgr, NB, 0, 0, 0, 0, 0);
}

static void lifecycle__stage_records_hash_and_consumes_mutable(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, 0xabc, BS, &c), KVBM_OK);
	assert_int_equal(c.block, m.block);
	assert_int_not_equal(c.gen, 0);
	const kvbm_block_info info = kvbm_test_info(mgr, c.block);
	assert_int_equal(info.state, KVBM_BLOCK_STAGED);
	assert_int_equal(info.hash, 0xabc);
	assert_int_equal(info.position, KVBM_POSITION_UNKNOWN);
	assert_int_equal(info.parent_hash, 0);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 1, 0, 0);
	/* A staged hash is not matchable yet. */
	assert_false(present(mgr, 0xabc));
	assert_int_equal(kvbm_mutable_release(mgr, m), KVBM_E_STALE);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB, 0, 0, 0, 0, 0);
}

static void lifecycle__stage_wrong_size_keeps_mutable(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c = {0};

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, 7, BS - 1, &c), KVBM_E_SIZE);
	kvbm_test_assert_error(mgr, KVBM_E_SIZE, "3");
	assert_int_equal(kvbm_stage(mgr, m, 7, BS * 2, &c), KVBM_E_SIZE);
	kvbm_test_assert_error(mgr, KVBM_E_SIZE, "8");
	assert_int_equal(kvbm_stage(mgr, m, 7, 0, &c), KVBM_E_SIZE);
	assert_int_equal(c.gen, 0);
	assert_int_equal(kvbm_test_info(mgr, m.block).state, KVBM_BLOCK_MUTABLE);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 1, 0, 0, 0);
	/* The same handle still stages. */
	assert_int_equal(kvbm_stage(mgr, m, 7, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
}

static void lifecycle__stage_lineage_records_parent_and_position(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m[2];
	kvbm_complete c[2];

	assert_int_equal(kvbm_allocate(mgr, 2, m), KVBM_OK);
	/* Position 0: the parent argument is ignored. */
	assert_int_equal(kvbm_stage_lineage(mgr, m[0], 11, 999, 0, BS, &c[0]), KVBM_OK);
	assert_int_equal(kvbm_stage_lineage(mgr, m[1], 12, 11, 1, BS, &c[1]), KVBM_OK);
	kvbm_block_info info = kvbm_test_info(mgr, c[0].block);
	assert_int_equal(info.position, 0);
	assert_int_equal(info.parent_hash, 0);
	assert_int_equal(info.hash, 11);
	info = kvbm_test_info(mgr, c[1].block);
	assert_int_equal(info.position, 1);
	assert_int_equal(info.parent_hash, 11);
	/* Lineage survives registration. */
	kvbm_immutable h[2];
	assert_int_equal(kvbm_register_batch(mgr, c, 2, h), KVBM_OK);
	info = kvbm_test_info(mgr, h[1].block);
	assert_int_equal(info.state, KVBM_BLOCK_REGISTERED);
	assert_int_equal(info.position, 1);
	assert_int_equal(info.parent_hash, 11);
	assert_int_equal(kvbm_immutable_release_batch(mgr, h, 2), KVBM_OK);
	info = kvbm_test_info(mgr, h[1].block);
	assert_int_equal(info.state, KVBM_BLOCK_INACTIVE);
	assert_int_equal(info.position, 1);
}

static void lifecycle__unstage_returns_mutable_and_forgets_hash(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m, m2;
	kvbm_complete c, c2;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage_lineage(mgr, m, 42, 41, 3, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_unstage(mgr, c, &m2), KVBM_OK);
	assert_int_equal(m2.block, m.block);
	const kvbm_block_info info = kvbm_test_info(mgr, m2.block);
	assert_int_equal(info.state, KVBM_BLOCK_MUTABLE);
	assert_int_equal(info.hash, 0);
	assert_int_equal(info.position, KVBM_POSITION_UNKNOWN);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 1, 0, 0, 0);
	/* Both older handles are now stale; the new one stages again. */
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_E_STALE);
	assert_int_equal(kvbm_stage(mgr, m, 43, BS, &c2), KVBM_E_STALE);
	assert_int_equal(kvbm_stage(mgr, m2, 43, BS, &c2), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, m2.block).hash, 43);
	assert_int_equal(kvbm_complete_release(mgr, c2), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB, 0, 0, 0, 0, 0);
}

static void lifecycle__complete_release_returns_block_to_reset(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, 55, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
	const kvbm_block_info info = kvbm_test_info(mgr, c.block);
	assert_int_equal(info.state, KVBM_BLOCK_RESET);
	assert_int_equal(info.hash, 0);
	assert_false(present(mgr, 55));
	kvbm_test_assert_counts(mgr, NB, 0, 0, 0, 0, 0);
}

static void lifecycle__register_makes_hash_matchable(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable h;
	kvbm_hash got = 0;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, 0x5eed, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &h), KVBM_OK);
	assert_int_equal(h.block, m.block);
	assert_int_not_equal(h.gen, 0);
	assert_true(present(mgr, 0x5eed));
	assert_int_equal(kvbm_immutable_hash(mgr, h, &got), KVBM_OK);
	assert_int_equal(got, 0x5eed);
	assert_int_equal(refs_of(mgr, h), 1);
	const kvbm_block_info info = kvbm_test_info(mgr, h.block);
	assert_int_equal(info.state, KVBM_BLOCK_REGISTERED);
	assert_int_equal(info.ref_count, 1);
	assert_int_equal(info.hash, 0x5eed);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 0, 1, 0);
	assert_int_equal(kvbm_test_counts(mgr).registry, 1);
	/* The complete handle was consumed. */
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_E_STALE);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void lifecycle__register_batch_registers_each_in_order(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m[4];
	kvbm_complete c[4];
	kvbm_immutable h[4];

	assert_int_equal(kvbm_allocate(mgr, 4, m), KVBM_OK);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(kvbm_stage(mgr, m[i], 600 + i, BS, &c[i]), KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, 4, h), KVBM_OK);
	for (uint32_t i = 0; i < 4; i++) {
		kvbm_hash got;
		assert_int_equal(h[i].block, m[i].block);
		assert_int_equal(kvbm_immutable_hash(mgr, h[i], &got), KVBM_OK);
		assert_int_equal(got, 600 + i);
		assert_int_equal(kvbm_complete_release(mgr, c[i]), KVBM_E_STALE);
	}
	kvbm_test_assert_counts(mgr, NB - 4, 0, 0, 0, 4, 0);
	assert_int_equal(kvbm_immutable_release_batch(mgr, h, 4), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 4, 4, 0, 0, 0, 0);
}

static void lifecycle__register_batch_same_hash_twice_follows_policy(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m[2];
	kvbm_complete c[2];
	kvbm_immutable h[2];

	assert_int_equal(kvbm_allocate(mgr, 2, m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m[0], 77, BS, &c[0]), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m[1], 77, BS, &c[1]), KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, 2, h), KVBM_OK);
	assert_int_equal(h[0].block, m[0].block);
	assert_int_equal(h[1].block, m[1].block); /* ALLOW: a duplicate */
	assert_int_equal(kvbm_test_info(mgr, m[1].block).state, KVBM_BLOCK_DUPLICATE);
	kvbm_test_assert_counts(mgr, NB - 2, 0, 0, 0, 1, 1);
	assert_int_equal(kvbm_immutable_release_batch(mgr, h, 2), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void lifecycle__dup_allow_duplicate_keeps_primary_active(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable p = kvbm_test_make(mgr, 900);
	const kvbm_immutable d = kvbm_test_make(mgr, 900);
	kvbm_hash got;

	assert_int_not_equal(d.block, p.block);
	assert_int_equal(kvbm_test_info(mgr, d.block).state, KVBM_BLOCK_DUPLICATE);
	assert_int_equal(kvbm_test_info(mgr, d.block).hash, 900);
	assert_int_equal(kvbm_immutable_hash(mgr, d, &got), KVBM_OK);
	assert_int_equal(got, 900);
	assert_int_equal(refs_of(mgr, d), 1);
	assert_int_equal(refs_of(mgr, p), 1);
	kvbm_test_assert_counts(mgr, NB - 2, 0, 0, 0, 1, 1);
	assert_int_equal(kvbm_test_counts(mgr).registry, 1);

	/* The primary's last reference goes, but the duplicate keeps it active:
	 * it is not evictable, so only the reset blocks are available. */
	assert_int_equal(kvbm_immutable_release(mgr, p), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, p.block).state, KVBM_BLOCK_REGISTERED);
	assert_int_equal(kvbm_test_counts(mgr).inactive, 0);
	assert_int_equal(kvbm_available_blocks(mgr), NB - 2);
	assert_true(present(mgr, 900));

	/* A match finds the primary, not the duplicate. */
	kvbm_immutable hit;
	uint32_t matched = 0;
	const kvbm_hash q = 900;
	assert_int_equal(kvbm_match(mgr, &q, 1, &hit, &matched), KVBM_OK);
	assert_int_equal(matched, 1);
	assert_int_equal(hit.block, p.block);
	assert_int_equal(kvbm_immutable_release(mgr, hit), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, p.block).state, KVBM_BLOCK_REGISTERED);

	/* Releasing the duplicate resets it, and the primary goes inactive. */
	assert_int_equal(kvbm_immutable_release(mgr, d), KVBM_OK);
	const kvbm_block_info di = kvbm_test_info(mgr, d.block);
	assert_int_equal(di.state, KVBM_BLOCK_RESET);
	assert_int_equal(di.hash, 0);
	assert_int_equal(kvbm_test_info(mgr, p.block).state, KVBM_BLOCK_INACTIVE);
	assert_true(present(mgr, 900));
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void lifecycle__dup_allow_primary_release_after_duplicate(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable p = kvbm_test_make(mgr, 901);
	const kvbm_immutable d = kvbm_test_make(mgr, 901);

	assert_int_equal(kvbm_immutable_release(mgr, d), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, d.block).state, KVBM_BLOCK_RESET);
	assert_int_equal(kvbm_test_info(mgr, p.block).state, KVBM_BLOCK_REGISTERED);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 0, 1, 0);
	assert_int_equal(kvbm_immutable_release(mgr, p), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, p.block).state, KVBM_BLOCK_INACTIVE);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void lifecycle__dup_allow_over_inactive_primary_resurrects_it(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash h0 = 902;
	uint32_t pb;

	make_inactive(mgr, &h0, 1, &pb);
	const kvbm_immutable d = kvbm_test_make(mgr, 902);
	assert_int_not_equal(d.block, pb);
	assert_int_equal(kvbm_test_info(mgr, d.block).state, KVBM_BLOCK_DUPLICATE);
	/* The primary is active again (no references of its own) and cannot
	 * be evicted while the duplicate lives. */
	const kvbm_block_info pi = kvbm_test_info(mgr, pb);
	assert_int_equal(pi.state, KVBM_BLOCK_REGISTERED);
	assert_int_equal(pi.ref_count, 0);
	kvbm_test_assert_counts(mgr, NB - 2, 0, 0, 0, 1, 1);
	kvbm_mutable m[NB];
	assert_int_equal(kvbm_allocate(mgr, NB - 1, m), KVBM_E_EXHAUSTED);
	assert_int_equal(kvbm_immutable_release(mgr, d), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, pb).state, KVBM_BLOCK_INACTIVE);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void lifecycle__dup_reject_returns_existing_primary(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable p = kvbm_test_make(mgr, 910);
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable r;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, 910, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &r), KVBM_OK);
	assert_int_equal(r.block, p.block);
	assert_int_not_equal(r.block, c.block);
	assert_false(r.ref == p.ref && r.gen == p.gen); /* a distinct reference */
	assert_int_equal(refs_of(mgr, p), 2);
	const kvbm_block_info ci = kvbm_test_info(mgr, c.block);
	assert_int_equal(ci.state, KVBM_BLOCK_RESET);
	assert_int_equal(ci.hash, 0);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_E_STALE);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 0, 1, 0);
	assert_int_equal(kvbm_immutable_release(mgr, p), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, p.block).state, KVBM_BLOCK_REGISTERED);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, p.block).state, KVBM_BLOCK_INACTIVE);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void lifecycle__dup_reject_resurrects_inactive_primary(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash h0 = 911;
	uint32_t pb;

	make_inactive(mgr, &h0, 1, &pb);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
	const kvbm_immutable r = kvbm_test_make(mgr, 911);
	assert_int_equal(r.block, pb);
	assert_int_equal(kvbm_test_info(mgr, pb).state, KVBM_BLOCK_REGISTERED);
	assert_int_equal(refs_of(mgr, r), 1);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 0, 1, 0);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void lifecycle__dup_reject_batch_with_repeated_hash(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m[3];
	kvbm_complete c[3];
	kvbm_immutable h[3];

	assert_int_equal(kvbm_allocate(mgr, 3, m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m[0], 920, BS, &c[0]), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m[1], 921, BS, &c[1]), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m[2], 920, BS, &c[2]), KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, 3, h), KVBM_OK);
	assert_int_equal(h[0].block, m[0].block);
	assert_int_equal(h[1].block, m[1].block);
	assert_int_equal(h[2].block, m[0].block);
	assert_int_equal(refs_of(mgr, h[0]), 2);
	kvbm_test_assert_counts(mgr, NB - 2, 0, 0, 0, 2, 0);
	assert_int_equal(kvbm_immutable_release_batch(mgr, h, 3), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 2, 2, 0, 0, 0, 0);
}

static void lifecycle__retain_and_release_count_references(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable a = kvbm_test_make(mgr, 1000);
	kvbm_immutable b, c;

	assert_int_equal(kvbm_immutable_retain(mgr, a, &b), KVBM_OK);
	assert_int_equal(b.block, a.block);
	assert_false(b.ref == a.ref && b.gen == a.gen);
	assert_int_equal(kvbm_immutable_retain(mgr, b, &c), KVBM_OK);
	assert_int_equal(refs_of(mgr, a), 3);
	assert_int_equal(kvbm_test_info(mgr, a.block).ref_count, 3);
	kvbm_metrics mt;
	assert_int_equal(kvbm_metrics_read(mgr, &mt), KVBM_OK);
	assert_int_equal(mt.inflight_immutable, 3);
	/* Any order; the block stays registered until the last one. */
	assert_int_equal(kvbm_immutable_release(mgr, b), KVBM_OK);
	assert_int_equal(refs_of(mgr, c), 2);
	assert_int_equal(kvbm_immutable_release(mgr, a), KVBM_OK);
	assert_int_equal(refs_of(mgr, c), 1);
	assert_int_equal(kvbm_test_info(mgr, c.block).state, KVBM_BLOCK_REGISTERED);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 0, 1, 0);
	assert_int_equal(kvbm_immutable_release(mgr, c), KVBM_OK);
	const kvbm_block_info info = kvbm_test_info(mgr, c.block);
	assert_int_equal(info.state, KVBM_BLOCK_INACTIVE);
	assert_int_equal(info.ref_count, 0);
	assert_int_equal(info.hash, 1000);
	assert_true(present(mgr, 1000));
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
	assert_int_equal(kvbm_metrics_read(mgr, &mt), KVBM_OK);
	assert_int_equal(mt.inflight_immutable, 0);
}

static void lifecycle__release_batch_releases_all(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_immutable h[3];

	for (uint32_t i = 0; i < 3; i++)
		h[i] = kvbm_test_make(mgr, 1100 + i);
	assert_int_equal(kvbm_immutable_release_batch(mgr, h, 0), KVBM_OK);
	assert_int_equal(kvbm_immutable_release_batch(mgr, NULL, 0), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 3, 0, 0, 0, 3, 0);
	assert_int_equal(kvbm_immutable_release_batch(mgr, h, 3), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 3, 3, 0, 0, 0, 0);
}

static void lifecycle__reset_on_release_per_block_skips_cache(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable h = kvbm_test_make(mgr, 1200);
	kvbm_immutable h2;

	assert_int_equal(kvbm_immutable_retain(mgr, h, &h2), KVBM_OK);
	assert_int_equal(kvbm_immutable_set_reset_on_release(mgr, h2, true), KVBM_OK);
	assert_true(kvbm_test_info(mgr, h.block).reset_on_release);
	assert_int_equal(kvbm_immutable_release(mgr, h2), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, h.block).state, KVBM_BLOCK_REGISTERED);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	const kvbm_block_info info = kvbm_test_info(mgr, h.block);
	assert_int_equal(info.state, KVBM_BLOCK_RESET);
	assert_false(present(mgr, 1200));
	kvbm_test_assert_counts(mgr, NB, 0, 0, 0, 0, 0);
	assert_int_equal(kvbm_test_counts(mgr).registry, 0);
	/* Setting it back to false before the last release caches again. */
	const kvbm_immutable g = kvbm_test_make(mgr, 1201);
	assert_int_equal(kvbm_immutable_set_reset_on_release(mgr, g, true), KVBM_OK);
	assert_int_equal(kvbm_immutable_set_reset_on_release(mgr, g, false), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, g), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, g.block).state, KVBM_BLOCK_INACTIVE);
}

static void lifecycle__reset_on_release_flag_cleared_on_allocation(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable h = kvbm_test_make(mgr, 1210);
	const uint32_t b = h.block;
	kvbm_mutable m[NB];

	assert_int_equal(kvbm_immutable_set_reset_on_release(mgr, h, true), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	assert_int_equal(kvbm_allocate(mgr, NB, m), KVBM_OK);
	assert_false(kvbm_test_info(mgr, b).reset_on_release);
	for (uint32_t i = 0; i < NB; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
}

static void lifecycle__reset_on_release_manager_wide(void **state)
{
	kvbm_config cfg;

	(void)state;
	kvbm_config_init(&cfg);
	cfg.block_count = 4;
	cfg.block_size = BS;
	cfg.reset_on_release = true;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	const kvbm_immutable a = kvbm_test_make(mgr, 1300);
	assert_true(kvbm_test_info(mgr, a.block).reset_on_release);
	assert_int_equal(kvbm_immutable_release(mgr, a), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, a.block).state, KVBM_BLOCK_RESET);
	assert_false(present(mgr, 1300));
	kvbm_test_assert_counts(mgr, 4, 0, 0, 0, 0, 0);

	/* A per-block false overrides the manager default; the override
	 * survives resurrection and is reset to the default on allocation. */
	const kvbm_immutable b = kvbm_test_make(mgr, 1301);
	assert_int_equal(kvbm_immutable_set_reset_on_release(mgr, b, false), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, b), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, b.block).state, KVBM_BLOCK_INACTIVE);
	const kvbm_hash q = 1301;
	kvbm_immutable r;
	uint32_t matched;
	assert_int_equal(kvbm_match(mgr, &q, 1, &r, &matched), KVBM_OK);
	assert_int_equal(matched, 1);
	assert_false(kvbm_test_info(mgr, r.block).reset_on_release);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, r.block).state, KVBM_BLOCK_INACTIVE);
	kvbm_mutable m[4];
	assert_int_equal(kvbm_allocate(mgr, 4, m), KVBM_OK);
	assert_true(kvbm_test_info(mgr, b.block).reset_on_release);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	kvbm_test_assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void lifecycle__downgrade_upgrade_while_held(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable h = kvbm_test_make(mgr, 1400);
	kvbm_weak w;
	kvbm_immutable u;

	assert_int_equal(kvbm_downgrade(mgr, h, &w), KVBM_OK);
	assert_int_equal(w.hash, 1400);
	assert_int_equal(w.block, h.block);
	assert_int_not_equal(w.epoch, 0);
	assert_int_equal(refs_of(mgr, h), 1); /* a weak handle owns nothing */
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_OK);
	assert_int_equal(u.block, h.block);
	assert_int_equal(refs_of(mgr, h), 2);
	assert_int_equal(kvbm_immutable_release(mgr, u), KVBM_OK);
	/* The weak handle stays usable after an upgrade. */
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, u), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void lifecycle__weak_does_not_keep_block_cached(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable h = kvbm_test_make(mgr, 1410);
	kvbm_weak w;
	kvbm_immutable u;

	assert_int_equal(kvbm_downgrade(mgr, h, &w), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	/* Inactive: the upgrade resurrects it. */
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_OK);
	assert_int_equal(u.block, h.block);
	assert_int_equal(kvbm_test_info(mgr, u.block).state, KVBM_BLOCK_REGISTERED);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 0, 1, 0);
	assert_int_equal(kvbm_immutable_release(mgr, u), KVBM_OK);
	/* Evict it: the weak handle now fails cleanly. */
	kvbm_mutable m[NB];
	assert_int_equal(kvbm_allocate(mgr, NB, m), KVBM_OK);
	u = (kvbm_immutable){0};
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_E_NOTFOUND);
	kvbm_test_assert_error(mgr, KVBM_E_NOTFOUND, "no longer registered");
	assert_int_equal(u.gen, 0);
	kvbm_test_assert_counts(mgr, 0, 0, NB, 0, 0, 0);
	for (uint32_t i = 0; i < NB; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
}

static void lifecycle__weak_upgrade_finds_reregistered_hash(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_immutable h = kvbm_test_make(mgr, 1420);
	const uint32_t old = h.block;
	kvbm_weak w;
	kvbm_immutable u;
	kvbm_mutable m[NB];
	kvbm_hash got;

	assert_int_equal(kvbm_downgrade(mgr, h, &w), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	/* Evict the hash, keeping its old block out of the way. */
	assert_int_equal(kvbm_allocate(mgr, NB, m), KVBM_OK);
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_E_NOTFOUND);
	/* Register the same hash on another block. */
	uint32_t other = 0;
	while (m[other].block == old)
		other++;
	kvbm_complete c;
	assert_int_equal(kvbm_stage(mgr, m[other], 1420, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &h), KVBM_OK);
	assert_int_equal(h.block, m[other].block);
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_OK);
	assert_int_equal(u.block, m[other].block);
	assert_int_equal(kvbm_immutable_hash(mgr, u, &got), KVBM_OK);
	assert_int_equal(got, 1420);
	assert_int_equal(refs_of(mgr, h), 2);
	assert_int_equal(kvbm_immutable_release(mgr, u), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	for (uint32_t i = 0; i < NB; i++)
		if (i != other)
			assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
}

static void lifecycle__weak_upgrade_ignores_other_hash_on_same_block(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_immutable h = kvbm_test_make(mgr, 1430);
	const uint32_t b = h.block;
	kvbm_weak w;
	kvbm_immutable u;

	assert_int_equal(kvbm_downgrade(mgr, h, &w), KVBM_OK);
	assert_int_equal(kvbm_immutable_set_reset_on_release(mgr, h, true), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	/* Reuse the very same block id for a different hash. */
	kvbm_mutable m[NB];
	assert_int_equal(kvbm_allocate(mgr, NB, m), KVBM_OK);
	uint32_t i = 0;
	while (m[i].block != b)
		i++;
	kvbm_complete c;
	assert_int_equal(kvbm_stage(mgr, m[i], 1431, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &h), KVBM_OK);
	assert_int_equal(h.block, b);
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_E_NOTFOUND);
	assert_int_equal(refs_of(mgr, h), 1);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	for (uint32_t j = 0; j < NB; j++)
		if (j != i)
			assert_int_equal(kvbm_mutable_release(mgr, m[j]), KVBM_OK);
}

static void lifecycle__weak_of_duplicate_upgrades(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable p = kvbm_test_make(mgr, 1440);
	const kvbm_immutable d = kvbm_test_make(mgr, 1440);
	kvbm_weak w;
	kvbm_immutable u;

	assert_int_equal(kvbm_downgrade(mgr, d, &w), KVBM_OK);
	assert_int_equal(w.hash, 1440);
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_OK);
	assert_int_equal(u.block, d.block);
	assert_int_equal(refs_of(mgr, d), 2);
	assert_int_equal(kvbm_immutable_release(mgr, u), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, d), KVBM_OK);
	/* The duplicate is gone; the hash is still held by the primary. */
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_OK);
	assert_int_equal(u.block, p.block);
	assert_int_equal(kvbm_immutable_release(mgr, u), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, p), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void lifecycle__set_priority_bounds(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable h = kvbm_test_make(mgr, 1500);

	assert_int_equal(kvbm_immutable_set_priority(mgr, h, 0, 0), KVBM_OK);
	assert_int_equal(kvbm_immutable_set_priority(mgr, h, 100, 5), KVBM_OK);
	assert_int_equal(kvbm_immutable_set_priority(mgr, h, KVBM_PRIORITY_DEFAULT, 0), KVBM_OK);
	assert_int_equal(kvbm_immutable_set_priority(mgr, h, 101, 0), KVBM_E_INVAL);
	kvbm_test_assert_error(mgr, KVBM_E_INVAL, "101");
	assert_int_equal(kvbm_immutable_set_priority(mgr, h, UINT32_MAX, 0), KVBM_E_INVAL);
	assert_int_equal(refs_of(mgr, h), 1);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	assert_int_equal(kvbm_immutable_set_priority(mgr, h, 50, 0), KVBM_E_STALE);
	kvbm_test_assert_error(mgr, KVBM_E_STALE, "stale");
}

static void lifecycle__block_info_follows_every_state(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable h;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	const uint32_t b = m.block;
	assert_int_equal(kvbm_test_info(mgr, b).state, KVBM_BLOCK_MUTABLE);
	assert_int_equal(kvbm_stage(mgr, m, 1600, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, b).state, KVBM_BLOCK_STAGED);
	assert_int_equal(kvbm_register(mgr, c, &h), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, b).state, KVBM_BLOCK_REGISTERED);
	assert_int_equal(kvbm_test_info(mgr, b).ref_count, 1);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, b).state, KVBM_BLOCK_INACTIVE);
	assert_int_equal(kvbm_test_info(mgr, b).hash, 1600);
	uint32_t dropped = 0;
	assert_int_equal(kvbm_reset_inactive(mgr, &dropped), KVBM_OK);
	assert_int_equal(dropped, 1);
	assert_int_equal(kvbm_test_info(mgr, b).state, KVBM_BLOCK_RESET);
	assert_int_equal(kvbm_test_info(mgr, b).hash, 0);
}

static void lifecycle__reset_inactive_drops_only_the_cache(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash hs[3] = {1700, 1701, 1702};
	uint32_t dropped = 99;

	make_inactive(mgr, hs, 3, NULL);
	const kvbm_immutable held = kvbm_test_make(mgr, 1703);
	kvbm_test_assert_counts(mgr, NB - 4, 3, 0, 0, 1, 0);
	assert_int_equal(kvbm_reset_inactive(mgr, &dropped), KVBM_OK);
	assert_int_equal(dropped, 3);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 0, 1, 0);
	for (uint32_t i = 0; i < 3; i++)
		assert_false(present(mgr, hs[i]));
	assert_true(present(mgr, 1703));
	assert_int_equal(kvbm_reset_inactive(mgr, NULL), KVBM_OK);
	assert_int_equal(kvbm_reset_inactive(mgr, &dropped), KVBM_OK);
	assert_int_equal(dropped, 0);
	assert_int_equal(kvbm_immutable_release(mgr, held), KVBM_OK);
}

static void lifecycle__close_with_blocks_held(void **state)
{
	kvbm_manager *mgr = kvbm_test_open(NB, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	kvbm_mutable m[2];
	kvbm_complete c;
	kvbm_weak w;
	kvbm_immutable r;

	(void)state;
	assert_int_equal(kvbm_allocate(mgr, 2, m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m[1], 1800, BS, &c), KVBM_OK);
	const kvbm_immutable p = kvbm_test_make(mgr, 1801);
	const kvbm_immutable d = kvbm_test_make(mgr, 1801);
	assert_int_equal(kvbm_immutable_retain(mgr, p, &r), KVBM_OK);
	assert_int_equal(kvbm_downgrade(mgr, d, &w), KVBM_OK);
	const kvbm_hash inact = 1802;
	make_inactive(mgr, &inact, 1, NULL);
	kvbm_test_assert_counts(mgr, NB - 5, 1, 1, 1, 1, 1);
	/* Closing with a mutable, a staged, a primary with two references, a
	 * duplicate, a weak handle and an inactive block held is defined:
	 * everything is freed (ASan checks for leaks). */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(kvbm_close(NULL), KVBM_OK);
	assert_int_equal(kvbm_close_ex(NULL, KVBM_CLOSE_DISCARD), KVBM_OK);
}

static void lifecycle__close_ex_discard_without_catalog(void **state)
{
	kvbm_manager *mgr = kvbm_test_open(NB, BS, KVBM_EVICT_FIFO, KVBM_DUP_REJECT);
	kvbm_mutable m;

	(void)state;
	(void)kvbm_test_make(mgr, 1900);
	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
}

static void lifecycle__version_and_flush_without_catalog(void **state)
{
	kvbm_manager *mgr = *state;

	assert_string_equal(kvbm_version(), KVBM_VERSION_STRING);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_string_equal(kvbm_evict_policy_name(KVBM_EVICT_LRU), "lru");
	assert_string_equal(kvbm_evict_policy_name(KVBM_EVICT_FIFO), "fifo");
	assert_null(kvbm_evict_policy_name((kvbm_evict_policy)KVBM_EVICT_COUNT));
	kvbm_evict_policy p = KVBM_EVICT_LRU;
	assert_int_equal(kvbm_evict_policy_parse("fifo", &p), KVBM_OK);
	assert_int_equal(p, KVBM_EVICT_FIFO);
	assert_int_equal(kvbm_evict_policy_parse("lru", &p), KVBM_OK);
	assert_int_equal(p, KVBM_EVICT_LRU);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_allow, teardown)
#define TR(fn) cmocka_unit_test_setup_teardown(fn, setup_reject, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lifecycle__config_defaults),
		T(lifecycle__open_puts_every_block_in_reset),
		T(lifecycle__allocate_hands_out_distinct_mutable_blocks),
		T(lifecycle__allocate_takes_reset_before_evicting),
		T(lifecycle__allocate_mixes_reset_and_evicted_in_one_call),
		T(lifecycle__allocate_exhausted_takes_nothing),
		T(lifecycle__mutable_release_returns_block_to_reset),
		T(lifecycle__stage_records_hash_and_consumes_mutable),
		T(lifecycle__stage_wrong_size_keeps_mutable),
		T(lifecycle__stage_lineage_records_parent_and_position),
		T(lifecycle__unstage_returns_mutable_and_forgets_hash),
		T(lifecycle__complete_release_returns_block_to_reset),
		T(lifecycle__register_makes_hash_matchable),
		T(lifecycle__register_batch_registers_each_in_order),
		T(lifecycle__register_batch_same_hash_twice_follows_policy),
		T(lifecycle__dup_allow_duplicate_keeps_primary_active),
		T(lifecycle__dup_allow_primary_release_after_duplicate),
		T(lifecycle__dup_allow_over_inactive_primary_resurrects_it),
		TR(lifecycle__dup_reject_returns_existing_primary),
		TR(lifecycle__dup_reject_resurrects_inactive_primary),
		TR(lifecycle__dup_reject_batch_with_repeated_hash),
		T(lifecycle__retain_and_release_count_references),
		T(lifecycle__release_batch_releases_all),
		T(lifecycle__reset_on_release_per_block_skips_cache),
		T(lifecycle__reset_on_release_flag_cleared_on_allocation),
		cmocka_unit_test(lifecycle__reset_on_release_manager_wide),
		T(lifecycle__downgrade_upgrade_while_held),
		T(lifecycle__weak_does_not_keep_block_cached),
		T(lifecycle__weak_upgrade_finds_reregistered_hash),
		T(lifecycle__weak_upgrade_ignores_other_hash_on_same_block),
		T(lifecycle__weak_of_duplicate_upgrades),
		T(lifecycle__set_priority_bounds),
		T(lifecycle__block_info_follows_every_state),
		T(lifecycle__reset_inactive_drops_only_the_cache),
		cmocka_unit_test(lifecycle__close_with_blocks_held),
		cmocka_unit_test(lifecycle__close_ex_discard_without_catalog),
		T(lifecycle__version_and_flush_without_catalog),
	};

	return cmocka_run_group_tests_name("lifecycle", tests, NULL, NULL);
}
