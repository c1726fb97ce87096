/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * form — application/x-www-form-urlencoded text (a Twilio body, a query
 * string) as decoded (name, value) pairs.
 *
 * Promises:
 *  - pairs come out in the order written; '+' decodes to a space and %XX to
 *    a byte; empty segments ("a=1&&b=2", a leading or trailing '&') are
 *    skipped; a name without '=' has the value "";
 *  - %00, and a '%' not followed by two hex digits, make the whole text
 *    malformed (-EINVAL), so every name and value is a C string;
 *  - the strings live in one buffer of n + 1 bytes (decoding never
 *    lengthens), the pairs in one array; form_free() releases both.
 *
 * Returns 0, -EINVAL or -ENOMEM; never logs.
 */

#include <stddef.h>

typedef struct form_param {
        const char *name;
        const char *value;
} form_param;

typedef struct form {
        form_param *p; /* NULL when n is 0 */
        size_t n;
        char *buf;
} form;

/* Parses the n bytes at p (no NUL needed) into *ret, untouched on failure. */
int form_parse(const char *p, size_t n, form *ret);
/* Frees what form_parse() made and zeroes *f; accepts a zeroed form. */
void form_free(form *f);
