/* SPDX-License-Identifier: MIT */
/*
 * output — the one way knockctl turns rows into text.
 *
 * Every verb first builds JSON values from its rows (fields_row(), driven by
 * a field_spec table that also writes the SELECT list, so a column can never
 * be read under the wrong name), then prints either that JSON as the single
 * --json document or a human rendering of the very same values. Human and
 * machine output therefore cannot disagree.
 *
 * Promises:
 *  - times are RFC 3339 UTC strings, absent values are JSON null ("-" for
 *    humans), booleans are true/false ("yes"/"no");
 *  - stored text that is not valid UTF-8 (handler output, a provider's odd
 *    header) is never dropped and never produces invalid JSON: bad sequences
 *    become U+FFFD;
 *  - table cells never contain a newline or a tab, so one row is one line;
 *  - human output never carries a control character a client chose: text is
 *    escaped the way systemctl and journalctl do (\x1b, \n, \u202e; see
 *    escape.h) in every cell, every "key: value" line and every id echoed;
 *    the --json document carries the stored text unchanged (JSON escapes it);
 *  - --wide (arg_wide) never truncates a cell; otherwise long free-text
 *    cells end in "…";
 *  - reals in the --json document are printed with at most 15 significant
 *    digits: ages computed from milliseconds read 0.637, not
 *    0.63700000000000001.
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "knockctl.h"

bool arg_wide;

void ctl_error(const char *fmt, ...)
{
        va_list ap;

        fputs("knockctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

void ctl_error_no_such(const char *what, const char *id, const char *endpoint)
{
        _cleanup_free_ char *e = ctl_escape(id, 0);

        ctl_error("no %s '%s' in endpoint %s", what, e ? e : "?", endpoint);
}

char *fields_select(const field_spec *f, size_t n)
{
        size_t len = 1, off = 0;
        char *s;

        for (size_t i = 0; i < n; i++)
                len += strlen(f[i].sql) + 2;
        s = malloc(len);
        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++)
                off += (size_t)sprintf(s + off, "%s%s", i > 0 ? ", " : "", f[i].sql);
        s[off] = 0;
        return s;
}

json_t *json_string_lossy(const char *s, size_t len)
{
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;
        json_t *v;

        v = json_stringn(s, len);
        if (v)
                return v;
        buf = utf8_lossy(s, len, false, &n, NULL);
        return buf ? json_stringn(buf, n) : NULL;
}

static json_t *column_sha256(db_stmt *st, int col)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        unsigned md_len = 0;
        const void *blob;
        int len;

        blob = stmt_col_blob(st, col);
        len = stmt_col_bytes(st, col);
        if (!EVP_Digest(len > 0 ? blob : "", (size_t)len, md, &md_len, EVP_sha256(), NULL))
                return NULL;
        hex_encode(md, md_len, hex);
        return json_string(hex);
}

json_t *fields_row(db_stmt *st, const field_spec *f, size_t n)
{
        json_t *o = json_object();

        if (!o)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                int col = (int)i;
                json_t *v;

                if (stmt_col_type(st, col) == DB_NULL)
                        v = json_null();
                else
                        switch (f[i].kind) {
                        case F_TEXT:
                                v = json_string_lossy(stmt_col_text(st, col),
                                        (size_t)stmt_col_bytes(st, col));
                                break;
                        case F_INT:
                                v = json_integer(stmt_col_i64(st, col));
                                break;
                        case F_REAL:
                                v = json_real(stmt_col_double(st, col));
                                break;
                        case F_TIME: {
                                char buf[64];
                                v = json_string(format_rfc3339(
                                        stmt_col_i64(st, col), buf, sizeof(buf)));
                                break;
                        }
                        case F_BOOL:
                                v = json_boolean(stmt_col_i64(st, col) != 0);
                                break;
                        case F_JSON: {
                                const char *t = stmt_col_text(st, col);
                                size_t len = (size_t)stmt_col_bytes(st, col);

                                v = json_loadb(t, len, JSON_DECODE_ANY, NULL);
                                if (!v)
                                        v = json_string_lossy(t, len);
                                break;
                        }
                        case F_SHA256:
                                v = column_sha256(st, col);
                                break;
                        default:
                                v = json_null();
                        }
                if (!v || json_object_set_new(o, f[i].name, v) < 0) {
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}

int fields_rows(db_stmt *st, const field_spec *f, size_t n, json_t **ret)
{
        json_t *a = json_array();
        int rc;

        if (!a)
                return -ENOMEM;
        while ((rc = stmt_step(st)) > 0) {
                json_t *o = fields_row(st, f, n);

                if (!o || json_array_append_new(a, o) < 0) {
                        json_decref(a);
                        return -ENOMEM;
                }
        }
        if (rc < 0) {
                json_decref(a);
                return rc;
        }
        *ret = a;
        return 0;
}

int ctl_select(knockctl *c, const field_spec *f, size_t n, const char *rest, db_stmt **ret)
{
        _cleanup_free_ char *cols = fields_select(f, n);
        _cleanup_free_ char *sql = NULL;
        int r;

        if (!cols || asprintf(&sql, "SELECT %s %s", cols, rest) < 0) {
                sql = NULL;
                return -ENOMEM;
        }
        r = store_prepare(c->store, sql, ret);
        if (r < 0) {
                ctl_error("query failed: %s", store_errmsg(c->store));
                return KNOCKCTL_FAILED;
        }
        ctl_bind_common(c, *ret);
        return 0;
}

char *ctl_escape(const char *s, unsigned flags)
{
        return escape_text(s ? s : "", s ? strlen(s) : 0, flags);
}

char *value_to_text(json_t *v)
{
        _cleanup_free_ char *dump = NULL;
        char *s = NULL;

        switch (json_typeof(v)) {
        case JSON_NULL:
                return strdup("-");
        case JSON_STRING:
                return escape_text(json_string_value(v), json_string_length(v), 0);
        case JSON_INTEGER:
                if (asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
                        return NULL;
                return s;
        case JSON_REAL:
                if (asprintf(&s, "%.1f", json_real_value(v)) < 0)
                        return NULL;
                return s;
        case JSON_TRUE:
                return strdup("yes");
        case JSON_FALSE:
                return strdup("no");
        default:
                /* jansson escapes C0 controls, not DEL, C1 or the bidi overrides. */
                dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                return dump ? escape_text(dump, strlen(dump), 0) : NULL;
        }
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t text_width(const char *s)
{
        size_t w = 0;

        for (; *s; s++)
                if (((unsigned char)*s & 0xc0) != 0x80)
                        w++;
        return w;
}

/* One line, at most max columns (0 or --wide: unbounded), ending in "…" when cut. */
static char *cell_text(json_t *v, size_t max)
{
        char *s = value_to_text(v), *t;
        size_t w = 0, cut = 0;

        if (!s)
                return NULL;
        /* value_to_text() escaped every newline and tab already. */
        if (max == 0 || arg_wide || text_width(s) <= max)
                return s;
        for (char *p = s; *p; p++)
                if (((unsigned char)*p & 0xc0) != 0x80 && ++w == max) {
                        /* p starts the last visible character: "…" replaces it. */
                        cut = (size_t)(p - s);
                        break;
                }
        t = realloc(s, cut + sizeof("…"));
        if (!t)
                return s;
        strcpy(t + cut, "…");
        return t;
}

void print_table(json_t *rows, const column *cols, size_t n)
{
        size_t n_rows = json_array_size(rows);
        _cleanup_free_ size_t *width = calloc(n, sizeof(size_t));
        _cleanup_free_ char **cells = calloc(n_rows * n + 1, sizeof(char *));

        if (!width || !cells)
                return;
        for (size_t j = 0; j < n; j++)
                width[j] = text_width(cols[j].header);
        for (size_t i = 0; i < n_rows; i++)
                for (size_t j = 0; j < n; j++) {
                        json_t *v = json_object_get(json_array_get(rows, i), cols[j].key);
                        char *t = cell_text(v ? v : json_null(), cols[j].max);

                        cells[i * n + j] = t;
                        if (t)
                                width[j] = MAX(width[j], text_width(t));
                }

        for (size_t j = 0; j < n; j++)
                printf("%s%-*s", j ? "  " : "", j + 1 < n ? (int)width[j] : 0, cols[j].header);
        putchar('\n');
        for (size_t i = 0; i < n_rows; i++) {
                for (size_t j = 0; j < n; j++) {
                        const char *t = cells[i * n + j] ? cells[i * n + j] : "?";
                        size_t pad = width[j] - MIN(width[j], text_width(t));

                        printf("%s%s", j ? "  " : "", t);
                        if (j + 1 < n)
                                printf("%*s", (int)pad, "");
                }
                putchar('\n');
        }
        for (size_t i = 0; i < n_rows * n; i++)
                free(cells[i]);
}

int print_list(knockctl *c, json_t *rows, const column *cols, size_t n, int64_t limit,
        const char *what)
{
        if (c->json)
                return print_json(rows);
        print_table(rows, cols, n);
        if (limit > 0 && (int64_t)json_array_size(rows) == limit)
                fprintf(stderr, "(showing the newest %" PRId64 " %s; --limit 0 shows all)\n", limit,
                        what);
        return 0;
}

void print_object(json_t *obj, const char *const *keys)
{
        const char *key;
        json_t *v;
        size_t w = 0;

        if (keys) {
                for (size_t i = 0; keys[i]; i++)
                        w = MAX(w, strlen(keys[i]));
                for (size_t i = 0; keys[i]; i++) {
                        _cleanup_free_ char *t = NULL;

                        v = json_object_get(obj, keys[i]);
                        t = value_to_text(v ? v : json_null());
                        printf("%*s: %s\n", (int)w, keys[i], t ? t : "?");
                }
                return;
        }
        json_object_foreach(obj, key, v) w = MAX(w, strlen(key));
        json_object_foreach(obj, key, v)
        {
                _cleanup_free_ char *t = value_to_text(v), *k = ctl_escape(key, 0);

                printf("%*s: %s\n", (int)w, k ? k : "?", t ? t : "?");
        }
}

int print_json(json_t *doc)
{
        if (!doc)
                return -ENOMEM;
        if (json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15)) < 0)
                return -EIO;
        putchar('\n');
        return 0;
}
