/* SPDX-License-Identifier: Apache-2.0 */
/*
 * replay: drive a real manager with a request trace and report hit rate,
 * evictions and speed, optionally with a crash-and-restart from the
 * catalog and Belady's optimum beside it. demo: the README's main job, a
 * warm restart shown side by side with a cold one on the same trace.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "cmd_replay_tiers.h"
#include "replay.h"

static void progress_bar(uint32_t done, uint32_t total, void *user)
{
	const char *label = user;
	const int width = 40;
	const int filled = total ? (int)((uint64_t)done * (uint64_t)width / total) : width;

	fprintf(stderr, "\r%-8s [%.*s%*s] %3u%%", label, filled,
		"========================================", width - filled, "",
		total ? (unsigned)((uint64_t)done * 100 / total) : 100u);
	if (done >= total)
		fputs("\r\033[K", stderr);
	fflush(stderr);
}

kvbm_evict_policy cli_default_policy(void)
{
	kvbm_config cfg;

	kvbm_config_init(&cfg);
	return cfg.evict_policy;
}

static bool parse_policy(const char *name, kvbm_evict_policy *out)
{
	return kvbm_evict_policy_parse(name, out) == KVBM_OK;
}

static void policy_list(char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned p = 0; p < KVBM_EVICT_COUNT; p++) {
		kvbm_evict_policy parsed;
		const char *name = kvbm_evict_policy_name((kvbm_evict_policy)p);
		if (name && parse_policy(name, &parsed))
			used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s",
						 used ? ", " : "", name);
	}
}

int cmd_replay(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"capacity", true, NULL},	 {"policy", true, NULL},
			     {"block-size", true, NULL}, {"restart-at", true, NULL},
			     {"sigkill", false, NULL},	 {"opt", false, NULL},
			     {"max-line", true, NULL},	 {"max-refs", true, NULL},
			     {"tiers", true, NULL},	 {NULL, false, NULL}};
	struct kvbm_trace_limits lim = {0};
	uint32_t max_refs = 0;
	char *pos[1], err[512], policies[256], usage[1024];
	struct kvbm_replay_opts o = {0};
	struct kvbm_replay_result r;
	struct kvbm_trace t;
	int n, rc;

	policy_list(policies, sizeof(policies));
	const char *default_name = kvbm_evict_policy_name(cli_default_policy());
	snprintf(usage, sizeof(usage), "%s\n  policies: %s (default %s)", cli->usage, policies,
		 default_name);
	cli->usage = usage;
	if ((rc = cli_options(cli, argc, argv, opts, pos, 1, &n)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	if (n != 1)
		return cli_usage(cli, "give the TRACE file to replay");
	const char *tiers = opts[8].value;
	if (tiers && (opts[0].value || opts[4].value || opts[5].value))
		return cli_usage(cli, "--tiers replaces --capacity, and runs without --sigkill or --opt");
	if (!tiers && (!opts[0].value || !cli_parse_u32(opts[0].value, &o.capacity) ||
		       o.capacity == 0))
		return cli_usage(cli, "--capacity N (blocks, at least 1) or --tiers N,N[,N] is required");
	o.policy = cli_default_policy();
	if (!tiers && opts[1].value && !parse_policy(opts[1].value, &o.policy))
		return cli_usage(cli, "--policy must be one of: %s (%s when not given), not '%s'",
				 policies, default_name, opts[1].value);
	if (opts[2].value && !cli_parse_u32(opts[2].value, &o.block_size))
		return cli_usage(cli, "--block-size needs a number, not '%s'", opts[2].value);
	if (opts[3].value && !cli_parse_u32(opts[3].value, &o.restart_at))
		return cli_usage(cli, "--restart-at needs a request number, not '%s'", opts[3].value);
	if (o.restart_at && !cli->db)
		return cli_usage(cli, "--restart-at needs --db PATH: the restart reopens the catalog");
	if (opts[6].value && !cli_parse_size(opts[6].value, &lim.max_line))
		return cli_usage(cli, "--max-line needs a number of bytes, not '%s'",
				 opts[6].value);
	if (opts[7].value && (!cli_parse_u32(opts[7].value, &max_refs) || max_refs == 0))
		return cli_usage(cli, "--max-refs needs a positive number, not '%s'",
				 opts[7].value);
	lim.max_refs = max_refs;
	if (cli->db && (cli_check_dir(cli, cli->db) != EXIT_OK ||
			cli_check_writable(cli, cli->db) != EXIT_OK))
		return EXIT_ERR;
	o.db = cli->db;
	o.restart_by_sigkill = opts[4].value != NULL;
	if (isatty(STDERR_FILENO)) {
		o.progress = progress_bar;
		o.progress_user = "replay";
	}
	if (kvbm_trace_load_ex(pos[0], &lim, &t, err, sizeof(err)) != 0)
		return cli_error(cli, "%s", err);
	if (o.restart_at >= t.n_requests) {
		const uint32_t count = t.n_requests;
		kvbm_trace_free(&t);
		return cli_usage(cli, "--restart-at %u is past the end of %s: it has %u request%s"
				 " (restart points 1..%u)", o.restart_at, pos[0], count,
				 count == 1 ? "" : "s", count - 1);
	}
	if (tiers) {
		rc = cli_replay_tiers(cli, pos[0], &t, tiers, opts[1].value, o.block_size,
				      o.restart_at);
		kvbm_trace_free(&t);
		return rc;
	}
	if (kvbm_replay_run(&t, &o, &r, err, sizeof(err)) != 0) {
		kvbm_trace_free(&t);
		return cli_error(cli, "%s", err);
	}
	const bool opt = opts[5].value != NULL;
	const double opt_rate = opt && t.n_refs ? (double)kvbm_replay_belady(&t, o.capacity) /
							   (double)t.n_refs
						 : 0;
	const char *policy = kvbm_evict_policy_name(o.policy);
	if (cli->json) {
		printf("{\"trace\": ");
		cli_json_string(stdout, pos[0]);
		printf(", \"policy\": \"%s\", \"capacity\": %u, \"requests\": %llu, \"block_refs\": %llu,"
		       " \"unique_blocks\": %llu, \"hits\": %llu, \"hit_rate\": %.6f,"
		       " \"evictions\": %llu, \"seconds\": %.6f, \"ns_per_ref\": %.1f,"
		       " \"blocks_per_second\": %.0f",
		       policy, o.capacity, (unsigned long long)r.requests,
		       (unsigned long long)r.block_refs, (unsigned long long)t.n_unique,
		       (unsigned long long)r.hits, r.hit_rate, (unsigned long long)r.evictions,
		       r.seconds, r.ns_per_ref, r.seconds > 0 ? (double)r.block_refs / r.seconds : 0);
		if (opt)
			printf(", \"opt_hit_rate\": %.6f", opt_rate);
		if (o.restart_at)
			printf(", \"restart_at\": %u, \"sigkill\": %s,"
			       " \"after_restart_refs\": %llu,"
			       " \"after_restart_hits\": %llu,"
			       " \"after_restart_hit_rate\": %.6f, \"uninterrupted_after_hit_rate\": %.6f",
			       o.restart_at, o.restart_by_sigkill ? "true" : "false",
			       (unsigned long long)r.after_refs, (unsigned long long)r.after_hits,
			       r.after_hit_rate,
			       r.uninterrupted_after_hit_rate);
		printf("}\n");
	} else {
		printf("trace        %s: %llu requests, %llu block references, %llu unique blocks\n",
		       pos[0], (unsigned long long)r.requests, (unsigned long long)r.block_refs,
		       (unsigned long long)t.n_unique);
		printf("manager      %u blocks, policy %s%s%s\n", o.capacity, policy,
		       o.db ? ", catalog " : "", o.db ? o.db : "");
		printf("hit rate     %.2f%% (%llu hits)\n", 100 * r.hit_rate,
		       (unsigned long long)r.hits);
		if (opt)
			printf("belady       %.2f%% (offline optimum at this capacity)\n",
			       100 * opt_rate);
		printf("evictions    %llu\n", (unsigned long long)r.evictions);
		printf("speed        %.0f block refs/s (%.0f ns per ref, %.3f s)\n",
		       r.seconds > 0 ? (double)r.block_refs / r.seconds : 0, r.ns_per_ref, r.seconds);
		if (o.restart_at)
			printf("restart      at request %u (%s): hit rate after it %.2f%%, "
			       "uninterrupted run %.2f%%\n",
			       o.restart_at, o.restart_by_sigkill ? "SIGKILL" : "crash-close",
			       100 * r.after_hit_rate, 100 * r.uninterrupted_after_hit_rate);
	}
	kvbm_trace_free(&t);
	return EXIT_OK;
}

/* Find the trace shipped in tests/data from the source tree or a build tree. */
static const char *default_trace(void)
{
	static const char *const candidates[] = {
		"tests/data/traces/mooncake_synthetic_trace.jsonl",
		"../tests/data/traces/mooncake_synthetic_trace.jsonl",
		"../../tests/data/traces/mooncake_synthetic_trace.jsonl",
	};
	const char *env = getenv("KVBM_TRACE");

	if (env && access(env, R_OK) == 0)
		return env;
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
		if (access(candidates[i], R_OK) == 0)
			return candidates[i];
	return NULL;
}

int cmd_demo(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"capacity", true, NULL}, {"policy", true, NULL},
			     {"split", true, NULL},    {NULL, false, NULL}};
	char *pos[1], err[512], dir_template[] = "/tmp/kvbm-demo-XXXXXX", db_path[4200];
	struct kvbm_trace t;
	struct kvbm_replay_opts o = {.capacity = 8000, .policy = cli_default_policy()};
	uint32_t split = 50;
	int n, rc;

	if ((rc = cli_options(cli, argc, argv, opts, pos, 1, &n)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	if (opts[0].value && (!cli_parse_u32(opts[0].value, &o.capacity) || !o.capacity))
		return cli_usage(cli, "--capacity needs a positive number of blocks");
	if (opts[1].value && !parse_policy(opts[1].value, &o.policy))
		return cli_usage(cli, "unknown policy '%s'", opts[1].value);
	if (opts[2].value && (!cli_parse_u32(opts[2].value, &split) || split < 1 || split > 99))
		return cli_usage(cli, "--split needs a percentage in 1..99");
	const char *trace = n == 1 ? pos[0] : default_trace();
	if (!trace)
		return cli_error(cli, "no trace given and tests/data/traces/"
				      "mooncake_synthetic_trace.jsonl not found");
	if (kvbm_trace_load(trace, &t, err, sizeof(err)) != 0)
		return cli_error(cli, "%s", err);
	if (cli->db) {
		if (cli_check_dir(cli, cli->db) != EXIT_OK ||
		    cli_check_writable(cli, cli->db) != EXIT_OK) {
			kvbm_trace_free(&t);
			return EXIT_ERR;
		}
		if (access(cli->db, F_OK) == 0) {
			kvbm_trace_free(&t);
			return cli_error(cli, "%s exists; the demo builds a new catalog", cli->db);
		}
		snprintf(db_path, sizeof(db_path), "%s", cli->db);
	} else {
		if (!mkdtemp(dir_template)) {
			kvbm_trace_free(&t);
			return cli_error(cli, "cannot create a temporary directory");
		}
		snprintf(db_path, sizeof(db_path), "%s/catalog.db", dir_template);
	}
	const uint32_t restart = (uint32_t)((uint64_t)t.n_requests * split / 100);
	if (isatty(STDERR_FILENO)) {
		o.progress = progress_bar;
		o.progress_user = "demo";
	}

	printf("kvbm %s warm-restart demo\n", kvbm_version());
	printf("trace    %s\n         %u requests, %llu block references, %llu unique blocks\n",
	       trace, t.n_requests, (unsigned long long)t.n_refs, (unsigned long long)t.n_unique);
	printf("server   %u blocks, %s eviction, catalog %s\n", o.capacity,
	       kvbm_evict_policy_name(o.policy), db_path);
	printf("story    serve requests 0..%u, get killed with SIGKILL (no clean shutdown),\n"
	       "         restart, then serve requests %u..%u\n\n",
	       restart - 1, restart, t.n_requests - 1);

	/* Warm: the first part in a child that is SIGKILLed, then the rest
	 * on a manager reopened from what its catalog had committed. Cold:
	 * the same requests on a manager that restarted empty. Each over the
	 * first requests after the restart and over the whole remainder. */
	const uint32_t soon = restart + 250 < t.n_requests ? restart + 250 : t.n_requests;
	struct kvbm_replay_result warm[2], cold[2];
	const uint32_t ends[2] = {soon, t.n_requests};
	rc = EXIT_ERR;
	for (int w = 0; w < 2; w++) {
		struct kvbm_replay_opts wo = o, co = o;
		char path[4300];
		snprintf(path, sizeof(path), "%s%s", db_path, w ? "" : ".soon");
		wo.db = path;
		wo.restart_at = restart;
		wo.restart_by_sigkill = true;
		wo.last = ends[w];
		co.first = restart;
		co.last = ends[w];
		if (kvbm_replay_run(&t, &wo, &warm[w], err, sizeof(err)) != 0 ||
		    kvbm_replay_run(&t, &co, &cold[w], err, sizeof(err)) != 0) {
			cli_error(cli, "%s", err);
			goto out;
		}
	}
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;
	kvbm_config_init(&cfg);
	cfg.block_count = o.capacity;
	cfg.evict_policy = o.policy;
	cfg.catalog_path = db_path;

	printf("hit rate after the restart      first %4u requests    all %4u requests\n",
	       soon - restart, t.n_requests - restart);
	printf("  cold restart (empty cache)       %8.2f%%             %8.2f%%\n",
	       100 * cold[0].hit_rate, 100 * cold[1].hit_rate);
	printf("  warm restart (kvbm catalog)      %8.2f%%             %8.2f%%\n",
	       100 * warm[0].after_hit_rate, 100 * warm[1].after_hit_rate);
	printf("  never restarted (reference)      %8.2f%%             %8.2f%%\n",
	       100 * warm[0].uninterrupted_after_hit_rate, 100 * warm[1].uninterrupted_after_hit_rate);
	const uint64_t gained = warm[1].after_hits > cold[1].hits ? warm[1].after_hits - cold[1].hits : 0;
	printf("\nthe warm restart reused %llu more blocks (%llu tokens of prefill at %u tokens per"
	       " block)\nthan the cold one, %llu of them in the first %u requests.\n",
	       (unsigned long long)gained, (unsigned long long)gained * 512, 512u,
	       (unsigned long long)(warm[0].after_hits > cold[0].hits
					    ? warm[0].after_hits - cold[0].hits
					    : 0),
	       soon - restart);
	if (kvbm_open(&cfg, &mgr) == KVBM_OK) {
		kvbm_pool_counts c;
		kvbm_pool_counts_read(mgr, &c);
		printf("the catalog now holds %u registered blocks; inspect it with\n"
		       "  kvbm-catalog --db %s info\n", c.inactive, db_path);
		kvbm_close(mgr);
	}
	rc = EXIT_OK;
out:
	kvbm_trace_free(&t);
	return rc;
}
