/* SPDX-License-Identifier: MIT */
/*
 * log — see log.h. Journal when journald owns our stderr, readable lines
 * otherwise. The journal decision is made once at log_setup(): systemd sets
 * JOURNAL_STREAM to "DEV:INODE" of the stream it connected stderr to; when
 * stderr still is that stream, native records (with fields) are better than
 * the line-based stream. KNOCK_LOG=journal|stderr overrides for tests.
 */
#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include "catalog-ids.h"
#include "escape.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>

static const char *log_daemon = "knock";
static char log_endpoint_buf[64];
static int log_level = LOG_INFO;
static bool log_journal;

static bool stderr_is_journal(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static int level_from_string(const char *s)
{
        static const struct {
                const char *name;
                int level;
        } map[] = {
                {"debug", LOG_DEBUG}, {"info", LOG_INFO},       {"notice", LOG_NOTICE},
                {"warning", LOG_WARNING}, {"err", LOG_ERR},     {"error", LOG_ERR},
                {"crit", LOG_CRIT},
        };
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (streq(s, map[i].name))
                        return map[i].level;
        return -1;
}

void log_setup(const char *daemon, const char *endpoint)
{
        const char *t = getenv("KNOCK_LOG"), *l = getenv("KNOCK_LOG_LEVEL");

        log_daemon = daemon;
        log_set_endpoint(endpoint);
        if (t && streq(t, "journal"))
                log_journal = true;
        else if (t && streq(t, "stderr"))
                log_journal = false;
        else
                log_journal = stderr_is_journal();
        if (l && level_from_string(l) >= 0)
                log_level = level_from_string(l);
}

void log_set_endpoint(const char *endpoint)
{
        snprintf(log_endpoint_buf, sizeof(log_endpoint_buf), "%s", endpoint ? endpoint : "");
}

void log_set_level(int level)
{
        log_level = level;
}

int log_get_level(void)
{
        return log_level;
}

bool log_to_journal(void)
{
        return log_journal;
}

void log_set_journal(bool on)
{
        log_journal = on;
}

void log_backup(int r, const char *path, uint64_t bytes, uint64_t duration_ms, const char *actor,
                const char *message)
{
        char b[32], d[32];

        if (r != 0) {
                log_struct_errno(LOG_ERR, r < 0 ? r : -EBADMSG, MSGID_BACKUP_FAILED,
                                 LOG_FIELDS(LF("KNOCK_ERROR", message), LF("KNOCK_ACTOR", actor)),
                                 "backup failed: %s", message);
                return;
        }
        snprintf(b, sizeof(b), "%" PRIu64, bytes);
        snprintf(d, sizeof(d), "%" PRIu64, duration_ms);
        log_struct(LOG_INFO, MSGID_BACKUP_DONE,
                   LOG_FIELDS(LF("KNOCK_BACKUP_PATH", path), LF("KNOCK_BACKUP_BYTES", b),
                              LF("KNOCK_DURATION_MS", d), LF("KNOCK_ACTOR", actor)),
                   "backup written to %s (%" PRIu64 " bytes, %" PRIu64 " ms, integrity ok)", path,
                   bytes, duration_ms);
}

static const char *prio_name(int prio)
{
        static const char *const names[] = {"emerg", "alert", "crit", "error",
                                            "warning", "notice", "info", "debug"};
        return names[prio & 7];
}

/* One journal record: fixed fields, the caller's fields, MESSAGE last. Each
 * entry is "KEY=value"; values are bounded so a client cannot make a huge
 * record. */
#define LOG_MAX_IOV 32
#define LOG_FIELD_MAX 2048

static void emit_journal(int prio, int err, const char *message_id, const char *file, int line,
                         const char *func, const log_field *fields, size_t n_fields,
                         const char *msg)
{
        char bufs[LOG_MAX_IOV][LOG_FIELD_MAX];
        struct iovec iov[LOG_MAX_IOV];
        size_t n = 0;

#define ADD(...)                                                                                   \
        do {                                                                                       \
                if (n < LOG_MAX_IOV) {                                                             \
                        int _l = snprintf(bufs[n], LOG_FIELD_MAX, __VA_ARGS__);                    \
                        if (_l >= LOG_FIELD_MAX)                                                   \
                                _l = LOG_FIELD_MAX - 1;                                            \
                        iov[n].iov_base = bufs[n];                                                 \
                        iov[n].iov_len = (size_t)_l;                                               \
                        n++;                                                                       \
                }                                                                                  \
        } while (0)

        ADD("MESSAGE=%s", msg);
        ADD("PRIORITY=%d", prio);
        ADD("SYSLOG_IDENTIFIER=knock-%s", log_daemon);
        ADD("CODE_FILE=%s", file);
        ADD("CODE_LINE=%d", line);
        ADD("CODE_FUNC=%s", func);
        ADD("KNOCK_DAEMON=%s", log_daemon);
        if (log_endpoint_buf[0])
                ADD("KNOCK_ENDPOINT=%s", log_endpoint_buf);
        if (message_id)
                ADD("MESSAGE_ID=%s", message_id);
        if (err != 0)
                ADD("ERRNO=%d", err < 0 ? -err : err);
        for (size_t i = 0; i < n_fields; i++)
                if (fields[i].value)
                        ADD("%s=%s", fields[i].key, fields[i].value);
#undef ADD
        sd_journal_sendv(iov, (int)n);
}

/* One line, always: the message and every field value are escaped (escape.h),
 * so a client's id holding "\n" or an ESC sequence cannot start a line of
 * its own or reach the terminal that shows it. */
static void emit_stderr(int prio, const log_field *fields, size_t n_fields, const char *msg)
{
        char extra[1024], line[2048 * 2];
        size_t o = 0;

        extra[0] = 0;
        for (size_t i = 0; i < n_fields && o < sizeof(extra) - 1; i++) {
                char value[512];
                int l;

                if (!fields[i].value)
                        continue;
                escape_buf(fields[i].value, strlen(fields[i].value), 0, value, sizeof(value));
                l = snprintf(extra + o, sizeof(extra) - o, "%s%s=%s", o ? " " : " (",
                             fields[i].key, value);
                if (l < 0)
                        break;
                o += (size_t)l;
        }
        if (o > 0 && o < sizeof(extra) - 1)
                snprintf(extra + o, sizeof(extra) - o, ")");
        /* A cut may fall inside an escape of extra; it is still one line. */
        extra[sizeof(extra) - 1] = 0;
        escape_buf(msg, strlen(msg), 0, line, sizeof(line));
        fprintf(stderr, "knock-%s[%s]: %s: %s%s\n", log_daemon, log_endpoint_buf,
                prio_name(prio), line, extra);
}

int log_emit(int prio, int err, const char *message_id, const char *file, int line,
             const char *func, const log_field *fields, size_t n_fields, const char *fmt, ...)
{
        char msg[2048];
        int saved = errno;
        va_list ap;

        if (err < 0)
                err = -err;
        if ((prio & 7) > log_level)
                return -err;
        /* %m in the format prints the error we were given, not a stale errno. */
        errno = err;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (log_journal)
                emit_journal(prio, err, message_id, file, line, func, fields, n_fields, msg);
        else
                emit_stderr(prio, fields, n_fields, msg);
        errno = saved;
        return -err;
}

bool log_ratelimit_ok(log_ratelimit *rl, uint64_t *ret_suppressed)
{
        uint64_t now = mono_us();

        if (ret_suppressed)
                *ret_suppressed = 0;
        if (rl->begin_us == 0 || now - rl->begin_us >= rl->interval_us) {
                if (ret_suppressed)
                        *ret_suppressed = rl->suppressed;
                rl->begin_us = now;
                rl->num = 0;
                rl->suppressed = 0;
        }
        if (rl->num < rl->burst) {
                rl->num++;
                return true;
        }
        rl->suppressed++;
        return false;
}
