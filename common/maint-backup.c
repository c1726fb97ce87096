/* SPDX-License-Identifier: MIT */
/*
 * maint-backup — backups and their retention (see maint.h for the promises).
 *
 * Why the backup holds a read transaction: sqlite3_backup_step() restarts
 * from the first page whenever another connection changed the source between
 * two steps, so under a steady stream of webhooks an unprotected backup may
 * never finish. One read transaction across all steps pins one snapshot; in
 * WAL mode that never blocks a writer (the WAL only grows until we end it).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maint-internal.h"

#define BACKUP_STEP_PAGES 256
#define BACKUP_STEP_PAUSE_MS 2

void maint_backup_result_clear(maint_backup_result *r)
{
        free(r->path);
        *r = (maint_backup_result){0};
}

static bool backup_name_matches(const char *name, const char *file)
{
        size_t n = strlen(name);
        const char *p;

        if (strncmp(file, name, n) != 0 || file[n] != '-')
                return false;
        p = file + n + 1;
        /* YYYYmmddTHHMMSSZ.db */
        for (int i = 0; i < 16; i++) {
                char ch = p[i];

                if (i == 8 ? ch != 'T' : i == 15 ? ch != 'Z' : !(ch >= '0' && ch <= '9'))
                        return false;
        }
        return streq(p + 16, ".db");
}

/* Where the backup goes: the directory, and the file when dest names one
 * (which must not exist: -EEXIST). */
static int backup_target(const char *name, const char *dest, char **ret_dir, char **ret_file)
{
        _cleanup_free_ char *dir = NULL;
        struct stat stb;
        int r;

        if (dest && !(stat(dest, &stb) >= 0 && S_ISDIR(stb.st_mode))) {
                if (lstat(dest, &stb) >= 0)
                        return -EEXIST;
                *ret_file = strdup(dest);
                *ret_dir = maint_dir_of(dest);
                return *ret_file && *ret_dir ? 0 : -ENOMEM;
        }
        if (dest)
                dir = strdup(dest);
        else {
                dir = config_backup_dir(name);
                if (dir) {
                        r = maint_mkdir_p(dir, 0770);
                        if (r < 0)
                                return r;
                }
        }
        if (!dir)
                return -ENOMEM;
        *ret_dir = TAKE_PTR(dir);
        *ret_file = NULL;
        return 0;
}

/*
 * Gives the checked copy its name: the file asked for, or
 * NAME-YYYYmmddTHHMMSSZ.db of the snapshot's second. Two backups in the same
 * second (the timer's and an operator's) must both survive, so a name that
 * is taken moves to the next free second; the rename never replaces a file.
 */
static int backup_place(const char *tmp, const char *dir, const char *name, const char *file,
        int64_t at, char **ret)
{
        int r = -EEXIST;

        if (file) {
                r = maint_rename_noreplace(tmp, file);
                if (r >= 0 && !(*ret = strdup(file)))
                        return -ENOMEM;
                return r;
        }
        for (int i = 0; i < MAINT_NAME_TRIES && r == -EEXIST; i++) {
                _cleanup_free_ char *p = NULL;
                char stamp[20];

                maint_format_stamp(at + (int64_t)i * 1000, stamp);
                if (asprintf(&p, "%s/%s-%s.db", dir, name, stamp) < 0)
                        return -ENOMEM;
                r = maint_rename_noreplace(tmp, p);
                if (r >= 0)
                        *ret = TAKE_PTR(p);
        }
        return r;
}

/* Copies src (whole, one snapshot) into a new file at tmp. */
static int backup_copy(sqlite3 *src, const char *tmp, maint_progress_fn progress, void *userdata,
        int *ret_pages, char *msg, size_t msglen)
{
        sqlite3 *dst = NULL;
        sqlite3_backup *b;
        int rc, r;

        rc = maint_open_private_tmp(tmp, &dst);
        if (rc != SQLITE_OK) {
                snprintf(msg, msglen, "cannot open %s: %s", tmp, sqlite3_errmsg(dst));
                sqlite3_close_v2(dst);
                return store_errno(rc);
        }
        b = sqlite3_backup_init(dst, "main", src, "main");
        if (!b) {
                snprintf(msg, msglen, "backup_init: %s", sqlite3_errmsg(dst));
                r = store_errno(sqlite3_errcode(dst));
                sqlite3_close_v2(dst);
                return r < 0 ? r : -EIO;
        }
        for (;;) {
                rc = sqlite3_backup_step(b, BACKUP_STEP_PAGES);
                if (progress)
                        progress(
                                userdata, sqlite3_backup_remaining(b), sqlite3_backup_pagecount(b));
                if (rc == SQLITE_DONE)
                        break;
                if (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
                        /* Steps are small so the copy yields the disk to the
                         * writers now and then. */
                        sqlite3_sleep(rc == SQLITE_OK ? BACKUP_STEP_PAUSE_MS : 50);
                        continue;
                }
                break;
        }
        *ret_pages = sqlite3_backup_pagecount(b);
        rc = sqlite3_backup_finish(b);
        if (rc != SQLITE_OK) {
                snprintf(msg, msglen, "backup_step: %s", sqlite3_errmsg(dst));
                sqlite3_close_v2(dst);
                return store_errno(rc);
        }
        /* The copy inherits WAL mode from the source's header. A backup file
         * must be one self-contained file: switch it to a rollback journal
         * (which also folds its WAL back into it). */
        rc = sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                snprintf(msg, msglen, "journal_mode=DELETE on the copy: %s", sqlite3_errmsg(dst));
                sqlite3_close_v2(dst);
                return store_errno(rc);
        }
        rc = sqlite3_close_v2(dst);
        return store_errno(rc);
}

int maint_backup(knock_store *s, const char *name, const char *dest, maint_progress_fn progress,
        void *userdata, maint_backup_result *ret)
{
        _cleanup_free_ char *final = NULL, *file = NULL, *tmp = NULL, *tmpdir = NULL,
                            *dir = NULL, *check = NULL;
        uint64_t t0 = mono_us();
        int64_t at = now_ms();
        int r, pages = 0;

        *ret = (maint_backup_result){0};
        if (!store_sqlite(s)) {
                snprintf(ret->message, sizeof(ret->message),
                         "endpoint %s is stored in PostgreSQL (schema knock_%s): back it up with "
                         "PostgreSQL's tools, pg_dump --schema=knock_%s for this endpoint or "
                         "pg_basebackup for the cluster (knock(7), \"Restore drill\")",
                         name, name, name);
                return -EOPNOTSUPP;
        }
        r = backup_target(name, dest, &dir, &file);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message), "%s: %s",
                        dest ? dest : "backup directory",
                        r == -EEXIST ? "a backup of that name already exists" : strerror(-r));
                return r;
        }
        /* Hidden, so retention and `ls NAME-*.db` never take it for a backup. */
        r = maint_private_tmp(dir, "backup", "copy.db", &tmpdir, &tmp);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message), "cannot create a temporary file in %s: %s",
                        dir, strerror(-r));
                return r;
        }

        /* Pin one snapshot for the whole copy (see the top of this file). */
        r = store_exec(s, "BEGIN; SELECT count(*) FROM sqlite_master");
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message), "cannot start a read transaction: %s",
                        store_errmsg(s));
                goto fail;
        }
        r = backup_copy(s->db, tmp, progress, userdata, &pages, ret->message, sizeof(ret->message));
        store_rollback(s);
        if (r < 0)
                goto fail;

        /* Durable before it is checked, checked before it gets its name. */
        r = maint_fsync_path(tmp, false);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message), "fsync %s: %s", tmp, strerror(-r));
                goto fail;
        }
        r = maint_integrity_check(tmp, &check);
        if (r != 0) {
                snprintf(ret->message, sizeof(ret->message), "the copy fails integrity_check: %s",
                        check   ? check
                        : r < 0 ? strerror(-r)
                                : "not ok");
                goto fail;
        }
        r = backup_place(tmp, dir, name, file, at, &final);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message), "rename to %s: %s",
                        file ? file : dir,
                        r == -EEXIST ? "a backup of that name already exists" : strerror(-r));
                goto fail;
        }
        maint_private_tmp_remove(tmpdir, tmp);
        r = maint_fsync_path(dir, true);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message), "fsync %s: %s", dir, strerror(-r));
                return r;
        }
        ret->bytes = maint_file_size(final);
        ret->pages = pages;
        ret->at = at;
        ret->duration_ms = (mono_us() - t0) / 1000;
        ret->path = TAKE_PTR(final);
        return 0;
fail:
        maint_private_tmp_remove(tmpdir, tmp);
        return r;
}

int maint_backup_record(knock_store *s, const char *actor, const maint_backup_result *b)
{
        json_t *f, *c;

        f = json_pack("{s:s}", "to", b->path);
        c = json_pack("{s:I, s:i, s:I}", "bytes", (json_int_t)b->bytes, "pages", b->pages,
                "duration_ms", (json_int_t)b->duration_ms);
        return maint_audit_record(s, actor, "backup", f, c, "last_backup_at", b->at, "last_backup_path",
                b->path);
}

/* Backup file names of name in its backup directory, newest first. */
static int list_backups(const char *name, char **ret_dir, char ***ret, size_t *ret_n)
{
        _cleanup_free_ char *dir = config_backup_dir(name);
        char **v = NULL;
        size_t n = 0;
        DIR *d;
        struct dirent *de;

        if (!dir)
                return -ENOMEM;
        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
        } else {
                while ((de = readdir(d))) {
                        char **nv;

                        if (!backup_name_matches(name, de->d_name))
                                continue;
                        nv = realloc(v, (n + 1) * sizeof(*v));
                        if (!nv || !(nv[n] = strdup(de->d_name))) {
                                v = nv ? nv : v;
                                strv_free(v, n);
                                closedir(d);
                                return -ENOMEM;
                        }
                        v = nv;
                        n++;
                }
                closedir(d);
        }
        /* The timestamp in the name sorts like time. */
        for (size_t i = 1; i < n; i++)
                for (size_t k = i; k > 0 && strcmp(v[k - 1], v[k]) < 0; k--) {
                        char *t = v[k];
                        v[k] = v[k - 1];
                        v[k - 1] = t;
                }
        if (ret_dir)
                *ret_dir = TAKE_PTR(dir);
        *ret = v;
        *ret_n = n;
        return 0;
}

int maint_newest_backup(const char *name, char **ret_path)
{
        _cleanup_free_ char *dir = NULL;
        char **v = NULL;
        size_t n = 0;
        int r;

        r = list_backups(name, &dir, &v, &n);
        if (r < 0)
                return r;
        if (n == 0)
                r = -ENOENT;
        else if (asprintf(ret_path, "%s/%s", dir, v[0]) < 0)
                r = -ENOMEM;
        strv_free(v, n);
        return r;
}

int maint_retain_backups(const char *name, uint64_t keep, uint64_t *ret_deleted)
{
        _cleanup_free_ char *dir = NULL;
        char **v = NULL;
        size_t n = 0;
        uint64_t deleted = 0;
        int r;

        r = list_backups(name, &dir, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = keep; i < n; i++) {
                _cleanup_free_ char *p = NULL;

                if (asprintf(&p, "%s/%s", dir, v[i]) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (unlink(p) < 0 && errno != ENOENT) {
                        r = -errno;
                        break;
                }
                deleted++;
        }
        if (deleted > 0 && dir)
                (void)maint_fsync_path(dir, true);
        strv_free(v, n);
        *ret_deleted = deleted;
        return r < 0 ? r : 0;
}
