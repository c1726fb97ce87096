/* SPDX-License-Identifier: MIT */
/*
 * events — every statement that writes events, deliveries or attempts (see
 * events.h); the reads are in events-read.c, the decisions in event-state.c.
 *
 * The event row is the queue: its status, claimed_by and claim_until say
 * who holds it and until when, so "processing" is a committed, visible
 * state. Every transition that ends in a state listed in [hook] on queues
 * its hooks row inside the same transaction (an outbox, hooks.c): a crash
 * either loses both or keeps both, and the deliverer only ever sees hooks
 * for committed state changes.
 *
 * Ordering that matters:
 *  - receipt: the ingress's rows are written inside its batch transaction;
 *    nothing here commits, and the ingress answers only after its COMMIT;
 *  - claim: the attempts row ("running", or "queued" when claimed ahead of a
 *    free slot) and attempt_count + 1 are written with the claim and
 *    committed BEFORE the handler starts, so a handler that crashes the
 *    worker (or an OOM kill mid-handler) still counts, and a poison event
 *    eventually goes dead instead of looping forever. A queued attempt turns
 *    "running" with its real start time in a later transaction;
 *  - finish: the event update is guarded by (status, claimed_by); a worker
 *    whose lease was taken over records its attempt but leaves the event to
 *    the new holder;
 *  - prune: candidates are picked by a plain read outside the lock, then
 *    checked again by primary key under it (maint.h says why).
 *
 * Every statement comes from the connection's cache (store_cached()): the
 * ingress and the worker run the same handful for every request and event,
 * and parsing them again each time cost more than running them. Strings are
 * bound without a copy; each statement is reset when done with, so none
 * keeps a read snapshot once a call returns.
 */

#include "events-internal.h"
#include "pause.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* ---- the ingress ------------------------------------------------------------------------ */

/* The event of a verified receipt: a new row, or the existing one's id. */
static int store_event(knock_store *s, knock_receipt *r)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int k;

        /* ON CONFLICT DO NOTHING: a duplicate provider event id leaves the
         * existing event exactly as it is (a dead event stays dead). */
        k = store_cached(s,
                "INSERT INTO events(id,provider_event_id,event_type,status,delivery_id,"
                " attempt_count,received_at,updated_at,next_attempt_at)"
                " VALUES(?1,?2,?3,'received',?4,0,?5,?5,?5)"
                " ON CONFLICT(provider_event_id) DO NOTHING",
                &st);
        if (k < 0)
                return k;
        stmt_bind_text_static(st, 1, r->event_id);
        stmt_bind_text_static(st, 2, r->provider_event_id);
        stmt_bind_text_static(st, 3, r->event_type);
        stmt_bind_text_static(st, 4, r->delivery_id);
        stmt_bind_i64(st, 5, r->received_at);
        k = stmt_run(st);
        if (k < 0 || store_changes(s) > 0)
                return k;

        /* Duplicate: link this delivery to the existing event. */
        k = store_cached(s, "SELECT id FROM events WHERE provider_event_id = ?1", &st);
        if (k < 0)
                return k;
        stmt_bind_text_static(st, 1, r->provider_event_id);
        k = stmt_step(st);
        if (k <= 0)
                return k ?: -ENOENT;
        snprintf(r->event_id, KNOCK_ID_MAX, "%s", stmt_col_text(st, 0) ?: "");
        r->duplicate = true;
        return 0;
}

int events_store_receipt(knock_store *s, knock_receipt *r)
{
        _cleanup_reset_ db_stmt *st = NULL;
        bool event = r->kind == RECEIPT_EVENT;
        int k;

        r->duplicate = false;
        if (event) {
                k = store_event(s, r);
                if (k < 0)
                        return k;
        }
        k = store_cached(s,
                "INSERT INTO deliveries(id,event_id,received_at,signature_valid,verify_error,"
                " http_status,provider_event_id,event_type,request_id,method,uri,remote,"
                " content_type,headers,body,body_bytes,duplicate,handshake)"
                " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
                &st);
        if (k < 0)
                return k;
        stmt_bind_text_static(st, 1, r->delivery_id);
        stmt_bind_text_static(st, 2, event ? r->event_id : NULL);
        stmt_bind_i64(st, 3, r->received_at);
        stmt_bind_i64(st, 4, r->signature_valid);
        stmt_bind_text_static(st, 5, r->verify_error);
        stmt_bind_i64(st, 6, r->http_status);
        stmt_bind_text_static(st, 7, r->provider_event_id);
        stmt_bind_text_static(st, 8, r->event_type);
        stmt_bind_text_static(st, 9, r->request_id);
        stmt_bind_text_static(st, 10, r->method);
        stmt_bind_text_static(st, 11, r->uri);
        stmt_bind_text_static(st, 12, r->remote);
        stmt_bind_text_static(st, 13, r->content_type);
        stmt_bind_text_static(st, 14, r->headers_json);
        /* A pointer with no bytes is an empty body, NULL none stored. */
        stmt_bind_blob_static(st, 15, r->body, r->body_len);
        stmt_bind_i64(st, 16, (int64_t)r->body_bytes);
        stmt_bind_i64(st, 17, r->duplicate);
        stmt_bind_i64(st, 18, r->kind == RECEIPT_HANDSHAKE);
        return stmt_run(st);
}

/* ---- the worker: claims ----------------------------------------------------------------- */

/* An event a claim found it must not run ends now as status/reason, with
 * err (when not NULL) as its last error. */
static int end_unclaimed(knock_store *s, const char *id, event_status status, const char *reason,
        const char *err, int64_t now)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "UPDATE events SET status = ?1, status_reason = ?2, claimed_by = NULL, "
                "claim_until = NULL, next_attempt_at = NULL, "
                "last_error = COALESCE(?3, last_error), updated_at = ?4, finished_at = ?4 "
                "WHERE id = ?5",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, event_status_to_string(status));
        stmt_bind_text_static(st, 2, reason);
        stmt_bind_text_static(st, 3, err);
        stmt_bind_i64(st, 4, now);
        stmt_bind_text_static(st, 5, id);
        return stmt_run(st);
}

/* Binds ?1 = a and ?2 = b, as far as the statement has parameters. */
void events_bind_text_i64(db_stmt *st, const char *a, int64_t b)
{
        int n = stmt_param_count(st);

        if (n >= 1)
                stmt_bind_text_static(st, 1, a);
        if (n >= 2)
                stmt_bind_i64(st, 2, b);
}

/* Runs sql with ?1 = a and ?2 = b, and adds to *acc (may be NULL) the count
 * it yields (a SELECT count(*)) or else the rows it changed. */
int events_run_text_i64(knock_store *s, const char *sql, const char *a, int64_t b, uint64_t *acc)
{
        db_stmt *st = NULL;
        int r;

        r = store_cached(s, sql, &st);
        if (r < 0)
                return r;
        events_bind_text_i64(st, a, b);
        r = stmt_step(st);
        if (r > 0 && acc)
                *acc += (uint64_t)stmt_col_i64(st, 0);
        else if (r == 0 && acc)
                *acc += (uint64_t)store_changes(s);
        stmt_reset(st);
        return MIN(r, 0);
}

/* Runs sql on event id while worker still holds its claim: ?1 = v, ?2 = id,
 * ?3 = worker (the statement's guard: status processing, claimed_by ?3). */
static int update_held(knock_store *s, const char *sql, int64_t v, const char *id,
        const char *worker)
{
        db_stmt *st = NULL;
        int r;

        r = store_cached(s, sql, &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, v);
        stmt_bind_text_static(st, 2, id);
        stmt_bind_text_static(st, 3, worker);
        return stmt_run(st);
}

/* The holder of the expired lease on event id is gone: a claim it held ahead of a
 * free slot never ran (uncounted, as if never claimed), a running attempt
 * ends "lost" and counts. *attempts is the event's count, kept in step. */
static int take_over(knock_store *s, const char *id, int64_t now, int64_t *attempts)
{
        uint64_t n = 0;
        int r;

        r = events_run_text_i64(s, "DELETE FROM attempts WHERE event_id = ?1 AND outcome = 'queued'", id,
                0, &n);
        if (r >= 0 && n > 0)
                r = events_run_text_i64(s,
                        "UPDATE events SET attempt_count = CASE WHEN attempt_count > ?2"
                        " THEN attempt_count - ?2 ELSE 0 END WHERE id = ?1",
                        id, (int64_t)n, NULL);
        if (r < 0)
                return r;
        *attempts = MAX(*attempts - (int64_t)n, 0);
        return events_run_text_i64(s,
                "UPDATE attempts SET outcome = 'lost', ended_at = ?2, "
                "error = 'lease expired before the attempt finished' "
                "WHERE event_id = ?1 AND outcome = 'running'",
                id, now, NULL);
}

static int claim_one(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        int64_t lease_ms, bool queued, claim_candidate *cand, bool *ret_claimed,
        knock_claim_stats *stats)
{
        db_stmt *st = NULL;
        knock_claim *c = &cand->c;
        const char *handler, *reason;
        int r;

        *ret_claimed = false;
        if (cand->status == EVENT_STATUS_PROCESSING) {
                r = take_over(s, c->id, now, &cand->attempts);
                if (r < 0)
                        return r;
                stats->taken_over++;
                /* A lost attempt counts as a temporary failure. */
                if (event_status_after(EVENT_OUTCOME_TEMPFAIL, (uint64_t)MAX(cand->attempts, 0),
                            cfg->max_attempts, &reason) == EVENT_STATUS_DEAD) {
                        const char *err = "lease expired on the last attempt";
                        bool q;

                        r = end_unclaimed(s, c->id, EVENT_STATUS_DEAD, reason, err, now);
                        if (r < 0)
                                return r;
                        stats->dead++;
                        r = hooks_queue(s, cfg, now, c->id, c->provider_event_id, c->event_type,
                                EVENT_STATUS_DEAD, cand->attempts, err, &q);
                        stats->hooks += q;
                        return r;
                }
        }

        handler = config_handler_for(cfg, c->event_type);
        if (!handler || !handler[0]) {
                r = end_unclaimed(s, c->id, EVENT_STATUS_IGNORED, "no_handler", NULL, now);
                stats->ignored += r >= 0;
                return r;
        }

        /* By the rowid the candidate was read with, in this transaction. */
        r = store_cached(s,
                "UPDATE events SET status = 'processing', status_reason = NULL, "
                "claimed_by = ?1, claim_until = ?2, attempt_count = attempt_count + 1, "
                "updated_at = ?3 WHERE rowid = ?4",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, worker);
        stmt_bind_i64(st, 2, now + lease_ms);
        stmt_bind_i64(st, 3, now);
        stmt_bind_i64(st, 4, c->event_rowid);
        r = stmt_run(st);
        if (r < 0)
                return r;

        c->attempt = cand->attempts + 1;
        c->claimed_at = now;
        c->queued = queued;
        id_new("att", c->attempt_id);
        c->handler = strdup(handler);
        if (!c->handler)
                return -ENOMEM;

        r = store_cached(s,
                "INSERT INTO attempts (id, event_id, delivery_id, attempt, worker, "
                "handler, started_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, c->attempt_id);
        stmt_bind_text_static(st, 2, c->id);
        stmt_bind_text_static(st, 3, c->delivery_id);
        stmt_bind_i64(st, 4, c->attempt);
        stmt_bind_text_static(st, 5, worker);
        stmt_bind_text_static(st, 6, c->handler);
        stmt_bind_i64(st, 7, now);
        stmt_bind_text_static(st, 8, queued ? "queued" : "running");
        r = stmt_run(st);
        if (r < 0)
                return r;
        c->attempt_rowid = store_last_insert_rowid(s);
        *ret_claimed = true;
        return 0;
}

#define TAKE_CLAIM(c)                                                                              \
        ({                                                                                         \
                knock_claim _c_ = (c);                                                             \
                (c) = (knock_claim){};                                                             \
                _c_;                                                                               \
        })

/* Ordered keys: the key stored on the event at its first look, and whether an
 * earlier event of the key that has not ended holds it (events-internal.h). */
int events_order_check(knock_store *s, int64_t rowid, const char *key, bool *ret_held)
{
        db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "UPDATE events SET order_key = ?1 WHERE rowid = ?2 AND order_key IS DISTINCT FROM ?1", &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, key);
        stmt_bind_i64(st, 2, rowid);
        r = stmt_run(st);
        if (r < 0)
                return r;
        r = store_cached(s,
                "SELECT EXISTS (SELECT 1 FROM events h WHERE h.order_key = ?1 AND h.rowid < ?2 "
                "AND " SQL_UNENDED("h") ")",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, key);
        stmt_bind_i64(st, 2, rowid);
        r = stmt_step(st);
        if (r > 0)
                *ret_held = stmt_col_int(st, 0);
        stmt_reset(st);
        return r < 0 ? r : 0;
}

/* The claim loop, inside the caller's transaction; appends to v[*n] (room for max).
 * Claims from the n_now-th on are queued, and taken only while their bodies fit in
 * ahead_bytes (claiming ahead must not hold hundreds of large bodies in memory).
 */
/* The claim loop over the three kinds, within flow (the caller's bounds and
 * the probes). probe[i]: flow->v[i] is a breaker's probe. */
static int claim_loop(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        int64_t lease_ms, size_t max, size_t n_now, int64_t ahead_bytes, events_flow *flow,
        const bool *probe, size_t n_counted, json_t **held, knock_claim *v, size_t *n,
        knock_claim_stats *stats)
{
        _cleanup_free_ char *paused = NULL, *held_text = NULL;
        bool full = false, all_paused;
        int r = 0;

        /* A pause committed before this transaction began holds from this
         * claim on (pause.h); events already claimed run to their end. */
        r = events_loop_exclusions(s, now, flow, &all_paused, &paused);
        if (r < 0 || all_paused)
                return r;
        /* Each query is re-run while it yields rows, because rows turned
         * into ignored/dead leave room for more claims within `max`. */
        for (size_t q = 0; q < _CLAIM_KIND_MAX && *n < max && !full; q++) {
                /* Keys held in one kind may have their head in the next (a
                 * retry, an expired lease): each kind starts with none held. */
                json_decref(*held);
                *held = NULL;
                held_text = mfree(held_text);
                for (;;) {
                        claim_candidate *cands;
                        size_t seen = 0, before = *n, want = max - *n;
                        bool used_up = false;

                        cands = calloc(want, sizeof(*cands));
                        if (!cands)
                                return -ENOMEM;
                        r = events_claim_candidates(s, (claim_kind)q, worker, now, paused,
                                held_text, want, cands, &seen);
                        for (size_t i = 0; r >= 0 && i < seen; i++) {
                                bool claimed, queued = *n >= n_now, key_held;
                                events_flow_limit *lim = events_flow_limit_of(flow, cands[i].c.event_type);
                                size_t k = lim ? (size_t)(lim - flow->v) : 0;

                                /* A limited type only starts at once, within its
                                 * allowance; the rest of its events stay as they are
                                 * and the type is left out from here on. */
                                if (lim && queued)
                                        lim->allow = lim->taken;
                                if (lim && lim->taken >= lim->allow) {
                                        used_up = true;
                                        continue;
                                }
                                /* Its key's earlier event has not ended: it waits,
                                 * unclaimed, and its key is left out from here on. */
                                r = events_order_hold(s, cfg, &cands[i].c, held, &held_text, &key_held);
                                if (r < 0)
                                        break;
                                if (key_held)
                                        continue;
                                if (queued) {
                                        ahead_bytes -= (int64_t)cands[i].c.body_len;
                                        if (ahead_bytes < 0) {
                                                full = true;
                                                break;
                                        }
                                }
                                r = claim_one(s, cfg, worker, now, lease_ms, queued, &cands[i],
                                        &claimed, stats);
                                if (r >= 0 && claimed && lim && probe[k])
                                        r = pause_breaker_probing(s, lim->event_type);
                                if (r >= 0 && claimed) {
                                        cands[i].c.flow_counted = lim && k < n_counted;
                                        cands[i].c.probe = lim && probe[k];
                                        v[(*n)++] = TAKE_CLAIM(cands[i].c);
                                        if (lim && ++lim->taken >= lim->allow)
                                                used_up = true;
                                }
                        }
                        for (size_t i = 0; i < seen; i++)
                                knock_claim_clear(&cands[i].c);
                        free(cands);
                        if (r < 0)
                                return r;
                        /* A type used up: the next query leaves it out. */
                        if (used_up) {
                                paused = mfree(paused);
                                r = events_loop_exclusions(s, now, flow, &all_paused, &paused);
                                if (r < 0)
                                        return r;
                        }
                        /* Stop when this kind is exhausted, or every row seen
                         * was claimed (the limit was the bound). */
                        if (full || seen == 0 || *n >= max || (*n - before == seen && !used_up))
                                break;
                }
        }
        return 0;
}

/*
 * The claim, inside the caller's transaction. A breaker whose probe is due
 * (pause.h) joins the caller's bounds with an allowance of one; the
 * caller's entries get their `taken` back.
 */
static int claim_in_tx(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        int64_t lease_ms, size_t max, size_t n_now, int64_t ahead_bytes, events_flow *flow,
        knock_claim *v, size_t *n, knock_claim_stats *stats)
{
        _cleanup_free_ char *excluded = NULL;
        _cleanup_free_ events_flow_limit *lv = NULL;
        _cleanup_free_ bool *probe = NULL;
        json_t *held = NULL;
        size_t n_flow = flow ? flow->n : 0, n_probes = 0;
        char **probes = NULL;
        events_flow all;
        bool all_paused;
        int r;

        r = events_exclusions(s, now, flow, &all_paused, &excluded, &probes, &n_probes);
        if (r < 0 || all_paused)
                goto out;
        lv = calloc(n_flow + n_probes + 1, sizeof(*lv));
        probe = calloc(n_flow + n_probes + 1, sizeof(*probe));
        if (!lv || !probe) {
                r = -ENOMEM;
                goto out;
        }
        if (n_flow > 0)
                memcpy(lv, flow->v, n_flow * sizeof(*lv));
        all = (events_flow){.v = lv, .n = n_flow};
        for (size_t i = 0; i < n_probes; i++) {
                events_flow_limit *l = events_flow_limit_of(&all, probes[i]);

                if (!l) {
                        l = &lv[all.n++];
                        *l = (events_flow_limit){.event_type = probes[i], .allow = 1};
                }
                l->allow = MIN(l->allow, (size_t)1);
                probe[l - lv] = true;
        }
        r = claim_loop(s, cfg, worker, now, lease_ms, max, n_now, ahead_bytes, &all, probe, n_flow,
                &held, v, n, stats);
        json_decref(held);
        for (size_t i = 0; i < n_flow; i++)
                flow->v[i].taken = lv[i].taken;
out:
        strv_free(probes, n_probes);
        return r;
}

int events_claim(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        int64_t lease_ms, size_t max, knock_claim **ret, size_t *ret_n, knock_claim_stats *stats)
{
        return events_finish_and_claim(s, cfg, worker, now, NULL, 0, NULL, 0, NULL, lease_ms, max,
                max, 0, NULL, ret, ret_n, stats);
}

int events_renew(
        knock_store *s, const char *worker, const char *const *ids, size_t n, int64_t until)
{
        int r;

        if (n == 0)
                return 0;
        r = store_begin(s);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = update_held(s,
                        "UPDATE events SET claim_until = ?1 WHERE id = ?2 AND "
                        "status = 'processing' AND claimed_by = ?3",
                        until, ids[i], worker);
        return store_end(s, r);
}

/* ---- the worker: results ---------------------------------------------------------------- */

/* Records the attempt, which happened whatever became of the claim: by the
 * claim's rowid when it still holds this attempt, else by id. */
static int finish_attempt(knock_store *s, int64_t now, const knock_attempt_result *res)
{
#define FINISH_ATTEMPT                                                                             \
        "UPDATE attempts SET ended_at = ?1, outcome = ?2, exit_code = ?3, "                        \
        "signal = ?4, http_status = ?5, error = ?6, output = ?7, "                                 \
        "started_at = COALESCE(?9, started_at) WHERE id = ?8"
        for (int by_rowid = res->attempt_rowid > 0; by_rowid >= 0; by_rowid--) {
                db_stmt *st = NULL;
                int r;

                r = store_cached(s, by_rowid ? FINISH_ATTEMPT " AND rowid = ?10" : FINISH_ATTEMPT,
                        &st);
                if (r < 0)
                        return r;
                stmt_bind_i64(st, 1, res->ended_at > 0 ? res->ended_at : now);
                stmt_bind_text_static(st, 2, event_outcome_to_string(res->outcome));
                stmt_bind_i64_or_null(st, 3, res->exit_code);
                if (res->signal > 0)
                        stmt_bind_i64(st, 4, res->signal);
                if (res->http_status > 0)
                        stmt_bind_i64(st, 5, res->http_status);
                stmt_bind_text_static(st, 6, res->error);
                stmt_bind_text_len_static(st, 7, res->output, res->output_len);
                stmt_bind_text_static(st, 8, res->attempt_id);
                if (res->started_at > 0)
                        stmt_bind_i64(st, 9, res->started_at);
                if (by_rowid)
                        stmt_bind_i64(st, 10, res->attempt_rowid);
                r = stmt_run(st);
                if (r < 0 || store_changes(s) > 0)
                        return r;
        }
        return 0;
}

static int finish_one(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        knock_attempt_result *res, bool *ret_hook)
{
        _cleanup_reset_ db_stmt *st = NULL;
        _cleanup_free_ char *provider_event_id = NULL, *type = NULL, *last = NULL;
        const char *reason;
        event_status status;
        bool want_hook;
        int64_t next = -1;
        int r;

        *ret_hook = false;
        res->new_status = NULL;
        res->hook_queued = false;

        r = finish_attempt(s, now, res);
        if (r < 0)
                return r;
        status = event_status_after(res->outcome, (uint64_t)MAX(res->attempt, 0),
                cfg->max_attempts, &reason);
        if (status == EVENT_STATUS_FAILED)
                next = now + (int64_t)events_backoff_ms(cfg->backoff_base_ms, cfg->backoff_cap_ms,
                                     (uint64_t)res->attempt, events_jitter_random());

#define FINISH_UPDATE                                                                              \
        "UPDATE events SET status = ?1, status_reason = ?2, claimed_by = NULL, "                   \
        "claim_until = NULL, next_attempt_at = ?3, "                                               \
        "last_error = COALESCE(?4, last_error), updated_at = ?5, "                                 \
        "finished_at = CASE WHEN ?1 IN ('handled', 'dead') THEN ?5 END "                           \
        "WHERE id = ?6 AND status = 'processing' AND claimed_by = ?7"
#define FINISH_RETURNING " RETURNING provider_event_id, event_type, last_error"

        /* RETURNING (an ephemeral table per statement) only when the hook
         * payload needs the row; otherwise the change count tells whether
         * the claim was still ours. */
        want_hook = hooks_wanted(cfg, status);
        /* By the claim's rowid when it still holds this event, else by id. */
        for (int by_rowid = res->event_rowid > 0;; by_rowid--) {
                static const char *const sql[2][2] = {
                        {FINISH_UPDATE, FINISH_UPDATE " AND rowid = ?8"},
                        {FINISH_UPDATE FINISH_RETURNING,
                                FINISH_UPDATE " AND rowid = ?8" FINISH_RETURNING},
                };

                r = store_cached(s, sql[want_hook][by_rowid], &st);
                if (r < 0)
                        return r;
                stmt_bind_text_static(st, 1, event_status_to_string(status));
                stmt_bind_text_static(st, 2, reason);
                stmt_bind_i64_or_null(st, 3, next);
                stmt_bind_text_static(st, 4, res->error);
                stmt_bind_i64(st, 5, now);
                stmt_bind_text_static(st, 6, res->event_id);
                stmt_bind_text_static(st, 7, worker);
                if (by_rowid)
                        stmt_bind_i64(st, 8, res->event_rowid);
                r = stmt_step(st);
                if (r < 0)
                        return r;
                if (r > 0 || (!want_hook && store_changes(s) > 0))
                        break;
                stmt_reset(st);
                if (!by_rowid)
                        return 0; /* the claim was lost: the new holder decides */
        }
        res->new_status = event_status_to_string(status);
        res->next_attempt_at = next;
        if (!want_hook)
                return 0;
        provider_event_id = stmt_strdup(st, 0);
        type = stmt_strdup(st, 1);
        last = stmt_strdup(st, 2);
        r = stmt_run(st);
        if (r < 0)
                return r;
        r = hooks_queue(s, cfg, now, res->event_id, provider_event_id, type, status, res->attempt,
                last, ret_hook);
        res->hook_queued = *ret_hook;
        return r;
}

static void results_reset(knock_attempt_result *results, size_t n)
{
        for (size_t j = 0; j < n; j++) {
                results[j].new_status = NULL;
                results[j].hook_queued = false;
        }
}

int events_finish(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        knock_attempt_result *results, size_t n, size_t *ret_hooks)
{
        size_t dummy;

        return events_finish_and_claim(
                s, cfg, worker, now, NULL, 0, results, n, ret_hooks, 0, 0, 0, 0, NULL, NULL, &dummy, NULL);
}

/* Queued attempts whose handlers started: "running" from their real start time. A
 * notice that comes after the result (or after a take-over) changes nothing. */
static int mark_started(knock_store *s, const knock_started *started, size_t n)
{
#define MARK_STARTED                                                                               \
        "UPDATE attempts SET outcome = 'running', started_at = ?1 "                                \
        "WHERE id = ?2 AND outcome = 'queued'"
        for (size_t i = 0; i < n; i++)
                /* By the claim's rowid when it still holds this attempt, else by id. */
                for (int by_rowid = started[i].attempt_rowid > 0; by_rowid >= 0; by_rowid--) {
                        db_stmt *st = NULL;
                        int r;

                        r = store_cached(s,
                                by_rowid ? MARK_STARTED " AND rowid = ?3" : MARK_STARTED, &st);
                        if (r < 0)
                                return r;
                        stmt_bind_i64(st, 1, started[i].at);
                        stmt_bind_text_static(st, 2, started[i].attempt_id);
                        if (by_rowid)
                                stmt_bind_i64(st, 3, started[i].attempt_rowid);
                        r = stmt_run(st);
                        if (r < 0)
                                return r;
                        if (store_changes(s) > 0)
                                break;
                }
        return 0;
}

int events_finish_and_claim(knock_store *s, const knock_config *cfg, const char *worker,
        int64_t now, const knock_started *started, size_t n_started,
        knock_attempt_result *results, size_t n_results, size_t *ret_hooks, int64_t lease_ms,
        size_t max, size_t n_now, int64_t ahead_bytes, events_flow *flow, knock_claim **ret,
        size_t *ret_n, knock_claim_stats *stats)
{
        knock_claim_stats dummy = {};
        knock_claim *v = NULL;
        size_t hooks = 0, n = 0;
        int r;

        if (!stats)
                stats = &dummy;
        *stats = (knock_claim_stats){};
        if (ret_hooks)
                *ret_hooks = 0;
        if (ret)
                *ret = NULL;
        *ret_n = 0;
        if (n_started == 0 && n_results == 0 && max == 0)
                return 0;
        if (max > 0) {
                v = calloc(max, sizeof(*v));
                if (!v)
                        return -ENOMEM;
        }

        r = store_begin(s);
        if (r < 0)
                goto fail_nothing;

        r = mark_started(s, started, n_started);
        /* Results first: their slots are what the claim fills. */
        for (size_t i = 0; r >= 0 && i < n_results; i++) {
                bool h;

                r = finish_one(s, cfg, worker, now, &results[i], &h);
                hooks += h;
        }
        if (r >= 0 && max > 0)
                r = claim_in_tx(s, cfg, worker, now, lease_ms, max, n_now, ahead_bytes, flow, v, &n,
                        stats);
        /* New hooks: every host's deliverers hear of them at the COMMIT (PostgreSQL). */
        if (r >= 0 && hooks + stats->hooks > 0)
                r = store_notify(s, STORE_TOPIC_HOOKS);
        if (r < 0) {
                store_rollback(s);
                goto fail_nothing;
        }

        /* One COMMIT (fsync) for both: this is what batching buys. */
        r = store_commit(s);
        if (r < 0)
                goto fail_nothing;
        if (ret_hooks)
                *ret_hooks = hooks;
        if (ret)
                *ret = v;
        else
                events_claims_free(v, n);
        *ret_n = n;
        return 0;

fail_nothing:
        results_reset(results, n_results);
        events_claims_free(v, n);
        return r;
}

int events_release(knock_store *s, const char *worker, const char *const *ids,
        const char *const *attempt_ids, size_t n, int64_t now)
{
        int r;

        if (n == 0)
                return 0;
        r = store_begin(s);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *att = attempt_ids ? attempt_ids[i] : NULL;

                /* A claim held ahead of a free slot never ran: no attempt. */
                r = events_run_text_i64(s, "DELETE FROM attempts WHERE id = ?1 AND outcome = 'queued'",
                        att, 0, NULL);
                if (r >= 0)
                        r = events_run_text_i64(s,
                                "UPDATE attempts SET outcome = 'interrupted', ended_at = ?2, "
                                "error = COALESCE(error, 'worker stopping: claim released') "
                                "WHERE id = ?1",
                                att, now, NULL);
                /* Not counted: the worker chose to stop, the handler did not
                 * fail. Due at once, so the next worker picks it up first. */
                if (r >= 0)
                        r = update_held(s,
                                "UPDATE events SET status = CASE WHEN attempt_count <= 1 THEN "
                                "'received' ELSE 'failed' END, next_attempt_at = CASE WHEN "
                                "attempt_count <= 1 THEN NULL ELSE ?1 END, "
                                "attempt_count = CASE WHEN attempt_count > 0 THEN attempt_count - 1 ELSE 0 END, "
                                "claimed_by = NULL, "
                                "claim_until = NULL, updated_at = ?1 WHERE id = ?2 AND "
                                "status = 'processing' AND claimed_by = ?3",
                                now, ids[i], worker);
        }
        return store_end(s, r);
}

int events_expire_claims(knock_store *s, const char *holder, int64_t now, size_t *ret_n)
{
        uint64_t n = 0;
        int r;

        /* One statement: autocommit is its own transaction. */
        r = events_run_text_i64(s,
                "UPDATE events SET claim_until = ?2 WHERE status = 'processing' AND "
                "claimed_by = ?1 AND claim_until >= ?2",
                holder, now - 1, &n);
        if (r >= 0 && ret_n)
                *ret_n = (size_t)n;
        return r;
}

/* ---- the operator ----------------------------------------------------------------------- */

int events_apply_op(knock_store *s, event_op op, const char *id, const char *delivery_id,
        int64_t now)
{
        _cleanup_reset_ db_stmt *st = NULL;
        event_status to = event_op_target(op);
        int r;

        /* Runnable again: a new series. Ended by the operator: nothing more
         * runs. */
        if (to == EVENT_STATUS_RECEIVED)
                r = store_cached(s,
                        "UPDATE events SET status = ?3, status_reason = NULL, attempt_count = 0,"
                        " next_attempt_at = ?2, updated_at = ?2, claimed_by = NULL,"
                        " claim_until = NULL, finished_at = NULL, run_delivery_id = ?4"
                        " WHERE id = ?1",
                        &st);
        else if (to == EVENT_STATUS_IGNORED)
                r = store_cached(s,
                        "UPDATE events SET status = ?3, status_reason = 'operator',"
                        " next_attempt_at = NULL, updated_at = ?2, finished_at = ?2,"
                        " claimed_by = NULL, claim_until = NULL WHERE id = ?1",
                        &st);
        else
                return -EINVAL;
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, id);
        stmt_bind_i64(st, 2, now);
        stmt_bind_text_static(st, 3, event_status_to_string(to));
        if (to == EVENT_STATUS_RECEIVED)
                stmt_bind_text_static(st, 4, op == EVENT_OP_REPLAY_DELIVERY ? delivery_id : NULL);
        return stmt_run(st);
}

/* ---- retention -------------------------------------------------------------------------- */

/* Runs a statement of a class: ?1 its status (NULL: orphans), ?2 its cutoff. */
static int prune_step(knock_store *s, const char *sql, event_status status, int64_t cutoff,
        uint64_t *acc)
{
        return events_run_text_i64(s, sql, event_status_to_string(status), cutoff, acc);
}

int events_prune_pick(knock_store *s, event_status status, int64_t cutoff, char *cursor,
        size_t cursor_len, unsigned limit, uint64_t *ret_n)
{
        /* The next candidates after the cursor ?3. "+status" keeps the
         * planner off the status index: walking the primary key from the
         * cursor needs no sort and visits each row once over the whole run,
         * where the status index would sort every remaining row of the
         * status per batch. Orphans come through the event_id index, whose
         * NULL entries come in insertion (≈ time) order, so the old ones come
         * first; the cursor only guarantees progress (an orphan it skips is
         * taken by the next run). */
        static const char *const pick_events =
                "INSERT INTO prune_batch(id) SELECT e.id FROM events e"
                " WHERE e.id > ?3 AND " EVENT_PRUNABLE_(SQLITE_NO_INDEX, "e") " ORDER BY e.id LIMIT ?4";
        static const char *const pick_orphans =
                "INSERT INTO prune_batch(id) SELECT id FROM deliveries d"
                " WHERE " ORPHAN_PRUNABLE("d") " AND id > ?3 LIMIT ?4";
        db_stmt *st = NULL;
        int r;

        *ret_n = 0;
        r = prune_step(s, "DELETE FROM prune_batch", status, cutoff, NULL);
        if (r >= 0)
                r = store_cached(s, status >= 0 ? pick_events : pick_orphans, &st);
        if (r < 0)
                return r;
        events_bind_text_i64(st, event_status_to_string(status), cutoff);
        stmt_bind_text_static(st, 3, cursor);
        stmt_bind_i64(st, 4, limit);
        r = stmt_run(st);
        if (r < 0)
                return r;
        *ret_n = (uint64_t)store_changes(s);
        if (*ret_n == 0)
                return 0;
        r = store_cached(s, "SELECT max(id) FROM prune_batch", &st);
        if (r >= 0)
                r = stmt_step(st);
        if (r > 0)
                snprintf(cursor, cursor_len, "%s",
                        stmt_col_text(st, 0) ?: "");
        stmt_reset(st);
        return MIN(r, 0);
}

int events_prune_delete(knock_store *s, event_status status, int64_t cutoff, events_pruned *acc)
{
        int r;

        /* Drop every id that no longer qualifies. */
        if (status < 0) {
                r = prune_step(s,
                        "DELETE FROM prune_batch WHERE NOT EXISTS (SELECT 1 FROM deliveries d"
                        " WHERE d.id = prune_batch.id AND " ORPHAN_PRUNABLE("d") ")",
                        status, cutoff, NULL);
                if (r >= 0)
                        r = prune_step(s,
                                "DELETE FROM deliveries WHERE id IN (SELECT id FROM prune_batch)"
                                " AND event_id IS NULL",
                                status, cutoff, &acc->orphans);
                return r;
        }
        r = prune_step(s,
                "DELETE FROM prune_batch WHERE NOT EXISTS (SELECT 1 FROM events e"
                " WHERE e.id = prune_batch.id AND " EVENT_PRUNABLE("e") ")",
                status, cutoff, NULL);
        /* Children first, so every table's count is exact and the ON DELETE
         * CASCADEs find nothing left to do. */
        if (r >= 0)
                r = hooks_prune_batch(s, &acc->hooks, &acc->hook_attempts);
        if (r >= 0)
                r = prune_step(s,
                        "DELETE FROM attempts WHERE event_id IN (SELECT id FROM prune_batch)",
                        status, cutoff, &acc->attempts);
        if (r >= 0)
                r = prune_step(s,
                        "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM prune_batch)",
                        status, cutoff, &acc->deliveries);
        if (r >= 0)
                r = prune_step(s, "DELETE FROM events WHERE id IN (SELECT id FROM prune_batch)",
                        status, cutoff, &acc->events);
        return r;
}
