#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The consumer decode matrix: what real KV routers index from kvbm's bytes.

Usage: run_matrix.py CONSUMER ZMQ_CAPTURE BUILD_DIR
  CONSUMER: vllm | dynamo | llmd-router | llmd-kvcache

For each wire configuration the consumer reads, runs tests/tools/zmq_capture
twice over one catalog: "live" (fresh, deduplicated, hash-only, LoRA and
evicted blocks on G1/GPU, G2/CPU and G3/DISK), SIGKILLed once its catalog
is flushed, then "restart" (the catalog's blocks come back; one fresh block
with tokens). Every capture (live SUB stream and replay from seq 0, per
phase) is decoded by the consumer's decoder:
  vllm          tests/decoders/vllm_layout.py (python3-msgpack, msgspec layout)
  dynamo        tests/decoders/dynamo (serde + rmp-serde, cargo --offline)
  llmd-router   tests/decoders/llmd (vmihailenco/msgpack v5), map-aware
  llmd-kvcache  the same, array events only, no replay client
and the index it ends with must be exactly what kvbm holds at the end of
the phase (read back from kvbm by zmq_capture, not from the events): the
blocks, the tokens each was indexed from, the tier each landed in.
Exits 77 (skip) when the consumer's toolchain is missing.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SKIP = 77
DYNAMO_TIER = {"GPU": "device", "CPU": "host_pinned", "DISK": "disk", "EXTERNAL": "external"}


def fail(what):
    print("FAIL:", what, file=sys.stderr)
    sys.exit(1)


def skip(why):
    print("SKIP:", why)
    sys.exit(SKIP)


# ---- decoders ----

def read_capture(path):
    data = open(path, "rb").read()
    pos, msgs = 0, []
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "little")
        pos += 4
        frames = []
        for _ in range(n):
            length = int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
            frames.append(data[pos:pos + length])
            pos += length
        msgs.append(frames)
    return msgs


def vllm_decode(path, form):
    """vLLM's own view: every STORED hash per medium, with its tokens."""
    try:
        import vllm_layout
    except ImportError:
        skip("python3-msgpack is not installed")
    index, batches = {}, 0
    for frames in read_capture(path):
        payload = frames[-1]
        if not payload:
            continue  # replay end marker
        try:
            _, events, dp, forms = vllm_layout.decode_batch(payload)
        except vllm_layout.LayoutError as e:
            return {"batches": batches, "errors": 1, "first_error": str(e), "entries": []}
        if not forms <= {form}:
            fail(f"asked for {form} events, got {forms}")
        if dp != 0:
            fail(f"data_parallel_rank {dp}")
        batches += 1
        for e in events:
            if e["type"] == "AllBlocksCleared":
                index.clear()
            elif e["type"] == "BlockRemoved":
                for h in e["block_hashes"]:
                    index.pop((e["medium"], h), None)
            else:
                bs, toks = e["block_size"], e["token_ids"]
                if toks and len(toks) != bs * len(e["block_hashes"]):
                    fail(f"token_ids of {len(toks)} for {len(e['block_hashes'])} blocks")
                extra = e.get("extra_keys") or [None] * len(e["block_hashes"])
                if len(extra) != len(e["block_hashes"]):
                    fail(f"extra_keys for {len(extra)} of {len(e['block_hashes'])} blocks")
                for i, h in enumerate(e["block_hashes"]):
                    index[(e["medium"], h)] = (toks[i * bs:(i + 1) * bs] if toks else None,
                                               extra[i])
    entries = [{"tier": t, "hash": h, "tokens": v[0], "extra": v[1]} for (t, h), v in index.items()]
    return {"batches": batches, "errors": 0, "first_error": "", "entries": entries}


def build_go(build_dir, name):
    go = shutil.which("go")
    gopath = "/usr/share/gocode"
    if not go or not os.path.isdir(os.path.join(gopath, "src/github.com/vmihailenco/msgpack/v5")):
        skip("go or golang-github-vmihailenco-msgpack.v5-dev is not installed")
    out = os.path.join(build_dir, name)  # one per test: they may build at once
    env = dict(os.environ, GO111MODULE="off", GOPATH=gopath, GOFLAGS="",
               GOCACHE=os.path.join(build_dir, "go-cache"))
    subprocess.run([go, "build", "-o", out, os.path.join(HERE, "llmd", "main.go")],
                   env=env, check=True)
    return out


def build_rust(build_dir):
    cargo = "/usr/bin/cargo" if os.path.exists("/usr/bin/cargo") else shutil.which("cargo")
    registry = "/usr/share/cargo/registry"
    crates = os.listdir(registry) if os.path.isdir(registry) else []
    if not cargo or not all(any(d.startswith(c + "-") for d in crates)
                            for c in ("rmp-serde", "serde", "serde_derive")):
        skip("cargo, librust-rmp-serde-dev or librust-serde-derive-dev is not installed")
    # A copy in the build dir: Cargo.lock and target/ stay out of the tree,
    # and the Debian registry replaces crates.io for this crate only.
    crate = os.path.join(build_dir, "dynamo_decode")
    os.makedirs(os.path.join(crate, "src"), exist_ok=True)
    os.makedirs(os.path.join(crate, ".cargo"), exist_ok=True)
    for f in ("Cargo.toml", os.path.join("src", "main.rs")):
        shutil.copyfile(os.path.join(HERE, "dynamo", f), os.path.join(crate, f))
    with open(os.path.join(crate, ".cargo", "config.toml"), "w") as f:
        f.write('[source.crates-io]\nreplace-with = "debian"\n'
                f'[source.debian]\ndirectory = "{registry}"\n')
    env = dict(os.environ, CARGO_HOME=os.path.join(build_dir, "cargo-home"))
    subprocess.run([cargo, "build", "--offline", "-q", "-j2"], cwd=crate, env=env, check=True)
    return os.path.join(crate, "target", "debug", "dynamo_decode")


def run_json(cmd):
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(res.stdout)


# ---- expectations: kvbm's own registry at the end of a phase ----

def expected(consumer, expect):
    tiers = expect["tiers"]
    with_tokens = {h["hash"]: h["tokens"] for t in tiers.values() for h in t if h["tokens"]}
    out = set()
    for medium, blocks in tiers.items():
        for b in blocks:
            toks = b["tokens"]
            if consumer == "vllm":
                out.add((medium, b["hash"], tuple(toks) if toks else None))
            elif consumer == "dynamo":
                if toks:  # Dynamo publishes only blocks it can hash from tokens
                    out.add((DYNAMO_TIER[medium], b["hash"], tuple(toks)))
            else:
                # llm-d: request keys from tokens; a block stored by hash only
                # adds its tier to a request key known from another tier.
                known = toks or with_tokens.get(b["hash"])
                if known:
                    out.add((medium.lower(), b["hash"], tuple(known)))
    return out


def got_set(result):
    return {(e["tier"], e["hash"], tuple(e["tokens"]) if e["tokens"] else None)
            for e in result["entries"]}


# ---- the workload ----

def run_phase(capture, d, phase, form, framing):
    proc = subprocess.Popen([capture, d, phase, form, framing], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if phase == "live":
        if line != "ready":
            proc.kill()
            fail(f"live phase said {line!r}")
        proc.send_signal(signal.SIGKILL)  # no kvbm_close, no final events
        proc.wait()
    else:
        proc.stdin.close()
        if proc.wait() != 0 or line != "done":
            fail(f"restart phase exit {proc.returncode}, said {line!r}")
    return json.load(open(os.path.join(d, phase + ".expect.json")))


CONFIGS = {
    "vllm": [("map", "topic"), ("array", "legacy")],
    "dynamo": [("map", "topic"), ("array", "legacy")],
    "llmd-router": [("map", "topic"), ("array", "topic")],
    "llmd-kvcache": [("array", "topic")],
}


def main():
    consumer, capture, build_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    if consumer == "dynamo":
        exe = build_rust(build_dir)
    elif consumer.startswith("llmd"):
        exe = build_go(build_dir, "decode-" + consumer)
    else:
        exe = None

    def decode(path, form, framing, kind):
        if consumer == "vllm":
            return vllm_decode(path, form)
        if consumer == "dynamo":
            return run_json([exe, "4", path])
        mode = "router" if consumer == "llmd-router" else "kvcache"
        return run_json([exe, mode, kind, path])

    for form, framing in CONFIGS[consumer]:
        d = tempfile.mkdtemp(prefix="kvbm-matrix-")
        try:
            for phase in ("live", "restart"):
                expect = run_phase(capture, d, phase, form, framing)
                want = expected(consumer, expect)
                kinds = ["live"] if consumer == "llmd-kvcache" else ["live", "replay"]
                for kind in kinds:
                    res = decode(os.path.join(d, f"{phase}.{kind}.bin"), form, framing, kind)
                    cell = f"{consumer} {form}/{framing} {phase} {kind}"
                    if res["errors"] or res.get("replay_error"):
                        fail(f"{cell}: {res['first_error'] or res['replay_error']}")
                    if res.get("orphans"):
                        fail(f"{cell}: {res['orphans']} stored events before their parent")
                    got = got_set(res)
                    want_extra = {(m, b["hash"]): b.get("extra") for m, bl in expect["tiers"].items()
                                  for b in bl if b.get("extra")}
                    if consumer == "vllm":
                        got_extra = {(e["tier"], e["hash"]): e["extra"] for e in res["entries"]
                                     if e["extra"]}
                        if got_extra != want_extra:
                            fail(f"{cell}: extra_keys {got_extra}, kvbm staged {want_extra}")
                    if consumer == "dynamo" and want_extra and not res["extra_key_blocks"]:
                        fail(f"{cell}: Dynamo parsed no extra_keys")
                    if got != want:
                        fail(f"{cell}: index differs from kvbm\n  missing {sorted(want - got)}"
                             f"\n  extra {sorted(got - want)}")
                    tiers = sorted({t for t, _, _ in got})
                    print(f"{cell}: {res['batches']} batches, {len(got)} blocks indexed "
                          f"({', '.join(tiers) or 'none'})")
            # The option matters: what the consumer does with the other one.
            if consumer == "llmd-router" and framing == "topic":
                run_phase(capture, d, "restart", form, "legacy")
                res = decode(os.path.join(d, "restart.replay.bin"), form, "legacy", "replay")
                if "malformed replay frame" not in res.get("replay_error", ""):
                    fail(f"llm-d-router took a legacy replay: {res}")
                print(f"{consumer} {form}/legacy replay: rejected ({res['replay_error']})")
            if consumer == "llmd-kvcache":
                run_phase(capture, d, "restart", "map", framing)
                res = decode(os.path.join(d, "restart.live.bin"), "map", framing, "live")
                if not res["errors"] or res["entries"]:
                    fail(f"llm-d-kv-cache indexed map events: {res}")
                print(f"{consumer} map/{framing}: rejected ({res['first_error'][:60]})")
        finally:
            shutil.rmtree(d, ignore_errors=True)


main()
