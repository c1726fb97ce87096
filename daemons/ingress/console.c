/* SPDX-License-Identifier: MIT */
/*
 * console — see console.h for what it promises. This file is the loop's
 * side (access, routes, the jobs' queue, the live streams) and the
 * console's thread; the pages are in console-pages.c.
 *
 * Threads. The loop owns every evhttp object: requests, connections, the
 * live clients. The console's thread owns its read-only connection and the
 * live feed's cursor. They share, under c->lock, the job queue (loop →
 * thread), the finished jobs and the live text (thread → loop, then
 * ev_done), and the number of watchers (loop → thread). A job holds its
 * request while the thread renders; should the client go away meanwhile,
 * evhttp detaches the request from its connection and evhttp_send_reply()
 * then only frees it.
 */
#define _GNU_SOURCE
#include "console.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>

#include "console-internal.h"
#include "form.h"
#include "knock-build.h"
#include "log.h"

#define CONSOLE_MAX_QUEUED 32
#define LIVE_MAX_CLIENTS 8
#define LIVE_CLIENT_BUFFER (256 * 1024)
#define LIVE_WRITE_TIMEOUT_S 30
#define LIVE_POLL_MS 500
#define LIVE_KEEPALIVE_MS 15000
#define LIVE_PENDING_MAX (1024 * 1024)
#define LOGIN_FAILURES_PER_MINUTE 10

typedef struct live_client {
        struct live_client *next;
        console *c;
        struct evhttp_request *req;
        struct evhttp_connection *evcon;
        uint64_t dropped; /* messages not sent since the last one that was */
} live_client;

typedef struct asset {
        const char *name, *type;
        char *data;
        size_t len;
} asset;

struct console {
        admin *a;
        struct event_base *base;
        pthread_t thread;
        bool started;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop;
        console_job *queue, **queue_tail; /* loop → thread */
        size_t queued;
        console_job *done, **done_tail;   /* thread → loop */
        struct evbuffer *live_text;       /* thread → loop: SSE messages */
        uint64_t live_messages;
        size_t watchers;                  /* loop → thread */
        uint64_t watchers_gen;            /* bumped by each new watcher */
        struct event *ev_done;

        /* the loop's */
        live_client *clients;
        size_t n_clients;
        asset assets[2];
        int64_t login_window_ms;
        unsigned login_failures;
};

/* ---- jobs ------------------------------------------------------------------------------ */

static void params_clear(console_params *p)
{
        char **f[] = {&p->id,     &p->status, &p->type,  &p->pid,   &p->since,
                      &p->until,  &p->before, &p->state, &p->limit, &p->refresh};

        for (size_t i = 0; i < ELEMENTSOF(f); i++)
                *f[i] = mfree(*f[i]);
}

static console_job *job_free(console_job *j)
{
        if (!j)
                return NULL;
        free(j->endpoint);
        free(j->prometheus_url);
        params_clear(&j->p);
        free(j->probe_text);
        probe_result_clear(&j->probe);
        if (j->body)
                evbuffer_free(j->body);
        free(j);
        return NULL;
}

/* The query's (or a form's) known parameters into p; unknown ones are ignored. */
static int params_parse(const char *text, size_t len, console_params *p)
{
        struct {
                const char *name;
                char **field;
        } known[] = {
                {"id", &p->id},       {"status", &p->status}, {"type", &p->type},
                {"pid", &p->pid},     {"since", &p->since},   {"until", &p->until},
                {"before", &p->before}, {"state", &p->state}, {"limit", &p->limit},
                {"refresh", &p->refresh},
        };
        form f = {0};
        int r;

        if (!text || len == 0)
                return 0;
        r = form_parse(text, len, &f);
        if (r < 0)
                return r;
        for (size_t i = 0; i < f.n; i++)
                for (size_t k = 0; k < ELEMENTSOF(known); k++)
                        if (streq(f.p[i].name, known[k].name) && f.p[i].value[0] &&
                            !*known[k].field) {
                                *known[k].field = strdup(f.p[i].value);
                                if (!*known[k].field) {
                                        form_free(&f);
                                        return -ENOMEM;
                                }
                        }
        form_free(&f);
        return 0;
}

/* On the thread: the page, rendered from the read-only connection. */
static void run_job(console *c, knock_store **st, console_job *j)
{
        j->body = evbuffer_new();
        if (!j->body) {
                j->code = 503;
                return;
        }
        j->code = 200;
        if (!*st && store_open(c->a->db_path, STORE_READONLY, st) < 0)
                *st = NULL; /* each page says so; the next job tries again */
        if (*st)
                cq_deadline(*st, mono_us() + CONSOLE_QUERY_MS * 1000ULL);
        j->route->render(j, *st, j->body);
        if (*st)
                cq_deadline(*st, 0);
}

static void send_job(console_job *j)
{
        console_headers(j->req, "text/html; charset=utf-8");
        evhttp_send_reply(j->req, j->code ? j->code : 503, NULL, j->body);
        j->req = NULL;
}

/* ---- the live feed (thread) ------------------------------------------------------------------- */

/* One poll: the new rows as SSE messages into out; "ready" first when a
 * watcher came since the last poll (it then knows that what is stored
 * from now on will show). Returns the number of messages. */
static uint64_t live_poll(knock_store **st, const char *db, cq_live *live, bool announce,
                          struct evbuffer *out)
{
        json_t *rows = NULL, *row;
        uint64_t n = 0;
        size_t i;

        if (!*st && store_open(db, STORE_READONLY, st) < 0) {
                *st = NULL;
                return 0;
        }
        cq_deadline(*st, mono_us() + CONSOLE_QUERY_MS * 1000ULL);
        if (cq_live_poll(*st, live, &rows) < 0)
                rows = NULL;
        cq_deadline(*st, 0);
        if (announce) {
                evbuffer_add_printf(out, "event: ready\ndata: {\"kind\":\"ready\"}\n\n");
                n++;
        }
        json_array_foreach(rows, i, row)
        {
                char *s = json_dumps(row, JSON_COMPACT);

                if (s) {
                        evbuffer_add_printf(out, "data: %s\n\n", s);
                        n++;
                }
                free(s);
        }
        json_decref(rows);
        return n;
}

static void *console_main(void *userdata)
{
        console *c = userdata;
        _cleanup_(store_closep) knock_store *st = NULL;
        cq_live live = {0};
        uint64_t next_poll = 0, last_message = 0, gen_seen = 0;

        pthread_setname_np(pthread_self(), "console");
        pthread_mutex_lock(&c->lock);
        while (!c->stop) {
                uint64_t now = mono_us();

                if (c->queue) {
                        console_job *j = c->queue;

                        c->queue = j->next;
                        if (!c->queue)
                                c->queue_tail = &c->queue;
                        c->queued--;
                        pthread_mutex_unlock(&c->lock);
                        run_job(c, &st, j);
                        pthread_mutex_lock(&c->lock);
                        j->next = NULL;
                        *c->done_tail = j;
                        c->done_tail = &j->next;
                        event_active(c->ev_done, EV_READ, 0);
                        continue;
                }
                if (c->watchers == 0) {
                        /* The next watcher's feed starts at its own "now". */
                        live.started = false;
                        pthread_cond_wait(&c->cond, &c->lock);
                        continue;
                }
                if (now >= next_poll) {
                        struct evbuffer *out = evbuffer_new();
                        uint64_t gen = c->watchers_gen, n = 0;

                        pthread_mutex_unlock(&c->lock);
                        if (out) {
                                n = live_poll(&st, c->a->db_path, &live, gen != gen_seen, out);
                                if (n == 0 && now - last_message > LIVE_KEEPALIVE_MS * 1000ULL) {
                                        /* A comment: proxies and tunnels see a live stream. */
                                        evbuffer_add_printf(out, ": keepalive\n\n");
                                        n = 1;
                                }
                        }
                        gen_seen = gen;
                        pthread_mutex_lock(&c->lock);
                        if (out && n > 0) {
                                last_message = now;
                                /* The loop takes it at once; should it not, the
                                 * oldest text is dropped, never memory grown. */
                                if (evbuffer_get_length(c->live_text) > LIVE_PENDING_MAX)
                                        evbuffer_drain(c->live_text,
                                                       evbuffer_get_length(c->live_text));
                                evbuffer_add_buffer(c->live_text, out);
                                c->live_messages += n;
                                event_active(c->ev_done, EV_READ, 0);
                        }
                        if (out)
                                evbuffer_free(out);
                        next_poll = now + LIVE_POLL_MS * 1000ULL;
                        continue;
                }
                {
                        struct timespec ts;
                        uint64_t wait_us = next_poll - now;

                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_sec += (time_t)(wait_us / 1000000);
                        ts.tv_nsec += (long)(wait_us % 1000000) * 1000;
                        if (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
                }
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

/* ---- the live streams (loop) ---------------------------------------------------------------- */

static void live_remove(console *c, live_client *cl)
{
        for (live_client **p = &c->clients; *p; p = &(*p)->next)
                if (*p == cl) {
                        *p = cl->next;
                        c->n_clients--;
                        break;
                }
        pthread_mutex_lock(&c->lock);
        c->watchers = c->n_clients;
        pthread_mutex_unlock(&c->lock);
        free(cl);
}

/* The browser went away (or did not read for LIVE_WRITE_TIMEOUT_S): evhttp
 * has detached the request from the connection it is freeing, so ending
 * the reply frees the request. */
static void live_closed(struct evhttp_connection *evcon, void *userdata)
{
        live_client *cl = userdata;
        struct evhttp_request *req = cl->req;

        if (req && !evhttp_request_get_connection(req))
                evhttp_send_reply_end(req);
        live_remove(cl->c, cl);
}

static void live_send(live_client *cl, const char *text, size_t len, uint64_t messages)
{
        struct bufferevent *bev = evhttp_connection_get_bufferevent(cl->evcon);
        size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
        struct evbuffer *chunk;

        /* A slow reader misses messages, never makes us hold more. */
        if (pending + len > LIVE_CLIENT_BUFFER) {
                cl->dropped += messages;
                return;
        }
        chunk = evbuffer_new();
        if (!chunk)
                return;
        if (cl->dropped > 0) {
                evbuffer_add_printf(chunk, "data: {\"kind\":\"dropped\",\"messages\":%llu}\n\n",
                                    (unsigned long long)cl->dropped);
                cl->dropped = 0;
        }
        evbuffer_add(chunk, text, len);
        evhttp_send_reply_chunk(cl->req, chunk);
        evbuffer_free(chunk);
}

static void live_start(console *c, struct evhttp_request *req)
{
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        struct timeval wt = {LIVE_WRITE_TIMEOUT_S, 0};
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        struct evbuffer *hello;
        live_client *cl;

        if (!evcon || c->n_clients >= LIVE_MAX_CLIENTS) {
                console_headers(req, "text/plain; charset=utf-8");
                evhttp_send_reply(req, 503, NULL, NULL);
                return;
        }
        cl = calloc(1, sizeof(*cl));
        hello = evbuffer_new();
        if (!cl || !hello) {
                free(cl);
                if (hello)
                        evbuffer_free(hello);
                evhttp_send_error(req, 503, NULL);
                return;
        }
        *cl = (live_client){.next = c->clients, .c = c, .req = req, .evcon = evcon};
        c->clients = cl;
        c->n_clients++;

        console_headers(req, "text/event-stream; charset=utf-8");
        evhttp_add_header(h, "X-Accel-Buffering", "no");
        evhttp_send_reply_start(req, 200, "OK");
        /* No read timeout: a watcher sends nothing. A write timeout: one
         * that reads nothing is let go. */
        bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), NULL, &wt);
        evhttp_connection_set_closecb(evcon, live_closed, cl);
        evbuffer_add_printf(hello, "retry: 3000\n: knock live view\n\n");
        evhttp_send_reply_chunk(req, hello);
        evbuffer_free(hello);

        pthread_mutex_lock(&c->lock);
        c->watchers = c->n_clients;
        c->watchers_gen++;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
}

/* ev_done: finished pages and live text from the thread. */
static void on_done(evutil_socket_t fd, short what, void *userdata)
{
        console *c = userdata;
        console_job *list;
        struct evbuffer *text = evbuffer_new();
        uint64_t messages;

        pthread_mutex_lock(&c->lock);
        list = c->done;
        c->done = NULL;
        c->done_tail = &c->done;
        messages = c->live_messages;
        c->live_messages = 0;
        if (text)
                evbuffer_add_buffer(text, c->live_text);
        else
                evbuffer_drain(c->live_text, evbuffer_get_length(c->live_text));
        pthread_mutex_unlock(&c->lock);

        while (list) {
                console_job *j = list;

                list = j->next;
                send_job(j);
                job_free(j);
        }
        if (text && evbuffer_get_length(text) > 0) {
                size_t len = evbuffer_get_length(text);
                const char *p = (const char *)evbuffer_pullup(text, -1);

                for (live_client *cl = c->clients, *next; cl && p; cl = next) {
                        next = cl->next; /* should a write fail at once, cl goes */
                        live_send(cl, p, len, messages);
                }
        }
        if (text)
                evbuffer_free(text);
}

/* ---- answers on the loop ---------------------------------------------------------------------- */

static void send_text(struct evhttp_request *req, int code, const char *text)
{
        struct evbuffer *b = evbuffer_new();

        if (b && text)
                evbuffer_add_printf(b, "%s\n", text);
        console_headers(req, "text/plain; charset=utf-8");
        evhttp_send_reply(req, code, NULL, b);
        if (b)
                evbuffer_free(b);
}

static void send_redirect(struct evhttp_request *req, const char *to)
{
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location", to);
        send_text(req, 303, "see other");
}

static void send_static(console *c, struct evhttp_request *req, const char *name)
{
        struct evbuffer *b;

        for (size_t i = 0; i < ELEMENTSOF(c->assets); i++) {
                asset *as = &c->assets[i];

                if (!as->data || !streq(name, as->name))
                        continue;
                b = evbuffer_new();
                if (!b) {
                        evhttp_send_error(req, 503, NULL);
                        return;
                }
                evbuffer_add(b, as->data, as->len);
                console_headers(req, as->type);
                evhttp_send_reply(req, 200, "OK", b);
                evbuffer_free(b);
                return;
        }
        send_text(req, 404, "not found");
}

static void login_page(console *c, struct evhttp_request *req, int code, const char *message)
{
        static const console_route login_route = {"/login", "Log in", NULL, true, NULL};
        console_job j = {.route = &login_route, .endpoint = c->a->cfg->name, .now = now_ms()};
        struct evbuffer *b = evbuffer_new();

        if (!b) {
                evhttp_send_error(req, 503, NULL);
                return;
        }
        html_head(b, &j, "Log in", 0);
        if (message) {
                evbuffer_add_printf(b, "<p class=\"error\">");
                html_text(b, message);
                evbuffer_add_printf(b, "</p>\n");
        }
        evbuffer_add_printf(b, "<form method=\"post\" action=\"/login\" class=\"login\">"
                               "<label>console_token <input type=\"password\" name=\"token\" "
                               "autocomplete=\"current-password\" required autofocus></label> "
                               "<button type=\"submit\">Log in</button></form>\n"
                               "<p>The token is the endpoint's <code>console_token</code> "
                               "(knock-endpoint(5)). A script may send it as "
                               "<code>Authorization: Bearer</code> instead.</p>\n");
        html_foot(b, &j);
        console_headers(req, "text/html; charset=utf-8");
        evhttp_send_reply(req, code, NULL, b);
        evbuffer_free(b);
}

/* Failed logins are bounded per listener: a token is long, but a guesser
 * should not get many tries a second. */
static bool login_allowed(console *c)
{
        int64_t now = now_ms();

        if (now - c->login_window_ms >= 60000) {
                c->login_window_ms = now;
                c->login_failures = 0;
        }
        return c->login_failures < LOGIN_FAILURES_PER_MINUTE;
}

static void handle_login(console *c, struct evhttp_request *req)
{
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
        char session[65], cookie[160];
        form f = {0};
        const char *token = NULL;
        int idx;

        if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
                login_page(c, req, 200, NULL);
                return;
        }
        if (!login_allowed(c)) {
                send_text(req, 429, "too many failed logins; wait a minute");
                return;
        }
        if (form_parse(body, len, &f) >= 0)
                for (size_t i = 0; i < f.n; i++)
                        if (streq(f.p[i].name, "token"))
                                token = f.p[i].value;
        idx = token ? console_token_index(c->a->cfg, token, strlen(token)) : -1;
        form_free(&f);
        if (idx < 0) {
                c->login_failures++;
                log_warning("Web console: a wrong console_token was presented");
                login_page(c, req, 403, "That is not this endpoint's console_token.");
                return;
        }
        /* The cookie holds an HMAC of the token, not the token. */
        console_session_value(c->a->cfg->console_tokens[idx], session);
        snprintf(cookie, sizeof(cookie), COOKIE_NAME "=%s; Path=/; HttpOnly; SameSite=Strict",
                 session);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie", cookie);
        send_redirect(req, "/");
}

static void handle_logout(struct evhttp_request *req)
{
        evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie",
                          COOKIE_NAME "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
        send_redirect(req, "/login");
}

/* ---- pages ----------------------------------------------------------------------------------- */

static console_job *job_new(console *c, struct evhttp_request *req, const console_route *r)
{
        const knock_config *cfg = c->a->cfg;
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
        console_job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        *j = (console_job){
                .route = r,
                .req = req,
                .a = c->a,
                .endpoint = strdup(cfg->name),
                .prometheus_url = cfg->prometheus_url ? strdup(cfg->prometheus_url) : NULL,
                .hooks_configured = cfg->hook_url != NULL,
                .stats = admin_get_stats(c->a),
                .now = now_ms(),
        };
        if (!j->endpoint || params_parse(query, query ? strlen(query) : 0, &j->p) < 0)
                return job_free(j);
        return j;
}

/* The probe's verification runs here, with the configuration of this
 * moment; the thread only looks the dedupe id up and renders. */
static int probe_job(console *c, struct evhttp_request *req, console_job *j)
{
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
        form f = {0};
        int r;

        r = form_parse(body, len, &f);
        if (r < 0)
                return r;
        for (size_t i = 0; i < f.n; i++) {
                if (streq(f.p[i].name, "request") && !j->probe_text)
                        j->probe_text = strdup(f.p[i].value);
                else if (streq(f.p[i].name, "crlf"))
                        j->probe_crlf = true;
        }
        form_free(&f);
        if (!j->probe_text)
                return -EINVAL;
        j->probed = true;
        j->probe_error = probe_request(c->a->cfg, j->probe_text, strlen(j->probe_text),
                                       PROBE_LF_HEAD | (j->probe_crlf ? 0 : PROBE_BODY_LF),
                                       j->now, &j->probe);
        return 0;
}

static void queue_job(console *c, console_job *j)
{
        pthread_mutex_lock(&c->lock);
        if (c->queued >= CONSOLE_MAX_QUEUED) {
                pthread_mutex_unlock(&c->lock);
                send_text(j->req, 503, "the console is busy; try again");
                job_free(j);
                return;
        }
        j->next = NULL;
        *c->queue_tail = j;
        c->queue_tail = &j->next;
        c->queued++;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
}

bool console_handle(console *c, struct evhttp_request *req, const char *path)
{
        enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
        const console_route *r = NULL;
        console_job *j;
        console_access acc;

        acc = console_check_access(c->a->cfg, req);
        if (acc == ACCESS_NONE)
                return false;
        if (streq(path, "/favicon.ico")) {
                /* Asked for by every browser; there is none. */
                console_headers(req, "image/x-icon");
                evhttp_send_reply(req, 204, NULL, NULL);
                return true;
        }
        if (startswith(path, "/static/")) {
                /* The style sheet and the live view's script: no secret in them. */
                send_static(c, req, path + strlen("/static/"));
                return true;
        }
        if (acc == ACCESS_FORBIDDEN) {
                send_text(req, 403, "the console answers a Host of this machine only "
                                    "(localhost, a loopback address)");
                return true;
        }
        if (cmd == EVHTTP_REQ_POST && !console_same_origin(req)) {
                send_text(req, 403, "a form from another origin");
                return true;
        }
        if (streq(path, "/login") && acc != ACCESS_OK) {
                handle_login(c, req);
                return true;
        }
        if (streq(path, "/logout")) {
                handle_logout(req);
                return true;
        }
        if (acc == ACCESS_DENIED) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                                  "Bearer realm=\"knock console\", error=\"invalid_token\"");
                send_text(req, 401, "wrong console_token");
                return true;
        }
        if (acc == ACCESS_LOGIN) {
                const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req),
                                                        "Accept");

                if (cmd == EVHTTP_REQ_GET && accept && strstr(accept, "text/html")) {
                        send_redirect(req, "/login");
                        return true;
                }
                evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                                  "Bearer realm=\"knock console\"");
                send_text(req, 401, "this console needs its console_token");
                return true;
        }
        if (streq(path, "/login")) {
                send_redirect(req, "/");
                return true;
        }

        for (const console_route *p = console_routes; p->path; p++)
                if (streq(path, p->path))
                        r = p;
        if (!r && streq(path, "/live/stream")) {
                if (cmd != EVHTTP_REQ_GET) {
                        send_text(req, 405, "method not allowed");
                        return true;
                }
                live_start(c, req);
                return true;
        }
        if (!r) {
                send_text(req, 404, "no such page");
                return true;
        }
        if (cmd != EVHTTP_REQ_GET && !(cmd == EVHTTP_REQ_POST && r->post)) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                                  r->post ? "GET, POST" : "GET");
                send_text(req, 405, "method not allowed");
                return true;
        }
        j = job_new(c, req, r);
        if (!j) {
                send_text(req, 400, "malformed query");
                return true;
        }
        if (cmd == EVHTTP_REQ_POST && probe_job(c, req, j) < 0) {
                job_free(j);
                send_text(req, 400, "the form has no request, or is malformed");
                return true;
        }
        queue_job(c, j);
        return true;
}

/* ---- lifetime ----------------------------------------------------------------------------------- */

static void load_assets(console *c)
{
        const char *dir = getenv("KNOCK_CONSOLE_DIR");

        c->assets[0] = (asset){"console.css", "text/css; charset=utf-8"};
        c->assets[1] = (asset){"live.js", "text/javascript; charset=utf-8"};
        if (!dir || !*dir)
                dir = KNOCK_CONSOLE_DIR;
        for (size_t i = 0; i < ELEMENTSOF(c->assets); i++) {
                _cleanup_free_ char *path = strdup_printf("%s/%s", dir, c->assets[i].name);
                int r = path ? read_file_full(path, 256 * 1024, &c->assets[i].data,
                                              &c->assets[i].len)
                             : -ENOMEM;

                if (r < 0)
                        log_warning_errno(r, "Web console: cannot read %s: %m; pages come "
                                             "without it", path ? path : c->assets[i].name);
        }
}

int console_new(admin *a, struct event_base *base, console **ret)
{
        console *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->a = a;
        c->base = base;
        c->queue_tail = &c->queue;
        c->done_tail = &c->done;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        c->live_text = evbuffer_new();
        c->ev_done = event_new(base, -1, 0, on_done, c);
        if (!c->live_text || !c->ev_done) {
                console_free(c);
                return -ENOMEM;
        }
        load_assets(c);
        r = -pthread_create(&c->thread, NULL, console_main, c);
        if (r < 0) {
                console_free(c);
                return r;
        }
        c->started = true;
        *ret = c;
        return 0;
}

console *console_free(console *c)
{
        if (!c)
                return NULL;
        if (c->started) {
                pthread_mutex_lock(&c->lock);
                c->stop = true;
                pthread_cond_broadcast(&c->cond);
                pthread_mutex_unlock(&c->lock);
                pthread_join(c->thread, NULL);
        }
        /* What the thread finished is sent; what it never started is refused.
         * Both only queue bytes: the listener is freed after us. */
        for (console_job *j = c->done, *next; j; j = next) {
                next = j->next;
                send_job(j);
                job_free(j);
        }
        for (console_job *j = c->queue, *next; j; j = next) {
                next = j->next;
                send_text(j->req, 503, "shutting down");
                job_free(j);
        }
        while (c->clients) {
                live_client *cl = c->clients;

                evhttp_connection_set_closecb(cl->evcon, NULL, NULL);
                evhttp_send_reply_end(cl->req);
                c->clients = cl->next;
                free(cl);
        }
        for (size_t i = 0; i < ELEMENTSOF(c->assets); i++)
                free(c->assets[i].data);
        if (c->ev_done)
                event_free(c->ev_done);
        if (c->live_text)
                evbuffer_free(c->live_text);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        free(c);
        return NULL;
}
