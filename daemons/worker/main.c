/* SPDX-License-Identifier: MIT */
/*
 * knock-worker NAME — claims stored events, runs their handler, records
 * every attempt (contract §7, §12; knock-worker(8)).
 *
 * One event loop for the handlers, one writer thread (writer.c) for the
 * database: the loop never waits for SQLite once it runs. cycle.c hands
 * finished jobs to the writer, which records their results and claims new
 * events in ONE transaction per cycle, and starts what was claimed; jobs.c
 * keeps the jobs and picks each one's runner (exec.c for `exec:` handlers,
 * forward.c for `http(s)://` ones) from a table.
 *
 * Leases: a claim holds an event for LEASE_MS and a timer renews the leases
 * of every held event every LEASE_MS/3, so a slow handler never loses its
 * event, while a crashed worker's events come back within LEASE_MS. At
 * start, claims held by a worker of this host that is provably gone (its PID
 * is not a running knock-worker, or is our own PID from a previous life) are
 * expired at once, so a restart after kill -9 resumes immediately. On a
 * PostgreSQL endpoint shared by several hosts the claims say which host
 * holds them ("worker:PID@HOST", lease.h): another host's are left to their
 * lease, and its clock is the server's (store.h, store_now_ms).
 *
 * The story: the skeleton (common/daemon/) parses NAME, loads the config
 * and opens the store; here the loop's events and the runners are set up,
 * a previous life's claims are taken over, the writer thread starts, and
 * the first look at the queue comes right after READY=1.
 *
 * Stop: SIGTERM stops claiming; running handlers get until the stop
 * deadline (KNOCK_STOP_TIMEOUT, default 45 s: above the default handler
 * timeout plus its kill grace, below systemd's default TimeoutStopSec), then
 * their process groups are killed and their claims released without
 * counting the attempt.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>

#include "lease.h"
#include "pause.h"
#include "log.h"
#include "worker.h"

#define STOP_TIMEOUT_DEFAULT_MS 45000

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

/* ---- daemon ops ---------------------------------------------------------------------- */

static void op_stop(knock_daemon *d)
{
        worker *w = d->userdata;

        w->stopping = true;
        daemon_stop_work(d, w->ev_wake, w->ev_due, w->n_running);
        listener_stop(&w->listener);
        writer_listen(&w->wr, false);
        /* No claim from now on; one already in flight comes back refused, and so do
         * the jobs still waiting for a slot. */
        writer_set_capacity(&w->wr, 0);
        ready_refuse_all(w);
        event_active(w->ev_pump, EV_TIMEOUT, 0);
}

static void op_status(knock_daemon *d, char *buf, size_t len)
{
        worker *w = d->userdata;
        int64_t c[_EVENT_STATUS_MAX] = {};
        char paused[256 + 2];

        /* Counted by the writer with the last heartbeat: never a query on the loop. */
        writer_paused(&w->wr, paused, sizeof(paused) - 2);
        if (paused[0])
                strcat(paused, "; ");
        if (!writer_queue_counts(&w->wr, c)) {
                snprintf(buf, len, "%s%zu handlers running, %zu claimed ahead; queue unknown",
                        paused, w->n_running, w->n_ready);
                return;
        }
        snprintf(buf, len,
                "%s%s%zu handlers running, %zu claimed ahead; queue: %lld received, %lld "
                "processing, %lld failed (retrying), %lld dead; handled %llu since start",
                w->stopping ? "stopping: " : "", paused, w->n_running, w->n_ready,
                (long long)c[EVENT_STATUS_RECEIVED], (long long)c[EVENT_STATUS_PROCESSING],
                (long long)c[EVENT_STATUS_FAILED], (long long)c[EVENT_STATUS_DEAD],
                (unsigned long long)w->n_handled);
}

static char *op_counters(knock_daemon *d)
{
        worker *w = d->userdata;
        uint64_t cycles, failures, us_total, us_max, batch_max, opened, closed;
        char hist[KNOCK_HIST_BUCKETS * 24] = "";
        char *s;

        for (size_t i = 0, at = 0; i < KNOCK_HIST_BUCKETS; i++)
                at += (size_t)snprintf(hist + at, sizeof(hist) - at, "%s%llu", i ? "," : "",
                                       (unsigned long long)w->handler_hist[i]);
        writer_stats(&w->wr, &cycles, &failures, &us_total, &us_max, &batch_max);
        writer_breakers(&w->wr, &opened, &closed);
        if (asprintf(&s,
                    "{\"in_flight\":%zu,\"claimed_ahead\":%zu,\"claimed\":%llu,\"handled\":%llu,\"failed\":%llu,"
                    "\"dead\":%llu,\"ignored\":%llu,\"lost\":%llu,\"commits\":%llu,"
                    "\"commit_failures\":%llu,\"commit_us_total\":%llu,"
                    "\"commit_us_max\":%llu,\"batch_max\":%llu,"
                    "\"handler_buckets\":[%s],\"handler_count\":%llu,\"handler_sum_s\":%.6f,"
                    "\"breakers_opened\":%llu,\"breakers_closed\":%llu}",
                    w->n_running, w->n_ready, (unsigned long long)w->n_claimed,
                    (unsigned long long)w->n_handled, (unsigned long long)w->n_failed,
                    (unsigned long long)w->n_dead, (unsigned long long)w->n_ignored,
                    (unsigned long long)w->n_lost, (unsigned long long)cycles,
                    (unsigned long long)failures, (unsigned long long)us_total,
                    (unsigned long long)us_max, (unsigned long long)batch_max, hist,
                    (unsigned long long)w->handler_count, w->handler_sum_s,
                    (unsigned long long)opened, (unsigned long long)closed) < 0)
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

/* The stop deadline passed: the handlers still running are killed. */
static size_t op_interrupt(knock_daemon *d)
{
        return jobs_interrupt(d->userdata);
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
        .interrupt = op_interrupt,
        .work = "running handlers",
        .cut = "killing",
        .stop_timeout_ms = STOP_TIMEOUT_DEFAULT_MS,
        .reload = op_reload,
};

/* ---- start and end ------------------------------------------------------------------- */

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

        r = lease_take_over_gone(w->d->store, "worker", lease_host(w->d->store),
                events_claim_holders, events_expire_claims, store_now_ms(w->d->store),
                report_taken_over, w);
        if (r < 0)
                log_warning_errno(r, "Cannot list claim holders: %m");
        /* A breaker's probe that a previous worker ran never reported: probe again. */
        r = pause_breaker_reset_probes(w->d->store);
        if (r < 0)
                log_warning_errno(r, "Cannot reset the circuit breakers' probes: %m");
}

static int worker_setup(worker *w, knock_daemon *d)
{
        int r;

        w->d = d;
        d->userdata = w;
        w->wake_fd = -1;
        w->ready_tail = &w->ready;
        lease_identity("worker", lease_host(d->store), w->identity);

        r = cycle_events_new(w);
        if (r < 0)
                return r;
        /* Before the writer thread starts: exec blocks SIGCHLD, which the
         * thread inherits. */
        r = runners_setup(w);
        if (r < 0)
                return r;

        /* Before the writer claims anything: a previous life's claims are
         * taken over by the first claim. */
        take_over_dead_holders(w);
        w->wr.lease_ms = LEASE_MS;
        r = writer_start(&w->wr, w, cycle_on_reply);
        if (r < 0)
                return log_error_errno(r, "Cannot start the writer thread: %m");
        r = cycle_listen(w);
        if (r < 0)
                return r;
        /* First look at the queue right after READY=1. */
        daemon_arm_timer(w->ev_due, 0);
        return 0;
}

static void worker_free(worker *w)
{
        /* Joins the thread: nothing of ours is in its hands afterwards. */
        writer_stop(&w->wr);
        jobs_free(w);
        runners_teardown(w);
        cycle_events_free(w);
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
                cycle_finish_remaining(&worker_);
                worker_free(&worker_);
        }
        daemon_finish(&daemon_, r >= 0);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
