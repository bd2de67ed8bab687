/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON Lines form of a catalog that `kvbm-catalog export` writes and
 * `import` reads: one flat object per row, {"type": ..., <column>: <string,
 * integer or null>, ...}. A schema-3 file exports its tables as they are
 * ("tier", "block_row", "reclaim", "stat" lines); the previous release
 * exported "meta", "block" and "stat" lines, which import stages in TEMP
 * tables and converts as the schema migration does. Parsing a line and
 * turning it into an INSERT statement live here, apart from the command,
 * so the fuzzers reach them without a catalog file.
 */
#ifndef KVBM_CLI_JSONL_H
#define KVBM_CLI_JSONL_H

#include <stdbool.h>
#include <stddef.h>

/* One kind of line, in export order. */
struct kvbm_jsonl_table {
	const char *name;   /* the table import inserts its lines into */
	const char *source; /* the table export reads them from */
	const char *type;   /* the "type" of its lines */
	const char *order;  /* export order */
	int schema;         /* 3: this schema's; 2: the previous release's; 0: both */
};
#define KVBM_JSONL_TABLES 6
extern const struct kvbm_jsonl_table kvbm_jsonl_tables[KVBM_JSONL_TABLES];

/* TEMP tables that hold the previous release's "meta" and "block" lines
 * (its table definitions, defaults included) until import converts them. */
extern const char kvbm_jsonl_staging_sql[];

/* Columns whose integers are exported as 16 hex digits. */
bool kvbm_jsonl_is_hash_column(const char *name);
/* Columns that hold blobs (block_rows' tokens and key). A blob in any
 * column is exported as the string "x'<hex>'" (SQLite's literal); import
 * turns such a string back into the blob in these columns. */
bool kvbm_jsonl_is_blob_column(const char *name);
/* Decode "x'<hex>'" into out (cap bytes); its length, or -1 when text is
 * not such a literal or does not fit. */
long kvbm_jsonl_blob_decode(const char *text, unsigned char *out, size_t cap);

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
 * whose first field is "type"; parameter i binds field i (1-based). The
 * table of a previous release's line is a staging table (see above).
 * Returns NULL, or the problem with the line; *table (when not NULL) is
 * the line's entry of kvbm_jsonl_tables. */
const char *kvbm_jsonl_insert_sql(const struct kvbm_jsonl_field *f, int n, char *sql, size_t cap);
const struct kvbm_jsonl_table *kvbm_jsonl_table_of(const struct kvbm_jsonl_field *f, int n);

#endif
