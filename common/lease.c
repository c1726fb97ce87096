/* SPDX-License-Identifier: MIT */
/*
 * lease — claim-holder liveness and takeover; see lease.h for the promises.
 *
 * Why /proc/PID/comm: after a reboot or a PID wrap-around the holder's PID
 * may belong to an unrelated live process. kill(pid, 0) alone would keep
 * its claims until their lease runs out; the command name tells a live
 * knock-ROLE (a second instance: never touched) from a reused PID.
 */
#include "lease.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

bool lease_holder_gone(const char *holder, const char *role)
{
        char path[64], comm[32] = "", expect[32];
        _cleanup_close_ int fd = -1;
        size_t len = strlen(role);
        uint64_t pid;
        ssize_t k;

        if (strncmp(holder, role, len) != 0 || holder[len] != ':' ||
            parse_u64_strict(holder + len + 1, &pid) < 0 || pid == 0 || pid > INT32_MAX)
                return false;
        if ((pid_t)pid == getpid())
                return true; /* our own PID, from a previous life */
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
                return true;
        /* Alive: gone only if that PID is no longer a knock-ROLE. */
        snprintf(path, sizeof(path), "/proc/%llu/comm", (unsigned long long)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        k = read(fd, comm, sizeof(comm) - 1);
        if (k <= 0)
                return false;
        comm[k] = 0;
        comm[strcspn(comm, "\n")] = 0;
        snprintf(expect, sizeof(expect), "knock-%s", role);
        return !streq(comm, expect);
}

int lease_take_over_gone(knock_store *s, const char *role, lease_holders_fn holders,
                         lease_expire_fn expire, int64_t now, lease_report_fn report,
                         void *userdata)
{
        char **v = NULL;
        size_t n = 0;
        int r;

        r = holders(s, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                size_t k = 0;

                if (!lease_holder_gone(v[i], role))
                        continue;
                r = expire(s, v[i], now, &k);
                if (report)
                        report(v[i], r, r < 0 ? 0 : k, userdata);
        }
        strv_free(v, n);
        return 0;
}
