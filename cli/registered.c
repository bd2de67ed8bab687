/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which block rows of a schema-3 catalog are registered, decided exactly as
 * the library's restore decides it, in TEMP tables the read commands query.
 * A row is registered unless its write sequence is negative, a reclaim row
 * of its tier with a higher seq lists it, or an unreadable reclaim row of
 * its tier has a higher seq (the library then trusts no older row). The
 * `blocks` view answers the same question in SQL (json_valid, json_each);
 * the CLI parses reclaim rows with the restore's own parser
 * (src/catalog/reclaim_text.h) and indexes the result for its walks.
 *
 * TEMP tables live in the connection's own temporary database, so all of
 * this works on a read-only connection and leaves the file untouched.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "../src/catalog/reclaim_text.h"

/* SQL function kvbm_reclaim_ok(blocks): 1 when the restore can read it. */
static void reclaim_ok_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	const bool ok = sqlite3_value_type(argv[0]) == SQLITE_TEXT &&
			kvbm__reclaim_parse(sqlite3_value_text(argv[0]), NULL, NULL);
	sqlite3_result_int(ctx, ok);
}

struct mask_add {
	sqlite3_stmt *st;
	int64_t block_count;
	int rc;
};

static void mask_add(uint64_t id, void *user)
{
	struct mask_add *m = user;

	/* The restore ignores ids outside the tier; so does the mask. */
	if (m->rc != SQLITE_OK || (int64_t)id >= m->block_count)
		return;
	sqlite3_bind_int64(m->st, 2, (sqlite3_int64)id);
	const int rc = sqlite3_step(m->st);
	sqlite3_reset(m->st);
	if (rc != SQLITE_DONE)
		m->rc = rc;
}

static int exec(const struct cli *cli, sqlite3 *db, const char *sql)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return cli_error(cli, "cannot read %s: %s", cli->db, sqlite3_errmsg(db));
	return EXIT_OK;
}

/* kv_tier and kv_mask from tiers and reclaims. */
static int build_mask(const struct cli *cli, sqlite3 *db)
{
	sqlite3_stmt *rd = NULL, *bad = NULL;
	struct mask_add m = {.rc = SQLITE_OK};
	int rc;

	if ((rc = exec(cli, db,
		       "CREATE TEMP TABLE kv_tier (tier_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
		       " block_count INTEGER NOT NULL, bad_seq INTEGER NOT NULL);"
		       "INSERT INTO kv_tier SELECT tier_id, name,"
		       " max(0, min(block_count, 4294967296)), 0 FROM tiers;"
		       "CREATE TEMP TABLE kv_mask (tier_id INTEGER NOT NULL, block_id INTEGER NOT NULL,"
		       " seq INTEGER NOT NULL, PRIMARY KEY (tier_id, block_id)) WITHOUT ROWID;")) !=
	    EXIT_OK)
		return rc;
	rc = EXIT_ERR;
	if (sqlite3_prepare_v2(db,
			       "SELECT r.tier_id, r.seq, r.blocks, t.block_count FROM reclaims r"
			       " JOIN kv_tier t USING (tier_id) WHERE r.seq > 0",
			       -1, &rd, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
			       "INSERT INTO kv_mask VALUES (?1, ?2, ?3) ON CONFLICT DO UPDATE"
			       " SET seq = max(seq, excluded.seq)",
			       -1, &m.st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE kv_tier SET bad_seq = max(bad_seq, ?2) WHERE tier_id = ?1",
			       -1, &bad, NULL) != SQLITE_OK) {
		cli_error(cli, "cannot read reclaims of %s: %s", cli->db, sqlite3_errmsg(db));
		goto out;
	}
	int step;
	while ((step = sqlite3_step(rd)) == SQLITE_ROW && m.rc == SQLITE_OK) {
		const sqlite3_int64 tier = sqlite3_column_int64(rd, 0);
		const sqlite3_int64 seq = sqlite3_column_int64(rd, 1);
		m.block_count = sqlite3_column_int64(rd, 3);
		sqlite3_bind_int64(m.st, 1, tier);
		sqlite3_bind_int64(m.st, 3, seq);
		const bool text = sqlite3_column_type(rd, 2) == SQLITE_TEXT;
		/* Ids listed before a parse error are in the mask too; the
		 * tier-wide bad_seq covers them anyway. */
		if (!text || !kvbm__reclaim_parse(sqlite3_column_text(rd, 2), mask_add, &m)) {
			sqlite3_bind_int64(bad, 1, tier);
			sqlite3_bind_int64(bad, 2, seq);
			if (sqlite3_step(bad) != SQLITE_DONE)
				m.rc = sqlite3_errcode(db);
			sqlite3_reset(bad);
		}
	}
	if (m.rc != SQLITE_OK || (step != SQLITE_DONE && step != SQLITE_ROW)) {
		cli_error(cli, "cannot read reclaims of %s: %s", cli->db, sqlite3_errmsg(db));
		goto out;
	}
	rc = EXIT_OK;
out:
	sqlite3_finalize(bad);
	sqlite3_finalize(m.st);
	sqlite3_finalize(rd);
	return rc;
}

int cli_registered(const struct cli *cli, sqlite3 *db, unsigned what)
{
	int rc;

	/* Large catalogs: keep the temporary B-trees in memory up to 256 MiB
	 * before they spill to a temporary file. */
	sqlite3_exec(db, "PRAGMA temp.cache_size = -262144", NULL, NULL, NULL);
	if (sqlite3_create_function(db, "kvbm_reclaim_ok", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
				    NULL, reclaim_ok_fn, NULL, NULL) != SQLITE_OK)
		return cli_error(cli, "cannot register functions: %s", sqlite3_errmsg(db));
	if ((rc = build_mask(cli, db)) != EXIT_OK)
		return rc;
	if (!(what & CLI_ROWS))
		return EXIT_OK;
	/* One rowid-range scan per tier; rows of unknown tiers stay out. */
	rc = exec(cli, db,
		  "CREATE TEMP TABLE kv_rows (id INTEGER PRIMARY KEY, tier_id INTEGER NOT NULL,"
		  " block_id INTEGER NOT NULL, seq_hash, parent_hash, position, access_count,"
		  " live INTEGER NOT NULL);"
		  "INSERT INTO kv_rows SELECT b.id, t.tier_id, b.id & 4294967295, b.seq_hash,"
		  " b.parent_hash, b.position, b.access_count, " CLI_LIVE("t", "b") " FROM kv_tier t"
		  " JOIN block_rows b ON b.id BETWEEN t.tier_id << 32 AND (t.tier_id << 32) | 4294967295"
		  " ORDER BY b.id");
	if (rc == EXIT_OK && (what & CLI_BY_HASH))
		/* live included: "is the parent registered" reads the index only. */
		rc = exec(cli, db,
			  "CREATE INDEX temp.kv_rows_hash ON kv_rows (tier_id, seq_hash, live)");
	return rc;
}
