/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the write-behind catalog lands: catalogs are refused. */
#include "manager.h"
#include "journal.h"

kvbm_status kvbm__catalog_open(kvbm_manager *mgr)
{
	return kvbm__fail(mgr, KVBM_E_UNSUPPORTED, "catalog support is not built");
}

kvbm_status kvbm__catalog_close(kvbm_manager *mgr, bool discard)
{
	(void)mgr;
	(void)discard;
	return KVBM_OK;
}

void kvbm__catalog_wake(struct kvbm__catalog *cat)
{
	(void)cat;
}

kvbm_status kvbm__catalog_flush(kvbm_manager *mgr)
{
	(void)mgr;
	return KVBM_OK;
}

uint64_t kvbm__catalog_incarnation(const struct kvbm__catalog *cat)
{
	(void)cat;
	return 0;
}
