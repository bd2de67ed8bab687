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
  (not matchable, never evicted) until ``complete_store``; loads in flight
  are counted here, and ``prepare_store`` (the manager's only allocator)
  holds those blocks, and the already-stored blocks named in the same
  call, while kvbm evicts, so none of them is evicted;
- ``prepare_store`` allocates all or nothing: ``None`` when kvbm cannot
  make room, with nothing changed;
- block ids are kvbm block ids, handed out as vLLM's manager hands them
  out: never-used blocks in ascending order, then the evicted ones in the
  reverse of their eviction order;
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


_ABSENT = 0xFFFFFFFF


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
        self._loading = {}   # key -> [hash, loads in flight]
        self._keys = {}      # kvbm hash -> full key, for blocks stored in this run
        self._fresh = 0      # block ids below this were handed out before

    # -- kvbm specifics -------------------------------------------------

    @property
    def manager(self) -> Manager:
        """The kvbm.Manager underneath (metrics, prometheus, flush)."""
        return self._m

    def close(self) -> None:
        """Commit the catalog and close; blocks being loaded or stored are released."""
        self._pending.clear()
        self._loading.clear()
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
        blocks = self._m.locate(hs)
        n = len(keys)
        if (n and max(blocks) == _ABSENT) or verify_keys(self._keys, keys, hs) != n:
            raise NotFound(f"prepare_load: not every block of {n} is stored")
        # Loads are counted here, not as kvbm references: a reference would
        # re-enter the block as most recent when the load completes, which
        # vLLM's managers do not do. prepare_store, the only allocator,
        # protects loading blocks while it evicts.
        loading = self._loading
        for key, h in zip(keys, hs):
            entry = loading.get(key)
            if entry is None:
                loading[key] = [h, 1]
            else:
                entry[1] += 1
        return _spec(blocks)

    def touch(self, block_hashes: Iterable[bytes]) -> None:
        keys = block_hashes if isinstance(block_hashes, list) else list(block_hashes)
        hs = key_hashes(keys)
        hs.reverse()  # vLLM walks the list backwards: the first key ends most recent
        self._m.touch(hs)

    def complete_load(self, block_hashes: Iterable[bytes]) -> None:
        loading = self._loading
        for key in block_hashes:
            entry = loading.get(key)
            if entry is None:
                raise NotFound(f"complete_load: block {key!r} is not being loaded")
            entry[1] -= 1
            if entry[1] == 0:
                del loading[key]

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
        n = len(to_store)
        mut_evicted = self._allocate(n, stored_hs)
        if mut_evicted is None:
            return None
        mut, evicted = mut_evicted
        order = self._vllm_order(mut.blocks, len(evicted))
        blocks = mut.blocks
        for key, h, i in zip(to_store, to_hash, order):
            pending[key] = (mut, i, h)
        evicted_keys = [self._key_of(h) for h in evicted]
        if evicted_keys and self.events is not None:
            self.events.append(_make_event(evicted_keys, self.block_size, self.medium, True))
        return PrepareStoreOutput(to_store, _spec([blocks[i] for i in order]), evicted_keys)

    def _allocate(self, n: int, stored_hs: list):
        """kvbm_allocate, never evicting a block being loaded or one of
        stored_hs (already stored, named in this prepare_store).

        Those blocks are held while kvbm evicts, only when it may have to
        evict at all; a shortfall is answered before touching kvbm, so a
        failed prepare_store changes nothing, as in vLLM.
        """
        guarded = stored_hs + [e[0] for e in self._loading.values()] if self._loading else stored_hs
        if not guarded:
            try:
                return self._m.allocate(n, evicted=True)
            except Exhausted:
                return None
        counts = self._m.pool_counts()
        n_guarded = len(set(guarded))
        if n > counts["reset"] + counts["inactive"] - n_guarded:
            return None
        if n <= counts["reset"] and not self._catalog:
            return self._m.allocate(n, evicted=True)
        guard = self._m.match_scattered(guarded)
        try:
            return self._m.allocate(n, evicted=True)
        except Exhausted:
            return None
        finally:
            guard.release()

    def _vllm_order(self, blocks, n_evicted: int) -> list:
        """Indices into blocks in the order vLLM's manager hands blocks out.

        kvbm gives reset-pool blocks first (never-used ones ascending, then
        ones freed by failed stores, oldest first), then evicted ones in
        eviction order. vLLM takes never-used blocks first, then pops its
        free list: the evicted ones newest first, then the freed ones.
        """
        n = len(blocks)
        n_reset = n - n_evicted
        fresh = 0
        while fresh < n_reset and blocks[fresh] >= self._fresh:
            fresh += 1
        if fresh:
            self._fresh = blocks[fresh - 1] + 1
        return (list(range(fresh)) + list(range(n - 1, n_reset - 1, -1))
                + list(range(n_reset - 1, fresh - 1, -1)))

    def complete_store(self, block_hashes: Iterable[bytes], success: bool = True) -> None:
        groups = {}
        pending, keys = self._pending, self._keys
        for key in block_hashes:
            entry = pending.pop(key, None)
            if entry is None:
                continue  # already stored, or never prepared: vLLM ignores it too
            mut, i, h = entry
            g = groups.get(id(mut))
            if g is None:
                g = groups[id(mut)] = (mut, [], [], [])
            known = keys.get(h) if success else None
            if known is not None and known != key:
                mut.release([i])  # 64-bit collision with a stored key: not offloaded
                continue
            g[1].append(i)
            g[2].append(h)
            g[3].append(key)
        stored = []
        for mut, idx, hs, ks in groups.values():
            if not idx:
                continue
            if success:
                self._m.commit(mut, array("Q", hs), indices=idx, tail_first=False)
                keys.update(zip(hs, ks))
                stored.extend(ks)
            else:
                mut.release(idx)
        if stored and self.events is not None:
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
