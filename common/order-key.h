/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * order-key — the value an event is ordered by ([worker]/[route] order_key,
 * knock-endpoint(5) FLOW CONTROL), read out of its stored body (a JSON
 * pointer's string or integer, or a urlencoded field) or its first
 * delivery's stored headers. No I/O, never logs.
 */

#include <stdbool.h>
#include <stddef.h>

/* The longest key kept; a longer value is no key (the event is not ordered). */
#define ORDER_KEY_MAX 256

/* Whether source is read from the headers ("header:NAME") rather than the body. */
bool order_key_from_headers(const char *source);

/*
 * *ret: source's value (malloc'd), or NULL when there is none (not JSON, no
 * such member, an empty or overlong value, a value that is neither a string
 * nor an integer). A "header:NAME" source reads headers, the stored JSON
 * array of [name, value] (the first NAME, case-insensitively); the others
 * read the len bytes of body. 0 or -ENOMEM.
 */
int order_key_extract(
        const char *source, const void *body, size_t len, const char *headers, char **ret);
