/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Core benchmarks (issue 2): the allocate -> stage -> register -> release
 * cycle per block, kvbm_match per hash on a warm registry of 1M blocks, and
 * sequence hashing per 16-token block. Each figure is printed on one line
 * next to a baseline measured in this process (a bare open-addressing
 * table; raw XXH3 on the same bytes) and their ratio. Measured and
 * baseline runs alternate and the best of several rounds is kept, because
 * the machines are small and shared. Usage: bench_core [rounds].
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "kvbm.h"

#define BS 16u
#define MATCH_BLOCKS (1u << 20)
#define MATCH_BATCH 16u
#define CYCLE_BLOCKS (1u << 16)
#define CYCLE_OPS (1u << 20)
#define HASH_BLOCKS 4096u

static volatile uint64_t sink; /* keeps baselines from being optimised away */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static void die(const char *what, kvbm_status st)
{
	fprintf(stderr, "bench_core: %s: %s\n", what, kvbm_strerror(st));
	exit(1);
}

#define CHECK(what, call)                                                      \
	do {                                                                   \
		const kvbm_status st_ = (call);                                \
		if (st_ != KVBM_OK)                                            \
			die((what), st_);                                      \
	} while (0)

/* ---- baseline: a bare open-addressing table, hash -> u32 ----
 * Interleaved {key, value} entries, linear probing, Fibonacci hashing,
 * load <= 1/2: the least a registry lookup can cost, with nothing of kvbm
 * around it. */
struct bare_entry {
	kvbm_hash key;
	uint32_t val; /* UINT32_MAX = empty */
};

struct bare {
	struct bare_entry *e;
	uint64_t mask;
	unsigned shift;
};

static void bare_init(struct bare *t, uint32_t max_entries)
{
	uint64_t cap = 16;
	unsigned bits = 4;

	while (cap < 2ull * max_entries) {
		cap <<= 1;
		bits++;
	}
	t->e = malloc(cap * sizeof(*t->e));
	if (!t->e)
		die("bare table", KVBM_E_NOMEM);
	for (uint64_t i = 0; i < cap; i++)
		t->e[i] = (struct bare_entry){0, UINT32_MAX};
	t->mask = cap - 1;
	t->shift = 64 - bits;
}

static inline uint64_t bare_home(const struct bare *t, kvbm_hash h)
{
	return (h * 0x9E3779B97F4A7C15ull) >> t->shift;
}

static inline void bare_put(struct bare *t, kvbm_hash h, uint32_t v)
{
	uint64_t i = bare_home(t, h);

	while (t->e[i].val != UINT32_MAX && t->e[i].key != h)
		i = (i + 1) & t->mask;
	t->e[i] = (struct bare_entry){h, v};
}

static inline uint32_t bare_get(const struct bare *t, kvbm_hash h)
{
	for (uint64_t i = bare_home(t, h);; i = (i + 1) & t->mask) {
		if (t->e[i].val == UINT32_MAX)
			return UINT32_MAX;
		if (t->e[i].key == h)
			return t->e[i].val;
	}
}

/* Backward-shift delete, as a registry must do on eviction. */
static inline void bare_del(struct bare *t, kvbm_hash h)
{
	uint64_t i = bare_home(t, h);

	while (t->e[i].key != h)
		i = (i + 1) & t->mask;
	for (uint64_t j = (i + 1) & t->mask; t->e[j].val != UINT32_MAX; j = (j + 1) & t->mask) {
		const uint64_t home = bare_home(t, t->e[j].key);
		if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
			t->e[i] = t->e[j];
			i = j;
		}
	}
	t->e[i].val = UINT32_MAX;
}

static void bare_free(struct bare *t)
{
	free(t->e);
}

static kvbm_manager *open_mgr(uint32_t blocks)
{
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;

	kvbm_config_init(&cfg);
	cfg.block_count = blocks;
	cfg.block_size = BS;
	CHECK("open", kvbm_open(&cfg, &mgr));
	return mgr;
}

static kvbm_hash key(uint64_t i)
{
	return XXH3_64bits_withSeed(&i, sizeof(i), 42);
}

static void report(const char *name, double ns, const char *base_name, double base_ns,
		   const char *target)
{
	printf("%-44s %8.1f ns  baseline %-30s %7.1f ns  ratio %5.2fx  (%s)\n", name, ns,
	       base_name, base_ns, ns / base_ns, target);
}

/* ---- 1. allocate -> stage -> register -> release, one block at a time ---- */

static double cycle_once(kvbm_manager *mgr, uint64_t *next)
{
	const uint64_t t0 = now_ns();

	for (uint32_t i = 0; i < CYCLE_OPS; i++) {
		kvbm_mutable m;
		kvbm_complete c;
		kvbm_immutable h;
		CHECK("allocate", kvbm_allocate(mgr, 1, &m));
		CHECK("stage", kvbm_stage(mgr, m, key((*next)++), BS, &c));
		CHECK("register", kvbm_register(mgr, c, &h));
		CHECK("release", kvbm_immutable_release(mgr, h));
	}
	return (double)(now_ns() - t0) / CYCLE_OPS;
}

/* The same cycle, 32 blocks per call (allocate n, register_batch, release_batch). */
static double cycle_batch_once(kvbm_manager *mgr, uint64_t *next)
{
	kvbm_mutable m[32];
	kvbm_complete c[32];
	kvbm_immutable h[32];
	const uint64_t t0 = now_ns();

	for (uint32_t i = 0; i < CYCLE_OPS / 32; i++) {
		CHECK("allocate", kvbm_allocate(mgr, 32, m));
		for (uint32_t j = 0; j < 32; j++)
			CHECK("stage", kvbm_stage(mgr, m[j], key((*next)++), BS, &c[j]));
		CHECK("register", kvbm_register_batch(mgr, c, 32, h));
		CHECK("release", kvbm_immutable_release_batch(mgr, h, 32));
	}
	return (double)(now_ns() - t0) / CYCLE_OPS;
}

/* Baseline: the registry work a cycle implies: insert the new hash and
 * erase the one evicted CYCLE_BLOCKS cycles ago (kept in a ring, so the
 * baseline computes one key per cycle, like the measured loop). */
static double cycle_baseline_once(struct bare *t, kvbm_hash *ring, uint64_t *next)
{
	const uint64_t t0 = now_ns();

	for (uint32_t i = 0; i < CYCLE_OPS; i++) {
		const uint64_t k = (*next)++;
		kvbm_hash *slot = &ring[k % CYCLE_BLOCKS];
		bare_del(t, *slot);
		*slot = key(k);
		bare_put(t, *slot, (uint32_t)k);
	}
	return (double)(now_ns() - t0) / CYCLE_OPS;
}

static void bench_cycle(unsigned rounds)
{
	kvbm_manager *mgr = open_mgr(CYCLE_BLOCKS);
	struct bare t;
	uint64_t next = 1, bnext = 1;
	double best = 1e30, best_batch = 1e30, best_base = 1e30;

	kvbm_hash *ring = malloc(CYCLE_BLOCKS * sizeof(*ring));
	if (!ring)
		die("ring", KVBM_E_NOMEM);
	bare_init(&t, CYCLE_BLOCKS);
	/* Warm up: fill the cache so every later cycle also evicts. */
	for (; bnext <= CYCLE_BLOCKS; bnext++) {
		ring[bnext % CYCLE_BLOCKS] = key(bnext);
		bare_put(&t, key(bnext), (uint32_t)bnext);
	}
	(void)cycle_once(mgr, &next);
	for (unsigned r = 0; r < rounds; r++) {
		const double a = cycle_once(mgr, &next);
		const double b = cycle_baseline_once(&t, ring, &bnext);
		const double c = cycle_batch_once(mgr, &next);
		best = a < best ? a : best;
		best_base = b < best_base ? b : best_base;
		best_batch = c < best_batch ? c : best_batch;
	}
	report("cycle alloc/stage/register/release, 1/call", best, "bare insert+erase", best_base,
	       "target < 200 ns");
	report("cycle alloc/stage/register/release, 32/call", best_batch, "bare insert+erase",
	       best_base, "target < 200 ns");
	bare_free(&t);
	free(ring);
	CHECK("close", kvbm_close(mgr));
}

/* ---- 2. kvbm_match per hash on a warm 1M-block registry ---- */

static void bench_match(unsigned rounds, bool held)
{
	kvbm_manager *mgr = open_mgr(MATCH_BLOCKS);
	kvbm_hash *hashes = malloc(MATCH_BLOCKS * sizeof(*hashes));
	kvbm_immutable *refs = malloc(MATCH_BLOCKS * sizeof(*refs));
	uint32_t *starts = malloc((MATCH_BLOCKS / MATCH_BATCH) * sizeof(*starts));
	struct bare t;
	kvbm_mutable m[1024];
	kvbm_complete c[1024];
	const uint32_t n_batches = MATCH_BLOCKS / MATCH_BATCH;
	uint64_t rng = 12345;
	double best = 1e30, best_base = 1e30;

	if (!hashes || !refs || !starts)
		die("match arrays", KVBM_E_NOMEM);
	bare_init(&t, MATCH_BLOCKS);
	/* Register 1M hashes in "sequences" of consecutive blocks. */
	for (uint32_t i = 0; i < MATCH_BLOCKS; i += 1024) {
		CHECK("allocate", kvbm_allocate(mgr, 1024, m));
		for (uint32_t j = 0; j < 1024; j++) {
			hashes[i + j] = key(i + j);
			CHECK("stage", kvbm_stage(mgr, m[j], hashes[i + j], BS, &c[j]));
		}
		CHECK("register", kvbm_register_batch(mgr, c, 1024, refs + i));
		for (uint32_t j = 0; j < 1024; j++)
			bare_put(&t, hashes[i + j], refs[i + j].block);
		if (!held)
			CHECK("release", kvbm_immutable_release_batch(mgr, refs + i, 1024));
	}
	/* Lookups: whole 16-block prefixes, in random order. */
	for (uint32_t b = 0; b < n_batches; b++)
		starts[b] = b * MATCH_BATCH;
	for (uint32_t b = n_batches - 1; b > 0; b--) {
		const uint32_t j = (uint32_t)(xorshift(&rng) % (b + 1));
		const uint32_t tmp = starts[b];
		starts[b] = starts[j];
		starts[j] = tmp;
	}
	for (unsigned r = 0; r < rounds; r++) {
		kvbm_immutable out[MATCH_BATCH];
		uint64_t spent = 0, sum = 0;
		for (uint32_t b = 0; b < n_batches; b++) {
			uint32_t matched;
			const uint64_t t0 = now_ns();
			CHECK("match", kvbm_match(mgr, hashes + starts[b], MATCH_BATCH, out,
						  &matched));
			spent += now_ns() - t0;
			if (matched != MATCH_BATCH)
				die("match missed", KVBM_E_NOTFOUND);
			CHECK("release", kvbm_immutable_release_batch(mgr, out, MATCH_BATCH));
		}
		const double a = (double)spent / MATCH_BLOCKS;
		spent = 0;
		for (uint32_t b = 0; b < n_batches; b++) {
			const uint64_t t0 = now_ns();
			for (uint32_t j = 0; j < MATCH_BATCH; j++)
				sum += bare_get(&t, hashes[starts[b] + j]);
			spent += now_ns() - t0;
		}
		sink += sum;
		const double base = (double)spent / MATCH_BLOCKS;
		best = a < best ? a : best;
		best_base = base < best_base ? base : best_base;
	}
	report(held ? "kvbm_match per hash, 1M registry, held" :
		      "kvbm_match per hash, 1M registry, inactive",
	       best, "bare table lookup", best_base, "target within 2x");
	bare_free(&t);
	free(hashes);
	free(refs);
	free(starts);
	CHECK("close", kvbm_close(mgr));
}

/* ---- 3. hashing per 16-token block ---- */

static void bench_hash(unsigned rounds)
{
	const size_t n_tokens = (size_t)HASH_BLOCKS * BS;
	uint32_t *tokens = malloc(n_tokens * sizeof(*tokens));
	kvbm_hash *out = malloc(HASH_BLOCKS * sizeof(*out));
	uint64_t rng = 777;
	const unsigned reps = 64;
	double best = 1e30, best_raw = 1e30, best_floor = 1e30;

	if (!tokens || !out)
		die("hash arrays", KVBM_E_NOMEM);
	for (size_t i = 0; i < n_tokens; i++)
		tokens[i] = (uint32_t)xorshift(&rng) % 128256u;
	for (unsigned r = 0; r < rounds; r++) {
		size_t n_out;
		uint64_t t0 = now_ns();
		for (unsigned k = 0; k < reps; k++)
			CHECK("hash_sequence", kvbm_hash_sequence(tokens, n_tokens, BS, 0, out,
								  HASH_BLOCKS, &n_out));
		const double a = (double)(now_ns() - t0) / (reps * HASH_BLOCKS);
		sink += out[HASH_BLOCKS - 1];

		/* Raw XXH3 on the same bytes: one call per block. */
		uint64_t sum = 0;
		t0 = now_ns();
		for (unsigned k = 0; k < reps; k++)
			for (uint32_t b = 0; b < HASH_BLOCKS; b++)
				sum += XXH3_64bits_withSeed(tokens + (size_t)b * BS,
							    BS * sizeof(uint32_t), 1337);
		const double raw = (double)(now_ns() - t0) / (reps * HASH_BLOCKS);

		/* The encoding's own floor: local hash plus the 16-byte chain. */
		t0 = now_ns();
		for (unsigned k = 0; k < reps; k++) {
			uint64_t prev = 0;
			for (uint32_t b = 0; b < HASH_BLOCKS; b++) {
				const uint64_t w[2] = {
					prev, XXH3_64bits_withSeed(tokens + (size_t)b * BS,
								   BS * sizeof(uint32_t), 1337)};
				prev = XXH3_64bits_withSeed(w, sizeof(w), 0);
			}
			sum += prev;
		}
		const double floor_ns = (double)(now_ns() - t0) / (reps * HASH_BLOCKS);
		sink += sum;
		best = a < best ? a : best;
		best_raw = raw < best_raw ? raw : best_raw;
		best_floor = floor_ns < best_floor ? floor_ns : best_floor;
	}
	report("kvbm_hash_sequence per 16-token block", best, "raw XXH3 of the 64 bytes",
	       best_raw, "target within 1.2x");
	report("kvbm_hash_sequence per 16-token block", best, "XXH3 local + chain inline",
	       best_floor, "encoding overhead");
	free(tokens);
	free(out);
}

int main(int argc, char **argv)
{
	const unsigned rounds = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 5;

	printf("kvbm %s core benchmarks, best of %u rounds, block size %u\n", kvbm_version(),
	       rounds, BS);
	bench_cycle(rounds);
	bench_match(rounds, true);
	bench_match(rounds, false);
	bench_hash(rounds);
	return 0;
}
