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

#endif
