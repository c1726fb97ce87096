/* SPDX-License-Identifier: MIT */
/*
 * probe — see probe.h. The order of the checks is the ingress's: the head
 * is framed and checked (a malformed head is refused before anything
 * else), then the path, the method and the announced size, then the body is
 * framed, then verified. Each step that ends the request fills the verdict
 * and returns, as the ingress answers and stops there.
 */
#define _GNU_SOURCE
#include "probe.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "httpreq.h"
#include "util.h"
#include "verify.h"

int request_admission(
        const knock_config *cfg, const char *method, const char *target, int64_t content_length)
{
        size_t plen = strcspn(target, "?#");

        if (plen != strlen(cfg->path) || strncmp(target, cfg->path, plen) != 0)
                return 404;
        /* Meta's subscription handshake is a GET; every webhook is a POST. */
        if (!streq(method, "POST") &&
                !(streq(method, "GET") && cfg->verify.provider == KNOCK_PROVIDER_META))
                return 405;
        if (content_length >= 0 && (uint64_t)content_length > cfg->max_body)
                return 413;
        return 0;
}

static _printf_(2, 3) void note(probe_result *r, const char *fmt, ...)
{
        va_list ap;

        if (r->n_notes >= PROBE_MAX_NOTES)
                return;
        va_start(ap, fmt);
        vsnprintf(r->notes[r->n_notes++], sizeof(r->notes[0]), fmt, ap);
        va_end(ap);
}

static _printf_(4, 5) void verdict(
        probe_result *r, probe_outcome o, int status, const char *fmt, ...)
{
        va_list ap;

        r->outcome = o;
        r->status = status;
        va_start(ap, fmt);
        vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
        va_end(ap);
}

/* The end of the head in buf: the offset just past its empty line, or 0. */
static size_t head_end(const char *buf, size_t len, const char *blank)
{
        const char *p = memmem(buf, len, blank, strlen(blank));

        return p ? (size_t)(p - buf) + strlen(blank) : 0;
}

/*
 * The bytes the ingress is to see: as given, or with the line endings a
 * person or a browser changed put back (PROBE_LF_HEAD, PROBE_BODY_LF).
 * Returns a malloc'd copy in *ret, or -ENOMEM.
 */
static int normalize(
        const char *raw, size_t len, unsigned flags, probe_result *r, char **ret, size_t *ret_len)
{
        size_t hend = head_end(raw, len, "\r\n\r\n"), o = 0, crlfs = 0;
        char *out = malloc(2 * len + 1);

        if (!out)
                return -ENOMEM;
        if ((flags & PROBE_LF_HEAD) && !memchr(raw, '\r', len) && head_end(raw, len, "\n\n")) {
                size_t lend = head_end(raw, len, "\n\n");

                for (size_t i = 0; i < lend; i++) {
                        if (raw[i] == '\n')
                                out[o++] = '\r';
                        out[o++] = raw[i];
                }
                memcpy(out + o, raw + lend, len - lend);
                o += len - lend;
                note(r, "the head had bare LF line endings: read as CRLF");
        } else if ((flags & PROBE_BODY_LF) && hend > 0) {
                memcpy(out, raw, hend);
                o = hend;
                for (size_t i = hend; i < len; i++) {
                        if (raw[i] == '\r' && i + 1 < len && raw[i + 1] == '\n') {
                                crlfs++;
                                continue;
                        }
                        out[o++] = raw[i];
                }
                if (crlfs > 0)
                        note(r,
                                "%zu CRLF line endings of the body read as LF (the form sends "
                                "CRLF)",
                                crlfs);
        } else {
                memcpy(out, raw, len);
                o = len;
        }
        out[o] = 0;
        *ret = out;
        *ret_len = o;
        return 0;
}

static void route(const knock_config *cfg, probe_result *r)
{
        r->handler = config_handler_for(cfg, r->event_type);
        if (r->event_type)
                for (size_t i = 0; i < cfg->n_routes; i++)
                        if (streq(cfg->routes[i].event_type, r->event_type))
                                r->route = cfg->routes[i].event_type;
}

static int verify(const knock_config *cfg, httpreq *req, int64_t now_ms, probe_result *r)
{
        knock_verify_result vr = {0};
        knock_request kr = {
                .method = req->method,
                .uri = req->target,
                .headers = req->headers,
                .n_headers = req->n_headers,
                .body = req->body ? req->body : (const unsigned char *)"",
                .body_len = req->body_len,
                .now_ms = now_ms,
        };
        int v;

        v = verify_request(&cfg->verify, &kr, &vr);
        r->provider_event_id = TAKE_PTR(vr.provider_event_id);
        r->event_type = TAKE_PTR(vr.event_type);
        if (v < 0) {
                verify_result_clear(&vr);
                return v;
        }
        if (v > 0)
                verdict(r, PROBE_REJECTED, 401, "%s",
                        vr.reason[0] ? vr.reason : "signature invalid");
        else if (vr.handshake)
                verdict(r, PROBE_HANDSHAKE, vr.handshake_status ? vr.handshake_status : 200, "%s",
                        "");
        else {
                verdict(r, PROBE_ACCEPTED, 200, "%s", "");
                route(cfg, r);
        }
        verify_result_clear(&vr);
        return 0;
}

int probe_request(const knock_config *cfg, const void *raw, size_t len, unsigned flags,
        int64_t now_ms, probe_result *ret)
{
        httpreq_limits lim = {HTTPREQ_MAX_HEAD_BYTES, HTTPREQ_MAX_HEADERS, cfg->max_body};
        _cleanup_free_ char *bytes = NULL;
        probe_result r = {0};
        size_t n, used;
        httpreq req;
        int status, v = 0;

        v = normalize(raw, len, flags, &r, &bytes, &n);
        if (v < 0)
                return v;
        httpreq_init(&req, &lim);
        used = httpreq_feed(&req, bytes, n);
        if (req.state == HTTPREQ_ERROR) {
                verdict(&r, PROBE_REFUSED, req.status, "%s", req.error);
                goto done;
        }
        if (req.state != HTTPREQ_HEAD_DONE) {
                verdict(&r, PROBE_INCOMPLETE, 0,
                        "the head ends without an empty line: the ingress would wait for the "
                        "rest and close the connection after header_timeout");
                goto done;
        }
        r.method = strdup(req.method);
        r.target = strdup(req.target);
        if (!r.method || !r.target) {
                v = -ENOMEM;
                goto done;
        }
        status = request_admission(cfg, req.method, req.target, req.content_length);
        if (status != 0) {
                verdict(&r, PROBE_REFUSED, status, "%s",
                        status == 404   ? "no such path (the endpoint's path is another)"
                        : status == 405 ? "method not allowed (only POST)"
                                        : "body too large (Content-Length over max_body)");
                goto done;
        }
        if (httpreq_start_body(&req) < 0) {
                v = -ENOMEM;
                goto done;
        }
        if (req.state == HTTPREQ_BODY)
                used += httpreq_feed(&req, bytes + used, n - used);
        if (req.state == HTTPREQ_ERROR) {
                verdict(&r, PROBE_REFUSED, req.status, "%s", req.error);
                goto done;
        }
        r.body_len = req.body_len;
        if (req.state != HTTPREQ_DONE) {
                verdict(&r, PROBE_INCOMPLETE, 0,
                        "the body ends after %zu of its %lld bytes: the ingress would wait for "
                        "the rest and close the connection after body_timeout",
                        req.body_len, (long long)req.content_length);
                goto done;
        }
        if (used < n)
                note(&r,
                        "%zu byte%s after the request %s not part of it (a trailing newline? "
                        "Content-Length is %lld)",
                        n - used, n - used == 1 ? "" : "s", n - used == 1 ? "is" : "are",
                        (long long)req.content_length);
        v = verify(cfg, &req, now_ms, &r);
done:
        httpreq_free(&req);
        if (v < 0) {
                probe_result_clear(&r);
                return v;
        }
        *ret = r;
        return 0;
}

void probe_result_clear(probe_result *r)
{
        free(r->method);
        free(r->target);
        free(r->provider_event_id);
        free(r->event_type);
        *r = (probe_result){0};
}

const char *probe_outcome_to_string(probe_outcome o)
{
        static const char *const names[] = {
                [PROBE_INCOMPLETE] = "incomplete",
                [PROBE_REFUSED] = "refused",
                [PROBE_REJECTED] = "rejected",
                [PROBE_HANDSHAKE] = "handshake",
                [PROBE_ACCEPTED] = "accepted",
        };
        return (size_t)o < ELEMENTSOF(names) ? names[o] : "unknown";
}

const char *probe_stored(const probe_result *r, bool duplicate)
{
        switch (r->outcome) {
        case PROBE_ACCEPTED:
                return duplicate ? "a delivery linked to the stored event, which is not changed"
                                 : "a delivery and a new event (received)";
        case PROBE_HANDSHAKE:
                return "a delivery, no event";
        case PROBE_REJECTED:
                return "a delivery with the reason and no event (within orphan_rate)";
        case PROBE_REFUSED:
                return r->status == 413
                               ? "a delivery with the reason and no body (within orphan_rate)"
                               : "nothing";
        default:
                return "nothing";
        }
}
