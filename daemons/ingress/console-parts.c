/* SPDX-License-Identifier: MIT */
/*
 * console-parts — what the console's pages share: definition lists, cells
 * from a row, paging links and list runs. Rendered on the console's thread;
 * every value goes through the HTML escaper.
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console-internal.h"
#include "escape.h"

/* ---- shared parts ---------------------------------------------------------------------- */

int parse_int(const char *s, int min, int max, int dflt)
{
        uint64_t v;

        if (!s || parse_u64_strict(s, &v) < 0)
                return dflt;
        return v < (uint64_t)min ? min : v > (uint64_t)max ? max : (int)v;
}

int64_t col_i64(db_stmt *st, int col)
{
        return stmt_col_i64(st, col);
}

bool col_null(db_stmt *st, int col)
{
        return stmt_col_type(st, col) == DB_NULL;
}

/* "<dt>name</dt><dd>" … "</dd>" */
void dt(struct evbuffer *b, const char *name)
{
        evbuffer_add_printf(b, "<dt>%s</dt><dd>", name);
}

void dd_end(struct evbuffer *b)
{
        evbuffer_add_printf(b, "</dd>");
}

void dd_col(struct evbuffer *b, const char *name, db_stmt *st, int col)
{
        dt(b, name);
        html_col(b, st, col);
        dd_end(b);
}

void dd_time(struct evbuffer *b, const char *name, db_stmt *st, int col, int64_t now)
{
        dt(b, name);
        html_time(b, col_null(st, col) ? 0 : col_i64(st, col), now);
        dd_end(b);
}

/* The row's cursor, for the "older" link of a page that ended at it. */
void page_cursor(db_stmt *st, int at_col, int id_col, char *out, size_t len)
{
        snprintf(out, len, "%lld.%s", (long long)col_i64(st, at_col),
                 col_text(st, id_col) ? col_text(st, id_col) : "");
}

/* "Older" link: the page's path with its filters and before=cursor. */
void older_link(struct evbuffer *b, const char *path, const char *const *names,
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

bool no_store(struct evbuffer *b, knock_store *st)
{
        if (st)
                return false;
        evbuffer_add_printf(b, "<p class=\"error\">The database cannot be opened read-only "
                               "(has knock-ingress stored anything yet?).</p>\n");
        return true;
}

/* Before a list's query: the page size and cursor from the parameters, and
 * whether the database can be read (false: the page is finished). */
bool list_open(struct evbuffer *b, console_job *j, knock_store *st, cq_page *p)
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
void list_rows(struct evbuffer *b, console_job *j, knock_store *st, db_stmt *s,
               const list_spec *ls, int limit, const char *const *values)
{
        char cursor[80] = "";
        int rc, rows = 0;

        evbuffer_add_printf(b, "%s", ls->head);
        while ((rc = stmt_step(s)) > 0) {
                rows++;
                evbuffer_add_printf(b, "<tr>");
                ls->row(b, j, s);
                evbuffer_add_printf(b, "</tr>\n");
                page_cursor(s, ls->at_col, ls->id_col, cursor, sizeof(cursor));
        }
        evbuffer_add_printf(b, "</tbody></table>\n");
        if (rc < 0)
                html_error(b, ls->what, rc, st);
        else if (rows == 0)
                evbuffer_add_printf(b, "<p class=\"empty\">%s</p>\n", ls->empty);
        else if (rows == limit)
                older_link(b, ls->path, ls->names, values, ls->n_names, cursor);
}

const char *status_param(console_job *j, struct evbuffer *b)
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

void event_link(struct evbuffer *b, db_stmt *st, int col)
{
        if (col_null(st, col))
                evbuffer_add_printf(b, "<span class=\"none\">–</span>");
        else
                html_link(b, "/event", "id", col_text(st, col), col_text(st, col));
}
