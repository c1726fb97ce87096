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

/* ---- shared parts ---------------------------------------------------------------------- */

static int parse_int(const char *s, int min, int max, int dflt)
{
        uint64_t v;

        if (!s || parse_u64_strict(s, &v) < 0)
                return dflt;
        return v < (uint64_t)min ? min : v > (uint64_t)max ? max : (int)v;
}

static int64_t col_i64(sqlite3_stmt *st, int col)
{
        return sqlite3_column_int64(st, col);
}

static bool col_null(sqlite3_stmt *st, int col)
{
        return sqlite3_column_type(st, col) == SQLITE_NULL;
}

/* "<dt>name</dt><dd>" … "</dd>" */
static void dt(struct evbuffer *b, const char *name)
{
        evbuffer_add_printf(b, "<dt>%s</dt><dd>", name);
}

static void dd_end(struct evbuffer *b)
{
        evbuffer_add_printf(b, "</dd>");
}

static void dd_col(struct evbuffer *b, const char *name, sqlite3_stmt *st, int col)
{
        dt(b, name);
        html_col(b, st, col);
        dd_end(b);
}

static void dd_time(struct evbuffer *b, const char *name, sqlite3_stmt *st, int col, int64_t now)
{
        dt(b, name);
        html_time(b, col_null(st, col) ? 0 : col_i64(st, col), now);
        dd_end(b);
}

/* The row's cursor, for the "older" link of a page that ended at it. */
static void page_cursor(sqlite3_stmt *st, int at_col, int id_col, char *out, size_t len)
{
        snprintf(out, len, "%lld.%s", (long long)col_i64(st, at_col),
                 col_text(st, id_col) ? col_text(st, id_col) : "");
}

/* "Older" link: the page's path with its filters and before=cursor. */
static void older_link(struct evbuffer *b, const char *path, const char *const *names,
                       const char *const *values, size_t n, const char *cursor)
{
        evbuffer_add_printf(b, "<p class=\"pager\"><a rel=\"next\" href=\"%s?", path);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *enc = values[i] ? url_encode(values[i]) : NULL;

                if (!enc)
                        continue;
                evbuffer_add_printf(b, "%s=", names[i]);
                html_text(b, enc);
                evbuffer_add_printf(b, "&amp;");
        }
        {
                _cleanup_free_ char *enc = url_encode(cursor);

                evbuffer_add_printf(b, "before=");
                html_text(b, enc);
        }
        evbuffer_add_printf(b, "\">Older →</a></p>\n");
}

static bool no_store(struct evbuffer *b, knock_store *st)
{
        if (st)
                return false;
        evbuffer_add_printf(b, "<p class=\"error\">The database cannot be opened read-only "
                               "(has knock-ingress stored anything yet?).</p>\n");
        return true;
}

/* A list page's table: its head, one row() a row, and the row columns that
 * make the cursor of the older page. */
typedef struct list_spec {
        const char *what, *head, *empty;
        int at_col, id_col;
        void (*row)(struct evbuffer *b, console_job *j, sqlite3_stmt *st);
        const char *path;
        const char *const *names; /* the filters the older page keeps */
        size_t n_names;
} list_spec;

/* Before a list's query: the page size and cursor from the parameters, and
 * whether the database can be read (false: the page is finished). */
static bool list_open(struct evbuffer *b, console_job *j, knock_store *st, cq_page *p)
{
        *p = (cq_page){.limit = parse_int(j->p.limit, 1, CQ_MAX_LIMIT, CQ_DEFAULT_LIMIT)};
        if (j->p.before && !cq_parse_cursor(j->p.before, p))
                evbuffer_add_printf(b, "<p class=\"error\">A malformed page cursor: showing the "
                                       "newest.</p>\n");
        if (!no_store(b, st))
                return true;
        html_foot(b, j);
        return false;
}

/* The rows of s into the table, then what ended them: an error, none at
 * all, or a full page, which links to the older one with values of the
 * filters (in ls->names' order). */
static void list_rows(struct evbuffer *b, console_job *j, knock_store *st, sqlite3_stmt *s,
                      const list_spec *ls, int limit, const char *const *values)
{
        char cursor[80] = "";
        int rc, rows = 0;

        evbuffer_add_printf(b, "%s", ls->head);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                rows++;
                evbuffer_add_printf(b, "<tr>");
                ls->row(b, j, s);
                evbuffer_add_printf(b, "</tr>\n");
                page_cursor(s, ls->at_col, ls->id_col, cursor, sizeof(cursor));
        }
        evbuffer_add_printf(b, "</tbody></table>\n");
        if (rc != SQLITE_DONE)
                html_error(b, ls->what, store_errno(rc), st);
        else if (rows == 0)
                evbuffer_add_printf(b, "<p class=\"empty\">%s</p>\n", ls->empty);
        else if (rows == limit)
                older_link(b, ls->path, ls->names, values, ls->n_names, cursor);
}

static const char *status_param(console_job *j, struct evbuffer *b)
{
        if (!j->p.status)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(event_status_names); i++)
                if (streq(j->p.status, event_status_names[i]))
                        return event_status_names[i];
        evbuffer_add_printf(b, "<p class=\"error\">Unknown status ");
        html_text(b, j->p.status);
        evbuffer_add_printf(b, ": showing every status.</p>\n");
        return NULL;
}

static void event_link(struct evbuffer *b, sqlite3_stmt *st, int col)
{
        if (col_null(st, col))
                evbuffer_add_printf(b, "<span class=\"none\">–</span>");
        else
                html_link(b, "/event", "id", col_text(st, col), col_text(st, col));
}

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
        _cleanup_stmt_ sqlite3_stmt *ev = NULL, *hk = NULL;
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
                while ((rc = sqlite3_step(ev)) == SQLITE_ROW) {
                        evbuffer_add_printf(b, "<li>");
                        event_link(b, ev, CQ_EV_ID);
                        evbuffer_add_printf(b, " ");
                        html_col(b, ev, CQ_EV_TYPE);
                        evbuffer_add_printf(b, ": ");
                        html_col(b, ev, CQ_EV_LAST_ERROR);
                        evbuffer_add_printf(b, "</li>");
                }
                evbuffer_add_printf(b, "</ul>");
                if (rc != SQLITE_DONE)
                        html_error(b, "dead events", store_errno(rc), st);
        }
        r = cq_hooks(st, "failed", &p, &hk);
        if (r < 0) {
                html_error(b, "failed hooks", r, st);
        } else {
                evbuffer_add_printf(b, "<h3>Newest failed hooks</h3><ul class=\"hooks-failed\">");
                while ((rc = sqlite3_step(hk)) == SQLITE_ROW) {
                        evbuffer_add_printf(b, "<li><code>");
                        html_col(b, hk, CQ_HK_ID);
                        evbuffer_add_printf(b, "</code> for ");
                        event_link(b, hk, CQ_HK_EVENT_ID);
                        evbuffer_add_printf(b, ": ");
                        html_col(b, hk, CQ_HK_LAST_ERROR);
                        evbuffer_add_printf(b, "</li>");
                }
                evbuffer_add_printf(b, "</ul>");
                if (rc != SQLITE_DONE)
                        html_error(b, "failed hooks", store_errno(rc), st);
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

static void event_row(struct evbuffer *b, console_job *j, sqlite3_stmt *ev)
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
        _cleanup_stmt_ sqlite3_stmt *ev = NULL;
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

/* ---- one event's trace ------------------------------------------------------------------------ */

static void headers_table(struct evbuffer *b, sqlite3_stmt *st, int col)
{
        const char *text = col_text(st, col);
        json_t *doc = text ? json_loadb(text, (size_t)sqlite3_column_bytes(st, col), 0, NULL)
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

static void delivery_card(struct evbuffer *b, console_job *j, sqlite3_stmt *d)
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
        html_textn(b, sqlite3_column_blob(d, CQ_DL_BODY_PREVIEW),
                   (size_t)sqlite3_column_bytes(d, CQ_DL_BODY_PREVIEW), ESCAPE_KEEP_NEWLINE);
        evbuffer_add_printf(b, "</pre>");
        html_cli(b, j, "delivery", col_text(d, CQ_DL_ID), "--body", NULL);
        evbuffer_add_printf(b, "</section>\n");
}

static void attempt_card(struct evbuffer *b, console_job *j, sqlite3_stmt *a)
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
                           (size_t)sqlite3_column_bytes(a, CQ_AT_OUTPUT), ESCAPE_KEEP_NEWLINE);
                evbuffer_add_printf(b, "</pre>");
        }
        evbuffer_add_printf(b, "</section>\n");
}

static void hook_card(struct evbuffer *b, console_job *j, sqlite3_stmt *h)
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

static void event_summary(struct evbuffer *b, console_job *j, sqlite3_stmt *e)
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
        _cleanup_stmt_ sqlite3_stmt *t = NULL;
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
        while ((rc = sqlite3_step(t)) == SQLITE_ROW) {
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
                if (sqlite3_column_type(t, CQ_TL_WHAT) == SQLITE_TEXT)
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
        if (rc != SQLITE_DONE)
                html_error(b, "timeline", store_errno(rc), st);
        evbuffer_add_printf(b, "</section>\n");
}

typedef int (*rows_query)(knock_store *s, const char *event_id, sqlite3_stmt **ret);

static void section_rows(struct evbuffer *b, console_job *j, knock_store *st, const char *id,
                         const char *title, rows_query q,
                         void (*card)(struct evbuffer *, console_job *, sqlite3_stmt *))
{
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int r, rc, n = 0;

        evbuffer_add_printf(b, "<section class=\"group\"><h2>%s</h2>\n", title);
        r = q(st, id, &s);
        if (r < 0) {
                html_error(b, title, r, st);
                evbuffer_add_printf(b, "</section>\n");
                return;
        }
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                card(b, j, s);
                n++;
        }
        if (rc != SQLITE_DONE)
                html_error(b, title, store_errno(rc), st);
        else if (n == 0)
                evbuffer_add_printf(b, "<p class=\"empty\">None.</p>\n");
        evbuffer_add_printf(b, "</section>\n");
}

static void hook_attempt_row(struct evbuffer *b, console_job *j, sqlite3_stmt *h)
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
                           (size_t)sqlite3_column_bytes(h, CQ_HA_RESPONSE), ESCAPE_KEEP_NEWLINE);
                evbuffer_add_printf(b, "</pre>");
        }
        evbuffer_add_printf(b, "</section>\n");
}

void page_event(console_job *j, knock_store *st, struct evbuffer *b)
{
        _cleanup_stmt_ sqlite3_stmt *e = NULL;
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
        rc = r < 0 ? SQLITE_ERROR : sqlite3_step(e);
        if (rc != SQLITE_ROW) {
                j->code = rc == SQLITE_DONE ? 404 : 500;
                if (rc == SQLITE_DONE) {
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
        _cleanup_stmt_ sqlite3_stmt *d = NULL;
        int r, rc;

        html_head(b, j, "Delivery", 0);
        if (!j->p.id || no_store(b, st)) {
                j->code = j->p.id ? 503 : 400;
                html_foot(b, j);
                return;
        }
        r = cq_delivery(st, j->p.id, &d);
        rc = r < 0 ? SQLITE_ERROR : sqlite3_step(d);
        if (rc == SQLITE_ROW)
                delivery_card(b, j, d);
        else if (rc == SQLITE_DONE) {
                j->code = 404;
                evbuffer_add_printf(b, "<p class=\"error\">No delivery ");
                html_text(b, j->p.id);
                evbuffer_add_printf(b, ".</p>\n");
        } else
                html_error(b, "delivery", r, st);
        html_foot(b, j);
}

/* ---- rejected, hooks, audit ------------------------------------------------------------------ */

static void rejected_row(struct evbuffer *b, console_job *j, sqlite3_stmt *d)
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
        _cleanup_stmt_ sqlite3_stmt *d = NULL;
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

static void hook_row(struct evbuffer *b, console_job *j, sqlite3_stmt *h)
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
        _cleanup_stmt_ sqlite3_stmt *h = NULL;
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
static void json_cell(struct evbuffer *b, sqlite3_stmt *st, int col)
{
        size_t n = (size_t)sqlite3_column_bytes(st, col);

        if (col_null(st, col)) {
                html_col(b, st, col);
                return;
        }
        evbuffer_add_printf(b, "<code>");
        html_textn(b, col_text(st, col), MIN(n, (size_t)400), 0);
        evbuffer_add_printf(b, "%s</code>", n > 400 ? "…" : "");
}

static void audit_row(struct evbuffer *b, console_job *j, sqlite3_stmt *a)
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
        _cleanup_stmt_ sqlite3_stmt *a = NULL;
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
