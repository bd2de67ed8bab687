#!/usr/bin/env python3
"""Configure-time guard: every tests/test_*.c is registered in tests/meson.build.

Usage: check_tests.py TESTS_DIR NAME... ; exits 1 naming unregistered files.
"""
import pathlib
import sys

tests_dir = pathlib.Path(sys.argv[1])
registered = set(sys.argv[2:])
on_disk = {p.stem[len("test_"):] for p in tests_dir.glob("test_*.c")}
missing = sorted(on_disk - registered)
stale = sorted(registered - on_disk)
for name in missing:
    print(f"tests/test_{name}.c is not in any test list of tests/meson.build")
for name in stale:
    print(f"tests/meson.build lists '{name}' but tests/test_{name}.c does not exist")
sys.exit(1 if missing or stale else 0)
