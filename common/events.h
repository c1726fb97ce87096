/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * events — every statement that writes events, deliveries or attempts: the
 * ingress's receipts, the worker's claims and results, the operator's
 * transitions, retention's deletes. A daemon or knockctl asks for an
 * operation here and never writes SQL for these tables; the decisions (which
 * status next, which verb accepts which status) are event-state.h's, the
 * hooks a state change queues are hooks.h's.
 *
 * Promises:
 *  - a receipt (events_store_receipt) is stored inside the caller's
 *    transaction: the ingress groups many into one COMMIT, and answers none
 *    before that COMMIT returned. A duplicate provider event id leaves the
 *    existing event exactly as it is (a dead event stays dead) and links the
 *    new delivery to it;
 *  - every worker function below is one transaction (BEGIN IMMEDIATE …
 *    COMMIT): a caller never sees half a claim or half a finish;
 *  - a claim moves events to `processing` with claimed_by = the worker's
 *    identity ("worker:PID") and claim_until = now + lease. It takes
 *    `received` events, `failed` events whose next_attempt_at has come, and
 *    `processing` events whose lease expired (the holder crashed). The claim
 *    counts the attempt (attempt_count + 1) and inserts its attempts row with
 *    outcome "running" in the same transaction, so an attempt that a crash
 *    interrupts stays visible: when its expired lease is taken over, the row
 *    becomes outcome "lost" and the event runs again (at-least-once). An
 *    event taken over that has no attempts left goes to `dead`;
 *  - an event whose type has no handler goes to `ignored` with status_reason
 *    "no_handler" during the claim; it is never returned to the caller;
 *  - finishing an attempt closes its attempts row and sets the event to
 *    `handled`, `failed` (next_attempt_at from events_backoff_ms()) or `dead`
 *    (permanent failure, or max_attempts reached). When the new status is
 *    listed in [hook] on and [hook] url is set, a hooks row (state
 *    "pending", payload as contract §8) is inserted in the SAME transaction:
 *    no state change without its hook, no hook without its state change;
 *  - a state change only applies while the caller still holds the claim
 *    (status processing, claimed_by = worker): a worker that lost its lease
 *    still records its attempt but never overwrites the new holder's state;
 *  - releasing a claim (shutdown) does not count the attempt: attempt_count
 *    goes back down, the attempts row is kept with outcome "interrupted", and
 *    the event returns to `received` (no attempt counted yet) or to `failed`
 *    due at once, so the next worker takes it immediately;
 *  - an operator's transition (events_apply_op) runs inside the caller's
 *    transaction, after the caller checked the status under the same write
 *    lock; runnable again means a new series: attempt_count 0, due now, no
 *    claim;
 *  - prune deletes an event only in a final status, old enough, with no hook
 *    still pending, and deletes its rows children first so each table's
 *    count is exact.
 *
 * Attempt outcomes (attempts.outcome): queued, running, success, tempfail
 * (exit 75, other exit codes, signals, 408/429/5xx, connection errors),
 * timeout, permanent (exit 65, other 4xx), lost, interrupted.
 *
 * The interface names no SQLite type: a second store engine plugs in here.
 * Library code: returns 0 or a negative errno, never logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event-state.h"
#include "hooks.h"
#include "store.h"
#include "util.h"

/* ---- the ingress ------------------------------------------------------------------------ */

typedef enum receipt_kind {
        RECEIPT_EVENT,     /* verified: a delivery and its event (new or existing) */
        RECEIPT_HANDSHAKE, /* a verified setup handshake: a delivery, no event */
        RECEIPT_ORPHAN,    /* rejected (401/413): a delivery linked to no event */
} receipt_kind;

/* One received request. Every pointer is bound without a copy and must
 * stay valid until events_store_receipt() returns. */
typedef struct knock_receipt {
        receipt_kind kind;
        const char *delivery_id;
        char *event_id;          /* RECEIPT_EVENT: the new event's id, KNOCK_ID_MAX bytes;
                                  * the existing event's id after a duplicate */
        int64_t received_at;
        int http_status;
        bool signature_valid;
        const char *verify_error, *provider_event_id, *event_type, *request_id;
        const char *method, *uri, *remote, *content_type, *headers_json;
        const unsigned char *body; /* NULL: no body stored (NULL column) */
        size_t body_len;           /* stored bytes */
        size_t body_bytes;         /* size as received (413: the claimed size) */
        bool duplicate;            /* out: the provider event id was known */
} knock_receipt;

/* Stores one receipt inside the caller's transaction (store_begin …
 * store_commit): its delivery, and for RECEIPT_EVENT its event, or the link
 * to the existing one (r->event_id, r->duplicate). */
int events_store_receipt(knock_store *s, knock_receipt *r);

/* Events by status, indexed by event_status. */
int events_queue_counts(knock_store *s, int64_t counts[_EVENT_STATUS_MAX]);

/* ---- the worker ------------------------------------------------------------------------- */

/* One claimed event, ready to run. */
typedef struct knock_claim {
        char id[KNOCK_ID_MAX];
        char attempt_id[KNOCK_ID_MAX];
        char *provider_event_id;
        char *event_type;
        char *delivery_id;  /* COALESCE(run_delivery_id, delivery_id): whose body runs */
        char *content_type; /* of that delivery; NULL when unknown */
        char *handler;      /* config_handler_for(event_type), duplicated */
        unsigned char *body;
        size_t body_len;
        int64_t attempt;     /* this attempt's number, 1-based */
        int64_t received_at; /* the event's receipt time */
        int64_t claimed_at;
        bool queued;         /* claimed ahead: its attempt row says "queued" until it starts */
        bool flow_counted;   /* the worker's: counted in its route's running handlers */
        bool probe;          /* a circuit breaker's probe (pause.h) */
        /* Where the rows were at the claim: a quicker way back to them than
         * the id's index. VACUUM may renumber rowids, so a rowid is only
         * used together with the id, and the id alone when they disagree. */
        int64_t event_rowid, attempt_rowid;
} knock_claim;

void knock_claim_clear(knock_claim *c);

/* Counts of what a claim did besides handing out events. */
typedef struct knock_claim_stats {
        size_t ignored;    /* no handler → ignored */
        size_t taken_over; /* expired leases taken over (attempt marked lost) */
        size_t dead;       /* taken over with no attempt left → dead */
        size_t hooks;      /* hooks rows queued */
} knock_claim_stats;

/*
 * Bounds on one claim per event type: the worker's route concurrency and
 * rate (writer.c). A type listed here is claimed at most `allow` times, and
 * only to start at once (never ahead of a free slot); its events beyond that
 * stay where they are, unclaimed and uncounted, like a paused route's, and
 * are left out of events_next_due(). `taken` is set by the claim.
 */
typedef struct events_flow_limit {
        const char *event_type;
        size_t allow;
        size_t taken;
} events_flow_limit;

typedef struct events_flow {
        events_flow_limit *v;
        size_t n;
} events_flow;

/*
 * Claims up to max events (oldest received first, then due retries, then
 * expired leases). *ret is an array of *ret_n claims (the caller clears each
 * and frees the array). stats may be NULL.
 */
int events_claim(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        int64_t lease_ms, size_t max, knock_claim **ret, size_t *ret_n, knock_claim_stats *stats);

/* Extends the lease of the given events held by worker to `until`. */
int events_renew(
        knock_store *s, const char *worker, const char *const *ids, size_t n, int64_t until);

/* The result of one attempt, filled by the runner. */
typedef struct knock_attempt_result {
        const char *event_id;
        const char *attempt_id;
        int64_t event_rowid, attempt_rowid; /* the claim's; 0: unknown */
        int64_t attempt;
        event_outcome outcome;
        int exit_code;      /* -1: none */
        int signal;         /* 0: none */
        int http_status;    /* 0: none */
        const char *error;  /* NULL on success */
        const char *output; /* captured output (already bounded), may be NULL */
        size_t output_len;
        int64_t started_at; /* when the handler started; 0: keep the claim's time */
        int64_t ended_at;

        /* set by events_finish() */
        const char *new_status;  /* "handled", "failed", "dead"; NULL when the claim was lost */
        int64_t next_attempt_at; /* for "failed" */
        bool hook_queued;
} knock_attempt_result;

/*
 * Records n attempt results and moves their events on, in one transaction.
 * *ret_hooks (may be NULL) tells how many hooks rows were queued: the caller
 * wakes the deliverer after a commit that queued some.
 */
int events_finish(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        knock_attempt_result *results, size_t n, size_t *ret_hooks);

/* A claimed-ahead attempt whose handler has started. */
typedef struct knock_started {
        char attempt_id[KNOCK_ID_MAX];
        int64_t attempt_rowid; /* the claim's; 0: unknown */
        int64_t at;
} knock_started;

/*
 * Both of the above in ONE transaction: marks the started attempts
 * "running", records n_results results, then claims up to max events
 * (results first, so their slots can be refilled). The first n_now claims
 * start at once: their attempts are "running"; the others are claimed ahead
 * of a free slot and their attempts are "queued" until a started notice.
 * Queued claims are taken only while their bodies fit in ahead_bytes.
 * One COMMIT instead of two is what lets a busy worker keep up. On failure
 * nothing is written and no claim is returned. ret may be NULL when max is 0.
 */
int events_finish_and_claim(knock_store *s, const knock_config *cfg, const char *worker,
        int64_t now, const knock_started *started, size_t n_started,
        knock_attempt_result *results, size_t n_results, size_t *ret_hooks, int64_t lease_ms,
        size_t max, size_t n_now, int64_t ahead_bytes, events_flow *flow, knock_claim **ret,
        size_t *ret_n, knock_claim_stats *stats);

/* Gives back claims without counting the attempts (shutdown). */
int events_release(knock_store *s, const char *worker, const char *const *ids,
        const char *const *attempt_ids, size_t n, int64_t now);

/* Expires every lease held by `holder` (a worker known to be gone), so the
 * next claim takes its events over at once. *ret_n: events affected. */
int events_expire_claims(knock_store *s, const char *holder, int64_t now, size_t *ret_n);

/* Distinct claimed_by values of processing events (for the start-up check). */
int events_claim_holders(knock_store *s, char ***ret, size_t *ret_n);

/* Earliest time (ms) something becomes claimable: a failed event's
 * next_attempt_at or a foreign lease's claim_until. INT64_MAX when none.
 * Events claimable now give a value ≤ now. Paused routes, and the types of
 * flow (may be NULL) whose allowance the last claim used up, are left out. */
int events_next_due(knock_store *s, const char *worker, int64_t now, const events_flow *flow,
        int64_t *ret);

/* ---- the operator (knockctl), inside the caller's transaction ------------------------- */

/* Status and holder (malloc'd, NULL when unclaimed) of event id; -ENOENT when
 * there is none. ret_claimed_by may be NULL. */
int events_get_status(knock_store *s, const char *id, event_status *ret, char **ret_claimed_by);

/* Ordered keys: event id's key (NULL: none known yet) and the earliest event of
 * that key received before it that is not handled, dead or ignored (NULL:
 * none holds it). Both malloc'd. -ENOENT when there is no such event. */
int events_order_holder(knock_store *s, const char *id, char **ret_key, char **ret_holder);

/* A stored delivery as replay-delivery needs to judge it. */
typedef struct knock_delivery_info {
        char *event_id;     /* NULL: an orphan, linked to no event */
        event_status status; /* the event's */
        char *claimed_by;   /* the event's holder, NULL when unclaimed */
        bool has_body;
        bool signature_valid;
        char *verify_error;
} knock_delivery_info;

void knock_delivery_info_clear(knock_delivery_info *d);
/* -ENOENT when there is no such delivery. */
int events_get_delivery(knock_store *s, const char *delivery_id, knock_delivery_info *ret);

/* A selection of events by query (knockctl's bulk verbs). */
typedef struct events_query {
        unsigned statuses;     /* bits 1 << event_status; never 0 */
        const char *type;      /* event_type equal to this; NULL: any */
        int64_t since, until;  /* received_at in [since, until); -1: unbounded */
} events_query;

/* The ids of the events q selects, oldest received first (strv_free). Inside
 * the caller's transaction, so what it returns is what the caller changes. */
int events_select_ids(knock_store *s, const events_query *q, char ***ret, size_t *ret_n);

/* Moves event id to event_op_target(op) (the caller checked event_op_check()
 * under the same write lock). EVENT_OP_REPLAY_DELIVERY runs delivery_id's
 * body from now on; the other verbs go back to the canonical body. */
int events_apply_op(knock_store *s, event_op op, const char *id, const char *delivery_id,
        int64_t now);

/* ---- retention ------------------------------------------------------------------------- */

/* Rows that pruning deletes (or would), by table. */
typedef struct events_pruned {
        uint64_t events, deliveries, orphans, attempts, hooks, hook_attempts;
} events_pruned;

/* Adds to *acc what pruning one class would delete now: events of a final
 * status finished before cutoff, or with status _EVENT_STATUS_INVALID the
 * orphan deliveries received before it. Inside the caller's read transaction. */
int events_prune_count(knock_store *s, event_status status, int64_t cutoff, events_pruned *acc);

/*
 * Pruning in batches. events_prune_start() makes the connection's batch
 * table (temp.prune_batch) and events_prune_stop() drops it.
 * events_prune_pick() fills it, outside any transaction (a plain read blocks
 * no writer), with up to limit rows of the class after *cursor (a string of
 * KNOCK_ID_MAX + 8 bytes, "" at first, moved to the last row picked);
 * *ret_n is 0 when the class is exhausted. events_prune_delete(), inside
 * the caller's write transaction, drops every picked row that no longer
 * qualifies (a worker or an operator may have changed it since) and deletes
 * the rest with their children, adding to *acc.
 */
int events_prune_start(knock_store *s);
void events_prune_stop(knock_store *s);
int events_prune_pick(knock_store *s, event_status status, int64_t cutoff, char *cursor,
        size_t cursor_len, unsigned limit, uint64_t *ret_n);
int events_prune_delete(knock_store *s, event_status status, int64_t cutoff, events_pruned *acc);
