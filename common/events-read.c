/* SPDX-License-Identifier: MIT */
/*
 * events-read — the events module's reads (see events.h): the candidates a
 * claim looks at and the claim's planning (flow limits, ordered keys,
 * exclusions), the queue's counts and due time, what knockctl checks before
 * it asks for a transition, and what prune counts. The statements that write
 * events, deliveries or attempts are all in events.c; the statements here
 * only SELECT (the one exception: prune's batch is a TEMP table of the
 * connection), and where planning needs a write (an order key stored on its
 * event) it asks events.c. Each statement is reset before the call returns,
 * so none keeps a read snapshot (which would hold the WAL back from a
 * checkpoint).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events-internal.h"
#include "order-key.h"
#include "pause.h"

void knock_claim_clear(knock_claim *c)
{
        if (!c)
                return;
        free(c->provider_event_id);
        free(c->event_type);
        free(c->delivery_id);
        free(c->content_type);
        free(c->handler);
        free(c->body);
        *c = (knock_claim){};
}

/* Candidate rows for a claim: the three kinds of claimable event, each
 * with the body of the delivery that runs. */
#define CLAIM_SELECT                                                                               \
        "SELECT e.id, e.provider_event_id, e.event_type, e.status, e.attempt_count, "              \
        "COALESCE(e.run_delivery_id, e.delivery_id), d.content_type, d.body, e.received_at, "      \
        "e.last_error, e.rowid FROM events e LEFT JOIN deliveries d "                              \
        "ON d.id = COALESCE(e.run_delivery_id, e.delivery_id) "

/* The three kinds, each ending in the WHERE clause before its order: the
 * plain claim, and the claim while routes are paused or limited (?4, a JSON
 * array of event types; pause.h) or keys are held (?5, order keys). The filter only drops rows the index walk finds, so
 * a large paused backlog ahead of the others is walked on every claim. */
#define CLAIM_RECEIVED_WHERE "WHERE e.status = 'received' "
#define CLAIM_RETRY_DUE_WHERE "WHERE e.status = 'failed' AND e.next_attempt_at <= ?1 "
/* Never our own: a claim of ours whose renewal failed still has its
 * handler running, and its result must finish that attempt, not a
 * second one (claims a previous process with our PID left behind are
 * taken over at start, see lease.h). */
#define CLAIM_LEASE_EXPIRED_WHERE                                                                  \
        "WHERE e.status = 'processing' AND e.claim_until < ?1 AND e.claimed_by IS DISTINCT FROM ?3 "
#define NOT_PAUSED                                                                                 \
        "AND (e.event_type IS NULL OR e.event_type NOT IN (SELECT value FROM json_each(?4))) "      \
        "AND (e.order_key IS NULL OR e.order_key NOT IN (SELECT value FROM json_each(?5))) "
/* SQLite's BEGIN IMMEDIATE makes a claim the only writer; on PostgreSQL
 * several workers, on several hosts, claim at once: each locks the rows it
 * takes and passes over the ones another holds (the UPDATE that follows,
 * by rowid, then changes only rows this transaction locked). */
#define CLAIM_LOCK "/*PG: FOR UPDATE OF e SKIP LOCKED */"
/* (next_attempt_at, rowid) is the events_queue index order: FIFO without
 * sorting the whole backlog on every claim. */
#define CLAIM_RECEIVED_ORDER "ORDER BY e.next_attempt_at, e.rowid LIMIT ?2 " CLAIM_LOCK
#define CLAIM_RETRY_DUE_ORDER "ORDER BY e.next_attempt_at LIMIT ?2 " CLAIM_LOCK
#define CLAIM_LEASE_EXPIRED_ORDER "ORDER BY e.claim_until LIMIT ?2 " CLAIM_LOCK

static const char *const claim_queries[2][_CLAIM_KIND_MAX] = {
        {
                [CLAIM_RECEIVED] = CLAIM_SELECT CLAIM_RECEIVED_WHERE CLAIM_RECEIVED_ORDER,
                [CLAIM_RETRY_DUE] = CLAIM_SELECT CLAIM_RETRY_DUE_WHERE CLAIM_RETRY_DUE_ORDER,
                [CLAIM_LEASE_EXPIRED] =
                        CLAIM_SELECT CLAIM_LEASE_EXPIRED_WHERE CLAIM_LEASE_EXPIRED_ORDER,
        },
        {
                [CLAIM_RECEIVED] = CLAIM_SELECT CLAIM_RECEIVED_WHERE NOT_PAUSED CLAIM_RECEIVED_ORDER,
                [CLAIM_RETRY_DUE] =
                        CLAIM_SELECT CLAIM_RETRY_DUE_WHERE NOT_PAUSED CLAIM_RETRY_DUE_ORDER,
                [CLAIM_LEASE_EXPIRED] = CLAIM_SELECT CLAIM_LEASE_EXPIRED_WHERE NOT_PAUSED
                        CLAIM_LEASE_EXPIRED_ORDER,
        },
};

static int candidate_read(db_stmt *row, claim_candidate *cand)
{
        knock_claim *c = &cand->c;
        const char *id = stmt_col_text(row, 0);

        cand->status = event_status_from_string(stmt_col_text(row, 3));
        if (!id || cand->status < 0)
                return -EIO;
        snprintf(c->id, sizeof(c->id), "%s", id);
        cand->attempts = stmt_col_i64(row, 4);
        c->received_at = stmt_col_i64(row, 8);
        c->event_rowid = stmt_col_i64(row, 10);
        c->provider_event_id = stmt_strdup(row, 1);
        c->event_type = stmt_strdup(row, 2);
        c->delivery_id = stmt_strdup(row, 5);
        c->content_type = stmt_strdup(row, 6);
        if (stmt_col_type(row, 7) != DB_NULL) {
                const void *b = stmt_col_blob(row, 7);
                int n = stmt_col_bytes(row, 7);

                c->body = malloc(n > 0 ? (size_t)n : 1);
                if (!c->body)
                        return -ENOMEM;
                if (n > 0)
                        memcpy(c->body, b, (size_t)n);
                c->body_len = (size_t)MAX(n, 0);
        }
        return 0;
}

int events_claim_candidates(knock_store *s, claim_kind kind, const char *worker, int64_t now,
        const char *paused, const char *held, size_t want, claim_candidate *cands, size_t *ret_n)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s, claim_queries[paused || held][kind], &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, now);
        stmt_bind_i64(st, 2, (int64_t)want);
        if (kind == CLAIM_LEASE_EXPIRED)
                stmt_bind_text_static(st, 3, worker);
        if (paused || held) {
                stmt_bind_text_static(st, 4, paused ?: "[]");
                stmt_bind_text_static(st, 5, held ?: "[]");
        }
        while (*ret_n < want && (r = stmt_step(st)) > 0) {
                r = candidate_read(st, &cands[(*ret_n)++]);
                if (r < 0)
                        return r;
        }
        return r;
}

int events_first_headers(knock_store *s, int64_t rowid, char **ret)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        *ret = NULL;
        r = store_cached(s,
                "SELECT d.headers FROM events e JOIN deliveries d ON d.id = e.delivery_id "
                "WHERE e.rowid = ?1",
                &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, rowid);
        r = stmt_step(st);
        if (r <= 0 || stmt_col_type(st, 0) == DB_NULL)
                return r;
        *ret = stmt_strdup(st, 0);
        return *ret ? 0 : -ENOMEM;
}

void knock_delivery_info_clear(knock_delivery_info *d)
{
        free(d->event_id);
        free(d->claimed_by);
        free(d->verify_error);
        *d = (knock_delivery_info){};
}

int events_queue_counts(knock_store *s, int64_t counts[_EVENT_STATUS_MAX])
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        memset(counts, 0, _EVENT_STATUS_MAX * sizeof(int64_t));
        r = store_cached(s, "SELECT status, count(*) FROM events GROUP BY status", &st);
        if (r < 0)
                return r;
        while ((r = stmt_step(st)) > 0) {
                event_status k = event_status_from_string(
                        stmt_col_text(st, 0));

                if (k >= 0)
                        counts[k] = stmt_col_i64(st, 1);
        }
        return r;
}

int events_claim_holders(knock_store *s, char ***ret, size_t *ret_n)
{
        db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "SELECT DISTINCT claimed_by FROM events WHERE status = 'processing' "
                "AND claimed_by IS NOT NULL",
                &st);
        if (r < 0)
                return r;
        return stmt_strv(st, ret, ret_n);
}

/* An ordered event an earlier one of its key holds (events.h, ordered keys). */
#define NOT_HELD                                                                                   \
        "AND (e.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM events h WHERE "                    \
        "h.order_key = e.order_key AND h.rowid < e.rowid AND " SQL_UNENDED("h") ")) "

/* The earliest due time; ?4 and ?5, when set, are JSON arrays of paused (or
 * used-up) event types and held keys. Held ordered events are not due: the
 * end of what holds them is a result, and a result makes the worker claim. */
#define NEXT_DUE(filter)                                                                           \
        "SELECT MIN(t) FROM ("                                                                     \
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM events e WHERE "                                   \
        "status = 'received' " NOT_HELD filter ") THEN 0 END AS t "                                \
        "UNION ALL SELECT MIN(next_attempt_at) FROM events e WHERE "                               \
        "status = 'failed' " NOT_HELD filter                                                       \
        " UNION ALL SELECT MIN(claim_until) + 1 FROM events e "                                    \
        "WHERE status = 'processing' AND claimed_by IS DISTINCT FROM ?1 " filter ") AS due"

int events_exclusions(knock_store *s, int64_t now, const events_flow *flow, bool *ret_all,
        char **ret_types, char ***ret_probes, size_t *ret_n_probes)
{
        _cleanup_free_ char *paused = NULL;
        json_t *a = NULL;
        int r;

        *ret_types = NULL;
        r = pause_claim_filter(s, now, ret_all, &paused, ret_probes, ret_n_probes);
        if (r < 0 || *ret_all)
                return r;
        for (size_t i = 0; flow && i < flow->n; i++) {
                if (flow->v[i].taken < flow->v[i].allow)
                        continue;
                if (!a && !(a = paused ? json_loads(paused, 0, NULL) : json_array()))
                        return -ENOMEM;
                if (json_array_append_new(a, json_string(flow->v[i].event_type)) < 0) {
                        json_decref(a);
                        return -ENOMEM;
                }
        }
        if (!a) {
                *ret_types = TAKE_PTR(paused);
                return 0;
        }
        *ret_types = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        return *ret_types ? 0 : -ENOMEM;
}

int events_next_due(knock_store *s, const char *worker, int64_t now, const events_flow *flow,
        int64_t *ret)
{
        _cleanup_reset_ db_stmt *st = NULL;
        _cleanup_free_ char *paused = NULL;
        int64_t probe = INT64_MAX;
        bool all_paused;
        int r;

        /* Nothing paused is due: resume wakes the worker. A breaker is, when
         * its probe may go. */
        r = events_exclusions(s, now, flow, &all_paused, &paused, NULL, NULL);
        if (r >= 0)
                r = pause_next_probe(s, &probe);
        if (r < 0)
                return r;
        if (all_paused) {
                *ret = INT64_MAX;
                return 0;
        }
        r = store_cached(s,
paused ? NEXT_DUE(NOT_PAUSED) : NEXT_DUE(""), 
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, worker);
        if (paused) {
                stmt_bind_text_static(st, 4, paused);
                stmt_bind_text_static(st, 5, "[]");
        }
        r = stmt_step(st);
        if (r <= 0)
                return r ?: -EIO;
        *ret = stmt_col_type(st, 0) == DB_NULL ? INT64_MAX : stmt_col_i64(st, 0);
        *ret = MIN(*ret, probe);
        return 0;
}

int events_get_status(knock_store *s, const char *id, event_status *ret, char **ret_claimed_by)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s, "SELECT status, claimed_by FROM events WHERE id = ?1", &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, id);
        r = stmt_step(st);
        if (r <= 0)
                return r ?: -ENOENT;
        *ret = event_status_from_string(stmt_col_text(st, 0));
        if (*ret < 0)
                return -EBADMSG;
        if (ret_claimed_by && stmt_col_type(st, 1) != DB_NULL &&
                !(*ret_claimed_by = stmt_strdup(st, 1)))
                return -ENOMEM;
        return 0;
}

int events_get_delivery(knock_store *s, const char *delivery_id, knock_delivery_info *ret)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        *ret = (knock_delivery_info){.status = _EVENT_STATUS_INVALID};
        r = store_cached(s,
                "SELECT d.event_id, e.status, e.claimed_by, d.body IS NOT NULL, d.verify_error,"
                " d.signature_valid"
                " FROM deliveries d LEFT JOIN events e ON e.id = d.event_id WHERE d.id = ?1",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, delivery_id);
        r = stmt_step(st);
        if (r <= 0)
                return r ?: -ENOENT;
        ret->event_id = stmt_strdup(st, 0);
        ret->status = event_status_from_string(stmt_col_text(st, 1));
        ret->claimed_by = stmt_strdup(st, 2);
        ret->has_body = stmt_col_int(st, 3);
        ret->verify_error = stmt_strdup(st, 4);
        ret->signature_valid = stmt_col_int(st, 5);
        return 0;
}

int events_select_ids(knock_store *s, const events_query *q, char ***ret, size_t *ret_n)
{
        _cleanup_reset_ db_stmt *st = NULL;
        char statuses[128] = "[";
        int r;

        for (int i = 0; i < _EVENT_STATUS_MAX; i++)
                if (q->statuses & (1u << i))
                        strcat(strcat(strcat(statuses, statuses[1] ? ",\"" : "\""),
                                       event_status_names[i]),
                                "\"");
        strcat(statuses, "]");
        /* The status through events_queue (status, …), the time through
         * events_received_at: the planner picks whichever is narrower. */
        r = store_cached(s,
                "SELECT id FROM events WHERE status IN (SELECT value FROM json_each(?1)) "
                "AND (CAST(?2 AS TEXT) IS NULL OR event_type = ?2) AND (CAST(?3 AS BIGINT) IS NULL OR received_at >= ?3) "
                "AND (CAST(?4 AS BIGINT) IS NULL OR received_at < ?4) ORDER BY received_at, rowid",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, statuses);
        stmt_bind_text_static(st, 2, q->type);
        stmt_bind_i64_or_null(st, 3, q->since);
        stmt_bind_i64_or_null(st, 4, q->until);
        return stmt_strv(st, ret, ret_n);
}

int events_order_holder(knock_store *s, const char *id, char **ret_key, char **ret_holder)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        *ret_key = *ret_holder = NULL;
        r = store_cached(s,
                "SELECT e.order_key, (SELECT h.id FROM events h WHERE h.order_key = e.order_key "
                "AND h.rowid < e.rowid AND " SQL_UNENDED("h") " ORDER BY h.rowid LIMIT 1) "
                "FROM events e WHERE e.id = ?1",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, id);
        r = stmt_step(st);
        if (r <= 0)
                return r ?: -ENOENT;
        *ret_key = stmt_strdup(st, 0);
        *ret_holder = stmt_strdup(st, 1);
        return 0;
}

/* ---- what a claim plans with (events.c's claim loop) ---- */

void events_claims_free(knock_claim *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                knock_claim_clear(&v[i]);
        free(v);
}

/* The limit of flow on event_type, or NULL. */
events_flow_limit *events_flow_limit_of(events_flow *flow, const char *event_type)
{
        for (size_t i = 0; flow && event_type && i < flow->n; i++)
                if (streq(flow->v[i].event_type, event_type))
                        return &flow->v[i];
        return NULL;
}

/* Ordered keys ([worker]/[route] order_key): whether candidate c must wait for
 * an earlier event of its key. A held key joins *held (a JSON array the
 * following queries leave out), its text in *held_text. */
int events_order_hold(knock_store *s, const knock_config *cfg, const knock_claim *c,
        json_t **held, char **held_text, bool *ret_held)
{
        const char *source = config_order_key_for(cfg, c->event_type);
        _cleanup_free_ char *key = NULL, *headers = NULL;
        int r;

        *ret_held = false;
        /* A header key is the first delivery's: the one whose request made
         * the event, whichever delivery runs. */
        if (order_key_from_headers(source)) {
                r = events_first_headers(s, c->event_rowid, &headers);
                if (r < 0)
                        return r;
        }
        r = order_key_extract(source, c->body, c->body_len, headers, &key);
        if (r < 0 || !key)
                return r;
        r = events_order_check(s, c->event_rowid, key, ret_held);
        if (r < 0 || !*ret_held)
                return r;
        if (!*held && !(*held = json_array()))
                return -ENOMEM;
        if (json_array_append_new(*held, json_string(key)) < 0)
                return -ENOMEM;
        free(*held_text);
        *held_text = json_dumps(*held, JSON_COMPACT);
        return *held_text ? 0 : -ENOMEM;
}

/* The exclusions of the claim loop: the breakers whose probe is due are let
 * through, and bounded by their entries in flow (allow 1). */
int events_loop_exclusions(knock_store *s, int64_t now, const events_flow *flow, bool *ret_all,
        char **ret_types)
{
        char **probes = NULL;
        size_t n_probes = 0;
        int r;

        r = events_exclusions(s, now, flow, ret_all, ret_types, &probes, &n_probes);
        strv_free(probes, n_probes);
        return r;
}

/* ---- retention: what prune counts, and its batch table ---- */

int events_prune_count(knock_store *s, event_status status, int64_t cutoff, events_pruned *acc)
{
        static const char *const orphans =
                "SELECT count(*) FROM deliveries d WHERE " ORPHAN_PRUNABLE("d");
        static const struct {
                const char *sql;
                size_t field;
        } counts[] = {
                {"SELECT count(*) FROM events e WHERE " EVENT_PRUNABLE("e"),
                        offsetof(events_pruned, events)},
                {"SELECT count(*) FROM deliveries WHERE event_id IN " PRUNABLE_IDS,
                        offsetof(events_pruned, deliveries)},
                {"SELECT count(*) FROM attempts WHERE event_id IN " PRUNABLE_IDS,
                        offsetof(events_pruned, attempts)},
                {"SELECT count(*) FROM hooks WHERE event_id IN " PRUNABLE_IDS,
                        offsetof(events_pruned, hooks)},
                {"SELECT count(*) FROM hook_attempts WHERE hook_id IN (SELECT id FROM hooks"
                 " WHERE event_id IN " PRUNABLE_IDS ")",
                        offsetof(events_pruned, hook_attempts)},
        };
        int r = 0;

        if (status < 0)
                return events_run_text_i64(s, orphans, NULL, cutoff, &acc->orphans);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(counts); i++)
                r = events_run_text_i64(s, counts[i].sql, event_status_to_string(status), cutoff,
                        (uint64_t *)((char *)acc + counts[i].field));
        return r;
}

int events_prune_start(knock_store *s)
{
        return store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS prune_batch(id TEXT PRIMARY KEY)");
}

void events_prune_stop(knock_store *s)
{
        (void)store_exec(s, "DROP TABLE IF EXISTS prune_batch");
}
