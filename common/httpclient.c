/* SPDX-License-Identifier: MIT */
/*
 * httpclient — outbound HTTP(S) for the worker's http(s) handlers and the
 * deliverer's hooks; see httpclient.h for the promises.
 *
 * One request at a time per connection, so a pooled connection is either
 * busy (its owner's request is on it) or idle. A connection that fails or
 * that the peer closes has its socket closed at once (bufferevent_free() is
 * safe inside the bufferevent's own callbacks) and is marked broken; the
 * struct, which its owner may still hold, is freed by http_pool_get() once
 * its owner has given it back.
 */
#include "httpclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <ctype.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/uio.h>
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

/* ---- the response parser ---------------------------------------------------------- */

void http_parser_reset(http_parser *p, size_t max_head, size_t max_body)
{
        unsigned char *body = p->body;

        if (body && max_body != p->max_body) {
                free(body);
                body = NULL;
        }
        *p = (http_parser){
                .state = HP_STATUS,
                .max_head = max_head > 0 ? max_head : HTTP_MAX_HEAD_DEFAULT,
                .max_body = max_body,
                .body = body,
        };
}

void http_parser_free(http_parser *p)
{
        free(p->body);
        p->body = NULL;
}

static int parse_error(http_parser *p, const char *why)
{
        p->error = why;
        return -EBADMSG;
}

/* The next line of the head, without its end (CRLF or LF), pulled up into
 * one piece; NULL when it has not all arrived yet (*error set when it never
 * can within the head's bound). *consumed is what to drain after use. */
static const char *head_line(http_parser *p, struct evbuffer *in, size_t *len,
                             size_t *consumed, bool *error)
{
        struct evbuffer_ptr eol;
        size_t eol_len = 0;
        char *line;

        *error = false;
        eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
        if (eol.pos < 0) {
                if (p->head_bytes + evbuffer_get_length(in) > p->max_head)
                        *error = true;
                return NULL;
        }
        *len = (size_t)eol.pos;
        *consumed = *len + eol_len;
        p->head_bytes += *consumed;
        if (p->head_bytes > p->max_head) {
                *error = true;
                return NULL;
        }
        line = (char *)evbuffer_pullup(in, (ev_ssize_t)*consumed);
        return line;
}

/* "HTTP/1.x SSS[ reason]" */
static int parse_status(http_parser *p, const char *s, size_t len)
{
        if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') ||
            s[8] != ' ' || !isdigit((unsigned char)s[9]) || !isdigit((unsigned char)s[10]) ||
            !isdigit((unsigned char)s[11]) || (len > 12 && s[12] != ' '))
                return parse_error(p, "invalid response status line");
        p->http10 = s[7] == '0';
        p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
        if (p->status < 100)
                return parse_error(p, "invalid response status line");
        return 0;
}

static bool name_is(const char *name, size_t len, const char *want)
{
        return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* Whether the comma-separated list v (len bytes) holds token. */
static bool has_token(const char *v, size_t len, const char *token, bool last_only)
{
        size_t tl = strlen(token);
        bool found = false;

        while (len > 0) {
                const char *comma = memchr(v, ',', len);
                size_t n = comma ? (size_t)(comma - v) : len, a = 0, b = n;

                while (a < b && (v[a] == ' ' || v[a] == '\t'))
                        a++;
                while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
                        b--;
                found = b - a == tl && strncasecmp(v + a, token, tl) == 0;
                if (found && !last_only)
                        return true;
                if (!comma)
                        break;
                v = comma + 1;
                len -= n + 1;
        }
        return found;
}

static int parse_header(http_parser *p, const char *s, size_t len)
{
        const char *colon = memchr(s, ':', len), *v;
        size_t nlen, vlen;

        if (len > 0 && (s[0] == ' ' || s[0] == '\t'))
                return 0; /* an obsolete folded continuation: skipped with its header */
        if (!colon || colon == s)
                return parse_error(p, "invalid response header");
        nlen = (size_t)(colon - s);
        v = colon + 1;
        vlen = len - nlen - 1;
        while (vlen > 0 && (v[0] == ' ' || v[0] == '\t'))
                v++, vlen--;
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t' || v[vlen - 1] == '\r'))
                vlen--;

        if (name_is(s, nlen, "Content-Length")) {
                uint64_t n = 0;

                if (vlen == 0 || vlen > 18)
                        return parse_error(p, "invalid Content-Length");
                for (size_t i = 0; i < vlen; i++) {
                        if (!isdigit((unsigned char)v[i]))
                                return parse_error(p, "invalid Content-Length");
                        n = n * 10 + (uint64_t)(v[i] - '0');
                }
                if (p->has_length && n != p->remaining)
                        return parse_error(p, "conflicting Content-Length");
                p->has_length = true;
                p->remaining = n;
        } else if (name_is(s, nlen, "Transfer-Encoding")) {
                /* chunked last: chunked framing; anything else: to the end */
                p->chunked = has_token(v, vlen, "chunked", true);
                if (!p->chunked)
                        p->close = true;
        } else if (name_is(s, nlen, "Connection")) {
                if (has_token(v, vlen, "close", false))
                        p->close = true;
                if (has_token(v, vlen, "keep-alive", false))
                        p->keep_alive = true;
        } else if (name_is(s, nlen, "Retry-After")) {
                size_t n = MIN(vlen, sizeof(p->retry_after) - 1);

                memcpy(p->retry_after, v, n);
                p->retry_after[n] = 0;
                p->has_retry_after = true;
        }
        return 0;
}

/* The head is complete: where the body starts, if there is one. */
static int head_done(http_parser *p)
{
        if (p->status < 200) {
                if (p->status == 101)
                        return parse_error(p, "unexpected protocol switch");
                /* An interim response: the real one follows. */
                size_t max_head = p->max_head, head_bytes = p->head_bytes;

                http_parser_reset(p, max_head, p->max_body);
                p->head_bytes = head_bytes;
                return 0;
        }
        if (p->http10 && !p->keep_alive)
                p->close = true;
        if (p->status == 204 || p->status == 304)
                p->state = HP_DONE;
        else if (p->chunked) {
                if (p->has_length)
                        p->close = true; /* RFC 9112 6.3: both sent, chunked wins */
                p->has_length = false;
                p->state = HP_CHUNK_SIZE;
        } else if (p->has_length)
                p->state = p->remaining > 0 ? HP_BODY_LENGTH : HP_DONE;
        else {
                p->close = true;
                p->state = HP_BODY_EOF;
        }
        return 0;
}

/* Takes up to p->remaining bytes (all of them when to_end) of the body. */
static void body_take(http_parser *p, struct evbuffer *in, bool to_end)
{
        size_t avail = evbuffer_get_length(in);
        size_t n = to_end ? avail : (size_t)MIN((uint64_t)avail, p->remaining);
        size_t keep = MIN(n, p->max_body - p->body_len);

        if (keep > 0 && !p->body)
                p->body = malloc(p->max_body + 1);
        if (keep > 0 && p->body) {
                evbuffer_remove(in, p->body + p->body_len, keep);
                p->body_len += keep;
                p->body[p->body_len] = 0;
        } else
                keep = 0;
        evbuffer_drain(in, n - keep);
        p->body_dropped += n - keep;
        if (!to_end)
                p->remaining -= n;
}

int http_parser_feed(http_parser *p, struct evbuffer *in)
{
        for (;;) {
                const char *line;
                size_t len = 0, consumed = 0;
                bool error;
                int r = 0;

                switch (p->state) {
                case HP_STATUS:
                case HP_HEADERS:
                case HP_CHUNK_SIZE:
                case HP_CHUNK_END:
                case HP_TRAILERS:
                        /* A chunk's size line is bounded on its own; the
                         * trailers after the last one by what is left. */
                        if (p->state == HP_CHUNK_SIZE || p->state == HP_CHUNK_END)
                                p->head_bytes = 0;
                        line = head_line(p, in, &len, &consumed, &error);
                        if (!line) {
                                if (!error)
                                        return 0;
                                return parse_error(p, p->state == HP_CHUNK_SIZE ||
                                                                      p->state == HP_CHUNK_END
                                                              ? "invalid chunk"
                                                              : "response headers too long");
                        }
                        if (p->state == HP_STATUS) {
                                r = parse_status(p, line, len);
                                p->state = HP_HEADERS;
                        } else if (p->state == HP_HEADERS)
                                r = len == 0 ? head_done(p) : parse_header(p, line, len);
                        else if (p->state == HP_CHUNK_SIZE) {
                                uint64_t n = 0;
                                size_t i = 0;

                                for (; i < len && isxdigit((unsigned char)line[i]); i++) {
                                        if (i >= 15)
                                                return parse_error(p, "invalid chunk");
                                        n = n * 16 + (uint64_t)(isdigit((unsigned char)line[i])
                                                                        ? line[i] - '0'
                                                                        : (tolower((unsigned char)line[i]) - 'a' + 10));
                                }
                                if (i == 0 || (i < len && line[i] != ';' && line[i] != ' ' &&
                                               line[i] != '\t'))
                                        r = parse_error(p, "invalid chunk");
                                p->remaining = n;
                                p->state = n > 0 ? HP_CHUNK_DATA : HP_TRAILERS;
                        } else if (p->state == HP_CHUNK_END) {
                                if (len != 0)
                                        r = parse_error(p, "invalid chunk");
                                p->state = HP_CHUNK_SIZE;
                        } else if (len == 0)
                                p->state = HP_DONE; /* the end of the trailers */
                        evbuffer_drain(in, consumed);
                        if (r < 0)
                                return r;
                        break;
                case HP_BODY_LENGTH:
                case HP_CHUNK_DATA:
                        body_take(p, in, false);
                        if (p->remaining > 0)
                                return 0;
                        p->state = p->state == HP_CHUNK_DATA ? HP_CHUNK_END : HP_DONE;
                        break;
                case HP_BODY_EOF:
                        body_take(p, in, true);
                        return 0;
                case HP_DONE:
                        return 1;
                }
        }
}

int http_parser_eof(http_parser *p)
{
        if (p->state == HP_BODY_EOF) {
                p->state = HP_DONE;
                return 1;
        }
        if (p->state == HP_DONE)
                return 1;
        p->error = p->state == HP_STATUS && p->head_bytes == 0
                           ? "connection closed before a response"
                           : "connection closed in the middle of the response";
        return -EPIPE;
}

/* ---- the pool --------------------------------------------------------------------- */

void http_pool_init(http_pool *p, struct event_base *base, struct evdns_base *dns,
                    size_t max_headers_size)
{
        p->base = base;
        p->dns = dns;
        p->max_headers_size = max_headers_size;
}

/* Closes the socket now; the struct lives until the pool frees it. */
static void conn_close(http_conn *c)
{
        c->broken = true;
        c->connected = false;
        if (c->bev) {
                bufferevent_free(c->bev); /* and its SSL; safe inside its callbacks */
                c->bev = NULL;
                c->ssl = NULL;
        }
}

static http_conn *conn_free(http_conn *c)
{
        if (!c)
                return NULL;
        conn_close(c);
        if (c->ev_timer)
                event_free(c->ev_timer);
        http_parser_free(&c->parser);
        free(c->key);
        free(c->hostport);
        free(c->error);
        free(c->head);
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

static void conn_error(http_conn *c, const char *fmt, ...) _printf_(2, 3);
static void conn_error(http_conn *c, const char *fmt, ...)
{
        va_list ap;
        char *e;

        if (c->error)
                return; /* the first reason is the real one */
        va_start(ap, fmt);
        if (vasprintf(&e, fmt, ap) < 0)
                e = NULL;
        va_end(ap);
        c->error = e;
}

/* Why a TLS connection failed, in the verifier's words when it refused. */
static void tls_error(http_conn *c, const char *what)
{
        unsigned long e = c->bev ? bufferevent_get_openssl_error(c->bev) : 0;
        long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
        char buf[256];

        if (v != X509_V_OK)
                conn_error(c, "TLS: certificate verify failed: %s (%s)",
                           X509_verify_cert_error_string(v), what);
        else if (e != 0) {
                ERR_error_string_n(e, buf, sizeof(buf));
                conn_error(c, "TLS: %s (%s)", buf, what);
        }
}

/* The request is over: hand the response (or the failure) to its owner. */
static void request_end(http_conn *c, const http_response *r)
{
        http_done_fn done = c->done;
        void *userdata = c->userdata;

        evtimer_del(c->ev_timer);
        c->in_request = false;
        c->fail_pending = false;
        c->done = NULL;
        c->userdata = NULL;
        if (r->status == 0 || c->parser.close || !c->bev ||
            evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 ||
            evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
                conn_close(c);
        if (done)
                done(c, r, userdata);
}

static void request_fail(http_conn *c, const char *why, bool timed_out)
{
        http_response r = {.status = 0, .timed_out = timed_out, .error = c->error ?: why};

        if (!c->in_request) {
                conn_close(c);
                return;
        }
        if (!c->error && c->ssl)
                tls_error(c, why);
        if (c->error)
                r.error = c->error;
        request_end(c, &r);
}

static void request_complete(http_conn *c)
{
        http_parser *p = &c->parser;
        http_response r = {
                .status = p->status,
                .retry_after = p->has_retry_after ? p->retry_after : NULL,
                .body = p->body_len > 0 ? p->body : NULL,
                .body_len = p->body_len,
                .body_dropped = p->body_dropped,
        };

        request_end(c, &r);
}

static void on_read(struct bufferevent *bev, void *userdata)
{
        http_conn *c = userdata;
        int r;

        if (!c->in_request) {
                /* Nothing was asked: a peer talking out of turn is not reused. */
                conn_close(c);
                return;
        }
        r = http_parser_feed(&c->parser, bufferevent_get_input(bev));
        if (r < 0)
                request_fail(c, c->parser.error, false);
        else if (r > 0)
                request_complete(c);
}

static void on_event(struct bufferevent *bev, short what, void *userdata)
{
        http_conn *c = userdata;

        if (what & BEV_EVENT_CONNECTED) {
                c->connected = true;
                return;
        }
        if (what & BEV_EVENT_EOF) {
                if (c->in_request) {
                        /* What arrived with the close is read first. */
                        int r = http_parser_feed(&c->parser, bufferevent_get_input(bev));

                        if (r == 0)
                                r = http_parser_eof(&c->parser);
                        if (r > 0) {
                                c->parser.close = true;
                                request_complete(c);
                        } else
                                request_fail(c, c->parser.error, false);
                } else
                        conn_close(c);
                return;
        }
        if (what & BEV_EVENT_ERROR) {
                int dns = bufferevent_socket_get_dns_error(bev);
                int e = EVUTIL_SOCKET_ERROR();

                if (dns != 0)
                        conn_error(c, "cannot resolve host: %s", evutil_gai_strerror(dns));
                else if (!c->ssl && e != 0)
                        conn_error(c, "connection failed: %s", strerror(e));
                request_fail(c, "connection failed", false);
                return;
        }
        if (what & BEV_EVENT_TIMEOUT)
                request_fail(c, "timed out", true);
}

static void on_timer(evutil_socket_t fd, short what, void *userdata)
{
        http_conn *c = userdata;

        if (!c->in_request)
                return;
        if (c->fail_pending)
                request_fail(c, "connection failed", false);
        else
                request_fail(c, "timed out", true);
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
        http_conn *c, **nv;
        int r;

        nv = realloc(p->conns, (p->n_conns + 1) * sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        p->conns = nv;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->pool = p;
        c->timeout_ms = timeout_ms;
        c->key = strdup(key);
        c->hostport = strdup(t->hostport);
        c->ev_timer = evtimer_new(p->base, on_timer, c);
        if (!c->key || !c->hostport || !c->ev_timer) {
                conn_free(c);
                return -ENOMEM;
        }
        http_parser_reset(&c->parser, p->max_headers_size, 0);
        if (t->https) {
                r = tls_bufferevent(p, t, &c->ssl, &c->bev);
                if (r < 0) {
                        conn_free(c);
                        return r;
                }
        } else {
                c->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
                if (!c->bev) {
                        conn_free(c);
                        return -ENOMEM;
                }
        }
        bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
        /* Read for the whole life of the connection: a response, or the
         * peer closing an idle one, is seen without re-registering. */
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        p->conns[p->n_conns++] = c;
        *ret = c;
        /* May fail at once (a name that does not resolve, with the blocking
         * resolver): on_event has recorded why, and the request reports it. */
        if (bufferevent_socket_connect_hostname(c->bev, p->dns, AF_UNSPEC, t->host, t->port) <
            0) {
                conn_error(c, "connection failed");
                conn_close(c);
        }
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

int http_conn_post(http_conn *c, const char *path, const char *headers, size_t headers_len,
                   const void *body, size_t body_len, size_t max_body, http_done_fn done,
                   void *userdata)
{
        struct timeval tv = {(time_t)(c->timeout_ms / 1000),
                             (suseconds_t)(c->timeout_ms % 1000 * 1000)};
        size_t need = strlen(path) + strlen(c->hostport) + headers_len + 96;
        struct evbuffer *out;
        size_t head_len, sent = 0;
        int n;

        if (need > c->head_cap) {
                char *nh = realloc(c->head, need);

                if (!nh)
                        return -ENOMEM;
                c->head = nh;
                c->head_cap = need;
        }
        n = snprintf(c->head, c->head_cap, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n",
                     path, c->hostport, body_len);
        if (n < 0 || (size_t)n + headers_len + 3 > c->head_cap)
                return -ENOMEM;
        head_len = (size_t)n;
        memcpy(c->head + head_len, headers, headers_len);
        head_len += headers_len;
        memcpy(c->head + head_len, "\r\n", 2);
        head_len += 2;

        c->busy = true;
        c->in_request = true;
        c->done = done;
        c->userdata = userdata;
        http_parser_reset(&c->parser, c->pool->max_headers_size, max_body);
        if (!c->bev || c->broken) {
                /* Reported from the loop, as every other ending is. */
                c->fail_pending = true;
                event_active(c->ev_timer, EV_TIMEOUT, 0);
                return 0;
        }
        evtimer_add(c->ev_timer, &tv);

        out = bufferevent_get_output(c->bev);
        /* A plain connection with nothing queued takes the request straight
         * away, almost always whole: no write event to register and remove. */
        if (!c->ssl && c->connected && evbuffer_get_length(out) == 0) {
                struct iovec iov[2] = {{c->head, head_len}, {(void *)body, body_len}};
                struct msghdr msg = {.msg_iov = iov, .msg_iovlen = body_len > 0 ? 2 : 1};
                ssize_t w = sendmsg(bufferevent_getfd(c->bev), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

                /* Short or failed: the bufferevent sends the rest, or meets
                 * the error again and reports it. */
                sent = w > 0 ? (size_t)w : 0;
        }
        if (sent < head_len)
                evbuffer_add(out, c->head + sent, head_len - sent);
        if (sent < head_len + body_len) {
                size_t from = sent > head_len ? sent - head_len : 0;

                evbuffer_add(out, (const char *)body + from, body_len - from);
        }
        return 0;
}

void http_conn_abort(http_conn *c)
{
        if (!c)
                return;
        evtimer_del(c->ev_timer);
        c->in_request = false;
        c->fail_pending = false;
        c->done = NULL;
        c->userdata = NULL;
        conn_close(c);
}

void http_conn_release(http_conn **c, bool broken)
{
        if (!*c)
                return;
        if (broken || (*c)->in_request)
                http_conn_abort(*c);
        (*c)->busy = false;
        *c = NULL;
}
