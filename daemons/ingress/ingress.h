/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * knock-ingress internals: the HTTP front (main.c, on the event loop) and
 * the writer (writer.c, its own thread and SQLite connection).
 *
 * Pipelined group commit: the loop parses and verifies a request, turns it
 * into an ingest_item and hands it to the writer. The writer takes every
 * item queued so far, stores them in ONE transaction, commits with
 * synchronous=FULL, and hands the batch back; only then does the loop send
 * the 2xx of each item. While the writer commits, the loop keeps reading,
 * so the next batch grows during the fsync of this one.
 */

#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef struct ingest_conn ingest_conn;

typedef enum ingest_kind {
        INGEST_EVENT,     /* verified: delivery + event (or duplicate) */
        INGEST_HANDSHAKE, /* verified setup handshake: delivery, no event */
        INGEST_ORPHAN,    /* rejected (401/413): delivery only, best effort */
        INGEST_HEARTBEAT, /* the daemons row: written by the writer, never blocking the loop */
} ingest_kind;

typedef struct ingest_item {
        struct ingest_item *next;
        ingest_kind kind;

        /* set by the loop */
        ingest_conn *conn;          /* NULL once the client went away, or answered */
        size_t budget;              /* body bytes counted in the listener's budget */
        char delivery_id[KNOCK_ID_MAX];
        char event_id[KNOCK_ID_MAX]; /* new id; replaced by the existing one on duplicate */
        char request_id[80];
        int64_t received_at;
        int http_status; /* what we answer (200) or answered (401, 413) */
        bool signature_valid;
        char *verify_error;
        char *provider_event_id;
        char *event_type;
        char *method;
        char *uri;
        char *remote;
        char *content_type;
        char *headers_json;
        unsigned char *body;
        size_t body_len;     /* stored bytes */
        size_t body_bytes;   /* size as received (413: the claimed size) */
        int handshake_status;
        char *handshake_content_type;
        char *handshake_body;
        uint64_t start_us;
        char *hb_counters; /* INGEST_HEARTBEAT: the daemons row */
        char *hb_status;

        /* set by the writer */
        int result; /* 0 stored, negative errno */
        bool duplicate;
} ingest_item;

void ingest_item_free(ingest_item *it);


typedef struct ingest_stats {
        /* written by the loop only */
        uint64_t accepted, duplicates, invalid, too_large, handshakes, storage_errors,
                rejected_other;
        uint64_t connections_accepted, connections_refused; /* public listener */
        uint64_t timeouts;        /* requests cut off by header_timeout/body_timeout */
        uint64_t bad_requests;    /* refused by the HTTP parser (400, 417, 431, 501, 505) */
        uint64_t over_budget;     /* 503: max_buffered or the writer's queue was full */
        uint64_t orphans_dropped; /* rejected deliveries not stored: over orphan_rate */
        /* written by the writer only, read by the loop (heartbeat): races are benign counters */
        uint64_t commits, commit_failures, committed_items;
        uint64_t batch_us_total, commit_us_total, commit_us_max; /* batch: BEGIN..COMMIT; commit: COMMIT alone */
        uint64_t batch_max;
        /* SQLite: WAL frames (pages) the WAL grew by at the commits (other
         * connections' commits in between included), and the WAL restarts
         * (writer.c): how many, and the time the writer spent on them, when
         * no batch is stored. 0 on PostgreSQL. */
        uint64_t wal_frames, wal_restarts, wal_restart_us_total;
        /* per-bucket (not cumulative) counts; bounds in admin.c */
        uint64_t commit_hist[KNOCK_HIST_BUCKETS];
        uint64_t batch_hist[KNOCK_HIST_BUCKETS];
} ingest_stats;

typedef struct ingest_writer {
        pthread_t thread, ckpt_thread;
        pthread_mutex_t lock;
        pthread_cond_t cond, ckpt_cond;
        bool ckpt_started;
        char *db_path;
        char *name; /* endpoint, for waking the worker */
        bool stop;
        bool started;

        ingest_item *queue_head, **queue_tail; /* loop → writer */
        size_t queued;
        size_t urgent;                         /* queued items whose client waits */
        uint64_t queued_since_us;              /* when the queue last became non-empty */
        ingest_item *done_head, **done_tail;   /* writer → loop */
        struct event *ev_done;                 /* activated by the writer */
        bool busy;                             /* a batch is being stored */
        uint64_t busy_since_us;
        bool healthy;                          /* last commit succeeded */
        char last_error[256];
        ingest_stats *stats;
        uint64_t last_commit_us;               /* for the checkpointer */
        /* WAL restarts (see writer.c): the writer asks for a pass, the
         * checkpointer counts the passes it completed. */
        bool ckpt_wanted;
        uint64_t ckpt_passes;
        int ckpt_backfilled; /* frames the last pass had copied */
} ingest_writer;

int writer_start(ingest_writer *w, const char *db_path, const char *name,
                 struct event_base *base, event_callback_fn on_done, void *userdata,
                 ingest_stats *stats);
void writer_submit(ingest_writer *w, ingest_item *it);
/* Takes the list of finished items (may be NULL). */
ingest_item *writer_take_done(ingest_writer *w);
/* Items queued or being stored. */
size_t writer_pending(ingest_writer *w);
void writer_stop(ingest_writer *w);
