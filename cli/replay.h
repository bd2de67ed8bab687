/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Trace replay engine shared by `kvbm-catalog replay`/`demo` and the
 * benchmarks in tests/bench: load a Mooncake-style JSONL trace, replay it
 * against a real kvbm manager, and compute Belady's optimum.
 *
 * Replay model (fixed, documented in the man page): requests in order;
 * the longest cached prefix counts as hits (kvbm_match); the rest are
 * allocated (evicting) and registered with their lineage; then every block
 * of the request is released, tail first.
 */
#ifndef KVBM_REPLAY_H
#define KVBM_REPLAY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "kvbm.h"

/* A loaded trace: request r covers hashes[offsets[r] .. offsets[r+1]). The
 * hashes are chained sequence hashes: position k of a request is the same
 * block as position k of another only when their first k+1 hash_ids agree. */
struct kvbm_trace {
	uint32_t n_requests;
	uint32_t *offsets;  /* n_requests + 1 entries */
	kvbm_hash *hashes;  /* offsets[n_requests] entries */
	kvbm_hash *parents; /* parent sequence hash per entry, 0 at position 0 */
	uint64_t n_refs;    /* == offsets[n_requests] */
	uint64_t n_unique;  /* distinct sequence hashes */
};

/* Parse path. A malformed line fails the whole load with a message naming
 * the line ("line 12: hash_ids is not an array of integers"). Returns 0 or
 * -1 with err filled. */
int kvbm_trace_load(const char *path, struct kvbm_trace *out, char *err, size_t errlen);
/* The same for a trace held in memory: len bytes, no terminator needed;
 * name stands for the path in messages (NULL: "<memory>"). */
int kvbm_trace_load_mem(const char *buf, size_t len, const char *name, struct kvbm_trace *out,
			char *err, size_t errlen);
void kvbm_trace_free(struct kvbm_trace *t);

/* Bounds of a trace load, so a huge or endless input (replay /dev/zero)
 * fails at once with a message instead of exhausting memory. */
#define KVBM_TRACE_MAX_REFS ((uint64_t)1 << 25) /* about 1.6 GB while loading */
struct kvbm_trace_limits {
	size_t max_line;   /* longest line in bytes; 0: KVBM_TRACE_MAX_LINE (16 MiB) */
	uint64_t max_refs; /* most block references, and most requests; 0: KVBM_TRACE_MAX_REFS */
};
/* kvbm_trace_load with limits (NULL: the defaults, which kvbm_trace_load
 * and kvbm_trace_load_mem use). The file is read one line at a time. */
int kvbm_trace_load_ex(const char *path, const struct kvbm_trace_limits *lim,
		       struct kvbm_trace *out, char *err, size_t errlen);

struct kvbm_replay_opts {
	uint32_t capacity;          /* blocks in the manager */
	kvbm_evict_policy policy;
	uint32_t block_size;        /* tokens per block passed to the manager (default 16) */
	const char *db;             /* catalog path or NULL */
	uint32_t restart_at;        /* 0 = never; else kill + reopen before request N */
	bool restart_by_sigkill;    /* restart with a forked child killed by SIGKILL
				       instead of an in-process KVBM_CLOSE_DISCARD */
	uint32_t first, last;       /* replay requests [first, last); last 0 = all */
	void (*progress)(uint32_t done, uint32_t total, void *user); /* may be NULL */
	void *progress_user;
};

struct kvbm_replay_result {
	uint64_t requests;
	uint64_t block_refs;
	uint64_t hits;
	uint64_t evictions;
	double hit_rate;            /* hits / block_refs */
	double seconds;             /* wall time of the replay loop */
	double ns_per_ref;
	/* with restart_at: the window after the restart, and the same window
	 * of an uninterrupted run for comparison */
	uint64_t after_refs, after_hits;
	double after_hit_rate, uninterrupted_after_hit_rate;
};

/* Replay t under opts. Returns 0, or -1 with err filled (a kvbm error or a
 * catalog problem). */
int kvbm_replay_run(const struct kvbm_trace *t, const struct kvbm_replay_opts *opts,
		    struct kvbm_replay_result *out, char *err, size_t errlen);

/* Hits of Belady's offline optimum under the same replay model and
 * capacity (a request's blocks are all resident while it is served). */
uint64_t kvbm_replay_belady(const struct kvbm_trace *t, uint32_t capacity);

/* The replays' wall clock, in seconds. */
static inline double kvbm_replay_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A hierarchy replay (`replay --tiers`, replay_tiers.c): tier 0 is G1,
 * whose memory never survives a restart; the lower tiers restore from the
 * catalog. Each tier at least as large as the one above it. */
struct kvbm_tiers_opts {
	uint32_t n;                                /* tiers, 1..KVBM_TIERS_MAX */
	uint32_t capacity[KVBM_TIERS_MAX];         /* blocks per tier */
	kvbm_evict_policy policy[KVBM_TIERS_MAX];  /* each tier's own policy */
	const char *names[KVBM_TIERS_MAX];         /* tier names, "G1".. */
	uint32_t block_size;                       /* default 16 */
	const char *db;                            /* one catalog file for every tier, or NULL */
	uint32_t restart_at;                       /* 0 = never; else crash + reopen before request N */
	void (*progress)(uint32_t done, uint32_t total, void *user);
	void *progress_user;
};

struct kvbm_tiers_result {
	uint64_t requests, block_refs;
	uint64_t hits[KVBM_TIERS_MAX];      /* blocks served from each tier */
	uint64_t evictions[KVBM_TIERS_MAX]; /* blocks each tier evicted */
	uint64_t offloaded[KVBM_TIERS_MAX]; /* blocks copied from tier t to t + 1 */
	uint64_t onboarded;                 /* blocks copied up into G1 */
	uint32_t restored[KVBM_TIERS_MAX];  /* blocks each tier restored at the restart */
	uint64_t after_refs, after_hits;    /* the window after the restart */
	uint64_t uninterrupted_after_hits;  /* the same window without the crash */
	double seconds;
};

int kvbm_replay_tiers_run(const struct kvbm_trace *t, const struct kvbm_tiers_opts *opts,
			  struct kvbm_tiers_result *out, char *err, size_t errlen);

#endif /* KVBM_REPLAY_H */
