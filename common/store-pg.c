/* SPDX-License-Identifier: MIT */
/*
 * store-pg — see store-pg.h for the promises; store-pg-migrate.c has the
 * schema, store-pg-stmt.c the statements. This file has the sessions.
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
 *  - Messages. The server's primary message and SQLSTATE, never its
 *    DETAIL (which quotes row values); libpq's connection errors as they
 *    are (they name the host and the user, never the password); a
 *    connection string libpq cannot parse is not quoted at all.
 */
#define _GNU_SOURCE
#include "store-pg-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store.h"
#include "util.h"

#define PG_IDENT_MAX 63 /* NAMEDATALEN - 1 */
#define LOCK_TIMEOUT_DEFAULT "5s"

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

void kpg_set_error(kpg_conn *c, const char *fmt, ...)
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
                kpg_set_error(c, "%s (SQLSTATE %s)", primary, state);
        else if (res && *PQresultErrorMessage(res))
                kpg_set_error(c, "%s", PQresultErrorMessage(res));
        else
                kpg_set_error(c, "%s", PQerrorMessage(c->pg));
}

/* Notices ("relation already exists, skipping", warnings) would go to
 * stderr by default; the library is silent. */
static void notice_drop(void *arg, const char *message)
{
}

bool kpg_connection_ok(kpg_conn *c)
{
        return PQstatus(c->pg) == CONNECTION_OK;
}

/* The errno of a statement's result, recording its changes and its error. */
int kpg_result_errno(kpg_conn *c, PGresult *res, PGTransactionStatusType before)
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
        if (!kpg_connection_ok(c)) {
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
int kpg_run(kpg_conn *c, const char *sql, PGresult **ret)
{
        PGTransactionStatusType before = PQtransactionStatus(c->pg);
        PGresult *res = PQexec(c->pg, sql);
        int r = kpg_result_errno(c, res, before);

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

/* SET lock_timeout to c->lock_timeout. */
static int set_lock_timeout(kpg_conn *c)
{
        char sql[64];

        snprintf(sql, sizeof(sql), "SET lock_timeout = '%s'", c->lock_timeout);
        return kpg_run(c, sql, NULL);
}

/* The session's lock_timeout: the one kpg_lock_timeout() asked for, else
 * the operator's (current), else 5 s; kept in c->lock_timeout, which
 * migrations restore after waiting for their lock. */
static int session_lock_timeout(kpg_conn *c, const char *current)
{
        if (c->lock_timeout_set)
                return set_lock_timeout(c);
        if (streq(current, "0")) {
                snprintf(c->lock_timeout, sizeof(c->lock_timeout), LOCK_TIMEOUT_DEFAULT);
                return set_lock_timeout(c);
        }
        if (strlen(current) >= sizeof(c->lock_timeout) ||
                strspn(current, "0123456789abcdefghijklmnopqrstuvwxyz ") != strlen(current)) {
                kpg_set_error(c, "unexpected lock_timeout '%s'", current);
                return -EINVAL;
        }
        snprintf(c->lock_timeout, sizeof(c->lock_timeout), "%s", current);
        return 0;
}

/* LISTEN on the schema's channel (kpg_listen). */
static int listen_now(kpg_conn *c)
{
        char *ident, *sql;
        int r;

        ident = PQescapeIdentifier(c->pg, c->schema, strlen(c->schema));
        if (!ident) {
                kpg_set_error(c, "%s", PQerrorMessage(c->pg));
                return -ENOMEM;
        }
        r = asprintf(&sql, "LISTEN %s", ident);
        PQfreemem(ident);
        if (r < 0)
                return -ENOMEM;
        r = kpg_run(c, sql, NULL);
        free(sql);
        if (r >= 0)
                c->listening = true;
        return r;
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
                kpg_set_error(c, "%s", PQerrorMessage(c->pg));
                return -ENOMEM;
        }
        r = asprintf(&sql, "SET search_path TO %s%s", ident,
                c->flags & STORE_READONLY ? "; SET default_transaction_read_only = on" : "");
        PQfreemem(ident);
        if (r < 0)
                return -ENOMEM;
        r = kpg_run(c, sql, NULL);
        free(sql);
        if (r < 0)
                return r;

        r = kpg_run(c,
                "SELECT current_setting('synchronous_commit'), current_setting('fsync'),"
                " current_setting('lock_timeout'), current_setting('server_encoding')",
                &res);
        if (r < 0)
                return r;
        sync = PQgetvalue(res, 0, 0);
        fsync = PQgetvalue(res, 0, 1);
        lock_timeout = PQgetvalue(res, 0, 2);
        encoding = PQgetvalue(res, 0, 3);
        if (streq(sync, "off") || streq(sync, "local")) {
                kpg_set_error(c,
                        "synchronous_commit is '%s': a COMMIT would not be durable when it "
                        "returns (set it to on, remote_write or remote_apply)",
                        sync);
                r = -EINVAL;
        } else if (!streq(fsync, "on")) {
                kpg_set_error(
                        c, "the server runs with fsync=%s: a COMMIT would not be durable", fsync);
                r = -EINVAL;
        } else if (!streq(encoding, "UTF8")) {
                kpg_set_error(c,
                        "the database's encoding is %s: knock stores UTF-8 (create it "
                        "with ENCODING 'UTF8')",
                        encoding);
                r = -EINVAL;
        } else
                r = session_lock_timeout(c, lock_timeout);
        PQclear(res);
        if (r >= 0 && c->listen_topic && !c->listening)
                r = listen_now(c);
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
                (void)kpg_run(c, sql, NULL);
                free(sql);
        }
        dealloc_drop(c);
}

/* Before a statement: the connection is there (reconnecting once, never
 * inside a transaction), the session is set up, the backlog of DEALLOCATEs
 * is gone when the session is idle. */
int kpg_ready(kpg_conn *c)
{
        if (c->txn_lost) {
                kpg_set_error(c, "the connection was lost inside a transaction; roll it back");
                return -ECONNRESET;
        }
        if (!kpg_connection_ok(c)) {
                PQreset(c->pg);
                if (!kpg_connection_ok(c)) {
                        kpg_set_error(c, "%s", PQerrorMessage(c->pg));
                        return -ECONNRESET;
                }
                PQsetNoticeProcessor(c->pg, notice_drop, NULL);
                /* The server-side statements went with the old session, and so
                 * did its LISTEN. */
                c->generation++;
                c->session_ready = false;
                c->listening = false;
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
        if (is_rollback(sql) && (c->txn_lost || !kpg_connection_ok(c))) {
                c->txn_lost = false;
                return 0;
        }
        r = kpg_ready(c);
        if (r < 0)
                return r;
        return kpg_run(c, sql, NULL);
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
        return kpg_connection_ok(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE;
}

void kpg_rollback(kpg_conn *c)
{
        if (kpg_in_transaction(c))
                (void)kpg_exec(c, "ROLLBACK");
}

int kpg_lock_timeout(kpg_conn *c, int ms)
{
        int r;

        /* 0 is "wait forever" to PostgreSQL, "do not wait" to SQLite. */
        snprintf(c->lock_timeout, sizeof(c->lock_timeout), "%dms", ms > 0 ? ms : 1);
        c->lock_timeout_set = true;
        r = kpg_ready(c); /* a new session is set up with it */
        if (r < 0)
                return r;
        return set_lock_timeout(c);
}

int kpg_backend_pid(kpg_conn *c)
{
        return kpg_connection_ok(c) ? PQbackendPID(c->pg) : 0;
}

int kpg_listen(kpg_conn *c, const char *topic)
{
        int r;

        if (!c->listen_topic || !streq(c->listen_topic, topic)) {
                char *t = strdup(topic);

                if (!t)
                        return -ENOMEM;
                free(c->listen_topic);
                c->listen_topic = t;
        }
        /* A new session LISTENs in its setup; an old one may not have yet. */
        r = kpg_ready(c);
        if (r >= 0 && !c->listening)
                r = listen_now(c);
        return r;
}

int kpg_socket(kpg_conn *c)
{
        return kpg_connection_ok(c) ? PQsocket(c->pg) : -1;
}

int kpg_notified(kpg_conn *c)
{
        PGnotify *n;
        int count = 0;

        if (!c->listen_topic || !c->listening || !kpg_connection_ok(c)) {
                kpg_set_error(c, "not listening: the connection was lost");
                return -ECONNRESET;
        }
        /* Reads what the socket has (libpq's socket never blocks); a session
         * that ended shows as a failed read, or as a connection gone bad. */
        if (!PQconsumeInput(c->pg) || !kpg_connection_ok(c)) {
                kpg_set_error(c, "%s", PQerrorMessage(c->pg));
                return -ECONNRESET;
        }
        while ((n = PQnotifies(c->pg))) {
                if (streq(n->relname, c->schema) && streq(n->extra, c->listen_topic) &&
                        count < INT32_MAX)
                        count++;
                PQfreemem(n);
        }
        return count;
}

/* The server-side statement goes now when the session is idle, else when
 * it next is (a failed DEALLOCATE must not abort the caller's
 * transaction). Gone with the session anyway when that is lost. */
void kpg_dealloc(kpg_conn *c, const char *name)
{
        char sql[64], **v;

        if (!kpg_connection_ok(c))
                return;
        if (PQtransactionStatus(c->pg) == PQTRANS_IDLE && !c->txn_lost) {
                snprintf(sql, sizeof(sql), "DEALLOCATE %s", name);
                (void)kpg_run(c, sql, NULL);
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

static int open_session(const char *conninfo, kpg_conn *c)
{
        /* Before the caller's string: what the operator may change; after
         * it: what knock needs. */
        const char *const keys[] = {
                "connect_timeout", "fallback_application_name", "dbname", "client_encoding", NULL};
        const char *const values[] = {"10", "knock", conninfo, "UTF8", NULL};
        PQconninfoOption *opts;
        char *err = NULL;

        /* libpq's parse errors quote the string, which may hold a password. */
        opts = PQconninfoParse(conninfo, &err);
        if (!opts) {
                if (err) {
                        explicit_bzero(err, strlen(err));
                        PQfreemem(err);
                        kpg_set_error(c,
                                "the PostgreSQL connection string cannot be parsed (libpq's "
                                "key=value or postgresql:// URI syntax)");
                        return -EINVAL;
                }
                kpg_set_error(c, "out of memory parsing the PostgreSQL connection string");
                return -ENOMEM;
        }
        PQconninfoFree(opts);

        c->pg = PQconnectdbParams(keys, values, 1);
        if (!c->pg) {
                kpg_set_error(c, "out of memory connecting to PostgreSQL");
                return -ENOMEM;
        }
        PQsetNoticeProcessor(c->pg, notice_drop, NULL);
        if (!kpg_connection_ok(c)) {
                kpg_set_error(c, "%s", PQerrorMessage(c->pg));
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
                r = kpg_migrate(c);
        } else if (flags & STORE_ANY_VERSION) {
                r = kpg_schema_version(c, &version);
                if (r == -ENOMEDIUM)
                        r = 0; /* no schema, or no schema_migrations in it: version 0 */
        } else {
                r = kpg_schema_version(c, &version);
                if (r >= 0 && version > STORE_SCHEMA_VERSION)
                        r = -EPROTO;
                else if (r >= 0 && version < STORE_SCHEMA_VERSION)
                        /* Not created or not migrated yet: "has knock-ingress run?" */
                        r = -ENOMEDIUM;
        }
        if (r == -EPROTO)
                kpg_set_error(c, "the schema \"%s\" is newer than this build (version %d)", schema,
                        STORE_SCHEMA_VERSION);
        else if (r == -ENOMEDIUM && !(flags & STORE_CREATE))
                kpg_set_error(c, "the schema \"%s\" is not created or not migrated yet", schema);
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
        kpg_detach_statements(c);
        dealloc_drop(c);
        if (c->pg)
                PQfinish(c->pg);
        free(c->listen_topic);
        free(c->schema);
        free(c);
}
