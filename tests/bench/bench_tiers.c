/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cross-tier presence (issue 15): kvbm_hierarchy_lookup of a chain over a
 * G1 and a G2 of 1,048,576 registered blocks each, per hash, against
 * kvbm_contains of the same chain on G1 alone, in the same run (rounds
 * alternate, best of N kept). Chains of 64 hashes, each held by G1 with
 * probability 1/2, by G2 with 1/2, by either with 3/4, at random places
 * of two 32 MiB registries, so every probe misses the
 * cache as a server's would. Twice: a plain hierarchy (each tier's
 * registry asked in turn) and one with a presence index (one probe per
 * hash for all tiers); a third figure, the indexed lookup on a hierarchy
 * of G1 alone, separates the index's size from the number of tiers. Last,
 * the price the index puts on a member tier: the
 * allocate -> stage -> register -> release cycle with evictions (as
 * bench_core's) of a tier inside a hierarchy against an identical tier
 * alone, alternating; and a server's loop (the plan of each chain, then
 * G1's misses brought into G1) on a plain against an indexed hierarchy.
 * Usage: bench_tiers [rounds [cycle|serve]] (only that part).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvbm.h"

#define BLOCKS (1u << 20)
/* The fast-path cycle: bench_core's tier size and length. */
#define CYCLE_BLOCKS (1u << 16)
#define CYCLE_OPS (1u << 19)
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

/* A manager of `blocks` holding keys [first, first + blocks), spread by mix(). */
static kvbm_manager *filled(const char *tier, uint64_t first, uint32_t blocks)
{
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;
	enum { BATCH = 1024 };
	kvbm_mutable m[BATCH];
	kvbm_complete c[BATCH];
	kvbm_immutable h[BATCH];

	kvbm_config_init(&cfg);
	cfg.block_count = blocks;
	cfg.tier = tier;
	check("open", kvbm_open(&cfg, &mgr));
	for (uint32_t done = 0; done < blocks; done += BATCH) {
		check("allocate", kvbm_allocate(mgr, BATCH, m));
		for (uint32_t i = 0; i < BATCH; i++)
			check("stage", kvbm_stage(mgr, m[i], mix(first + done + i), 16, &c[i]));
		check("register", kvbm_register_batch(mgr, c, BATCH, h));
		check("release", kvbm_immutable_release_batch(mgr, h, BATCH));
	}
	return mgr;
}

/* Best-of-rounds ns per hash of a lookup on h and of kvbm_contains on
 * base, alternating, over the same chains. */
static void measure(kvbm_hierarchy *h, kvbm_manager *base, const kvbm_hash *chains, int rounds,
		    double *lookup, double *contains, double *plan)
{
	uint8_t masks[CHAIN], fastest[CHAIN];
	bool present[CHAIN];
	uint64_t best_l = UINT64_MAX, best_c = UINT64_MAX, best_p = UINT64_MAX;

	for (int r = 0; r < rounds; r++) {
		uint64_t t0 = now_ns();
		for (uint32_t c = 0; c < CHAINS; c++)
			check("contains", kvbm_contains(base, chains + (size_t)c * CHAIN, CHAIN, present,
							NULL, NULL));
		const uint64_t tc = now_ns() - t0;
		t0 = now_ns();
		for (uint32_t c = 0; c < CHAINS; c++)
			check("lookup", kvbm_hierarchy_lookup(h, chains + (size_t)c * CHAIN, CHAIN,
							      masks, fastest, NULL));
		const uint64_t tl = now_ns() - t0;
		t0 = now_ns();
		for (uint32_t c = 0; c < CHAINS; c++)
			check("plan", kvbm_hierarchy_lookup(h, chains + (size_t)c * CHAIN, CHAIN, NULL,
							    fastest, NULL));
		const uint64_t tp = now_ns() - t0;
		best_c = tc < best_c ? tc : best_c;
		best_l = tl < best_l ? tl : best_l;
		best_p = tp < best_p ? tp : best_p;
	}
	const double per = (double)CHAINS * CHAIN;
	*lookup = (double)best_l / per;
	*contains = (double)best_c / per;
	*plan = (double)best_p / per;
}

/* ns per block of the cycle on mgr, new keys from *next on, one block
 * per call or 32 (register_batch, release_batch); the tier is full, so
 * every allocation evicts. */
static double cycle(kvbm_manager *mgr, uint64_t *next, uint32_t per_call)
{
	kvbm_mutable m[32];
	kvbm_complete c[32];
	kvbm_immutable h[32];
	const uint64_t t0 = now_ns();

	for (uint32_t i = 0; i < CYCLE_OPS / per_call; i++) {
		check("allocate", kvbm_allocate(mgr, per_call, m));
		for (uint32_t j = 0; j < per_call; j++)
			check("stage", kvbm_stage(mgr, m[j], mix((*next)++), 16, &c[j]));
		check("register", kvbm_register_batch(mgr, c, per_call, h));
		check("release", kvbm_immutable_release_batch(mgr, h, per_call));
	}
	return (double)(now_ns() - t0) / CYCLE_OPS;
}

/* One round of a server's loop over a hierarchy: for each chain, the
 * onboarding plan, then every block G1 lacks is brought into G1
 * (allocate, evicting; stage; register; release), whether from G2 or
 * computed. Returns ns per looked-up block. */
static double serve_round(kvbm_hierarchy *h, kvbm_manager *g1, const kvbm_hash *chains)
{
	uint8_t fastest[CHAIN];
	kvbm_mutable m[CHAIN];
	kvbm_complete c[CHAIN];
	kvbm_immutable im[CHAIN];
	const uint64_t t0 = now_ns();

	for (uint32_t k = 0; k < CHAINS; k++) {
		const kvbm_hash *chain = chains + (size_t)k * CHAIN;
		uint32_t miss = 0;
		check("plan", kvbm_hierarchy_lookup(h, chain, CHAIN, NULL, fastest, NULL));
		for (uint32_t j = 0; j < CHAIN; j++)
			miss += fastest[j] != 0;
		if (!miss)
			continue;
		check("allocate", kvbm_allocate(g1, miss, m));
		for (uint32_t j = 0, i = 0; j < CHAIN; j++)
			if (fastest[j] != 0) {
				check("stage", kvbm_stage(g1, m[i], chain[j], 16, &c[i]));
				i++;
			}
		check("register", kvbm_register_batch(g1, c, miss, im));
		check("release", kvbm_immutable_release_batch(g1, im, miss));
	}
	return (double)(now_ns() - t0) / ((double)CHAINS * CHAIN);
}

/* The serving loop on a GPU-sized G1 of 65,536 blocks over a G2 of 1M,
 * plain against indexed (two identical pairs of tiers fed the same
 * chains, rounds alternating): what the index saves on lookups against
 * what it costs G1's registrations and evictions when most looked-up
 * blocks miss G1, as in the Mooncake trace's. */
static void serve(const kvbm_hash *chains, int rounds)
{
	kvbm_manager *a[2] = {filled("G1", 1ull << 40, BLOCKS / 16), filled("G2", 0, BLOCKS)};
	kvbm_manager *b[2] = {filled("G1", 1ull << 40, BLOCKS / 16), filled("G2", 0, BLOCKS)};
	kvbm_hierarchy *plain = NULL, *indexed = NULL;
	double bp = 1e30, bi = 1e30;

	check("hierarchy", kvbm_hierarchy_create(a, 2, 0, &plain));
	check("hierarchy", kvbm_hierarchy_create(b, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &indexed));
	for (int r = 0; r < rounds; r++) {
		double x = serve_round(plain, a[0], chains);
		bp = x < bp ? x : bp;
		x = serve_round(indexed, b[0], chains);
		bi = x < bi ? x : bi;
	}
	printf("serve     %7.1f ns/block  (plan + bring G1's misses into G1, a G1 of %u over a G2"
	       " of %u, presence index)  baseline the same, plain hierarchy %7.1f ns/block"
	       "  ratio %.2f\n", bi, BLOCKS / 16, BLOCKS, bp, bi / bp);
	kvbm_hierarchy_free(plain);
	kvbm_hierarchy_free(indexed);
	for (int t = 0; t < 2; t++) {
		kvbm_close(a[t]);
		kvbm_close(b[t]);
	}
}

/* The cycle of a tier of `blocks` in a hierarchy over a 1M-block G2
 * against an identical tier alone, rounds alternating, best of each. */
static void price(uint32_t blocks, int rounds)
{
	/* Keys far from the other tiers' (and from each other's). */
	uint64_t next_in = 1ull << 40, next_alone = 1ull << 41;
	kvbm_manager *alone = filled("G1", next_alone, blocks);
	kvbm_manager *t[2] = {filled("G1", next_in, blocks), filled("G2", 0, BLOCKS)};
	kvbm_hierarchy *h = NULL;
	double in1 = 1e30, al1 = 1e30, in32 = 1e30, al32 = 1e30;

	next_in += blocks;
	next_alone += blocks;
	check("hierarchy", kvbm_hierarchy_create(t, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h));
	(void)cycle(t[0], &next_in, 1);
	(void)cycle(alone, &next_alone, 1);
	for (int r = 0; r < rounds; r++) {
		double x = cycle(alone, &next_alone, 1);
		al1 = x < al1 ? x : al1;
		x = cycle(t[0], &next_in, 1);
		in1 = x < in1 ? x : in1;
		x = cycle(alone, &next_alone, 32);
		al32 = x < al32 ? x : al32;
		x = cycle(t[0], &next_in, 32);
		in32 = x < in32 ? x : in32;
	}
	printf("cycle     %7.1f ns/block  (a G1 of %u in an indexed hierarchy over a G2 of %u, 1/call)"
	       "  baseline the same G1 alone %7.1f ns/block  ratio %.2f\n",
	       in1, blocks, BLOCKS, al1, in1 / al1);
	printf("cycle     %7.1f ns/block  (the same, 32/call)  baseline alone %7.1f ns/block"
	       "  ratio %.2f\n", in32, al32, in32 / al32);
	kvbm_hierarchy_free(h);
	kvbm_close(alone);
	kvbm_close(t[0]);
	kvbm_close(t[1]);
}

int main(int argc, char **argv)
{
	const int rounds = argc > 1 ? atoi(argv[1]) : 5;
	kvbm_hash *chains = malloc((size_t)CHAINS * CHAIN * sizeof(*chains));
	uint64_t seed = 1;
	double l, c, p, solo, c1, p1, lr, cr, pr;

	for (size_t i = 0; i < (size_t)CHAINS * CHAIN; i++)
		chains[i] = mix(mix(++seed) % (2 * (uint64_t)BLOCKS));
	if (argc > 2 && strcmp(argv[2], "serve") == 0) {
		serve(chains, rounds);
		free(chains);
		return 0;
	}
	if (argc > 2 && strcmp(argv[2], "cycle") == 0) {
		price(CYCLE_BLOCKS, rounds);
		price(BLOCKS, rounds);
		free(chains);
		return 0;
	}
	{
		/* Two 1M-block tiers: G1 holds keys [0, 1M), G2 [BLOCKS / 2,
		 * 1.5M), so a chain key drawn from [0, 2M) is in each half the
		 * time: every probe of either registry misses the cache. */
		kvbm_manager *t[2] = {filled("G1", 0, BLOCKS), filled("G2", BLOCKS / 2, BLOCKS)};
		kvbm_hierarchy *h = NULL, *h1 = NULL, *hr = NULL;
		check("hierarchy", kvbm_hierarchy_create(t, 2, 0, &hr));
		measure(hr, t[0], chains, rounds, &lr, &cr, &pr);
		kvbm_hierarchy_free(hr);
		uint64_t t0 = now_ns();
		check("hierarchy", kvbm_hierarchy_create(t, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h));
		const double made = (double)(now_ns() - t0) / 1e6;
		measure(h, t[0], chains, rounds, &l, &c, &p);
		/* A tier is in one indexed hierarchy at a time. */
		kvbm_hierarchy_free(h);
		check("hierarchy", kvbm_hierarchy_create(t, 1, KVBM_HIERARCHY_PRESENCE_INDEX, &h1));
		measure(h1, t[0], chains, rounds, &solo, &c1, &p1);
		printf("presence  %7.1f ns/hash  (G1 and G2 of %u blocks each, chains of %u, each"
		       " registry asked)  baseline kvbm_contains on G1 alone %7.1f ns/hash  ratio %.2f\n",
		       lr, BLOCKS, CHAIN, cr, lr / cr);
		printf("plan      %7.1f ns/hash  (the same, fastest tier only: G2 asked for G1's"
		       " misses)  ratio %.2f\n", pr, pr / cr);
		printf("presence  %7.1f ns/hash  (the same tiers, presence index)  baseline"
		       " kvbm_contains on G1 alone %7.1f ns/hash  ratio %.2f  (target <= 1.5)\n",
		       l, c, l / c);
		printf("plan      %7.1f ns/hash  (presence index, no masks)  ratio %.2f\n", p, p / c);
		printf("presence  one-tier hierarchy (G1 alone, same lookup) %7.1f ns/hash: two tiers"
		       " cost %.2fx one (its own baseline %.1f ns/hash)\n", solo, l / solo, c1);
		printf("create    %7.1f ms  (kvbm_hierarchy_create of the two 1M tiers: the index"
		       " filled from both registries)\n", made);
		kvbm_hierarchy_free(h1);
		kvbm_close(t[0]);
		kvbm_close(t[1]);
	}
	{
		/* A GPU tier over a host tier: G1 of 65,536 blocks (keys [0,
		 * 64k)) over a G2 of 1M (keys [0, 1M)); the baseline is the
		 * single-tier question on the 1M registry. */
		kvbm_manager *t[2] = {filled("G1", 0, BLOCKS / 16), filled("G2", 0, BLOCKS)};
		kvbm_hierarchy *h = NULL;
		check("hierarchy", kvbm_hierarchy_create(t, 2, 0, &h));
		measure(h, t[1], chains, rounds, &lr, &cr, &pr);
		kvbm_hierarchy_free(h);
		check("hierarchy", kvbm_hierarchy_create(t, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h));
		measure(h, t[1], chains, rounds, &l, &c, &p);
		printf("presence  %7.1f ns/hash  (G1 of %u over G2 of %u, each registry asked)  baseline"
		       " kvbm_contains on G2 alone %7.1f ns/hash  ratio %.2f; plan %.1f ns/hash, ratio"
		       " %.2f\n", lr, BLOCKS / 16, BLOCKS, cr, lr / cr, pr, pr / cr);
		printf("presence  %7.1f ns/hash  (the same, presence index)  baseline %7.1f ns/hash"
		       "  ratio %.2f; plan %.1f ns/hash, ratio %.2f\n", l, c, l / c, p, p / c);
		kvbm_hierarchy_free(h);
		kvbm_close(t[0]);
		kvbm_close(t[1]);
	}
	serve(chains, rounds);
	free(chains);
	price(CYCLE_BLOCKS, rounds);
	price(BLOCKS, rounds);
	return 0;
}
