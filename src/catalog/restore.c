/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restore: read the tier's block rows (one rowid range), drop those a
 * reclaim row masks (a block listed by a reclaim row with a higher write
 * sequence than its row's no longer holds that hash), and hand the rest to
 * the core in eviction-key order. Masked and refused rows and the tier's
 * reclaim rows are deleted, so a restored tier starts with no reclaim
 * bookkeeping.
 *
 * Reading is most of a restore's cost, so a large tier is read by two
 * threads: the upper half of the id range on a second, read-only
 * connection, which sees the same rows as long as the open's transaction
 * has not changed any (no migration, no discard). Each thread owns the
 * blocks of its half and writes what their rows hold straight into the
 * slot table (kvbm__restore_stage, kvbm__restore_blank: order-free, and
 * sequential in block order), enters their hashes in the registry
 * (kvbm__restore_claim, safe against the other thread's), and keeps only
 * a 16-byte entry per block to sort by eviction key. kvbm__restore_read
 * runs both; kvbm__restore_apply then merges the two sorted halves into
 * the policy, the part that needs eviction order (and into the registry
 * too when a hash was given twice, which only that order settles).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "reclaim_text.h"
#include "restore_order.h"

/* Below this many blocks a second thread costs more than it saves. */
#define SPLIT_BLOCKS 65536u

/* The columns read_half selects, in this order; then frequency (when
 * selected) and tokens (when selected). */
enum {
	C_ID,
	C_WSEQ,
	C_HASH,
	C_PARENT,
	C_POSITION,
	C_TICK,
	C_COUNT,
	C_PRIORITY,
	C_RETENTION,
	C_ORDER,
	C_KEY,
	C_FREQUENCY,
};

/* What a restored block carries besides its slot, handed to the core once
 * the block is known to be restored. */
struct extra {
	uint32_t block;
	uint32_t *tokens;
	struct kvbm__key *key;
};

struct half {
	struct kvbm__catalog *cat;
	sqlite3 *db;            /* the connection this half reads */
	int64_t lo, hi;         /* id range */
	uint32_t b_lo, b_hi;    /* the blocks it stages or blanks, [b_lo, b_hi) */
	uint32_t next;          /* the first of them not yet written */
	struct kvbm__list part; /* its free blocks, in block order */
	uint32_t pending;       /* staged, its registry claim not yet made */
	uint32_t claimed;       /* registry claims made */
	bool dup;               /* a claim failed: a hash given twice */
	const uint64_t *mask;   /* per block: newest reclaim seq listing it */
	uint64_t all;           /* rows older than this are not trusted */
	struct kvbm__order *order; /* a staged block or stray per row kept */
	size_t n, cap;
	struct kvbm__image *strays; /* rows of ids past block_count, by block */
	size_t n_strays, cap_strays;
	struct extra *extras;   /* tokens and keys of staged blocks, by block */
	size_t n_extras, cap_extras;
	uint32_t *dropped;      /* masked or damaged: deleted afterwards */
	size_t n_dropped, cap_dropped;
	uint32_t damaged;
	uint64_t max_wseq;      /* the newest row's write sequence */
	int rc;                 /* SQLite code of the failure, or SQLITE_OK */
	bool nomem;
	char what[96];
};

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

/* Room for one more entry of size bytes at *p (n used of *cap); the first
 * allocation holds first entries. */
static bool room(void *p, size_t n, size_t *cap, size_t size, size_t first)
{
	void **at = p;

	if (n < *cap)
		return true;
	const size_t grown_cap = *cap ? 2 * *cap : first;
	void *grown = realloc(*at, grown_cap * size);
	if (!grown)
		return false;
	*at = grown;
	*cap = grown_cap;
	return true;
}

/* Blank the half's blocks below b (they have no row, or one not kept). */
static void blank_to(struct half *h, uint32_t b)
{
	kvbm_manager *mgr = h->cat->mgr;

	for (; h->next < b; h->next++)
		kvbm__restore_blank(mgr, &h->part, h->next);
}

/* The key and tokens of the current row, for a block being staged. */
static bool keep_extras(struct half *h, sqlite3_stmt *st, uint32_t block, int c_tokens)
{
	const kvbm_manager *mgr = h->cat->mgr;
	struct kvbm__key *key = NULL;
	uint32_t *tokens = NULL;

	if (sqlite3_column_type(st, C_KEY) == SQLITE_BLOB) {
		const int len = sqlite3_column_bytes(st, C_KEY);
		/* A key of another length is damage: the block restores
		 * without one, as if none was recorded. */
		if (len > 0 && len <= KVBM_KEY_MAX &&
		    !(key = kvbm__key_copy(sqlite3_column_blob(st, C_KEY), (uint32_t)len)))
			return false;
	}
	if (mgr->cfg.catalog_tokens && mgr->cfg.event_sink &&
	    sqlite3_column_type(st, c_tokens) == SQLITE_BLOB) {
		/* Kept for the restart announcement; a damaged blob only
		 * makes it an announcement by hash. */
		const void *blob = sqlite3_column_blob(st, c_tokens);
		const size_t len = (size_t)sqlite3_column_bytes(st, c_tokens);
		if (kvbm__token_copy_valid(blob, len, mgr->block_size) && (tokens = malloc(len)))
			memcpy(tokens, blob, len);
	}
	if (!key && !tokens)
		return true;
	if (!room(&h->extras, h->n_extras, &h->cap_extras, sizeof(*h->extras), 64)) {
		free(key);
		free(tokens);
		return false;
	}
	h->extras[h->n_extras++] = (struct extra){block, tokens, key};
	return true;
}

/* Claim the registry entry of the block staged before block (KVBM__NIL:
 * none follows). Claims lag a row behind, so the entry's cache miss,
 * started at staging, is taken while SQLite steps to the next row. */
static void claim_previous(struct half *h, uint32_t block)
{
	kvbm_manager *mgr = h->cat->mgr;

	if (block != KVBM__NIL)
		kvbm__restore_prefetch_probe(mgr, block);
	if (h->pending != KVBM__NIL && !h->dup) {
		if (kvbm__restore_claim(mgr, h->pending))
			h->claimed++;
		else
			h->dup = true; /* the merge enters them all, in order */
	}
	h->pending = block;
}

/* Read the rows of [lo, hi], stage or blank the half's blocks, sort what
 * was staged. Writes only the slots of the half's own blocks, so two
 * halves can run at once. */
static void read_half(struct half *h)
{
	kvbm_manager *mgr = h->cat->mgr;
	const uint32_t count = mgr->block_count;
	/* Each column costs per row: frequency only for a policy that
	 * keeps frequencies, tokens only with catalog_tokens (see C_*). */
	const bool frequency = kvbm__restore_wants_frequency(mgr);
	char sql[320];
	snprintf(sql, sizeof(sql),
		 "SELECT id, wseq, seq_hash, parent_hash, position, access_tick, access_count,"
		 " priority, retention, evict_key, key%s%s FROM block_rows WHERE id BETWEEN ?1 AND ?2",
		 frequency ? ", frequency" : "", mgr->cfg.catalog_tokens ? ", tokens" : "");
	const int c_tokens = C_FREQUENCY + frequency;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(h->db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(st, 1, h->lo);
	sqlite3_bind_int64(st, 2, h->hi);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const uint32_t block = (uint32_t)(sqlite3_column_int64(st, C_ID) & 0xffffffff);
		const sqlite3_int64 wseq = sqlite3_column_int64(st, C_WSEQ);
		if (wseq > 0 && (uint64_t)wseq > h->max_wseq)
			h->max_wseq = (uint64_t)wseq;
		const bool masked = wseq < 0 || (uint64_t)wseq < h->all ||
				    (h->mask && block < count && (uint64_t)wseq < h->mask[block]);
		/* A NULL hash is damage: never restore it as hash 0. */
		if (masked || sqlite3_column_type(st, C_HASH) != SQLITE_INTEGER) {
			h->damaged += !masked;
			if (!room(&h->dropped, h->n_dropped, &h->cap_dropped, sizeof(*h->dropped),
				  1024)) {
				h->nomem = true;
				goto out;
			}
			h->dropped[h->n_dropped++] = block;
			continue;
		}
		/* A sound tier has at most one row per block of the half: size
		 * for that at once instead of copying while doubling. */
		if (!room(&h->order, h->n, &h->cap, sizeof(*h->order), h->b_hi - h->b_lo + 1)) {
			h->nomem = true;
			goto out;
		}
		const sqlite3_int64 prio = sqlite3_column_int64(st, C_PRIORITY);
		const struct kvbm__image img = {
			.block = block,
			.hash = (kvbm_hash)sqlite3_column_int64(st, C_HASH),
			.parent = (kvbm_hash)sqlite3_column_int64(st, C_PARENT),
			.position = sqlite3_column_type(st, C_POSITION) == SQLITE_NULL
					    ? KVBM_POSITION_UNKNOWN
					    : (uint32_t)sqlite3_column_int64(st, C_POSITION),
			.access_tick = (uint64_t)sqlite3_column_int64(st, C_TICK),
			.access_count = (uint32_t)sqlite3_column_int64(st, C_COUNT),
			.frequency = !frequency		    ? 0
				     : h->cat->foreign_rows ? (uint32_t)sqlite3_column_int64(st, C_COUNT)
							    : (uint32_t)sqlite3_column_int64(st, C_FREQUENCY),
			.priority = prio < 0 || prio > 100 ? KVBM_PRIORITY_DEFAULT : (uint32_t)prio,
			.retention = (uint32_t)sqlite3_column_int64(st, C_RETENTION),
			.evict_key = (uint64_t)sqlite3_column_int64(st, C_ORDER),
		};
		h->order[h->n++] = (struct kvbm__order){img.evict_key, block, img.frequency};
		if (block >= count) {
			/* Refused in eviction order (after the veto callback
			 * has seen it), like any damaged row the core refuses. */
			if (!room(&h->strays, h->n_strays, &h->cap_strays, sizeof(*h->strays), 16)) {
				h->nomem = true;
				goto out;
			}
			h->strays[h->n_strays++] = img;
			continue;
		}
		blank_to(h, block);
		kvbm__restore_stage(mgr, &img);
		h->next = block + 1;
		claim_previous(h, block);
		if (!keep_extras(h, st, block, c_tokens)) {
			h->nomem = true;
			goto out;
		}
	}
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	claim_previous(h, KVBM__NIL);
	blank_to(h, h->b_hi);
	if (h->n > 1) {
		struct kvbm__order *spare = malloc(h->n * sizeof(*spare));
		if (!spare) {
			h->nomem = true;
			goto out;
		}
		struct kvbm__order *sorted = kvbm__order_sort(h->order, spare, h->n);
		free(sorted == h->order ? spare : h->order);
		h->order = sorted;
		h->cap = h->n;
	}
out:
	if (rc != SQLITE_OK && rc != SQLITE_ROW)
		snprintf(h->what, sizeof(h->what), "%s", sqlite3_errmsg(h->db));
	h->rc = rc == SQLITE_ROW ? SQLITE_OK : rc;
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

/* A restored row of another policy's catalog gets this policy's frequency
 * in the open's transaction: the next open, under this policy, reads the
 * rows as its own, and those the run never rewrites would be misread. */
static int rewrite_frequency(struct kvbm__catalog *cat, sqlite3_stmt **st, uint32_t block)
{
	int rc = SQLITE_OK;

	if (!*st)
		rc = sqlite3_prepare_v2(cat->db, "UPDATE block_rows SET frequency = ?2 WHERE id = ?1",
					-1, st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_int64(*st, 1, cat->tier_id << 32 | block);
	sqlite3_bind_int64(*st, 2, kvbm__restore_frequency(cat->mgr, block));
	rc = sqlite3_step(*st);
	sqlite3_reset(*st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
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
	bool claimed;           /* the readers entered every staged hash */
};

void kvbm__restore_free(struct kvbm__restore *r)
{
	if (!r)
		return;
	for (int k = 0; k < 2; k++) {
		if (r->h[k].db && r->h[k].db != r->h[k].cat->db)
			sqlite3_close(r->h[k].db);
		for (size_t i = 0; i < r->h[k].n_extras; i++) { /* those not handed over */
			free(r->h[k].extras[i].tokens);
			free(r->h[k].extras[i].key);
		}
		free(r->h[k].extras);
		free(r->h[k].order);
		free(r->h[k].strays);
		free(r->h[k].dropped);
	}
	free(r->mask);
	free(r);
}

kvbm_status kvbm__restore_read(struct kvbm__catalog *cat, bool may_split)
{
	kvbm_manager *mgr = cat->mgr;
	const int64_t lo = cat->tier_id << 32, hi = lo | 0xffffffffll;
	const uint32_t count = mgr->block_count;
	struct kvbm__restore *r = calloc(1, sizeof(*r));
	pthread_t thread;
	bool threaded = false;

	if (!r)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot start the restore");
	struct half *h = r->h;
	const struct kvbm__list none = {KVBM__NIL, KVBM__NIL, 0};
	h[0] = (struct half){.cat = cat,
			     .db = cat->db,
			     .lo = lo,
			     .hi = hi,
			     .b_hi = count,
			     .part = none,
			     .pending = KVBM__NIL};
	h[1] = (struct half){.cat = cat, .part = none, .pending = KVBM__NIL};
	kvbm_status status = read_reclaims(cat, &r->mask, &h[0].all);
	if (status != KVBM_OK)
		goto fail;
	h[0].mask = h[1].mask = r->mask;
	h[1].all = h[0].all;
	if (may_split && count >= SPLIT_BLOCKS && (h[1].db = open_reader(cat))) {
		h[0].hi = lo + count / 2 - 1;
		h[0].b_hi = h[1].b_lo = h[1].next = count / 2;
		h[1].b_hi = count;
		h[1].lo = h[0].hi + 1;
		h[1].hi = hi;
		threaded = pthread_create(&thread, NULL, read_half_main, &h[1]) == 0;
		if (!threaded) {
			h[0].hi = hi;
			h[0].b_hi = count;
			sqlite3_close(h[1].db);
			h[1].db = NULL;
		}
	}
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
	r->claimed = !h[0].dup && !h[1].dup;
	kvbm__restore_claimed(mgr, r->claimed, h[0].claimed + h[1].claimed);
	kvbm__restore_free(cat->restore);
	cat->restore = r;
	return KVBM_OK;
fail:
	kvbm__restore_free(r);
	return status;
}

static int by_block(const void *key, const void *elem)
{
	const uint32_t b = *(const uint32_t *)key, e = ((const struct kvbm__image *)elem)->block;

	return b < e ? -1 : b > e;
}

/* Does the veto callback keep the row of e? Strays are found by block. */
static bool validate(kvbm_manager *mgr, const struct half *h, const struct kvbm__order *e)
{
	if (!mgr->cfg.restore_validate)
		return true;
	if (e->block < mgr->block_count) {
		struct kvbm__image img;
		kvbm__restore_staged(mgr, e->block, &img);
		return mgr->cfg.restore_validate(e->block, img.hash, img.parent, img.position,
						 mgr->cfg.restore_user);
	}
	const struct kvbm__image *img =
		bsearch(&e->block, h->strays, h->n_strays, sizeof(*h->strays), by_block);
	return mgr->cfg.restore_validate(e->block, img->hash, img->parent, img->position,
					 mgr->cfg.restore_user);
}

/* Tokens and keys of the blocks restored go to the core; the others'
 * are freed. */
static void hand_over_extras(kvbm_manager *mgr, struct half *h)
{
	for (size_t i = 0; i < h->n_extras; i++) {
		struct extra *x = &h->extras[i];
		if (kvbm__restore_restored(mgr, x->block)) {
			if (x->tokens)
				kvbm__restored_tokens_set(mgr, x->block, x->tokens);
			if (x->key)
				kvbm__restored_key_set(mgr, x->block, x->key);
		} else {
			free(x->tokens);
			free(x->key);
		}
	}
	h->n_extras = 0;
}

kvbm_status kvbm__restore_apply(struct kvbm__catalog *cat)
{
	kvbm_manager *mgr = cat->mgr;
	struct kvbm__restore *r = cat->restore;
	struct half *h = r->h;
	uint32_t restored = 0, vetoed = r->damaged;
	sqlite3_stmt *del = NULL, *freq = NULL;
	kvbm_status status = KVBM_OK;
	bool relink = false;
	int rc = SQLITE_OK;
	/* A policy that ignores the column needs no rewrite: it never reads
	 * it, and the next policy that does sees the change of policy too. */
	const bool rewrite = cat->foreign_rows && kvbm__restore_wants_frequency(mgr);

	if (rewrite)
		kvbm__restore_uses(mgr);

	/* Merge the two sorted halves into the core. */
	size_t at[2] = {0, 0};
	const size_t n = h[0].n + h[1].n;
	for (size_t i = 0; i < n; i++) {
		const int k = at[1] == h[1].n ||
				      (at[0] < h[0].n &&
				       !kvbm__order_before(&h[1].order[at[1]], &h[0].order[at[0]]))
			      ? 0
			      : 1;
		const struct kvbm__order *e = &h[k].order[at[k]++];
		/* Entries come in eviction order, so their hashes and blocks
		 * land at random: start the cache misses of a later one now. */
		if (at[k] + 16 < h[k].n) {
			const uint32_t ahead = h[k].order[at[k] + 16].block;
			if (ahead < mgr->block_count)
				kvbm__restore_prefetch(mgr, ahead);
			/* Unclaimed, the registry is probed too: with the hash of
			 * a slot prefetched eight entries ago. */
			const uint32_t near = h[k].order[at[k] + 8].block;
			if (!r->claimed && near < mgr->block_count)
				kvbm__restore_prefetch_probe(mgr, near);
		}
		/* Damaged rows (id out of range, a hash given twice) are
		 * refused by the core and deleted like vetoed ones. */
		if (validate(mgr, &h[k], e) &&
		    kvbm__restore_block(mgr, e->block, e->evict_key, e->frequency, r->claimed) ==
			    KVBM_OK) {
			restored++;
			if (rewrite && (rc = rewrite_frequency(cat, &freq, e->block)) != SQLITE_OK) {
				status = kvbm__sql_fail(mgr, cat->db, rc, "rewrite a frequency");
				goto out;
			}
			continue;
		}
		if (e->block < mgr->block_count) {
			kvbm__restore_unstage(mgr, e->block, r->claimed);
			relink = true;
		}
		vetoed++;
		if ((rc = delete_row(cat, &del, e->block)) != SQLITE_OK) {
			status = kvbm__sql_fail(mgr, cat->db, rc, "delete a refused row");
			goto out;
		}
	}
	const struct kvbm__list parts[2] = {h[0].part, h[1].part};
	kvbm__restore_end(mgr, parts, 2, relink);
	for (int k = 0; k < 2; k++) {
		hand_over_extras(mgr, &h[k]);
		for (size_t i = 0; i < h[k].n_dropped; i++)
			if ((rc = delete_row(cat, &del, h[k].dropped[i])) != SQLITE_OK) {
				status = kvbm__sql_fail(mgr, cat->db, rc, "delete a reclaimed row");
				goto out;
			}
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
	sqlite3_finalize(freq);
	kvbm__restore_free(r);
	cat->restore = NULL;
	return status;
}
