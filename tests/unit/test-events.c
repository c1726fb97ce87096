/* SPDX-License-Identifier: MIT */
/*
 * test-events — the worker's claim and finish keep the rowids of the rows
 * they claimed and go back to them by rowid, checked against the id: a
 * rowid that now names another row (VACUUM may renumber rowids) must change
 * nothing there, and the row is then found by its id. The same for the
 * started notice of an attempt claimed ahead.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "events.h"
#include "store.h"
#include "tap.h"
#include "util.h"

static char *query_text(knock_store *s, const char *sql, const char *arg)
{
        db_stmt *st = NULL;
        char *v = NULL;

        if (store_prepare(s, sql, &st) < 0)
                return NULL;
        stmt_bind_text(st, 1, arg);
        if (stmt_step(st) > 0 && stmt_col_text(st, 0))
                v = strdup(stmt_col_text(st, 0));
        stmt_finalize(st);
        return v;
}

static int64_t query_i64(knock_store *s, const char *sql, const char *arg)
{
        db_stmt *st = NULL;
        int64_t v = -1;

        if (store_prepare(s, sql, &st) < 0)
                return -1;
        stmt_bind_text(st, 1, arg);
        if (stmt_step(st) > 0)
                v = stmt_col_i64(st, 0);
        stmt_finalize(st);
        return v;
}

static void is_status(knock_store *s, const char *id, const char *want, const char *what)
{
        _cleanup_free_ char *v = query_text(s, "SELECT status FROM events WHERE id = ?1", id);

        is_str(v, want, "%s: event %s is %s", what, id, want);
}

static void is_outcome(knock_store *s, const char *att, const char *want, const char *what)
{
        _cleanup_free_ char *v = query_text(s, "SELECT outcome FROM attempts WHERE id = ?1", att);

        is_str(v, want, "%s: attempt is %s", what, want);
}

static knock_attempt_result success(const knock_claim *c, int64_t event_rowid,
                                    int64_t attempt_rowid)
{
        return (knock_attempt_result){
                .event_id = c->id,
                .attempt_id = c->attempt_id,
                .event_rowid = event_rowid,
                .attempt_rowid = attempt_rowid,
                .attempt = c->attempt,
                .outcome = EVENT_OUTCOME_SUCCESS,
                .exit_code = 0,
                .ended_at = 2000,
        };
}

int main(void)
{
        char dir[] = "/tmp/knock-test-events-XXXXXX", p[512];
        _cleanup_(config_freep) knock_config *cfg = NULL;
        knock_config_errors errs = {};
        knock_store *s = NULL;
        knock_claim *v = NULL, *q = NULL;
        size_t n = 0, nq = 0;
        FILE *f;

        if (!mkdtemp(dir))
                return 1;
        snprintf(p, sizeof(p), "%s/endpoints", dir);
        mkdir(p, 0700);
        snprintf(p, sizeof(p), "%s/endpoints/x.conf", dir);
        f = fopen(p, "w");
        if (!f)
                return 1;
        fputs("[endpoint]\nprovider = none\nallow_unverified = yes\nlisten = 127.0.0.1:1\n"
              "[worker]\nhandler = exec:/bin/true\nmax_attempts = 3\n",
              f);
        fclose(f);
        setenv("KNOCK_CONFIG_DIR", dir, 1);
        is_int(config_load("x", &cfg, &errs), 0, "config loads");
        for (size_t i = 0; i < errs.n; i++)
                printf("# %s\n", errs.msgs[i]);
        config_errors_clear(&errs);
        if (!cfg)
                return tap_done();
        snprintf(p, sizeof(p), "%s/x.db", dir);
        is_int(store_open(p, STORE_CREATE, &s), 0, "database created");
        if (!s)
                return tap_done();
        for (int i = 1; i <= 4; i++) {
                snprintf(p, sizeof(p),
                         "INSERT INTO events(id,status,delivery_id,received_at,updated_at,"
                         "next_attempt_at) VALUES('evt_%d','received','dlv_%d',%d,1,%d)",
                         i, i, i, i);
                is_int(store_exec(s, p), 0, "event evt_%d inserted", i);
        }

        is_int(events_claim(s, cfg, "w1", 1000, 60000, 3, &v, &n, NULL), 0, "claim");
        is_int((int)n, 3, "three claimed");
        if (n != 3)
                return tap_done();
        for (size_t i = 0; i < n; i++) {
                ok(v[i].event_rowid > 0 &&
                           v[i].event_rowid ==
                                   query_i64(s, "SELECT rowid FROM events WHERE id = ?1", v[i].id),
                   "%s: the claim keeps the event's rowid", v[i].id);
                ok(v[i].attempt_rowid > 0 &&
                           v[i].attempt_rowid == query_i64(s,
                                                           "SELECT rowid FROM attempts WHERE id = ?1",
                                                           v[i].attempt_id),
                   "%s: and its attempt's", v[i].id);
        }

        /* Rowids that now name the other claimed rows. */
        {
                knock_attempt_result r = success(&v[0], v[1].event_rowid, v[1].attempt_rowid);

                is_int(events_finish(s, cfg, "w1", 2000, &r, 1, NULL), 0,
                       "finish with stale rowids");
                is_str(r.new_status, "handled", "the claim was still ours");
                is_status(s, v[0].id, "handled", "stale rowids");
                is_outcome(s, v[0].attempt_id, "success", "stale rowids");
                is_status(s, v[1].id, "processing", "the row the stale rowid names");
                is_outcome(s, v[1].attempt_id, "running", "the row the stale rowid names");
        }
        {
                knock_attempt_result r = success(&v[1], v[1].event_rowid, v[1].attempt_rowid);

                is_int(events_finish(s, cfg, "w1", 2000, &r, 1, NULL), 0, "finish by rowid");
                is_status(s, v[1].id, "handled", "rowids");
                is_outcome(s, v[1].attempt_id, "success", "rowids");
        }
        {
                knock_attempt_result r = success(&v[2], 999999, 999999);

                is_int(events_finish(s, cfg, "w1", 2000, &r, 1, NULL), 0,
                       "finish with rowids of no row");
                is_status(s, v[2].id, "handled", "missing rowids");
                is_outcome(s, v[2].attempt_id, "success", "missing rowids");
        }
        {
                knock_attempt_result r = success(&v[2], v[2].event_rowid, v[2].attempt_rowid);

                r.attempt_id = "att_other";
                is_int(events_finish(s, cfg, "w1", 2000, &r, 1, NULL), 0,
                       "a result for an event no longer ours");
                ok(r.new_status == NULL, "is a lost claim");
        }

        /* Claimed ahead: queued until its started notice, which carries a stale rowid. */
        is_int(events_finish_and_claim(s, cfg, "w1", 3000, NULL, 0, NULL, 0, NULL, 60000, 1, 0,
                                       1 << 20, NULL, &q, &nq, NULL),
               0, "claim ahead");
        is_int((int)nq, 1, "one claimed ahead");
        if (nq == 1) {
                knock_started st = {.attempt_rowid = v[0].attempt_rowid, .at = 3500};
                size_t dummy;

                snprintf(st.attempt_id, sizeof(st.attempt_id), "%s", q[0].attempt_id);
                is_outcome(s, q[0].attempt_id, "queued", "claimed ahead");
                is_int(events_finish_and_claim(s, cfg, "w1", 3600, &st, 1, NULL, 0, NULL, 60000, 0,
                                               0, 0, NULL, NULL, &dummy, NULL),
                       0, "started notice with a stale rowid");
                is_outcome(s, q[0].attempt_id, "running", "started");
                is_outcome(s, v[0].attempt_id, "success", "the attempt the stale rowid names");
                is_int(query_i64(s, "SELECT started_at FROM attempts WHERE id = ?1",
                                 q[0].attempt_id),
                       3500, "its start time recorded");
        }

        for (size_t i = 0; i < n; i++)
                knock_claim_clear(&v[i]);
        free(v);
        for (size_t i = 0; i < nq; i++)
                knock_claim_clear(&q[i]);
        free(q);
        store_close(s);
        snprintf(p, sizeof(p), "rm -rf '%s'", dir);
        (void)!system(p);
        return tap_done();
}
