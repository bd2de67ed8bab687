/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A compact tagged ghost: "was this hash evicted among about the last
 * `span` evictions, and from which of two lists?", for the adaptive
 * policy, which asks it on every new block and tells it every eviction.
 *
 * Why 24-bit entries: the previous ghost (16-bit entries, 12-bit
 * fingerprints, 31 to a bucket) answered "yes" for about 1 hash in 220
 * it had never seen (31 live lanes against 2^12 fingerprints, 9,421 of the
 * 2.1M lookups of bench_policies' cycle, whose hashes never repeat). Each
 * such false hit is a decision: it moves the target and puts a new block
 * in the protected list. On that cycle those decisions cost 0.07x LRU of
 * the adaptive policy's 0.27x (the same lookups with their answers
 * ignored; docs/BENCHMARKS.md). A 20-bit fingerprint makes a false hit
 * about 1 lookup in 50,000, for 1.5 times the memory: 3.8 bytes per
 * remembered hash at 1.25 table slots per entry, 2 MB for the ghost of
 * 8 x 64k blocks.
 *
 * Layout: buckets of one 64-byte line, 21 entries and a cursor. Bytes 0-41
 * are the entries' low halves, 16 bits each, little-endian: the low 16
 * bits of the fingerprint, never 0 (0 is an empty lane), so that a lookup
 * compares them 8 at a time as they are. Bytes 42-62 are the entries' high
 * bytes: the fingerprint's top 4 bits, the list it was evicted from, and a
 * 3-bit epoch, the add count in quarters of the span when it was written.
 * Byte 63 is the cursor, the next lane to overwrite, so a bucket forgets
 * its oldest entry first. An entry more than KVBM__G24_LIVE epochs old is
 * forgotten, so an entry lives for 0.75 to 1 span adds, unless 21 later
 * adds to its bucket push it out first. The stamp is needed: with only
 * the buckets' own forgetting the Mooncake trace at 2,000 blocks lost 0.9
 * points. The epoch wraps after 8 quarters: an entry 8 to 11 quarters old
 * looks live again, which needs a bucket taking fewer than 21 adds in two
 * spans; such a stale entry is a hash that was evicted, only longer ago.
 *
 * The format is bytes, defined little-endian, so the adaptive policy's
 * export writes buckets as they are in memory.
 */
#ifndef KVBM_EVICT_GHOST24_H
#define KVBM_EVICT_GHOST24_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kvbm.h"
#include "../table_alloc.h"

#define KVBM__G24_BUCKET 64   /* bytes: one cache line */
#define KVBM__G24_ENTRIES 21
#define KVBM__G24_HI 42       /* offset of the high bytes */
#define KVBM__G24_CURSOR 63   /* offset of the cursor */
#define KVBM__G24_FP_HI 0xf0u /* high byte: fingerprint bits 16-19, */
#define KVBM__G24_TAG 0x8u    /* list, */
#define KVBM__G24_EPOCH 0x7u  /* epoch */
#define KVBM__G24_LIVE 3u     /* epochs (quarters of the span) an entry outlives */
/* Table slots per span entry, as a fraction: with fewer the buckets' own
 * forgetting cuts more entries short of their stamp (docs/BENCHMARKS.md:
 * at one slot per entry rag at 2,000 blocks and Mooncake at 2,000 lost
 * part of their gain). */
#define KVBM__G24_LOAD_NUM 5
#define KVBM__G24_LOAD_DEN 4
/* Adds wait this many adds with their bucket prefetched: written at once,
 * each add stalled on a miss (the cycle of docs/BENCHMARKS.md: 1.39x LRU
 * instead of 1.34x with the 16-bit ghost). */
#define KVBM__G24_QUEUE 8
#define KVBM__G24_VOID 0xffu

struct kvbm__ghost24 {
	uint8_t *line;       /* n_buckets x KVBM__G24_BUCKET, 64-byte aligned */
	uint32_t n_buckets;
	uint32_t span;       /* the nominal number of evictions remembered */
	uint32_t epoch_len;  /* adds per epoch: span / 4, rounded up */
	uint32_t epoch_left; /* adds before the epoch moves on, 1..epoch_len */
	uint32_t epoch;      /* 0..7 */
	/* The last adds, oldest at q_head, not yet in their buckets; a
	 * q_tag of KVBM__G24_VOID is an entry taken back while queued. */
	kvbm_hash q_hash[KVBM__G24_QUEUE];
	uint32_t q_at[KVBM__G24_QUEUE]; /* each one's bucket, found once at its add */
	uint8_t q_tag[KVBM__G24_QUEUE];
	/* Byte k: the top byte of q_hash[k], so that a lookup rules out the
	 * queue with one word compare instead of a scan of eight. */
	uint64_t q_sig;
	uint32_t q_head, q_len;
	/* No add yet: a lookup has nothing to find and skips the table. A
	 * manager filling its cache (every block new, nothing evicted) then
	 * never reaches the table, which at 1M blocks is 31 MB of random
	 * lines whose misses also cost the catalog's writer its cache. */
	bool empty;
};

/* The buckets for a span: 1.25 slots per entry, rounded up. */
static inline uint32_t kvbm__ghost24_buckets(uint32_t span)
{
	const uint64_t slots = ((uint64_t)span * KVBM__G24_LOAD_NUM + KVBM__G24_LOAD_DEN - 1) /
			       KVBM__G24_LOAD_DEN;

	return (uint32_t)((slots + KVBM__G24_ENTRIES - 1) / KVBM__G24_ENTRIES);
}

static inline kvbm_status kvbm__ghost24_init(struct kvbm__ghost24 *g, uint32_t span)
{
	g->span = span ? span : 1;
	g->n_buckets = kvbm__ghost24_buckets(g->span);
	g->line = kvbm__table_alloc_lines((size_t)g->n_buckets * KVBM__G24_BUCKET);
	if (!g->line)
		return KVBM_E_NOMEM;
	g->epoch_len = (uint32_t)(((uint64_t)g->span + 3) / 4);
	g->epoch_left = g->epoch_len;
	g->epoch = 0;
	g->q_head = g->q_len = 0;
	g->q_sig = 0;
	g->empty = true;
	return KVBM_OK;
}

static inline void kvbm__ghost24_free(struct kvbm__ghost24 *g)
{
	kvbm__table_free_lines(g->line, (size_t)g->n_buckets * KVBM__G24_BUCKET);
	g->line = NULL;
}

/* Multiply-shift on the high half of a multiplicative mix: any bucket
 * count, no modulo. The fingerprint takes other bits of the hash. */
static inline uint32_t kvbm__ghost24_bucket(const struct kvbm__ghost24 *g, kvbm_hash h)
{
	const uint64_t top = (h * 0x9E3779B97F4A7C15ull) >> 32;

	return (uint32_t)((top * g->n_buckets) >> 32);
}

static inline uint8_t *kvbm__ghost24_at(const struct kvbm__ghost24 *g, uint32_t k)
{
	return g->line + (size_t)k * KVBM__G24_BUCKET;
}

/* h's 20-bit fingerprint: its low 16 bits never 0. */
static inline uint32_t kvbm__ghost24_fingerprint(kvbm_hash h)
{
	const uint32_t f = (uint32_t)(h ^ (h >> 32)) & 0xfffffu;

	return f & 0xffffu ? f : f | 1u;
}

static inline uint32_t kvbm__ghost24_lo(const uint8_t *b, unsigned i)
{
	return (uint32_t)b[2 * i] | (uint32_t)b[2 * i + 1] << 8;
}

static inline void kvbm__ghost24_set(uint8_t *b, unsigned i, uint32_t lo, uint32_t hi)
{
	b[2 * i] = (uint8_t)lo;
	b[2 * i + 1] = (uint8_t)(lo >> 8);
	b[KVBM__G24_HI + i] = (uint8_t)hi;
}

/* The lanes whose low half is lo, one bit per lane. */
static inline uint32_t kvbm__ghost24_lo_matches(const uint8_t *b, uint32_t lo)
{
#if defined(__SSE2__)
	/* x86 is little-endian: lane i is bytes 2i, 2i + 1 as they are. The
	 * compares packed to a byte per lane; bytes 42-47 are high bytes. */
	const __m128i pattern = _mm_set1_epi16((short)lo);
	const __m128i *v = (const __m128i *)(const void *)b;
	const __m128i c0 = _mm_cmpeq_epi16(_mm_load_si128(v), pattern);
	const __m128i c1 = _mm_cmpeq_epi16(_mm_load_si128(v + 1), pattern);
	const __m128i c2 = _mm_cmpeq_epi16(_mm_load_si128(v + 2), pattern);
	const uint32_t lanes =
		(uint32_t)_mm_movemask_epi8(_mm_packs_epi16(c0, c1)) |
		(uint32_t)_mm_movemask_epi8(_mm_packs_epi16(c2, _mm_setzero_si128())) << 16;

	return lanes & ((1u << KVBM__G24_ENTRIES) - 1);
#else
	uint32_t lanes = 0;

	for (unsigned i = 0; i < KVBM__G24_ENTRIES; i++)
		lanes |= (uint32_t)(kvbm__ghost24_lo(b, i) == lo) << i;
	return lanes;
#endif
}

/* The first entry lane with fingerprint fp, or KVBM__G24_ENTRIES. The low
 * halves rule out all but about 1 lane in 65,536 of another hash; the
 * high byte settles the rest. */
static inline unsigned kvbm__ghost24_find(const uint8_t *b, uint32_t fp)
{
	for (uint32_t lanes = kvbm__ghost24_lo_matches(b, fp & 0xffffu); lanes; lanes &= lanes - 1) {
		const unsigned i = (unsigned)__builtin_ctz(lanes);
		if ((b[KVBM__G24_HI + i] & KVBM__G24_FP_HI) >> 4 == fp >> 16)
			return i;
	}
	return KVBM__G24_ENTRIES;
}

/* Start loading h's bucket (a hash is registered: its first release
 * looks it up). Non-temporal, for this and the add's prefetch: the line is
 * read once and then not again for about a span, and a prefetch into
 * every level pushed out lines of the manager's that it needs sooner (the
 * cycle of docs/BENCHMARKS.md, best of 12: 1.37x LRU -> 1.33x). */
static inline void kvbm__ghost24_prefetch(const struct kvbm__ghost24 *g, kvbm_hash h)
{
	if (g->empty)
		return;
	__builtin_prefetch(kvbm__ghost24_at(g, kvbm__ghost24_bucket(g, h)), 0, 0);
}

/* Write h into bucket k as evicted from list tag (0 or 1) now, forgetting
 * the bucket's oldest entry. No search for an entry of h already there:
 * every new block's lookup takes its hash's entry out, so there is none;
 * with 12-bit fingerprints that search mostly met other hashes' entries
 * (1 add in 130) and deleted them. */
static inline void kvbm__ghost24_put(struct kvbm__ghost24 *g, uint32_t k, kvbm_hash h,
				     unsigned tag)
{
	uint8_t *b = kvbm__ghost24_at(g, k);
	const uint32_t fp = kvbm__ghost24_fingerprint(h);
	const unsigned cur = b[KVBM__G24_CURSOR];

	kvbm__ghost24_set(b, cur, fp & 0xffffu,
			  (fp >> 16) << 4 | (tag ? KVBM__G24_TAG : 0) | g->epoch);
	b[KVBM__G24_CURSOR] = (uint8_t)(cur + 1 < KVBM__G24_ENTRIES ? cur + 1 : 0);
	if (--g->epoch_left == 0) {
		g->epoch = (g->epoch + 1) & KVBM__G24_EPOCH;
		g->epoch_left = g->epoch_len;
	}
}

/* Remember h as evicted from list tag: queued, its bucket prefetched for
 * writing, and the add KVBM__G24_QUEUE adds ago written. */
static inline void kvbm__ghost24_add(struct kvbm__ghost24 *g, kvbm_hash h, unsigned tag)
{
	uint32_t slot;

	g->empty = false;
	if (g->q_len == KVBM__G24_QUEUE) {
		slot = g->q_head;
		if (g->q_tag[slot] != KVBM__G24_VOID)
			kvbm__ghost24_put(g, g->q_at[slot], g->q_hash[slot], g->q_tag[slot]);
		g->q_head = (g->q_head + 1) % KVBM__G24_QUEUE;
	} else {
		slot = (g->q_head + g->q_len++) % KVBM__G24_QUEUE;
	}
	g->q_hash[slot] = h;
	g->q_tag[slot] = (uint8_t)(tag & 1u);
	g->q_at[slot] = kvbm__ghost24_bucket(g, h);
	g->q_sig = (g->q_sig & ~(0xffull << (8 * slot))) | (h >> 56) << (8 * slot);
	__builtin_prefetch(kvbm__ghost24_at(g, g->q_at[slot]), 1, 0);
}

/* q_at and q_sig after q_hash was set other than by an add (an import). */
static inline void kvbm__ghost24_index_queue(struct kvbm__ghost24 *g)
{
	g->q_sig = 0;
	for (uint32_t k = 0; k < KVBM__G24_QUEUE; k++) {
		g->q_at[k] = kvbm__ghost24_bucket(g, g->q_hash[k]);
		g->q_sig |= (g->q_hash[k] >> 56) << (8 * k);
	}
}

/* Whether h may be queued: some byte of q_sig is h's top byte. */
static inline bool kvbm__ghost24_maybe_queued(const struct kvbm__ghost24 *g, kvbm_hash h)
{
	const uint64_t ones = 0x0101010101010101ull;
	const uint64_t x = g->q_sig ^ (h >> 56) * ones; /* a zero byte where it is */

	return ((x - ones) & ~x & 0x8080808080808080ull) != 0;
}

/* The tag h was remembered with if it still is (it is forgotten then),
 * or -1. */
static inline int kvbm__ghost24_take(struct kvbm__ghost24 *g, kvbm_hash h)
{
	if (g->empty)
		return -1;
	if (kvbm__ghost24_maybe_queued(g, h))
		for (uint32_t i = 0; i < g->q_len; i++)
			if (g->q_hash[i] == h && g->q_tag[i] != KVBM__G24_VOID) {
				const int tag = g->q_tag[i];
				g->q_tag[i] = KVBM__G24_VOID;
				return tag;
			}
	uint8_t *b = kvbm__ghost24_at(g, kvbm__ghost24_bucket(g, h));
	const unsigned i = kvbm__ghost24_find(b, kvbm__ghost24_fingerprint(h));

	if (i == KVBM__G24_ENTRIES)
		return -1;
	const uint32_t hi = b[KVBM__G24_HI + i];
	kvbm__ghost24_set(b, i, 0, 0);
	if (((g->epoch - hi) & KVBM__G24_EPOCH) > KVBM__G24_LIVE)
		return -1; /* expired */
	return hi & KVBM__G24_TAG ? 1 : 0;
}

#endif /* KVBM_EVICT_GHOST24_H */
