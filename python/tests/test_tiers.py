# SPDX-License-Identifier: Apache-2.0
"""Tiers from Python: previews, stage_from, hierarchy_lookup, Hierarchy, volatile tiers."""
import pytest

import kvbm

BS = 16


def cached(m, hashes, positions=None, parents=None):
    mut = m.allocate(len(hashes))
    if positions is None:
        assert m.commit(mut, hashes) == len(hashes)
    else:
        assert m.commit(mut, hashes, positions=positions, parents=parents) == len(hashes)


def test_peek_victims_names_the_next_evictions_and_changes_nothing():
    with kvbm.Manager(block_count=8, block_size=BS, policy="arc") as m:
        cached(m, list(range(1, 9)))
        m.match([3]).release()  # 3 goes to T2: arc evicts T1 first
        blocks, hashes = m.peek_victims(5)
        again = m.peek_victims(5)
        assert list(hashes) == list(again[1]) and len(hashes) == 5
        assert 3 not in hashes
        assert [m.block_info(b)["hash"] for b in blocks] == list(hashes)
        _, evicted = m.allocate(5, evicted=True)
        assert list(evicted) == list(hashes)
    with kvbm.Manager(block_count=4, block_size=BS, policy="lineage") as m:
        cached(m, [1])
        with pytest.raises(kvbm.Unsupported, match="lineage"):
            m.peek_victims(1)


def test_stage_from_copies_lineage_between_managers():
    g1 = kvbm.Manager(block_count=4, block_size=BS, tier="G1")
    g2 = kvbm.Manager(block_count=8, block_size=BS, tier="G2")
    cached(g1, [0xA0, 0xA1], positions=[0, 1], parents=[0, 0xA0])
    mut = g2.allocate(2)
    with pytest.raises(kvbm.NotFound):
        g2.stage_from(mut, g1, [0xA0, 0xBAD])
    assert mut.live == 2  # nothing staged
    done = g2.stage_from(mut, g1, [0xA0, 0xA1])
    assert mut.live == 0 and done.live == 2
    refs = g2.register(done)
    info = g2.block_info(refs.blocks[1])
    assert (info["hash"], info["parent_hash"], info["position"]) == (0xA1, 0xA0, 1)
    refs.release()
    masks, fastest, prefix = kvbm.hierarchy_lookup([g1, g2], [0xA0, 0xA1, 0xC0])
    assert list(masks) == [3, 3, 0] and list(fastest) == [0, 0, 0xFF] and prefix == 2
    with pytest.raises(kvbm.InvalidArgument):
        kvbm.hierarchy_lookup([g1, g1], [1])
    g1.close()
    with pytest.raises(kvbm.Error):
        kvbm.hierarchy_lookup([g1, g2], [1])
    g2.close()


def test_volatile_tier_restarts_cold_beside_a_warm_one(tmp_path):
    db = str(tmp_path / "tiers.db")
    for volatile, tier in ((True, "G1"), (False, "G2")):
        with kvbm.Manager(block_count=8, block_size=BS, tier=tier, catalog=db,
                          memory_volatile=volatile) as m:
            cached(m, [0x10, 0x11, 0x12])
    g1 = kvbm.Manager(block_count=8, block_size=BS, tier="G1", catalog=db, memory_volatile=True)
    g2 = kvbm.Manager(block_count=8, block_size=BS, tier="G2", catalog=db)
    assert g1.pool_counts()["inactive"] == 0
    assert g2.pool_counts()["inactive"] == 3
    masks, _, prefix = kvbm.hierarchy_lookup([g1, g2], [0x10, 0x11, 0x12])
    assert list(masks) == [2, 2, 2] and prefix == 3
    g1.close()
    g2.close()


@pytest.mark.parametrize("indexed", [False, True])
def test_hierarchy_follows_its_tiers_across_lookups_and_changes(indexed):
    g1 = kvbm.Manager(block_count=4, block_size=BS, tier="G1")
    g2 = kvbm.Manager(block_count=8, block_size=BS, tier="G2")
    cached(g2, [0xB0, 0xB1])
    with kvbm.Hierarchy([g1, g2], presence_index=indexed) as h:
        assert h.tiers == 2 and not h.closed
        assert h.lookup([0xB0, 0xB1, 0xB2]) == (bytes([2, 2, 0]), bytes([1, 1, 0xFF]), 2)
        # The tiers keep it current as they change (with the index, by
        # updating it): no new Hierarchy needed.
        cached(g1, [0xB0, 0xB2, 0xB3, 0xB4])
        masks, fastest, prefix = h.lookup([0xB0, 0xB1, 0xB2])
        assert list(masks) == [3, 2, 1] and list(fastest) == [0, 1, 0] and prefix == 3
        cached(g1, [0xC0])  # G1 is full: evicts one of the four
        probe = [0xB0, 0xB2, 0xB3, 0xB4, 0xC0]
        in_g1 = list(g1.present(probe))
        assert in_g1.count(1) == 4 and in_g1[-1]
        want = [(1 if a else 0) | (2 if x in (0xB0, 0xB1) else 0) for a, x in zip(in_g1, probe)]
        assert list(h.lookup(probe)[0]) == want
        # A manager is in one hierarchy at a time.
        with pytest.raises(kvbm.Busy, match="already in a hierarchy"):
            kvbm.Hierarchy([g2])
        # The one-call lookup asks the registries, whatever h is.
        assert kvbm.hierarchy_lookup([g1, g2], probe) == h.lookup(probe)
    assert h.closed and h.tiers == 0
    with pytest.raises(kvbm.Error, match="closed"):
        h.lookup([1])
    # Closed, it let its managers go: they may join another.
    again = kvbm.Hierarchy([g2, g1], presence_index=indexed)
    assert list(again.lookup([0xB1, 0xC0, 0xD0])[0]) == [1, 2, 0]
    # Closing a manager closes its hierarchy first (no dangling tier).
    g1.close()
    assert again.closed
    with pytest.raises(kvbm.Error):
        again.lookup([1])
    with pytest.raises(kvbm.Error):
        kvbm.Hierarchy([g1, g2])
    assert list(kvbm.hierarchy_lookup([g2], [0xB1])[0]) == [1]
    g2.close()
    with pytest.raises(TypeError):
        kvbm.Hierarchy([object()])
