/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replaying a trace against a real kvbm manager (the model is in
 * replay.h). A request longer than the whole cache cannot be served: its
 * blocks count as misses and it is skipped. A restart closes the manager
 * without the clean-shutdown path (or SIGKILLs a child that ran the first
 * part) and reopens it from its catalog, the way a crashed server comes
 * back.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "replay.h"

static int fail_kvbm(char *err, size_t len, kvbm_manager *mgr, kvbm_status st, const char *what)
{
	char msg[256] = "";

	if (mgr)
		kvbm_last_error(mgr, NULL, msg, sizeof(msg));
	snprintf(err, len, "%s: %s%s%s", what, kvbm_strerror(st), *msg ? ": " : "", msg);
	return -1;
}

static kvbm_status open_manager(const struct kvbm_replay_opts *o, kvbm_manager **mgr, char *err,
				size_t errlen)
{
	kvbm_config cfg;
	char msg[256];

	kvbm_config_init(&cfg);
	cfg.block_count = o->capacity;
	cfg.block_size = o->block_size ? o->block_size : 16;
	cfg.evict_policy = o->policy;
	cfg.catalog_path = o->db;
	const kvbm_status st = kvbm_open_ex(&cfg, mgr, msg, sizeof(msg));
	if (st != KVBM_OK)
		snprintf(err, errlen, "cannot open manager%s%s: %s", o->db ? " on " : "",
			 o->db ? o->db : "", msg);
	return st;
}

struct scratch {
	kvbm_immutable *refs, *rev;
	kvbm_mutable *mut;
	kvbm_complete *done;
};

static int scratch_init(struct scratch *s, uint32_t cap)
{
	s->refs = malloc(cap * sizeof(*s->refs));
	s->rev = malloc(cap * sizeof(*s->rev));
	s->mut = malloc(cap * sizeof(*s->mut));
	s->done = malloc(cap * sizeof(*s->done));
	return s->refs && s->rev && s->mut && s->done ? 0 : -1;
}

static void scratch_free(struct scratch *s)
{
	free(s->refs);
	free(s->rev);
	free(s->mut);
	free(s->done);
}

/* Serve request r. Adds to hits/evictions; returns a kvbm status. */
static kvbm_status serve(kvbm_manager *mgr, const struct kvbm_trace *t, uint32_t r,
			 uint32_t block_size, struct scratch *s, uint64_t *hits,
			 uint64_t *evictions)
{
	const uint32_t off = t->offsets[r], n = t->offsets[r + 1] - off;
	const kvbm_hash *h = t->hashes + off;
	uint32_t hit = 0, ev = 0;
	kvbm_status st;

	if (n == 0)
		return KVBM_OK;
	if ((st = kvbm_match(mgr, h, n, s->refs, &hit)) != KVBM_OK)
		return st;
	const uint32_t miss = n - hit;
	if (miss > 0) {
		st = kvbm_allocate_ex(mgr, miss, s->mut, NULL, &ev);
		if (st != KVBM_OK) {
			kvbm_immutable_release_batch(mgr, s->refs, hit);
			return st;
		}
		for (uint32_t i = 0; i < miss; i++) {
			const uint32_t pos = hit + i;
			st = kvbm_stage_lineage(mgr, s->mut[i], h[pos], t->parents[off + pos], pos,
						block_size, &s->done[i]);
			if (st != KVBM_OK)
				return st;
		}
		if ((st = kvbm_register_batch(mgr, s->done, miss, s->refs + hit)) != KVBM_OK)
			return st;
	}
	for (uint32_t i = 0; i < n; i++)
		s->rev[i] = s->refs[n - 1 - i];
	*hits += hit;
	*evictions += ev;
	return kvbm_immutable_release_batch(mgr, s->rev, n);
}

struct window {
	uint64_t refs, hits, evictions, requests;
};

/* Replay requests [first, last) on mgr. */
static int run_range(kvbm_manager *mgr, const struct kvbm_trace *t,
		     const struct kvbm_replay_opts *o, uint32_t first, uint32_t last,
		     struct scratch *s, struct window *w, char *err, size_t errlen)
{
	const uint32_t bs = o->block_size ? o->block_size : 16;
	const uint32_t total = (o->last ? o->last : t->n_requests) - o->first;

	for (uint32_t r = first; r < last; r++) {
		const uint32_t n = t->offsets[r + 1] - t->offsets[r];
		w->refs += n;
		w->requests++;
		if (n > o->capacity)
			continue; /* cannot be served by a cache this small: all misses */
		const kvbm_status st = serve(mgr, t, r, bs, s, &w->hits, &w->evictions);
		if (st != KVBM_OK) {
			char what[64];
			snprintf(what, sizeof(what), "request %u", r);
			return fail_kvbm(err, errlen, mgr, st, what);
		}
		if (o->progress && (r & 63) == 0)
			o->progress(r - o->first, total, o->progress_user);
	}
	return 0;
}

/* What the child of a SIGKILL restart tells its parent before it is
 * killed: its counts and, when it failed, its own message. One write of
 * less than PIPE_BUF bytes, so it arrives whole or not at all. */
struct child_report {
	int ok;
	struct window w;
	char err[400];
};

/* The first part in a child that is SIGKILLed once it reports it is done
 * (after its writer committed what it had, as a live server would). w gets
 * the child's counts, err its message when it failed. */
static int run_child_and_kill(const struct kvbm_trace *t, const struct kvbm_replay_opts *o,
			      uint32_t until, struct window *w, char *err, size_t errlen)
{
	int fds[2];

	if (pipe(fds) != 0) {
		snprintf(err, errlen, "pipe: cannot create");
		return -1;
	}
	fflush(NULL);
	const pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: cannot create the child");
		return -1;
	}
	if (pid == 0) {
		kvbm_manager *mgr = NULL;
		struct scratch s = {0};
		struct child_report rep = {0};
		close(fds[0]);
		struct kvbm_replay_opts co = *o;
		co.progress = NULL;
		kvbm_status st;
		if (open_manager(o, &mgr, rep.err, sizeof(rep.err)) != KVBM_OK)
			;
		else if (scratch_init(&s, o->capacity) != 0)
			snprintf(rep.err, sizeof(rep.err), "out of memory for a %u-block replay",
				 o->capacity);
		else if (run_range(mgr, t, &co, o->first, until, &s, &rep.w, rep.err,
				   sizeof(rep.err)) != 0)
			;
		else if ((st = kvbm_flush(mgr)) != KVBM_OK)
			fail_kvbm(rep.err, sizeof(rep.err), mgr, st, "flush");
		else
			rep.ok = 1;
		if (write(fds[1], &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
			_exit(2);
		for (;;)
			pause(); /* wait for the kill */
	}
	close(fds[1]);
	struct child_report rep = {0};
	ssize_t got;
	do
		got = read(fds[0], &rep, sizeof(rep));
	while (got < 0 && errno == EINTR);
	close(fds[0]);
	int status = 0;
	/* A child that reported waits to be killed; one that did not has
	 * exited (its end of the pipe closed) and its status says how. */
	if (got == (ssize_t)sizeof(rep))
		kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	if (got != (ssize_t)sizeof(rep)) {
		if (WIFSIGNALED(status))
			snprintf(err, errlen, "the child replaying requests %u..%u was killed by"
				 " signal %d before it reported", o->first, until - 1,
				 WTERMSIG(status));
		else
			snprintf(err, errlen, "the child replaying requests %u..%u exited with"
				 " status %d before it reported", o->first, until - 1,
				 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return -1;
	}
	if (!rep.ok) {
		rep.err[sizeof(rep.err) - 1] = '\0';
		snprintf(err, errlen, "before the restart (in the child that is killed): %s",
			 rep.err);
		return -1;
	}
	*w = rep.w;
	return 0;
}

int kvbm_replay_run(const struct kvbm_trace *t, const struct kvbm_replay_opts *o,
		    struct kvbm_replay_result *out, char *err, size_t errlen)
{
	const uint32_t first = o->first;
	const uint32_t last = o->last && o->last < t->n_requests ? o->last : t->n_requests;
	const uint32_t restart = o->restart_at > first && o->restart_at < last ? o->restart_at : 0;
	kvbm_manager *mgr = NULL;
	struct scratch s = {0};
	struct window before = {0}, after = {0};
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (o->capacity == 0) {
		snprintf(err, errlen, "capacity must be at least 1 block");
		return -1;
	}
	if (scratch_init(&s, o->capacity) != 0) {
		snprintf(err, errlen, "out of memory for a %u-block replay", o->capacity);
		goto out;
	}
	const double t0 = kvbm_replay_now_s();
	if (restart && o->restart_by_sigkill && o->db) {
		if (run_child_and_kill(t, o, restart, &before, err, errlen) != 0)
			goto out;
	} else {
		if (open_manager(o, &mgr, err, errlen) != KVBM_OK)
			goto out;
		if (run_range(mgr, t, o, first, restart ? restart : last, &s, &before, err,
			      errlen) != 0)
			goto out;
		if (restart) {
			/* A crash: whatever the writer had not committed is lost. */
			kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD);
			mgr = NULL;
		}
	}
	if (restart) {
		if (open_manager(o, &mgr, err, errlen) != KVBM_OK)
			goto out;
		if (run_range(mgr, t, o, restart, last, &s, &after, err, errlen) != 0)
			goto out;
	}
	const double t1 = kvbm_replay_now_s();
	const struct window all = {before.refs + after.refs, before.hits + after.hits,
				   before.evictions + after.evictions,
				   before.requests + after.requests};
	out->requests = all.requests;
	out->block_refs = all.refs;
	out->hits = all.hits;
	out->evictions = all.evictions;
	out->hit_rate = all.refs ? (double)all.hits / (double)all.refs : 0;
	out->seconds = t1 - t0;
	out->ns_per_ref = all.refs ? out->seconds * 1e9 / (double)all.refs : 0;
	if (restart) {
		out->after_refs = after.refs;
		out->after_hits = after.hits;
		out->after_hit_rate = after.refs ? (double)after.hits / (double)after.refs : 0;
		/* The same window of a run that never stopped, for comparison. */
		struct window ref_before = {0}, ref_after = {0};
		struct kvbm_replay_opts plain = *o;
		plain.db = NULL;
		plain.progress = NULL;
		kvbm_close(mgr);
		mgr = NULL;
		if (open_manager(&plain, &mgr, err, errlen) != KVBM_OK ||
		    run_range(mgr, t, &plain, first, restart, &s, &ref_before, err, errlen) != 0 ||
		    run_range(mgr, t, &plain, restart, last, &s, &ref_after, err, errlen) != 0)
			goto out;
		out->uninterrupted_after_hit_rate =
			ref_after.refs ? (double)ref_after.hits / (double)ref_after.refs : 0;
	}
	if (o->progress)
		o->progress(last - first, last - first, o->progress_user);
	rc = 0;
out:
	if (mgr) {
		const kvbm_status st = kvbm_close(mgr);
		if (st != KVBM_OK && rc == 0)
			rc = fail_kvbm(err, errlen, NULL, st, "close");
	}
	scratch_free(&s);
	return rc;
}
