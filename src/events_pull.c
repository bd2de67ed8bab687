/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pull-mode events: a manager opened with cfg.event_sink =
 * kvbm_event_pull_sink queues events exactly as with a sink (events.c) but
 * runs no dispatcher thread; kvbm_events_take() drains the queue on the
 * caller's thread. This is what an offloading manager needs: the events of
 * a call are visible right after it, with no thread or timer involved.
 */
#include "events.h"
#include "manager.h"

void kvbm_event_pull_sink(const kvbm_event_batch *batch, void *user)
{
	(void)batch; /* a marker: never called by kvbm in pull mode */
	(void)user;
}

bool kvbm__events_pull(const kvbm_manager *mgr)
{
	return mgr->cfg.event_sink == kvbm_event_pull_sink;
}

kvbm_status kvbm_events_take(kvbm_manager *mgr, kvbm_event *out, size_t cap, size_t *n_out,
			     uint64_t *incarnation)
{
	KVBM_CHECK_ARG(mgr, mgr && n_out && (cap == 0 || out));
	*n_out = 0;
	if (!kvbm__events_pull(mgr))
		return kvbm__fail(mgr, KVBM_E_MISUSE,
				  "events_take needs cfg.event_sink = kvbm_event_pull_sink");
	KVBM_LOCK(mgr);
	/* mgr->events is set for the manager's whole life in pull mode. */
	*n_out = mgr->events ? kvbm__events_drain_locked(mgr, out, cap, incarnation) : 0;
	KVBM_UNLOCK(mgr);
	return KVBM_OK;
}
