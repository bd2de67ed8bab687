/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A real full disk, not an injected error: the catalog lives on a small
 * tmpfs, and a filler file takes every free byte. Commits then fail with
 * ENOSPC; the writer gives back the lock file's ballast and checkpoints,
 * so reclaims keep committing and allocation keeps evicting within the
 * crash guarantee; the file stays where it was, and once space returns
 * the writer persists everything again, ballast included. A restart
 * restores what was committed, never starts cold.
 *
 * Needs root (mount); skipped with a message otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_common.h"

#define BLOCKS 2048u

struct fixture {
	char *dir;
	char mnt[512], path[600], filler[600];
	bool mounted;
	kvbm_config cfg;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->dir = kvbm_test_tmpdir("diskfull");
	snprintf(f->mnt, sizeof(f->mnt), "%s/mnt", f->dir);
	snprintf(f->path, sizeof(f->path), "%s/catalog.db", f->mnt);
	snprintf(f->filler, sizeof(f->filler), "%s/filler", f->mnt);
	mkdir(f->mnt, 0700);
	f->mounted = mount("tmpfs", f->mnt, "tmpfs", 0, "size=12m") == 0;
	kvbm_config_init(&f->cfg);
	f->cfg.block_count = BLOCKS;
	f->cfg.block_size = 4;
	f->cfg.catalog_path = f->path;
	f->cfg.catalog_sync = KVBM_SYNC_NORMAL;
	f->cfg.catalog_interval_ms = 60000; /* commits only on demand */
	f->cfg.catalog_wait_ms = 2000;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->mounted)
		umount2(f->mnt, MNT_DETACH);
	kvbm_test_rmdir(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static void add_chain(kvbm_manager *mgr, uint32_t first, uint32_t n)
{
	kvbm_mutable m[16];
	kvbm_complete c[16];
	kvbm_immutable r[16];

	assert_int_equal(kvbm_allocate(mgr, n, m), KVBM_OK);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_stage(mgr, m[i], kvbm_hash_chain(0, first + i + 1, true), 4,
					    &c[i]),
				 KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, n, r), KVBM_OK);
	assert_int_equal(kvbm_immutable_release_batch(mgr, r, n), KVBM_OK);
}

/* Take every free byte of the mount. */
static void fill_disk(const char *path)
{
	static char chunk[64 << 10];
	const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	memset(chunk, 0x5a, sizeof(chunk));
	size_t size = sizeof(chunk);
	while (size >= 512) {
		if (write(fd, chunk, size) < 0) {
			assert_int_equal(errno, ENOSPC);
			size /= 2;
		}
	}
	close(fd);
}

static void diskfull__allocation_goes_on_and_nothing_is_lost(void **state)
{
	struct fixture *f = *state;

	if (!f->mounted)
		skip(); /* prints nothing more: cmocka names the skipped test */
	kvbm_manager *mgr = kvbm_test_open_cfg(&f->cfg);
	for (uint32_t i = 0; i < BLOCKS; i += 16)
		add_chain(mgr, i, 16);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK); /* every block claimed */

	fill_disk(f->filler);
	/* Evicting committed blocks needs reclaims to commit: the ballast
	 * makes room for them. Every allocation below evicts. */
	uint32_t registered = 0;
	for (uint32_t i = 0; i < BLOCKS / 2; i += 16) {
		add_chain(mgr, 100000 + i, 16);
		registered += 16;
	}
	kvbm_metrics mt;
	assert_int_equal(kvbm_metrics_read(mgr, &mt), KVBM_OK);
	assert_true(mt.catalog_failures >= 1); /* the disk did fill */
	assert_true(mt.evictions >= registered);
	assert_int_equal(access(f->path, F_OK), 0);
	assert_invariants(mgr);

	/* Space comes back: the writer persists what is queued. */
	assert_int_equal(unlink(f->filler), 0);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(kvbm_metrics_read(mgr, &mt), KVBM_OK);
	assert_int_equal(mt.catalog_failing, 0);
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK); /* a crash */

	mgr = kvbm_test_open_cfg(&f->cfg);
	kvbm_pool_counts c;
	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_true(c.inactive >= BLOCKS - BLOCKS / 8); /* warm, less at most the reserve */
	bool present = false;
	const kvbm_hash last = kvbm_hash_chain(0, 100000 + registered - 16 + 1, true);
	assert_int_equal(kvbm_contains(mgr, &last, 1, &present, NULL, NULL), KVBM_OK);
	assert_true(present); /* written after the disk filled */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(diskfull__allocation_goes_on_and_nothing_is_lost,
						setup, teardown),
	};
	return cmocka_run_group_tests_name("diskfull", tests, NULL, NULL);
}
