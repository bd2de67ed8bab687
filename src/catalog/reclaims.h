/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which reclaim rows (schema/003_narrow_rows.sql) the catalog still needs.
 * A reclaim row lists blocks whose committed block rows must not be
 * restored; it is needed until every block it lists has a newer row, so
 * the writer tracks, per block, the row that last listed it. A row whose
 * blocks were all rewritten is deleted in the next transaction; when
 * partly rewritten rows pile up, the blocks still listed are written into
 * one new row and the old ones are deleted (a compaction costs at most one
 * listed id per block row written since the last one).
 *
 * Writer thread only; nothing here touches SQLite or takes a lock.
 */
#ifndef KVBM_CATALOG_RECLAIMS_H
#define KVBM_CATALOG_RECLAIMS_H

#include <stdbool.h>
#include <stdint.h>

#include "journal.h"

struct kvbm__reclaim_row {
	int64_t rowid;        /* reclaims.rec_id; 0 while the slot is unused */
	uint32_t listed;      /* ids the row lists */
	uint32_t outstanding; /* listed blocks not rewritten since */
};

struct kvbm__reclaims {
	uint32_t block_count;
	uint32_t *row_of;     /* block -> index into rows, UINT32_MAX for none */
	struct kvbm__reclaim_row *rows;
	uint32_t n_rows, cap_rows, n_live;
	uint64_t listed, outstanding; /* sums over live rows */
	int64_t *doomed;      /* rowids to delete in the next transaction */
	uint32_t n_doomed, cap_doomed;
};

/* Returns false when out of memory. */
bool kvbm__reclaims_init(struct kvbm__reclaims *r, uint32_t block_count);
void kvbm__reclaims_free(struct kvbm__reclaims *r);

/* Should the next transaction compact (list every outstanding block in
 * its reclaim row and delete all older rows)? */
bool kvbm__reclaims_should_compact(const struct kvbm__reclaims *r, uint32_t batch);
/* Every block still listed by a live row, appended to out (room for
 * block_count ids); returns how many. */
uint32_t kvbm__reclaims_outstanding(const struct kvbm__reclaims *r, uint32_t *out);

/* A transaction committed. rowid is the reclaim row it wrote (0 if none),
 * listing exactly `freed` (duplicates allowed; a compaction lists every
 * block outstanding before it as well, and deletes every live row); imgs
 * are the block rows it wrote. The rows doomed before it
 * were deleted by it. Returns false when out of memory, which only costs
 * space: rows that cannot be tracked are kept until the next restore. */
bool kvbm__reclaims_committed(struct kvbm__reclaims *r, int64_t rowid, bool compacted,
			      const uint32_t *freed, uint32_t n_freed,
			      const struct kvbm__image *imgs, uint32_t n_imgs);

#endif /* KVBM_CATALOG_RECLAIMS_H */
