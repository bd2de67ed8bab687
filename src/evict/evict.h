/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The inactive-pool backend interface. A policy orders the blocks that are
 * registered but unreferenced and picks eviction victims. It sees only
 * block ids and the facts in kvbm__evict_entry; the manager calls every
 * operation with its lock held, so policies need no locking of their own.
 * Adding a policy is one new file, src/evict/evict_<name>.c, defining a
 * `const struct kvbm__evict_ops kvbm__evict_<name>`, plus its line in the
 * table of src/evict/evict.c, its line in src/evict/meson.build and its
 * enum value in kvbm.h.
 */
#ifndef KVBM_EVICT_H
#define KVBM_EVICT_H

#include "kvbm.h"

/* What a policy learns about a block when it enters the inactive pool. */
struct kvbm__evict_entry {
	kvbm_hash hash;     /* sequence hash */
	kvbm_hash parent;   /* parent's sequence hash; 0 if root or unknown */
	uint32_t position;  /* position in its sequence, KVBM_POSITION_UNKNOWN if unknown */
	uint32_t priority;  /* 0..100, KVBM_PRIORITY_DEFAULT unless set */
	uint32_t retention; /* release ticks the priority holds, 0 = forever */
	uint64_t tick;      /* manager's logical clock at this release (unique, increasing) */
	uint64_t first_tick; /* clock when this registration first entered the pool:
				equal to tick on the first release, kept across hits */
};

struct kvbm__evict_params {
	uint32_t block_count;   /* the pool never holds more blocks than this */
	uint8_t thresholds[3];  /* multi-level LRU tier thresholds */
};

/* Copies n bytes of a blob from offset off into dst. */
typedef kvbm_status (*kvbm__state_read)(void *ctx, size_t off, void *dst, size_t n);

struct kvbm__evict_ops {
	const char *name;
	/* Allocate state for up to p->block_count blocks. All memory a
	 * policy needs in steady state is allocated here: insert, remove and
	 * victim must not fail. Returns KVBM_OK or KVBM_E_NOMEM. */
	kvbm_status (*create)(const struct kvbm__evict_params *p, void **out);
	void (*destroy)(void *st);
	/* Block enters the pool (it is not in it). */
	void (*insert)(void *st, uint32_t block, const struct kvbm__evict_entry *e);
	/* Block leaves the pool without being evicted (hit, reset, reclaim
	 * by id). It is in the pool. */
	void (*remove)(void *st, uint32_t block);
	/* Choose the next victim, remove it, store its id; false when empty. */
	bool (*victim)(void *st, uint32_t *block);
	/* Optional: a block victim() returned comes back before it was
	 * reused (the catalog's reserve gives it back: a hit on it, or the
	 * close), and is inserted next. Undo what the eviction recorded (a
	 * ghost entry, a count); its record is as victim() left it. */
	void (*unevict)(void *st, uint32_t block);
	/* The eviction-order key the catalog stores for a block in the pool.
	 * Re-inserting blocks in ascending key order with e->tick = key (and
	 * e->first_tick = key) must rebuild the same order. */
	uint64_t (*order_key)(void *st, uint32_t block);
	/* Optional (NULL if unused): a hash was registered (registered: its
	 * block's first release is next, where ghost policies look the hash
	 * up, so they prefetch it here) or hit. */
	void (*touch)(void *st, kvbm_hash hash, bool registered);
	/* Optional: block will be inserted soon; start loading what the
	 * insert writes (a restore inserts blocks in eviction order, so at
	 * random, and prefetches a few entries ahead). No decision. */
	void (*prefetch)(void *st, uint32_t block);
	/* Optional: the policy's frequency state of a registered block, in or
	 * out of the pool (persisted in the catalog's frequency column). */
	uint32_t (*frequency)(void *st, uint32_t block, kvbm_hash hash);
	/* Optional: restore a persisted frequency before the block's insert:
	 * what this policy's frequency op wrote, or, from a catalog another
	 * policy wrote, the block's use count (access_count: 1 once
	 * registered, one more per hit), the one column every policy writes
	 * alike. */
	void (*restore_frequency)(void *st, kvbm_hash hash, uint32_t freq);
	/* Optional: the restore that follows is of another policy's catalog,
	 * so restore_frequency gets use counts. */
	void (*restore_uses)(void *st);
	/* Optional pair, both set or both NULL: the policy's adaptive state
	 * beyond its pooled blocks (which order_key and frequency already
	 * persist), e.g. a learned split and ghost lists, as an opaque blob
	 * for warm restart. The blob starts with a 4-byte magic and a 4-byte
	 * little-endian version; each policy documents the rest beside its
	 * implementation and rejects versions it does not know.
	 *
	 * state_export returns the blob's size in bytes and writes it to buf
	 * only if buf is not NULL and cap is at least that size (call once
	 * with NULL to size the buffer; the size holds until the next
	 * operation on the policy). It does not change the policy and cannot
	 * fail.
	 *
	 * state_import replaces the adaptive state with the blob's. Call it
	 * on a fresh instance before the restored blocks are inserted (their
	 * inserts do not touch the adaptive state). Returns KVBM_OK;
	 * KVBM_E_CORRUPT (not this policy's blob, unknown version, truncated,
	 * values out of range) or KVBM_E_MISMATCH (written for another
	 * block_count), and then the policy is unchanged. */
	size_t (*state_export)(void *st, uint8_t *buf, size_t cap);
	kvbm_status (*state_import)(void *st, const uint8_t *buf, size_t len);
	/* Optional, with the pair: state_import of a blob of len bytes that
	 * read() fetches in pieces (each call's status, if not KVBM_OK, is
	 * returned as is), so that a large blob can go straight into the
	 * policy's own tables instead of through a copy of it. The same
	 * results, and on any failure the policy is unchanged. */
	kvbm_status (*state_import_read)(void *st, size_t len, kvbm__state_read read, void *ctx);
	/* Optional (NULL: previews unsupported): the next n victims, in the
	 * order victim() would return them if nothing else happened, into
	 * out; returns how many (fewer when the pool holds fewer). Changes
	 * no decision, not even through the adaptive state victim() would
	 * update; it may settle lazy bookkeeping victim() would settle first
	 * (priority demotes expired retentions). scratch holds 2n + 1
	 * entries for the policy's own use. */
	uint32_t (*peek)(void *st, uint32_t n, uint32_t *out, uint32_t *scratch);

	/*
	 * Optional, for a policy that also orders blocks outside the pool, as
	 * vLLM's offloading ARC counts blocks being written or loaded in its
	 * lists. Set all five or none.
	 *
	 * staged: block b (out of the pool) was sealed with hash and is being
	 * written; the policy may give it a place now. Its insert, when it is
	 * registered and released, comes with the same hash.
	 * forget: block b went back to reset or mutable without entering the
	 * pool (a failed or duplicate store): drop whatever staged or hold
	 * recorded. Called for every block freed; a no-op for unknown ones.
	 * hold: block b, in the pool, is pinned: it leaves the pool (never a
	 * victim) but keeps its place, and its next insert puts it back there
	 * (the manager then skips kvbm_unpin's re-insert at the old key).
	 * use: kvbm_touch named hash, registered or not; the policy moves its
	 * own entries and the manager does not re-insert the block.
	 * can_evict: whether n victims in a row exist under the policy's own
	 * rule; allocation fails with KVBM_E_EXHAUSTED when not, although
	 * blocks may be inactive (victim itself still returns any block then,
	 * for the callers that must drain the pool). */
	void (*staged)(void *st, uint32_t block, kvbm_hash hash);
	void (*forget)(void *st, uint32_t block);
	void (*hold)(void *st, uint32_t block);
	void (*use)(void *st, kvbm_hash hash);
	bool (*can_evict)(void *st, uint32_t n);
};

/* The ops of a policy, or NULL for a value outside kvbm_evict_policy. */
const struct kvbm__evict_ops *kvbm__evict_ops_for(kvbm_evict_policy policy);

#endif /* KVBM_EVICT_H */
