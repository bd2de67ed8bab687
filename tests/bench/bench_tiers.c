/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cross-tier presence (issue 15): kvbm_hierarchy_lookup of a chain over a
 * G1 and a G2 of 1,048,576 registered blocks each, per hash, against
 * kvbm_contains of the same chain on G1 alone, in the same run (rounds
 * alternate, best of N kept). Chains of 64 hashes, each held by G1 with
 * probability 1/2, by G2 with 1/2, by either with 3/4, at random places
 * of two 32 MiB registries, so every probe misses the
 * cache as a server's would. A third figure, the same lookup on a
 * hierarchy of G1 alone, separates the cost of a second registry from
 * the lookup's own batching. Usage: bench_tiers [rounds].
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kvbm.h"

#define BLOCKS (1u << 20)
#define CHAIN 64u
#define CHAINS 16384u

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static void check(const char *what, kvbm_status st)
{
	if (st != KVBM_OK) {
		fprintf(stderr, "bench_tiers: %s: %s\n", what, kvbm_strerror(st));
		exit(1);
	}
}

/* Register hashes [first, first + BLOCKS) of the key space, spread by mix(). */
static kvbm_manager *filled(const char *tier, uint64_t first)
{
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;
	enum { BATCH = 1024 };
	kvbm_mutable m[BATCH];
	kvbm_complete c[BATCH];
	kvbm_immutable h[BATCH];

	kvbm_config_init(&cfg);
	cfg.block_count = BLOCKS;
	cfg.tier = tier;
	check("open", kvbm_open(&cfg, &mgr));
	for (uint32_t done = 0; done < BLOCKS; done += BATCH) {
		check("allocate", kvbm_allocate(mgr, BATCH, m));
		for (uint32_t i = 0; i < BATCH; i++)
			check("stage", kvbm_stage(mgr, m[i], mix(first + done + i), 16, &c[i]));
		check("register", kvbm_register_batch(mgr, c, BATCH, h));
		check("release", kvbm_immutable_release_batch(mgr, h, BATCH));
	}
	return mgr;
}

int main(int argc, char **argv)
{
	const int rounds = argc > 1 ? atoi(argv[1]) : 5;
	/* G1 holds keys [0, 1M), G2 [BLOCKS / 2, 1.5M): a chain key drawn
	 * from [0, 2M) is in G1 half the time and in G2 half the time. */
	kvbm_manager *tiers[2] = {filled("G1", 0), filled("G2", BLOCKS / 2)};
	kvbm_hierarchy *h = NULL, *h1 = NULL;
	kvbm_hash *chains = malloc((size_t)CHAINS * CHAIN * sizeof(*chains));
	uint8_t masks[CHAIN], fastest[CHAIN];
	bool present[CHAIN];
	uint64_t seed = 1, best_one = UINT64_MAX, best_many = UINT64_MAX, best_solo = UINT64_MAX,
		 best_plan = UINT64_MAX,
		 found_one = 0, found_many = 0;

	check("hierarchy", kvbm_hierarchy_create(tiers, 2, &h));
	check("hierarchy", kvbm_hierarchy_create(tiers, 1, &h1));
	for (size_t i = 0; i < (size_t)CHAINS * CHAIN; i++)
		chains[i] = mix(mix(++seed) % (2 * (uint64_t)BLOCKS));
	for (int r = 0; r < rounds; r++) {
		uint64_t t0 = now_ns(), n_one = 0, n_many = 0;
		for (uint32_t c = 0; c < CHAINS; c++) {
			uint32_t n = 0;
			check("contains", kvbm_contains(tiers[0], chains + (size_t)c * CHAIN, CHAIN,
							present, &n, NULL));
			n_one += n;
		}
		const uint64_t one = now_ns() - t0;
		t0 = now_ns();
		for (uint32_t c = 0; c < CHAINS; c++) {
			check("lookup", kvbm_hierarchy_lookup(h, chains + (size_t)c * CHAIN, CHAIN,
							      masks, fastest, NULL));
			for (uint32_t i = 0; i < CHAIN; i++)
				n_many += masks[i] != 0;
		}
		const uint64_t many = now_ns() - t0;
		t0 = now_ns();
		for (uint32_t c = 0; c < CHAINS; c++)
			check("lookup", kvbm_hierarchy_lookup(h1, chains + (size_t)c * CHAIN, CHAIN,
							      masks, fastest, NULL));
		const uint64_t solo = now_ns() - t0;
		t0 = now_ns();
		for (uint32_t c = 0; c < CHAINS; c++)
			check("plan", kvbm_hierarchy_lookup(h, chains + (size_t)c * CHAIN, CHAIN,
							    NULL, fastest, NULL));
		const uint64_t plan = now_ns() - t0;
		if (plan < best_plan)
			best_plan = plan;
		if (solo < best_solo)
			best_solo = solo;
		if (one < best_one)
			best_one = one;
		if (many < best_many)
			best_many = many;
		found_one = n_one;
		found_many = n_many;
	}
	const double per = (double)CHAINS * CHAIN;
	printf("presence  %7.1f ns/hash  (2 tiers of %u blocks, chains of %u; %.1f%% in some tier)"
	       "  baseline kvbm_contains on G1 alone %7.1f ns/hash (%.1f%% in G1)"
	       "  ratio %.2f  (target <= 1.5)\n",
	       (double)best_many / per, BLOCKS, CHAIN, 100.0 * (double)found_many / per,
	       (double)best_one / per, 100.0 * (double)found_one / per,
	       (double)best_many / (double)best_one);
	printf("plan      %7.1f ns/hash  (fastest tier only: G2 asked for G1's misses)  ratio %.2f"
	       " to kvbm_contains on G1 alone\n",
	       (double)best_plan / per, (double)best_plan / (double)best_one);
	printf("presence  one-tier hierarchy (G1 alone, same lookup) %7.1f ns/hash: two tiers cost"
	       " %.2fx one\n",
	       (double)best_solo / per, (double)best_many / (double)best_solo);
	kvbm_hierarchy_free(h);
	kvbm_hierarchy_free(h1);
	kvbm_close(tiers[0]);
	kvbm_close(tiers[1]);
	free(chains);
	return 0;
}
