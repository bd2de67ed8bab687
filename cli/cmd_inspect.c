/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The read commands info, stats, blocks, show and sql (top and lineage
 * walk rows in memory, in cmd_top.c and cmd_lineage.c). Each opens the
 * catalog read-only (a WAL reader never blocks the writer of a running
 * server), decides which rows are registered as the library does
 * (registered.c), runs one or two queries on rowid ranges of block_rows,
 * and renders them as a table or JSON. None joins a view to itself: each
 * step would scan block_rows again.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

#define HEX(col) "printf('%016x', " col ")"

/* Parse options, open the catalog read-only (flags: CLI_DB_*); NULL with
 * *rc set on failure. */
static sqlite3 *start(struct cli *cli, int argc, char **argv, struct opt *opts, char **pos,
		      int max_pos, int *n_pos, unsigned flags, int *rc)
{
	const int r = cli_options(cli, argc, argv, opts, pos, max_pos, n_pos);

	if (r != 0) {
		*rc = r > 0 ? EXIT_OK : EXIT_USAGE;
		return NULL;
	}
	sqlite3 *db = cli_open_db(cli, flags);
	if (!db)
		*rc = cli->db ? EXIT_ERR : EXIT_USAGE;
	return db;
}

/* Per tier, as the TEMP table kv_presence(tier, registered, in_other_tiers):
 * its registered blocks, and how many of them hold a hash another tier of
 * the file also holds (a hierarchy keeps copies of a block in several
 * tiers). One rowid-range scan per tier; with several tiers, one sort of
 * the registered rows by hash (a window partition) on top, so O(n log n).
 * A file of one tier skips the sort: nothing can be shared. */
static int cross_tier(const struct cli *cli, sqlite3 *db)
{
	int rc = cli_registered(cli, db, 0);

	if (rc != EXIT_OK)
		return rc;
	const char *sql =
		"CREATE TEMP TABLE kv_presence AS SELECT t.name AS tier,"
		" (SELECT count(*) FROM block_rows b WHERE " CLI_TIER_RANGE("t", "b")
		" AND " CLI_LIVE("t", "b") ") AS registered, 0 AS in_other_tiers FROM kv_tier t;"
		"CREATE TEMP TABLE kv_shared AS SELECT tier_id, sum(lo <> hi) AS n FROM"
		" (SELECT t.tier_id, min(t.tier_id) OVER w AS lo, max(t.tier_id) OVER w AS hi"
		"  FROM kv_tier t JOIN block_rows b ON " CLI_TIER_RANGE("t", "b")
		"  WHERE (SELECT count(*) FROM kv_tier) > 1 AND " CLI_LIVE("t", "b")
		"  WINDOW w AS (PARTITION BY b.seq_hash))"
		" GROUP BY tier_id;"
		"UPDATE kv_presence SET in_other_tiers = coalesce((SELECT s.n FROM kv_shared s"
		" JOIN kv_tier t USING (tier_id) WHERE t.name = kv_presence.tier), 0);";
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		rc = cli_error(cli, "cannot count blocks of %s across tiers: %s", cli->db,
			       sqlite3_errmsg(db));
	return rc;
}

int cmd_info(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"table", false, NULL}, {NULL, false, NULL}};
	int rc, n;
	sqlite3 *db = start(cli, argc, argv, opts, NULL, 0, &n, 0, &rc);

	if (!db)
		return rc;
	/* Twenty columns make a table wider than any terminal: one
	 * "key: value" line each, unless --table asks for the table. */
	cli->records = opts[0].value == NULL;
	if ((rc = cross_tier(cli, db)) != EXIT_OK) {
		sqlite3_close(db);
		return rc;
	}
	rc = cli_query(cli, db,
		       "SELECT h.tier, m.block_size, m.block_count, m.hash_algorithm,"
		       " m.hash_encoding, m.hash_seed, " HEX("m.hash_salt") " AS hash_salt,"
		       " m.model_fingerprint, m.eviction_policy,"
		       " datetime(m.created_at / 1000, 'unixepoch') AS created,"
		       " h.schema_version, h.file_schema_version, h.incarnation, h.shutdown,"
		       " h.opened, h.last_commit, h.last_clean_shutdown, h.restored_blocks,"
		       " h.vetoed_blocks, h.commits, h.failures, p.registered AS registered_blocks,"
		       " p.in_other_tiers"
		       " FROM catalog_health h JOIN meta m USING (tier) JOIN kv_presence p USING (tier)"
		       " ORDER BY h.tier",
		       false, NULL);
	sqlite3_close(db);
	return rc;
}

int cmd_stats(struct cli *cli, int argc, char **argv)
{
	int rc, n;
	sqlite3 *db = start(cli, argc, argv, NULL, NULL, 0, &n, 0, &rc);

	if (!db)
		return rc;
	if ((rc = cross_tier(cli, db)) != EXIT_OK)
		goto out;
#define STAT(name) "(SELECT value FROM stats s WHERE s.tier = m.tier AND s.name = '" name "')"
	rc = cli_query(cli, db,
		       "SELECT m.tier, m.block_count, c.registered, m.block_count - c.registered AS free,"
		       " c.in_other_tiers,"
		       " " STAT("allocations") " AS allocations,"
		       " " STAT("evictions") " AS evictions,"
		       " " STAT("registrations") " AS registrations,"
		       " " STAT("match_hashes_requested") " AS match_requested,"
		       " " STAT("match_blocks_returned") " AS match_hits,"
		       " round(1.0 * " STAT("match_blocks_returned") " / nullif(" STAT(
			       "match_hashes_requested") ", 0), 4) AS match_hit_rate,"
		       " " STAT("catalog_commits") " AS commits,"
		       " " STAT("catalog_failures") " AS failures"
		       " FROM meta m JOIN kv_presence c USING (tier) ORDER BY m.tier",
		       false, NULL);
#undef STAT
out:
	sqlite3_close(db);
	return rc;
}

/* Columns of one block: t is kv_tier, b a block_rows row or NULL (free). */
#define BLOCK_COLUMNS(id)                                                                  \
	"t.name AS tier, " id " AS block_id,"                                               \
	" CASE WHEN b.id IS NULL THEN 'free' ELSE 'registered' END AS state,"               \
	" CASE WHEN b.seq_hash IS NULL THEN NULL ELSE " HEX("b.seq_hash") " END AS hash,"   \
	" CASE WHEN b.parent_hash IS NULL THEN NULL ELSE " HEX("b.parent_hash") " END AS parent," \
	" b.position, b.access_count, b.frequency, b.priority, b.evict_key,"               \
	" datetime(b.registered_at / 1000, 'unixepoch') AS registered,"                    \
	" datetime(b.last_access_at / 1000, 'unixepoch') AS last_access"

/* The first `limit` free blocks, tiers by name, ids ascending, into the
 * TEMP table kv_free(n, tier_id, block_id): a free block has no row (or a
 * masked one), so these are the ids below block_count without a
 * registered row. One walk per tier that stops at the limit, with a rowid
 * lookup per id: the LIMIT, not the tier's size, bounds the work. */
static int list_free(const struct cli *cli, sqlite3 *db, const char *tier, uint32_t limit)
{
	sqlite3_stmt *tiers = NULL, *fill = NULL;
	int rc = EXIT_ERR, step = SQLITE_DONE;
	long long left = limit;

	if (sqlite3_exec(db,
			 "CREATE TEMP TABLE kv_free (n INTEGER PRIMARY KEY, tier_id INTEGER NOT NULL,"
			 " block_id INTEGER NOT NULL)",
			 NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
			       "SELECT tier_id, block_count FROM kv_tier WHERE ?1 = '' OR name = ?1"
			       " ORDER BY name",
			       -1, &tiers, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
			       "WITH RECURSIVE f(i) AS (SELECT 0 WHERE ?2 > 0"
			       " UNION ALL SELECT i + 1 FROM f WHERE i + 1 < ?2)"
			       " INSERT INTO kv_free (tier_id, block_id) SELECT ?1, i FROM f"
			       " WHERE NOT EXISTS (SELECT 1 FROM kv_tier t JOIN block_rows b"
			       " ON b.id = (t.tier_id << 32) | f.i WHERE t.tier_id = ?1"
			       " AND " CLI_LIVE("t", "b") ") LIMIT ?3",
			       -1, &fill, NULL) != SQLITE_OK) {
		cli_error(cli, "cannot list free blocks of %s: %s", cli->db, sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_text(tiers, 1, tier, -1, SQLITE_STATIC);
	while (left > 0 && (step = sqlite3_step(tiers)) == SQLITE_ROW) {
		sqlite3_bind_int64(fill, 1, sqlite3_column_int64(tiers, 0));
		sqlite3_bind_int64(fill, 2, sqlite3_column_int64(tiers, 1));
		sqlite3_bind_int64(fill, 3, left);
		if (sqlite3_step(fill) != SQLITE_DONE) {
			cli_error(cli, "cannot list free blocks of %s: %s", cli->db, sqlite3_errmsg(db));
			goto out;
		}
		sqlite3_reset(fill);
		left -= sqlite3_changes(db);
	}
	if (step != SQLITE_DONE && step != SQLITE_ROW) {
		cli_error(cli, "cannot list free blocks of %s: %s", cli->db, sqlite3_errmsg(db));
		goto out;
	}
	rc = EXIT_OK;
out:
	sqlite3_finalize(fill);
	sqlite3_finalize(tiers);
	return rc;
}

int cmd_blocks(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"tier", true, NULL},  {"state", true, NULL}, {"hash", true, NULL},
			     {"limit", true, NULL}, {"order", true, NULL}, {NULL, false, NULL}};
	int rc, n;
	uint32_t limit = 100;
	kvbm_hash hash = 0;
	char hash_text[24] = "", limit_text[16], sql[2048];
	sqlite3 *db = start(cli, argc, argv, opts, NULL, 0, &n, 0, &rc);

	if (!db)
		return rc;
	const char *state = opts[1].value ? opts[1].value : "registered";
	const char *order = opts[4].value ? opts[4].value : "id";
	rc = EXIT_USAGE;
	if (strcmp(state, "registered") != 0 && strcmp(state, "free") != 0)
		cli_usage(cli, "--state must be registered or free, not '%s'", state);
	else if (opts[3].value && !cli_parse_u32(opts[3].value, &limit))
		cli_usage(cli, "--limit needs a number, not '%s'", opts[3].value);
	else if (opts[2].value && !cli_parse_hash(opts[2].value, &hash))
		rc = cli_error(cli, "'%s' is not a hash (1 to 16 hex digits)", opts[2].value);
	else if (strcmp(order, "evict") && strcmp(order, "access") && strcmp(order, "id"))
		cli_usage(cli, "--order must be evict, access or id, not '%s'", order);
	else if (*state == 'f' && opts[2].value)
		cli_usage(cli, "--hash lists registered blocks: a free block holds no hash");
	else
		rc = EXIT_OK;
	if (rc != EXIT_OK || (rc = cli_registered(cli, db, 0)) != EXIT_OK)
		goto out;
	if (opts[2].value)
		snprintf(hash_text, sizeof(hash_text), "%lld", (long long)hash);
	snprintf(limit_text, sizeof(limit_text), "%u", limit);
	if (*state == 'f') {
		if ((rc = list_free(cli, db, opts[0].value ? opts[0].value : "", limit)) != EXIT_OK)
			goto out;
		snprintf(sql, sizeof(sql),
			 "SELECT t.name AS tier, f.block_id, 'free' AS state, NULL AS hash,"
			 " NULL AS parent, NULL AS position, NULL AS access_count, NULL AS frequency,"
			 " NULL AS priority, NULL AS evict_key, NULL AS registered, NULL AS last_access"
			 " FROM kv_free f JOIN kv_tier t USING (tier_id) ORDER BY f.n");
	} else {
		snprintf(sql, sizeof(sql),
			 "SELECT %s FROM kv_tier t JOIN block_rows b ON " CLI_TIER_RANGE("t", "b")
			 " WHERE (?1 = '' OR t.name = ?1)"
			 " AND (?3 = '' OR b.seq_hash = CAST(?3 AS INTEGER)) AND " CLI_LIVE("t", "b")
			 " ORDER BY %s LIMIT CAST(?4 AS INTEGER)",
			 BLOCK_COLUMNS("b.id & 4294967295"),
			 strcmp(order, "evict") == 0	? "b.evict_key, t.name, b.id"
			 : strcmp(order, "access") == 0 ? "b.access_count DESC, t.name, b.id"
							: "t.name, b.id");
	}
	rc = cli_query(cli, db, sql, false, opts[0].value ? opts[0].value : "", state, hash_text,
		       limit_text, NULL);
out:
	sqlite3_close(db);
	return rc;
}

/* Why no registered block holds hash: a reclaimed row that did, if any. */
static void explain_missing(const struct cli *cli, sqlite3 *db, const char *key,
			    const char *tier, const char *shown)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db,
			       "SELECT t.name, b.id & 4294967295 FROM kv_tier t JOIN block_rows b ON "
			       CLI_TIER_RANGE("t", "b") " WHERE (?1 = '' OR t.name = ?1)"
			       " AND b.seq_hash = CAST(?2 AS INTEGER) ORDER BY t.name, b.id LIMIT 1",
			       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, tier, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	}
	if (st && sqlite3_step(st) == SQLITE_ROW)
		cli_error(cli, "no registered block holds %s (block %lld of tier %s held it and was"
			  " evicted)", shown, sqlite3_column_int64(st, 1),
			  (const char *)sqlite3_column_text(st, 0));
	else
		cli_error(cli, "no block holds %s in %s", shown, cli->db);
	sqlite3_finalize(st);
}

int cmd_show(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"block", true, NULL}, {"tier", true, NULL}, {NULL, false, NULL}};
	char *pos[1];
	int rc, n;
	kvbm_hash hash = 0;
	uint32_t id;
	char key[32], sql[2048];
	sqlite3_stmt *st = NULL;
	sqlite3 *db = start(cli, argc, argv, opts, pos, 1, &n, 0, &rc);

	if (!db)
		return rc;
	if ((n == 1) == (opts[0].value != NULL)) {
		rc = cli_usage(cli, "give either a HASH or --block ID");
		goto out;
	} else if (n == 1 && !cli_parse_hash(pos[0], &hash)) {
		rc = cli_error(cli, "'%s' is not a hash (1 to 16 hex digits)", pos[0]);
		goto out;
	} else if (opts[0].value && !cli_parse_u32(opts[0].value, &id)) {
		rc = cli_usage(cli, "--block needs a block id, not '%s'", opts[0].value);
		goto out;
	}
	if ((rc = cli_registered(cli, db, 0)) != EXIT_OK)
		goto out;
	const char *tier = opts[1].value ? opts[1].value : "";
	if (n == 1) {
		/* No index on seq_hash (the writer would pay for it): one scan. */
		snprintf(key, sizeof(key), "%lld", (long long)hash);
		snprintf(sql, sizeof(sql),
			 "SELECT %s FROM kv_tier t JOIN block_rows b ON " CLI_TIER_RANGE("t", "b")
			 " WHERE (?1 = '' OR t.name = ?1) AND b.seq_hash = CAST(?2 AS INTEGER)"
			 " AND " CLI_LIVE("t", "b") " ORDER BY t.name, b.id",
			 BLOCK_COLUMNS("b.id & 4294967295"));
	} else {
		/* A block below block_count with no registered row is free. */
		snprintf(key, sizeof(key), "%u", id);
		snprintf(sql, sizeof(sql),
			 "SELECT %s FROM kv_tier t LEFT JOIN block_rows b"
			 " ON b.id = (t.tier_id << 32) | CAST(?2 AS INTEGER) AND " CLI_LIVE("t", "b")
			 " WHERE (?1 = '' OR t.name = ?1) AND CAST(?2 AS INTEGER) < t.block_count"
			 " ORDER BY t.name",
			 BLOCK_COLUMNS("CAST(?2 AS INTEGER)"));
	}
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		rc = cli_error(cli, "query failed: %s", sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_text(st, 1, tier, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		char shown[CLI_HASH_TEXT];
		snprintf(shown, sizeof(shown), "%016llx", (unsigned long long)hash);
		if (n == 1)
			explain_missing(cli, db, key, tier, shown);
		else
			cli_error(cli, "no block %s in %s%s%s", opts[0].value, cli->db,
				  *tier ? " tier " : "", tier);
		rc = EXIT_ERR;
	} else {
		sqlite3_reset(st);
		rc = cli_render(cli, st, false);
	}
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

int cmd_sql(struct cli *cli, int argc, char **argv)
{
	char *pos[1];
	int rc, n;
	sqlite3_stmt *st = NULL;
	const char *tail = NULL;
	sqlite3 *db = start(cli, argc, argv, NULL, pos, 1, &n, CLI_DB_OLDER, &rc);

	if (!db)
		return rc;
	if (n != 1) {
		rc = cli_usage(cli, "give one SQL statement");
	} else if (sqlite3_prepare_v2(db, pos[0], -1, &st, &tail) != SQLITE_OK) {
		rc = cli_error(cli, "%s", sqlite3_errmsg(db));
	} else if (!st || !sqlite3_stmt_readonly(st)) {
		rc = cli_error(cli, "only read-only statements are allowed");
	} else if (tail && strspn(tail, " \t\r\n;") != strlen(tail)) {
		rc = cli_error(cli, "give one statement at a time");
	} else {
		rc = cli_render(cli, st, false);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}
