/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * knock-deliver internals: the daemon (main.c), the attempts and the
 * transaction that records them and claims more (pump.c), the hooks queue
 * in the endpoint database (queue.c) and one signed hook attempt (send.c)
 * over the shared HTTP(S) client (common/httpclient.c).
 */

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "httpclient.h"
#include "list.h"
#include "log.h"
#include "schedule.h"
#include "verify.h"

/* The first 20,000 bytes of a response body are kept with the attempt. */
#define HOOK_RESPONSE_MAX 20000

typedef struct deliverer deliverer;
typedef struct hook_send hook_send;

/* ---- queue.c: the hooks table ----------------------------------------------------- */

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
int hookq_claim(knock_store *s, const char *me, int64_t now, int64_t lease_until, size_t max,
                int64_t default_max_attempts, hook_claim **ret, size_t *ret_n);
/* Records attempts and new states. Inside the caller's transaction. */
int hookq_finish(knock_store *s, const char *me, int64_t now, hook_result *res, size_t n);
/* Gives claims back without counting an attempt (shutdown). */
int hookq_release(knock_store *s, const char *me, const char *const *ids, size_t n,
                  int64_t now);
/* The next time a pending hook not held by `me` becomes claimable (INT64_MAX: none). */
int hookq_next_due(knock_store *s, const char *me, int64_t now, int64_t *ret);
/* Pending hooks, and how many of them are due now. */
int hookq_pending(knock_store *s, int64_t now, int64_t *ret_pending, int64_t *ret_due);
/* Distinct claim holders, and expiring one holder's claims now. */
int hookq_holders(knock_store *s, char ***ret, size_t *ret_n);
int hookq_expire(knock_store *s, const char *holder, int64_t now, size_t *ret_n);

/* ---- send.c: one HTTP(S) attempt ---------------------------------------------------- */

struct hook_send {
        deliverer *dl;
        LIST_FIELDS(hook_send);
        hook_claim claim;

        int64_t started_at;
        uint64_t started_us;
        int64_t duration_ms;
        http_conn *conn; /* while its request is out */

        int status;
        int64_t retry_after_ms; /* < 0: none */
        bool timed_out;
        bool interrupted; /* cancelled by shutdown: released, not counted */
        char *error;
        char *response;
        size_t response_len;
};

/* Starts the attempt; on failure the send is untouched and the caller
 * completes it with the error. */
int send_start(hook_send *s);
/* Cancels a running attempt (shutdown deadline); completes it as interrupted. */
void send_cancel(hook_send *s);
/* Frees the per-attempt state (request, timer, buffers). */
void send_cleanup(hook_send *s);

/* ---- main.c and pump.c -------------------------------------------------------------- */

struct deliverer {
        knock_daemon *d;
        char identity[48];      /* "deliver:PID", the claimed_by value */
        http_target target;     /* [hook] url; url NULL when none is configured */
        knock_secret *keys;     /* [hook] secrets as key bytes */
        size_t n_keys;
        uint64_t min_slow_ms;   /* wait after 429/timeout, 60 s unless tests shorten it */

        struct evdns_base *dns;
        http_pool pool;         /* keyed by the target URL */

        hook_send *running, *done;
        size_t n_running, n_done;

        struct event *ev_pump, *ev_due, *ev_wake;
        int wake_fd;
        bool stopping;
        bool warned_no_url;

        uint64_t n_claimed, n_delivered, n_retried, n_failed, n_released, n_lost;
        log_ratelimit retry_rl;
};

/* Called by send.c when an attempt ended (any way). */
void send_complete(hook_send *s);

/* The pump's events and the wake-up socket; freed by pump_events_free. */
int pump_events_new(deliverer *dl);
void pump_events_free(deliverer *dl);
/* Cancels every attempt on the wire (they end as interrupted, their claims
 * released by the next pump); returns how many. */
size_t pump_cancel_all(deliverer *dl);
/* After the loop: cancels the attempts still on the wire, records what
 * ended and gives the cancelled claims back. */
void pump_finish_remaining(deliverer *dl);
/* Frees every attempt still held (after pump_finish_remaining). */
void pump_free_sends(deliverer *dl);
