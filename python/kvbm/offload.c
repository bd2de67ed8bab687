/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvbm._kvbm.OffloadIndex: the per-key state of kvbm.vllm's offloading
 * manager, in C so a block operation costs a map probe, not a Python dict
 * round trip. It owns three maps keyed by kvbm hash (offload_map.h): the
 * full vLLM key of every block stored in this run (the collision check),
 * the blocks being stored (staged guards: sealed with their hash when the
 * store is prepared, as vLLM's policies see them from then on, registered
 * when it completes) and the blocks being loaded
 * (one pin each, with a count of loads in flight), plus a stack of blocks
 * freed by failed stores, reused last-freed-first as vLLM's free list.
 * The semantics (which hashes are stored, evicted, in which block order)
 * are documented in vllm.py; this file only makes them fast.
 */
#include <string.h>

#include "binding.h"
#include "offload_map.h"

typedef struct {
	PyObject_HEAD
	kvbm_py_manager *owner;
	int catalog;                 /* allocation may wait on the writer */
	int busy;                    /* inside prepare_store with the GIL released */
	struct omap keys, pending, loading;
	kvbm_mutable *spare;         /* stack: freed by failed stores */
	size_t n_spare, cap_spare;
} kvbm_py_offload;

/* The live manager, unless another thread is inside prepare_store (which
 * lets go of the GIL while kvbm waits for the catalog writer): the maps
 * are then half-updated. vLLM's scheduler calls from one thread; this
 * turns a second one into an error instead of a corrupted index. */
static kvbm_manager *index_mgr(kvbm_py_offload *self)
{
	if (self->busy) {
		PyErr_SetString(PyExc_RuntimeError,
				"OffloadIndex used from two threads at once (one thread at a time)");
		return NULL;
	}
	return kvbm_py_mgr(self->owner);
}

/* The byte-key rule of kvbm.key_hash (module.c): XXH3_64, 0 -> 1. */
static uint64_t key_hash(PyObject *key)
{
	const kvbm_hash h = kvbm_hash_salt(PyBytes_AS_STRING(key), (size_t)PyBytes_GET_SIZE(key));
	return h ? h : 1;
}

static int same_key(PyObject *a, PyObject *b)
{
	return a == b || (PyBytes_GET_SIZE(a) == PyBytes_GET_SIZE(b) &&
			  memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b),
				 (size_t)PyBytes_GET_SIZE(a)) == 0);
}

/* keys as a fast sequence of bytes and their hashes; -1 with an exception. */
static int keys_get(PyObject *arg, PyObject **seq, uint64_t **hs, Py_ssize_t *n)
{
	*seq = PySequence_Fast(arg, "block hashes must be an iterable of bytes");
	if (!*seq)
		return -1;
	*n = PySequence_Fast_GET_SIZE(*seq);
	*hs = PyMem_Malloc(*n ? (size_t)*n * sizeof(**hs) : 1);
	if (!*hs) {
		Py_CLEAR(*seq);
		PyErr_NoMemory();
		return -1;
	}
	PyObject **items = PySequence_Fast_ITEMS(*seq);
	for (Py_ssize_t i = 0; i < *n; i++) {
		if (!PyBytes_Check(items[i])) {
			PyMem_Free(*hs);
			Py_CLEAR(*seq);
			PyErr_Format(PyExc_TypeError, "block hash %zd is not bytes", i);
			return -1;
		}
		(*hs)[i] = key_hash(items[i]);
	}
	return 0;
}

static void keys_release(PyObject *seq, uint64_t *hs)
{
	Py_XDECREF(seq);
	PyMem_Free(hs);
}

/* Whether key owns h: a key stored in this run; after a restart, the key
 * the catalog kept for the restored block (kvbm_block_key_set at its
 * store); for a restored block stored without one (an older catalog, a
 * key over KVBM_KEY_MAX bytes), the first key to ask, adopted. */
static int verify(kvbm_py_offload *self, uint64_t h, PyObject *key)
{
	const struct omap_val *v = omap_get(&self->keys, h);

	if (v)
		return same_key(v->key, key);
	if (self->catalog) {
		unsigned char buf[KVBM_KEY_MAX];
		uint32_t len = 0;
		kvbm_manager *mgr = kvbm_py_mgr(self->owner);
		if (!mgr)
			return -1;
		if (kvbm_block_key_take(mgr, h, buf, sizeof(buf), &len) == KVBM_OK) {
			PyObject *kept = PyBytes_FromStringAndSize((const char *)buf, len);
			if (!kept)
				return -1;
			const int same = same_key(kept, key);
			const int put = omap_put(&self->keys, h, kept) ? 1 : -1;
			Py_DECREF(kept);
			return put < 0 ? -1 : same;
		}
	}
	return omap_put(&self->keys, h, key) ? 1 : -1;
}

static int offload_init(kvbm_py_offload *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"manager", "catalog", NULL};
	PyObject *mo;
	int catalog = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|p", kwlist, &kvbm_py_manager_type, &mo,
					 &catalog))
		return -1;
	if (self->owner) {
		PyErr_SetString(PyExc_RuntimeError, "OffloadIndex already initialised");
		return -1;
	}
	Py_INCREF(mo);
	self->owner = (kvbm_py_manager *)mo;
	self->catalog = catalog;
	return 0;
}

/* Give every guard back (the manager may be closed already: then kvbm
 * released them itself). */
static void drop_all(kvbm_py_offload *self)
{
	kvbm_manager *mgr = self->owner ? self->owner->mgr : NULL;

	for (size_t i = 0; mgr && i < self->pending.cap; i++)
		if (self->pending.h[i])
			kvbm_complete_release(mgr, (kvbm_complete){.block = self->pending.v[i].block,
								   .gen = self->pending.v[i].gen});
	for (size_t i = 0; mgr && i < self->loading.cap; i++)
		if (self->loading.h[i]) {
			const struct omap_val *v = &self->loading.v[i];
			kvbm_unpin(mgr, &(kvbm_immutable){.block = v->block, .ref = v->ref, .gen = v->gen}, 1);
		}
	for (size_t i = 0; mgr && i < self->n_spare; i++)
		kvbm_mutable_release(mgr, self->spare[i]);
	omap_clear(&self->pending);
	omap_clear(&self->loading);
	self->n_spare = 0;
}

static void offload_dealloc(kvbm_py_offload *self)
{
	PyObject *type, *value, *tb;

	PyErr_Fetch(&type, &value, &tb);
	drop_all(self);
	omap_clear(&self->keys);
	free(self->spare);
	Py_XDECREF(self->owner);
	PyErr_Restore(type, value, tb);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *offload_close(kvbm_py_offload *self, PyObject *unused)
{
	if (self->busy) {
		index_mgr(self); /* sets the error */
		return NULL;
	}
	drop_all(self);
	Py_RETURN_NONE;
}

static PyObject *offload_lookup(kvbm_py_offload *self, PyObject *arg)
{
	kvbm_manager *mgr = index_mgr(self);
	PyObject *seq;
	uint64_t *hs;
	Py_ssize_t n;
	uint32_t prefix = 0;

	if (!mgr || keys_get(arg, &seq, &hs, &n) < 0)
		return NULL;
	const kvbm_status st = kvbm_contains(mgr, hs, (uint32_t)n, NULL, NULL, &prefix);
	if (st != KVBM_OK) {
		keys_release(seq, hs);
		return kvbm_py_raise_mgr(mgr, st);
	}
	PyObject **items = PySequence_Fast_ITEMS(seq);
	uint32_t ok = 0;
	for (; ok < prefix; ok++) {
		const int r = verify(self, hs[ok], items[ok]);
		if (r < 0) {
			keys_release(seq, hs);
			return PyErr_NoMemory();
		}
		if (!r)
			break; /* a 64-bit collision: another key owns this block */
	}
	keys_release(seq, hs);
	return PyLong_FromUnsignedLong(ok);
}

static PyObject *offload_touch(kvbm_py_offload *self, PyObject *arg)
{
	kvbm_manager *mgr = index_mgr(self);
	PyObject *seq;
	uint64_t *hs;
	Py_ssize_t n;

	if (!mgr || keys_get(arg, &seq, &hs, &n) < 0)
		return NULL;
	/* vLLM walks the list backwards: the first key ends most recent. */
	for (Py_ssize_t i = 0; i < n / 2; i++) {
		const uint64_t t = hs[i];
		hs[i] = hs[n - 1 - i];
		hs[n - 1 - i] = t;
	}
	const kvbm_status st = kvbm_touch(mgr, hs, (uint32_t)n, NULL);
	keys_release(seq, hs);
	if (st != KVBM_OK)
		return kvbm_py_raise_mgr(mgr, st);
	Py_RETURN_NONE;
}

static PyObject *ids_array(const uint32_t *ids, Py_ssize_t n)
{
	PyObject *bytes = PyBytes_FromStringAndSize(NULL, n * 8);

	if (!bytes)
		return NULL;
	int64_t *out = (int64_t *)PyBytes_AS_STRING(bytes);
	for (Py_ssize_t i = 0; i < n; i++)
		out[i] = ids[i];
	return bytes;
}

PyDoc_STRVAR(prepare_load_doc,
"prepare_load(keys) -> bytes\n\n"
"Pin every block (one pin per key, loads counted) and return their ids as\n"
"raw int64 (np.frombuffer(.., np.int64)). kvbm.NotFound, with nothing\n"
"changed, unless every key is stored and owns its block.");

static PyObject *offload_prepare_load(kvbm_py_offload *self, PyObject *arg)
{
	kvbm_manager *mgr = index_mgr(self);
	PyObject *seq, *res = NULL;
	uint64_t *hs;
	Py_ssize_t n;

	if (!mgr || keys_get(arg, &seq, &hs, &n) < 0)
		return NULL;
	PyObject **items = PySequence_Fast_ITEMS(seq);
	uint32_t *ids = PyMem_Malloc(n ? (size_t)n * sizeof(*ids) : 1);
	uint64_t *fresh = PyMem_Malloc(n ? (size_t)n * sizeof(*fresh) : 1);
	Py_ssize_t *fresh_at = PyMem_Malloc(n ? (size_t)n * sizeof(*fresh_at) : 1);
	kvbm_immutable *pins = PyMem_Malloc(n ? (size_t)n * sizeof(*pins) : 1);
	Py_ssize_t n_fresh = 0;
	uint32_t found = 0;
	if (!ids || !fresh || !fresh_at || !pins) {
		PyErr_NoMemory();
		goto out;
	}
	/* Keys not being loaded yet need a pin; a key named twice in one call
	 * is pinned once (the second finds the first in the map below). */
	for (Py_ssize_t i = 0; i < n; i++) {
		const int r = verify(self, hs[i], items[i]);
		if (r <= 0) {
			if (r == 0)
				kvbm_py_raise(KVBM_E_NOTFOUND, "prepare_load: a block is held by another key");
			else
				PyErr_NoMemory();
			goto out;
		}
		if (!omap_get(&self->loading, hs[i])) {
			fresh[n_fresh] = hs[i];
			fresh_at[n_fresh++] = i;
		}
	}
	kvbm_status st = kvbm_pin(mgr, fresh, (uint32_t)n_fresh, pins, &found);
	if (st != KVBM_OK) {
		kvbm_py_raise_mgr(mgr, st);
		goto out;
	}
	if (found != (uint32_t)n_fresh) {
		kvbm_unpin(mgr, pins, (uint32_t)n_fresh);
		kvbm_py_raise(KVBM_E_NOTFOUND, "prepare_load: not every block is stored");
		goto out;
	}
	Py_ssize_t j = 0;
	for (Py_ssize_t i = 0; i < n; i++) {
		struct omap_val *v = omap_get(&self->loading, hs[i]);
		if (!v) {
			/* fresh_at[j] == i: the next fresh key, in order */
			v = omap_put(&self->loading, hs[i], items[i]);
			if (!v) { /* out of memory: undo this call's pins */
				kvbm_unpin(mgr, pins + j, (uint32_t)(n_fresh - j));
				PyErr_NoMemory();
				goto out;
			}
			v->block = pins[j].block;
			v->ref = pins[j].ref;
			v->gen = pins[j].gen;
			j++;
		}
		v->count++;
		ids[i] = v->block;
	}
	res = ids_array(ids, n);
out:
	PyMem_Free(ids);
	PyMem_Free(fresh);
	PyMem_Free(fresh_at);
	PyMem_Free(pins);
	keys_release(seq, hs);
	return res;
}

static PyObject *offload_complete_load(kvbm_py_offload *self, PyObject *arg)
{
	kvbm_manager *mgr = index_mgr(self);
	PyObject *seq;
	uint64_t *hs;
	Py_ssize_t n;

	if (!mgr || keys_get(arg, &seq, &hs, &n) < 0)
		return NULL;
	kvbm_immutable *done = PyMem_Malloc(n ? (size_t)n * sizeof(*done) : 1);
	uint32_t n_done = 0;
	PyObject *res = NULL;
	if (!done) {
		PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		struct omap_val *v = omap_get(&self->loading, hs[i]);
		if (!v) {
			PyErr_Format(PyExc_LookupError, "complete_load: block %R is not being loaded",
				     PySequence_Fast_ITEMS(seq)[i]);
			break;
		}
		if (--v->count == 0) {
			done[n_done++] = (kvbm_immutable){.block = v->block, .ref = v->ref, .gen = v->gen};
			omap_pop(&self->loading, hs[i], NULL);
		}
	}
	/* Unpin what finished, even when a later key was unknown. */
	const kvbm_status st = kvbm_unpin(mgr, done, n_done);
	if (!PyErr_Occurred())
		res = st == KVBM_OK ? Py_NewRef(Py_None) : kvbm_py_raise_mgr(mgr, st);
out:
	PyMem_Free(done);
	keys_release(seq, hs);
	return res;
}

static int spare_push(kvbm_py_offload *self, kvbm_mutable m)
{
	if (self->n_spare == self->cap_spare) {
		const size_t cap = self->cap_spare ? self->cap_spare * 2 : 64;
		kvbm_mutable *s = realloc(self->spare, cap * sizeof(*s));
		if (!s)
			return -1;
		self->spare = s;
		self->cap_spare = cap;
	}
	self->spare[self->n_spare++] = m;
	return 0;
}

/* The key a restored block evicted before anyone named it had: only its
 * 64-bit hash is known, as 8 little-endian bytes. */
static PyObject *evicted_key(kvbm_py_offload *self, uint64_t h)
{
	struct omap_val v;

	if (omap_pop(&self->keys, h, &v))
		return v.key; /* the map's reference moves to the caller */
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(h >> (8 * i));
	return PyBytes_FromStringAndSize((const char *)le, 8);
}

PyDoc_STRVAR(prepare_store_doc,
"prepare_store(keys) -> None | (keys_to_store, block_ids, evicted_keys)\n\n"
"vLLM's prepare_store: filters stored, pending and repeated keys, takes\n"
"blocks all or nothing (None: no room, nothing changed), never-used ones\n"
"first, then evicted ones newest first, then failed-store ones last freed\n"
"first; block_ids as raw int64. Blocks being loaded and the stored keys of\n"
"this call are never evicted.");

static PyObject *offload_prepare_store(kvbm_py_offload *self, PyObject *arg)
{
	kvbm_manager *mgr = index_mgr(self);
	PyObject *seq, *res = NULL, *to_store = NULL, *evicted_list = NULL, *ids_obj = NULL;
	uint64_t *hs;
	Py_ssize_t n;

	if (!mgr || keys_get(arg, &seq, &hs, &n) < 0)
		return NULL;
	PyObject **items = PySequence_Fast_ITEMS(seq);
	bool *present = PyMem_Malloc(n ? (size_t)n : 1);
	uint64_t *store_h = PyMem_Malloc(n ? (size_t)n * sizeof(*store_h) : 1);
	uint64_t *stored_h = PyMem_Malloc(n ? (size_t)n * sizeof(*stored_h) : 1);
	Py_ssize_t *store_at = PyMem_Malloc(n ? (size_t)n * sizeof(*store_at) : 1);
	kvbm_mutable *mut = PyMem_Malloc(n ? (size_t)n * sizeof(*mut) : 1);
	kvbm_hash *ev = PyMem_Malloc(n ? (size_t)n * sizeof(*ev) : 1);
	kvbm_immutable *guard = PyMem_Malloc(n ? (size_t)n * sizeof(*guard) : 1);
	uint32_t *ids = PyMem_Malloc(n ? (size_t)n * sizeof(*ids) : 1);
	uint32_t n_ev = 0, n_guard = 0;
	Py_ssize_t n_store = 0, n_stored = 0;
	kvbm_status st;
	if (!present || !store_h || !stored_h || !store_at || !mut || !ev || !guard || !ids) {
		PyErr_NoMemory();
		goto out;
	}
	if ((st = kvbm_contains(mgr, hs, (uint32_t)n, present, NULL, NULL)) != KVBM_OK) {
		kvbm_py_raise_mgr(mgr, st);
		goto out;
	}
	/* Already stored (or a 64-bit collision with a stored key: then simply
	 * not offloaded), pending, or named earlier in this call: skipped. */
	for (Py_ssize_t i = 0; i < n; i++) {
		if (present[i]) {
			stored_h[n_stored++] = hs[i];
			continue;
		}
		if (omap_get(&self->pending, hs[i]))
			continue;
		if (!omap_put(&self->pending, hs[i], items[i])) {
			PyErr_NoMemory();
			goto undo;
		}
		store_h[n_store] = hs[i];
		store_at[n_store++] = i;
	}
	if (n_store == 0) {
		res = Py_BuildValue("([]y#[])", "", (Py_ssize_t)0);
		goto out;
	}
	kvbm_pool_counts counts;
	if ((st = kvbm_pool_counts_read(mgr, &counts)) != KVBM_OK) {
		kvbm_py_raise_mgr(mgr, st);
		goto undo;
	}
	const uint32_t want = (uint32_t)n_store;
	const uint32_t n_fresh = want < counts.reset ? want : counts.reset;
	const uint32_t rest = want - n_fresh;
	const uint32_t n_evict = rest > self->n_spare ? rest - (uint32_t)self->n_spare : 0;
	const uint32_t n_spare = rest - n_evict;
	/* With a catalog kvbm may take a reserved victim although blocks are
	 * free (a catalog row still claims them): pin the stored ones then. */
	if (n_stored && (n_evict || self->catalog)) {
		uint32_t got = 0;
		if ((st = kvbm_pin(mgr, stored_h, (uint32_t)n_stored, guard, &got)) != KVBM_OK) {
			kvbm_py_raise_mgr(mgr, st);
			goto undo;
		}
		n_guard = (uint32_t)n_stored;
	}
	const uint32_t k = n_fresh + n_evict;
	st = KVBM_OK;
	if (k) {
		if (self->catalog) {
			self->busy = 1;
			Py_BEGIN_ALLOW_THREADS /* may wait for the catalog writer */
			st = kvbm_allocate_ex(mgr, k, mut, ev, &n_ev);
			Py_END_ALLOW_THREADS
			self->busy = 0;
		} else {
			st = kvbm_allocate_ex(mgr, k, mut, ev, &n_ev);
		}
	}
	kvbm_unpin(mgr, guard, n_guard);
	if (st == KVBM_E_EXHAUSTED) {
		res = Py_NewRef(Py_None);
		goto undo;
	}
	if (st != KVBM_OK) {
		kvbm_py_raise_mgr(mgr, st);
		goto undo;
	}
	/* vLLM's order: never-used, then evicted newest first, then spare. */
	kvbm_mutable *slot = PyMem_Malloc((size_t)want * sizeof(*slot));
	if (!slot) {
		for (uint32_t i = 0; i < k; i++)
			kvbm_mutable_release(mgr, mut[i]);
		PyErr_NoMemory();
		goto undo;
	}
	uint32_t s = 0;
	for (uint32_t i = 0; i < n_fresh; i++)
		slot[s++] = mut[i];
	for (uint32_t i = k; i-- > n_fresh;)
		slot[s++] = mut[i];
	for (uint32_t i = 0; i < n_spare; i++)
		slot[s++] = self->spare[--self->n_spare];
	/* Sealed now, in call order: a policy that counts blocks being
	 * written (vllm-arc) files them where vLLM's insert does. */
	const uint32_t bs = kvbm_block_size(mgr);
	for (uint32_t i = 0; i < want; i++) {
		kvbm_complete c;
		if ((st = kvbm_stage(mgr, slot[i], store_h[i], bs, &c)) != KVBM_OK) {
			for (uint32_t j = 0; j < want; j++) { /* cannot happen: handles are fresh */
				struct omap_val *v = omap_get(&self->pending, store_h[j]);
				if (j < i)
					kvbm_complete_release(mgr, (kvbm_complete){.block = v->block,
										   .gen = v->gen});
				else
					kvbm_mutable_release(mgr, slot[j]);
			}
			PyMem_Free(slot);
			kvbm_py_raise_mgr(mgr, st);
			goto undo;
		}
		struct omap_val *v = omap_get(&self->pending, store_h[i]);
		v->block = c.block;
		v->gen = c.gen;
		ids[i] = c.block;
	}
	PyMem_Free(slot);
	to_store = PyList_New(n_store);
	evicted_list = PyList_New(n_ev);
	for (Py_ssize_t i = 0; to_store && i < n_store; i++)
		PyList_SET_ITEM(to_store, i, Py_NewRef(items[store_at[i]]));
	for (uint32_t i = 0; evicted_list && i < n_ev; i++) {
		PyObject *key = evicted_key(self, ev[i]);
		if (!key)
			break;
		PyList_SET_ITEM(evicted_list, i, key);
	}
	ids_obj = ids_array(ids, n_store);
	if (to_store && evicted_list && ids_obj && !PyErr_Occurred())
		res = PyTuple_Pack(3, to_store, ids_obj, evicted_list);
	goto out;
undo: /* nothing allocated: forget this call's pending entries */
	for (Py_ssize_t i = 0; i < n_store; i++)
		omap_pop(&self->pending, store_h[i], NULL);
out:
	Py_XDECREF(to_store);
	Py_XDECREF(evicted_list);
	Py_XDECREF(ids_obj);
	PyMem_Free(present);
	PyMem_Free(store_h);
	PyMem_Free(stored_h);
	PyMem_Free(store_at);
	PyMem_Free(mut);
	PyMem_Free(ev);
	PyMem_Free(guard);
	PyMem_Free(ids);
	keys_release(seq, hs);
	return res;
}

PyDoc_STRVAR(complete_store_doc,
"complete_store(keys, success=True) -> list\n\n"
"Pending keys become stored (registered and released in call order) or,\n"
"with success=False, their blocks join the failed-store stack; other keys\n"
"are ignored. Returns the keys now stored.");

static PyObject *offload_complete_store(kvbm_py_offload *self, PyObject *args)
{
	PyObject *arg;
	int success = 1;
	kvbm_manager *mgr = index_mgr(self);

	if (!mgr || !PyArg_ParseTuple(args, "O|p", &arg, &success))
		return NULL;
	PyObject *seq, *stored = NULL;
	uint64_t *hs;
	Py_ssize_t n;
	if (keys_get(arg, &seq, &hs, &n) < 0)
		return NULL;
	PyObject **items = PySequence_Fast_ITEMS(seq);
	kvbm_complete *comp = PyMem_Malloc(n ? (size_t)n * sizeof(*comp) : 1);
	kvbm_immutable *refs = PyMem_Malloc(n ? (size_t)n * sizeof(*refs) : 1);
	uint64_t *reg_h = PyMem_Malloc(n ? (size_t)n * sizeof(*reg_h) : 1);
	PyObject **reg_key = PyMem_Malloc(n ? (size_t)n * sizeof(*reg_key) : 1);
	uint32_t m = 0;
	if (!comp || !refs || !reg_h || !reg_key) {
		PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		struct omap_val *p = omap_get(&self->pending, hs[i]);
		if (!p || !same_key(p->key, items[i]))
			continue; /* already stored, never prepared: ignored, as vLLM */
		const kvbm_complete staged = {.block = p->block, .gen = p->gen};
		omap_pop(&self->pending, hs[i], NULL);
		const struct omap_val *known = omap_get(&self->keys, hs[i]);
		if (success && !(known && !same_key(known->key, items[i]))) {
			comp[m] = staged;
			reg_h[m] = hs[i];
			reg_key[m++] = items[i];
			continue;
		}
		/* Failed, or a 64-bit collision with a stored key: the block
		 * goes back to mutable, on the stack vLLM's free list is. */
		kvbm_mutable mu;
		if (kvbm_unstage(mgr, staged, &mu) == KVBM_OK && spare_push(self, mu) < 0)
			kvbm_mutable_release(mgr, mu);
	}
	kvbm_status st = m ? kvbm_register_batch(mgr, comp, m, refs) : KVBM_OK;
	if (st == KVBM_OK) /* in call order: the first key is evicted first */
		st = kvbm_immutable_release_batch(mgr, refs, m);
	else
		for (uint32_t j = 0; j < m; j++)
			kvbm_complete_release(mgr, comp[j]);
	if (st != KVBM_OK) {
		kvbm_py_raise_mgr(mgr, st);
		goto out;
	}
	stored = PyList_New(m);
	for (uint32_t j = 0; stored && j < m; j++) {
		if (!omap_get(&self->keys, reg_h[j]) && !omap_put(&self->keys, reg_h[j], reg_key[j])) {
			Py_CLEAR(stored);
			PyErr_NoMemory();
			break;
		}
		/* The full key rides in the block's catalog row, so a restart
		 * verifies it as this run does. Best effort: a key kvbm cannot
		 * keep falls back to adoption after a restart. */
		if (self->catalog && PyBytes_GET_SIZE(reg_key[j]) <= KVBM_KEY_MAX)
			kvbm_block_key_set(mgr, reg_h[j], PyBytes_AS_STRING(reg_key[j]),
					   (uint32_t)PyBytes_GET_SIZE(reg_key[j]));
		PyList_SET_ITEM(stored, j, Py_NewRef(reg_key[j]));
	}
out:
	PyMem_Free(comp);
	PyMem_Free(refs);
	PyMem_Free(reg_h);
	PyMem_Free(reg_key);
	keys_release(seq, hs);
	return stored;
}

static PyObject *offload_counts(kvbm_py_offload *self, PyObject *unused)
{
	return Py_BuildValue("{s:n,s:n,s:n,s:n}", "keys", (Py_ssize_t)self->keys.n, "pending",
			     (Py_ssize_t)self->pending.n, "loading", (Py_ssize_t)self->loading.n,
			     "spare", (Py_ssize_t)self->n_spare);
}

static PyObject *offload_forge_key(kvbm_py_offload *self, PyObject *args)
{
	PyObject *key, *other;

	if (!PyArg_ParseTuple(args, "O!O!", &PyBytes_Type, &key, &PyBytes_Type, &other))
		return NULL;
	const uint64_t h = key_hash(key);
	omap_pop(&self->keys, h, NULL);
	if (!omap_put(&self->keys, h, other))
		return PyErr_NoMemory();
	Py_RETURN_NONE;
}

static PyMethodDef offload_methods[] = {
	{"lookup", (PyCFunction)offload_lookup, METH_O,
	 "lookup(keys) -> int\n\nLength of the stored, verified prefix."},
	{"touch", (PyCFunction)offload_touch, METH_O, "touch(keys)\n\nkvbm_touch, in vLLM's order."},
	{"prepare_load", (PyCFunction)offload_prepare_load, METH_O, prepare_load_doc},
	{"complete_load", (PyCFunction)offload_complete_load, METH_O,
	 "complete_load(keys)\n\nOne load of each key done; the last unpins (LookupError if a\n"
	 "key is not being loaded)."},
	{"prepare_store", (PyCFunction)offload_prepare_store, METH_O, prepare_store_doc},
	{"complete_store", (PyCFunction)offload_complete_store, METH_VARARGS, complete_store_doc},
	{"counts", (PyCFunction)offload_counts, METH_NOARGS,
	 "counts() -> dict\n\nEntries in each map and the failed-store stack (for tests)."},
	{"_forge_key", (PyCFunction)offload_forge_key, METH_VARARGS,
	 "_forge_key(key, other)\n\nTests only: record `other` as the owner of key's hash, as a\n"
	 "64-bit collision would."},
	{"close", (PyCFunction)offload_close, METH_NOARGS,
	 "close()\n\nGive back every pending, loading and spare block."},
	{NULL, NULL, 0, NULL},
};

PyTypeObject kvbm_py_offload_type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "kvbm.OffloadIndex",
	.tp_basicsize = sizeof(kvbm_py_offload),
	.tp_dealloc = (destructor)offload_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "OffloadIndex(manager, catalog=False)\n\n"
		  "Per-key state of kvbm.vllm.KvbmOffloadingManager (use that class).\n"
		  "One thread at a time, as vLLM's scheduler calls it; a call from a\n"
		  "second thread while one waits for the catalog raises RuntimeError.",
	.tp_methods = offload_methods,
	.tp_init = (initproc)offload_init,
	.tp_new = PyType_GenericNew,
};
