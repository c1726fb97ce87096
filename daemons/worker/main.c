/* SPDX-License-Identifier: MIT */
/*
 * knock-worker NAME — claims stored events, runs their handler, records
 * every attempt (contract §7, §12; knock-worker(8)).
 *
 * One event loop. Everything that touches the database happens in pump(),
 * a deferred callback that coalesces every reason to look at the queue
 * (a wake-up datagram from the ingress, a job finishing, a retry coming
 * due, a reload):
 *
 *   1. flush: the results of all jobs that finished since the last pump are
 *      written in ONE transaction (events_finish: attempt rows, new status,
 *      hook outbox), then the deliverer is woken if hooks were queued;
 *   2. claim: free slots (concurrency − running) are filled by one claim
 *      transaction, and the handlers start at once;
 *   3. sleep: when the queue had less than the free slots, a timer is armed
 *      for the next known due time (a retry, a foreign lease running out),
 *      at most SAFETY_RESCAN_MS away. There is no polling loop: an idle
 *      worker sleeps in epoll until a datagram or that timer.
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

#include "catalog-ids.h"
#include "knock-build.h"
#include "log.h"
#include "worker.h"

#define LEASE_MS 30000
#define SAFETY_RESCAN_MS 30000
#define FLUSH_RETRY_MS 200
#define STOP_TIMEOUT_DEFAULT_MS 45000
#define BATCH_US 1000

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

/* ---- job lists ------------------------------------------------------------------ */

static void list_add(job **head, job *j)
{
        j->prev = NULL;
        j->next = *head;
        if (*head)
                (*head)->prev = j;
        *head = j;
}

static void list_remove(job **head, job *j)
{
        if (j->prev)
                j->prev->next = j->next;
        else
                *head = j->next;
        if (j->next)
                j->next->prev = j->prev;
        j->prev = j->next = NULL;
}

static job *job_free(job *j)
{
        if (!j)
                return NULL;
        exec_cleanup(j);
        forward_cleanup(j);
        knock_claim_clear(&j->claim);
        free(j->out);
        free(j->error);
        free(j->http_error);
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
        uint64_t conc = w->d->cfg->concurrency;

        j->ended_at = now_ms();
        list_remove(&w->running, j);
        w->n_running--;
        list_add(&w->done, j);
        w->n_done++;

        /* Group commit: results are written, and their slots refilled, in
         * one transaction per pump. Pump at once when half the slots are
         * free (or nothing else runs); otherwise let BATCH_US of further
         * completions join the same COMMIT. */
        if (w->stopping || w->n_running == 0 || (conc - w->n_running) * 2 >= conc)
                event_active(w->ev_pump, EV_TIMEOUT, 0);
        else if (!evtimer_pending(w->ev_batch, NULL)) {
                struct timeval tv = {0, BATCH_US};

                evtimer_add(w->ev_batch, &tv);
        }
}

static void job_start(worker *w, knock_claim *c)
{
        job *j;
        int r;

        j = calloc(1, sizeof(*j));
        if (!j) {
                /* Leave the claim to expire: it will be retried. */
                knock_claim_clear(c);
                log_error_errno(-ENOMEM, "Out of memory starting a handler");
                return;
        }
        j->w = w;
        j->claim = *c;
        *c = (knock_claim){};
        j->pid = 0;
        j->pidfd = j->in_fd = j->out_fd = -1;
        j->exit_code = -1;
        j->started_us = mono_us();
        list_add(&w->running, j);
        w->n_running++;
        w->n_claimed++;

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
        if (r < 0) {
                j->outcome = EVENT_OUTCOME_TEMPFAIL;
                (void)asprintf(&j->error, "cannot start handler: %s", strerror(-r));
                job_complete(j);
        }
}

/* ---- flushing results ------------------------------------------------------------ */

static void log_result(worker *w, job *j, const knock_attempt_result *res)
{
        char attempt[24], duration[24], http[8], exitc[16], next[32];
        uint64_t ms = (mono_us() - j->started_us) / 1000;
        const char *out = j->out_len > 0 ? j->out : NULL;

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

static void arm_timer(struct event *ev, int64_t ms)
{
        struct timeval tv;

        if (ms < 0)
                ms = 0;
        tv.tv_sec = (time_t)(ms / 1000);
        tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
        evtimer_add(ev, &tv);
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

/*
 * One turn of the pump: the finished jobs' results and the claim that
 * refills their slots go into ONE transaction. Returns 0, or a negative
 * errno when it failed (nothing was written: the jobs stay in the done list
 * for the next turn, their leases still renewed).
 */
static int pump(worker *w)
{
        _cleanup_free_ knock_attempt_result *res = NULL;
        _cleanup_free_ const char **rel_ids = NULL, **rel_att = NULL;
        _cleanup_free_ job **fin = NULL;
        _cleanup_free_ knock_claim *claims = NULL;
        knock_claim_stats stats = {};
        size_t n = 0, n_rel = 0, hooks = 0, free_slots = 0, n_claims = 0;
        int64_t now = now_ms(), due;
        int r;

        if (w->n_done > 0) {
                res = calloc(w->n_done, sizeof(*res));
                fin = calloc(w->n_done, sizeof(*fin));
                rel_ids = calloc(w->n_done, sizeof(*rel_ids));
                rel_att = calloc(w->n_done, sizeof(*rel_att));
                if (!res || !fin || !rel_ids || !rel_att)
                        return log_error_errno(-ENOMEM, "Out of memory");
        }
        for (job *j = w->done; j; j = j->next) {
                /* Killed by the stop deadline: give the event back uncounted.
                 * A handler that succeeded just before the kill still counts. */
                if (j->interrupted && j->outcome != EVENT_OUTCOME_SUCCESS) {
                        rel_ids[n_rel] = j->claim.id;
                        rel_att[n_rel++] = j->claim.attempt_id;
                        continue;
                }
                fin[n] = j;
                res[n++] = (knock_attempt_result){
                        .event_id = j->claim.id,
                        .attempt_id = j->claim.attempt_id,
                        .attempt = j->claim.attempt,
                        .outcome = j->outcome,
                        .exit_code = j->exit_code,
                        .signal = j->signal,
                        .http_status = j->http_status,
                        .error = j->error,
                        .output = j->out,
                        .output_len = j->out_len,
                        .ended_at = j->ended_at,
                };
        }

        if (!w->stopping && w->d->cfg->concurrency > w->n_running)
                free_slots = (size_t)(w->d->cfg->concurrency - w->n_running);

        r = events_finish_and_claim(w->d->store, w->d->cfg, w->identity, now, res, n, &hooks,
                LEASE_MS, free_slots, &claims, &n_claims, &stats);
        if (r < 0)
                return log_struct_errno(LOG_ERR, r, MSGID_STORAGE_ERROR,
                        LOG_FIELDS(LF("KNOCK_ERROR", store_errmsg(w->d->store))),
                        "Cannot record %zu attempt results and claim: %m", n);
        /* Committed: the deliverer may look at the new hooks now. */
        if (hooks + stats.hooks > 0)
                daemon_wake_peer(w->d->name, "deliver");
        for (size_t i = 0; i < n; i++) {
                log_result(w, fin[i], &res[i]);
                list_remove(&w->done, fin[i]);
                w->n_done--;
                job_free(fin[i]);
        }
        log_claim_stats(w, &stats);
        for (size_t i = 0; i < n_claims; i++)
                job_start(w, &claims[i]);

        if (n_rel > 0) {
                r = events_release(w->d->store, w->identity, rel_ids, rel_att, n_rel, now);
                if (r < 0)
                        return log_struct_errno(LOG_ERR, r, MSGID_STORAGE_ERROR,
                                LOG_FIELDS(LF("KNOCK_ERROR", store_errmsg(w->d->store))),
                                "Cannot release %zu claims: %m", n_rel);
                log_notice("Released %zu claims of handlers stopped by shutdown", n_rel);
                while (w->done) {
                        job *j = w->done;

                        list_remove(&w->done, j);
                        w->n_done--;
                        job_free(j);
                }
        }
        if (w->stopping)
                return 0;

        /* Full: a finishing job pumps again. Otherwise sleep until the next
         * known due time, or the safety rescan. */
        if (n_claims < free_slots) {
                r = events_next_due(w->d->store, w->identity, &due);
                if (r < 0)
                        due = now + FLUSH_RETRY_MS;
                due = MIN(due, now + SAFETY_RESCAN_MS);
        } else
                due = now + SAFETY_RESCAN_MS;
        arm_timer(w->ev_due, due - now);
        return 0;
}

static void on_pump(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;

        evtimer_del(w->ev_batch);
        if (pump(w) < 0) {
                arm_timer(w->ev_due, FLUSH_RETRY_MS);
                return;
        }
        if (w->stopping && w->n_running == 0 && w->n_done == 0)
                daemon_exit_loop(w->d);
}

static void on_due(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;

        event_active(w->ev_pump, EV_TIMEOUT, 0);
}

static void on_batch(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;

        event_active(w->ev_pump, EV_TIMEOUT, 0);
}

static void on_wake(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;
        char buf[64];

        /* Many datagrams, one pump. */
        while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
                ;
        event_active(w->ev_pump, EV_TIMEOUT, 0);
}

static void on_renew(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;
        _cleanup_free_ const char **ids = NULL;
        size_t n = 0;
        int r;

        if (w->n_running + w->n_done == 0)
                return;
        ids = calloc(w->n_running + w->n_done, sizeof(*ids));
        if (!ids)
                return;
        for (job *j = w->running; j; j = j->next)
                ids[n++] = j->claim.id;
        for (job *j = w->done; j; j = j->next)
                ids[n++] = j->claim.id;
        r = events_renew(w->d->store, w->identity, ids, n, now_ms() + LEASE_MS);
        if (r < 0)
                log_struct_errno(LOG_ERR, r, MSGID_STORAGE_ERROR,
                        LOG_FIELDS(LF("KNOCK_ERROR", store_errmsg(w->d->store))),
                        "Cannot renew %zu leases: %m", n);
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

static uint64_t stop_timeout_ms(void)
{
        const char *e = getenv("KNOCK_STOP_TIMEOUT");
        uint64_t v;

        if (e && parse_duration_ms(e, false, &v) >= 0)
                return v;
        return STOP_TIMEOUT_DEFAULT_MS;
}

static void op_stop(knock_daemon *d)
{
        worker *w = d->userdata;

        w->stopping = true;
        if (w->ev_wake)
                event_del(w->ev_wake);
        evtimer_del(w->ev_due);
        if (w->n_running > 0) {
                log_info("Waiting up to %llu ms for %zu running handlers",
                        (unsigned long long)stop_timeout_ms(), w->n_running);
                arm_timer(w->ev_stop, (int64_t)stop_timeout_ms());
        }
        event_active(w->ev_pump, EV_TIMEOUT, 0);
}

/* After the loop: a second SIGTERM may have broken it with handlers still
 * running. Kill and reap them synchronously, then release their claims. */
static void finish_remaining(worker *w)
{
        for (job *j = w->running; j; j = j->next) {
                j->interrupted = true;
                if (!j->is_http && j->pid > 0) {
                        exec_kill(j, SIGKILL);
                        (void)waitpid(j->pid, NULL, 0);
                        j->pid = 0;
                }
        }
        while (w->running) {
                job *j = w->running;

                list_remove(&w->running, j);
                w->n_running--;
                j->outcome = EVENT_OUTCOME_INTERRUPTED;
                list_add(&w->done, j);
                w->n_done++;
        }
        w->stopping = true;
        (void)pump(w);
}

/* ---- daemon ops ------------------------------------------------------------------ */

static void op_status(knock_daemon *d, char *buf, size_t len)
{
        worker *w = d->userdata;
        int64_t c[6] = {};

        if (store_queue_counts(d->store, c) < 0) {
                snprintf(buf, len, "%zu handlers running; queue unknown", w->n_running);
                return;
        }
        /* event_status_names: received processing failed dead ignored handled */
        snprintf(buf, len,
                "%s%zu handlers running; queue: %lld received, %lld processing, %lld failed "
                "(retrying), %lld dead; handled %llu since start",
                w->stopping ? "stopping: " : "", w->n_running, (long long)c[0], (long long)c[1],
                (long long)c[2], (long long)c[3], (unsigned long long)w->n_handled);
}

static char *op_counters(knock_daemon *d)
{
        worker *w = d->userdata;
        char *s;

        if (asprintf(&s,
                    "{\"in_flight\":%zu,\"claimed\":%llu,\"handled\":%llu,\"failed\":%llu,"
                    "\"dead\":%llu,\"ignored\":%llu,\"lost\":%llu}",
                    w->n_running, (unsigned long long)w->n_claimed,
                    (unsigned long long)w->n_handled, (unsigned long long)w->n_failed,
                    (unsigned long long)w->n_dead, (unsigned long long)w->n_ignored,
                    (unsigned long long)w->n_lost) < 0)
                return NULL;
        return s;
}

static int op_reload(knock_daemon *d, knock_config *new_cfg)
{
        worker *w = d->userdata;

        /* Running jobs keep their handler; new claims use the new config,
         * swapped in by the skeleton after we return. */
        event_active(w->ev_pump, EV_TIMEOUT, 0);
        return 0;
}

static const knock_daemon_ops worker_ops = {
        .status = op_status,
        .counters = op_counters,
        .stop = op_stop,
        .reload = op_reload,
};

/* ---- start ----------------------------------------------------------------------- */

static bool env_hidden(const char *e)
{
        static const char *const hidden[] = {
                "NOTIFY_SOCKET=",
                "WATCHDOG_PID=",
                "WATCHDOG_USEC=",
                "LISTEN_PID=",
                "LISTEN_FDS=",
                "LISTEN_FDNAMES=",
                "JOURNAL_STREAM=",
                "KNOCK_ENDPOINT=",
                "KNOCK_EVENT_ID=",
                "KNOCK_EVENT_TYPE=",
                "KNOCK_PROVIDER_EVENT_ID=",
                "KNOCK_DELIVERY_ID=",
                "KNOCK_ATTEMPT=",
        };
        for (size_t i = 0; i < ELEMENTSOF(hidden); i++)
                if (startswith(e, hidden[i]))
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
                if (!env_hidden(*e))
                        w->base_env[w->n_base_env++] = *e;
        return 0;
}

/* True when a claim holder "worker:PID" is certainly gone. */
static bool holder_gone(const char *holder)
{
        char path[64], comm[32] = "";
        _cleanup_close_ int fd = -1;
        uint64_t pid;
        ssize_t k;

        if (!startswith(holder, "worker:") || parse_u64_strict(holder + 7, &pid) < 0 || pid == 0 ||
                pid > INT32_MAX)
                return false;
        if ((pid_t)pid == getpid())
                return true; /* our own PID, from a previous life */
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
                return true;
        /* Alive: gone only if that PID is no longer a knock-worker. */
        snprintf(path, sizeof(path), "/proc/%llu/comm", (unsigned long long)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        k = read(fd, comm, sizeof(comm) - 1);
        if (k <= 0)
                return false;
        comm[k] = 0;
        comm[strcspn(comm, "\n")] = 0;
        return !streq(comm, "knock-worker");
}

static void take_over_dead_holders(worker *w)
{
        char **holders = NULL;
        size_t n = 0;
        int r;

        r = events_claim_holders(w->d->store, &holders, &n);
        if (r < 0) {
                log_warning_errno(r, "Cannot list claim holders: %m");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                size_t k = 0;

                if (holder_gone(holders[i])) {
                        r = events_expire_claims(w->d->store, holders[i], now_ms(), &k);
                        if (r < 0)
                                log_warning_errno(r, "Cannot expire claims of %s: %m", holders[i]);
                        else if (k > 0)
                                log_notice("%zu events were held by %s, which is gone; "
                                           "they run again now",
                                        k, holders[i]);
                }
                free(holders[i]);
        }
        free(holders);
}

static int worker_setup(worker *w, knock_daemon *d)
{
        struct timeval renew = {LEASE_MS / 3000, (LEASE_MS / 3 % 1000) * 1000};
        int r;

        w->d = d;
        d->userdata = w;
        w->wake_fd = -1;
        snprintf(w->identity, sizeof(w->identity), "worker:%d", (int)getpid());

        r = base_env_init(w);
        if (r < 0)
                return log_error_errno(r, "Out of memory");

        w->ev_pump = event_new(d->base, -1, 0, on_pump, w);
        w->ev_due = evtimer_new(d->base, on_due, w);
        w->ev_batch = evtimer_new(d->base, on_batch, w);
        w->ev_renew = event_new(d->base, -1, EV_PERSIST, on_renew, w);
        w->ev_stop = evtimer_new(d->base, on_stop_deadline, w);
        if (!w->ev_pump || !w->ev_due || !w->ev_batch || !w->ev_renew || !w->ev_stop)
                return log_error_errno(-ENOMEM, "Cannot create events");
        evtimer_add(w->ev_renew, &renew);

        /* The ingress sends a datagram here after each commit that created
         * events; without it we still rescan on the due timer. */
        w->wake_fd = daemon_wake_socket(d->name, "worker");
        if (w->wake_fd < 0)
                log_warning_errno(w->wake_fd,
                        "Cannot bind the wake-up socket, new events are picked up "
                        "by the periodic rescan only: %m");
        else {
                w->ev_wake = event_new(d->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w);
                if (!w->ev_wake)
                        return log_error_errno(-ENOMEM, "Cannot create events");
                event_add(w->ev_wake, NULL);
        }

        take_over_dead_holders(w);
        /* First look at the queue right after READY=1. */
        event_active(w->ev_pump, EV_TIMEOUT, 0);
        return 0;
}

static void worker_free(worker *w)
{
        struct event **evs[] = {
                &w->ev_wake, &w->ev_pump, &w->ev_due, &w->ev_renew, &w->ev_stop, &w->ev_batch};

        while (w->done) {
                job *j = w->done;

                list_remove(&w->done, j);
                job_free(j);
        }
        forward_pool_free(w);
        events_cache_clear();
        for (size_t i = 0; i < ELEMENTSOF(evs); i++)
                if (*evs[i]) {
                        event_free(*evs[i]);
                        *evs[i] = NULL;
                }
        if (w->wake_fd >= 0) {
                char path[4096];

                snprintf(path, sizeof(path), "%s/%s.worker.sock", knock_runtime_dir(), w->d->name);
                (void)unlink(path);
                close(w->wake_fd);
        }
        free(w->base_env);
}

int main(int argc, char **argv)
{
        int r;

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
