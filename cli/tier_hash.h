/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rows read into memory from block_rows and sorted by (tier, hash), which
 * top and lineage both search: a row type that starts with
 * `int64_t tier, hash;` (each command's file asserts it) is searched here,
 * so the search is written once.
 */
#ifndef KVBM_CLI_TIER_HASH_H
#define KVBM_CLI_TIER_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct tier_hash {
	int64_t tier, hash;
};

/* Index of the first of n rows of `size` bytes at rows, sorted by
 * (tier, hash), whose key is (tier, hash); UINT32_MAX if none is. */
static inline uint32_t tier_hash_find(const void *rows, size_t size, uint32_t n, int64_t tier,
				      int64_t hash)
{
	uint32_t lo = 0, hi = n;
	struct tier_hash k;

	while (lo < hi) {
		const uint32_t mid = lo + (hi - lo) / 2;
		memcpy(&k, (const char *)rows + (size_t)mid * size, sizeof(k));
		if (k.tier < tier || (k.tier == tier && k.hash < hash))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == n)
		return UINT32_MAX;
	memcpy(&k, (const char *)rows + (size_t)lo * size, sizeof(k));
	return k.tier == tier && k.hash == hash ? lo : UINT32_MAX;
}

#endif /* KVBM_CLI_TIER_HASH_H */
