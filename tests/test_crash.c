/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The crash guarantee, tested the hard way. A child process runs a random
 * workload against a manager with a catalog; for every block it allocates
 * it first writes "this block now holds hash H" into a physical file (a
 * stand-in for KV memory), then stages and registers it. The parent kills
 * the child with SIGKILL at a random point of its progress (reported over a
 * pipe, so no sleeps), reopens the catalog and checks that every restored
 * block's physical record equals the hash the catalog restored for it:
 * the catalog never claims a hash for a block whose contents were reused.
 * The same catalog carries on from kill to kill, so later rounds start
 * from restored state. In a quarter of the rounds the parent also tries to
 * open the catalog as a second writer mid-run, which must be refused; with
 * KVBM_CRASH_DISKFULL the catalog's disk also fills up at random moments.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"

/* The default run: a small manager, so kills land in every phase of its
 * life many times over. The long suite also runs a 1M-block manager
 * (KVBM_CRASH_BLOCKS and friends), where fill and eviction cross many
 * writer batches and the restore reads the tier in two halves. */
static uint32_t n_blocks = 48, n_chains = 40, chain_len = 6, max_steps = 400;
#define MAX_CHAIN_LEN 16u

static uint32_t env_u32(const char *name, uint32_t dflt)
{
	const char *v = getenv(name);
	return v && *v ? (uint32_t)strtoul(v, NULL, 10) : dflt;
}

#define MAGIC 0x6b76626d72656331ull

static char *dir;
static char db_path[700], phys_path[512], filler_path[700];

/* Take every free byte of the catalog's filesystem. */
static void fill_disk(void)
{
	static char chunk[64 << 10];
	const int fd = open(filler_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t size = sizeof(chunk);

	assert_true(fd >= 0);
	while (size >= 512)
		if (write(fd, chunk, size) < 0)
			size /= 2;
	close(fd);
}

static kvbm_manager *open_catalog(void)
{
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;
	char err[256];

	kvbm_config_init(&cfg);
	cfg.block_count = n_blocks;
	cfg.block_size = 4;
	cfg.catalog_path = db_path;
	if (n_blocks <= 4096) {
		/* Tiny batches and a busy writer put kills between many commits. */
		cfg.catalog_interval_ms = 2;
		cfg.catalog_batch = 16;
		cfg.catalog_reserve = 4;
	}
	const kvbm_status st = kvbm_open_ex(&cfg, &mgr, err, sizeof(err));
	if (st != KVBM_OK)
		fprintf(stderr, "open: %s\n", err);
	assert_int_equal(st, KVBM_OK);
	return mgr;
}

static kvbm_hash chain_hash(uint32_t chain, uint32_t pos)
{
	kvbm_hash h = 0;
	for (uint32_t i = 0; i <= pos; i++)
		h = kvbm_hash_chain(h, (kvbm_hash)chain * 1000 + i + 1, i == 0);
	return h;
}

/* The child: requests of random chains, forever, until killed. */
static void child_workload(int phys, int progress, uint64_t seed)
{
	kvbm_manager *mgr = open_catalog();
	kvbm_mutable mut[MAX_CHAIN_LEN];
	kvbm_complete done[MAX_CHAIN_LEN];
	kvbm_immutable refs[MAX_CHAIN_LEN], rev[MAX_CHAIN_LEN];
	kvbm_hash hashes[MAX_CHAIN_LEN];

	for (;;) {
		const uint32_t chain = (uint32_t)(kvbm_test_rand(&seed) % n_chains);
		const uint32_t len = 1 + (uint32_t)(kvbm_test_rand(&seed) % chain_len);
		uint32_t hit = 0;
		for (uint32_t i = 0; i < len; i++)
			hashes[i] = chain_hash(chain, i);
		if (kvbm_match(mgr, hashes, len, refs, &hit) != KVBM_OK)
			_exit(3);
		const uint32_t miss = len - hit;
		if (miss > 0) {
			const kvbm_status st = kvbm_allocate(mgr, miss, mut);
			if (st == KVBM_E_FULL || st == KVBM_E_IO || st == KVBM_E_BUSY) {
				/* A full disk the writer could not make room on: the
				 * request goes uncached, as a server would serve it. */
				if (hit && kvbm_immutable_release_batch(mgr, refs, hit) != KVBM_OK)
					_exit(11);
				const char tick = 1;
				if (write(progress, &tick, 1) != 1)
					_exit(10);
				continue;
			}
			if (st != KVBM_OK)
				_exit(4);
			for (uint32_t i = 0; i < miss; i++) {
				const uint32_t pos = hit + i;
				/* The data write happens before kvbm learns the hash. */
				const struct kvbm_test_record r = {MAGIC, hashes[pos]};
				if (pwrite(phys, &r, sizeof(r), (off_t)mut[i].block * sizeof(r)) !=
				    (ssize_t)sizeof(r))
					_exit(5);
				if (kvbm_stage_lineage(mgr, mut[i], hashes[pos],
						       pos ? hashes[pos - 1] : 0, pos, 4,
						       &done[i]) != KVBM_OK)
					_exit(6);
			}
			if (kvbm_register_batch(mgr, done, miss, refs + hit) != KVBM_OK)
				_exit(7);
		}
		for (uint32_t i = 0; i < len; i++)
			rev[i] = refs[len - 1 - i];
		if (kvbm_immutable_release_batch(mgr, rev, len) != KVBM_OK)
			_exit(8);
		if (kvbm_test_rand(&seed) % 16 == 0) {
			const kvbm_status st = kvbm_flush(mgr);
			if (st != KVBM_OK && st != KVBM_E_FULL && st != KVBM_E_IO)
				_exit(9);
		}
		const char tick = 1;
		if (write(progress, &tick, 1) != 1)
			_exit(10);
	}
}

/* Try to open the catalog while another process owns it. */
static kvbm_status second_owner(void)
{
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;

	kvbm_config_init(&cfg);
	cfg.block_count = n_blocks;
	cfg.block_size = 4;
	cfg.catalog_path = db_path;
	const kvbm_status st = kvbm_open_ex(&cfg, &mgr, NULL, 0);
	if (st == KVBM_OK)
		kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD);
	return st;
}

/* Every restored block's physical record names the restored hash. */
static uint32_t check_restored(void)
{
	kvbm_manager *mgr = open_catalog();
	const uint32_t restored = kvbm_test_check_data(mgr, n_blocks, phys_path, MAGIC);

	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
	return restored;
}

static void crash__restored_blocks_match_their_data(void **state)
{
	(void)state;
	const int kills = (int)env_u32("KVBM_CRASH_KILLS", 60);
	n_blocks = env_u32("KVBM_CRASH_BLOCKS", n_blocks);
	n_chains = env_u32("KVBM_CRASH_CHAINS", n_chains);
	max_steps = env_u32("KVBM_CRASH_STEPS", max_steps);
	chain_len = env_u32("KVBM_CRASH_CHAIN_LEN", chain_len);
	assert_true(chain_len >= 1 && chain_len <= MAX_CHAIN_LEN && n_blocks >= chain_len);
	uint64_t seed = kvbm_test_seed("crash");
	uint64_t total_restored = 0;
	uint32_t intrusions = 0;

	dir = kvbm_test_tmpdir("crash");
	assert_non_null(dir);
	/* KVBM_CRASH_DISKFULL: the catalog on a small tmpfs that the parent
	 * fills at random moments of a third of the rounds (the stand-in for
	 * KV memory stays off it, so only the catalog meets the full disk). */
	char mnt[600];
	bool diskfull = env_u32("KVBM_CRASH_DISKFULL", 0) != 0;
	uint32_t fills = 0;
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	if (diskfull) {
		assert_int_equal(mkdir(mnt, 0700), 0);
		if (mount("tmpfs", mnt, "tmpfs", 0, "size=16m") != 0) {
			fprintf(stderr, "crash: cannot mount a tmpfs (%s): skipped\n", strerror(errno));
			kvbm_test_rmdir(dir);
			free(dir);
			skip();
		}
	}
	snprintf(db_path, sizeof(db_path), "%s/catalog.db", diskfull ? mnt : dir);
	snprintf(filler_path, sizeof(filler_path), "%s/filler", mnt);
	snprintf(phys_path, sizeof(phys_path), "%s/physical", dir);
	const int phys = open(phys_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(phys >= 0);

	for (int k = 0; k < kills; k++) {
		int fds[2];
		assert_int_equal(pipe(fds), 0);
		const uint64_t child_seed = kvbm_test_rand(&seed);
		const uint32_t steps = 1 + (uint32_t)(kvbm_test_rand(&seed) % max_steps);
		const pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			child_workload(phys, fds[1], child_seed);
			_exit(0);
		}
		close(fds[1]);
		char buf[64];
		uint32_t seen = 0;
		bool intrude = kvbm_test_rand(&seed) % 4 == 0;
		bool fill = diskfull && kvbm_test_rand(&seed) % 3 == 0;
		const uint32_t fill_at = fill ? (uint32_t)(kvbm_test_rand(&seed) % steps) : 0;
		while (seen < steps) {
			const ssize_t got = read(fds[0], buf, sizeof(buf));
			if (got <= 0)
				break; /* the child died: its exit status says why */
			seen += (uint32_t)got;
			if (fill && seen >= fill_at) {
				fill = false;
				fills++;
				fill_disk();
			}
			if (intrude && seen >= steps / 2) {
				/* A second writer while the child owns the tier: refused,
				 * whatever the child is doing at that moment. */
				intrude = false;
				intrusions++;
				assert_int_equal(second_owner(), KVBM_E_BUSY);
			}
		}
		kill(pid, SIGKILL);
		int status = 0;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		close(fds[0]);
		if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
			fprintf(stderr, "round %d: child exited with status %d\n", k,
				WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			fail();
		}
		unlink(filler_path); /* the restart finds room again */
		total_restored += check_restored();
	}
	fprintf(stderr,
		"crash: %u blocks, %d kill points, %llu blocks restored and verified, %u second "
		"owners refused\n",
		n_blocks, kills, (unsigned long long)total_restored, intrusions);
	/* Not vacuous: most rounds restore something. */
	assert_true(total_restored > (uint64_t)kills);
	close(phys);
	if (diskfull) {
		fprintf(stderr, "crash: the disk filled in %u rounds\n", fills);
		umount2(mnt, MNT_DETACH);
	}
	kvbm_test_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crash__restored_blocks_match_their_data),
	};
	return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}
