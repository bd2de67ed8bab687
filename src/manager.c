/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Manager lifecycle: configuration defaults and validation, building the
 * pools, attaching the catalog and the event dispatcher, and tearing it
 * all down. kvbm_close releases every block still held (registered ones
 * go inactive) before the catalog's final commit, so a clean shutdown
 * persists everything a restart can reuse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "manager.h"
#include "table_alloc.h"

void kvbm_config_init(kvbm_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->block_size = 16;
	cfg->tier = "G1";
	cfg->dup_policy = KVBM_DUP_ALLOW;
	cfg->evict_policy = KVBM_EVICT_ADAPTIVE;
	cfg->multi_lru_thresholds[0] = 3;
	cfg->multi_lru_thresholds[1] = 8;
	cfg->multi_lru_thresholds[2] = 15;
	cfg->catalog_sync = KVBM_SYNC_NORMAL;
	cfg->catalog_batch = 8192;
	cfg->catalog_interval_ms = 50;
	cfg->catalog_wait_ms = 5000;
	cfg->catalog_max_failures = 8;
	cfg->catalog_busy_ms = 5000;
	cfg->event_batch_max = 1024;
	cfg->event_window_ms = 10;
}

static kvbm_status check_config(const kvbm_config *c, char *msg, size_t len)
{
#define BAD(...) (snprintf(msg, len, __VA_ARGS__), KVBM_E_INVAL)
	if (c->block_count == 0 || c->block_count > KVBM_MAX_BLOCKS)
		return BAD("block_count %u is outside 1..%u", c->block_count, KVBM_MAX_BLOCKS);
	if (c->block_size == 0 || c->block_size > KVBM_MAX_BLOCK_SIZE ||
	    (c->block_size & (c->block_size - 1)) != 0)
		return BAD("block_size %u is not a power of two in 1..%u", c->block_size,
			   KVBM_MAX_BLOCK_SIZE);
	if ((unsigned)c->dup_policy > KVBM_DUP_REJECT)
		return BAD("dup_policy %d is unknown", (int)c->dup_policy);
	if (!kvbm__evict_ops_for(c->evict_policy))
		return BAD("evict_policy %d is unknown", (int)c->evict_policy);
	if (!c->tier || !*c->tier || strlen(c->tier) > 64)
		return BAD("tier must be a name of 1..64 characters");
	const uint8_t *t = c->multi_lru_thresholds;
	if (!(t[0] >= 1 && t[0] < t[1] && t[1] < t[2] && t[2] <= 15))
		return BAD("multi_lru_thresholds %u,%u,%u must satisfy 1 <= t1 < t2 < t3 <= 15",
			   t[0], t[1], t[2]);
	if ((unsigned)c->catalog_sync > KVBM_SYNC_OFF)
		return BAD("catalog_sync %d is unknown", (int)c->catalog_sync);
	/* SQLite would open "" as a private temporary database: a catalog
	 * that silently persists nothing. */
	if (c->catalog_path && c->catalog_path[0] == '\0')
		return BAD("catalog_path is empty: give a file name, or NULL for no catalog");
	if (c->catalog_path && (c->catalog_batch == 0 || c->catalog_interval_ms == 0))
		return BAD("catalog_batch and catalog_interval_ms must be positive");
	if (c->event_sink && (c->event_batch_max == 0 || c->event_window_ms == 0))
		return BAD("event_batch_max and event_window_ms must be positive");
	return KVBM_OK;
#undef BAD
}

static char *dup_or_null(const char *s, bool *failed)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*failed = true;
	return d;
}

static void free_manager(kvbm_manager *mgr)
{
	if (mgr->evict && mgr->evict_state)
		mgr->evict->destroy(mgr->evict_state);
	kvbm__registry_free(&mgr->registry);
	kvbm__table_free(mgr->slots, (size_t)mgr->block_count * sizeof(*mgr->slots));
	free(mgr->refs);
	free(mgr->dirty);
	kvbm__row_tokens_free(mgr);
	free(mgr->tier);
	free(mgr->catalog_path);
	free(mgr->model_fingerprint);
	pthread_cond_destroy(&mgr->journal_cv);
	pthread_mutex_destroy(&mgr->lock);
	pthread_mutex_destroy(&mgr->err_lock);
	free(mgr);
}

/* The configuration part of a manager: cheap. */
static kvbm_status build_config(kvbm_manager *mgr, const kvbm_config *cfg)
{
	bool failed = false;

	mgr->cfg = *cfg;
	mgr->tier = dup_or_null(cfg->tier, &failed);
	mgr->catalog_path = dup_or_null(cfg->catalog_path, &failed);
	mgr->model_fingerprint = dup_or_null(cfg->model_fingerprint, &failed);
	mgr->cfg.tier = mgr->tier;
	mgr->cfg.catalog_path = mgr->catalog_path;
	mgr->cfg.model_fingerprint = mgr->model_fingerprint;
	mgr->block_count = cfg->block_count;
	mgr->block_size = cfg->block_size;
	mgr->reset_on_release = cfg->reset_on_release;
	mgr->journal_on = cfg->catalog_path != NULL;
	if (failed)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot copy the configuration's strings");
	return KVBM_OK;
}

/* The per-block tables, allocated but (the slot table) not yet written:
 * the slot table's first touch is most of an open's cost for a large
 * manager, and with a catalog it is the restore's readers that write it. */
static kvbm_status build_pools(kvbm_manager *mgr)
{
	const kvbm_config *cfg = &mgr->cfg;
	const uint32_t n = mgr->block_count;

	mgr->refs_free = KVBM__NIL;
	mgr->reset.head = mgr->reset.tail = KVBM__NIL;
	mgr->reset_unsafe = mgr->reclaim_pending = mgr->reserve = mgr->reset;
	mgr->freeing = mgr->reset_freeing = mgr->reset;
	mgr->slots = kvbm__table_alloc((size_t)n * sizeof(*mgr->slots));
	if (!mgr->slots)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate %u blocks", n);
	if (kvbm__registry_init(&mgr->registry, n) != KVBM_OK)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate the registry for %u blocks", n);
	mgr->evict = kvbm__evict_ops_for(cfg->evict_policy);
	const struct kvbm__evict_params params = {
		.block_count = n,
		.thresholds = {cfg->multi_lru_thresholds[0], cfg->multi_lru_thresholds[1],
			       cfg->multi_lru_thresholds[2]},
	};
	if (mgr->evict->create(&params, &mgr->evict_state) != KVBM_OK) {
		mgr->evict_state = NULL;
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate the %s policy",
				  mgr->evict->name);
	}
	if (mgr->journal_on) {
		mgr->dirty = malloc(n * sizeof(*mgr->dirty));
		if (!mgr->dirty)
			return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot allocate the catalog queue");
	}
	return KVBM_OK;
}

/* The first touch of the slot table (fresh pages: its page faults are the
 * cost). No allocation, no failure. */
static void init_slots(kvbm_manager *mgr)
{
	for (uint32_t b = 0; b < mgr->block_count; b++) {
		mgr->slots[b].position = KVBM_POSITION_UNKNOWN;
		mgr->slots[b].priority = KVBM_PRIORITY_DEFAULT;
		kvbm__list_push_tail(mgr, KVBM__IN_RESET, b);
	}
}

/* With a catalog: the pools, then the catalog's read, which writes the
 * slot table (restored blocks and free ones alike) on the threads that
 * read the rows, so its first touch is shared by two cores instead of
 * preceding the read; then the restore into the registry and policy. */
static kvbm_status build_with_catalog(kvbm_manager *mgr)
{
	kvbm_status st = build_pools(mgr);

	if (st != KVBM_OK)
		return st;
	st = kvbm__catalog_prepare(mgr);
	if (st == KVBM_OK)
		st = kvbm__catalog_finish(mgr);
	return st;
}

kvbm_status kvbm_open_ex(const kvbm_config *cfg, kvbm_manager **out, char *errbuf, size_t errlen)
{
	char msg[256] = "";
	kvbm_status st;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (out)
		*out = NULL; /* on every error, as the header says */
	if (!out || !cfg) {
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "invalid argument: %s", cfg ? "out" : "cfg");
		return KVBM_E_INVAL;
	}
	*out = NULL;
	st = check_config(cfg, msg, sizeof(msg));
	if (st != KVBM_OK) {
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "%s", msg);
		return st;
	}
	kvbm_manager *mgr = calloc(1, sizeof(*mgr));
	if (!mgr) {
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "cannot allocate the manager");
		return KVBM_E_NOMEM;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&mgr->journal_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&mgr->lock, NULL);
	pthread_mutex_init(&mgr->err_lock, NULL);

	st = build_config(mgr, cfg);
	if (st == KVBM_OK)
		st = mgr->journal_on ? build_with_catalog(mgr) : build_pools(mgr);
	if (st == KVBM_OK && !mgr->journal_on)
		init_slots(mgr);
	if (st == KVBM_OK) {
		st = kvbm__events_open(mgr);
		if (st != KVBM_OK)
			kvbm__catalog_close(mgr, true);
	}
	/* Restored tokens serve the restart announcement only. */
	pthread_mutex_lock(&mgr->lock);
	kvbm__restored_tokens_free(mgr);
	pthread_mutex_unlock(&mgr->lock);
	if (st != KVBM_OK) {
		if (errbuf && errlen)
			kvbm_last_error(mgr, NULL, errbuf, errlen);
		free_manager(mgr);
		return st;
	}
	*out = mgr;
	return KVBM_OK;
}

kvbm_status kvbm_open(const kvbm_config *cfg, kvbm_manager **out)
{
	return kvbm_open_ex(cfg, out, NULL, 0);
}

/* Treat every held block as released: registered ones become inactive. */
static void release_everything(kvbm_manager *mgr)
{
	pthread_mutex_lock(&mgr->lock);
	for (uint32_t b = 0; b < mgr->block_count; b++) {
		struct kvbm__slot *s = &mgr->slots[b];
		if (s->state == KVBM__SLOT_MUTABLE || s->state == KVBM__SLOT_STAGED) {
			if (s->state == KVBM__SLOT_MUTABLE)
				mgr->n_mutable--;
			else
				mgr->n_staged--;
			kvbm__pool_free_block(mgr, b);
		} else if (s->state == KVBM__SLOT_DUPLICATE) {
			mgr->n_duplicate--;
			kvbm__pool_free_block(mgr, b);
		}
	}
	kvbm__journal_unreclaim_locked(mgr);
	for (uint32_t b = 0; b < mgr->block_count; b++) {
		struct kvbm__slot *s = &mgr->slots[b];
		if (s->state == KVBM__SLOT_PRIMARY) {
			s->refs = s->dups = 0;
			kvbm__pool_make_inactive(mgr, b);
		}
	}
	/* Every outstanding reference handle is now stale. */
	for (uint32_t i = 0; i < mgr->refs_cap; i++)
		if (mgr->refs[i].gen & 1)
			mgr->refs[i].gen++;
	mgr->m.inflight_immutable = 0;
	mgr->m.inflight_mutable = 0;
	pthread_mutex_unlock(&mgr->lock);
}

kvbm_status kvbm_close_ex(kvbm_manager *mgr, unsigned flags)
{
	if (!mgr)
		return KVBM_OK;
	const bool discard = flags & KVBM_CLOSE_DISCARD;
	if (!discard)
		release_everything(mgr);
	kvbm__events_close(mgr);
	const kvbm_status st = kvbm__catalog_close(mgr, discard);
	free_manager(mgr);
	return st;
}

kvbm_status kvbm_close(kvbm_manager *mgr)
{
	return kvbm_close_ex(mgr, 0);
}

kvbm_status kvbm_flush(kvbm_manager *mgr)
{
	KVBM_CHECK_ARG(mgr, mgr);
	if (!mgr->catalog_path)
		return KVBM_OK;
	return kvbm__catalog_flush(mgr);
}

uint32_t kvbm_total_blocks(const kvbm_manager *mgr)
{
	return mgr ? mgr->block_count : 0;
}

uint32_t kvbm_block_size(const kvbm_manager *mgr)
{
	return mgr ? mgr->block_size : 0;
}

static void counts_locked(const kvbm_manager *mgr, kvbm_pool_counts *c)
{
	c->total = mgr->block_count;
	c->reset = kvbm__reset_pool(mgr);
	c->inactive = kvbm__inactive_pool(mgr);
	c->mutable_ = mgr->n_mutable;
	c->staged = mgr->n_staged;
	c->registered = mgr->n_primary;
	c->duplicate = mgr->n_duplicate;
	c->registry = mgr->registry.count;
}

uint32_t kvbm_available_blocks(kvbm_manager *mgr)
{
	kvbm_pool_counts c;

	if (!mgr)
		return 0;
	pthread_mutex_lock(&mgr->lock);
	counts_locked(mgr, &c);
	pthread_mutex_unlock(&mgr->lock);
	return c.reset + c.inactive;
}

kvbm_status kvbm_pool_counts_read(kvbm_manager *mgr, kvbm_pool_counts *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	pthread_mutex_lock(&mgr->lock);
	counts_locked(mgr, out);
	pthread_mutex_unlock(&mgr->lock);
	return KVBM_OK;
}
