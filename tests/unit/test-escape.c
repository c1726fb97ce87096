/* SPDX-License-Identifier: MIT */
/*
 * test-escape — what reaches a terminal or a log line: controls escaped the
 * systemd way, UTF-8 kept, invalid bytes and C1/bidi controls made visible,
 * truncation only at whole pieces, and 20,000 random byte strings that never
 * leave a control byte in the output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "escape.h"
#include "tap.h"
#include "util.h"

static void check(const char *in, size_t len, unsigned flags, const char *want, const char *what)
{
        _cleanup_free_ char *got = escape_text(in, len, flags);

        is_str(got, want, "%s", what);
}

#define CHECK(in, flags, want, what) check(in, sizeof(in) - 1, flags, want, what)

int main(void)
{
        char buf[16];
        size_t need;

        CHECK("evt_123", 0, "evt_123", "plain ASCII is kept");
        CHECK("\x1b]0;PWNED\a\x1b[2J", 0, "\\x1b]0;PWNED\\a\\x1b[2J", "OSC title and clear escaped");
        CHECK("a\nb\r\tc", 0, "a\\nb\\r\\tc", "newline, CR, tab escaped");
        CHECK("a\nb\tc\rd", ESCAPE_KEEP_NEWLINE, "a\nb\tc\\rd", "KEEP_NEWLINE keeps \\n and \\t only");
        CHECK("C:\\x1b", 0, "C:\\\\x1b", "a backslash is doubled, so \\x1b reads back");
        CHECK("\x7f\x01", 0, "\\x7f\\x01", "DEL and SOH");
        CHECK("caf\xc3\xa9 \xf0\x9f\x94\x94", 0, "caf\xc3\xa9 \xf0\x9f\x94\x94", "UTF-8 kept");
        CHECK("\xc2\x9b" "2J", 0, "\\u009b2J", "C1 CSI (U+009B) escaped");
        CHECK("\xe2\x80\xae" "txt", 0, "\\u202etxt", "bidi override escaped");
        CHECK("\xe2\x80\xa8", 0, "\\u2028", "line separator escaped");
        CHECK("\x9b\xff\xc3", 0, "\\x9b\\xff\\xc3", "invalid bytes as \\xNN");
        check("a\0b", 3, 0, "a\\x00b", "NUL inside the length escaped");

        need = escape_buf("ab\x1b" "cd", 5, 0, buf, 5);
        is_int(need, 8, "escape_buf returns the length the whole text needs");
        is_str(buf, "ab", "an escape that does not fit is left out whole");
        need = escape_buf("\xc3\xa9\xc3\xa9", 4, 0, buf, 4);
        is_str(buf, "\xc3\xa9", "a UTF-8 sequence that does not fit is left out whole");
        (void)need;

        {
                unsigned char in[64];
                size_t bad = 0;

                for (int i = 0; i < 20000; i++) {
                        _cleanup_free_ char *out = NULL;
                        size_t n = (size_t)(i % 64);
                        unsigned flags = i % 2 ? ESCAPE_KEEP_NEWLINE : 0;

                        if (getrandom(in, n, 0) != (ssize_t)n)
                                n = 0;
                        out = escape_text((const char *)in, n, flags);
                        if (!out) {
                                bad++;
                                continue;
                        }
                        for (const unsigned char *p = (const unsigned char *)out; *p; p++)
                                if ((*p < 0x20 && !((flags & ESCAPE_KEEP_NEWLINE) &&
                                                          (*p == '\n' || *p == '\t'))) ||
                                        *p == 0x7f)
                                        bad++;
                        /* And the output is valid UTF-8 throughout. */
                        for (size_t k = 0, l = strlen(out); k < l;) {
                                size_t m = utf8_valid_len((const unsigned char *)out + k, l - k);

                                if (m == 0) {
                                        bad++;
                                        break;
                                }
                                k += m;
                        }
                }
                is_int(bad, 0, "20,000 random strings: no control byte survives, the output is UTF-8");
        }
        return tap_done();
}
