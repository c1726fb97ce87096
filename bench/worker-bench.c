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
 * With WB_PG set (the environment: a libpq conninfo, e.g. the line
 * tests/pgcluster start prints), each round of the http figure also drains
 * the same N events from a PostgreSQL endpoint (`store = postgresql:WB_PG`,
 * the schema knock_bench dropped and made again each round, the events
 * inserted through the store API as on SQLite) with one knock-worker, then
 * with two draining it at once (each its own runtime and state directory,
 * as on two hosts; each with the same concurrency), and two on the SQLite
 * endpoint (its own runtime directory, the same database: one host's
 * deployment runs one worker per endpoint, so this measures what sharing
 * SQLite's write lock costs, not a supported set-up). Their lines follow the
 * http figure's, each beside the SQLite drain with one worker and the bare
 * client of the same rounds, with the PostgreSQL server's CPU time per event
 * (the postmaster and its children, from /proc: a local server only).
 * WB_FIGURES (default "exec http latency") picks the figures to run.
 *
 * Usage: [WB_PG=CONNINFO] [WB_FIGURES=...] worker-bench [KNOCK_WORKER] [N_EXEC] [N_HTTP]
 *        [HTTP_CONCURRENCY] [ROUNDS]
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
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

extern char **environ;

static const char *arg_worker;
static const char *arg_pg; /* WB_PG: a libpq conninfo, or NULL */

enum engine { SQLITE, PG };

/* A fresh endpoint "bench" with this [worker] section, its store on engine. */
static void endpoint(const char *worker_section, enum engine engine)
{
        char conf[4096];

        snprintf(conf, sizeof(conf),
                "[endpoint]\nprovider = none\nallow_unverified = yes\nlisten = 127.0.0.1:1\n"
                "%s%s%s[worker]\n%s",
                engine == PG ? "store = postgresql:" : "", engine == PG ? arg_pg : "",
                engine == PG ? "\n" : "", worker_section);
        bench_endpoint("wbench", conf);
}

/* The endpoint's store: its SQLite file, or on PostgreSQL its schema
 * knock_bench, dropped and made again when fresh (a CHECKPOINT after, so
 * that every round starts from the same WAL state). */
static knock_store *open_store(enum engine engine, bool fresh)
{
        _cleanup_free_ char *loc = NULL;
        knock_store *s;

        if (engine == SQLITE)
                return bench_open_db();
        loc = store_location_postgresql("knock_bench", arg_pg);
        if (!loc || store_open(loc, STORE_CREATE, &s) < 0)
                bench_die("store_open (WB_PG)");
        if (fresh) {
                if (store_exec(s, "DROP SCHEMA knock_bench CASCADE") < 0)
                        bench_die("DROP SCHEMA knock_bench");
                store_close(s);
                if (store_open(loc, STORE_CREATE, &s) < 0)
                        bench_die("store_open (WB_PG)");
                (void)store_exec(s, "CHECKPOINT"); /* a superuser's; else not needed */
        }
        return s;
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
                        "delivery_id, received_at, updated_at, next_attempt_at) VALUES (?, ?, "
                        "'invoice.paid', 'received', ?, ?, ?, ?)",
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
                stmt_bind_i64(e, 6, now); /* as the ingress does: the claims' order */
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

/* Another knock-worker for the same endpoint, as if on another host: its
 * own runtime directory (KNOCK_RUNTIME_DIR with "2" added: its wake socket)
 * and, on PostgreSQL, its own state directory (SQLite's database is in the
 * shared one). */
static pid_t start_second_worker(enum engine engine)
{
        _cleanup_free_ char *run = strdup(getenv("KNOCK_RUNTIME_DIR")),
                            *state = strdup(getenv("KNOCK_STATE_DIR"));
        char dir[1024];
        pid_t pid;

        if (!run || !state)
                bench_die("strdup");
        snprintf(dir, sizeof(dir), "%s2", run);
        (void)mkdir(dir, 0755);
        setenv("KNOCK_RUNTIME_DIR", dir, 1);
        if (engine == PG) {
                snprintf(dir, sizeof(dir), "%s2", state);
                (void)mkdir(dir, 0755);
                setenv("KNOCK_STATE_DIR", dir, 1);
        }
        pid = start_worker();
        setenv("KNOCK_RUNTIME_DIR", run, 1);
        setenv("KNOCK_STATE_DIR", state, 1);
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

/* Fields from /proc/PID/stat: *ppid, and the sum of the n CPU tick fields
 * from utime on (2: utime, stime; 4: with cutime, cstime). false: gone. */
static bool proc_stat(pid_t pid, pid_t *ppid, int n, uint64_t *ticks)
{
        char path[64], buf[1024], *p;
        unsigned long long t[4] = {};
        int pp = 0;
        FILE *f;
        bool ok;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        ok = fgets(buf, sizeof(buf), f) != NULL;
        fclose(f);
        p = ok ? strrchr(buf, ')') : NULL;
        if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                          &pp, &t[0], &t[1], &t[2], &t[3]) != 5)
                return false;
        if (ppid)
                *ppid = pp;
        *ticks = 0;
        for (int i = 0; i < n; i++)
                *ticks += t[i];
        return true;
}

/* The PostgreSQL server's postmaster, when it runs on this machine: the
 * parent of s's backend; 0 when not found. */
static pid_t pg_postmaster(knock_store *s)
{
        int64_t backend = bench_query_i64(s, "SELECT pg_backend_pid()");
        uint64_t ticks;
        pid_t pm;

        return backend > 0 && proc_stat((pid_t)backend, &pm, 2, &ticks) ? pm : 0;
}

/* CPU time the server has used so far, in µs: the postmaster, its live
 * children and (its cutime and cstime) those it reaped. */
static uint64_t pg_server_cpu_us(pid_t pm)
{
        uint64_t sum = 0, ticks;
        struct dirent *de;
        DIR *d;

        if (pm <= 0 || !proc_stat(pm, NULL, 4, &sum) || !(d = opendir("/proc")))
                return 0;
        while ((de = readdir(d))) {
                pid_t pid = (pid_t)atoi(de->d_name), ppid;

                if (pid > 0 && proc_stat(pid, &ppid, 2, &ticks) && ppid == pm)
                        sum += ticks;
        }
        closedir(d);
        return sum * (1000000 / (uint64_t)sysconf(_SC_CLK_TCK));
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

/* What one drain measured. */
typedef struct drained {
        double per_s;      /* events/s */
        double cpu_us;     /* the workers' own CPU time per event (all threads, not handlers) */
        double busy;       /* how busy the machine's CPUs were meanwhile (0..1) */
        double server_us;  /* the PostgreSQL server's CPU time per event; 0 on SQLite */
        /* With pg_stat_statements on the server (else 0): the statements the
         * workers ran per event, the server's time executing them per event,
         * and the ones that took most of it as JSON. */
        double statements, exec_us;
        char top[2048];
} drained;

/* The statements' filter: what the workers ran, not this benchmark's poll. */
#define STATS_FROM                                                                                \
        " FROM public.pg_stat_statements WHERE query NOT LIKE 'SELECT NOT EXISTS%'"                \
        " AND query NOT LIKE '%pg_stat_statements%'"

/* Whether the server has pg_stat_statements; if so its counters start over. */
static bool pg_stats_reset(knock_store *s)
{
        if (bench_query_i64(s, "SELECT count(*) FROM pg_extension "
                               "WHERE extname = 'pg_stat_statements'") != 1)
                return false;
        return store_exec(s, "SELECT public.pg_stat_statements_reset()") >= 0;
}

/* pg_stat_statements' figures since pg_stats_reset(), per event, into r. */
static void pg_stats_read(knock_store *s, size_t n, drained *r)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        size_t len = 0;

        r->statements = (double)bench_query_i64(s, "SELECT sum(calls)::bigint" STATS_FROM) / (double)n;
        r->exec_us = (double)bench_query_i64(s, "SELECT (sum(total_exec_time) * 1000)::bigint"
                STATS_FROM) / (double)n;
        if (store_prepare(s, "SELECT calls, (total_exec_time * 1000)::bigint,"
                        " left(regexp_replace(query, '\\s+', ' ', 'g'), 60)"
                        STATS_FROM " ORDER BY total_exec_time DESC LIMIT 6", &st) < 0)
                return;
        while (stmt_step(st) > 0 && len < sizeof(r->top) - 200) {
                char sql[128];
                size_t k = 0;

                /* JSON-safe: a quote or backslash in the SQL becomes a space. */
                for (const char *q = stmt_col_text(st, 2) ?: ""; *q && k < sizeof(sql) - 1; q++)
                        sql[k++] = *q == '"' || *q == '\\' ? ' ' : *q;
                sql[k] = 0;
                len += (size_t)snprintf(r->top + len, sizeof(r->top) - len,
                        "%s{\"calls_per_event\":%.3f,\"exec_us_per_event\":%.1f,\"sql\":\"%s\"}",
                        len ? "," : "", (double)stmt_col_i64(st, 0) / (double)n,
                        (double)stmt_col_i64(st, 1) / (double)n, sql);
        }
}

/* Drains n pre-inserted events from the endpoint's store on engine with
 * workers (1 or 2) real knock-workers. */
static drained drain(size_t n, enum engine engine, int workers)
{
        uint64_t b0, t0, srv0 = 0;
        knock_store *s = open_store(engine, true);
        int64_t first, last;
        pid_t pid[2], pm = engine == PG ? pg_postmaster(s) : 0;
        drained r = {};
        bool stats;

        insert_events(s, n);
        stats = engine == PG && pg_stats_reset(s);
        cpu_jiffies(&b0, &t0);
        srv0 = pg_server_cpu_us(pm);
        pid[0] = start_worker();
        if (workers > 1)
                pid[1] = start_second_worker(engine);
        for (int i = 0; i < 120 * 50; i++) {
                bench_sleep_ms(20);
                /* Three index seeks, not a count of a growing table: the poll
                 * must not take the CPU it is measuring. */
                if (bench_query_i64(s, "SELECT NOT EXISTS (SELECT 1 FROM events WHERE status IN "
                                       "('received', 'processing', 'failed'))") == 1)
                        break;
        }
        if (stats)
                pg_stats_read(s, n, &r);
        for (int i = 0; i < workers; i++)
                r.cpu_us += (double)proc_cpu_us(pid[i]) / (double)n;
        r.busy = busy_since(b0, t0);
        if (pm > 0)
                r.server_us = (double)(pg_server_cpu_us(pm) - srv0) / (double)n;
        for (int i = 0; i < workers; i++)
                stop_worker(pid[i]);
        if (bench_query_i64(s, "SELECT count(*) FROM events WHERE status = 'handled'") != (int64_t)n) {
                fprintf(stderr, "worker-bench: not every event was handled\n");
                exit(1);
        }
        first = bench_query_i64(s, "SELECT MIN(started_at) FROM attempts");
        last = bench_query_i64(s, "SELECT MAX(ended_at) FROM attempts");
        store_close(s);
        r.per_s = (double)n / ((double)MAX(last - first, 1) / 1000.0);
        return r;
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
        endpoint("handler = exec:/bin/true\nconcurrency = 4\n", SQLITE);
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

/* The http figure's drains: SQLite with one worker (the figure), and with
 * WB_PG set these beside it. */
typedef struct variant {
        enum engine engine;
        int workers;
        double per_s[ROUNDS_MAX], cpu[ROUNDS_MAX], server[ROUNDS_MAX], to_base[ROUNDS_MAX],
                to_bare[ROUNDS_MAX], to_one[ROUNDS_MAX];
        drained last; /* its last round (pg_stat_statements' figures) */
} variant;

static bool want(const char *figure)
{
        const char *list = getenv("WB_FIGURES") ?: "exec http latency";
        size_t n = strlen(figure);

        for (const char *p = strstr(list, figure); p; p = strstr(p + 1, figure))
                if ((p == list || p[-1] == ' ' || p[-1] == ',') && (!p[n] || p[n] == ' ' || p[n] == ','))
                        return true;
        return false;
}

static void exec_figure(size_t n_exec, size_t conc, size_t rounds)
{
        double rw[ROUNDS_MAX], rb[ROUNDS_MAX], rr[ROUNDS_MAX], rwcpu[ROUNDS_MAX],
                rbcpu[ROUNDS_MAX], rwbusy[ROUNDS_MAX], rbbusy[ROUNDS_MAX];
        char section[512];

        /* exec vs a bare posix_spawn loop, interleaved, same concurrency, ROUNDS
         * times: this machine's spawn rate drifts by a third within minutes, so
         * each round's ratio is taken from a worker drain and a bare loop run
         * back to back, and the median round is reported. */
        snprintf(section, sizeof(section), "handler = exec:/bin/true\nconcurrency = %zu\n", conc);
        for (size_t i = 0; i < rounds; i++) {
                drained d;

                endpoint(section, SQLITE);
                d = drain(n_exec, SQLITE, 1);
                rw[i] = d.per_s;
                rwcpu[i] = d.cpu_us;
                rwbusy[i] = d.busy;
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
}

static void http_figure(size_t n_http, size_t hconc, size_t rounds)
{
        variant v[4] = {{SQLITE, 1}, {SQLITE, 2}, {PG, 1}, {PG, 2}};
        size_t nv = arg_pg ? 4 : 1;
        double rb[ROUNDS_MAX], rbcpu[ROUNDS_MAX];
        char section[512];
        int port;
        pid_t sink;

        /* http forward to a keep-alive sink, ROUNDS times beside the bare client */
        sink = bench_start_sink(&port);
        snprintf(section, sizeof(section),
                "handler = http://127.0.0.1:%d/sink\nconcurrency = %zu\n", port, hconc);
        for (size_t i = 0; i < rounds; i++) {
                uint64_t c0;

                for (size_t k = 0; k < nv; k++) {
                        drained d;

                        endpoint(section, v[k].engine);
                        d = drain(n_http, v[k].engine, v[k].workers);
                        v[k].per_s[i] = d.per_s;
                        v[k].cpu[i] = d.cpu_us;
                        v[k].server[i] = d.server_us;
                        v[k].last = d;
                        if (k == 0) {
                                c0 = self_cpu_us();
                                rb[i] = bench_bare_client(n_http, port, hconc, event_body,
                                        sizeof(event_body) - 1);
                                rbcpu[i] = (double)(self_cpu_us() - c0) / (double)n_http;
                        }
                        v[k].to_base[i] = d.per_s / v[0].per_s[i];
                        v[k].to_bare[i] = d.per_s / rb[i];
                        v[k].to_one[i] = d.per_s / v[k & ~(size_t)1].per_s[i]; /* 1 → 0, 3 → 2 */
                        fprintf(stderr,
                                "worker-bench: http round %zu, %s, %d worker%s: %.0f/s vs bare "
                                "%.0f/s (%.2f)\n",
                                i + 1, v[k].engine == PG ? "postgresql" : "sqlite",
                                v[k].workers, v[k].workers > 1 ? "s" : "", d.per_s, rb[i],
                                v[k].to_bare[i]);
                }
        }
        kill(sink, SIGTERM);
        (void)waitpid(sink, NULL, 0);
        printf("{\"bench\":\"worker-drain\",\"handler\":\"http-forward\",\"concurrency\":%zu,"
               "\"events\":%zu,\"rounds\":%zu,\"events_per_s\":%.0f,\"events_per_s_min\":%.0f,"
               "\"events_per_s_max\":%.0f,\"cpu_us_per_event\":%.0f,\"target_per_s\":15000,"
               "\"baseline\":\"bare-evhttp-client\",\"baseline_per_s\":%.0f,"
               "\"baseline_cpu_us_per_event\":%.0f,\"ratio\":%.2f}\n",
                hconc, n_http, rounds, median(v[0].per_s, rounds), minimum(v[0].per_s, rounds),
                maximum(v[0].per_s, rounds), median(v[0].cpu, rounds), median(rb, rounds),
                median(rbcpu, rounds), median(v[0].to_bare, rounds));
        for (size_t k = 1; k < nv; k++) {
                printf("{\"bench\":\"worker-drain\",\"handler\":\"http-forward\",\"store\":\"%s\","
                       "\"workers\":%d,\"concurrency\":%zu,\"events\":%zu,\"rounds\":%zu,"
                       "\"events_per_s\":%.0f,\"events_per_s_min\":%.0f,\"events_per_s_max\":%.0f,"
                       "\"cpu_us_per_event\":%.0f,",
                        v[k].engine == PG ? "postgresql" : "sqlite", v[k].workers, hconc, n_http,
                        rounds, median(v[k].per_s, rounds), minimum(v[k].per_s, rounds),
                        maximum(v[k].per_s, rounds), median(v[k].cpu, rounds));
                if (v[k].engine == PG)
                        printf("\"server_cpu_us_per_event\":%.0f,", median(v[k].server, rounds));
                if (v[k].last.statements > 0)
                        printf("\"last_round\":{\"statements_per_event\":%.2f,"
                               "\"server_exec_us_per_event\":%.1f,\"top_statements\":[%s]},",
                                v[k].last.statements, v[k].last.exec_us, v[k].last.top);
                if (v[k].workers > 1)
                        printf("\"ratio_to_one_worker\":%.2f,", median(v[k].to_one, rounds));
                printf("\"baseline\":\"sqlite, one worker\",\"baseline_per_s\":%.0f,"
                       "\"ratio\":%.2f,\"bare_client_per_s\":%.0f,\"ratio_to_bare\":%.2f}\n",
                        median(v[0].per_s, rounds), median(v[k].to_base, rounds),
                        median(rb, rounds), median(v[k].to_bare, rounds));
        }
        fflush(stdout);
}

int main(int argc, char *argv[])
{
        static char def[4096];
        size_t n_exec = 5000, n_http = 50000, conc = 8, hconc = 64;
        size_t rounds = 3;

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
        arg_pg = getenv("WB_PG");
        if (arg_pg && !*arg_pg)
                arg_pg = NULL;
        signal(SIGPIPE, SIG_IGN);

        if (want("exec"))
                exec_figure(n_exec, conc, rounds);
        if (want("http"))
                http_figure(n_http, hconc, rounds);
        if (want("latency"))
                latency(300);
        return 0;
}
