/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * notify — sd_notify for every daemon, and the OOM watchdog file.
 *
 * Promises:
 *  - READY=1, STATUS=, RELOADING=1, STOPPING=1, EXTEND_TIMEOUT_USEC= and
 *    WATCHDOG=1 are sent only when NOTIFY_SOCKET is set (no-ops otherwise);
 *  - notify_watchdog_interval_us() is half of WatchdogSec= (0 when off): the
 *    daemon pings from its loop only after checking that the loop ran and the
 *    storage path answered, so a wedged loop or a stuck disk gets the
 *    daemon restarted by systemd;
 *  - the OOM watchdog file (contract §11) NAME.DAEMON.watchdog in the state
 *    directory is created at start, "READY" is added once the daemon sent
 *    READY=1; at clean stop "CLEAN_EXIT" is written and the file removed.
 *    Found at start with READY and without CLEAN_EXIT, the previous run
 *    ended unexpectedly (OOM kill, SIGKILL, watchdog): a suspected OOM kill.
 *    Without READY, the previous run never got going (a start that failed,
 *    bad configuration, unwritable database): not counted. The state
 *    directory is writable by group knock, so only the daemon's own plain
 *    file is ever reused; anything else at that name (a planted symlink, a
 *    FIFO, a hard link) is removed, never followed, and the file made
 *    afresh with O_EXCL. An unwritable path disables the file; it never
 *    stops the daemon.
 */

#include <stdbool.h>
#include <stdint.h>

void notify_ready(const char *status);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_reloading(void);
void notify_stopping(void);
void notify_watchdog(void);
void notify_extend_timeout(uint64_t usec);
uint64_t notify_watchdog_interval_us(void);

typedef enum oomfile_state {
        OOMFILE_FRESH = 0,     /* no file: first run or previous clean exit */
        OOMFILE_UNCLEAN,       /* file without CLEAN_EXIT: previous run died */
        OOMFILE_DISABLED,      /* path not writable */
        OOMFILE_NEVER_READY,   /* file without READY: previous run failed to start */
} oomfile_state;

typedef struct oomfile {
        char *path;
        int fd;
} oomfile;

/* Creates state_dir/NAME.DAEMON.watchdog; *ret_state tells what was found.
 * Returns 0, or a negative errno when disabled (state OOMFILE_DISABLED). */
int oomfile_start(oomfile *f, const char *state_dir, const char *name, const char *daemon,
                  oomfile_state *ret_state);
/* Adds READY (after READY=1): from now on an end without CLEAN_EXIT counts. */
void oomfile_ready(oomfile *f);
/* Writes CLEAN_EXIT, fsyncs, removes the file. */
void oomfile_clean_exit(oomfile *f);
