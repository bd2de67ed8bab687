# SPDX-License-Identifier: Apache-2.0
"""kvbm: the logical KV-cache block manager, from Python.

A thin layer over libkvbm (include/kvbm.h) through the C extension
``kvbm._kvbm``. Batch calls take hashes as any buffer of 8-byte integers
(``array('Q')``, numpy ``uint64``/``int64``, raw little-endian ``bytes``) or a
sequence of ints, so a 1,000-block request is one call::

    import kvbm
    with kvbm.Manager(block_count=1024, block_size=16, catalog="tier.db") as m:
        hashes = kvbm.hash_sequence(tokens, 16)
        with m.match(hashes) as refs:        # longest cached prefix
            ...                              # refs.blocks: array('I') of ids

Errors are ``kvbm.Error`` subclasses (``.status``, ``.message``). See
docs/PYTHON.md for the whole API and ``kvbm.vllm`` for vLLM's
OffloadingManager.
"""
from ._kvbm import (  # noqa: F401
    EVENT_CLEARED,
    EVENT_REMOVED,
    EVENT_STORED,
    HASH_ENCODING,
    POSITION_UNKNOWN,
    SCHEMA_VERSION,
    Busy,
    CatalogIOError,
    Corrupt,
    Error,
    Event,
    Exhausted,
    Full,
    Handles,
    Hierarchy,
    InvalidArgument,
    Manager,
    Mismatch,
    Misuse,
    NotFound,
    OffloadIndex,
    OutOfMemory,
    ReadOnly,
    SizeMismatch,
    StaleHandle,
    Unsupported,
    __version__,
    hash_block,
    hash_chain,
    hash_salt,
    hash_sequence,
    hierarchy_lookup,
    key_hash,
    key_hashes,
    strerror,
    verify_keys,
)

POLICIES = ("lru", "fifo", "multi-lru", "lineage", "priority", "s3fifo", "2q", "arc", "adaptive",
            "vllm-arc")


def blocks_numpy(handles, dtype="int64"):
    """Block ids of a Handles as a numpy array (numpy must be installed)."""
    import numpy as np

    return np.frombuffer(handles.blocks, dtype=np.uint32).astype(dtype)
