/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * conn — knock-ingress's public listener: accepting, connection limits,
 * timeouts, the body budget, and HTTP/1.1 framing (common/httpreq.c) over
 * plain non-blocking sockets on libevent. What a request means is main.c's business; this
 * file only gets it to main.c whole, or refuses it.
 *
 * Promises:
 *  - at most cfg->max_connections connections are open at any time: one
 *    accepted over the limit is closed at once (RST) and counted
 *    (connections_refused); accepting pauses for a moment when the process
 *    runs out of descriptors instead of spinning;
 *  - every connection is on a clock: a request's head must arrive within
 *    header_timeout of the connection's start or of the previous answer
 *    (an idle keep-alive connection is closed then too), its body within
 *    body_timeout of the head, and an answer must be taken by the client
 *    within body_timeout; only while a request waits for its commit is it
 *    off the clock;
 *  - body bytes held for unanswered requests (being read, or handed to
 *    main.c and not yet answered) never exceed cfg->max_buffered: a request
 *    that would go over is answered 503 with Retry-After before its body is
 *    read;
 *  - a connection's requests are taken one at a time (no pipelining): bytes
 *    a client sends past its request in flight are kept, at most 64 KiB,
 *    and reading stops past that;
 *  - per request, the socket costs one recv() and one sendmsg() when the
 *    answer fits it (no epoll_ctl: a connection stays registered for
 *    reading while it lives, and for writing only while an answer waits);
 *  - an answer sent before the body was read closes the connection after a
 *    short lingering read, so the client sees the answer, not a reset.
 */

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "httpreq.h"
#include "ingress.h"

typedef enum conn_verdict {
        CONN_READ_BODY, /* go on: read the body, then on_request */
        CONN_ANSWERED,  /* on_head answered (conn_reply) */
} conn_verdict;

typedef struct conn_server {
        struct event_base *base;
        const knock_config *cfg;
        uint64_t max_conns;      /* max_connections, within RLIMIT_NOFILE */
        ingest_stats *stats;
        struct evconnlistener *listeners[8];
        size_t n_listeners;
        struct event *ev_resume; /* accepting again after EMFILE */
        ingest_conn *conns;      /* every open connection */
        size_t n_conns;
        uint64_t buffered;       /* body bytes held: reading, or handed over */
        bool draining;
        /* The head is read: check what needs no body (path, method, size). */
        conn_verdict (*on_head)(ingest_conn *c, httpreq *req, void *userdata);
        /* A whole request: answer it now or later with conn_reply(). */
        void (*on_request)(ingest_conn *c, httpreq *req, void *userdata);
        void *userdata;
} conn_server;

struct ingest_conn {
        conn_server *srv;
        ingest_conn *prev, *next;
        int fd;
        struct event rev;      /* readable: registered for the connection's life */
        struct event wev;      /* writable: only while an answer did not fit the socket */
        struct event timer;
        struct event done;     /* the answer is out (activated, never a syscall) */
        httpreq req;
        ingest_item *pending;  /* handed to the writer, not answered yet */
        int state;
        bool close_after;
        bool head_request;     /* HEAD: the answer has no body */
        bool peer_closed;      /* EOF read while a request was in flight */
        bool read_paused;      /* rest is full: not reading until answered */
        size_t reserved;       /* budget held by the body being read */
        char *rest;            /* bytes read past the current request */
        size_t rest_len;
        char *wbuf;            /* what the socket did not take yet */
        size_t wlen, woff;
        size_t lingered;
        char peer[64];         /* "address:port" */
        char request_id[80];   /* X-Request-ID of the current request */
};

/* Takes cfg's limits (at start and on reload). max_connections above what
 * RLIMIT_NOFILE leaves room for is lowered to fit, with a warning. */
void conn_server_configure(conn_server *s, const knock_config *cfg);
int conn_server_listen(conn_server *s, int fd);
void conn_server_stop_accepting(conn_server *s);
/* Closes every connection (a pending item loses its connection). */
void conn_server_free(conn_server *s);

/* Answers the current request. extra: header lines ("Name: value\r\n") or
 * NULL. The connection closes after it when close is set, when the client
 * asked, when the server drains, or when the body was not read. */
void conn_reply(ingest_conn *c, int code, const char *reason, const char *content_type,
                const void *body, size_t len, const char *extra, bool close);

/* Answers with {"error": MESSAGE} as JSON; a 503 carries Retry-After. */
void conn_error(ingest_conn *c, int code, const char *reason, const char *message,
                const char *extra, bool close);

/* The body's budget moves to the caller with the request: it gives it
 * back with conn_budget_release() when the request is answered. */
size_t conn_take_budget(ingest_conn *c);
void conn_budget_release(conn_server *s, size_t n);
