/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * order-key — the value an event is ordered by ([worker]/[route] order_key,
 * knock-endpoint(5) FLOW CONTROL), read out of its stored body: a JSON
 * pointer's string or integer, or a urlencoded field. No I/O, never logs.
 */

#include <stddef.h>

/* The longest key kept; a longer value is no key (the event is not ordered). */
#define ORDER_KEY_MAX 256

/*
 * *ret: source's value in the len bytes of body (malloc'd), or NULL when the
 * body has none (not JSON, no such member, an empty or overlong value, a
 * value that is neither a string nor an integer). 0 or -ENOMEM.
 */
int order_key_extract(const char *source, const void *body, size_t len, char **ret);
