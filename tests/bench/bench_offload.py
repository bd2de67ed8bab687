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
   Then the same for arc: vLLM's ARCCachePolicy against kvbm.vllm's arc
   (kvbm's vllm-arc policy), catalog off; hit counts must be equal too.
2. A 1,000-hash match from Python (Manager.match + release) against the
   same call from C (bench_match1000, kvbm_match + release_batch).

   The catalog figure is given twice: replaying as fast as possible (the
   writer cannot keep up and allocation waits for it: the eviction-bound
   case of docs/BENCHMARKS.md, "Catalog") and paced at --speedup times the
   trace's own arrival rate, counting only the time inside the calls.

Usage: bench_offload.py TRACE BENCH_MATCH1000 [--vllm-src DIR] [--blocks N]
       [--requests N] [--rounds N] [--speedup X] [--no-paced]
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


def load_keys(path, limit, stamps=None):
    """Per request, the chained 32-byte keys of its blocks (arrival times in
    seconds appended to stamps when given)."""
    reqs = []
    memo = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if stamps is not None:
                stamps.append(row["timestamp"] / 1000.0)
            ids = row["hash_ids"]
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


def replay_paced(mgr, reqs, stamps, speedup):
    """replay() with requests arriving at the trace's times / speedup; only
    the time inside the calls counts, as a server would see it."""
    ops = busy = 0
    start = time.perf_counter()
    for keys, at in zip(reqs, stamps):
        delay = start + at / speedup - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # a benchmark pacing arrivals, not a test
        secs, n, _ = replay(mgr, [keys])
        busy += secs
        ops += n
    return busy, ops


def bench_paced(args, reqs, stamps):
    from kvbm.vllm import KvbmOffloadingManager

    tmp = tempfile.mkdtemp(prefix="kvbm-bench-")
    best = {}
    for _ in range(max(1, args.rounds // 2)):
        for name, catalog in (("off", None), ("on", os.path.join(tmp, f"p{time.monotonic_ns()}.db"))):
            mgr = KvbmOffloadingManager(block_size=512, num_blocks=args.blocks, catalog=catalog)
            busy, ops = replay_paced(mgr, reqs, stamps, args.speedup)
            mgr.close()
            best[name] = min(best.get(name, busy), busy)
    return best, ops


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


def bench_arc(args, reqs):
    """vLLM's arc against kvbm.vllm's (catalog off): time and hits."""
    from vllm.v1.kv_offload.cpu_manager import CPUOffloadingManager  # noqa: E402

    from kvbm.vllm import KvbmOffloadingManager

    makers = {
        "vllm arc": lambda: CPUOffloadingManager(block_size=512, num_blocks=args.blocks,
                                                 cache_policy="arc"),
        "kvbm arc": lambda: KvbmOffloadingManager(block_size=512, num_blocks=args.blocks,
                                                  cache_policy="arc"),
    }
    best, hits = {}, {}
    for _ in range(max(1, args.rounds // 2)):
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

    c_ns = py_ns = None
    with kvbm.Manager(block_count=65536, block_size=16) as m:
        hashes = array("Q", range(1, 1001))
        mut = m.allocate(1000)
        m.commit(mut, hashes)
        for _ in range(args.rounds):  # C and Python rounds alternate
            out = subprocess.run([args.match1000, "1", "2000"], capture_output=True,
                                 text=True, check=True).stdout
            c = int(out.split()[1])
            c_ns = c if c_ns is None else min(c_ns, c)
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
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--speedup", type=float, default=200.0,
                    help="paced replay: the trace's arrival times divided by this")
    ap.add_argument("--no-paced", action="store_true", help="skip the paced replay")
    args = ap.parse_args()

    c_ns, py_ns = bench_binding(args)
    print(f"match 1000 hashes + release: C {c_ns} ns, Python {py_ns} ns per call, "
          f"Python/C {py_ns / c_ns:.2f}x (target <= 2x)")

    if not os.path.exists(os.path.join(args.vllm_src, "vllm/v1/kv_offload/cpu_manager.py")):
        print(f"skip: vLLM's cpu_manager.py not under {args.vllm_src} (see docs/BENCHMARKS.md)")
        return 77
    stamps = []
    reqs = load_keys(args.trace, args.requests, stamps)
    best, ops, hits = bench_managers(args, reqs)
    for name, secs in best.items():
        print(f"{name:13s} {secs * 1e9 / ops:7.1f} ns per block op  ({ops} block ops, "
              f"{hits[name]} blocks hit)")
    print(f"vllm/kvbm time per block: {best['vllm'] / best['kvbm']:.2f}x (target >= 3x)")
    print(f"catalog on/off: {best['kvbm+catalog'] / best['kvbm']:.2f}x (target <= 1.5x)")
    arc, aops, ahits = bench_arc(args, reqs)
    for name, secs in arc.items():
        print(f"{name:13s} {secs * 1e9 / aops:7.1f} ns per block op  ({aops} block ops, "
              f"{ahits[name]} blocks hit)")
    print(f"vllm/kvbm time per block, arc: {arc['vllm arc'] / arc['kvbm arc']:.2f}x")
    if not args.no_paced:
        paced, pops = bench_paced(args, reqs, stamps)
        print(f"paced at {args.speedup:g}x the trace's arrival rate, time inside the calls: "
              f"catalog off {paced['off'] * 1e9 / pops:.1f}, on {paced['on'] * 1e9 / pops:.1f} "
              f"ns per block op, on/off {paced['on'] / paced['off']:.2f}x (target <= 1.5x)")
    if not hits["vllm"] == hits["kvbm"] == hits["kvbm+catalog"]:
        print("MISMATCH: lru hit counts differ from vLLM's manager")
        return 1
    if ahits["vllm arc"] != ahits["kvbm arc"]:
        print("MISMATCH: arc hit counts differ from vLLM's manager")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
