/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * maint — keeping an endpoint's database healthy (contract §9): prune,
 * backup, verify, restore, retention and checkpoint. Shared by knock-maint
 * (timers) and knockctl (the operator), so both do exactly the same thing.
 *
 * Promises:
 *  - prune deletes in bounded batches: each batch is one short BEGIN
 *    IMMEDIATE … COMMIT of at most `batch` events (or orphan deliveries),
 *    halved while batches hold the lock longer than about 40 ms (a slow
 *    disk, a busy machine), followed by a pause at least as long as the
 *    batch held the lock, so the ingress writer, whose busy handler polls
 *    the lock, always gets in between two batches. An event goes with its
 *    deliveries, attempts, hooks and hook attempts (deleted explicitly, so
 *    each table is counted). An event whose completion hook is still
 *    pending is never pruned: the hook outbox must not lose a queued hook.
 *  - only final states are prunable (handled, ignored, dead); received,
 *    processing and failed events are still work.
 *  - a prune run leaves one audit row (maint_prune_record), also when it
 *    deleted nothing or failed half-way (then with the error and the
 *    counts of what was committed), and meta last_prune_at.
 *  - a backup is SQLite's online backup inside one read transaction on the
 *    source: WAL readers never block the ingress writer, and the snapshot
 *    cannot change under the copy, so the copy never restarts. The copy is
 *    written to a hidden temporary file, switched to journal_mode=DELETE
 *    (a self-contained single file), closed, fsynced, checked with PRAGMA
 *    integrity_check from a fresh connection, and only then renamed into
 *    place (never replacing a file) and the directory fsynced. A failed
 *    backup leaves no file behind.
 *  - restore refuses while any daemon of the endpoint runs, verifies the
 *    backup first, keeps the previous database as NAME.db.pre-restore-TS
 *    (with its WAL when it could not be checkpointed), never leaves a stale
 *    -wal/-shm next to the restored file, and swaps the file in with one
 *    rename.
 *
 * Where: maint.c (what every task shares, the checks), maint-prune.c,
 * maint-backup.c, maint-restore.c; the rows prune deletes and the
 * statements that delete them are events.c's and hooks.c's.
 *
 * Library code: returns 0 or a negative errno, positive MAINT_E_* codes for
 * expected outcomes; never logs.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "event-state.h"
#include "store.h"

enum {
        MAINT_E_CORRUPT = 1, /* integrity_check did not say "ok" */
        MAINT_E_RUNNING,     /* restore: a daemon of the endpoint is running */
        MAINT_E_NEWER,       /* restore: the backup's schema is newer than this build */
};

#define MAINT_PRUNE_BATCH 500
#define MAINT_MESSAGE_MAX 512

/* ---- prune ---------------------------------------------------------------------- */

typedef struct maint_prune_spec {
        /* Per event status (indexed by event_status): events whose
         * coalesce(finished_at, updated_at) is before the cutoff go; -1 keeps
         * them. Only the final ones (handled, ignored, dead) may be set. */
        int64_t cutoff[_EVENT_STATUS_MAX];
        int64_t orphans_cutoff; /* orphan deliveries received before; -1: kept */
        unsigned batch;         /* most rows per transaction; 0: MAINT_PRUNE_BATCH */
        unsigned pause_ms;      /* minimum pause between batches; 0: 30 ms */
} maint_prune_spec;

typedef struct maint_prune_counts {
        uint64_t by_status[_EVENT_STATUS_MAX]; /* events deleted, by status */
        uint64_t events, deliveries, orphans, attempts, hooks, hook_attempts;
        uint64_t batches;
        uint64_t longest_batch_us; /* longest time the write lock was held */
        uint64_t duration_ms;
} maint_prune_counts;

/* Nothing selected: every cutoff -1. */
void maint_prune_spec_init(maint_prune_spec *spec);
/* [retention] of c relative to now: handled, ignored, orphans, and dead unless "never". */
void maint_prune_spec_from_config(const knock_config *c, int64_t now, maint_prune_spec *spec);
bool maint_prune_spec_empty(const maint_prune_spec *spec);
/* The event_status of a prunable (final) status name, or -1. */
int maint_prunable_status(const char *name);

/* Counts what maint_prune() would delete now, in one read transaction. */
int maint_prune_count(knock_store *s, const maint_prune_spec *spec, maint_prune_counts *ret);
/* Deletes in bounded batches. *ret holds what was committed, also on failure. */
int maint_prune(knock_store *s, const maint_prune_spec *spec, maint_prune_counts *ret);
/* JSON texts of the audit row (malloc'd, NULL on OOM). */
char *maint_prune_filters_json(const maint_prune_spec *spec, bool dry_run);
char *maint_prune_counts_json(const maint_prune_counts *c);
/* One transaction: the audit row (action "prune"; error < 0 adds "error"
 * to the counts), meta last_prune_at and prune_rows_deleted_total. */
int maint_prune_record(knock_store *s, const char *actor, const maint_prune_spec *spec,
        const maint_prune_counts *c, int error);

/* ---- backup, verify, restore ------------------------------------------------------ */

typedef struct maint_backup_result {
        char *path; /* the final file (malloc'd) */
        uint64_t bytes;
        int pages;
        int64_t at; /* ms since the epoch: the snapshot's time */
        uint64_t duration_ms;
        char message[MAINT_MESSAGE_MAX]; /* what failed, for the caller's log */
} maint_backup_result;

void maint_backup_result_clear(maint_backup_result *r);

/* Called after every step (and every few seconds of work): remaining and total pages. */
typedef void (*maint_progress_fn)(void *userdata, int remaining, int total);

/*
 * Backs up s (endpoint name). dest NULL: into config_backup_dir(name)
 * (created) as NAME-YYYYmmddTHHMMSSZ.db; an existing directory: the same
 * name in it; otherwise the file path itself, which must not exist
 * (-EEXIST). Returns 0, MAINT_E_CORRUPT when the copy fails integrity_check,
 * or a negative errno; ret->message says what failed either way.
 */
int maint_backup(knock_store *s, const char *name, const char *dest, maint_progress_fn progress,
        void *userdata, maint_backup_result *ret);
/* Audit row "backup" and meta last_backup_at/last_backup_path, in one transaction. */
int maint_backup_record(knock_store *s, const char *actor, const maint_backup_result *r);

/* PRAGMA integrity_check of the file at path (opened read-only). Returns 0,
 * MAINT_E_CORRUPT (the first problem in *ret_message), or a negative errno. */
int maint_integrity_check(const char *path, char **ret_message);

/* The newest NAME-YYYYmmddTHHMMSSZ.db in config_backup_dir(name); -ENOENT when none. */
int maint_newest_backup(const char *name, char **ret_path);

/* Is a daemon of the endpoint running? Looks at the OOM watchdog files
 * (PID=, no CLEAN_EXIT) and, when s is given, the daemons table; a pid
 * counts when it is a live knock-DAEMON (process_alive(), process.h).
 * Returns 0 (not running) or MAINT_E_RUNNING with *ret_pid and ret_daemon. */
int maint_endpoint_running(
        const char *name, knock_store *s, pid_t *ret_pid, char *ret_daemon, size_t daemon_len);

typedef struct maint_restore_result {
        char *previous; /* where the old database went, NULL when there was none */
        char *restored; /* the database path */
        int64_t events;
        char message[MAINT_MESSAGE_MAX];
        pid_t running_pid;
        char running_daemon[32];
} maint_restore_result;

void maint_restore_result_clear(maint_restore_result *r);

/* Restores endpoint name from the backup file and writes the audit row
 * ("restore", actor) into the restored database. Returns 0, MAINT_E_RUNNING,
 * MAINT_E_CORRUPT, MAINT_E_NEWER, or a negative errno (ret->message). */
int maint_restore(
        const char *name, const char *backup, const char *actor, maint_restore_result *ret);

/* ---- retention, checkpoint, sizes ------------------------------------------------ */

/* Keeps the newest keep backups of name; *ret_deleted counts the files removed. */
int maint_retain_backups(const char *name, uint64_t keep, uint64_t *ret_deleted);
/* Deletes audit rows older than before (bounded batches). */
int maint_prune_audit(knock_store *s, int64_t before, uint64_t *ret_deleted);
/* PRAGMA wal_checkpoint(TRUNCATE); *ret_busy is true when readers kept it from finishing. */
int maint_checkpoint(knock_store *s, bool *ret_busy);
/* Sizes of path and path-wal (0 when absent). */
int maint_db_sizes(const char *db_path, uint64_t *ret_db, uint64_t *ret_wal);
