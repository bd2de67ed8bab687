/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vllm-arc through kvbm's C API: what vLLM's ARC decides, seen from the
 * calls a C caller makes. A block's place is where kvbm_stage put it (the
 * store's preparation), not its release; a pin keeps it; a kvbm_touch of a
 * hash no longer cached moves p; an allocation refuses as vLLM's evict
 * does while kvbm_reset_inactive still drains; a failed store leaves T1.
 * The expected orders are worked out in the comments (T1/T2 oldest first,
 * B1 the ghost of T1, p the target size of T1). The same behaviours through
 * kvbm.vllm, checked against vLLM itself where its source is at hand, are
 * in python/tests/test_vllm_arc.py.
 */
#include <stdio.h>
#include <stdlib.h>

#include "test_common.h"

#define BS 4

static kvbm_hash H(uint32_t i)
{
	return kvbm_hash_chain(0, 0xa4c000 + i, true);
}

static kvbm_manager *open_varc(uint32_t blocks)
{
	return kvbm_test_open(blocks, BS, KVBM_EVICT_VLLM_ARC, KVBM_DUP_REJECT);
}

/* A store prepared: a block sealed with h (in T1 from now on). */
static kvbm_complete prepare(kvbm_manager *mgr, kvbm_hash h)
{
	kvbm_mutable m;
	kvbm_complete c;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, h, BS, &c), KVBM_OK);
	return c;
}

/* The store completed: registered and released (inactive). */
static void complete(kvbm_manager *mgr, kvbm_complete c)
{
	kvbm_immutable r;

	assert_int_equal(kvbm_register(mgr, c, &r), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
}

static void cached(kvbm_manager *mgr, kvbm_hash h)
{
	complete(mgr, prepare(mgr, h));
}

static void touch(kvbm_manager *mgr, kvbm_hash h)
{
	assert_int_equal(kvbm_touch(mgr, &h, 1, NULL), KVBM_OK);
}

/* Allocate one block; the hash it evicted (0 if none). The block is kept
 * mutable, out of T1, unless the caller releases it. */
static kvbm_hash evict_one(kvbm_manager *mgr, kvbm_mutable *m)
{
	kvbm_hash ev = 0;
	uint32_t n = 0;

	assert_int_equal(kvbm_allocate_ex(mgr, 1, m, &ev, &n), KVBM_OK);
	return n ? ev : 0;
}

/* One allocation of n blocks evicts exactly want[0..n) (the tier is full). */
static void expect_victims(kvbm_manager *mgr, uint32_t n, const kvbm_hash *want)
{
	kvbm_mutable m[4];
	kvbm_hash ev[4];
	uint32_t n_ev = 0;

	assert_int_equal(kvbm_allocate_ex(mgr, n, m, ev, &n_ev), KVBM_OK);
	assert_int_equal(n_ev, n);
	for (uint32_t i = 0; i < n; i++)
		if (ev[i] != want[i])
			fail_msg("victim %u: got %016llx, want %016llx", i,
				 (unsigned long long)ev[i], (unsigned long long)want[i]);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	assert_invariants(mgr);
}

/* Stores enter T1 when prepared; completing them moves nothing. */
static void vllm_arc__place_is_the_staging_not_the_release(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_varc(2);
	const kvbm_complete a = prepare(mgr, H(1)), b = prepare(mgr, H(2)); /* T1 [1* 2*] */

	complete(mgr, b);
	complete(mgr, a); /* released last, yet still T1's oldest */
	expect_victims(mgr, 1, (kvbm_hash[]){H(1)});
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A pinned block is no victim and keeps its place; kvbm_unpin puts
 * nothing at the newest end. */
static void vllm_arc__pin_keeps_the_place(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_varc(3);
	kvbm_immutable pin;
	uint32_t found = 0;
	kvbm_mutable m;

	cached(mgr, H(1));
	cached(mgr, H(2));
	cached(mgr, H(3)); /* T1 [1 2 3] */
	const kvbm_hash h1 = H(1);
	assert_int_equal(kvbm_pin(mgr, &h1, 1, &pin, &found), KVBM_OK);
	assert_int_equal(found, 1);
	assert_true(evict_one(mgr, &m) == H(2)); /* 1 skipped: T1 [1p 3] */
	assert_int_equal(kvbm_unpin(mgr, &pin, 1), KVBM_OK);
	expect_victims(mgr, 1, (kvbm_hash[]){H(1)}); /* still T1's oldest */
	assert_int_equal(kvbm_mutable_release(mgr, m), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* p = 2 (two touches of a hash T1 lost) sends the choice to T2, whose only
 * block is pinned: refused, although T1 has an inactive block, and nothing
 * changed. kvbm_reset_inactive still drops every inactive block. */
static void vllm_arc__refuses_as_vllm_and_reset_still_drains(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_varc(2);
	kvbm_immutable pin;
	uint32_t found = 0, dropped = 0;
	kvbm_mutable m;
	kvbm_pool_counts pc;

	cached(mgr, H(1));
	touch(mgr, H(1));  /* T2 [1] */
	cached(mgr, H(2)); /* T1 [2] */
	assert_true(evict_one(mgr, &m) == H(2)); /* B1 [2] */
	touch(mgr, H(2));
	touch(mgr, H(2)); /* not registered, a ghost: p = 1, then 2 */
	kvbm_complete c;
	assert_int_equal(kvbm_stage(mgr, m, H(3), BS, &c), KVBM_OK);
	complete(mgr, c); /* T1 [3], T2 [1] */
	const kvbm_hash h1 = H(1);
	assert_int_equal(kvbm_pin(mgr, &h1, 1, &pin, &found), KVBM_OK);
	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_E_EXHAUSTED); /* |T1| 1 < 2 */
	assert_int_equal(kvbm_pool_counts_read(mgr, &pc), KVBM_OK);
	assert_int_equal(pc.inactive, 1);
	assert_int_equal(kvbm_unpin(mgr, &pin, 1), KVBM_OK);
	expect_victims(mgr, 1, (kvbm_hash[]){H(1)}); /* T2's, p still 2 */
	assert_int_equal(kvbm_reset_inactive(mgr, &dropped), KVBM_OK);
	assert_int_equal(dropped, 1); /* 3 */
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A store that fails (kvbm_complete_release, kvbm_unstage) leaves T1: it
 * no longer counts in |T1|. With p = 2 and a failed store, |T1| = 1 sends
 * the choice to T2. */
static void vllm_arc__failed_store_leaves_t1(void **state)
{
	(void)state;
	for (int how = 0; how < 2; how++) {
		kvbm_manager *mgr = open_varc(3);
		kvbm_mutable m, back;

		cached(mgr, H(1));
		touch(mgr, H(1)); /* T2 [1] */
		cached(mgr, H(2));
		cached(mgr, H(3)); /* T1 [2 3] */
		assert_true(evict_one(mgr, &m) == H(2)); /* B1 [2], T1 [3] */
		touch(mgr, H(2));
		touch(mgr, H(2)); /* p = 2 */
		kvbm_complete c;
		assert_int_equal(kvbm_stage(mgr, m, H(4), BS, &c), KVBM_OK); /* T1 [3 4*] */
		if (how == 0) {
			assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
		} else {
			assert_int_equal(kvbm_unstage(mgr, c, &back), KVBM_OK);
			assert_int_equal(kvbm_mutable_release(mgr, back), KVBM_OK);
		}
		/* T1 [3]: |T1| 1 < 2, T2's 1 goes, though the freed block is
		 * taken first. */
		kvbm_mutable two[2];
		kvbm_hash ev[2];
		uint32_t n_ev = 0;
		assert_int_equal(kvbm_allocate_ex(mgr, 2, two, ev, &n_ev), KVBM_OK);
		assert_int_equal(n_ev, 1);
		assert_true(ev[0] == H(1));
		for (int i = 0; i < 2; i++)
			assert_int_equal(kvbm_mutable_release(mgr, two[i]), KVBM_OK);
		assert_invariants(mgr);
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
	}
}

/* A touch reaches a block being written (T1's newest end), one pinned
 * (promoted to T2) and a hash never seen (nothing). */
static void vllm_arc__touch_reaches_blocks_out_of_the_pool(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_varc(3);
	kvbm_immutable pin;
	uint32_t found = 0;

	const kvbm_complete a = prepare(mgr, H(1));
	cached(mgr, H(2));
	cached(mgr, H(3)); /* T1 [1* 2 3] */
	touch(mgr, H(1));  /* T1 [2 3 1*] */
	touch(mgr, H(99)); /* unknown: nothing */
	const kvbm_hash h2 = H(2);
	assert_int_equal(kvbm_pin(mgr, &h2, 1, &pin, &found), KVBM_OK);
	touch(mgr, H(2)); /* pinned, written: T2 [2], T1 [3 1*] */
	assert_int_equal(kvbm_unpin(mgr, &pin, 1), KVBM_OK);
	complete(mgr, a);
	/* p = 0: T1's 3 and 1, then T1 has none left: T2's 2. */
	expect_victims(mgr, 3, (kvbm_hash[]){H(3), H(1), H(2)});
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* The catalog keeps each block's list and order: a restart evicts in the
 * order the closed manager would have. */
static void vllm_arc__restart_keeps_lists_and_order(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("vllm_arc");
	char path[512];
	snprintf(path, sizeof(path), "%s/c.db", dir);
	kvbm_config cfg;
	kvbm_config_init(&cfg);
	cfg.block_count = 4;
	cfg.block_size = BS;
	cfg.evict_policy = KVBM_EVICT_VLLM_ARC;
	cfg.catalog_path = path;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);

	for (uint32_t i = 1; i <= 4; i++)
		cached(mgr, H(i));
	touch(mgr, H(2));
	touch(mgr, H(1)); /* T1 [3 4], T2 [2 1] */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	mgr = kvbm_test_open_cfg(&cfg);
	expect_victims(mgr, 4, (kvbm_hash[]){H(3), H(4), H(2), H(1)});
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vllm_arc__place_is_the_staging_not_the_release),
		cmocka_unit_test(vllm_arc__pin_keeps_the_place),
		cmocka_unit_test(vllm_arc__refuses_as_vllm_and_reset_still_drains),
		cmocka_unit_test(vllm_arc__failed_store_leaves_t1),
		cmocka_unit_test(vllm_arc__touch_reaches_blocks_out_of_the_pool),
		cmocka_unit_test(vllm_arc__restart_keeps_lists_and_order),
	};
	return cmocka_run_group_tests_name("vllm_arc", tests, NULL, NULL);
}
