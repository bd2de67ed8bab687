/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Knowing what a file is before anything writes it. Only a missing or
 * empty file becomes a new catalog; a kvbm catalog is told by its header
 * (application_id 'kvbm', from schema 3 on) or, for the releases before,
 * by user_version 1 or 2 together with their two tables. Anything else is
 * refused untouched: no schema, no WAL switch, no checkpoint.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "catalog.h"

#define MSG(...) ((void)snprintf(msg, len, __VA_ARGS__))

kvbm_status kvbm__catalog_check_path(const char *path, bool *is_new, char *msg, size_t len)
{
	struct stat sb;

	*is_new = false;
	if (stat(path, &sb) != 0) {
		if (errno == ENOENT) {
			*is_new = true;
			return KVBM_OK;
		}
		MSG("cannot stat catalog %s: %s", path, strerror(errno));
		return errno == EACCES ? KVBM_E_READONLY : KVBM_E_IO;
	}
	/* A FIFO or device would block or consume SQLite's open. */
	if (!S_ISREG(sb.st_mode)) {
		MSG("catalog %s is not a regular file", path);
		return KVBM_E_INVAL;
	}
	*is_new = sb.st_size == 0;
	return KVBM_OK;
}

static int pragma_int(sqlite3 *db, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		*out = sqlite3_column_int(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

kvbm_status kvbm__catalog_identify(sqlite3 *db, const char *path, bool is_new, char *msg,
				   size_t len)
{
	int app = 0, version = 0, legacy_tables = 0, objects = 0;

	if (is_new)
		return KVBM_OK;
	int rc = pragma_int(db, "PRAGMA application_id", &app);
	if (rc == SQLITE_OK)
		rc = pragma_int(db, "PRAGMA user_version", &version);
	if (rc == SQLITE_OK)
		rc = pragma_int(db, "SELECT count(*) FROM sqlite_master", &objects);
	if (rc == SQLITE_OK)
		rc = pragma_int(db,
				"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
				" ('meta', 'blocks')",
				&legacy_tables);
	if (rc != SQLITE_OK) {
		MSG("%s is not a kvbm catalog: %s", path, sqlite3_errmsg(db));
		return (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT
			       ? KVBM_E_CORRUPT
			       : kvbm__sql_status(rc);
	}
	if (app == KVBM__APPLICATION_ID) {
		if (version > KVBM_SCHEMA_VERSION) {
			MSG("catalog schema version %d is newer than this library's %d", version,
			    KVBM_SCHEMA_VERSION);
			return KVBM_E_MISMATCH;
		}
		return KVBM_OK;
	}
	if (app == 0 && (version == 1 || version == 2) && legacy_tables == 2)
		return KVBM_OK;
	if (app == 0 && version > KVBM_SCHEMA_VERSION && legacy_tables == 2) {
		MSG("catalog schema version %d is newer than this library's %d", version,
		    KVBM_SCHEMA_VERSION);
		return KVBM_E_MISMATCH;
	}
	MSG("%s is not a kvbm catalog (application_id %d, user_version %d, %d schema objects); "
	    "it was left untouched",
	    path, app, version, objects);
	return KVBM_E_CORRUPT;
}

kvbm_status kvbm__catalog_check_schema(sqlite3 *db, const char *path, char *msg, size_t len)
{
	/* What the writer and the restore use, column by column, and every
	 * documented view (a view whose definition broke fails to prepare). */
	static const char *const probes[] = {
		"SELECT tier_id, name, schema_version, block_size, block_count, hash_encoding,"
		" hash_seed, hash_salt, model_fingerprint, incarnation, clean_shutdown,"
		" last_commit_at, restored_blocks, vetoed_blocks, write_seq FROM tiers",
		"SELECT id, wseq, seq_hash, parent_hash, position, evict_key, access_tick,"
		" access_count, frequency, priority, retention, registered_at, last_access_at,"
		" tokens, key FROM block_rows",
		"SELECT rec_id, tier_id, seq, blocks FROM reclaims",
		"SELECT catalog_id, commit_seq FROM catalog",
		"SELECT tier_id, policy, state FROM policy_state",
		"SELECT tier, name, value FROM stats",
		"SELECT * FROM meta", "SELECT * FROM blocks", "SELECT * FROM reclaimed_blocks",
		"SELECT * FROM pool_summary", "SELECT * FROM eviction_order",
		"SELECT * FROM hot_blocks", "SELECT * FROM prefix_edges",
		"SELECT * FROM block_roots", "SELECT * FROM hot_prefixes",
		"SELECT * FROM chain_depth_histogram", "SELECT * FROM catalog_health",
		"SELECT * FROM tier_presence",
	};

	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		sqlite3_stmt *st = NULL;
		const int rc = sqlite3_prepare_v2(db, probes[i], -1, &st, NULL);
		sqlite3_finalize(st);
		if (rc != SQLITE_OK) {
			MSG("catalog %s is damaged: %s", path, sqlite3_errmsg(db));
			return KVBM_E_CORRUPT;
		}
	}
	return KVBM_OK;
}
