/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Publisher half of the vLLM wire-format test (tests/tools/zmq_check.py
 * is the independent decoder). Usage: zmq_publish PUB_ENDPOINT
 * REPLAY_ENDPOINT map|array topic|legacy (event form, replay framing;
 * data_parallel_rank 3, so the endpoints get "_dp3"). Runs a scripted workload on a manager whose sink is a
 * kvbm_zmq_publisher, prints "published N h0 h1 h2" (batches, then the
 * chain's hashes in decimal), then for every "go" line on stdin publishes
 * one more batch (a manager that stores hash 777 and closes), for
 * "race" has two managers publish one-event batches through the publisher
 * at the same time, and exits on "quit" or end of input. Synchronised
 * through its pipes only.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kvbm.h"

static int fail(const char *what, const char *why)
{
	fprintf(stderr, "zmq_publish: %s: %s\n", what, why);
	return 1;
}

static kvbm_config manager_config(kvbm_zmq_publisher *pub)
{
	kvbm_config cfg;

	kvbm_config_init(&cfg);
	cfg.block_count = 8;
	cfg.block_size = 4;
	cfg.tier = "G1";
	cfg.event_sink = kvbm_zmq_sink;
	cfg.event_user = pub;
	cfg.event_window_ms = 60000; /* one batch, delivered by close */
	return cfg;
}

struct racer {
	kvbm_config cfg;
	kvbm_hash base;
	int failed;
};

/* Register and evict 100 blocks on a manager of its own: one event per
 * batch, so the two dispatchers hand the shared publisher batches
 * concurrently. */
static void *race(void *arg)
{
	struct racer *r = arg;
	kvbm_manager *mgr = NULL;

	if (kvbm_open(&r->cfg, &mgr) != KVBM_OK) {
		r->failed = 1;
		return NULL;
	}
	for (uint32_t i = 0; i < 100 && !r->failed; i++) {
		kvbm_mutable m;
		kvbm_complete c;
		kvbm_immutable ref;
		r->failed = kvbm_allocate(mgr, 1, &m) != KVBM_OK ||
			    kvbm_stage(mgr, m, r->base + i, 4, &c) != KVBM_OK ||
			    kvbm_register(mgr, c, &ref) != KVBM_OK ||
			    kvbm_immutable_release(mgr, ref) != KVBM_OK;
	}
	if (kvbm_close(mgr) != KVBM_OK)
		r->failed = 1;
	return NULL;
}

static int race_two(kvbm_zmq_publisher *pub)
{
	struct racer r[2];
	pthread_t t[2];

	for (int i = 0; i < 2; i++) {
		r[i] = (struct racer){.cfg = manager_config(pub), .base = 1000000u * (kvbm_hash)(i + 1)};
		r[i].cfg.block_count = 4;
		r[i].cfg.tier = i ? "G2" : "G1"; /* distinct tiers on one publisher */
		r[i].cfg.event_batch_max = 1;
		r[i].cfg.event_window_ms = 1;
		if (pthread_create(&t[i], NULL, race, &r[i]) != 0)
			return fail("race", "cannot start a thread");
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	return r[0].failed || r[1].failed ? fail("race", "workload failed") : 0;
}

/* A second manager on the publisher: opens, registers hash 777, closes.
 * Its CLEARED at open and close must not clear the worker. */
static int reopen(const kvbm_config *cfg)
{
	kvbm_manager *mgr = NULL;
	kvbm_mutable m;
	kvbm_complete c;
	kvbm_immutable r;

	if (kvbm_open(cfg, &mgr) != KVBM_OK)
		return 1;
	const int failed = kvbm_allocate(mgr, 1, &m) != KVBM_OK ||
			   kvbm_stage(mgr, m, 777, 4, &c) != KVBM_OK ||
			   kvbm_register(mgr, c, &r) != KVBM_OK ||
			   kvbm_immutable_release(mgr, r) != KVBM_OK;
	return kvbm_close(mgr) != KVBM_OK || failed;
}

int main(int argc, char **argv)
{
	kvbm_zmq_config zc;
	kvbm_zmq_publisher *pub = NULL;
	kvbm_manager *mgr = NULL;
	char err[256], line[64];

	if (argc != 5)
		return fail("usage", "zmq_publish PUB_ENDPOINT REPLAY_ENDPOINT map|array topic|legacy");
	kvbm_zmq_config_init(&zc);
	zc.endpoint = argv[1];
	zc.replay_endpoint = argv[2];
	zc.event_form = strcmp(argv[3], "array") == 0 ? KVBM_ZMQ_EVENTS_ARRAY : KVBM_ZMQ_EVENTS_MAP;
	zc.replay_framing = strcmp(argv[4], "legacy") == 0 ? KVBM_ZMQ_REPLAY_LEGACY
							   : KVBM_ZMQ_REPLAY_TOPIC;
	zc.topic = "kv@G1";
	zc.data_parallel_rank = 3;
	if (kvbm_zmq_publisher_open(&zc, &pub, err, sizeof(err)) != KVBM_OK)
		return fail("publisher", err);
	kvbm_config cfg = manager_config(pub);
	if (kvbm_open_ex(&cfg, &mgr, err, sizeof(err)) != KVBM_OK)
		return fail("open", err);

	/* A chain of 3, released tail first, then all 8 blocks taken: the
	 * chain is evicted tail first. */
	kvbm_mutable m[8];
	kvbm_complete c[3];
	kvbm_immutable r[3];
	kvbm_hash h[3], parent = 0;
	if (kvbm_allocate(mgr, 3, m) != KVBM_OK)
		return fail("allocate", "");
	for (int i = 0; i < 3; i++) {
		h[i] = kvbm_hash_chain(parent, 1000 + (kvbm_hash)i, i == 0);
		if (kvbm_stage_lineage(mgr, m[i], h[i], parent, (uint32_t)i, 4, &c[i]) != KVBM_OK)
			return fail("stage", "");
		parent = h[i];
	}
	if (kvbm_register_batch(mgr, c, 3, r) != KVBM_OK ||
	    kvbm_immutable_release_batch(mgr, (kvbm_immutable[]){r[2], r[1], r[0]}, 3) != KVBM_OK ||
	    kvbm_allocate(mgr, 8, m) != KVBM_OK)
		return fail("workload", "");
	if (kvbm_close(mgr) != KVBM_OK)
		return fail("close", "");
	printf("published %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", kvbm_zmq_published(pub),
	       h[0], h[1], h[2]);
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin) &&
	       (strncmp(line, "go", 2) == 0 || strncmp(line, "race", 4) == 0)) {
		if (line[0] == 'r') {
			if (race_two(pub) != 0)
				return 1;
		} else if (reopen(&cfg) != 0) {
			return fail("reopen", "");
		}
		printf("published %" PRIu64 "\n", kvbm_zmq_published(pub));
		fflush(stdout);
	}
	kvbm_zmq_publisher_close(pub);
	return 0;
}
