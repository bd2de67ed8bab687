/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The adaptive policy: its exact victim order on hand-made sequences
 * (one-off blocks over T1's target go first, LRU below it, a ghost hit
 * moving the target), and its adaptive state round-tripping through the
 * state_export / state_import ops: a second instance rebuilt the way the
 * catalog rebuilds a pool, with the state imported, makes the same
 * decisions as the first; without it, it does not; a bad blob changes
 * nothing; a blob of an earlier format (version 2, the previous release,
 * or version 1) brings its split and counters, not its ghost. And the
 * compact ghost itself.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evict/evict.h"
#include "evict/evict_ghost24.h"
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

/* The pool of unpin_keeps_place: T1 = h3 h4 h5 h6..h11 (9 blocks, over
 * its target of 6), T2 = h0 h1 (released before h6), and h2, hit last.
 * With `pin`, the oldest of each list and one in T1's middle are pinned
 * and unpinned, one alone and the others together in a scrambled order,
 * while h2 is hit. Returns the victims, oldest first, into out[12]. */
static void unpin_pool(bool pin, kvbm_hash *out)
{
	kvbm_manager *mgr = kvbm_test_open(12, 4, KVBM_EVICT_ADAPTIVE, KVBM_DUP_ALLOW);
	const kvbm_hash alone = H(9), together[3] = {H(4), H(0), H(3)};
	kvbm_immutable one, three[3];
	uint32_t found = 0;

	for (uint32_t i = 0; i < 6; i++)
		cached(mgr, H(i));
	for (uint32_t i = 0; i < 3; i++)
		hit(mgr, H(i));
	for (uint32_t i = 6; i < 12; i++)
		cached(mgr, H(i));
	if (pin) {
		assert_int_equal(kvbm_pin(mgr, &alone, 1, &one, &found), KVBM_OK);
		assert_int_equal(found, 1);
		assert_int_equal(kvbm_pin(mgr, together, 3, three, &found), KVBM_OK);
		assert_int_equal(found, 3);
	}
	hit(mgr, H(2));
	if (pin) {
		assert_int_equal(kvbm_unpin(mgr, &one, 1), KVBM_OK);
		assert_int_equal(kvbm_unpin(mgr, three, 3), KVBM_OK);
	}
	assert_invariants(mgr);
	kvbm_mutable m[12];
	uint32_t n = 0;
	assert_int_equal(kvbm_allocate_ex(mgr, 12, m, out, &n), KVBM_OK);
	assert_int_equal(n, 12);
	for (uint32_t i = 0; i < 12; i++)
		assert_int_equal(kvbm_mutable_release(mgr, m[i]), KVBM_OK);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
}

/* A pin is no use and kvbm_unpin restores the place: the victim order is
 * the one without the pins, in T1 (whose blocks must not turn reused)
 * and in T2. Order: T1 above its target loses h3..h5; then LRU: T2's h0,
 * h1 are older than T1's h6; h2 was hit last. Before unpin put blocks
 * back by key, h3, h4, h9 went to T1's tail and h0 to T2's. */
static void adaptive__unpin_keeps_place_in_both_lists(void **state)
{
	(void)state;
	kvbm_hash want[12], got[12];
	const uint32_t order[12] = {3, 4, 5, 0, 1, 6, 7, 8, 9, 10, 11, 2};

	for (uint32_t i = 0; i < 12; i++)
		want[i] = H(order[i]);
	unpin_pool(false, got);
	for (uint32_t i = 0; i < 12; i++)
		if (got[i] != want[i])
			fail_msg("unpinned, eviction %u: got %016llx, want %016llx", i,
				 (unsigned long long)got[i], (unsigned long long)want[i]);
	unpin_pool(true, got);
	for (uint32_t i = 0; i < 12; i++)
		if (got[i] != want[i])
			fail_msg("pinned, eviction %u: got %016llx, want %016llx", i,
				 (unsigned long long)got[i], (unsigned long long)want[i]);
}

/* The frequency column of each row of hashes h[0..n), into freq. */
static void catalog_frequencies(const char *path, const kvbm_hash *h, uint32_t n, int64_t *freq)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT frequency FROM block_rows WHERE seq_hash = ?1",
					    -1, &st, NULL),
			 SQLITE_OK);
	for (uint32_t i = 0; i < n; i++) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)h[i]);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		freq[i] = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* A manager's config over the catalog at path, unsynced: what every
 * catalog test here opens. */
static void catalog_config(kvbm_config *cfg, const char *path, uint32_t blocks,
			   kvbm_evict_policy policy)
{
	kvbm_config_init(cfg);
	cfg->block_count = blocks;
	cfg->block_size = 4;
	cfg->catalog_path = path;
	cfg->catalog_sync = KVBM_SYNC_OFF;
	cfg->evict_policy = policy;
}

/* A catalog LRU wrote (its frequency column is the access count: 1 for
 * a block used once) opened under adaptive: only the blocks hit before go
 * to T2, the rows then hold adaptive's lists, and the next open under
 * adaptive evicts T1 over its target first. h0, h1 are hit and released
 * before h2..h7; with every block in T2 (access counts read as lists) the
 * order would be LRU's, h0 first. */
static void adaptive__lru_catalog_puts_blocks_used_once_in_t1(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("adaptive");
	char path[512];
	kvbm_config cfg;
	kvbm_hash h[8];
	int64_t freq[8];

	for (uint32_t i = 0; i < 8; i++)
		h[i] = H(100 + i);
	snprintf(path, sizeof(path), "%s/c.db", dir);
	catalog_config(&cfg, path, 8, KVBM_EVICT_LRU);
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	cached(mgr, h[0]);
	cached(mgr, h[1]);
	hit(mgr, h[0]);
	hit(mgr, h[1]);
	for (uint32_t i = 2; i < 8; i++)
		cached(mgr, h[i]);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	catalog_frequencies(path, h, 8, freq);
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(freq[i], i < 2 ? 2 : 1);

	cfg.evict_policy = KVBM_EVICT_ADAPTIVE;
	mgr = kvbm_test_open_cfg(&cfg);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	catalog_frequencies(path, h, 8, freq);
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(freq[i], i < 2 ? 1 : 0);

	/* Target 4 of 8: T1's six lose two, then LRU. Pinned and unpinned
	 * first, restored blocks keep their places too: h0 in T2 although
	 * its restore gave it no hit to tell it from a block used once. */
	mgr = kvbm_test_open_cfg(&cfg);
	const kvbm_hash pin[2] = {h[0], h[2]};
	kvbm_immutable pins[2];
	uint32_t found = 0;
	assert_int_equal(kvbm_pin(mgr, pin, 2, pins, &found), KVBM_OK);
	assert_int_equal(found, 2);
	assert_int_equal(kvbm_unpin(mgr, pins, 2), KVBM_OK);
	const kvbm_hash want[8] = {h[2], h[3], h[0], h[1], h[4], h[5], h[6], h[7]};
	expect_evicted(mgr, 8, want, 8);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
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

static void sim_open_policy(struct sim *s, kvbm_evict_policy policy)
{
	const struct kvbm__evict_params p = {.block_count = BLOCKS};

	memset(s, 0, sizeof(*s));
	s->ops = kvbm__evict_ops_for(policy);
	assert_non_null(s->ops);
	assert_int_equal(s->ops->create(&p, &s->st), KVBM_OK);
}

static void sim_open(struct sim *s)
{
	sim_open_policy(s, KVBM_EVICT_ADAPTIVE);
	assert_non_null(s->ops->state_export);
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
	s->ops->touch(s->st, h, true);
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

static void expect_state_unchanged(struct sim *s, const uint8_t *before, size_t before_len);

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
	const uint8_t version = blob[4];
	blob[4] = 4; /* a version this build does not know */
	assert_int_equal(b.ops->state_import(b.st, blob, len), KVBM_E_CORRUPT);
	blob[4] = version;
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

/* The catalog's reserve takes victims ahead of allocations and gives
 * back those hit before their block is reused (unevict, then an insert
 * with the hash and first tick they had). Such a victim was never
 * evicted: its hash registered in another block afterwards is no ghost
 * hit (the block enters T1, frequency 0), as it is after a real eviction
 * (T2, frequency 1). */
static void given_back_victim_is_no_ghost(kvbm_evict_policy policy)
{
	uint64_t rng = kvbm_test_seed("adaptive");
	struct sim s;

	sim_open_policy(&s, policy);
	for (int i = 0; i < 300; i++)
		sim_ref(&s, next_hash(&rng));
	for (int given_back = 1; given_back >= 0; given_back--) {
		uint32_t b, c;
		assert_true(s.ops->victim(s.st, &b));
		const kvbm_hash x = s.hash[b];
		if (given_back) {
			assert_non_null(s.ops->unevict);
			s.ops->unevict(s.st, b);
			const struct kvbm__evict_entry e = {
				.hash = x, .tick = ++s.clock, .first_tick = s.first[b]};
			s.ops->insert(s.st, b, &e);
		}
		assert_true(s.ops->victim(s.st, &c));
		assert_true(c != b);
		s.ops->touch(s.st, x, true);
		const struct kvbm__evict_entry n = {.hash = x, .tick = ++s.clock, .first_tick = s.clock};
		s.ops->insert(s.st, c, &n);
		s.hash[c] = x;
		s.first[c] = s.clock;
		if (!given_back)
			s.hash[b] = 0;
		assert_int_equal(s.ops->frequency(s.st, c, x), given_back ? 0 : 1);
	}
	s.ops->destroy(s.st);
}

static void adaptive__victim_given_back_by_the_reserve_is_no_ghost(void **state)
{
	(void)state;
	given_back_victim_is_no_ghost(KVBM_EVICT_ADAPTIVE);
}

static void arc__victim_given_back_by_the_reserve_is_no_ghost(void **state)
{
	(void)state;
	given_back_victim_is_no_ghost(KVBM_EVICT_ARC);
}

static void two_queue__victim_given_back_by_the_reserve_is_no_ghost(void **state)
{
	(void)state;
	given_back_victim_is_no_ghost(KVBM_EVICT_TWO_QUEUE);
}

/* A blob in memory, read in pieces as the catalog reads SQLite's; a
 * read reaching past fail_at fails. */
struct pieces {
	const uint8_t *buf;
	size_t fail_at;
	uint32_t reads;
};

static kvbm_status read_piece(void *ctx, size_t off, void *dst, size_t n)
{
	struct pieces *p = ctx;

	p->reads++;
	if (off + n > p->fail_at)
		return KVBM_E_IO;
	memcpy(dst, p->buf + off, n);
	return KVBM_OK;
}

/* Read in pieces, a state imports exactly as from one buffer, into a
 * fresh policy (the table straight into its ghost) and into one that
 * learned a ghost of its own (through a buffer). A table that turns out
 * damaged halfway, or a read that fails, leaves the policy as it was. */
static void adaptive__state_read_in_pieces_imports_the_same_state(void **state)
{
	(void)state;
	uint64_t rng = kvbm_test_seed("adaptive");
	struct sim a, fresh, learned;
	size_t len, fresh_len, learned_len, got_len;

	sim_open(&a);
	for (int i = 0; i < 3000; i++)
		sim_ref(&a, next_hash(&rng));
	uint8_t *blob = export_blob(&a, &len);
	assert_true(len > 48 + 12 * 8);
	sim_open(&fresh);
	uint8_t *fresh_blob = export_blob(&fresh, &fresh_len);
	sim_open(&learned);
	for (int i = 0; i < 1000; i++)
		sim_ref(&learned, next_hash(&rng));
	uint8_t *learned_blob = export_blob(&learned, &learned_len);

	/* The last bucket's cursor out of range: found after the rest of
	 * the table went in. */
	uint8_t *bad = malloc(len);
	assert_non_null(bad);
	memcpy(bad, blob, len);
	bad[len - 1] = 21;
	struct pieces p = {.buf = bad, .fail_at = SIZE_MAX};
	assert_int_equal(fresh.ops->state_import_read(fresh.st, len, read_piece, &p),
			 KVBM_E_CORRUPT);
	expect_state_unchanged(&fresh, fresh_blob, fresh_len);
	assert_int_equal(learned.ops->state_import_read(learned.st, len, read_piece, &p),
			 KVBM_E_CORRUPT);
	expect_state_unchanged(&learned, learned_blob, learned_len);
	/* A read that fails inside the table. */
	p = (struct pieces){.buf = blob, .fail_at = len - 64};
	assert_int_equal(fresh.ops->state_import_read(fresh.st, len, read_piece, &p), KVBM_E_IO);
	expect_state_unchanged(&fresh, fresh_blob, fresh_len);
	/* Nothing of the refused tables is left to be found once the ghost
	 * fills: the policy decides as one that never saw them. */
	struct sim pristine;
	sim_open(&pristine);
	uint64_t again = rng;
	for (int i = 0; i < 3000; i++) {
		const kvbm_hash h = next_hash(&again);
		assert_true(sim_ref(&fresh, h) == sim_ref(&pristine, h));
	}
	size_t pristine_len;
	uint8_t *pristine_blob = export_blob(&pristine, &pristine_len);
	expect_state_unchanged(&fresh, pristine_blob, pristine_len);
	free(pristine_blob);
	fresh.ops->destroy(fresh.st);
	pristine.ops->destroy(pristine.st);
	sim_open(&fresh);

	struct sim *into[2] = {&fresh, &learned};
	for (int k = 0; k < 2; k++) {
		p = (struct pieces){.buf = blob, .fail_at = SIZE_MAX};
		assert_int_equal(into[k]->ops->state_import_read(into[k]->st, len, read_piece, &p),
				 KVBM_OK);
		uint8_t *got = export_blob(into[k], &got_len);
		assert_int_equal(got_len, len);
		assert_memory_equal(got, blob, len);
		free(got);
	}
	free(bad);
	free(learned_blob);
	free(fresh_blob);
	free(blob);
	a.ops->destroy(a.st);
	fresh.ops->destroy(fresh.st);
	learned.ops->destroy(learned.st);
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
	catalog_config(&cfg, path, 64, KVBM_EVICT_ADAPTIVE);
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
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	/* What the close persisted, read from the file: a snapshot taken
	 * before the close would race with the writer, which takes victims
	 * for its reserve (moving the ghost) until the close stops it. */
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT state FROM policy_state", -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	const size_t n_before = (size_t)sqlite3_column_bytes(st, 0);
	assert_true(n_before > 0);
	before = malloc(n_before);
	assert_non_null(before);
	memcpy(before, sqlite3_column_blob(st, 0), n_before);
	sqlite3_finalize(st);
	sqlite3_close(db);
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

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
	le32(p, (uint32_t)v);
	le32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A version 1 blob as the previous release wrote it for block_count c
 * (ghost span 8 c): header, then two live ghost entries (slot,
 * fingerprint, stamp). Returns its length. */
#define V1_P (20ull * 65536 + 123)
#define V1_B1 100u
#define V1_B2 50u

static size_t v1_blob(uint8_t *buf, uint32_t c, uint32_t slot)
{
	memcpy(buf, "KVAD", 4);
	le32(buf + 4, 1);
	le32(buf + 8, c);
	le32(buf + 12, 8 * c);
	le64(buf + 16, V1_P);
	le32(buf + 24, V1_B1);
	le32(buf + 28, V1_B2);
	le64(buf + 32, 5000);
	le32(buf + 40, 2);
	le32(buf + 44, slot);
	le32(buf + 48, 0x12340);
	le32(buf + 52, 4990);
	le32(buf + 56, 7);
	le32(buf + 60, 0x991);
	le32(buf + 64, 4995);
	return 68;
}

/* A state exported by this build carries an old blob's split and
 * counters (the same values in V1 and V2 blobs), and no ghost: nothing
 * queued and no table, as before the first eviction. */
static void expect_v1_split_empty_ghost(const uint8_t *st, size_t len)
{
	assert_int_equal(len, 48);
	assert_int_equal(rd32(st + 4), 3);
	assert_int_equal(rd32(st + 16) | (uint64_t)rd32(st + 20) << 32, V1_P);
	assert_int_equal(rd32(st + 24), V1_B1);
	assert_int_equal(rd32(st + 28), V1_B2);
	assert_int_equal(rd32(st + 32), 0); /* buckets: none written */
	assert_int_equal(rd32(st + 36), 0); /* epoch */
	assert_int_equal(rd32(st + 44), 0); /* queued */
}

/* Opens b and runs it through 1,000 seeded references; returns its
 * exported state (len bytes), which an import test compares against. */
static uint8_t *learned_sim(struct sim *b, size_t *len)
{
	uint64_t rng = kvbm_test_seed("adaptive");

	sim_open(b);
	for (int i = 0; i < 1000; i++)
		sim_ref(b, next_hash(&rng));
	return export_blob(b, len);
}

/* s's state is still before (a refused import changed nothing). */
static void expect_state_unchanged(struct sim *s, const uint8_t *before, size_t before_len)
{
	size_t len;
	uint8_t *now = export_blob(s, &len);

	assert_int_equal(len, before_len);
	assert_memory_equal(now, before, len);
	free(now);
}

/* An old blob imports: its split and counters, an empty ghost. */
static void expect_imports_split(struct sim *s, const uint8_t *blob, size_t blob_len)
{
	size_t len;

	assert_int_equal(s->ops->state_import(s->st, blob, blob_len), KVBM_OK);
	uint8_t *after = export_blob(s, &len);
	expect_v1_split_empty_ghost(after, len);
	free(after);
}

/* Before its first eviction a policy's ghost is empty, and its state is
 * the header alone (n = 0), not 48 + 64 n bytes of empty lanes. That
 * header imports into a policy that learned a ghost and empties it, and
 * one that claims queued adds without a table is refused. */
static void adaptive__state_before_any_eviction_leaves_the_table_out(void **state)
{
	(void)state;
	uint64_t rng = kvbm_test_seed("adaptive");
	struct sim a, b;
	size_t len, learned_len, after_len;

	sim_open(&a);
	for (int i = 0; i < BLOCKS / 2; i++)
		assert_true(sim_ref(&a, next_hash(&rng)) == 0); /* nothing evicted */
	uint8_t *blob = export_blob(&a, &len);
	assert_int_equal(len, 48);
	assert_int_equal(rd32(blob + 32), 0);

	sim_open(&b);
	for (int i = 0; i < 1000; i++)
		sim_ref(&b, next_hash(&rng));
	uint8_t *learned = export_blob(&b, &learned_len);
	assert_true(learned_len > 48);
	uint8_t bad[60];
	memcpy(bad, blob, 48);
	le32(bad + 44, 1);
	memset(bad + 48, 0, 12);
	assert_int_equal(b.ops->state_import(b.st, bad, sizeof(bad)), KVBM_E_CORRUPT);
	expect_state_unchanged(&b, learned, learned_len);
	assert_int_equal(b.ops->state_import(b.st, blob, len), KVBM_OK);
	uint8_t *after = export_blob(&b, &after_len);
	assert_int_equal(after_len, len);
	assert_memory_equal(after, blob, len);
	free(after);
	free(learned);
	free(blob);
	a.ops->destroy(a.st);
	b.ops->destroy(b.st);
}

/* The blob of the release before the previous one (its ghost table
 * cannot be mapped into this one) imports its split and counters and
 * starts with an empty ghost; a damaged one is refused and changes
 * nothing. */
static void adaptive__version_1_blob_imports_its_split_with_an_empty_ghost(void **state)
{
	(void)state;
	uint8_t v1[68];
	struct sim b;
	size_t before_len;

	uint8_t *before = learned_sim(&b, &before_len);
	/* Damaged: a slot past version 1's table (1,024 slots for 64
	 * blocks), or cut short. */
	assert_int_equal(b.ops->state_import(b.st, v1, v1_blob(v1, BLOCKS, 1024)), KVBM_E_CORRUPT);
	assert_int_equal(b.ops->state_import(b.st, v1, v1_blob(v1, BLOCKS, 5) - 1), KVBM_E_CORRUPT);
	assert_int_equal(b.ops->state_import(b.st, v1, v1_blob(v1, BLOCKS + 1, 5)), KVBM_E_MISMATCH);
	expect_state_unchanged(&b, before, before_len);
	expect_imports_split(&b, v1, v1_blob(v1, BLOCKS, 1023));
	free(before);
	b.ops->destroy(b.st);
}

/* A version 2 blob as the previous release wrote it for block_count c
 * (evict_ghost16.h: span 8 c, 1.25 slots per entry in buckets of 31
 * 16-bit lanes and a cursor lane): V1's split and counters, one queued
 * eviction, a few entries, every bucket's cursor set to cursor. Returns
 * its length; buf holds at least v2_len(c). */
static uint32_t v2_buckets(uint32_t c)
{
	return (uint32_t)(((8ull * c * 5 + 3) / 4 + 30) / 31);
}

static size_t v2_len(uint32_t c)
{
	return 48 + 12 + (size_t)v2_buckets(c) * 64;
}

static size_t v2_blob(uint8_t *buf, uint32_t c, uint32_t cursor)
{
	const uint32_t n = v2_buckets(c);

	memset(buf, 0, v2_len(c));
	memcpy(buf, "KVAD", 4);
	le32(buf + 4, 2);
	le32(buf + 8, c);
	le32(buf + 12, 8 * c);
	le64(buf + 16, V1_P);
	le32(buf + 24, V1_B1);
	le32(buf + 28, V1_B2);
	le32(buf + 32, n);
	le32(buf + 36, 5);  /* epoch */
	le32(buf + 40, 17); /* adds left in it */
	le32(buf + 44, 1);  /* queued */
	le64(buf + 48, H(7));
	le32(buf + 56, 1);
	uint8_t *t = buf + 60;
	for (uint32_t k = 0; k < n; k++, t += 64) {
		t[62] = (uint8_t)cursor; /* lane 31, little-endian */
		if (k % 3 == 0) {
			t[0] = 0x45; /* fingerprint 0x123, list 0, epoch 5 */
			t[1] = 0x12;
		}
	}
	return v2_len(c);
}

/* The previous release's blob (its 12-bit fingerprints cannot be placed
 * in this table) imports its split and counters and starts with an empty
 * ghost; a damaged one is refused and changes nothing. */
static void adaptive__version_2_blob_imports_its_split_with_an_empty_ghost(void **state)
{
	(void)state;
	uint8_t *v2 = malloc(v2_len(BLOCKS + 1));
	struct sim b;
	size_t before_len;

	assert_non_null(v2);
	uint8_t *before = learned_sim(&b, &before_len);
	/* Damaged: a cursor past the 31 entries, cut short, a bucket count
	 * that is not version 2's for this span, a list tag out of range. */
	assert_int_equal(b.ops->state_import(b.st, v2, v2_blob(v2, BLOCKS, 31)), KVBM_E_CORRUPT);
	assert_int_equal(b.ops->state_import(b.st, v2, v2_blob(v2, BLOCKS, 30) - 1), KVBM_E_CORRUPT);
	v2_blob(v2, BLOCKS, 30);
	le32(v2 + 32, v2_buckets(BLOCKS) + 1);
	assert_int_equal(b.ops->state_import(b.st, v2, v2_len(BLOCKS)), KVBM_E_CORRUPT);
	v2_blob(v2, BLOCKS, 30);
	le32(v2 + 56, 3);
	assert_int_equal(b.ops->state_import(b.st, v2, v2_len(BLOCKS)), KVBM_E_CORRUPT);
	assert_int_equal(b.ops->state_import(b.st, v2, v2_blob(v2, BLOCKS + 1, 30)), KVBM_E_MISMATCH);
	expect_state_unchanged(&b, before, before_len);
	expect_imports_split(&b, v2, v2_blob(v2, BLOCKS, 30));
	free(before);
	free(v2);
	b.ops->destroy(b.st);
}

/* A catalog whose policy_state row the previous release wrote: the open
 * succeeds and the policy resumes with that split, its ghost empty. */
static void adaptive__catalog_of_the_previous_release_keeps_its_split(void **state)
{
	(void)state;
	char *dir = kvbm_test_tmpdir("adaptive");
	char path[512];
	kvbm_config cfg;
	uint8_t *v2 = malloc(v2_len(64));
	sqlite3 *db;
	sqlite3_stmt *st;

	assert_non_null(v2);
	snprintf(path, sizeof(path), "%s/c.db", dir);
	catalog_config(&cfg, path, 64, KVBM_EVICT_ADAPTIVE);
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	for (uint32_t i = 0; i < 200; i++) {
		kvbm_immutable r = kvbm_test_make(mgr, 1 + i);
		assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
	}
	assert_int_equal(kvbm_close(mgr), KVBM_OK);

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "UPDATE policy_state SET state = ?1", -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, v2, (int)v2_blob(v2, 64, 30), SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	assert_int_equal(sqlite3_changes(db), 1);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);

	mgr = kvbm_test_open_cfg(&cfg);
	uint8_t *now = NULL;
	const size_t n = kvbm__journal_policy_state(mgr, &now);
	expect_v1_split_empty_ghost(now, n);
	free(now);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
	free(v2);
}

/* The lane search against a plain loop, on random buckets seeded with
 * entries whose low half, or all 20 bits, are the fingerprint's, at
 * random places (the high bytes and the cursor are not lanes). */
static void ghost24__find_is_the_first_matching_entry_lane(void **state)
{
	(void)state;
	uint64_t rng = kvbm_test_seed("ghost24");
	_Alignas(64) uint8_t b[KVBM__G24_BUCKET];

	for (int round = 0; round < 20000; round++) {
		const uint32_t fp = kvbm__ghost24_fingerprint(kvbm_test_rand(&rng));
		for (unsigned i = 0; i < KVBM__G24_BUCKET; i++)
			b[i] = (uint8_t)kvbm_test_rand(&rng);
		for (unsigned i = 0; i < KVBM__G24_ENTRIES; i++) {
			const uint64_t r = kvbm_test_rand(&rng);
			if (r % 11 == 0) /* the low half only */
				kvbm__ghost24_set(b, i, fp & 0xffffu, (uint32_t)(r >> 8) & 0xff);
			else if (r % 11 == 1) /* the whole fingerprint, any list and epoch */
				kvbm__ghost24_set(b, i, fp & 0xffffu,
						  (fp >> 16) << 4 | ((uint32_t)(r >> 8) & 0xf));
		}
		/* High bytes that look like the pattern's halves where the
		 * search must not read them as lanes. */
		b[KVBM__G24_HI] = b[KVBM__G24_HI + 2] = (uint8_t)fp;
		b[KVBM__G24_HI + 1] = b[KVBM__G24_HI + 3] = (uint8_t)(fp >> 8);
		unsigned want = KVBM__G24_ENTRIES;
		for (unsigned i = 0; i < KVBM__G24_ENTRIES && want == KVBM__G24_ENTRIES; i++)
			if (kvbm__ghost24_lo(b, i) == (fp & 0xffffu) &&
			    (b[KVBM__G24_HI + i] >> 4) == fp >> 16)
				want = i;
		assert_int_equal(kvbm__ghost24_find(b, fp), want);
	}
}

/* An entry lives for 0.75 to 1 span adds: the last half span of adds are
 * all remembered with their list, adds more than a span old are
 * forgotten. */
static void ghost24__remembers_about_the_last_span_evictions(void **state)
{
	(void)state;
	struct kvbm__ghost24 g;
	const uint32_t span = 2000;
	uint32_t old_found = 0;

	assert_int_equal(kvbm__ghost24_init(&g, span), KVBM_OK);
	assert_true((uint64_t)g.n_buckets * KVBM__G24_ENTRIES >= span * 5 / 4);
	for (uint32_t i = 0; i < 3 * span; i++)
		kvbm__ghost24_add(&g, H(i), i & 1);
	for (uint32_t i = 3 * span - span / 2; i < 3 * span; i++)
		assert_int_equal(kvbm__ghost24_take(&g, H(i)), (int)(i & 1));
	for (uint32_t i = 3 * span - span / 2; i < 3 * span; i++)
		assert_int_equal(kvbm__ghost24_take(&g, H(i)), -1); /* taken: forgotten */
	/* 1.25 to 1.75 spans old: past their stamp, whatever their bucket
	 * did (two spans old, the 3-bit epoch wraps). */
	for (uint32_t i = span + span / 4; i < span + 3 * span / 4; i++)
		old_found += kvbm__ghost24_take(&g, H(i)) >= 0;
	assert_true(old_found <= span / 100);
	kvbm__ghost24_free(&g);
}

/* A full ghost asked about hashes it never saw answers "no" but about 1
 * time in 50,000 (21 live entries against 2^20 fingerprints); the 12-bit
 * fingerprints of the previous ghost answered "yes" about 1 time in 220,
 * 45 of these 10,000 lookups. */
static void ghost24__rarely_remembers_a_hash_it_never_saw(void **state)
{
	(void)state;
	struct kvbm__ghost24 g;
	const uint32_t span = 8000;
	uint32_t false_hits = 0;

	assert_int_equal(kvbm__ghost24_init(&g, span), KVBM_OK);
	for (uint32_t i = 0; i < 2 * span; i++)
		kvbm__ghost24_add(&g, H(i), i & 1);
	for (uint32_t i = 0; i < 10000; i++)
		false_hits += kvbm__ghost24_take(&g, H(1000000 + i)) >= 0;
	assert_true(false_hits <= 3);
	kvbm__ghost24_free(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(adaptive__one_off_blocks_over_target_go_first_then_lru),
		cmocka_unit_test(adaptive__ghost_hit_on_a_one_off_block_moves_toward_lru),
		cmocka_unit_test(adaptive__unpin_keeps_place_in_both_lists),
		cmocka_unit_test(adaptive__lru_catalog_puts_blocks_used_once_in_t1),
		cmocka_unit_test(adaptive__state_round_trip_keeps_every_decision),
		cmocka_unit_test(adaptive__bad_state_blob_changes_nothing),
		cmocka_unit_test(adaptive__state_read_in_pieces_imports_the_same_state),
		cmocka_unit_test(adaptive__victim_given_back_by_the_reserve_is_no_ghost),
		cmocka_unit_test(arc__victim_given_back_by_the_reserve_is_no_ghost),
		cmocka_unit_test(two_queue__victim_given_back_by_the_reserve_is_no_ghost),
		cmocka_unit_test(adaptive__catalog_restart_resumes_the_learned_state),
		cmocka_unit_test(adaptive__version_1_blob_imports_its_split_with_an_empty_ghost),
		cmocka_unit_test(adaptive__catalog_of_the_previous_release_keeps_its_split),
		cmocka_unit_test(adaptive__version_2_blob_imports_its_split_with_an_empty_ghost),
		cmocka_unit_test(adaptive__state_before_any_eviction_leaves_the_table_out),
		cmocka_unit_test(ghost24__find_is_the_first_matching_entry_lane),
		cmocka_unit_test(ghost24__remembers_about_the_last_span_evictions),
		cmocka_unit_test(ghost24__rarely_remembers_a_hash_it_never_saw),
	};
	return cmocka_run_group_tests_name("adaptive", tests, NULL, NULL);
}
