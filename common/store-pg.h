/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * store-pg — the PostgreSQL engine under the store (issue 19: `[endpoint]
 * store = postgresql:CONNINFO`), over libpq. store.c calls it; nothing else
 * should. It speaks the store's language: every int result is 0 or positive,
 * or a negative errno; statements are written in SQLite's parameter syntax
 * and stepped as SQLite's are.
 *
 * Promises:
 *  - one endpoint is one schema: kpg_open() sets search_path to it (quoted as
 *    an identifier) and, with STORE_CREATE, creates it and runs this
 *    module's migrations, numbered as store.c's (STORE_SCHEMA_VERSION) and
 *    giving the same tables, columns and constraints;
 *  - a COMMIT that returned 0 is durable: a session whose
 *    synchronous_commit is 'off' or 'local', or whose server runs with
 *    fsync off, is refused (-EINVAL); so is a database not in UTF8;
 *  - errors are SQLSTATEs mapped to errno at this boundary, as store_errno()
 *    maps SQLite's codes (23xxx -EEXIST, 40001/40P01/55P03 -EBUSY, a lost
 *    connection -ECONNRESET, text that is not UTF-8 -EILSEQ, …: the
 *    table in store-pg.c);
 *  - a lost connection is re-established by the next call, once per call,
 *    but never in the middle of a transaction: statements after the loss
 *    fail with -ECONNRESET until the caller rolls back, so nothing the
 *    caller meant to be atomic runs in autocommit;
 *  - no password in any message: kpg_errmsg() is the server's or libpq's
 *    text, and a connection string libpq cannot parse is not echoed;
 *  - silent (lib_common): notices from the server are dropped, nothing is
 *    written to stdout or stderr.
 *
 * A connection and its statements belong to one thread at a time.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kpg_conn kpg_conn; /* not pg_conn: libpq uses that name */
typedef struct kpg_stmt kpg_stmt;

/* Column types, of the current row's value. */
enum { KPG_NULL, KPG_INTEGER, KPG_FLOAT, KPG_TEXT, KPG_BLOB };

/*
 * conninfo: a libpq connection string or URI (PGPASSFILE, a service file
 * and the PG* environment apply as libpq documents). schema: the endpoint's
 * schema, at most 63 bytes (PostgreSQL's identifier limit: a longer name
 * would be truncated, and two endpoints could meet in one schema;
 * -ENAMETOOLONG). flags: store.h's STORE_CREATE (create the schema if
 * missing and migrate), STORE_READONLY (default_transaction_read_only);
 * else the schema must exist and be current. A schema newer than this
 * build: -EPROTO; not created or not migrated (without STORE_CREATE):
 * -ENOMEDIUM; the server cannot be reached: -ECONNREFUSED.
 */
int kpg_open(const char *conninfo, const char *schema, unsigned flags, kpg_conn **ret);
/* As kpg_open(), and on failure says why in msg (at most size bytes, NUL
 * terminated; the connection's own message when there was one). */
int kpg_open_msg(const char *conninfo, const char *schema, unsigned flags, kpg_conn **ret,
        char *msg, size_t size);
/* The schema's version (store_schema_version()): 0 when the schema or its
 * schema_migrations does not exist. */
int kpg_schema_version(kpg_conn *c, int64_t *ret);
/* Closes the connection; statements still open are detached (finalizing
 * them afterwards only frees them). NULL: nothing. */
void kpg_close(kpg_conn *c);

/* The last error's text (never a password); "" when there was none. */
const char *kpg_errmsg(kpg_conn *c);
/* Runs one or more statements without parameters. */
int kpg_exec(kpg_conn *c, const char *sql);
/* Rows the last INSERT/UPDATE/DELETE/MERGE changed (RETURNING too). */
int64_t kpg_changes(kpg_conn *c);
/* Whether a transaction is open: PQtransactionStatus is not idle, or the
 * connection was lost inside one and the caller has not rolled back yet. */
bool kpg_in_transaction(kpg_conn *c);
/* ROLLBACK if a transaction is open (a lost one included); never fails.
 * kpg_exec(c, "ROLLBACK") does the same. */
void kpg_rollback(kpg_conn *c);
/* How long a statement waits for another session's lock before it fails
 * with -EBUSY (store_busy_timeout()); ms <= 0 fails at once (1 ms: 0 would
 * be "forever" to PostgreSQL). Kept for every later session; a SET inside a
 * transaction is undone by its ROLLBACK, so call it outside one. */
int kpg_lock_timeout(kpg_conn *c, int ms);
/* The server's process id of this session (pg_backend_pid()), 0 when none. */
int kpg_backend_pid(kpg_conn *c);

/*
 * LISTEN/NOTIFY (store.h's store_listen and friends). The channel is the
 * connection's schema, the topic the payload. kpg_listen() makes c a
 * listener for topic: LISTEN now (reconnecting first when the session was
 * lost, as every call does) and again in each new session, so calling it
 * after a loss is how a listener comes back. kpg_socket(): the session's
 * descriptor to watch for reading, -1 when there is none. kpg_notified()
 * never blocks and never reconnects: it reads what arrived and returns how
 * many notifications of the topic were in it (others' are dropped), or
 * -ECONNRESET when the session is gone or c does not listen.
 */
int kpg_listen(kpg_conn *c, const char *topic);
int kpg_socket(kpg_conn *c);
int kpg_notified(kpg_conn *c);

/*
 * sql is written in SQLite's parameter syntax: `?` (the next number),
 * `?NNN` and `:name` (one number per name, as SQLite numbers them),
 * translated to $n outside '…' and E'…' literals, "…" identifiers and
 * comments; `::` stays a cast. Nothing is sent until the first step: the
 * first execution runs unnamed (one round trip), the second prepares a named
 * server-side statement, which every later execution reuses (and
 * kpg_finalize() deallocates); it is prepared again after a reconnection,
 * and after the server refused its plan because a table changed columns.
 */
int kpg_prepare(kpg_conn *c, const char *sql, kpg_stmt **ret);
void kpg_finalize(kpg_stmt *st); /* NULL: nothing */
/* Drops the result; the next step executes again; bindings are kept. */
void kpg_reset(kpg_stmt *st);
/* Every parameter NULL. */
void kpg_clear_bindings(kpg_stmt *st);
/* ":t1" → its 1-based index, 0 when sql has no such parameter. */
int kpg_param_index(kpg_stmt *st, const char *name);
int kpg_param_count(kpg_stmt *st);

/* Bindings apply to the next execution; idx is 1-based (-ERANGE outside).
 * Text and integers go in text format, the server inferring each
 * parameter's type from its context, but for integers, sent as bigint
 * (`? + ?` and `? - 5000` must not become 32-bit); blobs as bytea, binary. */
int kpg_bind_null(kpg_stmt *st, int idx);
int kpg_bind_i64(kpg_stmt *st, int idx, int64_t v);
/* Copies; s NULL binds NULL. Text holding a NUL byte: -EILSEQ (PostgreSQL's
 * text cannot hold one, and libpq would cut the value there). */
int kpg_bind_text(kpg_stmt *st, int idx, const char *s, size_t len);
int kpg_bind_blob(kpg_stmt *st, int idx, const void *p, size_t n); /* copies */

/* The first step executes (the whole result is fetched: other statements
 * may run while this one is stepped): 1 on a row, 0 when done, else a
 * negative errno. A step after 0 executes again, as SQLite's does. */
int kpg_step(kpg_stmt *st);
/* Columns of the result (0 before the first step). */
int kpg_column_count(kpg_stmt *st);
/* Values of the current row; a column outside the row reads as NULL.
 * Integers (bigint, int, numeric without a fraction) and booleans (1/0)
 * are KPG_INTEGER, float and numeric with a fraction KPG_FLOAT, bytea
 * KPG_BLOB (decoded), everything else KPG_TEXT. */
int kpg_column_type(kpg_stmt *st, int col);
int64_t kpg_column_i64(kpg_stmt *st, int col);   /* 0 for NULL */
double kpg_column_double(kpg_stmt *st, int col); /* 0.0 for NULL */
/* NULL for NULL; valid until the next step, reset or finalize. */
const char *kpg_column_text(kpg_stmt *st, int col);
size_t kpg_column_bytes(kpg_stmt *st, int col);
const void *kpg_column_blob(kpg_stmt *st, int col);
