/* SPDX-License-Identifier: MIT */
/*
 * fuzz-json — the JSON body scanner (json_scan, json_scan_text) beside
 * jansson.
 *
 * An input is a line of up to JSON_SCAN_MAX_PTRS RFC 6901 pointers separated
 * by spaces, then the document (any bytes, to the end).
 *
 * Beyond what ASan and UBSan catch, it aborts when the scanner disagrees
 * with jansson where both must agree: a document jansson accepts (an object
 * or array, no duplicate keys, no raw NUL byte, nested less deeply than the
 * scanner's bound)
 * must be accepted, each pointer must be found exactly when jansson finds a
 * value there, and the text of a found string or integer must be jansson's.
 * Every span found must lie inside the document.
 */

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"
#include "util.h"

#define MAX_TEXT 512 /* what verify passes */

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static _noreturn_ void fail(const char *what, const char *ptr)
{
        fprintf(stderr, "fuzz-json: %s (pointer '%s')\n", what, ptr ? ptr : "");
        abort();
}

static size_t depth(json_t *j);

/* The larger of d and v's depth (MAX() would walk v twice: exponential in the nesting). */
static size_t deeper(size_t d, json_t *v)
{
        size_t dv = depth(v);

        return dv > d ? dv : d;
}

/* Levels of containers: a scalar is 0, [] is 1. */
static size_t depth(json_t *j)
{
        size_t d = 0, i;
        const char *k;
        json_t *v;

        if (json_is_object(j))
                json_object_foreach(j, k, v) d = deeper(d, v);
        else if (json_is_array(j))
                json_array_foreach(j, i, v) d = deeper(d, v);
        else
                return 0;
        return d + 1;
}

/* RFC 6901 over jansson's tree: object keys with ~0 ~1, array indexes without leading zeros. */
static json_t *resolve(json_t *j, const char *ptr)
{
        if (*ptr && *ptr != '/')
                return NULL;
        while (j && *ptr) {
                const char *tok = ptr + 1, *end = tok + strcspn(tok, "/");

                if (json_is_object(j)) {
                        _cleanup_free_ char *key = malloc((size_t)(end - tok) + 1);
                        size_t n = 0;

                        if (!key)
                                abort();
                        for (const char *p = tok; p < end; p++) {
                                char ch = *p;

                                if (ch == '~') {
                                        ch = p[1] == '0' ? '~' : p[1] == '1' ? '/' : 0;
                                        if (!ch)
                                                return NULL;
                                        p++;
                                }
                                key[n++] = ch;
                        }
                        j = json_object_getn(j, key, n);
                } else if (json_is_array(j)) {
                        size_t idx = 0;

                        if (end == tok || (end - tok > 1 && *tok == '0') || end - tok > 9)
                                return NULL;
                        for (const char *p = tok; p < end; p++) {
                                if (*p < '0' || *p > '9')
                                        return NULL;
                                idx = idx * 10 + (size_t)(*p - '0');
                        }
                        j = json_array_get(j, idx);
                } else
                        return NULL;
                ptr = end;
        }
        return j;
}

/* What json_scan_text must give for jansson's value v. */
static char *expected_text(json_t *v)
{
        char *s = NULL;

        if (json_is_string(v)) {
                size_t n = json_string_length(v);
                if (n > 0 && n <= MAX_TEXT && !memchr(json_string_value(v), 0, n))
                        s = strdup(json_string_value(v));
        } else if (json_is_integer(v)) {
                if (asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
                        s = NULL;
        }
        return s;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
        const unsigned char *nl = memchr(data, '\n', size);
        _cleanup_free_ char *line = NULL, *doc = NULL;
        const char *ptrs[JSON_SCAN_MAX_PTRS];
        json_span found[JSON_SCAN_MAX_PTRS];
        bool have[JSON_SCAN_MAX_PTRS];
        size_t n_ptrs = 0, len;
        char *save = NULL, *w;
        json_t *ref;
        bool valid;

        if (!nl)
                return -1;
        line = strndup((const char *)data, (size_t)(nl - data));
        len = size - (size_t)(nl + 1 - data);
        doc = malloc(len); /* exactly the document, no NUL after it */
        if (!line || !doc)
                abort();
        memcpy(doc, nl + 1, len);
        for (w = strtok_r(line, " ", &save); w && n_ptrs < JSON_SCAN_MAX_PTRS;
                w = strtok_r(NULL, " ", &save))
                ptrs[n_ptrs++] = streq(w, "-") ? "" : w; /* "-": the whole document */

        valid = json_scan(doc, len, ptrs, n_ptrs, found, have);
        for (size_t i = 0; valid && i < n_ptrs; i++) {
                _cleanup_free_ char *text = NULL;

                if (!have[i])
                        continue;
                if (found[i].p < doc || found[i].p + found[i].n > doc + len || found[i].n == 0)
                        fail("a value outside the document", ptrs[i]);
                if (json_scan_text(found[i], MAX_TEXT, &text) < 0)
                        fail("json_scan_text failed", ptrs[i]);
        }

        /* A raw NUL byte is never JSON (the scanner refuses it) but confuses jansson's
         * reader, so such documents are not compared. */
        if (memchr(doc, 0, len))
                return 0;
        ref = json_loadb(doc, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
        if (!ref || depth(ref) > JSON_SCAN_MAX_DEPTH / 2) {
                json_decref(ref);
                return 0;
        }
        if (!valid)
                fail("jansson accepts a document the scanner refuses", NULL);
        for (size_t i = 0; i < n_ptrs; i++) {
                json_t *v = resolve(ref, ptrs[i]);
                _cleanup_free_ char *want = NULL, *got = NULL;

                if (!v != !have[i])
                        fail(v ? "a value jansson finds is not found"
                               : "a value jansson lacks is found",
                                ptrs[i]);
                if (!v)
                        continue;
                want = expected_text(v);
                if (json_scan_text(found[i], MAX_TEXT, &got) < 0)
                        fail("json_scan_text failed", ptrs[i]);
                if (!streq_ptr(want, got))
                        fail("the value's text differs from jansson's", ptrs[i]);
        }
        json_decref(ref);
        return 0;
}
