/* SPDX-License-Identifier: MIT */
/*
 * jsonscan — the validating JSON scanner verify reads metadata with; see
 * jsonscan.h for the contract. One recursive descent over the document:
 * each value is told, for every pointer, the rest of that pointer when the
 * value lies on its path (NULL otherwise), so values off every path (most of
 * a body) are skipped without any matching.
 */
#include "jsonscan.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct jscan {
        const char *p, *end;
        size_t n; /* pointers resolved in this pass */
        json_span found[JSON_SCAN_MAX_PTRS];
        bool have[JSON_SCAN_MAX_PTRS];
} jscan;

static void js_ws(jscan *s)
{
        const char *p = s->p;

        while (p < s->end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        s->p = p;
}

/* Bytes that need no attention inside a string: everything but '"', '\\' and controls. */
static inline bool js_plain(unsigned char ch)
{
        return ch >= 0x20 && ch != '"' && ch != '\\';
}

/* At '"'. Leaves s->p after the closing quote; *raw is the text between the quotes.
 * The cursor is kept in locals: through s->p every byte load could alias it. */
static bool js_string(jscan *s, json_span *raw, bool *escaped)
{
        const char *p = s->p + 1, *end = s->end, *start = p;

        *escaped = false;
        for (;;) {
                unsigned char ch;

                /* The hot loop: most of a body is plain string bytes. Eight at a time
                 * while none is a control byte, '"' or '\\' (the classic "has a zero
                 * byte" test, (x - 0x01..) & ~x & 0x80.., exact as a yes/no). */
                while (end - p >= 8) {
                        const uint64_t ones = 0x0101010101010101ULL, highs = ones << 7;
                        uint64_t v, q, b;

                        memcpy(&v, p, 8);
                        q = v ^ (ones * '"');
                        b = v ^ (ones * '\\');
                        if ((((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b)) &
                                highs)
                                break;
                        p += 8;
                }
                while (p < end && js_plain((unsigned char)*p))
                        p++;
                if (p >= end)
                        return false;
                ch = (unsigned char)*p;
                if (ch == '"')
                        break;
                if (ch < 0x20)
                        return false;
                /* a backslash */
                *escaped = true;
                if (++p >= end)
                        return false;
                if (*p == 'u') {
                        if (end - p < 5)
                                return false;
                        for (int i = 1; i <= 4; i++)
                                if (unhexchar(p[i]) < 0)
                                        return false;
                        p += 4;
                } else if (!strchr("\"\\/bfnrt", *p) || *p == 0)
                        return false;
                p++;
        }
        *raw = (json_span){start, (size_t)(p - start)};
        s->p = p + 1;
        return true;
}

static bool js_digits(jscan *s)
{
        const char *start = s->p;

        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
                s->p++;
        return s->p > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool js_number(jscan *s)
{
        if (*s->p == '-')
                s->p++;
        if (s->p < s->end && *s->p == '0')
                s->p++;
        else if (!js_digits(s))
                return false;
        if (s->p < s->end && *s->p == '.') {
                s->p++;
                if (!js_digits(s))
                        return false;
        }
        if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
                s->p++;
                if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
                        s->p++;
                if (!js_digits(s))
                        return false;
        }
        return true;
}

/* tok is "/name/rest": when name (with ~0 ~1 unescaped) equals key, returns "/rest" (or
 * "" at the end of the pointer), else NULL. A key with escapes (rare) is decoded by
 * jansson first; key.p - 1 and key.p + key.n are its quotes. */
static const char *ptr_match_key(const char *tok, json_span key, bool escaped)
{
        const char *r = NULL;
        size_t i = 0;

        if (!tok || *tok != '/')
                return NULL;
        if (escaped) {
                json_t *j = json_loadb(key.p - 1, key.n + 2, JSON_DECODE_ANY, NULL);
                json_span decoded = {json_string_value(j), json_string_length(j)};

                if (json_is_string(j))
                        r = ptr_match_key(tok, decoded, false);
                json_decref(j);
                return r;
        }
        for (tok++; *tok && *tok != '/'; tok++) {
                char ch = *tok;
                if (ch == '~') {
                        ch = tok[1] == '0' ? '~' : tok[1] == '1' ? '/' : 0;
                        if (!ch)
                                return NULL;
                        tok++;
                }
                if (i >= key.n || key.p[i++] != ch)
                        return NULL;
        }
        return i == key.n ? tok : NULL;
}

static const char *ptr_match_index(const char *tok, size_t idx)
{
        size_t v = 0, n = 0;

        if (!tok || *tok != '/')
                return NULL;
        for (tok++; *tok >= '0' && *tok <= '9'; tok++, n++) {
                if (v > SIZE_MAX / 10 - 1)
                        return NULL;
                v = v * 10 + (size_t)(*tok - '0');
        }
        if (n == 0 || (*tok && *tok != '/') || (n > 1 && tok[-(ptrdiff_t)n] == '0'))
                return NULL;
        return v == idx ? tok : NULL;
}

/* One value. tok[i]: the rest of pointer i when this value is on its path, else NULL;
 * on_path says whether any is, so the common case (off every path) skips the matching. */
static bool js_value(jscan *s, const char *const *tok, bool on_path, int depth)
{
        const char *start;
        json_span raw;
        bool esc;

        js_ws(s);
        if (s->p >= s->end || depth > JSON_SCAN_MAX_DEPTH)
                return false;
        start = s->p;
        switch (*s->p) {
        case '{':
        case '[': {
                bool obj = *s->p == '{';
                char close = obj ? '}' : ']';
                size_t idx = 0;

                s->p++;
                js_ws(s);
                if (s->p < s->end && *s->p == close) {
                        s->p++;
                        break;
                }
                for (;; idx++) {
                        const char *child[JSON_SCAN_MAX_PTRS] = {};
                        bool child_on = false;

                        if (obj) {
                                js_ws(s);
                                if (s->p >= s->end || *s->p != '"' || !js_string(s, &raw, &esc))
                                        return false;
                                js_ws(s);
                                if (s->p >= s->end || *s->p++ != ':')
                                        return false;
                        }
                        for (size_t i = 0; on_path && i < s->n; i++) {
                                child[i] = obj ? ptr_match_key(tok[i], raw, esc)
                                               : ptr_match_index(tok[i], idx);
                                child_on |= !!child[i];
                        }
                        if (!js_value(s, child, child_on, depth + 1))
                                return false;
                        js_ws(s);
                        if (s->p < s->end && *s->p == ',') {
                                s->p++;
                                continue;
                        }
                        if (s->p < s->end && *s->p == close) {
                                s->p++;
                                break;
                        }
                        return false;
                }
                break;
        }
        case '"':
                if (!js_string(s, &raw, &esc))
                        return false;
                break;
        case 't':
        case 'f':
        case 'n': {
                const char *lit = *s->p == 't' ? "true" : *s->p == 'f' ? "false" : "null";
                size_t l = strlen(lit);
                if ((size_t)(s->end - s->p) < l || memcmp(s->p, lit, l) != 0)
                        return false;
                s->p += l;
                break;
        }
        default:
                if (!js_number(s))
                        return false;
        }
        for (size_t i = 0; on_path && i < s->n; i++)
                if (tok[i] && !*tok[i] && !s->have[i]) {
                        s->found[i] = (json_span){start, (size_t)(s->p - start)};
                        s->have[i] = true;
                }
        return true;
}

bool json_scan(const char *p, size_t len, const char *const *ptrs, size_t n_ptrs,
               json_span *found, bool *have)
{
        jscan s = {.n = MIN(n_ptrs, (size_t)JSON_SCAN_MAX_PTRS)};
        const char *tok[JSON_SCAN_MAX_PTRS] = {};
        bool valid;

        for (size_t i = 0; i < s.n; i++) {
                tok[i] = ptrs[i];
                have[i] = false;
        }
        if (!p || len == 0)
                return false;
        s.p = p;
        s.end = p + len;
        js_ws(&s);
        valid = s.p < s.end && (*s.p == '{' || *s.p == '[') && js_value(&s, tok, true, 0);
        js_ws(&s);
        if (!valid || s.p != s.end)
                return false;
        for (size_t i = 0; i < s.n; i++) {
                found[i] = s.found[i];
                have[i] = s.have[i];
        }
        return true;
}

int json_scan_text(json_span v, size_t max, char **ret)
{
        json_t *j;
        bool plain = v.n >= 2 && v.p[0] == '"';
        int r = 0;

        *ret = NULL;
        if (v.n == 0)
                return 0;
        /* The common case, plain ASCII without escapes, is copied as is. */
        for (size_t i = 1; plain && i + 1 < v.n; i++)
                plain = v.p[i] >= 0x20 && v.p[i] < 0x7f && v.p[i] != '\\';
        if (plain) {
                if (v.n == 2 || v.n - 2 > max)
                        return 0;
                *ret = strndup(v.p + 1, v.n - 2);
                return *ret ? 0 : -ENOMEM;
        }
        if (v.p[0] >= '0' && v.p[0] <= '9' && v.n <= 18 && !memchr(v.p, '.', v.n) &&
                !memchr(v.p, 'e', v.n) && !memchr(v.p, 'E', v.n)) {
                *ret = strndup(v.p, v.n);
                return *ret ? 0 : -ENOMEM;
        }
        /* Escapes, non-ASCII, negative or large numbers: jansson decodes and validates.
         * A decoded string that is empty, longer than max or holds a NUL is no text, as
         * above: an expected outcome (fuzz-verify found it reported as -ENOMEM). */
        j = json_loadb(v.p, v.n, JSON_DECODE_ANY, NULL);
        if (json_is_string(j)) {
                size_t n = json_string_length(j);
                if (n > 0 && n <= max && !memchr(json_string_value(j), 0, n)) {
                        *ret = strdup(json_string_value(j));
                        r = *ret ? 0 : -ENOMEM;
                }
        } else if (json_is_integer(j)) {
                if (asprintf(ret, "%" JSON_INTEGER_FORMAT, json_integer_value(j)) < 0) {
                        *ret = NULL;
                        r = -ENOMEM;
                }
        }
        json_decref(j);
        return r;
}
