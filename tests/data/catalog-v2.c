/* SPDX-License-Identifier: Apache-2.0 */
/* How tests/data/catalog-v2.sql was made: built against libkvbm at commit
 * 60ca600 (schema v2), run as `catalog-v2 v2.db`, then `sqlite3 v2.db .dump`.
 * Not built by Meson: today's library would write the current schema. */
#include <stdio.h>
#include <string.h>
#include "kvbm.h"
static void chk(kvbm_status s, const char *w){ if(s){fprintf(stderr,"%s: %s\n",w,kvbm_strerror(s)); __builtin_trap();} }
static void run(const char *path, const char *tier, kvbm_evict_policy pol, uint32_t blocks, uint32_t salt)
{
	kvbm_config c; kvbm_manager *m;
	kvbm_config_init(&c); c.block_count = blocks; c.block_size = 16; c.catalog_path = path; c.tier = tier;
	c.evict_policy = pol; c.model_fingerprint = "fixture-model";
	chk(kvbm_open(&c, &m), "open");
	/* 24 chains of 4 blocks into a 64-block tier: later chains evict earlier ones. */
	for (uint32_t ch = 0; ch < 24; ch++) {
		kvbm_mutable mu[4]; kvbm_complete cp[4]; kvbm_immutable r[4]; kvbm_hash parent = 0;
		chk(kvbm_allocate(m, 4, mu), "alloc");
		for (uint32_t i = 0; i < 4; i++) {
			kvbm_hash h = kvbm_hash_chain(parent, salt + ch * 10 + i, i == 0);
			chk(kvbm_stage_lineage(m, mu[i], h, i ? parent : 0, i, 16, &cp[i]), "stage");
			parent = h;
		}
		chk(kvbm_register_batch(m, cp, 4, r), "reg");
		if (ch % 5 == 0) kvbm_immutable_set_priority(m, r[0], 80, 0);
		kvbm_immutable rev[4] = {r[3], r[2], r[1], r[0]};
		chk(kvbm_immutable_release_batch(m, rev, 4), "rel");
		/* hit an old prefix again now and then */
		if (ch % 3 == 2) {
			kvbm_hash hs[2]; hs[0] = kvbm_hash_chain(0, salt + (ch - 2) * 10, true);
			hs[1] = kvbm_hash_chain(hs[0], salt + (ch - 2) * 10 + 1, false);
			kvbm_immutable rr[2]; uint32_t hit;
			chk(kvbm_match(m, hs, 2, rr, &hit), "match");
			kvbm_immutable rv[2] = {rr[1], rr[0]};
			if (hit) chk(kvbm_immutable_release_batch(m, rv + (2 - hit), hit), "rel2");
		}
		chk(kvbm_flush(m), "flush");
	}
	/* Evict five blocks into the reset pool: their rows become free rows. */
	kvbm_mutable fr[5];
	chk(kvbm_allocate(m, 5, fr), "alloc5");
	for (int i = 0; i < 5; i++) chk(kvbm_mutable_release(m, fr[i]), "mrel");
	chk(kvbm_flush(m), "flush");
	chk(kvbm_close_ex(m, pol == KVBM_EVICT_PRIORITY ? KVBM_CLOSE_DISCARD : 0), "close");
}
int main(int argc, char **argv)
{
	run(argv[1], "G1", KVBM_EVICT_LRU, 64, 1000);
	run(argv[1], "G2", KVBM_EVICT_PRIORITY, 48, 5000);
	return 0;
}
