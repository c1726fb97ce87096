/* SPDX-License-Identifier: MIT */
/*
 * fuzz-form — form_parse() on any bytes (a Twilio body, a query string).
 *
 * Beyond what ASan and UBSan catch: every name and value must lie inside
 * the parser's one buffer (or be the literal ""), and a parsed form written out again (each byte
 * but [A-Za-z0-9] as %XX) must parse to the same pairs in the same order.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void encode(const char *s, char **o)
{
        static const char hex[] = "0123456789ABCDEF";

        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;

                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                        (ch >= '0' && ch <= '9'))
                        *(*o)++ = (char)ch;
                else {
                        *(*o)++ = '%';
                        *(*o)++ = hex[ch >> 4];
                        *(*o)++ = hex[ch & 15];
                }
        }
}

/* A value "" may be a literal (a name without '='); everything else is in the buffer. */
static void check_inside(const form *f, const char *s, size_t size)
{
        if (*s && (s < f->buf || s + strlen(s) >= f->buf + size + 1)) {
                fprintf(stderr, "fuzz-form: a string outside the buffer\n");
                abort();
        }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
        _cleanup_free_ char *copy = malloc(size ? size : 1), *again = NULL;
        form f = {}, g = {};
        char *o;
        int r;

        if (!copy)
                abort();
        /* A copy of exactly size bytes, without a NUL, as a body arrives. */
        memcpy(copy, data, size);
        r = form_parse(copy, size, &f);
        if (r == -EINVAL)
                return 0;
        if (r < 0)
                abort();

        /* Decoding never lengthens, so 3 bytes per byte plus '=' and '&' are enough. */
        again = malloc(3 * size + 2 * f.n + 1);
        if (!again)
                abort();
        o = again;
        for (size_t i = 0; i < f.n; i++) {
                check_inside(&f, f.p[i].name, size);
                check_inside(&f, f.p[i].value, size);
                if (i > 0)
                        *o++ = '&';
                encode(f.p[i].name, &o);
                *o++ = '=';
                encode(f.p[i].value, &o);
        }
        if (form_parse(again, (size_t)(o - again), &g) != 0 || g.n != f.n) {
                fprintf(stderr, "fuzz-form: the written-out form does not parse the same\n");
                abort();
        }
        for (size_t i = 0; i < f.n; i++)
                if (!streq(f.p[i].name, g.p[i].name) || !streq(f.p[i].value, g.p[i].value)) {
                        fprintf(stderr, "fuzz-form: pair %zu differs after a round trip\n", i);
                        abort();
                }
        form_free(&f);
        form_free(&g);
        return 0;
}
