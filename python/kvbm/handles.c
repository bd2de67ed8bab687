/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvbm.Handles: a batch of guards of one kind (mutable, complete or
 * immutable references) that a Manager call returned. The object owns what
 * it holds: entries a later call consumes are emptied, and whatever is
 * still live when the object is released or collected goes back to the
 * manager, so a Python caller cannot leak blocks by dropping a result.
 */
#include "binding.h"

static const char *kind_names[] = {"mutable", "complete", "immutable", "pinned"};

kvbm_py_handles *kvbm_py_handles_new(kvbm_py_manager *owner, int kind, const kvbm_immutable *h,
				     Py_ssize_t n)
{
	kvbm_py_handles *self = PyObject_New(kvbm_py_handles, &kvbm_py_handles_type);

	if (!self)
		return NULL;
	self->h = PyMem_Malloc(n ? (size_t)n * sizeof(*self->h) : 1);
	if (!self->h) {
		self->n = 0;
		self->owner = NULL;
		Py_DECREF(self);
		PyErr_NoMemory();
		return NULL;
	}
	Py_INCREF(owner);
	self->owner = owner;
	self->kind = kind;
	self->n = n;
	self->live = 0;
	for (Py_ssize_t i = 0; i < n; i++) {
		self->h[i] = h ? h[i] : (kvbm_immutable){0};
		self->live += self->h[i].gen != 0;
	}
	return self;
}

/* Give entry i back to the manager; empties it. */
static kvbm_status release_one(kvbm_manager *mgr, kvbm_py_handles *self, Py_ssize_t i)
{
	const kvbm_immutable h = self->h[i];
	kvbm_status st = KVBM_OK;

	if (h.gen == 0)
		return KVBM_OK;
	switch (self->kind) {
	case KIND_MUTABLE:
		st = kvbm_mutable_release(mgr, (kvbm_mutable){.block = h.block, .gen = h.gen});
		break;
	case KIND_COMPLETE:
		st = kvbm_complete_release(mgr, (kvbm_complete){.block = h.block, .gen = h.gen});
		break;
	case KIND_PINNED:
		st = kvbm_unpin(mgr, &h, 1);
		break;
	default:
		st = kvbm_immutable_release(mgr, h);
		break;
	}
	/* Stale means someone else already gave it back: empty either way. */
	self->h[i] = (kvbm_immutable){0};
	self->live--;
	return st;
}

/* Release every live entry (immutable ones in one batch, tail first so a
 * sequence's tail is evicted before its prefix). */
static kvbm_status release_all(kvbm_py_handles *self)
{
	kvbm_manager *mgr = self->owner ? self->owner->mgr : NULL;
	kvbm_status st = KVBM_OK;

	if (!mgr || self->live == 0) {
		self->live = 0;
		return KVBM_OK;
	}
	kvbm_immutable *tail_first = self->kind >= KIND_IMMUTABLE
					     ? PyMem_Malloc((size_t)self->live * sizeof(*tail_first))
					     : NULL;
	if (tail_first) {
		uint32_t k = 0;
		for (Py_ssize_t i = self->n; i-- > 0;)
			if (self->h[i].gen)
				tail_first[k++] = self->h[i];
		st = self->kind == KIND_PINNED ? kvbm_unpin(mgr, tail_first, k)
					       : kvbm_immutable_release_batch(mgr, tail_first, k);
		PyMem_Free(tail_first);
		for (Py_ssize_t i = 0; i < self->n; i++)
			self->h[i] = (kvbm_immutable){0};
		self->live = 0;
		return st;
	}
	/* Mutable or complete guards, or no memory for the batch: one by one. */
	for (Py_ssize_t i = self->n; i-- > 0;) {
		const kvbm_status s = release_one(mgr, self, i);
		st = st == KVBM_OK ? s : st;
	}
	return st;
}

static void handles_dealloc(kvbm_py_handles *self)
{
	PyObject *type, *value, *tb;

	PyErr_Fetch(&type, &value, &tb);
	if (self->h)
		release_all(self);
	PyErr_Restore(type, value, tb);
	PyMem_Free(self->h);
	Py_XDECREF(self->owner);
	PyObject_Free(self);
}

static Py_ssize_t handles_len(kvbm_py_handles *self)
{
	return self->n;
}

PyDoc_STRVAR(release_doc,
"release(indices=None) -> int\n\n"
"Give entries back to the manager (mutable/complete: to the reset pool;\n"
"immutable: drop the reference, the last one makes the block inactive;\n"
"pinned: unpin, the block keeps its place in the eviction order).\n"
"All live entries by default, or those at the given indices. Returns how\n"
"many were released; released entries become empty.");

static PyObject *handles_release(kvbm_py_handles *self, PyObject *args)
{
	PyObject *indices = Py_None;

	if (!PyArg_ParseTuple(args, "|O", &indices))
		return NULL;
	kvbm_manager *mgr = kvbm_py_mgr(self->owner);
	if (!mgr)
		return NULL;
	const Py_ssize_t before = self->live;
	if (indices == Py_None) {
		const kvbm_status st = release_all(self);
		if (st != KVBM_OK)
			return kvbm_py_raise_mgr(mgr, st);
		return PyLong_FromSsize_t(before);
	}
	kvbm_py_ints idx;
	if (kvbm_py_ints_get(indices, 8, &idx) < 0)
		return NULL;
	for (Py_ssize_t j = 0; j < idx.n; j++) {
		const uint64_t i = ((const uint64_t *)idx.p)[j];
		if (i >= (uint64_t)self->n) {
			kvbm_py_ints_release(&idx);
			return PyErr_Format(PyExc_IndexError, "handle index %llu out of range",
					    (unsigned long long)i);
		}
		release_one(mgr, self, (Py_ssize_t)i);
	}
	kvbm_py_ints_release(&idx);
	return PyLong_FromSsize_t(before - self->live);
}

static PyObject *handles_blocks(kvbm_py_handles *self, void *closure)
{
	uint32_t *ids = PyMem_Malloc(self->n ? (size_t)self->n * sizeof(*ids) : 1);

	if (!ids)
		return PyErr_NoMemory();
	for (Py_ssize_t i = 0; i < self->n; i++)
		ids[i] = self->h[i].gen ? self->h[i].block : UINT32_MAX;
	PyObject *arr = kvbm_py_array('I', ids, self->n);
	PyMem_Free(ids);
	return arr;
}

static PyObject *handles_hashes(kvbm_py_handles *self, PyObject *unused)
{
	kvbm_manager *mgr = kvbm_py_mgr(self->owner);

	if (!mgr)
		return NULL;
	if (self->kind < KIND_IMMUTABLE)
		return kvbm_py_raise(KVBM_E_MISUSE, "hashes() needs immutable or pinned handles");
	kvbm_hash *out = PyMem_Malloc(self->n ? (size_t)self->n * sizeof(*out) : 1);
	if (!out)
		return PyErr_NoMemory();
	for (Py_ssize_t i = 0; i < self->n; i++) {
		out[i] = 0;
		if (self->h[i].gen && kvbm_immutable_hash(mgr, self->h[i], &out[i]) != KVBM_OK) {
			PyMem_Free(out);
			return kvbm_py_raise_mgr(mgr, KVBM_E_STALE);
		}
	}
	PyObject *arr = kvbm_py_array('Q', out, self->n);
	PyMem_Free(out);
	return arr;
}

static PyObject *handles_kind(kvbm_py_handles *self, void *closure)
{
	return PyUnicode_FromString(kind_names[self->kind]);
}

static PyObject *handles_live(kvbm_py_handles *self, void *closure)
{
	return PyLong_FromSsize_t(self->live);
}

static PyObject *handles_enter(PyObject *self, PyObject *unused)
{
	return Py_NewRef(self);
}

static PyObject *handles_exit(kvbm_py_handles *self, PyObject *args)
{
	kvbm_manager *mgr = self->owner ? self->owner->mgr : NULL;
	const kvbm_status st = release_all(self);

	if (st != KVBM_OK && st != KVBM_E_STALE)
		return kvbm_py_raise_mgr(mgr, st);
	Py_RETURN_FALSE;
}

static PyObject *handles_repr(kvbm_py_handles *self)
{
	return PyUnicode_FromFormat("<kvbm.Handles %s n=%zd live=%zd>", kind_names[self->kind],
				    self->n, self->live);
}

static PyMethodDef handles_methods[] = {
	{"release", (PyCFunction)handles_release, METH_VARARGS, release_doc},
	{"hashes", (PyCFunction)handles_hashes, METH_NOARGS,
	 "hashes() -> array('Q')\n\nSequence hash of each immutable entry (0 for empty ones)."},
	{"__enter__", handles_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)handles_exit, METH_VARARGS, "Release every live entry."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef handles_getset[] = {
	{"blocks", (getter)handles_blocks, NULL,
	 "array('I') of block ids, 0xFFFFFFFF for empty entries", NULL},
	{"kind", (getter)handles_kind, NULL, "'mutable', 'complete', 'immutable' or 'pinned'", NULL},
	{"live", (getter)handles_live, NULL, "entries still held", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods handles_as_sequence = {
	.sq_length = (lenfunc)handles_len,
};

PyTypeObject kvbm_py_handles_type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "kvbm.Handles",
	.tp_basicsize = sizeof(kvbm_py_handles),
	.tp_dealloc = (destructor)handles_dealloc,
	.tp_repr = (reprfunc)handles_repr,
	.tp_as_sequence = &handles_as_sequence,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A batch of block guards returned by a Manager call; see release().\n"
		  "Live entries are released when the object is released or collected.",
	.tp_methods = handles_methods,
	.tp_getset = handles_getset,
};
