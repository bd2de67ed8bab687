/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics: a snapshot of the counters the core keeps under its lock, and
 * their Prometheus text exposition (format 0.0.4) for one manager or for
 * the tiers of a server on one page. The table below is the one place that
 * names, types and documents each family; the test suite checks the output
 * with an independent grammar check and with promtool.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager.h"
#include "metrics.h"

static const double flush_bounds[KVBM_FLUSH_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
};

const double *kvbm_flush_bucket_bounds(void)
{
	return flush_bounds;
}

void kvbm__metrics_observe_flush(kvbm_manager *mgr, uint64_t duration_ns)
{
	const double s = (double)duration_ns * 1e-9;

	mgr->m.catalog_flush_count++;
	mgr->m.catalog_flush_ns_sum += duration_ns;
	for (size_t i = 0; i < KVBM_FLUSH_BUCKETS; i++)
		if (s <= flush_bounds[i]) {
			mgr->m.catalog_flush_buckets[i]++;
			break;
		}
}

kvbm_status kvbm_metrics_read(kvbm_manager *mgr, kvbm_metrics *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	pthread_mutex_lock(&mgr->lock);
	*out = mgr->m;
	out->reset_pool = kvbm__reset_pool(mgr);
	out->inactive_pool = kvbm__inactive_pool(mgr);
	out->catalog_pending = mgr->dirty_count + mgr->reclaim_pending.count +
			       mgr->reset_unsafe.count + mgr->freeing.count +
			       mgr->reset_freeing.count;
	out->catalog_reserve = mgr->reserve.count;
	out->catalog_reserve_target = mgr->reserve_target;
	pthread_mutex_unlock(&mgr->lock);
	out->block_count = mgr->block_count;
	/* vLLM counts prefix-cache queries and hits in tokens; kvbm sees
	 * full blocks only, so both are blocks times the block size. */
	out->prefix_cache_queries = out->match_hashes_requested * mgr->block_size;
	out->prefix_cache_hits = out->match_blocks_returned * mgr->block_size;
	return KVBM_OK;
}

enum kind { COUNTER, GAUGE, USAGE_RATIO, HISTOGRAM };

struct series {
	const char *name; /* after the kvbm_ prefix, suffix included */
	enum kind kind;
	size_t offset;    /* of a uint64_t (int64_t for last_error) in kvbm_metrics */
	double scale;     /* multiplier to the exported unit */
	const char *help;
};

#define F(field) offsetof(kvbm_metrics, field)
#define C(field, help) {#field "_total", COUNTER, F(field), 1, help}
#define G(name, field, help) {name, GAUGE, F(field), 1, help}

static const struct series table[] = {
	C(allocations, "Blocks handed out by kvbm_allocate."),
	C(allocations_from_reset, "Allocated blocks taken from the reset pool (no eviction)."),
	C(evictions, "Inactive blocks evicted to serve allocations."),
	C(registrations, "Blocks registered: new hashes, duplicates and dedups."),
	C(duplicates, "Registrations kept as duplicates of a registered hash (allow policy)."),
	C(dedups, "Registrations answered by the existing primary (reject policy)."),
	C(stagings, "Blocks staged."),
	C(match_hashes_requested, "Hashes asked of kvbm_match."),
	C(match_blocks_returned, "References returned by kvbm_match (prefix hits)."),
	C(prefix_cache_queries, "Prefix cache queries, in tokens (hashes asked of kvbm_match "
				"times the block size), as vLLM's prefix_cache_queries."),
	C(prefix_cache_hits, "Prefix cache hits, in tokens (blocks kvbm_match returned times the "
			     "block size), as vLLM's prefix_cache_hits."),
	C(scan_hashes_requested, "Hashes asked of kvbm_match_scattered."),
	C(scan_blocks_returned, "References returned by kvbm_match_scattered."),
	C(resurrections, "Inactive blocks made active again by a hit."),
	C(stale_handles, "Calls refused because a handle was stale."),
	G("capacity_blocks", block_count, "Blocks this tier manages (cfg.block_count)."),
	{"kv_cache_usage_ratio", USAGE_RATIO, 0, 1,
	 "Fraction of blocks held by callers (1 = full); cached blocks nobody references "
	 "count as free, as in vLLM's kv_cache_usage_perc."},
	G("inflight_mutable_blocks", inflight_mutable, "Mutable and staged blocks held by callers."),
	G("inflight_immutable_references", inflight_immutable,
	  "Live immutable references held by callers."),
	G("reset_pool_blocks", reset_pool, "Blocks in the reset pool."),
	G("inactive_pool_blocks", inactive_pool,
	  "Registered blocks nobody references (cached, evictable)."),
	C(catalog_rows_queued, "Block changes queued for the catalog writer."),
	C(catalog_rows_committed, "Block rows written by committed catalog transactions."),
	C(catalog_reclaim_rows, "Reclaim rows written by committed catalog transactions."),
	C(catalog_blocks_reclaimed, "Blocks recorded free by committed reclaim rows."),
	C(catalog_rows_coalesced, "Block changes folded into a row already queued."),
	C(catalog_commits, "Committed catalog transactions."),
	C(catalog_failures, "Failed catalog transactions."),
	C(catalog_alloc_waits, "Allocations that waited for the catalog writer."),
	{"catalog_flush_seconds", HISTOGRAM, 0, 1e-9, "Duration of catalog commits."},
	{"catalog_flush_seconds_last", GAUGE, F(catalog_flush_ns_last), 1e-9,
	 "Duration of the last catalog commit."},
	{"catalog_flush_seconds_max", GAUGE, F(catalog_flush_ns_max), 1e-9,
	 "Longest catalog commit."},
	G("catalog_pending_blocks", catalog_pending,
	  "Dirty rows and free records not yet committed to the catalog."),
	G("catalog_reserve_blocks", catalog_reserve,
	  "Blocks durably reclaimed, ready to allocate without a wait."),
	G("catalog_reserve_target_blocks", catalog_reserve_target,
	  "Reserve size the catalog writer aims for."),
	G("catalog_failing", catalog_failing, "1 while the catalog writer's last commit failed."),
	G("catalog_last_error", catalog_last_error,
	  "kvbm_status of the last catalog failure, 0 if none."),
	C(events_emitted, "Block events queued for the event sink."),
	C(event_batches, "Event batches delivered to the sink."),
	C(events_dropped, "Block events dropped because the sink fell behind."),
};

/* Append to buf without overflowing it; keep counting what is needed. */
struct out {
	char *buf;
	size_t len, used;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	const size_t room = o->used < o->len ? o->len - o->used : 0;

	va_start(ap, fmt);
	const int n = vsnprintf(room ? o->buf + o->used : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used += (size_t)n;
}

/* A label value with \, " and newline escaped, as the format requires. */
static void put_label(struct out *o, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			put(o, "\\\\");
		else if (*v == '"')
			put(o, "\\\"");
		else if (*v == '\n')
			put(o, "\\n");
		else
			put(o, "%c", *v);
	}
}

static void put_sample(struct out *o, const char *name, const char *suffix, const char *tier,
		       const char *le, double value)
{
	put(o, "kvbm_%s%s{tier=\"", name, suffix);
	put_label(o, tier);
	if (le)
		put(o, "\",le=\"%s", le);
	put(o, "\"} %.17g\n", value);
}

/* Prometheus' cumulative buckets from kvbm's per-bucket counts. */
static void put_histogram(struct out *o, const struct series *s, const kvbm_metrics *m,
			  const char *tier)
{
	uint64_t cumulative = 0;
	char le[32];

	for (size_t i = 0; i < KVBM_FLUSH_BUCKETS; i++) {
		cumulative += m->catalog_flush_buckets[i];
		snprintf(le, sizeof(le), "%g", flush_bounds[i]);
		put_sample(o, s->name, "_bucket", tier, le, (double)cumulative);
	}
	put_sample(o, s->name, "_bucket", tier, "+Inf", (double)m->catalog_flush_count);
	put_sample(o, s->name, "_sum", tier, NULL, (double)m->catalog_flush_ns_sum * s->scale);
	put_sample(o, s->name, "_count", tier, NULL, (double)m->catalog_flush_count);
}

static double value_of(const struct series *s, const kvbm_metrics *m)
{
	const void *field = (const char *)m + s->offset;

	if (s->kind == USAGE_RATIO) {
		const uint64_t free_blocks = m->reset_pool + m->inactive_pool;
		return m->block_count ? (double)(m->block_count - free_blocks) / (double)m->block_count
				      : 0;
	}
	if (s->offset == offsetof(kvbm_metrics, catalog_last_error))
		return (double)*(const int64_t *)field;
	return (double)*(const uint64_t *)field * s->scale;
}

static const char *const type_names[] = {"counter", "gauge", "gauge", "histogram"};

kvbm_status kvbm_metrics_format_many(kvbm_manager *const *mgrs, size_t n, char *buf, size_t len,
				     size_t *needed)
{
	if (!mgrs || n == 0 || !mgrs[0])
		return KVBM_E_INVAL; /* no manager to keep a message on */
	kvbm_manager *const first = mgrs[0];
	KVBM_CHECK_ARG(first, buf || len == 0);
	for (size_t i = 1; i < n; i++) {
		KVBM_CHECK_ARG(first, mgrs[i] != NULL);
		for (size_t j = 0; j < i; j++)
			if (strcmp(mgrs[i]->tier, mgrs[j]->tier) == 0)
				return kvbm__fail(first, KVBM_E_INVAL,
						  "tier %s appears twice: its series would collide",
						  mgrs[i]->tier);
	}
	kvbm_metrics *m = malloc(n * sizeof(*m));
	if (!m)
		return kvbm__fail(first, KVBM_E_NOMEM, "cannot snapshot %zu managers", n);
	for (size_t i = 0; i < n; i++)
		kvbm_metrics_read(mgrs[i], &m[i]);

	struct out o = {.buf = buf, .len = len};
	for (size_t k = 0; k < sizeof(table) / sizeof(table[0]); k++) {
		const struct series *s = &table[k];
		put(&o, "# HELP kvbm_%s %s\n", s->name, s->help);
		put(&o, "# TYPE kvbm_%s %s\n", s->name, type_names[s->kind]);
		for (size_t i = 0; i < n; i++) {
			if (s->kind == HISTOGRAM)
				put_histogram(&o, s, &m[i], mgrs[i]->tier);
			else
				put_sample(&o, s->name, "", mgrs[i]->tier, NULL, value_of(s, &m[i]));
		}
	}
	free(m);
	if (needed)
		*needed = o.used;
	if (len > 0 && o.used >= len) {
		buf[len - 1] = '\0';
		return kvbm__fail(first, KVBM_E_SIZE, "metrics need %zu bytes, buffer has %zu",
				  o.used + 1, len);
	}
	if (len == 0)
		return kvbm__fail(first, KVBM_E_SIZE, "metrics need %zu bytes, buffer has 0",
				  o.used + 1);
	return KVBM_OK;
}

kvbm_status kvbm_metrics_format(kvbm_manager *mgr, char *buf, size_t len, size_t *needed)
{
	KVBM_CHECK_ARG(mgr, mgr && (buf || len == 0));
	return kvbm_metrics_format_many(&mgr, 1, buf, len, needed);
}
