/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: sequences of API calls on a small memory-only manager,
 * checked after every call against a shadow model that knows only what
 * the caller can know: the handles it holds, the hashes it registered, and
 * what kvbm_allocate_ex reported as evicted. From that alone the model
 * predicts the pool counts, which blocks are registered, what a match
 * returns, and that every consumed or forged handle gets KVBM_E_STALE.
 * The eviction order is the policy's business and is not modelled.
 *
 * Input: byte 0 block count (1..64), byte 1 policy and flags, then one
 * operation per byte with its arguments from the following bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kvbm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BLOCKS 64
#define MAX_REFS 256
#define MAX_DEAD 32
#define MAX_WEAK 16
#define MAX_SEQ 12
#define N_UNIVERSE 16

/* A broken invariant is a bug in the library: stop with a trap, which
 * libFuzzer reports as a crash and the corpus replay as a failed test. */
#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_api: %s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                                       \
			__builtin_trap();                                               \
		}                                                                       \
	} while (0)

/* Few distinct hashes make re-registration, duplicates and prefix hits
 * common; 0 and all-ones are legal hashes too. */
static const kvbm_hash universe[N_UNIVERSE] = {
	0,
	1,
	2,
	3,
	0x10,
	0x11,
	0xdeadbeef,
	0x9e3779b97f4a7c15ull,
	0x8000000000000000ull,
	0xffffffffffffffffull,
	0x0123456789abcdefull,
	0xfedcba9876543210ull,
	42,
	43,
	1u << 20,
	(1ull << 40) + 7,
};

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t get8(struct input *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

static uint32_t get32(struct input *in)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | get8(in);
	return v;
}

static kvbm_hash get_hash(struct input *in)
{
	const uint8_t b = get8(in);
	if (b < 0xf0)
		return universe[b % N_UNIVERSE];
	return (kvbm_hash)get32(in) << 32 | get32(in);
}

struct ref {
	kvbm_immutable h;
	kvbm_hash hash;
};

struct reg {
	kvbm_hash hash;
	uint32_t primary;
};

struct weak {
	kvbm_weak w;
	uint64_t reg_id; /* registration the weak handle was taken from */
};

struct model {
	kvbm_manager *mgr;
	uint32_t total, block_size;
	bool reject, reset_on_release;
	kvbm_evict_policy policy;

	kvbm_mutable mut[MAX_BLOCKS];
	uint32_t n_mut;
	kvbm_complete done[MAX_BLOCKS];
	kvbm_hash done_hash[MAX_BLOCKS];
	uint32_t n_done;
	struct ref refs[MAX_REFS];
	uint32_t n_refs;
	struct reg reg[MAX_BLOCKS]; /* hash -> primary, active or inactive */
	uint32_t n_reg;

	bool dup[MAX_BLOCKS];       /* block is a live duplicate */
	bool ror[MAX_BLOCKS];       /* block's reset-on-release flag */
	uint64_t reg_id[MAX_BLOCKS]; /* registration the block holds, 0 for none */
	uint64_t next_reg_id;

	struct weak weak[MAX_WEAK];
	uint32_t n_weak;
	kvbm_mutable dead_mut[MAX_DEAD];
	kvbm_complete dead_done[MAX_DEAD];
	kvbm_immutable dead_ref[MAX_DEAD];
	uint32_t n_dead_mut, n_dead_done, n_dead_ref;
};

static int find_reg(const struct model *m, kvbm_hash h)
{
	for (uint32_t i = 0; i < m->n_reg; i++)
		if (m->reg[i].hash == h)
			return (int)i;
	return -1;
}

static void drop_reg(struct model *m, int i)
{
	m->reg_id[m->reg[i].primary] = 0;
	m->reg[i] = m->reg[--m->n_reg];
}

/* A registered hash is active while any reference to its primary or to one
 * of its duplicates lives (a duplicate keeps its primary active). */
static bool active(const struct model *m, kvbm_hash h)
{
	for (uint32_t i = 0; i < m->n_refs; i++)
		if (m->refs[i].hash == h)
			return true;
	return false;
}

static uint32_t refs_on(const struct model *m, uint32_t block)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < m->n_refs; i++)
		n += m->refs[i].h.block == block;
	return n;
}

struct expect {
	uint32_t held, inactive, reset, registered, duplicate;
	bool held_by_ref[MAX_BLOCKS];
};

static void expected(const struct model *m, struct expect *e)
{
	memset(e, 0, sizeof(*e));
	for (uint32_t i = 0; i < m->n_refs; i++)
		e->held_by_ref[m->refs[i].h.block] = true;
	for (uint32_t i = 0; i < m->n_reg; i++) {
		if (active(m, m->reg[i].hash))
			e->held_by_ref[m->reg[i].primary] = true;
		else
			e->inactive++;
	}
	for (uint32_t b = 0; b < m->total; b++) {
		if (!e->held_by_ref[b])
			continue;
		e->held++;
		if (m->dup[b])
			e->duplicate++;
		else
			e->registered++;
	}
	e->held += m->n_mut + m->n_done;
	CHECK(e->held + e->inactive <= m->total);
	e->reset = m->total - e->held - e->inactive;
}

static void check_blocks(const struct model *m, const struct expect *e)
{
	kvbm_block_state want[MAX_BLOCKS];
	kvbm_hash want_hash[MAX_BLOCKS];

	for (uint32_t b = 0; b < m->total; b++) {
		want[b] = KVBM_BLOCK_RESET;
		want_hash[b] = 0;
	}
	for (uint32_t i = 0; i < m->n_reg; i++) {
		const uint32_t b = m->reg[i].primary;
		want[b] = e->held_by_ref[b] ? KVBM_BLOCK_REGISTERED : KVBM_BLOCK_INACTIVE;
		want_hash[b] = m->reg[i].hash;
	}
	for (uint32_t i = 0; i < m->n_refs; i++) {
		const uint32_t b = m->refs[i].h.block;
		want[b] = m->dup[b] ? KVBM_BLOCK_DUPLICATE : KVBM_BLOCK_REGISTERED;
		want_hash[b] = m->refs[i].hash;
	}
	for (uint32_t i = 0; i < m->n_mut; i++) {
		CHECK(want[m->mut[i].block] == KVBM_BLOCK_RESET);
		want[m->mut[i].block] = KVBM_BLOCK_MUTABLE;
	}
	for (uint32_t i = 0; i < m->n_done; i++) {
		CHECK(want[m->done[i].block] == KVBM_BLOCK_RESET);
		want[m->done[i].block] = KVBM_BLOCK_STAGED;
		want_hash[m->done[i].block] = m->done_hash[i];
	}
	for (uint32_t b = 0; b < m->total; b++) {
		kvbm_block_info info;
		CHECK(kvbm_block_info_read(m->mgr, b, &info) == KVBM_OK);
		CHECK(info.block == b);
		CHECK(info.state == want[b]);
		if (want[b] != KVBM_BLOCK_RESET && want[b] != KVBM_BLOCK_MUTABLE)
			CHECK(info.hash == want_hash[b]);
		if (want[b] == KVBM_BLOCK_DUPLICATE || want[b] == KVBM_BLOCK_REGISTERED)
			CHECK(info.ref_count == refs_on(m, b));
		if (want[b] == KVBM_BLOCK_INACTIVE || want[b] == KVBM_BLOCK_RESET)
			CHECK(info.ref_count == 0);
	}
	kvbm_block_info info;
	CHECK(kvbm_block_info_read(m->mgr, m->total, &info) == KVBM_E_INVAL);
}

static void check_all(const struct model *m)
{
	struct expect e;
	kvbm_pool_counts c;
	kvbm_metrics mt;

	expected(m, &e);
	CHECK(kvbm_pool_counts_read(m->mgr, &c) == KVBM_OK);
	CHECK(c.total == m->total);
	CHECK(c.reset + c.inactive + c.mutable_ + c.staged + c.registered + c.duplicate == c.total);
	CHECK(c.mutable_ == m->n_mut);
	CHECK(c.staged == m->n_done);
	CHECK(c.inactive == e.inactive);
	CHECK(c.reset == e.reset);
	CHECK(c.registered == e.registered);
	CHECK(c.duplicate == e.duplicate);
	CHECK(c.registry == m->n_reg);
	CHECK(kvbm_available_blocks(m->mgr) + e.held == m->total);
	CHECK(kvbm_metrics_read(m->mgr, &mt) == KVBM_OK);
	CHECK(mt.inflight_immutable == m->n_refs);
	CHECK(mt.inflight_mutable == m->n_mut + m->n_done);
	check_blocks(m, &e);

	bool present[N_UNIVERSE];
	uint32_t n_present = 0, prefix = 0, want_present = 0, want_prefix = 0;
	bool run = true;
	CHECK(kvbm_contains(m->mgr, universe, N_UNIVERSE, present, &n_present, &prefix) ==
	      KVBM_OK);
	for (uint32_t i = 0; i < N_UNIVERSE; i++) {
		const bool p = find_reg(m, universe[i]) >= 0;
		CHECK(present[i] == p);
		want_present += p;
		run = run && p;
		want_prefix += run;
	}
	CHECK(n_present == want_present && prefix == want_prefix);
}

/* ---- handle bookkeeping ---- */

static void kill_mut(struct model *m, uint32_t i)
{
	m->dead_mut[m->n_dead_mut++ % MAX_DEAD] = m->mut[i];
	m->mut[i] = m->mut[--m->n_mut];
}

static void kill_done(struct model *m, uint32_t i)
{
	m->dead_done[m->n_dead_done++ % MAX_DEAD] = m->done[i];
	m->done[i] = m->done[--m->n_done];
	m->done_hash[i] = m->done_hash[m->n_done];
}

static void add_ref(struct model *m, kvbm_immutable h, kvbm_hash hash)
{
	CHECK(m->n_refs < MAX_REFS);
	CHECK(h.gen != 0 && h.block < m->total);
	for (uint32_t i = 0; i < m->n_refs; i++)
		CHECK(m->refs[i].h.ref != h.ref || m->refs[i].h.gen != h.gen);
	m->refs[m->n_refs++] = (struct ref){h, hash};
}

/* The model's side of a successful release of refs[i]. */
static void released_ref(struct model *m, uint32_t i)
{
	const struct ref r = m->refs[i];

	m->dead_ref[m->n_dead_ref++ % MAX_DEAD] = r.h;
	m->refs[i] = m->refs[--m->n_refs];
	if (m->dup[r.h.block] && refs_on(m, r.h.block) == 0) {
		m->dup[r.h.block] = false;
		m->reg_id[r.h.block] = 0;
	}
	const int k = find_reg(m, r.hash);
	CHECK(k >= 0);
	if (!active(m, r.hash) && m->ror[m->reg[k].primary])
		drop_reg(m, k);
}

static bool is_live_mut(const struct model *m, kvbm_mutable h)
{
	for (uint32_t i = 0; i < m->n_mut; i++)
		if (m->mut[i].block == h.block && m->mut[i].gen == h.gen)
			return true;
	return false;
}

static bool is_live_done(const struct model *m, kvbm_complete h)
{
	for (uint32_t i = 0; i < m->n_done; i++)
		if (m->done[i].block == h.block && m->done[i].gen == h.gen)
			return true;
	return false;
}

static bool is_live_ref(const struct model *m, kvbm_immutable h)
{
	for (uint32_t i = 0; i < m->n_refs; i++)
		if (m->refs[i].h.block == h.block && m->refs[i].h.ref == h.ref &&
		    m->refs[i].h.gen == h.gen)
			return true;
	return false;
}

/* ---- operations ---- */

static void op_allocate(struct model *m, struct input *in)
{
	const uint8_t b = get8(in);
	const uint32_t n = b < 0xf0 ? 1 + b % 8 : 1 + b % 80;
	kvbm_mutable out[80];
	kvbm_hash evicted[80];
	uint32_t n_evicted = 0;
	struct expect e;

	expected(m, &e);
	const kvbm_status st = kvbm_allocate_ex(m->mgr, n, out, evicted, &n_evicted);
	/* vllm-arc refuses as vLLM's ARC does when its target names an empty
	 * list, with inactive blocks left (kvbm.h); nothing changes then. */
	const bool may_refuse = m->policy == KVBM_EVICT_VLLM_ARC && n > e.reset;
	if (n > e.reset + e.inactive || (may_refuse && st == KVBM_E_EXHAUSTED)) {
		CHECK(st == KVBM_E_EXHAUSTED);
		CHECK(n_evicted == 0);
		return;
	}
	CHECK(st == KVBM_OK);
	/* Reset blocks go first; only the rest comes from eviction. */
	CHECK(n_evicted == (n > e.reset ? n - e.reset : 0));
	for (uint32_t i = 0; i < n_evicted; i++) {
		const int k = find_reg(m, evicted[i]);
		CHECK(k >= 0);
		CHECK(!active(m, evicted[i]));
		drop_reg(m, k);
	}
	for (uint32_t i = 0; i < n; i++) {
		CHECK(out[i].gen != 0 && out[i].block < m->total);
		CHECK(m->n_mut < MAX_BLOCKS);
		m->ror[out[i].block] = m->reset_on_release;
		m->mut[m->n_mut++] = out[i];
	}
}

static void op_stage(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in), how = get8(in);
	const kvbm_hash h = get_hash(in);
	kvbm_complete out;

	if (m->n_mut == 0)
		return;
	const uint32_t i = sel % m->n_mut;
	const uint32_t tokens = how & 0x80 ? m->block_size + 1 : m->block_size;
	kvbm_status st;
	if (how & 0x40) {
		const kvbm_hash parent = universe[how % N_UNIVERSE];
		st = kvbm_stage_lineage(m->mgr, m->mut[i], h, parent, how & 7, tokens, &out);
	} else {
		st = kvbm_stage(m->mgr, m->mut[i], h, tokens, &out);
	}
	if (tokens != m->block_size) {
		CHECK(st == KVBM_E_SIZE);
		return;
	}
	CHECK(st == KVBM_OK);
	CHECK(out.block == m->mut[i].block && out.gen != 0);
	kill_mut(m, i);
	m->done[m->n_done] = out;
	m->done_hash[m->n_done++] = h;
}

static void op_unstage(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in);
	kvbm_mutable out;

	if (m->n_done == 0)
		return;
	const uint32_t i = sel % m->n_done;
	CHECK(kvbm_unstage(m->mgr, m->done[i], &out) == KVBM_OK);
	CHECK(out.block == m->done[i].block && out.gen != 0);
	kill_done(m, i);
	m->mut[m->n_mut++] = out;
}

static void op_release_mut(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in);

	if (m->n_mut == 0)
		return;
	const uint32_t i = sel % m->n_mut;
	CHECK(kvbm_mutable_release(m->mgr, m->mut[i]) == KVBM_OK);
	kill_mut(m, i);
}

static void op_release_done(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in);

	if (m->n_done == 0)
		return;
	const uint32_t i = sel % m->n_done;
	CHECK(kvbm_complete_release(m->mgr, m->done[i]) == KVBM_OK);
	kill_done(m, i);
}

/* The model's side of registering done[i] as out. */
static void registered(struct model *m, kvbm_complete c, kvbm_hash h, kvbm_immutable out)
{
	const int k = find_reg(m, h);

	if (k < 0) {
		CHECK(out.block == c.block);
		CHECK(m->n_reg < MAX_BLOCKS);
		m->reg[m->n_reg++] = (struct reg){h, c.block};
		m->reg_id[c.block] = ++m->next_reg_id;
	} else if (m->reject) {
		CHECK(out.block == m->reg[k].primary);
	} else {
		CHECK(out.block == c.block && out.block != m->reg[k].primary);
		m->dup[c.block] = true;
		m->reg_id[c.block] = ++m->next_reg_id;
	}
	add_ref(m, out, h);
}

static void op_register(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in);
	kvbm_immutable out;

	if (m->n_done == 0 || m->n_refs >= MAX_REFS)
		return;
	const uint32_t i = sel % m->n_done;
	const kvbm_complete c = m->done[i];
	const kvbm_hash h = m->done_hash[i];
	CHECK(kvbm_register(m->mgr, c, &out) == KVBM_OK);
	kill_done(m, i);
	registered(m, c, h, out);
}

/* A batch of complete handles, sometimes with a repeated or consumed one,
 * which must fail the whole batch and change nothing. */
static void op_register_batch(struct model *m, struct input *in)
{
	const uint8_t b = get8(in);
	kvbm_complete batch[8];
	kvbm_hash hashes[8];
	kvbm_immutable out[8];
	uint32_t idx[8];

	if (m->n_done == 0 || m->n_refs + 8 > MAX_REFS)
		return;
	uint32_t n = 1 + b % 8;
	if (n > m->n_done)
		n = m->n_done;
	/* A prefix of a rotation of the live handles: distinct. */
	for (uint32_t k = 0; k < n; k++) {
		idx[k] = (b + k) % m->n_done;
		batch[k] = m->done[idx[k]];
		hashes[k] = m->done_hash[idx[k]];
	}
	bool bad = false;
	if (b & 0x80) {
		batch[n - 1] = batch[0]; /* named twice */
		bad = n > 1;
	} else if ((b & 0x40) && m->n_dead_done > 0) {
		batch[n - 1] = m->dead_done[b % (m->n_dead_done < MAX_DEAD ? m->n_dead_done : MAX_DEAD)];
		bad = true;
	}
	if (bad) {
		CHECK(kvbm_register_batch(m->mgr, batch, n, out) == KVBM_E_STALE);
		return;
	}
	CHECK(kvbm_register_batch(m->mgr, batch, n, out) == KVBM_OK);
	/* Kill in descending index order so earlier indexes stay put. */
	for (uint32_t k = 0; k < n; k++) {
		uint32_t hi = 0;
		for (uint32_t j = 1; j < n - k; j++)
			if (idx[j] > idx[hi])
				hi = j;
		kill_done(m, idx[hi]);
		idx[hi] = idx[n - k - 1];
	}
	for (uint32_t k = 0; k < n; k++)
		registered(m, batch[k], hashes[k], out[k]);
}

static void op_retain(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in);
	kvbm_immutable out;
	uint32_t count;
	kvbm_hash h;

	if (m->n_refs == 0 || m->n_refs >= MAX_REFS)
		return;
	const struct ref r = m->refs[sel % m->n_refs];
	CHECK(kvbm_immutable_ref_count(m->mgr, r.h, &count) == KVBM_OK);
	CHECK(count == refs_on(m, r.h.block));
	CHECK(kvbm_immutable_hash(m->mgr, r.h, &h) == KVBM_OK && h == r.hash);
	CHECK(kvbm_immutable_retain(m->mgr, r.h, &out) == KVBM_OK);
	CHECK(out.block == r.h.block);
	add_ref(m, out, r.hash);
}

static void op_release_ref(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in);

	if (m->n_refs == 0)
		return;
	const uint32_t i = sel % m->n_refs;
	CHECK(kvbm_immutable_release(m->mgr, m->refs[i].h) == KVBM_OK);
	released_ref(m, i);
}

/* Release a few live references with a stale one in the middle: the stale
 * one is reported, the live ones are still released. */
static void op_release_batch(struct model *m, struct input *in)
{
	const uint8_t b = get8(in);
	kvbm_immutable batch[5];
	uint32_t n = 0;

	if (m->n_refs < 2)
		return;
	const uint32_t i = b % m->n_refs, j = (b / 7 + 1 + i) % m->n_refs;
	if (i == j)
		return;
	batch[n++] = m->refs[i].h;
	batch[n++] = (kvbm_immutable){0}; /* empty entries are skipped */
	const bool with_stale = m->n_dead_ref > 0 && (b & 1);
	if (with_stale)
		batch[n++] = m->dead_ref[b % (m->n_dead_ref < MAX_DEAD ? m->n_dead_ref : MAX_DEAD)];
	batch[n++] = m->refs[j].h;
	if (b & 2)
		batch[n++] = m->refs[i].h; /* released twice in one batch */
	const bool stale = with_stale || (b & 2);
	CHECK(kvbm_immutable_release_batch(m->mgr, batch, n) ==
	      (stale ? KVBM_E_STALE : KVBM_OK));
	released_ref(m, i > j ? i : j);
	released_ref(m, i > j ? j : i);
}

static void op_downgrade(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in);
	kvbm_weak w;

	if (m->n_refs == 0)
		return;
	const struct ref r = m->refs[sel % m->n_refs];
	CHECK(kvbm_downgrade(m->mgr, r.h, &w) == KVBM_OK);
	CHECK(w.block == r.h.block && w.hash == r.hash && w.epoch != 0);
	CHECK(m->reg_id[r.h.block] != 0);
	const struct weak wk = {w, m->reg_id[r.h.block]};
	if (m->n_weak < MAX_WEAK)
		m->weak[m->n_weak++] = wk;
	else
		m->weak[sel % MAX_WEAK] = wk;
}

static void op_upgrade(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in);
	kvbm_immutable out;

	if (m->n_weak == 0 || m->n_refs >= MAX_REFS)
		return;
	const struct weak wk = m->weak[sel % m->n_weak];
	const kvbm_status st = kvbm_weak_upgrade(m->mgr, wk.w, &out);
	const int k = find_reg(m, wk.w.hash);
	if (m->reg_id[wk.w.block] == wk.reg_id) {
		CHECK(st == KVBM_OK && out.block == wk.w.block);
	} else if (k >= 0) {
		CHECK(st == KVBM_OK && out.block == m->reg[k].primary);
	} else {
		CHECK(st == KVBM_E_NOTFOUND);
		return;
	}
	add_ref(m, out, wk.w.hash);
}

static uint32_t get_seq(struct input *in, kvbm_hash *seq)
{
	const uint32_t n = get8(in) % (MAX_SEQ + 1);
	for (uint32_t i = 0; i < n; i++)
		seq[i] = get_hash(in);
	return n;
}

static void op_match(struct model *m, struct input *in)
{
	kvbm_hash seq[MAX_SEQ];
	kvbm_immutable out[MAX_SEQ];
	uint32_t matched = UINT32_MAX, want = 0;
	const uint32_t n = get_seq(in, seq);

	if (m->n_refs + n > MAX_REFS)
		return;
	while (want < n && find_reg(m, seq[want]) >= 0)
		want++;
	CHECK(kvbm_match(m->mgr, seq, n, out, &matched) == KVBM_OK);
	CHECK(matched == want);
	for (uint32_t i = 0; i < matched; i++) {
		CHECK(out[i].block == m->reg[find_reg(m, seq[i])].primary);
		add_ref(m, out[i], seq[i]);
	}
}

static void op_match_scattered(struct model *m, struct input *in)
{
	kvbm_hash seq[MAX_SEQ];
	kvbm_immutable out[MAX_SEQ];
	uint32_t found = UINT32_MAX, want = 0;
	const uint32_t n = get_seq(in, seq);

	if (m->n_refs + n > MAX_REFS)
		return;
	CHECK(kvbm_match_scattered(m->mgr, seq, n, out, &found) == KVBM_OK);
	for (uint32_t i = 0; i < n; i++) {
		const int k = find_reg(m, seq[i]);
		if (k < 0) {
			CHECK(out[i].gen == 0);
			continue;
		}
		want++;
		CHECK(out[i].block == m->reg[k].primary);
		add_ref(m, out[i], seq[i]);
	}
	CHECK(found == want);
}

static void op_contains(struct model *m, struct input *in)
{
	kvbm_hash seq[MAX_SEQ];
	bool present[MAX_SEQ];
	uint32_t n_present, prefix, want = 0, run = 0;
	const uint32_t n = get_seq(in, seq);

	CHECK(kvbm_contains(m->mgr, seq, n, present, &n_present, &prefix) == KVBM_OK);
	for (uint32_t i = 0; i < n; i++) {
		const bool p = find_reg(m, seq[i]) >= 0;
		CHECK(present[i] == p);
		want += p;
		if (run == i && p)
			run++;
	}
	CHECK(n_present == want && prefix == run);
}

/* A preview lists min(k, inactive) distinct cached, unreferenced blocks,
 * says the same twice, and (when no free block goes first) names exactly
 * what the next allocation evicts. */
static void op_preview(struct model *m, struct input *in)
{
	const uint8_t b = get8(in);
	const uint32_t k = 1 + b % 16;
	kvbm_victim v[16], again[16];
	uint32_t got = 99, got2 = 99;
	struct expect e;

	expected(m, &e);
	const kvbm_status st = kvbm_peek_victims(m->mgr, k, v, &got);
	if (m->policy == KVBM_EVICT_LINEAGE || m->policy == KVBM_EVICT_S3FIFO ||
	    m->policy == KVBM_EVICT_VLLM_ARC) {
		CHECK(st == KVBM_E_UNSUPPORTED && got == 0);
		return;
	}
	CHECK(st == KVBM_OK);
	CHECK(got == (k < e.inactive ? k : e.inactive));
	CHECK(kvbm_peek_victims(m->mgr, k, again, &got2) == KVBM_OK && got2 == got);
	CHECK(memcmp(v, again, got * sizeof(*v)) == 0);
	for (uint32_t i = 0; i < got; i++) {
		CHECK(find_reg(m, v[i].hash) >= 0 && !active(m, v[i].hash));
		for (uint32_t j = 0; j < i; j++)
			CHECK(v[j].block != v[i].block);
	}
	if (!(b & 0x80) || e.reset > 0 || got == 0)
		return;
	kvbm_mutable out[16];
	kvbm_hash evicted[16];
	uint32_t n_evicted = 0;
	CHECK(kvbm_allocate_ex(m->mgr, got, out, evicted, &n_evicted) == KVBM_OK);
	CHECK(n_evicted == got);
	for (uint32_t i = 0; i < got; i++) {
		CHECK(evicted[i] == v[i].hash && out[i].block == v[i].block);
		drop_reg(m, find_reg(m, evicted[i]));
		CHECK(m->n_mut < MAX_BLOCKS);
		m->ror[out[i].block] = m->reset_on_release;
		m->mut[m->n_mut++] = out[i];
	}
}

static void op_set_flags(struct model *m, struct input *in)
{
	const uint8_t sel = get8(in), prio = get8(in);
	const uint32_t retention = get8(in);

	if (m->n_refs == 0)
		return;
	const struct ref r = m->refs[sel % m->n_refs];
	const uint32_t priority = prio % 128;
	CHECK(kvbm_immutable_set_priority(m->mgr, r.h, priority, retention) ==
	      (priority > 100 ? KVBM_E_INVAL : KVBM_OK));
	if (prio & 0x80) {
		const bool reset = retention & 1;
		CHECK(kvbm_immutable_set_reset_on_release(m->mgr, r.h, reset) == KVBM_OK);
		m->ror[r.h.block] = reset;
	}
}

static void op_reset_inactive(struct model *m)
{
	uint32_t dropped = UINT32_MAX, want = 0;

	CHECK(kvbm_reset_inactive(m->mgr, &dropped) == KVBM_OK);
	for (uint32_t i = m->n_reg; i-- > 0;) {
		if (!active(m, m->reg[i].hash)) {
			drop_reg(m, (int)i);
			want++;
		}
	}
	CHECK(dropped == want);
}

/* Consumed, released and forged handles: every call refuses them with
 * KVBM_E_STALE and changes nothing. */
static void op_stale(struct model *m, struct input *in)
{
	const uint8_t what = get8(in), sel = get8(in);
	kvbm_mutable mo;
	kvbm_complete co;
	kvbm_immutable io;
	kvbm_weak wo;
	kvbm_hash h;
	uint32_t cnt;

	switch (what % 4) {
	case 0: {
		if (m->n_dead_mut == 0)
			return;
		const kvbm_mutable d = m->dead_mut[sel % (m->n_dead_mut < MAX_DEAD ? m->n_dead_mut : MAX_DEAD)];
		CHECK(!is_live_mut(m, d));
		CHECK(kvbm_mutable_release(m->mgr, d) == KVBM_E_STALE);
		CHECK(kvbm_stage(m->mgr, d, 1, m->block_size, &co) == KVBM_E_STALE);
		break;
	}
	case 1: {
		if (m->n_dead_done == 0)
			return;
		const kvbm_complete d = m->dead_done[sel % (m->n_dead_done < MAX_DEAD ? m->n_dead_done : MAX_DEAD)];
		CHECK(!is_live_done(m, d));
		CHECK(kvbm_complete_release(m->mgr, d) == KVBM_E_STALE);
		CHECK(kvbm_unstage(m->mgr, d, &mo) == KVBM_E_STALE);
		CHECK(kvbm_register(m->mgr, d, &io) == KVBM_E_STALE);
		break;
	}
	case 2: {
		if (m->n_dead_ref == 0)
			return;
		const kvbm_immutable d = m->dead_ref[sel % (m->n_dead_ref < MAX_DEAD ? m->n_dead_ref : MAX_DEAD)];
		CHECK(!is_live_ref(m, d));
		CHECK(kvbm_immutable_release(m->mgr, d) == KVBM_E_STALE);
		CHECK(kvbm_immutable_retain(m->mgr, d, &io) == KVBM_E_STALE);
		CHECK(kvbm_downgrade(m->mgr, d, &wo) == KVBM_E_STALE);
		CHECK(kvbm_immutable_hash(m->mgr, d, &h) == KVBM_E_STALE);
		CHECK(kvbm_immutable_ref_count(m->mgr, d, &cnt) == KVBM_E_STALE);
		CHECK(kvbm_immutable_set_priority(m->mgr, d, 50, 0) == KVBM_E_STALE);
		CHECK(kvbm_immutable_set_reset_on_release(m->mgr, d, true) == KVBM_E_STALE);
		break;
	}
	default: {
		/* Forged from input bytes: stale unless it happens to be live. */
		const uint32_t block = get32(in), ref = get32(in), gen = get32(in);
		const kvbm_mutable fm = {block, gen};
		const kvbm_complete fc = {block, gen};
		const kvbm_immutable fi = {block, ref, gen};
		if (gen == 0) {
			CHECK(kvbm_mutable_release(m->mgr, fm) == KVBM_OK);
			CHECK(kvbm_complete_release(m->mgr, fc) == KVBM_OK);
			CHECK(kvbm_immutable_release(m->mgr, fi) == KVBM_OK);
			CHECK(kvbm_immutable_retain(m->mgr, fi, &io) == KVBM_E_STALE);
			break;
		}
		if (!is_live_mut(m, fm))
			CHECK(kvbm_mutable_release(m->mgr, fm) == KVBM_E_STALE);
		if (!is_live_done(m, fc))
			CHECK(kvbm_complete_release(m->mgr, fc) == KVBM_E_STALE);
		if (!is_live_ref(m, fi)) {
			CHECK(kvbm_immutable_release(m->mgr, fi) == KVBM_E_STALE);
			CHECK(kvbm_downgrade(m->mgr, fi, &wo) == KVBM_E_STALE);
		}
		const kvbm_weak fw = {block, ref, (kvbm_hash)gen};
		const kvbm_status st = kvbm_weak_upgrade(m->mgr, fw, &io);
		if (ref == 0) {
			CHECK(st == KVBM_E_INVAL);
		} else if (st == KVBM_OK) {
			/* The forged weak named a registered hash after all. */
			const int k = find_reg(m, fw.hash);
			CHECK(k >= 0 || m->reg_id[block % m->total] != 0);
			CHECK(kvbm_immutable_release(m->mgr, io) == KVBM_OK);
			if (k >= 0 && !active(m, fw.hash) && m->ror[m->reg[k].primary])
				drop_reg(m, k);
		} else {
			CHECK(st == KVBM_E_NOTFOUND);
		}
		break;
	}
	}
}

/* Arguments the API must refuse without touching anything. */
static void op_invalid(struct model *m)
{
	kvbm_mutable mo[1];
	kvbm_immutable io;
	uint32_t cnt;
	char msg[8];
	kvbm_status code;

	CHECK(kvbm_allocate(m->mgr, 0, mo) == KVBM_E_INVAL);
	CHECK(kvbm_allocate(m->mgr, 1, NULL) == KVBM_E_INVAL);
	CHECK(kvbm_match(m->mgr, NULL, 1, &io, &cnt) == KVBM_E_INVAL);
	CHECK(kvbm_match(m->mgr, universe, 0, NULL, &cnt) == KVBM_OK && cnt == 0);
	CHECK(kvbm_weak_upgrade(m->mgr, (kvbm_weak){0}, &io) == KVBM_E_INVAL);
	CHECK(kvbm_register_batch(m->mgr, NULL, 0, &io) == KVBM_E_INVAL);
	CHECK(kvbm_last_error(m->mgr, &code, msg, sizeof(msg)) == KVBM_OK);
	CHECK(code == KVBM_E_INVAL && strlen(msg) < sizeof(msg));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct model m;
	struct input in = {data, size};
	kvbm_config cfg;

	if (size < 2)
		return 0;
	memset(&m, 0, sizeof(m));
	const uint8_t b0 = get8(&in), b1 = get8(&in);
	kvbm_config_init(&cfg);
	cfg.block_count = 1 + b0 % MAX_BLOCKS;
	cfg.block_size = 1u << (b0 >> 6); /* 1, 2, 4 or 8 tokens */
	cfg.evict_policy = (kvbm_evict_policy)(b1 % KVBM_EVICT_COUNT);
	cfg.dup_policy = (b1 >> 3) & 1 ? KVBM_DUP_REJECT : KVBM_DUP_ALLOW;
	cfg.reset_on_release = (b1 >> 4) & 1;
	kvbm_status st = kvbm_open(&cfg, &m.mgr);
	if (st != KVBM_OK) {
		/* Policies still being written are not built in yet. */
		CHECK(st == KVBM_E_INVAL || st == KVBM_E_UNSUPPORTED);
		cfg.evict_policy = KVBM_EVICT_LRU;
		CHECK(kvbm_open(&cfg, &m.mgr) == KVBM_OK);
	}
	m.total = cfg.block_count;
	m.block_size = cfg.block_size;
	m.reject = cfg.dup_policy == KVBM_DUP_REJECT;
	m.reset_on_release = cfg.reset_on_release;
	m.policy = cfg.evict_policy;
	CHECK(kvbm_total_blocks(m.mgr) == m.total && kvbm_block_size(m.mgr) == m.block_size);
	check_all(&m);

	while (in.n > 0) {
		switch (get8(&in) % 20) {
		case 0:
		case 1: op_allocate(&m, &in); break;
		case 2:
		case 3: op_stage(&m, &in); break;
		case 4: op_unstage(&m, &in); break;
		case 5: op_release_mut(&m, &in); break;
		case 6: op_release_done(&m, &in); break;
		case 7:
		case 8: op_register(&m, &in); break;
		case 9: op_register_batch(&m, &in); break;
		case 10: op_retain(&m, &in); break;
		case 11:
		case 12: op_release_ref(&m, &in); break;
		case 13: op_release_batch(&m, &in); break;
		case 14: op_downgrade(&m, &in); break;
		case 15: op_upgrade(&m, &in); break;
		case 16: op_match(&m, &in); break;
		case 17: op_match_scattered(&m, &in); break;
		case 18: op_contains(&m, &in); break;
		default: {
			const uint8_t sub = get8(&in);
			if (sub < 0x40)
				op_set_flags(&m, &in);
			else if (sub < 0x60)
				op_preview(&m, &in);
			else if (sub < 0xc0)
				op_stale(&m, &in);
			else if (sub < 0xf0)
				op_invalid(&m);
			else
				op_reset_inactive(&m);
			break;
		}
		}
		check_all(&m);
	}
	/* Closing with handles still held is defined: nothing may leak. */
	CHECK(kvbm_close(m.mgr) == KVBM_OK);
	return 0;
}
