/* SPDX-License-Identifier: MIT */
/*
 * maint — what every maintenance task shares (see maint.h for the
 * promises): files made and replaced safely, the patient write lock, the
 * audit row of each task, the integrity check, and whether a daemon of the
 * endpoint runs. The tasks are maint-prune.c (retention), maint-backup.c
 * and maint-restore.c.
 */
#define _GNU_SOURCE
#include "maint-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "process.h"
#include "util.h"

#define PATIENT_BUSY_MAX_MS 60000U
#define STORE_BUSY_TIMEOUT_MS 5000 /* as store_open() sets it */
#define HEARTBEAT_STALE_MS (10 * 60 * 1000)

/* ---- small file helpers ------------------------------------------------------------- */

int maint_fsync_path(const char *path, bool directory)
{
        _cleanup_close_ int fd = -1;

        fd = open(path, (directory ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

/* The directory holding path (malloc'd). */
char *maint_dir_of(const char *path)
{
        const char *slash = strrchr(path, '/');

        if (!slash)
                return strdup(".");
        if (slash == path)
                return strdup("/");
        return strndup(path, (size_t)(slash - path));
}

int maint_mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* "20260528T202640Z" */
void maint_format_stamp(int64_t ms, char buf[static 20])
{
        time_t t = (time_t)(ms / 1000);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, 20, "%Y%m%dT%H%M%SZ", &tm);
}

/* rename() that never replaces an existing file. */
int maint_rename_noreplace(const char *from, const char *to)
{
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) >= 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS)
                return -errno;
        /* File systems without RENAME_NOREPLACE: link() fails on EEXIST too. */
        if (link(from, to) < 0)
                return -errno;
        (void)unlink(from);
        return 0;
}

int maint_private_tmp(const char *dir, const char *label, const char *base, char **ret_dir,
        char **ret_file)
{
        _cleanup_free_ char *d = NULL, *f = NULL;
        int fd;

        if (asprintf(&d, "%s/.%s.XXXXXX", dir, label) < 0) {
                d = NULL;
                return -ENOMEM;
        }
        if (!mkdtemp(d))
                return -errno;
        if (asprintf(&f, "%s/%s", d, base) < 0) {
                f = NULL;
                (void)rmdir(d);
                return -ENOMEM;
        }
        fd = open(f, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0660);
        if (fd < 0) {
                int r = -errno;

                (void)rmdir(d);
                return r;
        }
        /* Whatever the caller's umask: the daemons (group knock) write a
         * restored database, and operators of that group read backups. */
        (void)fchmod(fd, 0660);
        close(fd);
        *ret_dir = TAKE_PTR(d);
        *ret_file = TAKE_PTR(f);
        return 0;
}

void maint_private_tmp_remove(const char *dir, const char *file)
{
        static const char *const suffixes[] = {"", "-journal", "-wal", "-shm"};

        if (!dir)
                return;
        for (size_t i = 0; file && i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *p = NULL;

                if (asprintf(&p, "%s%s", file, suffixes[i]) >= 0)
                        (void)unlink(p);
        }
        (void)rmdir(dir);
}

int maint_open_private_tmp(const char *path, sqlite3 **ret)
{
        return sqlite3_open_v2(path, ret,
                SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX, NULL);
}

uint64_t maint_file_size(const char *path)
{
        struct stat stb;

        return stat(path, &stb) < 0 ? 0 : (uint64_t)stb.st_size;
}

int maint_db_sizes(const char *db_path, uint64_t *ret_db, uint64_t *ret_wal)
{
        _cleanup_free_ char *wal = NULL;

        if (asprintf(&wal, "%s-wal", db_path) < 0)
                return -ENOMEM;
        *ret_db = maint_file_size(db_path);
        *ret_wal = maint_file_size(wal);
        return 0;
}

/* Maintenance's busy handler: poll the write lock every millisecond. The
 * default handler sleeps longer and longer (up to 100 ms) between tries, and
 * a busy ingress, committing batch after batch, leaves the lock free only
 * for short gaps between its commits: a slow poller starves and gives up
 * after the 5 s busy timeout. Retrying often is what lets maintenance in;
 * the ingress is not slowed, as the lock is only taken when it is free. */
static int patient_busy(void *userdata, int count)
{
        (void)userdata;
        if ((unsigned)count >= PATIENT_BUSY_MAX_MS)
                return 0;
        usleep(1000);
        return 1;
}

/* BEGIN IMMEDIATE with patient_busy, then the store's own busy timeout again. */
int maint_begin_patient(knock_store *s)
{
        int r;

        /* PostgreSQL takes no lock for the whole store: rows wait on rows. */
        if (!store_sqlite(s))
                return store_begin(s);
        sqlite3_busy_handler(s->db, patient_busy, NULL);
        r = store_begin(s);
        sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
        return r;
}

int maint_meta_set_u64(knock_store *s, const char *key, uint64_t v)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        return store_meta_set(s, key, buf);
}

int maint_audit_begin(knock_store *s, const char *actor, const char *action, const char *filters,
        const char *counts, const char *at_key, int64_t at)
{
        int r;

        r = maint_begin_patient(s);
        if (r < 0)
                return r;
        r = store_audit(s, actor, action, filters, counts, NULL);
        if (r >= 0)
                r = maint_meta_set_u64(s, at_key, (uint64_t)at);
        if (r < 0)
                store_rollback(s);
        return r;
}

int maint_audit_record(knock_store *s, const char *actor, const char *action, json_t *f,
        json_t *c, const char *at_key, int64_t at, const char *extra_key, const char *extra_value)
{
        _cleanup_free_ char *filters = NULL, *counts = NULL;
        int r;

        filters = f ? json_dumps(f, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        counts = c ? json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(f);
        json_decref(c);
        if (!filters || !counts)
                return -ENOMEM;

        r = maint_audit_begin(s, actor, action, filters, counts, at_key, at);
        if (r < 0)
                return r;
        if (extra_key)
                r = store_meta_set(s, extra_key, extra_value);
        return store_end(s, r);
}


/* ---- integrity ------------------------------------------------------------------------- */

static int integrity_check_db(sqlite3 *db, char **ret_message)
{
        _cleanup_(sqlite_stmt_finalizep) sqlite3_stmt *st = NULL;
        const char *msg;
        int rc;

        rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(20)", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
                if (ret_message)
                        *ret_message = strdup(sqlite3_errmsg(db));
                /* A file that is no database at all is as corrupt as it gets. */
                return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB
                               ? MAINT_E_CORRUPT
                               : store_errno(rc);
        }
        msg = (const char *)sqlite3_column_text(st, 0);
        if (msg && streq(msg, "ok"))
                return 0;
        if (ret_message)
                *ret_message = strdup(msg ? msg : "integrity_check returned nothing");
        return MAINT_E_CORRUPT;
}

int maint_open_readonly(const char *path, sqlite3 **ret)
{
        sqlite3 *db = NULL;
        int rc;

        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                sqlite3_close_v2(db);
                return store_errno(rc);
        }
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, 5000);
        *ret = db;
        return 0;
}

int maint_integrity_check(const char *path, char **ret_message)
{
        sqlite3 *db = NULL;
        int r;

        if (ret_message)
                *ret_message = NULL;
        if (access(path, R_OK) < 0)
                return -errno;
        r = maint_open_readonly(path, &db);
        if (r < 0)
                return r;
        r = integrity_check_db(db, ret_message);
        sqlite3_close_v2(db);
        return r;
}

/* ---- checks --------------------------------------------------------------------------- */

/* pid is a live knock-DAEMON other than us (process.h says why exactly that). */
static bool daemon_alive(pid_t pid, const char *daemon, size_t daemon_len)
{
        char comm[64];

        snprintf(comm, sizeof(comm), "knock-%.*s", (int)MIN(daemon_len, (size_t)32), daemon);
        return process_alive(pid, comm);
}

int maint_endpoint_running(
        const char *name, knock_store *s, pid_t *ret_pid, char *ret_daemon, size_t daemon_len)
{
        _cleanup_free_ char *prefix = NULL;
        const char *state = knock_state_dir();
        DIR *d;
        struct dirent *de;

        if (asprintf(&prefix, "%s.", name) < 0)
                return -ENOMEM;
        /* The OOM watchdog files, NAME.DAEMON.watchdog: they outlive a deleted
         * database. */
        d = opendir(state);
        if (d) {
                while ((de = readdir(d))) {
                        _cleanup_free_ char *path = NULL, *content = NULL;
                        const char *daemon = de->d_name + strlen(prefix), *pidline;
                        size_t len = strlen(de->d_name), n = len - MIN(len, 9 + strlen(prefix));
                        pid_t pid;

                        if (!startswith(de->d_name, prefix) || n == 0 ||
                                !streq(de->d_name + len - 9, ".watchdog"))
                                continue;
                        if (asprintf(&path, "%s/%s", state, de->d_name) < 0)
                                continue;
                        if (read_file_full(path, 4096, &content, NULL) < 0)
                                continue;
                        if (strstr(content, "CLEAN_EXIT"))
                                continue;
                        pidline = strstr(content, "PID=");
                        pid = pidline ? (pid_t)atoi(pidline + 4) : 0;
                        if (!daemon_alive(pid, daemon, n))
                                continue;
                        *ret_pid = pid;
                        snprintf(ret_daemon, daemon_len, "%.*s", (int)n, daemon);
                        closedir(d);
                        return MAINT_E_RUNNING;
                }
                closedir(d);
        }

        /* The daemons table: started and not stopped, recent heartbeat. */
        if (s) {
                _cleanup_stmt_ db_stmt *st = NULL;

                if (store_prepare(s,
                            "SELECT daemon, pid FROM daemons WHERE stopped_at IS NULL"
                            " AND pid IS NOT NULL AND heartbeat_at > ?",
                            &st) >= 0) {
                        stmt_bind_i64(st, 1, now_ms() - HEARTBEAT_STALE_MS);
                        while (stmt_step(st) > 0) {
                                const char *daemon = stmt_col_text(st, 0);
                                pid_t pid = (pid_t)stmt_col_i64(st, 1);

                                if (!daemon || !daemon_alive(pid, daemon, strlen(daemon)))
                                        continue;
                                *ret_pid = pid;
                                snprintf(ret_daemon, daemon_len, "%s", daemon);
                                return MAINT_E_RUNNING;
                        }
                }
        }
        return 0;
}

int maint_checkpoint(knock_store *s, bool *ret_busy)
{
        int64_t busy;
        int r;

        /* PostgreSQL checkpoints its own WAL. */
        if (!store_sqlite(s)) {
                *ret_busy = false;
                return 0;
        }
        r = store_query_i64(s, "PRAGMA wal_checkpoint(TRUNCATE)", &busy);
        if (r < 0)
                return r;
        *ret_busy = busy != 0;
        return 0;
}
