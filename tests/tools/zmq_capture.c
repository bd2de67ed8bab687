/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Workload half of the consumer decode matrix (tests/decoders/run_matrix.py
 * drives it; the decoders are the routers' layouts in Go, Rust and Python).
 *
 * Usage: zmq_capture DIR PHASE map|array topic|legacy
 *   PHASE "live": managers G2 (CPU), G3 (DISK) and G1 (GPU, catalog
 *     DIR/catalog.db) share one publisher; a scripted workload stores
 *     fresh blocks with tokens, deduplicates, stores by hash only, stores a
 *     LoRA block and evicts. Then flushes the catalog, writes what it
 *     captured, prints "ready" and waits for stdin to close (the driver
 *     SIGKILLs it there: no kvbm_close, no final events).
 *   PHASE "restart": the same managers again over the catalog the killed
 *     process left (G1's blocks come back, announced with the tokens its
 *     catalog kept: cfg.catalog_tokens), plus one fresh block with tokens;
 *     closes normally.
 * Each phase writes DIR/PHASE.live.bin (the messages a SUB socket received),
 * DIR/PHASE.replay.bin (a replay from seq 0; frames as received, after the
 * DEALER's empty delimiter) and DIR/PHASE.expect.json (every registered
 * primary per medium with its tokens, or null for one known by hash only,
 * read back from kvbm, not from the events). A capture file is a list of
 * messages: u32le frame count, then per frame u32le length and the bytes.
 *
 * Synchronised on messages only: the SUB socket is ready once a probe
 * batch arrives; events are all published once the sink saw as many events
 * as the managers emitted; live capture ends at the last published seq.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "kvbm.h"

#define BS 4u
#define NTIER 3

static int fail(const char *what, const char *why)
{
	fprintf(stderr, "zmq_capture: %s: %s\n", what, why);
	exit(1);
}

/* ---- a sink that counts what it published, so we can wait for it ---- */

static pthread_mutex_t sink_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sink_cv = PTHREAD_COND_INITIALIZER;
static uint64_t sink_events;

static void counting_sink(const kvbm_event_batch *b, void *pub)
{
	kvbm_zmq_sink(b, pub);
	pthread_mutex_lock(&sink_mu);
	sink_events += b->count;
	pthread_cond_broadcast(&sink_cv);
	pthread_mutex_unlock(&sink_mu);
}

/* Wait until the sink has seen every event the managers emitted, on top
 * of `base` events (the probes', all delivered by their kvbm_close). */
static void wait_delivered(kvbm_manager **mgrs, int n, uint64_t base)
{
	uint64_t emitted = base;

	for (int i = 0; i < n; i++) {
		kvbm_metrics m;
		kvbm_metrics_read(mgrs[i], &m);
		emitted += m.events_emitted;
	}
	pthread_mutex_lock(&sink_mu);
	while (sink_events < emitted)
		pthread_cond_wait(&sink_cv, &sink_mu);
	pthread_mutex_unlock(&sink_mu);
}

/* ---- capture files ---- */

static void put_u32(FILE *f, uint32_t v)
{
	const unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8),
				    (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
	fwrite(b, 1, 4, f);
}

/* Receive one multipart message and append it to f; returns its frames. */
static int recv_message(void *sock, FILE *f, zmq_msg_t *frames, int max)
{
	int n = 0, more = 1;

	while (more) {
		zmq_msg_t msg;
		zmq_msg_init(&msg);
		if (zmq_msg_recv(&msg, sock, 0) < 0)
			fail("recv", zmq_strerror(zmq_errno()));
		more = zmq_msg_more(&msg);
		if (n < max)
			frames[n++] = msg;
		else
			zmq_msg_close(&msg);
	}
	if (f) {
		put_u32(f, (uint32_t)n);
		for (int i = 0; i < n; i++) {
			put_u32(f, (uint32_t)zmq_msg_size(&frames[i]));
			fwrite(zmq_msg_data(&frames[i]), 1, zmq_msg_size(&frames[i]), f);
		}
	}
	return n;
}

static uint64_t seq_of(zmq_msg_t *m)
{
	const unsigned char *b = zmq_msg_data(m);
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static FILE *open_out(const char *dir, const char *phase, const char *what)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s.%s", dir, phase, what);
	FILE *f = fopen(path, "wb");
	if (!f)
		fail("open", path);
	return f;
}

/* ---- the workload ---- */

struct tier {
	const char *name, *medium;
	kvbm_manager *mgr;
	/* what this program registered with tokens: hash -> tokens */
	kvbm_hash hashes[64];
	uint32_t tokens[64][BS];
	const char *extra[64]; /* its one extra key, or NULL */
	uint32_t n;
};

static void remember(struct tier *t, kvbm_hash h, const uint32_t *tokens, const char *extra)
{
	if (t->n < 64) {
		t->hashes[t->n] = h;
		memcpy(t->tokens[t->n], tokens, sizeof(t->tokens[0]));
		t->extra[t->n] = extra;
		t->n++;
	}
}

/* Store a sequence of nblocks starting with token `first`: with tokens
 * (kvbm_stage_tokens; a LoRA block also gets an extra key, as a multimodal
 * hash would be) or by hash only (kvbm_stage_lineage with the hashes
 * kvbm_hash_sequence gives). Released at once: the blocks stay cached. */
static void store(struct tier *t, uint32_t first, uint32_t nblocks, bool with_tokens,
		  const char *lora)
{
	static const char *const mm[] = {"mm-hash-0001"};
	uint32_t tok[16 * BS];
	kvbm_hash h[16];
	size_t nh;
	kvbm_mutable m[16];
	kvbm_complete c[16];
	kvbm_immutable r[16];
	const kvbm_hash salt = lora ? kvbm_hash_salt(lora, strlen(lora)) : 0;

	for (uint32_t i = 0; i < nblocks * BS; i++)
		tok[i] = first + i;
	if (kvbm_hash_sequence(tok, nblocks * BS, BS, salt, h, 16, &nh) != KVBM_OK)
		fail("hash", t->name);
	if (kvbm_allocate(t->mgr, nblocks, m) != KVBM_OK)
		fail("allocate", t->name);
	for (uint32_t i = 0; i < nblocks; i++) {
		kvbm_status st;
		if (with_tokens) {
			const kvbm_token_block tb = {.tokens = tok + i * BS, .num_tokens = BS,
						     .position = i,
						     .parent_hash = i ? h[i - 1] : 0,
						     .salt_hash = salt, .lora_name = lora,
						     .extra_keys = lora ? mm : NULL,
						     .n_extra_keys = lora ? 1 : 0};
			st = kvbm_stage_tokens(t->mgr, m[i], &tb, &c[i]);
			kvbm_block_info info;
			if (st == KVBM_OK &&
			    (kvbm_block_info_read(t->mgr, c[i].block, &info) != KVBM_OK ||
			     info.hash != h[i]))
				fail("stage_tokens", "hash differs from kvbm_hash_sequence");
			remember(t, h[i], tok + i * BS, lora ? mm[0] : NULL);
		} else {
			st = kvbm_stage_lineage(t->mgr, m[i], h[i], i ? h[i - 1] : 0, i, BS, &c[i]);
		}
		if (st != KVBM_OK)
			fail("stage", t->name);
	}
	if (kvbm_register_batch(t->mgr, c, nblocks, r) != KVBM_OK ||
	    kvbm_immutable_release_batch(t->mgr, r, nblocks) != KVBM_OK)
		fail("register", t->name);
}

/* What store(t, first, nblocks, true, lora) remembered, without storing:
 * the restart phase's record of the tokens the killed process staged. */
static void recall(struct tier *t, uint32_t first, uint32_t nblocks, const char *lora)
{
	uint32_t tok[16 * BS];
	kvbm_hash h[16];
	size_t nh;
	const kvbm_hash salt = lora ? kvbm_hash_salt(lora, strlen(lora)) : 0;

	for (uint32_t i = 0; i < nblocks * BS; i++)
		tok[i] = first + i;
	if (kvbm_hash_sequence(tok, nblocks * BS, BS, salt, h, 16, &nh) != KVBM_OK)
		fail("hash", t->name);
	for (uint32_t i = 0; i < nblocks; i++)
		remember(t, h[i], tok + i * BS, lora ? "mm-hash-0001" : NULL);
}

static const uint32_t *tokens_of(const struct tier *t, kvbm_hash h, const char **extra)
{
	for (uint32_t i = 0; i < t->n; i++)
		if (t->hashes[i] == h) {
			*extra = t->extra[i];
			return t->tokens[i];
		}
	return NULL;
}

/* Every registered primary, read from kvbm, with the tokens this process
 * staged it with (null: by hash only, or restored). */
static void write_expect(struct tier *tiers, const char *dir, const char *phase, uint64_t batches)
{
	FILE *f = open_out(dir, phase, "expect.json");

	fprintf(f, "{\"block_size\": %u, \"batches\": %" PRIu64 ", \"tiers\": {", BS, batches);
	for (int i = 0; i < NTIER; i++) {
		struct tier *t = &tiers[i];
		const uint32_t n = kvbm_total_blocks(t->mgr);
		bool first = true;
		fprintf(f, "%s\"%s\": [", i ? ", " : "", t->medium);
		for (uint32_t b = 0; b < n; b++) {
			kvbm_block_info info;
			if (kvbm_block_info_read(t->mgr, b, &info) != KVBM_OK)
				fail("info", t->name);
			if (info.state != KVBM_BLOCK_REGISTERED && info.state != KVBM_BLOCK_INACTIVE)
				continue;
			const char *extra = NULL;
			const uint32_t *tok = tokens_of(t, info.hash, &extra);
			fprintf(f, "%s{\"hash\": %" PRIu64 ", \"parent\": %" PRIu64 ", \"tokens\": ",
				first ? "" : ", ", info.hash, info.parent_hash);
			if (tok)
				fprintf(f, "[%u, %u, %u, %u]", tok[0], tok[1], tok[2], tok[3]);
			else
				fprintf(f, "null");
			if (extra)
				fprintf(f, ", \"extra\": [\"%s\"]", extra);
			fprintf(f, "}");
			first = false;
		}
		fprintf(f, "]");
	}
	fprintf(f, "}}\n");
	fclose(f);
}

static void open_tier(struct tier *t, kvbm_zmq_publisher *pub, const char *catalog)
{
	kvbm_config cfg;
	char err[256];

	kvbm_config_init(&cfg);
	cfg.block_count = 8;
	cfg.block_size = BS;
	cfg.tier = t->name;
	cfg.dup_policy = KVBM_DUP_REJECT;
	/* The script's expected indexes assume LRU: the restart's fresh block
	 * evicts chain A's last block, whose parent went in the live phase.
	 * Another policy may keep it, and the restart then announces a block
	 * whose parent no consumer knows (Dynamo counts an orphan, llm-d drops
	 * it): a different workload, not a decoding difference. */
	cfg.evict_policy = KVBM_EVICT_LRU;
	cfg.event_sink = counting_sink;
	cfg.event_user = pub;
	cfg.catalog_path = catalog;
	cfg.catalog_tokens = catalog != NULL; /* restored blocks come back with tokens */
	cfg.catalog_sync = KVBM_SYNC_OFF; /* a SIGKILL, not a power cut */
	cfg.model_fingerprint = "zmq-capture";
	if (kvbm_open_ex(&cfg, &t->mgr, err, sizeof(err)) != KVBM_OK)
		fail("open", err);
}

int main(int argc, char **argv)
{
	if (argc != 5)
		fail("usage", "zmq_capture DIR live|restart map|array topic|legacy");
	const char *dir = argv[1], *phase = argv[2];
	const bool restart = strcmp(phase, "restart") == 0;
	char pub_ep[4200], replay_ep[4200], catalog[4200], err[256];
	snprintf(pub_ep, sizeof(pub_ep), "ipc://%s/pub", dir);
	snprintf(replay_ep, sizeof(replay_ep), "ipc://%s/replay", dir);
	snprintf(catalog, sizeof(catalog), "%s/catalog.db", dir);

	kvbm_zmq_config zc;
	kvbm_zmq_publisher *pub = NULL;
	kvbm_zmq_config_init(&zc);
	zc.endpoint = pub_ep;
	zc.replay_endpoint = replay_ep;
	zc.topic = "kv@kvbm-pod@kvbm-model"; /* llm-d's kv@<pod>@<model> */
	zc.event_form = strcmp(argv[3], "array") == 0 ? KVBM_ZMQ_EVENTS_ARRAY : KVBM_ZMQ_EVENTS_MAP;
	zc.replay_framing = strcmp(argv[4], "legacy") == 0 ? KVBM_ZMQ_REPLAY_LEGACY
							   : KVBM_ZMQ_REPLAY_TOPIC;
	if (kvbm_zmq_publisher_open(&zc, &pub, err, sizeof(err)) != KVBM_OK)
		fail("publisher", err);

	void *ctx = zmq_ctx_new();
	void *sub = zmq_socket(ctx, ZMQ_SUB);
	if (zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "kv@", 3) != 0 ||
	    zmq_connect(sub, kvbm_zmq_publisher_endpoint(pub, false)) != 0)
		fail("sub", zmq_strerror(zmq_errno()));
	FILE *live = open_out(dir, phase, "live.bin");
	zmq_msg_t fr[4];

	/* Probe until the subscription is through: each probe is a memory-only
	 * manager opened and closed (two AllBlocksCleared, before any block).
	 * The probes are part of the stream, so they are captured too. */
	kvbm_config probe;
	kvbm_config_init(&probe);
	probe.block_count = 1;
	probe.tier = "G1";
	probe.event_sink = counting_sink;
	probe.event_user = pub;
	for (;;) {
		kvbm_manager *p = NULL;
		if (kvbm_open(&probe, &p) != KVBM_OK || kvbm_close(p) != KVBM_OK)
			fail("probe", "open/close");
		zmq_pollitem_t item = {.socket = sub, .events = ZMQ_POLLIN};
		if (zmq_poll(&item, 1, 100) > 0)
			break;
	}

	/* G1 last: its restart announcement must not be followed by another
	 * manager's AllBlocksCleared, which a router applies to the worker. */
	struct tier tiers[NTIER] = {{.name = "G2", .medium = kvbm_tier_medium("G2")},
				    {.name = "G3", .medium = kvbm_tier_medium("G3")},
				    {.name = "G1", .medium = kvbm_tier_medium("G1")}};
	pthread_mutex_lock(&sink_mu);
	const uint64_t probe_events = sink_events;
	pthread_mutex_unlock(&sink_mu);
	open_tier(&tiers[0], pub, NULL);
	open_tier(&tiers[1], pub, NULL);
	open_tier(&tiers[2], pub, catalog);
	struct tier *g1 = &tiers[2], *g2 = &tiers[0], *g3 = &tiers[1];

	if (!restart) {
		store(g1, 1, 3, true, NULL);   /* fresh chain A, with tokens */
		store(g1, 1, 3, true, NULL);   /* A again: deduplicated, no STORED */
		store(g1, 100, 2, false, NULL); /* chain B by hash only */
		store(g1, 200, 1, true, "adapter-x"); /* a LoRA block */
		store(g1, 300, 4, true, NULL); /* chain D: evicts 2 cached blocks */
		store(g2, 1, 3, true, NULL);   /* A offloaded to CPU, with tokens */
		/* Published before G3's: llm-d files a by-hash block under a
		 * request key only if it already knows the hash. */
		wait_delivered((kvbm_manager *[]){g2->mgr, g3->mgr, g1->mgr}, NTIER, probe_events);
		store(g3, 1, 2, false, NULL);  /* A's first two on disk, by hash */
		if (kvbm_flush(g1->mgr) != KVBM_OK)
			fail("flush", "G1");
	} else {
		/* G1 keeps tokens in its catalog (catalog_tokens): its restored
		 * blocks are announced with the tokens staged before the kill. */
		recall(g1, 1, 3, NULL);
		recall(g1, 200, 1, "adapter-x");
		recall(g1, 300, 4, NULL);
		store(g1, 500, 1, true, NULL); /* fresh after the restart */
	}
	kvbm_manager *mgrs[] = {g2->mgr, g3->mgr, g1->mgr};
	wait_delivered(mgrs, NTIER, probe_events);
	const uint64_t published = kvbm_zmq_published(pub);

	/* Live: everything up to the last published seq. */
	for (;;) {
		const int n = recv_message(sub, live, fr, 4);
		const uint64_t s = n == 3 ? seq_of(&fr[1]) : 0;
		for (int i = 0; i < n && i < 4; i++)
			zmq_msg_close(&fr[i]);
		if (n != 3)
			fail("live", "a PUB message is not [topic, seq, payload]");
		if (s + 1 >= published)
			break;
	}
	fclose(live);

	/* Replay from 0, frames after the empty delimiter. */
	void *dealer = zmq_socket(ctx, ZMQ_DEALER);
	if (zmq_connect(dealer, kvbm_zmq_publisher_endpoint(pub, true)) != 0)
		fail("dealer", zmq_strerror(zmq_errno()));
	const unsigned char zero[8] = {0};
	zmq_send(dealer, "", 0, ZMQ_SNDMORE);
	zmq_send(dealer, zero, 8, 0);
	FILE *rep = open_out(dir, phase, "replay.bin");
	for (;;) {
		zmq_msg_t raw[5];
		const int n = recv_message(dealer, NULL, raw, 5);
		put_u32(rep, (uint32_t)(n - 1));
		for (int i = 1; i < n; i++) {
			put_u32(rep, (uint32_t)zmq_msg_size(&raw[i]));
			fwrite(zmq_msg_data(&raw[i]), 1, zmq_msg_size(&raw[i]), rep);
		}
		const bool end = n >= 3 && zmq_msg_size(&raw[n - 1]) == 0;
		for (int i = 0; i < n; i++)
			zmq_msg_close(&raw[i]);
		if (end)
			break;
	}
	fclose(rep);
	write_expect(tiers, dir, phase, published);
	zmq_close(dealer);
	zmq_close(sub);
	zmq_ctx_term(ctx);

	if (!restart) {
		char line[16];
		printf("ready\n");
		fflush(stdout);
		while (fgets(line, sizeof(line), stdin))
			;
		return 1; /* the driver kills us before this */
	}
	for (int i = 0; i < NTIER; i++)
		if (kvbm_close(tiers[i].mgr) != KVBM_OK)
			fail("close", tiers[i].name);
	kvbm_zmq_publisher_close(pub);
	printf("done\n");
	return 0;
}
