/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * jsonscan — a few values out of a JSON document without building it.
 *
 * Metadata needs one or two values out of a body that is usually a kilobyte
 * or more; building a jansson DOM for that costs 5-10 HMACs, so verify scans
 * the body once with this small validating scanner, which only records where
 * the values that RFC 6901 pointers name begin and end.
 *
 * Promises:
 *  - the whole document is checked (RFC 8259 grammar; white space around
 *    it allowed): one that is not JSON yields nothing, never an error;
 *  - the top level must be an object or an array; nesting is bounded
 *    (JSON_SCAN_MAX_DEPTH), so the scan's stack is too;
 *  - of duplicate keys the first wins; a key with escapes is decoded by
 *    jansson before it is compared;
 *  - json_scan_text() copies plain ASCII strings and small integers as they
 *    are and lets jansson decode (and validate the UTF-8 of) the rest.
 *
 * Never logs.
 */

#include <stdbool.h>
#include <stddef.h>

#define JSON_SCAN_MAX_PTRS 8
#define JSON_SCAN_MAX_DEPTH 256

typedef struct json_span {
        const char *p;
        size_t n;
} json_span;

/*
 * Scans the len bytes at p for the values the n_ptrs (≤ JSON_SCAN_MAX_PTRS)
 * pointers name ("" is the whole document). Returns true when p is a JSON
 * object or array, with have[i] set and found[i] the raw text of pointer i's
 * value (quotes included for a string) for each one found; false, with
 * nothing found, otherwise.
 */
bool json_scan(const char *p, size_t len, const char *const *ptrs, size_t n_ptrs,
               json_span *found, bool *have);

/* A found value as text: a string (decoded, 1..max bytes, no NUL) or an
 * integer; *ret is NULL for anything else. 0 or -ENOMEM. */
int json_scan_text(json_span v, size_t max, char **ret);
