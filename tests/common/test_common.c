/* SPDX-License-Identifier: Apache-2.0 */
/* Fixtures shared by the cmocka suites: invariant checks, seeds, temp dirs. */
#include <ftw.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_common.h"

void kvbm_test_assert_invariants(kvbm_manager *mgr)
{
	kvbm_pool_counts c;
	kvbm_metrics m;

	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	assert_int_equal(c.reset + c.inactive + c.mutable_ + c.staged + c.registered +
				 c.duplicate,
			 c.total);
	assert_int_equal(c.total, kvbm_total_blocks(mgr));
	assert_int_equal(c.registry, c.registered + c.inactive);
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_int_equal(m.reset_pool, c.reset);
	assert_int_equal(m.inactive_pool, c.inactive);
	assert_int_equal(m.inflight_mutable, c.mutable_ + c.staged);
}

kvbm_manager *kvbm_test_open(uint32_t n, uint32_t bs, kvbm_evict_policy p,
			     kvbm_dup_policy dup)
{
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;

	kvbm_config_init(&cfg);
	cfg.block_count = n;
	cfg.block_size = bs;
	cfg.evict_policy = p;
	cfg.dup_policy = dup;
	assert_int_equal(kvbm_open(&cfg, &mgr), KVBM_OK);
	assert_non_null(mgr);
	return mgr;
}

uint64_t kvbm_test_seed(const char *test_name)
{
	const char *env = getenv("KVBM_TEST_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();

	if (seed == 0)
		seed = 1;
	fprintf(stderr, "%s: seed %" PRIu64 " (replay with KVBM_TEST_SEED=%" PRIu64 ")\n",
		test_name, seed, seed);
	return seed;
}

uint64_t kvbm_test_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

char *kvbm_test_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *path = NULL;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&path, "%s/kvbm-%s-XXXXXX", base, tag) < 0)
		return NULL;
	if (!mkdtemp(path)) {
		free(path);
		return NULL;
	}
	return path;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void kvbm_test_rmdir(const char *dir)
{
	if (dir)
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void kvbm_test_assert_msg(kvbm_manager *mgr, const char *needle)
{
	char buf[512];
	kvbm_status code;

	assert_int_equal(kvbm_last_error(mgr, &code, buf, sizeof(buf)), KVBM_OK);
	if (!strstr(buf, needle)) {
		fprintf(stderr, "message '%s' lacks '%s'\n", buf, needle);
		fail();
	}
}

kvbm_pool_counts kvbm_test_counts(kvbm_manager *mgr)
{
	kvbm_pool_counts c;

	assert_int_equal(kvbm_pool_counts_read(mgr, &c), KVBM_OK);
	return c;
}

kvbm_block_info kvbm_test_info(kvbm_manager *mgr, uint32_t block)
{
	kvbm_block_info info;

	assert_int_equal(kvbm_block_info_read(mgr, block, &info), KVBM_OK);
	assert_int_equal(info.block, block);
	return info;
}

kvbm_manager *kvbm_test_open_cfg(const kvbm_config *cfg)
{
	kvbm_manager *mgr = NULL;
	char err[256];

	if (kvbm_open_ex(cfg, &mgr, err, sizeof(err)) != KVBM_OK) {
		fprintf(stderr, "kvbm_open_ex: %s\n", err);
		fail();
	}
	assert_non_null(mgr);
	return mgr;
}

kvbm_immutable kvbm_test_make(kvbm_manager *mgr, kvbm_hash hash)
{
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable h;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, hash, kvbm_block_size(mgr), &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &h), KVBM_OK);
	return h;
}

void kvbm_test_assert_counts(kvbm_manager *mgr, uint32_t reset, uint32_t inactive,
			     uint32_t mutable_, uint32_t staged, uint32_t registered,
			     uint32_t duplicate)
{
	const kvbm_pool_counts c = kvbm_test_counts(mgr);

	assert_int_equal(c.reset, reset);
	assert_int_equal(c.inactive, inactive);
	assert_int_equal(c.mutable_, mutable_);
	assert_int_equal(c.staged, staged);
	assert_int_equal(c.registered, registered);
	assert_int_equal(c.duplicate, duplicate);
	assert_int_equal(c.total, kvbm_total_blocks(mgr));
	kvbm_test_assert_invariants(mgr);
}

void kvbm_test_assert_error(kvbm_manager *mgr, kvbm_status code, const char *needle)
{
	char buf[512];
	kvbm_status got;

	assert_int_equal(kvbm_last_error(mgr, &got, buf, sizeof(buf)), KVBM_OK);
	assert_int_equal(got, code);
	if (!strstr(buf, needle)) {
		fprintf(stderr, "message '%s' lacks '%s'\n", buf, needle);
		fail();
	}
}

uint32_t kvbm_test_check_data(kvbm_manager *mgr, uint32_t blocks, const char *path,
			      uint64_t magic)
{
	const int fd = open(path, O_RDONLY);
	uint32_t cached = 0;

	assert_true(fd >= 0);
	for (uint32_t b = 0; b < blocks; b++) {
		kvbm_block_info info;
		struct kvbm_test_record r = {0, 0};
		assert_int_equal(kvbm_block_info_read(mgr, b, &info), KVBM_OK);
		if (info.state == KVBM_BLOCK_RESET)
			continue;
		assert_int_equal(info.state, KVBM_BLOCK_INACTIVE);
		assert_int_equal(pread(fd, &r, sizeof(r), (off_t)b * sizeof(r)), sizeof(r));
		if (r.magic != magic || r.hash != info.hash) {
			fprintf(stderr, "block %u restored as %016llx but holds %016llx\n", b,
				(unsigned long long)info.hash, (unsigned long long)r.hash);
			fail();
		}
		cached++;
	}
	close(fd);
	return cached;
}

struct kvbm_test_catalog *kvbm_test_catalog_new(const char *tag, uint32_t blocks)
{
	struct kvbm_test_catalog *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->dir = kvbm_test_tmpdir(tag);
	snprintf(c->path, sizeof(c->path), "%s/catalog.db", c->dir);
	kvbm_config_init(&c->cfg);
	c->cfg.block_count = blocks;
	c->cfg.block_size = 4;
	c->cfg.catalog_path = c->path;
	c->cfg.catalog_sync = KVBM_SYNC_OFF;
	return c;
}

void kvbm_test_catalog_free(struct kvbm_test_catalog *c)
{
	kvbm_test_rmdir(c->dir);
	free(c->dir);
	free(c);
}
