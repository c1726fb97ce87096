/* SPDX-License-Identifier: MIT */
/*
 * copy — `knockctl copy-to-postgresql [CONNINFO]` (issue 19): an endpoint
 * that lived in its SQLite file moves to PostgreSQL. The rows are
 * copy-rows.c's; this file decides whether the copy may run, frames it and
 * says what happened.
 *
 * Named for what it does: a copy (the SQLite file is left as it was, the
 * way back), to the engine `store = postgresql:CONNINFO` names; `migrate`
 * already means a schema upgrade.
 *
 * Promises:
 *  - refused while a daemon of the endpoint runs (maint_endpoint_running(),
 *    as restore: nothing may write the file while it is read), and while a
 *    daemon's heartbeat in the target is fresh (another host's);
 *  - refused when the target schema knock_NAME already holds events,
 *    deliveries, attempts, hooks or hook attempts, or a copy's audit row:
 *    two histories are never merged (the target is left as it was);
 *  - the SQLite file is opened read-only and read in one snapshot; every
 *    row goes into PostgreSQL in one transaction with the copy's audit row
 *    (actor, counts, source): all of it or nothing. The schema itself is
 *    created (migrated) first, in its own transactions, as a daemon would;
 *  - after the COMMIT every table is read back and compared (counts, a
 *    digest of every value, the order): exit 1 when anything differs;
 *  - daemons rows are not copied: they are the processes that used the
 *    SQLite file (their history stays there); the endpoint's daemons write
 *    their own rows when they start on PostgreSQL;
 *  - a password in CONNINFO (accepted: the command line is not the endpoint
 *    file) is never printed, logged or written to the audit row: whatever
 *    names the target is the conninfo without password and sslpassword.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "copy.h"
#include "knockctl.h"
#include "maint.h"

#define COPY_ACTION "copy-to-postgresql"

static bool conninfo_secret(const char *keyword)
{
        return streq(keyword, "password") || streq(keyword, "sslpassword");
}

/* A libpq value as a connection string writes it: bare, or in single
 * quotes with \ and ' escaped. */
static void conninfo_value(FILE *f, const char *v)
{
        if (*v && !strpbrk(v, " \t\n\r\f\v'\\")) {
                fputs(v, f);
                return;
        }
        fputc('\'', f);
        for (; *v; v++) {
                if (*v == '\'' || *v == '\\')
                        fputc('\\', f);
                fputc(*v, f);
        }
        fputc('\'', f);
}

/* conninfo (keywords or a URI) as keyword=value pairs without its secrets:
 * what may be printed, audited, and written into the endpoint file. NULL
 * when libpq cannot parse it (its message is not repeated: it may quote
 * the string). */
static char *conninfo_redacted(const char *conninfo)
{
        PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
        char *s = NULL;
        size_t len = 0;
        bool first = true;
        FILE *f;

        if (!opts)
                return NULL;
        f = open_memstream(&s, &len);
        for (PQconninfoOption *o = opts; f && o->keyword; o++) {
                if (!o->val || conninfo_secret(o->keyword))
                        continue;
                fprintf(f, "%s%s=", first ? "" : " ", o->keyword);
                conninfo_value(f, o->val);
                first = false;
        }
        PQconninfoFree(opts);
        if (!f || fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

/* The store's source: the endpoint's SQLite file, opened read-only.
 * 0 or KNOCKCTL_FAILED (reported). */
static int open_source(knockctl *c, const char *path, knock_store **ret)
{
        struct stat stb;
        int r;

        if (stat(path, &stb) < 0) {
                if (errno == ENOENT)
                        ctl_error("no SQLite database for endpoint %s at %s: nothing to copy",
                                c->endpoint, path);
                else
                        ctl_error("%s: %s", path, strerror(errno));
                return KNOCKCTL_FAILED;
        }
        r = store_open(path, STORE_READONLY, ret);
        if (r == -ENOMEDIUM)
                ctl_error("%s: the database schema is older than this knockctl (version %d); "
                          "upgrade it first: start the endpoint on SQLite once, or run "
                          "'knockctl -e %s migrate' while its file still says store = sqlite",
                        path, STORE_SCHEMA_VERSION, c->endpoint);
        else if (r == -EPROTO)
                ctl_error("%s: the database is newer than this knockctl (schema version %d)", path,
                        STORE_SCHEMA_VERSION);
        else if (r < 0)
                ctl_error("%s: cannot open the database: %s", path, strerror(-r));
        return r < 0 ? KNOCKCTL_FAILED : 0;
}

/* No daemon of the endpoint may run here: its watchdog files, the SQLite
 * daemons table (maint_endpoint_running(), as restore asks). 0 or
 * KNOCKCTL_FAILED (reported). */
static int refuse_running_here(knockctl *c, knock_store *src)
{
        char daemon[32] = "";
        pid_t pid = 0;
        int r;

        r = maint_endpoint_running(c->endpoint, src, &pid, daemon, sizeof(daemon));
        if (r == MAINT_E_RUNNING) {
                ctl_error("refused: knock-%s of endpoint %s is running (pid %d); stop the "
                          "endpoint first: systemctl stop knock@%s",
                        daemon, c->endpoint, (int)pid, c->endpoint);
                return KNOCKCTL_FAILED;
        }
        if (r < 0) {
                ctl_error("cannot tell whether endpoint %s runs: %s", c->endpoint, strerror(-r));
                return KNOCKCTL_FAILED;
        }
        return 0;
}

/* Nor anywhere else: a fresh heartbeat in the target's daemons table is a
 * daemon of another host on it. 0 or KNOCKCTL_FAILED (reported). */
static int refuse_running_there(knockctl *c, const char *schema)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        int r;

        r = store_prepare(c->store,
                "SELECT daemon, pid FROM daemons WHERE stopped_at IS NULL"
                " AND heartbeat_at > ?",
                &st);
        if (r >= 0)
                r = stmt_bind_i64(st, 1, c->now - STORE_HEARTBEAT_STALE_MS);
        if (r >= 0)
                r = stmt_step(st);
        if (r > 0) {
                _cleanup_free_ char *d = ctl_escape(stmt_col_text(st, 0), 0);

                ctl_error("refused: knock-%s (pid %" PRId64 ") has a fresh heartbeat in the "
                          "PostgreSQL schema %s; stop the endpoint on every host first",
                        d ? d : "?", stmt_col_i64(st, 1), schema);
                return KNOCKCTL_FAILED;
        }
        if (r < 0) {
                ctl_error(
                        "cannot read the daemons of schema %s: %s", schema, store_errmsg(c->store));
                return KNOCKCTL_FAILED;
        }
        return 0;
}

/* Inside the target's transaction: empty, and never copied into. 0 or
 * KNOCKCTL_FAILED (reported). */
static int refuse_not_empty(knockctl *c, copy_state *x, const char *schema)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        const char *table = NULL;
        int64_t rows = 0;
        int r;

        r = copy_target_empty(x, &table, &rows);
        if (r == -ENOTEMPTY) {
                ctl_error("refused: the PostgreSQL schema %s already holds %" PRId64 " row%s "
                          "in %s; the copy only goes into a schema without events, "
                          "deliveries, attempts and hooks (nothing was changed)",
                        schema, rows, rows == 1 ? "" : "s", table);
                return KNOCKCTL_FAILED;
        }
        if (r == -EBUSY) {
                ctl_error("refused: another session writes the tables of schema %s; try again "
                          "when it is done",
                        schema);
                return KNOCKCTL_FAILED;
        }
        if (r < 0) {
                ctl_error("%s", copy_message(x));
                return KNOCKCTL_FAILED;
        }
        r = store_prepare(c->store, "SELECT at, actor FROM audit WHERE action = ? LIMIT 1", &st);
        if (r >= 0)
                r = stmt_bind_text(st, 1, COPY_ACTION);
        if (r >= 0)
                r = stmt_step(st);
        if (r > 0) {
                _cleanup_free_ char *actor = ctl_escape(stmt_col_text(st, 1), 0);
                char at[64];

                ctl_error("refused: endpoint %s was already copied into schema %s (%s, by %s)",
                        c->endpoint, schema, format_rfc3339(stmt_col_i64(st, 0), at, sizeof(at)),
                        actor ? actor : "?");
                return KNOCKCTL_FAILED;
        }
        if (r < 0) {
                ctl_error("cannot read the audit rows of schema %s: %s", schema,
                        store_errmsg(c->store));
                return KNOCKCTL_FAILED;
        }
        return 0;
}

/* The one transaction: the rows and the audit row. 0 or KNOCKCTL_FAILED
 * (reported; nothing copied). */
static int copy_commit(knockctl *c, knock_store *src, copy_state *x, const char *path,
        const char *schema, const char *redacted)
{
        json_t *filters = NULL, *counts = NULL;
        int r;

        r = ctl_begin(c);
        if (r != 0)
                return r;
        r = refuse_not_empty(c, x, schema);
        if (r != 0) {
                store_rollback(c->store);
                return r;
        }
        /* One snapshot of the source: what a concurrent knockctl changes
         * there after this point is not half in the copy. */
        r = store_exec(src, "BEGIN");
        if (r >= 0)
                r = copy_rows(x);
        (void)store_exec(src, "ROLLBACK");
        if (r >= 0) {
                filters = json_pack(
                        "{s:s, s:s, s:s}", "source", path, "schema", schema, "target", redacted);
                counts = copy_counts_json(x);
                if (!filters || !counts ||
                        json_object_set_new(counts, "kept", copy_kept_json(x)) < 0 ||
                        json_object_set_new(counts, "repaired", copy_repaired_json(x)) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0)
                r = ctl_audit(c, COPY_ACTION, filters, counts, NULL);
        json_decref(filters);
        json_decref(counts);
        if (r < 0) {
                store_rollback(c->store);
                ctl_error("copy failed, nothing was copied: %s",
                        copy_message(x)[0] ? copy_message(x) : strerror(-r));
                return KNOCKCTL_FAILED;
        }
        r = store_commit(c->store);
        if (r < 0) {
                /* A connection lost during COMMIT leaves its outcome unknown:
                 * a second run either copies or says it was copied. */
                ctl_error("commit failed: %s (when the connection was lost, the copy may have "
                          "been committed: run copy-to-postgresql again, it refuses a schema "
                          "that holds it)",
                        strerror(-r));
                return KNOCKCTL_FAILED;
        }
        return 0;
}

static void print_text(knockctl *c, json_t *doc, const char *conninfo)
{
        json_t *rows = json_object_get(doc, "rows"), *kept = json_object_get(doc, "kept");
        json_t *repaired = json_object_get(doc, "repaired"), *v;
        const knock_config *cfg = ctl_config(c);
        const char *key;

        printf("copied endpoint %s from %s into PostgreSQL schema %s (%s) in %.1f s;\n"
               "read back after the commit: every row, value and order matches\n",
                c->endpoint, json_string_value(json_object_get(doc, "source")),
                json_string_value(json_object_get(doc, "schema")),
                json_string_value(json_object_get(doc, "target")),
                (double)json_integer_value(json_object_get(doc, "duration_ms")) / 1000.0);
        json_object_foreach(rows, key, v)
        {
                json_int_t k = json_integer_value(json_object_get(kept, key));

                printf("  %-14s %10" JSON_INTEGER_FORMAT, key, json_integer_value(v));
                if (k > 0)
                        printf("  (%" JSON_INTEGER_FORMAT " the target had: kept as it was)", k);
                putchar('\n');
        }
        printf("  %-14s %10s  (the SQLite file's processes: not copied)\n", "daemons", "-");
        if (json_object_size(repaired) > 0) {
                printf("text that was not UTF-8, stored with U+FFFD for each bad byte:");
                json_object_foreach(repaired, key, v)
                        printf(" %s %" JSON_INTEGER_FORMAT, key, json_integer_value(v));
                putchar('\n');
        }
        printf("the SQLite file is left as it was: %s\n",
                json_string_value(json_object_get(doc, "source")));
        if (cfg && cfg->store_conninfo && streq(cfg->store_conninfo, conninfo))
                printf("next: the endpoint file already names this store; start the endpoint: "
                       "systemctl start knock@%s\n",
                        c->endpoint);
        else
                printf("next: in %s/endpoints/%s.conf, [endpoint], set\n"
                       "  store = postgresql:%s\n"
                       "(a password goes into a PGPASSFILE, a service file or a credential, never "
                       "the file: knock-endpoint(5)), then start the endpoint: systemctl start "
                       "knock@%s\n",
                        knock_config_dir(), c->endpoint,
                        json_string_value(json_object_get(doc, "target")), c->endpoint);
}

/* CONNINFO from the operand, else the endpoint file's store; NULL after
 * saying why not. */
static const char *target_conninfo(knockctl *c, int argc, char **argv)
{
        const knock_config *cfg;

        if (argc - optind > 1) {
                ctl_error("usage: knockctl copy-to-postgresql [CONNINFO]");
                return NULL;
        }
        if (argc - optind == 1)
                return argv[optind];
        cfg = ctl_config(c);
        if (cfg && cfg->store_conninfo && *cfg->store_conninfo)
                return cfg->store_conninfo;
        ctl_error("copy-to-postgresql needs the target: CONNINFO (a libpq connection string "
                  "or URI), or store = postgresql:CONNINFO in the endpoint file");
        return NULL;
}

static int verb_copy(knockctl *c, int argc, char **argv)
{
        _cleanup_free_ char *redacted = NULL, *location = NULL, *path = NULL;
        _cleanup_(store_closep) knock_store *src = NULL;
        _cleanup_(copy_freep) copy_state *x = NULL;
        char schema[CONFIG_PG_SCHEMA_MAX + 1];
        const char *conninfo;
        json_t *doc = NULL;
        int64_t started = now_ms();
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        conninfo = target_conninfo(c, argc, argv);
        if (!conninfo)
                return KNOCKCTL_USAGE;
        redacted = conninfo_redacted(conninfo);
        if (!redacted) {
                ctl_error("CONNINFO is not a libpq connection string or URI (not repeated here: "
                          "it may hold a password)");
                return KNOCKCTL_USAGE;
        }
        if (strlen("knock_") + strlen(c->endpoint) > CONFIG_PG_SCHEMA_MAX) {
                ctl_error("on PostgreSQL an endpoint's name is at most %zu characters (its "
                          "schema is knock_NAME)",
                        CONFIG_PG_SCHEMA_MAX - strlen("knock_"));
                return KNOCKCTL_FAILED;
        }
        snprintf(schema, sizeof(schema), "knock_%s", c->endpoint);
        path = config_db_path(c->endpoint);
        location = store_location_postgresql(schema, conninfo);
        if (!path || !location)
                return -ENOMEM;

        r = open_source(c, path, &src);
        if (r == 0)
                r = refuse_running_here(c, src);
        if (r != 0)
                return r;
        /* STORE_CREATE: the schema and its migrations, as a daemon starting
         * on it would make them; committed on their own, empty. */
        r = store_open(location, STORE_CREATE, &c->store);
        if (r < 0) {
                ctl_error("cannot open PostgreSQL schema %s (%s): %s", schema, redacted,
                        r == -EPROTO ? "its schema is newer than this knockctl" : strerror(-r));
                return KNOCKCTL_FAILED;
        }
        r = refuse_running_there(c, schema);
        if (r != 0)
                return r;

        r = copy_new(src, c->store, &x);
        if (r < 0)
                return r;
        r = copy_commit(c, src, x, path, schema, redacted);
        if (r != 0)
                return r;
        r = copy_verify(x, 1);
        if (r < 0) {
                ctl_error("the copy was committed, but reading it back found a difference: %s. "
                          "Do not switch the endpoint; drop the schema (DROP SCHEMA %s CASCADE) "
                          "and copy again",
                        copy_message(x)[0] ? copy_message(x) : strerror(-r), schema);
                return KNOCKCTL_FAILED;
        }

        doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:b, s:I, s:s}", "action",
                COPY_ACTION, "endpoint", c->endpoint, "source", path, "schema", schema, "target",
                redacted, "rows", copy_counts_json(x), "kept", copy_kept_json(x), "repaired",
                copy_repaired_json(x), "verified", true, "duration_ms",
                (json_int_t)(now_ms() - started), "daemons", "not copied");
        if (!doc)
                return -ENOMEM;
        if (c->json)
                r = print_json(doc);
        else {
                print_text(c, doc, conninfo);
                r = 0;
        }
        json_decref(doc);
        return r;
}

KNOCKCTL_VERB(copy_to_postgresql, .name = COPY_ACTION, .synopsis = "[CONNINFO]",
        .help = "Copy the SQLite database into PostgreSQL (endpoint stopped)",
        .section = SECTION_MAINTENANCE, .run = verb_copy);
