/* SPDX-License-Identifier: MIT */
/*
 * queue — the hooks outbox as knock-deliver sees it (contract §8, §12).
 *
 * Promises:
 *  - a claim is a lease: claimed_by = "deliver:PID", claim_until = the
 *    end of the lease. The state stays 'pending' while the hook is sent,
 *    which is also what `knockctl redeliver-hook` reads to refuse a hook
 *    that is on the wire. A pending hook is claimable when it is due and
 *    holds no live lease;
 *  - a lease that ran out with claimed_by still set means its holder died
 *    mid-send (kill -9, OOM, watchdog). The next claim records that lost
 *    attempt (status 0, with the holder's name) and counts it, so a hook
 *    that keeps killing its sender cannot loop for ever; the receiver may
 *    have got that request, which is why webhook-id stays the same;
 *  - hookq_finish() and hookq_claim() run inside the caller's write
 *    transaction (BEGIN IMMEDIATE, so two deliverers serialise and a hook
 *    is never claimed twice): each attempt row commits together with the
 *    hook's new state, so a hook is 'delivered' only with the attempt row
 *    that holds its 2xx, and a committed 'delivered' is never claimed again
 *    (only an operator re-arms it);
 *  - a failure only changes the hook while we still hold its claim; a 2xx
 *    is recorded even when the lease was lost meanwhile (it was delivered);
 *  - hookq_release() gives a claim back without counting an attempt.
 *
 * Library-style code: returns negative errno, never logs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "lease.h"

void hook_claim_clear(hook_claim *c)
{
        free(c->id);
        free(c->event_id);
        free(c->payload);
        free(c->lost_holder);
        *c = (hook_claim){};
}

static int step_done(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);

        return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_errno(rc);
}

static int insert_attempt(sqlite3_stmt *st, const char *hook_id, int64_t at, int status,
                          int64_t duration_ms, const char *response, size_t response_len,
                          const char *error)
{
        char id[KNOCK_ID_MAX];

        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        id_new("hka", id);
        stmt_bind_text(st, 1, id);
        stmt_bind_text(st, 2, hook_id);
        stmt_bind_i64(st, 3, at);
        stmt_bind_i64(st, 4, status);
        stmt_bind_i64(st, 5, duration_ms);
        if (response && response_len > 0)
                sqlite3_bind_text(st, 6, response, (int)response_len, SQLITE_TRANSIENT);
        stmt_bind_text(st, 7, error);
        return step_done(st);
}

#define INSERT_ATTEMPT_SQL                                                                         \
        "INSERT INTO hook_attempts (id, hook_id, at, status, duration_ms, response, error) "        \
        "VALUES (?, ?, ?, ?, ?, ?, ?)"

/* Records the attempt a dead holder did not finish. Returns 1 when it was the
 * hook's last attempt (now failed), 0 when the hook is claimable again. */
static int record_lost(knock_store *s, sqlite3_stmt *ins, hook_claim *c, int64_t now)
{
        _cleanup_stmt_ sqlite3_stmt *up = NULL;
        _cleanup_free_ char *error = NULL;
        int64_t done = c->attempt; /* the lost attempt */
        bool last = done >= c->max_attempts;
        int r;

        if (asprintf(&error, "interrupted: %s stopped before the attempt ended (lease expired)",
                     c->lost_holder) < 0) {
                error = NULL;
                return -ENOMEM;
        }
        r = insert_attempt(ins, c->id, now, 0, 0, NULL, 0, error);
        if (r < 0)
                return r;
        r = store_prepare(s,
                          "UPDATE hooks SET attempt_count = :n, last_status = 0, last_error = :err,"
                          " last_attempt_at = :now, updated_at = :now,"
                          " state = CASE WHEN :last THEN 'failed' ELSE state END,"
                          " next_attempt_at = CASE WHEN :last THEN NULL ELSE next_attempt_at END,"
                          " claimed_by = NULL, claim_until = NULL WHERE id = :id",
                          &up);
        if (r < 0)
                return r;
        stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":n"), done);
        stmt_bind_text(up, sqlite3_bind_parameter_index(up, ":err"), error);
        stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":now"), now);
        stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":last"), last);
        stmt_bind_text(up, sqlite3_bind_parameter_index(up, ":id"), c->id);
        r = step_done(up);
        if (r < 0)
                return r;
        c->attempt = done + 1;
        return last ? 1 : 0;
}

int hookq_claim(knock_store *s, const char *me, int64_t now, int64_t lease_until, size_t max,
                int64_t default_max_attempts, hook_claim **ret, size_t *ret_n)
{
        _cleanup_stmt_ sqlite3_stmt *sel = NULL, *up = NULL, *ins = NULL;
        hook_claim *v = NULL;
        size_t n = 0;
        int r, rc;

        *ret = NULL;
        *ret_n = 0;
        if (max == 0)
                return 0;
        v = calloc(max, sizeof(*v));
        if (!v)
                return -ENOMEM;

        r = store_prepare(s,
                          "SELECT id, event_id, payload, attempt_count, max_attempts, claimed_by"
                          " FROM hooks WHERE state = 'pending' AND next_attempt_at <= :now"
                          " AND (claim_until IS NULL OR claim_until <= :now)"
                          " ORDER BY next_attempt_at, id LIMIT :max",
                          &sel);
        if (r >= 0)
                r = store_prepare(s,
                                  "UPDATE hooks SET claimed_by = :me, claim_until = :until,"
                                  " updated_at = :now WHERE id = :id",
                                  &up);
        if (r >= 0)
                r = store_prepare(s, INSERT_ATTEMPT_SQL, &ins);
        if (r < 0)
                goto fail;

        stmt_bind_i64(sel, sqlite3_bind_parameter_index(sel, ":now"), now);
        stmt_bind_i64(sel, sqlite3_bind_parameter_index(sel, ":max"), (int64_t)max);
        while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
                hook_claim *c = &v[n++];

                c->id = stmt_strdup(sel, 0);
                c->event_id = stmt_strdup(sel, 1);
                c->payload = stmt_strdup(sel, 2);
                c->attempt = sqlite3_column_int64(sel, 3) + 1;
                c->max_attempts = sqlite3_column_type(sel, 4) == SQLITE_NULL
                                          ? default_max_attempts
                                          : sqlite3_column_int64(sel, 4);
                c->lost_holder = stmt_strdup(sel, 5);
                if (!c->id || !c->payload) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        if (rc != SQLITE_DONE) {
                r = store_errno(rc);
                goto fail;
        }
        sqlite3_reset(sel);

        for (size_t i = 0; i < n; i++) {
                hook_claim *c = &v[i];

                if (c->lost_holder) {
                        r = record_lost(s, ins, c, now);
                        if (r < 0)
                                goto fail;
                        if (r > 0) {
                                c->dead = true;
                                continue;
                        }
                }
                sqlite3_reset(up);
                stmt_bind_text(up, sqlite3_bind_parameter_index(up, ":me"), me);
                stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":until"), lease_until);
                stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":now"), now);
                stmt_bind_text(up, sqlite3_bind_parameter_index(up, ":id"), c->id);
                r = step_done(up);
                if (r < 0)
                        goto fail;
        }
        *ret = v;
        *ret_n = n;
        return 0;

fail:
        for (size_t i = 0; i < n; i++)
                hook_claim_clear(&v[i]);
        free(v);
        return r;
}

int hookq_finish(knock_store *s, const char *me, int64_t now, hook_result *res, size_t n)
{
        _cleanup_stmt_ sqlite3_stmt *ins = NULL, *up = NULL;
        int r;

        if (n == 0)
                return 0;
        r = store_prepare(s, INSERT_ATTEMPT_SQL, &ins);
        if (r >= 0)
                r = store_prepare(
                        s,
                        "UPDATE hooks SET state = :state, attempt_count = :attempt,"
                        " last_status = :status, last_error = :error, last_attempt_at = :at,"
                        " delivered_at = :delivered, next_attempt_at = :next,"
                        " claimed_by = NULL, claim_until = NULL, updated_at = :now"
                        " WHERE id = :id AND state = 'pending' AND (:ok OR claimed_by = :me)",
                        &up);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                hook_result *x = &res[i];
                bool ok = streq(x->new_state, "delivered");

                r = insert_attempt(ins, x->id, x->at, x->status, x->duration_ms, x->response,
                                   x->response_len, x->error);
                if (r < 0)
                        return r;
                sqlite3_reset(up);
                sqlite3_clear_bindings(up);
                stmt_bind_text(up, sqlite3_bind_parameter_index(up, ":state"), x->new_state);
                stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":attempt"), x->attempt);
                stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":status"), x->status);
                stmt_bind_text(up, sqlite3_bind_parameter_index(up, ":error"), x->error);
                stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":at"), x->at);
                stmt_bind_i64_or_null(up, sqlite3_bind_parameter_index(up, ":delivered"),
                                      ok ? now : -1);
                stmt_bind_i64_or_null(up, sqlite3_bind_parameter_index(up, ":next"),
                                      streq(x->new_state, "pending") ? x->next_attempt_at : -1);
                stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":now"), now);
                stmt_bind_text(up, sqlite3_bind_parameter_index(up, ":id"), x->id);
                stmt_bind_i64(up, sqlite3_bind_parameter_index(up, ":ok"), ok);
                stmt_bind_text(up, sqlite3_bind_parameter_index(up, ":me"), me);
                r = step_done(up);
                if (r < 0)
                        return r;
                x->applied = sqlite3_changes(s->db) > 0;
        }
        return 0;
}

int hookq_release(knock_store *s, const char *me, const char *const *ids, size_t n, int64_t now)
{
        _cleanup_stmt_ sqlite3_stmt *up = NULL;
        int r;

        if (n == 0)
                return 0;
        r = store_prepare(s,
                          "UPDATE hooks SET claimed_by = NULL, claim_until = NULL, updated_at = ?"
                          " WHERE id = ? AND claimed_by = ? AND state = 'pending'",
                          &up);
        if (r < 0)
                return r;
        r = store_begin(s);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                sqlite3_reset(up);
                stmt_bind_i64(up, 1, now);
                stmt_bind_text(up, 2, ids[i]);
                stmt_bind_text(up, 3, me);
                r = step_done(up);
                if (r < 0) {
                        store_rollback(s);
                        return r;
                }
        }
        r = store_commit(s);
        if (r < 0)
                store_rollback(s);
        return r;
}

int hookq_next_due(knock_store *s, const char *me, int64_t now, int64_t *ret)
{
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        /* A hook held by someone else becomes ours to take when its lease
         * runs out; one we hold is in memory and not waited for here. */
        r = store_prepare(s,
                          "SELECT min(max(next_attempt_at, coalesce(claim_until, 0)))"
                          " FROM hooks WHERE state = 'pending' AND next_attempt_at IS NOT NULL"
                          " AND (claimed_by IS NULL OR claimed_by != ?)",
                          &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, me);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_errno(rc);
        *ret = sqlite3_column_type(st, 0) == SQLITE_NULL ? INT64_MAX
                                                         : MAX(sqlite3_column_int64(st, 0), now);
        return 0;
}

int hookq_pending(knock_store *s, int64_t now, int64_t *ret_pending, int64_t *ret_due)
{
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s,
                          "SELECT count(*), coalesce(sum(next_attempt_at <= ?1 AND"
                          " (claim_until IS NULL OR claim_until <= ?1)), 0)"
                          " FROM hooks WHERE state = 'pending'",
                          &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, now);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_errno(rc);
        *ret_pending = sqlite3_column_int64(st, 0);
        *ret_due = sqlite3_column_int64(st, 1);
        return 0;
}

int hookq_holders(knock_store *s, char ***ret, size_t *ret_n)
{
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = store_prepare(s,
                          "SELECT DISTINCT claimed_by FROM hooks"
                          " WHERE state = 'pending' AND claimed_by IS NOT NULL",
                          &st);
        if (r < 0)
                return r;
        return lease_holders_collect(st, ret, ret_n);
}

int hookq_expire(knock_store *s, const char *holder, int64_t now, size_t *ret_n)
{
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        /* claimed_by stays: the next claim sees a lost attempt and records it. */
        r = store_prepare(s,
                          "UPDATE hooks SET claim_until = ? WHERE claimed_by = ?"
                          " AND state = 'pending' AND claim_until > ?",
                          &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, now);
        stmt_bind_text(st, 2, holder);
        stmt_bind_i64(st, 3, now);
        r = step_done(st);
        if (r < 0)
                return r;
        *ret_n = (size_t)sqlite3_changes(s->db);
        return 0;
}
