/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Catalog fault injection through a SQLite VFS shim (tests/common/
 * fault_vfs.c): open failures, disk full and I/O errors on write and sync,
 * a competing writer holding the lock. In every case the manager keeps
 * serving from memory, reports the failure (return code, message,
 * metrics), keeps the file as committed and recovers once the fault clears,
 * and what was committed before the fault is what a restart restores.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_vfs.h"
#include "test_common.h"

#define BLOCKS 16

static int setup(void **state)
{
	fault_vfs_reset();
	struct kvbm_test_catalog *f = kvbm_test_catalog_new("faults", BLOCKS);

	f->cfg.catalog_sync = KVBM_SYNC_FULL;
	f->cfg.catalog_interval_ms = 60000; /* commits only when the test asks */
	f->cfg.catalog_wait_ms = 200;
	f->cfg.catalog_busy_ms = 50;
	f->cfg.catalog_max_failures = 0; /* never detach unless a test says so */
	f->cfg.catalog_reserve = 1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fault_vfs_reset();
	kvbm_test_catalog_free(*state);
	return 0;
}

/* Open with a full config, asserting success (the message on failure). */
#define open_ok(cfg) kvbm_test_open_cfg(cfg)

static kvbm_hash h_of(uint32_t i)
{
	return kvbm_hash_chain(0, 9000 + i, true);
}

/* Register hashes first..first+n-1 as one chain and release them. */
static kvbm_status add_chain(kvbm_manager *mgr, uint32_t first, uint32_t n)
{
	kvbm_mutable m[BLOCKS];
	kvbm_complete c[BLOCKS];
	kvbm_immutable r[BLOCKS];
	kvbm_status st = kvbm_allocate(mgr, n, m);

	if (st != KVBM_OK)
		return st;
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_stage_lineage(mgr, m[i], h_of(first + i),
						    i ? h_of(first + i - 1) : 0, i, 4, &c[i]),
				 KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, n, r), KVBM_OK);
	for (uint32_t i = n; i-- > 0;)
		assert_int_equal(kvbm_immutable_release(mgr, r[i]), KVBM_OK);
	return KVBM_OK;
}

/* How many of hashes first..first+n-1 the manager holds. */
static uint32_t present(kvbm_manager *mgr, uint32_t first, uint32_t n)
{
	kvbm_hash hs[BLOCKS];
	bool in[BLOCKS];
	uint32_t count = 0;

	for (uint32_t i = 0; i < n; i++)
		hs[i] = h_of(first + i);
	assert_int_equal(kvbm_contains(mgr, hs, n, in, NULL, NULL), KVBM_OK);
	for (uint32_t i = 0; i < n; i++)
		count += in[i];
	return count;
}

static kvbm_metrics metrics(kvbm_manager *mgr)
{
	kvbm_metrics m;

	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	return m;
}

/* Crash (no clean shutdown, nothing more written) and reopen. */
static kvbm_manager *crash_and_reopen(kvbm_manager *mgr, const kvbm_config *cfg)
{
	fault_vfs_reset();
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
	return open_ok(cfg);
}

static void faults__open_failure_is_reported_and_leaves_nothing(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = NULL;
	char err[512] = "";

	fault_vfs_fail_open(SQLITE_IOERR);
	const kvbm_status st = kvbm_open_ex(&f->cfg, &mgr, err, sizeof(err));
	assert_int_not_equal(st, KVBM_OK);
	assert_true(st == KVBM_E_IO || st == KVBM_E_CORRUPT);
	assert_null(mgr);
	if (!strstr(err, f->path))
		fail_msg("message does not name the file: %s", err);
	fault_vfs_reset();
	mgr = open_ok(&f->cfg);
	assert_int_equal(add_chain(mgr, 0, 4), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* The schema's first write fails: open refuses, and a retry succeeds. */
static void faults__disk_full_while_creating(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = NULL;
	char err[512] = "";

	fault_vfs_fail_writes(SQLITE_FULL, 0);
	assert_int_equal(kvbm_open_ex(&f->cfg, &mgr, err, sizeof(err)), KVBM_E_FULL);
	assert_null(mgr);
	fault_vfs_reset();
	mgr = open_ok(&f->cfg);
	assert_int_equal(add_chain(mgr, 0, 3), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	mgr = open_ok(&f->cfg);
	assert_int_equal(present(mgr, 0, 3), 3);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Shared body: a write-path fault set by arm() makes commits fail with
 * want; the manager serves throughout and recovers when it clears. */
static void serve_through_fault(struct kvbm_test_catalog *f, void (*arm)(void), kvbm_status want)
{
	kvbm_manager *mgr = open_ok(&f->cfg);

	assert_int_equal(add_chain(mgr, 0, 4), KVBM_OK);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);

	arm();
	assert_int_equal(add_chain(mgr, 100, 4), KVBM_OK); /* fast path unaffected */
	assert_int_equal(kvbm_flush(mgr), want);
	kvbm_test_assert_error(mgr, want, "");
	kvbm_metrics m = metrics(mgr);
	assert_true(m.catalog_failures >= 1);
	assert_int_equal(m.catalog_last_error, want);
	assert_true(m.catalog_pending >= 4);
	assert_int_equal(present(mgr, 0, 4) + present(mgr, 100, 4), 8); /* memory serves */
	assert_invariants(mgr);

	fault_vfs_reset();
	assert_int_equal(kvbm_flush(mgr), KVBM_OK); /* what failed is retried */
	assert_int_equal(metrics(mgr).catalog_pending, 0);
	mgr = crash_and_reopen(mgr, &f->cfg);
	assert_int_equal(present(mgr, 0, 4), 4);
	assert_int_equal(present(mgr, 100, 4), 4);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void arm_full(void)
{
	fault_vfs_fail_writes(SQLITE_FULL, 0);
}

static void arm_ioerr(void)
{
	fault_vfs_fail_writes(SQLITE_IOERR_WRITE, 0);
}

static void arm_fsync(void)
{
	fault_vfs_fail_sync(SQLITE_IOERR_FSYNC);
}

static void faults__disk_full_on_write_then_recovers(void **state)
{
	serve_through_fault(*state, arm_full, KVBM_E_FULL);
}

static void faults__io_error_on_write_then_recovers(void **state)
{
	serve_through_fault(*state, arm_ioerr, KVBM_E_IO);
}

static void faults__io_error_on_sync_then_recovers(void **state)
{
	serve_through_fault(*state, arm_fsync, KVBM_E_IO);
}

/* A crash while commits fail restores exactly the last committed state. */
static void faults__crash_during_failures_restores_committed_state(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);

	assert_int_equal(add_chain(mgr, 0, 4), KVBM_OK);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	/* Fail mid-transaction: some pages may reach the WAL, no commit does. */
	fault_vfs_fail_writes(SQLITE_FULL, 6000);
	assert_int_equal(add_chain(mgr, 100, 4), KVBM_OK);
	assert_int_not_equal(kvbm_flush(mgr), KVBM_OK);
	assert_true(fault_vfs_injected() > 0);
	mgr = crash_and_reopen(mgr, &f->cfg);
	assert_int_equal(present(mgr, 0, 4), 4);
	assert_int_equal(present(mgr, 100, 4), 0);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Reuse needs a durable reclaim; while commits fail, allocation that must
 * evict waits its bounded time and takes nothing, so a block the catalog
 * still names is never handed out. */
static void faults__eviction_waits_for_a_durable_reclaim(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_mutable m[BLOCKS];
	kvbm_manager *mgr = open_ok(&f->cfg);

	assert_int_equal(add_chain(mgr, 0, BLOCKS), KVBM_OK);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	const uint32_t before = kvbm_available_blocks(mgr);

	fault_vfs_fail_writes(SQLITE_FULL, 0);
	/* Every block is registered, so 8 can only come from evictions. */
	/* Either the writer's own error or, if it has not failed yet, the
	 * bounded wait running out. */
	const kvbm_status st = kvbm_allocate(mgr, 8, m);
	assert_true(st == KVBM_E_FULL || st == KVBM_E_BUSY);
	kvbm_test_assert_error(mgr, st, "catalog writer");
	assert_int_equal(kvbm_available_blocks(mgr), before);
	assert_true(metrics(mgr).catalog_alloc_waits >= 1);
	assert_invariants(mgr);

	fault_vfs_reset();
	/* The flush commits the queued reclaims, so the allocation below
	 * finds its blocks free at once, however slow the writer is. */
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(kvbm_allocate(mgr, 8, m), KVBM_OK);
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	const uint32_t kept = present(mgr, 0, BLOCKS);
	assert_int_equal(kept, BLOCKS - 8);
	/* The evicted hashes must not come back, even after a crash. */
	mgr = crash_and_reopen(mgr, &f->cfg);
	assert_true(present(mgr, 0, BLOCKS) <= kept);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Commits that keep failing: the catalog is never given up. The file
 * stays where it was, as of its last commit; the manager serves from
 * memory, hands out every block no committed row claims, reports the
 * writer's error for the rest, and persists again once the fault clears:
 * the next open restores what was committed, never starts cold. */
static void faults__persistent_failure_keeps_the_file(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_mutable m[BLOCKS];

	f->cfg.catalog_max_failures = 2; /* then retries once a second */
	f->cfg.catalog_wait_ms = 200;
	kvbm_manager *mgr = open_ok(&f->cfg);
	assert_int_equal(add_chain(mgr, 0, BLOCKS / 2), KVBM_OK);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK); /* half the blocks claimed */

	fault_vfs_fail_writes(SQLITE_IOERR_WRITE, 0);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(add_chain(mgr, 1000 + 10 * (uint32_t)i, 1), KVBM_OK);
		assert_int_equal(kvbm_flush(mgr), KVBM_E_IO);
	}
	kvbm_metrics mt = metrics(mgr);
	assert_int_equal(mt.catalog_failing, 1);
	assert_true(mt.catalog_failures >= 6);
	assert_int_equal(access(f->path, F_OK), 0); /* where it was */
	/* Free blocks are served; committed ones cannot be reused before
	 * their reclaim commits, nor can the six whose commit failed (a
	 * failed COMMIT may still have reached the WAL). */
	const uint32_t unclaimed = BLOCKS - BLOCKS / 2 - 6;
	assert_int_equal(kvbm_allocate(mgr, unclaimed, m), KVBM_OK);
	kvbm_mutable more[1];
	assert_int_equal(kvbm_allocate(mgr, 1, more), KVBM_E_IO);
	kvbm_test_assert_error(mgr, KVBM_E_IO, "catalog writer is failing");
	for (uint32_t i = 0; i < unclaimed; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	assert_invariants(mgr);

	fault_vfs_reset();
	assert_int_equal(kvbm_flush(mgr), KVBM_OK); /* resumes */
	assert_int_equal(metrics(mgr).catalog_failing, 0);
	assert_int_equal(kvbm_allocate(mgr, 1, more), KVBM_OK); /* reclaims commit again */
	assert_int_equal(kvbm_mutable_release(mgr, more[0]), KVBM_OK);
	mgr = crash_and_reopen(mgr, &f->cfg);
	assert_true(present(mgr, 0, BLOCKS / 2) >= BLOCKS / 2 - 1);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Another process holds the write lock: commits report BUSY after the
 * configured wait and succeed once it lets go. */
static void faults__competing_writer_busy_then_recovers(void **state)
{
	struct kvbm_test_catalog *f = *state;
	sqlite3 *other = NULL;
	kvbm_manager *mgr = open_ok(&f->cfg);

	assert_int_equal(add_chain(mgr, 0, 4), KVBM_OK);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

	assert_int_equal(add_chain(mgr, 100, 4), KVBM_OK);
	assert_int_equal(kvbm_flush(mgr), KVBM_E_BUSY);
	assert_int_equal(metrics(mgr).catalog_last_error, KVBM_E_BUSY);
	assert_int_equal(present(mgr, 100, 4), 4);

	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	mgr = crash_and_reopen(mgr, &f->cfg);
	assert_int_equal(present(mgr, 100, 4), 4);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A clean close whose final commit fails is reported, and the file is
 * left as a crash would leave it: restorable to the last commit. */
static void faults__failed_clean_close_is_reported(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *mgr = open_ok(&f->cfg);

	assert_int_equal(add_chain(mgr, 0, 4), KVBM_OK);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(add_chain(mgr, 100, 4), KVBM_OK);
	fault_vfs_fail_writes(SQLITE_FULL, 0);
	assert_int_not_equal(kvbm_close(mgr), KVBM_OK);
	fault_vfs_reset();
	mgr = open_ok(&f->cfg);
	assert_int_equal(present(mgr, 0, 4), 4);
	assert_int_equal(present(mgr, 100, 4), 0);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

int main(void)
{
	if (fault_vfs_install() != 0) {
		fprintf(stderr, "cannot install the fault VFS\n");
		return 1;
	}
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(faults__open_failure_is_reported_and_leaves_nothing),
		T(faults__disk_full_while_creating),
		T(faults__disk_full_on_write_then_recovers),
		T(faults__io_error_on_write_then_recovers),
		T(faults__io_error_on_sync_then_recovers),
		T(faults__crash_during_failures_restores_committed_state),
		T(faults__eviction_waits_for_a_durable_reclaim),
		T(faults__persistent_failure_keeps_the_file),
		T(faults__competing_writer_busy_then_recovers),
		T(faults__failed_clean_close_is_reported),
	};
	return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
