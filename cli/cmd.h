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
#define EXIT_PROBLEMS 3 /* verify ran and found problems */

struct cli {
	const char *db;    /* --db PATH */
	bool json;         /* --json */
	bool records;      /* render rows as "key: value" lines, not a table */
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
/* Columns whose integers every command prints as 16 hex digits:
 * seq_hash, parent_hash, hash_salt, hash, parent, root. */
bool cli_is_hash_column(const char *name);
#define CLI_HASH_TEXT 17 /* 16 hex digits and the NUL */
/* Parse a byte count: decimal, optional K, M or G suffix (powers of 1024);
 * false on junk, zero or overflow. */
bool cli_parse_size(const char *s, size_t *out);
/* Parse a hash: 1..16 hex digits, optional 0x. */
bool cli_parse_hash(const char *s, kvbm_hash *out);

/* Flags of cli_open_db(). */
#define CLI_DB_WRITE 1u /* open read-write */
#define CLI_DB_OLDER 2u /* accept an older schema (export, sql, maintenance) */

/* EXIT_OK when the directory of path exists, else an error naming the
 * directory that is missing (or is not one). */
int cli_check_dir(const struct cli *cli, const char *path);
/* EXIT_OK when path is an existing regular file, else an error saying
 * what is missing (file or directory) or what it is instead (a FIFO, a
 * directory...): nothing opens a FIFO and waits. */
int cli_check_file(const struct cli *cli, const char *path);
/* Is path (or, when it does not exist, its directory) on a file system
 * mounted read-only? */
bool cli_read_only_media(const char *path);
/* EXIT_OK unless path (or its directory, for a new file) is on a
 * read-only file system; the error says the command writes it. */
int cli_check_writable(const struct cli *cli, const char *path);
/* Open the --db catalog and check it is a kvbm catalog of this program's
 * schema (or an older one with CLI_DB_OLDER). NULL after an error. */
sqlite3 *cli_open_db(const struct cli *cli, unsigned flags);
/* PRAGMA user_version of an open catalog, -1 when unreadable. */
int cli_schema_version(sqlite3 *db);

/* Is block row b (an alias of block_rows) registered? t is an alias of
 * the TEMP table kv_tier that cli_registered() builds. The restore's rule
 * (see registered.c); a PRIMARY KEY lookup per row. */
#define CLI_LIVE(t, b)                                                                     \
	"(" b ".wseq >= 0 AND " b ".wseq >= " t ".bad_seq AND typeof(" b ".seq_hash) ="     \
	" 'integer' AND NOT EXISTS (SELECT 1 FROM kv_mask m WHERE m.tier_id = " t ".tier_id" \
	" AND m.block_id = " b ".id & 4294967295 AND m.seq > " b ".wseq))"
/* The rows of tier t (an alias of tiers or kv_tier) in block_rows b: one
 * rowid range. */
#define CLI_TIER_RANGE(t, b)                                                               \
	b ".id BETWEEN " t ".tier_id << 32 AND (" t ".tier_id << 32) | 4294967295"

/* What cli_registered() builds besides kv_tier and kv_mask. */
#define CLI_ROWS 1u      /* kv_rows: every row of a known tier with its live flag */
#define CLI_BY_HASH 2u   /* index kv_rows (tier_id, seq_hash, live) */
/* Build the TEMP tables kv_tier(tier_id, name, block_count, bad_seq),
 * kv_mask(tier_id, block_id, seq) and on request kv_rows(id, tier_id,
 * block_id, seq_hash, parent_hash, position, access_count, live), and the
 * SQL function kvbm_reclaim_ok(text). Returns an exit code. */
int cli_registered(const struct cli *cli, sqlite3 *db, unsigned what);

/* Render a prepared statement's rows: an aligned table, "key: value"
 * lines (cli->records; a blank line between rows), or with --json a JSON
 * array of objects (or one object when single is set). Returns an exit
 * code. */
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
