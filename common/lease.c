/* SPDX-License-Identifier: MIT */
/*
 * lease — claim-holder liveness and takeover; see lease.h for the promises.
 *
 * Why the command name (process.h): after a reboot or a PID wrap-around the
 * holder's PID may belong to an unrelated live process. kill(pid, 0) alone
 * would keep its claims until their lease runs out; the command name tells
 * a live knock-ROLE (a second instance: never touched) from a reused PID.
 */
#include "lease.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "process.h"
#include "util.h"

bool lease_holder_gone(const char *holder, const char *role)
{
        char comm[32];
        size_t len = strlen(role);
        uint64_t pid;

        if (strncmp(holder, role, len) != 0 || holder[len] != ':' ||
            parse_u64_strict(holder + len + 1, &pid) < 0 || pid == 0 || pid > INT32_MAX)
                return false;
        snprintf(comm, sizeof(comm), "knock-%s", role);
        return !process_alive((pid_t)pid, comm);
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
