/* SPDX-License-Identifier: MIT */
/*
 * maint-prune — retention: prune's batches, its audit row, and the audit
 * table's own retention (see maint.h for the promises). Which rows may go
 * and the statements that delete them are events.c's and hooks.c's; this
 * file decides how much to delete at once and when to let writers in.
 *
 * Why prune selects outside the lock: finding the next batch of old rows may
 * scan many young ones, and a scan under BEGIN IMMEDIATE would stall the
 * ingress for as long as it takes. So each batch is chosen by a plain read
 * (WAL readers block nobody) into a temp table, walking the primary key with
 * a cursor so no row is looked at twice; then, under the write lock, every
 * chosen id is checked again by primary key (a worker or an operator may have
 * changed it since) and the rows are deleted, children first, so each table's
 * count is exact. The lock is held only for primary-key lookups and deletes.
 *
 * Why the pause after each batch is at least 30 ms and at least as long as
 * the batch: the ingress waits for the lock in SQLite's default busy
 * handler, which sleeps and polls (1, 2, 5, 10, 15, 20, 25, 25, 25, 50 …
 * ms). If the pruner took the lock again at once, a waiting writer could
 * miss every window; a pause longer than its sleeps lets it in at its next
 * poll, so its stall is bounded by one batch plus one sleep. Batches are
 * sized to hold the lock about 20 ms (halved when slower, doubled back when
 * faster).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "maint-internal.h"

#define AUDIT_BATCH "1000"
#define CHECKPOINT_EVERY_BATCHES 20
/* Longer than the longest sleep of SQLite's default busy handler during
 * its first 100 ms of waiting (25 ms), so a writer that started waiting
 * while a batch held the lock always polls once inside the pause. */
#define PRUNE_PAUSE_MS 30U
#define BATCH_TARGET_US 20000
#define BATCH_MIN 25U

void maint_prune_spec_init(maint_prune_spec *spec)
{
        *spec = (maint_prune_spec){.orphans_cutoff = -1};
        for (size_t i = 0; i < ELEMENTSOF(spec->cutoff); i++)
                spec->cutoff[i] = -1;
}

static int64_t cutoff_of(uint64_t keep_ms, int64_t now)
{
        if (keep_ms == UINT64_MAX)
                return -1;
        if (keep_ms > (uint64_t)now)
                return 0;
        return now - (int64_t)keep_ms;
}

int maint_prunable_status(const char *name)
{
        event_status s = event_status_from_string(name);

        return event_status_is_final(s) ? (int)s : -1;
}

void maint_prune_spec_from_config(const knock_config *c, int64_t now, maint_prune_spec *spec)
{
        maint_prune_spec_init(spec);
        spec->cutoff[EVENT_STATUS_HANDLED] = cutoff_of(c->keep_handled_ms, now);
        spec->cutoff[EVENT_STATUS_IGNORED] = cutoff_of(c->keep_ignored_ms, now);
        spec->cutoff[EVENT_STATUS_DEAD] = cutoff_of(c->keep_dead_ms, now);
        spec->orphans_cutoff = cutoff_of(c->keep_orphans_ms, now);
}

bool maint_prune_spec_empty(const maint_prune_spec *spec)
{
        for (size_t i = 0; i < ELEMENTSOF(spec->cutoff); i++)
                if (spec->cutoff[i] >= 0)
                        return false;
        return spec->orphans_cutoff < 0;
}

/* Adds what one class (status, or orphans: _EVENT_STATUS_INVALID) lost to c. */
static void counts_add(maint_prune_counts *c, event_status status, const events_pruned *p)
{
        if (status >= 0)
                c->by_status[status] += p->events;
        c->events += p->events;
        c->deliveries += p->deliveries;
        c->orphans += p->orphans;
        c->attempts += p->attempts;
        c->hooks += p->hooks;
        c->hook_attempts += p->hook_attempts;
}

int maint_prune_count(knock_store *s, const maint_prune_spec *spec, maint_prune_counts *ret)
{
        maint_prune_counts c = {0};
        uint64_t t0 = mono_us();
        int r;

        /* One read transaction: all the counts describe the same snapshot. */
        r = store_exec(s, "BEGIN");
        if (r < 0)
                return r;
        for (int i = -1; i < _EVENT_STATUS_MAX && r >= 0; i++) {
                int64_t cutoff = i < 0 ? spec->orphans_cutoff : spec->cutoff[i];
                events_pruned p = {0};

                if (cutoff < 0)
                        continue;
                r = events_prune_count(s, (event_status)i, cutoff, &p);
                counts_add(&c, (event_status)i, &p);
        }
        store_rollback(s);
        if (r < 0)
                return r;
        c.duration_ms = (mono_us() - t0) / 1000;
        *ret = c;
        return 0;
}

/*
 * One class of rows (events of one status, or orphan deliveries: status
 * _EVENT_STATUS_INVALID) in batches until none is left. The pick runs
 * outside the lock; the recheck and the deletes inside one short
 * transaction.
 */
static int prune_class(knock_store *s, const maint_prune_spec *spec, event_status status,
        maint_prune_counts *c)
{
        unsigned max_batch = spec->batch ? spec->batch : MAINT_PRUNE_BATCH;
        unsigned batch = max_batch;
        unsigned pause_us = (spec->pause_ms ? spec->pause_ms : PRUNE_PAUSE_MS) * 1000;
        int64_t cutoff = status >= 0 ? spec->cutoff[status] : spec->orphans_cutoff;
        char cursor[KNOCK_ID_MAX + 8] = "";
        int r;

        for (;;) {
                events_pruned p = {0};
                uint64_t picked = 0, t0, held;

                r = events_prune_pick(s, status, cutoff, cursor, sizeof(cursor), batch, &picked);
                if (r < 0 || picked == 0)
                        return r;

                r = maint_begin_patient(s);
                if (r < 0)
                        return r;
                t0 = mono_us();
                r = store_end(s, events_prune_delete(s, status, cutoff, &p));
                if (r < 0)
                        return r;
                counts_add(c, status, &p);
                held = mono_us() - t0;
                c->batches++;
                c->longest_batch_us = MAX(c->longest_batch_us, held);
                /* A slow disk or a busy machine makes a batch slower: aim
                 * the next one at the target time, never above max_batch. */
                if (held > 2 * BATCH_TARGET_US)
                        batch = MAX(BATCH_MIN, batch / 2);
                else if (held < BATCH_TARGET_US / 2)
                        batch = MIN(max_batch, batch * 2);
                /* Let a waiting writer in (see the top of this file). */
                usleep((useconds_t)MAX((uint64_t)pause_us, held));
                /* Keep the WAL bounded when no ingress checkpoints it. PASSIVE
                 * never waits for the lock and never blocks a writer. */
                if (c->batches % CHECKPOINT_EVERY_BATCHES == 0 && store_sqlite(s))
                        (void)store_exec(s, "PRAGMA wal_checkpoint(PASSIVE)");
        }
}

int maint_prune(knock_store *s, const maint_prune_spec *spec, maint_prune_counts *ret)
{
        uint64_t t0 = mono_us();
        int r, k;

        *ret = (maint_prune_counts){0};
        r = events_prune_start(s);
        if (r < 0)
                return r;
        /* The batches commit without waiting for fsync (WAL + NORMAL is
         * still atomic and never corrupts): that keeps the write lock short.
         * A batch lost to a power cut only means rows the next run deletes
         * again. FULL is back before the caller writes the audit row, whose
         * commit then makes every batch before it durable too. PostgreSQL
         * has neither the pragmas nor the single write lock: its batches
         * only lock the rows they delete. */
        if (!store_sqlite(s))
                r = 0;
        else
                r = store_exec(s, "PRAGMA synchronous=NORMAL");
        /* No automatic checkpoint inside COMMIT either: prune_class runs a
         * PASSIVE one between batches, outside the lock, and it is not
         * counted as lock time. */
        if (r >= 0 && store_sqlite(s))
                r = store_exec(s, "PRAGMA wal_autocheckpoint=0");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(spec->cutoff); i++)
                if (spec->cutoff[i] >= 0)
                        r = prune_class(s, spec, (event_status)i, ret);
        if (r >= 0 && spec->orphans_cutoff >= 0)
                r = prune_class(s, spec, _EVENT_STATUS_INVALID, ret);
        events_prune_stop(s);
        k = 0;
        if (store_sqlite(s)) {
                (void)store_exec(s, "PRAGMA wal_checkpoint(PASSIVE)");
                (void)store_exec(s, "PRAGMA wal_autocheckpoint=1000");
                k = store_exec(s, "PRAGMA synchronous=FULL");
        }
        if (r >= 0 && k < 0)
                r = k;
        ret->duration_ms = (mono_us() - t0) / 1000;
        return r < 0 ? r : 0;
}

static json_t *time_or_null(int64_t ms)
{
        char buf[64];

        return ms < 0 ? json_null() : json_string(format_rfc3339(ms, buf, sizeof(buf)));
}

char *maint_prune_filters_json(const maint_prune_spec *spec, bool dry_run)
{
        json_t *o = json_object(), *before = json_object(), *statuses = json_array();
        char *text = NULL;

        if (!o || !before || !statuses)
                goto out;
        for (size_t i = 0; i < ELEMENTSOF(spec->cutoff); i++)
                if (spec->cutoff[i] >= 0) {
                        json_array_append_new(statuses, json_string(event_status_names[i]));
                        json_object_set_new(
                                before, event_status_names[i], time_or_null(spec->cutoff[i]));
                }
        if (spec->orphans_cutoff >= 0)
                json_object_set_new(before, "orphans", time_or_null(spec->orphans_cutoff));
        json_object_set(o, "statuses", statuses);
        json_object_set_new(o, "orphans", json_boolean(spec->orphans_cutoff >= 0));
        json_object_set(o, "before", before);
        json_object_set_new(
                o, "batch", json_integer(spec->batch ? spec->batch : MAINT_PRUNE_BATCH));
        json_object_set_new(o, "dry_run", json_boolean(dry_run));
        text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
        json_decref(o);
        json_decref(before);
        json_decref(statuses);
        return text;
}

static json_t *counts_object(const maint_prune_counts *c)
{
        json_t *o = json_object();

        if (!o)
                return NULL;
        json_object_set_new(o, "events", json_integer((json_int_t)c->events));
        for (size_t i = 0; i < ELEMENTSOF(c->by_status); i++)
                if (event_status_is_final((event_status)i))
                        json_object_set_new(o, event_status_names[i],
                                json_integer((json_int_t)c->by_status[i]));
        json_object_set_new(o, "deliveries", json_integer((json_int_t)c->deliveries));
        json_object_set_new(o, "orphan_deliveries", json_integer((json_int_t)c->orphans));
        json_object_set_new(o, "attempts", json_integer((json_int_t)c->attempts));
        json_object_set_new(o, "hooks", json_integer((json_int_t)c->hooks));
        json_object_set_new(o, "hook_attempts", json_integer((json_int_t)c->hook_attempts));
        json_object_set_new(o, "batches", json_integer((json_int_t)c->batches));
        json_object_set_new(o, "longest_batch_us", json_integer((json_int_t)c->longest_batch_us));
        json_object_set_new(o, "duration_ms", json_integer((json_int_t)c->duration_ms));
        return o;
}

char *maint_prune_counts_json(const maint_prune_counts *c)
{
        json_t *o = counts_object(c);
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

        json_decref(o);
        return text;
}

static uint64_t counts_total(const maint_prune_counts *c)
{
        return c->events + c->deliveries + c->orphans + c->attempts + c->hooks + c->hook_attempts;
}

/* meta key += add (a decimal counter). */
static int meta_add(knock_store *s, const char *key, uint64_t add)
{
        _cleanup_free_ char *v = NULL;
        uint64_t cur = 0;
        int r;

        r = store_meta_get(s, key, &v);
        if (r < 0)
                return r;
        if (v && parse_u64_strict(v, &cur) < 0)
                cur = 0;
        return maint_meta_set_u64(s, key, cur + add);
}

int maint_prune_record(knock_store *s, const char *actor, const maint_prune_spec *spec,
        const maint_prune_counts *c, int error)
{
        _cleanup_free_ char *filters = NULL, *counts = NULL;
        json_t *o;
        int r;

        filters = maint_prune_filters_json(spec, false);
        o = counts_object(c);
        if (o && error < 0)
                json_object_set_new(o, "error", json_string(strerror(-error)));
        counts = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!filters || !counts)
                return -ENOMEM;

        r = maint_audit_begin(s, actor, "prune", filters, counts, "last_prune_at", now_ms());
        if (r < 0)
                return r;
        r = maint_meta_set_u64(s, "last_prune_rows", counts_total(c));
        if (r >= 0)
                r = meta_add(s, "prune_rows_deleted_total", counts_total(c));
        return store_end(s, r);
}

/* ---- the audit table's retention ------------------------------------------------------- */

int maint_prune_audit(knock_store *s, int64_t before, uint64_t *ret_deleted)
{
        _cleanup_stmt_ db_stmt *pick = NULL, *del = NULL;
        uint64_t deleted = 0;
        int r;

        *ret_deleted = 0;
        r = store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS maint_audit(id TEXT PRIMARY KEY);"
                          "DELETE FROM maint_audit");
        if (r < 0)
                return r;
        r = store_prepare(s,
                "INSERT INTO maint_audit SELECT id FROM audit WHERE at < ?"
                " LIMIT " AUDIT_BATCH,
                &pick);
        if (r >= 0)
                r = store_prepare(
                        s, "DELETE FROM audit WHERE id IN (SELECT id FROM maint_audit)", &del);
        while (r >= 0) {
                stmt_bind_i64(pick, 1, before);
                r = stmt_run(pick);
                if (r < 0 || store_changes(s) == 0)
                        break;
                r = maint_begin_patient(s);
                if (r < 0)
                        break;
                r = stmt_run(del);
                if (r >= 0)
                        deleted += (uint64_t)store_changes(s);
                r = store_end(s, r);
                if (r >= 0)
                        r = store_exec(s, "DELETE FROM maint_audit");
                usleep(5000);
        }
        stmt_finalizep(&pick);
        stmt_finalizep(&del);
        (void)store_exec(s, "DROP TABLE IF EXISTS maint_audit");
        *ret_deleted = deleted;
        return r < 0 ? r : 0;
}
