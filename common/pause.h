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
 *    with its audit row);
 *  - a circuit breaker ([route] breaker =) is a pause of kind "breaker": it
 *    lets exactly one probe through once probe_at has come (the claim marks
 *    it probing in the claim's transaction), and the probe's result closes
 *    it (success) or opens it again for another cooldown. An operator's
 *    pause of the route is never turned into a breaker nor lifted by one;
 *    resume --route ends either.
 *
 * Library code: returns 0 or a negative errno, never logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct knock_pause {
        char *route;     /* NULL: the whole endpoint */
        char *kind;      /* "operator" or "breaker" */
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
 * What a claim must leave alone at now: *ret_all when the endpoint is
 * paused; otherwise *ret_routes is a JSON array of the paused event types
 * (malloc'd; NULL when none is paused: the claim needs no filter). A breaker
 * whose probe is due is not in it but in *ret_probes (may be NULL: then it
 * stays paused), each of which the claim may take once.
 */
int pause_claim_filter(knock_store *s, int64_t now, bool *ret_all, char **ret_routes,
        char ***ret_probes, size_t *ret_n_probes);

/* The claim took route's probe: no other until its result. */
int pause_breaker_probing(knock_store *s, const char *route);
/* Opens route's breaker (after `failures` failed attempts in a row) unless it is
 * paused already; *ret_opened (may be NULL) says whether it did. */
int pause_breaker_open(knock_store *s, const char *route, int64_t now, int64_t cooldown_ms,
        uint64_t failures, bool *ret_opened);
/* The probe of route ended: success closes the breaker, failure opens it again
 * for cooldown_ms. *ret_changed: 1 closed, -1 reopened, 0 no probe of a breaker. */
int pause_breaker_result(knock_store *s, const char *route, bool success, int64_t now,
        int64_t cooldown_ms, int *ret_changed);
/* The earliest probe_at of a breaker not probing (INT64_MAX: none). */
int pause_next_probe(knock_store *s, int64_t *ret);
/* A worker starts: no probe of a previous one is running any more. */
int pause_breaker_reset_probes(knock_store *s);

/* "paused since 2026-01-31T12:00:00Z by alice(1000)" or "routes paused: a, b": one
 * line for STATUS= (empty when nothing is paused), cut to len. */
void pause_summary(const knock_pause *v, size_t n, char *buf, size_t len);
