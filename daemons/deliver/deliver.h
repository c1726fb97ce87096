/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * knock-deliver internals: the daemon (main.c), the attempts and the
 * transaction that records them and claims more (pump.c), and one signed
 * hook attempt (send.c) over the shared HTTP(S) client (common/httpclient.c).
 * The hooks table is common/hooks.c's: claims, attempts and releases are
 * asked of it.
 */

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "hooks.h"
#include "httpclient.h"
#include "lease.h"
#include "list.h"
#include "listener.h"
#include "log.h"
#include "schedule.h"
#include "verify.h"

/* The first 20,000 bytes of a response body are kept with the attempt. */
#define HOOK_RESPONSE_MAX 20000

typedef struct deliverer deliverer;
typedef struct hook_send hook_send;

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
        char identity[LEASE_IDENTITY_MAX]; /* "deliver:PID[@HOST]", the claimed_by value */
        http_target target;     /* [hook] url; url NULL when none is configured */
        knock_secret *keys;     /* [hook] secrets as key bytes */
        size_t n_keys;
        uint64_t min_slow_ms;   /* wait after 429/timeout, 60 s unless tests shorten it */

        struct evdns_base *dns;
        http_pool pool;         /* keyed by the target URL */

        hook_send *running, *done;
        size_t n_running, n_done;

        struct event *ev_pump, *ev_due, *ev_wake;
        listener listener;      /* new hooks committed on other hosts (PostgreSQL) */
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
