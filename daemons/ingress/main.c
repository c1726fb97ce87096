/* SPDX-License-Identifier: MIT */
/*
 * knock-ingress NAME — the durable front door (contract §5).
 *
 * The loop thread owns HTTP: conn.c frames requests and keeps the public
 * listener's limits, request.c decides each one (path, method, size, the
 * signature over the raw body) and hands what is to be stored to the writer
 * thread (writer.c). A verified request is answered only when the writer
 * reports its transaction committed (synchronous=FULL), so a 2xx always
 * means "on disk". Rejections (401, 413) are answered at once and their
 * delivery rows stored best effort: a non-2xx promises nothing. admin.c
 * answers the admin listener from a snapshot thread's figures.
 *
 * The story: the skeleton (common/daemon/) parses NAME, loads the config
 * and opens the store; here the listeners' server, the writer thread and the
 * admin thread start, sockets.c adopts or binds the two listeners, and the
 * loop runs. On SIGTERM accepting stops, what was read is answered once it
 * commits (at most DRAIN_TIMEOUT_S), then the threads are joined and the
 * connections closed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knock-build.h"
#include "request.h"
#include "sockets.h"

#define DRAIN_TIMEOUT_S 25

static const char usage[] =
        "Usage: knock-ingress [OPTIONS] NAME\n"
        "\n"
        "Receives webhooks for endpoint NAME and stores them durably before answering.\n"
        "See knock-ingress(8).\n"
        "\n"
        "  -h --help     Show this help\n"
        "  -V --version  Show the version\n";

/* ---- daemon ops ---------------------------------------------------------------------- */

static void on_drain_timeout(evutil_socket_t fd, short what, void *userdata)
{
        ingress *in = userdata;

        log_warning("Drain timed out with %zu items pending", writer_pending(&in->writer));
        daemon_exit_loop(&in->d);
}

static void ingress_stop(knock_daemon *d)
{
        ingress *in = d->userdata;
        struct timeval tv = {DRAIN_TIMEOUT_S, 0};

        /* Stop accepting first, then answer what was read once it commits. */
        conn_server_stop_accepting(&in->srv);
        in->draining = true;
        in->ev_drain_timeout = evtimer_new(d->base, on_drain_timeout, in);
        if (in->ev_drain_timeout)
                evtimer_add(in->ev_drain_timeout, &tv);
        request_finish_drain(in);
}

static int ingress_health(knock_daemon *d)
{
        ingress *in = d->userdata;
        bool stuck;

        /* A commit that has not returned for 30 s means the disk is wedged:
         * stop pinging so systemd restarts us. */
        pthread_mutex_lock(&in->writer.lock);
        stuck = in->writer.busy && mono_us() - in->writer.busy_since_us > 30 * 1000000ULL;
        pthread_mutex_unlock(&in->writer.lock);
        return stuck ? -EIO : 0;
}

/* The heartbeat rides with the next batch on the writer thread: the loop
 * never waits for SQLite. The ping is withheld while the writer's last
 * commit failed or a commit is stuck (ingress_health). */
static int ingress_heartbeat(knock_daemon *d, const char *counters, const char *status)
{
        ingress *in = d->userdata;
        ingest_item *it = calloc(1, sizeof(*it));

        if (!it)
                return -ENOMEM;
        it->kind = INGEST_HEARTBEAT;
        it->hb_counters = counters ? strdup(counters) : NULL;
        it->hb_status = status ? strdup(status) : NULL;
        writer_submit(&in->writer, it);
        return in->writer.healthy ? 0 : -EIO;
}

static char *ingress_counters(knock_daemon *d)
{
        ingress *in = d->userdata;
        ingest_stats s;
        json_t *j;
        char *out;

        pthread_mutex_lock(&in->writer.lock);
        s = in->stats;
        pthread_mutex_unlock(&in->writer.lock);
        j = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                      "accepted", (json_int_t)s.accepted, "duplicates", (json_int_t)s.duplicates,
                      "invalid", (json_int_t)s.invalid, "too_large", (json_int_t)s.too_large,
                      "handshakes", (json_int_t)s.handshakes, "storage_errors",
                      (json_int_t)s.storage_errors, "rejected_other", (json_int_t)s.rejected_other,
                      "commits", (json_int_t)s.commits, "commit_failures",
                      (json_int_t)s.commit_failures, "committed_items",
                      (json_int_t)s.committed_items, "batch_us_total",
                      (json_int_t)s.batch_us_total, "commit_us_total",
                      (json_int_t)s.commit_us_total, "commit_us_max", (json_int_t)s.commit_us_max,
                      "batch_max", (json_int_t)s.batch_max);
        if (j)
                json_object_update_new(
                        j, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "connections_accepted",
                                     (json_int_t)s.connections_accepted, "connections_refused",
                                     (json_int_t)s.connections_refused, "timeouts",
                                     (json_int_t)s.timeouts, "bad_requests",
                                     (json_int_t)s.bad_requests, "over_budget",
                                     (json_int_t)s.over_budget, "orphans_dropped",
                                     (json_int_t)s.orphans_dropped));
        out = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return out;
}

static void ingress_status(knock_daemon *d, char *buf, size_t len)
{
        ingress *in = d->userdata;

        snprintf(buf, len, "%s: %llu stored, %llu duplicates, %llu rejected, %llu storage errors%s",
                 in->draining ? "draining" : "receiving", (unsigned long long)in->stats.accepted,
                 (unsigned long long)in->stats.duplicates,
                 (unsigned long long)(in->stats.invalid + in->stats.too_large),
                 (unsigned long long)in->stats.storage_errors,
                 in->writer.healthy ? "" : " (storage failing)");
}

static int ingress_reload(knock_daemon *d, knock_config *n)
{
        ingress *in = d->userdata;

        /* Limits and verification settings take effect for the next request;
         * listen addresses change only through the socket units. */
        conn_server_configure(&in->srv, n);
        in->admin.cfg = n;
        return 0;
}

static const knock_daemon_ops ingress_ops = {
        .health = ingress_health,
        .heartbeat = ingress_heartbeat,
        .counters = ingress_counters,
        .status = ingress_status,
        .stop = ingress_stop,
        .reload = ingress_reload,
};

int main(int argc, char **argv)
{
        static ingress in;
        _cleanup_free_ char *db = NULL;
        bool setup_done = false;
        int r;

        in.rl_invalid = (log_ratelimit)LOG_RATELIMIT_INIT(10, 50);
        in.rl_storage = (log_ratelimit)LOG_RATELIMIT_INIT(10, 20);
        in.rl_orphans = (log_ratelimit)LOG_RATELIMIT_INIT(60, 1);
        /* The writer thread activates an event on the loop's base. */
        evthread_use_pthreads();

        r = daemon_setup(&in.d, "ingress", usage, argc, argv, &ingress_ops,
                         STORE_NO_AUTOCHECKPOINT);
        if (r > 0)
                return 0;
        if (r < 0) {
                if (in.d.base || in.d.store)
                        daemon_finish(&in.d, false);
                return r == -EINVAL ? 2 : 1;
        }
        setup_done = true;
        in.d.userdata = &in;

        in.srv = (conn_server){
                .base = in.d.base,
                .cfg = in.d.cfg,
                .stats = &in.stats,
                .on_head = request_on_head,
                .on_request = request_on_request,
                .userdata = &in,
        };
        conn_server_configure(&in.srv, in.d.cfg);
        in.http_admin = evhttp_new(in.d.base);
        if (!in.http_admin) {
                r = log_error_errno(-ENOMEM, "Out of memory");
                goto finish;
        }

        db = config_store_location(in.d.cfg);
        r = writer_start(&in.writer, db, in.d.name, in.d.base, request_on_stored, &in, &in.stats);
        if (r < 0) {
                log_error_errno(r, "Cannot start the writer thread: %m");
                goto finish;
        }
        r = admin_start(&in.admin, db, &in.writer, &in.stats);
        if (r < 0) {
                log_error_errno(r, "Cannot start the admin thread: %m");
                goto finish;
        }
        in.admin.cfg = in.d.cfg;
        r = admin_serve(&in.admin, in.http_admin, in.d.base);
        if (r < 0) {
                log_error_errno(r, "Cannot start the web console: %m");
                goto finish;
        }
        r = sockets_open(&in.srv, in.http_admin, in.d.cfg);
        if (r < 0)
                goto finish;

        r = daemon_run(&in.d);
finish:
        admin_stop(&in.admin);
        writer_stop(&in.writer);
        /* Answer nothing more: items the writer finished after the loop
         * ended (drain timeout) are freed. */
        request_drop_stored(&in);
        if (in.ev_drain_timeout)
                event_free(in.ev_drain_timeout);
        conn_server_free(&in.srv);
        if (in.http_admin)
                evhttp_free(in.http_admin);
        if (setup_done)
                daemon_finish(&in.d, r >= 0);
        return r < 0 ? 1 : 0;
}
