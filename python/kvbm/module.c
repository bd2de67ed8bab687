/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvbm._kvbm: module init, the kvbm.Error hierarchy, integer-buffer
 * conversion, and the pure hashing helpers (token sequences, and the
 * byte-key rule kvbm.vllm uses for vLLM's BlockHash). The Manager and
 * Handles types live in manager.c and handles.c.
 */
#include <string.h>

#include "binding.h"

static PyObject *error_base;
static PyObject *error_by_status[16]; /* index: -status */

static const struct {
	const char *name;
	kvbm_status st;
	PyObject **extra; /* a builtin base with the same layout, or NULL */
	const char *doc;
} error_table[] = {
	{"InvalidArgument", KVBM_E_INVAL, &PyExc_ValueError, "bad argument (KVBM_E_INVAL)"},
	{"OutOfMemory", KVBM_E_NOMEM, &PyExc_MemoryError, "allocation failed (KVBM_E_NOMEM)"},
	{"Exhausted", KVBM_E_EXHAUSTED, NULL, "fewer free + evictable blocks than asked (KVBM_E_EXHAUSTED)"},
	{"SizeMismatch", KVBM_E_SIZE, &PyExc_ValueError, "token count or capacity mismatch (KVBM_E_SIZE)"},
	{"StaleHandle", KVBM_E_STALE, NULL, "handle consumed, released or out of date (KVBM_E_STALE)"},
	{"Misuse", KVBM_E_MISUSE, NULL, "call not valid in this state (KVBM_E_MISUSE)"},
	{"NotFound", KVBM_E_NOTFOUND, NULL, "hash or block not present (KVBM_E_NOTFOUND)"},
	{"CatalogIOError", KVBM_E_IO, NULL, "catalog file or database I/O error (KVBM_E_IO)"},
	{"Corrupt", KVBM_E_CORRUPT, NULL, "file is not a valid catalog (KVBM_E_CORRUPT)"},
	{"Busy", KVBM_E_BUSY, NULL, "database locked or a bounded wait expired (KVBM_E_BUSY)"},
	{"ReadOnly", KVBM_E_READONLY, NULL, "catalog is read-only (KVBM_E_READONLY)"},
	{"Full", KVBM_E_FULL, NULL, "disk or database full (KVBM_E_FULL)"},
	{"Mismatch", KVBM_E_MISMATCH, NULL, "catalog written for another configuration (KVBM_E_MISMATCH)"},
	{"Unsupported", KVBM_E_UNSUPPORTED, NULL, "feature not built into this library (KVBM_E_UNSUPPORTED)"},
};

int kvbm_py_errors_init(PyObject *module)
{
	error_base = PyErr_NewExceptionWithDoc(
		"kvbm.Error",
		"Base of every kvbm error. .status is the kvbm_status code (negative int),\n"
		".message the manager's message for the failing call.",
		NULL, NULL);
	if (!error_base || PyModule_AddObjectRef(module, "Error", error_base) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++) {
		char qual[64];
		PyObject *bases = error_table[i].extra
					  ? PyTuple_Pack(2, error_base, *error_table[i].extra)
					  : PyTuple_Pack(1, error_base);
		if (!bases)
			return -1;
		snprintf(qual, sizeof(qual), "kvbm.%s", error_table[i].name);
		PyObject *cls = PyErr_NewExceptionWithDoc(qual, error_table[i].doc, bases, NULL);
		Py_DECREF(bases);
		if (!cls || PyModule_AddObjectRef(module, error_table[i].name, cls) < 0)
			return -1;
		error_by_status[-error_table[i].st] = cls;
	}
	return 0;
}

PyObject *kvbm_py_raise(kvbm_status st, const char *msg)
{
	PyObject *cls = st < 0 && -st < 16 && error_by_status[-st] ? error_by_status[-st] : error_base;
	const char *text = msg && *msg ? msg : kvbm_strerror(st);
	PyObject *exc = PyObject_CallFunction(cls, "s", text);

	if (!exc)
		return NULL;
	PyObject *code = PyLong_FromLong(st);
	PyObject *message = PyUnicode_FromString(text);
	if (code && message && PyObject_SetAttrString(exc, "status", code) == 0 &&
	    PyObject_SetAttrString(exc, "message", message) == 0)
		PyErr_SetObject(cls, exc);
	Py_XDECREF(code);
	Py_XDECREF(message);
	Py_DECREF(exc);
	return NULL;
}

PyObject *kvbm_py_raise_mgr(kvbm_manager *mgr, kvbm_status st)
{
	char buf[256] = "";
	kvbm_status code = st;

	if (mgr)
		kvbm_last_error(mgr, &code, buf, sizeof(buf));
	/* The message belongs to this call only if its code matches. */
	return kvbm_py_raise(st, code == st ? buf : NULL);
}

/* Item sizes a buffer format may have for unsigned/signed integer arrays. */
static int format_ok(const char *fmt, size_t itemsize, Py_ssize_t got)
{
	if (!fmt)
		return got == 1 || (size_t)got == itemsize;
	if (*fmt == '<' || *fmt == '=' || *fmt == '@')
		fmt++;
	if (fmt[0] && fmt[1])
		return 0;
	if (strchr("BbcsPp", fmt[0]) && got == 1)
		return 1; /* raw bytes of little-endian words */
	return strchr("QqLlIiNn", fmt[0]) && (size_t)got == itemsize;
}

int kvbm_py_ints_get(PyObject *obj, size_t itemsize, kvbm_py_ints *out)
{
	memset(out, 0, sizeof(*out));
	if (PyObject_CheckBuffer(obj) && !PyUnicode_Check(obj)) {
		if (PyObject_GetBuffer(obj, &out->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
			return -1;
		out->has_view = 1;
		if (!format_ok(out->view.format, itemsize, out->view.itemsize) ||
		    out->view.len % (Py_ssize_t)itemsize) {
			kvbm_py_ints_release(out);
			PyErr_Format(PyExc_TypeError,
				     "expected a buffer of %zu-byte integers (or raw bytes of them)",
				     itemsize);
			return -1;
		}
		out->p = out->view.buf;
		out->n = out->view.len / (Py_ssize_t)itemsize;
		return 0;
	}
	PyObject *seq = PySequence_Fast(obj, "expected a sequence of ints or a buffer");
	if (!seq)
		return -1;
	const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	out->owned = PyMem_Malloc(n ? (size_t)n * itemsize : 1);
	if (!out->owned) {
		Py_DECREF(seq);
		PyErr_NoMemory();
		return -1;
	}
	PyObject **items = PySequence_Fast_ITEMS(seq);
	for (Py_ssize_t i = 0; i < n; i++) {
		const unsigned long long v = PyLong_AsUnsignedLongLong(items[i]);
		if (v == (unsigned long long)-1 && PyErr_Occurred()) {
			Py_DECREF(seq);
			kvbm_py_ints_release(out);
			return -1;
		}
		if (itemsize == 8) {
			((uint64_t *)out->owned)[i] = v;
		} else if (v > UINT32_MAX) {
			Py_DECREF(seq);
			kvbm_py_ints_release(out);
			PyErr_SetString(PyExc_OverflowError, "token id does not fit in 32 bits");
			return -1;
		} else {
			((uint32_t *)out->owned)[i] = (uint32_t)v;
		}
	}
	Py_DECREF(seq);
	out->p = out->owned;
	out->n = n;
	return 0;
}

void kvbm_py_ints_release(kvbm_py_ints *v)
{
	if (v->has_view)
		PyBuffer_Release(&v->view);
	PyMem_Free(v->owned);
	memset(v, 0, sizeof(*v));
}

static PyObject *array_ctor;

PyObject *kvbm_py_array(char typecode, const void *p, Py_ssize_t n)
{
	const size_t size = typecode == 'Q' ? 8 : 4;
	PyObject *bytes = PyBytes_FromStringAndSize(p, n * (Py_ssize_t)size);

	if (!bytes)
		return NULL;
	PyObject *arr = PyObject_CallFunction(array_ctor, "CO", typecode, bytes);
	Py_DECREF(bytes);
	return arr;
}

PyDoc_STRVAR(hash_sequence_doc,
"hash_sequence(tokens, block_size, salt_hash=0) -> array('Q')\n\n"
"Sequence hashes of the full blocks of a token list (ints, array('I'),\n"
"numpy uint32/int32, or raw bytes of u32); a trailing partial block is\n"
"not hashed. Dynamo-compatible XXH3 chaining (see kvbm.h).");

static PyObject *py_hash_sequence(PyObject *mod, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"tokens", "block_size", "salt_hash", NULL};
	PyObject *tokens;
	unsigned int bs;
	unsigned long long salt = 0;
	kvbm_py_ints t;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "OI|K", kwlist, &tokens, &bs, &salt))
		return NULL;
	if (kvbm_py_ints_get(tokens, 4, &t) < 0)
		return NULL;
	const size_t cap = bs ? (size_t)t.n / bs : 0;
	kvbm_hash *out = PyMem_Malloc(cap ? cap * sizeof(*out) : 1);
	size_t n_out = 0;
	if (!out) {
		kvbm_py_ints_release(&t);
		return PyErr_NoMemory();
	}
	const kvbm_status st = kvbm_hash_sequence(t.p, (size_t)t.n, bs, salt, out, cap, &n_out);
	kvbm_py_ints_release(&t);
	PyObject *res = st == KVBM_OK ? kvbm_py_array('Q', out, (Py_ssize_t)n_out)
				      : kvbm_py_raise(st, "block_size must be a power of two 1..1024");
	PyMem_Free(out);
	return res;
}

static PyObject *py_hash_block(PyObject *mod, PyObject *arg)
{
	kvbm_py_ints t;

	if (kvbm_py_ints_get(arg, 4, &t) < 0)
		return NULL;
	const kvbm_hash h = kvbm_hash_block(t.p, (size_t)t.n);
	kvbm_py_ints_release(&t);
	return PyLong_FromUnsignedLongLong(h);
}

static PyObject *py_hash_salt(PyObject *mod, PyObject *arg)
{
	Py_buffer b;

	if (PyUnicode_Check(arg)) {
		Py_ssize_t len;
		const char *s = PyUnicode_AsUTF8AndSize(arg, &len);
		return s ? PyLong_FromUnsignedLongLong(kvbm_hash_salt(s, (size_t)len)) : NULL;
	}
	if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
		return NULL;
	const kvbm_hash h = kvbm_hash_salt(b.buf, (size_t)b.len);
	PyBuffer_Release(&b);
	return PyLong_FromUnsignedLongLong(h);
}

static PyObject *py_hash_chain(PyObject *mod, PyObject *args)
{
	unsigned long long parent, local;
	int is_root = 0;

	if (!PyArg_ParseTuple(args, "KK|p", &parent, &local, &is_root))
		return NULL;
	return PyLong_FromUnsignedLongLong(kvbm_hash_chain(parent, local, is_root));
}

/* The byte-key rule (docs/PYTHON.md): XXH3_64 of the key's bytes with seed
 * 0, which is kvbm_hash_salt; 0 maps to 1 because the offload index
 * (offload.c) marks its empty map slots with 0. */
static kvbm_hash key_hash(const void *p, size_t len)
{
	const kvbm_hash h = kvbm_hash_salt(p, len);
	return h ? h : 1;
}

PyDoc_STRVAR(key_hashes_doc,
"key_hashes(keys) -> array('Q')\n\n"
"kvbm hashes of byte keys (vLLM BlockHash): XXH3_64(key, seed 0), 0 mapped\n"
"to 1. One call for the whole list.");

static PyObject *py_key_hashes(PyObject *mod, PyObject *arg)
{
	PyObject *seq = PySequence_Fast(arg, "keys must be a sequence of bytes");

	if (!seq)
		return NULL;
	const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	PyObject *bytes = PyBytes_FromStringAndSize(NULL, n * 8);
	if (!bytes) {
		Py_DECREF(seq);
		return NULL;
	}
	kvbm_hash *out = (kvbm_hash *)PyBytes_AS_STRING(bytes);
	PyObject **items = PySequence_Fast_ITEMS(seq);
	for (Py_ssize_t i = 0; i < n; i++) {
		if (!PyBytes_Check(items[i])) {
			Py_DECREF(seq);
			Py_DECREF(bytes);
			return PyErr_Format(PyExc_TypeError, "key %zd is not bytes", i);
		}
		out[i] = key_hash(PyBytes_AS_STRING(items[i]), (size_t)PyBytes_GET_SIZE(items[i]));
	}
	Py_DECREF(seq);
	PyObject *arr = PyObject_CallFunction(array_ctor, "CO", 'Q', bytes);
	Py_DECREF(bytes);
	return arr;
}

static PyObject *py_key_hash(PyObject *mod, PyObject *arg)
{
	if (!PyBytes_Check(arg))
		return PyErr_Format(PyExc_TypeError, "key must be bytes");
	return PyLong_FromUnsignedLongLong(
		key_hash(PyBytes_AS_STRING(arg), (size_t)PyBytes_GET_SIZE(arg)));
}

PyDoc_STRVAR(verify_keys_doc,
"verify_keys(sidecar, keys, hashes, n=all) -> int\n\n"
"How many of the first n keys, from the start, agree with sidecar (a dict: kvbm hash -> full key).\n"
"A hash the sidecar does not know (a block restored from the catalog) is\n"
"adopted for its key; a hash the sidecar holds for another key (a 64-bit\n"
"collision) stops the count there.");

static PyObject *py_verify_keys(PyObject *mod, PyObject *args)
{
	PyObject *side, *keys, *hashes;
	Py_ssize_t limit = PY_SSIZE_T_MAX;
	kvbm_py_ints h;

	if (!PyArg_ParseTuple(args, "O!OO|n", &PyDict_Type, &side, &keys, &hashes, &limit))
		return NULL;
	PyObject *seq = PySequence_Fast(keys, "keys must be a sequence of bytes");
	if (!seq)
		return NULL;
	if (kvbm_py_ints_get(hashes, 8, &h) < 0) {
		Py_DECREF(seq);
		return NULL;
	}
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), i = 0;
	if (h.n < n)
		n = h.n;
	if (limit >= 0 && limit < n)
		n = limit;
	PyObject **items = PySequence_Fast_ITEMS(seq);
	for (; i < n; i++) {
		PyObject *k = PyLong_FromUnsignedLongLong(((const uint64_t *)h.p)[i]);
		if (!k)
			goto fail;
		PyObject *known = PyDict_GetItemWithError(side, k);
		if (!known) {
			const int rc = PyErr_Occurred() ? -1 : PyDict_SetItem(side, k, items[i]);
			Py_DECREF(k);
			if (rc < 0)
				goto fail;
			continue;
		}
		Py_DECREF(k);
		const int eq = known == items[i] ? 1 : PyObject_RichCompareBool(known, items[i], Py_EQ);
		if (eq < 0)
			goto fail;
		if (!eq)
			break;
	}
	Py_DECREF(seq);
	kvbm_py_ints_release(&h);
	return PyLong_FromSsize_t(i);
fail:
	Py_DECREF(seq);
	kvbm_py_ints_release(&h);
	return NULL;
}

static PyObject *py_strerror(PyObject *mod, PyObject *arg)
{
	const long st = PyLong_AsLong(arg);
	return st == -1 && PyErr_Occurred() ? NULL : PyUnicode_FromString(kvbm_strerror((kvbm_status)st));
}

static PyMethodDef module_methods[] = {
	{"hash_sequence", (PyCFunction)(void (*)(void))py_hash_sequence, METH_VARARGS | METH_KEYWORDS,
	 hash_sequence_doc},
	{"hash_block", py_hash_block, METH_O,
	 "hash_block(tokens) -> int\n\nLocal (content-only) XXH3 hash of one block of tokens."},
	{"hash_salt", py_hash_salt, METH_O,
	 "hash_salt(salt) -> int\n\nSalt hash of bytes or str (UTF-8); 0 for empty."},
	{"hash_chain", py_hash_chain, METH_VARARGS,
	 "hash_chain(parent_or_salt, local, is_root=False) -> int\n\nOne sequence-hash step."},
	{"key_hashes", py_key_hashes, METH_O, key_hashes_doc},
	{"key_hash", py_key_hash, METH_O, "key_hash(key) -> int\n\nkey_hashes() for one key."},
	{"verify_keys", py_verify_keys, METH_VARARGS, verify_keys_doc},
	{"strerror", py_strerror, METH_O, "strerror(status) -> str\n\nkvbm_strerror()."},
	{"hierarchy_lookup", kvbm_py_hierarchy_lookup, METH_VARARGS,
	 "hierarchy_lookup(managers, hashes) -> (masks: bytes, fastest: bytes, prefix: int)\n\n"
	 "Which tiers hold each hash (bit t of masks[i] for managers[t], fastest tier\n"
	 "first), the fastest tier of each (0xff: none) and the longest prefix some\n"
	 "tier holds: the onboarding plan (kvbm_hierarchy_lookup).\n"
	 "Builds the hierarchy's presence index for this one call (time and memory\n"
	 "in the tiers' block counts): keep a kvbm.Hierarchy to look up repeatedly."},
	{NULL, NULL, 0, NULL},
};

static PyStructSequence_Field event_fields[] = {
	{"kind", "1 STORED, 2 REMOVED, 3 CLEARED"},
	{"block", "block id (STORED, REMOVED)"},
	{"hash", "sequence hash (STORED, REMOVED)"},
	{"parent_hash", "parent's sequence hash (STORED), 0 for none"},
	{"position", "position in the sequence or POSITION_UNKNOWN (STORED)"},
	{"num_tokens", "block size (STORED)"},
	{NULL, NULL},
};

static PyStructSequence_Desc event_desc = {
	"kvbm.Event", "One block event (see kvbm.h, events group).", event_fields, 6,
};

PyTypeObject *kvbm_py_event_type;

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT, "kvbm._kvbm",
	"CPython binding of libkvbm (include/kvbm.h); use the kvbm package.", -1, module_methods,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kvbm(void);
PyMODINIT_FUNC PyInit__kvbm(void)
{
	PyObject *m = PyModule_Create(&module_def);
	PyObject *array_mod = PyImport_ImportModule("array");

	if (!m || !array_mod)
		goto fail;
	array_ctor = PyObject_GetAttrString(array_mod, "array");
	Py_DECREF(array_mod);
	array_mod = NULL;
	kvbm_py_event_type = PyStructSequence_NewType(&event_desc);
	if (!array_ctor || !kvbm_py_event_type || kvbm_py_errors_init(m) < 0 ||
	    PyType_Ready(&kvbm_py_manager_type) < 0 || PyType_Ready(&kvbm_py_handles_type) < 0 ||
	    PyType_Ready(&kvbm_py_offload_type) < 0 || PyType_Ready(&kvbm_py_hierarchy_type) < 0 ||
	    PyModule_AddObjectRef(m, "Event", (PyObject *)kvbm_py_event_type) < 0 ||
	    PyModule_AddObjectRef(m, "Manager", (PyObject *)&kvbm_py_manager_type) < 0 ||
	    PyModule_AddObjectRef(m, "Handles", (PyObject *)&kvbm_py_handles_type) < 0 ||
	    PyModule_AddObjectRef(m, "OffloadIndex", (PyObject *)&kvbm_py_offload_type) < 0 ||
	    PyModule_AddObjectRef(m, "Hierarchy", (PyObject *)&kvbm_py_hierarchy_type) < 0 ||
	    PyModule_AddStringConstant(m, "__version__", kvbm_version()) < 0 ||
	    PyModule_AddIntConstant(m, "EVENT_STORED", KVBM_EVENT_STORED) < 0 ||
	    PyModule_AddIntConstant(m, "EVENT_REMOVED", KVBM_EVENT_REMOVED) < 0 ||
	    PyModule_AddIntConstant(m, "EVENT_CLEARED", KVBM_EVENT_CLEARED) < 0 ||
	    PyModule_AddIntConstant(m, "POSITION_UNKNOWN", (long)KVBM_POSITION_UNKNOWN) < 0 ||
	    PyModule_AddIntConstant(m, "HASH_ENCODING", KVBM_HASH_ENCODING) < 0 ||
	    PyModule_AddIntConstant(m, "SCHEMA_VERSION", KVBM_SCHEMA_VERSION) < 0)
		goto fail;
	return m;
fail:
	Py_XDECREF(array_mod);
	Py_XDECREF(m);
	return NULL;
}
