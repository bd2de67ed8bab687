/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Eviction policies on real and generated traffic (issue 5). For the
 * Mooncake trace and for a generated multi-turn chat workload, at 2,000,
 * 8,000 and 32,000 blocks: every policy's hit rate through the real
 * manager (cli/replay.c: longest cached prefix hits, the rest allocated
 * and registered, all released tail first), Belady's optimum under the
 * same model, the share of the LRU-to-Belady gap each policy closes, and
 * ns per block reference with its ratio to LRU in the same run.
 *
 * The generated workload is there so a policy that wins is not tuned to
 * one trace: sessions pick one of 64 system prompts (16 blocks each) with
 * Zipf(1.0) popularity; each request continues an open session (70%,
 * Zipf(1.0) over the 256 most recent sessions) or opens a new one, and
 * appends 2..12 new blocks to the session's context (capped at 160). Seeded.
 *
 * Usage: bench_policies [TRACE]  (default: $KVBM_TRACE, else the Mooncake
 * trace in tests/data/traces, relative to the source tree).
 */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay.h"

static const uint32_t capacities[] = {2000, 8000, 32000};

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static double uniform(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* Zipf(s = 1) over 0..n-1 by inverting the harmonic CDF. */
static uint32_t zipf(uint32_t n, const double *cdf)
{
	const double u = uniform() * cdf[n - 1];
	uint32_t lo = 0, hi = n - 1;

	while (lo < hi) {
		const uint32_t mid = (lo + hi) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

#define PROMPTS 64
#define PROMPT_BLOCKS 16
#define RECENT 256
#define MAX_CONTEXT 160
#define REQUESTS 4000

/* Write the generated workload as JSONL at path. */
static int generate(const char *path)
{
	static uint32_t ctx[RECENT][MAX_CONTEXT], len[RECENT];
	double cdf[RECENT];
	uint32_t next_id = 1000000, n_sessions = 0, newest = 0;
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	for (uint32_t i = 0; i < RECENT; i++)
		cdf[i] = (i ? cdf[i - 1] : 0) + 1.0 / (i + 1);
	for (uint32_t r = 0; r < REQUESTS; r++) {
		uint32_t s;
		if (n_sessions == 0 || uniform() < 0.3) {
			/* A new session in the ring slot after the newest. */
			s = n_sessions ? (newest + 1) % RECENT : 0;
			newest = s;
			if (n_sessions < RECENT)
				n_sessions++;
			const uint32_t p = zipf(PROMPTS, cdf);
			len[s] = PROMPT_BLOCKS;
			for (uint32_t i = 0; i < PROMPT_BLOCKS; i++)
				ctx[s][i] = p * PROMPT_BLOCKS + i;
		} else {
			/* Zipf over recency: the k-th most recent session. */
			const uint32_t k = zipf(n_sessions, cdf);
			s = (newest + RECENT - k) % RECENT;
		}
		const uint32_t add = 2 + (uint32_t)(uniform() * 11);
		for (uint32_t i = 0; i < add && len[s] < MAX_CONTEXT; i++)
			ctx[s][len[s]++] = next_id++;
		fprintf(f, "{\"hash_ids\": [");
		for (uint32_t i = 0; i < len[s]; i++)
			fprintf(f, "%s%u", i ? ", " : "", ctx[s][i]);
		fprintf(f, "]}\n");
		if (len[s] >= MAX_CONTEXT)
			len[s] = PROMPT_BLOCKS; /* the conversation starts over */
	}
	return fclose(f) == 0 ? 0 : -1;
}

static void run_table(const char *name, const struct kvbm_trace *t)
{
	char err[256];

	printf("\n%s: %u requests, %llu block references, %llu distinct blocks\n", name,
	       t->n_requests, (unsigned long long)t->n_refs, (unsigned long long)t->n_unique);
	printf("%-10s %8s %9s %9s %12s %10s %9s\n", "policy", "capacity", "hit rate", "belady",
	       "gap closed", "ns/ref", "vs lru");
	for (size_t c = 0; c < sizeof(capacities) / sizeof(capacities[0]); c++) {
		const double belady = (double)kvbm_replay_belady(t, capacities[c]) / (double)t->n_refs;
		double lru_rate = 0, lru_ns = 0;
		for (int p = 0; p < KVBM_EVICT_COUNT; p++) {
			struct kvbm_replay_opts o = {.capacity = capacities[c],
						     .policy = (kvbm_evict_policy)p};
			struct kvbm_replay_result best = {0};
			/* Best of 3 for time; hits are deterministic. */
			for (int round = 0; round < 3; round++) {
				struct kvbm_replay_result res;
				if (kvbm_replay_run(t, &o, &res, err, sizeof(err)) != 0) {
					fprintf(stderr, "bench_policies: %s\n", err);
					exit(1);
				}
				if (round == 0 || res.ns_per_ref < best.ns_per_ref)
					best = res;
			}
			if (p == KVBM_EVICT_LRU) {
				lru_rate = best.hit_rate;
				lru_ns = best.ns_per_ref;
			}
			const double gap = belady - lru_rate;
			printf("%-10s %8u %8.2f%% %8.2f%% %11.1f%% %10.1f %8.2fx\n",
			       kvbm_evict_policy_name((kvbm_evict_policy)p), capacities[c],
			       100 * best.hit_rate, 100 * belady,
			       gap > 0 ? 100 * (best.hit_rate - lru_rate) / gap : 0.0, best.ns_per_ref,
			       best.ns_per_ref / lru_ns);
		}
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The fast-path cost of a policy: allocate -> stage -> register -> release
 * of 2M blocks on a full 64k-block manager (every allocation evicts), and
 * a hit on every fourth block (match + release: remove and re-insert). */
static double cycle_ns(kvbm_evict_policy policy)
{
	kvbm_config cfg;
	kvbm_manager *mgr;
	kvbm_mutable m[8];
	kvbm_complete c[8];
	kvbm_immutable r[8];
	const uint32_t ops = 1u << 21;

	kvbm_config_init(&cfg);
	cfg.block_count = 1u << 16;
	cfg.evict_policy = policy;
	if (kvbm_open(&cfg, &mgr) != KVBM_OK)
		exit(1);
	const uint64_t t0 = now_ns();
	for (uint32_t op = 0; op < ops; op += 8) {
		kvbm_hash h[8];
		uint32_t n = 0;
		if (kvbm_allocate(mgr, 8, m) != KVBM_OK)
			exit(1);
		for (uint32_t i = 0; i < 8; i++) {
			h[i] = kvbm_hash_chain(0, op + i + 1, true);
			kvbm_stage(mgr, m[i], h[i], 16, &c[i]);
		}
		kvbm_register_batch(mgr, c, 8, r);
		kvbm_immutable_release_batch(mgr, r, 8);
		kvbm_match(mgr, h, 2, r, &n); /* two of the eight come back at once */
		kvbm_immutable_release_batch(mgr, r, n);
	}
	const double ns = (double)(now_ns() - t0) / ops;
	kvbm_close(mgr);
	return ns;
}

static void run_cycle_table(void)
{
	double best[KVBM_EVICT_COUNT];

	for (int p = 0; p < KVBM_EVICT_COUNT; p++)
		best[p] = 1e18;
	for (int round = 0; round < 3; round++)
		for (int p = 0; p < KVBM_EVICT_COUNT; p++) {
			const double ns = cycle_ns((kvbm_evict_policy)p);
			if (ns < best[p])
				best[p] = ns;
		}
	printf("\nfast path per block (allocate+evict, stage, register, release, 1 in 4 hit), "
	       "64k blocks, best of 3\n%-10s %10s %9s\n", "policy", "ns/block", "vs lru");
	for (int p = 0; p < KVBM_EVICT_COUNT; p++)
		printf("%-10s %10.1f %8.2fx\n", kvbm_evict_policy_name((kvbm_evict_policy)p), best[p],
		       best[p] / best[KVBM_EVICT_LRU]);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : getenv("KVBM_TRACE");
	char err[256], gen[64];
	struct kvbm_trace t;

	if (!path)
		path = "tests/data/traces/mooncake_synthetic_trace.jsonl";
	if (kvbm_trace_load(path, &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_policies: %s\n", err);
		return 1;
	}
	run_table("mooncake trace", &t);
	kvbm_trace_free(&t);

	snprintf(gen, sizeof(gen), "/tmp/kvbm_zipf_chat_%d.jsonl", (int)getpid());
	if (generate(gen) != 0 || kvbm_trace_load(gen, &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_policies: generated workload: %s\n", err);
		return 1;
	}
	if (!getenv("KVBM_KEEP_GENERATED"))
		unlink(gen);
	else
		fprintf(stderr, "generated workload kept at %s\n", gen);
	run_table("generated zipf multi-turn chat", &t);
	kvbm_trace_free(&t);
	run_cycle_table();
	return 0;
}
