/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening a catalog: create or migrate the schema, check that the file was
 * written for this configuration, bump the incarnation and restore the
 * registry into the manager (rows a reclaim row masks are dropped), all in
 * one transaction, then hand the connection to the writer thread. Also the catalog's side of kvbm_close
 * and kvbm_flush.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "schema_sql.h"

_Static_assert(KVBM__SCHEMA_LATEST == KVBM_SCHEMA_VERSION,
	       "KVBM_SCHEMA_VERSION in kvbm.h must name the newest schema/NNN_*.sql");

#define HASH_ALGORITHM "xxh3-64/dynamo-universal"


static int user_version(sqlite3 *db, int *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		*out = sqlite3_column_int(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Apply every schema file newer than the file's version, inside the open
 * transaction. */
static kvbm_status migrate(kvbm_manager *mgr, sqlite3 *db, bool *migrated)
{
	int version = 0;
	int rc = user_version(db, &version);

	if (rc != SQLITE_OK)
		return kvbm__sql_fail(mgr, db, rc, "read schema version");
	if (version > KVBM__SCHEMA_LATEST)
		return kvbm__fail(mgr, KVBM_E_MISMATCH,
				  "catalog schema version %d is newer than this library's %d", version,
				  KVBM__SCHEMA_LATEST);
	/* user_version is any 32-bit value a file says (found by fuzzing). */
	if (version < 0)
		return kvbm__fail(mgr, KVBM_E_CORRUPT, "catalog schema version %d is not valid",
				  version);
	*migrated = version < KVBM__SCHEMA_LATEST;
	for (int v = version + 1; v <= KVBM__SCHEMA_LATEST; v++) {
		rc = kvbm__sql_exec(db, kvbm__schema[v - 1].sql);
		if (rc != SQLITE_OK)
			return kvbm__sql_fail(mgr, db, rc, "apply schema");
	}
	if (version < KVBM__SCHEMA_LATEST) {
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", KVBM__SCHEMA_LATEST);
		if ((rc = kvbm__sql_exec(db, sql)) != SQLITE_OK)
			return kvbm__sql_fail(mgr, db, rc, "set schema version");
		if ((rc = kvbm__sql_exec(db, "UPDATE tiers SET schema_version = (SELECT "
					     "user_version FROM pragma_user_version)")) != SQLITE_OK)
			return kvbm__sql_fail(mgr, db, rc, "record schema version");
	}
	return KVBM_OK;
}

/* Compare the tier's identity row with the configuration; describe every
 * difference in msg. Returns true when they match. */
static bool identity_matches(kvbm_manager *mgr, sqlite3_stmt *row, char *msg, size_t len)
{
	const kvbm_config *c = &mgr->cfg;
	const char *fp = (const char *)sqlite3_column_text(row, 5);
	const char *want_fp = c->model_fingerprint ? c->model_fingerprint : "";
	size_t used = 0;

#define DIFF(...) (used += (size_t)snprintf(msg + used, used < len ? len - used : 0, __VA_ARGS__))
	if (sqlite3_column_int64(row, 0) != c->block_size)
		DIFF("%sblock_size %u does not match catalog block_size %lld", used ? "; " : "",
		     c->block_size, sqlite3_column_int64(row, 0));
	if (sqlite3_column_int64(row, 1) != c->block_count)
		DIFF("%sblock_count %u does not match catalog block_count %lld", used ? "; " : "",
		     c->block_count, sqlite3_column_int64(row, 1));
	if (sqlite3_column_int64(row, 2) != KVBM_HASH_ENCODING ||
	    sqlite3_column_int64(row, 3) != KVBM_HASH_LOCAL_SEED)
		DIFF("%shash encoding %d seed %u does not match catalog encoding %lld seed %lld",
		     used ? "; " : "", KVBM_HASH_ENCODING, KVBM_HASH_LOCAL_SEED,
		     sqlite3_column_int64(row, 2), sqlite3_column_int64(row, 3));
	if ((uint64_t)sqlite3_column_int64(row, 4) != c->hash_salt)
		DIFF("%shash_salt %016llx does not match catalog hash_salt %016llx",
		     used ? "; " : "", (unsigned long long)c->hash_salt,
		     (unsigned long long)sqlite3_column_int64(row, 4));
	if (strcmp(fp ? fp : "", want_fp) != 0)
		DIFF("%smodel fingerprint '%s' does not match catalog fingerprint '%s'",
		     used ? "; " : "", want_fp, fp ? fp : "");
#undef DIFF
	return used == 0;
}

/* Delete every block row and reclaim row of the tier. */
static int discard_rows(struct kvbm__catalog *cat)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(cat->db, "DELETE FROM block_rows WHERE id BETWEEN ?1 AND ?2",
				    -1, &st, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, cat->tier_id << 32);
		sqlite3_bind_int64(st, 2, cat->tier_id << 32 | 0xffffffffll);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(cat->db);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_OK &&
	    (rc = sqlite3_prepare_v2(cat->db, "DELETE FROM reclaims WHERE tier_id = ?1", -1, &st,
				     NULL)) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, cat->tier_id);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(cat->db);
		sqlite3_finalize(st);
	}
	return rc;
}

static kvbm_status write_identity(struct kvbm__catalog *cat, bool exists)
{
	kvbm_manager *mgr = cat->mgr;
	sqlite3_stmt *st = NULL;
	const int64_t now = kvbm__now_ms();
	int rc = sqlite3_prepare_v2(
		cat->db,
		exists ? "UPDATE tiers SET schema_version = ?2, block_size = ?3, block_count = ?4,"
			 " hash_algorithm = ?5, hash_encoding = ?6, hash_seed = ?7, hash_salt = ?8,"
			 " model_fingerprint = ?9, eviction_policy = ?10, opened_at = ?11,"
			 " incarnation = incarnation + 1, clean_shutdown = 0 WHERE name = ?1"
		       : "INSERT INTO tiers (name, schema_version, block_size, block_count,"
			 " hash_algorithm, hash_encoding, hash_seed, hash_salt, model_fingerprint,"
			 " eviction_policy, created_at, opened_at, incarnation, clean_shutdown)"
			 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, 1, 0)",
		-1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, mgr->tier, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, KVBM__SCHEMA_LATEST);
		sqlite3_bind_int64(st, 3, mgr->block_size);
		sqlite3_bind_int64(st, 4, mgr->block_count);
		sqlite3_bind_text(st, 5, HASH_ALGORITHM, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 6, KVBM_HASH_ENCODING);
		sqlite3_bind_int64(st, 7, KVBM_HASH_LOCAL_SEED);
		sqlite3_bind_int64(st, 8, (sqlite3_int64)mgr->cfg.hash_salt);
		sqlite3_bind_text(st, 9, mgr->model_fingerprint ? mgr->model_fingerprint : "", -1,
				  SQLITE_STATIC);
		sqlite3_bind_text(st, 10, kvbm_evict_policy_name(mgr->cfg.evict_policy), -1,
				  SQLITE_STATIC);
		sqlite3_bind_int64(st, 11, now);
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return kvbm__sql_fail(mgr, cat->db, rc, "write catalog identity");
	if ((rc = sqlite3_prepare_v2(cat->db,
				     "SELECT tier_id, write_seq, incarnation FROM tiers WHERE name = ?1",
				     -1, &st, NULL)) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, mgr->tier, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			cat->tier_id = sqlite3_column_int64(st, 0);
			cat->write_seq = (uint64_t)sqlite3_column_int64(st, 1);
			cat->incarnation = (uint64_t)sqlite3_column_int64(st, 2);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return kvbm__sql_fail(mgr, cat->db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc,
				      "read catalog identity");
	/* Rows are keyed (tier_id << 32) | block_id in a signed 64-bit rowid. */
	if (cat->tier_id < 1 || cat->tier_id > INT32_MAX)
		return kvbm__fail(mgr, KVBM_E_CORRUPT, "catalog %s: tier %s has id %lld",
				  mgr->catalog_path, mgr->tier, (long long)cat->tier_id);
	return KVBM_OK;
}

/* Check (or create) this tier's identity row. */
static kvbm_status check_identity(struct kvbm__catalog *cat, bool *discarded)
{
	kvbm_manager *mgr = cat->mgr;
	sqlite3_stmt *st = NULL;
	char diff[512] = "";
	bool exists = false, matches = true;
	int rc = sqlite3_prepare_v2(cat->db,
				    "SELECT block_size, block_count, hash_encoding, hash_seed,"
				    " hash_salt, model_fingerprint, tier_id, eviction_policy"
				    " FROM tiers WHERE name = ?1",
				    -1, &st, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, mgr->tier, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			exists = true;
			matches = identity_matches(mgr, st, diff, sizeof(diff));
			cat->tier_id = sqlite3_column_int64(st, 6);
			/* The rows were written under the policy of the last
			 * open, which the identity write below replaces. */
			const char *was = (const char *)sqlite3_column_text(st, 7);
			const char *now = kvbm_evict_policy_name(mgr->cfg.evict_policy);
			cat->foreign_rows = was && now && strcmp(was, now) != 0;
			rc = SQLITE_OK;
		} else if (rc == SQLITE_DONE) {
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return kvbm__sql_fail(mgr, cat->db, rc, "read catalog identity");
	if (!matches && !mgr->cfg.catalog_discard_mismatch)
		return kvbm__fail(mgr, KVBM_E_MISMATCH, "catalog %s tier %s: %s", mgr->catalog_path,
				  mgr->tier, diff);
	/* Start cold when this tier's rows describe other blocks. A new
	 * tier's id may have been used by a tier deleted by hand: its rows
	 * must not be mistaken for this tier's either. */
	const kvbm_status st_id = write_identity(cat, exists);
	if (st_id != KVBM_OK)
		return st_id;
	/* A tier whose block memory died with its process holds nothing its
	 * rows describe. */
	*discarded = !matches || !exists || mgr->cfg.memory_volatile;
	if (*discarded) {
		if ((rc = discard_rows(cat)) != SQLITE_OK)
			return kvbm__sql_fail(mgr, cat->db, rc, "discard catalog rows");
	}
	return KVBM_OK;
}

/* A failed open of a path we may not write is a read-only problem. */
static kvbm_status open_failure(kvbm_manager *mgr, sqlite3 *db, int rc, const char *path)
{
	if ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_READONLY) {
		char *copy = strdup(path);
		const char *dir = copy ? dirname(copy) : ".";
		const bool writable = access(dir, W_OK) == 0 &&
				      (access(path, F_OK) != 0 || access(path, W_OK) == 0);
		free(copy);
		if (!writable)
			return kvbm__fail(mgr, KVBM_E_READONLY, "catalog %s is not writable", path);
	}
	return kvbm__sql_fail(mgr, db, rc, "open catalog");
}

static kvbm_status open_db(struct kvbm__catalog *cat)
{
	kvbm_manager *mgr = cat->mgr;
	const char *path = mgr->catalog_path;
	static const char *const sync_pragma[] = {
		[KVBM_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
		[KVBM_SYNC_FULL] = "PRAGMA synchronous = FULL",
		[KVBM_SYNC_OFF] = "PRAGMA synchronous = OFF",
	};
	char msg[512];
	bool is_new;
	kvbm_status st = kvbm__catalog_check_path(path, &is_new, msg, sizeof(msg));

	if (st != KVBM_OK)
		return kvbm__fail(mgr, st, "%s", msg);
	int rc = sqlite3_open_v2(path, &cat->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK)
		return open_failure(mgr, cat->db, rc, path);
	sqlite3_extended_result_codes(cat->db, 1);
	/* Closing must never checkpoint: a refused file's WAL (another
	 * catalog's, say) would be written into it. kvbm_close checkpoints
	 * explicitly once it knows the file is ours. */
	sqlite3_db_config(cat->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	const uint32_t busy_ms = mgr->cfg.catalog_busy_ms;
	sqlite3_busy_timeout(cat->db, busy_ms > INT32_MAX ? INT32_MAX : (int)busy_ms);
	/* Identify before the first write: nothing below runs on a file that
	 * is not (or not yet) a kvbm catalog. */
	if ((st = kvbm__catalog_identify(cat->db, path, is_new, msg, sizeof(msg))) != KVBM_OK)
		return kvbm__fail(mgr, st, "%s", msg);
	if (sqlite3_db_readonly(cat->db, "main") == 1)
		return kvbm__fail(mgr, KVBM_E_READONLY,
				  "catalog %s is read-only (file mode or a read-only mount): a manager "
				  "writes its catalog; kvbm-catalog reads it without writing",
				  path);
	/* The first write to a new file says whose it is, so an open that
	 * fails half way leaves a file the next open recognises as its own. */
	if (is_new && (rc = kvbm__sql_exec(cat->db, KVBM__CLAIM_NEW_FILE)) != SQLITE_OK)
		return open_failure(mgr, cat->db, rc, path);
	cat->new_file = is_new;
	if ((rc = kvbm__sql_exec(cat->db, "PRAGMA journal_mode = WAL")) != SQLITE_OK)
		return (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT
			       ? kvbm__fail(mgr, KVBM_E_CORRUPT, "%s is not a kvbm catalog: %s", path,
					    sqlite3_errmsg(cat->db))
			       : open_failure(mgr, cat->db, rc, path);
	char limit[64];
	snprintf(limit, sizeof(limit), "PRAGMA journal_size_limit = %d", KVBM__WAL_LIMIT_BYTES);
	if ((rc = kvbm__sql_exec(cat->db, sync_pragma[mgr->cfg.catalog_sync])) != SQLITE_OK ||
	    (rc = kvbm__sql_exec(cat->db, "PRAGMA wal_autocheckpoint = 0")) != SQLITE_OK ||
	    (rc = kvbm__sql_exec(cat->db, limit)) != SQLITE_OK)
		return kvbm__sql_fail(mgr, cat->db, rc, "configure catalog");
	return KVBM_OK;
}

/* The file's catalog id (schema 3's catalog table). */
static kvbm_status read_catalog_id(struct kvbm__catalog *cat, int64_t *id)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(cat->db, "SELECT catalog_id FROM catalog WHERE singleton = 1",
				    -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*id = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		} else if (rc == SQLITE_DONE) {
			rc = SQLITE_CORRUPT;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? KVBM_OK
			       : kvbm__fail(cat->mgr, KVBM_E_CORRUPT,
					    "catalog %s has no catalog id: %s", cat->mgr->catalog_path,
					    sqlite3_errmsg(cat->db));
}

/* kvbm__state_read over an open sqlite3_blob. */
static kvbm_status read_blob(void *ctx, size_t off, void *dst, size_t n)
{
	if (n == 0)
		return KVBM_OK;
	return sqlite3_blob_read(ctx, dst, (int)n, (int)off) == SQLITE_OK ? KVBM_OK : KVBM_E_IO;
}

/* The policy state a previous run left for this tier, if it was written by
 * the configured policy (another policy's blob means nothing to this one).
 * Another policy's row is deleted, in the open's transaction: the run that
 * follows evicts by other rules, so that state would be stale by the time
 * its own policy came back (the policy is a runtime choice; the blocks'
 * rows are restored whichever wrote them). */
static kvbm_status read_policy_state(struct kvbm__catalog *cat)
{
	kvbm_manager *mgr = cat->mgr;
	sqlite3_stmt *st = NULL;
	bool other = false;
	/* typeof() and length() leave the blob itself unread. */
	int rc = sqlite3_prepare_v2(cat->db,
				    "SELECT policy, typeof(state) = 'blob', length(state)"
				    " FROM policy_state WHERE tier_id = ?1",
				    -1, &st, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, cat->tier_id);
		rc = sqlite3_step(st);
		const char *policy = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
		const char *want = kvbm_evict_policy_name(mgr->cfg.evict_policy);
		other = rc == SQLITE_ROW && !(policy && want && strcmp(policy, want) == 0);
		const sqlite3_int64 len = rc == SQLITE_ROW && sqlite3_column_int(st, 1)
						  ? sqlite3_column_int64(st, 2)
						  : 0;
		/* Read in pieces, before the restored blocks go in
		 * (kvbm__catalog_finish): adaptive's is 31 MB at 1M blocks
		 * and goes straight into its ghost (evict.h's
		 * state_import_read). A blob the policy refuses (damage,
		 * another block_count) or that cannot be read leaves it as
		 * fresh, which only costs what it had learned. */
		sqlite3_blob *blob = NULL;
		if (!other && policy && len > 0 &&
		    sqlite3_blob_open(cat->db, "main", "policy_state", "state", cat->tier_id, 0,
				      &blob) == SQLITE_OK)
			(void)kvbm__journal_policy_restore_read(mgr, (size_t)len, read_blob, blob);
		sqlite3_blob_close(blob);
		rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_OK && other &&
	    (rc = sqlite3_prepare_v2(cat->db, "DELETE FROM policy_state WHERE tier_id = ?1", -1, &st,
				     NULL)) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, cat->tier_id);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(cat->db);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? KVBM_OK : kvbm__sql_fail(mgr, cat->db, rc, "read policy state");
}

/* After migration, inside the open's transaction: the schema is whole, the
 * lock file belongs to this file, and no other writer owns the tier. */
static kvbm_status check_ownership(struct kvbm__catalog *cat)
{
	kvbm_manager *mgr = cat->mgr;
	char msg[512];
	int64_t id = 0;
	kvbm_status st = kvbm__catalog_check_schema(cat->db, mgr->catalog_path, msg, sizeof(msg));

	if (st != KVBM_OK)
		return kvbm__fail(mgr, st, "%s", msg);
	if ((st = read_catalog_id(cat, &id)) != KVBM_OK)
		return st;
	return kvbm__owner_open(&cat->owner, mgr, mgr->catalog_path, id, cat->new_file);
}

void kvbm__catalog_finalize(struct kvbm__catalog *cat)
{
	sqlite3_stmt **const all[] = {&cat->upsert, &cat->replace, &cat->add_reclaim,
				      &cat->drop_reclaim, &cat->stamp, &cat->stamp_clean,
				      &cat->bump, &cat->put_state};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		sqlite3_finalize(*all[i]);
		*all[i] = NULL;
	}
}

/* The writer's statements, prepared once for the connection's life. */
static kvbm_status prepare_writer(struct kvbm__catalog *cat)
{
	extern const char kvbm__upsert_sql[], kvbm__replace_sql[];
	const struct {
		sqlite3_stmt **st;
		const char *sql;
	} all[] = {
		{&cat->upsert, kvbm__upsert_sql},
		{&cat->replace, kvbm__replace_sql},
		{&cat->add_reclaim, "INSERT INTO reclaims (tier_id, seq, blocks) VALUES (?1, ?2, ?3)"},
		{&cat->drop_reclaim, "DELETE FROM reclaims WHERE rec_id = ?1"},
		{&cat->stamp, "UPDATE tiers SET last_commit_at = ?2, write_seq = ?3 WHERE tier_id = ?1"},
		{&cat->bump, "UPDATE catalog SET commit_seq = commit_seq + 1"},
		{&cat->put_state, "INSERT OR REPLACE INTO policy_state (tier_id, policy, state)"
				  " VALUES (?1, ?2, ?3)"},
		{&cat->stamp_clean, "UPDATE tiers SET last_commit_at = ?2, write_seq = ?3,"
				    " clean_shutdown = 1, last_clean_shutdown_at = ?2 WHERE tier_id = ?1"},
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const int rc = sqlite3_prepare_v3(cat->db, all[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
						  all[i].st, NULL);
		if (rc != SQLITE_OK)
			return kvbm__sql_fail(cat->mgr, cat->db, rc, "prepare the writer's statements");
	}
	return KVBM_OK;
}

static void free_catalog(struct kvbm__catalog *cat)
{
	if (!cat)
		return;
	kvbm__restore_free(cat->restore);
	kvbm__catalog_finalize(cat);
	sqlite3_close_v2(cat->db);
	kvbm__owner_close(&cat->owner);
	if (cat->wal_fd >= 0)
		close(cat->wal_fd);
	pthread_cond_destroy(&cat->wake_cv);
	pthread_cond_destroy(&cat->flush_cv);
	pthread_mutex_destroy(&cat->mu);
	kvbm__reclaims_free(&cat->reclaims);
	free(cat->take.imgs);
	free(cat->take.freed);
	free(cat->listed);
	free(cat->text);
	free(cat);
}

kvbm_status kvbm__catalog_prepare(kvbm_manager *mgr)
{
	struct kvbm__catalog *cat = calloc(1, sizeof(*cat));
	bool migrated = false, discarded = false;
	kvbm_status st;
	int rc;

	if (!cat)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate the catalog");
	cat->mgr = mgr;
	cat->owner.fd = -1;
	cat->wal_fd = -1;
	pthread_mutex_init(&cat->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cat->wake_cv, &ca);
	pthread_cond_init(&cat->flush_cv, &ca);
	pthread_condattr_destroy(&ca);
	cat->take.cap = mgr->cfg.catalog_batch;
	cat->take.imgs = malloc(cat->take.cap * sizeof(*cat->take.imgs));
	/* Every block can wait for a free record at once (kvbm_reset_inactive
	 * of a full cache); a compaction lists those and the outstanding. */
	cat->take.freed_cap = mgr->block_count;
	cat->take.freed = malloc((size_t)mgr->block_count * sizeof(*cat->take.freed));
	cat->listed = malloc(2 * (size_t)mgr->block_count * sizeof(*cat->listed));
	if (!cat->take.imgs || !cat->take.freed || !cat->listed ||
	    !kvbm__reclaims_init(&cat->reclaims, mgr->block_count)) {
		st = kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate the writer's buffers for %u blocks",
				mgr->block_count);
		goto fail;
	}
	if ((st = open_db(cat)) != KVBM_OK)
		goto fail;
	if ((rc = kvbm__sql_exec(cat->db, "BEGIN IMMEDIATE")) != SQLITE_OK) {
		st = (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT
			     ? kvbm__fail(mgr, KVBM_E_CORRUPT, "%s is not a kvbm catalog: %s",
					  mgr->catalog_path, sqlite3_errmsg(cat->db))
			     : kvbm__sql_fail(mgr, cat->db, rc, "lock catalog");
		goto fail;
	}
	if ((st = migrate(mgr, cat->db, &migrated)) != KVBM_OK ||
	    (st = check_ownership(cat)) != KVBM_OK ||
	    (st = check_identity(cat, &discarded)) != KVBM_OK ||
	    (st = kvbm__owner_lock(&cat->owner, mgr, mgr->catalog_path, mgr->tier, cat->tier_id,
				   cat->incarnation)) != KVBM_OK ||
	    (!discarded && (st = read_policy_state(cat)) != KVBM_OK) ||
	    (st = kvbm__restore_read(cat, !migrated && !discarded)) != KVBM_OK)
		goto rollback;
	mgr->catalog = cat;
	return KVBM_OK;
rollback:
	kvbm__sql_exec(cat->db, "ROLLBACK");
fail:
	free_catalog(cat);
	return st;
}

void kvbm__catalog_abort(kvbm_manager *mgr)
{
	struct kvbm__catalog *cat = mgr->catalog;

	if (!cat)
		return;
	kvbm__sql_exec(cat->db, "ROLLBACK");
	mgr->catalog = NULL;
	free_catalog(cat);
}

kvbm_status kvbm__catalog_finish(kvbm_manager *mgr)
{
	struct kvbm__catalog *cat = mgr->catalog;
	kvbm_status st;
	int rc;

	mgr->catalog = NULL; /* the writer starts only once everything is ready */
	/* The policy's learned state went in at the read (read_policy_state),
	 * before its restored blocks. */
	if ((st = kvbm__restore_apply(cat)) != KVBM_OK)
		goto rollback;
	if ((rc = kvbm__sql_exec(cat->db, "COMMIT")) != SQLITE_OK) {
		st = kvbm__sql_fail(mgr, cat->db, rc, "commit catalog open");
		goto rollback;
	}
	if ((st = kvbm__owner_adopt(&cat->owner, mgr, mgr->catalog_path)) != KVBM_OK)
		goto fail;
	/* Rows of blocks evicted in policy order land anywhere in the table:
	 * with SQLite's default 2 MiB page cache a large catalog re-reads
	 * pages from the OS on every batch. ~96 bytes of cache per block holds
	 * the whole table (a row is ~60 bytes), capped at 64 MiB per manager.
	 * Set after the restore, which reads sequentially and would only fill
	 * the cache for nothing. */
	char cache[64];
	const uint64_t cache_kib = (uint64_t)mgr->block_count * 96 / 1024;
	snprintf(cache, sizeof(cache), "PRAGMA cache_size = -%llu",
		 (unsigned long long)(cache_kib < 2048 ? 2048 : cache_kib > 65536 ? 65536 : cache_kib));
	if ((rc = kvbm__sql_exec(cat->db, cache)) != SQLITE_OK) {
		st = kvbm__sql_fail(mgr, cat->db, rc, "size the page cache");
		goto fail;
	}
	if ((st = prepare_writer(cat)) != KVBM_OK)
		goto fail;
	{
		sqlite3_stmt *ps = NULL;
		cat->page_size = 4096;
		if (sqlite3_prepare_v2(cat->db, "PRAGMA page_size", -1, &ps, NULL) == SQLITE_OK &&
		    sqlite3_step(ps) == SQLITE_ROW)
			cat->page_size = sqlite3_column_int(ps, 0);
		sqlite3_finalize(ps);
	}
	mgr->catalog = cat;
	if ((st = kvbm__writer_start(cat)) != KVBM_OK) {
		mgr->catalog = NULL;
		goto fail;
	}
	return KVBM_OK;
rollback:
	kvbm__sql_exec(cat->db, "ROLLBACK");
	/* The core may hold restored blocks; kvbm_open frees the manager. */
fail:
	free_catalog(cat);
	return st;
}

kvbm_status kvbm__catalog_close(kvbm_manager *mgr, bool discard)
{
	struct kvbm__catalog *cat = mgr->catalog;
	kvbm_status st = KVBM_OK;

	if (!cat)
		return KVBM_OK;
	kvbm__writer_stop(cat);
	if (!discard) {
		/* kvbm_close put the reserve back before stopping the writer,
		 * which may have reclaimed again since. */
		kvbm__journal_unreclaim(mgr);
		st = kvbm__writer_drain(cat, true, true);
		/* The file is known to be ours: let the last close checkpoint
		 * and remove the WAL as SQLite does by default. */
		if (st == KVBM_OK) {
			kvbm__sql_exec(cat->db, "PRAGMA wal_checkpoint(TRUNCATE)");
			sqlite3_db_config(cat->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, (int *)NULL);
		}
	}
	mgr->catalog = NULL;
	free_catalog(cat);
	return st;
}

void kvbm__catalog_wake(struct kvbm__catalog *cat)
{
	if (!cat)
		return;
	pthread_mutex_lock(&cat->mu);
	cat->woken = true;
	pthread_cond_signal(&cat->wake_cv);
	pthread_mutex_unlock(&cat->mu);
}

kvbm_status kvbm__catalog_flush(kvbm_manager *mgr)
{
	struct kvbm__catalog *cat = mgr->catalog;

	if (!cat)
		return kvbm__fail(mgr, KVBM_E_MISUSE, "catalog is not attached");
	pthread_mutex_lock(&cat->mu);
	const uint64_t ticket = ++cat->flush_requested;
	cat->woken = true;
	pthread_cond_signal(&cat->wake_cv);
	while (cat->flush_done < ticket)
		pthread_cond_wait(&cat->flush_cv, &cat->mu);
	const kvbm_status st = cat->flush_status;
	pthread_mutex_unlock(&cat->mu);
	return st;
}

uint64_t kvbm__catalog_incarnation(const struct kvbm__catalog *cat)
{
	return cat ? cat->incarnation : 0;
}

kvbm_status kvbm_catalog_check(const char *path, char *errbuf, size_t errlen)
{
	char msg[512] = "";
	sqlite3 *db = NULL;
	bool is_new = false;
	int version = 0;
	kvbm_status st = path ? kvbm__catalog_check_path(path, &is_new, msg, sizeof(msg))
			      : (snprintf(msg, sizeof(msg), "invalid argument: path"), KVBM_E_INVAL);

	if (st == KVBM_OK && is_new) {
		snprintf(msg, sizeof(msg), "%s is empty or missing: not a kvbm catalog", path);
		st = KVBM_E_CORRUPT;
	}
	if (st == KVBM_OK) {
		const int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
		if (rc != SQLITE_OK) {
			snprintf(msg, sizeof(msg), "cannot open %s: %s", path, sqlite3_errmsg(db));
			st = kvbm__sql_status(rc);
		}
	}
	if (st == KVBM_OK) {
		sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
		st = kvbm__catalog_identify(db, path, false, msg, sizeof(msg));
	}
	if (st == KVBM_OK && user_version(db, &version) == SQLITE_OK &&
	    version != KVBM__SCHEMA_LATEST) {
		snprintf(msg, sizeof(msg), "%s has schema %d, this library %d: kvbm-catalog migrate",
			 path, version, KVBM__SCHEMA_LATEST);
		st = KVBM_E_MISMATCH;
	}
	if (st == KVBM_OK)
		st = kvbm__catalog_check_schema(db, path, msg, sizeof(msg));
	sqlite3_close(db);
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "%s", st == KVBM_OK ? "" : msg);
	return st;
}

kvbm_status kvbm_catalog_migrate(const char *path, unsigned flags, int *from, int *to,
				 char *errbuf, size_t errlen)
{
	const bool dry = flags & KVBM_MIGRATE_DRY_RUN;
	sqlite3 *db = NULL;
	kvbm_status st = KVBM_OK;
	int version = 0, rc;

#define FAIL(code, ...) (snprintf(errbuf ? errbuf : (char[1]){0}, errbuf ? errlen : 1, \
				  __VA_ARGS__), st = (code))
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (!path)
		return FAIL(KVBM_E_INVAL, "invalid argument: path");
	char msg[512];
	bool is_new = false;
	if ((st = kvbm__catalog_check_path(path, &is_new, msg, sizeof(msg))) != KVBM_OK)
		return FAIL(st, "%s", msg);
	rc = sqlite3_open_v2(path, &db,
			     SQLITE_OPEN_READWRITE | (flags & KVBM_MIGRATE_CREATE ? SQLITE_OPEN_CREATE : 0),
			     NULL);
	if (rc != SQLITE_OK) {
		FAIL(kvbm__sql_status(rc), "cannot open %s: %s", path, sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	if ((st = kvbm__catalog_identify(db, path, is_new, msg, sizeof(msg))) != KVBM_OK) {
		FAIL(st, "%s", msg);
		goto out;
	}
	if (is_new && !dry && (rc = kvbm__sql_exec(db, KVBM__CLAIM_NEW_FILE)) != SQLITE_OK) {
		FAIL(kvbm__sql_status(rc), "cannot initialise %s: %s", path, sqlite3_errmsg(db));
		goto out;
	}
	if ((rc = kvbm__sql_exec(db, "BEGIN IMMEDIATE")) != SQLITE_OK ||
	    (rc = user_version(db, &version)) != SQLITE_OK) {
		FAIL((rc & 0xff) == SQLITE_NOTADB ? KVBM_E_CORRUPT : kvbm__sql_status(rc),
		     "%s is not a kvbm catalog: %s", path, sqlite3_errmsg(db));
		goto out;
	}
	if (from)
		*from = version;
	if (to)
		*to = version;
	if (version > KVBM__SCHEMA_LATEST) {
		FAIL(KVBM_E_MISMATCH, "catalog schema version %d is newer than this library's %d",
		     version, KVBM__SCHEMA_LATEST);
		goto out;
	}
	if (version < 0) {
		FAIL(KVBM_E_CORRUPT, "%s is not a kvbm catalog: schema version %d", path, version);
		goto out;
	}
	if (dry || version == KVBM__SCHEMA_LATEST)
		goto out;
	bool migrated;
	if ((st = migrate(NULL, db, &migrated)) != KVBM_OK) {
		FAIL(st, "cannot apply schema to %s: %s", path, sqlite3_errmsg(db));
		goto out;
	}
	if ((rc = kvbm__sql_exec(db, "COMMIT")) != SQLITE_OK) {
		FAIL(kvbm__sql_status(rc), "cannot commit migration: %s", sqlite3_errmsg(db));
		goto out;
	}
	kvbm__sql_exec(db, "PRAGMA journal_mode = WAL");
	if (to)
		*to = KVBM__SCHEMA_LATEST;
out:
	if (db && !sqlite3_get_autocommit(db))
		kvbm__sql_exec(db, "ROLLBACK");
	sqlite3_close(db);
	return st;
#undef FAIL
}
