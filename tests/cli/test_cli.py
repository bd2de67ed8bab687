#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Run kvbm-catalog on catalogs made by the library and check what it does.

Usage: test_cli.py KVBM_CATALOG_BINARY [unittest arguments]

Fixture catalogs come from the binary's own `replay --db` (a real manager
with a catalog) and `init`; damage is applied with python's sqlite3 module,
an independent writer. Every check looks at the exit code, the one-line
error on stderr, and (for --json) output parsed back with the json module.
"""
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unittest

BIN = None


def write_trace(path, requests=160, seed=7):
    """A small Mooncake-style trace: shared system prompts, growing chats."""
    rng = random.Random(seed)
    next_id = 1000
    prompts = [list(range(i * 10, i * 10 + 4)) for i in range(4)]
    sessions = []
    with open(path, "w") as f:
        for t in range(requests):
            if not sessions or rng.random() < 0.3:
                sessions.append(list(rng.choice(prompts)))
            s = rng.choice(sessions)
            for _ in range(rng.randint(1, 4)):
                s.append(next_id)
                next_id += 1
            f.write(json.dumps({"timestamp": t, "input_length": 512 * len(s),
                                "output_length": 16, "hash_ids": s}) + "\n")


class CliCase(unittest.TestCase):
    """Shared fixture: a temp dir, a trace and one populated catalog."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="kvbm-cli-")
        cls.trace = os.path.join(cls.dir, "trace.jsonl")
        write_trace(cls.trace)
        cls.db = os.path.join(cls.dir, "fixture.db")
        r = run("--db", cls.db, "replay", cls.trace, "--capacity", "200",
                "--policy", "lru", "--json")
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def copy_fixture(self, name):
        dst = self.path(name)
        shutil.copyfile(self.db, dst)
        return dst

    def ok(self, *args):
        r = run(*args)
        self.assertEqual(r.returncode, 0, f"{args}: {r.stderr}")
        return r

    def json_ok(self, *args):
        return json.loads(self.ok(*args, "--json").stdout)

    def fails(self, code, needle, *args):
        """Exit code `code`, and stderr's first line names the problem."""
        r = run(*args)
        self.assertEqual(r.returncode, code, f"{args}: {r.stdout} {r.stderr}")
        first = r.stderr.splitlines()[0] if r.stderr else ""
        self.assertTrue(first.startswith("kvbm-catalog"), first)
        self.assertIn(needle, first)
        return r

    def registered(self, db=None):
        with sqlite3.connect(db or self.db) as c:
            return c.execute("SELECT seq_hash, block_id FROM blocks WHERE state = 1 "
                             "ORDER BY evict_key").fetchall()


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120)


def hexhash(v):
    return "%016x" % (v & 0xFFFFFFFFFFFFFFFF)


class Usage(CliCase):
    COMMANDS = ["init", "info", "stats", "blocks", "show", "lineage", "top", "verify",
                "export", "import", "vacuum", "checkpoint", "migrate", "sql", "replay", "demo"]

    def test_help_lists_every_command(self):
        out = self.ok("--help").stdout
        for c in self.COMMANDS:
            self.assertIn("  " + c + " ", out)

    def test_every_command_has_help(self):
        for c in self.COMMANDS:
            out = self.ok(c, "--help").stdout
            self.assertTrue(out.startswith("usage: kvbm-catalog"), c)

    def test_usage_errors_exit_2(self):
        self.fails(2, "no command", )
        self.fails(2, "unknown command 'frobnicate'", "frobnicate")
        self.fails(2, "unknown option", "--bogus", "info")
        self.fails(2, "", "info")  # no --db
        self.fails(2, "", "--db", self.db, "blocks", "--limit", "many")
        self.fails(2, "", "--db", self.db, "replay", self.trace, "--policy", "lru")

    def test_replay_help_lists_policies(self):
        out = self.ok("replay", "--help").stdout
        self.assertIn("lru", out)
        self.assertIn("fifo", out)


class Inspect(CliCase):
    def test_info(self):
        info = self.json_ok("--db", self.db, "info")
        self.assertEqual(len(info), 1)
        t = info[0]
        self.assertEqual(t["block_count"], 200)
        self.assertEqual(t["schema_version"], t["file_schema_version"])
        self.assertEqual(t["shutdown"], "clean")
        self.assertIn("tier", self.ok("--db", self.db, "info").stdout.splitlines()[0])

    def test_stats_match_rows(self):
        stats = self.json_ok("--db", self.db, "stats")
        text = json.dumps(stats)
        self.assertIn("registrations", text)
        with sqlite3.connect(self.db) as c:
            n = c.execute("SELECT count(*) FROM blocks WHERE state = 1").fetchone()[0]
        self.assertIn(str(n), text)

    def test_blocks_filters(self):
        rows = self.json_ok("--db", self.db, "blocks", "--limit", "5", "--order", "evict")
        self.assertEqual(len(rows), 5)
        want = self.registered()[:5]
        self.assertEqual([r["block_id"] for r in rows], [b for _, b in want])
        h = hexhash(want[0][0])
        one = self.json_ok("--db", self.db, "blocks", "--hash", h)
        self.assertEqual([r["block_id"] for r in one], [want[0][1]])
        none = self.json_ok("--db", self.db, "blocks", "--state", "free")
        self.assertTrue(all(r["state"] in (0, "free") for r in none))

    def test_show_by_hash_and_block(self):
        h, b = self.registered()[-1]
        by_hash = self.json_ok("--db", self.db, "show", hexhash(h))
        by_block = self.json_ok("--db", self.db, "show", "--block", str(b))
        self.assertEqual(by_hash, by_block)
        self.assertEqual([r["block_id"] for r in by_hash], [b])
        self.fails(1, "not a hash", "--db", self.db, "show", "xyz")
        self.fails(1, "", "--db", self.db, "show", "0123456789abcdef")

    def test_lineage_walks_to_root(self):
        with sqlite3.connect(self.db) as c:
            h, pos = c.execute("SELECT seq_hash, position FROM blocks WHERE state = 1 "
                               "ORDER BY position DESC LIMIT 1").fetchone()
        out = self.json_ok("--db", self.db, "lineage", hexhash(h))
        text = json.dumps(out)
        self.assertIn(hexhash(h), text)
        self.fails(1, "not a hash", "--db", self.db, "lineage", "g00d")

    def test_top(self):
        rows = self.json_ok("--db", self.db, "top", "--limit", "3")
        self.assertLessEqual(len(rows), 3)
        self.assertGreater(len(rows), 0)

    def test_sql_reads_and_refuses_writes(self):
        rows = self.json_ok("--db", self.db, "sql", "SELECT count(*) AS n FROM blocks")
        self.assertEqual(rows[0]["n"], 200)
        before = self.registered()
        self.fails(1, "", "--db", self.db, "sql", "DELETE FROM blocks")
        self.fails(1, "", "--db", self.db, "sql", "SELECT nosuchcolumn FROM blocks")
        self.assertEqual(self.registered(), before)

    def test_views_answer_from_the_shell_schema(self):
        rows = self.json_ok("--db", self.db, "sql", "SELECT * FROM pool_summary")
        self.assertEqual(rows[0]["registered"], len(self.registered()))


class Errors(CliCase):
    def test_missing_file_is_not_created(self):
        p = self.path("absent.db")
        self.fails(1, "absent.db", "--db", p, "info")
        self.assertFalse(os.path.exists(p))

    def test_not_a_catalog(self):
        p = self.path("junk.db")
        with open(p, "wb") as f:
            f.write(b"x" * 4096)
        for cmd in ("info", "verify", "blocks", "export"):
            self.fails(1, "junk.db", "--db", p, cmd)
        p2 = self.path("other.db")
        with sqlite3.connect(p2) as c:
            c.execute("CREATE TABLE t (x)")
        self.fails(1, "not a kvbm catalog", "--db", p2, "info")

    def test_newer_schema_refused(self):
        p = self.copy_fixture("newer.db")
        with sqlite3.connect(p) as c:
            c.execute("PRAGMA user_version = 99")
        self.fails(1, "99", "--db", p, "info")
        self.fails(1, "99", "--db", p, "migrate")

    def test_invalid_schema_version(self):
        p = self.copy_fixture("negative.db")
        with sqlite3.connect(p) as c:
            c.execute("PRAGMA user_version = -5")
        self.fails(1, "not a kvbm catalog", "--db", p, "info")
        self.fails(1, "-5", "--db", p, "migrate")

    def test_malformed_trace_line(self):
        t = self.path("bad.jsonl")
        with open(self.trace) as src, open(t, "w") as dst:
            lines = src.readlines()
            dst.writelines(lines[:5] + ['{"hash_ids": [1, 2, "x"]}\n'] + lines[5:])
        self.fails(1, "6", "replay", t, "--capacity", "50", "--policy", "lru")
        self.fails(1, "nosuch.jsonl", "replay", self.path("nosuch.jsonl"),
                   "--capacity", "50", "--policy", "lru")
        self.fails(2, "", "replay", self.trace, "--capacity", "50", "--policy", "nosuch")


class ExportImport(CliCase):
    def test_round_trip_is_exact(self):
        a = self.path("a.jsonl")
        self.ok("--db", self.db, "export", "--output", a)
        db2 = self.path("copy.db")
        self.ok("--db", db2, "import", a)
        b = self.ok("--db", db2, "export").stdout
        with open(a) as f:
            self.assertEqual(f.read(), b)
        for line in b.splitlines():
            json.loads(line)
        self.assertEqual(self.registered(db2), self.registered())

    def test_import_refuses_existing_file_and_bad_input(self):
        a = self.path("b.jsonl")
        self.ok("--db", self.db, "export", "--output", a)
        before = self.registered()
        self.fails(1, "", "--db", self.db, "import", a)
        self.assertEqual(self.registered(), before)
        bad = self.path("bad-import.jsonl")
        with open(a) as f:
            lines = f.readlines()
        with open(bad, "w") as f:
            f.writelines(lines[:3] + ["{not json\n"] + lines[3:])
        target = self.path("never.db")
        self.fails(1, "4", "--db", target, "import", bad)
        self.assertFalse(os.path.exists(target))

    def test_restored_by_the_library(self):
        """An imported catalog warm-starts a manager: replaying again hits."""
        a = self.path("c.jsonl")
        self.ok("--db", self.db, "export", "--output", a)
        db2 = self.path("warm.db")
        self.ok("--db", db2, "import", a)
        r = json.loads(self.ok("--db", db2, "replay", self.trace, "--capacity", "200",
                               "--policy", "lru", "--json").stdout)
        cold = json.loads(self.ok("replay", self.trace, "--capacity", "200",
                                  "--policy", "lru", "--json").stdout)
        self.assertGreater(r["hits"], cold["hits"])


class Verify(CliCase):
    def damaged(self, name, sql):
        p = self.copy_fixture(name)
        with sqlite3.connect(p) as c:
            c.executescript(sql)
        return p

    def test_clean_catalog_verifies(self):
        out = self.json_ok("--db", self.db, "verify")
        self.assertTrue(out["ok"])
        self.assertEqual(out["problems"], 0)

    def test_block_id_out_of_range(self):
        p = self.damaged("range.db", "UPDATE blocks SET block_id = 9999 WHERE block_id = 3;")
        r = self.fails(1, "problem", "--db", p, "verify")
        self.assertIn("block 9999 is outside 0..199", r.stdout)

    def test_two_blocks_claim_one_hash(self):
        h, b = self.registered()[0]
        p = self.damaged("dup.db", f"UPDATE blocks SET seq_hash = {h} WHERE block_id = "
                                   f"(SELECT block_id FROM blocks WHERE state = 1 AND "
                                   f"block_id != {b} LIMIT 1);")
        r = self.fails(1, "problem", "--db", p, "verify")
        self.assertIn("claim hash " + hexhash(h), r.stdout)

    def test_state_inconsistent(self):
        p = self.damaged("state.db", "UPDATE blocks SET seq_hash = NULL WHERE block_id = "
                                     "(SELECT block_id FROM blocks WHERE state = 1 LIMIT 1);"
                                     "UPDATE blocks SET state = 7 WHERE block_id = 5;")
        r = self.fails(1, "problem", "--db", p, "verify")
        self.assertIn("registered without a hash", r.stdout)
        self.assertIn("unknown state 7", r.stdout)

    def test_orphan_tier_rows(self):
        p = self.damaged("tier.db", "UPDATE blocks SET tier = 'ghost' WHERE block_id = 1;")
        out = json.loads(run("--db", p, "verify", "--json").stdout)
        self.assertFalse(out["ok"])
        self.assertTrue(any(f["check"] == "tiers" for f in out["findings"]))

    def test_corrupt_pages(self):
        p = self.copy_fixture("pages.db")
        self.ok("--db", p, "checkpoint")
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.seek(size // 2)
            f.write(b"\xff" * 4096)
        r = run("--db", p, "verify")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)


class Admin(CliCase):
    def test_init_then_library_opens_it(self):
        p = self.path("init.db")
        self.ok("--db", p, "init", "--block-count", "64", "--block-size", "16", "--tier", "gpu")
        info = self.json_ok("--db", p, "info")
        self.assertEqual((info[0]["tier"], info[0]["block_count"]), ("gpu", 64))
        self.fails(1, "", "--db", p, "init", "--block-count", "64", "--tier", "gpu")
        self.fails(2, "", "--db", self.path("x.db"), "init")
        self.ok("--db", p, "verify")

    def test_migrate_from_version_1(self):
        p = self.copy_fixture("v1.db")
        with sqlite3.connect(p) as c:
            views = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='view'")]
            for v in views:
                c.execute(f"DROP VIEW {v}")
            c.execute("UPDATE meta SET schema_version = 1")
            c.execute("PRAGMA user_version = 1")
        before = self.registered(p)
        out = self.ok("--db", p, "migrate", "--dry-run").stdout
        self.assertIn("1", out)
        with sqlite3.connect(p) as c:
            self.assertEqual(c.execute("PRAGMA user_version").fetchone()[0], 1)
        self.ok("--db", p, "migrate")
        with sqlite3.connect(p) as c:
            self.assertGreater(c.execute("PRAGMA user_version").fetchone()[0], 1)
            self.assertEqual(c.execute("SELECT registered FROM pool_summary").fetchone()[0],
                             len(before))
        self.assertEqual(self.registered(p), before)
        self.assertIn("nothing to do", self.ok("--db", p, "migrate").stdout)

    def test_vacuum_and_checkpoint_keep_rows(self):
        p = self.copy_fixture("maint.db")
        before = self.registered(p)
        self.ok("--db", p, "vacuum")
        self.ok("--db", p, "checkpoint")
        self.assertEqual(self.registered(p), before)
        self.ok("--db", p, "verify")


class Replay(CliCase):
    def replay(self, *extra):
        return json.loads(self.ok("replay", self.trace, "--capacity", "100", "--policy", "lru",
                                  "--json", *extra).stdout)

    def test_json_fields_and_counts(self):
        r = self.replay()
        for k in ("requests", "block_refs", "hits", "hit_rate", "evictions"):
            self.assertIn(k, r)
        with open(self.trace) as f:
            reqs = [json.loads(l)["hash_ids"] for l in f]
        self.assertEqual(r["requests"], len(reqs))
        self.assertEqual(r["block_refs"], sum(len(h) for h in reqs))
        self.assertAlmostEqual(r["hit_rate"], r["hits"] / r["block_refs"], places=5)

    def test_opt_bounds_lru(self):
        r = self.replay("--opt")
        self.assertGreaterEqual(r["opt_hit_rate"], r["hit_rate"])

    def test_restart_at_reports_both_runs(self):
        db = self.path("restart.db")
        r = json.loads(self.ok("--db", db, "replay", self.trace, "--capacity", "100",
                               "--policy", "lru", "--json", "--restart-at", "80").stdout)
        self.assertEqual(r["restart_at"], 80)
        self.assertIn("after_restart_hit_rate", r)
        self.assertIn("uninterrupted_after_hit_rate", r)

    def test_piped_output_has_no_progress_bar(self):
        r = self.ok("replay", self.trace, "--capacity", "100", "--policy", "fifo")
        self.assertNotIn("\r", r.stdout + r.stderr)
        self.assertIn("hit", r.stdout)

    def test_demo_on_a_given_trace(self):
        r = self.ok("--db", self.path("demo.db"), "demo", self.trace, "--capacity", "100")
        self.assertIn("warm", r.stdout)
        self.assertIn("cold", r.stdout)


if __name__ == "__main__":
    BIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
