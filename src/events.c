/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Block events. The core appends an event to a queue under the manager
 * lock it already holds, so an event costs a copy and no extra lock. A
 * dispatcher thread (sleeping on a condition variable of that same lock)
 * cuts the queue into batches of
 * at most cfg.event_batch_max events, waiting at most cfg.event_window_ms
 * after the first event of a batch, and calls the sink with no kvbm lock
 * held, so a sink may call back into the manager.
 *
 * The queue grows by doubling up to QUEUE_MAX events; past that (a sink
 * stuck for a long time) new events are dropped and counted in
 * events_dropped rather than blocking the fast path, and the next batch
 * starts with a CLEARED event so a router knows its index is incomplete.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager.h"
#include "events.h"
#include "journal.h"

#define QUEUE_MIN 1024u
#define QUEUE_MAX (1u << 22)

struct kvbm__events {
	kvbm_manager *mgr;
	pthread_t thread;
	pthread_cond_t cv;  /* waited on with mgr->lock, which guards the queue */
	kvbm_event *queue;  /* ring: head .. head+count, cap a power of two */
	uint32_t cap, head, count;
	uint64_t first_ns;  /* when the oldest undelivered event arrived */
	bool lost;          /* events were dropped: announce CLEARED */
	bool stopping;
	kvbm_event *batch;  /* the dispatcher's copy; only it touches this */
	uint64_t seq;
	uint64_t incarnation;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Append (manager lock held); false when the event had to be dropped. */
static bool append(struct kvbm__events *ev, const kvbm_event *e)
{
	if (ev->count == ev->cap) {
		const uint32_t cap = ev->cap * 2;
		kvbm_event *q = cap <= QUEUE_MAX ? malloc((size_t)cap * sizeof(*q)) : NULL;
		if (!q)
			return false;
		for (uint32_t i = 0; i < ev->count; i++)
			q[i] = ev->queue[(ev->head + i) & (ev->cap - 1)];
		free(ev->queue);
		ev->queue = q;
		ev->cap = cap;
		ev->head = 0;
	}
	if (ev->count == 0)
		ev->first_ns = mono_ns();
	ev->queue[(ev->head + ev->count) & (ev->cap - 1)] = *e;
	ev->count++;
	return true;
}

void kvbm__events_push(kvbm_manager *mgr, kvbm_event_kind kind, uint32_t b)
{
	struct kvbm__events *ev = mgr->events;
	const struct kvbm__slot *s = &mgr->slots[b];
	kvbm_event e = {.kind = kind, .block = b};

	if (kind != KVBM_EVENT_CLEARED) {
		e.hash = s->hash;
		if (kind == KVBM_EVENT_STORED) {
			e.parent_hash = s->parent;
			e.position = s->position;
			e.num_tokens = mgr->block_size;
		}
	}
	const bool was_empty = ev->count == 0;
	if (append(ev, &e)) {
		mgr->m.events_emitted++;
	} else {
		mgr->m.events_dropped++;
		ev->lost = true;
	}
	/* Wake the dispatcher on the first event (it starts the window) and
	 * when a full batch is ready; in between it sleeps on its timer. */
	if (was_empty || ev->count == mgr->cfg.event_batch_max)
		pthread_cond_signal(&ev->cv);
}

static void deliver(struct kvbm__events *ev, uint32_t n)
{
	kvbm_manager *mgr = ev->mgr;
	const kvbm_event_batch batch = {
		.tier = mgr->tier,
		.incarnation = ev->incarnation,
		.seq = ev->seq++,
		.events = ev->batch,
		.count = n,
	};

	mgr->cfg.event_sink(&batch, mgr->cfg.event_user);
}

static void *dispatcher_main(void *arg)
{
	struct kvbm__events *ev = arg;
	kvbm_manager *mgr = ev->mgr;
	const kvbm_config *cfg = &mgr->cfg;
	const uint64_t window_ns = (uint64_t)cfg->event_window_ms * 1000000ull;

	pthread_mutex_lock(&mgr->lock);
	for (;;) {
		if (ev->count == 0 && !ev->lost) {
			if (ev->stopping)
				break;
			pthread_cond_wait(&ev->cv, &mgr->lock);
			continue;
		}
		const uint64_t due = ev->first_ns + window_ns;
		if (ev->count < cfg->event_batch_max && !ev->stopping && mono_ns() < due) {
			struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull),
					      .tv_nsec = (long)(due % 1000000000ull)};
			pthread_cond_timedwait(&ev->cv, &mgr->lock, &ts);
			continue;
		}
		uint32_t n = 0;
		if (ev->lost) {
			ev->batch[n++] = (kvbm_event){.kind = KVBM_EVENT_CLEARED};
			ev->lost = false;
		}
		while (n < cfg->event_batch_max && ev->count > 0) {
			ev->batch[n++] = ev->queue[ev->head];
			ev->head = (ev->head + 1) & (ev->cap - 1);
			ev->count--;
		}
		if (ev->count > 0)
			ev->first_ns = mono_ns(); /* the rest starts its own window */
		mgr->m.event_batches++;
		/* The sink runs with no kvbm lock held: it may call back in. */
		pthread_mutex_unlock(&mgr->lock);
		deliver(ev, n);
		pthread_mutex_lock(&mgr->lock);
	}
	pthread_mutex_unlock(&mgr->lock);
	return NULL;
}

static void free_events(struct kvbm__events *ev)
{
	pthread_cond_destroy(&ev->cv);
	free(ev->queue);
	free(ev->batch);
	free(ev);
}

kvbm_status kvbm__events_open(kvbm_manager *mgr)
{
	if (!mgr->cfg.event_sink)
		return KVBM_OK;
	struct kvbm__events *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate the event queue");
	ev->mgr = mgr;
	ev->cap = QUEUE_MIN;
	while (ev->cap < mgr->cfg.event_batch_max && ev->cap < QUEUE_MAX)
		ev->cap *= 2;
	ev->queue = malloc((size_t)ev->cap * sizeof(*ev->queue));
	ev->batch = malloc(((size_t)mgr->cfg.event_batch_max + 1) * sizeof(*ev->batch));
	ev->incarnation = kvbm__catalog_incarnation(mgr->catalog);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ev->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (!ev->queue || !ev->batch) {
		free_events(ev);
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate the event queue");
	}

	/* Every manager starts by saying CLEARED, so a router drops whatever
	 * it held for this worker (a previous incarnation's blocks), then
	 * learns exactly the blocks a catalog restore brought back. No other thread can see the
	 * manager yet, but the lock keeps the rule "push under the lock". */
	pthread_mutex_lock(&mgr->lock);
	mgr->events = ev;
	kvbm__events_push(mgr, KVBM_EVENT_CLEARED, 0);
	for (uint32_t b = 0; b < mgr->block_count; b++)
		if (mgr->slots[b].state == KVBM__SLOT_INACTIVE)
			kvbm__events_push(mgr, KVBM_EVENT_STORED, b);
	pthread_mutex_unlock(&mgr->lock);
	if (pthread_create(&ev->thread, NULL, dispatcher_main, ev) != 0) {
		mgr->events = NULL;
		free_events(ev);
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot start the event dispatcher");
	}
	return KVBM_OK;
}

void kvbm__events_close(kvbm_manager *mgr)
{
	struct kvbm__events *ev = mgr->events;

	if (!ev)
		return;
	pthread_mutex_lock(&mgr->lock);
	/* Without a catalog nothing survives the close: say so last. */
	if (!mgr->catalog)
		kvbm__events_push(mgr, KVBM_EVENT_CLEARED, 0);
	ev->stopping = true;
	pthread_cond_signal(&ev->cv);
	pthread_mutex_unlock(&mgr->lock);
	pthread_join(ev->thread, NULL);
	pthread_mutex_lock(&mgr->lock);
	mgr->events = NULL;
	pthread_mutex_unlock(&mgr->lock);
	free_events(ev);
}
