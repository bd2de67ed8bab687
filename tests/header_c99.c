/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Header test: kvbm.h on its own must compile as strict C99 with every
 * warning an error (-std=c99 -Wall -Wextra -Wpedantic -Werror), and its
 * core entry points must link against the shared library. The program
 * also checks a few facts of the ABI that callers build on.
 */
#include "kvbm.h"

/* C99 has no _Static_assert; a negative array size fails the build. */
#define HEADER_ASSERT(name, cond) typedef char header_assert_##name[(cond) ? 1 : -1]

HEADER_ASSERT(ok_is_zero, KVBM_OK == 0);
HEADER_ASSERT(stale_pinned, KVBM_E_STALE == -5);
HEADER_ASSERT(unsupported_pinned, KVBM_E_UNSUPPORTED == -14);
HEADER_ASSERT(mutable_small, sizeof(kvbm_mutable) == 8);
HEADER_ASSERT(complete_small, sizeof(kvbm_complete) == 8);
HEADER_ASSERT(immutable_small, sizeof(kvbm_immutable) == 12);
HEADER_ASSERT(hash_is_u64, sizeof(kvbm_hash) == 8);
HEADER_ASSERT(max_block_size, KVBM_MAX_BLOCK_SIZE == 1024u);

/* Every core entry point, by address: the link fails if one is missing
 * or hidden. */
typedef void (*any_fn)(void);
static const any_fn core_api[] = {
	(any_fn)kvbm_version, (any_fn)kvbm_strerror, (any_fn)kvbm_config_init,
	(any_fn)kvbm_evict_policy_name, (any_fn)kvbm_evict_policy_parse,
	(any_fn)kvbm_open, (any_fn)kvbm_open_ex, (any_fn)kvbm_close, (any_fn)kvbm_close_ex,
	(any_fn)kvbm_last_error, (any_fn)kvbm_total_blocks, (any_fn)kvbm_block_size,
	(any_fn)kvbm_available_blocks, (any_fn)kvbm_pool_counts_read,
	(any_fn)kvbm_allocate, (any_fn)kvbm_allocate_ex, (any_fn)kvbm_mutable_release,
	(any_fn)kvbm_stage, (any_fn)kvbm_stage_lineage, (any_fn)kvbm_unstage,
	(any_fn)kvbm_complete_release, (any_fn)kvbm_register, (any_fn)kvbm_register_batch,
	(any_fn)kvbm_immutable_retain, (any_fn)kvbm_immutable_release,
	(any_fn)kvbm_immutable_release_batch, (any_fn)kvbm_downgrade,
	(any_fn)kvbm_weak_upgrade, (any_fn)kvbm_immutable_set_reset_on_release,
	(any_fn)kvbm_immutable_set_priority, (any_fn)kvbm_block_info_read,
	(any_fn)kvbm_immutable_hash, (any_fn)kvbm_immutable_ref_count,
	(any_fn)kvbm_reset_inactive, (any_fn)kvbm_match, (any_fn)kvbm_match_scattered,
	(any_fn)kvbm_contains, (any_fn)kvbm_hash_block, (any_fn)kvbm_hash_salt,
	(any_fn)kvbm_hash_chain, (any_fn)kvbm_hash_sequence, (any_fn)kvbm_flush,
	(any_fn)kvbm_metrics_read,
};

int main(void)
{
	kvbm_config cfg;
	kvbm_manager *mgr = 0;
	kvbm_mutable m = {0, 0};
	kvbm_block_info info;
	unsigned i;

	for (i = 0; i < sizeof(core_api) / sizeof(core_api[0]); i++)
		if (!core_api[i])
			return 1;
	kvbm_config_init(&cfg);
	cfg.block_count = 2;
	if (kvbm_open(&cfg, &mgr) != KVBM_OK)
		return 2;
	if (kvbm_allocate(mgr, 1, &m) != KVBM_OK || kvbm_block_info_read(mgr, m.block, &info))
		return 3;
	if (info.state != KVBM_BLOCK_MUTABLE)
		return 4;
	return kvbm_close(mgr) == KVBM_OK ? 0 : 5;
}
