/* SPDX-License-Identifier: Apache-2.0 */
/* Fixtures shared by the cmocka suites: invariant checks, seeds, temp dirs. */
#ifndef KVBM_TEST_COMMON_H
#define KVBM_TEST_COMMON_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kvbm.h"

/* reset + inactive + held == total, and the counts agree with metrics. */
void kvbm_test_assert_invariants(kvbm_manager *mgr);
#define assert_invariants(mgr) kvbm_test_assert_invariants(mgr)

/* Open a memory-only manager of n blocks of size bs with policy p. */
kvbm_manager *kvbm_test_open(uint32_t n, uint32_t bs, kvbm_evict_policy p,
			     kvbm_dup_policy dup);

/* The seed for randomised tests: $KVBM_TEST_SEED or the time; printed. */
uint64_t kvbm_test_seed(const char *test_name);
/* xorshift64* step. */
uint64_t kvbm_test_rand(uint64_t *state);

/* A fresh empty directory under $TMPDIR (or /tmp); the caller frees the
 * string and may remove the tree with kvbm_test_rmdir. */
char *kvbm_test_tmpdir(const char *tag);
void kvbm_test_rmdir(const char *dir);

/* assert the manager's last error message contains needle. */
void kvbm_test_assert_msg(kvbm_manager *mgr, const char *needle);

/* Core-test helpers: snapshots and one-call block construction. */
kvbm_pool_counts kvbm_test_counts(kvbm_manager *mgr);
kvbm_block_info kvbm_test_info(kvbm_manager *mgr, uint32_t block);
/* Open with a full config; asserts success. */
kvbm_manager *kvbm_test_open_cfg(const kvbm_config *cfg);
/* Allocate, stage (full block) and register one block for hash; asserts
 * success and returns the caller's reference. */
kvbm_immutable kvbm_test_make(kvbm_manager *mgr, kvbm_hash hash);
/* Assert the pool counts field by field (total is checked too). */
void kvbm_test_assert_counts(kvbm_manager *mgr, uint32_t reset, uint32_t inactive,
			     uint32_t mutable_, uint32_t staged, uint32_t registered,
			     uint32_t duplicate);
/* Assert the last error code and that its message contains needle. */
void kvbm_test_assert_error(kvbm_manager *mgr, kvbm_status code, const char *needle);

/* The catalog suites' fixture: a fresh directory, path = dir/catalog.db,
 * and cfg for a manager of `blocks` 4-token blocks on it (sync OFF). */
struct kvbm_test_catalog {
	char *dir;
	char path[512];
	kvbm_config cfg;
};
struct kvbm_test_catalog *kvbm_test_catalog_new(const char *tag, uint32_t blocks);
/* Remove the directory and free c. */
void kvbm_test_catalog_free(struct kvbm_test_catalog *c);

/* The crash tests' stand-in for KV memory: a file of one record per block,
 * written with "this block now holds hash" before kvbm learns the hash. */
struct kvbm_test_record {
	uint64_t magic;
	kvbm_hash hash;
};
/* Every cached block of mgr (block ids below blocks) must be inactive and
 * hold, in the data file at path, a record with magic naming the hash kvbm
 * restored for it; fails the test otherwise. Returns how many were cached. */
uint32_t kvbm_test_check_data(kvbm_manager *mgr, uint32_t blocks, const char *path,
			      uint64_t magic);

#endif
