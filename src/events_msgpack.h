/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal msgpack writer for the ZeroMQ publisher (events_zmq.c): just
 * the types vLLM's KV-events format needs, appended to a growing buffer.
 * An allocation failure marks the buffer failed and the batch is dropped.
 */
#ifndef KVBM_EVENTS_MSGPACK_H
#define KVBM_EVENTS_MSGPACK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct kvbm__mp {
	unsigned char *buf;
	size_t len, cap;
	bool failed; /* an allocation failed: the batch is dropped */
};

static inline void kvbm__mp_raw(struct kvbm__mp *m, const void *p, size_t n)
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

static inline void kvbm__mp_be(struct kvbm__mp *m, unsigned char tag, uint64_t v, int bytes)
{
	unsigned char b[9];

	b[0] = tag;
	for (int i = 0; i < bytes; i++)
		b[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
	kvbm__mp_raw(m, b, (size_t)bytes + 1);
}

static inline void kvbm__mp_uint(struct kvbm__mp *m, uint64_t v)
{
	if (v < 128) {
		const unsigned char b = (unsigned char)v;
		kvbm__mp_raw(m, &b, 1);
	} else if (v <= UINT8_MAX) {
		kvbm__mp_be(m, 0xcc, v, 1);
	} else if (v <= UINT16_MAX) {
		kvbm__mp_be(m, 0xcd, v, 2);
	} else if (v <= UINT32_MAX) {
		kvbm__mp_be(m, 0xce, v, 4);
	} else {
		kvbm__mp_be(m, 0xcf, v, 8);
	}
}

static inline void kvbm__mp_int(struct kvbm__mp *m, int64_t v)
{
	if (v >= 0)
		kvbm__mp_uint(m, (uint64_t)v);
	else if (v >= -32)
		kvbm__mp_raw(m, &(unsigned char){(unsigned char)(0xe0 | (v + 32))}, 1);
	else
		kvbm__mp_be(m, 0xd3, (uint64_t)v, 8);
}

static inline void kvbm__mp_nil(struct kvbm__mp *m)
{
	kvbm__mp_raw(m, &(unsigned char){0xc0}, 1);
}

static inline void kvbm__mp_f64(struct kvbm__mp *m, double d)
{
	uint64_t bits;

	memcpy(&bits, &d, sizeof(bits));
	kvbm__mp_be(m, 0xcb, bits, 8);
}

static inline void kvbm__mp_str(struct kvbm__mp *m, const char *s)
{
	const size_t n = strlen(s);

	if (n < 32)
		kvbm__mp_raw(m, &(unsigned char){(unsigned char)(0xa0 | n)}, 1);
	else if (n <= UINT8_MAX)
		kvbm__mp_be(m, 0xd9, n, 1);
	else if (n <= UINT16_MAX)
		kvbm__mp_be(m, 0xda, n, 2);
	else if (n <= UINT32_MAX)
		kvbm__mp_be(m, 0xdb, n, 4);
	else
		m->failed = true; /* not encodable: drop the batch */
	kvbm__mp_raw(m, s, n);
}

static inline void kvbm__mp_array(struct kvbm__mp *m, uint32_t n)
{
	if (n < 16)
		kvbm__mp_raw(m, &(unsigned char){(unsigned char)(0x90 | n)}, 1);
	else if (n <= UINT16_MAX)
		kvbm__mp_be(m, 0xdc, n, 2);
	else
		kvbm__mp_be(m, 0xdd, n, 4);
}

static inline void kvbm__mp_map(struct kvbm__mp *m, uint32_t n)
{
	kvbm__mp_raw(m, &(unsigned char){(unsigned char)(0x80 | n)}, 1); /* n < 16 here */
}

#endif /* KVBM_EVENTS_MSGPACK_H */
