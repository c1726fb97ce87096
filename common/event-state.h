/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * event-state — an event's life as decisions without I/O: which statuses
 * exist, which one an attempt's outcome leads to, which ones an operator's
 * verb accepts, how long a retry waits.
 *
 * Promises:
 *  - the six statuses are one enum with one name table, event_status_names
 *    (the values of events.status, listed in the schema's CHECK constraint);
 *    the order is the order of every count by status knock prints;
 *  - event_status_after() is the worker's rule for a finished attempt:
 *    success → handled; a permanent failure → dead ("permanent_failure");
 *    any other outcome → failed, or dead ("max_attempts") when it was the
 *    last attempt allowed;
 *  - the operator's transitions (contract §7) are one table: for each verb
 *    the statuses it changes, the one it leaves as it is (counted, not
 *    changed), and the status it sets. events.c applies them; knockctl asks
 *    the table which statuses to accept and what to tell the operator;
 *  - pure functions: no I/O, no logging, no state.
 */

#include <stdbool.h>
#include <stdint.h>

typedef enum event_status {
        EVENT_STATUS_RECEIVED,
        EVENT_STATUS_PROCESSING,
        EVENT_STATUS_FAILED,
        EVENT_STATUS_DEAD,
        EVENT_STATUS_IGNORED,
        EVENT_STATUS_HANDLED,
        _EVENT_STATUS_MAX,
        _EVENT_STATUS_INVALID = -1,
} event_status;

/* "received", "processing", …, indexed by event_status. */
extern const char *const event_status_names[_EVENT_STATUS_MAX];

/* NULL for a value out of range. */
const char *event_status_to_string(event_status s);
/* _EVENT_STATUS_INVALID for NULL or an unknown name. */
event_status event_status_from_string(const char *s);
/* handled, ignored and dead: nothing more happens to them unless an operator
 * acts (so retention may prune them). */
bool event_status_is_final(event_status s);

typedef enum event_outcome {
        EVENT_OUTCOME_SUCCESS,
        EVENT_OUTCOME_TEMPFAIL,
        EVENT_OUTCOME_TIMEOUT,
        EVENT_OUTCOME_PERMANENT,
        EVENT_OUTCOME_INTERRUPTED,
        _EVENT_OUTCOME_MAX,
} event_outcome;

const char *event_outcome_to_string(event_outcome o);

/*
 * The status an event goes to after attempt number `attempt` (1-based) ended
 * with outcome o, and its status_reason (NULL when none). EVENT_STATUS_FAILED
 * means another attempt follows after events_backoff_ms().
 */
event_status event_status_after(
        event_outcome o, uint64_t attempt, uint64_t max_attempts, const char **ret_reason);

/*
 * Backoff before attempt number `attempt` + 1, after `attempt` failed
 * attempts (attempt ≥ 1): exponential with full jitter between base and
 * cap. The ceiling is base·2^(attempt-1) capped at cap; the wait is uniform
 * in [base, ceiling] using `rnd` (any 64-bit random value).
 */
uint64_t events_backoff_ms(uint64_t base, uint64_t cap, uint64_t attempt, uint64_t rnd);
/* A 64-bit random value for events_backoff_ms: xorshift64*, seeded once per
 * thread (spread, not secrecy). */
uint64_t events_jitter_random(void);

/* The operator's transitions (knockctl verbs of the same names). */
typedef enum event_op {
        EVENT_OP_REQUEUE,         /* failed|dead|ignored → received, canonical body */
        EVENT_OP_REPLAY,          /* handled → received, canonical body */
        EVENT_OP_IGNORE,          /* received|failed|dead → ignored (ignored: unchanged) */
        EVENT_OP_REPLAY_DELIVERY, /* any but processing → received, one delivery's body */
        _EVENT_OP_MAX,
} event_op;

typedef enum event_op_verdict {
        EVENT_OP_REFUSED,   /* the verb does not accept the status */
        EVENT_OP_CHANGES,   /* the verb moves the event to its target status */
        EVENT_OP_UNCHANGED, /* already what the verb asks for: counted, not changed */
} event_op_verdict;

event_op_verdict event_op_check(event_op op, event_status from);
/* The status op leaves an event in. */
event_status event_op_target(event_op op);
