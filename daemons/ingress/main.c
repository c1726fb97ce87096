/* SPDX-License-Identifier: MIT */
/*
 * knock-ingress NAME — the durable front door (contract §5).
 *
 * The loop thread owns HTTP: it checks path, method and limits, verifies
 * the signature over the raw body, and hands a stored-to-be item to the
 * writer thread (writer.c). It answers a verified request only when the
 * writer reports the item's transaction committed (synchronous=FULL), so a
 * 2xx always means "on disk". Rejections (401, 413) are answered at once and
 * their delivery rows stored best effort: a non-2xx promises nothing.
 *
 * libevent serves one request per connection at a time (no pipelining), so
 * a connection has at most one item in flight. libevent 2.1 stops reading a
 * connection once its request is dispatched, so a client that disconnects
 * early is only noticed when its reply is written; should the close
 * callback ever run first, it detaches the item so the reply is dropped
 * instead of touching a freed request.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "catalog-ids.h"
#include "daemon.h"
#include "admin.h"
#include "ingress.h"
#include "knock-build.h"
#include "log.h"
#include "verify.h"

#define MAX_HEADERS 100
#define MAX_HEADER_BYTES (64 * 1024)
/* libevent's own header limit: above ours so we see the request and can
 * answer 431 ourselves; beyond it libevent refuses the request itself. */
#define HTTP_HEADER_LIMIT (256 * 1024)
/* Bodies up to max_body + this are read so the 413 is recorded as a
 * delivery; larger ones are refused by libevent before they are read. */
#define BODY_SLACK (64 * 1024)
#define RETRY_AFTER_S "5"
#define DRAIN_TIMEOUT_S 25

static const char usage[] =
        "Usage: knock-ingress [OPTIONS] NAME\n"
        "\n"
        "Receives webhooks for endpoint NAME and stores them durably before answering.\n"
        "See knock-ingress(8).\n"
        "\n"
        "  -h --help     Show this help\n"
        "  -V --version  Show the version\n";

/*
 * Every accepted connection is tracked from its first byte, keyed by the
 * bufferevent we create for it (evhttp_set_bevcb): libevent 2.1 has no
 * callback for a new connection, nor a total deadline for a request, so this
 * is how the connection limit counts slow clients too and how a client that
 * drips its headers is cut off. We hold a reference on the bufferevent so
 * the sweep may look at it after evhttp let go of it; the sweep then drops
 * the reference, which closes the socket.
 */
struct ingest_conn {
        struct bufferevent *bev;
        struct evhttp_connection *evcon; /* known from its first request */
        ingest_item *pending;
        uint64_t deadline_us; /* no complete request by then: cut off */
        bool closed;          /* evhttp's close callback ran */
        bool refused;         /* over max_connections */
        bool shut;            /* shutdown(2) done, evhttp will notice */
};

typedef struct ingress {
        knock_daemon d;
        struct evhttp *http_public;
        struct evhttp *http_admin;
        struct evhttp_bound_socket *public_sockets[8];
        size_t n_public_sockets;
        ingest_writer writer;
        ingest_stats stats;
        admin admin;
        bool draining;
        struct event *ev_drain_timeout;
        log_ratelimit rl_invalid;
        log_ratelimit rl_storage;

        /* Open addressing table of accepted connections: bev → conn. */
        ingest_conn **conns;
        size_t conns_cap;
        size_t n_conns;       /* tracked, including closed ones not yet reaped */
        size_t n_live;        /* tracked and not known to be closed */
        struct event *ev_sweep;
} ingress;

static ingress *the_ingress;

/* ---- connection tracking -------------------------------------------------------- */

#define SWEEP_INTERVAL_MS 250

static uint64_t conn_budget_us(const knock_config *cfg)
{
        return (cfg->header_timeout_ms + cfg->body_timeout_ms) * 1000;
}

static size_t conn_slot(ingress *in, const struct bufferevent *bev)
{
        size_t h = ((uintptr_t)bev >> 4) * 0x9E3779B97F4A7C15ULL;
        size_t i = h & (in->conns_cap - 1);

        while (in->conns[i] && in->conns[i]->bev != bev)
                i = (i + 1) & (in->conns_cap - 1);
        return i;
}

static ingest_conn *conn_find(ingress *in, struct evhttp_connection *evcon)
{
        struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

        return bev ? in->conns[conn_slot(in, bev)] : NULL;
}

static void conn_reap(ingress *in, size_t i)
{
        ingest_conn *c = in->conns[i];
        size_t j;

        if (!c->closed)
                in->n_live--;
        /* Our reference was the last one once evhttp freed it: this closes
         * the socket. */
        bufferevent_decref(c->bev);
        free(c);
        in->conns[i] = NULL;
        in->n_conns--;
        /* Re-insert the rest of the cluster (linear probing deletion). */
        for (j = (i + 1) & (in->conns_cap - 1); in->conns[j]; j = (j + 1) & (in->conns_cap - 1)) {
                ingest_conn *m = in->conns[j];
                in->conns[j] = NULL;
                in->conns[conn_slot(in, m->bev)] = m;
        }
}

/* evhttp clears every callback of a bufferevent when it frees it, and keeps
 * its error callback set for as long as it uses it. */
static bool bev_released(struct bufferevent *bev)
{
        bufferevent_data_cb r, w;
        bufferevent_event_cb e;
        void *arg;

        bufferevent_getcb(bev, &r, &w, &e, &arg);
        return !r && !w && !e;
}

static void on_sweep(evutil_socket_t fd, short what, void *userdata)
{
        ingress *in = userdata;
        uint64_t now = mono_us();
        bool again = true;

        /* Reaping moves entries around; start over until a pass reaps none. */
        while (again) {
                again = false;
                for (size_t i = 0; i < in->conns_cap; i++) {
                        ingest_conn *c = in->conns[i];

                        if (!c)
                                continue;
                        if (c->closed || bev_released(c->bev)) {
                                conn_reap(in, i);
                                again = true;
                                break;
                        }
                        if (c->shut || c->pending || !(c->refused || now > c->deadline_us))
                                continue;
                        /* Over the limit, or no complete request within
                         * header_timeout + body_timeout: end it. evhttp reads
                         * EOF and frees the connection itself. */
                        if (bufferevent_getfd(c->bev) >= 0) {
                                (void)shutdown(bufferevent_getfd(c->bev), SHUT_RDWR);
                                c->shut = true;
                                if (!c->refused)
                                        in->stats.rejected_other++;
                        }
                }
        }
}

static void on_conn_close(struct evhttp_connection *evcon, void *userdata)
{
        ingress *in = userdata;
        ingest_conn *c = conn_find(in, evcon);

        if (!c || c->closed)
                return;
        /* The request dies with its connection: detach it from the item
         * that may still be in the writer's hands. The item itself is
         * stored anyway (the provider will retry and dedupe absorbs it). */
        if (c->pending) {
                c->pending->req = NULL;
                c->pending->conn = NULL;
                c->pending = NULL;
        }
        c->closed = true;
        in->n_live--;
        /* Reap right after evhttp has freed it, not at the next tick. */
        event_active(in->ev_sweep, EV_TIMEOUT, 0);
}

/* evhttp's bevcb: a new connection was accepted. */
static struct bufferevent *on_accept(struct event_base *base, void *userdata)
{
        ingress *in = userdata;
        struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        ingest_conn *c;
        size_t i;

        if (!bev)
                return NULL;
        /* A full table (a flood far above the limit) leaves the rest
         * untracked rather than refusing to serve. */
        if (in->n_conns >= in->conns_cap / 2)
                return bev;
        c = calloc(1, sizeof(*c));
        if (!c)
                return bev;
        c->bev = bev;
        bufferevent_incref(bev);
        c->deadline_us = mono_us() + conn_budget_us(in->d.cfg);
        i = conn_slot(in, bev);
        in->conns[i] = c;
        in->n_conns++;
        in->n_live++;
        if (in->n_live > in->d.cfg->max_connections) {
                c->refused = true;
                in->stats.rejected_other++;
                event_active(in->ev_sweep, EV_TIMEOUT, 0);
        }
        return bev;
}

/* The tracker of a request's connection at its first complete request; its
 * deadline starts again with every request. */
static ingest_conn *conn_get(ingress *in, struct evhttp_connection *evcon)
{
        ingest_conn *c = conn_find(in, evcon);

        if (!c)
                return NULL;
        if (!c->evcon) {
                c->evcon = evcon;
                evhttp_connection_set_closecb(evcon, on_conn_close, in);
        }
        c->deadline_us = mono_us() + conn_budget_us(in->d.cfg);
        return c;
}

/* ---- replies -------------------------------------------------------------------- */

static void reply(struct evhttp_request *req, int code, const char *reason,
                  const char *content_type, const char *body, size_t len)
{
        struct evbuffer *buf = evbuffer_new();

        if (buf && body)
                evbuffer_add(buf, body, len);
        http_send(req, code, reason, content_type, buf);
        if (buf)
                evbuffer_free(buf);
}

static void reply_error(struct evhttp_request *req, int code, const char *reason,
                        const char *message)
{
        json_t *j = json_pack("{s:s}", "error", message);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

        if (code == 503)
                evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                                  RETRY_AFTER_S);
        reply(req, code, reason, "application/json", s ? s : "{}", s ? strlen(s) : 2);
        free(s);
        json_decref(j);
}

static void set_request_id_header(struct evhttp_request *req, const char *request_id)
{
        evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-ID", request_id);
}

/* ---- request parsing -------------------------------------------------------------- */

static bool request_id_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || strchr("-_.:", *p)))
                        return false;
        return true;
}

static bool header_is_credential(ingress *in, const char *name)
{
        static const char *const always[] = {
                "authorization", "proxy-authorization", "cookie", "x-knock-token",
                "x-gitlab-token",
        };
        for (size_t i = 0; i < ELEMENTSOF(always); i++)
                if (strcaseeq(name, always[i]))
                        return true;
        /* The token provider's header carries the secret itself. */
        if (in->d.cfg->verify.provider == KNOCK_PROVIDER_TOKEN && in->d.cfg->verify.header &&
            strcaseeq(name, in->d.cfg->verify.header))
                return true;
        return false;
}

/* Headers as a JSON array of [name, value], credentials redacted. */
static char *headers_json(ingress *in, struct evkeyvalq *hdrs)
{
        json_t *arr = json_array();
        char *s;

        if (!arr)
                return NULL;
        for (struct evkeyval *kv = hdrs->tqh_first; kv; kv = kv->next.tqe_next)
                json_array_append_new(arr, json_pack("[ss]", kv->key,
                                                     header_is_credential(in, kv->key)
                                                             ? "[redacted]"
                                                             : kv->value));
        s = json_dumps(arr, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(arr);
        return s;
}

static char *peer_string(struct evhttp_request *req)
{
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        char *addr = NULL, *s = NULL;
        ev_uint16_t port = 0;

        if (!evcon)
                return NULL;
        evhttp_connection_get_peer(evcon, &addr, &port);
        if (!addr)
                return NULL;
        if (asprintf(&s, "%s:%u", addr, (unsigned)port) < 0)
                return NULL;
        return s;
}

/* The URI as stored: query parameters that carry a secret (Meta's
 * hub.verify_token) are replaced by [redacted]. Verification still sees the
 * URI as received. */
static char *uri_for_storage(const char *uri)
{
        static const char *const secret_params[] = {"hub.verify_token"};
        const char *q = strchr(uri, '?');
        char *out;
        size_t o = 0;

        out = malloc(strlen(uri) * 2 + 16);
        if (!out)
                return NULL;
        if (!q)
                return strcpy(out, uri);
        memcpy(out, uri, (size_t)(q - uri) + 1);
        o = (size_t)(q - uri) + 1;
        for (const char *p = q + 1; *p;) {
                size_t seg = strcspn(p, "&");
                bool secret = false;

                /* Compare the percent-decoded name: "hub%2Everify_token" is
                 * the same parameter to the verifier. */
                size_t nlen = strcspn(p, "=&");
                char name[64];
                size_t dn = 0;

                for (size_t i = 0; i < nlen && dn < sizeof(name) - 1; i++) {
                        if (p[i] == '%' && i + 2 < nlen && isxdigit((unsigned char)p[i + 1]) &&
                            isxdigit((unsigned char)p[i + 2])) {
                                char hex[3] = {p[i + 1], p[i + 2], 0};
                                name[dn++] = (char)strtol(hex, NULL, 16);
                                i += 2;
                        } else
                                name[dn++] = p[i] == '+' ? ' ' : p[i];
                }
                name[dn] = 0;
                for (size_t i = 0; i < ELEMENTSOF(secret_params); i++)
                        if (streq(name, secret_params[i]) && p[nlen] == '=') {
                                memcpy(out + o, p, nlen + 1);
                                o += nlen + 1;
                                memcpy(out + o, "[redacted]", 10);
                                o += 10;
                                secret = true;
                        }
                if (!secret) {
                        memcpy(out + o, p, seg);
                        o += seg;
                }
                p += seg;
                if (*p == '&')
                        out[o++] = *p++;
        }
        out[o] = 0;
        return out;
}

static ingest_item *item_new(struct evhttp_request *req, const char *request_id)
{
        ingest_item *it = calloc(1, sizeof(*it));
        const char *ct;

        if (!it)
                return NULL;
        it->req = req;
        it->start_us = mono_us();
        it->received_at = now_ms();
        id_new("dlv", it->delivery_id);
        id_new("evt", it->event_id);
        snprintf(it->request_id, sizeof(it->request_id), "%s", request_id);
        it->method = strdup(evhttp_request_get_command(req) == EVHTTP_REQ_GET ? "GET" : "POST");
        it->uri = uri_for_storage(evhttp_request_get_uri(req));
        it->remote = peer_string(req);
        ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        it->content_type = ct ? strndup(ct, 255) : NULL;
        return it;
}

/* ---- the public listener ------------------------------------------------------------ */

static void log_invalid(ingress *in, ingest_item *it)
{
        uint64_t suppressed = 0;
        char status[8];

        if (!log_ratelimit_ok(&in->rl_invalid, &suppressed))
                return;
        if (suppressed > 0)
                log_warning("%llu invalid-delivery records suppressed by rate limiting",
                            (unsigned long long)suppressed);
        snprintf(status, sizeof(status), "%d", it->http_status);
        log_struct(LOG_WARNING, MSGID_DELIVERY_INVALID,
                   LOG_FIELDS(LF("KNOCK_DELIVERY_ID", it->delivery_id),
                              LF("KNOCK_REQUEST_ID", it->request_id),
                              LF("KNOCK_PROVIDER_EVENT_ID", it->provider_event_id),
                              LF("KNOCK_EVENT_TYPE", it->event_type),
                              LF("KNOCK_HTTP_STATUS", status),
                              LF("KNOCK_ERROR", it->verify_error)),
                   "Rejected delivery %s: %s", it->delivery_id,
                   it->verify_error ? it->verify_error : "invalid");
}

static void on_public_request(struct evhttp_request *req, void *userdata)
{
        ingress *in = userdata;
        const knock_config *cfg = in->d.cfg;
        struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
        struct evbuffer *input = evhttp_request_get_input_buffer(req);
        const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
        const char *rid_in;
        char request_id[80];
        knock_header hv[MAX_HEADERS];
        size_t n_headers = 0, header_bytes = 0, body_len;
        knock_verify_result vr = {0};
        knock_request kr;
        ingest_conn *conn;
        ingest_item *it;
        int r;

        rid_in = evhttp_find_header(hdrs, "X-Request-ID");
        if (rid_in && request_id_valid(rid_in))
                snprintf(request_id, sizeof(request_id), "%s", rid_in);
        else
                id_new("req", request_id);
        set_request_id_header(req, request_id);

        if (in->draining) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
                reply_error(req, 503, "Service Unavailable", "shutting down");
                return;
        }
        conn = conn_get(in, evhttp_request_get_connection(req));
        if (conn && conn->refused) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
                reply_error(req, 503, "Service Unavailable", "too many connections");
                return;
        }

        if (!path || !streq(path, cfg->path)) {
                in->stats.rejected_other++;
                reply_error(req, 404, "Not Found", "no such path");
                return;
        }
        if (cmd != EVHTTP_REQ_POST &&
            !(cmd == EVHTTP_REQ_GET && cfg->verify.provider == provider_from_string("meta"))) {
                in->stats.rejected_other++;
                evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
                reply_error(req, 405, "Method Not Allowed", "method not allowed");
                return;
        }

        for (struct evkeyval *kv = hdrs->tqh_first; kv; kv = kv->next.tqe_next) {
                header_bytes += strlen(kv->key) + strlen(kv->value) + 4;
                if (n_headers >= MAX_HEADERS || header_bytes > MAX_HEADER_BYTES) {
                        in->stats.rejected_other++;
                        reply_error(req, 431, "Request Header Fields Too Large",
                                    "request header fields too large");
                        return;
                }
                hv[n_headers++] = (knock_header){kv->key, kv->value};
        }

        it = item_new(req, request_id);
        if (!it) {
                reply_error(req, 503, "Service Unavailable", "out of memory");
                return;
        }
        body_len = evbuffer_get_length(input);
        it->body_bytes = body_len;
        it->headers_json = headers_json(in, hdrs);

        if (body_len > cfg->max_body) {
                /* Recorded without its body: the row says it came and why it
                 * was refused; storing the bytes would defeat the limit. */
                it->kind = INGEST_ORPHAN;
                it->http_status = 413;
                it->signature_valid = false;
                if (asprintf(&it->verify_error, "body of %zu bytes exceeds max_body %llu",
                             body_len, (unsigned long long)cfg->max_body) < 0)
                        it->verify_error = NULL;
                in->stats.too_large++;
                reply_error(req, 413, "Payload Too Large", "body too large");
                log_invalid(in, it);
                it->req = NULL;
                writer_submit(&in->writer, it);
                return;
        }

        it->body_len = body_len;
        it->body = malloc(body_len ? body_len : 1);
        if (!it->body) {
                ingest_item_free(it);
                reply_error(req, 503, "Service Unavailable", "out of memory");
                return;
        }
        evbuffer_copyout(input, it->body, body_len);

        kr = (knock_request){
                .method = it->method,
                .uri = evhttp_request_get_uri(req),
                .headers = hv,
                .n_headers = n_headers,
                .body = it->body,
                .body_len = body_len,
                .now_ms = it->received_at,
        };
        r = verify_request(&cfg->verify, &kr, &vr);
        it->provider_event_id = TAKE_PTR(vr.provider_event_id);
        it->event_type = TAKE_PTR(vr.event_type);
        if (r < 0) {
                log_error_errno(r, "Verification failed internally: %m");
                verify_result_clear(&vr);
                ingest_item_free(it);
                reply_error(req, 503, "Service Unavailable", "internal error");
                return;
        }
        if (r > 0) {
                it->kind = INGEST_ORPHAN;
                it->http_status = 401;
                it->signature_valid = false;
                it->verify_error = strdup(vr.reason[0] ? vr.reason : "signature invalid");
                verify_result_clear(&vr);
                in->stats.invalid++;
                reply_error(req, 401, "Unauthorized", it->verify_error ? it->verify_error
                                                                      : "signature invalid");
                log_invalid(in, it);
                it->req = NULL;
                writer_submit(&in->writer, it);
                return;
        }

        it->signature_valid = true;
        it->http_status = 200;
        if (vr.handshake) {
                it->kind = INGEST_HANDSHAKE;
                it->handshake_status = vr.handshake_status ? vr.handshake_status : 200;
                it->handshake_content_type = TAKE_PTR(vr.handshake_content_type);
                it->handshake_body = TAKE_PTR(vr.handshake_body);
                it->http_status = it->handshake_status;
        } else
                it->kind = INGEST_EVENT;
        verify_result_clear(&vr);

        /* Nothing is answered here: the reply waits for the commit. */
        it->conn = conn;
        if (conn)
                conn->pending = it;
        writer_submit(&in->writer, it);
}

static void log_stored(ingest_item *it)
{
        char ms[32];

        if (log_get_level() < LOG_DEBUG)
                return;
        snprintf(ms, sizeof(ms), "%.3f", (double)(mono_us() - it->start_us) / 1000.0);
        log_struct(LOG_DEBUG, NULL,
                   LOG_FIELDS(LF("KNOCK_DELIVERY_ID", it->delivery_id),
                              LF("KNOCK_EVENT_ID", it->kind == INGEST_EVENT ? it->event_id : NULL),
                              LF("KNOCK_PROVIDER_EVENT_ID", it->provider_event_id),
                              LF("KNOCK_EVENT_TYPE", it->event_type),
                              LF("KNOCK_REQUEST_ID", it->request_id),
                              LF("KNOCK_DURATION_MS", ms), LF("KNOCK_HTTP_STATUS", "200")),
                   "Stored delivery %s%s", it->delivery_id, it->duplicate ? " (duplicate)" : "");
}

static void maybe_finish_drain(ingress *in);

/* Runs on the loop when the writer hands back a batch. */
static void on_writer_done(evutil_socket_t fd, short what, void *userdata)
{
        ingress *in = userdata;
        ingest_item *list = writer_take_done(&in->writer), *next;

        for (ingest_item *it = list; it; it = next) {
                struct evhttp_request *req = it->req;

                next = it->next;
                if (it->conn) {
                        it->conn->pending = NULL;
                        /* The idle budget starts when the answer goes out. */
                        it->conn->deadline_us = mono_us() + conn_budget_us(in->d.cfg);
                }
                if (it->result < 0) {
                        uint64_t suppressed = 0;

                        in->stats.storage_errors++;
                        if (log_ratelimit_ok(&in->rl_storage, &suppressed))
                                log_struct_errno(LOG_ERR, it->result, MSGID_STORAGE_ERROR,
                                                 LOG_FIELDS(LF("KNOCK_DELIVERY_ID", it->delivery_id),
                                                            LF("KNOCK_REQUEST_ID", it->request_id),
                                                            LF("KNOCK_ERROR", in->writer.last_error)),
                                                 "Cannot store delivery %s, answering 503: %s",
                                                 it->delivery_id, in->writer.last_error);
                        if (req)
                                reply_error(req, 503, "Service Unavailable", "storage unavailable");
                } else if (it->kind == INGEST_EVENT && req) {
                        char body[256];
                        int n = snprintf(body, sizeof(body),
                                         "{\"delivery_id\":\"%s\",\"event_id\":\"%s\","
                                         "\"duplicate\":%s}",
                                         it->delivery_id, it->event_id,
                                         it->duplicate ? "true" : "false");
                        if (it->duplicate)
                                in->stats.duplicates++;
                        else
                                in->stats.accepted++;
                        reply(req, 200, "OK", "application/json", body, (size_t)n);
                        log_stored(it);
                } else if (it->kind == INGEST_HANDSHAKE && req) {
                        const char *b = it->handshake_body ? it->handshake_body : "";
                        in->stats.handshakes++;
                        if (it->handshake_status == 204 || !it->handshake_content_type)
                                /* e.g. Discord's webhook-event PING: no body at all. */
                                evhttp_send_reply(req, it->handshake_status, "No Content", NULL);
                        else
                                reply(req, it->handshake_status, "OK", it->handshake_content_type,
                                      b, strlen(b));
                }
                ingest_item_free(it);
        }
        maybe_finish_drain(in);
}

/* ---- sockets ---------------------------------------------------------------------------- */

static int bind_address(const char *address, bool is_admin)
{
        _cleanup_close_ int fd = -1;
        int r;

        if (address[0] == '/') {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                if (strlen(address) >= sizeof(sa.sun_path))
                        return -ENAMETOOLONG;
                strcpy(sa.sun_path, address);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0)
                        return -errno;
                (void)unlink(address);
                if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        return -errno;
                /* The admin socket is for the knock group (knockctl, scrapers). */
                (void)chmod(address, is_admin ? 0660 : 0666);
        } else {
                struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
                struct addrinfo *ai = NULL;
                _cleanup_free_ char *host = NULL;
                const char *colon = strrchr(address, ':');
                int one = 1;

                if (!colon)
                        return -EINVAL;
                host = strndup(address, (size_t)(colon - address));
                if (!host)
                        return -ENOMEM;
                if (host[0] == '[' && host[strlen(host) - 1] == ']') {
                        memmove(host, host + 1, strlen(host));
                        host[strlen(host) - 1] = 0;
                }
                r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
                if (r != 0)
                        return -EADDRNOTAVAIL;
                fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0) {
                        freeaddrinfo(ai);
                        return -errno;
                }
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                        r = -errno;
                        freeaddrinfo(ai);
                        return r;
                }
                freeaddrinfo(ai);
        }
        if (listen(fd, 1024) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int add_public_fd(ingress *in, int fd)
{
        struct evhttp_bound_socket *bs;

        if (in->n_public_sockets >= ELEMENTSOF(in->public_sockets))
                return -E2BIG;
        evutil_make_socket_nonblocking(fd);
        bs = evhttp_accept_socket_with_handle(in->http_public, fd);
        if (!bs)
                return -EIO;
        in->public_sockets[in->n_public_sockets++] = bs;
        return 0;
}

/* Socket activation by name: "public" and "admin"; a single unnamed fd is
 * the public one; unknown names are closed. Without LISTEN_FDS we bind. */
static int setup_sockets(ingress *in)
{
        char **names = NULL;
        bool have_admin = false;
        int n, r = 0;

        n = sd_listen_fds_with_names(1, &names);
        if (n < 0)
                return log_error_errno(n, "Cannot read LISTEN_FDS: %m");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *nm = names ? names[i] : "unknown";

                if (streq(nm, "public") || (n == 1 && streq(nm, "unknown"))) {
                        r = add_public_fd(in, fd);
                        if (r < 0)
                                log_error_errno(r, "Cannot serve the public socket: %m");
                } else if (streq(nm, "admin")) {
                        evutil_make_socket_nonblocking(fd);
                        if (evhttp_accept_socket_with_handle(in->http_admin, fd))
                                have_admin = true;
                } else {
                        log_warning("Closing unexpected socket-activated fd named '%s'", nm);
                        close(fd);
                }
        }
        if (names) {
                for (int i = 0; i < n; i++)
                        free(names[i]);
                free(names);
        }
        if (r < 0)
                return r;

        if (in->n_public_sockets == 0) {
                int fd = bind_address(in->d.cfg->listen, false);
                if (fd < 0)
                        return log_error_errno(fd, "Cannot listen on %s: %m", in->d.cfg->listen);
                r = add_public_fd(in, fd);
                if (r < 0)
                        return log_error_errno(r, "Cannot serve %s: %m", in->d.cfg->listen);
        }
        if (!have_admin && in->d.cfg->admin) {
                int fd = bind_address(in->d.cfg->admin, true);
                if (fd < 0)
                        /* The admin listener is for operators; its absence must
                         * not stop webhooks from being received. */
                        log_warning_errno(fd, "Cannot listen on admin address %s: %m",
                                          in->d.cfg->admin);
                else if (!evhttp_accept_socket_with_handle(in->http_admin, fd))
                        close(fd);
        }
        return 0;
}

static void configure_http(const knock_config *cfg, struct evhttp *http)
{
        evhttp_set_max_headers_size(http, HTTP_HEADER_LIMIT);
        evhttp_set_max_body_size(http, (ev_ssize_t)(cfg->max_body + BODY_SLACK));
        evhttp_set_timeout(http, (int)MAX(1, MAX(cfg->header_timeout_ms, cfg->body_timeout_ms) / 1000));
        evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
        evhttp_set_default_content_type(http, "application/json");
}

/* ---- daemon ops ------------------------------------------------------------------------- */

static void maybe_finish_drain(ingress *in)
{
        if (in->draining && writer_pending(&in->writer) == 0)
                daemon_exit_loop(&in->d);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *userdata)
{
        ingress *in = userdata;

        log_warning("Drain timed out with %zu items pending", writer_pending(&in->writer));
        daemon_exit_loop(&in->d);
}

static void ingress_stop(knock_daemon *d)
{
        ingress *in = the_ingress;
        struct timeval tv = {DRAIN_TIMEOUT_S, 0};

        /* Stop accepting first, then answer what was read once it commits. */
        for (size_t i = 0; i < in->n_public_sockets; i++)
                evhttp_del_accept_socket(in->http_public, in->public_sockets[i]);
        in->n_public_sockets = 0;
        in->draining = true;
        in->ev_drain_timeout = evtimer_new(d->base, on_drain_timeout, in);
        if (in->ev_drain_timeout)
                evtimer_add(in->ev_drain_timeout, &tv);
        maybe_finish_drain(in);
}

static int ingress_health(knock_daemon *d)
{
        ingress *in = the_ingress;
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
        ingress *in = the_ingress;
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
        ingress *in = the_ingress;
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
        out = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return out;
}

static void ingress_status(knock_daemon *d, char *buf, size_t len)
{
        ingress *in = the_ingress;

        snprintf(buf, len, "%s: %llu stored, %llu duplicates, %llu rejected, %llu storage errors%s",
                 in->draining ? "draining" : "receiving", (unsigned long long)in->stats.accepted,
                 (unsigned long long)in->stats.duplicates,
                 (unsigned long long)(in->stats.invalid + in->stats.too_large),
                 (unsigned long long)in->stats.storage_errors,
                 in->writer.healthy ? "" : " (storage failing)");
}

static int ingress_reload(knock_daemon *d, knock_config *n)
{
        /* Limits and verification settings take effect for the next request;
         * listen addresses change only through the socket units. */
        configure_http(n, the_ingress->http_public);
        the_ingress->admin.cfg = n;
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

        the_ingress = &in;
        in.rl_invalid = (log_ratelimit)LOG_RATELIMIT_INIT(10, 50);
        in.rl_storage = (log_ratelimit)LOG_RATELIMIT_INIT(10, 20);
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

        /* Room for the limit, the refused ones and those not reaped yet. */
        in.conns_cap = 1;
        while (in.conns_cap < in.d.cfg->max_connections * 8)
                in.conns_cap <<= 1;
        in.conns = calloc(in.conns_cap, sizeof(*in.conns));
        in.http_public = evhttp_new(in.d.base);
        in.http_admin = evhttp_new(in.d.base);
        in.ev_sweep = event_new(in.d.base, -1, EV_PERSIST, on_sweep, &in);
        if (!in.conns || !in.http_public || !in.http_admin || !in.ev_sweep) {
                r = log_error_errno(-ENOMEM, "Out of memory");
                goto finish;
        }
        configure_http(in.d.cfg, in.http_public);
        evhttp_set_gencb(in.http_public, on_public_request, &in);
        evhttp_set_bevcb(in.http_public, on_accept, &in);
        {
                struct timeval tv = {0, SWEEP_INTERVAL_MS * 1000};
                evtimer_add(in.ev_sweep, &tv);
        }
        evhttp_set_timeout(in.http_admin, 10);
        evhttp_set_gencb(in.http_admin, admin_handle, &in.admin);

        db = config_db_path(in.d.name);
        r = writer_start(&in.writer, db, in.d.name, in.d.base, on_writer_done, &in, &in.stats);
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
        r = setup_sockets(&in);
        if (r < 0)
                goto finish;

        r = daemon_run(&in.d);
finish:
        admin_stop(&in.admin);
        writer_stop(&in.writer);
        /* Answer nothing more: items the writer finished after the loop
         * ended (drain timeout) are freed; their clients get a closed
         * connection, never a false 2xx. */
        for (ingest_item *it = writer_take_done(&in.writer), *next; it; it = next) {
                next = it->next;
                if (it->conn)
                        it->conn->pending = NULL;
                ingest_item_free(it);
        }
        if (in.ev_drain_timeout)
                event_free(in.ev_drain_timeout);
        if (in.http_public)
                evhttp_free(in.http_public);
        if (in.http_admin)
                evhttp_free(in.http_admin);
        /* evhttp freed every connection: drop our references. */
        for (size_t i = 0; in.conns && i < in.conns_cap; i++)
                if (in.conns[i]) {
                        bufferevent_decref(in.conns[i]->bev);
                        free(in.conns[i]);
                }
        free(in.conns);
        if (in.ev_sweep)
                event_free(in.ev_sweep);
        if (setup_done)
                daemon_finish(&in.d, r >= 0);
        return r < 0 ? 1 : 0;
}
