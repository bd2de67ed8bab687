#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Decode what kvbm's ZeroMQ publisher sends as vLLM's consumers read it.

Usage: zmq_check.py ZMQ_PUBLISH_PROGRAM map|array topic|legacy
(Debian's python3-zmq, python3-msgpack)

Runs the publisher program (tests/tools/zmq_publish.c) on ipc endpoints in a
temporary directory, fetches every batch through the replay socket exactly
as a vLLM subscriber recovers missed batches (llm-d-router's framing for
"topic": [topic, seq, payload], ended by an empty payload; vLLM < 0.26's
for "legacy": [seq, payload]), then checks live delivery on the PUB socket.
Each payload must pass vLLM's msgspec layout (tests/decoders/vllm_layout.py,
transcribed from vllm/distributed/kv_events.py): the array envelope, events
in the requested form, the fields vLLM always sends and nothing else.
"""
import os
import subprocess
import sys
import tempfile

import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "decoders"))
import vllm_layout  # noqa: E402

END = (-1).to_bytes(8, "big", signed=True)
FORM, FRAMING = sys.argv[2], sys.argv[3]
TOPIC = b"kv@G1"


def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)


def decode(payload):
    try:
        ts, events, dp, forms = vllm_layout.decode_batch(payload)
    except vllm_layout.LayoutError as e:
        check(False, f"vLLM layout: {e}")
    check(isinstance(ts, float) and ts > 1.6e9, "ts is wall-clock seconds")
    check(dp == 3, "data_parallel_rank")
    check(forms <= {FORM}, f"events are {forms}, asked for {FORM}")
    return events


def replay_frames(replay, start):
    """[(seq, payload)] of one replay request, in the configured framing."""
    replay.send_multipart([b"", start.to_bytes(8, "big")])
    got = []
    while True:
        check(replay.poll(20000), "replay answers")
        frames = replay.recv_multipart()
        check(frames[0] == b"", "replay frames start with an empty delimiter")
        frames = frames[1:]
        if FRAMING == "topic":
            check(len(frames) == 3, f"topic framing has 3 frames: {len(frames)}")
            check(frames[0] == TOPIC, f"replay topic {frames[0]!r}")
            frames = frames[1:]
        else:
            check(len(frames) == 2, f"legacy framing has 2 frames: {len(frames)}")
        seq, payload = frames
        if seq == END:
            check(payload == b"", "end marker has an empty payload")
            return got
        got.append((int.from_bytes(seq, "big"), payload))


def main():
    tmp = tempfile.mkdtemp(prefix="kvbm-zmq-")
    pub_ep, replay_ep = f"ipc://{tmp}/pub", f"ipc://{tmp}/replay"
    proc = subprocess.Popen([sys.argv[1], pub_ep, replay_ep, FORM, FRAMING], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().split()
        check(first[:1] == ["published"], f"publisher said {first}")
        batches, hashes = int(first[1]), [int(x) for x in first[2:5]]
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
        # data_parallel_rank 3 moves the endpoints as vLLM does (ipc: _dp3).
        sub.connect(pub_ep + "_dp3")
        replay = ctx.socket(zmq.DEALER)
        replay.connect(replay_ep + "_dp3")

        # Everything so far was published before we subscribed: replay it.
        got = replay_frames(replay, 0)
        check([s for s, _ in got] == list(range(batches)), f"replayed seqs {[s for s, _ in got]}")

        events = [e for _, p in got for e in decode(p)]
        kinds = [e["type"] for e in events]
        # The memory-only manager's CLEARED at close finds nothing of its
        # tier left announced: nothing is sent (never a worker-wide clear).
        check(kinds == ["AllBlocksCleared", "BlockStored", "BlockRemoved"], f"event types {kinds}")
        check(events[0] == {"type": "AllBlocksCleared"}, "cleared has only its tag")
        stored = events[1]
        check(list(stored) == ["type", "block_hashes", "parent_block_hash", "token_ids",
                               "block_size", "lora_id", "medium", "lora_name"],
              f"BlockStored fields {list(stored)} (vLLM's defaults omitted)")
        check(stored["block_hashes"] == hashes, f"stored hashes {stored['block_hashes']} {hashes}")
        check(stored["parent_block_hash"] is None, "root chain has no parent")
        check(stored["token_ids"] == [], "blocks staged by hash carry no tokens")
        check(stored["block_size"] == 4, "block_size")
        check(stored["lora_id"] is None and stored["lora_name"] is None, "lora fields")
        check(stored["medium"] == "GPU", "tier G1 is medium GPU")
        removed = events[2]
        check(list(removed) == ["type", "block_hashes", "medium"], f"BlockRemoved {list(removed)}")
        check(removed["medium"] == "GPU", "removed medium")
        check(removed["block_hashes"] == hashes[::-1], "evicted tail first")

        # Live delivery: ask for batches until one arrives on the SUB socket
        # (a subscription reaches the publisher asynchronously).
        live = None
        for _ in range(50):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            check(proc.stdout.readline().startswith("published"), "publisher answered go")
            if sub.poll(200):
                live = sub.recv_multipart()
                break
        check(live is not None, "a live batch arrives on the PUB socket")
        topic, seq, payload = live
        check(topic == b"kv@G1", f"topic {topic!r}")
        check(len(seq) == 8 and int.from_bytes(seq, "big") >= batches, "live seq continues")
        live_events = decode(payload)
        check([e["type"] for e in live_events] == ["BlockStored", "BlockRemoved"] and
              live_events[0]["block_hashes"] == [777] and live_events[1]["block_hashes"] == [777],
              f"a later manager's CLEARED at open is dropped and at close removes only its "
              f"own blocks, never clears the worker: {live_events}")

        # Two managers publish through the one publisher at once: the
        # replay ring must still hold their batches in seq order.
        proc.stdin.write("go\n")
        proc.stdin.flush()
        start = int(proc.stdout.readline().split()[1])
        proc.stdin.write("race\n")
        proc.stdin.flush()
        line = proc.stdout.readline().split()
        check(line[:1] == ["published"], f"publisher answered race: {line}")
        end = int(line[1])
        # per manager: CLEARED, 100 STORED, 96 REMOVED (4 blocks), CLEARED
        # (sent as nothing at open, as BlockRemoved of the last 4 at close)
        check(end - start == 396, f"one batch per event: {end - start} batches")
        seqs = []
        for s_, payload in replay_frames(replay, start):
            seqs.append(s_)
            check(len(decode(payload)) <= 1, "at most one event per batch")
        check(seqs == list(range(start, end)), f"replayed race seqs in order: {seqs[:20]}...")
        print(f"vLLM KV-events format ok ({FORM} events, {FRAMING} replay): {batches} replayed batches, live seq "
              f"{int.from_bytes(seq, 'big')}, {end - start} concurrent batches in order")
    finally:
        if proc.poll() is None:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            proc.wait(timeout=30)
    check(proc.returncode == 0, f"publisher exit {proc.returncode}")


main()
