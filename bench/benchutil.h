/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * benchutil — what the daemon benchmarks (worker-bench, deliver-bench)
 * share: a fresh endpoint "bench" in a temporary directory, its database,
 * a keep-alive HTTP sink answering 204 in a child process, and the small
 * helpers around them. Every failure ends the benchmark with
 * "PROGRAM: what: strerror(errno)": a benchmark that cannot set up has no
 * figure to print.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"
#include "util.h"

_noreturn_ void bench_die(const char *what);
void bench_write_text(const char *path, const char *text);
void bench_sleep_ms(unsigned ms);

/* A fresh endpoint "bench" in /tmp/knock-TAG-XXXXXX: KNOCK_CONFIG_DIR,
 * KNOCK_STATE_DIR and KNOCK_RUNTIME_DIR point into it, KNOCK_LOG_LEVEL is
 * $WB_LOG or "warning", NOTIFY_SOCKET is unset, and conf is written to
 * endpoints/bench.conf. */
void bench_endpoint(const char *tag, const char *conf);
/* The endpoint's database, created when missing. */
knock_store *bench_open_db(void);
/* The first column of the first row of sql, or -1. */
int64_t bench_query_i64(knock_store *s, const char *sql);

/* A keep-alive evhttp sink on 127.0.0.1 answering 204 in a child process;
 * returns its pid, the port in *port. */
pid_t bench_start_sink(int *port);

/* The bare baseline for an HTTP figure: an evhttp client keeping conc keep-alive
 * connections busy, n POSTs of body in all (each must be answered 204); req/s. */
double bench_bare_client(size_t n, int port, size_t conc, const char *body, size_t body_len);

/* qsort comparator for doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);
/* The median of v[0..n) (n >= 1; v is sorted in place). */
double bench_median(double *v, size_t n);

/* REL resolved against the directory of this executable (/proc/self/exe). */
const char *bench_sibling(const char *rel, char *buf, size_t len);
