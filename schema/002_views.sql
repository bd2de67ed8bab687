-- kvbm catalog schema, version 2: diagnostic views for operators. Views only;
-- they read a live catalog from the sqlite3 shell without blocking the writer
-- (WAL). Hashes are shown as 16 hex digits, times as UTC text.

-- Blocks per state and tier.
CREATE VIEW pool_summary AS
SELECT m.tier,
       m.block_count,
       (SELECT count(*) FROM blocks b WHERE b.tier = m.tier AND b.state = 1) AS registered,
       m.block_count - (SELECT count(*) FROM blocks b WHERE b.tier = m.tier AND b.state = 1)
         AS free
FROM meta m;

-- Registered blocks in the order the next restart will evict them (the next
-- victims first). Blocks active at the last commit sort by their last use.
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
FROM blocks WHERE state = 1;

-- Hottest blocks by access count (hits + registration).
CREATE VIEW hot_blocks AS
SELECT tier, block_id, printf('%016x', seq_hash) AS hash, position, access_count,
       frequency, datetime(last_access_at / 1000, 'unixepoch') AS last_access
FROM blocks WHERE state = 1
ORDER BY access_count DESC, tier, block_id;

-- Parent links of registered blocks: the edges of the prefix tree.
CREATE VIEW prefix_edges AS
SELECT tier, block_id, seq_hash, parent_hash, position
FROM blocks WHERE state = 1;

-- Every registered block with the root of its chain and its depth, walking
-- parent links up through the registered blocks (a chain whose parent was
-- evicted starts at the highest block still present).
CREATE VIEW block_roots AS
WITH RECURSIVE up(tier, block_id, node, parent, depth) AS (
	SELECT tier, block_id, seq_hash, parent_hash, 0 FROM blocks WHERE state = 1
	UNION ALL
	SELECT up.tier, up.block_id, b.seq_hash, b.parent_hash, up.depth + 1
	FROM up JOIN blocks b
	  ON b.tier = up.tier AND b.state = 1 AND b.seq_hash = up.parent
	WHERE up.parent IS NOT NULL AND up.depth < 100000
)
SELECT tier, block_id, printf('%016x', node) AS root, max(depth) AS depth
FROM up GROUP BY tier, block_id; -- SQLite takes root from the row holding max(depth)

-- Hottest prefixes: each chain root with the accesses of every block below it.
CREATE VIEW hot_prefixes AS
SELECT r.tier, r.root, count(*) AS blocks, sum(b.access_count) AS accesses,
       max(r.depth) + 1 AS longest_chain
FROM block_roots r JOIN blocks b ON b.tier = r.tier AND b.block_id = r.block_id
GROUP BY r.tier, r.root
ORDER BY accesses DESC;

-- How long chains are: registered blocks per position in their sequence.
CREATE VIEW chain_depth_histogram AS
SELECT tier, coalesce(position, -1) AS position, count(*) AS blocks
FROM blocks WHERE state = 1
GROUP BY tier, coalesce(position, -1)
ORDER BY tier, position;

-- Health of each tier's catalog: versions, lifecycle marks, flush recency.
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
