/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tiers: victim previews that predict evictions and change nothing,
 * registration of one tier's blocks in another, presence across a
 * hierarchy (its presence index has tests/test_presence.c), the offload
 * protocol's race (a victim hit after its preview),
 * and per-tier persistence, a volatile G1 beside a surviving G2 in one
 * catalog file, killed with SIGKILL and checked against each block's data.
 */
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"

#define BS 4u

static void cache(kvbm_manager *mgr, kvbm_hash hash)
{
	assert_int_equal(kvbm_immutable_release(mgr, kvbm_test_make(mgr, hash)), KVBM_OK);
}

/* Register a chain hash (position pos, parent) on a fresh block, release. */
static void cache_lineage(kvbm_manager *mgr, kvbm_hash hash, kvbm_hash parent, uint32_t pos)
{
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable h;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage_lineage(mgr, m, hash, parent, pos, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &h), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
}

/* One random step of a workload with hits, touches and new blocks, the
 * same on every manager it is replayed on. Evicted hashes are appended
 * to ev. */
static void random_step(kvbm_manager *mgr, uint64_t *seed, kvbm_hash *next_hash, kvbm_hash *ev,
			uint32_t *n_ev)
{
	const uint64_t r = kvbm_test_rand(seed);
	/* Mostly recent hashes, so hits and touches land (caches are filled
	 * first: next_hash > 0). */
	const uint64_t back = kvbm_test_rand(seed) % 96;
	const kvbm_hash old = back < *next_hash ? *next_hash - back : 1;

	if (r % 4 == 0) {
		kvbm_immutable h;
		uint32_t got = 0;
		assert_int_equal(kvbm_match(mgr, &old, 1, &h, &got), KVBM_OK);
		if (got)
			assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	} else if (r % 4 == 1) {
		assert_int_equal(kvbm_touch(mgr, &old, 1, NULL), KVBM_OK);
	} else {
		kvbm_mutable m;
		kvbm_complete c;
		kvbm_immutable h;
		uint32_t n = 0;
		assert_int_equal(kvbm_allocate_ex(mgr, 1, &m, ev ? ev + *n_ev : NULL, &n), KVBM_OK);
		*n_ev += n;
		assert_int_equal(kvbm_stage(mgr, m, ++*next_hash, BS, &c), KVBM_OK);
		assert_int_equal(kvbm_register(mgr, c, &h), KVBM_OK);
		/* Priorities that expire (the priority policy demotes them
		 * lazily; a preview must see them as a victim would). */
		if (r % 8 == 7)
			assert_int_equal(kvbm_immutable_set_priority(
						 mgr, h, 40 + (uint32_t)(kvbm_test_rand(seed) % 60),
						 1 + (uint32_t)(kvbm_test_rand(seed) % 60)),
					 KVBM_OK);
		assert_int_equal(kvbm_immutable_release(mgr, h), KVBM_OK);
	}
}

/* For every policy that previews: a preview taken at a random moment
 * lists exactly the blocks the next allocations evict, and a twin manager
 * that never previews evicts the same hashes over the whole run, so the
 * previews changed nothing (ghosts and adaptive targets included). */
static void test_preview_predicts_and_changes_nothing(void **state)
{
	static const kvbm_evict_policy policies[] = {
		KVBM_EVICT_LRU,	      KVBM_EVICT_FIFO, KVBM_EVICT_MULTI_LRU, KVBM_EVICT_TWO_QUEUE,
		KVBM_EVICT_ARC,	      KVBM_EVICT_ADAPTIVE, KVBM_EVICT_PRIORITY};
	enum { N = 64, STEPS = 3000, MAXEV = STEPS * N };
	kvbm_hash *ev_a = malloc(MAXEV * sizeof(*ev_a)), *ev_b = malloc(MAXEV * sizeof(*ev_b));

	for (size_t p = 0; p < sizeof(policies) / sizeof(*policies); p++) {
		kvbm_manager *a = kvbm_test_open(N, BS, policies[p], KVBM_DUP_ALLOW);
		kvbm_manager *b = kvbm_test_open(N, BS, policies[p], KVBM_DUP_ALLOW);
		uint64_t seed = kvbm_test_seed(kvbm_evict_policy_name(policies[p]));
		kvbm_hash next_a = 0, next_b = 0;
		uint32_t n_a = 0, n_b = 0, previews = 0;

		for (uint32_t i = 0; i < N; i++) {
			cache(a, ++next_a);
			cache(b, ++next_b);
		}
		for (uint32_t s = 0; s < STEPS; s++) {
			if (kvbm_test_rand(&seed) % 8 == 0) {
				kvbm_victim v[N], again[N];
				kvbm_mutable m[N];
				kvbm_complete c[N];
				kvbm_immutable h[N];
				/* Up to the whole pool: a demoted priority block
				 * sits anywhere in the order. */
				uint32_t k = 1 + (uint32_t)(kvbm_test_rand(&seed) % N), got = 0,
					 got2 = 0, n = 0;
				assert_int_equal(kvbm_peek_victims(a, k, v, &got), KVBM_OK);
				assert_int_equal(kvbm_peek_victims(a, k, again, &got2), KVBM_OK);
				assert_int_equal(got, k); /* the cache is full */
				assert_memory_equal(v, again, got * sizeof(*v));
				for (uint32_t i = 0; i < got; i++)
					assert_int_equal(kvbm_test_info(a, v[i].block).hash, v[i].hash);
				/* The twin does the same allocation, unpreviewed. */
				for (int t = 0; t < 2; t++) {
					kvbm_manager *mgr = t ? b : a;
					kvbm_hash *ev = t ? ev_b : ev_a;
					uint32_t *n_ev = t ? &n_b : &n_a;
					kvbm_hash *next = t ? &next_b : &next_a;
					assert_int_equal(kvbm_allocate_ex(mgr, k, m, ev + *n_ev, &n),
							 KVBM_OK);
					assert_int_equal(n, k);
					for (uint32_t i = 0; i < k; i++) {
						if (!t)
							assert_int_equal(ev[*n_ev + i], v[i].hash);
						assert_int_equal(kvbm_stage(mgr, m[i], ++*next, BS,
									    &c[i]),
								 KVBM_OK);
					}
					*n_ev += n;
					assert_int_equal(kvbm_register_batch(mgr, c, k, h), KVBM_OK);
					assert_int_equal(kvbm_immutable_release_batch(mgr, h, k),
							 KVBM_OK);
				}
				previews++;
				continue;
			}
			uint64_t s_b = seed;
			random_step(a, &seed, &next_a, ev_a, &n_a);
			random_step(b, &s_b, &next_b, ev_b, &n_b);
		}
		assert_true(previews > 100);
		assert_int_equal(n_a, n_b);
		assert_memory_equal(ev_a, ev_b, n_a * sizeof(*ev_a));
		kvbm_test_assert_invariants(a);
		assert_int_equal(kvbm_close(a), KVBM_OK);
		assert_int_equal(kvbm_close(b), KVBM_OK);
	}
	free(ev_a);
	free(ev_b);
	(void)state;
}

static void test_preview_unsupported_policies_say_so(void **state)
{
	static const kvbm_evict_policy policies[] = {KVBM_EVICT_LINEAGE, KVBM_EVICT_S3FIFO,
						     KVBM_EVICT_VLLM_ARC};

	for (size_t p = 0; p < sizeof(policies) / sizeof(*policies); p++) {
		kvbm_manager *mgr = kvbm_test_open(4, BS, policies[p], KVBM_DUP_ALLOW);
		kvbm_victim v[2];
		uint32_t got = 99;
		cache(mgr, 1);
		assert_int_equal(kvbm_peek_victims(mgr, 2, v, &got), KVBM_E_UNSUPPORTED);
		assert_int_equal(got, 0);
		kvbm_test_assert_msg(mgr, kvbm_evict_policy_name(policies[p]));
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
	}
	(void)state;
}

/* Free blocks go first and are not victims; the preview stops at what is
 * cached; the fields are the block's. */
static void test_preview_lists_cached_blocks_only(void **state)
{
	kvbm_manager *mgr = kvbm_test_open(8, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	kvbm_victim v[8];
	uint32_t got = 0;

	cache_lineage(mgr, 0xa, 0, 0);
	cache_lineage(mgr, 0xb, 0xa, 1);
	kvbm_immutable held = kvbm_test_make(mgr, 0xc); /* active: not a victim */
	assert_int_equal(kvbm_peek_victims(mgr, 8, v, &got), KVBM_OK);
	assert_int_equal(got, 2);
	assert_int_equal(v[0].hash, 0xa);
	assert_int_equal(v[0].position, 0);
	assert_int_equal(v[1].hash, 0xb);
	assert_int_equal(v[1].parent, 0xa);
	assert_int_equal(v[1].position, 1);
	assert_int_equal(v[1].block, kvbm_test_info(mgr, v[1].block).block);
	assert_int_equal(kvbm_peek_victims(mgr, 0, v, &got), KVBM_OK);
	assert_int_equal(got, 0);
	assert_int_equal(kvbm_peek_victims(mgr, 1, NULL, &got), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_release(mgr, held), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	(void)state;
}

/* With a catalog, the writer's reserve holds the first victims; a preview
 * still names them in the order allocations evict them while the writer
 * runs. */
static void test_preview_with_catalog_reserve(void **state)
{
	char *dir = kvbm_test_tmpdir("tiers-reserve");
	char path[512];
	kvbm_config cfg;
	uint64_t seed = kvbm_test_seed("preview_reserve");
	kvbm_hash next = 0;

	snprintf(path, sizeof(path), "%s/cat.db", dir);
	kvbm_config_init(&cfg);
	cfg.block_count = 256;
	cfg.block_size = BS;
	cfg.catalog_path = path;
	cfg.catalog_reserve = 32;
	cfg.catalog_interval_ms = 1;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	for (uint32_t i = 0; i < 256; i++)
		cache(mgr, ++next);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	for (uint32_t round = 0; round < 200; round++) {
		kvbm_victim v[16];
		kvbm_mutable m[16];
		kvbm_hash ev[16];
		kvbm_complete c[16];
		kvbm_immutable h[16];
		uint32_t k = 1 + (uint32_t)(kvbm_test_rand(&seed) % 16), got = 0, n = 0;
		assert_int_equal(kvbm_peek_victims(mgr, k, v, &got), KVBM_OK);
		assert_int_equal(got, k);
		assert_int_equal(kvbm_allocate_ex(mgr, k, m, ev, &n), KVBM_OK);
		assert_int_equal(n, k);
		for (uint32_t i = 0; i < k; i++) {
			assert_int_equal(ev[i], v[i].hash);
			assert_int_equal(kvbm_stage(mgr, m[i], ++next, BS, &c[i]), KVBM_OK);
		}
		assert_int_equal(kvbm_register_batch(mgr, c, k, h), KVBM_OK);
		assert_int_equal(kvbm_immutable_release_batch(mgr, h, k), KVBM_OK);
	}
	kvbm_metrics mt;
	assert_int_equal(kvbm_metrics_read(mgr, &mt), KVBM_OK);
	assert_true(mt.catalog_blocks_reclaimed > 0); /* the reserve was in play */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
	(void)state;
}

static void test_stage_from_copies_lineage(void **state)
{
	kvbm_manager *g1 = kvbm_test_open(4, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	kvbm_manager *g2 = kvbm_test_open(8, BS, KVBM_EVICT_LRU, KVBM_DUP_ALLOW);
	kvbm_mutable m[3];
	kvbm_complete c[3];
	kvbm_immutable h[3];
	const kvbm_hash chain[2] = {0x100, 0x101};

	cache_lineage(g1, chain[0], 0, 0);
	cache_lineage(g1, chain[1], chain[0], 1);
	assert_int_equal(kvbm_allocate(g2, 3, m), KVBM_OK);
	/* A hash g1 lacks: nothing staged, the guards stay usable. */
	const kvbm_hash with_missing[2] = {chain[0], 0xdead};
	assert_int_equal(kvbm_stage_from(g2, m, 2, g1, with_missing, c), KVBM_E_NOTFOUND);
	kvbm_test_assert_msg(g2, "dead");
	/* A guard named twice: nothing staged. */
	const kvbm_mutable twice[2] = {m[0], m[0]};
	assert_int_equal(kvbm_stage_from(g2, twice, 2, g1, chain, c), KVBM_E_STALE);
	assert_int_equal(kvbm_stage_from(g2, m, 2, g2, chain, c), KVBM_E_INVAL);
	assert_int_equal(kvbm_stage_from(g2, m, 2, g1, chain, c), KVBM_OK);
	assert_int_equal(kvbm_register_batch(g2, c, 2, h), KVBM_OK);
	kvbm_block_info info = kvbm_test_info(g2, h[1].block);
	assert_int_equal(info.hash, chain[1]);
	assert_int_equal(info.parent_hash, chain[0]);
	assert_int_equal(info.position, 1);
	assert_int_equal(kvbm_test_info(g2, h[0].block).position, 0);
	/* The staged guards are consumed; the third is still mutable. */
	assert_int_equal(kvbm_stage_from(g2, m, 1, g1, chain, c), KVBM_E_STALE);
	assert_int_equal(kvbm_mutable_release(g2, m[2]), KVBM_OK);
	assert_int_equal(kvbm_immutable_release_batch(g2, h, 2), KVBM_OK);
	kvbm_test_assert_invariants(g2);

	kvbm_config cfg;
	kvbm_config_init(&cfg);
	cfg.block_count = 4;
	cfg.block_size = BS * 2;
	cfg.tier = "G3";
	kvbm_manager *g3 = kvbm_test_open_cfg(&cfg);
	assert_int_equal(kvbm_allocate(g3, 1, m), KVBM_OK);
	assert_int_equal(kvbm_stage_from(g3, m, 1, g1, chain, c), KVBM_E_INVAL);
	kvbm_test_assert_msg(g3, "block sizes");
	assert_int_equal(kvbm_close(g3), KVBM_OK);
	assert_int_equal(kvbm_close(g1), KVBM_OK);
	assert_int_equal(kvbm_close(g2), KVBM_OK);
	(void)state;
}

static kvbm_manager *open_tier_policy(const char *name, uint32_t blocks, kvbm_evict_policy policy)
{
	kvbm_config cfg;

	kvbm_config_init(&cfg);
	cfg.block_count = blocks;
	cfg.block_size = BS;
	cfg.tier = name;
	cfg.evict_policy = policy;
	return kvbm_test_open_cfg(&cfg);
}

/* A tier with the default policy. */
static kvbm_manager *open_tier(const char *name, uint32_t blocks)
{
	kvbm_config cfg;

	kvbm_config_init(&cfg);
	return open_tier_policy(name, blocks, cfg.evict_policy);
}

/* Masks against each tier's own kvbm_contains, over chains longer than
 * one pass of the lookup (256 hashes), and the onboarding plan rule, with
 * the hierarchy made with `flags` (the presence index or none). */
static void lookup_matches_each_tier(uint32_t flags)
{
	enum { N = 700 };
	kvbm_manager *t[3] = {open_tier("G1", 256), open_tier("G2", 512), open_tier("G3", 16384)};
	kvbm_hierarchy *h = NULL;
	static kvbm_hash hashes[N];
	static uint8_t masks[N], fastest[N];
	static bool present[3][N];
	uint64_t seed = kvbm_test_seed("hierarchy_lookup");

	assert_int_equal(kvbm_hierarchy_create(t, 3, flags, &h), KVBM_OK);
	assert_int_equal(kvbm_hierarchy_tiers(h), 3);
	for (uint32_t round = 0; round < 20; round++) {
		for (uint32_t i = 0; i < N; i++)
			hashes[i] = 1 + kvbm_test_rand(&seed) % 3000;
		for (int k = 0; k < 3; k++)
			for (uint32_t i = 0; i < 200; i++) {
				const kvbm_hash x = 1 + kvbm_test_rand(&seed) % 3000;
				bool have;
				assert_int_equal(kvbm_contains(t[k], &x, 1, &have, NULL, NULL), KVBM_OK);
				if (!have)
					cache(t[k], x);
			}
		/* Every other round, a present prefix longer than one pass
		 * of the lookup: what no tier holds goes to G3, larger than
		 * everything the test ever caches, so nothing leaves it. */
		const uint32_t plen = round % 2 ? 300 + round : 0;
		for (uint32_t i = 0; i < plen; i++) {
			bool have = false;
			for (int k = 0; k < 3 && !have; k++)
				assert_int_equal(kvbm_contains(t[k], &hashes[i], 1, &have, NULL, NULL),
						 KVBM_OK);
			if (!have)
				cache(t[2], hashes[i]);
		}
		uint32_t prefix = 0;
		assert_int_equal(kvbm_hierarchy_lookup(h, hashes, N, masks, fastest, &prefix), KVBM_OK);
		uint32_t want_prefix = 0;
		bool run = true;
		for (int k = 0; k < 3; k++)
			assert_int_equal(kvbm_contains(t[k], hashes, N, present[k], NULL, NULL), KVBM_OK);
		for (uint32_t i = 0; i < N; i++) {
			uint8_t want = 0;
			for (int k = 0; k < 3; k++)
				want |= (uint8_t)(present[k][i] << k);
			assert_int_equal(masks[i], want);
			assert_int_equal(fastest[i], want ? __builtin_ctz(want) : 0xff);
			run = run && want;
			want_prefix += run;
		}
		assert_int_equal(prefix, want_prefix);
		assert_true(prefix >= plen);
		/* Without masks (the caller's array not written) the plan
		 * must not change. */
		static uint8_t plan[N];
		uint32_t prefix_only = 0;
		assert_int_equal(kvbm_hierarchy_lookup(h, hashes, N, NULL, plan, &prefix_only), KVBM_OK);
		assert_int_equal(prefix_only, prefix);
		assert_memory_equal(plan, fastest, N);
		assert_int_equal(kvbm_hierarchy_lookup(h, hashes, N, NULL, NULL, &prefix_only), KVBM_OK);
		assert_int_equal(prefix_only, prefix);
	}
	/* Lookups change nothing: no hit counted anywhere. */
	kvbm_metrics m;
	assert_int_equal(kvbm_metrics_read(t[1], &m), KVBM_OK);
	assert_int_equal(m.match_hashes_requested, 0);
	assert_int_equal(kvbm_hierarchy_lookup(h, NULL, 1, NULL, NULL, NULL), KVBM_E_INVAL);
	kvbm_hierarchy_free(h);

	kvbm_manager *same[2] = {t[0], t[0]};
	assert_int_equal(kvbm_hierarchy_create(same, 2, flags, &h), KVBM_E_INVAL);
	assert_null(h);
	kvbm_manager *g1b = open_tier("G1", 4);
	kvbm_manager *named[2] = {t[0], g1b};
	assert_int_equal(kvbm_hierarchy_create(named, 2, flags, &h), KVBM_E_INVAL);
	kvbm_test_assert_msg(t[0], "G1");
	assert_int_equal(kvbm_hierarchy_create(t, 0, flags, &h), KVBM_E_INVAL);
	assert_int_equal(kvbm_hierarchy_create(t, 3, flags | 0x80, &h), KVBM_E_INVAL);
	kvbm_test_assert_msg(t[0], "flags");
	assert_null(h);
	assert_int_equal(kvbm_close(g1b), KVBM_OK);
	for (int k = 0; k < 3; k++)
		assert_int_equal(kvbm_close(t[k]), KVBM_OK);
}

static void test_hierarchy_lookup_matches_each_tier(void **state)
{
	lookup_matches_each_tier(0);
	(void)state;
}

static void test_indexed_hierarchy_lookup_matches_each_tier(void **state)
{
	lookup_matches_each_tier(KVBM_HIERARCHY_PRESENCE_INDEX);
	(void)state;
}

/* The offload protocol and its race: preview G1's victims, pin them, copy
 * them into G2, unpin. A victim hit after its preview stays in G1, and
 * the next allocation evicts the next one instead; a copied block is seen
 * in both tiers, then in G2 alone once G1 evicts it. The same for every
 * policy whose unpin restores the place (adaptive: a, hit, is in T2; b, c,
 * d in T1 over its target of 2, then at it, so LRU). */
static void offload_protocol(kvbm_evict_policy policy)
{
	kvbm_manager *t[2] = {open_tier_policy("G1", 4, policy), open_tier_policy("G2", 8, policy)};
	kvbm_hierarchy *h = NULL;
	kvbm_victim v[2];
	kvbm_immutable pins[2], regs[2];
	kvbm_mutable m[2];
	kvbm_complete c[2];
	kvbm_hash ev[4];
	uint32_t got = 0, n = 0;
	const kvbm_hash a = 0xa, b = 0xb, cc = 0xc, d = 0xd;

	assert_int_equal(kvbm_hierarchy_create(t, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h), KVBM_OK);
	cache(t[0], a);
	cache(t[0], b);
	cache(t[0], cc);
	cache(t[0], d);
	assert_int_equal(kvbm_peek_victims(t[0], 2, v, &got), KVBM_OK);
	assert_int_equal(got, 2);
	assert_int_equal(v[0].hash, a);
	assert_int_equal(v[1].hash, b);
	/* The race: a request hits a after the preview. */
	kvbm_immutable hit;
	assert_int_equal(kvbm_match(t[0], &a, 1, &hit, &got), KVBM_OK);
	assert_int_equal(got, 1);
	assert_int_equal(kvbm_immutable_release(t[0], hit), KVBM_OK);
	/* The server copies b (still a victim) and skips a: re-preview. */
	assert_int_equal(kvbm_peek_victims(t[0], 1, v, &got), KVBM_OK);
	assert_int_equal(v[0].hash, b);
	assert_int_equal(kvbm_pin(t[0], &v[0].hash, 1, pins, &got), KVBM_OK);
	assert_int_equal(got, 1);
	/* While b is pinned, G1's allocations cannot evict it. */
	assert_int_equal(kvbm_allocate_ex(t[0], 1, m, ev, &n), KVBM_OK);
	assert_int_equal(ev[0], cc);
	assert_int_equal(kvbm_mutable_release(t[0], m[0]), KVBM_OK);
	assert_int_equal(kvbm_allocate(t[1], 1, m), KVBM_OK);
	assert_int_equal(kvbm_stage_from(t[1], m, 1, t[0], &b, c), KVBM_OK);
	assert_int_equal(kvbm_register_batch(t[1], c, 1, regs), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(t[1], regs[0]), KVBM_OK);
	assert_int_equal(kvbm_unpin(t[0], pins, 1), KVBM_OK);
	uint8_t mask = 0, fastest = 0;
	uint32_t prefix = 0;
	assert_int_equal(kvbm_hierarchy_lookup(h, &b, 1, &mask, &fastest, &prefix), KVBM_OK);
	assert_int_equal(mask, 3);
	assert_int_equal(fastest, 0);
	/* b went back to its place, the oldest: the next eviction takes it
	 * (the free block cc left goes first). */
	assert_int_equal(kvbm_allocate_ex(t[0], 2, m, ev, &n), KVBM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(ev[0], b);
	assert_int_equal(kvbm_hierarchy_lookup(h, &b, 1, &mask, &fastest, &prefix), KVBM_OK);
	assert_int_equal(mask, 2);
	assert_int_equal(fastest, 1);
	assert_int_equal(prefix, 1);
	const kvbm_hash chain[3] = {d, b, 0xeeee};
	assert_int_equal(kvbm_hierarchy_lookup(h, chain, 3, NULL, NULL, &prefix), KVBM_OK);
	assert_int_equal(prefix, 2); /* d in G1, b in G2, then a miss */
	assert_int_equal(kvbm_mutable_release(t[0], m[0]), KVBM_OK);
	assert_int_equal(kvbm_mutable_release(t[0], m[1]), KVBM_OK);
	kvbm_hierarchy_free(h);
	assert_int_equal(kvbm_close(t[0]), KVBM_OK);
	assert_int_equal(kvbm_close(t[1]), KVBM_OK);
}

static void test_offload_protocol_and_a_hit_after_the_preview(void **state)
{
	static const kvbm_evict_policy policies[] = {KVBM_EVICT_LRU, KVBM_EVICT_ARC,
						     KVBM_EVICT_ADAPTIVE};

	for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++)
		offload_protocol(policies[i]);
	(void)state;
}

/* One request of the twin run below: up to 4 hashes of 1..4 x n, so that
 * evicted hashes come back while the ghosts remember them (a ghost hit
 * puts a block used once in T2), each matched; the misses are allocated
 * together. With g2, the offload protocol runs first: pin the previewed
 * victims (all of them, where cli/replay_tiers.c pins those g2 lacks, so
 * that every victim goes through a pin), copy those g2 lacks, unpin; the
 * allocation must then evict exactly the previewed blocks. Evicted
 * hashes are appended to ev, hits counted in *hits. */
static void twin_request(kvbm_manager *g1, kvbm_manager *g2, uint32_t n, uint64_t *seed,
			 kvbm_hash *ev, uint32_t *n_ev, uint32_t *hits)
{
	enum { MAX = 4 };
	kvbm_hash miss[MAX], pinned[MAX], copy[MAX];
	kvbm_victim v[MAX];
	kvbm_immutable refs[MAX], pins[MAX];
	kvbm_mutable m[MAX];
	kvbm_complete c[MAX];
	const uint32_t len = 1 + (uint32_t)(kvbm_test_rand(seed) % MAX);
	uint32_t n_miss = 0, got = 0, k = 0, evicted = 0;

	if (kvbm_test_rand(seed) % 8 == 0) {
		const kvbm_hash x = 1 + kvbm_test_rand(seed) % (4 * n);
		assert_int_equal(kvbm_touch(g1, &x, 1, NULL), KVBM_OK);
	}
	for (uint32_t i = 0; i < len; i++) {
		const kvbm_hash x = 1 + kvbm_test_rand(seed) % (4 * n);
		bool again = false;
		for (uint32_t j = 0; j < n_miss; j++)
			again = again || miss[j] == x;
		if (again)
			continue;
		assert_int_equal(kvbm_match(g1, &x, 1, refs, &got), KVBM_OK);
		if (got) {
			assert_int_equal(kvbm_immutable_release(g1, refs[0]), KVBM_OK);
			++*hits;
		} else {
			miss[n_miss++] = x;
		}
	}
	if (n_miss == 0)
		return;
	if (g2) {
		/* The pool is full (no free block), so every miss evicts. */
		assert_int_equal(kvbm_peek_victims(g1, n_miss, v, &got), KVBM_OK);
		assert_int_equal(got, n_miss);
		for (uint32_t i = 0; i < got; i++) {
			bool below = false;
			pinned[i] = v[i].hash;
			assert_int_equal(kvbm_contains(g2, &v[i].hash, 1, &below, NULL, NULL),
					 KVBM_OK);
			if (!below)
				copy[k++] = v[i].hash;
		}
		assert_int_equal(kvbm_pin(g1, pinned, n_miss, pins, &got), KVBM_OK);
		assert_int_equal(got, n_miss);
		if (k) {
			assert_int_equal(kvbm_allocate(g2, k, m), KVBM_OK);
			assert_int_equal(kvbm_stage_from(g2, m, k, g1, copy, c), KVBM_OK);
			assert_int_equal(kvbm_register_batch(g2, c, k, refs), KVBM_OK);
			assert_int_equal(kvbm_immutable_release_batch(g2, refs, k), KVBM_OK);
		}
		assert_int_equal(kvbm_unpin(g1, pins, n_miss), KVBM_OK);
	}
	assert_int_equal(kvbm_allocate_ex(g1, n_miss, m, ev + *n_ev, &evicted), KVBM_OK);
	assert_int_equal(evicted, n_miss);
	for (uint32_t i = 0; g2 && i < n_miss; i++)
		assert_int_equal(ev[*n_ev + i], v[i].hash);
	*n_ev += evicted;
	for (uint32_t i = 0; i < n_miss; i++)
		assert_int_equal(kvbm_stage(g1, m[i], miss[i], BS, &c[i]), KVBM_OK);
	assert_int_equal(kvbm_register_batch(g1, c, n_miss, refs), KVBM_OK);
	assert_int_equal(kvbm_immutable_release_batch(g1, refs, n_miss), KVBM_OK);
}

/* Offloading is no use of G1's blocks: a G1 that runs the offload
 * protocol before every allocation evicts the same blocks in the same
 * order, and hits the same, as a twin G1 alone, for every policy whose
 * unpin restores the place. ARC and adaptive decide from more than the
 * order (lists, target, ghosts): a pinned T2 block used once, put there
 * by a ghost hit, must come back to T2, and the unpin's intermediate
 * release must neither promote it nor ask the ghost. */
static void test_offload_leaves_g1_decisions_alone(void **state)
{
	static const kvbm_evict_policy policies[] = {KVBM_EVICT_LRU, KVBM_EVICT_ARC,
						     KVBM_EVICT_ADAPTIVE};
	enum { N = 64, REQUESTS = 6000, MAXEV = REQUESTS * 4 };
	kvbm_hash *ev_a = malloc(MAXEV * sizeof(*ev_a)), *ev_b = malloc(MAXEV * sizeof(*ev_b));

	assert_non_null(ev_a);
	assert_non_null(ev_b);
	for (size_t p = 0; p < sizeof(policies) / sizeof(*policies); p++) {
		kvbm_manager *a = open_tier_policy("G1", N, policies[p]);
		kvbm_manager *g2 = open_tier_policy("G2", 2 * N, KVBM_EVICT_LRU);
		kvbm_manager *b = kvbm_test_open(N, BS, policies[p], KVBM_DUP_ALLOW);
		uint64_t seed = kvbm_test_seed(kvbm_evict_policy_name(policies[p]));
		uint32_t n_a = 0, n_b = 0, hits_a = 0, hits_b = 0;

		/* Full pools of hashes the requests never name. */
		for (kvbm_hash x = 4 * N + 1; x <= 5 * N; x++) {
			cache(a, x);
			cache(b, x);
		}
		for (uint32_t r = 0; r < REQUESTS; r++) {
			uint64_t s_b = seed;
			twin_request(a, g2, N, &seed, ev_a, &n_a, &hits_a);
			twin_request(b, NULL, N, &s_b, ev_b, &n_b, &hits_b);
			assert_int_equal(n_a, n_b);
			assert_memory_equal(ev_a, ev_b, n_a * sizeof(*ev_a));
		}
		assert_int_equal(hits_a, hits_b);
		assert_true(hits_a > REQUESTS / 4);
		kvbm_test_assert_invariants(a);
		kvbm_test_assert_invariants(b);
		assert_int_equal(kvbm_close(a), KVBM_OK);
		assert_int_equal(kvbm_close(g2), KVBM_OK);
		assert_int_equal(kvbm_close(b), KVBM_OK);
	}
	free(ev_a);
	free(ev_b);
	(void)state;
}

/* ---- per-tier persistence, killed ------------------------------------ */

#define MAGIC 0x6b76626d74696572ull
#define G1_BLOCKS 16u
#define G2_BLOCKS 48u
#define CHAINS 30u
#define CHAIN_LEN 6u

static char db_path[600], phys_path[2][600];
static bool g1_volatile = true; /* per round: G1's memory dies, or survives too */

static kvbm_manager *open_persistent(int tier)
{
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;
	char err[256];

	kvbm_config_init(&cfg);
	cfg.block_count = tier ? G2_BLOCKS : G1_BLOCKS;
	cfg.block_size = BS;
	cfg.tier = tier ? "G2" : "G1";
	cfg.memory_volatile = tier == 0 && g1_volatile;
	cfg.catalog_path = db_path;
	cfg.catalog_interval_ms = 2;
	cfg.catalog_batch = 8;
	cfg.catalog_reserve = 4;
	if (kvbm_open_ex(&cfg, &mgr, err, sizeof(err)) != KVBM_OK) {
		fprintf(stderr, "open %s: %s\n", cfg.tier, err);
		return NULL;
	}
	return mgr;
}

static kvbm_hash chain_hash(uint32_t chain, uint32_t pos)
{
	kvbm_hash h = 0;
	for (uint32_t i = 0; i <= pos; i++)
		h = kvbm_hash_chain(h, (kvbm_hash)chain * 1000 + i + 1, i == 0);
	return h;
}

static int write_record(int fd, uint32_t block, kvbm_hash hash)
{
	const struct kvbm_test_record r = {MAGIC, hash};
	return pwrite(fd, &r, sizeof(r), (off_t)block * sizeof(r)) == (ssize_t)sizeof(r) ? 0 : -1;
}

/* Copy G1's next victims into G2 (the protocol), then free room in G1 for
 * miss blocks. Exits the process on any failure: this runs in the child. */
static void offload(kvbm_manager *g1, kvbm_manager *g2, kvbm_hierarchy *h, int phys2, uint32_t n)
{
	kvbm_victim v[CHAIN_LEN];
	kvbm_immutable pins[CHAIN_LEN], regs[CHAIN_LEN];
	kvbm_mutable m[CHAIN_LEN];
	kvbm_complete c[CHAIN_LEN];
	kvbm_hash copy[CHAIN_LEN];
	uint32_t got = 0, pinned = 0, k = 0;

	if (kvbm_peek_victims(g1, n, v, &got) != KVBM_OK)
		_exit(20);
	for (uint32_t i = 0; i < got; i++) {
		uint8_t mask = 0;
		if (kvbm_hierarchy_lookup(h, &v[i].hash, 1, &mask, NULL, NULL) != KVBM_OK)
			_exit(21);
		if (!(mask & 2))
			copy[k++] = v[i].hash;
	}
	if (k == 0)
		return;
	if (kvbm_pin(g1, copy, k, pins, &pinned) != KVBM_OK || pinned != k)
		_exit(22);
	if (kvbm_allocate(g2, k, m) != KVBM_OK)
		_exit(23);
	for (uint32_t i = 0; i < k; i++)
		if (write_record(phys2, m[i].block, copy[i]) != 0) /* the copy, before kvbm knows */
			_exit(24);
	if (kvbm_stage_from(g2, m, k, g1, copy, c) != KVBM_OK ||
	    kvbm_register_batch(g2, c, k, regs) != KVBM_OK ||
	    kvbm_immutable_release_batch(g2, regs, k) != KVBM_OK || kvbm_unpin(g1, pins, k) != KVBM_OK)
		_exit(25);
}

static void child_tiers(int progress, uint64_t seed)
{
	kvbm_manager *t[2] = {open_persistent(0), open_persistent(1)};
	kvbm_hierarchy *h = NULL;
	const int phys[2] = {open(phys_path[0], O_RDWR), open(phys_path[1], O_RDWR)};
	kvbm_hash hashes[CHAIN_LEN];
	kvbm_immutable refs[CHAIN_LEN];
	kvbm_mutable m[CHAIN_LEN];
	kvbm_complete c[CHAIN_LEN];
	uint8_t fastest[CHAIN_LEN];

	if (!t[0] || !t[1] || phys[0] < 0 || phys[1] < 0 ||
	    kvbm_hierarchy_create(t, 2, 0, &h) != KVBM_OK)
		_exit(2);
	for (;;) {
		const uint32_t chain = (uint32_t)(kvbm_test_rand(&seed) % CHAINS);
		const uint32_t len = 1 + (uint32_t)(kvbm_test_rand(&seed) % CHAIN_LEN);
		uint32_t in_g1 = 0, plan = 0;
		for (uint32_t i = 0; i < len; i++)
			hashes[i] = chain_hash(chain, i);
		if (kvbm_hierarchy_lookup(h, hashes, len, NULL, fastest, &plan) != KVBM_OK)
			_exit(3);
		while (in_g1 < plan && fastest[in_g1] == 0)
			in_g1++;
		/* G1's prefix is matched in G1; the rest of the plan is
		 * onboarded from G2, the misses computed: all new in G1. */
		if (kvbm_match(t[0], hashes, in_g1, refs, &in_g1) != KVBM_OK)
			_exit(4);
		const uint32_t need = len - in_g1;
		kvbm_pool_counts pc;
		if (kvbm_pool_counts_read(t[0], &pc) != KVBM_OK)
			_exit(5);
		if (need > pc.reset)
			offload(t[0], t[1], h, phys[1], need - pc.reset);
		if (need && kvbm_allocate(t[0], need, m) != KVBM_OK)
			_exit(6);
		for (uint32_t i = 0; i < need; i++) {
			const uint32_t pos = in_g1 + i;
			if (write_record(phys[0], m[i].block, hashes[pos]) != 0 ||
			    kvbm_stage_lineage(t[0], m[i], hashes[pos], pos ? hashes[pos - 1] : 0, pos,
					       BS, &c[i]) != KVBM_OK)
				_exit(7);
		}
		if (need && kvbm_register_batch(t[0], c, need, refs + in_g1) != KVBM_OK)
			_exit(8);
		for (uint32_t i = len; i-- > 0;)
			if (kvbm_immutable_release(t[0], refs[i]) != KVBM_OK)
				_exit(9);
		const char tick = 1;
		if (write(progress, &tick, 1) != 1)
			_exit(10);
	}
}

static uint32_t rows_of_tier(const char *tier)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	uint32_t n = 0;

	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	/* Also read while the child writes: wait out its brief locks. */
	sqlite3_busy_timeout(db, 10000);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT count(*) FROM block_rows WHERE id >> 32 ="
					    " (SELECT tier_id FROM tiers WHERE name = ?1)",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, tier, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = (uint32_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* Twelve kills of a process running the offload protocol between G1 and
 * G2 in one catalog file. In most rounds G1 is volatile: it must come back
 * cold, its rows gone, while every block G2 restores holds, in G2's data
 * file, the hash restored for it. In every third round G1's memory
 * survives too (its rows were written with the same crash ordering), and
 * G1's restored blocks are checked against G1's data file the same way. */
static void test_volatile_g1_and_surviving_g2_after_sigkill(void **state)
{
	char *dir = kvbm_test_tmpdir("tiers-kill");
	uint64_t seed = kvbm_test_seed("tiers_kill");
	uint32_t restored[2] = {0, 0}, g1_rows_seen = 0;

	snprintf(db_path, sizeof(db_path), "%s/cat.db", dir);
	for (int k = 0; k < 2; k++) {
		snprintf(phys_path[k], sizeof(phys_path[k]), "%s/phys%d", dir, k + 1);
		const int fd = open(phys_path[k], O_RDWR | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	for (uint32_t round = 0; round < 12; round++) {
		g1_volatile = round % 3 != 2;
		int pipefd[2];
		assert_int_equal(pipe(pipefd), 0);
		const uint64_t child_seed = kvbm_test_rand(&seed);
		const pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(pipefd[0]);
			child_tiers(pipefd[1], child_seed);
		}
		close(pipefd[1]);
		const uint32_t steps = 20 + (uint32_t)(kvbm_test_rand(&seed) % 300);
		char tick;
		uint32_t seen = 0;
		while (seen < steps && read(pipefd[0], &tick, 1) == 1)
			seen++;
		/* A surviving G1 proves something only if some of its rows
		 * committed before the kill: on a loaded machine the writer
		 * can lag the first few hundred steps, so let the child run
		 * on until the file has some (progress, not time). */
		uint32_t extra = 0;
		while (!g1_volatile && extra < 200000 && rows_of_tier("G1") == 0)
			for (uint32_t i = 0; i < 64 && read(pipefd[0], &tick, 1) == 1; i++)
				extra++;
		assert_int_equal(kill(pid, SIGKILL), 0);
		int status = 0;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		close(pipefd[0]);
		if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
			fprintf(stderr, "child exited with %d after %u steps\n",
				WIFEXITED(status) ? WEXITSTATUS(status) : -1, seen);
			fail();
		}
		assert_int_equal(seen, steps);
		g1_rows_seen += rows_of_tier("G1");
		kvbm_manager *g2 = open_persistent(1), *g1 = open_persistent(0);
		assert_non_null(g1);
		assert_non_null(g2);
		restored[1] += kvbm_test_check_data(g2, G2_BLOCKS, phys_path[1], MAGIC);
		if (g1_volatile) {
			assert_int_equal(kvbm_test_counts(g1).inactive, 0);
			assert_int_equal(kvbm_test_counts(g1).reset, G1_BLOCKS);
		} else {
			restored[0] += kvbm_test_check_data(g1, G1_BLOCKS, phys_path[0], MAGIC);
		}
		assert_int_equal(kvbm_close_ex(g1, KVBM_CLOSE_DISCARD), KVBM_OK);
		assert_int_equal(kvbm_close_ex(g2, KVBM_CLOSE_DISCARD), KVBM_OK);
		if (g1_volatile)
			assert_int_equal(rows_of_tier("G1"), 0);
	}
	/* The test proves something only if both tiers restored blocks and
	 * a volatile G1 had rows that its restart cleared. */
	assert_true(restored[0] > 0);
	assert_true(restored[1] > 0);
	assert_true(g1_rows_seen > 0);
	kvbm_test_rmdir(dir);
	free(dir);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_preview_predicts_and_changes_nothing),
		cmocka_unit_test(test_preview_unsupported_policies_say_so),
		cmocka_unit_test(test_preview_lists_cached_blocks_only),
		cmocka_unit_test(test_preview_with_catalog_reserve),
		cmocka_unit_test(test_stage_from_copies_lineage),
		cmocka_unit_test(test_hierarchy_lookup_matches_each_tier),
		cmocka_unit_test(test_indexed_hierarchy_lookup_matches_each_tier),
		cmocka_unit_test(test_offload_protocol_and_a_hit_after_the_preview),
		cmocka_unit_test(test_offload_leaves_g1_decisions_alone),
		cmocka_unit_test(test_volatile_g1_and_surviving_g2_after_sigkill),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
