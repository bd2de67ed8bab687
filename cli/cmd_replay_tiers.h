/* SPDX-License-Identifier: Apache-2.0 */
/* replay --tiers: the hierarchy replay's options and report (cmd_replay_tiers.c). */
#ifndef KVBM_CLI_CMD_REPLAY_TIERS_H
#define KVBM_CLI_CMD_REPLAY_TIERS_H

#include "cmd.h"
#include "replay.h"

/* The library's default policy (kvbm_config_init's): what replay, replay
 * --tiers and demo run without --policy, so they measure what a server
 * that leaves the policy alone gets. */
kvbm_evict_policy cli_default_policy(void);

/* Replay t on the tiers of a comma list of capacities, with one policy
 * or one per tier (NULL: cli_default_policy() for each). Returns an exit
 * code. */
int cli_replay_tiers(struct cli *cli, const char *trace_path, const struct kvbm_trace *t,
		     const char *tiers, const char *policies, uint32_t block_size,
		     uint32_t restart_at);

#endif
