/* SPDX-License-Identifier: MIT */
/*
 * maint — see maint.h for the promises.
 *
 * Why prune selects outside the lock: finding the next batch of old rows may
 * scan many young ones, and a scan under BEGIN IMMEDIATE would stall the
 * ingress for as long as it takes. So each batch is chosen by a plain read
 * (WAL readers block nobody) into a temp table, walking the primary key with
 * a cursor so no row is looked at twice; then, under the write lock, every
 * chosen id is checked again by primary key (a worker or an operator may have
 * changed it since) and the rows are deleted, children first, so each table's
 * count is exact. The lock is held only for primary-key lookups and deletes.
 *
 * Why the pause after each batch is at least 30 ms and at least as long as
 * the batch: the ingress waits for the lock in SQLite's default busy
 * handler, which sleeps and polls (1, 2, 5, 10, 15, 20, 25, 25, 25, 50 …
 * ms). If the pruner took the lock again at once, a waiting writer could
 * miss every window; a pause longer than its sleeps lets it in at its next
 * poll, so its stall is bounded by one batch plus one sleep. Batches are
 * sized to hold the lock about 20 ms (halved when slower, doubled back when
 * faster).
 *
 * Why the backup holds a read transaction: sqlite3_backup_step() restarts
 * from the first page whenever another connection changed the source between
 * two steps, so under a steady stream of webhooks an unprotected backup may
 * never finish. One read transaction across all steps pins one snapshot; in
 * WAL mode that never blocks a writer (the WAL only grows until we end it).
 */
#define _GNU_SOURCE
#include "maint.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define BACKUP_STEP_PAGES 256
#define BACKUP_STEP_PAUSE_MS 2
#define AUDIT_BATCH "1000"
#define CHECKPOINT_EVERY_BATCHES 20
/* Longer than the longest sleep of SQLite's default busy handler during
 * its first 100 ms of waiting (25 ms), so a writer that started waiting
 * while a batch held the lock always polls once inside the pause. */
#define PRUNE_PAUSE_MS 30U
#define BATCH_TARGET_US 20000
#define BATCH_MIN 25U
#define PATIENT_BUSY_MAX_MS 60000U
#define STORE_BUSY_TIMEOUT_MS 5000 /* as store_open() sets it */
#define HEARTBEAT_STALE_MS (10 * 60 * 1000)

/* ---- small file helpers ------------------------------------------------------------- */

static int fsync_path(const char *path, bool directory)
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
static char *dir_of(const char *path)
{
        const char *slash = strrchr(path, '/');

        if (!slash)
                return strdup(".");
        if (slash == path)
                return strdup("/");
        return strndup(path, (size_t)(slash - path));
}

static int mkdir_p(const char *path, mode_t mode)
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
static void format_stamp(int64_t ms, char buf[static 20])
{
        time_t t = (time_t)(ms / 1000);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, 20, "%Y%m%dT%H%M%SZ", &tm);
}

/* rename() that never replaces an existing file. */
static int rename_noreplace(const char *from, const char *to)
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

/*
 * A temporary file that nobody else can have prepared: a fresh directory
 * from mkdtemp() (mode 0700, so only we may add, remove or rename entries in
 * it) holding a file created with O_CREAT|O_EXCL|O_NOFOLLOW. A symlink or
 * file planted beforehand at a predictable name is never followed or reused,
 * whoever runs this. *ret_dir and *ret_file are malloc'd; remove them with
 * private_tmp_remove().
 */
static int private_tmp(const char *dir, const char *label, const char *base, char **ret_dir,
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

/* Removes what private_tmp() made and what SQLite may have left beside the file. */
static void private_tmp_remove(const char *dir, const char *file)
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

/* Opens the file private_tmp() created, never through a symlink. */
static int open_private_tmp(const char *path, sqlite3 **ret)
{
        return sqlite3_open_v2(path, ret,
                SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX, NULL);
}

static uint64_t file_size(const char *path)
{
        struct stat stb;

        return stat(path, &stb) < 0 ? 0 : (uint64_t)stb.st_size;
}

int maint_db_sizes(const char *db_path, uint64_t *ret_db, uint64_t *ret_wal)
{
        _cleanup_free_ char *wal = NULL;

        if (asprintf(&wal, "%s-wal", db_path) < 0)
                return -ENOMEM;
        *ret_db = file_size(db_path);
        *ret_wal = file_size(wal);
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
static int begin_patient(knock_store *s)
{
        int r;

        sqlite3_busy_handler(s->db, patient_busy, NULL);
        r = store_begin(s);
        sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
        return r;
}

/* ---- prune ----------------------------------------------------------------------------- */

void maint_prune_spec_init(maint_prune_spec *spec)
{
        *spec = (maint_prune_spec){.orphans_cutoff = -1};
        for (size_t i = 0; i < ELEMENTSOF(spec->cutoff); i++)
                spec->cutoff[i] = -1;
}

static int64_t cutoff_of(uint64_t keep_ms, int64_t now)
{
        if (keep_ms == UINT64_MAX)
                return -1;
        if (keep_ms > (uint64_t)now)
                return 0;
        return now - (int64_t)keep_ms;
}

int maint_prunable_status(const char *name)
{
        static const char *const prunable[] = {"handled", "ignored", "dead"};

        for (size_t i = 0; i < ELEMENTSOF(prunable); i++)
                if (streq(name, prunable[i]))
                        for (size_t k = 0; k < ELEMENTSOF(event_status_names); k++)
                                if (streq(name, event_status_names[k]))
                                        return (int)k;
        return -1;
}

void maint_prune_spec_from_config(const knock_config *c, int64_t now, maint_prune_spec *spec)
{
        maint_prune_spec_init(spec);
        spec->cutoff[maint_prunable_status("handled")] = cutoff_of(c->keep_handled_ms, now);
        spec->cutoff[maint_prunable_status("ignored")] = cutoff_of(c->keep_ignored_ms, now);
        spec->cutoff[maint_prunable_status("dead")] = cutoff_of(c->keep_dead_ms, now);
        spec->orphans_cutoff = cutoff_of(c->keep_orphans_ms, now);
}

bool maint_prune_spec_empty(const maint_prune_spec *spec)
{
        for (size_t i = 0; i < ELEMENTSOF(spec->cutoff); i++)
                if (spec->cutoff[i] >= 0)
                        return false;
        return spec->orphans_cutoff < 0;
}

/* The one definition of "this event may go": final status, old enough, no
 * completion hook still waiting to be sent. Binds ?1 status, ?2 cutoff. */
#define EVENT_PRUNABLE_(plus, e)                                                                   \
        plus e ".status = ?1 AND coalesce(" e ".finished_at, " e ".updated_at) < ?2"               \
               " AND NOT EXISTS (SELECT 1 FROM hooks h WHERE h.event_id = " e ".id"                \
               " AND h.state = 'pending')"
#define EVENT_PRUNABLE(e) EVENT_PRUNABLE_("", e)

static int count_one(
        knock_store *s, const char *sql, const char *status, int64_t cutoff, uint64_t *acc)
{
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s, sql, &st);
        if (r < 0)
                return r;
        if (status)
                stmt_bind_text(st, 1, status);
        stmt_bind_i64(st, 2, cutoff);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_errno(rc);
        *acc += (uint64_t)sqlite3_column_int64(st, 0);
        return 0;
}

int maint_prune_count(knock_store *s, const maint_prune_spec *spec, maint_prune_counts *ret)
{
        static const char *const sql_events =
                "SELECT count(*) FROM events e WHERE " EVENT_PRUNABLE("e");
        static const char *const sql_deliveries =
                "SELECT count(*) FROM deliveries WHERE event_id IN"
                " (SELECT id FROM events e WHERE " EVENT_PRUNABLE("e") ")";
        static const char *const sql_attempts =
                "SELECT count(*) FROM attempts WHERE event_id IN"
                " (SELECT id FROM events e WHERE " EVENT_PRUNABLE("e") ")";
        static const char *const sql_hooks =
                "SELECT count(*) FROM hooks WHERE event_id IN"
                " (SELECT id FROM events e WHERE " EVENT_PRUNABLE("e") ")";
        static const char *const sql_hook_attempts =
                "SELECT count(*) FROM hook_attempts WHERE hook_id IN (SELECT id FROM hooks"
                " WHERE event_id IN (SELECT id FROM events e WHERE " EVENT_PRUNABLE("e") "))";
        maint_prune_counts c = {0};
        uint64_t t0 = mono_us();
        int r;

        /* One read transaction: all the counts describe the same snapshot. */
        r = store_exec(s, "BEGIN");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(spec->cutoff) && r >= 0; i++) {
                const char *status = event_status_names[i];

                if (spec->cutoff[i] < 0)
                        continue;
                r = count_one(s, sql_events, status, spec->cutoff[i], &c.by_status[i]);
                if (r >= 0)
                        r = count_one(s, sql_deliveries, status, spec->cutoff[i], &c.deliveries);
                if (r >= 0)
                        r = count_one(s, sql_attempts, status, spec->cutoff[i], &c.attempts);
                if (r >= 0)
                        r = count_one(s, sql_hooks, status, spec->cutoff[i], &c.hooks);
                if (r >= 0)
                        r = count_one(
                                s, sql_hook_attempts, status, spec->cutoff[i], &c.hook_attempts);
                c.events += c.by_status[i];
        }
        if (r >= 0 && spec->orphans_cutoff >= 0)
                r = count_one(s,
                        "SELECT count(*) FROM deliveries"
                        " WHERE event_id IS NULL AND received_at < ?2",
                        NULL, spec->orphans_cutoff, &c.orphans);
        store_rollback(s);
        if (r < 0)
                return r;
        c.duration_ms = (mono_us() - t0) / 1000;
        *ret = c;
        return 0;
}

typedef struct prune_stmts {
        sqlite3_stmt *pick_events, *pick_orphans, *recheck_events, *recheck_orphans;
        sqlite3_stmt *del_hook_attempts, *del_hooks, *del_attempts, *del_deliveries, *del_events;
        sqlite3_stmt *del_orphans, *last_id, *clear;
} prune_stmts;

static void prune_stmts_free(prune_stmts *p)
{
        sqlite3_stmt **all[] = {&p->pick_events, &p->pick_orphans, &p->recheck_events,
                &p->recheck_orphans, &p->del_hook_attempts, &p->del_hooks, &p->del_attempts,
                &p->del_deliveries, &p->del_events, &p->del_orphans, &p->last_id, &p->clear};

        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                stmt_finalizep(all[i]);
}

static int prune_prepare(knock_store *s, prune_stmts *p)
{
        const struct {
                sqlite3_stmt **st;
                const char *sql;
        } list[] = {
                /* Outside the lock: the next candidates after the cursor ?3.
                 * "+status" keeps the planner off the status index: walking
                 * the primary key from the cursor needs no sort and visits
                 * each row once over the whole run, where the status index
                 * would sort every remaining row of the status per batch. */
                {&p->pick_events, "INSERT INTO temp.maint_batch(id) SELECT e.id FROM events e"
                                  " WHERE e.id > ?3 AND " EVENT_PRUNABLE_(
                                          "+", "e") " ORDER BY e.id LIMIT ?4"},
                /* Orphans through the event_id index, whose NULL entries come
                 * in insertion (≈ time) order, so the old ones come first; the
                 * cursor only guarantees progress (an orphan it skips is
                 * taken by the next run). */
                {&p->pick_orphans,
                        "INSERT INTO temp.maint_batch(id) SELECT id FROM deliveries"
                        " WHERE event_id IS NULL AND received_at < ?2 AND id > ?3 LIMIT ?4"},
                {&p->last_id, "SELECT max(id) FROM temp.maint_batch"},
                /* Under the lock: drop every id that no longer qualifies. */
                {&p->recheck_events,
                        "DELETE FROM temp.maint_batch WHERE NOT EXISTS (SELECT 1 FROM events e"
                        " WHERE e.id = maint_batch.id AND " EVENT_PRUNABLE("e") ")"},
                {&p->recheck_orphans,
                        "DELETE FROM temp.maint_batch WHERE NOT EXISTS (SELECT 1 FROM deliveries d"
                        " WHERE d.id = maint_batch.id AND d.event_id IS NULL AND d.received_at < "
                        "?2)"},
                /* Children first, so every table's count is exact and the
                 * ON DELETE CASCADEs find nothing left to do. */
                {&p->del_hook_attempts,
                        "DELETE FROM hook_attempts WHERE hook_id IN (SELECT id FROM hooks"
                        " WHERE event_id IN (SELECT id FROM temp.maint_batch))"},
                {&p->del_hooks,
                        "DELETE FROM hooks WHERE event_id IN (SELECT id FROM temp.maint_batch)"},
                {&p->del_attempts,
                        "DELETE FROM attempts WHERE event_id IN (SELECT id FROM temp.maint_batch)"},
                {&p->del_deliveries, "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM "
                                     "temp.maint_batch)"},
                {&p->del_events,
                        "DELETE FROM events WHERE id IN (SELECT id FROM temp.maint_batch)"},
                {&p->del_orphans,
                        "DELETE FROM deliveries WHERE id IN (SELECT id FROM temp.maint_batch)"
                        " AND event_id IS NULL"},
                {&p->clear, "DELETE FROM temp.maint_batch"},
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(list); i++) {
                r = store_prepare(s, list[i].sql, list[i].st);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Steps a bound statement once; adds its changes to *acc when acc is given. */
static int step_count(knock_store *s, sqlite3_stmt *st, uint64_t *acc)
{
        int rc = sqlite3_step(st);

        sqlite3_reset(st);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
                return store_errno(rc);
        if (acc)
                *acc += (uint64_t)sqlite3_changes(sqlite3_db_handle(st));
        return 0;
}

static void bind_batch(
        sqlite3_stmt *st, const char *status, int64_t cutoff, const char *cursor, unsigned batch)
{
        /* Statements use ?1 status, ?2 cutoff, ?3 cursor, ?4 batch; binding an
         * index below the highest one a statement uses is harmless. */
        if (sqlite3_bind_parameter_count(st) >= 1)
                stmt_bind_text(st, 1, status);
        if (sqlite3_bind_parameter_count(st) >= 2)
                stmt_bind_i64(st, 2, cutoff);
        if (sqlite3_bind_parameter_count(st) >= 3)
                stmt_bind_text(st, 3, cursor);
        if (sqlite3_bind_parameter_count(st) >= 4)
                stmt_bind_i64(st, 4, batch);
}

/*
 * One class of rows (events of one status, or orphan deliveries: status
 * NULL) in batches until none is left. The pick runs outside the lock; the
 * recheck and the deletes inside one short transaction.
 */
static int prune_class(knock_store *s, prune_stmts *p, const maint_prune_spec *spec, int status,
        maint_prune_counts *c)
{
        unsigned max_batch = spec->batch ? spec->batch : MAINT_PRUNE_BATCH;
        unsigned batch = max_batch;
        unsigned pause_us = (spec->pause_ms ? spec->pause_ms : PRUNE_PAUSE_MS) * 1000;
        const char *name = status >= 0 ? event_status_names[status] : NULL;
        int64_t cutoff = status >= 0 ? spec->cutoff[status] : spec->orphans_cutoff;
        char cursor[KNOCK_ID_MAX + 8] = "";
        sqlite3_stmt *pick = status >= 0 ? p->pick_events : p->pick_orphans;
        int r, rc;

        for (;;) {
                uint64_t picked = 0, t0, held;
                const char *last;

                r = step_count(s, p->clear, NULL);
                if (r < 0)
                        return r;
                bind_batch(pick, name, cutoff, cursor, batch);
                r = step_count(s, pick, &picked);
                if (r < 0)
                        return r;
                if (picked == 0)
                        return 0;
                rc = sqlite3_step(p->last_id);
                last = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(p->last_id, 0) : NULL;
                snprintf(cursor, sizeof(cursor), "%s", last ? last : "");
                sqlite3_reset(p->last_id);

                r = begin_patient(s);
                if (r < 0)
                        return r;
                t0 = mono_us();
                if (status >= 0) {
                        uint64_t n = 0;

                        bind_batch(p->recheck_events, name, cutoff, NULL, 0);
                        r = step_count(s, p->recheck_events, NULL);
                        if (r >= 0)
                                r = step_count(s, p->del_hook_attempts, &c->hook_attempts);
                        if (r >= 0)
                                r = step_count(s, p->del_hooks, &c->hooks);
                        if (r >= 0)
                                r = step_count(s, p->del_attempts, &c->attempts);
                        if (r >= 0)
                                r = step_count(s, p->del_deliveries, &c->deliveries);
                        if (r >= 0)
                                r = step_count(s, p->del_events, &n);
                        if (r >= 0) {
                                c->by_status[status] += n;
                                c->events += n;
                        }
                } else {
                        bind_batch(p->recheck_orphans, NULL, cutoff, NULL, 0);
                        r = step_count(s, p->recheck_orphans, NULL);
                        if (r >= 0)
                                r = step_count(s, p->del_orphans, &c->orphans);
                }
                if (r < 0) {
                        store_rollback(s);
                        return r;
                }
                r = store_commit(s);
                if (r < 0)
                        return r;
                held = mono_us() - t0;
                c->batches++;
                c->longest_batch_us = MAX(c->longest_batch_us, held);
                /* A slow disk or a busy machine makes a batch slower: aim
                 * the next one at the target time, never above max_batch. */
                if (held > 2 * BATCH_TARGET_US)
                        batch = MAX(BATCH_MIN, batch / 2);
                else if (held < BATCH_TARGET_US / 2)
                        batch = MIN(max_batch, batch * 2);
                /* Let a waiting writer in (see the top of this file). */
                usleep((useconds_t)MAX((uint64_t)pause_us, held));
                /* Keep the WAL bounded when no ingress checkpoints it. PASSIVE
                 * never waits for the lock and never blocks a writer. */
                if (c->batches % CHECKPOINT_EVERY_BATCHES == 0)
                        (void)sqlite3_wal_checkpoint_v2(
                                s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        }
}

int maint_prune(knock_store *s, const maint_prune_spec *spec, maint_prune_counts *ret)
{
        prune_stmts p = {0};
        uint64_t t0 = mono_us();
        int r, k;

        *ret = (maint_prune_counts){0};
        r = store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS maint_batch(id TEXT PRIMARY KEY)");
        if (r < 0)
                return r;
        /* The batches commit without waiting for fsync (WAL + NORMAL is
         * still atomic and never corrupts): that keeps the write lock short.
         * A batch lost to a power cut only means rows the next run deletes
         * again. FULL is back before the caller writes the audit row, whose
         * commit then makes every batch before it durable too. */
        r = store_exec(s, "PRAGMA synchronous=NORMAL");
        /* No automatic checkpoint inside COMMIT either: prune_class runs a
         * PASSIVE one between batches, outside the lock, and it is not
         * counted as lock time. */
        if (r >= 0)
                r = store_exec(s, "PRAGMA wal_autocheckpoint=0");
        if (r < 0)
                goto finish;
        r = prune_prepare(s, &p);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(spec->cutoff); i++)
                if (spec->cutoff[i] >= 0)
                        r = prune_class(s, &p, spec, (int)i, ret);
        if (r >= 0 && spec->orphans_cutoff >= 0)
                r = prune_class(s, &p, spec, -1, ret);
finish:
        prune_stmts_free(&p);
        (void)store_exec(s, "DROP TABLE IF EXISTS temp.maint_batch");
        (void)store_exec(s, "PRAGMA wal_checkpoint(PASSIVE)");
        (void)store_exec(s, "PRAGMA wal_autocheckpoint=1000");
        k = store_exec(s, "PRAGMA synchronous=FULL");
        if (r >= 0 && k < 0)
                r = k;
        ret->duration_ms = (mono_us() - t0) / 1000;
        return r < 0 ? r : 0;
}

static json_t *time_or_null(int64_t ms)
{
        char buf[64];

        return ms < 0 ? json_null() : json_string(format_rfc3339(ms, buf, sizeof(buf)));
}

char *maint_prune_filters_json(const maint_prune_spec *spec, bool dry_run)
{
        json_t *o = json_object(), *before = json_object(), *statuses = json_array();
        char *text = NULL;

        if (!o || !before || !statuses)
                goto out;
        for (size_t i = 0; i < ELEMENTSOF(spec->cutoff); i++)
                if (spec->cutoff[i] >= 0) {
                        json_array_append_new(statuses, json_string(event_status_names[i]));
                        json_object_set_new(
                                before, event_status_names[i], time_or_null(spec->cutoff[i]));
                }
        if (spec->orphans_cutoff >= 0)
                json_object_set_new(before, "orphans", time_or_null(spec->orphans_cutoff));
        json_object_set(o, "statuses", statuses);
        json_object_set_new(o, "orphans", json_boolean(spec->orphans_cutoff >= 0));
        json_object_set(o, "before", before);
        json_object_set_new(
                o, "batch", json_integer(spec->batch ? spec->batch : MAINT_PRUNE_BATCH));
        json_object_set_new(o, "dry_run", json_boolean(dry_run));
        text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
        json_decref(o);
        json_decref(before);
        json_decref(statuses);
        return text;
}

static json_t *counts_object(const maint_prune_counts *c)
{
        json_t *o = json_object();

        if (!o)
                return NULL;
        json_object_set_new(o, "events", json_integer((json_int_t)c->events));
        for (size_t i = 0; i < ELEMENTSOF(c->by_status); i++)
                if (maint_prunable_status(event_status_names[i]) >= 0)
                        json_object_set_new(o, event_status_names[i],
                                json_integer((json_int_t)c->by_status[i]));
        json_object_set_new(o, "deliveries", json_integer((json_int_t)c->deliveries));
        json_object_set_new(o, "orphan_deliveries", json_integer((json_int_t)c->orphans));
        json_object_set_new(o, "attempts", json_integer((json_int_t)c->attempts));
        json_object_set_new(o, "hooks", json_integer((json_int_t)c->hooks));
        json_object_set_new(o, "hook_attempts", json_integer((json_int_t)c->hook_attempts));
        json_object_set_new(o, "batches", json_integer((json_int_t)c->batches));
        json_object_set_new(o, "longest_batch_us", json_integer((json_int_t)c->longest_batch_us));
        json_object_set_new(o, "duration_ms", json_integer((json_int_t)c->duration_ms));
        return o;
}

char *maint_prune_counts_json(const maint_prune_counts *c)
{
        json_t *o = counts_object(c);
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

        json_decref(o);
        return text;
}

static uint64_t counts_total(const maint_prune_counts *c)
{
        return c->events + c->deliveries + c->orphans + c->attempts + c->hooks + c->hook_attempts;
}

/* meta key += add (a decimal counter). */
static int meta_add(knock_store *s, const char *key, uint64_t add)
{
        _cleanup_free_ char *v = NULL;
        char buf[32];
        uint64_t cur = 0;
        int r;

        r = store_meta_get(s, key, &v);
        if (r < 0)
                return r;
        if (v && parse_u64_strict(v, &cur) < 0)
                cur = 0;
        snprintf(buf, sizeof(buf), "%" PRIu64, cur + add);
        return store_meta_set(s, key, buf);
}

static int meta_set_u64(knock_store *s, const char *key, uint64_t v)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        return store_meta_set(s, key, buf);
}

/* Opens a patient transaction and writes the audit row for action and meta
 * at_key = at in it. On failure nothing stays open. */
static int audit_begin(knock_store *s, const char *actor, const char *action, const char *filters,
        const char *counts, const char *at_key, int64_t at)
{
        int r;

        r = begin_patient(s);
        if (r < 0)
                return r;
        r = store_audit(s, actor, action, filters, counts, NULL);
        if (r >= 0)
                r = meta_set_u64(s, at_key, (uint64_t)at);
        if (r < 0)
                store_rollback(s);
        return r;
}

/* Ends audit_begin()'s transaction: COMMIT when r >= 0, else ROLLBACK and r. */
static int audit_end(knock_store *s, int r)
{
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        return store_commit(s);
}

/* One audit row for action with the JSON objects f and c (both consumed; NULL
 * when their json_pack failed), and meta at_key = at (and extra_key =
 * extra_value when extra_key is set), in one patient transaction. */
static int audit_record(knock_store *s, const char *actor, const char *action, json_t *f,
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

        r = audit_begin(s, actor, action, filters, counts, at_key, at);
        if (r < 0)
                return r;
        if (extra_key)
                r = store_meta_set(s, extra_key, extra_value);
        return audit_end(s, r);
}

int maint_prune_record(knock_store *s, const char *actor, const maint_prune_spec *spec,
        const maint_prune_counts *c, int error)
{
        _cleanup_free_ char *filters = NULL, *counts = NULL;
        json_t *o;
        int r;

        filters = maint_prune_filters_json(spec, false);
        o = counts_object(c);
        if (o && error < 0)
                json_object_set_new(o, "error", json_string(strerror(-error)));
        counts = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!filters || !counts)
                return -ENOMEM;

        r = audit_begin(s, actor, "prune", filters, counts, "last_prune_at", now_ms());
        if (r < 0)
                return r;
        r = meta_set_u64(s, "last_prune_rows", counts_total(c));
        if (r >= 0)
                r = meta_add(s, "prune_rows_deleted_total", counts_total(c));
        return audit_end(s, r);
}

/* ---- integrity ------------------------------------------------------------------------- */

static int integrity_check_db(sqlite3 *db, char **ret_message)
{
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
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

static int open_readonly(const char *path, sqlite3 **ret)
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
        r = open_readonly(path, &db);
        if (r < 0)
                return r;
        r = integrity_check_db(db, ret_message);
        sqlite3_close_v2(db);
        return r;
}

/* ---- backup ---------------------------------------------------------------------------- */

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
                *ret_dir = dir_of(dest);
                return *ret_file && *ret_dir ? 0 : -ENOMEM;
        }
        if (dest)
                dir = strdup(dest);
        else {
                dir = config_backup_dir(name);
                if (dir) {
                        r = mkdir_p(dir, 0770);
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

/* Most seconds a backup name moves forward when the names before are taken. */
#define BACKUP_NAME_TRIES 60

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
                r = rename_noreplace(tmp, file);
                if (r >= 0 && !(*ret = strdup(file)))
                        return -ENOMEM;
                return r;
        }
        for (int i = 0; i < BACKUP_NAME_TRIES && r == -EEXIST; i++) {
                _cleanup_free_ char *p = NULL;
                char stamp[20];

                format_stamp(at + (int64_t)i * 1000, stamp);
                if (asprintf(&p, "%s/%s-%s.db", dir, name, stamp) < 0)
                        return -ENOMEM;
                r = rename_noreplace(tmp, p);
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

        rc = open_private_tmp(tmp, &dst);
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
        r = backup_target(name, dest, &dir, &file);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message), "%s: %s",
                        dest ? dest : "backup directory",
                        r == -EEXIST ? "a backup of that name already exists" : strerror(-r));
                return r;
        }
        /* Hidden, so retention and `ls NAME-*.db` never take it for a backup. */
        r = private_tmp(dir, "backup", "copy.db", &tmpdir, &tmp);
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
        r = fsync_path(tmp, false);
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
        private_tmp_remove(tmpdir, tmp);
        r = fsync_path(dir, true);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message), "fsync %s: %s", dir, strerror(-r));
                return r;
        }
        ret->bytes = file_size(final);
        ret->pages = pages;
        ret->at = at;
        ret->duration_ms = (mono_us() - t0) / 1000;
        ret->path = TAKE_PTR(final);
        return 0;
fail:
        private_tmp_remove(tmpdir, tmp);
        return r;
}

int maint_backup_record(knock_store *s, const char *actor, const maint_backup_result *b)
{
        json_t *f, *c;

        f = json_pack("{s:s}", "to", b->path);
        c = json_pack("{s:I, s:i, s:I}", "bytes", (json_int_t)b->bytes, "pages", b->pages,
                "duration_ms", (json_int_t)b->duration_ms);
        return audit_record(s, actor, "backup", f, c, "last_backup_at", b->at, "last_backup_path",
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
                (void)fsync_path(dir, true);
        strv_free(v, n);
        *ret_deleted = deleted;
        return r < 0 ? r : 0;
}

/* ---- restore --------------------------------------------------------------------------- */

void maint_restore_result_clear(maint_restore_result *r)
{
        free(r->previous);
        free(r->restored);
        *r = (maint_restore_result){0};
}

/* Alive, not us, and (where /proc tells) a knock- process rather than a reused pid. */
static bool pid_is_knock(pid_t pid)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        char comm[32] = "";
        ssize_t n;

        if (pid <= 0 || pid == getpid())
                return false;
        if (kill(pid, 0) < 0 && errno != EPERM)
                return false;
        if (asprintf(&path, "/proc/%d/comm", (int)pid) < 0)
                return true;
        /* proc files report size 0: read, don't stat. */
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return true;
        n = read(fd, comm, sizeof(comm) - 1);
        if (n <= 0)
                return true;
        comm[n] = 0;
        return startswith(comm, "knock-");
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
        /* The OOM watchdog files: they outlive a deleted database. */
        d = opendir(state);
        if (d) {
                while ((de = readdir(d))) {
                        _cleanup_free_ char *path = NULL, *content = NULL;
                        const char *dot, *pidline;
                        size_t len = strlen(de->d_name);

                        if (!startswith(de->d_name, prefix) || len < 9 ||
                                !streq(de->d_name + len - 9, ".watchdog"))
                                continue;
                        if (asprintf(&path, "%s/%s", state, de->d_name) < 0)
                                continue;
                        if (read_file_full(path, 4096, &content, NULL) < 0)
                                continue;
                        if (strstr(content, "CLEAN_EXIT"))
                                continue;
                        pidline = strstr(content, "PID=");
                        if (!pidline || !pid_is_knock((pid_t)atoi(pidline + 4)))
                                continue;
                        *ret_pid = (pid_t)atoi(pidline + 4);
                        dot = de->d_name + strlen(prefix);
                        snprintf(ret_daemon, daemon_len, "%.*s", (int)(len - 9 - strlen(prefix)),
                                dot);
                        closedir(d);
                        return MAINT_E_RUNNING;
                }
                closedir(d);
        }

        /* The daemons table: started and not stopped, recent heartbeat. */
        if (s) {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;

                if (store_prepare(s,
                            "SELECT daemon, pid FROM daemons WHERE stopped_at IS NULL"
                            " AND pid IS NOT NULL AND heartbeat_at > ?",
                            &st) >= 0) {
                        stmt_bind_i64(st, 1, now_ms() - HEARTBEAT_STALE_MS);
                        while (sqlite3_step(st) == SQLITE_ROW) {
                                pid_t pid = (pid_t)sqlite3_column_int64(st, 1);

                                if (!pid_is_knock(pid))
                                        continue;
                                *ret_pid = pid;
                                snprintf(ret_daemon, daemon_len, "%s",
                                        (const char *)sqlite3_column_text(st, 0));
                                return MAINT_E_RUNNING;
                        }
                }
        }
        return 0;
}

static int schema_version_of(sqlite3 *db, int *ret)
{
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
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

        rc = open_private_tmp(tmp, &dst);
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
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
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
        if (sqlite3_step(st) == SQLITE_ROW) {
                ret->events = sqlite3_column_int64(st, 0);
                deliveries = sqlite3_column_int64(st, 1);
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
        return audit_record(s, actor, "restore", f, c, "last_restore_at", now_ms(), NULL, NULL);
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
                !(dir = dir_of(db)))
                return -ENOMEM;

        /* 1. The backup must be sound and not newer than this build. */
        r = maint_integrity_check(backup, &check);
        if (r != 0) {
                snprintf(ret->message, sizeof(ret->message), "%s: %s", backup,
                        r == MAINT_E_CORRUPT ? (check ? check : "integrity_check failed")
                                             : strerror(-r));
                return r;
        }
        r = open_readonly(backup, &src);
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
        r = private_tmp(dir, "restore", "copy.db", &tmpdir, &tmp);
        if (r < 0) {
                snprintf(ret->message, sizeof(ret->message),
                        "cannot create a temporary file in %s: %s", dir, strerror(-r));
                goto out;
        }
        r = restore_copy(src, tmp, ret->message, sizeof(ret->message));
        if (r >= 0)
                r = fsync_path(tmp, false);
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
                for (int i = 0; i < BACKUP_NAME_TRIES && r == -EEXIST; i++) {
                        prev = mfree(prev);
                        format_stamp(at + (int64_t)i * 1000, stamp);
                        if (asprintf(&prev, "%s.pre-restore-%s", db, stamp) < 0) {
                                prev = NULL;
                                r = -ENOMEM;
                                goto out;
                        }
                        r = rename_noreplace(db, prev);
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
        (void)fsync_path(dir, true);
        ret->restored = strdup(db);

        /* 5. The audit row lives in the restored database: that is where the
         * operator looks next. */
        r = restore_audit(db, actor, backup, ret);
        if (r < 0)
                snprintf(ret->message, sizeof(ret->message),
                        "restored, but writing the audit row failed: %s", strerror(-r));
out:
        private_tmp_remove(tmpdir, tmp);
        sqlite3_close_v2(src);
        return r;
}

/* ---- retention, checkpoint ----------------------------------------------------------- */

int maint_prune_audit(knock_store *s, int64_t before, uint64_t *ret_deleted)
{
        _cleanup_stmt_ sqlite3_stmt *pick = NULL, *del = NULL;
        uint64_t deleted = 0;
        int r;

        *ret_deleted = 0;
        r = store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS maint_audit(id TEXT PRIMARY KEY);"
                          "DELETE FROM temp.maint_audit");
        if (r < 0)
                return r;
        r = store_prepare(s,
                "INSERT INTO temp.maint_audit SELECT id FROM audit WHERE at < ?"
                " LIMIT " AUDIT_BATCH,
                &pick);
        if (r >= 0)
                r = store_prepare(
                        s, "DELETE FROM audit WHERE id IN (SELECT id FROM temp.maint_audit)", &del);
        while (r >= 0) {
                uint64_t picked = 0;

                stmt_bind_i64(pick, 1, before);
                r = step_count(s, pick, &picked);
                if (r < 0 || picked == 0)
                        break;
                r = begin_patient(s);
                if (r < 0)
                        break;
                r = step_count(s, del, &deleted);
                if (r < 0) {
                        store_rollback(s);
                        break;
                }
                r = store_commit(s);
                if (r >= 0)
                        r = store_exec(s, "DELETE FROM temp.maint_audit");
                usleep(5000);
        }
        stmt_finalizep(&pick);
        stmt_finalizep(&del);
        (void)store_exec(s, "DROP TABLE IF EXISTS temp.maint_audit");
        *ret_deleted = deleted;
        return r < 0 ? r : 0;
}

int maint_checkpoint(knock_store *s, bool *ret_busy)
{
        int64_t busy;
        int r;

        r = store_query_i64(s, "PRAGMA wal_checkpoint(TRUNCATE)", &busy);
        if (r < 0)
                return r;
        *ret_busy = busy != 0;
        return 0;
}

/* ---- Prometheus textfile -------------------------------------------------------------- */

typedef struct prom_row {
        char name[64];
        bool have_db;
        uint64_t db_bytes, wal_bytes;
        char *last_backup, *last_prune, *prune_rows, *prune_total;
} prom_row;

static void prom_series(FILE *f, const char *metric, const char *type, const char *help,
        const prom_row *rows, size_t n, size_t field)
{
        bool header = false;

        for (size_t i = 0; i < n; i++) {
                const prom_row *p = &rows[i];
                char value[64];
                uint64_t v;

                if (!p->have_db)
                        continue;
                switch (field) {
                case 0:
                case 1: {
                        const char *ms = field == 0 ? p->last_backup : p->last_prune;

                        if (!ms || parse_u64_strict(ms, &v) < 0)
                                continue;
                        snprintf(
                                value, sizeof(value), "%" PRIu64 ".%03" PRIu64, v / 1000, v % 1000);
                        break;
                }
                case 2:
                case 3: {
                        const char *t = field == 2 ? p->prune_rows : p->prune_total;

                        if (parse_u64_strict(t ? t : "0", &v) < 0)
                                v = 0;
                        snprintf(value, sizeof(value), "%" PRIu64, v);
                        break;
                }
                default:
                        snprintf(value, sizeof(value), "%" PRIu64,
                                field == 4 ? p->db_bytes : p->wal_bytes);
                }
                if (!header) {
                        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, type);
                        header = true;
                }
                fprintf(f, "%s{endpoint=\"%s\"} %s\n", metric, p->name, value);
        }
}

int maint_write_textfile(const char *dir)
{
        _cleanup_free_ char *tmp = NULL, *final = NULL;
        prom_row *rows = NULL;
        char **names = NULL;
        size_t n = 0;
        FILE *f = NULL;
        int r, fd;

        r = config_list_endpoints(&names, &n);
        if (r < 0)
                return r;
        rows = calloc(n ? n : 1, sizeof(*rows));
        if (!rows) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_(store_closep) knock_store *s = NULL;
                _cleanup_free_ char *db = config_db_path(names[i]);

                snprintf(rows[i].name, sizeof(rows[i].name), "%s", names[i]);
                if (!db || access(db, F_OK) < 0)
                        continue;
                rows[i].have_db = true;
                (void)maint_db_sizes(db, &rows[i].db_bytes, &rows[i].wal_bytes);
                if (store_open(db, 0, &s) < 0)
                        continue;
                (void)store_meta_get(s, "last_backup_at", &rows[i].last_backup);
                (void)store_meta_get(s, "last_prune_at", &rows[i].last_prune);
                (void)store_meta_get(s, "last_prune_rows", &rows[i].prune_rows);
                (void)store_meta_get(s, "prune_rows_deleted_total", &rows[i].prune_total);
        }

        if (asprintf(&final, "%s/knock_maint.prom", dir) < 0 ||
                asprintf(&tmp, "%s/.knock_maint.prom.XXXXXX", dir) < 0) {
                r = -ENOMEM;
                goto out;
        }
        /* mkostemp: O_CREAT|O_EXCL, a fresh name nothing can be planted at. */
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd >= 0)
                (void)fchmod(fd, 0644);
        if (fd < 0 || !(f = fdopen(fd, "w"))) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                goto out;
        }
        prom_series(f, "knock_backup_last_success_timestamp_seconds", "gauge",
                "Time of the endpoint's last successful backup.", rows, n, 0);
        prom_series(f, "knock_prune_last_run_timestamp_seconds", "gauge",
                "Time of the endpoint's last prune run.", rows, n, 1);
        prom_series(f, "knock_prune_last_rows_deleted", "gauge",
                "Rows deleted by the endpoint's last prune run.", rows, n, 2);
        prom_series(f, "knock_prune_rows_deleted_total", "counter",
                "Rows deleted by prune runs (kept in the database).", rows, n, 3);
        prom_series(f, "knock_database_bytes", "gauge", "Size of the endpoint's database file.",
                rows, n, 4);
        prom_series(f, "knock_wal_bytes", "gauge", "Size of the endpoint's WAL file.", rows, n, 5);
        if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) < 0)
                r = -(errno ? errno : EIO);
        if (fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r >= 0 && rename(tmp, final) < 0)
                r = -errno;
        if (r < 0)
                (void)unlink(tmp);
out:
        for (size_t i = 0; rows && i < n; i++) {
                free(rows[i].last_backup);
                free(rows[i].last_prune);
                free(rows[i].prune_rows);
                free(rows[i].prune_total);
        }
        free(rows);
        strv_free(names, n);
        return r < 0 ? r : 0;
}
