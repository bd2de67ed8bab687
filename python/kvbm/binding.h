/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared parts of the kvbm CPython extension (kvbm._kvbm): the Manager and
 * Handles types, status-to-exception mapping, and buffer conversion. Only
 * include/kvbm.h is used; no binding generator.
 */
#ifndef KVBM_BINDING_H
#define KVBM_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "kvbm.h"

struct kvbm_py_hierarchy;

/* A Manager: owns one kvbm_manager. */
typedef struct {
	PyObject_HEAD
	kvbm_manager *mgr;      /* NULL once closed */
	PyObject *sink;         /* Python callable for push-mode events, or NULL */
	int pull;               /* opened with kvbm_event_pull_sink */
	PyObject *weakrefs;
	struct kvbm_py_hierarchy *hierarchy; /* the open kvbm.Hierarchy it is in
						(borrowed: it holds us), or NULL */
} kvbm_py_manager;

/* A Hierarchy: owns one kvbm_hierarchy and its presence index, and holds
 * its Managers, which close it before they close. */
typedef struct kvbm_py_hierarchy {
	PyObject_HEAD
	kvbm_hierarchy *h;      /* NULL once closed */
	uint32_t n;
	kvbm_py_manager *tiers[KVBM_TIERS_MAX]; /* strong references */
} kvbm_py_hierarchy;

/* What a Handles object holds. */
/* KIND_PINNED entries are immutable references taken by kvbm_pin and given
 * back by kvbm_unpin. */
enum kvbm_py_kind { KIND_MUTABLE = 0, KIND_COMPLETE = 1, KIND_IMMUTABLE = 2, KIND_PINNED = 3 };

/* A batch of guards of one kind; an entry with gen == 0 is empty
 * (consumed, released, or a scattered-match miss). */
typedef struct {
	PyObject_HEAD
	kvbm_py_manager *owner; /* strong reference: handles never outlive it */
	int kind;
	Py_ssize_t n;
	Py_ssize_t live;        /* entries with gen != 0 */
	kvbm_immutable *h;      /* mutable/complete use .block and .gen */
} kvbm_py_handles;

extern PyTypeObject kvbm_py_manager_type;
extern PyTypeObject kvbm_py_handles_type;
extern PyTypeObject kvbm_py_offload_type; /* offload.c: kvbm.vllm's per-key state */
extern PyTypeObject kvbm_py_hierarchy_type; /* tiers.c: kvbm.Hierarchy */
extern PyTypeObject *kvbm_py_event_type;

/* Raise the kvbm.Error subclass for st; msg may be NULL (then strerror). */
PyObject *kvbm_py_raise(kvbm_status st, const char *msg);
/* Raise for st with mgr's last error message. */
PyObject *kvbm_py_raise_mgr(kvbm_manager *mgr, kvbm_status st);
/* Error classes, created at module init. */
int kvbm_py_errors_init(PyObject *module);

/* A read-only view of an integer array: a zero-copy buffer when obj is a
 * C-contiguous buffer of the right item size (array('Q'), numpy uint64,
 * raw bytes of little-endian words), else a malloc'd copy of a sequence. */
typedef struct {
	const void *p;
	Py_ssize_t n;
	Py_buffer view;
	int has_view;
	void *owned;
} kvbm_py_ints;

/* itemsize 8 (hashes) or 4 (tokens). Returns 0, or -1 with an exception. */
int kvbm_py_ints_get(PyObject *obj, size_t itemsize, kvbm_py_ints *out);
void kvbm_py_ints_release(kvbm_py_ints *v);
/* A new array.array of typecode with n items copied from p. */
PyObject *kvbm_py_array(char typecode, const void *p, Py_ssize_t n);

/* A new Handles of kind owning n guards copied from h. */
kvbm_py_handles *kvbm_py_handles_new(kvbm_py_manager *owner, int kind,
				     const kvbm_immutable *h, Py_ssize_t n);
/* The live manager of self or NULL with kvbm.Error (closed). */
kvbm_manager *kvbm_py_mgr(kvbm_py_manager *self);

/* tiers.c: Manager.peek_victims, Manager.stage_from, kvbm.hierarchy_lookup,
 * kvbm.Hierarchy. */
PyObject *kvbm_py_peek_victims(kvbm_py_manager *self, PyObject *arg);
PyObject *kvbm_py_stage_from(kvbm_py_manager *self, PyObject *args);
PyObject *kvbm_py_hierarchy_lookup(PyObject *module, PyObject *args);
/* Free hy's kvbm_hierarchy (detaching its tiers) and forget its Managers'
 * back-pointers; a closed one is a no-op. */
void kvbm_py_hierarchy_close(kvbm_py_hierarchy *hy);

#endif
