/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The physical floor under the catalog figure of bench_offload.py (the
 * Mooncake trace replayed through kvbm.vllm as fast as possible, catalog
 * on): bare SQLite writing what that replay's writer wrote, commit for
 * commit. The input lists, per commit, the blocks its reclaim row named
 * and the block ids of its rows, in the writer's order
 * (tests/data/catalog_batches/, captured from the replay; its header says
 * how). Each commit, as the writer's: BEGIN IMMEDIATE, one reclaim row
 * (a JSON array of that many ids), the rows, the tier's stamp and the
 * file's commit counter, COMMIT; a PASSIVE checkpoint once the WAL holds
 * CKPT_PAGES frames. Same pragmas as a catalog of 8,192 blocks (WAL,
 * synchronous=NORMAL, auto-checkpoint off, 2 MiB page cache), same row
 * width (block_rows of schema 3 with a 32-byte key), a new file per round.
 *
 * Variants, rounds alternating, best of ROUNDS each:
 *   upsert    rows through a plain upsert of every column (the narrowest
 *             statement that keeps the row's content);
 *   replace   INSERT OR REPLACE (no index, so an overwrite in place);
 *   kvbm      the writer's own upsert (src/catalog/sql.c), which keeps what a
 *             row of the same registration had;
 *   one-txn   the same rows in one transaction: what the commits cost;
 * Printed: the writing thread's CPU (CLOCK_THREAD_CPUTIME_ID) per block
 * operation of the replay (--ops, 411,717 for the whole trace), split into
 * rows, commits and checkpoints, and wall time.
 *
 * Usage: bench_offload_sqlite BATCHES [ops] [dir]
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/catalog/reclaim_text.h"
#include "../../src/catalog/row_sql.h"

/* The most blocks one commit of the captured replay frees. */
#define FREED_MAX 8192

#define ROUNDS 5
#define CKPT_PAGES 1000 /* src/catalog/writer.c's CHECKPOINT_PAGES */

struct commit {
	uint32_t n_freed, n, *ids;
};

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(sqlite3 *db, const char *what)
{
	fprintf(stderr, "bench_offload_sqlite: %s: %s\n", what, db ? sqlite3_errmsg(db) : "failed");
	exit(1);
}

static void ok(sqlite3 *db, const char *what, int rc)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
		die(db, what);
}

/* Lines "n_freed id[k][-r] ...": a run id, id-1, ..., id-r; the k (a row
 * carrying its key) is what the writer sent and changes nothing here, as
 * every row below carries one. '#' lines are comments. */
static struct commit *load(const char *path, uint32_t *n_commits, uint64_t *n_rows)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	struct commit *c = NULL;
	uint32_t n = 0, ccap = 0;

	if (!f)
		die(NULL, path);
	*n_rows = 0;
	while (getline(&line, &cap, f) > 0) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (n == ccap && !(c = realloc(c, (ccap = ccap ? 2 * ccap : 256) * sizeof(*c))))
			die(NULL, "memory");
		char *p = line, *end;
		struct commit *k = &c[n++];
		k->n_freed = (uint32_t)strtoul(p, &end, 10);
		if (k->n_freed > FREED_MAX)
			die(NULL, "a commit frees more blocks than FREED_MAX");
		k->n = 0;
		k->ids = NULL;
		uint32_t icap = 0;
		for (p = end;;) {
			const unsigned long id = strtoul(p, &end, 10);
			if (end == p)
				break;
			p = end;
			if (*p == 'k')
				p++;
			unsigned long run = 0;
			if (*p == '-')
				run = strtoul(p + 1, &p, 10);
			for (unsigned long r = 0; r <= run; r++) {
				if (k->n == icap &&
				    !(k->ids = realloc(k->ids, (icap = icap ? 2 * icap : 64) * 4)))
					die(NULL, "memory");
				k->ids[k->n++] = (uint32_t)(id - r);
			}
		}
		*n_rows += k->n;
	}
	free(line);
	fclose(f);
	*n_commits = n;
	return c;
}

static const char schema[] =
	"PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;"
	" PRAGMA journal_size_limit = 16777216; PRAGMA cache_size = -2048;"
	" CREATE TABLE tiers (tier_id INTEGER PRIMARY KEY, name TEXT, last_commit_at INTEGER,"
	"  write_seq INTEGER NOT NULL DEFAULT 0);"
	" INSERT INTO tiers (tier_id, name) VALUES (1, 'CPU');"
	" CREATE TABLE catalog (singleton INTEGER PRIMARY KEY, commit_seq INTEGER NOT NULL);"
	" INSERT INTO catalog VALUES (1, 0);"
	" CREATE TABLE reclaims (rec_id INTEGER PRIMARY KEY, tier_id INTEGER NOT NULL,"
	"  seq INTEGER NOT NULL, blocks TEXT NOT NULL);"
	" CREATE TABLE block_rows (id INTEGER PRIMARY KEY, wseq INTEGER NOT NULL,"
	"  seq_hash INTEGER NOT NULL, parent_hash INTEGER, position INTEGER,"
	"  evict_key INTEGER NOT NULL, access_tick INTEGER NOT NULL, access_count INTEGER NOT NULL,"
	"  frequency INTEGER NOT NULL, priority INTEGER NOT NULL, retention INTEGER NOT NULL,"
	"  registered_at INTEGER, last_access_at INTEGER, tokens BLOB, key BLOB)";

static const char *const row_sql[] = {
	"INSERT INTO block_rows VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12,"
	" NULL, ?13) ON CONFLICT (id) DO UPDATE SET wseq = excluded.wseq,"
	" seq_hash = excluded.seq_hash, parent_hash = excluded.parent_hash,"
	" position = excluded.position, evict_key = excluded.evict_key,"
	" access_tick = excluded.access_tick, access_count = excluded.access_count,"
	" frequency = excluded.frequency, priority = excluded.priority,"
	" retention = excluded.retention, registered_at = excluded.registered_at,"
	" last_access_at = excluded.last_access_at, key = excluded.key",
	"INSERT OR REPLACE INTO block_rows VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"
	" ?12, ?12, NULL, ?13)",
	KVBM__UPSERT_SQL, /* the writer's own (tokens ?13 left unbound: NULL) */
};

enum variant { UPSERT, REPLACE, KVBM, ONE_TXN, N_VARIANTS };
static const char *const variant_name[] = {"upsert", "replace", "kvbm", "one-txn"};

struct result {
	uint64_t rows_ns, commit_ns, ckpt_ns, wall_ns;
};

static int wal_pages;

static int wal_hook(void *user, sqlite3 *db, const char *name, int pages)
{
	(void)user;
	(void)db;
	(void)name;
	wal_pages = pages;
	return SQLITE_OK;
}

static void exec(sqlite3 *db, const char *sql)
{
	ok(db, sql, sqlite3_exec(db, sql, NULL, NULL, NULL));
}

static struct result run(const char *path, enum variant v, const struct commit *c, uint32_t nc)
{
	static const char *const suffix[] = {"", "-wal", "-shm"};
	char p[600];
	sqlite3 *db = NULL;
	sqlite3_stmt *row, *rec, *stamp, *bump;
	struct result r = {0};
	uint64_t rng = 0x9e3779b97f4a7c15ull, tick = 0, seq = 0;
	char *text = malloc(KVBM__RECLAIM_TEXT_MAX(FREED_MAX));
	uint32_t *freed = malloc(FREED_MAX * sizeof(*freed));

	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		unlink(p);
	}
	if (!text || !freed)
		die(NULL, "memory");
	ok(db, "open", sqlite3_open(path, &db));
	exec(db, schema);
	sqlite3_wal_hook(db, wal_hook, NULL);
	wal_pages = 0;
	ok(db, "prepare", sqlite3_prepare_v2(db, row_sql[v == ONE_TXN ? UPSERT : v], -1, &row, NULL));
	ok(db, "prepare",
	   sqlite3_prepare_v2(db, "INSERT INTO reclaims (tier_id, seq, blocks) VALUES (1, ?1, ?2)",
			      -1, &rec, NULL));
	ok(db, "prepare",
	   sqlite3_prepare_v2(db, "UPDATE tiers SET last_commit_at = ?1, write_seq = ?2 WHERE tier_id = 1",
			      -1, &stamp, NULL));
	ok(db, "prepare",
	   sqlite3_prepare_v2(db, "UPDATE catalog SET commit_seq = commit_seq + 1", -1, &bump, NULL));
	const uint64_t w0 = clock_ns(CLOCK_MONOTONIC);
	for (uint32_t i = 0; i < nc; i++) {
		const uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		seq++;
		if (v != ONE_TXN || i == 0)
			exec(db, "BEGIN IMMEDIATE");
		if (c[i].n_freed) {
			for (uint32_t k = 0; k < c[i].n_freed; k++)
				freed[k] = (k * 2654435761u) % 8192;
			const size_t len = kvbm__reclaim_format(text, freed, c[i].n_freed);
			sqlite3_bind_int64(rec, 1, (sqlite3_int64)seq);
			sqlite3_bind_text(rec, 2, text, (int)len, SQLITE_STATIC);
			ok(db, "reclaim", sqlite3_step(rec));
			sqlite3_reset(rec);
		}
		const sqlite3_int64 now = (sqlite3_int64)(clock_ns(CLOCK_REALTIME) / 1000000);
		for (uint32_t k = 0; k < c[i].n; k++) {
			uint64_t key[4];
			for (int j = 0; j < 4; j++) {
				rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
				key[j] = rng;
			}
			tick++;
			sqlite3_bind_int64(row, 1, (sqlite3_int64)(1ull << 32 | c[i].ids[k]));
			sqlite3_bind_int64(row, 2, (sqlite3_int64)seq);
			sqlite3_bind_int64(row, 3, (sqlite3_int64)key[0]);
			sqlite3_bind_int64(row, 4, (sqlite3_int64)key[1]);
			sqlite3_bind_int64(row, 5, (sqlite3_int64)(tick % 64));
			sqlite3_bind_int64(row, 6, (sqlite3_int64)tick);
			sqlite3_bind_int64(row, 7, (sqlite3_int64)tick);
			sqlite3_bind_int64(row, 8, 1);
			sqlite3_bind_int64(row, 9, 1);
			sqlite3_bind_int64(row, 10, 0);
			sqlite3_bind_int64(row, 11, 0);
			sqlite3_bind_int64(row, 12, now);
			/* The key is the last parameter of every variant. */
			sqlite3_bind_blob(row, sqlite3_bind_parameter_count(row), key, sizeof(key),
					  SQLITE_STATIC);
			ok(db, "row", sqlite3_step(row));
			sqlite3_reset(row);
		}
		sqlite3_bind_int64(stamp, 1, now);
		sqlite3_bind_int64(stamp, 2, (sqlite3_int64)seq);
		ok(db, "stamp", sqlite3_step(stamp));
		sqlite3_reset(stamp);
		ok(db, "bump", sqlite3_step(bump));
		sqlite3_reset(bump);
		const uint64_t t1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		if (v != ONE_TXN || i == nc - 1)
			exec(db, "COMMIT");
		const uint64_t t2 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		if (wal_pages >= CKPT_PAGES) {
			int log = 0, done = 0;
			ok(db, "checkpoint",
			   sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done));
			wal_pages = log - done;
		}
		const uint64_t t3 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		r.rows_ns += t1 - t0;
		r.commit_ns += t2 - t1;
		r.ckpt_ns += t3 - t2;
	}
	r.wall_ns = clock_ns(CLOCK_MONOTONIC) - w0;
	sqlite3_finalize(row);
	sqlite3_finalize(rec);
	sqlite3_finalize(stamp);
	sqlite3_finalize(bump);
	sqlite3_close(db);
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		unlink(p);
	}
	free(text);
	free(freed);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s BATCHES [ops] [dir]\n", argv[0]);
		return 2;
	}
	const double ops = argc > 2 ? atof(argv[2]) : 411717;
	const char *dir = argc > 3 ? argv[3] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char path[512];
	uint32_t nc;
	uint64_t n_rows, n_freed = 0;
	struct commit *c = load(argv[1], &nc, &n_rows);
	struct result best[N_VARIANTS];
	uint64_t best_cpu[N_VARIANTS];

	for (uint32_t i = 0; i < nc; i++)
		n_freed += c[i].n_freed;
	snprintf(path, sizeof(path), "%s/bench_offload_sqlite.%d.db", dir, (int)getpid());
	for (int v = 0; v < N_VARIANTS; v++)
		best_cpu[v] = UINT64_MAX;
	for (int round = 0; round < ROUNDS; round++)
		for (int v = 0; v < N_VARIANTS; v++) {
			const struct result r = run(path, (enum variant)v, c, nc);
			const uint64_t cpu = r.rows_ns + r.commit_ns + r.ckpt_ns;
			if (cpu < best_cpu[v]) {
				best_cpu[v] = cpu;
				best[v] = r;
			}
		}
	printf("%u commits, %llu rows, %llu blocks in reclaim rows; per block op of the replay"
	       " (%.0f ops), best of %d:\n",
	       nc, (unsigned long long)n_rows, (unsigned long long)n_freed, ops, ROUNDS);
	for (int v = 0; v < N_VARIANTS; v++)
		printf("%-8s cpu %6.1f ns (rows %5.1f, commits %5.1f, checkpoints %5.1f)"
		       "  %5.2f us per row  wall %6.1f ns\n",
		       variant_name[v], best_cpu[v] / ops, best[v].rows_ns / ops,
		       best[v].commit_ns / ops, best[v].ckpt_ns / ops,
		       best_cpu[v] / 1e3 / (double)n_rows, best[v].wall_ns / ops);
	for (uint32_t i = 0; i < nc; i++)
		free(c[i].ids);
	free(c);
	return 0;
}
