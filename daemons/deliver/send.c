/* SPDX-License-Identifier: MIT */
/*
 * send — one completion-hook attempt over HTTP(S) with libevent's client.
 *
 * Promises:
 *  - the request is a POST of the stored payload with Content-Type:
 *    application/json, User-Agent: knock/VERSION and the Standard Webhooks
 *    headers: webhook-id (the hook's id, the same on every attempt),
 *    webhook-timestamp (this attempt, seconds) and webhook-signature, one
 *    space-separated "v1,<base64>" entry per configured secret, each an
 *    HMAC-SHA256 of "id.timestamp.body";
 *  - an attempt ends within [hook] timeout, whatever the peer does: the
 *    connection timeout covers a silent peer, a deadline timer one that
 *    trickles. The status (0 without a response), the first
 *    HOOK_RESPONSE_MAX bytes of the body (the rest is read and dropped, so
 *    memory stays bounded) and Retry-After are kept for the caller;
 *  - redirects are never followed (libevent's client does not);
 *  - https verifies the peer against the system trust store (plus
 *    KNOCK_HOOK_CA_FILE when set, for tests) and the host name, or the IP
 *    address for a literal, and sends SNI for names; a failed check ends the
 *    attempt with the verifier's reason as its error;
 *  - connections are kept alive and pooled per target; one request at a
 *    time per connection, so the pool holds at most [hook] concurrency busy
 *    connections. One the peer closed, or that failed, is never reused.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "knock-build.h"

/* ---- the target --------------------------------------------------------------------- */

void hook_target_clear(hook_target *t)
{
        free(t->url);
        free(t->host);
        free(t->path);
        free(t->hostport);
        *t = (hook_target){};
}

int hook_target_parse(const char *url, hook_target *ret)
{
        struct evhttp_uri *uri = NULL;
        const char *scheme, *host, *path, *query;
        hook_target t = {};
        unsigned char addr[16];
        int port, r = -EINVAL;

        uri = evhttp_uri_parse(url);
        if (!uri)
                return -EINVAL;
        scheme = evhttp_uri_get_scheme(uri);
        host = evhttp_uri_get_host(uri);
        if (!scheme || !host || !host[0] ||
            (!strcaseeq(scheme, "http") && !strcaseeq(scheme, "https")))
                goto out;
        t.https = strcaseeq(scheme, "https");
        port = evhttp_uri_get_port(uri);
        t.port = port > 0 ? port : t.https ? 443 : 80;
        path = evhttp_uri_get_path(uri);
        query = evhttp_uri_get_query(uri);
        t.ip_literal = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
        r = -ENOMEM;
        t.url = strdup(url);
        t.host = strdup(host);
        if (!t.url || !t.host ||
            asprintf(&t.path, "%s%s%s", path && path[0] ? path : "/", query ? "?" : "",
                     query ?: "") < 0) {
                t.path = NULL;
                goto out;
        }
        {
                bool v6 = strchr(host, ':') != NULL;
                bool dflt = t.port == (t.https ? 443 : 80);
                char pbuf[16] = "";

                if (!dflt)
                        snprintf(pbuf, sizeof(pbuf), ":%d", t.port);
                if (asprintf(&t.hostport, "%s%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "",
                             pbuf) < 0) {
                        t.hostport = NULL;
                        goto out;
                }
        }
        *ret = t;
        t = (hook_target){};
        r = 0;
out:
        hook_target_clear(&t);
        evhttp_uri_free(uri);
        return r;
}

/* ---- TLS ---------------------------------------------------------------------------- */

int send_tls_init(deliverer *dl)
{
        const char *extra = getenv("KNOCK_HOOK_CA_FILE");
        SSL_CTX *ctx;

        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                return -ENOMEM;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        /* The system trust store; a missing store only means fewer roots. */
        (void)SSL_CTX_set_default_verify_paths(ctx);
        if (extra && extra[0] && SSL_CTX_load_verify_locations(ctx, extra, NULL) != 1) {
                SSL_CTX_free(ctx);
                return -ENOENT;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        dl->ssl_ctx = ctx;
        return 0;
}

/* ---- the pool ----------------------------------------------------------------------- */

static hook_conn *conn_free(hook_conn *c)
{
        if (!c)
                return NULL;
        if (c->evcon)
                evhttp_connection_free(c->evcon); /* frees the bufferevent and its SSL */
        free(c->key);
        free(c);
        return NULL;
}

void send_pool_free(deliverer *dl)
{
        for (size_t i = 0; i < dl->n_conns; i++)
                conn_free(dl->conns[i]);
        free(dl->conns);
        dl->conns = NULL;
        dl->n_conns = 0;
        if (dl->ssl_ctx) {
                SSL_CTX_free(dl->ssl_ctx);
                dl->ssl_ctx = NULL;
        }
}

/* Frees broken idle connections. Never called from an evhttp callback. */
static void pool_sweep(deliverer *dl)
{
        size_t k = 0;

        for (size_t i = 0; i < dl->n_conns; i++) {
                hook_conn *c = dl->conns[i];

                if (c->broken && !c->busy)
                        conn_free(c);
                else
                        dl->conns[k++] = c;
        }
        dl->n_conns = k;
}

static void on_close(struct evhttp_connection *evcon, void *userdata)
{
        hook_conn *c = userdata;

        c->broken = true;
}

static int conn_new(deliverer *dl, const hook_target *t, hook_conn **ret)
{
        uint64_t ms = dl->d->cfg->hook_timeout_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
        hook_conn *c, **nv;

        nv = realloc(dl->conns, (dl->n_conns + 1) * sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        dl->conns = nv;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->key = strdup(t->url);
        if (!c->key) {
                free(c);
                return -ENOMEM;
        }
        if (t->https) {
                struct bufferevent *bev;

                if (!dl->ssl_ctx) {
                        conn_free(c);
                        return -EIO;
                }
                c->ssl = SSL_new(dl->ssl_ctx);
                if (!c->ssl) {
                        conn_free(c);
                        return -ENOMEM;
                }
                /* SNI for names only (RFC 6066); SSL_set1_host() checks an IP
                 * literal against the certificate's IP addresses instead. */
                if (!t->ip_literal)
                        SSL_set_tlsext_host_name(c->ssl, t->host);
                if (SSL_set1_host(c->ssl, t->host) != 1) {
                        SSL_free(c->ssl);
                        conn_free(c);
                        return -EINVAL;
                }
                bev = bufferevent_openssl_socket_new(dl->d->base, -1, c->ssl,
                                                     BUFFEREVENT_SSL_CONNECTING,
                                                     BEV_OPT_CLOSE_ON_FREE |
                                                             BEV_OPT_DEFER_CALLBACKS);
                if (!bev) {
                        SSL_free(c->ssl);
                        conn_free(c);
                        return -ENOMEM;
                }
                bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
                c->evcon = evhttp_connection_base_bufferevent_new(dl->d->base, dl->dns, bev,
                                                                  t->host,
                                                                  (unsigned short)t->port);
                if (!c->evcon)
                        bufferevent_free(bev);
        } else
                c->evcon = evhttp_connection_base_new(dl->d->base, dl->dns, t->host,
                                                      (unsigned short)t->port);
        if (!c->evcon) {
                conn_free(c);
                return -ENOMEM;
        }
        evhttp_connection_set_timeout_tv(c->evcon, &tv);
        evhttp_connection_set_retries(c->evcon, 0);
        evhttp_connection_set_max_headers_size(c->evcon, 64 * 1024);
        evhttp_connection_set_closecb(c->evcon, on_close, c);
        dl->conns[dl->n_conns++] = c;
        *ret = c;
        return 0;
}

static int conn_get(deliverer *dl, const hook_target *t, hook_conn **ret)
{
        size_t idle_other = SIZE_MAX;

        pool_sweep(dl);
        for (size_t i = 0; i < dl->n_conns; i++) {
                hook_conn *c = dl->conns[i];

                if (c->busy || c->broken)
                        continue;
                if (streq(c->key, t->url)) {
                        *ret = c;
                        return 0;
                }
                idle_other = i;
        }
        /* An idle connection to a previous target (before a reload) makes room. */
        if (dl->n_conns >= 2 * dl->d->cfg->hook_concurrency && idle_other != SIZE_MAX) {
                conn_free(dl->conns[idle_other]);
                dl->conns[idle_other] = dl->conns[--dl->n_conns];
        }
        return conn_new(dl, t, ret);
}

/* ---- one attempt -------------------------------------------------------------------- */

static void set_error(hook_send *s, const char *fmt, ...) _printf_(2, 3);
static void set_error(hook_send *s, const char *fmt, ...)
{
        va_list ap;
        char *e;

        va_start(ap, fmt);
        if (vasprintf(&e, fmt, ap) < 0)
                e = NULL;
        va_end(ap);
        free(s->error);
        s->error = e;
}

/* The attempt is over: give the connection back, stop the timer, hand over. */
static void finish(hook_send *s)
{
        if (s->conn) {
                s->conn->busy = false;
                s->conn = NULL;
        }
        s->req = NULL;
        if (s->ev_deadline)
                evtimer_del(s->ev_deadline);
        send_complete(s);
}

/* Why a TLS connection failed, in the verifier's words when it refused. */
static void tls_error(hook_send *s, const char *what)
{
        struct bufferevent *bev = evhttp_connection_get_bufferevent(s->conn->evcon);
        unsigned long e = bev ? bufferevent_get_openssl_error(bev) : 0;
        long v = SSL_get_verify_result(s->conn->ssl);
        char buf[256];

        if (v != X509_V_OK) {
                set_error(s, "TLS: certificate verify failed: %s (%s)",
                          X509_verify_cert_error_string(v), what);
                return;
        }
        if (e != 0) {
                ERR_error_string_n(e, buf, sizeof(buf));
                set_error(s, "TLS: %s (%s)", buf, what);
        }
}

static void on_error(enum evhttp_request_error err, void *userdata)
{
        hook_send *s = userdata;
        const char *what;

        if (!s->req)
                return; /* cancelled by us: the canceller recorded why */
        switch (err) {
        case EVREQ_HTTP_TIMEOUT:
                what = "timed out";
                s->timed_out = true;
                break;
        case EVREQ_HTTP_EOF:
                what = "connection closed before a response";
                break;
        case EVREQ_HTTP_INVALID_HEADER:
                what = "invalid response header";
                break;
        case EVREQ_HTTP_BUFFER_ERROR:
                what = "connection failed";
                break;
        case EVREQ_HTTP_DATA_TOO_LONG:
                what = "response headers too long";
                break;
        default:
                what = "request failed";
        }
        if (s->conn)
                s->conn->broken = true;
        if (s->timed_out)
                set_error(s, "timed out after %llu ms",
                          (unsigned long long)s->dl->d->cfg->hook_timeout_ms);
        else {
                set_error(s, "%s", what);
                if (s->conn && s->conn->ssl)
                        tls_error(s, what);
        }
}

static void on_chunk(struct evhttp_request *req, void *userdata)
{
        hook_send *s = userdata;
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in), take;

        /* Keep the head of the body; libevent drains the buffer after us. */
        take = MIN(len, HOOK_RESPONSE_MAX - s->response_len);
        if (take == 0)
                return;
        if (!s->response) {
                s->response = malloc(HOOK_RESPONSE_MAX + 1);
                if (!s->response)
                        return;
        }
        evbuffer_copyout(in, s->response + s->response_len, take);
        s->response_len += take;
        s->response[s->response_len] = 0;
}

static void on_response(struct evhttp_request *req, void *userdata)
{
        hook_send *s = userdata;
        int code = req ? evhttp_request_get_response_code(req) : 0;

        if (!s->req)
                return;
        s->status = code;
        if (code == 0) {
                if (s->conn)
                        s->conn->broken = true;
                if (!s->error)
                        set_error(s, "connection failed");
                finish(s);
                return;
        }
        if (code == 429 || code == 503) {
                const char *ra = evhttp_find_header(evhttp_request_get_input_headers(req),
                                                    "Retry-After");
                int64_t ms;

                if (ra && hook_retry_after_ms(ra, now_ms(), &ms) >= 0)
                        s->retry_after_ms = ms;
        }
        if (hook_classify(code) != HOOK_DELIVERED)
                set_error(s, "HTTP %d%s", code,
                          hook_classify(code) == HOOK_PERMANENT ? " (permanent failure)"
                          : code < 400                           ? " (redirects are not followed)"
                                                                 : "");
        finish(s);
}

static void on_deadline(evutil_socket_t fd, short what, void *userdata)
{
        hook_send *s = userdata;
        struct evhttp_request *req = s->req;

        if (!req)
                return;
        s->timed_out = true;
        set_error(s, "timed out after %llu ms",
                  (unsigned long long)s->dl->d->cfg->hook_timeout_ms);
        /* Clear first: the error callback the cancel triggers sees no request. */
        s->req = NULL;
        if (s->conn)
                s->conn->broken = true;
        evhttp_cancel_request(req);
        finish(s);
}

static int sign(hook_send *s, const char *ts, char **ret)
{
        deliverer *dl = s->dl;
        const unsigned char *body = (const unsigned char *)s->claim.payload;
        size_t len = strlen(s->claim.payload), cap = dl->n_keys * 128 + 1, at = 0;
        char *out;

        if (dl->n_keys == 0)
                return -ENOKEY;
        out = malloc(cap);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < dl->n_keys; i++) {
                char one[128];
                int r = standard_sign(&dl->keys[i], s->claim.id, ts, body, len, one,
                                      sizeof(one));

                if (r < 0) {
                        free(out);
                        return r;
                }
                /* One entry per secret, space-separated: a receiver that
                 * rotates accepts any of them. */
                at += (size_t)snprintf(out + at, cap - at, "%s%s", at > 0 ? " " : "", one);
        }
        *ret = out;
        return 0;
}

int send_start(hook_send *s)
{
        deliverer *dl = s->dl;
        const hook_target *t = &dl->target;
        uint64_t ms = dl->d->cfg->hook_timeout_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
        _cleanup_free_ char *sig = NULL;
        struct evkeyvalq *h;
        char ts[24];
        int r;

        if (!t->url)
                return -ENOTCONN;
        s->started_at = now_ms();
        s->started_us = mono_us();
        s->retry_after_ms = -1;
        snprintf(ts, sizeof(ts), "%lld", (long long)(s->started_at / 1000));
        r = sign(s, ts, &sig);
        if (r < 0)
                return r;

        s->ev_deadline = evtimer_new(dl->d->base, on_deadline, s);
        if (!s->ev_deadline)
                return -ENOMEM;
        r = conn_get(dl, t, &s->conn);
        if (r < 0)
                return r;
        s->req = evhttp_request_new(on_response, s);
        if (!s->req) {
                s->conn = NULL;
                return -ENOMEM;
        }
        evhttp_request_set_error_cb(s->req, on_error);
        evhttp_request_set_chunked_cb(s->req, on_chunk);

        h = evhttp_request_get_output_headers(s->req);
        evhttp_add_header(h, "Host", t->hostport);
        evhttp_add_header(h, "Content-Type", "application/json");
        evhttp_add_header(h, "User-Agent", "knock/" KNOCK_VERSION);
        evhttp_add_header(h, "webhook-id", s->claim.id);
        evhttp_add_header(h, "webhook-timestamp", ts);
        evhttp_add_header(h, "webhook-signature", sig);
        evbuffer_add(evhttp_request_get_output_buffer(s->req), s->claim.payload,
                     strlen(s->claim.payload));

        s->conn->busy = true;
        if (evhttp_make_request(s->conn->evcon, s->req, EVHTTP_REQ_POST, t->path) < 0) {
                /* libevent has freed the request already. */
                s->req = NULL;
                s->conn->busy = false;
                s->conn->broken = true;
                s->conn = NULL;
                return -EIO;
        }
        evtimer_add(s->ev_deadline, &tv);
        return 0;
}

void send_cancel(hook_send *s)
{
        struct evhttp_request *req = s->req;

        if (!req)
                return;
        s->req = NULL;
        s->interrupted = true;
        if (s->conn)
                s->conn->broken = true;
        set_error(s, "interrupted: knock-deliver stopping");
        evhttp_cancel_request(req);
        finish(s);
}

void send_cleanup(hook_send *s)
{
        if (s->req) {
                struct evhttp_request *req = s->req;

                s->req = NULL;
                evhttp_cancel_request(req);
        }
        if (s->conn) {
                s->conn->busy = false;
                s->conn->broken = true;
                s->conn = NULL;
        }
        if (s->ev_deadline) {
                event_free(s->ev_deadline);
                s->ev_deadline = NULL;
        }
        free(s->error);
        free(s->response);
        s->error = s->response = NULL;
}
