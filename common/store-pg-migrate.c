/* SPDX-License-Identifier: MIT */
/*
 * store-pg-migrate — the PostgreSQL schema of an endpoint and its
 * migrations.
 *
 * The same numbers as store.c's migrations, one transaction each, holding
 * pg_advisory_xact_lock on a key derived from the schema name (FNV-1a):
 * hosts starting at once queue on it, and each re-reads the version under
 * the lock, so a migration runs once. The lock is waited for without a
 * timeout (a long migration on another host is not an error); the
 * migration's own statements keep the session's lock_timeout. A schema
 * that is current takes no lock at all (every start but the first).
 *
 * The tables, columns, NOT NULLs, keys, CHECKs, foreign keys and indexes
 * are SQLite's (test-store-pg compares the two): every integer is BIGINT
 * (INTEGER is 32 bits here, and times are milliseconds), a blob BYTEA, and
 * every TEXT column COLLATE "C": SQLite compares text bytewise, and ids that
 * sort in time order (util.h id_new) must sort the same in both.
 */
#define _GNU_SOURCE
#include "store-pg-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "util.h"

#define T "TEXT COLLATE \"C\""
#define I "BIGINT"
/* SQLite's rowid, which the statements of events.c and events-read.c name
 * (a claim updates the rows it read by rowid; FIFO ties break on it): a
 * column of that name here, numbered in insert order as SQLite's is. */
#define ROWID "BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE"

/*
 * The few SQLite functions knock's statements call, with SQLite's meaning,
 * so one statement text serves both engines: instr(), json_valid(), and
 * json_each()/json_extract()/json_array_length() over a JSON text (knock
 * passes lists as JSON arrays: paused routes, held keys, statuses, header
 * pairs). They live in the endpoint's schema; PostgreSQL's own json_each()
 * takes json and walks objects, and a text argument resolves to these.
 */
#define SQLITE_FUNCTIONS                                                                           \
        "CREATE FUNCTION instr(haystack text, needle text) RETURNS bigint"                         \
        "  LANGUAGE sql IMMUTABLE AS 'SELECT strpos(haystack, needle)::bigint';"                   \
        "CREATE FUNCTION json_valid(doc text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$"    \
        "  BEGIN PERFORM doc::json; RETURN doc IS NOT NULL;"                                       \
        "  EXCEPTION WHEN others THEN RETURN false; END $$;"                                        \
        "CREATE FUNCTION json_each(doc text) RETURNS TABLE(key bigint, value text)"                \
        "  LANGUAGE sql IMMUTABLE AS $$ SELECT o - 1, v"                                           \
        "  FROM json_array_elements_text(doc::json) WITH ORDINALITY AS t(v, o) $$;"                \
        "CREATE FUNCTION json_extract(doc text, path text) RETURNS text"                           \
        "  LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_path_query_first(doc::jsonb, path::jsonpath)" \
        "  #>> '{}' $$;"                                                                           \
        "CREATE FUNCTION json_array_length(doc text) RETURNS bigint"                               \
        "  LANGUAGE sql IMMUTABLE AS 'SELECT json_array_length(doc::json)::bigint';"               \
        /* A stored body as SQLite's CAST(body AS TEXT) reads it; NULL when     */                  \
        /* it is not UTF-8 (PostgreSQL's text cannot hold it).                  */                  \
        "CREATE FUNCTION body_text(body bytea) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$"      \
        "  BEGIN RETURN convert_from(body, 'UTF8');"                                               \
        "  EXCEPTION WHEN others THEN RETURN NULL; END $$;"

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
         "  rowid " ROWID ","
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
         "  rowid " ROWID ","
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
         "  rowid " ROWID ","
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
         "CREATE TABLE meta (key " T " PRIMARY KEY, value " T ");"
         SQLITE_FUNCTIONS},
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
int kpg_schema_version(kpg_conn *c, int64_t *ret)
{
        PGresult *res = NULL;
        int r;

        r = kpg_ready(c);
        if (r < 0)
                return r;
        r = kpg_run(c, "SELECT to_regclass('schema_migrations') IS NOT NULL", &res);
        if (r < 0)
                return r;
        if (!streq(PQgetvalue(res, 0, 0), "t")) {
                PQclear(res);
                *ret = 0;
                return 0;
        }
        PQclear(res);
        r = kpg_run(c, "SELECT coalesce(max(version), 0) FROM schema_migrations", &res);
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
        return kpg_run(c, sql, NULL);
}

/* Ends what begin_locked() began: COMMIT when r >= 0 (its result returned),
 * else ROLLBACK and r. */
static int end_locked(kpg_conn *c, int r)
{
        if (r >= 0)
                return kpg_run(c, "COMMIT", NULL);
        if (kpg_connection_ok(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
                (void)kpg_run(c, "ROLLBACK", NULL);
        return r;
}

/* Runs before, s escaped as an identifier (ident) or a literal, and after. */
static int run_escaped(kpg_conn *c, const char *before, const char *s, bool ident,
                       const char *after, PGresult **ret)
{
        char *e, *sql;
        int r;

        e = ident ? PQescapeIdentifier(c->pg, s, strlen(s)) : PQescapeLiteral(c->pg, s, strlen(s));
        if (!e)
                return -ENOMEM;
        r = asprintf(&sql, "%s%s%s", before, e, after);
        PQfreemem(e);
        if (r < 0)
                return -ENOMEM;
        r = kpg_run(c, sql, ret);
        free(sql);
        return r;
}

/* The schema and schema_migrations, under the lock: CREATE ... IF NOT
 * EXISTS is not safe against a concurrent CREATE, and a schema made by the
 * database's owner for a role without CREATE on the database is used as
 * it is. */
static int create_schema(kpg_conn *c)
{
        PGresult *res = NULL;
        int r;

        r = begin_locked(c);
        if (r >= 0)
                r = run_escaped(c, "SELECT count(*) FROM pg_namespace WHERE nspname = ", c->schema,
                        false, "", &res);
        if (r >= 0 && streq(PQgetvalue(res, 0, 0), "0"))
                r = run_escaped(c, "CREATE SCHEMA ", c->schema, true, "", NULL);
        PQclear(res);
        if (r >= 0)
                r = kpg_run(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                               "  version BIGINT PRIMARY KEY, name TEXT COLLATE \"C\" NOT NULL,"
                               "  applied_at BIGINT NOT NULL)",
                        NULL);
        return end_locked(c, r);
}

/* One migration and its schema_migrations row in one transaction, under
 * the lock, unless another host ran it while we waited. */
static int migrate_one(kpg_conn *c, size_t i)
{
        char insert[96];
        int64_t version = 0;
        int r;

        r = begin_locked(c);
        if (r >= 0)
                r = kpg_schema_version(c, &version);
        if (r >= 0 && version >= migrations[i].version) {
                (void)end_locked(c, -ECANCELED);
                return version > STORE_SCHEMA_VERSION ? -EPROTO : 0;
        }
        if (r >= 0 && migrations[i].sql)
                r = kpg_run(c, migrations[i].sql, NULL);
        /* The server's clock, as every host shares it. */
        snprintf(insert, sizeof(insert),
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (%d, ",
                migrations[i].version);
        if (r >= 0)
                r = run_escaped(c, insert, migrations[i].name, false,
                        ", (extract(epoch FROM clock_timestamp()) * 1000)::bigint)", NULL);
        return end_locked(c, r);
}

int kpg_migrate(kpg_conn *c)
{
        int64_t version;
        int r;

        /* Current already (every start but the first): no lock taken. */
        r = kpg_schema_version(c, &version);
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
