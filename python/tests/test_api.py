# SPDX-License-Identifier: Apache-2.0
"""kvbm.Manager over the C API: lifecycle, batch buffers, errors, events."""
import array
import threading

import pytest

import kvbm

BS = 16


def cached(m, hashes):
    """Allocate, commit (stage + register + release) one block per hash."""
    mut = m.allocate(len(hashes))
    assert m.commit(mut, hashes) == len(hashes)
    assert mut.live == 0
    return mut


def test_version_and_constants():
    assert kvbm.__version__.count(".") == 2
    assert kvbm.POSITION_UNKNOWN == 2**32 - 1
    assert "lru" in kvbm.POLICIES and "arc" in kvbm.POLICIES


def test_hash_sequence_matches_chain():
    tokens = list(range(3 * BS + 5))  # a trailing partial block is not hashed
    seq = kvbm.hash_sequence(tokens, BS)
    assert isinstance(seq, array.array) and seq.typecode == "Q" and len(seq) == 3
    h = kvbm.hash_chain(0, kvbm.hash_block(tokens[:BS]), True)
    assert seq[0] == h
    h = kvbm.hash_chain(h, kvbm.hash_block(tokens[BS:2 * BS]))
    assert seq[1] == h
    # same hashes from array('I') and from raw bytes of u32
    assert kvbm.hash_sequence(array.array("I", tokens), BS) == seq
    assert kvbm.hash_sequence(array.array("I", tokens).tobytes(), BS) == seq
    salted = kvbm.hash_sequence(tokens, BS, salt_hash=kvbm.hash_salt(b"tenant"))
    assert salted[0] != seq[0]
    with pytest.raises(kvbm.InvalidArgument):
        kvbm.hash_sequence(tokens, 3)
    with pytest.raises(OverflowError):
        kvbm.hash_sequence([2**32] * BS, BS)


def test_hash_sequence_numpy():
    np = pytest.importorskip("numpy")
    tokens = np.arange(4 * BS, dtype=np.uint32)
    assert kvbm.hash_sequence(tokens, BS) == kvbm.hash_sequence(tokens.tolist(), BS)


def test_key_helpers():
    keys = [b"k1", b"k2", b"k3"]
    hs = kvbm.key_hashes(keys)
    assert list(hs) == [kvbm.key_hash(k) for k in keys]
    side = {hs[0]: b"k1", hs[1]: b"someone else"}
    # k1 agrees, k2's hash belongs to another key: the count stops there.
    assert kvbm.verify_keys(side, keys, hs) == 1
    assert kvbm.verify_keys({}, keys, hs, 2) == 2  # unknown hashes are adopted
    assert kvbm.strerror(-5) == "handle is stale"


def test_context_manager_closes():
    with kvbm.Manager(block_count=8, block_size=BS) as m:
        assert m.total_blocks == 8 and m.block_size == BS and not m.closed
    assert m.closed
    with pytest.raises(kvbm.Misuse):
        m.match([1])
    m.close()  # idempotent


def test_match_returns_cached_prefix_in_one_call():
    with kvbm.Manager(block_count=64, block_size=BS) as m:
        hashes = array.array("Q", range(100, 132))
        cached(m, hashes)
        query = array.array("Q", list(hashes[:20]) + [7] + list(hashes[21:]))
        with m.match(query) as refs:
            assert len(refs) == 20 and refs.kind == "immutable"
            assert list(refs.hashes()) == list(hashes[:20])
            assert m.pool_counts()["registered"] == 20
        assert m.pool_counts()["inactive"] == 32  # released on exit
        sc = m.match_scattered(query)
        assert len(sc) == 32 and sc.live == 31
        assert sc.blocks[20] == 0xFFFFFFFF
        sc.release()
        assert m.contains(query) == (20, 31)
        assert m.present([hashes[0], 7]) == b"\x01\x00"


def test_buffers_numpy_bytes_sequences_agree():
    np = pytest.importorskip("numpy")
    with kvbm.Manager(block_count=16, block_size=BS) as m:
        cached(m, [5, 6, 7])
        for q in ([5, 6, 7], array.array("Q", [5, 6, 7]), np.array([5, 6, 7], dtype=np.uint64),
                  np.array([5, 6, 7], dtype=np.int64), array.array("Q", [5, 6, 7]).tobytes()):
            assert m.contains(q) == (3, 3)
        with pytest.raises(TypeError):
            m.contains(np.array([5, 6, 7], dtype=np.uint32))
        with m.match(np.array([5, 6], dtype=np.uint64)) as refs:
            ids = kvbm.blocks_numpy(refs)
            assert ids.dtype == np.int64 and len(ids) == 2


def test_exhausted_is_all_or_nothing_with_message():
    with kvbm.Manager(block_count=4, block_size=BS) as m:
        held = m.allocate(3)
        with pytest.raises(kvbm.Exhausted) as e:
            m.allocate(2)
        assert e.value.status == -3 and "cannot allocate 2 blocks" in e.value.message
        assert isinstance(e.value, kvbm.Error)
        assert m.pool_counts()["mutable"] == 3
        held.release()
        assert m.available_blocks() == 4


def test_invalid_config_is_value_error():
    with pytest.raises(kvbm.InvalidArgument) as e:
        kvbm.Manager(block_count=4, block_size=3)
    assert isinstance(e.value, ValueError) and "block_size" in e.value.message
    with pytest.raises(kvbm.InvalidArgument):
        kvbm.Manager(block_count=4, policy="nope")
    with pytest.raises(TypeError):
        kvbm.Manager(block_count=4, events=42)


def test_stage_register_and_consumption():
    with kvbm.Manager(block_count=8, block_size=BS, policy="lineage") as m:
        mut = m.allocate(2)
        comp = m.stage(mut, [11, 12], parents=[0, 11], positions=[0, 1])
        assert mut.live == 0 and comp.kind == "complete"
        with pytest.raises(kvbm.InvalidArgument):
            m.register(mut)  # wrong kind
        refs = m.register(comp)
        assert comp.live == 0 and refs.live == 2
        info = m.block_info(refs.blocks[1])
        assert info["state"] == "registered" and info["parent_hash"] == 11 and info["position"] == 1
        more = m.retain(refs)
        refs.release()
        assert m.pool_counts()["registered"] == 2
        del more  # collected: released
        assert m.pool_counts()["inactive"] == 2


def test_stage_failure_keeps_mutables():
    with kvbm.Manager(block_count=4, block_size=BS) as m:
        mut = m.allocate(2)
        with pytest.raises(kvbm.InvalidArgument):
            m.stage(mut, [1])  # length mismatch
        assert mut.live == 2
        m.commit(mut, [1, 2])
        assert m.contains([1, 2]) == (2, 2)


def test_dropped_handles_are_released():
    with kvbm.Manager(block_count=4, block_size=BS) as m:
        m.allocate(4)  # result dropped at once
        assert m.available_blocks() == 4


def test_touch_reorders_without_hit():
    with kvbm.Manager(block_count=3, block_size=BS) as m:
        for h in (1, 2, 3):
            cached(m, [h])
        before = m.metrics()
        assert m.touch([1, 99]) == 1
        after = m.metrics()
        assert after["resurrections"] == before["resurrections"]
        assert after["match_blocks_returned"] == before["match_blocks_returned"]
        _, evicted = m.allocate(1, evicted=True)
        assert list(evicted) == [2]


def test_metrics_and_prometheus():
    with kvbm.Manager(block_count=8, block_size=BS, tier="G2") as m:
        cached(m, [1, 2])
        m.match([1]).release()
        d = m.metrics()
        assert d["registrations"] == 2 and d["match_blocks_returned"] == 1
        assert d["catalog_last_error"] == 0
        text = m.prometheus()
        assert 'tier="G2"' in text and "# TYPE" in text


def test_pull_events():
    with kvbm.Manager(block_count=1, block_size=BS, events="pull") as m:
        assert [e.kind for e in m.take_events()] == [kvbm.EVENT_CLEARED]
        cached(m, [0xA])
        cached(m, [0xB])  # evicts 0xA
        evs = m.take_events()
        assert [(e.kind, e.hash) for e in evs] == [
            (kvbm.EVENT_STORED, 0xA), (kvbm.EVENT_REMOVED, 0xA), (kvbm.EVENT_STORED, 0xB)]
        assert evs[0].num_tokens == BS
        assert m.take_events() == []
    with kvbm.Manager(block_count=1) as m:
        with pytest.raises(kvbm.Misuse):
            m.take_events()


def test_callback_events_delivered_by_close():
    got, lock = [], threading.Lock()

    def sink(events, incarnation, seq):
        with lock:
            got.extend((e.kind, e.hash) for e in events)

    m = kvbm.Manager(block_count=2, block_size=BS, events=sink, event_window_ms=1)
    cached(m, [0x42])
    m.close()  # delivers everything queued (GIL released while it waits)
    assert (kvbm.EVENT_STORED, 0x42) in got
    assert got[0] == (kvbm.EVENT_CLEARED, 0)


def test_default_policy_is_the_c_default(tmp_path):
    """No policy (or None) is kvbm_config_init's, adaptive: the catalog's
    tiers row records the policy a manager ran."""
    import sqlite3

    assert "adaptive" in kvbm.POLICIES
    for i, kw in enumerate(({}, {"policy": None}, {"policy": "lru"})):
        path = tmp_path / f"p{i}.db"
        with kvbm.Manager(block_count=8, block_size=BS, catalog=path, catalog_sync="off",
                          **kw) as m:
            cached(m, [10, 11])
        with sqlite3.connect(path) as c:
            (name,), = c.execute("SELECT eviction_policy FROM tiers").fetchall()
        assert name == (kw.get("policy") or "adaptive")


def test_catalog_survives_reopen(tmp_path):
    path = tmp_path / "tier.db"
    with kvbm.Manager(block_count=8, block_size=BS, catalog=path, catalog_sync="off") as m:
        cached(m, [10, 11, 12])
        m.flush()
    with kvbm.Manager(block_count=8, block_size=BS, catalog=str(path)) as m:
        assert m.contains([10, 11, 12]) == (3, 3)
    with pytest.raises(kvbm.Mismatch) as e:
        kvbm.Manager(block_count=8, block_size=32, catalog=path)
    assert "block_size 32 does not match" in e.value.message


def test_threads_share_a_manager():
    with kvbm.Manager(block_count=256, block_size=BS) as m:
        cached(m, list(range(1, 65)))
        errors = []

        def worker():
            try:
                for _ in range(200):
                    m.match(list(range(1, 65))).release()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors
        assert m.pool_counts()["inactive"] == 64


def test_stubs_name_what_the_module_has():
    """The .pyi files list the runtime's names, and every method has a docstring."""
    import ast
    import pathlib

    import kvbm.vllm

    pkg = pathlib.Path(kvbm.__file__).parent
    for stub, mod in (("__init__.pyi", kvbm), ("vllm.pyi", kvbm.vllm)):
        tree = ast.parse((pkg / stub).read_text())
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                assert hasattr(mod, node.name), f"{stub}: {node.name} not in {mod.__name__}"
            if isinstance(node, ast.ClassDef) and hasattr(mod, node.name):
                cls = getattr(mod, node.name)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                        assert hasattr(cls, item.name), f"{node.name}.{item.name} missing"
    for name in dir(kvbm.Manager):
        if not name.startswith("_"):
            assert getattr(kvbm.Manager, name).__doc__, f"Manager.{name} has no docstring"
