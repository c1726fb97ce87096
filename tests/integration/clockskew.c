/* SPDX-License-Identifier: MIT */
/*
 * clockskew — a host whose clock is wrong, for the tests (LD_PRELOAD):
 * clock_gettime(CLOCK_REALTIME) answers KNOCK_TEST_CLOCK_SKEW_MS
 * milliseconds ahead (behind when negative), which is where knock reads the
 * wall clock (now_ms()); every other clock is left alone. test-multihost
 * runs host b's worker and deliverer under it: their leases must follow the
 * database server's clock, not this one.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

int clock_gettime(clockid_t id, struct timespec *ts);

static long long skew_ns(void)
{
        static long long v;
        static int read;

        if (!read) {
                const char *e = getenv("KNOCK_TEST_CLOCK_SKEW_MS");

                v = e ? atoll(e) * 1000000LL : 0;
                read = 1;
        }
        return v;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
        static int (*real)(clockid_t, struct timespec *);
        long long ns;
        int r;

        if (!real)
                real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
        r = real(id, ts);
        if (r != 0 || (id != CLOCK_REALTIME && id != CLOCK_REALTIME_COARSE))
                return r;
        ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + skew_ns();
        ts->tv_sec = (time_t)(ns / 1000000000LL);
        ts->tv_nsec = (long)(ns % 1000000000LL);
        return r;
}
