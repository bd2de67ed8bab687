/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private state of the write-behind catalog, shared by its files: open and
 * restore (catalog.c), the writer thread (writer.c) and SQLite helpers
 * (sql.c). The core sees none of this; it talks to the catalog only
 * through src/journal.h.
 */
#ifndef KVBM_CATALOG_H
#define KVBM_CATALOG_H

#include <pthread.h>
#include <sqlite3.h>

#include "manager.h"
#include "owner.h"
#include "reclaims.h"

struct kvbm__catalog {
	kvbm_manager *mgr;
	sqlite3 *db;             /* the only write connection; owned by the writer
				    thread once it runs */
	sqlite3_stmt *upsert;    /* one block row */
	sqlite3_stmt *replace;   /* one block row, the first of its registration */
	sqlite3_stmt *add_reclaim, *drop_reclaim, *stamp, *stamp_clean, *bump, *put_state;
	int64_t tier_id;         /* tiers.tier_id: block_rows.id >> 32 */
	uint64_t write_seq;      /* tiers.write_seq of the last commit */
	uint64_t incarnation;
	struct kvbm__take take;  /* the transaction being written */
	struct kvbm__restore *restore; /* rows read by the open, until applied */
	struct kvbm__reclaims reclaims;
	uint32_t *listed;        /* a reclaim row's ids (block_count) */
	char *text;              /* its JSON text */
	size_t text_cap;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;      /* guards the fields below; never held while
				    calling into the core */
	pthread_cond_t wake_cv;  /* writer sleeps here */
	pthread_cond_t flush_cv; /* kvbm_flush callers sleep here */
	bool woken, stopping;
	uint64_t flush_requested, flush_done;
	kvbm_status flush_status;   /* result of the cycle that satisfied flush_done */

	/* writer thread only */
	uint32_t consecutive_failures;
	int wal_pages;              /* WAL frames after the last commit */
	int page_size;
	bool shrink_wal;            /* the disk is full: empty the WAL when it can be */
	bool new_file;              /* the open found the file missing or empty */
	uint32_t commits_since_ballast;
	struct kvbm__owner owner;   /* lock file: ownership, identity, ballast */
	int ckpt_behind;            /* frames the last checkpoint could not copy */
	uint64_t last_stats_ms;
	uint64_t rate_ns, rate_evictions; /* last sample of the eviction counter */
	uint64_t state_evictions;   /* eviction count at the last policy_state write */
	bool foreign_rows;          /* the rows' frequencies are another policy's */
	double evictions_per_s;     /* smoothed */
	double commit_s;            /* smoothed commit duration */
	double row_s;               /* smoothed commit duration per block row */
	int wal_fd;                 /* the WAL file, opened by us for writeback hints
				       (writer.c); -1 not yet, -2 never */
	int wal_hinted;             /* WAL frames when writeback was last started */
};

/* The WAL file is cut back to this size whenever it is reset (SQLite's
 * journal_size_limit) or fully checkpointed with no reader. */
#define KVBM__WAL_LIMIT_BYTES (16 << 20)

/* PRAGMA application_id of a catalog: 'kvbm' (schema/003_narrow_rows.sql). */
#define KVBM__APPLICATION_ID 0x6b76626d
#define KVBM__CLAIM_NEW_FILE "PRAGMA application_id = 1802920557"

/* Before SQLite opens path (identify.c): refuse what is not a regular
 * file; *is_new when it is missing or empty. The message goes to msg. */
kvbm_status kvbm__catalog_check_path(const char *path, bool *is_new, char *msg, size_t len);
/* Before anything writes: is the open file a kvbm catalog (or new)? */
kvbm_status kvbm__catalog_identify(sqlite3 *db, const char *path, bool is_new, char *msg,
				   size_t len);
/* After migration: every table column and view the library uses exists. */
kvbm_status kvbm__catalog_check_schema(sqlite3 *db, const char *path, char *msg, size_t len);

/* SQLite result code -> kvbm_status. */
kvbm_status kvbm__sql_status(int rc);
/* Record a SQLite failure on the manager: "<what>: <errmsg> (sqlite <ext code>)". */
kvbm_status kvbm__sql_fail(kvbm_manager *mgr, sqlite3 *db, int rc, const char *what);
/* Run SQL without results; returns a SQLite code. */
int kvbm__sql_exec(sqlite3 *db, const char *sql);
/* Wall clock in unix milliseconds. */
int64_t kvbm__now_ms(void);

/* Write cat->take in one transaction (BEGIN IMMEDIATE ... COMMIT): its
 * reclaim row first, then its block rows, the deletions of reclaim rows no
 * longer needed, the tier's stamp and stats, the pre-commit hook. Sets
 * cat->take.reclaim_rows and, through *rowid and *compacted, what
 * kvbm__reclaims_committed needs. Returns KVBM_OK or the failure, which
 * is recorded. */
kvbm_status kvbm__catalog_write(struct kvbm__catalog *cat, bool clean_shutdown, int64_t *rowid,
				bool *compacted, uint32_t *n_listed);
/* Restore the tier's registry inside the open's transaction (restore.c),
 * in two steps. read: the rows, masked by the reclaim rows and sorted by
 * eviction key, into cat->restore; touches no manager state. may_split:
 * the transaction changed no block rows yet, so a second connection sees
 * the same rows and can read half of them on another thread. apply: hand
 * them to the core, delete the rows it refused and the reclaim rows;
 * frees cat->restore either way. */
struct kvbm__restore;
kvbm_status kvbm__restore_read(struct kvbm__catalog *cat, bool may_split);
kvbm_status kvbm__restore_apply(struct kvbm__catalog *cat);
void kvbm__restore_free(struct kvbm__restore *r);
/* Finalize the prepared statements (catalog.c). */
void kvbm__catalog_finalize(struct kvbm__catalog *cat);
/* Start/stop the writer thread (writer.c). */
kvbm_status kvbm__writer_start(struct kvbm__catalog *cat);
void kvbm__writer_stop(struct kvbm__catalog *cat);
/* Write what is dirty at the call, on the calling thread: the oldest rows
 * first for a flush or a clean shutdown (which also writes what arrives
 * meanwhile), else the newest first. */
kvbm_status kvbm__writer_drain(struct kvbm__catalog *cat, bool clean_shutdown, bool flush);

#endif /* KVBM_CATALOG_H */
