/* SPDX-License-Identifier: MIT */
/*
 * ingest-load — a load generator for knock-ingress (and any HTTP server).
 *
 * Opens CONNS keep-alive connections to 127.0.0.1:PORT with libevent's HTTP
 * client (with several ports, connection i goes to the (i mod n)th: one
 * load spread over several servers, counted and timed as one); each
 * connection sends one request at a time: a unique body
 * (~1.5 KB JSON) signed the GitHub way (X-Hub-Signature-256 over the body
 * with SECRET, a unique X-GitHub-Delivery). It warms up for one second,
 * then counts 2xx answers for DURATION seconds and records every latency.
 * Prints one JSON object: {"conns","rps","p50_ms","p99_ms","ok","errors"};
 * with -P PID also the server's CPU time per answered request over the same
 * window, by thread name and in all ("cpu_us":{"writer":…},"cpu_us_total");
 * with several PIDs, each thread name's time summed over the processes.
 *
 *   ingest-load -p PORT[,PORT…] [-c CONNS] [-d SECONDS] [-s SECRET] [-b BODY_BYTES] [-u PATH]
 *               [-P PID[,PID…]]
 */
#define _GNU_SOURCE
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <dirent.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "util.h"

typedef struct conn {
        struct evhttp_connection *evcon;
        uint64_t sent_us;
        unsigned id;
} conn;

static struct event_base *base;
static const char *secret = "bench-secret";
#define MAX_SERVERS 8

static int ports[MAX_SERVERS], n_ports;
static size_t body_bytes = 1500;
static const char *path = "/";
static char *pad;
static uint64_t seq;
static uint64_t start_us, measure_us, end_us;
static uint64_t n_ok, n_err;
static double *lat;
static size_t n_lat, cap_lat;

static void send_one(conn *c);

/* ---- the server's CPU, per thread name, from /proc ---------------------------- */

#define MAX_THREAD_NAMES 16

typedef struct cpu_sample {
        char name[MAX_THREAD_NAMES][32];
        unsigned long long ticks[MAX_THREAD_NAMES];
        int n;
} cpu_sample;

static int server_pids[MAX_SERVERS], n_server_pids;
static cpu_sample cpu_start, cpu_end;

/* Adds the CPU ticks of process pid's threads to smp, by thread name. */
static void cpu_add(cpu_sample *smp, int pid)
{
        char dir[64], file[400], buf[1024];
        DIR *d;
        struct dirent *e;

        snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
        d = opendir(dir);
        if (!d)
                return;
        while ((e = readdir(d))) {
                FILE *f;
                char *open_p, *close_p;
                unsigned long long ut = 0, st = 0;
                int i;

                if (e->d_name[0] == '.')
                        continue;
                snprintf(file, sizeof(file), "%s/%.255s/stat", dir, e->d_name);
                f = fopen(file, "re");
                if (!f)
                        continue;
                if (!fgets(buf, sizeof(buf), f)) {
                        fclose(f);
                        continue;
                }
                fclose(f);
                open_p = strchr(buf, '(');
                close_p = strrchr(buf, ')');
                if (!open_p || !close_p ||
                    sscanf(close_p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                           &st) != 2)
                        continue;
                *close_p = 0;
                for (i = 0; i < smp->n; i++)
                        if (streq(smp->name[i], open_p + 1))
                                break;
                if (i == smp->n) {
                        if (smp->n == MAX_THREAD_NAMES)
                                continue;
                        snprintf(smp->name[i], sizeof(smp->name[i]), "%s", open_p + 1);
                        smp->n++;
                }
                smp->ticks[i] += ut + st;
        }
        closedir(d);
}

static void cpu_take(cpu_sample *smp)
{
        memset(smp, 0, sizeof(*smp));
        for (int i = 0; i < n_server_pids; i++)
                cpu_add(smp, server_pids[i]);
}

/* A comma-separated list of integers in 1..max into v (at most MAX_SERVERS);
 * their number, or -1. */
static int int_list(const char *text, long max, int *v)
{
        int n = 0;

        for (const char *p = text; *p;) {
                char *end;
                long x = strtol(p, &end, 10);

                if (end == p || x <= 0 || x > max || n == MAX_SERVERS ||
                    (*end && *end != ','))
                        return -1;
                v[n++] = (int)x;
                p = *end ? end + 1 : end;
        }
        return n;
}

static void on_measure_start(evutil_socket_t fd, short what, void *userdata)
{
        cpu_take(&cpu_start);
}

static void print_cpu(void)
{
        double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK), total = 0;

        printf(",\"cpu_us\":{");
        for (int i = 0; i < cpu_end.n; i++) {
                unsigned long long before = 0;
                double us;

                for (int j = 0; j < cpu_start.n; j++)
                        if (streq(cpu_start.name[j], cpu_end.name[i]))
                                before = cpu_start.ticks[j];
                us = n_ok ? (double)(cpu_end.ticks[i] - before) * tick_us / (double)n_ok : 0;
                total += us;
                printf("%s\"%s\":%.1f", i ? "," : "", cpu_end.name[i], us);
        }
        printf("},\"cpu_us_total\":%.1f", total);
}

static void record(uint64_t now, uint64_t sent, bool ok)
{
        if (now < measure_us || now > end_us)
                return;
        if (!ok) {
                n_err++;
                return;
        }
        n_ok++;
        if (n_lat == cap_lat) {
                cap_lat = cap_lat ? cap_lat * 2 : 1 << 16;
                lat = realloc(lat, cap_lat * sizeof(*lat));
                if (!lat)
                        abort();
        }
        lat[n_lat++] = (double)(now - sent) / 1000.0;
}

static void on_done(struct evhttp_request *req, void *userdata)
{
        conn *c = userdata;
        uint64_t now = mono_us();
        int code = req ? evhttp_request_get_response_code(req) : 0;

        record(now, c->sent_us, code >= 200 && code < 300);
        if (now >= end_us) {
                if (n_server_pids && !cpu_end.n)
                        cpu_take(&cpu_end);
                event_base_loopexit(base, NULL);
                return;
        }
        send_one(c);
}

static void send_one(conn *c)
{
        struct evhttp_request *req = evhttp_request_new(on_done, c);
        struct evkeyvalq *h;
        struct evbuffer *out;
        unsigned char mac[32];
        unsigned maclen = 0;
        char sig[80] = "sha256=", delivery[64], body_head[128];
        _cleanup_free_ char *body = NULL;
        int n;

        /* Unique per request: the ingress dedupes on X-GitHub-Delivery. */
        snprintf(delivery, sizeof(delivery), "bench-%u-%llu-%llu", c->id,
                 (unsigned long long)start_us, (unsigned long long)++seq);
        n = snprintf(body_head, sizeof(body_head), "{\"seq\":%llu,\"pad\":\"",
                     (unsigned long long)seq);
        body = malloc((size_t)n + body_bytes + 3);
        if (!body)
                abort();
        memcpy(body, body_head, (size_t)n);
        memcpy(body + n, pad, body_bytes);
        memcpy(body + n + body_bytes, "\"}", 3);
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)body,
             strlen(body), mac, &maclen);
        hex_encode(mac, maclen, sig + 7);

        h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Host", "127.0.0.1");
        evhttp_add_header(h, "Content-Type", "application/json");
        evhttp_add_header(h, "X-GitHub-Event", "push");
        evhttp_add_header(h, "X-GitHub-Delivery", delivery);
        evhttp_add_header(h, "X-Hub-Signature-256", sig);
        out = evhttp_request_get_output_buffer(req);
        evbuffer_add(out, body, strlen(body));
        c->sent_us = mono_us();
        if (evhttp_make_request(c->evcon, req, EVHTTP_REQ_POST, path) < 0) {
                n_err++;
                event_base_loopexit(base, NULL);
        }
}

int main(int argc, char **argv)
{
        int conns = 64, duration = 5, c;
        conn *cs;

        while ((c = getopt(argc, argv, "p:c:d:s:b:u:P:")) >= 0) {
                switch (c) {
                case 'u':
                        path = optarg;
                        break;
                case 'P':
                        n_server_pids = int_list(optarg, INT32_MAX, server_pids);
                        if (n_server_pids < 0)
                                return 2;
                        break;
                case 'p':
                        n_ports = int_list(optarg, 65535, ports);
                        if (n_ports < 0)
                                return 2;
                        break;
                case 'c':
                        conns = atoi(optarg);
                        break;
                case 'd':
                        duration = atoi(optarg);
                        break;
                case 's':
                        secret = optarg;
                        break;
                case 'b':
                        body_bytes = (size_t)atol(optarg);
                        break;
                default:
                        fprintf(stderr, "usage: ingest-load -p PORT[,PORT…] [-c CONNS] [-d S] [-s SECRET] "
                                        "[-b BYTES] [-u PATH] [-P PID[,PID…]]\n");
                        return 2;
                }
        }
        if (n_ports <= 0 || conns <= 0 || duration <= 0)
                return 2;
        pad = malloc(body_bytes);
        if (!pad)
                return 1;
        memset(pad, 'x', body_bytes);
        base = event_base_new();
        cs = calloc((size_t)conns, sizeof(*cs));
        if (!base || !cs)
                return 1;
        start_us = mono_us();
        measure_us = start_us + 1000000;
        end_us = measure_us + (uint64_t)duration * 1000000;
        if (n_server_pids) {
                struct timeval tv = {1, 0};
                event_base_once(base, -1, EV_TIMEOUT, on_measure_start, NULL, &tv);
        }
        for (int i = 0; i < conns; i++) {
                cs[i].id = (unsigned)i;
                cs[i].evcon = evhttp_connection_base_new(base, NULL, "127.0.0.1",
                                                         (unsigned short)ports[i % n_ports]);
                evhttp_connection_set_timeout(cs[i].evcon, 30);
                send_one(&cs[i]);
        }
        event_base_dispatch(base);
        qsort(lat, n_lat, sizeof(*lat), bench_cmp_double);
        printf("{\"conns\":%d,\"rps\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"ok\":%llu,\"errors\":%llu",
               conns, (double)n_ok / duration, n_lat ? lat[n_lat / 2] : 0.0,
               n_lat ? lat[(size_t)((double)n_lat * 0.99)] : 0.0, (unsigned long long)n_ok,
               (unsigned long long)n_err);
        if (n_server_pids)
                print_cpu();
        printf("}\n");
        for (int i = 0; i < conns; i++)
                evhttp_connection_free(cs[i].evcon);
        event_base_free(base);
        free(cs);
        free(lat);
        free(pad);
        return 0;
}
