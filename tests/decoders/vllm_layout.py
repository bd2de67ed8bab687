# SPDX-License-Identifier: Apache-2.0
"""vLLM's KVEventBatch as its msgspec decoder accepts it, checked with
python3-msgpack.

The struct layout is transcribed from vllm/distributed/kv_events.py
(EventBatch, KVCacheEvent tag=True, BlockStored, BlockRemoved,
AllBlocksCleared): field names, their order, which have defaults (and so
may be omitted), and their types. The envelope is checked as array_like,
the form every router decodes (Dynamo's KvEventBatch tuple, llm-d's
`msgpack:",array"` struct). Events may be tagged maps ("type", vLLM since
#42892) or tagged arrays (array_like, older vLLM).
"""
import msgpack

# name -> (type check, has a default in vLLM)
_HASH = lambda v: (isinstance(v, int) and 0 <= v < 2**64) or isinstance(v, bytes)
_OPT = lambda f: (lambda v: v is None or f(v))
_INT = lambda v: isinstance(v, int) and not isinstance(v, bool)
_STR = lambda v: isinstance(v, str)
_LIST = lambda f: (lambda v: isinstance(v, list) and all(f(x) for x in v))

FIELDS = {
    "BlockStored": [
        ("block_hashes", _LIST(_HASH), False),
        ("parent_block_hash", _OPT(_HASH), False),
        ("token_ids", _LIST(_INT), False),
        ("block_size", _INT, False),
        ("lora_id", _OPT(_INT), False),
        ("medium", _OPT(_STR), False),
        ("lora_name", _OPT(_STR), False),
        ("extra_keys", _OPT(_LIST(lambda k: k is None or isinstance(k, list))), True),
        ("group_idx", _OPT(_INT), True),
        ("kv_cache_spec_kind", _OPT(_STR), True),
        ("kv_cache_spec_sliding_window", _OPT(_INT), True),
    ],
    "BlockRemoved": [
        ("block_hashes", _LIST(_HASH), False),
        ("medium", _OPT(_STR), False),
        ("group_idx", _OPT(_INT), True),
    ],
    "AllBlocksCleared": [],
}


class LayoutError(Exception):
    pass


def _need(cond, what):
    if not cond:
        raise LayoutError(what)


def decode_event(raw):
    """One event as a dict {"type": tag, field: value...}, validated."""
    if isinstance(raw, dict):
        tag = raw.get("type")
        _need(tag in FIELDS, f"unknown or missing tag {tag!r}")
        fields = FIELDS[tag]
        names = [n for n, _, _ in fields]
        for k in raw:
            _need(k == "type" or k in names, f"{tag}: unknown field {k!r}")
        out = {"type": tag}
        for name, ok, has_default in fields:
            if name not in raw:
                _need(has_default, f"{tag}: required field {name} missing")
                continue
            _need(ok(raw[name]), f"{tag}.{name}: bad value {raw[name]!r}")
            out[name] = raw[name]
        return out, "map"
    _need(isinstance(raw, list) and raw and isinstance(raw[0], str), f"event {raw!r}")
    tag = raw[0]
    _need(tag in FIELDS, f"unknown tag {tag!r}")
    fields = FIELDS[tag]
    required = sum(1 for _, _, d in fields if not d)
    _need(required <= len(raw) - 1 <= len(fields), f"{tag}: {len(raw) - 1} positional fields")
    out = {"type": tag}
    for (name, ok, _), v in zip(fields, raw[1:]):
        _need(ok(v), f"{tag}.{name}: bad value {v!r}")
        out[name] = v
    return out, "array"


def decode_batch(payload):
    """(ts, [event dict...], data_parallel_rank, event form) of one payload."""
    batch = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    _need(isinstance(batch, list) and len(batch) in (2, 3),
          f"envelope is not the array [ts, events, data_parallel_rank]: {type(batch).__name__}")
    ts, events = batch[0], batch[1]
    dp = batch[2] if len(batch) == 3 else None
    _need(isinstance(ts, (float, int)), "ts is a number")
    _need(isinstance(events, list), "events is a list")
    _need(dp is None or _INT(dp), "data_parallel_rank is an int or nil")
    decoded = [decode_event(e) for e in events]
    forms = {f for _, f in decoded}
    return ts, [e for e, _ in decoded], dp, forms
