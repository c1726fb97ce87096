/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * events-internal — what events.c (the writes) and events-read.c (the
 * reads) share of the events module; nothing outside them includes this.
 */

#include <jansson.h>
#include <sqlite3.h>

#include "events.h"

/* Table t's event is not over yet: ordered keys (order_key) wait for it. */
#define SQL_UNENDED(t)                                                                             \
        "(" t ".status = 'received' OR " t ".status = 'processing' OR " t ".status = 'failed')"

/* The kinds of claimable event, in the order a claim takes them. */
typedef enum claim_kind {
        CLAIM_RECEIVED,      /* never run: oldest first */
        CLAIM_RETRY_DUE,     /* failed, next_attempt_at come */
        CLAIM_LEASE_EXPIRED, /* processing under another holder's expired lease */
        _CLAIM_KIND_MAX,
} claim_kind;

/* A claimable row, read in full before any row is changed: SQLite leaves
 * undefined what a running SELECT sees of rows changed under it. */
typedef struct claim_candidate {
        knock_claim c;
        event_status status;
        int64_t attempts;
} claim_candidate;

/* Reads up to want candidates of kind into cands (*ret_n of them; the
 * caller clears each), with the body of the delivery that runs. paused: NULL,
 * or a JSON array of event types whose events are left alone (pause.h);
 * held: NULL, or a JSON array of order keys whose events are left alone. */
/* What a claim leaves alone at now: *ret_all when the endpoint is paused,
 * else *ret_types a JSON array (NULL: none) of the paused routes and the
 * types of flow whose allowance is used up (taken >= allow). Breakers whose
 * probe is due go to *ret_probes (pause.h; NULL: they stay excluded). */
int events_exclusions(knock_store *s, int64_t now, const events_flow *flow, bool *ret_all,
        char **ret_types, char ***ret_probes, size_t *ret_n_probes);

int events_claim_candidates(knock_store *s, claim_kind kind, const char *worker, int64_t now,
        const char *paused, const char *held, size_t want, claim_candidate *cands, size_t *ret_n);

/* Ordered keys: stores key on the event at rowid (first look) and says
 * whether an earlier event of that key, not yet handled, dead or ignored,
 * holds it. */
int events_order_check(knock_store *s, int64_t rowid, const char *key, bool *ret_held);
/* The stored headers (JSON text) of the first delivery of the event at
 * rowid, for an order_key = header:NAME; *ret NULL when it has none. */
int events_first_headers(knock_store *s, int64_t rowid, char **ret);

/* ---- shared by events.c and events-read.c ---- */

/* SQLite's unary + before a column keeps its index out of the plan; the
 * planner of PostgreSQL needs no such hint (store.c: SQL for SQLite alone). */
#define SQLITE_NO_INDEX "/*LITE{*/+/*}*/"

/* The one definition of "this event may go": final status, old enough, no
 * completion hook still waiting to be sent. Binds ?1 status, ?2 cutoff. */
#define EVENT_PRUNABLE_(plus, e)                                                                   \
        plus e ".status = ?1 AND coalesce(" e ".finished_at, " e ".updated_at) < ?2"               \
               " AND NOT EXISTS (SELECT 1 FROM hooks h WHERE h.event_id = " e ".id"                \
               " AND h.state = 'pending')"
#define EVENT_PRUNABLE(e) EVENT_PRUNABLE_("", e)
#define PRUNABLE_IDS "(SELECT id FROM events e WHERE " EVENT_PRUNABLE("e") ")"
#define ORPHAN_PRUNABLE(d) d ".event_id IS NULL AND " d ".received_at < ?2"

/* Binds ?1 = a and ?2 = b, as far as the statement has parameters. */
void events_bind_text_i64(db_stmt *st, const char *a, int64_t b);
/* Runs sql with ?1 = a and ?2 = b, and adds to *acc (may be NULL) the count
 * it yields (a SELECT count(*)) or else the rows it changed. */
int events_run_text_i64(knock_store *s, const char *sql, const char *a, int64_t b, uint64_t *acc);
/* The claim loop's planning (events-read.c). */
void events_claims_free(knock_claim *v, size_t n);
/* The limit of flow on event_type, or NULL. */
events_flow_limit *events_flow_limit_of(events_flow *flow, const char *event_type);
/* Ordered keys: whether candidate c waits for an earlier event of its key;
 * a held key joins *held (a JSON array), its text in *held_text. */
int events_order_hold(knock_store *s, const knock_config *cfg, const knock_claim *c,
        json_t **held, char **held_text, bool *ret_held);
/* The claim loop's exclusions: paused routes, used-up flow, due probes let through. */
int events_loop_exclusions(knock_store *s, int64_t now, const events_flow *flow, bool *ret_all,
        char **ret_types);
