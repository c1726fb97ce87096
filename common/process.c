/* SPDX-License-Identifier: MIT */
/*
 * process — see process.h. /proc/PID/comm is read, never stat()ed: proc
 * files report size 0. The kernel truncates comm to 15 bytes; every knock
 * daemon's name ("knock-" and its role) is shorter.
 */
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

bool process_alive(pid_t pid, const char *comm)
{
        char path[64], buf[32];
        _cleanup_close_ int fd = -1;
        ssize_t n;

        if (pid <= 0 || pid == getpid())
                return false;
        if (kill(pid, 0) < 0 && errno == ESRCH)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return true;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return true;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return streq(buf, comm);
}
