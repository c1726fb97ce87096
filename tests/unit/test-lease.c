/* SPDX-License-Identifier: MIT */
/*
 * test-lease — lease_holder_gone(): our own PID (a previous life), a PID
 * that no longer exists and a live PID running something else are gone; a
 * live knock-ROLE, another role's holder and malformed names are not.
 * Where hosts share the store (a host given): only this host's holders are
 * judged, as above; another host's never are, whatever its PID is here, and
 * a name without the host (or with one on SQLite) is never gone.
 * lease_take_over_gone(): only gone holders are expired and reported.
 * lease_identity() and knock_host() (KNOCK_HOST, made safe).
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lease.h"
#include "child.h"
#include "tap.h"


static char *fake_holders[4];
static size_t n_fake, n_expired;
static char reported[512];

static int holders(knock_store *s, char ***ret, size_t *ret_n)
{
        char **v = calloc(n_fake, sizeof(*v));

        for (size_t i = 0; i < n_fake; i++)
                v[i] = strdup(fake_holders[i]);
        *ret = v;
        *ret_n = n_fake;
        return 0;
}

static int expire(knock_store *s, const char *holder, int64_t now, size_t *ret_n)
{
        n_expired++;
        *ret_n = 3;
        return 0;
}

static void report(const char *holder, int r, size_t n, void *userdata)
{
        size_t len = strlen(reported);

        snprintf(reported + len, sizeof(reported) - len, "%s=%d/%zu;", holder, r, n);
}

static int holders_fail(knock_store *s, char ***ret, size_t *ret_n)
{
        return -EIO;
}

int main(void)
{
        char h[256], other[64], live[64], dead[64];
        pid_t k_worker, k_other, gone;

        snprintf(h, sizeof(h), "worker:%d", (int)getpid());
        ok(lease_holder_gone(h, "worker", NULL), "our own PID is a previous life: gone");
        ok(!lease_holder_gone(h, "deliver", NULL), "a holder of another role is never gone");

        k_worker = child_named("knock-worker");
        k_other = child_named("sleep");
        gone = child_named(NULL);
        kill(gone, SIGKILL);
        (void)waitpid(gone, NULL, 0);
        usleep(50 * 1000); /* let the children set their names */

        snprintf(live, sizeof(live), "worker:%d", (int)k_worker);
        snprintf(other, sizeof(other), "worker:%d", (int)k_other);
        snprintf(dead, sizeof(dead), "worker:%d", (int)gone);
        ok(!lease_holder_gone(live, "worker", NULL), "a live knock-worker is not gone");
        ok(lease_holder_gone(other, "worker", NULL), "a live PID running something else is gone");
        ok(lease_holder_gone(dead, "worker", NULL), "a PID that no longer exists is gone");
        snprintf(h, sizeof(h), "deliver:%d", (int)k_worker);
        ok(lease_holder_gone(h, "deliver", NULL), "a knock-worker holding a deliver lease is gone");

        ok(!lease_holder_gone("worker:", "worker", NULL), "no PID: not gone");
        ok(!lease_holder_gone("worker:0", "worker", NULL), "PID 0: not gone");
        ok(!lease_holder_gone("worker:12x", "worker", NULL), "junk PID: not gone");
        ok(!lease_holder_gone("worker:99999999999", "worker", NULL), "PID out of range: not gone");
        ok(!lease_holder_gone("workers:1", "worker", NULL), "a longer role name: not gone");
        ok(!lease_holder_gone("knockctl", "worker", NULL), "not a ROLE:PID name: not gone");

        fake_holders[0] = live;
        fake_holders[1] = dead;
        fake_holders[2] = other;
        fake_holders[3] = (char *)"deliver:1";
        n_fake = 4;
        is_int(lease_take_over_gone(NULL, "worker", NULL, holders, expire, 1000, report, NULL), 0,
               "take over: 0");
        is_int(n_expired, 2, "take over: the two gone holders are expired");
        snprintf(h, sizeof(h), "%s=0/3;%s=0/3;", dead, other);
        is_str(reported, h, "take over: both reported with their counts, the live one not");
        is_int(lease_take_over_gone(NULL, "worker", NULL, holders_fail, expire, 1000, report, NULL), -EIO,
               "take over: a failing listing is returned");

        /* Hosts sharing the store: this host is "a". */
        snprintf(h, sizeof(h), "worker:%d@a", (int)getpid());
        ok(lease_holder_gone(h, "worker", "a"), "host a: our own PID on a is a previous life");
        snprintf(h, sizeof(h), "worker:%d@a", (int)k_worker);
        ok(!lease_holder_gone(h, "worker", "a"), "host a: a live knock-worker of a is not gone");
        snprintf(h, sizeof(h), "worker:%d@a", (int)gone);
        ok(lease_holder_gone(h, "worker", "a"), "host a: a PID of a that no longer exists is gone");
        snprintf(h, sizeof(h), "worker:%d@a", (int)k_other);
        ok(lease_holder_gone(h, "worker", "a"), "host a: a PID of a running something else is gone");
        snprintf(h, sizeof(h), "worker:%d@b", (int)gone);
        ok(!lease_holder_gone(h, "worker", "a"),
           "host a: host b's holder is never gone, though its PID does not exist here");
        snprintf(h, sizeof(h), "worker:%d@b", (int)getpid());
        ok(!lease_holder_gone(h, "worker", "a"), "host a: not even when it is our own PID number");
        snprintf(h, sizeof(h), "worker:%d@ab", (int)gone);
        ok(!lease_holder_gone(h, "worker", "a"), "host a: a host whose name begins with a's is b's");
        snprintf(h, sizeof(h), "worker:%d@a@a", (int)gone);
        ok(!lease_holder_gone(h, "worker", "a"), "host a: host a@a is another host");
        ok(!lease_holder_gone(dead, "worker", "a"), "host a: a holder without a host is not judged");
        snprintf(h, sizeof(h), "worker:%d@a", (int)gone);
        ok(!lease_holder_gone(h, "worker", NULL), "SQLite: a holder with a host is not judged");
        ok(!lease_holder_gone("worker:@a", "worker", "a"), "host a: no PID: not gone");
        ok(!lease_holder_gone("worker:12x@a", "worker", "a"), "host a: junk PID: not gone");
        snprintf(h, sizeof(h), "deliver:%d@a", (int)gone);
        ok(!lease_holder_gone(h, "worker", "a"), "host a: another role's holder: not gone");

        {
                char dead_a[64], dead_b[64], live_a[64];

                snprintf(dead_a, sizeof(dead_a), "worker:%d@a", (int)gone);
                snprintf(dead_b, sizeof(dead_b), "worker:%d@b", (int)gone);
                snprintf(live_a, sizeof(live_a), "worker:%d@a", (int)k_worker);
                fake_holders[0] = dead_b;
                fake_holders[1] = live_a;
                fake_holders[2] = dead_a;
                fake_holders[3] = dead;
                n_fake = 4;
                n_expired = 0;
                reported[0] = 0;
                is_int(lease_take_over_gone(NULL, "worker", "a", holders, expire, 1000, report,
                                            NULL),
                       0, "host a, take over: 0");
                snprintf(h, sizeof(h), "%s=0/3;", dead_a);
                is_str(reported, h, "host a, take over: only a's gone holder is expired");
                is_int(n_expired, 1, "host a, take over: one expiry");
        }

        {
                char id[LEASE_IDENTITY_MAX], want[LEASE_IDENTITY_MAX];
                char longhost[KNOCK_HOST_MAX + 1];

                lease_identity("worker", NULL, id);
                snprintf(want, sizeof(want), "worker:%d", (int)getpid());
                is_str(id, want, "identity on SQLite: ROLE:PID");
                memset(longhost, 'h', KNOCK_HOST_MAX);
                longhost[KNOCK_HOST_MAX] = 0;
                lease_identity("deliver", longhost, id);
                snprintf(want, sizeof(want), "deliver:%d@%s", (int)getpid(), longhost);
                is_str(id, want, "identity with the longest host: ROLE:PID@HOST, whole");
                ok(lease_holder_gone(id, "deliver", longhost), "and it is judged on its host");
        }

        /* knock_host(): read once, made safe for claim names and keys. */
        setenv("KNOCK_HOST", "rack 1\tnode\x7f", 1);
        is_str(knock_host(), "rack_1_node_", "KNOCK_HOST: blanks and control characters as _");
        setenv("KNOCK_HOST", "other", 1);
        is_str(knock_host(), "rack_1_node_", "knock_host() is read once per process");

        kill(k_worker, SIGKILL);
        kill(k_other, SIGKILL);
        (void)waitpid(k_worker, NULL, 0);
        (void)waitpid(k_other, NULL, 0);
        return tap_done();
}
