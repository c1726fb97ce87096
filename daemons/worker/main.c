/* SPDX-License-Identifier: MIT */
/*
 * knock-worker NAME — claims stored events, runs their handler, records
 * every attempt (contract §7, §12; knock-worker(8)).
 *
 * One event loop for the handlers, one writer thread (writer.c) for the
 * database: the loop never waits for SQLite once it runs. Each writer
 * cycle is ONE transaction (events_finish_and_claim):
 *
 *   1. flush: the results of the jobs handed over since the last cycle are
 *      recorded (attempt rows, new status, hook outbox); the deliverer is
 *      woken after the commit if hooks were queued;
 *   2. claim: free slots are filled, and the loop starts the handlers when
 *      the cycle comes back — never before the claim is committed. The
 *      writer also claims ahead of the slots (writer.c): those jobs wait in
 *      the loop's ready list and start the moment a handler ends, instead
 *      of one COMMIT later;
 *   3. sleep: when the queue had less than the free slots, a timer is armed
 *      for the next known due time (a retry, a foreign lease running out),
 *      at most SAFETY_RESCAN_MS away. There is no polling loop: an idle
 *      worker sleeps in epoll until a datagram or that timer.
 *
 * Pipelining: while a cycle commits, handlers keep running and finishing
 * on the loop; their results wait for the next cycle, which starts as soon
 * as this one ends. A wake-up datagram that arrives during a cycle sets the
 * writer's scan flag, so rows committed after the cycle's claim read are
 * seen by the next one. Lease renewals and the heartbeat (with the queue
 * counts STATUS= shows) also go through the writer.
 *
 * Leases: a claim holds an event for LEASE_MS and a timer renews the leases
 * of every held event every LEASE_MS/3, so a slow handler never loses its
 * event, while a crashed worker's events come back within LEASE_MS. At
 * start, claims held by a worker that is provably gone (its PID is not a
 * running knock-worker, or is our own PID from a previous life) are expired
 * at once, so a restart after kill -9 resumes immediately.
 *
 * Stop: SIGTERM stops claiming; running handlers get until the stop
 * deadline (KNOCK_STOP_TIMEOUT, default 45 s: above the default handler
 * timeout plus its kill grace, below systemd's default TimeoutStopSec), then
 * their process groups are killed and their claims released without
 * counting the attempt.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/thread.h>

#include "catalog-ids.h"
#include "knock-build.h"
#include "lease.h"
#include "log.h"
#include "worker.h"

#define LEASE_MS 30000
#define SAFETY_RESCAN_MS 30000
#define FLUSH_RETRY_MS 200
#define STOP_TIMEOUT_DEFAULT_MS 45000
#define BATCH_US 1000
#define BATCH_DEEP_US 20000

extern char **environ;

static knock_daemon daemon_;
static worker worker_;

static const char usage[] = "Usage: knock-worker [OPTIONS] NAME\n"
                            "\n"
                            "Runs the handler of endpoint NAME for every stored event.\n"
                            "\n"
                            "  -h --help      Show this help\n"
                            "  -V --version   Show the version\n"
                            "\n"
                            "See knock-worker(8).\n";

static job *job_free(job *j)
{
        if (!j)
                return NULL;
        exec_cleanup(j);
        forward_cleanup(j);
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

/*
 * Group commit: finished jobs go to the writer in batches, and each writer
 * cycle records them and refills their slots in ONE transaction. The cost
 * of a cycle is mostly its COMMIT, whatever its size, so a batch should
 * hold every handler that is about to end: handlers started by one claim
 * tend to end together. Hand over at once when nothing else runs (a lone
 * event never waits) or when stopping; otherwise let BATCH_US of further
 * completions join, or BATCH_DEEP_US while a whole round of handlers is
 * claimed ahead: no slot waits for that cycle's claims then. Each COMMIT
 * rewrites the hot pages (the events and attempts leaves and index pages
 * the batch touched, 16 KiB each) into the WAL and syncs them, whatever the
 * batch size: draining /bin/true events, the writer used ~95 us of CPU per
 * event with 5 ms batches and ~55 us with 20 ms (bench/worker-bench).
 */
static size_t run_slots(worker *w);
static void job_batch(worker *w)
{
        bool deep = w->n_ready >= run_slots(w);
        struct timeval tv = {0, deep ? BATCH_DEEP_US : BATCH_US};

        if (w->stopping || w->n_running == 0) {
                event_active(w->ev_pump, EV_TIMEOUT, 0);
                return;
        }
        /* A long wait armed while the queue was deep ends early once it is not. */
        if (evtimer_pending(w->ev_batch, NULL)) {
                if (deep || !w->batch_deep)
                        return;
                evtimer_del(w->ev_batch);
        }
        w->batch_deep = deep;
        evtimer_add(w->ev_batch, &tv);
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
        job_batch(w);
}

/* A claim no job could be made for: its slot (and body) go back to the writer, its
 * lease runs out and the event is taken over later. */
static void claim_drop(worker *w, knock_claim *c)
{
        size_t bytes = c->body_len;

        knock_claim_clear(c);
        writer_submit(&w->wr, NULL, NULL, 1, bytes, false);
}

void job_start_failed(job *j, int r)
{
        j->outcome = EVENT_OUTCOME_TEMPFAIL;
        j->error = strdup_printf("cannot start handler: %s", strerror(-r));
        job_complete(j);
}

static job *job_new(worker *w, knock_claim *c)
{
        job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->w = w;
        j->claim = *c;
        *c = (knock_claim){};
        j->in_fd = j->out_fd = -1;
        j->exit_code = -1;
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

        if (startswith(j->claim.handler, "exec:"))
                r = exec_start(j);
        else if (startswith(j->claim.handler, "http://") ||
                 startswith(j->claim.handler, "https://")) {
                j->is_http = true;
                r = forward_start(j);
        } else
                r = -EPROTONOSUPPORT;
        if (r < 0)
                job_start_failed(j, r);
}

static size_t run_slots(worker *w)
{
        return (size_t)w->d->cfg->concurrency;
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
static void ready_drain(worker *w)
{
        while (w->ready && !w->stopping && w->n_running < run_slots(w))
                job_run(w, ready_pop(w));
}

static void job_start(worker *w, knock_claim *c)
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

/* ---- flushing results ------------------------------------------------------------ */

static void log_result(worker *w, job *j, const knock_attempt_result *res)
{
        char attempt[24], duration[24], http[8], exitc[16], next[32];
        uint64_t ms = (mono_us() - j->started_us) / 1000;
        const char *out = j->out_len > 0 ? j->out : NULL;

        /* The common case, a handled event, is a debug record: count it and
         * build no fields when debug is off. */
        if (res->new_status && streq(res->new_status, "handled") && log_get_level() < LOG_DEBUG) {
                w->n_handled++;
                return;
        }
        snprintf(attempt, sizeof(attempt), "%lld", (long long)res->attempt);
        snprintf(duration, sizeof(duration), "%llu", (unsigned long long)ms);
        snprintf(http, sizeof(http), "%d", res->http_status);
        snprintf(exitc, sizeof(exitc), "%d", res->exit_code);
        next[0] = 0;
        if (res->new_status && streq(res->new_status, "failed"))
                format_rfc3339(res->next_attempt_at, next, sizeof(next));

#define RESULT_FIELDS                                                                              \
        LOG_FIELDS(LF("KNOCK_EVENT_ID", j->claim.id),                                              \
                LF("KNOCK_DELIVERY_ID", j->claim.delivery_id),                                     \
                LF("KNOCK_PROVIDER_EVENT_ID", j->claim.provider_event_id),                         \
                LF("KNOCK_EVENT_TYPE", j->claim.event_type), LF("KNOCK_STATUS", res->new_status),  \
                LF("KNOCK_ATTEMPT", attempt), LF("KNOCK_DURATION_MS", duration),                   \
                LF("KNOCK_HTTP_STATUS", res->http_status > 0 ? http : NULL),                       \
                LF("KNOCK_EXIT_STATUS", res->exit_code >= 0 ? exitc : NULL),                       \
                LF("KNOCK_ERROR", res->error), LF("KNOCK_HANDLER_OUTPUT", out))

        if (!res->new_status) {
                w->n_lost++;
                log_full_errno(LOG_WARNING, 0, NULL, RESULT_FIELDS,
                        "Event %s: claim was taken over while attempt %lld ran; "
                        "attempt recorded, state left to the new holder",
                        j->claim.id, (long long)res->attempt);
        } else if (streq(res->new_status, "handled")) {
                w->n_handled++;
                log_full_errno(LOG_DEBUG, 0, NULL, RESULT_FIELDS,
                        "Event %s handled (attempt %lld, %llu ms)", j->claim.id,
                        (long long)res->attempt, (unsigned long long)ms);
        } else if (streq(res->new_status, "failed")) {
                w->n_failed++;
                log_struct(LOG_WARNING, MSGID_EVENT_FAILED, RESULT_FIELDS,
                        "Event %s attempt %lld failed: %s; next attempt at %s", j->claim.id,
                        (long long)res->attempt, res->error ?: "unknown error", next);
        } else {
                w->n_dead++;
                log_struct(LOG_ERR, MSGID_EVENT_DEAD, RESULT_FIELDS,
                        "Event %s is dead after attempt %lld: %s", j->claim.id,
                        (long long)res->attempt, res->error ?: "unknown error");
        }
#undef RESULT_FIELDS
}

static void log_claim_stats(worker *w, const knock_claim_stats *stats)
{
        if (stats->ignored > 0) {
                w->n_ignored += stats->ignored;
                log_info("%zu events ignored: no handler for their type", stats->ignored);
        }
        if (stats->taken_over > 0)
                log_warning("Took over %zu events whose lease expired (a worker died or hung); "
                            "their attempts are marked lost",
                        stats->taken_over);
        if (stats->dead > 0) {
                w->n_dead += stats->dead;
                log_struct(LOG_ERR, MSGID_EVENT_DEAD, LOG_NO_FIELDS,
                        "%zu events dead: lease expired on their last attempt", stats->dead);
        }
}

/* ---- the writer's replies -------------------------------------------------------- */

/* Moves every finished job to the writer: results, and claims to give back
 * uncounted (handlers killed by the stop deadline). scan: also look for
 * new events. */
static void submit_done(worker *w, bool scan)
{
        job *fin = NULL, **fin_tail = &fin, *rel = NULL, **rel_tail = &rel;
        size_t slots = 0, bytes = 0;

        while (w->done) {
                job *j = w->done;

                LIST_REMOVE(w->done, j);
                w->n_done--;
                LIST_PREPEND(w->submitted, j);
                w->n_submitted++;
                /* A result handed over again after a failed cycle has
                 * given its slot back already. */
                if (!j->slot_returned) {
                        j->slot_returned = true;
                        slots++;
                        bytes += j->claim.body_len;
                }
                j->wnext = NULL;
                /* A handler that succeeded just before the kill still counts. */
                if (j->interrupted && j->outcome != EVENT_OUTCOME_SUCCESS) {
                        *rel_tail = j;
                        rel_tail = &j->wnext;
                } else {
                        *fin_tail = j;
                        fin_tail = &j->wnext;
                }
        }
        if (fin || rel || slots > 0 || scan)
                writer_submit(&w->wr, fin, rel, slots, bytes, scan);
}

static void maybe_exit(worker *w)
{
        if (w->stopping && w->n_running == 0 && w->n_ready == 0 && w->n_done == 0 &&
                w->n_submitted == 0 && writer_idle(&w->wr))
                daemon_exit_loop(w->d);
}

/* Takes a job back from the writer: into the done list when its cycle
 * failed (handed over again later), else freed. Returns true when kept. */
static bool job_settle(worker *w, job *j, int r)
{
        LIST_REMOVE(w->submitted, j);
        w->n_submitted--;
        if (r < 0) {
                LIST_PREPEND(w->done, j);
                w->n_done++;
                return true;
        }
        return false;
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
static void claim_refuse(worker *w, knock_claim *c)
{
        job *j = job_new(w, c);

        if (!j) {
                claim_drop(w, c);
                return;
        }
        job_refuse(w, j);
}

/* Stopping: the jobs still waiting for a slot are given back. */
static void ready_refuse_all(worker *w)
{
        for (job *j; (j = ready_pop(w));)
                job_refuse(w, j);
}

static void reply_settle(worker *w, writer_reply *rep)
{
        size_t n_fin = 0, n_rel = 0;
        int64_t now, due;

        for (job *j = rep->fin, *next; j; j = next) {
                next = j->wnext;
                n_fin++;
                if (job_settle(w, j, rep->r))
                        continue;
                log_result(w, j,
                        &(knock_attempt_result){
                                .attempt = j->claim.attempt,
                                .new_status = j->new_status,
                                .next_attempt_at = j->next_attempt_at,
                                .http_status = j->http_status,
                                .exit_code = j->exit_code,
                                .error = j->error,
                        });
                job_free(j);
        }
        for (job *j = rep->rel, *next; j; j = next) {
                next = j->wnext;
                n_rel++;
                if (!job_settle(w, j, rep->r_rel))
                        job_free(j);
        }
        if (rep->r < 0)
                log_struct_errno(LOG_ERR, rep->r, MSGID_STORAGE_ERROR,
                        LOG_FIELDS(LF("KNOCK_ERROR", rep->error)),
                        "Cannot record %zu attempt results and claim: %m", n_fin);
        if (rep->r_rel < 0)
                log_struct_errno(LOG_ERR, rep->r_rel, MSGID_STORAGE_ERROR,
                        LOG_FIELDS(LF("KNOCK_ERROR", rep->error)), "Cannot release %zu claims: %m",
                        n_rel);
        else if (n_rel > 0)
                log_notice("Released %zu claims of handlers stopped by shutdown", n_rel);
        if (rep->r_renew < 0)
                log_struct_errno(LOG_ERR, rep->r_renew, MSGID_STORAGE_ERROR,
                        LOG_FIELDS(LF("KNOCK_ERROR", rep->error)), "Cannot renew leases: %m");
        if (rep->r < 0 || rep->r_rel < 0) {
                /* Nothing of that transaction was written: try again soon. */
                daemon_arm_timer(w->ev_due, FLUSH_RETRY_MS);
                return;
        }

        log_claim_stats(w, &rep->stats);
        for (size_t i = 0; i < rep->n_claims; i++)
                if (w->stopping)
                        claim_refuse(w, &rep->claims[i]);
                else
                        job_start(w, &rep->claims[i]);

        /* Slots still free after a claim: sleep until the next known due
         * time, or the safety rescan. Full: a finishing job claims again. */
        if (w->stopping || rep->asked == 0)
                return;
        now = now_ms();
        due = now + SAFETY_RESCAN_MS;
        if (rep->n_claims < rep->asked)
                due = MIN(due, rep->due);
        daemon_arm_timer(w->ev_due, due - now);
}

static void on_reply(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;
        writer_reply *rep = writer_take_replies(&w->wr), *next;

        for (; rep; rep = next) {
                next = rep->next;
                reply_settle(w, rep);
                writer_reply_free(rep);
        }
        /* Results that waited for this cycle, or refused claims, go next. */
        if (w->n_done > 0)
                job_batch(w);
        maybe_exit(w);
}

static void on_ready(evutil_socket_t fd, short what, void *userdata)
{
        ready_drain(userdata);
}

static void on_pump(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;

        evtimer_del(w->ev_batch);
        submit_done(w, false);
        maybe_exit(w);
}

static void on_due(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;

        submit_done(w, !w->stopping);
}

static void on_batch(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;

        event_active(w->ev_pump, EV_TIMEOUT, 0);
}

static void on_wake(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;

        /* Many datagrams, one scan. A cycle already running may have read
         * the queue before the new rows: the scan flag makes the writer
         * look again after it. */
        daemon_wake_drain(fd);
        if (!w->stopping)
                writer_submit(&w->wr, NULL, NULL, 0, 0, true);
}

static int ids_add(char **ids, size_t *n, job *list)
{
        for (job *j = list; j; j = j->next) {
                ids[*n] = strdup(j->claim.id);
                if (!ids[*n])
                        return -ENOMEM;
                (*n)++;
        }
        return 0;
}

/* Every held claim: waiting for a slot, running, finished but not yet recorded, or
 * with the writer. */
static void on_renew(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;
        size_t total = w->n_ready + w->n_running + w->n_done + w->n_submitted, n = 0;
        char **ids;

        if (total == 0)
                return;
        ids = calloc(total, sizeof(*ids));
        if (!ids)
                return;
        if (ids_add(ids, &n, w->ready) < 0 || ids_add(ids, &n, w->running) < 0 ||
                ids_add(ids, &n, w->done) < 0 || ids_add(ids, &n, w->submitted) < 0) {
                for (size_t i = 0; i < n; i++)
                        free(ids[i]);
                free(ids);
                return;
        }
        writer_renew(&w->wr, ids, n);
}

/* ---- stop ------------------------------------------------------------------------ */

static void interrupt_all(worker *w)
{
        job *j = w->running;

        while (j) {
                job *next = j->next;

                j->interrupted = true;
                if (j->is_http)
                        forward_cancel(j); /* completes the job */
                else
                        exec_kill(j, SIGKILL); /* completes on reap */
                j = next;
        }
}

static void on_stop_deadline(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;

        log_notice("Stop deadline reached: killing %zu running handlers and releasing their "
                   "claims",
                w->n_running);
        interrupt_all(w);
}

static void op_stop(knock_daemon *d)
{
        worker *w = d->userdata;

        w->stopping = true;
        daemon_stop_work(w->ev_wake, w->ev_due, w->ev_stop, w->n_running, "running handlers",
                STOP_TIMEOUT_DEFAULT_MS);
        /* No claim from now on; one already in flight comes back refused, and so do
         * the jobs still waiting for a slot. */
        writer_set_capacity(&w->wr, 0);
        ready_refuse_all(w);
        event_active(w->ev_pump, EV_TIMEOUT, 0);
}

/* After the loop: a second SIGTERM may have broken it with handlers still
 * running. Kill and reap them synchronously, then release their claims.
 * The loop is gone, so here we may wait for the writer. */
static void finish_remaining(worker *w)
{
        for (job *j = w->running; j; j = j->next)
                j->interrupted = true;
        /* Handlers being spawned get their pid (and are killed below) or never start. */
        exec_stop_spawner(w);
        for (job *j = w->running; j; j = j->next) {
                if (!j->is_http && j->pid > 0) {
                        exec_kill(j, SIGKILL);
                        (void)waitpid(j->pid, NULL, 0);
                        j->pid = 0;
                }
        }
        while (w->running) {
                job *j = w->running;

                LIST_REMOVE(w->running, j);
                w->n_running--;
                j->outcome = EVENT_OUTCOME_INTERRUPTED;
                LIST_PREPEND(w->done, j);
                w->n_done++;
        }
        w->stopping = true;
        ready_refuse_all(w);
        if (!w->wr.started)
                return;
        writer_set_capacity(&w->wr, 0);
        /* A few rounds: results and releases, then the claims a cycle in
         * flight brought back, refused. A failing disk gives up: those
         * leases run out and the events are taken over. */
        for (unsigned round = 0; round < 4; round++) {
                writer_reply *rep, *next;

                submit_done(w, false);
                writer_wait_idle(&w->wr);
                rep = writer_take_replies(&w->wr);
                if (!rep && w->n_done == 0)
                        break;
                for (; rep; rep = next) {
                        next = rep->next;
                        reply_settle(w, rep);
                        writer_reply_free(rep);
                }
        }
}

/* ---- daemon ops ------------------------------------------------------------------ */

static void op_status(knock_daemon *d, char *buf, size_t len)
{
        worker *w = d->userdata;
        int64_t c[6] = {};

        /* Counted by the writer with the last heartbeat: never a query on the loop. */
        if (!writer_queue_counts(&w->wr, c)) {
                snprintf(buf, len, "%zu handlers running, %zu claimed ahead; queue unknown",
                        w->n_running, w->n_ready);
                return;
        }
        /* event_status_names: received processing failed dead ignored handled */
        snprintf(buf, len,
                "%s%zu handlers running, %zu claimed ahead; queue: %lld received, %lld "
                "processing, %lld failed (retrying), %lld dead; handled %llu since start",
                w->stopping ? "stopping: " : "", w->n_running, w->n_ready, (long long)c[0],
                (long long)c[1],
                (long long)c[2], (long long)c[3], (unsigned long long)w->n_handled);
}

static char *op_counters(knock_daemon *d)
{
        worker *w = d->userdata;
        uint64_t cycles, failures, us_total, us_max, batch_max;
        char hist[KNOCK_HIST_BUCKETS * 24] = "";
        char *s;

        for (size_t i = 0, at = 0; i < KNOCK_HIST_BUCKETS; i++)
                at += (size_t)snprintf(hist + at, sizeof(hist) - at, "%s%llu", i ? "," : "",
                                       (unsigned long long)w->handler_hist[i]);
        writer_stats(&w->wr, &cycles, &failures, &us_total, &us_max, &batch_max);
        if (asprintf(&s,
                    "{\"in_flight\":%zu,\"claimed_ahead\":%zu,\"claimed\":%llu,\"handled\":%llu,\"failed\":%llu,"
                    "\"dead\":%llu,\"ignored\":%llu,\"lost\":%llu,\"commits\":%llu,"
                    "\"commit_failures\":%llu,\"commit_us_total\":%llu,"
                    "\"commit_us_max\":%llu,\"batch_max\":%llu,"
                    "\"handler_buckets\":[%s],\"handler_count\":%llu,\"handler_sum_s\":%.6f}",
                    w->n_running, w->n_ready, (unsigned long long)w->n_claimed,
                    (unsigned long long)w->n_handled, (unsigned long long)w->n_failed,
                    (unsigned long long)w->n_dead, (unsigned long long)w->n_ignored,
                    (unsigned long long)w->n_lost, (unsigned long long)cycles,
                    (unsigned long long)failures, (unsigned long long)us_total,
                    (unsigned long long)us_max, (unsigned long long)batch_max, hist,
                    (unsigned long long)w->handler_count, w->handler_sum_s) < 0)
                return NULL;
        return s;
}

/* The heartbeat rides on the writer: the loop never waits for SQLite. The
 * watchdog ping is withheld while the writer's last transaction failed or
 * a cycle is stuck (op_health). */
static int op_heartbeat(knock_daemon *d, const char *counters, const char *status)
{
        worker *w = d->userdata;

        return writer_heartbeat(&w->wr, counters, status);
}

static int op_health(knock_daemon *d)
{
        worker *w = d->userdata;

        return writer_health(&w->wr);
}

static int op_reload(knock_daemon *d, knock_config *new_cfg)
{
        worker *w = d->userdata;

        /* Running jobs keep their handler; new claims use the new config.
         * The skeleton frees the old one after we return, so the writer
         * switches between two cycles (a short wait for the current one). */
        writer_set_config(&w->wr, new_cfg, w->stopping ? 0 : (size_t)new_cfg->concurrency);
        event_active(w->ev_pump, EV_TIMEOUT, 0);
        /* More slots: jobs claimed ahead start now (op_reload runs before the swap). */
        event_active(w->ev_ready, EV_TIMEOUT, 0);
        return 0;
}

static const knock_daemon_ops worker_ops = {
        .health = op_health,
        .status = op_status,
        .counters = op_counters,
        .heartbeat = op_heartbeat,
        .stop = op_stop,
        .reload = op_reload,
};

/* ---- start ----------------------------------------------------------------------- */

/*
 * The environment an exec: handler gets from the worker's: only these
 * variables (knock-worker(8), HANDLERS, exec:), then the KNOCK_*
 * ones of the event. Nothing systemd gives the worker reaches a handler:
 * not CREDENTIALS_DIRECTORY (the secrets), NOTIFY_SOCKET, WATCHDOG_*,
 * LISTEN_*, INVOCATION_ID, JOURNAL_STREAM, nor knock's own KNOCK_* settings.
 */
static bool env_allowed(const char *e)
{
        static const char *const allowed[] = {
                "PATH=", "HOME=", "USER=", "LOGNAME=", "SHELL=", "LANG=", "LANGUAGE=", "LC_",
                "TZ=", "TMPDIR=", "SSL_CERT_FILE=", "SSL_CERT_DIR=",
        };
        for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
                if (startswith(e, allowed[i]))
                        return true;
        return false;
}

static int base_env_init(worker *w)
{
        size_t n = 0;

        for (char **e = environ; e && *e; e++)
                n++;
        w->base_env = calloc(n + 1, sizeof(char *));
        if (!w->base_env)
                return -ENOMEM;
        for (char **e = environ; e && *e; e++)
                if (env_allowed(*e))
                        w->base_env[w->n_base_env++] = *e;
        return 0;
}

/* Handlers get no access to knock's state directory nor to the secrets
 * (sandbox.h). Without Landlock in the kernel they run without it, said once. */
static int handler_sandbox_setup(worker *w)
{
        const char *protect[] = {knock_state_dir(), "/run/credentials",
                getenv("CREDENTIALS_DIRECTORY"), NULL};
        handler_sandbox *sb = &w->spawner.sandbox;
        int r;

        r = sandbox_init(sb, protect);
        if (r == -EOPNOTSUPP) {
                log_warning("Landlock is not available (kernel without it, or refused by a "
                            "container's seccomp filter): exec handlers can read and write %s "
                            "(the database) as this worker can",
                            knock_state_dir());
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Cannot build the exec handlers' sandbox: %m");
        log_debug("exec handlers sandboxed (Landlock ABI %d, %u rules): no access beneath %s "
                  "and /run/credentials",
                  sb->abi, sb->rules, knock_state_dir());
        return 0;
}

static void report_taken_over(const char *holder, int r, size_t n, void *userdata)
{
        if (r < 0)
                log_warning_errno(r, "Cannot expire claims of %s: %m", holder);
        else if (n > 0)
                log_notice("%zu events were held by %s, which is gone; they run again now", n,
                        holder);
}

/* Claims of a worker that is provably gone (common/lease.c) are expired now. */
static void take_over_dead_holders(worker *w)
{
        int r;

        r = lease_take_over_gone(w->d->store, "worker", events_claim_holders,
                events_expire_claims, now_ms(), report_taken_over, w);
        if (r < 0)
                log_warning_errno(r, "Cannot list claim holders: %m");
}

static int worker_setup(worker *w, knock_daemon *d)
{
        struct timeval renew = {LEASE_MS / 3000, (LEASE_MS / 3 % 1000) * 1000};
        int r;

        w->d = d;
        d->userdata = w;
        w->wake_fd = -1;
        w->chld_fd = -1;
        w->spawner.sandbox.ruleset_fd = -1;
        snprintf(w->identity, sizeof(w->identity), "worker:%d", (int)getpid());

        r = base_env_init(w);
        if (r < 0)
                return log_error_errno(r, "Out of memory");
        r = handler_sandbox_setup(w);
        if (r < 0)
                return r;

        w->ready_tail = &w->ready;
        w->ev_pump = event_new(d->base, -1, 0, on_pump, w);
        w->ev_ready = event_new(d->base, -1, 0, on_ready, w);
        w->ev_due = evtimer_new(d->base, on_due, w);
        w->ev_batch = evtimer_new(d->base, on_batch, w);
        w->ev_renew = event_new(d->base, -1, EV_PERSIST, on_renew, w);
        w->ev_stop = evtimer_new(d->base, on_stop_deadline, w);
        if (!w->ev_pump || !w->ev_ready || !w->ev_due || !w->ev_batch || !w->ev_renew ||
                !w->ev_stop)
                return log_error_errno(-ENOMEM, "Cannot create events");
        evtimer_add(w->ev_renew, &renew);

        /* The ingress sends a datagram here after each commit that created
         * events; without it we still rescan on the due timer. */
        r = daemon_wake_listen(d, "events", on_wake, w, &w->wake_fd, &w->ev_wake);
        if (r < 0)
                return r;

        r = exec_setup(w);
        if (r < 0)
                return log_error_errno(r, "Cannot watch for exiting handlers: %m");

        /* Before the writer claims anything: a previous life's claims are
         * taken over by the first claim. */
        take_over_dead_holders(w);
        w->wr.lease_ms = LEASE_MS;
        r = writer_start(&w->wr, w, on_reply);
        if (r < 0)
                return log_error_errno(r, "Cannot start the writer thread: %m");
        /* First look at the queue right after READY=1. */
        daemon_arm_timer(w->ev_due, 0);
        return 0;
}

static void worker_free(worker *w)
{
        struct event **evs[] = {&w->ev_wake, &w->ev_pump, &w->ev_ready, &w->ev_due,
                &w->ev_renew, &w->ev_stop, &w->ev_batch};

        /* Joins the thread: nothing of ours is in its hands afterwards. */
        writer_stop(&w->wr);
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
        forward_pool_free(w);
        exec_teardown(w);
        /* The main thread's statement cache (the start-up take-over). */
        events_cache_clear();
        for (size_t i = 0; i < ELEMENTSOF(evs); i++)
                if (*evs[i]) {
                        event_free(*evs[i]);
                        *evs[i] = NULL;
                }
        daemon_wake_close(w->d->name, "worker", w->wake_fd);
        w->wake_fd = -1;
        free(w->base_env);
}

int main(int argc, char **argv)
{
        int r;

        /* The writer thread activates an event on the loop's base. */
        evthread_use_pthreads();
        r = daemon_setup(&daemon_, "worker", usage, argc, argv, &worker_ops, 0);
        if (r > 0)
                return EXIT_SUCCESS;
        if (r < 0) {
                daemon_finish(&daemon_, false);
                return EXIT_FAILURE;
        }

        r = worker_setup(&worker_, &daemon_);
        if (r >= 0)
                r = daemon_run(&daemon_);
        if (worker_.d) {
                finish_remaining(&worker_);
                worker_free(&worker_);
        }
        daemon_finish(&daemon_, r >= 0);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
