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
 *  - connections are kept alive and pooled per target URL
 *    (common/httpclient.c); one request at a time per connection, so the
 *    pool holds at most [hook] concurrency busy connections. One the peer
 *    closed, or that failed, is never reused.
 */
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
        http_conn_release(&s->conn, false);
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
        if (err == EVREQ_HTTP_TIMEOUT)
                s->timed_out = true;
        what = http_request_error_string(err);
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
        const http_target *t = &dl->target;
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
        r = http_pool_get(&dl->pool, t, t->url, dl->d->cfg->hook_timeout_ms,
                          2 * dl->d->cfg->hook_concurrency, &s->conn);
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

        r = http_conn_send(s->conn, s->req, EVHTTP_REQ_POST, t->path);
        if (r < 0) {
                /* libevent has freed the request already. */
                s->req = NULL;
                s->conn = NULL;
                return r;
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
        http_conn_release(&s->conn, true);
        if (s->ev_deadline) {
                event_free(s->ev_deadline);
                s->ev_deadline = NULL;
        }
        free(s->error);
        free(s->response);
        s->error = s->response = NULL;
}
