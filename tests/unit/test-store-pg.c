/* SPDX-License-Identifier: MIT */
/*
 * test-store-pg — the PostgreSQL engine against a real server: migrations
 * (once, from several processes at once, the same tables and columns as
 * SQLite's), refusals (newer schema, none, synchronous_commit off),
 * SQLite's parameter syntax, values in and out, SQLSTATE → errno, prepared
 * statements and their lifetime, and lost connections (a terminated
 * backend, a restarted server, inside and outside a transaction);
 * LISTEN/NOTIFY (kpg_listen, kpg_socket, kpg_notified, and store.h's
 * store_notify/store_listen over them: delivered at COMMIT only, one per
 * topic and transaction, only the endpoint's channel and the listener's
 * topic counted, a lost listener reported and brought back by listening
 * again) and the server's clock (store_now_ms).
 *
 * KNOCK_TEST_PG: the conninfo of a server to use (tests/pgcluster run sets
 * it, with KNOCK_TEST_PGDIR for a restart); unset, everything is skipped.
 * The test's schemas are dropped first, so a shared server works too.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store-pg.h"
#include "store.h"
#include "tap.h"

static const char *conninfo;

/* The first column of sql's first row, duplicated ("(null)" for NULL,
 * "(error N)" when it fails). */
static char *query_str(kpg_conn *c, const char *sql)
{
        kpg_stmt *st = NULL;
        char *v;
        int r;

        r = kpg_prepare(c, sql, &st);
        if (r >= 0)
                r = kpg_step(st);
        if (r > 0)
                v = strdup(kpg_column_text(st, 0) ?: "(null)");
        else if (asprintf(&v, "(error %d: %s)", r, kpg_errmsg(c)) < 0)
                v = NULL;
        kpg_finalize(st);
        return v;
}

static long long query_i64(kpg_conn *c, const char *sql)
{
        kpg_stmt *st = NULL;
        long long v = -999;

        if (kpg_prepare(c, sql, &st) >= 0 && kpg_step(st) > 0)
                v = kpg_column_i64(st, 0);
        kpg_finalize(st);
        return v;
}

static int execf(kpg_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int execf(kpg_conn *c, const char *fmt, ...)
{
        va_list ap;
        char *sql;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&sql, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        r = kpg_exec(c, sql);
        free(sql);
        return r;
}

/* A connection for the test's own housekeeping (any schema does). */
static kpg_conn *admin(void)
{
        kpg_conn *c = NULL;
        int r = kpg_open(conninfo, "knock_test_admin", STORE_CREATE, &c);

        if (r < 0) {
                printf("# cannot open the admin connection: %d\n", r);
                exit(1);
        }
        return c;
}

static char *conninfo_with(const char *extra)
{
        char *s;

        if (asprintf(&s, "%s %s", conninfo, extra) < 0)
                exit(1);
        return s;
}

/* ---- migrations ----------------------------------------------------------- */

static void test_create(kpg_conn *a)
{
        kpg_conn *c = NULL;
        char *v;

        execf(a, "DROP SCHEMA IF EXISTS \"knock-t.create\" CASCADE");
        is_int(kpg_open(conninfo, "knock-t.create", 0, &c), -ENOMEDIUM,
                "a missing schema without CREATE: -ENOMEDIUM");
        is_int(kpg_open(conninfo, "knock-t.create", STORE_CREATE, &c), 0,
                "CREATE on a name with '-' and '.' (quoted)");
        is_int(query_i64(c, "SELECT count(*) FROM schema_migrations"), STORE_SCHEMA_VERSION,
                "each migration recorded");
        v = query_str(c, "SELECT string_agg(version || ':' || name, ',' ORDER BY version) "
                         "FROM schema_migrations");
        is_str(v, "1:initial schema,2:CHECK constraints without IN lists,3:pauses and ordered keys",
                "versions and names as store.c's");
        free(v);
        is_int(query_i64(c, "SELECT count(*) FROM schema_migrations WHERE applied_at > "
                            "(extract(epoch FROM now()) * 1000)::bigint - 600000"),
                STORE_SCHEMA_VERSION, "applied_at in milliseconds, now");
        {
                int64_t version = -1;

                is_int(kpg_schema_version(c, &version), 0, "kpg_schema_version()");
                is_int(version, STORE_SCHEMA_VERSION, "this build's version");
        }
        v = query_str(c, "SELECT current_schema()");
        is_str(v, "knock-t.create", "search_path is the schema");
        free(v);
        kpg_close(c);
        c = NULL;
        is_int(kpg_open(conninfo, "knock-t.create", STORE_CREATE, &c), 0, "CREATE again");
        is_int(query_i64(c, "SELECT count(*) FROM schema_migrations"), STORE_SCHEMA_VERSION,
                "nothing migrated twice");
        kpg_close(c);
        c = NULL;
        is_int(kpg_open(conninfo, "knock-t.create", 0, &c), 0,
                "a current schema opens without CREATE");

        /* Back to version 1, a row in it: the migrations from there keep it. */
        is_int(kpg_exec(c, "DROP TABLE pauses; DROP INDEX events_order_key;"
                           "ALTER TABLE events DROP COLUMN order_key;"
                           "DELETE FROM schema_migrations WHERE version >= 2;"
                           "INSERT INTO events(id, status, delivery_id, received_at, updated_at)"
                           " VALUES ('evt_old', 'handled', 'dlv_old', 1, 1)"),
                0, "the schema put back to version 1");
        kpg_close(c);
        c = NULL;
        is_int(kpg_open(conninfo, "knock-t.create", 0, &c), -ENOMEDIUM,
                "a schema behind this build, without CREATE: -ENOMEDIUM");
        is_int(kpg_open(conninfo, "knock-t.create", STORE_CREATE, &c), 0,
                "migrated from version 1");
        is_int(query_i64(c, "SELECT max(version) * 10 + count(*) FROM schema_migrations"),
                STORE_SCHEMA_VERSION * 10 + STORE_SCHEMA_VERSION,
                "to this build's version, once each");
        is_int(query_i64(
                       c, "SELECT count(*) FROM events WHERE id = 'evt_old' AND order_key IS NULL"),
                1, "its row kept, with the new column");
        is_int(kpg_exec(c, "DELETE FROM events"), 0, "emptied again");
        kpg_close(c);
}

/* A role without CREATE on the database uses the schema its DBA made for it. */
static void test_least_privilege(kpg_conn *a)
{
        kpg_conn *c = NULL;
        char *ci = conninfo_with("user=knock_limited");

        execf(a, "DROP SCHEMA IF EXISTS knock_owned CASCADE; DROP SCHEMA IF EXISTS knock_other "
                 "CASCADE;"
                 "DROP ROLE IF EXISTS knock_limited; CREATE ROLE knock_limited LOGIN;"
                 "CREATE SCHEMA knock_owned AUTHORIZATION knock_limited");
        is_int(query_i64(a, "SELECT has_database_privilege('knock_limited', current_database(), "
                            "'CREATE')::int"),
                0, "a role without CREATE on the database");
        is_int(kpg_open(ci, "knock_owned", STORE_CREATE, &c), 0,
                "migrates the schema made for it (%s)", c ? "" : "failed");
        is_int(query_i64(c, "SELECT count(*) FROM schema_migrations"), STORE_SCHEMA_VERSION,
                "every migration recorded");
        kpg_close(c);
        c = NULL;
        is_int(kpg_open(ci, "knock_other", STORE_CREATE, &c), -EACCES,
                "and cannot create another: -EACCES");
        free(ci);
}

/* Several processes open one new schema at the same instant. */
static void test_create_race(kpg_conn *a)
{
        enum { N = 4 };
        int go[2], status, succeeded = 0;
        pid_t pids[N];
        kpg_conn *c = NULL;

        execf(a, "DROP SCHEMA IF EXISTS knock_race CASCADE");
        if (pipe(go) < 0)
                exit(1);
        for (int i = 0; i < N; i++) {
                pids[i] = fork();
                if (pids[i] == 0) {
                        char b;
                        int r;

                        close(go[1]);
                        (void)!read(go[0], &b, 1); /* EOF: every child starts now */
                        r = kpg_open(conninfo, "knock_race", STORE_CREATE, &c);
                        if (r < 0)
                                printf("# child %d: %d\n", i, r);
                        kpg_close(c);
                        fflush(stdout);
                        _exit(r < 0 ? 1 : 0);
                }
        }
        close(go[0]);
        close(go[1]);
        for (int i = 0; i < N; i++)
                if (waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
                        WEXITSTATUS(status) == 0)
                        succeeded++;
        is_int(succeeded, N, "%d processes creating one schema at once all succeed", N);
        is_int(kpg_open(conninfo, "knock_race", 0, &c), 0, "the schema is current");
        is_int(query_i64(c, "SELECT count(*) FROM schema_migrations"), STORE_SCHEMA_VERSION,
                "each migration recorded once");
        is_int(query_i64(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'knock_race'"), 10,
                "ten tables (nine and schema_migrations)");
        kpg_close(c);
}

static void test_refusals(kpg_conn *a)
{
        kpg_conn *c = NULL;
        char msg[512], *ci;
        char longname[70];

        execf(a, "DROP SCHEMA IF EXISTS knock_future CASCADE; DROP SCHEMA IF EXISTS knock_empty "
                 "CASCADE");
        is_int(kpg_open(conninfo, "knock_future", STORE_CREATE, &c), 0, "a schema");
        is_int(kpg_exec(c, "INSERT INTO schema_migrations VALUES (99, 'future', 0)"), 0,
                "a migration from a newer build recorded");
        kpg_close(c);
        c = NULL;
        is_int(kpg_open_msg(conninfo, "knock_future", 0, &c, msg, sizeof(msg)), -EPROTO,
                "newer schema refused without CREATE");
        ok(strstr(msg, "newer") != NULL, "and says so: %s", msg);
        is_int(kpg_open(conninfo, "knock_future", STORE_CREATE, &c), -EPROTO,
                "newer schema refused with CREATE");
        ok(c == NULL, "ret untouched on failure");

        is_int(execf(a, "CREATE SCHEMA knock_empty"), 0, "an empty schema");
        is_int(kpg_open(conninfo, "knock_empty", 0, &c), -ENOMEDIUM,
                "an empty schema without CREATE: -ENOMEDIUM");
        is_int(kpg_open(conninfo, "knock_empty", STORE_READONLY, &c), -ENOMEDIUM, "read-only too");
        is_int(kpg_open(conninfo, "knock_empty", STORE_CREATE, &c), 0,
                "an existing empty schema is migrated");
        kpg_close(c);
        c = NULL;

        memset(longname, 'x', 64);
        longname[64] = '\0';
        is_int(kpg_open(conninfo, longname, STORE_CREATE, &c), -ENAMETOOLONG,
                "a schema name over 63 bytes is refused (PostgreSQL would truncate it)");

        /* A 2xx must mean a durable COMMIT. */
        ci = conninfo_with("options='-c synchronous_commit=off'");
        is_int(kpg_open_msg(ci, "knock-t.create", 0, &c, msg, sizeof(msg)), -EINVAL,
                "synchronous_commit=off refused");
        ok(strstr(msg, "synchronous_commit is 'off'") != NULL, "and said: %s", msg);
        free(ci);
        ci = conninfo_with("options='-c synchronous_commit=local'");
        is_int(kpg_open(ci, "knock-t.create", 0, &c), -EINVAL, "synchronous_commit=local refused");
        free(ci);
        ci = conninfo_with("options='-c synchronous_commit=remote_apply'");
        is_int(kpg_open(ci, "knock-t.create", 0, &c), 0,
                "synchronous_commit=remote_apply accepted");
        kpg_close(c);
        c = NULL;
        free(ci);

        /* Never a password in a message, even from a string libpq cannot parse. */
        ci = conninfo_with("password=hunter2 bogus");
        is_int(kpg_open_msg(ci, "knock_x", 0, &c, msg, sizeof(msg)), -EINVAL,
                "an unparsable conninfo: -EINVAL");
        ok(*msg && !strstr(msg, "hunter2"), "its message has no password: %s", msg);
        free(ci);
        ci = conninfo_with("password=hunter2 user=nosuchrole");
        is_int(kpg_open_msg(ci, "knock_x", 0, &c, msg, sizeof(msg)), -ECONNREFUSED,
                "a connection refused by the server: -ECONNREFUSED");
        ok(strstr(msg, "nosuchrole") && !strstr(msg, "hunter2"),
                "its message is the server's, without the password: %s", msg);
        free(ci);
}

/*
 * The PostgreSQL schema has the tables, columns, NOT NULLs, primary keys
 * and indexes of the SQLite one store.c makes, with BIGINT for INTEGER,
 * BYTEA for BLOB and every text compared bytewise (COLLATE "C").
 */
static char *sqlite_shape(void)
{
        char dir[] = "/tmp/knock-test-store-pg-XXXXXX", path[300], *out = NULL;
        knock_store *s = NULL;
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        size_t len = 0;
        FILE *f;

        if (!mkdtemp(dir))
                return NULL;
        snprintf(path, sizeof(path), "%s/t.db", dir);
        if (store_open(path, STORE_CREATE, &s) < 0)
                return NULL;
        store_close(s);
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
                return NULL;
        f = open_memstream(&out, &len);
        sqlite3_prepare_v2(db,
                "SELECT m.name, p.name, lower(p.type), p.\"notnull\" OR p.pk > 0, p.pk > 0 "
                "FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' "
                "ORDER BY m.name, p.name",
                -1, &st, NULL);
        while (sqlite3_step(st) == SQLITE_ROW)
                fprintf(f, "%s.%s %s%s%s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
                        sqlite3_column_text(st, 2), sqlite3_column_int(st, 3) ? " not null" : "",
                        sqlite3_column_int(st, 4) ? " pk" : "");
        sqlite3_finalize(st);
        sqlite3_prepare_v2(db,
                "SELECT name, tbl_name, sql LIKE '% WHERE %' FROM sqlite_master "
                "WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
                -1, &st, NULL);
        while (sqlite3_step(st) == SQLITE_ROW)
                fprintf(f, "index %s on %s%s\n", sqlite3_column_text(st, 0),
                        sqlite3_column_text(st, 1), sqlite3_column_int(st, 2) ? " partial" : "");
        sqlite3_finalize(st);
        fclose(f);
        sqlite3_close(db);
        unlink(path);
        rmdir(dir);
        return out;
}

static char *pg_shape(kpg_conn *c)
{
        kpg_stmt *st = NULL;
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        int r;

        kpg_prepare(c,
                "SELECT c.table_name, c.column_name,"
                "  CASE c.data_type WHEN 'bigint' THEN 'integer' WHEN 'bytea' THEN 'blob' ELSE "
                "c.data_type END,"
                "  c.is_nullable = 'NO', coalesce(k.pk, false),"
                "  c.data_type <> 'text' OR c.collation_name = 'C'"
                " FROM information_schema.columns c LEFT JOIN ("
                "  SELECT u.table_name, u.column_name, true AS pk"
                "   FROM information_schema.table_constraints t"
                "   JOIN information_schema.key_column_usage u USING (constraint_schema, "
                "constraint_name)"
                "   WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = current_schema()"
                " ) k USING (table_name, column_name)"
                /* SQLite's rowid, a hidden column there (store-pg-migrate.c). */
                " WHERE c.table_schema = current_schema() AND c.column_name <> 'rowid'"
                " ORDER BY c.table_name::text COLLATE \"C\", c.column_name::text COLLATE \"C\"",
                &st);
        while ((r = kpg_step(st)) > 0)
                fprintf(f, "%s.%s %s%s%s%s\n", kpg_column_text(st, 0), kpg_column_text(st, 1),
                        kpg_column_text(st, 2), kpg_column_i64(st, 3) ? " not null" : "",
                        kpg_column_i64(st, 4) ? " pk" : "",
                        kpg_column_i64(st, 5) ? "" : " (not COLLATE C)");
        if (r < 0)
                fprintf(f, "error %d: %s\n", r, kpg_errmsg(c));
        kpg_finalize(st);
        st = NULL;
        /* The indexes made by name (not those of PRIMARY KEY and UNIQUE). */
        kpg_prepare(c,
                "SELECT indexname, tablename, indexdef LIKE '% WHERE %' FROM pg_indexes"
                " WHERE schemaname = current_schema() AND indexname NOT IN (SELECT conname"
                "  FROM pg_constraint WHERE connamespace = (SELECT oid FROM pg_namespace WHERE "
                "nspname = current_schema()))"
                " ORDER BY indexname::text COLLATE \"C\"",
                &st);
        while ((r = kpg_step(st)) > 0)
                fprintf(f, "index %s on %s%s\n", kpg_column_text(st, 0), kpg_column_text(st, 1),
                        kpg_column_i64(st, 2) ? " partial" : "");
        if (r < 0)
                fprintf(f, "error %d: %s\n", r, kpg_errmsg(c));
        kpg_finalize(st);
        fclose(f);
        return out;
}

static void test_same_schema_as_sqlite(void)
{
        kpg_conn *c = NULL;
        char *lite, *pg;

        if (kpg_open(conninfo, "knock-t.create", 0, &c) < 0) {
                ok(0, "open the schema");
                return;
        }
        lite = sqlite_shape();
        pg = pg_shape(c);
        ok(lite && strlen(lite) > 1000, "SQLite's schema read (%zu bytes)",
                lite ? strlen(lite) : 0);
        is_str(pg, lite, "PostgreSQL's tables, columns, NOT NULLs, keys and indexes are SQLite's");
        is_int(query_i64(c, "SELECT count(*) FROM information_schema.columns WHERE "
                            "table_schema = current_schema() AND data_type = 'integer'"),
                0, "no 32-bit integer column");
        is_int(query_i64(c, "SELECT count(*) FROM information_schema.check_constraints "
                            "WHERE constraint_schema = current_schema() AND check_clause LIKE "
                            "'%%''received''%%'"),
                1, "events.status has its CHECK");
        is_int(query_i64(c,
                       "SELECT count(*) FROM information_schema.referential_constraints "
                       "WHERE constraint_schema = current_schema() AND delete_rule = 'CASCADE'"),
                4, "four foreign keys, ON DELETE CASCADE");
        is_int(query_i64(c, "SELECT count(*) FROM information_schema.table_constraints "
                            "WHERE table_schema = current_schema() AND table_name = 'events' "
                            "AND constraint_type = 'UNIQUE'"),
                2, "events.provider_event_id UNIQUE, and its rowid");
        is_int(query_i64(c, "SELECT count(*) FROM information_schema.columns WHERE "
                            "table_schema = current_schema() AND column_name = 'rowid' AND "
                            "is_identity = 'YES' AND data_type = 'bigint'"),
                3, "events, attempts and audit have SQLite's rowid, numbered by PostgreSQL");
        {
                kpg_stmt *st = NULL;

                kpg_prepare(c,
                        "SELECT (SELECT string_agg(value, '|' ORDER BY key) FROM json_each(?1)),"
                        " json_valid(?2), json_valid(?3), json_extract(?4, '$[1]'),"
                        " json_array_length(?4), instr(?2, 'b')",
                        &st);
                kpg_bind_text(st, 1, "[\"a\",[1,2],\"c\"]", strlen("[\"a\",[1,2],\"c\"]"));
                kpg_bind_text(st, 2, "[\"b\"]", strlen("[\"b\"]"));
                kpg_bind_text(st, 3, "[oops", strlen("[oops"));
                kpg_bind_text(st, 4, "[\"X-A\",\"v\"]", strlen("[\"X-A\",\"v\"]"));
                ok(kpg_step(st) == 1 && streq(kpg_column_text(st, 0) ?: "", "a|[1,2]|c") &&
                                kpg_column_i64(st, 1) == 1 && kpg_column_i64(st, 2) == 0 &&
                                streq(kpg_column_text(st, 3) ?: "", "v") &&
                                kpg_column_i64(st, 4) == 2 && kpg_column_i64(st, 5) == 3,
                        "SQLite's json_each, json_valid, json_extract, json_array_length, instr");
                kpg_finalize(st);
        }
        free(lite);
        free(pg);
        kpg_close(c);
}

/* ---- statements ------------------------------------------------------------- */

static void test_placeholders(kpg_conn *c)
{
        /* ? is 1, :n 2, ?4 4, :n again 2, ? 5; 3 is a gap. */
        static const char sql[] = "SELECT ?, '?', ':x', :n, ?4, :n, ? -- ? :c\n"
                                  "  , 'it''s ?', E'\\' ?', \"col?\".v /* ? /* :d */ ? */"
                                  " FROM (SELECT 7 AS v) AS \"col?\"";
        static const char *const want[] = {
                "one", "?", ":x", "two", "four", "two", "five", "it's ?", "' ?", "7"};
        sqlite3 *db = NULL;
        sqlite3_stmt *lite = NULL;
        kpg_stmt *st = NULL;
        bool all = true;
        int r;

        is_int(kpg_prepare(c, sql, &st), 0, "prepare a statement in SQLite's syntax");
        is_int(kpg_param_count(st), 5, "five parameters");
        is_int(kpg_param_index(st, ":n"), 2, ":n is 2");
        is_int(kpg_param_index(st, ":x"), 0, "':x' in a literal is no parameter");
        is_int(kpg_param_index(st, ":c") + kpg_param_index(st, ":d"), 0, "nor in comments");
        /* SQLite numbers the same SQL (its comments do not nest: end it first). */
        sqlite3_open(":memory:", &db);
        sqlite3_prepare_v2(
                db, "SELECT ?, '?', ':x', :n, ?4, :n, ? -- ? :c\n , 'it''s ?'", -1, &lite, NULL);
        is_int(sqlite3_bind_parameter_count(lite), kpg_param_count(st), "as SQLite counts them");
        is_int(sqlite3_bind_parameter_index(lite, ":n"), kpg_param_index(st, ":n"),
                "as SQLite numbers them");
        sqlite3_finalize(lite);
        sqlite3_close(db);

        kpg_bind_text(st, 1, "one", 3);
        kpg_bind_text(st, 2, "two", 3);
        kpg_bind_text(st, 4, "four", 4);
        kpg_bind_text(st, 5, "five", 4);
        is_int(kpg_bind_text(st, 6, "x", 1), -ERANGE, "binding past the last: -ERANGE");
        is_int(kpg_bind_i64(st, 0, 1), -ERANGE, "binding 0: -ERANGE");
        r = kpg_step(st);
        is_int(r, 1, "a row (%s)", kpg_errmsg(c));
        is_int(kpg_column_count(st), 10, "ten columns");
        for (int i = 0; i < 10 && r > 0; i++)
                if (!streq_ptr(kpg_column_text(st, i), want[i])) {
                        printf("# column %d: '%s', want '%s'\n", i, kpg_column_text(st, i),
                                want[i]);
                        all = false;
                }
        ok(r > 0 && all, "values in their places, literals and identifiers untouched");
        is_int(kpg_step(st), 0, "then done");
        kpg_finalize(st);
        st = NULL;

        is_int(kpg_prepare(c, "SELECT :v::bigint + 1, ?::text", &st), 0, ":: is a cast");
        is_int(kpg_param_count(st), 2, "two parameters around it");
        kpg_bind_text(st, kpg_param_index(st, ":v"), "41", 2);
        kpg_bind_i64(st, 2, 5);
        is_int(kpg_step(st), 1, "runs");
        is_int(kpg_column_i64(st, 0), 42, ":v::bigint + 1");
        is_str(kpg_column_text(st, 1), "5", "?::text");
        kpg_finalize(st);
        st = NULL;

        is_int(kpg_prepare(c, "SELECT ?0", &st), -ERANGE, "?0 refused");
        is_int(kpg_prepare(c, "SELECT ?40000", &st), -ERANGE, "?40000 refused");
        ok(st == NULL, "nothing handed out");
}

static void test_values(kpg_conn *c)
{
        static const char text[] = "l'été \"q\" \\ ☃ -- ?";
        static const unsigned char blob[] = {'a', 0, 'b', 0, 0xff, '\'', '\\'};
        kpg_stmt *ins = NULL, *sel = NULL, *st = NULL;

        kpg_exec(c, "DROP TABLE IF EXISTS rt; CREATE TABLE rt(id bigint PRIMARY KEY, i bigint,"
                    " t text, b bytea)");
        is_int(kpg_prepare(c, "INSERT INTO rt(id, i, t, b) VALUES (?, ?, ?, ?)", &ins), 0,
                "insert prepared");
        kpg_bind_i64(ins, 1, 1);
        kpg_bind_null(ins, 2);
        kpg_bind_text(ins, 3, NULL, 0);
        kpg_bind_null(ins, 4);
        is_int(kpg_step(ins), 0, "NULLs inserted");
        kpg_reset(ins);
        kpg_bind_i64(ins, 1, 2);
        kpg_bind_i64(ins, 2, INT64_MIN);
        kpg_bind_text(ins, 3, text, strlen(text));
        kpg_bind_blob(ins, 4, blob, sizeof(blob));
        is_int(kpg_step(ins), 0, "INT64_MIN, quotes and UTF-8, a blob with NUL bytes");
        kpg_reset(ins);
        kpg_bind_i64(ins, 1, 3);
        kpg_bind_i64(ins, 2, INT64_MAX);
        kpg_bind_text(ins, 3, "", 0);
        kpg_bind_blob(ins, 4, "", 0);
        is_int(kpg_step(ins), 0, "INT64_MAX, empty text, empty blob");
        kpg_reset(ins);
        kpg_bind_i64(ins, 1, 4);
        is_int(kpg_bind_text(ins, 3, "a\0b", 3), -EILSEQ, "text holding a NUL: -EILSEQ");
        is_int(kpg_bind_text(ins, 3, "\xff\xfe", 2), 0, "invalid UTF-8 bound");
        is_int(kpg_step(ins), -EILSEQ, "and refused by the server: -EILSEQ");
        kpg_finalize(ins);

        is_int(kpg_prepare(c, "SELECT i, t, b FROM rt WHERE id = ?", &sel), 0, "select prepared");
        kpg_bind_i64(sel, 1, 1);
        is_int(kpg_step(sel), 1, "row 1");
        is_int(kpg_column_type(sel, 0), KPG_NULL, "NULL integer: KPG_NULL");
        is_int(kpg_column_type(sel, 1), KPG_NULL, "NULL text: KPG_NULL");
        is_int(kpg_column_type(sel, 2), KPG_NULL, "NULL blob: KPG_NULL");
        ok(kpg_column_text(sel, 1) == NULL && kpg_column_blob(sel, 2) == NULL, "read as NULL");
        is_int(kpg_column_i64(sel, 0), 0, "NULL reads 0");
        kpg_reset(sel);
        kpg_bind_i64(sel, 1, 2);
        is_int(kpg_step(sel), 1, "row 2");
        is_int(kpg_column_type(sel, 0), KPG_INTEGER, "bigint: KPG_INTEGER");
        ok(kpg_column_i64(sel, 0) == INT64_MIN, "INT64_MIN round trip");
        is_int(kpg_column_type(sel, 1), KPG_TEXT, "text: KPG_TEXT");
        is_str(kpg_column_text(sel, 1), text, "text round trip");
        is_int(kpg_column_bytes(sel, 1), strlen(text), "its length in bytes");
        is_int(kpg_column_type(sel, 2), KPG_BLOB, "bytea: KPG_BLOB");
        is_int(kpg_column_bytes(sel, 2), sizeof(blob), "blob length");
        ok(kpg_column_bytes(sel, 2) == sizeof(blob) &&
                        memcmp(kpg_column_blob(sel, 2), blob, sizeof(blob)) == 0,
                "blob round trip, NUL bytes and all");
        kpg_reset(sel);
        kpg_bind_i64(sel, 1, 3);
        is_int(kpg_step(sel), 1, "row 3");
        ok(kpg_column_i64(sel, 0) == INT64_MAX, "INT64_MAX round trip");
        is_str(kpg_column_text(sel, 1), "", "empty text is not NULL");
        is_int(kpg_column_type(sel, 2), KPG_BLOB, "empty blob is not NULL");
        is_int(kpg_column_bytes(sel, 2), 0, "and has no bytes");
        kpg_reset(sel);
        kpg_bind_i64(sel, 1, 4);
        is_int(kpg_step(sel), 0, "the refused row is not there");
        kpg_finalize(sel);

        /* Booleans, numeric, float: as SQLite would give them. */
        kpg_prepare(c,
                "SELECT true, false, 1.5::numeric, 7::numeric, 2.5::float8, 12::int4,"
                " sum(x) FROM (VALUES (9000000000000000000::bigint), (1)) AS v(x)",
                &st);
        is_int(kpg_step(st), 1, "a row of other types");
        ok(kpg_column_type(st, 0) == KPG_INTEGER && kpg_column_i64(st, 0) == 1 &&
                        kpg_column_i64(st, 1) == 0,
                "booleans: KPG_INTEGER 1 and 0");
        is_str(kpg_column_text(st, 0), "1", "true reads as text '1'");
        ok(kpg_column_type(st, 2) == KPG_FLOAT && kpg_column_double(st, 2) == 1.5,
                "numeric with a fraction: KPG_FLOAT");
        ok(kpg_column_type(st, 3) == KPG_INTEGER && kpg_column_i64(st, 3) == 7,
                "numeric without one: KPG_INTEGER");
        ok(kpg_column_type(st, 4) == KPG_FLOAT && kpg_column_i64(st, 4) == 2, "float8: KPG_FLOAT");
        ok(kpg_column_type(st, 5) == KPG_INTEGER && kpg_column_i64(st, 5) == 12, "int4");
        ok(kpg_column_i64(st, 6) == INT64_C(9000000000000000001), "sum(bigint), a numeric");
        ok(kpg_column_type(st, 7) == KPG_NULL && kpg_column_text(st, 7) == NULL,
                "a column past the last reads as NULL");
        kpg_finalize(st);
        st = NULL;

        /* Integers are bigint: millisecond arithmetic on parameters. */
        kpg_prepare(c, "SELECT ?1 + ?2, ? - 5000", &st);
        kpg_bind_i64(st, 1, INT64_C(1700000000000));
        kpg_bind_i64(st, 2, 5000);
        kpg_bind_i64(st, 3, INT64_C(1700000000000));
        is_int(kpg_step(st), 1, "?1 + ?2 and ? - 5000 run (%s)", kpg_errmsg(c));
        ok(kpg_column_i64(st, 0) == INT64_C(1700000005000) &&
                        kpg_column_i64(st, 1) == INT64_C(1699999995000),
                "in 64 bits");
        kpg_reset(st);
        kpg_bind_null(st, 2);
        is_int(kpg_step(st), 1, "a NULL where an integer was keeps its type");
        is_int(kpg_column_type(st, 0), KPG_NULL, "and the sum is NULL");
        kpg_clear_bindings(st);
        kpg_reset(st);
        is_int(kpg_step(st), 1, "cleared bindings run");
        ok(kpg_column_type(st, 0) == KPG_NULL && kpg_column_type(st, 1) == KPG_NULL, "as NULLs");
        kpg_finalize(st);
}

static void test_changes(kpg_conn *c)
{
        kpg_stmt *st = NULL;

        kpg_exec(c, "DROP TABLE IF EXISTS ch; CREATE TABLE ch(id bigint PRIMARY KEY, v text)");
        is_int(kpg_exec(c, "INSERT INTO ch VALUES (1,'a'),(2,'b'),(3,'c')"), 0, "three rows");
        is_int(kpg_changes(c), 3, "changes 3");
        kpg_prepare(c, "UPDATE ch SET v = ? WHERE id >= ?", &st);
        kpg_bind_text(st, 1, "z", 1);
        kpg_bind_i64(st, 2, 2);
        is_int(kpg_step(st), 0, "update");
        is_int(kpg_changes(c), 2, "changes 2");
        kpg_finalize(st);
        st = NULL;
        is_int(query_i64(c, "SELECT count(*) FROM ch"), 3, "a SELECT");
        is_int(kpg_changes(c), 2, "leaves changes as they were");
        kpg_prepare(c, "DELETE FROM ch WHERE id = 1 RETURNING v", &st);
        is_int(kpg_step(st), 1, "DELETE … RETURNING gives its row");
        is_str(kpg_column_text(st, 0), "a", "the deleted value");
        is_int(kpg_changes(c), 1, "changes 1");
        kpg_finalize(st);
        is_int(kpg_exec(c, "DELETE FROM ch WHERE id = 99"), 0, "a DELETE of nothing");
        is_int(kpg_changes(c), 0, "changes 0");
}

static void test_errors(kpg_conn *c)
{
        kpg_conn *ro = NULL;
        kpg_stmt *st = NULL;
        int stderr_copy, fd;
        char path[] = "/tmp/knock-test-store-pg-err-XXXXXX";
        off_t size;

        kpg_exec(c, "DROP TABLE IF EXISTS u; CREATE TABLE u(id text PRIMARY KEY)");
        is_int(kpg_exec(c, "BEGIN"), 0, "BEGIN");
        ok(kpg_in_transaction(c), "in a transaction");
        is_int(kpg_exec(c, "INSERT INTO u VALUES ('a')"), 0, "a row");
        kpg_prepare(c, "INSERT INTO u VALUES (?)", &st);
        kpg_bind_text(st, 1, "a", 1);
        is_int(kpg_step(st), -EEXIST, "the same key: -EEXIST");
        ok(strstr(kpg_errmsg(c), "duplicate key") && strstr(kpg_errmsg(c), "23505"),
                "the message says so: %s", kpg_errmsg(c));
        ok(!strstr(kpg_errmsg(c), "(id)=(a)"), "without the row's values");
        ok(kpg_in_transaction(c), "the failed transaction is still open");
        is_int(kpg_exec(c, "SELECT 1"), -EIO, "and takes nothing until rolled back");
        is_int(kpg_exec(c, "ROLLBACK"), 0, "ROLLBACK");
        ok(!kpg_in_transaction(c), "no transaction");
        kpg_reset(st);
        kpg_bind_text(st, 1, "b", 1);
        is_int(kpg_step(st), 0, "the connection works after the rollback");
        is_int(query_i64(c, "SELECT count(*) FROM u WHERE id = 'a'"), 0, "'a' was rolled back");
        kpg_finalize(st);

        is_int(kpg_exec(c, "SELECT * FROM no_such_table"), -ENOMEDIUM,
                "undefined table: -ENOMEDIUM");
        is_int(kpg_exec(c, "SELEKT"), -EIO, "a syntax error: -EIO");
        st = NULL;
        is_int(kpg_prepare(c, "SELEKT ?", &st), 0, "prepare sends nothing");
        is_int(kpg_step(st), -EIO, "the first step reports the syntax error");
        kpg_finalize(st);

        is_int(kpg_open(conninfo, "knock-t.create", STORE_READONLY, &ro), 0, "a read-only session");
        is_int(kpg_exec(ro, "INSERT INTO meta VALUES ('k', 'v')"), -EROFS,
                "refuses writes: -EROFS");
        kpg_close(ro);

        /* Notices go nowhere: not to stderr. */
        fd = mkstemp(path);
        fflush(stderr);
        stderr_copy = dup(2);
        dup2(fd, 2);
        kpg_exec(c, "CREATE TABLE IF NOT EXISTS u(id text)"); /* NOTICE: exists, skipping */
        kpg_exec(c, "DO $$ BEGIN RAISE WARNING 'a warning'; END $$");
        fflush(stderr);
        dup2(stderr_copy, 2);
        close(stderr_copy);
        size = lseek(fd, 0, SEEK_END);
        close(fd);
        unlink(path);
        is_int(size, 0, "notices and warnings are not written to stderr");
}

static int terminate(kpg_conn *a, kpg_conn *victim);

static void test_lock_timeout(kpg_conn *a)
{
        kpg_conn *c = NULL, *d = NULL;
        char *ci = conninfo_with("options='-c lock_timeout=300ms'"), *v;
        struct timespec t0, t1;
        long ms;

        v = query_str(a, "SHOW lock_timeout");
        is_str(v, "5s", "lock_timeout 5 s unless set (as SQLite's busy timeout)");
        free(v);
        is_int(kpg_open(ci, "knock-t.create", 0, &c), 0, "a session with lock_timeout=300ms");
        v = query_str(c, "SHOW lock_timeout");
        is_str(v, "300ms", "the operator's lock_timeout is kept");
        free(v);
        kpg_exec(a, "DELETE FROM \"knock-t.create\".meta; INSERT INTO \"knock-t.create\".meta "
                    "VALUES ('k','v')");
        is_int(kpg_open(conninfo, "knock-t.create", 0, &d), 0, "another session");
        kpg_exec(d, "BEGIN");
        is_int(kpg_exec(d, "UPDATE meta SET value = 'd'"), 0, "which locks the row");
        clock_gettime(CLOCK_MONOTONIC, &t0);
        is_int(kpg_exec(c, "UPDATE meta SET value = 'c'"), -EBUSY,
                "a lock not given in time: -EBUSY");
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        ok(ms >= 250 && ms < 3000, "after the lock_timeout (%ld ms)", ms);

        /* store_busy_timeout(): kpg_lock_timeout(), kept over a reconnection. */
        is_int(kpg_lock_timeout(c, 1500), 0, "kpg_lock_timeout(1500)");
        clock_gettime(CLOCK_MONOTONIC, &t0);
        is_int(kpg_exec(c, "UPDATE meta SET value = 'c'"), -EBUSY, "-EBUSY again");
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        ok(ms >= 1400 && ms < 5000, "after 1.5 s (%ld ms)", ms);
        kpg_exec(d, "ROLLBACK");
        is_int(terminate(a, c), 0, "the session's backend terminated");
        is_int(kpg_exec(c, "SELECT 1"), -ECONNRESET, "lost");
        v = query_str(c, "SHOW lock_timeout");
        is_str(v, "1500ms", "the new session waits as long");
        free(v);
        is_int(kpg_lock_timeout(c, 0), 0, "kpg_lock_timeout(0)");
        v = query_str(c, "SHOW lock_timeout");
        is_str(v, "1ms", "is 1 ms, not PostgreSQL's 0 (forever)");
        free(v);
        kpg_close(c);
        kpg_close(d);
        free(ci);
}

/* How many server-side statements the session holds whose text is like pattern. */
static long long prepared(kpg_conn *c, const char *pattern)
{
        char *sql;
        long long n;

        if (asprintf(&sql, "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%s'",
                    pattern) < 0)
                return -1;
        n = query_i64(c, sql);
        free(sql);
        return n;
}

static void test_statements(kpg_conn *c)
{
        kpg_stmt *st = NULL;

        kpg_exec(c,
                "DROP TABLE IF EXISTS seq; CREATE TABLE seq(id bigserial PRIMARY KEY, v bigint)");
        kpg_prepare(c, "INSERT INTO seq(v) VALUES (?) RETURNING id /* stmt-a */", &st);
        kpg_bind_i64(st, 1, 10);
        is_int(kpg_step(st), 1, "insert returning");
        is_int(kpg_column_i64(st, 0), 1, "id 1");
        is_int(prepared(c, "%stmt-a%"), 0, "the first execution prepares nothing by name");
        kpg_reset(st);
        is_int(kpg_step(st), 1, "reset: the next step executes again, bindings kept");
        is_int(kpg_column_i64(st, 0), 2, "id 2");
        is_int(prepared(c, "%stmt-a%"), 1, "the second prepares it by name");
        is_int(kpg_step(st), 0, "done");
        is_int(kpg_step(st), 1, "a step after done executes again (as SQLite)");
        is_int(kpg_column_i64(st, 0), 3, "id 3");
        is_int(prepared(c, "%stmt-a%"), 1, "by the same name");
        is_int(query_i64(c, "SELECT count(*) FROM seq WHERE v = 10"), 3, "three rows, all v = 10");
        kpg_finalize(st);
        is_int(prepared(c, "%stmt-a%"), 0, "finalize deallocates it");

        /* Finalized inside a failed transaction: deallocated once idle. */
        st = NULL;
        kpg_prepare(c, "SELECT 1 /* stmt-b */", &st);
        kpg_step(st);
        kpg_reset(st);
        kpg_step(st);
        is_int(prepared(c, "%stmt-b%"), 1, "a named statement");
        kpg_exec(c, "BEGIN");
        kpg_exec(c, "SELEKT");
        kpg_finalize(st);
        kpg_exec(c, "ROLLBACK");
        is_int(prepared(c, "%stmt-b%"), 0,
                "finalized in a failed transaction: deallocated after it");

        /* Another session changes the columns under a named statement. */
        st = NULL;
        kpg_exec(c, "DROP TABLE IF EXISTS wide; CREATE TABLE wide(a bigint); INSERT INTO wide "
                    "VALUES (1)");
        kpg_prepare(c, "SELECT * FROM wide /* stmt-c */", &st);
        kpg_step(st);
        kpg_reset(st);
        is_int(kpg_step(st), 1, "a named SELECT *");
        kpg_reset(st);
        is_int(prepared(c, "%stmt-c%"), 1, "prepared by name");
        {
                kpg_conn *d = NULL;

                kpg_open(conninfo, "knock-t.create", 0, &d);
                is_int(kpg_exec(d, "ALTER TABLE wide ADD COLUMN b text DEFAULT 'new'"), 0,
                        "another session adds a column");
                kpg_close(d);
        }
        kpg_exec(c, "BEGIN");
        is_int(kpg_step(st), -EIO,
                "the old plan fails once (cached plan must not change result type)");
        kpg_exec(c, "ROLLBACK");
        kpg_reset(st);
        kpg_exec(c, "BEGIN");
        is_int(kpg_step(st), 1, "the next transaction runs it prepared anew (%s)", kpg_errmsg(c));
        is_int(kpg_column_count(st), 2, "with both columns");
        is_str(kpg_column_text(st, 1), "new", "and the new one's value");
        kpg_exec(c, "COMMIT");
        kpg_finalize(st);
        is_int(prepared(c, "%stmt-c%"), 0, "no statement of the old plan left behind");

        /* A statement outliving its connection only frees. */
        {
                kpg_conn *d = NULL;

                kpg_open(conninfo, "knock-t.create", 0, &d);
                st = NULL;
                kpg_prepare(d, "SELECT 1", &st);
                kpg_step(st);
                kpg_close(d);
                is_int(kpg_step(st), -ENOTCONN, "a statement of a closed connection: -ENOTCONN");
                kpg_finalize(st);
        }
}

/* ---- lost connections ---------------------------------------------------------- */

static int terminate(kpg_conn *a, kpg_conn *victim)
{
        int pid = kpg_backend_pid(victim);

        if (pid <= 0)
                return -1;
        if (query_i64(a, "SELECT 1") != 1)
                return -1;
        return execf(a, "SELECT pg_terminate_backend(%d, 5000)", pid);
}

static void test_lost_idle(kpg_conn *a)
{
        kpg_conn *c = NULL;
        kpg_stmt *st = NULL;
        int pid;

        kpg_open(conninfo, "knock-t.create", 0, &c);
        kpg_exec(c, "DROP TABLE IF EXISTS lost; CREATE TABLE lost(v text)");
        kpg_prepare(c, "INSERT INTO lost VALUES (?) RETURNING v || '!'", &st);
        kpg_bind_text(st, 1, "one", 3);
        for (int i = 0; i < 3; i++) {
                kpg_reset(st);
                kpg_step(st);
        }
        is_int(prepared(c, "INSERT INTO lost%"), 1, "a named statement on the session");
        pid = kpg_backend_pid(c);
        is_int(terminate(a, c), 0, "the session's backend terminated");
        kpg_reset(st);
        is_int(kpg_step(st), -ECONNRESET, "the next statement: -ECONNRESET");
        ok(!kpg_in_transaction(c), "no transaction was open");
        kpg_reset(st);
        kpg_bind_text(st, 1, "two", 3);
        is_int(kpg_step(st), 1, "the one after reconnects and runs (%s)", kpg_errmsg(c));
        is_str(kpg_column_text(st, 0), "two!", "prepared again on the new session");
        ok(kpg_backend_pid(c) != pid && kpg_backend_pid(c) > 0, "a new backend");
        is_int(query_i64(c, "SELECT count(*) FROM lost"), 4, "three rows before, one after");
        {
                char *v = query_str(
                        c, "SELECT current_schema() || ' ' || current_setting('lock_timeout')");
                is_str(v, "knock-t.create 5s", "the new session is set up as the first was");
                free(v);
        }
        kpg_finalize(st);
        kpg_close(c);
}

static void test_lost_in_transaction(kpg_conn *a)
{
        kpg_conn *c = NULL;

        kpg_open(conninfo, "knock-t.create", 0, &c);
        kpg_exec(c, "DROP TABLE IF EXISTS lost; CREATE TABLE lost(v text)");
        kpg_exec(c, "BEGIN");
        is_int(kpg_exec(c, "INSERT INTO lost VALUES ('x')"), 0, "a row in a transaction");
        is_int(terminate(a, c), 0, "the session's backend terminated");
        is_int(kpg_exec(c, "INSERT INTO lost VALUES ('y')"), -ECONNRESET,
                "the next statement: -ECONNRESET");
        ok(kpg_in_transaction(c), "the lost transaction counts as open");
        is_int(kpg_exec(c, "INSERT INTO lost VALUES ('z')"), -ECONNRESET,
                "no reconnection inside it: the rest would run in autocommit");
        is_int(kpg_exec(c, "COMMIT"), -ECONNRESET, "COMMIT fails");
        is_int(kpg_exec(c, "rollback;"), 0, "ROLLBACK succeeds");
        ok(!kpg_in_transaction(c), "no transaction");
        is_int(kpg_exec(c, "INSERT INTO lost VALUES ('w')"), 0, "then it reconnects (%s)",
                kpg_errmsg(c));
        {
                char *v = query_str(c, "SELECT string_agg(v, ',') FROM lost");
                is_str(v, "w", "nothing of the lost transaction was stored");
                free(v);
        }
        /* kpg_rollback() does the same. */
        kpg_exec(c, "BEGIN");
        terminate(a, c);
        is_int(kpg_exec(c, "SELECT 1"), -ECONNRESET, "lost again");
        kpg_rollback(c);
        ok(!kpg_in_transaction(c), "kpg_rollback() ends the lost transaction");
        is_int(query_i64(c, "SELECT count(*) FROM lost"), 1, "and the session is back");
        kpg_close(c);
}

/* ---- LISTEN/NOTIFY ----------------------------------------------------------------- */

/* What c was notified of within ms (or 200 ms after the first notification): the
 * sum of kpg_notified() over every read until then, or its first error. */
static int notified_within(kpg_conn *c, int ms)
{
        uint64_t end = mono_us() + (uint64_t)ms * 1000;
        int total = 0;

        for (;;) {
                struct pollfd p = {.fd = kpg_socket(c), .events = POLLIN};
                int64_t left = (int64_t)(end - mono_us()) / 1000;
                int n;

                if (p.fd < 0)
                        return -ECONNRESET;
                if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                        return total;
                n = kpg_notified(c);
                if (n < 0)
                        return n;
                if (n > 0 && total == 0)
                        end = MIN(end, mono_us() + 200 * 1000);
                total += n;
        }
}

static void test_listen(kpg_conn *a)
{
        kpg_conn *l = NULL, *n = NULL, *other = NULL;
        int fd;

        execf(a, "DROP SCHEMA IF EXISTS \"knock-t.other\" CASCADE");
        kpg_open(conninfo, "knock-t.create", 0, &l);
        kpg_open(conninfo, "knock-t.create", 0, &n);
        is_int(kpg_open(conninfo, "knock-t.other", STORE_CREATE, &other), 0, "another endpoint");
        is_int(kpg_notified(l), -ECONNRESET, "not listening yet: kpg_notified() says so");
        is_int(kpg_listen(l, "events"), 0, "LISTEN for events");
        fd = kpg_socket(l);
        ok(fd >= 0, "a descriptor to watch");
        is_int(kpg_notified(l), 0, "nothing yet, and no wait");

        kpg_exec(n, "BEGIN");
        is_int(kpg_exec(n, "SELECT pg_notify('knock-t.create', 'events')"), 0, "NOTIFY in a transaction");
        is_int(notified_within(l, 300), 0, "nothing heard before its COMMIT");
        kpg_exec(n, "COMMIT");
        is_int(notified_within(l, 2000), 1, "heard once it committed");

        kpg_exec(n, "BEGIN");
        kpg_exec(n, "SELECT pg_notify('knock-t.create', 'events')");
        kpg_exec(n, "SELECT pg_notify('knock-t.create', 'events')");
        kpg_exec(n, "COMMIT");
        is_int(notified_within(l, 500), 1, "two of one topic in one transaction: heard once");

        kpg_exec(n, "BEGIN");
        kpg_exec(n, "SELECT pg_notify('knock-t.create', 'events')");
        kpg_exec(n, "ROLLBACK");
        is_int(notified_within(l, 300), 0, "rolled back: never heard");

        kpg_exec(n, "SELECT pg_notify('knock-t.create', 'hooks')");
        kpg_exec(other, "SELECT pg_notify('knock-t.other', 'events')");
        is_int(notified_within(l, 300), 0, "another topic, another endpoint's channel: not counted");
        kpg_exec(n, "SELECT pg_notify('knock-t.create', 'hooks'), pg_notify('knock-t.create', "
                    "'events')");
        is_int(notified_within(l, 2000), 1, "our topic beside another: counted alone");

        is_int(terminate(a, l), 0, "the listener's backend terminated");
        is_int(notified_within(l, 2000), -ECONNRESET, "the loss is reported");
        is_int(kpg_socket(l), -1, "no descriptor any more");
        is_int(kpg_notified(l), -ECONNRESET, "and reported again");
        kpg_exec(n, "SELECT pg_notify('knock-t.create', 'events')");
        is_int(kpg_listen(l, "events"), 0, "listening again reconnects (%s)", kpg_errmsg(l));
        ok(kpg_socket(l) >= 0, "a new descriptor");
        is_int(notified_within(l, 300), 0, "what was sent while lost is not heard");
        kpg_exec(n, "SELECT pg_notify('knock-t.create', 'events')");
        is_int(notified_within(l, 2000), 1, "what is sent after is");
        is_int(kpg_listen(l, "events"), 0, "listening twice is harmless");
        kpg_exec(n, "SELECT pg_notify('knock-t.create', 'events')");
        is_int(notified_within(l, 2000), 1, "and still heard once");
        kpg_close(other);
        kpg_close(n);
        kpg_close(l);
}

/* store.h over the engine: store_notify() from a store's transaction, store_listen()
 * on a store of its own, and the server's clock. */
static void test_store_wakeups(void)
{
        char *location = store_location_postgresql("knock-t.create", conninfo);
        knock_store *s = NULL, *l = NULL;
        kpg_conn *a = admin();
        int64_t before, now, after, server;

        is_int(store_open(location, 0, &s), 0, "a store on the schema");
        is_int(store_open(location, 0, &l), 0, "and one to listen with");
        is_int(store_listen(l, STORE_TOPIC_HOOKS), 0, "store_listen(hooks)");
        store_begin(s);
        is_int(store_notify(s, STORE_TOPIC_HOOKS), 0, "store_notify(hooks) in a transaction");
        is_int(store_notify(s, STORE_TOPIC_HOOKS), 0, "twice");
        is_int(store_notify(s, STORE_TOPIC_EVENTS), 0, "and events");
        is_int(notified_within(l->pg, 300), 0, "not before COMMIT");
        store_commit(s);
        is_int(notified_within(l->pg, 2000), 1, "once after it, events not counted");
        ok(store_socket(l) >= 0 && store_notified(l) == 0, "store_socket(), store_notified()");

        /* The clock: the server's, through this host's monotonic clock. */
        server = query_i64(a, "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint");
        now = store_now_ms(s);
        ok(s->clock_synced, "measured on first use");
        ok(llabs((long long)(now - server)) < 1000, "store_now_ms() is the server's clock (%lld vs %lld)",
           (long long)now, (long long)server);
        s->clock_offset_ms += 3600 * 1000;
        ok(store_now_ms(s) - now >= 3600 * 1000, "it is the offset that makes it");
        is_int(store_clock_sync(s), 0, "store_clock_sync()");
        now = store_now_ms(s);
        ok(llabs((long long)(now - server)) < 1000, "measured again: back to the server's");
        before = store_now_ms(s);
        usleep(20 * 1000);
        after = store_now_ms(s);
        ok(after - before >= 20 && after - before < 1000, "it advances with time (%lld ms)",
           (long long)(after - before));
        is_int(terminate(a, s->pg), 0, "the store's backend terminated");
        ok(store_clock_sync(s) < 0, "a measure that fails ...");
        now = store_now_ms(s);
        ok(llabs((long long)(now - after)) < 1000, "... keeps the last offset");
        setenv("KNOCK_FAKE_NOW_MS", "1234", 1);
        is_int(store_now_ms(s), 1234, "KNOCK_FAKE_NOW_MS wins");
        unsetenv("KNOCK_FAKE_NOW_MS");
        store_close(l);
        store_close(s);
        kpg_close(a);
        free(location);
}

static void test_server_restart(void)
{
        const char *dir = getenv("KNOCK_TEST_PGDIR");
        kpg_conn *c = NULL, *l = NULL;
        kpg_stmt *st = NULL;
        char *cmd;

        if (!dir) {
                ok(1, "# SKIP no KNOCK_TEST_PGDIR: the server is not ours to restart");
                return;
        }
        kpg_open(conninfo, "knock-t.create", 0, &c);
        kpg_open(conninfo, "knock-t.create", 0, &l);
        kpg_listen(l, "events");
        kpg_prepare(c, "SELECT count(*) FROM schema_migrations WHERE version <= ?", &st);
        kpg_bind_i64(st, 1, 3);
        kpg_step(st);
        kpg_reset(st);
        kpg_step(st);
        kpg_reset(st);
        if (asprintf(&cmd, "%s/tests/pgcluster restart '%s'", SOURCE_ROOT, dir) < 0)
                exit(1);
        is_int(system(cmd), 0, "the server restarted (pg_ctl restart -m fast)");
        free(cmd);
        is_int(kpg_step(st), -ECONNRESET, "the next statement: -ECONNRESET");
        kpg_reset(st);
        is_int(kpg_step(st), 1, "the one after works (%s)", kpg_errmsg(c));
        is_int(kpg_column_i64(st, 0), 3, "with the right answer");
        kpg_finalize(st);
        is_int(notified_within(l, 2000), -ECONNRESET, "a listener hears of the restart");
        is_int(kpg_listen(l, "events"), 0, "and listens again on the new server");
        kpg_exec(c, "SELECT pg_notify('knock-t.create', 'events')");
        is_int(notified_within(l, 2000), 1, "and hears");
        kpg_close(l);
        kpg_close(c);
}

int main(void)
{
        kpg_conn *a, *c = NULL;

        conninfo = getenv("KNOCK_TEST_PG");
        if (!conninfo || !*conninfo) {
                printf("1..0 # SKIP KNOCK_TEST_PG is not set (run under tests/pgcluster run, "
                       "which starts a private PostgreSQL)\n");
                return 0;
        }
        a = admin();
        test_create(a);
        test_create_race(a);
        test_refusals(a);
        test_least_privilege(a);
        test_same_schema_as_sqlite();

        if (kpg_open(conninfo, "knock-t.create", 0, &c) < 0)
                return 1;
        test_placeholders(c);
        test_values(c);
        test_changes(c);
        test_errors(c);
        test_statements(c);
        kpg_close(c);
        test_lock_timeout(a);
        test_lost_idle(a);
        test_lost_in_transaction(a);
        test_listen(a);
        kpg_close(a);
        test_store_wakeups();
        test_server_restart();
        return tap_done();
}
