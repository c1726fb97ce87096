/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * flow — the worker's bounds on handler starts ([worker] rate, [route] rate:
 * token buckets) and on running handlers of a route ([route] concurrency: a
 * count), as one claim's allowance per event type (events.h events_flow).
 *
 * Promises:
 *  - a bucket holds one second's worth of its rate (at least 1 token), is
 *    full at start and refills continuously; a claim takes a token per
 *    event, so handler starts never exceed the bucket over any window;
 *  - a route's running count goes up for each claim of its type the writer
 *    hands out (knock_claim.flow_counted) and down when that claim's slot is
 *    given back (flow_done), so it never exceeds its concurrency;
 *  - waiting for a token or a slot is no claim: the event stays as it is,
 *    no attempt is counted;
 *  - no I/O, no logging; the caller serialises every call (the writer's lock).
 */

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "events.h"

typedef struct flow_bucket {
        double tokens;
        int64_t at; /* last refill; 0: never (full) */
} flow_bucket;

typedef struct flow_route {
        char *event_type;
        size_t running;
        flow_bucket bucket;
        uint64_t failures; /* failed attempts in a row, for its breaker */
} flow_route;

typedef struct worker_flow {
        flow_route *routes; /* by event type; kept across reloads */
        size_t n_routes;
        flow_bucket bucket; /* [worker] rate */
        events_flow_limit *limits; /* one claim's, filled by flow_plan */
        size_t cap_limits;
} worker_flow;

/*
 * One claim's allowance at now: *ret lists each limited route of cfg with
 * how many of its events may start (may be 0). Returns how many claims the
 * worker's own rate allows (SIZE_MAX: no rate); out of memory, 0 (the claim
 * waits for the next cycle).
 */
size_t flow_plan(worker_flow *f, const knock_config *cfg, int64_t now, events_flow *ret);
/* After a committed claim of n events: their tokens and running counts. */
void flow_took(worker_flow *f, const knock_config *cfg, const events_flow *plan, size_t n);
/* When a bucket that held a claim back has a token again (INT64_MAX: none held). */
int64_t flow_next_token(worker_flow *f, const knock_config *cfg, const events_flow *plan,
        int64_t now);
/* A result of event_type, whose route opens its breaker after `threshold`
 * failed attempts in a row: true when this one is the threshold-th (the
 * count starts over). A success starts it over too. */
bool flow_breaker_count(worker_flow *f, const char *event_type, bool failed, uint64_t threshold);
/* A claim counted for event_type gave its slot back. */
void flow_done(worker_flow *f, const char *event_type);
void flow_free(worker_flow *f);
