/* SPDX-License-Identifier: MIT */
#pragma once

/* A child process that waits to be killed, named COMM (as /proc/PID/comm
 * shows it) when COMM is not NULL: the process a lease or a watchdog file
 * names, for the tests of PID-liveness checks. */

#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

static inline pid_t child_named(const char *comm)
{
        pid_t pid = fork();

        if (pid == 0) {
                if (comm)
                        (void)prctl(PR_SET_NAME, comm);
                pause();
                _exit(0);
        }
        return pid;
}
