/* SPDX-License-Identifier: MIT */
/*
 * test-store — the store's promises: pragmas on every connection,
 * forward-only migrations recorded once, newer schemas refused, errno
 * mapping, daemons rows with the suspected-OOM counter, audit and meta.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "tap.h"

static long long pragma_int(knock_store *s, const char *sql)
{
        db_stmt *st = NULL;
        long long v = -1;

        if (store_prepare(s, sql, &st) == 0 && stmt_step(st) > 0)
                v = stmt_col_i64(st, 0);
        stmt_finalize(st);
        return v;
}

static char *pragma_text(knock_store *s, const char *sql)
{
        db_stmt *st = NULL;
        char *v = NULL;

        if (store_prepare(s, sql, &st) == 0 && stmt_step(st) > 0)
                v = stmt_strdup(st, 0);
        stmt_finalize(st);
        return v;
}

/* Whether the program SQLite compiles for sql opens a temporary b-tree. */
static int uses_ephemeral(knock_store *s, const char *sql)
{
        char explain[512];
        db_stmt *st = NULL;
        int found = 0;

        snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
        if (store_prepare(s, explain, &st) < 0)
                return -1;
        while (stmt_step(st) > 0)
                if (streq(stmt_col_text(st, 1), "OpenEphemeral"))
                        found = 1;
        stmt_finalize(st);
        return found;
}

static int insert_event_status(knock_store *s, const char *id, const char *status)
{
        char sql[256];

        snprintf(sql, sizeof(sql),
                "INSERT INTO events(id,status,delivery_id,received_at,updated_at) "
                "VALUES('%s','%s','dlv_%s',1,1)",
                id, status, id);
        return store_exec(s, sql);
}

/* Migration 2 rewrote the CHECK constraints without IN lists, and they still hold. */
static void check_constraints(knock_store *s, const char *when)
{
        is_int(pragma_int(s, "SELECT instr(sql, 'status IN') FROM sqlite_master WHERE name='events'"),
                0, "%s: events.status CHECK has no IN list", when);
        is_int(pragma_int(s, "SELECT instr(sql, 'state IN') FROM sqlite_master WHERE name='hooks'"), 0,
                "%s: hooks.state CHECK has no IN list", when);
        is_int(uses_ephemeral(s, "UPDATE events SET status = 'handled' WHERE id = 'x'"), 0,
                "%s: updating an event's status builds no temporary index", when);
        is_int(uses_ephemeral(s, "INSERT INTO events(id,status,delivery_id,received_at,updated_at) "
                                 "VALUES('x','received','d',1,1)"),
                0, "%s: inserting an event builds no temporary index", when);
        is_int(insert_event_status(s, "evt_bad", "bogus"), -EEXIST, "%s: an unknown status is refused", when);
        is_int(insert_event_status(s, "evt_c1", "received") | insert_event_status(s, "evt_c2", "processing") |
                        insert_event_status(s, "evt_c3", "failed") | insert_event_status(s, "evt_c4", "dead") |
                        insert_event_status(s, "evt_c5", "ignored") | insert_event_status(s, "evt_c6", "handled"),
                0, "%s: every known status is accepted", when);
        is_int(store_exec(s, "INSERT INTO hooks(id,type,payload,state,created_at,updated_at) "
                             "VALUES('hk_bad','t','{}','bogus',1,1)"),
                -EEXIST, "%s: an unknown hook state is refused", when);
        (void)store_exec(s, "DELETE FROM events WHERE id LIKE 'evt_c%'");
}

int main(void)
{
        char dir[] = "/tmp/knock-test-store-XXXXXX", path[256];
        knock_store *s = NULL, *ro = NULL;
        char *mode, *v = NULL;
        int version = -1, r;

        if (!mkdtemp(dir))
                return 1;
        snprintf(path, sizeof(path), "%s/t.db", dir);

        /* Read verbs never create a database. */
        is_int(store_open(path, 0, &s), -ENOENT, "opening a missing database without CREATE fails");
        ok(access(path, F_OK) != 0, "and creates no file");

        is_int(store_open(path, STORE_CREATE, &s), 0, "create and migrate");
        mode = pragma_text(s, "PRAGMA journal_mode");
        is_str(mode, "wal", "journal_mode=WAL");
        free(mode);
        is_int(pragma_int(s, "PRAGMA synchronous"), 2, "synchronous=FULL");
        is_int(pragma_int(s, "PRAGMA page_size"), 4096, "4 KiB pages for a new database");
        is_int(pragma_int(s, "PRAGMA foreign_keys"), 1, "foreign keys on");
        is_int(store_schema_version(s, &version), 0, "schema version readable");
        is_int(version, STORE_SCHEMA_VERSION, "schema at this build's version");
        is_int(pragma_int(s, "SELECT count(*) FROM schema_migrations"), STORE_SCHEMA_VERSION,
               "each migration recorded once");
        s = store_close(s);

        is_int(store_open(path, STORE_CREATE, &s), 0, "reopen with CREATE");
        is_int(pragma_int(s, "SELECT count(*) FROM schema_migrations"), STORE_SCHEMA_VERSION,
               "reopening does not migrate again");
        check_constraints(s, "new database");

        /* Upgrade from version 1: its CHECK text put back, a row in the table. */
        store_exec(s, "INSERT INTO events(id,status,delivery_id,received_at,updated_at) "
                      "VALUES('evt_old','handled','dlv_old',1,1)");
        r = store_exec(s, "PRAGMA writable_schema = ON;"
                          "UPDATE sqlite_master SET sql = replace(sql, "
                          "'CHECK (status = ''received'' OR status = ''processing'' OR status = "
                          "''failed'' OR status = ''dead'' OR status = ''ignored'' OR status = "
                          "''handled'')', 'CHECK (status IN    (''received'',''processing'',"
                          "''failed'',''dead'',''ignored'',''handled''))') WHERE name = 'events';"
                          "UPDATE sqlite_master SET sql = replace(sql, 'CHECK (state = ''pending'' "
                          "OR state = ''delivered'' OR state = ''failed'')', 'CHECK (state IN "
                          "(''pending'',''delivered'',''failed''))') WHERE name = 'hooks';"
                          "PRAGMA writable_schema = OFF;"
                          "DELETE FROM schema_migrations WHERE version >= 2;"
                          "DROP TABLE pauses; DROP INDEX events_order_key;"
                          "ALTER TABLE events DROP COLUMN order_key;");
        is_int(r, 0, "database put back to version 1");
        s = store_close(s);
        is_int(store_open(path, STORE_CREATE, &s), 0, "version 1 database migrated");
        is_int(pragma_int(s, "SELECT count(*) FROM schema_migrations"), STORE_SCHEMA_VERSION,
               "to this build's version");
        is_int(pragma_int(s, "SELECT count(*) FROM events WHERE id = 'evt_old'"), 1,
               "its rows kept");
        is_int(pragma_int(s, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"),
                1, "integrity_check ok after the migration");
        check_constraints(s, "migrated database");

        /* Foreign keys: a delivery cannot point at a missing event. */
        r = store_exec(s, "INSERT INTO deliveries(id,event_id,received_at,signature_valid,"
                          "http_status) VALUES('dlv_x','evt_missing',1,1,200)");
        is_int(r, -EEXIST, "foreign key violation maps to -EEXIST (constraint)");

        /* Daemons rows and the suspected OOM counter. */
        is_int(store_daemon_started(s, "worker", false), 0, "daemon start recorded");
        is_int(pragma_int(s, "SELECT suspected_oom_kills FROM daemons WHERE daemon='worker'"), 0,
               "clean previous run: counter 0");
        is_int(store_daemon_started(s, "worker", true), 0, "unclean start recorded");
        is_int(store_daemon_started(s, "worker", true), 0, "second unclean start recorded");
        is_int(pragma_int(s, "SELECT suspected_oom_kills FROM daemons WHERE daemon='worker'"), 2,
               "two unclean starts: counter 2");
        is_int(pragma_int(s, "SELECT last_clean_exit FROM daemons WHERE daemon='worker'"), 0,
               "last_clean_exit 0 after an unclean run");
        is_int(store_daemon_heartbeat(s, "worker", "{\"n\":1}", "running"), 0, "heartbeat");
        is_int(store_daemon_stopped(s, "worker"), 0, "clean stop");
        is_int(pragma_int(s, "SELECT last_clean_exit FROM daemons WHERE daemon='worker'"), 1,
               "last_clean_exit 1 after a clean stop");
        is_int(pragma_int(s, "SELECT stopped_at > 0 FROM daemons WHERE daemon='worker'"), 1,
               "stopped_at set");

        /* Audit and meta. */
        is_int(store_audit(s, "root(0)", "requeue", NULL, "{\"events\":1}", "[\"evt_1\"]"), 0,
               "audit row");
        is_int(pragma_int(s, "SELECT count(*) FROM audit WHERE action='requeue' AND id LIKE 'aud_%'"),
               1, "audit row stored with a time-ordered id");
        is_int(store_meta_set(s, "last_backup_at", "123"), 0, "meta set");
        is_int(store_meta_set(s, "last_backup_at", "456"), 0, "meta overwrite");
        is_int(store_meta_get(s, "last_backup_at", &v), 0, "meta get");
        is_str(v, "456", "meta holds the last value");
        free(v);
        v = (char *)"sentinel";
        is_int(store_meta_get(s, "nope", &v), 0, "meta get of a missing key");
        ok(v == NULL, "missing key gives NULL");

        /* Transactions: rollback leaves nothing. */
        is_int(store_begin(s), 0, "BEGIN IMMEDIATE");
        store_exec(s, "INSERT INTO meta(key,value) VALUES('tx','1')");
        store_rollback(s);
        is_int(pragma_int(s, "SELECT count(*) FROM meta WHERE key='tx'"), 0, "rollback undoes");

        /* Read-only connection for knockctl read verbs. */
        is_int(store_open(path, STORE_READONLY, &ro), 0, "read-only open");
        ok(store_exec(ro, "INSERT INTO meta(key,value) VALUES('ro','1')") < 0,
           "read-only connection refuses writes");
        ro = store_close(ro);

        /* A database from a newer knock is refused, never downgraded. */
        store_exec(s, "INSERT INTO schema_migrations(version,name,applied_at) VALUES(999,'future',0)");
        s = store_close(s);
        is_int(store_open(path, STORE_CREATE, &s), -EPROTO, "newer schema refused with CREATE");
        is_int(store_open(path, 0, &s), -EPROTO, "newer schema refused without CREATE");

        /* The daemons of one endpoint start together on a fresh file: every
         * one opens it (SQLite answers the switch to WAL with SQLITE_BUSY at
         * once, without its busy handler, while another connection holds a
         * lock). Three processes, 40 fresh files. */
        {
                int failed = 0, stray = 0;

                for (int round = 0; round < 40; round++) {
                        char fresh[300];
                        pid_t pids[3];

                        snprintf(fresh, sizeof(fresh), "%s/fresh%d.db", dir, round);
                        for (int k = 0; k < 3; k++) {
                                pids[k] = fork();
                                if (pids[k] == 0) {
                                        knock_store *c = NULL;
                                        int rc = store_open(fresh, STORE_CREATE, &c);

                                        store_close(c);
                                        _exit(rc == 0 ? 0 : 1);
                                }
                        }
                        for (int k = 0; k < 3; k++) {
                                int st = 0;

                                if (pids[k] < 0 || waitpid(pids[k], &st, 0) < 0)
                                        stray++;
                                else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                                        failed++;
                        }
                }
                is_int(failed + stray, 0, "three daemons opening a fresh file at once: all open it (40 files)");
        }

        /* errno mapping */
        is_int(store_errno(SQLITE_FULL), -ENOSPC, "SQLITE_FULL → -ENOSPC");
        is_int(store_errno(SQLITE_IOERR_FSYNC), -EIO, "SQLITE_IOERR_FSYNC → -EIO");
        is_int(store_errno(SQLITE_BUSY), -EBUSY, "SQLITE_BUSY → -EBUSY");
        is_int(store_errno(SQLITE_DONE), 0, "SQLITE_DONE → 0");

        snprintf(path, sizeof(path), "rm -rf %s", dir);
        if (system(path) != 0)
                return 1;
        return tap_done();
}
