/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Block events: order and content for registration, eviction, reset of the
 * inactive pool and close; batch size and time-window limits; a sink that
 * calls back into the manager; and the restart announcement (CLEARED, then
 * exactly the restored blocks, under the new incarnation). The sink records
 * into a log guarded by a mutex; tests wait on its condition variable with
 * a generous deadline, or simply close the manager, which delivers
 * everything queued.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_common.h"

#define MAX_EVENTS 4096
#define MAX_BATCHES 1024

struct log {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	kvbm_event ev[MAX_EVENTS];
	size_t n;
	struct {
		uint64_t seq, incarnation;
		size_t count;
		char tier[80];
	} batch[MAX_BATCHES];
	size_t n_batches;
	/* reentrancy: the sink asks the manager about what it is told */
	kvbm_manager *mgr;
	size_t present_on_store;
};

static void sink(const kvbm_event_batch *b, void *user)
{
	struct log *l = user;

	/* Calls back into kvbm with no lock of ours held, as a router
	 * bridge might: must neither deadlock nor see a half-state. */
	pthread_mutex_lock(&l->mu);
	kvbm_manager *mgr = l->mgr; /* set by the test after open */
	pthread_mutex_unlock(&l->mu);
	if (mgr) {
		for (size_t i = 0; i < b->count; i++) {
			if (b->events[i].kind != KVBM_EVENT_STORED)
				continue;
			bool in = false;
			kvbm_metrics m;
			kvbm_immutable ref;
			uint32_t matched = 0;
			char text[64];
			size_t needed = 0;
			/* (No cmocka asserts here: they must not fire off the
			 * main thread. The test checks the count.) */
			if (kvbm_match(mgr, &b->events[i].hash, 1, &ref, &matched) == KVBM_OK &&
			    matched == 1 && kvbm_immutable_release(mgr, ref) != KVBM_OK)
				matched = 0;
			if (kvbm_metrics_format(mgr, text, sizeof(text), &needed) != KVBM_E_SIZE ||
			    needed < sizeof(text))
				matched = 0;
			if (kvbm_contains(mgr, &b->events[i].hash, 1, &in, NULL, NULL) == KVBM_OK &&
			    kvbm_metrics_read(mgr, &m) == KVBM_OK && in && matched == 1) {
				pthread_mutex_lock(&l->mu);
				l->present_on_store++;
				pthread_mutex_unlock(&l->mu);
			}
		}
	}
	pthread_mutex_lock(&l->mu);
	if (l->n_batches < MAX_BATCHES) {
		l->batch[l->n_batches].seq = b->seq;
		l->batch[l->n_batches].incarnation = b->incarnation;
		l->batch[l->n_batches].count = b->count;
		snprintf(l->batch[l->n_batches].tier, sizeof(l->batch[0].tier), "%s", b->tier);
		l->n_batches++;
	}
	for (size_t i = 0; i < b->count && l->n < MAX_EVENTS; i++)
		l->ev[l->n++] = b->events[i];
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

static struct log *log_new(void)
{
	struct log *l = calloc(1, sizeof(*l));

	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	return l;
}

static void log_free(struct log *l)
{
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

/* Wait until at least n events arrived; false after 20 s. */
static bool wait_events(struct log *l, size_t n)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 20;
	pthread_mutex_lock(&l->mu);
	int rc = 0;
	while (l->n < n && rc == 0)
		rc = pthread_cond_timedwait(&l->cv, &l->mu, &deadline);
	const bool ok = l->n >= n;
	pthread_mutex_unlock(&l->mu);
	return ok;
}

static kvbm_config config(struct log *l, uint32_t blocks)
{
	kvbm_config cfg;

	kvbm_config_init(&cfg);
	cfg.block_count = blocks;
	cfg.block_size = 4;
	cfg.tier = "G2";
	cfg.event_sink = sink;
	cfg.event_user = l;
	cfg.event_window_ms = 1;
	return cfg;
}

static kvbm_hash h_of(uint32_t i)
{
	return kvbm_hash_chain(0, 4242 + i, true);
}

/* Register hashes first..first+n-1 as one chain; keep or release them. */
static void chain(kvbm_manager *mgr, uint32_t first, uint32_t n, kvbm_immutable *keep)
{
	kvbm_mutable m[8];
	kvbm_complete c[8];
	kvbm_immutable r[8];

	assert_int_equal(kvbm_allocate(mgr, n, m), KVBM_OK);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_stage_lineage(mgr, m[i], h_of(first + i),
						    i ? h_of(first + i - 1) : 0, i, 4, &c[i]),
				 KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, n, r), KVBM_OK);
	if (keep) {
		memcpy(keep, r, n * sizeof(*r));
		return;
	}
	for (uint32_t i = n; i-- > 0;)
		assert_int_equal(kvbm_immutable_release(mgr, r[i]), KVBM_OK);
}

/* As chain(), released, but hash first+i goes to the i-th block from the
 * end of the allocation, so children get lower block ids than parents. */
static void chain_reversed(kvbm_manager *mgr, uint32_t first, uint32_t n)
{
	kvbm_mutable m[8];
	kvbm_complete c[8];
	kvbm_immutable r[8];

	assert_int_equal(kvbm_allocate(mgr, n, m), KVBM_OK);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_stage_lineage(mgr, m[n - 1 - i], h_of(first + i),
						    i ? h_of(first + i - 1) : 0, i, 4, &c[i]),
				 KVBM_OK);
	assert_int_equal(kvbm_register_batch(mgr, c, n, r), KVBM_OK);
	assert_int_equal(kvbm_immutable_release_batch(mgr, r, n), KVBM_OK);
}

/* The index a KV router builds from one worker's stream. STORED of a hash
 * it already holds, or REMOVED of one it does not, means an event was
 * missed or invented. */
struct router {
	kvbm_hash h[256];
	size_t n;
};

static size_t router_find(const struct router *r, kvbm_hash h)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->h[i] == h)
			return i;
	return SIZE_MAX;
}

static void router_apply(struct router *r, const kvbm_event *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (e[i].kind == KVBM_EVENT_CLEARED) {
			r->n = 0;
		} else if (e[i].kind == KVBM_EVENT_STORED) {
			assert_int_equal(router_find(r, e[i].hash), SIZE_MAX);
			if (e[i].parent_hash) /* routers attach a block under its parent */
				assert_int_not_equal(router_find(r, e[i].parent_hash), SIZE_MAX);
			assert_true(r->n < 256);
			r->h[r->n++] = e[i].hash;
		} else {
			const size_t at = router_find(r, e[i].hash);
			assert_int_not_equal(at, SIZE_MAX);
			r->h[at] = r->h[--r->n];
		}
	}
}

static void expect(const kvbm_event *e, kvbm_event_kind kind, kvbm_hash hash)
{
	assert_int_equal(e->kind, kind);
	assert_int_equal(e->hash, hash);
}

static void check_batches(struct log *l, uint64_t incarnation, uint32_t max)
{
	for (size_t i = 0; i < l->n_batches; i++) {
		assert_int_equal(l->batch[i].seq, i); /* from 0, no gaps */
		assert_int_equal(l->batch[i].incarnation, incarnation);
		assert_string_equal(l->batch[i].tier, "G2");
		assert_true(l->batch[i].count >= 1 && l->batch[i].count <= max);
	}
}

static void events__order_and_content_of_every_transition(void **state)
{
	(void)state;
	struct log *l = log_new();
	kvbm_config cfg = config(l, 4);
	cfg.evict_policy = KVBM_EVICT_LRU; /* the victims asserted below are LRU's */
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	kvbm_mutable m[4];
	kvbm_hash evicted[4];
	uint32_t n_evicted = 0;

	chain(mgr, 0, 3, NULL);          /* STORED 0, 1, 2 */
	/* 4 blocks, 1 free: taking 3 evicts the two least recently released
	 * (released tail first, so 2 then 1). */
	assert_int_equal(kvbm_allocate_ex(mgr, 3, m, evicted, &n_evicted), KVBM_OK);
	assert_int_equal(n_evicted, 2);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	assert_int_equal(kvbm_reset_inactive(mgr, NULL), KVBM_OK); /* REMOVED 0 */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);                /* CLEARED */

	assert_int_equal(l->n, 8);
	assert_int_equal(l->ev[0].kind, KVBM_EVENT_CLEARED); /* every open says it */
	for (uint32_t i = 0; i < 3; i++) {
		expect(&l->ev[1 + i], KVBM_EVENT_STORED, h_of(i));
		assert_int_equal(l->ev[1 + i].parent_hash, i ? h_of(i - 1) : 0);
		assert_int_equal(l->ev[1 + i].position, i);
		assert_int_equal(l->ev[1 + i].num_tokens, 4);
		assert_true(l->ev[1 + i].block < 4);
	}
	expect(&l->ev[4], KVBM_EVENT_REMOVED, evicted[0]);
	expect(&l->ev[5], KVBM_EVENT_REMOVED, evicted[1]);
	assert_int_equal(evicted[0], h_of(2));
	assert_int_equal(evicted[1], h_of(1));
	expect(&l->ev[6], KVBM_EVENT_REMOVED, h_of(0));
	assert_int_equal(l->ev[7].kind, KVBM_EVENT_CLEARED);
	check_batches(l, 0, cfg.event_batch_max);
	log_free(l);
}

static void events__a_hash_is_stored_once(void **state)
{
	(void)state;
	for (int dup = 0; dup < 2; dup++) {
		struct log *l = log_new();
		kvbm_config cfg = config(l, 8);
		cfg.dup_policy = dup ? KVBM_DUP_REJECT : KVBM_DUP_ALLOW;
		kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
		kvbm_immutable a, b;

		a = kvbm_test_make(mgr, h_of(9));
		b = kvbm_test_make(mgr, h_of(9)); /* duplicate or dedup */
		assert_int_equal(kvbm_immutable_release(mgr, b), KVBM_OK);
		assert_int_equal(kvbm_immutable_release(mgr, a), KVBM_OK);
		assert_int_equal(kvbm_close(mgr), KVBM_OK);
		assert_int_equal(l->n, 3);
		expect(&l->ev[1], KVBM_EVENT_STORED, h_of(9));
		assert_int_equal(l->ev[2].kind, KVBM_EVENT_CLEARED);
		log_free(l);
	}
}

/* A block that skips the cache (reset on release) leaves the registry at
 * its release, and routers hear it. */
static void events__reset_on_release_removes_at_release(void **state)
{
	(void)state;
	struct log *l = log_new();
	kvbm_config cfg = config(l, 4);
	cfg.reset_on_release = true;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);

	chain(mgr, 0, 2, NULL); /* stored, then released tail first */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(l->n, 6);
	expect(&l->ev[1], KVBM_EVENT_STORED, h_of(0));
	expect(&l->ev[2], KVBM_EVENT_STORED, h_of(1));
	expect(&l->ev[3], KVBM_EVENT_REMOVED, h_of(1));
	expect(&l->ev[4], KVBM_EVENT_REMOVED, h_of(0));
	assert_int_equal(l->ev[5].kind, KVBM_EVENT_CLEARED);
	log_free(l);
}

/* Full batches go out at once; the rest waits for its window or close. */
static void events__batches_respect_the_size_limit(void **state)
{
	(void)state;
	struct log *l = log_new();
	kvbm_config cfg = config(l, 16);
	cfg.event_batch_max = 4;
	cfg.event_window_ms = 600000; /* only size or close can flush */
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);

	chain(mgr, 0, 5, NULL);
	chain(mgr, 10, 5, NULL); /* CLEARED + 10 STORED: two full batches now */
	assert_true(wait_events(l, 8));
	pthread_mutex_lock(&l->mu);
	assert_int_equal(l->n, 8);
	assert_int_equal(l->n_batches, 2);
	pthread_mutex_unlock(&l->mu);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(l->n, 12); /* + 3 STORED + CLEARED */
	assert_int_equal(l->n_batches, 3);
	check_batches(l, 0, 4);
	log_free(l);
}

static void events__window_sends_a_partial_batch(void **state)
{
	(void)state;
	struct log *l = log_new();
	kvbm_config cfg = config(l, 16);
	cfg.event_batch_max = 1000;
	cfg.event_window_ms = 5;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);

	chain(mgr, 0, 2, NULL);
	assert_true(wait_events(l, 3)); /* no close: the window did it */
	pthread_mutex_lock(&l->mu);
	assert_int_equal(l->n, 3);
	const size_t batches = l->n_batches;
	pthread_mutex_unlock(&l->mu);
	kvbm_metrics m;
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_int_equal(m.events_emitted, 3);
	assert_true(batches >= 1 && batches <= 2);
	assert_int_equal(m.event_batches, batches); /* counted as handed to the sink */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	log_free(l);
}

static void events__sink_may_call_back_into_the_manager(void **state)
{
	(void)state;
	struct log *l = log_new();
	kvbm_config cfg = config(l, 64);
	cfg.event_batch_max = 3;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	kvbm_immutable held[40];

	pthread_mutex_lock(&l->mu);
	l->mgr = mgr;
	pthread_mutex_unlock(&l->mu);
	for (uint32_t i = 0; i < 5; i++)
		chain(mgr, i * 8, 8, held + i * 8); /* held: still present when told */
	assert_true(wait_events(l, 41)); /* CLEARED + 40 STORED in batches of 3 */
	for (uint32_t i = 0; i < 40; i++)
		assert_int_equal(kvbm_immutable_release(mgr, held[i]), KVBM_OK);
	pthread_mutex_lock(&l->mu);
	l->mgr = NULL;
	pthread_mutex_unlock(&l->mu);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(l->present_on_store, 40);
	log_free(l);
}

/* config(l, 16) with a catalog at dir/catalog.db; path holds its name. */
static kvbm_config catalog_config(struct log *l, const char *dir, char *path, size_t len)
{
	kvbm_config cfg = config(l, 16);

	snprintf(path, len, "%s/catalog.db", dir);
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	return cfg;
}

static void events__restart_announces_exactly_the_restored_blocks(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("events");
	char path[512];
	struct log *l = log_new();
	kvbm_config cfg = catalog_config(l, dir, path, sizeof(path));
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	chain(mgr, 0, 4, NULL);
	chain(mgr, 20, 2, NULL);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	chain(mgr, 30, 1, NULL); /* never committed: lost in the crash */
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK);
	assert_int_equal(l->n, 8); /* CLEARED + 7 STORED */
	check_batches(l, 1, cfg.event_batch_max);
	log_free(l);

	l = log_new();
	cfg.event_user = l;
	mgr = kvbm_test_open_cfg(&cfg);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	/* CLEARED, then one STORED per restored block, nothing else (a
	 * manager with a catalog does not announce CLEARED at close). */
	assert_int_equal(l->n, 7);
	assert_int_equal(l->ev[0].kind, KVBM_EVENT_CLEARED);
	bool seen[6] = {false};
	const uint32_t ids[6] = {0, 1, 2, 3, 20, 21};
	for (size_t i = 1; i < l->n; i++) {
		assert_int_equal(l->ev[i].kind, KVBM_EVENT_STORED);
		assert_int_equal(l->ev[i].num_tokens, 4);
		for (int k = 0; k < 6; k++)
			if (l->ev[i].hash == h_of(ids[k])) {
				assert_false(seen[k]);
				seen[k] = true;
				assert_int_equal(l->ev[i].position, ids[k] % 20 == 0 ? 0 : ids[k] % 20);
			}
	}
	for (int k = 0; k < 6; k++)
		assert_true(seen[k]);
	check_batches(l, 2, cfg.event_batch_max); /* the new incarnation */
	log_free(l);
	kvbm_test_rmdir(dir);
	free(dir);
}

/* Restored children may sit in lower block ids than their parents; the
 * announcement still names every parent before its children, and one
 * chain's blocks back to back. */
static void events__restart_announces_parents_first(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("events");
	char path[512];
	struct log *l = log_new();
	kvbm_config cfg = catalog_config(l, dir, path, sizeof(path));
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	chain_reversed(mgr, 0, 5);
	chain_reversed(mgr, 10, 3);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	log_free(l);

	l = log_new();
	cfg.event_user = l;
	mgr = kvbm_test_open_cfg(&cfg);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(l->n, 9);
	struct router r = {.n = 0};
	router_apply(&r, l->ev, l->n); /* asserts parent before child */
	assert_int_equal(r.n, 8);
	for (size_t i = 1; i < l->n; i++) {
		const kvbm_event *e = &l->ev[i];
		if (e->position > 0) /* a chain's blocks come back to back */
			assert_int_equal(e->parent_hash, l->ev[i - 1].hash);
	}
	log_free(l);
	kvbm_test_rmdir(dir);
	free(dir);
}

/* A router fed the stream of a restarted worker ends with exactly the
 * hashes the manager holds: the restored ones (some already taken into
 * the catalog writer's reclaim-ahead reserve, which keeps them matchable),
 * then evictions, reset_inactive and new registrations. */
static void events__router_index_matches_the_registry_after_restart(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("events");
	char path[512];
	struct log *l = log_new();
	kvbm_config cfg = catalog_config(l, dir, path, sizeof(path));
	cfg.catalog_reserve = 16; /* the writer reclaims restored blocks at once */
	cfg.catalog_interval_ms = 1;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	chain_reversed(mgr, 0, 5);
	chain(mgr, 10, 4, NULL);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	struct router r = {.n = 0};
	router_apply(&r, l->ev, l->n);
	assert_int_equal(r.n, 9);
	log_free(l);

	l = log_new();
	cfg.event_user = l;
	mgr = kvbm_test_open_cfg(&cfg);
	kvbm_mutable m[12];
	assert_int_equal(kvbm_allocate(mgr, 10, m), KVBM_OK); /* 7 free + 3 evicted */
	for (uint32_t i = 0; i < 10; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	chain(mgr, 20, 3, NULL);
	uint32_t dropped = 0;
	assert_int_equal(kvbm_reset_inactive(mgr, &dropped), KVBM_OK);
	assert_true(dropped >= 3);
	kvbm_immutable held[4];
	chain(mgr, 30, 4, held);
	chain(mgr, 40, 2, NULL);

	kvbm_hash all[64];
	bool present[64];
	uint32_t n_all = 0, n_present = 0;
	const uint32_t firsts[] = {0, 10, 20, 30, 40};
	for (uint32_t k = 0; k < 5; k++)
		for (uint32_t i = 0; i < 5; i++)
			all[n_all++] = h_of(firsts[k] + i);
	assert_int_equal(kvbm_contains(mgr, all, n_all, present, &n_present, NULL), KVBM_OK);
	assert_int_equal(n_present, 6);
	assert_int_equal(kvbm_close(mgr), KVBM_OK); /* held blocks stay cached */

	router_apply(&r, l->ev, l->n);
	assert_int_equal(r.n, n_present);
	for (uint32_t i = 0; i < n_all; i++)
		assert_int_equal(router_find(&r, all[i]) != SIZE_MAX, present[i]);
	check_batches(l, 2, cfg.event_batch_max);
	log_free(l);
	kvbm_test_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(events__order_and_content_of_every_transition),
		cmocka_unit_test(events__a_hash_is_stored_once),
		cmocka_unit_test(events__reset_on_release_removes_at_release),
		cmocka_unit_test(events__batches_respect_the_size_limit),
		cmocka_unit_test(events__window_sends_a_partial_batch),
		cmocka_unit_test(events__sink_may_call_back_into_the_manager),
		cmocka_unit_test(events__restart_announces_exactly_the_restored_blocks),
		cmocka_unit_test(events__restart_announces_parents_first),
		cmocka_unit_test(events__router_index_matches_the_registry_after_restart),
	};
	return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
