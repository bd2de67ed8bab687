/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SQLite plumbing of the catalog: result-code mapping, error messages, and
 * the one write transaction the catalog ever runs: upsert a batch of block
 * rows keyed by (tier, block_id), stamp the tier's meta row, give the
 * caller's pre-commit hook its chance, commit.
 */
#include <time.h>

#include "catalog.h"

kvbm_status kvbm__sql_status(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK: return KVBM_OK;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB: return KVBM_E_CORRUPT;
	case SQLITE_READONLY: return KVBM_E_READONLY;
	case SQLITE_FULL: return KVBM_E_FULL;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return KVBM_E_BUSY;
	case SQLITE_NOMEM: return KVBM_E_NOMEM;
	default: return KVBM_E_IO;
	}
}

kvbm_status kvbm__sql_fail(kvbm_manager *mgr, sqlite3 *db, int rc, const char *what)
{
	/* Name the file: an operator reading a log cannot guess which of a
	 * host's catalogs failed. */
	return kvbm__fail(mgr, kvbm__sql_status(rc), "%s: %s: %s (sqlite %d)",
			  mgr && mgr->catalog_path ? mgr->catalog_path : "catalog", what,
			  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
			  db ? sqlite3_extended_errcode(db) : rc);
}

int kvbm__sql_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

int64_t kvbm__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Persist the manager's counters, at most once a second and at shutdown. */
static int write_stats(struct kvbm__catalog *cat, int64_t now, bool force)
{
	static const char *const names[] = {
		"allocations", "allocations_from_reset", "evictions", "registrations",
		"duplicates", "dedups", "stagings", "match_hashes_requested",
		"match_blocks_returned", "scan_hashes_requested", "scan_blocks_returned",
		"resurrections", "catalog_rows_committed", "catalog_commits",
		"catalog_failures", "catalog_alloc_waits",
	};
	kvbm_metrics m;
	sqlite3_stmt *st = NULL;
	int rc;

	if (!force && now - (int64_t)cat->last_stats_ms < 1000)
		return SQLITE_OK;
	kvbm_metrics_read(cat->mgr, &m);
	const uint64_t values[] = {
		m.allocations, m.allocations_from_reset, m.evictions, m.registrations,
		m.duplicates, m.dedups, m.stagings, m.match_hashes_requested,
		m.match_blocks_returned, m.scan_hashes_requested, m.scan_blocks_returned,
		m.resurrections, m.catalog_rows_committed, m.catalog_commits,
		m.catalog_failures, m.catalog_alloc_waits,
	};
	rc = sqlite3_prepare_v2(cat->db,
				"INSERT INTO stats (tier, name, value) VALUES (?1, ?2, ?3) "
				"ON CONFLICT (tier, name) DO UPDATE SET value = excluded.value",
				-1, &st, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < sizeof(names) / sizeof(names[0]); i++) {
		sqlite3_bind_text(st, 1, cat->mgr->tier, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, names[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)values[i]);
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_OK)
		cat->last_stats_ms = (uint64_t)now;
	return rc;
}

static int upsert(struct kvbm__catalog *cat, const struct kvbm__image *img, int64_t now)
{
	sqlite3_stmt *st = cat->upsert;
	const bool reg = img->state == KVBM__ROW_REGISTERED;

	sqlite3_bind_text(st, 1, cat->mgr->tier, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, img->block);
	sqlite3_bind_int(st, 3, (int)img->state);
	if (reg) {
		sqlite3_bind_int64(st, 4, (sqlite3_int64)img->hash);
		if (img->position != KVBM_POSITION_UNKNOWN && img->position > 0)
			sqlite3_bind_int64(st, 5, (sqlite3_int64)img->parent);
		else
			sqlite3_bind_null(st, 5);
		if (img->position != KVBM_POSITION_UNKNOWN)
			sqlite3_bind_int64(st, 6, img->position);
		else
			sqlite3_bind_null(st, 6);
	} else {
		sqlite3_bind_null(st, 4);
		sqlite3_bind_null(st, 5);
		sqlite3_bind_null(st, 6);
	}
	sqlite3_bind_int64(st, 7, now);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)img->access_tick);
	sqlite3_bind_int64(st, 9, img->access_count);
	sqlite3_bind_int64(st, 10, img->frequency);
	sqlite3_bind_int64(st, 11, img->priority);
	sqlite3_bind_int64(st, 12, img->retention);
	sqlite3_bind_int64(st, 13, (sqlite3_int64)img->evict_key);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The upsert keeps registered_at across updates of the same registration
 * and moves last_access_at only when the block was used again. */
const char kvbm__upsert_sql[] =
	"INSERT INTO blocks (tier, block_id, state, seq_hash, parent_hash, position,"
	" registered_at, last_access_at, access_tick, access_count, frequency, priority,"
	" retention, evict_key)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN ?3 = 1 THEN ?7 END,"
	" CASE WHEN ?3 = 1 THEN ?7 END, ?8, ?9, ?10, ?11, ?12, ?13)"
	" ON CONFLICT (tier, block_id) DO UPDATE SET"
	" state = excluded.state, seq_hash = excluded.seq_hash,"
	" parent_hash = excluded.parent_hash, position = excluded.position,"
	" registered_at = CASE WHEN excluded.state = 0 THEN NULL"
	"  WHEN blocks.state = 1 AND blocks.seq_hash = excluded.seq_hash"
	"  THEN blocks.registered_at ELSE excluded.registered_at END,"
	" last_access_at = CASE WHEN excluded.state = 0 THEN NULL"
	"  WHEN blocks.state = 1 AND blocks.seq_hash = excluded.seq_hash"
	"   AND blocks.access_tick = excluded.access_tick"
	"  THEN blocks.last_access_at ELSE excluded.last_access_at END,"
	" access_tick = excluded.access_tick, access_count = excluded.access_count,"
	" frequency = excluded.frequency, priority = excluded.priority,"
	" retention = excluded.retention, evict_key = excluded.evict_key";

kvbm_status kvbm__catalog_write(struct kvbm__catalog *cat, const struct kvbm__image *imgs,
				uint32_t n, bool clean_shutdown)
{
	kvbm_manager *mgr = cat->mgr;
	const int64_t now = kvbm__now_ms();
	const char *what = "begin";
	sqlite3_stmt *meta = NULL;
	int rc = kvbm__sql_exec(cat->db, "BEGIN IMMEDIATE");

	if (rc != SQLITE_OK)
		return kvbm__sql_fail(mgr, cat->db, rc, "catalog write: begin");
	what = "block row";
	for (uint32_t i = 0; rc == SQLITE_OK && i < n; i++)
		rc = upsert(cat, &imgs[i], now);
	if (rc == SQLITE_OK) {
		what = "meta row";
		rc = sqlite3_prepare_v2(cat->db,
					clean_shutdown
						? "UPDATE meta SET last_commit_at = ?2, clean_shutdown = 1,"
						  " last_clean_shutdown_at = ?2 WHERE tier = ?1"
						: "UPDATE meta SET last_commit_at = ?2 WHERE tier = ?1",
					-1, &meta, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_text(meta, 1, mgr->tier, -1, SQLITE_STATIC);
			sqlite3_bind_int64(meta, 2, now);
			rc = sqlite3_step(meta);
			rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
		}
		sqlite3_finalize(meta);
	}
	if (rc == SQLITE_OK) {
		what = "stats";
		rc = write_stats(cat, now, clean_shutdown);
	}
	if (rc == SQLITE_OK && mgr->cfg.pre_commit &&
	    mgr->cfg.pre_commit(mgr->cfg.pre_commit_user) != 0) {
		kvbm__sql_exec(cat->db, "ROLLBACK");
		return kvbm__fail(mgr, KVBM_E_IO, "catalog write: pre-commit hook refused the commit");
	}
	if (rc == SQLITE_OK) {
		what = "commit";
		rc = kvbm__sql_exec(cat->db, "COMMIT");
	}
	if (rc != SQLITE_OK) {
		const kvbm_status st = kvbm__sql_fail(mgr, cat->db, rc, what);
		if (!sqlite3_get_autocommit(cat->db))
			kvbm__sql_exec(cat->db, "ROLLBACK");
		return st;
	}
	return KVBM_OK;
}
