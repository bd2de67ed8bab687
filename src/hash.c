/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sequence hashing in Dynamo's "universal" encoding (see kvbm.h). Tokens
 * are hashed as little-endian u32; on a big-endian host they are swapped
 * into a stack buffer first, so every host produces the same hashes.
 */
#include <string.h>
/* Inline XXH3 so short fixed-size inputs (16-byte chain words) compile to
 * straight-line code instead of a call into libxxhash. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kvbm.h"

static inline uint64_t le64(uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return __builtin_bswap64(v);
#else
	return v;
#endif
}

/* Internal forms, inlined into kvbm_hash_sequence: the exported symbols
 * may be interposed, so calls between them cannot be inlined. */
static inline kvbm_hash local_hash(const uint32_t *tokens, size_t n_tokens)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	uint32_t buf[KVBM_MAX_BLOCK_SIZE];
	if (n_tokens > KVBM_MAX_BLOCK_SIZE)
		return 0;
	for (size_t i = 0; i < n_tokens; i++)
		buf[i] = __builtin_bswap32(tokens[i]);
	tokens = buf;
#endif
	return XXH3_64bits_withSeed(tokens, n_tokens * sizeof(uint32_t), KVBM_HASH_LOCAL_SEED);
}

static inline kvbm_hash chain_hash(kvbm_hash parent_or_salt, kvbm_hash local)
{
	const uint64_t words[2] = {le64(parent_or_salt), le64(local)};
	return XXH3_64bits_withSeed(words, sizeof(words), 0);
}

kvbm_hash kvbm_hash_block(const uint32_t *tokens, size_t n_tokens)
{
	return tokens ? local_hash(tokens, n_tokens) : 0;
}

kvbm_hash kvbm_hash_salt(const void *salt, size_t len)
{
	if (!salt || len == 0)
		return 0;
	return XXH3_64bits_withSeed(salt, len, 0);
}

kvbm_hash kvbm_hash_chain(kvbm_hash parent_or_salt, kvbm_hash local, bool is_root)
{
	/* Root and child are the same function of two words; the flag only
	 * documents which word the caller passes. */
	(void)is_root;
	return chain_hash(parent_or_salt, local);
}

kvbm_status kvbm_hash_sequence(const uint32_t *tokens, size_t n_tokens, uint32_t block_size,
			       kvbm_hash salt_hash, kvbm_hash *out, size_t cap, size_t *n_out)
{
	if ((!tokens && n_tokens > 0) || !n_out || block_size == 0 ||
	    block_size > KVBM_MAX_BLOCK_SIZE || (block_size & (block_size - 1)) != 0)
		return KVBM_E_INVAL;
	const size_t n_blocks = n_tokens / block_size;
	*n_out = n_blocks;
	if (n_blocks > cap)
		return KVBM_E_SIZE;
	if (n_blocks > 0 && !out)
		return KVBM_E_INVAL;
	kvbm_hash prev = salt_hash;
	for (size_t b = 0; b < n_blocks; b++) {
		prev = chain_hash(prev, local_hash(tokens + b * block_size, block_size));
		out[b] = prev;
	}
	return KVBM_OK;
}
