# SPDX-License-Identifier: Apache-2.0
"""kvbm as vLLM's offloading index: a drop-in ``OffloadingManager``.

``KvbmOffloadingManager(block_size, num_blocks, cache_policy, enable_events)``
takes the arguments of vLLM's ``CPUOffloadingManager``
(vllm/v1/kv_offload/cpu_manager.py) and implements the same interface
(vllm/v1/kv_offload/abstract.py): ``lookup``, ``prepare_load``, ``touch``,
``complete_load``, ``prepare_store``, ``complete_store``, ``take_events``.
The index lives in kvbm (C), so a block operation costs a fraction of the
pure-Python managers', and with ``catalog=PATH`` it survives a restart,
SIGKILL included.

What maps to what:

- a stored block is a kvbm block registered and released (inactive:
  matchable, evictable); a block being stored is a kvbm *mutable* block
  (not matchable, never evicted) until ``complete_store``; a block being
  loaded is pinned (``kvbm_pin``: never evicted, no hit counted, its place
  in the eviction order kept) until ``complete_load``, and so are the
  already-stored blocks a ``prepare_store`` names while it evicts;
- ``prepare_store`` allocates all or nothing: ``None`` when kvbm cannot
  make room, with nothing changed;
- block ids are kvbm block ids, handed out as vLLM's manager hands them
  out: never-used blocks in ascending order, then the evicted ones in the
  reverse of their eviction order, then those freed by failed stores, last
  freed first;
- eviction order is kvbm's policy ("lru", "arc", or any kvbm policy name),
  fed as vLLM feeds its own: stores enter in call order, ``touch`` moves
  blocks to the most recent end, lookups and loads leave the order alone.
  The remaining differences are listed in docs/PYTHON.md ("Differences").

Keys: vLLM's ``BlockHash`` is bytes. kvbm indexes by 64 bits,
``XXH3_64(key, seed 0)`` (0 mapped to 1; ``kvbm.key_hash``), and keeps the
full key of every block stored in this run in memory; every lookup and load
compares the full key, so a 64-bit collision is a miss, never another
block's data. Blocks restored from the catalog after a restart have no full
key in memory (the catalog keeps 64-bit hashes): the first key that matches
one is adopted for it (see docs/PYTHON.md, "Collisions").

Works without vLLM: the result classes then come from this module, with the
attributes of vLLM's (``PrepareStoreOutput``, ``CPULoadStoreSpec`` whose
``block_ids`` is a numpy int64 array when numpy is installed,
``OffloadingEvent``). When vLLM is importable its own classes are returned.
"""
from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Iterable

from . import Exhausted, Manager, NotFound, key_hashes, verify_keys

try:  # numpy is optional: block ids then come as array('q')
    import numpy as _np
except ImportError:  # pragma: no cover - exercised only without numpy
    _np = None


def _import_vllm():
    """vLLM's classes, from whichever module this vLLM version keeps them in."""
    try:
        from vllm.v1.kv_offload.abstract import (  # type: ignore
            LoadStoreSpec,
            OffloadingEvent,
            OffloadingManager,
            PrepareStoreOutput,
        )
    except ImportError:
        return None
    try:
        from vllm.v1.kv_offload.mediums import CPULoadStoreSpec  # type: ignore
    except ImportError:
        try:
            from vllm.v1.kv_offload.cpu.common import CPULoadStoreSpec  # type: ignore
        except ImportError:
            return None
    return LoadStoreSpec, OffloadingEvent, OffloadingManager, PrepareStoreOutput, CPULoadStoreSpec


_vllm = _import_vllm()
HAVE_VLLM = _vllm is not None

if HAVE_VLLM:
    LoadStoreSpec, OffloadingEvent, OffloadingManager, PrepareStoreOutput, CPULoadStoreSpec = _vllm
else:

    class LoadStoreSpec:  # type: ignore[no-redef]
        """Stand-in for vLLM's LoadStoreSpec (used when vLLM is absent)."""

        @staticmethod
        def medium() -> str:
            raise NotImplementedError

    class CPULoadStoreSpec(LoadStoreSpec):  # type: ignore[no-redef]
        """Stand-in for vLLM's CPULoadStoreSpec: ``block_ids`` as int64."""

        def __init__(self, block_ids):
            if _np is not None:
                self.block_ids = _np.array(block_ids, dtype=_np.int64)
            else:
                self.block_ids = array("q", block_ids)

        @staticmethod
        def medium() -> str:
            return "CPU"

        def __repr__(self) -> str:
            return repr(self.block_ids)

    @dataclasses.dataclass
    class PrepareStoreOutput:  # type: ignore[no-redef]
        """Stand-in for vLLM's PrepareStoreOutput."""

        block_hashes_to_store: list
        store_spec: LoadStoreSpec
        block_hashes_evicted: list

    @dataclasses.dataclass
    class OffloadingEvent:  # type: ignore[no-redef]
        """Stand-in for vLLM's OffloadingEvent."""

        block_hashes: list
        block_size: int
        medium: str
        removed: bool

    class OffloadingManager:  # type: ignore[no-redef]
        """Stand-in base class for vLLM's OffloadingManager."""


def _event_factory():
    """Build OffloadingEvents whatever this vLLM version calls the fields."""
    names = {f.name for f in dataclasses.fields(OffloadingEvent)}
    key_field = "block_hashes" if "block_hashes" in names else "keys"

    def make(keys, block_size, medium, removed):
        kw = {key_field: keys, "medium": medium, "removed": removed}
        if "block_size" in names:
            kw["block_size"] = block_size
        return OffloadingEvent(**kw)

    return make


_make_event = _event_factory()


def _spec(block_ids):
    return CPULoadStoreSpec(block_ids)


class KvbmOffloadingManager(OffloadingManager):
    """vLLM's CPU OffloadingManager with kvbm as its index.

    Args:
        block_size: tokens per offloaded block (a power of two up to 1024:
            kvbm's block size, checked against the catalog on reopen).
        num_blocks: blocks in the tier (block ids are 0..num_blocks-1).
        cache_policy: "lru" or "arc" as vLLM's, or any kvbm policy name.
        enable_events: collect stored/removed OffloadingEvents for
            take_events().
        catalog: path of a kvbm catalog: the index survives a restart.
        **kvbm_options: passed to kvbm.Manager (catalog_sync, tier,
            model_fingerprint, catalog_wait_ms, ...).
    """

    def __init__(self, block_size: int, num_blocks: int, cache_policy: str = "lru",
                 enable_events: bool = False, *, catalog=None, **kvbm_options):
        if cache_policy not in ("lru", "arc") and not isinstance(cache_policy, str):
            raise ValueError(f"Unknown cache policy: {cache_policy!r}")
        self.block_size = block_size
        self.medium = CPULoadStoreSpec.medium()
        self.events: list | None = [] if enable_events else None
        kvbm_options.setdefault("tier", self.medium)
        self._m = Manager(block_count=num_blocks, block_size=block_size, policy=cache_policy,
                          dup_policy="reject", catalog=catalog, **kvbm_options)
        self._catalog = catalog is not None
        self._pending = {}   # key -> (mutable Handles, index, hash): being stored
        self._loading = {}   # key -> [(pinned Handles, index), ...]: loads in flight
        self._keys = {}      # kvbm hash -> full key, for blocks stored in this run
        self._spare = []     # [(mutable Handles, index, block id)]: freed by failed stores

    # -- kvbm specifics -------------------------------------------------

    @property
    def manager(self) -> Manager:
        """The kvbm.Manager underneath (metrics, prometheus, flush)."""
        return self._m

    def close(self) -> None:
        """Commit the catalog and close; blocks being loaded or stored are released."""
        self._pending.clear()
        self._loading.clear()
        self._spare.clear()
        self._m.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _key_of(self, h: int) -> bytes:
        # A block restored from the catalog and evicted before any lookup
        # adopted a key for it: all that is known is its 64-bit hash.
        key = self._keys.pop(h, None)
        return key if key is not None else h.to_bytes(8, "little")

    # -- OffloadingManager ---------------------------------------------

    def lookup(self, block_hashes: Iterable[bytes]) -> int:
        keys = block_hashes if isinstance(block_hashes, list) else list(block_hashes)
        hs = key_hashes(keys)
        prefix, _ = self._m.contains(hs)
        return verify_keys(self._keys, keys, hs, prefix) if prefix else 0

    def prepare_load(self, block_hashes: Iterable[bytes]) -> LoadStoreSpec:
        keys = block_hashes if isinstance(block_hashes, list) else list(block_hashes)
        hs = key_hashes(keys)
        # Pinned, not matched: protected from eviction until complete_load
        # without counting a hit or moving in the eviction order, as vLLM's
        # ref_cnt does.
        pins = self._m.pin(hs)
        n = len(keys)
        if pins.live != n or verify_keys(self._keys, keys, hs) != n:
            pins.release()
            raise NotFound(f"prepare_load: not every block of {n} is stored")
        loading = self._loading
        for i, key in enumerate(keys):
            entry = loading.get(key)
            if entry is None:
                loading[key] = [(pins, i)]
            else:
                entry.append((pins, i))
        return _spec(pins.blocks)

    def touch(self, block_hashes: Iterable[bytes]) -> None:
        keys = block_hashes if isinstance(block_hashes, list) else list(block_hashes)
        hs = key_hashes(keys)
        hs.reverse()  # vLLM walks the list backwards: the first key ends most recent
        self._m.touch(hs)

    def complete_load(self, block_hashes: Iterable[bytes]) -> None:
        groups = {}
        loading = self._loading
        for key in block_hashes:
            entry = loading.get(key)
            if not entry:
                raise NotFound(f"complete_load: block {key!r} is not being loaded")
            pins, i = entry.pop()
            if not entry:
                del loading[key]
            g = groups.get(id(pins))
            if g is None:
                groups[id(pins)] = (pins, [i])
            else:
                g[1].append(i)
        for pins, idx in groups.values():
            pins.release(idx)  # unpin: each block keeps its place

    def prepare_store(self, block_hashes: Iterable[bytes]):
        keys = block_hashes if isinstance(block_hashes, list) else list(block_hashes)
        hs = key_hashes(keys)
        present = self._m.present(hs)
        pending = self._pending
        to_store, to_hash, stored_hs, seen = [], [], [], set()
        for key, h, p in zip(keys, hs, present):
            if p:
                # A 64-bit collision with another stored key also lands
                # here: such a key is simply not offloaded.
                stored_hs.append(h)
            elif key not in pending and key not in seen:
                seen.add(key)
                to_store.append(key)
                to_hash.append(h)
        if not to_store:
            return PrepareStoreOutput([], _spec([]), [])
        slots, evicted = self._allocate(len(to_store), stored_hs)
        if slots is None:
            return None
        for key, h, slot in zip(to_store, to_hash, slots):
            pending[key] = (slot[0], slot[1], h)
        evicted_keys = [self._key_of(h) for h in evicted]
        if evicted_keys and self.events is not None:
            self.events.append(_make_event(evicted_keys, self.block_size, self.medium, True))
        return PrepareStoreOutput(to_store, _spec([slot[2] for slot in slots]), evicted_keys)

    def _allocate(self, n: int, stored_hs: list):
        """n blocks as vLLM's manager hands them out, or (None, ()).

        vLLM takes never-used blocks first (ascending), then pops its free
        list: the blocks it just evicted (newest first), then those freed
        by failed stores (last freed first); it evicts only what those do
        not cover. kvbm's reset pool holds exactly the never-used blocks,
        because blocks of failed stores are kept here, still allocated in
        kvbm, on a stack (self._spare). Returns [(Handles, index, block
        id)] and the evicted hashes in eviction order.

        Blocks being loaded are pinned (prepare_load); stored_hs, the
        already-stored blocks named in this call, are pinned while kvbm
        evicts, so none of them is evicted and none changes its place. A
        refused allocation changes nothing, as in vLLM.
        """
        spare = self._spare
        counts = self._m.pool_counts()
        n_fresh = min(n, counts["reset"])
        n_evict = max(0, n - n_fresh - len(spare))
        n_spare = n - n_fresh - n_evict
        # With a catalog, kvbm may take a reserved victim even with free
        # blocks about (those a catalog row still claims): pin always then.
        guard = self._m.pin(stored_hs) if stored_hs and (n_evict or self._catalog) else None
        slots, evicted = [], ()
        if n_fresh + n_evict:
            try:
                mut, evicted = self._m.allocate(n_fresh + n_evict, evicted=True)
            except Exhausted:
                return None, ()
            finally:
                if guard is not None:
                    guard.release()
            blocks = mut.blocks
            k = n_fresh + n_evict
            order = list(range(n_fresh)) + list(range(k - 1, n_fresh - 1, -1))
            slots = [(mut, i, blocks[i]) for i in order]
        elif guard is not None:
            guard.release()
        for _ in range(n_spare):
            slots.append(spare.pop())
        return slots, evicted

    def complete_store(self, block_hashes: Iterable[bytes], success: bool = True) -> None:
        pending, known_keys, spare = self._pending, self._keys, self._spare
        # Runs of consecutive keys whose blocks came from one allocation:
        # each run is one commit, in call order, so blocks enter the
        # eviction order in the order vLLM's manager would list them.
        runs, stored = [], []
        for key in block_hashes:
            entry = pending.pop(key, None)
            if entry is None:
                continue  # already stored, or never prepared: vLLM ignores it too
            mut, i, h = entry
            if not success:
                spare.append((mut, i, mut.blocks[i]))  # reused last-freed-first, as vLLM
                continue
            known = known_keys.get(h)
            if known is not None and known != key:
                # A 64-bit collision with a stored key: not offloaded.
                spare.append((mut, i, mut.blocks[i]))
                continue
            if runs and runs[-1][0] is mut:
                runs[-1][1].append(i)
                runs[-1][2].append(h)
            else:
                runs.append((mut, [i], [h]))
            stored.append(key)
        for mut, idx, hs in runs:
            self._m.commit(mut, array("Q", hs), indices=idx, tail_first=False)
        if stored:
            known_keys.update(zip((h for run in runs for h in run[2]), stored))
            if self.events is not None:
                self.events.append(_make_event(stored, self.block_size, self.medium, False))

    def take_events(self) -> Iterable:
        if self.events is not None:
            yield from self.events
            self.events.clear()


__all__ = [
    "HAVE_VLLM",
    "CPULoadStoreSpec",
    "KvbmOffloadingManager",
    "LoadStoreSpec",
    "OffloadingEvent",
    "OffloadingManager",
    "PrepareStoreOutput",
]
