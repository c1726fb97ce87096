/* SPDX-License-Identifier: MIT */
/*
 * form — application/x-www-form-urlencoded parsing; see form.h for the
 * contract. Runs without '%' or '+' (most of a form) are copied whole.
 */
#include "form.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* One name or value into out (at most n bytes and a NUL): '+' is a space, %XX a byte.
 * %00 is refused so the result is a C string. */
static int form_decode(const char *p, size_t n, char *out)
{
        const char *end = p + n;

        while (p < end) {
                const char *pct = memchr(p, '%', (size_t)(end - p));
                const char *stop = pct ? pct : end;
                size_t run = (size_t)(stop - p);
                int hi, lo;

                memcpy(out, p, run);
                for (char *plus = memchr(out, '+', run); plus;
                        plus = memchr(plus + 1, '+', run - (size_t)(plus + 1 - out)))
                        *plus = ' ';
                out += run;
                if (!pct)
                        break;
                if (end - pct < 3)
                        return -EINVAL;
                hi = unhexchar(pct[1]);
                lo = unhexchar(pct[2]);
                if (hi < 0 || lo < 0 || (hi | lo) == 0)
                        return -EINVAL;
                *out++ = (char)(hi << 4 | lo);
                p = pct + 3;
        }
        *out = 0;
        return 0;
}

void form_free(form *f)
{
        free(f->p);
        free(f->buf);
        *f = (form){};
}

/* Each segment's '&' (or the one extra byte) holds its last NUL, so the buffer
 * needs n + 1 bytes. */
int form_parse(const char *p, size_t n, form *ret)
{
        form f = {};
        size_t cap = 0;
        char *o;
        int r;

        f.buf = o = malloc(n + 1);
        if (!o)
                return -ENOMEM;
        while (n > 0) {
                const char *amp = memchr(p, '&', n);
                size_t seg = amp ? (size_t)(amp - p) : n;
                const char *eq = memchr(p, '=', seg);
                size_t kn = eq ? (size_t)(eq - p) : seg;

                if (seg > 0) {
                        if (f.n == cap) {
                                form_param *np = reallocarray(f.p, cap ? cap * 2 : 16, sizeof(*np));
                                if (!np) {
                                        r = -ENOMEM;
                                        goto fail;
                                }
                                f.p = np;
                                cap = cap ? cap * 2 : 16;
                        }
                        r = form_decode(p, kn, o);
                        if (r < 0)
                                goto fail;
                        f.p[f.n].name = o;
                        o += strlen(o) + 1;
                        f.p[f.n].value = "";
                        if (eq) {
                                r = form_decode(eq + 1, seg - kn - 1, o);
                                if (r < 0)
                                        goto fail;
                                f.p[f.n].value = o;
                                o += strlen(o) + 1;
                        }
                        f.n++;
                }
                if (!amp)
                        break;
                n -= seg + 1;
                p = amp + 1;
        }
        *ret = f;
        return 0;
fail:
        form_free(&f);
        return r;
}
