#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kvbm-catalog's operator queries on a 1,048,576-block schema-4 catalog.

Usage: bench_cli.py KVBM_CATALOG [--blocks N] [--reclaimed N] [--timeout S]
                    [--keep PATH]

Builds the catalog quickly: `kvbm-catalog init` writes the tier row, then
plain SQL writes the block rows in the v3 layout (id = tier_id << 32 |
block_id), as chains of 16 blocks, and reclaim rows that list a few
thousand of them (evicted after their rows were written, so they are free
and their children's parents are missing). It then times, each as one
`kvbm-catalog` process, `verify`, `top`, `lineage` and `show` and
`SELECT count(*)` from every view, next to a bare `SELECT count(*) FROM
block_rows` run the same way in the same run (after a warm-up run, and
again at the end, to show the page cache stayed warm). Prints one line per query: wall seconds and the
ratio to the bare count, and CPU seconds (user + system: the steadier
figure on a machine shared with other work).
"""
import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

VIEWS = ["meta", "blocks", "reclaimed_blocks", "pool_summary", "eviction_order", "hot_blocks",
         "prefix_edges", "block_roots", "hot_prefixes", "chain_depth_histogram",
         "catalog_health", "tier_presence"]
CHAIN = 16


def signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def build(binary, path, blocks, reclaimed, seed=11):
    subprocess.run([binary, "--db", path, "init", "--block-count", str(blocks)], check=True,
                   capture_output=True)
    rng = random.Random(seed)
    c = sqlite3.connect(path)
    c.execute("PRAGMA synchronous = OFF")
    (tier_id,) = c.execute("SELECT tier_id FROM tiers").fetchone()
    base = tier_id << 32

    def rows():
        parent = None
        for b in range(blocks):
            pos = b % CHAIN
            if pos == 0:
                parent = None
            h = signed(rng.getrandbits(64))
            # wseq 1..64: rows written by 64 earlier commits.
            yield (base | b, 1 + b % 64, h, parent, pos, b, b, 1 + rng.randrange(50),
                   1, 35, 0, 1796146578931, 1796146578931)
            parent = h

    c.execute("BEGIN")
    c.executemany("INSERT INTO block_rows (id, wseq, seq_hash, parent_hash, position, evict_key,"
                  " access_tick, access_count, frequency, priority, retention, registered_at,"
                  " last_access_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows())
    # Reclaim rows as the writer leaves them: one per later commit, listing
    # blocks evicted after their rows committed.
    listed = rng.sample(range(blocks), reclaimed)
    per_row = 64
    for i in range(0, len(listed), per_row):
        c.execute("INSERT INTO reclaims (tier_id, seq, blocks) VALUES (?, ?, ?)",
                  (tier_id, 65 + i // per_row, json.dumps(listed[i:i + per_row])))
    c.execute("UPDATE tiers SET write_seq = ?", (65 + len(listed) // per_row,))
    c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    deep = c.execute("SELECT seq_hash FROM block_rows WHERE position = ? AND id > ? LIMIT 1",
                     (CHAIN - 1, base | (blocks // 2))).fetchone()[0]
    c.close()
    return deep, listed


def cpu_children():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def timed(binary, path, timeout, *args):
    """Wall and CPU seconds of one kvbm-catalog process, and its output.
    CPU time is the figure to compare on a machine shared with others."""
    c0, t0 = cpu_children(), time.monotonic()
    try:
        r = subprocess.run([binary, "--db", path, *args], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, "timeout"
    dt, cpu = time.monotonic() - t0, cpu_children() - c0
    if r.returncode != 0:
        return dt, cpu, "exit %d: %s" % (r.returncode, r.stderr.strip().splitlines()[-1:])
    return dt, cpu, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--blocks", type=int, default=1 << 20)
    ap.add_argument("--reclaimed", type=int, default=4096)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--keep", help="build the catalog at PATH and keep it")
    a = ap.parse_args()
    tmp = None
    if a.keep:
        path = a.keep
        for side in ("", "-wal", "-shm"):
            if os.path.exists(path + side):
                os.unlink(path + side)
    else:
        tmp = tempfile.mkdtemp(prefix="kvbm-bench-cli-")
        path = os.path.join(tmp, "catalog.db")
    try:
        t0 = time.monotonic()
        deep, listed = build(a.binary, path, a.blocks, a.reclaimed)
        print("built %d blocks (chains of %d, %d reclaimed) in %.1f s, %.0f MB" %
              (a.blocks, CHAIN, len(listed), time.monotonic() - t0,
               os.path.getsize(path) / 1e6), flush=True)
        hexdeep = "%016x" % (deep & (1 << 64) - 1)
        bare = ["sql", "SELECT count(*) AS n FROM block_rows"]
        # The first process warms the page cache and the loader; the
        # second is the baseline.
        runs = [("bare count(*) FROM block_rows (warm-up)", bare),
                ("bare count(*) FROM block_rows", bare),
                ("verify", ["verify"]),
                ("top", ["top"]),
                ("lineage (depth 16 chain)", ["lineage", hexdeep]),
                ("show HASH", ["show", hexdeep]),
                ("show --block", ["show", "--block", str(a.blocks // 3)]),
                ("blocks --order evict", ["blocks", "--order", "evict"]),
                ("blocks --state free", ["blocks", "--state", "free"]),
                ("stats", ["stats"]),
                ("info", ["info"]),
                ("PRAGMA integrity_check", ["sql", "PRAGMA integrity_check"]),
                ("PRAGMA quick_check", ["sql", "PRAGMA quick_check"])]
        runs += [("count(*) FROM " + v, ["sql", "SELECT count(*) AS n FROM " + v])
                 for v in VIEWS]
        runs.append(("bare count(*) FROM block_rows (again)", bare))
        base = None
        width = max(len(n) for n, _ in runs)
        print("%-*s  %10s  %9s  %10s" % (width, "query", "wall", "vs bare", "cpu"))
        for name, args in runs:
            dt, cpu, out = timed(a.binary, path, a.timeout, *args)
            if name == "bare count(*) FROM block_rows":
                base = dt
            if base is None:
                continue
            if dt is None:
                print("%-*s  > %.0f s (timed out)" % (width, name, a.timeout), flush=True)
                continue
            note = ""
            if out.startswith("exit"):
                note = "  FAILED " + out
            elif name == "verify" and "verified: 0 problems" not in out:
                note = "  (" + out.strip().splitlines()[-1] + ")"
            print("%-*s  %8.3f s  %8.1fx  %8.3f s%s" % (width, name, dt, dt / base, cpu, note),
                  flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
