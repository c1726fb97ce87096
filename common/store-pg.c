/* SPDX-License-Identifier: MIT */
/*
 * store-pg — see store-pg.h for the promises.
 *
 * The choices, and why:
 *
 *  - Sessions. client_encoding is forced to UTF8 after the caller's
 *    connection string (knock's text is UTF-8, as in SQLite), and the
 *    database must be UTF8 too: another encoding would refuse some of what
 *    providers send. connect_timeout (10 s) and application_name ("knock")
 *    come before it and are the operator's to change. Every session, the
 *    first and each one after a reconnection, gets search_path (the
 *    endpoint's schema, quoted), default_transaction_read_only for
 *    STORE_READONLY, and lock_timeout 5 s unless the operator set one: the
 *    SQLite store waits 5 s for a lock (busy_timeout) and then says -EBUSY,
 *    and a PostgreSQL row lock would otherwise wait forever.
 *
 *  - Durability. The ingress answers 2xx after COMMIT returned; that is a
 *    promise only when the commit record was flushed: synchronous_commit
 *    'off' or 'local' (local: not waiting for a synchronous standby the
 *    operator configured) and fsync=off are refused with -EINVAL. 'on',
 *    'remote_write' and 'remote_apply' are accepted: with a synchronous
 *    standby, remote_apply also makes the row visible there before the 2xx.
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
 *
 *  - Lost connections. libpq notices a dead connection when a statement
 *    fails; that statement returns -ECONNRESET (whether a COMMIT that
 *    failed so took effect cannot be known: the 503 it leads to makes the
 *    provider retry, and dedupe makes the retry exact). The next call
 *    reconnects (PQreset), once. Not inside a transaction: if one was open,
 *    its statements are gone with the session, and running the caller's
 *    next statements in autocommit would commit half of what it meant to
 *    be atomic. So every call fails with -ECONNRESET until the caller rolls
 *    back (kpg_rollback(), or kpg_exec "ROLLBACK"), which succeeds without
 *    the server, as the server already did it.
 *
 *  - Migrations. The same numbers as store.c's, one transaction each,
 *    holding pg_advisory_xact_lock on a key derived from the schema name
 *    (FNV-1a): hosts starting at once queue on it, and each re-reads the
 *    version under the lock, so a migration runs once. The lock is waited
 *    for without a timeout (a long migration on another host is not an
 *    error); the migration's own statements keep the session's
 *    lock_timeout. Every TEXT column is COLLATE "C": SQLite compares text
 *    bytewise, and ids that sort in time order (util.h id_new) must sort
 *    the same in both; every integer is BIGINT (INTEGER is 32 bits here).
 */
#define _GNU_SOURCE
#include "store-pg.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "list.h"
#include "store.h"
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

#define PG_IDENT_MAX 63   /* NAMEDATALEN - 1 */
#define PARAM_MAX 32766   /* SQLite's SQLITE_MAX_VARIABLE_NUMBER */
#define LOCK_TIMEOUT_DEFAULT "5s"

typedef struct kpg_param {
        char *heap;    /* owned text or blob; value points here or at num */
        const char *value; /* NULL: SQL NULL */
        int length;
        int format;    /* 0 text, 1 binary */
        Oid type;      /* 0: the server infers it */
        Oid hint;      /* the type of the last non-NULL value, kept for NULL */
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
        char *sql;   /* translated */
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
        int row; /* current row; -1 before the first */
        kpg_cell *cells; /* decoded bytea of the current row, one per column */
        int n_cells;
};

struct kpg_conn {
        PGconn *pg;
        char *schema;
        unsigned flags;
        uint64_t generation; /* +1 at every reconnection */
        uint64_t next_name;  /* named statements: never reused in a session */
        int64_t changes;
        bool txn_lost;      /* the session died inside a transaction */
        bool session_ready; /* session_setup() ran on this session */
        char lock_timeout[32]; /* the session's, restored inside migrations */
        char **dealloc;     /* named statements to DEALLOCATE when idle */
        size_t n_dealloc;
        kpg_stmt *stmts;    /* open statements, detached by kpg_close() */
        char errmsg[512];
};

/*
 * SQLSTATE → errno, mirroring store_errno(): the first row whose prefix
 * matches (a class is two characters, so the specific codes come first).
 * Anything else is -EIO.
 */
static const struct {
        const char *state;
        int err;
} sqlstate_errnos[] = {
        {"23", -EEXIST},        /* integrity: unique, foreign key, check, not null */
        {"40001", -EBUSY},      /* serialization failure */
        {"40P01", -EBUSY},      /* deadlock detected */
        {"55P03", -EBUSY},      /* lock not available (lock_timeout) */
        {"53100", -ENOSPC},     /* disk full */
        {"53", -ENOMEM},        /* insufficient resources: memory, connections */
        {"25006", -EROFS},      /* read-only transaction */
        {"42501", -EACCES},     /* insufficient privilege */
        {"28", -EACCES},        /* invalid authorization */
        {"57P01", -ECONNRESET}, /* admin shutdown */
        {"57P02", -ECONNRESET}, /* crash shutdown */
        {"57P03", -ECONNRESET}, /* cannot connect now (starting, failover) */
        {"08", -ECONNRESET},    /* connection exception */
        {"42P01", -ENOMEDIUM},  /* undefined table: not migrated */
        {"3F000", -ENOMEDIUM},  /* invalid schema name: not created */
        {"22021", -EILSEQ},     /* not valid UTF-8 (SQLite stored it) */
        {"22P05", -EILSEQ},     /* not representable in the database's encoding */
        {"54", -E2BIG},         /* program limit exceeded (SQLITE_TOOBIG) */
};

static int sqlstate_errno(const char *state)
{
        if (!state)
                return -EIO;
        for (size_t i = 0; i < ELEMENTSOF(sqlstate_errnos); i++)
                if (startswith(state, sqlstate_errnos[i].state))
                        return sqlstate_errnos[i].err;
        return -EIO;
}

static void set_error(kpg_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(kpg_conn *c, const char *fmt, ...)
{
        va_list ap;
        size_t n;

        va_start(ap, fmt);
        vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
        va_end(ap);
        /* libpq's messages end in a newline (some span lines: keep those). */
        n = strlen(c->errmsg);
        while (n > 0 && (c->errmsg[n - 1] == '\n' || c->errmsg[n - 1] == ' '))
                c->errmsg[--n] = '\0';
}

/* The server's primary message and SQLSTATE; the DETAIL is left out (it
 * quotes row values: a key that collided, part of a body). */
static void set_result_error(kpg_conn *c, const PGresult *res)
{
        const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

        if (primary && state)
                set_error(c, "%s (SQLSTATE %s)", primary, state);
        else if (res && *PQresultErrorMessage(res))
                set_error(c, "%s", PQresultErrorMessage(res));
        else
                set_error(c, "%s", PQerrorMessage(c->pg));
}

/* Notices ("relation already exists, skipping", warnings) would go to
 * stderr by default; the library is silent. */
static void notice_drop(void *arg, const char *message)
{
}

static bool connection_ok(kpg_conn *c)
{
        return PQstatus(c->pg) == CONNECTION_OK;
}

/* The errno of a statement's result, recording its changes and its error. */
static int result_errno(kpg_conn *c, PGresult *res, PGTransactionStatusType before)
{
        ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        const char *cmd;
        int r;

        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK ||
            status == PGRES_EMPTY_QUERY) {
                cmd = PQcmdStatus(res);
                if (startswith(cmd, "INSERT") || startswith(cmd, "UPDATE") ||
                    startswith(cmd, "DELETE") || startswith(cmd, "MERGE"))
                        c->changes = strtoll(PQcmdTuples(res), NULL, 10);
                return 0;
        }
        if (!connection_ok(c)) {
                /* Whatever the server said last (57P01, …), the session is gone. */
                r = -ECONNRESET;
                if (before != PQTRANS_IDLE)
                        c->txn_lost = true;
        } else if (status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR)
                r = sqlstate_errno(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
        else
                r = -EIO; /* COPY and the like: no caller of ours starts one */
        set_result_error(c, res);
        return r;
}

/* Runs sql (no parameters) on the session as it is: no reconnection. The
 * result is handed out on success when ret is not NULL. */
static int run(kpg_conn *c, const char *sql, PGresult **ret)
{
        PGTransactionStatusType before = PQtransactionStatus(c->pg);
        PGresult *res = PQexec(c->pg, sql);
        int r = result_errno(c, res, before);

        if (r >= 0 && ret)
                *ret = res;
        else
                PQclear(res);
        return r;
}

static bool is_rollback(const char *sql)
{
        size_t n;

        sql += strspn(sql, " \t\r\n");
        n = strcspn(sql, " \t\r\n;");
        if (!((n == 8 && strncasecmp(sql, "ROLLBACK", 8) == 0) ||
              (n == 5 && strncasecmp(sql, "ABORT", 5) == 0)))
                return false;
        sql += n;
        sql += strspn(sql, " \t\r\n");
        n = strcspn(sql, " \t\r\n;");
        if ((n == 4 && strncasecmp(sql, "WORK", 4) == 0) ||
            (n == 11 && strncasecmp(sql, "TRANSACTION", 11) == 0))
                sql += n;
        sql += strspn(sql, " \t\r\n;");
        return *sql == '\0';
}

/* What every session gets, the first and each after a reconnection. */
static int session_setup(kpg_conn *c)
{
        PGresult *res = NULL;
        char *ident, *sql;
        const char *sync, *fsync, *lock_timeout, *encoding;
        int r;

        ident = PQescapeIdentifier(c->pg, c->schema, strlen(c->schema));
        if (!ident) {
                set_error(c, "%s", PQerrorMessage(c->pg));
                return -ENOMEM;
        }
        r = asprintf(&sql, "SET search_path TO %s%s", ident,
                c->flags & STORE_READONLY ? "; SET default_transaction_read_only = on" : "");
        PQfreemem(ident);
        if (r < 0)
                return -ENOMEM;
        r = run(c, sql, NULL);
        free(sql);
        if (r < 0)
                return r;

        r = run(c, "SELECT current_setting('synchronous_commit'), current_setting('fsync'),"
                   " current_setting('lock_timeout'), current_setting('server_encoding')",
                &res);
        if (r < 0)
                return r;
        sync = PQgetvalue(res, 0, 0);
        fsync = PQgetvalue(res, 0, 1);
        lock_timeout = PQgetvalue(res, 0, 2);
        encoding = PQgetvalue(res, 0, 3);
        if (streq(sync, "off") || streq(sync, "local")) {
                set_error(c, "synchronous_commit is '%s': a COMMIT would not be durable when it "
                             "returns (set it to on, remote_write or remote_apply)", sync);
                r = -EINVAL;
        } else if (!streq(fsync, "on")) {
                set_error(c, "the server runs with fsync=%s: a COMMIT would not be durable", fsync);
                r = -EINVAL;
        } else if (!streq(encoding, "UTF8")) {
                set_error(c, "the database's encoding is %s: knock stores UTF-8 (create it "
                             "with ENCODING 'UTF8')", encoding);
                r = -EINVAL;
        } else if (streq(lock_timeout, "0")) {
                r = run(c, "SET lock_timeout = '" LOCK_TIMEOUT_DEFAULT "'", NULL);
                snprintf(c->lock_timeout, sizeof(c->lock_timeout), LOCK_TIMEOUT_DEFAULT);
        } else if (strlen(lock_timeout) < sizeof(c->lock_timeout) &&
                   strspn(lock_timeout, "0123456789abcdefghijklmnopqrstuvwxyz ") ==
                           strlen(lock_timeout))
                snprintf(c->lock_timeout, sizeof(c->lock_timeout), "%s", lock_timeout);
        else {
                set_error(c, "unexpected lock_timeout '%s'", lock_timeout);
                r = -EINVAL;
        }
        PQclear(res);
        if (r >= 0)
                c->session_ready = true;
        return r;
}

static void dealloc_drop(kpg_conn *c)
{
        for (size_t i = 0; i < c->n_dealloc; i++)
                free(c->dealloc[i]);
        free(c->dealloc);
        c->dealloc = NULL;
        c->n_dealloc = 0;
}

/* DEALLOCATEs the named statements finalized while a transaction was open. */
static void dealloc_flush(kpg_conn *c)
{
        /* Names are kpg_N, shorter than kpg_stmt.name. */
        char *sql = malloc(c->n_dealloc * (sizeof("DEALLOCATE ;") + 32) + 1), *o = sql;

        if (sql) {
                for (size_t i = 0; i < c->n_dealloc; i++)
                        o = stpcpy(stpcpy(stpcpy(o, "DEALLOCATE "), c->dealloc[i]), ";");
                (void)run(c, sql, NULL);
                free(sql);
        }
        dealloc_drop(c);
}

/* Before a statement: the connection is there (reconnecting once, never
 * inside a transaction), the session is set up, the backlog of DEALLOCATEs
 * is gone when the session is idle. */
static int conn_ready(kpg_conn *c)
{
        if (c->txn_lost) {
                set_error(c, "the connection was lost inside a transaction; roll it back");
                return -ECONNRESET;
        }
        if (!connection_ok(c)) {
                PQreset(c->pg);
                if (!connection_ok(c)) {
                        set_error(c, "%s", PQerrorMessage(c->pg));
                        return -ECONNRESET;
                }
                PQsetNoticeProcessor(c->pg, notice_drop, NULL);
                /* The server-side statements went with the old session. */
                c->generation++;
                c->session_ready = false;
                dealloc_drop(c);
        }
        if (!c->session_ready) {
                int r = session_setup(c);
                if (r < 0)
                        return r;
        }
        if (c->n_dealloc > 0 && PQtransactionStatus(c->pg) == PQTRANS_IDLE)
                dealloc_flush(c);
        return 0;
}

const char *kpg_errmsg(kpg_conn *c)
{
        return c ? c->errmsg : "no connection";
}

int kpg_exec(kpg_conn *c, const char *sql)
{
        int r;

        /* Rolling back a transaction the server has already dropped (with
         * the session) succeeds without it. */
        if (is_rollback(sql) && (c->txn_lost || !connection_ok(c))) {
                c->txn_lost = false;
                return 0;
        }
        r = conn_ready(c);
        if (r < 0)
                return r;
        return run(c, sql, NULL);
}

int64_t kpg_changes(kpg_conn *c)
{
        return c->changes;
}

bool kpg_in_transaction(kpg_conn *c)
{
        if (c->txn_lost)
                return true;
        /* A dead session holds no transaction (a lost one is txn_lost). */
        return connection_ok(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE;
}

void kpg_rollback(kpg_conn *c)
{
        if (kpg_in_transaction(c))
                (void)kpg_exec(c, "ROLLBACK");
}

int kpg_backend_pid(kpg_conn *c)
{
        return connection_ok(c) ? PQbackendPID(c->pg) : 0;
}

/* ---- schema and migrations --------------------------------------------- */

#define T "TEXT COLLATE \"C\""
#define I "BIGINT"

/* Forward-only, numbered as store.c's migrations[] (versions 1..N, one row
 * each), giving the same tables, columns and constraints. Never edit a
 * published one; append. */
static const struct {
        int version;
        const char *name;
        const char *sql; /* NULL: nothing to do here, the version is recorded */
} migrations[] = {
        {1, "initial schema",
         "CREATE TABLE events ("
         "  id " T " PRIMARY KEY,"
         "  provider_event_id " T " UNIQUE,"
         "  event_type " T ","
         "  status " T " NOT NULL CHECK (status IN"
         "    ('received','processing','failed','dead','ignored','handled')),"
         "  status_reason " T ","
         "  delivery_id " T " NOT NULL,"
         "  run_delivery_id " T ","
         "  attempt_count " I " NOT NULL DEFAULT 0,"
         "  received_at " I " NOT NULL,"
         "  updated_at " I " NOT NULL,"
         "  next_attempt_at " I ","
         "  claimed_by " T ","
         "  claim_until " I ","
         "  last_error " T ","
         "  finished_at " I
         ");"
         "CREATE INDEX events_queue ON events(status, next_attempt_at);"
         "CREATE INDEX events_received_at ON events(received_at);"
         "CREATE INDEX events_type ON events(event_type);"
         "CREATE TABLE deliveries ("
         "  id " T " PRIMARY KEY,"
         "  event_id " T " REFERENCES events(id) ON DELETE CASCADE,"
         "  received_at " I " NOT NULL,"
         "  signature_valid " I " NOT NULL,"
         "  verify_error " T ","
         "  http_status " I " NOT NULL,"
         "  provider_event_id " T ","
         "  event_type " T ","
         "  request_id " T ","
         "  method " T ","
         "  uri " T ","
         "  remote " T ","
         "  content_type " T ","
         "  headers " T ","
         "  body BYTEA,"
         "  body_bytes " I " NOT NULL DEFAULT 0,"
         "  duplicate " I " NOT NULL DEFAULT 0,"
         "  handshake " I " NOT NULL DEFAULT 0"
         ");"
         "CREATE INDEX deliveries_event ON deliveries(event_id);"
         "CREATE INDEX deliveries_received_at ON deliveries(received_at);"
         "CREATE INDEX deliveries_orphan_provider_event_id ON deliveries(provider_event_id)"
         "  WHERE event_id IS NULL;"
         "CREATE TABLE attempts ("
         "  id " T " PRIMARY KEY,"
         "  event_id " T " NOT NULL REFERENCES events(id) ON DELETE CASCADE,"
         "  delivery_id " T ","
         "  attempt " I " NOT NULL,"
         "  worker " T ","
         "  handler " T ","
         "  started_at " I " NOT NULL,"
         "  ended_at " I ","
         "  outcome " T ","
         "  exit_code " I ","
         "  signal " I ","
         "  http_status " I ","
         "  error " T ","
         "  output " T
         ");"
         "CREATE INDEX attempts_event ON attempts(event_id);"
         "CREATE TABLE hooks ("
         "  id " T " PRIMARY KEY,"
         "  event_id " T " REFERENCES events(id) ON DELETE CASCADE,"
         "  type " T " NOT NULL,"
         "  payload " T " NOT NULL,"
         "  state " T " NOT NULL CHECK (state IN ('pending','delivered','failed')),"
         "  attempt_count " I " NOT NULL DEFAULT 0,"
         "  max_attempts " I ","
         "  created_at " I " NOT NULL,"
         "  updated_at " I " NOT NULL,"
         "  next_attempt_at " I ","
         "  claimed_by " T ","
         "  claim_until " I ","
         "  last_status " I ","
         "  last_error " T ","
         "  last_attempt_at " I ","
         "  delivered_at " I
         ");"
         "CREATE INDEX hooks_queue ON hooks(state, next_attempt_at);"
         "CREATE INDEX hooks_event ON hooks(event_id);"
         "CREATE TABLE hook_attempts ("
         "  id " T " PRIMARY KEY,"
         "  hook_id " T " NOT NULL REFERENCES hooks(id) ON DELETE CASCADE,"
         "  at " I " NOT NULL,"
         "  status " I " NOT NULL,"
         "  duration_ms " I " NOT NULL,"
         "  response " T ","
         "  error " T
         ");"
         "CREATE INDEX hook_attempts_hook ON hook_attempts(hook_id);"
         "CREATE TABLE audit ("
         "  id " T " PRIMARY KEY,"
         "  at " I " NOT NULL,"
         "  actor " T " NOT NULL,"
         "  action " T " NOT NULL,"
         "  filters " T ","
         "  counts " T ","
         "  ids " T
         ");"
         "CREATE TABLE daemons ("
         "  daemon " T " PRIMARY KEY,"
         "  pid " I ","
         "  started_at " I ","
         "  heartbeat_at " I ","
         "  stopped_at " I ","
         "  last_clean_exit " I ","
         "  suspected_oom_kills " I " NOT NULL DEFAULT 0,"
         "  counters " T ","
         "  status " T
         ");"
         "CREATE TABLE meta (key " T " PRIMARY KEY, value " T ");"},
        /* SQLite's version 2 rewrote its CHECK constraints without IN lists
         * (its own cost); PostgreSQL's IN is a plain comparison. */
        {2, "CHECK constraints without IN lists", NULL},
        /* pause.h, and events.c's ordered keys. */
        {3, "pauses and ordered keys",
         "CREATE TABLE pauses ("
         "  route " T " PRIMARY KEY,"
         "  kind " T " NOT NULL DEFAULT 'operator',"
         "  since " I " NOT NULL,"
         "  paused_by " T " NOT NULL,"
         "  reason " T ","
         "  probe_at " I ","
         "  probing " I " NOT NULL DEFAULT 0"
         ");"
         "ALTER TABLE events ADD COLUMN order_key " T ";"
         "CREATE INDEX events_order_key ON events(order_key) WHERE order_key IS NOT NULL;"},
};

#undef T
#undef I

_Static_assert(ELEMENTSOF(migrations) == STORE_SCHEMA_VERSION,
        "store-pg.c's migrations must reach store.h's STORE_SCHEMA_VERSION");

/* The advisory lock of the schema's migrations: FNV-1a of "knock:" and the
 * schema name. Two schemas meeting on a key only wait for each other. */
static int64_t migration_lock_key(const char *schema)
{
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (const char *p = "knock:"; *p; p++)
                h = (h ^ (unsigned char)*p) * UINT64_C(0x100000001b3);
        for (const char *p = schema; *p; p++)
                h = (h ^ (unsigned char)*p) * UINT64_C(0x100000001b3);
        return (int64_t)h;
}

/* The schema's version: 0 when it or its schema_migrations does not exist. */
static int schema_version(kpg_conn *c, int64_t *ret)
{
        PGresult *res = NULL;
        int r;

        r = run(c, "SELECT to_regclass('schema_migrations') IS NOT NULL", &res);
        if (r < 0)
                return r;
        if (!streq(PQgetvalue(res, 0, 0), "t")) {
                PQclear(res);
                *ret = 0;
                return 0;
        }
        PQclear(res);
        r = run(c, "SELECT coalesce(max(version), 0) FROM schema_migrations", &res);
        if (r < 0)
                return r;
        *ret = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        return 0;
}

/* BEGIN and the migration lock: waited for as long as another host's
 * migration takes, then the session's lock_timeout again. */
static int begin_locked(kpg_conn *c)
{
        char sql[256];

        snprintf(sql, sizeof(sql),
                "BEGIN; SET LOCAL lock_timeout = 0; SELECT pg_advisory_xact_lock(%" PRId64 ");"
                " SET LOCAL lock_timeout = '%s'",
                migration_lock_key(c->schema), c->lock_timeout);
        return run(c, sql, NULL);
}

/* The schema and schema_migrations, under the lock: CREATE ... IF NOT
 * EXISTS is not safe against a concurrent CREATE, and a schema made by the
 * database's owner for a role without CREATE on the database is used as
 * it is. */
static int create_schema(kpg_conn *c)
{
        PGresult *res = NULL;
        char *ident = NULL, *literal = NULL, *sql = NULL;
        int r;

        ident = PQescapeIdentifier(c->pg, c->schema, strlen(c->schema));
        literal = PQescapeLiteral(c->pg, c->schema, strlen(c->schema));
        if (!ident || !literal) {
                r = -ENOMEM;
                goto out;
        }
        r = begin_locked(c);
        if (r < 0)
                goto out;
        if (asprintf(&sql, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", literal) < 0) {
                sql = NULL;
                r = -ENOMEM;
                goto out;
        }
        r = run(c, sql, &res);
        free(sql);
        sql = NULL;
        if (r >= 0 && streq(PQgetvalue(res, 0, 0), "0")) {
                if (asprintf(&sql, "CREATE SCHEMA %s", ident) < 0) {
                        sql = NULL;
                        r = -ENOMEM;
                } else
                        r = run(c, sql, NULL);
        }
        if (r >= 0)
                r = run(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                           "  version BIGINT PRIMARY KEY, name TEXT COLLATE \"C\" NOT NULL,"
                           "  applied_at BIGINT NOT NULL)",
                        NULL);
        r = r >= 0 ? run(c, "COMMIT", NULL) : r;
out:
        if (r < 0 && connection_ok(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
                (void)run(c, "ROLLBACK", NULL);
        PQclear(res);
        free(sql);
        PQfreemem(ident);
        PQfreemem(literal);
        return r;
}

/* One migration and its schema_migrations row in one transaction, under
 * the lock, unless another host ran it while we waited. */
static int migrate_one(kpg_conn *c, size_t i)
{
        char *sql = NULL, *name = NULL;
        int64_t version;
        int r;

        r = begin_locked(c);
        if (r < 0)
                return r;
        r = schema_version(c, &version);
        if (r < 0 || version >= migrations[i].version) {
                (void)run(c, "ROLLBACK", NULL);
                return r < 0 ? r : version > STORE_SCHEMA_VERSION ? -EPROTO : 0;
        }
        if (migrations[i].sql)
                r = run(c, migrations[i].sql, NULL);
        name = PQescapeLiteral(c->pg, migrations[i].name, strlen(migrations[i].name));
        if (r >= 0 && !name)
                r = -ENOMEM;
        if (r >= 0 &&
            asprintf(&sql,
                    "INSERT INTO schema_migrations(version, name, applied_at) VALUES (%d, %s,"
                    " (extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
                    migrations[i].version, name) < 0) {
                sql = NULL;
                r = -ENOMEM;
        }
        if (r >= 0)
                r = run(c, sql, NULL);
        if (r >= 0)
                r = run(c, "COMMIT", NULL);
        else if (connection_ok(c))
                (void)run(c, "ROLLBACK", NULL);
        free(sql);
        PQfreemem(name);
        return r;
}

static int migrate(kpg_conn *c)
{
        int64_t version;
        int r;

        /* Current already (every start but the first): no lock taken. */
        r = schema_version(c, &version);
        if (r < 0)
                return r;
        if (version > STORE_SCHEMA_VERSION)
                return -EPROTO;
        if (version == STORE_SCHEMA_VERSION)
                return 0;
        r = create_schema(c);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(migrations); i++) {
                if (migrations[i].version <= version)
                        continue;
                r = migrate_one(c, i);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- connections ----------------------------------------------------------- */

static int open_session(const char *conninfo, kpg_conn *c)
{
        /* Before the caller's string: what the operator may change; after
         * it: what knock needs. */
        const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname",
                                    "client_encoding", NULL};
        const char *const values[] = {"10", "knock", conninfo, "UTF8", NULL};
        PQconninfoOption *opts;
        char *err = NULL;

        /* libpq's parse errors quote the string, which may hold a password. */
        opts = PQconninfoParse(conninfo, &err);
        if (!opts) {
                if (err) {
                        explicit_bzero(err, strlen(err));
                        PQfreemem(err);
                        set_error(c, "the PostgreSQL connection string cannot be parsed (libpq's "
                                     "key=value or postgresql:// URI syntax)");
                        return -EINVAL;
                }
                set_error(c, "out of memory parsing the PostgreSQL connection string");
                return -ENOMEM;
        }
        PQconninfoFree(opts);

        c->pg = PQconnectdbParams(keys, values, 1);
        if (!c->pg) {
                set_error(c, "out of memory connecting to PostgreSQL");
                return -ENOMEM;
        }
        PQsetNoticeProcessor(c->pg, notice_drop, NULL);
        if (!connection_ok(c)) {
                set_error(c, "%s", PQerrorMessage(c->pg));
                return -ECONNREFUSED;
        }
        return 0;
}

int kpg_open_msg(const char *conninfo, const char *schema, unsigned flags, kpg_conn **ret,
                 char *msg, size_t size)
{
        kpg_conn *c;
        int64_t version;
        int r;

        if (msg && size > 0)
                msg[0] = '\0';
        if (!schema || !*schema)
                return -EINVAL;
        if (strlen(schema) > PG_IDENT_MAX) {
                if (msg)
                        snprintf(msg, size, "schema name longer than %d bytes", PG_IDENT_MAX);
                return -ENAMETOOLONG;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->flags = flags;
        c->schema = strdup(schema);
        if (!c->schema) {
                r = -ENOMEM;
                goto fail;
        }
        r = open_session(conninfo, c);
        if (r < 0)
                goto fail;
        r = session_setup(c);
        if (r < 0)
                goto fail;
        if (flags & STORE_CREATE) {
                r = migrate(c);
        } else {
                r = schema_version(c, &version);
                if (r >= 0 && version > STORE_SCHEMA_VERSION)
                        r = -EPROTO;
                else if (r >= 0 && version < STORE_SCHEMA_VERSION)
                        /* Not created or not migrated yet: "has knock-ingress run?" */
                        r = -ENOMEDIUM;
        }
        if (r == -EPROTO)
                set_error(c, "the schema \"%s\" is newer than this build (version %d)", schema,
                        STORE_SCHEMA_VERSION);
        else if (r == -ENOMEDIUM && !(flags & STORE_CREATE))
                set_error(c, "the schema \"%s\" is not created or not migrated yet", schema);
        if (r < 0)
                goto fail;
        *ret = c;
        return 0;
fail:
        if (msg && size > 0)
                snprintf(msg, size, "%s", c->errmsg);
        kpg_close(c);
        return r;
}

int kpg_open(const char *conninfo, const char *schema, unsigned flags, kpg_conn **ret)
{
        return kpg_open_msg(conninfo, schema, flags, ret, NULL, 0);
}

void kpg_close(kpg_conn *c)
{
        if (!c)
                return;
        while (c->stmts) {
                kpg_stmt *st = c->stmts;

                LIST_REMOVE(c->stmts, st);
                st->c = NULL;
        }
        dealloc_drop(c);
        if (c->pg)
                PQfinish(c->pg);
        free(c->schema);
        free(c);
}

/* ---- statements -------------------------------------------------------------- */

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

/* The number of parameter name[0..len), given the next one when new. */
static int param_number(kpg_stmt *st, const char *name, size_t len, int *max)
{
        char **v;

        for (int i = 0; i < st->n_params; i++)
                if (st->names[i] && strlen(st->names[i]) == len &&
                    memcmp(st->names[i], name, len) == 0)
                        return i + 1;
        if (*max >= PARAM_MAX)
                return -ERANGE;
        v = reallocarray(st->names, *max + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        st->names = v;
        v[*max] = strndup(name, len);
        if (!v[*max])
                return -ENOMEM;
        st->n_params = ++*max;
        return *max;
}

/* Grows names[] to n parameters (new ones unnamed). */
static int params_grow(kpg_stmt *st, int n)
{
        char **v;

        if (n <= st->n_params)
                return 0;
        v = reallocarray(st->names, n, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (int i = st->n_params; i < n; i++)
                v[i] = NULL;
        st->names = v;
        st->n_params = n;
        return 0;
}

/*
 * SQLite's numbering: `?` is one more than the largest number so far,
 * `?NNN` is NNN, a `:name` seen before has its number, a new one the next.
 * Sets st->sql, names, n_params, and each parameter's referenced.
 */
static int translate(kpg_stmt *st, const char *sql)
{
        size_t len = strlen(sql);
        const char *p = sql;
        char *out, *o;
        int max = 0, n, r;
        bool *ref = NULL;
        size_t n_ref = 0;

        /* Each parameter grows at most from 1 byte (`?`) to 6 ($32766). */
        out = malloc(len * 6 + 1);
        if (!out)
                return -ENOMEM;
        o = out;
        while (*p) {
                const char *q = skip_quoted(sql, p);

                if (q != p) {
                        memcpy(o, p, q - p);
                        o += q - p;
                        p = q;
                        continue;
                }
                if (p[0] == ':' && p[1] == ':') { /* a cast */
                        *o++ = *p++;
                        *o++ = *p++;
                        continue;
                }
                if (p[0] == ':' && ident_char(p[1])) {
                        q = p + 1;
                        while (ident_char(*q))
                                q++;
                        n = param_number(st, p, q - p, &max);
                } else if (p[0] == '?') {
                        q = p + 1;
                        if (*q >= '0' && *q <= '9') {
                                long v = strtol(q, (char **)&q, 10);

                                n = v < 1 || v > PARAM_MAX ? -ERANGE : (int)v;
                                if (n > max)
                                        max = n;
                        } else
                                n = ++max <= PARAM_MAX ? max : -ERANGE;
                        if (n > 0)
                                n = params_grow(st, max) ?: n;
                } else {
                        *o++ = *p++;
                        continue;
                }
                if (n < 0) {
                        r = n;
                        goto fail;
                }
                if ((size_t)n > n_ref) {
                        bool *v = realloc(ref, n);

                        if (!v) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        memset(v + n_ref, 0, n - n_ref);
                        ref = v;
                        n_ref = n;
                }
                ref[n - 1] = true;
                o += sprintf(o, "$%d", n);
                p = q;
        }
        *o = '\0';
        r = params_grow(st, max);
        if (r < 0)
                goto fail;
        st->sql = out;
        if (st->n_params > 0) {
                st->params = calloc(st->n_params, sizeof(*st->params));
                st->values = calloc(st->n_params, sizeof(*st->values));
                st->lengths = calloc(st->n_params, sizeof(*st->lengths));
                st->formats = calloc(st->n_params, sizeof(*st->formats));
                st->types = calloc(st->n_params, sizeof(*st->types));
                if (!st->params || !st->values || !st->lengths || !st->formats || !st->types) {
                        free(ref);
                        return -ENOMEM;
                }
                for (int i = 0; i < st->n_params; i++)
                        st->params[i].referenced = (size_t)i < n_ref && ref[i];
        }
        free(ref);
        return 0;
fail:
        free(ref);
        free(out);
        return r;
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
                        set_error(c, "a parameter number outside 1..%d", PARAM_MAX);
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

/* The server-side statement goes now when the session is idle, else when
 * it next is (a failed DEALLOCATE must not abort the caller's
 * transaction). Gone with the session anyway when that is lost. */
static void dealloc(kpg_conn *c, const char *name)
{
        char sql[64], **v;

        if (!connection_ok(c))
                return;
        if (PQtransactionStatus(c->pg) == PQTRANS_IDLE && !c->txn_lost) {
                snprintf(sql, sizeof(sql), "DEALLOCATE %s", name);
                (void)run(c, sql, NULL);
                return;
        }
        v = reallocarray(c->dealloc, c->n_dealloc + 1, sizeof(*v));
        if (!v)
                return; /* a statement left on the server until the session ends */
        c->dealloc = v;
        v[c->n_dealloc] = strdup(name);
        if (v[c->n_dealloc])
                c->n_dealloc++;
}

void kpg_finalize(kpg_stmt *st)
{
        if (!st)
                return;
        kpg_reset(st);
        if (st->c) {
                if (st->name[0] && st->generation == st->c->generation)
                        dealloc(st->c, st->name);
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
        return PQexecPrepared(c->pg, st->name, st->n_params, st->values, st->lengths,
                st->formats, 0);
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

                r = conn_ready(c);
                if (r < 0)
                        return r;
                before = PQtransactionStatus(c->pg);
                res = execute(st);
                r = result_errno(c, res, before);
                if (r < 0) {
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
