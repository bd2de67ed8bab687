/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Allocation failure: this test is linked with -Wl,--wrap=malloc (and
 * calloc, realloc), so every allocation the library makes goes through the
 * wrappers below, which fail the k-th one on command. Each test fails
 * every allocation of an operation in turn, as SQLite's own malloc tests
 * do, and checks KVBM_E_NOMEM with state intact; the ASan build then
 * proves that no failure path leaks.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

/* Allocations left before the failing one; negative = never fail. */
static atomic_long countdown = -1;
static atomic_ulong failures;

static bool fail_now(void)
{
	long left = atomic_load(&countdown);

	while (left >= 0) {
		if (atomic_compare_exchange_weak(&countdown, &left, left - 1)) {
			if (left != 0)
				return false;
			atomic_fetch_add(&failures, 1);
			return true;
		}
	}
	return false;
}

void *__wrap_malloc(size_t n);
void *__wrap_malloc(size_t n)
{
	return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n)
{
	return fail_now() ? NULL : __real_realloc(p, n);
}

/* Fail the k-th allocation from now (0 = the next one). */
static void fail_at(long k)
{
	atomic_store(&countdown, k);
}

static void never_fail(void)
{
	atomic_store(&countdown, -1);
}

/* Open with every allocation failing in turn until one open succeeds. */
static void open_fails_cleanly_at_every_allocation(kvbm_config *cfg)
{
	long k = 0;
	kvbm_manager *mgr = NULL;
	kvbm_status st;
	char err[256];

	for (;; k++) {
		assert_true(k < 1000);
		fail_at(k);
		st = kvbm_open_ex(cfg, &mgr, err, sizeof(err));
		never_fail();
		if (st == KVBM_OK)
			break;
		if (st != KVBM_E_NOMEM)
			fail_msg("allocation %ld: status %d (%s)", k, st, err);
		assert_null(mgr);
	}
	assert_true(k >= 3); /* slots, registry and the policy at least */
	assert_invariants(mgr);
	kvbm_immutable r = kvbm_test_make(mgr, 42);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void nomem__open_in_memory_every_policy(void **state)
{
	(void)state;
	for (int p = 0; p < KVBM_EVICT_COUNT; p++) {
		kvbm_config cfg;
		kvbm_config_init(&cfg);
		cfg.block_count = 32;
		cfg.evict_policy = (kvbm_evict_policy)p;
		if (kvbm_evict_policy_name(cfg.evict_policy) == NULL)
			continue;
		kvbm_evict_policy parsed;
		if (kvbm_evict_policy_parse(kvbm_evict_policy_name(cfg.evict_policy), &parsed) !=
		    KVBM_OK)
			continue; /* named but not built */
		open_fails_cleanly_at_every_allocation(&cfg);
	}
}

static void nomem__open_with_catalog(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("nomem");
	char path[512];
	kvbm_config cfg;

	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	kvbm_config_init(&cfg);
	cfg.block_count = 32;
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	open_fails_cleanly_at_every_allocation(&cfg); /* creates, then restores */
	open_fails_cleanly_at_every_allocation(&cfg);
	kvbm_test_rmdir(dir);
	free(dir);
}

/* Reference-table growth fails: retain and match take nothing. */
static void nomem__reference_growth_leaves_state_intact(void **state)
{
	(void)state;
	kvbm_manager *mgr = kvbm_test_open(8, 16, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	kvbm_immutable held[1024];
	uint32_t n = 0;

	held[n++] = kvbm_test_make(mgr, 1);
	/* Retain until the table is full, so the next retain must grow it. */
	kvbm_pool_counts before;
	for (;;) {
		fail_at(0);
		const kvbm_status st = kvbm_immutable_retain(mgr, held[0], &held[n]);
		never_fail();
		if (st == KVBM_E_NOMEM)
			break;
		assert_int_equal(st, KVBM_OK);
		assert_true(++n < 1024);
	}
	assert_true(atomic_load(&failures) > 0);
	kvbm_test_assert_error(mgr, KVBM_E_NOMEM, "reference table");
	before = kvbm_test_counts(mgr);
	assert_int_equal(kvbm_test_info(mgr, held[0].block).ref_count, n);

	/* A match that would need a new reference fails whole. */
	const kvbm_hash h = 1;
	kvbm_immutable got[1];
	uint32_t matched = 99;
	fail_at(0);
	assert_int_equal(kvbm_match(mgr, &h, 1, got, &matched), KVBM_E_NOMEM);
	never_fail();
	assert_int_equal(kvbm_test_info(mgr, held[0].block).ref_count, n);
	const kvbm_pool_counts after = kvbm_test_counts(mgr);
	assert_memory_equal(&before, &after, sizeof(before));

	/* Everything held is still valid and releases normally. */
	assert_int_equal(kvbm_immutable_retain(mgr, held[0], &held[n]), KVBM_OK);
	n++;
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_immutable_release(mgr, held[i]), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, held[0]), KVBM_E_STALE);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void ignore_batch(const kvbm_event_batch *b, void *user)
{
	(void)b;
	(void)user;
}

/* Token staging: the token copy and the per-block table can each fail;
 * the mutable block is then untouched and nothing is staged. */
static void nomem__stage_tokens_takes_nothing(void **state)
{
	(void)state;
	kvbm_config cfg;
	kvbm_config_init(&cfg);
	cfg.block_count = 8;
	cfg.block_size = 4;
	cfg.event_sink = ignore_batch;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	const uint32_t tokens[4] = {1, 2, 3, 4};
	const kvbm_token_block tb = {.tokens = tokens, .num_tokens = 4, .position = 0};
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_status st;
	long k = 0;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	for (;; k++) {
		assert_true(k < 100);
		fail_at(k);
		st = kvbm_stage_tokens(mgr, m, &tb, &c);
		never_fail();
		if (st == KVBM_OK)
			break;
		assert_int_equal(st, KVBM_E_NOMEM);
		kvbm_test_assert_counts(mgr, 7, 0, 1, 0, 0, 0);
	}
	assert_int_equal(k, 2); /* the copy, then the table of staged blocks' tokens */
	kvbm_immutable r;
	assert_int_equal(kvbm_register(mgr, c, &r), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nomem__open_in_memory_every_policy),
		cmocka_unit_test(nomem__open_with_catalog),
		cmocka_unit_test(nomem__reference_growth_leaves_state_intact),
		cmocka_unit_test(nomem__stage_tokens_takes_nothing),
	};
	return cmocka_run_group_tests_name("nomem", tests, NULL, NULL);
}
