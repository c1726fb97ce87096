/* SPDX-License-Identifier: MIT */
/*
 * send — one completion-hook attempt over HTTP(S) (common/httpclient.c).
 *
 * Promises:
 *  - the request is a POST of the stored payload with Content-Type:
 *    application/json, User-Agent: knock/VERSION and the Standard Webhooks
 *    headers: webhook-id (the hook's id, the same on every attempt),
 *    webhook-timestamp (this attempt, seconds) and webhook-signature, one
 *    space-separated "v1,<base64>" entry per configured secret, each an
 *    HMAC-SHA256 of "id.timestamp.body";
 *  - an attempt ends within [hook] timeout, whatever the peer does: the
 *    client's deadline covers connecting, writing and reading together, so
 *    a silent peer and one that trickles alike. The status (0 without a response), the first
 *    HOOK_RESPONSE_MAX bytes of the body (the rest is read and dropped, so
 *    memory stays bounded) and Retry-After are kept for the caller;
 *  - redirects are never followed;
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

static void on_response(http_conn *conn, const http_response *r, void *userdata)
{
        hook_send *s = userdata;
        int code = r->status;

        s->conn = NULL;
        http_conn_release(&conn, false);
        s->status = code;
        if (code == 0) {
                s->timed_out = r->timed_out;
                if (r->timed_out)
                        set_error(s, "timed out after %llu ms",
                                  (unsigned long long)s->dl->d->cfg->hook_timeout_ms);
                else
                        set_error(s, "%s", r->error ?: "connection failed");
                send_complete(s);
                return;
        }
        /* The head of the body, for knockctl hook; the rest was read and dropped. */
        if (r->body_len > 0) {
                /* All of it, NUL bytes included: strndup() stopped at the
                 * first one, and the length bound with it read past the copy. */
                s->response = malloc(r->body_len + 1);
                if (s->response) {
                        memcpy(s->response, r->body, r->body_len);
                        s->response[r->body_len] = 0;
                }
                s->response_len = s->response ? r->body_len : 0;
        }
        if ((code == 429 || code == 503) && r->retry_after) {
                int64_t ms;

                if (hook_retry_after_ms(r->retry_after, now_ms(), &ms) >= 0)
                        s->retry_after_ms = ms;
        }
        if (hook_classify(code) != HOOK_DELIVERED)
                set_error(s, "HTTP %d%s", code,
                          hook_classify(code) == HOOK_PERMANENT ? " (permanent failure)"
                          : code < 400                           ? " (redirects are not followed)"
                                                                 : "");
        send_complete(s);
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
        _cleanup_free_ char *sig = NULL, *headers = NULL;
        char ts[24];
        int n, r;

        if (!t->url)
                return -ENOTCONN;
        s->started_at = now_ms();
        s->started_us = mono_us();
        s->retry_after_ms = -1;
        snprintf(ts, sizeof(ts), "%lld", (long long)(s->started_at / 1000));
        r = sign(s, ts, &sig);
        if (r < 0)
                return r;
        /* The id is knock's own (a UUID), the timestamp digits, the
         * signature base64: none can hold a CR or LF. */
        n = asprintf(&headers,
                     "Content-Type: application/json\r\nUser-Agent: knock/" KNOCK_VERSION
                     "\r\nwebhook-id: %s\r\nwebhook-timestamp: %s\r\nwebhook-signature: %s\r\n",
                     s->claim.id, ts, sig);
        if (n < 0) {
                headers = NULL;
                return -ENOMEM;
        }

        r = http_pool_get(&dl->pool, t, t->url, dl->d->cfg->hook_timeout_ms,
                          2 * dl->d->cfg->hook_concurrency, &s->conn);
        if (r < 0)
                return r;
        r = http_conn_post(s->conn, t->path, headers, (size_t)n, s->claim.payload,
                           strlen(s->claim.payload), HOOK_RESPONSE_MAX, on_response, s);
        if (r < 0) {
                http_conn_release(&s->conn, true);
                return r;
        }
        return 0;
}

void send_cancel(hook_send *s)
{
        if (!s->conn)
                return;
        http_conn_release(&s->conn, true); /* aborts the request: no callback */
        s->interrupted = true;
        set_error(s, "interrupted: knock-deliver stopping");
        send_complete(s);
}

void send_cleanup(hook_send *s)
{
        http_conn_release(&s->conn, true);
        free(s->error);
        free(s->response);
        s->error = s->response = NULL;
}
