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
 * smaller than one block still add up; one ghost remembers the last 6 to
 * 8 x c evicted hashes of both lists (as many entries as ARC's two 4 x c
 * ghosts, one lookup per new block instead of two), tagged with the list
 * each came from; |B1| and |B2| are the evictions from each list among
 * roughly the last 8 x c (counters halved when their sum passes the span).
 * The ghost is evict_ghost24.h's, 3.8 bytes an entry: with evict_ghost.h's
 * 16 (an 8 MB table for 64k blocks) its adds and lookups took about 35 of
 * the 157 ns per block of the eviction-bound cycle in docs/BENCHMARKS.md,
 * prefetched or not; evict_ghost16.h's 2.6, with 12-bit fingerprints,
 * made one new block in 220 a false ghost hit. The sweep that chose the
 * parameters is there too:
 * starts from 0.3 c to 0.7 c and ghosts of 6 to 8 x c all met the issue's
 * bounds with the previous ghost.
 *
 * Persistence: the catalog keeps each pooled block's list as its frequency
 * (1 = T2; from another policy's catalog, blocks used twice go to T2) and
 * its release tick as the order key; p, the ghost counters
 * and the ghost table are the adaptive state of state_export/state_import
 * (format below), so a warm restart resumes with the same split and ghosts.
 */
#include <stdlib.h>
#include <string.h>

#include "evict.h"
#include "evict_ghost24.h"
#include "evict_list.h"
#include "../table_alloc.h"

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

/* A cursor walking each list ahead of its head, one step per insert or
 * touch, prefetching the record it reaches: the victims' records are
 * then cached when the evictions come. Without it every eviction read
 * the next head's record from memory, one miss after another (a list is
 * a chain: the next id is in the record). One step at a time, because
 * the line a step reads is the one the previous step prefetched; a walk
 * of many steps at once waits on each. Only prefetches: a stale cursor
 * (its block left the list) costs a useless prefetch, no decision. */
#define LEAD 16

struct walker {
	uint32_t at;   /* a block of the list, or KVBM__LIST_NIL: start at the head */
	uint32_t lead; /* about how many steps at is ahead of the head */
};

struct adaptive {
	struct node *node; /* 64-byte aligned */
	struct kvbm__dlist lists[2];
	struct walker walk[2];
	int walk_turn;       /* the list whose walker steps next */
	uint64_t newest;     /* the highest tick inserted */
	uint32_t c;          /* block_count */
	uint64_t p;          /* T1's target, in 1/P_ONE blocks, 0..c * P_ONE */
	uint32_t recent[2];  /* evictions from T1, T2 among about the last span */
	struct kvbm__ghost24 ghost;
	kvbm_hash stash_hash; /* restore_frequency() just before insert() */
	uint32_t stash_list;
	bool stashed;
	bool uses;            /* restoring another policy's catalog (restore_uses) */
};

static void ad_destroy(void *st)
{
	struct adaptive *a = st;

	if (!a)
		return;
	kvbm__table_free_lines(a->node, (size_t)a->c * sizeof(*a->node));
	kvbm__ghost24_free(&a->ghost);
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
	const bool ok = (a->node = kvbm__table_alloc_lines((size_t)a->c * sizeof(*a->node))) &&
			kvbm__ghost24_init(&a->ghost, ghost_span(p->block_count)) == KVBM_OK;
	if (!ok) {
		ad_destroy(a);
		return KVBM_E_NOMEM;
	}
	kvbm__dlist_init(&a->lists[T1]);
	kvbm__dlist_init(&a->lists[T2]);
	a->walk[T1].at = a->walk[T2].at = KVBM__LIST_NIL;
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
static void append(struct adaptive *a, int l, uint32_t b, struct node rec)
{
	struct kvbm__dlist *list = &a->lists[l];

	rec.prev = list->tail;
	rec.next = KVBM__LIST_NIL;
	a->node[b] = rec;
	if (list->tail != KVBM__LIST_NIL)
		a->node[list->tail].next = b;
	else
		list->head = b;
	list->tail = b;
	list->size++;
}

/* Put b in list l in key order, as kvbm__dlist_insert_by_key does: from
 * both ends at once, so the cost is the distance from the nearer one (an
 * unpinned victim goes back near the head, a touched prefix near the
 * tail). The walker's block stays in its list, so it needs nothing; its
 * lead is one short if b lands behind it, which only delays a prefetch. */
static void insert_by_key(struct adaptive *a, int l, uint32_t b, struct node rec)
{
	struct kvbm__dlist *list = &a->lists[l];
	uint32_t after = list->tail, before = list->head;

	/* after: from the tail, the last record with a smaller key;
	 * before: from the head, the first with a larger one. */
	while (after != KVBM__LIST_NIL && a->node[after].key > rec.key) {
		if (a->node[before].key > rec.key) {
			after = a->node[before].prev;
			break;
		}
		after = a->node[after].prev;
		before = a->node[before].next;
	}
	if (after == list->tail) {
		append(a, l, b, rec);
		return;
	}
	before = after == KVBM__LIST_NIL ? list->head : a->node[after].next;
	rec.prev = after;
	rec.next = before;
	a->node[b] = rec;
	a->node[before].prev = b;
	if (after != KVBM__LIST_NIL)
		a->node[after].next = b;
	else
		list->head = b;
	list->size++;
}

/* The list block b had at tick e->tick, or -1 if this is not b's own
 * tick: b comes back where it was (kvbm_unpin, or a reclaim undone at
 * close), its record still the one it left with. */
static int list_had(const struct adaptive *a, uint32_t b, const struct kvbm__evict_entry *e)
{
	const struct node *n = &a->node[b];

	return n->hash == e->hash && n->key >> 1 == e->tick ? (int)(n->key & 1) : -1;
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

/* One step of the walker of list l, if it is not far enough ahead. */
static bool walk_step(struct adaptive *a, int l)
{
	struct walker *w = &a->walk[l];

	if (w->lead >= LEAD)
		return false;
	const uint32_t next = w->at == KVBM__LIST_NIL ? a->lists[l].head : a->node[w->at].next;
	if (next == KVBM__LIST_NIL)
		return false;
	if (w->at != KVBM__LIST_NIL)
		w->lead++;
	w->at = next;
	__builtin_prefetch(&a->node[next]);
	return true;
}

/* Block b leaves the walker's list, as its head if victim. */
static void walk_leave(struct walker *w, uint32_t b, bool victim)
{
	if (w->at == b) {
		w->at = KVBM__LIST_NIL; /* restart from the head */
		w->lead = 0;
	} else if (victim && w->lead) {
		w->lead--;
	}
}

/* The lists in turn, so that a walker's consecutive steps are two calls
 * apart and the line a step reads has had the time to arrive. */
static void walk(struct adaptive *a)
{
	a->walk_turn ^= 1;
	if (!walk_step(a, a->walk_turn))
		walk_step(a, !a->walk_turn);
}

static void ad_insert(void *st, uint32_t b, const struct kvbm__evict_entry *e)
{
	struct adaptive *a = st;
	const uint64_t p_max = (uint64_t)a->c * P_ONE;
	/* Ticks only grow, so an older one is a block put back at the place
	 * it had, not a release: it goes in by key, off the fast path. */
	const bool old = e->tick <= a->newest;
	int l = T1, had;

	if (!old)
		a->newest = e->tick;
	if (a->stashed && a->stash_hash == e->hash) {
		a->stashed = false; /* restore: the list the catalog recorded */
		l = a->stash_list ? T2 : T1;
	} else if (old && (had = list_had(a, b, e)) >= 0) {
		l = had; /* a pin is no use: no promotion, no ghost */
	} else if (e->first_tick != e->tick && a->node[b].hash == e->hash) {
		l = T2; /* back from a hit: used twice */
	} else {
		switch (kvbm__ghost24_take(&a->ghost, e->hash)) {
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
	const struct node rec = {.key = e->tick << 1 | (uint64_t)l, .hash = e->hash};
	if (old)
		insert_by_key(a, l, b, rec);
	else
		append(a, l, b, rec);
	walk(a);
}

static void ad_remove(void *st, uint32_t b)
{
	struct adaptive *a = st;
	const int l = (int)(a->node[b].key & 1);

	walk_leave(&a->walk[l], b, false);
	unlink_node(a, l, b);
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
	walk_leave(&a->walk[l], b, true);
	unlink_node(a, l, b);
	kvbm__ghost24_add(&a->ghost, a->node[b].hash, (unsigned)l);
	if (++a->recent[l] > a->ghost.span - a->recent[!l]) {
		a->recent[T1] /= 2;
		a->recent[T2] /= 2;
	}
	*out = b;
	return true;
}

/* The reserve gives victim b back (its record is as ad_victim left it):
 * its eviction never happened, so neither do its ghost entry and count;
 * else a later registration of the hash would count as a ghost hit, and
 * the counts would lean toward its list. */
static void ad_unevict(void *st, uint32_t b)
{
	struct adaptive *a = st;
	const int from = (int)(a->node[b].key & 1);

	(void)kvbm__ghost24_take(&a->ghost, a->node[b].hash);
	if (a->recent[from])
		a->recent[from]--;
}

static void ad_touch(void *st, kvbm_hash hash, bool registered)
{
	struct adaptive *a = st;

	if (registered) /* a hit's release looks nothing up */
		kvbm__ghost24_prefetch(&a->ghost, hash);
	walk(a);
}

static void ad_prefetch(void *st, uint32_t b)
{
	__builtin_prefetch(&((const struct adaptive *)st)->node[b], 1);
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
	/* A use count: T2 holds the blocks used at least twice. */
	a->stash_list = a->uses ? freq >= 2 : freq != 0;
	a->stashed = true;
}

static void ad_restore_uses(void *st)
{
	((struct adaptive *)st)->uses = true;
}

/*
 * The adaptive state blob, version 3, all integers little-endian:
 *
 *   offset size field
 *        0    4 magic "KVAD"
 *        4    4 version (3)
 *        8    4 block_count the state was built for
 *       12    4 ghost span (8 x block_count)
 *       16    8 p, T1's target in 1/65536 blocks (<= block_count * 65536)
 *       24    4 |B1|: evictions from T1 among about the last span
 *       28    4 |B2|: the same for T2
 *       32    4 n, ghost buckets (1.25 x span / 21, rounded up), or 0
 *               before the first eviction: the table, all empty, is
 *               left out (31 MB at 1M blocks that a restart of a cache
 *               never filled would read for nothing)
 *       36    4 the ghost's epoch (0..7)
 *       40    4 adds left in that epoch (1..span / 4 rounded up)
 *       44    4 q, evictions queued for the table (<= 8), oldest first
 *       48 12 q queued evictions: hash (8), list (4: 0 or 1; 2 for one
 *               taken back while queued, kept since it still holds its
 *               place in the queue)
 *    48+12q 64 n buckets as evict_ghost24.h keeps them: 21 entries' low
 *               halves (16 bits: 0 = empty, else the fingerprint's low
 *               16 bits), their 21 high bytes (fingerprint bits 16-19,
 *               list, epoch; 0 for an empty lane), the cursor (< 21)
 *
 * The table is written whole: at 3.8 bytes per remembered eviction it is
 * smaller than version 1's live entries (12 bytes each) once the ghost
 * has filled, and its geometry follows from block_count, so a blob is
 * imported only into a policy of the same block_count.
 *
 * The previous versions are checked as they always were and then import
 * their split and counters (offsets 16-31, the same fields in all three)
 * with an empty ghost: their entries cannot be placed in this table,
 * whose fingerprints take bits of the hash that they did not keep.
 * Version 2 (the previous release) had the same header and queue, then
 * 1.25 x span / 31 buckets of 32 16-bit lanes, 31 entries and a cursor
 * (< 31); version 1 8-way buckets of 32-bit fingerprints and stamps. The
 * split is what takes long to learn; the ghost refills within span
 * evictions.
 */
#define BLOB_MAGIC 0x4441564bu /* "KVAD" read as a little-endian u32 */
#define BLOB_VERSION 3u
#define BLOB_HEADER 48u
#define BLOB_QUEUED 12u
#define BLOB_BUCKET ((uint32_t)KVBM__G24_BUCKET)
#define V2_ENTRIES 31u
#define V2_BUCKET 64u
#define V1_HEADER 44u
#define V1_ENTRY 12u
#define V1_WAYS 8u

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

static uint32_t get16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | get16(p + 2) << 16;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static size_t ad_state_export(void *st, uint8_t *buf, size_t cap)
{
	const struct adaptive *a = st;
	const struct kvbm__ghost24 *g = &a->ghost;
	const uint32_t q = g->q_len, n = g->empty ? 0 : g->n_buckets;
	const size_t len = BLOB_HEADER + (size_t)q * BLOB_QUEUED + (size_t)n * BLOB_BUCKET;

	if (!buf || cap < len)
		return len;
	put32(buf, BLOB_MAGIC);
	put32(buf + 4, BLOB_VERSION);
	put32(buf + 8, a->c);
	put32(buf + 12, g->span);
	put64(buf + 16, a->p);
	put32(buf + 24, a->recent[T1]);
	put32(buf + 28, a->recent[T2]);
	put32(buf + 32, n);
	put32(buf + 36, g->epoch);
	put32(buf + 40, g->epoch_left);
	put32(buf + 44, q);
	uint8_t *w = buf + BLOB_HEADER;
	for (uint32_t i = 0; i < g->q_len; i++) {
		const uint32_t k = (g->q_head + i) % KVBM__G24_QUEUE;
		put64(w, g->q_hash[k]);
		put32(w + 8, g->q_tag[k] == KVBM__G24_VOID ? 2 : g->q_tag[k]);
		w += BLOB_QUEUED;
	}
	/* The table's bytes are the format (evict_ghost24.h). */
	memcpy(w, g->line, (size_t)n * BLOB_BUCKET);
	return len;
}

/* The slots of version 1's table for a span: a power of two of 8-way
 * buckets, at least 2 x span slots (evict_ghost.h's geometry). */
static uint64_t v1_slots(uint32_t span)
{
	uint64_t buckets = 2;

	while (buckets * V1_WAYS < 2ull * span)
		buckets <<= 1;
	return buckets * V1_WAYS;
}

/* Version 1 whole and in range. */
static kvbm_status v1_check(const struct adaptive *a, const uint8_t *buf, size_t len)
{
	const struct kvbm__ghost24 *g = &a->ghost;

	if (len < V1_HEADER)
		return KVBM_E_CORRUPT;
	const uint32_t n = get32(buf + 40);
	if (len != V1_HEADER + (uint64_t)n * V1_ENTRY)
		return KVBM_E_CORRUPT;
	const uint8_t *r = buf + V1_HEADER;
	for (uint32_t k = 0; k < n; k++, r += V1_ENTRY)
		if (get32(r) >= v1_slots(g->span) || get32(r + 4) == 0)
			return KVBM_E_CORRUPT;
	return KVBM_OK;
}

/* The header fields versions 2 and 3 share, then the queue: in range,
 * for a table of n buckets of bucket bytes. */
static kvbm_status queue_check(const struct adaptive *a, const uint8_t *buf, size_t len,
			       uint32_t n, uint32_t bucket)
{
	const struct kvbm__ghost24 *g = &a->ghost;

	if (len < BLOB_HEADER || get32(buf + 32) != n || get32(buf + 36) > KVBM__G24_EPOCH ||
	    get32(buf + 40) == 0 || get32(buf + 40) > g->epoch_len ||
	    get32(buf + 44) > KVBM__G24_QUEUE)
		return KVBM_E_CORRUPT;
	const uint32_t q = get32(buf + 44);
	if (len != BLOB_HEADER + (size_t)q * BLOB_QUEUED + (size_t)n * bucket)
		return KVBM_E_CORRUPT;
	for (uint32_t i = 0; i < q; i++)
		if (get32(buf + BLOB_HEADER + (size_t)i * BLOB_QUEUED + 8) > 2)
			return KVBM_E_CORRUPT;
	return KVBM_OK;
}

/* Version 2 whole and in range (evict_ghost16.h's geometry: 1.25 slots
 * per span entry, 31 to a bucket, the cursor in lane 31). */
static kvbm_status v2_check(const struct adaptive *a, const uint8_t *buf, size_t len)
{
	const uint64_t slots = ((uint64_t)a->ghost.span * 5 + 3) / 4;
	const uint32_t n = (uint32_t)((slots + V2_ENTRIES - 1) / V2_ENTRIES);
	const kvbm_status st = queue_check(a, buf, len, n, V2_BUCKET);

	if (st != KVBM_OK)
		return st;
	const uint8_t *t = buf + BLOB_HEADER + (size_t)get32(buf + 44) * BLOB_QUEUED;
	for (uint32_t k = 0; k < n; k++)
		if (get16(t + (size_t)k * V2_BUCKET + 2 * V2_ENTRIES) >= V2_ENTRIES)
			return KVBM_E_CORRUPT;
	return KVBM_OK;
}

/* Whether n version-3 buckets at t have cursors in range (a put writes
 * the lane a cursor names). */
static bool cursors_ok(const uint8_t *t, size_t n)
{
	for (size_t k = 0; k < n; k++, t += BLOB_BUCKET)
		if (t[KVBM__G24_CURSOR] >= KVBM__G24_ENTRIES)
			return false;
	return true;
}

/* Version 3 whole and in range: the cursors (cursors_ok). A lane's high
 * byte is not checked: a lane whose low half
 * is 0 is empty whatever it holds, since no fingerprint's is, and the
 * check of 21 lanes per bucket was a tenth of a 1M-block restore. */
static kvbm_status v3_check(const struct adaptive *a, const uint8_t *buf, size_t len)
{
	const uint32_t n = len >= BLOB_HEADER && get32(buf + 32) == 0 ? 0 : a->ghost.n_buckets;
	const kvbm_status st = queue_check(a, buf, len, n, BLOB_BUCKET);

	if (st != KVBM_OK)
		return st;
	if (n == 0 && get32(buf + 44) != 0)
		return KVBM_E_CORRUPT; /* queued adds without a table */
	const uint8_t *t = buf + BLOB_HEADER + (size_t)get32(buf + 44) * BLOB_QUEUED;
	return cursors_ok(t, n) ? KVBM_OK : KVBM_E_CORRUPT;
}

/* The fields every version starts with (offsets 0-31), in range. */
static kvbm_status head_check(const struct adaptive *a, const uint8_t *buf, size_t len)
{
	if (!buf || len < 32 || get32(buf) != BLOB_MAGIC)
		return KVBM_E_CORRUPT;
	const uint32_t version = get32(buf + 4);
	if (version < 1 || version > BLOB_VERSION)
		return KVBM_E_CORRUPT;
	if (get32(buf + 8) != a->c || get32(buf + 12) != a->ghost.span)
		return KVBM_E_MISMATCH;
	if (get64(buf + 16) > (uint64_t)a->c * P_ONE || get32(buf + 24) > a->ghost.span ||
	    get32(buf + 28) > a->ghost.span - get32(buf + 24))
		return KVBM_E_CORRUPT;
	return KVBM_OK;
}

/* Everything but the table, from a checked header (and queue). */
static void take_head(struct adaptive *a, const uint8_t *buf, uint32_t version)
{
	struct kvbm__ghost24 *g = &a->ghost;
	const uint32_t q = version == BLOB_VERSION ? get32(buf + 44) : 0;

	g->q_head = 0;
	g->q_len = q;
	g->epoch = version == BLOB_VERSION ? get32(buf + 36) : 0;
	g->epoch_left = version == BLOB_VERSION ? get32(buf + 40) : g->epoch_len;
	for (uint32_t i = 0; i < q; i++) {
		const uint8_t *r = buf + BLOB_HEADER + (size_t)i * BLOB_QUEUED;
		g->q_hash[i] = get64(r);
		g->q_tag[i] = get32(r + 8) == 2 ? KVBM__G24_VOID : (uint8_t)get32(r + 8);
	}
	kvbm__ghost24_index_queue(g);
	a->p = get64(buf + 16);
	a->recent[T1] = get32(buf + 24);
	a->recent[T2] = get32(buf + 28);
}

static kvbm_status ad_state_import(void *st, const uint8_t *buf, size_t len)
{
	struct adaptive *a = st;
	struct kvbm__ghost24 *g = &a->ghost;
	kvbm_status checked = head_check(a, buf, len);

	if (checked != KVBM_OK)
		return checked;
	const uint32_t version = get32(buf + 4);
	checked = version == 1	 ? v1_check(a, buf, len)
		  : version == 2 ? v2_check(a, buf, len)
				 : v3_check(a, buf, len);
	if (checked != KVBM_OK)
		return checked;
	/* Valid: nothing changed above, everything changes below. */
	const size_t table = (size_t)g->n_buckets * BLOB_BUCKET;
	const uint32_t q = version == BLOB_VERSION ? get32(buf + 44) : 0;
	if (version == BLOB_VERSION && get32(buf + 32) != 0) {
		memcpy(g->line, buf + BLOB_HEADER + (size_t)q * BLOB_QUEUED, table);
		g->empty = false;
	} else {
		if (!g->empty)
			memset(g->line, 0, table);
		g->empty = true;
	}
	take_head(a, buf, version);
	return KVBM_OK;
}

/* Table bytes read and checked at a time: small enough to be checked
 * while the read left them in cache. */
#define READ_CHUNK ((size_t)64 << 10)

/* ad_state_import through read(): a version 3 table goes straight into
 * an empty ghost (a policy just created, as at a restore), a chunk at a
 * time, each chunk's cursors checked as it lands. Through one buffer
 * instead, SQLite copied the 31 MB of a 1M-block ghost into memory of
 * its own, which the import then checked and copied again: 33 ms of the
 * restore. An empty ghost's table is all zero, so a refusal midway only
 * has to zero what it read. Otherwise, and for the older versions, the
 * blob goes through one buffer. */
static kvbm_status ad_state_import_read(void *st, size_t len, kvbm__state_read read, void *ctx)
{
	struct adaptive *a = st;
	struct kvbm__ghost24 *g = &a->ghost;
	uint8_t head[BLOB_HEADER + KVBM__G24_QUEUE * BLOB_QUEUED];
	kvbm_status s = len >= BLOB_HEADER ? read(ctx, 0, head, BLOB_HEADER) : KVBM_OK;

	if (s != KVBM_OK)
		return s;
	const size_t table = (size_t)g->n_buckets * BLOB_BUCKET;
	const bool direct = g->empty && len >= BLOB_HEADER && get32(head) == BLOB_MAGIC &&
			    get32(head + 4) == BLOB_VERSION && get32(head + 32) == g->n_buckets &&
			    g->n_buckets > 0 && get32(head + 44) <= KVBM__G24_QUEUE;
	if (!direct) {
		uint8_t *buf = malloc(len ? len : 1);
		if (!buf)
			return KVBM_E_NOMEM;
		if ((s = read(ctx, 0, buf, len)) == KVBM_OK)
			s = ad_state_import(st, buf, len);
		free(buf);
		return s;
	}
	const size_t queued = (size_t)get32(head + 44) * BLOB_QUEUED, at = BLOB_HEADER + queued;
	if ((s = read(ctx, BLOB_HEADER, head + BLOB_HEADER, queued)) != KVBM_OK ||
	    (s = head_check(a, head, len)) != KVBM_OK ||
	    (s = queue_check(a, head, len, g->n_buckets, BLOB_BUCKET)) != KVBM_OK)
		return s;
	for (size_t done = 0; done < table; done += READ_CHUNK) {
		const size_t n = table - done < READ_CHUNK ? table - done : READ_CHUNK;
		s = read(ctx, at + done, g->line + done, n);
		if (s == KVBM_OK && !cursors_ok(g->line + done, n / BLOB_BUCKET))
			s = KVBM_E_CORRUPT;
		if (s != KVBM_OK) {
			memset(g->line, 0, done + n);
			return s;
		}
	}
	g->empty = false;
	take_head(a, head, BLOB_VERSION);
	return KVBM_OK;
}


/* ad_victim's choice replayed on cursors: an eviction moves the counts
 * in recent[] and the ghost, neither of which the choice reads, and leaves
 * p alone. */
static uint32_t ad_peek(void *st, uint32_t n, uint32_t *out, uint32_t *scratch)
{
	const struct adaptive *a = st;
	uint32_t at[2] = {a->lists[T1].head, a->lists[T2].head};
	uint64_t t1 = a->lists[T1].size;
	uint32_t got = 0;

	(void)scratch;
	while (got < n && (at[T1] != KVBM__LIST_NIL || at[T2] != KVBM__LIST_NIL)) {
		int l;
		if (at[T2] == KVBM__LIST_NIL)
			l = T1;
		else if (at[T1] == KVBM__LIST_NIL)
			l = T2;
		else if (t1 * P_ONE > a->p)
			l = T1;
		else
			l = a->node[at[T1]].key < a->node[at[T2]].key ? T1 : T2;
		out[got++] = at[l];
		at[l] = a->node[at[l]].next;
		t1 -= l == T1;
	}
	return got;
}

const struct kvbm__evict_ops kvbm__evict_adaptive = {
	.name = "adaptive",
	.create = ad_create,
	.destroy = ad_destroy,
	.insert = ad_insert,
	.remove = ad_remove,
	.victim = ad_victim,
	.unevict = ad_unevict,
	.peek = ad_peek,
	.order_key = ad_order_key,
	.touch = ad_touch,
	.prefetch = ad_prefetch,
	.frequency = ad_frequency,
	.restore_frequency = ad_restore_frequency,
	.restore_uses = ad_restore_uses,
	.state_export = ad_state_export,
	.state_import = ad_state_import,
	.state_import_read = ad_state_import_read,
};
