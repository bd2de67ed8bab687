/* SPDX-License-Identifier: Apache-2.0 */
/*
 * replay --tiers CAP1,CAP2[,CAP3]: the trace served by a hierarchy, with
 * hits per tier and the blocks copied between them; with --db and
 * --restart-at, the warm restart of the tiers whose memory survives.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "cmd_replay_tiers.h"
#include "replay.h"

/* Split a comma list into at most max items; returns the count, 0 on junk. */
static uint32_t split_list(char *s, char **items, uint32_t max)
{
	uint32_t n = 0;

	for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (n == max)
			return 0;
		items[n++] = tok;
	}
	return n;
}

int cli_replay_tiers(struct cli *cli, const char *trace_path, const struct kvbm_trace *t,
		     const char *tiers, const char *policies, uint32_t block_size,
		     uint32_t restart_at)
{
	static const char *const names[KVBM_TIERS_MAX] = {"G1", "G2", "G3", "G4",
							  "G5", "G6", "G7", "G8"};
	struct kvbm_tiers_opts o = {.block_size = block_size, .db = cli->db,
				    .restart_at = restart_at};
	struct kvbm_tiers_result r;
	char caps[256], pols[256], err[1024], *items[KVBM_TIERS_MAX + 1];

	snprintf(caps, sizeof(caps), "%s", tiers);
	o.n = split_list(caps, items, KVBM_TIERS_MAX);
	if (o.n == 0)
		return cli_usage(cli, "--tiers takes 1 to %d capacities separated by commas, not '%s'",
				 KVBM_TIERS_MAX, tiers);
	for (uint32_t i = 0; i < o.n; i++) {
		if (!cli_parse_u32(items[i], &o.capacity[i]) || o.capacity[i] == 0)
			return cli_usage(cli, "--tiers: '%s' is not a positive number of blocks",
					 items[i]);
		o.names[i] = names[i];
		o.policy[i] = cli_default_policy();
	}
	if (policies) {
		snprintf(pols, sizeof(pols), "%s", policies);
		const uint32_t np = split_list(pols, items, KVBM_TIERS_MAX);
		if (np != 1 && np != o.n)
			return cli_usage(cli, "--policy with --tiers takes one policy, or one per tier"
					 " (%u), not '%s'", o.n, policies);
		for (uint32_t i = 0; i < o.n; i++)
			if (kvbm_evict_policy_parse(items[np == 1 ? 0 : i], &o.policy[i]) != KVBM_OK)
				return cli_usage(cli, "unknown policy '%s'", items[np == 1 ? 0 : i]);
	}
	if (kvbm_replay_tiers_run(t, &o, &r, err, sizeof(err)) != 0)
		return cli_error(cli, "%s", err);
	uint64_t hits = 0;
	for (uint32_t i = 0; i < o.n; i++)
		hits += r.hits[i];
	const double rate = r.block_refs ? (double)hits / (double)r.block_refs : 0;
	const double after = r.after_refs ? (double)r.after_hits / (double)r.after_refs : 0;
	const double whole = r.after_refs ? (double)r.uninterrupted_after_hits / (double)r.after_refs
					  : 0;
	if (cli->json) {
		printf("{\"trace\": ");
		cli_json_string(stdout, trace_path);
		printf(", \"requests\": %llu, \"block_refs\": %llu, \"hits\": %llu, \"hit_rate\": %.6f,"
		       " \"onboarded\": %llu, \"seconds\": %.6f, \"tiers\": [",
		       (unsigned long long)r.requests, (unsigned long long)r.block_refs,
		       (unsigned long long)hits, rate, (unsigned long long)r.onboarded, r.seconds);
		for (uint32_t i = 0; i < o.n; i++)
			printf("%s{\"tier\": \"%s\", \"capacity\": %u, \"policy\": \"%s\","
			       " \"survives_restart\": %s, \"hits\": %llu, \"hit_rate\": %.6f,"
			       " \"evictions\": %llu, \"offloaded\": %llu, \"restored\": %u}",
			       i ? ", " : "", o.names[i], o.capacity[i],
			       kvbm_evict_policy_name(o.policy[i]), i ? "true" : "false",
			       (unsigned long long)r.hits[i],
			       r.block_refs ? (double)r.hits[i] / (double)r.block_refs : 0,
			       (unsigned long long)r.evictions[i], (unsigned long long)r.offloaded[i],
			       r.restored[i]);
		printf("]");
		if (restart_at)
			printf(", \"restart_at\": %u, \"after_restart_refs\": %llu,"
			       " \"after_restart_hits\": %llu, \"after_restart_hit_rate\": %.6f,"
			       " \"uninterrupted_after_hit_rate\": %.6f",
			       restart_at, (unsigned long long)r.after_refs,
			       (unsigned long long)r.after_hits, after, whole);
		printf("}\n");
		return EXIT_OK;
	}
	printf("trace        %s: %llu requests, %llu block references, %llu unique blocks\n",
	       trace_path, (unsigned long long)r.requests, (unsigned long long)r.block_refs,
	       (unsigned long long)t->n_unique);
	printf("hit rate     %.2f%% (%llu hits), %llu blocks onboarded into G1\n", 100 * rate,
	       (unsigned long long)hits, (unsigned long long)r.onboarded);
	printf("tier  blocks    policy     memory      hits   hit rate   evictions  offloaded\n");
	for (uint32_t i = 0; i < o.n; i++)
		printf("%-4s  %-8u  %-9s  %-9s  %8llu   %6.2f%%   %9llu  %9llu\n", o.names[i],
		       o.capacity[i], kvbm_evict_policy_name(o.policy[i]),
		       i ? "survives" : "volatile", (unsigned long long)r.hits[i],
		       r.block_refs ? 100.0 * (double)r.hits[i] / (double)r.block_refs : 0,
		       (unsigned long long)r.evictions[i], (unsigned long long)r.offloaded[i]);
	if (restart_at) {
		printf("restart      at request %u (crash once the writers caught up):", restart_at);
		for (uint32_t i = 0; i < o.n; i++)
			printf(" %s %u restored%s", o.names[i], r.restored[i], i + 1 < o.n ? "," : "");
		printf("\n             hit rate after it %.2f%%, uninterrupted run %.2f%%\n",
		       100 * after, 100 * whole);
	}
	return EXIT_OK;
}
