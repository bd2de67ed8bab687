# SPDX-License-Identifier: Apache-2.0
"""kvbm.vllm.KvbmOffloadingManager behaves as vLLM's CPUOffloadingManager.

Each test is one behaviour of vLLM's manager (vllm/v1/kv_offload/
cpu_manager.py and its tests), written from its semantics: which hashes
are stored and evicted, which block ids come back in which order, when a
store is refused, what loads and pending stores protect, and the events.
"""
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

import kvbm
from kvbm import vllm as kv

np = pytest.importorskip("numpy")
BS = 256
POLICIES = ["lru", "arc"]


def H(ints):
    """vLLM's tests' keys: BlockHash(str(i).encode())."""
    return [str(i).encode() for i in ints]


def ids(spec):
    assert isinstance(spec, kv.CPULoadStoreSpec)
    assert spec.block_ids.dtype == np.int64
    return spec.block_ids.tolist()


def store(m, ints):
    out = m.prepare_store(H(ints))
    assert out is not None
    m.complete_store(H(ints))
    return out


def events(m):
    out = []
    for e in m.take_events():
        assert e.block_size == BS and e.medium == "CPU"
        out.append(("removed" if e.removed else "stored", set(e.block_hashes)))
    return out


def make(policy="lru", n=4, **kw):
    return kv.KvbmOffloadingManager(block_size=BS, num_blocks=n, cache_policy=policy,
                                    enable_events=True, **kw)


@pytest.mark.parametrize("policy", POLICIES)
def test_fresh_blocks_in_order_and_pending_not_loadable(policy):
    m = make(policy)
    out = m.prepare_store(H([1, 2]))
    assert out.block_hashes_to_store == H([1, 2]) and out.block_hashes_evicted == []
    assert ids(out.store_spec) == [0, 1]
    assert m.lookup(H([1, 2])) == 0  # being stored: not loadable yet
    assert events(m) == []
    m.complete_store(H([1, 2]))
    assert events(m) == [("stored", set(H([1, 2])))]
    assert [m.lookup(H(q)) for q in ([1], [1, 2], [1, 2, 3], [3, 1])] == [1, 2, 2, 0]


def test_lru_call_for_call():
    """The call sequence of vLLM's test_cpu_manager, with vLLM's answers."""
    m = make("lru")
    store(m, [1, 2])
    assert events(m) == [("stored", set(H([1, 2])))]
    out = m.prepare_store(H([2, 3, 4, 5]))  # 2 already stored; evicts 1
    assert out.block_hashes_to_store == H([3, 4, 5])
    assert ids(out.store_spec) == [2, 3, 0] and out.block_hashes_evicted == H([1])
    assert events(m) == [("removed", set(H([1])))]
    assert m.prepare_store(H([1, 6])) is None  # 3, 4, 5 pending: only 2 evictable
    m.complete_store(H([2, 3, 4, 5]))
    assert ids(m.prepare_load(H([2, 3]))) == [1, 2]
    assert m.prepare_store(H([6, 7, 8])) is None  # 2, 3 being loaded
    m.complete_load(H([2, 3]))
    out = m.prepare_store(H([6, 7, 8]))  # oldest first; a finished load does not refresh
    assert out.block_hashes_evicted == H([2, 3, 4]) and ids(out.store_spec) == [3, 2, 1]
    m.complete_store(H([6, 7, 8]))
    m.touch(H([5, 6, 7]))
    out = m.prepare_store(H([9]))
    assert out.block_hashes_evicted == H([8]) and ids(out.store_spec) == [1]
    m.complete_store(H([7, 9]), success=False)  # 7 was stored: kept; 9 dropped
    assert m.lookup(H([7])) == 1 and m.lookup(H([9])) == 0
    assert events(m) == [("stored", set(H([3, 4, 5]))), ("removed", set(H([2, 3, 4]))),
                         ("stored", set(H([6, 7, 8]))), ("removed", set(H([8])))]


@pytest.mark.parametrize("policy", POLICIES)
def test_already_stored_block_not_evicted_by_same_call(policy):
    m = make(policy)
    store(m, [1, 2])
    m.touch(H([1]))  # 2 is now the eviction candidate
    out = m.prepare_store(H([2, 3, 4, 5]))
    assert out.block_hashes_to_store == H([3, 4, 5])
    assert out.block_hashes_evicted == H([1]) and ids(out.store_spec) == [2, 3, 0]
    m.complete_store(H([2, 3, 4, 5]))
    assert m.lookup(H([2])) == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_refused_store_changes_nothing(policy):
    m = make(policy)
    store(m, [1, 2, 3, 4])
    m.prepare_load(H([1]))
    assert m.prepare_store(H([5, 6, 7, 8])) is None  # 1 being loaded: 3 evictable
    assert m.lookup(H([1, 2, 3, 4])) == 4
    counts = m.manager.pool_counts()
    assert (counts["inactive"], counts["registered"]) == (3, 1)  # 1 pinned by its load
    m.complete_load(H([1]))
    out = m.prepare_store(H([5]))
    assert out.block_hashes_evicted == H([1])  # order as if the refusal never happened


@pytest.mark.parametrize("policy", POLICIES)
def test_loading_blocks_are_never_evicted(policy):
    m = make(policy)
    store(m, [1, 2, 3, 4])
    assert ids(m.prepare_load(H([2, 3]))) == [1, 2]
    m.prepare_load(H([2]))  # a second load of 2: two completions needed
    assert m.prepare_store(H([5, 6, 7])) is None
    out = m.prepare_store(H([5, 6]))
    assert set(out.block_hashes_evicted) == set(H([1, 4]))
    m.complete_store(H([5, 6]))
    m.complete_load(H([2, 3]))
    evicted = m.prepare_store(H([7, 8])).block_hashes_evicted
    assert H([2])[0] not in evicted  # still loading once
    if policy == "lru":
        assert evicted == H([3, 5])  # a finished load does not refresh 3
    m.complete_load(H([2]))
    with pytest.raises(kvbm.NotFound):
        m.complete_load(H([2]))


@pytest.mark.parametrize("policy", POLICIES)
def test_pending_blocks_are_never_evicted(policy):
    m = make(policy, n=2)
    store(m, [1])
    m.prepare_store(H([2]))  # pending
    out = m.prepare_store(H([3]))
    assert out.block_hashes_evicted == H([1])
    assert m.prepare_store(H([4])) is None  # 2 and 3 both pending
    assert m.prepare_store(H([2])).block_hashes_to_store == []  # pending counts as stored
    with pytest.raises(kvbm.NotFound):
        m.prepare_load(H([2]))


@pytest.mark.parametrize("policy", POLICIES)
def test_failed_store_frees_blocks_for_reuse(policy):
    m = make(policy)
    store(m, [1, 2])
    m.prepare_store(H([3, 4]))
    m.complete_store(H([1, 3, 4]), success=False)
    assert [m.lookup(H([k])) for k in (1, 3, 4)] == [1, 0, 0]
    out = m.prepare_store(H([5, 6]))  # the freed blocks, no eviction
    assert out.block_hashes_evicted == [] and sorted(ids(out.store_spec)) == [2, 3]
    assert events(m) == [("stored", set(H([1, 2])))]


def test_events_off_by_default():
    m = kv.KvbmOffloadingManager(block_size=BS, num_blocks=2)
    store(m, [1, 2])
    store(m, [3])
    assert list(m.take_events()) == []


def test_touch_order_follows_vllm_lru():
    m = make("lru", n=3)
    store(m, [1, 2, 3])
    m.touch(H([2, 1]))  # vLLM walks backwards: 2 ends most recent
    outs = [m.prepare_store(H([k])).block_hashes_evicted for k in (4, 5, 6)]
    assert outs == [H([3]), H([1]), H([2])]


def test_arc_touch_promotes_to_frequent():
    m = make("arc", n=2)
    store(m, [1])
    m.touch(H([1]))  # used twice: frequent
    store(m, [2])
    # A block used once goes before a frequent one, though it is newer.
    assert m.prepare_store(H([3])).block_hashes_evicted == H([2])
    m2 = make("arc", n=2)
    store(m2, [1])
    store(m2, [2])
    assert m2.prepare_store(H([3])).block_hashes_evicted == H([1])


def test_collision_is_a_miss_never_a_wrong_block():
    m = make("lru", n=4)
    store(m, [1])
    m._ix._forge_key(b"1", b"other key with the same 64-bit hash")  # as a collision would
    assert m.lookup(H([1])) == 0
    with pytest.raises(kvbm.NotFound):
        m.prepare_load(H([1]))
    assert m.prepare_store(H([1])).block_hashes_to_store == []  # not offloaded twice


def test_key_hash_rule():
    assert kvbm.key_hash(b"1") == kvbm.hash_salt(b"1")
    assert list(kvbm.key_hashes([b"a", b"b"])) == [kvbm.hash_salt(b"a"), kvbm.hash_salt(b"b")]
    assert kvbm.key_hash(b"") == 1  # XXH3 of nothing is 0 here (kvbm_hash_salt): mapped to 1
    with pytest.raises(TypeError):
        kvbm.key_hashes(["str"])


def test_catalog_restart_keeps_index_and_block_ids(tmp_path):
    path = tmp_path / "cpu.db"
    with make("lru", n=8, catalog=path) as m:
        store(m, [1, 2, 3])
        before = ids(m.prepare_load(H([1, 2, 3])))
        m.complete_load(H([1, 2, 3]))
    with make("lru", n=8, catalog=path) as m:
        assert m.lookup(H([1, 2, 3, 4])) == 3
        assert ids(m.prepare_load(H([1, 2, 3]))) == before
        m.complete_load(H([1, 2, 3]))
        out = m.prepare_store(H([4]))
        assert out.block_hashes_evicted == [] and ids(out.store_spec)[0] not in before


def test_restart_verifies_the_full_key_the_catalog_kept(tmp_path):
    """After a restart the full key comes back from the catalog: a key
    other than the one stored under a 64-bit hash is a miss, not adopted.
    (A real collision cannot be made on purpose; rewriting the stored key
    in the file makes the hash-holder's key differ in the same way.)"""
    import sqlite3
    path = tmp_path / "cpu.db"
    with make("lru", n=8, catalog=path) as m:
        store(m, [1, 2])
    with sqlite3.connect(path) as c:
        keys = [bytes(r[0]) for r in c.execute("SELECT key FROM block_rows WHERE key IS NOT NULL")]
        assert sorted(keys) == sorted(H([1, 2]))  # the full keys are in the rows
        c.execute("UPDATE block_rows SET key = ? WHERE key = ?", (b"another key", H([1])[0]))
    with make("lru", n=8, catalog=path) as m:
        assert m.lookup(H([2])) == 1  # its own key: a hit
        assert m.lookup(H([1])) == 0  # the catalog says another key holds it
        with pytest.raises(kvbm.NotFound):
            m.prepare_load(H([1]))


CHILD = textwrap.dedent("""
    import os, signal, sys
    from kvbm import vllm as kv
    m = kv.KvbmOffloadingManager(block_size=256, num_blocks=4, catalog=sys.argv[1],
                                 catalog_sync="normal")
    keys = [str(i).encode() for i in range(6)]
    for k in keys:                      # 6 stores into 4 blocks: 0 and 1 evicted
        m.prepare_store([k]); m.complete_store([k])
    m.prepare_store([b"pending"])      # evicts 2, never completed
    m.manager.flush()
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_sigkill_restart(tmp_path):
    path = tmp_path / "cpu.db"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=os.environ)
    assert proc.returncode == -signal.SIGKILL
    with make("lru", n=4, catalog=path) as m:
        hits = [m.lookup(H([k])) for k in range(6)]
        # Evicted blocks are never claimed (their block went to "pending",
        # whose data was never stored). The writer's reserve may already
        # have given up the oldest survivor (3): a miss, never a wrong hit.
        assert hits[:3] == [0, 0, 0] and hits[4:] == [1, 1]
        assert m.lookup([b"pending"]) == 0
        alive = [k for k in range(6) if hits[k]]
        held = ids(m.prepare_load(H(alive)))
        out = m.prepare_store(H(range(10, 14 - len(alive))))
        assert out.block_hashes_evicted == []  # every other block is free
        assert sorted(held + ids(out.store_spec)) == [0, 1, 2, 3]


STUB = {
    "vllm/__init__.py": "",
    "vllm/v1/__init__.py": "",
    "vllm/v1/kv_offload/__init__.py": "",
    "vllm/v1/kv_offload/abstract.py": """
from dataclasses import dataclass
class LoadStoreSpec: pass
class OffloadingManager: pass
@dataclass
class PrepareStoreOutput:
    block_hashes_to_store: list
    store_spec: object
    block_hashes_evicted: list
@dataclass
class OffloadingEvent:
    block_hashes: list
    block_size: int
    medium: str
    removed: bool
""",
    "vllm/v1/kv_offload/mediums.py": """
import numpy as np
from vllm.v1.kv_offload.abstract import LoadStoreSpec
class CPULoadStoreSpec(LoadStoreSpec):
    def __init__(self, block_ids):
        self.block_ids = np.array(block_ids, dtype=np.int64)
    @staticmethod
    def medium():
        return "CPU"
""",
}


def test_without_vllm_own_classes():
    assert not kv.HAVE_VLLM or "vllm" in sys.modules
    m = make("lru")
    out = m.prepare_store(H([1]))
    assert type(out).__name__ == "PrepareStoreOutput"
    assert out.store_spec.medium() == "CPU"


def test_returns_vllms_classes_when_importable(tmp_path):
    for rel, text in STUB.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    code = textwrap.dedent("""
        from kvbm import vllm as kv
        from vllm.v1.kv_offload import abstract, mediums
        assert kv.HAVE_VLLM
        m = kv.KvbmOffloadingManager(block_size=16, num_blocks=2, enable_events=True)
        out = m.prepare_store([b"a"])
        assert type(out) is abstract.PrepareStoreOutput
        assert type(out.store_spec) is mediums.CPULoadStoreSpec
        assert issubclass(kv.KvbmOffloadingManager, abstract.OffloadingManager)
        m.complete_store([b"a"])
        (ev,) = m.take_events()
        assert type(ev) is abstract.OffloadingEvent and ev.block_hashes == [b"a"]
        print("ok")
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


VLLM_SRC = os.environ.get("KVBM_VLLM_SRC")


@pytest.mark.skipif(not VLLM_SRC, reason="KVBM_VLLM_SRC (vLLM's cpu_manager.py + stubs) not set")
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(int(os.environ.get("KVBM_DIFF_SEEDS", "5"))))
def test_differential_against_vllm(policy, seed):
    """A random call mix through vLLM's own manager and kvbm's, every answer
    compared: loads in flight across stores, touches of keys not stored
    (ghosts too), failed stores, events as lists, capacity pressure. For
    arc, stores also stay in flight across other calls and complete in any
    order, touched meanwhile (vLLM's T1 counts them); lru completes each
    store at once (kvbm's lru orders a store by its completion, see
    docs/PYTHON.md)."""
    sys.path.insert(0, VLLM_SRC)
    from vllm.v1.kv_offload.cpu_manager import CPUOffloadingManager  # type: ignore

    import random

    rng = random.Random(f"{policy}-{seed}")
    n_blocks = rng.choice([4, 16, 37])
    n_keys = n_blocks * rng.choice([2, 5])
    ref = CPUOffloadingManager(block_size=BS, num_blocks=n_blocks, cache_policy=policy,
                               enable_events=True)
    ours = make(policy, n=n_blocks)
    loads, stores = [], []
    for step in range(int(os.environ.get("KVBM_DIFF_CALLS", "3000"))):
        where = (policy, seed, step)
        keys = H(rng.sample(range(n_keys), rng.randint(1, min(8, n_blocks))))
        op = rng.random()
        if op < 0.2:
            assert ref.lookup(keys) == ours.lookup(keys), where
        elif op < 0.4:
            ref.touch(keys)
            ours.touch(keys)
        elif op < 0.5:
            hit = ref.lookup(keys)
            if hit:
                assert ref.prepare_load(keys[:hit]).block_ids.tolist() == \
                    ids(ours.prepare_load(keys[:hit])), where
                loads.append(keys[:hit])
        elif op < 0.6 and loads:
            done = loads.pop(rng.randrange(len(loads)))
            ref.complete_load(done)
            ours.complete_load(done)
        elif op < 0.7 and stores:
            done = stores.pop(rng.randrange(len(stores)))
            rng.shuffle(done)
            ok = rng.random() < 0.8
            ref.complete_store(done, ok)
            ours.complete_store(done, ok)
        else:
            a, b = ref.prepare_store(keys), ours.prepare_store(keys)
            assert (a is None) == (b is None), where
            if a is not None:
                assert a.block_hashes_to_store == b.block_hashes_to_store, where
                assert a.block_hashes_evicted == b.block_hashes_evicted, where
                assert a.store_spec.block_ids.tolist() == ids(b.store_spec), where
                if policy == "arc" and rng.random() < 0.5:
                    stores.append(list(keys))
                else:
                    ok = rng.random() < 0.85
                    ref.complete_store(keys, ok)
                    ours.complete_store(keys, ok)
        assert [(e.removed, e.block_hashes) for e in ref.take_events()] == \
            [(e.removed, e.block_hashes) for e in ours.take_events()], where
