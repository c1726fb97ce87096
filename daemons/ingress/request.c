/* SPDX-License-Identifier: MIT */
/*
 * request — what a request to the public listener means; see request.h for
 * what it promises.
 *
 * The path of one webhook: conn.c reads the head and calls
 * request_on_head(), which answers what needs no body; conn.c reads the
 * body within the listener's budget and calls request_on_request(), which
 * verifies it, answers a rejection at once (storing it within the orphan
 * budget) and hands the rest to the writer thread, with the connection
 * waiting. When the writer's transaction committed, request_on_stored()
 * answers each item of the batch: 200 with the ids, the handshake's answer,
 * or 503 when the commit failed.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog-ids.h"
#include "escape.h"
#include "probe.h"
#include "request.h"
#include "verify.h"

/* ---- what is stored of a request ----------------------------------------------------- */

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

static size_t put_char(char *out, size_t at, char c)
{
        if (out)
                out[at] = c;
        return at + 1;
}

/* Headers as a JSON array of [name, value], credentials redacted: the
 * jansson-compatible text written directly, sized by a first pass (one
 * allocation, no JSON tree per request). */
static char *headers_json(ingress *in, const httpreq *req)
{
        char *out = NULL;
        size_t len = 0;

        for (int pass = 0; pass < 2; pass++) {
                size_t at = 0;

                if (pass == 1 && !(out = malloc(len + 1)))
                        return NULL;
                at = put_char(out, at, '[');
                for (size_t i = 0; i < req->n_headers; i++) {
                        const knock_header *h = &req->headers[i];
                        const char *v = config_header_is_credential(in->d.cfg, h->name)
                                                ? "[redacted]"
                                                : h->value;

                        if (i > 0)
                                at = put_char(out, at, ',');
                        at = put_char(out, at, '[');
                        at += json_quote_ascii(h->name, strlen(h->name), out ? out + at : NULL);
                        at = put_char(out, at, ',');
                        at += json_quote_ascii(v, strlen(v), out ? out + at : NULL);
                        at = put_char(out, at, ']');
                }
                len = put_char(out, at, ']');
        }
        out[len] = '\0';
        return out;
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

static ingest_item *item_new(ingest_conn *c, const httpreq *req)
{
        ingest_item *it = calloc(1, sizeof(*it));
        const char *ct;

        if (!it)
                return NULL;
        it->start_us = mono_us();
        it->received_at = now_ms();
        id_new("dlv", it->delivery_id);
        id_new("evt", it->event_id);
        snprintf(it->request_id, sizeof(it->request_id), "%s", c->request_id);
        it->method = strdup(req->method);
        it->uri = uri_for_storage(req->target);
        it->remote = strdup(c->peer);
        ct = httpreq_header(req, "Content-Type");
        it->content_type = ct ? strndup(ct, 255) : NULL;
        return it;
}

static void item_free(ingress *in, ingest_item *it)
{
        conn_budget_release(&in->srv, it->budget);
        ingest_item_free(it);
}

/* ---- rejections and the orphan budget ------------------------------------------------ */

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

/* The writer's queue: verified requests are at most one per connection,
 * rejected ones come through the orphan budget; this is the backstop. */
static bool writer_full(ingress *in)
{
        return writer_pending(&in->writer) >
               in->d.cfg->max_connections + in->d.cfg->orphan_burst + 1024;
}

/* The orphan budget: a token bucket of rows, orphan_rate with room for
 * orphan_burst. */
static bool orphan_allowed(ingress *in)
{
        const knock_config *cfg = in->d.cfg;
        int64_t now = (int64_t)(mono_us() / 1000);

        if (cfg->orphan_rate.n == 0)
                return false;
        if (in->orphan_refill_ms == 0) {
                in->orphan_tokens = (double)cfg->orphan_burst;
                in->orphan_refill_ms = now;
        }
        in->orphan_tokens += (double)(now - in->orphan_refill_ms) * (double)cfg->orphan_rate.n /
                             (double)cfg->orphan_rate.per_ms;
        in->orphan_refill_ms = now;
        if (in->orphan_tokens > (double)cfg->orphan_burst)
                in->orphan_tokens = (double)cfg->orphan_burst;
        if (in->orphan_tokens < 1.0)
                return false;
        in->orphan_tokens -= 1.0;
        return true;
}

/* A rejected delivery (401, 413) is evidence, kept within the orphan budget
 * and with at most orphan_body bytes of its body; the client already has
 * its answer. */
static void submit_orphan(ingress *in, ingest_item *it)
{
        uint64_t suppressed = 0;

        log_invalid(in, it);
        if (!orphan_allowed(in) || writer_full(in)) {
                in->stats.orphans_dropped++;
                if (log_ratelimit_ok(&in->rl_orphans, &suppressed))
                        log_struct(LOG_WARNING, MSGID_DELIVERY_INVALID,
                                   LOG_FIELDS(LF("KNOCK_DELIVERY_ID", it->delivery_id)),
                                   "Rejected deliveries arrive faster than orphan_rate: not "
                                   "storing them (%llu so far)",
                                   (unsigned long long)in->stats.orphans_dropped);
                item_free(in, it);
                return;
        }
        if (it->body_len > in->d.cfg->orphan_body) {
                unsigned char *b = NULL;

                it->body_len = (size_t)in->d.cfg->orphan_body;
                if (it->body_len == 0)
                        it->body = mfree(it->body);
                else if ((b = realloc(it->body, it->body_len)))
                        it->body = b;
                /* What is left is a few KiB: it leaves the listener's budget,
                 * unless the buffer could not shrink. */
                if (!it->body || b) {
                        conn_budget_release(&in->srv, it->budget);
                        it->budget = 0;
                }
        }
        it->conn = NULL;
        writer_submit(&in->writer, it);
}

/* ---- deciding ------------------------------------------------------------------------ */

/* The head is read: everything that needs no body is decided here, before
 * a byte of it is buffered. */
conn_verdict request_on_head(ingest_conn *c, httpreq *req, void *userdata)
{
        ingress *in = userdata;
        const knock_config *cfg = in->d.cfg;
        const char *rid_in = httpreq_header(req, "X-Request-ID");
        ingest_item *it;
        int status;

        if (rid_in && request_id_valid(rid_in))
                snprintf(c->request_id, sizeof(c->request_id), "%s", rid_in);
        else
                id_new("req", c->request_id);

        if (in->draining) {
                conn_error(c, 503, "Service Unavailable", "shutting down", NULL, false);
                return CONN_ANSWERED;
        }
        /* The same decision as knockctl probe's (probe.h). */
        status = request_admission(cfg, req->method, req->target, req->content_length);
        if (status == 0)
                return CONN_READ_BODY;
        if (status == 404) {
                in->stats.rejected_other++;
                conn_error(c, 404, "Not Found", "no such path", NULL, false);
                return CONN_ANSWERED;
        }
        if (status == 405) {
                in->stats.rejected_other++;
                conn_error(c, 405, "Method Not Allowed", "method not allowed", "Allow: POST\r\n",
                           false);
                return CONN_ANSWERED;
        }

        /* Recorded without its body, which is never read: the row says it
         * came and why it was refused. */
        in->stats.too_large++;
        conn_error(c, 413, "Payload Too Large", "body too large", NULL, false);
        it = item_new(c, req);
        if (!it)
                return CONN_ANSWERED;
        it->kind = INGEST_ORPHAN;
        it->http_status = 413;
        it->body_bytes = (size_t)req->content_length;
        it->headers_json = headers_json(in, req);
        if (asprintf(&it->verify_error, "body of %" PRId64 " bytes exceeds max_body %llu",
                     req->content_length, (unsigned long long)cfg->max_body) < 0)
                it->verify_error = NULL;
        submit_orphan(in, it);
        return CONN_ANSWERED;
}

/* A whole request: verify it, answer a rejection at once, hand the rest to
 * the writer; its answer waits for the commit. */
void request_on_request(ingest_conn *c, httpreq *req, void *userdata)
{
        ingress *in = userdata;
        const knock_config *cfg = in->d.cfg;
        knock_verify_result vr = {0};
        knock_request kr;
        ingest_item *it;
        int r;

        it = item_new(c, req);
        if (!it) {
                conn_error(c, 503, "Service Unavailable", "out of memory", NULL, false);
                return;
        }
        it->body_bytes = req->body_len;
        it->body_len = req->body_len;
        it->body = TAKE_PTR(req->body);
        it->budget = conn_take_budget(c);
        it->headers_json = headers_json(in, req);
        if (!it->body)
                it->body = malloc(1);
        if (!it->body) {
                item_free(in, it);
                conn_error(c, 503, "Service Unavailable", "out of memory", NULL, false);
                return;
        }

        kr = (knock_request){
                .method = req->method,
                .uri = req->target,
                .headers = req->headers,
                .n_headers = req->n_headers,
                .body = it->body,
                .body_len = it->body_len,
                .now_ms = it->received_at,
        };
        r = verify_request(&cfg->verify, &kr, &vr);
        it->provider_event_id = TAKE_PTR(vr.provider_event_id);
        it->event_type = TAKE_PTR(vr.event_type);
        if (r < 0) {
                log_error_errno(r, "Verification failed internally: %m");
                verify_result_clear(&vr);
                item_free(in, it);
                conn_error(c, 503, "Service Unavailable", "internal error", NULL, false);
                return;
        }
        if (r > 0) {
                it->kind = INGEST_ORPHAN;
                it->http_status = 401;
                it->signature_valid = false;
                it->verify_error = strdup(vr.reason[0] ? vr.reason : "signature invalid");
                verify_result_clear(&vr);
                in->stats.invalid++;
                conn_error(c, 401, "Unauthorized", it->verify_error ? it->verify_error
                                                                    : "signature invalid", NULL, false);
                submit_orphan(in, it);
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

        if (writer_full(in)) {
                in->stats.over_budget++;
                item_free(in, it);
                conn_error(c, 503, "Service Unavailable", "too many requests waiting for storage",
                           NULL, false);
                return;
        }
        /* Nothing is answered here: the reply waits for the commit. */
        it->conn = c;
        c->pending = it;
        writer_submit(&in->writer, it);
}

/* ---- answering ----------------------------------------------------------------------- */

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

/* Runs on the loop when the writer hands back a batch. */
void request_on_stored(evutil_socket_t fd, short what, void *userdata)
{
        ingress *in = userdata;
        ingest_item *list = writer_take_done(&in->writer), *next;

        for (ingest_item *it = list; it; it = next) {
                ingest_conn *c = it->conn;

                next = it->next;
                if (c)
                        c->pending = NULL;
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
                        if (c)
                                conn_error(c, 503, "Service Unavailable",
                                           "storage unavailable", NULL, false);
                } else if (it->kind == INGEST_EVENT) {
                        if (it->duplicate)
                                in->stats.duplicates++;
                        else
                                in->stats.accepted++;
                        if (c) {
                                char body[256];
                                int n = snprintf(body, sizeof(body),
                                                 "{\"delivery_id\":\"%s\",\"event_id\":\"%s\","
                                                 "\"duplicate\":%s}",
                                                 it->delivery_id, it->event_id,
                                                 it->duplicate ? "true" : "false");
                                conn_reply(c, 200, "OK", "application/json", body, (size_t)n, NULL,
                                           false);
                        }
                        log_stored(it);
                } else if (it->kind == INGEST_HANDSHAKE) {
                        const char *b = it->handshake_body ? it->handshake_body : "";

                        in->stats.handshakes++;
                        if (c && (it->handshake_status == 204 || !it->handshake_content_type))
                                /* e.g. Discord's webhook-event PING: no body at all. */
                                conn_reply(c, it->handshake_status,
                                           it->handshake_status == 204 ? "No Content" : "OK", NULL,
                                           NULL, 0, NULL, false);
                        else if (c)
                                conn_reply(c, it->handshake_status, "OK",
                                           it->handshake_content_type, b, strlen(b), NULL, false);
                }
                item_free(in, it);
        }
        request_finish_drain(in);
}

void request_drop_stored(ingress *in)
{
        for (ingest_item *it = writer_take_done(&in->writer), *next; it; it = next) {
                next = it->next;
                if (it->conn)
                        it->conn->pending = NULL;
                item_free(in, it);
        }
}

void request_finish_drain(ingress *in)
{
        if (in->draining && writer_pending(&in->writer) == 0)
                daemon_exit_loop(&in->d);
}
