#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Seed catalogs for fuzz_catalog_open, written by the library itself.

Usage: make_corpus.py KVBM_CATALOG OUTDIR

Every seed is a catalog that kvbm-catalog (hence libkvbm) wrote for the
fuzz target's configuration (64 blocks of 16 tokens, tier G1), then
optionally edited with SQL to reach the paths a clean file never takes:
damaged rows refused on restore, an older schema to migrate, a newer one,
a mismatching identity, an unfinished (crashed) incarnation. Each file is
vacuumed and taken out of WAL mode so it is small and self-contained (the
input is one file; a -wal beside it is not part of it).
"""
import os
import sqlite3
import subprocess
import sys
import tempfile

CLI, OUT = sys.argv[1], sys.argv[2]
SCHEMA_V1 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schema",
                         "001_init.sql")


def cli(db, *args):
    subprocess.run([CLI, "--db", db, *args], check=True, stdout=subprocess.DEVNULL)


def trace(path, requests, seed):
    import random
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(requests):
            prompt = rnd.randrange(4)
            ids = [prompt * 100 + i for i in range(rnd.randrange(1, 5))]
            ids += [rnd.randrange(1000, 1100) for _ in range(rnd.randrange(0, 4))]
            f.write('{"hash_ids": %s}\n' % ids)


# fuzz_catalog_open takes the eviction policy from the application id
# (lru, fifo, multi-lru, lineage, priority, s3-fifo, 2q = 0..6).
POLICY = {"seed-restarted-fifo": 1, "seed-schema-v1": 2, "seed-damaged-rows": 3,
          "seed-unclean": 4, "seed-other-tier": 5, "seed-empty": 6}


def finish(db, name, *sql):
    con = sqlite3.connect(db)
    for s in sql:
        con.execute(s)
    con.execute("PRAGMA application_id = %d" % POLICY.get(name, 0))
    con.commit()
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute("VACUUM")
    con.close()
    with open(db, "rb") as f:
        data = f.read()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = os.path.join(tmp, "t.jsonl")
        trace(t, 60, 1)
        n = [0]

        def fresh():
            n[0] += 1
            return os.path.join(tmp, f"c{n[0]}.db")

        db = fresh()
        cli(db, "init", "--block-count", "64")
        finish(db, "seed-empty")

        db = fresh()
        cli(db, "replay", t, "--capacity", "64", "--policy", "lru")
        finish(db, "seed-replayed-lru")
        populated = db

        db = fresh()
        cli(db, "replay", t, "--capacity", "64", "--policy", "fifo", "--restart-at", "30")
        finish(db, "seed-restarted-fifo")

        def variant(name, *sql):
            db = fresh()
            with open(populated, "rb") as src, open(db, "wb") as dst:
                dst.write(src.read())
            finish(db, name, *sql)

        variant("seed-unclean", "UPDATE meta SET clean_shutdown = 0")
        variant("seed-damaged-rows",
                "UPDATE blocks SET block_id = 64 + block_id WHERE block_id % 7 = 1",
                "UPDATE blocks SET block_id = -block_id - 1 WHERE block_id % 7 = 2",
                "UPDATE blocks SET seq_hash = (SELECT MIN(seq_hash) FROM blocks"
                " WHERE state = 1) WHERE state = 1 AND block_id % 7 = 3",
                "UPDATE blocks SET priority = 1000, retention = -1, position = -5,"
                " evict_key = -9223372036854775808 WHERE block_id % 7 = 4",
                "UPDATE blocks SET state = 1, seq_hash = NULL, access_tick = -1"
                " WHERE block_id % 7 = 5",
                "UPDATE blocks SET seq_hash = 'text', position = 1e300, frequency = x'00ff'"
                " WHERE block_id % 7 = 6")
        variant("seed-other-tier",
                "INSERT INTO meta SELECT 'G2', schema_version, block_size, 32, hash_algorithm,"
                " hash_encoding, hash_seed, hash_salt, model_fingerprint, eviction_policy,"
                " created_at, opened_at, incarnation, clean_shutdown, last_clean_shutdown_at,"
                " last_commit_at, restored_blocks, vetoed_blocks FROM meta WHERE tier = 'G1'",
                "INSERT INTO blocks SELECT 'G2', block_id, state, seq_hash, parent_hash,"
                " position, registered_at, last_access_at, access_tick, access_count,"
                " frequency, priority, retention, evict_key FROM blocks WHERE block_id < 32")
        variant("seed-mismatch", "UPDATE meta SET block_count = 65, hash_salt = 7,"
                " model_fingerprint = 'other'")
        variant("seed-newer-schema", "PRAGMA user_version = 99")
        variant("seed-no-meta-row", "DELETE FROM meta")

        # Schema version 1 only, with rows: open migrates it.
        db = fresh()
        con = sqlite3.connect(db)
        with open(SCHEMA_V1) as f:
            con.executescript(f.read())
        src = sqlite3.connect(populated)
        meta = src.execute("SELECT * FROM meta").fetchone()
        con.execute("INSERT INTO meta VALUES (%s)" % ", ".join("?" * len(meta)), meta)
        for row in src.execute("SELECT * FROM blocks"):
            con.execute("INSERT INTO blocks VALUES (%s)" % ", ".join("?" * len(row)), row)
        con.execute("UPDATE meta SET schema_version = 1")
        con.execute("PRAGMA user_version = 1")
        con.commit()
        con.close()
        src.close()
        finish(db, "seed-schema-v1")


main()
