/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A compact tagged ghost: "was this hash evicted among about the last
 * `span` evictions, and from which of two lists?", for the adaptive
 * policy, which asks it on every new block and tells it every eviction.
 *
 * Why not evict_ghost.h: that table spends 8 bytes per entry (a 32-bit
 * fingerprint and a 32-bit stamp) at half load, 16 bytes per remembered
 * hash: for a ghost of 8 x 64k blocks an 8 MB table, four times the L2
 * cache, so each add and each lookup was a miss that prefetching did not
 * hide (docs/BENCHMARKS.md, issue 16). This one spends 2 bytes a slot at
 * 80% load, 2.6 bytes per remembered hash: 1.3 MB for the same ghost.
 *
 * Layout: buckets of one 64-byte line, 32 lanes of 16 bits: 31 entries and
 * a cursor naming the next lane to overwrite, so a bucket forgets its
 * oldest entry first. An entry is a 12-bit fingerprint (never 0: 0 is an
 * empty lane), the list it was evicted from and a 3-bit epoch, the add
 * count in quarters of the span when it was written: an entry more than
 * KVBM__G16_LIVE epochs old is forgotten, so an entry lives for 0.75 to 1
 * span adds, unless 31 later adds to its bucket push it out first (with
 * 1.25 slots per span entry, 1 entry in 8 that reaches a whole span, 1 in
 * 200 of those that reach 0.75 span). The stamp is
 * needed: with only the buckets' own forgetting (an entry lives for the
 * next 31 adds to its bucket, span on average but spread by +-18%) the
 * Mooncake trace at 2,000 blocks lost 0.9 points. The epoch wraps after 8
 * quarters: an entry 8 to 11 quarters old looks live again, which needs
 * a bucket taking fewer than 31 adds in two spans (it expects 50: about 1
 * bucket in 500); such a stale entry can only cause a false ghost hit. A
 * lookup compares one line; a false match (31 entries against 2^12
 * fingerprints) is about a 1-in-130 event.
 *
 * Lanes are kept in uint64_t words and addressed by shifts, so lane
 * numbers do not depend on the host's byte order (the adaptive policy's
 * export writes each lane little-endian).
 */
#ifndef KVBM_EVICT_GHOST16_H
#define KVBM_EVICT_GHOST16_H

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kvbm.h"

#define KVBM__G16_LANES 32
#define KVBM__G16_ENTRIES 31 /* lane 31 is the cursor */
#define KVBM__G16_WORDS 8    /* uint64_t words per bucket */
#define KVBM__G16_FP 0xfff0u /* lane bits: fingerprint, */
#define KVBM__G16_TAG 0x8u   /* list, */
#define KVBM__G16_EPOCH 0x7u /* epoch */
#define KVBM__G16_LIVE 3u    /* epochs (quarters of the span) an entry outlives */

/* Table slots per span entry, as a fraction: with one slot per entry the
 * buckets' own forgetting cuts more entries short of their stamp (rag at
 * 2,000 blocks then closed 81% of s3fifo's gain instead of 82%, Mooncake
 * at 2,000 gained 0.13 point over LRU instead of 0.58). */
#define KVBM__G16_LOAD_NUM 5
#define KVBM__G16_LOAD_DEN 4

/* Adds wait this many adds with their bucket prefetched: written at once,
 * each add stalled on a miss (the cycle of docs/BENCHMARKS.md: 1.39x LRU
 * instead of 1.34x). */
#define KVBM__G16_QUEUE 8

struct kvbm__ghost16 {
	uint64_t *word;      /* n_buckets x KVBM__G16_WORDS, 64-byte aligned */
	uint32_t n_buckets;
	uint32_t span;       /* the nominal number of evictions remembered */
	uint32_t epoch_len;  /* adds per epoch: span / 4, rounded up */
	uint32_t epoch_left; /* adds before the epoch moves on, 1..epoch_len */
	uint32_t epoch;      /* 0..7 */
	/* The last adds, oldest at q_head, not yet in their buckets; a
	 * q_tag of KVBM__G16_VOID is an entry taken back while queued. */
	kvbm_hash q_hash[KVBM__G16_QUEUE];
	uint8_t q_tag[KVBM__G16_QUEUE];
	uint32_t q_head, q_len;
};

#define KVBM__G16_VOID 0xffu

static inline kvbm_status kvbm__ghost16_init(struct kvbm__ghost16 *g, uint32_t span)
{
	g->span = span ? span : 1;
	const uint64_t slots = ((uint64_t)g->span * KVBM__G16_LOAD_NUM + KVBM__G16_LOAD_DEN - 1) /
			       KVBM__G16_LOAD_DEN;
	g->n_buckets = (uint32_t)((slots + KVBM__G16_ENTRIES - 1) / KVBM__G16_ENTRIES);
	const size_t bytes = (size_t)g->n_buckets * KVBM__G16_WORDS * sizeof(uint64_t);
	g->word = aligned_alloc(64, bytes);
	if (!g->word)
		return KVBM_E_NOMEM;
	memset(g->word, 0, bytes);
	g->epoch_len = (uint32_t)(((uint64_t)g->span + 3) / 4);
	g->epoch_left = g->epoch_len;
	g->epoch = 0;
	g->q_head = g->q_len = 0;
	return KVBM_OK;
}

static inline void kvbm__ghost16_free(struct kvbm__ghost16 *g)
{
	free(g->word);
}

/* Multiply-shift on the high half of a multiplicative mix: any bucket
 * count, no modulo. The fingerprint takes other bits of the hash. */
static inline uint64_t *kvbm__ghost16_at(const struct kvbm__ghost16 *g, kvbm_hash h)
{
	const uint64_t top = (h * 0x9E3779B97F4A7C15ull) >> 32;

	return &g->word[((top * g->n_buckets) >> 32) * KVBM__G16_WORDS];
}

/* h's fingerprint, in its lane bits (KVBM__G16_FP), never 0. */
static inline uint32_t kvbm__ghost16_fingerprint(kvbm_hash h)
{
	const uint32_t f = (uint32_t)(h ^ (h >> 32)) & KVBM__G16_FP;

	return f ? f : 0x10u;
}

static inline uint32_t kvbm__ghost16_lane(const uint64_t *b, unsigned i)
{
	return (uint32_t)(b[i / 4] >> (16 * (i % 4))) & 0xffffu;
}

static inline void kvbm__ghost16_set(uint64_t *b, unsigned i, uint32_t v)
{
	const unsigned s = 16 * (i % 4);

	b[i / 4] = (b[i / 4] & ~(0xffffull << s)) | (uint64_t)v << s;
}

/* The first entry lane with fingerprint fp, or KVBM__G16_ENTRIES. A
 * lookup runs this on every new block and an add on every eviction, and
 * it was most of a lookup's cost: 16-bit compares where SSE2 is there
 * (x86-64 always, so little-endian: lane i is bytes 2i, 2i + 1), else
 * four lanes per word (a lane is zero in x ^ pattern exactly where it
 * matches; the +0x7fff carry cannot cross lanes once each lane's top bit
 * is masked off). */
static inline unsigned kvbm__ghost16_find(const uint64_t *b, uint32_t fp)
{
#if defined(__SSE2__)
	const __m128i keep = _mm_set1_epi16((short)KVBM__G16_FP);
	const __m128i pattern = _mm_set1_epi16((short)fp);
	const __m128i *v = (const __m128i *)(const void *)b;
	uint64_t m = 0;

	for (unsigned k = 0; k < 4; k++)
		m |= (uint64_t)(uint32_t)_mm_movemask_epi8(
			     _mm_cmpeq_epi16(_mm_and_si128(_mm_load_si128(v + k), keep), pattern))
		     << (16 * k);
	m &= ~(3ull << 62); /* lane 31 is the cursor */
	return m ? (unsigned)__builtin_ctzll(m) / 2 : KVBM__G16_ENTRIES;
#else
	const uint64_t ones = 0x0001000100010001ull, low = 0x7fff7fff7fff7fffull;
	const uint64_t pattern = (uint64_t)fp * ones, keep = (uint64_t)KVBM__G16_FP * ones;

	for (unsigned k = 0; k < KVBM__G16_WORDS; k++) {
		/* Lane 31 is the cursor: its top bit set, it never matches. */
		const uint64_t y = ((b[k] & keep) ^ pattern) |
				   (k == KVBM__G16_WORDS - 1 ? 1ull << 63 : 0);
		const uint64_t z = ~(((y & low) + low) | y) & ~low;
		if (z)
			return 4 * k + (unsigned)__builtin_ctzll(z) / 16;
	}
	return KVBM__G16_ENTRIES;
#endif
}

/* Start loading h's bucket (a hash is registered: its first release
 * looks it up). Non-temporal, for this and the add's prefetch: the line is
 * read once and then not again for about a span, and a prefetch into
 * every level pushed out lines of the manager's that it needs sooner (the
 * cycle of docs/BENCHMARKS.md, best of 12: 1.37x LRU -> 1.33x). */
static inline void kvbm__ghost16_prefetch(const struct kvbm__ghost16 *g, kvbm_hash h)
{
	__builtin_prefetch(kvbm__ghost16_at(g, h), 0, 0);
}

/* Write h into its bucket as evicted from list tag (0 or 1) now,
 * forgetting the bucket's oldest entry; an entry for h already there is
 * dropped, so h is not remembered twice. */
static inline void kvbm__ghost16_put(struct kvbm__ghost16 *g, kvbm_hash h, unsigned tag)
{
	uint64_t *b = kvbm__ghost16_at(g, h);
	const uint32_t fp = kvbm__ghost16_fingerprint(h);
	const unsigned old = kvbm__ghost16_find(b, fp);
	const unsigned cur = kvbm__ghost16_lane(b, KVBM__G16_ENTRIES);

	if (old < KVBM__G16_ENTRIES)
		kvbm__ghost16_set(b, old, 0);
	kvbm__ghost16_set(b, cur, fp | (tag ? KVBM__G16_TAG : 0) | g->epoch);
	kvbm__ghost16_set(b, KVBM__G16_ENTRIES, cur + 1 < KVBM__G16_ENTRIES ? cur + 1 : 0);
	if (--g->epoch_left == 0) {
		g->epoch = (g->epoch + 1) & KVBM__G16_EPOCH;
		g->epoch_left = g->epoch_len;
	}
}

/* Remember h as evicted from list tag: queued, its bucket prefetched for
 * writing, and the add KVBM__G16_QUEUE adds ago written. */
static inline void kvbm__ghost16_add(struct kvbm__ghost16 *g, kvbm_hash h, unsigned tag)
{
	uint32_t slot;

	if (g->q_len == KVBM__G16_QUEUE) {
		slot = g->q_head;
		if (g->q_tag[slot] != KVBM__G16_VOID)
			kvbm__ghost16_put(g, g->q_hash[slot], g->q_tag[slot]);
		g->q_head = (g->q_head + 1) % KVBM__G16_QUEUE;
	} else {
		slot = (g->q_head + g->q_len++) % KVBM__G16_QUEUE;
	}
	g->q_hash[slot] = h;
	g->q_tag[slot] = (uint8_t)(tag & 1u);
	__builtin_prefetch(kvbm__ghost16_at(g, h), 1, 0);
}

/* The tag h was remembered with if it still is (it is forgotten then),
 * or -1. */
static inline int kvbm__ghost16_take(struct kvbm__ghost16 *g, kvbm_hash h)
{
	for (uint32_t i = 0; i < g->q_len; i++)
		if (g->q_hash[i] == h && g->q_tag[i] != KVBM__G16_VOID) {
			const int tag = g->q_tag[i];
			g->q_tag[i] = KVBM__G16_VOID;
			return tag;
		}
	uint64_t *b = kvbm__ghost16_at(g, h);
	const unsigned i = kvbm__ghost16_find(b, kvbm__ghost16_fingerprint(h));

	if (i == KVBM__G16_ENTRIES)
		return -1;
	const uint32_t v = kvbm__ghost16_lane(b, i);
	kvbm__ghost16_set(b, i, 0);
	if (((g->epoch - v) & KVBM__G16_EPOCH) > KVBM__G16_LIVE)
		return -1; /* expired */
	return v & KVBM__G16_TAG ? 1 : 0;
}

#endif /* KVBM_EVICT_GHOST16_H */
