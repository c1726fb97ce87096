/* SPDX-License-Identifier: MIT */
/*
 * console-trace — the console's pages about one thing: an event's trace
 * (every delivery, attempt, hook and hook attempt on one timeline), one
 * delivery, and the probe (the ingress's verdict on a pasted request,
 * storing nothing). Rendered on the console's thread.
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console-internal.h"
#include "escape.h"

/* ---- one event's trace ------------------------------------------------------------------------ */

static void headers_table(struct evbuffer *b, db_stmt *st, int col)
{
        const char *text = col_text(st, col);
        json_t *doc = text ? json_loadb(text, (size_t)stmt_col_bytes(st, col), 0, NULL)
                           : NULL;
        size_t i;
        json_t *h;

        if (!json_is_array(doc)) {
                evbuffer_add_printf(b, "<pre class=\"headers\">");
                html_col(b, st, col);
                evbuffer_add_printf(b, "</pre>");
                json_decref(doc);
                return;
        }
        evbuffer_add_printf(b, "<table class=\"headers\"><tbody>");
        json_array_foreach(doc, i, h)
        {
                const char *name = json_string_value(json_array_get(h, 0));
                json_t *v = json_array_get(h, 1);

                evbuffer_add_printf(b, "<tr><th>");
                html_text(b, name);
                evbuffer_add_printf(b, "</th><td>");
                if (json_is_string(v))
                        html_textn(b, json_string_value(v), json_string_length(v), 0);
                evbuffer_add_printf(b, "</td></tr>");
        }
        evbuffer_add_printf(b, "</tbody></table>");
        json_decref(doc);
}

static void delivery_card(struct evbuffer *b, console_job *j, db_stmt *d)
{
        bool valid = col_i64(d, CQ_DL_SIGNATURE_VALID);
        int64_t stored = col_i64(d, CQ_DL_BODY_STORED), bytes = col_i64(d, CQ_DL_BODY_BYTES);

        evbuffer_add_printf(b, "<section class=\"card delivery\" id=\"");
        html_col(b, d, CQ_DL_ID);
        evbuffer_add_printf(b, "\"><h3>Delivery <code>");
        html_col(b, d, CQ_DL_ID);
        evbuffer_add_printf(b, "</code> ");
        html_status(b, col_i64(d, CQ_DL_HANDSHAKE) ? "handshake"
                       : col_i64(d, CQ_DL_DUPLICATE) ? "duplicate"
                       : valid                       ? "verified"
                                                     : "rejected");
        evbuffer_add_printf(b, "</h3><dl>");
        dd_time(b, "received", d, CQ_DL_RECEIVED_AT, j->now);
        dd_col(b, "answered", d, CQ_DL_HTTP_STATUS);
        dt(b, "verification");
        if (valid)
                evbuffer_add_printf(b, "signature valid");
        else
                html_col(b, d, CQ_DL_VERIFY_ERROR);
        dd_end(b);
        dt(b, "event");
        event_link(b, d, CQ_DL_EVENT_ID);
        dd_end(b);
        dd_col(b, "provider id", d, CQ_DL_PROVIDER_ID);
        dd_col(b, "type", d, CQ_DL_TYPE);
        dd_col(b, "request id", d, CQ_DL_REQUEST_ID);
        dt(b, "request");
        html_col(b, d, CQ_DL_METHOD);
        evbuffer_add_printf(b, " ");
        html_col(b, d, CQ_DL_URI);
        dd_end(b);
        dd_col(b, "from", d, CQ_DL_REMOTE);
        dd_col(b, "content type", d, CQ_DL_CONTENT_TYPE);
        dt(b, "body");
        html_bytes(b, bytes);
        if (stored != bytes) {
                evbuffer_add_printf(b, " (");
                html_bytes(b, stored);
                evbuffer_add_printf(b, " stored)");
        }
        dd_end(b);
        evbuffer_add_printf(b, "</dl><h4>Headers</h4>");
        headers_table(b, d, CQ_DL_HEADERS);
        evbuffer_add_printf(b, "<h4>Body%s</h4><pre class=\"body\">",
                            stored > CQ_BODY_PREVIEW ? ", the first 4096 bytes" : "");
        html_textn(b, stmt_col_blob(d, CQ_DL_BODY_PREVIEW),
                   (size_t)stmt_col_bytes(d, CQ_DL_BODY_PREVIEW), ESCAPE_KEEP_NEWLINE);
        evbuffer_add_printf(b, "</pre>");
        html_cli(b, j, "delivery", col_text(d, CQ_DL_ID), "--body", NULL);
        evbuffer_add_printf(b, "</section>\n");
}

static void attempt_card(struct evbuffer *b, console_job *j, db_stmt *a)
{
        evbuffer_add_printf(b, "<section class=\"card attempt\" id=\"");
        html_col(b, a, CQ_AT_ID);
        evbuffer_add_printf(b, "\"><h3>Attempt %lld ", (long long)col_i64(a, CQ_AT_ATTEMPT));
        html_status(b, col_null(a, CQ_AT_OUTCOME) ? "running" : col_text(a, CQ_AT_OUTCOME));
        evbuffer_add_printf(b, "</h3><dl>");
        dd_col(b, "handler", a, CQ_AT_HANDLER);
        dd_col(b, "worker", a, CQ_AT_WORKER);
        dd_time(b, "started", a, CQ_AT_STARTED_AT, j->now);
        dd_time(b, "ended", a, CQ_AT_ENDED_AT, j->now);
        if (!col_null(a, CQ_AT_ENDED_AT)) {
                dt(b, "duration");
                html_duration(b, col_i64(a, CQ_AT_ENDED_AT) - col_i64(a, CQ_AT_STARTED_AT));
                dd_end(b);
        }
        if (!col_null(a, CQ_AT_EXIT_CODE))
                dd_col(b, "exit code", a, CQ_AT_EXIT_CODE);
        if (!col_null(a, CQ_AT_SIGNAL))
                dd_col(b, "signal", a, CQ_AT_SIGNAL);
        if (!col_null(a, CQ_AT_HTTP_STATUS))
                dd_col(b, "HTTP status", a, CQ_AT_HTTP_STATUS);
        if (!col_null(a, CQ_AT_ERROR))
                dd_col(b, "error", a, CQ_AT_ERROR);
        dd_col(b, "delivery", a, CQ_AT_DELIVERY_ID);
        evbuffer_add_printf(b, "</dl>");
        if (!col_null(a, CQ_AT_OUTPUT)) {
                evbuffer_add_printf(b, "<h4>Output%s</h4><pre class=\"output\">",
                                    col_i64(a, CQ_AT_OUTPUT_BYTES) > CQ_OUTPUT_PREVIEW
                                            ? ", the beginning"
                                            : "");
                html_textn(b, col_text(a, CQ_AT_OUTPUT),
                           (size_t)stmt_col_bytes(a, CQ_AT_OUTPUT), ESCAPE_KEEP_NEWLINE);
                evbuffer_add_printf(b, "</pre>");
        }
        evbuffer_add_printf(b, "</section>\n");
}

static void hook_card(struct evbuffer *b, console_job *j, db_stmt *h)
{
        evbuffer_add_printf(b, "<section class=\"card hook\" id=\"");
        html_col(b, h, CQ_HK_ID);
        evbuffer_add_printf(b, "\"><h3>Hook <code>");
        html_col(b, h, CQ_HK_ID);
        evbuffer_add_printf(b, "</code> ");
        html_status(b, col_text(h, CQ_HK_STATE));
        evbuffer_add_printf(b, "</h3><dl>");
        dd_col(b, "type", h, CQ_HK_TYPE);
        dd_col(b, "attempts", h, CQ_HK_ATTEMPTS);
        dd_time(b, "created", h, CQ_HK_CREATED_AT, j->now);
        dd_time(b, "last attempt", h, CQ_HK_LAST_ATTEMPT_AT, j->now);
        dd_col(b, "last status", h, CQ_HK_LAST_STATUS);
        dd_col(b, "last error", h, CQ_HK_LAST_ERROR);
        dd_time(b, "next attempt", h, CQ_HK_NEXT_ATTEMPT_AT, j->now);
        dd_time(b, "delivered", h, CQ_HK_DELIVERED_AT, j->now);
        evbuffer_add_printf(b, "</dl>");
        if (col_text(h, CQ_HK_STATE) && !streq(col_text(h, CQ_HK_STATE), "pending"))
                html_cli(b, j, "redeliver-hook", col_text(h, CQ_HK_ID), NULL);
        evbuffer_add_printf(b, "</section>\n");
}

static void event_summary(struct evbuffer *b, console_job *j, db_stmt *e)
{
        const char *status = col_text(e, CQ_EV_STATUS), *id = col_text(e, CQ_EV_ID);

        evbuffer_add_printf(b, "<section class=\"card event\"><h2><code>");
        html_col(b, e, CQ_EV_ID);
        evbuffer_add_printf(b, "</code> ");
        html_status(b, status);
        evbuffer_add_printf(b, "</h2><dl>");
        dd_col(b, "provider id", e, CQ_EV_PROVIDER_ID);
        dd_col(b, "type", e, CQ_EV_TYPE);
        dd_col(b, "attempts", e, CQ_EV_ATTEMPTS);
        dd_time(b, "received", e, CQ_EV_RECEIVED_AT, j->now);
        dd_time(b, "updated", e, CQ_EV_UPDATED_AT, j->now);
        dd_time(b, "next attempt", e, CQ_EV_NEXT_ATTEMPT_AT, j->now);
        dd_time(b, "finished", e, CQ_EV_FINISHED_AT, j->now);
        dd_col(b, "status reason", e, CQ_EV_STATUS_REASON);
        dd_col(b, "last error", e, CQ_EV_LAST_ERROR);
        dd_col(b, "deliveries", e, CQ_EV_DELIVERIES);
        dd_col(b, "body from delivery", e, CQ_EV_DELIVERY_ID);
        if (!col_null(e, CQ_EV_CLAIMED_BY))
                dd_col(b, "claimed by", e, CQ_EV_CLAIMED_BY);
        evbuffer_add_printf(b, "</dl>");
        html_cli(b, j, "event", id, NULL);
        if (status && (streq(status, "failed") || streq(status, "dead") || streq(status, "ignored")))
                html_cli(b, j, "requeue", id, NULL);
        if (status && streq(status, "handled"))
                html_cli(b, j, "replay", id, NULL);
        if (status && (streq(status, "received") || streq(status, "failed") || streq(status, "dead")))
                html_cli(b, j, "ignore", id, NULL);
        evbuffer_add_printf(b, "</section>\n");
}

static void timeline(struct evbuffer *b, console_job *j, knock_store *st, const char *id,
                     int64_t received_at)
{
        _cleanup_stmt_ db_stmt *t = NULL;
        int r, rc;

        evbuffer_add_printf(b, "<section id=\"timeline\"><h2>Timeline</h2>");
        r = cq_timeline(st, id, &t);
        if (r < 0) {
                html_error(b, "timeline", r, st);
                evbuffer_add_printf(b, "</section>\n");
                return;
        }
        evbuffer_add_printf(b, "<table class=\"timeline\"><thead><tr><th>at</th><th>after "
                               "receipt</th><th>what</th><th></th><th>detail</th><th>took</th>"
                               "</tr></thead><tbody>\n");
        while ((rc = stmt_step(t)) > 0) {
                const char *kind = col_text(t, CQ_TL_KIND);

                evbuffer_add_printf(b, "<tr class=\"tl-%s\"><td>", kind ? kind : "other");
                html_time(b, col_i64(t, CQ_TL_AT), j->now);
                evbuffer_add_printf(b, "</td><td class=\"num\">+");
                html_duration(b, col_i64(t, CQ_TL_AT) - received_at);
                evbuffer_add_printf(b, "</td><td><a href=\"#");
                html_col(b, t, CQ_TL_ID);
                evbuffer_add_printf(b, "\">");
                html_text(b, kind);
                evbuffer_add_printf(b, "</a></td><td>");
                if (stmt_col_type(t, CQ_TL_WHAT) == DB_TEXT)
                        html_status(b, col_text(t, CQ_TL_WHAT));
                else
                        html_col(b, t, CQ_TL_WHAT);
                evbuffer_add_printf(b, "</td><td>");
                html_col(b, t, CQ_TL_DETAIL);
                evbuffer_add_printf(b, "</td><td class=\"num\">");
                if (!col_null(t, CQ_TL_DURATION_MS))
                        html_duration(b, col_i64(t, CQ_TL_DURATION_MS));
                evbuffer_add_printf(b, "</td></tr>\n");
        }
        evbuffer_add_printf(b, "</tbody></table>");
        if (rc < 0)
                html_error(b, "timeline", rc, st);
        evbuffer_add_printf(b, "</section>\n");
}

typedef int (*rows_query)(knock_store *s, const char *event_id, db_stmt **ret);

static void section_rows(struct evbuffer *b, console_job *j, knock_store *st, const char *id,
                         const char *title, rows_query q,
                         void (*card)(struct evbuffer *, console_job *, db_stmt *))
{
        _cleanup_stmt_ db_stmt *s = NULL;
        int r, rc, n = 0;

        evbuffer_add_printf(b, "<section class=\"group\"><h2>%s</h2>\n", title);
        r = q(st, id, &s);
        if (r < 0) {
                html_error(b, title, r, st);
                evbuffer_add_printf(b, "</section>\n");
                return;
        }
        while ((rc = stmt_step(s)) > 0) {
                card(b, j, s);
                n++;
        }
        if (rc < 0)
                html_error(b, title, rc, st);
        else if (n == 0)
                evbuffer_add_printf(b, "<p class=\"empty\">None.</p>\n");
        evbuffer_add_printf(b, "</section>\n");
}

static void hook_attempt_row(struct evbuffer *b, console_job *j, db_stmt *h)
{
        evbuffer_add_printf(b, "<section class=\"card hook-attempt\" id=\"");
        html_col(b, h, CQ_HA_ID);
        evbuffer_add_printf(b, "\"><h3>Hook attempt for <a href=\"#");
        html_col(b, h, CQ_HA_HOOK_ID);
        evbuffer_add_printf(b, "\"><code>");
        html_col(b, h, CQ_HA_HOOK_ID);
        evbuffer_add_printf(b, "</code></a></h3><dl>");
        dd_time(b, "at", h, CQ_HA_AT, j->now);
        dt(b, "status");
        if (col_i64(h, CQ_HA_STATUS) == 0)
                evbuffer_add_printf(b, "no response");
        else
                html_col(b, h, CQ_HA_STATUS);
        dd_end(b);
        dt(b, "took");
        html_duration(b, col_i64(h, CQ_HA_DURATION_MS));
        dd_end(b);
        if (!col_null(h, CQ_HA_ERROR))
                dd_col(b, "error", h, CQ_HA_ERROR);
        evbuffer_add_printf(b, "</dl>");
        if (!col_null(h, CQ_HA_RESPONSE)) {
                evbuffer_add_printf(b, "<h4>Response</h4><pre class=\"output\">");
                html_textn(b, col_text(h, CQ_HA_RESPONSE),
                           (size_t)stmt_col_bytes(h, CQ_HA_RESPONSE), ESCAPE_KEEP_NEWLINE);
                evbuffer_add_printf(b, "</pre>");
        }
        evbuffer_add_printf(b, "</section>\n");
}

void page_event(console_job *j, knock_store *st, struct evbuffer *b)
{
        _cleanup_stmt_ db_stmt *e = NULL;
        _cleanup_free_ char *id = NULL;
        int64_t received_at;
        int r, rc;

        html_head(b, j, "Event", 0);
        if (!j->p.id) {
                j->code = 400;
                evbuffer_add_printf(b, "<p class=\"error\">Which event? <a href=\"/events\">"
                                       "Pick one</a>.</p>\n");
                html_foot(b, j);
                return;
        }
        if (no_store(b, st)) {
                html_foot(b, j);
                return;
        }
        r = cq_event(st, j->p.id, &e);
        rc = r < 0 ? r : stmt_step(e);
        if (rc <= 0) {
                j->code = rc == 0 ? 404 : 500;
                if (rc == 0) {
                        evbuffer_add_printf(b, "<p class=\"error\">No event ");
                        html_text(b, j->p.id);
                        evbuffer_add_printf(b, " (by knock's id or the provider's). A rejected "
                                               "delivery has no event: see <a href=\"/rejected\">"
                                               "rejected deliveries</a>.</p>\n");
                } else
                        html_error(b, "event", r, st);
                html_foot(b, j);
                return;
        }
        id = strdup(col_text(e, CQ_EV_ID));
        received_at = col_i64(e, CQ_EV_RECEIVED_AT);
        if (!id) {
                j->code = 503;
                html_foot(b, j);
                return;
        }
        event_summary(b, j, e);
        stmt_finalizep(&e);
        timeline(b, j, st, id, received_at);
        section_rows(b, j, st, id, "Deliveries", cq_deliveries_of, delivery_card);
        section_rows(b, j, st, id, "Attempts", cq_attempts_of, attempt_card);
        section_rows(b, j, st, id, "Completion hooks", cq_hooks_of, hook_card);
        section_rows(b, j, st, id, "Hook attempts", cq_hook_attempts_of, hook_attempt_row);
        html_foot(b, j);
}

void page_delivery(console_job *j, knock_store *st, struct evbuffer *b)
{
        _cleanup_stmt_ db_stmt *d = NULL;
        int r, rc;

        html_head(b, j, "Delivery", 0);
        if (!j->p.id || no_store(b, st)) {
                j->code = j->p.id ? 503 : 400;
                html_foot(b, j);
                return;
        }
        r = cq_delivery(st, j->p.id, &d);
        rc = r < 0 ? r : stmt_step(d);
        if (rc > 0)
                delivery_card(b, j, d);
        else if (rc == 0) {
                j->code = 404;
                evbuffer_add_printf(b, "<p class=\"error\">No delivery ");
                html_text(b, j->p.id);
                evbuffer_add_printf(b, ".</p>\n");
        } else
                html_error(b, "delivery", r, st);
        html_foot(b, j);
}

/* ---- probe ------------------------------------------------------------------------------------- */

static void probe_form(struct evbuffer *b, const console_job *j)
{
        evbuffer_add_printf(b,
                "<form method=\"post\" action=\"/probe\" class=\"probe\">"
                "<label for=\"request\">A raw HTTP request as the provider sent it: the request "
                "line, the headers, an empty line, the body.</label>"
                "<textarea id=\"request\" name=\"request\" rows=\"14\" spellcheck=\"false\" "
                "required placeholder=\"POST / HTTP/1.1&#10;Host: …&#10;Content-Type: "
                "application/json&#10;Content-Length: …&#10;X-Signature: …&#10;&#10;{…}\">");
        if (j->probe_text) {
                /* Line ends as LF: the browser sends them as CRLF again. */
                for (const char *p = j->probe_text;;) {
                        size_t n = strcspn(p, "\r");

                        html_textn(b, p, n, ESCAPE_KEEP_NEWLINE);
                        if (!p[n])
                                break;
                        p += n + 1;
                }
        }
        evbuffer_add_printf(b, "</textarea><label><input type=\"checkbox\" name=\"crlf\"%s> the "
                               "body's line endings are CRLF as the provider sent them (else the "
                               "form's CRLF are read as LF)</label> "
                               "<button type=\"submit\">Probe</button></form>\n",
                            j->probe_crlf ? " checked" : "");
}

static void probe_route(struct evbuffer *b, const probe_result *r)
{
        dt(b, "handler");
        if (r->outcome != PROBE_ACCEPTED)
                evbuffer_add_printf(b, "none: only an accepted event is handled");
        else if (!r->handler)
                evbuffer_add_printf(b, "none: the event would be <em>ignored</em> (no_handler)");
        else {
                if (r->route) {
                        evbuffer_add_printf(b, "[route &quot;");
                        html_text(b, r->route);
                        evbuffer_add_printf(b, "&quot;] ");
                } else
                        evbuffer_add_printf(b, "[worker] ");
                evbuffer_add_printf(b, "<code>");
                html_text(b, r->handler);
                evbuffer_add_printf(b, "</code>");
        }
        dd_end(b);
}

static void probe_verdict(struct evbuffer *b, console_job *j, knock_store *st)
{
        const probe_result *r = &j->probe;
        _cleanup_free_ char *dup_id = NULL, *dup_status = NULL;
        int dup = 0;

        if (j->probe_error < 0) {
                evbuffer_add_printf(b, "<p class=\"error\">The probe failed: ");
                html_text(b, strerror(-j->probe_error));
                evbuffer_add_printf(b, "</p>\n");
                return;
        }
        if (st && r->provider_event_id)
                dup = cq_duplicate_of(st, r->provider_event_id, &dup_id, &dup_status);
        evbuffer_add_printf(b, "<section class=\"card verdict verdict-%s\" id=\"verdict\" "
                               "data-status=\"%d\" data-outcome=\"%s\"><h2>",
                            probe_outcome_to_string(r->outcome), r->status,
                            probe_outcome_to_string(r->outcome));
        if (r->outcome == PROBE_INCOMPLETE)
                evbuffer_add_printf(b, "No answer: the request is incomplete");
        else
                evbuffer_add_printf(b, "Would answer %d", r->status);
        if (r->reason[0]) {
                evbuffer_add_printf(b, ": <span class=\"reason\">");
                html_text(b, r->reason);
                evbuffer_add_printf(b, "</span>");
        }
        evbuffer_add_printf(b, "</h2><dl>");
        dt(b, "outcome");
        html_text(b, probe_outcome_to_string(r->outcome));
        dd_end(b);
        dt(b, "request");
        html_text(b, r->method);
        evbuffer_add_printf(b, " ");
        html_text(b, r->target);
        evbuffer_add_printf(b, ", body ");
        html_bytes(b, (int64_t)r->body_len);
        dd_end(b);
        dt(b, "dedupe id");
        html_text(b, r->provider_event_id ? r->provider_event_id : "–");
        dd_end(b);
        dt(b, "event type");
        html_text(b, r->event_type ? r->event_type : "–");
        dd_end(b);
        probe_route(b, r);
        dt(b, "duplicate of");
        if (dup > 0) {
                html_link(b, "/event", "id", dup_id, dup_id);
                evbuffer_add_printf(b, " (");
                html_text(b, dup_status);
                evbuffer_add_printf(b, "): %s", r->outcome == PROBE_ACCEPTED
                                                        ? "the event would not change"
                                                        : "a stored event has this id");
        } else if (dup < 0)
                html_text(b, strerror(-dup));
        else
                evbuffer_add_printf(b, "none%s", st ? "" : " known (the database cannot be read)");
        dd_end(b);
        dt(b, "would store");
        html_text(b, probe_stored(r, dup > 0));
        dd_end(b);
        evbuffer_add_printf(b, "</dl>");
        if (r->n_notes > 0) {
                evbuffer_add_printf(b, "<ul class=\"notes\">");
                for (size_t i = 0; i < r->n_notes; i++) {
                        evbuffer_add_printf(b, "<li>");
                        html_text(b, r->notes[i]);
                        evbuffer_add_printf(b, "</li>");
                }
                evbuffer_add_printf(b, "</ul>");
        }
        evbuffer_add_printf(b, "<p class=\"note\">A probe stores nothing and runs nothing; "
                               "draining, a full queue, the orphan budget and storage errors "
                               "are not probed.</p></section>\n");
}

void page_probe(console_job *j, knock_store *st, struct evbuffer *b)
{
        html_head(b, j, "Probe", 0);
        evbuffer_add_printf(b, "<p class=\"note\">Runs a request through what the ingress "
                               "runs — framing, path and method, size, the provider's "
                               "verification, the dedupe id and event type, routing — with "
                               "this endpoint's configuration at this moment. The tool for "
                               "&quot;why does my provider's webhook get 401?&quot;.</p>\n");
        if (j->probed)
                probe_verdict(b, j, st);
        probe_form(b, j);
        html_cli(b, j, "probe", "request.http", NULL);
        html_foot(b, j);
}
