/* SPDX-License-Identifier: MIT */
/*
 * jobs — the worker's jobs and the runner table.
 *
 * Promises:
 *  - a claim becomes a job whose runner is chosen once, by the handler's
 *    prefix ("exec:" → exec.c, "http://" and "https://" → forward.c; any
 *    other handler fails to start, a failed attempt); the job is allocated
 *    at the runner's size, a struct job first and the runner's fields after,
 *    and nothing outside the runner touches those fields;
 *  - every job is on exactly one of the loop's lists: ready (claimed, FIFO,
 *    waiting for a slot), running, done (ended, not yet handed over) or
 *    submitted (with the writer), and the n_* counts say how many each
 *    holds; at most [worker] concurrency jobs run;
 *  - a job ends through job_complete() exactly once, however its runner
 *    ended it; its handler duration is observed then;
 *  - a job that will not run (stopping) is given back uncounted
 *    (interrupted), and so is a claim no job could be made for, whose lease
 *    then runs out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker.h"

/* ---- the runner table ---------------------------------------------------------------- */

static int start_unsupported(job *j)
{
        return -EPROTONOSUPPORT;
}

static void nothing(job *j)
{
}

/* A handler no runner takes fails to start: a failed attempt, as ever. */
static const job_runner no_runner = {
        .prefixes = (const char *const[]){NULL},
        .size = sizeof(job),
        .start = start_unsupported,
        .cancel = nothing,
        .cleanup = nothing,
};

static const job_runner *const runners[] = {&exec_runner, &forward_runner};

static const job_runner *runner_for(const char *handler)
{
        for (size_t i = 0; i < ELEMENTSOF(runners); i++)
                for (const char *const *p = runners[i]->prefixes; *p; p++)
                        if (startswith(handler, *p))
                                return runners[i];
        return &no_runner;
}

int runners_setup(worker *w)
{
        for (size_t i = 0; i < ELEMENTSOF(runners); i++)
                if (runners[i]->setup) {
                        int r = runners[i]->setup(w);

                        if (r < 0)
                                return r;
                }
        return 0;
}

static void runners_abandon(worker *w)
{
        for (size_t i = 0; i < ELEMENTSOF(runners); i++)
                if (runners[i]->abandon)
                        runners[i]->abandon(w);
}

void runners_teardown(worker *w)
{
        for (size_t i = 0; i < ELEMENTSOF(runners); i++)
                if (runners[i]->teardown)
                        runners[i]->teardown(w);
}

/* ---- jobs ---------------------------------------------------------------------------- */

job *job_free(job *j)
{
        if (!j)
                return NULL;
        j->runner->cleanup(j);
        knock_claim_clear(&j->claim);
        free(j->out);
        free(j->error);
        free(j);
        return NULL;
}

void job_output(job *j, const void *p, size_t n)
{
        size_t max = (size_t)j->w->d->cfg->max_output, take;

        if (!j->out) {
                j->out = malloc(max + 1);
                if (!j->out) {
                        j->out_dropped += n;
                        return;
                }
                j->out[0] = 0;
        }
        take = MIN(n, max - MIN(j->out_len, max));
        memcpy(j->out + j->out_len, p, take);
        j->out_len += take;
        j->out[j->out_len] = 0;
        j->out_dropped += n - take;
}

void job_complete(job *j)
{
        worker *w = j->w;

        j->ended_at = now_ms();
        if (j->started_us > 0) {
                double s = (double)(mono_us() - j->started_us) / 1e6;

                hist_observe(w->handler_hist, knock_duration_bounds, s);
                w->handler_count++;
                w->handler_sum_s += s;
        }
        LIST_REMOVE(w->running, j);
        w->n_running--;
        LIST_PREPEND(w->done, j);
        w->n_done++;
        /* Not from inside the runner's callback: the next loop turn. */
        if (w->ready)
                event_active(w->ev_ready, EV_TIMEOUT, 0);
        cycle_batch(w);
}

/* A claim no job could be made for: its slot (and body) go back to the writer, its
 * lease runs out and the event is taken over later. */
static void claim_drop(worker *w, knock_claim *c)
{
        size_t bytes = c->body_len;

        writer_flow_done(&w->wr, c);
        knock_claim_clear(c);
        writer_submit(&w->wr, NULL, NULL, 1, bytes, false);
}

void job_start_failed(job *j, int r)
{
        j->outcome = EVENT_OUTCOME_TEMPFAIL;
        j->error = strdup_printf("cannot start handler: %s", strerror(-r));
        job_complete(j);
}

/* A job for claim c (taken over: *c is cleared), its runner chosen by the
 * handler's prefix. */
static job *job_new(worker *w, knock_claim *c)
{
        const job_runner *runner = runner_for(c->handler);
        job *j = calloc(1, runner->size);

        if (!j)
                return NULL;
        j->w = w;
        j->runner = runner;
        j->claim = *c;
        *c = (knock_claim){};
        j->exit_code = -1;
        if (runner->init)
                runner->init(j);
        return j;
}

static void job_run(worker *w, job *j)
{
        int r;

        j->started_us = mono_us();
        j->started_at = now_ms();
        LIST_PREPEND(w->running, j);
        w->n_running++;
        /* Claimed ahead: its attempt row says "queued" until the writer hears of this. */
        if (j->claim.queued && writer_started(&w->wr, j) < 0)
                log_warning_errno(-ENOMEM, "Cannot record the start of attempt %s: %m",
                        j->claim.attempt_id);

        log_full_errno(LOG_DEBUG, 0, NULL,
                LOG_FIELDS(LF("KNOCK_EVENT_ID", j->claim.id),
                        LF("KNOCK_EVENT_TYPE", j->claim.event_type)),
                "Starting handler for event %s, attempt %lld", j->claim.id,
                (long long)j->claim.attempt);

        r = j->runner->start(j);
        if (r < 0)
                job_start_failed(j, r);
}

/* The oldest job waiting for a slot, taken off the list; NULL when none. */
static job *ready_pop(worker *w)
{
        job *j = w->ready;

        if (!j)
                return NULL;
        w->ready = j->next;
        if (!w->ready)
                w->ready_tail = &w->ready;
        j->next = NULL;
        w->n_ready--;
        return j;
}

/* Starts claimed-ahead jobs, oldest first, while slots are free. */
void ready_drain(worker *w)
{
        while (w->ready && !w->stopping && w->n_running < worker_slots(w))
                job_run(w, ready_pop(w));
}

void job_start(worker *w, knock_claim *c)
{
        job *j = job_new(w, c);

        if (!j) {
                claim_drop(w, c);
                log_error_errno(-ENOMEM, "Out of memory starting a handler");
                return;
        }
        w->n_claimed++;
        /* In claim order: behind any job already waiting for a slot. */
        j->prev = j->next = NULL;
        *w->ready_tail = j;
        w->ready_tail = &j->next;
        w->n_ready++;
        ready_drain(w);
}

/* A job that will not run (stopping): given back at once, uncounted. */
static void job_refuse(worker *w, job *j)
{
        j->interrupted = true;
        j->outcome = EVENT_OUTCOME_INTERRUPTED;
        j->ended_at = now_ms();
        LIST_PREPEND(w->done, j);
        w->n_done++;
}

/* A claim that arrives after SIGTERM is given back at once, uncounted. */
void claim_refuse(worker *w, knock_claim *c)
{
        job *j = job_new(w, c);

        if (!j) {
                claim_drop(w, c);
                return;
        }
        job_refuse(w, j);
}

/* Stopping: the jobs still waiting for a slot are given back. */
void ready_refuse_all(worker *w)
{
        for (job *j; (j = ready_pop(w));)
                job_refuse(w, j);
}

size_t jobs_interrupt(worker *w)
{
        job *j = w->running;
        size_t n = 0;

        while (j) {
                job *next = j->next;

                /* It completes now (forward) or when reaped (exec). */
                j->interrupted = true;
                j->runner->cancel(j);
                j = next;
                n++;
        }
        return n;
}

void jobs_free(worker *w)
{
        while (w->done) {
                job *j = w->done;

                LIST_REMOVE(w->done, j);
                job_free(j);
        }
        while (w->submitted) {
                job *j = w->submitted;

                LIST_REMOVE(w->submitted, j);
                job_free(j);
        }
}

void jobs_abandon(worker *w)
{
        for (job *j = w->running; j; j = j->next)
                j->interrupted = true;
        /* exec: handlers being spawned get their pid (and are killed) or never
         * start; running ones are killed and reaped. */
        runners_abandon(w);
        while (w->running) {
                job *j = w->running;

                LIST_REMOVE(w->running, j);
                w->n_running--;
                j->outcome = EVENT_OUTCOME_INTERRUPTED;
                LIST_PREPEND(w->done, j);
                w->n_done++;
        }
}
