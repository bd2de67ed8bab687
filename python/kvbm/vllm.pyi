# SPDX-License-Identifier: Apache-2.0
"""Type stubs of kvbm.vllm. When vLLM is importable the result classes are
vLLM's own; these are the stand-ins' shapes, which vLLM's share."""
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import Manager

HAVE_VLLM: bool

class LoadStoreSpec:
    @staticmethod
    def medium() -> str: ...

class CPULoadStoreSpec(LoadStoreSpec):
    block_ids: Any  # numpy int64 array (array('q') without numpy)
    def __init__(self, block_ids: Any) -> None: ...

@dataclass
class PrepareStoreOutput:
    block_hashes_to_store: list[bytes]
    store_spec: LoadStoreSpec
    block_hashes_evicted: list[bytes]

@dataclass
class OffloadingEvent:
    block_hashes: list[bytes]
    block_size: int
    medium: str
    removed: bool

class OffloadingManager: ...

class KvbmOffloadingManager(OffloadingManager):
    block_size: int
    medium: str
    events: list[OffloadingEvent] | None
    def __init__(self, block_size: int, num_blocks: int, cache_policy: str = "lru",
                 enable_events: bool = False, *, catalog: Any = None,
                 **kvbm_options: Any) -> None: ...
    @property
    def manager(self) -> Manager: ...
    def close(self) -> None: ...
    def __enter__(self) -> KvbmOffloadingManager: ...
    def __exit__(self, *exc: object) -> bool: ...
    def lookup(self, block_hashes: Iterable[bytes]) -> int: ...
    def prepare_load(self, block_hashes: Iterable[bytes]) -> LoadStoreSpec: ...
    def touch(self, block_hashes: Iterable[bytes]) -> None: ...
    def complete_load(self, block_hashes: Iterable[bytes]) -> None: ...
    def prepare_store(self, block_hashes: Iterable[bytes]) -> PrepareStoreOutput | None: ...
    def complete_store(self, block_hashes: Iterable[bytes], success: bool = True) -> None: ...
    def take_events(self) -> Iterable[OffloadingEvent]: ...
