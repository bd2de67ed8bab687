/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event overhead (issue 6): the allocate -> stage -> register -> release
 * cycle on a full 64k-block manager (every block stored, every allocation
 * evicts: two events per block) with an event sink attached, against the
 * same manager without one, alternating, best of 5. The sink counts what
 * it receives, so the figure includes the dispatcher thread's share of
 * the two cores. Also the Prometheus rendering time. Usage: bench_events.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvbm.h"

#define BLOCKS (1u << 16)
#define OPS (1u << 21)
#define ROUNDS 5

static atomic_ullong received;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sink(const kvbm_event_batch *b, void *user)
{
	(void)user;
	atomic_fetch_add(&received, b->count);
}

static void check(const char *what, kvbm_status st)
{
	if (st != KVBM_OK) {
		fprintf(stderr, "bench_events: %s: %s\n", what, kvbm_strerror(st));
		exit(1);
	}
}

/* ns per block of the cycle; with_sink attaches the counting sink. */
static double cycle_ns(bool with_sink)
{
	kvbm_config cfg;
	kvbm_manager *mgr;
	kvbm_mutable m[8];
	kvbm_complete c[8];
	kvbm_immutable r[8];

	kvbm_config_init(&cfg);
	cfg.block_count = BLOCKS;
	if (with_sink)
		cfg.event_sink = sink;
	check("open", kvbm_open(&cfg, &mgr));
	const uint64_t t0 = now_ns();
	for (uint32_t op = 0; op < OPS; op += 8) {
		check("allocate", kvbm_allocate(mgr, 8, m));
		for (uint32_t i = 0; i < 8; i++)
			check("stage", kvbm_stage(mgr, m[i], kvbm_hash_chain(0, op + i + 1, true), 16,
						  &c[i]));
		check("register", kvbm_register_batch(mgr, c, 8, r));
		check("release", kvbm_immutable_release_batch(mgr, r, 8));
	}
	check("close", kvbm_close(mgr)); /* delivers every queued event */
	return (double)(now_ns() - t0) / OPS;
}

int main(void)
{
	double on = 1e18, off = 1e18;

	for (int round = 0; round < ROUNDS; round++) {
		const double a = cycle_ns(false), b = cycle_ns(true);
		off = a < off ? a : off;
		on = b < on ? b : on;
	}
	const unsigned long long events = atomic_load(&received);
	printf("events    %8.1f ns/blk with a sink  baseline %8.1f ns/blk without  ratio %.2f  "
	       "(%llu events delivered over %d runs)\n",
	       on, off, on / off, events, ROUNDS);

	kvbm_config cfg;
	kvbm_manager *mgr;
	kvbm_config_init(&cfg);
	cfg.block_count = 1024;
	check("open", kvbm_open(&cfg, &mgr));
	static char text[16384];
	const uint64_t t0 = now_ns();
	for (int i = 0; i < 10000; i++)
		check("format", kvbm_metrics_format(mgr, text, sizeof(text), NULL));
	printf("prometheus %7.1f us per kvbm_metrics_format (%zu bytes)\n",
	       (double)(now_ns() - t0) / 10000 / 1000, strlen(text));
	check("close", kvbm_close(mgr));
	return 0;
}
