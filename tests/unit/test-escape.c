/* SPDX-License-Identifier: MIT */
/*
 * test-escape — what reaches a terminal or a log line: controls escaped the
 * systemd way, UTF-8 kept, invalid bytes and C1/bidi controls made visible,
 * truncation only at whole pieces, and 20,000 random byte strings that never
 * leave a control byte in the output.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "escape.h"
#include "tap.h"
#include "util.h"

static void check(const char *in, size_t len, unsigned flags, const char *want, const char *what)
{
        _cleanup_free_ char *got = escape_text(in, len, flags);

        is_str(got, want, "%s", what);
}

#define CHECK(in, flags, want, what) check(in, sizeof(in) - 1, flags, want, what)

static char *quote(const char *s, size_t len)
{
        size_t n = json_quote_ascii(s, len, NULL);
        char *out = malloc(n + 1);

        if (out && json_quote_ascii(s, len, out) == n)
                out[n] = '\0';
        return out;
}

/* What jansson wrote with JSON_ENSURE_ASCII, for a string it accepts. */
static char *jansson_quote(const char *s, size_t len)
{
        json_t *j = json_stringn(s, len);
        char *out = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;

        json_decref(j);
        return out;
}

/* Random code points (all planes, no surrogates) as UTF-8 from the random
 * bytes in in[0..n): returns the encoded length (at most n). */
static size_t random_utf8(unsigned char *in, size_t n)
{
        unsigned char out[48];
        size_t at = 0;

        for (size_t k = 0; k + 3 < n; k += 4) {
                uint32_t cp = ((uint32_t)in[k] << 16 | (uint32_t)in[k + 1] << 8 | in[k + 2]) %
                              (in[k + 3] % 2 ? 0x110000 : 0x800);

                if (cp >= 0xd800 && cp <= 0xdfff)
                        cp = 'x';
                if (cp < 0x80)
                        out[at++] = (unsigned char)cp;
                else if (cp < 0x800) {
                        out[at++] = (unsigned char)(0xc0 | cp >> 6);
                        out[at++] = (unsigned char)(0x80 | (cp & 0x3f));
                } else if (cp < 0x10000) {
                        out[at++] = (unsigned char)(0xe0 | cp >> 12);
                        out[at++] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
                        out[at++] = (unsigned char)(0x80 | (cp & 0x3f));
                } else {
                        out[at++] = (unsigned char)(0xf0 | cp >> 18);
                        out[at++] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
                        out[at++] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
                        out[at++] = (unsigned char)(0x80 | (cp & 0x3f));
                }
        }
        memcpy(in, out, at);
        return at;
}

static void json_quote_tests(void)
{
        static const struct {
                const char *in, *want, *what;
        } cases[] = {
                {"plain", "\"plain\"", "ASCII as it is"},
                {"a\"b\\c/d", "\"a\\\"b\\\\c/d\"", "quote and backslash escaped, slash kept"},
                {"\b\f\n\r\t\x01\x1f\x7f", "\"\\b\\f\\n\\r\\t\\u0001\\u001F\x7f\"",
                 "controls named or \\u00XX, DEL kept (as jansson)"},
                {"caf\xc3\xa9", "\"caf\\u00E9\"", "UTF-8 as \\uXXXX"},
                {"\xf0\x9f\x94\x94", "\"\\uD83D\\uDD14\"", "above U+FFFF: a surrogate pair"},
                {"\xe9t\xe9 \xff\xc3", "\"\\u00E9t\\u00E9 \\u00FF\\u00C3\"",
                 "bytes that are not UTF-8 read as Latin-1"},
                {"\xed\xa0\x80", "\"\\u00ED\\u00A0\\u0080\"", "an encoded surrogate is not UTF-8"},
        };
        unsigned char in[48];
        int differ = 0, compared = 0;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                _cleanup_free_ char *got = quote(cases[i].in, strlen(cases[i].in));

                is_str(got, cases[i].want, "json_quote_ascii: %s", cases[i].what);
        }
        /* Random strings: where jansson accepts one (valid UTF-8), the
         * output is byte for byte jansson's. */
        for (int i = 0; i < 20000; i++) {
                size_t n = (size_t)(i % 48);
                _cleanup_free_ char *mine = NULL, *theirs = NULL;

                if (getrandom(in, n, 0) != (ssize_t)n)
                        n = 0;
                if (i % 3 == 0) /* mostly ASCII, for runs and escapes */
                        for (size_t k = 0; k < n; k++)
                                in[k] &= 0x7f;
                else if (i % 3 == 1) /* random code points, encoded */
                        n = random_utf8(in, n);
                theirs = jansson_quote((const char *)in, n);
                if (!theirs)
                        continue;
                mine = quote((const char *)in, n);
                compared++;
                if (!mine || strcmp(mine, theirs) != 0)
                        differ++;
        }
        ok(compared > 5000, "random strings jansson accepts: %d", compared);
        is_int(differ, 0, "json_quote_ascii writes what jansson wrote for each of them");
}

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
        CHECK("<script>alert(1)</script>", ESCAPE_HTML, "&lt;script&gt;alert(1)&lt;/script&gt;",
              "HTML: a script element becomes text");
        CHECK("\"><img src=x onerror='a&b'>", ESCAPE_HTML,
              "&quot;&gt;&lt;img src=x onerror=&#39;a&amp;b&#39;&gt;",
              "HTML: quotes and ampersand, so an attribute value cannot be closed");
        CHECK("<b>\n\x1b", ESCAPE_HTML | ESCAPE_KEEP_NEWLINE, "&lt;b&gt;\n\\x1b",
              "HTML with KEEP_NEWLINE: newline kept, ESC still escaped");

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
                        unsigned flags = (i % 2 ? ESCAPE_KEEP_NEWLINE : 0) |
                                         (i % 4 >= 2 ? ESCAPE_HTML : 0);

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
                                        *p == 0x7f || ((flags & ESCAPE_HTML) && strchr("<>\"'", *p)))
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
                is_int(bad, 0, "20,000 random strings: no control byte survives (nor < > \" ' in HTML), the "
                       "output is UTF-8");
        }
        json_quote_tests();
        {
                static const struct {
                        const char *in;
                        size_t len;
                        const char *want;
                } cases[] = {
                        {"id-\xff", 4, "id-\xef\xbf\xbd"},
                        {"a\0b", 3, "a\xef\xbf\xbd" "b"},
                        {"caf\xc3\xa9", 5, "caf\xc3\xa9"},
                        {"\xc3", 1, "\xef\xbf\xbd"},
                        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
                        {"", 0, ""},
                };

                for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                        size_t n = 99;
                        char *r = utf8_lossy(cases[i].in, cases[i].len, true, &n, NULL);

                        ok(r && n == strlen(cases[i].want) && streq(r, cases[i].want),
                           "utf8_lossy case %zu: U+FFFD for each byte that is not UTF-8, and each NUL", i);
                        ok(utf8_valid(cases[i].in, cases[i].len) == streq(cases[i].in, cases[i].want) &&
                                   (i != 1 || !utf8_valid(cases[i].in, cases[i].len)),
                           "utf8_valid case %zu", i);
                        free(r);
                }
        }
        return tap_done();
}
