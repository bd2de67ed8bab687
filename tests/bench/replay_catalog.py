#!/usr/bin/env python3
"""What the catalog costs a replay: `kvbm-catalog replay` with and without
--db, in the same run, alternating, best of N each.

  replay_catalog.py CLI TRACE [--capacity N] [--policy P] [--rounds N]
  replay_catalog.py CLI --generate [--capacity 1048576] ...

With --generate, the trace is tests/bench/gen_trace.py's (~26M block
references, written to a scratch directory) and a 1M-block manager is the
default: the scale at which a writer that cannot keep up fails allocations.
Prints, per mode, hit rate and ns per block reference, then the ratios; the
ratio compares the replay's own clock (requests served), and the process
wall time (which includes the final drain at close) is printed beside it.
Exits non-zero when the hit rates differ: a catalog must not change what is
evicted.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cli, trace, capacity, policy, db):
    cmd = [cli]
    if db:
        for suffix in ("", "-wal", "-shm", "-kvbm"):
            try:
                os.unlink(db + suffix)
            except FileNotFoundError:
                pass
        cmd += ["--db", db]
    cmd += ["--json", "replay", trace, "--capacity", str(capacity), "--policy", policy]
    t0 = time.monotonic()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.monotonic() - t0
    r = json.loads(out)
    r["wall"] = wall
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cli")
    ap.add_argument("trace", nargs="?")
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--capacity", type=int)
    ap.add_argument("--policy", default="lru")
    ap.add_argument("--rounds", type=int)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvbm-replay-") as tmp:
        trace = a.trace
        if a.generate:
            trace = os.path.join(tmp, "generated.jsonl")
            subprocess.run([sys.executable, os.path.join(HERE, "gen_trace.py"), trace], check=True)
        if not trace:
            ap.error("give a TRACE or --generate")
        capacity = a.capacity or (1 << 20 if a.generate else 8000)
        rounds = a.rounds or (1 if a.generate else 5)
        db = os.path.join(tmp, "replay.db")
        best = {}
        for _ in range(rounds):
            for mode in ("memory", "catalog"):
                r = run(a.cli, trace, capacity, a.policy, db if mode == "catalog" else None)
                if mode not in best or r["ns_per_ref"] < best[mode]["ns_per_ref"]:
                    best[mode] = r
        for mode, r in best.items():
            print(f"{mode:8} {r['block_refs']} refs, hit rate {100 * r['hit_rate']:.4f}%, "
                  f"{r['ns_per_ref']:.1f} ns/ref (replay clock), {r['wall']:.2f} s wall")
        m, c = best["memory"], best["catalog"]
        print(f"ratio    throughput with catalog / without: {m['ns_per_ref'] / c['ns_per_ref']:.3f}"
              f" (ns/ref {c['ns_per_ref'] / m['ns_per_ref']:.2f}x; wall {c['wall'] / m['wall']:.2f}x)"
              f"; capacity {capacity}, policy {a.policy}, best of {rounds}")
        if m["hits"] != c["hits"]:
            print(f"hit counts differ: {m['hits']} without, {c['hits']} with the catalog")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
