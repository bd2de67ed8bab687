/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Belady's MIN under the replay model, the yardstick for eviction
 * policies: when the cache is over capacity, evict the block whose next
 * use lies farthest in the future, never one of the request being served.
 * Hits are counted the way the replay counts them, as the longest cached
 * prefix. A block's next use is never earlier than its parent's (a chained
 * hash only recurs together with its whole prefix), so MIN drops children
 * before their parents and keeps prefixes intact without a special rule.
 * Priority queue: a max-heap of (next use, block) with lazy deletion.
 */
#include <stdlib.h>
#include <string.h>

#include "replay.h"

#define NEVER UINT64_MAX

struct entry {
	uint64_t key;  /* next use: index of the next reference, NEVER if none */
	uint32_t uid;
};

struct heap {
	struct entry *v;
	size_t n, cap;
};

static bool heap_push(struct heap *h, struct entry e)
{
	if (h->n == h->cap) {
		const size_t cap = h->cap ? h->cap * 2 : 1024;
		struct entry *v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return false;
		h->v = v;
		h->cap = cap;
	}
	size_t i = h->n++;
	while (i > 0 && h->v[(i - 1) / 2].key < e.key) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = e;
	return true;
}

static struct entry heap_pop(struct heap *h)
{
	const struct entry top = h->v[0], last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1].key > h->v[c].key)
			c++;
		if (h->v[c].key <= last.key)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n > 0)
		h->v[i] = last;
	return top;
}

/* Dense ids for the trace's hashes. */
static uint32_t *unique_ids(const struct kvbm_trace *t, uint32_t *n_unique)
{
	uint64_t cap = 16;
	uint32_t next = 0;

	while (cap < 2 * t->n_refs)
		cap <<= 1;
	kvbm_hash *keys = malloc(cap * sizeof(*keys));
	uint32_t *vals = malloc(cap * sizeof(*vals));
	uint32_t *uid = malloc((t->n_refs ? t->n_refs : 1) * sizeof(*uid));
	if (!keys || !vals || !uid) {
		free(keys);
		free(vals);
		free(uid);
		return NULL;
	}
	memset(vals, 0xff, cap * sizeof(*vals));
	for (uint64_t i = 0; i < t->n_refs; i++) {
		uint64_t j = (t->hashes[i] * 0x9E3779B97F4A7C15ull) & (cap - 1);
		while (vals[j] != UINT32_MAX && keys[j] != t->hashes[i])
			j = (j + 1) & (cap - 1);
		if (vals[j] == UINT32_MAX) {
			keys[j] = t->hashes[i];
			vals[j] = next++;
		}
		uid[i] = vals[j];
	}
	free(keys);
	free(vals);
	*n_unique = next;
	return uid;
}

uint64_t kvbm_replay_belady(const struct kvbm_trace *t, uint32_t capacity)
{
	uint32_t n_unique = 0;
	uint32_t *uid = unique_ids(t, &n_unique);
	uint64_t *next_use = malloc((t->n_refs ? t->n_refs : 1) * sizeof(*next_use));
	uint64_t *key = malloc((n_unique ? n_unique : 1) * sizeof(*key));  /* current key */
	uint32_t *pinned = malloc((n_unique ? n_unique : 1) * sizeof(*pinned));
	bool *cached = calloc(n_unique ? n_unique : 1, sizeof(*cached));
	struct heap heap = {0}, stash = {0};
	uint64_t hits = 0, size = 0;

	if (!uid || !next_use || !key || !pinned || !cached || capacity == 0)
		goto out;
	/* next_use[i]: the next reference to the same block after i. */
	uint64_t *last_seen = key; /* reuse as scratch before the replay */
	for (uint32_t u = 0; u < n_unique; u++)
		last_seen[u] = NEVER;
	for (uint64_t i = t->n_refs; i-- > 0;) {
		next_use[i] = last_seen[uid[i]];
		last_seen[uid[i]] = i;
	}
	memset(pinned, 0xff, n_unique * sizeof(*pinned));
	for (uint32_t r = 0; r < t->n_requests; r++) {
		const uint32_t off = t->offsets[r], n = t->offsets[r + 1] - off;
		if (n > capacity)
			continue; /* unservable, as in the replay */
		uint32_t i = 0;
		while (i < n && cached[uid[off + i]])
			i++;
		hits += i;
		for (i = 0; i < n; i++) {
			const uint32_t u = uid[off + i];
			pinned[u] = r;
			if (!cached[u]) {
				cached[u] = true;
				size++;
			}
			key[u] = next_use[off + i];
			if (!heap_push(&heap, (struct entry){key[u], u}))
				goto out;
		}
		while (size > capacity) {
			const struct entry e = heap_pop(&heap);
			if (!cached[e.uid] || key[e.uid] != e.key)
				continue; /* stale entry */
			if (pinned[e.uid] == r) {
				if (!heap_push(&stash, e))
					goto out;
				continue;
			}
			cached[e.uid] = false;
			size--;
		}
		while (stash.n > 0)
			if (!heap_push(&heap, heap_pop(&stash)))
				goto out;
	}
out:
	free(uid);
	free(next_use);
	free(key);
	free(pinned);
	free(cached);
	free(heap.v);
	free(stash.v);
	return hits;
}
