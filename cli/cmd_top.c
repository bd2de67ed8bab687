/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvbm-catalog top: the hottest prefixes, each chain root (a registered
 * block whose parent is not registered) with its block count, accesses and
 * longest chain, the rows of the hot_prefixes view. The view walks down
 * from the roots in SQL, a queue insert and an index lookup per block plus
 * a sort to group by root (7 s for 1M blocks); here one rowid-range scan
 * per tier reads the registered rows into memory, a sort by hash lets each
 * block find its parent by binary search, and each block's root is found
 * once, by walking up and assigning the whole path: O(n log n), about a
 * second for 1M blocks. The roots are ranked by SQL from a TEMP table.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "tier_hash.h"

struct node {
	int64_t tier;   /* tier_id */
	int64_t hash;   /* seq_hash */
	int64_t parent; /* parent_hash, when has_parent */
	int64_t accesses;
	uint32_t root;  /* index of the root; NO_ROOT on (or below) a cycle */
	uint32_t depth; /* blocks above this one in its chain */
	uint8_t has_parent, state;
};

enum { UNSEEN, ON_PATH, DONE };
#define NO_ROOT UINT32_MAX

static int by_hash(const void *a, const void *b)
{
	const struct node *x = a, *y = b;

	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1;
	return x->hash < y->hash ? -1 : x->hash > y->hash;
}

/* Index of the first node of (tier, hash), or NO_ROOT. */
static uint32_t find(const struct node *n, uint32_t count, int64_t tier, int64_t hash)
{
	_Static_assert(offsetof(struct node, tier) == offsetof(struct tier_hash, tier) &&
			       offsetof(struct node, hash) == offsetof(struct tier_hash, hash),
		       "a node starts with its (tier, hash) key");
	_Static_assert(NO_ROOT == UINT32_MAX, "tier_hash_find's none is NO_ROOT");
	return tier_hash_find(n, sizeof(*n), count, tier, hash);
}

/* Give every node its root and depth. A path is walked up until a node
 * whose root is known (or a root), then assigned top down, so each node is
 * walked once; meeting a node of the current path is a parent cycle of a
 * damaged file, whose nodes and everything below them get no root (the
 * view's walk from the roots never reaches them either). */
static bool assign_roots(struct node *n, uint32_t count)
{
	uint32_t *parent = malloc((size_t)count * sizeof(*parent));
	uint32_t *path = malloc((size_t)count * sizeof(*path));

	if (!parent || !path) {
		free(parent);
		free(path);
		return false;
	}
	for (uint32_t i = 0; i < count; i++)
		parent[i] = n[i].has_parent ? find(n, count, n[i].tier, n[i].parent) : NO_ROOT;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t len = 0, at = i;
		while (at != NO_ROOT && n[at].state == UNSEEN) {
			n[at].state = ON_PATH;
			path[len++] = at;
			at = parent[at];
		}
		/* at: NO_ROOT (the path's top is a root), a DONE node, or a
		 * node of this path (a cycle). */
		uint32_t root = NO_ROOT, depth = 0;
		if (at == NO_ROOT) {
			root = path[len - 1];
			n[root].root = root;
			n[root].depth = 0;
			n[root].state = DONE;
			root = n[root].root;
			depth = 0;
			len--;
		} else if (n[at].state == DONE) {
			root = n[at].root;
			depth = n[at].depth;
		}
		while (len > 0) {
			const uint32_t k = path[--len];
			n[k].root = root;
			n[k].depth = root == NO_ROOT ? 0 : ++depth;
			n[k].state = DONE;
		}
	}
	free(parent);
	free(path);
	return true;
}

/* Registered rows of every tier into *out. */
static int read_nodes(const struct cli *cli, sqlite3 *db, struct node **out, uint32_t *count)
{
	sqlite3_stmt *st = NULL;
	struct node *n = NULL;
	size_t cap = 0, len = 0;
	int step;

	if (sqlite3_prepare_v2(db,
			       "SELECT t.tier_id, b.seq_hash, b.parent_hash, b.access_count"
			       " FROM kv_tier t JOIN block_rows b ON " CLI_TIER_RANGE("t", "b")
			       " WHERE " CLI_LIVE("t", "b"),
			       -1, &st, NULL) != SQLITE_OK)
		return cli_error(cli, "cannot read %s: %s", cli->db, sqlite3_errmsg(db));
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? 2 * cap : 65536;
			struct node *grown = cap < NO_ROOT ? realloc(n, cap * sizeof(*n)) : NULL;
			if (!grown) {
				sqlite3_finalize(st);
				free(n);
				return cli_error(cli, "out of memory for %zu blocks of %s", len, cli->db);
			}
			n = grown;
		}
		n[len++] = (struct node){
			.tier = sqlite3_column_int64(st, 0),
			.hash = sqlite3_column_int64(st, 1),
			.parent = sqlite3_column_int64(st, 2),
			.has_parent = sqlite3_column_type(st, 2) != SQLITE_NULL,
			.accesses = sqlite3_column_int64(st, 3),
		};
	}
	sqlite3_finalize(st);
	if (step != SQLITE_DONE) {
		free(n);
		return cli_error(cli, "cannot read %s: %s", cli->db, sqlite3_errmsg(db));
	}
	*out = n;
	*count = (uint32_t)len;
	return EXIT_OK;
}

/* One kv_top row per root: blocks, accesses and longest chain summed at
 * the root's node. */
static int write_roots(const struct cli *cli, sqlite3 *db, struct node *n, uint32_t count)
{
	sqlite3_stmt *st = NULL;
	int64_t *sums = calloc((size_t)count * 3 + 1, sizeof(*sums));
	int rc = EXIT_ERR;

	if (!sums)
		return cli_error(cli, "out of memory for %u blocks of %s", count, cli->db);
	for (uint32_t i = 0; i < count; i++) {
		const uint32_t r = n[i].root;
		if (r == NO_ROOT)
			continue;
		sums[3 * (size_t)r]++;
		sums[3 * (size_t)r + 1] += n[i].accesses;
		if ((int64_t)n[i].depth + 1 > sums[3 * (size_t)r + 2])
			sums[3 * (size_t)r + 2] = (int64_t)n[i].depth + 1;
	}
	if (sqlite3_exec(db,
			 "CREATE TEMP TABLE kv_top (tier_id INTEGER, root INTEGER, blocks INTEGER,"
			 " accesses INTEGER, longest_chain INTEGER)",
			 NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO kv_top VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st,
			       NULL) != SQLITE_OK) {
		cli_error(cli, "cannot rank roots: %s", sqlite3_errmsg(db));
		goto out;
	}
	for (uint32_t i = 0; i < count; i++) {
		if (sums[3 * (size_t)i] == 0)
			continue;
		sqlite3_bind_int64(st, 1, n[i].tier);
		sqlite3_bind_int64(st, 2, n[i].hash);
		for (int k = 0; k < 3; k++)
			sqlite3_bind_int64(st, 3 + k, sums[3 * (size_t)i + k]);
		if (sqlite3_step(st) != SQLITE_DONE) {
			cli_error(cli, "cannot rank roots: %s", sqlite3_errmsg(db));
			goto out;
		}
		sqlite3_reset(st);
	}
	rc = EXIT_OK;
out:
	sqlite3_finalize(st);
	free(sums);
	return rc;
}

int cmd_top(struct cli *cli, int argc, char **argv)
{
	struct opt opts[] = {{"limit", true, NULL}, {NULL, false, NULL}};
	int rc, n_pos;
	uint32_t limit = 10, count = 0;
	char limit_text[16];
	struct node *nodes = NULL;
	sqlite3 *db = NULL;

	if ((rc = cli_options(cli, argc, argv, opts, NULL, 0, &n_pos)) != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	if (opts[0].value && !cli_parse_u32(opts[0].value, &limit))
		return cli_usage(cli, "--limit needs a number, not '%s'", opts[0].value);
	if (!(db = cli_open_db(cli, 0)))
		return cli->db ? EXIT_ERR : EXIT_USAGE;
	/* One snapshot of a live catalog for the rows and the ranking. */
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		rc = cli_error(cli, "cannot read %s: %s", cli->db, sqlite3_errmsg(db));
		goto out;
	}
	if ((rc = cli_registered(cli, db, 0)) != EXIT_OK ||
	    (rc = read_nodes(cli, db, &nodes, &count)) != EXIT_OK)
		goto out;
	if (count > 1)
		qsort(nodes, count, sizeof(*nodes), by_hash);
	if (count > 0 && !assign_roots(nodes, count)) {
		rc = cli_error(cli, "out of memory for %u blocks of %s", count, cli->db);
		goto out;
	}
	if ((rc = write_roots(cli, db, nodes, count)) != EXIT_OK)
		goto out;
	snprintf(limit_text, sizeof(limit_text), "%u", limit);
	rc = cli_query(cli, db,
		       "SELECT t.name AS tier, printf('%016x', g.root) AS root, g.blocks,"
		       " g.accesses, g.longest_chain FROM kv_top g JOIN kv_tier t USING (tier_id)"
		       " ORDER BY g.accesses DESC, t.name, g.root LIMIT CAST(?1 AS INTEGER)",
		       false, limit_text, NULL);
out:
	free(nodes);
	if (db)
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}
