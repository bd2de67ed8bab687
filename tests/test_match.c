/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registry lookups: longest-prefix match (stops at the first miss,
 * resurrects inactive blocks, holds references until released), scattered
 * match (aligned output, empty misses, repeated hashes), and the presence
 * query, which must take no references and leave the eviction order alone.
 */
#include <string.h>

#include "test_common.h"

#define BS 16u
#define NB 16u

static int setup(void **state)
{
	*state = kvbm_test_open(NB, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	return 0;
}

static int setup_fifo(void **state)
{
	*state = kvbm_test_open(NB, BS, KVBM_EVICT_FIFO, KVBM_DUP_ALLOW);
	return 0;
}

static int teardown(void **state)
{
	kvbm_manager *mgr = *state;

	kvbm_test_assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	return 0;
}

static uint32_t refs_of(kvbm_manager *mgr, kvbm_immutable h)
{
	uint32_t n = 0;

	assert_int_equal(kvbm_immutable_ref_count(mgr, h, &n), KVBM_OK);
	return n;
}

static void release_all(kvbm_manager *mgr, kvbm_immutable *h, uint32_t n)
{
	assert_int_equal(kvbm_immutable_release_batch(mgr, h, n), KVBM_OK);
	kvbm_test_assert_invariants(mgr);
}

/* Fill the reset pool so the next allocation must evict; returns the
 * number of mutable blocks taken into hold[]. */
static uint32_t drain_reset(kvbm_manager *mgr, kvbm_mutable *hold)
{
	const uint32_t n = kvbm_test_counts(mgr).reset;

	if (n)
		assert_int_equal(kvbm_allocate(mgr, n, hold), KVBM_OK);
	return n;
}

static void release_mutables(kvbm_manager *mgr, kvbm_mutable *m, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
}

/* Evict exactly one block and return its hash. */
static kvbm_hash evict_one(kvbm_manager *mgr, kvbm_mutable *out)
{
	kvbm_hash ev = 0;
	uint32_t n_ev = 0;

	assert_int_equal(kvbm_allocate_ex(mgr, 1, out, &ev, &n_ev), KVBM_OK);
	assert_int_equal(n_ev, 1);
	return ev;
}

static void match__prefix_stops_at_first_miss(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable a = kvbm_test_make(mgr, 1);
	const kvbm_immutable b = kvbm_test_make(mgr, 2);
	const kvbm_immutable d = kvbm_test_make(mgr, 4);
	const kvbm_hash q[4] = {1, 2, 3, 4};
	kvbm_immutable out[4];
	uint32_t matched = 99;

	memset(out, 0, sizeof(out));
	assert_int_equal(kvbm_match(mgr, q, 4, out, &matched), KVBM_OK);
	assert_int_equal(matched, 2);
	assert_int_equal(out[0].block, a.block);
	assert_int_equal(out[1].block, b.block);
	assert_int_equal(refs_of(mgr, a), 2);
	assert_int_equal(refs_of(mgr, b), 2);
	/* 4 is registered but comes after the miss: untouched. */
	assert_int_equal(refs_of(mgr, d), 1);
	kvbm_metrics mt;
	assert_int_equal(kvbm_metrics_read(mgr, &mt), KVBM_OK);
	assert_int_equal(mt.match_hashes_requested, 4);
	assert_int_equal(mt.match_blocks_returned, 2);
	assert_int_equal(mt.inflight_immutable, 5);
	release_all(mgr, out, 2);
	/* A miss first matches nothing. */
	const kvbm_hash q2[2] = {3, 1};
	assert_int_equal(kvbm_match(mgr, q2, 2, out, &matched), KVBM_OK);
	assert_int_equal(matched, 0);
	assert_int_equal(refs_of(mgr, a), 1);
	kvbm_immutable all[3] = {a, b, d};
	release_all(mgr, all, 3);
}

static void match__hits_hold_the_blocks(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash q[3] = {11, 12, 13};
	kvbm_immutable h[3], out[3];
	kvbm_mutable hold[NB];
	uint32_t matched;

	for (uint32_t i = 0; i < 3; i++)
		h[i] = kvbm_test_make(mgr, q[i]);
	assert_int_equal(kvbm_match(mgr, q, 3, out, &matched), KVBM_OK);
	assert_int_equal(matched, 3);
	release_all(mgr, h, 3);
	/* Still registered through the match's references: not evictable. */
	kvbm_test_assert_counts(mgr, NB - 3, 0, 0, 0, 3, 0);
	assert_int_equal(kvbm_allocate(mgr, NB - 2, hold), KVBM_E_EXHAUSTED);
	for (uint32_t i = 0; i < 3; i++) {
		kvbm_hash got;
		assert_int_equal(kvbm_immutable_hash(mgr, out[i], &got), KVBM_OK);
		assert_int_equal(got, q[i]);
		assert_int_equal(kvbm_test_info(mgr, out[i].block).state, KVBM_BLOCK_REGISTERED);
	}
	release_all(mgr, out, 3);
	kvbm_test_assert_counts(mgr, NB - 3, 3, 0, 0, 0, 0);
}

static void match__resurrects_inactive_blocks(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash q[4] = {21, 22, 23, 24};
	kvbm_immutable h[4], out[4];
	uint32_t matched;

	for (uint32_t i = 0; i < 4; i++)
		h[i] = kvbm_test_make(mgr, q[i]);
	release_all(mgr, h, 4);
	kvbm_test_assert_counts(mgr, NB - 4, 4, 0, 0, 0, 0);
	kvbm_metrics m0, m1;
	assert_int_equal(kvbm_metrics_read(mgr, &m0), KVBM_OK);
	assert_int_equal(kvbm_match(mgr, q, 3, out, &matched), KVBM_OK);
	assert_int_equal(matched, 3);
	kvbm_test_assert_counts(mgr, NB - 4, 1, 0, 0, 3, 0);
	for (uint32_t i = 0; i < 3; i++) {
		assert_int_equal(out[i].block, h[i].block);
		const kvbm_block_info info = kvbm_test_info(mgr, out[i].block);
		assert_int_equal(info.state, KVBM_BLOCK_REGISTERED);
		assert_int_equal(info.ref_count, 1);
	}
	assert_int_equal(kvbm_test_info(mgr, h[3].block).state, KVBM_BLOCK_INACTIVE);
	assert_int_equal(kvbm_metrics_read(mgr, &m1), KVBM_OK);
	assert_int_equal(m1.resurrections - m0.resurrections, 3);
	/* Only the unmatched one is evictable now. */
	kvbm_mutable hold[NB];
	const uint32_t nh = drain_reset(mgr, hold);
	assert_int_equal(kvbm_available_blocks(mgr), 1);
	assert_int_equal(evict_one(mgr, &hold[nh]), 24);
	release_mutables(mgr, hold, nh + 1);
	release_all(mgr, out, 3);
	kvbm_test_assert_counts(mgr, NB - 3, 3, 0, 0, 0, 0);
}

static void match__evicted_hash_no_longer_matches(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash q = 31;
	kvbm_immutable h = kvbm_test_make(mgr, q), out;
	kvbm_mutable hold[NB];
	uint32_t matched = 9;

	release_all(mgr, &h, 1);
	const uint32_t nh = drain_reset(mgr, hold);
	assert_int_equal(evict_one(mgr, &hold[nh]), q);
	assert_int_equal(kvbm_match(mgr, &q, 1, &out, &matched), KVBM_OK);
	assert_int_equal(matched, 0);
	release_mutables(mgr, hold, nh + 1);
}

static void match__same_hash_twice_in_prefix(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_immutable h = kvbm_test_make(mgr, 41), out[3];
	const kvbm_hash q[3] = {41, 41, 42};
	uint32_t matched;

	release_all(mgr, &h, 1);
	assert_int_equal(kvbm_match(mgr, q, 3, out, &matched), KVBM_OK);
	assert_int_equal(matched, 2);
	assert_int_equal(out[0].block, out[1].block);
	assert_false(out[0].ref == out[1].ref && out[0].gen == out[1].gen);
	assert_int_equal(refs_of(mgr, out[0]), 2);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 0, 1, 0);
	release_all(mgr, out, 2);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void match__scattered_is_aligned_with_empty_misses(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_immutable a = kvbm_test_make(mgr, 51);
	kvbm_immutable b = kvbm_test_make(mgr, 53);
	const kvbm_hash q[6] = {51, 52, 53, 51, 54, 53};
	kvbm_immutable out[6];
	uint32_t found = 99;

	release_all(mgr, &b, 1); /* b inactive, a held */
	memset(out, 0xff, sizeof(out));
	assert_int_equal(kvbm_match_scattered(mgr, q, 6, out, &found), KVBM_OK);
	assert_int_equal(found, 4);
	assert_int_equal(out[0].block, a.block);
	assert_int_equal(out[1].gen, 0);
	assert_int_equal(out[2].block, b.block);
	assert_int_equal(out[3].block, a.block);
	assert_int_equal(out[4].gen, 0);
	assert_int_equal(out[5].block, b.block);
	assert_int_equal(refs_of(mgr, a), 3);
	assert_int_equal(refs_of(mgr, out[2]), 2);
	assert_int_equal(kvbm_test_info(mgr, b.block).state, KVBM_BLOCK_REGISTERED);
	kvbm_test_assert_counts(mgr, NB - 2, 0, 0, 0, 2, 0);
	kvbm_metrics mt;
	assert_int_equal(kvbm_metrics_read(mgr, &mt), KVBM_OK);
	assert_int_equal(mt.scan_hashes_requested, 6);
	assert_int_equal(mt.scan_blocks_returned, 4);
	/* Empty entries release as no-ops, so the whole array can go back. */
	release_all(mgr, out, 6);
	assert_int_equal(refs_of(mgr, a), 1);
	release_all(mgr, &a, 1);
	kvbm_test_assert_counts(mgr, NB - 2, 2, 0, 0, 0, 0);
}

static void match__scattered_all_misses(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash q[3] = {61, 62, 63};
	kvbm_immutable out[3];
	uint32_t found = 7;

	assert_int_equal(kvbm_match_scattered(mgr, q, 3, out, &found), KVBM_OK);
	assert_int_equal(found, 0);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(out[i].gen, 0);
	kvbm_test_assert_counts(mgr, NB, 0, 0, 0, 0, 0);
}

static void match__contains_takes_no_references(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_immutable a = kvbm_test_make(mgr, 71);
	kvbm_immutable b = kvbm_test_make(mgr, 72);
	kvbm_immutable c = kvbm_test_make(mgr, 74);
	const kvbm_hash q[5] = {71, 72, 73, 74, 71};
	bool present[5];
	uint32_t n_present = 0, prefix = 0;

	release_all(mgr, &b, 1); /* inactive still counts as present */
	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	kvbm_metrics m0, m1;
	assert_int_equal(kvbm_metrics_read(mgr, &m0), KVBM_OK);
	assert_int_equal(kvbm_contains(mgr, q, 5, present, &n_present, &prefix), KVBM_OK);
	assert_true(present[0]);
	assert_true(present[1]);
	assert_false(present[2]);
	assert_true(present[3]);
	assert_true(present[4]);
	assert_int_equal(n_present, 4);
	assert_int_equal(prefix, 2);
	const kvbm_pool_counts after = kvbm_test_counts(mgr);
	assert_memory_equal(&before, &after, sizeof(after));
	assert_int_equal(refs_of(mgr, a), 1);
	assert_int_equal(kvbm_test_info(mgr, b.block).state, KVBM_BLOCK_INACTIVE);
	assert_int_equal(kvbm_metrics_read(mgr, &m1), KVBM_OK);
	assert_int_equal(m1.inflight_immutable, m0.inflight_immutable);
	assert_int_equal(m1.resurrections, m0.resurrections);
	/* Every output is optional. */
	assert_int_equal(kvbm_contains(mgr, q, 5, NULL, NULL, NULL), KVBM_OK);
	n_present = 0;
	assert_int_equal(kvbm_contains(mgr, q, 5, NULL, &n_present, NULL), KVBM_OK);
	assert_int_equal(n_present, 4);
	prefix = 0;
	assert_int_equal(kvbm_contains(mgr, q, 2, NULL, NULL, &prefix), KVBM_OK);
	assert_int_equal(prefix, 2);
	kvbm_immutable rest[2] = {a, c};
	release_all(mgr, rest, 2);
}

/* Release hashes in order so the first is the policy's next victim, then
 * query (or match) the victim and see which one allocation evicts. */
static void order_after_query(kvbm_manager *mgr, bool use_match, kvbm_hash expect)
{
	const kvbm_hash q[3] = {81, 82, 83};
	kvbm_immutable h[3];
	kvbm_mutable hold[NB];

	for (uint32_t i = 0; i < 3; i++)
		h[i] = kvbm_test_make(mgr, q[i]);
	release_all(mgr, h, 3);
	if (use_match) {
		kvbm_immutable r;
		uint32_t matched;
		assert_int_equal(kvbm_match(mgr, q, 1, &r, &matched), KVBM_OK);
		assert_int_equal(matched, 1);
		release_all(mgr, &r, 1);
	} else {
		bool p[3];
		assert_int_equal(kvbm_contains(mgr, q, 3, p, NULL, NULL), KVBM_OK);
		assert_int_equal(kvbm_contains(mgr, q, 1, NULL, NULL, NULL), KVBM_OK);
	}
	const uint32_t nh = drain_reset(mgr, hold);
	assert_int_equal(evict_one(mgr, &hold[nh]), expect);
	release_mutables(mgr, hold, nh + 1);
}

static void match__contains_keeps_lru_order(void **state)
{
	order_after_query(*state, false, 81);
}

static void match__lru_hit_refreshes(void **state)
{
	/* The match and release made 81 the most recently released. */
	order_after_query(*state, true, 82);
}

static void match__contains_keeps_fifo_order(void **state)
{
	order_after_query(*state, false, 81);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TF(fn) cmocka_unit_test_setup_teardown(fn, setup_fifo, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(match__prefix_stops_at_first_miss),
		T(match__hits_hold_the_blocks),
		T(match__resurrects_inactive_blocks),
		T(match__evicted_hash_no_longer_matches),
		T(match__same_hash_twice_in_prefix),
		T(match__scattered_is_aligned_with_empty_misses),
		T(match__scattered_all_misses),
		T(match__contains_takes_no_references),
		T(match__contains_keeps_lru_order),
		T(match__lru_hit_refreshes),
		TF(match__contains_keeps_fifo_order),
	};

	return cmocka_run_group_tests_name("match", tests, NULL, NULL);
}
