/* SPDX-License-Identifier: MIT */
/*
 * fuzz-timestamp — the time and number parsers knock reads from peers and
 * operators: Retry-After (hook_retry_after_ms, knock-deliver), the one
 * RFC 3339 parser (parse_rfc3339_ms: signature headers with flags 0,
 * knockctl's times with offsets and partial forms), knockctl's
 * --since/--until (parse_time_spec) and the config grammar's durations,
 * sizes and integers (parse_duration_ms, parse_size, parse_u64_strict).
 *
 * An input is one selector byte (which parser, modulo 4; for RFC 3339 the
 * next two bits are its flags), then the text. The text reaches each parser
 * as a C string cut at its first NUL (as a header or a config value would),
 * except parse_rfc3339_ms, which gets the bytes with their length, as verify
 * passes a header span.
 *
 * Beyond what ASan and UBSan catch (signed overflow in the arithmetic above
 * all): a Retry-After wait is never negative, a parsed RFC 3339 time formats
 * back to the same millisecond (which the strict form reads), what parses
 * under some flags parses to the same time under more of them, and
 * integers, sizes and durations that parse are consistent with one another.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schedule.h"
#include "util.h"

#define NOW_MS 1700000000000LL

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static _noreturn_ void fail(const char *what)
{
        fprintf(stderr, "fuzz-timestamp: %s\n", what);
        abort();
}

static void retry_after(const char *s)
{
        int64_t ms = -1;

        if (hook_retry_after_ms(s, NOW_MS, &ms) == 0 && ms < 0)
                fail("a negative Retry-After wait");
}

static void rfc3339(const char *p, size_t n, unsigned flags)
{
        const unsigned all = RFC3339_OFFSET | RFC3339_PARTIAL;
        char buf[64];
        int64_t ms, again;

        if (parse_rfc3339_ms(p, n, flags, &ms) < 0)
                return;
        /* Years 0000-9999 and a fraction kept to the millisecond: format_rfc3339's range.
         * An offset may move a time out of those years (to -0001 or 10000, which do not
         * print in four digits), so only the times inside them are formatted. */
        if (ms >= -62167219200000LL && ms < 253402300800000LL) {
                format_rfc3339(ms, buf, sizeof(buf));
                if (parse_rfc3339_ms(buf, strlen(buf), 0, &again) < 0 || again != ms)
                        fail("an RFC 3339 time does not survive formatting");
        }
        if (parse_rfc3339_ms(p, n, all, &again) < 0 || again != ms)
                fail("an RFC 3339 time reads otherwise with more flags");
}

static void time_spec(const char *s)
{
        int64_t ms;

        (void)parse_time_spec(s, NOW_MS, &ms);
}

static void numbers(const char *s)
{
        uint64_t n, size, ms;
        char buf[32];

        /* Plain digits without leading zeros (the size and duration parsers take at most
         * 31 digits): the same bytes, the same size, the same seconds. */
        if (parse_u64_strict(s, &n) == 0 && (s[0] != '0' || s[1] == 0)) {
                snprintf(buf, sizeof(buf), "%" PRIu64, n);
                if (!streq(buf, s))
                        fail("an integer does not print back the same");
                if (parse_size(s, &size) != 0 || size != n)
                        fail("plain digits are not the same size");
                if (n <= UINT64_MAX / 1000 &&
                        (parse_duration_ms(s, false, &ms) != 0 || ms != n * 1000))
                        fail("plain digits are not the same seconds");
        }
        (void)parse_size(s, &size);
        if (parse_duration_ms(s, true, &ms) == 0 && !streq(s, "never") &&
                (parse_duration_ms(s, false, &n) != 0 || n != ms))
                fail("a duration depends on allow_never");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
        _cleanup_free_ char *text = NULL;
        size_t n;

        if (size < 1)
                return -1;
        n = size - 1;
        text = malloc(n + 1);
        if (!text)
                abort();
        memcpy(text, data + 1, n);
        text[n] = 0;

        switch (data[0] % 4) {
        case 0:
                retry_after(text);
                break;
        case 1: {
                /* exactly the bytes, so a read past them is seen */
                _cleanup_free_ char *raw = malloc(n);

                if (!raw)
                        abort();
                memcpy(raw, data + 1, n);
                rfc3339(raw, n, (data[0] >> 2) & 3);
                break;
        }
        case 2:
                time_spec(text);
                break;
        default:
                numbers(text);
        }
        return 0;
}
