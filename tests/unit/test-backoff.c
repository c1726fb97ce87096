/* SPDX-License-Identifier: MIT */
/*
 * test-backoff — events_backoff_ms(): exponential ceiling, full jitter in
 * [base, ceiling], saturation at cap, no overflow for huge attempt numbers;
 * and the hook payload shape of contract §8.
 */

#include <jansson.h>
#include <stdint.h>

#include "events.h"
#include "tap.h"

int main(void)
{
        const uint64_t base = 2000, cap = 3600000;
        uint64_t lo = UINT64_MAX, hi = 0;
        _cleanup_free_ char *payload = NULL;
        json_t *o;
        int r;

        /* attempt 1: ceiling == base, no jitter possible */
        is_int(events_backoff_ms(base, cap, 1, 0), base, "attempt 1 waits base");
        is_int(events_backoff_ms(base, cap, 1, UINT64_MAX), base, "attempt 1 ignores rnd");
        /* attempt 2: uniform in [2000, 4000] */
        is_int(events_backoff_ms(base, cap, 2, 0), 2000, "attempt 2, rnd 0 → base");
        is_int(events_backoff_ms(base, cap, 2, 2000), 4000, "attempt 2, top of range → 2·base");
        is_int(events_backoff_ms(base, cap, 2, 2001), 2000, "attempt 2 wraps modulo the range");
        /* attempt 4: ceiling 16000 */
        is_int(events_backoff_ms(base, cap, 4, 14000), 16000, "attempt 4 ceiling is base·2^3");
        /* saturation */
        is_int(events_backoff_ms(base, cap, 20, cap - base), cap, "attempt 20 capped at cap");
        is_int(events_backoff_ms(base, cap, 200, cap - base), cap, "attempt 200: no overflow");
        is_int(events_backoff_ms(base, cap, UINT64_MAX, UINT64_MAX) <= cap, 1,
                "attempt UINT64_MAX stays ≤ cap");
        /* cap below base: base wins */
        is_int(events_backoff_ms(500, 100, 5, 12345), 500, "cap < base → base");
        /* attempt 0 treated as 1 */
        is_int(events_backoff_ms(base, cap, 0, 999), base, "attempt 0 behaves as 1");

        /* spread: many pseudo-random inputs cover the range and never leave it */
        for (uint64_t i = 0, x = 88172645463325252ULL; i < 10000; i++) {
                uint64_t d;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                d = events_backoff_ms(10, 50, 3, x); /* ceiling 40 */
                lo = MIN(lo, d);
                hi = MAX(hi, d);
        }
        is_int(lo, 10, "jitter reaches base");
        is_int(hi, 40, "jitter reaches the ceiling and not above");

        r = events_hook_payload(
                "demo", "evt_1", "pe_1", "invoice.paid", "dead", 3, 0, "exit status 65", &payload);
        is_int(r, 0, "hook payload builds");
        o = json_loads(payload, 0, NULL);
        ok(o != NULL, "hook payload is JSON");
        is_str(json_string_value(json_object_get(o, "type")), "knock.event.dead", "type");
        is_str(json_string_value(json_object_get(o, "endpoint")), "demo", "endpoint");
        is_str(json_string_value(json_object_get(o, "event_id")), "evt_1", "event_id");
        is_str(json_string_value(json_object_get(o, "provider_event_id")), "pe_1",
                "provider_event_id");
        is_str(json_string_value(json_object_get(o, "event_type")), "invoice.paid", "event_type");
        is_str(json_string_value(json_object_get(o, "status")), "dead", "status");
        is_int(json_integer_value(json_object_get(o, "attempts")), 3, "attempts");
        is_str(json_string_value(json_object_get(o, "finished_at")), "1970-01-01T00:00:00.000Z",
                "finished_at is RFC 3339");
        is_str(json_string_value(json_object_get(o, "last_error")), "exit status 65", "last_error");
        json_decref(o);
        free(TAKE_PTR(payload));

        r = events_hook_payload("demo", "evt_2", NULL, NULL, "handled", 1, 0, NULL, &payload);
        is_int(r, 0, "hook payload with absent values builds");
        o = json_loads(payload, 0, NULL);
        ok(o && json_is_null(json_object_get(o, "last_error")), "absent last_error is null");
        ok(o && json_is_null(json_object_get(o, "provider_event_id")),
                "absent provider_event_id is null");
        json_decref(o);

        return tap_done();
}
