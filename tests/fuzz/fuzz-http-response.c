/* SPDX-License-Identifier: MIT */
/*
 * fuzz-http-response — the outbound client's response framing
 * (http_parser_feed, http_parser_eof in common/httpclient.c) on any bytes a
 * peer may send on one keep-alive connection.
 *
 * An input is two bytes of settings, then the bytes the peer sends:
 *   byte 0: the body bound (max_body) and the head bound (max_head), from
 *           small tables, so both limits are crossed;
 *   byte 1: the size of the pieces the bytes arrive in (0: all at once),
 *           and whether the peer closes the connection at the end.
 * Responses are read one after another, as on a kept-alive connection:
 * after each whole response the parser is reset and reads what is left.
 *
 * Beyond what ASan and UBSan catch, it aborts when the parser breaks its
 * bounds (body over max_body, a body not NUL terminated, a status outside
 * 100..999, Retry-After not terminated) or when the pieces change the
 * outcome: every response must read the same fed whole and fed in pieces.
 */

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpclient.h"
#include "util.h"

#define MAX_RESPONSES 64

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* What one response read: enough to compare two runs. */
typedef struct outcome {
        int r;
        int status;
        bool keep_alive, close;
        size_t body_len, body_dropped;
        unsigned long body_hash;
        char retry_after[64];
        const char *error;
} outcome;

static unsigned long hash(const unsigned char *p, size_t n)
{
        unsigned long h = 5381;

        for (size_t i = 0; i < n; i++)
                h = h * 33 + p[i];
        return h;
}

static void check_bounds(const http_parser *p)
{
        if (p->body_len > p->max_body || (p->body_len > 0 && (!p->body || p->body[p->body_len])) ||
                memchr(p->retry_after, 0, sizeof(p->retry_after)) == NULL) {
                fprintf(stderr, "fuzz-http-response: parser out of bounds\n");
                abort();
        }
}

static void record(const http_parser *p, int r, outcome *o)
{
        check_bounds(p);
        *o = (outcome){
                .r = r,
                .error = r < 0 ? p->error : NULL,
        };
        if (r < 0 && !p->error) {
                fprintf(stderr, "fuzz-http-response: an error without a reason\n");
                abort();
        }
        if (r != 1)
                return;
        if (p->status < 100 || p->status > 999) {
                fprintf(stderr, "fuzz-http-response: status %d\n", p->status);
                abort();
        }
        o->status = p->status;
        o->keep_alive = p->keep_alive;
        o->close = p->close;
        o->body_len = p->body_len;
        o->body_dropped = p->body_dropped;
        o->body_hash = hash(p->body, p->body_len);
        if (p->has_retry_after)
                memcpy(o->retry_after, p->retry_after, sizeof(o->retry_after));
}

/* Reads responses from data arriving in pieces of step bytes (0: at once). Returns how many
 * outcomes it wrote; the last one is the error or the end of the stream. */
static size_t run(const unsigned char *data, size_t size, size_t step, bool eof, size_t max_head,
        size_t max_body, outcome *out)
{
        struct evbuffer *in = evbuffer_new();
        http_parser p = {};
        size_t n = 0, off = 0;
        int r = 0;

        if (!in)
                abort();
        http_parser_reset(&p, max_head, max_body);
        while (n < MAX_RESPONSES) {
                size_t piece = step ? MIN(step, size - off) : size - off;

                if (piece > 0) {
                        evbuffer_add(in, data + off, piece);
                        off += piece;
                }
                r = http_parser_feed(&p, in);
                check_bounds(&p);
                if (r == 1) {
                        record(&p, r, &out[n++]);
                        if (p.close)
                                break; /* the connection ends with this response */
                        http_parser_reset(&p, max_head, max_body);
                        continue;
                }
                if (r < 0 || off == size)
                        break;
        }
        if (r == 0 && n < MAX_RESPONSES) {
                /* All sent and the response unfinished: the peer closes, or we wait. */
                if (eof && (p.head_bytes > 0 || p.state != HP_STATUS))
                        r = http_parser_eof(&p);
                record(&p, r, &out[n++]);
        } else if (r < 0)
                record(&p, r, &out[n++]);
        http_parser_free(&p);
        evbuffer_free(in);
        return n;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
        static const size_t bodies[] = {0, 1, 7, 64, 4096, 1 << 20};
        static const size_t heads[] = {64, 200, 4096, HTTP_MAX_HEAD_DEFAULT};
        outcome whole[MAX_RESPONSES + 1], pieces[MAX_RESPONSES + 1];
        size_t nw, np, step, max_body, max_head;
        bool eof;

        if (size < 2)
                return -1;
        max_body = bodies[(data[0] & 7) % ELEMENTSOF(bodies)];
        max_head = heads[(data[0] >> 3) % ELEMENTSOF(heads)];
        step = data[1] & 0x7f;
        eof = data[1] & 0x80;
        data += 2;
        size -= 2;

        nw = run(data, size, 0, eof, max_head, max_body, whole);
        if (step == 0)
                return 0;
        np = run(data, size, step, eof, max_head, max_body, pieces);
        /* Pieces can only end a stream later, never differently: a response one run read
         * whole the other must read the same. */
        for (size_t i = 0; i < MIN(nw, np); i++) {
                const outcome *a = &whole[i], *b = &pieces[i];

                if (a->r != b->r || a->status != b->status || a->keep_alive != b->keep_alive ||
                        a->close != b->close || a->body_len != b->body_len ||
                        a->body_dropped != b->body_dropped || a->body_hash != b->body_hash ||
                        strcmp(a->retry_after, b->retry_after) != 0 ||
                        !streq_ptr(a->error, b->error)) {
                        fprintf(stderr,
                                "fuzz-http-response: response %zu reads differently in pieces of "
                                "%zu: %d/%d status %d/%d body %zu/%zu error %s/%s\n",
                                i, step, a->r, b->r, a->status, b->status, a->body_len, b->body_len,
                                a->error ? a->error : "-", b->error ? b->error : "-");
                        abort();
                }
        }
        if (nw != np) {
                fprintf(stderr, "fuzz-http-response: %zu responses whole, %zu in pieces\n", nw, np);
                abort();
        }
        return 0;
}
