/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * tap — Test Anything Protocol output for C unit tests run by meson
 * (protocol: 'tap'). ok()/is_int()/is_str() print one "ok N - what" line
 * each; tap_done() prints the plan and returns the exit status.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

/* "ok N - description" on one line: a description quoting a multi-line
 * message (a server's error) stays TAP. */
static inline __attribute__((format(printf, 2, 3))) void tap_line(int c, const char *fmt, ...)
{
        char d[4096];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(d, sizeof(d), fmt, ap);
        va_end(ap);
        for (char *p = d; *p; p++)
                if (*p == '\n' || *p == '\t')
                        *p = ' ';
        printf("%sok %d - %s\n", c ? "" : "not ", tap_n, d);
}

#define ok(cond, ...)                                                                              \
        ({                                                                                         \
                int _c = !!(cond);                                                                 \
                tap_n++;                                                                           \
                if (!_c)                                                                           \
                        tap_failed++;                                                              \
                tap_line(_c, __VA_ARGS__);                                                         \
                if (!_c)                                                                           \
                        printf("#   failed at %s:%d\n", __FILE__, __LINE__);                       \
                fflush(stdout);                                                                    \
                _c;                                                                                \
        })

#define is_int(got, want, ...)                                                                     \
        ({                                                                                         \
                long long _g = (long long)(got), _w = (long long)(want);                           \
                int _r = ok(_g == _w, __VA_ARGS__);                                                \
                if (!_r)                                                                           \
                        printf("#   got %lld, want %lld\n", _g, _w);                               \
                _r;                                                                                \
        })

#define is_str(got, want, ...)                                                                     \
        ({                                                                                         \
                const char *_g = (got), *_w = (want);                                              \
                int _r = ok(_g && _w ? strcmp(_g, _w) == 0 : _g == _w, __VA_ARGS__);               \
                if (!_r)                                                                           \
                        printf("#   got '%s', want '%s'\n", _g ? _g : "(null)",                    \
                               _w ? _w : "(null)");                                                \
                _r;                                                                                \
        })

static inline int tap_done(void)
{
        printf("1..%d\n", tap_n);
        return tap_failed ? 1 : 0;
}
