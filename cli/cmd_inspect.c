/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The read commands: info, stats, blocks, show, lineage, top and sql. Each
 * opens the catalog read-only (a WAL reader never blocks the writer of a
 * running server), runs one or two queries over the schema's views and
 * renders them as a table or JSON.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

#define HEX(col) "printf('%016x', " col ")"

/* Parse options, open the catalog read-only; NULL with *rc set on failure. */
static sqlite3 *start(struct cli *cli, int argc, char **argv, struct opt *opts, char **pos,
		      int max_pos, int *n_pos, int *rc)
{
	const int r = cli_options(cli, argc, argv, opts, pos, max_pos, n_pos);

	if (r != 0) {
		*rc = r > 0 ? EXIT_OK : EXIT_USAGE;
		return NULL;
	}
	sqlite3 *db = cli_open_db(cli, false);
	if (!db)
		*rc = cli->db ? EXIT_ERR : EXIT_USAGE;
	return db;
}

int cmd_info(struct cli *cli, int argc, char **argv)
{
	int rc, n;
	sqlite3 *db = start(cli, argc, argv, NULL, NULL, 0, &n, &rc);

	if (!db)
		return rc;
	rc = cli_query(cli, db,
		       "SELECT h.tier, m.block_size, m.block_count, m.hash_algorithm,"
		       " m.hash_encoding, m.hash_seed, " HEX("m.hash_salt") " AS hash_salt,"
		       " m.model_fingerprint, m.eviction_policy,"
		       " datetime(m.created_at / 1000, 'unixepoch') AS created,"
		       " h.schema_version, h.file_schema_version, h.incarnation, h.shutdown,"
		       " h.opened, h.last_commit, h.last_clean_shutdown, h.restored_blocks,"
		       " h.vetoed_blocks, h.commits, h.failures"
		       " FROM catalog_health h JOIN meta m USING (tier) ORDER BY h.tier",
		       false, NULL);
	sqlite3_close(db);
	return rc;
}

int cmd_stats(struct cli *cli, int argc, char **argv)
{
	int rc, n;
	sqlite3 *db = start(cli, argc, argv, NULL, NULL, 0, &n, &rc);

	if (!db)
		return rc;
#define STAT(name) "(SELECT value FROM stats s WHERE s.tier = p.tier AND s.name = '" name "')"
	rc = cli_query(cli, db,
		       "SELECT p.tier, p.block_count, p.registered, p.free,"
		       " " STAT("allocations") " AS allocations,"
		       " " STAT("evictions") " AS evictions,"
		       " " STAT("registrations") " AS registrations,"
		       " " STAT("match_hashes_requested") " AS match_requested,"
		       " " STAT("match_blocks_returned") " AS match_hits,"
		       " round(1.0 * " STAT("match_blocks_returned") " / nullif(" STAT(
			       "match_hashes_requested") ", 0), 4) AS match_hit_rate,"
		       " " STAT("catalog_commits") " AS commits,"
		       " " STAT("catalog_failures") " AS failures"
		       " FROM pool_summary p ORDER BY p.tier",
		       false, NULL);
#undef STAT
	sqlite3_close(db);
	return rc;
}

static const char BLOCK_COLUMNS[] =
	"tier, block_id, CASE state WHEN 1 THEN 'registered' ELSE 'free' END AS state,"
	" CASE WHEN seq_hash IS NULL THEN NULL ELSE " HEX("seq_hash") " END AS hash,"
	" CASE WHEN parent_hash IS NULL THEN NULL ELSE " HEX("parent_hash") " END AS parent,"
	" position, access_count, frequency, priority, evict_key,"
	" datetime(registered_at / 1000, 'unixepoch') AS registered,"
	" datetime(last_access_at / 1000, 'unixepoch') AS last_access";

int cmd_blocks(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"tier", true, NULL},  {"state", true, NULL}, {"hash", true, NULL},
			     {"limit", true, NULL}, {"order", true, NULL}, {NULL, false, NULL}};
	int rc, n;
	uint32_t limit = 100;
	kvbm_hash hash = 0;
	char hash_text[24] = "", limit_text[16], sql[1024];
	sqlite3 *db = start(cli, argc, argv, opts, NULL, 0, &n, &rc);

	if (!db)
		return rc;
	const char *state = opts[1].value ? opts[1].value : "";
	const char *order = opts[4].value ? opts[4].value : "id";
	rc = EXIT_USAGE;
	if (*state && strcmp(state, "registered") != 0 && strcmp(state, "free") != 0)
		cli_usage(cli, "--state must be registered or free, not '%s'", state);
	else if (opts[3].value && !cli_parse_u32(opts[3].value, &limit))
		cli_usage(cli, "--limit needs a number, not '%s'", opts[3].value);
	else if (opts[2].value && !cli_parse_hash(opts[2].value, &hash))
		rc = cli_error(cli, "'%s' is not a hash (1 to 16 hex digits)", opts[2].value);
	else if (strcmp(order, "evict") && strcmp(order, "access") && strcmp(order, "id"))
		cli_usage(cli, "--order must be evict, access or id, not '%s'", order);
	else
		rc = EXIT_OK;
	if (rc != EXIT_OK)
		goto out;
	if (opts[2].value)
		snprintf(hash_text, sizeof(hash_text), "%lld", (long long)hash);
	snprintf(limit_text, sizeof(limit_text), "%u", limit);
	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM blocks WHERE (?1 = '' OR tier = ?1)"
		 " AND (?2 = '' OR state = (?2 = 'registered'))"
		 " AND (?3 = '' OR seq_hash = CAST(?3 AS INTEGER))"
		 " ORDER BY %s LIMIT CAST(?4 AS INTEGER)",
		 BLOCK_COLUMNS,
		 strcmp(order, "evict") == 0	? "state DESC, evict_key, tier, block_id"
		 : strcmp(order, "access") == 0 ? "access_count DESC, tier, block_id"
						: "tier, block_id");
	rc = cli_query(cli, db, sql, false, opts[0].value ? opts[0].value : "", state, hash_text,
		       limit_text, NULL);
out:
	sqlite3_close(db);
	return rc;
}

int cmd_show(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"block", true, NULL}, {"tier", true, NULL}, {NULL, false, NULL}};
	char *pos[1];
	int rc, n;
	kvbm_hash hash;
	uint32_t id;
	char key[32], sql[1024];
	sqlite3 *db = start(cli, argc, argv, opts, pos, 1, &n, &rc);

	if (!db)
		return rc;
	if ((n == 1) == (opts[0].value != NULL)) {
		rc = cli_usage(cli, "give either a HASH or --block ID");
	} else if (n == 1 && !cli_parse_hash(pos[0], &hash)) {
		rc = cli_error(cli, "'%s' is not a hash (1 to 16 hex digits)", pos[0]);
	} else if (opts[0].value && !cli_parse_u32(opts[0].value, &id)) {
		rc = cli_usage(cli, "--block needs a block id, not '%s'", opts[0].value);
	} else {
		if (n == 1)
			snprintf(key, sizeof(key), "%lld", (long long)hash);
		else
			snprintf(key, sizeof(key), "%u", id);
		snprintf(sql, sizeof(sql),
			 "SELECT %s FROM blocks WHERE (?1 = '' OR tier = ?1) AND %s ORDER BY tier",
			 BLOCK_COLUMNS,
			 n == 1 ? "state = 1 AND seq_hash = CAST(?2 AS INTEGER)"
				: "block_id = CAST(?2 AS INTEGER)");
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
			rc = cli_error(cli, "query failed: %s", sqlite3_errmsg(db));
		} else {
			sqlite3_bind_text(st, 1, opts[1].value ? opts[1].value : "", -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_ROW) {
				rc = cli_error(cli, "no block %s%s in the catalog", n == 1 ? "holds " : "",
					       n == 1 ? pos[0] : opts[0].value);
			} else {
				sqlite3_reset(st);
				rc = cli_render(cli, st, false);
			}
		}
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return rc;
}

int cmd_lineage(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"tier", true, NULL}, {NULL, false, NULL}};
	char *pos[1];
	int rc, n;
	kvbm_hash hash;
	char key[32];
	sqlite3 *db = start(cli, argc, argv, opts, pos, 1, &n, &rc);

	if (!db)
		return rc;
	if (n != 1) {
		rc = cli_usage(cli, "give the HASH whose lineage to show");
	} else if (!cli_parse_hash(pos[0], &hash)) {
		rc = cli_error(cli, "'%s' is not a hash (1 to 16 hex digits)", pos[0]);
	} else {
		snprintf(key, sizeof(key), "%lld", (long long)hash);
		/* Up through parents, down through children, each with its
		 * distance from the block asked about. */
		rc = cli_query(
			cli, db,
			"WITH RECURSIVE"
			" up(tier, h, p, d) AS ("
			"  SELECT tier, seq_hash, parent_hash, 0 FROM blocks"
			"  WHERE state = 1 AND seq_hash = CAST(?1 AS INTEGER) AND (?2 = '' OR tier = ?2)"
			"  UNION SELECT b.tier, b.seq_hash, b.parent_hash, up.d - 1 FROM up JOIN blocks b"
			"  ON b.tier = up.tier AND b.state = 1 AND b.seq_hash = up.p),"
			" down(tier, h, d) AS ("
			"  SELECT tier, seq_hash, 0 FROM blocks"
			"  WHERE state = 1 AND seq_hash = CAST(?1 AS INTEGER) AND (?2 = '' OR tier = ?2)"
			"  UNION SELECT b.tier, b.seq_hash, down.d + 1 FROM down JOIN blocks b"
			"  ON b.tier = down.tier AND b.state = 1 AND b.parent_hash = down.h"
			"  WHERE down.d < 100000)"
			" SELECT x.tier, x.d AS distance,"
			"  CASE WHEN x.d < 0 THEN 'ancestor' WHEN x.d = 0 THEN 'self'"
			"  ELSE 'descendant' END AS relation,"
			"  b.block_id, " HEX("b.seq_hash") " AS hash, b.position, b.access_count"
			" FROM (SELECT tier, h, d FROM up UNION SELECT tier, h, d FROM down) x"
			" JOIN blocks b ON b.tier = x.tier AND b.state = 1 AND b.seq_hash = x.h"
			" ORDER BY x.tier, x.d, b.block_id",
			false, key, opts[0].value ? opts[0].value : "", NULL);
	}
	sqlite3_close(db);
	return rc;
}

int cmd_top(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"limit", true, NULL}, {NULL, false, NULL}};
	int rc, n;
	uint32_t limit = 10;
	char limit_text[16];
	sqlite3 *db = start(cli, argc, argv, opts, NULL, 0, &n, &rc);

	if (!db)
		return rc;
	if (opts[0].value && !cli_parse_u32(opts[0].value, &limit)) {
		rc = cli_usage(cli, "--limit needs a number, not '%s'", opts[0].value);
	} else {
		snprintf(limit_text, sizeof(limit_text), "%u", limit);
		rc = cli_query(cli, db,
			       "SELECT tier, root, blocks, accesses, longest_chain FROM hot_prefixes"
			       " LIMIT CAST(?1 AS INTEGER)",
			       false, limit_text, NULL);
	}
	sqlite3_close(db);
	return rc;
}

int cmd_sql(struct cli *cli, int argc, char **argv)
{
	char *pos[1];
	int rc, n;
	sqlite3_stmt *st = NULL;
	const char *tail = NULL;
	sqlite3 *db = start(cli, argc, argv, NULL, pos, 1, &n, &rc);

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
