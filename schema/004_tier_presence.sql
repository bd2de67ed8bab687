-- Schema 4: how the tiers of one file overlap (issue 15). A hierarchy
-- keeps copies of a block in several tiers (docs/TIERS.md); per tier, its
-- registered blocks and how many of them hold a hash another tier of the
-- file also holds. One sort of the registered rows by hash (the window's
-- partition), so O(n log n) on any size of catalog. No table changes: a
-- version-3 file migrates by gaining this view.
CREATE VIEW tier_presence AS
SELECT m.tier,
       coalesce(c.registered, 0) AS registered,
       coalesce(c.in_other_tiers, 0) AS in_other_tiers
FROM meta m
LEFT JOIN (SELECT tier, count(*) AS registered, sum(lo <> hi) AS in_other_tiers
           FROM (SELECT tier, min(tier) OVER w AS lo, max(tier) OVER w AS hi
                 FROM blocks WINDOW w AS (PARTITION BY seq_hash))
           GROUP BY tier) c ON c.tier = m.tier;
