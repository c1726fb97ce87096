/* SPDX-License-Identifier: MIT */
/*
 * httpclient — outbound HTTP(S) for the worker's http(s) handlers and the
 * deliverer's hooks; see httpclient.h for the promises.
 *
 * libevent sends one request at a time per evhttp_connection, so a pooled
 * connection is either busy (its owner's request is on it) or idle. The
 * close callback may run inside an evhttp callback, where freeing the
 * connection would pull it from under libevent: it only marks the
 * connection broken, and http_pool_get() (never called from an evhttp
 * callback) sweeps broken idle connections before it looks for one.
 */
#include "httpclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- the target ------------------------------------------------------------------- */

void http_target_clear(http_target *t)
{
        free(t->url);
        free(t->host);
        free(t->path);
        free(t->hostport);
        free(t->origin);
        *t = (http_target){};
}

/* "[::1]" → "::1"; a name or an IPv4 address as it is. */
static int host_unbracket(const char *host, char **ret)
{
        size_t len = host ? strlen(host) : 0;

        if (len == 0)
                return -EINVAL;
        if (host[0] == '[') {
                if (len < 3 || host[len - 1] != ']')
                        return -EINVAL;
                *ret = strndup(host + 1, len - 2);
        } else
                *ret = strdup(host);
        return *ret ? 0 : -ENOMEM;
}

int http_target_parse(const char *url, http_target *ret)
{
        struct evhttp_uri *uri = NULL;
        const char *scheme, *path, *query;
        _cleanup_free_ char *host = NULL;
        http_target t = {};
        unsigned char addr[16];
        int port, r = -EINVAL;

        uri = evhttp_uri_parse(url);
        if (!uri)
                return -EINVAL;
        scheme = evhttp_uri_get_scheme(uri);
        if (!scheme || (!strcaseeq(scheme, "http") && !strcaseeq(scheme, "https")))
                goto out;
        /* libevent keeps the brackets of an IPv6 literal; the resolver, the
         * certificate check and the Host header below each want it bare. */
        r = host_unbracket(evhttp_uri_get_host(uri), &host);
        if (r < 0)
                goto out;
        r = -EINVAL;
        t.https = strcaseeq(scheme, "https");
        port = evhttp_uri_get_port(uri);
        t.port = port > 0 ? port : t.https ? 443 : 80;
        path = evhttp_uri_get_path(uri);
        query = evhttp_uri_get_query(uri);
        t.ip_literal = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
        r = -ENOMEM;
        t.url = strdup(url);
        t.host = strdup(host);
        if (!t.url || !t.host)
                goto out;
        if (asprintf(&t.path, "%s%s%s", path && path[0] ? path : "/", query ? "?" : "",
                     query ?: "") < 0) {
                t.path = NULL;
                goto out;
        }
        if (asprintf(&t.origin, "%s://%s:%d", t.https ? "https" : "http", host, t.port) < 0) {
                t.origin = NULL;
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
        t = (http_target){};
        r = 0;
out:
        http_target_clear(&t);
        evhttp_uri_free(uri);
        return r;
}

/* ---- TLS -------------------------------------------------------------------------- */

int http_tls_context(const char *extra_ca_file, SSL_CTX **ret)
{
        SSL_CTX *ctx;

        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                return -ENOMEM;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        /* The system trust store; a missing store only means fewer roots. */
        (void)SSL_CTX_set_default_verify_paths(ctx);
        if (extra_ca_file && extra_ca_file[0] &&
            SSL_CTX_load_verify_locations(ctx, extra_ca_file, NULL) != 1) {
                SSL_CTX_free(ctx);
                return -ENOENT;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        *ret = ctx;
        return 0;
}

/* ---- the pool --------------------------------------------------------------------- */

void http_pool_init(http_pool *p, struct event_base *base, struct evdns_base *dns,
                    size_t max_headers_size)
{
        p->base = base;
        p->dns = dns;
        p->max_headers_size = max_headers_size;
}

static http_conn *conn_free(http_conn *c)
{
        if (!c)
                return NULL;
        if (c->evcon)
                evhttp_connection_free(c->evcon); /* frees the bufferevent and its SSL */
        free(c->key);
        free(c);
        return NULL;
}

void http_pool_clear(http_pool *p)
{
        for (size_t i = 0; i < p->n_conns; i++)
                conn_free(p->conns[i]);
        free(p->conns);
        p->conns = NULL;
        p->n_conns = 0;
        if (p->ssl_ctx) {
                SSL_CTX_free(p->ssl_ctx);
                p->ssl_ctx = NULL;
        }
}

/* Frees broken idle connections, compacting the pool. */
static void pool_sweep(http_pool *p)
{
        size_t k = 0;

        for (size_t i = 0; i < p->n_conns; i++) {
                http_conn *c = p->conns[i];

                if (c->broken && !c->busy)
                        conn_free(c);
                else
                        p->conns[k++] = c;
        }
        p->n_conns = k;
}

static void on_close(struct evhttp_connection *evcon, void *userdata)
{
        http_conn *c = userdata;

        c->broken = true;
}

/* The TLS side of a new https connection, as a bufferevent that owns ssl. */
static int tls_bufferevent(http_pool *p, const http_target *t, SSL **ret_ssl,
                           struct bufferevent **ret_bev)
{
        struct bufferevent *bev;
        SSL *ssl;
        int r;

        if (!p->ssl_ctx) {
                r = http_tls_context(NULL, &p->ssl_ctx);
                if (r < 0)
                        return -EIO;
        }
        ssl = SSL_new(p->ssl_ctx);
        if (!ssl)
                return -ENOMEM;
        /* SNI for names only (RFC 6066); SSL_set1_host() checks an IP literal
         * against the certificate's IP addresses instead. */
        if (!t->ip_literal)
                SSL_set_tlsext_host_name(ssl, t->host);
        if (SSL_set1_host(ssl, t->host) != 1) {
                SSL_free(ssl);
                return -EINVAL;
        }
        bev = bufferevent_openssl_socket_new(p->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (!bev) {
                SSL_free(ssl);
                return -ENOMEM;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        *ret_ssl = ssl;
        *ret_bev = bev;
        return 0;
}

static int conn_new(http_pool *p, const http_target *t, const char *key, uint64_t timeout_ms,
                    http_conn **ret)
{
        struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000 * 1000)};
        http_conn *c, **nv;
        int r;

        nv = realloc(p->conns, (p->n_conns + 1) * sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        p->conns = nv;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->key = strdup(key);
        if (!c->key) {
                free(c);
                return -ENOMEM;
        }
        if (t->https) {
                struct bufferevent *bev;

                r = tls_bufferevent(p, t, &c->ssl, &bev);
                if (r < 0) {
                        conn_free(c);
                        return r;
                }
                c->evcon = evhttp_connection_base_bufferevent_new(p->base, p->dns, bev, t->host,
                                                                  (unsigned short)t->port);
                if (!c->evcon)
                        bufferevent_free(bev);
        } else
                c->evcon = evhttp_connection_base_new(p->base, p->dns, t->host,
                                                      (unsigned short)t->port);
        if (!c->evcon) {
                conn_free(c);
                return -ENOMEM;
        }
        evhttp_connection_set_timeout_tv(c->evcon, &tv);
        evhttp_connection_set_retries(c->evcon, 0);
        if (p->max_headers_size > 0)
                evhttp_connection_set_max_headers_size(c->evcon, (ev_ssize_t)p->max_headers_size);
        evhttp_connection_set_closecb(c->evcon, on_close, c);
        p->conns[p->n_conns++] = c;
        *ret = c;
        return 0;
}

int http_pool_get(http_pool *p, const http_target *t, const char *key, uint64_t timeout_ms,
                  size_t max_conns, http_conn **ret)
{
        size_t idle_other = SIZE_MAX;

        pool_sweep(p);
        for (size_t i = 0; i < p->n_conns; i++) {
                http_conn *c = p->conns[i];

                if (c->busy || c->broken)
                        continue;
                if (streq(c->key, key)) {
                        *ret = c;
                        return 0;
                }
                idle_other = i;
        }
        /* Bound the pool: an idle connection to another key (a target from
         * before a reload) makes room. */
        if (p->n_conns >= max_conns && idle_other != SIZE_MAX) {
                conn_free(p->conns[idle_other]);
                p->conns[idle_other] = p->conns[--p->n_conns];
        }
        return conn_new(p, t, key, timeout_ms, ret);
}

/* ---- one request ------------------------------------------------------------------ */

int http_conn_send(http_conn *c, struct evhttp_request *req, enum evhttp_cmd_type cmd,
                   const char *path)
{
        c->busy = true;
        if (evhttp_make_request(c->evcon, req, cmd, path) < 0) {
                /* libevent has freed the request already. */
                c->busy = false;
                c->broken = true;
                return -EIO;
        }
        return 0;
}

void http_conn_release(http_conn **c, bool broken)
{
        if (!*c)
                return;
        if (broken)
                (*c)->broken = true;
        (*c)->busy = false;
        *c = NULL;
}

const char *http_request_error_string(enum evhttp_request_error err)
{
        switch (err) {
        case EVREQ_HTTP_TIMEOUT:
                return "timed out";
        case EVREQ_HTTP_EOF:
                return "connection closed before a response";
        case EVREQ_HTTP_INVALID_HEADER:
                return "invalid response header";
        case EVREQ_HTTP_BUFFER_ERROR:
                return "connection failed";
        case EVREQ_HTTP_REQUEST_CANCEL:
                return "request cancelled";
        case EVREQ_HTTP_DATA_TOO_LONG:
                return "response headers too long";
        default:
                return "request failed";
        }
}
