/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a STORED event carries for a router: tokens, LoRA name and extra keys through
 * kvbm_stage_tokens (hashed as kvbm_hash_sequence), nothing for blocks
 * staged by hash, nothing left behind by dedups, unstaging or releases;
 * the medium of each tier; and where a data-parallel rank moves the
 * ZeroMQ endpoints. The sink copies what it needs: event pointers live
 * only during the call. Tests read the log after kvbm_close, which
 * delivers everything queued.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

#define BS 4u
#define MAX 64

struct seen {
	pthread_mutex_t mu;
	size_t n;
	kvbm_event_kind kind[MAX];
	kvbm_hash hash[MAX];
	bool has_tokens[MAX];
	uint32_t tokens[MAX][BS];
	char lora[MAX][32];
	char medium[MAX][16];
	uint32_t n_extra[MAX];
	char extra[MAX][64]; /* the keys joined by '|' */
};

static void sink(const kvbm_event_batch *b, void *user)
{
	struct seen *s = user;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < b->count && s->n < MAX; i++, s->n++) {
		const kvbm_event *e = &b->events[i];
		s->kind[s->n] = e->kind;
		s->hash[s->n] = e->hash;
		s->has_tokens[s->n] = e->tokens != NULL;
		if (e->tokens)
			memcpy(s->tokens[s->n], e->tokens, sizeof(s->tokens[0]));
		snprintf(s->lora[s->n], sizeof(s->lora[0]), "%s", e->lora_name ? e->lora_name : "");
		snprintf(s->medium[s->n], sizeof(s->medium[0]), "%s", b->medium);
		s->n_extra[s->n] = e->n_extra_keys;
		s->extra[s->n][0] = '\0';
		const char *key = e->extra_keys;
		for (uint32_t k = 0; k < e->n_extra_keys; k++, key += strlen(key) + 1) {
			const size_t used = strlen(s->extra[s->n]);
			snprintf(s->extra[s->n] + used, sizeof(s->extra[0]) - used, "%s%s",
				 k ? "|" : "", key);
		}
	}
	pthread_mutex_unlock(&s->mu);
}

static kvbm_manager *open_with(struct seen *s, const char *tier, const char *medium)
{
	kvbm_config cfg;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	kvbm_config_init(&cfg);
	cfg.block_count = 8;
	cfg.block_size = BS;
	cfg.tier = tier;
	cfg.event_medium = medium;
	cfg.dup_policy = KVBM_DUP_REJECT;
	cfg.event_sink = sink;
	cfg.event_user = s;
	return kvbm_test_open_cfg(&cfg);
}

static const uint32_t toks[2 * BS] = {11, 12, 13, 14, 21, 22, 23, 24};

/* Stage block i of toks (salted by salt) and register it; returns the ref. */
static kvbm_immutable stage_register(kvbm_manager *mgr, uint32_t i, kvbm_hash parent,
				     kvbm_hash salt, const char *lora)
{
	static const char *const mm[] = {"mm-a", "mm-b"};
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable r;
	/* A LoRA block also carries two extra keys. */
	const kvbm_token_block tb = {.tokens = toks + i * BS, .num_tokens = BS, .position = i,
				     .parent_hash = parent, .salt_hash = salt, .lora_name = lora,
				     .extra_keys = lora ? mm : NULL, .n_extra_keys = lora ? 2 : 0};

	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage_tokens(mgr, m, &tb, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &r), KVBM_OK);
	return r;
}

static void tokens__hash_is_the_hash_sequence_one(void **state)
{
	(void)state;
	struct seen s;
	kvbm_manager *mgr = open_with(&s, "G1", NULL);
	const kvbm_hash salt = kvbm_hash_salt("tenant", 6);
	kvbm_hash want[2], got[2];
	size_t n = 0;

	assert_int_equal(kvbm_hash_sequence(toks, 2 * BS, BS, salt, want, 2, &n), KVBM_OK);
	kvbm_immutable r0 = stage_register(mgr, 0, 0, salt, NULL);
	assert_int_equal(kvbm_immutable_hash(mgr, r0, &got[0]), KVBM_OK);
	kvbm_immutable r1 = stage_register(mgr, 1, got[0], 0, NULL);
	assert_int_equal(kvbm_immutable_hash(mgr, r1, &got[1]), KVBM_OK);
	assert_int_equal(got[0], want[0]);
	assert_int_equal(got[1], want[1]);
	assert_int_equal(kvbm_test_info(mgr, r1.block).parent_hash, want[0]);
	assert_int_equal(kvbm_test_info(mgr, r1.block).position, 1);
	kvbm_immutable_release(mgr, r0);
	kvbm_immutable_release(mgr, r1);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	pthread_mutex_destroy(&s.mu);
}

static void tokens__stored_carries_tokens_and_lora_name(void **state)
{
	(void)state;
	struct seen s;
	kvbm_manager *mgr = open_with(&s, "G2", NULL);
	kvbm_immutable r0 = stage_register(mgr, 0, 0, 0, "adapter-x");
	kvbm_hash h0;
	assert_int_equal(kvbm_immutable_hash(mgr, r0, &h0), KVBM_OK);
	kvbm_immutable r1 = stage_register(mgr, 1, h0, 0, NULL);
	kvbm_immutable_release(mgr, r0);
	kvbm_immutable_release(mgr, r1);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);

	/* CLEARED (open), STORED x2, CLEARED (close, memory-only) */
	assert_int_equal(s.n, 4);
	assert_int_equal(s.kind[1], KVBM_EVENT_STORED);
	assert_true(s.has_tokens[1] && s.has_tokens[2]);
	assert_memory_equal(s.tokens[1], toks, sizeof(s.tokens[0]));
	assert_memory_equal(s.tokens[2], toks + BS, sizeof(s.tokens[0]));
	assert_string_equal(s.lora[1], "adapter-x");
	assert_string_equal(s.lora[2], "");
	assert_int_equal(s.n_extra[1], 2);
	assert_string_equal(s.extra[1], "mm-a|mm-b");
	assert_int_equal(s.n_extra[2], 0);
	assert_string_equal(s.medium[1], "CPU"); /* G2 */
	pthread_mutex_destroy(&s.mu);
}

/* A dedup, an unstage and a release of staged blocks drop the token copy:
 * the block staged next by hash only gets a STORED without tokens (and
 * ASan's leak check sees no copy left behind). */
static void tokens__nothing_outlives_a_block_without_stored(void **state)
{
	(void)state;
	struct seen s;
	kvbm_manager *mgr = open_with(&s, "G1", "NVME");
	const kvbm_token_block tb = {.tokens = toks, .num_tokens = BS, .position = 0};
	kvbm_mutable m[3];
	kvbm_complete c;
	kvbm_immutable r;

	kvbm_immutable first = stage_register(mgr, 0, 0, 0, NULL);
	kvbm_immutable dedup = stage_register(mgr, 0, 0, 0, NULL); /* no STORED */
	assert_int_equal(dedup.block, first.block);
	assert_int_equal(kvbm_allocate(mgr, 3, m), KVBM_OK);
	assert_int_equal(kvbm_stage_tokens(mgr, m[0], &tb, &c), KVBM_OK);
	assert_int_equal(kvbm_unstage(mgr, c, &m[0]), KVBM_OK);
	assert_int_equal(kvbm_stage_lineage(mgr, m[0], 4242, 0, 0, BS, &c), KVBM_OK);
	assert_int_equal(kvbm_register(mgr, c, &r), KVBM_OK);
	assert_int_equal(kvbm_stage_tokens(mgr, m[1], &tb, &c), KVBM_OK);
	assert_int_equal(kvbm_complete_release(mgr, c), KVBM_OK);
	assert_int_equal(kvbm_stage_tokens(mgr, m[2], &tb, &c), KVBM_OK); /* held at close */
	kvbm_immutable_release(mgr, first);
	kvbm_immutable_release(mgr, dedup);
	kvbm_immutable_release(mgr, r);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);

	size_t stored = 0;
	for (size_t i = 0; i < s.n; i++) {
		if (s.kind[i] != KVBM_EVENT_STORED)
			continue;
		stored++;
		assert_true(s.has_tokens[i] == (s.hash[i] != 4242));
		assert_string_equal(s.medium[i], "NVME"); /* cfg.event_medium wins */
	}
	assert_int_equal(stored, 2);
	pthread_mutex_destroy(&s.mu);
}

static void tokens__bad_arguments_change_nothing(void **state)
{
	(void)state;
	struct seen s;
	kvbm_manager *mgr = open_with(&s, "G1", NULL);
	char lora[300];
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_token_block tb = {.tokens = toks, .num_tokens = BS - 1, .position = 0};

	memset(lora, 'x', sizeof(lora) - 1);
	lora[sizeof(lora) - 1] = '\0';
	assert_int_equal(kvbm_allocate(mgr, 1, &m), KVBM_OK);
	assert_int_equal(kvbm_stage_tokens(mgr, m, &tb, &c), KVBM_E_SIZE);
	kvbm_test_assert_error(mgr, KVBM_E_SIZE, "num_tokens 3 != block size 4");
	tb.num_tokens = BS;
	tb.lora_name = lora;
	assert_int_equal(kvbm_stage_tokens(mgr, m, &tb, &c), KVBM_E_INVAL);
	kvbm_test_assert_error(mgr, KVBM_E_INVAL, "lora_name");
	assert_int_equal(kvbm_stage_tokens(mgr, m, NULL, &c), KVBM_E_INVAL);
	tb.lora_name = NULL;
	const char *keys[17] = {"k", NULL};
	tb.extra_keys = keys;
	tb.n_extra_keys = 2; /* a NULL key */
	assert_int_equal(kvbm_stage_tokens(mgr, m, &tb, &c), KVBM_E_INVAL);
	tb.n_extra_keys = 17;
	assert_int_equal(kvbm_stage_tokens(mgr, m, &tb, &c), KVBM_E_INVAL);
	kvbm_test_assert_error(mgr, KVBM_E_INVAL, "n_extra_keys");
	keys[1] = lora; /* over 256 bytes */
	tb.n_extra_keys = 2;
	assert_int_equal(kvbm_stage_tokens(mgr, m, &tb, &c), KVBM_E_INVAL);
	tb.extra_keys = NULL;
	tb.n_extra_keys = 0;
	tb.tokens = NULL;
	assert_int_equal(kvbm_stage_tokens(mgr, m, &tb, &c), KVBM_E_INVAL);
	kvbm_test_assert_counts(mgr, 7, 0, 1, 0, 0, 0); /* the mutable block is untouched */
	assert_int_equal(kvbm_mutable_release(mgr, m), KVBM_OK);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	pthread_mutex_destroy(&s.mu);
}

static void medium__per_tier_and_checked_at_open(void **state)
{
	(void)state;
	kvbm_config cfg;
	kvbm_manager *mgr = NULL;
	char err[256];

	assert_string_equal(kvbm_tier_medium("G1"), "GPU");
	assert_string_equal(kvbm_tier_medium("G2"), "CPU");
	assert_string_equal(kvbm_tier_medium("G3"), "DISK");
	assert_string_equal(kvbm_tier_medium("G4"), "EXTERNAL");
	assert_string_equal(kvbm_tier_medium("hbm"), "hbm");
	assert_null(kvbm_tier_medium(NULL));
	kvbm_config_init(&cfg);
	assert_null(cfg.event_medium);
	cfg.block_count = 4;
	cfg.event_sink = sink;
	cfg.event_medium = "";
	assert_int_equal(kvbm_open_ex(&cfg, &mgr, err, sizeof(err)), KVBM_E_INVAL);
	assert_null(mgr);
	assert_non_null(strstr(err, "event_medium"));
}

static void zmq__rank_moves_endpoints_as_vllm(void **state)
{
	(void)state;
	kvbm_zmq_config zc;
	kvbm_zmq_publisher *p = NULL;
	char err[256];

	kvbm_zmq_config_init(&zc);
	assert_int_equal(zc.event_form, KVBM_ZMQ_EVENTS_MAP);
	assert_int_equal(zc.replay_framing, KVBM_ZMQ_REPLAY_TOPIC);
	zc.endpoint = "tcp://127.0.0.1:45000"; /* connected, as vLLM: no listener needed */
	zc.replay_endpoint = "inproc://kvbm-replay";
	zc.data_parallel_rank = 2;
	const kvbm_status st = kvbm_zmq_publisher_open(&zc, &p, err, sizeof(err));
	if (st == KVBM_E_UNSUPPORTED)
		skip(); /* built without libzmq */
	assert_int_equal(st, KVBM_OK);
	assert_string_equal(kvbm_zmq_publisher_endpoint(p, false), "tcp://127.0.0.1:45002");
	assert_string_equal(kvbm_zmq_publisher_endpoint(p, true), "inproc://kvbm-replay_dp2");
	assert_int_equal(kvbm_zmq_publisher_close(p), KVBM_OK);

	zc.replay_endpoint = NULL;
	zc.data_parallel_rank = 0;
	zc.endpoint = "tcp://127.0.0.1:45000";
	assert_int_equal(kvbm_zmq_publisher_open(&zc, &p, err, sizeof(err)), KVBM_OK);
	assert_string_equal(kvbm_zmq_publisher_endpoint(p, false), "tcp://127.0.0.1:45000");
	assert_null(kvbm_zmq_publisher_endpoint(p, true));
	assert_int_equal(kvbm_zmq_publisher_close(p), KVBM_OK);

	/* What vLLM cannot offset is refused, naming the endpoint. */
	const struct {
		const char *endpoint;
		int32_t rank;
	} bad[] = {{"tcp://127.0.0.1:65535", 1}, {"tcp://127.0.0.1:*", 1},
		   {"tcp://127.0.0.1:45000", -1}, {"udp://x:1", 1}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		zc.endpoint = bad[i].endpoint;
		zc.data_parallel_rank = bad[i].rank;
		p = (kvbm_zmq_publisher *)&zc; /* must be reset to NULL */
		assert_int_equal(kvbm_zmq_publisher_open(&zc, &p, err, sizeof(err)), KVBM_E_INVAL);
		assert_null(p);
		assert_non_null(strstr(err, "data_parallel_rank"));
	}
	zc.endpoint = "tcp://127.0.0.1:45000";
	zc.data_parallel_rank = 0;
	zc.event_form = (kvbm_zmq_event_form)7;
	assert_int_equal(kvbm_zmq_publisher_open(&zc, &p, err, sizeof(err)), KVBM_E_INVAL);
	assert_non_null(strstr(err, "event_form 7"));
}

struct racer {
	kvbm_manager *mgr;
	uint32_t base, stored;
	int failed;
};

/* Stage by tokens, register, release: distinct sequences per thread, half
 * of them twice (dedups), on a manager small enough to evict. */
static void *race(void *arg)
{
	struct racer *r = arg;

	for (uint32_t i = 0; i < 200 && !r->failed; i++) {
		uint32_t tok[BS];
		for (uint32_t t = 0; t < BS; t++)
			tok[t] = r->base + (i / 2) * BS + t;
		const kvbm_token_block tb = {.tokens = tok, .num_tokens = BS, .position = 0};
		kvbm_mutable m;
		kvbm_complete c;
		kvbm_immutable ref;
		r->failed = kvbm_allocate(r->mgr, 1, &m) != KVBM_OK ||
			    kvbm_stage_tokens(r->mgr, m, &tb, &c) != KVBM_OK ||
			    kvbm_register(r->mgr, c, &ref) != KVBM_OK ||
			    kvbm_immutable_release(r->mgr, ref) != KVBM_OK;
	}
	return NULL;
}

/* Threads staging by tokens at once (with dedups whenever the pair's first
 * block is still cached): every STORED carries its own block's tokens,
 * the ones that hash to the STORED hash. */
static void tokens__concurrent_staging_keeps_tokens_with_their_block(void **state)
{
	(void)state;
	struct seen *s = calloc(1, sizeof(*s));
	kvbm_config cfg;
	struct racer r[4];
	pthread_t t[4];

	assert_non_null(s);
	pthread_mutex_init(&s->mu, NULL);
	kvbm_config_init(&cfg);
	cfg.block_count = 8;
	cfg.block_size = BS;
	cfg.dup_policy = KVBM_DUP_REJECT;
	cfg.event_sink = sink;
	cfg.event_user = s;
	cfg.event_batch_max = 4;
	kvbm_manager *mgr = kvbm_test_open_cfg(&cfg);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct racer){.mgr = mgr, .base = 100000u * (uint32_t)(i + 1)};
		assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_false(r[i].failed);
	}
	kvbm_metrics m;
	assert_int_equal(kvbm_metrics_read(mgr, &m), KVBM_OK);
	assert_invariants(mgr);
	assert_int_equal(kvbm_close(mgr), KVBM_OK);
	/* The log keeps the first MAX events: check those. */
	size_t stored = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (s->kind[i] != KVBM_EVENT_STORED)
			continue;
		stored++;
		assert_true(s->has_tokens[i]);
		assert_int_equal(kvbm_hash_chain(0, kvbm_hash_block(s->tokens[i], BS), true),
				 s->hash[i]);
	}
	assert_true(stored > 0);
	assert_int_equal(m.registrations, 800);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tokens__hash_is_the_hash_sequence_one),
		cmocka_unit_test(tokens__stored_carries_tokens_and_lora_name),
		cmocka_unit_test(tokens__nothing_outlives_a_block_without_stored),
		cmocka_unit_test(tokens__bad_arguments_change_nothing),
		cmocka_unit_test(medium__per_tier_and_checked_at_open),
		cmocka_unit_test(zmq__rank_moves_endpoints_as_vllm),
		cmocka_unit_test(tokens__concurrent_staging_keeps_tokens_with_their_block),
	};
	return cmocka_run_group_tests_name("event_tokens", tests, NULL, NULL);
}
