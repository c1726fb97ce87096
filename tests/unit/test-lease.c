/* SPDX-License-Identifier: MIT */
/*
 * test-lease — lease_holder_gone(): our own PID (a previous life), a PID
 * that no longer exists and a live PID running something else are gone; a
 * live knock-ROLE, another role's holder and malformed names are not.
 * lease_take_over_gone(): only gone holders are expired and reported.
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
        ok(lease_holder_gone(h, "worker"), "our own PID is a previous life: gone");
        ok(!lease_holder_gone(h, "deliver"), "a holder of another role is never gone");

        k_worker = child_named("knock-worker");
        k_other = child_named("sleep");
        gone = child_named(NULL);
        kill(gone, SIGKILL);
        (void)waitpid(gone, NULL, 0);
        usleep(50 * 1000); /* let the children set their names */

        snprintf(live, sizeof(live), "worker:%d", (int)k_worker);
        snprintf(other, sizeof(other), "worker:%d", (int)k_other);
        snprintf(dead, sizeof(dead), "worker:%d", (int)gone);
        ok(!lease_holder_gone(live, "worker"), "a live knock-worker is not gone");
        ok(lease_holder_gone(other, "worker"), "a live PID running something else is gone");
        ok(lease_holder_gone(dead, "worker"), "a PID that no longer exists is gone");
        snprintf(h, sizeof(h), "deliver:%d", (int)k_worker);
        ok(lease_holder_gone(h, "deliver"), "a knock-worker holding a deliver lease is gone");

        ok(!lease_holder_gone("worker:", "worker"), "no PID: not gone");
        ok(!lease_holder_gone("worker:0", "worker"), "PID 0: not gone");
        ok(!lease_holder_gone("worker:12x", "worker"), "junk PID: not gone");
        ok(!lease_holder_gone("worker:99999999999", "worker"), "PID out of range: not gone");
        ok(!lease_holder_gone("workers:1", "worker"), "a longer role name: not gone");
        ok(!lease_holder_gone("knockctl", "worker"), "not a ROLE:PID name: not gone");

        fake_holders[0] = live;
        fake_holders[1] = dead;
        fake_holders[2] = other;
        fake_holders[3] = (char *)"deliver:1";
        n_fake = 4;
        is_int(lease_take_over_gone(NULL, "worker", holders, expire, 1000, report, NULL), 0,
               "take over: 0");
        is_int(n_expired, 2, "take over: the two gone holders are expired");
        snprintf(h, sizeof(h), "%s=0/3;%s=0/3;", dead, other);
        is_str(reported, h, "take over: both reported with their counts, the live one not");
        is_int(lease_take_over_gone(NULL, "worker", holders_fail, expire, 1000, report, NULL), -EIO,
               "take over: a failing listing is returned");

        kill(k_worker, SIGKILL);
        kill(k_other, SIGKILL);
        (void)waitpid(k_worker, NULL, 0);
        (void)waitpid(k_other, NULL, 0);
        return tap_done();
}
