/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * hooks — the completion-hook outbox (contract §8, §12): every statement
 * that writes hooks or hook_attempts is here, for the worker (queueing),
 * knock-deliver (claims and attempts), knockctl (re-arming) and maintenance
 * (pruning).
 *
 * Promises:
 *  - hooks_queue() inserts a pending hook inside the caller's transaction;
 *    events.c calls it in the transaction of the state change the hook
 *    reports: no state change without its hook, no hook without its state
 *    change;
 *  - a claim is a lease: claimed_by = "deliver:PID", claim_until = the end
 *    of the lease. The state stays 'pending' while the hook is sent, which
 *    is also what hooks_in_flight() (redeliver-hook) reads to refuse a hook
 *    that is on the wire. A pending hook is claimable when it is due and
 *    holds no live lease;
 *  - a lease that ran out with claimed_by still set means its holder died
 *    mid-send (kill -9, OOM, watchdog). The next claim records that lost
 *    attempt (status 0, with the holder's name) and counts it, so a hook
 *    that keeps killing its sender cannot loop for ever; the receiver may
 *    have got that request, which is why webhook-id stays the same;
 *  - hooks_finish() and hooks_claim() run inside the caller's write
 *    transaction (BEGIN IMMEDIATE, so two deliverers serialise and a hook
 *    is never claimed twice): each attempt row commits together with the
 *    hook's new state, so a hook is 'delivered' only with the attempt row
 *    that holds its 2xx, and a committed 'delivered' is never claimed again
 *    (only an operator re-arms it);
 *  - a failure only changes the hook while we still hold its claim; a 2xx
 *    is recorded even when the lease was lost meanwhile (it was delivered);
 *  - hooks_release() gives a claim back without counting an attempt.
 *
 * Hook states are the strings of the schema: pending, delivered, failed.
 * Library code: returns 0 or a negative errno, never logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event-state.h"
#include "store.h"

/* ---- queueing (the worker, inside its state change's transaction) ------------------ */

/* Whether [hook] asks for a hook when an event reaches status. */
bool hooks_wanted(const knock_config *cfg, event_status status);

/* Queues the hook reporting that event_id reached status (when hooks_wanted()),
 * inside the caller's transaction; *ret_queued says whether it did. */
int hooks_queue(knock_store *s, const knock_config *cfg, int64_t now, const char *event_id,
        const char *provider_event_id, const char *event_type, event_status status,
        int64_t attempts, const char *last_error, bool *ret_queued);

/* Builds the contract §8 hook payload (malloc'd JSON text). */
int events_hook_payload(const char *endpoint, const char *event_id, const char *provider_event_id,
        const char *event_type, const char *status, int64_t attempts, int64_t finished_at,
        const char *last_error, char **ret);

/* ---- sending (knock-deliver) ----------------------------------------------------------- */

typedef struct hook_claim {
        char *id;
        char *event_id;
        char *payload;
        int64_t attempt;      /* the attempt about to be made, 1-based */
        int64_t max_attempts;
        bool dead;            /* a lost last attempt moved it to failed: not to be sent */
        char *lost_holder;    /* the previous holder whose claim expired, or NULL */
} hook_claim;

void hook_claim_clear(hook_claim *c);

typedef struct hook_result {
        const char *id;
        int64_t attempt;
        int64_t at;            /* wall clock at the start of the attempt */
        int64_t duration_ms;
        int status;            /* 0: no response */
        const char *error;
        const char *response;
        size_t response_len;
        const char *new_state; /* "delivered", "pending" or "failed" */
        int64_t next_attempt_at; /* for "pending" */
        bool applied;          /* out: false when our claim was lost meanwhile */
} hook_result;

/* Claims up to max due hooks for `me` until lease_until. Hooks whose
 * previous holder's claim expired get a lost attempt recorded (and go to
 * failed when that was their last). Inside the caller's transaction. */
int hooks_claim(knock_store *s, const char *me, int64_t now, int64_t lease_until, size_t max,
        int64_t default_max_attempts, hook_claim **ret, size_t *ret_n);
/* Records attempts and new states. Inside the caller's transaction. */
int hooks_finish(knock_store *s, const char *me, int64_t now, hook_result *res, size_t n);
/* Gives claims back without counting an attempt (shutdown); one transaction. */
int hooks_release(knock_store *s, const char *me, const char *const *ids, size_t n, int64_t now);
/* The next time a pending hook not held by `me` becomes claimable (INT64_MAX: none). */
int hooks_next_due(knock_store *s, const char *me, int64_t now, int64_t *ret);
/* Pending hooks, and how many of them are due now. */
int hooks_pending(knock_store *s, int64_t now, int64_t *ret_pending, int64_t *ret_due);
/* Distinct claim holders, and expiring one holder's claims now (lease.h). */
int hooks_holders(knock_store *s, char ***ret, size_t *ret_n);
int hooks_expire(knock_store *s, const char *holder, int64_t now, size_t *ret_n);

/* ---- the operator (knockctl redeliver-hook), inside its transaction ------------------ */

/* 1 when hook id is being sent at now (pending under a live claim), with the
 * holder in *ret_holder (malloc'd, NULL when unknown); 0 when it is not;
 * -ENOENT when there is no such hook. */
int hooks_in_flight(knock_store *s, const char *id, int64_t now, char **ret_holder);
/* Re-arms hook id as a new series: pending, attempt_count 0, due now, no claim. */
int hooks_rearm(knock_store *s, const char *id, int64_t now);
/* The failed hooks whose last attempt lies in [since, until) (until < 0: no
 * end), oldest first (strings the caller frees). */
int hooks_failed_between(knock_store *s, int64_t since, int64_t until, char ***ret, size_t *ret_n);

/* ---- pruning (events_prune_batch) -------------------------------------------------- */

/* Deletes the hooks of the events in the prune batch (temp.prune_batch, see
 * events.h), their attempts first, adding what went to the counts. Inside
 * the caller's transaction. */
int hooks_prune_batch(knock_store *s, uint64_t *ret_hooks, uint64_t *ret_attempts);
