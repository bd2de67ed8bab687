/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SQLite plumbing of the catalog: result-code mapping, error messages, and
 * the one write transaction the catalog ever runs: one reclaim row listing
 * the blocks freed since the last commit, a batch of block rows keyed by
 * (tier_id << 32) | block_id, deletions of reclaim rows no longer needed,
 * the tier's stamp, the caller's pre-commit hook, commit.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.h"
#include "reclaim_text.h"
#include "row_sql.h"

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

static int upsert(struct kvbm__catalog *cat, const struct kvbm__image *img, uint64_t seq,
		  int64_t now)
{
	sqlite3_stmt *st = img->fresh ? cat->replace : cat->upsert;

	sqlite3_bind_int64(st, 1, cat->tier_id << 32 | img->block);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)img->hash);
	if (img->position != KVBM_POSITION_UNKNOWN && img->position > 0)
		sqlite3_bind_int64(st, 4, (sqlite3_int64)img->parent);
	else
		sqlite3_bind_null(st, 4);
	if (img->position != KVBM_POSITION_UNKNOWN)
		sqlite3_bind_int64(st, 5, img->position);
	else
		sqlite3_bind_null(st, 5);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)img->evict_key);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)img->access_tick);
	sqlite3_bind_int64(st, 8, img->access_count);
	sqlite3_bind_int64(st, 9, img->frequency);
	sqlite3_bind_int64(st, 10, img->priority);
	sqlite3_bind_int64(st, 11, img->retention);
	sqlite3_bind_int64(st, 12, now);
	if (img->tokens)
		sqlite3_bind_blob(st, 13, img->tokens,
				  (int)kvbm__token_copy_bytes(img->tokens, cat->mgr->block_size),
				  SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 13);
	if (img->key)
		sqlite3_bind_blob(st, 14, img->key->bytes, (int)img->key->len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 14);
	const int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The statements themselves are in row_sql.h (the benchmark of the
 * bare-SQLite floor prepares them too). */
const char kvbm__upsert_sql[] = KVBM__UPSERT_SQL;
const char kvbm__replace_sql[] = KVBM__REPLACE_SQL;

/* The reclaim row's ids as a JSON array (json_each reads it in the views;
 * the restore parses it by hand). */
static int reclaim_text(struct kvbm__catalog *cat, const uint32_t *ids, uint32_t n,
			size_t *len)
{
	const size_t need = KVBM__RECLAIM_TEXT_MAX(n);

	if (need > cat->text_cap) {
		char *grown = realloc(cat->text, need);
		if (!grown)
			return SQLITE_NOMEM;
		cat->text = grown;
		cat->text_cap = need;
	}
	*len = kvbm__reclaim_format(cat->text, ids, n);
	return SQLITE_OK;
}

/* Rows between two looks for a waiting allocation. */
#define YIELD_EVERY 64

static int step_done(sqlite3_stmt *st)
{
	const int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

kvbm_status kvbm__catalog_write(struct kvbm__catalog *cat, bool clean_shutdown, int64_t *rowid,
				bool *compacted, uint32_t *n_listed)
{
	kvbm_manager *mgr = cat->mgr;
	struct kvbm__take *t = &cat->take;
	struct kvbm__reclaims *rec = &cat->reclaims;
	const int64_t now = kvbm__now_ms();
	const uint64_t seq = cat->write_seq + 1;
	const char *what = "begin";
	int rc = kvbm__sql_exec(cat->db, "BEGIN IMMEDIATE");

	*rowid = 0;
	*n_listed = 0;
	t->n_written = t->n;
	*compacted = kvbm__reclaims_should_compact(rec, mgr->cfg.catalog_batch);
	t->reclaim_rows = 0;
	if (rc != SQLITE_OK)
		return kvbm__sql_fail(mgr, cat->db, rc, "catalog write: begin");
	/* Reclaims first: they are what waiting allocators need. */
	uint32_t n = 0;
	if (*compacted)
		n = kvbm__reclaims_outstanding(rec, cat->listed);
	memcpy(cat->listed + n, t->freed, (size_t)t->n_freed * sizeof(*t->freed));
	n += t->n_freed;
	if (n > 0) {
		size_t len = 0;
		what = "reclaim row";
		rc = reclaim_text(cat, cat->listed, n, &len);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(cat->add_reclaim, 1, cat->tier_id);
			sqlite3_bind_int64(cat->add_reclaim, 2, (sqlite3_int64)seq);
			sqlite3_bind_text(cat->add_reclaim, 3, cat->text, (int)len, SQLITE_STATIC);
			rc = step_done(cat->add_reclaim);
		}
		if (rc == SQLITE_OK) {
			*rowid = sqlite3_last_insert_rowid(cat->db);
			*n_listed = n;
			t->reclaim_rows = 1;
		}
	}
	if (rc == SQLITE_OK)
		what = "block row";
	/* An allocation waiting for the writer (it outran the reserve) gets
	 * the rows written so far committed and the rest given back, rather
	 * than a wait for the whole batch: 8,192 rows took ~8 ms, and a batch
	 * kept short for it (512 rows) made the writer's commits far more
	 * than its rows cost. Not in a flush, whose take covers what was
	 * dirty at its call. */
	for (uint32_t i = 0; rc == SQLITE_OK && i < t->n; i++) {
		if (i % YIELD_EVERY == 0 && i > 0 && !t->oldest_first && kvbm__journal_waiting(mgr)) {
			t->n_written = i;
			break;
		}
		rc = upsert(cat, &t->imgs[i], seq, now);
	}
	if (rc == SQLITE_OK)
		what = "drop reclaim row";
	for (uint32_t i = 0; rc == SQLITE_OK && i < rec->n_doomed; i++) {
		sqlite3_bind_int64(cat->drop_reclaim, 1, rec->doomed[i]);
		rc = step_done(cat->drop_reclaim);
	}
	if (rc == SQLITE_OK && *compacted) {
		/* Every live row is superseded by the one written above. */
		for (uint32_t i = 0; rc == SQLITE_OK && i < rec->n_rows; i++) {
			if (rec->rows[i].rowid == 0)
				continue;
			sqlite3_bind_int64(cat->drop_reclaim, 1, rec->rows[i].rowid);
			rc = step_done(cat->drop_reclaim);
		}
	}
	if (rc == SQLITE_OK) {
		sqlite3_stmt *st = clean_shutdown ? cat->stamp_clean : cat->stamp;
		what = "tier row";
		sqlite3_bind_int64(st, 1, cat->tier_id);
		sqlite3_bind_int64(st, 2, now);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
		rc = step_done(st);
		if (rc == SQLITE_OK)
			rc = step_done(cat->bump);
	}
	if (rc == SQLITE_OK) {
		what = "stats";
		rc = write_stats(cat, now, clean_shutdown);
	}
	/* The policy's learned state: at a clean close, and after every
	 * block_count evictions (it only steers eviction, so a crash losing
	 * the latest of it costs little). Not more often: adaptive's is 31
	 * bytes per block, and written every block_count/8 evictions it cost
	 * the writer more than the rows did and the eviction-bound cycle of
	 * bench_catalog 0.11-0.17 of its speed without a catalog instead of
	 * 0.44-0.46 (docs/BENCHMARKS.md). */
	const bool state_due = clean_shutdown ||
			       t->evictions - cat->state_evictions >= (uint64_t)mgr->block_count + 1;
	uint8_t *state = NULL;
	size_t state_len = 0;
	if (rc == SQLITE_OK && state_due && (state_len = kvbm__journal_policy_state(mgr, &state))) {
		what = "policy state";
		sqlite3_bind_int64(cat->put_state, 1, cat->tier_id);
		sqlite3_bind_text(cat->put_state, 2, kvbm_evict_policy_name(mgr->cfg.evict_policy), -1,
				  SQLITE_STATIC);
		sqlite3_bind_blob(cat->put_state, 3, state, (int)state_len, SQLITE_STATIC);
		rc = step_done(cat->put_state);
	}
	free(state);
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
		t->reclaim_rows = 0;
		return st;
	}
	cat->write_seq = seq;
	if (state_due)
		cat->state_evictions = t->evictions;
	return KVBM_OK;
}
