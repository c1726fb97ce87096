/* SPDX-License-Identifier: MIT */
/*
 * forward — runs an `http://` or `https://` handler for one job: a POST of
 * the stored body to the handler URL.
 *
 * Promises:
 *  - keep-alive: connections are pooled per scheme://host:port and reused;
 *    libevent sends one request at a time per connection, so the pool grows
 *    to at most [worker] concurrency busy connections per target. A
 *    connection the peer closed is dropped from the pool, never reused;
 *  - the request carries the stored Content-Type (application/octet-stream
 *    when none was stored), User-Agent knock/VERSION and X-Knock-Endpoint,
 *    X-Knock-Event-Id, X-Knock-Delivery-Id, X-Knock-Attempt,
 *    X-Knock-Event-Type, X-Knock-Provider-Event-Id;
 *  - outcome (contract §7): 2xx handled; 408, 429, 5xx, 3xx (not followed),
 *    connection errors and timeouts ([worker] timeout, for connect, write
 *    and read) retry; any other 4xx is permanent → dead;
 *  - https verifies the peer against the system trust store and the host
 *    name, with SNI;
 *  - the response body is captured up to [worker] max_output.
 *
 * Host names are resolved with the blocking resolver when a new connection
 * is made (not per request); point handlers at addresses or local names.
 */

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knock-build.h"
#include "log.h"
#include "worker.h"

struct fwd_conn {
        struct evhttp_connection *evcon;
        char *key;
        bool busy;
        bool broken; /* closed by the peer or failed: free when idle */
};

static fwd_conn *conn_free(fwd_conn *c)
{
        if (!c)
                return NULL;
        if (c->evcon)
                evhttp_connection_free(c->evcon);
        free(c->key);
        free(c);
        return NULL;
}

void forward_pool_free(worker *w)
{
        for (size_t i = 0; i < w->n_conns; i++)
                conn_free(w->conns[i]);
        free(w->conns);
        w->conns = NULL;
        w->n_conns = 0;
        if (w->ssl_ctx) {
                SSL_CTX_free(w->ssl_ctx);
                w->ssl_ctx = NULL;
        }
}

/* Drops broken idle connections, compacting the pool. */
static void pool_sweep(worker *w)
{
        size_t k = 0;

        for (size_t i = 0; i < w->n_conns; i++) {
                fwd_conn *c = w->conns[i];

                if (c->broken && !c->busy)
                        conn_free(c);
                else
                        w->conns[k++] = c;
        }
        w->n_conns = k;
}

static void on_close(struct evhttp_connection *evcon, void *userdata)
{
        fwd_conn *c = userdata;

        c->broken = true;
}

static SSL_CTX *ssl_ctx(worker *w)
{
        SSL_CTX *ctx;

        if (w->ssl_ctx)
                return w->ssl_ctx;
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                return NULL;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
                SSL_CTX_free(ctx);
                return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        w->ssl_ctx = ctx;
        return ctx;
}

static int conn_new(
        worker *w, bool https, const char *host, int port, const char *key, fwd_conn **ret)
{
        struct event_base *base = w->d->base;
        struct timeval tv;
        fwd_conn *c, **nv;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->key = strdup(key);
        if (!c->key) {
                free(c);
                return -ENOMEM;
        }
        if (https) {
                struct bufferevent *bev;
                SSL_CTX *ctx = ssl_ctx(w);
                SSL *ssl;

                if (!ctx) {
                        conn_free(c);
                        return -EIO;
                }
                ssl = SSL_new(ctx);
                if (!ssl) {
                        conn_free(c);
                        return -ENOMEM;
                }
                SSL_set_tlsext_host_name(ssl, host);
                SSL_set1_host(ssl, host);
                bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
                if (!bev) {
                        SSL_free(ssl);
                        conn_free(c);
                        return -ENOMEM;
                }
                bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
                c->evcon = evhttp_connection_base_bufferevent_new(
                        base, NULL, bev, host, (unsigned short)port);
        } else
                c->evcon = evhttp_connection_base_new(base, NULL, host, (unsigned short)port);
        if (!c->evcon) {
                conn_free(c);
                return -ENOMEM;
        }
        tv.tv_sec = (time_t)(w->d->cfg->timeout_ms / 1000);
        tv.tv_usec = (suseconds_t)((w->d->cfg->timeout_ms % 1000) * 1000);
        evhttp_connection_set_timeout_tv(c->evcon, &tv);
        evhttp_connection_set_retries(c->evcon, 0);
        evhttp_connection_set_closecb(c->evcon, on_close, c);

        nv = realloc(w->conns, (w->n_conns + 1) * sizeof(*nv));
        if (!nv) {
                conn_free(c);
                return -ENOMEM;
        }
        w->conns = nv;
        w->conns[w->n_conns++] = c;
        *ret = c;
        return 0;
}

static int conn_get(worker *w, bool https, const char *host, int port, fwd_conn **ret)
{
        char key[512];
        size_t idle_other = SIZE_MAX;

        pool_sweep(w);
        snprintf(key, sizeof(key), "%s://%s:%d", https ? "https" : "http", host, port);
        for (size_t i = 0; i < w->n_conns; i++) {
                fwd_conn *c = w->conns[i];

                if (c->busy || c->broken)
                        continue;
                if (streq(c->key, key)) {
                        *ret = c;
                        return 0;
                }
                idle_other = i;
        }
        /* Bound the pool: an idle connection to another target (after a
         * reload changed the handler) makes room. */
        if (w->n_conns >= 2 * w->d->cfg->concurrency && idle_other != SIZE_MAX) {
                conn_free(w->conns[idle_other]);
                w->conns[idle_other] = w->conns[--w->n_conns];
        }
        return conn_new(w, https, host, port, key, ret);
}

static void job_http_done(job *j)
{
        if (j->conn) {
                j->conn->busy = false;
                j->conn = NULL;
        }
        j->req = NULL;
        job_complete(j);
}

static void on_error(enum evhttp_request_error err, void *userdata)
{
        job *j = userdata;
        const char *what;

        switch (err) {
        case EVREQ_HTTP_TIMEOUT:
                what = "timed out";
                j->outcome = EVENT_OUTCOME_TIMEOUT;
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
        case EVREQ_HTTP_REQUEST_CANCEL:
                what = "request cancelled";
                break;
        case EVREQ_HTTP_DATA_TOO_LONG:
                what = "response too long";
                break;
        default:
                what = "request failed";
        }
        free(j->http_error);
        j->http_error = strdup(what);
        if (j->conn)
                j->conn->broken = true;
}

static void on_response(struct evhttp_request *req, void *userdata)
{
        job *j = userdata;
        int code = req ? evhttp_request_get_response_code(req) : 0;

        if (!j->req)
                return; /* cancelled: forward_cancel completed the job */

        j->http_status = code;
        if (code == 0) {
                if (j->outcome != EVENT_OUTCOME_TIMEOUT)
                        j->outcome = EVENT_OUTCOME_TEMPFAIL;
                if (j->conn)
                        j->conn->broken = true;
                (void)asprintf(&j->error, "%s: %s", j->claim.handler,
                        j->http_error ?: "connection failed");
                job_http_done(j);
                return;
        }

        {
                struct evbuffer *in = evhttp_request_get_input_buffer(req);
                size_t len = evbuffer_get_length(in);
                size_t take = MIN(len, (size_t)j->w->d->cfg->max_output);
                unsigned char *p = take > 0 ? evbuffer_pullup(in, (ev_ssize_t)take) : NULL;

                if (p)
                        job_output(j, p, take);
                j->out_dropped += len - take;
        }

        if (code >= 200 && code < 300)
                j->outcome = EVENT_OUTCOME_SUCCESS;
        else if (code == 408 || code == 429 || code >= 500 || code < 400)
                j->outcome = EVENT_OUTCOME_TEMPFAIL;
        else
                j->outcome = EVENT_OUTCOME_PERMANENT;
        if (j->outcome != EVENT_OUTCOME_SUCCESS)
                (void)asprintf(&j->error, "HTTP %d%s", code,
                        j->outcome == EVENT_OUTCOME_PERMANENT ? " (permanent failure)" : "");
        job_http_done(j);
}

int forward_start(job *j)
{
        worker *w = j->w;
        knock_claim *c = &j->claim;
        struct evhttp_uri *uri;
        struct evkeyvalq *h;
        const char *scheme, *host, *path, *query;
        char hostport[300], attempt[24], *target = NULL;
        bool https;
        int port, r;

        uri = evhttp_uri_parse(c->handler);
        if (!uri)
                return -EINVAL;
        scheme = evhttp_uri_get_scheme(uri);
        host = evhttp_uri_get_host(uri);
        if (!scheme || !host || !host[0]) {
                evhttp_uri_free(uri);
                return -EINVAL;
        }
        https = strcaseeq(scheme, "https");
        port = evhttp_uri_get_port(uri);
        if (port < 0)
                port = https ? 443 : 80;
        path = evhttp_uri_get_path(uri);
        query = evhttp_uri_get_query(uri);
        if (asprintf(&target, "%s%s%s", path && path[0] ? path : "/", query ? "?" : "",
                    query ?: "") < 0) {
                evhttp_uri_free(uri);
                return -ENOMEM;
        }
        if (port == (https ? 443 : 80))
                snprintf(hostport, sizeof(hostport), "%s", host);
        else
                snprintf(hostport, sizeof(hostport), "%s:%d", host, port);

        r = conn_get(w, https, host, port, &j->conn);
        evhttp_uri_free(uri);
        if (r < 0) {
                free(target);
                return r;
        }

        j->req = evhttp_request_new(on_response, j);
        if (!j->req) {
                free(target);
                j->conn = NULL;
                return -ENOMEM;
        }
        evhttp_request_set_error_cb(j->req, on_error);
        snprintf(attempt, sizeof(attempt), "%lld", (long long)c->attempt);
        h = evhttp_request_get_output_headers(j->req);
        evhttp_add_header(h, "Host", hostport);
        evhttp_add_header(
                h, "Content-Type", c->content_type ? c->content_type : "application/octet-stream");
        evhttp_add_header(h, "User-Agent", "knock/" KNOCK_VERSION);
        evhttp_add_header(h, "X-Knock-Endpoint", w->d->name);
        evhttp_add_header(h, "X-Knock-Event-Id", c->id);
        if (c->delivery_id)
                evhttp_add_header(h, "X-Knock-Delivery-Id", c->delivery_id);
        evhttp_add_header(h, "X-Knock-Attempt", attempt);
        if (c->event_type)
                evhttp_add_header(h, "X-Knock-Event-Type", c->event_type);
        if (c->provider_event_id)
                evhttp_add_header(h, "X-Knock-Provider-Event-Id", c->provider_event_id);
        if (c->body_len > 0)
                evbuffer_add(evhttp_request_get_output_buffer(j->req), c->body, c->body_len);

        j->conn->busy = true;
        /* On failure libevent has freed the request already. */
        if (evhttp_make_request(j->conn->evcon, j->req, EVHTTP_REQ_POST, target) < 0) {
                j->req = NULL;
                j->conn->busy = false;
                j->conn->broken = true;
                j->conn = NULL;
                free(target);
                return -EIO;
        }
        free(target);
        return 0;
}

void forward_cancel(job *j)
{
        struct evhttp_request *req = j->req;

        if (!req)
                return;
        /* Clear first: callbacks that fire during the cancel see no request. */
        j->req = NULL;
        evhttp_cancel_request(req);
        if (j->conn)
                j->conn->broken = true;
        j->outcome = EVENT_OUTCOME_INTERRUPTED;
        free(j->error);
        j->error = strdup("interrupted: worker stopping");
        if (j->conn) {
                j->conn->busy = false;
                j->conn = NULL;
        }
        job_complete(j);
}

void forward_cleanup(job *j)
{
        if (j->req) {
                struct evhttp_request *req = j->req;

                j->req = NULL;
                evhttp_cancel_request(req);
        }
        if (j->conn) {
                j->conn->busy = false;
                j->conn->broken = true;
                j->conn = NULL;
        }
}
