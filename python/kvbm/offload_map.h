/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small open-addressing map from kvbm hash (never 0) to a vLLM key and a
 * few block fields, for the offloading index (offload.c): linear probing,
 * backward-shift deletion (no tombstones), doubling at half full. It holds
 * a strong reference to each key object. Header-only: one user.
 */
#ifndef KVBM_OFFLOAD_MAP_H
#define KVBM_OFFLOAD_MAP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

struct omap_val {
	PyObject *key;            /* the full vLLM key (bytes), owned */
	uint32_t block, ref, gen; /* a guard: staged (block, gen) or pinned (all three) */
	uint32_t count;           /* loads in flight (loading map) */
};

struct omap {
	uint64_t *h;   /* 0 = empty slot */
	struct omap_val *v;
	size_t cap, n; /* cap a power of two */
};

static inline uint64_t omap_mix(uint64_t h)
{
	/* Hashes are XXH3 outputs already; fold the high bits in anyway, so
	 * a caller's structured hashes (tests: small ints) spread too. */
	return h ^ (h >> 29) ^ (h >> 47);
}

static inline int omap_grow(struct omap *m)
{
	const size_t cap = m->cap ? m->cap * 2 : 64;
	uint64_t *h = calloc(cap, sizeof(*h));
	struct omap_val *v = malloc(cap * sizeof(*v));

	if (!h || !v) {
		free(h);
		free(v);
		return -1;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->h[i])
			continue;
		size_t j = omap_mix(m->h[i]) & (cap - 1);
		while (h[j])
			j = (j + 1) & (cap - 1);
		h[j] = m->h[i];
		v[j] = m->v[i];
	}
	free(m->h);
	free(m->v);
	m->h = h;
	m->v = v;
	m->cap = cap;
	return 0;
}

/* The value for h, or NULL. */
static inline struct omap_val *omap_get(const struct omap *m, uint64_t h)
{
	if (!m->cap)
		return NULL;
	for (size_t i = omap_mix(h) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (m->h[i] == h)
			return &m->v[i];
		if (!m->h[i])
			return NULL;
	}
}

/* Insert h (absent) with key (a new reference is taken); the value's other
 * fields are zeroed. NULL when out of memory. */
static inline struct omap_val *omap_put(struct omap *m, uint64_t h, PyObject *key)
{
	if ((m->n + 1) * 2 > m->cap && omap_grow(m) < 0)
		return NULL;
	size_t i = omap_mix(h) & (m->cap - 1);
	while (m->h[i])
		i = (i + 1) & (m->cap - 1);
	m->h[i] = h;
	m->v[i] = (struct omap_val){.key = key};
	Py_INCREF(key);
	m->n++;
	return &m->v[i];
}

/* Remove h if present; its key reference moves to *key (NULL if absent,
 * or pass key NULL to drop it). Returns whether h was there; *out gets the
 * value when out is not NULL. */
static inline int omap_pop(struct omap *m, uint64_t h, struct omap_val *out)
{
	struct omap_val *v = omap_get(m, h);

	if (!v)
		return 0;
	size_t i = (size_t)(v - m->v);
	if (out)
		*out = *v;
	else
		Py_DECREF(v->key);
	/* Backward shift: pull later entries of the run into the hole. */
	for (size_t j = (i + 1) & (m->cap - 1); m->h[j]; j = (j + 1) & (m->cap - 1)) {
		const size_t home = omap_mix(m->h[j]) & (m->cap - 1);
		/* j's entry may move to i if its home is not in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			m->h[i] = m->h[j];
			m->v[i] = m->v[j];
			i = j;
		}
	}
	m->h[i] = 0;
	m->n--;
	return 1;
}

static inline void omap_clear(struct omap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->h[i])
			Py_DECREF(m->v[i].key);
	free(m->h);
	free(m->v);
	m->h = NULL;
	m->v = NULL;
	m->cap = m->n = 0;
}

#endif
