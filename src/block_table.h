/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One owned heap object per block (a token copy, a key), for the things a
 * block carries only between two events: staging and its STORED event,
 * registration and its catalog row, a restore and its announcement. The
 * table is allocated on first use, so a manager that never keeps any pays
 * nothing; an entry is freed when replaced, dropped or with the table.
 * The caller's lock guards it.
 */
#ifndef KVBM_BLOCK_TABLE_H
#define KVBM_BLOCK_TABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

struct kvbm__block_table {
	void **at; /* block_count entries, or NULL before the first put */
};

/* Own p as block b's entry, freeing the one before; false (p freed) when
 * the table cannot be allocated. */
static inline bool kvbm__block_table_put(struct kvbm__block_table *t, uint32_t block_count,
					 uint32_t b, void *p)
{
	if (!t->at && !(t->at = calloc(block_count, sizeof(*t->at)))) {
		free(p);
		return false;
	}
	free(t->at[b]);
	t->at[b] = p;
	return true;
}

static inline void *kvbm__block_table_get(const struct kvbm__block_table *t, uint32_t b)
{
	return t->at ? t->at[b] : NULL;
}

/* Block b's entry, now the caller's; NULL if none. */
static inline void *kvbm__block_table_take(struct kvbm__block_table *t, uint32_t b)
{
	void *p = kvbm__block_table_get(t, b);

	if (p)
		t->at[b] = NULL;
	return p;
}

/* Called on every eviction: no call into the allocator unless b has an entry. */
static inline void kvbm__block_table_drop(struct kvbm__block_table *t, uint32_t b)
{
	void *p = kvbm__block_table_take(t, b);

	if (p)
		free(p);
}

static inline void kvbm__block_table_free(struct kvbm__block_table *t, uint32_t block_count)
{
	if (!t->at)
		return;
	for (uint32_t b = 0; b < block_count; b++)
		free(t->at[b]);
	free(t->at);
	t->at = NULL;
}

#endif /* KVBM_BLOCK_TABLE_H */
