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

struct kvbm__catalog {
	kvbm_manager *mgr;
	sqlite3 *db;             /* the only write connection; owned by the writer
				    thread once it runs */
	sqlite3_stmt *upsert;    /* one block row */
	uint64_t incarnation;
	struct kvbm__image *batch; /* cfg.catalog_batch images */

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;      /* guards the fields below; never held while
				    calling into the core */
	pthread_cond_t wake_cv;  /* writer sleeps here */
	pthread_cond_t flush_cv; /* kvbm_flush callers sleep here */
	bool woken, stopping, detached;
	uint64_t flush_requested, flush_done;
	kvbm_status flush_status;   /* result of the cycle that satisfied flush_done */
	uint32_t consecutive_failures;
	int wal_pages;              /* WAL size after the last commit */
	uint64_t last_stats_ms;
};

/* SQLite result code -> kvbm_status. */
kvbm_status kvbm__sql_status(int rc);
/* Record a SQLite failure on the manager: "<what>: <errmsg> (sqlite <ext code>)". */
kvbm_status kvbm__sql_fail(kvbm_manager *mgr, sqlite3 *db, int rc, const char *what);
/* Run SQL without results; returns a SQLite code. */
int kvbm__sql_exec(sqlite3 *db, const char *sql);
/* Wall clock in unix milliseconds. */
int64_t kvbm__now_ms(void);

/* Write images in one transaction (BEGIN IMMEDIATE ... COMMIT), with the
 * pre-commit hook. Returns KVBM_OK or the failure, which is recorded. */
kvbm_status kvbm__catalog_write(struct kvbm__catalog *cat, const struct kvbm__image *imgs,
				uint32_t n, bool clean_shutdown);
/* Start/stop the writer thread (writer.c). */
kvbm_status kvbm__writer_start(struct kvbm__catalog *cat);
void kvbm__writer_stop(struct kvbm__catalog *cat);
/* Drain every dirty block on the calling thread (close path). */
kvbm_status kvbm__writer_drain(struct kvbm__catalog *cat, bool clean_shutdown);

#endif /* KVBM_CATALOG_H */
