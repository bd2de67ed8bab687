/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tiers from Python: victim previews, stage_from between two Managers,
 * one-off hierarchy lookups and kvbm.Hierarchy, which keeps a hierarchy
 * and its presence index (include/kvbm.h, group "tiers"; docs/TIERS.md).
 */
#include "binding.h"

PyObject *kvbm_py_peek_victims(kvbm_py_manager *self, PyObject *arg)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	const unsigned long n = mgr ? PyLong_AsUnsignedLong(arg) : 0;

	if (!mgr || PyErr_Occurred())
		return NULL;
	if (n > UINT32_MAX)
		return kvbm_py_raise(KVBM_E_INVAL, "n is above 2**32 - 1");
	const uint32_t cap = n < kvbm_total_blocks(mgr) ? (uint32_t)n : kvbm_total_blocks(mgr);
	kvbm_victim *v = PyMem_Malloc(cap ? cap * sizeof(*v) : 1);
	uint32_t *blocks = PyMem_Malloc(cap ? cap * sizeof(*blocks) : 1);
	kvbm_hash *hashes = PyMem_Malloc(cap ? cap * sizeof(*hashes) : 1);
	PyObject *res = NULL;
	uint32_t got = 0;

	if (!v || !blocks || !hashes) {
		res = PyErr_NoMemory();
		goto out;
	}
	const kvbm_status st = kvbm_peek_victims(mgr, cap, v, &got);
	if (st != KVBM_OK) {
		res = kvbm_py_raise_mgr(mgr, st);
		goto out;
	}
	for (uint32_t i = 0; i < got; i++) {
		blocks[i] = v[i].block;
		hashes[i] = v[i].hash;
	}
	PyObject *b = kvbm_py_array('I', blocks, got), *h = b ? kvbm_py_array('Q', hashes, got) : NULL;
	res = h ? PyTuple_Pack(2, b, h) : NULL;
	Py_XDECREF(b);
	Py_XDECREF(h);
out:
	PyMem_Free(v);
	PyMem_Free(blocks);
	PyMem_Free(hashes);
	return res;
}

PyObject *kvbm_py_stage_from(kvbm_py_manager *self, PyObject *args)
{
	PyObject *mo, *so, *ho;
	kvbm_manager *mgr = kvbm_py_mgr(self);

	if (!mgr || !PyArg_ParseTuple(args, "O!O!O", &kvbm_py_handles_type, &mo,
				      &kvbm_py_manager_type, &so, &ho))
		return NULL;
	kvbm_py_handles *m = (kvbm_py_handles *)mo;
	kvbm_manager *src = kvbm_py_mgr((kvbm_py_manager *)so);
	if (!src)
		return NULL;
	if (m->owner != self || m->kind != KIND_MUTABLE)
		return kvbm_py_raise(KVBM_E_INVAL, m->owner != self
							   ? "handles belong to another manager"
							   : "stage_from takes mutable handles");
	kvbm_py_ints h;
	if (kvbm_py_ints_get(ho, 8, &h) < 0)
		return NULL;
	PyObject *res = NULL;
	kvbm_mutable *in = NULL;
	kvbm_immutable *out = NULL;
	if (h.n != m->n) {
		res = kvbm_py_raise(KVBM_E_INVAL, "one hash per mutable handle");
		goto done;
	}
	in = PyMem_Malloc(m->n ? (size_t)m->n * sizeof(*in) : 1);
	kvbm_complete *c = PyMem_Malloc(m->n ? (size_t)m->n * sizeof(*c) : 1);
	out = PyMem_Malloc(m->n ? (size_t)m->n * sizeof(*out) : 1);
	if (!in || !c || !out) {
		PyMem_Free(c);
		res = PyErr_NoMemory();
		goto done;
	}
	for (Py_ssize_t i = 0; i < m->n; i++)
		in[i] = (kvbm_mutable){.block = m->h[i].block, .gen = m->h[i].gen};
	const kvbm_status st = kvbm_stage_from(mgr, in, (uint32_t)m->n, src, h.p, c);
	if (st == KVBM_OK) {
		for (Py_ssize_t i = 0; i < m->n; i++)
			out[i] = (kvbm_immutable){.block = c[i].block, .gen = c[i].gen};
		for (Py_ssize_t i = 0; i < m->n; i++)
			m->h[i] = (kvbm_immutable){0};
		m->live = 0;
		res = (PyObject *)kvbm_py_handles_new(self, KIND_COMPLETE, out, m->n);
	} else {
		res = kvbm_py_raise_mgr(mgr, st);
	}
	PyMem_Free(c);
done:
	PyMem_Free(in);
	PyMem_Free(out);
	kvbm_py_ints_release(&h);
	return res;
}

/* The n live Managers of a sequence into tiers (and objs, may be NULL).
 * Returns n, or -1 with an exception. */
static Py_ssize_t tiers_of(PyObject *tiers_o, kvbm_manager **tiers, kvbm_py_manager **objs)
{
	PyObject *seq = PySequence_Fast(tiers_o, "managers must be a sequence of kvbm.Manager");
	if (!seq)
		return -1;
	const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	if (n < 1 || n > KVBM_TIERS_MAX) {
		Py_DECREF(seq);
		kvbm_py_raise(KVBM_E_INVAL, "a hierarchy has 1 to 8 managers");
		return -1;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
		if (!PyObject_TypeCheck(o, &kvbm_py_manager_type)) {
			Py_DECREF(seq);
			PyErr_SetString(PyExc_TypeError, "managers must be kvbm.Manager objects");
			return -1;
		}
		if (!(tiers[i] = kvbm_py_mgr((kvbm_py_manager *)o))) {
			Py_DECREF(seq);
			return -1;
		}
		if (objs)
			objs[i] = (kvbm_py_manager *)o;
	}
	Py_DECREF(seq);
	return n;
}

/* (masks, fastest, prefix) of hashes ho in hier; errors go to first. */
static PyObject *lookup(kvbm_hierarchy *hier, kvbm_manager *first, PyObject *ho)
{
	kvbm_py_ints h;
	PyObject *res = NULL;

	if (kvbm_py_ints_get(ho, 8, &h) < 0)
		return NULL;
	if (h.n > UINT32_MAX) {
		kvbm_py_ints_release(&h);
		return kvbm_py_raise(KVBM_E_INVAL, "more than 2**32 - 1 hashes");
	}
	PyObject *masks = PyBytes_FromStringAndSize(NULL, h.n);
	PyObject *fastest = masks ? PyBytes_FromStringAndSize(NULL, h.n) : NULL;
	uint32_t prefix = 0;
	if (fastest) {
		/* The GIL stays held: a Manager closing meanwhile would free
		 * the hierarchy under the lookup. */
		const kvbm_status st = kvbm_hierarchy_lookup(hier, h.p, (uint32_t)h.n,
							     (uint8_t *)PyBytes_AS_STRING(masks),
							     (uint8_t *)PyBytes_AS_STRING(fastest),
							     &prefix);
		res = st == KVBM_OK ? Py_BuildValue("OOI", masks, fastest, prefix)
				    : kvbm_py_raise_mgr(first, st);
	}
	Py_XDECREF(masks);
	Py_XDECREF(fastest);
	kvbm_py_ints_release(&h);
	return res;
}

PyObject *kvbm_py_hierarchy_lookup(PyObject *module, PyObject *args)
{
	PyObject *tiers_o, *ho;
	kvbm_manager *tiers[KVBM_TIERS_MAX];
	kvbm_hierarchy *hier = NULL;

	(void)module;
	if (!PyArg_ParseTuple(args, "OO", &tiers_o, &ho))
		return NULL;
	const Py_ssize_t n = tiers_of(tiers_o, tiers, NULL);
	if (n < 0)
		return NULL;
	const kvbm_status st = kvbm_hierarchy_create(tiers, (uint32_t)n, 0, &hier);
	if (st != KVBM_OK)
		return kvbm_py_raise_mgr(tiers[0], st);
	PyObject *res = lookup(hier, tiers[0], ho);
	kvbm_hierarchy_free(hier);
	return res;
}

/* ---- kvbm.Hierarchy ---------------------------------------------------- */

void kvbm_py_hierarchy_close(kvbm_py_hierarchy *hy)
{
	if (!hy->h)
		return;
	/* Every Manager of hy is still open: one closing calls this first. */
	kvbm_hierarchy_free(hy->h);
	hy->h = NULL;
	for (uint32_t i = 0; i < hy->n; i++)
		hy->tiers[i]->hierarchy = NULL;
}

static int hierarchy_init(kvbm_py_hierarchy *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"managers", "presence_index", NULL};
	PyObject *tiers_o;
	int indexed = 0;
	kvbm_manager *tiers[KVBM_TIERS_MAX];
	kvbm_py_manager *objs[KVBM_TIERS_MAX];

	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$p", kwlist, &tiers_o, &indexed))
		return -1;
	if (self->h) {
		kvbm_py_raise(KVBM_E_INVAL, "Hierarchy is already initialised");
		return -1;
	}
	const Py_ssize_t n = tiers_of(tiers_o, tiers, objs);
	if (n < 0)
		return -1;
	/* One back-pointer per Manager, so that closing it closes the one
	 * Hierarchy that names it: the C rule for an indexed hierarchy, kept
	 * for both kinds. */
	for (Py_ssize_t i = 0; i < n; i++)
		if (objs[i]->hierarchy) {
			kvbm_py_raise(KVBM_E_BUSY, "a Manager is already in a hierarchy");
			return -1;
		}
	/* With the GIL held throughout, so no Manager closes while its
	 * registry fills the index. */
	const kvbm_status st = kvbm_hierarchy_create(
		tiers, (uint32_t)n, indexed ? KVBM_HIERARCHY_PRESENCE_INDEX : 0, &self->h);
	if (st != KVBM_OK) {
		kvbm_py_raise_mgr(tiers[0], st);
		return -1;
	}
	self->n = (uint32_t)n;
	for (Py_ssize_t i = 0; i < n; i++) {
		self->tiers[i] = (kvbm_py_manager *)Py_NewRef((PyObject *)objs[i]);
		objs[i]->hierarchy = self;
	}
	return 0;
}

static void hierarchy_dealloc(kvbm_py_hierarchy *self)
{
	kvbm_py_hierarchy_close(self);
	for (uint32_t i = 0; i < self->n; i++)
		Py_CLEAR(self->tiers[i]);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *hierarchy_lookup(kvbm_py_hierarchy *self, PyObject *ho)
{
	if (!self->h)
		return kvbm_py_raise(KVBM_E_INVAL, "Hierarchy is closed");
	return lookup(self->h, self->tiers[0]->mgr, ho);
}

static PyObject *hierarchy_close(kvbm_py_hierarchy *self, PyObject *unused)
{
	(void)unused;
	kvbm_py_hierarchy_close(self);
	Py_RETURN_NONE;
}

static PyObject *hierarchy_enter(PyObject *self, PyObject *unused)
{
	(void)unused;
	return Py_NewRef(self);
}

static PyObject *hierarchy_exit(kvbm_py_hierarchy *self, PyObject *args)
{
	(void)args;
	kvbm_py_hierarchy_close(self);
	Py_RETURN_FALSE;
}

static PyObject *hierarchy_get_tiers(kvbm_py_hierarchy *self, void *closure)
{
	(void)closure;
	return PyLong_FromUnsignedLong(self->h ? self->n : 0);
}

static PyObject *hierarchy_get_closed(kvbm_py_hierarchy *self, void *closure)
{
	(void)closure;
	return PyBool_FromLong(self->h == NULL);
}

static PyMethodDef hierarchy_methods[] = {
	{"lookup", (PyCFunction)hierarchy_lookup, METH_O,
	 "lookup(hashes) -> (masks: bytes, fastest: bytes, prefix: int)\n\n"
	 "kvbm.hierarchy_lookup() against this hierarchy: with presence_index, one\n"
	 "probe of the index per hash for all tiers; without, each tier's registry."},
	{"close", (PyCFunction)hierarchy_close, METH_NOARGS,
	 "close()\n\nFree the hierarchy (and its presence index) and detach the Managers\n"
	 "(kvbm_hierarchy_free);\n"
	 "a Manager closing closes its Hierarchy first."},
	{"__enter__", hierarchy_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)hierarchy_exit, METH_VARARGS, "close()"},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef hierarchy_getset[] = {
	{"tiers", (getter)hierarchy_get_tiers, NULL, "number of tiers (0 once closed)", NULL},
	{"closed", (getter)hierarchy_get_closed, NULL, "closed, or its Managers' closing closed it",
	 NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject kvbm_py_hierarchy_type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "kvbm.Hierarchy",
	.tp_basicsize = sizeof(kvbm_py_hierarchy),
	.tp_dealloc = (destructor)hierarchy_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Hierarchy(managers, *, presence_index=False)\n\n"
		  "Managers tied fastest first (kvbm_hierarchy_create). With presence_index,\n"
		  "a presence index filled once from their registries and kept up to date\n"
		  "by them: a lookup is one probe per hash for all tiers, and every\n"
		  "registration and eviction of a member tier costs one more memory access\n"
		  "(KVBM_HIERARCHY_PRESENCE_INDEX in kvbm.h says when that pays). A Manager\n"
		  "is in one Hierarchy at a time (kvbm.Busy otherwise); closing a Manager\n"
		  "closes its Hierarchy. A context manager that closes on exit.",
	.tp_methods = hierarchy_methods,
	.tp_getset = hierarchy_getset,
	.tp_init = (initproc)hierarchy_init,
	.tp_new = PyType_GenericNew,
};
