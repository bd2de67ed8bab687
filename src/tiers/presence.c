/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The presence index: the registry's table (open addressing, linear
 * probing, Fibonacci hashing, backward-shift deletion, load at most 1/2)
 * with a tier mask where the registry keeps a block id. An entry whose
 * mask falls to 0 is deleted, so the index holds at most one entry per
 * block of the member tiers and never fills.
 *
 * Synchronisation. Writers are the member tiers, each under its own
 * manager lock, so up to KVBM_TIERS_MAX of them at once; readers are
 * lookups, which must not slow them down. The table is cut into stripes
 * of STRIPE slots, each with a sequence counter that is both a writer's
 * spinlock (odd while held) and a seqlock for readers. A writer locks
 * every stripe of the probe run it works in (home slot to the first empty
 * slot: everything an insertion or a backward shift can touch), in
 * ascending stripe order, so writers never deadlock; a run that wraps
 * past the last stripe is relocked from stripe 0. A reader records the
 * counter of each stripe it reads, reads the slots, and retries if any
 * counter was odd or has moved: since a writer holds all its stripes for
 * its whole change, an unchanged set of counters means the run was read
 * in one state, and the answer is that hash's entry at one instant. All
 * shared accesses are atomic, so the C11 model, and TSan, see no race.
 * Slot stores are release and slot loads acquire rather than relaxed
 * between fences (TSan does not model fences): a reader that loads a
 * value a writer stored then sees the writer's odd counter at its second
 * reading. On x86 both are plain moves.
 */
#include <sched.h>
#include <stdlib.h>

#include "presence.h"
#include "table_alloc.h"

/* Slots per stripe: 16 KiB of entries. Small enough that two tiers'
 * writers rarely meet on one (a 1M + 1M index has 4,096 stripes), large
 * enough that a probe run at load 1/2 (a few slots) seldom spans two, and
 * that the counters (4 bytes a stripe) stay in a reader's L1/L2. */
#define STRIPE_BITS 10u
/* Stripes a lock-free read records; a longer run (never seen at load 1/2
 * with well-spread hashes) is read under the writers' locks instead. */
#define READ_STRIPES 4u
/* Hashes whose slots a lookup prefetches at once: their misses overlap. */
#define BATCH 32u

static uint64_t capacity_for(uint64_t max_entries, uint32_t *bits)
{
	uint64_t cap = 16;

	*bits = 4;
	while (cap < 2 * max_entries) {
		cap <<= 1;
		++*bits;
	}
	return cap;
}

kvbm_status kvbm__presence_new(uint64_t max_entries, struct kvbm__presence **out)
{
	struct kvbm__presence *p = calloc(1, sizeof(*p));
	uint32_t bits;
	const uint64_t cap = capacity_for(max_entries, &bits);

	*out = NULL;
	if (!p)
		return KVBM_E_NOMEM;
	p->stripe_bits = bits < STRIPE_BITS ? bits : STRIPE_BITS;
	p->stripes = (uint32_t)(cap >> p->stripe_bits);
	/* Zeroed memory is an empty index (mask 0) with every stripe free. */
	p->slots = kvbm__table_alloc(cap * sizeof(*p->slots));
	p->seq = calloc(p->stripes, sizeof(*p->seq));
	if (!p->slots || !p->seq) {
		kvbm__table_free(p->slots, cap * sizeof(*p->slots));
		free(p->seq);
		free(p);
		return KVBM_E_NOMEM;
	}
	p->mask = cap - 1;
	p->shift = 64 - bits;
	*out = p;
	return KVBM_OK;
}

void kvbm__presence_free(struct kvbm__presence *p)
{
	if (!p)
		return;
	kvbm__table_free(p->slots, (p->mask + 1) * sizeof(*p->slots));
	free(p->seq);
	free(p);
}

static inline uint32_t stripe_of(const struct kvbm__presence *p, uint64_t slot)
{
	return (uint32_t)(slot >> p->stripe_bits);
}

static inline void cpu_relax(unsigned *spins)
{
	/* A holder descheduled on a 2-core machine would otherwise be spun
	 * on for a whole time slice. */
	if (++*spins % 64 == 0)
		sched_yield();
#if defined(__x86_64__) || defined(__i386__)
	else
		__builtin_ia32_pause();
#endif
}

static void stripe_lock(struct kvbm__presence *p, uint32_t s)
{
	uint32_t *seq = &p->seq[s];

	for (unsigned spins = 0;; cpu_relax(&spins)) {
		uint32_t v = __atomic_load_n(seq, __ATOMIC_RELAXED);
		if (!(v & 1) && __atomic_compare_exchange_n(seq, &v, v + 1, false, __ATOMIC_ACQUIRE,
							    __ATOMIC_RELAXED))
			break;
	}
}

static void stripe_unlock(struct kvbm__presence *p, uint32_t s)
{
	__atomic_store_n(&p->seq[s], __atomic_load_n(&p->seq[s], __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELEASE);
}

/* Lock n stripes from first on (cyclically), in ascending index order. */
static void lock_range(struct kvbm__presence *p, uint32_t first, uint32_t n)
{
	const uint32_t end = first + n;

	for (uint32_t s = 0; end > p->stripes && s < end - p->stripes; s++)
		stripe_lock(p, s);
	for (uint32_t s = first; s < end && s < p->stripes; s++)
		stripe_lock(p, s);
}

static void unlock_range(struct kvbm__presence *p, uint32_t first, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		stripe_unlock(p, (first + k) % p->stripes);
}

static inline uint32_t load_mask(const struct kvbm__presence_entry *e)
{
	return __atomic_load_n(&e->mask, __ATOMIC_ACQUIRE);
}

static inline kvbm_hash load_hash(const struct kvbm__presence_entry *e)
{
	return __atomic_load_n(&e->hash, __ATOMIC_ACQUIRE);
}

/* A slot store after the stripe's counter went odd (see the top). */
static inline void store_mask(struct kvbm__presence_entry *e, uint32_t m)
{
	__atomic_store_n(&e->mask, m, __ATOMIC_RELEASE);
}

static inline void store_hash(struct kvbm__presence_entry *e, kvbm_hash h)
{
	__atomic_store_n(&e->hash, h, __ATOMIC_RELEASE);
}

/* The probe run of hash, locked: every stripe from its home slot to the
 * first empty slot after it is held (the caller unlocks *n from *first).
 * *found is the slot holding hash, or UINT64_MAX; *empty the run's end. */
static void lock_run(struct kvbm__presence *p, kvbm_hash hash, uint32_t *first, uint32_t *n,
		     uint64_t *found, uint64_t *empty)
{
	const uint64_t home = kvbm__presence_home(p, hash);
	const uint32_t f = stripe_of(p, home);
	uint32_t k = 1;

	lock_range(p, f, k);
	for (;;) {
		const uint64_t stripe_mask = ((uint64_t)1 << p->stripe_bits) - 1;
		uint64_t i = home;
		uint32_t off = 0; /* stripes of the run before i's */
		*found = UINT64_MAX;
		for (;; i = (i + 1) & p->mask) {
			if ((i & stripe_mask) == 0 && i != home && ++off == k && k < p->stripes) {
				/* The run goes on into a stripe not held. */
				if (f + k < p->stripes) {
					stripe_lock(p, f + k);
					k++;
				} else {
					/* Taking stripe 0 after higher ones could
					 * deadlock with a writer going up from 0:
					 * relock in order and read the run again. */
					unlock_range(p, f, k);
					k++;
					lock_range(p, f, k);
					break;
				}
			}
			const struct kvbm__presence_entry *e = &p->slots[i];
			if (!load_mask(e)) {
				*first = f;
				*n = k;
				*empty = i;
				return;
			}
			if (*found == UINT64_MAX && load_hash(e) == hash)
				*found = i;
		}
	}
}

void kvbm__presence_set(struct kvbm__presence *p, kvbm_hash hash, uint32_t bit)
{
	uint32_t first, n;
	uint64_t found, empty;

	lock_run(p, hash, &first, &n, &found, &empty);
	if (found != UINT64_MAX) {
		struct kvbm__presence_entry *e = &p->slots[found];
		store_mask(e, load_mask(e) | (1u << bit));
	} else {
		struct kvbm__presence_entry *e = &p->slots[empty];
		store_hash(e, hash);
		store_mask(e, 1u << bit);
	}
	unlock_range(p, first, n);
}

void kvbm__presence_clear(struct kvbm__presence *p, kvbm_hash hash, uint32_t bit)
{
	uint32_t first, n;
	uint64_t found, empty;

	lock_run(p, hash, &first, &n, &found, &empty);
	if (found == UINT64_MAX) {
		unlock_range(p, first, n);
		return;
	}
	const uint32_t left = load_mask(&p->slots[found]) & ~(1u << bit);
	if (left) {
		store_mask(&p->slots[found], left);
		unlock_range(p, first, n);
		return;
	}
	/* Backward shift, as the registry's: only slots up to `empty` move,
	 * all in locked stripes. */
	uint64_t hole = found;
	for (uint64_t j = (found + 1) & p->mask; j != empty; j = (j + 1) & p->mask) {
		const struct kvbm__presence_entry *e = &p->slots[j];
		const kvbm_hash hj = load_hash(e);
		const uint64_t h = kvbm__presence_home(p, hj);
		if (((j - h) & p->mask) >= ((j - hole) & p->mask)) {
			store_hash(&p->slots[hole], hj);
			store_mask(&p->slots[hole], load_mask(e));
			hole = j;
		}
	}
	store_mask(&p->slots[hole], 0);
	unlock_range(p, first, n);
}

/* A read too long for the lock-free path: under the writers' locks. */
static uint32_t read_locked(struct kvbm__presence *p, kvbm_hash hash)
{
	uint32_t first, n;
	uint64_t found, empty;

	lock_run(p, hash, &first, &n, &found, &empty);
	const uint32_t m = found == UINT64_MAX ? 0 : load_mask(&p->slots[found]);
	unlock_range(p, first, n);
	return m;
}

static uint32_t read_mask(struct kvbm__presence *p, kvbm_hash hash)
{
	const uint64_t home = kvbm__presence_home(p, hash);
	const uint64_t stripe_mask = ((uint64_t)1 << p->stripe_bits) - 1;
	uint32_t seen[READ_STRIPES], at[READ_STRIPES];
	unsigned spins = 0;

	for (;; cpu_relax(&spins)) {
		uint32_t k = 0, m = 0;
		uint64_t i = home;
		bool busy = false;
		at[0] = stripe_of(p, home);
		seen[0] = __atomic_load_n(&p->seq[at[0]], __ATOMIC_ACQUIRE);
		if (seen[0] & 1)
			continue;
		for (k = 1;; i = (i + 1) & p->mask) {
			if ((i & stripe_mask) == 0 && i != home) {
				if (k == READ_STRIPES)
					return read_locked(p, hash);
				at[k] = stripe_of(p, i);
				seen[k] = __atomic_load_n(&p->seq[at[k]], __ATOMIC_ACQUIRE);
				if (seen[k++] & 1) {
					busy = true;
					break;
				}
			}
			const struct kvbm__presence_entry *e = &p->slots[i];
			const uint32_t em = load_mask(e);
			if (!em)
				break;
			if (load_hash(e) == hash) {
				m = em;
				break;
			}
		}
		if (busy)
			continue;
		/* The slot loads were acquire: the counters read now are at
		 * least as new as any writer whose stores they saw. */
		bool same = true;
		for (uint32_t j = 0; j < k; j++)
			same = same && __atomic_load_n(&p->seq[at[j]], __ATOMIC_RELAXED) == seen[j];
		if (same)
			return m;
	}
}

void kvbm__presence_lookup(struct kvbm__presence *p, const kvbm_hash *hashes, uint32_t n,
			   uint8_t *masks)
{
	for (uint32_t i = 0; i < n; i += BATCH) {
		const uint32_t len = n - i < BATCH ? n - i : BATCH;
		for (uint32_t j = 0; j < len; j++)
			__builtin_prefetch(&p->slots[kvbm__presence_home(p, hashes[i + j])]);
		for (uint32_t j = 0; j < len; j++)
			masks[i + j] = (uint8_t)read_mask(p, hashes[i + j]);
	}
}
