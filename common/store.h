/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * store — one SQLite file per endpoint, shared by every daemon and knockctl.
 *
 * Promises:
 *  - every connection runs WAL, synchronous=FULL (a COMMIT that returned
 *    SQLITE_OK is on disk: this is what lets the ingress send its 2xx),
 *    4 KiB pages for a new database (one made before keeps its 16 KiB: a
 *    commit rewrites whole pages of every b-tree it touches, and at one
 *    receipt per commit 16 KiB pages cost the ingress's writer a fifth more
 *    CPU, measured with bench/ingest-load -P), foreign keys on, a busy
 *    timeout;
 *  - the schema is created and upgraded by forward-only numbered migrations,
 *    each recorded in schema_migrations, each in its own transaction; a
 *    database newer than this build is refused (-EPROTO), never downgraded;
 *  - SQLite result codes are mapped to negative errno at this boundary
 *    (SQLITE_FULL → -ENOSPC, IOERR → -EIO, BUSY/LOCKED → -EBUSY, …), so
 *    callers decide 503 vs crash on errno alone;
 *  - primary keys are time-ordered ids (util.h id_new), so inserts append;
 *  - a statement that runs again and again is prepared once per connection
 *    (store_cached()) and finalized with it; the step helpers map every
 *    result the same way.
 *
 * Which rows change is not this module's: every statement that writes
 * events, deliveries or attempts is in events.c, every one on hooks and
 * hook_attempts in hooks.c. This module has the connection, the schema and
 * the small tables every daemon shares (daemons, audit, meta).
 *
 * Schema (version STORE_SCHEMA_VERSION), times are ms since the epoch:
 *
 *  events      id, provider_event_id UNIQUE, event_type, status
 *              (received|processing|failed|dead|ignored|handled), status_reason,
 *              delivery_id (canonical body), run_delivery_id (replay-delivery),
 *              attempt_count, received_at, updated_at, next_attempt_at,
 *              claimed_by, claim_until, last_error, finished_at, order_key
 *  deliveries  id, event_id → events (NULL: orphan), received_at, signature_valid,
 *              verify_error, http_status, provider_event_id, event_type,
 *              request_id, method, uri, remote, content_type, headers (JSON
 *              array of [name,value], credentials redacted), body, body_bytes,
 *              duplicate, handshake
 *  attempts    id, event_id → events, delivery_id, attempt, worker, handler,
 *              started_at, ended_at, outcome, exit_code, signal, http_status,
 *              error, output
 *  hooks       id, event_id → events, type, payload (JSON), state
 *              (pending|delivered|failed), attempt_count, max_attempts,
 *              created_at, updated_at, next_attempt_at, claimed_by, claim_until,
 *              last_status, last_error, last_attempt_at, delivered_at
 *  hook_attempts id, hook_id → hooks, at, status (0: no response), duration_ms,
 *              response (first 20,000 bytes), error
 *  audit       id, at, actor, action, filters (JSON), counts (JSON), ids (JSON)
 *  daemons     daemon, pid, started_at, heartbeat_at, stopped_at,
 *              last_clean_exit, suspected_oom_kills, counters (JSON), status
 *  meta        key, value (e.g. last_backup_at, last_prune_at)
 *  pauses      route ('' : the whole endpoint), kind (operator|breaker), since,
 *              paused_by, reason, probe_at, probing (pause.h; its statements
 *              are all in pause.c)
 */

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define STORE_SCHEMA_VERSION 3

enum {
        STORE_CREATE = 1 << 0,   /* create the file and run migrations */
        STORE_READONLY = 1 << 1, /* knockctl read verbs */
        STORE_NO_AUTOCHECKPOINT = 1 << 2, /* ingress writer: checkpoints run elsewhere */
        STORE_WAL_BUFFER = 1 << 3, /* ingress writer: one write per commit's WAL frames (walbuf.c) */
        STORE_ANY_VERSION = 1 << 4, /* PostgreSQL: open whatever the schema's version (0: none),
                                     * to read it (knockctl migrate) */
};

/*
 * Statements. Every caller speaks db_stmt, never an engine's own type: the
 * same SQL text and the same calls run on SQLite and on PostgreSQL
 * (store-pg.h). SQL is written in SQLite's parameter syntax (`?`, `?NNN`,
 * `:name`); the PostgreSQL engine translates it. A db_stmt belongs to the
 * connection that prepared it: one thread at a time, as the connection.
 */
typedef struct db_stmt db_stmt;

enum store_engine {
        STORE_ENGINE_SQLITE,
        STORE_ENGINE_POSTGRESQL,
};

/* Column types (stmt_col_type). */
enum {
        DB_NULL,
        DB_INTEGER,
        DB_FLOAT,
        DB_TEXT,
        DB_BLOB,
};

/* One cached statement: sql is the address of a string constant. */
typedef struct store_cache_entry {
        const char *sql;
        db_stmt *st;
} store_cache_entry;

struct kpg_conn;

typedef struct knock_store {
        enum store_engine engine;
        sqlite3 *db;           /* SQLite: the connection (NULL on PostgreSQL) */
        struct kpg_conn *pg;   /* PostgreSQL: the connection (NULL on SQLite) */
        char *path;            /* the location store_open() was given */
        db_stmt *begin, *commit; /* prepared once: every transaction uses them */
        store_cache_entry *cache; /* store_cached(): prepared once per connection */
        size_t n_cache, cap_cache;
        int64_t clock_offset_ms; /* PostgreSQL: the server's clock - the monotonic one */
        bool clock_synced;       /* clock_offset_ms was measured */
} knock_store;

/*
 * Opens (and with STORE_CREATE creates/migrates) the store at location: a
 * file path (SQLite), or "postgresql:SCHEMA:CONNINFO" as
 * store_location_postgresql() writes it.
 */
int store_open(const char *location, unsigned flags, knock_store **ret);
knock_store *store_close(knock_store *s);
void store_closep(knock_store **s);
/* The store location of a PostgreSQL endpoint (free() it). */
char *store_location_postgresql(const char *schema, const char *conninfo);
/* True for a location store_open() opens on PostgreSQL. */
bool store_location_is_postgresql(const char *location);
/* The location for people: the file, or "PostgreSQL schema S (CONNINFO)"
 * (free() it). */
char *store_location_describe(const char *location);
/* The connection's SQLite handle, NULL on another engine: for what only
 * SQLite has (WAL, backups, busy and progress handlers). */
static inline sqlite3 *store_sqlite(knock_store *s)
{
        return s->engine == STORE_ENGINE_SQLITE ? s->db : NULL;
}

/* Bytes the endpoint's tables and indexes take: SQLite's pages (the WAL
 * aside), PostgreSQL's relations in the endpoint's schema. */
int store_bytes(knock_store *s, int64_t *ret);
/* Current schema version of the open database (0 when empty). */
int store_schema_version(knock_store *s, int *ret);
/* Runs sql (no parameters), which must yield a row, and returns its first
 * column as an integer. */
int store_query_i64(knock_store *s, const char *sql, int64_t *ret);
/* Same for a text column (NULL stays NULL; free() it). */
int store_query_text(knock_store *s, const char *sql, char **ret);

int store_exec(knock_store *s, const char *sql);
/* Starts a write transaction: SQLite takes the write lock now (BEGIN
 * IMMEDIATE); PostgreSQL locks rows as statements reach them. */
int store_begin(knock_store *s);
int store_commit(knock_store *s);
void store_rollback(knock_store *s); /* never fails the caller; errors ignored */
/* Ends the transaction store_begin() opened: COMMIT when r >= 0 (its result
 * returned), else ROLLBACK and r returned as it is. */
int store_end(knock_store *s, int r);
bool store_in_transaction(knock_store *s);
/* How long a statement waits for another connection's lock before it fails
 * with -EBUSY (store_open() sets 5 s). */
void store_busy_timeout(knock_store *s, int ms);
/* SQLite's rowid of the row the connection last inserted; 0 where the
 * engine has none (callers then find the row by its id). */
int64_t store_last_insert_rowid(knock_store *s);

/* Maps an SQLite result code to a negative errno (0 for OK/ROW/DONE). */
int store_errno(int sqlite_rc);
/* For code that speaks to an SQLite handle of its own (backups, restores,
 * integrity checks): a cleanup for its raw statements. */
void sqlite_stmt_finalizep(sqlite3_stmt **st);
/* Last error text of the connection (for logs). */
const char *store_errmsg(knock_store *s);

/* A statement prepared for this use only (stmt_finalizep it). */
int store_prepare(knock_store *s, const char *sql, db_stmt **ret);
void stmt_finalize(db_stmt *st);
void stmt_finalizep(db_stmt **st);
#define _cleanup_stmt_ _cleanup_(stmt_finalizep)

/*
 * The connection's statement for sql, which must be a string constant: the
 * cache is keyed by its address. Prepared on first use
 * (SQLITE_PREPARE_PERSISTENT) and kept until store_close(); handed out reset
 * and without bindings. Parsing a statement costs more than running the
 * small ones the daemons run for every event, so every statement on a hot
 * path comes from here.
 */
int store_cached(knock_store *s, const char *sql, db_stmt **ret);
/* Resets st (NULL: nothing): a statement left on a row keeps its read
 * snapshot, and the WAL cannot be checkpointed past it. Bindings stay. */
void stmt_reset(db_stmt *st);
void stmt_resetp(db_stmt **st);
#define _cleanup_reset_ _cleanup_(stmt_resetp)

/* Steps st once: 1 on a row, 0 when done, else a negative errno. */
int stmt_step(db_stmt *st);
/* Steps st to its end and resets it: 0 or a negative errno. */
int stmt_run(db_stmt *st);
/* Rows the last INSERT/UPDATE/DELETE on the connection changed. */
int64_t store_changes(knock_store *s);
/* Steps st to its end, collecting column 0 of each row as strings
 * (the caller frees them, config.h strv_free()); the statement is reset. */
int stmt_strv(db_stmt *st, char ***ret, size_t *ret_n);

/* The 1-based index of parameter name (":t1"), 0 when sql has none. */
int stmt_param(db_stmt *st, const char *name);
int stmt_param_count(db_stmt *st);
int stmt_bind_null(db_stmt *st, int idx);
/* Binds text or NULL. */
int stmt_bind_text(db_stmt *st, int idx, const char *s);
/* Binds s without a copy: s must stay as it is until the statement has
 * been stepped (the hot statements of the writers, whose strings live in
 * the receipts, claims and results they record). */
int stmt_bind_text_static(db_stmt *st, int idx, const char *s);
/* Binds len bytes of text at s without a copy (NULL or len 0: NULL). */
int stmt_bind_text_len_static(db_stmt *st, int idx, const char *s, size_t len);
/* Binds len bytes at p as a blob, without a copy (NULL: NULL). */
int stmt_bind_blob_static(db_stmt *st, int idx, const void *p, size_t len);
/* Binds an int64, or NULL when v < 0 and null_if_negative. */
int stmt_bind_i64(db_stmt *st, int idx, int64_t v);
int stmt_bind_i64_or_null(db_stmt *st, int idx, int64_t v);

/* The current row's columns. Text and blobs stay valid until the next step
 * or reset. */
int stmt_col_type(db_stmt *st, int col); /* DB_NULL, DB_INTEGER, ... */
int64_t stmt_col_i64(db_stmt *st, int col);
int stmt_col_int(db_stmt *st, int col);
double stmt_col_double(db_stmt *st, int col);
const char *stmt_col_text(db_stmt *st, int col);
size_t stmt_col_bytes(db_stmt *st, int col);
const void *stmt_col_blob(db_stmt *st, int col);
static inline bool stmt_col_null(db_stmt *st, int col)
{
        return stmt_col_type(st, col) == DB_NULL;
}
/* Column text duplicated (NULL stays NULL). */
char *stmt_strdup(db_stmt *st, int col);

/*
 * The clock of claims and leases (store_now_ms, ms since the epoch). A claim
 * made on one host is judged on others ("has its lease run out?", "is it due
 * yet?"), and hosts' clocks differ; so on PostgreSQL this is the server's
 * clock: this host's monotonic clock plus its offset to the server's
 * clock_timestamp(), measured by the first call and again by every
 * store_clock_sync() (each heartbeat: store_daemon_heartbeat), within half
 * a round trip of the server's, never stepping with this host's clock. On
 * SQLite, one host: now_ms(). KNOCK_FAKE_NOW_MS (tests) wins on both. Every
 * claim, renewal, release, lease expiry and next-due computation of the
 * worker and the deliverer takes its now from here, and so do the daemons
 * rows' times; a time a user reads as "when it happened here" (an attempt's
 * start, a receipt) stays this host's. A failed measure keeps the last
 * offset (the first one failing: this host's clock, tried again next time).
 */
int64_t store_now_ms(knock_store *s);
/* Measures the offset again (PostgreSQL; on SQLite 0, nothing to do). */
int store_clock_sync(knock_store *s);

/*
 * Wake-ups across hosts: PostgreSQL's LISTEN/NOTIFY, on the endpoint's own
 * channel (its schema's name), a topic as the payload. The datagrams
 * (daemon.h) wake the daemons of this host; these reach every host's.
 *  - store_notify(): inside a transaction it is sent at its COMMIT (and
 *    never when it rolls back), so a listener woken by it finds the rows;
 *    notifications of one topic in one transaction are folded into one.
 *    SQLite: 0, nothing sent;
 *  - store_listen(): s (a connection of its own, opened for this) listens
 *    for topic, reconnecting first if it was lost: calling it again is how
 *    a lost listener comes back. Blocks like any statement. SQLite:
 *    -EOPNOTSUPP;
 *  - store_socket(): the descriptor to watch for reading (-1 when lost);
 *    it changes with a reconnection;
 *  - store_notified(): never blocks: reads what arrived and returns how
 *    many notifications of the topic it held (0: none, or only other
 *    topics'), or -ECONNRESET once the connection is lost (then
 *    store_listen() again, and look at the queue: what was sent meanwhile
 *    was not heard).
 */
#define STORE_TOPIC_EVENTS "events" /* new events: the workers */
#define STORE_TOPIC_HOOKS "hooks"   /* new hooks: the deliverers */
int store_notify(knock_store *s, const char *topic);
int store_listen(knock_store *s, const char *topic);
int store_socket(knock_store *s);
int store_notified(knock_store *s);

/* Daemon heartbeats and the OOM-kill counter (contract §11). */
/* On PostgreSQL a daemon's row is keyed ROLE@HOST (knock_host(), util.h):
 * each host's daemons have their own; on SQLite, ROLE. */
#define STORE_DAEMON_HOST_SEP '@'
/* Daemons write their heartbeat every 5 s (or half their WatchdogSec=, when
 * shorter); three missed ones make a heartbeat stale (/readyz, status). */
#define STORE_HEARTBEAT_STALE_MS 15000

/* The key of daemon's row on this host: daemon itself on SQLite, else written into buf
 * (STORE_DAEMON_KEY_MAX bytes). */
#define STORE_DAEMON_KEY_MAX (32 + KNOCK_HOST_MAX)
const char *store_daemon_key(knock_store *s, const char *daemon, char *buf, size_t len);
int store_daemon_started(knock_store *s, const char *daemon, bool previous_unclean);
int store_daemon_heartbeat(knock_store *s, const char *daemon, const char *counters_json,
                           const char *status);
int store_daemon_stopped(knock_store *s, const char *daemon);

/* Appends an audit row (contract §10); JSON arguments may be NULL. */
int store_audit(knock_store *s, const char *actor, const char *action, const char *filters_json,
                const char *counts_json, const char *ids_json);

/* meta key/value */
int store_meta_set(knock_store *s, const char *key, const char *value);
int store_meta_get(knock_store *s, const char *key, char **ret);

