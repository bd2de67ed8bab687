/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The adaptive policy: its exact victim order on hand-made sequences
 * (one-off blocks over T1's target go first, LRU below it, a ghost hit
 * moving the target), and its adaptive state round-tripping through the
 * state_export / state_import ops: a second instance rebuilt the way the
 * catalog rebuilds a pool, with the state imported, makes the same
 * decisions as the first; without it, it does not; a bad blob changes
 * nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evict/evict.h"
#include "journal.h"
#include "test_common.h"

static kvbm_hash H(uint32_t i)
{
	return kvbm_hash_chain(0, 0xada000 + i, true);
}

static void cached(kvbm_manager *mgr, kvbm_hash h)
{
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable r;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, h, 4, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &r), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
}

static void hit(kvbm_manager *mgr, kvbm_hash h)
{
	kvbm_immutable r;
	uint32_t n = 0;

	assert_int_equal(kvbm_match(mgr, &h, 1, &r, &n), KVBM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
}

/* Allocate n blocks; the evicted hashes must be want[0..n_want); release. */
static void expect_evicted(kvbm_manager *mgr, uint32_t n, const kvbm_hash *want, uint32_t n_want)
{
	kvbm_mutable m[8];
	kvbm_hash got[8];
	uint32_t n_got = 0;

	assert_int_equal(kvbm_allocate_ex(mgr, n, m, got, &n_got), KVBM_OK);
	assert_int_equal(n_got, n_want);
	for (uint32_t i = 0; i < n_want; i++)
		if (got[i] != want[i])
			fail_msg("eviction %u: got %016llx, want %016llx", i,
				 (unsigned long long)got[i], (unsigned long long)want[i]);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	assert_invariants(mgr);
}

/* Target c/2 = 2 of 4: B, C, D used once, A twice but released first.
 * T1 holds 3 > 2, so B goes (2Q would go on with C, D); then T1 is at its
 * target and the order is LRU: A, then C, D (LRU alone: A, B, C, D). */
static void adaptive__one_off_blocks_over_target_go_first_then_lru(void **state)
{
	(void)state;
	kvbm_manager *mgr = kvbm_test_open(4, 4, KVBM_EVICT_ADAPTIVE, KVBM_DUP_ALLOW);
	const kvbm_hash a = H(0), b = H(1), c = H(2), d = H(3);

	cached(mgr, a);
	hit(mgr, a);
	cached(mgr, b);
	cached(mgr, c);
	cached(mgr, d);
	const kvbm_hash want[4] = {b, a, c, d};
	expect_evicted(mgr, 4, want, 4);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A hash evicted from T1 and registered again (a B1 ghost hit) raises
 * T1's target by one block, 2.5 -> 3.5 of 5: T1's three blocks are then
 * within it and A, the least recently released, goes first. Without the
 * ghost hit C would (T1 3 > 2.5). */
static void adaptive__ghost_hit_on_a_one_off_block_moves_toward_lru(void **state)
{
	(void)state;
	kvbm_manager *mgr = kvbm_test_open(5, 4, KVBM_EVICT_ADAPTIVE, KVBM_DUP_ALLOW);
	const kvbm_hash a = H(0), b = H(1), c = H(2), d = H(3), e = H(4);

	cached(mgr, a);
	hit(mgr, a);
	cached(mgr, b);
	cached(mgr, c);
	cached(mgr, d);
	cached(mgr, e);
	const kvbm_hash first[1] = {b};
	expect_evicted(mgr, 1, first, 1);
	cached(mgr, b); /* B1 ghost hit: B joins T2 */
	const kvbm_hash want[5] = {a, c, d, e, b};
	expect_evicted(mgr, 5, want, 5);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A pool driven through the ops directly, as the manager drives them. */
#define BLOCKS 64
#define HASHES 400

struct sim {
	const struct kvbm__evict_ops *ops;
	void *st;
	kvbm_hash hash[BLOCKS];   /* 0: free */
	uint64_t first[BLOCKS];
	uint32_t n_used;
	uint64_t clock;
};

static void sim_open(struct sim *s)
{
	const struct kvbm__evict_params p = {.block_count = BLOCKS};

	memset(s, 0, sizeof(*s));
	s->ops = kvbm__evict_ops_for(KVBM_EVICT_ADAPTIVE);
	assert_non_null(s->ops);
	assert_non_null(s->ops->state_export);
	assert_int_equal(s->ops->create(&p, &s->st), KVBM_OK);
}

/* One reference to hash h: a hit (remove, re-insert) or a registration,
 * evicting when the pool is full. Returns the evicted hash or 0. */
static kvbm_hash sim_ref(struct sim *s, kvbm_hash h)
{
	kvbm_hash evicted = 0;
	uint32_t b;

	for (b = 0; b < BLOCKS; b++)
		if (s->hash[b] == h)
			break;
	if (b < BLOCKS) {
		s->ops->remove(s->st, b);
		const struct kvbm__evict_entry e = {.hash = h, .tick = ++s->clock,
						    .first_tick = s->first[b]};
		s->ops->insert(s->st, b, &e);
		return 0;
	}
	if (s->n_used < BLOCKS) {
		b = s->n_used++;
	} else {
		assert_true(s->ops->victim(s->st, &b));
		evicted = s->hash[b];
	}
	s->ops->touch(s->st, h);
	s->hash[b] = h;
	s->first[b] = ++s->clock;
	const struct kvbm__evict_entry e = {.hash = h, .tick = s->clock, .first_tick = s->clock};
	s->ops->insert(s->st, b, &e);
	return evicted;
}

/* Skewed references: a hot set reused often, a long tail of one-offs. */
static kvbm_hash next_hash(uint64_t *rng)
{
	const uint64_t r = kvbm_test_rand(rng);

	return H((uint32_t)(r % 3 == 0 ? (r >> 8) % 40 : 40 + (r >> 8) % (HASHES - 40)));
}

/* Rebuild `to`'s pool from `from`'s as the catalog does: blocks in
 * ascending order key, each frequency restored just before its insert. */
static void sim_rebuild(struct sim *to, struct sim *from)
{
	bool done[BLOCKS] = {false};

	for (uint32_t k = 0; k < from->n_used; k++) {
		uint32_t best = BLOCKS;
		for (uint32_t b = 0; b < from->n_used; b++)
			if (!done[b] && (best == BLOCKS || from->ops->order_key(from->st, b) <
								 from->ops->order_key(from->st, best)))
				best = b;
		done[best] = true;
		const uint64_t key = from->ops->order_key(from->st, best);
		const kvbm_hash h = from->hash[best];
		to->ops->restore_frequency(to->st, h, from->ops->frequency(from->st, best, h));
		const struct kvbm__evict_entry e = {.hash = h, .tick = key, .first_tick = key};
		to->ops->insert(to->st, best, &e);
		to->hash[best] = h;
		to->first[best] = from->first[best];
	}
	to->n_used = from->n_used;
	to->clock = from->clock;
}

static uint8_t *export_blob(struct sim *s, size_t *len)
{
	*len = s->ops->state_export(s->st, NULL, 0);
	uint8_t *buf = malloc(*len);
	assert_non_null(buf);
	assert_int_equal(s->ops->state_export(s->st, buf, *len), *len);
	return buf;
}

static void adaptive__state_round_trip_keeps_every_decision(void **state)
{
	(void)state;
	uint64_t rng = kvbm_test_seed("adaptive");
	struct sim a, b, fresh;
	size_t len, len_b;

	sim_open(&a);
	for (int i = 0; i < 4000; i++)
		sim_ref(&a, next_hash(&rng));
	uint8_t *blob = export_blob(&a, &len);
	assert_true(len > 48); /* ghosts to carry, not just a header */

	sim_open(&b);
	assert_int_equal(b.ops->state_import(b.st, blob, len), KVBM_OK);
	sim_rebuild(&b, &a);
	sim_open(&fresh);
	sim_rebuild(&fresh, &a);
	uint8_t *blob_b = export_blob(&b, &len_b);
	assert_int_equal(len_b, len);
	assert_memory_equal(blob_b, blob, len);

	uint32_t evictions = 0, fresh_differs = 0;
	for (int i = 0; i < 4000; i++) {
		const kvbm_hash h = next_hash(&rng);
		const kvbm_hash va = sim_ref(&a, h), vb = sim_ref(&b, h), vf = sim_ref(&fresh, h);
		assert_true(va == vb);
		evictions += va != 0;
		fresh_differs += vf != va;
	}
	assert_true(evictions > 1000);
	/* Without the state the same pool decides otherwise: it matters. */
	assert_true(fresh_differs > 0);
	free(blob_b);
	free(blob);
	a.ops->destroy(a.st);
	b.ops->destroy(b.st);
	fresh.ops->destroy(fresh.st);
}

static void adaptive__bad_state_blob_changes_nothing(void **state)
{
	(void)state;
	uint64_t rng = kvbm_test_seed("adaptive");
	struct sim a, b;
	size_t len, before_len, after_len;

	sim_open(&a);
	for (int i = 0; i < 2000; i++)
		sim_ref(&a, next_hash(&rng));
	uint8_t *blob = export_blob(&a, &len);
	sim_open(&b);
	for (int i = 0; i < 500; i++)
		sim_ref(&b, next_hash(&rng));
	uint8_t *before = export_blob(&b, &before_len);

	assert_int_equal(b.ops->state_import(b.st, blob, len - 1), KVBM_E_CORRUPT);
	assert_int_equal(b.ops->state_import(b.st, blob, 8), KVBM_E_CORRUPT);
	blob[4] = 2; /* a version this build does not know */
	assert_int_equal(b.ops->state_import(b.st, blob, len), KVBM_E_CORRUPT);
	blob[4] = 1;
	blob[8] ^= 1; /* written for another block_count */
	assert_int_equal(b.ops->state_import(b.st, blob, len), KVBM_E_MISMATCH);
	blob[8] ^= 1;
	blob[23] = 0xff; /* a target above the capacity */
	assert_int_equal(b.ops->state_import(b.st, blob, len), KVBM_E_CORRUPT);
	assert_int_equal(b.ops->state_import(b.st, NULL, 0), KVBM_E_CORRUPT);

	uint8_t *after = export_blob(&b, &after_len);
	assert_int_equal(after_len, before_len);
	assert_memory_equal(after, before, before_len);
	free(after);
	free(before);
	free(blob);
	a.ops->destroy(a.st);
	b.ops->destroy(b.st);
}

/* With a catalog, a warm restart resumes with the split and ghosts the
 * policy had learned: the state after the reopen is byte for byte the
 * one exported at the clean close. */
static void adaptive__catalog_restart_resumes_the_learned_state(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("adaptive");
	char path[512];
	kvbm_config cfg;
	uint64_t rng = kvbm_test_seed("adaptive-catalog");

	snprintf(path, sizeof(path), "%s/c.db", dir);
	kvbm_config_init(&cfg);
	cfg.block_count = 64;
	cfg.block_size = 4;
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	cfg.evict_policy = KVBM_EVICT_ADAPTIVE;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	/* Reused and one-off blocks, evicting: the split moves, ghosts fill. */
	for (uint32_t i = 0; i < 2000; i++) {
		const kvbm_hash h = 1 + (kvbm_test_rand(&rng) % 2 ? kvbm_test_rand(&rng) % 48
								   : 1000 + i);
		bool present = false;
		assert_int_equal(kvbm_contains(mgr, &h, 1, &present, NULL, NULL), KVBM_OK);
		kvbm_immutable r;
		uint32_t hit = 0;
		if (present) {
			assert_int_equal(kvbm_match(mgr, &h, 1, &r, &hit), KVBM_OK);
			assert_int_equal(hit, 1);
		} else {
			r = kvbm_test_make(mgr, h);
		}
		assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	}
	uint8_t *before = NULL, *after = NULL;
	const size_t n_before = kvbm__journal_policy_state(mgr, &before);
	assert_true(n_before > 0);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	mgr = kvbm_test_open_cfg(&cfg);
	const size_t n_after = kvbm__journal_policy_state(mgr, &after);
	assert_int_equal(n_after, n_before);
	assert_memory_equal(after, before, n_before);
	/* A fresh policy's state is not the learned one. */
	kvbm_config fresh = cfg;
	fresh.catalog_path = NULL;
	kvbm_manager *cold = kvbm_test_open_cfg(&fresh);
	uint8_t *cold_state = NULL;
	const size_t n_cold = kvbm__journal_policy_state(cold, &cold_state);
	assert_true(n_cold != n_before || memcmp(cold_state, before, n_before) != 0);
	free(cold_state);
	assert_int_equal(kvbm_close(cold), KVBM_OK);
	free(before);
	free(after);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(adaptive__one_off_blocks_over_target_go_first_then_lru),
		cmocka_unit_test(adaptive__ghost_hit_on_a_one_off_block_moves_toward_lru),
		cmocka_unit_test(adaptive__state_round_trip_keeps_every_decision),
		cmocka_unit_test(adaptive__bad_state_blob_changes_nothing),
		cmocka_unit_test(adaptive__catalog_restart_resumes_the_learned_state),
	};
	return cmocka_run_group_tests_name("adaptive", tests, NULL, NULL);
}
