/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * schedule — what knock-deliver does after one hook attempt (contract §8),
 * as pure functions so they can be tested without a clock or a network:
 *
 *  - hook_classify(): 2xx delivered; 408, 429, 5xx, 3xx (never followed) and
 *    no response at all (timeout, connection or TLS error) retried; 410 and
 *    every other 4xx permanent;
 *  - hook_retry_after_ms(): a Retry-After value, delta-seconds or an HTTP
 *    date (IMF-fixdate, RFC 850 or asctime), as milliseconds from now;
 *  - hook_next_wait_ms(): the wait before the next attempt: the scheduled
 *    wait ±20 % jitter; a Retry-After replaces it but is kept between the
 *    scheduled wait and twice it; after a 429 or a timeout the wait is at
 *    least min_slow_ms (60 s in production).
 *
 * No I/O, no logging, no global state: the caller passes the random number.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOOK_JITTER_PERCENT 20
#define HOOK_MIN_SLOW_DOWN_MS (60 * 1000)

typedef enum hook_verdict {
        HOOK_DELIVERED = 0,
        HOOK_RETRY,
        HOOK_PERMANENT,
} hook_verdict;

/* status: the HTTP status, or 0 when there was no response. */
hook_verdict hook_classify(int status);

/* Parses a Retry-After value. Returns 0 with *ret_ms ≥ 0 (a date in the past
 * gives 0), or -EINVAL when the value is neither form. */
int hook_retry_after_ms(const char *value, int64_t now_ms, int64_t *ret_ms);

/* The scheduled wait before attempt `next_attempt` (1-based; the schedule's
 * entry next_attempt−1, the last entry repeated when the schedule is shorter
 * than max_attempts). */
uint64_t hook_scheduled_wait_ms(const uint64_t *schedule, size_t n, uint64_t next_attempt);

/*
 * The wait before attempt `next_attempt`.
 *   rnd          any 64-bit random number (jitter)
 *   slow_down    the attempt got a 429 or timed out
 *   min_slow_ms  the minimum wait after slow_down
 *   retry_after_ms  from the response, or < 0 when there was none
 */
uint64_t hook_next_wait_ms(const uint64_t *schedule, size_t n, uint64_t next_attempt,
                           uint64_t rnd, bool slow_down, uint64_t min_slow_ms,
                           int64_t retry_after_ms);
