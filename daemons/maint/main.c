/* SPDX-License-Identifier: MIT */
/*
 * knock-maint — prune, backup, retention and checkpoint, run from timers.
 *
 *   knock-maint prune|backup|retention|checkpoint --endpoint NAME | --all
 *
 * Promises:
 *  - a oneshot, not a notify daemon: it does its work for each endpoint in
 *    turn and exits 0 when every endpoint succeeded, 1 when any failed (the
 *    others are still done), 2 on a usage error;
 *  - an endpoint without a database yet is skipped, not a failure: a timer
 *    may fire before the endpoint took its first webhook;
 *  - every run that deletes leaves an audit row in the endpoint's database
 *    (prune: always, also when nothing was deleted; retention: always);
 *  - results reach the journal once per endpoint with a MESSAGE_ID (prune
 *    done, backup done, backup failed) and, when the node_exporter textfile
 *    directory exists ($KNOCK_TEXTFILE_DIR, default
 *    /var/lib/prometheus/node-exporter), knock_maint.prom is rewritten for
 *    every endpoint;
 *  - while a backup runs it sends EXTEND_TIMEOUT_USEC= so a large copy is
 *    not killed by the unit's start timeout.
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "catalog-ids.h"
#include "config.h"
#include "knock-build.h"
#include "log.h"
#include "maint.h"
#include "notify.h"
#include "store.h"
#include "textfile.h"
#include "util.h"

#define ACTOR "knock-maint"
#define TEXTFILE_DIR_DEFAULT "/var/lib/prometheus/node-exporter"
#define EXTEND_EVERY_US (10ULL * 1000 * 1000)
#define EXTEND_BY_US (60ULL * 1000 * 1000)

typedef enum verb {
        VERB_PRUNE,
        VERB_BACKUP,
        VERB_RETENTION,
        VERB_CHECKPOINT,
} verb;

static const char *const verb_names[] = {"prune", "backup", "retention", "checkpoint"};

static verb arg_verb;
static const char *arg_endpoint;
static bool arg_all;

static void help(void)
{
        printf("Usage: knock-maint COMMAND --endpoint NAME | --all\n"
               "\n"
               "Keeps knock endpoint databases healthy; run by knock-prune.timer,\n"
               "knock-backup.timer and knock-retention.timer.\n"
               "\n"
               "Commands:\n"
               "  prune       delete what [retention] no longer keeps, in short batches\n"
               "  backup      online backup, checked and renamed into backups/NAME/\n"
               "  retention   keep [retention] backups files, bound the audit trail,\n"
               "              checkpoint the WAL, report database and WAL size\n"
               "  checkpoint  WAL checkpoint (TRUNCATE) and PRAGMA optimize\n"
               "\n"
               "Options:\n"
               "  -e, --endpoint=NAME  one endpoint\n"
               "  -a, --all            every configured endpoint\n"
               "  -h, --help           show this help\n"
               "      --version        show the version\n"
               "\n"
               "Exit status: 0 success, 1 failure, 2 usage error. See knock-maint(8).\n");
}

/* Returns 0 to go on, 1 to exit 0, or 2 (usage). */
static int parse_argv(int argc, char **argv)
{
        enum { OPT_VERSION = 0x100 };
        static const struct option options[] = {
                {"endpoint", required_argument, NULL, 'e'},
                {"all", no_argument, NULL, 'a'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, OPT_VERSION},
                {0},
        };
        const char *cmd = NULL;
        int o;

        while ((o = getopt_long(argc, argv, "e:ah", options, NULL)) >= 0)
                switch (o) {
                case 'e':
                        arg_endpoint = optarg;
                        break;
                case 'a':
                        arg_all = true;
                        break;
                case 'h':
                        help();
                        return 1;
                case OPT_VERSION:
                        printf("knock-maint %s\n", KNOCK_VERSION);
                        return 1;
                default:
                        return 2;
                }
        if (argc - optind != 1) {
                fprintf(stderr, "knock-maint: expected one command: prune, backup, retention or "
                                "checkpoint (see --help)\n");
                return 2;
        }
        cmd = argv[optind];
        for (size_t i = 0; i < ELEMENTSOF(verb_names); i++)
                if (streq(cmd, verb_names[i])) {
                        arg_verb = (verb)i;
                        goto found;
                }
        fprintf(stderr, "knock-maint: unknown command '%s' (see --help)\n", cmd);
        return 2;
found:
        if (!!arg_endpoint == arg_all) {
                fprintf(stderr, "knock-maint: give either --endpoint NAME or --all\n");
                return 2;
        }
        if (arg_endpoint && !endpoint_name_valid(arg_endpoint)) {
                fprintf(stderr, "knock-maint: invalid endpoint name '%s'\n", arg_endpoint);
                return 2;
        }
        return 0;
}

static void u64_text(uint64_t v, char buf[static 24])
{
        snprintf(buf, 24, "%" PRIu64, v);
}

static int run_prune(const char *name, knock_config *cfg, knock_store *s)
{
        _cleanup_free_ char *counts = NULL;
        maint_prune_spec spec;
        maint_prune_counts c = {0};
        char ev[24], dl[24], orph[24], att[24], longest[24];
        int r, k;

        maint_prune_spec_from_config(cfg, now_ms(), &spec);
        r = maint_prune(s, &spec, &c);
        /* The audit row is written whatever happened: a failed prune says
         * what it committed before it failed. */
        k = maint_prune_record(s, ACTOR, &spec, &c, r);
        if (r < 0)
                return log_error_errno(r,
                        "prune failed after deleting %" PRIu64 " events and %" PRIu64
                        " orphan deliveries: %m",
                        c.events, c.orphans);
        if (k < 0)
                return log_error_errno(k, "prune done, but writing its audit row failed: %m");

        counts = maint_prune_counts_json(&c);
        u64_text(c.events, ev);
        u64_text(c.deliveries, dl);
        u64_text(c.orphans, orph);
        u64_text(c.attempts + c.hooks + c.hook_attempts, att);
        u64_text(c.longest_batch_us / 1000, longest);
        log_struct(LOG_INFO, MSGID_PRUNE_DONE,
                LOG_FIELDS(LF("KNOCK_PRUNED_EVENTS", ev), LF("KNOCK_PRUNED_DELIVERIES", dl),
                        LF("KNOCK_PRUNED_ORPHANS", orph), LF("KNOCK_PRUNED_OTHER", att),
                        LF("KNOCK_LONGEST_BATCH_MS", longest), LF("KNOCK_PRUNE_COUNTS", counts)),
                "pruned %" PRIu64 " events (%" PRIu64 " handled, %" PRIu64 " ignored, %" PRIu64
                " dead), %" PRIu64 " deliveries, %" PRIu64 " orphan deliveries in %" PRIu64
                " batches (longest %" PRIu64 " ms)",
                c.events, c.by_status[maint_prunable_status("handled")],
                c.by_status[maint_prunable_status("ignored")],
                c.by_status[maint_prunable_status("dead")], c.deliveries, c.orphans, c.batches,
                c.longest_batch_us / 1000);
        printf("%s: pruned %s\n", name, counts ? counts : "");
        return 0;
}

typedef struct backup_progress {
        uint64_t last_extend_us;
} backup_progress;

static void on_backup_progress(void *userdata, int remaining, int total)
{
        backup_progress *p = userdata;
        uint64_t now = mono_us();

        /* Keep systemd's start timeout ahead of us while pages remain. */
        if (now - p->last_extend_us >= EXTEND_EVERY_US) {
                notify_extend_timeout(EXTEND_BY_US);
                notify_status("backup: %d of %d pages copied", total - remaining, total);
                p->last_extend_us = now;
        }
}

static int run_backup(const char *name, knock_store *s)
{
        maint_backup_result b = {0};
        backup_progress p = {.last_extend_us = mono_us()};
        int r;

        notify_extend_timeout(EXTEND_BY_US);
        r = maint_backup(s, name, NULL, on_backup_progress, &p, &b);
        if (r != 0) {
                log_backup(r, NULL, 0, 0, ACTOR, b.message);
                maint_backup_result_clear(&b);
                return r < 0 ? r : -EBADMSG;
        }
        r = maint_backup_record(s, ACTOR, &b);
        if (r < 0) {
                log_struct_errno(LOG_ERR, r, MSGID_BACKUP_FAILED,
                        LOG_FIELDS(LF("KNOCK_BACKUP_PATH", b.path),
                                LF("KNOCK_ERROR", store_errmsg(s))),
                        "backup %s written, but recording it failed: %m", b.path);
                maint_backup_result_clear(&b);
                return r;
        }
        log_backup(0, b.path, b.bytes, b.duration_ms, ACTOR, NULL);
        printf("%s: backup %s %" PRIu64 " bytes\n", name, b.path, b.bytes);
        maint_backup_result_clear(&b);
        return 0;
}

static int report_sizes(const char *name, knock_store *s, const char *what)
{
        uint64_t db = 0, wal = 0;
        char dbs[24], wals[24];

        (void)maint_db_sizes(s->path, &db, &wal);
        u64_text(db, dbs);
        u64_text(wal, wals);
        log_struct(LOG_INFO, NULL,
                LOG_FIELDS(LF("KNOCK_DB_BYTES", dbs), LF("KNOCK_WAL_BYTES", wals)),
                "%s: database %" PRIu64 " bytes, WAL %" PRIu64 " bytes", what, db, wal);
        printf("%s: database %" PRIu64 " bytes, wal %" PRIu64 " bytes\n", name, db, wal);
        return 0;
}

static int run_retention(const char *name, knock_config *cfg, knock_store *s)
{
        _cleanup_free_ char *filters = NULL, *counts = NULL;
        uint64_t backups = 0, audit = 0;
        int64_t now = now_ms();
        bool busy = false;
        json_t *f, *c;
        int r;

        r = maint_retain_backups(name, cfg->keep_backups, &backups);
        if (r < 0)
                return log_error_errno(r, "cannot remove old backups: %m");
        if (cfg->keep_audit_ms != UINT64_MAX) {
                int64_t before =
                        cfg->keep_audit_ms > (uint64_t)now ? 0 : now - (int64_t)cfg->keep_audit_ms;

                r = maint_prune_audit(s, before, &audit);
                if (r < 0)
                        return log_error_errno(r, "cannot prune the audit trail: %m");
        }

        /* The audit row of this run is written after the audit prune, so it
         * is never the one removed. */
        f = json_pack("{s:I, s:o?}", "keep_backups", (json_int_t)cfg->keep_backups, "keep_audit_ms",
                cfg->keep_audit_ms == UINT64_MAX ? NULL
                                                 : json_integer((json_int_t)cfg->keep_audit_ms));
        c = json_pack("{s:I, s:I}", "backups_deleted", (json_int_t)backups, "audit_deleted",
                (json_int_t)audit);
        filters = f ? json_dumps(f, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        counts = c ? json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(f);
        json_decref(c);
        if (!filters || !counts)
                return log_error_errno(-ENOMEM, "out of memory");
        r = store_audit(s, ACTOR, "retention", filters, counts, NULL);
        if (r < 0)
                return log_error_errno(r, "cannot write the audit row: %s", store_errmsg(s));

        /* Checkpoint last: everything above went into the WAL. */
        r = maint_checkpoint(s, &busy);
        if (r < 0)
                return log_error_errno(r, "checkpoint failed: %s", store_errmsg(s));
        log_info("retention: %" PRIu64 " old backups removed (keeping %" PRIu64 "), %" PRIu64
                 " audit rows removed%s",
                backups, cfg->keep_backups, audit,
                busy ? "; readers kept the checkpoint from truncating the WAL" : "");
        printf("%s: retention backups_deleted=%" PRIu64 " audit_deleted=%" PRIu64 "\n", name,
                backups, audit);
        return report_sizes(name, s, "retention");
}

static int run_checkpoint(const char *name, knock_store *s)
{
        bool busy = false;
        int r;

        r = maint_checkpoint(s, &busy);
        if (r < 0)
                return log_error_errno(r, "checkpoint failed: %s", store_errmsg(s));
        r = store_exec(s, "PRAGMA optimize");
        if (r < 0)
                return log_error_errno(r, "PRAGMA optimize failed: %s", store_errmsg(s));
        if (busy)
                log_notice("checkpoint: readers kept the WAL from being truncated");
        return report_sizes(name, s, "checkpoint");
}

static int run_endpoint(const char *name)
{
        _cleanup_(config_freep) knock_config *cfg = NULL;
        _cleanup_(store_closep) knock_store *s = NULL;
        _cleanup_free_ char *db = NULL;
        knock_config_errors errs = {0};
        struct stat stb;
        int r;

        log_set_endpoint(name);
        notify_status("%s: %s", verb_names[arg_verb], name);
        r = config_load(name, &cfg, &errs);
        if (r < 0) {
                for (size_t i = 0; i < errs.n; i++)
                        log_error("%s", errs.msgs[i]);
                if (errs.n == 0)
                        log_error_errno(r, "cannot load the configuration: %m");
                config_errors_clear(&errs);
                return r;
        }
        config_errors_clear(&errs);

        db = config_store_location(cfg);
        if (!db)
                return log_error_errno(-ENOMEM, "out of memory");
        /* PostgreSQL's backups and WAL are PostgreSQL's. */
        if (store_location_is_postgresql(db) && (arg_verb == VERB_BACKUP || arg_verb == VERB_CHECKPOINT)) {
                log_info("endpoint %s is stored in PostgreSQL: %s is PostgreSQL's own "
                         "(pg_dump, pg_basebackup); nothing to do",
                         name, verb_names[arg_verb]);
                return 0;
        }
        if (!store_location_is_postgresql(db) && stat(db, &stb) < 0) {
                if (errno == ENOENT) {
                        log_info("no database at %s yet; nothing to do", db);
                        return 0;
                }
                return log_error_errno(-errno, "%s: %m", db);
        }
        r = store_open(db, 0, &s);
        if (r == -ENOMEDIUM)
                return log_error_errno(r,
                        "%s: the schema is older than this build; it is upgraded "
                        "when the endpoint starts",
                        db);
        if (r < 0)
                return log_error_errno(r, "%s: cannot open the database: %m", db);

        switch (arg_verb) {
        case VERB_PRUNE:
                return run_prune(name, cfg, s);
        case VERB_BACKUP:
                return run_backup(name, s);
        case VERB_RETENTION:
                return run_retention(name, cfg, s);
        case VERB_CHECKPOINT:
                return run_checkpoint(name, s);
        }
        return -EINVAL;
}

static void write_textfile(void)
{
        const char *dir = getenv("KNOCK_TEXTFILE_DIR");
        struct stat stb;
        int r;

        if (!dir || !*dir)
                dir = TEXTFILE_DIR_DEFAULT;
        /* Only when node_exporter's textfile directory exists: we never create it. */
        if (stat(dir, &stb) < 0 || !S_ISDIR(stb.st_mode))
                return;
        log_set_endpoint(NULL);
        r = maint_write_textfile(dir);
        if (r < 0)
                log_warning_errno(r, "cannot write %s/knock_maint.prom: %m", dir);
}

int main(int argc, char **argv)
{
        char **names = NULL;
        size_t n = 0, failed = 0;
        int r;

        log_setup("maint", NULL);
        r = parse_argv(argc, argv);
        if (r != 0)
                return r == 1 ? 0 : 2;

        if (arg_all) {
                r = config_list_endpoints(&names, &n);
                if (r < 0) {
                        log_error_errno(
                                r, "cannot list endpoints in %s/endpoints: %m", knock_config_dir());
                        return 1;
                }
                if (n == 0)
                        log_info("no endpoint configured in %s/endpoints", knock_config_dir());
                for (size_t i = 0; i < n; i++)
                        if (run_endpoint(names[i]) < 0)
                                failed++;
                strv_free(names, n);
        } else if (run_endpoint(arg_endpoint) < 0)
                failed++;

        write_textfile();
        return failed > 0 ? 1 : 0;
}
