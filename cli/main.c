/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvbm-catalog: the operator's tool for a kvbm catalog. Global options
 * (--db, --json, --help, --version) come before the command (--db and
 * --json may also follow it); each command parses its own options.
 * Exit status: 0 ok, 1 error, 2 usage, 3 verify found problems.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

static const struct cmd commands[] = {
	{"init", cmd_init, "create an empty catalog for a tier",
	 "kvbm-catalog --db PATH init --block-count N [--block-size N] [--tier NAME] "
	 "[--fingerprint TEXT]"},
	{"info", cmd_info, "identity, schema and health of each tier",
	 "kvbm-catalog --db PATH info [--table] [--json]\n"
	 "  one \"key: value\" line per field, tiers apart by a blank line; --table: one row per"
	 " tier"},
	{"stats", cmd_stats, "pool counts and persisted counters",
	 "kvbm-catalog --db PATH stats [--json]"},
	{"blocks", cmd_blocks, "list blocks",
	 "kvbm-catalog --db PATH blocks [--tier NAME] [--state registered|free] [--hash HEX] "
	 "[--limit N] [--order evict|access|id] [--json]"},
	{"show", cmd_show, "one block, by hash or id",
	 "kvbm-catalog --db PATH show HASH | --block ID [--tier NAME] [--json]"},
	{"lineage", cmd_lineage, "ancestors and descendants of a hash",
	 "kvbm-catalog --db PATH lineage HASH [--tier NAME] [--json]"},
	{"top", cmd_top, "hottest prefixes by access count",
	 "kvbm-catalog --db PATH top [--limit N] [--json]"},
	{"verify", cmd_verify, "check integrity and the catalog's invariants",
	 "kvbm-catalog --db PATH verify [--json]\n"
	 "  exit status: 0 no problems (warnings allowed), 3 problems found, 1 the checks could"
	 " not run"},
	{"export", cmd_export, "write the catalog as JSON Lines",
	 "kvbm-catalog --db PATH export [--output FILE]"},
	{"import", cmd_import, "build a new catalog from JSON Lines",
	 "kvbm-catalog --db NEW_PATH import FILE [--max-line BYTES]"},
	{"vacuum", cmd_vacuum, "rebuild the database file compactly",
	 "kvbm-catalog --db PATH vacuum"},
	{"checkpoint", cmd_checkpoint, "move the WAL into the database and truncate it",
	 "kvbm-catalog --db PATH checkpoint"},
	{"migrate", cmd_migrate, "upgrade the schema to this program's version",
	 "kvbm-catalog --db PATH migrate [--dry-run]"},
	{"sql", cmd_sql, "run a read-only SQL query",
	 "kvbm-catalog --db PATH sql \"SELECT ...\" [--json]"},
	{"replay", cmd_replay, "replay a request trace against a real manager",
	 "kvbm-catalog [--db PATH] replay TRACE --capacity N [--policy NAME] [--block-size N] "
	 "[--restart-at N] [--sigkill] [--opt] [--max-line BYTES] [--max-refs N] [--json]\n"
	 "       kvbm-catalog [--db PATH] replay TRACE --tiers N,N[,N] [--policy NAME[,NAME...]] "
	 "[--block-size N] [--restart-at N] [--json]\n"
	 "  --tiers: a hierarchy G1,G2,..., fastest first; G1 offloads its victims to G2"
	 " before evicting, a miss in G1 is onboarded from the fastest tier holding it;"
	 " with --db and --restart-at, G1 (volatile) restarts cold and the others warm"},
	{"demo", cmd_demo, "warm restart demo: crash, restart from the catalog, compare",
	 "kvbm-catalog [--db PATH] demo [TRACE] [--capacity N] [--policy NAME] [--split PERCENT]"},
};

static void help(FILE *f)
{
	fprintf(f, "usage: kvbm-catalog [--db PATH] [--json] COMMAND [options]\n"
		   "       kvbm-catalog COMMAND [--db PATH] [options]\n"
		   "       kvbm-catalog COMMAND --help\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nexit status: 0 ok, 1 error, 2 usage, 3 verify found problems."
		   " See kvbm-catalog(1).\n");
}

int main(int argc, char **argv)
{
	struct cli cli = {.cmd = "kvbm-catalog", .usage = "kvbm-catalog [--db PATH] COMMAND"};
	int i = 1;

	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			help(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("kvbm-catalog %s (schema %d, hash encoding %d)\n", kvbm_version(),
			       KVBM_SCHEMA_VERSION, KVBM_HASH_ENCODING);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--json") == 0) {
			cli.json = true;
		} else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
			cli.db = argv[++i];
		} else if (strncmp(argv[i], "--db=", 5) == 0) {
			cli.db = argv[i] + 5;
		} else {
			fprintf(stderr, "kvbm-catalog: unknown option '%s'\n", argv[i]);
			help(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "kvbm-catalog: no command given\n");
		help(stderr);
		return EXIT_USAGE;
	}
	for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
		if (strcmp(argv[i], commands[c].name) == 0) {
			cli.cmd = commands[c].name;
			cli.usage = commands[c].usage;
			return commands[c].fn(&cli, argc - i, argv + i);
		}
	}
	fprintf(stderr, "kvbm-catalog: unknown command '%s'\n", argv[i]);
	help(stderr);
	return EXIT_USAGE;
}
