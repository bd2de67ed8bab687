/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading the JSON Lines that export writes (see jsonl.h): a strict scanner
 * for flat objects and the INSERT statement of a line. It reads only what
 * export produces (\n, \t, \", \\, \/ and \u00XX escapes of ASCII) and
 * never reads past the line's terminator; binding and running the
 * statement is the import command's job.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "jsonl.h"

const struct kvbm_jsonl_table kvbm_jsonl_tables[KVBM_JSONL_TABLES] = {
	{"tiers", "tiers", "tier", "tier_id", 3},
	{"block_rows", "block_rows", "block_row", "id", 3},
	{"reclaims", "reclaims", "reclaim", "rec_id", 3},
	{"kvbm_import_meta", "meta", "meta", "tier", 2},
	{"kvbm_import_blocks", "blocks", "block", "tier, block_id", 2},
	{"stats", "stats", "stat", "tier, name", 0},
};

/* schema/001_init.sql's meta and blocks, as TEMP tables. */
const char kvbm_jsonl_staging_sql[] =
	"CREATE TEMP TABLE kvbm_import_meta (tier TEXT PRIMARY KEY,"
	" schema_version INTEGER NOT NULL, block_size INTEGER NOT NULL,"
	" block_count INTEGER NOT NULL, hash_algorithm TEXT NOT NULL,"
	" hash_encoding INTEGER NOT NULL, hash_seed INTEGER NOT NULL, hash_salt INTEGER NOT NULL,"
	" model_fingerprint TEXT NOT NULL DEFAULT '', eviction_policy TEXT NOT NULL,"
	" created_at INTEGER NOT NULL, opened_at INTEGER NOT NULL, incarnation INTEGER NOT NULL,"
	" clean_shutdown INTEGER NOT NULL DEFAULT 0, last_clean_shutdown_at INTEGER,"
	" last_commit_at INTEGER, restored_blocks INTEGER NOT NULL DEFAULT 0,"
	" vetoed_blocks INTEGER NOT NULL DEFAULT 0);"
	"CREATE TEMP TABLE kvbm_import_blocks (tier TEXT NOT NULL, block_id INTEGER NOT NULL,"
	" state INTEGER NOT NULL, seq_hash INTEGER, parent_hash INTEGER, position INTEGER,"
	" registered_at INTEGER, last_access_at INTEGER,"
	" access_tick INTEGER NOT NULL DEFAULT 0, access_count INTEGER NOT NULL DEFAULT 0,"
	" frequency INTEGER NOT NULL DEFAULT 0, priority INTEGER NOT NULL DEFAULT 35,"
	" retention INTEGER NOT NULL DEFAULT 0, evict_key INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (tier, block_id)) WITHOUT ROWID;";

bool kvbm_jsonl_is_hash_column(const char *name)
{
	return strcmp(name, "seq_hash") == 0 || strcmp(name, "parent_hash") == 0 ||
	       strcmp(name, "hash_salt") == 0;
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

bool kvbm_jsonl_is_blob_column(const char *name)
{
	return strcmp(name, "tokens") == 0 || strcmp(name, "key") == 0;
}

long kvbm_jsonl_blob_decode(const char *text, unsigned char *out, size_t cap)
{
	const size_t len = strlen(text);

	if (len < 3 || text[0] != 'x' || text[1] != '\'' || text[len - 1] != '\'' ||
	    (len - 3) % 2 != 0 || (len - 3) / 2 > cap)
		return -1;
	for (size_t i = 0; i < (len - 3) / 2; i++) {
		const int hi = hex_digit(text[2 + 2 * i]), lo = hex_digit(text[3 + 2 * i]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return (long)((len - 3) / 2);
}


static const char *parse_string(const char *p, char *out, size_t cap, size_t *len)
{
	size_t n = 0;

	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"') {
		char c = *p++;
		if (c == '\\') {
			c = *p++;
			if (c == 'n') {
				c = '\n';
			} else if (c == 't') {
				c = '\t';
			} else if (c == 'u') {
				/* Exactly four hex digits: sscanf("%4x") took fewer
				 * (and signs), and skipping four then stepped over
				 * the line's terminator. */
				unsigned v = 0;
				for (int i = 0; i < 4; i++) {
					const int d = hex_digit(p[i]);
					if (d < 0)
						return NULL;
					v = v << 4 | (unsigned)d;
				}
				if (v > 0x7f)
					return NULL;
				c = (char)v;
				p += 4;
			} else if (c != '"' && c != '\\' && c != '/') {
				return NULL;
			}
		}
		if (n + 1 >= cap)
			return NULL;
		out[n++] = c;
	}
	if (*p != '"')
		return NULL;
	out[n] = '\0';
	if (len)
		*len = n;
	return p + 1;
}

int kvbm_jsonl_parse_object(const char *p, struct kvbm_jsonl_field *f, int max, char *buf,
			    size_t buflen)
{
	int n = 0;
	size_t used = 0;

	while (isspace((unsigned char)*p))
		p++;
	if (*p++ != '{')
		return -1;
	do {
		while (isspace((unsigned char)*p))
			p++;
		if (n >= max || !(p = parse_string(p, f[n].key, sizeof(f[n].key), NULL)))
			return -1;
		while (isspace((unsigned char)*p))
			p++;
		if (*p++ != ':')
			return -1;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '"') {
			size_t len;
			f[n].type = SQLITE_TEXT;
			f[n].text = buf + used;
			if (!(p = parse_string(p, buf + used, buflen - used, &len)))
				return -1;
			used += len + 1;
		} else if (strncmp(p, "null", 4) == 0) {
			f[n].type = SQLITE_NULL;
			p += 4;
		} else {
			char *end;
			errno = 0;
			f[n].num = strtoll(p, &end, 10);
			if (end == p || errno)
				return -1;
			f[n].type = SQLITE_INTEGER;
			p = end;
		}
		n++;
		while (isspace((unsigned char)*p))
			p++;
	} while (*p == ',' && p++);
	if (*p++ != '}')
		return -1;
	while (isspace((unsigned char)*p))
		p++;
	return *p ? -1 : n;
}

/* Append to sql; false when it does not fit. */
static bool append(char *sql, size_t cap, size_t *used, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static bool append(char *sql, size_t cap, size_t *used, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	const int w = vsnprintf(sql + *used, cap - *used, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= cap - *used)
		return false;
	*used += (size_t)w;
	return true;
}

const struct kvbm_jsonl_table *kvbm_jsonl_table_of(const struct kvbm_jsonl_field *f, int n)
{
	if (n < 1 || strcmp(f[0].key, "type") != 0 || f[0].type != SQLITE_TEXT)
		return NULL;
	for (int t = 0; t < KVBM_JSONL_TABLES; t++)
		if (strcmp(f[0].text, kvbm_jsonl_tables[t].type) == 0)
			return &kvbm_jsonl_tables[t];
	return NULL;
}

const char *kvbm_jsonl_insert_sql(const struct kvbm_jsonl_field *f, int n, char *sql, size_t cap)
{
	size_t used = 0;

	if (n < 1 || strcmp(f[0].key, "type") != 0 || f[0].type != SQLITE_TEXT)
		return "the first field must be \"type\"";
	const struct kvbm_jsonl_table *tab = kvbm_jsonl_table_of(f, n);
	if (!tab)
		return "type must be tier, block_row, reclaim or stat (or a previous release's meta"
		       " or block)";
	for (int i = 1; i < n; i++)
		for (const char *k = f[i].key; *k; k++)
			if (!isalnum((unsigned char)*k) && *k != '_')
				return "field names must be column names";
	/* 31 keys of 63 characters once overflowed a 2048-byte buffer. */
	bool ok = append(sql, cap, &used, "INSERT INTO %s (", tab->name);
	for (int i = 1; ok && i < n; i++)
		ok = append(sql, cap, &used, "%s%s", i > 1 ? ", " : "", f[i].key);
	ok = ok && append(sql, cap, &used, ") VALUES (");
	for (int i = 1; ok && i < n; i++)
		ok = append(sql, cap, &used, "%s?", i > 1 ? ", " : "");
	ok = ok && append(sql, cap, &used, ")");
	return ok ? NULL : "too many fields";
}
