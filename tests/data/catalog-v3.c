/* SPDX-License-Identifier: Apache-2.0 */
/* How tests/data/catalog-v3.sql was made: built against libkvbm at commit
 * fd4aa1e (schema v3), run on the v2 fixture loaded into v3.db
 * (`sqlite3 v3.db < catalog-v2.sql; catalog-v3 v3.db`, which migrates it),
 * then `sqlite3 v3.db .dump` with the user_version and application_id
 * pragmas added. Not built by Meson: today's library writes the current
 * schema.
 *
 * Writes a v3 catalog for tests/data/catalog-v3.sql with the v3 library:
 * the v2 fixture migrated, then two tiers churned so the file holds
 * reclaim rows that mask older rows, and hashes held by both tiers. */
#include <stdio.h>
#include <stdlib.h>
#include "kvbm.h"

static kvbm_manager *open_tier(const char *path, const char *tier, uint32_t n, kvbm_evict_policy p)
{
	kvbm_config cfg;
	kvbm_manager *m = NULL;
	char err[256];
	kvbm_config_init(&cfg);
	cfg.block_count = n;
	cfg.block_size = 16;
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	cfg.tier = tier;
	cfg.evict_policy = p;
	cfg.model_fingerprint = "fixture-model";
	cfg.catalog_reserve = 2;
	if (kvbm_open_ex(&cfg, &m, err, sizeof(err)) != KVBM_OK) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return m;
}

static void put(kvbm_manager *m, kvbm_hash h, kvbm_hash parent, uint32_t pos)
{
	kvbm_mutable mu;
	kvbm_complete c;
	kvbm_immutable i;
	if (kvbm_allocate(m, 1, &mu) || kvbm_stage_lineage(m, mu, h, parent, pos, 16, &c) ||
	    kvbm_register(m, c, &i) || kvbm_immutable_release(m, i))
		exit(2);
}

int main(int argc, char **argv)
{
	kvbm_manager *g1 = open_tier(argv[1], "G1", 64, KVBM_EVICT_LRU);
	kvbm_manager *g2 = open_tier(argv[1], "G2", 48, KVBM_EVICT_PRIORITY);
	/* A chain both tiers hold, then churn G1 so committed rows are reclaimed. */
	for (uint32_t i = 0; i < 6; i++) {
		const kvbm_hash h = 0x7000 + i, p = i ? 0x7000 + i - 1 : 0;
		put(g1, h, p, i);
		put(g2, h, p, i);
	}
	if (kvbm_flush(g1) || kvbm_flush(g2))
		exit(3);
	for (uint32_t i = 0; i < 12; i++)
		put(g1, 0x9000 + i, i ? 0x9000 + i - 1 : 0, i);
	if (kvbm_flush(g1) || kvbm_flush(g2))
		exit(4);
	kvbm_close_ex(g1, KVBM_CLOSE_DISCARD);
	kvbm_close_ex(g2, KVBM_CLOSE_DISCARD);
	return 0;
}
