/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared plumbing of kvbm-catalog: errors and exit codes, option scanning,
 * value parsing, opening a catalog, and rendering query results as aligned
 * tables or JSON, so no command formats columns by hand.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"

int cli_error(const struct cli *cli, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kvbm-catalog: %s: ", cli->cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_ERR;
}

int cli_usage(const struct cli *cli, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kvbm-catalog: %s: ", cli->cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: %s\n", cli->usage);
	return EXIT_USAGE;
}

int cli_options(struct cli *cli, int argc, char **argv, struct opt *opts, char **pos,
		int max_pos, int *n_pos)
{
	*n_pos = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			printf("usage: %s\n", cli->usage);
			return 1;
		}
		if (strcmp(a, "--json") == 0) {
			cli->json = true;
			continue;
		}
		/* The global --db also after the command name. */
		if (strcmp(a, "--db") == 0 || strncmp(a, "--db=", 5) == 0) {
			const char *v = a[4] == '=' ? a + 5 : i + 1 < argc ? argv[++i] : NULL;
			if (!v || !*v) {
				cli_usage(cli, "option --db needs a PATH");
				return -1;
			}
			if (cli->db && strcmp(cli->db, v) != 0) {
				cli_usage(cli, "--db given twice ('%s' and '%s')", cli->db, v);
				return -1;
			}
			cli->db = v;
			continue;
		}
		if (strncmp(a, "--", 2) != 0 || strcmp(a, "--") == 0 || a[2] == '\0') {
			if (*n_pos >= max_pos) {
				cli_usage(cli, "unexpected argument '%s'", a);
				return -1;
			}
			pos[(*n_pos)++] = argv[i];
			continue;
		}
		const char *eq = strchr(a, '=');
		const size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		struct opt *o = opts;
		while (o && o->name && !(strlen(o->name) == len && strncmp(o->name, a + 2, len) == 0))
			o++;
		if (!o || !o->name) {
			cli_usage(cli, "unknown option '%s'", a);
			return -1;
		}
		if (!o->has_value) {
			if (eq) {
				cli_usage(cli, "option --%s takes no value", o->name);
				return -1;
			}
			o->value = "";
		} else if (eq) {
			o->value = eq + 1;
		} else if (i + 1 < argc) {
			o->value = argv[++i];
		} else {
			cli_usage(cli, "option --%s needs a value", o->name);
			return -1;
		}
	}
	return 0;
}

bool cli_parse_u32(const char *s, uint32_t *out)
{
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	const unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

bool cli_parse_size(const char *s, size_t *out)
{
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	const int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
	if (shift)
		end++;
	if (errno || *end || v == 0 || v > (SIZE_MAX >> 1) >> shift)
		return false;
	*out = (size_t)(v << shift);
	return true;
}

bool cli_parse_hash(const char *s, kvbm_hash *out)
{
	kvbm_hash v = 0;

	if (!s)
		return false;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	const size_t n = strlen(s);
	if (n == 0 || n > 16)
		return false;
	for (size_t i = 0; i < n; i++) {
		const char c = s[i];
		const int d = c >= '0' && c <= '9'   ? c - '0'
			      : c >= 'a' && c <= 'f' ? c - 'a' + 10
			      : c >= 'A' && c <= 'F' ? c - 'A' + 10
						     : -1;
		if (d < 0)
			return false;
		v = v << 4 | (kvbm_hash)d;
	}
	*out = v;
	return true;
}

int cli_schema_version(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int version = -1;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return version;
}

int cli_check_dir(const struct cli *cli, const char *path)
{
	char dir[4096];
	struct stat sb;
	const char *slash = strrchr(path, '/');

	if (!slash)
		return EXIT_OK; /* the working directory */
	const size_t len = slash == path ? 1 : (size_t)(slash - path);
	if (len >= sizeof(dir))
		return cli_error(cli, "path %s is too long", path);
	memcpy(dir, path, len);
	dir[len] = '\0';
	if (stat(dir, &sb) != 0) {
		if (errno == ENOENT)
			return cli_error(cli, "directory %s does not exist (for %s)", dir, path);
		if (errno == ENOTDIR)
			return cli_error(cli, "%s is not a directory: a part of it is a file (for %s)",
					 dir, path);
		return cli_error(cli, "cannot reach directory %s: %s", dir, strerror(errno));
	}
	if (!S_ISDIR(sb.st_mode))
		return cli_error(cli, "%s is not a directory (for %s)", dir, path);
	return EXIT_OK;
}

int cli_check_file(const struct cli *cli, const char *path)
{
	struct stat sb;

	if (stat(path, &sb) != 0) {
		const int e = errno;
		if ((e == ENOENT || e == ENOTDIR) && cli_check_dir(cli, path) != EXIT_OK)
			return EXIT_ERR;
		if (e == ENOENT)
			return cli_error(cli, "%s does not exist", path);
		return cli_error(cli, "cannot open %s: %s", path, strerror(e));
	}
	/* A FIFO would block the open, a directory or device fail later with
	 * a worse message: refuse them before anything opens the path. */
	if (!S_ISREG(sb.st_mode))
		return cli_error(cli, "%s is not a regular file (%s)", path,
				 S_ISDIR(sb.st_mode)    ? "a directory"
				 : S_ISFIFO(sb.st_mode) ? "a FIFO"
				 : S_ISSOCK(sb.st_mode) ? "a socket"
							: "a device");
	return EXIT_OK;
}

bool cli_read_only_media(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');

	if (access(path, W_OK) == 0)
		return false;
	if (errno == EROFS)
		return true;
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path + (slash == path)) : 1,
		 slash ? path : ".");
	return access(dir, W_OK) != 0 && errno == EROFS;
}

int cli_check_writable(const struct cli *cli, const char *path)
{
	if (cli_read_only_media(path))
		return cli_error(cli, "%s is on a read-only file system: %s writes it (the read"
			  " commands open it read-only)", path, cli->cmd);
	return EXIT_OK;
}

/* A WAL-mode catalog on read-only media: SQLite cannot create the -shm
 * file a WAL reader needs, so the plain read-only open fails on first
 * read. With no WAL content to replay (the library checkpoints it away
 * on a clean close) the file alone is the catalog: open it immutable.
 * With a non-empty -wal its commits would be skipped: refuse instead. */
static sqlite3 *open_read_only_media(const struct cli *cli)
{
	char uri[3 * 4096 + 32], wal[4200];
	struct stat sb;
	size_t n = 0;
	sqlite3 *db = NULL;

	snprintf(wal, sizeof(wal), "%s-wal", cli->db);
	if (stat(wal, &sb) == 0 && sb.st_size > 0) {
		cli_error(cli, "%s is on a read-only file system and its WAL %s holds commits that"
			  " SQLite cannot read without creating %s-shm: copy the files to writable"
			  " storage", cli->db, wal, cli->db);
		return NULL;
	}
	n += (size_t)snprintf(uri, sizeof(uri), "file:");
	for (const unsigned char *p = (const unsigned char *)cli->db; *p && n + 4 < sizeof(uri); p++)
		n += (size_t)(strchr("?#%", *p) || *p < 0x21 || *p > 0x7e
				      ? snprintf(uri + n, sizeof(uri) - n, "%%%02X", *p)
				      : snprintf(uri + n, sizeof(uri) - n, "%c", *p));
	snprintf(uri + n, sizeof(uri) - n, "?immutable=1");
	if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
		cli_error(cli, "cannot open %s: %s", cli->db, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

sqlite3 *cli_open_db(const struct cli *cli, unsigned flags)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	if (!cli->db) {
		cli_usage(cli, "--db PATH is required");
		return NULL;
	}
	if (cli_check_file(cli, cli->db) != EXIT_OK)
		return NULL;
	if ((flags & CLI_DB_WRITE) && cli_check_writable(cli, cli->db) != EXIT_OK)
		return NULL;
	const int mode = flags & CLI_DB_WRITE ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
	if (sqlite3_open_v2(cli->db, &db, mode, NULL) != SQLITE_OK) {
		cli_error(cli, "cannot open %s: %s", cli->db, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	int version = cli_schema_version(db);
	if (version < 0 && !(flags & CLI_DB_WRITE) && cli_read_only_media(cli->db)) {
		sqlite3_close(db);
		if (!(db = open_read_only_media(cli)))
			return NULL;
		version = cli_schema_version(db);
	}
	/* meta is a table before version 3 and a view of tiers since. */
	const bool has_meta =
		sqlite3_prepare_v2(db, "SELECT tier FROM meta LIMIT 1", -1, &st, NULL) == SQLITE_OK;
	sqlite3_finalize(st);
	if (version < 1 || !has_meta) {
		cli_error(cli, "%s is not a kvbm catalog", cli->db);
		sqlite3_close(db);
		return NULL;
	}
	if (version > KVBM_SCHEMA_VERSION) {
		cli_error(cli, "%s has schema version %d, newer than this program's %d", cli->db,
			  version, KVBM_SCHEMA_VERSION);
		sqlite3_close(db);
		return NULL;
	}
	/* The queries are written for this schema only; migrating is one
	 * command away and is what the library does on its next open. */
	if (version < KVBM_SCHEMA_VERSION && !(flags & CLI_DB_OLDER)) {
		cli_error(cli, "%s has schema version %d, older than this program's %d: upgrade it"
			  " with kvbm-catalog --db %s migrate", cli->db, version, KVBM_SCHEMA_VERSION,
			  cli->db);
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

void cli_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		const unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

bool cli_is_hash_column(const char *name)
{
	static const char *const names[] = {"seq_hash", "parent_hash", "hash_salt", "hash",
					    "parent", "root"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

/* Column c's text, a hash column's integer as 16 hex digits (into buf):
 * every command and view shows a hash the same way, as the logs do. */
static const char *cell_text(sqlite3_stmt *st, int c, char buf[CLI_HASH_TEXT])
{
	if (sqlite3_column_type(st, c) == SQLITE_INTEGER &&
	    cli_is_hash_column(sqlite3_column_name(st, c))) {
		snprintf(buf, CLI_HASH_TEXT, "%016llx",
			 (unsigned long long)sqlite3_column_int64(st, c));
		return buf;
	}
	return (const char *)sqlite3_column_text(st, c);
}

static int render_json(sqlite3_stmt *st, bool single)
{
	const int cols = sqlite3_column_count(st);
	int rc, rows = 0;

	if (!single)
		fputs("[", stdout);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (single && rows > 0)
			break;
		fputs(rows++ ? ",\n {" : (single ? "{" : "\n {"), stdout);
		for (int c = 0; c < cols; c++) {
			if (c)
				fputs(", ", stdout);
			cli_json_string(stdout, sqlite3_column_name(st, c));
			fputs(": ", stdout);
			char hex[CLI_HASH_TEXT];
			switch (sqlite3_column_type(st, c)) {
			case SQLITE_INTEGER:
				if (cli_is_hash_column(sqlite3_column_name(st, c)))
					cli_json_string(stdout, cell_text(st, c, hex));
				else
					printf("%lld", sqlite3_column_int64(st, c));
				break;
			case SQLITE_FLOAT:
				printf("%.6g", sqlite3_column_double(st, c));
				break;
			case SQLITE_NULL:
				fputs("null", stdout);
				break;
			default:
				cli_json_string(stdout, (const char *)sqlite3_column_text(st, c));
			}
		}
		fputs("}", stdout);
	}
	if (single && rows == 0)
		fputs("null", stdout);
	fputs(single ? "\n" : (rows ? "\n]\n" : "]\n"), stdout);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : rc;
}

static int render_table(sqlite3_stmt *st)
{
	const int cols = sqlite3_column_count(st);
	size_t n = 0, cap = 0;
	char **cells = NULL;
	size_t *width = calloc((size_t)cols, sizeof(*width));
	int rc;

	for (int c = 0; c < cols; c++)
		width[c] = strlen(sqlite3_column_name(st, c));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n + (size_t)cols > cap) {
			cap = cap ? cap * 2 : 64 * (size_t)cols;
			cells = realloc(cells, cap * sizeof(*cells));
		}
		for (int c = 0; c < cols; c++) {
			char hex[CLI_HASH_TEXT];
			const char *t = cell_text(st, c, hex);
			cells[n] = strdup(t ? t : "-");
			if (strlen(cells[n]) > width[c])
				width[c] = strlen(cells[n]);
			n++;
		}
	}
	/* A query that failed half way prints nothing but its error. */
	for (int c = 0; rc == SQLITE_DONE && c < cols; c++)
		printf("%-*s%s", (int)width[c], sqlite3_column_name(st, c), c + 1 < cols ? "  " : "\n");
	for (size_t i = 0; i < n; i++) {
		const int c = (int)(i % (size_t)cols);
		if (rc == SQLITE_DONE)
			printf("%-*s%s", (int)width[c], cells[i], c + 1 < cols ? "  " : "\n");
		free(cells[i]);
	}
	free(cells);
	free(width);
	return rc == SQLITE_DONE ? 0 : rc;
}

/* One "key: value" line per column, rows apart by a blank line; as the
 * table, a query that fails half way prints nothing but its error. */
static int render_records(sqlite3_stmt *st)
{
	const int cols = sqlite3_column_count(st);
	char *out = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&out, &len);
	int rc, rows = 0;

	if (!mem)
		return SQLITE_NOMEM;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (rows++)
			fputc('\n', mem);
		for (int c = 0; c < cols; c++) {
			char hex[CLI_HASH_TEXT];
			const char *t = cell_text(st, c, hex);
			fprintf(mem, "%s: %s\n", sqlite3_column_name(st, c), t ? t : "-");
		}
	}
	fclose(mem);
	if (rc == SQLITE_DONE)
		fwrite(out, 1, len, stdout);
	free(out);
	return rc == SQLITE_DONE ? 0 : rc;
}

int cli_render(const struct cli *cli, sqlite3_stmt *st, bool single)
{
	const int rc = cli->json ? render_json(st, single)
		       : cli->records ? render_records(st)
				      : render_table(st);

	/* The connection's message names the cause ("malformed JSON"), the
	 * code's string only its class. */
	if (rc != 0)
		return cli_error(cli, "query failed: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
	return EXIT_OK;
}

int cli_query(const struct cli *cli, sqlite3 *db, const char *sql, int single, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	int i = 1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return cli_error(cli, "query failed: %s", sqlite3_errmsg(db));
	va_start(ap, single);
	for (const char *v; (v = va_arg(ap, const char *)) != NULL; i++)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	va_end(ap);
	const int rc = cli_render(cli, st, single);
	sqlite3_finalize(st);
	return rc;
}
