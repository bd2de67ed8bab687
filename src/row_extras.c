/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a block's catalog row carries besides its hash, held in memory only
 * until the row is written (or until a restored one is used).
 *
 * Token blocks (cfg.catalog_tokens): a block staged
 * with kvbm_stage_tokens holds a copy of its tokens, LoRA name and extra
 * keys (the layout of kvbm__events_token_copy) from staging until the
 * writer takes its row, or until it loses its hash; the row then carries
 * them (block_rows.tokens), so a restart can announce restored blocks with
 * their tokens, which is what routers that key by tokens need. Blocks
 * restored with tokens hold them until their restart announcement.
 *
 * Full keys (kvbm_block_key_set): a caller whose 64-bit hash digests a
 * longer key (vLLM's 32-byte block hashes) records it, and gets it back
 * for a restored block (kvbm_block_key_take), so it can verify keys after
 * a restart as before it. An offload tier sets a key per stored block and
 * lets it go when the row commits (on the writer's thread) or the block is
 * evicted first: a malloc in one thread and a free in another per block,
 * which glibc makes both threads pay for (arena locks, chunks that never
 * come back to the caller's cache). Their buffers, all KVBM_KEY_MAX long,
 * are kept for reuse instead, up to KEY_POOL_MAX of them.
 *
 * Manager lock held for everything here.
 */
#include <stdlib.h>
#include <string.h>

#include "manager.h"

/* Spare key buffers kept: as many as an eighth of a 32k-block tier waiting
 * for rows at once; ~0.3 MiB. */
#define KEY_POOL_MAX 4096u

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

/* Is block b still registered under hash? A row image taken by the writer
 * gives its extras back only then, as they still describe the block. */
static bool still_holds(const kvbm_manager *mgr, uint32_t b, kvbm_hash hash)
{
	const struct kvbm__slot *s = &mgr->slots[b];

	return (s->state == KVBM__SLOT_PRIMARY || s->state == KVBM__SLOT_INACTIVE) &&
	       s->hash == hash;
}

/* p back into b's entry if b still holds hash and nothing replaced it:
 * true if kept, false if the caller still owns p. */
static bool give_back(kvbm_manager *mgr, struct kvbm__block_table *t, uint32_t b,
		      kvbm_hash hash, void *p)
{
	if (!still_holds(mgr, b, hash) || !t->at || t->at[b])
		return false;
	t->at[b] = p;
	return true;
}

bool kvbm__row_tokens_set(kvbm_manager *mgr, uint32_t b, uint32_t *copy)
{
	return kvbm__block_table_put(&mgr->row_tokens, mgr->block_count, b, copy);
}

void kvbm__row_tokens_drop(kvbm_manager *mgr, uint32_t b)
{
	kvbm__block_table_drop(&mgr->row_tokens, b);
}

uint32_t *kvbm__row_tokens_take(kvbm_manager *mgr, uint32_t b)
{
	return kvbm__block_table_take(&mgr->row_tokens, b);
}

void kvbm__row_tokens_give_back(kvbm_manager *mgr, const struct kvbm__image *img)
{
	if (!give_back(mgr, &mgr->row_tokens, img->block, img->hash, img->tokens))
		free(img->tokens);
}

void kvbm__restored_tokens_set(kvbm_manager *mgr, uint32_t b, uint32_t *copy)
{
	/* Out of memory, the announcement goes out by hash only. */
	(void)kvbm__block_table_put(&mgr->restored_tokens, mgr->block_count, b, copy);
}

uint32_t *kvbm__restored_tokens_take(kvbm_manager *mgr, uint32_t b)
{
	return kvbm__block_table_take(&mgr->restored_tokens, b);
}

void kvbm__restored_tokens_free(kvbm_manager *mgr)
{
	kvbm__block_table_free(&mgr->restored_tokens, mgr->block_count);
}

void kvbm__row_tokens_free(kvbm_manager *mgr)
{
	kvbm__block_table_free(&mgr->row_tokens, mgr->block_count);
	kvbm__block_table_free(&mgr->restored_tokens, mgr->block_count);
	kvbm__row_keys_free(mgr);
}

/* --- full keys --- */

struct kvbm__key *kvbm__key_copy(const void *bytes, uint32_t len)
{
	struct kvbm__key *k = malloc(sizeof(*k) + len);

	if (k) {
		k->len = k->cap = len;
		memcpy(k->bytes, bytes, len);
	}
	return k;
}

/* A reusable buffer holding key: a spare one, else a new one. */
static struct kvbm__key *key_new(kvbm_manager *mgr, const void *key, uint32_t len)
{
	struct kvbm__key *k = mgr->key_pool;

	if (k) {
		memcpy(&mgr->key_pool, k->bytes, sizeof(mgr->key_pool));
		mgr->key_pool_n--;
	} else if ((k = malloc(sizeof(*k) + KVBM_KEY_MAX))) {
		k->cap = KVBM_KEY_MAX;
	} else {
		return NULL;
	}
	k->len = len;
	memcpy(k->bytes, key, len);
	return k;
}

void kvbm__key_free(kvbm_manager *mgr, struct kvbm__key *k)
{
	if (!k)
		return;
	if (k->cap != KVBM_KEY_MAX || mgr->key_pool_n >= KEY_POOL_MAX) {
		free(k);
		return;
	}
	/* The next spare's address lives in the buffer's own bytes. */
	memcpy(k->bytes, &mgr->key_pool, sizeof(mgr->key_pool));
	mgr->key_pool = k;
	mgr->key_pool_n++;
}

bool kvbm__row_key_set(kvbm_manager *mgr, uint32_t b, struct kvbm__key *k)
{
	/* The key it replaces goes back to the spares. */
	kvbm__key_free(mgr, kvbm__block_table_take(&mgr->row_keys, b));
	return kvbm__block_table_put(&mgr->row_keys, mgr->block_count, b, k);
}

struct kvbm__key *kvbm__row_key_take(kvbm_manager *mgr, uint32_t b)
{
	return kvbm__block_table_take(&mgr->row_keys, b);
}

void kvbm__row_key_give_back(kvbm_manager *mgr, uint32_t b, kvbm_hash hash, struct kvbm__key *k)
{
	if (!give_back(mgr, &mgr->row_keys, b, hash, k))
		kvbm__key_free(mgr, k);
}

void kvbm__restored_key_set(kvbm_manager *mgr, uint32_t b, struct kvbm__key *k)
{
	/* Out of memory, its block is verified as if restored without one. */
	(void)kvbm__block_table_put(&mgr->restored_keys, mgr->block_count, b, k);
}

struct kvbm__key *kvbm__restored_key_take(kvbm_manager *mgr, uint32_t b)
{
	return kvbm__block_table_take(&mgr->restored_keys, b);
}

void kvbm__row_extras_drop(kvbm_manager *mgr, uint32_t b)
{
	kvbm__block_table_drop(&mgr->row_tokens, b);
	kvbm__key_free(mgr, kvbm__block_table_take(&mgr->row_keys, b));
	kvbm__block_table_drop(&mgr->restored_keys, b);
}

void kvbm__row_keys_free(kvbm_manager *mgr)
{
	kvbm__block_table_free(&mgr->row_keys, mgr->block_count);
	kvbm__block_table_free(&mgr->restored_keys, mgr->block_count);
	while (mgr->key_pool) {
		struct kvbm__key *k = mgr->key_pool;
		memcpy(&mgr->key_pool, k->bytes, sizeof(mgr->key_pool));
		free(k);
	}
	mgr->key_pool_n = 0;
}

kvbm_status kvbm_block_key_set(kvbm_manager *mgr, kvbm_hash hash, const void *key, uint32_t len)
{
	KVBM_CHECK_ARG(mgr, mgr && key && len > 0 && len <= KVBM_KEY_MAX);
	if (!mgr->journal_on)
		return KVBM_OK;
	KVBM_LOCK(mgr);
	const uint32_t b = kvbm__registry_find(&mgr->registry, hash);
	const struct kvbm__slot *s = b == KVBM__NIL ? NULL : &mgr->slots[b];
	if (!s || (s->state != KVBM__SLOT_PRIMARY && s->state != KVBM__SLOT_INACTIVE)) {
		KVBM_UNLOCK(mgr);
		return kvbm__fail(mgr, KVBM_E_NOTFOUND, "hash %016llx is not registered",
				  (unsigned long long)hash);
	}
	/* Under the lock: a spare buffer, and a copy of at most 64 bytes. */
	struct kvbm__key *k = key_new(mgr, key, len);
	if (!k) {
		KVBM_UNLOCK(mgr);
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot copy a %u-byte key", len);
	}
	if (!kvbm__row_key_set(mgr, b, k)) {
		KVBM_UNLOCK(mgr);
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot keep the key of block %u", b);
	}
	kvbm__journal_mark(mgr, b);
	KVBM_UNLOCK(mgr);
	return KVBM_OK;
}

kvbm_status kvbm_block_key_take(kvbm_manager *mgr, kvbm_hash hash, void *buf, uint32_t cap,
				uint32_t *len)
{
	KVBM_CHECK_ARG(mgr, mgr && buf && len);
	KVBM_LOCK(mgr);
	const uint32_t b = kvbm__registry_find(&mgr->registry, hash);
	struct kvbm__key *k = b == KVBM__NIL ? NULL : kvbm__block_table_get(&mgr->restored_keys, b);
	if (!k) {
		KVBM_UNLOCK(mgr);
		return kvbm__fail(mgr, KVBM_E_NOTFOUND, "no restored key for hash %016llx",
				  (unsigned long long)hash);
	}
	*len = k->len;
	if (cap < k->len) {
		KVBM_UNLOCK(mgr);
		return kvbm__fail(mgr, KVBM_E_INVAL, "key of %u bytes does not fit in %u", k->len,
				  cap);
	}
	memcpy(buf, k->bytes, k->len);
	kvbm__block_table_take(&mgr->restored_keys, b);
	KVBM_UNLOCK(mgr);
	free(k);
	return KVBM_OK;
}
