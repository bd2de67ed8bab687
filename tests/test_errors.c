/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every documented error code of the core API: NULL arguments, config
 * validation, stale, consumed, double-released and fabricated handles,
 * out-of-range block ids, and empty handles as no-ops. Each error case
 * checks the code, the message and that the manager did not change
 * (pool counts, reference counts, registry).
 */
#include <stdio.h>
#include <string.h>

#include "test_common.h"

#define BS 8u
#define NB 8u

static int setup(void **state)
{
	*state = kvbm_test_open(NB, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
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

static uint64_t stale_count(kvbm_manager *mgr)
{
	kvbm_metrics m;

	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	return m.stale_handles;
}

/* The pool counts did not move since `before`. */
static void assert_unchanged(kvbm_manager *mgr, const kvbm_pool_counts *before)
{
	const kvbm_pool_counts now = kvbm_test_counts(mgr);

	assert_memory_equal(&now, before, sizeof(now));
	kvbm_test_assert_invariants(mgr);
}

/* A macro, so a failure names the caller's line. */
#define expect_stale(mgr, call, before)                                        \
	do {                                                                    \
		assert_int_equal((call), KVBM_E_STALE);                         \
		kvbm_test_assert_error((mgr), KVBM_E_STALE, "stale");           \
		assert_unchanged((mgr), (before));                              \
	} while (0)

static void errors__null_manager_is_inval(void **state)
{
	kvbm_mutable m = {0};
	kvbm_complete c = {0};
	kvbm_immutable h = {0};
	kvbm_weak w = {.block = 0, .epoch = 1, .hash = 1};
	kvbm_hash hash = 1;
	uint32_t u32;
	bool b;
	kvbm_pool_counts pc;
	kvbm_block_info bi;
	kvbm_metrics mt;
	kvbm_status code;
	char buf[8];

	(void)state;
	assert_int_equal(kvbm_allocate(NULL, 1, &m), KVBM_E_INVAL);
	assert_int_equal(kvbm_allocate_ex(NULL, 1, &m, NULL, NULL), KVBM_E_INVAL);
	assert_int_equal(kvbm_mutable_release(NULL, m), KVBM_E_INVAL);
	assert_int_equal(kvbm_stage(NULL, m, 1, BS, &c), KVBM_E_INVAL);
	assert_int_equal(kvbm_stage_lineage(NULL, m, 1, 0, 0, BS, &c), KVBM_E_INVAL);
	assert_int_equal(kvbm_unstage(NULL, c, &m), KVBM_E_INVAL);
	assert_int_equal(kvbm_complete_release(NULL, c), KVBM_E_INVAL);
	assert_int_equal(kvbm_register(NULL, c, &h), KVBM_E_INVAL);
	assert_int_equal(kvbm_register_batch(NULL, &c, 1, &h), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_retain(NULL, h, &h), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_release(NULL, h), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_release_batch(NULL, &h, 1), KVBM_E_INVAL);
	assert_int_equal(kvbm_downgrade(NULL, h, &w), KVBM_E_INVAL);
	assert_int_equal(kvbm_weak_upgrade(NULL, w, &h), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_set_reset_on_release(NULL, h, true), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_set_priority(NULL, h, 1, 0), KVBM_E_INVAL);
	assert_int_equal(kvbm_block_info_read(NULL, 0, &bi), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_hash(NULL, h, &hash), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_ref_count(NULL, h, &u32), KVBM_E_INVAL);
	assert_int_equal(kvbm_reset_inactive(NULL, &u32), KVBM_E_INVAL);
	assert_int_equal(kvbm_match(NULL, &hash, 1, &h, &u32), KVBM_E_INVAL);
	assert_int_equal(kvbm_match_scattered(NULL, &hash, 1, &h, &u32), KVBM_E_INVAL);
	assert_int_equal(kvbm_contains(NULL, &hash, 1, &b, &u32, &u32), KVBM_E_INVAL);
	assert_int_equal(kvbm_pool_counts_read(NULL, &pc), KVBM_E_INVAL);
	assert_int_equal(kvbm_metrics_read(NULL, &mt), KVBM_E_INVAL);
	assert_int_equal(kvbm_last_error(NULL, &code, buf, sizeof(buf)), KVBM_E_INVAL);
	assert_int_equal(kvbm_flush(NULL), KVBM_E_INVAL);
	assert_int_equal(kvbm_total_blocks(NULL), 0);
	assert_int_equal(kvbm_block_size(NULL), 0);
	assert_int_equal(kvbm_available_blocks(NULL), 0);
}

static void errors__null_out_arguments_are_inval(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable h;
	kvbm_hash hash = 5;
	uint32_t u32;

	/* A registered block, a mutable and a staged one to aim at. */
	const kvbm_immutable reg = kvbm_test_make(mgr, 5);
	kvbm_mutable ms[2];
	assert_int_equal(kvbm_allocate(mgr, 2, ms), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, ms[1], 6, BS, &c), KVBM_OK);
	const kvbm_pool_counts before = kvbm_test_counts(mgr);

#define INVAL(call)                                                             \
	do {                                                                    \
		assert_int_equal((call), KVBM_E_INVAL);                         \
		kvbm_test_assert_error(mgr, KVBM_E_INVAL, "invalid argument");  \
		assert_unchanged(mgr, &before);                                 \
	} while (0)
	INVAL(kvbm_allocate(mgr, 1, NULL));
	INVAL(kvbm_allocate_ex(mgr, 1, NULL, NULL, NULL));
	INVAL(kvbm_stage(mgr, ms[0], 1, BS, NULL));
	INVAL(kvbm_stage_lineage(mgr, ms[0], 1, 0, 0, BS, NULL));
	INVAL(kvbm_unstage(mgr, c, NULL));
	INVAL(kvbm_register(mgr, c, NULL));
	INVAL(kvbm_register_batch(mgr, NULL, 1, &h));
	INVAL(kvbm_register_batch(mgr, &c, 1, NULL));
	INVAL(kvbm_immutable_retain(mgr, reg, NULL));
	INVAL(kvbm_immutable_release_batch(mgr, NULL, 1));
	INVAL(kvbm_downgrade(mgr, reg, NULL));
	INVAL(kvbm_immutable_hash(mgr, reg, NULL));
	INVAL(kvbm_immutable_ref_count(mgr, reg, NULL));
	INVAL(kvbm_block_info_read(mgr, 0, NULL));
	INVAL(kvbm_pool_counts_read(mgr, NULL));
	INVAL(kvbm_metrics_read(mgr, NULL));
	INVAL(kvbm_match(mgr, NULL, 1, &h, &u32));
	INVAL(kvbm_match(mgr, &hash, 1, NULL, &u32));
	INVAL(kvbm_match(mgr, &hash, 1, &h, NULL));
	INVAL(kvbm_match_scattered(mgr, NULL, 1, &h, &u32));
	INVAL(kvbm_match_scattered(mgr, &hash, 1, NULL, &u32));
	INVAL(kvbm_match_scattered(mgr, &hash, 1, &h, NULL));
	INVAL(kvbm_contains(mgr, NULL, 1, NULL, NULL, NULL));
#undef INVAL
	/* Nothing was consumed by those calls. */
	assert_int_equal(refs_of(mgr, reg), 1);
	assert_int_equal(kvbm_stage(mgr, ms[0], 7, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
	(void)m;
}

static void errors__zero_counts(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c = {0};
	kvbm_immutable h;
	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	uint32_t u = 99;

	assert_int_equal(kvbm_allocate(mgr, 0, &m), KVBM_E_INVAL);
	kvbm_test_assert_error(mgr, KVBM_E_INVAL, "n");
	assert_unchanged(mgr, &before);
	assert_int_equal(kvbm_register_batch(mgr, &c, 0, &h), KVBM_E_INVAL);
	assert_unchanged(mgr, &before);
	/* Zero-length lookups are allowed and match nothing. */
	assert_int_equal(kvbm_match(mgr, NULL, 0, NULL, &u), KVBM_OK);
	assert_int_equal(u, 0);
	u = 99;
	assert_int_equal(kvbm_match_scattered(mgr, NULL, 0, NULL, &u), KVBM_OK);
	assert_int_equal(u, 0);
	u = 99;
	assert_int_equal(kvbm_contains(mgr, NULL, 0, NULL, &u, NULL), KVBM_OK);
	assert_int_equal(u, 0);
}

static kvbm_status open_msg(const kvbm_config *cfg, char *err, size_t len)
{
	kvbm_manager *mgr = (kvbm_manager *)(uintptr_t)0x10; /* must be reset to NULL */
	const kvbm_status st = kvbm_open_ex(cfg, &mgr, err, len);

	if (st != KVBM_OK)
		assert_null(mgr);
	else
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
	return st;
}

static void expect_bad_config(const kvbm_config *cfg, const char *needle)
{
	char err[256];
	kvbm_manager *mgr = (kvbm_manager *)(uintptr_t)0x10;

	assert_int_equal(open_msg(cfg, err, sizeof(err)), KVBM_E_INVAL);
	if (!strstr(err, needle)) {
		print_error("open message '%s' lacks '%s'\n", err, needle);
		fail();
	}
	assert_int_equal(kvbm_open(cfg, &mgr), KVBM_E_INVAL);
	assert_null(mgr);
}

static void errors__config_validation(void **state)
{
	kvbm_config cfg;
	char err[256];

	(void)state;
	kvbm_config_init(&cfg);
	cfg.block_count = 4;

	kvbm_config bad = cfg;
	bad.block_count = 0;
	expect_bad_config(&bad, "block_count 0");
	bad.block_count = KVBM_MAX_BLOCKS + 1;
	expect_bad_config(&bad, "block_count 1073741825");
	bad.block_count = UINT32_MAX;
	expect_bad_config(&bad, "block_count");

	static const uint32_t bad_sizes[] = {0, 3, 6, 12, 100, 1023, 2048, 4096, UINT32_MAX};
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		char needle[64];
		bad = cfg;
		bad.block_size = bad_sizes[i];
		snprintf(needle, sizeof(needle), "block_size %u", bad_sizes[i]);
		expect_bad_config(&bad, needle);
	}
	for (uint32_t bs = 1; bs <= KVBM_MAX_BLOCK_SIZE; bs *= 2) {
		kvbm_manager *mgr = NULL;
		bad = cfg;
		bad.block_size = bs;
		assert_int_equal(kvbm_open(&bad, &mgr), KVBM_OK);
		assert_int_equal(kvbm_block_size(mgr), bs);
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
	}

	bad = cfg;
	bad.dup_policy = (kvbm_dup_policy)2;
	expect_bad_config(&bad, "dup_policy 2");
	bad.dup_policy = (kvbm_dup_policy)-1;
	expect_bad_config(&bad, "dup_policy");
	bad = cfg;
	bad.evict_policy = (kvbm_evict_policy)KVBM_EVICT_COUNT;
	char unknown[32];
	snprintf(unknown, sizeof(unknown), "evict_policy %d", KVBM_EVICT_COUNT);
	expect_bad_config(&bad, unknown);
	bad.evict_policy = (kvbm_evict_policy)-3;
	expect_bad_config(&bad, "evict_policy");
	bad = cfg;
	bad.catalog_sync = (kvbm_sync)9;
	expect_bad_config(&bad, "catalog_sync 9");
	bad = cfg;
	bad.tier = NULL;
	expect_bad_config(&bad, "tier");
	bad.tier = "";
	expect_bad_config(&bad, "tier");

	/* NULL config or out pointer. */
	kvbm_manager *mgr = NULL;
	assert_int_equal(kvbm_open(NULL, &mgr), KVBM_E_INVAL);
	assert_null(mgr);
	assert_int_equal(kvbm_open(&cfg, NULL), KVBM_E_INVAL);
	assert_int_equal(kvbm_open_ex(NULL, &mgr, err, sizeof(err)), KVBM_E_INVAL);
	assert_non_null(strstr(err, "cfg"));
	/* errbuf may be NULL or tiny. */
	bad = cfg;
	bad.block_count = 0;
	assert_int_equal(kvbm_open_ex(&bad, &mgr, NULL, 0), KVBM_E_INVAL);
	assert_int_equal(kvbm_open_ex(&bad, &mgr, err, 1), KVBM_E_INVAL);
	assert_int_equal(err[0], '\0');
	/* The config is copied: the caller may free or reuse its strings. */
	char tier[8] = "G2";
	bad = cfg;
	bad.tier = tier;
	assert_int_equal(kvbm_open(&bad, &mgr), KVBM_OK);
	memset(tier, 'x', sizeof(tier) - 1);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void errors__stale_consumed_mutable(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c, c2 = {0};

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, 10, BS, &c), KVBM_OK);
	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	const uint64_t stale0 = stale_count(mgr);

	expect_stale(mgr, kvbm_stage(mgr, m, 11, BS, &c2), &before);
	assert_int_equal(c2.gen, 0);
	expect_stale(mgr, kvbm_stage_lineage(mgr, m, 11, 0, 0, BS, &c2), &before);
	expect_stale(mgr, kvbm_mutable_release(mgr, m), &before);
	assert_int_equal(stale_count(mgr), stale0 + 3);
	/* The staged block kept its hash through all that. */
	assert_int_equal(kvbm_test_info(mgr, c.block).hash, 10);
	assert_int_equal(kvbm_test_info(mgr, c.block).state, KVBM_BLOCK_STAGED);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
	/* Released: the handle stays stale even after the block is reused. */
	kvbm_mutable again[NB];
	assert_int_equal(kvbm_allocate(mgr, NB, again), KVBM_OK);
	const kvbm_pool_counts all = kvbm_test_counts(mgr);
	expect_stale(mgr, kvbm_mutable_release(mgr, m), &all);
	expect_stale(mgr, kvbm_complete_release(mgr, c), &all);
	for (uint32_t i = 0; i < NB; i++)
		assert_int_equal(kvbm_mutable_release(mgr, again[i]), KVBM_OK);
}

static void errors__stale_complete_after_each_exit(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m, m2;
	kvbm_complete c;
	kvbm_immutable h;

	/* after unstage */
	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, 20, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_unstage(mgr, c, &m2), KVBM_OK);
	kvbm_pool_counts before = kvbm_test_counts(mgr);
	expect_stale(mgr, kvbm_register(mgr, c, &h), &before);
	expect_stale(mgr, kvbm_unstage(mgr, c, &m), &before);
	expect_stale(mgr, kvbm_complete_release(mgr, c), &before);
	/* after register */
	assert_int_equal(kvbm_stage(mgr, m2, 21, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &h), KVBM_OK);
	before = kvbm_test_counts(mgr);
	kvbm_immutable h2 = {0};
	expect_stale(mgr, kvbm_register(mgr, c, &h2), &before);
	assert_int_equal(h2.gen, 0);
	expect_stale(mgr, kvbm_register_batch(mgr, &c, 1, &h2), &before);
	expect_stale(mgr, kvbm_unstage(mgr, c, &m), &before);
	expect_stale(mgr, kvbm_complete_release(mgr, c), &before);
	assert_int_equal(refs_of(mgr, h), 1);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
}

static void errors__handle_of_another_state_is_stale(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable h;

	/* A mutable's {block, gen} passed as a complete handle, and back. */
	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	kvbm_pool_counts before = kvbm_test_counts(mgr);
	const kvbm_complete fake_c = {.block = m.block, .gen = m.gen};
	expect_stale(mgr, kvbm_register(mgr, fake_c, &h), &before);
	expect_stale(mgr, kvbm_complete_release(mgr, fake_c), &before);
	assert_int_equal(kvbm_stage(mgr, m, 30, BS, &c), KVBM_OK);
	before = kvbm_test_counts(mgr);
	const kvbm_mutable fake_m = {.block = c.block, .gen = c.gen};
	expect_stale(mgr, kvbm_mutable_release(mgr, fake_m), &before);
	expect_stale(mgr, kvbm_stage(mgr, fake_m, 31, BS, &c), &before);
	assert_int_equal(kvbm_test_info(mgr, c.block).hash, 30);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
}

static void errors__double_release_with_other_reference_live(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable a = kvbm_test_make(mgr, 40);
	kvbm_immutable b;

	assert_int_equal(kvbm_immutable_retain(mgr, a, &b), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, a), KVBM_OK);
	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	/* a again: stale, and must not take b's reference. */
	expect_stale(mgr, kvbm_immutable_release(mgr, a), &before);
	assert_int_equal(refs_of(mgr, b), 1);
	assert_int_equal(kvbm_test_info(mgr, b.block).state, KVBM_BLOCK_REGISTERED);
	kvbm_immutable tmp;
	kvbm_hash hv;
	uint32_t u;
	kvbm_weak w;
	expect_stale(mgr, kvbm_immutable_retain(mgr, a, &tmp), &before);
	expect_stale(mgr, kvbm_immutable_hash(mgr, a, &hv), &before);
	expect_stale(mgr, kvbm_immutable_ref_count(mgr, a, &u), &before);
	expect_stale(mgr, kvbm_downgrade(mgr, a, &w), &before);
	expect_stale(mgr, kvbm_immutable_set_reset_on_release(mgr, a, true), &before);
	expect_stale(mgr, kvbm_immutable_set_priority(mgr, a, 10, 0), &before);
	assert_false(kvbm_test_info(mgr, b.block).reset_on_release);
	assert_int_equal(refs_of(mgr, b), 1);
	/* A new reference may reuse a's slot; a stays stale. */
	kvbm_immutable c;
	assert_int_equal(kvbm_immutable_retain(mgr, b, &c), KVBM_OK);
	const kvbm_pool_counts before2 = kvbm_test_counts(mgr);
	expect_stale(mgr, kvbm_immutable_release(mgr, a), &before2);
	assert_int_equal(refs_of(mgr, c), 2);
	assert_int_equal(kvbm_immutable_release(mgr, c), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, b), KVBM_OK);
	assert_int_equal(kvbm_test_info(mgr, b.block).state, KVBM_BLOCK_INACTIVE);
	const kvbm_pool_counts after = kvbm_test_counts(mgr);
	expect_stale(mgr, kvbm_immutable_release(mgr, b), &after);
}

static void errors__release_batch_skips_stale_entries(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable a = kvbm_test_make(mgr, 50);
	kvbm_immutable hs[4];

	assert_int_equal(kvbm_immutable_retain(mgr, a, &hs[0]), KVBM_OK);
	hs[1] = hs[0]; /* the same reference twice */
	hs[2] = (kvbm_immutable){0};
	hs[3] = (kvbm_immutable){.block = a.block, .ref = 4000, .gen = 1};
	assert_int_equal(kvbm_immutable_release_batch(mgr, hs, 4), KVBM_E_STALE);
	kvbm_test_assert_error(mgr, KVBM_E_STALE, "stale");
	/* Exactly one reference went; a is still live. */
	assert_int_equal(refs_of(mgr, a), 1);
	kvbm_test_assert_counts(mgr, NB - 1, 0, 0, 0, 1, 0);
	assert_int_equal(kvbm_immutable_release(mgr, a), KVBM_OK);
}

static void errors__register_batch_is_all_or_nothing(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m[3];
	kvbm_complete c[3], bad[3];
	kvbm_immutable h[3];

	assert_int_equal(kvbm_allocate(mgr, 3, m), KVBM_OK);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(kvbm_stage(mgr, m[i], 60 + i, BS, &c[i]), KVBM_OK);
	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	/* A stale handle last: the earlier ones are not registered. */
	bad[0] = c[0];
	bad[1] = c[1];
	bad[2] = (kvbm_complete){.block = c[2].block, .gen = c[2].gen + 2};
	expect_stale(mgr, kvbm_register_batch(mgr, bad, 3, h), &before);
	/* The same handle twice. */
	bad[2] = c[0];
	expect_stale(mgr, kvbm_register_batch(mgr, bad, 3, h), &before);
	/* A forged twin of a handle earlier in the batch (generation with the
	 * top bit flipped) must not pass either. */
	bad[1] = (kvbm_complete){.block = c[0].block, .gen = c[0].gen ^ 0x80000000u};
	bad[2] = c[2];
	expect_stale(mgr, kvbm_register_batch(mgr, bad, 3, h), &before);
	/* An out-of-range block id. */
	bad[1] = (kvbm_complete){.block = NB + 5, .gen = c[1].gen};
	expect_stale(mgr, kvbm_register_batch(mgr, bad, 3, h), &before);
	for (uint32_t i = 0; i < 3; i++) {
		assert_int_equal(kvbm_test_info(mgr, c[i].block).state, KVBM_BLOCK_STAGED);
		assert_int_equal(kvbm_test_info(mgr, c[i].block).hash, 60 + i);
	}
	assert_int_equal(kvbm_test_counts(mgr).registry, 0);
	/* The genuine handles still register. */
	assert_int_equal(kvbm_register_batch(mgr, c, 3, h), KVBM_OK);
	kvbm_test_assert_counts(mgr, NB - 3, 0, 0, 0, 3, 0);
	assert_int_equal(kvbm_immutable_release_batch(mgr, h, 3), KVBM_OK);
}

static void errors__fabricated_handles(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable live = kvbm_test_make(mgr, 70);
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable out;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	const kvbm_mutable fm[] = {
		{.block = m.block, .gen = m.gen + 1},
		{.block = m.block, .gen = m.gen ^ 0x80000000u},
		{.block = NB, .gen = m.gen},
		{.block = UINT32_MAX, .gen = 1},
		{.block = (m.block + 1) % NB, .gen = m.gen},
	};
	for (size_t i = 0; i < sizeof(fm) / sizeof(fm[0]); i++) {
		expect_stale(mgr, kvbm_mutable_release(mgr, fm[i]), &before);
		expect_stale(mgr, kvbm_stage(mgr, fm[i], 71, BS, &c), &before);
	}
	const kvbm_complete fc[] = {
		{.block = NB, .gen = 1},
		{.block = UINT32_MAX, .gen = 3},
		{.block = 0, .gen = UINT32_MAX},
	};
	for (size_t i = 0; i < sizeof(fc) / sizeof(fc[0]); i++) {
		expect_stale(mgr, kvbm_complete_release(mgr, fc[i]), &before);
		expect_stale(mgr, kvbm_register(mgr, fc[i], &out), &before);
		expect_stale(mgr, kvbm_unstage(mgr, fc[i], &m), &before);
	}
	const kvbm_immutable fi[] = {
		{.block = live.block, .ref = live.ref, .gen = live.gen + 2},
		{.block = live.block, .ref = live.ref, .gen = live.gen + 1},
		{.block = live.block, .ref = live.ref + 1, .gen = live.gen},
		{.block = (live.block + 1) % NB, .ref = live.ref, .gen = live.gen},
		{.block = NB + 1, .ref = live.ref, .gen = live.gen},
		{.block = live.block, .ref = UINT32_MAX, .gen = 1},
		{.block = UINT32_MAX, .ref = UINT32_MAX, .gen = UINT32_MAX},
	};
	for (size_t i = 0; i < sizeof(fi) / sizeof(fi[0]); i++) {
		uint32_t u;
		kvbm_weak w;
		expect_stale(mgr, kvbm_immutable_release(mgr, fi[i]), &before);
		expect_stale(mgr, kvbm_immutable_retain(mgr, fi[i], &out), &before);
		expect_stale(mgr, kvbm_immutable_ref_count(mgr, fi[i], &u), &before);
		expect_stale(mgr, kvbm_downgrade(mgr, fi[i], &w), &before);
	}
	assert_int_equal(refs_of(mgr, live), 1);
	assert_int_equal(kvbm_mutable_release(mgr, m), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, live), KVBM_OK);
}

static void errors__empty_handles(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	const kvbm_mutable em = {0};
	const kvbm_complete ec = {0};
	const kvbm_immutable ei = {0};
	const kvbm_weak ew = {0};
	kvbm_complete c;
	kvbm_immutable h;
	kvbm_mutable m;

	/* Releases of empty handles are no-ops... */
	assert_int_equal(kvbm_mutable_release(mgr, em), KVBM_OK);
	assert_int_equal(kvbm_complete_release(mgr, ec), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, ei), KVBM_OK);
	assert_int_equal(kvbm_immutable_release_batch(mgr, &ei, 1), KVBM_OK);
	/* even with a non-zero block id (gen 0 is what makes it empty). */
	assert_int_equal(kvbm_mutable_release(mgr, (kvbm_mutable){.block = 3}), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, (kvbm_immutable){.block = 3, .ref = 2}),
			 KVBM_OK);
	assert_unchanged(mgr, &before);
	/* ...but a transition of an empty handle is not. */
	expect_stale(mgr, kvbm_stage(mgr, em, 1, BS, &c), &before);
	expect_stale(mgr, kvbm_register(mgr, ec, &h), &before);
	expect_stale(mgr, kvbm_unstage(mgr, ec, &m), &before);
	expect_stale(mgr, kvbm_immutable_retain(mgr, ei, &h), &before);
	assert_int_equal(kvbm_weak_upgrade(mgr, ew, &h), KVBM_E_INVAL);
	kvbm_test_assert_error(mgr, KVBM_E_INVAL, "invalid argument");
	assert_unchanged(mgr, &before);
}

static void errors__weak_upgrade_errors(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable h = kvbm_test_make(mgr, 80);
	kvbm_weak w;
	kvbm_immutable u;

	assert_int_equal(kvbm_downgrade(mgr, h, &w), KVBM_OK);
	assert_int_equal(kvbm_weak_upgrade(mgr, w, NULL), KVBM_E_INVAL);
	assert_int_equal(refs_of(mgr, h), 1);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	uint32_t dropped;
	assert_int_equal(kvbm_reset_inactive(mgr, &dropped), KVBM_OK);
	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	assert_int_equal(kvbm_weak_upgrade(mgr, w, &u), KVBM_E_NOTFOUND);
	kvbm_test_assert_error(mgr, KVBM_E_NOTFOUND, "0000000000000050");
	assert_unchanged(mgr, &before);
	/* A fabricated weak handle for a hash never registered. */
	const kvbm_weak fw = {.block = NB + 10, .epoch = 12345, .hash = 0xdead};
	assert_int_equal(kvbm_weak_upgrade(mgr, fw, &u), KVBM_E_NOTFOUND);
	assert_unchanged(mgr, &before);
}

static void errors__stage_lineage_unknown_position(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m;
	kvbm_complete c;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	assert_int_equal(kvbm_stage_lineage(mgr, m, 1, 2, KVBM_POSITION_UNKNOWN, BS, &c),
			 KVBM_E_INVAL);
	kvbm_test_assert_error(mgr, KVBM_E_INVAL, "position");
	assert_unchanged(mgr, &before);
	assert_int_equal(kvbm_stage_lineage(mgr, m, 1, 2, 1, BS - 1, &c), KVBM_E_SIZE);
	assert_unchanged(mgr, &before);
	assert_int_equal(kvbm_stage_lineage(mgr, m, 1, 2, 1, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
}

static void errors__block_info_out_of_range(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_block_info info;

	assert_int_equal(kvbm_block_info_read(mgr, NB, &info), KVBM_E_INVAL);
	kvbm_test_assert_error(mgr, KVBM_E_INVAL, "block 8");
	assert_int_equal(kvbm_block_info_read(mgr, UINT32_MAX, &info), KVBM_E_INVAL);
	kvbm_test_assert_error(mgr, KVBM_E_INVAL, "4294967295");
	assert_int_equal(kvbm_block_info_read(mgr, NB - 1, &info), KVBM_OK);
}

static void errors__exhausted_message_and_state(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_mutable m[NB + 1];

	const kvbm_pool_counts before = kvbm_test_counts(mgr);
	assert_int_equal(kvbm_allocate(mgr, NB + 1, m), KVBM_E_EXHAUSTED);
	kvbm_test_assert_error(mgr, KVBM_E_EXHAUSTED, "9");
	assert_unchanged(mgr, &before);
	assert_int_equal(kvbm_allocate(mgr, UINT32_MAX, m), KVBM_E_EXHAUSTED);
	assert_unchanged(mgr, &before);
}

static void errors__last_error_copies_and_truncates(void **state)
{
	kvbm_manager *mgr = *state;
	kvbm_status code = KVBM_OK;
	char buf[4] = "zzz";
	kvbm_block_info info;

	assert_int_equal(kvbm_block_info_read(mgr, 99, &info), KVBM_E_INVAL);
	assert_int_equal(kvbm_last_error(mgr, &code, buf, sizeof(buf)), KVBM_OK);
	assert_int_equal(code, KVBM_E_INVAL);
	assert_int_equal(strlen(buf), 3);
	assert_int_equal(kvbm_last_error(mgr, NULL, NULL, 0), KVBM_OK);
	assert_int_equal(kvbm_last_error(mgr, &code, buf, 0), KVBM_OK);
	/* Messages are one lower-case line without a trailing period. */
	char full[256];
	assert_int_equal(kvbm_last_error(mgr, NULL, full, sizeof(full)), KVBM_OK);
	assert_null(strchr(full, '\n'));
	assert_int_not_equal(full[strlen(full) - 1], '.');
}

static void errors__strerror_covers_every_code(void **state)
{
	static const kvbm_status codes[] = {
		KVBM_OK, KVBM_E_INVAL, KVBM_E_NOMEM, KVBM_E_EXHAUSTED, KVBM_E_SIZE,
		KVBM_E_STALE, KVBM_E_MISUSE, KVBM_E_NOTFOUND, KVBM_E_IO, KVBM_E_CORRUPT,
		KVBM_E_BUSY, KVBM_E_READONLY, KVBM_E_FULL, KVBM_E_MISMATCH,
		KVBM_E_UNSUPPORTED,
	};
	const size_t n = sizeof(codes) / sizeof(codes[0]);

	(void)state;
	/* Pinned values: never renumbered. */
	assert_int_equal(KVBM_E_INVAL, -1);
	assert_int_equal(KVBM_E_STALE, -5);
	assert_int_equal(KVBM_E_UNSUPPORTED, -14);
	for (size_t i = 0; i < n; i++) {
		const char *s = kvbm_strerror(codes[i]);
		assert_non_null(s);
		assert_true(strlen(s) > 0);
		assert_string_not_equal(s, "unknown status");
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, kvbm_strerror(codes[j]));
	}
	assert_string_equal(kvbm_strerror((kvbm_status)-15), "unknown status");
	assert_string_equal(kvbm_strerror((kvbm_status)1), "unknown status");
	assert_string_equal(kvbm_strerror((kvbm_status)-1000), "unknown status");
}

static void errors__policy_parse_rejects_unknown(void **state)
{
	kvbm_evict_policy p = KVBM_EVICT_FIFO;

	(void)state;
	assert_int_equal(kvbm_evict_policy_parse("LRU-ish", &p), KVBM_E_INVAL);
	assert_int_equal(kvbm_evict_policy_parse("", &p), KVBM_E_INVAL);
	assert_int_equal(kvbm_evict_policy_parse(NULL, &p), KVBM_E_INVAL);
	assert_int_equal(kvbm_evict_policy_parse("lru", NULL), KVBM_E_INVAL);
	assert_int_equal(p, KVBM_EVICT_FIFO);
	assert_null(kvbm_evict_policy_name((kvbm_evict_policy)-1));
	assert_null(kvbm_evict_policy_name((kvbm_evict_policy)1000));
}

static void errors__set_priority_checks_handle_and_range(void **state)
{
	kvbm_manager *mgr = *state;
	const kvbm_immutable h = kvbm_test_make(mgr, 90);
	const kvbm_pool_counts before = kvbm_test_counts(mgr);

	assert_int_equal(kvbm_immutable_set_priority(mgr, h, 101, 0), KVBM_E_INVAL);
	kvbm_test_assert_error(mgr, KVBM_E_INVAL, "priority 101");
	assert_unchanged(mgr, &before);
	const kvbm_immutable fake = {.block = h.block, .ref = h.ref, .gen = h.gen + 2};
	expect_stale(mgr, kvbm_immutable_set_priority(mgr, fake, 5, 0), &before);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(errors__null_manager_is_inval),
		T(errors__null_out_arguments_are_inval),
		T(errors__zero_counts),
		cmocka_unit_test(errors__config_validation),
		T(errors__stale_consumed_mutable),
		T(errors__stale_complete_after_each_exit),
		T(errors__handle_of_another_state_is_stale),
		T(errors__double_release_with_other_reference_live),
		T(errors__release_batch_skips_stale_entries),
		T(errors__register_batch_is_all_or_nothing),
		T(errors__fabricated_handles),
		T(errors__empty_handles),
		T(errors__weak_upgrade_errors),
		T(errors__stage_lineage_unknown_position),
		T(errors__block_info_out_of_range),
		T(errors__exhausted_message_and_state),
		T(errors__last_error_copies_and_truncates),
		cmocka_unit_test(errors__strerror_covers_every_code),
		cmocka_unit_test(errors__policy_parse_rejects_unknown),
		T(errors__set_priority_checks_handle_and_range),
	};

	return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
