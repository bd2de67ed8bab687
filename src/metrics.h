/* SPDX-License-Identifier: Apache-2.0 */
/* Metrics the core feeds besides plain counters. */
#ifndef KVBM_METRICS_H
#define KVBM_METRICS_H

#include <stdint.h>

#include "kvbm.h"

/* One catalog commit of duration_ns into the flush-latency histogram.
 * Manager lock held. Meant for kvbm__journal_committed (src/journal.c),
 * next to catalog_flush_ns_last. */
void kvbm__metrics_observe_flush(kvbm_manager *mgr, uint64_t duration_ns);

#endif /* KVBM_METRICS_H */
