/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvbm.Manager: one kvbm_manager, opened from keyword arguments that
 * mirror kvbm_config, with batch calls taking integer buffers. The GIL is
 * released around every call that can wait (open and restore, allocate
 * waiting on the catalog, flush, close); short calls keep it, and kvbm
 * never calls into Python with its own lock held (the push-mode sink runs
 * on the dispatcher thread with no kvbm lock), so the two locks cannot
 * deadlock.
 */
#include <stddef.h>
#include <string.h>

#include "binding.h"

kvbm_manager *kvbm_py_mgr(kvbm_py_manager *self)
{
	if (!self || !self->mgr) {
		kvbm_py_raise(KVBM_E_MISUSE, "manager is closed");
		return NULL;
	}
	return self->mgr;
}

/* Push mode: called by kvbm's dispatcher thread with no kvbm lock held. */
static void py_sink(const kvbm_event_batch *b, void *user)
{
	kvbm_py_manager *self = user;
	PyGILState_STATE g = PyGILState_Ensure();
	PyObject *list = PyList_New((Py_ssize_t)b->count);

	for (size_t i = 0; list && i < b->count; i++) {
		const kvbm_event *e = &b->events[i];
		PyObject *ev = PyStructSequence_New(kvbm_py_event_type);
		if (!ev) {
			Py_CLEAR(list);
			break;
		}
		PyStructSequence_SET_ITEM(ev, 0, PyLong_FromLong(e->kind));
		PyStructSequence_SET_ITEM(ev, 1, PyLong_FromUnsignedLong(e->block));
		PyStructSequence_SET_ITEM(ev, 2, PyLong_FromUnsignedLongLong(e->hash));
		PyStructSequence_SET_ITEM(ev, 3, PyLong_FromUnsignedLongLong(e->parent_hash));
		PyStructSequence_SET_ITEM(ev, 4, PyLong_FromUnsignedLong(e->position));
		PyStructSequence_SET_ITEM(ev, 5, PyLong_FromUnsignedLong(e->num_tokens));
		PyList_SET_ITEM(list, (Py_ssize_t)i, ev);
	}
	PyObject *r = list ? PyObject_CallFunction(self->sink, "OKK", list,
						   (unsigned long long)b->incarnation,
						   (unsigned long long)b->seq)
			   : NULL;
	if (!r)
		PyErr_WriteUnraisable(self->sink); /* nowhere to raise on this thread */
	Py_XDECREF(r);
	Py_XDECREF(list);
	PyGILState_Release(g);
}

static PyObject *event_list(const kvbm_event *evs, size_t n)
{
	PyObject *list = PyList_New((Py_ssize_t)n);

	for (size_t i = 0; list && i < n; i++) {
		PyObject *ev = PyStructSequence_New(kvbm_py_event_type);
		if (!ev) {
			Py_CLEAR(list);
			break;
		}
		PyStructSequence_SET_ITEM(ev, 0, PyLong_FromLong(evs[i].kind));
		PyStructSequence_SET_ITEM(ev, 1, PyLong_FromUnsignedLong(evs[i].block));
		PyStructSequence_SET_ITEM(ev, 2, PyLong_FromUnsignedLongLong(evs[i].hash));
		PyStructSequence_SET_ITEM(ev, 3, PyLong_FromUnsignedLongLong(evs[i].parent_hash));
		PyStructSequence_SET_ITEM(ev, 4, PyLong_FromUnsignedLong(evs[i].position));
		PyStructSequence_SET_ITEM(ev, 5, PyLong_FromUnsignedLong(evs[i].num_tokens));
		PyList_SET_ITEM(list, (Py_ssize_t)i, ev);
	}
	return list;
}

static int parse_policy(PyObject *o, kvbm_evict_policy *out)
{
	if (PyLong_Check(o)) {
		const long v = PyLong_AsLong(o);
		if (v < 0 || v >= KVBM_EVICT_COUNT) {
			kvbm_py_raise(KVBM_E_INVAL, "unknown eviction policy number");
			return -1;
		}
		*out = (kvbm_evict_policy)v;
		return 0;
	}
	const char *name = PyUnicode_Check(o) ? PyUnicode_AsUTF8(o) : NULL;
	if (!name || kvbm_evict_policy_parse(name, out) != KVBM_OK) {
		if (!PyErr_Occurred())
			kvbm_py_raise(KVBM_E_INVAL, "unknown eviction policy (lru, fifo, multi-lru, "
						    "lineage, priority, s3fifo, 2q, arc, adaptive, vllm-arc)");
		return -1;
	}
	return 0;
}

static int parse_choice(const char *s, const char *const *names, int n, const char *what, int *out)
{
	for (int i = 0; s && i < n; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	if (s)
		PyErr_Format(PyExc_ValueError, "unknown %s %s", what, s);
	return s ? -1 : 0;
}

static int manager_init(kvbm_py_manager *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"block_count", "block_size", "tier", "policy", "dup_policy",
				 "reset_on_release", "catalog", "model_fingerprint", "hash_salt",
				 "catalog_sync", "catalog_batch", "catalog_interval_ms",
				 "catalog_reserve", "catalog_wait_ms", "catalog_max_failures",
				 "catalog_busy_ms", "catalog_discard_mismatch", "events",
				 "event_batch_max", "event_window_ms", "memory_volatile", NULL};
	static const char *const dups[] = {"allow", "reject"};
	static const char *const syncs[] = {"normal", "full", "off"};
	kvbm_config cfg;
	PyObject *policy = NULL, *catalog = Py_None, *events = Py_None, *path = NULL;
	const char *dup = NULL, *sync = NULL;
	int reset = 0, discard = 0, dupv = 0, syncv = 0, volatile_ = 0;
	unsigned long long salt = 0;

	if (self->mgr) {
		kvbm_py_raise(KVBM_E_MISUSE, "manager is already open");
		return -1;
	}
	kvbm_config_init(&cfg);
	if (!PyArg_ParseTupleAndKeywords(args, kw, "I|$IzOzpOzKzIIIIIIpOIIp", kwlist,
					 &cfg.block_count, &cfg.block_size, &cfg.tier, &policy,
					 &dup, &reset, &catalog, &cfg.model_fingerprint, &salt,
					 &sync, &cfg.catalog_batch, &cfg.catalog_interval_ms,
					 &cfg.catalog_reserve, &cfg.catalog_wait_ms,
					 &cfg.catalog_max_failures, &cfg.catalog_busy_ms, &discard,
					 &events, &cfg.event_batch_max, &cfg.event_window_ms,
					 &volatile_))
		return -1;
	/* No policy (or None): kvbm_config_init's, never one of our own. */
	if ((policy && policy != Py_None && parse_policy(policy, &cfg.evict_policy) < 0) ||
	    parse_choice(dup, dups, 2, "dup_policy", &dupv) < 0 ||
	    parse_choice(sync, syncs, 3, "catalog_sync", &syncv) < 0)
		return -1;
	cfg.dup_policy = (kvbm_dup_policy)dupv;
	cfg.catalog_sync = (kvbm_sync)syncv;
	cfg.reset_on_release = reset;
	cfg.catalog_discard_mismatch = discard;
	cfg.memory_volatile = volatile_;
	cfg.hash_salt = salt;
	if (catalog != Py_None) {
		if (!PyUnicode_FSConverter(catalog, &path))
			return -1;
		cfg.catalog_path = PyBytes_AS_STRING(path);
	}
	if (events != Py_None) {
		if (PyUnicode_Check(events) && PyUnicode_CompareWithASCIIString(events, "pull") == 0) {
			cfg.event_sink = kvbm_event_pull_sink;
			self->pull = 1;
		} else if (PyCallable_Check(events)) {
			cfg.event_sink = py_sink;
			cfg.event_user = self;
			Py_INCREF(events);
			self->sink = events;
		} else {
			Py_XDECREF(path);
			PyErr_SetString(PyExc_TypeError, "events must be None, 'pull' or a callable");
			return -1;
		}
	}
	kvbm_manager *mgr = NULL;
	char err[256] = "";
	kvbm_status st;
	Py_BEGIN_ALLOW_THREADS /* opening may restore a large catalog */
	st = kvbm_open_ex(&cfg, &mgr, err, sizeof(err));
	Py_END_ALLOW_THREADS
	Py_XDECREF(path);
	if (st != KVBM_OK) {
		Py_CLEAR(self->sink);
		kvbm_py_raise(st, err);
		return -1;
	}
	self->mgr = mgr;
	return 0;
}

static kvbm_status close_mgr(kvbm_py_manager *self, unsigned flags)
{
	kvbm_manager *mgr = self->mgr;
	kvbm_status st = KVBM_OK;

	if (!mgr)
		return KVBM_OK;
	/* A hierarchy must not outlive its managers: detach it first. */
	if (self->hierarchy)
		kvbm_py_hierarchy_close(self->hierarchy);
	self->mgr = NULL; /* handles released later see a closed manager */
	/* The dispatcher may be inside the sink, waiting for the GIL. */
	Py_BEGIN_ALLOW_THREADS
	st = kvbm_close_ex(mgr, flags);
	Py_END_ALLOW_THREADS
	Py_CLEAR(self->sink);
	return st;
}

static void manager_dealloc(kvbm_py_manager *self)
{
	if (self->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)self);
	close_mgr(self, 0);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *manager_close(kvbm_py_manager *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"discard", NULL};
	int discard = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", kwlist, &discard))
		return NULL;
	const kvbm_status st = close_mgr(self, discard ? KVBM_CLOSE_DISCARD : 0);
	if (st != KVBM_OK)
		return kvbm_py_raise(st, "final catalog commit failed");
	Py_RETURN_NONE;
}

static PyObject *manager_exit(kvbm_py_manager *self, PyObject *args)
{
	const kvbm_status st = close_mgr(self, 0);

	if (st != KVBM_OK)
		return kvbm_py_raise(st, "final catalog commit failed");
	Py_RETURN_FALSE;
}

static PyObject *manager_enter(PyObject *self, PyObject *unused)
{
	return Py_NewRef(self);
}

static PyObject *manager_flush(kvbm_py_manager *self, PyObject *unused)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_status st;

	if (!mgr)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	st = kvbm_flush(mgr);
	Py_END_ALLOW_THREADS
	if (st != KVBM_OK)
		return kvbm_py_raise_mgr(mgr, st);
	Py_RETURN_NONE;
}

static PyObject *manager_allocate(kvbm_py_manager *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"n", "evicted", NULL};
	unsigned int n;
	int want_evicted = 0;
	kvbm_manager *mgr = kvbm_py_mgr(self);

	if (!mgr || !PyArg_ParseTupleAndKeywords(args, kw, "I|$p", kwlist, &n, &want_evicted))
		return NULL;
	kvbm_mutable *out = PyMem_Malloc(n ? n * sizeof(*out) : 1);
	kvbm_hash *ev = PyMem_Malloc(n ? n * sizeof(*ev) : 1);
	kvbm_immutable *h = PyMem_Malloc(n ? n * sizeof(*h) : 1);
	uint32_t n_ev = 0;
	kvbm_status st = KVBM_E_NOMEM;
	PyObject *res = NULL;

	if (out && ev && h) {
		/* May wait for the catalog writer: let other threads run. */
		Py_BEGIN_ALLOW_THREADS
		st = kvbm_allocate_ex(mgr, n, out, ev, &n_ev);
		Py_END_ALLOW_THREADS
	}
	if (st != KVBM_OK) {
		res = st == KVBM_E_NOMEM && !(out && ev && h) ? PyErr_NoMemory()
							      : kvbm_py_raise_mgr(mgr, st);
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		h[i] = (kvbm_immutable){.block = out[i].block, .gen = out[i].gen};
	res = (PyObject *)kvbm_py_handles_new(self, KIND_MUTABLE, h, n);
	if (res && want_evicted) {
		PyObject *arr = kvbm_py_array('Q', ev, n_ev);
		PyObject *pair = arr ? PyTuple_Pack(2, res, arr) : NULL;
		Py_XDECREF(arr);
		Py_DECREF(res);
		res = pair;
	}
out:
	PyMem_Free(out);
	PyMem_Free(ev);
	PyMem_Free(h);
	return res;
}

static kvbm_py_handles *handles_arg(kvbm_py_manager *self, PyObject *o, int kind)
{
	static const char *names[] = {"mutable", "complete", "immutable"};

	if (!PyObject_TypeCheck(o, &kvbm_py_handles_type)) {
		PyErr_SetString(PyExc_TypeError, "expected kvbm.Handles");
		return NULL;
	}
	kvbm_py_handles *h = (kvbm_py_handles *)o;
	if (h->owner != self || (kind >= 0 && h->kind != kind)) {
		kvbm_py_raise(KVBM_E_INVAL, h->owner != self ? "handles belong to another manager"
							     : names[kind]);
		return NULL;
	}
	return h;
}

/* Stage entries idx[0..n) of m with hashes (and optional lineage), into
 * out. All or nothing: on failure the staged ones are rolled back and m
 * keeps valid (regenerated) mutable handles. */
static kvbm_status stage_entries(kvbm_manager *mgr, kvbm_py_handles *m, const uint64_t *idx,
				 Py_ssize_t n, const kvbm_hash *hashes, const kvbm_hash *parents,
				 const uint64_t *positions, kvbm_immutable *out)
{
	const uint32_t bs = kvbm_block_size(mgr);
	Py_ssize_t j = 0;
	kvbm_status st = KVBM_OK;

	for (; j < n; j++) {
		const Py_ssize_t i = idx ? (Py_ssize_t)idx[j] : j;
		const kvbm_mutable mu = {.block = m->h[i].block, .gen = m->h[i].gen};
		kvbm_complete c;
		st = positions ? kvbm_stage_lineage(mgr, mu, hashes[j], parents ? parents[j] : 0,
						    (uint32_t)positions[j], bs, &c)
			       : kvbm_stage(mgr, mu, hashes[j], bs, &c);
		if (st != KVBM_OK)
			break;
		out[j] = (kvbm_immutable){.block = c.block, .gen = c.gen};
	}
	if (st == KVBM_OK)
		return KVBM_OK;
	while (j-- > 0) { /* roll back: the caller keeps mutable handles */
		const Py_ssize_t i = idx ? (Py_ssize_t)idx[j] : j;
		kvbm_mutable mu;
		kvbm_unstage(mgr, (kvbm_complete){.block = out[j].block, .gen = out[j].gen}, &mu);
		m->h[i] = (kvbm_immutable){.block = mu.block, .gen = mu.gen};
	}
	return st;
}

/* The arrays of a stage/commit call, checked against each other. */
struct stage_args {
	kvbm_py_ints hashes, idx, parents, positions;
};

static void stage_args_release(struct stage_args *a)
{
	kvbm_py_ints_release(&a->hashes);
	kvbm_py_ints_release(&a->idx);
	kvbm_py_ints_release(&a->parents);
	kvbm_py_ints_release(&a->positions);
}

static int stage_args_get(kvbm_py_handles *m, PyObject *hashes, PyObject *indices,
			  PyObject *parents, PyObject *positions, struct stage_args *a)
{
	memset(a, 0, sizeof(*a));
	if (kvbm_py_ints_get(hashes, 8, &a->hashes) < 0 ||
	    (indices != Py_None && kvbm_py_ints_get(indices, 8, &a->idx) < 0) ||
	    (parents != Py_None && kvbm_py_ints_get(parents, 8, &a->parents) < 0) ||
	    (positions != Py_None && kvbm_py_ints_get(positions, 8, &a->positions) < 0))
		goto fail;
	const Py_ssize_t n = a->hashes.n;
	if ((indices != Py_None ? a->idx.n : m->n) != n ||
	    (parents != Py_None && a->parents.n != n) ||
	    (positions != Py_None && a->positions.n != n)) {
		kvbm_py_raise(KVBM_E_INVAL, "hashes, indices, parents and positions differ in length");
		goto fail;
	}
	for (Py_ssize_t j = 0; indices != Py_None && j < n; j++)
		if (((const uint64_t *)a->idx.p)[j] >= (uint64_t)m->n) {
			PyErr_SetString(PyExc_IndexError, "handle index out of range");
			goto fail;
		}
	return 0;
fail:
	stage_args_release(a);
	return -1;
}

/* Empty the consumed entries of m. */
static void consume(kvbm_py_handles *m, const uint64_t *idx, Py_ssize_t n)
{
	for (Py_ssize_t j = 0; j < n; j++) {
		const Py_ssize_t i = idx ? (Py_ssize_t)idx[j] : j;
		if (m->h[i].gen) {
			m->h[i] = (kvbm_immutable){0};
			m->live--;
		}
	}
}

PyDoc_STRVAR(stage_doc,
"stage(mutables, hashes, *, parents=None, positions=None) -> Handles\n\n"
"Seal every mutable block with its sequence hash (and lineage when\n"
"positions is given): returns complete handles and empties `mutables`.\n"
"All or nothing: on error nothing is staged and `mutables` stays usable.");

static PyObject *manager_stage(kvbm_py_manager *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"mutables", "hashes", "parents", "positions", NULL};
	PyObject *mo, *hashes, *parents = Py_None, *positions = Py_None;
	struct stage_args a;
	kvbm_manager *mgr = kvbm_py_mgr(self);

	if (!mgr || !PyArg_ParseTupleAndKeywords(args, kw, "OO|$OO", kwlist, &mo, &hashes,
						 &parents, &positions))
		return NULL;
	kvbm_py_handles *m = handles_arg(self, mo, KIND_MUTABLE);
	if (!m || stage_args_get(m, hashes, Py_None, parents, positions, &a) < 0)
		return NULL;
	const Py_ssize_t n = a.hashes.n;
	kvbm_immutable *out = PyMem_Malloc(n ? (size_t)n * sizeof(*out) : 1);
	PyObject *res = NULL;
	if (!out) {
		res = PyErr_NoMemory();
	} else {
		const kvbm_status st = stage_entries(mgr, m, NULL, n, a.hashes.p, a.parents.p,
						     a.positions.p, out);
		if (st != KVBM_OK) {
			res = kvbm_py_raise_mgr(mgr, st);
		} else {
			consume(m, NULL, n);
			res = (PyObject *)kvbm_py_handles_new(self, KIND_COMPLETE, out, n);
		}
	}
	PyMem_Free(out);
	stage_args_release(&a);
	return res;
}

static PyObject *manager_register(kvbm_py_manager *self, PyObject *arg)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_py_handles *c = mgr ? handles_arg(self, arg, KIND_COMPLETE) : NULL;

	if (!c)
		return NULL;
	kvbm_complete *in = PyMem_Malloc(c->n ? (size_t)c->n * sizeof(*in) : 1);
	kvbm_immutable *out = PyMem_Malloc(c->n ? (size_t)c->n * sizeof(*out) : 1);
	PyObject *res = NULL;
	if (!in || !out) {
		res = PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < c->n; i++)
		in[i] = (kvbm_complete){.block = c->h[i].block, .gen = c->h[i].gen};
	const kvbm_status st = kvbm_register_batch(mgr, in, (uint32_t)c->n, out);
	if (st != KVBM_OK) {
		res = kvbm_py_raise_mgr(mgr, st);
		goto out;
	}
	consume(c, NULL, c->n);
	res = (PyObject *)kvbm_py_handles_new(self, KIND_IMMUTABLE, out, c->n);
out:
	PyMem_Free(in);
	PyMem_Free(out);
	return res;
}

PyDoc_STRVAR(commit_doc,
"commit(mutables, hashes, *, indices=None, parents=None, positions=None,\n"
"       tail_first=True) -> int\n\n"
"Stage, register and release in one call: the blocks become cached\n"
"(inactive, matchable, evictable). `indices` picks entries of `mutables`\n"
"(default: all, in order), hashes[j] goes with entry indices[j]; those\n"
"entries are emptied. Released tail first (the last hash is evicted\n"
"first) unless tail_first=False (array order: the first is evicted first).\n"
"Returns the number of blocks committed.");

static PyObject *manager_commit(kvbm_py_manager *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"mutables", "hashes", "indices", "parents", "positions",
				 "tail_first", NULL};
	PyObject *mo, *hashes, *indices = Py_None, *parents = Py_None, *positions = Py_None;
	int tail_first = 1;
	struct stage_args a;
	kvbm_manager *mgr = kvbm_py_mgr(self);

	if (!mgr || !PyArg_ParseTupleAndKeywords(args, kw, "OO|$OOOp", kwlist, &mo, &hashes,
						 &indices, &parents, &positions, &tail_first))
		return NULL;
	kvbm_py_handles *m = handles_arg(self, mo, KIND_MUTABLE);
	if (!m || stage_args_get(m, hashes, indices, parents, positions, &a) < 0)
		return NULL;
	const Py_ssize_t n = a.hashes.n;
	kvbm_immutable *staged = PyMem_Malloc(n ? (size_t)n * sizeof(*staged) : 1);
	kvbm_complete *cs = PyMem_Malloc(n ? (size_t)n * sizeof(*cs) : 1);
	kvbm_immutable *refs = PyMem_Malloc(n ? (size_t)n * sizeof(*refs) : 1);
	PyObject *res = NULL;
	if (!staged || !cs || !refs) {
		res = PyErr_NoMemory();
		goto out;
	}
	kvbm_status st = stage_entries(mgr, m, a.idx.p, n, a.hashes.p, a.parents.p,
				       a.positions.p, staged);
	if (st != KVBM_OK) {
		res = kvbm_py_raise_mgr(mgr, st);
		goto out;
	}
	consume(m, a.idx.p, n);
	for (Py_ssize_t j = 0; j < n; j++)
		cs[j] = (kvbm_complete){.block = staged[j].block, .gen = staged[j].gen};
	st = kvbm_register_batch(mgr, cs, (uint32_t)n, refs);
	if (st != KVBM_OK) { /* nothing registered: give the blocks back */
		for (Py_ssize_t j = 0; j < n; j++)
			kvbm_complete_release(mgr, cs[j]);
		res = kvbm_py_raise_mgr(mgr, st);
		goto out;
	}
	/* Tail first, so a sequence's tail is evicted before its prefix
	 * (or in array order, as vLLM's managers insert). */
	for (Py_ssize_t j = 0; tail_first && j < n / 2; j++) {
		const kvbm_immutable t = refs[j];
		refs[j] = refs[n - 1 - j];
		refs[n - 1 - j] = t;
	}
	st = kvbm_immutable_release_batch(mgr, refs, (uint32_t)n);
	res = st == KVBM_OK ? PyLong_FromSsize_t(n) : kvbm_py_raise_mgr(mgr, st);
out:
	PyMem_Free(staged);
	PyMem_Free(cs);
	PyMem_Free(refs);
	stage_args_release(&a);
	return res;
}

static PyObject *match_common(kvbm_py_manager *self, PyObject *arg, int scattered)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_py_ints h;

	if (!mgr || kvbm_py_ints_get(arg, 8, &h) < 0)
		return NULL;
	kvbm_immutable *out = PyMem_Malloc(h.n ? (size_t)h.n * sizeof(*out) : 1);
	uint32_t got = 0;
	PyObject *res;
	if (!out) {
		kvbm_py_ints_release(&h);
		return PyErr_NoMemory();
	}
	const kvbm_status st = scattered
				       ? kvbm_match_scattered(mgr, h.p, (uint32_t)h.n, out, &got)
				       : kvbm_match(mgr, h.p, (uint32_t)h.n, out, &got);
	if (st != KVBM_OK)
		res = kvbm_py_raise_mgr(mgr, st);
	else
		res = (PyObject *)kvbm_py_handles_new(self, KIND_IMMUTABLE, out,
						      scattered ? h.n : (Py_ssize_t)got);
	PyMem_Free(out);
	kvbm_py_ints_release(&h);
	return res;
}

static PyObject *manager_pin(kvbm_py_manager *self, PyObject *arg)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_py_ints h;

	if (!mgr || kvbm_py_ints_get(arg, 8, &h) < 0)
		return NULL;
	kvbm_immutable *out = PyMem_Malloc(h.n ? (size_t)h.n * sizeof(*out) : 1);
	uint32_t got = 0;
	PyObject *res;
	if (!out) {
		kvbm_py_ints_release(&h);
		return PyErr_NoMemory();
	}
	const kvbm_status st = kvbm_pin(mgr, h.p, (uint32_t)h.n, out, &got);
	res = st == KVBM_OK ? (PyObject *)kvbm_py_handles_new(self, KIND_PINNED, out, h.n)
			    : kvbm_py_raise_mgr(mgr, st);
	PyMem_Free(out);
	kvbm_py_ints_release(&h);
	return res;
}

static PyObject *manager_match(kvbm_py_manager *self, PyObject *arg)
{
	return match_common(self, arg, 0);
}

static PyObject *manager_match_scattered(kvbm_py_manager *self, PyObject *arg)
{
	return match_common(self, arg, 1);
}

static PyObject *manager_contains(kvbm_py_manager *self, PyObject *arg)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_py_ints h;
	uint32_t count = 0, prefix = 0;

	if (!mgr || kvbm_py_ints_get(arg, 8, &h) < 0)
		return NULL;
	const kvbm_status st = kvbm_contains(mgr, h.p, (uint32_t)h.n, NULL, &count, &prefix);
	kvbm_py_ints_release(&h);
	if (st != KVBM_OK)
		return kvbm_py_raise_mgr(mgr, st);
	return Py_BuildValue("(II)", prefix, count);
}

static PyObject *manager_present(kvbm_py_manager *self, PyObject *arg)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_py_ints h;

	if (!mgr || kvbm_py_ints_get(arg, 8, &h) < 0)
		return NULL;
	bool *flags = PyMem_Malloc(h.n ? (size_t)h.n : 1);
	PyObject *res = NULL;
	if (!flags) {
		res = PyErr_NoMemory();
	} else {
		const kvbm_status st = kvbm_contains(mgr, h.p, (uint32_t)h.n, flags, NULL, NULL);
		if (st != KVBM_OK) {
			res = kvbm_py_raise_mgr(mgr, st);
		} else if ((res = PyBytes_FromStringAndSize(NULL, h.n))) {
			for (Py_ssize_t i = 0; i < h.n; i++)
				PyBytes_AS_STRING(res)[i] = flags[i] ? 1 : 0;
		}
	}
	PyMem_Free(flags);
	kvbm_py_ints_release(&h);
	return res;
}

static PyObject *manager_touch(kvbm_py_manager *self, PyObject *arg)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_py_ints h;
	uint32_t moved = 0;

	if (!mgr || kvbm_py_ints_get(arg, 8, &h) < 0)
		return NULL;
	const kvbm_status st = kvbm_touch(mgr, h.p, (uint32_t)h.n, &moved);
	kvbm_py_ints_release(&h);
	if (st != KVBM_OK)
		return kvbm_py_raise_mgr(mgr, st);
	return PyLong_FromUnsignedLong(moved);
}

static PyObject *manager_locate(kvbm_py_manager *self, PyObject *arg)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_py_ints h;

	if (!mgr || kvbm_py_ints_get(arg, 8, &h) < 0)
		return NULL;
	uint32_t *blocks = PyMem_Malloc(h.n ? (size_t)h.n * sizeof(*blocks) : 1);
	PyObject *res;
	if (!blocks) {
		res = PyErr_NoMemory();
	} else {
		const kvbm_status st = kvbm_locate(mgr, h.p, (uint32_t)h.n, blocks, NULL);
		res = st == KVBM_OK ? kvbm_py_array('I', blocks, h.n) : kvbm_py_raise_mgr(mgr, st);
	}
	PyMem_Free(blocks);
	kvbm_py_ints_release(&h);
	return res;
}

static PyObject *manager_retain(kvbm_py_manager *self, PyObject *arg)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_py_handles *src = mgr ? handles_arg(self, arg, KIND_IMMUTABLE) : NULL;

	if (!src)
		return NULL;
	kvbm_py_handles *res = kvbm_py_handles_new(self, KIND_IMMUTABLE, NULL, src->n);
	for (Py_ssize_t i = 0; res && i < src->n; i++) {
		if (!src->h[i].gen)
			continue;
		const kvbm_status st = kvbm_immutable_retain(mgr, src->h[i], &res->h[i]);
		if (st != KVBM_OK) {
			Py_DECREF(res); /* releases the ones taken */
			return kvbm_py_raise_mgr(mgr, st);
		}
		res->live++;
	}
	return (PyObject *)res;
}

static PyObject *manager_set_priority(kvbm_py_manager *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"handles", "priority", "retention", NULL};
	PyObject *ho;
	unsigned int prio, retention = 0;
	kvbm_manager *mgr = kvbm_py_mgr(self);

	if (!mgr || !PyArg_ParseTupleAndKeywords(args, kw, "OI|I", kwlist, &ho, &prio, &retention))
		return NULL;
	kvbm_py_handles *h = handles_arg(self, ho, KIND_IMMUTABLE);
	for (Py_ssize_t i = 0; h && i < h->n; i++) {
		const kvbm_status st =
			h->h[i].gen ? kvbm_immutable_set_priority(mgr, h->h[i], prio, retention) : KVBM_OK;
		if (st != KVBM_OK)
			return kvbm_py_raise_mgr(mgr, st);
	}
	if (!h)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *manager_set_reset_on_release(kvbm_py_manager *self, PyObject *args)
{
	PyObject *ho;
	int flag = 1;
	kvbm_manager *mgr = kvbm_py_mgr(self);

	if (!mgr || !PyArg_ParseTuple(args, "O|p", &ho, &flag))
		return NULL;
	kvbm_py_handles *h = handles_arg(self, ho, KIND_IMMUTABLE);
	for (Py_ssize_t i = 0; h && i < h->n; i++) {
		const kvbm_status st =
			h->h[i].gen ? kvbm_immutable_set_reset_on_release(mgr, h->h[i], flag) : KVBM_OK;
		if (st != KVBM_OK)
			return kvbm_py_raise_mgr(mgr, st);
	}
	if (!h)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *manager_block_info(kvbm_py_manager *self, PyObject *arg)
{
	static const char *states[] = {"reset", "mutable", "staged", "registered", "duplicate",
				       "inactive"};
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_block_info bi;

	if (!mgr)
		return NULL;
	const unsigned long b = PyLong_AsUnsignedLong(arg);
	if (b == (unsigned long)-1 && PyErr_Occurred())
		return NULL;
	const kvbm_status st = kvbm_block_info_read(mgr, (uint32_t)b, &bi);
	if (st != KVBM_OK)
		return kvbm_py_raise_mgr(mgr, st);
	return Py_BuildValue("{s:I,s:s,s:I,s:I,s:K,s:K,s:O}", "block", bi.block, "state",
			     states[bi.state], "ref_count", bi.ref_count, "position", bi.position,
			     "hash", (unsigned long long)bi.hash, "parent_hash",
			     (unsigned long long)bi.parent_hash, "reset_on_release",
			     bi.reset_on_release ? Py_True : Py_False);
}

static PyObject *manager_reset_inactive(kvbm_py_manager *self, PyObject *unused)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	uint32_t n = 0;

	if (!mgr)
		return NULL;
	const kvbm_status st = kvbm_reset_inactive(mgr, &n);
	return st == KVBM_OK ? PyLong_FromUnsignedLong(n) : kvbm_py_raise_mgr(mgr, st);
}

static PyObject *manager_pool_counts(kvbm_py_manager *self, PyObject *unused)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_pool_counts c;

	if (!mgr)
		return NULL;
	const kvbm_status st = kvbm_pool_counts_read(mgr, &c);
	if (st != KVBM_OK)
		return kvbm_py_raise_mgr(mgr, st);
	return Py_BuildValue("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "total", c.total, "reset",
			     c.reset, "inactive", c.inactive, "mutable", c.mutable_, "staged",
			     c.staged, "registered", c.registered, "duplicate", c.duplicate,
			     "registry", c.registry);
}

static PyObject *manager_available_blocks(kvbm_py_manager *self, PyObject *unused)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);

	return mgr ? PyLong_FromUnsignedLong(kvbm_available_blocks(mgr)) : NULL;
}

#define M(f) {#f, offsetof(kvbm_metrics, f), 0}
#define MS(f) {#f, offsetof(kvbm_metrics, f), 1}
static const struct {
	const char *name;
	size_t off;
	int is_signed;
} metric_fields[] = {
	M(allocations), M(allocations_from_reset), M(evictions), M(registrations),
	M(duplicates), M(dedups), M(stagings), M(match_hashes_requested),
	M(match_blocks_returned), M(scan_hashes_requested), M(scan_blocks_returned),
	M(resurrections), M(stale_handles), M(inflight_mutable), M(inflight_immutable),
	M(reset_pool), M(inactive_pool), M(catalog_rows_queued), M(catalog_rows_committed),
	M(catalog_reclaim_rows), M(catalog_blocks_reclaimed), M(catalog_rows_coalesced),
	M(catalog_commits), M(catalog_failures), M(catalog_alloc_waits),
	M(catalog_flush_ns_last), M(catalog_flush_ns_max), M(catalog_pending),
	M(catalog_reserve), M(catalog_reserve_target), M(catalog_failing),
	MS(catalog_last_error), M(events_emitted), M(event_batches), M(events_dropped),
	M(block_count), M(prefix_cache_queries), M(prefix_cache_hits),
	M(catalog_flush_count), M(catalog_flush_ns_sum),
};
#define N_METRIC_FIELDS (sizeof(metric_fields) / sizeof(metric_fields[0]))
/* Every field is 8 bytes and the histogram comes last: a field added to
 * kvbm_metrics without a line here fails the build. */
_Static_assert(offsetof(kvbm_metrics, catalog_flush_buckets) == N_METRIC_FIELDS * 8,
	       "python/kvbm/manager.c: metric_fields does not list every kvbm_metrics field");
_Static_assert(sizeof(kvbm_metrics) == (N_METRIC_FIELDS + KVBM_FLUSH_BUCKETS) * 8,
	       "python/kvbm/manager.c: fields after catalog_flush_buckets");

static PyObject *manager_metrics(kvbm_py_manager *self, PyObject *unused)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_metrics m;

	if (!mgr)
		return NULL;
	const kvbm_status st = kvbm_metrics_read(mgr, &m);
	if (st != KVBM_OK)
		return kvbm_py_raise_mgr(mgr, st);
	PyObject *d = PyDict_New();
	for (size_t i = 0; d && i < sizeof(metric_fields) / sizeof(metric_fields[0]); i++) {
		const char *p = (const char *)&m + metric_fields[i].off;
		uint64_t u;
		int64_t s;
		memcpy(&u, p, 8);
		memcpy(&s, p, 8);
		PyObject *v = metric_fields[i].is_signed ? PyLong_FromLongLong(s)
							 : PyLong_FromUnsignedLongLong(u);
		if (!v || PyDict_SetItemString(d, metric_fields[i].name, v) < 0)
			Py_CLEAR(d);
		Py_XDECREF(v);
	}
	/* The flush-latency histogram: a list, bucket i up to bound i. */
	PyObject *buckets = d ? PyList_New(KVBM_FLUSH_BUCKETS) : NULL;
	for (Py_ssize_t i = 0; buckets && i < KVBM_FLUSH_BUCKETS; i++) {
		PyObject *v = PyLong_FromUnsignedLongLong(m.catalog_flush_buckets[i]);
		if (!v) {
			Py_CLEAR(buckets);
			break;
		}
		PyList_SET_ITEM(buckets, i, v);
	}
	if (!buckets || PyDict_SetItemString(d, "catalog_flush_buckets", buckets) < 0)
		Py_CLEAR(d);
	Py_XDECREF(buckets);
	return d;
}

static PyObject *manager_prometheus(kvbm_py_manager *self, PyObject *unused)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	size_t needed = 0;

	if (!mgr)
		return NULL;
	/* Size, then render; retry if a counter grew a digit in between. */
	for (int tries = 0; tries < 4; tries++) {
		kvbm_status st = kvbm_metrics_format(mgr, NULL, 0, &needed);
		if (st != KVBM_OK && st != KVBM_E_SIZE)
			return kvbm_py_raise_mgr(mgr, st);
		const size_t len = needed + 256;
		char *buf = PyMem_Malloc(len);
		if (!buf)
			return PyErr_NoMemory();
		st = kvbm_metrics_format(mgr, buf, len, &needed);
		PyObject *res = st == KVBM_OK ? PyUnicode_FromString(buf) : NULL;
		PyMem_Free(buf);
		if (st == KVBM_OK)
			return res;
		if (st != KVBM_E_SIZE)
			return kvbm_py_raise_mgr(mgr, st);
	}
	return kvbm_py_raise(KVBM_E_SIZE, "metrics text kept growing");
}

PyDoc_STRVAR(take_events_doc,
"take_events(max_events=0) -> list[Event]\n\n"
"Drain queued events (pull mode: Manager(events='pull')), oldest first;\n"
"max_events=0 takes everything. Synchronous: the events of a call are\n"
"there as soon as it returns.");

static PyObject *manager_take_events(kvbm_py_manager *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"max_events", NULL};
	Py_ssize_t max = 0;
	kvbm_manager *mgr = kvbm_py_mgr(self);

	if (!mgr || !PyArg_ParseTupleAndKeywords(args, kw, "|n", kwlist, &max))
		return NULL;
	PyObject *all = PyList_New(0);
	kvbm_event buf[256];
	while (all) {
		const size_t cap = max > 0 && (size_t)(max - PyList_GET_SIZE(all)) < 256
					   ? (size_t)(max - PyList_GET_SIZE(all))
					   : 256;
		size_t n = 0;
		if (cap == 0)
			break;
		const kvbm_status st = kvbm_events_take(mgr, buf, cap, &n, NULL);
		if (st != KVBM_OK) {
			Py_DECREF(all);
			return kvbm_py_raise_mgr(mgr, st);
		}
		if (n == 0) /* a call takes at most event_batch_max: drain until empty */
			break;
		PyObject *chunk = event_list(buf, n);
		if (!chunk || PyList_SetSlice(all, PyList_GET_SIZE(all), PyList_GET_SIZE(all), chunk) < 0)
			Py_CLEAR(all);
		Py_XDECREF(chunk);
	}
	return all;
}

static PyObject *manager_last_error(kvbm_py_manager *self, PyObject *unused)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	kvbm_status code = KVBM_OK;
	char buf[256] = "";

	if (!mgr)
		return NULL;
	kvbm_last_error(mgr, &code, buf, sizeof(buf));
	return Py_BuildValue("(is)", (int)code, buf);
}

static PyObject *get_total(kvbm_py_manager *self, void *c)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	return mgr ? PyLong_FromUnsignedLong(kvbm_total_blocks(mgr)) : NULL;
}

static PyObject *get_block_size(kvbm_py_manager *self, void *c)
{
	kvbm_manager *mgr = kvbm_py_mgr(self);
	return mgr ? PyLong_FromUnsignedLong(kvbm_block_size(mgr)) : NULL;
}

static PyObject *get_closed(kvbm_py_manager *self, void *c)
{
	return PyBool_FromLong(self->mgr == NULL);
}

#define KW (METH_VARARGS | METH_KEYWORDS)
#define CF(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef manager_methods[] = {
	{"close", CF(manager_close), KW,
	 "close(*, discard=False)\n\nCommit the catalog and free the manager (discard=True: a\n"
	 "simulated crash, unflushed changes dropped). Idempotent."},
	{"__enter__", manager_enter, METH_NOARGS, NULL},
	{"__exit__", CF(manager_exit), METH_VARARGS, "close()"},
	{"flush", CF(manager_flush), METH_NOARGS,
	 "flush()\n\nWait until every queued catalog change is committed (GIL released)."},
	{"allocate", CF(manager_allocate), KW,
	 "allocate(n, *, evicted=False) -> Handles | (Handles, array('Q'))\n\n"
	 "Take n blocks, all or nothing, evicting in policy order; with evicted=True\n"
	 "also return the evicted hashes. May wait on the catalog (GIL released)."},
	{"stage", CF(manager_stage), KW, stage_doc},
	{"register", CF(manager_register), METH_O,
	 "register(completes) -> Handles\n\nRegister staged blocks (one lock, all or nothing);\n"
	 "returns one immutable reference per block and empties `completes`."},
	{"commit", CF(manager_commit), KW, commit_doc},
	{"match", CF(manager_match), METH_O,
	 "match(hashes) -> Handles\n\nLongest-prefix match: references to the leading hashes\n"
	 "that are registered (len() is the match length)."},
	{"match_scattered", CF(manager_match_scattered), METH_O,
	 "match_scattered(hashes) -> Handles\n\nOne entry per hash; misses are empty entries."},
	{"pin", CF(manager_pin), METH_O,
	 "pin(hashes) -> Handles\n\nkvbm_pin: one pinned entry per hash (misses empty): never\n"
	 "evicted, no hit counted; release() unpins, keeping the block's place."},
	{"contains", CF(manager_contains), METH_O,
	 "contains(hashes) -> (prefix, count)\n\nPresence query: takes no references and leaves\n"
	 "the eviction order alone."},
	{"present", CF(manager_present), METH_O,
	 "present(hashes) -> bytes\n\nOne 0/1 byte per hash (numpy: np.frombuffer(.., bool))."},
	{"peek_victims", CF(kvbm_py_peek_victims), METH_O,
	 "peek_victims(n) -> (blocks: array('I'), hashes: array('Q'))\n\n"
	 "The next n cached blocks this tier would evict, in order, changing nothing\n"
	 "(kvbm_peek_victims). kvbm.Unsupported for lineage, s3fifo and vllm-arc."},
	{"stage_from", CF(kvbm_py_stage_from), METH_VARARGS,
	 "stage_from(mutables, source, hashes) -> Handles\n\n"
	 "Stage every mutable handle with hashes[i] and the lineage `source` (another\n"
	 "Manager, the tier the data was copied from) has for it (kvbm_stage_from);\n"
	 "returns complete handles and empties `mutables`. All or nothing:\n"
	 "kvbm.NotFound when source lacks a hash."},
	{"touch", CF(manager_touch), METH_O,
	 "touch(hashes) -> int\n\nRefresh recency without counting a hit (kvbm_touch);\n"
	 "returns the number of inactive blocks moved."},
	{"locate", CF(manager_locate), METH_O,
	 "locate(hashes) -> array('I')\n\nBlock id holding each hash, 0xFFFFFFFF if absent; takes no\n"
	 "references and changes no recency (kvbm_locate)."},
	{"retain", CF(manager_retain), METH_O,
	 "retain(handles) -> Handles\n\nOne more reference to each live immutable entry."},
	{"set_priority", CF(manager_set_priority), KW,
	 "set_priority(handles, priority, retention=0)\n\nkvbm_immutable_set_priority per entry."},
	{"set_reset_on_release", CF(manager_set_reset_on_release), METH_VARARGS,
	 "set_reset_on_release(handles, flag=True)"},
	{"block_info", CF(manager_block_info), METH_O, "block_info(block) -> dict"},
	{"reset_inactive", CF(manager_reset_inactive), METH_NOARGS,
	 "reset_inactive() -> int\n\nDrop every cached (inactive) block."},
	{"pool_counts", CF(manager_pool_counts), METH_NOARGS, "pool_counts() -> dict"},
	{"available_blocks", CF(manager_available_blocks), METH_NOARGS,
	 "available_blocks() -> int\n\nReset + inactive blocks."},
	{"metrics", CF(manager_metrics), METH_NOARGS, "metrics() -> dict of every counter and gauge"},
	{"prometheus", CF(manager_prometheus), METH_NOARGS,
	 "prometheus() -> str\n\nMetrics in Prometheus text format 0.0.4."},
	{"take_events", CF(manager_take_events), KW, take_events_doc},
	{"last_error", CF(manager_last_error), METH_NOARGS,
	 "last_error() -> (status, message)\n\nThe most recent error on this manager, any thread."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef manager_getset[] = {
	{"total_blocks", (getter)get_total, NULL, "configured block_count", NULL},
	{"block_size", (getter)get_block_size, NULL, "tokens per block", NULL},
	{"closed", (getter)get_closed, NULL, "True after close()", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject kvbm_py_manager_type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "kvbm.Manager",
	.tp_basicsize = sizeof(kvbm_py_manager),
	.tp_dealloc = (destructor)manager_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "Manager(block_count, *, block_size=16, tier='G1', policy=None,\n"
		  "        dup_policy='allow', reset_on_release=False, catalog=None,\n"
		  "        model_fingerprint=None, hash_salt=0, catalog_sync='normal', ...,\n"
		  "        events=None | 'pull' | callable(events, incarnation, seq))\n\n"
		  "A kvbm block manager (kvbm_open); a context manager that closes on exit.\n"
		  "policy: a name of kvbm.POLICIES or the enum value; None or left out:\n"
		  "the C library's default (kvbm_config_init), 'adaptive'.",
	.tp_weaklistoffset = offsetof(kvbm_py_manager, weakrefs),
	.tp_methods = manager_methods,
	.tp_getset = manager_getset,
	.tp_init = (initproc)manager_init,
	.tp_new = PyType_GenericNew,
};
