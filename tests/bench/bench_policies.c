/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Eviction policies on real and generated traffic (issues 5 and 16). For
 * the Mooncake trace and the generated workloads of workloads.h (chat,
 * scan, rag), at 2,000, 8,000 and 32,000 blocks and at a capacity holding
 * three quarters of the workload's distinct blocks: every policy's hit
 * rate through the real manager (cli/replay.c: longest cached prefix hits,
 * the rest allocated and registered, all released tail first), Belady's
 * optimum under the same model, the share of the LRU-to-Belady gap each
 * policy closes, and ns per block reference with its ratio to LRU in the
 * same run. Then the fast-path cost of each policy on an eviction-bound
 * cycle, against LRU in the same run.
 *
 * The generated workloads are there so a policy that wins is not tuned to
 * one trace: chat is recency-shaped, scan and rag frequency-shaped.
 *
 * Usage: bench_policies [TRACE]  (default: $KVBM_TRACE, else the Mooncake
 * trace in tests/data/traces, relative to the source tree).
 * KVBM_POLICIES=a,b runs only those policies (and LRU);
 * KVBM_KEEP_GENERATED=1 keeps the generated traces in /tmp;
 * KVBM_CYCLE_ONLY=1 skips the hit-rate tables (cost only);
 * KVBM_CYCLE_ROUNDS=N takes the best of N rounds of the cycle (default 3).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "replay.h"
#include "workloads.h"

/* The three capacities, and one holding most of the working set:
 * three quarters of the workload's distinct blocks. */
#define N_CAPACITIES 4

static void capacities_of(const struct kvbm_trace *t, uint32_t out[N_CAPACITIES])
{
	out[0] = 2000;
	out[1] = 8000;
	out[2] = 32000;
	out[3] = (uint32_t)(t->n_unique * 3 / 4 / 100 * 100);
}

/* KVBM_POLICIES=lru,arc limits the tables to those policies (LRU always
 * runs: every ratio is against it). */
static bool selected(int p)
{
	const char *list = getenv("KVBM_POLICIES");
	const char *name = kvbm_evict_policy_name((kvbm_evict_policy)p);

	if (!list || p == KVBM_EVICT_LRU)
		return true;
	const size_t len = strlen(name);
	for (const char *s = list; (s = strstr(s, name)) != NULL; s += len)
		if ((s == list || s[-1] == ',') && (s[len] == ',' || s[len] == 0))
			return true;
	return false;
}

static void run_table(const char *name, const struct kvbm_trace *t)
{
	char err[256];

	printf("\n%s: %u requests, %llu block references, %llu distinct blocks\n", name,
	       t->n_requests, (unsigned long long)t->n_refs, (unsigned long long)t->n_unique);
	printf("%-10s %8s %9s %9s %12s %10s %9s\n", "policy", "capacity", "hit rate", "belady",
	       "gap closed", "ns/ref", "vs lru");
	uint32_t capacities[N_CAPACITIES];

	capacities_of(t, capacities);
	for (size_t c = 0; c < N_CAPACITIES; c++) {
		const double belady = (double)kvbm_replay_belady(t, capacities[c]) / (double)t->n_refs;
		double lru_rate = 0, lru_ns = 0;
		for (int p = 0; p < KVBM_EVICT_COUNT; p++) {
			if (!selected(p))
				continue;
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

	const char *r = getenv("KVBM_CYCLE_ROUNDS");
	const int rounds = r && atoi(r) > 0 ? atoi(r) : 3;

	for (int p = 0; p < KVBM_EVICT_COUNT; p++)
		best[p] = 1e18;
	for (int round = 0; round < rounds; round++)
		for (int p = 0; p < KVBM_EVICT_COUNT; p++) {
			if (!selected(p))
				continue;
			const double ns = cycle_ns((kvbm_evict_policy)p);
			if (ns < best[p])
				best[p] = ns;
		}
	printf("\nfast path per block (allocate+evict, stage, register, release, 1 in 4 hit), "
	       "64k blocks, best of %d\n%-10s %10s %9s\n", rounds, "policy", "ns/block", "vs lru");
	for (int p = 0; p < KVBM_EVICT_COUNT; p++)
		if (selected(p))
			printf("%-10s %10.1f %8.2fx\n", kvbm_evict_policy_name((kvbm_evict_policy)p), best[p],
		       best[p] / best[KVBM_EVICT_LRU]);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : getenv("KVBM_TRACE");
	char err[256], gen[64];
	struct kvbm_trace t;

	if (getenv("KVBM_CYCLE_ONLY")) {
		run_cycle_table();
		return 0;
	}
	if (!path)
		path = "tests/data/traces/mooncake_synthetic_trace.jsonl";
	if (kvbm_trace_load(path, &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_policies: %s\n", err);
		return 1;
	}
	run_table("mooncake trace", &t);
	kvbm_trace_free(&t);

	for (int w = KVBM_WORKLOAD_CHAT; w <= KVBM_WORKLOAD_RAG; w++) {
		snprintf(gen, sizeof(gen), "/tmp/kvbm_workload_%d_%d.jsonl", w, (int)getpid());
		if (kvbm_workload_write((enum kvbm_workload)w, gen) != 0 ||
		    kvbm_trace_load(gen, &t, err, sizeof(err)) != 0) {
			fprintf(stderr, "bench_policies: generated workload %d: %s\n", w, err);
			return 1;
		}
		if (!getenv("KVBM_KEEP_GENERATED"))
			unlink(gen);
		else
			fprintf(stderr, "generated workload kept at %s\n", gen);
		run_table(kvbm_workload_describe((enum kvbm_workload)w), &t);
		kvbm_trace_free(&t);
	}
	run_cycle_table();
	return 0;
}
