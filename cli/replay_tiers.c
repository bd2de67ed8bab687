/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replaying a trace against a hierarchy of managers (`replay --tiers`),
 * the way a server with G1/G2/G3 tiers serves it (the model is in
 * replay.h): a request's chain is looked up in the whole hierarchy; the
 * longest prefix some tier holds is served, from G1 where G1 holds a
 * block, else onboarded into G1 from the fastest lower tier holding it
 * (counted a hit of that tier); the rest is computed into G1. Before G1
 * evicts, its victims are copied one tier down (offload before evict, as
 * docs/TIERS.md describes), and a lower tier does the same for its own
 * victims, so a block leaves the hierarchy only from the last tier.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replay.h"

struct tiers_run {
	const struct kvbm_tiers_opts *o;
	kvbm_manager *tier[KVBM_TIERS_MAX];
	kvbm_hierarchy *h;
	struct kvbm_tiers_result *res;
	/* scratch, sized for the longest request */
	uint32_t cap;
	kvbm_immutable *refs, *rev, *pins, *regs;
	kvbm_mutable *mut;
	kvbm_complete *done;
	kvbm_victim *victims;
	kvbm_hash *copy;
	uint8_t *fastest, *masks;
	char *err;
	size_t errlen;
};

static int fail(struct tiers_run *r, uint32_t t, kvbm_status st, const char *what)
{
	char msg[256] = "";

	if (r->tier[t])
		kvbm_last_error(r->tier[t], NULL, msg, sizeof(msg));
	snprintf(r->err, r->errlen, "tier %s: %s: %s%s%s", r->o->names[t], what, kvbm_strerror(st),
		 *msg ? ": " : "", msg);
	return -1;
}

static int open_tiers(struct tiers_run *r)
{
	for (uint32_t t = 0; t < r->o->n; t++) {
		kvbm_config cfg;
		char msg[256];
		kvbm_config_init(&cfg);
		cfg.block_count = r->o->capacity[t];
		cfg.block_size = r->o->block_size ? r->o->block_size : 16;
		cfg.evict_policy = r->o->policy[t];
		cfg.tier = r->o->names[t];
		cfg.catalog_path = r->o->db;
		/* G1's memory is the GPU's: it never survives the process. */
		cfg.memory_volatile = t == 0;
		const kvbm_status st = kvbm_open_ex(&cfg, &r->tier[t], msg, sizeof(msg));
		if (st != KVBM_OK) {
			snprintf(r->err, r->errlen, "cannot open tier %s%s%s: %s", cfg.tier,
				 r->o->db ? " on " : "", r->o->db ? r->o->db : "", msg);
			return -1;
		}
	}
	const kvbm_status st = kvbm_hierarchy_create(r->tier, r->o->n, 0, &r->h);
	return st == KVBM_OK ? 0 : fail(r, 0, st, "hierarchy");
}

static void close_tiers(struct tiers_run *r, unsigned flags)
{
	kvbm_hierarchy_free(r->h);
	r->h = NULL;
	for (uint32_t t = 0; t < r->o->n; t++) {
		kvbm_close_ex(r->tier[t], flags);
		r->tier[t] = NULL;
	}
}

static int free_blocks(struct tiers_run *r, uint32_t t, uint32_t *out)
{
	kvbm_pool_counts pc;
	const kvbm_status st = kvbm_pool_counts_read(r->tier[t], &pc);

	*out = pc.reset;
	return st == KVBM_OK ? 0 : fail(r, t, st, "pool counts");
}

/* Make room for `need` allocations in tier t without losing a block the
 * tier below lacks: copy t's next victims down first (the last tier just
 * evicts). */
static int offload(struct tiers_run *r, uint32_t t, uint32_t need)
{
	uint32_t have, got = 0, k = 0, pinned = 0, ev = 0;
	kvbm_status st;

	if (t + 1 >= r->o->n)
		return 0; /* the last tier evicts for good */
	if (free_blocks(r, t, &have) != 0)
		return -1;
	if (have >= need)
		return 0;
	/* Room below first: that recursion reuses the scratch arrays, and
	 * changes nothing in this tier, so the copy list is built after it. */
	for (int pass = 0; pass < 2; pass++) {
		if ((st = kvbm_peek_victims(r->tier[t], need - have, r->victims, &got)) != KVBM_OK)
			return fail(r, t, st, "preview victims");
		k = 0;
		for (uint32_t i = 0; i < got; i++) {
			bool below = false;
			if ((st = kvbm_contains(r->tier[t + 1], &r->victims[i].hash, 1, &below, NULL,
						NULL)) != KVBM_OK)
				return fail(r, t + 1, st, "presence");
			if (!below)
				r->copy[k++] = r->victims[i].hash;
		}
		if (k == 0)
			return 0;
		if (pass == 0 && offload(r, t + 1, k) != 0)
			return -1;
	}
	if ((st = kvbm_pin(r->tier[t], r->copy, k, r->pins, &pinned)) != KVBM_OK)
		return fail(r, t, st, "pin victims");
	if ((st = kvbm_allocate_ex(r->tier[t + 1], k, r->mut, NULL, &ev)) != KVBM_OK)
		return fail(r, t + 1, st, "allocate copies");
	r->res->evictions[t + 1] += ev;
	if ((st = kvbm_stage_from(r->tier[t + 1], r->mut, k, r->tier[t], r->copy, r->done)) !=
		    KVBM_OK ||
	    (st = kvbm_register_batch(r->tier[t + 1], r->done, k, r->regs)) != KVBM_OK ||
	    (st = kvbm_immutable_release_batch(r->tier[t + 1], r->regs, k)) != KVBM_OK)
		return fail(r, t + 1, st, "register copies");
	if ((st = kvbm_unpin(r->tier[t], r->pins, k)) != KVBM_OK)
		return fail(r, t, st, "unpin victims");
	r->res->offloaded[t] += k;
	return 0;
}

/* A lower tier's hit: the block is used there too (recency, frequency). */
static int use_below(struct tiers_run *r, uint32_t t, const kvbm_hash *hash)
{
	kvbm_immutable ref;
	uint32_t got = 0;
	kvbm_status st = kvbm_match_scattered(r->tier[t], hash, 1, &ref, &got);

	if (st == KVBM_OK && got)
		st = kvbm_immutable_release(r->tier[t], ref);
	return st == KVBM_OK ? 0 : fail(r, t, st, "lower-tier hit");
}

static int serve(struct tiers_run *r, const struct kvbm_trace *tr, uint32_t req)
{
	const uint32_t off = tr->offsets[req], n = tr->offsets[req + 1] - off;
	const kvbm_hash *h = tr->hashes + off;
	const uint32_t bs = r->o->block_size ? r->o->block_size : 16;
	struct kvbm_tiers_result *res = r->res;
	uint32_t prefix = 0, found = 0, need = 0;
	kvbm_status st;

	if (n == 0)
		return 0;
	if ((st = kvbm_hierarchy_lookup(r->h, h, n, r->masks, r->fastest, &prefix)) != KVBM_OK)
		return fail(r, 0, st, "lookup");
	/* G1's blocks of the plan, referenced at once so nothing below
	 * evicts them; the others are onboarded or computed. */
	if ((st = kvbm_match_scattered(r->tier[0], h, prefix, r->refs, &found)) != KVBM_OK)
		return fail(r, 0, st, "match");
	need = n - found;
	for (uint32_t i = 0; i < prefix; i++) {
		if (r->fastest[i] == 0)
			continue;
		res->hits[r->fastest[i]]++;
		res->onboarded++;
		if (use_below(r, r->fastest[i], &h[i]) != 0)
			return -1;
	}
	res->hits[0] += found;
	if (need) {
		uint32_t ev = 0;
		if (offload(r, 0, need) != 0)
			return -1;
		if ((st = kvbm_allocate_ex(r->tier[0], need, r->mut, NULL, &ev)) != KVBM_OK)
			return fail(r, 0, st, "allocate");
		res->evictions[0] += ev;
		uint32_t k = 0;
		for (uint32_t i = 0; i < n; i++) {
			if (i < prefix && r->fastest[i] == 0)
				continue;
			const kvbm_hash parent = i ? h[i - 1] : 0;
			if ((st = kvbm_stage_lineage(r->tier[0], r->mut[k], h[i], parent, i, bs,
						     &r->done[k])) != KVBM_OK)
				return fail(r, 0, st, "stage");
			k++;
		}
		if ((st = kvbm_register_batch(r->tier[0], r->done, need, r->regs)) != KVBM_OK)
			return fail(r, 0, st, "register");
		k = 0;
		for (uint32_t i = 0; i < n; i++)
			if (i >= prefix || r->fastest[i] != 0)
				r->refs[i] = r->regs[k++];
	}
	for (uint32_t i = 0; i < n; i++)
		r->rev[i] = r->refs[n - 1 - i];
	if ((st = kvbm_immutable_release_batch(r->tier[0], r->rev, n)) != KVBM_OK)
		return fail(r, 0, st, "release");
	return 0;
}

static uint64_t all_hits(const struct tiers_run *r)
{
	uint64_t sum = 0;

	for (uint32_t t = 0; t < r->o->n; t++)
		sum += r->res->hits[t];
	return sum;
}

/* Serve requests [first, last); *refs and *hits count this range. */
static int run_range(struct tiers_run *r, const struct kvbm_trace *tr, uint32_t first,
		     uint32_t last, uint64_t *refs, uint64_t *hits)
{
	const uint64_t hits_before = all_hits(r);

	for (uint32_t q = first; q < last; q++) {
		const uint32_t n = tr->offsets[q + 1] - tr->offsets[q];
		*refs += n;
		r->res->requests++;
		r->res->block_refs += n;
		if (n > r->o->capacity[0])
			continue; /* longer than G1: cannot be served, all misses */
		if (serve(r, tr, q) != 0) {
			char what[600];
			snprintf(what, sizeof(what), "request %u: %s", q, r->err);
			snprintf(r->err, r->errlen, "%s", what);
			return -1;
		}
		if (r->o->progress && (q & 63) == 0)
			r->o->progress(q, tr->n_requests, r->o->progress_user);
	}
	*hits = all_hits(r) - hits_before;
	return 0;
}

static int scratch_init(struct tiers_run *r, const struct kvbm_trace *tr)
{
	uint32_t cap = 1;

	for (uint32_t q = 0; q < tr->n_requests; q++)
		if (tr->offsets[q + 1] - tr->offsets[q] > cap)
			cap = tr->offsets[q + 1] - tr->offsets[q];
	r->cap = cap;
	r->refs = malloc(cap * sizeof(*r->refs));
	r->rev = malloc(cap * sizeof(*r->rev));
	r->pins = malloc(cap * sizeof(*r->pins));
	r->regs = malloc(cap * sizeof(*r->regs));
	r->mut = malloc(cap * sizeof(*r->mut));
	r->done = malloc(cap * sizeof(*r->done));
	r->victims = malloc(cap * sizeof(*r->victims));
	r->copy = malloc(cap * sizeof(*r->copy));
	r->fastest = malloc(cap);
	r->masks = malloc(cap);
	return r->refs && r->rev && r->pins && r->regs && r->mut && r->done && r->victims &&
			       r->copy && r->fastest && r->masks
		       ? 0
		       : -1;
}

static void scratch_free(struct tiers_run *r)
{
	free(r->refs);
	free(r->rev);
	free(r->pins);
	free(r->regs);
	free(r->mut);
	free(r->done);
	free(r->victims);
	free(r->copy);
	free(r->fastest);
	free(r->masks);
}

/* Serve [0, split), crash and restart when `crash`, then [split, end). */
static int replay(const struct kvbm_trace *tr, const struct kvbm_tiers_opts *o, uint32_t split,
		  bool crash, struct kvbm_tiers_result *out, char *err, size_t errlen)
{
	struct tiers_run r = {.o = o, .res = out, .err = err, .errlen = errlen};
	uint64_t refs = 0, hits = 0;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (scratch_init(&r, tr) != 0) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	if (open_tiers(&r) != 0)
		goto done;
	const double t0 = kvbm_replay_now_s();
	if (run_range(&r, tr, 0, split, &refs, &hits) != 0)
		goto done;
	refs = 0;
	if (crash) {
		/* A crash once the writers caught up (a replay compresses hours
		 * into milliseconds; a server's writer keeps pace, see
		 * docs/BENCHMARKS.md), as `replay --sigkill` does: no
		 * clean-shutdown mark. G1 comes back cold (its memory died),
		 * the others from the catalog. */
		for (uint32_t t = 1; t < o->n; t++) {
			const kvbm_status st = kvbm_flush(r.tier[t]);
			if (st != KVBM_OK) {
				fail(&r, t, st, "flush");
				goto done;
			}
		}
		close_tiers(&r, KVBM_CLOSE_DISCARD);
		if (open_tiers(&r) != 0)
			goto done;
		for (uint32_t t = 0; t < o->n; t++) {
			kvbm_pool_counts pc;
			if (kvbm_pool_counts_read(r.tier[t], &pc) == KVBM_OK)
				out->restored[t] = pc.inactive;
		}
	}
	if (run_range(&r, tr, split, tr->n_requests, &refs, &hits) != 0)
		goto done;
	out->after_refs = refs;
	out->after_hits = hits;
	out->seconds = kvbm_replay_now_s() - t0;
	rc = 0;
done:
	close_tiers(&r, 0);
	scratch_free(&r);
	return rc;
}

int kvbm_replay_tiers_run(const struct kvbm_trace *tr, const struct kvbm_tiers_opts *o,
			  struct kvbm_tiers_result *out, char *err, size_t errlen)
{
	if (o->n < 1 || o->n > KVBM_TIERS_MAX) {
		snprintf(err, errlen, "a hierarchy has 1 to %d tiers, not %u", KVBM_TIERS_MAX, o->n);
		return -1;
	}
	for (uint32_t t = 0; t < o->n; t++)
		if (o->capacity[t] == 0 || (t && o->capacity[t] < o->capacity[t - 1])) {
			snprintf(err, errlen,
				 "tier %u has %u blocks: every tier needs at least as many as the"
				 " one above it", t + 1, o->capacity[t]);
			return -1;
		}
	if (o->restart_at && !o->db) {
		snprintf(err, errlen, "a restart needs a catalog (--db)");
		return -1;
	}
	const uint32_t split = o->restart_at ? o->restart_at : tr->n_requests;
	if (replay(tr, o, split, o->restart_at != 0, out, err, errlen) != 0)
		return -1;
	if (o->restart_at) {
		/* The same run without the crash, for comparison: memory only,
		 * since a catalog never changes what is evicted. */
		struct kvbm_tiers_opts plain = *o;
		struct kvbm_tiers_result whole;
		plain.db = NULL;
		plain.progress = NULL;
		if (replay(tr, &plain, split, false, &whole, err, errlen) != 0)
			return -1;
		out->uninterrupted_after_hits = whole.after_hits;
	}
	return 0;
}
