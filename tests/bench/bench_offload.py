#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kvbm.vllm against vLLM's own CPU offloading manager, and the binding's cost.

1. Replays the shared Mooncake trace (block size 512, chained hash_ids as
   32-byte sha256 keys, as vLLM's BlockHash) through the OffloadingManager
   interface, the calls vLLM's offloading connector makes per request:
   lookup; touch + prepare_load + complete_load of the hit prefix;
   prepare_store + complete_store of the rest. The same calls go to vLLM's
   CPUOffloadingManager (lru; its public source in a scratch folder, see
   --vllm-src) and to kvbm.vllm.KvbmOffloadingManager with the catalog off
   and on, in one process, rounds alternating; best round kept. Time per
   block operation = time / blocks named in all calls. Hit counts must be
   equal for lru (checked: the replay doubles as a differential test).
2. A 1,000-hash match from Python (Manager.match + release) against the
   same call from C (bench_match1000, kvbm_match + release_batch).

Usage: bench_offload.py TRACE BENCH_MATCH1000 [--vllm-src DIR] [--blocks N]
       [--requests N] [--rounds N]
Exit 77 (Meson: skipped) when vLLM's source is not there.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from array import array


def load_keys(path, limit):
    """Per request, the chained 32-byte keys of its blocks."""
    reqs = []
    memo = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            ids = json.loads(line)["hash_ids"]
            parent, keys = b"", []
            for i in ids:
                k = (parent, i)
                key = memo.get(k)
                if key is None:
                    key = memo[k] = hashlib.sha256(parent + i.to_bytes(8, "little")).digest()
                keys.append(key)
                parent = key
            reqs.append(keys)
            if limit and len(reqs) >= limit:
                break
    return reqs


def replay(mgr, reqs):
    """The connector's calls per request; returns (seconds, block ops, hit blocks)."""
    ops = hits = 0
    t0 = time.perf_counter()
    for keys in reqs:
        hit = mgr.lookup(keys)
        ops += len(keys)
        if hit:
            prefix = keys[:hit]
            mgr.touch(prefix)
            mgr.prepare_load(prefix)
            mgr.complete_load(prefix)
            ops += 3 * hit
            hits += hit
        rest = keys[hit:]
        if rest:
            out = mgr.prepare_store(rest)
            ops += len(rest)
            if out is not None:
                mgr.complete_store(rest)
                ops += len(rest)
    return time.perf_counter() - t0, ops, hits


def bench_managers(args, reqs):
    sys.path.insert(0, args.vllm_src)
    from vllm.v1.kv_offload.cpu_manager import CPUOffloadingManager  # noqa: E402

    from kvbm.vllm import KvbmOffloadingManager

    tmp = tempfile.mkdtemp(prefix="kvbm-bench-")
    makers = {
        "vllm": lambda: CPUOffloadingManager(block_size=512, num_blocks=args.blocks,
                                             cache_policy="lru"),
        "kvbm": lambda: KvbmOffloadingManager(block_size=512, num_blocks=args.blocks,
                                              cache_policy="lru"),
        "kvbm+catalog": lambda: KvbmOffloadingManager(
            block_size=512, num_blocks=args.blocks, cache_policy="lru",
            catalog=os.path.join(tmp, f"cat{time.monotonic_ns()}.db"), catalog_sync="normal"),
    }
    best, hits = {}, {}
    for _ in range(args.rounds):
        for name, make in makers.items():
            mgr = make()
            secs, ops, h = replay(mgr, reqs)
            if hasattr(mgr, "close"):
                mgr.close()
            best[name] = min(best.get(name, secs), secs)
            hits[name] = h
    return best, ops, hits


def bench_binding(args):
    import kvbm

    out = subprocess.run([args.match1000, str(args.rounds), "2000"], capture_output=True,
                         text=True, check=True).stdout
    c_ns = int(out.split()[1])
    with kvbm.Manager(block_count=65536, block_size=16) as m:
        hashes = array("Q", range(1, 1001))
        mut = m.allocate(1000)
        m.commit(mut, hashes)
        py_ns = None
        for _ in range(args.rounds):
            t0 = time.perf_counter_ns()
            for _ in range(2000):
                m.match(hashes).release()
            per = (time.perf_counter_ns() - t0) // 2000
            py_ns = per if py_ns is None else min(py_ns, per)
    return c_ns, py_ns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("match1000")
    ap.add_argument("--vllm-src", default=os.environ.get("KVBM_VLLM_SRC", "/work/scratch-vllm"))
    ap.add_argument("--blocks", type=int, default=8192)
    ap.add_argument("--requests", type=int, default=0, help="0: the whole trace")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    c_ns, py_ns = bench_binding(args)
    print(f"match 1000 hashes + release: C {c_ns} ns, Python {py_ns} ns per call, "
          f"Python/C {py_ns / c_ns:.2f}x (target <= 2x)")

    if not os.path.exists(os.path.join(args.vllm_src, "vllm/v1/kv_offload/cpu_manager.py")):
        print(f"skip: vLLM's cpu_manager.py not under {args.vllm_src} (see docs/BENCHMARKS.md)")
        return 77
    reqs = load_keys(args.trace, args.requests)
    best, ops, hits = bench_managers(args, reqs)
    for name, secs in best.items():
        print(f"{name:13s} {secs * 1e9 / ops:7.1f} ns per block op  ({ops} block ops, "
              f"{hits[name]} blocks hit)")
    print(f"vllm/kvbm time per block: {best['vllm'] / best['kvbm']:.2f}x (target >= 3x)")
    print(f"catalog on/off: {best['kvbm+catalog'] / best['kvbm']:.2f}x (target <= 1.5x)")
    if not hits["vllm"] == hits["kvbm"] == hits["kvbm+catalog"]:
        print("MISMATCH: lru hit counts differ from vLLM's manager")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
