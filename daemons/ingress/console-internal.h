/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The console's pieces: console.c (the loop's side: access, routes, jobs,
 * the live streams), console-pages.c (the pages, rendered on the console's
 * thread from its read-only connection) and console-html.c (escaping and
 * the parts every page shares). See console.h for the design.
 */

#include <event2/buffer.h>
#include <event2/http.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "admin.h"
#include "console-query.h"
#include "ingress.h"
#include "probe.h"
#include "store.h"

/* Every query of one page must finish within this. */
#define CONSOLE_QUERY_MS 2000

typedef struct console_job console_job;
typedef void (*page_fn)(console_job *j, knock_store *st, struct evbuffer *b);

typedef struct console_route {
        const char *path;
        const char *title;
        const char *nav; /* the navigation's label, NULL when not in it */
        bool post;       /* takes POST besides GET */
        page_fn render;  /* on the console's thread; NULL: answered on the loop */
} console_route;

/* The query parameters a page reads (decoded, NUL-free; NULL when absent
 * or empty). */
typedef struct console_params {
        char *id, *status, *type, *pid, *since, *until, *before, *state, *limit, *refresh;
} console_params;

struct console_job {
        console_job *next;
        const console_route *route;
        struct evhttp_request *req;
        admin *a;

        /* Copied on the loop: the configuration may be replaced meanwhile. */
        char *endpoint;
        char *prometheus_url;
        bool hooks_configured;
        console_params p;
        ingest_stats stats;
        int64_t now;

        /* The probe (POST /probe): verified on the loop. */
        bool probed;
        char *probe_text; /* as pasted, shown again in the form */
        bool probe_crlf;  /* the body's CRLFs are the provider's */
        probe_result probe;
        int probe_error;  /* a negative errno, or 0 */

        /* Set by the page. */
        int code;
        struct evbuffer *body;
};

/* ---- console-pages.c ---------------------------------------------------------------- */

void page_dashboard(console_job *j, knock_store *st, struct evbuffer *b);
void page_events(console_job *j, knock_store *st, struct evbuffer *b);
void page_event(console_job *j, knock_store *st, struct evbuffer *b);
void page_delivery(console_job *j, knock_store *st, struct evbuffer *b);
void page_rejected(console_job *j, knock_store *st, struct evbuffer *b);
void page_hooks(console_job *j, knock_store *st, struct evbuffer *b);
void page_audit(console_job *j, knock_store *st, struct evbuffer *b);
void page_probe(console_job *j, knock_store *st, struct evbuffer *b);
void page_live(console_job *j, knock_store *st, struct evbuffer *b);
/* The routes, in navigation order; the last entry is zero. */
extern const console_route console_routes[];

/* ---- console-html.c ------------------------------------------------------------------- */

/* Text escaped for HTML (ESCAPE_HTML: controls, invalid UTF-8, markup);
 * NULL writes nothing. */
void html_text(struct evbuffer *b, const char *s);
void html_textn(struct evbuffer *b, const char *s, size_t len, unsigned flags);
/* A result column's bytes escaped, or "–" for NULL. */
void html_col(struct evbuffer *b, db_stmt *st, int col);
/* The column's text, or NULL. */
const char *col_text(db_stmt *st, int col);
/* printf of markup: the format is a constant, every %s argument must
 * already be safe (numbers, escaped text). */
void html_printf(struct evbuffer *b, const char *fmt, ...) _printf_(2, 3);
/* "2026-12-07 10:00:00Z (3 min ago)"; "–" for 0. */
void html_time(struct evbuffer *b, int64_t ms, int64_t now);
/* "3 min", "2.5 s", "4 d" */
void html_duration(struct evbuffer *b, int64_t ms);
void html_bytes(struct evbuffer *b, int64_t n);
/* A status or state as a badge; only known names become a CSS class. */
void html_status(struct evbuffer *b, const char *status);
/* <a href="PATH?NAME=VALUE">TEXT</a>, the value URL-encoded, both escaped. */
void html_link(struct evbuffer *b, const char *path, const char *name, const char *value,
               const char *text);
/* The page's head, header and navigation; html_foot() closes it. */
void html_head(struct evbuffer *b, const console_job *j, const char *title, int refresh_s);
void html_foot(struct evbuffer *b, const console_job *j);
/* A knockctl command line for this endpoint, each word shell-quoted where
 * it needs it and escaped: html_cli(b, j, "events", "--status", "dead", NULL). */
void html_cli(struct evbuffer *b, const console_job *j, const char *verb, ...);
void html_cli_words(struct evbuffer *b, const console_job *j, const char *const *words, size_t n);
/* An error paragraph (the text escaped). */
void html_error(struct evbuffer *b, const char *what, int r, knock_store *st);
/* The URL-encoded value (malloc'd), NULL when out of memory. */
char *url_encode(const char *s);

/* The Content-Security-Policy and the other headers of every console answer. */
void console_headers(struct evhttp_request *req, const char *content_type);

/* ---- console-parts.c: what the pages share ---- */
/* A list page's table: its head, one row() a row, and the row columns that
 * make the cursor of the older page. */
typedef struct list_spec {
        const char *what, *head, *empty;
        int at_col, id_col;
        void (*row)(struct evbuffer *b, console_job *j, db_stmt *st);
        const char *path;
        const char *const *names; /* the filters the older page keeps */
        size_t n_names;
} list_spec;

/* An integer parameter within [min, max], dflt when absent or invalid. */
int parse_int(const char *s, int min, int max, int dflt);
int64_t col_i64(db_stmt *st, int col);
bool col_null(db_stmt *st, int col);
void dt(struct evbuffer *b, const char *name);
void dd_end(struct evbuffer *b);
void dd_col(struct evbuffer *b, const char *name, db_stmt *st, int col);
void dd_time(struct evbuffer *b, const char *name, db_stmt *st, int col, int64_t now);
void page_cursor(db_stmt *st, int at_col, int id_col, char *out, size_t len);
void older_link(struct evbuffer *b, const char *path, const char *const *names,
                const char *const *values, size_t n, const char *cursor);
bool no_store(struct evbuffer *b, knock_store *st);
bool list_open(struct evbuffer *b, console_job *j, knock_store *st, cq_page *p);
void list_rows(struct evbuffer *b, console_job *j, knock_store *st, db_stmt *s,
               const list_spec *ls, int limit, const char *const *values);
const char *status_param(console_job *j, struct evbuffer *b);
void event_link(struct evbuffer *b, db_stmt *st, int col);

/* ---- console-access.c: who may see the console ---- */
#define COOKIE_NAME "knock_console"
#define SESSION_LABEL "knock console session v1"
typedef enum console_access {
        ACCESS_NONE,      /* this listener does not serve the console */
        ACCESS_FORBIDDEN, /* a Host that is not this machine's, on the unix socket */
        ACCESS_LOGIN,     /* TCP: no valid token or cookie */
        ACCESS_DENIED,    /* TCP: a wrong bearer token */
        ACCESS_OK,
} console_access;

console_access console_check_access(const knock_config *cfg, struct evhttp_request *req);
/* A form's POST comes from the console's own pages (Origin is this Host). */
bool console_same_origin(struct evhttp_request *req);
/* The index of the console_token equal to given (constant time), or -1. */
int console_token_index(const knock_config *cfg, const char *given, size_t len);
/* The login cookie's value for a token: hex of an HMAC keyed by it. */
void console_session_value(const char *token, char out[65]);
