/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading a Mooncake-style JSONL request trace: one JSON object per line,
 * of which only "hash_ids" (an array of non-negative integers) is used.
 * Each request's ids are chained into sequence hashes, so the k-th block
 * of two requests is the same block only when their first k+1 ids agree.
 * The reader is a small strict JSON scanner: a malformed line fails the
 * whole load with a message naming the line, never a partial trace.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"

struct scan {
	const char *p, *end;
	const char *err;
};

static void ws(struct scan *s)
{
	while (s->p < s->end && isspace((unsigned char)*s->p))
		s->p++;
}

static bool eat(struct scan *s, char c)
{
	ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

static bool skip_value(struct scan *s, int depth);

static bool skip_string(struct scan *s)
{
	if (!eat(s, '"'))
		return false;
	while (s->p < s->end && *s->p != '"') {
		if (*s->p == '\\')
			s->p++;
		s->p++;
	}
	if (s->p >= s->end)
		return false;
	s->p++;
	return true;
}

static bool skip_value(struct scan *s, int depth)
{
	ws(s);
	if (s->p >= s->end || depth > 32)
		return false;
	const char c = *s->p;
	if (c == '"')
		return skip_string(s);
	if (c == '{' || c == '[') {
		const char close = c == '{' ? '}' : ']';
		s->p++;
		if (eat(s, close))
			return true;
		do {
			if (c == '{' && (!skip_string(s) || !eat(s, ':')))
				return false;
			if (!skip_value(s, depth + 1))
				return false;
		} while (eat(s, ','));
		return eat(s, close);
	}
	const char *start = s->p;
	while (s->p < s->end && (isalnum((unsigned char)*s->p) || strchr("+-.", *s->p)))
		s->p++;
	return s->p > start;
}

struct ids {
	uint64_t *v;
	size_t n, cap;
};

static bool push_id(struct ids *ids, uint64_t id)
{
	if (ids->n == ids->cap) {
		const size_t cap = ids->cap ? ids->cap * 2 : 1024;
		uint64_t *v = realloc(ids->v, cap * sizeof(*v));
		if (!v)
			return false;
		ids->v = v;
		ids->cap = cap;
	}
	ids->v[ids->n++] = id;
	return true;
}

/* Parse one line; appends its hash_ids to ids and returns how many. */
static long parse_line(struct scan *s, struct ids *ids)
{
	long count = -1;

	if (!eat(s, '{')) {
		s->err = "not a JSON object";
		return -1;
	}
	if (eat(s, '}')) {
		s->err = "hash_ids is missing";
		return -1;
	}
	do {
		ws(s);
		const char *key = s->p + 1;
		if (!skip_string(s)) {
			s->err = "malformed key";
			return -1;
		}
		const size_t key_len = (size_t)(s->p - key - 1);
		if (!eat(s, ':')) {
			s->err = "malformed key";
			return -1;
		}
		if (key_len == 8 && memcmp(key, "hash_ids", 8) == 0) {
			if (!eat(s, '[')) {
				s->err = "hash_ids is not an array of integers";
				return -1;
			}
			count = 0;
			if (!eat(s, ']')) {
				do {
					ws(s);
					char *stop;
					errno = 0;
					if (s->p >= s->end || !isdigit((unsigned char)*s->p)) {
						s->err = "hash_ids is not an array of integers";
						return -1;
					}
					const unsigned long long v = strtoull(s->p, &stop, 10);
					if (errno || (stop < s->end && strchr(".eE", *stop))) {
						s->err = "hash_ids is not an array of integers";
						return -1;
					}
					s->p = stop;
					if (!push_id(ids, v)) {
						s->err = "out of memory";
						return -1;
					}
					count++;
				} while (eat(s, ','));
				if (!eat(s, ']')) {
					s->err = "hash_ids is not an array of integers";
					return -1;
				}
			}
		} else if (!skip_value(s, 0)) {
			s->err = "malformed value";
			return -1;
		}
	} while (eat(s, ','));
	if (!eat(s, '}')) {
		s->err = "malformed object";
		return -1;
	}
	ws(s);
	if (s->p != s->end) {
		s->err = "trailing characters after the object";
		return -1;
	}
	if (count < 0)
		s->err = "hash_ids is missing";
	return count;
}

static void set_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* Distinct sequence hashes, counted with a throwaway open-addressing set. */
static uint64_t count_unique(const kvbm_hash *h, uint64_t n)
{
	uint64_t cap = 16, unique = 0;

	while (cap < 2 * n)
		cap <<= 1;
	kvbm_hash *set = calloc(cap, sizeof(*set));
	if (!set)
		return 0;
	for (uint64_t i = 0; i < n; i++) {
		const kvbm_hash key = h[i] ? h[i] : 1; /* 0 marks empty */
		uint64_t j = (key * 0x9E3779B97F4A7C15ull) & (cap - 1);
		while (set[j] && set[j] != key)
			j = (j + 1) & (cap - 1);
		if (!set[j]) {
			set[j] = key;
			unique++;
		}
	}
	free(set);
	return unique;
}

int kvbm_trace_load(const char *path, struct kvbm_trace *out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	struct ids ids = {0};
	uint32_t *offsets = NULL;
	size_t n_req = 0, cap_req = 0, line_no = 0, cap_line = 0;
	char *line = NULL;
	ssize_t len;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (!f) {
		set_err(err, errlen, "cannot open trace %s: %s", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&line, &cap_line, f)) >= 0) {
		line_no++;
		struct scan s = {line, line + len, NULL};
		ws(&s);
		if (s.p == s.end)
			continue; /* blank line */
		if (n_req + 2 > cap_req) {
			cap_req = cap_req ? cap_req * 2 : 4096;
			uint32_t *o = realloc(offsets, cap_req * sizeof(*o));
			if (!o) {
				set_err(err, errlen, "out of memory reading %s", path);
				goto out;
			}
			offsets = o;
		}
		offsets[n_req] = (uint32_t)ids.n;
		if (parse_line(&s, &ids) < 0) {
			set_err(err, errlen, "%s: line %zu: %s", path, line_no, s.err);
			goto out;
		}
		if (ids.n > UINT32_MAX) {
			set_err(err, errlen, "%s: more than 2^32 block references", path);
			goto out;
		}
		n_req++;
	}
	if (ferror(f)) {
		set_err(err, errlen, "cannot read trace %s: %s", path, strerror(errno));
		goto out;
	}
	if (n_req == 0) {
		set_err(err, errlen, "%s: no requests in trace", path);
		goto out;
	}
	offsets[n_req] = (uint32_t)ids.n;
	out->hashes = malloc((ids.n ? ids.n : 1) * sizeof(*out->hashes));
	out->parents = malloc((ids.n ? ids.n : 1) * sizeof(*out->parents));
	if (!out->hashes || !out->parents) {
		set_err(err, errlen, "out of memory for %zu block references", ids.n);
		goto out;
	}
	for (size_t r = 0; r < n_req; r++) {
		kvbm_hash parent = 0;
		for (uint32_t i = offsets[r]; i < offsets[r + 1]; i++) {
			const bool root = i == offsets[r];
			out->parents[i] = root ? 0 : parent;
			parent = kvbm_hash_chain(parent, (kvbm_hash)ids.v[i], root);
			out->hashes[i] = parent;
		}
	}
	out->n_requests = (uint32_t)n_req;
	out->offsets = offsets;
	out->n_refs = ids.n;
	out->n_unique = count_unique(out->hashes, ids.n);
	offsets = NULL;
	rc = 0;
out:
	if (rc != 0) {
		free(out->hashes);
		free(out->parents);
		memset(out, 0, sizeof(*out));
	}
	free(offsets);
	free(ids.v);
	free(line);
	fclose(f);
	return rc;
}

void kvbm_trace_free(struct kvbm_trace *t)
{
	if (!t)
		return;
	free(t->offsets);
	free(t->hashes);
	free(t->parents);
	memset(t, 0, sizeof(*t));
}
