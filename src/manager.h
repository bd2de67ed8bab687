/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The manager's internal layout, shared by the core files (manager.c,
 * block.c, match.c, pool.c, registry.c, journal.c) and the modules that
 * hang off it (catalog, events, metrics). One mutex guards everything in
 * struct kvbm_manager except the fields marked otherwise.
 */
#ifndef KVBM_MANAGER_H
#define KVBM_MANAGER_H

#include <pthread.h>
#include <stdarg.h>

#include "kvbm.h"
#include "block_table.h"
#include "evict/evict.h"
#include "registry.h"
#include "journal.h"

#define KVBM__NIL UINT32_MAX

enum kvbm__slot_state {
	KVBM__SLOT_RESET = 0,   /* in reset (or reset_unsafe) list */
	KVBM__SLOT_MUTABLE,     /* held by a kvbm_mutable */
	KVBM__SLOT_STAGED,      /* held by a kvbm_complete; hash set */
	KVBM__SLOT_PRIMARY,     /* registered, in registry, refs + dups > 0 */
	KVBM__SLOT_DUPLICATE,   /* registered copy; refs > 0; primary set */
	KVBM__SLOT_INACTIVE,    /* in registry and in the eviction policy */
	KVBM__SLOT_RECLAIM,     /* in registry, taken out of the policy by the
				   catalog writer; in reclaim_pending, freeing
				   or reserve */
};

/* An intrusive FIFO of slots linked through slot.prev/next. */
struct kvbm__list {
	uint32_t head, tail, count;
};

struct kvbm__slot {
	kvbm_hash hash;         /* STAGED and later */
	kvbm_hash parent;       /* 0 for root/unknown */
	uint64_t release_tick;  /* clock at last entry to the inactive pool */
	uint64_t access_tick;   /* clock at last registration or hit */
	uint64_t first_tick;    /* clock when this registration first went inactive, 0 before */
	uint32_t position;      /* KVBM_POSITION_UNKNOWN if not given */
	uint32_t gen;           /* guard generation (mutable/complete); never 0 once used */
	uint32_t epoch;         /* registration epoch, for weak handles */
	uint32_t refs;          /* live immutable references */
	uint32_t dups;          /* PRIMARY: live duplicates keeping it active */
	uint32_t primary;       /* DUPLICATE: block id of its primary */
	uint32_t prev, next;    /* list links */
	uint32_t access_count;  /* hits + registrations, persisted */
	uint32_t priority;      /* 0..100 */
	uint32_t retention;     /* see kvbm_immutable_set_priority */
	uint8_t state;          /* enum kvbm__slot_state */
	uint8_t reset_on_release;
	uint8_t dirty;          /* queued for the catalog writer */
	uint8_t durable_claim;  /* a committed or in-flight catalog row may claim hash for this block */
	uint8_t row_taken;      /* an image of this registration went to the writer (its row
				   may be on disk); cleared with the hash */
	uint8_t list;           /* enum kvbm__list_id: which list links the slot */
};

enum kvbm__list_id {
	KVBM__IN_NONE = 0,
	KVBM__IN_RESET,
	KVBM__IN_RESET_UNSAFE,
	KVBM__IN_RECLAIM_PENDING,
	KVBM__IN_RESERVE,
	KVBM__IN_FREEING,       /* RECLAIM blocks whose free record is being committed */
	KVBM__IN_RESET_FREEING, /* RESET blocks whose free record is being committed */
};

/* One live immutable reference; free entries chain through `block`. */
struct kvbm__ref {
	uint32_t block;
	uint32_t gen; /* odd while live, even while free; 0 never issued */
};

struct kvbm__catalog; /* src/catalog/, opaque to the core */
struct kvbm__events;  /* src/events.c, opaque to the core */

struct kvbm_manager {
	pthread_mutex_t lock;
	kvbm_config cfg;        /* copy; strings point at the owned copies below */
	char *tier;
	char *catalog_path;
	char *model_fingerprint;
	uint32_t block_count;   /* immutable after open: read without the lock */
	uint32_t block_size;    /* immutable after open */
	bool reset_on_release;

	struct kvbm__slot *slots;
	struct kvbm__list reset;           /* free blocks safe to hand out, FIFO */
	struct kvbm__list reset_unsafe;    /* free, but a committed row may still claim them */
	struct kvbm__list reclaim_pending; /* RECLAIM, free mark not yet committed */
	struct kvbm__list reserve;         /* RECLAIM, free mark committed: safe victims */
	struct kvbm__list freeing;         /* RECLAIM, free mark being committed */
	struct kvbm__list reset_freeing;   /* RESET, free mark being committed */
	struct kvbm__registry registry;    /* hash -> primary/inactive/reclaim block */
	const struct kvbm__evict_ops *evict;
	void *evict_state;
	uint32_t inactive_count;           /* blocks inside the policy */

	struct kvbm__ref *refs;            /* reference table */
	uint32_t refs_cap, refs_free;      /* refs_free: head of free chain or KVBM__NIL */

	uint32_t n_mutable, n_staged, n_primary, n_duplicate;
	uint64_t clock;                    /* logical time: releases and accesses */
	uint32_t epoch_next;

	kvbm_metrics m;                    /* counters and gauges; catalog and event
					      fields are filled by those modules */

	/* journal: what the catalog writer must persist (journal.c) */
	bool journal_on;                   /* a catalog is attached */
	uint32_t *dirty;                   /* ring of dirty block ids, block_count entries */
	uint32_t dirty_head, dirty_count;
	uint64_t commit_gen;               /* bumped by every commit or failure */
	kvbm_status journal_error;         /* writer's failure, KVBM_OK while healthy */
	uint32_t reserve_target;           /* reclaimed blocks the writer keeps ready */
	uint32_t peak_request;             /* largest allocation since the writer looked */
	uint32_t alloc_waiters;            /* allocations waiting for a reclaim to commit
					      (changed under the lock, atomically: the writer
					      reads it without; kvbm__journal_waiting) */
	pthread_cond_t journal_cv;         /* allocators wait here for commits */
	struct kvbm__catalog *catalog;

	struct kvbm__events *events;       /* NULL without an event sink */
	/* What rows carry besides the hash (row_extras.c): token copies
	 * (cfg.catalog_tokens) and struct kvbm__key (kvbm_block_key_set)
	 * waiting for their row; restored ones waiting for their restart
	 * announcement and for kvbm_block_key_take. */
	struct kvbm__block_table row_tokens, restored_tokens, row_keys, restored_keys;
	struct kvbm__key *key_pool;        /* spare key buffers for reuse (row_extras.c) */
	uint32_t key_pool_n;

	/* last error, guarded by err_lock (taken after `lock` when both) */
	pthread_mutex_t err_lock;
	kvbm_status err_code;
	char err_msg[256];
};

/* Record an error message on mgr (may be NULL) and return code. Safe with
 * or without the manager lock held. */
kvbm_status kvbm__fail(kvbm_manager *mgr, kvbm_status code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define KVBM_LOCK(mgr) pthread_mutex_lock(&(mgr)->lock)
#define KVBM_UNLOCK(mgr) pthread_mutex_unlock(&(mgr)->lock)

#define KVBM_CHECK_ARG(mgr, expr)                                                  \
	do {                                                                       \
		if (!(expr))                                                       \
			return kvbm__fail((mgr), KVBM_E_INVAL, "invalid argument: %s", \
					  #expr);                                  \
	} while (0)

/* List primitives (pool.c); a slot is on at most one list, named by slot.list. */
void kvbm__list_push_tail(kvbm_manager *mgr, enum kvbm__list_id id, uint32_t b);
uint32_t kvbm__list_pop_head(kvbm_manager *mgr, enum kvbm__list_id id);
uint32_t kvbm__list_pop_tail(kvbm_manager *mgr, enum kvbm__list_id id);
void kvbm__list_unlink(kvbm_manager *mgr, uint32_t b);
void kvbm__list_move(kvbm_manager *mgr, uint32_t b, enum kvbm__list_id to); /* to to's tail */

/* Pool transitions (pool.c); lock held. */
void kvbm__pool_free_block(kvbm_manager *mgr, uint32_t b);   /* -> RESET */
void kvbm__pool_make_inactive(kvbm_manager *mgr, uint32_t b);/* PRIMARY -> INACTIVE */
/* The same at an earlier release tick (0: a new one, as above): kvbm_unpin
 * puts a block back at the place it had, in one policy insert. */
void kvbm__pool_make_inactive_at(kvbm_manager *mgr, uint32_t b, uint64_t tick);
void kvbm__pool_drop_hash(kvbm_manager *mgr, uint32_t b);    /* leaves registry: event + journal */
/* A reserved victim (RECLAIM) comes back unused: the policy forgets its
 * eviction (evict.h's unevict). */
void kvbm__pool_unevict(kvbm_manager *mgr, uint32_t b);
/* INACTIVE/RECLAIM -> PRIMARY; false if b was not cached. take_back counts
 * nothing (pins, touches); resurrect counts a resurrection (a reuse). */
bool kvbm__pool_take_back(kvbm_manager *mgr, uint32_t b);
/* take_back for a pin: a policy that orders held blocks keeps b's place. */
bool kvbm__pool_pin_back(kvbm_manager *mgr, uint32_t b);
/* b left for reset or mutable without entering the pool (policy's forget). */
static inline void kvbm__pool_policy_forget(kvbm_manager *mgr, uint32_t b)
{
	if (mgr->evict->forget)
		mgr->evict->forget(mgr->evict_state, b);
}
void kvbm__pool_resurrect(kvbm_manager *mgr, uint32_t b);
/* Put b into the eviction policy with the slot's hash, lineage and priority
 * at the given ticks (the caller sets state and counts). */
void kvbm__pool_policy_insert(kvbm_manager *mgr, uint32_t b, uint64_t tick, uint64_t first_tick);
void kvbm__pool_touch(kvbm_manager *mgr, uint32_t b);        /* hit or registration */

/* Take victims out of the policy into the catalog's reclaim lists until
 * reserve + pending reach target (journal.c); lock held. */
uint32_t kvbm__journal_reclaim_locked(kvbm_manager *mgr, uint32_t target);
/* Put reclaimed blocks back into the policy with their old keys, so a clean
 * shutdown persists them as registered; lock held. */
void kvbm__journal_unreclaim_locked(kvbm_manager *mgr);

/* Staging (block.c); lock held. stage_locked: a live mutable block takes
 * the hash and lineage (position 0 drops the parent). */
bool kvbm__mutable_live(const kvbm_manager *mgr, kvbm_mutable h);
kvbm_complete kvbm__stage_locked(kvbm_manager *mgr, uint32_t b, kvbm_hash seq_hash,
				 kvbm_hash parent, uint32_t position);

/* References (block.c); lock held. */
kvbm_status kvbm__refs_reserve(kvbm_manager *mgr, uint32_t n);
kvbm_immutable kvbm__ref_new(kvbm_manager *mgr, uint32_t b); /* after reserve */
void kvbm__ref_drop(kvbm_manager *mgr, kvbm_immutable h);    /* h is live */
/* kvbm__ref_drop but for the last reference of a primary block without
 * duplicates, which it leaves PRIMARY with no reference and returns true:
 * the caller makes it inactive. */
bool kvbm__ref_put(kvbm_manager *mgr, kvbm_immutable h);
bool kvbm__ref_live(const kvbm_manager *mgr, kvbm_immutable h);

/* Mark block b's catalog row out of date (lock held). Coalesces: a block
 * already queued is not queued twice. */
static inline void kvbm__journal_mark(kvbm_manager *mgr, uint32_t b)
{
	if (!mgr->journal_on)
		return;
	struct kvbm__slot *s = &mgr->slots[b];
	if (s->dirty) {
		mgr->m.catalog_rows_coalesced++;
		return;
	}
	s->dirty = 1;
	mgr->dirty[(mgr->dirty_head + mgr->dirty_count) % mgr->block_count] = b;
	mgr->dirty_count++;
	mgr->m.catalog_rows_queued++;
	if (mgr->dirty_count == mgr->cfg.catalog_batch)
		kvbm__catalog_wake(mgr->catalog);
}

/* A caller's full key (kvbm_block_key_set), at most KVBM_KEY_MAX bytes, in
 * a buffer of cap bytes (KVBM_KEY_MAX for those kvbm_block_key_set makes,
 * which are reused; len for a restored one). */
struct kvbm__key {
	uint32_t len, cap;
	unsigned char bytes[];
};

/* Token blocks and keys for the catalog (row_extras.c); lock held. A copy has the
 * layout of kvbm__events_token_copy. */
size_t kvbm__token_copy_bytes(const uint32_t *copy, uint32_t block_size);
bool kvbm__token_copy_valid(const void *bytes, size_t len, uint32_t block_size);
bool kvbm__row_tokens_set(kvbm_manager *mgr, uint32_t b, uint32_t *copy); /* owns copy */
void kvbm__row_tokens_drop(kvbm_manager *mgr, uint32_t b);
uint32_t *kvbm__row_tokens_take(kvbm_manager *mgr, uint32_t b);
void kvbm__row_tokens_give_back(kvbm_manager *mgr, const struct kvbm__image *img);
void kvbm__restored_tokens_set(kvbm_manager *mgr, uint32_t b, uint32_t *copy);
uint32_t *kvbm__restored_tokens_take(kvbm_manager *mgr, uint32_t b);
void kvbm__restored_tokens_free(kvbm_manager *mgr);
void kvbm__row_tokens_free(kvbm_manager *mgr); /* and the keys */
struct kvbm__key *kvbm__key_copy(const void *bytes, uint32_t len); /* no lock */
void kvbm__key_free(kvbm_manager *mgr, struct kvbm__key *k); /* NULL is a no-op */
bool kvbm__row_key_set(kvbm_manager *mgr, uint32_t b, struct kvbm__key *k); /* owns k */
struct kvbm__key *kvbm__row_key_take(kvbm_manager *mgr, uint32_t b);
void kvbm__row_key_give_back(kvbm_manager *mgr, uint32_t b, kvbm_hash hash, struct kvbm__key *k);
void kvbm__restored_key_set(kvbm_manager *mgr, uint32_t b, struct kvbm__key *k);
struct kvbm__key *kvbm__restored_key_take(kvbm_manager *mgr, uint32_t b);
void kvbm__row_keys_free(kvbm_manager *mgr);
/* The block left the registry: drop its tokens and keys. */
void kvbm__row_extras_drop(kvbm_manager *mgr, uint32_t b);

/* The two pools callers see (kvbm_pool_counts, metrics), summed over the
 * lists the catalog splits them into; lock held. Reset: free blocks, safe
 * to hand out or waiting for the catalog. Inactive: cached blocks, in the
 * eviction policy or on their way out of the registry. */
static inline uint32_t kvbm__reset_pool(const kvbm_manager *mgr)
{
	return mgr->reset.count + mgr->reset_unsafe.count + mgr->reset_freeing.count;
}

static inline uint32_t kvbm__inactive_pool(const kvbm_manager *mgr)
{
	return mgr->inactive_count + mgr->reclaim_pending.count + mgr->reserve.count +
	       mgr->freeing.count;
}

/* A fresh non-zero generation after g. */
static inline uint32_t kvbm__next_gen(uint32_t g)
{
	return g + 1 == 0 ? 1 : g + 1;
}

#endif /* KVBM_MANAGER_H */
