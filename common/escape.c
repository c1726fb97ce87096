/* SPDX-License-Identifier: MIT */
/*
 * escape — see escape.h. One pass, one decision per character: keep it, or
 * write its escape. escape_buf() writes what fits and counts what the whole
 * text needs, so the allocating form sizes its buffer with a first pass.
 */
#include "escape.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t utf8_valid_len(const unsigned char *p, size_t left)
{
        unsigned char c = p[0], lo = 0x80, hi = 0xbf;
        size_t n;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                if (c == 0xe0)
                        lo = 0xa0;
                else if (c == 0xed)
                        hi = 0x9f; /* no UTF-16 surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                if (c == 0xf0)
                        lo = 0x90;
                else if (c == 0xf4)
                        hi = 0x8f;
        } else
                return 0;
        if (left < n)
                return 0;
        if (p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

bool utf8_valid(const char *s, size_t len)
{
        const unsigned char *p = (const unsigned char *)s;

        for (size_t i = 0; i < len;) {
                size_t n;

                if (p[i] >= 0x01 && p[i] < 0x80) { /* the common case: ASCII */
                        i++;
                        continue;
                }
                n = p[i] ? utf8_valid_len(p + i, len - i) : 0;
                if (n == 0)
                        return false;
                i += n;
        }
        return true;
}

char *utf8_lossy(const char *s, size_t len, bool nul, size_t *ret_len, bool *ret_changed)
{
        const unsigned char *p = (const unsigned char *)s;
        bool changed = false;
        size_t off = 0;
        char *buf;

        /* Worst case every byte becomes the 3-byte U+FFFD. */
        if (len > (SIZE_MAX - 1) / 3)
                return NULL;
        buf = malloc(len * 3 + 1);
        if (!buf)
                return NULL;
        for (size_t i = 0; i < len;) {
                size_t n = nul && p[i] == 0 ? 0 : utf8_valid_len(p + i, len - i);

                if (n == 0) {
                        memcpy(buf + off, "\xef\xbf\xbd", 3);
                        off += 3;
                        i++;
                        changed = true;
                } else {
                        memcpy(buf + off, p + i, n);
                        off += n;
                        i += n;
                }
        }
        buf[off] = '\0';
        if (ret_len)
                *ret_len = off;
        if (ret_changed)
                *ret_changed = changed;
        return buf;
}

static uint32_t utf8_decode(const unsigned char *p, size_t n)
{
        switch (n) {
        case 2:
                return (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
        case 3:
                return (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
        case 4:
                return (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
                       (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
        default:
                return p[0];
        }
}

/* Code points a terminal acts on, or that change how the rest of a line reads. */
static bool codepoint_is_control(uint32_t cp)
{
        return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
               (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* The escape of one ASCII byte into e (at least 7 bytes), or 0 to keep it. */
static size_t escape_ascii(unsigned char c, unsigned flags, char *e)
{
        static const char names[] = {
                ['\a'] = 'a', ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n',
                ['\v'] = 'v', ['\f'] = 'f', ['\r'] = 'r',
        };

        static const char *const html[] = {
                ['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['"'] = "&quot;", ['\''] = "&#39;",
        };

        if ((flags & ESCAPE_HTML) && c < sizeof(html) / sizeof(html[0]) && html[c])
                return (size_t)sprintf(e, "%s", html[c]);
        if ((flags & ESCAPE_KEEP_NEWLINE) && (c == '\n' || c == '\t'))
                return 0;
        if (c == '\\')
                return (size_t)sprintf(e, "\\\\");
        if (c < sizeof(names) && names[c])
                return (size_t)sprintf(e, "\\%c", names[c]);
        if (c < 0x20 || c == 0x7f)
                return (size_t)sprintf(e, "\\x%02x", c);
        return 0;
}

size_t escape_buf(const char *s, size_t len, unsigned flags, char *out, size_t out_len)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t need = 0, off = 0;
        bool full = false;

        for (size_t i = 0; i < len;) {
                char e[16];
                const char *piece;
                size_t n, plen;

                n = utf8_valid_len(p + i, len - i);
                if (n == 1) {
                        plen = escape_ascii(p[i], flags, e);
                        piece = plen ? e : (const char *)p + i;
                        plen = plen ? plen : 1;
                } else if (n == 0) {
                        n = 1;
                        plen = (size_t)sprintf(e, "\\x%02x", p[i]);
                        piece = e;
                } else if (codepoint_is_control(utf8_decode(p + i, n))) {
                        plen = (size_t)sprintf(e, "\\u%04x", (unsigned)utf8_decode(p + i, n));
                        piece = e;
                } else {
                        plen = n;
                        piece = (const char *)p + i;
                }
                /* Whole pieces only: a cut escape or UTF-8 sequence would be a new problem. */
                if (!full && off + plen < out_len) {
                        memcpy(out + off, piece, plen);
                        off += plen;
                } else
                        full = true;
                need += plen;
                i += n;
        }
        if (out_len > 0)
                out[off] = 0;
        return need;
}

char *escape_text(const char *s, size_t len, unsigned flags)
{
        size_t need = escape_buf(s, len, flags, NULL, 0);
        char *out = malloc(need + 1);

        if (!out)
                return NULL;
        escape_buf(s, len, flags, out, need + 1);
        return out;
}

static size_t put(char *out, size_t at, const char *piece, size_t n)
{
        if (out)
                memcpy(out + at, piece, n);
        return at + n;
}

static size_t put_u(char *out, size_t at, unsigned cp)
{
        static const char hex[] = "0123456789ABCDEF";
        char e[6] = {'\\', 'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15],
                     hex[cp & 15]};

        return put(out, at, e, sizeof(e));
}

size_t json_quote_ascii(const char *s, size_t len, char *out)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t at = put(out, 0, "\"", 1);

        for (size_t i = 0; i < len;) {
                size_t start = i, n;
                unsigned cp;

                /* The common case: a run of printable ASCII copied at once. */
                while (i < len && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
                        i++;
                if (i > start)
                        at = put(out, at, s + start, i - start);
                if (i == len)
                        break;
                switch (p[i]) {
                case '"': at = put(out, at, "\\\"", 2); i++; continue;
                case '\\': at = put(out, at, "\\\\", 2); i++; continue;
                case '\b': at = put(out, at, "\\b", 2); i++; continue;
                case '\f': at = put(out, at, "\\f", 2); i++; continue;
                case '\n': at = put(out, at, "\\n", 2); i++; continue;
                case '\r': at = put(out, at, "\\r", 2); i++; continue;
                case '\t': at = put(out, at, "\\t", 2); i++; continue;
                default: break;
                }
                n = p[i] < 0x80 ? 1 : utf8_valid_len(p + i, len - i);
                if (n <= 1) { /* a control, or a byte that is not UTF-8: Latin-1 */
                        at = put_u(out, at, p[i]);
                        i++;
                        continue;
                }
                cp = p[i] & (0x7f >> n);
                for (size_t k = 1; k < n; k++)
                        cp = cp << 6 | (p[i + k] & 0x3f);
                i += n;
                if (cp < 0x10000)
                        at = put_u(out, at, cp);
                else {
                        cp -= 0x10000;
                        at = put_u(out, at, 0xd800 | cp >> 10);
                        at = put_u(out, at, 0xdc00 | (cp & 0x3ff));
                }
        }
        return put(out, at, "\"", 1);
}
