/* SPDX-License-Identifier: MIT */
/*
 * worker-bench — knock-worker drain rates and pickup latency, each beside a
 * baseline measured in the same run.
 *
 *  1. exec: N events with handler exec:/bin/true are drained by the real
 *     knock-worker (concurrency C); beside it, a bare loop that keeps C
 *     posix_spawn()s of /bin/true in flight, N times. ratio = worker/bare,
 *     the median of ROUNDS rounds of the two back to back (min and max
 *     beside it). Also the worker's own CPU time per event (its threads, not
 *     the handlers; /proc/PID/task/x/schedstat), the bare loop's per spawn,
 *     and how busy the machine's CPUs were during each (/proc/stat).
 *  2. http: N events forwarded to a local keep-alive sink (libevent evhttp,
 *     204, in a child process) with concurrency HTTP_CONCURRENCY (64);
 *     beside it, a bare evhttp client posting the same body N times over as
 *     many keep-alive connections to the same sink. ratio = worker/bare;
 *     the median of ROUNDS rounds as for exec (events/s min and max beside).
 *  3. latency: events committed one at a time (as the ingress does: insert,
 *     COMMIT, wake datagram); receipt-to-handler-start = the attempt's
 *     started_at − the event's received_at, p50 and p99 over M events.
 *
 * Drain rate = events / (last attempt end − first attempt start), read from
 * the attempts rows, so process start-up is not counted.
 *
 * Usage: worker-bench [KNOCK_WORKER] [N_EXEC] [N_HTTP] [HTTP_CONCURRENCY] [ROUNDS]
 *        (default: ../daemons/worker/knock-worker next to this binary, 5000, 50000, 64, 3)
 * Output: one JSON object per figure.
 */

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

extern char **environ;

static const char *arg_worker;

/* A fresh endpoint "bench" with this [worker] section. */
static void endpoint(const char *worker_section)
{
        char conf[2048];

        snprintf(conf, sizeof(conf),
                "[endpoint]\nprovider = none\nallow_unverified = yes\nlisten = 127.0.0.1:1\n"
                "[worker]\n%s",
                worker_section);
        bench_endpoint("wbench", conf);
}

/* Every event's body; the bare client posts the same. */
static const char event_body[] = "{\"id\":\"evt\",\"type\":\"invoice.paid\",\"data\":{\"object\":"
                                 "{\"amount\":4200,\"currency\":\"eur\",\"customer\":"
                                 "\"cus_0123456789\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}}";

static void insert_events(knock_store *s, size_t n)
{
        _cleanup_stmt_ db_stmt *e = NULL, *d = NULL;

        if (store_begin(s) < 0 ||
                store_prepare(s,
                        "INSERT INTO events (id, provider_event_id, event_type, status, "
                        "delivery_id, received_at, updated_at) VALUES (?, ?, 'invoice.paid', "
                        "'received', ?, ?, ?)",
                        &e) < 0 ||
                store_prepare(s,
                        "INSERT INTO deliveries (id, event_id, received_at, signature_valid, "
                        "http_status, content_type, body, body_bytes) VALUES (?, ?, ?, 1, "
                        "200, 'application/json', ?, ?)",
                        &d) < 0)
                bench_die("prepare");
        for (size_t i = 0; i < n; i++) {
                char eid[KNOCK_ID_MAX], did[KNOCK_ID_MAX];
                int64_t now = now_ms();

                id_new("evt", eid);
                id_new("dlv", did);
                stmt_reset(e);
                stmt_reset(d);
                stmt_bind_text(e, 1, eid);
                stmt_bind_text(e, 2, eid);
                stmt_bind_text(e, 3, did);
                stmt_bind_i64(e, 4, now);
                stmt_bind_i64(e, 5, now);
                stmt_bind_text(d, 1, did);
                stmt_bind_text(d, 2, eid);
                stmt_bind_i64(d, 3, now);
                stmt_bind_blob_static(d, 4, event_body, sizeof(event_body) - 1);
                stmt_bind_i64(d, 5, sizeof(event_body) - 1);
                if (stmt_step(e) != 0 || stmt_step(d) != 0)
                        bench_die("insert");
        }
        if (store_commit(s) < 0)
                bench_die("commit");
}

static pid_t start_worker(void)
{
        char *argv[] = {(char *)arg_worker, (char *)"bench", NULL};
        pid_t pid;

        if ((errno = posix_spawn(&pid, arg_worker, NULL, NULL, argv, environ)) != 0)
                bench_die(arg_worker);
        return pid;
}

static void stop_worker(pid_t pid)
{
        kill(pid, SIGTERM);
        (void)waitpid(pid, NULL, 0);
}

static void wake(void)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/bench.worker.sock",
                getenv("KNOCK_RUNTIME_DIR"));
        (void)sendto(fd, "w", 1, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
}

/* CPU time used so far by every thread of process pid (not its children), in
 * microseconds, from /proc/PID/task/TID/schedstat (nanoseconds on CPU). */
static uint64_t proc_cpu_us(pid_t pid)
{
        char path[64];
        uint64_t ns = 0;
        struct dirent *de;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
        d = opendir(path);
        if (!d)
                bench_die(path);
        while ((de = readdir(d))) {
                unsigned long long v;
                char p[512];
                FILE *f;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "%s/%s/schedstat", path, de->d_name);
                f = fopen(p, "re");
                if (!f)
                        continue; /* the thread ended meanwhile */
                if (fscanf(f, "%llu", &v) == 1)
                        ns += v;
                fclose(f);
        }
        closedir(d);
        return ns / 1000;
}

/* Busy and total jiffies of every CPU so far, from /proc/stat. */
static void cpu_jiffies(uint64_t *busy, uint64_t *total)
{
        unsigned long long v[8] = {};
        FILE *f = fopen("/proc/stat", "re");

        if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                          &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
                bench_die("/proc/stat");
        fclose(f);
        *total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
        *busy = *total - v[3] - v[4]; /* idle, iowait */
}

static double busy_since(uint64_t b0, uint64_t t0)
{
        uint64_t b, t;

        cpu_jiffies(&b, &t);
        return t > t0 ? (double)(b - b0) / (double)(t - t0) : 0;
}

/* Drains n pre-inserted events with the real worker; returns events/s, the
 * worker's own CPU time per event (all its threads, not the handlers) in
 * *cpu_us, and how busy the machine's CPUs were meanwhile (0..1) in *busy. */
static double drain(size_t n, double *cpu_us, double *busy)
{
        uint64_t b0, t0;
        knock_store *s = bench_open_db();
        int64_t first, last;
        pid_t pid;

        insert_events(s, n);
        cpu_jiffies(&b0, &t0);
        pid = start_worker();
        for (int i = 0; i < 120 * 50; i++) {
                bench_sleep_ms(20);
                /* Three index seeks, not a count of a growing table: the poll
                 * must not take the CPU it is measuring. */
                if (bench_query_i64(s, "SELECT NOT EXISTS (SELECT 1 FROM events WHERE status IN "
                                       "('received', 'processing', 'failed'))") == 1)
                        break;
        }
        *cpu_us = (double)proc_cpu_us(pid) / (double)n;
        *busy = busy_since(b0, t0);
        stop_worker(pid);
        if (bench_query_i64(s, "SELECT count(*) FROM events WHERE status = 'handled'") != (int64_t)n) {
                fprintf(stderr, "worker-bench: not every event was handled\n");
                exit(1);
        }
        first = bench_query_i64(s, "SELECT MIN(started_at) FROM attempts");
        last = bench_query_i64(s, "SELECT MAX(ended_at) FROM attempts");
        store_close(s);
        return (double)n / ((double)MAX(last - first, 1) / 1000.0);
}

static uint64_t self_cpu_us(void)
{
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                bench_die("getrusage");
        return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
               (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The baseline: c spawns of /bin/true in flight, n in all; spawns/s, and the
 * loop's own CPU time per spawn (not the children's) in *cpu_us. */
static double bare_spawn(size_t n, size_t c, double *cpu_us, double *busy)
{
        char *argv[] = {(char *)"/bin/true", NULL};
        size_t started = 0, done = 0;
        uint64_t t0 = mono_us(), c0 = self_cpu_us(), jb, jt;

        cpu_jiffies(&jb, &jt);
        while (done < n) {
                while (started < n && started - done < c) {
                        pid_t pid;

                        if ((errno = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ)) != 0)
                                bench_die("posix_spawn");
                        started++;
                }
                if (waitpid(-1, NULL, 0) > 0)
                        done++;
        }
        *cpu_us = (double)(self_cpu_us() - c0) / (double)n;
        *busy = busy_since(jb, jt);
        return (double)n / ((double)(mono_us() - t0) / 1e6);
}

#define ROUNDS_MAX 15

/* The median of v, left as it is. */
static double median(const double *v, size_t n)
{
        double s[ROUNDS_MAX];

        memcpy(s, v, n * sizeof(*v));
        return bench_median(s, n);
}

static double minimum(const double *v, size_t n)
{
        double m = v[0];

        for (size_t i = 1; i < n; i++)
                m = MIN(m, v[i]);
        return m;
}

static double maximum(const double *v, size_t n)
{
        double m = v[0];

        for (size_t i = 1; i < n; i++)
                m = MAX(m, v[i]);
        return m;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return x < y ? -1 : x > y;
}

static void latency(size_t m)
{
        _cleanup_free_ int64_t *lat = calloc(m, sizeof(int64_t));
        knock_store *s;
        pid_t pid;

        if (!lat)
                bench_die("calloc");
        endpoint("handler = exec:/bin/true\nconcurrency = 4\n");
        s = bench_open_db();
        pid = start_worker();
        bench_sleep_ms(300);
        for (size_t i = 0; i < m; i++) {
                int64_t started = -1;

                insert_events(s, 1); /* BEGIN IMMEDIATE … COMMIT (FULL), like the ingress */
                wake();
                for (int k = 0; k < 2000 && started < 0; k++) {
                        started = bench_query_i64(s, "SELECT a.started_at - e.received_at FROM "
                                               "attempts a JOIN events e ON e.id = a.event_id "
                                               "ORDER BY a.started_at DESC LIMIT 1");
                        if (bench_query_i64(s, "SELECT count(*) FROM attempts") != (int64_t)(i + 1))
                                started = -1;
                        if (started < 0)
                                usleep(200);
                }
                lat[i] = started;
                bench_sleep_ms(2);
        }
        stop_worker(pid);
        store_close(s);
        qsort(lat, m, sizeof(int64_t), cmp_i64);
        printf("{\"bench\":\"worker-latency\",\"what\":\"receipt-to-handler-start\",\"events\":%zu,"
               "\"p50_ms\":%lld,\"p99_ms\":%lld,\"max_ms\":%lld}\n",
                m, (long long)lat[m / 2], (long long)lat[m * 99 / 100], (long long)lat[m - 1]);
}

int main(int argc, char *argv[])
{
        static char def[4096];
        size_t n_exec = 5000, n_http = 50000, conc = 8, hconc = 64;
        double rw[ROUNDS_MAX], rb[ROUNDS_MAX], rr[ROUNDS_MAX], rwcpu[ROUNDS_MAX],
                rbcpu[ROUNDS_MAX], rwbusy[ROUNDS_MAX], rbbusy[ROUNDS_MAX];
        size_t rounds = 3;
        char section[512];
        int port;
        pid_t sink;

        arg_worker = argc > 1 ? argv[1]
                              : bench_sibling("../daemons/worker/knock-worker", def, sizeof(def));
        if (argc > 2)
                n_exec = strtoul(argv[2], NULL, 10);
        if (argc > 3)
                n_http = strtoul(argv[3], NULL, 10);
        if (argc > 4)
                hconc = strtoul(argv[4], NULL, 10);
        if (argc > 5)
                rounds = strtoul(argv[5], NULL, 10);
        if (rounds < 1 || rounds > ROUNDS_MAX)
                bench_die("ROUNDS must be 1..15");
        signal(SIGPIPE, SIG_IGN);

        /* 1. exec vs a bare posix_spawn loop, interleaved, same concurrency, ROUNDS
         *    times: this machine's spawn rate drifts by a third within minutes, so
         *    each round's ratio is taken from a worker drain and a bare loop run
         *    back to back, and the median round is reported. */
        snprintf(section, sizeof(section), "handler = exec:/bin/true\nconcurrency = %zu\n", conc);
        for (size_t i = 0; i < rounds; i++) {
                endpoint(section);
                rw[i] = drain(n_exec, &rwcpu[i], &rwbusy[i]);
                rb[i] = bare_spawn(n_exec, conc, &rbcpu[i], &rbbusy[i]);
                rr[i] = rw[i] / rb[i];
                fprintf(stderr, "worker-bench: exec round %zu: %.0f/s vs bare %.0f/s (%.2f)\n",
                        i + 1, rw[i], rb[i], rr[i]);
        }
        printf("{\"bench\":\"worker-drain\",\"handler\":\"exec:/bin/true\",\"concurrency\":%zu,"
               "\"events\":%zu,\"rounds\":%zu,\"events_per_s\":%.0f,\"cpu_us_per_event\":%.0f,"
               "\"cpus_busy\":%.2f,\"baseline\":\"bare-posix_spawn\",\"baseline_per_s\":%.0f,"
               "\"baseline_cpu_us_per_event\":%.0f,\"baseline_cpus_busy\":%.2f,"
               "\"ratio\":%.2f,\"ratio_min\":%.2f,\"ratio_max\":%.2f}\n",
                conc, n_exec, rounds, median(rw, rounds), median(rwcpu, rounds),
                median(rwbusy, rounds), median(rb, rounds), median(rbcpu, rounds),
                median(rbbusy, rounds), median(rr, rounds), minimum(rr, rounds),
                maximum(rr, rounds));
        fflush(stdout);

        /* 2. http forward to a keep-alive sink, ROUNDS times beside the bare client */
        sink = bench_start_sink(&port);
        snprintf(section, sizeof(section),
                "handler = http://127.0.0.1:%d/sink\nconcurrency = %zu\n", port, hconc);
        for (size_t i = 0; i < rounds; i++) {
                uint64_t c0;

                endpoint(section);
                rw[i] = drain(n_http, &rwcpu[i], &rwbusy[i]);
                c0 = self_cpu_us();
                rb[i] = bench_bare_client(n_http, port, hconc, event_body, sizeof(event_body) - 1);
                rbcpu[i] = (double)(self_cpu_us() - c0) / (double)n_http;
                rr[i] = rw[i] / rb[i];
                fprintf(stderr, "worker-bench: http round %zu: %.0f/s vs bare %.0f/s (%.2f)\n",
                        i + 1, rw[i], rb[i], rr[i]);
        }
        kill(sink, SIGTERM);
        (void)waitpid(sink, NULL, 0);
        printf("{\"bench\":\"worker-drain\",\"handler\":\"http-forward\",\"concurrency\":%zu,"
               "\"events\":%zu,\"rounds\":%zu,\"events_per_s\":%.0f,\"events_per_s_min\":%.0f,"
               "\"events_per_s_max\":%.0f,\"cpu_us_per_event\":%.0f,\"target_per_s\":15000,"
               "\"baseline\":\"bare-evhttp-client\",\"baseline_per_s\":%.0f,"
               "\"baseline_cpu_us_per_event\":%.0f,\"ratio\":%.2f}\n",
                hconc, n_http, rounds, median(rw, rounds), minimum(rw, rounds), maximum(rw, rounds),
                median(rwcpu, rounds), median(rb, rounds), median(rbcpu, rounds),
                median(rr, rounds));
        fflush(stdout);

        /* 3. pickup latency */
        latency(300);
        return 0;
}
