/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * log — one record per failure, at the daemon boundary.
 *
 * Promises:
 *  - under journald (JOURNAL_STREAM matches stderr, or KNOCK_LOG=journal)
 *    records go through sd_journal_send with MESSAGE, PRIORITY, CODE_FILE,
 *    CODE_LINE, CODE_FUNC, KNOCK_DAEMON, KNOCK_ENDPOINT, the caller's KNOCK_*
 *    fields and, for notable records, MESSAGE_ID (common/catalog-ids.h);
 *  - otherwise one readable line on stderr: "knock-ingress[demo]: warning: …
 *    (KNOCK_EVENT_ID=… …)";
 *  - records below the level (KNOCK_LOG_LEVEL=debug|info|notice|warning|err,
 *    default info) are dropped before formatting;
 *  - records a remote client can trigger go through a token bucket
 *    (log_ratelimit_*), so logging cannot become a denial of service; what
 *    was suppressed is counted and reported once the bucket refills.
 *
 * This is the speaking layer (common/daemon/, lib_daemon), linked by the
 * daemons and knockctl. The silent library (common/, lib_common) does not
 * log: its modules return errors, and the test silent-library fails when
 * one of its objects references the logger, the journal or stderr.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "util.h"

typedef struct log_field {
        const char *key; /* "KNOCK_EVENT_ID" */
        const char *value; /* NULL: field omitted */
} log_field;

#define LF(k, v) ((log_field){(k), (v)})
#define LOG_FIELDS(...)                                                                            \
        ((const log_field[]){__VA_ARGS__}),                                                        \
                (sizeof((const log_field[]){__VA_ARGS__}) / sizeof(log_field))
#define LOG_NO_FIELDS NULL, 0

void log_setup(const char *daemon, const char *endpoint);
void log_set_endpoint(const char *endpoint);
void log_set_level(int level);
int log_get_level(void);
bool log_to_journal(void);
/* Sends records to the journal (true) or stderr (false) from now on. */
void log_set_journal(bool on);

/* Returns -abs(err) when err != 0, else 0, so it can end a function. */
int log_emit(int prio, int err, const char *message_id, const char *file, int line,
             const char *func, const log_field *fields, size_t n_fields, const char *fmt, ...)
        _printf_(9, 10);

/* Two steps, so LOG_FIELDS()/LOG_NO_FIELDS expand into their two arguments first. */
#define log_full_errno(...) log_full_errno_(__VA_ARGS__)
#define log_full_errno_(prio, err, msgid, fields, nfields, fmt, ...)                               \
        log_emit(prio, err, msgid, __FILE__, __LINE__, __func__, fields, nfields, fmt,             \
                 ##__VA_ARGS__)

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, NULL, LOG_NO_FIELDS, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, NULL, LOG_NO_FIELDS, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, NULL, LOG_NO_FIELDS, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, NULL, LOG_NO_FIELDS, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, NULL, LOG_NO_FIELDS, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, NULL, LOG_NO_FIELDS, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, NULL, LOG_NO_FIELDS, __VA_ARGS__)

/* Structured record: log_struct(LOG_WARNING, MSGID_X, LOG_FIELDS(LF(..), ..), "fmt", ...) */
#define log_struct(prio, msgid, ...) log_full_errno(prio, 0, msgid, __VA_ARGS__)
#define log_struct_errno(prio, err, msgid, ...) log_full_errno(prio, err, msgid, __VA_ARGS__)

/*
 * The one record of a backup, from knock-maint (the timer) and knockctl
 * alike, so knock(7)'s "when did the last backup succeed" query
 * (MESSAGE_ID=MSGID_BACKUP_DONE KNOCK_ENDPOINT=NAME) finds every backup:
 * r == 0 a success (path, bytes, duration), otherwise MSGID_BACKUP_FAILED
 * with message. actor is who asked ("knock-maint", "root(0)").
 */
void log_backup(int r, const char *path, uint64_t bytes, uint64_t duration_ms, const char *actor,
                const char *message);

/* Token bucket: at most burst records per interval. */
typedef struct log_ratelimit {
        uint64_t interval_us;
        unsigned burst;
        uint64_t begin_us;
        unsigned num;
        uint64_t suppressed;
} log_ratelimit;

#define LOG_RATELIMIT_INIT(interval_s, b) {.interval_us = (interval_s) * 1000000ULL, .burst = (b)}
/* True when a record may be emitted now; counts suppressed ones. When a new
 * interval starts and some were suppressed, *ret_suppressed tells how many. */
bool log_ratelimit_ok(log_ratelimit *rl, uint64_t *ret_suppressed);
