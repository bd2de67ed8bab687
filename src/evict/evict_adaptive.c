/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Adaptive: LRU that learns, from a ghost of evicted hashes, how far to
 * sacrifice blocks used once (issue 16). T1 holds blocks used once, T2
 * blocks used at least twice, each least recently released first. A
 * target p for T1 moves as in ARC (Megiddo and Modha, FAST 2003): a hash
 * evicted from T1 and asked for again (a B1 ghost hit) means new blocks
 * deserved more room, so p grows by max(1, |B2| / |B1|); a B2 ghost hit
 * means reused blocks did, so p shrinks by max(1, |B1| / |B2|). The victim
 * is T1's oldest while T1 holds more than p blocks; otherwise it is the
 * older of the two heads, which is exactly LRU.
 *
 * Why not ARC itself: below its target ARC evicts from T2, protecting T1,
 * which is neither policy the traffic asked for. On recency-shaped traffic
 * (multi-turn chat: the newest blocks are the next turn's prefix) ARC
 * lost 0.9-1.6 points to LRU; here the same evidence moves the policy
 * between 2Q (p = 0: one-off blocks go first, what the Mooncake trace, the
 * scan and the RAG workloads reward) and LRU (p >= |T1|), so it never
 * settles on something worse than both.
 *
 * Parameters, fixed for every capacity and workload: p starts at c / 2
 * (no evidence either way); p is kept to 1/65536 of a block so steps
 * smaller than one block still add up; one ghost table remembers the last
 * 8 x c evicted hashes of both lists (as many entries as ARC's two 4 x c
 * ghosts, one lookup per new block instead of two), tagged with the list
 * each came from; |B1| and |B2| are the evictions from each list among
 * roughly the last 8 x c (counters halved when their sum passes the span).
 * Cost: below its target the victim is LRU's, an old block, plus a ghost
 * write to a random line, where 2Q's victim is a block released moments
 * ago; docs/BENCHMARKS.md has the figures (about 1.45x LRU on the
 * eviction-bound cycle, where 2Q is about 1.2x). A deferred ghost write
 * (bucket prefetched 16 evictions ahead), huge pages for the ghost table
 * and prefetching the next head were each measured and gained nothing.
 * The sweep that chose them is in docs/BENCHMARKS.md: starts from 0.3 c
 * to 0.7 c and ghosts of 6 to 8 x c all met the bounds.
 *
 * Persistence: the catalog keeps each pooled block's list as its frequency
 * (1 = T2) and its release tick as the order key; p, the ghost counters
 * and the ghost table are the adaptive state of state_export/state_import
 * (format below), so a warm restart resumes with the same split and ghosts.
 */
#include <stdlib.h>
#include <string.h>

#include "evict.h"
#include "evict_ghost.h"
#include "evict_list.h"

enum { T1, T2 };

#define GHOST_PER_BLOCK 8
#define P_ONE 65536u /* p is fixed point: P_ONE = one block */

/* Everything an eviction touches of a block, in one 32-byte record (two
 * per cache line, never straddling one): the victim's key and hash, its
 * links, and through them its successor, the next head. With the links
 * in prev/next arrays beside the records an eviction touched up to three
 * more lines, each a miss once the lists no longer follow block ids. */
struct node {
	uint64_t key;   /* release tick << 1 | list (ticks stay below 2^63) */
	kvbm_hash hash;
	uint32_t prev, next; /* KVBM__LIST_NIL at either end */
	uint64_t pad;
};

struct adaptive {
	struct node *node; /* 64-byte aligned */
	struct kvbm__dlist lists[2];
	uint32_t c;          /* block_count */
	uint64_t p;          /* T1's target, in 1/P_ONE blocks, 0..c * P_ONE */
	uint32_t recent[2];  /* evictions from T1, T2 among about the last span */
	struct kvbm__ghost ghost;
	kvbm_hash stash_hash; /* restore_frequency() just before insert() */
	uint32_t stash_list;
	bool stashed;
};

static void ad_destroy(void *st)
{
	struct adaptive *a = st;

	if (!a)
		return;
	free(a->node);
	kvbm__ghost_free(&a->ghost);
	free(a);
}

static uint32_t ghost_span(uint32_t block_count)
{
	return block_count > UINT32_MAX / GHOST_PER_BLOCK ? UINT32_MAX
							   : block_count * GHOST_PER_BLOCK;
}

static kvbm_status ad_create(const struct kvbm__evict_params *p, void **out)
{
	struct adaptive *a = calloc(1, sizeof(*a));

	if (!a)
		return KVBM_E_NOMEM;
	a->c = p->block_count;
	a->p = (uint64_t)a->c * P_ONE / 2;
	/* aligned_alloc wants a size that is a multiple of the alignment. */
	const size_t bytes = ((size_t)p->block_count * sizeof(*a->node) + 63) & ~(size_t)63;
	const bool ok = (a->node = aligned_alloc(64, bytes ? bytes : 64)) &&
			kvbm__ghost_init(&a->ghost, ghost_span(p->block_count)) == KVBM_OK;
	if (!ok) {
		ad_destroy(a);
		return KVBM_E_NOMEM;
	}
	memset(a->node, 0, bytes);
	kvbm__dlist_init(&a->lists[T1]);
	kvbm__dlist_init(&a->lists[T2]);
	*out = a;
	return KVBM_OK;
}

/* ARC's step, max(1, mine / theirs) blocks in fixed point; mine and theirs
 * are the sizes of the ghost lists (0 counts as 1). */
static uint64_t step(uint32_t mine, uint32_t theirs)
{
	const uint64_t m = mine ? mine : 1, t = theirs ? theirs : 1;

	return m > t ? m * P_ONE / t : P_ONE;
}

/* evict_list.h's list over the records' own links. */
static void append(struct adaptive *a, int l, uint32_t b, uint64_t key, kvbm_hash hash)
{
	struct kvbm__dlist *list = &a->lists[l];

	a->node[b] = (struct node){.key = key, .hash = hash, .prev = list->tail,
				   .next = KVBM__LIST_NIL};
	if (list->tail != KVBM__LIST_NIL)
		a->node[list->tail].next = b;
	else
		list->head = b;
	list->tail = b;
	list->size++;
}

static void unlink_node(struct adaptive *a, int l, uint32_t b)
{
	struct kvbm__dlist *list = &a->lists[l];
	const uint32_t prev = a->node[b].prev, next = a->node[b].next;

	if (prev != KVBM__LIST_NIL)
		a->node[prev].next = next;
	else
		list->head = next;
	if (next != KVBM__LIST_NIL)
		a->node[next].prev = prev;
	else
		list->tail = prev;
	list->size--;
}

static void ad_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct adaptive *a = st;
	const uint64_t p_max = (uint64_t)a->c * P_ONE;
	int l = T1;

	if (a->stashed && a->stash_hash == e->hash) {
		a->stashed = false; /* restore: the list the catalog recorded */
		l = a->stash_list ? T2 : T1;
	} else if (e->first_tick != e->tick && a->node[b].hash == e->hash) {
		l = T2; /* back from a hit: used twice */
	} else {
		switch (kvbm__ghost_take_tagged(&a->ghost, e->hash)) {
		case T1: { /* new blocks needed more room */
			const uint64_t d = step(a->recent[T2], a->recent[T1]);
			a->p = p_max - a->p > d ? a->p + d : p_max;
			l = T2;
			break;
		}
		case T2: { /* reused blocks needed more room */
			const uint64_t d = step(a->recent[T1], a->recent[T2]);
			a->p = a->p > d ? a->p - d : 0;
			l = T2;
			break;
		}
		default:
			break;
		}
	}
	append(a, l, b, e->tick << 1 | (uint64_t)l, e->hash);
}

static void ad_remove(void *st, uint32_t b)
{
	struct adaptive *a = st;

	unlink_node(a, (int)(a->node[b].key & 1), b);
}

static bool ad_victim(void *st, uint32_t *out)
{
	struct adaptive *a = st;
	const uint32_t h1 = a->lists[T1].head, h2 = a->lists[T2].head;
	int l;

	if (h1 == KVBM__LIST_NIL && h2 == KVBM__LIST_NIL)
		return false;
	if (h2 == KVBM__LIST_NIL)
		l = T1;
	else if (h1 == KVBM__LIST_NIL)
		l = T2;
	else if ((uint64_t)a->lists[T1].size * P_ONE > a->p)
		l = T1; /* T1 above its target: one-off blocks go first */
	else
		l = a->node[h1].key < a->node[h2].key ? T1 : T2; /* LRU */
	const uint32_t b = l == T1 ? h1 : h2;
	unlink_node(a, l, b);
	kvbm__ghost_add_tagged(&a->ghost, a->node[b].hash, (unsigned)l);
	if (++a->recent[l] > a->ghost.span - a->recent[!l]) {
		a->recent[T1] /= 2;
		a->recent[T2] /= 2;
	}
	*out = b;
	return true;
}

static void ad_touch(void *st, kvbm_hash hash)
{
	kvbm__ghost_prefetch(&((const struct adaptive *)st)->ghost, hash);
}

static uint64_t ad_order_key(void *st, uint32_t b)
{
	return ((const struct adaptive *)st)->node[b].key >> 1;
}

static uint32_t ad_frequency(void *st, uint32_t b, kvbm_hash hash)
{
	const struct adaptive *a = st;

	/* An active block that was never released is a newcomer. */
	return a->node[b].hash == hash && (a->node[b].key & 1) == T2 ? 1 : 0;
}

static void ad_restore_frequency(void *st, kvbm_hash hash, uint32_t freq)
{
	struct adaptive *a = st;

	a->stash_hash = hash;
	a->stash_list = freq != 0;
	a->stashed = true;
}

/*
 * The adaptive state blob, version 1, all integers little-endian:
 *
 *   offset size field
 *        0    4 magic "KVAD"
 *        4    4 version (1)
 *        8    4 block_count the state was built for
 *       12    4 ghost span (8 x block_count)
 *       16    8 p, T1's target in 1/65536 blocks (<= block_count * 65536)
 *       24    4 |B1|: evictions from T1 among about the last span
 *       28    4 |B2|: the same for T2
 *       32    8 ghost adds (evictions remembered so far; stamps count them)
 *       40    4 n, live ghost entries that follow
 *       44 12 n entries: table slot, fingerprint (low bit: list), stamp
 *
 * Only live entries are written (not expired: adds - stamp <= span), so
 * the blob is at most 44 + 12 x span bytes, usually far less. The
 * table's geometry follows from block_count, so a blob is imported only
 * into a policy of the same block_count.
 */
#define BLOB_MAGIC 0x4441564bu /* "KVAD" read as a little-endian u32 */
#define BLOB_VERSION 1u
#define BLOB_HEADER 44u
#define BLOB_ENTRY 12u

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint64_t ghost_slots(const struct kvbm__ghost *g)
{
	return (g->mask + 1) * KVBM__GHOST_WAYS;
}

static bool live(const struct kvbm__ghost *g, const struct kvbm__ghost_slot *s)
{
	return s->fingerprint != 0 && (uint32_t)g->adds - s->stamp <= g->span;
}

static size_t ad_state_export(void *st, uint8_t *buf, size_t cap)
{
	const struct adaptive *a = st;
	const struct kvbm__ghost *g = &a->ghost;
	uint32_t n = 0;

	for (uint64_t i = 0; i < ghost_slots(g); i++)
		n += live(g, &g->slot[i]);
	const size_t len = BLOB_HEADER + (size_t)n * BLOB_ENTRY;
	if (!buf || cap < len)
		return len;
	put32(buf, BLOB_MAGIC);
	put32(buf + 4, BLOB_VERSION);
	put32(buf + 8, a->c);
	put32(buf + 12, g->span);
	put64(buf + 16, a->p);
	put32(buf + 24, a->recent[T1]);
	put32(buf + 28, a->recent[T2]);
	put64(buf + 32, g->adds);
	put32(buf + 40, n);
	uint8_t *w = buf + BLOB_HEADER;
	for (uint64_t i = 0; i < ghost_slots(g); i++) {
		if (!live(g, &g->slot[i]))
			continue;
		put32(w, (uint32_t)i);
		put32(w + 4, g->slot[i].fingerprint);
		put32(w + 8, g->slot[i].stamp);
		w += BLOB_ENTRY;
	}
	return len;
}

static kvbm_status ad_state_import(void *st, const uint8_t *buf, size_t len)
{
	struct adaptive *a = st;
	struct kvbm__ghost *g = &a->ghost;

	if (!buf || len < BLOB_HEADER || get32(buf) != BLOB_MAGIC || get32(buf + 4) != BLOB_VERSION)
		return KVBM_E_CORRUPT;
	if (get32(buf + 8) != a->c || get32(buf + 12) != g->span)
		return KVBM_E_MISMATCH;
	const uint32_t n = get32(buf + 40);
	const uint64_t p = get64(buf + 16);
	if (len != BLOB_HEADER + (uint64_t)n * BLOB_ENTRY ||
	    p > (uint64_t)a->c * P_ONE || get32(buf + 24) > g->span ||
	    get32(buf + 28) > g->span - get32(buf + 24))
		return KVBM_E_CORRUPT;
	const uint8_t *r = buf + BLOB_HEADER;
	for (uint32_t k = 0; k < n; k++, r += BLOB_ENTRY)
		if (get32(r) >= ghost_slots(g) || get32(r + 4) == 0)
			return KVBM_E_CORRUPT;
	/* Valid: nothing changed above, everything changes below. */
	memset(g->slot, 0, ghost_slots(g) * sizeof(*g->slot));
	r = buf + BLOB_HEADER;
	for (uint32_t k = 0; k < n; k++, r += BLOB_ENTRY) {
		g->slot[get32(r)].fingerprint = get32(r + 4);
		g->slot[get32(r)].stamp = get32(r + 8);
	}
	g->adds = get64(buf + 32);
	a->p = p;
	a->recent[T1] = get32(buf + 24);
	a->recent[T2] = get32(buf + 28);
	return KVBM_OK;
}

const struct kvbm__evict_ops kvbm__evict_adaptive = {
	.name = "adaptive",
	.create = ad_create,
	.destroy = ad_destroy,
	.insert = ad_insert,
	.remove = ad_remove,
	.victim = ad_victim,
	.order_key = ad_order_key,
	.touch = ad_touch,
	.frequency = ad_frequency,
	.restore_frequency = ad_restore_frequency,
	.state_export = ad_state_export,
	.state_import = ad_state_import,
};
