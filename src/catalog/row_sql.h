/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer's row statements, in a header of their own so that
 * tests/bench/bench_offload_sqlite.c measures the very text sql.c
 * prepares (it used to carry a copy, which would have drifted).
 * Parameters: ?1 id, ?2 wseq, ?3 seq_hash, ?4 parent_hash, ?5 position,
 * ?6 evict_key, ?7 access_tick, ?8 access_count, ?9 frequency,
 * ?10 priority, ?11 retention, ?12 now (registered_at and
 * last_access_at), ?13 tokens, ?14 key.
 */
#ifndef KVBM_CATALOG_ROW_SQL_H
#define KVBM_CATALOG_ROW_SQL_H

/* One plain rowid upsert per block: no text key, no secondary index. It
 * keeps registered_at (and the tokens) across updates of the same
 * registration and moves last_access_at only when the block was used
 * again. */
#define KVBM__UPSERT_SQL \
	"INSERT INTO block_rows (id, wseq, seq_hash, parent_hash, position, evict_key," \
	" access_tick, access_count, frequency, priority, retention, registered_at," \
	" last_access_at, tokens, key)" \
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14)" \
	" ON CONFLICT (id) DO UPDATE SET wseq = excluded.wseq, seq_hash = excluded.seq_hash," \
	" parent_hash = excluded.parent_hash, position = excluded.position," \
	" evict_key = excluded.evict_key, access_tick = excluded.access_tick," \
	" access_count = excluded.access_count, frequency = excluded.frequency," \
	" priority = excluded.priority, retention = excluded.retention," \
	" registered_at = CASE WHEN block_rows.seq_hash = excluded.seq_hash" \
	"  THEN block_rows.registered_at ELSE excluded.registered_at END," \
	" last_access_at = CASE WHEN block_rows.seq_hash = excluded.seq_hash" \
	"  AND block_rows.access_tick = excluded.access_tick" \
	"  THEN block_rows.last_access_at ELSE excluded.last_access_at END," \
	/* Tokens come with the first row after staging only. */ \
	" tokens = CASE WHEN excluded.tokens IS NOT NULL THEN excluded.tokens" \
	"  WHEN block_rows.seq_hash = excluded.seq_hash THEN block_rows.tokens END," \
	" key = CASE WHEN excluded.key IS NOT NULL THEN excluded.key" \
	"  WHEN block_rows.seq_hash = excluded.seq_hash THEN block_rows.key END"

/* The first row of a registration keeps nothing of the row the block has
 * on disk, which an earlier registration wrote (a reclaim row masks it):
 * an overwrite. SQLite does it in place (a rowid table without an index),
 * without reading the old row; ~13% less writer CPU per row than the
 * upsert (bench_offload_sqlite). */
#define KVBM__REPLACE_SQL \
	"INSERT OR REPLACE INTO block_rows (id, wseq, seq_hash, parent_hash, position, evict_key," \
	" access_tick, access_count, frequency, priority, retention, registered_at," \
	" last_access_at, tokens, key)" \
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14)"

#endif /* KVBM_CATALOG_ROW_SQL_H */
