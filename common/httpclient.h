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
 *  - connections never retry and time out after the timeout given when they
 *    were made (connect, write and read alike).
 *
 * Never logs; returns negative errno.
 */

#include <event2/dns.h>
#include <event2/event.h>
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

typedef struct http_conn {
        struct evhttp_connection *evcon;
        SSL *ssl;  /* owned by the bufferevent; kept to read the verify result */
        char *key; /* what it may be reused for */
        bool busy;
        bool broken;
} http_conn;

typedef struct http_pool {
        struct event_base *base;
        struct evdns_base *dns;  /* NULL: the blocking system resolver */
        size_t max_headers_size; /* for responses; 0: libevent's default (none) */
        SSL_CTX *ssl_ctx;        /* owned; made on first https use when NULL */
        http_conn **conns;
        size_t n_conns;
} http_pool;

void http_pool_init(http_pool *p, struct event_base *base, struct evdns_base *dns,
                    size_t max_headers_size);
/* Frees every connection and the TLS context; the pool can be used again. */
void http_pool_clear(http_pool *p);

/*
 * An idle connection for key (t's url or origin: the caller's choice of what
 * may share a connection), or a new one to t made with timeout_ms. Broken
 * idle connections are freed first. Never called from an evhttp callback.
 */
int http_pool_get(http_pool *p, const http_target *t, const char *key, uint64_t timeout_ms,
                  size_t max_conns, http_conn **ret);

/* Sends req (method cmd, request target path) on c and marks c busy. On
 * failure libevent has freed req, c is marked broken and -EIO returned. */
int http_conn_send(http_conn *c, struct evhttp_request *req, enum evhttp_cmd_type cmd,
                   const char *path);
/* Gives *c back to its pool (broken: never to be reused) and clears *c. */
void http_conn_release(http_conn **c, bool broken);

/* A request error in words ("timed out", "connection failed", ...). */
const char *http_request_error_string(enum evhttp_request_error err);
