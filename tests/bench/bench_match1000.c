/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The C half of the binding-overhead benchmark (tests/bench/bench_offload.py
 * runs it next to the same call from Python): a 1,000-hash kvbm_match on a
 * warm registry, plus the release of the 1,000 references, per call.
 * Usage: bench_match1000 ROUNDS CALLS; prints "ns_per_call N" (best round).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kvbm.h"

#define N 1000u
#define BLOCKS 65536u

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int fail(const char *what, kvbm_status st)
{
	fprintf(stderr, "bench_match1000: %s: %s\n", what, kvbm_strerror(st));
	return 1;
}

int main(int argc, char **argv)
{
	const int rounds = argc > 1 ? atoi(argv[1]) : 5;
	const int calls = argc > 2 ? atoi(argv[2]) : 2000;
	static kvbm_hash hashes[N];
	static kvbm_mutable mut[N];
	static kvbm_complete comp[N];
	static kvbm_immutable refs[N];
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;
	kvbm_status st;

	kvbm_config_init(&cfg);
	cfg.block_count = BLOCKS;
	cfg.block_size = 16;
	if ((st = kvbm_open(&cfg, &mgr)) != KVBM_OK)
		return fail("open", st);
	/* The same workload as bench_offload.py's Python side: hashes 1..N
	 * cached (registered and released), matched back whole. */
	for (uint32_t i = 0; i < N; i++)
		hashes[i] = i + 1;
	if ((st = kvbm_allocate(mgr, N, mut)) != KVBM_OK)
		return fail("allocate", st);
	for (uint32_t i = 0; i < N; i++)
		if ((st = kvbm_stage(mgr, mut[i], hashes[i], 16, &comp[i])) != KVBM_OK)
			return fail("stage", st);
	if ((st = kvbm_register_batch(mgr, comp, N, refs)) != KVBM_OK ||
	    (st = kvbm_immutable_release_batch(mgr, refs, N)) != KVBM_OK)
		return fail("register", st);
	uint64_t best = UINT64_MAX;
	for (int r = 0; r < rounds; r++) {
		const uint64_t t0 = now_ns();
		for (int c = 0; c < calls; c++) {
			uint32_t matched = 0;
			if ((st = kvbm_match(mgr, hashes, N, refs, &matched)) != KVBM_OK || matched != N)
				return fail("match", st);
			if ((st = kvbm_immutable_release_batch(mgr, refs, N)) != KVBM_OK)
				return fail("release", st);
		}
		const uint64_t per = (now_ns() - t0) / (uint64_t)calls;
		best = per < best ? per : best;
	}
	printf("ns_per_call %llu\n", (unsigned long long)best);
	return kvbm_close(mgr) == KVBM_OK ? 0 : 1;
}
