/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the two JSON Lines readers of kvbm-catalog. Byte 0
 * picks the reader and its settings; the rest is the file.
 *  - even: a replay trace (kvbm_trace_load_mem); a trace that loads is
 *    replayed on a small memory-only manager and against Belady's MIN.
 *  - odd: an export file as import reads it, line by line as getline()
 *    cuts it, each line in a buffer of its exact size; a line that parses
 *    becomes an INSERT statement, which is prepared against the catalog
 *    schema (an in-memory copy made once, with import's staging tables
 *    for the previous release's lines); blob fields are decoded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "jsonl.h"
#include "replay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_parsers: %s:%d: check failed: %s\n",      \
				__FILE__, __LINE__, #cond);                             \
			__builtin_trap();                                               \
		}                                                                       \
	} while (0)

/* Replaying is the slow part; long traces only exercise the parser. */
#define MAX_REPLAY_REFS 4096

static void fuzz_trace(uint8_t mode, const char *buf, size_t len)
{
	struct kvbm_trace t;
	char err[256] = "";

	if (kvbm_trace_load_mem(buf, len, "fuzz.jsonl", &t, err, sizeof(err)) != 0) {
		CHECK(err[0] != '\0' && t.n_requests == 0 && t.hashes == NULL);
		return;
	}
	CHECK(t.n_requests > 0 && t.offsets[0] == 0 && t.offsets[t.n_requests] == t.n_refs);
	for (uint32_t r = 0; r < t.n_requests; r++)
		CHECK(t.offsets[r] <= t.offsets[r + 1]);
	CHECK(t.n_unique <= t.n_refs);
	if (t.n_refs <= MAX_REPLAY_REFS) {
		struct kvbm_replay_opts o = {0};
		struct kvbm_replay_result res;
		o.capacity = 1 + (mode >> 2) % 48;
		o.policy = (mode >> 1) & 1 ? KVBM_EVICT_FIFO : KVBM_EVICT_LRU;
		o.block_size = 16;
		CHECK(kvbm_replay_run(&t, &o, &res, err, sizeof(err)) == 0);
		CHECK(res.block_refs == t.n_refs && res.hits <= res.block_refs);
		const uint64_t opt = kvbm_replay_belady(&t, o.capacity);
		CHECK(opt <= t.n_refs);
	}
	kvbm_trace_free(&t);
}

static sqlite3 *mem;

/* Closed at exit so leak checkers see the connection freed. */
static void close_schema_db(void)
{
	sqlite3_close(mem);
	mem = NULL;
}

/* The catalog schema in memory, made once through the library's own
 * migration so it is always the current one. */
static sqlite3 *schema_db(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096], err[256];
	sqlite3 *file = NULL;

	if (mem)
		return mem;
	snprintf(path, sizeof(path), "%s/kvbm-fuzz-schema-%d.db", dir && *dir ? dir : "/tmp",
		 (int)getpid());
	unlink(path);
	CHECK(kvbm_catalog_migrate(path, KVBM_MIGRATE_CREATE, NULL, NULL, err, sizeof(err)) ==
	      KVBM_OK);
	CHECK(sqlite3_open_v2(path, &file, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	CHECK(sqlite3_open(":memory:", &mem) == SQLITE_OK);
	atexit(close_schema_db);
	sqlite3_backup *b = sqlite3_backup_init(mem, "main", file, "main");
	CHECK(b != NULL);
	CHECK(sqlite3_backup_step(b, -1) == SQLITE_DONE);
	sqlite3_backup_finish(b);
	/* And the staging tables import puts a previous release's "meta" and
	 * "block" lines in, so those statements prepare and reach the
	 * bind-count check too. */
	CHECK(sqlite3_exec(mem, kvbm_jsonl_staging_sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(file);
	unlink(path);
	char side[4200];
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
	return mem;
}

static void fuzz_import_line(sqlite3 *db, const char *line, size_t len)
{
	struct kvbm_jsonl_field fields[32];
	char sql[KVBM_JSONL_SQL_MAX];
	/* As cmd_import: a buffer of the line's size plus its terminator. */
	char *copy = malloc(len + 1), *buf = malloc(len + 1);

	CHECK(copy && buf);
	memcpy(copy, line, len);
	copy[len] = '\0';
	const int n = kvbm_jsonl_parse_object(copy, fields, 32, buf, len + 1);
	CHECK(n >= -1 && n <= 32);
	/* A blob column's x'<hex>' text, decoded as import does, into a
	 * buffer of exactly the size import gives it. */
	for (int i = 1; i < n; i++) {
		if (fields[i].type != SQLITE_TEXT || !kvbm_jsonl_is_blob_column(fields[i].key))
			continue;
		const size_t cap = strlen(fields[i].text) / 2 + 1;
		unsigned char *blob = malloc(cap);
		CHECK(blob);
		const long got = kvbm_jsonl_blob_decode(fields[i].text, blob, cap);
		CHECK(got >= -1 && (got < 0 || (size_t)got * 2 + 3 == strlen(fields[i].text)));
		free(blob);
	}
	if (n >= 0 && !kvbm_jsonl_insert_sql(fields, n, sql, sizeof(sql))) {
		CHECK(strlen(sql) < sizeof(sql));
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK)
			CHECK(sqlite3_bind_parameter_count(st) == n - 1);
		sqlite3_finalize(st);
	}
	free(copy);
	free(buf);
}

static void fuzz_import(const char *buf, size_t len)
{
	sqlite3 *db = schema_db();
	const char *p = buf, *const end = buf + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;
		fuzz_import_line(db, p, (size_t)(next - p));
		p = next;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* An exact-size copy, so reading one byte past the end is caught. */
	const size_t len = size - 1;
	char *buf = malloc(len ? len : 1);
	CHECK(buf);
	memcpy(buf, data + 1, len);
	if (data[0] & 1)
		fuzz_import(buf, len);
	else
		fuzz_trace(data[0], buf, len);
	free(buf);
	return 0;
}
