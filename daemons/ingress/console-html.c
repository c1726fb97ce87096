/* SPDX-License-Identifier: MIT */
/*
 * console-html — what every console page is made of. Markup comes from
 * constant formats; anything else passes through html_text() (escape.h,
 * ESCAPE_HTML): a stored header, a body, a provider's id or an event type
 * is text in the page and can never become an element or an attribute.
 * URLs carry values URL-encoded, then escaped again as attribute text.
 */
#define _GNU_SOURCE
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "console-internal.h"
#include "escape.h"
#include "knock-build.h"

/* No inline script or style anywhere: the live view's script and the style
 * sheet are files of the console's own origin. */
#define CSP                                                                                        \
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"                \
        " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

void console_headers(struct evhttp_request *req, const char *content_type)
{
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);

        evhttp_add_header(h, "Content-Type", content_type);
        evhttp_add_header(h, "Cache-Control", "no-store");
        evhttp_add_header(h, "Content-Security-Policy", CSP);
        evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
        evhttp_add_header(h, "X-Frame-Options", "DENY");
        evhttp_add_header(h, "Referrer-Policy", "same-origin");
}

void html_textn(struct evbuffer *b, const char *s, size_t len, unsigned flags)
{
        _cleanup_free_ char *e = NULL;

        if (!s)
                return;
        e = escape_text(s, len, flags | ESCAPE_HTML);
        if (e)
                evbuffer_add(b, e, strlen(e));
}

void html_text(struct evbuffer *b, const char *s)
{
        if (s)
                html_textn(b, s, strlen(s), 0);
}

const char *col_text(db_stmt *st, int col)
{
        return stmt_col_text(st, col);
}

void html_col(struct evbuffer *b, db_stmt *st, int col)
{
        const char *t = col_text(st, col);

        if (!t)
                evbuffer_add_printf(b, "<span class=\"none\">–</span>");
        else
                html_textn(b, t, (size_t)stmt_col_bytes(st, col), 0);
}

void html_printf(struct evbuffer *b, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        evbuffer_add_vprintf(b, fmt, ap);
        va_end(ap);
}

void html_duration(struct evbuffer *b, int64_t ms)
{
        double v = (double)(ms < 0 ? -ms : ms);

        if (v < 1000)
                evbuffer_add_printf(b, "%lld ms", (long long)v);
        else if (v < 60000)
                evbuffer_add_printf(b, "%.1f s", v / 1000);
        else if (v < 3600000)
                evbuffer_add_printf(b, "%.0f min", v / 60000);
        else if (v < 86400000)
                evbuffer_add_printf(b, "%.1f h", v / 3600000);
        else
                evbuffer_add_printf(b, "%.1f d", v / 86400000);
}

void html_time(struct evbuffer *b, int64_t ms, int64_t now)
{
        char iso[40], shown[32];
        time_t t = (time_t)(ms / 1000);
        struct tm tm;

        if (ms <= 0) {
                evbuffer_add_printf(b, "<span class=\"none\">–</span>");
                return;
        }
        format_rfc3339(ms, iso, sizeof(iso));
        gmtime_r(&t, &tm);
        strftime(shown, sizeof(shown), "%Y-%m-%d %H:%M:%SZ", &tm);
        evbuffer_add_printf(b, "<time datetime=\"%s\">%s</time> <span class=\"age\">(", iso, shown);
        html_duration(b, now - ms);
        evbuffer_add_printf(b, "%s)</span>", ms > now ? " from now" : " ago");
}

void html_bytes(struct evbuffer *b, int64_t n)
{
        if (n < 1024)
                evbuffer_add_printf(b, "%lld B", (long long)n);
        else if (n < 1024 * 1024)
                evbuffer_add_printf(b, "%.1f KiB", (double)n / 1024);
        else if (n < 1024LL * 1024 * 1024)
                evbuffer_add_printf(b, "%.1f MiB", (double)n / (1024 * 1024));
        else
                evbuffer_add_printf(b, "%.1f GiB", (double)n / (1024.0 * 1024 * 1024));
}

void html_status(struct evbuffer *b, const char *status)
{
        static const char *const known[] = {
                "received", "processing", "failed",  "dead",    "ignored", "handled",
                "pending",  "delivered",  "running", "success", "tempfail", "timeout",
                "permanent", "interrupted", "queued", "lost",
        };
        const char *cls = "other";

        for (size_t i = 0; status && i < ELEMENTSOF(known); i++)
                if (streq(status, known[i]))
                        cls = known[i];
        evbuffer_add_printf(b, "<span class=\"st st-%s\">", cls);
        html_text(b, status ? status : "–");
        evbuffer_add_printf(b, "</span>");
}

char *url_encode(const char *s)
{
        return evhttp_uriencode(s, -1, 0);
}

void html_link(struct evbuffer *b, const char *path, const char *name, const char *value,
               const char *text)
{
        _cleanup_free_ char *enc = value ? url_encode(value) : NULL;

        evbuffer_add_printf(b, "<a href=\"%s", path);
        if (enc) {
                evbuffer_add_printf(b, "?%s=", name);
                html_text(b, enc);
        }
        evbuffer_add_printf(b, "\">");
        html_text(b, text);
        evbuffer_add_printf(b, "</a>");
}

void html_head(struct evbuffer *b, const console_job *j, const char *title, int refresh_s)
{
        evbuffer_add_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                               "<meta name=\"viewport\" content=\"width=device-width\">"
                               "<meta name=\"referrer\" content=\"same-origin\">");
        if (refresh_s > 0)
                evbuffer_add_printf(b, "<meta http-equiv=\"refresh\" content=\"%d\">", refresh_s);
        evbuffer_add_printf(b, "<title>");
        html_text(b, title);
        evbuffer_add_printf(b, " · ");
        html_text(b, j->endpoint);
        evbuffer_add_printf(b, " · knock</title><link rel=\"stylesheet\" href=\"/static/console.css\">"
                               "</head>\n<body data-page=\"%s\"><header><a class=\"brand\" "
                               "href=\"/\">knock</a> <span class=\"endpoint\">",
                            j->route->path + 1);
        html_text(b, j->endpoint);
        evbuffer_add_printf(b, "</span><nav>");
        for (const console_route *r = console_routes; r->path; r++)
                if (r->nav)
                        evbuffer_add_printf(b, "<a href=\"%s\"%s>%s</a>", r->path,
                                            r == j->route ? " class=\"on\"" : "", r->nav);
        evbuffer_add_printf(b, "</nav></header>\n<main><h1>");
        html_text(b, title);
        evbuffer_add_printf(b, "</h1>\n");
}

void html_foot(struct evbuffer *b, const console_job *j)
{
        char at[40];

        format_rfc3339(j->now, at, sizeof(at));
        evbuffer_add_printf(b, "</main>\n<footer>knock %s · read-only: every change is made with "
                               "knockctl, which audits it · <time datetime=\"%s\">%s</time>"
                               "</footer>\n</body></html>\n",
                            KNOCK_VERSION, at, at);
}

/* One shell word, quoted when it needs it ('…', ' as '\''), then escaped. */
static void cli_word(struct evbuffer *b, const char *w)
{
        bool plain = *w && strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789_-.,:/=@+%") == strlen(w);

        if (plain) {
                html_text(b, w);
                return;
        }
        evbuffer_add_printf(b, "&#39;");
        for (const char *p = w;;) {
                size_t n = strcspn(p, "'");

                html_textn(b, p, n, 0);
                if (!p[n])
                        break;
                evbuffer_add_printf(b, "&#39;\\&#39;&#39;");
                p += n + 1;
        }
        evbuffer_add_printf(b, "&#39;");
}

void html_cli_words(struct evbuffer *b, const console_job *j, const char *const *words, size_t n)
{
        evbuffer_add_printf(b, "<p class=\"cli\"><code>knockctl -e ");
        cli_word(b, j->endpoint);
        for (size_t i = 0; i < n; i++) {
                evbuffer_add_printf(b, " ");
                cli_word(b, words[i]);
        }
        evbuffer_add_printf(b, "</code></p>\n");
}

void html_cli(struct evbuffer *b, const console_job *j, const char *verb, ...)
{
        const char *words[16] = {verb};
        size_t n = 1;
        va_list ap;

        va_start(ap, verb);
        for (const char *w; n < ELEMENTSOF(words) && (w = va_arg(ap, const char *));)
                words[n++] = w;
        va_end(ap);
        html_cli_words(b, j, words, n);
}

void html_error(struct evbuffer *b, const char *what, int r, knock_store *st)
{
        evbuffer_add_printf(b, "<p class=\"error\">");
        html_text(b, what);
        evbuffer_add_printf(b, ": ");
        if (st && cq_interrupted(st))
                evbuffer_add_printf(b, "the query ran longer than %d ms; narrow the filters",
                                    CONSOLE_QUERY_MS);
        else if (st)
                html_text(b, store_errmsg(st));
        else
                html_text(b, strerror(r < 0 ? -r : r));
        evbuffer_add_printf(b, "</p>\n");
}
