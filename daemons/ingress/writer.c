/* SPDX-License-Identifier: MIT */
/*
 * writer — the ingress's storage thread: group commit and checkpoints.
 * What one receipt writes is events.c's (events_store_receipt()); this file
 * decides which receipts share a transaction and when the loop may answer.
 *
 * Invariants:
 *  - an item is on the done list with result 0 only after the COMMIT of
 *    the transaction holding it returned SQLITE_DONE under
 *    synchronous=FULL; the loop sends 2xx only for those. Any error in a
 *    batch rolls the whole batch back and fails every item in it (503):
 *    nothing that was answered with an error is half-stored, nothing
 *    stored is answered with an error except when the COMMIT itself fails
 *    after writing (then the provider retries and dedupe absorbs it).
 *  - workers are woken only for rows they can read: this host's by a
 *    datagram after the COMMIT; on PostgreSQL, every host's by a NOTIFY
 *    inside the batch's transaction (store_notify()), which the server
 *    delivers at its COMMIT and drops with a ROLLBACK: one per batch that
 *    created events;
 *  - the writer connection runs with wal_autocheckpoint=0: a checkpoint
 *    inside COMMIT would add its copy-back to the latency of every request
 *    in the batch. The checkpoint thread runs PASSIVE checkpoints on its own
 *    connection (never blocking the writer) and a TRUNCATE when ingest has
 *    been idle, which keeps the WAL bounded.
 *  - the WAL restarts from its first frame under load. SQLite rewinds the
 *    WAL only when a write transaction begins with every frame copied back,
 *    which a checkpoint running beside a busy writer never achieves: the
 *    WAL then grows without end (570 MB in 6 s at 64 connections) and every
 *    commit appends to new blocks of a growing file (ext4 allocates and
 *    zeroes them, fdatasync writes the inode). So once the WAL holds
 *    WAL_RESTART_FRAMES, the writer asks the checkpointer for passes until
 *    at most WAL_CATCHUP_FRAMES are left, then checkpoints those itself
 *    (between batches, after the last batch was handed back): its next
 *    transaction starts the WAL over, overwriting blocks already allocated.
 *    The checkpointer syncs the database file after each pass, so the
 *    writer's own checkpoint flushes only what it copied.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "admin.h"
#include "events.h"
#include "ingress.h"
#include "store.h"

#define BATCH_MAX 1024
#define CHECKPOINT_INTERVAL_MS 500
#define CHECKPOINT_IDLE_TRUNCATE_MS 10000
#define GATHER_MS 250
/* 16 MB of 4 KiB-page frames: the WAL's size under load. */
#define WAL_RESTART_FRAMES 4096
/* What the writer copies itself, at most. Its copy stops every batch, so
 * it is kept small: with 256 frames (1 MB) it took 6-7 ms nine times a
 * second at 64 connections; with 48, after more passes of the checkpoint
 * thread, 1.5-2.5 ms (bench/README.md). */
#define WAL_CATCHUP_FRAMES 48
/* ... doubled after each further pass, up to 48 << 3 = 384 frames. */
#define WAL_CATCHUP_DOUBLINGS 3

void ingest_item_free(ingest_item *it)
{
        if (!it)
                return;
        free(it->verify_error);
        free(it->provider_event_id);
        free(it->event_type);
        free(it->method);
        free(it->uri);
        free(it->remote);
        free(it->content_type);
        free(it->headers_json);
        free(it->body);
        free(it->handshake_content_type);
        free(it->handshake_body);
        free(it->hb_counters);
        free(it->hb_status);
        free(it);
}

static receipt_kind receipt_kind_of(ingest_kind k)
{
        return k == INGEST_EVENT ? RECEIPT_EVENT
             : k == INGEST_HANDSHAKE ? RECEIPT_HANDSHAKE
                                     : RECEIPT_ORPHAN;
}

static int store_item(knock_store *st, ingest_item *it)
{
        knock_receipt r;
        int k;

        it->duplicate = false;
        if (it->kind == INGEST_HEARTBEAT)
                return store_daemon_heartbeat(st, "ingress", it->hb_counters, it->hb_status);
        /* Pointers into the item, bound without copies: it outlives the call. */
        r = (knock_receipt){
                .kind = receipt_kind_of(it->kind),
                .delivery_id = it->delivery_id,
                .event_id = it->event_id,
                .received_at = it->received_at,
                .http_status = it->http_status,
                .signature_valid = it->signature_valid,
                .verify_error = it->verify_error,
                .provider_event_id = it->provider_event_id,
                .event_type = it->event_type,
                .request_id = it->request_id,
                .method = it->method,
                .uri = it->uri,
                .remote = it->remote,
                .content_type = it->content_type,
                .headers_json = it->headers_json,
                /* 413: the body was never read, nothing is stored; any other
                 * delivery without one stored an empty body. */
                .body = it->body                ? it->body
                      : it->http_status == 413 ? NULL
                                               : (const unsigned char *)"",
                .body_len = it->body_len,
                .body_bytes = it->body_bytes,
        };
        k = events_store_receipt(st, &r);
        it->duplicate = r.duplicate;
        return k;
}

typedef struct wal_state {
        int frames;      /* in the WAL after the last commit (sqlite3_wal_hook) */
        bool asked;      /* a checkpointer pass was asked for ... */
        uint64_t passes; /* ... when it had completed this many */
        unsigned repasses; /* passes asked again since, at most WAL_CATCHUP_DOUBLINGS */
        /* for ingest_stats, published with each batch's counters */
        uint64_t written, restarts, restart_us;
} wal_state;

static int wal_frames_hook(void *userdata, sqlite3 *db, const char *schema, int frames)
{
        wal_state *ws = userdata;

        (void)db;
        (void)schema;
        /* Fewer than before: this commit started the WAL over. */
        ws->written += (uint64_t)(frames >= ws->frames ? frames - ws->frames : frames);
        ws->frames = frames;
        return SQLITE_OK;
}

/* After a batch, between batches: keeps the WAL from growing (see the top).
 * Runs on the writer thread, the only writer, so its checkpoint is never
 * refused for a concurrent writer; a reader on an old snapshot only makes
 * it copy less, and the rewind waits for the next round. */
static void wal_restart(ingest_writer *w, knock_store *st, wal_state *ws)
{
        int log = 0, ckpt = 0;
        uint64_t t;
        bool passed;

        if (ws->frames < WAL_RESTART_FRAMES)
                return;
        pthread_mutex_lock(&w->lock);
        if (!ws->asked) {
                ws->asked = true;
                ws->passes = w->ckpt_passes;
                w->ckpt_wanted = true;
                pthread_cond_signal(&w->ckpt_cond);
        }
        passed = w->ckpt_passes != ws->passes;
        if (passed && ws->frames - w->ckpt_backfilled > WAL_CATCHUP_FRAMES << ws->repasses) {
                /* Much was committed while the pass ran: another pass, so
                 * that what is left for the writer stays small. When
                 * commits outpace the passes (large bodies), each further
                 * pass doubles what the writer accepts to copy, so the WAL
                 * still starts over near WAL_RESTART_FRAMES. */
                if (ws->repasses < WAL_CATCHUP_DOUBLINGS)
                        ws->repasses++;
                ws->passes = w->ckpt_passes;
                w->ckpt_wanted = true;
                pthread_cond_signal(&w->ckpt_cond);
                passed = false;
        }
        pthread_mutex_unlock(&w->lock);
        if (!passed)
                return;
        /* The checkpointer copied nearly all the WAL holds: copy the rest,
         * so that the next BEGIN rewinds it. */
        ws->asked = false;
        ws->repasses = 0;
        t = mono_us();
        if (sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt) ==
                    SQLITE_OK && log == ckpt) {
                ws->frames = 0;
                ws->restarts++;
        }
        ws->restart_us += mono_us() - t;
}

/* Stores one batch in one transaction. Returns 0 when committed. */
static int store_batch(knock_store *st, ingest_item *batch, char *err, size_t errlen,
                       uint64_t *ret_commit_us)
{
        bool events = false;
        uint64_t t;
        int r;

        r = store_begin(st);
        if (r < 0)
                goto fail;
        for (ingest_item *it = batch; it; it = it->next) {
                r = store_item(st, it);
                if (r < 0)
                        goto fail;
                events = events || (it->kind == INGEST_EVENT && !it->duplicate);
        }
        /* Every host's workers hear of the new events at the COMMIT below
         * (PostgreSQL; nothing on SQLite). */
        if (events) {
                r = store_notify(st, STORE_TOPIC_EVENTS);
                if (r < 0)
                        goto fail;
        }
        /* The durability point: COMMIT returns only once the WAL frames are
         * fsynced (synchronous=FULL). Nothing in this batch has been
         * answered yet; the loop answers after we hand the batch back. */
        t = mono_us();
        r = store_commit(st);
        *ret_commit_us = mono_us() - t;
        if (r < 0)
                goto fail;
        return 0;
fail:
        snprintf(err, errlen, "%s", store_errmsg(st));
        store_rollback(st);
        return r;
}

static void *writer_main(void *userdata)
{
        ingest_writer *w = userdata;
        _cleanup_(store_closep) knock_store *st = NULL;
        wal_state ws = {0};
        int r;

        pthread_setname_np(pthread_self(), "writer");

        for (;;) {
                ingest_item *batch, *it, **tail;
                size_t n = 0;
                bool woke_worker = false;
                char err[256] = "";
                uint64_t t0, dt, commit_us = 0;

                pthread_mutex_lock(&w->lock);
                while (!w->queue_head && !w->stop)
                        pthread_cond_wait(&w->cond, &w->lock);
                /* Rejected deliveries (and heartbeats) are already answered and
                 * best effort: they wait up to GATHER_MS for company, so a
                 * flood of them costs a commit per interval, not per request.
                 * A request waiting for its answer ends the wait. */
                while (w->queue_head && !w->stop && w->urgent == 0) {
                        uint64_t due = w->queued_since_us + GATHER_MS * 1000;
                        uint64_t now = mono_us();
                        struct timespec ts;

                        if (now >= due)
                                break;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += (long)((due - now) * 1000);
                        ts.tv_sec += ts.tv_nsec / 1000000000L;
                        ts.tv_nsec %= 1000000000L;
                        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
                }
                if (!w->queue_head && w->stop) {
                        pthread_mutex_unlock(&w->lock);
                        break;
                }
                /* Take up to BATCH_MAX items: everything the loop read while
                 * the previous commit was in flight. */
                batch = w->queue_head;
                tail = &batch;
                for (it = batch; it && n < BATCH_MAX; it = it->next) {
                        tail = &it->next;
                        n++;
                        if (it->kind == INGEST_EVENT || it->kind == INGEST_HANDSHAKE)
                                w->urgent--;
                }
                w->queue_head = *tail;
                if (!w->queue_head)
                        w->queue_tail = &w->queue_head;
                else
                        w->queued_since_us = mono_us();
                *tail = NULL;
                w->queued -= n;
                w->busy = true;
                w->busy_since_us = mono_us();
                pthread_mutex_unlock(&w->lock);

                t0 = mono_us();
                if (!st) {
                        r = store_open(w->db_path, STORE_NO_AUTOCHECKPOINT | STORE_WAL_BUFFER, &st);
                        if (r < 0) {
                                st = NULL;
                                snprintf(err, sizeof(err), "cannot open database: %s",
                                         strerror(-r));
                        } else if (store_sqlite(st))
                                sqlite3_wal_hook(store_sqlite(st), wal_frames_hook, &ws);
                }
                /* The statements are prepared by the first batch and cached
                 * with the connection (store_cached()). */
                if (st)
                        r = store_batch(st, batch, err, sizeof(err), &commit_us);
                dt = mono_us() - t0;

                for (it = batch; it; it = it->next) {
                        it->result = r;
                        if (r >= 0 && it->kind == INGEST_EVENT && !it->duplicate)
                                woke_worker = true;
                }

                pthread_mutex_lock(&w->lock);
                w->stats->commits++;
                if (r < 0) {
                        w->stats->commit_failures++;
                        snprintf(w->last_error, sizeof(w->last_error), "%s", err);
                } else {
                        w->stats->committed_items += n;
                        w->last_commit_us = mono_us();
                }
                w->stats->wal_frames = ws.written;
                w->stats->wal_restarts = ws.restarts;
                w->stats->wal_restart_us_total = ws.restart_us;
                w->stats->batch_us_total += dt;
                w->stats->commit_us_total += commit_us;
                if (dt > w->stats->commit_us_max)
                        w->stats->commit_us_max = dt;
                if (n > w->stats->batch_max)
                        w->stats->batch_max = n;
                hist_observe(w->stats->commit_hist, knock_duration_bounds, (double)dt / 1e6);
                hist_observe(w->stats->batch_hist, admin_batch_bounds, (double)n);
                w->healthy = r >= 0;
                *w->done_tail = batch;
                w->done_tail = tail;
                w->busy = false;
                pthread_mutex_unlock(&w->lock);
                event_active(w->ev_done, EV_READ, 0);
                /* Tell the worker after the commit, never before (it must find
                 * the rows when it wakes), and after the batch went back to
                 * the loop: the answers do not wait for the datagram. */
                if (woke_worker)
                        daemon_wake_peer(w->name, "worker");
                if (r >= 0)
                        wal_restart(w, st, &ws);
        }
        return NULL;
}

/* fdatasync of the database file under db. A PASSIVE checkpoint that does
 * not reach the WAL's end copies pages without syncing the file (nothing
 * needs them durable until the WAL starts over), so the writer's catch-up,
 * the checkpoint that does reach the end, would otherwise flush every page
 * the passes copied since the last restart: 16 MB behind one fsync, with
 * the writer stopped. Syncing after each pass leaves it the tail. */
static int sync_database(sqlite3 *db)
{
        sqlite3_file *f = NULL;

        if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f ||
            !f->pMethods)
                return SQLITE_ERROR;
        return f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
}

/* The checkpoint thread: PASSIVE after commits (never waits for the writer
 * and never blocks it), TRUNCATE once ingest has been idle for a while so
 * the -wal file shrinks back. Errors are left for the next round: a failed
 * checkpoint only means a longer WAL, never a lost write. */
static void *checkpointer_main(void *userdata)
{
        ingest_writer *w = userdata;
        _cleanup_(store_closep) knock_store *st = NULL;
        uint64_t done_for = 0;
        bool truncated = true, wanted, ran;
        int backfilled = 0, synced = 0;

        pthread_setname_np(pthread_self(), "checkpoint");

        pthread_mutex_lock(&w->lock);
        while (!w->stop) {
                struct timespec ts;
                uint64_t last, now;

                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += CHECKPOINT_INTERVAL_MS * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                if (!w->ckpt_wanted) /* asked while the last pass ran */
                        pthread_cond_timedwait(&w->ckpt_cond, &w->lock, &ts);
                if (w->stop)
                        break;
                last = w->last_commit_us;
                wanted = w->ckpt_wanted;
                w->ckpt_wanted = false;
                pthread_mutex_unlock(&w->lock);

                now = mono_us();
                if (!st && store_open(w->db_path, 0, &st) < 0)
                        st = NULL;
                ran = st && (wanted || last != done_for);
                if (ran) {
                        backfilled = 0;
                        if (sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                                      NULL, &backfilled) != SQLITE_OK)
                                backfilled = 0;
                        /* backfilled counts from the WAL's start: more than
                         * at the last sync means this pass copied pages. */
                        if (backfilled < synced)
                                synced = 0; /* the WAL started over */
                        if (backfilled > synced)
                                synced = sync_database(st->db) == SQLITE_OK ? backfilled : 0;
                        done_for = last;
                        truncated = false;
                } else if (st && !truncated &&
                           now - last > CHECKPOINT_IDLE_TRUNCATE_MS * 1000ULL) {
                        if (store_exec(st, "PRAGMA wal_checkpoint(TRUNCATE)") >= 0)
                                truncated = true;
                }
                pthread_mutex_lock(&w->lock);
                if (ran) {
                        w->ckpt_passes++;
                        w->ckpt_backfilled = backfilled;
                }
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

int writer_start(ingest_writer *w, const char *db_path, const char *name,
                 struct event_base *base, event_callback_fn on_done, void *userdata,
                 ingest_stats *stats)
{
        int r;

        memset(w, 0, sizeof(*w));
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        pthread_cond_init(&w->ckpt_cond, NULL);
        w->queue_tail = &w->queue_head;
        w->done_tail = &w->done_head;
        w->healthy = true;
        w->stats = stats;
        w->db_path = strdup(db_path);
        w->name = strdup(name);
        if (!w->db_path || !w->name)
                return -ENOMEM;
        w->ev_done = event_new(base, -1, 0, on_done, userdata);
        if (!w->ev_done)
                return -ENOMEM;
        r = -pthread_create(&w->thread, NULL, writer_main, w);
        if (r < 0)
                return r;
        w->started = true;
        /* PostgreSQL keeps its own WAL. */
        if (store_location_is_postgresql(db_path))
                return 0;
        r = -pthread_create(&w->ckpt_thread, NULL, checkpointer_main, w);
        if (r < 0)
                return r;
        w->ckpt_started = true;
        return 0;
}

void writer_submit(ingest_writer *w, ingest_item *it)
{
        it->next = NULL;
        pthread_mutex_lock(&w->lock);
        if (!w->queue_head)
                w->queued_since_us = mono_us();
        if (it->kind == INGEST_EVENT || it->kind == INGEST_HANDSHAKE)
                w->urgent++;
        *w->queue_tail = it;
        w->queue_tail = &it->next;
        w->queued++;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

ingest_item *writer_take_done(ingest_writer *w)
{
        ingest_item *l;

        pthread_mutex_lock(&w->lock);
        l = w->done_head;
        w->done_head = NULL;
        w->done_tail = &w->done_head;
        pthread_mutex_unlock(&w->lock);
        return l;
}

size_t writer_pending(ingest_writer *w)
{
        size_t n;

        pthread_mutex_lock(&w->lock);
        n = w->queued + (w->busy ? 1 : 0);
        pthread_mutex_unlock(&w->lock);
        return n;
}

void writer_stop(ingest_writer *w)
{
        if (w->started) {
                pthread_mutex_lock(&w->lock);
                w->stop = true;
                pthread_cond_signal(&w->cond);
                pthread_cond_signal(&w->ckpt_cond);
                pthread_mutex_unlock(&w->lock);
                pthread_join(w->thread, NULL);
                w->started = false;
        }
        if (w->ckpt_started) {
                pthread_join(w->ckpt_thread, NULL);
                w->ckpt_started = false;
        }
        if (w->ev_done)
                event_free(w->ev_done);
        w->ev_done = NULL;
        free(w->db_path);
        free(w->name);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        pthread_cond_destroy(&w->ckpt_cond);
}
