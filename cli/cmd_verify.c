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

static const struct check checks[] = {
	{"meta", false,
	 "SELECT 'tier ' || tier || ': block_size ' || block_size || ' is not a power of two in"
	 " 1..1024' FROM meta WHERE block_size < 1 OR block_size > 1024"
	 " OR (block_size & (block_size - 1)) != 0"
	 " UNION ALL SELECT 'tier ' || tier || ': block_count ' || block_count || ' is not positive'"
	 " FROM meta WHERE block_count < 1"
	 " UNION ALL SELECT 'tier ' || tier || ': meta says schema ' || schema_version ||"
	 " ' but the file is at ' || (SELECT user_version FROM pragma_user_version)"
	 " FROM meta WHERE schema_version != (SELECT user_version FROM pragma_user_version)"},
	{"tiers", false,
	 "SELECT 'rows of tier ''' || tier || ''' have no meta row (blocks ' ||"
	 " group_concat(block_id) || ')' FROM blocks WHERE tier NOT IN (SELECT tier FROM meta)"
	 " GROUP BY tier"},
	{"block ids", false,
	 "SELECT 'tier ' || b.tier || ': block ' || b.block_id || ' is outside 0..' ||"
	 " (m.block_count - 1) FROM blocks b JOIN meta m USING (tier)"
	 " WHERE b.block_id < 0 OR b.block_id >= m.block_count"},
	{"states", false,
	 "SELECT 'tier ' || tier || ': block ' || block_id || ' has unknown state ' || state"
	 " FROM blocks WHERE state NOT IN (0, 1)"
	 " UNION ALL SELECT 'tier ' || tier || ': block ' || block_id ||"
	 " ' is registered without a hash' FROM blocks WHERE state = 1 AND seq_hash IS NULL"
	 " UNION ALL SELECT 'tier ' || tier || ': block ' || block_id || ' is free but claims hash '"
	 " || printf('%016x', seq_hash) FROM blocks WHERE state = 0 AND seq_hash IS NOT NULL"},
	{"one block per hash", false,
	 "SELECT 'tier ' || tier || ': ' || count(*) || ' blocks claim hash ' ||"
	 " printf('%016x', seq_hash) || ' (blocks ' || group_concat(block_id, ', ') || ')'"
	 " FROM blocks WHERE state = 1 GROUP BY tier, seq_hash HAVING count(*) > 1"},
	{"lineage", false,
	 "SELECT 'tier ' || c.tier || ': block ' || c.block_id || ' at position ' || c.position ||"
	 " ' has parent block ' || p.block_id || ' at position ' || p.position"
	 " FROM blocks c JOIN blocks p ON p.tier = c.tier AND p.state = 1"
	 " AND p.seq_hash = c.parent_hash"
	 " WHERE c.state = 1 AND c.position IS NOT NULL AND p.position IS NOT NULL"
	 " AND p.position != c.position - 1"},
	{"parents present", true,
	 "SELECT 'tier ' || tier || ': ' || count(*) || ' registered blocks whose parent is not"
	 " registered (evicted first; they cannot be matched by prefix)' FROM blocks c"
	 " WHERE state = 1 AND parent_hash IS NOT NULL AND NOT EXISTS (SELECT 1 FROM blocks p"
	 " WHERE p.tier = c.tier AND p.state = 1 AND p.seq_hash = c.parent_hash)"
	 " GROUP BY tier"},
};

/* Run one check; print (or collect as JSON) each problem. */
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
		rows++;
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
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return cli_error(cli, "check %s failed: %s", name, sqlite3_errmsg(db));
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
	sqlite3 *db = cli_open_db(cli, false);
	if (!db)
		return cli->db ? EXIT_ERR : EXIT_USAGE;
	if (cli->json)
		printf("{\"findings\": [");
	rc = run_check(cli, db, "integrity", false, "PRAGMA integrity_check", &first, &problems);
	for (size_t i = 0; rc == EXIT_OK && i < sizeof(checks) / sizeof(checks[0]); i++)
		rc = run_check(cli, db, checks[i].name, checks[i].warning, checks[i].sql, &first,
			       &problems);
	if (cli->json)
		printf("%s], \"problems\": %d, \"ok\": %s}\n", first ? "" : "\n", problems,
		       problems == 0 && rc == EXIT_OK ? "true" : "false");
	else if (rc == EXIT_OK)
		printf("%s: %d problem%s\n", problems ? "FAILED" : "verified", problems,
		       problems == 1 ? "" : "s");
	sqlite3_close(db);
	if (rc != EXIT_OK)
		return rc;
	if (problems)
		return cli_error(cli, "%d problem%s in %s", problems, problems == 1 ? "" : "s", cli->db);
	return EXIT_OK;
}
