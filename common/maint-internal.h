/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * maint-internal — what the maint files share (maint.c: files, locks, audit
 * rows and checks; maint-prune.c, maint-backup.c, maint-restore.c); nothing
 * outside common/maint*.c includes this.
 */

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "maint.h"

/* Most seconds a backup (or pre-restore) name moves forward when the names
 * before are taken. */
#define MAINT_NAME_TRIES 60

/* fsync() of a file, or of a directory (its entries). */
int maint_fsync_path(const char *path, bool directory);
/* The directory holding path (malloc'd). */
char *maint_dir_of(const char *path);
int maint_mkdir_p(const char *path, mode_t mode);
/* "20260528T202640Z" */
void maint_format_stamp(int64_t ms, char buf[static 20]);
/* rename() that never replaces an existing file. */
int maint_rename_noreplace(const char *from, const char *to);
uint64_t maint_file_size(const char *path);

/*
 * A temporary file that nobody else can have prepared: a fresh directory
 * from mkdtemp() (mode 0700, so only we may add, remove or rename entries in
 * it) holding a file created with O_CREAT|O_EXCL|O_NOFOLLOW. A symlink or
 * file planted beforehand at a predictable name is never followed or reused,
 * whoever runs this. *ret_dir and *ret_file are malloc'd; remove them with
 * maint_private_tmp_remove(), which also removes what SQLite may have left
 * beside the file.
 */
int maint_private_tmp(const char *dir, const char *label, const char *base, char **ret_dir,
        char **ret_file);
void maint_private_tmp_remove(const char *dir, const char *file);
/* Opens the file maint_private_tmp() created, never through a symlink (an
 * SQLite result code). */
int maint_open_private_tmp(const char *path, sqlite3 **ret);
/* A read-only connection of its own (no store: no pragmas, no migrations). */
int maint_open_readonly(const char *path, sqlite3 **ret);

/* BEGIN IMMEDIATE, polling the lock every millisecond (see maint.c). */
int maint_begin_patient(knock_store *s);

/* meta key = v, a decimal. */
int maint_meta_set_u64(knock_store *s, const char *key, uint64_t v);
/* Opens a patient transaction and writes the audit row for action and meta
 * at_key = at in it; store_end() ends it. On failure nothing stays open. */
int maint_audit_begin(knock_store *s, const char *actor, const char *action, const char *filters,
        const char *counts, const char *at_key, int64_t at);
/* One audit row for action with the JSON objects f and c (both consumed; NULL
 * when their json_pack failed), and meta at_key = at (and extra_key =
 * extra_value when extra_key is set), in one patient transaction. */
int maint_audit_record(knock_store *s, const char *actor, const char *action, json_t *f,
        json_t *c, const char *at_key, int64_t at, const char *extra_key,
        const char *extra_value);
