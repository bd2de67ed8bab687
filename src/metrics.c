/* SPDX-License-Identifier: Apache-2.0 */
/* Metrics snapshot; Prometheus rendering lands with the metrics work. */
#include <string.h>

#include "manager.h"

kvbm_status kvbm_metrics_read(kvbm_manager *mgr, kvbm_metrics *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	pthread_mutex_lock(&mgr->lock);
	*out = mgr->m;
	out->reset_pool = mgr->reset.count + mgr->reset_unsafe.count;
	out->inactive_pool = mgr->inactive_count + mgr->reclaim_pending.count +
			     mgr->reserve.count;
	out->catalog_pending = mgr->dirty_count;
	pthread_mutex_unlock(&mgr->lock);
	return KVBM_OK;
}

kvbm_status kvbm_metrics_format(kvbm_manager *mgr, char *buf, size_t len, size_t *needed)
{
	(void)buf;
	(void)len;
	(void)needed;
	return kvbm__fail(mgr, KVBM_E_UNSUPPORTED, "prometheus format not built");
}
