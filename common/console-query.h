/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * console-query — the read-only queries of the web console (knock-ingress's
 * admin listener) and of `knockctl probe`.
 *
 * Promises:
 *  - reads only: every function works on a connection opened with
 *    STORE_READONLY and none of them writes, so looking never takes the
 *    write lock the ingress's writer needs;
 *  - bounded: every list has a LIMIT (at most CQ_MAX_LIMIT rows), every
 *    stored blob or text that can be large comes as a prefix (bodies
 *    CQ_BODY_PREVIEW bytes, handler output and hook responses
 *    CQ_OUTPUT_PREVIEW), and cq_deadline() makes any statement that runs
 *    past it fail with SQLITE_INTERRUPT (cq_interrupted());
 *  - lists are newest first and page by a keyset cursor ("AT.ID": rows
 *    strictly older than that row), which stays cheap however deep the page;
 *  - the prepared statements' columns are the CQ_* enums below, in order;
 *    text columns are bytes as stored (client-chosen, maybe not UTF-8):
 *    whoever shows them escapes them (escape.h). The live feed alone
 *    returns JSON, with every string already escaped to valid UTF-8.
 *
 * Never logs.
 */

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"
#include "util.h"

#define CQ_MAX_LIMIT 200
#define CQ_DEFAULT_LIMIT 50
#define CQ_BODY_PREVIEW 4096
#define CQ_OUTPUT_PREVIEW 8192
#define CQ_TRACE_ROWS 200 /* of each kind in one event's trace */

/* Statements that run past until (mono_us()) are interrupted; 0: no limit. */
void cq_deadline(knock_store *s, uint64_t until_us);
bool cq_interrupted(knock_store *s);

/* A page: limit rows older than the cursor (before_at, before_id). */
typedef struct cq_page {
        int64_t before_at; /* 0: from the newest */
        char before_id[KNOCK_ID_MAX];
        int limit;         /* clamped to 1..CQ_MAX_LIMIT */
} cq_page;

/* "AT.ID" into a page's cursor; false when it is not one. */
bool cq_parse_cursor(const char *s, cq_page *p);

/* ---- events ----------------------------------------------------------------------- */

enum {
        CQ_EV_ID,
        CQ_EV_STATUS,
        CQ_EV_STATUS_REASON,
        CQ_EV_PROVIDER_ID,
        CQ_EV_TYPE,
        CQ_EV_ATTEMPTS,
        CQ_EV_RECEIVED_AT,
        CQ_EV_UPDATED_AT,
        CQ_EV_NEXT_ATTEMPT_AT,
        CQ_EV_LAST_ERROR,
        CQ_EV_FINISHED_AT,
        CQ_EV_DELIVERY_ID,
        CQ_EV_RUN_DELIVERY_ID,
        CQ_EV_CLAIMED_BY,
        CQ_EV_DELIVERIES, /* how many deliveries name it */
};

typedef struct cq_event_filter {
        const char *status;      /* one status, or NULL */
        const char *type;        /* exact event type, or NULL */
        const char *provider_id; /* exact dedupe id, or NULL */
        int64_t since, until;    /* received_at bounds in ms; 0: none */
        cq_page page;
} cq_event_filter;

int cq_events(knock_store *s, const cq_event_filter *f, db_stmt **ret);
/* One event by knock's id or the provider's (CQ_EV_* columns); SQLITE_DONE when none. */
int cq_event(knock_store *s, const char *ref, db_stmt **ret);

/* ---- one event's trace ----------------------------------------------------------------- */

/* The timeline: every delivery, attempt, hook and hook attempt of an event
 * in time order, one row each (CQ_TL_*). */
enum {
        CQ_TL_AT,
        CQ_TL_KIND, /* "delivery", "attempt", "hook", "hook_attempt" */
        CQ_TL_ID,
        CQ_TL_WHAT, /* status code, outcome, state: one word or number */
        CQ_TL_DETAIL,
        CQ_TL_DURATION_MS,
};
int cq_timeline(knock_store *s, const char *event_id, db_stmt **ret);

enum {
        CQ_DL_ID,
        CQ_DL_EVENT_ID,
        CQ_DL_RECEIVED_AT,
        CQ_DL_SIGNATURE_VALID,
        CQ_DL_VERIFY_ERROR,
        CQ_DL_HTTP_STATUS,
        CQ_DL_PROVIDER_ID,
        CQ_DL_TYPE,
        CQ_DL_REQUEST_ID,
        CQ_DL_METHOD,
        CQ_DL_URI,
        CQ_DL_REMOTE,
        CQ_DL_CONTENT_TYPE,
        CQ_DL_HEADERS,      /* JSON array of [name, value] */
        CQ_DL_BODY_PREVIEW, /* the first CQ_BODY_PREVIEW bytes */
        CQ_DL_BODY_BYTES,   /* as received */
        CQ_DL_BODY_STORED,  /* bytes stored */
        CQ_DL_DUPLICATE,
        CQ_DL_HANDSHAKE,
};
int cq_deliveries_of(knock_store *s, const char *event_id, db_stmt **ret);
/* One delivery (CQ_DL_*); SQLITE_DONE when none. */
int cq_delivery(knock_store *s, const char *id, db_stmt **ret);
/* Rejected deliveries: no event and not a handshake (CQ_DL_*). */
int cq_rejected(knock_store *s, const cq_page *p, db_stmt **ret);

enum {
        CQ_AT_ID,
        CQ_AT_ATTEMPT,
        CQ_AT_DELIVERY_ID,
        CQ_AT_WORKER,
        CQ_AT_HANDLER,
        CQ_AT_STARTED_AT,
        CQ_AT_ENDED_AT,
        CQ_AT_OUTCOME,
        CQ_AT_EXIT_CODE,
        CQ_AT_SIGNAL,
        CQ_AT_HTTP_STATUS,
        CQ_AT_ERROR,
        CQ_AT_OUTPUT, /* the first CQ_OUTPUT_PREVIEW bytes */
        CQ_AT_OUTPUT_BYTES,
};
int cq_attempts_of(knock_store *s, const char *event_id, db_stmt **ret);

enum {
        CQ_HK_ID,
        CQ_HK_EVENT_ID,
        CQ_HK_TYPE,
        CQ_HK_STATE,
        CQ_HK_ATTEMPTS,
        CQ_HK_CREATED_AT,
        CQ_HK_UPDATED_AT,
        CQ_HK_NEXT_ATTEMPT_AT,
        CQ_HK_LAST_STATUS,
        CQ_HK_LAST_ERROR,
        CQ_HK_LAST_ATTEMPT_AT,
        CQ_HK_DELIVERED_AT,
};
int cq_hooks_of(knock_store *s, const char *event_id, db_stmt **ret);
/* Hooks in a state (NULL: all), newest first (CQ_HK_*). */
int cq_hooks(knock_store *s, const char *state, const cq_page *p, db_stmt **ret);

enum {
        CQ_HA_ID,
        CQ_HA_HOOK_ID,
        CQ_HA_AT,
        CQ_HA_STATUS,
        CQ_HA_DURATION_MS,
        CQ_HA_RESPONSE, /* the first CQ_OUTPUT_PREVIEW bytes */
        CQ_HA_ERROR,
};
int cq_hook_attempts_of(knock_store *s, const char *event_id, db_stmt **ret);

/* ---- audit -------------------------------------------------------------------------------- */

enum {
        CQ_AU_ID,
        CQ_AU_AT,
        CQ_AU_ACTOR,
        CQ_AU_ACTION,
        CQ_AU_FILTERS,
        CQ_AU_COUNTS,
        CQ_AU_IDS,
};
int cq_audit(knock_store *s, const cq_page *p, db_stmt **ret);

/* ---- probe --------------------------------------------------------------------------------- */

/* The stored event whose dedupe id is provider_id: 1 with its id and status
 * (malloc'd), 0 when none, or a negative errno. */
int cq_duplicate_of(knock_store *s, const char *provider_id, char **ret_id, char **ret_status);

/* ---- the live feed ----------------------------------------------------------------------- */

#define CQ_LIVE_BATCH 50   /* rows of each kind per poll */
#define CQ_LIVE_OPEN 64    /* running attempts followed until they end */

typedef struct cq_live {
        char delivery[KNOCK_ID_MAX];     /* the newest seen of each */
        char attempt[KNOCK_ID_MAX];
        char hook_attempt[KNOCK_ID_MAX];
        char audit[KNOCK_ID_MAX];
        char open[CQ_LIVE_OPEN][KNOCK_ID_MAX]; /* attempts seen running */
        size_t n_open;
        bool started;
} cq_live;

/*
 * What happened since the last poll, as a JSON array of objects with a
 * "kind": "receipt" (a delivery stored: verified, duplicate, rejected,
 * handshake), "attempt" (a handler started, or ended with its outcome and
 * the event's status), "hook" (a hook attempt), "audit" (an operator's
 * action), "skipped" ({"receipts": N} stored beyond the batch). The first
 * poll only notes where "now" is and returns an empty array. Ids are
 * time-ordered, so each kind is a range scan of its primary key.
 */
int cq_live_poll(knock_store *s, cq_live *l, json_t **ret);
