/* SPDX-License-Identifier: MIT */
/*
 * cycle — the loop's side of the writer's cycles (writer.c), and the events
 * that drive them.
 *
 * Each writer cycle is ONE transaction (events_finish_and_claim):
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
 *      worker sleeps in epoll until a datagram (this host's ingress), a
 *      notification (any host's ingress, on PostgreSQL: listener.h) or that
 *      timer.
 *
 * Pipelining: while a cycle commits, handlers keep running and finishing
 * on the loop; their results wait for the next cycle, which starts as soon
 * as this one ends. A wake-up datagram that arrives during a cycle sets the
 * writer's scan flag, so rows committed after the cycle's claim read are
 * seen by the next one. Lease renewals (every LEASE_MS/3, for every held
 * claim) and the heartbeat also go through the writer.
 *
 * Promises:
 *  - a result is logged only once its cycle committed; a cycle that failed
 *    leaves its jobs on the done list, handed over again FLUSH_RETRY_MS
 *    later, so no result is lost to a transient storage error;
 *  - a claim that comes back while stopping is given back uncounted;
 *  - the loop ends (stopping) only when no job is ready, running, done or
 *    with the writer, and the writer is idle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog-ids.h"
#include "log.h"
#include "worker.h"

#define SAFETY_RESCAN_MS 30000
#define FLUSH_RETRY_MS 200
#define BATCH_US 1000
#define BATCH_DEEP_US 20000

/* ---- batching ------------------------------------------------------------------------ */

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
void cycle_batch(worker *w)
{
        bool deep = w->n_ready >= worker_slots(w);
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

/* ---- flushing results ---------------------------------------------------------------- */

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

/* ---- the writer's replies ------------------------------------------------------------ */

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
                        writer_flow_done(&w->wr, &j->claim);
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

static void reply_settle(worker *w, writer_reply *rep)
{
        size_t n_fin = 0, n_rel = 0;
        int64_t now, due;

        if (rep->r_listen != 1) {
                listener_attach(&w->listener, rep->listen, rep->r_listen);
                rep->listen = NULL;
        }
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
        for (size_t i = 0; i < rep->n_opened; i++)
                log_struct(LOG_WARNING, MSGID_BREAKER_OPENED,
                        LOG_FIELDS(LF("KNOCK_EVENT_TYPE", rep->breakers_opened[i])),
                        "Circuit breaker of event type %s opened: its events wait until a probe "
                        "succeeds after the cooldown (or 'knockctl resume --route')",
                        rep->breakers_opened[i]);
        for (size_t i = 0; i < rep->n_closed; i++)
                log_struct(LOG_NOTICE, MSGID_BREAKER_CLOSED,
                        LOG_FIELDS(LF("KNOCK_EVENT_TYPE", rep->breakers_closed[i])),
                        "Circuit breaker of event type %s closed: its probe succeeded",
                        rep->breakers_closed[i]);
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

void cycle_on_reply(evutil_socket_t fd, short what, void *userdata)
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
                cycle_batch(w);
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

/* A cycle already running may have read the queue before the new rows: the
 * scan flag makes the writer look again after it. */
static void wake_scan(void *userdata)
{
        worker *w = userdata;

        if (!w->stopping)
                writer_submit(&w->wr, NULL, NULL, 0, 0, true);
}

static void on_wake(evutil_socket_t fd, short what, void *userdata)
{
        /* Many datagrams, one scan. */
        daemon_wake_drain(fd);
        wake_scan(userdata);
}

/* The listener's connect(): the writer thread connects, the loop never waits. */
static void listen_connect(listener *l)
{
        worker *w = l->userdata;

        writer_listen(&w->wr, true);
}

int cycle_listen(worker *w)
{
        return listener_init(&w->listener, w->d, STORE_TOPIC_EVENTS, "events", listen_connect,
                wake_scan, w);
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

/* After the loop: a second SIGTERM may have broken it with handlers still
 * running. Kill and reap them synchronously, then release their claims.
 * The loop is gone, so here we may wait for the writer. */
void cycle_finish_remaining(worker *w)
{
        jobs_abandon(w);
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

/* ---- the loop's events --------------------------------------------------------------- */

int cycle_events_new(worker *w)
{
        struct event_base *base = w->d->base;
        struct timeval renew = {LEASE_MS / 3000, (LEASE_MS / 3 % 1000) * 1000};

        w->ev_pump = event_new(base, -1, 0, on_pump, w);
        if (!w->ev_pump)
                return log_error_errno(-ENOMEM, "Cannot create events");
        w->ev_ready = event_new(base, -1, 0, on_ready, w);
        w->ev_due = evtimer_new(base, on_due, w);
        w->ev_batch = evtimer_new(base, daemon_activate, w->ev_pump);
        w->ev_renew = event_new(base, -1, EV_PERSIST, on_renew, w);
        if (!w->ev_pump || !w->ev_ready || !w->ev_due || !w->ev_batch || !w->ev_renew)
                return log_error_errno(-ENOMEM, "Cannot create events");
        evtimer_add(w->ev_renew, &renew);

        /* The ingress sends a datagram here after each commit that created
         * events; without it we still rescan on the due timer. */
        return daemon_wake_listen(w->d, "events", on_wake, w, &w->wake_fd, &w->ev_wake);
}

void cycle_events_free(worker *w)
{
        struct event **evs[] = {&w->ev_wake, &w->ev_pump, &w->ev_ready, &w->ev_due,
                &w->ev_renew, &w->ev_batch};

        for (size_t i = 0; i < ELEMENTSOF(evs); i++)
                if (*evs[i]) {
                        event_free(*evs[i]);
                        *evs[i] = NULL;
                }
        listener_stop(&w->listener);
        daemon_wake_close(w->d->name, "worker", w->wake_fd);
        w->wake_fd = -1;
}
