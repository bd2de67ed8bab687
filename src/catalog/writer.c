/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer thread: owns the catalog's only write connection. Each cycle
 * it tops up the reserve of reclaimed blocks, takes the images of dirty
 * blocks in batches, commits them and reports back to the core. It wakes
 * every cfg.catalog_interval_ms, when the dirty queue reaches a batch,
 * when an allocator waits for free blocks, and on kvbm_flush.
 *
 * It drives checkpoints itself (auto-checkpoint is off): a PASSIVE one once
 * the WAL passes CHECKPOINT_PAGES, and a RESTART attempt when readers have
 * let it grow far past that, so a sqlite3 shell left open cannot grow the
 * WAL without bound. After cfg.catalog_max_failures failed commits in a
 * row it gives the catalog up: the files are renamed aside (rename needs no
 * disk space, and a renamed file is never restored) and the manager goes
 * on in memory.
 */
#include <stdio.h>
#include <time.h>

#include "catalog.h"

#define CHECKPOINT_PAGES 2000

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int wal_hook(void *user, sqlite3 *db, const char *name, int pages)
{
	(void)db;
	(void)name;
	((struct kvbm__catalog *)user)->wal_pages = pages;
	return SQLITE_OK;
}

static void checkpoint(struct kvbm__catalog *cat)
{
	int log = 0, done = 0;

	if (cat->wal_pages < CHECKPOINT_PAGES)
		return;
	sqlite3_wal_checkpoint_v2(cat->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
	if (log - done > 16 * CHECKPOINT_PAGES)
		sqlite3_wal_checkpoint_v2(cat->db, NULL, SQLITE_CHECKPOINT_RESTART, &log, &done);
	cat->wal_pages = log - done;
}

/* Rename db, -wal and -shm aside so no later open restores stale claims. */
static void detach(struct kvbm__catalog *cat)
{
	kvbm_manager *mgr = cat->mgr;
	static const char *const suffix[] = {"", "-wal", "-shm"};
	char from[4096], to[4096];

	sqlite3_finalize(cat->upsert);
	cat->upsert = NULL;
	sqlite3_close_v2(cat->db);
	cat->db = NULL;
	for (int i = 0; i < 3; i++) {
		snprintf(from, sizeof(from), "%s%s", mgr->catalog_path, suffix[i]);
		snprintf(to, sizeof(to), "%s.detached-%llu%s", mgr->catalog_path,
			 (unsigned long long)cat->incarnation, suffix[i]);
		rename(from, to);
	}
	kvbm__fail(mgr, KVBM_E_IO,
		   "catalog %s detached after %u failed commits; renamed to %s.detached-%llu",
		   mgr->catalog_path, cat->consecutive_failures, mgr->catalog_path,
		   (unsigned long long)cat->incarnation);
	kvbm__journal_detach(mgr);
	pthread_mutex_lock(&cat->mu);
	cat->detached = true;
	pthread_cond_broadcast(&cat->flush_cv);
	pthread_mutex_unlock(&cat->mu);
}

/* Commit one batch. Returns KVBM_OK, or the failure already reported to
 * the core. */
static kvbm_status commit_batch(struct kvbm__catalog *cat, uint32_t n, bool clean_shutdown)
{
	const uint64_t t0 = mono_ns();
	const kvbm_status st = kvbm__catalog_write(cat, cat->batch, n, clean_shutdown);

	if (st != KVBM_OK) {
		kvbm__journal_failed(cat->mgr, cat->batch, n, st);
		cat->consecutive_failures++;
		return st;
	}
	kvbm__journal_committed(cat->mgr, cat->batch, n, mono_ns() - t0);
	cat->consecutive_failures = 0;
	checkpoint(cat);
	return KVBM_OK;
}

/* Write what was dirty when called: blocks leave the queue in FIFO order,
 * so taking that many images covers all of them even while new ones keep
 * arriving (a flush under sustained load still completes). Returns the
 * first failure. */
kvbm_status kvbm__writer_drain(struct kvbm__catalog *cat, bool clean_shutdown)
{
	kvbm_manager *mgr = cat->mgr;
	uint64_t budget = UINT64_MAX;
	uint32_t n, pending;

	do {
		kvbm__journal_take(mgr, cat->batch, mgr->cfg.catalog_batch, &n, &pending);
		if (budget == UINT64_MAX)
			budget = (uint64_t)n + pending;
		budget -= n;
		/* The shutdown mark rides on the last batch, even an empty one. */
		const bool last = clean_shutdown && pending == 0;
		if (n == 0 && !last)
			break;
		const kvbm_status st = commit_batch(cat, n, last);
		if (st != KVBM_OK)
			return st;
	} while (pending > 0 && (budget > 0 || clean_shutdown));
	return KVBM_OK;
}

static void cycle(struct kvbm__catalog *cat)
{
	kvbm_manager *mgr = cat->mgr;

	pthread_mutex_lock(&cat->mu);
	const uint64_t ticket = cat->flush_requested;
	pthread_mutex_unlock(&cat->mu);

	kvbm__journal_reclaim(mgr, kvbm__journal_reserve_target(mgr));
	const kvbm_status st = kvbm__writer_drain(cat, false);

	if (st != KVBM_OK && mgr->cfg.catalog_max_failures &&
	    cat->consecutive_failures >= mgr->cfg.catalog_max_failures) {
		detach(cat);
		return;
	}
	pthread_mutex_lock(&cat->mu);
	if (ticket > cat->flush_done) {
		cat->flush_done = ticket;
		cat->flush_status = st;
		pthread_cond_broadcast(&cat->flush_cv);
	}
	pthread_mutex_unlock(&cat->mu);
}

static void *writer_main(void *arg)
{
	struct kvbm__catalog *cat = arg;
	const uint32_t interval = cat->mgr->cfg.catalog_interval_ms;

	pthread_mutex_lock(&cat->mu);
	while (!cat->stopping) {
		if (!cat->woken) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += interval / 1000;
			ts.tv_nsec += (long)(interval % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&cat->wake_cv, &cat->mu, &ts);
		}
		cat->woken = false;
		if (cat->stopping || cat->detached)
			break;
		/* Never hold mu while calling into the core: the core calls
		 * kvbm__catalog_wake with its own lock held. */
		pthread_mutex_unlock(&cat->mu);
		cycle(cat);
		pthread_mutex_lock(&cat->mu);
	}
	pthread_mutex_unlock(&cat->mu);
	return NULL;
}

kvbm_status kvbm__writer_start(struct kvbm__catalog *cat)
{
	sqlite3_wal_hook(cat->db, wal_hook, cat);
	if (pthread_create(&cat->thread, NULL, writer_main, cat) != 0)
		return kvbm__fail(cat->mgr, KVBM_E_NOMEM, "cannot start the catalog writer thread");
	cat->thread_started = true;
	return KVBM_OK;
}

void kvbm__writer_stop(struct kvbm__catalog *cat)
{
	if (!cat->thread_started)
		return;
	pthread_mutex_lock(&cat->mu);
	cat->stopping = true;
	pthread_cond_signal(&cat->wake_cv);
	pthread_mutex_unlock(&cat->mu);
	pthread_join(cat->thread, NULL);
	cat->thread_started = false;
	/* Nobody is left to satisfy a flush that raced with the stop. */
	pthread_mutex_lock(&cat->mu);
	cat->flush_done = cat->flush_requested;
	pthread_cond_broadcast(&cat->flush_cv);
	pthread_mutex_unlock(&cat->mu);
}
