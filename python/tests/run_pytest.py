#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Run pytest on the kvbm binding as one Meson test.

Usage: run_pytest.py SANITIZE LIBASAN TEST_FILE...

SANITIZE is the build's b_sanitize. An ASan build's extension needs the
ASan runtime loaded before the (uninstrumented) interpreter starts, so the
tests run in a child with LD_PRELOAD; if that cannot work here, or for TSan
(whose runtime cannot be preloaded into python3), exit 77: Meson's skip.
pytest's exit 5 (nothing collected) is a wiring error, reported as failure.
"""
import os
import subprocess
import sys

SKIP = 77


def main():
    sanitize, libasan, tests = sys.argv[1], sys.argv[2], sys.argv[3:]
    env = dict(os.environ)
    if "thread" in sanitize:
        print("skip: the TSan runtime cannot be preloaded into an uninstrumented python3")
        return SKIP
    if "address" in sanitize:
        if not libasan or not os.path.isabs(libasan) or not os.path.exists(libasan):
            print(f"skip: no ASan runtime to preload (compiler said {libasan!r})")
            return SKIP
        env["LD_PRELOAD"] = libasan
        # CPython frees little at exit by design; leaks are valgrind's and
        # the C suites' job. Errors still abort the run.
        env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:abort_on_error=1"
        probe = subprocess.run([sys.executable, "-c", "import kvbm"], env=env,
                               capture_output=True, text=True)
        if probe.returncode != 0:
            print("skip: python3 does not start with the ASan runtime preloaded:")
            print(probe.stderr[-2000:])
            return SKIP
        print(f"ASan runtime preloaded: {libasan}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    print(" ".join(cmd), flush=True)
    rc = subprocess.run(cmd, env=env).returncode
    if rc == 5:
        print("pytest collected no tests: the test list and the files disagree")
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
