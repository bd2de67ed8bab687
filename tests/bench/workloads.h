/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Generated workloads for the policy benchmark, each a Mooncake-style JSONL
 * trace (one {"hash_ids": [...]} per request) written to a file the trace
 * loader reads. Each has its own fixed seed, so the same build writes the
 * same bytes. Shapes (sizes in blocks):
 *
 *  - chat: multi-turn sessions over 64 system prompts; recency-shaped (the
 *    newest blocks are the next turn's prefix).
 *  - scan: hot system prompts with short queries, mixed with long one-off
 *    prompts (documents pasted once) that flush an LRU; frequency-shaped.
 *  - rag: a system prompt, one or two documents drawn from a Zipf law over
 *    a large corpus, and a short question; frequency-shaped with a long
 *    tail of documents seen once.
 */
#ifndef KVBM_BENCH_WORKLOADS_H
#define KVBM_BENCH_WORKLOADS_H

enum kvbm_workload { KVBM_WORKLOAD_CHAT, KVBM_WORKLOAD_SCAN, KVBM_WORKLOAD_RAG };

/* Write workload w to path. Returns 0, or -1 if the file cannot be written. */
int kvbm_workload_write(enum kvbm_workload w, const char *path);

/* One line saying what workload w is, for the table's heading. */
const char *kvbm_workload_describe(enum kvbm_workload w);

#endif /* KVBM_BENCH_WORKLOADS_H */
