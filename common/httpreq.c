/* SPDX-License-Identifier: MIT */
/*
 * httpreq — strict HTTP/1.1 request framing (see httpreq.h for the
 * promises). A byte-at-a-time state machine over the head, in the manner of
 * nginx's and picohttpparser's: every byte is classified once, so a client
 * that drips its head one byte per read costs one pass, not one per read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpreq.h"
#include "util.h"

enum {
        S_START,      /* before the request line: CRLFs are skipped */
        S_START_LF,
        S_METHOD,
        S_TARGET,
        S_VERSION,
        S_RL_LF,
        S_LINE,       /* start of a field line, or the CR of the empty line */
        S_NAME,
        S_OWS,        /* after the colon */
        S_VALUE,
        S_VALUE_LF,
        S_END_LF,
        S_CHUNK_SIZE,
        S_CHUNK_EXT,
        S_CHUNK_SIZE_LF,
        S_CHUNK_DATA,
        S_CHUNK_DATA_CR,
        S_CHUNK_DATA_LF,
        S_TRAILER_LINE,
        S_TRAILER,
        S_TRAILER_LF,
        S_TRAILER_END_LF,
        S_LENGTH,
};

#define HEAD_INITIAL 2048
#define CHUNKED_INITIAL (16 * 1024)
#define MAX_LEADING_CRLF 8

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
        static const char extra[] = "!#$%&'*+-.^_`|~";

        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr(extra, c));
}

/* field-vchar, SP and HTAB (RFC 9110 field-value, obs-text included). */
static bool is_value_char(unsigned char c)
{
        return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static size_t fail(httpreq *r, int status, const char *error, size_t consumed)
{
        r->state = HTTPREQ_ERROR;
        r->status = status;
        r->error = error;
        return consumed;
}

void httpreq_init(httpreq *r, const httpreq_limits *lim)
{
        *r = (httpreq){.lim = *lim};
        if (r->lim.max_headers > HTTPREQ_MAX_HEADERS)
                r->lim.max_headers = HTTPREQ_MAX_HEADERS;
        r->content_length = -1;
}

void httpreq_reset(httpreq *r)
{
        char *head = r->head;
        size_t cap = r->head_cap;
        httpreq_limits lim = r->lim;

        free(r->body);
        httpreq_init(r, &lim);
        r->head = head;
        r->head_cap = cap;
}

void httpreq_free(httpreq *r)
{
        free(r->body);
        free(r->head);
        *r = (httpreq){0};
}

/* Appends one byte of a token to the head copy. */
static bool head_put(httpreq *r, char c)
{
        if (r->head_len + 1 >= r->head_cap) {
                size_t cap = r->head_cap ? r->head_cap * 2 : HEAD_INITIAL;
                char *n;

                if (cap > r->lim.max_head + 1)
                        cap = r->lim.max_head + 1;
                if (cap <= r->head_len + 1)
                        return false;
                n = realloc(r->head, cap);
                if (!n)
                        return false;
                r->head = n;
                r->head_cap = cap;
        }
        r->head[r->head_len++] = c;
        return true;
}

static bool token_eq(const char *a, const char *b)
{
        return strcasecmp(a, b) == 0;
}

/* Comma-separated tokens of Connection. */
static void connection_tokens(httpreq *r, const char *v, bool *close, bool *keep)
{
        while (*v) {
                size_t n;

                v += strspn(v, " \t,");
                n = strcspn(v, " \t,");
                if (n == 5 && strncasecmp(v, "close", 5) == 0)
                        *close = true;
                else if (n == 10 && strncasecmp(v, "keep-alive", 10) == 0)
                        *keep = true;
                v += n;
        }
}

/* The head is complete: pointers, then the framing rules of RFC 9112 §6. */
static void finish_head(httpreq *r)
{
        bool close = false, keep = false, have_te = false;
        size_t hosts = 0;
        const char *v;

        r->method = r->head + r->method_off;
        r->target = r->head + r->target_off;
        for (size_t i = 0; i < r->n_headers; i++)
                r->headers[i] = (knock_header){r->head + r->name_off[i], r->head + r->value_off[i]};
        r->state = HTTPREQ_HEAD_DONE;

        v = r->head + r->version_off;
        if (streq(v, "HTTP/1.1"))
                r->minor = 1;
        else if (streq(v, "HTTP/1.0"))
                r->minor = 0;
        else if (strncmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
                 v[7] >= '0' && v[7] <= '9' && !v[8]) {
                fail(r, 505, "HTTP version not supported", 0);
                return;
        } else {
                fail(r, 400, "malformed request line", 0);
                return;
        }

        /* absolute-form (RFC 9112 §3.2.2): the path is what follows the authority. */
        if (r->target[0] != '/') {
                const char *p = NULL;

                if (strncasecmp(r->target, "http://", 7) == 0)
                        p = r->target + 7;
                else if (strncasecmp(r->target, "https://", 8) == 0)
                        p = r->target + 8;
                if (!p || !*p || *p == '/') {
                        fail(r, 400, "malformed request target", 0);
                        return;
                }
                p += strcspn(p, "/?");
                r->target = *p == '/' ? p : "/";
        }

        for (size_t i = 0; i < r->n_headers; i++) {
                const char *name = r->headers[i].name, *val = r->headers[i].value;

                if (token_eq(name, "content-length")) {
                        uint64_t n = 0;
                        size_t len = strlen(val);

                        if (r->content_length >= 0) {
                                fail(r, 400, "repeated Content-Length", 0);
                                return;
                        }
                        if (len == 0 || len > 18 || strspn(val, "0123456789") != len) {
                                fail(r, 400, "malformed Content-Length", 0);
                                return;
                        }
                        for (const char *p = val; *p; p++)
                                n = n * 10 + (uint64_t)(*p - '0');
                        r->content_length = (int64_t)n;
                } else if (token_eq(name, "transfer-encoding")) {
                        if (have_te) {
                                fail(r, 400, "repeated Transfer-Encoding", 0);
                                return;
                        }
                        have_te = true;
                        if (!token_eq(val, "chunked")) {
                                fail(r, 501, "unsupported transfer coding", 0);
                                return;
                        }
                        r->chunked = true;
                } else if (token_eq(name, "host"))
                        hosts++;
                else if (token_eq(name, "connection"))
                        connection_tokens(r, val, &close, &keep);
                else if (token_eq(name, "expect")) {
                        if (!token_eq(val, "100-continue")) {
                                fail(r, 417, "unsupported expectation", 0);
                                return;
                        }
                        r->expect_continue = r->minor == 1;
                }
        }
        if (have_te && r->content_length >= 0) {
                fail(r, 400, "Content-Length with Transfer-Encoding", 0);
                return;
        }
        if (have_te && r->minor == 0) {
                fail(r, 400, "Transfer-Encoding in an HTTP/1.0 request", 0);
                return;
        }
        if (hosts > 1 || (hosts == 0 && r->minor == 1)) {
                fail(r, 400, hosts ? "repeated Host" : "missing Host", 0);
                return;
        }
        r->keep_alive = r->minor == 1 ? !close : keep && !close;
}

/* The head, byte by byte; returns bytes consumed. */
static size_t feed_head(httpreq *r, const unsigned char *p, size_t len)
{
        size_t i;

        for (i = 0; i < len; i++) {
                unsigned char c = p[i];

                if (++r->head_bytes > r->lim.max_head)
                        return fail(r, 431, "request header fields too large", i + 1);
                switch (r->hs) {
                case S_START:
                        if (c == '\r') {
                                if (r->head_bytes > 2 * MAX_LEADING_CRLF)
                                        return fail(r, 400, "malformed request line", i + 1);
                                r->hs = S_START_LF;
                                break;
                        }
                        r->method_off = r->head_len;
                        r->hs = S_METHOD;
                        __attribute__((fallthrough));
                case S_METHOD:
                        if (c == ' ') {
                                if (r->head_len == r->method_off)
                                        return fail(r, 400, "malformed request line", i + 1);
                                if (!head_put(r, 0))
                                        goto nomem;
                                r->target_off = r->head_len;
                                r->hs = S_TARGET;
                        } else if (!is_tchar(c))
                                return fail(r, 400, "malformed request line", i + 1);
                        else if (!head_put(r, (char)c))
                                goto nomem;
                        break;
                case S_START_LF:
                        if (c != '\n')
                                return fail(r, 400, "bare CR", i + 1);
                        r->hs = S_START;
                        break;
                case S_TARGET:
                        if (c == ' ') {
                                if (r->head_len == r->target_off)
                                        return fail(r, 400, "malformed request line", i + 1);
                                if (!head_put(r, 0))
                                        goto nomem;
                                r->version_off = r->head_len;
                                r->hs = S_VERSION;
                        } else if (c <= 0x20 || c >= 0x7f)
                                return fail(r, 400, "malformed request target", i + 1);
                        else if (!head_put(r, (char)c))
                                goto nomem;
                        break;
                case S_VERSION:
                        if (c == '\r') {
                                if (!head_put(r, 0))
                                        goto nomem;
                                r->hs = S_RL_LF;
                        } else if (c <= 0x20 || c >= 0x7f || r->head_len - r->version_off >= 16)
                                return fail(r, 400, "malformed request line", i + 1);
                        else if (!head_put(r, (char)c))
                                goto nomem;
                        break;
                case S_RL_LF:
                        if (c != '\n')
                                return fail(r, 400, "bare CR", i + 1);
                        r->hs = S_LINE;
                        break;
                case S_LINE:
                        if (c == '\r') {
                                r->hs = S_END_LF;
                                break;
                        }
                        if (c == ' ' || c == '\t')
                                return fail(r, 400, "obsolete line folding", i + 1);
                        if (!is_tchar(c))
                                return fail(r, 400, c == '\n' ? "bare LF" : "malformed field name",
                                            i + 1);
                        if (r->n_headers >= r->lim.max_headers)
                                return fail(r, 431, "too many header fields", i + 1);
                        r->name_off[r->n_headers] = r->head_len;
                        r->hs = S_NAME;
                        __attribute__((fallthrough));
                case S_NAME:
                        if (c == ':') {
                                if (!head_put(r, 0))
                                        goto nomem;
                                r->value_off[r->n_headers] = r->head_len;
                                r->hs = S_OWS;
                        } else if (!is_tchar(c))
                                return fail(r, 400, c == ' ' || c == '\t'
                                                            ? "whitespace before a field's colon"
                                                            : "malformed field name",
                                            i + 1);
                        else if (!head_put(r, (char)c))
                                goto nomem;
                        break;
                case S_OWS:
                        if (c == ' ' || c == '\t')
                                break;
                        r->hs = S_VALUE;
                        __attribute__((fallthrough));
                case S_VALUE:
                        if (c == '\r') {
                                /* trailing whitespace is not part of the value */
                                while (r->head_len > r->value_off[r->n_headers] &&
                                       (r->head[r->head_len - 1] == ' ' ||
                                        r->head[r->head_len - 1] == '\t'))
                                        r->head_len--;
                                if (!head_put(r, 0))
                                        goto nomem;
                                r->n_headers++;
                                r->hs = S_VALUE_LF;
                        } else if (!is_value_char(c))
                                return fail(r, 400, c == '\n' ? "bare LF"
                                                    : c == 0  ? "NUL in a header field"
                                                              : "control character in a header field",
                                            i + 1);
                        else if (!head_put(r, (char)c))
                                goto nomem;
                        break;
                case S_VALUE_LF:
                        if (c != '\n')
                                return fail(r, 400, "bare CR", i + 1);
                        r->hs = S_LINE;
                        break;
                case S_END_LF:
                        if (c != '\n')
                                return fail(r, 400, "bare CR", i + 1);
                        finish_head(r);
                        return i + 1;
                default:
                        return fail(r, 500, "parser state", i + 1);
                }
        }
        return len;
nomem:
        return fail(r, 503, "out of memory", i + 1);
}

int httpreq_start_body(httpreq *r)
{
        if (r->state != HTTPREQ_HEAD_DONE)
                return -EINVAL;
        if (r->chunked) {
                r->body_cap = (size_t)MIN((uint64_t)CHUNKED_INITIAL, MAX(r->lim.max_body, 1));
                r->hs = S_CHUNK_SIZE;
        } else if (r->content_length > 0) {
                r->body_cap = (size_t)r->content_length;
                r->hs = S_LENGTH;
        } else {
                r->state = HTTPREQ_DONE;
                return 0;
        }
        r->body = malloc(r->body_cap);
        if (!r->body) {
                r->body_cap = 0;
                fail(r, 503, "out of memory", 0);
                return -ENOMEM;
        }
        r->state = HTTPREQ_BODY;
        return 0;
}

static bool body_grow(httpreq *r, size_t need)
{
        size_t cap = r->body_cap;
        unsigned char *n;

        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (cap > r->lim.max_body)
                cap = (size_t)r->lim.max_body;
        if (cap < need)
                return false;
        n = realloc(r->body, cap);
        if (!n)
                return false;
        r->body = n;
        r->body_cap = cap;
        return true;
}

static int hexval(unsigned char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        c |= 0x20;
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

static size_t feed_chunked(httpreq *r, const unsigned char *p, size_t len)
{
        size_t i = 0;

        while (i < len) {
                unsigned char c = p[i];
                int h;

                switch (r->hs) {
                case S_CHUNK_SIZE:
                        h = hexval(c);
                        if (h >= 0) {
                                if (r->chunk_left > (UINT64_MAX >> 4))
                                        return fail(r, 400, "chunk size too large", i + 1);
                                r->chunk_left = (r->chunk_left << 4) | (uint64_t)h;
                                r->chunk_any_digit = true;
                                i++;
                                break;
                        }
                        if (!r->chunk_any_digit)
                                return fail(r, 400, "malformed chunk size", i + 1);
                        if (c == '\r')
                                r->hs = S_CHUNK_SIZE_LF;
                        else if (c == ';' || c == ' ' || c == '\t')
                                r->hs = S_CHUNK_EXT;
                        else
                                return fail(r, 400, "malformed chunk size", i + 1);
                        i++;
                        break;
                case S_CHUNK_EXT:
                        if (++r->trailer_bytes > r->lim.max_head)
                                return fail(r, 431, "chunk extensions too large", i + 1);
                        if (c == '\r')
                                r->hs = S_CHUNK_SIZE_LF;
                        else if (!is_value_char(c))
                                return fail(r, 400, "malformed chunk extension", i + 1);
                        i++;
                        break;
                case S_CHUNK_SIZE_LF:
                        if (c != '\n')
                                return fail(r, 400, "bare CR", i + 1);
                        i++;
                        if (r->chunk_left == 0) {
                                r->hs = S_TRAILER_LINE;
                                break;
                        }
                        if (r->chunk_left > r->lim.max_body - MIN(r->lim.max_body, r->body_len))
                                return fail(r, 413, "body too large", i);
                        if (!body_grow(r, r->body_len + (size_t)r->chunk_left))
                                return fail(r, 503, "out of memory", i);
                        r->hs = S_CHUNK_DATA;
                        break;
                case S_CHUNK_DATA: {
                        size_t n = (size_t)MIN(r->chunk_left, (uint64_t)(len - i));

                        memcpy(r->body + r->body_len, p + i, n);
                        r->body_len += n;
                        r->chunk_left -= n;
                        i += n;
                        if (r->chunk_left == 0)
                                r->hs = S_CHUNK_DATA_CR;
                        break;
                }
                case S_CHUNK_DATA_CR:
                        if (c != '\r')
                                return fail(r, 400, "chunk data longer than its size", i + 1);
                        r->hs = S_CHUNK_DATA_LF;
                        i++;
                        break;
                case S_CHUNK_DATA_LF:
                        if (c != '\n')
                                return fail(r, 400, "bare CR", i + 1);
                        r->hs = S_CHUNK_SIZE;
                        r->chunk_any_digit = false;
                        i++;
                        break;
                case S_TRAILER_LINE:
                        if (c == '\r') {
                                r->hs = S_TRAILER_END_LF;
                                i++;
                                break;
                        }
                        if (!is_tchar(c))
                                return fail(r, 400, c == ' ' || c == '\t' ? "obsolete line folding"
                                                                          : "malformed trailer",
                                            i + 1);
                        r->hs = S_TRAILER;
                        __attribute__((fallthrough));
                case S_TRAILER:
                        if (++r->trailer_bytes > r->lim.max_head)
                                return fail(r, 431, "trailer fields too large", i + 1);
                        if (c == '\r')
                                r->hs = S_TRAILER_LF;
                        else if (!is_value_char(c))
                                return fail(r, 400, "malformed trailer", i + 1);
                        i++;
                        break;
                case S_TRAILER_LF:
                        if (c != '\n')
                                return fail(r, 400, "bare CR", i + 1);
                        r->hs = S_TRAILER_LINE;
                        i++;
                        break;
                case S_TRAILER_END_LF:
                        if (c != '\n')
                                return fail(r, 400, "bare CR", i + 1);
                        r->state = HTTPREQ_DONE;
                        return i + 1;
                default:
                        return fail(r, 500, "parser state", i + 1);
                }
        }
        return len;
}

size_t httpreq_feed(httpreq *r, const void *data, size_t len)
{
        const unsigned char *p = data;

        if (r->state == HTTPREQ_HEAD)
                return feed_head(r, p, len);
        if (r->state != HTTPREQ_BODY)
                return 0;
        if (r->chunked)
                return feed_chunked(r, p, len);
        {
                size_t n = MIN(len, r->body_cap - r->body_len);

                memcpy(r->body + r->body_len, p, n);
                r->body_len += n;
                if (r->body_len == r->body_cap)
                        r->state = HTTPREQ_DONE;
                return n;
        }
}

const char *httpreq_header(const httpreq *r, const char *name)
{
        for (size_t i = 0; i < r->n_headers; i++)
                if (strcasecmp(r->headers[i].name, name) == 0)
                        return r->headers[i].value;
        return NULL;
}
