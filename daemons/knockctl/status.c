/* SPDX-License-Identifier: MIT */
/*
 * status — is it up, what is piling up, is the configuration valid:
 * status, endpoints, check-config.
 *
 * Promises:
 *  - `status` answers from the database alone (heartbeats written by each
 *    daemon on its watchdog tick), so it works the same under systemd, in a
 *    container or in a test; it never takes the write lock. Where hosts
 *    share the endpoint (PostgreSQL) every host's daemons are listed, each
 *    row with its host, and their heartbeats are aged by the store's clock
 *    (store_now_ms(): the server's), which wrote them;
 *  - `endpoints` asks systemd for the unit state only when systemd is the
 *    running init (/run/systemd/system) and systemctl exists, else null;
 *  - `check-config` prints every problem as FILE:LINE: message, not just
 *    the first, and exits 1 when there is any.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "knockctl.h"
#include "pause.h"

extern char **environ;

static const field_spec daemon_fields[] = {
        {"daemon", "daemon", F_TEXT},
        {"pid", "pid", F_INT},
        /* running, stale (no heartbeat for three intervals: hung, or gone
         * without a clean stop) or stopped. */
        {"state",
                "CASE WHEN stopped_at IS NOT NULL OR pid IS NULL THEN 'stopped'"
                " WHEN :now - heartbeat_at > " STRINGIFY(STORE_HEARTBEAT_STALE_MS)
                " THEN 'stale' ELSE 'running' END",
                F_TEXT},
        {"heartbeat_age_s", "(:now - heartbeat_at) / 1000.0", F_REAL},
        {"started_at", "started_at", F_TIME},
        {"last_clean_exit", "last_clean_exit", F_BOOL},
        {"suspected_oom_kills", "suspected_oom_kills", F_INT},
        {"heartbeat_at", "heartbeat_at", F_TIME},
        {"stopped_at", "stopped_at", F_TIME},
        {"uptime_s", "CASE WHEN stopped_at IS NULL THEN (:now - started_at) / 1000.0 END", F_REAL},
        {"status", "status", F_TEXT},
        {"counters", "counters", F_JSON},
};

/* Hosts sharing the endpoint (PostgreSQL): a row is ROLE@HOST, split in two fields. */
static const field_spec daemon_host_fields[] = {
        {"daemon", "split_part(daemon, '@', 1)", F_TEXT},
        {"host", "split_part(daemon, '@', 2)", F_TEXT},
};

/* {"received": n, …} in the order of event_status_names. */
static json_t *queue_object(knock_store *s)
{
        int64_t counts[ELEMENTSOF(event_status_names)];
        json_t *q;

        if (events_queue_counts(s, counts) < 0)
                return NULL;
        q = json_object();
        for (size_t i = 0; q && i < ELEMENTSOF(event_status_names); i++)
                json_object_set_new(q, event_status_names[i], json_integer(counts[i]));
        return q;
}

static json_t *hook_counts(knock_store *s)
{
        static const char *const states[] = {"pending", "delivered", "failed"};
        _cleanup_stmt_ db_stmt *st = NULL;
        json_t *o = json_object();

        if (!o)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(states); i++)
                json_object_set_new(o, states[i], json_integer(0));
        if (store_prepare(s, "SELECT state, count(*) FROM hooks GROUP BY state", &st) < 0)
                return o;
        while (stmt_step(st) > 0) {
                const char *state = stmt_col_text(st, 0);

                if (state)
                        json_object_set_new(o, state, json_integer(stmt_col_i64(st, 1)));
        }
        return o;
}

/* A meta value holding ms since the epoch as RFC 3339, other values as they are. */
static json_t *meta_time(knock_store *s, const char *key)
{
        _cleanup_free_ char *v = NULL;
        uint64_t ms;
        char buf[64];

        if (store_meta_get(s, key, &v) < 0 || !v)
                return json_null();
        if (parse_u64_strict(v, &ms) == 0 && ms <= INT64_MAX)
                return json_string(format_rfc3339((int64_t)ms, buf, sizeof(buf)));
        return json_string_lossy(v, strlen(v));
}

static json_t *file_size(const char *path, const char *suffix)
{
        _cleanup_free_ char *p = NULL;
        struct stat stb;

        if (asprintf(&p, "%s%s", path, suffix) < 0) {
                p = NULL;
                return json_null();
        }
        if (stat(p, &stb) < 0)
                return errno == ENOENT ? json_integer(0) : json_null();
        return json_integer(stb.st_size);
}

/* The pauses in force (pause.h): [{route (null: the endpoint), kind, since, by, reason}]. */
static json_t *pauses_array(knock_store *s)
{
        knock_pause *v = NULL;
        size_t n = 0;
        json_t *a = json_array();

        if (!a || pause_list(s, &v, &n) < 0) {
                json_decref(a);
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                char t[64];

                if (json_array_append_new(a, json_pack("{s:s?, s:s, s:s, s:s, s:s?}", "route",
                                                     v[i].route, "kind", v[i].kind, "since",
                                                     format_rfc3339(v[i].since, t, sizeof(t)),
                                                     "by", v[i].paused_by, "reason",
                                                     v[i].reason)) < 0) {
                        json_decref(a);
                        a = NULL;
                        break;
                }
        }
        pause_list_free(v, n);
        return a;
}

/* "paused: the whole endpoint since T by U (reason)" and one line per route. */
static void print_pauses(json_t *paused)
{
        size_t i;
        json_t *p;

        json_array_foreach(paused, i, p)
        {
                const char *route = json_string_value(json_object_get(p, "route"));
                const char *reason = json_string_value(json_object_get(p, "reason"));
                _cleanup_free_ char *er = route ? ctl_escape(route, 0) : NULL,
                                    *ew = reason ? ctl_escape(reason, 0) : NULL;

                printf("paused: %s%s since %s by %s%s%s%s\n", route ? "route " : "the whole endpoint",
                        route ? (er ?: "?") : "",
                        json_string_value(json_object_get(p, "since")),
                        json_string_value(json_object_get(p, "by")), reason ? " (" : "",
                        reason ? (ew ?: "?") : "", reason ? ")" : "");
        }
}

static void print_counts(const char *title, json_t *o)
{
        const char *key;
        json_t *v;
        bool first = true;

        printf("%s: ", title);
        json_object_foreach(o, key, v)
        {
                printf("%s%s %" JSON_INTEGER_FORMAT, first ? "" : ", ", key, json_integer_value(v));
                first = false;
        }
        putchar('\n');
}

static int verb_status(knockctl *c, int argc, char **argv)
{
        static const column cols_hosts[] = {
                {"daemon", "DAEMON", 0},
                {"host", "HOST", 0},
        };
        static const column cols[] = {
                {"daemon", "DAEMON", 0},
                {"pid", "PID", 0},
                {"state", "STATE", 0},
                {"heartbeat_age_s", "HEARTBEAT_AGE_S", 0},
                {"started_at", "STARTED_AT", 0},
                {"last_clean_exit", "LAST_CLEAN_EXIT", 0},
                {"suspected_oom_kills", "SUSPECTED_OOM_KILLS", 0},
                {"status", "STATUS", 60},
        };
        _cleanup_stmt_ db_stmt *st = NULL, *oldest = NULL;
        _cleanup_free_ char *cols_sql = NULL, *sql = NULL;
        field_spec fields[ELEMENTSOF(daemon_fields) + 1];
        column table[ELEMENTSOF(cols) + 1];
        size_t n_fields = ELEMENTSOF(daemon_fields), n_cols = ELEMENTSOF(cols);
        json_t *doc, *daemons = NULL, *queue, *hooks, *paused;
        bool hosts;
        int o, r, version = 0;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (optind < argc) {
                ctl_error("status takes no arguments");
                return KNOCKCTL_USAGE;
        }
        r = ctl_open_store(c, false);
        if (r != 0)
                return r;

        /* Several hosts: DAEMON and HOST where DAEMON was, the rest as it is. */
        hosts = c->store->engine == STORE_ENGINE_POSTGRESQL;
        memcpy(fields + hosts, daemon_fields, sizeof(daemon_fields));
        memcpy(table + hosts, cols, sizeof(cols));
        if (hosts) {
                memcpy(fields, daemon_host_fields, sizeof(daemon_host_fields));
                memcpy(table, cols_hosts, sizeof(cols_hosts));
                n_fields++;
                n_cols++;
        }
        cols_sql = fields_select(fields, n_fields);
        if (!cols_sql || asprintf(&sql,
                                 "SELECT %s FROM daemons ORDER BY CASE"
                                 " /*LITE{*/daemon/*}*/ /*PG: split_part(daemon, '@', 1) */"
                                 " WHEN 'ingress' THEN 0 WHEN 'worker' THEN 1"
                                 " WHEN 'deliver' THEN 2 ELSE 3 END, daemon",
                                 cols_sql) < 0) {
                sql = NULL;
                return -ENOMEM;
        }
        r = store_prepare(c->store, sql, &st);
        if (r < 0)
                return r;
        ctl_bind_common(c, st);
        if (hosts)
                ctl_bind_i64(st, ":now", store_now_ms(c->store), false);
        r = fields_rows(st, fields, n_fields, &daemons);
        if (r < 0)
                return r;
        queue = queue_object(c->store);
        hooks = hook_counts(c->store);
        paused = pauses_array(c->store);
        (void)store_schema_version(c->store, &version);

        doc = json_object();
        if (!doc || !queue || !hooks || !paused) {
                json_decref(doc);
                json_decref(daemons);
                json_decref(queue);
                json_decref(hooks);
                json_decref(paused);
                return -ENOMEM;
        }
        json_object_set_new(doc, "endpoint", json_string(c->endpoint));
        json_object_set_new(doc, "daemons", daemons);
        json_object_set_new(doc, "queue", queue);

        /* "How old is the oldest queued event?" — anything not yet finished. */
        json_object_set_new(doc, "oldest_queued_at", json_null());
        json_object_set_new(doc, "oldest_queued_age_s", json_null());
        if (store_prepare(c->store,
                    "SELECT min(received_at) FROM events"
                    " WHERE status IN ('received','processing','failed')",
                    &oldest) >= 0 &&
                stmt_step(oldest) > 0 &&
                stmt_col_type(oldest, 0) != DB_NULL) {
                int64_t at = stmt_col_i64(oldest, 0);
                char buf[64];

                json_object_set_new(
                        doc, "oldest_queued_at", json_string(format_rfc3339(at, buf, sizeof(buf))));
                json_object_set_new(doc, "oldest_queued_age_s", json_real((c->now - at) / 1000.0));
        }
        json_object_set_new(doc, "hooks", hooks);
        json_object_set_new(doc, "paused", paused);
        json_object_set_new(doc, "schema_version", json_integer(version));
        json_object_set_new(doc, "database", json_string(c->store->path));
        json_object_set_new(doc, "db_bytes", file_size(c->store->path, ""));
        json_object_set_new(doc, "wal_bytes", file_size(c->store->path, "-wal"));
        json_object_set_new(doc, "last_backup_at", meta_time(c->store, "last_backup_at"));
        json_object_set_new(doc, "last_prune_at", meta_time(c->store, "last_prune_at"));

        if (c->json)
                r = print_json(doc);
        else {
                static const char *const keys[] = {"endpoint", "database", "schema_version",
                        "db_bytes", "wal_bytes", "last_backup_at", "last_prune_at",
                        "oldest_queued_at", "oldest_queued_age_s", NULL};

                print_object(doc, keys);
                putchar('\n');
                if (json_array_size(daemons) == 0)
                        printf("No daemon has run yet (no heartbeat recorded).\n");
                else
                        print_table(daemons, table, n_cols);
                putchar('\n');
                print_counts("queue", queue);
                print_counts("hooks", hooks);
                print_pauses(paused);
        }
        json_decref(doc);
        return r;
}

KNOCKCTL_VERB(status, .name = "status", .synopsis = "",
        .help = "Daemons (pid, heartbeat, clean exit, OOM kills), queue and store",
        .section = SECTION_READ, .run = verb_status);

/* `systemctl is-active knock@NAME.service`, or NULL without systemd. */
static char *unit_state(const char *name)
{
        _cleanup_free_ char *unit = NULL;
        char buf[64];
        posix_spawn_file_actions_t fa;
        int pipefd[2], status;
        ssize_t n;
        size_t len = 0;
        pid_t pid;
        char *argv[4];

        if (access("/run/systemd/system", F_OK) < 0)
                return NULL;
        if (asprintf(&unit, "knock@%s.service", name) < 0) {
                unit = NULL;
                return NULL;
        }
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return NULL;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        argv[0] = (char *)"systemctl";
        argv[1] = (char *)"is-active";
        argv[2] = unit;
        argv[3] = NULL;
        if (posix_spawnp(&pid, "systemctl", &fa, NULL, argv, environ) != 0)
                pid = -1;
        posix_spawn_file_actions_destroy(&fa);
        close(pipefd[1]);
        if (pid < 0) {
                close(pipefd[0]);
                return NULL;
        }
        while (len < sizeof(buf) - 1 && (n = read(pipefd[0], buf + len, sizeof(buf) - 1 - len)) > 0)
                len += (size_t)n;
        close(pipefd[0]);
        (void)waitpid(pid, &status, 0);
        buf[len] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        return len > 0 && buf[0] ? strdup(buf) : NULL;
}

static int verb_endpoints(knockctl *c, int argc, char **argv)
{
        static const column cols[] = {
                {"name", "NAME", 0},
                {"unit_state", "UNIT", 0},
                {"received", "RECEIVED", 0},
                {"processing", "PROCESSING", 0},
                {"failed", "FAILED", 0},
                {"dead", "DEAD", 0},
                {"ignored", "IGNORED", 0},
                {"handled", "HANDLED", 0},
                {"error", "NOTE", 60},
        };
        char **names = NULL;
        size_t n = 0;
        json_t *list, *table;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (optind < argc) {
                ctl_error("endpoints takes no arguments");
                return KNOCKCTL_USAGE;
        }
        if (c->endpoint) {
                names = calloc(1, sizeof(char *));
                if (!names || !(names[0] = strdup(c->endpoint))) {
                        free(names);
                        return -ENOMEM;
                }
                n = 1;
        } else {
                r = config_list_endpoints(&names, &n);
                if (r < 0) {
                        ctl_error("cannot list endpoints in %s/endpoints: %s", knock_config_dir(),
                                strerror(-r));
                        return KNOCKCTL_FAILED;
                }
        }

        list = json_array();
        table = json_array();
        for (size_t i = 0; list && table && i < n; i++) {
                _cleanup_free_ char *path = config_store_location_of(names[i]);
                _cleanup_free_ char *where = path ? store_location_describe(path) : NULL;
                _cleanup_free_ char *state = unit_state(names[i]);
                knock_store *s = NULL;
                json_t *e = json_object(), *row = json_object(), *queue = NULL;
                const char *error = NULL;
                struct stat stb;
                int k;

                if (!e || !row) {
                        json_decref(e);
                        json_decref(row);
                        break;
                }
                if (!path || (!store_location_is_postgresql(path) && stat(path, &stb) < 0))
                        error = "no database yet";
                else if ((k = store_open(path, STORE_READONLY, &s)) < 0)
                        error = k == -ENOMEDIUM && store_location_is_postgresql(path)
                                        ? "no database yet"
                                        : "database cannot be opened";
                else if (!(queue = queue_object(s)))
                        error = "database cannot be read";
                store_close(s);

                json_object_set_new(e, "name", json_string(names[i]));
                json_object_set_new(e, "unit_state", state ? json_string(state) : json_null());
                json_object_set_new(e, "database", where ? json_string(where) : json_null());
                json_object_set_new(e, "queue", queue ? queue : json_null());
                json_object_set_new(e, "error", error ? json_string(error) : json_null());

                json_object_update(row, e);
                if (queue)
                        json_object_update(row, queue);
                json_array_append_new(list, e);
                json_array_append_new(table, row);
        }
        strv_free(names, n);
        if (!list || !table) {
                json_decref(list);
                json_decref(table);
                return -ENOMEM;
        }
        if (c->json)
                r = print_json(list);
        else {
                print_table(table, cols, ELEMENTSOF(cols));
                r = 0;
        }
        json_decref(list);
        json_decref(table);
        return r;
}

KNOCKCTL_VERB(endpoints, .name = "endpoints", .synopsis = "",
        .help = "Configured endpoints, their unit state and queue depth", .section = SECTION_READ,
        .flags = VERB_ENDPOINT_OPTIONAL, .run = verb_endpoints);

/* Checks one endpoint; appends its result object. Returns true when valid. */
static bool check_one(knockctl *c, const char *name, json_t *results)
{
        knock_config_errors errs = {0};
        knock_config *cfg = NULL;
        json_t *o = json_object(), *list = json_array();
        bool valid;
        int r;

        r = config_load(name, &cfg, &errs);
        valid = r >= 0 && errs.n == 0;
        for (size_t i = 0; i < errs.n; i++) {
                if (!c->json)
                        fprintf(stderr, "%s\n", errs.msgs[i]);
                json_array_append_new(list, json_string_lossy(errs.msgs[i], strlen(errs.msgs[i])));
        }
        if (r < 0 && errs.n == 0) {
                /* Not described by the loader: say what failed at least. */
                _cleanup_free_ char *msg = NULL;

                if (asprintf(&msg, "%s/endpoints/%s.conf: %s", knock_config_dir(), name,
                            strerror(-r)) < 0)
                        msg = NULL;
                if (msg && !c->json)
                        fprintf(stderr, "%s\n", msg);
                if (msg)
                        json_array_append_new(list, json_string(msg));
        }
        if (valid && !c->json)
                printf("%s: ok\n", name);
        json_object_set_new(o, "endpoint", json_string(name));
        json_object_set_new(o, "ok", json_boolean(valid));
        json_object_set_new(o, "errors", list);
        json_array_append_new(results, o);
        config_errors_clear(&errs);
        config_free(cfg);
        return valid;
}

static int verb_check_config(knockctl *c, int argc, char **argv)
{
        char **names = NULL;
        size_t n = 0;
        json_t *results;
        bool all_ok = true;
        int o, r = 0;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (optind < argc) {
                ctl_error("check-config takes no arguments (use -e NAME for one endpoint)");
                return KNOCKCTL_USAGE;
        }
        results = json_array();
        if (!results)
                return -ENOMEM;

        if (c->endpoint)
                all_ok = check_one(c, c->endpoint, results);
        else {
                r = config_list_endpoints(&names, &n);
                if (r < 0) {
                        json_decref(results);
                        ctl_error("cannot list endpoints in %s/endpoints: %s", knock_config_dir(),
                                strerror(-r));
                        return KNOCKCTL_FAILED;
                }
                if (n == 0) {
                        json_decref(results);
                        ctl_error("no endpoint configured in %s/endpoints", knock_config_dir());
                        return KNOCKCTL_FAILED;
                }
                for (size_t i = 0; i < n; i++)
                        all_ok = check_one(c, names[i], results) && all_ok;
                strv_free(names, n);
        }
        if (c->json)
                /* One endpoint asked by name: one object; all of them: an array. */
                r = print_json(c->endpoint ? json_array_get(results, 0) : results);
        json_decref(results);
        if (r < 0)
                return r;
        return all_ok ? 0 : KNOCKCTL_FAILED;
}

KNOCKCTL_VERB(check_config, .name = "check-config", .synopsis = "",
        .help = "Validate the configuration (every endpoint without -e)", .section = SECTION_READ,
        .flags = VERB_ENDPOINT_OPTIONAL | VERB_KEEPS_ROOT, .run = verb_check_config);
