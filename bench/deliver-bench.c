/* SPDX-License-Identifier: MIT */
/*
 * deliver-bench — knock-deliver's hook rate to a local keep-alive receiver,
 * beside a bare client baseline measured in the same run.
 *
 *  1. knock-deliver: N hooks are inserted as the worker's outbox writes them
 *     (pending, due now), then the real knock-deliver sends them with
 *     [hook] concurrency C to a libevent evhttp receiver answering 204 (in
 *     a child process). Rate = hooks / (last attempt end − first attempt
 *     start), read from the hook_attempts rows, so process start-up is not
 *     counted; every attempt is signed, recorded and committed.
 *  2. bare: the same receiver, a bare evhttp client keeping C keep-alive
 *     connections busy with the same POST, N times (no signing, no store).
 *     ratio = deliver / bare.
 *
 * Usage: deliver-bench [KNOCK_DELIVER] [N] [C]
 *        (default: ../daemons/deliver/knock-deliver next to this binary, 20000, 16)
 * Output: one JSON object per figure.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

extern char **environ;

static const char payload[] =
        "{\"type\":\"knock.event.handled\",\"endpoint\":\"bench\",\"event_id\":"
        "\"evt_01JDBENCH0000000000000000\",\"provider_event_id\":\"evt_1PbenchXYZ\","
        "\"event_type\":\"invoice.paid\",\"status\":\"handled\",\"attempts\":1,"
        "\"finished_at\":\"2026-11-26T12:00:00.000Z\",\"last_error\":null}";

/* [hook] to the sink at port, with concurrency conc. */
static void endpoint(int port, size_t conc)
{
        char conf[1024];

        snprintf(conf, sizeof(conf),
                 "[endpoint]\nprovider = none\nallow_unverified = yes\nlisten = 127.0.0.1:1\n"
                 "[hook]\nurl = http://127.0.0.1:%d/hooks\n"
                 "secret = literal:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                 "concurrency = %zu\n",
                 port, conc);
        bench_endpoint("dbench", conf);
}

static void insert_hooks(knock_store *s, size_t n)
{
        _cleanup_stmt_ db_stmt *e = NULL, *h = NULL;

        if (store_begin(s) < 0 ||
            store_prepare(s,
                          "INSERT INTO events (id, event_type, status, delivery_id, "
                          "received_at, updated_at) VALUES (?, 'invoice.paid', 'handled', ?, ?, ?)",
                          &e) < 0 ||
            store_prepare(s,
                          "INSERT INTO hooks (id, event_id, type, payload, state, attempt_count, "
                          "max_attempts, created_at, updated_at, next_attempt_at) VALUES "
                          "(?, ?, 'knock.event.handled', ?, 'pending', 0, 8, ?, ?, ?)",
                          &h) < 0)
                bench_die("prepare");
        for (size_t i = 0; i < n; i++) {
                char eid[KNOCK_ID_MAX], hid[KNOCK_ID_MAX];
                int64_t now = now_ms();

                id_new("evt", eid);
                id_new("hk", hid);
                stmt_reset(e);
                stmt_reset(h);
                stmt_bind_text(e, 1, eid);
                stmt_bind_text(e, 2, eid);
                stmt_bind_i64(e, 3, now);
                stmt_bind_i64(e, 4, now);
                stmt_bind_text(h, 1, hid);
                stmt_bind_text(h, 2, eid);
                stmt_bind_text(h, 3, payload);
                stmt_bind_i64(h, 4, now);
                stmt_bind_i64(h, 5, now);
                stmt_bind_i64(h, 6, now);
                if (stmt_step(e) != 0 || stmt_step(h) != 0)
                        bench_die("insert");
        }
        if (store_commit(s) < 0)
                bench_die("commit");
}

static double deliver(const char *bin, size_t n, int port, size_t conc, double *ret_wall)
{
        char *argv[] = {(char *)bin, (char *)"bench", NULL};
        knock_store *s;
        int64_t first, last, delivered = 0;
        uint64_t t0;
        pid_t pid;

        endpoint(port, conc);
        s = bench_open_db();
        insert_hooks(s, n);
        t0 = mono_us();
        if ((errno = posix_spawn(&pid, bin, NULL, NULL, argv, environ)) != 0)
                bench_die(bin);
        for (int i = 0; i < 600 * 50 && delivered != (int64_t)n; i++) {
                bench_sleep_ms(20);
                delivered = bench_query_i64(s, "SELECT count(*) FROM hooks WHERE state = 'delivered'");
        }
        *ret_wall = (double)(mono_us() - t0) / 1e6;
        kill(pid, SIGTERM);
        (void)waitpid(pid, NULL, 0);
        if (delivered != (int64_t)n) {
                fprintf(stderr, "deliver-bench: only %lld of %zu hooks delivered\n",
                        (long long)delivered, n);
                exit(1);
        }
        first = bench_query_i64(s, "SELECT MIN(at) FROM hook_attempts");
        last = bench_query_i64(s, "SELECT MAX(at + duration_ms) FROM hook_attempts");
        store_close(s);
        return (double)n / ((double)MAX(last - first, 1) / 1000.0);
}

int main(int argc, char *argv[])
{
        static char def[4096];
        const char *bin;
        size_t n = 20000, conc = 16;
        double d, b, wall;
        pid_t sink;
        int port;

        bin = argc > 1 ? argv[1]
                       : bench_sibling("../daemons/deliver/knock-deliver", def, sizeof(def));
        if (argc > 2)
                n = strtoul(argv[2], NULL, 10);
        if (argc > 3)
                conc = strtoul(argv[3], NULL, 10);
        signal(SIGPIPE, SIG_IGN);

        sink = bench_start_sink(&port);
        b = bench_bare_client(n, port, conc, payload, sizeof(payload) - 1);
        d = deliver(bin, n, port, conc, &wall);
        printf("{\"bench\":\"deliver\",\"hooks\":%zu,\"concurrency\":%zu,"
               "\"hooks_per_s\":%.0f,\"wall_s_incl_startup\":%.2f,\"bare_client_per_s\":%.0f,"
               "\"ratio\":%.3f}\n",
               n, conc, d, wall, b, d / b);
        kill(sink, SIGTERM);
        (void)waitpid(sink, NULL, 0);
        return 0;
}
