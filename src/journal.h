/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The journal: how the catalog sees the core. The fast path never writes
 * records; it marks a block dirty (one flag and one array slot, under the
 * lock it already holds). The writer takes row images of dirty blocks,
 * commits them, and reports back, which is what makes evicted blocks safe
 * to hand out (the free-before-reuse rule in kvbm.h). Dirty marks coalesce
 * by construction: a block changed ten times between commits is one row,
 * and the queue can never hold more than block_count entries.
 *
 * The catalog module implements the kvbm__catalog_* functions; the core
 * implements the kvbm__journal_* and kvbm__restore_* ones.
 */
#ifndef KVBM_JOURNAL_H
#define KVBM_JOURNAL_H

#include "kvbm.h"

struct kvbm__catalog;

/* Row states of the `blocks` table (schema/001_init.sql). */
enum kvbm__row_state {
	KVBM__ROW_FREE = 0,       /* no hash claimed */
	KVBM__ROW_REGISTERED = 1, /* block holds hash; restored as inactive */
};

/* The full row the catalog keeps for one block. */
struct kvbm__image {
	kvbm_hash hash;
	kvbm_hash parent;
	uint64_t evict_key;    /* policy order key; restore inserts ascending */
	uint64_t access_tick;  /* logical time of last hit/registration */
	uint32_t block;
	uint32_t state;        /* enum kvbm__row_state */
	uint32_t position;     /* KVBM_POSITION_UNKNOWN if unknown */
	uint32_t access_count;
	uint32_t frequency;    /* policy frequency estimate (TinyLFU) or access_count */
	uint32_t priority;
	uint32_t retention;
};

/* --- implemented by the core (journal.c); each takes the manager lock --- */

/* Move up to cap dirty blocks' images into out, clearing their dirty marks.
 * *pending receives how many stay dirty. At most one batch is in flight:
 * every take is followed by kvbm__journal_committed or _failed for exactly
 * the images it returned (several takes may share one transaction if they
 * are reported together, in take order). */
void kvbm__journal_take(kvbm_manager *mgr, struct kvbm__image *out, uint32_t cap,
			uint32_t *n, uint32_t *pending);
/* The images were committed: update durable claims, release waiting
 * allocators. */
void kvbm__journal_committed(kvbm_manager *mgr, const struct kvbm__image *imgs,
			     uint32_t n, uint64_t duration_ns);
/* A commit failed: the images go back to dirty (unless changed since), and
 * waiters are woken so they can report code. */
void kvbm__journal_failed(kvbm_manager *mgr, const struct kvbm__image *imgs,
			  uint32_t n, kvbm_status code);
/* Take victims out of the eviction policy until reserve + pending reclaim
 * reach target (each gets a free image); returns how many were taken. */
uint32_t kvbm__journal_reclaim(kvbm_manager *mgr, uint32_t target);
/* The catalog is gone for good (detached): stop tracking durability, make
 * every block allocatable, wake waiters. */
void kvbm__journal_detach(kvbm_manager *mgr);
/* How many reclaimed blocks the writer should keep ready: the configured
 * reserve less what the reset pool already covers. */
uint32_t kvbm__journal_reserve_target(kvbm_manager *mgr);

/* Restore, called only from kvbm__catalog_open before the manager is
 * shared: put block in the inactive pool holding img->hash. Images must
 * come in ascending evict_key order. Returns KVBM_E_CORRUPT (the message
 * says why) for an id out of range, a block given twice, or a hash already
 * restored; the caller frees such rows. */
kvbm_status kvbm__restore_block(kvbm_manager *mgr, const struct kvbm__image *img);

/* --- implemented by the catalog (src/catalog/) --- */

/* Open or create the catalog named by mgr->cfg, check its identity, restore
 * it into mgr (kvbm__restore_block) and start the writer thread. Sets
 * mgr->catalog. Called by kvbm_open with mgr fully built but not shared. */
kvbm_status kvbm__catalog_open(kvbm_manager *mgr);
/* Stop the writer; unless discard, commit everything and mark a clean
 * shutdown. Frees mgr->catalog (NULL is a no-op). */
kvbm_status kvbm__catalog_close(kvbm_manager *mgr, bool discard);
/* Wake the writer (dirty work or an allocator waiting). Lock-free/cheap;
 * may be called with the manager lock held. */
void kvbm__catalog_wake(struct kvbm__catalog *cat);
/* Block until everything dirty at the call is committed (kvbm_flush). */
kvbm_status kvbm__catalog_flush(kvbm_manager *mgr);
/* Incarnation number of the open catalog (for events), 0 without one. */
uint64_t kvbm__catalog_incarnation(const struct kvbm__catalog *cat);

#endif /* KVBM_JOURNAL_H */
