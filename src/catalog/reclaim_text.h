/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The text of a reclaim row (reclaims.blocks): a JSON array of block ids,
 * as the writer writes it (kvbm__reclaim_format, below). The restore and
 * kvbm-catalog both parse it with this one function because what it
 * refuses decides what a restart keeps:
 * a reclaim row the parser refuses masks every older row of its tier.
 * Stricter than JSON on purpose: ids past 19 digits, fractions and
 * exponents are not ids. Header-only so the CLI, which links only the
 * public API, reads it exactly as the library does.
 */
#ifndef KVBM_CATALOG_RECLAIM_TEXT_H
#define KVBM_CATALOG_RECLAIM_TEXT_H

#include <stdbool.h>
#include <stdint.h>

static inline bool kvbm__json_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Calls add(id, user) for each id of p (add may be NULL: validation only).
 * False when p (NULL included) is not such an array. */
static inline bool kvbm__reclaim_parse(const unsigned char *p, void (*add)(uint64_t id, void *user),
				       void *user)
{
	if (!p)
		return false;
	while (kvbm__json_space(*p))
		p++;
	if (*p++ != '[')
		return false;
	while (kvbm__json_space(*p))
		p++;
	if (*p == ']')
		return true;
	for (;;) {
		uint64_t v = 0;
		int digits = 0;
		while (kvbm__json_space(*p))
			p++;
		while (*p >= '0' && *p <= '9' && digits < 19) {
			v = v * 10 + (uint64_t)(*p++ - '0');
			digits++;
		}
		if (digits == 0 || (*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E')
			return false;
		if (add)
			add(v, user);
		while (kvbm__json_space(*p))
			p++;
		if (*p == ']')
			return true;
		if (*p++ != ',')
			return false;
	}
}

/* The bytes the text of n ids can take: 10 digits and a comma each, the
 * brackets. */
#define KVBM__RECLAIM_TEXT_MAX(n) ((size_t)(n) * 11 + 3)

/* Writes the text of ids[0..n) at out (KVBM__RECLAIM_TEXT_MAX(n) bytes),
 * not terminated; returns its length. The writer's format, which
 * kvbm__reclaim_parse reads back; bench_offload_sqlite writes the same. */
static inline size_t kvbm__reclaim_format(char *out, const uint32_t *ids, uint32_t n)
{
	char *p = out;

	*p++ = '[';
	for (uint32_t i = 0; i < n; i++) {
		char digits[10];
		int k = 0;
		uint32_t v = ids[i];
		if (i)
			*p++ = ',';
		do
			digits[k++] = (char)('0' + v % 10);
		while ((v /= 10) != 0);
		while (k > 0)
			*p++ = digits[--k];
	}
	*p++ = ']';
	return (size_t)(p - out);
}

#endif /* KVBM_CATALOG_RECLAIM_TEXT_H */
