/* SPDX-License-Identifier: MIT */
/*
 * console-query — see console-query.h. Lists are built from constant
 * clauses, one per filter that is set, so SQLite plans each query for the
 * filters it has (a provider id is a unique-index lookup, a status uses
 * events_queue); no text a client sent is ever part of the SQL, only bound.
 */
#define _GNU_SOURCE
#include "console-query.h"

#include <stdio.h>
#include <string.h>

#include "escape.h"

#define STR(x) STRINGIFY(x)

/* ---- deadline ------------------------------------------------------------------------ */

typedef struct deadline {
        uint64_t until_us;
        bool hit;
} deadline;

/* One per thread: each thread has its own connection, and the handler is
 * the connection's; the struct lives as long as the thread. */
static _Thread_local deadline tl_deadline;

static int deadline_check(void *userdata)
{
        deadline *d = userdata;

        if (d->until_us && mono_us() > d->until_us) {
                d->hit = true;
                return 1;
        }
        return 0;
}

void cq_deadline(knock_store *s, uint64_t until_us)
{
        tl_deadline = (deadline){.until_us = until_us};
        /* Every 1000 virtual machine steps: microseconds apart. */
        if (store_sqlite(s))
                sqlite3_progress_handler(store_sqlite(s), until_us ? 1000 : 0,
                                         until_us ? deadline_check : NULL, &tl_deadline);
}

bool cq_interrupted(knock_store *s)
{
        return tl_deadline.hit;
}

/* ---- building and binding ------------------------------------------------------------------ */

typedef struct query {
        char sql[2048];
        bool overflow;
} query;

static void add(query *q, const char *clause)
{
        size_t n = strlen(q->sql);

        if (n + strlen(clause) + 1 > sizeof(q->sql)) {
                q->overflow = true;
                return;
        }
        memcpy(q->sql + n, clause, strlen(clause) + 1);
}

static void bind_text(db_stmt *st, const char *name, const char *v)
{
        int i = stmt_param(st, name);

        if (i > 0)
                stmt_bind_text(st, i, v);
}

static void bind_i64(db_stmt *st, const char *name, int64_t v)
{
        int i = stmt_param(st, name);

        if (i > 0)
                stmt_bind_i64(st, i, v);
}

static int limit_of(const cq_page *p)
{
        return p->limit <= 0 ? CQ_DEFAULT_LIMIT : MIN(p->limit, CQ_MAX_LIMIT);
}

/* The keyset cursor's clause for a table alias whose time column is col. */
static void add_cursor(query *q, const cq_page *p, const char *at_col, const char *id_col)
{
        char c[256];

        if (p->before_at <= 0)
                return;
        snprintf(c, sizeof(c), " AND (%s < :bat OR (%s = :bat AND %s < :bid))", at_col, at_col,
                 id_col);
        add(q, c);
}

static void bind_cursor(db_stmt *st, const cq_page *p)
{
        bind_i64(st, ":bat", p->before_at);
        bind_text(st, ":bid", p->before_id);
        bind_i64(st, ":limit", limit_of(p));
}

static int prepare(knock_store *s, const query *q, db_stmt **ret)
{
        if (q->overflow)
                return -E2BIG;
        return store_prepare(s, q->sql, ret);
}

bool cq_parse_cursor(const char *s, cq_page *p)
{
        const char *dot = s ? strchr(s, '.') : NULL;
        uint64_t at;
        char num[24];

        if (!dot || (size_t)(dot - s) >= sizeof(num) || strlen(dot + 1) >= sizeof(p->before_id) ||
            !dot[1])
                return false;
        memcpy(num, s, (size_t)(dot - s));
        num[dot - s] = 0;
        if (parse_u64_strict(num, &at) < 0 || at == 0 || at > INT64_MAX)
                return false;
        p->before_at = (int64_t)at;
        snprintf(p->before_id, sizeof(p->before_id), "%s", dot + 1);
        return true;
}

/* ---- events ------------------------------------------------------------------------------- */

#define EVENT_COLUMNS                                                                              \
        "SELECT e.id, e.status, e.status_reason, e.provider_event_id, e.event_type,"              \
        " e.attempt_count, e.received_at, e.updated_at, e.next_attempt_at, e.last_error,"         \
        " e.finished_at, e.delivery_id, e.run_delivery_id, e.claimed_by,"                         \
        " (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id) FROM events e"

int cq_events(knock_store *s, const cq_event_filter *f, db_stmt **ret)
{
        query q = {EVENT_COLUMNS " WHERE 1 = 1"};
        db_stmt *st = NULL;
        int r;

        if (f->status)
                add(&q, " AND e.status = :status");
        if (f->type)
                add(&q, " AND e.event_type = :type");
        if (f->provider_id)
                add(&q, " AND e.provider_event_id = :pid");
        if (f->since > 0)
                add(&q, " AND e.received_at >= :since");
        if (f->until > 0)
                add(&q, " AND e.received_at < :until");
        add_cursor(&q, &f->page, "e.received_at", "e.id");
        add(&q, " ORDER BY e.received_at DESC, e.id DESC LIMIT :limit");
        r = prepare(s, &q, &st);
        if (r < 0)
                return r;
        bind_text(st, ":status", f->status);
        bind_text(st, ":type", f->type);
        bind_text(st, ":pid", f->provider_id);
        bind_i64(st, ":since", f->since);
        bind_i64(st, ":until", f->until);
        bind_cursor(st, &f->page);
        *ret = st;
        return 0;
}

int cq_event(knock_store *s, const char *ref, db_stmt **ret)
{
        db_stmt *st = NULL;
        int r;

        /* knock's id first; a provider id only when it names one event. */
        r = store_prepare(s,
                EVENT_COLUMNS " WHERE e.id = :ref UNION ALL " EVENT_COLUMNS
                              " WHERE e.provider_event_id = :ref AND NOT EXISTS"
                              " (SELECT 1 FROM events x WHERE x.id = :ref) LIMIT 1",
                &st);
        if (r < 0)
                return r;
        bind_text(st, ":ref", ref);
        *ret = st;
        return 0;
}

/* ---- one event's trace ------------------------------------------------------------------------ */

int cq_timeline(knock_store *s, const char *event_id, db_stmt **ret)
{
        db_stmt *st = NULL;
        int r;

        r = store_prepare(s,
                "SELECT at, kind, id, what, detail, dur FROM ("
                " SELECT d.received_at AS at, 'delivery' AS kind, d.id AS id,"
                "  d.http_status /*PG: ::text */ AS what,"
                "  CASE WHEN d.duplicate <> 0 THEN 'duplicate' WHEN d.signature_valid <> 0 THEN 'verified'"
                "   ELSE coalesce(d.verify_error, 'rejected') END AS detail, NULL AS dur, 0 AS o"
                "  FROM deliveries d WHERE d.event_id = :id"
                " UNION ALL SELECT a.started_at, 'attempt', a.id, coalesce(a.outcome, 'running'),"
                "  'attempt ' || a.attempt || coalesce(' exit ' || a.exit_code, '')"
                "  || coalesce(' signal ' || a.signal, '') || coalesce(' HTTP ' || a.http_status, '')"
                "  || coalesce(': ' || a.error, ''), a.ended_at - a.started_at, 1"
                "  FROM attempts a WHERE a.event_id = :id"
                " UNION ALL SELECT h.created_at, 'hook', h.id, h.state, h.type, NULL, 2"
                "  FROM hooks h WHERE h.event_id = :id"
                " UNION ALL SELECT ha.at, 'hook_attempt', ha.id, ha.status /*PG: ::text */, coalesce(ha.error, ''),"
                "  ha.duration_ms, 3 FROM hook_attempts ha JOIN hooks h ON h.id = ha.hook_id"
                "  WHERE h.event_id = :id"
                " UNION ALL SELECT e.finished_at, 'finished', e.id, e.status,"
                "  coalesce(e.status_reason, e.last_error, ''), NULL, 4"
                "  FROM events e WHERE e.id = :id AND e.finished_at IS NOT NULL"
                ") AS trace ORDER BY at, o, id LIMIT " STR(CQ_TRACE_ROWS),
                &st);
        if (r < 0)
                return r;
        bind_text(st, ":id", event_id);
        *ret = st;
        return 0;
}

#define DELIVERY_COLUMNS                                                                           \
        "SELECT d.id, d.event_id, d.received_at, d.signature_valid, d.verify_error,"              \
        " d.http_status, d.provider_event_id, d.event_type, d.request_id, d.method, d.uri,"       \
        " d.remote, d.content_type, d.headers, substr(d.body, 1, " STR(CQ_BODY_PREVIEW) "),"      \
        " d.body_bytes, length(d.body), d.duplicate, d.handshake FROM deliveries d"

static int prepare_one_id(knock_store *s, const char *sql, const char *id, db_stmt **ret)
{
        db_stmt *st = NULL;
        int r;

        r = store_prepare(s, sql, &st);
        if (r < 0)
                return r;
        bind_text(st, ":id", id);
        *ret = st;
        return 0;
}

int cq_deliveries_of(knock_store *s, const char *event_id, db_stmt **ret)
{
        return prepare_one_id(s,
                DELIVERY_COLUMNS " WHERE d.event_id = :id ORDER BY d.received_at, d.id"
                                 " LIMIT " STR(CQ_TRACE_ROWS),
                event_id, ret);
}

int cq_delivery(knock_store *s, const char *id, db_stmt **ret)
{
        return prepare_one_id(s, DELIVERY_COLUMNS " WHERE d.id = :id", id, ret);
}

int cq_rejected(knock_store *s, const cq_page *p, db_stmt **ret)
{
        query q = {DELIVERY_COLUMNS " WHERE d.event_id IS NULL AND d.handshake = 0"};
        db_stmt *st = NULL;
        int r;

        add_cursor(&q, p, "d.received_at", "d.id");
        add(&q, " ORDER BY d.received_at DESC, d.id DESC LIMIT :limit");
        r = prepare(s, &q, &st);
        if (r < 0)
                return r;
        bind_cursor(st, p);
        *ret = st;
        return 0;
}

int cq_attempts_of(knock_store *s, const char *event_id, db_stmt **ret)
{
        return prepare_one_id(s,
                "SELECT a.id, a.attempt, a.delivery_id, a.worker, a.handler, a.started_at,"
                " a.ended_at, a.outcome, a.exit_code, a.signal, a.http_status, a.error,"
                " substr(a.output, 1, " STR(CQ_OUTPUT_PREVIEW) "),"
                " /*LITE{*/length(CAST(a.output AS BLOB))/*}*/ /*PG: octet_length(a.output) */"
                " FROM attempts a WHERE a.event_id = :id"
                " ORDER BY a.started_at, a.id LIMIT " STR(CQ_TRACE_ROWS),
                event_id, ret);
}

#define HOOK_COLUMNS                                                                               \
        "SELECT h.id, h.event_id, h.type, h.state, h.attempt_count, h.created_at,"                \
        " h.updated_at, h.next_attempt_at, h.last_status, h.last_error, h.last_attempt_at,"       \
        " h.delivered_at FROM hooks h"

int cq_hooks_of(knock_store *s, const char *event_id, db_stmt **ret)
{
        return prepare_one_id(s,
                HOOK_COLUMNS " WHERE h.event_id = :id ORDER BY h.created_at, h.id"
                             " LIMIT " STR(CQ_TRACE_ROWS),
                event_id, ret);
}

int cq_hooks(knock_store *s, const char *state, const cq_page *p, db_stmt **ret)
{
        query q = {HOOK_COLUMNS " WHERE 1 = 1"};
        db_stmt *st = NULL;
        int r;

        if (state)
                add(&q, " AND h.state = :state");
        add_cursor(&q, p, "h.created_at", "h.id");
        add(&q, " ORDER BY h.created_at DESC, h.id DESC LIMIT :limit");
        r = prepare(s, &q, &st);
        if (r < 0)
                return r;
        bind_text(st, ":state", state);
        bind_cursor(st, p);
        *ret = st;
        return 0;
}

int cq_hook_attempts_of(knock_store *s, const char *event_id, db_stmt **ret)
{
        return prepare_one_id(s,
                "SELECT ha.id, ha.hook_id, ha.at, ha.status, ha.duration_ms,"
                " substr(ha.response, 1, " STR(CQ_OUTPUT_PREVIEW) "), ha.error"
                " FROM hook_attempts ha JOIN hooks h ON h.id = ha.hook_id"
                " WHERE h.event_id = :id ORDER BY ha.at, ha.id LIMIT " STR(CQ_TRACE_ROWS),
                event_id, ret);
}

/* ---- audit ------------------------------------------------------------------------------------ */

int cq_audit(knock_store *s, const cq_page *p, db_stmt **ret)
{
        query q = {"SELECT id, at, actor, action, filters, counts, ids FROM audit WHERE 1 = 1"};
        db_stmt *st = NULL;
        int r;

        add_cursor(&q, p, "at", "id");
        add(&q, " ORDER BY at DESC, id DESC LIMIT :limit");
        r = prepare(s, &q, &st);
        if (r < 0)
                return r;
        bind_cursor(st, p);
        *ret = st;
        return 0;
}

/* ---- probe ------------------------------------------------------------------------------------- */

int cq_duplicate_of(knock_store *s, const char *provider_id, char **ret_id, char **ret_status)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        int r, rc;

        if (!provider_id)
                return 0;
        r = store_prepare(s, "SELECT id, status FROM events WHERE provider_event_id = ?", &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, provider_id);
        rc = stmt_step(st);
        if (rc == 0)
                return 0;
        if (rc <= 0)
                return rc;
        *ret_id = stmt_strdup(st, 0);
        *ret_status = stmt_strdup(st, 1);
        if (!*ret_id || !*ret_status) {
                *ret_id = mfree(*ret_id);
                *ret_status = mfree(*ret_status);
                return -ENOMEM;
        }
        return 1;
}

/* ---- the live feed ------------------------------------------------------------------------------- */

/* A column as a JSON string escaped to printable UTF-8, or null. */
static json_t *col_json(db_stmt *st, int col)
{
        const char *t = stmt_col_text(st, col);
        _cleanup_free_ char *e = NULL;

        if (!t)
                return json_null();
        e = escape_text(t, (size_t)stmt_col_bytes(st, col), 0);
        return e ? json_string(e) : json_null();
}

static json_t *col_int(db_stmt *st, int col)
{
        return stmt_col_type(st, col) == DB_NULL
                       ? json_null()
                       : json_integer(stmt_col_i64(st, col));
}

/* Appends to arr one object per row of st: "kind" and the columns named
 * in names (NULL-terminated, in column order; a leading '#' an integer). */
static int rows_to_json(db_stmt *st, const char *kind, const char *const *names, json_t *arr,
                        char *newest, size_t *n_rows)
{
        int rc;

        *n_rows = 0;
        while ((rc = stmt_step(st)) > 0) {
                json_t *o = json_pack("{s:s}", "kind", kind);

                if (!o)
                        return -ENOMEM;
                for (int i = 0; names[i]; i++) {
                        bool num = names[i][0] == '#';
                        json_object_set_new(o, names[i] + num, num ? col_int(st, i) : col_json(st, i));
                }
                /* Newest first from SQL; the feed shows them oldest first. */
                json_array_insert_new(arr, json_array_size(arr) - *n_rows, o);
                if (*n_rows == 0 && newest)
                        snprintf(newest, KNOCK_ID_MAX, "%s", stmt_col_text(st, 0));
                (*n_rows)++;
        }
        return rc;
}

/* The newest id of a table (max(id): ids are time-ordered), "" when empty. */
static int step_text(knock_store *s, const char *sql, char *out)
{
        _cleanup_free_ char *v = NULL;
        int r;

        r = store_query_text(s, sql, &v);
        if (r >= 0)
                snprintf(out, KNOCK_ID_MAX, "%s", v ?: "");
        return r;
}

static int live_start(knock_store *s, cq_live *l)
{
        int r;

        *l = (cq_live){.started = true};
        r = step_text(s, "SELECT coalesce(max(id), '') FROM deliveries", l->delivery);
        if (r >= 0)
                r = step_text(s, "SELECT coalesce(max(id), '') FROM attempts", l->attempt);
        if (r >= 0)
                r = step_text(s, "SELECT coalesce(max(id), '') FROM hook_attempts", l->hook_attempt);
        if (r >= 0)
                r = step_text(s, "SELECT coalesce(max(id), '') FROM audit", l->audit);
        if (r < 0)
                l->started = false;
        return r;
}

/* Runs a "newer than :after, newest first, LIMIT CQ_LIVE_BATCH" query into arr
 * and moves the cursor to the newest row. Returns the rows it did not show
 * (0 when the batch held them all). */
static int64_t live_kind(knock_store *s, const char *sql, const char *count_sql, const char *kind,
                         const char *const *names, char *cursor, json_t *arr, int *err)
{
        _cleanup_stmt_ db_stmt *st = NULL, *cnt = NULL;
        char newest[KNOCK_ID_MAX] = "", oldest[KNOCK_ID_MAX] = "";
        size_t n = 0, before = json_array_size(arr);
        int64_t skipped = 0;
        int r;

        r = store_prepare(s, sql, &st);
        if (r >= 0) {
                bind_text(st, ":after", cursor);
                r = rows_to_json(st, kind, names, arr, newest, &n);
        }
        if (r >= 0 && n == CQ_LIVE_BATCH) {
                json_t *first = json_array_get(arr, before);
                json_t *fid = json_object_get(first, "id");

                snprintf(oldest, sizeof(oldest), "%s", json_string_value(fid) ?: "");
                r = store_prepare(s, count_sql, &cnt);
                if (r >= 0) {
                        bind_text(cnt, ":after", cursor);
                        bind_text(cnt, ":oldest", oldest);
                        if (stmt_step(cnt) > 0)
                                skipped = stmt_col_i64(cnt, 0);
                }
        }
        if (r < 0) {
                *err = r;
                return 0;
        }
        if (newest[0])
                snprintf(cursor, KNOCK_ID_MAX, "%s", newest);
        return skipped;
}

/* Running attempts seen before: the ones that ended since, with the event's status. */
static int live_open_attempts(knock_store *s, cq_live *l, json_t *arr)
{
        static const char *const names[] = {"id", "event_id", "#attempt", "outcome", "#exit_code",
                                            "#http_status", "error", "status", "event_type",
                                            NULL};
        _cleanup_stmt_ db_stmt *st = NULL;
        size_t kept = 0;
        int r;

        if (l->n_open == 0)
                return 0;
        r = store_prepare(s,
                "SELECT a.id, a.event_id, a.attempt, a.outcome, a.exit_code, a.http_status,"
                " a.error, e.status, e.event_type, a.ended_at IS NOT NULL"
                " FROM attempts a LEFT JOIN events e ON e.id = a.event_id WHERE a.id = ?",
                &st);
        if (r < 0)
                return r;
        for (size_t i = 0; i < l->n_open; i++) {
                int rc;

                stmt_reset(st);
                stmt_bind_text(st, 1, l->open[i]);
                rc = stmt_step(st);
                if (rc > 0 && !stmt_col_int(st, 9)) {
                        memmove(l->open[kept++], l->open[i], KNOCK_ID_MAX);
                        continue;
                }
                if (rc <= 0)
                        continue; /* pruned meanwhile */
                json_t *o = json_pack("{s:s}", "kind", "attempt");
                if (!o)
                        return -ENOMEM;
                for (int c = 0; names[c]; c++) {
                        bool num = names[c][0] == '#';
                        json_object_set_new(o, names[c] + num, num ? col_int(st, c) : col_json(st, c));
                }
                json_array_append_new(arr, o);
        }
        l->n_open = kept;
        return 0;
}

int cq_live_poll(knock_store *s, cq_live *l, json_t **ret)
{
        static const char *const receipt_names[] = {
                "id", "#received_at", "event_id", "#signature_valid", "verify_error",
                "#http_status", "provider_event_id", "event_type", "#duplicate", "#handshake",
                NULL,
        };
        static const char *const attempt_names[] = {
                "id", "event_id", "#attempt", "outcome", "#exit_code", "#http_status", "error",
                "status", "event_type", "#started_at", "#running", NULL,
        };
        static const char *const hook_names[] = {
                "id", "hook_id", "#at", "#status", "#duration_ms", "error", "event_id", "state",
                NULL,
        };
        static const char *const audit_names[] = {
                "id", "#at", "actor", "action", "counts", NULL,
        };
        json_t *arr = json_array();
        int64_t skipped;
        size_t from;
        int err = 0;

        if (!arr)
                return -ENOMEM;
        if (!l->started) {
                err = live_start(s, l);
                if (err < 0) {
                        json_decref(arr);
                        return err;
                }
                *ret = arr;
                return 0;
        }

        err = live_open_attempts(s, l, arr);
        skipped = live_kind(s,
                "SELECT d.id, d.received_at, d.event_id, d.signature_valid, d.verify_error,"
                " d.http_status, d.provider_event_id, d.event_type, d.duplicate, d.handshake"
                " FROM deliveries d WHERE d.id > :after ORDER BY d.id DESC"
                " LIMIT " STR(CQ_LIVE_BATCH),
                "SELECT count(*) FROM deliveries WHERE id > :after AND id < :oldest", "receipt",
                receipt_names, l->delivery, arr, &err);
        if (skipped > 0)
                json_array_append_new(arr, json_pack("{s:s,s:I}", "kind", "skipped", "receipts",
                                                     (json_int_t)skipped));
        from = json_array_size(arr);
        skipped = live_kind(s,
                "SELECT a.id, a.event_id, a.attempt, a.outcome, a.exit_code, a.http_status,"
                " a.error, e.status, e.event_type, a.started_at, a.ended_at IS NULL"
                " FROM attempts a LEFT JOIN events e ON e.id = a.event_id WHERE a.id > :after"
                " ORDER BY a.id DESC LIMIT " STR(CQ_LIVE_BATCH),
                "SELECT count(*) FROM attempts WHERE id > :after AND id < :oldest", "attempt",
                attempt_names, l->attempt, arr, &err);
        /* Attempts still running are followed until they end. */
        for (size_t i = from; i < json_array_size(arr); i++) {
                json_t *o = json_array_get(arr, i);

                if (json_integer_value(json_object_get(o, "running")) && l->n_open < CQ_LIVE_OPEN)
                        snprintf(l->open[l->n_open++], KNOCK_ID_MAX, "%s",
                                 json_string_value(json_object_get(o, "id")));
        }
        if (skipped > 0)
                json_array_append_new(arr, json_pack("{s:s,s:I}", "kind", "skipped", "attempts",
                                                     (json_int_t)skipped));
        (void)live_kind(s,
                "SELECT ha.id, ha.hook_id, ha.at, ha.status, ha.duration_ms, ha.error,"
                " h.event_id, h.state FROM hook_attempts ha LEFT JOIN hooks h ON h.id = ha.hook_id"
                " WHERE ha.id > :after ORDER BY ha.id DESC LIMIT " STR(CQ_LIVE_BATCH),
                "SELECT count(*) FROM hook_attempts WHERE id > :after AND id < :oldest", "hook",
                hook_names, l->hook_attempt, arr, &err);
        (void)live_kind(s,
                "SELECT id, at, actor, action, counts FROM audit WHERE id > :after"
                " ORDER BY id DESC LIMIT " STR(CQ_LIVE_BATCH),
                "SELECT count(*) FROM audit WHERE id > :after AND id < :oldest", "audit",
                audit_names, l->audit, arr, &err);
        if (err < 0) {
                json_decref(arr);
                return err;
        }
        *ret = arr;
        return 0;
}
