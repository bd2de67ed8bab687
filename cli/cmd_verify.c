/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvbm-catalog verify: SQLite's integrity check plus the catalog's own
 * invariants. Each check is one query whose rows are problems; a problem
 * names the rows involved. Chains whose parent row is gone are reported as
 * warnings, not problems: an eviction policy may drop a parent before its
 * child, and a restart simply cannot match past the gap.
 */
#include <string.h>

#include "cmd.h"

struct check {
	const char *name;
	bool warning; /* true: reported, but does not fail verify */
	const char *sql; /* each row: one text column describing a problem */
};

#define TIER_NAME(id) "coalesce((SELECT name FROM tiers WHERE tier_id = " id "), " id ")"

/* Every check is a scan, a rowid range per tier, or lookups in the TEMP
 * rows and their indexes (registered.c): nothing grows faster than
 * n log n in the number of rows. */
static const struct check checks[] = {
	{"identity", false,
	 "SELECT 'tier ' || name || ': block_size ' || block_size || ' is not a power of two in"
	 " 1..1024' FROM tiers WHERE typeof(block_size) != 'integer' OR block_size < 1"
	 " OR block_size > 1024 OR (block_size & (block_size - 1)) != 0"
	 " UNION ALL SELECT 'tier ' || name || ': block_count ' || block_count || ' is not in"
	 " 1..4294967295' FROM tiers WHERE typeof(block_count) != 'integer' OR block_count < 1"
	 " OR block_count > 4294967295"
	 " UNION ALL SELECT 'tier ' || name || ': tier_id ' || tier_id || ' is not in"
	 " 1..2147483647' FROM tiers WHERE tier_id < 1 OR tier_id > 2147483647"
	 " UNION ALL SELECT 'tier ' || name || ': write_seq ' || write_seq || ' is negative'"
	 " FROM tiers WHERE write_seq < 0"
	 " UNION ALL SELECT 'tier ' || name || ': tiers says schema ' || schema_version ||"
	 " ' but the file is at ' || (SELECT user_version FROM pragma_user_version)"
	 " FROM tiers WHERE schema_version != (SELECT user_version FROM pragma_user_version)"},
	/* Skips from one tier id present in block_rows to the next with a
	 * rowid seek each, instead of looking up every row's tier. */
	{"tiers", false,
	 "WITH RECURSIVE present(tid) AS (SELECT (SELECT min(id) FROM block_rows) >> 32"
	 " UNION ALL SELECT (SELECT min(id) FROM block_rows WHERE id >= (tid + 1) << 32) >> 32"
	 " FROM present WHERE tid < 2147483647)"
	 " SELECT 'rows of tier id ' || p.tid || ' have no tiers row (' || count(*) ||"
	 " ' rows, blocks ' || min(b.id & 4294967295) || '..' || max(b.id & 4294967295) || ')'"
	 " FROM present p JOIN block_rows b ON b.id BETWEEN p.tid << 32 AND (p.tid << 32) |"
	 " 4294967295 WHERE p.tid NOT IN (SELECT tier_id FROM tiers) GROUP BY p.tid"},
	{"block ids", false,
	 "SELECT 'tier ' || t.name || ': block ' || (b.id & 4294967295) || ' is outside 0..' ||"
	 " (t.block_count - 1) FROM kv_tier t JOIN block_rows b"
	 " ON b.id BETWEEN (t.tier_id << 32) + t.block_count AND (t.tier_id << 32) | 4294967295"},
	{"rows", false,
	 "SELECT 'tier ' || t.name || ': block ' || (b.id & 4294967295) || ' has ' ||"
	 " CASE WHEN typeof(b.seq_hash) != 'integer' THEN 'a ' || typeof(b.seq_hash) ||"
	 " ' seq_hash (the library refuses it)'"
	 " WHEN typeof(b.wseq) != 'integer' OR b.wseq < 0 THEN 'write sequence ' ||"
	 " quote(b.wseq) || ' (the library drops it)'"
	 " ELSE 'write sequence ' || b.wseq || ', after the tier''s last commit ' ||"
	 " t.write_seq END"
	 " FROM tiers t JOIN block_rows b ON " CLI_TIER_RANGE("t", "b") " WHERE typeof(b.seq_hash)"
	 " != 'integer' OR typeof(b.wseq) != 'integer' OR b.wseq < 0 OR b.wseq > t.write_seq"},
	{"reclaims", false,
	 "SELECT 'tier ' || t.name || ': reclaim row ' || r.rec_id || ' (seq ' || r.seq || ')"
	 " is not a JSON array of block ids, so the library refuses every row of the tier"
	 " written before it (' || (SELECT count(*) FROM block_rows b WHERE "
	 CLI_TIER_RANGE("t", "b") " AND b.wseq < r.seq) || ' rows)'"
	 " FROM reclaims r JOIN tiers t USING (tier_id)"
	 " WHERE r.seq > 0 AND NOT kvbm_reclaim_ok(r.blocks)"
	 " UNION ALL SELECT 'tier ' || t.name || ': reclaim row ' || r.rec_id || ' has seq ' ||"
	 " r.seq || ', after the tier''s last commit ' || t.write_seq ||"
	 " ' (it would hide rows written later)'"
	 " FROM reclaims r JOIN tiers t USING (tier_id) WHERE r.seq > t.write_seq"},
	{"reclaim tiers", true,
	 "SELECT count(*) || ' reclaim rows of tier id ' || tier_id || ', which has no tiers row'"
	 " FROM reclaims WHERE tier_id NOT IN (SELECT tier_id FROM tiers) GROUP BY tier_id"},
	{"one block per hash", false,
	 "SELECT 'tier ' || " TIER_NAME("tier_id") " || ': ' || count(*) || ' blocks claim hash ' ||"
	 " printf('%016x', seq_hash) || ' (blocks ' || group_concat(block_id, ', ') || ')'"
	 " FROM kv_rows WHERE live GROUP BY tier_id, seq_hash HAVING count(*) > 1"},
	{"lineage", false,
	 "SELECT 'tier ' || " TIER_NAME("c.tier_id") " || ': block ' || c.block_id ||"
	 " ' at position ' || c.position || ' has parent block ' || p.block_id ||"
	 " ' at position ' || p.position"
	 " FROM kv_rows c JOIN kv_rows p ON p.tier_id = c.tier_id AND p.seq_hash = c.parent_hash"
	 " WHERE c.live AND p.live AND c.position IS NOT NULL AND p.position IS NOT NULL"
	 " AND p.position != c.position - 1"},
	/* NOT INDEXED: read c in table order; through the hash index (which
	 * the GROUP BY would pick) every row costs a random table lookup. */
	{"parents present", true,
	 "SELECT 'tier ' || " TIER_NAME("tier_id") " || ': ' || count(*) || ' registered blocks"
	 " whose parent is not registered (evicted first; they cannot be matched by prefix)'"
	 " FROM kv_rows c NOT INDEXED WHERE live AND parent_hash IS NOT NULL AND NOT EXISTS (SELECT 1"
	 " FROM kv_rows p WHERE p.tier_id = c.tier_id AND p.seq_hash = c.parent_hash AND p.live)"
	 " GROUP BY tier_id"},
};

/* Problems printed per check; the rest are counted. */
#define SHOWN_PER_CHECK 20

static void report(const struct cli *cli, const char *name, bool warning, const char *what,
		   bool *first_json)
{
	if (cli->json) {
		printf("%s\n  {\"check\": ", *first_json ? "" : ",");
		cli_json_string(stdout, name);
		printf(", \"severity\": \"%s\", \"detail\": ", warning ? "warning" : "problem");
		cli_json_string(stdout, what);
		printf("}");
		*first_json = false;
	} else {
		printf("%s: %s: %s\n", warning ? "warning" : "problem", name, what);
	}
}

/* Run one check; print (or collect as JSON) each problem, the first
 * SHOWN_PER_CHECK of them and a count of the rest. */
static int run_check(const struct cli *cli, sqlite3 *db, const char *name, bool warning,
		     const char *sql, bool *first_json, int *problems)
{
	sqlite3_stmt *st = NULL;
	int rc, rows = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return cli_error(cli, "check %s cannot run: %s", name, sqlite3_errmsg(db));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *what = (const char *)sqlite3_column_text(st, 0);
		if (!what || strcmp(what, "ok") == 0)
			continue;
		if (++rows <= SHOWN_PER_CHECK)
			report(cli, name, warning, what, first_json);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		/* What it printed before it stopped counts: damage found. */
		if (!warning)
			*problems += rows;
		return cli_error(cli, "check %s failed: %s", name, sqlite3_errmsg(db));
	}
	if (rows > SHOWN_PER_CHECK) {
		char more[64];
		snprintf(more, sizeof(more), "... and %d more", rows - SHOWN_PER_CHECK);
		report(cli, name, warning, more, first_json);
	}
	if (!warning)
		*problems += rows;
	if (!cli->json && rows == 0)
		printf("ok: %s\n", name);
	return EXIT_OK;
}

int cmd_verify(struct cli *cli, int argc, char **argv)
{
	int n, problems = 0, rc;
	bool first = true;

	if ((rc = cli_options(cli, argc, argv, NULL, NULL, 0, &n)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	sqlite3 *db = cli_open_db(cli, 0);
	if (!db)
		return cli->db ? EXIT_ERR : EXIT_USAGE;
	if (cli->json)
		printf("{\"findings\": [");
	rc = run_check(cli, db, "integrity", false, "PRAGMA integrity_check", &first, &problems);
	/* The tables, columns and views the library relies on, checked as the
	 * library checks them before a restore. */
	char why[512];
	const kvbm_status schema = rc == EXIT_OK ? kvbm_catalog_check(cli->db, why, sizeof(why))
						 : KVBM_OK;
	if (schema == KVBM_E_IO || schema == KVBM_E_READONLY) {
		/* The library's own connection could not read it (read-only
		 * media needs the immutable open this command used): say so. */
		report(cli, "schema", true, "not checked: the library cannot open the file here",
		       &first);
	} else if (schema != KVBM_OK) {
		report(cli, "schema", false, why, &first);
		problems++;
	} else if (rc == EXIT_OK && !cli->json) {
		printf("ok: schema\n");
	}
	/* One read transaction: every check sees the same snapshot of a
	 * live catalog as the TEMP rows they query. */
	if (rc == EXIT_OK && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		rc = cli_error(cli, "cannot read %s: %s", cli->db, sqlite3_errmsg(db));
	if (rc == EXIT_OK)
		rc = cli_registered(cli, db, CLI_ROWS | CLI_BY_HASH);
	for (size_t i = 0; rc == EXIT_OK && i < sizeof(checks) / sizeof(checks[0]); i++)
		rc = run_check(cli, db, checks[i].name, checks[i].warning, checks[i].sql, &first,
			       &problems);
	if (cli->json)
		printf("%s], \"problems\": %d, \"ok\": %s}\n", first ? "" : "\n", problems,
		       problems == 0 && rc == EXIT_OK ? "true" : "false");
	else if (rc == EXIT_OK)
		printf("%s: %d problem%s\n", problems ? "FAILED" : "verified", problems,
		       problems == 1 ? "" : "s");
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	/* Its own exit code: a script tells "the file is damaged" from "the
	 * checks could not run" (1) and from a usage error (2). A check that
	 * found damage and then could not go on (a corrupt page) is damage. */
	if (rc != EXIT_OK && problems == 0)
		return rc;
	if (problems) {
		cli_error(cli, "%d problem%s in %s", problems, problems == 1 ? "" : "s", cli->db);
		return EXIT_PROBLEMS;
	}
	return EXIT_OK;
}
