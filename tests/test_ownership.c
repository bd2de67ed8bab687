/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One owner per (file, tier), and no foreign file touched: a second writer
 * of a tier is refused naming the holder, in this process or another, and
 * a killed holder never blocks the next open; files that are not kvbm
 * catalogs (another application's database, a FIFO, a WAL copied in from
 * another catalog, a damaged schema) are refused before anything is
 * written to them.
 */
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"

static int setup(void **state)
{
	*state = kvbm_test_catalog_new("owner", 16);
	return 0;
}

static int teardown(void **state)
{
	kvbm_test_catalog_free(*state);
	return 0;
}

static kvbm_status try_open(const kvbm_config *cfg, kvbm_manager **mgr, char *err, size_t len)
{
	*mgr = (kvbm_manager *)1; /* must be reset on failure */
	const kvbm_status st = kvbm_open_ex(cfg, mgr, err, len);
	if (st != KVBM_OK)
		assert_null(*mgr);
	return st;
}

static void add_block(kvbm_manager *mgr, kvbm_hash h)
{
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable r;

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage(mgr, m, h, 4, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &r), KVBM_OK);
	assert_int_equal(kvbm_immutable_release(mgr, r), KVBM_OK);
}

/* The whole file, to prove a refused open changed nothing. */
static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	*len = (size_t)ftell(fp);
	rewind(fp);
	char *buf = malloc(*len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, *len, fp), *len);
	fclose(fp);
	return buf;
}

static bool exists(const char *path, const char *suffix)
{
	char p[600];
	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return access(p, F_OK) == 0;
}

static void owner__second_writer_of_a_tier_is_refused(void **state)
{
	struct kvbm_test_catalog *f = *state;
	char err[512], pid[32];
	kvbm_manager *a = kvbm_test_open_cfg(&f->cfg), *b = NULL;

	assert_int_equal(try_open(&f->cfg, &b, err, sizeof(err)), KVBM_E_BUSY);
	snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
	assert_non_null(strstr(err, "tier G1 is owned by another writer"));
	assert_non_null(strstr(err, pid));
	/* Another tier of the same file has an owner of its own. */
	kvbm_config g2 = f->cfg;
	g2.tier = "G2";
	assert_int_equal(try_open(&g2, &b, err, sizeof(err)), KVBM_OK);
	add_block(a, 1);
	add_block(b, 2);
	assert_int_equal(kvbm_close(b), KVBM_OK);
	assert_int_equal(kvbm_close(a), KVBM_OK);
	/* Once closed, the tier opens again, restoring what it committed. */
	a = kvbm_test_open_cfg(&f->cfg);
	assert_int_equal(kvbm_test_counts(a).inactive, 1);
	assert_int_equal(kvbm_close(a), KVBM_OK);
}

/* An owner in another process: refused while it lives, free the moment it
 * is killed (the lock dies with its holder; no stale lock to clean). */
static void owner__killed_owner_never_blocks_a_restart(void **state)
{
	struct kvbm_test_catalog *f = *state;
	char err[512], pid_text[32];
	int ready[2];
	kvbm_manager *b = NULL;

	assert_int_equal(pipe(ready), 0);
	const pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kvbm_manager *a = NULL;
		if (kvbm_open_ex(&f->cfg, &a, NULL, 0) != KVBM_OK)
			_exit(2);
		add_block(a, 7);
		if (kvbm_flush(a) != KVBM_OK || write(ready[1], "r", 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	char c = 0;
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(try_open(&f->cfg, &b, err, sizeof(err)), KVBM_E_BUSY);
	snprintf(pid_text, sizeof(pid_text), "pid %ld", (long)pid);
	assert_non_null(strstr(err, pid_text));
	kill(pid, SIGKILL);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	close(ready[0]);
	close(ready[1]);
	assert_int_equal(try_open(&f->cfg, &b, err, sizeof(err)), KVBM_OK);
	assert_int_equal(kvbm_test_counts(b).inactive, 1); /* the killed owner's block */
	assert_int_equal(kvbm_close(b), KVBM_OK);
}

static void owner__foreign_database_is_left_untouched(void **state)
{
	struct kvbm_test_catalog *f = *state;
	sqlite3 *db = NULL;
	char err[512];
	kvbm_manager *m = NULL;
	size_t before_len, after_len;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
				      "INSERT INTO users VALUES (1, 'ada');",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	char *before = slurp(f->path, &before_len);
	assert_int_equal(try_open(&f->cfg, &m, err, sizeof(err)), KVBM_E_CORRUPT);
	assert_non_null(strstr(err, "is not a kvbm catalog"));
	assert_non_null(strstr(err, "left untouched"));
	int from = -1, to = -1;
	assert_int_equal(kvbm_catalog_migrate(f->path, 0, &from, &to, err, sizeof(err)),
			 KVBM_E_CORRUPT);
	char *after = slurp(f->path, &after_len);
	assert_int_equal(after_len, before_len);
	assert_memory_equal(after, before, before_len);
	assert_false(exists(f->path, "-wal"));
	assert_false(exists(f->path, "-kvbm"));
	free(before);
	free(after);
	/* Still a rollback-journal database that its application can use. */
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "delete");
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void owner__only_missing_or_empty_files_are_initialised(void **state)
{
	struct kvbm_test_catalog *f = *state;
	char err[512];
	kvbm_manager *m = NULL;

	/* Empty: initialised. */
	const int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(try_open(&f->cfg, &m, err, sizeof(err)), KVBM_OK);
	assert_int_equal(kvbm_close(m), KVBM_OK);
	/* A database with no tables and user_version 0 is someone else's. */
	char other[600];
	snprintf(other, sizeof(other), "%s/other.db", f->dir);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 0; VACUUM", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	kvbm_config cfg = f->cfg;
	cfg.catalog_path = other;
	struct stat sb;
	assert_int_equal(stat(other, &sb), 0);
	if (sb.st_size > 0)
		assert_int_equal(try_open(&cfg, &m, err, sizeof(err)), KVBM_E_CORRUPT);
	/* Not a regular file: refused at once, nothing opened (a FIFO would
	 * otherwise block the open). */
	char fifo[600];
	snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	cfg.catalog_path = fifo;
	assert_int_equal(try_open(&cfg, &m, err, sizeof(err)), KVBM_E_INVAL);
	assert_non_null(strstr(err, "not a regular file"));
	int from, to;
	assert_int_equal(kvbm_catalog_migrate(fifo, 0, &from, &to, err, sizeof(err)), KVBM_E_INVAL);
	cfg.catalog_path = f->dir;
	assert_int_equal(try_open(&cfg, &m, err, sizeof(err)), KVBM_E_INVAL);
	/* An empty path would be SQLite's private temporary database. */
	cfg.catalog_path = "";
	assert_int_equal(try_open(&cfg, &m, err, sizeof(err)), KVBM_E_INVAL);
	/* And the out-parameter is cleared on every error, even a NULL cfg. */
	m = (kvbm_manager *)1;
	assert_int_equal(kvbm_open(NULL, &m), KVBM_E_INVAL);
	assert_null(m);
}

/* A WAL copied in from another catalog: SQLite would apply it (any valid
 * WAL of the same page size is); the catalog id its commits carry gives it
 * away, and the refused open writes none of it into the file. */
static void owner__wal_of_another_catalog_is_refused(void **state)
{
	struct kvbm_test_catalog *f = *state;
	char other[600], other_wal[700], wal[700], err[512];
	kvbm_manager *m = NULL;

	m = kvbm_test_open_cfg(&f->cfg);
	add_block(m, 11);
	assert_int_equal(kvbm_close(m), KVBM_OK); /* checkpointed: no WAL left */
	assert_false(exists(f->path, "-wal"));
	size_t before_len;
	char *before = slurp(f->path, &before_len);

	snprintf(other, sizeof(other), "%s/other.db", f->dir);
	snprintf(other_wal, sizeof(other_wal), "%s-wal", other);
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	kvbm_config cfg = f->cfg;
	cfg.catalog_path = other;
	cfg.catalog_interval_ms = 60000;
	m = kvbm_test_open_cfg(&cfg);
	add_block(m, 22);
	add_block(m, 33);
	assert_int_equal(kvbm_flush(m), KVBM_OK);
	/* Copy the live WAL while its catalog is open. */
	size_t wal_len;
	char *bytes = slurp(other_wal, &wal_len);
	assert_true(wal_len > 0);
	FILE *out = fopen(wal, "wb");
	assert_non_null(out);
	assert_int_equal(fwrite(bytes, 1, wal_len, out), wal_len);
	fclose(out);
	free(bytes);
	assert_int_equal(kvbm_close_ex(m, KVBM_CLOSE_DISCARD), KVBM_OK);

	assert_int_equal(try_open(&f->cfg, &m, err, sizeof(err)), KVBM_E_CORRUPT);
	assert_non_null(strstr(err, "another catalog"));
	size_t after_len;
	char *after = slurp(f->path, &after_len);
	assert_int_equal(after_len, before_len);
	assert_memory_equal(after, before, before_len);
	free(before);
	free(after);
	/* Without the foreign WAL it is itself again. */
	assert_int_equal(unlink(wal), 0);
	m = kvbm_test_open_cfg(&f->cfg);
	bool present[3];
	const kvbm_hash hs[3] = {11, 22, 33};
	assert_int_equal(kvbm_contains(m, hs, 3, present, NULL, NULL), KVBM_OK);
	assert_true(present[0]);
	assert_false(present[1]);
	assert_false(present[2]);
	assert_int_equal(kvbm_close(m), KVBM_OK);
}

/* A schema object the library relies on is gone: refused at open with its
 * name, instead of restoring and then failing every commit. */
static void owner__damaged_schema_is_refused_by_name(void **state)
{
	struct kvbm_test_catalog *f = *state;
	char err[512];
	kvbm_manager *m = kvbm_test_open_cfg(&f->cfg);
	sqlite3 *db = NULL;

	add_block(m, 5);
	assert_int_equal(kvbm_close(m), KVBM_OK);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DROP TABLE stats", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(try_open(&f->cfg, &m, err, sizeof(err)), KVBM_E_CORRUPT);
	assert_non_null(strstr(err, "stats"));
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "CREATE TABLE stats (tier TEXT NOT NULL, name TEXT NOT NULL,"
				      " value INTEGER NOT NULL, PRIMARY KEY (tier, name)) WITHOUT ROWID;"
				      "DROP VIEW hot_prefixes",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(try_open(&f->cfg, &m, err, sizeof(err)), KVBM_E_CORRUPT);
	assert_non_null(strstr(err, "hot_prefixes"));
}

/* Another connection holding the write lock for long: commits fail BUSY
 * and are retried, the catalog is never given up, and once the lock is
 * released everything queued commits. */
static void owner__foreign_long_transaction_is_waited_out(void **state)
{
	struct kvbm_test_catalog *f = *state;
	sqlite3 *other = NULL;

	f->cfg.catalog_busy_ms = 20;
	f->cfg.catalog_max_failures = 2;
	kvbm_manager *m = kvbm_test_open_cfg(&f->cfg);
	assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < 5; i++) {
		add_block(m, 100 + (kvbm_hash)i);
		assert_int_equal(kvbm_flush(m), KVBM_E_BUSY);
	}
	kvbm_metrics mt;
	assert_int_equal(kvbm_metrics_read(m, &mt), KVBM_OK);
	assert_int_equal(mt.catalog_failing, 1);
	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(kvbm_flush(m), KVBM_OK);
	assert_int_equal(kvbm_close_ex(m, KVBM_CLOSE_DISCARD), KVBM_OK);
	m = kvbm_test_open_cfg(&f->cfg);
	assert_int_equal(kvbm_test_counts(m).inactive, 5);
	assert_int_equal(kvbm_close(m), KVBM_OK);
}

/* Deleting a catalog file (to start fresh) leaves its lock file: the new
 * file adopts it instead of being refused as another catalog's. */
static void owner__deleted_catalog_starts_fresh(void **state)
{
	struct kvbm_test_catalog *f = *state;
	kvbm_manager *m = kvbm_test_open_cfg(&f->cfg);

	add_block(m, 9);
	assert_int_equal(kvbm_close(m), KVBM_OK);
	assert_true(exists(f->path, "-kvbm"));
	assert_int_equal(unlink(f->path), 0);
	m = kvbm_test_open_cfg(&f->cfg);
	assert_int_equal(kvbm_test_counts(m).inactive, 0);
	add_block(m, 10);
	assert_int_equal(kvbm_close(m), KVBM_OK);
	m = kvbm_test_open_cfg(&f->cfg); /* and the adoption stuck */
	assert_int_equal(kvbm_test_counts(m).inactive, 1);
	assert_int_equal(kvbm_close(m), KVBM_OK);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(owner__second_writer_of_a_tier_is_refused),
		T(owner__killed_owner_never_blocks_a_restart),
		T(owner__foreign_database_is_left_untouched),
		T(owner__only_missing_or_empty_files_are_initialised),
		T(owner__wal_of_another_catalog_is_refused),
		T(owner__damaged_schema_is_refused_by_name),
		T(owner__foreign_long_transaction_is_waited_out),
		T(owner__deleted_catalog_starts_fresh),
	};
	return cmocka_run_group_tests_name("ownership", tests, NULL, NULL);
}
