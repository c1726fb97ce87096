/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * process — whether a PID written down earlier (a lease holder "ROLE:PID",
 * a watchdog file, a daemons row) still names a live knock process.
 *
 * Promises:
 *  - process_alive() says "not alive" only when it is certain: the PID is
 *    ours (a previous life of this PID; we hold nothing yet, and we are not
 *    the daemon asked about), kill(pid, 0) failed with ESRCH (the only
 *    answer that proves there is no such process: EPERM means it exists
 *    under another user), or /proc/PID/comm names another command than the
 *    one expected (after a reboot or a PID wrap-around the number names an
 *    unrelated process);
 *  - the command must match exactly ("knock-worker", not any "knock-"): a
 *    knock daemon of another role that reused the PID is not the one asked
 *    about;
 *  - a command that cannot be read (no /proc, hidepid=) counts as a match:
 *    when in doubt the process is alive, the safe answer for every caller
 *    (a lease is waited out rather than taken from a live holder, a restore
 *    is refused rather than swapping the file under a writer).
 *
 * Never logs; no allocation.
 */

#include <stdbool.h>
#include <sys/types.h>

bool process_alive(pid_t pid, const char *comm);
