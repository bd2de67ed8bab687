/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Soak: random operations on a manager with its catalog on, restarted
 * every few thousand operations, either cleanly or by a discarding close
 * (the file is left exactly as a crash leaves it). The test keeps the
 * blocks' "contents" itself: a block's data is overwritten the moment
 * kvbm_allocate hands it out and set to the hash when it is staged, as an
 * inference server writes KV data. The guarantees checked throughout:
 *   - every match returns blocks whose data is the matched hash;
 *   - after every restart, every restored block's data is its hash (no
 *     block whose contents were reused is ever restored);
 *   - pool accounting is exact after every operation batch.
 * KVBM_SOAK_OPS sets the operation count (default 200000; the 'long'
 * suite runs millions). Randomised: prints its seed, honours KVBM_TEST_SEED.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

#define NB 64u
#define BS 4u
#define HASHES 160u /* distinct hashes in play: 2.5 per block */
#define HELD_MAX 48u

struct soak {
	kvbm_manager *mgr;
	kvbm_config cfg;
	uint64_t rng;
	kvbm_hash data[NB]; /* the block's contents: 0 = overwritten */
	kvbm_mutable mut[HELD_MAX];
	kvbm_complete com[HELD_MAX];
	kvbm_immutable imm[HELD_MAX];
	uint32_t n_mut, n_com, n_imm;
	uint64_t ops, matches, hits, restarts, crashes, restored, busy, exhausted;
};

static uint32_t rnd(struct soak *s, uint32_t n)
{
	return (uint32_t)(kvbm_test_rand(&s->rng) % n);
}

static kvbm_hash hash_of(uint32_t i)
{
	return kvbm_hash_chain(0, 0x50a4 + i, true);
}

static void check_restored(struct soak *s)
{
	for (uint32_t b = 0; b < NB; b++) {
		const kvbm_block_info info = kvbm_test_info(s->mgr, b);
		if (info.state != KVBM_BLOCK_INACTIVE)
			continue;
		s->restored++;
		if (s->data[b] != info.hash)
			fail_msg("block %u restored as %016" PRIx64 " but holds %016" PRIx64
				 " (after %" PRIu64 " ops)",
				 b, info.hash, s->data[b], s->ops);
	}
}

static void restart(struct soak *s)
{
	const bool crash = rnd(s, 2) == 0;

	/* A crash leaves handles dangling; a clean stop releases them first. */
	if (!crash) {
		for (uint32_t i = 0; i < s->n_mut; i++)
			assert_int_equal(kvbm_mutable_release(s->mgr, s->mut[i]), KVBM_OK);
		for (uint32_t i = 0; i < s->n_com; i++)
			assert_int_equal(kvbm_complete_release(s->mgr, s->com[i]), KVBM_OK);
		for (uint32_t i = 0; i < s->n_imm; i++)
			assert_int_equal(kvbm_immutable_release(s->mgr, s->imm[i]), KVBM_OK);
	}
	s->n_mut = s->n_com = s->n_imm = 0;
	assert_int_equal(kvbm_close_ex(s->mgr, crash ? KVBM_CLOSE_DISCARD : 0), KVBM_OK);
	s->mgr = kvbm_test_open_cfg(&s->cfg);
	s->restarts++;
	s->crashes += crash;
	check_restored(s);
	assert_invariants(s->mgr);
}

static void op_allocate(struct soak *s)
{
	kvbm_mutable m[4];
	const uint32_t n = 1 + rnd(s, 4);

	if (s->n_mut + n > HELD_MAX)
		return;
	const kvbm_status st = kvbm_allocate(s->mgr, n, m);
	if (st == KVBM_E_EXHAUSTED || st == KVBM_E_BUSY) {
		s->exhausted += st == KVBM_E_EXHAUSTED;
		s->busy += st == KVBM_E_BUSY;
		return;
	}
	assert_int_equal(st, KVBM_OK);
	for (uint32_t i = 0; i < n; i++) {
		s->data[m[i].block] = 0; /* the caller may overwrite at once */
		s->mut[s->n_mut++] = m[i];
	}
}

static void op_stage(struct soak *s)
{
	if (!s->n_mut || s->n_com == HELD_MAX)
		return;
	const uint32_t i = rnd(s, s->n_mut);
	const kvbm_mutable m = s->mut[i];
	const kvbm_hash h = hash_of(rnd(s, HASHES));

	s->data[m.block] = h; /* compute the KV data, then publish the hash */
	assert_int_equal(kvbm_stage(s->mgr, m, h, BS, &s->com[s->n_com++]), KVBM_OK);
	s->mut[i] = s->mut[--s->n_mut];
}

static void op_register(struct soak *s)
{
	if (!s->n_com || s->n_imm == HELD_MAX)
		return;
	const uint32_t i = rnd(s, s->n_com);

	assert_int_equal(kvbm_register(s->mgr, s->com[i], &s->imm[s->n_imm]), KVBM_OK);
	kvbm_hash h = 0;
	assert_int_equal(kvbm_immutable_hash(s->mgr, s->imm[s->n_imm], &h), KVBM_OK);
	assert_int_equal(s->data[s->imm[s->n_imm].block], h);
	s->n_imm++;
	s->com[i] = s->com[--s->n_com];
}

static void op_match(struct soak *s)
{
	kvbm_hash hs[4];
	kvbm_immutable got[4];
	uint32_t matched = 0;
	const uint32_t n = 1 + rnd(s, 4);

	if (s->n_imm + n > HELD_MAX)
		return;
	for (uint32_t i = 0; i < n; i++)
		hs[i] = hash_of(rnd(s, HASHES));
	assert_int_equal(kvbm_match(s->mgr, hs, n, got, &matched), KVBM_OK);
	s->matches += n;
	s->hits += matched;
	for (uint32_t i = 0; i < matched; i++) {
		if (s->data[got[i].block] != hs[i])
			fail_msg("match of %016" PRIx64 " returned block %u holding %016" PRIx64,
				 hs[i], got[i].block, s->data[got[i].block]);
		s->imm[s->n_imm++] = got[i];
	}
}

static void op_release(struct soak *s)
{
	switch (rnd(s, 3)) {
	case 0:
		if (s->n_mut) {
			const uint32_t i = rnd(s, s->n_mut);
			assert_int_equal(kvbm_mutable_release(s->mgr, s->mut[i]), KVBM_OK);
			s->mut[i] = s->mut[--s->n_mut];
		}
		break;
	case 1:
		if (s->n_com) {
			const uint32_t i = rnd(s, s->n_com);
			assert_int_equal(kvbm_complete_release(s->mgr, s->com[i]), KVBM_OK);
			s->com[i] = s->com[--s->n_com];
		}
		break;
	default:
		if (s->n_imm) {
			const uint32_t i = rnd(s, s->n_imm);
			const kvbm_immutable h = s->imm[i];
			assert_int_equal(kvbm_immutable_release(s->mgr, h), KVBM_OK);
			assert_int_equal(kvbm_immutable_release(s->mgr, h), KVBM_E_STALE);
			s->imm[i] = s->imm[--s->n_imm];
		}
	}
}

static void soak(kvbm_dup_policy dup, kvbm_evict_policy policy)
{
	static struct soak s;
	char *dir = kvbm_test_tmpdir("soak");
	char path[512];
	const char *env = getenv("KVBM_SOAK_OPS");
	const uint64_t total = env && *env ? strtoull(env, NULL, 0) : 200000;

	memset(&s, 0, sizeof(s));
	s.rng = kvbm_test_seed("soak") | 1;
	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	kvbm_config_init(&s.cfg);
	s.cfg.block_count = NB;
	s.cfg.block_size = BS;
	s.cfg.dup_policy = dup;
	s.cfg.evict_policy = policy;
	s.cfg.catalog_path = path;
	s.cfg.catalog_sync = KVBM_SYNC_OFF; /* in-process crashes: the OS keeps writes */
	s.cfg.catalog_interval_ms = 2;
	s.cfg.catalog_reserve = 4;
	s.mgr = kvbm_test_open_cfg(&s.cfg);

	for (s.ops = 0; s.ops < total; s.ops++) {
		const uint32_t r = rnd(&s, 100);
		if (r < 25)
			op_allocate(&s);
		else if (r < 45)
			op_stage(&s);
		else if (r < 60)
			op_register(&s);
		else if (r < 75)
			op_match(&s);
		else if (r < 99)
			op_release(&s);
		else if (rnd(&s, 20) == 0)
			assert_int_equal(kvbm_reset_inactive(s.mgr, NULL), KVBM_OK);
		if (s.ops % 64 == 0)
			assert_invariants(s.mgr);
		if (s.ops % 5000 == 4999)
			restart(&s);
	}
	restart(&s);
	print_message("soak %s/%s: %" PRIu64 " ops, %" PRIu64 " restarts (%" PRIu64
		      " crashes), %" PRIu64 " blocks restored and checked, %" PRIu64 "/%" PRIu64
		      " match hits, %" PRIu64 " busy, %" PRIu64 " exhausted\n",
		      dup == KVBM_DUP_REJECT ? "reject" : "allow", kvbm_evict_policy_name(policy),
		      s.ops, s.restarts, s.crashes, s.restored, s.hits, s.matches, s.busy,
		      s.exhausted);
	assert_true(s.restored > 0 && s.crashes > 0 && s.hits > 0);
	assert_int_equal(kvbm_close(s.mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
}

static void soak__allow_lru(void **state)
{
	(void)state;
	soak(KVBM_DUP_ALLOW, KVBM_EVICT_LRU);
}

static void soak__reject_fifo(void **state)
{
	(void)state;
	soak(KVBM_DUP_REJECT, KVBM_EVICT_FIFO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(soak__allow_lru),
		cmocka_unit_test(soak__reject_fifo),
	};
	return cmocka_run_group_tests_name("soak", tests, NULL, NULL);
}
