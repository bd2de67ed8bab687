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
#include "evict/evict.h"

struct kvbm__catalog;

/* The row the catalog keeps for one registered block (block_rows in
 * schema/003_narrow_rows.sql). A free block has no image: the writer lists
 * it in the transaction's reclaim row instead. */
struct kvbm__image {
	kvbm_hash hash;
	kvbm_hash parent;
	uint64_t evict_key;    /* policy order key; restore inserts ascending */
	uint64_t access_tick;  /* logical time of last hit/registration */
	uint32_t block;
	uint32_t position;     /* KVBM_POSITION_UNKNOWN if unknown */
	uint32_t access_count;
	uint32_t frequency;    /* policy frequency estimate (TinyLFU) or access_count */
	uint32_t priority;
	uint32_t retention;
	bool fresh;            /* the first row of this registration: whatever row the block
				  has on disk is an earlier one's, masked by a reclaim row */
	uint32_t *tokens;      /* cfg.catalog_tokens: the block's token copy, owned by
				  the image (first row after staging), else NULL */
	struct kvbm__key *key; /* kvbm_block_key_set: the full key, owned, else NULL */
};

/* One transaction's worth of work, filled by kvbm__journal_take. The
 * caller owns the arrays and sets the caps. */
struct kvbm__take {
	struct kvbm__image *imgs; /* rows of registered blocks to upsert */
	uint32_t cap, n;
	uint32_t n_written;       /* set by the writer: the first n_written went into
				     the commit; it stops early for a waiting
				     allocation (kvbm__journal_waiting) */
	uint32_t pressure_cap;    /* set by the caller: at most this many rows while
				     evictions outrun the free blocks (0: 512) */
	bool oldest_first;        /* set by the caller: take dirty rows FIFO (a flush) */
	bool evicting;            /* set by the caller: blocks are being evicted (a full
				     cache that only serves hits is not under pressure) */
	bool pressure;            /* set by the take: evicting, and the free blocks fell
				     short of the reserve (allocations evict faster than
				     it refills) */
	uint32_t *freed;          /* blocks whose committed rows must stop claiming */
	uint32_t freed_cap, n_freed;
	uint32_t pending;         /* work left behind: dirty rows + frees not taken */
	uint64_t evictions;       /* mgr's eviction counter at the take */
	uint32_t reserve_have;    /* reserve + reclaims in flight after the take */
	uint32_t reclaim_rows;    /* set by the writer: reclaim rows it wrote */
};

/* --- implemented by the core (journal.c); each takes the manager lock --- */

/* Fill t for one transaction. First the reserve is topped up to
 * reserve_target (less the free blocks, which serve allocations as well)
 * by taking victims out of the eviction policy; then every
 * block waiting for a durable free record (reclaimed victims, freed
 * blocks whose rows committed) goes into t->freed, ahead of the rows:
 * reclaims never queue behind registrations. Then up to t->cap dirty
 * registered blocks' images: the oldest first when t->oldest_first (a
 * flush must cover what was dirty at its call) or while allocations need
 * no evictions, otherwise the newest first. Under eviction pressure that
 * puts the writer's work where a restart gains most: the least recently
 * changed rows are the likeliest to be evicted before they are written,
 * and then need no row at all. At most one take is in flight: every take is
 * followed by kvbm__journal_committed or _failed for exactly it. */
void kvbm__journal_take(kvbm_manager *mgr, uint32_t reserve_target, struct kvbm__take *t);
/* Whether an allocation waits for the writer. Any thread, no lock: the
 * writer asks between rows, to commit what it has and let it through. */
bool kvbm__journal_waiting(kvbm_manager *mgr);
/* The take committed: update durable claims, make freed blocks
 * allocatable, release waiting allocators. Its images past t->n_written
 * were not written: they are dirty again, as after a failure. */
void kvbm__journal_committed(kvbm_manager *mgr, const struct kvbm__take *t,
			     uint64_t duration_ns);
/* The take's commit failed: its rows go back to dirty, its frees back to
 * waiting, and waiters are woken so they can report code. */
void kvbm__journal_failed(kvbm_manager *mgr, const struct kvbm__take *t, kvbm_status code);
/* Put every reclaimed block back into the eviction policy with its old key
 * (a clean shutdown persists them as registered). Call with the writer
 * stopped, so it cannot reclaim them again. */
void kvbm__journal_unreclaim(kvbm_manager *mgr);
/* The eviction policy's adaptive state as a blob (malloc'd into *out, the
 * caller frees it); 0 and *out NULL when the policy has none or memory
 * ran out. */
size_t kvbm__journal_policy_state(kvbm_manager *mgr, uint8_t **out);
/* Give a fresh policy the state a previous run exported, before restored
 * blocks are inserted: a blob of len bytes that read() fetches in pieces
 * (evict.h's state_import_read; a policy without it gets one buffer).
 * KVBM_E_CORRUPT/KVBM_E_MISMATCH, or read()'s failure, leave it fresh. */
kvbm_status kvbm__journal_policy_restore_read(kvbm_manager *mgr, size_t len,
					     kvbm__state_read read, void *ctx);
/* The largest allocation seen since the last call (then forgotten), for
 * sizing the reserve. */
uint32_t kvbm__journal_peak_request(kvbm_manager *mgr);

/* Restore (restore_slots.c), called only from the catalog's open before
 * the manager is shared, in two steps. First, order-free, every block of
 * the manager goes through exactly one of: kvbm__restore_stage (img's
 * block holds img->hash, in no pool yet) or kvbm__restore_blank (a free
 * block, appended to part, a reset list of the caller's own kept in block
 * order); a staged block's hash may be entered in the registry then
 * (kvbm__restore_claim; false, and nothing entered, if another block's
 * claim holds it). These may run on several threads at once, each over
 * blocks of its own. kvbm__restore_claimed then says whether every staged
 * block was claimed (n of them) or the claims are void (a claim failed,
 * or some blocks were not claimed): claimed below is that answer. Then,
 * on one thread, kvbm__restore_block for the staged blocks in ascending
 * (evict_key, block) order puts each in the policy (and, unless claimed,
 * the registry); KVBM_E_CORRUPT (the message says why) for an id out of
 * range, a block given twice or a hash already restored, and the block
 * is free again. kvbm__restore_unstage frees a staged block that is not
 * restored (a veto). kvbm__restore_end makes the parts, in block order,
 * the reset pool; relink when a staged block was freed again.
 * kvbm__restore_wants_frequency: does the policy use the frequency
 * argument of kvbm__restore_block (else it may be anything)?
 * kvbm__restore_uses, before the first kvbm__restore_block of rows another
 * policy wrote: their frequency arguments are the rows' access counts.
 * kvbm__restore_frequency: what b's row holds as its frequency now.
 * kvbm__restore_staged: a staged block's hash, parent and position (the
 * rest of img zeroed). kvbm__restore_restored: did b's kvbm__restore_block
 * succeed? kvbm__restore_prefetch starts the cache misses of b's slot,
 * _prefetch_probe those of its hash's registry probe (read from the
 * slot, so best long after the slot's own prefetch). */
struct kvbm__list;
bool kvbm__restore_wants_frequency(const kvbm_manager *mgr);
void kvbm__restore_uses(kvbm_manager *mgr);
uint32_t kvbm__restore_frequency(const kvbm_manager *mgr, uint32_t b);
void kvbm__restore_staged(const kvbm_manager *mgr, uint32_t b, struct kvbm__image *img);
bool kvbm__restore_restored(const kvbm_manager *mgr, uint32_t b);
void kvbm__restore_prefetch(const kvbm_manager *mgr, uint32_t b);
void kvbm__restore_prefetch_probe(const kvbm_manager *mgr, uint32_t b);
void kvbm__restore_stage(kvbm_manager *mgr, const struct kvbm__image *img);
void kvbm__restore_blank(kvbm_manager *mgr, struct kvbm__list *part, uint32_t b);
bool kvbm__restore_claim(kvbm_manager *mgr, uint32_t b);
void kvbm__restore_claimed(kvbm_manager *mgr, bool all, uint32_t n);
kvbm_status kvbm__restore_block(kvbm_manager *mgr, uint32_t b, uint64_t evict_key,
				uint32_t frequency, bool claimed);
void kvbm__restore_unstage(kvbm_manager *mgr, uint32_t b, bool claimed);
void kvbm__restore_end(kvbm_manager *mgr, const struct kvbm__list *parts, int n, bool relink);

/* --- implemented by the catalog (src/catalog/) --- */

/* Opening a catalog, in two halves. prepare, with the pools allocated but
 * their slot table not yet written: open or create the file named by
 * mgr->cfg, check what it is and its identity, take the tier's ownership
 * and read the rows to restore, inside the open's transaction, staging
 * or blanking every block of the slot table (kvbm__restore_stage, _blank).
 * Sets mgr->catalog. finish: restore the staged blocks into the registry
 * and policy (kvbm__restore_block), commit, start the writer.
 * abort: give up a prepared open (rollback, free). On failure each frees
 * what it made and clears mgr->catalog. Called by kvbm_open only, before
 * the manager is shared. */
kvbm_status kvbm__catalog_prepare(kvbm_manager *mgr);
kvbm_status kvbm__catalog_finish(kvbm_manager *mgr);
void kvbm__catalog_abort(kvbm_manager *mgr);
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
