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
 * The queue grows by doubling up to QUEUE_MAX events. Past that (a sink
 * stuck for a long time) the fast path does not block: everything still
 * queued is discarded (counted in events_dropped) and the next batch starts
 * with CLEARED, followed by the events that came after the overflow.
 * Discarding the whole queue, not just the newest event, is what keeps a
 * router's index a subset of the registry: had only later events been
 * dropped, a STORED already queued could reach the router while the
 * REMOVED that followed it was lost.
 *
 * Tokens (kvbm_stage_tokens) are a heap copy per block: held in `pending`
 * from staging to registration, then owned by the queued STORED event and
 * freed once the sink returned or the event was discarded. Nothing else
 * keeps them: a registered block is known by hash only.
 */
#include <errno.h>
#include <stdint.h>
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
	uint32_t cap_max;   /* QUEUE_MAX, or more so a restore announcement fits */
	uint64_t first_ns;  /* when the oldest undelivered event arrived */
	bool lost;          /* events were dropped: announce CLEARED */
	bool stopping;
	kvbm_event *batch;  /* the dispatcher's copy; only it touches this */
	uint64_t seq;
	uint64_t incarnation;
	struct kvbm__block_table pending; /* token copies of staged blocks */
	char *medium;       /* what batches name as their medium */
	uint32_t pulled;    /* pull mode: events of `batch` the caller took last */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* An event's token copy (kvbm__events_token_copy); the public struct
 * shows it const, the queue owns it. */
static void free_tokens(const uint32_t *tokens)
{
	free((void *)(uintptr_t)tokens);
}

/* Make room for one more event (manager lock held). When the queue cannot
 * grow, discard it and mark the loss; returns how many events that was. */
static uint32_t make_room(struct kvbm__events *ev)
{
	if (ev->count < ev->cap)
		return 0;
	const size_t cap = (size_t)ev->cap * 2; /* cap_max may be 2^31: no u32 wrap */
	kvbm_event *q = ev->cap < ev->cap_max ? malloc(cap * sizeof(*q)) : NULL;
	if (!q) {
		const uint32_t discarded = ev->count;
		for (uint32_t i = 0; i < ev->count; i++)
			free_tokens(ev->queue[(ev->head + i) & (ev->cap - 1)].tokens);
		ev->head = ev->count = 0;
		ev->lost = true;
		return discarded;
	}
	for (uint32_t i = 0; i < ev->count; i++)
		q[i] = ev->queue[(ev->head + i) & (ev->cap - 1)];
	free(ev->queue);
	ev->queue = q;
	ev->cap = (uint32_t)cap;
	ev->head = 0;
	return 0;
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
			const uint32_t *copy = kvbm__block_table_take(&ev->pending, b);
			if (copy) {
				const char *lora = (const char *)(copy + e.num_tokens + 1);
				e.tokens = copy;
				e.lora_name = *lora ? lora : NULL;
				e.n_extra_keys = copy[e.num_tokens];
				e.extra_keys = lora + strlen(lora) + 1;
			}
		}
	}
	mgr->m.events_dropped += make_room(ev);
	const bool was_empty = ev->count == 0;
	if (was_empty)
		ev->first_ns = mono_ns();
	ev->queue[(ev->head + ev->count) & (ev->cap - 1)] = e;
	ev->count++;
	mgr->m.events_emitted++;
	/* Wake the dispatcher on the first event (it starts the window) and
	 * when a full batch is ready; in between it sleeps on its timer. */
	if (was_empty || ev->count == mgr->cfg.event_batch_max)
		pthread_cond_signal(&ev->cv);
}

/* Layout of a copy: num_tokens tokens, the extra-key count (u32), the
 * LoRA name and each extra key, NUL-terminated strings back to back. */
uint32_t *kvbm__events_token_copy(const kvbm_token_block *tb)
{
	const size_t lora = tb->lora_name ? strlen(tb->lora_name) + 1 : 1;
	size_t strings = lora;

	for (uint32_t i = 0; i < tb->n_extra_keys; i++)
		strings += strlen(tb->extra_keys[i]) + 1;
	uint32_t *copy = malloc(((size_t)tb->num_tokens + 1) * sizeof(*copy) + strings);
	if (!copy)
		return NULL;
	memcpy(copy, tb->tokens, (size_t)tb->num_tokens * sizeof(*copy));
	copy[tb->num_tokens] = tb->n_extra_keys;
	char *p = (char *)(copy + tb->num_tokens + 1);
	memcpy(p, tb->lora_name ? tb->lora_name : "", lora);
	p += lora;
	for (uint32_t i = 0; i < tb->n_extra_keys; i++) {
		const size_t n = strlen(tb->extra_keys[i]) + 1;
		memcpy(p, tb->extra_keys[i], n);
		p += n;
	}
	return copy;
}

bool kvbm__events_attach(kvbm_manager *mgr, uint32_t b, uint32_t *copy)
{
	struct kvbm__events *ev = mgr->events;

	if (!ev) {
		free(copy);
		return true;
	}
	return kvbm__block_table_put(&ev->pending, mgr->block_count, b, copy);
}

void kvbm__events_forget(kvbm_manager *mgr, uint32_t b)
{
	if (mgr->events)
		kvbm__block_table_drop(&mgr->events->pending, b);
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
		.medium = ev->medium,
	};

	mgr->cfg.event_sink(&batch, mgr->cfg.event_user);
	for (uint32_t i = 0; i < n; i++)
		free_tokens(ev->batch[i].tokens);
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
		if (ev->lost) { /* counts toward the batch limit like any event */
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

/* A restored block: still registered, whether in the policy or already
 * taken into the reclaim lists by the catalog writer (which starts before
 * the announcement, and whose reclaimed blocks stay matchable until an
 * allocation evicts them, with a REMOVED event). */
static bool restored(const kvbm_manager *mgr, uint32_t b)
{
	const uint8_t st = mgr->slots[b].state;

	return st == KVBM__SLOT_INACTIVE || st == KVBM__SLOT_RECLAIM;
}

/* The registered block holding a restored block's parent, or KVBM__NIL. */
static uint32_t restored_parent(const kvbm_manager *mgr, uint32_t b)
{
	const struct kvbm__slot *s = &mgr->slots[b];

	if (s->position == 0 || s->parent == 0)
		return KVBM__NIL;
	const uint32_t p = kvbm__registry_find(&mgr->registry, s->parent);
	return p != KVBM__NIL && restored(mgr, p) ? p : KVBM__NIL;
}

/*
 * STORED for every restored block, each parent before its children: KV
 * routers (Dynamo's radix tree, llm-d's index) attach a stored block under
 * its parent and may ignore one whose parent they have not seen. For each
 * block not yet announced, walk up to its highest unannounced ancestor,
 * then announce that path top-down, so a chain also comes out contiguous
 * (one vLLM BlockStored entry per chain). Every block is walked over once
 * before it is announced, so this is linear. A parent cycle (possible only
 * in a damaged catalog) ends the walk where it closes. Without memory for
 * the bookkeeping the blocks go out in id order: still exactly the
 * restored set.
 */
/* A restored block's STORED, with the tokens its row kept (catalog_tokens). */
static void announce_one(kvbm_manager *mgr, uint32_t b)
{
	uint32_t *copy = kvbm__restored_tokens_take(mgr, b);

	if (copy)
		kvbm__events_attach(mgr, b, copy); /* out of memory: by hash only */
	kvbm__events_push(mgr, KVBM_EVENT_STORED, b);
}

static void announce_restored(kvbm_manager *mgr)
{
	const uint32_t n = mgr->block_count;
	uint8_t *mark = calloc(n, 1); /* 1 = on the current path, 2 = announced */
	uint32_t *path = malloc((size_t)n * sizeof(*path));

	if (!mark || !path) {
		for (uint32_t b = 0; b < n; b++)
			if (restored(mgr, b))
				announce_one(mgr, b);
		goto out;
	}
	for (uint32_t b = 0; b < n; b++) {
		if (!restored(mgr, b) || mark[b])
			continue;
		uint32_t len = 0;
		for (uint32_t a = b; a != KVBM__NIL && !mark[a]; a = restored_parent(mgr, a)) {
			mark[a] = 1;
			path[len++] = a;
		}
		while (len > 0) {
			const uint32_t a = path[--len];
			mark[a] = 2;
			announce_one(mgr, a);
		}
	}
out:
	free(path);
	free(mark);
}

static void free_events(struct kvbm__events *ev)
{
	pthread_cond_destroy(&ev->cv);
	kvbm__block_table_free(&ev->pending, ev->mgr->block_count);
	free(ev->medium);
	free(ev->queue);
	free(ev->batch);
	free(ev);
}

kvbm_status kvbm__events_open(kvbm_manager *mgr)
{
	if (!mgr->cfg.event_sink)
		return KVBM_OK;
	const char *medium = mgr->cfg.event_medium ? mgr->cfg.event_medium
						   : kvbm_tier_medium(mgr->tier);
	if (!*medium || strlen(medium) > 64)
		return kvbm__fail(mgr, KVBM_E_INVAL, "event_medium must be a name of 1..64 characters");
	struct kvbm__events *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate the event queue");
	ev->mgr = mgr;
	ev->cap = QUEUE_MIN;
	while (ev->cap < mgr->cfg.event_batch_max && ev->cap < QUEUE_MAX)
		ev->cap *= 2;
	/* The announcement queues CLEARED plus one STORED per restored block
	 * before the dispatcher runs: the queue must be able to hold them. */
	ev->cap_max = QUEUE_MAX;
	while (ev->cap_max <= mgr->block_count)
		ev->cap_max *= 2;
	ev->medium = strdup(medium);
	mgr->cfg.event_medium = NULL; /* the caller's string may go away */
	ev->queue = malloc((size_t)ev->cap * sizeof(*ev->queue));
	ev->batch = malloc((size_t)mgr->cfg.event_batch_max * sizeof(*ev->batch));
	ev->incarnation = kvbm__catalog_incarnation(mgr->catalog);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ev->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (!ev->queue || !ev->batch || !ev->medium) {
		free_events(ev);
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate the event queue");
	}

	/* Every manager starts by saying CLEARED, so a router drops whatever
	 * it held for this worker (a previous incarnation's blocks), then
	 * learns exactly the blocks a catalog restore brought back. The
	 * catalog writer already runs and takes the lock too. */
	pthread_mutex_lock(&mgr->lock);
	mgr->events = ev;
	kvbm__events_push(mgr, KVBM_EVENT_CLEARED, 0);
	announce_restored(mgr);
	pthread_mutex_unlock(&mgr->lock);
	if (kvbm__events_pull(mgr)) /* drained by kvbm_events_take (events_pull.c) */
		return KVBM_OK;
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
	if (kvbm__events_pull(mgr)) { /* no dispatcher; undrained events go */
		for (uint32_t i = 0; i < ev->count; i++)
			free_tokens(ev->queue[(ev->head + i) & (ev->cap - 1)].tokens);
		for (uint32_t i = 0; i < ev->pulled; i++)
			free_tokens(ev->batch[i].tokens);
		mgr->events = NULL;
		free_events(ev);
		return;
	}
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

/* Tier names as kvbm (and Dynamo's KVBM) uses them, mapped to the medium
 * strings the routers parse: Dynamo's StorageTier::from_kv_medium accepts
 * GPU, CPU, DISK and EXTERNAL (and files anything else as GPU); llm-d takes
 * any string, lower-cased. */
const char *kvbm_tier_medium(const char *tier)
{
	static const char *const map[][2] = {
		{"G1", "GPU"}, {"G2", "CPU"}, {"G3", "DISK"}, {"G4", "EXTERNAL"},
	};

	if (!tier)
		return NULL;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(tier, map[i][0]) == 0)
			return map[i][1];
	return tier;
}

/* Pull mode (events_pull.c): move up to cap (at most event_batch_max)
 * queued events into out, a pending CLEARED first, as one batch. Their
 * token copies stay owned here, in `batch`, until the next drain or the
 * close, which is how long the caller may read them. Manager lock held. */
size_t kvbm__events_drain_locked(kvbm_manager *mgr, kvbm_event *out, size_t cap,
				 uint64_t *incarnation)
{
	struct kvbm__events *ev = mgr->events;
	size_t n = 0;

	for (uint32_t i = 0; i < ev->pulled; i++)
		free_tokens(ev->batch[i].tokens);
	ev->pulled = 0;
	if (cap > mgr->cfg.event_batch_max)
		cap = mgr->cfg.event_batch_max;
	if (ev->lost && cap > 0) {
		ev->batch[n++] = (kvbm_event){.kind = KVBM_EVENT_CLEARED};
		ev->lost = false;
	}
	for (; n < cap && ev->count > 0; n++) {
		ev->batch[n] = ev->queue[ev->head];
		ev->head = (ev->head + 1) & (ev->cap - 1);
		ev->count--;
	}
	memcpy(out, ev->batch, n * sizeof(*out));
	ev->pulled = (uint32_t)n;
	if (n > 0) {
		ev->seq++;
		mgr->m.event_batches++;
	}
	if (incarnation)
		*incarnation = ev->incarnation;
	return n;
}
