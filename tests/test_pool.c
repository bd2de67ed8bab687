/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The inactive pool and its LRU and FIFO policies: exact eviction orders,
 * tail-first release making continuations go before shared prefixes, what
 * a hit does to a block's place (LRU refreshes, FIFO does not), and the
 * pool accounting (reset + inactive + held == total) along the way.
 */
#include <string.h>

#include "test_common.h"

#define BS 2u
#define NB 12u

static int setup_lru(void **state)
{
	*state = kvbm_test_open(NB, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	return 0;
}

static int setup_fifo(void **state)
{
	*state = kvbm_test_open(NB, BS, KVBM_EVICT_FIFO, KVBM_DUP_ALLOW);
	return 0;
}

static int setup_fifo_reject(void **state)
{
	*state = kvbm_test_open(NB, BS, KVBM_EVICT_FIFO, KVBM_DUP_REJECT);
	return 0;
}

static int teardown(void **state)
{
	kvbm_manager *mgr = *state;

	kvbm_test_assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	return 0;
}

/* Take every reset block into hold[]; returns how many. */
static uint32_t drain_reset(kvbm_manager *mgr, kvbm_mutable *hold)
{
	const uint32_t n = kvbm_test_counts(mgr).reset;

	if (n)
		assert_int_equal(kvbm_allocate(mgr, n, hold), KVBM_OK);
	kvbm_test_assert_invariants(mgr);
	return n;
}

static void release_mutables(kvbm_manager *mgr, kvbm_mutable *m, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	kvbm_test_assert_invariants(mgr);
}

/* Evict n blocks one allocation at a time and compare with expect[]. */
static void expect_evictions(kvbm_manager *mgr, const kvbm_hash *expect, uint32_t n)
{
	kvbm_mutable hold[NB];
	uint32_t nh = drain_reset(mgr, hold);

	for (uint32_t i = 0; i < n; i++) {
		kvbm_hash ev = 0;
		uint32_t n_ev = 0;
		assert_int_equal(kvbm_allocate_ex(mgr, 1, &hold[nh++], &ev, &n_ev), KVBM_OK);
		assert_int_equal(n_ev, 1);
		if (ev != expect[i])
			print_error("eviction %u: expected hash %llu, got %llu\n", i,
				    (unsigned long long)expect[i], (unsigned long long)ev);
		assert_int_equal(ev, expect[i]);
		kvbm_test_assert_invariants(mgr);
	}
	release_mutables(mgr, hold, nh);
}

/* Register hashes[i] for each i, then release them in `order`. */
static void cache_in_order(kvbm_manager *mgr, const kvbm_hash *hashes, const uint32_t *order,
			   uint32_t n)
{
	kvbm_immutable h[NB];

	for (uint32_t i = 0; i < n; i++)
		h[i] = kvbm_test_make(mgr, hashes[i]);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(kvbm_immutable_release(mgr, h[order[i]]), KVBM_OK);
		kvbm_test_assert_invariants(mgr);
	}
}

static void exact_order(kvbm_manager *mgr)
{
	const kvbm_hash hs[6] = {100, 101, 102, 103, 104, 105};
	const uint32_t order[6] = {3, 0, 5, 1, 4, 2};
	kvbm_hash expect[6];

	for (uint32_t i = 0; i < 6; i++)
		expect[i] = hs[order[i]];
	cache_in_order(mgr, hs, order, 6);
	kvbm_test_assert_counts(mgr, NB - 6, 6, 0, 0, 0, 0);
	expect_evictions(mgr, expect, 6);
	kvbm_test_assert_counts(mgr, NB, 0, 0, 0, 0, 0);

	/* The same, evicted by one allocation: evicted[] is in policy order. */
	cache_in_order(mgr, hs, order, 6);
	kvbm_mutable hold[NB];
	kvbm_hash ev[NB];
	uint32_t n_ev = 0;
	const uint32_t nh = drain_reset(mgr, hold);
	assert_int_equal(kvbm_allocate_ex(mgr, 6, hold + nh, ev, &n_ev), KVBM_OK);
	assert_int_equal(n_ev, 6);
	assert_memory_equal(ev, expect, sizeof(expect));
	release_mutables(mgr, hold, nh + 6);
}

static void pool__lru_exact_order(void **state)
{
	exact_order(*state);
}

static void pool__fifo_exact_order(void **state)
{
	exact_order(*state);
}

/* Two requests sharing a two-block prefix, each released tail first. */
static void tail_first(kvbm_manager *mgr)
{
	const kvbm_hash s1[3] = {10, 11, 12}, s2_tail = 22;
	kvbm_mutable m[3];
	kvbm_complete c[3];
	kvbm_immutable r1[3], r2[3];
	uint32_t matched;

	assert_int_equal(kvbm_allocate(mgr, 3, m), KVBM_OK);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(kvbm_stage_lineage(mgr, m[i], s1[i], i ? s1[i - 1] : 0, i, BS,
						    &c[i]),
				 KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, 3, r1), KVBM_OK);
	/* Request 2 reuses the prefix and adds its own tail. */
	assert_int_equal(kvbm_match(mgr, s1, 3, r2, &matched), KVBM_OK);
	assert_int_equal(matched, 3);
	assert_int_equal(kvbm_immutable_release(mgr, r2[2]), KVBM_OK); /* diverges after 2 */
	r2[2] = kvbm_test_make(mgr, s2_tail);
	kvbm_test_assert_counts(mgr, NB - 4, 0, 0, 0, 4, 0);
	/* Tail first: last block first. */
	const kvbm_immutable rel1[3] = {r1[2], r1[1], r1[0]};
	const kvbm_immutable rel2[3] = {r2[2], r2[1], r2[0]};
	assert_int_equal(kvbm_immutable_release_batch(mgr, rel1, 3), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 4, 1, 0, 0, 3, 0);
	assert_int_equal(kvbm_immutable_release_batch(mgr, rel2, 3), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 4, 4, 0, 0, 0, 0);
	/* Continuations go first, the shared prefix last, root at the end. */
	const kvbm_hash expect[4] = {12, 22, 11, 10};
	expect_evictions(mgr, expect, 4);
}

static void pool__lru_tail_first_release_evicts_tail_first(void **state)
{
	tail_first(*state);
}

static void pool__fifo_tail_first_release_evicts_tail_first(void **state)
{
	tail_first(*state);
}

/* A, B, C become inactive in that order; A is hit (matched and released
 * again, or its hash registered again); then the next victims. */
static void hit_then_evict(kvbm_manager *mgr, bool by_register, const kvbm_hash *expect)
{
	const kvbm_hash hs[3] = {1, 2, 3};
	const uint32_t order[3] = {0, 1, 2};

	cache_in_order(mgr, hs, order, 3);
	if (by_register) {
		kvbm_immutable r = kvbm_test_make(mgr, 1);
		assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	} else {
		kvbm_immutable r;
		uint32_t matched;
		assert_int_equal(kvbm_match(mgr, hs, 1, &r, &matched), KVBM_OK);
		assert_int_equal(matched, 1);
		assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	}
	kvbm_test_assert_invariants(mgr);
	expect_evictions(mgr, expect, 3);
}

static void pool__lru_hit_refreshes(void **state)
{
	const kvbm_hash expect[3] = {2, 3, 1};

	hit_then_evict(*state, false, expect);
}

/* kvbm.h: FIFO evicts "in the order blocks became inactive, never
 * refreshed". The implementation reads "never refreshed" as: a block that
 * is hit and released again goes back to its original place. */
static void pool__fifo_hit_does_not_refresh(void **state)
{
	const kvbm_hash expect[3] = {1, 2, 3};

	hit_then_evict(*state, false, expect);
}

static void pool__lru_duplicate_registration_refreshes(void **state)
{
	/* ALLOW: registering 1 again makes a duplicate, which keeps the
	 * primary active until the duplicate is released; the primary then
	 * re-enters the pool as the most recent. */
	const kvbm_hash expect[3] = {2, 3, 1};

	hit_then_evict(*state, true, expect);
}

static void pool__fifo_reject_reregistration_keeps_place(void **state)
{
	const kvbm_hash expect[3] = {1, 2, 3};

	hit_then_evict(*state, true, expect);
}

static void pool__fifo_evicted_hash_registered_again_goes_last(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash hs[3] = {1, 2, 3};
	const uint32_t order[3] = {0, 1, 2};

	cache_in_order(mgr, hs, order, 3);
	const kvbm_hash first = 1;
	expect_evictions(mgr, &first, 1);
	/* A new registration of the same hash is a new entry: it goes last. */
	kvbm_immutable r = kvbm_test_make(mgr, 1);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	const kvbm_hash expect[3] = {2, 3, 1};
	expect_evictions(mgr, expect, 3);
}

static void pool__held_blocks_are_never_evicted(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash hs[4] = {1, 2, 3, 4};
	const uint32_t order[4] = {0, 1, 2, 3};
	kvbm_immutable r;
	uint32_t matched;
	kvbm_mutable hold[NB];

	cache_in_order(mgr, hs, order, 4);
	/* Hold the oldest: the victims are the others, in order. */
	assert_int_equal(kvbm_match(mgr, hs, 1, &r, &matched), KVBM_OK);
	assert_int_equal(kvbm_available_blocks(mgr), NB - 1);
	const uint32_t nh = drain_reset(mgr, hold);
	kvbm_hash ev[4];
	uint32_t n_ev;
	assert_int_equal(kvbm_allocate_ex(mgr, 4, hold + nh, ev, &n_ev), KVBM_E_EXHAUSTED);
	kvbm_test_assert_counts(mgr, 0, 3, nh, 0, 1, 0);
	assert_int_equal(kvbm_allocate_ex(mgr, 3, hold + nh, ev, &n_ev), KVBM_OK);
	assert_int_equal(n_ev, 3);
	assert_int_equal(ev[0], 2);
	assert_int_equal(ev[1], 3);
	assert_int_equal(ev[2], 4);
	assert_int_equal(kvbm_available_blocks(mgr), 0);
	kvbm_test_assert_counts(mgr, 0, 0, NB - 1, 0, 1, 0);
	release_mutables(mgr, hold, nh + 3);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 1, 1, 0, 0, 0, 0);
}

static void pool__available_is_reset_plus_inactive(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m[2];
	kvbm_complete c;

	assert_int_equal(kvbm_available_blocks(mgr), NB);
	const kvbm_immutable a = kvbm_test_make(mgr, 1);
	kvbm_immutable b = kvbm_test_make(mgr, 2);
	assert_int_equal(kvbm_immutable_release(mgr, b), KVBM_OK);
	assert_int_equal(kvbm_allocate(mgr, 2, m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m[1], 3, BS, &c), KVBM_OK);
	const kvbm_pool_counts pc = kvbm_test_counts(mgr);
	assert_int_equal(kvbm_available_blocks(mgr), pc.reset + pc.inactive);
	assert_int_equal(kvbm_available_blocks(mgr), NB - 3);
	kvbm_test_assert_counts(mgr, NB - 4, 1, 1, 1, 1, 0);
	assert_int_equal(pc.registry, 2);
	assert_int_equal(kvbm_mutable_release(mgr, m[0]), KVBM_OK);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, a), KVBM_OK);
	assert_int_equal(kvbm_available_blocks(mgr), NB);
}

static void pool__metrics_follow_allocations(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_hash hs[2] = {1, 2};
	const uint32_t order[2] = {0, 1};
	kvbm_mutable hold[NB];
	kvbm_metrics m0, m1;

	cache_in_order(mgr, hs, order, 2);
	assert_int_equal(kvbm_metrics_read(mgr, &m0), KVBM_OK);
	assert_int_equal(kvbm_allocate(mgr, NB, hold), KVBM_OK);
	assert_int_equal(kvbm_metrics_read(mgr, &m1), KVBM_OK);
	assert_int_equal(m1.allocations - m0.allocations, NB);
	assert_int_equal(m1.allocations_from_reset - m0.allocations_from_reset, NB - 2);
	assert_int_equal(m1.evictions - m0.evictions, 2);
	assert_int_equal(m1.reset_pool, 0);
	assert_int_equal(m1.inactive_pool, 0);
	assert_int_equal(m1.inflight_mutable, NB);
	release_mutables(mgr, hold, NB);
}

/* A longer mixed sequence, checked against a simple list of the
 * expected victim order, for both policies. */
static void interleaved(kvbm_manager *mgr, bool lru)
{
	kvbm_immutable h[8];
	kvbm_hash expect[8];
	uint32_t n = 0;

	for (uint32_t i = 0; i < 8; i++)
		h[i] = kvbm_test_make(mgr, 200 + i);
	/* release 5, 2, 7: inactive order 5,2,7 */
	assert_int_equal(kvbm_immutable_release(mgr, h[5]), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h[2]), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h[7]), KVBM_OK);
	/* hit 2 and release it again, release 0 */
	kvbm_immutable r;
	uint32_t matched;
	const kvbm_hash q = 202;
	assert_int_equal(kvbm_match(mgr, &q, 1, &r, &matched), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h[0]), KVBM_OK);
	if (lru) {
		expect[n++] = 205, expect[n++] = 207, expect[n++] = 202, expect[n++] = 200;
	} else {
		expect[n++] = 205, expect[n++] = 202, expect[n++] = 207, expect[n++] = 200;
	}
	/* the rest, tail first: 6, 4, 3, 1 */
	const kvbm_immutable rest[4] = {h[6], h[4], h[3], h[1]};
	assert_int_equal(kvbm_immutable_release_batch(mgr, rest, 4), KVBM_OK);
	expect[n++] = 206, expect[n++] = 204, expect[n++] = 203, expect[n++] = 201;
	expect_evictions(mgr, expect, n);
}

static void pool__lru_interleaved_order(void **state)
{
	interleaved(*state, true);
}

static void pool__fifo_interleaved_order(void **state)
{
	interleaved(*state, false);
}

#define TL(fn) cmocka_unit_test_setup_teardown(fn, setup_lru, teardown)
#define TF(fn) cmocka_unit_test_setup_teardown(fn, setup_fifo, teardown)
#define TFR(fn) cmocka_unit_test_setup_teardown(fn, setup_fifo_reject, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL(pool__lru_exact_order),
		TF(pool__fifo_exact_order),
		TL(pool__lru_tail_first_release_evicts_tail_first),
		TF(pool__fifo_tail_first_release_evicts_tail_first),
		TL(pool__lru_hit_refreshes),
		TF(pool__fifo_hit_does_not_refresh),
		TL(pool__lru_duplicate_registration_refreshes),
		TFR(pool__fifo_reject_reregistration_keeps_place),
		TF(pool__fifo_evicted_hash_registered_again_goes_last),
		TL(pool__held_blocks_are_never_evicted),
		TF(pool__held_blocks_are_never_evicted),
		TL(pool__available_is_reset_plus_inactive),
		TL(pool__metrics_follow_allocations),
		TL(pool__lru_interleaved_order),
		TF(pool__fifo_interleaved_order),
	};

	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
