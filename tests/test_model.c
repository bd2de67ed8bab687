/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Randomised model test: a long random sequence of calls (allocate, stage,
 * unstage, register, retain, release, match, scattered match, contains,
 * downgrade/upgrade, reset-on-release, reset_inactive, and misuse of
 * consumed handles) is run against the library and, step by step, against
 * a tiny reference model written here with plain arrays. Every result,
 * every evicted hash and the pool counts after every step must agree.
 * Runs each duplication policy with LRU and FIFO. Prints its seed; set
 * KVBM_TEST_SEED to replay, KVBM_MODEL_OPS to change the length.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

#define BS 4u
#define MAXB 32u       /* most blocks a model manager has */
#define NHASH 40u      /* hash universe: HBASE + 0..NHASH-1 */
#define HBASE 0x1000u
#define MAXREF 1024u   /* live immutable handles kept */
#define NDEAD 32u      /* consumed handles kept for misuse */
#define NWEAK 64u

enum { M_RESET, M_MUTABLE, M_STAGED, M_PRIMARY, M_DUP, M_INACTIVE };

struct mblock {
	int state;
	kvbm_hash hash;
	uint32_t refs, dups, primary;
	uint64_t key;   /* inactive order: smaller is evicted first */
	uint64_t first; /* FIFO: tick this registration first went inactive */
	uint32_t reg;   /* registration id (weak handles), 0 = none */
	bool ror;       /* reset on release */
};

struct mweak {
	kvbm_weak w;
	uint32_t reg;
};

struct model {
	kvbm_manager *mgr;
	uint32_t nb;
	bool lru, reject, ror_default;
	struct mblock b[MAXB];
	int32_t registry[NHASH]; /* hash index -> block, -1 = none */
	uint64_t clock;
	uint32_t reg_next;

	kvbm_mutable mut[MAXB];
	uint32_t n_mut;
	kvbm_complete comp[MAXB];
	uint32_t n_comp;
	kvbm_immutable imm[MAXREF];
	uint32_t n_imm;
	struct mweak weak[NWEAK];
	uint32_t n_weak;

	kvbm_mutable dead_mut[NDEAD];
	kvbm_complete dead_comp[NDEAD];
	kvbm_immutable dead_imm[NDEAD];
	uint32_t n_dead_mut, n_dead_comp, n_dead_imm;

	uint64_t rng, seed, op;
	const char *op_name;
	uint64_t stats[8]; /* evictions, exhausted, hits, dups, dedups, stale, notfound, size */
};

static struct model M; /* one at a time; static so it is not on the stack */

#define CHECK_EQ(a, b)                                                                     \
	do {                                                                               \
		const uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                     \
		if (a_ != b_) {                                                            \
			print_error("model: op %" PRIu64 " (%s), seed %" PRIu64 ": %s = %"  \
				    PRIu64 ", model says %" PRIu64 "\n",                   \
				    M.op, M.op_name, M.seed, #a, a_, b_);                  \
			fail();                                                            \
		}                                                                          \
	} while (0)

static uint32_t rnd(uint32_t n)
{
	return (uint32_t)(kvbm_test_rand(&M.rng) % n);
}

static uint32_t hidx(kvbm_hash h)
{
	return (uint32_t)(h - HBASE);
}

/* ---- the reference model ---- */

static void m_free(uint32_t b)
{
	M.b[b] = (struct mblock){.state = M_RESET};
}

static void m_drop_hash(uint32_t b)
{
	assert_true(M.registry[hidx(M.b[b].hash)] == (int32_t)b);
	M.registry[hidx(M.b[b].hash)] = -1;
}

static void m_make_inactive(uint32_t b)
{
	struct mblock *s = &M.b[b];

	if (s->ror) {
		m_drop_hash(b);
		m_free(b);
		return;
	}
	s->state = M_INACTIVE;
	M.clock++;
	if (M.lru) {
		s->key = M.clock;
	} else {
		if (!s->first)
			s->first = M.clock;
		s->key = s->first;
	}
}

static void m_resurrect(uint32_t b)
{
	if (M.b[b].state == M_INACTIVE)
		M.b[b].state = M_PRIMARY;
}

static void m_unref(uint32_t b)
{
	struct mblock *s = &M.b[b];

	assert_true(s->refs > 0);
	if (--s->refs > 0)
		return;
	if (s->state == M_DUP) {
		const uint32_t p = s->primary;
		m_free(b);
		if (--M.b[p].dups == 0 && M.b[p].refs == 0)
			m_make_inactive(p);
	} else if (s->dups == 0) {
		m_make_inactive(b);
	}
}

/* Register staged block b; returns the block the new reference is to. */
static uint32_t m_register(uint32_t b)
{
	struct mblock *s = &M.b[b];
	const int32_t e = M.registry[hidx(s->hash)];

	if (e < 0) {
		s->state = M_PRIMARY;
		s->reg = ++M.reg_next;
		s->first = 0;
		M.registry[hidx(s->hash)] = (int32_t)b;
		s->refs++;
		return b;
	}
	m_resurrect((uint32_t)e);
	if (M.reject) {
		m_free(b);
		M.b[e].refs++;
		M.stats[4]++;
		return (uint32_t)e;
	}
	s->state = M_DUP;
	s->reg = ++M.reg_next;
	s->primary = (uint32_t)e;
	M.b[e].dups++;
	s->refs++;
	M.stats[3]++;
	return b;
}

/* Index of the policy's next victim, or -1. */
static int32_t m_victim(void)
{
	int32_t v = -1;

	for (uint32_t b = 0; b < M.nb; b++)
		if (M.b[b].state == M_INACTIVE && (v < 0 || M.b[b].key < M.b[v].key))
			v = (int32_t)b;
	return v;
}

static uint32_t m_count(int state)
{
	uint32_t n = 0;

	for (uint32_t b = 0; b < M.nb; b++)
		n += M.b[b].state == state;
	return n;
}

static void m_check_counts(void)
{
	const kvbm_pool_counts c = kvbm_test_counts(M.mgr);
	uint32_t reg = 0;

	CHECK_EQ(c.reset, m_count(M_RESET));
	CHECK_EQ(c.inactive, m_count(M_INACTIVE));
	CHECK_EQ(c.mutable_, m_count(M_MUTABLE));
	CHECK_EQ(c.staged, m_count(M_STAGED));
	CHECK_EQ(c.registered, m_count(M_PRIMARY));
	CHECK_EQ(c.duplicate, m_count(M_DUP));
	for (uint32_t i = 0; i < NHASH; i++)
		reg += M.registry[i] >= 0;
	CHECK_EQ(c.registry, reg);
	kvbm_test_assert_invariants(M.mgr);
}

static void m_check_block(uint32_t b)
{
	static const kvbm_block_state pub[] = {
		[M_RESET] = KVBM_BLOCK_RESET, [M_MUTABLE] = KVBM_BLOCK_MUTABLE,
		[M_STAGED] = KVBM_BLOCK_STAGED, [M_PRIMARY] = KVBM_BLOCK_REGISTERED,
		[M_DUP] = KVBM_BLOCK_DUPLICATE, [M_INACTIVE] = KVBM_BLOCK_INACTIVE,
	};
	const kvbm_block_info info = kvbm_test_info(M.mgr, b);
	const struct mblock *s = &M.b[b];

	CHECK_EQ(info.state, pub[s->state]);
	CHECK_EQ(info.ref_count, s->refs);
	if (s->state >= M_STAGED)
		CHECK_EQ(info.hash, s->hash);
	if (s->state >= M_PRIMARY)
		CHECK_EQ(info.reset_on_release, s->ror);
}

/* ---- handle bookkeeping ---- */

static void dead_mutable(kvbm_mutable m)
{
	M.dead_mut[M.n_dead_mut++ % NDEAD] = m;
}

static void dead_complete(kvbm_complete c)
{
	M.dead_comp[M.n_dead_comp++ % NDEAD] = c;
}

static void dead_immutable(kvbm_immutable h)
{
	M.dead_imm[M.n_dead_imm++ % NDEAD] = h;
}

static kvbm_mutable take_mutable(uint32_t i)
{
	const kvbm_mutable m = M.mut[i];

	M.mut[i] = M.mut[--M.n_mut];
	return m;
}

static kvbm_complete take_complete(uint32_t i)
{
	const kvbm_complete c = M.comp[i];

	M.comp[i] = M.comp[--M.n_comp];
	return c;
}

static kvbm_immutable take_immutable(uint32_t i)
{
	const kvbm_immutable h = M.imm[i];

	M.imm[i] = M.imm[--M.n_imm];
	return h;
}

static void add_immutable(kvbm_immutable h, uint32_t expect_block)
{
	CHECK_EQ(h.block, expect_block);
	assert_int_not_equal(h.gen, 0);
	assert_true(M.n_imm < MAXREF);
	M.imm[M.n_imm++] = h;
}

static kvbm_hash random_hash(void)
{
	return HBASE + rnd(NHASH);
}

/* A registered hash, or a random one when nothing is registered. */
static kvbm_hash likely_hash(void)
{
	const uint32_t start = rnd(NHASH);

	for (uint32_t i = 0; i < NHASH; i++)
		if (M.registry[(start + i) % NHASH] >= 0)
			return HBASE + (start + i) % NHASH;
	return random_hash();
}

/* ---- operations ---- */

static void op_allocate(void)
{
	const uint32_t n = 1 + rnd(rnd(4) == 0 ? M.nb : 3);
	const uint32_t n_reset = m_count(M_RESET), avail = n_reset + m_count(M_INACTIVE);
	kvbm_mutable out[MAXB + 1];
	kvbm_hash ev[MAXB + 1];
	uint32_t n_ev = 999;

	M.op_name = "allocate";
	if (n > avail) {
		const kvbm_status st = kvbm_allocate_ex(M.mgr, n, out, ev, &n_ev);
		CHECK_EQ(st, KVBM_E_EXHAUSTED);
		CHECK_EQ(n_ev, 0);
		M.stats[1]++;
		return;
	}
	/* Victims in policy order, predicted before the call. */
	const uint32_t from_reset = n < n_reset ? n : n_reset;
	uint32_t victims[MAXB];
	for (uint32_t i = 0; i < n - from_reset; i++) {
		const int32_t v = m_victim();
		assert_true(v >= 0);
		victims[i] = (uint32_t)v;
		M.b[v].state = M_MUTABLE; /* provisional, so m_victim moves on */
	}
	for (uint32_t i = 0; i < n - from_reset; i++)
		M.b[victims[i]].state = M_INACTIVE;
	const bool ex = rnd(2);
	const kvbm_status st = ex ? kvbm_allocate_ex(M.mgr, n, out, ev, &n_ev)
				  : kvbm_allocate(M.mgr, n, out);
	CHECK_EQ(st, KVBM_OK);
	if (ex) {
		CHECK_EQ(n_ev, n - from_reset);
		for (uint32_t i = 0; i < n_ev; i++)
			CHECK_EQ(ev[i], M.b[victims[i]].hash);
	}
	uint32_t got_reset = 0, got_victims = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t b = out[i].block;
		assert_true(b < M.nb);
		if (M.b[b].state == M_RESET) {
			got_reset++;
		} else {
			CHECK_EQ(M.b[b].state, M_INACTIVE);
			bool is_victim = false;
			for (uint32_t v = 0; v < n - from_reset; v++)
				is_victim |= victims[v] == b;
			assert_true(is_victim);
			got_victims++;
		}
		M.b[b].state = M_MUTABLE; /* also catches a block handed out twice */
	}
	CHECK_EQ(got_reset, from_reset);
	CHECK_EQ(got_victims, n - from_reset);
	for (uint32_t i = 0; i < n - from_reset; i++)
		m_drop_hash(victims[i]);
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t b = out[i].block;
		m_free(b);
		M.b[b].state = M_MUTABLE;
		M.b[b].ror = M.ror_default;
		M.mut[M.n_mut++] = out[i];
	}
	M.stats[0] += n - from_reset;
}

/* allocate_ex's evicted[] must list the victims' hashes in policy order:
 * checked separately so the bookkeeping above stays simple. */
static void op_allocate_evicting(void)
{
	const uint32_t n_reset = m_count(M_RESET), n_inactive = m_count(M_INACTIVE);
	kvbm_mutable out[MAXB];
	kvbm_hash ev[MAXB];
	uint32_t n_ev = 0;

	M.op_name = "allocate_evicting";
	if (n_inactive == 0 || n_reset + 1 > MAXB) {
		op_allocate();
		return;
	}
	const uint32_t k = 1 + rnd(n_inactive < 3 ? n_inactive : 3);
	const uint32_t n = n_reset + k;
	kvbm_hash expect[MAXB];
	uint32_t victims[MAXB];
	for (uint32_t i = 0; i < k; i++) {
		const int32_t v = m_victim();
		victims[i] = (uint32_t)v;
		expect[i] = M.b[v].hash;
		M.b[v].state = M_MUTABLE;
	}
	CHECK_EQ(kvbm_allocate_ex(M.mgr, n, out, ev, &n_ev), KVBM_OK);
	CHECK_EQ(n_ev, k);
	for (uint32_t i = 0; i < k; i++)
		CHECK_EQ(ev[i], expect[i]);
	for (uint32_t i = 0; i < k; i++) {
		M.b[victims[i]].state = M_INACTIVE;
		m_drop_hash(victims[i]);
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t b = out[i].block;
		assert_true(M.b[b].state == M_RESET || M.b[b].state == M_INACTIVE);
		m_free(b);
		M.b[b].state = M_MUTABLE;
		M.b[b].ror = M.ror_default;
		M.mut[M.n_mut++] = out[i];
	}
	M.stats[0] += k;
}

static void op_stage(void)
{
	M.op_name = "stage";
	if (!M.n_mut) {
		op_allocate();
		return;
	}
	const uint32_t i = rnd(M.n_mut);
	const kvbm_mutable m = M.mut[i];
	const kvbm_hash h = rnd(3) ? random_hash() : likely_hash();
	kvbm_complete c = {0};

	if (rnd(10) == 0) {
		const uint32_t wrong = rnd(2) ? BS - 1 : BS + 1 + rnd(100);
		CHECK_EQ(kvbm_stage(M.mgr, m, h, wrong, &c), KVBM_E_SIZE);
		M.stats[7]++;
		return;
	}
	const kvbm_status st = rnd(2) ? kvbm_stage(M.mgr, m, h, BS, &c)
				      : kvbm_stage_lineage(M.mgr, m, h, h - 1, rnd(5), BS, &c);
	CHECK_EQ(st, KVBM_OK);
	CHECK_EQ(c.block, m.block);
	dead_mutable(take_mutable(i));
	M.b[m.block].state = M_STAGED;
	M.b[m.block].hash = h;
	M.comp[M.n_comp++] = c;
}

static void op_unstage(void)
{
	M.op_name = "unstage";
	if (!M.n_comp) {
		op_stage();
		return;
	}
	const uint32_t i = rnd(M.n_comp);
	const kvbm_complete c = M.comp[i];
	kvbm_mutable m;

	CHECK_EQ(kvbm_unstage(M.mgr, c, &m), KVBM_OK);
	CHECK_EQ(m.block, c.block);
	dead_complete(take_complete(i));
	M.b[c.block].state = M_MUTABLE;
	M.b[c.block].hash = 0;
	M.b[c.block].ror = M.ror_default;
	M.mut[M.n_mut++] = m;
}

static void op_mutable_release(void)
{
	M.op_name = "mutable_release";
	if (!M.n_mut)
		return;
	const kvbm_mutable m = take_mutable(rnd(M.n_mut));

	CHECK_EQ(kvbm_mutable_release(M.mgr, m), KVBM_OK);
	dead_mutable(m);
	m_free(m.block);
}

static void op_complete_release(void)
{
	M.op_name = "complete_release";
	if (!M.n_comp)
		return;
	const kvbm_complete c = take_complete(rnd(M.n_comp));

	CHECK_EQ(kvbm_complete_release(M.mgr, c), KVBM_OK);
	dead_complete(c);
	m_free(c.block);
}

static void op_register(void)
{
	M.op_name = "register";
	if (!M.n_comp) {
		op_stage();
		return;
	}
	if (M.n_imm + 3 > MAXREF)
		return;
	const uint32_t k = 1 + rnd(M.n_comp < 3 ? M.n_comp : 3);
	const uint32_t start = rnd(M.n_comp);
	kvbm_complete batch[3];
	kvbm_immutable out[3];

	for (uint32_t j = 0; j < k; j++)
		batch[j] = M.comp[(start + j) % M.n_comp];
	const kvbm_status st = k == 1 && rnd(2) ? kvbm_register(M.mgr, batch[0], out)
						: kvbm_register_batch(M.mgr, batch, k, out);
	CHECK_EQ(st, KVBM_OK);
	for (uint32_t j = 0; j < k; j++) {
		for (uint32_t x = 0; x < M.n_comp; x++)
			if (M.comp[x].block == batch[j].block) {
				dead_complete(take_complete(x));
				break;
			}
		add_immutable(out[j], m_register(batch[j].block));
	}
}

static void op_retain(void)
{
	M.op_name = "retain";
	if (!M.n_imm || M.n_imm >= MAXREF) {
		op_register();
		return;
	}
	const kvbm_immutable h = M.imm[rnd(M.n_imm)];
	kvbm_immutable r;

	CHECK_EQ(kvbm_immutable_retain(M.mgr, h, &r), KVBM_OK);
	M.b[h.block].refs++;
	add_immutable(r, h.block);
}

static void op_release(void)
{
	M.op_name = "release";
	if (!M.n_imm) {
		op_mutable_release();
		return;
	}
	const uint32_t k = 1 + rnd(M.n_imm < 3 ? M.n_imm : 3);
	kvbm_immutable batch[3];

	for (uint32_t j = 0; j < k; j++)
		batch[j] = take_immutable(rnd(M.n_imm));
	const kvbm_status st = k == 1 && rnd(2) ? kvbm_immutable_release(M.mgr, batch[0])
						: kvbm_immutable_release_batch(M.mgr, batch, k);
	CHECK_EQ(st, KVBM_OK);
	for (uint32_t j = 0; j < k; j++) {
		dead_immutable(batch[j]);
		m_unref(batch[j].block);
	}
}

/* A query of up to 6 hashes, mostly registered ones, some misses. */
static uint32_t make_query(kvbm_hash *q)
{
	const uint32_t n = 1 + rnd(6);

	for (uint32_t i = 0; i < n; i++)
		q[i] = rnd(4) ? likely_hash() : random_hash();
	return n;
}

static void op_match(void)
{
	kvbm_hash q[6];
	kvbm_immutable out[6];
	uint32_t matched = 999;

	M.op_name = "match";
	if (M.n_imm + 6 > MAXREF) {
		op_release();
		return;
	}
	const uint32_t n = make_query(q);
	CHECK_EQ(kvbm_match(M.mgr, q, n, out, &matched), KVBM_OK);
	uint32_t expect = 0;
	while (expect < n && M.registry[hidx(q[expect])] >= 0) {
		const uint32_t b = (uint32_t)M.registry[hidx(q[expect])];
		m_resurrect(b);
		M.b[b].refs++;
		expect++;
	}
	CHECK_EQ(matched, expect);
	for (uint32_t i = 0; i < matched; i++)
		add_immutable(out[i], (uint32_t)M.registry[hidx(q[i])]);
	M.stats[2] += matched;
}

static void op_scattered(void)
{
	kvbm_hash q[6];
	kvbm_immutable out[6];
	uint32_t found = 999, expect = 0;

	M.op_name = "scattered";
	if (M.n_imm + 6 > MAXREF) {
		op_release();
		return;
	}
	const uint32_t n = make_query(q);
	CHECK_EQ(kvbm_match_scattered(M.mgr, q, n, out, &found), KVBM_OK);
	for (uint32_t i = 0; i < n; i++) {
		const int32_t b = M.registry[hidx(q[i])];
		if (b < 0) {
			CHECK_EQ(out[i].gen, 0);
			continue;
		}
		m_resurrect((uint32_t)b);
		M.b[b].refs++;
		add_immutable(out[i], (uint32_t)b);
		expect++;
	}
	CHECK_EQ(found, expect);
	M.stats[2] += found;
}

static void op_contains(void)
{
	kvbm_hash q[6];
	bool present[6];
	uint32_t n_present = 999, prefix = 999, want_n = 0, want_prefix = 0;
	bool run = true;

	M.op_name = "contains";
	const uint32_t n = make_query(q);
	CHECK_EQ(kvbm_contains(M.mgr, q, n, present, &n_present, &prefix), KVBM_OK);
	for (uint32_t i = 0; i < n; i++) {
		const bool p = M.registry[hidx(q[i])] >= 0;
		CHECK_EQ(present[i], p);
		want_n += p;
		run = run && p;
		want_prefix += run;
	}
	CHECK_EQ(n_present, want_n);
	CHECK_EQ(prefix, want_prefix);
}

static void op_downgrade(void)
{
	kvbm_weak w;

	M.op_name = "downgrade";
	if (!M.n_imm) {
		op_register();
		return;
	}
	const kvbm_immutable h = M.imm[rnd(M.n_imm)];
	CHECK_EQ(kvbm_downgrade(M.mgr, h, &w), KVBM_OK);
	CHECK_EQ(w.hash, M.b[h.block].hash);
	CHECK_EQ(w.block, h.block);
	M.weak[M.n_weak++ % NWEAK] = (struct mweak){.w = w, .reg = M.b[h.block].reg};
}

static void op_upgrade(void)
{
	kvbm_immutable out = {0};

	M.op_name = "upgrade";
	if (!M.n_weak || M.n_imm >= MAXREF) {
		op_downgrade();
		return;
	}
	const uint32_t nw = M.n_weak < NWEAK ? M.n_weak : NWEAK;
	const struct mweak *mw = &M.weak[rnd(nw)];
	int32_t b = -1;
	/* The original block while it holds that registration, else whichever
	 * block holds the hash now. */
	if (M.b[mw->w.block].reg == mw->reg && mw->reg != 0)
		b = (int32_t)mw->w.block;
	else
		b = M.registry[hidx(mw->w.hash)];
	const kvbm_status st = kvbm_weak_upgrade(M.mgr, mw->w, &out);
	if (b < 0) {
		CHECK_EQ(st, KVBM_E_NOTFOUND);
		M.stats[6]++;
		return;
	}
	CHECK_EQ(st, KVBM_OK);
	m_resurrect((uint32_t)b);
	M.b[b].refs++;
	add_immutable(out, (uint32_t)b);
}

static void op_set_ror(void)
{
	M.op_name = "set_reset_on_release";
	if (!M.n_imm) {
		op_register();
		return;
	}
	const kvbm_immutable h = M.imm[rnd(M.n_imm)];
	const bool v = rnd(3) == 0 ? !M.ror_default : M.ror_default;

	CHECK_EQ(kvbm_immutable_set_reset_on_release(M.mgr, h, v), KVBM_OK);
	M.b[h.block].ror = v;
}

static void op_reset_inactive(void)
{
	uint32_t dropped = 999, want = 0;

	M.op_name = "reset_inactive";
	CHECK_EQ(kvbm_reset_inactive(M.mgr, &dropped), KVBM_OK);
	for (uint32_t b = 0; b < M.nb; b++)
		if (M.b[b].state == M_INACTIVE) {
			m_drop_hash(b);
			m_free(b);
			want++;
		}
	CHECK_EQ(dropped, want);
}

static void op_query(void)
{
	kvbm_hash h;
	uint32_t refs;

	M.op_name = "query";
	if (!M.n_imm) {
		op_contains();
		return;
	}
	const kvbm_immutable r = M.imm[rnd(M.n_imm)];
	CHECK_EQ(kvbm_immutable_hash(M.mgr, r, &h), KVBM_OK);
	CHECK_EQ(h, M.b[r.block].hash);
	CHECK_EQ(kvbm_immutable_ref_count(M.mgr, r, &refs), KVBM_OK);
	CHECK_EQ(refs, M.b[r.block].refs);
	CHECK_EQ(kvbm_available_blocks(M.mgr), m_count(M_RESET) + m_count(M_INACTIVE));
}

/* Use a consumed or released handle: always KVBM_E_STALE, nothing moves. */
static void op_stale(void)
{
	kvbm_status st = KVBM_OK;
	kvbm_complete c;
	kvbm_mutable m;
	kvbm_immutable r;
	uint32_t u;

	M.op_name = "stale";
	switch (rnd(3)) {
	case 0:
		if (!M.n_dead_mut)
			return;
		m = M.dead_mut[rnd(M.n_dead_mut < NDEAD ? M.n_dead_mut : NDEAD)];
		st = rnd(2) ? kvbm_mutable_release(M.mgr, m) : kvbm_stage(M.mgr, m, 1, BS, &c);
		break;
	case 1:
		if (!M.n_dead_comp)
			return;
		c = M.dead_comp[rnd(M.n_dead_comp < NDEAD ? M.n_dead_comp : NDEAD)];
		switch (rnd(3)) {
		case 0: st = kvbm_complete_release(M.mgr, c); break;
		case 1: st = kvbm_register(M.mgr, c, &r); break;
		default: st = kvbm_unstage(M.mgr, c, &m); break;
		}
		break;
	default:
		if (!M.n_dead_imm)
			return;
		r = M.dead_imm[rnd(M.n_dead_imm < NDEAD ? M.n_dead_imm : NDEAD)];
		switch (rnd(3)) {
		case 0: st = kvbm_immutable_release(M.mgr, r); break;
		case 1: st = kvbm_immutable_retain(M.mgr, r, &r); break;
		default: st = kvbm_immutable_ref_count(M.mgr, r, &u); break;
		}
		break;
	}
	CHECK_EQ(st, KVBM_E_STALE);
	M.stats[5]++;
}

struct weighted {
	void (*fn)(void);
	uint32_t weight;
};

static const struct weighted ops[] = {
	{op_allocate, 12}, {op_allocate_evicting, 3}, {op_stage, 14}, {op_unstage, 2},
	{op_mutable_release, 3}, {op_complete_release, 3}, {op_register, 13},
	{op_retain, 4}, {op_release, 20}, {op_match, 8}, {op_scattered, 4},
	{op_contains, 3}, {op_downgrade, 3}, {op_upgrade, 4}, {op_set_ror, 2},
	{op_reset_inactive, 1}, {op_query, 2}, {op_stale, 4},
};

static void run_model(uint32_t nb, kvbm_evict_policy policy, kvbm_dup_policy dup, bool ror,
		      uint64_t seed, uint64_t n_ops)
{
	kvbm_config cfg;
	uint32_t total_weight = 0;

	memset(&M, 0, sizeof(M));
	kvbm_config_init(&cfg);
	cfg.block_count = nb;
	cfg.block_size = BS;
	cfg.evict_policy = policy;
	cfg.dup_policy = dup;
	cfg.reset_on_release = ror;
	M.mgr = kvbm_test_open_cfg(&cfg);
	M.nb = nb;
	M.lru = policy == KVBM_EVICT_LRU;
	M.reject = dup == KVBM_DUP_REJECT;
	M.ror_default = ror;
	M.seed = seed;
	M.rng = seed;
	for (uint32_t i = 0; i < NHASH; i++)
		M.registry[i] = -1;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		total_weight += ops[i].weight;

	for (M.op = 0; M.op < n_ops; M.op++) {
		/* Lean towards releases when many references are held, so
		 * the pool keeps cycling through eviction. */
		if (M.n_imm > 2 * M.nb && rnd(2)) {
			op_release();
		} else {
			uint32_t pick = rnd(total_weight);
			size_t i = 0;
			while (pick >= ops[i].weight)
				pick -= ops[i++].weight;
			ops[i].fn();
		}
		m_check_counts();
		if (M.op % 64 == 0)
			for (uint32_t b = 0; b < M.nb; b++)
				m_check_block(b);
		else
			m_check_block(rnd(M.nb));
	}
	print_message("model %s/%s%s nb=%u: %" PRIu64 " ops, %" PRIu64 " evictions, %" PRIu64
		      " exhausted, %" PRIu64 " hits, %" PRIu64 " dups, %" PRIu64
		      " dedups, %" PRIu64 " stale, %" PRIu64 " notfound\n",
		      kvbm_evict_policy_name(policy), M.reject ? "reject" : "allow",
		      ror ? "/reset-on-release" : "", nb, n_ops, M.stats[0], M.stats[1],
		      M.stats[2], M.stats[3], M.stats[4], M.stats[5], M.stats[6]);
	/* Every path was exercised, or the weights need a look. */
	assert_true(M.stats[0] > 0 && M.stats[1] > 0 && M.stats[2] > 0 && M.stats[5] > 0);
	assert_true(M.reject ? M.stats[4] > 0 : M.stats[3] > 0);
	/* Closing with whatever is still held is defined. */
	assert_int_equal(kvbm_close(M.mgr), KVBM_OK);
}

static uint64_t seed;
static uint64_t ops_per_run = 40000;

static void model__lru_allow(void **state)
{
	(void)state;
	run_model(16, KVBM_EVICT_LRU, KVBM_DUP_ALLOW, false, seed, ops_per_run);
}

static void model__lru_reject(void **state)
{
	(void)state;
	run_model(16, KVBM_EVICT_LRU, KVBM_DUP_REJECT, false, seed + 1, ops_per_run);
}

static void model__fifo_allow(void **state)
{
	(void)state;
	run_model(16, KVBM_EVICT_FIFO, KVBM_DUP_ALLOW, false, seed + 2, ops_per_run);
}

static void model__fifo_reject(void **state)
{
	(void)state;
	run_model(16, KVBM_EVICT_FIFO, KVBM_DUP_REJECT, false, seed + 3, ops_per_run);
}

static void model__small_pool_reset_on_release(void **state)
{
	(void)state;
	run_model(5, KVBM_EVICT_LRU, KVBM_DUP_ALLOW, true, seed + 4, ops_per_run);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(model__lru_allow),
		cmocka_unit_test(model__lru_reject),
		cmocka_unit_test(model__fifo_allow),
		cmocka_unit_test(model__fifo_reject),
		cmocka_unit_test(model__small_pool_reset_on_release),
	};
	const char *env = getenv("KVBM_MODEL_OPS");

	seed = kvbm_test_seed("model");
	if (env && *env)
		ops_per_run = strtoull(env, NULL, 0);
	return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
