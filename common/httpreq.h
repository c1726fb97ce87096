/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * httpreq — strict HTTP/1.1 request framing for knock-ingress's public
 * listener (RFC 9112), as a push parser that knows nothing of sockets: the
 * ingress feeds it the bytes it reads, a fuzz target feeds it anything.
 *
 * Promises:
 *  - the head (request line and header fields) is copied into one buffer
 *    owned by the parser and never longer than max_head; names and values
 *    point into it, NUL-terminated, values without surrounding whitespace;
 *  - a request that a lenient parser would read differently from a strict
 *    one is refused, never guessed at: a bare CR or LF, a NUL or another
 *    control character in the request line or a field, obs-fold (a line
 *    starting with SP or HTAB), whitespace before a field's colon, a
 *    repeated or malformed Content-Length, Content-Length together with
 *    Transfer-Encoding, a repeated or missing (HTTP/1.1) Host → 400; a
 *    transfer coding other than "chunked" → 501; an HTTP version other than
 *    1.0 or 1.1 → 505; an Expect other than 100-continue → 417; a head over
 *    max_head or more than max_headers fields → 431;
 *  - httpreq_feed() stops after the head (HTTPREQ_HEAD_DONE) so the caller
 *    can decide before any body byte is taken (413, 503, 100 Continue), then
 *    after httpreq_start_body() takes exactly the body: Content-Length bytes,
 *    or chunked coding (size lines strict, extensions and trailers read and
 *    dropped, trailers bounded by max_head), never a byte of the next
 *    request; a chunked body over max_body → 413;
 *  - every length is bounded before it is used; no input makes it read or
 *    write outside its buffers, and an allocation failure is an error state
 *    (status 503), not a crash.
 *
 * Never logs; no libevent types.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "verify.h"

#define HTTPREQ_MAX_HEADERS 100
/* The public listener's bound on a head (knock-ingress(8), LIMITS), also
 * the probe's (probe.h). */
#define HTTPREQ_MAX_HEAD_BYTES (64 * 1024)

typedef enum httpreq_state {
        HTTPREQ_HEAD,      /* reading the request line and fields */
        HTTPREQ_HEAD_DONE, /* the head is parsed; waiting for httpreq_start_body() */
        HTTPREQ_BODY,      /* reading the body */
        HTTPREQ_DONE,      /* a whole request: head and body */
        HTTPREQ_ERROR,     /* status and error say why; the connection must close */
} httpreq_state;

typedef struct httpreq_limits {
        size_t max_head;    /* bytes of request line + fields + trailers */
        size_t max_headers; /* fields, at most HTTPREQ_MAX_HEADERS */
        uint64_t max_body;  /* bytes of a chunked body; Content-Length is the caller's check */
} httpreq_limits;

typedef struct httpreq {
        httpreq_limits lim;
        httpreq_state state;
        int status;        /* HTTPREQ_ERROR: the answer (400, 413, 417, 431, 501, 503, 505) */
        const char *error; /* HTTPREQ_ERROR: a static, printable reason */

        /* The head, from HTTPREQ_HEAD_DONE on: pointers into head. */
        const char *method;
        const char *target; /* origin-form: starts with '/' */
        int minor;          /* HTTP/1.minor */
        knock_header headers[HTTPREQ_MAX_HEADERS];
        size_t n_headers;
        size_t head_bytes;      /* bytes of the head on the wire */
        int64_t content_length; /* -1: none */
        bool chunked;
        bool keep_alive;
        bool expect_continue;

        /* The body, from HTTPREQ_BODY on; the caller may take it (TAKE_PTR). */
        unsigned char *body;
        size_t body_len;
        size_t body_cap;

        /* internals */
        char *head;
        size_t head_len, head_cap;
        int hs;            /* byte state */
        size_t tok;        /* start of the token being read, in head */
        size_t name_off[HTTPREQ_MAX_HEADERS], value_off[HTTPREQ_MAX_HEADERS];
        size_t method_off, target_off, version_off;
        uint64_t chunk_left;
        size_t trailer_bytes;
        bool chunk_any_digit;
} httpreq;

void httpreq_init(httpreq *r, const httpreq_limits *lim);
/* For the next request on the same connection: keeps the head buffer. */
void httpreq_reset(httpreq *r);
void httpreq_free(httpreq *r);

/* Takes bytes in state HTTPREQ_HEAD or HTTPREQ_BODY; returns how many it
 * consumed (fewer than len when it reached HTTPREQ_HEAD_DONE, HTTPREQ_DONE
 * or HTTPREQ_ERROR: the rest is not its to take). */
size_t httpreq_feed(httpreq *r, const void *data, size_t len);

/* From HTTPREQ_HEAD_DONE: reserve the body (Content-Length bytes at once)
 * and move to HTTPREQ_BODY, or straight to HTTPREQ_DONE for no body.
 * Returns 0 or -ENOMEM. */
int httpreq_start_body(httpreq *r);

/* The first field named NAME (case-insensitive), or NULL. */
const char *httpreq_header(const httpreq *r, const char *name);
