/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Token blocks kept for the catalog (cfg.catalog_tokens): a block staged
 * with kvbm_stage_tokens holds a copy of its tokens, LoRA name and extra
 * keys (the layout of kvbm__events_token_copy) from staging until the
 * writer takes its row, or until it loses its hash; the row then carries
 * them (block_rows.tokens), so a restart can announce restored blocks with
 * their tokens, which is what routers that key by tokens need. Blocks
 * restored with tokens hold them until their restart announcement.
 * Manager lock held for everything here.
 */
#include <stdlib.h>
#include <string.h>

#include "manager.h"

size_t kvbm__token_copy_bytes(const uint32_t *copy, uint32_t block_size)
{
	const uint32_t n_extra = copy[block_size];
	const char *p = (const char *)(copy + block_size + 1);

	for (uint32_t i = 0; i <= n_extra; i++) /* the LoRA name, then each key */
		p += strlen(p) + 1;
	return (size_t)(p - (const char *)copy);
}

bool kvbm__token_copy_valid(const void *bytes, size_t len, uint32_t block_size)
{
	const size_t head = ((size_t)block_size + 1) * sizeof(uint32_t);

	if (len < head + 1)
		return false;
	uint32_t n_extra;
	memcpy(&n_extra, (const char *)bytes + block_size * sizeof(uint32_t), sizeof(n_extra));
	if (n_extra > 16)
		return false;
	const char *p = (const char *)bytes + head, *end = (const char *)bytes + len;
	for (uint32_t i = 0; i <= n_extra; i++) {
		const char *nul = memchr(p, '\0', (size_t)(end - p));
		if (!nul)
			return false;
		p = nul + 1;
	}
	return p == end;
}

static uint32_t **table(kvbm_manager *mgr, uint32_t ***slot)
{
	if (!*slot)
		*slot = calloc(mgr->block_count, sizeof(**slot));
	return *slot;
}

bool kvbm__row_tokens_set(kvbm_manager *mgr, uint32_t b, uint32_t *copy)
{
	uint32_t **t = table(mgr, &mgr->row_tokens);

	if (!t) {
		free(copy);
		return false;
	}
	free(t[b]);
	t[b] = copy;
	return true;
}

void kvbm__row_tokens_drop(kvbm_manager *mgr, uint32_t b)
{
	if (mgr->row_tokens) {
		free(mgr->row_tokens[b]);
		mgr->row_tokens[b] = NULL;
	}
}

uint32_t *kvbm__row_tokens_take(kvbm_manager *mgr, uint32_t b)
{
	if (!mgr->row_tokens)
		return NULL;
	uint32_t *copy = mgr->row_tokens[b];
	mgr->row_tokens[b] = NULL;
	return copy;
}

void kvbm__row_tokens_give_back(kvbm_manager *mgr, const struct kvbm__image *img)
{
	struct kvbm__slot *s = &mgr->slots[img->block];
	const bool same = (s->state == KVBM__SLOT_PRIMARY || s->state == KVBM__SLOT_INACTIVE) &&
			  s->hash == img->hash;

	if (same && mgr->row_tokens && !mgr->row_tokens[img->block])
		mgr->row_tokens[img->block] = img->tokens;
	else
		free(img->tokens);
}

void kvbm__restored_tokens_set(kvbm_manager *mgr, uint32_t b, uint32_t *copy)
{
	uint32_t **t = table(mgr, &mgr->restored_tokens);

	if (!t) {
		free(copy); /* the announcement goes out by hash only */
		return;
	}
	free(t[b]);
	t[b] = copy;
}

uint32_t *kvbm__restored_tokens_take(kvbm_manager *mgr, uint32_t b)
{
	if (!mgr->restored_tokens)
		return NULL;
	uint32_t *copy = mgr->restored_tokens[b];
	mgr->restored_tokens[b] = NULL;
	return copy;
}

static void free_table(uint32_t ***t, uint32_t n)
{
	if (!*t)
		return;
	for (uint32_t b = 0; b < n; b++)
		free((*t)[b]);
	free(*t);
	*t = NULL;
}

void kvbm__restored_tokens_free(kvbm_manager *mgr)
{
	free_table(&mgr->restored_tokens, mgr->block_count);
}

void kvbm__row_tokens_free(kvbm_manager *mgr)
{
	free_table(&mgr->row_tokens, mgr->block_count);
	free_table(&mgr->restored_tokens, mgr->block_count);
}
