/* SPDX-License-Identifier: MIT */
/*
 * schedule — response classes and retry waits of completion hooks; see
 * schedule.h for the rules. Everything here is a pure function of its
 * arguments, which is what tests/unit/test-hook-schedule.c relies on.
 */
#define _GNU_SOURCE
#include "schedule.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "util.h"

hook_verdict hook_classify(int status)
{
        if (status >= 200 && status < 300)
                return HOOK_DELIVERED;
        /* No response (0), a redirect we do not follow, or a receiver
         * saying "later": try again on the schedule. */
        if (status <= 0 || status < 400 || status == 408 || status == 429 || status >= 500)
                return HOOK_RETRY;
        return HOOK_PERMANENT;
}

static bool only_space(const char *s)
{
        return s && s[strspn(s, " \t")] == 0;
}

int hook_retry_after_ms(const char *value, int64_t now_ms, int64_t *ret_ms)
{
        static const char *const formats[] = {
                "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate, the one senders must use */
                "%A, %d-%b-%y %H:%M:%S GMT", /* obsolete RFC 850 */
                "%a %b %e %H:%M:%S %Y",      /* obsolete asctime() */
        };
        char buf[64];
        uint64_t secs;
        size_t len;

        if (!value)
                return -EINVAL;
        value += strspn(value, " \t");
        len = strlen(value);
        while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
                len--;
        if (len == 0 || len >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, value, len);
        buf[len] = 0;

        if (parse_u64_strict(buf, &secs) >= 0) {
                /* Anything beyond a day is clamped by the caller anyway. */
                *ret_ms = secs > INT64_MAX / 1000 ? INT64_MAX : (int64_t)secs * 1000;
                return 0;
        }

        for (size_t i = 0; i < ELEMENTSOF(formats); i++) {
                struct tm tm = {};
                const char *end = strptime(buf, formats[i], &tm);
                time_t t;

                if (!end || !only_space(end))
                        continue;
                t = timegm(&tm);
                if (t == (time_t)-1)
                        return -EINVAL;
                *ret_ms = MAX((int64_t)t * 1000 - now_ms, 0);
                return 0;
        }
        return -EINVAL;
}

uint64_t hook_scheduled_wait_ms(const uint64_t *schedule, size_t n, uint64_t next_attempt)
{
        uint64_t i;

        if (!schedule || n == 0)
                return 0;
        i = next_attempt > 0 ? next_attempt - 1 : 0;
        return schedule[MIN(i, (uint64_t)n - 1)];
}

uint64_t hook_next_wait_ms(const uint64_t *schedule, size_t n, uint64_t next_attempt,
                           uint64_t rnd, bool slow_down, uint64_t min_slow_ms,
                           int64_t retry_after_ms)
{
        uint64_t base = hook_scheduled_wait_ms(schedule, n, next_attempt), wait;

        if (retry_after_ms >= 0) {
                /* The receiver's wish, but never sooner than the schedule
                 * (it must not hurry us) nor later than twice it (it must
                 * not park the hook for a week). */
                uint64_t ceiling = base > UINT64_MAX / 2 ? UINT64_MAX : base * 2;

                wait = (uint64_t)retry_after_ms;
                wait = MAX(wait, base);
                wait = MIN(wait, ceiling);
        } else {
                /* ±20 %: base·0.8 + a uniform part of base·0.4, so many hooks
                 * that failed together do not come back together. */
                uint64_t span = base / 100 * (2 * HOOK_JITTER_PERCENT) +
                                base % 100 * (2 * HOOK_JITTER_PERCENT) / 100;
                uint64_t low = base - span / 2;

                wait = low + (span > 0 ? rnd % (span + 1) : 0);
        }
        if (slow_down)
                wait = MAX(wait, min_slow_ms);
        return wait;
}
