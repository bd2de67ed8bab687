#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Check Prometheus text exposition (format 0.0.4) printed by a program.

Usage: prom_check.py PROGRAM [ARGS...]  (runs it, parses its stdout)

Independent of kvbm's renderer: a line-by-line parser of the grammar in
the Prometheus exposition-format documentation. Checks metric and label
names, label-value escapes, float values, one TYPE and HELP per family
placed before its samples, counters named *_total with values >= 0,
histograms as cumulative _bucket{le} series ending at +Inf = _count, and
that the tier label is on every sample. With the argument `--dump TIER`,
also checks that the tier label decodes back to TIER.
"""
import math
import re
import subprocess
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
# Values as Prometheus writes them: a conservative subset of what Go's
# strconv.ParseFloat reads (Python's float() would also take "1_0").
VALUE = r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf|NaN)"


def parse_labels(s, lineno):
    """Parse `a="x",b="y"` with escapes; returns a dict."""
    labels, i = {}, 0
    while i < len(s):
        m = re.match(LABEL, s[i:])
        if not m:
            fail(lineno, f"bad label name at {s[i:]!r}")
        name = m.group(0)
        if name.startswith("__"):
            fail(lineno, f"label name {name} is reserved")
        i += len(name)
        if s[i:i + 2] != '="':
            fail(lineno, "label needs =\"")
        i += 2
        value = []
        while True:
            if i >= len(s):
                fail(lineno, "unterminated label value")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    fail(lineno, f"bad escape \\{nxt}")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                fail(lineno, "raw newline in label value")
            else:
                value.append(c)
                i += 1
        if name in labels:
            fail(lineno, f"label {name} twice")
        labels[name] = "".join(value)
        if i < len(s):
            if s[i] != ",":
                fail(lineno, "labels must be separated by ,")
            i += 1
    return labels


def fail(lineno, msg):
    print(f"line {lineno}: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    out = subprocess.run(sys.argv[1:], capture_output=True, check=True).stdout.decode()
    want_tier = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--dump" else None
    if not out.endswith("\n"):
        fail(0, "output must end with a newline")
    types, helps, sampled = {}, set(), set()
    buckets = {}  # (histogram, tier) -> (last le, last cumulative count)
    samples = 0
    for lineno, line in enumerate(out.split("\n")[:-1], 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            m = re.fullmatch(rf"# (HELP|TYPE) ({NAME}) (.*)", line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    fail(lineno, "malformed HELP/TYPE line")
                continue  # a plain comment
            kind, name, rest = m.groups()
            if name in sampled:
                fail(lineno, f"{kind} for {name} after its samples")
            if kind == "TYPE":
                if name in types:
                    fail(lineno, f"second TYPE for {name}")
                if rest not in TYPES:
                    fail(lineno, f"unknown type {rest!r}")
                types[name] = rest
            else:
                if name in helps:
                    fail(lineno, f"second HELP for {name}")
                if re.search(r"\\(?![\\n])", rest):
                    fail(lineno, "HELP text escapes only backslash and newline")
                helps.add(name)
            continue
        m = re.fullmatch(rf"({NAME})(?:\{{(.*)\}})? (\S+)(?: (-?\d+))?", line)
        if not m:
            fail(lineno, f"malformed sample {line!r}")
        name, labels, value, _ts = m.groups()
        labels = parse_labels(labels or "", lineno)
        if not re.fullmatch(VALUE, value):
            fail(lineno, f"bad value {value!r}")
        v = float(value)
        family = name
        # A histogram family X has samples X_bucket (with le), X_sum, X_count.
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and types.get(base) == "histogram":
                family = base
        if family not in types:
            fail(lineno, f"sample of {name} before (or without) its TYPE")
        if types[family] == "histogram":
            key = (family, labels.get("tier"))
            if name.endswith("_bucket"):
                if "le" not in labels or not re.fullmatch(VALUE, labels["le"].replace("+", "")):
                    fail(lineno, f"{name} needs an le label")
                le = float(labels["le"])
                last_le, last_v = buckets.get(key, (-math.inf, 0))
                if le <= last_le or v < last_v:
                    fail(lineno, f"{name} buckets must grow in le and count (cumulative)")
                buckets[key] = (le, v)
            elif name.endswith("_count"):
                if buckets.get(key, (None, None))[0] != math.inf or buckets[key][1] != v:
                    fail(lineno, f"{name} must follow the +Inf bucket and equal it")
            elif name == family:
                fail(lineno, f"histogram {family} has a bare sample")
        if types[family] == "counter":
            if not name.endswith("_total"):
                fail(lineno, f"counter {name} should end in _total")
            if math.isnan(v) or v < 0:
                fail(lineno, f"counter {name} is {v}")
        if "tier" not in labels:
            fail(lineno, f"{name} has no tier label")
        if want_tier is not None and labels["tier"] != want_tier:
            fail(lineno, f"tier decodes to {labels['tier']!r}, not {want_tier!r}")
        sampled.add(family)
        samples += 1
    missing = set(types) - sampled
    if missing:
        fail(0, f"TYPE without samples: {sorted(missing)}")
    if samples < 20:
        fail(0, f"only {samples} samples")
    print(f"prometheus exposition ok: {samples} samples, {len(types)} families")


main()
