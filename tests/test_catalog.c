/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The write-behind catalog: schema creation, identity checks and their
 * refusal messages, restore of order, frequencies and priorities, flush
 * visibility to a second connection, coalescing, the pre-commit and
 * restore-validation hooks, the clean-shutdown mark, and the files that
 * are not catalogs. Every test works in a fresh temporary directory with
 * real SQLite.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_common.h"

static int setup(void **state)
{
	struct kvbm_test_catalog *f = kvbm_test_catalog_new("catalog", 16);

	f->cfg.model_fingerprint = "llama-test-weights";
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	kvbm_test_catalog_free(*state);
	return 0;
}

/* Open with a full config, asserting success (the message on failure). */
#define open_ok(cfg) kvbm_test_open_cfg(cfg)

static kvbm_hash h_of(uint32_t i)
{
	return kvbm_hash_chain(0, 7000 + i, true);
}

/* Register a chain of n blocks with lineage and release it tail first. */
static void add_chain(kvbm_manager *mgr, uint32_t first, uint32_t n)
{
	kvbm_mutable m[16];
	kvbm_complete c[16];
	kvbm_immutable r[16], rev[16];

	assert_int_equal(kvbm_allocate(mgr, n, m), KVBM_OK);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_stage_lineage(mgr, m[i], h_of(first + i),
						    i ? h_of(first + i - 1) : 0, i, 4, &c[i]),
				 KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, n, r), KVBM_OK);
	for (uint32_t i = 0; i < n; i++)
		rev[i] = r[n - 1 - i];
	assert_int_equal(kvbm_immutable_release_batch(mgr, rev, n), KVBM_OK);
}

static sqlite3 *reader(const char *path)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The text the first row of sql holds in its first column equals want
 * (NULL: no row). */
static void assert_query_text(sqlite3 *db, const char *sql, const char *want)
{
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	const int rc = sqlite3_step(st);
	if (!want)
		assert_int_equal(rc, SQLITE_DONE);
	else {
		assert_int_equal(rc, SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(st, 0), want);
	}
	sqlite3_finalize(st);
}

static void catalog__creates_schema_and_identity(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);
	sqlite3 *db = reader(f->path);

	assert_int_equal(query_int(db, "PRAGMA user_version"), KVBM_SCHEMA_VERSION);
	assert_int_equal(query_int(db, "SELECT block_size FROM meta WHERE tier = 'G1'"), 4);
	assert_int_equal(query_int(db, "SELECT block_count FROM meta WHERE tier = 'G1'"), 16);
	assert_int_equal(query_int(db, "SELECT hash_seed FROM meta"), KVBM_HASH_LOCAL_SEED);
	assert_int_equal(query_int(db, "SELECT incarnation FROM meta"), 1);
	assert_int_equal(query_int(db, "SELECT clean_shutdown FROM meta"), 0);
	assert_int_equal(query_int(db, "SELECT count(*) FROM meta WHERE model_fingerprint = "
				       "'llama-test-weights'"),
			 1);
	sqlite3_close(db);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	db = reader(f->path);
	assert_int_equal(query_int(db, "SELECT clean_shutdown FROM meta"), 1);
	assert_true(query_int(db, "SELECT last_clean_shutdown_at FROM meta") > 0);
	sqlite3_close(db);
}

static void catalog__restores_registry_in_eviction_order(void **state)
{
	struct kvbm_test_catalog *f = *state;
	/* LRU: the order asserted is LRU's (test_adaptive.c restores the
	 * default policy's lists and split). */
	f->cfg.evict_policy = KVBM_EVICT_LRU;
	kvbm_manager *mgr = open_ok(&f->cfg);

	add_chain(mgr, 0, 5);
	add_chain(mgr, 10, 3);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);

	mgr = open_ok(&f->cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 8);
	assert_int_equal(c.registry, 8);
	assert_invariants(mgr);
	/* Fill the 8 free blocks, then evict: the second chain was released
	 * last, its tail first, so the first chain's tail goes first. */
	kvbm_mutable m[16];
	kvbm_hash ev[16];
	uint32_t nev = 0;
	assert_int_equal(kvbm_allocate_ex(mgr, 8 + 3, m, ev, &nev), KVBM_OK);
	assert_int_equal(nev, 3);
	assert_true(ev[0] == h_of(4) && ev[1] == h_of(3) && ev[2] == h_of(2));
	/* The survivors are still matchable by prefix. */
	kvbm_immutable r[2];
	uint32_t hit = 0;
	const kvbm_hash want[2] = {h_of(0), h_of(1)};
	assert_int_equal(kvbm_match(mgr, want, 2, r, &hit), KVBM_OK);
	assert_int_equal(hit, 2);
	kvbm_block_info info;
	assert_int_equal(kvbm_block_info_read(mgr, r[1].block, &info), KVBM_OK);
	assert_int_equal(info.position, 1);
	assert_true(info.parent_hash == h_of(0));
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void catalog__restores_priority_and_access_counts(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);
	kvbm_immutable r[1];
	uint32_t hit;
	const kvbm_hash h = h_of(0);

	add_chain(mgr, 0, 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(kvbm_match(mgr, &h, 1, r, &hit), KVBM_OK);
		assert_int_equal(kvbm_immutable_set_priority(mgr, r[0], 90, 0), KVBM_OK);
		assert_int_equal(kvbm_immutable_release(mgr, r[0]), KVBM_OK);
	}
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	sqlite3 *db = reader(f->path);
	assert_int_equal(query_int(db, "SELECT access_count FROM blocks WHERE state = 1"), 4);
	assert_int_equal(query_int(db, "SELECT priority FROM blocks WHERE state = 1"), 90);
	assert_true(query_int(db, "SELECT registered_at FROM blocks WHERE state = 1") > 0);
	sqlite3_close(db);
	mgr = open_ok(&f->cfg);
	assert_int_equal(kvbm_match(mgr, &h, 1, r, &hit), KVBM_OK);
	assert_int_equal(hit, 1);
	assert_int_equal(kvbm_immutable_release(mgr, r[0]), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	db = reader(f->path);
	assert_int_equal(query_int(db, "SELECT access_count FROM blocks WHERE state = 1"), 5);
	assert_int_equal(query_int(db, "SELECT priority FROM blocks WHERE state = 1"), 90);
	sqlite3_close(db);
}

static void catalog__flush_makes_rows_visible_to_readers(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.catalog_interval_ms = 60000; /* only flush can commit */
	kvbm_manager *mgr = open_ok(&f->cfg);
	sqlite3 *db = reader(f->path);

	add_chain(mgr, 0, 4);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	/* A reader sees the committed rows while the writer is live. */
	assert_int_equal(query_int(db, "SELECT count(*) FROM blocks WHERE state = 1"), 4);
	add_chain(mgr, 20, 2);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(query_int(db, "SELECT count(*) FROM blocks WHERE state = 1"), 6);
	sqlite3_close(db);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void catalog__coalesces_repeated_changes(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.catalog_interval_ms = 60000;
	kvbm_manager *mgr = open_ok(&f->cfg);
	const kvbm_hash h = h_of(0);
	kvbm_immutable r[1];
	uint32_t hit;
	kvbm_metrics before, after;

	add_chain(mgr, 0, 1);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(kvbm_metrics_read(mgr, &before), KVBM_OK);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(kvbm_match(mgr, &h, 1, r, &hit), KVBM_OK);
		assert_int_equal(kvbm_immutable_release(mgr, r[0]), KVBM_OK);
	}
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(kvbm_metrics_read(mgr, &after), KVBM_OK);
	/* 100 changes to one block, one row written. */
	assert_int_equal(after.catalog_rows_committed - before.catalog_rows_committed, 1);
	assert_true(after.catalog_rows_coalesced - before.catalog_rows_coalesced >= 99);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void expect_mismatch(struct kvbm_test_catalog *f, const char *needle)
{
	kvbm_manager *mgr = NULL;
	char err[512];

	assert_int_equal(kvbm_open_ex(&f->cfg, &mgr, err, sizeof(err)), KVBM_E_MISMATCH);
	assert_null(mgr);
	if (!strstr(err, needle)) {
		fprintf(stderr, "message '%s' lacks '%s'\n", err, needle);
		fail();
	}
}

static void catalog__refuses_other_configurations(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);

	add_chain(mgr, 0, 3);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);

	f->cfg.block_size = 8;
	expect_mismatch(f, "block_size 8 does not match catalog block_size 4");
	f->cfg.block_size = 4;
	f->cfg.block_count = 32;
	expect_mismatch(f, "block_count 32 does not match catalog block_count 16");
	f->cfg.block_count = 16;
	f->cfg.hash_salt = 0xabc;
	expect_mismatch(f, "hash_salt 0000000000000abc");
	f->cfg.hash_salt = 0;
	f->cfg.model_fingerprint = "other-weights";
	expect_mismatch(f, "model fingerprint 'other-weights' does not match");

	/* Another tier shares the file without touching G1's rows. */
	f->cfg.model_fingerprint = "llama-test-weights";
	f->cfg.tier = "G2";
	f->cfg.block_count = 4;
	mgr = open_ok(&f->cfg);
	assert_int_equal(kvbm_available_blocks(mgr), 4);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	f->cfg.tier = "G1";
	f->cfg.block_count = 16;
	mgr = open_ok(&f->cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 3);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);

	/* The explicit flag starts cold instead. */
	f->cfg.model_fingerprint = "other-weights";
	f->cfg.catalog_discard_mismatch = true;
	mgr = open_ok(&f->cfg);
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 0);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void catalog__refuses_newer_schema(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);
	sqlite3 *db = NULL;

	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	expect_mismatch(f, "schema version 99 is newer");
}

/* Block rows with no identity row for their tier (a damaged or hand-edited
 * file) say nothing about the geometry they were written for: start cold. */
static void catalog__rows_without_identity_are_not_restored(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);
	sqlite3 *db = NULL;

	add_chain(mgr, 0, 3);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DELETE FROM tiers", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	mgr = open_ok(&f->cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 0);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	db = reader(f->path);
	assert_int_equal(query_int(db, "SELECT count(*) FROM blocks WHERE state = 1"), 0);
	assert_int_equal(query_int(db, "SELECT count(*) FROM meta"), 1);
	sqlite3_close(db);
}

static void write_file(const char *path, const void *data, size_t len)
{
	const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void catalog__rejects_files_that_are_not_catalogs(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = NULL;
	char err[512];
	char junk[4096];

	memset(junk, 'x', sizeof(junk));
	write_file(f->path, junk, sizeof(junk));
	assert_int_equal(kvbm_open_ex(&f->cfg, &mgr, err, sizeof(err)), KVBM_E_CORRUPT);
	assert_non_null(strstr(err, "is not a kvbm catalog"));
	assert_null(mgr);

	/* A real catalog cut short: the header survives, the pages do not. */
	unlink(f->path);
	mgr = open_ok(&f->cfg);
	add_chain(mgr, 0, 4);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(truncate(f->path, 1024), 0);
	const kvbm_status st = kvbm_open_ex(&f->cfg, &mgr, err, sizeof(err));
	assert_true(st == KVBM_E_CORRUPT || st == KVBM_E_IO);
	assert_null(mgr);
}

static void catalog__reports_read_only_directory(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = NULL;
	char err[512];

	if (geteuid() == 0)
		skip(); /* root writes anywhere */
	assert_int_equal(chmod(f->dir, 0500), 0);
	assert_int_equal(kvbm_open_ex(&f->cfg, &mgr, err, sizeof(err)), KVBM_E_READONLY);
	assert_non_null(strstr(err, "not writable"));
	chmod(f->dir, 0700);
}

static int refuse_commits(void *user)
{
	int *calls = user;
	return ++*calls <= 2 ? 1 : 0; /* refuse the first two, then allow */
}

static void catalog__pre_commit_hook_runs_and_can_refuse(void **state)
{
	struct kvbm_test_catalog *f = *state;
	int calls = 0;
	f->cfg.pre_commit = refuse_commits;
	f->cfg.pre_commit_user = &calls;
	f->cfg.catalog_interval_ms = 60000;
	kvbm_manager *mgr = open_ok(&f->cfg);

	add_chain(mgr, 0, 2);
	assert_int_equal(kvbm_flush(mgr), KVBM_E_IO);
	kvbm_test_assert_msg(mgr, "pre-commit hook refused");
	assert_int_equal(kvbm_flush(mgr), KVBM_E_IO);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK); /* third call allowed */
	assert_int_equal(calls, 3);
	kvbm_metrics m;
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_int_equal(m.catalog_failures, 2);
	sqlite3 *db = reader(f->path);
	assert_int_equal(query_int(db, "SELECT count(*) FROM blocks WHERE state = 1"), 2);
	sqlite3_close(db);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static bool veto_odd_positions(uint32_t block, kvbm_hash hash, kvbm_hash parent,
			       uint32_t position, void *user)
{
	(void)block;
	(void)hash;
	(void)parent;
	(*(int *)user)++;
	return position % 2 == 0;
}

static void catalog__restore_validation_can_veto(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);
	int seen = 0;

	add_chain(mgr, 0, 5);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	f->cfg.restore_validate = veto_odd_positions;
	f->cfg.restore_user = &seen;
	mgr = open_ok(&f->cfg);
	assert_int_equal(seen, 5);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 3); /* positions 0, 2, 4 */
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
	/* Vetoed rows were freed durably in the open transaction. */
	sqlite3 *db = reader(f->path);
	assert_int_equal(query_int(db, "SELECT count(*) FROM blocks WHERE state = 1"), 3);
	assert_int_equal(query_int(db, "SELECT vetoed_blocks FROM meta"), 2);
	sqlite3_close(db);
}

static void catalog__damaged_rows_are_freed_not_restored(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);
	sqlite3 *db = NULL;

	add_chain(mgr, 0, 3);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	/* One id out of range, one hash claimed twice. */
	assert_int_equal(sqlite3_exec(db,
				      "INSERT INTO block_rows (id, wseq, seq_hash, evict_key, access_tick,"
				      " access_count, frequency, priority, retention)"
				      " VALUES ((1 << 32) | 999, 0, 42, 1, 0, 1, 1, 35, 0);"
				      "INSERT INTO block_rows (id, wseq, seq_hash, evict_key, access_tick,"
				      " access_count, frequency, priority, retention)"
				      " SELECT (1 << 32) | 15, 0, seq_hash, 0, 0, 1, 1, 35, 0 FROM blocks"
				      " WHERE tier = 'G1' LIMIT 1;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	mgr = open_ok(&f->cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 3);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	/* The refused rows are gone, counted as vetoed. */
	db = reader(f->path);
	assert_int_equal(query_int(db, "SELECT count(*) FROM block_rows"), 3);
	assert_int_equal(query_int(db, "SELECT vetoed_blocks FROM tiers"), 2);
	sqlite3_close(db);
}

static void catalog__discarded_close_keeps_only_committed_state(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.catalog_interval_ms = 60000;
	kvbm_manager *mgr = open_ok(&f->cfg);

	add_chain(mgr, 0, 2);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	add_chain(mgr, 10, 2); /* never committed */
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
	mgr = open_ok(&f->cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 2);
	bool present[2];
	const kvbm_hash hs[2] = {h_of(0), h_of(10)};
	assert_int_equal(kvbm_contains(mgr, hs, 2, present, NULL, NULL), KVBM_OK);
	assert_true(present[0]);
	assert_false(present[1]);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Match chain [first, first + n) whole and release it tail first. */
static void hit_chain(kvbm_manager *mgr, uint32_t first, uint32_t n)
{
	kvbm_hash hs[16];
	kvbm_immutable r[16], rev[16];
	uint32_t hit = 0;

	for (uint32_t i = 0; i < n; i++)
		hs[i] = h_of(first + i);
	assert_int_equal(kvbm_match(mgr, hs, n, r, &hit), KVBM_OK);
	assert_int_equal(hit, n);
	for (uint32_t i = 0; i < n; i++)
		rev[i] = r[n - 1 - i];
	assert_int_equal(kvbm_immutable_release_batch(mgr, rev, n), KVBM_OK);
}

/* How many of chains [0, 5), [10, 13) and [20, 28) mgr holds. */
static uint32_t held(kvbm_manager *mgr, bool *present)
{
	kvbm_hash hs[16];
	uint32_t n = 0, got = 0;

	for (uint32_t i = 0; i < 5; i++)
		hs[n++] = h_of(i);
	for (uint32_t i = 10; i < 13; i++)
		hs[n++] = h_of(i);
	for (uint32_t i = 20; i < 28; i++)
		hs[n++] = h_of(i);
	assert_int_equal(kvbm_contains(mgr, hs, n, present, &got, NULL), KVBM_OK);
	return got;
}

/* The catalog at path records policy as its tier's, and state's policy in
 * its one policy_state row (NULL: no row). */
static void expect_recorded_policy(const char *path, const char *policy, const char *state)
{
	sqlite3 *db = reader(path);

	assert_query_text(db, "SELECT eviction_policy FROM tiers", policy);
	if (state)
		assert_query_text(db, "SELECT policy FROM policy_state", state);
	else
		assert_int_equal(query_int(db, "SELECT count(*) FROM policy_state"), 0);
	sqlite3_close(db);
}

/* The policy is a runtime choice: a catalog written under LRU opens
 * under adaptive (the default), and one written under adaptive opens
 * under LRU, with every block restored and matchable, in its order; the
 * adaptive state is imported only by the adaptive policy, and dropped by
 * the first open under another. */
static void catalog__survives_a_change_of_eviction_policy(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_pool_counts c;
	bool present[16];

	/* Written under LRU, chain [0, 5) hit once. */
	f->cfg.evict_policy = KVBM_EVICT_LRU;
	kvbm_manager *mgr = open_ok(&f->cfg);
	add_chain(mgr, 0, 5);
	add_chain(mgr, 10, 3);
	hit_chain(mgr, 0, 5);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	expect_recorded_policy(f->path, "lru", NULL);

	/* Opened under adaptive: restored, matchable, then filled up. */
	f->cfg.evict_policy = KVBM_EVICT_ADAPTIVE;
	mgr = open_ok(&f->cfg);
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 8);
	assert_int_equal(c.registry, 8);
	assert_invariants(mgr);
	hit_chain(mgr, 0, 5); /* now the oldest: released before [10, 13) */
	hit_chain(mgr, 10, 3);
	add_chain(mgr, 20, 8);
	assert_int_equal(held(mgr, present), 16);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	expect_recorded_policy(f->path, "adaptive", "adaptive");

	/* Opened under LRU: everything back, in the order adaptive kept (its
	 * keys are release ticks), so the oldest release goes first. */
	f->cfg.evict_policy = KVBM_EVICT_LRU;
	mgr = open_ok(&f->cfg);
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 16);
	assert_int_equal(held(mgr, present), 16);
	assert_invariants(mgr);
	kvbm_mutable m;
	kvbm_hash ev = 0;
	uint32_t nev = 0;
	assert_int_equal(kvbm_allocate_ex(mgr, 1, &m, &ev, &nev), KVBM_OK);
	assert_int_equal(nev, 1);
	assert_int_equal(ev, h_of(4)); /* [0, 5)'s tail, released first */
	assert_int_equal(kvbm_mutable_release(mgr, m), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	/* Adaptive's state is gone: it described evictions LRU then changed,
	 * so adaptive coming back must not resume it. */
	expect_recorded_policy(f->path, "lru", NULL);

	/* And back under adaptive: the 15 survivors. */
	f->cfg.evict_policy = KVBM_EVICT_ADAPTIVE;
	mgr = open_ok(&f->cfg);
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 15);
	assert_int_equal(held(mgr, present), 15);
	assert_false(present[4]);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Evicting a block whose row committed costs one listed id in the
 * commit's reclaim row, not a row of its own. */
static void catalog__eviction_costs_about_one_row(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.catalog_interval_ms = 60000; /* only flush and waiting allocators commit */
	kvbm_manager *mgr = open_ok(&f->cfg);
	kvbm_metrics before, after;

	for (uint32_t i = 0; i < 4; i++)
		add_chain(mgr, 100 * i, 4);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(kvbm_metrics_read(mgr, &before), KVBM_OK);
	for (uint32_t round = 1; round <= 8; round++) {
		add_chain(mgr, 1000 * round, 4); /* evicts 4 committed blocks */
		assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	}
	assert_int_equal(kvbm_metrics_read(mgr, &after), KVBM_OK);
	const uint64_t evictions = after.evictions - before.evictions;
	const uint64_t rows = after.catalog_rows_committed - before.catalog_rows_committed;
	const uint64_t reclaim_rows = after.catalog_reclaim_rows - before.catalog_reclaim_rows;
	assert_int_equal(evictions, 32);
	assert_true(after.catalog_blocks_reclaimed - before.catalog_blocks_reclaimed >= 28);
	/* One row per new registration (the evicted blocks get none), and at
	 * most one reclaim row per commit: at scale, where a commit carries
	 * thousands of evictions, that is one row per eviction (bench_catalog).
	 * A registration may be written twice: when the writer refills its
	 * reserve (woken by the allocation) and takes the chain's images
	 * between its register and its release, the release dirties them
	 * again (seen once in CI, 36 rows for 32). A row per evicted block
	 * would double the count. */
	assert_true(rows >= evictions);
	assert_true(rows < evictions + evictions / 2);
	assert_true(reclaim_rows >= 1);
	assert_true(reclaim_rows <= after.catalog_commits - before.catalog_commits);
	/* Reclaim rows whose blocks were all rewritten are deleted (by the
	 * commit after the one that rewrote the last of them): every row left
	 * lists a block it still masks. */
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	sqlite3 *db = reader(f->path);
	const int64_t needed = query_int(db, "SELECT count(DISTINCT r.rec_id) FROM reclaims r,"
					     " json_each(r.blocks) j LEFT JOIN block_rows b"
					     " ON b.id = (1 << 32) | j.value"
					     " WHERE b.id IS NULL OR b.wseq < r.seq");
	assert_int_equal(query_int(db, "SELECT count(*) FROM reclaims"), needed);
	sqlite3_close(db);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A registration evicted before the writer took its row never reached the
 * file: nothing needs reclaiming, and the allocation does not wait. */
static void catalog__unwritten_registrations_need_no_reclaim(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.catalog_interval_ms = 60000;
	kvbm_manager *mgr = open_ok(&f->cfg);
	kvbm_metrics m;

	for (uint32_t i = 0; i < 4; i++)
		add_chain(mgr, 100 * i, 4); /* 16 blocks, no row written */
	add_chain(mgr, 1000, 8);           /* evicts 8 of them */
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_int_equal(m.evictions, 8);
	assert_int_equal(m.catalog_blocks_reclaimed, 0);
	assert_int_equal(m.catalog_alloc_waits, 0);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* After a crash, a block evicted (its reclaim row committed) but not yet
 * rewritten is not restored, though its old row is still in the file. */
static void catalog__reclaimed_blocks_are_not_restored_after_a_crash(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.catalog_interval_ms = 60000;
	kvbm_manager *mgr = open_ok(&f->cfg);

	for (uint32_t i = 0; i < 4; i++)
		add_chain(mgr, 100 * i, 4);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	/* The writer's reserve may hold a few victims whose rows it never
	 * wrote; every other block has a committed row. */
	sqlite3 *db = reader(f->path);
	const int64_t written = query_int(db, "SELECT count(*) FROM block_rows");
	assert_true(written >= 12);
	kvbm_mutable m[6];
	assert_int_equal(kvbm_allocate(mgr, 6, m), KVBM_OK); /* waits for the reclaim */
	/* Let the writer finish the cycle the allocation woke (it may top up
	 * its reserve once more), so the file stops changing. */
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	/* The evicted rows are still in the file, masked. */
	assert_int_equal(query_int(db, "SELECT count(*) FROM block_rows"), written);
	const int64_t live = query_int(db, "SELECT count(*) FROM blocks");
	assert_true(live <= 10);
	sqlite3_close(db);
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);

	mgr = open_ok(&f->cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, live);
	for (uint32_t i = 0; i < 6; i++)
		assert_int_equal(kvbm_test_info(mgr, m[i].block).state, KVBM_BLOCK_RESET);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	/* The open deleted the masked rows and every reclaim row. */
	db = reader(f->path);
	assert_int_equal(query_int(db, "SELECT count(*) FROM reclaims"), 0);
	assert_int_equal(query_int(db, "SELECT count(*) FROM block_rows"), (int64_t)c.inactive);
	sqlite3_close(db);
}

/* A reclaim row that cannot be read (damage, a hand edit) might have
 * listed any block: no row older than it is trusted. */
static void catalog__unreadable_reclaim_row_distrusts_older_rows(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);
	sqlite3 *db = NULL;

	add_chain(mgr, 0, 3);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	add_chain(mgr, 10, 2);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	/* Between the two chains' commits, by write sequence. */
	const int64_t newest = query_int(db, "SELECT max(wseq) FROM block_rows");
	const int64_t oldest = query_int(db, "SELECT min(wseq) FROM block_rows");
	assert_true(newest > oldest);
	char sql[200];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO reclaims (tier_id, seq, blocks) VALUES (1, %lld, '[1, 2, oops')",
		 (long long)newest);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	mgr = open_ok(&f->cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, 2);
	bool present[2];
	const kvbm_hash hs[2] = {h_of(0), h_of(10)};
	assert_int_equal(kvbm_contains(mgr, hs, 2, present, NULL, NULL), KVBM_OK);
	assert_false(present[0]);
	assert_true(present[1]);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A reader holding a snapshot pins the WAL, which then grows; once it
 * leaves, the writer's next cycles copy the WAL back and cut the file to
 * the documented bound. */
static void catalog__wal_shrinks_once_a_reader_leaves(void **state)
{
	struct kvbm_test_catalog *f = *state;
	char wal[600];
	struct stat sb;

	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	f->cfg.block_count = 65536;
	f->cfg.catalog_interval_ms = 60000;
	kvbm_manager *mgr = open_ok(&f->cfg);
	sqlite3 *db = reader(f->path);
	assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	assert_true(query_int(db, "SELECT count(*) FROM block_rows") >= 0); /* snapshot taken */
	for (uint32_t round = 0; round < 6; round++) {
		for (uint32_t i = 0; i < 4096; i++)
			add_chain(mgr, 100000 * round + 16 * i, 16);
		assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	}
	assert_int_equal(stat(wal, &sb), 0);
	const off_t pinned = sb.st_size;
	assert_true(pinned > 16 << 20); /* larger than the bound while pinned */
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	/* One commit after the reader left: its checkpoint copies everything
	 * and truncates. */
	add_chain(mgr, 900000, 1);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(stat(wal, &sb), 0);
	assert_true(sb.st_size <= 16 << 20);
	assert_true(sb.st_size < pinned);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* The reserve follows demand: idle it stays at its floor, a burst of
 * evictions raises it, and it never passes an eighth of the cache. */
static void catalog__reserve_follows_the_eviction_rate(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.block_count = 4096;
	kvbm_manager *mgr = open_ok(&f->cfg);
	kvbm_metrics m;

	for (uint32_t i = 0; i < 256; i++)
		add_chain(mgr, 16 * i, 16);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	const uint64_t idle = m.catalog_reserve_target;
	assert_true(idle >= 1 && idle <= 4096 / 8);
	uint64_t peak = idle;
	for (uint32_t i = 256; i < 256 + 4 * 256; i++) {
		add_chain(mgr, 16 * i, 16); /* every block evicts one */
		if (i % 64 == 0) {
			assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
			if (m.catalog_reserve_target > peak)
				peak = m.catalog_reserve_target;
		}
	}
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_true(m.catalog_reserve <= 4096 / 8);
	assert_true(peak <= 4096 / 8);
	assert_true(peak > idle); /* demand raised it */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A clean close persists every cached block, the writer's reserve
 * included: it is put back into the policy once the writer has stopped. */
static void catalog__clean_close_keeps_the_reserve(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.block_count = 256;
	f->cfg.catalog_interval_ms = 1; /* a writer that cycles all the time, */
	f->cfg.catalog_batch = 8;        /* woken by every few dirty rows */
	kvbm_manager *mgr = open_ok(&f->cfg);

	for (uint32_t i = 0; i < 64; i++)
		add_chain(mgr, 16 * i, 4); /* 256 blocks, then evictions of 0 */
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	for (uint32_t i = 64; i < 96; i++)
		add_chain(mgr, 16 * i, 4); /* 128 evictions: the reserve fills */
	kvbm_metrics m;
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_true(m.catalog_reserve_target > 0);
	/* Closed while the writer is still draining, as a server stops. */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	mgr = open_ok(&f->cfg);
	assert_int_equal(kvbm_test_counts(mgr).inactive, 256);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* kvbm_block_key_set: the full key of a block comes back with it after a
 * crash, once; a re-registered block does not inherit the old key. */
static void catalog__full_keys_survive_a_restart(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.catalog_interval_ms = 60000;
	kvbm_manager *mgr = open_ok(&f->cfg);
	unsigned char key[32], got[64];
	uint32_t len = 0;

	for (int i = 0; i < 32; i++)
		key[i] = (unsigned char)(0xa0 + i);
	add_chain(mgr, 0, 3);
	assert_int_equal(kvbm_block_key_set(mgr, h_of(1), key, sizeof(key)), KVBM_OK);
	assert_int_equal(kvbm_block_key_set(mgr, h_of(99), key, sizeof(key)), KVBM_E_NOTFOUND);
	assert_int_equal(kvbm_block_key_set(mgr, h_of(1), key, KVBM_KEY_MAX + 1), KVBM_E_INVAL);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);

	mgr = open_ok(&f->cfg);
	assert_int_equal(kvbm_block_key_take(mgr, h_of(0), got, sizeof(got), &len),
			 KVBM_E_NOTFOUND); /* none was recorded */
	assert_int_equal(kvbm_block_key_take(mgr, h_of(1), got, 8, &len), KVBM_E_INVAL);
	assert_int_equal(len, 32);
	assert_int_equal(kvbm_block_key_take(mgr, h_of(1), got, sizeof(got), &len), KVBM_OK);
	assert_int_equal(len, 32);
	assert_memory_equal(got, key, 32);
	assert_int_equal(kvbm_block_key_take(mgr, h_of(1), got, sizeof(got), &len),
			 KVBM_E_NOTFOUND); /* given out once */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	/* Still in the file: the clean close kept the row's key. */
	mgr = open_ok(&f->cfg);
	assert_int_equal(kvbm_block_key_take(mgr, h_of(1), got, sizeof(got), &len), KVBM_OK);
	assert_memory_equal(got, key, 32);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A later row of the same registration keeps what the first carried (the
 * key); the first row of a new registration keeps nothing of the dead row
 * its block had on disk, even one naming the same hash. */
static void catalog__first_row_of_a_registration_replaces_the_dead_one(void **state)
{
	struct kvbm_test_catalog *f = *state;
	f->cfg.block_count = 2; /* a reserve of one: the free block covers it */
	f->cfg.catalog_interval_ms = 60000;
	kvbm_manager *mgr = open_ok(&f->cfg);
	const unsigned char key[32] = {1, 2, 3};
	const kvbm_hash h = h_of(0);
	const char *const block0_key = "SELECT length(key) FROM block_rows WHERE (id & 4294967295) = 0";
	uint32_t dropped = 0, touched = 0;
	sqlite3 *db = reader(f->path);

	add_chain(mgr, 0, 1); /* block 0 */
	assert_int_equal(kvbm_block_key_set(mgr, h, key, sizeof(key)), KVBM_OK);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(query_int(db, block0_key), 32);
	assert_int_equal(kvbm_touch(mgr, &h, 1, &touched), KVBM_OK);
	assert_int_equal(touched, 1);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(query_int(db, block0_key), 32);

	assert_int_equal(kvbm_reset_inactive(mgr, &dropped), KVBM_OK);
	assert_int_equal(dropped, 1);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK); /* block 0 recorded free, behind block 1 */
	add_chain(mgr, 5, 1);                       /* block 1 */
	add_chain(mgr, 0, 1);                       /* block 0 again, the same hash */
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(query_int(db, "SELECT count(*) FROM block_rows WHERE (id & 4294967295) = 0"
				       " AND key IS NULL"),
			 1);
	sqlite3_close(db);
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);

	mgr = open_ok(&f->cfg);
	bool present = false;
	assert_int_equal(kvbm_contains(mgr, &h, 1, &present, NULL, NULL), KVBM_OK);
	assert_true(present);
	unsigned char got[64];
	uint32_t len = 0;
	assert_int_equal(kvbm_block_key_take(mgr, h, got, sizeof(got), &len), KVBM_E_NOTFOUND);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(catalog__creates_schema_and_identity),
		T(catalog__restores_registry_in_eviction_order),
		T(catalog__restores_priority_and_access_counts),
		T(catalog__survives_a_change_of_eviction_policy),
		T(catalog__flush_makes_rows_visible_to_readers),
		T(catalog__coalesces_repeated_changes),
		T(catalog__refuses_other_configurations),
		T(catalog__refuses_newer_schema),
		T(catalog__rows_without_identity_are_not_restored),
		T(catalog__rejects_files_that_are_not_catalogs),
		T(catalog__reports_read_only_directory),
		T(catalog__pre_commit_hook_runs_and_can_refuse),
		T(catalog__restore_validation_can_veto),
		T(catalog__damaged_rows_are_freed_not_restored),
		T(catalog__discarded_close_keeps_only_committed_state),
		T(catalog__eviction_costs_about_one_row),
		T(catalog__unwritten_registrations_need_no_reclaim),
		T(catalog__reclaimed_blocks_are_not_restored_after_a_crash),
		T(catalog__unreadable_reclaim_row_distrusts_older_rows),
		T(catalog__wal_shrinks_once_a_reader_leaves),
		T(catalog__reserve_follows_the_eviction_rate),
		T(catalog__clean_close_keeps_the_reserve),
		T(catalog__full_keys_survive_a_restart),
		T(catalog__first_row_of_a_registration_replaces_the_dead_one),
	};
	return cmocka_run_group_tests_name("catalog", tests, NULL, NULL);
}
