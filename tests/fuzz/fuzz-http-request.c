/* SPDX-License-Identifier: MIT */
/*
 * fuzz-http-request — the public listener's request framing (httpreq_feed,
 * httpreq_start_body in common/httpreq.c) on any bytes a client may send on
 * one keep-alive connection.
 *
 * An input is one byte of settings, then the bytes the client sends:
 *   byte 0: low nibble, the size of the pieces the bytes arrive in (0: all
 *           at once); high nibble, the body bound (max_body) from a table.
 * Requests are read one after another, as on a kept-alive connection: after
 * each whole request the parser is reset and reads what is left.
 *
 * Beyond what ASan and UBSan catch, it aborts when the parser breaks its
 * promises (a consumed count past what it was given, a head over max_head,
 * more fields than max_headers, a name or value outside the head buffer or
 * holding a byte the grammar forbids, a body over max_body or other than
 * Content-Length says) or when the pieces change the outcome: every request
 * must read the same fed whole and fed in pieces.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpreq.h"
#include "util.h"

#define MAX_REQUESTS 64

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

typedef struct outcome {
        int state, status;
        size_t used, n_headers, body_len;
        unsigned long hash;
} outcome;

static unsigned long hash(const void *p, size_t n, unsigned long h)
{
        const unsigned char *b = p;

        for (size_t i = 0; i < n; i++)
                h = h * 33 + b[i];
        return h;
}

static void fail(const char *what)
{
        fprintf(stderr, "fuzz-http-request: %s\n", what);
        abort();
}

static void check(const httpreq *r)
{
        if (r->head_bytes > r->lim.max_head + 1)
                fail("head over max_head");
        if (r->n_headers > r->lim.max_headers)
                fail("more fields than max_headers");
        if (r->state == HTTPREQ_HEAD_DONE || r->state == HTTPREQ_BODY || r->state == HTTPREQ_DONE) {
                for (size_t i = 0; i < r->n_headers; i++) {
                        const char *n = r->headers[i].name, *v = r->headers[i].value;

                        if (n < r->head || n >= r->head + r->head_len || v < r->head ||
                            v >= r->head + r->head_len)
                                fail("a field outside the head");
                        if (!*n || strpbrk(n, " \t\r\n:"))
                                fail("a field name the grammar forbids");
                        for (const char *p = v; *p; p++)
                                if ((unsigned char)*p < 0x20 && *p != '\t')
                                        fail("a control character in a value");
                }
        }
        if (r->body_len > r->body_cap || r->body_len > r->lim.max_body)
                fail("body over its bounds");
        if (r->state == HTTPREQ_DONE && !r->chunked && r->content_length >= 0 &&
            r->body_len != (size_t)r->content_length)
                fail("body other than Content-Length");
}

/* Reads requests from data in pieces of step bytes (0: whole); records up
 * to MAX_REQUESTS outcomes. */
static size_t run(const unsigned char *data, size_t size, size_t step, const httpreq_limits *lim,
                  outcome *out)
{
        httpreq r;
        size_t off = 0, n = 0;

        httpreq_init(&r, lim);
        while (n < MAX_REQUESTS) {
                size_t start = off;

                for (;;) {
                        size_t piece = step ? MIN(step, size - off) : size - off;
                        size_t k;

                        if (r.state == HTTPREQ_HEAD_DONE) {
                                if (r.content_length > 0 && (uint64_t)r.content_length > lim->max_body)
                                        break; /* the listener answers 413 here */
                                if (httpreq_start_body(&r) < 0)
                                        break;
                                check(&r);
                                continue;
                        }
                        if (r.state != HTTPREQ_HEAD && r.state != HTTPREQ_BODY)
                                break;
                        if (off >= size)
                                break;
                        k = httpreq_feed(&r, data + off, piece);
                        if (k > piece)
                                fail("consumed more than it was given");
                        off += k;
                        check(&r);
                        if (k == 0 && (r.state == HTTPREQ_HEAD || r.state == HTTPREQ_BODY))
                                fail("took nothing and asked for more");
                }
                memset(&out[n], 0, sizeof(out[n])); /* padding too: compared with memcmp */
                out[n].state = r.state;
                out[n].status = r.status;
                out[n].used = off - start;
                out[n].n_headers = r.n_headers;
                out[n].body_len = r.body_len;
                out[n].hash = hash(r.body, r.body_len,
                                   r.target ? hash(r.target, strlen(r.target), 5381) : 0);
                n++;
                if (r.state != HTTPREQ_DONE || off >= size)
                        break;
                httpreq_reset(&r);
        }
        httpreq_free(&r);
        return n;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
        static const uint64_t bodies[] = {0, 1, 16, 1000, 65536, 1 << 20};
        static outcome whole[MAX_REQUESTS], pieces[MAX_REQUESTS];
        httpreq_limits lim = {.max_head = 4096, .max_headers = 32};
        size_t n1, n2, step;

        if (size < 1)
                return 0;
        step = data[0] & 0x0f;
        lim.max_body = bodies[(data[0] >> 4) % ELEMENTSOF(bodies)];
        if (lim.max_body == 0)
                lim.max_body = 1;
        data++, size--;

        n1 = run(data, size, 0, &lim, whole);
        n2 = run(data, size, step ? step : 1, &lim, pieces);
        if (n1 != n2 || memcmp(whole, pieces, n1 * sizeof(outcome)) != 0)
                fail("the pieces changed the outcome");
        return 0;
}
