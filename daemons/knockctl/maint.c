/* SPDX-License-Identifier: MIT */
/*
 * maint — the operator's maintenance verbs (contract §9, §10), over the same
 * common/maint*.c (maint.h) that knock-maint runs from its timers.
 *
 *   prune [--status S,…] [--older-than D] [--orphans] [--dry-run]
 *   backup [--to PATH]
 *   verify
 *   restore BACKUP
 *
 * Promises:
 *  - prune without --status/--orphans applies [retention] like the timer;
 *    --status and --orphans choose what goes, --older-than overrides the
 *    configured ages for what was chosen. Only final states (handled,
 *    ignored, dead) can be pruned; events with a pending completion hook
 *    never are;
 *  - prune, backup and restore write one audit row each (actor "user(uid)");
 *    prune writes it also when nothing was deleted. A --dry-run changes
 *    nothing, opens the database read-only and so writes no audit row: it
 *    only reports what a prune would delete now;
 *  - verify runs integrity_check on the live database and on the newest
 *    backup and exits 1 when either fails; a missing backup is reported, not
 *    a failure;
 *  - restore refuses while any daemon of the endpoint runs, checks the
 *    backup before touching anything and keeps the previous database.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "knockctl.h"
#include "log.h"
#include "maint.h"

/* ---- prune ----------------------------------------------------------------------------- */

static int parse_statuses(const char *arg, bool selected[_EVENT_STATUS_MAX])
{
        _cleanup_free_ char *copy = strdup(arg);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
                int i = maint_prunable_status(t);

                if (i < 0) {
                        ctl_error("--status: '%s' cannot be pruned; prunable are handled, ignored "
                                  "and dead (received, processing and failed events are still "
                                  "work: 'knockctl ignore' them first)",
                                t);
                        return KNOCKCTL_USAGE;
                }
                selected[i] = true;
        }
        return 0;
}

static int64_t cutoff_for(int64_t now, uint64_t keep_ms)
{
        if (keep_ms == UINT64_MAX)
                return -1;
        return keep_ms > (uint64_t)now ? 0 : now - (int64_t)keep_ms;
}

static uint64_t keep_of(const knock_config *cfg, const char *status)
{
        if (streq(status, "handled"))
                return cfg->keep_handled_ms;
        if (streq(status, "ignored"))
                return cfg->keep_ignored_ms;
        if (streq(status, "dead"))
                return cfg->keep_dead_ms;
        return cfg->keep_orphans_ms;
}

/* The spec from the options; reports and returns KNOCKCTL_* on problems. */
static int prune_spec(knockctl *c, const bool selected[_EVENT_STATUS_MAX], bool any_status,
        bool orphans, int64_t older_than, maint_prune_spec *spec)
{
        const knock_config *cfg = NULL;

        maint_prune_spec_init(spec);
        if (!any_status && !orphans) {
                cfg = ctl_config(c);
                if (!cfg) {
                        ctl_error("the configuration of %s does not load (see 'knockctl "
                                  "check-config'); name what to prune with --status/--orphans "
                                  "and --older-than",
                                c->endpoint);
                        return KNOCKCTL_FAILED;
                }
                maint_prune_spec_from_config(cfg, c->now, spec);
                if (older_than >= 0) {
                        for (size_t i = 0; i < _EVENT_STATUS_MAX; i++)
                                if (spec->cutoff[i] >= 0)
                                        spec->cutoff[i] = c->now - older_than;
                        if (spec->orphans_cutoff >= 0)
                                spec->orphans_cutoff = c->now - older_than;
                }
                return 0;
        }
        if (older_than < 0 && !(cfg = ctl_config(c))) {
                ctl_error("the configuration of %s does not load; give --older-than", c->endpoint);
                return KNOCKCTL_FAILED;
        }
        for (size_t i = 0; i < _EVENT_STATUS_MAX; i++) {
                if (!selected[i])
                        continue;
                spec->cutoff[i] = older_than >= 0
                                          ? c->now - older_than
                                          : cutoff_for(c->now, keep_of(cfg, event_status_names[i]));
                if (spec->cutoff[i] < 0) {
                        ctl_error("[retention] %s = never: give --older-than to prune %s events",
                                event_status_names[i], event_status_names[i]);
                        return KNOCKCTL_USAGE;
                }
        }
        if (orphans) {
                spec->orphans_cutoff = older_than >= 0 ? c->now - older_than
                                                       : cutoff_for(c->now, cfg->keep_orphans_ms);
                if (spec->orphans_cutoff < 0) {
                        ctl_error("[retention] orphans = never: give --older-than to prune "
                                  "orphan deliveries");
                        return KNOCKCTL_USAGE;
                }
        }
        return 0;
}

static int prune_print(
        knockctl *c, const maint_prune_spec *spec, const maint_prune_counts *n, bool dry_run)
{
        _cleanup_free_ char *filters = maint_prune_filters_json(spec, dry_run);
        _cleanup_free_ char *counts = maint_prune_counts_json(n);
        int r;

        if (!filters || !counts)
                return -ENOMEM;
        if (c->json) {
                json_t *doc = json_pack("{s:s, s:s, s:b, s:o, s:o}", "action", "prune", "endpoint",
                        c->endpoint, "dry_run", dry_run, "filters", json_loads(filters, 0, NULL),
                        "counts", json_loads(counts, 0, NULL));

                if (!doc)
                        return -ENOMEM;
                r = print_json(doc);
                json_decref(doc);
                return r;
        }
        if (maint_prune_spec_empty(spec)) {
                printf("nothing to prune: [retention] keeps everything\n");
                return 0;
        }
        printf("%s %" PRIu64 " event%s (handled %" PRIu64 ", ignored %" PRIu64 ", dead %" PRIu64
               "), %" PRIu64 " deliveries, %" PRIu64 " orphan deliveries, %" PRIu64
               " attempts, %" PRIu64 " hooks, %" PRIu64 " hook attempts",
                dry_run ? "would prune" : "pruned", n->events, n->events == 1 ? "" : "s",
                n->by_status[maint_prunable_status("handled")],
                n->by_status[maint_prunable_status("ignored")],
                n->by_status[maint_prunable_status("dead")], n->deliveries, n->orphans, n->attempts,
                n->hooks, n->hook_attempts);
        if (!dry_run)
                printf(" in %" PRIu64 " batch%s (longest held the lock %.1f ms)", n->batches,
                        n->batches == 1 ? "" : "es", (double)n->longest_batch_us / 1000.0);
        putchar('\n');
        for (size_t i = 0; i < _EVENT_STATUS_MAX; i++)
                if (spec->cutoff[i] >= 0) {
                        char buf[64];

                        printf("  %s events finished before %s\n", event_status_names[i],
                                format_rfc3339(spec->cutoff[i], buf, sizeof(buf)));
                }
        if (spec->orphans_cutoff >= 0) {
                char buf[64];

                printf("  orphan deliveries received before %s\n",
                        format_rfc3339(spec->orphans_cutoff, buf, sizeof(buf)));
        }
        return 0;
}

static int verb_prune(knockctl *c, int argc, char **argv)
{
        enum { OPT_STATUS = 0x200, OPT_OLDER, OPT_ORPHANS, OPT_DRY };
        static const struct option options[] = {
                {"status", required_argument, NULL, OPT_STATUS},
                {"older-than", required_argument, NULL, OPT_OLDER},
                {"orphans", no_argument, NULL, OPT_ORPHANS},
                {"dry-run", no_argument, NULL, OPT_DRY},
                {0},
        };
        bool selected[_EVENT_STATUS_MAX] = {false};
        bool any_status = false, orphans = false, dry_run = false;
        int64_t older_than = -1;
        maint_prune_spec spec;
        maint_prune_counts n = {0};
        char actor[128];
        int o, r, k;

        while ((o = verb_getopt(c, argc, argv, "", options)) >= 0)
                switch (o) {
                case OPT_STATUS:
                        r = parse_statuses(optarg, selected);
                        if (r != 0)
                                return r;
                        any_status = true;
                        break;
                case OPT_OLDER: {
                        uint64_t ms;

                        if (parse_duration_ms(optarg, false, &ms) < 0 || ms > INT64_MAX) {
                                ctl_error("invalid --older-than '%s': expected a duration such as "
                                          "30d, 12h or 0",
                                        optarg);
                                return KNOCKCTL_USAGE;
                        }
                        older_than = (int64_t)ms;
                        break;
                }
                case OPT_ORPHANS:
                        orphans = true;
                        break;
                case OPT_DRY:
                        dry_run = true;
                        break;
                default:
                        return o;
                }
        if (optind < argc) {
                ctl_error("prune takes no operands (see 'knockctl prune --help')");
                return KNOCKCTL_USAGE;
        }
        r = prune_spec(c, selected, any_status, orphans, older_than, &spec);
        if (r != 0)
                return r;

        /* A dry run is no change: read-only, no audit row. */
        r = ctl_open_store(c, !dry_run);
        if (r != 0)
                return r;
        if (dry_run) {
                r = maint_prune_count(c->store, &spec, &n);
                if (r < 0) {
                        ctl_error("cannot count what would be pruned: %s", strerror(-r));
                        return KNOCKCTL_FAILED;
                }
                return prune_print(c, &spec, &n, true);
        }

        r = maint_prune(c->store, &spec, &n);
        ctl_actor(actor, sizeof(actor));
        k = maint_prune_record(c->store, actor, &spec, &n, r);
        if (r < 0) {
                ctl_error("prune failed after deleting %" PRIu64 " events and %" PRIu64
                          " orphan deliveries (recorded in the audit trail): %s",
                        n.events, n.orphans, strerror(-r));
                return KNOCKCTL_FAILED;
        }
        if (k < 0) {
                ctl_error("prune done, but writing its audit row failed: %s", strerror(-k));
                return KNOCKCTL_FAILED;
        }
        return prune_print(c, &spec, &n, false);
}

KNOCKCTL_VERB(prune, .name = "prune",
        .synopsis = "[--status S,...] [--older-than D] [--orphans] [--dry-run]",
        .help = "Delete old handled/ignored/dead events, orphans (audited)",
        .section = SECTION_MAINTENANCE, .run = verb_prune);

/* ---- backup -------------------------------------------------------------------------- */

static int verb_backup(knockctl *c, int argc, char **argv)
{
        enum { OPT_TO = 0x200 };
        static const struct option options[] = {
                {"to", required_argument, NULL, OPT_TO},
                {0},
        };
        const char *to = NULL;
        maint_backup_result b = {0};
        char actor[128];
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", options)) >= 0)
                switch (o) {
                case OPT_TO:
                        to = optarg;
                        break;
                default:
                        return o;
                }
        if (optind < argc) {
                ctl_error("backup takes no operands; use --to PATH");
                return KNOCKCTL_USAGE;
        }
        r = ctl_open_store(c, true);
        if (r != 0)
                return r;
        ctl_actor(actor, sizeof(actor));
        /* The same journal record as the timer's backups (knock(7) queries
         * it), besides what is printed here. */
        log_setup("knockctl", c->endpoint);
        log_set_journal(true);
        r = maint_backup(c->store, c->endpoint, to, NULL, NULL, &b);
        log_backup(r, b.path, b.bytes, b.duration_ms, actor, b.message);
        if (r != 0) {
                ctl_error("backup failed: %s", b.message);
                maint_backup_result_clear(&b);
                return KNOCKCTL_FAILED;
        }
        r = maint_backup_record(c->store, actor, &b);
        if (r < 0) {
                ctl_error("backup %s written, but recording it failed: %s", b.path, strerror(-r));
                maint_backup_result_clear(&b);
                return KNOCKCTL_FAILED;
        }
        if (c->json) {
                char at[64];
                json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i, s:I, s:s}", "action",
                        "backup", "endpoint", c->endpoint, "path", b.path, "at",
                        format_rfc3339(b.at, at, sizeof(at)), "bytes", (json_int_t)b.bytes, "pages",
                        b.pages, "duration_ms", (json_int_t)b.duration_ms, "integrity", "ok");

                r = doc ? print_json(doc) : -ENOMEM;
                json_decref(doc);
        } else
                printf("backup written to %s (%" PRIu64 " bytes, %" PRIu64
                       " ms, integrity_check ok)\n",
                        b.path, b.bytes, b.duration_ms);
        maint_backup_result_clear(&b);
        return r;
}

KNOCKCTL_VERB(backup, .name = "backup", .synopsis = "[--to PATH]",
        .help = "Online backup, integrity-checked, to backups/NAME/ or PATH",
        .section = SECTION_MAINTENANCE, .run = verb_backup);

/* ---- verify -------------------------------------------------------------------------- */

/* {"path", "integrity", "bytes"} of one file; *ok false when the check failed. */
static json_t *check_file(const char *path, bool *ok)
{
        _cleanup_free_ char *msg = NULL;
        struct stat stb;
        int r;

        r = maint_integrity_check(path, &msg);
        if (r != 0)
                *ok = false;
        return json_pack("{s:s, s:s, s:I}", "path", path, "integrity",
                r == 0 ? "ok"
                : msg  ? msg
                       : strerror(r < 0 ? -r : EBADMSG),
                "bytes", (json_int_t)(stat(path, &stb) >= 0 ? stb.st_size : 0));
}

static json_t *meta_time(knock_store *s, const char *key)
{
        _cleanup_free_ char *v = NULL;
        uint64_t ms;
        char buf[64];

        if (store_meta_get(s, key, &v) < 0 || !v || parse_u64_strict(v, &ms) < 0 || ms > INT64_MAX)
                return json_null();
        return json_string(format_rfc3339((int64_t)ms, buf, sizeof(buf)));
}

static void print_check(const char *title, json_t *o)
{
        printf("%-15s %s: %s (%" JSON_INTEGER_FORMAT " bytes)\n", title,
                json_string_value(json_object_get(o, "path")),
                json_string_value(json_object_get(o, "integrity")),
                json_integer_value(json_object_get(o, "bytes")));
}

/* A PostgreSQL endpoint: its pages and checksums are PostgreSQL's to check
 * (pg_amcheck); what knockctl can say is that the schema is there, current,
 * and every table reads. */
static int verify_postgresql(knockctl *c)
{
        static const char *const tables[] = {"events", "deliveries", "attempts", "hooks",
                "hook_attempts", "audit", "daemons", "meta", "pauses"};
        json_t *doc, *counts = json_object();
        int version = 0, r;
        bool ok;

        r = store_schema_version(c->store, &version);
        ok = r >= 0 && version == STORE_SCHEMA_VERSION;
        for (size_t i = 0; counts && i < ELEMENTSOF(tables); i++) {
                _cleanup_free_ char *sql = NULL;
                int64_t n = -1;

                if (asprintf(&sql, "SELECT count(*) FROM %s", tables[i]) < 0)
                        return -ENOMEM;
                if (store_query_i64(c->store, sql, &n) < 0) {
                        ctl_error("%s: %s", tables[i], store_errmsg(c->store));
                        ok = false;
                }
                json_object_set_new(counts, tables[i], json_integer(n));
        }
        doc = json_pack("{s:s, s:s, s:i, s:o, s:b}", "endpoint", c->endpoint, "engine",
                "postgresql", "schema_version", version, "rows", counts ? counts : json_null(),
                "ok", ok);
        if (!doc)
                return -ENOMEM;
        if (c->json)
                r = print_json(doc);
        else {
                printf("database        PostgreSQL schema knock_%s, version %d: %s\n", c->endpoint,
                        version, ok ? "every table reads" : "NOT OK (see above)");
                printf("integrity       PostgreSQL's own: pg_amcheck, data checksums "
                       "(knock(7), \"Growing past one machine\")\n");
                printf("backups         PostgreSQL's own: pg_dump --schema=knock_%s, "
                       "pg_basebackup\n", c->endpoint);
                r = 0;
        }
        json_decref(doc);
        return r < 0 ? r : ok ? 0 : KNOCKCTL_FAILED;
}

static int verb_verify(knockctl *c, int argc, char **argv)
{
        _cleanup_free_ char *db = NULL, *newest = NULL;
        json_t *doc = NULL, *live = NULL, *backup = NULL;
        uint64_t db_bytes = 0, wal_bytes = 0;
        bool ok = true;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (optind < argc) {
                ctl_error("verify takes no operands");
                return KNOCKCTL_USAGE;
        }
        r = ctl_open_store(c, false);
        if (r != 0)
                return r;
        if (!store_sqlite(c->store))
                return verify_postgresql(c);
        db = config_db_path(c->endpoint);
        if (!db)
                return -ENOMEM;
        (void)maint_db_sizes(db, &db_bytes, &wal_bytes);
        live = check_file(db, &ok);
        if (live)
                json_object_set_new(live, "wal_bytes", json_integer((json_int_t)wal_bytes));
        r = maint_newest_backup(c->endpoint, &newest);
        if (r >= 0)
                backup = check_file(newest, &ok);
        else if (r != -ENOENT) {
                ctl_error("cannot list the backups: %s", strerror(-r));
                ok = false;
        }
        doc = json_pack("{s:s, s:o, s:o, s:o, s:o, s:b}", "endpoint", c->endpoint, "database",
                live ? live : json_null(), "last_backup_at", meta_time(c->store, "last_backup_at"),
                "last_prune_at", meta_time(c->store, "last_prune_at"), "newest_backup",
                backup ? backup : json_null(), "ok", ok);
        if (!doc)
                return -ENOMEM;
        if (c->json)
                r = print_json(doc);
        else {
                json_t *lb = json_object_get(doc, "last_backup_at");
                json_t *lp = json_object_get(doc, "last_prune_at");

                if (live)
                        print_check("database", live);
                printf("%-15s %" PRIu64 " bytes\n", "wal", wal_bytes);
                printf("%-15s %s\n", "last backup",
                        json_is_string(lb) ? json_string_value(lb) : "never");
                if (backup)
                        print_check("newest backup", backup);
                else
                        printf("%-15s none in the backup directory (run 'knockctl backup')\n",
                                "newest backup");
                printf("%-15s %s\n", "last prune",
                        json_is_string(lp) ? json_string_value(lp) : "never");
                r = 0;
        }
        json_decref(doc);
        if (r < 0)
                return r;
        if (!ok) {
                ctl_error("verify: integrity_check failed (see above)");
                return KNOCKCTL_FAILED;
        }
        return 0;
}

KNOCKCTL_VERB(verify, .name = "verify", .synopsis = "",
        .help = "integrity_check of the database and newest backup, last backup",
        .section = SECTION_MAINTENANCE, .run = verb_verify);

/* ---- restore ------------------------------------------------------------------------- */

/* BACKUP as given, or a file name in the endpoint's backup directory. */
static char *resolve_backup(const char *endpoint, const char *arg)
{
        _cleanup_free_ char *dir = NULL;
        struct stat stb;
        char *p = NULL;

        if (stat(arg, &stb) >= 0 || strchr(arg, '/'))
                return strdup(arg);
        dir = config_backup_dir(endpoint);
        if (!dir || asprintf(&p, "%s/%s", dir, arg) < 0)
                return NULL;
        return p;
}

static int verb_restore(knockctl *c, int argc, char **argv)
{
        _cleanup_free_ char *backup = NULL;
        maint_restore_result res = {0};
        const knock_config *cfg;
        struct stat stb;
        char actor[128];
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (argc - optind != 1) {
                ctl_error("usage: knockctl restore BACKUP (a file, or its name in the backup "
                          "directory)");
                return KNOCKCTL_USAGE;
        }
        cfg = ctl_config(c);
        if (cfg && cfg->store_conninfo) {
                ctl_error("endpoint %s is stored in PostgreSQL (schema knock_%s): restore it with "
                          "PostgreSQL's tools (pg_restore of a pg_dump --schema=knock_%s, or the "
                          "cluster's base backup); knockctl restore writes SQLite files",
                        c->endpoint, c->endpoint, c->endpoint);
                return KNOCKCTL_FAILED;
        }
        backup = resolve_backup(c->endpoint, argv[optind]);
        if (!backup)
                return -ENOMEM;
        if (stat(backup, &stb) < 0) {
                ctl_error("%s: %s", backup, strerror(errno));
                return KNOCKCTL_FAILED;
        }
        if (access(backup, R_OK) < 0) {
                /* Root runs verbs as the state directory's owner (knockctl(1)). */
                ctl_error("%s: %s (knockctl works as the owner of %s: copy the backup into %s "
                          "or make it readable to that user)",
                        backup, strerror(errno), knock_state_dir(), knock_state_dir());
                return KNOCKCTL_FAILED;
        }
        ctl_actor(actor, sizeof(actor));
        r = maint_restore(c->endpoint, backup, actor, &res);
        if (r != 0) {
                ctl_error("restore refused%s: %s",
                        r == MAINT_E_RUNNING || r == MAINT_E_CORRUPT || r == MAINT_E_NEWER
                                ? ""
                                : " or failed",
                        res.message[0] ? res.message : strerror(r < 0 ? -r : EIO));
                maint_restore_result_clear(&res);
                return KNOCKCTL_FAILED;
        }
        if (c->json) {
                json_t *doc = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:I}", "action", "restore",
                        "endpoint", c->endpoint, "backup", backup, "previous", res.previous,
                        "database", res.restored, "events", (json_int_t)res.events);

                r = doc ? print_json(doc) : -ENOMEM;
                json_decref(doc);
        } else {
                printf("restored %s from %s (%" PRId64 " events)\n", res.restored, backup,
                        res.events);
                if (res.previous)
                        printf("the previous database was kept as %s\n", res.previous);
                printf("start the endpoint again: systemctl start knock@%s\n", c->endpoint);
        }
        maint_restore_result_clear(&res);
        return r;
}

KNOCKCTL_VERB(restore, .name = "restore", .synopsis = "BACKUP",
        .help = "Replace the database with a backup (endpoint stopped)",
        .section = SECTION_MAINTENANCE, .run = verb_restore);
