/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * knock-worker internals: one event loop, a bounded set of jobs (one per
 * claimed event) and a table of runners, one per kind of handler: exec
 * (exec.c, a child process) and forward (forward.c, an HTTP POST on a pooled
 * keep-alive connection). A job is a common head (struct job) followed by
 * its runner's own fields; the rest of the worker sees only the head and
 * calls the runner through its table (struct job_runner). A runner reports
 * through job_complete(); jobs.c keeps the job lists, cycle.c batches the
 * results and hands them to the writer (writer.c): a thread with its own
 * SQLite connection that records results, claims refills, renews leases and
 * writes the heartbeat, so the loop never waits for SQLite while handlers
 * run.
 */

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon.h"
#include "events.h"
#include "flow.h"
#include "lease.h"
#include "list.h"
#include "listener.h"

/* A claim holds its event for LEASE_MS; the loop renews every held claim
 * every LEASE_MS/3 (cycle.c), so only a dead worker's claims run out. */
#define LEASE_MS 30000

typedef struct worker worker;
typedef struct job job;
typedef struct job_runner job_runner;
typedef struct exec_state exec_state;       /* exec.c's, for the whole worker */
typedef struct forward_state forward_state; /* forward.c's */

/* The common head of every job; its runner's fields follow it (runner->size). */
struct job {
        worker *w;
        const job_runner *runner;
        LIST_FIELDS(job); /* in w->ready, w->running, w->done or w->submitted (the loop's) */
        job *wnext;       /* in a writer queue or reply: owned by whoever holds that list */
        knock_claim claim;
        uint64_t started_us;
        int64_t started_at; /* wall clock ms; 0 until it runs */
        bool interrupted; /* killed by the stop deadline: released, not counted */

        /* captured output (bounded) */
        char *out;
        size_t out_len, out_dropped;

        /* result */
        event_outcome outcome;
        int exit_code, signal, http_status;
        char *error;
        int64_t ended_at;
        bool slot_returned; /* its concurrency slot was given back to the writer */
        uint64_t writer_mark; /* the writer's: the cycle that recorded its result */

        /* set by the writer once the result is committed */
        const char *new_status; /* NULL: the claim was lost */
        int64_t next_attempt_at;
};

/*
 * A runner: what runs one kind of handler. jobs.c picks a job's runner by
 * the handler's prefix when the job is made; the rest of the worker reaches
 * a runner only through these entries (NULL: nothing to do).
 */
struct job_runner {
        const char *const *prefixes; /* the handlers it runs ("exec:"), NULL-terminated */
        size_t size;                 /* of its job: a struct job first, its fields after */
        /* At worker start, before the writer thread exists; at the end. */
        int (*setup)(worker *w);
        void (*teardown)(worker *w);
        /* Its fields of a new job (the whole job is zeroed first). */
        void (*init)(job *j);
        /* 0: runs, completes later through job_complete(); a negative errno:
         * nothing started, the caller completes it as a failed attempt. */
        int (*start)(job *j);
        /* The stop deadline passed: ends it; it completes now or when reaped. */
        void (*cancel)(job *j);
        /* After the loop: ends its running jobs at once, waiting for them. */
        void (*abandon)(worker *w);
        /* Frees what start made; safe on a job that never started, and twice. */
        void (*cleanup)(job *j);
};

extern const job_runner exec_runner, forward_runner;

/* What one writer cycle did, handed back to the loop. */
typedef struct writer_reply {
        struct writer_reply *next;
        job *fin;   /* results it recorded (r == 0) or could not record (r < 0), by wnext */
        int r;      /* the finish-and-claim transaction */
        size_t asked;  /* slots the claim tried to fill; 0: no claim this cycle */
        knock_claim *claims;
        size_t n_claims;
        knock_claim_stats stats;
        int64_t due;   /* asked and fewer claimed: when something is due next (INT64_MAX none) */
        job *rel;      /* claims it released (r_rel == 0) or could not, by wnext */
        int r_rel;
        int r_renew;   /* 1: no renewal this cycle */
        int r_heartbeat; /* 1: no heartbeat this cycle */
        char **breakers_opened, **breakers_closed; /* event types, for the loop's records */
        size_t n_opened, n_closed;
        knock_store *listen; /* the listening connection asked for (writer_listen), or NULL */
        int r_listen;        /* 1: none asked this cycle; < 0: why it could not be made */
        char error[256];
} writer_reply;

/*
 * The writer. Everything below `lock` is shared with the loop and only
 * touched under it; the thread owns its connection and the reply it builds.
 */
typedef struct worker_writer {
        pthread_t thread;
        bool started;
        char *db_path;
        const char *name;     /* endpoint: the deliverer's wake-up address */
        const char *identity; /* "worker:PID", "worker:PID@HOST" (lease.h) */
        int64_t lease_ms;
        struct event *ev_reply; /* activated on the loop's base after each cycle */

        pthread_mutex_t lock;
        pthread_cond_t cond; /* work queued, or stop */
        pthread_cond_t idle; /* a cycle ended */
        const knock_config *cfg; /* swapped only between cycles (writer_set_config) */
        size_t run_slots;        /* concurrency; 0 once stopping: no more claims */
        size_t capacity;         /* claims held at most (claimed ahead included) */
        size_t busy_slots;       /* claims handed out whose jobs are not submitted back */
        size_t busy_bytes;       /* their bodies' bytes */
        uint64_t ahead_bytes_max; /* no claim ahead while busy_bytes is above this */
        bool scan;               /* look at the queue even without results */
        bool listen;             /* open a listening connection (writer_listen) */
        job *fin_head, **fin_tail;
        job *rel_head, **rel_tail;
        char **renew_ids;
        size_t n_renew;
        job **started_v; /* jobs of queued attempts that started: their notices */
        size_t n_started, cap_started;
        char *hb_counters, *hb_status;
        bool hb;
        bool stop;
        bool busy;
        uint64_t busy_since_us;
        bool healthy; /* the last transaction committed */
        int64_t queue_counts[_EVENT_STATUS_MAX];
        bool counts_valid;
        char paused[256];   /* pause_summary() of the last heartbeat's read; "" none */
        worker_flow flow;   /* rates and route concurrency (flow.h) */
        writer_reply *reply_head, **reply_tail;
        uint64_t cycles, commit_failures, cycle_us_total, cycle_us_max, batch_max;
        uint64_t breakers_opened, breakers_closed; /* since start, for /metrics */
        uint64_t cycle_mark; /* the writer thread's own: numbers the cycles that record results */
} worker_writer;

int writer_start(worker_writer *wr, worker *w, event_callback_fn on_reply);
/* Hands results (fin) and claims to give back (rel), both linked by wnext,
 * to the writer; n_slots slots are free again; scan asks for a claim even
 * without results. Never blocks on SQLite. */
void writer_submit(
        worker_writer *wr, job *fin, job *rel, size_t n_slots, size_t n_bytes, bool scan);
/* j's queued attempt started (at j->started_at): its row turns "running" in the next
 * cycle, unless that cycle records j's result, which carries the start itself. */
int writer_started(worker_writer *wr, job *j);
/* Asks for a connection listening for new events (listener.h): made in the next
 * cycle, handed back in its reply (the loop never waits for a connection);
 * false: no longer wanted. */
void writer_listen(worker_writer *wr, bool want);
/* Takes ownership of ids (renews those leases at the next cycle). */
void writer_renew(worker_writer *wr, char **ids, size_t n);
/* Queues the heartbeat row; <0 when the last transaction failed. */
int writer_heartbeat(worker_writer *wr, const char *counters, const char *status);
/* Returns the cycles finished so far (oldest first). */
writer_reply *writer_take_replies(worker_writer *wr);
writer_reply *writer_reply_free(writer_reply *r);
/* Swaps the config between cycles (waits for the current one); capacity 0 stops claims. */
void writer_set_config(worker_writer *wr, const knock_config *cfg, size_t run_slots);
void writer_set_capacity(worker_writer *wr, size_t run_slots);
/* Nothing queued, no cycle running, no reply waiting to be taken. */
bool writer_idle(worker_writer *wr);
/* Blocks until writer_idle() (only after the loop ended). */
void writer_wait_idle(worker_writer *wr);
/* 0, or -EIO when a cycle has been stuck for long (a wedged disk). */
int writer_health(worker_writer *wr);
/* The queue counts read with the last heartbeat; false when none yet. */
bool writer_queue_counts(worker_writer *wr, int64_t counts[_EVENT_STATUS_MAX]);
/* c's slot was given back: its route runs one handler fewer (flow.h). */
void writer_flow_done(worker_writer *wr, const knock_claim *c);
/* Circuit breakers opened and closed since start. */
void writer_breakers(worker_writer *wr, uint64_t *opened, uint64_t *closed);
/* What is paused, as of the last heartbeat ("" when nothing; pause.h). */
void writer_paused(worker_writer *wr, char *buf, size_t len);
void writer_stats(worker_writer *wr, uint64_t *cycles, uint64_t *failures, uint64_t *us_total,
        uint64_t *us_max, uint64_t *batch_max);
/* Finishes what is queued, then joins the thread. */
void writer_stop(worker_writer *wr);

struct worker {
        knock_daemon *d;
        char identity[LEASE_IDENTITY_MAX]; /* "worker:PID", "worker:PID@HOST" (lease.h) */

        job *ready, **ready_tail; /* claimed, waiting for a slot: FIFO by next */
        job *running, *done, *submitted;
        size_t n_ready, n_running, n_done, n_submitted;
        /* Handler durations since start, for /metrics (via the heartbeat's counters). */
        uint64_t handler_hist[KNOCK_HIST_BUCKETS], handler_count;
        double handler_sum_s;
        worker_writer wr;

        struct event *ev_wake, *ev_pump, *ev_ready, *ev_due, *ev_renew, *ev_batch;
        listener listener; /* new events committed on other hosts (PostgreSQL) */
        int wake_fd;
        bool stopping;
        bool batch_deep; /* ev_batch was armed for BATCH_DEEP_US */

        exec_state *exec;       /* the runners' own state */
        forward_state *forward;

        /* counters since start */
        uint64_t n_claimed, n_handled, n_failed, n_dead, n_ignored, n_lost;
};

/* Handlers that may run at once: [worker] concurrency. */
static inline size_t worker_slots(const worker *w)
{
        return (size_t)w->d->cfg->concurrency;
}

/* ---- jobs.c: the jobs and the runner table ------------------------------------- */

/* Every runner's setup (before the writer thread starts) and teardown. */
int runners_setup(worker *w);
void runners_teardown(worker *w);

/* A claim becomes a job waiting for a slot, started when one is free. */
void job_start(worker *w, knock_claim *c);
/* A claim that arrives after SIGTERM is given back at once, uncounted. */
void claim_refuse(worker *w, knock_claim *c);
/* Starts claimed-ahead jobs, oldest first, while slots are free. */
void ready_drain(worker *w);
/* Stopping: the jobs still waiting for a slot are given back. */
void ready_refuse_all(worker *w);
/* The stop deadline: every running job is cancelled, its claim released.
 * Returns how many were running. */
size_t jobs_interrupt(worker *w);
/* After the loop: every running job ends at once, interrupted, on the done list. */
void jobs_abandon(worker *w);
job *job_free(job *j);
/* Frees the jobs left on the done and submitted lists (after writer_stop). */
void jobs_free(worker *w);

/* Called by the runners. */
void job_complete(job *j);
/* The handler could not be started (r < 0): a failed attempt, completed now. */
void job_start_failed(job *j, int r);
/* Appends to the bounded output buffer, counting what is dropped. */
void job_output(job *j, const void *p, size_t n);

/* ---- cycle.c: the loop's side of the writer's cycles -------------------------- */

/* The loop's events (and the wake-up socket); freed by cycle_events_free. */
int cycle_events_new(worker *w);
/* Listening for events of other hosts (PostgreSQL), once the writer runs. */
int cycle_listen(worker *w);
void cycle_events_free(worker *w);
/* writer_start's on_reply: settles what a cycle did. */
void cycle_on_reply(evutil_socket_t fd, short what, void *userdata);
/* A job ended: hands the finished jobs to the writer now, or soon with more. */
void cycle_batch(worker *w);
/* After the loop: ends what still runs and records or releases it. */
void cycle_finish_remaining(worker *w);
