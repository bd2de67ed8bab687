/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A ghost list: "was this hash evicted among the last `span` evictions?",
 * for 2Q and ARC. Exactness does not matter (a ghost only decides which
 * queue a returning block joins), speed does: it is touched on every
 * eviction and every new registration. So it is a table of 8-way buckets
 * of (32-bit fingerprint, eviction stamp) pairs, one 64-byte line each: one
 * cache miss per add or lookup, no deletion: an entry older than `span`
 * evictions is expired by its stamp, and a full bucket replaces its oldest
 * entry. Direct mapping was tried first and lost the hit rate: a shared
 * prefix block forgotten through a collision drags all its continuations
 * out with it. Table size: the power of two >= 2 x span entries.
 */
#ifndef KVBM_EVICT_GHOST_H
#define KVBM_EVICT_GHOST_H

#include <stdlib.h>
#include <string.h>

#include "kvbm.h"

struct kvbm__ghost_slot {
	uint32_t fingerprint; /* never 0 for a live entry */
	uint32_t stamp;       /* low 32 bits of the eviction count when added */
};

#define KVBM__GHOST_WAYS 8

struct kvbm__ghost {
	struct kvbm__ghost_slot *slot; /* buckets of KVBM__GHOST_WAYS */
	uint64_t mask;
	unsigned shift;
	uint32_t span;
	uint64_t adds; /* evictions remembered so far */
};

static inline kvbm_status kvbm__ghost_init(struct kvbm__ghost *g, uint32_t span)
{
	uint64_t buckets = 2;
	unsigned bits = 1;

	while (buckets * KVBM__GHOST_WAYS < 2ull * span) {
		buckets <<= 1;
		bits++;
	}
	g->slot = aligned_alloc(64, buckets * KVBM__GHOST_WAYS * sizeof(*g->slot));
	if (g->slot)
		memset(g->slot, 0, buckets * KVBM__GHOST_WAYS * sizeof(*g->slot));
	g->mask = buckets - 1;
	g->shift = 64 - bits;
	g->span = span ? span : 1;
	g->adds = 0;
	return g->slot ? KVBM_OK : KVBM_E_NOMEM;
}

static inline void kvbm__ghost_free(struct kvbm__ghost *g)
{
	free(g->slot);
}

/* The bucket of h: KVBM__GHOST_WAYS slots in one cache line. */
static inline struct kvbm__ghost_slot *kvbm__ghost_at(const struct kvbm__ghost *g, kvbm_hash h)
{
	return &g->slot[((h * 0x9E3779B97F4A7C15ull) >> g->shift) * KVBM__GHOST_WAYS];
}

static inline uint32_t kvbm__ghost_fingerprint(kvbm_hash h)
{
	const uint32_t f = (uint32_t)(h ^ (h >> 32));
	return f ? f : 1;
}

/* Start loading h's bucket: a policy calls this when a hash is registered,
 * so the lookup at its first release finds the line in the cache. */
static inline void kvbm__ghost_prefetch(const struct kvbm__ghost *g, kvbm_hash h)
{
	__builtin_prefetch(kvbm__ghost_at(g, h));
}

/* Remember fp in h's bucket: the same entry again (equal but for the
 * ignored bits), else a free slot, else the oldest entry. */
static inline void kvbm__ghost_put(struct kvbm__ghost *g, kvbm_hash h, uint32_t fp,
				   uint32_t ignore)
{
	struct kvbm__ghost_slot *b = kvbm__ghost_at(g, h), *victim = b;
	const uint32_t now = (uint32_t)g->adds++;

	for (int i = 0; i < KVBM__GHOST_WAYS; i++) {
		if ((b[i].fingerprint | ignore) == (fp | ignore) || b[i].fingerprint == 0) {
			victim = &b[i];
			break;
		}
		if (now - b[i].stamp > now - victim->stamp)
			victim = &b[i];
	}
	victim->fingerprint = fp;
	victim->stamp = now;
}

/* Forget fp's entry (equal but for the ignored bits); the fingerprint it
 * had if it was added within the last span adds, else 0. */
static inline uint32_t kvbm__ghost_pop(struct kvbm__ghost *g, kvbm_hash h, uint32_t fp,
				       uint32_t ignore)
{
	struct kvbm__ghost_slot *b = kvbm__ghost_at(g, h);

	for (int i = 0; i < KVBM__GHOST_WAYS; i++) {
		if ((b[i].fingerprint | ignore) == (fp | ignore)) {
			const uint32_t f = b[i].fingerprint;
			b[i].fingerprint = 0;
			return (uint32_t)g->adds - b[i].stamp <= g->span ? f : 0;
		}
	}
	return 0;
}

static inline void kvbm__ghost_add(struct kvbm__ghost *g, kvbm_hash h)
{
	kvbm__ghost_put(g, h, kvbm__ghost_fingerprint(h), 0);
}

/* True if h was added within the last span adds; it is forgotten then. */
static inline bool kvbm__ghost_take(struct kvbm__ghost *g, kvbm_hash h)
{
	return kvbm__ghost_pop(g, h, kvbm__ghost_fingerprint(h), 0) != 0;
}

/* Entries a list of span would hold now (for ARC's ratios). */
static inline uint32_t kvbm__ghost_size(const struct kvbm__ghost *g)
{
	return g->adds < g->span ? (uint32_t)g->adds : g->span;
}

/*
 * Tagged use, for a policy that keeps one ghost for two lists (one lookup
 * per insert instead of two): the fingerprint's low bit names the list an
 * entry was evicted from, so fingerprints keep 31 bits.
 */
static inline uint32_t kvbm__ghost_fingerprint_tagged(kvbm_hash h, unsigned tag)
{
	const uint32_t f = kvbm__ghost_fingerprint(h) & ~1u;
	return (f ? f : 2) | (tag & 1u); /* never 0, equal but for the tag */
}

static inline void kvbm__ghost_add_tagged(struct kvbm__ghost *g, kvbm_hash h, unsigned tag)
{
	kvbm__ghost_put(g, h, kvbm__ghost_fingerprint_tagged(h, tag), 1u);
}

/* The tag h was added with, if within the last span adds (it is forgotten
 * then); -1 if not remembered. */
static inline int kvbm__ghost_take_tagged(struct kvbm__ghost *g, kvbm_hash h)
{
	const uint32_t f = kvbm__ghost_pop(g, h, kvbm__ghost_fingerprint_tagged(h, 0), 1u);

	return f ? (int)(f & 1u) : -1;
}

#endif /* KVBM_EVICT_GHOST_H */
