/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvbm-catalog lineage: a hash's ancestors and descendants. The walk uses
 * every row, registered or reclaimed: a reclaimed row still says which
 * parent its hash has (hashes chain, so that stays true), so the walk goes
 * on through evicted blocks to what is still cached; a parent known only
 * from its child's row is shown as evicted with no block.
 *
 * Why C: a recursive query needs the rows indexed by hash and by parent,
 * two TEMP indexes over every row (3.7 s for 1M blocks) for a walk that
 * visits a few dozen. One rowid-range scan per tier reads the rows into
 * memory instead, two sorts index them, and the walk is breadth-first, so
 * the first level at which a hash is met is its distance; marks keep a
 * damaged file's parent cycles from looping. SQL then renders the hashes
 * found with their representative row (registered first, then the lowest
 * id), as the rest of the CLI renders its answers.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "tier_hash.h"

struct lrow {
	int64_t tier, hash, parent, id;
	uint8_t has_parent, live;
	uint8_t up, down; /* seen by the walk upwards / downwards */
};

#define NONE UINT32_MAX

static int by_hash(const void *a, const void *b)
{
	const struct lrow *x = a, *y = b;

	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1;
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	if (x->live != y->live)
		return x->live > y->live ? -1 : 1; /* registered first */
	return x->id < y->id ? -1 : x->id > y->id;
}

/* A row with a parent, as by_parent sorts it: qsort has no user
 * argument, so the key travels with the index. */
struct kid {
	int64_t tier, parent;
	uint32_t row;
};

static int by_parent(const void *a, const void *b)
{
	const struct kid *x = a, *y = b;

	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1;
	if (x->parent != y->parent)
		return x->parent < y->parent ? -1 : 1;
	return x->row < y->row ? -1 : x->row > y->row;
}

/* kids: the indices of rows with a parent, by (tier, parent, index).
 * Returns false when out of memory. */
static bool sort_kids(const struct lrow *rows, uint32_t *kids, uint32_t n)
{
	struct kid *k = malloc((n ? n : 1) * sizeof(*k));

	if (!k)
		return false;
	for (uint32_t i = 0; i < n; i++)
		k[i] = (struct kid){.tier = rows[kids[i]].tier, .parent = rows[kids[i]].parent,
				    .row = kids[i]};
	qsort(k, n, sizeof(*k), by_parent);
	for (uint32_t i = 0; i < n; i++)
		kids[i] = k[i].row;
	free(k);
	return true;
}

/* First row of (tier, hash) in rows (sorted by_hash), or NONE. */
static uint32_t find_hash(const struct lrow *r, uint32_t n, int64_t tier, int64_t hash)
{
	_Static_assert(offsetof(struct lrow, tier) == offsetof(struct tier_hash, tier) &&
			       offsetof(struct lrow, hash) == offsetof(struct tier_hash, hash),
		       "a row starts with its (tier, hash) key");
	_Static_assert(NONE == UINT32_MAX, "tier_hash_find's none is NONE");
	return tier_hash_find(r, sizeof(*r), n, tier, hash);
}

/* First entry of by_parent (indices of rows with a parent) for (tier, parent). */
static uint32_t find_parent(const struct lrow *r, const uint32_t *kids, uint32_t n, int64_t tier,
			    int64_t parent)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		const uint32_t mid = lo + (hi - lo) / 2;
		const struct lrow *m = &r[kids[mid]];
		if (m->tier < tier || (m->tier == tier && m->parent < parent))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && r[kids[lo]].tier == tier && r[kids[lo]].parent == parent ? lo : NONE;
}

struct walk {
	struct lrow *rows;
	uint32_t n, n_kids;
	uint32_t *kids;             /* indices of rows with a parent, by_parent */
	int64_t *level, *next;      /* hashes of this level and the next */
	uint32_t n_level, n_next;
	sqlite3_stmt *emit;         /* INSERT INTO kv_lineage_raw */
	int rc;
};

/* One hash met at distance d, with its representative row if it has one
 * (the first of its run: registered first, then the lowest id). */
static void emit(struct walk *w, int64_t tier, int64_t hash, int64_t d, bool up)
{
	if (w->rc != SQLITE_OK)
		return;
	const uint32_t rep = find_hash(w->rows, w->n, tier, hash);
	sqlite3_bind_int64(w->emit, 1, tier);
	sqlite3_bind_int64(w->emit, 2, hash);
	sqlite3_bind_int64(w->emit, 3, d);
	sqlite3_bind_int(w->emit, 4, up);
	if (rep == NONE) {
		sqlite3_bind_null(w->emit, 5);
		sqlite3_bind_int(w->emit, 6, 0);
	} else {
		sqlite3_bind_int64(w->emit, 5, w->rows[rep].id);
		sqlite3_bind_int(w->emit, 6, w->rows[rep].live);
	}
	if (sqlite3_step(w->emit) != SQLITE_DONE)
		w->rc = SQLITE_ERROR;
	sqlite3_reset(w->emit);
}

/* Upwards from hash: each level the parents of every row of the hashes of
 * the level before. A parent without a row is emitted and not followed. */
static void walk_up(struct walk *w, int64_t tier, int64_t hash)
{
	const uint32_t first = find_hash(w->rows, w->n, tier, hash);

	if (first == NONE)
		return; /* no row holds it: nothing says what its parent is */
	w->rows[first].up = 1;
	w->level[0] = hash;
	w->n_level = 1;
	for (int64_t d = 0; w->n_level > 0 && -d < (int64_t)w->n; d--) {
		w->n_next = 0;
		for (uint32_t i = 0; i < w->n_level; i++) {
			emit(w, tier, w->level[i], d, true);
			uint32_t k = find_hash(w->rows, w->n, tier, w->level[i]);
			for (; k < w->n && w->rows[k].tier == tier && w->rows[k].hash == w->level[i];
			     k++) {
				if (!w->rows[k].has_parent)
					continue;
				const int64_t p = w->rows[k].parent;
				const uint32_t pk = find_hash(w->rows, w->n, tier, p);
				if (pk == NONE) {
					emit(w, tier, p, d - 1, true);
				} else if (!w->rows[pk].up) {
					w->rows[pk].up = 1;
					w->next[w->n_next++] = p;
				}
			}
		}
		int64_t *const swap = w->level;
		w->level = w->next;
		w->next = swap;
		w->n_level = w->n_next;
	}
}

/* Downwards from hash: each level the hashes of every row whose parent is
 * a hash of the level before. */
static void walk_down(struct walk *w, int64_t tier, int64_t hash)
{
	const uint32_t self = find_hash(w->rows, w->n, tier, hash);

	if (self == NONE && find_parent(w->rows, w->kids, w->n_kids, tier, hash) == NONE)
		return; /* the tier knows nothing of it */
	if (self != NONE)
		w->rows[self].down = 1;
	w->level[0] = hash;
	w->n_level = 1;
	for (int64_t d = 0; w->n_level > 0 && d < (int64_t)w->n; d++) {
		w->n_next = 0;
		for (uint32_t i = 0; i < w->n_level; i++) {
			emit(w, tier, w->level[i], d, false);
			uint32_t k = find_parent(w->rows, w->kids, w->n_kids, tier, w->level[i]);
			for (; k < w->n_kids && w->rows[w->kids[k]].tier == tier &&
			       w->rows[w->kids[k]].parent == w->level[i];
			     k++) {
				const int64_t c = w->rows[w->kids[k]].hash;
				struct lrow *const rep = &w->rows[find_hash(w->rows, w->n, tier, c)];
				if (!rep->down) {
					rep->down = 1;
					w->next[w->n_next++] = c;
				}
			}
		}
		int64_t *const swap = w->level;
		w->level = w->next;
		w->next = swap;
		w->n_level = w->n_next;
	}
}

/* Every row of the tiers asked about. */
static int read_rows(const struct cli *cli, sqlite3 *db, const char *tier, struct walk *w)
{
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int step;

	if (sqlite3_prepare_v2(db,
			       "SELECT t.tier_id, b.seq_hash, b.parent_hash, b.id, " CLI_LIVE("t", "b")
			       " FROM kv_tier t JOIN block_rows b ON " CLI_TIER_RANGE("t", "b")
			       " WHERE (?1 = '' OR t.name = ?1) AND typeof(b.seq_hash) = 'integer'",
			       -1, &st, NULL) != SQLITE_OK)
		return cli_error(cli, "cannot read %s: %s", cli->db, sqlite3_errmsg(db));
	sqlite3_bind_text(st, 1, tier, -1, SQLITE_STATIC);
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (w->n == cap) {
			cap = cap ? 2 * cap : 65536;
			struct lrow *grown = cap < NONE ? realloc(w->rows, cap * sizeof(*grown)) : NULL;
			if (!grown) {
				sqlite3_finalize(st);
				return cli_error(cli, "out of memory for %u rows of %s", w->n, cli->db);
			}
			w->rows = grown;
		}
		w->rows[w->n++] = (struct lrow){
			.tier = sqlite3_column_int64(st, 0),
			.hash = sqlite3_column_int64(st, 1),
			.parent = sqlite3_column_int64(st, 2),
			.has_parent = sqlite3_column_type(st, 2) == SQLITE_INTEGER,
			.id = sqlite3_column_int64(st, 3),
			.live = (uint8_t)sqlite3_column_int(st, 4),
		};
	}
	sqlite3_finalize(st);
	if (step != SQLITE_DONE)
		return cli_error(cli, "cannot read %s: %s", cli->db, sqlite3_errmsg(db));
	return EXIT_OK;
}

/* Walk from hash in every tier asked about, into TEMP kv_lineage_raw. */
static int walk_all(const struct cli *cli, sqlite3 *db, const char *tier, int64_t hash)
{
	struct walk w = {.rc = SQLITE_OK};
	int rc;

	if ((rc = read_rows(cli, db, tier, &w)) != EXIT_OK)
		goto out;
	rc = EXIT_ERR;
	if (w.n > 1)
		qsort(w.rows, w.n, sizeof(*w.rows), by_hash);
	const size_t cells = w.n ? w.n : 1;
	w.kids = malloc(cells * sizeof(*w.kids));
	w.level = malloc(cells * sizeof(*w.level));
	w.next = malloc(cells * sizeof(*w.next));
	if (!w.kids || !w.level || !w.next) {
		cli_error(cli, "out of memory for %u rows of %s", w.n, cli->db);
		goto out;
	}
	for (uint32_t i = 0; i < w.n; i++)
		if (w.rows[i].has_parent)
			w.kids[w.n_kids++] = i;
	if (w.n_kids > 1 && !sort_kids(w.rows, w.kids, w.n_kids)) {
		cli_error(cli, "out of memory for %u rows of %s", w.n, cli->db);
		goto out;
	}
	if (sqlite3_exec(db,
			 "CREATE TEMP TABLE kv_lineage_raw (tier_id INTEGER, hash INTEGER,"
			 " d INTEGER, up INTEGER, rep INTEGER, live INTEGER)",
			 NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO kv_lineage_raw VALUES (?1, ?2, ?3, ?4, ?5, ?6)", -1,
			       &w.emit, NULL) != SQLITE_OK) {
		cli_error(cli, "cannot walk: %s", sqlite3_errmsg(db));
		goto out;
	}
	/* Each tier on its own: rows are sorted by tier first. */
	for (uint32_t i = 0; i < w.n;) {
		const int64_t t = w.rows[i].tier;
		walk_up(&w, t, hash);
		walk_down(&w, t, hash);
		while (i < w.n && w.rows[i].tier == t)
			i++;
	}
	if (w.rc != SQLITE_OK) {
		cli_error(cli, "cannot walk: %s", sqlite3_errmsg(db));
		goto out;
	}
	rc = EXIT_OK;
out:
	sqlite3_finalize(w.emit);
	free(w.next);
	free(w.level);
	free(w.kids);
	free(w.rows);
	return rc;
}

int cmd_lineage(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"tier", true, NULL}, {NULL, false, NULL}};
	char *pos[1];
	int rc, n;
	kvbm_hash hash;
	sqlite3 *db = NULL;

	if ((rc = cli_options(cli, argc, argv, opts, pos, 1, &n)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	if (!(db = cli_open_db(cli, 0)))
		return cli->db ? EXIT_ERR : EXIT_USAGE;
	const char *tier = opts[0].value ? opts[0].value : "";
	if (n != 1) {
		rc = cli_usage(cli, "give the HASH whose lineage to show");
		goto out;
	} else if (!cli_parse_hash(pos[0], &hash)) {
		rc = cli_error(cli, "'%s' is not a hash (1 to 16 hex digits)", pos[0]);
		goto out;
	}
	/* One snapshot of a live catalog for the walk and the rendering. */
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		rc = cli_error(cli, "cannot read %s: %s", cli->db, sqlite3_errmsg(db));
		goto out;
	}
	if ((rc = cli_registered(cli, db, 0)) != EXIT_OK ||
	    (rc = walk_all(cli, db, tier, (int64_t)hash)) != EXIT_OK)
		goto out;
	/* Upwards a hash is as far as its nearest meeting, downwards too; a
	 * hash met both ways (a cycle) is listed both ways. The row shown
	 * for a hash is its registered one, else the lowest id. */
	rc = cli_query(
		cli, db,
		"WITH nodes(tier_id, h, d, rep, live) AS ("
		"  SELECT tier_id, hash, max(d), rep, live FROM kv_lineage_raw WHERE up"
		"  GROUP BY tier_id, hash"
		"  UNION SELECT tier_id, hash, min(d), rep, live FROM kv_lineage_raw WHERE NOT up"
		"  GROUP BY tier_id, hash)"
		" SELECT t.name AS tier, n.d AS distance,"
		"  CASE WHEN n.d < 0 THEN 'ancestor' WHEN n.d = 0 THEN 'self'"
		"  ELSE 'descendant' END AS relation,"
		"  CASE WHEN n.live THEN 'registered' ELSE 'evicted' END AS state,"
		"  CASE WHEN n.live THEN n.rep & 4294967295 END AS block_id,"
		"  printf('%016x', n.h) AS hash, b.position,"
		"  CASE WHEN n.live THEN b.access_count END AS access_count"
		" FROM nodes n JOIN kv_tier t USING (tier_id) LEFT JOIN block_rows b ON b.id = n.rep"
		" ORDER BY t.name, n.d, block_id, hash",
		false, NULL);
out:
	if (db)
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}
