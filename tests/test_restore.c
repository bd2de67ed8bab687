/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore of a tier large enough to be read by two threads (65,536
 * blocks, the split threshold): both halves come back, the registry the
 * readers fill concurrently finds every hash, a hash given twice across
 * the halves goes to the row first in eviction order (as if the blocks
 * were restored one by one), and a veto frees its block and hash. Under
 * TSan this is the test of the readers' shared registry inserts.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

#define BLOCKS 65536u

static int setup(void **state)
{
	*state = kvbm_test_catalog_new("restore", BLOCKS);
	return 0;
}

static int teardown(void **state)
{
	kvbm_test_catalog_free(*state);
	return 0;
}

static kvbm_hash h_of(uint32_t i)
{
	return kvbm_hash_chain(0, 9000 + i, true);
}

/* Fill the whole tier with chains of 16 released tail first, then close:
 * block b holds h_of(b) at position b % 16. */
static void fill_and_close(struct kvbm_test_catalog *f)
{
	kvbm_manager *mgr = kvbm_test_open_cfg(&f->cfg);
	kvbm_mutable m[16];
	kvbm_complete c[16];
	kvbm_immutable r[16], rev[16];

	for (uint32_t first = 0; first < BLOCKS; first += 16) {
		assert_int_equal(kvbm_allocate(mgr, 16, m), KVBM_OK);
		for (uint32_t i = 0; i < 16; i++)
			assert_int_equal(kvbm_stage_lineage(mgr, m[i], h_of(first + i),
							    i ? h_of(first + i - 1) : 0, i, 4, &c[i]),
					 KVBM_OK);
		assert_int_equal(kvbm_register_batch(mgr, c, 16, r), KVBM_OK);
		for (uint32_t i = 0; i < 16; i++)
			rev[i] = r[15 - i];
		assert_int_equal(kvbm_immutable_release_batch(mgr, rev, 16), KVBM_OK);
	}
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* The block holding hash, or UINT32_MAX when none does. */
static uint32_t holder(kvbm_manager *mgr, kvbm_hash hash)
{
	kvbm_immutable r;
	uint32_t matched = 0;

	assert_int_equal(kvbm_match(mgr, &hash, 1, &r, &matched), KVBM_OK);
	if (!matched)
		return UINT32_MAX;
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	return r.block;
}

static void exec_ok(const char *path, const char *sql)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static long long query_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	const long long v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void restore__both_halves_come_back(void **state)
{
	struct kvbm_test_catalog *f = *state;

	fill_and_close(f);
	kvbm_manager *mgr = kvbm_test_open_cfg(&f->cfg);
	assert_int_equal(kvbm_test_counts(mgr).inactive, BLOCKS);
	assert_invariants(mgr);
	for (uint32_t b = 0; b < BLOCKS; b += 97) {
		const kvbm_block_info info = kvbm_test_info(mgr, b);
		assert_int_equal(info.state, KVBM_BLOCK_INACTIVE);
		assert_int_equal(info.hash, h_of(b));
		assert_int_equal(info.parent_hash, b % 16 ? h_of(b - 1) : 0);
		assert_int_equal(info.position, b % 16);
	}
	for (uint32_t b = 0; b < BLOCKS; b++)
		if (holder(mgr, h_of(b)) != b)
			fail_msg("hash of block %u not found at its block", b);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void restore__a_hash_twice_across_halves_goes_to_the_earlier_row(void **state)
{
	struct kvbm_test_catalog *f = *state;
	char sql[512];

	fill_and_close(f);
	/* Block 60000 (upper half) claims block 5's hash (lower half) and
	 * goes first in eviction order: block 5's row is the one refused,
	 * whichever reader entered the hash first. */
	snprintf(sql, sizeof(sql),
		 "UPDATE block_rows SET seq_hash = (SELECT seq_hash FROM block_rows"
		 " WHERE id = (1 << 32) | 5), evict_key = 0 WHERE id = (1 << 32) | 60000");
	exec_ok(f->path, sql);
	kvbm_manager *mgr = kvbm_test_open_cfg(&f->cfg);
	assert_int_equal(kvbm_test_counts(mgr).inactive, BLOCKS - 1);
	assert_int_equal(kvbm_test_counts(mgr).reset, 1);
	assert_int_equal(kvbm_test_info(mgr, 5).state, KVBM_BLOCK_RESET);
	assert_int_equal(holder(mgr, h_of(5)), 60000);
	assert_int_equal(holder(mgr, h_of(60000)), UINT32_MAX);
	assert_int_equal(holder(mgr, h_of(6)), 6);
	assert_int_equal(holder(mgr, h_of(60001)), 60001);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
	assert_int_equal(query_int(f->path, "SELECT vetoed_blocks FROM tiers"), 1);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM block_rows WHERE id = (1 << 32) | 5"),
			 0);
}

static bool veto_every_third(uint32_t block, kvbm_hash hash, kvbm_hash parent, uint32_t position,
			     void *user)
{
	(void)hash;
	(void)parent;
	(void)position;
	(*(uint32_t *)user)++;
	return block % 3 != 0;
}

static void restore__a_veto_frees_its_block_and_hash(void **state)
{
	struct kvbm_test_catalog *f = *state;
	uint32_t seen = 0;

	fill_and_close(f);
	f->cfg.restore_validate = veto_every_third;
	f->cfg.restore_user = &seen;
	kvbm_manager *mgr = kvbm_test_open_cfg(&f->cfg);
	const uint32_t vetoed = (BLOCKS + 2) / 3;
	assert_int_equal(seen, BLOCKS);
	assert_int_equal(kvbm_test_counts(mgr).inactive, BLOCKS - vetoed);
	assert_int_equal(kvbm_test_counts(mgr).reset, vetoed);
	for (uint32_t b = 0; b < BLOCKS; b += 7) {
		assert_int_equal(holder(mgr, h_of(b)), b % 3 ? b : UINT32_MAX);
		assert_int_equal(kvbm_test_info(mgr, b).state,
				 b % 3 ? KVBM_BLOCK_INACTIVE : KVBM_BLOCK_RESET);
	}
	assert_invariants(mgr);
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
	assert_int_equal(query_int(f->path, "SELECT vetoed_blocks FROM tiers"), vetoed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(restore__both_halves_come_back, setup, teardown),
		cmocka_unit_test_setup_teardown(
			restore__a_hash_twice_across_halves_goes_to_the_earlier_row, setup, teardown),
		cmocka_unit_test_setup_teardown(restore__a_veto_frees_its_block_and_hash, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
