#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A vLLM-style CPU offload tier on kvbm that survives SIGKILL.

Serves the shared Mooncake trace (block size 512; each request's chained
hash_ids become 32-byte sha256 keys, like vLLM's BlockHash) through
kvbm.vllm.KvbmOffloadingManager with a catalog, making the calls vLLM's
offloading connector makes per request: lookup, then touch, prepare_load
and complete_load of the hit prefix, then prepare_store and complete_store
of the rest. A child process serves the first part of the trace and is
killed with SIGKILL once the writer has caught up (no close: no clean
shutdown mark, nothing the writer had not committed); a new process opens the same
catalog and serves the rest. Its hit rate is compared with a cold start
(an empty tier) serving the same requests: the difference is what the
catalog kept across the crash. vLLM's own disk tier keeps its index in a
dict and would restart cold.

    PYTHONPATH=build/python /usr/bin/python3 examples/vllm_warm_restart.py

Options: --trace PATH, --blocks N (tier size), --requests N (0 = all),
--split F (fraction served before the kill), --catalog PATH, --json.
"""
import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from kvbm.vllm import KvbmOffloadingManager

HERE = os.path.dirname(os.path.abspath(__file__))
TRACE = os.path.join(HERE, "..", "tests", "data", "traces", "mooncake_synthetic_trace.jsonl")
BLOCK_SIZE = 512  # the trace's block size


def load_requests(path, limit):
    """Per request, the chained keys of its blocks (equal prefix, equal keys)."""
    reqs, memo = [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parent, keys = b"", []
            for hid in json.loads(line)["hash_ids"]:
                key = memo.get((parent, hid))
                if key is None:
                    key = hashlib.sha256(parent + hid.to_bytes(8, "little")).digest()
                    memo[(parent, hid)] = key
                keys.append(key)
                parent = key
            reqs.append(keys)
            if limit and len(reqs) >= limit:
                break
    return reqs


def serve(tier, reqs, window=0):
    """The connector's calls for each request; returns (hit blocks, block
    refs) over all of reqs and over the first `window` of them."""
    hits = refs = 0
    first = (0, 0)
    for n, keys in enumerate(reqs):
        if n == window:
            first = (hits, refs)
        hit = tier.lookup(keys)
        if hit:
            tier.touch(keys[:hit])
            tier.prepare_load(keys[:hit])  # a worker would copy these blocks now
            tier.complete_load(keys[:hit])
        out = tier.prepare_store(keys[hit:]) if hit < len(keys) else None
        if out is not None:
            tier.complete_store(out.block_hashes_to_store)  # ... after copying them out
        hits += hit
        refs += len(keys)
    return (hits, refs), first if window < len(reqs) else (hits, refs)


def child(args):
    reqs = load_requests(args.trace, args.requests)
    first = reqs[: int(len(reqs) * args.split)]
    tier = KvbmOffloadingManager(block_size=BLOCK_SIZE, num_blocks=args.blocks,
                                 catalog=args.catalog)
    (hits, refs), _ = serve(tier, first)
    # Killed mid-burst, a server loses what the writer had not committed
    # yet (the crash guarantee allows that; the writer lags most under
    # eviction pressure). To show what the catalog keeps rather than where
    # a kill happened to land, the kill comes once the writer has caught
    # up, as it does within a commit interval of any pause.
    tier.manager.flush()
    print(json.dumps({"served": len(first), "hits": hits, "refs": refs}), flush=True)
    sys.stdin.readline()  # the parent kills us while we wait here


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=TRACE)
    ap.add_argument("--blocks", type=int, default=32768)
    ap.add_argument("--requests", type=int, default=0)
    ap.add_argument("--split", type=float, default=0.5)
    ap.add_argument("--catalog")
    ap.add_argument("--json", action="store_true", help="print one JSON line of results")
    ap.add_argument("--serve-first-part", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_first_part:
        return child(args)
    tmp = None
    if not args.catalog:
        tmp = tempfile.mkdtemp(prefix="kvbm-example-")
        args.catalog = os.path.join(tmp, "cpu_tier.db")

    # 1. Serve the first part in a child, then SIGKILL it mid-run.
    cmd = [sys.executable, os.path.abspath(__file__), "--serve-first-part", "--trace", args.trace,
           "--blocks", str(args.blocks), "--requests", str(args.requests),
           "--split", str(args.split), "--catalog", args.catalog]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first = json.loads(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # 2. Restart on the catalog and serve the rest; a cold tier serves it too.
    rest = load_requests(args.trace, args.requests)[first["served"]:]
    t0 = time.perf_counter()
    warm = KvbmOffloadingManager(block_size=BLOCK_SIZE, num_blocks=args.blocks,
                                 catalog=args.catalog)
    open_s = time.perf_counter() - t0
    restored = warm.manager.pool_counts()["registry"]
    window = max(1, len(rest) // 10)  # the warm-up a cold tier pays for
    (warm_hits, refs), (warm_w, refs_w) = serve(warm, rest, window)
    warm.close()
    cold = KvbmOffloadingManager(block_size=BLOCK_SIZE, num_blocks=args.blocks)
    (cold_hits, _), (cold_w, _) = serve(cold, rest, window)
    cold.close()

    result = {"blocks": args.blocks, "served_before_kill": first["served"],
              "restored_blocks": restored, "open_seconds": round(open_s, 3),
              "rest_requests": len(rest), "rest_block_refs": refs,
              "cold_hit_rate": cold_hits / refs, "warm_hit_rate": warm_hits / refs,
              "window_requests": window, "cold_window_hit_rate": cold_w / refs_w,
              "warm_window_hit_rate": warm_w / refs_w}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"served {first['served']} requests into a {args.blocks}-block tier "
              f"({args.catalog}), then SIGKILL")
        print(f"restart: {restored} blocks restored from the catalog in {open_s:.2f} s")
        print(f"first {window} requests after the restart: hit rate cold "
              f"{100 * result['cold_window_hit_rate']:.1f}%, warm after SIGKILL "
              f"{100 * result['warm_window_hit_rate']:.1f}%")
        print(f"all {len(rest)} requests after it ({refs} block refs): hit rate cold "
              f"{100 * result['cold_hit_rate']:.1f}%, warm after SIGKILL "
              f"{100 * result['warm_hit_rate']:.1f}%")
    if tmp:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
