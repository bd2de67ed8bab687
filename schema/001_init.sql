-- kvbm catalog schema, version 1: identity per tier, one row per block.
-- Hashes are u64 stored as SQLite's signed 64-bit INTEGER (two's complement);
-- the views of later versions print them as 16 hex digits.

-- One row per tier (manager) sharing this file: what the rows were written
-- for, and the lifecycle marks of the catalog.
CREATE TABLE meta (
	tier TEXT PRIMARY KEY,
	schema_version INTEGER NOT NULL,
	block_size INTEGER NOT NULL,
	block_count INTEGER NOT NULL,
	hash_algorithm TEXT NOT NULL,      -- e.g. 'xxh3-64/dynamo-universal'
	hash_encoding INTEGER NOT NULL,    -- KVBM_HASH_ENCODING
	hash_seed INTEGER NOT NULL,        -- local block hash seed (1337)
	hash_salt INTEGER NOT NULL,        -- cfg.hash_salt
	model_fingerprint TEXT NOT NULL DEFAULT '',
	eviction_policy TEXT NOT NULL,     -- policy that wrote evict_key
	created_at INTEGER NOT NULL,       -- unix ms
	opened_at INTEGER NOT NULL,        -- unix ms, this incarnation
	incarnation INTEGER NOT NULL,      -- bumped by every open
	clean_shutdown INTEGER NOT NULL DEFAULT 0, -- 1 after kvbm_close, 0 while open
	last_clean_shutdown_at INTEGER,    -- unix ms
	last_commit_at INTEGER,            -- unix ms
	restored_blocks INTEGER NOT NULL DEFAULT 0, -- restored by this incarnation
	vetoed_blocks INTEGER NOT NULL DEFAULT 0    -- refused on restore (callback or damage)
);

-- One row per physical block that ever held a hash. state 1 = registered
-- (restored as inactive on open), 0 = free (claims nothing).
CREATE TABLE blocks (
	tier TEXT NOT NULL,
	block_id INTEGER NOT NULL,
	state INTEGER NOT NULL,
	seq_hash INTEGER,                  -- NULL when free
	parent_hash INTEGER,               -- NULL for a root or unknown lineage
	position INTEGER,                  -- NULL when unknown
	registered_at INTEGER,             -- unix ms, stamped by the writer
	last_access_at INTEGER,            -- unix ms, stamped by the writer
	access_tick INTEGER NOT NULL DEFAULT 0,  -- logical time of last use
	access_count INTEGER NOT NULL DEFAULT 0,
	frequency INTEGER NOT NULL DEFAULT 0,    -- policy frequency estimate
	priority INTEGER NOT NULL DEFAULT 35,
	retention INTEGER NOT NULL DEFAULT 0,
	evict_key INTEGER NOT NULL DEFAULT 0,    -- eviction order: lowest goes first
	PRIMARY KEY (tier, block_id)
) WITHOUT ROWID;

CREATE INDEX blocks_by_hash ON blocks (tier, seq_hash) WHERE state = 1;

-- Counters of the manager, persisted by the writer (kvbm_metrics names).
CREATE TABLE stats (
	tier TEXT NOT NULL,
	name TEXT NOT NULL,
	value INTEGER NOT NULL,
	PRIMARY KEY (tier, name)
) WITHOUT ROWID;
