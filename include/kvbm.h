/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file kvbm.h
 * kvbm: the logical KV-cache block manager of an LLM inference server.
 *
 * kvbm decides which physical block ids hold which token-block sequence
 * hashes. It does not own KV memory: the caller writes tensors into the
 * blocks kvbm hands out and tells kvbm when a block is complete. Equal
 * prefixes have equal sequence hashes, so a later request can reuse
 * blocks instead of recomputing them. Optionally, a write-behind SQLite
 * catalog keeps the registry on disk so that a restarted server is warm.
 *
 * Block states and the calls that move a block between them:
 *
 *   RESET --kvbm_allocate--> MUTABLE --kvbm_stage--> STAGED
 *     ^                       |   ^                    |
 *     |<--kvbm_mutable_release|   +---kvbm_unstage-----+
 *     |<--------------------------kvbm_complete_release+
 *     |                                                | kvbm_register
 *     |                                                v
 *     |            (last kvbm_immutable_release)   REGISTERED  (ref-counted,
 *     |           +------------------------------- (primary or  shared,
 *     |           v                                 duplicate)  immutable)
 *     |       INACTIVE --kvbm_match / kvbm_weak_upgrade--^
 *     |   (cached, evictable, still matchable)
 *     +---- eviction by kvbm_allocate (or reset-on-release, or a released
 *           duplicate) -- the block returns to the caller as MUTABLE
 *
 * Rules that hold for every call:
 *  - Consume on success: a transition consumes its input handle only when
 *    it returns KVBM_OK. On any error nothing changes, nothing is consumed,
 *    and the input handle stays valid.
 *  - Handles are small values that carry a generation. A handle that was
 *    consumed, released twice, or outlived its block is detected and gets
 *    KVBM_E_STALE; it never corrupts the manager. A zeroed handle is empty
 *    and releasing it is a no-op.
 *  - Threads: every function that takes a manager is safe to call from any
 *    thread. Fast-path calls take the manager lock once each and never do
 *    file or network I/O. The one thing a C library cannot detect is a call
 *    through a manager pointer after kvbm_close(): do not do that.
 *  - No function aborts or exits on bad input; errors are kvbm_status codes,
 *    and the latest message is kept per manager (kvbm_last_error()).
 *  - Limits: block_count 1..KVBM_MAX_BLOCKS, block_size a power of two in
 *    1..1024.
 */
#ifndef KVBM_H
#define KVBM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(KVBM_BUILDING_LIBRARY)
#define KVBM_API __attribute__((visibility("default")))
#else
#define KVBM_API
#endif

/** @defgroup version Version
 * The library version; the catalog schema and the hash encoding are
 * versioned separately (KVBM_SCHEMA_VERSION, KVBM_HASH_ENCODING).
 * @{ */
#define KVBM_VERSION_MAJOR 0
#define KVBM_VERSION_MINOR 1
#define KVBM_VERSION_PATCH 0
#define KVBM_VERSION_STRING "0.1.0"

/**
 * The library's version string, e.g. "0.1.0".
 *
 * Ownership: static string, never freed.
 * Thread-safety: any thread.
 * Errors: none.
 */
KVBM_API const char *kvbm_version(void);
/** @} */

/** @defgroup status Status codes
 * Every fallible call returns a kvbm_status. KVBM_OK is zero; errors are
 * negative and their values are pinned: they are never renumbered or
 * reused. SQLite failures map to KVBM_E_IO, KVBM_E_CORRUPT, KVBM_E_BUSY,
 * KVBM_E_READONLY or KVBM_E_FULL, with SQLite's extended code in the
 * message.
 * @{ */
typedef enum kvbm_status {
	KVBM_OK = 0,
	KVBM_E_INVAL = -1,     /**< bad argument (NULL, zero count, out of range) */
	KVBM_E_NOMEM = -2,     /**< memory allocation failed; nothing changed */
	KVBM_E_EXHAUSTED = -3, /**< fewer free + evictable blocks than asked */
	KVBM_E_SIZE = -4,      /**< token count does not equal the block size */
	KVBM_E_STALE = -5,     /**< handle consumed, released, or out of date */
	KVBM_E_MISUSE = -6,    /**< call not valid in the current state */
	KVBM_E_NOTFOUND = -7,  /**< hash or block not present */
	KVBM_E_IO = -8,        /**< file or database I/O error */
	KVBM_E_CORRUPT = -9,   /**< file is not a valid catalog */
	KVBM_E_BUSY = -10,     /**< database locked, or a bounded wait expired */
	KVBM_E_READONLY = -11, /**< catalog path or database is read-only */
	KVBM_E_FULL = -12,     /**< disk or database full */
	KVBM_E_MISMATCH = -13, /**< catalog written for another configuration */
	KVBM_E_UNSUPPORTED = -14, /**< feature not built into this library */
} kvbm_status;

/**
 * A short static description of a status code, e.g. "handle is stale".
 *
 * Ownership: static string, never NULL, never freed.
 * Thread-safety: any thread.
 * Errors: none; unknown codes get "unknown status".
 */
KVBM_API const char *kvbm_strerror(kvbm_status status);
/** @} */

/** @defgroup types Types and handles
 * Guards are small value structs. Each state has its own type, so the
 * compiler rejects passing a mutable block where a complete one is
 * expected. Copying a guard does not create a second owner: only
 * kvbm_immutable_retain() does. A zeroed guard (gen == 0) is empty.
 * @{ */

/** A sequence hash (see the hashing group). */
typedef uint64_t kvbm_hash;

/** Largest block count a manager accepts. */
#define KVBM_MAX_BLOCKS (1u << 30)
/** Largest block size in tokens. */
#define KVBM_MAX_BLOCK_SIZE 1024u
/** Position value meaning "this block's place in its sequence is unknown". */
#define KVBM_POSITION_UNKNOWN UINT32_MAX

typedef struct kvbm_manager kvbm_manager;

/** A RESET block handed to the caller to write: exclusive, mutable. */
typedef struct kvbm_mutable {
	uint32_t block; /**< physical block id, 0..block_count-1 */
	uint32_t gen;   /**< generation; 0 means empty */
} kvbm_mutable;

/** A STAGED block: tokens written, sequence hash recorded, not yet shared. */
typedef struct kvbm_complete {
	uint32_t block; /**< physical block id */
	uint32_t gen;   /**< generation; 0 means empty */
} kvbm_complete;

/**
 * One counted reference to a REGISTERED block. Every reference is a
 * distinct handle (kvbm_immutable_retain() returns a new one), so a double
 * release of the same handle is detected even while other references live.
 */
typedef struct kvbm_immutable {
	uint32_t block; /**< physical block id */
	uint32_t ref;   /**< reference slot inside the manager */
	uint32_t gen;   /**< generation of the reference; 0 means empty */
} kvbm_immutable;

/** A non-owning handle to a registered block: does not keep it cached. */
typedef struct kvbm_weak {
	uint32_t block; /**< block id at downgrade time */
	uint32_t epoch; /**< registration epoch at downgrade time; 0 = empty */
	kvbm_hash hash; /**< the sequence hash it refers to */
} kvbm_weak;

/** Where a block is in its lifecycle (kvbm_block_info()). */
typedef enum kvbm_block_state {
	KVBM_BLOCK_RESET = 0,      /**< in the reset pool, free */
	KVBM_BLOCK_MUTABLE = 1,    /**< held by a kvbm_mutable */
	KVBM_BLOCK_STAGED = 2,     /**< held by a kvbm_complete */
	KVBM_BLOCK_REGISTERED = 3, /**< primary holder of its hash, referenced */
	KVBM_BLOCK_DUPLICATE = 4,  /**< second copy of a registered hash */
	KVBM_BLOCK_INACTIVE = 5,   /**< registered, unreferenced, evictable */
} kvbm_block_state;

/** A snapshot of one block (kvbm_block_info()). */
typedef struct kvbm_block_info {
	uint32_t block;         /**< block id */
	kvbm_block_state state; /**< state at the time of the call */
	uint32_t ref_count;     /**< live references (registered/duplicate) */
	uint32_t position;      /**< position in its sequence or KVBM_POSITION_UNKNOWN */
	kvbm_hash hash;         /**< sequence hash (staged and later), else 0 */
	kvbm_hash parent_hash;  /**< parent's sequence hash, 0 for a root/unknown */
	bool reset_on_release;  /**< the block skips the inactive pool on release */
} kvbm_block_info;
/** @} */

/** @defgroup config Configuration
 * kvbm_config_init() fills every field with its default; set what you need
 * and pass the struct to kvbm_open(), which copies it (strings included).
 * @{ */

/** What registering a second block for an already registered hash does. */
typedef enum kvbm_dup_policy {
	/** The new block registers as a duplicate: both stay usable; the
	 *  duplicate keeps the primary alive and is reset when released. */
	KVBM_DUP_ALLOW = 0,
	/** The existing primary is returned and the new block goes back to
	 *  the reset pool (one physical block per hash). */
	KVBM_DUP_REJECT = 1,
} kvbm_dup_policy;

/** Eviction policy of the inactive pool (one backend each, src/evict/evict_*.c). */
typedef enum kvbm_evict_policy {
	/** Least recently released first. Memory: 16 bytes per block (two
	 *  32-bit links and a 64-bit key). Value 0: what a zeroed config
	 *  holds; kvbm_config_init() picks KVBM_EVICT_ADAPTIVE. */
	KVBM_EVICT_LRU = 0,
	KVBM_EVICT_FIFO = 1,      /**< in the order blocks became inactive, never refreshed */
	KVBM_EVICT_MULTI_LRU = 2, /**< four LRU tiers by TinyLFU frequency, coldest first */
	KVBM_EVICT_LINEAGE = 3,   /**< leaves first (never a block with a cached child), LRU among leaves */
	KVBM_EVICT_PRIORITY = 4,  /**< lowest caller priority first, LRU within a priority */
	KVBM_EVICT_S3FIFO = 5,    /**< S3-FIFO: small probation queue, main queue, ghost hashes (scan-resistant) */
	KVBM_EVICT_TWO_QUEUE = 6, /**< 2Q: probation and protected LRU, ghost of evicted hashes (scan-resistant) */
	KVBM_EVICT_ARC = 7,       /**< ARC: recency and frequency lists with ghosts and an adaptive split (scan-resistant, adapts) */
	/** LRU until a ghost of evicted hashes shows that blocks used once
	 *  should go first, then 2Q-like, moving between the two as ARC moves
	 *  its split (scan-resistant, adapts). A warm restart restores each
	 *  block's list and order, and the learned split and ghost as of the
	 *  last clean close (after a crash: as of the last block_count
	 *  evictions). The default of kvbm_config_init(). Memory: about 62
	 *  bytes per block, against LRU's 16: a 32-byte record per block and
	 *  a ghost of 8 x block_count evicted hashes in 64-byte buckets of 21
	 *  entries at 1.25 slots per hash (30.5 bytes per block). With a
	 *  catalog, a restart reads and checks that ghost too: at 1M blocks
	 *  kvbm_open took 0.26-0.31 s against LRU's 0.22-0.26 s in the same
	 *  runs (docs/BENCHMARKS.md). */
	KVBM_EVICT_ADAPTIVE = 8,
	/** vLLM's offloading ARC ("vllm-arc"), decision for decision, for an
	 *  offload tier driven as vLLM's CPUOffloadingManager is (kvbm.vllm's
	 *  cache_policy="arc"). Unlike KVBM_EVICT_ARC, its T1 and T2 hold
	 *  every block of the tier: a block enters T1 when kvbm_stage() seals
	 *  it (still being written) and keeps its place while kvbm_pin()ned;
	 *  both count in |T1| and are never victims. Only kvbm_touch() moves
	 *  blocks: a written block of T1, or one of T2, to T2's newest end, a
	 *  block still being written to T1's newest end; releases and
	 *  kvbm_match() hits move nothing (a block back from a hit re-enters
	 *  T1 as new). The target size p of T1 (a float) moves only when
	 *  kvbm_touch() names a ghost hash, one of the last block_count
	 *  evicted from T1 (p grows by max(1, |B2|/|B1|)) or from T2 (p
	 *  shrinks by max(1, |B1|/|B2|)); storing a ghost hash again only
	 *  forgets it. Victims come from T1 while |T1| >= floor(p), else from
	 *  T2, else T1.
	 *
	 *  Errors: as vLLM, kvbm_allocate() fails with KVBM_E_EXHAUSTED
	 *  (nothing changed) when |T1| < floor(p) and T2 has no inactive
	 *  block, even if T1 has some (kvbm_reset_inactive() still drains
	 *  everything). Ownership and thread-safety: as every policy (the
	 *  manager's lock). Memory: about 80 bytes per block (two exact ghost
	 *  lists of block_count hashes each and a map over all three). A warm
	 *  restart restores each block's list and order; p and the ghosts
	 *  start empty, as a fresh vLLM manager's. With a catalog the writer
	 *  takes victims ahead (catalog_reserve), so the order is vLLM's only
	 *  without one. */
	KVBM_EVICT_VLLM_ARC = 9,
} kvbm_evict_policy;

/** Number of kvbm_evict_policy values (valid values are 0..KVBM_EVICT_COUNT-1). */
#define KVBM_EVICT_COUNT 10

/**
 * The canonical lower-case name of a policy ("lru", "fifo", ...).
 *
 * Ownership: static string, never freed; NULL for an unknown value.
 * Thread-safety: any thread.
 * Errors: none.
 */
KVBM_API const char *kvbm_evict_policy_name(kvbm_evict_policy policy);

/**
 * Parse a policy name as printed by kvbm_evict_policy_name().
 *
 * Ownership: none.
 * Thread-safety: any thread.
 * Errors: KVBM_E_INVAL (NULL argument or unknown name).
 */
KVBM_API kvbm_status kvbm_evict_policy_parse(const char *name,
					     kvbm_evict_policy *out);

/** SQLite `synchronous` level for the catalog's write connection. */
typedef enum kvbm_sync {
	KVBM_SYNC_NORMAL = 0, /**< survives process crash; power loss may lose recent commits */
	KVBM_SYNC_FULL = 1,   /**< fsync per commit: also survives power loss */
	KVBM_SYNC_OFF = 2,    /**< no fsync at all (tests, benchmarks) */
} kvbm_sync;

/**
 * Called on the catalog writer thread right before each commit, so the
 * caller can make the KV data of the blocks being recorded durable first
 * (msync/fsync). A non-zero return aborts this commit (retried later).
 * It must not call kvbm_flush() or kvbm_close() on the same manager.
 */
typedef int (*kvbm_pre_commit_fn)(void *user);

/**
 * Called during kvbm_open() for every block the catalog would restore;
 * return false to veto it (the block comes back free instead).
 */
typedef bool (*kvbm_restore_validate_fn)(uint32_t block, kvbm_hash hash,
					 kvbm_hash parent_hash,
					 uint32_t position, void *user);

struct kvbm_event_batch;
/** Receives batches of block events; see the events group. */
typedef void (*kvbm_event_sink_fn)(const struct kvbm_event_batch *batch,
				   void *user);

typedef struct kvbm_config {
	/* geometry */
	uint32_t block_count; /**< number of blocks; required (default 0 is invalid) */
	uint32_t block_size;  /**< tokens per block; power of two 1..1024; default 16 */
	const char *tier;     /**< tier name, e.g. "G1" (GPU), "G2" (host); default "G1" */

	/* registry and pools */
	kvbm_dup_policy dup_policy;     /**< default KVBM_DUP_ALLOW */
	kvbm_evict_policy evict_policy; /**< default KVBM_EVICT_ADAPTIVE (kvbm_config_init); 0, in a config not filled by it, is KVBM_EVICT_LRU */
	bool reset_on_release;          /**< manager-wide: never cache released blocks; default false */
	uint8_t multi_lru_thresholds[3]; /**< frequency thresholds of MULTI_LRU tiers; default {3, 8, 15} */

	/* catalog (write-behind SQLite); all ignored when catalog_path is NULL */
	const char *catalog_path;      /**< database file; NULL (default) = memory only */
	const char *model_fingerprint; /**< identity of the weights; a catalog written for another is refused */
	uint64_t hash_salt;            /**< salt hash the caller uses (kvbm_hash_salt), part of the hash identity */
	kvbm_sync catalog_sync;        /**< default KVBM_SYNC_NORMAL */
	uint32_t catalog_batch;        /**< max block rows per transaction; default 8192 (the writer copies a batch of row images under the manager lock, so a larger batch holds it longer) */
	uint32_t catalog_interval_ms;  /**< commit at least this often when dirty; default 50 */
	uint32_t catalog_reserve;      /**< blocks kept durably reclaimed ahead of allocation; 0 (default) = sized from demand, see the catalog group */
	uint32_t catalog_wait_ms;      /**< longest kvbm_allocate waits for the writer; default 5000 */
	uint32_t catalog_max_failures; /**< failed commits in a row after which the writer retries once a second; default 8, 0 = at the interval */
	uint32_t catalog_busy_ms;      /**< how long the writer waits for a competing writer's lock; default 5000 */
	bool catalog_discard_mismatch; /**< start cold over a mismatching catalog instead of KVBM_E_MISMATCH */
	bool memory_volatile;          /**< this tier's block memory dies with the process (a GPU tier): open clears the tier's catalog rows and starts cold instead of restoring them; default false (the memory survives, e.g. a host tier in shared memory or a disk tier) */
	bool catalog_tokens;           /**< keep kvbm_stage_tokens' tokens, LoRA name and extra keys in the catalog, so a restart announces restored blocks with them (routers that key by tokens need them); costs 4 x block_size bytes plus the strings per block in the file, and in memory until the block's row is written; default false */
	kvbm_pre_commit_fn pre_commit;         /**< optional, see kvbm_pre_commit_fn */
	void *pre_commit_user;
	kvbm_restore_validate_fn restore_validate; /**< optional, see kvbm_restore_validate_fn */
	void *restore_user;

	/* events */
	kvbm_event_sink_fn event_sink; /**< optional; NULL = no events */
	void *event_user;
	uint32_t event_batch_max;      /**< events per batch; default 1024 */
	uint32_t event_window_ms;      /**< max delay before a partial batch is sent; default 10 */
	const char *event_medium;      /**< storage medium this tier's events name (vLLM's "medium"), 1..64 chars;
					    NULL (default) = kvbm_tier_medium(tier) */
} kvbm_config;

/**
 * Fill a config with defaults (block_count stays 0 and must be set).
 * Start from it: kvbm_open() does not fill in fields left zero, it
 * refuses the ones where 0 is invalid (block_size, tier,
 * multi_lru_thresholds) and takes the others as they are, so a config
 * built by hand from zeroes evicts with KVBM_EVICT_LRU (value 0), not
 * with this function's KVBM_EVICT_ADAPTIVE.
 *
 * Ownership: the struct is the caller's.
 * Thread-safety: any thread.
 * Errors: none (a NULL cfg is ignored).
 */
KVBM_API void kvbm_config_init(kvbm_config *cfg);
/** @} */

/** @defgroup manager Manager lifecycle
 * @{ */

/**
 * Create a manager of cfg->block_count blocks, all in the reset pool. With
 * cfg->catalog_path set, the catalog is opened or created, checked against
 * this configuration, and a previous run's registry is restored before this
 * returns (see the catalog group).
 *
 * @param cfg      configuration; copied, may be freed after the call
 * @param[out] out the new manager
 *
 * Ownership: the caller owns *out and frees it with kvbm_close().
 * Thread-safety: any thread.
 * Errors: KVBM_E_INVAL (bad config, the message names the field; an empty
 *   catalog_path; a catalog path that is not a regular file), KVBM_E_NOMEM,
 *   and with a catalog: KVBM_E_BUSY (another writer owns this tier of the
 *   file; the message names its pid, host and incarnation), KVBM_E_CORRUPT
 *   (not a kvbm catalog, left untouched; a damaged schema, named; a
 *   database or WAL belonging to another catalog), KVBM_E_MISMATCH (written
 *   for another configuration, or a newer schema), KVBM_E_READONLY,
 *   KVBM_E_IO, KVBM_E_FULL, KVBM_E_UNSUPPORTED. On error *out is NULL.
 *   There is no manager left to hold the message, so use kvbm_open_ex() to
 *   get it.
 */
KVBM_API kvbm_status kvbm_open(const kvbm_config *cfg, kvbm_manager **out);

/**
 * kvbm_open() that also copies the failure message into errbuf.
 *
 * Ownership: as kvbm_open(); errbuf is the caller's (may be NULL).
 * Thread-safety: any thread.
 * Errors: as kvbm_open().
 */
KVBM_API kvbm_status kvbm_open_ex(const kvbm_config *cfg, kvbm_manager **out,
				  char *errbuf, size_t errlen);

/** Flags of kvbm_close_ex(). */
#define KVBM_CLOSE_DISCARD 1u /**< drop unflushed catalog changes and skip the clean-shutdown mark (a simulated crash) */

/**
 * Close the manager and free everything. Blocks still held count as
 * released: registered ones as inactive, others as reset. With a catalog,
 * every queued change is committed and the clean-shutdown mark is written.
 * All outstanding handles become invalid; using them, or mgr, afterwards is
 * undefined behaviour. A manager in a kvbm_hierarchy must be left by
 * kvbm_hierarchy_free() first (the hierarchy would keep using it).
 *
 * Ownership: mgr is freed even when an error is returned. NULL is a no-op.
 * Thread-safety: no other call on mgr may run concurrently or follow.
 * Errors: KVBM_E_IO (and other catalog codes) if the final commit failed.
 */
KVBM_API kvbm_status kvbm_close(kvbm_manager *mgr);

/**
 * kvbm_close() with flags (KVBM_CLOSE_DISCARD).
 *
 * Ownership, thread-safety, errors: as kvbm_close().
 */
KVBM_API kvbm_status kvbm_close_ex(kvbm_manager *mgr, unsigned flags);

/**
 * Copy the most recent error message recorded on this manager, by any
 * thread, into buf (always NUL-terminated when len > 0).
 *
 * @param[out] code the status that error was returned with (may be NULL)
 *
 * Ownership: buf is the caller's.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_INVAL (mgr NULL).
 */
KVBM_API kvbm_status kvbm_last_error(kvbm_manager *mgr, kvbm_status *code,
				     char *buf, size_t len);

/** Total blocks (the configured block_count). Thread-safety: any thread, lock-free. Returns 0 for NULL. */
KVBM_API uint32_t kvbm_total_blocks(const kvbm_manager *mgr);
/** Tokens per block. Thread-safety: any thread, lock-free. Returns 0 for NULL. */
KVBM_API uint32_t kvbm_block_size(const kvbm_manager *mgr);
/**
 * Blocks an allocation could take now: reset + inactive, read under one
 * lock so the two parts are a coherent snapshot.
 * Thread-safety: any thread; takes the manager lock. Returns 0 for NULL.
 */
KVBM_API uint32_t kvbm_available_blocks(kvbm_manager *mgr);

/** Pool counts, read together under one lock. */
typedef struct kvbm_pool_counts {
	uint32_t total;      /**< block_count */
	uint32_t reset;      /**< in the reset pool */
	uint32_t inactive;   /**< registered, unreferenced, evictable */
	uint32_t mutable_;   /**< held mutable */
	uint32_t staged;     /**< held staged */
	uint32_t registered; /**< registered primaries with references */
	uint32_t duplicate;  /**< registered duplicates */
	uint32_t registry;   /**< distinct hashes matchable (primaries + inactive) */
} kvbm_pool_counts;

/**
 * Snapshot the pool counts. Always reset + inactive + mutable_ + staged +
 * registered + duplicate == total.
 *
 * Ownership: out is the caller's.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_INVAL (NULL argument).
 */
KVBM_API kvbm_status kvbm_pool_counts_read(kvbm_manager *mgr,
					   kvbm_pool_counts *out);
/** @} */

/** @defgroup lifecycle Block lifecycle
 * @{ */

/**
 * Take n blocks, all or nothing: first from the reset pool, then by
 * evicting inactive blocks in the policy's order.
 *
 * @param n        number of blocks, >= 1
 * @param[out] out array of n mutable handles
 *
 * Ownership: on KVBM_OK the caller owns n mutable blocks; on error nothing
 *   is taken. With a catalog, evicted blocks are handed out only once the
 *   catalog durably records them as free (see the catalog group); this call
 *   waits for the writer only when the reserve runs dry, and then for about
 *   one commit while the writer is healthy; a stalled writer (a lock held
 *   elsewhere, a failing disk) makes it wait at most cfg.catalog_wait_ms.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_EXHAUSTED (fewer than n reset + inactive blocks),
 *   KVBM_E_INVAL (mgr/out NULL or n == 0), KVBM_E_BUSY or KVBM_E_IO (the
 *   catalog writer could not free blocks in time, or is failing).
 */
KVBM_API kvbm_status kvbm_allocate(kvbm_manager *mgr, uint32_t n,
				   kvbm_mutable *out);

/**
 * kvbm_allocate() that also reports the hashes it evicted.
 *
 * @param[out] evicted   array of at least n hashes (may be NULL)
 * @param[out] n_evicted number of hashes written (may be NULL)
 *
 * Ownership, thread-safety, errors: as kvbm_allocate().
 */
KVBM_API kvbm_status kvbm_allocate_ex(kvbm_manager *mgr, uint32_t n,
				      kvbm_mutable *out, kvbm_hash *evicted,
				      uint32_t *n_evicted);

/**
 * Return a mutable block to the reset pool.
 *
 * Ownership: consumes block on KVBM_OK. An empty handle is a no-op.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE (already consumed or released), KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_mutable_release(kvbm_manager *mgr,
					  kvbm_mutable block);

/**
 * Seal a mutable block: record its sequence hash and make it complete.
 * Lineage (parent, position) stays unknown; see kvbm_stage_lineage().
 *
 * @param block       mutable guard; consumed on success
 * @param seq_hash    sequence hash of the block (see kvbm_hash_sequence)
 * @param num_tokens  tokens written; must equal the manager's block size
 * @param[out] out    the complete guard
 *
 * Ownership: on KVBM_OK `block` is consumed and the caller owns `*out`
 *   (register it, or release it with kvbm_complete_release). On error
 *   nothing changes and `block` stays valid.
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_SIZE (num_tokens != block size), KVBM_E_STALE (block
 *   already consumed or released), KVBM_E_INVAL (mgr or out is NULL).
 */
KVBM_API kvbm_status kvbm_stage(kvbm_manager *mgr, kvbm_mutable block,
				kvbm_hash seq_hash, uint32_t num_tokens,
				kvbm_complete *out);

/**
 * kvbm_stage() that also records the block's lineage: its parent's
 * sequence hash and its position in the sequence (0 for the first block,
 * whose parent_hash is ignored). Lineage-aware eviction, the catalog's
 * prefix views and stored events use it.
 *
 * Ownership, thread-safety: as kvbm_stage().
 * Errors: as kvbm_stage(); KVBM_E_INVAL also when position is
 *   KVBM_POSITION_UNKNOWN.
 */
KVBM_API kvbm_status kvbm_stage_lineage(kvbm_manager *mgr, kvbm_mutable block,
					kvbm_hash seq_hash, kvbm_hash parent_hash,
					uint32_t position, uint32_t num_tokens,
					kvbm_complete *out);

/**
 * Roll a staged block back to mutable (its hash is forgotten).
 *
 * Ownership: consumes block on KVBM_OK; the caller owns *out.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE, KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_unstage(kvbm_manager *mgr, kvbm_complete block,
				  kvbm_mutable *out);

/**
 * Return a staged block to the reset pool without registering it.
 *
 * Ownership: consumes block on KVBM_OK. An empty handle is a no-op.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE, KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_complete_release(kvbm_manager *mgr,
					   kvbm_complete block);

/**
 * Register a staged block: its hash becomes matchable and the block
 * immutable and shared. If the hash is already registered (active or
 * inactive), the duplication policy decides: KVBM_DUP_ALLOW registers this
 * block as a duplicate (*out refers to it); KVBM_DUP_REJECT returns a
 * reference to the existing primary in *out and puts this block back in
 * the reset pool (out->block then differs from block.block).
 *
 * Ownership: consumes block on KVBM_OK; the caller owns one reference in
 *   *out (release with kvbm_immutable_release).
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_STALE, KVBM_E_INVAL, KVBM_E_NOMEM (reference table could
 *   not grow).
 */
KVBM_API kvbm_status kvbm_register(kvbm_manager *mgr, kvbm_complete block,
				   kvbm_immutable *out);

/**
 * Register n staged blocks under one lock acquisition, in order; equivalent
 * to n kvbm_register() calls, all or nothing: if any handle is stale
 * nothing is registered.
 *
 * Ownership: consumes all n blocks on KVBM_OK; the caller owns n references.
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_STALE (some handle stale or repeated), KVBM_E_INVAL, KVBM_E_NOMEM.
 */
KVBM_API kvbm_status kvbm_register_batch(kvbm_manager *mgr,
					 const kvbm_complete *blocks, uint32_t n,
					 kvbm_immutable *out);

/**
 * Take one more reference to a registered block.
 *
 * Ownership: the caller owns *out, a new distinct handle, in addition to h.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE (h not live), KVBM_E_INVAL, KVBM_E_NOMEM.
 */
KVBM_API kvbm_status kvbm_immutable_retain(kvbm_manager *mgr, kvbm_immutable h,
					   kvbm_immutable *out);

/**
 * Drop one reference. When the last reference to a primary goes, the block
 * moves to the inactive pool: still matchable, now evictable (or to the
 * reset pool if it is marked reset-on-release). A duplicate's last release
 * returns it to the reset pool.
 *
 * Ownership: consumes h on KVBM_OK. An empty handle is a no-op.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE (released before, or never valid), KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_immutable_release(kvbm_manager *mgr,
					    kvbm_immutable h);

/**
 * Release n references under one lock acquisition, in array order. Release
 * a sequence's blocks tail first (last block first) so that the tail is
 * evicted before the shared prefix. Stale entries are skipped and reported.
 *
 * Ownership: consumes every live handle in hs.
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_STALE if any entry was stale (the others are released),
 *   KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_immutable_release_batch(kvbm_manager *mgr,
						  const kvbm_immutable *hs,
						  uint32_t n);

/**
 * Make a non-owning handle to the block's hash.
 *
 * Ownership: h stays owned by the caller; *out owns nothing.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE, KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_downgrade(kvbm_manager *mgr, kvbm_immutable h,
				    kvbm_weak *out);

/**
 * Turn a weak handle back into a reference. Succeeds while the block it
 * was taken from still holds that hash (active or inactive; an inactive
 * block is resurrected). After that block was evicted the call fails with
 * KVBM_E_NOTFOUND, unless the same hash was registered again on another
 * block, which is then returned (equal hash means equal contents).
 *
 * Ownership: the caller owns *out on KVBM_OK; w stays usable.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_NOTFOUND, KVBM_E_INVAL (empty w), KVBM_E_NOMEM.
 */
KVBM_API kvbm_status kvbm_weak_upgrade(kvbm_manager *mgr, kvbm_weak w,
				       kvbm_immutable *out);

/**
 * Mark a registered block (through any live reference) so that, on its
 * last release, it skips the inactive pool and returns to reset. The flag
 * survives resurrection and is cleared when the block is next allocated.
 *
 * Ownership: none.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE, KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_immutable_set_reset_on_release(kvbm_manager *mgr,
							 kvbm_immutable h,
							 bool reset);

/**
 * Give a registered block an eviction priority (0..100, higher stays
 * longer; default 35, as TensorRT-LLM's retention priorities) and a
 * retention in "release ticks" after which the priority decays back to the
 * default (0 = forever). Only KVBM_EVICT_PRIORITY orders by it; every
 * policy stores it so the catalog can restore it.
 *
 * Ownership: none.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE, KVBM_E_INVAL (priority > 100).
 */
KVBM_API kvbm_status kvbm_immutable_set_priority(kvbm_manager *mgr,
						 kvbm_immutable h,
						 uint32_t priority,
						 uint32_t retention);

/** Default block priority of kvbm_immutable_set_priority(). */
#define KVBM_PRIORITY_DEFAULT 35u

/**
 * Snapshot one block by id, whatever its state.
 *
 * Ownership: out is the caller's.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_INVAL (NULL, or block >= block_count).
 */
KVBM_API kvbm_status kvbm_block_info_read(kvbm_manager *mgr, uint32_t block,
					  kvbm_block_info *out);

/**
 * The sequence hash a live immutable reference holds.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE, KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_immutable_hash(kvbm_manager *mgr, kvbm_immutable h,
					 kvbm_hash *out);

/**
 * Live references to the block a reference points at (including h).
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_STALE, KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_immutable_ref_count(kvbm_manager *mgr,
					      kvbm_immutable h, uint32_t *out);

/**
 * Move every inactive block back to the reset pool (drops the cache).
 * Each dropped hash is announced as a REMOVED event; there is no CLEARED,
 * because referenced blocks stay registered.
 *
 * @param[out] n_dropped blocks moved (may be NULL)
 *
 * Ownership: none.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_INVAL (mgr NULL).
 */
KVBM_API kvbm_status kvbm_reset_inactive(kvbm_manager *mgr,
					 uint32_t *n_dropped);
/** @} */

/** @defgroup registry Registry and matching
 * One registry per manager maps each sequence hash to its primary block.
 * Every match call takes the manager lock once for the whole array.
 * @{ */

/**
 * Longest-prefix match: walk hashes in order and stop at the first hash
 * that is not registered (active or inactive). Inactive blocks found are
 * resurrected (made active, no longer evictable).
 *
 * @param hashes     sequence hashes of consecutive blocks
 * @param n          number of hashes (0 is allowed: nothing matches)
 * @param[out] out   array of n handles; the first *matched are filled
 * @param[out] matched length of the matched prefix
 *
 * Ownership: the caller owns *matched references.
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_INVAL (NULL arrays with n > 0), KVBM_E_NOMEM (nothing
 *   taken).
 */
KVBM_API kvbm_status kvbm_match(kvbm_manager *mgr, const kvbm_hash *hashes,
				uint32_t n, kvbm_immutable *out,
				uint32_t *matched);

/**
 * Scattered match: look up every hash, not stopping at misses. out[i] is a
 * reference for hashes[i] or an empty handle (gen == 0) for a miss.
 * Repeated hashes each get their own reference.
 *
 * @param[out] found number of hits
 *
 * Ownership: the caller owns every non-empty out[i].
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_INVAL, KVBM_E_NOMEM (nothing taken).
 */
KVBM_API kvbm_status kvbm_match_scattered(kvbm_manager *mgr,
					  const kvbm_hash *hashes, uint32_t n,
					  kvbm_immutable *out, uint32_t *found);

/**
 * Presence query: present[i] = whether hashes[i] is registered (active or
 * inactive). Takes no references, changes no eviction order or frequency.
 *
 * @param[out] present array of n flags (may be NULL to only count)
 * @param[out] n_present number of present hashes (may be NULL)
 * @param[out] prefix    length of the present prefix (may be NULL)
 *
 * Ownership: none.
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_contains(kvbm_manager *mgr, const kvbm_hash *hashes,
				   uint32_t n, bool *present,
				   uint32_t *n_present, uint32_t *prefix);
/** @} */

/** @defgroup hashing Sequence hashing
 * kvbm uses the encoding of NVIDIA Dynamo's "universal" hashing
 * (lib/tokens, lib/kv-hashing), so a Dynamo KV router and kvbm agree on
 * every hash. Encoding version KVBM_HASH_ENCODING (stored in catalogs):
 *
 *  - tokens are u32; a block's bytes are its tokens as little-endian u32;
 *  - local block hash  = XXH3_64(block bytes, seed 1337);
 *  - salt hash         = XXH3_64(salt bytes, seed 0), or 0 without a salt;
 *  - root sequence hash  = XXH3_64(u64le(salt hash) || u64le(local), seed 0);
 *  - child sequence hash = XXH3_64(u64le(parent seq) || u64le(local), seed 0).
 *
 * Only full blocks are hashed. These are non-cryptographic 64-bit hashes:
 * collisions are improbable, not impossible; isolate tenants with a salt.
 * @{ */
#define KVBM_HASH_ENCODING 1
#define KVBM_HASH_LOCAL_SEED 1337u

/**
 * Local (content-only) hash of one block of tokens.
 * Thread-safety: any thread, pure. Errors: none; returns 0 for NULL tokens.
 */
KVBM_API kvbm_hash kvbm_hash_block(const uint32_t *tokens, size_t n_tokens);

/** Salt hash of arbitrary bytes (0 when len == 0). Thread-safety: any thread, pure. */
KVBM_API kvbm_hash kvbm_hash_salt(const void *salt, size_t len);

/**
 * Sequence hash of a block given its parent's sequence hash, or, for the
 * first block (is_root), the salt hash. Thread-safety: any thread, pure.
 */
KVBM_API kvbm_hash kvbm_hash_chain(kvbm_hash parent_or_salt, kvbm_hash local,
				   bool is_root);

/**
 * Hash a whole token sequence into the sequence hashes of its full blocks.
 * A trailing partial block is not hashed.
 *
 * @param tokens     n_tokens token ids
 * @param block_size power of two 1..1024
 * @param salt_hash  kvbm_hash_salt() of the request salt, 0 for none
 * @param[out] out   up to cap hashes
 * @param[out] n_out full blocks in the sequence (n_tokens / block_size)
 *
 * Ownership: out is the caller's.
 * Thread-safety: any thread, pure.
 * Errors: KVBM_E_INVAL (NULL, bad block size), KVBM_E_SIZE (cap smaller
 *   than the number of full blocks; *n_out says how many are needed and
 *   nothing is written).
 */
KVBM_API kvbm_status kvbm_hash_sequence(const uint32_t *tokens, size_t n_tokens,
					uint32_t block_size, kvbm_hash salt_hash,
					kvbm_hash *out, size_t cap,
					size_t *n_out);
/** @} */

/** @defgroup catalog Catalog and warm restart
 * With cfg.catalog_path set, every registration, eviction and access is
 * persisted by a writer thread in batched SQLite transactions; the fast
 * path only marks the block dirty under the lock it already holds.
 *
 * Crash guarantee. After a crash at any instant (process kill, and with
 * KVBM_SYNC_FULL also power loss), the restored registry may miss
 * registrations and accesses of the last unflushed window, but it never
 * claims a hash for a block whose contents were reused after that hash was
 * recorded: an evicted block is handed out by kvbm_allocate() only after
 * the catalog has durably recorded it as free. A block whose row never
 * reached the file needs no such record and is handed out at once.
 * The guarantee covers block ownership, not KV bytes: use cfg.pre_commit
 * to make the data of newly registered blocks durable before their rows
 * commit, and cfg.restore_validate to veto blocks on restore.
 *
 * Cost. One commit writes one row per changed registered block (a block
 * changed many times between commits is one row) and one reclaim row
 * listing every block it records free, so an eviction costs about one row
 * write: the new registration's. Reclaims go first in every transaction;
 * when an allocation is waiting they are committed alone, and a commit
 * of rows in progress is cut short for it (the rows written so far are
 * committed, the rest written next). While blocks are being evicted a
 * commit carries at most 512 rows; a full cache that evicts nothing
 * writes full batches (cfg.catalog_batch). Under a backlog
 * the writer writes the most recently changed rows first (a flush and
 * kvbm_close still write everything that was dirty at their call).
 *
 * Reserve. The writer keeps victims reclaimed ahead of demand: taken out
 * of the eviction policy in its order, recorded free, still matchable
 * until allocated (a hit takes one back), handed out in exactly the
 * order the policy gave them. Under LRU a catalog therefore never
 * changes what is evicted. A policy whose choice depends on its state
 * (adaptive, arc, 2q, s3fifo, ...) chooses the reserve's victims with
 * the state it has when the writer takes them, up to the reserve's size
 * ahead of the allocations, and may then evict a little differently: in
 * an unpaced replay of 26M references on 1M blocks, whose reserve grew
 * to its largest, adaptive made 0.3% fewer hits with a catalog than
 * without (docs/BENCHMARKS.md). With
 * cfg.catalog_reserve = 0 its size follows demand: four times the
 * eviction rate times the commit latency plus twice the largest
 * allocation seen, at least min(16, block_count/8) and at most
 * block_count/8 blocks; free blocks count towards it. Reserved blocks are
 * not restored after a crash (their rows are marked free); kvbm_close
 * puts them back and persists them.
 *
 * Ownership. One manager writes a tier of a file: a second one (in this
 * process or another) is refused at open with KVBM_E_BUSY. The lock is an
 * OS lock on the file <catalog_path>-kvbm, released by the kernel when its
 * holder exits or is killed, so a crash never blocks the restart. Readers
 * (the sqlite3 shell, kvbm-catalog's read commands) take no lock. That
 * file also records which catalog it belongs to (a database or -wal file
 * copied in from another catalog is refused, never restored) and holds
 * 4 MiB set aside for a full disk. Only a missing or empty file is made a
 * new catalog; any other file that is not a kvbm catalog is refused before
 * anything is written to it.
 *
 * Failures. A commit that fails (disk full, I/O error, the write lock held
 * elsewhere) leaves the file exactly as of its last commit; the writer
 * retries with a growing delay (10 ms doubling, then once a second after
 * cfg.catalog_max_failures failures in a row) and never gives the catalog
 * up, so the next open restores everything committed. Meanwhile the
 * manager serves from memory: free blocks and blocks whose rows never
 * reached the file are handed out as usual; reusing a committed block needs
 * its reclaim to commit, and on a full disk the writer first gives back the
 * 4 MiB it set aside so those small commits can land. When that is not
 * enough and only committed blocks are left, kvbm_allocate() waits
 * cfg.catalog_wait_ms and returns the writer's error (KVBM_E_FULL,
 * KVBM_E_IO or KVBM_E_BUSY). kvbm_flush() returns it at once.
 *
 * WAL. The writer checkpoints on its own schedule: PASSIVE once the WAL
 * holds 1,000 frames (never waiting for readers), retried on idle cycles
 * and after failed commits, and a non-blocking TRUNCATE once everything is
 * copied. A reader holding a snapshot (a sqlite3 shell inside a
 * transaction) pins the WAL and lets it grow; once it is gone, the WAL
 * file returns to at most 16 MiB (journal_size_limit) within the writer's
 * next commit or idle cycle.
 * @{ */

/** Schema version this library writes (schema/NNN_*.sql). */
#define KVBM_SCHEMA_VERSION 4

/** Flags of kvbm_catalog_migrate(). */
#define KVBM_MIGRATE_DRY_RUN 1u /**< report what would be applied, change nothing */
#define KVBM_MIGRATE_CREATE 2u  /**< create the file (with no tiers) if it does not exist */

/**
 * Bring a catalog file's schema to KVBM_SCHEMA_VERSION in one transaction,
 * without opening a manager (no tier, incarnation or restore involved).
 * kvbm_open migrates by itself; this is for tools (kvbm-catalog migrate,
 * import).
 *
 * @param[out] from schema version found (0 for a new file); may be NULL
 * @param[out] to   version after the call (== from with DRY_RUN); may be NULL
 *
 * Ownership: errbuf is the caller's (may be NULL).
 * Thread-safety: any thread; takes SQLite's write lock on the file.
 * Errors: KVBM_E_MISMATCH (file is newer), KVBM_E_CORRUPT (not a catalog),
 *   KVBM_E_IO, KVBM_E_READONLY, KVBM_E_BUSY, KVBM_E_INVAL (path NULL).
 */
KVBM_API kvbm_status kvbm_catalog_migrate(const char *path, unsigned flags, int *from, int *to,
					  char *errbuf, size_t errlen);

/**
 * Check, without writing anything, that path is a kvbm catalog of this
 * library's schema with every table, column and view the library reads or
 * writes (what kvbm_open checks before it restores), for tools such as
 * kvbm-catalog verify.
 *
 * Ownership: errbuf is the caller's (may be NULL).
 * Thread-safety: any thread; opens its own read-only connection.
 * Errors: KVBM_E_CORRUPT (not a kvbm catalog, or a missing or broken
 *   table, column or view; the message names it), KVBM_E_MISMATCH (an older
 *   schema: migrate it first; or a newer one), KVBM_E_INVAL (NULL path, or
 *   not a regular file), KVBM_E_IO.
 */
KVBM_API kvbm_status kvbm_catalog_check(const char *path, char *errbuf, size_t errlen);

/** Longest full key kvbm_block_key_set() keeps. */
#define KVBM_KEY_MAX 64

/**
 * Record the full key a registered block's 64-bit hash stands for (vLLM's
 * 32-byte block hash, say), so that after a restart the caller can check
 * keys against restored blocks as it did before: the key goes into the
 * block's catalog row (in memory only until the row is written) and comes
 * back with the block (kvbm_block_key_take). A later call for the same
 * registration replaces it; a new registration of the block starts
 * without one. Without a catalog it does nothing.
 *
 * Ownership: key is copied.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_INVAL (NULL, len 0 or over KVBM_KEY_MAX), KVBM_E_NOTFOUND
 *   (hash is not a registered primary or inactive block), KVBM_E_NOMEM.
 */
KVBM_API kvbm_status kvbm_block_key_set(kvbm_manager *mgr, kvbm_hash hash, const void *key,
					uint32_t len);

/**
 * The full key a block restored from the catalog was recorded with
 * (kvbm_block_key_set before the restart): copied to buf, its length to
 * *len. Each restored key is given out once (kvbm keeps it only until
 * then, or until the block leaves the registry).
 *
 * Ownership: buf is the caller's, cap bytes.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_NOTFOUND (no restored key for hash: not restored, none
 *   recorded, or already taken), KVBM_E_INVAL (NULL argument; or cap too
 *   small: *len says how much is needed, the key stays).
 */
KVBM_API kvbm_status kvbm_block_key_take(kvbm_manager *mgr, kvbm_hash hash, void *buf,
					 uint32_t cap, uint32_t *len);

/**
 * Block until every change queued before this call is committed (the
 * oldest first, and what arrives meanwhile may ride along).
 *
 * Ownership: none.
 * Thread-safety: any thread except the pre_commit hook; may wait on disk.
 * Errors: KVBM_OK without a catalog; KVBM_E_IO/KVBM_E_FULL/KVBM_E_BUSY (the
 *   writer's commit failed; the message says why; it keeps retrying).
 */
KVBM_API kvbm_status kvbm_flush(kvbm_manager *mgr);
/** @} */

/** @defgroup events Events and metrics
 *
 * Block events for KV-aware routers. With cfg.event_sink set, the manager
 * queues an event for every hash that enters the registry (STORED: a new
 * primary, not a duplicate or a deduplicated registration) and every hash
 * that leaves it (REMOVED: evicted by kvbm_allocate, dropped by
 * kvbm_reset_inactive, or released with reset-on-release set), in the
 * order they happened. A dispatcher thread
 * hands them to the sink in batches of at most cfg.event_batch_max, at most
 * cfg.event_window_ms after the first event of a batch.
 *
 * Announcements: every manager's first batch starts with CLEARED, followed
 * by one STORED for each block a catalog restore brought back (exactly the
 * committed rows that were restored and not vetoed by restore_validate,
 * each parent before its children, an unbranched chain back to back), all
 * under the catalog's new incarnation number, which every batch carries
 * (0 without a catalog). A router that keys its index by worker and
 * incarnation thus replaces what it held for a crashed or restarted
 * worker. A memory-only manager ends with CLEARED at kvbm_close(); one
 * with a catalog does not (its blocks survive). kvbm_close() delivers
 * everything queued before it returns. (CLEARED is about one manager; the
 * ZeroMQ publisher below scopes it to the manager's tier on the wire.)
 *
 * The sink runs on the dispatcher thread with no kvbm lock held: it may
 * call any kvbm function on the manager except kvbm_close(). If a sink
 * falls more than 4M events (or block_count events, if larger) behind, the
 * undelivered events are discarded (counted in events_dropped) and the
 * next batch starts with CLEARED followed by the events that came after:
 * a router then misses blocks cached before the loss but never keeps one
 * that was removed.
 * @{ */

/** Kinds of block events. */
typedef enum kvbm_event_kind {
	KVBM_EVENT_STORED = 1,  /**< a hash became registered (new primary) */
	KVBM_EVENT_REMOVED = 2, /**< a hash left the registry (evicted or reset) */
	KVBM_EVENT_CLEARED = 3, /**< every hash of this manager is gone */
} kvbm_event_kind;

/** One block event. */
typedef struct kvbm_event {
	kvbm_event_kind kind;
	uint32_t block;        /**< block id (STORED, REMOVED) */
	kvbm_hash hash;        /**< sequence hash (STORED, REMOVED) */
	kvbm_hash parent_hash; /**< parent's sequence hash (STORED), 0 for none */
	uint32_t position;     /**< position or KVBM_POSITION_UNKNOWN (STORED) */
	uint32_t num_tokens;   /**< block size (STORED) */
	const uint32_t *tokens; /**< STORED through kvbm_stage_tokens: the num_tokens token ids; else NULL */
	const char *lora_name;  /**< STORED through kvbm_stage_tokens: its LoRA name, or NULL */
	uint32_t n_extra_keys;  /**< STORED through kvbm_stage_tokens: number of extra keys */
	const char *extra_keys; /**< those n_extra_keys strings, each NUL-terminated, back to back */
} kvbm_event;

/** A batch handed to the sink; valid only during the sink call. */
typedef struct kvbm_event_batch {
	const char *tier;         /**< the manager's tier name */
	uint64_t incarnation;     /**< catalog incarnation (0 without a catalog) */
	uint64_t seq;             /**< batch sequence number, from 0, no gaps */
	const kvbm_event *events; /**< events in the order they happened */
	size_t count;
	const char *medium;       /**< cfg.event_medium, or kvbm_tier_medium(tier) */
} kvbm_event_batch;

/**
 * The storage medium KV routers expect for a kvbm tier name: "G1" -> "GPU",
 * "G2" -> "CPU", "G3" -> "DISK", "G4" -> "EXTERNAL"; any other tier name
 * is returned unchanged (set cfg.event_medium for such tiers). These are
 * values that Dynamo's StorageTier::from_kv_medium (lib/kv-router) maps to
 * the device, host, disk and external tiers; llm-d lower-cases the medium
 * and keys its index by it ("gpu", "cpu", "disk").
 *
 * Ownership: a static string, or `tier` itself; NULL for a NULL tier.
 * Thread-safety: any thread, pure.
 * Errors: none.
 */
KVBM_API const char *kvbm_tier_medium(const char *tier);

/** A full block of tokens, as kvbm_stage_tokens() takes it. */
typedef struct kvbm_token_block {
	const uint32_t *tokens; /**< block_size token ids */
	uint32_t num_tokens;    /**< must equal the manager's block size */
	uint32_t position;      /**< position in the sequence, 0 for the first block */
	kvbm_hash parent_hash;  /**< the parent block's sequence hash (position > 0) */
	kvbm_hash salt_hash;    /**< kvbm_hash_salt() of the request salt (position 0), 0 for none */
	const char *lora_name;  /**< LoRA adapter the KV was computed with, NULL for none; <= 256 bytes */
	const char *const *extra_keys; /**< vLLM's extra_keys of this block: identifiers (mm hashes) of
					    the multimodal items in it; NULL for none; each <= 256 bytes */
	uint32_t n_extra_keys;  /**< entries of extra_keys, at most 16 */
} kvbm_token_block;

/**
 * kvbm_stage_lineage() from the block's tokens: the sequence hash is
 * computed exactly as kvbm_hash_sequence() computes hash `position` of the
 * sequence (kvbm_hash_chain of the parent hash, or of the salt hash at
 * position 0, with kvbm_hash_block of the tokens), so it equals the hash a
 * Dynamo router computes for the same tokens. When the block's
 * registration is STORED (a new hash, not a duplicate or a dedup), the
 * event carries a copy of the tokens, the LoRA name and the extra keys, so
 * the ZeroMQ publisher sends them in token_ids, lora_name and extra_keys.
 * The copy lives only from
 * this call to the event's delivery (or until the block is unstaged,
 * released or registered without a STORED event); kvbm keeps no tokens
 * per registered block, so blocks a catalog restore brings back are
 * announced by hash only, unless cfg.catalog_tokens is set: then the
 * block's row keeps a second copy (held in memory from this call until the
 * writer takes the row), and the restart announcement of a restored block
 * carries its tokens, LoRA name and extra keys as the first one did.
 *
 * What a router does with a block registered by hash only (kvbm_stage,
 * kvbm_stage_lineage, or restored): its STORED has empty token_ids. Dynamo
 * publishes no block for it ("token_ids too short"); llm-d builds no
 * request key from it, but files the event's medium for the blocks it
 * already knows by the same hash (a tier update). Both still apply its
 * REMOVED. Route on tokens when a router should find the block from a
 * request's tokens.
 *
 * The LoRA name and the extra keys are carried, not hashed:
 * kvbm_hash_sequence has no input for them, so give such requests their
 * own salt if their blocks must not match plain ones. Extra keys go out as
 * vLLM's per-block extra_keys (a list of strings for this block), which
 * llm-d and Dynamo read as multimodal item hashes and mix into their
 * request keys.
 *
 * Ownership: as kvbm_stage(); tb and its strings are copied (when events
 *   are on, and again with cfg.catalog_tokens), the caller keeps them.
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: as kvbm_stage_lineage(); KVBM_E_INVAL also for a NULL tb or
 *   tokens, a lora_name or extra key over 256 bytes, more than 16 extra
 *   keys or a NULL one; KVBM_E_NOMEM when the token copy
 *   cannot be allocated (nothing staged).
 */
KVBM_API kvbm_status kvbm_stage_tokens(kvbm_manager *mgr, kvbm_mutable block,
				       const kvbm_token_block *tb, kvbm_complete *out);

/** Finite buckets of the catalog flush-latency histogram. */
#define KVBM_FLUSH_BUCKETS 12

/** Counters (monotonic) and gauges of one manager. */
typedef struct kvbm_metrics {
	/* counters */
	uint64_t allocations;            /**< blocks handed out by kvbm_allocate */
	uint64_t allocations_from_reset; /**< of those, taken from the reset pool */
	uint64_t evictions;              /**< inactive blocks evicted for allocation */
	uint64_t registrations;          /**< blocks registered: new primaries + duplicates + dedups */
	uint64_t duplicates;             /**< registrations that became duplicates (ALLOW) */
	uint64_t dedups;                 /**< registrations answered by the existing primary (REJECT) */
	uint64_t stagings;               /**< blocks staged */
	uint64_t match_hashes_requested; /**< hashes asked of kvbm_match */
	uint64_t match_blocks_returned;  /**< references kvbm_match returned */
	uint64_t scan_hashes_requested;  /**< hashes asked of kvbm_match_scattered */
	uint64_t scan_blocks_returned;   /**< references kvbm_match_scattered returned */
	uint64_t resurrections;          /**< inactive blocks made active by a hit */
	uint64_t stale_handles;          /**< calls refused with KVBM_E_STALE */
	/* gauges */
	uint64_t inflight_mutable;   /**< mutable + staged blocks held */
	uint64_t inflight_immutable; /**< live immutable references */
	uint64_t reset_pool;         /**< blocks in the reset pool */
	uint64_t inactive_pool;      /**< blocks in the inactive pool */
	/* catalog */
	uint64_t catalog_rows_queued;     /**< block changes marked for the writer */
	uint64_t catalog_rows_committed;  /**< block rows written in committed transactions */
	uint64_t catalog_reclaim_rows;    /**< reclaim rows written (at most one per commit, plus compactions) */
	uint64_t catalog_blocks_reclaimed;/**< evicted or freed blocks those reclaim rows recorded free */
	uint64_t catalog_rows_coalesced;  /**< changes folded into a row already queued */
	uint64_t catalog_commits;         /**< committed transactions */
	uint64_t catalog_failures;        /**< failed transactions */
	uint64_t catalog_alloc_waits;     /**< allocations that had to wait for the writer */
	uint64_t catalog_flush_ns_last;   /**< duration of the last commit */
	uint64_t catalog_flush_ns_max;    /**< longest commit */
	uint64_t catalog_pending;         /**< dirty rows and free records not yet committed (gauge) */
	uint64_t catalog_reserve;         /**< blocks reclaimed durably, ready to hand out (gauge) */
	uint64_t catalog_reserve_target;  /**< the size the writer keeps the reserve at (gauge) */
	uint64_t catalog_failing;         /**< 1 while the last commit failed: rows are retried, the file stays as committed (gauge) */
	int64_t catalog_last_error;       /**< kvbm_status of the last failure, 0 if none */
	/* events */
	uint64_t events_emitted;  /**< events queued for the sink */
	uint64_t event_batches;   /**< batches delivered */
	uint64_t events_dropped;  /**< events lost because the sink fell far behind (a CLEARED follows) */
	/* for serving dashboards */
	uint64_t block_count;          /**< cfg.block_count */
	uint64_t prefix_cache_queries; /**< tokens asked of kvbm_match: hashes x block size (vLLM's prefix_cache_queries) */
	uint64_t prefix_cache_hits;    /**< tokens kvbm_match found: blocks returned x block size (vLLM's prefix_cache_hits) */
	uint64_t catalog_flush_count;  /**< commits in the flush-latency histogram */
	uint64_t catalog_flush_ns_sum; /**< their total duration */
	uint64_t catalog_flush_buckets[KVBM_FLUSH_BUCKETS]; /**< commits per bucket, up to kvbm_flush_bucket_bounds[i] (not cumulative) */
} kvbm_metrics;

/**
 * Upper bounds, in seconds, of the flush-latency histogram buckets
 * (KVBM_FLUSH_BUCKETS of them, increasing; longer commits count only in
 * catalog_flush_count, the +Inf bucket).
 *
 * Ownership: a static array. Thread-safety: any thread. Errors: none.
 */
KVBM_API const double *kvbm_flush_bucket_bounds(void);

/**
 * A ZeroMQ publisher of block events in vLLM's KV-events wire format
 * (vllm/distributed/kv_events.py), as the routers that index vLLM workers
 * decode it (Dynamo lib/kv-router/src/zmq_wire, llm-d-router and
 * llm-d-kv-cache pkg/kvevents/engineadapter/vllm_adapter.go; docs/EVENTS.md
 * has the decode matrix), so they index a kvbm worker unchanged:
 *
 *  - PUB socket, multipart [topic, seq, payload]: seq an 8-byte big-endian
 *    batch number from 0 per publisher, payload the msgpack array
 *    [ts (float seconds), [event...], data_parallel_rank];
 *  - events, KVBM_ZMQ_EVENTS_MAP (default, vLLM since #42892): maps tagged
 *    by "type": {"type": "BlockStored", "block_hashes": [u64...],
 *    "parent_block_hash": u64 or nil, "token_ids": [u32...], "block_size": n,
 *    "lora_id": nil, "medium": medium, "lora_name": str or nil, and
 *    "extra_keys": [[str...] or nil per block] when a block has some},
 *    {"type": "BlockRemoved", "block_hashes": [...], "medium": medium},
 *    {"type": "AllBlocksCleared"}; KVBM_ZMQ_EVENTS_ARRAY: the same fields
 *    in the same order as arrays whose first element is the tag
 *    (["BlockStored", hashes, parent, tokens, ...]), for consumers that
 *    predate map events (llm-d-kv-cache). Fields with a default in vLLM
 *    (extra_keys when no block has any, group_idx, ...) are omitted, as
 *    vLLM's omit_defaults does;
 *  - hashes are kvbm's 64-bit sequence hashes as vLLM's integer block
 *    hashes, always encoded as msgpack uint64 (0xcf): every consumer reads
 *    that, where some read a smaller encoding as a type they reject;
 *  - consecutive STORED events that extend one chain (and carry tokens and
 *    LoRA name alike), and consecutive REMOVED events, share one entry; token_ids
 *    holds the chain's tokens back to back (block_size per block), or is
 *    empty for blocks registered by hash only (see kvbm_stage_tokens);
 *  - optional ROUTER replay socket: a request [empty, 8-byte start seq] is
 *    answered, for every buffered batch from start on, with
 *    [empty, topic, seq, payload] and ended by [empty, topic, -1 as 8
 *    bytes, empty] (KVBM_ZMQ_REPLAY_TOPIC, vLLM >= 0.26), or without the
 *    topic frame (KVBM_ZMQ_REPLAY_LEGACY, older vLLM);
 *  - with data_parallel_rank r > 0 the endpoints move as vLLM moves them:
 *    a tcp port is increased by r, an inproc (and, a kvbm extension: ipc)
 *    address gets the suffix "_dp<r>" (kvbm_zmq_publisher_endpoint() says
 *    where a publisher is);
 *  - routers apply AllBlocksCleared to the whole worker (every tier), and
 *    one publisher is one worker: it sends AllBlocksCleared only in its
 *    first batch (the stream of a new process). A later manager's CLEARED
 *    (another tier opening, a memory-only manager closing, an overflow)
 *    becomes a BlockRemoved of exactly the hashes that manager's tier
 *    announced through this publisher, or nothing (so managers sharing a
 *    publisher need distinct tier names). For that the publisher
 *    keeps the announced hashes: 16 to 32 bytes per announced block.
 * The catalog incarnation is not in vLLM's format; a restart shows as the
 * new publisher's AllBlocksCleared, followed by the restored blocks.
 */
typedef struct kvbm_zmq_publisher kvbm_zmq_publisher;

/** How events are encoded inside a batch. */
typedef enum kvbm_zmq_event_form {
	KVBM_ZMQ_EVENTS_MAP = 0,   /**< maps tagged by "type" (current vLLM); default */
	KVBM_ZMQ_EVENTS_ARRAY = 1, /**< tagged arrays (vLLM before map events) */
} kvbm_zmq_event_form;

/** How replayed batches are framed. */
typedef enum kvbm_zmq_replay_framing {
	KVBM_ZMQ_REPLAY_TOPIC = 0,  /**< [topic, seq, payload] (vLLM >= 0.26); default */
	KVBM_ZMQ_REPLAY_LEGACY = 1, /**< [seq, payload] (older vLLM) */
} kvbm_zmq_replay_framing;

/** Publisher settings; kvbm_zmq_config_init() fills the defaults. */
typedef struct kvbm_zmq_config {
	const char *endpoint;        /**< PUB address; bound if it has '*', "::", ipc:// or inproc://, else connected (as vLLM); default: every interface, port 5557, as vLLM */
	const char *replay_endpoint; /**< ROUTER address (always bound), NULL = no replay (default) */
	const char *topic;           /**< first frame of every message; default "" */
	uint32_t buffer_steps;       /**< batches kept for replay; default 10000 */
	uint32_t hwm;                /**< PUB high-water mark; default 100000 */
	int32_t data_parallel_rank;  /**< carried in every batch, offsets the endpoints; default 0 */
	kvbm_zmq_event_form event_form;         /**< default KVBM_ZMQ_EVENTS_MAP */
	kvbm_zmq_replay_framing replay_framing; /**< default KVBM_ZMQ_REPLAY_TOPIC */
} kvbm_zmq_config;

/** Fill defaults. Thread-safety: any thread. Errors: none. */
KVBM_API void kvbm_zmq_config_init(kvbm_zmq_config *cfg);

/**
 * Create the sockets (and the replay thread when replay_endpoint is set).
 * Use it as a manager's sink: cfg.event_sink = kvbm_zmq_sink,
 * cfg.event_user = the publisher; several managers may share one.
 *
 * Ownership: the caller owns *out; close it after every manager using it.
 * Thread-safety: any thread.
 * Errors: KVBM_E_INVAL (NULL config, endpoint or topic; unknown form or
 *   framing; a data_parallel_rank the endpoint cannot be offset by),
 *   KVBM_E_IO (bind/connect failed: errbuf says why), KVBM_E_NOMEM,
 *   KVBM_E_UNSUPPORTED (built without libzmq).
 */
KVBM_API kvbm_status kvbm_zmq_publisher_open(const kvbm_zmq_config *cfg,
					     kvbm_zmq_publisher **out,
					     char *errbuf, size_t errlen);

/**
 * The event sink that publishes a batch (a kvbm_event_sink_fn).
 * Thread-safety: called by dispatcher threads; serialises on the publisher.
 */
KVBM_API void kvbm_zmq_sink(const kvbm_event_batch *batch, void *publisher);

/** Batches published so far (for tests and metrics). Thread-safety: any thread. */
KVBM_API uint64_t kvbm_zmq_published(kvbm_zmq_publisher *p);

/**
 * The address a publisher's socket is at, after the data-parallel-rank
 * offset (what a subscriber must connect to).
 *
 * @param replay  false for the PUB socket, true for the replay socket
 *
 * Ownership: borrowed, valid until kvbm_zmq_publisher_close(); NULL for a
 *   NULL publisher or a publisher without replay when replay is true.
 * Thread-safety: any thread.
 * Errors: none.
 */
KVBM_API const char *kvbm_zmq_publisher_endpoint(const kvbm_zmq_publisher *p, bool replay);

/**
 * Stop the replay thread and close the sockets (lingering up to 1 s to
 * flush). NULL is a no-op.
 * Thread-safety: no sink call may run concurrently.
 * Errors: none beyond KVBM_OK.
 */
KVBM_API kvbm_status kvbm_zmq_publisher_close(kvbm_zmq_publisher *p);

/**
 * Snapshot every counter and gauge.
 *
 * Ownership: out is the caller's.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_metrics_read(kvbm_manager *mgr, kvbm_metrics *out);

/**
 * Render the metrics in Prometheus text exposition format (version 0.0.4),
 * every sample labelled with tier="<tier>". Same as
 * kvbm_metrics_format_many() with one manager.
 *
 * @param[out] buf     output, NUL-terminated when len > 0 (may be NULL with len 0)
 * @param[out] needed  bytes the full text needs, without the NUL (may be NULL)
 *
 * Ownership: buf is the caller's.
 * Thread-safety: any thread; takes the manager lock.
 * Errors: KVBM_E_INVAL, KVBM_E_SIZE (buf too small: *needed says how much).
 */
KVBM_API kvbm_status kvbm_metrics_format(kvbm_manager *mgr, char *buf,
					 size_t len, size_t *needed);

/**
 * Render several managers (the tiers of one server) as one exposition
 * page: each family's HELP and TYPE once, then one sample per manager,
 * told apart by its tier label. Beside the counters and gauges of
 * kvbm_metrics, the page has kvbm_kv_cache_usage_ratio (blocks held by
 * callers / block_count, 0..1, what vLLM's kv_cache_usage_perc measures:
 * cached blocks nobody references count as free), the token-based
 * kvbm_prefix_cache_queries_total / kvbm_prefix_cache_hits_total (vLLM's
 * prefix_cache_queries / prefix_cache_hits; hits / queries is the prefix
 * cache hit rate) and the histogram kvbm_catalog_flush_seconds. Gauges
 * counting blocks end in _blocks.
 *
 * @param mgrs  n managers with distinct tier names
 *
 * Ownership: buf is the caller's; mgrs is borrowed for the call.
 * Thread-safety: any thread; takes each manager's lock in turn.
 * Errors: KVBM_E_INVAL (NULL or empty list, a NULL manager, two managers
 *   with one tier name), KVBM_E_SIZE (buf too small: *needed says how
 *   much). The message is recorded on mgrs[0].
 */
KVBM_API kvbm_status kvbm_metrics_format_many(kvbm_manager *const *mgrs, size_t n,
					      char *buf, size_t len, size_t *needed);
/** @} */

/** @defgroup offload Pull-mode events and touch (for offloading managers)
 *
 * An offloading manager (vLLM's OffloadingManager, kvbm.vllm) must see the
 * events of a call synchronously after that call, on its own thread. Set
 * cfg.event_sink = kvbm_event_pull_sink and the manager queues events as
 * usual (same kinds, order, CLEARED announcement and overflow rule as the
 * events group) but starts no dispatcher thread: the caller drains the
 * queue with kvbm_events_take(). kvbm_close() discards what is still
 * queued. kvbm_touch() refreshes recency without counting a hit, as
 * vLLM's touch() does for blocks the GPU prefix cache already holds, and
 * kvbm_locate() says which block holds a hash without taking a reference,
 * and kvbm_pin()/kvbm_unpin() protect blocks from eviction without
 * changing their place in the eviction order.
 * @{ */

/**
 * The pull-mode marker: set cfg.event_sink to this function (event_user
 * is ignored) to queue events for kvbm_events_take() instead of a sink.
 * Called directly it does nothing.
 *
 * Ownership: none. Thread-safety: any thread. Errors: none.
 */
KVBM_API void kvbm_event_pull_sink(const kvbm_event_batch *batch, void *user);

/**
 * Move up to cap queued events (at most cfg.event_batch_max per call),
 * oldest first, into out. After an overflow the first event taken is
 * CLEARED (see the events group). The tokens, lora_name and extra_keys of
 * the events taken stay valid until the next kvbm_events_take() on this
 * manager or kvbm_close().
 *
 * @param[out] out         array of cap events (may be NULL when cap == 0)
 * @param[out] n_out       events written
 * @param[out] incarnation catalog incarnation of these events (may be NULL)
 *
 * Ownership: out is the caller's; taken events leave the queue, their
 *   token strings stay kvbm's (see above).
 * Thread-safety: any thread; takes the manager lock once; never waits.
 * Errors: KVBM_E_INVAL (mgr or n_out NULL, out NULL with cap > 0),
 *   KVBM_E_MISUSE (the manager was not opened with kvbm_event_pull_sink).
 */
KVBM_API kvbm_status kvbm_events_take(kvbm_manager *mgr, kvbm_event *out,
				      size_t cap, size_t *n_out,
				      uint64_t *incarnation);

/**
 * Mark registered hashes as just used, in array order, without counting a
 * hit: no reference is taken, no block is resurrected, access counts and
 * match metrics do not change. An inactive block moves to the
 * most-recently-used end of its policy, as if released again (LRU: newest;
 * ARC and 2Q: reused, so protected; FIFO: unchanged). A block in use
 * (referenced) is not moved now: a plain release makes it the newest
 * anyway, and kvbm_unpin() returns it to the recency of this touch.
 * A block the catalog writer already took ahead as a next victim (its
 * reserve) is taken back into the policy the same way. Hashes not
 * registered are skipped, except by KVBM_EVICT_VLLM_ARC, which orders
 * blocks being written and pinned too and adapts to a touched ghost hash.
 *
 * @param[out] n_touched blocks moved (may be NULL)
 *
 * Ownership: none.
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_INVAL (mgr NULL, hashes NULL with n > 0).
 */
KVBM_API kvbm_status kvbm_touch(kvbm_manager *mgr, const kvbm_hash *hashes,
				uint32_t n, uint32_t *n_touched);

/**
 * Where registered hashes are: blocks[i] is the block holding hashes[i]
 * (active or inactive) or UINT32_MAX. Like kvbm_contains(), takes no
 * references and changes no recency; the ids stay true only while nothing
 * else allocates, so an offloading manager that is the manager's only
 * allocator (kvbm.vllm) can use them for blocks it protects itself.
 *
 * @param[out] blocks  array of n block ids
 * @param[out] n_found hashes present (may be NULL)
 *
 * Ownership: blocks is the caller's.
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_INVAL (mgr NULL, hashes or blocks NULL with n > 0).
 */
KVBM_API kvbm_status kvbm_locate(kvbm_manager *mgr, const kvbm_hash *hashes,
				 uint32_t n, uint32_t *blocks, uint32_t *n_found);

/**
 * Pin registered hashes: take a reference to each, as kvbm_match_scattered()
 * does (out[i] empty for a miss), but without counting a use: no hit, no
 * access count, no match metrics, no policy touch. A pinned block is never
 * evicted. Release pins with kvbm_unpin() to keep the block's place in the
 * eviction order (kvbm_immutable_release() works too, and makes the block
 * the most recent). For a block being loaded, or an already stored block a
 * store must not evict, as vLLM's offloading managers protect them.
 *
 * @param[out] out   array of n handles
 * @param[out] found number of hashes pinned
 *
 * Ownership: the caller owns every non-empty out[i].
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_INVAL, KVBM_E_NOMEM (nothing taken).
 */
KVBM_API kvbm_status kvbm_pin(kvbm_manager *mgr, const kvbm_hash *hashes,
			      uint32_t n, kvbm_immutable *out, uint32_t *found);

/**
 * Release references (empty ones skipped). A block whose last reference
 * this drops, and which was cached before it was pinned, goes back into
 * the inactive pool at the recency it had: its release before the pin, or
 * a kvbm_touch() since, instead of as the most recent block. Exact for LRU,
 * ARC and ADAPTIVE (which keep their lists in release order; ARC and
 * ADAPTIVE also keep the block in the list it was in, a pin being no use)
 * and VLLM_ARC (which keeps a pinned block in its list); the other
 * policies take it as a fresh release. A block registered while pinned,
 * never cached before, is released as usual.
 *
 * Ownership: consumes every live handle in hs.
 * Thread-safety: any thread; takes the manager lock once.
 * Errors: KVBM_E_STALE if any entry was stale (the others are released),
 *   KVBM_E_INVAL.
 */
KVBM_API kvbm_status kvbm_unpin(kvbm_manager *mgr, const kvbm_immutable *hs,
				uint32_t n);
/** @} */


/** @defgroup tiers Tiers: hierarchies, victim previews, copies between tiers
 *
 * A server that keeps KV data in several tiers (G1 GPU, G2 host memory, G3
 * local disk) opens one manager per tier, each with its own block count,
 * block size and policy, and ties them together with a kvbm_hierarchy:
 * presence across tiers and the onboarding plan of a request in one call.
 *
 * Offload before evict, the protocol (docs/TIERS.md has the whole of it):
 *  1. kvbm_peek_victims(upper, n): the next n blocks upper would evict,
 *     changing nothing;
 *  2. kvbm_pin(upper, their hashes): a pinned block is never evicted, so
 *     its data stays put while it is copied (a victim hit or evicted since
 *     the preview comes back pinned or empty: skip the empty ones);
 *  3. allocate in lower, copy the data, kvbm_stage_from(lower, ..., upper,
 *     hashes) and kvbm_register_batch(lower, ...): lower now holds them;
 *  4. kvbm_unpin(upper, ...): the blocks go back to their place in upper's
 *     eviction order, and the next allocations evict them as previewed.
 * A block registered below before it leaves above is never missing from
 * the hierarchy: kvbm_hierarchy_lookup() asks the tiers fastest first (or,
 * with a presence index, reads each hash's tier mask at one instant), and
 * the protocol's order (registered below, then evicted above) never
 * passes through a moment when no tier holds it.
 *
 * Presence, two ways. By default a lookup asks each tier's own registry,
 * fastest tier first, under that tier's lock for up to 256 hashes at a
 * time: one probe per hash and tier, and nothing added to any tier's fast
 * path. With KVBM_HIERARCHY_PRESENCE_INDEX the hierarchy owns a table of
 * hash -> mask of the tiers holding it, sized once for the sum of its
 * tiers' block counts (16 bytes a slot, a power of two >= 2x the blocks:
 * 64 MiB for two 1M tiers, 4 bytes per 1,024 slots of stripe counters
 * besides) and filled from each tier's registry when the hierarchy is
 * created. From then on every change of a member tier's registry (a
 * registration that is not a duplicate, an eviction, a reset, a release
 * with reset-on-release) also updates the index, under that tier's own
 * lock, so a lookup is one probe per hash whatever the number of tiers
 * and takes no manager lock. The price is on the member tiers' fast path:
 * one more random memory access per block registered and per block
 * evicted (prefetched at kvbm_stage() and for a batch of victims), which
 * docs/BENCHMARKS.md measures at +90-230 ns per block, 1.8-2.7x the
 * allocate-register-release cycle of a lone tier, where a second tier's
 * probe costs a lookup ~20 ns per hash. So the index pays where lookups
 * outnumber registrations and evictions by about ten to one (a router
 * asking many candidate prefixes, a workload that mostly hits), and costs
 * where most looked-up blocks are then registered (a cold or churning
 * cache). A manager in no indexed hierarchy pays one predictable NULL
 * test per change; a manager is in at most one indexed hierarchy at a time.
 *
 * Persistence per tier: cfg.memory_volatile says a tier's block memory
 * dies with the process (a GPU tier). Such a tier may share the catalog
 * file of the others: it owns its tier of the file like any manager, but
 * its open clears the tier's rows instead of restoring them.
 * @{ */

/** One block a tier would evict next. */
typedef struct kvbm_victim {
	uint32_t block;     /**< block id in the previewed manager */
	uint32_t position;  /**< position in its sequence, KVBM_POSITION_UNKNOWN if not staged with lineage */
	kvbm_hash hash;     /**< sequence hash it holds */
	kvbm_hash parent;   /**< its parent's sequence hash, 0 for a root or unknown */
} kvbm_victim;

/**
 * Preview: the next n cached blocks the manager would evict, in the order
 * it would evict them if nothing else happened (free blocks are handed
 * out first and are not listed: kvbm_pool_counts_read() says how many).
 * Changes nothing: no eviction order, frequency, adaptive state, metric or
 * catalog row moves. Victims the catalog writer already reclaimed come
 * first, then the policy's.
 *
 * @param n          most victims wanted
 * @param[out] out   array of n entries; the first *count are filled
 * @param[out] count victims listed (fewer than n when fewer are cached)
 *
 * Ownership: out is the caller's.
 * Thread-safety: any thread; takes the manager lock once. The answer is a
 *   snapshot: a hit, pin or release afterwards changes the order.
 * Errors: KVBM_E_INVAL (NULL mgr, out or count), KVBM_E_UNSUPPORTED (the
 *   policy cannot preview: lineage, s3fifo, vllm-arc), KVBM_E_NOMEM.
 */
KVBM_API kvbm_status kvbm_peek_victims(kvbm_manager *mgr, uint32_t n, kvbm_victim *out,
				       uint32_t *count);

/**
 * Stage blocks of dst with what src knows of hashes: blocks[i] gets
 * hashes[i] with the lineage (parent, position) src's block of that hash
 * has, as kvbm_stage_lineage() would. For a block copied from a higher
 * tier into a lower one; register the results with kvbm_register_batch().
 * Frequency, priority and tokens are not copied: the lower tier's policy
 * learns its own.
 *
 * @param dst     manager whose mutable blocks are staged
 * @param blocks  n mutable guards of dst; consumed on success
 * @param src     manager that holds every hash (registered, any pool)
 * @param hashes  n sequence hashes
 * @param[out] out n complete guards of dst
 *
 * Ownership: on KVBM_OK the blocks are consumed and the caller owns out;
 *   on error nothing changes.
 * Thread-safety: any thread; takes src's lock, then dst's, never both.
 * Errors: KVBM_E_INVAL (NULL, dst == src, different block sizes),
 *   KVBM_E_NOTFOUND (src does not hold some hash: the message names it),
 *   KVBM_E_STALE (some block is not a live mutable guard of dst, or is
 *   named twice). The message is recorded on dst.
 */
KVBM_API kvbm_status kvbm_stage_from(kvbm_manager *dst, const kvbm_mutable *blocks,
				     uint32_t n, kvbm_manager *src, const kvbm_hash *hashes,
				     kvbm_complete *out);

/** Most tiers of one hierarchy. */
#define KVBM_TIERS_MAX 8

/** kvbm_hierarchy_create() flag: keep a presence index shared by the
 * tiers (see the group's text for what it costs and when it pays). */
#define KVBM_HIERARCHY_PRESENCE_INDEX (1u << 0)

typedef struct kvbm_hierarchy kvbm_hierarchy;

/**
 * Tie n managers into a hierarchy, fastest tier first (tiers[0] is the
 * one a request reads from, e.g. G1). The managers stay the caller's and
 * must outlive the hierarchy (free it before closing any of them); their
 * tier names must differ. With flags 0 this only records the tiers. With
 * KVBM_HIERARCHY_PRESENCE_INDEX it allocates the hierarchy's presence
 * index for the sum of the tiers' block counts (see the group's text) and
 * fills it from each tier's registry under that tier's lock, one tier at
 * a time: time linear in the blocks (0.07-0.25 s for two 1M-block tiers),
 * during which each tier's other calls wait only while its own registry
 * is copied. The managers then keep the index current themselves.
 *
 * @param flags  0 or KVBM_HIERARCHY_PRESENCE_INDEX
 *
 * Ownership: the caller owns *out and frees it with kvbm_hierarchy_free().
 * Thread-safety: any thread, concurrently with calls on the managers.
 * Errors: KVBM_E_INVAL (NULL, n == 0 or above KVBM_TIERS_MAX, a manager
 *   named twice, two tiers with one name, an unknown flag), KVBM_E_BUSY
 *   (with the index: a manager is already in an indexed hierarchy; the
 *   message names it; none of the managers is left attached),
 *   KVBM_E_NOMEM. The message goes to tiers[0] when there is one.
 */
KVBM_API kvbm_status kvbm_hierarchy_create(kvbm_manager *const *tiers, uint32_t n,
					   uint32_t flags, kvbm_hierarchy **out);

/**
 * Free a hierarchy and its presence index if it has one. Its managers
 * are detached (each under its lock: their calls may run meanwhile), stay
 * open and the caller's, and may join another hierarchy.
 *
 * Ownership: h is freed; NULL is a no-op.
 * Thread-safety: any thread; no lookup on h may run concurrently or
 *   follow, and every manager of h must still be open.
 * Errors: none.
 */
KVBM_API void kvbm_hierarchy_free(kvbm_hierarchy *h);

/**
 * Number of tiers of h (0 for NULL).
 *
 * Ownership: none. Thread-safety: any thread. Errors: none.
 */
KVBM_API uint32_t kvbm_hierarchy_tiers(const kvbm_hierarchy *h);

/**
 * Which tiers hold each hash of a chain, and the onboarding plan: the
 * longest prefix the hierarchy holds, with the fastest tier of each block.
 * With a presence index, one probe of it per hash for all tiers and no
 * manager lock; without, each tier's registry fastest first, one lock at a
 * time per 256 hashes (and with masks NULL, a slower tier is asked only
 * for the hashes no faster tier holds). Changes nothing: no hit, recency or metric. With
 * nothing changing concurrently the answer is exactly what the tiers'
 * registries hold (what kvbm_contains() on each would say).
 *
 * @param hashes      sequence hashes of consecutive blocks
 * @param[out] masks  n masks (may be NULL): bit t set if tier t holds hashes[i]
 * @param[out] fastest n entries (may be NULL): the lowest tier index holding
 *                    hashes[i], or 0xff if none holds it
 * @param[out] prefix length of the prefix every block of which some tier
 *                    holds (may be NULL): the onboarding plan is fastest[0..prefix)
 *
 * Ownership: the arrays are the caller's.
 * Thread-safety: any thread, concurrently with the tiers' own calls (the
 *   index is lock-free for readers; a lookup retries a hash whose entry a
 *   tier is changing). With the index each mask is a snapshot of that
 *   hash at one instant; without, of each tier at the instant it was
 *   asked. Different hashes may be read at different instants. Either
 *   way a block moving between tiers during the call (registered below,
 *   then evicted above, as the protocol orders it) is seen in at least
 *   one of them.
 * Errors: KVBM_E_INVAL (NULL h, NULL hashes with n > 0).
 */
KVBM_API kvbm_status kvbm_hierarchy_lookup(kvbm_hierarchy *h, const kvbm_hash *hashes,
					   uint32_t n, uint8_t *masks, uint8_t *fastest,
					   uint32_t *prefix);
/** @} */

#ifdef __cplusplus
}
#endif
#endif /* KVBM_H */
