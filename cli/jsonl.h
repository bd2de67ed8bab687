/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON Lines form of a catalog that `kvbm-catalog export` writes and
 * `import` reads: one flat object per row, {"type": "meta"|"block"|"stat",
 * <column>: <string, integer or null>, ...}. Parsing a line and turning it
 * into an INSERT statement live here, apart from the command, so the
 * fuzzers reach them without a catalog file.
 */
#ifndef KVBM_CLI_JSONL_H
#define KVBM_CLI_JSONL_H

#include <stdbool.h>
#include <stddef.h>

/* The exported tables: table name, the "type" of its lines, export order. */
struct kvbm_jsonl_table {
	const char *name, *type, *order;
};
#define KVBM_JSONL_TABLES 3
extern const struct kvbm_jsonl_table kvbm_jsonl_tables[KVBM_JSONL_TABLES];

/* Columns whose integers are exported as 16 hex digits. */
bool kvbm_jsonl_is_hash_column(const char *name);

/* One field of a line. */
struct kvbm_jsonl_field {
	char key[64];
	int type; /* SQLITE_TEXT, SQLITE_INTEGER or SQLITE_NULL */
	char *text;
	long long num;
};

/* Parse one NUL-terminated line holding a flat JSON object into at most max
 * fields; strings are unescaped into buf (buflen >= strlen(line) + 1 is
 * always enough). Returns the number of fields or -1 if the line is not
 * such an object. */
int kvbm_jsonl_parse_object(const char *line, struct kvbm_jsonl_field *f, int max, char *buf,
			    size_t buflen);

/* Size of a statement buffer that holds any kvbm_jsonl_insert_sql() result
 * for lines of up to 32 fields. */
#define KVBM_JSONL_SQL_MAX 4096

/* Build "INSERT INTO <table> (<keys>) VALUES (?, ...)" for a parsed line
 * whose first field is "type"; parameter i binds field i (1-based). Returns
 * NULL, or the problem with the line. */
const char *kvbm_jsonl_insert_sql(const struct kvbm_jsonl_field *f, int n, char *sql, size_t cap);

#endif
