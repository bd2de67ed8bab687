/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Least-significant-digit radix sort, a byte per pass. Eviction keys are
 * logical ticks, so most of their high bytes are the same in every row:
 * one pass counts all eight digits and a digit every entry shares costs no
 * pass at all (a 1M-block tier's keys need three). Each pass is stable,
 * which keeps rows read in block order in block order among equal keys.
 */
#include <string.h>

#include "restore_order.h"

struct kvbm__order *kvbm__order_sort(struct kvbm__order *a, struct kvbm__order *tmp, size_t n)
{
	size_t count[8][256];

	memset(count, 0, sizeof(count));
	for (size_t i = 0; i < n; i++)
		for (int d = 0; d < 8; d++)
			count[d][(a[i].evict_key >> (8 * d)) & 0xff]++;
	for (int d = 0; d < 8; d++) {
		const size_t *c = count[d];
		if (n == 0 || c[(a[0].evict_key >> (8 * d)) & 0xff] == n)
			continue; /* every entry has this digit: the order stands */
		size_t at[256], sum = 0;
		for (int v = 0; v < 256; v++) {
			at[v] = sum;
			sum += c[v];
		}
		for (size_t i = 0; i < n; i++)
			tmp[at[(a[i].evict_key >> (8 * d)) & 0xff]++] = a[i];
		struct kvbm__order *t = a;
		a = tmp;
		tmp = t;
	}
	return a;
}
