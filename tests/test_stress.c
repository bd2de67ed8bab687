/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Threads against one manager: several workers match, allocate, stage,
 * register and release the same sequence hashes at once (prompts sharing
 * a prefix), with weak handles, presence queries, cache drops, touches and
 * pins mixed in, while a checker thread keeps reading the pool counts and asserting the
 * accounting invariant; once more with the catalog writer thread racing
 * them and a restore check after. Built for TSan (.ci/run's build-tsan). Workers do
 * not call cmocka (not thread-safe); they record the first failure and the
 * main thread asserts. Randomised: prints its seed, honours KVBM_TEST_SEED.
 */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

#define BS 4u
#define NB 12u        /* half of workers * MAXLEN: allocations contend */
#define NWORKERS 4
#define NPROMPTS 6
#define MAXLEN 6
#define SHARED 2      /* every prompt starts with the same SHARED blocks */

struct shared {
	kvbm_manager *mgr;
	kvbm_hash seq[NPROMPTS][MAXLEN];
	kvbm_hash seq_parent[NPROMPTS][MAXLEN];
	bool reject;
	uint64_t seed;
	uint32_t iters;
	pthread_barrier_t start;
	atomic_int done;
	atomic_uint_fast64_t checks, exhausted, matched, registered, notfound, upgrades;
	pthread_mutex_t fail_lock;
	char fail_msg[256];
	atomic_int failed;
};

static void fail_at(struct shared *sh, int line, const char *what, long long got, long long want)
{
	pthread_mutex_lock(&sh->fail_lock);
	if (!atomic_load(&sh->failed))
		snprintf(sh->fail_msg, sizeof(sh->fail_msg),
			 "line %d: %s: got %lld, want %lld (seed %" PRIu64 ")", line, what, got,
			 want, sh->seed);
	atomic_store(&sh->failed, 1);
	pthread_mutex_unlock(&sh->fail_lock);
}

#define EXPECT(sh, what, got, want)                                                 \
	do {                                                                        \
		const long long g_ = (long long)(got), w_ = (long long)(want);      \
		if (g_ != w_) {                                                     \
			fail_at((sh), __LINE__, (what), g_, w_);                    \
			goto out;                                                   \
		}                                                                   \
	} while (0)

struct worker {
	struct shared *sh;
	uint64_t rng;
	int id;
};

static uint32_t wrnd(struct worker *w, uint32_t n)
{
	return (uint32_t)(kvbm_test_rand(&w->rng) % n);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	kvbm_manager *mgr = sh->mgr;
	kvbm_immutable held[MAXLEN];
	kvbm_mutable m[MAXLEN];
	kvbm_complete c[MAXLEN];

	pthread_barrier_wait(&sh->start);
	for (uint32_t it = 0; it < sh->iters && !atomic_load(&sh->failed); it++) {
		const uint32_t p = wrnd(w, NPROMPTS), len = 1 + wrnd(w, MAXLEN);
		const kvbm_hash *seq = sh->seq[p];
		uint32_t k = 0;

		/* Reuse what is cached, compute (allocate + register) the rest. */
		EXPECT(sh, "match", kvbm_match(mgr, seq, len, held, &k), KVBM_OK);
		atomic_fetch_add(&sh->matched, k);
		for (uint32_t i = 0; i < k; i++) {
			kvbm_hash h = 0;
			EXPECT(sh, "hash of match", kvbm_immutable_hash(mgr, held[i], &h), KVBM_OK);
			EXPECT(sh, "matched hash", h == seq[i], 1);
		}
		const uint32_t need = len - k;
		if (need) {
			const kvbm_status st = kvbm_allocate(mgr, need, m);
			/* BUSY: the catalog writer did not free victims in time. */
			if (st == KVBM_E_EXHAUSTED || st == KVBM_E_BUSY) {
				atomic_fetch_add(&sh->exhausted, 1);
				EXPECT(sh, "release on exhausted",
				       kvbm_immutable_release_batch(mgr, held, k), KVBM_OK);
				continue;
			}
			EXPECT(sh, "allocate", st, KVBM_OK);
			for (uint32_t i = 0; i < need; i++) {
				const uint32_t pos = k + i;
				if (wrnd(w, 50) == 0)
					EXPECT(sh, "wrong size",
					       kvbm_stage(mgr, m[i], seq[pos], BS + 1, &c[i]),
					       KVBM_E_SIZE);
				EXPECT(sh, "stage",
				       kvbm_stage_lineage(mgr, m[i], seq[pos], sh->seq_parent[p][pos],
							  pos, BS, &c[i]),
				       KVBM_OK);
			}
			EXPECT(sh, "register", kvbm_register_batch(mgr, c, need, held + k), KVBM_OK);
			atomic_fetch_add(&sh->registered, need);
			for (uint32_t i = 0; i < need; i++) {
				kvbm_hash h = 0;
				uint32_t refs = 0;
				EXPECT(sh, "hash of registered",
				       kvbm_immutable_hash(mgr, held[k + i], &h), KVBM_OK);
				EXPECT(sh, "registered hash", h == seq[k + i], 1);
				EXPECT(sh, "ref count",
				       kvbm_immutable_ref_count(mgr, held[k + i], &refs), KVBM_OK);
				EXPECT(sh, "ref count >= 1", refs >= 1, 1);
				if (!sh->reject && held[k + i].block != m[i].block)
					EXPECT(sh, "allow keeps the block", held[k + i].block,
					       m[i].block);
			}
		}
		/* Weak handles across other threads' evictions. */
		if (wrnd(w, 4) == 0) {
			kvbm_weak wk;
			kvbm_immutable u;
			const uint32_t i = wrnd(w, len);
			EXPECT(sh, "downgrade", kvbm_downgrade(mgr, held[i], &wk), KVBM_OK);
			EXPECT(sh, "weak hash", wk.hash == seq[i], 1);
			EXPECT(sh, "upgrade held", kvbm_weak_upgrade(mgr, wk, &u), KVBM_OK);
			EXPECT(sh, "release upgraded", kvbm_immutable_release(mgr, u), KVBM_OK);
			const kvbm_status st = kvbm_immutable_release_batch(mgr, held, len);
			EXPECT(sh, "release", st, KVBM_OK);
			/* Not held by us now: may be evicted by another thread. */
			const kvbm_status us = kvbm_weak_upgrade(mgr, wk, &u);
			if (us == KVBM_OK) {
				kvbm_hash h = 0;
				EXPECT(sh, "hash of upgraded", kvbm_immutable_hash(mgr, u, &h), KVBM_OK);
				EXPECT(sh, "upgraded hash", h == seq[i], 1);
				EXPECT(sh, "release late", kvbm_immutable_release(mgr, u), KVBM_OK);
				atomic_fetch_add(&sh->upgrades, 1);
			} else {
				EXPECT(sh, "upgrade late", us, KVBM_E_NOTFOUND);
				atomic_fetch_add(&sh->notfound, 1);
			}
			/* A double release is stale and takes nobody else's ref. */
			EXPECT(sh, "double release", kvbm_immutable_release(mgr, held[0]),
			       KVBM_E_STALE);
			continue;
		}
		/* The offloading manager's calls mixed in: touch, pins (no hit,
		 * place kept on unpin) and locate, racing other threads. */
		if (wrnd(w, 6) == 0) {
			kvbm_immutable pins[MAXLEN];
			uint32_t found = 0, blocks[MAXLEN], n_found = 0;
			EXPECT(sh, "touch", kvbm_touch(mgr, seq, len, NULL), KVBM_OK);
			EXPECT(sh, "pin", kvbm_pin(mgr, seq, len, pins, &found), KVBM_OK);
			EXPECT(sh, "pin finds what we hold", found, len);
			EXPECT(sh, "locate", kvbm_locate(mgr, seq, len, blocks, &n_found), KVBM_OK);
			EXPECT(sh, "locate finds what we hold", n_found, len);
			for (uint32_t i = 0; i < len; i++)
				EXPECT(sh, "pin and locate agree", pins[i].block, blocks[i]);
			EXPECT(sh, "unpin", kvbm_unpin(mgr, pins, len), KVBM_OK);
		}
		if (wrnd(w, 8) == 0) {
			bool present[MAXLEN];
			uint32_t n_present = 0, prefix = 0;
			EXPECT(sh, "contains",
			       kvbm_contains(mgr, seq, len, present, &n_present, &prefix), KVBM_OK);
			/* We hold all len blocks: all present. */
			EXPECT(sh, "contains prefix", prefix, len);
		}
		if (wrnd(w, 400) == 0)
			EXPECT(sh, "reset_inactive", kvbm_reset_inactive(mgr, NULL), KVBM_OK);
		/* Tail first, so the shared prefix outlives the continuations. */
		kvbm_immutable rev[MAXLEN];
		for (uint32_t i = 0; i < len; i++)
			rev[i] = held[len - 1 - i];
		EXPECT(sh, "release tail first", kvbm_immutable_release_batch(mgr, rev, len),
		       KVBM_OK);
	}
out:
	return NULL;
}

static void *checker_main(void *arg)
{
	struct shared *sh = arg;
	kvbm_pool_counts c;
	kvbm_metrics mt;

	pthread_barrier_wait(&sh->start);
	while (!atomic_load(&sh->done) && !atomic_load(&sh->failed)) {
		EXPECT(sh, "counts", kvbm_pool_counts_read(sh->mgr, &c), KVBM_OK);
		EXPECT(sh, "reset+inactive+held == total",
		       c.reset + c.inactive + c.mutable_ + c.staged + c.registered + c.duplicate,
		       c.total);
		EXPECT(sh, "registry == registered + inactive", c.registry,
		       c.registered + c.inactive);
		EXPECT(sh, "registry <= distinct hashes",
		       c.registry <= NPROMPTS * (MAXLEN - SHARED) + SHARED, 1);
		if (sh->reject)
			EXPECT(sh, "no duplicates under reject", c.duplicate, 0);
		EXPECT(sh, "metrics", kvbm_metrics_read(sh->mgr, &mt), KVBM_OK);
		EXPECT(sh, "available <= total", kvbm_available_blocks(sh->mgr) <= NB, 1);
		atomic_fetch_add(&sh->checks, 1);
		sched_yield();
	}
out:
	return NULL;
}

static void run_stress(kvbm_evict_policy policy, kvbm_dup_policy dup, uint64_t seed,
		       const char *catalog)
{
	static struct shared sh;
	struct worker w[NWORKERS];
	pthread_t tid[NWORKERS], checker;
	kvbm_config cfg;
	const char *iters = getenv("KVBM_STRESS_ITERS");

	memset(&sh, 0, sizeof(sh));
	kvbm_config_init(&cfg);
	cfg.block_count = NB;
	cfg.block_size = BS;
	cfg.evict_policy = policy;
	cfg.dup_policy = dup;
	if (catalog) {
		/* The writer cycles constantly, racing the callers for the
		 * reserve; a tiny reserve makes allocations wait on it. */
		cfg.catalog_path = catalog;
		cfg.catalog_sync = KVBM_SYNC_OFF;
		cfg.catalog_interval_ms = 1;
		cfg.catalog_reserve = 2;
		cfg.catalog_batch = 4;
	}
	sh.mgr = kvbm_test_open_cfg(&cfg);
	sh.reject = dup == KVBM_DUP_REJECT;
	sh.seed = seed;
	sh.iters = iters && *iters ? (uint32_t)strtoul(iters, NULL, 0) : 50000;
	if (catalog)
		sh.iters /= 5; /* each iteration also wakes the writer: slower */
	pthread_mutex_init(&sh.fail_lock, NULL);
	/* Prompts share SHARED leading blocks, then diverge. */
	for (uint32_t p = 0; p < NPROMPTS; p++) {
		kvbm_hash prev = 0;
		for (uint32_t i = 0; i < MAXLEN; i++) {
			const uint32_t toks[BS] = {i, i < SHARED ? 0 : p + 1, 7, 9};
			sh.seq_parent[p][i] = prev;
			prev = kvbm_hash_chain(prev, kvbm_hash_block(toks, BS), i == 0);
			sh.seq[p][i] = prev;
		}
	}
	assert_int_equal(sh.seq[0][SHARED - 1], sh.seq[NPROMPTS - 1][SHARED - 1]);
	assert_int_not_equal(sh.seq[0][SHARED], sh.seq[1][SHARED]);

	assert_int_equal(pthread_barrier_init(&sh.start, NULL, NWORKERS + 1), 0);
	for (int i = 0; i < NWORKERS; i++) {
		w[i] = (struct worker){.sh = &sh, .rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i + 1,
				       .id = i};
		assert_int_equal(pthread_create(&tid[i], NULL, worker_main, &w[i]), 0);
	}
	assert_int_equal(pthread_create(&checker, NULL, checker_main, &sh), 0);
	/* The checker is the barrier's last party; workers start together. */
	for (int i = 0; i < NWORKERS; i++)
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	atomic_store(&sh.done, 1);
	assert_int_equal(pthread_join(checker, NULL), 0);
	pthread_barrier_destroy(&sh.start);
	if (atomic_load(&sh.failed)) {
		print_error("stress: %s\n", sh.fail_msg);
		fail();
	}

	/* Quiescent: nothing held, every cached hash on exactly one block. */
	kvbm_test_assert_invariants(sh.mgr);
	const kvbm_pool_counts c = kvbm_test_counts(sh.mgr);
	assert_int_equal(c.mutable_ + c.staged + c.registered + c.duplicate, 0);
	assert_int_equal(c.registry, c.inactive);
	kvbm_metrics mt;
	assert_int_equal(kvbm_metrics_read(sh.mgr, &mt), KVBM_OK);
	assert_int_equal(mt.inflight_immutable, 0);
	assert_int_equal(mt.inflight_mutable, 0);
	uint32_t n_inactive = 0;
	for (uint32_t b = 0; b < NB; b++) {
		const kvbm_block_info info = kvbm_test_info(sh.mgr, b);
		assert_int_equal(info.ref_count, 0);
		if (info.state != KVBM_BLOCK_INACTIVE) {
			assert_int_equal(info.state, KVBM_BLOCK_RESET);
			continue;
		}
		n_inactive++;
		for (uint32_t b2 = 0; b2 < b; b2++) {
			const kvbm_block_info o = kvbm_test_info(sh.mgr, b2);
			if (o.state == KVBM_BLOCK_INACTIVE)
				assert_int_not_equal(o.hash, info.hash);
		}
		/* It is cached under its own hash: a match returns this block. */
		kvbm_immutable r;
		uint32_t matched = 0;
		assert_int_equal(kvbm_match(sh.mgr, &info.hash, 1, &r, &matched), KVBM_OK);
		assert_int_equal(matched, 1);
		assert_int_equal(r.block, b);
		assert_int_equal(kvbm_immutable_release(sh.mgr, r), KVBM_OK);
	}
	assert_int_equal(n_inactive, c.inactive);
	print_message("stress %s/%s: %u threads x %u iterations, %" PRIuFAST64 " checks, %"
		      PRIuFAST64 " matched, %" PRIuFAST64 " registered, %" PRIuFAST64
		      " exhausted, %" PRIuFAST64 " late upgrades, %" PRIuFAST64 " notfound\n",
		      kvbm_evict_policy_name(policy), sh.reject ? "reject" : "allow", NWORKERS,
		      sh.iters, atomic_load(&sh.checks), atomic_load(&sh.matched),
		      atomic_load(&sh.registered), atomic_load(&sh.exhausted),
		      atomic_load(&sh.upgrades), atomic_load(&sh.notfound));
	assert_true(atomic_load(&sh.checks) > 0);
	pthread_mutex_destroy(&sh.fail_lock);
	if (!catalog) {
		assert_int_equal(kvbm_close(sh.mgr), KVBM_OK);
		return;
	}
	/* What the writer persisted under fire restores: every restored block
	 * holds the hash it held at close, and only blocks the writer had
	 * reclaimed ahead (at most the reserve) come back free. */
	kvbm_hash at_close[NB];
	for (uint32_t b = 0; b < NB; b++) {
		const kvbm_block_info info = kvbm_test_info(sh.mgr, b);
		at_close[b] = info.state == KVBM_BLOCK_INACTIVE ? info.hash : 0;
	}
	assert_int_equal(kvbm_flush(sh.mgr), KVBM_OK);
	assert_int_equal(kvbm_close_ex(sh.mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
	kvbm_manager *again = kvbm_test_open_cfg(&cfg);
	kvbm_test_assert_invariants(again);
	const kvbm_pool_counts r = kvbm_test_counts(again);
	assert_true(r.inactive <= c.inactive && r.inactive + cfg.catalog_reserve >= c.inactive);
	for (uint32_t b = 0; b < NB; b++) {
		const kvbm_block_info info = kvbm_test_info(again, b);
		if (info.state == KVBM_BLOCK_INACTIVE)
			assert_int_equal(info.hash, at_close[b]);
	}
	assert_int_equal(kvbm_close(again), KVBM_OK);
}

static uint64_t seed;

static void stress__lru_allow_same_hashes(void **state)
{
	(void)state;
	run_stress(KVBM_EVICT_LRU, KVBM_DUP_ALLOW, seed, NULL);
}

static void stress__fifo_reject_same_hashes(void **state)
{
	(void)state;
	run_stress(KVBM_EVICT_FIFO, KVBM_DUP_REJECT, seed + 1, NULL);
}

/* The same, with the catalog writer as a fifth thread on the manager. */
static void stress__catalog_writer_under_contention(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("stress");
	char path[512];

	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	run_stress(KVBM_EVICT_LRU, KVBM_DUP_REJECT, seed + 2, path);
	kvbm_test_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stress__lru_allow_same_hashes),
		cmocka_unit_test(stress__fifo_reject_same_hashes),
		cmocka_unit_test(stress__catalog_writer_under_contention),
	};

	seed = kvbm_test_seed("stress");
	return cmocka_run_group_tests_name("stress", tests, NULL, NULL);
}
