#!/usr/bin/env python3
"""Generate a large request trace in the Mooncake JSONL format (hash_ids).

Requests share prefixes the way a fleet of chat and RAG traffic does: each
request picks one of PREFIXES shared prefixes (system prompts and popular
documents) by Zipf(1.0) popularity, reuses its blocks, and appends blocks of
its own. With the defaults (200,000 requests of 20..200 blocks) the trace
has ~22M block references, enough to drive a 1,048,576-block cache through
its fill and far into eviction. Seeded: the same arguments give the same
bytes.

Usage: gen_trace.py OUT.jsonl [--requests N] [--prefixes N] [--seed N]
"""
import argparse
import bisect
import itertools
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--prefixes", type=int, default=20_000)
    ap.add_argument("--min-blocks", type=int, default=20)
    ap.add_argument("--max-blocks", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    # Prefix k has a fixed length and its own ids; ids are chained by
    # position in the replay, so equal leading ids are equal blocks.
    lengths = [rng.randint(a.min_blocks // 2, a.max_blocks // 2) for _ in range(a.prefixes)]
    starts = list(itertools.accumulate([0] + lengths[:-1]))
    next_id = sum(lengths)
    cdf = list(itertools.accumulate(1.0 / (k + 1) for k in range(a.prefixes)))
    with open(a.out, "w", encoding="ascii") as f:
        for r in range(a.requests):
            k = min(bisect.bisect_left(cdf, rng.random() * cdf[-1]), a.prefixes - 1)
            total = rng.randint(max(a.min_blocks, lengths[k] + 1), max(a.max_blocks, lengths[k] + 1))
            own = total - lengths[k]
            ids = list(range(starts[k], starts[k] + lengths[k]))
            ids.extend(range(next_id, next_id + own))
            next_id += own
            f.write('{"timestamp": %d, "input_length": %d, "output_length": 1, "hash_ids": [%s]}\n'
                    % (r, total * 512, ", ".join(map(str, ids))))


if __name__ == "__main__":
    main()
