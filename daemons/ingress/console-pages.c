/* SPDX-License-Identifier: MIT */
/*
 * console-pages — each page of the web console, rendered on the console's
 * thread from its read-only connection (console-query.h) and, for the
 * dashboard, the admin snapshot. A page never fails as a whole for one
 * query: the part that could not be read says why, and the rest is shown.
 * Each page ends with the knockctl command that shows or changes the same.
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console-internal.h"
#include "escape.h"

const console_route console_routes[] = {
        {"/", "Dashboard", "Dashboard", false, page_dashboard},
        {"/events", "Events", "Events", false, page_events},
        {"/rejected", "Rejected deliveries", "Rejected", false, page_rejected},
        {"/hooks", "Completion hooks", "Hooks", false, page_hooks},
        {"/audit", "Audit trail", "Audit", false, page_audit},
        {"/live", "Live", "Live", false, page_live},
        {"/probe", "Probe", "Probe", true, page_probe},
        {"/event", "Event", NULL, false, page_event},
        {"/delivery", "Delivery", NULL, false, page_delivery},
        {0},
};

/* ---- dashboard ------------------------------------------------------------------------------ */

static const char *daemon_state(const admin_daemon *d, int64_t now)
{
        if (!d->present)
                return "never ran";
        if (d->stopped_at > 0)
                return "stopped";
        if (now - d->heartbeat_at > STORE_HEARTBEAT_STALE_MS)
                return "stale";
        return "running";
}

static void dash_daemons(struct evbuffer *b, const admin_snapshot *snap, int64_t now)
{
        evbuffer_add_printf(b, "<section id=\"daemons\"><h2>Daemons</h2><table><thead><tr>"
                               "<th>daemon</th><th>state</th><th>pid</th><th>heartbeat</th>"
                               "<th>started</th><th>last run ended</th><th>suspected OOM kills"
                               "</th><th>status</th></tr></thead><tbody>\n");
        for (size_t i = 0; i < 3; i++) {
                const admin_daemon *d = &snap->daemons[i];
                const char *state = daemon_state(d, now);

                evbuffer_add_printf(b, "<tr data-daemon=\"%s\"><td>knock-%s</td><td>", d->name,
                                    d->name);
                html_status(b, streq(state, "running") ? "running"
                               : streq(state, "stale") ? "failed"
                                                       : state);
                evbuffer_add_printf(b, "</td><td>%lld</td><td>", (long long)d->pid);
                html_time(b, d->present ? d->heartbeat_at : 0, now);
                evbuffer_add_printf(b, "</td><td>");
                html_time(b, d->started_at, now);
                evbuffer_add_printf(b, "</td><td>%s</td><td class=\"num\">%lld</td><td>",
                                    !d->present                 ? "–"
                                    : d->last_clean_exit == 1   ? "cleanly"
                                    : d->last_clean_exit == 0 ? "<strong>unexpectedly</strong>"
                                                              : "–",
                                    (long long)d->oom_kills);
                html_text(b, d->status);
                evbuffer_add_printf(b, "</td></tr>\n");
        }
        evbuffer_add_printf(b, "</tbody></table></section>\n");
}

static void dash_queue(struct evbuffer *b, const admin_snapshot *snap, int64_t now)
{
        evbuffer_add_printf(b, "<section id=\"queue\"><h2>Events by status</h2><table><tbody>");
        for (size_t i = 0; i < ELEMENTSOF(event_status_names); i++) {
                evbuffer_add_printf(b, "<tr data-status=\"%s\"><td>", event_status_names[i]);
                html_status(b, event_status_names[i]);
                evbuffer_add_printf(b, "</td><td class=\"num\"><a href=\"/events?status=%s\">"
                                       "%lld</a></td></tr>",
                                    event_status_names[i], (long long)snap->events[i]);
        }
        evbuffer_add_printf(b, "</tbody></table><p>Oldest queued (received, processing or "
                               "failed): ");
        if (snap->oldest_queued_at)
                html_time(b, snap->oldest_queued_at, now);
        else
                evbuffer_add_printf(b, "none");
        evbuffer_add_printf(b, ".</p><p>Completion hooks: <a href=\"/hooks?state=pending\">%lld "
                               "pending</a>, <a href=\"/hooks?state=delivered\">%lld delivered</a>, "
                               "<a href=\"/hooks?state=failed\">%lld failed</a>.</p></section>\n",
                            (long long)snap->hooks_pending, (long long)snap->hooks_delivered,
                            (long long)snap->hooks_failed);
}

static long long counter(json_t *doc, const char *name)
{
        return (long long)json_integer_value(json_object_get(doc, name));
}

static void dash_counters(struct evbuffer *b, const console_job *j, const admin_snapshot *snap)
{
        const ingest_stats *s = &j->stats;
        json_t *w = json_loads(snap->daemons[1].counters, 0, NULL);
        json_t *d = json_loads(snap->daemons[2].counters, 0, NULL);

        evbuffer_add_printf(b,
                "<section id=\"counters\"><h2>Since each daemon started</h2><table><tbody>"
                "<tr><td>receipts stored</td><td class=\"num\" id=\"c-stored\">%llu</td></tr>"
                "<tr><td>duplicates</td><td class=\"num\">%llu</td></tr>"
                "<tr><td>rejected (401, 413)</td><td class=\"num\">%llu</td></tr>"
                "<tr><td>storage errors (503)</td><td class=\"num\">%llu</td></tr>"
                "<tr><td>rejected, not stored (over orphan_rate)</td><td class=\"num\">%llu</td></tr>",
                (unsigned long long)s->accepted, (unsigned long long)s->duplicates,
                (unsigned long long)(s->invalid + s->too_large),
                (unsigned long long)s->storage_errors, (unsigned long long)s->orphans_dropped);
        if (w)
                evbuffer_add_printf(b,
                        "<tr><td>handled</td><td class=\"num\">%lld</td></tr>"
                        "<tr><td>failed attempts (to retry)</td><td class=\"num\">%lld</td></tr>"
                        "<tr><td>dead</td><td class=\"num\">%lld</td></tr>"
                        "<tr><td>ignored</td><td class=\"num\">%lld</td></tr>"
                        "<tr><td>handlers running</td><td class=\"num\">%lld</td></tr>",
                        counter(w, "handled"), counter(w, "failed"), counter(w, "dead"),
                        counter(w, "ignored"), counter(w, "in_flight"));
        if (d)
                evbuffer_add_printf(b,
                        "<tr><td>hooks delivered</td><td class=\"num\">%lld</td></tr>"
                        "<tr><td>hook failures (dead-lettered)</td><td class=\"num\">%lld</td></tr>",
                        counter(d, "delivered"), counter(d, "failed"));
        evbuffer_add_printf(b, "</tbody></table></section>\n");
        json_decref(w);
        json_decref(d);
}

/* Receipts per second over the samples and since the last one, with a
 * sparkline of each 10 s (inline SVG: an image, no script). */
static void dash_throughput(struct evbuffer *b, const console_job *j, const admin_sample *sm)
{
        const ingest_stats *s = &j->stats;
        uint64_t now_stored = s->accepted + s->duplicates, peak = 1;
        int64_t first = -1;
        double minute = 0, all = 0;

        for (size_t i = 0; i < ADMIN_SAMPLES; i++)
                if (sm[i].at > 0 && first < 0)
                        first = (int64_t)i;
        evbuffer_add_printf(b, "<section id=\"throughput\"><h2>Recent throughput</h2>");
        if (first < 0) {
                evbuffer_add_printf(b, "<p>No sample yet.</p></section>\n");
                return;
        }
        for (size_t i = (size_t)first + 1; i < ADMIN_SAMPLES; i++)
                peak = MAX(peak, sm[i].stored - sm[i - 1].stored);
        peak = MAX(peak, now_stored - sm[ADMIN_SAMPLES - 1].stored);
        {
                const admin_sample *last = &sm[ADMIN_SAMPLES - 1], *f = &sm[first];
                const admin_sample *m = &sm[ADMIN_SAMPLES - 7 < (size_t)first ? (size_t)first
                                                                                : ADMIN_SAMPLES - 7];
                if (j->now > m->at)
                        minute = (double)(now_stored - m->stored) * 1000.0 / (double)(j->now - m->at);
                if (j->now > f->at)
                        all = (double)(now_stored - f->stored) * 1000.0 / (double)(j->now - f->at);
                evbuffer_add_printf(b, "<p>Receipts stored: <strong id=\"rate-minute\">%.1f/s"
                                       "</strong> over the last minute, %.1f/s over the last ",
                                    minute, all);
                html_duration(b, j->now - f->at);
                evbuffer_add_printf(b, " (sampled every %d s; rejected since the last sample: "
                                       "%llu).</p>",
                                    ADMIN_SAMPLE_MS / 1000,
                                    (unsigned long long)(s->invalid + s->too_large - last->rejected));
        }
        /* One bar per interval between samples, the last one since the
         * newest sample, so far. */
        evbuffer_add_printf(b, "<svg class=\"spark\" viewBox=\"0 0 %d 40\" role=\"img\" "
                               "aria-label=\"receipts per %d s\">",
                            ADMIN_SAMPLES * 4, ADMIN_SAMPLE_MS / 1000);
        for (size_t i = (size_t)first + 1; i <= ADMIN_SAMPLES; i++) {
                uint64_t v = (i < ADMIN_SAMPLES ? sm[i].stored : now_stored) - sm[i - 1].stored;
                int h = (int)(v * 38 / peak) + (v > 0);

                evbuffer_add_printf(b, "<rect x=\"%zu\" y=\"%d\" width=\"3\" height=\"%d\">"
                                       "<title>%llu</title></rect>",
                                    (i - 1) * 4, 40 - h, h, (unsigned long long)v);
        }
        evbuffer_add_printf(b, "</svg><p class=\"note\">peak %llu per %d s</p></section>\n",
                            (unsigned long long)peak, ADMIN_SAMPLE_MS / 1000);
}

static void dash_storage(struct evbuffer *b, const admin_snapshot *snap, int64_t now)
{
        evbuffer_add_printf(b, "<section id=\"storage\"><h2>Storage</h2><dl>");
        dt(b, "database");
        html_bytes(b, snap->db_bytes);
        evbuffer_add_printf(b, ", WAL ");
        html_bytes(b, snap->wal_bytes);
        dd_end(b);
        dt(b, "free disk");
        html_bytes(b, (int64_t)MIN(snap->disk_free_bytes, (uint64_t)INT64_MAX));
        dd_end(b);
        dt(b, "last backup");
        html_time(b, snap->last_backup_at, now);
        dd_end(b);
        dt(b, "last prune");
        html_time(b, snap->last_prune_at, now);
        if (snap->last_prune_at)
                evbuffer_add_printf(b, ", %lld rows", (long long)snap->last_prune_rows);
        dd_end(b);
        evbuffer_add_printf(b, "</dl></section>\n");
}

/* The newest dead events and failed hooks: what an operator acts on. */
static void dash_attention(struct evbuffer *b, console_job *j, knock_store *st)
{
        _cleanup_stmt_ db_stmt *ev = NULL, *hk = NULL;
        cq_event_filter f = {.status = "dead", .page = {.limit = 5}};
        cq_page p = {.limit = 5};
        int rc, r;

        evbuffer_add_printf(b, "<section id=\"attention\"><h2>Needs attention</h2>");
        if (no_store(b, st)) {
                evbuffer_add_printf(b, "</section>\n");
                return;
        }
        r = cq_events(st, &f, &ev);
        if (r < 0) {
                html_error(b, "dead events", r, st);
        } else {
                evbuffer_add_printf(b, "<h3>Newest dead events</h3><ul class=\"dead\">");
                while ((rc = stmt_step(ev)) > 0) {
                        evbuffer_add_printf(b, "<li>");
                        event_link(b, ev, CQ_EV_ID);
                        evbuffer_add_printf(b, " ");
                        html_col(b, ev, CQ_EV_TYPE);
                        evbuffer_add_printf(b, ": ");
                        html_col(b, ev, CQ_EV_LAST_ERROR);
                        evbuffer_add_printf(b, "</li>");
                }
                evbuffer_add_printf(b, "</ul>");
                if (rc < 0)
                        html_error(b, "dead events", rc, st);
        }
        r = cq_hooks(st, "failed", &p, &hk);
        if (r < 0) {
                html_error(b, "failed hooks", r, st);
        } else {
                evbuffer_add_printf(b, "<h3>Newest failed hooks</h3><ul class=\"hooks-failed\">");
                while ((rc = stmt_step(hk)) > 0) {
                        evbuffer_add_printf(b, "<li><code>");
                        html_col(b, hk, CQ_HK_ID);
                        evbuffer_add_printf(b, "</code> for ");
                        event_link(b, hk, CQ_HK_EVENT_ID);
                        evbuffer_add_printf(b, ": ");
                        html_col(b, hk, CQ_HK_LAST_ERROR);
                        evbuffer_add_printf(b, "</li>");
                }
                evbuffer_add_printf(b, "</ul>");
                if (rc < 0)
                        html_error(b, "failed hooks", rc, st);
        }
        evbuffer_add_printf(b, "</section>\n");
}

/* Links to Prometheus' graph page for the series an operator watches. */
static void dash_prometheus(struct evbuffer *b, const console_job *j)
{
        static const struct {
                const char *title, *expr;
        } graphs[] = {
                {"Receipts by result", "sum by (result) (rate(knock_deliveries_total%s[5m]))"},
                {"Events by status", "knock_events%s"},
                {"Oldest queued event age", "knock_oldest_queued_event_age_seconds%s"},
                {"Handler duration p99",
                 "histogram_quantile(0.99, sum by (le) (rate(knock_handler_duration_seconds_bucket%s[5m])))"},
                {"Commit duration p99",
                 "histogram_quantile(0.99, sum by (le) (rate(knock_commit_duration_seconds_bucket%s[5m])))"},
                {"Hooks by state", "knock_hooks%s"},
                {"Heartbeat age", "knock_daemon_heartbeat_age_seconds%s"},
        };
        _cleanup_free_ char *base = NULL, *sel = NULL;

        if (!j->prometheus_url)
                return;
        base = strdup(j->prometheus_url);
        if (!base)
                return;
        while (*base && base[strlen(base) - 1] == '/')
                base[strlen(base) - 1] = 0;
        /* knock(7), MONITORING: every series is scraped with its endpoint label. */
        sel = strdup_printf("{endpoint=\"%s\"}", j->endpoint);
        if (!sel)
                return;
        evbuffer_add_printf(b, "<section id=\"prometheus\"><h2>Graphs in Prometheus</h2><ul>");
        for (size_t i = 0; i < ELEMENTSOF(graphs); i++) {
                _cleanup_free_ char *expr = NULL, *enc = NULL;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                expr = strdup_printf(graphs[i].expr, sel);
#pragma GCC diagnostic pop
                enc = expr ? url_encode(expr) : NULL;
                if (!enc)
                        continue;
                evbuffer_add_printf(b, "<li><a href=\"");
                html_text(b, base);
                evbuffer_add_printf(b, "/graph?g0.range_input=1h&amp;g0.tab=0&amp;g0.expr=");
                html_text(b, enc);
                evbuffer_add_printf(b, "\">%s</a></li>", graphs[i].title);
        }
        evbuffer_add_printf(b, "</ul></section>\n");
}

void page_dashboard(console_job *j, knock_store *st, struct evbuffer *b)
{
        admin_snapshot snap = admin_get_snapshot(j->a);
        admin_sample samples[ADMIN_SAMPLES];
        int refresh = j->p.refresh ? parse_int(j->p.refresh, 2, 3600, 0) : 0;

        admin_get_samples(j->a, samples);
        html_head(b, j, "Dashboard", refresh);
        if (!snap.valid || j->now - snap.taken_at > 5000)
                evbuffer_add_printf(b, "<p class=\"error\">The database did not answer the "
                                       "snapshot in time: figures may be old.</p>\n");
        else if (snap.error[0]) {
                evbuffer_add_printf(b, "<p class=\"error\">");
                html_text(b, snap.error);
                evbuffer_add_printf(b, "</p>\n");
        }
        evbuffer_add_printf(b, "<p class=\"note\">%s · <a href=\"/?refresh=%d\">%s</a></p>\n",
                            refresh ? "refreshed by the page" : "as of now",
                            refresh ? 0 : 10,
                            refresh ? "stop refreshing" : "refresh every 10 s");
        dash_daemons(b, &snap, j->now);
        evbuffer_add_printf(b, "<div class=\"cols\">");
        dash_queue(b, &snap, j->now);
        dash_counters(b, j, &snap);
        dash_storage(b, &snap, j->now);
        evbuffer_add_printf(b, "</div>");
        dash_throughput(b, j, samples);
        dash_attention(b, j, st);
        dash_prometheus(b, j);
        html_cli(b, j, "status", NULL);
        html_foot(b, j);
}

/* ---- events ------------------------------------------------------------------------------------ */

static void events_form(struct evbuffer *b, const console_job *j, const char *status)
{
        static const struct {
                const char *name, *label;
        } inputs[] = {
                {"type", "type"}, {"pid", "provider id"}, {"since", "since"}, {"until", "until"},
        };
        const char *values[] = {j->p.type, j->p.pid, j->p.since, j->p.until};

        evbuffer_add_printf(b, "<form method=\"get\" action=\"/events\" class=\"filters\">"
                               "<label>status <select name=\"status\"><option value=\"\">any"
                               "</option>");
        for (size_t i = 0; i < ELEMENTSOF(event_status_names); i++)
                evbuffer_add_printf(b, "<option%s>%s</option>",
                                    status && streq(status, event_status_names[i]) ? " selected"
                                                                                   : "",
                                    event_status_names[i]);
        evbuffer_add_printf(b, "</select></label>");
        for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                evbuffer_add_printf(b, "<label>%s <input name=\"%s\" value=\"", inputs[i].label,
                                    inputs[i].name);
                html_text(b, values[i]);
                evbuffer_add_printf(b, "\"></label>");
        }
        evbuffer_add_printf(b, "<button type=\"submit\">Filter</button></form>\n"
                               "<p class=\"note\">since and until: 2h, 30m, an RFC 3339 time or "
                               "@unix.</p>\n");
}

static bool time_param(struct evbuffer *b, const char *name, const char *v, int64_t now,
                       int64_t *ret)
{
        *ret = 0;
        if (!v)
                return true;
        if (parse_time_spec(v, now, ret) >= 0)
                return true;
        evbuffer_add_printf(b, "<p class=\"error\">%s: not a time (2h, 30m, RFC 3339 or @unix): ",
                            name);
        html_text(b, v);
        evbuffer_add_printf(b, "</p>\n");
        return false;
}

static void event_row(struct evbuffer *b, console_job *j, db_stmt *ev)
{
        evbuffer_add_printf(b, "<td>");
        html_time(b, col_i64(ev, CQ_EV_RECEIVED_AT), j->now);
        evbuffer_add_printf(b, "</td><td>");
        event_link(b, ev, CQ_EV_ID);
        evbuffer_add_printf(b, "</td><td>");
        html_status(b, col_text(ev, CQ_EV_STATUS));
        evbuffer_add_printf(b, "</td><td class=\"pid\">");
        html_col(b, ev, CQ_EV_PROVIDER_ID);
        evbuffer_add_printf(b, "</td><td class=\"type\">");
        html_col(b, ev, CQ_EV_TYPE);
        evbuffer_add_printf(b, "</td><td class=\"num\">%lld</td><td>",
                            (long long)col_i64(ev, CQ_EV_ATTEMPTS));
        html_time(b, col_null(ev, CQ_EV_NEXT_ATTEMPT_AT) ? 0 : col_i64(ev, CQ_EV_NEXT_ATTEMPT_AT),
                  j->now);
        evbuffer_add_printf(b, "</td><td class=\"error-text\">");
        html_col(b, ev, CQ_EV_LAST_ERROR);
        evbuffer_add_printf(b, "</td>");
}

static const list_spec events_list = {
        .what = "events",
        .head = "<table class=\"list\" id=\"events\"><thead><tr><th>received</th><th>event</th>"
                "<th>status</th><th>provider id</th><th>type</th><th>attempts</th>"
                "<th>next attempt</th><th>last error</th></tr></thead><tbody>\n",
        .empty = "No event matches.",
        .at_col = CQ_EV_RECEIVED_AT,
        .id_col = CQ_EV_ID,
        .row = event_row,
        .path = "/events",
        .names = (const char *const[]){"status", "type", "pid", "since", "until", "limit"},
        .n_names = 6,
};

void page_events(console_job *j, knock_store *st, struct evbuffer *b)
{
        _cleanup_stmt_ db_stmt *ev = NULL;
        cq_event_filter f = {.type = j->p.type, .provider_id = j->p.pid};
        const char *words[12] = {"events"};
        size_t nw = 1;
        int r;

        html_head(b, j, "Events", 0);
        f.status = status_param(j, b);
        events_form(b, j, f.status);
        if (!time_param(b, "since", j->p.since, j->now, &f.since) ||
            !time_param(b, "until", j->p.until, j->now, &f.until)) {
                j->code = 400;
                html_foot(b, j);
                return;
        }
        if (!list_open(b, j, st, &f.page))
                return;
        r = cq_events(st, &f, &ev);
        if (r < 0)
                html_error(b, "events", r, st);
        else
                list_rows(b, j, st, ev, &events_list, f.page.limit,
                          (const char *const[]){f.status, j->p.type, j->p.pid, j->p.since,
                                                j->p.until, j->p.limit});
        if (f.status) {
                words[nw++] = "--status";
                words[nw++] = f.status;
        }
        if (j->p.type) {
                words[nw++] = "--type";
                words[nw++] = j->p.type;
        }
        if (j->p.since) {
                words[nw++] = "--since";
                words[nw++] = j->p.since;
        }
        if (j->p.pid)
                html_cli(b, j, "event", j->p.pid, NULL);
        else
                html_cli_words(b, j, words, nw);
        html_foot(b, j);
}

/* ---- rejected, hooks, audit ------------------------------------------------------------------ */

static void rejected_row(struct evbuffer *b, console_job *j, db_stmt *d)
{
        evbuffer_add_printf(b, "<td>");
        html_time(b, col_i64(d, CQ_DL_RECEIVED_AT), j->now);
        evbuffer_add_printf(b, "</td><td>");
        html_link(b, "/delivery", "id", col_text(d, CQ_DL_ID), col_text(d, CQ_DL_ID));
        evbuffer_add_printf(b, "</td><td class=\"num\">");
        html_col(b, d, CQ_DL_HTTP_STATUS);
        evbuffer_add_printf(b, "</td><td class=\"error-text\">");
        html_col(b, d, CQ_DL_VERIFY_ERROR);
        evbuffer_add_printf(b, "</td><td class=\"pid\">");
        html_col(b, d, CQ_DL_PROVIDER_ID);
        evbuffer_add_printf(b, "</td><td class=\"type\">");
        html_col(b, d, CQ_DL_TYPE);
        evbuffer_add_printf(b, "</td><td>");
        html_col(b, d, CQ_DL_REQUEST_ID);
        evbuffer_add_printf(b, "</td><td class=\"num\">");
        html_bytes(b, col_i64(d, CQ_DL_BODY_BYTES));
        evbuffer_add_printf(b, "</td><td>");
        html_col(b, d, CQ_DL_REMOTE);
        evbuffer_add_printf(b, "</td>");
}

static const list_spec rejected_list = {
        .what = "rejected deliveries",
        .head = "<table class=\"list\" id=\"rejected\"><thead><tr><th>received</th>"
                "<th>delivery</th><th>answered</th><th>reason</th><th>provider id</th>"
                "<th>type</th><th>request id</th><th>body</th><th>from</th></tr></thead>"
                "<tbody>\n",
        .empty = "No rejected delivery is stored.",
        .at_col = CQ_DL_RECEIVED_AT,
        .id_col = CQ_DL_ID,
        .row = rejected_row,
        .path = "/rejected",
        .names = (const char *const[]){"limit"},
        .n_names = 1,
};

void page_rejected(console_job *j, knock_store *st, struct evbuffer *b)
{
        _cleanup_stmt_ db_stmt *d = NULL;
        cq_page p;
        int r;

        html_head(b, j, "Rejected deliveries", 0);
        evbuffer_add_printf(b, "<p class=\"note\">Requests answered 401 or 413, kept with "
                               "their reason (within orphan_rate; the first orphan_body bytes "
                               "of the body). To see what a request would get, "
                               "<a href=\"/probe\">probe</a> it.</p>\n");
        if (!list_open(b, j, st, &p))
                return;
        r = cq_rejected(st, &p, &d);
        if (r < 0)
                html_error(b, rejected_list.what, r, st);
        else
                list_rows(b, j, st, d, &rejected_list, p.limit, (const char *const[]){j->p.limit});
        html_cli(b, j, "deliveries", "--invalid", NULL);
        html_foot(b, j);
}

static void hook_row(struct evbuffer *b, console_job *j, db_stmt *h)
{
        evbuffer_add_printf(b, "<td>");
        html_time(b, col_i64(h, CQ_HK_CREATED_AT), j->now);
        evbuffer_add_printf(b, "</td><td><code>");
        html_col(b, h, CQ_HK_ID);
        evbuffer_add_printf(b, "</code></td><td>");
        event_link(b, h, CQ_HK_EVENT_ID);
        evbuffer_add_printf(b, "</td><td>");
        html_col(b, h, CQ_HK_TYPE);
        evbuffer_add_printf(b, "</td><td>");
        html_status(b, col_text(h, CQ_HK_STATE));
        evbuffer_add_printf(b, "</td><td class=\"num\">");
        html_col(b, h, CQ_HK_ATTEMPTS);
        evbuffer_add_printf(b, "</td><td class=\"num\">");
        html_col(b, h, CQ_HK_LAST_STATUS);
        evbuffer_add_printf(b, "</td><td class=\"error-text\">");
        html_col(b, h, CQ_HK_LAST_ERROR);
        evbuffer_add_printf(b, "</td><td>");
        html_time(b, col_null(h, CQ_HK_NEXT_ATTEMPT_AT) ? 0 : col_i64(h, CQ_HK_NEXT_ATTEMPT_AT),
                  j->now);
        evbuffer_add_printf(b, "</td>");
}

static const list_spec hooks_list = {
        .what = "hooks",
        .head = "<table class=\"list\" id=\"hooks\"><thead><tr><th>created</th><th>hook</th>"
                "<th>event</th><th>type</th><th>state</th><th>attempts</th><th>last status"
                "</th><th>last error</th><th>next attempt</th></tr></thead><tbody>\n",
        .empty = "No hook in this state.",
        .at_col = CQ_HK_CREATED_AT,
        .id_col = CQ_HK_ID,
        .row = hook_row,
        .path = "/hooks",
        .names = (const char *const[]){"state", "limit"},
        .n_names = 2,
};

void page_hooks(console_job *j, knock_store *st, struct evbuffer *b)
{
        static const char *const states[] = {"failed", "pending", "delivered"};
        _cleanup_stmt_ db_stmt *h = NULL;
        const char *state = "failed";
        cq_page p;
        int r;

        if (j->p.state && streq(j->p.state, "all"))
                state = NULL;
        for (size_t i = 0; j->p.state && i < ELEMENTSOF(states); i++)
                if (streq(j->p.state, states[i]))
                        state = states[i];
        html_head(b, j, "Completion hooks", 0);
        evbuffer_add_printf(b, "<p class=\"filters\">");
        for (size_t i = 0; i < ELEMENTSOF(states); i++)
                evbuffer_add_printf(b, "<a href=\"/hooks?state=%s\"%s>%s</a> · ", states[i],
                                    state && streq(state, states[i]) ? " class=\"on\"" : "",
                                    states[i]);
        evbuffer_add_printf(b, "<a href=\"/hooks?state=all\"%s>all</a></p>\n",
                            state ? "" : " class=\"on\"");
        if (!j->hooks_configured)
                evbuffer_add_printf(b, "<p class=\"note\">This endpoint has no [hook] url: no "
                                       "hook is queued now.</p>\n");
        if (!list_open(b, j, st, &p))
                return;
        r = cq_hooks(st, state, &p, &h);
        if (r < 0)
                html_error(b, hooks_list.what, r, st);
        else
                list_rows(b, j, st, h, &hooks_list, p.limit,
                          (const char *const[]){state ? state : "all", j->p.limit});
        if (state)
                html_cli(b, j, "hooks", "--state", state, NULL);
        else
                html_cli(b, j, "hooks", NULL);
        if (state && streq(state, "failed"))
                html_cli(b, j, "redeliver-hook", "--failed", "--since", "1d", NULL);
        html_foot(b, j);
}

/* A stored JSON text, at most 400 bytes of it. */
static void json_cell(struct evbuffer *b, db_stmt *st, int col)
{
        size_t n = (size_t)stmt_col_bytes(st, col);

        if (col_null(st, col)) {
                html_col(b, st, col);
                return;
        }
        evbuffer_add_printf(b, "<code>");
        html_textn(b, col_text(st, col), MIN(n, (size_t)400), 0);
        evbuffer_add_printf(b, "%s</code>", n > 400 ? "…" : "");
}

static void audit_row(struct evbuffer *b, console_job *j, db_stmt *a)
{
        evbuffer_add_printf(b, "<td>");
        html_time(b, col_i64(a, CQ_AU_AT), j->now);
        evbuffer_add_printf(b, "</td><td>");
        html_col(b, a, CQ_AU_ACTOR);
        evbuffer_add_printf(b, "</td><td>");
        html_col(b, a, CQ_AU_ACTION);
        for (int col = CQ_AU_FILTERS; col <= CQ_AU_IDS; col++) {
                evbuffer_add_printf(b, "</td><td>");
                json_cell(b, a, col);
        }
        evbuffer_add_printf(b, "</td>");
}

static const list_spec audit_list = {
        .what = "audit",
        .head = "<table class=\"list\" id=\"audit\"><thead><tr><th>at</th><th>actor</th>"
                "<th>action</th><th>filters</th><th>counts</th><th>ids</th></tr></thead>"
                "<tbody>\n",
        .empty = "No audit row yet.",
        .at_col = CQ_AU_AT,
        .id_col = CQ_AU_ID,
        .row = audit_row,
        .path = "/audit",
        .names = (const char *const[]){"limit"},
        .n_names = 1,
};

void page_audit(console_job *j, knock_store *st, struct evbuffer *b)
{
        _cleanup_stmt_ db_stmt *a = NULL;
        cq_page p;
        int r;

        html_head(b, j, "Audit trail", 0);
        evbuffer_add_printf(b, "<p class=\"note\">Every change knockctl and knock-maint made, "
                               "and who made it.</p>\n");
        if (!list_open(b, j, st, &p))
                return;
        r = cq_audit(st, &p, &a);
        if (r < 0)
                html_error(b, audit_list.what, r, st);
        else
                list_rows(b, j, st, a, &audit_list, p.limit, (const char *const[]){j->p.limit});
        html_cli(b, j, "audit", NULL);
        html_foot(b, j);
}

/* ---- live ------------------------------------------------------------------------------------- */

void page_live(console_job *j, knock_store *st, struct evbuffer *b)
{
        html_head(b, j, "Live", 0);
        evbuffer_add_printf(b,
                "<p id=\"live-status\" data-state=\"connecting\">Connecting…</p>\n"
                "<p class=\"note\">Receipts, handler attempts, hook attempts and operators' "
                "actions, as they are stored, newest first (at most %d of each kind every "
                "half second; the rest is counted). Nothing is kept: reload and it starts "
                "again.</p>\n"
                "<table class=\"list\" id=\"feed\"><thead><tr><th>at</th><th>what</th>"
                "<th>status</th><th>id</th><th>detail</th></tr></thead><tbody></tbody></table>\n"
                "<script src=\"/static/live.js\"></script>\n"
                "<p class=\"cli\"><code>journalctl -f KNOCK_ENDPOINT=",
                CQ_LIVE_BATCH);
        html_text(b, j->endpoint);
        evbuffer_add_printf(b, "</code></p>\n");
        html_foot(b, j);
}
