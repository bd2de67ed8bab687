/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tiers from Python: victim previews, stage_from between two Managers and
 * hierarchy lookups (include/kvbm.h, group "tiers"; docs/TIERS.md).
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

PyObject *kvbm_py_hierarchy_lookup(PyObject *module, PyObject *args)
{
	PyObject *tiers_o, *ho;
	kvbm_manager *tiers[KVBM_TIERS_MAX];

	(void)module;
	if (!PyArg_ParseTuple(args, "OO", &tiers_o, &ho))
		return NULL;
	PyObject *seq = PySequence_Fast(tiers_o, "managers must be a sequence of kvbm.Manager");
	if (!seq)
		return NULL;
	const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	if (n < 1 || n > KVBM_TIERS_MAX) {
		Py_DECREF(seq);
		return kvbm_py_raise(KVBM_E_INVAL, "a hierarchy has 1 to 8 managers");
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
		if (!PyObject_TypeCheck(o, &kvbm_py_manager_type)) {
			Py_DECREF(seq);
			PyErr_SetString(PyExc_TypeError, "managers must be kvbm.Manager objects");
			return NULL;
		}
		if (!(tiers[i] = kvbm_py_mgr((kvbm_py_manager *)o))) {
			Py_DECREF(seq);
			return NULL;
		}
	}
	kvbm_py_ints h;
	kvbm_hierarchy *hier = NULL;
	PyObject *res = NULL;
	if (kvbm_py_ints_get(ho, 8, &h) < 0) {
		Py_DECREF(seq);
		return NULL;
	}
	kvbm_status st = kvbm_hierarchy_create(tiers, (uint32_t)n, &hier);
	if (st != KVBM_OK) {
		res = kvbm_py_raise_mgr(tiers[0], st);
		goto out;
	}
	PyObject *masks = PyBytes_FromStringAndSize(NULL, h.n);
	PyObject *fastest = masks ? PyBytes_FromStringAndSize(NULL, h.n) : NULL;
	uint32_t prefix = 0;
	if (fastest) {
		st = kvbm_hierarchy_lookup(hier, h.p, (uint32_t)h.n,
					   (uint8_t *)PyBytes_AS_STRING(masks),
					   (uint8_t *)PyBytes_AS_STRING(fastest), &prefix);
		res = st == KVBM_OK ? Py_BuildValue("OOI", masks, fastest, prefix)
				    : kvbm_py_raise_mgr(tiers[0], st);
	}
	Py_XDECREF(masks);
	Py_XDECREF(fastest);
out:
	kvbm_hierarchy_free(hier);
	kvbm_py_ints_release(&h);
	Py_DECREF(seq);
	return res;
}
