/* SPDX-License-Identifier: MIT */
/*
 * benchutil — shared set-up for the daemon benchmarks; see benchutil.h.
 * Benchmarks only: nothing here is linked into a daemon or a test.
 */
#include "benchutil.h"

#include <errno.h>
#include <ftw.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void bench_die(const char *what)
{
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, strerror(errno));
        exit(1);
}

void bench_write_text(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");

        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                bench_die(path);
}

int bench_cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n)
{
        qsort(v, n, sizeof(*v), bench_cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_sleep_ms(unsigned ms)
{
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

        nanosleep(&ts, NULL);
}

/* Every directory bench_endpoint made, removed at exit unless $WB_KEEP is set. */
static char *bench_dirs[64];
static size_t n_bench_dirs;

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)remove(path);
        return 0;
}

static void remove_dirs(void)
{
        for (size_t i = 0; i < n_bench_dirs; i++) {
                (void)nftw(bench_dirs[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
                free(bench_dirs[i]);
        }
        n_bench_dirs = 0;
}

void bench_endpoint(const char *tag, const char *conf)
{
        char tmpl[256], path[512];
        char *dir;

        snprintf(tmpl, sizeof(tmpl), "%s/knock-%s-XXXXXX", getenv("TMPDIR") ?: "/tmp", tag);
        dir = mkdtemp(tmpl);
        if (!dir)
                bench_die("mkdtemp");
        if (!getenv("WB_KEEP") && n_bench_dirs < ELEMENTSOF(bench_dirs)) {
                if (n_bench_dirs == 0)
                        atexit(remove_dirs);
                bench_dirs[n_bench_dirs] = strdup(dir);
                if (bench_dirs[n_bench_dirs])
                        n_bench_dirs++;
        }
        snprintf(path, sizeof(path), "%s/etc", dir);
        mkdir(path, 0755);
        setenv("KNOCK_CONFIG_DIR", path, 1);
        snprintf(path, sizeof(path), "%s/etc/endpoints", dir);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/state", dir);
        mkdir(path, 0755);
        setenv("KNOCK_STATE_DIR", path, 1);
        snprintf(path, sizeof(path), "%s/run", dir);
        mkdir(path, 0755);
        setenv("KNOCK_RUNTIME_DIR", path, 1);
        setenv("KNOCK_LOG_LEVEL", getenv("WB_LOG") ?: "warning", 1);
        unsetenv("NOTIFY_SOCKET");
        snprintf(path, sizeof(path), "%s/etc/endpoints/bench.conf", dir);
        bench_write_text(path, conf);
}

knock_store *bench_open_db(void)
{
        char path[512];
        knock_store *s;

        snprintf(path, sizeof(path), "%s/bench.db", getenv("KNOCK_STATE_DIR"));
        if (store_open(path, STORE_CREATE, &s) < 0)
                bench_die("store_open");
        return s;
}

int64_t bench_query_i64(knock_store *s, const char *sql)
{
        _cleanup_stmt_ db_stmt *st = NULL;

        if (store_prepare(s, sql, &st) < 0 || stmt_step(st) <= 0)
                return -1;
        return stmt_col_i64(st, 0);
}

static void sink_cb(struct evhttp_request *req, void *arg)
{
        evhttp_send_reply(req, 204, "No Content", NULL);
}

pid_t bench_start_sink(int *port)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        pid_t pid;

        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 512) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
                bench_die("sink socket");
        *port = ntohs(sa.sin_port);
        pid = fork();
        if (pid < 0)
                bench_die("fork");
        if (pid == 0) {
                struct event_base *base;
                struct evhttp *http;

                n_bench_dirs = 0; /* the parent's to remove, not ours */
                base = event_base_new();
                http = evhttp_new(base);

                evutil_make_socket_nonblocking(fd);
                evhttp_set_gencb(http, sink_cb, NULL);
                evhttp_accept_socket(http, fd);
                event_base_dispatch(base);
                _exit(0);
        }
        close(fd);
        return pid;
}

const char *bench_sibling(const char *rel, char *buf, size_t len)
{
        char self[2048];
        ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);

        if (k < 0)
                bench_die("readlink");
        self[k] = 0;
        *strrchr(self, '/') = 0;
        snprintf(buf, len, "%s/%s", self, rel);
        return buf;
}

/* ---- the bare client baseline ------------------------------------------------------- */

typedef struct bare {
        struct event_base *base;
        size_t started, done, n;
        int port;
        const char *body;
        size_t body_len;
} bare;

typedef struct bare_slot {
        bare *b;
        struct evhttp_connection *evcon;
} bare_slot;

static void bare_send(bare_slot *sl);

static void bare_done(struct evhttp_request *req, void *arg)
{
        bare_slot *sl = arg;

        if (!req || evhttp_request_get_response_code(req) != 204) {
                fprintf(stderr, "bench: bare request failed\n");
                exit(1);
        }
        if (++sl->b->done == sl->b->n)
                event_base_loopexit(sl->b->base, NULL);
        else
                bare_send(sl);
}

static void bare_send(bare_slot *sl)
{
        struct evhttp_request *req;

        if (sl->b->started >= sl->b->n)
                return;
        sl->b->started++;
        req = evhttp_request_new(bare_done, sl);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), sl->b->body, sl->b->body_len);
        if (evhttp_make_request(sl->evcon, req, EVHTTP_REQ_POST, "/hooks") < 0)
                bench_die("evhttp_make_request");
}

double bench_bare_client(size_t n, int port, size_t conc, const char *body, size_t body_len)
{
        bare b = {.base = event_base_new(), .n = n, .port = port, .body = body,
                .body_len = body_len};
        bare_slot *slots = calloc(conc, sizeof(*slots));
        uint64_t t0;

        if (!b.base || !slots)
                bench_die("bare");
        for (size_t i = 0; i < conc; i++) {
                slots[i].b = &b;
                slots[i].evcon = evhttp_connection_base_new(b.base, NULL, "127.0.0.1",
                                                            (unsigned short)port);
        }
        t0 = mono_us();
        for (size_t i = 0; i < conc; i++)
                bare_send(&slots[i]);
        event_base_dispatch(b.base);
        for (size_t i = 0; i < conc; i++)
                evhttp_connection_free(slots[i].evcon);
        free(slots);
        event_base_free(b.base);
        return (double)n / ((double)(mono_us() - t0) / 1e6);
}
