/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The generated workloads of workloads.h. Block ids only need to be equal
 * where content is: the loader chains them into sequence hashes, so a
 * document's blocks after a different system prompt are different blocks,
 * as in a real prefix cache. Ids are drawn from disjoint ranges per role.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "workloads.h"

struct rng {
	uint64_t s;
};

static double uniform(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return (double)((r->s * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* An integer in lo..hi, uniform. */
static uint32_t between(struct rng *r, uint32_t lo, uint32_t hi)
{
	return lo + (uint32_t)(uniform(r) * (hi - lo + 1));
}

/* cdf[i] = sum over k <= i of 1 / (k + 1)^s: Zipf(s) over 0..n-1. */
static double *zipf_cdf(uint32_t n, double s)
{
	double *cdf = malloc(n * sizeof(*cdf));

	if (!cdf)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		cdf[i] = (i ? cdf[i - 1] : 0) + pow(i + 1.0, -s);
	return cdf;
}

/* A Zipf draw over the first n entries of cdf, by inverting it. */
static uint32_t zipf(struct rng *r, uint32_t n, const double *cdf)
{
	const double u = uniform(r) * cdf[n - 1];
	uint32_t lo = 0, hi = n - 1;

	while (lo < hi) {
		const uint32_t mid = (lo + hi) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void put_ids(FILE *f, uint32_t *n, uint32_t first, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++)
		fprintf(f, "%s%u", (*n)++ ? ", " : "", first + i);
}

/* Chat (unchanged from issue 5, same seed, same bytes): sessions pick one
 * of 64 system prompts (16 blocks) by Zipf(1.0); a request continues an
 * open session (70%, Zipf(1.0) over the 256 most recent) or opens one,
 * and appends 2..12 new blocks to its context (capped at 160, then the
 * conversation starts over). 4,000 requests. */
#define CHAT_PROMPTS 64
#define CHAT_PROMPT_BLOCKS 16
#define CHAT_RECENT 256
#define CHAT_MAX_CONTEXT 160

static int write_chat(FILE *f)
{
	static uint32_t ctx[CHAT_RECENT][CHAT_MAX_CONTEXT], len[CHAT_RECENT];
	struct rng r = {0x2545F4914F6CDD1Dull};
	double *cdf = zipf_cdf(CHAT_RECENT, 1.0);
	uint32_t next_id = 1000000, n_sessions = 0, newest = 0;

	if (!cdf)
		return -1;
	for (uint32_t q = 0; q < 4000; q++) {
		uint32_t s;
		if (n_sessions == 0 || uniform(&r) < 0.3) {
			s = n_sessions ? (newest + 1) % CHAT_RECENT : 0;
			newest = s;
			if (n_sessions < CHAT_RECENT)
				n_sessions++;
			const uint32_t p = zipf(&r, CHAT_PROMPTS, cdf);
			len[s] = CHAT_PROMPT_BLOCKS;
			for (uint32_t i = 0; i < CHAT_PROMPT_BLOCKS; i++)
				ctx[s][i] = p * CHAT_PROMPT_BLOCKS + i;
		} else {
			const uint32_t k = zipf(&r, n_sessions, cdf);
			s = (newest + CHAT_RECENT - k) % CHAT_RECENT;
		}
		const uint32_t add = 2 + (uint32_t)(uniform(&r) * 11);
		for (uint32_t i = 0; i < add && len[s] < CHAT_MAX_CONTEXT; i++)
			ctx[s][len[s]++] = next_id++;
		fprintf(f, "{\"hash_ids\": [");
		for (uint32_t i = 0; i < len[s]; i++)
			fprintf(f, "%s%u", i ? ", " : "", ctx[s][i]);
		fprintf(f, "]}\n");
		if (len[s] >= CHAT_MAX_CONTEXT)
			len[s] = CHAT_PROMPT_BLOCKS;
	}
	free(cdf);
	return 0;
}

/* Scan: 48 system prompts of 12..32 blocks, Zipf(1.0). 65% of requests
 * are a prompt and a 1..4-block query of their own; 35% paste a one-off
 * document of 48..320 blocks, half of them after a system prompt. The hot
 * prompts (~1,000 blocks) are reused at distances of a few thousand
 * blocks, which one-off documents fill. 5,000 requests. */
#define SCAN_PROMPTS 48

static int write_scan(FILE *f)
{
	struct rng r = {0x9E3779B97F4A7C15ull};
	uint32_t plen[SCAN_PROMPTS], next_id = 10000000;
	double *cdf = zipf_cdf(SCAN_PROMPTS, 1.0);

	if (!cdf)
		return -1;
	for (uint32_t p = 0; p < SCAN_PROMPTS; p++)
		plen[p] = between(&r, 12, 32);
	for (uint32_t q = 0; q < 5000; q++) {
		uint32_t n = 0;
		const bool scan = uniform(&r) < 0.35;
		const bool prompt = !scan || uniform(&r) < 0.5;
		fprintf(f, "{\"hash_ids\": [");
		if (prompt) {
			const uint32_t p = zipf(&r, SCAN_PROMPTS, cdf);
			put_ids(f, &n, p * 64, plen[p]);
		}
		const uint32_t own = scan ? between(&r, 48, 320) : between(&r, 1, 4);
		put_ids(f, &n, next_id, own);
		next_id += own;
		fprintf(f, "]}\n");
	}
	free(cdf);
	return 0;
}

/* RAG: one of 4 system prompts (4 blocks, Zipf(1.0)), then a document from
 * a corpus of 4,000 (8..64 blocks each) by Zipf(0.9), in 30% of requests
 * a second one by the same law, then a 1..3-block question of its own.
 * 5,000 requests. */
#define RAG_SYSTEMS 4
#define RAG_DOCS 4000

static int write_rag(FILE *f)
{
	static uint32_t dlen[RAG_DOCS];
	struct rng r = {0xD1B54A32D192ED03ull};
	double *sys_cdf = zipf_cdf(RAG_SYSTEMS, 1.0), *doc_cdf = zipf_cdf(RAG_DOCS, 0.9);
	uint32_t next_id = 20000000;
	int rc = -1;

	if (!sys_cdf || !doc_cdf)
		goto out;
	for (uint32_t d = 0; d < RAG_DOCS; d++)
		dlen[d] = between(&r, 8, 64);
	for (uint32_t q = 0; q < 5000; q++) {
		uint32_t n = 0;
		fprintf(f, "{\"hash_ids\": [");
		put_ids(f, &n, zipf(&r, RAG_SYSTEMS, sys_cdf) * 8, 4);
		const uint32_t docs = uniform(&r) < 0.3 ? 2 : 1;
		for (uint32_t k = 0; k < docs; k++) {
			const uint32_t d = zipf(&r, RAG_DOCS, doc_cdf);
			put_ids(f, &n, 100000 + d * 100, dlen[d]);
		}
		const uint32_t own = between(&r, 1, 3);
		put_ids(f, &n, next_id, own);
		next_id += own;
		fprintf(f, "]}\n");
	}
	rc = 0;
out:
	free(sys_cdf);
	free(doc_cdf);
	return rc;
}

int kvbm_workload_write(enum kvbm_workload w, const char *path)
{
	FILE *f = fopen(path, "w");
	int rc = -1;

	if (!f)
		return -1;
	switch (w) {
	case KVBM_WORKLOAD_CHAT:
		rc = write_chat(f);
		break;
	case KVBM_WORKLOAD_SCAN:
		rc = write_scan(f);
		break;
	case KVBM_WORKLOAD_RAG:
		rc = write_rag(f);
		break;
	}
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

const char *kvbm_workload_describe(enum kvbm_workload w)
{
	switch (w) {
	case KVBM_WORKLOAD_CHAT:
		return "generated zipf multi-turn chat";
	case KVBM_WORKLOAD_SCAN:
		return "generated scan: hot system prompts, one-off long documents";
	case KVBM_WORKLOAD_RAG:
		return "generated rag: zipf(0.9) documents of a 4,000-document corpus";
	}
	return "?";
}
