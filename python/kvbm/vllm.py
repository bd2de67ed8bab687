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
- eviction order is kvbm's policy: "lru" is kvbm's lru, "arc" kvbm's
  vllm-arc (a transcription of vLLM's ARCCachePolicy: blocks being
  written or loaded keep their places in T1/T2), "kvbm-arc" kvbm's own
  arc, any other kvbm policy name that policy; fed as vLLM feeds its own:
  stores enter in call order, ``touch`` moves blocks to the most recent
  end, lookups and loads leave the order alone. For lru and arc this is
  vLLM's behaviour call for call (tested against vLLM's own manager); the
  differences are in docs/PYTHON.md.

Keys: vLLM's ``BlockHash`` is bytes. kvbm indexes by 64 bits,
``XXH3_64(key, seed 0)`` (0 mapped to 1; ``kvbm.key_hash``), and keeps the
full key of every block stored in this run in memory; every lookup and load
compares the full key, so a 64-bit collision is a miss, never another
block's data. Blocks restored from the catalog after a restart have no full
key in memory (the catalog keeps 64-bit hashes): the first key that matches
one is adopted for it (see docs/PYTHON.md, "Hash keys and collisions").
The per-key state is in C (``kvbm.OffloadIndex``); this module only turns
its answers into vLLM's classes and events. One thread at a time, as vLLM's
scheduler calls it.

Works without vLLM: the result classes then come from this module, with the
attributes of vLLM's (``PrepareStoreOutput``, ``CPULoadStoreSpec`` whose
``block_ids`` is a numpy int64 array when numpy is installed,
``OffloadingEvent``). When vLLM is importable its own classes are returned.
"""
from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Iterable

from . import Manager, NotFound, OffloadIndex

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
                self.block_ids = _np.asarray(block_ids, dtype=_np.int64)
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


def _spec(raw_ids: bytes):
    """A CPULoadStoreSpec from block ids as raw int64 bytes."""
    if _np is None:
        return CPULoadStoreSpec(array("q", raw_ids).tolist())
    ids = _np.frombuffer(raw_ids, dtype=_np.int64)
    if HAVE_VLLM:
        return CPULoadStoreSpec(ids)
    spec = CPULoadStoreSpec.__new__(CPULoadStoreSpec)  # the ids are ready: skip a copy
    spec.block_ids = ids
    return spec


# vLLM's names for its policies -> kvbm's. kvbm's own ARC, which differs
# from vLLM's (docs/PYTHON.md, "Differences"), stays reachable as "kvbm-arc".
_POLICY_NAMES = {"arc": "vllm-arc", "kvbm-arc": "arc"}


class KvbmOffloadingManager(OffloadingManager):
    """vLLM's CPU OffloadingManager with kvbm as its index.

    Args:
        block_size: tokens per offloaded block (a power of two up to 1024:
            kvbm's block size, checked against the catalog on reopen).
        num_blocks: blocks in the tier (block ids are 0..num_blocks-1).
        cache_policy: "lru" or "arc" as vLLM's (kvbm's "lru" and
            "vllm-arc"), "kvbm-arc" for kvbm's own ARC, or any other kvbm
            policy name.
        enable_events: collect stored/removed OffloadingEvents for
            take_events().
        catalog: path of a kvbm catalog: the index survives a restart.
        **kvbm_options: passed to kvbm.Manager (catalog_sync, tier,
            model_fingerprint, catalog_wait_ms, catalog_reserve, ...).
    """

    def __init__(self, block_size: int, num_blocks: int, cache_policy: str = "lru",
                 enable_events: bool = False, *, catalog=None, **kvbm_options):
        self.block_size = block_size
        self.medium = CPULoadStoreSpec.medium()
        self.events: list | None = [] if enable_events else None
        kvbm_options.setdefault("tier", self.medium)
        if catalog is not None:
            # An offload tier evicts on nearly every store, and an evicted
            # block is reused only once the catalog says it is free: keep
            # an eighth of the tier reclaimed ahead (kvbm's default, 1/64,
            # suits a GPU tier), so stores rarely wait for the writer.
            # After a crash those next victims come back free, not cached.
            kvbm_options.setdefault("catalog_reserve", max(1, min(num_blocks // 8, 8192)))
        self._m = Manager(block_count=num_blocks, block_size=block_size,
                          policy=_POLICY_NAMES.get(cache_policy, cache_policy),
                          dup_policy="reject", catalog=catalog, **kvbm_options)
        self._ix = OffloadIndex(self._m, catalog is not None)

    # -- kvbm specifics -------------------------------------------------

    @property
    def manager(self) -> Manager:
        """The kvbm.Manager underneath (metrics, prometheus, flush)."""
        return self._m

    def close(self) -> None:
        """Give back blocks being loaded or stored, commit the catalog, close."""
        self._ix.close()
        self._m.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- OffloadingManager ---------------------------------------------

    def lookup(self, block_hashes: Iterable[bytes]) -> int:
        return self._ix.lookup(block_hashes)

    def prepare_load(self, block_hashes: Iterable[bytes]) -> LoadStoreSpec:
        try:
            return _spec(self._ix.prepare_load(block_hashes))
        except NotFound as exc:
            raise NotFound(f"{exc.message} (all blocks must be stored: check lookup)") from None

    def touch(self, block_hashes: Iterable[bytes]) -> None:
        self._ix.touch(block_hashes)

    def complete_load(self, block_hashes: Iterable[bytes]) -> None:
        try:
            self._ix.complete_load(block_hashes)
        except LookupError as exc:
            raise NotFound(str(exc)) from None

    def prepare_store(self, block_hashes: Iterable[bytes]):
        out = self._ix.prepare_store(block_hashes)
        if out is None:
            return None
        to_store, raw_ids, evicted = out
        if evicted and self.events is not None:
            self.events.append(_make_event(evicted, self.block_size, self.medium, True))
        return PrepareStoreOutput(to_store, _spec(raw_ids), evicted)

    def complete_store(self, block_hashes: Iterable[bytes], success: bool = True) -> None:
        stored = self._ix.complete_store(block_hashes, success)
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
