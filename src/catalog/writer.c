/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer thread: owns the catalog's only write connection. Each cycle
 * it tops up the reserve of reclaimed blocks, takes the blocks waiting
 * for a free record and the images of dirty blocks in batches, commits
 * them (reclaims first) and reports back to the core. It wakes
 * every cfg.catalog_interval_ms, when the dirty queue reaches a batch,
 * when an allocator waits for free blocks, and on kvbm_flush.
 *
 * It drives checkpoints itself (auto-checkpoint is off): a PASSIVE one once
 * the WAL passes CHECKPOINT_PAGES, retried on idle cycles while a reader
 * keeps frames pinned, and a TRUNCATE (without waiting) once everything is
 * copied, so the WAL file shrinks back as soon as a long reader is gone.
 *
 * It never gives the catalog up. A failed commit leaves the file as it was
 * at its last commit; the writer retries with a growing delay (10 ms,
 * doubling, once a second after cfg.catalog_max_failures failures in a
 * row), and on a full disk first gives back the sidecar's ballast and
 * checkpoints, so the small reclaim commits that allocation needs can
 * still land.
 */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"

/* The WAL is checkpointed once it holds this many frames (~4 MiB of 4 KiB
 * pages), and its file is cut back to KVBM__WAL_LIMIT_BYTES whenever no
 * reader holds it open (catalog.c sets journal_size_limit to that). */
#define CHECKPOINT_PAGES 1000

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

/* PASSIVE never waits for readers: it copies what no reader still needs.
 * Once a checkpoint has copied everything, a TRUNCATE without a busy wait
 * empties the WAL file if no reader holds it; if one does, the next commit
 * restarts the WAL from its start and journal_size_limit cuts the file. */
static void checkpoint(struct kvbm__catalog *cat, bool idle)
{
	int log = 0, done = 0;

	if (cat->wal_pages < CHECKPOINT_PAGES && !(idle && cat->ckpt_behind > 0))
		return;
	if (sqlite3_wal_checkpoint_v2(cat->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) !=
	    SQLITE_OK) {
		cat->ckpt_behind = cat->wal_pages > 0 ? cat->wal_pages : 1;
		return;
	}
	if (log > 0 && done == log &&
	    ((int64_t)log * cat->page_size > KVBM__WAL_LIMIT_BYTES || cat->shrink_wal)) {
		sqlite3_busy_timeout(cat->db, 0);
		if (sqlite3_wal_checkpoint_v2(cat->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log,
					      &done) == SQLITE_OK) {
			log = done = 0;
			cat->shrink_wal = false;
		}
		const uint32_t busy_ms = cat->mgr->cfg.catalog_busy_ms;
		sqlite3_busy_timeout(cat->db, busy_ms > INT32_MAX ? INT32_MAX : (int)busy_ms);
	}
	cat->ckpt_behind = log - done > 0 ? log - done : 0;
	/* Frames a reader still pins count as the WAL's size until it lets
	 * go: retry on idle cycles rather than waiting for the next commit. */
	cat->wal_pages = cat->ckpt_behind;
}

/* With synchronous=NORMAL a commit writes its frames to the page cache
 * only, and the checkpoint's fsync of the WAL then writes them all out
 * while the writer waits (~2 ms per 1,000 frames here), which an
 * allocation outrunning the reserve waits for too. Starting the writeback
 * of every WAL_HINT_PAGES new frames right away (without waiting for it)
 * leaves that fsync little to do. Only while commits carry reclaims under
 * eviction pressure, when allocations would wait: it costs the writer the
 * writeback's submission, which otherwise happens inside the checkpoint,
 * and a drain of fresh rows or a full cache serving hits keep their pace.
 * The hint goes to a descriptor of our own:
 * SQLite locks the database and -shm files, never the WAL, so opening and
 * closing one cannot drop its locks, and a writeback error still reaches
 * SQLite's own fsync (each descriptor sees it). FULL syncs every commit and
 * OFF never syncs: neither needs it. */
#define WAL_HINT_PAGES 64

static void hint_writeback(struct kvbm__catalog *cat)
{
#ifdef SYNC_FILE_RANGE_WRITE
	if (cat->mgr->cfg.catalog_sync != KVBM_SYNC_NORMAL || !cat->take.pressure ||
	    cat->take.n_freed == 0 || cat->wal_fd == -2)
		return;
	if (cat->wal_pages < cat->wal_hinted) /* the WAL restarted from its start */
		cat->wal_hinted = 0;
	if (cat->wal_pages - cat->wal_hinted < WAL_HINT_PAGES)
		return;
	if (cat->wal_fd == -1) {
		char path[4096];
		const int n = snprintf(path, sizeof(path), "%s-wal", cat->mgr->catalog_path);
		cat->wal_fd = n > 0 && (size_t)n < sizeof(path) ? open(path, O_RDONLY | O_CLOEXEC) : -1;
		if (cat->wal_fd < 0) {
			cat->wal_fd = -2; /* only a hint: go without */
			return;
		}
	}
	if (sync_file_range(cat->wal_fd, 0, 0, SYNC_FILE_RANGE_WRITE) != 0) {
		close(cat->wal_fd);
		cat->wal_fd = -2;
		return;
	}
	cat->wal_hinted = cat->wal_pages;
#else
	(void)cat;
#endif
}

/* How many reclaimed blocks to keep ready. Allocations consume the reserve
 * at the eviction rate; the writer is woken when it falls to half, and
 * refills it within about two commits (the one in flight, then the one
 * carrying the new reclaims), so half the target must cover the evictions
 * of two commits, with room for the largest allocation seen. */
static uint32_t reserve_target(struct kvbm__catalog *cat, uint64_t now)
{
	kvbm_manager *mgr = cat->mgr;
	const uint32_t fixed = mgr->cfg.catalog_reserve;
	const uint64_t evictions = cat->take.evictions;
	if (cat->rate_ns && now > cat->rate_ns) {
		const double dt = (double)(now - cat->rate_ns) / 1e9;
		const double rate = (double)(evictions - cat->rate_evictions) / dt;
		/* Rise at once, decay over about ten cycles. */
		cat->evictions_per_s =
			rate > cat->evictions_per_s ? rate : 0.9 * cat->evictions_per_s + 0.1 * rate;
	}
	cat->rate_ns = now;
	cat->rate_evictions = evictions;
	if (fixed)
		return fixed;
	const double commit_s = cat->commit_s > 1e-3 ? cat->commit_s : 1e-3;
	const double want = 4.0 * cat->evictions_per_s * commit_s +
			    2.0 * (double)kvbm__journal_peak_request(mgr);
	/* At most an eighth of the cache: reclaimed blocks stay matchable,
	 * but a crash does not restore them. */
	const uint32_t hi = mgr->block_count / 8 > 1 ? mgr->block_count / 8 : 1;
	const uint32_t lo = hi < 16 ? hi : 16;
	return want < lo ? lo : want > hi ? hi : (uint32_t)want;
}

/* Under eviction pressure, how many rows one commit may carry: as many as
 * the writer commits while allocations use up half the reserve, so the
 * wake at half (alloc.c) finds the writer between commits, not inside a
 * long one, and the reclaims the allocations need go out before the
 * reserve runs dry. A batch of 512 rows took ~0.5 ms while an unpaced
 * replay used up 1,024 reserved blocks in ~0.45 ms, so nearly every refill
 * came too late (docs/BENCHMARKS.md, "Python binding and kvbm.vllm").
 * Rows left behind are written later, or never if their block is evicted
 * first (then none is needed). */
static uint32_t pressure_cap(const struct kvbm__catalog *cat, uint32_t reserve)
{
	if (cat->evictions_per_s <= 0 || cat->row_s <= 0)
		return 512;
	const double rows = 0.5 * reserve / cat->evictions_per_s / cat->row_s;
	return rows < 32 ? 32 : rows > 512 ? 512 : (uint32_t)rows;
}

/* Commit one take. Returns KVBM_OK, or the failure already reported to
 * the core. */
static kvbm_status commit_take(struct kvbm__catalog *cat, bool clean_shutdown)
{
	const uint64_t t0 = mono_ns();
	int64_t rowid;
	bool compacted;
	uint32_t n_listed;
	const kvbm_status st =
		kvbm__catalog_write(cat, clean_shutdown, &rowid, &compacted, &n_listed);

	if (st != KVBM_OK) {
		kvbm__journal_failed(cat->mgr, &cat->take, st);
		cat->consecutive_failures++;
		if (st == KVBM_E_FULL) {
			/* Make room for the next attempt: the ballast, and the WAL if
			 * no reader pins it (a checkpoint that cannot run is fine). */
			kvbm__owner_release_ballast(&cat->owner);
			cat->ckpt_behind = cat->wal_pages > 0 ? cat->wal_pages : 1;
			cat->shrink_wal = true;
		}
		return st;
	}
	/* Out of memory here only keeps reclaim rows until the next restore. */
	kvbm__reclaims_committed(&cat->reclaims, rowid, compacted, cat->listed, n_listed,
				 cat->take.imgs, cat->take.n_written);
	const uint64_t dt = mono_ns() - t0;
	cat->commit_s = cat->commit_s == 0 ? dt / 1e9 : 0.8 * cat->commit_s + 0.2 * (dt / 1e9);
	if (cat->take.n_written >= 32) { /* a commit's fixed cost stays out of the per-row figure */
		const double per_row = dt / 1e9 / cat->take.n_written;
		cat->row_s = cat->row_s == 0 ? per_row : 0.8 * cat->row_s + 0.2 * per_row;
	}
	kvbm__journal_committed(cat->mgr, &cat->take, dt);
	cat->consecutive_failures = 0;
	hint_writeback(cat); /* after the report: allocations need that first */
	checkpoint(cat, false);
	/* Space came back: set the ballast aside again (cheap to retry). */
	if (!cat->owner.ballast && cat->commits_since_ballast++ >= 64) {
		cat->commits_since_ballast = 0;
		kvbm__owner_restore_ballast(&cat->owner);
	}
	return KVBM_OK;
}

/* Write what was dirty when called. For a flush blocks leave the queue
 * oldest first, so taking that many images covers all of them even while
 * new ones keep arriving (a flush under sustained load still completes);
 * otherwise newest first, at most that many. Returns the first failure. */
kvbm_status kvbm__writer_drain(struct kvbm__catalog *cat, bool clean_shutdown, bool flush)
{
	kvbm_manager *mgr = cat->mgr;
	struct kvbm__take *t = &cat->take;
	uint64_t budget = UINT64_MAX;

	t->oldest_first = flush || clean_shutdown;

	do {
		/* A clean shutdown persists the reserve as registered blocks
		 * (kvbm_close put them back): reclaim none now. */
		const uint32_t reserve = clean_shutdown ? 0 : reserve_target(cat, mono_ns());
		t->pressure_cap = pressure_cap(cat, reserve);
		/* Under one eviction a second on average: the rate decays by a
		 * tenth a cycle, so it takes a few seconds without any. */
		t->evicting = cat->evictions_per_s >= 1.0;
		kvbm__journal_take(mgr, reserve, t);
		if (budget == UINT64_MAX)
			budget = (uint64_t)t->n + t->n_freed + t->pending;
		budget -= t->n + t->n_freed < budget ? t->n + t->n_freed : budget;
		/* The shutdown mark rides on the last batch, even an empty one;
		 * doomed reclaim rows ride on any. */
		const bool last = clean_shutdown && t->pending == 0;
		if (t->n == 0 && t->n_freed == 0 && !last && cat->reclaims.n_doomed == 0)
			break;
		const kvbm_status st = commit_take(cat, last);
		if (st != KVBM_OK)
			return st;
		/* Rows given back to a waiting allocation are still to write. */
		const uint32_t left = t->n - t->n_written;
		t->pending += left;
		budget += left;
	} while (t->pending > 0 && (budget > 0 || clean_shutdown));
	return KVBM_OK;
}

static void cycle(struct kvbm__catalog *cat)
{
	pthread_mutex_lock(&cat->mu);
	const uint64_t ticket = cat->flush_requested;
	const bool flushing = ticket > cat->flush_done;
	pthread_mutex_unlock(&cat->mu);

	const kvbm_status st = kvbm__writer_drain(cat, false, flushing);

	/* Also after a failed commit, and when there was nothing to write:
	 * a reader that pinned the WAL may have left since. */
	checkpoint(cat, true);
	pthread_mutex_lock(&cat->mu);
	if (ticket > cat->flush_done) {
		cat->flush_done = ticket;
		cat->flush_status = st;
		pthread_cond_broadcast(&cat->flush_cv);
	}
	pthread_mutex_unlock(&cat->mu);
}

/* After k failed commits in a row, the next attempt waits 10 ms << k (at
 * most a second; once a second from cfg.catalog_max_failures on), even
 * when woken: waiting allocations and flushes would otherwise spin on a
 * disk that fails at once. */
static uint64_t retry_delay_ns(const struct kvbm__catalog *cat)
{
	const uint32_t k = cat->consecutive_failures, max = cat->mgr->cfg.catalog_max_failures;
	if (k == 0)
		return 0;
	if ((max && k >= max) || k > 6)
		return 1000000000ull;
	return 10000000ull << (k - 1);
}

static void deadline_in(struct timespec *ts, uint64_t ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ns += (uint64_t)ts->tv_nsec;
	ts->tv_sec += (time_t)(ns / 1000000000ull);
	ts->tv_nsec = (long)(ns % 1000000000ull);
}

static void *writer_main(void *arg)
{
	struct kvbm__catalog *cat = arg;
	const uint64_t every = (uint64_t)cat->mgr->cfg.catalog_interval_ms * 1000000ull;

	pthread_mutex_lock(&cat->mu);
	while (!cat->stopping) {
		struct timespec ts;
		const uint64_t retry = retry_delay_ns(cat);
		if (retry) {
			/* Failing: retry after the delay, woken or not. */
			deadline_in(&ts, retry);
			while (!cat->stopping &&
			       pthread_cond_timedwait(&cat->wake_cv, &cat->mu, &ts) == 0)
				;
		} else if (!cat->woken) {
			deadline_in(&ts, every);
			pthread_cond_timedwait(&cat->wake_cv, &cat->mu, &ts);
		}
		cat->woken = false;
		if (cat->stopping)
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
