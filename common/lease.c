/* SPDX-License-Identifier: MIT */
/*
 * lease — claim-holder liveness and takeover; see lease.h for the promises.
 *
 * Why the command name (process.h): after a reboot or a PID wrap-around the
 * holder's PID may belong to an unrelated live process. kill(pid, 0) alone
 * would keep its claims until their lease runs out; the command name tells
 * a live knock-ROLE (a second instance: never touched) from a reused PID.
 *
 * Why the host: with one store shared by several hosts, a holder's PID says
 * nothing here about a process there. Judged here, host B would find host
 * A's live worker "gone" (its PID is free on B, or B's own) and run A's
 * events a second time while A still runs them. So only this host's holders
 * are judged; the others' claims wait for their lease.
 */
#include "lease.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "process.h"
#include "util.h"

const char *lease_host(const knock_store *s)
{
        return s && s->engine == STORE_ENGINE_POSTGRESQL ? knock_host() : NULL;
}

void lease_identity(const char *role, const char *host, char buf[static LEASE_IDENTITY_MAX])
{
        snprintf(buf, LEASE_IDENTITY_MAX, "%s:%d%s%s", role, (int)getpid(), host ? "@" : "",
                 host ?: "");
}

bool lease_holder_gone(const char *holder, const char *role, const char *host)
{
        _cleanup_free_ char *pid_text = NULL;
        const char *p, *at;
        char comm[32];
        size_t len = strlen(role);
        uint64_t pid;

        if (strncmp(holder, role, len) != 0 || holder[len] != ':')
                return false;
        p = holder + len + 1;
        at = strchr(p, '@');
        /* The host part: exactly ours where hosts share the store, none where they do not. */
        if (host ? !at || !streq(at + 1, host) : at != NULL)
                return false;
        pid_text = strndup(p, at ? (size_t)(at - p) : strlen(p));
        if (!pid_text || parse_u64_strict(pid_text, &pid) < 0 || pid == 0 || pid > INT32_MAX)
                return false;
        snprintf(comm, sizeof(comm), "knock-%s", role);
        return !process_alive((pid_t)pid, comm);
}

int lease_take_over_gone(knock_store *s, const char *role, const char *host,
                         lease_holders_fn holders, lease_expire_fn expire, int64_t now,
                         lease_report_fn report, void *userdata)
{
        char **v = NULL;
        size_t n = 0;
        int r;

        r = holders(s, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                size_t k = 0;

                if (!lease_holder_gone(v[i], role, host))
                        continue;
                r = expire(s, v[i], now, &k);
                if (report)
                        report(v[i], r, r < 0 ? 0 : k, userdata);
        }
        strv_free(v, n);
        return 0;
}
