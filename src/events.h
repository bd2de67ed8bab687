/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Block events: the core appends an event under the manager lock (cheap,
 * no callback), a dispatcher thread batches them and calls the sink with
 * no kvbm lock held, so a sink may call back into kvbm.
 */
#ifndef KVBM_EVENTS_H
#define KVBM_EVENTS_H

#include "kvbm.h"

struct kvbm_manager;

/* Start the dispatcher if cfg.event_sink is set (mgr->events stays NULL
 * otherwise). Called by kvbm_open after any catalog restore; queues CLEARED
 * then STORED for every restored block, parents first. Takes the manager
 * lock (the catalog writer already runs). */
kvbm_status kvbm__events_open(kvbm_manager *mgr);
/* Deliver what is queued, stop the dispatcher, free. NULL-safe. */
void kvbm__events_close(kvbm_manager *mgr);
/* Append one event about block b (its hash, parent, position are read from
 * the slot; a STORED takes the tokens attached to b, if any). Manager lock
 * held; mgr->events != NULL. */
void kvbm__events_push(kvbm_manager *mgr, kvbm_event_kind kind, uint32_t b);

/* A heap copy of a token block for its STORED event: the tokens, then the
 * LoRA name and extra keys; one free() releases it. NULL when out of
 * memory. No lock. */
uint32_t *kvbm__events_token_copy(const kvbm_token_block *tb);
/* Keep copy for staged block b until its STORED (or kvbm__events_forget).
 * Takes ownership of copy (frees it when events are off). False when out
 * of memory (copy freed). Manager lock held. */
bool kvbm__events_attach(kvbm_manager *mgr, uint32_t b, uint32_t *copy);
/* Drop the tokens attached to b, if any (b left STAGED without a STORED).
 * Manager lock held. */
void kvbm__events_forget(kvbm_manager *mgr, uint32_t b);

/* Pull mode (events_pull.c): the manager was opened with
 * kvbm_event_pull_sink, so no dispatcher runs. Lock-free (cfg is fixed). */
bool kvbm__events_pull(const kvbm_manager *mgr);
/* Move up to cap queued events into out (see events.c). Lock held,
 * mgr->events != NULL. */
size_t kvbm__events_drain_locked(kvbm_manager *mgr, kvbm_event *out, size_t cap,
				 uint64_t *incarnation);

#endif /* KVBM_EVENTS_H */
