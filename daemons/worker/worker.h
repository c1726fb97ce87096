/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * knock-worker internals: one event loop, a bounded set of jobs (one per
 * claimed event), and two runners — exec (a child process) and forward
 * (an HTTP POST on a pooled keep-alive connection). A runner reports
 * through job_complete(); main.c batches the results into one transaction.
 */

#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon.h"
#include "events.h"

typedef struct worker worker;
typedef struct job job;
typedef struct fwd_conn fwd_conn;

struct job {
        worker *w;
        job *prev, *next; /* in w->running or w->done */
        knock_claim claim;
        uint64_t started_us;
        bool is_http;
        bool interrupted; /* killed by the stop deadline: released, not counted */

        /* exec */
        pid_t pid;
        int pidfd, in_fd, out_fd;
        size_t in_off;
        struct event *ev_pid, *ev_in, *ev_out, *ev_timeout;
        bool timed_out, killed;

        /* forward */
        fwd_conn *conn;
        struct evhttp_request *req;
        char *http_error;

        /* captured output (bounded) */
        char *out;
        size_t out_len, out_dropped;

        /* result */
        event_outcome outcome;
        int exit_code, signal, http_status;
        char *error;
        int64_t ended_at;
};

struct worker {
        knock_daemon *d;
        char identity[32]; /* "worker:PID" */
        char **base_env;   /* environ without systemd's per-process variables */
        size_t n_base_env;

        job *running, *done;
        size_t n_running, n_done;

        struct event *ev_wake, *ev_pump, *ev_due, *ev_renew, *ev_stop, *ev_batch;
        int wake_fd;
        bool stopping;
        int64_t next_due; /* armed due time, INT64_MAX when none */

        fwd_conn **conns;
        size_t n_conns;
        void *ssl_ctx;

        /* counters since start */
        uint64_t n_claimed, n_handled, n_failed, n_dead, n_ignored, n_lost;
};

/* Runners: start returns 0 (the job completes later via job_complete) or a
 * negative errno (nothing started; the caller completes the job). */
int exec_start(job *j);
void exec_kill(job *j, int sig);
void exec_cleanup(job *j);
int forward_start(job *j);
void forward_cancel(job *j);
void forward_cleanup(job *j);
void forward_pool_free(worker *w);

void job_complete(job *j);
/* Appends to the bounded output buffer, counting what is dropped. */
void job_output(job *j, const void *p, size_t n);
