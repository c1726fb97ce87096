/* SPDX-License-Identifier: MIT */
/*
 * hooks — the hook outbox's statements; see hooks.h for the promises.
 *
 * Every statement comes from the connection's cache (store_cached()) and is
 * reset when done with, so no statement keeps a read snapshot once a call
 * returns.
 */
#include "hooks.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- queueing ------------------------------------------------------------------------- */

bool hooks_wanted(const knock_config *cfg, event_status status)
{
        if (!cfg->hook_url || !cfg->hook_url[0])
                return false;
        return (status == EVENT_STATUS_HANDLED && cfg->hook_on_handled) ||
               (status == EVENT_STATUS_DEAD && cfg->hook_on_dead);
}

int events_hook_payload(const char *endpoint, const char *event_id, const char *provider_event_id,
        const char *event_type, const char *status, int64_t attempts, int64_t finished_at,
        const char *last_error, char **ret)
{
        char when[32], type[64];
        json_t *o;
        char *text;

        snprintf(type, sizeof(type), "knock.event.%s", status);
        format_rfc3339(finished_at, when, sizeof(when));
        o = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s, s:I, s:s, s:s?}", "type", type, "endpoint",
                endpoint, "event_id", event_id, "provider_event_id", provider_event_id,
                "event_type", event_type, "status", status, "attempts", (json_int_t)attempts,
                "finished_at", when, "last_error", last_error);
        if (!o)
                return -ENOMEM;
        text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

int hooks_queue(knock_store *s, const knock_config *cfg, int64_t now, const char *event_id,
        const char *provider_event_id, const char *event_type, event_status status,
        int64_t attempts, const char *last_error, bool *ret_queued)
{
        _cleanup_reset_ db_stmt *st = NULL;
        _cleanup_free_ char *payload = NULL;
        const char *name = event_status_to_string(status);
        char id[KNOCK_ID_MAX], type[64];
        int r;

        *ret_queued = false;
        if (!hooks_wanted(cfg, status))
                return 0;
        r = events_hook_payload(cfg->name, event_id, provider_event_id, event_type, name,
                attempts, now, last_error, &payload);
        if (r < 0)
                return r;
        r = store_cached(s,
                "INSERT INTO hooks (id, event_id, type, payload, state, attempt_count, "
                "max_attempts, created_at, updated_at, next_attempt_at) "
                "VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6, ?6, ?6)",
                &st);
        if (r < 0)
                return r;
        id_new("hk", id);
        snprintf(type, sizeof(type), "knock.event.%s", name);
        stmt_bind_text_static(st, 1, id);
        stmt_bind_text_static(st, 2, event_id);
        stmt_bind_text_static(st, 3, type);
        stmt_bind_text_static(st, 4, payload);
        stmt_bind_i64(st, 5, (int64_t)cfg->hook_max_attempts);
        stmt_bind_i64(st, 6, now);
        r = stmt_run(st);
        if (r < 0)
                return r;
        *ret_queued = true;
        return 0;
}

/* ---- sending ---------------------------------------------------------------------------- */

void hook_claim_clear(hook_claim *c)
{
        free(c->id);
        free(c->event_id);
        free(c->payload);
        free(c->lost_holder);
        *c = (hook_claim){};
}

static int insert_attempt(knock_store *s, const char *hook_id, int64_t at, int status,
        int64_t duration_ms, const char *response, size_t response_len, const char *error)
{
        _cleanup_reset_ db_stmt *st = NULL;
        char id[KNOCK_ID_MAX];
        int r;

        r = store_cached(s,
                "INSERT INTO hook_attempts (id, hook_id, at, status, duration_ms, response, error) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &st);
        if (r < 0)
                return r;
        id_new("hka", id);
        stmt_bind_text_static(st, 1, id);
        stmt_bind_text_static(st, 2, hook_id);
        stmt_bind_i64(st, 3, at);
        stmt_bind_i64(st, 4, status);
        stmt_bind_i64(st, 5, duration_ms);
        stmt_bind_text_len_static(st, 6, response, response_len);
        stmt_bind_text_static(st, 7, error);
        return stmt_run(st);
}

/* Records the attempt a dead holder did not finish. Returns 1 when it was the
 * hook's last attempt (now failed), 0 when the hook is claimable again. */
static int record_lost(knock_store *s, hook_claim *c, int64_t now)
{
        _cleanup_reset_ db_stmt *st = NULL;
        _cleanup_free_ char *error = NULL;
        int64_t done = c->attempt; /* the lost attempt */
        bool last = done >= c->max_attempts;
        int r;

        if (asprintf(&error, "interrupted: %s stopped before the attempt ended (lease expired)",
                    c->lost_holder) < 0) {
                error = NULL;
                return -ENOMEM;
        }
        r = insert_attempt(s, c->id, now, 0, 0, NULL, 0, error);
        if (r < 0)
                return r;
        r = store_cached(s,
                "UPDATE hooks SET attempt_count = ?1, last_status = 0, last_error = ?2,"
                " last_attempt_at = ?3, updated_at = ?3,"
                " state = CASE WHEN ?4 <> 0 THEN 'failed' ELSE state END,"
                " next_attempt_at = CASE WHEN ?4 <> 0 THEN NULL ELSE next_attempt_at END,"
                " claimed_by = NULL, claim_until = NULL WHERE id = ?5",
                &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, done);
        stmt_bind_text_static(st, 2, error);
        stmt_bind_i64(st, 3, now);
        stmt_bind_i64(st, 4, last);
        stmt_bind_text_static(st, 5, c->id);
        r = stmt_run(st);
        if (r < 0)
                return r;
        c->attempt = done + 1;
        return last ? 1 : 0;
}

/* The due hooks, read in full before any is changed. */
static int claim_candidates(knock_store *s, int64_t now, size_t max,
        int64_t default_max_attempts, hook_claim *v, size_t *n)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "SELECT id, event_id, payload, attempt_count, max_attempts, claimed_by"
                " FROM hooks WHERE state = 'pending' AND next_attempt_at <= ?1"
                " AND (claim_until IS NULL OR claim_until <= ?1)"
                " ORDER BY next_attempt_at, id LIMIT ?2 /*PG: FOR UPDATE SKIP LOCKED */",
                &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, now);
        stmt_bind_i64(st, 2, (int64_t)max);
        while ((r = stmt_step(st)) > 0) {
                hook_claim *c = &v[(*n)++];

                c->id = stmt_strdup(st, 0);
                c->event_id = stmt_strdup(st, 1);
                c->payload = stmt_strdup(st, 2);
                c->attempt = stmt_col_i64(st, 3) + 1;
                c->max_attempts = stmt_col_type(st, 4) == DB_NULL
                                          ? default_max_attempts
                                          : stmt_col_i64(st, 4);
                c->lost_holder = stmt_strdup(st, 5);
                if (!c->id || !c->payload)
                        return -ENOMEM;
        }
        return r;
}

int hooks_claim(knock_store *s, const char *me, int64_t now, int64_t lease_until, size_t max,
        int64_t default_max_attempts, hook_claim **ret, size_t *ret_n)
{
        hook_claim *v = NULL;
        size_t n = 0;
        int r;

        *ret = NULL;
        *ret_n = 0;
        if (max == 0)
                return 0;
        v = calloc(max, sizeof(*v));
        if (!v)
                return -ENOMEM;
        r = claim_candidates(s, now, max, default_max_attempts, v, &n);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                _cleanup_reset_ db_stmt *st = NULL;
                hook_claim *c = &v[i];

                if (c->lost_holder) {
                        r = record_lost(s, c, now);
                        if (r < 0)
                                break;
                        if (r > 0) {
                                c->dead = true;
                                r = 0;
                                continue;
                        }
                }
                r = store_cached(s,
                        "UPDATE hooks SET claimed_by = ?1, claim_until = ?2, updated_at = ?3"
                        " WHERE id = ?4",
                        &st);
                if (r < 0)
                        break;
                stmt_bind_text_static(st, 1, me);
                stmt_bind_i64(st, 2, lease_until);
                stmt_bind_i64(st, 3, now);
                stmt_bind_text_static(st, 4, c->id);
                r = stmt_run(st);
        }
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        hook_claim_clear(&v[i]);
                free(v);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int hooks_finish(knock_store *s, const char *me, int64_t now, hook_result *res, size_t n)
{
        int r;

        for (size_t i = 0; i < n; i++) {
                _cleanup_reset_ db_stmt *st = NULL;
                hook_result *x = &res[i];
                bool ok = streq(x->new_state, "delivered");

                r = insert_attempt(s, x->id, x->at, x->status, x->duration_ms, x->response,
                        x->response_len, x->error);
                if (r < 0)
                        return r;
                r = store_cached(s,
                        "UPDATE hooks SET state = ?1, attempt_count = ?2,"
                        " last_status = ?3, last_error = ?4, last_attempt_at = ?5,"
                        " delivered_at = ?6, next_attempt_at = ?7,"
                        " claimed_by = NULL, claim_until = NULL, updated_at = ?8"
                        " WHERE id = ?9 AND state = 'pending' AND (?10 <> 0 OR claimed_by = ?11)",
                        &st);
                if (r < 0)
                        return r;
                stmt_bind_text_static(st, 1, x->new_state);
                stmt_bind_i64(st, 2, x->attempt);
                stmt_bind_i64(st, 3, x->status);
                stmt_bind_text_static(st, 4, x->error);
                stmt_bind_i64(st, 5, x->at);
                stmt_bind_i64_or_null(st, 6, ok ? now : -1);
                stmt_bind_i64_or_null(
                        st, 7, streq(x->new_state, "pending") ? x->next_attempt_at : -1);
                stmt_bind_i64(st, 8, now);
                stmt_bind_text_static(st, 9, x->id);
                stmt_bind_i64(st, 10, ok);
                stmt_bind_text_static(st, 11, me);
                r = stmt_run(st);
                if (r < 0)
                        return r;
                x->applied = store_changes(s) > 0;
        }
        return 0;
}

int hooks_release(knock_store *s, const char *me, const char *const *ids, size_t n, int64_t now)
{
        int r;

        if (n == 0)
                return 0;
        r = store_begin(s);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_reset_ db_stmt *st = NULL;

                r = store_cached(s,
                        "UPDATE hooks SET claimed_by = NULL, claim_until = NULL, updated_at = ?1"
                        " WHERE id = ?2 AND claimed_by = ?3 AND state = 'pending'",
                        &st);
                if (r < 0)
                        break;
                stmt_bind_i64(st, 1, now);
                stmt_bind_text_static(st, 2, ids[i]);
                stmt_bind_text_static(st, 3, me);
                r = stmt_run(st);
                if (r < 0)
                        break;
        }
        return store_end(s, r);
}

int hooks_next_due(knock_store *s, const char *me, int64_t now, int64_t *ret)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        /* A hook held by someone else becomes ours to take when its lease
         * runs out; one we hold is in memory and not waited for here. */
        r = store_cached(s,
                "SELECT min(CASE WHEN next_attempt_at > coalesce(claim_until, 0) THEN next_attempt_at"
                "  ELSE coalesce(claim_until, 0) END)"
                " FROM hooks WHERE state = 'pending' AND next_attempt_at IS NOT NULL"
                " AND (claimed_by IS NULL OR claimed_by != ?1)",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, me);
        r = stmt_step(st);
        if (r <= 0)
                return r ?: -EIO;
        *ret = stmt_col_type(st, 0) == DB_NULL ? INT64_MAX
                                                         : MAX(stmt_col_i64(st, 0), now);
        return 0;
}

int hooks_pending(knock_store *s, int64_t now, int64_t *ret_pending, int64_t *ret_due)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "SELECT count(*), coalesce(sum(CASE WHEN next_attempt_at <= ?1 AND"
                " (claim_until IS NULL OR claim_until <= ?1) THEN 1 ELSE 0 END), 0)"
                " FROM hooks WHERE state = 'pending'",
                &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, now);
        r = stmt_step(st);
        if (r <= 0)
                return r ?: -EIO;
        *ret_pending = stmt_col_i64(st, 0);
        *ret_due = stmt_col_i64(st, 1);
        return 0;
}

int hooks_holders(knock_store *s, char ***ret, size_t *ret_n)
{
        db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "SELECT DISTINCT claimed_by FROM hooks"
                " WHERE state = 'pending' AND claimed_by IS NOT NULL",
                &st);
        if (r < 0)
                return r;
        return stmt_strv(st, ret, ret_n);
}

int hooks_expire(knock_store *s, const char *holder, int64_t now, size_t *ret_n)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        /* claimed_by stays: the next claim sees a lost attempt and records it. */
        r = store_cached(s,
                "UPDATE hooks SET claim_until = ?1 WHERE claimed_by = ?2"
                " AND state = 'pending' AND claim_until > ?1",
                &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, now);
        stmt_bind_text_static(st, 2, holder);
        r = stmt_run(st);
        if (r < 0)
                return r;
        *ret_n = (size_t)store_changes(s);
        return 0;
}

/* ---- the operator ---------------------------------------------------------------------- */

int hooks_in_flight(knock_store *s, const char *id, int64_t now, char **ret_holder)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        *ret_holder = NULL;
        r = store_cached(s,
                "SELECT state = 'pending' AND claim_until IS NOT NULL AND claim_until > ?2,"
                " claimed_by FROM hooks WHERE id = ?1",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, id);
        stmt_bind_i64(st, 2, now);
        r = stmt_step(st);
        if (r <= 0)
                return r ?: -ENOENT;
        if (!stmt_col_int(st, 0))
                return 0;
        if (stmt_col_type(st, 1) != DB_NULL && !(*ret_holder = stmt_strdup(st, 1)))
                return -ENOMEM;
        return 1;
}

int hooks_rearm(knock_store *s, const char *id, int64_t now)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "UPDATE hooks SET state = 'pending', attempt_count = 0,"
                " next_attempt_at = ?2, updated_at = ?2, claimed_by = NULL,"
                " claim_until = NULL, delivered_at = NULL WHERE id = ?1",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, id);
        stmt_bind_i64(st, 2, now);
        return stmt_run(st);
}

int hooks_failed_between(knock_store *s, int64_t since, int64_t until, char ***ret, size_t *ret_n)
{
        db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "SELECT id FROM hooks WHERE state = 'failed'"
                " AND coalesce(last_attempt_at, updated_at) >= ?1"
                " AND (CAST(?2 AS BIGINT) IS NULL OR coalesce(last_attempt_at, updated_at) < ?2)"
                " ORDER BY created_at, id",
                &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, since);
        stmt_bind_i64_or_null(st, 2, until);
        return stmt_strv(st, ret, ret_n);
}

/* ---- pruning -------------------------------------------------------------------------- */

int hooks_prune_batch(knock_store *s, uint64_t *ret_hooks, uint64_t *ret_attempts)
{
        static const char *const sql[] = {
                /* Children first, so each count is exact and the ON DELETE
                 * CASCADE of the events that follow finds nothing left. */
                "DELETE FROM hook_attempts WHERE hook_id IN (SELECT id FROM hooks"
                " WHERE event_id IN (SELECT id FROM prune_batch))",
                "DELETE FROM hooks WHERE event_id IN (SELECT id FROM prune_batch)",
        };
        uint64_t *counts[] = {ret_attempts, ret_hooks};
        int r;

        for (size_t i = 0; i < ELEMENTSOF(sql); i++) {
                db_stmt *st = NULL;

                r = store_cached(s, sql[i], &st);
                if (r < 0)
                        return r;
                r = stmt_run(st);
                if (r < 0)
                        return r;
                *counts[i] += (uint64_t)store_changes(s);
        }
        return 0;
}
