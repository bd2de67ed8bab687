/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bounded line reading for the files kvbm-catalog takes as input (replay
 * traces, import files): a line longer than a limit is an error, found
 * after reading at most that many bytes, so `replay /dev/zero` or a file
 * with no newline fails at once instead of growing a buffer without end.
 * Lines are handed out one at a time (streaming); the buffer never holds
 * more than one line. The code is in trace.c, which every program that
 * reads traces links.
 */
#ifndef KVBM_CLI_LINES_H
#define KVBM_CLI_LINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Default longest line of a trace and of an import file, in bytes. */
#define KVBM_TRACE_MAX_LINE ((size_t)16 << 20)
#define KVBM_IMPORT_MAX_LINE ((size_t)64 << 20)

struct kvbm_lines {
	FILE *f;
	size_t max;     /* longest line accepted, newline excluded */
	char *buf;      /* the current line, NUL-terminated */
	size_t len;     /* its length, newline excluded */
	size_t cap;
	size_t line_no; /* 1-based number of the current line */
	bool nul;       /* the current line holds a NUL byte */
};

/* Start reading f with lines of at most max bytes. */
void kvbm_lines_init(struct kvbm_lines *l, FILE *f, size_t max);
/* The next line into l->buf / l->len. Returns 1 with a line, 0 at the end
 * of the file, -1 when the line is longer than l->max (after reading
 * max + 1 of its bytes), -2 on a read error (errno set), -3 out of memory. */
int kvbm_lines_next(struct kvbm_lines *l);
void kvbm_lines_free(struct kvbm_lines *l);

#endif
