/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics: every counter and gauge after a scripted workload whose effects
 * are known, the Prometheus rendering (values, labels, escaping, buffer
 * sizing), and `test_metrics --dump`, which prints the exposition of the
 * same workload for tests/tools/prom_check.py, an independent grammar check.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager.h"
#include "metrics.h"
#include "test_common.h"

static kvbm_hash h_of(uint32_t i)
{
	return kvbm_hash_chain(0, 777 + i, true);
}

/* The workload; returns the manager in its final state (8 blocks). */
static kvbm_manager *scripted(const char *tier)
{
	kvbm_config cfg;
	kvbm_mutable m[8];
	kvbm_complete c[8];
	kvbm_immutable r[8], dup;
	uint32_t n = 0;

	kvbm_config_init(&cfg);
	cfg.block_count = 8;
	cfg.block_size = 4;
	cfg.tier = tier;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);

	/* 4 blocks registered as hashes 0..3, one duplicate of hash 0. */
	assert_int_equal(kvbm_allocate(mgr, 4, m), KVBM_OK);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(kvbm_stage(mgr, m[i], h_of(i), 4, &c[i]), KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, 4, r), KVBM_OK);
	dup = kvbm_test_make(mgr, h_of(0));
	assert_int_equal(kvbm_immutable_release(mgr, dup), KVBM_OK);
	assert_int_equal(kvbm_immutable_release_batch(mgr, r, 4), KVBM_OK);

	/* A wrong-size stage fails and counts nothing. */
	assert_int_equal(kvbm_allocate(mgr, 1, m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m[0], h_of(50), 3, &c[0]), KVBM_E_SIZE);
	assert_int_equal(kvbm_mutable_release(mgr, m[0]), KVBM_OK);

	/* Prefix match of 3 (2 hit), scattered of 3 (2 hit). */
	const kvbm_hash prefix[3] = {h_of(0), h_of(1), h_of(99)};
	assert_int_equal(kvbm_match(mgr, prefix, 3, r, &n), KVBM_OK);
	assert_int_equal(n, 2);
	assert_int_equal(kvbm_immutable_release_batch(mgr, r, 2), KVBM_OK);
	const kvbm_hash scattered[3] = {h_of(98), h_of(2), h_of(3)};
	assert_int_equal(kvbm_match_scattered(mgr, scattered, 3, r, &n), KVBM_OK);
	assert_int_equal(n, 2);
	assert_int_equal(kvbm_immutable_release(mgr, r[1]), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, r[2]), KVBM_OK);

	/* A stale release, then take all 8 blocks: 4 free + 4 evicted. */
	assert_int_equal(kvbm_immutable_release(mgr, r[1]), KVBM_E_STALE);
	assert_int_equal(kvbm_allocate(mgr, 8, m), KVBM_OK);
	return mgr;
}

static void metrics__counters_follow_a_scripted_workload(void **state)
{
	(void)state;
	kvbm_manager *mgr = scripted("G1");
	kvbm_metrics m;

	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_int_equal(m.allocations, 4 + 1 + 1 + 8);
	assert_int_equal(m.allocations_from_reset, 4 + 1 + 1 + 4);
	assert_int_equal(m.evictions, 4);
	assert_int_equal(m.registrations, 5); /* 4 new hashes + 1 duplicate */
	assert_int_equal(m.duplicates, 1);
	assert_int_equal(m.dedups, 0);
	assert_int_equal(m.stagings, 5);
	assert_int_equal(m.match_hashes_requested, 3);
	assert_int_equal(m.match_blocks_returned, 2);
	assert_int_equal(m.scan_hashes_requested, 3);
	assert_int_equal(m.scan_blocks_returned, 2);
	assert_int_equal(m.resurrections, 4);
	assert_int_equal(m.stale_handles, 1);
	assert_int_equal(m.inflight_mutable, 8);
	assert_int_equal(m.inflight_immutable, 0);
	assert_int_equal(m.reset_pool, 0);
	assert_int_equal(m.inactive_pool, 0);
	assert_int_equal(m.catalog_commits, 0);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

static void metrics__dedups_under_reject(void **state)
{
	(void)state;
	kvbm_manager *mgr = kvbm_test_open(4, 4, KVBM_EVICT_LRU, KVBM_DUP_REJECT);
	kvbm_immutable a = kvbm_test_make(mgr, 5), b = kvbm_test_make(mgr, 5);
	kvbm_metrics m;

	assert_int_equal(a.block, b.block);
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_int_equal(m.registrations, 2); /* 1 new hash + 1 dedup */
	assert_int_equal(m.dedups, 1);
	assert_int_equal(m.duplicates, 0);
	assert_int_equal(m.inflight_immutable, 2);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* The sample line of a series, or NULL. */
static const char *sample(const char *text, const char *series)
{
	char needle[128];

	snprintf(needle, sizeof(needle), "\n%s{", series);
	const char *p = strstr(text, needle);
	return p ? p + 1 : NULL;
}

static void metrics__prometheus_text(void **state)
{
	(void)state;
	kvbm_manager *mgr = scripted("G1");
	size_t needed = 0;

	/* Sizing: len 0 asks, a short buffer is refused but terminated. */
	assert_int_equal(kvbm_metrics_format(mgr, NULL, 0, &needed), KVBM_E_SIZE);
	assert_true(needed > 1000);
	char small[16];
	size_t again = 0;
	assert_int_equal(kvbm_metrics_format(mgr, small, sizeof(small), &again), KVBM_E_SIZE);
	assert_int_equal(again, needed);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	char *text = malloc(needed + 1);
	assert_int_equal(kvbm_metrics_format(mgr, text, needed + 1, &again), KVBM_OK);
	assert_int_equal(strlen(text), needed);

	assert_non_null(strstr(text, "# TYPE kvbm_allocations_total counter\n"));
	assert_non_null(strstr(text, "# TYPE kvbm_reset_pool_blocks gauge\n"));
	const char *line = sample(text, "kvbm_allocations_total");
	assert_non_null(line);
	assert_int_equal(strncmp(line, "kvbm_allocations_total{tier=\"G1\"} 14\n", 37), 0);
	line = sample(text, "kvbm_evictions_total");
	assert_int_equal(strncmp(line, "kvbm_evictions_total{tier=\"G1\"} 4\n", 34), 0);
	line = sample(text, "kvbm_inflight_mutable_blocks");
	assert_int_equal(strncmp(line, "kvbm_inflight_mutable_blocks{tier=\"G1\"} 8\n", 42), 0);
	/* vLLM's token-based prefix-cache counters: 3 hashes asked, 2 hit, 4 tokens a block */
	assert_non_null(strstr(text, "\nkvbm_prefix_cache_queries_total{tier=\"G1\"} 12\n"));
	assert_non_null(strstr(text, "\nkvbm_prefix_cache_hits_total{tier=\"G1\"} 8\n"));
	/* all 8 blocks held: full */
	assert_non_null(strstr(text, "\nkvbm_kv_cache_usage_ratio{tier=\"G1\"} 1\n"));
	assert_non_null(strstr(text, "\nkvbm_capacity_blocks{tier=\"G1\"} 8\n"));
	free(text);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);

	/* Label values are escaped: backslash, quote, newline. */
	mgr = scripted("a\"b\\c\nd");
	assert_int_equal(kvbm_metrics_format(mgr, NULL, 0, &needed), KVBM_E_SIZE);
	text = malloc(needed + 1);
	assert_int_equal(kvbm_metrics_format(mgr, text, needed + 1, NULL), KVBM_OK);
	assert_non_null(strstr(text, "kvbm_evictions_total{tier=\"a\\\"b\\\\c\\nd\"} 4\n"));
	free(text);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* The page of several managers, as a string the caller frees. */
static char *page(kvbm_manager *const *mgrs, size_t n)
{
	size_t needed = 0;

	assert_int_equal(kvbm_metrics_format_many(mgrs, n, NULL, 0, &needed), KVBM_E_SIZE);
	char *text = malloc(needed + 1);
	assert_non_null(text);
	assert_int_equal(kvbm_metrics_format_many(mgrs, n, text, needed + 1, NULL), KVBM_OK);
	return text;
}

static size_t count(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Two commits of 3 ms and one of 7 s, straight into the histogram (the
 * catalog writer's commits come through kvbm__metrics_observe_flush). */
static void observe_commits(kvbm_manager *mgr)
{
	pthread_mutex_lock(&mgr->lock);
	kvbm__metrics_observe_flush(mgr, 3000000);
	kvbm__metrics_observe_flush(mgr, 3000000);
	kvbm__metrics_observe_flush(mgr, 7000000000ull);
	pthread_mutex_unlock(&mgr->lock);
}

static void metrics__tiers_share_one_page(void **state)
{
	(void)state;
	kvbm_manager *mgrs[2] = {scripted("G1"), kvbm_test_open(16, 4, KVBM_EVICT_LRU, KVBM_DUP_ALLOW)};
	kvbm_config cfg;
	kvbm_config_init(&cfg);
	cfg.block_count = 16;
	cfg.block_size = 4;
	cfg.tier = "G2";
	assert_int_equal(kvbm_close(mgrs[1]), KVBM_OK);
	mgrs[1] = kvbm_test_open_cfg(&cfg);
	kvbm_immutable held = kvbm_test_make(mgrs[1], 42); /* 1 of 16 held */
	char *text = page(mgrs, 2);

	/* each family once, each tier once per family */
	assert_int_equal(count(text, "# HELP kvbm_evictions_total "), 1);
	assert_int_equal(count(text, "# TYPE kvbm_evictions_total counter\n"), 1);
	assert_int_equal(count(text, "# TYPE kvbm_catalog_flush_seconds histogram\n"), 1);
	assert_int_equal(count(text, "\nkvbm_evictions_total{"), 2);
	assert_non_null(strstr(text, "kvbm_evictions_total{tier=\"G1\"} 4\n"));
	assert_non_null(strstr(text, "kvbm_evictions_total{tier=\"G2\"} 0\n"));
	assert_non_null(strstr(text, "kvbm_kv_cache_usage_ratio{tier=\"G2\"} 0.0625\n"));
	assert_non_null(strstr(text, "kvbm_capacity_blocks{tier=\"G2\"} 16\n"));
	free(text);

	/* one tier name twice would give colliding series */
	kvbm_manager *twice[2] = {mgrs[0], mgrs[0]};
	size_t needed = 0;
	assert_int_equal(kvbm_metrics_format_many(twice, 2, NULL, 0, &needed), KVBM_E_INVAL);
	kvbm_test_assert_error(mgrs[0], KVBM_E_INVAL, "tier G1 appears twice");
	assert_int_equal(kvbm_metrics_format_many(NULL, 1, NULL, 0, &needed), KVBM_E_INVAL);
	assert_int_equal(kvbm_metrics_format_many(mgrs, 0, NULL, 0, &needed), KVBM_E_INVAL);
	assert_int_equal(kvbm_immutable_release(mgrs[1], held), KVBM_OK);
	assert_int_equal(kvbm_close(mgrs[0]), KVBM_OK);
	assert_int_equal(kvbm_close(mgrs[1]), KVBM_OK);
}

static void metrics__flush_latency_is_a_histogram(void **state)
{
	(void)state;
	kvbm_manager *mgr = scripted("G1");
	kvbm_metrics m;

	observe_commits(mgr);
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_int_equal(m.catalog_flush_count, 3);
	assert_int_equal(m.catalog_flush_ns_sum, 7006000000ull);
	assert_int_equal(m.catalog_flush_buckets[2], 2); /* <= 5 ms */
	for (size_t i = 0; i < KVBM_FLUSH_BUCKETS; i++)
		if (i != 2)
			assert_int_equal(m.catalog_flush_buckets[i], 0); /* 7 s: only +Inf */
	char *text = page(&mgr, 1);
	/* cumulative, as Prometheus wants */
	assert_non_null(strstr(text, "kvbm_catalog_flush_seconds_bucket{tier=\"G1\",le=\"0.0025\"} 0\n"));
	assert_non_null(strstr(text, "kvbm_catalog_flush_seconds_bucket{tier=\"G1\",le=\"0.005\"} 2\n"));
	assert_non_null(strstr(text, "kvbm_catalog_flush_seconds_bucket{tier=\"G1\",le=\"5\"} 2\n"));
	assert_non_null(strstr(text, "kvbm_catalog_flush_seconds_bucket{tier=\"G1\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(text, "kvbm_catalog_flush_seconds_count{tier=\"G1\"} 3\n"));
	assert_non_null(strstr(text, "kvbm_catalog_flush_seconds_sum{tier=\"G1\"} 7.006"));
	free(text);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* `test_metrics --dump-tiers`: the page of tiers G1 and G2 for promtool. */
static int dump_tiers(void)
{
	kvbm_config cfg;
	kvbm_config_init(&cfg);
	cfg.block_count = 16;
	cfg.block_size = 4;
	cfg.tier = "G2";
	kvbm_manager *mgrs[2] = {scripted("G1"), NULL};
	if (kvbm_open(&cfg, &mgrs[1]) != KVBM_OK)
		return 1;
	observe_commits(mgrs[0]);
	size_t needed = 0;
	kvbm_metrics_format_many(mgrs, 2, NULL, 0, &needed);
	char *text = malloc(needed + 1);
	const kvbm_status st =
		text ? kvbm_metrics_format_many(mgrs, 2, text, needed + 1, NULL) : KVBM_E_NOMEM;
	if (st == KVBM_OK)
		fputs(text, stdout);
	free(text);
	kvbm_close(mgrs[0]);
	kvbm_close(mgrs[1]);
	return st == KVBM_OK ? 0 : 1;
}

/* `test_metrics --dump [TIER]`: the exposition for the grammar check. */
static int dump(const char *tier)
{
	kvbm_manager *mgr = scripted(tier);
	size_t needed = 0;

	kvbm_metrics_format(mgr, NULL, 0, &needed);
	char *text = malloc(needed + 1);
	const kvbm_status st = text ? kvbm_metrics_format(mgr, text, needed + 1, NULL) : KVBM_E_NOMEM;
	if (st == KVBM_OK)
		fputs(text, stdout);
	free(text);
	kvbm_close(mgr);
	return st == KVBM_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--dump") == 0)
		return dump(argc > 2 ? argv[2] : "G1");
	if (argc > 1 && strcmp(argv[1], "--dump-tiers") == 0)
		return dump_tiers();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(metrics__counters_follow_a_scripted_workload),
		cmocka_unit_test(metrics__dedups_under_reject),
		cmocka_unit_test(metrics__prometheus_text),
		cmocka_unit_test(metrics__tiers_share_one_page),
		cmocka_unit_test(metrics__flush_latency_is_a_histogram),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
