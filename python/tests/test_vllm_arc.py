# SPDX-License-Identifier: Apache-2.0
"""cache_policy="arc": each behaviour of vLLM's ARCCachePolicy, one test each.

The expected evictions below are worked out by hand from vLLM's algorithm
(vllm/v1/kv_offload/cpu_manager.py), step by step in the comments:
T1/T2 in order oldest first, B1/B2 the ghosts, p the target size of T1.
Each scenario runs against kvbm.vllm and, when KVBM_VLLM_SRC names vLLM's
source, against vLLM's own CPUOffloadingManager, so the hand derivation
itself is checked against vLLM wherever its source is at hand.
"""
import os
import sys

import pytest

from kvbm import vllm as kv

BS = 16
VLLM_SRC = os.environ.get("KVBM_VLLM_SRC")


def _vllm(n):
    sys.path.insert(0, VLLM_SRC)
    from vllm.v1.kv_offload.cpu_manager import CPUOffloadingManager  # type: ignore

    return CPUOffloadingManager(block_size=BS, num_blocks=n, cache_policy="arc",
                                enable_events=True)


IMPLS = ["kvbm"] + (["vllm"] if VLLM_SRC else [])


@pytest.fixture(params=IMPLS)
def make(request):
    def make(n):
        if request.param == "vllm":
            return Tier(_vllm(n))
        return Tier(kv.KvbmOffloadingManager(block_size=BS, num_blocks=n, cache_policy="arc",
                                             enable_events=True))
    return make


class Tier:
    """Keys as small ints: key i is str(i).encode(), as in vLLM's tests."""

    def __init__(self, m):
        self.m = m

    @staticmethod
    def k(ints):
        return [str(i).encode() for i in ints]

    def prepare(self, *ints):
        """prepare_store; the evicted keys as ints, or None if refused."""
        out = self.m.prepare_store(self.k(ints))
        return None if out is None else [int(h) for h in out.block_hashes_evicted]

    def store(self, *ints):
        """A store completed at once; the evicted keys as ints."""
        ev = self.prepare(*ints)
        assert ev is not None
        self.m.complete_store(self.k(ints))
        return ev

    def touch(self, *ints):
        self.m.touch(self.k(ints))

    def ids(self, *ints):
        return list(self.m.prepare_store(self.k(ints)).store_spec.block_ids)


def test_touch_moves_t1_to_t2_and_t2_to_its_newest_end(make):
    t = make(3)
    t.store(1, 2, 3)                 # T1 [1 2 3]
    t.touch(1)                       # T1 [2 3]     T2 [1]
    t.touch(2)                       # T1 [3]       T2 [1 2]
    t.touch(1)                       # T2 [2 1]: touched again, newest
    assert t.store(4) == [3]         # p = 0: T1 first; B1 [3], T1 [4]
    # Two victims at once: T1's 4, then T1 has none left: T2's oldest, 2.
    assert t.store(5, 6) == [4, 2]


def test_touch_walks_the_keys_backwards(make):
    t = make(3)
    t.store(1, 2, 3)
    t.touch(1, 2)                    # vLLM visits 2 then 1: T2 [2 1]
    assert t.store(4, 5, 6) == [3, 2, 1]


def test_b1_ghost_touch_grows_p_and_t2_gives_the_victim(make):
    t = make(4)
    t.store(1, 2, 3, 4)              # T1 [1 2 3 4]
    t.touch(3)
    t.touch(4)                       # T1 [1 2]  T2 [3 4]
    assert t.store(5) == [1]         # |T1| 2 >= 0; B1 [1], T1 [2 5]
    assert t.store(6) == [2]         # B1 [1 2], T1 [5 6]
    t.touch(1)                       # B1 hit: p += max(1, |B2| 0 / |B1| 2) -> 1
    t.touch(2)                       # p = 2
    assert t.store(7) == [5]         # |T1| 2 >= floor(2): T1; B1 [1 2 5], T1 [6 7]
    t.touch(1)                       # p = 3
    assert t.store(8) == [3]         # |T1| 2 < 3: T2's oldest; B2 [3], T1 [6 7 8]


def test_b2_ghost_touch_shrinks_p_by_the_ghost_ratio(make):
    t = make(4)
    t.store(1, 2, 3, 4)
    t.touch(3)
    t.touch(4)                       # T1 [1 2]  T2 [3 4]
    t.store(5)
    t.store(6)
    t.store(7)                       # evicts 1, 2, 5: B1 [1 2 5], T1 [6 7]
    t.touch(1)
    t.touch(2)
    t.touch(5)
    t.touch(1)                       # p = 1, 2, 3, then 4 (= capacity)
    t.touch(2)                       # p stays at the capacity, 4
    assert t.store(8) == [3]         # |T1| 2 < 4: T2; B2 [3], T1 [6 7 8], T2 [4]
    t.touch(6)                       # T1 [7 8], T2 [4 6]
    t.touch(3)                       # B2 hit: p -= max(1, |B1| 3 / |B2| 1) -> 1
    # |T1| 2 >= 1: T1's oldest. (Had p dropped by 1 only, p = 3 > 2: T2's 4.)
    assert t.store(9) == [7]


def test_b1_ghost_touch_grows_p_by_a_fractional_ratio(make):
    t = make(4)
    t.store(1, 2, 3, 4)
    t.touch(1)
    t.touch(2)
    t.touch(3)                       # T1 [4], T2 [1 2 3]
    # Three victims: T1's 4; T1 has no other, so T2's 1 and 2.
    assert t.store(5, 6, 7) == [4, 1, 2]   # B1 [4], B2 [1 2], T1 [5 6 7], T2 [3]
    assert t.store(8) == [5]         # B1 [4 5], T1 [6 7 8]
    t.m.prepare_load(t.k([6, 7, 8]))
    assert t.store(9) == [3]         # T1 has no victim: T2's; B2 [1 2 3], T1 [6 7 8 9]
    t.m.complete_load(t.k([6, 7, 8]))
    t.touch(4)                       # B1 hit: p += max(1, |B2| 3 / |B1| 2) = 1.5
    t.touch(5)                       # p = 3.0
    t.touch(9)
    t.touch(8)                       # T1 [6 7], T2 [9 8]
    # |T1| 2 < floor(3.0): T2's oldest. (Whole steps of 1 would give p = 2: T1's 6.)
    assert t.store(10) == [9]


def test_a_ghost_stored_again_leaves_the_ghost_and_p_stays(make):
    t = make(3)
    t.store(1)
    t.touch(1)                       # T2 [1]
    t.store(2, 3)                    # T1 [2 3]
    assert t.store(4) == [2]         # B1 [2], T1 [3 4]
    assert t.store(5) == [3]         # B1 [2 3], T1 [4 5]
    assert t.store(2) == [4]         # B1 [2 3 4] -> 2 stored again: B1 [3 4]; T1 [5 2]
    assert t.store(3) == [5]         # B1 [4 5], T1 [2 3]; p still 0
    t.touch(3)                       # T1 [2], T2 [1 3]
    # |T1| 1 >= p 0: T1. (Had the two stores of ghosts moved p to 2: T2's 1.)
    assert t.store(6) == [2]


def test_ghosts_hold_the_last_capacity_hashes(make):
    t = make(2)
    t.store(1)
    t.touch(1)                       # T2 [1]
    t.store(2)                       # T1 [2]
    assert t.store(3) == [2]         # B1 [2]
    assert t.store(4) == [3]         # B1 [2 3]
    assert t.store(5) == [4]         # B1 [2 3 4] trimmed to 2: [3 4]
    t.touch(2)
    t.touch(2)                       # 2 forgotten: no ghost, p stays 0
    assert t.store(6) == [5]         # |T1| 1 >= 0: T1; B1 [4 5]
    t.touch(4)
    t.touch(4)                       # a ghost still: p = 1, then 2
    assert t.store(7) == [1]         # |T1| 1 < 2: T2's 1


def test_blocks_in_flight_count_in_t1_and_are_never_victims(make):
    t = make(4)
    t.store(1, 2)                    # T1 [1 2]
    t.store(3)
    t.touch(3)                       # T1 [1 2], T2 [3]
    t.store(4)                       # T1 [1 2 4]
    assert t.store(5) == [1]         # B1 [1], T1 [2 4 5]
    assert t.store(6) == [2]         # B1 [1 2], T1 [4 5 6]
    t.touch(1)
    t.touch(2)                       # p = 2
    assert t.prepare(7) == [4]       # 7 in flight: T1 [5 6 7*]
    t.touch(5)                       # T1 [6 7*], T2 [3 5]
    t.touch(7)                       # in flight: not a second use, stays in T1
    # |T1| counts 7 in flight: 2 >= floor(2), so T1's 6. (Without it, or had
    # the touch promoted 7, 1 < 2: T2's 3.)
    assert t.store(8) == [6]         # T1 [7* 8]
    assert t.store(9) == [8]         # 7 is skipped, never evicted: T1 [7* 9]
    t.m.complete_store(t.k([7]))     # written: stays where it is
    assert t.store(10) == [7]


def test_touch_of_a_block_in_flight_keeps_it_in_t1_as_newest(make):
    t = make(3)
    assert t.prepare(1) == []        # T1 [1*]
    t.store(2, 3)                    # T1 [1* 2 3]
    t.touch(1)                       # not touched twice: T1 [2 3 1*]
    t.m.complete_store(t.k([1]))
    assert t.store(4) == [2]
    t.touch(1)                       # written now: a touch promotes it, T2 [1]
    assert t.store(5, 6) == [3, 4]   # T1 before T2 (p = 0)
    assert t.store(7) == [5]


def test_blocks_being_loaded_keep_their_place_and_are_promoted_by_touch(make):
    t = make(3)
    t.store(1, 2, 3)                 # T1 [1 2 3]
    t.m.prepare_load(t.k([1]))       # 1 loading: in place, not a victim
    assert t.store(4) == [2]         # T1 [1 3 4]
    t.touch(1)                       # ready (being read): T2 [1]
    t.m.complete_load(t.k([1]))
    assert t.store(5, 6) == [3, 4]   # T1 [5 6], then T2 [1] would be next
    assert t.store(7) == [5]


def test_refused_when_p_points_at_a_t2_without_victims(make):
    t = make(2)
    t.store(1)
    t.touch(1)                       # T2 [1]
    t.store(2)                       # T1 [2]
    assert t.store(3) == [2]         # B1 [2], T1 [3]
    t.touch(2)
    t.touch(2)                       # p = 2
    t.m.prepare_load(t.k([1]))       # T2's only block is being loaded
    # |T1| 1 < 2: only T2 is searched, and it has no victim: refused,
    # although T1's 3 could go.
    assert t.prepare(4) is None
    assert t.m.lookup(t.k([3])) == 1
    t.m.complete_load(t.k([1]))
    assert t.store(4) == [1]


def test_block_ids_follow_vllms_free_list(make):
    t = make(3)
    assert t.ids(1, 2, 3) == [0, 1, 2]
    t.m.complete_store(t.k([1, 2, 3]))
    t.touch(1)                       # T1 [2 3], T2 [1]
    # Evicted 2 (id 1) and 3 (id 2) go on the free list in that order and
    # come off it newest first.
    assert t.ids(4, 5) == [2, 1]
    t.m.complete_store(t.k([4, 5]), False)   # freed 4 (id 2), then 5 (id 1)
    assert t.ids(6) == [1]


def test_kvbm_arc_stays_reachable():
    """"arc" is vLLM's ARC, "kvbm-arc" kvbm's own: there a block's place is
    its completed store, in vLLM's its prepared one."""
    def first_victim(policy):
        m = kv.KvbmOffloadingManager(block_size=BS, num_blocks=2, cache_policy=policy)
        m.prepare_store([b"1"])
        m.prepare_store([b"2"])
        m.complete_store([b"2"])
        m.complete_store([b"1"])
        return m.prepare_store([b"3"]).block_hashes_evicted

    assert first_victim("arc") == [b"1"]
    assert first_victim("kvbm-arc") == [b"2"]
