/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until block events land: no sink is ever started. */
#include "manager.h"
#include "events.h"

kvbm_status kvbm__events_open(kvbm_manager *mgr)
{
	(void)mgr;
	return KVBM_OK;
}

void kvbm__events_close(kvbm_manager *mgr)
{
	(void)mgr;
}

void kvbm__events_push(kvbm_manager *mgr, kvbm_event_kind kind, uint32_t b)
{
	(void)mgr;
	(void)kind;
	(void)b;
}
