/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bookkeeping of the reclaim rows the catalog still needs (reclaims.h).
 */
#include <stdlib.h>
#include <string.h>

#include "reclaims.h"

#define NONE UINT32_MAX

bool kvbm__reclaims_init(struct kvbm__reclaims *r, uint32_t block_count)
{
	memset(r, 0, sizeof(*r));
	r->block_count = block_count;
	r->row_of = malloc((size_t)block_count * sizeof(*r->row_of));
	if (!r->row_of)
		return false;
	memset(r->row_of, 0xff, (size_t)block_count * sizeof(*r->row_of));
	return true;
}

void kvbm__reclaims_free(struct kvbm__reclaims *r)
{
	free(r->row_of);
	free(r->rows);
	free(r->doomed);
	memset(r, 0, sizeof(*r));
}

bool kvbm__reclaims_should_compact(const struct kvbm__reclaims *r, uint32_t batch)
{
	/* Listed ids that no longer mask anything are garbage the restore
	 * reads; compact once they outweigh the live ones twice over. */
	return r->n_live > 1 && r->listed > 2 * r->outstanding + 2 * (uint64_t)batch;
}

uint32_t kvbm__reclaims_outstanding(const struct kvbm__reclaims *r, uint32_t *out)
{
	uint32_t n = 0;

	for (uint32_t b = 0; b < r->block_count; b++)
		if (r->row_of[b] != NONE)
			out[n++] = b;
	return n;
}

static bool doom(struct kvbm__reclaims *r, int64_t rowid)
{
	if (r->n_doomed == r->cap_doomed) {
		const uint32_t cap = r->cap_doomed ? 2 * r->cap_doomed : 16;
		int64_t *grown = realloc(r->doomed, cap * sizeof(*grown));
		if (!grown)
			return false;
		r->doomed = grown;
		r->cap_doomed = cap;
	}
	r->doomed[r->n_doomed++] = rowid;
	return true;
}

/* Forget that the row listing b still masks it. */
static void release(struct kvbm__reclaims *r, uint32_t b, bool *ok)
{
	const uint32_t i = r->row_of[b];

	if (i == NONE)
		return;
	r->row_of[b] = NONE;
	r->outstanding--;
	if (--r->rows[i].outstanding == 0) {
		if (!doom(r, r->rows[i].rowid))
			*ok = false; /* the row stays until the next restore */
		r->listed -= r->rows[i].listed;
		r->rows[i].rowid = 0;
		r->n_live--;
	}
}

static uint32_t new_row(struct kvbm__reclaims *r, int64_t rowid)
{
	uint32_t i = 0;

	while (i < r->n_rows && r->rows[i].rowid != 0)
		i++;
	if (i == r->n_rows) {
		if (r->n_rows == r->cap_rows) {
			const uint32_t cap = r->cap_rows ? 2 * r->cap_rows : 16;
			struct kvbm__reclaim_row *grown = realloc(r->rows, cap * sizeof(*grown));
			if (!grown)
				return NONE;
			r->rows = grown;
			r->cap_rows = cap;
		}
		r->n_rows++;
	}
	r->rows[i] = (struct kvbm__reclaim_row){.rowid = rowid};
	r->n_live++;
	return i;
}

bool kvbm__reclaims_committed(struct kvbm__reclaims *r, int64_t rowid, bool compacted,
			      const uint32_t *freed, uint32_t n_freed,
			      const struct kvbm__image *imgs, uint32_t n_imgs)
{
	bool ok = true;

	/* The transaction deleted what was doomed before it. */
	r->n_doomed = 0;
	if (compacted) {
		/* The transaction deleted every older row: the new one lists all
		 * their outstanding blocks. */
		memset(r->row_of, 0xff, (size_t)r->block_count * sizeof(*r->row_of));
		r->n_rows = r->n_live = 0;
		r->listed = r->outstanding = 0;
	}
	if (rowid != 0) {
		const uint32_t i = new_row(r, rowid);
		if (i == NONE)
			return false; /* untracked: kept until the next restore */
		for (uint32_t k = 0; k < n_freed; k++) {
			const uint32_t b = freed[k];
			if (r->row_of[b] == i)
				continue; /* listed twice (a compaction's union) */
			release(r, b, &ok);
			r->row_of[b] = i;
			r->rows[i].outstanding++;
			r->outstanding++;
		}
		r->rows[i].listed = r->rows[i].outstanding;
		r->listed += r->rows[i].listed;
		if (r->rows[i].outstanding == 0) {
			r->rows[i].rowid = 0;
			r->n_live--;
			if (!doom(r, rowid))
				ok = false;
		}
	}
	for (uint32_t k = 0; k < n_imgs; k++)
		release(r, imgs[k].block, &ok);
	return ok;
}
