/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cfg.catalog_tokens: the tokens, LoRA name and extra keys a block was
 * staged with survive a crash in its catalog row, and the restart
 * announcement of the restored block carries them, exactly as the first
 * STORED did. Without the option a restored block is announced by hash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

#define BS 4u
#define MAXEV 64

struct seen {
	uint32_t n;
	kvbm_hash hash[MAXEV];
	bool has_tokens[MAXEV];
	uint32_t tokens[MAXEV][BS];
	char lora[MAXEV][32];
	char extra[MAXEV][32];
};

static void sink(const kvbm_event_batch *batch, void *user)
{
	struct seen *s = user;

	for (size_t i = 0; i < batch->count; i++) {
		const kvbm_event *e = &batch->events[i];
		if (e->kind != KVBM_EVENT_STORED || s->n == MAXEV)
			continue;
		const uint32_t k = s->n++;
		s->hash[k] = e->hash;
		s->has_tokens[k] = e->tokens != NULL;
		if (e->tokens)
			memcpy(s->tokens[k], e->tokens, sizeof(s->tokens[k]));
		snprintf(s->lora[k], sizeof(s->lora[k]), "%s", e->lora_name ? e->lora_name : "");
		snprintf(s->extra[k], sizeof(s->extra[k]), "%s",
			 e->n_extra_keys ? e->extra_keys : "");
	}
}

static kvbm_config config(const char *path, struct seen *s, bool keep)
{
	kvbm_config cfg;

	kvbm_config_init(&cfg);
	cfg.block_count = 16;
	cfg.block_size = BS;
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	cfg.catalog_tokens = keep;
	cfg.event_sink = sink;
	cfg.event_user = s;
	return cfg;
}

/* Three blocks of one sequence, the last with a LoRA name and a key. */
static void store(kvbm_manager *mgr, kvbm_hash *hashes)
{
	static const char *const keys[] = {"mm-7f3a"};
	kvbm_mutable m[3];
	kvbm_complete c[3];
	kvbm_immutable r[3];
	uint32_t toks[3][BS];
	kvbm_hash parent = 0;

	assert_int_equal(kvbm_allocate(mgr, 3, m), KVBM_OK);
	for (uint32_t i = 0; i < 3; i++) {
		for (uint32_t t = 0; t < BS; t++)
			toks[i][t] = 1000 * (i + 1) + t;
		const kvbm_token_block tb = {
			.tokens = toks[i], .num_tokens = BS, .position = i, .parent_hash = parent,
			.lora_name = i == 2 ? "adapter-a" : NULL,
			.extra_keys = i == 2 ? keys : NULL, .n_extra_keys = i == 2 ? 1 : 0,
		};
		assert_int_equal(kvbm_stage_tokens(mgr, m[i], &tb, &c[i]), KVBM_OK);
		kvbm_block_info info;
		assert_int_equal(kvbm_block_info_read(mgr, m[i].block, &info), KVBM_OK);
		parent = hashes[i] = info.hash;
	}
	assert_int_equal(kvbm_register_batch(mgr, c, 3, r), KVBM_OK);
	assert_int_equal(kvbm_immutable_release_batch(mgr, r, 3), KVBM_OK);
}

static void restart(bool keep, struct seen *first, struct seen *again, kvbm_hash *hashes)
{
	char *dir = kvbm_test_tmpdir("ctokens");
	char path[512];

	snprintf(path, sizeof(path), "%s/c.db", dir);
	kvbm_config cfg = config(path, first, keep);
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	store(mgr, hashes);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	assert_int_equal(kvbm_close_ex(mgr, KVBM_CLOSE_DISCARD), KVBM_OK); /* a crash */
	cfg = config(path, again, keep);
	mgr = kvbm_test_open_cfg(&cfg);
	assert_int_equal(kvbm_test_counts(mgr).inactive, 3);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	kvbm_test_rmdir(dir);
	free(dir);
}

static void catalog_tokens__restart_announces_restored_blocks_with_their_tokens(void **state)
{
	(void)state;
	struct seen first = {0}, again = {0};
	kvbm_hash hashes[3];

	restart(true, &first, &again, hashes);
	assert_int_equal(first.n, 3);
	assert_int_equal(again.n, 3);
	for (uint32_t i = 0; i < 3; i++) {
		/* Parents first, so the restart order is the staging order. */
		assert_int_equal(again.hash[i], hashes[i]);
		assert_true(again.has_tokens[i]);
		assert_memory_equal(again.tokens[i], first.tokens[i], sizeof(first.tokens[i]));
		assert_string_equal(again.lora[i], first.lora[i]);
		assert_string_equal(again.extra[i], first.extra[i]);
	}
	assert_string_equal(again.lora[2], "adapter-a");
	assert_string_equal(again.extra[2], "mm-7f3a");
}

static void catalog_tokens__off_restores_by_hash_only(void **state)
{
	(void)state;
	struct seen first = {0}, again = {0};
	kvbm_hash hashes[3];

	restart(false, &first, &again, hashes);
	assert_int_equal(again.n, 3);
	for (uint32_t i = 0; i < 3; i++) {
		assert_true(first.has_tokens[i]);
		assert_false(again.has_tokens[i]);
	}
}

/* Restored blocks as the restart announced them. */
struct announced {
	uint32_t n, without_tokens, wrong_tokens;
	const kvbm_hash *hash; /* what was staged: hash[i] with tokens i * BS + 1 .. */
	uint32_t n_staged;
};

static void count_announced(const kvbm_event_batch *batch, void *user)
{
	struct announced *a = user;

	for (size_t i = 0; i < batch->count; i++) {
		const kvbm_event *e = &batch->events[i];
		if (e->kind != KVBM_EVENT_STORED)
			continue;
		a->n++;
		if (!e->tokens) {
			a->without_tokens++;
			continue;
		}
		uint32_t k = 0;
		while (k < a->n_staged && a->hash[k] != e->hash)
			k++;
		for (uint32_t t = 0; t < BS; t++)
			if (k == a->n_staged || e->tokens[t] != k * BS + t + 1) {
				a->wrong_tokens++;
				break;
			}
	}
}

/* n blocks, each staged with tokens of its own, registered and released. */
static void store_many(kvbm_manager *mgr, kvbm_hash *hashes, uint32_t from, uint32_t n)
{
	kvbm_mutable m[8];
	kvbm_complete c[8];
	kvbm_immutable r[8];

	for (uint32_t done = 0; done < n; done += 8) {
		assert_int_equal(kvbm_allocate(mgr, 8, m), KVBM_OK);
		for (uint32_t i = 0; i < 8; i++) {
			const uint32_t k = from + done + i;
			uint32_t toks[BS];
			for (uint32_t t = 0; t < BS; t++)
				toks[t] = k * BS + t + 1;
			const kvbm_token_block tb = {.tokens = toks, .num_tokens = BS,
						     .position = 0};
			assert_int_equal(kvbm_stage_tokens(mgr, m[i], &tb, &c[i]), KVBM_OK);
			kvbm_block_info info;
			assert_int_equal(kvbm_block_info_read(mgr, m[i].block, &info), KVBM_OK);
			hashes[k] = info.hash;
		}
		assert_int_equal(kvbm_register_batch(mgr, c, 8, r), KVBM_OK);
		assert_int_equal(kvbm_immutable_release_batch(mgr, r, 8), KVBM_OK);
	}
}

/* An allocation that waits for the writer gets the rows written so far
 * committed and the rest of the batch given back (src/catalog/sql.c).
 * What was given back, token copies included, still reaches the file. A
 * half of the cache committed, the other half's rows (with tokens) in one
 * batch, then allocations that evict the committed half, so that they
 * outrun the reserve and wait for reclaims while the writer writes that
 * batch; after a clean close every block comes back announced with its
 * own tokens. Whether an allocation waits inside the batch is up to the
 * two threads' timing; the outcome must not be. */
static void catalog_tokens__rows_given_back_to_an_allocation_keep_their_tokens(void **state)
{
	(void)state;
	enum { BLOCKS = 8192, HALF = BLOCKS / 2, MORE = 2048 };
	char *dir = kvbm_test_tmpdir("ctokens");
	char path[512];
	kvbm_hash *hashes = calloc(BLOCKS + MORE, sizeof(*hashes));
	struct announced a = {.hash = hashes, .n_staged = BLOCKS + MORE};

	assert_non_null(hashes);
	snprintf(path, sizeof(path), "%s/c.db", dir);
	kvbm_config cfg;
	kvbm_config_init(&cfg);
	cfg.block_count = BLOCKS;
	cfg.block_size = BS;
	cfg.catalog_path = path;
	cfg.catalog_sync = KVBM_SYNC_OFF;
	cfg.catalog_tokens = true;
	cfg.catalog_batch = HALF;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	store_many(mgr, hashes, 0, HALF);
	assert_int_equal(kvbm_flush(mgr), KVBM_OK);
	store_many(mgr, hashes, HALF, HALF);
	store_many(mgr, hashes, BLOCKS, MORE); /* each allocation evicts */
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	cfg.event_sink = count_announced;
	cfg.event_user = &a;
	mgr = kvbm_test_open_cfg(&cfg);
	const uint32_t restored = kvbm_test_counts(mgr).inactive;
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	assert_int_equal(restored, BLOCKS);
	assert_int_equal(a.n, BLOCKS);
	assert_int_equal(a.without_tokens, 0);
	assert_int_equal(a.wrong_tokens, 0);
	free(hashes);
	kvbm_test_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(catalog_tokens__restart_announces_restored_blocks_with_their_tokens),
		cmocka_unit_test(catalog_tokens__off_restores_by_hash_only),
		cmocka_unit_test(catalog_tokens__rows_given_back_to_an_allocation_keep_their_tokens),
	};
	return cmocka_run_group_tests_name("catalog_tokens", tests, NULL, NULL);
}
