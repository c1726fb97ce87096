/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * pause — what the worker must not claim (knockctl pause/resume,
 * knock-endpoint(5) FLOW CONTROL). Every statement on the pauses table is
 * here.
 *
 * Promises:
 *  - a pause is a row in the endpoint's database: it survives restarts of
 *    every daemon and of the machine, and every daemon and knockctl sees the
 *    same pauses. A pause names the whole endpoint (route NULL) or one event
 *    type (a route: an event type, whether or not it has a [route] section);
 *  - pausing what is paused already changes nothing (the first pause keeps
 *    its time and author); resuming what is not paused changes nothing;
 *  - while the endpoint is paused a claim takes nothing; while a route is
 *    paused a claim takes no event of that type, neither received, nor a
 *    retry that came due, nor an expired lease (events.c asks
 *    pause_claim_filter() inside its claim transaction, so a claim sees a
 *    pause committed before it began);
 *  - pause_set/pause_clear run inside the caller's transaction (knockctl's,
 *    with its audit row).
 *
 * Library code: returns 0 or a negative errno, never logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct knock_pause {
        char *route;     /* NULL: the whole endpoint */
        char *kind;      /* "operator" */
        int64_t since;   /* ms since the epoch */
        char *paused_by; /* "user(uid)" */
        char *reason;    /* the operator's words, or NULL */
} knock_pause;

/* Pauses route (NULL: the endpoint) as of now; *ret_changed (may be NULL) is
 * false when it was paused already. */
int pause_set(knock_store *s, const char *route, int64_t now, const char *by, const char *reason,
        bool *ret_changed);
/* Resumes route (NULL: the endpoint); *ret_changed false when it was not paused. */
int pause_clear(knock_store *s, const char *route, bool *ret_changed);

/* Every pause, the endpoint's first, then routes by name. The caller frees
 * the array with pause_list_free(). */
int pause_list(knock_store *s, knock_pause **ret, size_t *ret_n);
void pause_list_free(knock_pause *v, size_t n);

/*
 * What a claim must leave alone: *ret_all when the endpoint is paused;
 * otherwise *ret_routes is a JSON array of the paused event types (malloc'd;
 * NULL when none is paused: the claim needs no filter).
 */
int pause_claim_filter(knock_store *s, bool *ret_all, char **ret_routes);

/* "paused since 2026-01-31T12:00:00Z by alice(1000)" or "routes paused: a, b": one
 * line for STATUS= (empty when nothing is paused), cut to len. */
void pause_summary(const knock_pause *v, size_t n, char *buf, size_t len);
