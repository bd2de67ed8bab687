/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ZeroMQ event publisher: kvbm event batches re-encoded as vLLM's
 * KVEventBatch (msgpack maps, see kvbm.h) on a PUB socket, with a ring of
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

/* ---- a minimal msgpack writer: just the types the format needs ---- */

struct mp {
	unsigned char *buf;
	size_t len, cap;
	bool failed; /* an allocation failed: the batch is dropped */
};

static void mp_raw(struct mp *m, const void *p, size_t n)
{
	if (m->failed)
		return;
	if (m->len + n > m->cap) {
		size_t cap = m->cap ? m->cap : 256;
		while (cap < m->len + n)
			cap *= 2;
		unsigned char *b = realloc(m->buf, cap);
		if (!b) {
			m->failed = true;
			return;
		}
		m->buf = b;
		m->cap = cap;
	}
	memcpy(m->buf + m->len, p, n);
	m->len += n;
}

static void mp_be(struct mp *m, unsigned char tag, uint64_t v, int bytes)
{
	unsigned char b[9];

	b[0] = tag;
	for (int i = 0; i < bytes; i++)
		b[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
	mp_raw(m, b, (size_t)bytes + 1);
}

static void mp_uint(struct mp *m, uint64_t v)
{
	if (v < 128) {
		const unsigned char b = (unsigned char)v;
		mp_raw(m, &b, 1);
	} else if (v <= UINT8_MAX) {
		mp_be(m, 0xcc, v, 1);
	} else if (v <= UINT16_MAX) {
		mp_be(m, 0xcd, v, 2);
	} else if (v <= UINT32_MAX) {
		mp_be(m, 0xce, v, 4);
	} else {
		mp_be(m, 0xcf, v, 8);
	}
}

static void mp_int(struct mp *m, int64_t v)
{
	if (v >= 0)
		mp_uint(m, (uint64_t)v);
	else if (v >= -32)
		mp_raw(m, &(unsigned char){(unsigned char)(0xe0 | (v + 32))}, 1);
	else
		mp_be(m, 0xd3, (uint64_t)v, 8);
}

static void mp_nil(struct mp *m)
{
	mp_raw(m, &(unsigned char){0xc0}, 1);
}

static void mp_f64(struct mp *m, double d)
{
	uint64_t bits;

	memcpy(&bits, &d, sizeof(bits));
	mp_be(m, 0xcb, bits, 8);
}

static void mp_str(struct mp *m, const char *s)
{
	const size_t n = strlen(s);

	if (n < 32)
		mp_raw(m, &(unsigned char){(unsigned char)(0xa0 | n)}, 1);
	else if (n <= UINT8_MAX)
		mp_be(m, 0xd9, n, 1);
	else if (n <= UINT16_MAX)
		mp_be(m, 0xda, n, 2);
	else if (n <= UINT32_MAX)
		mp_be(m, 0xdb, n, 4);
	else
		m->failed = true; /* not encodable: drop the batch */
	mp_raw(m, s, n);
}

static void mp_array(struct mp *m, uint32_t n)
{
	if (n < 16)
		mp_raw(m, &(unsigned char){(unsigned char)(0x90 | n)}, 1);
	else if (n <= UINT16_MAX)
		mp_be(m, 0xdc, n, 2);
	else
		mp_be(m, 0xdd, n, 4);
}

static void mp_map(struct mp *m, uint32_t n)
{
	mp_raw(m, &(unsigned char){(unsigned char)(0x80 | n)}, 1); /* n < 16 here */
}

/* ---- the publisher ---- */

struct replay_entry {
	uint64_t seq;
	unsigned char *payload;
	size_t len;
};

struct kvbm_zmq_publisher {
	void *ctx, *pub, *router;
	char *topic;
	int32_t dp_rank;
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

/* One kvbm batch -> one KVEventBatch payload. Runs of STORED events that
 * extend one chain, and runs of REMOVED events, become one entry each. */
static void encode(struct mp *m, const kvbm_event_batch *b, int32_t dp_rank)
{
	struct timespec ts;
	uint32_t entries = 0;

	for (size_t i = 0; i < b->count; i++) {
		const kvbm_event *e = &b->events[i], *p = i ? &b->events[i - 1] : NULL;
		const bool joins = p && p->kind == e->kind &&
				   (e->kind == KVBM_EVENT_REMOVED ||
				    (e->kind == KVBM_EVENT_STORED && e->parent_hash == p->hash &&
				     e->num_tokens == p->num_tokens));
		entries += !joins;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	mp_map(m, 3);
	mp_str(m, "ts");
	mp_f64(m, (double)ts.tv_sec + ts.tv_nsec / 1e9);
	mp_str(m, "events");
	mp_array(m, entries);
	for (size_t i = 0; i < b->count;) {
		const kvbm_event *e = &b->events[i];
		size_t run = 1;
		if (e->kind != KVBM_EVENT_CLEARED)
			while (i + run < b->count && b->events[i + run].kind == e->kind &&
			       (e->kind == KVBM_EVENT_REMOVED ||
				(b->events[i + run].parent_hash == b->events[i + run - 1].hash &&
				 b->events[i + run].num_tokens == e->num_tokens)))
				run++;
		if (e->kind == KVBM_EVENT_CLEARED) {
			mp_map(m, 1);
			mp_str(m, "type");
			mp_str(m, "AllBlocksCleared");
		} else if (e->kind == KVBM_EVENT_REMOVED) {
			mp_map(m, 3);
			mp_str(m, "type");
			mp_str(m, "BlockRemoved");
			mp_str(m, "block_hashes");
			mp_array(m, (uint32_t)run);
			for (size_t k = 0; k < run; k++)
				mp_uint(m, b->events[i + k].hash);
			mp_str(m, "medium");
			mp_str(m, b->tier);
		} else {
			mp_map(m, 8);
			mp_str(m, "type");
			mp_str(m, "BlockStored");
			mp_str(m, "block_hashes");
			mp_array(m, (uint32_t)run);
			for (size_t k = 0; k < run; k++)
				mp_uint(m, b->events[i + k].hash);
			mp_str(m, "parent_block_hash");
			if (e->parent_hash)
				mp_uint(m, e->parent_hash);
			else
				mp_nil(m);
			mp_str(m, "token_ids");
			mp_array(m, 0);
			mp_str(m, "block_size");
			mp_uint(m, e->num_tokens);
			mp_str(m, "lora_id");
			mp_nil(m);
			mp_str(m, "medium");
			mp_str(m, b->tier);
			mp_str(m, "lora_name");
			mp_nil(m);
		}
		i += run;
	}
	mp_str(m, "data_parallel_rank");
	mp_int(m, dp_rank);
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
	struct mp m = {0};
	unsigned char seq[8];

	if (!p || !batch)
		return;
	encode(&m, batch, p->dp_rank);
	if (m.failed) {
		free(m.buf);
		return;
	}
	pthread_mutex_lock(&p->pub_mu);
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
			zmq_send(p->router, id, id_len, ZMQ_SNDMORE);
			zmq_send(p->router, "", 0, ZMQ_SNDMORE);
			zmq_send(p->router, seq, 8, ZMQ_SNDMORE);
			zmq_send(p->router, e->payload, e->len, 0);
		}
		pthread_mutex_unlock(&p->ring_mu);
		memset(seq, 0xff, sizeof(seq)); /* -1: end of replay */
		zmq_send(p->router, id, id_len, ZMQ_SNDMORE);
		zmq_send(p->router, "", 0, ZMQ_SNDMORE);
		zmq_send(p->router, seq, 8, ZMQ_SNDMORE);
		zmq_send(p->router, "", 0, 0);
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
	*out = NULL;
	kvbm_zmq_publisher *p = calloc(1, sizeof(*p));
	if (!p)
		return fail_open(NULL, KVBM_E_NOMEM, errbuf, errlen, "publisher", NULL);
	pthread_mutex_init(&p->pub_mu, NULL);
	pthread_mutex_init(&p->ring_mu, NULL);
	p->dp_rank = cfg->data_parallel_rank;
	p->topic = strdup(cfg->topic);
	p->ctx = zmq_ctx_new();
	if (!p->topic || !p->ctx)
		return fail_open(p, KVBM_E_NOMEM, errbuf, errlen, "publisher", NULL);
	p->pub = zmq_socket(p->ctx, ZMQ_PUB);
	const int hwm = (int)cfg->hwm, linger = 1000;
	if (!p->pub || zmq_setsockopt(p->pub, ZMQ_SNDHWM, &hwm, sizeof(hwm)) != 0 ||
	    zmq_setsockopt(p->pub, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
	    (binds(cfg->endpoint) ? zmq_bind(p->pub, cfg->endpoint)
				  : zmq_connect(p->pub, cfg->endpoint)) != 0)
		return fail_open(p, KVBM_E_IO, errbuf, errlen, "cannot open PUB", cfg->endpoint);
	if (cfg->replay_endpoint) {
		p->ring_cap = cfg->buffer_steps ? cfg->buffer_steps : 1;
		p->ring = calloc(p->ring_cap, sizeof(*p->ring));
		if (!p->ring)
			return fail_open(p, KVBM_E_NOMEM, errbuf, errlen, "replay ring", NULL);
		p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
		if (!p->router || zmq_setsockopt(p->router, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
		    zmq_bind(p->router, cfg->replay_endpoint) != 0)
			return fail_open(p, KVBM_E_IO, errbuf, errlen, "cannot bind ROUTER",
					 cfg->replay_endpoint);
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
	pthread_mutex_destroy(&p->ring_mu);
	pthread_mutex_destroy(&p->pub_mu);
	free(p);
	return KVBM_OK;
}

#endif /* KVBM_HAVE_ZMQ */
