/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvbm-catalog's command table and the helpers every command shares:
 * option scanning, errors with the documented exit codes, read-only
 * catalog connections, hash parsing, and query rendering (render.c).
 */
#ifndef KVBM_CLI_CMD_H
#define KVBM_CLI_CMD_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>

#include "kvbm.h"

#define EXIT_OK 0
#define EXIT_ERR 1
#define EXIT_USAGE 2

struct cli {
	const char *db;    /* --db PATH */
	bool json;         /* --json */
	const char *cmd;   /* the running command, for messages */
	const char *usage; /* its usage text */
};

typedef int (*cmd_fn)(struct cli *cli, int argc, char **argv);

struct cmd {
	const char *name;
	cmd_fn fn;
	const char *summary;
	const char *usage; /* synopsis and options, printed by --help */
};

/* Print "kvbm-catalog: <cmd>: <message>" on stderr; returns EXIT_ERR. */
int cli_error(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the message and the command's usage on stderr; returns EXIT_USAGE. */
int cli_usage(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One command-line option: "--name" (flag) or "--name VALUE"/"--name=VALUE". */
struct opt {
	const char *name;
	bool has_value;
	const char *value; /* set when seen; "" for a flag */
};
/* Scan argv for opts and --json/--help; positional arguments are compacted
 * into pos (at most max_pos). Returns -1 (after cli_usage) on a bad option,
 * 1 when --help was printed, 0 otherwise. */
int cli_options(struct cli *cli, int argc, char **argv, struct opt *opts, char **pos,
		int max_pos, int *n_pos);
/* Parse an unsigned decimal option value; false on junk or overflow. */
bool cli_parse_u32(const char *s, uint32_t *out);
/* Parse a hash: 1..16 hex digits, optional 0x. */
bool cli_parse_hash(const char *s, kvbm_hash *out);

/* Open the --db catalog for reading (or writing) and check it is a kvbm
 * catalog of a schema this program understands. NULL after an error. */
sqlite3 *cli_open_db(const struct cli *cli, bool writable);

/* Render a prepared statement's rows: an aligned table, or with --json a
 * JSON array of objects (or one object when single is set). Returns an
 * exit code. */
int cli_render(const struct cli *cli, sqlite3_stmt *st, bool single);
/* Prepare sql with optional text binds (NULL-terminated) and render it.
 * single is an int, not a bool: va_start after a promoted type is undefined. */
int cli_query(const struct cli *cli, sqlite3 *db, const char *sql, int single, ...);
/* Write s as a JSON string literal. */
void cli_json_string(FILE *f, const char *s);

int cmd_init(struct cli *, int, char **);
int cmd_info(struct cli *, int, char **);
int cmd_stats(struct cli *, int, char **);
int cmd_blocks(struct cli *, int, char **);
int cmd_show(struct cli *, int, char **);
int cmd_lineage(struct cli *, int, char **);
int cmd_top(struct cli *, int, char **);
int cmd_verify(struct cli *, int, char **);
int cmd_export(struct cli *, int, char **);
int cmd_import(struct cli *, int, char **);
int cmd_vacuum(struct cli *, int, char **);
int cmd_checkpoint(struct cli *, int, char **);
int cmd_migrate(struct cli *, int, char **);
int cmd_sql(struct cli *, int, char **);
int cmd_replay(struct cli *, int, char **);
int cmd_demo(struct cli *, int, char **);

#endif
