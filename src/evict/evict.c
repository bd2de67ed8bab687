/* SPDX-License-Identifier: Apache-2.0 */
/* The table of eviction policies: enum value -> backend ops and name. */
#include <string.h>

#include "evict.h"

extern const struct kvbm__evict_ops kvbm__evict_lru;
extern const struct kvbm__evict_ops kvbm__evict_fifo;
extern const struct kvbm__evict_ops kvbm__evict_multi_lru;
extern const struct kvbm__evict_ops kvbm__evict_lineage;
extern const struct kvbm__evict_ops kvbm__evict_priority;
extern const struct kvbm__evict_ops kvbm__evict_s3fifo;
extern const struct kvbm__evict_ops kvbm__evict_two_queue;
extern const struct kvbm__evict_ops kvbm__evict_arc;
extern const struct kvbm__evict_ops kvbm__evict_adaptive;
extern const struct kvbm__evict_ops kvbm__evict_vllm_arc;

static const struct kvbm__evict_ops *const policies[KVBM_EVICT_COUNT] = {
	[KVBM_EVICT_LRU] = &kvbm__evict_lru,
	[KVBM_EVICT_FIFO] = &kvbm__evict_fifo,
	[KVBM_EVICT_MULTI_LRU] = &kvbm__evict_multi_lru,
	[KVBM_EVICT_LINEAGE] = &kvbm__evict_lineage,
	[KVBM_EVICT_PRIORITY] = &kvbm__evict_priority,
	[KVBM_EVICT_S3FIFO] = &kvbm__evict_s3fifo,
	[KVBM_EVICT_TWO_QUEUE] = &kvbm__evict_two_queue,
	[KVBM_EVICT_ARC] = &kvbm__evict_arc,
	[KVBM_EVICT_ADAPTIVE] = &kvbm__evict_adaptive,
	[KVBM_EVICT_VLLM_ARC] = &kvbm__evict_vllm_arc,
};

static const char *const names[KVBM_EVICT_COUNT] = {
	[KVBM_EVICT_LRU] = "lru",
	[KVBM_EVICT_FIFO] = "fifo",
	[KVBM_EVICT_MULTI_LRU] = "multi-lru",
	[KVBM_EVICT_LINEAGE] = "lineage",
	[KVBM_EVICT_PRIORITY] = "priority",
	[KVBM_EVICT_S3FIFO] = "s3fifo",
	[KVBM_EVICT_TWO_QUEUE] = "2q",
	[KVBM_EVICT_ARC] = "arc",
	[KVBM_EVICT_ADAPTIVE] = "adaptive",
	[KVBM_EVICT_VLLM_ARC] = "vllm-arc",
};

const struct kvbm__evict_ops *kvbm__evict_ops_for(kvbm_evict_policy policy)
{
	if ((unsigned)policy >= KVBM_EVICT_COUNT)
		return NULL;
	return policies[policy];
}

const char *kvbm_evict_policy_name(kvbm_evict_policy policy)
{
	if ((unsigned)policy >= KVBM_EVICT_COUNT)
		return NULL;
	return names[policy];
}

kvbm_status kvbm_evict_policy_parse(const char *name, kvbm_evict_policy *out)
{
	if (!name || !out)
		return KVBM_E_INVAL;
	for (unsigned i = 0; i < KVBM_EVICT_COUNT; i++) {
		if (names[i] && policies[i] && strcmp(names[i], name) == 0) {
			*out = (kvbm_evict_policy)i;
			return KVBM_OK;
		}
	}
	return KVBM_E_INVAL;
}
