/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The commands that create or change a catalog file: init, export and
 * import (JSON Lines that round-trip byte for byte), vacuum, checkpoint and
 * migrate. Import builds a new file beside the target and renames it into
 * place only when every line went in, so a bad line never leaves a partial
 * catalog behind. It reads this release's export and the previous one's
 * (schema 2: meta, block and stat lines), which it converts exactly as the
 * library's migration converts a schema-2 file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "jsonl.h"
#include "lines.h"

/* Before a command writes an existing --db: ask the library what the file
 * is (kvbm_catalog_migrate with KVBM_MIGRATE_DRY_RUN identifies it and
 * changes nothing), so a file that is not a kvbm catalog is refused as it
 * was found. *from: its schema version, 0 for an empty file. */
static int identify(const struct cli *cli, int *from)
{
	char err[512];

	if (cli_check_file(cli, cli->db) != EXIT_OK || cli_check_writable(cli, cli->db) != EXIT_OK)
		return EXIT_ERR;
	*from = 0;
	if (kvbm_catalog_migrate(cli->db, KVBM_MIGRATE_DRY_RUN, from, NULL, err, sizeof(err)) !=
	    KVBM_OK)
		return cli_error(cli, "%s", err);
	return EXIT_OK;
}

/* identify(), and an empty file is not a catalog either. */
static int identify_catalog(const struct cli *cli, int *from)
{
	if (identify(cli, from) != EXIT_OK)
		return EXIT_ERR;
	if (*from == 0)
		return cli_error(cli, "%s is empty, not a kvbm catalog (init makes one); it was"
				 " left untouched", cli->db);
	return EXIT_OK;
}

/* EXIT_OK when the catalog at --db has no tier of that name. */
static int tier_absent(const struct cli *cli, const char *tier)
{
	sqlite3 *db = cli_open_db(cli, CLI_DB_OLDER);
	sqlite3_stmt *st = NULL;
	int rc = EXIT_ERR;

	if (!db)
		return EXIT_ERR;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM meta WHERE tier = ?", -1, &st, NULL) != SQLITE_OK)
		cli_error(cli, "cannot read meta of %s: %s", cli->db, sqlite3_errmsg(db));
	else if (sqlite3_bind_text(st, 1, tier, -1, SQLITE_STATIC) != SQLITE_OK ||
		 sqlite3_step(st) == SQLITE_ROW)
		cli_error(cli, "tier '%s' already exists in %s", tier, cli->db);
	else
		rc = EXIT_OK;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

int cmd_init(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"block-count", true, NULL}, {"block-size", true, NULL},
			     {"tier", true, NULL},	  {"fingerprint", true, NULL},
			     {NULL, false, NULL}};
	int n, rc;
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;
	char err[512];

	if ((rc = cli_options(cli, argc, argv, opts, NULL, 0, &n)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	kvbm_config_init(&cfg);
	if (!cli->db)
		return cli_usage(cli, "--db PATH is required");
	if (!opts[0].value || !cli_parse_u32(opts[0].value, &cfg.block_count))
		return cli_usage(cli, "--block-count N is required");
	if (opts[1].value && !cli_parse_u32(opts[1].value, &cfg.block_size))
		return cli_usage(cli, "--block-size needs a number, not '%s'", opts[1].value);
	if (opts[2].value)
		cfg.tier = opts[2].value;
	cfg.model_fingerprint = opts[3].value;
	cfg.catalog_path = cli->db;
	if (cli_check_dir(cli, cli->db) != EXIT_OK || cli_check_writable(cli, cli->db) != EXIT_OK)
		return EXIT_ERR;
	/* Only a missing or empty file becomes a new catalog; anything else
	 * must be one already. Opening an existing tier would restore it, not
	 * create it: refuse, so init never reports an empty catalog that is
	 * not. */
	int from = 0;
	if (access(cli->db, F_OK) == 0 && identify(cli, &from) != EXIT_OK)
		return EXIT_ERR;
	if (from > 0 && (rc = tier_absent(cli, cfg.tier)) != EXIT_OK)
		return rc;
	const kvbm_status st = kvbm_open_ex(&cfg, &mgr, err, sizeof(err));
	if (st != KVBM_OK)
		return cli_error(cli, "%s", err);
	if (kvbm_close(mgr) != KVBM_OK)
		return cli_error(cli, "cannot close %s cleanly", cli->db);
	if (!cli->json)
		printf("initialised %s: tier %s, %u blocks of %u tokens\n", cli->db, cfg.tier,
		       cfg.block_count, cfg.block_size);
	else
	{
		printf("{\"db\": ");
		cli_json_string(stdout, cli->db);
		printf(", \"tier\": ");
		cli_json_string(stdout, cfg.tier);
		printf(", \"block_count\": %u, \"block_size\": %u}\n", cfg.block_count,
		       cfg.block_size);
	}
	return EXIT_OK;
}

static int export_table(const struct cli *cli, sqlite3 *db, const struct kvbm_jsonl_table *tab,
			FILE *out)
{
	char sql[128];
	sqlite3_stmt *st = NULL;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY %s", tab->source, tab->order);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return cli_error(cli, "cannot read %s: %s", tab->source, sqlite3_errmsg(db));
	const int cols = sqlite3_column_count(st);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		fprintf(out, "{\"type\": \"%s\"", tab->type);
		for (int c = 0; c < cols; c++) {
			const char *name = sqlite3_column_name(st, c);
			fprintf(out, ", \"%s\": ", name);
			const int type = sqlite3_column_type(st, c);
			if (type == SQLITE_NULL)
				fputs("null", out);
			else if (type == SQLITE_INTEGER && kvbm_jsonl_is_hash_column(name))
				fprintf(out, "\"%016llx\"",
					(unsigned long long)sqlite3_column_int64(st, c));
			else if (type == SQLITE_INTEGER)
				fprintf(out, "%lld", sqlite3_column_int64(st, c));
			else if (type == SQLITE_BLOB) {
				/* As hex: a key or token blob holds NUL bytes. */
				const unsigned char *b = sqlite3_column_blob(st, c);
				const int len = sqlite3_column_bytes(st, c);
				fputs("\"x'", out);
				for (int i = 0; i < len; i++)
					fprintf(out, "%02x", b[i]);
				fputs("'\"", out);
			} else
				cli_json_string(out, (const char *)sqlite3_column_text(st, c));
		}
		fputs("}\n", out);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return cli_error(cli, "cannot read %s: %s", tab->source, sqlite3_errmsg(db));
	return EXIT_OK;
}

int cmd_export(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"output", true, NULL}, {NULL, false, NULL}};
	int n, rc;

	if ((rc = cli_options(cli, argc, argv, opts, NULL, 0, &n)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	sqlite3 *db = cli_open_db(cli, CLI_DB_OLDER);
	if (!db)
		return cli->db ? EXIT_ERR : EXIT_USAGE;
	/* An older file exports the previous release's lines, which this
	 * import reads: export, then import, is an upgrade path too. */
	const int schema = cli_schema_version(db) >= 3 ? 3 : 2;
	FILE *out = opts[0].value ? fopen(opts[0].value, "w") : stdout;
	if (!out) {
		sqlite3_close(db);
		return cli_error(cli, "cannot write %s: %s", opts[0].value, strerror(errno));
	}
	/* One read transaction: a consistent snapshot of a live catalog. */
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	rc = EXIT_OK;
	for (size_t t = 0; rc == EXIT_OK && t < KVBM_JSONL_TABLES; t++)
		if (kvbm_jsonl_tables[t].schema == 0 || kvbm_jsonl_tables[t].schema == schema)
			rc = export_table(cli, db, &kvbm_jsonl_tables[t], out);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (out != stdout && fclose(out) != 0 && rc == EXIT_OK)
		rc = cli_error(cli, "cannot write %s: %s", opts[0].value, strerror(errno));
	sqlite3_close(db);
	return rc;
}

/* Insert one parsed line into its table. Returns NULL or a problem. */
static const char *import_line(sqlite3 *db, const struct kvbm_jsonl_field *f, int n)
{
	char sql[KVBM_JSONL_SQL_MAX];
	const char *problem = kvbm_jsonl_insert_sql(f, n, sql, sizeof(sql));

	if (problem)
		return problem;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return sqlite3_errmsg(db);
	for (int i = 1; i < n; i++) {
		kvbm_hash h;
		if (f[i].type == SQLITE_NULL)
			sqlite3_bind_null(st, i);
		else if (f[i].type == SQLITE_INTEGER)
			sqlite3_bind_int64(st, i, f[i].num);
		else if (kvbm_jsonl_is_hash_column(f[i].key)) {
			if (!cli_parse_hash(f[i].text, &h)) {
				sqlite3_finalize(st);
				return "a hash field is not 16 hex digits";
			}
			sqlite3_bind_int64(st, i, (sqlite3_int64)h);
		} else if (kvbm_jsonl_is_blob_column(f[i].key) && f[i].text[0] == 'x' &&
			   f[i].text[1] == '\'') {
			/* The decoded blob is shorter than its text: it fits. */
			const size_t cap = strlen(f[i].text) / 2 + 1;
			unsigned char *blob = malloc(cap);
			const long len = blob ? kvbm_jsonl_blob_decode(f[i].text, blob, cap) : -1;
			if (len < 0) {
				free(blob);
				sqlite3_finalize(st);
				return "a blob field is not x'<hex digits>'";
			}
			sqlite3_bind_blob(st, i, blob, (int)len, free);
		} else
			sqlite3_bind_text(st, i, f[i].text, -1, SQLITE_STATIC);
	}
	const int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? NULL : sqlite3_errmsg(db);
}

/* The staged schema-2 lines into this schema's tables: the SQL of
 * schema/003_narrow_rows.sql's migration, so an old export restores what
 * the old file would have. *dropped: block lines that claim nothing. */
static int convert_v2(const struct cli *cli, sqlite3 *db, long long *dropped)
{
	char sql[2048];

	snprintf(sql, sizeof(sql),
		 "INSERT INTO tiers (name, schema_version, block_size, block_count, hash_algorithm,"
		 " hash_encoding, hash_seed, hash_salt, model_fingerprint, eviction_policy,"
		 " created_at, opened_at, incarnation, clean_shutdown, last_clean_shutdown_at,"
		 " last_commit_at, restored_blocks, vetoed_blocks)"
		 " SELECT tier, %d, block_size, block_count, hash_algorithm, hash_encoding,"
		 " hash_seed, hash_salt, model_fingerprint, eviction_policy, created_at, opened_at,"
		 " incarnation, clean_shutdown, last_clean_shutdown_at, last_commit_at,"
		 " restored_blocks, vetoed_blocks FROM kvbm_import_meta ORDER BY tier;"
		 "INSERT INTO block_rows (id, wseq, seq_hash, parent_hash, position, evict_key,"
		 " access_tick, access_count, frequency, priority, retention, registered_at,"
		 " last_access_at)"
		 " SELECT (t.tier_id << 32) | b.block_id, 0, b.seq_hash, b.parent_hash, b.position,"
		 " b.evict_key, b.access_tick, b.access_count, b.frequency, b.priority, b.retention,"
		 " b.registered_at, b.last_access_at"
		 " FROM kvbm_import_blocks b JOIN tiers t ON t.name = b.tier"
		 " WHERE b.state = 1 AND b.seq_hash IS NOT NULL"
		 " AND b.block_id BETWEEN 0 AND 4294967295",
		 KVBM_SCHEMA_VERSION);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return cli_error(cli, "cannot convert the schema-2 lines: %s", sqlite3_errmsg(db));
	const long long kept = sqlite3_changes(db);
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM kvbm_import_blocks", -1, &st, NULL) ==
		    SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		*dropped = sqlite3_column_int64(st, 0) - kept;
	sqlite3_finalize(st);
	return EXIT_OK;
}

int cmd_import(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"max-line", true, NULL}, {NULL, false, NULL}};
	char *pos[1], tmp[4096], err[512], *buf = NULL;
	size_t line_no = 0, max_line = KVBM_IMPORT_MAX_LINE;
	struct kvbm_jsonl_field fields[32];
	struct kvbm_lines lines = {0};
	int n, rc, got;
	sqlite3 *db = NULL;
	FILE *in = NULL;

	if ((rc = cli_options(cli, argc, argv, opts, pos, 1, &n)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	if (!cli->db || n != 1)
		return cli_usage(cli, "give --db NEW_PATH and the FILE to import");
	if (opts[0].value && !cli_parse_size(opts[0].value, &max_line))
		return cli_usage(cli, "--max-line needs a number of bytes, not '%s'",
				 opts[0].value);
	if (access(cli->db, F_OK) == 0)
		return cli_error(cli, "%s exists; import writes a new catalog only", cli->db);
	if (cli_check_dir(cli, cli->db) != EXIT_OK || cli_check_writable(cli, cli->db) != EXIT_OK)
		return EXIT_ERR;
	if (!(in = fopen(pos[0], "r")))
		return cli_error(cli, "cannot open %s: %s", pos[0], strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s.import-%d", cli->db, (int)getpid());
	rc = EXIT_ERR;
	if (kvbm_catalog_migrate(tmp, KVBM_MIGRATE_CREATE, NULL, NULL, err, sizeof(err)) != KVBM_OK) {
		cli_error(cli, "%s", err);
		goto out;
	}
	if (sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		cli_error(cli, "cannot open %s: %s", tmp, sqlite3_errmsg(db));
		goto out;
	}
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, kvbm_jsonl_staging_sql, NULL, NULL, NULL) != SQLITE_OK) {
		cli_error(cli, "cannot write %s: %s", tmp, sqlite3_errmsg(db));
		goto out;
	}
	int schema = 0;
	size_t schema_line = 0;
	/* One line at a time, each at most max_line bytes: the memory used is
	 * bounded by the longest line, whatever the file (or /dev/zero). */
	kvbm_lines_init(&lines, in, max_line);
	while ((got = kvbm_lines_next(&lines)) == 1) {
		line_no = lines.line_no;
		if (lines.nul) {
			cli_error(cli, "%s: line %zu: holds a NUL byte, not JSON text", pos[0],
				  line_no);
			goto out;
		}
		free(buf);
		buf = malloc(lines.len + 1);
		const int nf =
			buf ? kvbm_jsonl_parse_object(lines.buf, fields, 32, buf, lines.len + 1) : -1;
		const struct kvbm_jsonl_table *tab = nf < 0 ? NULL : kvbm_jsonl_table_of(fields, nf);
		if (tab && tab->schema && schema && tab->schema != schema) {
			cli_error(cli, "%s: line %zu: a schema-%d '%s' line, but line %zu is schema %d:"
				  " give one export at a time", pos[0], line_no, tab->schema,
				  tab->type, schema_line, schema);
			goto out;
		}
		if (tab && tab->schema && !schema) {
			schema = tab->schema;
			schema_line = line_no;
		}
		const char *problem = nf < 0 ? "not a flat JSON object" : import_line(db, fields, nf);
		if (problem) {
			cli_error(cli, "%s: line %zu: %s", pos[0], line_no, problem);
			goto out;
		}
	}
	if (got == -1) {
		cli_error(cli, "%s: line %zu is longer than %zu bytes; --max-line raises the limit",
			  pos[0], lines.line_no, max_line);
		goto out;
	} else if (got < 0) {
		cli_error(cli, "cannot read %s: %s", pos[0],
			  got == -3 ? "out of memory" : strerror(errno));
		goto out;
	}
	long long dropped = 0;
	if (schema == 2 && convert_v2(cli, db, &dropped) != EXIT_OK)
		goto out;
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		cli_error(cli, "cannot commit: %s", sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_close(db);
	db = NULL;
	if (rename(tmp, cli->db) != 0) {
		cli_error(cli, "cannot rename %s to %s: %s", tmp, cli->db, strerror(errno));
		goto out;
	}
	if (cli->json)
		printf("{\"lines\": %zu, \"schema\": %d, \"dropped_rows\": %lld}\n", line_no,
		       schema ? schema : KVBM_SCHEMA_VERSION, dropped);
	else if (schema == 2)
		printf("imported %zu lines of a schema-2 export into %s (%lld free or unrestorable"
		       " block rows dropped, as the migration drops them)\n", line_no, cli->db,
		       dropped);
	else
		printf("imported %zu lines into %s\n", line_no, cli->db);
	rc = EXIT_OK;
out:
	if (db)
		sqlite3_close(db);
	if (rc != EXIT_OK) {
		char side[4200];
		unlink(tmp);
		snprintf(side, sizeof(side), "%s-wal", tmp);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", tmp);
		unlink(side);
	}
	kvbm_lines_free(&lines);
	free(buf);
	fclose(in);
	return rc;
}

static int simple_write(struct cli *cli, int argc, char **argv, const char *sql, const char *done)
{
	int n, rc;

	if ((rc = cli_options(cli, argc, argv, NULL, NULL, 0, &n)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	if (!cli->db)
		return cli_usage(cli, "--db PATH is required");
	int from;
	if (identify_catalog(cli, &from) != EXIT_OK)
		return EXIT_ERR;
	sqlite3 *db = cli_open_db(cli, CLI_DB_WRITE | CLI_DB_OLDER);
	if (!db)
		return cli->db ? EXIT_ERR : EXIT_USAGE;
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		rc = cli_error(cli, "%s", sqlite3_errmsg(db));
	else if (!cli->json)
		printf("%s %s\n", done, cli->db);
	sqlite3_close(db);
	return rc;
}

int cmd_vacuum(struct cli *cli, int argc, char **argv)
{
	return simple_write(cli, argc, argv, "VACUUM", "vacuumed");
}

int cmd_checkpoint(struct cli *cli, int argc, char **argv)
{
	return simple_write(cli, argc, argv, "PRAGMA wal_checkpoint(TRUNCATE)", "checkpointed");
}

int cmd_migrate(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"dry-run", false, NULL}, {NULL, false, NULL}};
	int n, rc, from = 0, to = 0;
	char err[512];

	if ((rc = cli_options(cli, argc, argv, opts, NULL, 0, &n)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	if (!cli->db)
		return cli_usage(cli, "--db PATH is required");
	if (cli_check_file(cli, cli->db) != EXIT_OK)
		return EXIT_ERR;
	const bool dry = opts[0].value != NULL;
	if (!dry && cli_check_writable(cli, cli->db) != EXIT_OK)
		return EXIT_ERR;
	if (dry && cli_read_only_media(cli->db)) {
		/* Read-only media: the read-only connection answers the dry run. */
		sqlite3 *db = cli_open_db(cli, CLI_DB_OLDER);
		if (!db)
			return EXIT_ERR;
		from = cli_schema_version(db);
		sqlite3_close(db);
		fprintf(stderr, "kvbm-catalog: migrate: %s is on a read-only file system: read"
			" read-only; migrating it needs writable storage\n", cli->db);
		if (cli->json)
			printf("{\"from\": %d, \"to\": %d, \"target\": %d, \"dry_run\": true}\n",
			       from, from, KVBM_SCHEMA_VERSION);
		else if (from == KVBM_SCHEMA_VERSION)
			printf("%s is at schema version %d: nothing to do\n", cli->db, from);
		else
			printf("would migrate %s from schema version %d to %d\n", cli->db, from,
			       KVBM_SCHEMA_VERSION);
		return EXIT_OK;
	}
	/* Identified first: the library makes an empty file a new catalog,
	 * which migrate must not do. */
	if (identify_catalog(cli, &from) != EXIT_OK)
		return EXIT_ERR;
	if (!dry && kvbm_catalog_migrate(cli->db, 0, &from, &to, err, sizeof(err)) != KVBM_OK)
		return cli_error(cli, "%s", err);
	if (cli->json)
		printf("{\"from\": %d, \"to\": %d, \"target\": %d, \"dry_run\": %s}\n", from,
		       dry ? from : to, KVBM_SCHEMA_VERSION, dry ? "true" : "false");
	else if (from == KVBM_SCHEMA_VERSION)
		printf("%s is at schema version %d: nothing to do\n", cli->db, from);
	else if (dry)
		printf("would migrate %s from schema version %d to %d\n", cli->db, from,
		       KVBM_SCHEMA_VERSION);
	else
		printf("migrated %s from schema version %d to %d\n", cli->db, from, to);
	return EXIT_OK;
}
