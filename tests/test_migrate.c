/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Migration from the catalogs older libraries wrote. tests/data holds a v2
 * catalog written by the schema-v2 library (catalog-v2.sql) and a v3 one
 * written by the schema-v3 library (catalog-v3.sql); each test
 * loads it into a fresh file, reads what that file held with plain SQL
 * against the v2 tables, opens it with today's library, and checks that
 * exactly those blocks come back: the same hashes in the same blocks, the
 * same lineage, counts and priorities, and the same eviction order.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

struct row {
	uint32_t block;
	kvbm_hash hash, parent;
	int64_t position, access_count, frequency, priority, evict_key;
};

struct tier {
	const char *name;
	uint32_t block_count;
	kvbm_evict_policy policy;
	struct row rows[64];
	size_t n;
};

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	const long len = ftell(f);
	assert_true(len > 0);
	rewind(f);
	char *text = malloc((size_t)len + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	text[len] = '\0';
	fclose(f);
	return text;
}

/* A file of the given version at path, from the fixtures; version 1 is the
 * v2 fixture without 002's views. */
static void load_fixture(const char *path, int version)
{
	const char *data = getenv("KVBM_TEST_DATA");
	char fixture[1024];
	sqlite3 *db = NULL;

	assert_non_null(data);
	snprintf(fixture, sizeof(fixture), "%s/catalog-v%d.sql", data, version < 2 ? 2 : version);
	char *sql = read_text(fixture);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	free(sql);
	if (version == 1)
		assert_int_equal(sqlite3_exec(db,
					      "DROP VIEW catalog_health; DROP VIEW chain_depth_histogram;"
					      "DROP VIEW hot_prefixes; DROP VIEW block_roots;"
					      "DROP VIEW prefix_edges; DROP VIEW hot_blocks;"
					      "DROP VIEW eviction_order; DROP VIEW pool_summary;"
					      "UPDATE meta SET schema_version = 1; PRAGMA user_version = 1;",
					      NULL, NULL, NULL),
				 SQLITE_OK);
	sqlite3_close(db);
}

/* The registered rows of a tier in eviction order, as either schema shows
 * them through `blocks` (a table in v2, a view in v3). */
static void read_rows(const char *path, struct tier *t)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT block_id, seq_hash, coalesce(parent_hash, 0),"
					    " coalesce(position, -1), access_count, frequency, priority,"
					    " evict_key FROM blocks WHERE tier = ?1 AND state = 1"
					    " ORDER BY evict_key, block_id",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
	t->n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		assert_true(t->n < 64);
		struct row *r = &t->rows[t->n++];
		r->block = (uint32_t)sqlite3_column_int64(st, 0);
		r->hash = (kvbm_hash)sqlite3_column_int64(st, 1);
		r->parent = (kvbm_hash)sqlite3_column_int64(st, 2);
		r->position = sqlite3_column_int64(st, 3);
		r->access_count = sqlite3_column_int64(st, 4);
		r->frequency = sqlite3_column_int64(st, 5);
		r->priority = sqlite3_column_int64(st, 6);
		r->evict_key = sqlite3_column_int64(st, 7);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static kvbm_config tier_config(const char *path, const struct tier *t)
{
	kvbm_config cfg;

	kvbm_config_init(&cfg);
	cfg.block_count = t->block_count;
	cfg.block_size = 16;
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	cfg.tier = t->name;
	cfg.evict_policy = t->policy;
	cfg.model_fingerprint = "fixture-model";
	return cfg;
}

/* Open the tier (migrating the file), compare with what v2 held, and
 * check the eviction order by evicting everything. */
static void check_tier(const char *path, struct tier *t)
{
	struct tier want = *t, got = *t;

	read_rows(path, &want); /* before the open: what the old file holds */
	assert_true(want.n > 0);
	kvbm_config cfg = tier_config(path, t);
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, want.n);
	assert_int_equal(c.registry, want.n);
	assert_invariants(mgr);

	/* Every hash is matchable. */
	for (size_t i = 0; i < want.n; i++) {
		bool present = false;
		assert_int_equal(kvbm_contains(mgr, &want.rows[i].hash, 1, &present, NULL, NULL),
				 KVBM_OK);
		assert_true(present);
	}
	/* The migrated rows read back through the v3 views unchanged. */
	read_rows(path, &got);
	assert_int_equal(got.n, want.n);
	assert_memory_equal(got.rows, want.rows, want.n * sizeof(want.rows[0]));

	/* Free blocks go first, then every restored block is evicted holding
	 * the hash its row named (the block handed out is the one evicted);
	 * under LRU in exactly the v2 eviction order. */
	const uint32_t n_free = t->block_count - (uint32_t)want.n;
	kvbm_mutable m[64];
	bool seen[64] = {false};
	if (n_free)
		assert_int_equal(kvbm_allocate(mgr, n_free, m), KVBM_OK);
	for (size_t i = 0; i < want.n; i++) {
		kvbm_hash ev = 0;
		uint32_t n_ev = 0;
		assert_int_equal(kvbm_allocate_ex(mgr, 1, &m[0], &ev, &n_ev), KVBM_OK);
		assert_int_equal(n_ev, 1);
		size_t k = 0;
		while (k < want.n && want.rows[k].hash != ev)
			k++;
		assert_true(k < want.n);
		assert_false(seen[k]);
		seen[k] = true;
		assert_int_equal(m[0].block, want.rows[k].block);
		if (t->policy == KVBM_EVICT_LRU)
			assert_int_equal(k, i);
	}
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
}

/* tier_presence (schema 4) on a migrated copy of the fixture agrees with a
 * plain count over blocks (the check above evicted the first copy). */
static void check_presence(const char *dir, int version)
{
	char path[600], err[256];
	int from = -1, to = -1;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	snprintf(path, sizeof(path), "%s/presence-v%d.db", dir, version);
	load_fixture(path, version);
	assert_int_equal(kvbm_catalog_migrate(path, 0, &from, &to, err, sizeof(err)), KVBM_OK);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT p.tier, p.registered, p.in_other_tiers,"
					    " (SELECT count(*) FROM blocks b WHERE b.tier = p.tier),"
					    " (SELECT count(*) FROM blocks b WHERE b.tier = p.tier AND"
					    "  EXISTS (SELECT 1 FROM blocks o WHERE o.seq_hash = b.seq_hash"
					    "  AND o.tier <> b.tier)) FROM tier_presence p",
					    -1, &st, NULL),
			 SQLITE_OK);
	int tiers = 0, shared = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		tiers++;
		assert_int_equal(sqlite3_column_int(st, 1), sqlite3_column_int(st, 3));
		assert_int_equal(sqlite3_column_int(st, 2), sqlite3_column_int(st, 4));
		shared += sqlite3_column_int(st, 2);
	}
	assert_int_equal(tiers, 2);
	if (version == 3)
		assert_true(shared > 0); /* the v3 fixture has a chain in both tiers */
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void migrate_from(int version)
{
	char *dir = kvbm_test_tmpdir("migrate");
	char path[512];
	struct tier g1 = {.name = "G1", .block_count = 64, .policy = KVBM_EVICT_LRU};
	struct tier g2 = {.name = "G2", .block_count = 48, .policy = KVBM_EVICT_PRIORITY};

	snprintf(path, sizeof(path), "%s/v%d.db", dir, version);
	load_fixture(path, version);
	check_tier(path, &g2); /* the first open migrates the whole file */
	check_tier(path, &g1);

	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT (SELECT user_version FROM pragma_user_version),"
						" (SELECT min(schema_version) FROM meta),"
						" (SELECT count(*) FROM tiers)",
					    -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), KVBM_SCHEMA_VERSION);
	assert_int_equal(sqlite3_column_int(st, 1), KVBM_SCHEMA_VERSION);
	assert_int_equal(sqlite3_column_int(st, 2), 2);
	sqlite3_finalize(st);
	sqlite3_close(db);
	check_presence(dir, version);
	kvbm_test_rmdir(dir);
	free(dir);
}

static void migrate__v3_catalog_restores_exactly_what_it_held(void **state)
{
	(void)state;
	migrate_from(3);
}

static void migrate__v2_catalog_restores_exactly_what_it_held(void **state)
{
	(void)state;
	migrate_from(2);
}

static void migrate__v1_catalog_restores_exactly_what_it_held(void **state)
{
	(void)state;
	migrate_from(1);
}

/* The standalone migration (kvbm-catalog migrate) leaves a file the
 * library then opens without migrating again. */
static void migrate__tool_migration_then_open(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("migrate");
	char path[512], err[256];
	int from = -1, to = -1;
	struct tier g1 = {.name = "G1", .block_count = 64, .policy = KVBM_EVICT_LRU};

	snprintf(path, sizeof(path), "%s/tool.db", dir);
	load_fixture(path, 2);
	struct tier before = g1;
	read_rows(path, &before);
	assert_int_equal(kvbm_catalog_migrate(path, 0, &from, &to, err, sizeof(err)), KVBM_OK);
	assert_int_equal(from, 2);
	assert_int_equal(to, KVBM_SCHEMA_VERSION);
	struct tier after = g1;
	read_rows(path, &after);
	assert_int_equal(after.n, before.n);
	assert_memory_equal(after.rows, before.rows, before.n * sizeof(before.rows[0]));
	kvbm_config cfg = tier_config(path, &g1);
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.inactive, before.n);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(migrate__v3_catalog_restores_exactly_what_it_held),
		cmocka_unit_test(migrate__v2_catalog_restores_exactly_what_it_held),
		cmocka_unit_test(migrate__v1_catalog_restores_exactly_what_it_held),
		cmocka_unit_test(migrate__tool_migration_then_open),
	};
	return cmocka_run_group_tests_name("migrate", tests, NULL, NULL);
}
