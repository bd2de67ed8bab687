// SPDX-License-Identifier: Apache-2.0
// Header test: kvbm.h must compile as C++ (-Wall -Wextra -Wpedantic -Werror)
// and its declarations must have C linkage, so a C++ program links against
// the C library. Built only when a C++ compiler is available.
#include "kvbm.h"

static_assert(sizeof(kvbm_mutable) == 8, "guards are two u32");
static_assert(KVBM_E_STALE == -5, "status values are pinned");

int main()
{
	kvbm_config cfg;
	kvbm_manager *mgr = nullptr;
	kvbm_mutable m[2] = {};
	kvbm_complete c = {};
	kvbm_immutable h = {};
	kvbm_weak w = {};

	kvbm_config_init(&cfg);
	cfg.block_count = 4;
	cfg.evict_policy = KVBM_EVICT_FIFO;
	if (kvbm_open(&cfg, &mgr) != KVBM_OK)
		return 1;
	if (kvbm_allocate(mgr, 2, m) != KVBM_OK)
		return 2;
	if (kvbm_stage(mgr, m[0], kvbm_hash_chain(0, 1, true), kvbm_block_size(mgr), &c) !=
	    KVBM_OK)
		return 3;
	if (kvbm_register(mgr, c, &h) != KVBM_OK || kvbm_downgrade(mgr, h, &w) != KVBM_OK)
		return 4;
	// Closing with blocks held is defined behaviour.
	return kvbm_close(mgr) == KVBM_OK ? 0 : 5;
}
