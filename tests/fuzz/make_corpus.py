#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Seed catalogs for fuzz_catalog_open, written by the library itself.

Usage: make_corpus.py KVBM_CATALOG OUTDIR

Every schema-3 seed is a catalog that kvbm-catalog (hence libkvbm) wrote
for the fuzz target's configuration (64 blocks of 16 tokens, tier G1),
then optionally edited with SQL on its tables (tiers, block_rows,
reclaims, catalog) to reach the paths a clean file never takes: rows the
restore refuses, reclaim rows that mask blocks or that it cannot read, a
second tier, a mismatching identity, a newer schema, missing schema
objects, an unfinished (crashed) incarnation. The application id stays
'kvbm' (1802920557): a file without it is refused as foreign before
anything else runs. Two seeds are schema-2 files made from
tests/data/catalog-v2.sql and one a schema-1 file, so the migration stays
fuzzed.

Each file is vacuumed and taken out of WAL mode so it is small and
self-contained (the input is one file; a -wal beside it is not part of
it). The fuzz target takes the eviction policy from the input's length
modulo the number of policies, so a seed is padded with 0..7 bytes past
its last page (SQLite ignores a partial trailing page) to pick one.
"""
import os
import random
import sqlite3
import subprocess
import sys
import tempfile

CLI, OUT = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_V1 = os.path.join(HERE, "..", "..", "schema", "001_init.sql")
V2_SQL = os.path.join(HERE, "..", "data", "catalog-v2.sql")
APPLICATION_ID = 1802920557  # 'kvbm'
TIER1 = 1 << 32  # block_rows.id of block 0 of tier_id 1

# The eviction policy each seed is replayed with by fuzz_catalog_open, by
# kvbm_evict_policy number (lru, fifo, multi-lru, lineage, priority,
# s3fifo, 2q, arc = 0..7): the input length modulo 8.
POLICY = {"seed-restarted-fifo": 1, "seed-schema-v1": 2, "seed-damaged-rows": 3,
          "seed-unclean": 4, "seed-other-tier": 5, "seed-empty": 6, "seed-reclaims": 7,
          "seed-v2": 0, "seed-v2-damaged": 3, "seed-damaged-blobs": 2,
          "seed-reclaims-unreadable": 1}
N_POLICIES = 8


def cli(db, *args):
    subprocess.run([CLI, "--db", db, *args], check=True, stdout=subprocess.DEVNULL)


def trace(path, requests, seed):
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(requests):
            prompt = rnd.randrange(4)
            ids = [prompt * 100 + i for i in range(rnd.randrange(1, 5))]
            ids += [rnd.randrange(1000, 1100) for _ in range(rnd.randrange(0, 4))]
            f.write('{"hash_ids": %s}\n' % ids)


def finish(db, name, *sql, app_id=APPLICATION_ID):
    con = sqlite3.connect(db)
    for s in sql:
        con.executescript(s)
    if app_id is not None:
        con.execute("PRAGMA application_id = %d" % app_id)
    con.commit()
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute("VACUUM")
    con.close()
    for side in ("-wal", "-shm", "-kvbm"):
        if os.path.exists(db + side):
            os.unlink(db + side)
    with open(db, "rb") as f:
        data = f.read()
    pad = (POLICY.get(name, 0) - len(data)) % N_POLICIES
    data += b"\0" * pad
    assert len(data) % N_POLICIES == POLICY.get(name, 0)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes, policy {POLICY.get(name, 0)}")


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
        populated = db
        finish(db, "seed-replayed-lru")

        db = fresh()
        cli(db, "replay", t, "--capacity", "64", "--policy", "fifo", "--restart-at", "30")
        finish(db, "seed-restarted-fifo")

        def variant(name, *sql):
            db = fresh()
            with open(populated, "rb") as src, open(db, "wb") as dst:
                dst.write(src.read())
            finish(db, name, *sql)

        variant("seed-unclean", "UPDATE tiers SET clean_shutdown = 0, write_seq = write_seq + 3")
        # Rows the restore must refuse one by one (counted as vetoed):
        # ids past block_count or of no tier, a hash of the wrong type, a
        # duplicate hash, a write sequence negative or after the last
        # commit, out-of-range policy fields.
        variant("seed-damaged-rows",
                f"UPDATE block_rows SET id = id + 64 WHERE id % 7 = 1 AND id < {TIER1} + 64",
                f"UPDATE block_rows SET id = -(id & 4294967295) - 1 WHERE id % 7 = 2",
                "UPDATE block_rows SET seq_hash = (SELECT min(seq_hash) FROM block_rows)"
                " WHERE id % 7 = 3",
                "UPDATE block_rows SET priority = 1000, retention = -1, position = -5,"
                " evict_key = -9223372036854775808, access_tick = -1 WHERE id % 7 = 4",
                "UPDATE block_rows SET wseq = -1 WHERE id % 7 = 5",
                "UPDATE block_rows SET seq_hash = 'text', position = 1e300, frequency = x'00ff'"
                " WHERE id % 7 = 6",
                "UPDATE block_rows SET wseq = (SELECT write_seq + 10 FROM tiers)"
                " WHERE id % 11 = 0",
                f"UPDATE block_rows SET id = (9 << 32) | (id & 4294967295) WHERE id % 13 = 0")
        # The blobs a row may carry: tokens of the wrong length, a key
        # longer than 64 bytes, a text where a blob belongs.
        variant("seed-damaged-blobs",
                "UPDATE block_rows SET tokens = zeroblob(3) WHERE id % 5 = 0",
                "UPDATE block_rows SET tokens = zeroblob(16 * 4 + 4) WHERE id % 5 = 1",
                "UPDATE block_rows SET key = zeroblob(65) WHERE id % 5 = 2",
                "UPDATE block_rows SET key = randomblob(32) WHERE id % 5 = 3",
                "UPDATE block_rows SET key = 'text', tokens = 'text' WHERE id % 5 = 4")
        # Reclaim rows: ones that mask blocks (newer than their rows), one
        # after the tier's last commit, one of an unknown tier, an id past
        # block_count, an empty list, spaces between items.
        variant("seed-reclaims",
                "UPDATE tiers SET write_seq = write_seq + 4",
                "INSERT INTO reclaims (tier_id, seq, blocks) SELECT 1, write_seq - 3,"
                " '[1,2,3, 5 ,8]' FROM tiers",
                "INSERT INTO reclaims (tier_id, seq, blocks) SELECT 1, write_seq - 2,"
                " '[4294967295, 0]' FROM tiers",
                "INSERT INTO reclaims (tier_id, seq, blocks) SELECT 1, write_seq + 5,"
                " '[34]' FROM tiers",
                "INSERT INTO reclaims (tier_id, seq, blocks) VALUES (9, 1, '[1]')",
                "INSERT INTO reclaims (tier_id, seq, blocks) SELECT 1, write_seq,"
                " '[]' FROM tiers",
                "INSERT INTO reclaims (tier_id, seq, blocks) SELECT 1, 0, '[40, 41]' FROM tiers")
        # Reclaim rows the restore cannot read, between two commits: the
        # rows written before it are all distrusted, the half rewritten
        # by the later commit restored.
        variant("seed-reclaims-unreadable",
                "UPDATE tiers SET write_seq = write_seq + 2",
                "UPDATE block_rows SET wseq = (SELECT write_seq FROM tiers) WHERE id % 2 = 0",
                "INSERT INTO reclaims (tier_id, seq, blocks) SELECT 1, write_seq - 1,"
                " '[13, 21' FROM tiers",
                "INSERT INTO reclaims (tier_id, seq, blocks) SELECT 1, write_seq - 1,"
                " '{\"a\": 1}' FROM tiers",
                "INSERT INTO reclaims (tier_id, seq, blocks) VALUES (1, 1, '[-1]')",
                "INSERT INTO reclaims (tier_id, seq, blocks) VALUES (1, 1, '[99999999999]')",
                "INSERT INTO reclaims (tier_id, seq, blocks) VALUES (1, 1, '[1.5, 2e3]')")
        variant("seed-other-tier",
                "INSERT INTO tiers (tier_id, name, schema_version, block_size, block_count,"
                " hash_algorithm, hash_encoding, hash_seed, hash_salt, model_fingerprint,"
                " eviction_policy, created_at, opened_at, incarnation, clean_shutdown,"
                " last_clean_shutdown_at, last_commit_at, restored_blocks, vetoed_blocks,"
                " write_seq) SELECT 2, 'G2', schema_version, block_size, 32, hash_algorithm,"
                " hash_encoding, hash_seed, hash_salt, model_fingerprint, eviction_policy,"
                " created_at, opened_at, incarnation, clean_shutdown, last_clean_shutdown_at,"
                " last_commit_at, restored_blocks, vetoed_blocks, write_seq FROM tiers"
                " WHERE name = 'G1'",
                f"INSERT INTO block_rows SELECT (2 << 32) | (id & 4294967295), wseq, seq_hash,"
                f" parent_hash, position, evict_key, access_tick, access_count, frequency,"
                f" priority, retention, registered_at, last_access_at, tokens, key"
                f" FROM block_rows WHERE id < {TIER1} + 32",
                "INSERT INTO reclaims (tier_id, seq, blocks) SELECT 2, write_seq, '[0, 1]'"
                " FROM tiers WHERE name = 'G2'")
        variant("seed-mismatch", "UPDATE tiers SET block_count = 65, hash_salt = 7,"
                " model_fingerprint = 'other'")
        variant("seed-newer-schema", "PRAGMA user_version = 99")
        variant("seed-no-tier-row", "DELETE FROM tiers")
        variant("seed-no-catalog-row", "DELETE FROM catalog")
        variant("seed-dropped-stats", "DROP TABLE stats")
        variant("seed-dropped-view", "DROP VIEW blocks")

        # Schema 2, as the previous release wrote it (application id 0):
        # open migrates it. The fixture's G1 has the fuzz target's shape;
        # its fingerprint is cleared so the identity matches and the
        # migrated rows are restored.
        def v2(name, *sql):
            db = fresh()
            con = sqlite3.connect(db)
            with open(V2_SQL) as f:
                con.executescript(f.read())
            con.execute("UPDATE meta SET model_fingerprint = ''")
            con.commit()
            con.close()
            finish(db, name, *sql, app_id=None)
            return db

        v2_db = v2("seed-v2")
        v2("seed-v2-damaged",
           "UPDATE blocks SET block_id = 64 + block_id WHERE tier = 'G1' AND block_id % 7 = 1",
           "UPDATE blocks SET block_id = -block_id - 1 WHERE block_id % 7 = 2",
           "UPDATE blocks SET seq_hash = (SELECT min(seq_hash) FROM blocks WHERE state = 1)"
           " WHERE state = 1 AND block_id % 7 = 3",
           "UPDATE blocks SET state = 1, seq_hash = NULL WHERE block_id % 7 = 5",
           "UPDATE blocks SET seq_hash = 'text', position = 1e300, frequency = x'00ff'"
           " WHERE block_id % 7 = 6",
           "UPDATE meta SET clean_shutdown = 0")

        # Schema 1 only, with the schema-2 fixture's rows: open migrates
        # it twice over.
        db = fresh()
        con = sqlite3.connect(db)
        with open(SCHEMA_V1) as f:
            con.executescript(f.read())
        src = sqlite3.connect(v2_db)
        for table in ("meta", "blocks"):
            for row in src.execute(f"SELECT * FROM {table}"):
                con.execute(f"INSERT INTO {table} VALUES (%s)" % ", ".join("?" * len(row)),
                            row)
        con.execute("UPDATE meta SET schema_version = 1")
        con.execute("PRAGMA user_version = 1")
        con.commit()
        con.close()
        src.close()
        finish(db, "seed-schema-v1", app_id=None)


main()
