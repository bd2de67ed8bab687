/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer's bookkeeping of reclaim rows (src/catalog/reclaims.c),
 * driven by random transactions against a model of the file: rows the
 * bookkeeping dooms are deleted as the writer deletes them (in the next
 * transaction, every live row on a compaction), and after every
 * transaction the rows left on disk must mask exactly the blocks the model
 * says are free, by the restore's rule (a block is free when a reclaim row
 * with a higher seq than its block row lists it). The rows and ids kept on
 * disk must stay bounded by the blocks still listed.
 */
#include <stdlib.h>
#include <string.h>

#include "catalog/reclaims.h"
#include "test_common.h"

#define BLOCKS 64
#define BATCH 8
#define MAX_ROWS 4096

struct disk_row {
	int64_t rowid;
	uint64_t seq;
	uint32_t n;
	uint32_t ids[2 * BLOCKS];
};

struct model {
	struct disk_row rows[MAX_ROWS];
	uint32_t n_rows;
	uint64_t wseq[BLOCKS]; /* seq of each block's row */
	bool freed[BLOCKS];    /* listed since its row was written */
};

static void delete_row(struct model *m, int64_t rowid)
{
	for (uint32_t i = 0; i < m->n_rows; i++)
		if (m->rows[i].rowid == rowid) {
			m->rows[i] = m->rows[--m->n_rows];
			return;
		}
	fail_msg("doomed row %lld is not on disk", (long long)rowid);
}

static bool masked_on_disk(const struct model *m, uint32_t b)
{
	for (uint32_t i = 0; i < m->n_rows; i++)
		for (uint32_t k = 0; k < m->rows[i].n; k++)
			if (m->rows[i].ids[k] == b && m->rows[i].seq > m->wseq[b])
				return true;
	return false;
}

static void reclaims__random_transactions_keep_the_file_exact(void **state)
{
	(void)state;
	uint64_t rng = kvbm_test_seed("reclaims");
	struct kvbm__reclaims r;
	struct model *m = calloc(1, sizeof(*m));
	uint32_t listed[2 * BLOCKS], freed[BLOCKS];
	struct kvbm__image imgs[BLOCKS];
	int64_t next_rowid = 1;
	uint32_t compactions = 0;

	assert_non_null(m);
	assert_true(kvbm__reclaims_init(&r, BLOCKS));
	for (uint64_t seq = 1; seq <= 20000; seq++) {
		/* This transaction frees some blocks and rewrites others (never
		 * both for one block, as a take guarantees). */
		uint32_t n_freed = 0, n_imgs = 0;
		const uint32_t mode = (uint32_t)(kvbm_test_rand(&rng) % 4);
		for (uint32_t b = 0; b < BLOCKS; b++) {
			const uint32_t roll = (uint32_t)(kvbm_test_rand(&rng) % 64);
			if (roll < (mode == 0 ? 6u : 2u))
				freed[n_freed++] = b;
			else if (roll < (mode == 1 ? 4u : 8u))
				imgs[n_imgs++] = (struct kvbm__image){.block = b};
		}
		for (uint32_t i = 0; i < r.n_doomed; i++)
			delete_row(m, r.doomed[i]);
		const bool compacted = kvbm__reclaims_should_compact(&r, BATCH);
		uint32_t n = 0;
		if (compacted) {
			compactions++;
			n = kvbm__reclaims_outstanding(&r, listed);
			for (uint32_t i = 0; i < r.n_rows; i++)
				if (r.rows[i].rowid != 0)
					delete_row(m, r.rows[i].rowid);
		}
		memcpy(listed + n, freed, n_freed * sizeof(*freed));
		n += n_freed;
		int64_t rowid = 0;
		if (n > 0) {
			assert_true(m->n_rows < MAX_ROWS);
			struct disk_row *d = &m->rows[m->n_rows++];
			d->rowid = rowid = next_rowid++;
			d->seq = seq;
			d->n = n;
			memcpy(d->ids, listed, n * sizeof(*listed));
		}
		assert_true(kvbm__reclaims_committed(&r, rowid, compacted, listed, n, imgs, n_imgs));
		for (uint32_t i = 0; i < n_freed; i++)
			m->freed[freed[i]] = true;
		for (uint32_t i = 0; i < n_imgs; i++) {
			m->freed[imgs[i].block] = false;
			m->wseq[imgs[i].block] = seq;
		}
		/* What a restore would conclude from the file, block by block. */
		uint64_t outstanding = 0, ids_on_disk = 0;
		for (uint32_t b = 0; b < BLOCKS; b++) {
			assert_int_equal(masked_on_disk(m, b), m->freed[b]);
			outstanding += m->freed[b];
		}
		for (uint32_t i = 0; i < m->n_rows; i++)
			ids_on_disk += m->rows[i].n;
		assert_int_equal(r.outstanding, outstanding);
		/* Garbage is bounded: compaction keeps the ids left on disk
		 * within twice the live ones plus a few transactions' worth. */
		assert_true(ids_on_disk <= 2 * outstanding + 4 * BATCH + 2 * BLOCKS);
	}
	assert_true(compactions > 0); /* the bound above was reached and held */
	kvbm__reclaims_free(&r);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reclaims__random_transactions_keep_the_file_exact),
	};
	return cmocka_run_group_tests_name("reclaims", tests, NULL, NULL);
}
