/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hierarchy's presence index (src/tiers/presence.c): it agrees with every
 * tier's own registry after random mixes of every path that changes one
 * and after a catalog restore, on 2 and 3 tiers; on its own, with probe
 * runs that cross stripes and wrap; a manager is in one hierarchy at a
 * time; freeing a hierarchy detaches its tiers; tiers change it from
 * their threads while a third looks up.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"
#include "tiers/presence.h"

#define BS 4u

static void cache(kvbm_manager *mgr, kvbm_hash hash)
{
	assert_int_equal(kvbm_immutable_release(mgr, kvbm_test_make(mgr, hash)), KVBM_OK);
}

static kvbm_manager *open_tier(const char *name, uint32_t blocks)
{
	kvbm_config cfg;

	kvbm_config_init(&cfg);
	cfg.block_count = blocks;
	cfg.block_size = BS;
	cfg.tier = name;
	return kvbm_test_open_cfg(&cfg);
}

#define UNIVERSE 240u
#define HELD 4u

/* The hierarchy's masks, fastest tiers and prefix against each tier's own
 * kvbm_contains, for every hash in [first, first + n). */
static void assert_index_agrees(kvbm_hierarchy *h, kvbm_manager *const *t, uint32_t tiers,
				kvbm_hash first, uint32_t n)
{
	enum { MAX = 16384 };
	static kvbm_hash hashes[MAX];
	static uint8_t masks[MAX], fastest[MAX];
	static bool present[KVBM_TIERS_MAX][MAX];
	uint32_t prefix = 0, want_prefix = 0;
	bool run = true;

	assert_true(n <= MAX);
	for (uint32_t i = 0; i < n; i++)
		hashes[i] = first + i;
	assert_int_equal(kvbm_hierarchy_lookup(h, hashes, n, masks, fastest, &prefix), KVBM_OK);
	for (uint32_t k = 0; k < tiers; k++)
		assert_int_equal(kvbm_contains(t[k], hashes, n, present[k], NULL, NULL), KVBM_OK);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t want = 0;
		for (uint32_t k = 0; k < tiers; k++)
			want |= (uint8_t)(present[k][i] << k);
		if (masks[i] != want)
			fail_msg("hash %llu: index says %#x, the tiers %#x",
				 (unsigned long long)hashes[i], masks[i], want);
		assert_int_equal(fastest[i], want ? __builtin_ctz(want) : 0xff);
		run = run && want;
		want_prefix += run;
	}
	assert_int_equal(prefix, want_prefix);
}

struct mix_tier {
	kvbm_manager *mgr;
	kvbm_immutable held[HELD];
	uint32_t n_held;
};

static void mix_release_one(struct mix_tier *m, uint64_t *seed)
{
	if (!m->n_held)
		return;
	const uint32_t i = (uint32_t)(kvbm_test_rand(seed) % m->n_held);
	assert_int_equal(kvbm_immutable_release(m->mgr, m->held[i]), KVBM_OK);
	m->held[i] = m->held[--m->n_held];
}

static void mix_keep_or_release(struct mix_tier *m, kvbm_immutable h, uint64_t *seed)
{
	if (m->n_held < HELD && kvbm_test_rand(seed) % 2)
		m->held[m->n_held++] = h;
	else
		assert_int_equal(kvbm_immutable_release(m->mgr, h), KVBM_OK);
}

/* One random step on one tier: registrations of new and known hashes
 * (duplicates too) under allocation pressure, so they evict; releases,
 * some of blocks marked reset-on-release; hits; unstaging; now and then
 * the whole inactive pool reset. Every path that changes the registry. */
static void mix_step(struct mix_tier *m, uint64_t *seed)
{
	const uint64_t r = kvbm_test_rand(seed) % 16;
	const kvbm_hash x = 1 + kvbm_test_rand(seed) % UNIVERSE;
	kvbm_mutable mu[4];
	kvbm_complete c[4];
	kvbm_immutable h[4];

	if (r < 7) {
		if (kvbm_allocate(m->mgr, 1, mu) == KVBM_E_EXHAUSTED) {
			mix_release_one(m, seed);
			return;
		}
		assert_int_equal(kvbm_stage(m->mgr, mu[0], x, BS, &c[0]), KVBM_OK);
		if (r == 6) {
			assert_int_equal(kvbm_unstage(m->mgr, c[0], &mu[0]), KVBM_OK);
			assert_int_equal(kvbm_mutable_release(m->mgr, mu[0]), KVBM_OK);
			return;
		}
		assert_int_equal(kvbm_register(m->mgr, c[0], &h[0]), KVBM_OK);
		if (r == 5)
			assert_int_equal(kvbm_immutable_set_reset_on_release(m->mgr, h[0], true),
					 KVBM_OK);
		mix_keep_or_release(m, h[0], seed);
	} else if (r < 9) {
		if (kvbm_allocate(m->mgr, 4, mu) == KVBM_E_EXHAUSTED) {
			mix_release_one(m, seed);
			return;
		}
		for (uint32_t i = 0; i < 4; i++)
			assert_int_equal(kvbm_stage(m->mgr, mu[i], 1 + (x + 7 * i) % UNIVERSE, BS, &c[i]),
					 KVBM_OK);
		assert_int_equal(kvbm_register_batch(m->mgr, c, 4, h), KVBM_OK);
		assert_int_equal(kvbm_immutable_release_batch(m->mgr, h, 4), KVBM_OK);
	} else if (r < 12) {
		mix_release_one(m, seed);
	} else if (r < 15) {
		uint32_t got = 0;
		assert_int_equal(kvbm_match(m->mgr, &x, 1, h, &got), KVBM_OK);
		if (got)
			mix_keep_or_release(m, h[0], seed);
	} else if (kvbm_test_rand(seed) % 4 == 0) {
		assert_int_equal(kvbm_reset_inactive(m->mgr, NULL), KVBM_OK);
	}
}

static void mix_release_all(struct mix_tier *m)
{
	while (m->n_held)
		assert_int_equal(kvbm_immutable_release(m->mgr, m->held[--m->n_held]), KVBM_OK);
}

static kvbm_manager *open_cataloged(struct kvbm_test_catalog *cat, uint32_t k)
{
	static const char *names[] = {"G1", "G2", "G3"};
	static const uint32_t blocks[] = {16, 32, 64};
	kvbm_config cfg = cat->cfg;

	cfg.tier = names[k];
	cfg.block_count = blocks[k];
	cfg.block_size = BS;
	/* G1's memory dies with the process: reopened, it starts cold. */
	cfg.memory_volatile = k == 0;
	cfg.catalog_interval_ms = 2;
	cfg.catalog_batch = 8;
	cfg.catalog_reserve = 4;
	return kvbm_test_open_cfg(&cfg);
}

/* Random mixes on 2 or 3 tiers sharing a catalog file, the index checked
 * against every tier after each burst; then the tiers are closed and
 * reopened (G2 and G3 restore, G1 is volatile and cleared) and a new
 * hierarchy must agree with what they restored, and go on agreeing. */
static void index_agrees_after_mixes(uint32_t tiers)
{
	struct kvbm_test_catalog *cat = kvbm_test_catalog_new("presence", 16);
	uint64_t seed = kvbm_test_seed("presence_mixes");
	struct mix_tier m[3] = {{0}};
	kvbm_manager *t[3] = {NULL};
	kvbm_hierarchy *h = NULL;
	kvbm_hash all[UNIVERSE];
	bool kept[UNIVERSE] = {false}; /* what G2 held at its clean close */

	for (uint32_t i = 0; i < UNIVERSE; i++)
		all[i] = 1 + i;
	for (int life = 0; life < 2; life++) {
		for (uint32_t k = 0; k < tiers; k++)
			t[k] = m[k].mgr = open_cataloged(cat, k);
		assert_int_equal(kvbm_hierarchy_create(t, tiers, KVBM_HIERARCHY_PRESENCE_INDEX, &h), KVBM_OK);
		assert_index_agrees(h, t, tiers, 0, UNIVERSE + 2);
		if (life == 1) {
			/* G2 restored exactly what it held (which a seed can
			 * leave empty: a reset_inactive late in the mix). */
			bool any[UNIVERSE];
			assert_int_equal(kvbm_contains(t[1], all, UNIVERSE, any, NULL, NULL), KVBM_OK);
			assert_memory_equal(any, kept, sizeof(any));
			assert_int_equal(kvbm_test_counts(t[0]).inactive, 0);
		}
		for (uint32_t burst = 0; burst < 40; burst++) {
			for (uint32_t s = 0; s < 40; s++)
				mix_step(&m[kvbm_test_rand(&seed) % tiers], &seed);
			assert_index_agrees(h, t, tiers, 0, UNIVERSE + 2);
		}
		for (uint32_t k = 0; k < tiers; k++) {
			mix_release_all(&m[k]);
			assert_int_equal(kvbm_flush(t[k]), KVBM_OK);
		}
		assert_index_agrees(h, t, tiers, 0, UNIVERSE + 2);
		assert_int_equal(kvbm_contains(t[1], all, UNIVERSE, kept, NULL, NULL), KVBM_OK);
		kvbm_hierarchy_free(h);
		for (uint32_t k = 0; k < tiers; k++)
			assert_int_equal(kvbm_close(t[k]), KVBM_OK);
	}
	kvbm_test_catalog_free(cat);
}

static void test_presence_agrees_after_mixes_2_tiers(void **state)
{
	index_agrees_after_mixes(2);
	(void)state;
}

static void test_presence_agrees_after_mixes_3_tiers(void **state)
{
	index_agrees_after_mixes(3);
	(void)state;
}

/* A hash whose home slot in p is `home`: Fibonacci hashing is a
 * multiplication by an odd constant, so its inverse gives the key. */
static kvbm_hash with_home(const struct kvbm__presence *p, uint64_t home, uint64_t low)
{
	const uint64_t k = 0x9E3779B97F4A7C15ull;
	uint64_t inv = k;

	for (int i = 0; i < 6; i++)
		inv *= 2 - k * inv;
	return ((home << p->shift) | (low & ((1ull << p->shift) - 1))) * inv;
}

/* The index on its own, with probe runs no real hashes make: thousands
 * of hashes on one home slot near the end of the table, so their run
 * wraps past the last stripe into the first ones (a writer relocks in
 * order) and spans more stripes than a lock-free read records (read under
 * the locks instead), among hashes homed inside that run. Against a
 * model after every kind of change, including backward shifts across
 * stripe borders and the wrap. */
static void test_presence_long_runs_across_stripes_and_the_wrap(void **state)
{
	enum { N = 6000, ABSENT = 64 };
	struct kvbm__presence *p = NULL;
	static kvbm_hash hashes[N + ABSENT];
	static uint8_t want[N + ABSENT], got[N + ABSENT];
	uint64_t seed = kvbm_test_seed("presence_long_runs");

	assert_int_equal(kvbm__presence_new(8192, &p), KVBM_OK);
	assert_true(p->stripes >= 8);
	const uint64_t cap = p->mask + 1, stripe = cap / p->stripes;
	for (uint32_t i = 0; i < N + ABSENT; i++) {
		/* Two in three on the crowded home, the rest homed in the
		 * stripes its run covers. */
		const uint64_t home = i % 3 ? cap - stripe / 2
					    : (cap - stripe + kvbm_test_rand(&seed) % (5 * stripe)) %
						      cap;
		hashes[i] = with_home(p, home, kvbm_test_rand(&seed) | 1);
		assert_int_equal(kvbm__presence_home(p, hashes[i]), home);
	}
	for (uint32_t step = 0; step < 4; step++) {
		for (uint32_t i = 0; i < N; i++) {
			const uint32_t bit = (uint32_t)(kvbm_test_rand(&seed) % 3);
			if (step % 2 == 0 || kvbm_test_rand(&seed) % 2) {
				kvbm__presence_set(p, hashes[i], bit);
				want[i] |= (uint8_t)(1u << bit);
			} else {
				kvbm__presence_clear(p, hashes[i], bit);
				want[i] &= (uint8_t)~(1u << bit);
			}
		}
		kvbm__presence_lookup(p, hashes, N + ABSENT, got);
		assert_memory_equal(got, want, N + ABSENT);
	}
	for (uint32_t i = 0; i < N; i++)
		for (uint32_t bit = 0; bit < 3; bit++)
			kvbm__presence_clear(p, hashes[i], bit);
	kvbm__presence_lookup(p, hashes, N + ABSENT, got);
	memset(want, 0, sizeof(want));
	assert_memory_equal(got, want, N + ABSENT);
	for (uint64_t i = 0; i < cap; i++)
		assert_int_equal(p->slots[i].mask, 0);
	kvbm__presence_free(p);
	(void)state;
}

/* A manager is in one hierarchy at a time: a second is refused, and a
 * refused creation leaves none of its tiers attached. */
static void test_presence_second_hierarchy_is_refused(void **state)
{
	kvbm_manager *t[3] = {open_tier("G1", 8), open_tier("G2", 8), open_tier("G3", 8)};
	kvbm_hierarchy *h = NULL, *h2 = NULL;

	cache(t[1], 5);
	assert_int_equal(kvbm_hierarchy_create(t, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h), KVBM_OK);
	kvbm_manager *over[2] = {t[2], t[1]};
	assert_int_equal(kvbm_hierarchy_create(over, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h2), KVBM_E_BUSY);
	assert_null(h2);
	kvbm_test_assert_msg(t[2], "tier 1 (G2) is already in a hierarchy");
	/* G3 was attached before G2 was refused: the refusal detached it. */
	assert_int_equal(kvbm_hierarchy_create(&t[2], 1, KVBM_HIERARCHY_PRESENCE_INDEX, &h2), KVBM_OK);
	cache(t[2], 6);
	assert_index_agrees(h2, &t[2], 1, 0, 16);
	kvbm_hierarchy_free(h2);
	assert_index_agrees(h, t, 2, 0, 16);
	kvbm_hierarchy_free(h);
	/* Once freed, its tiers may join another. */
	assert_int_equal(kvbm_hierarchy_create(&t[1], 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h), KVBM_OK);
	assert_index_agrees(h, &t[1], 2, 0, 16);
	kvbm_hierarchy_free(h);
	for (int k = 0; k < 3; k++)
		assert_int_equal(kvbm_close(t[k]), KVBM_OK);
	(void)state;
}

/* Freeing a hierarchy detaches its tiers: they go on registering and
 * evicting with no index (ASan would see a write to the freed one), and
 * a hierarchy made later sees what they did meanwhile. */
static void test_presence_free_detaches(void **state)
{
	kvbm_manager *t[2] = {open_tier("G1", 8), open_tier("G2", 16)};
	kvbm_hierarchy *h = NULL;

	assert_int_equal(kvbm_hierarchy_create(t, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h), KVBM_OK);
	for (kvbm_hash x = 1; x <= 20; x++)
		cache(t[x % 2], x);
	assert_index_agrees(h, t, 2, 0, 64);
	kvbm_hierarchy_free(h);
	/* Allocation pressure: every registration now evicts. */
	for (kvbm_hash x = 21; x <= 60; x++)
		cache(t[x % 2], x);
	assert_int_equal(kvbm_reset_inactive(t[0], NULL), KVBM_OK);
	cache(t[0], 61);
	assert_int_equal(kvbm_hierarchy_create(t, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h), KVBM_OK);
	assert_index_agrees(h, t, 2, 0, 64);
	kvbm_hierarchy_free(h);
	assert_int_equal(kvbm_close(t[0]), KVBM_OK);
	assert_int_equal(kvbm_close(t[1]), KVBM_OK);
	(void)state;
}

/* Two threads drive G1 and G2 (registrations that evict, over hashes both
 * tiers share, so the same entries change from both sides) while a third
 * looks up. Hashes the drivers never touch, held in one tier, in both, or
 * in none, must read exactly at every lookup; once the drivers stop,
 * everything must agree. */
#define C_FIXED 96u
#define C_CHURN 1000000u
struct churn {
	kvbm_manager *mgr;
	pthread_barrier_t *start;
	uint32_t cycles;
	uint64_t seed;
	uint32_t failures;
};

static void *churn_driver(void *arg)
{
	struct churn *c = arg;
	const uint32_t blocks = kvbm_total_blocks(c->mgr);

	pthread_barrier_wait(c->start);
	for (uint32_t i = 0; i < c->cycles; i++) {
		kvbm_mutable mu;
		kvbm_complete co;
		kvbm_immutable h;
		const kvbm_hash x = C_CHURN + kvbm_test_rand(&c->seed) % (3 * blocks);
		if (kvbm_allocate(c->mgr, 1, &mu) != KVBM_OK ||
		    kvbm_stage(c->mgr, mu, x, BS, &co) != KVBM_OK ||
		    kvbm_register(c->mgr, co, &h) != KVBM_OK ||
		    kvbm_immutable_release(c->mgr, h) != KVBM_OK)
			c->failures++;
	}
	return NULL;
}

struct looker {
	kvbm_hierarchy *h;
	pthread_barrier_t *start;
	const kvbm_hash *hashes;
	const uint8_t *want;
	uint32_t n;
	int done; /* atomic: the drivers have finished */
	uint32_t lookups, wrong;
};

static void *looker(void *arg)
{
	struct looker *l = arg;
	uint8_t masks[4 * C_FIXED];

	pthread_barrier_wait(l->start);
	do {
		if (kvbm_hierarchy_lookup(l->h, l->hashes, l->n, masks, NULL, NULL) != KVBM_OK)
			l->wrong++;
		for (uint32_t i = 0; i < l->n; i++)
			l->wrong += masks[i] != l->want[i];
		l->lookups++;
	} while (!__atomic_load_n(&l->done, __ATOMIC_ACQUIRE));
	return NULL;
}

static void test_presence_concurrent_tiers_and_lookups(void **state)
{
	/* 16 stripes: runs cross stripe borders, writers meet on some. */
	kvbm_manager *t[2] = {open_tier("G1", 2048), open_tier("G2", 4096)};
	static kvbm_hash fixed[4 * C_FIXED];
	static uint8_t want[4 * C_FIXED];
	kvbm_immutable held[2][2 * C_FIXED];
	kvbm_hierarchy *h = NULL;
	pthread_barrier_t start;
	pthread_t tid[3];
	uint64_t seed = kvbm_test_seed("presence_concurrent");

	/* Untouched by the drivers: G1 only, G2 only, both, neither; held,
	 * so no eviction takes them. */
	uint32_t n_held[2] = {0, 0};
	for (uint32_t i = 0; i < 4 * C_FIXED; i++) {
		fixed[i] = 1 + i;
		want[i] = (uint8_t)(i / C_FIXED == 3 ? 0 : i / C_FIXED == 2 ? 3 : 1u << (i / C_FIXED));
		for (uint32_t k = 0; k < 2; k++)
			if (want[i] & (1u << k))
				held[k][n_held[k]++] = kvbm_test_make(t[k], fixed[i]);
	}
	assert_int_equal(kvbm_hierarchy_create(t, 2, KVBM_HIERARCHY_PRESENCE_INDEX, &h), KVBM_OK);
	assert_int_equal(pthread_barrier_init(&start, NULL, 3), 0);
	struct churn c[2] = {
		{.mgr = t[0], .start = &start, .cycles = 20000, .seed = seed},
		{.mgr = t[1], .start = &start, .cycles = 20000, .seed = seed ^ 0x5bd1e995},
	};
	struct looker l = {.h = h, .start = &start, .hashes = fixed, .want = want, .n = 4 * C_FIXED};
	assert_int_equal(pthread_create(&tid[0], NULL, churn_driver, &c[0]), 0);
	assert_int_equal(pthread_create(&tid[1], NULL, churn_driver, &c[1]), 0);
	assert_int_equal(pthread_create(&tid[2], NULL, looker, &l), 0);
	assert_int_equal(pthread_join(tid[0], NULL), 0);
	assert_int_equal(pthread_join(tid[1], NULL), 0);
	__atomic_store_n(&l.done, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(tid[2], NULL), 0);
	pthread_barrier_destroy(&start);
	assert_int_equal(c[0].failures + c[1].failures, 0);
	assert_true(l.lookups > 0);
	assert_int_equal(l.wrong, 0);
	assert_index_agrees(h, t, 2, 0, 4 * C_FIXED + 1);
	assert_index_agrees(h, t, 2, C_CHURN, 3 * 4096);
	kvbm_hierarchy_free(h);
	for (uint32_t k = 0; k < 2; k++) {
		assert_int_equal(kvbm_immutable_release_batch(t[k], held[k], n_held[k]), KVBM_OK);
		assert_int_equal(kvbm_close(t[k]), KVBM_OK);
	}
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_presence_agrees_after_mixes_2_tiers),
		cmocka_unit_test(test_presence_agrees_after_mixes_3_tiers),
		cmocka_unit_test(test_presence_long_runs_across_stripes_and_the_wrap),
		cmocka_unit_test(test_presence_second_hierarchy_is_refused),
		cmocka_unit_test(test_presence_free_detaches),
		cmocka_unit_test(test_presence_concurrent_tiers_and_lookups),
	};
	return cmocka_run_group_tests_name("presence", tests, NULL, NULL);
}
