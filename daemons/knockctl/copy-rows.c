/* SPDX-License-Identifier: MIT */
/*
 * copy-rows — the rows of copy-to-postgresql (copy.h).
 *
 * Promises:
 *  - every column of every table but daemons is copied as it is: ids,
 *    statuses, times, claims, JSON texts, bodies byte for byte (an empty
 *    body stays empty, not NULL). The column lists below are this build's
 *    schema (STORE_SCHEMA_VERSION, checked at compile time);
 *  - events, attempts and audit are inserted in SQLite's rowid order, so
 *    PostgreSQL's rowid column (an identity, store-pg-migrate.c) numbers
 *    them in the same order: the claim's first-in-first-out ties and the
 *    listings' order break the same way on both engines;
 *  - rows go in batches: one INSERT of COPY_BATCH_ROWS rows and one of a
 *    single row, each prepared once per table; a batch holds at most
 *    COPY_BATCH_BYTES of values (bigger rows go one by one), so memory is
 *    bounded by the largest body, not by the table;
 *  - text PostgreSQL cannot hold is stored with U+FFFD for each byte that
 *    is not UTF-8, and for a NUL byte; SQLite keeps such text as it came
 *    (what a handler printed, what a hook receiver answered). Such values
 *    are counted per column (copy_repaired_json());
 *  - the target's meta and pauses rows are kept when their key is also in
 *    the source (the target's is the newer fact; counted as kept); every
 *    other row of the target stays as it is, and the copied ones join it;
 *  - verification: a SHA-256 per table over every value as sent, in the
 *    order sent, against the same digest of the rows PostgreSQL returns
 *    after COMMIT in that order (rowid for the tables that have one, so the
 *    order is checked too; bodies as PostgreSQL's sha256() of the stored
 *    bytes, so no body travels twice), and the tables' row counts.
 */
#define _GNU_SOURCE
#include "copy.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "knockctl.h"
#include "util.h"

#define COPY_BATCH_ROWS 100
#define COPY_BATCH_BYTES (4u << 20)
#define VERIFY_PAGE_ROWS 500

_Static_assert(STORE_SCHEMA_VERSION == 3,
        "copy-rows.c copies schema version 3: add the new version's tables and columns");

typedef enum col_kind { C_INT, C_TEXT, C_BLOB } col_kind;

typedef struct copy_column {
        const char *name;
        col_kind kind;
} copy_column;

typedef enum table_order {
        ORDER_ROWID, /* inserted and read back in SQLite's rowid order */
        ORDER_KEY,   /* by the first column (the primary key), read back in pages */
        ORDER_SMALL, /* by the first column, read back whole; the target's keys are kept */
} table_order;

typedef struct copy_table {
        const char *name;
        table_order order;
        const copy_column *cols; /* cols[0] is the primary key */
        size_t n_cols;
        bool must_be_empty; /* in the target, before the copy */
} copy_table;

#define I C_INT
#define T C_TEXT
#define COLS(...)                                                                                  \
        .cols = (const copy_column[]){__VA_ARGS__},                                                \
        .n_cols = sizeof((const copy_column[]){__VA_ARGS__}) / sizeof(copy_column)

/* In the order of the foreign keys: events before what refers to them. */
static const copy_table tables[] = {
        {"events", ORDER_ROWID,
                COLS({"id", T}, {"provider_event_id", T}, {"event_type", T}, {"status", T},
                        {"status_reason", T}, {"delivery_id", T}, {"run_delivery_id", T},
                        {"attempt_count", I}, {"received_at", I}, {"updated_at", I},
                        {"next_attempt_at", I}, {"claimed_by", T}, {"claim_until", I},
                        {"last_error", T}, {"finished_at", I}, {"order_key", T}),
                .must_be_empty = true},
        {"deliveries", ORDER_KEY,
                COLS({"id", T}, {"event_id", T}, {"received_at", I}, {"signature_valid", I},
                        {"verify_error", T}, {"http_status", I}, {"provider_event_id", T},
                        {"event_type", T}, {"request_id", T}, {"method", T}, {"uri", T},
                        {"remote", T}, {"content_type", T}, {"headers", T}, {"body", C_BLOB},
                        {"body_bytes", I}, {"duplicate", I}, {"handshake", I}),
                .must_be_empty = true},
        {"attempts", ORDER_ROWID,
                COLS({"id", T}, {"event_id", T}, {"delivery_id", T}, {"attempt", I}, {"worker", T},
                        {"handler", T}, {"started_at", I}, {"ended_at", I}, {"outcome", T},
                        {"exit_code", I}, {"signal", I}, {"http_status", I}, {"error", T},
                        {"output", T}),
                .must_be_empty = true},
        {"hooks", ORDER_KEY,
                COLS({"id", T}, {"event_id", T}, {"type", T}, {"payload", T}, {"state", T},
                        {"attempt_count", I}, {"max_attempts", I}, {"created_at", I},
                        {"updated_at", I}, {"next_attempt_at", I}, {"claimed_by", T},
                        {"claim_until", I}, {"last_status", I}, {"last_error", T},
                        {"last_attempt_at", I}, {"delivered_at", I}),
                .must_be_empty = true},
        {"hook_attempts", ORDER_KEY,
                COLS({"id", T}, {"hook_id", T}, {"at", I}, {"status", I}, {"duration_ms", I},
                        {"response", T}, {"error", T}),
                .must_be_empty = true},
        {"audit", ORDER_ROWID,
                COLS({"id", T}, {"at", I}, {"actor", T}, {"action", T}, {"filters", T},
                        {"counts", T}, {"ids", T})},
        {"meta", ORDER_SMALL, COLS({"key", T}, {"value", T})},
        {"pauses", ORDER_SMALL,
                COLS({"route", T}, {"kind", T}, {"since", I}, {"paused_by", T}, {"reason", T},
                        {"probe_at", I}, {"probing", I})},
};

#undef I
#undef T
#undef COLS

#define N_TABLES ELEMENTSOF(tables)
#define MAX_COLS 18 /* deliveries' (copy_new() checks every table) */

/* One value as read from SQLite and sent to PostgreSQL. */
typedef struct value {
        int type; /* DB_NULL, DB_INTEGER, DB_TEXT (UTF-8, NUL-terminated), DB_BLOB */
        int64_t i;
        char *p; /* malloc'd (a copy's value) or borrowed (a row read back) */
        size_t len;
} value;

typedef struct table_state {
        const copy_table *t;
        int64_t rows;         /* copied */
        int64_t count_before; /* the target's rows before the copy */
        int64_t rowid_before; /* ORDER_ROWID: the target's largest rowid before */
        char **kept;          /* ORDER_SMALL: the target's keys before (kept as they are) */
        size_t n_kept;
        int64_t n_kept_source; /* source rows not copied: their key was in kept */
        int64_t repaired[MAX_COLS];
        unsigned char digest[EVP_MAX_MD_SIZE];
} table_state;

struct copy_state {
        knock_store *src, *dst;
        table_state ts[N_TABLES];
        char message[512];
};

static int fail(copy_state *x, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(copy_state *x, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(x->message, sizeof(x->message), fmt, ap);
        va_end(ap);
        return r;
}

int copy_new(knock_store *src, knock_store *dst, copy_state **ret)
{
        copy_state *x = calloc(1, sizeof(*x));

        if (!x)
                return -ENOMEM;
        x->src = src;
        x->dst = dst;
        for (size_t i = 0; i < N_TABLES; i++) {
                if (tables[i].n_cols > MAX_COLS) {
                        free(x);
                        return -E2BIG;
                }
                x->ts[i].t = &tables[i];
        }
        *ret = x;
        return 0;
}

copy_state *copy_free(copy_state *x)
{
        if (!x)
                return NULL;
        for (size_t i = 0; i < N_TABLES; i++)
                strv_free(x->ts[i].kept, x->ts[i].n_kept);
        free(x);
        return NULL;
}

void copy_freep(copy_state **x)
{
        *x = copy_free(*x);
}

const char *copy_message(copy_state *x)
{
        return x->message;
}

/* ---- SQL text ------------------------------------------------------------------------ */

/* "a, b, c", with sha256(x) for the blobs when digests is set (malloc'd). */
static char *column_list(const copy_table *t, bool digests)
{
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);

        if (!f)
                return NULL;
        for (size_t i = 0; i < t->n_cols; i++)
                fprintf(f, "%s%s%s%s", i ? ", " : "",
                        digests && t->cols[i].kind == C_BLOB ? "sha256(" : "", t->cols[i].name,
                        digests && t->cols[i].kind == C_BLOB ? ")" : "");
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

/* INSERT INTO t (cols) VALUES (?, …), … for rows rows (malloc'd). */
static char *insert_sql(const copy_table *t, size_t rows)
{
        _cleanup_free_ char *cols = column_list(t, false);
        char *s = NULL;
        size_t len = 0;
        FILE *f;

        if (!cols || !(f = open_memstream(&s, &len)))
                return NULL;
        fprintf(f, "INSERT INTO %s (%s) VALUES ", t->name, cols);
        for (size_t r = 0; r < rows; r++) {
                fputs(r ? ", (" : "(", f);
                for (size_t i = 0; i < t->n_cols; i++)
                        fputs(i ? ", ?" : "?", f);
                fputc(')', f);
        }
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

static int prepare_v(knock_store *s, db_stmt **ret, const char *fmt, va_list ap) _printf_(3, 0);
static int prepare_v(knock_store *s, db_stmt **ret, const char *fmt, va_list ap)
{
        _cleanup_free_ char *sql = NULL;

        if (vasprintf(&sql, fmt, ap) < 0)
                return -ENOMEM;
        return store_prepare(s, sql, ret);
}

static int prepare_fmt(knock_store *s, db_stmt **ret, const char *fmt, ...) _printf_(3, 4);
static int prepare_fmt(knock_store *s, db_stmt **ret, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = prepare_v(s, ret, fmt, ap);
        va_end(ap);
        return r;
}

/* The first column of the one row of a query (store_query_i64()). */
static int query_i64_fmt(knock_store *s, int64_t *ret, const char *fmt, ...) _printf_(3, 4);
static int query_i64_fmt(knock_store *s, int64_t *ret, const char *fmt, ...)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = prepare_v(s, &st, fmt, ap);
        va_end(ap);
        if (r >= 0)
                r = stmt_step(st);
        if (r <= 0)
                return r ?: -ENODATA;
        *ret = stmt_col_i64(st, 0);
        return 0;
}

/* ---- values --------------------------------------------------------------------------- */

static void value_clear(value *v)
{
        free(v->p);
        *v = (value){.type = DB_NULL};
}

static void values_clear(value *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                value_clear(&v[i]);
}

/* Column col of the source's current row, as the target's column wants it. */
static int value_read(copy_state *x, table_state *ts, db_stmt *st, int col, value *v)
{
        const copy_column *k = &ts->t->cols[col];
        int type = stmt_col_type(st, col);
        const void *p;
        size_t n;
        bool repaired;

        *v = (value){.type = DB_NULL};
        if (type == DB_NULL)
                return 0;
        switch (k->kind) {
        case C_INT:
                if (type != DB_INTEGER)
                        return fail(x, -EBADMSG, "%s.%s of row %s holds no integer", ts->t->name,
                                k->name, stmt_col_text(st, 0));
                *v = (value){.type = DB_INTEGER, .i = stmt_col_i64(st, col)};
                return 0;
        case C_TEXT:
                p = stmt_col_text(st, col); /* text first: then bytes counts the text */
                n = stmt_col_bytes(st, col);
                /* What PostgreSQL's text can hold: U+FFFD for each byte
                 * that is not UTF-8, and for NUL. */
                v->p = utf8_lossy(p ? p : "", p ? n : 0, true, &v->len, &repaired);
                if (!v->p)
                        return -ENOMEM;
                v->type = DB_TEXT;
                ts->repaired[col] += repaired;
                return 0;
        case C_BLOB:
                p = stmt_col_blob(st, col);
                n = stmt_col_bytes(st, col);
                v->p = malloc(n ? n : 1);
                if (!v->p)
                        return -ENOMEM;
                if (n)
                        memcpy(v->p, p, n);
                v->type = DB_BLOB;
                v->len = n;
                return 0;
        }
        return -EINVAL;
}

static int value_bind(db_stmt *st, int idx, const value *v)
{
        switch (v->type) {
        case DB_INTEGER:
                return stmt_bind_i64(st, idx, v->i);
        case DB_TEXT:
                return stmt_bind_text(st, idx, v->p);
        case DB_BLOB:
                /* Never NULL for an empty body: "" with length 0 binds an
                 * empty value. */
                return stmt_bind_blob_static(st, idx, v->p ? v->p : "", v->len);
        default:
                return stmt_bind_null(st, idx);
        }
}

/*
 * A value into the table's digest: a tag, then the integer (8 bytes, big
 * endian) or the length and bytes of the text, or the SHA-256 of a blob
 * (what PostgreSQL's sha256() returns when the rows are read back; digested
 * says v already is that).
 */
static int value_digest(EVP_MD_CTX *h, const value *v, bool digested)
{
        unsigned char b[8 + EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        uint64_t u = v->type == DB_INTEGER ? (uint64_t)v->i : (uint64_t)v->len;
        char tag = v->type == DB_INTEGER ? 'i'
                   : v->type == DB_TEXT  ? 't'
                   : v->type == DB_BLOB  ? 'b'
                                         : 'n';

        for (int i = 0; i < 8; i++)
                b[i] = (unsigned char)(u >> (56 - 8 * i));
        if (!EVP_DigestUpdate(h, &tag, 1))
                return -EIO;
        if (v->type == DB_NULL)
                return 0;
        if (v->type == DB_BLOB && !digested) {
                if (!EVP_Digest(v->len ? v->p : "", v->len, b + 8, &md_len, EVP_sha256(), NULL))
                        return -EIO;
                return EVP_DigestUpdate(h, b + 8, md_len) ? 0 : -EIO;
        }
        if (v->type == DB_BLOB)
                return EVP_DigestUpdate(h, v->p ? v->p : "", v->len) ? 0 : -EIO;
        if (!EVP_DigestUpdate(h, b, 8))
                return -EIO;
        if (v->type == DB_TEXT && !EVP_DigestUpdate(h, v->p, v->len))
                return -EIO;
        return 0;
}

static void md_freep(EVP_MD_CTX **h)
{
        EVP_MD_CTX_free(*h);
        *h = NULL;
}

static int digest_new(EVP_MD_CTX **ret)
{
        EVP_MD_CTX *h = EVP_MD_CTX_new();

        if (!h || !EVP_DigestInit_ex(h, EVP_sha256(), NULL)) {
                EVP_MD_CTX_free(h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

/* ---- the target before the copy --------------------------------------------------------- */

int copy_target_empty(copy_state *x, const char **ret_table, int64_t *ret_rows)
{
        int r;

        /* Nobody else writes these tables until our COMMIT (readers go on):
         * what is checked here stays true, and the identity numbers of the
         * rows we insert follow each other. */
        r = store_exec(x->dst, "LOCK TABLE events, deliveries, attempts, hooks, hook_attempts,"
                               " audit, meta, pauses IN EXCLUSIVE MODE");
        if (r < 0)
                return fail(x, r, "cannot lock the target's tables: %s", store_errmsg(x->dst));
        for (size_t i = 0; i < N_TABLES; i++) {
                table_state *ts = &x->ts[i];

                r = query_i64_fmt(
                        x->dst, &ts->count_before, "SELECT count(*) FROM %s", ts->t->name);
                if (r >= 0 && ts->t->order == ORDER_ROWID)
                        r = query_i64_fmt(x->dst, &ts->rowid_before,
                                "SELECT coalesce(max(rowid), 0) FROM %s", ts->t->name);
                if (r < 0)
                        return fail(x, r, "%s: %s", ts->t->name, store_errmsg(x->dst));
                if (ts->t->must_be_empty && ts->count_before > 0) {
                        *ret_table = ts->t->name;
                        *ret_rows = ts->count_before;
                        return -ENOTEMPTY;
                }
        }
        return 0;
}

/* ---- the copy --------------------------------------------------------------------------- */

/* Rows waiting for their INSERT. */
typedef struct batch {
        db_stmt *many, *one;
        value v[COPY_BATCH_ROWS * MAX_COLS];
        size_t rows, bytes;
} batch;

static int batch_flush(copy_state *x, table_state *ts, batch *b)
{
        size_t n = ts->t->n_cols;
        int r = 0;

        if (b->rows == COPY_BATCH_ROWS) {
                for (size_t i = 0; i < b->rows * n && r >= 0; i++)
                        r = value_bind(b->many, (int)i + 1, &b->v[i]);
                if (r >= 0)
                        r = stmt_run(b->many);
        } else
                for (size_t row = 0; row < b->rows && r >= 0; row++) {
                        for (size_t i = 0; i < n && r >= 0; i++)
                                r = value_bind(b->one, (int)i + 1, &b->v[row * n + i]);
                        if (r >= 0)
                                r = stmt_run(b->one);
                }
        values_clear(b->v, b->rows * n);
        b->rows = b->bytes = 0;
        if (r < 0)
                return fail(x, r, "%s: %s", ts->t->name, store_errmsg(x->dst));
        return 0;
}

static bool kept_key(const table_state *ts, const char *key)
{
        for (size_t i = 0; key && i < ts->n_kept; i++)
                if (streq(ts->kept[i], key))
                        return true;
        return false;
}

/* The current source row into the batch (and the digest), after the rows
 * before it went out when it would make the batch too big. */
static int batch_add(copy_state *x, table_state *ts, batch *b, db_stmt *src, EVP_MD_CTX *h)
{
        size_t n = ts->t->n_cols, bytes = 0;
        value row[MAX_COLS];
        int r = 0;

        for (size_t i = 0; i < n; i++)
                row[i] = (value){.type = DB_NULL};
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = value_read(x, ts, src, (int)i, &row[i]);
                bytes += row[i].len;
        }
        for (size_t i = 0; i < n && r >= 0; i++)
                r = value_digest(h, &row[i], false);
        if (r >= 0 && b->rows > 0 && b->bytes + bytes > COPY_BATCH_BYTES)
                r = batch_flush(x, ts, b);
        if (r < 0) {
                values_clear(row, n);
                return r;
        }
        memcpy(&b->v[b->rows * n], row, n * sizeof(value));
        b->rows++;
        b->bytes += bytes;
        ts->rows++;
        if (b->rows == COPY_BATCH_ROWS || b->bytes >= COPY_BATCH_BYTES)
                return batch_flush(x, ts, b);
        return 0;
}

static int prepare_inserts(copy_state *x, table_state *ts, batch *b)
{
        _cleanup_free_ char *many = insert_sql(ts->t, COPY_BATCH_ROWS);
        _cleanup_free_ char *one = insert_sql(ts->t, 1);
        int r;

        if (!many || !one)
                return -ENOMEM;
        r = store_prepare(x->dst, many, &b->many);
        if (r >= 0)
                r = store_prepare(x->dst, one, &b->one);
        if (r < 0)
                return fail(x, r, "%s: %s", ts->t->name, store_errmsg(x->dst));
        return 0;
}

static int copy_table_rows(copy_state *x, table_state *ts)
{
        _cleanup_free_ char *cols = column_list(ts->t, false);
        _cleanup_(md_freep) EVP_MD_CTX *h = NULL;
        _cleanup_free_ batch *b = calloc(1, sizeof(batch));
        _cleanup_stmt_ db_stmt *src = NULL, *keys = NULL;
        unsigned md_len = 0;
        int r;

        if (!cols || !b || digest_new(&h) < 0)
                return -ENOMEM;
        if (ts->t->order == ORDER_SMALL) {
                r = prepare_fmt(
                        x->dst, &keys, "SELECT %s FROM %s", ts->t->cols[0].name, ts->t->name);
                if (r >= 0)
                        r = stmt_strv(keys, &ts->kept, &ts->n_kept);
                if (r < 0)
                        return fail(x, r, "%s: %s", ts->t->name, store_errmsg(x->dst));
        }
        r = prepare_inserts(x, ts, b);
        if (r >= 0) {
                r = prepare_fmt(x->src, &src, "SELECT %s FROM %s ORDER BY %s", cols, ts->t->name,
                        ts->t->order == ORDER_ROWID ? "rowid" : ts->t->cols[0].name);
                if (r < 0)
                        fail(x, r, "reading %s: %s", ts->t->name, store_errmsg(x->src));
        }
        while (r >= 0 && (r = stmt_step(src)) > 0) {
                if (ts->t->order == ORDER_SMALL && kept_key(ts, stmt_col_text(src, 0))) {
                        ts->n_kept_source++;
                        continue;
                }
                r = batch_add(x, ts, b, src, h);
        }
        if (r < 0 && !x->message[0])
                fail(x, r, "reading %s: %s", ts->t->name, store_errmsg(x->src));
        if (r >= 0)
                r = batch_flush(x, ts, b);
        values_clear(b->v, b->rows * ts->t->n_cols);
        stmt_finalize(b->many);
        stmt_finalize(b->one);
        if (r >= 0 && !EVP_DigestFinal_ex(h, ts->digest, &md_len))
                r = -EIO;
        return r;
}

int copy_rows(copy_state *x)
{
        int r;

        x->message[0] = '\0';
        for (size_t i = 0; i < N_TABLES; i++) {
                r = copy_table_rows(x, &x->ts[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- verification ------------------------------------------------------------------------ */

/* Column col of a row read back, as value_digest() wants it (borrowed). */
static value value_of(db_stmt *st, int col, col_kind kind)
{
        if (stmt_col_null(st, col))
                return (value){.type = DB_NULL};
        switch (kind) {
        case C_INT:
                return (value){.type = DB_INTEGER, .i = stmt_col_i64(st, col)};
        case C_TEXT: {
                const char *p = stmt_col_text(st, col);

                return (value){.type = DB_TEXT, .p = (char *)p, .len = stmt_col_bytes(st, col)};
        }
        default: {
                const void *p = stmt_col_blob(st, col);

                return (value){.type = DB_BLOB, .p = (char *)p, .len = stmt_col_bytes(st, col)};
        }
        }
}

/* One page of rows read back into the digest; *ret_rows counts them,
 * *last is the rowid or key to continue after. */
static int verify_page(table_state *ts, db_stmt *st, EVP_MD_CTX *h, int64_t want, int64_t *ret_rows,
        int64_t *last_rowid, char **last_key, size_t *ret_page)
{
        size_t n = ts->t->n_cols, page = 0;
        int r = 0;

        while (*ret_rows < want && (r = stmt_step(st)) > 0) {
                page++;
                if (ts->t->order == ORDER_SMALL && kept_key(ts, stmt_col_text(st, 0)))
                        continue;
                for (size_t i = 0; i < n; i++) {
                        value v = value_of(st, (int)i, ts->t->cols[i].kind);

                        r = value_digest(h, &v, true);
                        if (r < 0)
                                return r;
                }
                (*ret_rows)++;
                if (ts->t->order == ORDER_ROWID)
                        *last_rowid = stmt_col_i64(st, (int)n);
                else {
                        free(*last_key);
                        *last_key = stmt_strdup(st, 0);
                        if (!*last_key)
                                return -ENOMEM;
                }
        }
        stmt_reset(st);
        *ret_page = page;
        return r < 0 ? r : 0;
}

static int verify_table(copy_state *x, table_state *ts, int64_t extra_rows)
{
        _cleanup_free_ char *cols = column_list(ts->t, true), *last_key = strdup("");
        _cleanup_(md_freep) EVP_MD_CTX *h = NULL;
        _cleanup_stmt_ db_stmt *st = NULL;
        unsigned char md[EVP_MAX_MD_SIZE];
        int64_t rows = 0, last_rowid = ts->rowid_before, after = 0, expected;
        unsigned md_len = 0;
        size_t page;
        int r;

        if (!cols || !last_key || digest_new(&h) < 0)
                return -ENOMEM;
        if (ts->t->order == ORDER_ROWID)
                r = prepare_fmt(x->dst, &st,
                        "SELECT %s, rowid FROM %s WHERE rowid > ?"
                        " ORDER BY rowid LIMIT %d",
                        cols, ts->t->name, VERIFY_PAGE_ROWS);
        else if (ts->t->order == ORDER_KEY)
                r = prepare_fmt(x->dst, &st, "SELECT %s FROM %s WHERE %s > ? ORDER BY %s LIMIT %d",
                        cols, ts->t->name, ts->t->cols[0].name, ts->t->cols[0].name,
                        VERIFY_PAGE_ROWS);
        else
                r = prepare_fmt(x->dst, &st, "SELECT %s FROM %s ORDER BY %s", cols, ts->t->name,
                        ts->t->cols[0].name);
        do {
                if (r < 0)
                        break;
                if (ts->t->order == ORDER_ROWID)
                        r = stmt_bind_i64(st, 1, last_rowid);
                else if (ts->t->order == ORDER_KEY)
                        r = stmt_bind_text(st, 1, last_key);
                if (r >= 0)
                        r = verify_page(ts, st, h, ts->rows, &rows, &last_rowid, &last_key, &page);
        } while (r >= 0 && ts->t->order != ORDER_SMALL && page == VERIFY_PAGE_ROWS &&
                 rows < ts->rows);
        if (r >= 0)
                r = query_i64_fmt(x->dst, &after, "SELECT count(*) FROM %s", ts->t->name);
        if (r < 0)
                return fail(x, r, "reading %s back: %s", ts->t->name, store_errmsg(x->dst));
        if (!EVP_DigestFinal_ex(h, md, &md_len))
                return -EIO;
        /* The tables that were empty hold exactly what was sent; into audit,
         * meta and pauses an operator's command may have written since the
         * COMMIT (what was sent is all there: the digest says so). */
        expected = ts->count_before + ts->rows + extra_rows;
        if (rows != ts->rows || after < expected || (ts->t->must_be_empty && after != expected))
                return fail(x, -EBADMSG,
                        "%s: %" PRId64 " rows copied, %" PRId64 " read back, %" PRId64
                        " in the table (%" PRId64 " expected)",
                        ts->t->name, ts->rows, rows, after, expected);
        if (memcmp(md, ts->digest, md_len) != 0)
                return fail(x, -EBADMSG,
                        "%s: the rows read back differ from the rows sent (values or order)",
                        ts->t->name);
        return 0;
}

int copy_verify(copy_state *x, int64_t own_audit_rows)
{
        int r;

        x->message[0] = '\0';
        for (size_t i = 0; i < N_TABLES; i++) {
                r = verify_table(x, &x->ts[i], streq(tables[i].name, "audit") ? own_audit_rows : 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- what was done ------------------------------------------------------------------------ */

json_t *copy_counts_json(copy_state *x)
{
        json_t *o = json_object();

        for (size_t i = 0; o && i < N_TABLES; i++)
                if (json_object_set_new(o, tables[i].name, json_integer(x->ts[i].rows)) < 0)
                        return json_decref(o), NULL;
        return o;
}

json_t *copy_kept_json(copy_state *x)
{
        json_t *o = json_object();

        for (size_t i = 0; o && i < N_TABLES; i++)
                if (tables[i].order == ORDER_SMALL &&
                        json_object_set_new(
                                o, tables[i].name, json_integer(x->ts[i].n_kept_source)) < 0)
                        return json_decref(o), NULL;
        return o;
}

json_t *copy_repaired_json(copy_state *x)
{
        json_t *o = json_object();

        for (size_t i = 0; o && i < N_TABLES; i++)
                for (size_t c = 0; c < tables[i].n_cols; c++) {
                        char key[96];

                        if (!x->ts[i].repaired[c])
                                continue;
                        snprintf(key, sizeof(key), "%s.%s", tables[i].name, tables[i].cols[c].name);
                        if (json_object_set_new(o, key, json_integer(x->ts[i].repaired[c])) < 0)
                                return json_decref(o), NULL;
                }
        return o;
}
