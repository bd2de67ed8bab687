/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: kvbm_open on a catalog file whose bytes are the input.
 * Any status is acceptable; a crash, leak, hang or undefined behaviour is
 * not. The eviction policy comes from the input length (see below). When the
 * open succeeds the restored manager must be coherent (pool counts add
 * up) and survive a few operations, a flush and a close; the file it
 * leaves is opened once more.
 *
 * SQLite itself is not instrumented here (it is the system library), so
 * coverage guides the fuzzer through kvbm's open, migration, identity and
 * restore code, not through SQLite's page parser.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvbm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_catalog_open: %s:%d: check failed: %s\n", \
				__FILE__, __LINE__, #cond);                             \
			__builtin_trap();                                               \
		}                                                                       \
	} while (0)

/* The configuration every seed catalog was written with. */
#define BLOCK_COUNT 64
#define BLOCK_SIZE 16

/* The file, SQLite's side files, and what a detaching writer renamed aside
 * (path.detached-<incarnation>[-wal|-shm]). */
static void remove_files(const char *path)
{
	static const char *const sides[] = {"", "-wal", "-shm", "-journal", "-kvbm"};
	char p[4200];
	glob_t g;

	for (size_t i = 0; i < sizeof(sides) / sizeof(sides[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, sides[i]);
		unlink(p);
	}
	snprintf(p, sizeof(p), "%s.detached-*", path);
	if (glob(p, 0, NULL, &g) == 0)
		for (size_t i = 0; i < g.gl_pathc; i++)
			unlink(g.gl_pathv[i]);
	globfree(&g);
}

static void check_counts(kvbm_manager *mgr)
{
	kvbm_pool_counts c;

	CHECK(kvbm_pool_counts_read(mgr, &c) == KVBM_OK);
	CHECK(c.total == BLOCK_COUNT);
	CHECK(c.reset + c.inactive + c.mutable_ + c.staged + c.registered + c.duplicate == c.total);
	CHECK(c.registry <= c.total);
}

/* Match everything restored, allocate the rest (evicting), register one
 * new block, and release it all: the paths a warm restart takes first. */
static void exercise(kvbm_manager *mgr)
{
	kvbm_hash hashes[BLOCK_COUNT];
	kvbm_immutable refs[BLOCK_COUNT];
	kvbm_mutable mut[BLOCK_COUNT];
	uint32_t n = 0, found = 0;

	check_counts(mgr);
	for (uint32_t b = 0; b < BLOCK_COUNT; b++) {
		kvbm_block_info info;
		CHECK(kvbm_block_info_read(mgr, b, &info) == KVBM_OK);
		CHECK(info.state == KVBM_BLOCK_RESET || info.state == KVBM_BLOCK_INACTIVE);
		if (info.state == KVBM_BLOCK_INACTIVE)
			hashes[n++] = info.hash;
	}
	CHECK(kvbm_match_scattered(mgr, hashes, n, refs, &found) == KVBM_OK);
	CHECK(found == n);
	check_counts(mgr);
	CHECK(kvbm_immutable_release_batch(mgr, refs, n) == KVBM_OK);
	const uint32_t avail = kvbm_available_blocks(mgr);
	CHECK(avail == BLOCK_COUNT);
	const kvbm_status st = kvbm_allocate(mgr, avail, mut);
	/* With a catalog, evicting may wait for the writer; a failing writer
	 * is a legitimate answer for a damaged file. */
	if (st != KVBM_OK)
		return;
	kvbm_complete done;
	kvbm_immutable ref;
	CHECK(kvbm_stage_lineage(mgr, mut[0], 0x5eed, 0, 0, BLOCK_SIZE, &done) == KVBM_OK);
	CHECK(kvbm_register(mgr, done, &ref) == KVBM_OK);
	for (uint32_t i = 1; i < avail; i++)
		CHECK(kvbm_mutable_release(mgr, mut[i]) == KVBM_OK);
	CHECK(kvbm_immutable_release(mgr, ref) == KVBM_OK);
	check_counts(mgr);
}

static kvbm_status open_catalog(const char *path, kvbm_evict_policy policy, kvbm_manager **mgr)
{
	kvbm_config cfg;
	char err[256];

	kvbm_config_init(&cfg);
	cfg.block_count = BLOCK_COUNT;
	cfg.block_size = BLOCK_SIZE;
	cfg.evict_policy = policy;
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	/* A damaged file must not stall the fuzzer for the default 5 s. */
	cfg.catalog_wait_ms = 200;
	cfg.catalog_busy_ms = 100;
	cfg.catalog_max_failures = 2;
	const kvbm_status st = kvbm_open_ex(&cfg, mgr, err, sizeof(err));
	CHECK(st == KVBM_OK ? *mgr != NULL : *mgr == NULL);
	CHECK(strlen(err) < sizeof(err));
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	kvbm_manager *mgr = NULL;

	snprintf(path, sizeof(path), "%s/kvbm-fuzz-XXXXXX", dir && *dir ? dir : "/tmp");
	const int fd = mkstemp(path);
	if (fd < 0) {
		perror("fuzz_catalog_open: mkstemp");
		abort();
	}
	for (size_t off = 0; off < size;) {
		const ssize_t w = write(fd, data + off, size - off);
		if (w <= 0) {
			perror("fuzz_catalog_open: write");
			abort();
		}
		off += (size_t)w;
	}
	close(fd);

	/* The policy is not part of a catalog's identity: every one must
	 * restore any file. The input's length picks it: no header byte is
	 * free since the application id became 'kvbm' (schema 3). */
	const kvbm_evict_policy policy = (kvbm_evict_policy)(size % KVBM_EVICT_COUNT);
	if (open_catalog(path, policy, &mgr) == KVBM_OK) {
		exercise(mgr);
		kvbm_flush(mgr);
		const kvbm_status closed = kvbm_close(mgr);
		/* What a clean close wrote is a catalog this library reads. */
		if (closed == KVBM_OK && open_catalog(path, policy, &mgr) == KVBM_OK) {
			check_counts(mgr);
			kvbm_close(mgr);
		}
	}
	remove_files(path);
	return 0;
}
