/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * httpclient — the outbound HTTP(S) client pieces every knock daemon that
 * POSTs somewhere shares: the worker's http(s) handlers and the deliverer's
 * completion hooks. One URL parser, one TLS client context, one pool of
 * keep-alive libevent connections.
 *
 * Promises:
 *  - http_target_parse() accepts http and https URLs with a host only; the
 *    port defaults to 80/443; path is path and query, "/" at least; hostport
 *    is the Host header (brackets around an IPv6 literal, ":port" only when
 *    it is not the scheme's default); origin is "scheme://host:port";
 *  - the TLS context verifies peers against the system trust store (plus one
 *    extra CA file when given) and speaks TLS 1.2 at least;
 *  - every https connection checks the peer's certificate against the host
 *    name, or against the IP address for a literal, and sends SNI for names
 *    only (RFC 6066 forbids literals there); a check that cannot be set up
 *    fails the connection instead of connecting unchecked;
 *  - a pooled connection carries one request at a time (busy), and one the
 *    peer closed or that failed (broken) is never handed out again: it is
 *    freed on the next http_pool_get() once idle. The pool stays bounded: at
 *    max_conns, an idle connection to another key makes room;
 *  - connections never retry; a request ends within the timeout given when
 *    its connection was made (connect, write and read together);
 *  - HTTP/1.1 on knock's own framing over libevent bufferevents (evhttp's
 *    client allocated and formatted every header and cost four epoll_ctl
 *    calls per request): a request goes out in one sendmsg() when the socket
 *    takes it, the connection stays registered for reading while it lives,
 *    responses are framed by Content-Length, chunked coding or close, and a
 *    response's head is bounded.
 *
 * Never logs; returns negative errno.
 */

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct http_target {
        char *url;
        bool https;
        char *host;     /* as in the URL, without brackets */
        int port;
        char *path;     /* path and query, "/" at least */
        char *hostport; /* the Host header */
        char *origin;   /* "scheme://host:port", a pool key */
        bool ip_literal;
} http_target;

int http_target_parse(const char *url, http_target *ret);
void http_target_clear(http_target *t);

/* A client context on the system trust store, plus extra_ca_file (a PEM
 * file) when it is neither NULL nor empty: -ENOENT when that does not load. */
int http_tls_context(const char *extra_ca_file, SSL_CTX **ret);

/*
 * A response parser: HTTP/1.1 and 1.0 responses read from an evbuffer as
 * they arrive. Status line, headers (Content-Length, Transfer-Encoding,
 * Connection and Retry-After are read, the rest skipped), then a body framed
 * by Content-Length, chunked coding or the end of the connection; 1xx
 * interim responses are skipped. The head (status line, headers, trailers)
 * is bounded by max_head; the first max_body bytes of the body are kept (NUL
 * terminated), the rest read and counted. Exposed for the unit tests.
 */
typedef enum http_parse_state {
        HP_STATUS,
        HP_HEADERS,
        HP_BODY_LENGTH,
        HP_CHUNK_SIZE,
        HP_CHUNK_DATA,
        HP_CHUNK_END,
        HP_TRAILERS,
        HP_BODY_EOF,
        HP_DONE,
} http_parse_state;

typedef struct http_parser {
        http_parse_state state;
        size_t max_head, max_body;
        size_t head_bytes; /* status line, headers and trailers read so far */
        int status;
        bool http10, keep_alive, close, chunked, has_length;
        uint64_t remaining; /* body or chunk bytes still to come */
        unsigned char *body; /* max_body + 1 bytes, made on first use */
        size_t body_len, body_dropped;
        char retry_after[64];
        bool has_retry_after;
        const char *error; /* why the response was refused */
} http_parser;

/* Ready for a response: keeps the body buffer when max_body is unchanged. */
void http_parser_reset(http_parser *p, size_t max_head, size_t max_body);
void http_parser_free(http_parser *p);
/* Reads what it can from in: 1 when a whole response is read (state
 * HP_DONE; bytes after it are left in in), 0 when more is needed, -EBADMSG
 * when the response is malformed or too large (error says which). */
int http_parser_feed(http_parser *p, struct evbuffer *in);
/* The peer closed: 1 when that ends the response (a body read to the end
 * of the connection), else -EPIPE (error says which). */
int http_parser_eof(http_parser *p);

typedef struct http_response {
        int status;                /* 0: no response, error says why */
        bool timed_out;            /* no response within the connection's timeout */
        const char *error;         /* NULL with a response */
        const char *retry_after;   /* the Retry-After header or NULL */
        const unsigned char *body; /* the body's first max_body bytes, NUL terminated */
        size_t body_len;
        size_t body_dropped; /* body bytes read beyond max_body */
} http_response;

typedef struct http_conn http_conn;
/* Called once per request, from the event loop; what r points to lives
 * until the callback returns. */
typedef void (*http_done_fn)(http_conn *c, const http_response *r, void *userdata);

typedef struct http_pool http_pool;

struct http_conn {
        http_pool *pool;
        struct bufferevent *bev; /* NULL once closed */
        SSL *ssl;  /* owned by the bufferevent; kept to read the verify result */
        char *key; /* what it may be reused for */
        char *hostport;
        uint64_t timeout_ms;
        struct event *ev_timer; /* the request's deadline; also runs a failure found early */
        bool busy;
        bool broken;
        bool connected;
        bool in_request; /* a request is out and done has not been called */
        bool fail_pending;
        char *error; /* why the connection failed, when it did */
        char *head;  /* the request head being built */
        size_t head_cap;
        http_parser parser;
        http_done_fn done;
        void *userdata;
};

struct http_pool {
        struct event_base *base;
        struct evdns_base *dns;  /* NULL: the blocking system resolver */
        size_t max_headers_size; /* for responses; 0: HTTP_MAX_HEAD_DEFAULT */
        SSL_CTX *ssl_ctx;        /* owned; made on first https use when NULL */
        http_conn **conns;
        size_t n_conns;
};

#define HTTP_MAX_HEAD_DEFAULT (64 * 1024)

void http_pool_init(http_pool *p, struct event_base *base, struct evdns_base *dns,
                    size_t max_headers_size);
/* Frees every connection and the TLS context; the pool can be used again.
 * Requests still out end without their done being called. */
void http_pool_clear(http_pool *p);

/*
 * An idle connection for key (t's url or origin: the caller's choice of what
 * may share a connection), or a new one to t whose requests each end within
 * timeout_ms (connecting, writing and reading together). Broken idle
 * connections are freed first.
 */
int http_pool_get(http_pool *p, const http_target *t, const char *key, uint64_t timeout_ms,
                  size_t max_conns, http_conn **ret);

/*
 * POSTs body to path on c and marks c busy: the head is the request line,
 * Host, Content-Length and then headers (complete "Name: value\r\n" lines,
 * headers_len bytes). done is called exactly once, later, from the event
 * loop (never from inside this call), unless http_conn_abort() comes first.
 * A connection that cannot be used reports through done as well. -ENOMEM
 * only when the request could not be built. done must not call
 * http_pool_get() (it may free the connection under the callback).
 */
int http_conn_post(http_conn *c, const char *path, const char *headers, size_t headers_len,
                   const void *body, size_t body_len, size_t max_body, http_done_fn done,
                   void *userdata);
/* Ends c's request without calling done; c is broken. */
void http_conn_abort(http_conn *c);
/* Gives *c back to its pool (broken: never to be reused) and clears *c. */
void http_conn_release(http_conn **c, bool broken);
