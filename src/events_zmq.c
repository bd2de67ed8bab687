/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ZeroMQ event publisher: kvbm event batches re-encoded as vLLM's
 * KVEventBatch (an array envelope around tagged events, see kvbm.h) on a
 * PUB socket, with a ring of
 * past batches served on a ROUTER socket for subscribers that missed some.
 * The PUB socket is used only under pub_mu (managers sharing a publisher
 * deliver from their own dispatcher threads); the ROUTER socket only by
 * the replay thread; the ring under ring_mu, which is taken inside pub_mu
 * (never the other way round). Built only with libzmq.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvbm.h"

void kvbm_zmq_config_init(kvbm_zmq_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->endpoint = "tcp://*:5557";
	cfg->topic = "";
	cfg->buffer_steps = 10000;
	cfg->hwm = 100000;
}

#ifndef KVBM_HAVE_ZMQ

kvbm_status kvbm_zmq_publisher_open(const kvbm_zmq_config *cfg, kvbm_zmq_publisher **out,
				    char *errbuf, size_t errlen)
{
	(void)cfg;
	if (out)
		*out = NULL;
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "kvbm was built without libzmq");
	return KVBM_E_UNSUPPORTED;
}

void kvbm_zmq_sink(const kvbm_event_batch *batch, void *publisher)
{
	(void)batch;
	(void)publisher;
}

uint64_t kvbm_zmq_published(kvbm_zmq_publisher *p)
{
	(void)p;
	return 0;
}

const char *kvbm_zmq_publisher_endpoint(const kvbm_zmq_publisher *p, bool replay)
{
	(void)p;
	(void)replay;
	return NULL;
}

kvbm_status kvbm_zmq_publisher_close(kvbm_zmq_publisher *p)
{
	(void)p;
	return KVBM_OK;
}

#else

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <zmq.h>

#include "events_announced.h"
#include "events_msgpack.h"

/* ---- the publisher ---- */

struct replay_entry {
	uint64_t seq;
	unsigned char *payload;
	size_t len;
};

struct kvbm_zmq_publisher {
	void *ctx, *pub, *router;
	char *topic;
	char *endpoint, *replay_endpoint; /* after the data-parallel-rank offset */
	int32_t dp_rank;
	kvbm_zmq_event_form form;
	kvbm_zmq_replay_framing framing;
	struct kvbm__announced *tiers;  /* under pub_mu, with seq */
	uint32_t n_tiers;
	bool cleared_once;       /* the worker-wide AllBlocksCleared went out */
	pthread_mutex_t pub_mu;  /* the PUB socket and seq */
	uint64_t seq;
	pthread_mutex_t ring_mu; /* the replay ring */
	struct replay_entry *ring;
	uint32_t ring_cap, ring_head, ring_count;
	pthread_t replay_thread;
	bool replay_started;
	atomic_bool stopping;
	atomic_ullong published;
};

/* Consecutive events that share one vLLM entry: REMOVED after REMOVED;
 * STORED extending the previous STORED's chain, with the same block size,
 * tokens present in both or neither, and the same LoRA name. */
static bool joins(const kvbm_event *p, const kvbm_event *e)
{
	if (!p || p->kind != e->kind)
		return false;
	if (e->kind == KVBM_EVENT_REMOVED)
		return true;
	if (e->kind != KVBM_EVENT_STORED || e->parent_hash != p->hash ||
	    e->num_tokens != p->num_tokens || !e->tokens != !p->tokens ||
	    !e->lora_name != !p->lora_name)
		return false;
	return !e->lora_name || strcmp(e->lora_name, p->lora_name) == 0;
}

/* An event's start: a map with its "type" tag, or an array tagged first
 * (msgspec tag=True with and without array_like). n counts the tag. */
static void event_begin(struct kvbm__mp *m, kvbm_zmq_event_form form, uint32_t n, const char *tag)
{
	if (form == KVBM_ZMQ_EVENTS_MAP) {
		kvbm__mp_map(m, n);
		kvbm__mp_str(m, "type");
	} else {
		kvbm__mp_array(m, n);
	}
	kvbm__mp_str(m, tag);
}

/* A field name, in map form only; arrays are positional. */
static void event_key(struct kvbm__mp *m, kvbm_zmq_event_form form, const char *name)
{
	if (form == KVBM_ZMQ_EVENTS_MAP)
		kvbm__mp_str(m, name);
}

/* vLLM's integer block hash: the value as an unsigned 64-bit integer,
 * always in the 9-byte form. Decoders read it into u64 (Dynamo) or an
 * untyped value they accept as uint64 or int64 (llm-d's getHashAsUint64,
 * where vmihailenco/msgpack turns a shorter encoding into int8..uint32
 * and the event is rejected). */
static void mp_hash(struct kvbm__mp *m, uint64_t h)
{
	kvbm__mp_be(m, 0xcf, h, 8);
}

static void encode_stored(struct kvbm__mp *m, kvbm_zmq_event_form form, const kvbm_event *run,
			  size_t n, const char *medium)
{
	const kvbm_event *e = &run[0];
	bool extra = false;

	for (size_t k = 0; k < n; k++)
		extra |= run[k].n_extra_keys > 0;
	/* BlockStored's fields without a default in vLLM, in its order, then
	 * extra_keys if a block has some; it and the HMA fields default to
	 * None and are omitted otherwise. */
	event_begin(m, form, extra ? 9 : 8, "BlockStored");
	event_key(m, form, "block_hashes");
	kvbm__mp_array(m, (uint32_t)n);
	for (size_t k = 0; k < n; k++)
		mp_hash(m, run[k].hash);
	event_key(m, form, "parent_block_hash");
	if (e->parent_hash)
		mp_hash(m, e->parent_hash);
	else
		kvbm__mp_nil(m);
	event_key(m, form, "token_ids");
	if (e->tokens && (uint64_t)n * e->num_tokens <= UINT32_MAX) {
		kvbm__mp_array(m, (uint32_t)(n * e->num_tokens));
		for (size_t k = 0; k < n; k++)
			for (uint32_t t = 0; t < e->num_tokens; t++)
				kvbm__mp_uint(m, run[k].tokens[t]);
	} else {
		kvbm__mp_array(m, 0);
	}
	event_key(m, form, "block_size");
	kvbm__mp_uint(m, e->num_tokens);
	event_key(m, form, "lora_id"); /* deprecated in vLLM; kvbm has no ids */
	kvbm__mp_nil(m);
	event_key(m, form, "medium");
	kvbm__mp_str(m, medium);
	event_key(m, form, "lora_name");
	if (e->lora_name)
		kvbm__mp_str(m, e->lora_name);
	else
		kvbm__mp_nil(m);
	if (!extra)
		return;
	/* One entry per block: its keys as a list of strings, or nil. */
	event_key(m, form, "extra_keys");
	kvbm__mp_array(m, (uint32_t)n);
	for (size_t k = 0; k < n; k++) {
		if (!run[k].n_extra_keys) {
			kvbm__mp_nil(m);
			continue;
		}
		kvbm__mp_array(m, run[k].n_extra_keys);
		const char *key = run[k].extra_keys;
		for (uint32_t i = 0; i < run[k].n_extra_keys; i++, key += strlen(key) + 1)
			kvbm__mp_str(m, key);
	}
}

/* The announced set of a tier, created on first use; NULL without memory. */
static struct kvbm__announced *tier_for(kvbm_zmq_publisher *p, const char *tier)
{
	for (uint32_t i = 0; i < p->n_tiers; i++)
		if (strcmp(p->tiers[i].tier, tier) == 0)
			return &p->tiers[i];
	struct kvbm__announced *t = realloc(p->tiers, (p->n_tiers + 1) * sizeof(*t));
	if (!t)
		return NULL;
	p->tiers = t;
	t = &p->tiers[p->n_tiers];
	*t = (struct kvbm__announced){.tier = strdup(tier)};
	if (!t->tier)
		return NULL;
	p->n_tiers++;
	return t;
}

/* A later CLEARED: BlockRemoved of everything the tier announced. */
static uint32_t encode_tier_removed(struct kvbm__mp *m, kvbm_zmq_event_form form,
				    struct kvbm__announced *t, const char *medium)
{
	const uint32_t n = t->count + t->has_zero;

	if (n == 0)
		return 0;
	event_begin(m, form, 3, "BlockRemoved");
	event_key(m, form, "block_hashes");
	kvbm__mp_array(m, n);
	if (t->has_zero)
		mp_hash(m, 0);
	for (uint32_t i = 0; i < t->cap; i++)
		if (t->slots[i])
			mp_hash(m, t->slots[i]);
	event_key(m, form, "medium");
	kvbm__mp_str(m, medium);
	if (t->slots)
		memset(t->slots, 0, (size_t)t->cap * sizeof(*t->slots));
	t->count = 0;
	t->has_zero = false;
	return 1;
}

/* One kvbm batch -> one vLLM KVEventBatch payload: the array
 * [ts, events, data_parallel_rank] (msgspec array_like, which every
 * consumer decodes as a tuple). Runs of events that join() share an entry;
 * CLEARED is scoped to the tier as events_announced.h explains. pub_mu
 * held: the announced sets change in seq order. */
static void encode(struct kvbm__mp *m, kvbm_zmq_publisher *p, const kvbm_event_batch *b)
{
	const char *medium = b->medium ? b->medium : b->tier;
	const kvbm_zmq_event_form form = p->form;
	struct kvbm__announced *t = tier_for(p, b->tier);
	struct kvbm__mp body = {0};
	struct timespec ts;
	uint32_t entries = 0;

	if (!t) {
		m->failed = true;
		return;
	}
	for (size_t i = 0; i < b->count;) {
		const kvbm_event *e = &b->events[i];
		size_t run = 1;
		while (i + run < b->count && joins(&b->events[i + run - 1], &b->events[i + run]))
			run++;
		if (e->kind == KVBM_EVENT_CLEARED) {
			if (!p->cleared_once) {
				event_begin(&body, form, 1, "AllBlocksCleared");
				entries++;
				p->cleared_once = true;
			}
			entries += encode_tier_removed(&body, form, t, medium);
		} else if (e->kind == KVBM_EVENT_REMOVED) {
			event_begin(&body, form, 3, "BlockRemoved");
			event_key(&body, form, "block_hashes");
			kvbm__mp_array(&body, (uint32_t)run);
			for (size_t k = 0; k < run; k++) {
				mp_hash(&body, b->events[i + k].hash);
				kvbm__announced_del(t, b->events[i + k].hash);
			}
			event_key(&body, form, "medium");
			kvbm__mp_str(&body, medium);
			entries++;
		} else {
			encode_stored(&body, form, e, run, medium);
			for (size_t k = 0; k < run; k++)
				if (!kvbm__announced_add(t, b->events[i + k].hash))
					body.failed = true;
			entries++;
		}
		i += run;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	kvbm__mp_array(m, 3);
	kvbm__mp_f64(m, (double)ts.tv_sec + ts.tv_nsec / 1e9);
	kvbm__mp_array(m, entries);
	m->failed |= body.failed;
	if (body.len)
		kvbm__mp_raw(m, body.buf, body.len);
	free(body.buf);
	kvbm__mp_int(m, p->dp_rank);
}

static void seq_bytes(uint64_t seq, unsigned char out[8])
{
	for (int i = 0; i < 8; i++)
		out[i] = (unsigned char)(seq >> (56 - 8 * i));
}

static void keep_for_replay(kvbm_zmq_publisher *p, uint64_t seq, unsigned char *payload,
			    size_t len)
{
	pthread_mutex_lock(&p->ring_mu);
	if (p->ring_count == p->ring_cap) {
		free(p->ring[p->ring_head].payload);
		p->ring_head = (p->ring_head + 1) % p->ring_cap;
		p->ring_count--;
	}
	p->ring[(p->ring_head + p->ring_count) % p->ring_cap] =
		(struct replay_entry){.seq = seq, .payload = payload, .len = len};
	p->ring_count++;
	pthread_mutex_unlock(&p->ring_mu);
}

void kvbm_zmq_sink(const kvbm_event_batch *batch, void *publisher)
{
	kvbm_zmq_publisher *p = publisher;
	struct kvbm__mp m = {0};
	unsigned char seq[8];

	if (!p || !batch)
		return;
	pthread_mutex_lock(&p->pub_mu);
	encode(&m, p, batch);
	if (m.failed) {
		pthread_mutex_unlock(&p->pub_mu);
		free(m.buf);
		return;
	}
	const uint64_t s = p->seq++;
	seq_bytes(s, seq);
	zmq_send(p->pub, p->topic, strlen(p->topic), ZMQ_SNDMORE);
	zmq_send(p->pub, seq, sizeof(seq), ZMQ_SNDMORE);
	zmq_send(p->pub, m.buf, m.len, 0);
	atomic_fetch_add(&p->published, 1);
	/* Still under pub_mu: managers sharing the publisher must enter the
	 * ring in seq order, or a replay would send seq n+1 before n and the
	 * ring would drop a newer batch before an older one. */
	if (p->ring)
		keep_for_replay(p, s, m.buf, m.len);
	else
		free(m.buf);
	pthread_mutex_unlock(&p->pub_mu);
}

/* One replay reply to a DEALER: [identity, empty, (topic,) seq, payload].
 * vLLM >= 0.26 sends the topic as on the PUB socket (llm-d-router parses
 * replayed and live frames with one function and rejects two-frame
 * replies); older vLLM sends [seq, payload]. */
static void send_replay(kvbm_zmq_publisher *p, const void *id, size_t id_len,
			const unsigned char seq[8], const void *payload, size_t len)
{
	zmq_send(p->router, id, id_len, ZMQ_SNDMORE);
	zmq_send(p->router, "", 0, ZMQ_SNDMORE);
	if (p->framing == KVBM_ZMQ_REPLAY_TOPIC)
		zmq_send(p->router, p->topic, strlen(p->topic), ZMQ_SNDMORE);
	zmq_send(p->router, seq, 8, ZMQ_SNDMORE);
	zmq_send(p->router, payload, len, 0);
}

/* Answer one request [identity, empty, start seq] from the ring. */
static void serve_replay(kvbm_zmq_publisher *p)
{
	zmq_msg_t part[3];
	int n = 0, more = 1;

	while (more) {
		zmq_msg_t msg;
		zmq_msg_init(&msg);
		if (zmq_msg_recv(&msg, p->router, 0) < 0) {
			zmq_msg_close(&msg);
			break;
		}
		more = zmq_msg_more(&msg);
		if (n < 3)
			part[n++] = msg;
		else
			zmq_msg_close(&msg);
	}
	if (n == 3 && zmq_msg_size(&part[2]) == 8) {
		const unsigned char *b = zmq_msg_data(&part[2]);
		uint64_t start = 0;
		for (int i = 0; i < 8; i++)
			start = start << 8 | b[i];
		const void *id = zmq_msg_data(&part[0]);
		const size_t id_len = zmq_msg_size(&part[0]);
		unsigned char seq[8];
		pthread_mutex_lock(&p->ring_mu);
		for (uint32_t i = 0; i < p->ring_count; i++) {
			const struct replay_entry *e = &p->ring[(p->ring_head + i) % p->ring_cap];
			if (e->seq < start)
				continue;
			seq_bytes(e->seq, seq);
			send_replay(p, id, id_len, seq, e->payload, e->len);
		}
		pthread_mutex_unlock(&p->ring_mu);
		memset(seq, 0xff, sizeof(seq)); /* -1: end of replay */
		send_replay(p, id, id_len, seq, "", 0);
	}
	for (int i = 0; i < n; i++)
		zmq_msg_close(&part[i]);
}

static void *replay_main(void *arg)
{
	kvbm_zmq_publisher *p = arg;

	/* Poll with a timeout so a close is noticed within 50 ms. */
	while (!atomic_load(&p->stopping)) {
		zmq_pollitem_t item = {.socket = p->router, .events = ZMQ_POLLIN};
		if (zmq_poll(&item, 1, 50) > 0 && (item.revents & ZMQ_POLLIN))
			serve_replay(p);
	}
	return NULL;
}

static bool binds(const char *endpoint)
{
	return strchr(endpoint, '*') || strstr(endpoint, "::") ||
	       strncmp(endpoint, "ipc://", 6) == 0 || strncmp(endpoint, "inproc://", 9) == 0;
}

/* The endpoint a data-parallel rank uses, as vLLM's offset_endpoint_port:
 * rank 0 keeps it; tcp moves the port up by the rank; inproc, and ipc
 * (which vLLM refuses with a rank), get "_dp<rank>". NULL (errno-free)
 * when the endpoint cannot be offset or memory runs out; *bad says which. */
static char *offset_endpoint(const char *endpoint, int32_t rank, bool *bad)
{
	*bad = false;
	if (rank == 0)
		return strdup(endpoint);
	if (rank < 0) {
		*bad = true;
		return NULL;
	}
	const size_t n = strlen(endpoint);
	if (strncmp(endpoint, "inproc://", 9) == 0 || strncmp(endpoint, "ipc://", 6) == 0) {
		char *out = malloc(n + 16);
		if (out)
			snprintf(out, n + 16, "%s_dp%d", endpoint, (int)rank);
		return out;
	}
	const char *colon = strrchr(endpoint, ':');
	char *end = NULL;
	const long port = colon ? strtol(colon + 1, &end, 10) : -1;
	if (strncmp(endpoint, "tcp://", 6) != 0 || !colon || colon[1] == '\0' || *end != '\0' ||
	    port < 0 || port + rank > 65535) {
		*bad = true;
		return NULL;
	}
	char *out = malloc(n + 16);
	if (out)
		snprintf(out, n + 16, "%.*s:%ld", (int)(colon - endpoint), endpoint, port + rank);
	return out;
}

static kvbm_status fail_open(kvbm_zmq_publisher *p, kvbm_status st, char *errbuf, size_t errlen,
			     const char *what, const char *endpoint)
{
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "%s %s: %s", what, endpoint ? endpoint : "",
			 st == KVBM_E_NOMEM ? "out of memory" : zmq_strerror(zmq_errno()));
	kvbm_zmq_publisher_close(p);
	return st;
}

kvbm_status kvbm_zmq_publisher_open(const kvbm_zmq_config *cfg, kvbm_zmq_publisher **out,
				    char *errbuf, size_t errlen)
{
	if (!cfg || !out || !cfg->endpoint || !cfg->topic || cfg->hwm > INT32_MAX) {
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "config, endpoint and topic are required");
		return KVBM_E_INVAL;
	}
	if ((unsigned)cfg->event_form > KVBM_ZMQ_EVENTS_ARRAY ||
	    (unsigned)cfg->replay_framing > KVBM_ZMQ_REPLAY_LEGACY) {
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "event_form %d or replay_framing %d is unknown",
				 (int)cfg->event_form, (int)cfg->replay_framing);
		return KVBM_E_INVAL;
	}
	*out = NULL;
	kvbm_zmq_publisher *p = calloc(1, sizeof(*p));
	if (!p)
		return fail_open(NULL, KVBM_E_NOMEM, errbuf, errlen, "publisher", NULL);
	pthread_mutex_init(&p->pub_mu, NULL);
	pthread_mutex_init(&p->ring_mu, NULL);
	p->dp_rank = cfg->data_parallel_rank;
	p->form = cfg->event_form;
	p->framing = cfg->replay_framing;
	bool bad = false, bad_replay = false;
	p->endpoint = offset_endpoint(cfg->endpoint, p->dp_rank, &bad);
	if (cfg->replay_endpoint)
		p->replay_endpoint = offset_endpoint(cfg->replay_endpoint, p->dp_rank, &bad_replay);
	if (bad || bad_replay) {
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "cannot offset %s by data_parallel_rank %d",
				 bad ? cfg->endpoint : cfg->replay_endpoint,
				 (int)cfg->data_parallel_rank);
		kvbm_zmq_publisher_close(p);
		return KVBM_E_INVAL;
	}
	p->topic = strdup(cfg->topic);
	p->ctx = zmq_ctx_new();
	if (!p->topic || !p->ctx || !p->endpoint || (cfg->replay_endpoint && !p->replay_endpoint))
		return fail_open(p, KVBM_E_NOMEM, errbuf, errlen, "publisher", NULL);
	p->pub = zmq_socket(p->ctx, ZMQ_PUB);
	const int hwm = (int)cfg->hwm, linger = 1000;
	if (!p->pub || zmq_setsockopt(p->pub, ZMQ_SNDHWM, &hwm, sizeof(hwm)) != 0 ||
	    zmq_setsockopt(p->pub, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
	    (binds(p->endpoint) ? zmq_bind(p->pub, p->endpoint)
				: zmq_connect(p->pub, p->endpoint)) != 0)
		return fail_open(p, KVBM_E_IO, errbuf, errlen, "cannot open PUB", p->endpoint);
	if (p->replay_endpoint) {
		p->ring_cap = cfg->buffer_steps ? cfg->buffer_steps : 1;
		p->ring = calloc(p->ring_cap, sizeof(*p->ring));
		if (!p->ring)
			return fail_open(p, KVBM_E_NOMEM, errbuf, errlen, "replay ring", NULL);
		p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
		if (!p->router || zmq_setsockopt(p->router, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
		    zmq_bind(p->router, p->replay_endpoint) != 0)
			return fail_open(p, KVBM_E_IO, errbuf, errlen, "cannot bind ROUTER",
					 p->replay_endpoint);
		if (pthread_create(&p->replay_thread, NULL, replay_main, p) != 0)
			return fail_open(p, KVBM_E_NOMEM, errbuf, errlen, "replay thread", NULL);
		p->replay_started = true;
	}
	*out = p;
	return KVBM_OK;
}

uint64_t kvbm_zmq_published(kvbm_zmq_publisher *p)
{
	return p ? atomic_load(&p->published) : 0;
}

const char *kvbm_zmq_publisher_endpoint(const kvbm_zmq_publisher *p, bool replay)
{
	return p ? (replay ? p->replay_endpoint : p->endpoint) : NULL;
}

kvbm_status kvbm_zmq_publisher_close(kvbm_zmq_publisher *p)
{
	if (!p)
		return KVBM_OK;
	atomic_store(&p->stopping, true);
	if (p->replay_started)
		pthread_join(p->replay_thread, NULL);
	if (p->router)
		zmq_close(p->router);
	if (p->pub)
		zmq_close(p->pub);
	if (p->ctx)
		zmq_ctx_term(p->ctx);
	for (uint32_t i = 0; i < p->ring_count; i++)
		free(p->ring[(p->ring_head + i) % p->ring_cap].payload);
	free(p->ring);
	free(p->topic);
	free(p->endpoint);
	free(p->replay_endpoint);
	for (uint32_t i = 0; i < p->n_tiers; i++) {
		free(p->tiers[i].tier);
		free(p->tiers[i].slots);
	}
	free(p->tiers);
	pthread_mutex_destroy(&p->ring_mu);
	pthread_mutex_destroy(&p->pub_mu);
	free(p);
	return KVBM_OK;
}

#endif /* KVBM_HAVE_ZMQ */
