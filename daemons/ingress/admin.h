/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * admin — /healthz, /readyz and /metrics on the ingress's admin listener
 * (contract §11). Never on the public listener.
 *
 * The loop never queries SQLite for these: a snapshot thread with its own
 * read connection refreshes a snapshot of the database (events by status,
 * oldest queued age, daemons' heartbeats and OOM counters, hooks, handler
 * durations, sizes, last backup, free disk) once a second while someone has
 * asked in the last minute, and sleeps otherwise. Requests are answered from
 * the latest snapshot plus the ingress's own in-memory counters, so a scrape
 * costs the loop a string format, not a table scan.
 */

#include <event2/http.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "event-state.h"
#include "ingress.h"

typedef struct admin_daemon {
        char name[16];
        bool present;
        int64_t pid;
        int64_t heartbeat_at;
        int64_t started_at;
        int64_t stopped_at; /* 0: running */
        int64_t last_clean_exit; /* 1 clean, 0 not, -1 unknown */
        int64_t oom_kills;
        char status[256];    /* its last STATUS= line */
        char counters[1024]; /* its counters since start (JSON), "" when none or too long */
} admin_daemon;

/* A daemon of another host sharing the endpoint (PostgreSQL): /readyz lists
 * them, judging only this host's. */
#define ADMIN_MAX_OTHER_DAEMONS 32
typedef struct admin_other_daemon {
        char name[16];
        char host[KNOCK_HOST_MAX + 1];
        int64_t pid;
        int64_t heartbeat_at;
        int64_t stopped_at; /* 0: running */
} admin_other_daemon;

/* A pause in force (pause.h), as /metrics shows it. */
#define ADMIN_MAX_PAUSES 16
typedef struct admin_pause {
        char route[260]; /* "": the whole endpoint */
        int64_t since;
} admin_pause;

typedef struct admin_snapshot {
        bool valid;
        int64_t taken_at;
        char error[256];        /* why the snapshot failed ("" when ok) */
        bool db_writable;       /* BEGIN IMMEDIATE succeeded within 100 ms */
        char writable_error[256];
        int schema_version;
        int64_t events[_EVENT_STATUS_MAX]; /* by event_status */
        int64_t oldest_queued_at; /* 0: none */
        int64_t hooks_pending, hooks_delivered, hooks_failed;
        int64_t hook_attempts_ok, hook_attempts_http_error, hook_attempts_error;
        admin_daemon daemons[3]; /* ingress, worker, deliver (of this host) */
        bool hosts;              /* a store shared by hosts: rows are ROLE@HOST */
        admin_other_daemon others[ADMIN_MAX_OTHER_DAEMONS]; /* other hosts' */
        size_t n_others;
        uint64_t handler_buckets[KNOCK_HIST_BUCKETS]; /* cumulative */
        uint64_t handler_count;
        double handler_sum_s;
        int64_t db_bytes, wal_bytes;
        int64_t last_backup_at; /* ms, 0: never */
        int64_t last_prune_at;  /* ms, 0: never */
        int64_t last_prune_rows;
        uint64_t disk_free_bytes;
        admin_pause paused[ADMIN_MAX_PAUSES]; /* the endpoint's first, then routes by name */
        uint64_t breakers_opened, breakers_closed; /* the worker's, since it started */
        size_t n_paused;
} admin_snapshot;

/* The ingress's receipts, sampled every ADMIN_SAMPLE_MS (for the console's
 * throughput figures): ADMIN_SAMPLES of them, the newest last. */
#define ADMIN_SAMPLE_MS 10000
#define ADMIN_SAMPLES 91
typedef struct admin_sample {
        int64_t at;        /* ms; 0: no sample */
        uint64_t stored;   /* verified receipts: new events and duplicates */
        uint64_t rejected; /* 401 and 413 */
} admin_sample;

typedef struct console console;

typedef struct admin {
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop;
        uint64_t wanted_until_us; /* refresh while now < this */
        admin_snapshot snap;
        admin_sample samples[ADMIN_SAMPLES]; /* a ring; under lock */
        size_t sample_next;
        int64_t next_sample_us;
        console *console; /* the web console; NULL until admin_serve() */
        char *db_path;
        char *state_dir;
        ingest_writer *writer;
        ingest_stats *stats;
        const knock_config *cfg; /* read on the loop thread only */
} admin;

int admin_start(admin *a, const char *db_path, ingest_writer *w, ingest_stats *stats);
/* Serves the admin listener on http (timeouts, limits, the callback) and
 * starts the web console. */
int admin_serve(admin *a, struct evhttp *http, struct event_base *base);
void admin_stop(admin *a);
/* The latest snapshot; after a quiet period it waits (up to 500 ms) for a
 * fresh one. */
admin_snapshot admin_get_snapshot(admin *a);
/* The samples, oldest first, into out[ADMIN_SAMPLES]. */
void admin_get_samples(admin *a, admin_sample *out);
/* The ingress's counters, copied as /metrics reads them. */
ingest_stats admin_get_stats(admin *a);
/* Every answer of both listeners: Content-Type, no caching, the body. */
void http_send(struct evhttp_request *req, int code, const char *reason,
               const char *content_type, struct evbuffer *body);

/* The evhttp callback for the admin listener; userdata is the admin. */
void admin_handle(struct evhttp_request *req, void *userdata);

/* Bucket bounds of the commit batch sizes, in items (durations: util.h). */
extern const double admin_batch_bounds[KNOCK_HIST_BUCKETS];
