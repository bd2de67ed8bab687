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

#include "lines.h"
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
		/* An escape takes the next character too, if there is one: a
		 * backslash at the very end must not step past it. */
		if (*s->p == '\\' && s->end - s->p > 1)
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
	/* strchr finds the terminator too: a NUL byte is not part of a literal. */
	while (s->p < s->end && (isalnum((unsigned char)*s->p) || (*s->p && strchr("+-.", *s->p))))
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

/* A decimal integer that fits 64 bits and is not the start of a fraction or
 * an exponent. Bounded by s->end: the line need not be NUL-terminated, which
 * is why this is not strtoull. */
static bool parse_u64(struct scan *s, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s->p;

	if (p >= s->end || !isdigit((unsigned char)*p))
		return false;
	for (; p < s->end && isdigit((unsigned char)*p); p++) {
		const unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (p < s->end && (*p == '.' || *p == 'e' || *p == 'E'))
		return false;
	s->p = p;
	*out = v;
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
					uint64_t v;
					ws(s);
					if (!parse_u64(s, &v)) {
						s->err = "hash_ids is not an array of integers";
						return -1;
					}
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
	__attribute__((format(printf, 3, 4)));

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

/* A trace being read line by line, from a file or from memory. */
struct loader {
	const char *name; /* path, for messages */
	uint64_t max_refs; /* most block references, and most requests */
	struct ids ids;
	uint32_t *offsets;
	size_t n_req, cap_req, line_no;
};

/* Add one line (its newline included or not). Returns 0 or -1 with err. */
static int loader_line(struct loader *l, const char *line, size_t len, char *err, size_t errlen)
{
	struct scan s = {line, line + len, NULL};

	l->line_no++;
	ws(&s);
	if (s.p == s.end)
		return 0; /* blank line */
	if (l->n_req + 2 > l->cap_req) {
		const size_t cap = l->cap_req ? l->cap_req * 2 : 4096;
		uint32_t *o = realloc(l->offsets, cap * sizeof(*o));
		if (!o) {
			set_err(err, errlen, "out of memory reading %s", l->name);
			return -1;
		}
		l->offsets = o;
		l->cap_req = cap;
	}
	l->offsets[l->n_req] = (uint32_t)l->ids.n;
	if (parse_line(&s, &l->ids) < 0) {
		set_err(err, errlen, "%s: line %zu: %s", l->name, l->line_no, s.err);
		return -1;
	}
	/* The whole trace is held in memory (about 24 bytes per reference,
	 * twice that while it loads): stop at the bound, not at the OOM
	 * killer. */
	if (l->ids.n > l->max_refs || l->n_req + 1 > l->max_refs) {
		set_err(err, errlen,
			"%s: line %zu: more than %llu %s (a trace is held in memory, about 48"
			" bytes per block reference); --max-refs raises the limit",
			l->name, l->line_no, (unsigned long long)l->max_refs,
			l->ids.n > l->max_refs ? "block references" : "requests");
		return -1;
	}
	l->n_req++;
	return 0;
}

/* Chain the ids into the trace. Returns 0 or -1 with err; frees the loader
 * either way. */
static int loader_finish(struct loader *l, int rc, struct kvbm_trace *out, char *err,
			 size_t errlen)
{
	const size_t n_ids = l->ids.n;

	if (rc == 0 && l->n_req == 0) {
		set_err(err, errlen, "%s: no requests in trace", l->name);
		rc = -1;
	}
	if (rc != 0)
		goto out;
	rc = -1;
	l->offsets[l->n_req] = (uint32_t)n_ids;
	out->hashes = malloc((n_ids ? n_ids : 1) * sizeof(*out->hashes));
	out->parents = malloc((n_ids ? n_ids : 1) * sizeof(*out->parents));
	if (!out->hashes || !out->parents) {
		set_err(err, errlen, "out of memory for %zu block references", n_ids);
		goto out;
	}
	for (size_t r = 0; r < l->n_req; r++) {
		kvbm_hash parent = 0;
		for (uint32_t i = l->offsets[r]; i < l->offsets[r + 1]; i++) {
			const bool root = i == l->offsets[r];
			out->parents[i] = root ? 0 : parent;
			parent = kvbm_hash_chain(parent, (kvbm_hash)l->ids.v[i], root);
			out->hashes[i] = parent;
		}
	}
	out->n_requests = (uint32_t)l->n_req;
	out->offsets = l->offsets;
	out->n_refs = n_ids;
	out->n_unique = count_unique(out->hashes, n_ids);
	l->offsets = NULL;
	rc = 0;
out:
	if (rc != 0) {
		free(out->hashes);
		free(out->parents);
		memset(out, 0, sizeof(*out));
	}
	free(l->offsets);
	free(l->ids.v);
	return rc;
}

/* Bounded line reading (lines.h), here rather than in a file of its own
 * because every program that builds the trace loader links it. One byte
 * at a time through the stdio buffer (getc_unlocked): no newline search
 * runs past the limit, and a NUL byte is data, not the end of the line. */
void kvbm_lines_init(struct kvbm_lines *l, FILE *f, size_t max)
{
	*l = (struct kvbm_lines){.f = f, .max = max};
}

static bool grow(struct kvbm_lines *l)
{
	size_t cap = l->cap ? l->cap * 2 : 4096;

	if (cap > l->max + 2)
		cap = l->max + 2;
	char *b = realloc(l->buf, cap);
	if (!b)
		return false;
	l->buf = b;
	l->cap = cap;
	return true;
}

int kvbm_lines_next(struct kvbm_lines *l)
{
	int c = EOF;

	l->len = 0;
	l->nul = false;
	if (!l->buf && !grow(l))
		return -3;
	while ((c = getc_unlocked(l->f)) != EOF && c != '\n') {
		if (l->len >= l->max) {
			l->line_no++;
			return -1;
		}
		if (l->len + 2 > l->cap && !grow(l))
			return -3;
		l->nul |= c == '\0';
		l->buf[l->len++] = (char)c;
	}
	l->buf[l->len] = '\0';
	if (c == EOF && ferror(l->f))
		return -2;
	if (c == EOF && l->len == 0)
		return 0;
	l->line_no++;
	return 1;
}

void kvbm_lines_free(struct kvbm_lines *l)
{
	free(l->buf);
	l->buf = NULL;
	l->cap = l->len = 0;
}

static void limits_of(const struct kvbm_trace_limits *lim, size_t *max_line, uint64_t *max_refs)
{
	*max_line = lim && lim->max_line ? lim->max_line : KVBM_TRACE_MAX_LINE;
	*max_refs = lim && lim->max_refs ? lim->max_refs : KVBM_TRACE_MAX_REFS;
	if (*max_refs > UINT32_MAX - 1)
		*max_refs = UINT32_MAX - 1; /* offsets are 32-bit */
}

int kvbm_trace_load_ex(const char *path, const struct kvbm_trace_limits *lim,
		       struct kvbm_trace *out, char *err, size_t errlen)
{
	struct loader l = {.name = path};
	struct kvbm_lines in;
	size_t max_line;
	int rc = 0, got;

	memset(out, 0, sizeof(*out));
	limits_of(lim, &max_line, &l.max_refs);
	FILE *f = fopen(path, "r");
	if (!f) {
		set_err(err, errlen, "cannot open trace %s: %s", path, strerror(errno));
		return -1;
	}
	kvbm_lines_init(&in, f, max_line);
	while (rc == 0 && (got = kvbm_lines_next(&in)) == 1)
		rc = loader_line(&l, in.buf, in.len, err, errlen);
	if (rc == 0 && got == -1) {
		set_err(err, errlen, "%s: line %zu is longer than %zu bytes; --max-line raises the"
			" limit", path, in.line_no, max_line);
		rc = -1;
	} else if (rc == 0 && got == -2) {
		set_err(err, errlen, "cannot read trace %s: %s", path, strerror(errno));
		rc = -1;
	} else if (rc == 0 && got == -3) {
		set_err(err, errlen, "%s: line %zu: out of memory", path, in.line_no + 1);
		rc = -1;
	}
	kvbm_lines_free(&in);
	fclose(f);
	return loader_finish(&l, rc, out, err, errlen);
}

int kvbm_trace_load(const char *path, struct kvbm_trace *out, char *err, size_t errlen)
{
	return kvbm_trace_load_ex(path, NULL, out, err, errlen);
}

int kvbm_trace_load_mem(const char *buf, size_t len, const char *name, struct kvbm_trace *out,
			char *err, size_t errlen)
{
	struct loader l = {.name = name ? name : "<memory>"};
	const char *p = buf, *const end = buf ? buf + len : buf;
	size_t max_line;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	limits_of(NULL, &max_line, &l.max_refs);
	/* Lines as getline() cuts them: up to and including each newline,
	 * and whatever follows the last one. */
	while (rc == 0 && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;
		if ((size_t)(next - p) - (nl != NULL) > max_line) {
			set_err(err, errlen, "%s: line %zu is longer than %zu bytes", l.name,
				l.line_no + 1, max_line);
			rc = -1;
			break;
		}
		rc = loader_line(&l, p, (size_t)(next - p), err, errlen);
		p = next;
	}
	return loader_finish(&l, rc, out, err, errlen);
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
