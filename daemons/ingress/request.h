/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * request — what a request to the public listener means (contract §5):
 * conn.c brings it whole or refuses it, this module decides it.
 *
 * Promises:
 *  - request_on_head() answers what needs no body before a byte of it is
 *    buffered: draining (503), wrong path (404), wrong method (405), a
 *    declared body over max_body (413, recorded without its body);
 *  - request_on_request() verifies the signature over the raw body and
 *    answers a rejection (401) at once; a verified request is handed to the
 *    writer and answered by request_on_stored() only once its transaction
 *    committed, so a 2xx always means "on disk";
 *  - a rejected delivery is stored best effort, within the orphan budget (a
 *    token bucket of orphan_rate rows, room for orphan_burst) and with at
 *    most orphan_body bytes of its body; over the budget it is counted and
 *    dropped (a non-2xx promises nothing);
 *  - the writer's queue is bounded: while more than max_connections +
 *    orphan_burst + 1024 items wait for it, a verified request is answered
 *    503 and a rejected one is not stored;
 *  - what is stored is redacted: credential headers (Authorization, Cookie,
 *    the token provider's header …) and secret query parameters
 *    (hub.verify_token) are stored as "[redacted]"; verification sees the
 *    request as received;
 *  - a connection has at most one item in flight; when it closes first,
 *    conn.c detaches the item, which is still stored, and its answer is
 *    dropped. Records a client can trigger are rate-limited.
 */

#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdint.h>

#include "admin.h"
#include "conn.h"
#include "daemon.h"
#include "ingress.h"
#include "log.h"

/* The daemon: set up by main.c, shared with the request path. */
typedef struct ingress {
        knock_daemon d;
        conn_server srv;
        struct evhttp *http_admin;
        ingest_writer writer;
        ingest_stats stats;
        admin admin;
        bool draining;
        struct event *ev_drain_timeout;
        log_ratelimit rl_invalid;
        log_ratelimit rl_storage;
        log_ratelimit rl_orphans;
        /* the orphan budget: a token bucket of rows */
        double orphan_tokens;
        int64_t orphan_refill_ms;
} ingress;

/* conn_server's callbacks; userdata is the ingress. */
conn_verdict request_on_head(ingest_conn *c, httpreq *req, void *userdata);
void request_on_request(ingest_conn *c, httpreq *req, void *userdata);
/* The writer's hand-back (writer_start's on_done): answers each stored item. */
void request_on_stored(evutil_socket_t fd, short what, void *userdata);
/* After the loop: frees what the writer finished since, answering nothing
 * (their clients get a closed connection, never a false 2xx). */
void request_drop_stored(ingress *in);
/* Draining and nothing left with the writer: ends the loop. */
void request_finish_drain(ingress *in);
