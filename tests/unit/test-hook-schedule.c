/* SPDX-License-Identifier: MIT */
/*
 * test-hook-schedule — knock-deliver's pure retry rules (contract §8):
 * response classes, the scheduled wait with ±20 % jitter, the minimum after
 * a 429 or a timeout, and Retry-After (seconds and HTTP dates) clamped
 * between the scheduled wait and twice it.
 *
 * The module lives with its daemon (daemons/deliver/schedule.c); it is
 * compiled into this test directly, as it has no dependency beyond util.
 */
#include "../../daemons/deliver/schedule.c"

#include "tap.h"

static const uint64_t svix[] = {
        0, 5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000,
};

static uint64_t xorshift(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static void test_classify(void)
{
        is_int(hook_classify(200), HOOK_DELIVERED, "200 delivered");
        is_int(hook_classify(204), HOOK_DELIVERED, "204 delivered");
        is_int(hook_classify(299), HOOK_DELIVERED, "299 delivered");
        is_int(hook_classify(0), HOOK_RETRY, "no response retried");
        is_int(hook_classify(301), HOOK_RETRY, "301 retried, not followed");
        is_int(hook_classify(308), HOOK_RETRY, "308 retried");
        is_int(hook_classify(408), HOOK_RETRY, "408 retried");
        is_int(hook_classify(429), HOOK_RETRY, "429 retried");
        is_int(hook_classify(500), HOOK_RETRY, "500 retried");
        is_int(hook_classify(503), HOOK_RETRY, "503 retried");
        is_int(hook_classify(599), HOOK_RETRY, "599 retried");
        is_int(hook_classify(400), HOOK_PERMANENT, "400 permanent");
        is_int(hook_classify(404), HOOK_PERMANENT, "404 permanent");
        is_int(hook_classify(410), HOOK_PERMANENT, "410 permanent");
        is_int(hook_classify(413), HOOK_PERMANENT, "413 permanent");
}

static void test_scheduled(void)
{
        is_int(hook_scheduled_wait_ms(svix, 8, 1), 0, "attempt 1 at once");
        is_int(hook_scheduled_wait_ms(svix, 8, 2), 5000, "attempt 2 after 5 s");
        is_int(hook_scheduled_wait_ms(svix, 8, 3), 300000, "attempt 3 after 5 min");
        is_int(hook_scheduled_wait_ms(svix, 8, 8), 36000000, "attempt 8 after 10 h");
        is_int(hook_scheduled_wait_ms(svix, 8, 12), 36000000, "past the schedule: last entry");
        is_int(hook_scheduled_wait_ms(svix, 0, 3), 0, "empty schedule: no wait");
}

static void test_jitter(void)
{
        uint64_t s = 0x9e3779b97f4a7c15ULL, lo = UINT64_MAX, hi = 0;
        bool inside = true;

        for (int i = 0; i < 100000; i++) {
                uint64_t w = hook_next_wait_ms(svix, 8, 3, xorshift(&s), false, 60000, -1);

                inside = inside && w >= 240000 && w <= 360000;
                lo = MIN(lo, w);
                hi = MAX(hi, w);
        }
        ok(inside, "5 min ±20 %%: every wait within [4 min, 6 min]");
        ok(lo < 245000 && hi > 355000, "jitter spans the whole range (%llu..%llu)",
           (unsigned long long)lo, (unsigned long long)hi);
        is_int(hook_next_wait_ms(svix, 8, 3, 0, false, 60000, -1), 240000, "rnd 0: -20 %%");
        is_int(hook_next_wait_ms(svix, 8, 3, 120000, false, 60000, -1), 360000,
               "rnd at the span: +20 %%");
        is_int(hook_next_wait_ms(svix, 8, 1, 12345, false, 60000, -1), 0,
               "a zero wait has no jitter");
}

static void test_slow_down(void)
{
        uint64_t s = 42;
        bool all = true;

        /* 5 s scheduled, but a 429 or a timeout waits at least 60 s. */
        for (int i = 0; i < 1000; i++)
                all = all && hook_next_wait_ms(svix, 8, 2, xorshift(&s), true, 60000, -1) == 60000;
        ok(all, "after 429/timeout a 5 s wait becomes 60 s");
        /* A longer scheduled wait is kept (with its jitter). */
        is_int(hook_next_wait_ms(svix, 8, 3, 0, true, 60000, -1), 240000,
               "after 429/timeout a 5 min wait stays jittered 5 min");
        is_int(hook_next_wait_ms(svix, 8, 2, 0, false, 60000, -1), 4000,
               "without slow-down 5 s stays 5 s -20 %%");
        is_int(hook_next_wait_ms(svix, 8, 2, 0, true, 0, -1), 4000,
               "a minimum of 0 (tests) changes nothing");
}

static void test_retry_after(void)
{
        int64_t now = 784111777000LL; /* Sun, 06 Nov 1994 08:49:37 GMT */
        int64_t ms = -1;

        is_int(hook_retry_after_ms("120", now, &ms), 0, "Retry-After seconds parses");
        is_int(ms, 120000, "120 s");
        is_int(hook_retry_after_ms(" 7 ", now, &ms), 0, "surrounding space allowed");
        is_int(ms, 7000, "7 s");
        is_int(hook_retry_after_ms("Sun, 06 Nov 1994 08:51:37 GMT", now, &ms), 0,
               "IMF-fixdate parses");
        is_int(ms, 120000, "IMF-fixdate two minutes ahead");
        is_int(hook_retry_after_ms("Sunday, 06-Nov-94 08:50:37 GMT", now, &ms), 0,
               "RFC 850 date parses");
        is_int(ms, 60000, "RFC 850 one minute ahead");
        is_int(hook_retry_after_ms("Sun Nov  6 08:49:47 1994", now, &ms), 0,
               "asctime date parses");
        is_int(ms, 10000, "asctime ten seconds ahead");
        is_int(hook_retry_after_ms("Sat, 05 Nov 1994 08:49:37 GMT", now, &ms), 0,
               "a date in the past parses");
        is_int(ms, 0, "a past date is no wait");
        ok(hook_retry_after_ms("-5", now, &ms) < 0, "negative seconds rejected");
        ok(hook_retry_after_ms("1.5", now, &ms) < 0, "fractions rejected");
        ok(hook_retry_after_ms("soon", now, &ms) < 0, "junk rejected");
        ok(hook_retry_after_ms("", now, &ms) < 0, "empty rejected");
        ok(hook_retry_after_ms("Sun, 06 Nov 1994 08:51:37 GMT+1", now, &ms) < 0,
           "trailing junk after a date rejected");

        /* Clamping into [scheduled, 2 × scheduled]: 5 min scheduled. */
        is_int(hook_next_wait_ms(svix, 8, 3, 0, false, 60000, 420000), 420000,
               "Retry-After 7 min within [5, 10] min honoured exactly (no jitter)");
        is_int(hook_next_wait_ms(svix, 8, 3, 0, false, 60000, 1000), 300000,
               "Retry-After 1 s raised to the scheduled 5 min");
        is_int(hook_next_wait_ms(svix, 8, 3, 0, false, 60000, 86400000), 600000,
               "Retry-After 1 day lowered to twice the schedule");
        is_int(hook_next_wait_ms(svix, 8, 3, 0, false, 60000, 0), 300000,
               "Retry-After 0 is the scheduled wait");
        /* With a 429: 5 s scheduled, Retry-After 8 s → 8 s, then the 60 s minimum. */
        is_int(hook_next_wait_ms(svix, 8, 2, 0, true, 60000, 8000), 60000,
               "429 with Retry-After 8 s: the 60 s minimum still applies");
        is_int(hook_next_wait_ms(svix, 8, 2, 0, true, 0, 8000), 8000,
               "429 with Retry-After 8 s and no minimum: 8 s");
        /* An HTTP date end to end. */
        ok(hook_retry_after_ms("Sun, 06 Nov 1994 08:56:37 GMT", now, &ms) == 0 &&
                   hook_next_wait_ms(svix, 8, 3, 0, false, 60000, ms) == 420000,
           "HTTP date 7 min ahead honoured");
        ok(hook_retry_after_ms("Mon, 07 Nov 1994 08:49:37 GMT", now, &ms) == 0 &&
                   hook_next_wait_ms(svix, 8, 3, 0, false, 60000, ms) == 600000,
           "HTTP date a day ahead clamped to 10 min");
}

int main(void)
{
        test_classify();
        test_scheduled();
        test_jitter();
        test_slow_down();
        test_retry_after();
        return tap_done();
}
