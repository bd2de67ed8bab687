/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Eviction policies: the exact victim order of each policy on small
 * hand-made sequences (tail-first release, ties, frequency tiers, leaves,
 * priorities and their expiry, probation and ghosts), a randomised
 * property test over every policy (a held block is never evicted, the
 * accounting stays exact), the order surviving a catalog restart (with a
 * priority retention that ran out before it), the default policy, and
 * Belady's optimum checked against a brute-force search on tiny traces.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "test_common.h"

#define ALL_POLICIES for (int p_ = 0; p_ < KVBM_EVICT_COUNT; p_++)

static kvbm_hash H(uint32_t i)
{
	return kvbm_hash_chain(0, 0xbeef00 + i, true);
}

static kvbm_manager *open_policy(kvbm_evict_policy p, uint32_t blocks)
{
	return kvbm_test_open(blocks, 4, p, KVBM_DUP_ALLOW);
}

/* Register hash h (parent given) on a fresh block; return the reference. */
static kvbm_immutable make(kvbm_manager *mgr, kvbm_hash h, kvbm_hash parent, uint32_t pos)
{
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable r;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	if (pos == KVBM_POSITION_UNKNOWN)
		assert_int_equal(kvbm_stage(mgr, m, h, 4, &c), KVBM_OK);
	else
		assert_int_equal(kvbm_stage_lineage(mgr, m, h, parent, pos, 4, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &r), KVBM_OK);
	return r;
}

/* Register and release at once (the block becomes inactive). */
static void cached(kvbm_manager *mgr, kvbm_hash h)
{
	assert_int_equal(kvbm_immutable_release(mgr, make(mgr, h, 0, KVBM_POSITION_UNKNOWN)),
			 KVBM_OK);
}

/* Hit h once (match + release): a second use of the block. */
static void hit(kvbm_manager *mgr, kvbm_hash h)
{
	kvbm_immutable r;
	uint32_t n = 0;

	assert_int_equal(kvbm_match(mgr, &h, 1, &r, &n), KVBM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
}

/* Allocate n blocks, check the evicted hashes are exactly want[], release. */
static void expect_evicted(kvbm_manager *mgr, uint32_t n, const kvbm_hash *want, uint32_t n_want)
{
	kvbm_mutable m[16];
	kvbm_hash got[16];
	uint32_t n_got = 0;

	assert_int_equal(kvbm_allocate_ex(mgr, n, m, got, &n_got), KVBM_OK);
	assert_int_equal(n_got, n_want);
	for (uint32_t i = 0; i < n_want; i++)
		if (got[i] != want[i])
			fail_msg("eviction %u: got %016llx, want %016llx", i,
				 (unsigned long long)got[i], (unsigned long long)want[i]);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	assert_invariants(mgr);
}

/* Every policy: a chain released tail first is evicted tail first, so a
 * shared prefix outlives its continuations. Except vllm-arc, which, as
 * vLLM's offloading ARC, orders a block by its kvbm_stage (the store's
 * preparation), never by its release (test_vllm_arc.c). */
static void policies__tail_first_release_evicts_the_tail_first(void **state)
{
	(void)state;
	ALL_POLICIES
	{
		if (p_ == KVBM_EVICT_VLLM_ARC)
			continue;
		kvbm_manager *mgr = open_policy((kvbm_evict_policy)p_, 3);
		kvbm_immutable r[3];
		for (uint32_t i = 0; i < 3; i++)
			r[i] = make(mgr, H(i), i ? H(i - 1) : 0, i);
		const kvbm_immutable rev[3] = {r[2], r[1], r[0]};
		assert_int_equal(kvbm_immutable_release_batch(mgr, rev, 3), KVBM_OK);
		const kvbm_hash want[3] = {H(2), H(1), H(0)};
		expect_evicted(mgr, 3, want, 3);
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
	}
}

/* Multi-level LRU: a block hit twice (estimated frequency 3, tier 1)
 * outlives blocks released after it that were used once (tier 0). */
static void policies__multi_lru_protects_frequent_blocks(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_policy(KVBM_EVICT_MULTI_LRU, 4);

	for (uint32_t i = 0; i < 4; i++)
		cached(mgr, H(i));
	hit(mgr, H(0));
	hit(mgr, H(0)); /* H0: registration + 2 hits = 3 */
	hit(mgr, H(1)); /* H1: 2, still tier 0 but released last */
	/* Tier 0 in release order: H2, H3, H1; then tier 1: H0. */
	const kvbm_hash want[4] = {H(2), H(3), H(1), H(0)};
	expect_evicted(mgr, 4, want, 4);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Lineage: a parent is never evicted while a child is cached, even when
 * the parent is the least recently released; among leaves, LRU. */
static void policies__lineage_evicts_leaves_first(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_policy(KVBM_EVICT_LINEAGE, 4);
	const kvbm_hash p = H(0), c = H(1), x = H(2), y = H(3);

	kvbm_immutable rp = make(mgr, p, 0, 0), rc = make(mgr, c, p, 1);
	assert_int_equal(kvbm_immutable_release(mgr, rp), KVBM_OK); /* oldest, not a leaf */
	cached(mgr, x);
	assert_int_equal(kvbm_immutable_release(mgr, rc), KVBM_OK);
	cached(mgr, y);
	/* Leaves: x (older), c, y; p only once c is gone. LRU would take p. */
	const kvbm_hash want[4] = {x, c, p, y};
	expect_evicted(mgr, 4, want, 4);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Lineage, the seed's ghost rule: a block hit on its own (scattered match,
 * weak upgrade) while its child stays cached still counts as its parent's
 * child. Without it A becomes a leaf and goes first, leaving B's child C
 * cached but out of reach of any prefix match. */
static void policies__lineage_hit_in_mid_chain_keeps_the_root(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_policy(KVBM_EVICT_LINEAGE, 3);
	const kvbm_hash a = H(0), b = H(1), c = H(2);
	kvbm_immutable ra = make(mgr, a, 0, 0), rb = make(mgr, b, a, 1), rc = make(mgr, c, b, 2);
	kvbm_immutable got;
	uint32_t found = 0;

	assert_int_equal(kvbm_immutable_release(mgr, ra), KVBM_OK); /* root first */
	assert_int_equal(kvbm_immutable_release(mgr, rb), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, rc), KVBM_OK);
	assert_int_equal(kvbm_match_scattered(mgr, &b, 1, &got, &found), KVBM_OK);
	assert_int_equal(found, 1);
	const kvbm_hash first[1] = {c};
	expect_evicted(mgr, 1, first, 1);
	/* C gone, B's ghost is pruned: B is a leaf when it returns, A its parent. */
	assert_int_equal(kvbm_immutable_release(mgr, got), KVBM_OK);
	const kvbm_hash rest[2] = {b, a};
	expect_evicted(mgr, 3, rest, 2);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Lineage: a block that returns while its ghost still has a cached child
 * takes the ghost's place and is counted once in its parent (counted
 * twice, A would never be a leaf again and Y would go before it); a ghost
 * is pruned when its last cached descendant goes. */
static void policies__lineage_ghosts_return_and_prune(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_policy(KVBM_EVICT_LINEAGE, 5);
	const kvbm_hash a = H(0), b = H(1), c = H(2), d = H(3), y = H(4);
	kvbm_immutable r[4] = {make(mgr, a, 0, 0), make(mgr, b, a, 1), make(mgr, c, b, 2),
			       make(mgr, d, c, 3)};
	kvbm_immutable got[2];
	uint32_t found = 0;

	for (int i = 0; i < 4; i++)
		assert_int_equal(kvbm_immutable_release(mgr, r[i]), KVBM_OK);
	const kvbm_hash bc[2] = {b, c};
	assert_int_equal(kvbm_match_scattered(mgr, bc, 2, got, &found), KVBM_OK);
	assert_int_equal(found, 2);
	assert_int_equal(kvbm_immutable_release(mgr, got[0]), KVBM_OK); /* B back, C a ghost */
	cached(mgr, y);
	/* D first (the only leaf below the ghost C), then B once C's ghost is
	 * pruned, then A (older than Y). */
	const kvbm_hash want[4] = {d, b, a, y};
	expect_evicted(mgr, 4, want, 4);
	assert_int_equal(kvbm_immutable_release(mgr, got[1]), KVBM_OK);
	const kvbm_hash last[1] = {c};
	expect_evicted(mgr, 5, last, 1);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Lineage: parent hashes that form a cycle (caller input, found by
 * fuzzing) leave no leaf; the least recently released block breaks it. */
static void policies__lineage_survives_a_parent_cycle(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_policy(KVBM_EVICT_LINEAGE, 2);
	const kvbm_hash a = H(0), b = H(1);

	kvbm_immutable ra = make(mgr, a, b, 1), rb = make(mgr, b, a, 1);
	assert_int_equal(kvbm_immutable_release(mgr, ra), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, rb), KVBM_OK);
	const kvbm_hash want[2] = {a, b};
	expect_evicted(mgr, 2, want, 2);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Priority: lowest priority first, LRU among equal priorities (a tie),
 * and a priority whose retention ran out counts as the default. */
static void policies__priority_order_ties_and_retention(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_policy(KVBM_EVICT_PRIORITY, 6);
	const uint32_t prio[6] = {80, 35, 10, 35, 90, 60};
	const uint32_t retention[6] = {0, 0, 0, 0, 2, 0};

	for (uint32_t i = 0; i < 6; i++) {
		kvbm_immutable r = make(mgr, H(i), 0, KVBM_POSITION_UNKNOWN);
		assert_int_equal(kvbm_immutable_set_priority(mgr, r, prio[i], retention[i]), KVBM_OK);
		assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	}
	/* H4 (90, retention 2 ticks) entered at tick t; H5's release is t+1
	 * and the hits below move the clock past t+2: H4 is default now. */
	hit(mgr, H(5));
	hit(mgr, H(5));
	/* 10: H2; 35 in release order: H1, H3, H4 (expired); 60: H5; 80: H0. */
	const kvbm_hash want[6] = {H(2), H(1), H(3), H(4), H(5), H(0)};
	expect_evicted(mgr, 6, want, 6);
	kvbm_immutable r = make(mgr, H(9), 0, KVBM_POSITION_UNKNOWN);
	assert_int_equal(kvbm_immutable_set_priority(mgr, r, 101, 0), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* S3-FIFO, 2Q, ARC: a hash evicted once and registered again is protected,
 * so a burst of one-time blocks released after it goes first; LRU, for
 * contrast, evicts it between them. */
/* protects: 0 LRU order, 1 the returning hash outlives the burst, 2 ARC:
 * its target for T1 grew by one, so T1 keeps one block longer. */
static void scan_resistance(kvbm_evict_policy policy, int protects)
{
	kvbm_manager *mgr = open_policy(policy, 4);
	const kvbm_hash a = H(0), b = H(1), c = H(2), d = H(3), e = H(4), f = H(5);

	cached(mgr, a);
	cached(mgr, b);
	cached(mgr, c);
	cached(mgr, d);
	const kvbm_hash first[1] = {a};
	expect_evicted(mgr, 1, first, 1); /* a was a one-timer so far */
	cached(mgr, a);                   /* ... asked for again */
	const kvbm_hash second[2] = {b, c};
	expect_evicted(mgr, 2, second, 2);
	cached(mgr, e);
	cached(mgr, f);
	if (protects == 1) {
		const kvbm_hash want[4] = {d, e, f, a};
		expect_evicted(mgr, 4, want, 4);
	} else if (protects == 2) {
		const kvbm_hash want[4] = {d, e, a, f};
		expect_evicted(mgr, 4, want, 4);
	} else {
		const kvbm_hash want[4] = {d, a, e, f};
		expect_evicted(mgr, 4, want, 4);
	}
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void policies__s3fifo_2q_arc_resist_one_time_blocks(void **state)
{
	(void)state;
	scan_resistance(KVBM_EVICT_LRU, 0);
	scan_resistance(KVBM_EVICT_S3FIFO, 1);
	scan_resistance(KVBM_EVICT_TWO_QUEUE, 1);
	scan_resistance(KVBM_EVICT_ARC, 2);
}

/* 2Q: a block hit while cached is protected from then on. */
static void policies__2q_protects_blocks_hit_in_cache(void **state)
{
	(void)state;
	kvbm_manager *mgr = open_policy(KVBM_EVICT_TWO_QUEUE, 4);

	for (uint32_t i = 0; i < 4; i++)
		cached(mgr, H(i));
	hit(mgr, H(0));
	hit(mgr, H(3));
	/* Probation: H1, H2; protected in release order: H0, H3. */
	const kvbm_hash want[4] = {H(1), H(2), H(0), H(3)};
	expect_evicted(mgr, 4, want, 4);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* Random operations on every policy: never a held block evicted, exact
 * accounting, every evicted hash really gone. */
static void policies__property_no_held_block_is_evicted(void **state)
{
	(void)state;
	uint64_t rng = kvbm_test_seed("policies");

	ALL_POLICIES
	{
		kvbm_manager *mgr = open_policy((kvbm_evict_policy)p_, 24);
		kvbm_immutable held[24];
		uint32_t n_held = 0;

		for (int op = 0; op < 20000; op++) {
			const uint32_t r = (uint32_t)(kvbm_test_rand(&rng) % 100);
			const kvbm_hash h = H((uint32_t)(kvbm_test_rand(&rng) % 60));
			if (r < 40 && n_held < 24) {
				kvbm_immutable got;
				uint32_t n = 0;
				assert_int_equal(kvbm_match(mgr, &h, 1, &got, &n), KVBM_OK);
				if (n == 1) {
					held[n_held++] = got;
					continue;
				}
				kvbm_mutable m;
				kvbm_complete c;
				kvbm_hash evicted[1];
				uint32_t n_ev = 0;
				const kvbm_status st = kvbm_allocate_ex(mgr, 1, &m, evicted, &n_ev);
				if (st == KVBM_E_EXHAUSTED)
					continue;
				assert_int_equal(st, KVBM_OK);
				for (uint32_t i = 0; i < n_ev; i++) {
					for (uint32_t k = 0; k < n_held; k++) {
						kvbm_hash hh = 0;
						assert_int_equal(kvbm_immutable_hash(mgr, held[k], &hh), KVBM_OK);
						assert_int_not_equal(hh, evicted[i]);
					}
					bool in = true;
					assert_int_equal(kvbm_contains(mgr, &evicted[i], 1, &in, NULL, NULL),
							 KVBM_OK);
					assert_false(in);
				}
				/* Random parents, cycles included: lineage's ghosts and
				 * leaves see every shape a caller can give them. */
				const uint32_t pr = (uint32_t)(kvbm_test_rand(&rng) % 64);
				assert_int_equal(kvbm_stage_lineage(mgr, m, h, pr < 60 ? H(pr) : 0,
								    1, 4, &c),
						 KVBM_OK);
				assert_int_equal(kvbm_register(mgr, c, &held[n_held++]), KVBM_OK);
			} else if (r < 85 && n_held > 0) {
				const uint32_t k = (uint32_t)(kvbm_test_rand(&rng) % n_held);
				if (r < 45)
					assert_int_equal(kvbm_immutable_set_priority(
								 mgr, held[k], (uint32_t)(kvbm_test_rand(&rng) % 101),
								 (uint32_t)(kvbm_test_rand(&rng) % 4)),
							 KVBM_OK);
				assert_int_equal(kvbm_immutable_release(mgr, held[k]), KVBM_OK);
				held[k] = held[--n_held];
			} else if (r == 99) {
				assert_int_equal(kvbm_reset_inactive(mgr, NULL), KVBM_OK);
			}
			if (op % 16 == 0)
				assert_invariants(mgr);
		}
		for (uint32_t k = 0; k < n_held; k++)
			assert_int_equal(kvbm_immutable_release(mgr, held[k]), KVBM_OK);
		assert_invariants(mgr);
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
	}
}

/* Build a state with hits, then evict everything and return the order. */
static void scripted_order(kvbm_manager *mgr, bool restart, const kvbm_config *cfg,
			   kvbm_hash *order, uint32_t *n)
{
	for (uint32_t i = 0; i < 8; i++)
		cached(mgr, H(i));
	hit(mgr, H(2));
	hit(mgr, H(2));
	hit(mgr, H(5));
	hit(mgr, H(0));
	hit(mgr, H(2));
	if (restart) {
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
		mgr = kvbm_test_open_cfg(cfg);
	}
	/* 9 blocks, 8 cached: the free one covers the writer's reserve, so
	 * it never reclaims ahead at a moment the test does not control. */
	kvbm_mutable m[8];
	assert_int_equal(kvbm_allocate_ex(mgr, 8, m, order, n), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void policies__order_survives_a_catalog_restart(void **state)
{
	(void)state;
	ALL_POLICIES
	{
		char *dir = kvbm_test_tmpdir("policies");
		char path[512];
		kvbm_config cfg;
		kvbm_hash live[8], restored[8];
		uint32_t n_live = 0, n_restored = 0;

		snprintf(path, sizeof(path), "%s/catalog.db", dir);
		kvbm_config_init(&cfg);
		cfg.block_count = 9;
		cfg.block_size = 4;
		cfg.evict_policy = (kvbm_evict_policy)p_;
		cfg.catalog_path = path;
		cfg.catalog_sync = KVBM_SYNC_OFF;
		scripted_order(kvbm_test_open_cfg(&cfg), false, &cfg, live, &n_live);
		kvbm_test_rmdir(dir);
		free(dir);
		dir = kvbm_test_tmpdir("policies");
		snprintf(path, sizeof(path), "%s/catalog.db", dir);
		scripted_order(kvbm_test_open_cfg(&cfg), true, &cfg, restored, &n_restored);
		assert_int_equal(n_live, 7);
		assert_int_equal(n_restored, 7);
		for (uint32_t i = 0; i < 7; i++)
			if (live[i] != restored[i])
				fail_msg("%s: eviction %u differs after restart",
					 kvbm_evict_policy_name(cfg.evict_policy), i);
		kvbm_test_rmdir(dir);
		free(dir);
	}
}

/* The policy name a manager on cfg records in its catalog's tiers row (the
 * public record of the policy a manager runs: `kvbm-catalog info` shows
 * it) and, after a clean close, in policy_state (NULL: no state row). */
static void recorded_policy(kvbm_config *cfg, const char *want, const char *want_state)
{
	char *dir = kvbm_test_tmpdir("policies");
	char path[512];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	cfg->catalog_path = path;
	cfg->catalog_sync = KVBM_SYNC_OFF;
	kvbm_manager *mgr = kvbm_test_open_cfg(cfg);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(kvbm_immutable_release(mgr, make(mgr, H(i), 0, 0)), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT eviction_policy FROM tiers", -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), want);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT policy FROM policy_state", -1, &st, NULL),
			 SQLITE_OK);
	if (want_state) {
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(st, 0), want_state);
	} else {
		assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	cfg->catalog_path = NULL;
	kvbm_test_rmdir(dir);
	free(dir);
}

/* kvbm_config_init() picks adaptive, and a manager opened on it runs
 * adaptive; a config built by hand from zeroes (value 0) runs LRU. */
static void policies__default_is_adaptive(void **state)
{
	kvbm_config cfg;

	(void)state;
	kvbm_config_init(&cfg);
	assert_int_equal(cfg.evict_policy, KVBM_EVICT_ADAPTIVE);
	assert_string_equal(kvbm_evict_policy_name(cfg.evict_policy), "adaptive");
	cfg.block_count = 8;
	cfg.block_size = 4;
	recorded_policy(&cfg, "adaptive", "adaptive");

	kvbm_config zeroed;
	memset(&zeroed, 0, sizeof(zeroed));
	zeroed.block_count = 8;
	zeroed.block_size = 4;
	zeroed.tier = "G1";
	memcpy(zeroed.multi_lru_thresholds, cfg.multi_lru_thresholds,
	       sizeof(zeroed.multi_lru_thresholds));
	zeroed.catalog_batch = cfg.catalog_batch;
	zeroed.catalog_interval_ms = cfg.catalog_interval_ms;
	assert_int_equal(zeroed.evict_policy, KVBM_EVICT_LRU);
	recorded_policy(&zeroed, "lru", NULL);
}

/* Priority: a retention that ran out before a restart stays run out. The
 * catalog keys a block by its last release, so a restore that measured
 * the retention from there would give H(0) its priority 90 back. */
static void retention_order(bool restart, kvbm_hash *order, uint32_t *n)
{
	char *dir = kvbm_test_tmpdir("policies");
	char path[512];
	kvbm_config cfg;

	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	kvbm_config_init(&cfg);
	cfg.block_count = 5;
	cfg.block_size = 4;
	cfg.evict_policy = KVBM_EVICT_PRIORITY;
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	for (uint32_t i = 0; i < 4; i++) {
		kvbm_immutable r = make(mgr, H(i), 0, KVBM_POSITION_UNKNOWN);
		if (i == 0)
			assert_int_equal(kvbm_immutable_set_priority(mgr, r, 90, 20), KVBM_OK);
		assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	}
	/* At least 30 ticks: H(0)'s 20 run out before its next release... */
	for (uint32_t i = 0; i < 30; i++)
		hit(mgr, H(1 + i % 3));
	hit(mgr, H(0));
	/* ...but not 20 ticks after it, when the pool is keyed. */
	for (uint32_t i = 1; i < 4; i++)
		hit(mgr, H(i));
	if (restart) {
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
		mgr = kvbm_test_open_cfg(&cfg);
	}
	kvbm_mutable m[4];
	assert_int_equal(kvbm_allocate_ex(mgr, 4, m, order, n), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
}

static void policies__priority_retention_expiry_survives_a_restart(void **state)
{
	(void)state;
	kvbm_hash live[4], restored[4];
	uint32_t n_live = 0, n_restored = 0;

	retention_order(false, live, &n_live);
	retention_order(true, restored, &n_restored);
	/* One block stays free for the writer's reserve: three evictions. */
	assert_int_equal(n_live, 3);
	assert_int_equal(n_restored, 3);
	const kvbm_hash want[3] = {H(0), H(1), H(2)};
	for (uint32_t i = 0; i < 3; i++) {
		if (live[i] != want[i])
			fail_msg("live eviction %u is not the expected one", i);
		if (restored[i] != want[i])
			fail_msg("eviction %u differs after restart", i);
	}
}

/* ---- Belady against brute force on tiny traces ---- */

/* The most hits any eviction schedule achieves from request r on, with
 * cache contents `cache` (uids), under the replay model. */
static uint64_t best_hits(const struct kvbm_trace *t, const uint32_t *uid, uint32_t r,
			  uint32_t cache, uint32_t capacity)
{
	if (r == t->n_requests)
		return 0;
	uint32_t req = 0, k = 0, hits;
	const uint32_t lo = t->offsets[r], hi = t->offsets[r + 1];

	for (uint32_t i = lo; i < hi; i++)
		req |= 1u << uid[i];
	while (lo + k < hi && (cache >> uid[lo + k] & 1))
		k++;
	hits = k;
	const uint32_t all = cache | req;
	const int over = __builtin_popcount(all) - (int)capacity;
	if (over <= 0)
		return hits + best_hits(t, uid, r + 1, all, capacity);
	/* Try every set of `over` blocks outside the request to evict. */
	uint64_t best = 0;
	const uint32_t evictable = cache & ~req;
	for (uint32_t sub = evictable;; sub = (sub - 1) & evictable) {
		if (__builtin_popcount(sub) == over) {
			const uint64_t h = best_hits(t, uid, r + 1, all & ~sub, capacity);
			if (h > best)
				best = h;
		}
		if (sub == 0)
			break;
	}
	return hits + best;
}

static void policies__belady_is_optimal_on_tiny_traces(void **state)
{
	(void)state;
	uint64_t rng = kvbm_test_seed("belady");
	char *dir = kvbm_test_tmpdir("belady");
	char path[512], err[256];
	int checked = 0;

	snprintf(path, sizeof(path), "%s/tiny.jsonl", dir);
	for (int trial = 0; trial < 300; trial++) {
		const uint32_t capacity = 2 + (uint32_t)(kvbm_test_rand(&rng) % 3);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		const uint32_t n_req = 3 + (uint32_t)(kvbm_test_rand(&rng) % 5);
		for (uint32_t r = 0; r < n_req; r++) {
			/* Requests draw from 3 "conversations" so prefixes recur. */
			const uint32_t conv = (uint32_t)(kvbm_test_rand(&rng) % 3);
			const uint32_t len = 1 + (uint32_t)(kvbm_test_rand(&rng) % capacity);
			fprintf(f, "{\"hash_ids\": [");
			for (uint32_t i = 0; i < len; i++)
				fprintf(f, "%s%u", i ? ", " : "",
					conv * 10 + (i < 1 ? 0 : (uint32_t)(kvbm_test_rand(&rng) % 2) + i));
			fprintf(f, "]}\n");
		}
		fclose(f);
		struct kvbm_trace t;
		assert_int_equal(kvbm_trace_load(path, &t, err, sizeof(err)), 0);
		if (t.n_unique > 20) {
			kvbm_trace_free(&t);
			continue;
		}
		/* Dense ids for the bitmask search. */
		uint32_t *uid = calloc(t.n_refs, sizeof(*uid));
		kvbm_hash seen[32];
		uint32_t n_seen = 0;
		for (uint64_t i = 0; i < t.n_refs; i++) {
			uint32_t j = 0;
			while (j < n_seen && seen[j] != t.hashes[i])
				j++;
			if (j == n_seen)
				seen[n_seen++] = t.hashes[i];
			uid[i] = j;
		}
		const uint64_t optimum = best_hits(&t, uid, 0, 0, capacity);
		const uint64_t belady = kvbm_replay_belady(&t, capacity);
		if (belady != optimum)
			fail_msg("trial %d (capacity %u): Belady %llu hits, optimum %llu", trial,
				 capacity, (unsigned long long)belady, (unsigned long long)optimum);
		checked++;
		free(uid);
		kvbm_trace_free(&t);
	}
	assert_true(checked > 200);
	kvbm_test_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(policies__tail_first_release_evicts_the_tail_first),
		cmocka_unit_test(policies__multi_lru_protects_frequent_blocks),
		cmocka_unit_test(policies__lineage_evicts_leaves_first),
		cmocka_unit_test(policies__lineage_hit_in_mid_chain_keeps_the_root),
		cmocka_unit_test(policies__lineage_ghosts_return_and_prune),
		cmocka_unit_test(policies__lineage_survives_a_parent_cycle),
		cmocka_unit_test(policies__priority_order_ties_and_retention),
		cmocka_unit_test(policies__s3fifo_2q_arc_resist_one_time_blocks),
		cmocka_unit_test(policies__2q_protects_blocks_hit_in_cache),
		cmocka_unit_test(policies__property_no_held_block_is_evicted),
		cmocka_unit_test(policies__order_survives_a_catalog_restart),
		cmocka_unit_test(policies__priority_retention_expiry_survives_a_restart),
		cmocka_unit_test(policies__default_is_adaptive),
		cmocka_unit_test(policies__belady_is_optimal_on_tiny_traces),
	};
	return cmocka_run_group_tests_name("policies", tests, NULL, NULL);
}
