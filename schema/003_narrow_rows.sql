-- kvbm catalog schema, version 3: rows as cheap as SQLite's own.
--
-- Version 2 kept one WITHOUT ROWID row per block keyed by (tier TEXT,
-- block_id) with a partial index on the random seq_hash: every row change
-- cost two B-tree updates at random places. Version 3 keys rows by one
-- integer, (tier_id << 32) | block_id, in a rowid table with no secondary
-- index, and records "these blocks no longer hold their hashes" as one
-- reclaim row per commit instead of one free row per block. `meta` and
-- `blocks` become views with their version-2 columns, so queries written
-- against them keep working.
--
-- Migration: what a v2 file would restore is kept exactly. Free rows
-- (state 0) claim nothing and are dropped; so are registered rows without
-- a hash and rows of a tier without an identity row, which v2 would not
-- have restored either.

DROP VIEW pool_summary;
DROP VIEW eviction_order;
DROP VIEW hot_blocks;
DROP VIEW prefix_edges;
DROP VIEW hot_prefixes;
DROP VIEW block_roots;
DROP VIEW chain_depth_histogram;
DROP VIEW catalog_health;

-- One row per tier (manager) sharing this file.
CREATE TABLE tiers (
	tier_id INTEGER PRIMARY KEY,       -- the high 32 bits of block_rows.id
	name TEXT NOT NULL UNIQUE,         -- e.g. 'G1'
	schema_version INTEGER NOT NULL,
	block_size INTEGER NOT NULL,
	block_count INTEGER NOT NULL,
	hash_algorithm TEXT NOT NULL,
	hash_encoding INTEGER NOT NULL,
	hash_seed INTEGER NOT NULL,
	hash_salt INTEGER NOT NULL,
	model_fingerprint TEXT NOT NULL DEFAULT '',
	eviction_policy TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	opened_at INTEGER NOT NULL,
	incarnation INTEGER NOT NULL,
	clean_shutdown INTEGER NOT NULL DEFAULT 0,
	last_clean_shutdown_at INTEGER,
	last_commit_at INTEGER,
	restored_blocks INTEGER NOT NULL DEFAULT 0,
	vetoed_blocks INTEGER NOT NULL DEFAULT 0,
	write_seq INTEGER NOT NULL DEFAULT 0  -- sequence number of the tier's last commit
);

INSERT INTO tiers (name, schema_version, block_size, block_count, hash_algorithm,
		   hash_encoding, hash_seed, hash_salt, model_fingerprint, eviction_policy,
		   created_at, opened_at, incarnation, clean_shutdown, last_clean_shutdown_at,
		   last_commit_at, restored_blocks, vetoed_blocks)
SELECT tier, 3, block_size, block_count, hash_algorithm, hash_encoding, hash_seed,
       hash_salt, model_fingerprint, eviction_policy, created_at, opened_at, incarnation,
       clean_shutdown, last_clean_shutdown_at, last_commit_at, restored_blocks, vetoed_blocks
FROM meta ORDER BY tier;

-- One row per block that holds a hash: registered (restored as inactive on
-- open) unless a reclaim row of the same tier with a higher seq lists it.
CREATE TABLE block_rows (
	id INTEGER PRIMARY KEY,            -- (tier_id << 32) | block_id
	wseq INTEGER NOT NULL,             -- write_seq of the commit that wrote it
	seq_hash INTEGER NOT NULL,
	parent_hash INTEGER,               -- NULL for a root or unknown lineage
	position INTEGER,                  -- NULL when unknown
	evict_key INTEGER NOT NULL,        -- eviction order: lowest goes first
	access_tick INTEGER NOT NULL,      -- logical time of last use
	access_count INTEGER NOT NULL,
	frequency INTEGER NOT NULL,        -- policy frequency estimate
	priority INTEGER NOT NULL,
	retention INTEGER NOT NULL,
	registered_at INTEGER,             -- unix ms, stamped by the writer
	last_access_at INTEGER,            -- unix ms, stamped by the writer
	tokens BLOB,                       -- cfg.catalog_tokens: u32le token ids (block_size of
	                                   -- them), u32le extra-key count, then the LoRA name and
	                                   -- each extra key NUL-terminated; NULL otherwise
	key BLOB                           -- kvbm_block_key_set: the full key the hash digests
	                                   -- (vLLM's 32-byte block hash), up to 64 bytes
);

INSERT INTO block_rows
SELECT (t.tier_id << 32) | b.block_id, 0, b.seq_hash, b.parent_hash, b.position, b.evict_key,
       b.access_tick, b.access_count, b.frequency, b.priority, b.retention, b.registered_at,
       b.last_access_at, NULL, NULL
FROM blocks b JOIN tiers t ON t.name = b.tier
WHERE b.state = 1 AND b.seq_hash IS NOT NULL AND b.block_id BETWEEN 0 AND 4294967295;

-- Durable "these blocks no longer hold the hashes their rows name": one row
-- per commit that evicted blocks whose rows had committed. A block listed
-- here is free until a row with wseq >= seq is written for it.
CREATE TABLE reclaims (
	rec_id INTEGER PRIMARY KEY,
	tier_id INTEGER NOT NULL,
	seq INTEGER NOT NULL,              -- write_seq of the commit
	blocks TEXT NOT NULL               -- JSON array of block ids
);

-- What an eviction policy learned beyond its blocks' rows (the adaptive
-- policy's split and ghosts), as the policy's own versioned blob: written
-- at a clean close and after every block_count/8 evictions, read back at
-- open by the same policy. A missing or unreadable row just starts it
-- fresh: it only steers eviction.
CREATE TABLE policy_state (
	tier_id INTEGER PRIMARY KEY,
	policy TEXT NOT NULL,              -- kvbm_evict_policy_name() that wrote it
	state BLOB NOT NULL
);

-- The file's identity: a random id fixed at creation. Every commit of
-- every tier bumps commit_seq, so this page is in every commit; the
-- library keeps the id beside the file too and refuses a WAL whose
-- commits carry another catalog's id.
CREATE TABLE catalog (
	singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
	catalog_id INTEGER NOT NULL,
	commit_seq INTEGER NOT NULL DEFAULT 0
);
INSERT INTO catalog (singleton, catalog_id) VALUES (1, random() & 9223372036854775807);
-- 'kvbm' in the database header: what `file` and kvbm check before
-- touching a file.
PRAGMA application_id = 1802920557;

DROP INDEX blocks_by_hash;
DROP TABLE blocks;
DROP TABLE meta;

-- Version-2 compatible views of the tables above.
CREATE VIEW meta AS
SELECT name AS tier, schema_version, block_size, block_count, hash_algorithm, hash_encoding,
       hash_seed, hash_salt, model_fingerprint, eviction_policy, created_at, opened_at,
       incarnation, clean_shutdown, last_clean_shutdown_at, last_commit_at, restored_blocks,
       vetoed_blocks
FROM tiers;

-- Each listed block with the newest reclaim that lists it (readable rows).
CREATE VIEW reclaimed_blocks AS
SELECT r.tier_id, j.value AS block_id, max(r.seq) AS seq
FROM reclaims r, json_each(CASE WHEN json_valid(r.blocks) THEN r.blocks ELSE '[]' END) j
WHERE j.type = 'integer' AND j.value >= 0
GROUP BY r.tier_id, j.value;

-- Reclaim rows the library cannot read (not a JSON array of ids: damage or
-- a hand edit): they might list any block, so no older row of their tier
-- is trusted, as the restore does.
CREATE VIEW unreadable_reclaims AS
SELECT tier_id, max(seq) AS seq FROM reclaims
WHERE NOT coalesce(json_valid(blocks), 0) OR json_type(blocks) != 'array'
   OR EXISTS (SELECT 1 FROM json_each(blocks) WHERE type != 'integer' OR value < 0)
GROUP BY tier_id;

-- Registered blocks as version 2 showed them (state is always 1: a free
-- block has no row). One scan of block_rows; the reclaim lookup uses an
-- automatic index, so every view below is O(n log n).
CREATE VIEW blocks AS
SELECT t.name AS tier, b.id & 4294967295 AS block_id, 1 AS state, b.seq_hash, b.parent_hash,
       b.position, b.registered_at, b.last_access_at, b.access_tick, b.access_count,
       b.frequency, b.priority, b.retention, b.evict_key
FROM block_rows b
JOIN tiers t ON t.tier_id = b.id >> 32
LEFT JOIN reclaimed_blocks m ON m.tier_id = b.id >> 32 AND m.block_id = b.id & 4294967295
LEFT JOIN unreadable_reclaims u ON u.tier_id = b.id >> 32
WHERE b.wseq >= 0 AND (m.seq IS NULL OR m.seq <= b.wseq) AND (u.seq IS NULL OR u.seq <= b.wseq);

CREATE VIEW pool_summary AS
SELECT m.tier,
       m.block_count,
       coalesce(r.registered, 0) AS registered,
       m.block_count - coalesce(r.registered, 0) AS free
FROM meta m
LEFT JOIN (SELECT tier, count(*) AS registered FROM blocks GROUP BY tier) r ON r.tier = m.tier;

CREATE VIEW eviction_order AS
SELECT tier,
       row_number() OVER (PARTITION BY tier ORDER BY evict_key, block_id) AS rank,
       block_id,
       printf('%016x', seq_hash) AS hash,
       position,
       access_count,
       frequency,
       priority,
       evict_key
FROM blocks;

CREATE VIEW hot_blocks AS
SELECT tier, block_id, printf('%016x', seq_hash) AS hash, position, access_count,
       frequency, datetime(last_access_at / 1000, 'unixepoch') AS last_access
FROM blocks
ORDER BY access_count DESC, tier, block_id;

CREATE VIEW prefix_edges AS
SELECT tier, block_id, seq_hash, parent_hash, position
FROM blocks;

-- Every registered block with the root of its cached chain and its depth.
-- The walk goes down from the roots (blocks whose parent is not cached),
-- so each block is visited once; version 2 walked up from every block.
-- Blocks on a parent cycle (a damaged file) have no root and are left out.
CREATE VIEW block_roots AS
WITH RECURSIVE reg AS MATERIALIZED (
	SELECT tier, block_id, seq_hash, parent_hash, access_count FROM blocks
),
down(tier, block_id, node, root, depth, access_count) AS (
	SELECT r.tier, r.block_id, r.seq_hash, r.seq_hash, 0, r.access_count FROM reg r
	WHERE r.parent_hash IS NULL
	   OR NOT EXISTS (SELECT 1 FROM reg p WHERE p.tier = r.tier AND p.seq_hash = r.parent_hash)
	UNION ALL
	SELECT d.tier, b.block_id, b.seq_hash, d.root, d.depth + 1, b.access_count
	FROM down d JOIN reg b ON b.tier = d.tier AND b.parent_hash = d.node
	WHERE d.depth < 100000
)
SELECT tier, block_id, printf('%016x', root) AS root, depth FROM down;

CREATE VIEW hot_prefixes AS
WITH RECURSIVE reg AS MATERIALIZED (
	SELECT tier, block_id, seq_hash, parent_hash, access_count FROM blocks
),
down(tier, node, root, depth, access_count) AS (
	SELECT r.tier, r.seq_hash, r.seq_hash, 0, r.access_count FROM reg r
	WHERE r.parent_hash IS NULL
	   OR NOT EXISTS (SELECT 1 FROM reg p WHERE p.tier = r.tier AND p.seq_hash = r.parent_hash)
	UNION ALL
	SELECT d.tier, b.seq_hash, d.root, d.depth + 1, b.access_count
	FROM down d JOIN reg b ON b.tier = d.tier AND b.parent_hash = d.node
	WHERE d.depth < 100000
)
SELECT tier, printf('%016x', root) AS root, count(*) AS blocks, sum(access_count) AS accesses,
       max(depth) + 1 AS longest_chain
FROM down
GROUP BY tier, root
ORDER BY accesses DESC;

CREATE VIEW chain_depth_histogram AS
SELECT tier, coalesce(position, -1) AS position, count(*) AS blocks
FROM blocks
GROUP BY tier, coalesce(position, -1)
ORDER BY tier, position;

CREATE VIEW catalog_health AS
SELECT m.tier,
       m.schema_version,
       (SELECT user_version FROM pragma_user_version) AS file_schema_version,
       m.incarnation,
       CASE m.clean_shutdown WHEN 1 THEN 'clean' ELSE 'open or crashed' END AS shutdown,
       datetime(m.opened_at / 1000, 'unixepoch') AS opened,
       datetime(m.last_commit_at / 1000, 'unixepoch') AS last_commit,
       datetime(m.last_clean_shutdown_at / 1000, 'unixepoch') AS last_clean_shutdown,
       m.restored_blocks,
       m.vetoed_blocks,
       (SELECT value FROM stats s WHERE s.tier = m.tier AND s.name = 'catalog_commits')
         AS commits,
       (SELECT value FROM stats s WHERE s.tier = m.tier AND s.name = 'catalog_failures')
         AS failures
FROM meta m;
