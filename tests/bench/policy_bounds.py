#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""How much of the LRU-to-Belady gap an online eviction policy can close.

Usage: policy_bounds.py [TRACE.jsonl]   (default: the shared Mooncake trace)

A model of `kvbm-catalog replay` in plain Python: requests in order; the
longest cached prefix is hit and held; the missing blocks are allocated
(free blocks first, then evictions from the inactive pool) and registered,
a hash already cached after the first miss joins the request instead of a
new block; then every block of the request is released, tail first. Its
LRU equals the C replay exactly, which is what makes the figures below
comparable with bench_policies.

Besides LRU, 2Q (as src/evict/evict_two_queue.c, ghost span counted in
evictions) and Belady's MIN (as cli/belady.c), it runs two policies that
ask what better online information would be worth:

  2q-length     2Q whose probation is ordered by a reuse rate learned online
                per class of new block (log2 of its request's length, last
                block or not): the best feature an online policy has here;
  hazard-oracle every block ranked by the hazard of reuse of its class
                (new: length class and last block; reused: use count) at its
                age, evicting the lowest; the tables are computed from the
                trace's own future (a first replay records how every life
                of a block ended), statistics an online learner of this
                form can only approach. Not a proof of optimality: a
                measure of what these features are worth.
"""
import heapq
import json
import os
import sys
from collections import OrderedDict

CAPACITIES = (2000, 8000, 32000)
GHOST_PER_BLOCK = 4


def load(path):
    with open(path) as f:
        return [json.loads(line)["hash_ids"] for line in f if line.strip()]


def replay(trace, capacity, policy):
    """Hit percentage of policy under the replay model."""
    cached, in_pool = set(), set()
    free, hits, refs = capacity, 0, 0
    for i, req in enumerate(trace):
        n = len(req)
        refs += n
        if n > capacity:
            continue  # unservable, as in the C replay
        k = 0
        while k < n and req[k] in cached:
            k += 1
        for h in req[:k]:
            policy.remove(h)
            in_pool.discard(h)
        hits += k
        take = min(free, n - k)
        free -= take
        for _ in range(n - k - take):
            v = policy.evict()
            cached.discard(v)
            in_pool.discard(v)
        new = set()
        for h in req[k:]:
            if h in cached:  # deduplicated into the cached block
                if h in in_pool:
                    policy.remove(h)
                    in_pool.discard(h)
                free += 1
            else:
                cached.add(h)
                new.add(h)
        for j in range(n - 1, -1, -1):
            h = req[j]
            if h not in in_pool:
                policy.insert(h, i, j, n, h in new)
                in_pool.add(h)
    return 100.0 * hits / refs


def belady(trace, capacity):
    """MIN, never evicting a block of the request being served."""
    flat = [h for req in trace for h in req]
    nxt, last = [0] * len(flat), {}
    for t in range(len(flat) - 1, -1, -1):
        nxt[t] = last.get(flat[t], float("inf"))
        last[flat[t]] = t
    key, heap, hits, refs, t0 = {}, [], 0, 0, 0
    for r, req in enumerate(trace):
        n = len(req)
        refs += n
        t0 += n
        if n > capacity:
            continue
        k = 0
        while k < n and req[k] in key:
            k += 1
        hits += k
        for j, h in enumerate(req):
            key[h] = nxt[t0 - n + j]
            heapq.heappush(heap, (-key[h], h))
        held, stash = set(req), []
        while len(key) > capacity:
            negk, h = heapq.heappop(heap)
            if key.get(h) != -negk:
                continue  # stale
            if h in held:
                stash.append((negk, h))
                continue
            del key[h]
        for e in stash:
            heapq.heappush(heap, e)
    return 100.0 * hits / refs


class Ghost:
    """The last `span` evicted hashes, expired by eviction count (as C)."""

    def __init__(self, span):
        self.added, self.span, self.count = {}, span, 0

    def add(self, h, value=True):
        self.added[h] = (self.count, value)
        self.count += 1

    def take(self, h):
        e = self.added.pop(h, None)
        return e[1] if e and self.count - 1 - e[0] < self.span else None


class LRU:
    def __init__(self, capacity):
        self.q = OrderedDict()

    def insert(self, h, req, pos, n, new):
        self.q[h] = True

    def remove(self, h):
        del self.q[h]

    def evict(self):
        return self.q.popitem(last=False)[0]


def length_class(pos, n):
    return (n.bit_length(), pos == n - 1)


class TwoQ:
    """Probation for new blocks, protected for reused ones and ghost hits."""

    def __init__(self, capacity):
        self.ghost = Ghost(GHOST_PER_BLOCK * capacity)
        self.probation, self.protected = OrderedDict(), OrderedDict()
        self.where = {}

    def queue_for(self, h, pos, n, new):
        return self.protected if not new or self.ghost.take(h) else self.probation

    def insert(self, h, req, pos, n, new):
        q = self.queue_for(h, pos, n, new)
        q[h] = True
        self.where[h] = q

    def remove(self, h):
        del self.where.pop(h)[h]

    def victim_queue(self):
        return self.probation if self.probation else self.protected

    def ghost_tag(self, h):
        return True

    def evict(self):
        q = self.victim_queue()
        h = q.popitem(last=False)[0]
        del self.where[h]
        self.ghost.add(h, self.ghost_tag(h))
        return h


class TwoQLength(TwoQ):
    """Probation split by length class, evicting from the class with the
    lowest reuse rate seen so far (hits and ghost hits per insertion)."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.classes, self.inserted, self.reused, self.cls = {}, {}, {}, {}

    def rate(self, c):
        return (self.reused.get(c, 0) + 1) / (self.inserted.get(c, 0) + 2)

    def credit(self, c):
        if c is not None:
            self.reused[c] = self.reused.get(c, 0) + 1

    def queue_for(self, h, pos, n, new):
        if new:
            ghost = self.ghost.take(h)
            if ghost:
                self.credit(ghost)
                return self.protected
            c = length_class(pos, n)
            self.inserted[c] = self.inserted.get(c, 0) + 1
            self.cls[h] = c
            return self.classes.setdefault(c, OrderedDict())
        return self.protected

    def remove(self, h):
        self.credit(self.cls.pop(h, None))
        super().remove(h)

    def victim_queue(self):
        live = [(self.rate(c), c) for c, q in self.classes.items() if q]
        return self.classes[min(live)[1]] if live else self.protected

    def ghost_tag(self, h):
        return self.cls.pop(h, True)  # its class, credited if it returns


class Hazard:
    """Evict the block whose class has the lowest hazard of reuse at its
    age (the oldest block of each class is its candidate). With record
    set, it learns every life's outcome instead; tables() turns those
    into the hazard per class and age bucket."""

    BUCKETS = 32

    def __init__(self, capacity, table=None):
        self.width = max(1, capacity // 4)  # age bucket, in releases
        self.now, self.table = 0, table
        self.classes, self.meta, self.uses = {}, {}, {}
        self.past = {}  # evicted block -> (class, release tick, uses)
        self.hits, self.ends = {}, {}

    def bucket(self, age):
        return min(age // self.width, self.BUCKETS - 1)

    def klass(self, uses, pos, n):
        if uses >= 2:
            return ("reused", min(uses, 4) if uses < 8 else 8)
        return ("new",) + length_class(pos, n)

    def count(self, d, c, age):
        d.setdefault(c, [0] * self.BUCKETS)[self.bucket(age)] += 1

    def insert(self, h, req, pos, n, new):
        self.now += 1
        uses = self.uses.pop(h, 0) + 1
        if new and h in self.past:
            c, t, u = self.past.pop(h)
            self.count(self.hits, c, self.now - t)
            uses = u + 1
        c = self.klass(uses, pos, n)
        self.meta[h] = (c, self.now, uses)
        self.classes.setdefault(c, OrderedDict())[h] = True

    def remove(self, h):
        c, t, u = self.meta.pop(h)
        del self.classes[c][h]
        self.count(self.hits, c, self.now - t)
        self.uses[h] = u

    def evict(self):
        best = None
        for c, q in self.classes.items():
            if q:
                h = next(iter(q))
                age = self.now - self.meta[h][1]
                hz = self.table[c][self.bucket(age)] if self.table and c in self.table else 0.0
                if best is None or (hz, -age) < best[0]:
                    best = ((hz, -age), c, h)
        _, c, h = best
        del self.classes[c][h]
        self.past[h] = self.meta.pop(h)
        return h

    def tables(self):
        for c, t, _ in list(self.past.values()) + list(self.meta.values()):
            self.ends.setdefault(c, [0] * self.BUCKETS)[-1] += 1  # never reused
        out = {}
        for c in set(self.hits) | set(self.ends):
            hits = self.hits.get(c, [0] * self.BUCKETS)
            ends = self.ends.get(c, [0] * self.BUCKETS)
            at_risk, hz = 0, [0.0] * self.BUCKETS
            for b in range(self.BUCKETS - 1, -1, -1):
                at_risk += hits[b] + ends[b]
                hz[b] = hits[b] / at_risk if at_risk else 0.0
            out[c] = hz
        return out


def hazard_oracle(trace, capacity):
    learner = Hazard(capacity)  # a first pass records every life's outcome
    replay(trace, capacity, learner)
    return replay(trace, capacity, Hazard(capacity, learner.tables()))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "data", "traces", "mooncake_synthetic_trace.jsonl")
    trace = load(path)
    runs = {
        "lru": lambda c: replay(trace, c, LRU(c)),
        "2q": lambda c: replay(trace, c, TwoQ(c)),
        "2q-length": lambda c: replay(trace, c, TwoQLength(c)),
        "hazard-oracle": lambda c: hazard_oracle(trace, c),
        "belady": lambda c: belady(trace, c),
    }
    rows = {name: [run(c) for c in CAPACITIES] for name, run in runs.items()}
    print(f"{len(trace)} requests, {sum(map(len, trace))} block references")
    print(f"{'policy':<14}" + "".join(f"{c:>9}" for c in CAPACITIES) +
          "".join(f"{'gap@' + str(c):>11}" for c in CAPACITIES))
    for name, hits in rows.items():
        gaps = [(h - lo) / (hi - lo) if hi > lo else 0.0
                for h, lo, hi in zip(hits, rows["lru"], rows["belady"])]
        print(f"{name:<14}" + "".join(f"{h:>8.2f}%" for h in hits) +
              "".join(f"{100 * g:>10.1f}%" for g in gaps))


if __name__ == "__main__":
    main()
