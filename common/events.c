/* SPDX-License-Identifier: MIT */
/*
 * events — the worker's state changes, one transaction each (see events.h).
 *
 * The event row is the queue: its status, claimed_by and claim_until say
 * who holds it and until when, so "processing" is a committed, visible
 * state. Every transition that ends in a state listed in [hook] on queues
 * its hooks row inside the same transaction (an outbox): a crash either
 * loses both or keeps both, and the deliverer only ever sees hooks for
 * committed state changes.
 *
 * Ordering that matters:
 *  - claim: the attempts row ("running", or "queued" when claimed ahead of a
 *    free slot) and attempt_count + 1 are written with the claim and
 *    committed BEFORE the handler starts, so a handler that crashes the
 *    worker (or an OOM kill mid-handler) still counts, and a poison event
 *    eventually goes dead instead of looping forever. A queued attempt turns
 *    "running" with its real start time in a later transaction;
 *  - finish: the event update is guarded by (status, claimed_by); a worker
 *    whose lease was taken over records its attempt but leaves the event to
 *    the new holder.
 */

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "events.h"
#include "lease.h"

static const char *const outcome_names[_EVENT_OUTCOME_MAX] = {
        [EVENT_OUTCOME_SUCCESS] = "success",
        [EVENT_OUTCOME_TEMPFAIL] = "tempfail",
        [EVENT_OUTCOME_TIMEOUT] = "timeout",
        [EVENT_OUTCOME_PERMANENT] = "permanent",
        [EVENT_OUTCOME_INTERRUPTED] = "interrupted",
};

const char *event_outcome_to_string(event_outcome o)
{
        if ((unsigned)o >= _EVENT_OUTCOME_MAX)
                return NULL;
        return outcome_names[o];
}

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

/* xorshift64*, seeded once per thread from getrandom(): jitter needs spread,
 * not secrecy. */
static uint64_t jitter_random(void)
{
        static __thread uint64_t state;

        if (state == 0) {
                if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != sizeof(state))
                        state = (uint64_t)mono_us() ^ ((uint64_t)getpid() << 32);
                if (state == 0)
                        state = 0x9e3779b97f4a7c15ULL;
        }
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return state * 0x2545f4914f6cdd1dULL;
}

uint64_t events_backoff_ms(uint64_t base, uint64_t cap, uint64_t attempt, uint64_t rnd)
{
        uint64_t ceiling = base;

        if (cap < base)
                cap = base;
        if (attempt < 1)
                attempt = 1;
        /* base·2^(attempt-1), saturating at cap without overflowing */
        for (uint64_t i = 1; i < attempt && ceiling < cap; i++)
                ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
        if (ceiling > cap)
                ceiling = cap;
        if (ceiling == base)
                return base;
        return base + rnd % (ceiling - base + 1);
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

/*
 * Prepared statements are cached per connection: the worker runs the same
 * handful of statements for every event, and parsing them again each time
 * cost more than executing them. The cache is keyed by the SQL text's
 * address (every statement here is a string literal) and the connection.
 * The cache is per thread: a connection is used by one thread (the
 * worker's writer runs these on its own connection while the main thread
 * used the daemon's at start-up), and a statement must never be stepped by
 * two threads. events_cache_clear() finalizes the calling thread's
 * statements before that thread's connection is closed.
 */
#define STMT_CACHE_SIZE 32

static __thread struct {
        sqlite3 *db;
        const char *sql;
        sqlite3_stmt *st;
} stmt_cache[STMT_CACHE_SIZE];

void events_cache_clear(void)
{
        for (size_t i = 0; i < STMT_CACHE_SIZE; i++) {
                if (stmt_cache[i].st)
                        sqlite3_finalize(stmt_cache[i].st);
                stmt_cache[i].db = NULL;
                stmt_cache[i].sql = NULL;
                stmt_cache[i].st = NULL;
        }
}

static int prepare_cached(knock_store *s, const char *sql, sqlite3_stmt **ret)
{
        size_t slot = STMT_CACHE_SIZE;
        int rc;

        for (size_t i = 0; i < STMT_CACHE_SIZE; i++) {
                if (stmt_cache[i].sql == sql && stmt_cache[i].db == s->db) {
                        sqlite3_reset(stmt_cache[i].st);
                        sqlite3_clear_bindings(stmt_cache[i].st);
                        *ret = stmt_cache[i].st;
                        return 0;
                }
                if (slot == STMT_CACHE_SIZE && (!stmt_cache[i].st || stmt_cache[i].sql == sql))
                        slot = i;
        }
        if (slot == STMT_CACHE_SIZE)
                return store_prepare(s, sql, ret); /* full: uncached (never with this file) */
        if (stmt_cache[slot].st)
                sqlite3_finalize(stmt_cache[slot].st);
        stmt_cache[slot].st = NULL;
        rc = sqlite3_prepare_v3(
                s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_cache[slot].st, NULL);
        if (rc != SQLITE_OK) {
                stmt_cache[slot].st = NULL;
                return store_errno(rc) ?: -EIO;
        }
        stmt_cache[slot].db = s->db;
        stmt_cache[slot].sql = sql;
        *ret = stmt_cache[slot].st;
        return 0;
}

static void cache_reset_all(void)
{
        for (size_t i = 0; i < STMT_CACHE_SIZE; i++)
                if (stmt_cache[i].st)
                        sqlite3_reset(stmt_cache[i].st);
}

static int step_done(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);

        if (rc == SQLITE_DONE || rc == SQLITE_ROW)
                return 0;
        return store_errno(rc);
}

static bool hook_wanted(const knock_config *cfg, const char *status)
{
        if (!cfg->hook_url || !cfg->hook_url[0])
                return false;
        return (streq(status, "handled") && cfg->hook_on_handled) ||
               (streq(status, "dead") && cfg->hook_on_dead);
}

/* Queues the completion hook for `status` when [hook] asks for it. */
static int queue_hook(knock_store *s, const knock_config *cfg, int64_t now, const char *event_id,
        const char *provider_event_id, const char *event_type, const char *status, int64_t attempts,
        const char *last_error, bool *ret_queued)
{
        sqlite3_stmt *st = NULL;
        _cleanup_free_ char *payload = NULL;
        char id[KNOCK_ID_MAX], type[64];
        int r;

        *ret_queued = false;
        if (!hook_wanted(cfg, status))
                return 0;

        r = events_hook_payload(cfg->name, event_id, provider_event_id, event_type, status,
                attempts, now, last_error, &payload);
        if (r < 0)
                return r;

        r = prepare_cached(s,
                "INSERT INTO hooks (id, event_id, type, payload, state, attempt_count, "
                "max_attempts, created_at, updated_at, next_attempt_at) "
                "VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
                &st);
        if (r < 0)
                return r;
        id_new("hk", id);
        snprintf(type, sizeof(type), "knock.event.%s", status);
        stmt_bind_text(st, 1, id);
        stmt_bind_text(st, 2, event_id);
        stmt_bind_text(st, 3, type);
        stmt_bind_text(st, 4, payload);
        stmt_bind_i64(st, 5, (int64_t)cfg->hook_max_attempts);
        stmt_bind_i64(st, 6, now);
        stmt_bind_i64(st, 7, now);
        stmt_bind_i64(st, 8, now);
        r = step_done(st);
        if (r < 0)
                return r;
        *ret_queued = true;
        return 0;
}

/* Candidate rows for a claim: the three kinds of claimable event, each
 * with the body of the delivery that runs. */
#define CLAIM_SELECT                                                                               \
        "SELECT e.id, e.provider_event_id, e.event_type, e.status, e.attempt_count, "              \
        "COALESCE(e.run_delivery_id, e.delivery_id), d.content_type, d.body, e.received_at, "      \
        "e.last_error, e.rowid FROM events e LEFT JOIN deliveries d "                                       \
        "ON d.id = COALESCE(e.run_delivery_id, e.delivery_id) "

static const char *const claim_queries[] = {
        /* (next_attempt_at, rowid) is the events_queue index order: FIFO
         * without sorting the whole backlog on every claim. */
        CLAIM_SELECT "WHERE e.status = 'received' ORDER BY e.next_attempt_at, e.rowid LIMIT ?2",
        CLAIM_SELECT "WHERE e.status = 'failed' AND e.next_attempt_at <= ?1 "
                     "ORDER BY e.next_attempt_at LIMIT ?2",
        /* Never our own: a claim of ours whose renewal failed still has its
         * handler running, and its result must finish that attempt, not a
         * second one (claims a previous process with our PID left behind are
         * taken over at start, see lease.h). */
        CLAIM_SELECT "WHERE e.status = 'processing' AND e.claim_until < ?1 "
                     "AND e.claimed_by IS NOT ?3 ORDER BY e.claim_until LIMIT ?2",
};

/* A claimable row, read in full before any row is changed: SQLite leaves
 * undefined what a running SELECT sees of rows changed under it. */
typedef struct claim_candidate {
        knock_claim c;
        char status[16];
        int64_t attempts;
} claim_candidate;

static int candidate_read(sqlite3_stmt *row, claim_candidate *cand)
{
        knock_claim *c = &cand->c;
        const char *id = (const char *)sqlite3_column_text(row, 0);
        const char *status = (const char *)sqlite3_column_text(row, 3);

        if (!id || !status)
                return -EIO;
        snprintf(c->id, sizeof(c->id), "%s", id);
        snprintf(cand->status, sizeof(cand->status), "%s", status);
        cand->attempts = sqlite3_column_int64(row, 4);
        c->received_at = sqlite3_column_int64(row, 8);
        c->event_rowid = sqlite3_column_int64(row, 10);
        c->provider_event_id = stmt_strdup(row, 1);
        c->event_type = stmt_strdup(row, 2);
        c->delivery_id = stmt_strdup(row, 5);
        c->content_type = stmt_strdup(row, 6);
        if (sqlite3_column_type(row, 7) != SQLITE_NULL) {
                const void *b = sqlite3_column_blob(row, 7);
                int n = sqlite3_column_bytes(row, 7);

                c->body = malloc(n > 0 ? (size_t)n : 1);
                if (!c->body)
                        return -ENOMEM;
                if (n > 0)
                        memcpy(c->body, b, (size_t)n);
                c->body_len = (size_t)MAX(n, 0);
        }
        return 0;
}

/* An event a claim found it must not run ends now as status/reason, with
 * err (when not NULL) as its last error. */
static int end_unclaimed(knock_store *s, const char *id, const char *status, const char *reason,
        const char *err, int64_t now)
{
        sqlite3_stmt *st = NULL;
        int r;

        r = prepare_cached(s,
                "UPDATE events SET status = ?1, status_reason = ?2, claimed_by = NULL, "
                "claim_until = NULL, next_attempt_at = NULL, "
                "last_error = COALESCE(?3, last_error), updated_at = ?4, finished_at = ?4 "
                "WHERE id = ?5",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, status);
        stmt_bind_text(st, 2, reason);
        stmt_bind_text(st, 3, err);
        stmt_bind_i64(st, 4, now);
        stmt_bind_text(st, 5, id);
        return step_done(st);
}

/* Removes the "queued" attempts of event id (claimed ahead, never started) and takes
 * them off its attempt_count; *attempts is that count, kept in step. */
static int unqueue(knock_store *s, const char *id, int64_t *attempts)
{
        sqlite3_stmt *st = NULL;
        int64_t n;
        int r;

        r = prepare_cached(s, "DELETE FROM attempts WHERE event_id = ?1 AND outcome = 'queued'",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, id);
        r = step_done(st);
        if (r < 0)
                return r;
        n = sqlite3_changes64(s->db);
        if (n == 0)
                return 0;
        r = prepare_cached(s,
                "UPDATE events SET attempt_count = MAX(attempt_count - ?1, 0) WHERE id = ?2",
                &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, n);
        stmt_bind_text(st, 2, id);
        r = step_done(st);
        if (r < 0)
                return r;
        *attempts = MAX(*attempts - n, 0);
        return 0;
}

static int claim_one(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        int64_t lease_ms, bool queued, claim_candidate *cand, bool *ret_claimed,
        knock_claim_stats *stats)
{
        sqlite3_stmt *st = NULL;
        knock_claim *c = &cand->c;
        const char *id = c->id;
        const char *handler;
        int r;

        *ret_claimed = false;

        if (streq(cand->status, "processing")) {
                /* The holder's lease ran out: it crashed or hung. A claim
                 * it held ahead of a free slot never ran: uncounted, as if
                 * never claimed. A running attempt ends "lost" and counts;
                 * the event runs again. */
                r = unqueue(s, id, &cand->attempts);
                if (r < 0)
                        return r;
                r = prepare_cached(s,
                        "UPDATE attempts SET outcome = 'lost', ended_at = ?1, "
                        "error = 'lease expired before the attempt finished' "
                        "WHERE event_id = ?2 AND outcome = 'running'",
                        &st);
                if (r < 0)
                        return r;
                stmt_bind_i64(st, 1, now);
                stmt_bind_text(st, 2, id);
                r = step_done(st);
                if (r < 0)
                        return r;
                stmt_resetp(&st);
                stats->taken_over++;

                if (cand->attempts >= (int64_t)cfg->max_attempts) {
                        const char *err = "lease expired on the last attempt";
                        bool q;

                        r = end_unclaimed(s, id, "dead", "max_attempts", err, now);
                        if (r < 0)
                                return r;
                        stats->dead++;
                        r = queue_hook(s, cfg, now, id, c->provider_event_id, c->event_type, "dead",
                                cand->attempts, err, &q);
                        if (r < 0)
                                return r;
                        stats->hooks += q;
                        return 0;
                }
        }

        handler = config_handler_for(cfg, c->event_type);
        if (!handler || !handler[0]) {
                r = end_unclaimed(s, id, "ignored", "no_handler", NULL, now);
                if (r < 0)
                        return r;
                stats->ignored++;
                return 0;
        }

        /* By the rowid the candidate was read with, in this transaction. */
        r = prepare_cached(s,
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
        r = step_done(st);
        if (r < 0)
                return r;
        stmt_resetp(&st);

        c->attempt = cand->attempts + 1;
        c->claimed_at = now;
        c->queued = queued;
        id_new("att", c->attempt_id);
        c->handler = strdup(handler);
        if (!c->handler)
                return -ENOMEM;

        r = prepare_cached(s,
                "INSERT INTO attempts (id, event_id, delivery_id, attempt, worker, "
                "handler, started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text_static(st, 1, c->attempt_id);
        stmt_bind_text_static(st, 2, id);
        stmt_bind_text_static(st, 3, c->delivery_id);
        stmt_bind_i64(st, 4, c->attempt);
        stmt_bind_text_static(st, 5, worker);
        stmt_bind_text_static(st, 6, c->handler);
        stmt_bind_i64(st, 7, now);
        stmt_bind_text_static(st, 8, queued ? "queued" : "running");
        r = step_done(st);
        if (r < 0)
                return r;
        c->attempt_rowid = sqlite3_last_insert_rowid(s->db);
        *ret_claimed = true;
        return 0;
}

#define TAKE_CLAIM(c)                                                                              \
        ({                                                                                         \
                knock_claim _c_ = (c);                                                             \
                (c) = (knock_claim){};                                                             \
                _c_;                                                                               \
        })

static void claims_free(knock_claim *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                knock_claim_clear(&v[i]);
        free(v);
}

/* The claim loop, inside the caller's transaction; appends to v[*n] (room for max).
 * Claims from the n_now-th on are queued, and taken only while their bodies fit in
 * ahead_bytes (claiming ahead must not hold hundreds of large bodies in memory). */
static int claim_in_tx(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        int64_t lease_ms, size_t max, size_t n_now, int64_t ahead_bytes, knock_claim *v,
        size_t *n, knock_claim_stats *stats)
{
        bool full = false;
        int r = 0;

        /* Each query is re-run while it yields rows, because rows turned
         * into ignored/dead leave room for more claims within `max`. */
        for (size_t q = 0; q < ELEMENTSOF(claim_queries) && *n < max; q++) {
                for (;;) {
                        sqlite3_stmt *st = NULL;
                        claim_candidate *cands;
                        size_t seen = 0, before = *n, want = max - *n;

                        cands = calloc(want, sizeof(*cands));
                        if (!cands)
                                return -ENOMEM;
                        r = prepare_cached(s, claim_queries[q], &st);
                        if (r < 0) {
                                free(cands);
                                return r;
                        }
                        stmt_bind_i64(st, 1, now);
                        stmt_bind_i64(st, 2, (int64_t)want);
                        if (sqlite3_bind_parameter_count(st) >= 3)
                                stmt_bind_text(st, 3, worker);
                        while (seen < want) {
                                int rc = sqlite3_step(st);

                                if (rc == SQLITE_DONE)
                                        break;
                                if (rc != SQLITE_ROW) {
                                        r = store_errno(rc);
                                        break;
                                }
                                r = candidate_read(st, &cands[seen++]);
                                if (r < 0)
                                        break;
                        }
                        stmt_resetp(&st);

                        for (size_t i = 0; r >= 0 && i < seen; i++) {
                                bool claimed, queued = *n >= n_now;

                                if (queued) {
                                        ahead_bytes -= (int64_t)cands[i].c.body_len;
                                        if (ahead_bytes < 0) {
                                                full = true;
                                                break;
                                        }
                                }
                                r = claim_one(s, cfg, worker, now, lease_ms, queued, &cands[i],
                                        &claimed, stats);
                                if (r >= 0 && claimed)
                                        v[(*n)++] = TAKE_CLAIM(cands[i].c);
                        }
                        for (size_t i = 0; i < seen; i++)
                                knock_claim_clear(&cands[i].c);
                        free(cands);
                        if (r < 0)
                                return r;
                        /* Stop when this kind is exhausted, or every row seen
                         * was claimed (the limit was the bound). */
                        if (full || seen == 0 || *n >= max || *n - before == seen)
                                break;
                }
                if (full)
                        break;
        }
        return 0;
}

int events_claim(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        int64_t lease_ms, size_t max, knock_claim **ret, size_t *ret_n, knock_claim_stats *stats)
{
        return events_finish_and_claim(
                s, cfg, worker, now, NULL, 0, NULL, 0, NULL, lease_ms, max, max, 0, ret, ret_n,
                stats);
}

static int events_renew_impl(
        knock_store *s, const char *worker, const char *const *ids, size_t n, int64_t until)
{
        sqlite3_stmt *st = NULL;
        int r;

        if (n == 0)
                return 0;
        r = store_begin(s);
        if (r < 0)
                return r;
        r = prepare_cached(s,
                "UPDATE events SET claim_until = ?1 WHERE id = ?2 AND "
                "status = 'processing' AND claimed_by = ?3",
                &st);
        if (r < 0)
                goto fail;
        for (size_t i = 0; i < n; i++) {
                sqlite3_reset(st);
                stmt_bind_i64(st, 1, until);
                stmt_bind_text(st, 2, ids[i]);
                stmt_bind_text(st, 3, worker);
                r = step_done(st);
                if (r < 0)
                        goto fail;
        }
        stmt_resetp(&st);
        return store_commit(s);
fail:
        stmt_resetp(&st);
        store_rollback(s);
        return r;
}

static int finish_one(knock_store *s, const knock_config *cfg, const char *worker, int64_t now,
        knock_attempt_result *res, bool *ret_hook)
{
        sqlite3_stmt *st = NULL;
        _cleanup_free_ char *pid = NULL, *type = NULL;
        const char *status, *reason = NULL;
        bool want_hook;
        int64_t next = -1;
        int r;

        *ret_hook = false;
        res->new_status = NULL;
        res->hook_queued = false;

        /* The attempt happened whatever became of the claim: record it. By
         * the claim's rowid when it still holds this attempt, else by id. */
#define FINISH_ATTEMPT                                                                             \
        "UPDATE attempts SET ended_at = ?1, outcome = ?2, exit_code = ?3, "                        \
        "signal = ?4, http_status = ?5, error = ?6, output = ?7, "                                 \
        "started_at = COALESCE(?9, started_at) WHERE id = ?8"
        for (int by_rowid = res->attempt_rowid > 0; by_rowid >= 0; by_rowid--) {
                r = prepare_cached(s, by_rowid ? FINISH_ATTEMPT " AND rowid = ?10" : FINISH_ATTEMPT,
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
                if (res->output && res->output_len > 0)
                        sqlite3_bind_text(st, 7, res->output, (int)res->output_len, SQLITE_STATIC);
                stmt_bind_text_static(st, 8, res->attempt_id);
                if (res->started_at > 0)
                        stmt_bind_i64(st, 9, res->started_at);
                if (by_rowid)
                        stmt_bind_i64(st, 10, res->attempt_rowid);
                r = step_done(st);
                if (r < 0)
                        return r;
                stmt_resetp(&st);
                if (sqlite3_changes(s->db) > 0)
                        break;
        }

        switch (res->outcome) {
        case EVENT_OUTCOME_SUCCESS:
                status = "handled";
                break;
        case EVENT_OUTCOME_PERMANENT:
                status = "dead";
                reason = "permanent_failure";
                break;
        default:
                if (res->attempt >= (int64_t)cfg->max_attempts) {
                        status = "dead";
                        reason = "max_attempts";
                } else {
                        status = "failed";
                        next = now + (int64_t)events_backoff_ms(cfg->backoff_base_ms,
                                             cfg->backoff_cap_ms, res->attempt, jitter_random());
                }
                break;
        }

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
        want_hook = hook_wanted(cfg, status);
        /* By the claim's rowid when it still holds this event, else by id. */
        for (int by_rowid = res->event_rowid > 0;; by_rowid--) {
                static const char *const sql[2][2] = {
                        {FINISH_UPDATE, FINISH_UPDATE " AND rowid = ?8"},
                        {FINISH_UPDATE FINISH_RETURNING,
                                FINISH_UPDATE " AND rowid = ?8" FINISH_RETURNING},
                };

                r = prepare_cached(s, sql[want_hook][by_rowid], &st);
                if (r < 0)
                        return r;
                stmt_bind_text_static(st, 1, status);
                stmt_bind_text_static(st, 2, reason);
                stmt_bind_i64_or_null(st, 3, next);
                stmt_bind_text_static(st, 4, res->error);
                stmt_bind_i64(st, 5, now);
                stmt_bind_text_static(st, 6, res->event_id);
                stmt_bind_text_static(st, 7, worker);
                if (by_rowid)
                        stmt_bind_i64(st, 8, res->event_rowid);
                if (!want_hook) {
                        r = step_done(st);
                        if (r < 0)
                                return r;
                        if (sqlite3_changes(s->db) > 0) {
                                res->new_status = status;
                                res->next_attempt_at = next;
                                return 0;
                        }
                } else {
                        r = sqlite3_step(st);
                        if (r == SQLITE_ROW)
                                break;
                        if (r != SQLITE_DONE)
                                return store_errno(r);
                }
                if (!by_rowid)
                        return 0; /* the claim was lost: the new holder decides */
        }
        pid = stmt_strdup(st, 0);
        type = stmt_strdup(st, 1);
        {
                _cleanup_free_ char *last = stmt_strdup(st, 2);

                r = step_done(st);
                if (r < 0)
                        return r;
                stmt_resetp(&st);
                res->new_status = status;
                res->next_attempt_at = next;
                r = queue_hook(s, cfg, now, res->event_id, pid, type, status, res->attempt, last,
                        ret_hook);
                if (r < 0)
                        return r;
        }
        res->hook_queued = *ret_hook;
        return 0;
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
                s, cfg, worker, now, NULL, 0, results, n, ret_hooks, 0, 0, 0, 0, NULL, &dummy, NULL);
}

/* Queued attempts whose handlers started: "running" from their real start time. A
 * notice that comes after the result (or after a take-over) changes nothing. */
static int mark_started(knock_store *s, const knock_started *started, size_t n)
{
        sqlite3_stmt *st = NULL;
        int r;

        for (size_t i = 0; i < n; i++) {
#define MARK_STARTED                                                                               \
        "UPDATE attempts SET outcome = 'running', started_at = ?1 "                                \
        "WHERE id = ?2 AND outcome = 'queued'"
                /* By the claim's rowid when it still holds this attempt, else by id. */
                for (int by_rowid = started[i].attempt_rowid > 0; by_rowid >= 0; by_rowid--) {
                        r = prepare_cached(s,
                                by_rowid ? MARK_STARTED " AND rowid = ?3" : MARK_STARTED, &st);
                        if (r < 0)
                                return r;
                        stmt_bind_i64(st, 1, started[i].at);
                        stmt_bind_text_static(st, 2, started[i].attempt_id);
                        if (by_rowid)
                                stmt_bind_i64(st, 3, started[i].attempt_rowid);
                        r = step_done(st);
                        if (r < 0)
                                return r;
                        if (sqlite3_changes(s->db) > 0)
                                break;
                }
        }
        return 0;
}

static int events_finish_and_claim_impl(knock_store *s, const knock_config *cfg, const char *worker,
        int64_t now, const knock_started *started, size_t n_started,
        knock_attempt_result *results, size_t n_results, size_t *ret_hooks, int64_t lease_ms,
        size_t max, size_t n_now, int64_t ahead_bytes, knock_claim **ret, size_t *ret_n,
        knock_claim_stats *stats)
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
        if (r < 0)
                goto fail;
        /* Results first: their slots are what the claim fills. */
        for (size_t i = 0; i < n_results; i++) {
                bool h;

                r = finish_one(s, cfg, worker, now, &results[i], &h);
                if (r < 0)
                        goto fail;
                hooks += h;
        }
        if (max > 0) {
                r = claim_in_tx(
                        s, cfg, worker, now, lease_ms, max, n_now, ahead_bytes, v, &n, stats);
                if (r < 0)
                        goto fail;
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
                claims_free(v, n);
        *ret_n = n;
        return 0;

fail:
        store_rollback(s);
fail_nothing:
        results_reset(results, n_results);
        claims_free(v, n);
        return r;
}

static int events_release_impl(knock_store *s, const char *worker, const char *const *ids,
        const char *const *attempt_ids, size_t n, int64_t now)
{
        int r;

        if (n == 0)
                return 0;
        r = store_begin(s);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                sqlite3_stmt *a = NULL, *e = NULL;

                /* A claim held ahead of a free slot never ran: no attempt. */
                r = prepare_cached(s,
                        "DELETE FROM attempts WHERE id = ?1 AND outcome = 'queued'", &a);
                if (r < 0)
                        goto fail;
                stmt_bind_text(a, 1, attempt_ids ? attempt_ids[i] : NULL);
                r = step_done(a);
                if (r < 0)
                        goto fail;
                r = prepare_cached(s,
                        "UPDATE attempts SET outcome = 'interrupted', ended_at = ?1, "
                        "error = COALESCE(error, 'worker stopping: claim released') "
                        "WHERE id = ?2",
                        &a);
                if (r < 0)
                        goto fail;
                stmt_bind_i64(a, 1, now);
                stmt_bind_text(a, 2, attempt_ids ? attempt_ids[i] : NULL);
                r = step_done(a);
                if (r < 0)
                        goto fail;

                /* Not counted: the worker chose to stop, the handler did not
                 * fail. Due at once, so the next worker picks it up first. */
                r = prepare_cached(s,
                        "UPDATE events SET status = CASE WHEN attempt_count <= 1 THEN "
                        "'received' ELSE 'failed' END, next_attempt_at = CASE WHEN "
                        "attempt_count <= 1 THEN NULL ELSE ?1 END, "
                        "attempt_count = MAX(attempt_count - 1, 0), claimed_by = NULL, "
                        "claim_until = NULL, updated_at = ?1 WHERE id = ?2 AND "
                        "status = 'processing' AND claimed_by = ?3",
                        &e);
                if (r < 0)
                        goto fail;
                stmt_bind_i64(e, 1, now);
                stmt_bind_text(e, 2, ids[i]);
                stmt_bind_text(e, 3, worker);
                r = step_done(e);
                if (r < 0)
                        goto fail;
        }
        return store_commit(s);
fail:
        store_rollback(s);
        return r;
}

static int events_expire_claims_impl(knock_store *s, const char *holder, int64_t now, size_t *ret_n)
{
        sqlite3_stmt *st = NULL;
        int r;

        r = prepare_cached(s,
                "UPDATE events SET claim_until = ?1 WHERE status = 'processing' AND "
                "claimed_by = ?2 AND claim_until >= ?1",
                &st);
        if (r < 0)
                return r;
        /* One statement: autocommit is its own transaction. */
        stmt_bind_i64(st, 1, now - 1);
        stmt_bind_text(st, 2, holder);
        r = step_done(st);
        if (r < 0)
                return r;
        if (ret_n)
                *ret_n = (size_t)sqlite3_changes(s->db);
        return 0;
}

static int events_claim_holders_impl(knock_store *s, char ***ret, size_t *ret_n)
{
        sqlite3_stmt *st = NULL;
        int r;

        r = prepare_cached(s,
                "SELECT DISTINCT claimed_by FROM events WHERE status = 'processing' "
                "AND claimed_by IS NOT NULL",
                &st);
        if (r < 0)
                return r;
        return lease_holders_collect(st, ret, ret_n);
}

static int events_next_due_impl(knock_store *s, const char *worker, int64_t *ret)
{
        sqlite3_stmt *st = NULL;
        int r, rc;

        r = prepare_cached(s,
                "SELECT MIN(t) FROM ("
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM events WHERE "
                "status = 'received') THEN 0 END AS t "
                "UNION ALL SELECT MIN(next_attempt_at) FROM events WHERE "
                "status = 'failed' UNION ALL SELECT MIN(claim_until) + 1 FROM events "
                "WHERE status = 'processing' AND claimed_by IS NOT ?1)",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, worker);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_errno(rc) ?: -EIO;
        *ret = sqlite3_column_type(st, 0) == SQLITE_NULL ? INT64_MAX : sqlite3_column_int64(st, 0);
        return 0;
}

/* Public entry points: no cached statement stays active (holding a read
 * snapshot) once the call returns. */
int events_finish_and_claim(knock_store *s, const knock_config *cfg, const char *worker,
        int64_t now, const knock_started *started, size_t n_started,
        knock_attempt_result *results, size_t n_results, size_t *ret_hooks, int64_t lease_ms,
        size_t max, size_t n_now, int64_t ahead_bytes, knock_claim **ret, size_t *ret_n,
        knock_claim_stats *stats)
{
        int r = events_finish_and_claim_impl(s, cfg, worker, now, started, n_started, results,
                n_results, ret_hooks, lease_ms, max, n_now, ahead_bytes, ret, ret_n, stats);

        cache_reset_all();
        return r;
}

int events_renew(
        knock_store *s, const char *worker, const char *const *ids, size_t n, int64_t until)
{
        int r = events_renew_impl(s, worker, ids, n, until);

        cache_reset_all();
        return r;
}

int events_release(knock_store *s, const char *worker, const char *const *ids,
        const char *const *attempt_ids, size_t n, int64_t now)
{
        int r = events_release_impl(s, worker, ids, attempt_ids, n, now);

        cache_reset_all();
        return r;
}

int events_expire_claims(knock_store *s, const char *holder, int64_t now, size_t *ret_n)
{
        int r = events_expire_claims_impl(s, holder, now, ret_n);

        cache_reset_all();
        return r;
}

int events_claim_holders(knock_store *s, char ***ret, size_t *ret_n)
{
        int r = events_claim_holders_impl(s, ret, ret_n);

        cache_reset_all();
        return r;
}

int events_next_due(knock_store *s, const char *worker, int64_t *ret)
{
        int r = events_next_due_impl(s, worker, ret);

        cache_reset_all();
        return r;
}
