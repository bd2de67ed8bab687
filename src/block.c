/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Block guards and their transitions: reset -> mutable -> staged ->
 * registered, references, weak handles and the per-block flags. Each call
 * validates its handle against the slot's (or reference's) generation
 * before touching anything, so a stale handle gets KVBM_E_STALE and leaves
 * the manager exactly as it was.
 *
 * Immutable references live in a table of their own: every reference is a
 * distinct entry, so releasing one handle twice is caught even while other
 * references to the same block are alive.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "manager.h"

kvbm_status kvbm__refs_reserve(kvbm_manager *mgr, uint32_t n)
{
	uint32_t free_count = mgr->refs_cap - (uint32_t)mgr->m.inflight_immutable;

	if (free_count >= n)
		return KVBM_OK;
	uint64_t cap = mgr->refs_cap ? mgr->refs_cap : 64;
	while (cap - mgr->m.inflight_immutable < n)
		cap *= 2;
	if (cap > UINT32_MAX - 1)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "reference table full (%u live references)",
				  (uint32_t)mgr->m.inflight_immutable);
	struct kvbm__ref *refs = realloc(mgr->refs, cap * sizeof(*refs));
	if (!refs)
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot grow reference table to %llu entries",
				  (unsigned long long)cap);
	/* Chain the new entries in front of the free list, lowest index first. */
	for (uint64_t i = cap; i-- > mgr->refs_cap;) {
		refs[i].gen = 0;
		refs[i].block = mgr->refs_free;
		mgr->refs_free = (uint32_t)i;
	}
	mgr->refs = refs;
	mgr->refs_cap = (uint32_t)cap;
	return KVBM_OK;
}

kvbm_immutable kvbm__ref_new(kvbm_manager *mgr, uint32_t b)
{
	const uint32_t idx = mgr->refs_free;
	struct kvbm__ref *r = &mgr->refs[idx];

	assert(idx != KVBM__NIL && (r->gen & 1) == 0);
	mgr->refs_free = r->block;
	r->block = b;
	r->gen++;
	mgr->slots[b].refs++;
	mgr->m.inflight_immutable++;
	return (kvbm_immutable){.block = b, .ref = idx, .gen = r->gen};
}

bool kvbm__ref_live(const kvbm_manager *mgr, kvbm_immutable h)
{
	return h.ref < mgr->refs_cap && (h.gen & 1) && mgr->refs[h.ref].gen == h.gen &&
	       mgr->refs[h.ref].block == h.block;
}

/* Drop a live reference and apply what its block's last release means. */
void kvbm__ref_drop(kvbm_manager *mgr, kvbm_immutable h)
{
	if (kvbm__ref_put(mgr, h))
		kvbm__pool_make_inactive(mgr, h.block);
}

bool kvbm__ref_put(kvbm_manager *mgr, kvbm_immutable h)
{
	struct kvbm__ref *r = &mgr->refs[h.ref];
	const uint32_t b = r->block;
	struct kvbm__slot *s = &mgr->slots[b];

	r->gen++;
	r->block = mgr->refs_free;
	mgr->refs_free = h.ref;
	mgr->m.inflight_immutable--;
	assert(s->refs > 0);
	if (--s->refs > 0)
		return false;
	if (s->state == KVBM__SLOT_DUPLICATE) {
		const uint32_t p = s->primary;
		mgr->n_duplicate--;
		kvbm__pool_free_block(mgr, b);
		if (--mgr->slots[p].dups == 0 && mgr->slots[p].refs == 0)
			kvbm__pool_make_inactive(mgr, p);
		return false;
	}
	return s->dups == 0;
}

static kvbm_status stale(kvbm_manager *mgr, const char *what, uint32_t block)
{
	mgr->m.stale_handles++;
	return kvbm__fail(mgr, KVBM_E_STALE, "%s handle for block %u is stale", what, block);
}

static bool slot_handle_ok(const kvbm_manager *mgr, uint32_t block, uint32_t gen,
			   enum kvbm__slot_state state)
{
	return gen != 0 && block < mgr->block_count && mgr->slots[block].gen == gen &&
	       mgr->slots[block].state == state;
}

kvbm_status kvbm_mutable_release(kvbm_manager *mgr, kvbm_mutable block)
{
	KVBM_CHECK_ARG(mgr, mgr);
	if (block.gen == 0)
		return KVBM_OK;
	KVBM_LOCK(mgr);
	if (!slot_handle_ok(mgr, block.block, block.gen, KVBM__SLOT_MUTABLE)) {
		const kvbm_status st = stale(mgr, "mutable", block.block);
		KVBM_UNLOCK(mgr);
		return st;
	}
	mgr->n_mutable--;
	mgr->m.inflight_mutable--;
	kvbm__pool_free_block(mgr, block.block);
	KVBM_UNLOCK(mgr);
	return KVBM_OK;
}

/* A staged block leaves staging without its own STORED event and row: the
 * token copies kept for them go. */
static void drop_staged_tokens(kvbm_manager *mgr, uint32_t b)
{
	kvbm__events_forget(mgr, b);
	kvbm__row_tokens_drop(mgr, b);
}

/* Stage a mutable block. tokens (may be NULL) is a kvbm__events_token_copy
 * for the block's STORED event; stage owns it from here on. */
static kvbm_status stage(kvbm_manager *mgr, kvbm_mutable block, kvbm_hash seq_hash,
			 kvbm_hash parent, uint32_t position, uint32_t num_tokens,
			 uint32_t *tokens, uint32_t *row_copy, kvbm_complete *out)
{
	if (!mgr || !out) {
		free(tokens);
		free(row_copy);
	}
	KVBM_CHECK_ARG(mgr, mgr && out);
	if (num_tokens != mgr->block_size) {
		free(tokens);
		free(row_copy);
		return kvbm__fail(mgr, KVBM_E_SIZE, "num_tokens %u != block size %u", num_tokens,
				  mgr->block_size);
	}
	KVBM_LOCK(mgr);
	if (!slot_handle_ok(mgr, block.block, block.gen, KVBM__SLOT_MUTABLE)) {
		const kvbm_status st = stale(mgr, "mutable", block.block);
		KVBM_UNLOCK(mgr);
		free(tokens);
		free(row_copy);
		return st;
	}
	if (tokens && !kvbm__events_attach(mgr, block.block, tokens)) {
		KVBM_UNLOCK(mgr);
		free(row_copy);
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot keep the tokens of block %u",
				  block.block);
	}
	if (row_copy && !kvbm__row_tokens_set(mgr, block.block, row_copy)) {
		kvbm__events_forget(mgr, block.block);
		KVBM_UNLOCK(mgr);
		return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot keep the tokens of block %u",
				  block.block);
	}
	*out = kvbm__stage_locked(mgr, block.block, seq_hash, parent, position);
	KVBM_UNLOCK(mgr);
	return KVBM_OK;
}

bool kvbm__mutable_live(const kvbm_manager *mgr, kvbm_mutable h)
{
	return slot_handle_ok(mgr, h.block, h.gen, KVBM__SLOT_MUTABLE);
}

kvbm_complete kvbm__stage_locked(kvbm_manager *mgr, uint32_t b, kvbm_hash seq_hash,
				 kvbm_hash parent, uint32_t position)
{
	struct kvbm__slot *s = &mgr->slots[b];

	s->state = KVBM__SLOT_STAGED;
	s->gen = kvbm__next_gen(s->gen);
	s->hash = seq_hash;
	/* Registering will update the hierarchy's index: start the miss. */
	kvbm__registry_prefetch_presence(&mgr->registry, seq_hash);
	s->parent = position == 0 ? 0 : parent;
	s->position = position;
	mgr->n_mutable--;
	mgr->n_staged++;
	mgr->m.stagings++;
	if (mgr->evict->staged)
		mgr->evict->staged(mgr->evict_state, b, seq_hash);
	return (kvbm_complete){.block = b, .gen = s->gen};
}

kvbm_status kvbm_stage(kvbm_manager *mgr, kvbm_mutable block, kvbm_hash seq_hash,
		       uint32_t num_tokens, kvbm_complete *out)
{
	return stage(mgr, block, seq_hash, 0, KVBM_POSITION_UNKNOWN, num_tokens, NULL, NULL, out);
}

kvbm_status kvbm_stage_lineage(kvbm_manager *mgr, kvbm_mutable block, kvbm_hash seq_hash,
			       kvbm_hash parent_hash, uint32_t position, uint32_t num_tokens,
			       kvbm_complete *out)
{
	KVBM_CHECK_ARG(mgr, mgr && position != KVBM_POSITION_UNKNOWN);
	return stage(mgr, block, seq_hash, parent_hash, position, num_tokens, NULL, NULL, out);
}

kvbm_status kvbm_stage_tokens(kvbm_manager *mgr, kvbm_mutable block, const kvbm_token_block *tb,
			      kvbm_complete *out)
{
	KVBM_CHECK_ARG(mgr, mgr && tb && tb->tokens && tb->position != KVBM_POSITION_UNKNOWN);
	KVBM_CHECK_ARG(mgr, !tb->lora_name || strlen(tb->lora_name) <= 256);
	KVBM_CHECK_ARG(mgr, tb->n_extra_keys <= 16 && (tb->extra_keys || !tb->n_extra_keys));
	for (uint32_t i = 0; i < tb->n_extra_keys; i++)
		KVBM_CHECK_ARG(mgr, tb->extra_keys[i] && strlen(tb->extra_keys[i]) <= 256);
	if (tb->num_tokens != mgr->block_size)
		return kvbm__fail(mgr, KVBM_E_SIZE, "num_tokens %u != block size %u",
				  tb->num_tokens, mgr->block_size);
	/* The hash kvbm_hash_sequence gives this block of the sequence. */
	const bool root = tb->position == 0;
	const kvbm_hash hash = kvbm_hash_chain(root ? tb->salt_hash : tb->parent_hash,
					       kvbm_hash_block(tb->tokens, tb->num_tokens), root);
	uint32_t *copy = NULL, *row_copy = NULL;
	if (mgr->cfg.event_sink) { /* copied outside the lock */
		copy = kvbm__events_token_copy(tb);
		if (!copy)
			return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot copy %u tokens",
					  tb->num_tokens);
	}
	if (mgr->cfg.catalog_tokens && mgr->journal_on) {
		row_copy = kvbm__events_token_copy(tb);
		if (!row_copy) {
			free(copy);
			return kvbm__fail(mgr, KVBM_E_NOMEM, "cannot copy %u tokens",
					  tb->num_tokens);
		}
	}
	return stage(mgr, block, hash, tb->parent_hash, tb->position, tb->num_tokens, copy,
		     row_copy, out);
}

kvbm_status kvbm_unstage(kvbm_manager *mgr, kvbm_complete block, kvbm_mutable *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	KVBM_LOCK(mgr);
	if (!slot_handle_ok(mgr, block.block, block.gen, KVBM__SLOT_STAGED)) {
		const kvbm_status st = stale(mgr, "complete", block.block);
		KVBM_UNLOCK(mgr);
		return st;
	}
	struct kvbm__slot *s = &mgr->slots[block.block];
	drop_staged_tokens(mgr, block.block);
	s->state = KVBM__SLOT_MUTABLE;
	s->gen = kvbm__next_gen(s->gen);
	s->hash = 0;
	s->parent = 0;
	s->position = KVBM_POSITION_UNKNOWN;
	s->reset_on_release = mgr->reset_on_release;
	mgr->n_staged--;
	mgr->n_mutable++;
	kvbm__pool_policy_forget(mgr, block.block);
	*out = (kvbm_mutable){.block = block.block, .gen = s->gen};
	KVBM_UNLOCK(mgr);
	return KVBM_OK;
}

kvbm_status kvbm_complete_release(kvbm_manager *mgr, kvbm_complete block)
{
	KVBM_CHECK_ARG(mgr, mgr);
	if (block.gen == 0)
		return KVBM_OK;
	KVBM_LOCK(mgr);
	if (!slot_handle_ok(mgr, block.block, block.gen, KVBM__SLOT_STAGED)) {
		const kvbm_status st = stale(mgr, "complete", block.block);
		KVBM_UNLOCK(mgr);
		return st;
	}
	mgr->n_staged--;
	mgr->m.inflight_mutable--;
	drop_staged_tokens(mgr, block.block);
	kvbm__pool_free_block(mgr, block.block);
	KVBM_UNLOCK(mgr);
	return KVBM_OK;
}

/* Register one staged block whose handle was validated; refs reserved. */
static kvbm_immutable register_locked(kvbm_manager *mgr, uint32_t b)
{
	struct kvbm__slot *s = &mgr->slots[b];
	const uint32_t existing = kvbm__registry_find(&mgr->registry, s->hash);

	mgr->n_staged--;
	mgr->m.inflight_mutable--;
	s->gen = kvbm__next_gen(s->gen);
	mgr->epoch_next = kvbm__next_gen(mgr->epoch_next);
	if (existing == KVBM__NIL) {
		s->state = KVBM__SLOT_PRIMARY;
		s->epoch = mgr->epoch_next;
		s->first_tick = 0;
		s->access_count = 0;
		kvbm__registry_insert(&mgr->registry, s->hash, b);
		mgr->n_primary++;
		mgr->m.registrations++;
		if (mgr->events)
			kvbm__events_push(mgr, KVBM_EVENT_STORED, b);
		kvbm__pool_touch(mgr, b);
		return kvbm__ref_new(mgr, b);
	}
	drop_staged_tokens(mgr, b); /* no STORED, no row: the hash is known already */
	kvbm__pool_policy_forget(mgr, b); /* a duplicate is never a victim */
	kvbm__pool_resurrect(mgr, existing);
	kvbm__pool_touch(mgr, existing);
	if (mgr->cfg.dup_policy == KVBM_DUP_REJECT) {
		mgr->m.registrations++;
		mgr->m.dedups++;
		kvbm__pool_free_block(mgr, b);
		return kvbm__ref_new(mgr, existing);
	}
	s->state = KVBM__SLOT_DUPLICATE;
	s->epoch = mgr->epoch_next;
	s->primary = existing;
	mgr->slots[existing].dups++;
	mgr->n_duplicate++;
	mgr->m.registrations++;
	mgr->m.duplicates++;
	return kvbm__ref_new(mgr, b);
}

kvbm_status kvbm_register_batch(kvbm_manager *mgr, const kvbm_complete *blocks, uint32_t n,
				kvbm_immutable *out)
{
	KVBM_CHECK_ARG(mgr, mgr && blocks && out && n > 0);
	KVBM_LOCK(mgr);
	kvbm_status st = KVBM_OK;
	uint32_t i;
	/* Validate everything first (all or nothing). A block named twice in
	 * the batch is caught by parking each validated slot in a state no
	 * complete handle matches, then restoring. (Flipping a generation bit
	 * instead let a forged twin, gen ^ flip, pass the second check.) */
	for (i = 0; i < n; i++) {
		if (!slot_handle_ok(mgr, blocks[i].block, blocks[i].gen, KVBM__SLOT_STAGED)) {
			st = stale(mgr, "complete", blocks[i].block);
			break;
		}
		mgr->slots[blocks[i].block].state = KVBM__SLOT_MUTABLE;
		kvbm__registry_prefetch_presence(&mgr->registry, mgr->slots[blocks[i].block].hash);
	}
	for (uint32_t j = 0; j < i; j++)
		mgr->slots[blocks[j].block].state = KVBM__SLOT_STAGED;
	if (st == KVBM_OK)
		st = kvbm__refs_reserve(mgr, n);
	if (st == KVBM_OK)
		for (i = 0; i < n; i++)
			out[i] = register_locked(mgr, blocks[i].block);
	KVBM_UNLOCK(mgr);
	return st;
}

kvbm_status kvbm_register(kvbm_manager *mgr, kvbm_complete block, kvbm_immutable *out)
{
	return kvbm_register_batch(mgr, &block, 1, out);
}

kvbm_status kvbm_immutable_retain(kvbm_manager *mgr, kvbm_immutable h, kvbm_immutable *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	KVBM_LOCK(mgr);
	kvbm_status st = KVBM_OK;
	if (!kvbm__ref_live(mgr, h))
		st = stale(mgr, "immutable", h.block);
	else if ((st = kvbm__refs_reserve(mgr, 1)) == KVBM_OK)
		*out = kvbm__ref_new(mgr, h.block);
	KVBM_UNLOCK(mgr);
	return st;
}

kvbm_status kvbm_immutable_release_batch(kvbm_manager *mgr, const kvbm_immutable *hs, uint32_t n)
{
	KVBM_CHECK_ARG(mgr, mgr && (hs || n == 0));
	kvbm_status st = KVBM_OK;
	KVBM_LOCK(mgr);
	for (uint32_t i = 0; i < n; i++) {
		if (hs[i].gen == 0)
			continue;
		if (!kvbm__ref_live(mgr, hs[i]))
			st = stale(mgr, "immutable", hs[i].block);
		else
			kvbm__ref_drop(mgr, hs[i]);
	}
	KVBM_UNLOCK(mgr);
	return st;
}

kvbm_status kvbm_immutable_release(kvbm_manager *mgr, kvbm_immutable h)
{
	return kvbm_immutable_release_batch(mgr, &h, 1);
}

kvbm_status kvbm_downgrade(kvbm_manager *mgr, kvbm_immutable h, kvbm_weak *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	KVBM_LOCK(mgr);
	kvbm_status st = KVBM_OK;
	if (!kvbm__ref_live(mgr, h)) {
		st = stale(mgr, "immutable", h.block);
	} else {
		const struct kvbm__slot *s = &mgr->slots[h.block];
		*out = (kvbm_weak){.block = h.block, .epoch = s->epoch, .hash = s->hash};
	}
	KVBM_UNLOCK(mgr);
	return st;
}

kvbm_status kvbm_weak_upgrade(kvbm_manager *mgr, kvbm_weak w, kvbm_immutable *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out && w.epoch != 0);
	KVBM_LOCK(mgr);
	kvbm_status st = kvbm__refs_reserve(mgr, 1);
	if (st != KVBM_OK)
		goto out;
	uint32_t b = KVBM__NIL;
	/* The original block, if it still holds the registration we saw. */
	if (w.block < mgr->block_count && mgr->slots[w.block].epoch == w.epoch &&
	    mgr->slots[w.block].hash == w.hash)
		b = w.block;
	else
		b = kvbm__registry_find(&mgr->registry, w.hash);
	if (b == KVBM__NIL) {
		st = kvbm__fail(mgr, KVBM_E_NOTFOUND, "hash %016llx is no longer registered",
				(unsigned long long)w.hash);
		goto out;
	}
	kvbm__pool_resurrect(mgr, b);
	*out = kvbm__ref_new(mgr, b);
out:
	KVBM_UNLOCK(mgr);
	return st;
}

kvbm_status kvbm_immutable_set_reset_on_release(kvbm_manager *mgr, kvbm_immutable h, bool reset)
{
	KVBM_CHECK_ARG(mgr, mgr);
	KVBM_LOCK(mgr);
	kvbm_status st = KVBM_OK;
	if (!kvbm__ref_live(mgr, h))
		st = stale(mgr, "immutable", h.block);
	else
		mgr->slots[h.block].reset_on_release = reset;
	KVBM_UNLOCK(mgr);
	return st;
}

kvbm_status kvbm_immutable_set_priority(kvbm_manager *mgr, kvbm_immutable h, uint32_t priority,
					uint32_t retention)
{
	KVBM_CHECK_ARG(mgr, mgr);
	if (priority > 100)
		return kvbm__fail(mgr, KVBM_E_INVAL, "priority %u is above 100", priority);
	KVBM_LOCK(mgr);
	kvbm_status st = KVBM_OK;
	if (!kvbm__ref_live(mgr, h)) {
		st = stale(mgr, "immutable", h.block);
	} else {
		mgr->slots[h.block].priority = priority;
		mgr->slots[h.block].retention = retention;
		kvbm__journal_mark(mgr, h.block);
	}
	KVBM_UNLOCK(mgr);
	return st;
}

kvbm_status kvbm_immutable_hash(kvbm_manager *mgr, kvbm_immutable h, kvbm_hash *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	KVBM_LOCK(mgr);
	kvbm_status st = KVBM_OK;
	if (!kvbm__ref_live(mgr, h))
		st = stale(mgr, "immutable", h.block);
	else
		*out = mgr->slots[h.block].hash;
	KVBM_UNLOCK(mgr);
	return st;
}

kvbm_status kvbm_immutable_ref_count(kvbm_manager *mgr, kvbm_immutable h, uint32_t *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	KVBM_LOCK(mgr);
	kvbm_status st = KVBM_OK;
	if (!kvbm__ref_live(mgr, h))
		st = stale(mgr, "immutable", h.block);
	else
		*out = mgr->slots[h.block].refs;
	KVBM_UNLOCK(mgr);
	return st;
}

static kvbm_block_state public_state(uint8_t state)
{
	switch (state) {
	case KVBM__SLOT_MUTABLE: return KVBM_BLOCK_MUTABLE;
	case KVBM__SLOT_STAGED: return KVBM_BLOCK_STAGED;
	case KVBM__SLOT_PRIMARY: return KVBM_BLOCK_REGISTERED;
	case KVBM__SLOT_DUPLICATE: return KVBM_BLOCK_DUPLICATE;
	case KVBM__SLOT_INACTIVE:
	case KVBM__SLOT_RECLAIM: return KVBM_BLOCK_INACTIVE;
	default: return KVBM_BLOCK_RESET;
	}
}

kvbm_status kvbm_block_info_read(kvbm_manager *mgr, uint32_t block, kvbm_block_info *out)
{
	KVBM_CHECK_ARG(mgr, mgr && out);
	if (block >= mgr->block_count)
		return kvbm__fail(mgr, KVBM_E_INVAL, "block %u out of range (block_count %u)",
				  block, mgr->block_count);
	KVBM_LOCK(mgr);
	const struct kvbm__slot *s = &mgr->slots[block];
	out->block = block;
	out->state = public_state(s->state);
	out->ref_count = s->refs;
	out->position = s->position;
	out->hash = s->hash;
	out->parent_hash = s->parent;
	out->reset_on_release = s->reset_on_release;
	KVBM_UNLOCK(mgr);
	return KVBM_OK;
}
