/* SPDX-License-Identifier: MIT */
/*
 * store — see store.h for the promises and the schema.
 *
 * Pragmas are set on every connection, in this order: page_size must be set
 * before the first table exists (and before WAL, which fixes it); WAL and
 * synchronous=FULL together mean a COMMIT has been fsynced to the WAL before
 * sqlite3_step() returns SQLITE_DONE — the point after which the ingress may
 * answer 2xx.
 */
#define _GNU_SOURCE
#include "store.h"
#include "walbuf.h"
#include "store-pg.h"
#include "escape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static int migrate_checks_without_in(knock_store *s);

/* Forward-only migrations, SQL or a function (run inside the migration's
 * transaction). Never edit a published one; append a new one. */
static const struct {
        int version;
        const char *name;
        const char *sql;
        int (*run)(knock_store *s);
} migrations[] = {
        {1, "initial schema",
         "CREATE TABLE events ("
         "  id TEXT PRIMARY KEY,"
         "  provider_event_id TEXT UNIQUE,"
         "  event_type TEXT,"
         "  status TEXT NOT NULL CHECK (status IN"
         "    ('received','processing','failed','dead','ignored','handled')),"
         "  status_reason TEXT,"
         "  delivery_id TEXT NOT NULL,"
         "  run_delivery_id TEXT,"
         "  attempt_count INTEGER NOT NULL DEFAULT 0,"
         "  received_at INTEGER NOT NULL,"
         "  updated_at INTEGER NOT NULL,"
         "  next_attempt_at INTEGER,"
         "  claimed_by TEXT,"
         "  claim_until INTEGER,"
         "  last_error TEXT,"
         "  finished_at INTEGER"
         ");"
         "CREATE INDEX events_queue ON events(status, next_attempt_at);"
         "CREATE INDEX events_received_at ON events(received_at);"
         "CREATE INDEX events_type ON events(event_type);"
         "CREATE TABLE deliveries ("
         "  id TEXT PRIMARY KEY,"
         "  event_id TEXT REFERENCES events(id) ON DELETE CASCADE,"
         "  received_at INTEGER NOT NULL,"
         "  signature_valid INTEGER NOT NULL,"
         "  verify_error TEXT,"
         "  http_status INTEGER NOT NULL,"
         "  provider_event_id TEXT,"
         "  event_type TEXT,"
         "  request_id TEXT,"
         "  method TEXT,"
         "  uri TEXT,"
         "  remote TEXT,"
         "  content_type TEXT,"
         "  headers TEXT,"
         "  body BLOB,"
         "  body_bytes INTEGER NOT NULL DEFAULT 0,"
         "  duplicate INTEGER NOT NULL DEFAULT 0,"
         "  handshake INTEGER NOT NULL DEFAULT 0"
         ");"
         "CREATE INDEX deliveries_event ON deliveries(event_id);"
         "CREATE INDEX deliveries_received_at ON deliveries(received_at);"
         /* Only orphans: a verified delivery is found through its event. */
         "CREATE INDEX deliveries_orphan_provider_event_id ON deliveries(provider_event_id)"
         "  WHERE event_id IS NULL;"
         "CREATE TABLE attempts ("
         "  id TEXT PRIMARY KEY,"
         "  event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,"
         "  delivery_id TEXT,"
         "  attempt INTEGER NOT NULL,"
         "  worker TEXT,"
         "  handler TEXT,"
         "  started_at INTEGER NOT NULL,"
         "  ended_at INTEGER,"
         "  outcome TEXT,"
         "  exit_code INTEGER,"
         "  signal INTEGER,"
         "  http_status INTEGER,"
         "  error TEXT,"
         "  output TEXT"
         ");"
         "CREATE INDEX attempts_event ON attempts(event_id);"
         "CREATE TABLE hooks ("
         "  id TEXT PRIMARY KEY,"
         "  event_id TEXT REFERENCES events(id) ON DELETE CASCADE,"
         "  type TEXT NOT NULL,"
         "  payload TEXT NOT NULL,"
         "  state TEXT NOT NULL CHECK (state IN ('pending','delivered','failed')),"
         "  attempt_count INTEGER NOT NULL DEFAULT 0,"
         "  max_attempts INTEGER,"
         "  created_at INTEGER NOT NULL,"
         "  updated_at INTEGER NOT NULL,"
         "  next_attempt_at INTEGER,"
         "  claimed_by TEXT,"
         "  claim_until INTEGER,"
         "  last_status INTEGER,"
         "  last_error TEXT,"
         "  last_attempt_at INTEGER,"
         "  delivered_at INTEGER"
         ");"
         "CREATE INDEX hooks_queue ON hooks(state, next_attempt_at);"
         "CREATE INDEX hooks_event ON hooks(event_id);"
         "CREATE TABLE hook_attempts ("
         "  id TEXT PRIMARY KEY,"
         "  hook_id TEXT NOT NULL REFERENCES hooks(id) ON DELETE CASCADE,"
         "  at INTEGER NOT NULL,"
         "  status INTEGER NOT NULL,"
         "  duration_ms INTEGER NOT NULL,"
         "  response TEXT,"
         "  error TEXT"
         ");"
         "CREATE INDEX hook_attempts_hook ON hook_attempts(hook_id);"
         "CREATE TABLE audit ("
         "  id TEXT PRIMARY KEY,"
         "  at INTEGER NOT NULL,"
         "  actor TEXT NOT NULL,"
         "  action TEXT NOT NULL,"
         "  filters TEXT,"
         "  counts TEXT,"
         "  ids TEXT"
         ");"
         "CREATE TABLE daemons ("
         "  daemon TEXT PRIMARY KEY,"
         "  pid INTEGER,"
         "  started_at INTEGER,"
         "  heartbeat_at INTEGER,"
         "  stopped_at INTEGER,"
         "  last_clean_exit INTEGER,"
         "  suspected_oom_kills INTEGER NOT NULL DEFAULT 0,"
         "  counters TEXT,"
         "  status TEXT"
         ");"
         "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"},
        {2, "CHECK constraints without IN lists", NULL, migrate_checks_without_in},
        /* pause.h: what the worker must not claim. route '' is the whole
         * endpoint; kind says who paused it (an operator, or a breaker, which
         * lets one probe through from probe_at on, probing while it runs). */
        {3, "pauses and ordered keys",
         "CREATE TABLE pauses ("
         "  route TEXT PRIMARY KEY,"
         "  kind TEXT NOT NULL DEFAULT 'operator',"
         "  since INTEGER NOT NULL,"
         "  paused_by TEXT NOT NULL,"
         "  reason TEXT,"
         "  probe_at INTEGER,"
         "  probing INTEGER NOT NULL DEFAULT 0"
         ");"
         /* events.c: the key an ordered event holds its followers by, written
          * when a claim first looks at the event. */
         "ALTER TABLE events ADD COLUMN order_key TEXT;"
         "CREATE INDEX events_order_key ON events(order_key) WHERE order_key IS NOT NULL;"},
};

/*
 * Version 2. SQLite (3.40) evaluates a CHECK "x IN (a, b, c, ...)" by building a
 * temporary index of the list, a b-tree with its own pager and 16 KiB page
 * buffer, on EVERY insert or update of the row: a fifth of the worker's
 * writer CPU went there. "x = a OR x = b OR ..." accepts exactly the same
 * values (NULL included) and costs a few comparisons. Constraint text only:
 * rows and file format are unchanged, so this is the in-place schema edit
 * that https://sqlite.org/lang_altertable.html#otheralter documents
 * (writable_schema, then schema_version + 1, in one transaction).
 */
static const struct {
        const char *table, *from, *to;
} check_rewrites[] = {
        {"events",
         "CHECK (status IN    ('received','processing','failed','dead','ignored','handled'))",
         "CHECK (status = 'received' OR status = 'processing' OR status = 'failed' OR "
         "status = 'dead' OR status = 'ignored' OR status = 'handled')"},
        {"hooks", "CHECK (state IN ('pending','delivered','failed'))",
         "CHECK (state = 'pending' OR state = 'delivered' OR state = 'failed')"},
};

static int migrate_checks_without_in(knock_store *s)
{
        char sql[64];
        int64_t version;
        int r;

        r = store_query_i64(s, "PRAGMA schema_version", &version);
        if (r < 0)
                return r;
        r = store_exec(s, "PRAGMA writable_schema = ON");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(check_rewrites) && r >= 0; i++) {
                _cleanup_stmt_ db_stmt *st = NULL;

                r = store_prepare(s,
                        "UPDATE sqlite_master SET sql = replace(sql, ?1, ?2) "
                        "WHERE type = 'table' AND name = ?3 AND instr(sql, ?1) > 0",
                        &st);
                if (r < 0)
                        break;
                stmt_bind_text(st, 1, check_rewrites[i].from);
                stmt_bind_text(st, 2, check_rewrites[i].to);
                stmt_bind_text(st, 3, check_rewrites[i].table);
                r = stmt_run(st);
                /* The text is migration 1's own: not finding it means a schema we
                 * did not make, left alone rather than guessed at. */
                if (r >= 0 && store_changes(s) != 1)
                        r = -EBADMSG;
        }
        if (r >= 0) {
                snprintf(sql, sizeof(sql), "PRAGMA schema_version = %lld",
                        (long long)version + 1);
                r = store_exec(s, sql);
        }
        (void)store_exec(s, "PRAGMA writable_schema = OFF");
        return r;
}

int store_errno(int rc)
{
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_IOERR:
                return -EIO;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_TOOBIG:
                return -E2BIG;
        default:
                return -EIO;
        }
}

const char *store_errmsg(knock_store *s)
{
        if (s && s->pg)
                return kpg_errmsg(s->pg);
        return s && s->db ? sqlite3_errmsg(s->db) : "no database";
}

/*
 * One statement text for both engines, the differences in plain sight:
 *  - SQL for PostgreSQL alone is written as a comment, "/" "*PG: text *" "/":
 *    SQLite skips it, PostgreSQL runs the text in its place (FOR UPDATE OF e
 *    SKIP LOCKED on a claim);
 *  - SQL for SQLite alone is bracketed by the comments "/" "*LITE{*" "/" and
 *    "/" "*}*" "/", which PostgreSQL drops with what they enclose.
 */
#define PG_ONLY_OPEN "/*PG:"
#define LITE_ONLY_OPEN "/*LITE{*/"
#define LITE_ONLY_CLOSE "/*}*/"
static char *sql_for_pg(const char *sql)
{
        const char *p = sql;
        char *out, *o;

        out = o = malloc(strlen(sql) + 1);
        if (!out)
                return NULL;
        for (;;) {
                const char *pg = strstr(p, PG_ONLY_OPEN), *lite = strstr(p, LITE_ONLY_OPEN);
                const char *open = pg && (!lite || pg < lite) ? pg : lite, *close;

                if (!open || !strstr(open, open == pg ? "*/" : LITE_ONLY_CLOSE))
                        break; /* no such comment, or one never closed: as it is */
                memcpy(o, p, (size_t)(open - p));
                o += open - p;
                *o++ = ' ';
                if (open == pg) {
                        open += strlen(PG_ONLY_OPEN);
                        close = strstr(open, "*/");
                        memcpy(o, open, (size_t)(close - open));
                        o += close - open;
                        *o++ = ' ';
                        p = close + 2;
                } else {
                        close = strstr(open, LITE_ONLY_CLOSE);
                        p = close + strlen(LITE_ONLY_CLOSE);
                }
        }
        strcpy(o, p);
        return out;
}

int store_exec(knock_store *s, const char *sql)
{
        if (s->pg) {
                _cleanup_free_ char *pg = sql_for_pg(sql);

                return pg ? kpg_exec(s->pg, pg) : -ENOMEM;
        }
        return store_errno(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

/* The engine-neutral statement: exactly one of the handles is set. */
struct db_stmt {
        sqlite3_stmt *lite;
        kpg_stmt *pg;
};

static int prepare_lite(knock_store *s, const char *sql, unsigned prep_flags, db_stmt **ret)
{
        sqlite3_stmt *lite = NULL;
        kpg_stmt *pg = NULL;
        db_stmt *st;
        int r;

        if (s->pg) {
                _cleanup_free_ char *text = sql_for_pg(sql);

                if (!text)
                        return -ENOMEM;
                r = kpg_prepare(s->pg, text, &pg);
        } else
                r = store_errno(sqlite3_prepare_v3(s->db, sql, -1, prep_flags, &lite, NULL));
        if (r < 0)
                return r;
        if (!lite && !pg)
                return -EINVAL; /* SQLite: sql held no statement */
        st = malloc(sizeof(*st));
        if (!st) {
                sqlite3_finalize(lite);
                kpg_finalize(pg);
                return -ENOMEM;
        }
        *st = (db_stmt){.lite = lite, .pg = pg};
        *ret = st;
        return 0;
}

/* Runs one of the connection's own statements, prepared on first use. */
static int step_own(knock_store *s, db_stmt **st, const char *sql)
{
        int r;

        if (!*st) {
                r = prepare_lite(s, sql, SQLITE_PREPARE_PERSISTENT, st);
                if (r < 0)
                        return r;
        }
        r = stmt_step(*st);
        stmt_reset(*st);
        return r < 0 ? r : 0;
}

int store_begin(knock_store *s)
{
        /* PostgreSQL: READ COMMITTED; rows are locked as statements reach
         * them, and claims lock theirs with FOR UPDATE SKIP LOCKED. */
        if (s->pg)
                return kpg_exec(s->pg, "BEGIN");
        return step_own(s, &s->begin, "BEGIN IMMEDIATE");
}

int store_commit(knock_store *s)
{
        int r = s->pg ? kpg_exec(s->pg, "COMMIT") : step_own(s, &s->commit, "COMMIT");
        /* A failed COMMIT may leave the transaction open (e.g. SQLITE_BUSY);
         * roll back so the connection is usable and nothing half-done stays. */
        if (r < 0)
                store_rollback(s);
        return r;
}

bool store_in_transaction(knock_store *s)
{
        if (s->pg)
                return kpg_in_transaction(s->pg);
        return !sqlite3_get_autocommit(s->db);
}

void store_busy_timeout(knock_store *s, int ms)
{
        if (s->pg)
                (void)kpg_lock_timeout(s->pg, ms);
        else
                sqlite3_busy_timeout(s->db, ms);
}

int64_t store_last_insert_rowid(knock_store *s)
{
        return s->pg ? 0 : sqlite3_last_insert_rowid(s->db);
}

void store_rollback(knock_store *s)
{
        if (s->pg)
                kpg_rollback(s->pg);
        else if (store_in_transaction(s))
                (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int store_end(knock_store *s, int r)
{
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        return store_commit(s);
}

int store_prepare(knock_store *s, const char *sql, db_stmt **ret)
{
        return prepare_lite(s, sql, 0, ret);
}

void stmt_finalize(db_stmt *st)
{
        if (!st)
                return;
        sqlite3_finalize(st->lite);
        kpg_finalize(st->pg);
        free(st);
}

void sqlite_stmt_finalizep(sqlite3_stmt **st)
{
        sqlite3_finalize(*st);
        *st = NULL;
}

void stmt_finalizep(db_stmt **st)
{
        stmt_finalize(*st);
        *st = NULL;
}

int store_cached(knock_store *s, const char *sql, db_stmt **ret)
{
        db_stmt *st = NULL;
        int r;

        /* A handful of statements per connection: a scan of addresses. */
        for (size_t i = 0; i < s->n_cache; i++)
                if (s->cache[i].sql == sql) {
                        st = s->cache[i].st;
                        stmt_reset(st);
                        if (st->pg)
                                kpg_clear_bindings(st->pg);
                        else
                                sqlite3_clear_bindings(st->lite);
                        *ret = st;
                        return 0;
                }
        if (s->n_cache == s->cap_cache) {
                size_t cap = s->cap_cache ? s->cap_cache * 2 : 16;
                store_cache_entry *v = reallocarray(s->cache, cap, sizeof(*v));

                if (!v)
                        return -ENOMEM;
                s->cache = v;
                s->cap_cache = cap;
        }
        r = prepare_lite(s, sql, SQLITE_PREPARE_PERSISTENT, &st);
        if (r < 0)
                return r;
        s->cache[s->n_cache++] = (store_cache_entry){.sql = sql, .st = st};
        *ret = st;
        return 0;
}

void stmt_reset(db_stmt *st)
{
        if (st && st->pg)
                kpg_reset(st->pg);
        else if (st)
                sqlite3_reset(st->lite);
}

void stmt_resetp(db_stmt **st)
{
        stmt_reset(*st);
}

int stmt_step(db_stmt *st)
{
        int rc;

        if (st->pg)
                return kpg_step(st->pg);
        rc = sqlite3_step(st->lite);

        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        return store_errno(rc) ?: -EIO;
}

int stmt_run(db_stmt *st)
{
        int r;

        while ((r = stmt_step(st)) > 0)
                ;
        stmt_reset(st);
        return r;
}

int64_t store_changes(knock_store *s)
{
        return s->pg ? kpg_changes(s->pg) : sqlite3_changes64(s->db);
}

int stmt_strv(db_stmt *st, char ***ret, size_t *ret_n)
{
        char **v = NULL;
        size_t n = 0;
        int r;

        while ((r = stmt_step(st)) > 0) {
                char **nv = reallocarray(v, n + 1, sizeof(*v));

                if (!nv || !(nv[n] = stmt_strdup(st, 0))) {
                        v = nv ?: v;
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                n++;
        }
        stmt_reset(st);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(v[i]);
                free(v);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int stmt_param(db_stmt *st, const char *name)
{
        if (st->pg)
                return kpg_param_index(st->pg, name);
        return sqlite3_bind_parameter_index(st->lite, name);
}

int stmt_param_count(db_stmt *st)
{
        if (st->pg)
                return kpg_param_count(st->pg);
        return sqlite3_bind_parameter_count(st->lite);
}

int stmt_bind_null(db_stmt *st, int idx)
{
        if (st->pg)
                return kpg_bind_null(st->pg, idx);
        return store_errno(sqlite3_bind_null(st->lite, idx));
}

/*
 * PostgreSQL copies every value it is given: "static" is SQLite's saving.
 * Its text holds UTF-8 only, without NUL: what arrives from the network (a
 * provider id, a header, a path) may be neither, and one such request must
 * not fail the transaction that stores the others with it. Such text is
 * stored with U+FFFD for each byte that is not UTF-8 (SQLite keeps the
 * bytes; knockctl prints them with U+FFFD too).
 */
static int bind_text_pg(db_stmt *st, int idx, const char *s, size_t len)
{
        _cleanup_free_ char *fixed = NULL;

        if (utf8_valid(s, len))
                return kpg_bind_text(st->pg, idx, s, len);
        fixed = utf8_lossy(s, len, true, &len, NULL);
        return fixed ? kpg_bind_text(st->pg, idx, fixed, len) : -ENOMEM;
}

int stmt_bind_text(db_stmt *st, int idx, const char *s)
{
        if (!s)
                return stmt_bind_null(st, idx);
        if (st->pg)
                return bind_text_pg(st, idx, s, strlen(s));
        return store_errno(sqlite3_bind_text(st->lite, idx, s, -1, SQLITE_TRANSIENT));
}

int stmt_bind_text_static(db_stmt *st, int idx, const char *s)
{
        if (!s)
                return stmt_bind_null(st, idx);
        if (st->pg)
                return bind_text_pg(st, idx, s, strlen(s));
        return store_errno(sqlite3_bind_text(st->lite, idx, s, -1, SQLITE_STATIC));
}

int stmt_bind_text_len_static(db_stmt *st, int idx, const char *s, size_t len)
{
        if (!s || len == 0)
                return stmt_bind_null(st, idx);
        if (st->pg)
                return bind_text_pg(st, idx, s, len);
        return store_errno(
                sqlite3_bind_text64(st->lite, idx, s, len, SQLITE_STATIC, SQLITE_UTF8));
}

int stmt_bind_blob_static(db_stmt *st, int idx, const void *p, size_t len)
{
        if (!p)
                return stmt_bind_null(st, idx);
        if (st->pg)
                return kpg_bind_blob(st->pg, idx, p, len);
        return store_errno(sqlite3_bind_blob64(st->lite, idx, p, len, SQLITE_STATIC));
}

int stmt_bind_i64(db_stmt *st, int idx, int64_t v)
{
        if (st->pg)
                return kpg_bind_i64(st->pg, idx, v);
        return store_errno(sqlite3_bind_int64(st->lite, idx, v));
}

int stmt_bind_i64_or_null(db_stmt *st, int idx, int64_t v)
{
        if (v < 0)
                return stmt_bind_null(st, idx);
        return stmt_bind_i64(st, idx, v);
}

int stmt_col_type(db_stmt *st, int col)
{
        /* store-pg.h names the types as store.h does, in the same order. */
        _Static_assert((int)KPG_NULL == (int)DB_NULL && (int)KPG_INTEGER == (int)DB_INTEGER &&
                               (int)KPG_FLOAT == (int)DB_FLOAT && (int)KPG_TEXT == (int)DB_TEXT &&
                               (int)KPG_BLOB == (int)DB_BLOB,
                       "store-pg.h's column types are store.h's");
        if (st->pg)
                return kpg_column_type(st->pg, col);
        switch (sqlite3_column_type(st->lite, col)) {
        case SQLITE_INTEGER:
                return DB_INTEGER;
        case SQLITE_FLOAT:
                return DB_FLOAT;
        case SQLITE_TEXT:
                return DB_TEXT;
        case SQLITE_BLOB:
                return DB_BLOB;
        default:
                return DB_NULL;
        }
}

int64_t stmt_col_i64(db_stmt *st, int col)
{
        if (st->pg)
                return kpg_column_i64(st->pg, col);
        return sqlite3_column_int64(st->lite, col);
}

int stmt_col_int(db_stmt *st, int col)
{
        if (st->pg)
                return (int)kpg_column_i64(st->pg, col);
        return sqlite3_column_int(st->lite, col);
}

double stmt_col_double(db_stmt *st, int col)
{
        if (st->pg)
                return kpg_column_double(st->pg, col);
        return sqlite3_column_double(st->lite, col);
}

const char *stmt_col_text(db_stmt *st, int col)
{
        if (st->pg)
                return kpg_column_text(st->pg, col);
        return (const char *)sqlite3_column_text(st->lite, col);
}

size_t stmt_col_bytes(db_stmt *st, int col)
{
        if (st->pg)
                return kpg_column_bytes(st->pg, col);
        return (size_t)sqlite3_column_bytes(st->lite, col);
}

const void *stmt_col_blob(db_stmt *st, int col)
{
        if (st->pg)
                return kpg_column_blob(st->pg, col);
        return sqlite3_column_blob(st->lite, col);
}

char *stmt_strdup(db_stmt *st, int col)
{
        const char *t = stmt_col_text(st, col);
        return t ? strdup(t) : NULL;
}

/* Prepares sql and steps it onto its first row (-ENODATA: none). */
static int query_row(knock_store *s, const char *sql, db_stmt **ret)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        int r;

        r = store_prepare(s, sql, &st);
        if (r < 0)
                return r;
        r = stmt_step(st);
        if (r <= 0)
                return r ?: -ENODATA;
        *ret = TAKE_PTR(st);
        return 0;
}

int store_query_i64(knock_store *s, const char *sql, int64_t *ret)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        int r = query_row(s, sql, &st);

        if (r >= 0)
                *ret = stmt_col_i64(st, 0);
        return r;
}

int store_query_text(knock_store *s, const char *sql, char **ret)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        int r = query_row(s, sql, &st);

        if (r < 0)
                return r;
        *ret = stmt_col_null(st, 0) ? NULL : stmt_strdup(st, 0);
        return !stmt_col_null(st, 0) && !*ret ? -ENOMEM : 0;
}

int store_bytes(knock_store *s, int64_t *ret)
{
        if (s->pg)
                return store_query_i64(s,
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint"
                        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                        ret);
        return store_query_i64(s,
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()", ret);
}

int store_schema_version(knock_store *s, int *ret)
{
        int64_t v;
        int r;

        if (s->pg) {
                r = kpg_schema_version(s->pg, &v);
                if (r >= 0)
                        *ret = (int)v;
                return r;
        }
        r = store_query_i64(s,
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_migrations'",
                &v);
        if (r < 0)
                return r;
        if (v == 0) {
                *ret = 0;
                return 0;
        }
        r = store_query_i64(s, "SELECT coalesce(max(version),0) FROM schema_migrations", &v);
        if (r < 0)
                return r;
        *ret = (int)v;
        return 0;
}

/* Each migration in its own IMMEDIATE transaction together with its
 * schema_migrations row: a crash mid-migration leaves the previous version. */
static int store_migrate(knock_store *s)
{
        int version, r;

        r = store_exec(s, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          "  version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                          "  applied_at INTEGER NOT NULL)");
        if (r < 0)
                return r;
        r = store_schema_version(s, &version);
        if (r < 0)
                return r;
        if (version > STORE_SCHEMA_VERSION)
                return -EPROTO;
        for (size_t i = 0; i < ELEMENTSOF(migrations); i++) {
                _cleanup_stmt_ db_stmt *st = NULL;

                if (migrations[i].version <= version)
                        continue;
                r = store_begin(s);
                if (r < 0)
                        return r;
                /* Re-check under the write lock: another daemon of the same
                 * endpoint may have migrated while we waited. */
                r = store_schema_version(s, &version);
                if (r < 0 || migrations[i].version <= version) {
                        store_rollback(s);
                        if (r < 0)
                                return r;
                        continue;
                }
                r = migrations[i].run ? migrations[i].run(s) : store_exec(s, migrations[i].sql);
                if (r >= 0)
                        r = store_prepare(s,
                                "INSERT INTO schema_migrations(version,name,applied_at) VALUES(?,?,?)",
                                &st);
                if (r >= 0) {
                        stmt_bind_i64(st, 1, migrations[i].version);
                        stmt_bind_text_static(st, 2, migrations[i].name);
                        stmt_bind_i64(st, 3, now_ms());
                        r = stmt_run(st);
                }
                r = store_end(s, r);
                if (r < 0)
                        return r;
        }
        return 0;
}

#define LOCATION_PG "postgresql:"

char *store_location_postgresql(const char *schema, const char *conninfo)
{
        char *p;

        if (asprintf(&p, LOCATION_PG "%s:%s", schema, conninfo) < 0)
                return NULL;
        return p;
}

bool store_location_is_postgresql(const char *location)
{
        return startswith(location, LOCATION_PG);
}

char *store_location_describe(const char *location)
{
        const char *schema = location + strlen(LOCATION_PG), *colon;
        char *p;

        if (!store_location_is_postgresql(location) || !(colon = strchr(schema, ':')))
                return strdup(location);
        if (asprintf(&p, "PostgreSQL schema %.*s (%s)", (int)(colon - schema), schema, colon + 1) < 0)
                return NULL;
        return p;
}

/* "postgresql:SCHEMA:CONNINFO": the schema and the migrations are
 * store-pg.c's; SQLite's flags for its WAL mean nothing there. */
static int open_pg(knock_store *s, unsigned flags)
{
        const char *schema = s->path + strlen(LOCATION_PG), *colon = strchr(schema, ':');
        _cleanup_free_ char *name = NULL;

        if (!colon)
                return -EINVAL;
        name = strndup(schema, (size_t)(colon - schema));
        if (!name)
                return -ENOMEM;
        s->engine = STORE_ENGINE_POSTGRESQL;
        return kpg_open(colon + 1, name, flags & (STORE_CREATE | STORE_READONLY | STORE_ANY_VERSION),
                        &s->pg);
}

/* How long a statement waits for another connection's lock. */
#define BUSY_TIMEOUT_MS 5000

/* Switching a new file to WAL takes an exclusive lock, and SQLite answers
 * SQLITE_BUSY at once, without the busy handler, while another connection
 * holds any lock: the daemons of one endpoint starting together on a fresh
 * file (systemctl start knock@NAME) race here. Retry for as long as the busy
 * timeout would have waited. */
static int store_journal_wal(knock_store *s)
{
        enum { STEP_US = 10 * 1000, TRIES = BUSY_TIMEOUT_MS * 1000 / STEP_US };
        int r;

        for (int i = 0;; i++) {
                r = store_exec(s, "PRAGMA journal_mode=WAL");
                if (r != -EBUSY || i >= TRIES)
                        return r;
                usleep(STEP_US);
        }
}

int store_open(const char *path, unsigned flags, knock_store **ret)
{
        knock_store *s;
        int oflags, r, version;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->path = strdup(path);
        if (!s->path) {
                free(s);
                return -ENOMEM;
        }
        if (store_location_is_postgresql(path)) {
                r = open_pg(s, flags);
                if (r < 0)
                        goto fail;
                *ret = s;
                return 0;
        }
        if (flags & STORE_READONLY)
                oflags = SQLITE_OPEN_READONLY;
        else if (flags & STORE_CREATE)
                oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
        else
                oflags = SQLITE_OPEN_READWRITE;
        oflags |= SQLITE_OPEN_NOMUTEX;

        r = store_errno(sqlite3_open_v2(path, &s->db, oflags,
                                        flags & STORE_WAL_BUFFER ? walbuf_vfs_name() : NULL));
        if (r < 0)
                goto fail;
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);

        if (!(flags & STORE_READONLY)) {
                /* Before anything else: page size only applies to an empty file. */
                r = store_exec(s, "PRAGMA page_size=4096");
                if (r < 0)
                        goto fail;
                r = store_journal_wal(s);
                if (r < 0)
                        goto fail;
        }
        r = store_exec(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                          "PRAGMA temp_store=MEMORY");
        if (r < 0)
                goto fail;
        if (flags & STORE_NO_AUTOCHECKPOINT) {
                r = store_exec(s, "PRAGMA wal_autocheckpoint=0");
                if (r < 0)
                        goto fail;
        }
        if (flags & STORE_CREATE) {
                r = store_migrate(s);
                if (r < 0)
                        goto fail;
        } else {
                r = store_schema_version(s, &version);
                if (r < 0)
                        goto fail;
                if (version > STORE_SCHEMA_VERSION) {
                        r = -EPROTO;
                        goto fail;
                }
                if (version < STORE_SCHEMA_VERSION) {
                        /* Not created/migrated yet: callers without STORE_CREATE
                         * (knockctl read verbs) say "has knock-ingress run?". */
                        r = -ENOMEDIUM;
                        goto fail;
                }
        }
        *ret = s;
        return 0;
fail:
        store_close(s);
        return r;
}

knock_store *store_close(knock_store *s)
{
        if (!s)
                return NULL;
        stmt_finalize(s->begin);
        stmt_finalize(s->commit);
        for (size_t i = 0; i < s->n_cache; i++)
                stmt_finalize(s->cache[i].st);
        free(s->cache);
        if (s->db)
                sqlite3_close_v2(s->db);
        kpg_close(s->pg);
        free(s->path);
        free(s);
        return NULL;
}

void store_closep(knock_store **s)
{
        *s = store_close(*s);
}

/* ---- the clock of claims, wake-ups across hosts (store.h) ---- */

int store_clock_sync(knock_store *s)
{
        uint64_t t0, t1;
        int64_t server;
        int r;

        if (!s->pg)
                return 0;
        t0 = mono_us();
        r = store_query_i64(s, "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint",
                &server);
        t1 = mono_us();
        if (r < 0)
                return r;
        /* The server read its clock somewhere in the round trip: its middle. */
        s->clock_offset_ms = server - (int64_t)((t0 + t1) / 2000);
        s->clock_synced = true;
        return 0;
}

int64_t store_now_ms(knock_store *s)
{
        if (!s->pg || getenv("KNOCK_FAKE_NOW_MS"))
                return now_ms();
        if (!s->clock_synced && store_clock_sync(s) < 0)
                return now_ms();
        return (int64_t)(mono_us() / 1000) + s->clock_offset_ms;
}

int store_notify(knock_store *s, const char *topic)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        if (!s->pg)
                return 0;
        /* The channel is the schema: search_path names it first. */
        r = store_cached(s, "SELECT pg_notify(current_schema(), ?1)", &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, topic);
        return stmt_run(st);
}

int store_listen(knock_store *s, const char *topic)
{
        return s->pg ? kpg_listen(s->pg, topic) : -EOPNOTSUPP;
}

int store_socket(knock_store *s)
{
        return s->pg ? kpg_socket(s->pg) : -1;
}

int store_notified(knock_store *s)
{
        return s->pg ? kpg_notified(s->pg) : 0;
}

static int exec_bound(knock_store *s, const char *sql, const char *t1, int64_t i1, int64_t i2,
                      int64_t i3, const char *t2, const char *t3)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        int r;

        r = store_prepare(s, sql, &st);
        if (r < 0)
                return r;
        /* Unused parameters are simply not present in sql. */
        if (stmt_param(st, ":t1"))
                stmt_bind_text(st, stmt_param(st, ":t1"), t1);
        if (stmt_param(st, ":i1"))
                stmt_bind_i64(st, stmt_param(st, ":i1"), i1);
        if (stmt_param(st, ":i2"))
                stmt_bind_i64(st, stmt_param(st, ":i2"), i2);
        if (stmt_param(st, ":i3"))
                stmt_bind_i64(st, stmt_param(st, ":i3"), i3);
        if (stmt_param(st, ":t2"))
                stmt_bind_text(st, stmt_param(st, ":t2"), t2);
        if (stmt_param(st, ":t3"))
                stmt_bind_text(st, stmt_param(st, ":t3"), t3);
        return stmt_run(st);
}

const char *store_daemon_key(knock_store *s, const char *daemon, char *buf, size_t len)
{
        if (!s->pg)
                return daemon;
        snprintf(buf, len, "%s%c%s", daemon, STORE_DAEMON_HOST_SEP, knock_host());
        return buf;
}

int store_daemon_started(knock_store *s, const char *daemon, bool previous_unclean)
{
        char key[STORE_DAEMON_KEY_MAX];

        return exec_bound(s,
                "INSERT INTO daemons(daemon,pid,started_at,heartbeat_at,stopped_at,"
                "  last_clean_exit,suspected_oom_kills,status)"
                " VALUES(:t1,:i1,:i2,:i2,NULL,NULL,:i3,'starting')"
                " ON CONFLICT(daemon) DO UPDATE SET pid=:i1, started_at=:i2, heartbeat_at=:i2,"
                "  stopped_at=NULL, status='starting',"
                "  last_clean_exit = CASE WHEN :i3 = 1 THEN 0 ELSE daemons.last_clean_exit END,"
                "  suspected_oom_kills = daemons.suspected_oom_kills + :i3",
                store_daemon_key(s, daemon, key, sizeof(key)), (int64_t)getpid(), store_now_ms(s),
                previous_unclean, NULL, NULL);
}

int store_daemon_heartbeat(knock_store *s, const char *daemon, const char *counters_json,
                           const char *status)
{
        char key[STORE_DAEMON_KEY_MAX];

        /* Every 5 s: the offset to the server's clock is measured again. */
        (void)store_clock_sync(s);
        return exec_bound(s,
                "UPDATE daemons SET heartbeat_at=:i2, pid=:i1,"
                " counters=coalesce(:t2, counters), status=coalesce(:t3, status)"
                " WHERE daemon=:t1",
                store_daemon_key(s, daemon, key, sizeof(key)), (int64_t)getpid(),
                store_now_ms(s), 0, counters_json, status);
}

int store_daemon_stopped(knock_store *s, const char *daemon)
{
        char key[STORE_DAEMON_KEY_MAX];

        return exec_bound(s,
                "UPDATE daemons SET stopped_at=:i2, heartbeat_at=:i2, last_clean_exit=1,"
                " status='stopped' WHERE daemon=:t1 AND pid=:i1",
                store_daemon_key(s, daemon, key, sizeof(key)), (int64_t)getpid(),
                store_now_ms(s), 0, NULL, NULL);
}

int store_audit(knock_store *s, const char *actor, const char *action, const char *filters_json,
                const char *counts_json, const char *ids_json)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        char id[KNOCK_ID_MAX];
        int r;

        id_new("aud", id);
        r = store_prepare(s,
                "INSERT INTO audit(id,at,actor,action,filters,counts,ids) VALUES(?,?,?,?,?,?,?)",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, id);
        stmt_bind_i64(st, 2, now_ms());
        stmt_bind_text(st, 3, actor);
        stmt_bind_text(st, 4, action);
        stmt_bind_text(st, 5, filters_json);
        stmt_bind_text(st, 6, counts_json);
        stmt_bind_text(st, 7, ids_json);
        return stmt_run(st);
}

int store_meta_set(knock_store *s, const char *key, const char *value)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        int r;

        r = store_prepare(s, "INSERT INTO meta(key,value) VALUES(?,?)"
                             " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, key);
        stmt_bind_text(st, 2, value);
        return stmt_run(st);
}

int store_meta_get(knock_store *s, const char *key, char **ret)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        int r;

        r = store_prepare(s, "SELECT value FROM meta WHERE key=?", &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, key);
        r = stmt_step(st);
        if (r <= 0) {
                *ret = NULL;
                return r;
        }
        *ret = stmt_strdup(st, 0);
        return 0;
}
