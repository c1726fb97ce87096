/* SPDX-License-Identifier: MIT */
/*
 * store-pg-stmt — statements of the PostgreSQL engine: SQLite's parameter
 * syntax, bindings, steps and columns (store-pg.h).
 *
 *  - Parameters. Statements keep SQLite's syntax (`?`, `?NNN`, `:name`) so
 *    the callers' SQL serves both engines; translate() renumbers them to
 *    $n as SQLite numbers them, skipping literals, quoted identifiers and
 *    comments. Values go in text format; a text's type is left to the
 *    server (OID 0: it infers it from the context, a column or an
 *    operator), an integer's is bigint: left to the server, `?2 + ?3` has
 *    no type at all and `? - 5000` becomes a 32-bit integer, which a
 *    millisecond timestamp overflows. A blob goes as bytea in binary
 *    format (no escaping, NUL bytes and all). A NULL keeps the type the
 *    parameter had last, so binding NULL where an integer was does not
 *    make `?2 + ?3` unresolvable again.
 *
 *  - Preparing. The first execution of a statement runs unnamed (Parse,
 *    Bind, Execute in one round trip): most statements made with
 *    store_prepare() run once and are finalized. The second execution
 *    prepares a named statement on the server, which every later one
 *    reuses; finalizing deallocates it (at once when the session is idle,
 *    else when it next is: a DEALLOCATE must never fail inside the caller's
 *    transaction). A statement remembers the connection generation it was
 *    prepared in: after a reconnection it is prepared again.
 *
 *  - Results. The first step fetches the whole result (libpq's default):
 *    SQLite's callers step one statement while running others on the same
 *    connection, which libpq's single-row mode cannot do. Callers that
 *    read many rows page with LIMIT, as knockctl does.
 */
#define _GNU_SOURCE
#include "store-pg-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "util.h"

/* Type OIDs (the server's catalog/pg_type_d.h, which libpq-dev does not ship). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700

#define PARAM_MAX 32766 /* SQLite's SQLITE_MAX_VARIABLE_NUMBER */

typedef struct kpg_param {
        char *heap;        /* owned text or blob; value points here or at num */
        const char *value; /* NULL: SQL NULL */
        int length;
        int format;      /* 0 text, 1 binary */
        Oid type;        /* 0: the server infers it */
        Oid hint;        /* the type of the last non-NULL value, kept for NULL */
        bool referenced; /* sql names it (a ?NNN may leave gaps) */
        char num[24];
} kpg_param;

typedef struct kpg_cell {
        unsigned char *p; /* decoded bytea, NUL terminated */
        size_t n;
} kpg_cell;

enum { ST_READY, ST_ROWS, ST_DONE };

struct kpg_stmt {
        kpg_conn *c; /* NULL once the connection was closed */
        LIST_FIELDS(kpg_stmt);
        char *sql;    /* translated */
        char **names; /* names[i]: parameter i+1's name, NULL for ? and ?NNN */
        kpg_param *params;
        int n_params;
        /* scratch for libpq, n_params each */
        const char **values;
        int *lengths, *formats;
        Oid *types;

        char name[32];       /* the server-side statement, "" when none */
        uint64_t generation; /* the connection's, when name was prepared */
        unsigned executions; /* in that generation: the second prepares */

        int state;
        PGresult *res;
        int row;         /* current row; -1 before the first */
        kpg_cell *cells; /* decoded bytea of the current row, one per column */
        int n_cells;
};

static bool ident_char(char ch)
{
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               ch == '_' || (unsigned char)ch >= 0x80;
}

/* The end of the literal, identifier or comment that starts at p, or p
 * itself when none does. */
static const char *skip_quoted(const char *sql, const char *p)
{
        if (*p == '\'' || *p == '"') {
                char q = *p;
                /* E'…' has backslash escapes; E must not end an identifier. */
                bool escapes = q == '\'' && p > sql && (p[-1] == 'E' || p[-1] == 'e') &&
                               (p - 1 == sql || !ident_char(p[-2]));

                for (p++; *p; p++) {
                        if (escapes && *p == '\\' && p[1])
                                p++;
                        else if (*p == q && p[1] == q)
                                p++;
                        else if (*p == q)
                                return p + 1;
                }
                return p;
        }
        if (p[0] == '-' && p[1] == '-')
                return p + strcspn(p, "\n");
        if (p[0] == '/' && p[1] == '*') {
                int depth = 0; /* PostgreSQL's block comments nest */

                while (*p) {
                        if (p[0] == '/' && p[1] == '*') {
                                depth++;
                                p += 2;
                        } else if (p[0] == '*' && p[1] == '/') {
                                p += 2;
                                if (--depth == 0)
                                        return p;
                        } else
                                p++;
                }
                return p;
        }
        return p;
}

/* Grows names[] and params[] to n parameters (the new ones unnamed). */
static int params_grow(kpg_stmt *st, int n)
{
        char **names;
        kpg_param *params;

        if (n <= st->n_params)
                return 0;
        names = reallocarray(st->names, n, sizeof(*names));
        if (!names)
                return -ENOMEM;
        st->names = names;
        params = reallocarray(st->params, n, sizeof(*params));
        if (!params)
                return -ENOMEM;
        st->params = params;
        for (int i = st->n_params; i < n; i++) {
                names[i] = NULL;
                params[i] = (kpg_param){.value = NULL};
        }
        st->n_params = n;
        return 0;
}

/* The number of the parameter named name[0..len), the next one when new. */
static int param_number(kpg_stmt *st, const char *name, size_t len)
{
        int n = st->n_params + 1, r;

        for (int i = 0; i < st->n_params; i++)
                if (st->names[i] && strlen(st->names[i]) == len &&
                        memcmp(st->names[i], name, len) == 0)
                        return i + 1;
        if (n > PARAM_MAX)
                return -ERANGE;
        r = params_grow(st, n);
        if (r < 0)
                return r;
        st->names[n - 1] = strndup(name, len);
        return st->names[n - 1] ? n : -ENOMEM;
}

/* The number of the `?` or `?NNN` at p (q: its end). */
static int param_positional(kpg_stmt *st, const char *p, const char **q)
{
        long v;
        int r;

        if (p[1] < '0' || p[1] > '9') {
                *q = p + 1;
                v = st->n_params + 1;
        } else
                v = strtol(p + 1, (char **)q, 10);
        if (v < 1 || v > PARAM_MAX)
                return -ERANGE;
        r = params_grow(st, (int)v);
        return r < 0 ? r : (int)v;
}

/*
 * SQLite's numbering: `?` is one more than the largest number so far,
 * `?NNN` is NNN, a `:name` seen before has its number, a new one the next
 * (the largest so far is always n_params). Sets st->sql, names, params and
 * n_params.
 */
static int translate(kpg_stmt *st, const char *sql)
{
        const char *p = sql, *q;
        char *o;
        int n;

        /* Each parameter grows at most from 1 byte (`?`) to 6 ($32766). */
        st->sql = o = malloc(strlen(sql) * 6 + 1);
        if (!o)
                return -ENOMEM;
        while (*p) {
                q = skip_quoted(sql, p);
                if (q != p) {
                        o = mempcpy(o, p, q - p);
                        p = q;
                        continue;
                }
                if (p[0] == ':' && p[1] == ':') { /* a cast */
                        o = mempcpy(o, p, 2);
                        p += 2;
                        continue;
                }
                if (p[0] == ':' && ident_char(p[1])) {
                        for (q = p + 1; ident_char(*q); q++)
                                ;
                        n = param_number(st, p, q - p);
                } else if (p[0] == '?')
                        n = param_positional(st, p, &q);
                else {
                        *o++ = *p++;
                        continue;
                }
                if (n < 0)
                        return n;
                st->params[n - 1].referenced = true;
                o += sprintf(o, "$%d", n);
                p = q;
        }
        *o = '\0';
        if (st->n_params > 0) {
                st->values = calloc(st->n_params, sizeof(*st->values));
                st->lengths = calloc(st->n_params, sizeof(*st->lengths));
                st->formats = calloc(st->n_params, sizeof(*st->formats));
                st->types = calloc(st->n_params, sizeof(*st->types));
                if (!st->values || !st->lengths || !st->formats || !st->types)
                        return -ENOMEM;
        }
        return 0;
}

void kpg_detach_statements(kpg_conn *c)
{
        while (c->stmts) {
                kpg_stmt *st = c->stmts;

                LIST_REMOVE(c->stmts, st);
                st->c = NULL;
        }
}

int kpg_prepare(kpg_conn *c, const char *sql, kpg_stmt **ret)
{
        kpg_stmt *st;
        int r;

        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        st->row = -1;
        r = translate(st, sql);
        if (r < 0) {
                if (r == -ERANGE)
                        kpg_set_error(c, "a parameter number outside 1..%d", PARAM_MAX);
                kpg_finalize(st);
                return r;
        }
        st->c = c;
        LIST_PREPEND(c->stmts, st);
        *ret = st;
        return 0;
}

static void cells_drop(kpg_stmt *st)
{
        for (int i = 0; i < st->n_cells; i++) {
                free(st->cells[i].p);
                st->cells[i].p = NULL;
                st->cells[i].n = 0;
        }
}

void kpg_reset(kpg_stmt *st)
{
        if (!st)
                return;
        cells_drop(st);
        free(st->cells);
        st->cells = NULL;
        st->n_cells = 0;
        PQclear(st->res);
        st->res = NULL;
        st->row = -1;
        st->state = ST_READY;
}

void kpg_finalize(kpg_stmt *st)
{
        if (!st)
                return;
        kpg_reset(st);
        if (st->c) {
                if (st->name[0] && st->generation == st->c->generation)
                        kpg_dealloc(st->c, st->name);
                LIST_REMOVE(st->c->stmts, st);
        }
        kpg_clear_bindings(st);
        for (int i = 0; i < st->n_params && st->names; i++)
                free(st->names[i]);
        free(st->names);
        free(st->params);
        free(st->values);
        free(st->lengths);
        free(st->formats);
        free(st->types);
        free(st->sql);
        free(st);
}

int kpg_param_index(kpg_stmt *st, const char *name)
{
        for (int i = 0; i < st->n_params; i++)
                if (st->names[i] && streq(st->names[i], name))
                        return i + 1;
        return 0;
}

int kpg_param_count(kpg_stmt *st)
{
        return st->n_params;
}

static kpg_param *param(kpg_stmt *st, int idx)
{
        if (idx < 1 || idx > st->n_params)
                return NULL;
        return &st->params[idx - 1];
}

static void param_clear(kpg_param *p)
{
        free(p->heap);
        p->heap = NULL;
        p->value = NULL;
        p->length = 0;
        p->format = 0;
        p->type = p->hint;
}

void kpg_clear_bindings(kpg_stmt *st)
{
        for (int i = 0; i < st->n_params && st->params; i++)
                param_clear(&st->params[i]);
}

int kpg_bind_null(kpg_stmt *st, int idx)
{
        kpg_param *p = param(st, idx);

        if (!p)
                return -ERANGE;
        param_clear(p);
        return 0;
}

int kpg_bind_i64(kpg_stmt *st, int idx, int64_t v)
{
        kpg_param *p = param(st, idx);

        if (!p)
                return -ERANGE;
        param_clear(p);
        p->length = snprintf(p->num, sizeof(p->num), "%" PRId64, v);
        p->value = p->num;
        p->type = p->hint = OID_INT8;
        return 0;
}

static int bind_copy(kpg_stmt *st, int idx, const void *s, size_t len, int format, Oid type)
{
        kpg_param *p = param(st, idx);

        if (!p)
                return -ERANGE;
        if (len > INT32_MAX)
                return -E2BIG;
        param_clear(p);
        p->heap = malloc(len + 1);
        if (!p->heap)
                return -ENOMEM;
        if (len > 0)
                memcpy(p->heap, s, len);
        p->heap[len] = '\0';
        p->value = p->heap;
        p->length = (int)len;
        p->format = format;
        p->type = p->hint = type;
        return 0;
}

int kpg_bind_text(kpg_stmt *st, int idx, const char *s, size_t len)
{
        if (!s)
                return kpg_bind_null(st, idx);
        if (memchr(s, '\0', len))
                return -EILSEQ;
        return bind_copy(st, idx, s, len, 0, 0);
}

int kpg_bind_blob(kpg_stmt *st, int idx, const void *p, size_t n)
{
        if (!p && n > 0)
                return kpg_bind_null(st, idx);
        return bind_copy(st, idx, p, n, 1, OID_BYTEA);
}

/* Runs the statement: unnamed the first time in a session, prepared by
 * name the second, by that name afterwards. */
static PGresult *execute(kpg_stmt *st)
{
        kpg_conn *c = st->c;
        PGresult *res;

        for (int i = 0; i < st->n_params; i++) {
                kpg_param *p = &st->params[i];

                st->values[i] = p->value;
                st->lengths[i] = p->length;
                st->formats[i] = p->format;
                /* A parameter sql never names has no context to infer from. */
                st->types[i] = p->referenced ? p->type : OID_TEXT;
        }
        if (st->generation != c->generation) {
                st->name[0] = '\0';
                st->executions = 0;
                st->generation = c->generation;
        }
        if (!st->name[0] && st->executions++ == 0)
                return PQexecParams(c->pg, st->sql, st->n_params, st->types, st->values,
                        st->lengths, st->formats, 0);
        if (!st->name[0]) {
                char name[sizeof(st->name)];

                snprintf(name, sizeof(name), "kpg_%" PRIu64, c->next_name++);
                res = PQprepare(c->pg, name, st->sql, st->n_params, st->types);
                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        return res;
                PQclear(res);
                memcpy(st->name, name, sizeof(name));
        }
        return PQexecPrepared(
                c->pg, st->name, st->n_params, st->values, st->lengths, st->formats, 0);
}

/*
 * "cached plan must not change result type": a table under a named
 * statement changed its columns (another host's migration, during a rolling
 * upgrade), and the server will not run the old plan again. The statement
 * is prepared anew next time, or every transaction using it would fail.
 */
static void plan_check(kpg_stmt *st, const PGresult *res)
{
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

        if (!st->name[0] || !state || !streq(state, "0A000") || !kpg_connection_ok(st->c))
                return;
        kpg_dealloc(st->c, st->name);
        st->name[0] = '\0';
        st->executions = 0;
}

int kpg_step(kpg_stmt *st)
{
        kpg_conn *c = st->c;
        int r;

        if (!c)
                return -ENOTCONN;
        if (st->state == ST_DONE)
                kpg_reset(st); /* as SQLite: a step after the end runs it again */
        if (st->state == ST_READY) {
                PGTransactionStatusType before;
                PGresult *res;

                r = kpg_ready(c);
                if (r < 0)
                        return r;
                before = PQtransactionStatus(c->pg);
                res = execute(st);
                r = kpg_result_errno(c, res, before);
                if (r < 0) {
                        plan_check(st, res);
                        PQclear(res);
                        return r;
                }
                st->res = res;
                st->n_cells = PQnfields(res);
                st->cells = st->n_cells > 0 ? calloc(st->n_cells, sizeof(*st->cells)) : NULL;
                if (st->n_cells > 0 && !st->cells) {
                        kpg_reset(st);
                        return -ENOMEM;
                }
                st->state = ST_ROWS;
        }
        cells_drop(st);
        if (st->row + 1 < PQntuples(st->res)) {
                st->row++;
                return 1;
        }
        st->row = PQntuples(st->res);
        st->state = ST_DONE;
        return 0;
}

/* ---- columns ----------------------------------------------------------------- */

int kpg_column_count(kpg_stmt *st)
{
        return st->res ? PQnfields(st->res) : 0;
}

static bool has_value(kpg_stmt *st, int col)
{
        return st->res && st->row >= 0 && st->row < PQntuples(st->res) && col >= 0 &&
               col < PQnfields(st->res) && !PQgetisnull(st->res, st->row, col);
}

static bool numeric_fraction(const char *v)
{
        return strpbrk(v, ".eEN") != NULL; /* 1.5, 1e5, NaN */
}

int kpg_column_type(kpg_stmt *st, int col)
{
        if (!has_value(st, col))
                return KPG_NULL;
        switch (PQftype(st->res, col)) {
        case OID_INT2:
        case OID_INT4:
        case OID_INT8:
        case OID_OID:
        case OID_BOOL:
                return KPG_INTEGER;
        case OID_NUMERIC:
                return numeric_fraction(PQgetvalue(st->res, st->row, col)) ? KPG_FLOAT
                                                                           : KPG_INTEGER;
        case OID_FLOAT4:
        case OID_FLOAT8:
                return KPG_FLOAT;
        case OID_BYTEA:
                return KPG_BLOB;
        default:
                return KPG_TEXT;
        }
}

/* A bytea value decoded, kept until the row changes. */
static kpg_cell *cell(kpg_stmt *st, int col)
{
        kpg_cell *x = &st->cells[col];
        unsigned char *raw;
        size_t n;

        if (x->p)
                return x;
        raw = PQunescapeBytea((const unsigned char *)PQgetvalue(st->res, st->row, col), &n);
        if (!raw)
                return NULL;
        x->p = malloc(n + 1);
        if (x->p) {
                memcpy(x->p, raw, n);
                x->p[n] = '\0';
                x->n = n;
        }
        PQfreemem(raw);
        return x->p ? x : NULL;
}

int64_t kpg_column_i64(kpg_stmt *st, int col)
{
        const char *v;
        double d;

        switch (kpg_column_type(st, col)) {
        case KPG_NULL:
        case KPG_BLOB:
                return 0;
        case KPG_FLOAT:
                d = kpg_column_double(st, col);
                if (isnan(d))
                        return 0;
                if (d >= 9223372036854775807.0)
                        return INT64_MAX;
                if (d <= -9223372036854775808.0)
                        return INT64_MIN;
                return (int64_t)d;
        default:
                v = PQgetvalue(st->res, st->row, col);
                if (PQftype(st->res, col) == OID_BOOL)
                        return *v == 't';
                return strtoll(v, NULL, 10);
        }
}

double kpg_column_double(kpg_stmt *st, int col)
{
        const char *v;

        switch (kpg_column_type(st, col)) {
        case KPG_NULL:
        case KPG_BLOB:
                return 0.0;
        default:
                v = PQgetvalue(st->res, st->row, col);
                if (PQftype(st->res, col) == OID_BOOL)
                        return *v == 't' ? 1.0 : 0.0;
                return strtod(v, NULL);
        }
}

const char *kpg_column_text(kpg_stmt *st, int col)
{
        kpg_cell *x;

        if (!has_value(st, col))
                return NULL;
        switch (PQftype(st->res, col)) {
        case OID_BOOL:
                return *PQgetvalue(st->res, st->row, col) == 't' ? "1" : "0";
        case OID_BYTEA:
                x = cell(st, col);
                return x ? (const char *)x->p : NULL;
        default:
                return PQgetvalue(st->res, st->row, col);
        }
}

size_t kpg_column_bytes(kpg_stmt *st, int col)
{
        kpg_cell *x;

        if (!has_value(st, col))
                return 0;
        switch (PQftype(st->res, col)) {
        case OID_BOOL:
                return 1;
        case OID_BYTEA:
                x = cell(st, col);
                return x ? x->n : 0;
        default:
                return PQgetlength(st->res, st->row, col);
        }
}

const void *kpg_column_blob(kpg_stmt *st, int col)
{
        return kpg_column_text(st, col);
}
