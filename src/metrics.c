/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics: a snapshot of the counters the core keeps under its lock, and
 * their Prometheus text exposition (format 0.0.4). The table below is the
 * one place that names, types and documents each series; the test suite
 * checks the output with an independent grammar check.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "manager.h"

kvbm_status kvbm_metrics_read(kvbm_manager *mgr, kvbm_metrics *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	pthread_mutex_lock(&mgr->lock);
	*out = mgr->m;
	out->reset_pool = mgr->reset.count + mgr->reset_unsafe.count + mgr->reset_freeing.count;
	out->inactive_pool = mgr->inactive_count + mgr->reclaim_pending.count +
			     mgr->reserve.count + mgr->freeing.count;
	out->catalog_pending = mgr->dirty_count + mgr->reclaim_pending.count +
			       mgr->reset_unsafe.count + mgr->freeing.count +
			       mgr->reset_freeing.count;
	out->catalog_reserve = mgr->reserve.count;
	out->catalog_reserve_target = mgr->reserve_target;
	pthread_mutex_unlock(&mgr->lock);
	return KVBM_OK;
}

enum kind { COUNTER, GAUGE };

struct series {
	const char *name; /* without the kvbm_ prefix and the _total suffix */
	enum kind kind;
	size_t offset; /* of a uint64_t (int64_t for last_error) in kvbm_metrics */
	double scale;  /* multiplier to the exported unit */
	const char *help;
};

#define C(field, help) {#field, COUNTER, offsetof(kvbm_metrics, field), 1, help}
#define G(field, help) {#field, GAUGE, offsetof(kvbm_metrics, field), 1, help}

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
	C(scan_hashes_requested, "Hashes asked of kvbm_match_scattered."),
	C(scan_blocks_returned, "References returned by kvbm_match_scattered."),
	C(resurrections, "Inactive blocks made active again by a hit."),
	C(stale_handles, "Calls refused because a handle was stale."),
	G(inflight_mutable, "Mutable and staged blocks held by callers."),
	G(inflight_immutable, "Live immutable references held by callers."),
	G(reset_pool, "Blocks in the reset pool."),
	G(inactive_pool, "Registered blocks nobody references (cached, evictable)."),
	C(catalog_rows_queued, "Block changes queued for the catalog writer."),
	C(catalog_rows_committed, "Block rows written by committed catalog transactions."),
	C(catalog_reclaim_rows, "Reclaim rows written by committed catalog transactions."),
	C(catalog_blocks_reclaimed, "Blocks recorded free by committed reclaim rows."),
	C(catalog_rows_coalesced, "Block changes folded into a row already queued."),
	C(catalog_commits, "Committed catalog transactions."),
	C(catalog_failures, "Failed catalog transactions."),
	C(catalog_alloc_waits, "Allocations that waited for the catalog writer."),
	{"catalog_flush_seconds_last", GAUGE, offsetof(kvbm_metrics, catalog_flush_ns_last), 1e-9,
	 "Duration of the last catalog commit."},
	{"catalog_flush_seconds_max", GAUGE, offsetof(kvbm_metrics, catalog_flush_ns_max), 1e-9,
	 "Longest catalog commit."},
	G(catalog_pending, "Dirty rows and free records not yet committed to the catalog."),
	G(catalog_reserve, "Blocks durably reclaimed, ready to allocate without a wait."),
	G(catalog_reserve_target, "Reserve size the catalog writer aims for."),
	G(catalog_failing, "1 while the catalog writer's last commit failed."),
	G(catalog_last_error, "kvbm_status of the last catalog failure, 0 if none."),
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

kvbm_status kvbm_metrics_format(kvbm_manager *mgr, char *buf, size_t len, size_t *needed)
{
	KVBM_CHECK_ARG(mgr, mgr && (buf || len == 0));
	kvbm_metrics m;
	struct out o = {.buf = buf, .len = len};

	kvbm_metrics_read(mgr, &m);
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct series *s = &table[i];
		const char *suffix = s->kind == COUNTER ? "_total" : "";
		const void *field = (const char *)&m + s->offset;
		double value;

		if (s->offset == offsetof(kvbm_metrics, catalog_last_error))
			value = (double)*(const int64_t *)field;
		else
			value = (double)*(const uint64_t *)field * s->scale;
		put(&o, "# HELP kvbm_%s%s %s\n", s->name, suffix, s->help);
		put(&o, "# TYPE kvbm_%s%s %s\n", s->name, suffix,
		    s->kind == COUNTER ? "counter" : "gauge");
		put(&o, "kvbm_%s%s{tier=\"", s->name, suffix);
		put_label(&o, mgr->tier);
		put(&o, "\"} %.17g\n", value);
	}
	if (needed)
		*needed = o.used;
	if (len > 0 && o.used >= len) {
		buf[len - 1] = '\0';
		return kvbm__fail(mgr, KVBM_E_SIZE, "metrics need %zu bytes, buffer has %zu", o.used + 1,
				  len);
	}
	if (len == 0)
		return kvbm__fail(mgr, KVBM_E_SIZE, "metrics need %zu bytes, buffer has 0",
				  o.used + 1);
	return KVBM_OK;
}
