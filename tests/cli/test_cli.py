#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Run kvbm-catalog on catalogs made by the library and check what it does.

Usage: test_cli.py KVBM_CATALOG_BINARY [unittest arguments]

Fixture catalogs come from the binary's own `replay --db` (a real manager
with a catalog, whose evictions leave reclaim rows), `init`, and the schema-2
fixture in tests/data; damage is applied to the schema-3 tables with python's
sqlite3 module, an independent writer. Every check looks at the exit code, the one-line
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
HERE = os.path.dirname(os.path.abspath(__file__))
V2_SQL = os.path.join(HERE, "..", "data", "catalog-v2.sql")
# `kvbm-catalog export` of the v2 fixture by the previous release (schema 2).
V2_EXPORT = os.path.join(HERE, "catalog-v2-export.jsonl")
TIER1 = 1 << 32  # block_rows.id of block 0 of tier_id 1


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

    def free_ids(self, db=None):
        """Block ids of the fixture's tier with no registered row (the
        replay ends with every block registered; the tests still go by what
        the file says)."""
        return sorted(set(range(200)) - {b for _, b in self.registered(db)})

    def v2_file(self, name):
        """The schema-2 catalog of tests/data, as a file."""
        p = self.path(name)
        with open(V2_SQL) as f, sqlite3.connect(p) as c:
            c.executescript(f.read())
        return p

    def reclaimed(self, name, blocks):
        """A copy of the fixture in which one more commit evicted `blocks`:
        a reclaim row newer than their rows, as the library writes it."""
        p = self.copy_fixture(name)
        with sqlite3.connect(p) as c:
            c.execute("UPDATE tiers SET write_seq = write_seq + 1")
            c.execute("INSERT INTO reclaims (tier_id, seq, blocks) SELECT tier_id, write_seq, ?"
                      " FROM tiers", (json.dumps(blocks),))
        return p

    def chain(self, db=None, length=3):
        """Blocks (block_id, hash) of one registered chain, parent first."""
        with sqlite3.connect(db or self.db) as c:
            rows = c.execute("SELECT block_id, seq_hash, parent_hash FROM blocks").fetchall()
        by_parent = {}
        for b, h, p in rows:
            by_parent.setdefault(p, []).append((b, h))
        for b, h, p in sorted(rows):
            out = [(b, h)]
            while len(out) < length and by_parent.get(out[-1][1]):
                out.append(by_parent[out[-1][1]][0])
            if len(out) == length:
                return out
        raise AssertionError("no chain of %d blocks" % length)


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

    def test_db_after_the_command(self):
        """--db is accepted before or after the command name, with the
        same result; two different paths are a usage error."""
        before = self.json_ok("--db", self.db, "info")
        self.assertEqual(self.json_ok("info", "--db", self.db), before)
        self.assertEqual(self.json_ok("info", "--db=" + self.db), before)
        self.assertEqual(self.json_ok("--db", self.db, "info", "--db", self.db), before)
        self.assertEqual(len(self.json_ok("blocks", "--limit", "3", "--db", self.db)), 3)
        self.fails(2, "--db given twice", "--db", self.db, "info", "--db", self.path("o.db"))
        self.fails(2, "--db needs a PATH", "info", "--db")
        p = self.path("after.db")
        self.ok("init", "--block-count", "8", "--db", p)
        self.assertEqual(self.json_ok("info", "--db", p)[0]["block_count"], 8)

    def test_replay_help_lists_policies(self):
        out = self.ok("replay", "--help").stdout
        self.assertIn("lru", out)
        self.assertIn("fifo", out)
        self.assertIn("(default adaptive)", out)


class Inspect(CliCase):
    def test_info(self):
        info = self.json_ok("--db", self.db, "info")
        self.assertEqual(len(info), 1)
        t = info[0]
        self.assertEqual(t["block_count"], 200)
        self.assertEqual(t["schema_version"], t["file_schema_version"])
        self.assertEqual(t["shutdown"], "clean")
        lines = self.ok("--db", self.db, "info").stdout.splitlines()
        self.assertEqual(lines[0], "tier: G1")
        fields = dict(l.split(": ", 1) for l in lines)
        self.assertEqual(list(fields), list(t))  # every key, in the JSON's order
        self.assertEqual((fields["block_count"], fields["shutdown"]), ("200", "clean"))
        table = self.ok("--db", self.db, "info", "--table").stdout.splitlines()
        self.assertEqual(len(table), 2)
        self.assertEqual(table[0].split()[:3], ["tier", "block_size", "block_count"])
        self.assertEqual(self.json_ok("--db", self.db, "info", "--table"), info)

    def test_info_of_two_tiers(self):
        p = self.path("two-info.db")
        self.ok("--db", p, "init", "--block-count", "8", "--tier", "A")
        self.ok("--db", p, "init", "--block-count", "9", "--tier", "B")
        blocks = self.ok("--db", p, "info").stdout.split("\n\n")
        self.assertEqual(len(blocks), 2)
        self.assertTrue(blocks[0].startswith("tier: A\n"))
        self.assertTrue(blocks[1].startswith("tier: B\n"))
        self.assertIn("block_count: 9\n", blocks[1])
        self.assertEqual(len(self.ok("--db", p, "info", "--table").stdout.splitlines()), 3)

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
        # The replay fills every block, but the fixture may have a few
        # free ones (see free_ids): what is not registered is free.
        free = self.json_ok("--db", self.db, "blocks", "--state", "free", "--limit", "1000")
        self.assertEqual([r["block_id"] for r in free], self.free_ids())
        self.assertTrue(all(r["state"] == "free" and r["hash"] is None for r in free))
        self.fails(2, "--state", "--db", self.db, "blocks", "--state", "gone")

    def test_reclaimed_blocks_are_free(self):
        """A reclaim row newer than a block's row frees the block for every
        command, as it does for the library's restore."""
        before = len(self.registered())
        evict = sorted(b for _, b in self.registered())[:3]
        p = self.reclaimed("free.db", evict)
        free = self.json_ok("--db", p, "blocks", "--state", "free", "--limit", "1000")
        want = sorted(set(self.free_ids()) | set(evict))
        self.assertEqual([(r["block_id"], r["state"], r["hash"]) for r in free],
                         [(b, "free", None) for b in want])
        self.assertEqual(len(self.json_ok("--db", p, "blocks", "--state", "free",
                                          "--limit", "2")), 2)
        reg = self.json_ok("--db", p, "blocks", "--limit", "1000")
        self.assertEqual(len(reg), before - 3)
        self.assertNotIn(evict[0], [r["block_id"] for r in reg])
        self.assertEqual(len(reg), len(self.registered(p)))  # the blocks view agrees
        stats = self.json_ok("--db", p, "stats")[0]
        self.assertEqual((stats["registered"], stats["free"]), (before - 3, 200 - before + 3))
        shown = self.json_ok("--db", p, "show", "--block", str(evict[1]))
        self.assertEqual((shown[0]["state"], shown[0]["hash"]), ("free", None))
        self.fails(1, "no block 200", "--db", p, "show", "--block", "200")
        with sqlite3.connect(p) as c:
            h = c.execute("SELECT seq_hash FROM block_rows WHERE id = ?",
                          (TIER1 | evict[1],)).fetchone()[0]
        self.fails(1, f"block {evict[1]} of tier G1 held it and was evicted", "--db", p,
                   "show", hexhash(h))
        self.ok("--db", p, "verify")
        # The library restores exactly the blocks the CLI calls registered.
        self.ok("--db", p, "replay", self.trace, "--capacity", "200", "--policy", "lru")
        with sqlite3.connect(p) as c:
            self.assertEqual(c.execute("SELECT restored_blocks FROM tiers").fetchone()[0],
                             before - 3)

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
        self.assertEqual([r["distance"] for r in out if r["relation"] != "descendant"],
                         list(range(-pos, 1)))
        self.assertTrue(all(r["state"] == "registered" for r in out))
        self.assertEqual(out[0]["position"], 0)
        self.fails(1, "not a hash", "--db", self.db, "lineage", "g00d")

    def test_lineage_through_evicted_parents(self):
        """An evicted parent shows as evicted; the walk goes on through its
        reclaimed row to the grandparent still cached, and below it."""
        (gb, gh), (pb, ph), (cb, ch) = self.chain(length=3)
        p = self.reclaimed("lineage.db", [pb])
        out = self.json_ok("--db", p, "lineage", hexhash(ch))
        rows = {r["hash"]: r for r in out}
        self.assertEqual(rows[hexhash(ch)]["relation"], "self")
        self.assertEqual((rows[hexhash(ph)]["state"], rows[hexhash(ph)]["block_id"],
                          rows[hexhash(ph)]["distance"]), ("evicted", None, -1))
        self.assertEqual((rows[hexhash(gh)]["state"], rows[hexhash(gh)]["block_id"],
                          rows[hexhash(gh)]["distance"]), ("registered", gb, -2))
        down = self.json_ok("--db", p, "lineage", hexhash(gh))
        self.assertIn((hexhash(ch), "descendant", 2, "registered"),
                      [(r["hash"], r["relation"], r["distance"], r["state"]) for r in down])
        # With the parent's row gone too, it is known only from its child.
        with sqlite3.connect(p) as c:
            c.execute("DELETE FROM block_rows WHERE id = ?", (TIER1 | pb,))
        out = self.json_ok("--db", p, "lineage", hexhash(ch))
        self.assertEqual([(r["hash"], r["state"], r["block_id"]) for r in out
                          if r["distance"] == -1], [(hexhash(ph), "evicted", None)])
        self.assertNotIn(hexhash(gh), [r["hash"] for r in out])
        self.fails(1, "no block", "--db", p, "show", hexhash(ph))

    def test_top(self):
        rows = self.json_ok("--db", self.db, "top", "--limit", "3")
        self.assertLessEqual(len(rows), 3)
        self.assertGreater(len(rows), 0)
        every = self.json_ok("--db", self.db, "top", "--limit", "100000")
        self.assertEqual(sum(r["blocks"] for r in every), len(self.registered()))
        # The same answer as the hot_prefixes view.
        view = self.json_ok("--db", self.db, "sql", "SELECT tier, root, blocks, accesses,"
                            " longest_chain FROM hot_prefixes")
        key = lambda r: (r["tier"], r["root"])
        self.assertEqual(sorted(every, key=key), sorted(view, key=key))

    def test_top_and_lineage_on_a_parent_cycle(self):
        """A damaged file whose parents loop: top leaves the loop and what
        hangs below it out, as the hot_prefixes view does; lineage ends."""
        (ab, ah), (bb, bh), (cb, ch) = self.chain(length=3)
        p = self.copy_fixture("cycle.db")
        with sqlite3.connect(p) as c:
            c.execute("UPDATE block_rows SET parent_hash = ? WHERE id = ?", (ch, TIER1 | ab))
        every = self.json_ok("--db", p, "top", "--limit", "100000")
        view = self.json_ok("--db", p, "sql", "SELECT tier, root, blocks, accesses,"
                            " longest_chain FROM hot_prefixes")
        key = lambda r: (r["tier"], r["root"])
        self.assertEqual(sorted(every, key=key), sorted(view, key=key))
        self.assertLess(sum(r["blocks"] for r in every), 200)
        out = self.json_ok("--db", p, "lineage", hexhash(bh))
        self.assertEqual({r["hash"] for r in out if r["relation"] == "ancestor"},
                         {hexhash(ah), hexhash(ch)})

    def test_sql_reads_and_refuses_writes(self):
        rows = self.json_ok("--db", self.db, "sql", "SELECT count(*) AS n FROM blocks")
        self.assertEqual(rows[0]["n"], len(self.registered()))
        before = self.registered()
        self.fails(1, "", "--db", self.db, "sql", "DELETE FROM blocks")
        self.fails(1, "", "--db", self.db, "sql", "SELECT nosuchcolumn FROM blocks")
        self.assertEqual(self.registered(), before)

    def test_hashes_print_as_16_hex_digits_everywhere(self):
        """Every command and every view shown through sql prints a hash as
        16 hex digits, in tables and in JSON alike."""
        with sqlite3.connect(self.db) as c:
            h, p, b = c.execute("SELECT seq_hash, parent_hash, block_id FROM blocks"
                                " WHERE parent_hash IS NOT NULL AND seq_hash < 0"
                                " LIMIT 1").fetchone()
        want = {hexhash(h), hexhash(p)}
        outputs = {
            "blocks": self.json_ok("--db", self.db, "blocks", "--hash", hexhash(h)),
            "show": self.json_ok("--db", self.db, "show", "--block", str(b)),
            "lineage": [r for r in self.json_ok("--db", self.db, "lineage", hexhash(h))
                        if r["hash"] in want],
            "sql blocks": self.json_ok("--db", self.db, "sql", "SELECT seq_hash AS hash,"
                                       " parent_hash AS parent FROM blocks WHERE block_id = ?"
                                       .replace("?", str(b))),
            "sql view": self.json_ok("--db", self.db, "sql", "SELECT seq_hash, parent_hash"
                                     f" FROM prefix_edges WHERE block_id = {b}"),
            "sql table": self.json_ok("--db", self.db, "sql", "SELECT seq_hash, parent_hash"
                                      f" FROM block_rows WHERE id = {TIER1 | b}"),
        }
        for name, rows in outputs.items():
            text = {v for r in rows for k, v in r.items()
                    if k in ("hash", "parent", "seq_hash", "parent_hash")}
            self.assertTrue(text and text <= want, (name, rows))
        table = self.ok("--db", self.db, "sql", "SELECT seq_hash, parent_hash FROM"
                        f" prefix_edges WHERE block_id = {b}").stdout.split()
        self.assertEqual(table[2:], [hexhash(h), hexhash(p)])
        rec = self.ok("--db", self.db, "info").stdout
        self.assertIn("hash_salt: 0000000000000000", rec)
        # Another column name keeps the stored integer.
        raw = self.json_ok("--db", self.db, "sql", f"SELECT seq_hash AS n FROM block_rows"
                           f" WHERE id = {TIER1 | b}")
        self.assertEqual(raw[0]["n"], h)
        # Messages too: a short hash asked for is named with all 16 digits.
        self.fails(1, "no block holds 00000000000000ab", "--db", self.db, "show", "0xab")

    def test_views_answer_from_the_shell_schema(self):
        rows = self.json_ok("--db", self.db, "sql", "SELECT * FROM pool_summary")
        self.assertEqual(rows[0]["registered"], len(self.registered()))
        for view in ("eviction_order", "hot_blocks", "prefix_edges", "block_roots",
                     "hot_prefixes", "chain_depth_histogram", "catalog_health", "meta"):
            self.json_ok("--db", self.db, "sql", f"SELECT count(*) AS n FROM {view}")

    def test_fixture_reclaims_mask_nothing_after_a_clean_close(self):
        """A clean close rewrites every block the writer had reclaimed, so
        what reclaim rows remain (if any) mask no row: the CLI counts every
        row as registered, as the library restores them."""
        rows = self.json_ok("--db", self.db, "sql", "SELECT count(*) AS n FROM block_rows")
        self.assertEqual(rows[0]["n"], len(self.registered()))


class Errors(CliCase):
    def test_missing_file_is_not_created(self):
        p = self.path("absent.db")
        self.fails(1, "absent.db", "--db", p, "info")
        self.assertFalse(os.path.exists(p))

    def test_missing_directory_is_named(self):
        """A --db in a directory that does not exist says so, for every
        command that reads or writes, and nothing is created."""
        gone = self.path("no-such-dir")
        db = os.path.join(gone, "x.db")
        for cmd in (["info"], ["verify"], ["blocks"], ["export"], ["sql", "SELECT 1"],
                    ["vacuum"], ["checkpoint"], ["migrate"], ["init", "--block-count", "4"],
                    ["import", V2_EXPORT], ["replay", self.trace, "--capacity", "10"],
                    ["demo", self.trace, "--capacity", "10"]):
            self.fails(1, f"directory {gone} does not exist (for {db})", "--db", db, *cmd)
        self.assertFalse(os.path.exists(gone))
        self.fails(1, f"{self.trace} is not a directory", "--db",
                   os.path.join(self.trace, "x.db"), "info")
        self.fails(1, f"{self.path('nofile.db')} does not exist", "--db",
                   self.path("nofile.db"), "stats")

    def test_fifo_and_directory_fail_at_once(self):
        """Nothing opens a FIFO (which would block until a writer came) or
        a directory: every command refuses them before opening."""
        fifo = self.path("catalog.fifo")
        os.mkfifo(fifo)
        for path, kind in ((fifo, "a FIFO"), (self.dir, "a directory")):
            for cmd in (["info"], ["stats"], ["blocks"], ["show", "--block", "1"], ["top"],
                        ["lineage", "ab"], ["verify"], ["export"], ["sql", "SELECT 1"],
                        ["vacuum"], ["checkpoint"], ["migrate"], ["migrate", "--dry-run"],
                        ["init", "--block-count", "4"]):
                r = self.fails(1, f"{path} is not a regular file ({kind})", "--db", path, *cmd)
                self.assertEqual(r.stdout, "")
        self.assertTrue(os.path.exists(fifo))

    def read_only(self, d, *args):
        """Run the binary with directory d bind-mounted read-only in a
        mount namespace of its own (nothing outside it sees the mount)."""
        script = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" || exit 99;'
                  ' exec "$@"')
        return subprocess.run(["unshare", "-m", "sh", "-c", script, d, BIN, *args],
                              capture_output=True, text=True, timeout=120)

    def test_catalog_on_read_only_media(self):
        """A valid catalog on a read-only mount is read (not "not a kvbm
        catalog"); a command that writes says the media is read-only."""
        d = self.path("ro")
        os.makedirs(d, exist_ok=True)
        db = os.path.join(d, "c.db")
        shutil.copyfile(self.db, db)
        probe = self.read_only(d, "--version")
        if shutil.which("unshare") is None or probe.returncode != 0:
            self.skipTest("no read-only bind mount here (unshare -m and mount need"
                          " privileges): " + probe.stderr.strip())
        r = self.read_only(d, "--db", db, "info", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), self.json_ok("--db", self.db, "info"))
        # verify's schema check runs on the library's own connection, which
        # read-only media refuses: there it is a warning, the rest is equal.
        schema = lambda out: "\n".join(l for l in out.splitlines()
                                      if not l.startswith(("ok: schema", "warning: schema")))
        for cmd in (["verify"], ["stats"], ["blocks"], ["top"], ["export"],
                    ["sql", "SELECT count(*) FROM blocks"]):
            r = self.read_only(d, "--db", db, *cmd)
            self.assertEqual((r.returncode, schema(r.stdout)),
                             (0, schema(self.ok("--db", self.db, *cmd).stdout)), (cmd, r.stderr))
        for cmd in (["vacuum"], ["checkpoint"], ["migrate"], ["init", "--block-count", "4",
                    "--tier", "X"], ["replay", self.trace, "--capacity", "10"]):
            r = self.read_only(d, "--db", db, *cmd)
            self.assertEqual(r.returncode, 1, (cmd, r.stdout, r.stderr))
            self.assertIn(f"{db} is on a read-only file system: {cmd[0]} writes it",
                          r.stderr, cmd)
        r = self.read_only(d, "--db", os.path.join(d, "new.db"), "import", V2_EXPORT)
        self.assertIn("new.db is on a read-only file system: import writes it", r.stderr)
        r = self.read_only(d, "--db", db, "migrate", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nothing to do", r.stdout)
        self.assertIn("read-only file system", r.stderr)
        # A WAL with commits the file alone does not hold cannot be read
        # without a -shm file there: refused by name, not misread.
        with open(db + "-wal", "wb") as f:
            f.write(b"\0" * 32)
        r = self.read_only(d, "--db", db, "info")
        self.assertEqual(r.returncode, 1)
        self.assertIn("its WAL " + db + "-wal holds commits", r.stderr)

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

    def test_writers_leave_a_foreign_file_untouched(self):
        """vacuum, checkpoint, migrate, init and import refuse a file that
        is not a kvbm catalog (the library identifies it first) and leave
        it byte for byte as it was, with nothing created beside it."""
        other = self.path("app.db")
        with sqlite3.connect(other) as c:
            # The shape the previous CLI let through: user_version 1, a meta table.
            c.executescript("CREATE TABLE users (name TEXT); CREATE TABLE meta (tier TEXT);"
                            "INSERT INTO users VALUES ('ann'); PRAGMA user_version = 1;")
        empty = self.path("empty.db")
        open(empty, "wb").close()
        junk = self.path("junk-w.db")
        with open(junk, "wb") as f:
            f.write(b"x" * 4096)
        for path, needle in ((other, "is not a kvbm catalog (application_id 0, user_version 1"),
                             (empty, "is empty, not a kvbm catalog"),
                             (junk, "is not a kvbm catalog")):
            for cmd in (["vacuum"], ["checkpoint"], ["migrate"], ["migrate", "--dry-run"],
                        ["init", "--block-count", "4"], ["import", V2_EXPORT]):
                if path == empty and cmd[0] == "init":
                    continue  # an empty file is the one init may make a catalog
                with open(path, "rb") as f:
                    before = f.read()
                r = self.fails(1, "", "--db", path, *cmd)
                if cmd[0] != "import":  # import refuses any existing target
                    self.assertIn(needle, r.stderr, (path, cmd))
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), before, (path, cmd))
                for side in ("-wal", "-shm", "-journal", "-kvbm"):
                    self.assertFalse(os.path.exists(path + side), (path, cmd, side))
        # init makes an empty file a catalog.
        self.ok("--db", empty, "init", "--block-count", "4")
        self.assertEqual(self.json_ok("--db", empty, "info")[0]["block_count"], 4)

    def test_newer_schema_refused(self):
        p = self.copy_fixture("newer.db")
        with sqlite3.connect(p) as c:
            c.execute("PRAGMA user_version = 99")
        self.fails(1, "99", "--db", p, "info")
        self.fails(1, "99", "--db", p, "migrate")

    def test_older_schema_needs_migrate(self):
        p = self.v2_file("old.db")
        for cmd in ("info", "stats", "blocks", "top", "verify"):
            self.fails(1, "older than this program's 4: upgrade it with kvbm-catalog --db",
                       "--db", p, cmd)

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


    def test_endless_or_huge_input_fails_fast(self):
        """Traces and import files are read a bounded line at a time: an
        input with no newline fails at the line limit, a trace that would
        not fit the memory bound fails naming it, and neither grows."""
        for cmd in (("replay", "/dev/zero", "--capacity", "10", "--policy", "lru"),
                    ("--db", self.path("zero.db"), "import", "/dev/zero")):
            limit = "16777216" if cmd[0] == "replay" else "67108864"
            self.fails(1, f"/dev/zero: line 1 is longer than {limit} bytes", *cmd)
        self.assertFalse(os.path.exists(self.path("zero.db")))
        t = self.path("long-line.jsonl")
        with open(self.trace) as src, open(t, "w") as dst:
            lines = src.readlines()
            dst.writelines(lines[:3])
            dst.write('{"hash_ids": [%s]}\n' % ", ".join(["7"] * 100))
        self.fails(1, "long-line.jsonl: line 4 is longer than 200 bytes; --max-line",
                   "replay", t, "--capacity", "10", "--policy", "lru", "--max-line", "200")
        self.ok("replay", t, "--capacity", "10", "--policy", "lru", "--max-line", "1K")
        refs = sum(len(json.loads(l)["hash_ids"]) for l in lines)
        self.fails(1, "more than 100 block references", "replay", self.trace,
                   "--capacity", "10", "--policy", "lru", "--max-refs", "100")
        self.ok("replay", self.trace, "--capacity", "10", "--policy", "lru", "--max-refs",
                str(refs))
        self.fails(2, "--max-refs", "replay", self.trace, "--capacity", "10", "--policy", "lru",
                   "--max-refs", "0")
        exp = self.path("long.jsonl")
        self.ok("--db", self.db, "export", "--output", exp)
        self.fails(1, "long.jsonl: line 1 is longer than 50 bytes", "--db",
                   self.path("long.db"), "import", exp, "--max-line", "50")
        self.assertFalse(os.path.exists(self.path("long.db")))
        nul = self.path("nul.jsonl")
        with open(exp, "rb") as f, open(nul, "wb") as out:
            out.write(f.readline().replace(b'"type"', b'"ty\0pe"'))
        self.fails(1, "nul.jsonl: line 1: holds a NUL byte", "--db", self.path("nul.db"),
                   "import", nul)


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

    def test_blobs_round_trip(self):
        """block_rows' key and tokens blobs (NUL bytes included) are exported
        as x'<hex>' and imported back as the same blobs."""
        p = self.copy_fixture("blobs.db")
        key = bytes(range(32))
        with sqlite3.connect(p) as c:
            c.execute("UPDATE block_rows SET key = ?, tokens = ? WHERE id = ?",
                      (key, b"\0\1\2\3" * 16 + b"\0\0\0\0", TIER1 | 3))
            c.execute("UPDATE block_rows SET key = x'' WHERE id = ?", (TIER1 | 4,))
        a = self.ok("--db", p, "export").stdout
        self.assertIn('"key": "x\'%s\'"' % key.hex(), a)
        exp = self.path("blobs.jsonl")
        with open(exp, "w") as f:
            f.write(a)
        db2 = self.path("blobs2.db")
        self.ok("--db", db2, "import", exp)
        self.assertEqual(self.ok("--db", db2, "export").stdout, a)
        with sqlite3.connect(db2) as c:
            got = c.execute("SELECT key, typeof(key) FROM block_rows WHERE id IN (?, ?)"
                            " ORDER BY id", (TIER1 | 3, TIER1 | 4)).fetchall()
        self.assertEqual(got, [(key, "blob"), (b"", "blob")])
        with open(exp, "w") as f:
            f.write(a.replace("x'%s'" % key.hex(), "x'0g'"))
        self.fails(1, "a blob field is not x'<hex digits>'", "--db", self.path("blobs3.db"),
                   "import", exp)

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

    def test_import_of_a_schema_2_export(self):
        """The previous release's export imports as the migration converts
        the file it came from: the same rows, byte for byte."""
        db = self.path("from-v2.db")
        out = json.loads(self.ok("--db", db, "import", V2_EXPORT, "--json").stdout)
        self.assertEqual((out["schema"], out["dropped_rows"]), (2, 10))
        migrated = self.v2_file("migrated.db")
        self.ok("--db", migrated, "migrate")
        self.assertEqual(self.ok("--db", db, "export").stdout,
                         self.ok("--db", migrated, "export").stdout)
        self.ok("--db", db, "verify")
        # An older file exports the previous release's lines.
        with open(V2_EXPORT) as f:
            self.assertEqual(self.ok("--db", self.v2_file("old.db"), "export").stdout, f.read())

    def test_import_refuses_mixed_exports(self):
        mixed = self.path("mixed.jsonl")
        with open(V2_EXPORT) as f, open(mixed, "w") as out:
            out.write(f.readline())
            out.write(self.ok("--db", self.db, "export").stdout)
        self.fails(1, "line 2: a schema-3 'tier' line, but line 1 is schema 2", "--db",
                   self.path("never2.db"), "import", mixed)
        self.assertFalse(os.path.exists(self.path("never2.db")))

    def test_export_keeps_reclaim_rows(self):
        p = self.reclaimed("rec.db", sorted(b for _, b in self.registered())[:2])
        a = self.ok("--db", p, "export").stdout
        self.assertIn('"type": "reclaim"', a)
        db2 = self.path("rec-copy.db")
        with open(self.path("rec.jsonl"), "w") as f:
            f.write(a)
        self.ok("--db", db2, "import", self.path("rec.jsonl"))
        self.assertEqual(self.registered(db2), self.registered(p))
        self.assertEqual(len(self.registered(db2)), len(self.registered()) - 2)

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
    def damaged(self, name, sql, *params):
        p = self.copy_fixture(name)
        with sqlite3.connect(p) as c:
            if params:
                c.execute(sql, params)
            else:
                c.executescript(sql)
        return p

    def finding(self, p, check, needle):
        """verify fails on p, naming the check and the damage."""
        r = self.fails(3, "problem", "--db", p, "verify")
        self.assertIn(f"problem: {check}: ", r.stdout)
        self.assertIn(needle, r.stdout)
        out = json.loads(run("--db", p, "verify", "--json").stdout)
        self.assertFalse(out["ok"])
        self.assertTrue(any(f["check"] == check and needle in f["detail"]
                            for f in out["findings"]), out)
        return r

    def test_clean_catalog_verifies(self):
        out = self.json_ok("--db", self.db, "verify")
        self.assertTrue(out["ok"])
        self.assertEqual(out["problems"], 0)

    def test_identity(self):
        p = self.damaged("ident.db", "UPDATE tiers SET block_size = 12;")
        self.finding(p, "identity", "block_size 12 is not a power of two")
        p = self.damaged("ident2.db", "UPDATE tiers SET schema_version = 2;")
        self.finding(p, "identity", "tiers says schema 2 but the file is at 4")

    def test_block_id_out_of_range(self):
        p = self.damaged("range.db", "UPDATE block_rows SET id = ? WHERE id = ?",
                         TIER1 | 9999, TIER1 | 3)
        self.finding(p, "block ids", "block 9999 is outside 0..199")

    def test_two_blocks_claim_one_hash(self):
        h, b = self.registered()[0]
        other = self.registered()[1][1]
        p = self.damaged("dup.db", "UPDATE block_rows SET seq_hash = ? WHERE id = ?",
                         h, TIER1 | other)
        self.finding(p, "one block per hash", "2 blocks claim hash " + hexhash(h))
        # top deduplicates the walk instead of counting a subtree twice.
        every = self.json_ok("--db", p, "top", "--limit", "100000")
        self.assertLessEqual(sum(r["blocks"] for r in every), 200)
        self.assertIn(hexhash(h), json.dumps(self.json_ok("--db", p, "lineage", hexhash(h))))
        # A reclaimed row claims nothing: no duplicate once it is evicted.
        with sqlite3.connect(p) as c:
            c.execute("UPDATE tiers SET write_seq = write_seq + 1")
            c.execute("INSERT INTO reclaims (tier_id, seq, blocks) SELECT 1, write_seq, ?"
                      " FROM tiers", (f"[{other}]",))
        self.ok("--db", p, "verify")

    def test_bad_rows(self):
        p = self.damaged("rows.db", "UPDATE block_rows SET wseq = -1 WHERE id = ?", TIER1 | 2)
        self.finding(p, "rows", "block 2 has write sequence -1")
        p = self.damaged("rows2.db", "UPDATE block_rows SET seq_hash = 'x' WHERE id = ?",
                         TIER1 | 2)
        self.finding(p, "rows", "block 2 has a text seq_hash")
        p = self.damaged("rows3.db", "UPDATE block_rows SET wseq = 1000000 WHERE id = ?",
                         TIER1 | 2)
        self.finding(p, "rows", "write sequence 1000000, after the tier's last commit")

    def test_orphan_tier_rows(self):
        p = self.damaged("tier.db", "UPDATE block_rows SET id = ? WHERE id = ?",
                         (7 << 32) | 1, TIER1 | 1)
        self.finding(p, "tiers", "rows of tier id 7 have no tiers row (1 rows, blocks 1..1)")
        # Below every tier, negative, and the largest id there is.
        with sqlite3.connect(p) as c:
            c.execute("UPDATE block_rows SET id = -5 WHERE id = ?", (TIER1 | 3,))
            c.execute("UPDATE block_rows SET id = 9223372036854775807 WHERE id = ?", (TIER1 | 4,))
        r = self.finding(p, "tiers", "rows of tier id -1 have no tiers row")
        self.assertIn("rows of tier id 2147483647 have no tiers row", r.stdout)
        self.assertIn("rows of tier id 7 have no tiers row", r.stdout)

    def test_schema_objects(self):
        """A table or view the library relies on is gone: verify names it,
        as the library refuses the open naming it."""
        p = self.damaged("noview.db", "DROP VIEW hot_prefixes;")
        self.finding(p, "schema", "hot_prefixes")
        p = self.damaged("nostats.db", "DROP TABLE stats;")
        self.finding(p, "schema", "stats")

    def test_unreadable_reclaim_row(self):
        """The library trusts no row older than an unreadable reclaim row:
        verify says so, and every command still works on the file."""
        p = self.damaged("rec.db", "UPDATE tiers SET write_seq = write_seq + 1;"
                                   "INSERT INTO reclaims (tier_id, seq, blocks)"
                                   " SELECT 1, write_seq, '[1, 2' FROM tiers;")
        r = self.finding(p, "reclaims", "is not a JSON array of block ids")
        self.assertIn("(200 rows)", r.stdout)
        # The blocks view reads it as the library does: every older row
        # of the tier is distrusted.
        rows = self.json_ok("--db", p, "sql", "SELECT count(*) AS n FROM blocks")
        self.assertEqual(rows[0]["n"], 0)
        for bad in ('[1, -2]', '[1.5]', '{"a": 1}', '[1, 2e3]'):
            with sqlite3.connect(p) as c:
                c.execute("UPDATE reclaims SET blocks = ? WHERE blocks = '[1, 2' OR rec_id ="
                          " (SELECT max(rec_id) FROM reclaims)", (bad,))
            self.finding(p, "reclaims", "is not a JSON array of block ids")
        stats = self.json_ok("--db", p, "stats")[0]
        self.assertEqual(stats["registered"], 0)
        self.assertEqual(self.json_ok("--db", p, "blocks"), [])
        self.assertEqual(len(self.json_ok("--db", p, "blocks", "--state", "free")), 100)
        self.json_ok("--db", p, "top")
        # The library agrees: nothing is restored.
        self.ok("--db", p, "replay", self.trace, "--capacity", "200", "--policy", "lru")
        with sqlite3.connect(p) as c:
            self.assertEqual(c.execute("SELECT restored_blocks FROM tiers").fetchone()[0], 0)

    def test_reclaim_after_last_commit(self):
        p = self.damaged("future.db", "INSERT INTO reclaims (tier_id, seq, blocks)"
                                      " SELECT 1, write_seq + 5, '[1]' FROM tiers;")
        self.finding(p, "reclaims", "after the tier's last commit")

    def test_reclaim_rows_of_an_unknown_tier_are_a_warning(self):
        p = self.damaged("rtier.db", "INSERT INTO reclaims (tier_id, seq, blocks)"
                                     " VALUES (9, 1, '[1]');")
        out = self.json_ok("--db", p, "verify")
        self.assertTrue(out["ok"])
        self.assertIn(("reclaim tiers", "warning", "1 reclaim rows of tier id 9, which has no"
                       " tiers row"), [(f["check"], f["severity"], f["detail"])
                                       for f in out["findings"]])

    def test_lineage_positions(self):
        (_, _), (cb, _) = self.chain(length=2)
        p = self.damaged("pos.db", "UPDATE block_rows SET position = position + 5 WHERE id = ?",
                         TIER1 | cb)
        self.finding(p, "lineage", f"block {cb} at position")

    def test_missing_parent_is_a_warning(self):
        (pb, _), (cb, _) = self.chain(length=2)
        p = self.damaged("orphan.db", "DELETE FROM block_rows WHERE id = ?", TIER1 | pb)
        out = self.json_ok("--db", p, "verify")
        self.assertTrue(out["ok"])
        self.assertTrue(any(f["check"] == "parents present" and f["severity"] == "warning"
                            for f in out["findings"]))

    def test_many_problems_are_counted_not_all_printed(self):
        p = self.damaged("many.db", "UPDATE block_rows SET wseq = -1;")
        r = self.fails(3, "200 problems", "--db", p, "verify")
        self.assertIn("problem: rows: ... and 180 more", r.stdout)
        out = json.loads(run("--db", p, "verify", "--json").stdout)
        self.assertEqual(out["problems"], 200)
        self.assertEqual(len([f for f in out["findings"] if f["check"] == "rows"]), 21)
        self.assertEqual(out["findings"][-1]["detail"], "... and 180 more")

    def test_corrupt_pages(self):
        p = self.copy_fixture("pages.db")
        self.ok("--db", p, "checkpoint")
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.seek(size // 2)
            f.write(b"\xff" * 4096)
        r = run("--db", p, "verify")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("problem: integrity: ", r.stdout)
        self.assertIn("problem", r.stderr.splitlines()[-1])
        out = json.loads(run("--db", p, "verify", "--json").stdout)
        self.assertFalse(out["ok"])
        self.assertGreater(out["problems"], 0)

    def test_exit_codes_tell_problems_from_errors(self):
        """0 clean (warnings allowed), 3 problems, 1 cannot check, 2 usage."""
        self.ok("--db", self.db, "verify")
        p = self.damaged("codes.db", "UPDATE tiers SET block_size = 12;")
        self.fails(3, "1 problem in", "--db", p, "verify")
        self.fails(1, "", "--db", self.path("nosuch.db"), "verify")
        junk = self.path("junk-verify.db")
        with open(junk, "wb") as f:
            f.write(b"x" * 4096)
        self.fails(1, "not a kvbm catalog", "--db", junk, "verify")
        self.fails(2, "unknown option", "--db", self.db, "verify", "--bogus")
        self.assertIn("3 problems found", self.ok("verify", "--help").stdout)
        self.assertIn("3 verify found problems", self.ok("--help").stdout)


class Admin(CliCase):
    def test_init_then_library_opens_it(self):
        p = self.path("init.db")
        self.ok("--db", p, "init", "--block-count", "64", "--block-size", "16", "--tier", "gpu")
        info = self.json_ok("--db", p, "info")
        self.assertEqual((info[0]["tier"], info[0]["block_count"]), ("gpu", 64))
        self.fails(1, "", "--db", p, "init", "--block-count", "64", "--tier", "gpu")
        self.fails(2, "", "--db", self.path("x.db"), "init")
        self.ok("--db", p, "verify")

    def test_migrate_from_version_2(self):
        p = self.v2_file("v2.db")
        with sqlite3.connect(p) as c:
            before = c.execute("SELECT seq_hash, block_id FROM blocks WHERE state = 1"
                               " AND tier = 'G1' ORDER BY evict_key, block_id").fetchall()
        out = self.ok("--db", p, "migrate", "--dry-run").stdout
        self.assertIn("from schema version 2 to 4", out)
        with sqlite3.connect(p) as c:
            self.assertEqual(c.execute("PRAGMA user_version").fetchone()[0], 2)
        self.ok("--db", p, "migrate")
        with sqlite3.connect(p) as c:
            self.assertEqual(c.execute("PRAGMA user_version").fetchone()[0], 4)
            after = c.execute("SELECT seq_hash, block_id FROM blocks WHERE tier = 'G1'"
                              " ORDER BY evict_key, block_id").fetchall()
        self.assertEqual(after, before)
        rows = self.json_ok("--db", p, "blocks", "--tier", "G1", "--order", "evict",
                            "--limit", "1000")
        self.assertEqual([(r["hash"], r["block_id"]) for r in rows],
                         [(hexhash(h), b) for h, b in before])
        self.assertIn("nothing to do", self.ok("--db", p, "migrate").stdout)
        self.ok("--db", p, "verify")
        # Two tiers: id order is (tier, block_id), for free blocks too.
        every = [(r["tier"], r["block_id"]) for r in
                 self.json_ok("--db", p, "blocks", "--limit", "1000")]
        self.assertEqual(every, sorted(every))
        self.assertEqual(len(every), 59 + 43)
        free = [(r["tier"], r["block_id"]) for r in
                self.json_ok("--db", p, "blocks", "--state", "free")]
        self.assertEqual(free, sorted(free))
        self.assertEqual(len(free), 5 + 5)
        self.assertFalse(set(free) & set(every))
        self.assertEqual([t["free"] for t in self.json_ok("--db", p, "stats")], [5, 5])

    def test_init_on_an_older_file_migrates_it(self):
        p = self.v2_file("v2-init.db")
        self.ok("--db", p, "init", "--block-count", "32", "--tier", "G3")
        self.assertEqual([t["tier"] for t in self.json_ok("--db", p, "info")],
                         ["G1", "G2", "G3"])
        self.ok("--db", p, "verify")

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

    def test_policy_defaults_to_the_library_default(self):
        """Without --policy, replay runs what kvbm_config_init picks, adaptive."""
        r = json.loads(self.ok("replay", self.trace, "--capacity", "100", "--json").stdout)
        self.assertEqual(r["policy"], "adaptive")
        adaptive = json.loads(self.ok("replay", self.trace, "--capacity", "100", "--policy",
                                      "adaptive", "--json").stdout)
        self.assertEqual(r, {**adaptive, "seconds": r["seconds"],
                             "ns_per_ref": r["ns_per_ref"],
                             "blocks_per_second": r["blocks_per_second"]})
        fifo = json.loads(self.ok("replay", self.trace, "--capacity", "100", "--policy",
                                  "fifo", "--json").stdout)
        self.assertEqual(fifo["policy"], "fifo")
        self.assertIn("adaptive when not given", self.fails(2, "not 'nosuch'", "replay",
                                                            self.trace, "--capacity", "9",
                                                            "--policy", "nosuch").stderr)

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

    def test_restart_past_the_end_names_the_request_count(self):
        t = self.path("blanks.jsonl")
        with open(self.trace) as src, open(t, "w") as dst:
            for line in src:
                dst.write(line + "\n")  # blank lines are not requests
        for at in ("160", "500"):
            self.fails(2, f"--restart-at {at} is past the end of {t}: it has 160 requests"
                       " (restart points 1..159)", "--db", self.path("past.db"), "replay", t,
                       "--capacity", "100", "--restart-at", at)
        self.assertFalse(os.path.exists(self.path("past.db")))
        r = json.loads(self.ok("--db", self.path("last.db"), "replay", t, "--capacity", "100",
                               "--restart-at", "159", "--json").stdout)
        self.assertEqual((r["requests"], r["restart_at"]), (160, 159))

    def tiers(self, *args):
        return json.loads(self.ok("replay", self.trace, "--json", *args).stdout)

    def test_one_tier_is_the_plain_replay(self):
        one = self.tiers("--tiers", "100", "--policy", "lru")
        plain = self.replay()
        self.assertEqual(one["hits"], plain["hits"])
        self.assertEqual(one["tiers"][0]["evictions"], plain["evictions"])
        self.assertEqual(one["onboarded"], 0)

    def test_tiers_count_hits_per_tier_within_the_bounds(self):
        """G1 alone is a 60-block LRU; the hierarchy holds at most 60 + 140
        blocks, so it hits at least what G1 alone does and at most what
        Belady's optimum does at 200 blocks; every lower-tier hit is a block
        onboarded into G1."""
        r = self.tiers("--tiers", "60,140", "--policy", "lru")
        g1 = json.loads(self.ok("replay", self.trace, "--capacity", "60", "--policy", "lru",
                                "--json").stdout)
        opt = json.loads(self.ok("replay", self.trace, "--capacity", "200", "--opt",
                                 "--json").stdout)
        g1_hits, g2_hits = r["tiers"][0]["hits"], r["tiers"][1]["hits"]
        self.assertEqual(r["hits"], g1_hits + g2_hits)
        self.assertEqual(r["onboarded"], g2_hits)
        self.assertGreater(g2_hits, 0)
        self.assertGreaterEqual(r["hits"], g1["hits"])
        self.assertLessEqual(r["hit_rate"], opt["opt_hit_rate"])
        self.assertGreater(r["tiers"][0]["offloaded"], 0)
        self.assertEqual([t["policy"] for t in r["tiers"]], ["lru", "lru"])
        default = self.tiers("--tiers", "60,140")
        self.assertEqual([t["policy"] for t in default["tiers"]], ["adaptive", "adaptive"])
        mixed = self.tiers("--tiers", "60,140", "--policy", "lru,2q")
        self.assertEqual([t["policy"] for t in mixed["tiers"]], ["lru", "2q"])

    def test_tiers_usage_errors(self):
        self.fails(2, "--tiers replaces --capacity", "replay", self.trace, "--tiers", "10,20",
                   "--capacity", "10")
        self.fails(2, "'x' is not a positive number", "replay", self.trace, "--tiers", "10,x")
        self.fails(2, "one per tier (2)", "replay", self.trace, "--tiers", "10,20",
                   "--policy", "lru,lru,lru")
        self.fails(1, "at least as many as the one above", "replay", self.trace, "--tiers",
                   "20,10")

    def test_tiers_restart_g2_warm_g1_cold(self):
        """With one catalog file for both tiers, a crash brings G2 back from
        its rows and G1 (volatile) back empty; info and stats count the
        hashes both tiers hold, as the blocks view says."""
        db = self.path("tiers.db")
        self.fails(2, "--restart-at needs --db", "replay", self.trace, "--tiers", "60,140",
                   "--restart-at", "100")
        r = json.loads(self.ok("--db", db, "replay", self.trace, "--json", "--tiers", "60,140",
                               "--restart-at", "100").stdout)
        self.assertEqual(r["restart_at"], 100)
        self.assertEqual(r["tiers"][0]["restored"], 0)
        self.assertGreater(r["tiers"][1]["restored"], 0)
        self.assertGreater(r["after_restart_hits"], 0)
        info = {t["tier"]: t for t in self.json_ok("--db", db, "info")}
        self.assertEqual(set(info), {"G1", "G2"})
        with sqlite3.connect(db) as c:
            live = c.execute("SELECT tier, seq_hash FROM blocks WHERE seq_hash IS NOT NULL"
                             ).fetchall()
        by_hash = {}
        for tier, h in live:
            by_hash.setdefault(h, set()).add(tier)
        for tier in ("G1", "G2"):
            mine = [h for t, h in live if t == tier]
            self.assertEqual(info[tier]["registered_blocks"], len(mine))
            self.assertEqual(info[tier]["in_other_tiers"],
                             sum(1 for h in mine if len(by_hash[h]) > 1))
        self.assertGreater(info["G1"]["in_other_tiers"], 0)
        stats = {t["tier"]: t for t in self.json_ok("--db", db, "stats")}
        self.assertEqual(stats["G2"]["in_other_tiers"], info["G2"]["in_other_tiers"])

    def test_sigkill_reports_the_childs_own_error(self):
        """The child replaying the first part fails: its message, not only
        that it failed, reaches stderr, as an in-process restart's does."""
        p = self.path("bs32.db")
        self.ok("--db", p, "init", "--block-count", "100", "--block-size", "32")
        args = ("--db", p, "replay", self.trace, "--capacity", "100", "--restart-at", "80")
        want = "block_size 16 does not match catalog block_size 32"
        r = self.fails(1, want, *args, "--sigkill")
        self.assertIn("in the child", r.stderr)
        self.fails(1, want, *args)

    def test_json_counts_mean_the_same_with_sigkill(self):
        """requests, block_refs and hits count the whole trace with and
        without --sigkill: the part before the restart (the child's, with
        --sigkill) plus the part after it. A cache that never evicts makes
        the first part's hits exact: a plain replay of those requests."""
        with open(self.trace) as f:
            lines = f.readlines()
        first = self.path("first80.jsonl")
        with open(first, "w") as f:
            f.writelines(lines[:80])
        before = json.loads(self.ok("--db", self.path("f80.db"), "replay", first,
                                    "--capacity", "2000", "--json").stdout)
        refs = sum(len(json.loads(l)["hash_ids"]) for l in lines)
        for kill in ((), ("--sigkill",)):
            r = json.loads(self.ok("--db", self.path("k%d.db" % len(kill)), "replay",
                                   self.trace, "--capacity", "2000", "--restart-at", "80",
                                   "--json", *kill).stdout)
            self.assertEqual((r["requests"], r["block_refs"], r["sigkill"]),
                             (160, refs, bool(kill)))
            self.assertEqual(r["hits"], before["hits"] + r["after_restart_hits"], kill)
            self.assertAlmostEqual(r["hit_rate"], r["hits"] / refs, places=5)
            self.assertEqual(r["after_restart_refs"], refs - before["block_refs"])

    def test_piped_output_has_no_progress_bar(self):
        r = self.ok("replay", self.trace, "--capacity", "100", "--policy", "fifo")
        self.assertNotIn("\r", r.stdout + r.stderr)
        self.assertIn("hit", r.stdout)

    def test_demo_on_a_given_trace(self):
        r = self.ok("--db", self.path("demo.db"), "demo", self.trace, "--capacity", "100")
        self.assertIn("warm", r.stdout)
        self.assertIn("cold", r.stdout)
        self.assertIn("adaptive eviction", r.stdout)  # the library's default
        r = self.ok("--db", self.path("demo-lru.db"), "demo", self.trace, "--capacity", "100",
                    "--policy", "lru")
        self.assertIn("lru eviction", r.stdout)


if __name__ == "__main__":
    BIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
