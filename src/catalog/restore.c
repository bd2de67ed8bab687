/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore: read the tier's block rows (one rowid range), drop those a
 * reclaim row masks (a block listed by a reclaim row with a higher write
 * sequence than its row's no longer holds that hash), sort the rest by
 * eviction key and hand them to the core in that order. Masked and refused
 * rows and the tier's reclaim rows are deleted, so a restored tier starts
 * with no reclaim bookkeeping.
 *
 * Reading happens while kvbm_open builds the manager's pools on another
 * thread (kvbm__restore_read touches no manager state); the rows are
 * handed to the core once they are built (kvbm__restore_apply). Reading
 * is most of a restore's cost, so a large tier is read by two threads: the upper half of the id range on a second, read-only
 * connection, which sees the same rows as long as the open's transaction
 * has not changed any (no migration, no discard). Each half is sorted by
 * its thread and the halves are merged into the core.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "reclaim_text.h"

/* Below this many blocks a second thread costs more than it saves. */
#define SPLIT_BLOCKS 65536u

struct half {
	struct kvbm__catalog *cat;
	sqlite3 *db;            /* the connection this half reads */
	int64_t lo, hi;         /* id range */
	const uint64_t *mask;   /* per block: newest reclaim seq listing it */
	uint64_t all;           /* rows older than this are not trusted */
	struct kvbm__image *rows;
	size_t n, cap, expect;
	uint32_t *dropped;      /* masked or damaged: deleted afterwards */
	size_t n_dropped, cap_dropped;
	uint32_t damaged;
	uint64_t max_wseq;      /* the newest row's write sequence */
	int rc;                 /* SQLite code of the failure, or SQLITE_OK */
	bool nomem;
	char what[96];
};

static int by_evict_key(const void *a, const void *b)
{
	const struct kvbm__image *x = a, *y = b;

	if (x->evict_key != y->evict_key)
		return x->evict_key < y->evict_key ? -1 : 1;
	return x->block < y->block ? -1 : x->block > y->block;
}

struct mask_add {
	uint64_t *mask, seq;
	uint32_t count;
};

/* Each block a reclaim row lists is masked by the newest seq listing it;
 * ids outside the tier mask nothing. */
static void mask_add(uint64_t id, void *user)
{
	struct mask_add *m = user;

	if (id < m->count && m->mask[id] < m->seq)
		m->mask[id] = m->seq;
}

/* Reclaim rows of the tier into a per-block mask; *all receives the seq of
 * the newest unreadable one (rows older than it are not trusted). */
static kvbm_status read_reclaims(struct kvbm__catalog *cat, uint64_t **mask, uint64_t *all)
{
	kvbm_manager *mgr = cat->mgr;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(cat->db, "SELECT seq, blocks FROM reclaims WHERE tier_id = ?1",
				    -1, &st, NULL);

	*mask = NULL;
	*all = 0;
	if (rc != SQLITE_OK)
		return kvbm__sql_fail(mgr, cat->db, rc, "read reclaim rows");
	sqlite3_bind_int64(st, 1, cat->tier_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const sqlite3_int64 seq = sqlite3_column_int64(st, 0);
		if (!*mask && !(*mask = calloc(mgr->block_count, sizeof(**mask)))) {
			sqlite3_finalize(st);
			return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot hold the reclaim mask");
		}
		if (seq <= 0)
			continue; /* masks nothing: every row has wseq >= 0 */
		struct mask_add m = {*mask, (uint64_t)seq, mgr->block_count};
		if (sqlite3_column_type(st, 1) != SQLITE_TEXT ||
		    !kvbm__reclaim_parse(sqlite3_column_text(st, 1), mask_add, &m)) {
			if ((uint64_t)seq > *all)
				*all = (uint64_t)seq;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return kvbm__sql_fail(mgr, cat->db, rc, "read reclaim rows");
	return KVBM_OK;
}

static bool push_dropped(struct half *h, uint32_t block)
{
	if (h->n_dropped == h->cap_dropped) {
		const size_t cap = h->cap_dropped ? 2 * h->cap_dropped : 1024;
		uint32_t *grown = realloc(h->dropped, cap * sizeof(*grown));
		if (!grown)
			return false;
		h->dropped = grown;
		h->cap_dropped = cap;
	}
	h->dropped[h->n_dropped++] = block;
	return true;
}

/* Read the rows of [lo, hi] and sort them; no manager state is touched,
 * so two halves can run at once. */
static void read_half(struct half *h)
{
	const uint32_t count = h->cat->mgr->block_count;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(h->db,
				    h->cat->mgr->cfg.catalog_tokens
					    ? "SELECT id, wseq, seq_hash, parent_hash, position, access_tick,"
					      " access_count, frequency, priority, retention, evict_key, key,"
					      " tokens FROM block_rows WHERE id BETWEEN ?1 AND ?2"
					    : "SELECT id, wseq, seq_hash, parent_hash, position, access_tick,"
					      " access_count, frequency, priority, retention, evict_key, key"
					      " FROM block_rows WHERE id BETWEEN ?1 AND ?2",
				    -1, &st, NULL);

	if (rc != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(st, 1, h->lo);
	sqlite3_bind_int64(st, 2, h->hi);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const uint32_t block = (uint32_t)(sqlite3_column_int64(st, 0) & 0xffffffff);
		const sqlite3_int64 wseq = sqlite3_column_int64(st, 1);
		if (wseq > 0 && (uint64_t)wseq > h->max_wseq)
			h->max_wseq = (uint64_t)wseq;
		const bool masked = wseq < 0 || (uint64_t)wseq < h->all ||
				    (h->mask && block < count && (uint64_t)wseq < h->mask[block]);
		/* A NULL hash is damage: never restore it as hash 0. */
		if (masked || sqlite3_column_type(st, 2) != SQLITE_INTEGER) {
			h->damaged += !masked;
			if (!push_dropped(h, block)) {
				h->nomem = true;
				goto out;
			}
			continue;
		}
		if (h->n == h->cap) {
			/* A sound tier has at most one row per block in the range:
			 * size for that at once instead of copying while doubling. */
			const size_t cap = h->cap ? 2 * h->cap : h->expect;
			struct kvbm__image *grown = realloc(h->rows, cap * sizeof(*grown));
			if (!grown) {
				h->nomem = true;
				goto out;
			}
			h->rows = grown;
			h->cap = cap;
		}
		struct kvbm__image *img = &h->rows[h->n++];
		img->block = block;
		img->hash = (kvbm_hash)sqlite3_column_int64(st, 2);
		img->parent = (kvbm_hash)sqlite3_column_int64(st, 3);
		img->position = sqlite3_column_type(st, 4) == SQLITE_NULL
					? KVBM_POSITION_UNKNOWN
					: (uint32_t)sqlite3_column_int64(st, 4);
		img->access_tick = (uint64_t)sqlite3_column_int64(st, 5);
		img->access_count = (uint32_t)sqlite3_column_int64(st, 6);
		img->frequency = (uint32_t)sqlite3_column_int64(st, 7);
		const sqlite3_int64 prio = sqlite3_column_int64(st, 8);
		img->priority = prio < 0 || prio > 100 ? KVBM_PRIORITY_DEFAULT : (uint32_t)prio;
		img->retention = (uint32_t)sqlite3_column_int64(st, 9);
		img->evict_key = (uint64_t)sqlite3_column_int64(st, 10);
		img->tokens = NULL;
		img->key = NULL;
		if (sqlite3_column_type(st, 11) == SQLITE_BLOB) {
			const int len = sqlite3_column_bytes(st, 11);
			/* A key of another length is damage: the block restores
			 * without one, as if none was recorded. */
			if (len > 0 && len <= KVBM_KEY_MAX &&
			    !(img->key = kvbm__key_copy(sqlite3_column_blob(st, 11), (uint32_t)len))) {
				h->nomem = true;
				goto out;
			}
		}
		if (h->cat->mgr->cfg.catalog_tokens && h->cat->mgr->cfg.event_sink &&
		    sqlite3_column_type(st, 12) == SQLITE_BLOB) {
			/* Kept for the restart announcement; a damaged blob only
			 * makes it an announcement by hash. */
			const void *blob = sqlite3_column_blob(st, 12);
			const size_t len = (size_t)sqlite3_column_bytes(st, 12);
			if (kvbm__token_copy_valid(blob, len, h->cat->mgr->block_size) &&
			    (img->tokens = malloc(len)))
				memcpy(img->tokens, blob, len);
		}
	}
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	if (h->n > 1)
		qsort(h->rows, h->n, sizeof(*h->rows), by_evict_key);
out:
	if (rc != SQLITE_OK)
		snprintf(h->what, sizeof(h->what), "%s", sqlite3_errmsg(h->db));
	h->rc = rc;
	sqlite3_finalize(st);
}

static void *read_half_main(void *arg)
{
	struct half *h = arg;

	/* A read transaction pins one snapshot for the whole scan. */
	h->rc = sqlite3_exec(h->db, "BEGIN", NULL, NULL, NULL);
	if (h->rc == SQLITE_OK)
		read_half(h);
	sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
	return NULL;
}

/* Rows that must not be restored are deleted in the open's transaction. */
static int delete_row(struct kvbm__catalog *cat, sqlite3_stmt **st, uint32_t block)
{
	int rc = SQLITE_OK;

	if (!*st)
		rc = sqlite3_prepare_v2(cat->db, "DELETE FROM block_rows WHERE id = ?1", -1, st,
					NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_int64(*st, 1, cat->tier_id << 32 | block);
	rc = sqlite3_step(*st);
	sqlite3_reset(*st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int exec_tier(struct kvbm__catalog *cat, const char *sql, int64_t a, int64_t b)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(cat->db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, cat->tier_id);
		sqlite3_bind_int64(st, 2, a);
		sqlite3_bind_int64(st, 3, b);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(cat->db);
	}
	sqlite3_finalize(st);
	return rc;
}

/* Open a second connection on the file for the upper half, or NULL. */
static sqlite3 *open_reader(struct kvbm__catalog *cat)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(cat->mgr->catalog_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 1000);
	return db;
}

/* What kvbm__restore_read found, kept in the catalog until applied. */
struct kvbm__restore {
	struct half h[2];
	uint64_t *mask;
	uint32_t damaged;
};

void kvbm__restore_free(struct kvbm__restore *r)
{
	if (!r)
		return;
	for (int k = 0; k < 2; k++) {
		if (r->h[k].db && r->h[k].db != r->h[k].cat->db)
			sqlite3_close(r->h[k].db);
		for (size_t i = 0; i < r->h[k].n; i++) { /* those not handed over */
			free(r->h[k].rows[i].tokens);
			free(r->h[k].rows[i].key);
		}
		free(r->h[k].rows);
		free(r->h[k].dropped);
	}
	free(r->mask);
	free(r);
}

kvbm_status kvbm__restore_read(struct kvbm__catalog *cat, bool may_split)
{
	kvbm_manager *mgr = cat->mgr;
	const int64_t lo = cat->tier_id << 32, hi = lo | 0xffffffffll;
	struct kvbm__restore *r = calloc(1, sizeof(*r));
	pthread_t thread;
	bool threaded = false;

	if (!r)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot start the restore");
	struct half *h = r->h;
	h[0] = (struct half){.cat = cat, .db = cat->db, .lo = lo, .hi = hi};
	h[1] = (struct half){.cat = cat};
	kvbm_status status = read_reclaims(cat, &r->mask, &h[0].all);
	if (status != KVBM_OK)
		goto fail;
	h[0].mask = h[1].mask = r->mask;
	h[1].all = h[0].all;
	if (may_split && mgr->block_count >= SPLIT_BLOCKS && (h[1].db = open_reader(cat))) {
		h[0].hi = lo + mgr->block_count / 2 - 1;
		h[1].lo = h[0].hi + 1;
		h[1].hi = hi;
		h[1].expect = mgr->block_count / 2 + 1;
		threaded = pthread_create(&thread, NULL, read_half_main, &h[1]) == 0;
		if (!threaded) {
			h[0].hi = hi;
			sqlite3_close(h[1].db);
			h[1].db = NULL;
		}
	}
	h[0].expect = threaded ? mgr->block_count / 2 + 1 : mgr->block_count + 1;
	read_half(&h[0]);
	if (threaded)
		pthread_join(thread, NULL);
	if (h[1].db) {
		sqlite3_close(h[1].db);
		h[1].db = NULL;
	}
	for (int k = 0; k < 2; k++) {
		if (h[k].nomem) {
			status = kvbm__fail(mgr, KVBM_E_NOMEM, "cannot hold the restored rows");
			goto fail;
		}
		if (h[k].rc != SQLITE_OK) {
			status = kvbm__fail(mgr, kvbm__sql_status(h[k].rc),
					    "%s: read catalog rows: %s (sqlite %d)", mgr->catalog_path,
					    h[k].what, h[k].rc);
			goto fail;
		}
		r->damaged += h[k].damaged;
		/* New reclaim rows must outrank every row on disk, whatever the
		 * tier row says (a hand edit, a copied file). */
		if (h[k].max_wseq > cat->write_seq)
			cat->write_seq = h[k].max_wseq;
	}
	kvbm__restore_free(cat->restore);
	cat->restore = r;
	return KVBM_OK;
fail:
	kvbm__restore_free(r);
	return status;
}

kvbm_status kvbm__restore_apply(struct kvbm__catalog *cat)
{
	kvbm_manager *mgr = cat->mgr;
	struct kvbm__restore *r = cat->restore;
	struct half *h = r->h;
	uint32_t restored = 0, vetoed = r->damaged;
	sqlite3_stmt *del = NULL;
	kvbm_status status = KVBM_OK;
	int rc = SQLITE_OK;

	/* Merge the two sorted halves into the core. */
	size_t i0 = 0, i1 = 0;
	const size_t n = h[0].n + h[1].n;
	for (size_t i = 0; i < n; i++) {
		const bool first = i1 == h[1].n ||
				   (i0 < h[0].n && by_evict_key(&h[0].rows[i0], &h[1].rows[i1]) <= 0);
		struct kvbm__image *img = first ? &h[0].rows[i0++] : &h[1].rows[i1++];
		/* Rows come in eviction order, so their hashes and blocks land
		 * at random: start the cache misses of a later row now. */
		const struct half *ahead = first ? &h[0] : &h[1];
		const size_t next = (first ? i0 : i1) + 16;
		if (next < ahead->n && ahead->rows[next].block < mgr->block_count) {
			kvbm__registry_prefetch(&mgr->registry, ahead->rows[next].hash);
			__builtin_prefetch(&mgr->slots[ahead->rows[next].block]);
		}
		bool keep = !mgr->cfg.restore_validate ||
			    mgr->cfg.restore_validate(img->block, img->hash, img->parent,
						      img->position, mgr->cfg.restore_user);
		/* Damaged rows (id out of range, a hash or block given twice)
		 * are refused by the core and deleted like vetoed ones. */
		if (keep && kvbm__restore_block(mgr, img) != KVBM_OK)
			keep = false;
		if (keep) {
			if (img->tokens)
				kvbm__restored_tokens_set(mgr, img->block, img->tokens);
			if (img->key)
				kvbm__restored_key_set(mgr, img->block, img->key);
			img->tokens = NULL;
			img->key = NULL;
			restored++;
			continue;
		}
		free(img->tokens);
		free(img->key);
		img->tokens = NULL;
		img->key = NULL;
		vetoed++;
		if ((rc = delete_row(cat, &del, img->block)) != SQLITE_OK) {
			status = kvbm__sql_fail(mgr, cat->db, rc, "delete a refused row");
			goto out;
		}
	}
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < h[k].n_dropped; i++)
			if ((rc = delete_row(cat, &del, h[k].dropped[i])) != SQLITE_OK) {
				status = kvbm__sql_fail(mgr, cat->db, rc, "delete a reclaimed row");
				goto out;
			}
	if ((rc = exec_tier(cat, "DELETE FROM reclaims WHERE tier_id = ?1 AND ?2 = ?3", 0, 0)) !=
	    SQLITE_OK) {
		status = kvbm__sql_fail(mgr, cat->db, rc, "delete reclaim rows");
		goto out;
	}
	if ((rc = exec_tier(cat,
			    "UPDATE tiers SET restored_blocks = ?2, vetoed_blocks = ?3"
			    " WHERE tier_id = ?1",
			    restored, vetoed)) != SQLITE_OK)
		status = kvbm__sql_fail(mgr, cat->db, rc, "record restore counts");
out:
	sqlite3_finalize(del);
	kvbm__restore_free(r);
	cat->restore = NULL;
	return status;
}
