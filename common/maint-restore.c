/* SPDX-License-Identifier: MIT */
/*
 * maint-restore — restoring an endpoint from a backup (see maint.h for the
 * promises): check the backup, make sure nothing uses the live file, copy,
 * keep what was there, swap the copy in with one rename, audit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maint-internal.h"

void maint_restore_result_clear(maint_restore_result *r)
{
        free(r->previous);
        free(r->restored);
        *r = (maint_restore_result){0};
}

static int schema_version_of(sqlite3 *db, int *ret)
{
        _cleanup_(sqlite_stmt_finalizep) sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(
                db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1, &st, NULL);
        if (rc != SQLITE_OK) {
                *ret = 0; /* no schema_migrations: not a knock database */
                return 0;
        }
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_errno(rc);
        *ret = sqlite3_column_int(st, 0);
        return 0;
}

/* Copies the backup into a new file at tmp (whole, in one step). */
static int restore_copy(sqlite3 *src, const char *tmp, char *msg, size_t msglen)
{
        sqlite3 *dst = NULL;
        sqlite3_backup *b;
        int rc;

        rc = maint_open_private_tmp(tmp, &dst);
        if (rc == SQLITE_OK) {
                b = sqlite3_backup_init(dst, "main", src, "main");
                if (!b)
                        rc = sqlite3_errcode(dst);
                else {
                        int step = sqlite3_backup_step(b, -1);

                        rc = sqlite3_backup_finish(b);
                        if (step != SQLITE_DONE && rc == SQLITE_OK)
                                rc = step;
                }
        }
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                snprintf(msg, msglen, "copying the backup to %s: %s", tmp,
                        dst ? sqlite3_errmsg(dst) : "out of memory");
        if (sqlite3_close_v2(dst) != SQLITE_OK && rc == SQLITE_OK)
                rc = SQLITE_IOERR;
        return store_errno(rc);
}

static int restore_audit(
        const char *db_path, const char *actor, const char *backup, maint_restore_result *ret)
{
        _cleanup_(store_closep) knock_store *s = NULL;
        _cleanup_stmt_ db_stmt *st = NULL;
        int64_t deliveries = 0;
        json_t *f, *c;
        int r;

        /* STORE_CREATE: an older backup is migrated to this build's schema now. */
        r = store_open(db_path, STORE_CREATE, &s);
        if (r < 0)
                return r;
        r = store_prepare(
                s, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries)", &st);
        if (r < 0)
                return r;
        if (stmt_step(st) > 0) {
                ret->events = stmt_col_i64(st, 0);
                deliveries = stmt_col_i64(st, 1);
        }
        /* The copy's daemons rows describe the processes that ran when it
         * was taken; none of them runs now. Marked stopped (their OOM
         * counters kept) so `status` and /readyz never show them alive. */
        r = store_exec(s, "UPDATE daemons SET pid=NULL, stopped_at=coalesce(stopped_at,"
                          " heartbeat_at, started_at), status='restored from a backup'"
                          " WHERE stopped_at IS NULL OR pid IS NOT NULL");
        if (r < 0)
                return r;
        f = json_pack("{s:s, s:s?}", "backup", backup, "previous", ret->previous);
        c = json_pack("{s:I, s:I}", "events", (json_int_t)ret->events, "deliveries",
                (json_int_t)deliveries);
        return maint_audit_record(s, actor, "restore", f, c, "last_restore_at", now_ms(), NULL, NULL);
}

int maint_restore(
        const char *name, const char *backup, const char *actor, maint_restore_result *ret)
{
        _cleanup_free_ char *db = NULL, *wal = NULL, *shm = NULL, *tmp = NULL, *dir = NULL;
        _cleanup_free_ char *tmpdir = NULL;
        _cleanup_free_ char *check = NULL, *prev = NULL, *prev_wal = NULL;
        _cleanup_(store_closep) knock_store *live = NULL;
        sqlite3 *src = NULL;
        char stamp[20];
        struct stat stb;
        int r, version = 0;

        *ret = (maint_restore_result){0};
        db = config_db_path(name);
        if (!db || asprintf(&wal, "%s-wal", db) < 0 || asprintf(&shm, "%s-shm", db) < 0 ||
                !(dir = maint_dir_of(db)))
                return -ENOMEM;

        /* 1. The backup must be sound and not newer than this build. */
        r = maint_integrity_check(backup, &check);
        if (r != 0) {
                snprintf(ret->message, sizeof(ret->message), "%s: %s", backup,
                        r == MAINT_E_CORRUPT ? (check ? check : "integrity_check failed")
                                             : strerror(-r));
                return r;
        }
        r = maint_open_readonly(backup, &src);
        if (r >= 0)
                r = schema_version_of(src, &version);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message), "%s: %s", backup, strerror(-r));
                goto out;
        }
        if (version == 0) {
                snprintf(ret->message, sizeof(ret->message), "%s: not a knock database", backup);
                r = -EBADMSG;
                goto out;
        }
        if (version > STORE_SCHEMA_VERSION) {
                snprintf(ret->message, sizeof(ret->message),
                        "%s: schema version %d is newer than this build (%d)", backup, version,
                        STORE_SCHEMA_VERSION);
                r = MAINT_E_NEWER;
                goto out;
        }

        /* 2. Nobody may be using the live file: a daemon holding it open
         * would go on writing into the file we move aside. */
        if (stat(db, &stb) >= 0 && store_open(db, 0, &live) < 0)
                live = NULL; /* a damaged live database is what restores are for */
        r = maint_endpoint_running(
                name, live, &ret->running_pid, ret->running_daemon, sizeof(ret->running_daemon));
        if (r != 0) {
                snprintf(ret->message, sizeof(ret->message),
                        "knock-%s of endpoint %s is running (pid %d); stop the endpoint first: "
                        "systemctl stop knock@%s",
                        ret->running_daemon, name, (int)ret->running_pid, name);
                goto out;
        }
        /* Fold the live WAL into the file we keep, so the kept copy is whole;
         * closing the last connection removes -wal and -shm. */
        if (live) {
                (void)store_exec(live, "PRAGMA wal_checkpoint(TRUNCATE)");
                live = store_close(live);
        }

        /* 3. The copy, complete and durable under a temporary name in a
         * directory of our own (private_tmp: nothing planted is followed). */
        r = maint_private_tmp(dir, "restore", "copy.db", &tmpdir, &tmp);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message),
                        "cannot create a temporary file in %s: %s", dir, strerror(-r));
                goto out;
        }
        r = restore_copy(src, tmp, ret->message, sizeof(ret->message));
        if (r >= 0)
                r = maint_fsync_path(tmp, false);
        if (r < 0) {
                if (!ret->message[0])
                        snprintf(ret->message, sizeof(ret->message), "%s: %s", tmp, strerror(-r));
                goto out;
        }

        /* 4. Keep what was there, then swap the copy in with one rename. A
         * name already taken (two restores in one second) moves to the next
         * free second, as backup names do. */
        if (lstat(db, &stb) >= 0) {
                int64_t at = now_ms();

                r = -EEXIST;
                for (int i = 0; i < MAINT_NAME_TRIES && r == -EEXIST; i++) {
                        prev = mfree(prev);
                        maint_format_stamp(at + (int64_t)i * 1000, stamp);
                        if (asprintf(&prev, "%s.pre-restore-%s", db, stamp) < 0) {
                                prev = NULL;
                                r = -ENOMEM;
                                goto out;
                        }
                        r = maint_rename_noreplace(db, prev);
                }
                if (r < 0) {
                        snprintf(ret->message, sizeof(ret->message), "cannot keep %s as %s: %s", db,
                                prev, strerror(-r));
                        goto out;
                }
                if (asprintf(&prev_wal, "%s-wal", prev) < 0) {
                        prev_wal = NULL;
                        r = -ENOMEM;
                        goto out;
                }
                ret->previous = TAKE_PTR(prev);
        }
        /* A WAL that could not be checkpointed belongs to the kept file;
         * left here it would be replayed into the restored one. */
        if (lstat(wal, &stb) >= 0) {
                if (ret->previous)
                        (void)rename(wal, prev_wal);
                else
                        (void)unlink(wal);
        }
        (void)unlink(shm);
        if (rename(tmp, db) < 0) {
                r = -errno;
                snprintf(ret->message, sizeof(ret->message), "rename %s → %s: %s", tmp, db,
                        strerror(-r));
                goto out;
        }
        (void)maint_fsync_path(dir, true);
        ret->restored = strdup(db);

        /* 5. The audit row lives in the restored database: that is where the
         * operator looks next. */
        r = restore_audit(db, actor, backup, ret);
        if (r < 0)
                snprintf(ret->message, sizeof(ret->message),
                        "restored, but writing the audit row failed: %s", strerror(-r));
out:
        maint_private_tmp_remove(tmpdir, tmp);
        sqlite3_close_v2(src);
        return r;
}
