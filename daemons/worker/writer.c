/* SPDX-License-Identifier: MIT */
/*
 * writer — the worker's storage thread: every transaction the worker makes
 * while it runs happens here, on the thread's own SQLite connection, so the
 * event loop never waits for a COMMIT (synchronous=FULL) or a busy lock.
 *
 * One cycle takes everything queued so far and runs, in this order:
 *
 *   1. finish and claim (events_finish_and_claim, ONE transaction): the
 *      results handed over since the last cycle, then claims for the slots
 *      that are free (capacity − busy_slots). The claims are committed —
 *      attempt counted, attempts row "running" or "queued" — before the loop
 *      sees them, so no handler starts on an uncommitted claim. Started
 *      notices of queued attempts ride along in the same transaction (none
 *      for a job whose result it records: the result has the start time). After
 *      a commit that queued hooks, the deliverer is woken from here, never
 *      before;
 *   2. release (events_release): claims given back uncounted (shutdown);
 *   3. renew (events_renew): the lease ids the loop sent last;
 *   4. heartbeat: the daemons row, and the queue counts for STATUS=;
 *   5. on a PostgreSQL endpoint, when the loop asks (writer_listen): a
 *      connection listening for new events (listener.h), made here because
 *      connecting blocks, and handed to the loop with the reply.
 *
 * Times: claims, renewals and releases take their now from store_now_ms()
 * (the server's clock on PostgreSQL, store.h); the due time handed to the
 * loop is turned back into this host's clock, which its timers and the
 * rates' buckets (flow.h) run on.
 *
 * Then the cycle is handed back (a writer_reply on a list, an event made
 * active on the loop's base) and the next one starts with whatever arrived
 * meanwhile: while one COMMIT is in flight, the next batch of results grows
 * on the loop. Any failure rolls its transaction back and is reported with
 * its jobs, which the loop hands over again later; nothing is half-written.
 *
 * Slots: busy_slots counts claims handed to the loop whose jobs have not
 * come back as results or releases. It grows here, under the lock, in the
 * same critical section that publishes the claims, and shrinks when the
 * loop submits a finished job. The claims held never exceed capacity, even
 * while a cycle is in flight: the concurrency plus claims ahead of it
 * (claim_capacity), so the next batch is committed while this one runs and
 * a slot that frees up starts its next handler at once instead of after a
 * COMMIT; busy_bytes bounds the bodies those claims keep in memory. The loop starts
 * claims in order and never runs more than run_slots handlers, so the
 * first run_slots − busy_slots claims of a cycle are sure to start as soon
 * as the loop sees them: their attempts are written "running"; the rest
 * "queued", turned "running" by the started notice the loop sends when
 * their handler starts (applied in the next cycle, with its start time).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flow.h"
#include "pause.h"
#include "log.h"
#include "worker.h"

#define WRITER_STUCK_US (30 * 1000000ULL)
#define WRITER_OOM_RETRY_MS 100
#define CLAIM_AHEAD_MAX 512
/* Bodies held in memory by claims, beyond which nothing more is claimed ahead
 * (KNOCK_CLAIM_AHEAD_BYTES overrides). */
#define CLAIM_AHEAD_BYTES_DEFAULT (64 * 1024 * 1024)

writer_reply *writer_reply_free(writer_reply *r)
{
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_claims; i++)
                knock_claim_clear(&r->claims[i]);
        free(r->claims);
        strv_free(r->breakers_opened, r->n_opened);
        strv_free(r->breakers_closed, r->n_closed);
        store_close(r->listen);
        free(r);
        return NULL;
}

static bool has_work(worker_writer *wr)
{
        return wr->fin_head || wr->rel_head || wr->renew_ids || wr->hb || wr->listen ||
               (wr->scan && wr->capacity > wr->busy_slots);
}

/* Claims the writer may hold for run_slots handlers: those running, and ahead of
 * them four times what the last cycle recorded (what the loop may finish while the
 * next cycles commit), at least run_slots, at most CLAIM_AHEAD_MAX. Slow handlers
 * keep one batch ahead; fast ones as many as a COMMIT's time needs. */
static size_t claim_capacity(size_t run_slots, size_t last_results)
{
        if (run_slots == 0)
                return 0;
        return run_slots + MIN(MAX(run_slots, 4 * last_results), CLAIM_AHEAD_MAX);
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

        nanosleep(&ts, NULL);
}

static size_t list_len(job *l)
{
        size_t n = 0;

        for (; l; l = l->wnext)
                n++;
        return n;
}

static const knock_route *route_of(const knock_config *cfg, const char *event_type)
{
        for (size_t i = 0; event_type && i < cfg->n_routes; i++)
                if (streq(cfg->routes[i].event_type, event_type))
                        return &cfg->routes[i];
        return NULL;
}

static void note_type(char ***v, size_t *n, const char *type)
{
        char **nv = reallocarray(*v, *n + 1, sizeof(**v));

        if (nv && (nv[*n] = strdup(type)))
                (*n)++;
        if (nv)
                *v = nv;
}

/*
 * Circuit breakers (pause.h), after the results committed: a route with
 * breaker = N opens (a pause of kind breaker) at its N-th failed attempt in
 * a row; its probe's result closes it or opens it again. Each is its own
 * small transaction, made only when a breaker moves or a probe ends.
 */
static void breakers(worker_writer *wr, knock_store *store, const knock_config *cfg,
        writer_reply *rep, int64_t now)
{
        for (job *j = rep->fin; j; j = j->wnext) {
                const knock_route *rt = route_of(cfg, j->claim.event_type);
                bool failed = j->outcome == EVENT_OUTCOME_TEMPFAIL ||
                              j->outcome == EVENT_OUTCOME_TIMEOUT ||
                              j->outcome == EVENT_OUTCOME_PERMANENT;
                int64_t cooldown;
                bool open, opened = false;
                int changed = 0;

                if (!rt || rt->breaker == 0 || !j->new_status ||
                        (!failed && j->outcome != EVENT_OUTCOME_SUCCESS))
                        continue;
                cooldown = (int64_t)(rt->breaker_cooldown_ms ?: 30000);
                if (j->claim.probe) {
                        if (pause_breaker_result(store, rt->event_type, !failed, now, cooldown,
                                    &changed) < 0)
                                continue;
                        opened = changed < 0;
                } else {
                        pthread_mutex_lock(&wr->lock);
                        open = flow_breaker_count(&wr->flow, rt->event_type, failed, rt->breaker);
                        pthread_mutex_unlock(&wr->lock);
                        if (open && pause_breaker_open(store, rt->event_type, now, cooldown,
                                            rt->breaker, &opened) < 0)
                                continue;
                }
                if (opened)
                        note_type(&rep->breakers_opened, &rep->n_opened, rt->event_type);
                else if (changed > 0) {
                        /* Closed: the count starts over. */
                        pthread_mutex_lock(&wr->lock);
                        flow_breaker_count(&wr->flow, rt->event_type, false, rt->breaker);
                        pthread_mutex_unlock(&wr->lock);
                        note_type(&rep->breakers_closed, &rep->n_closed, rt->event_type);
                }
        }
        pthread_mutex_lock(&wr->lock);
        wr->breakers_opened += rep->n_opened;
        wr->breakers_closed += rep->n_closed;
        pthread_mutex_unlock(&wr->lock);
}

/* Step 1: results and refills, one transaction. started: the jobs whose queued
 * attempt started since the last cycle; a job whose result is in this cycle needs no
 * notice (its result records the start), the others get one. */
static void finish_and_claim(worker_writer *wr, knock_store *store, const knock_config *cfg,
        writer_reply *rep, job *const *started, size_t n_started, size_t free_slots,
        size_t claim_max, size_t n_now, int64_t ahead_bytes, events_flow *flow)
{
        _cleanup_free_ knock_attempt_result *res = NULL;
        _cleanup_free_ knock_started *notices = NULL;
        size_t n = list_len(rep->fin), i = 0, hooks = 0, n_notices = 0;
        /* skew: the claims' clock (the server's, on PostgreSQL) minus this host's. */
        int64_t now = store_now_ms(store), skew = now - now_ms();
        int r;

        if (n > 0) {
                res = calloc(n, sizeof(*res));
                if (!res) {
                        rep->r = -ENOMEM;
                        return;
                }
        }
        if (n_started > 0) {
                notices = calloc(n_started, sizeof(*notices));
                if (!notices) {
                        rep->r = -ENOMEM;
                        return;
                }
        }
        wr->cycle_mark++;
        for (job *j = rep->fin; j; j = j->wnext) {
                j->writer_mark = wr->cycle_mark;
                res[i++] = (knock_attempt_result){
                        .event_id = j->claim.id,
                        .attempt_id = j->claim.attempt_id,
                        .event_rowid = j->claim.event_rowid,
                        .attempt_rowid = j->claim.attempt_rowid,
                        .attempt = j->claim.attempt,
                        .outcome = j->outcome,
                        .exit_code = j->exit_code,
                        .signal = j->signal,
                        .http_status = j->http_status,
                        .error = j->error,
                        .output = j->out,
                        .output_len = j->out_len,
                        .started_at = j->started_at,
                        .ended_at = j->ended_at,
                };
        }
        /* A started job is alive until its result's cycle, which is this one or a later one;
         * writer_mark is only ever touched here. */
        for (i = 0; i < n_started; i++) {
                if (started[i]->writer_mark == wr->cycle_mark)
                        continue;
                snprintf(notices[n_notices].attempt_id, sizeof(notices[n_notices].attempt_id),
                        "%s", started[i]->claim.attempt_id);
                notices[n_notices].attempt_rowid = started[i]->claim.attempt_rowid;
                notices[n_notices++].at = started[i]->started_at;
        }

        rep->asked = free_slots;
        r = events_finish_and_claim(store, cfg, wr->identity, now, notices, n_notices, res, n,
                &hooks, wr->lease_ms, claim_max, n_now, ahead_bytes, flow, &rep->claims,
                &rep->n_claims, &rep->stats);
        rep->r = r;
        if (r < 0) {
                snprintf(rep->error, sizeof(rep->error), "%s", store_errmsg(store));
                rep->asked = 0;
                return;
        }
        /* Committed: the deliverer may look at the new hooks now. */
        if (hooks + rep->stats.hooks > 0)
                daemon_wake_peer(wr->name, "deliver");
        i = 0;
        for (job *j = rep->fin; j; j = j->wnext, i++) {
                j->new_status = res[i].new_status;
                j->next_attempt_at = res[i].next_attempt_at;
        }
        breakers(wr, store, cfg, rep, now);
        /* The queue ran dry: tell the loop when to look again. A failed
         * query only means the loop's safety rescan decides. */
        rep->due = INT64_MAX;
        if (claim_max > 0 && rep->n_claims < free_slots &&
                events_next_due(store, wr->identity, now, flow, &rep->due) < 0)
                rep->due = now + 200;
        if (rep->due != INT64_MAX)
                rep->due -= skew;
        /* Held back by a rate: look again when its bucket has a token. */
        if (rep->n_claims < free_slots) {
                pthread_mutex_lock(&wr->lock);
                rep->due = MIN(rep->due, flow_next_token(&wr->flow, cfg, flow, now - skew));
                pthread_mutex_unlock(&wr->lock);
        }
}

static void release(worker_writer *wr, knock_store *store, writer_reply *rep)
{
        _cleanup_free_ const char **ids = NULL, **att = NULL;
        size_t n = list_len(rep->rel), i = 0;

        ids = calloc(n, sizeof(*ids));
        att = calloc(n, sizeof(*att));
        if (!ids || !att) {
                rep->r_rel = -ENOMEM;
                return;
        }
        for (job *j = rep->rel; j; j = j->wnext, i++) {
                ids[i] = j->claim.id;
                att[i] = j->claim.attempt_id;
        }
        rep->r_rel = events_release(store, wr->identity, ids, att, n, store_now_ms(store));
        if (rep->r_rel < 0 && !rep->error[0])
                snprintf(rep->error, sizeof(rep->error), "%s", store_errmsg(store));
}

/* The pauses in force, for STATUS=: read with the heartbeat, like the queue counts. */
static void read_pauses(worker_writer *wr, knock_store *store)
{
        char buf[sizeof(wr->paused)];
        knock_pause *v = NULL;
        size_t n = 0;

        if (pause_list(store, &v, &n) < 0)
                return;
        pause_summary(v, n, buf, sizeof(buf));
        pause_list_free(v, n);
        pthread_mutex_lock(&wr->lock);
        memcpy(wr->paused, buf, sizeof(buf));
        pthread_mutex_unlock(&wr->lock);
}

static void *writer_main(void *userdata)
{
        worker_writer *wr = userdata;
        _cleanup_(store_closep) knock_store *store = NULL;

        for (;;) {
                const knock_config *cfg;
                writer_reply *rep;
                char **renew;
                _cleanup_free_ job **started = NULL;
                size_t n_renew, free_slots = 0, n_now = 0, n_fin, n_started, claimed_bytes = 0;
                size_t claim_max = 0;
                events_flow flow = {};
                int64_t ahead_bytes = 0;
                char *hb_counters, *hb_status;
                bool hb, listen, ok = true;
                uint64_t t0, dt;
                int r = 0;

                rep = calloc(1, sizeof(*rep));
                if (!rep) {
                        sleep_ms(WRITER_OOM_RETRY_MS);
                        continue;
                }

                pthread_mutex_lock(&wr->lock);
                while (!has_work(wr) && !wr->stop)
                        pthread_cond_wait(&wr->cond, &wr->lock);
                if (!has_work(wr)) {
                        pthread_mutex_unlock(&wr->lock);
                        free(rep);
                        break;
                }
                /* Everything queued so far joins this cycle. */
                rep->fin = wr->fin_head;
                rep->rel = wr->rel_head;
                wr->fin_head = wr->rel_head = NULL;
                wr->fin_tail = &wr->fin_head;
                wr->rel_tail = &wr->rel_head;
                renew = wr->renew_ids;
                n_renew = wr->n_renew;
                wr->renew_ids = NULL;
                wr->n_renew = 0;
                hb = wr->hb;
                listen = wr->listen;
                wr->listen = false;
                hb_counters = wr->hb_counters;
                hb_status = wr->hb_status;
                wr->hb = false;
                wr->hb_counters = wr->hb_status = NULL;
                started = wr->started_v;
                n_started = wr->n_started;
                wr->started_v = NULL;
                wr->n_started = wr->cap_started = 0;
                /* Results free their slots: refill them. Otherwise claim only
                 * when asked to look (a wake-up, a due time, start, reload). */
                if ((rep->fin || wr->scan) && wr->capacity > wr->busy_slots) {
                        free_slots = wr->capacity - wr->busy_slots;
                        if (wr->run_slots > wr->busy_slots)
                                n_now = MIN(free_slots, wr->run_slots - wr->busy_slots);
                        /* Held bodies over the budget: claim only what starts at once. */
                        ahead_bytes = (int64_t)wr->ahead_bytes_max - (int64_t)wr->busy_bytes;
                        if (ahead_bytes <= 0)
                                free_slots = n_now;
                        /* Rates and route concurrency (flow.h): a worker rate claims
                         * nothing ahead, and no more than its bucket holds. */
                        claim_max = flow_plan(&wr->flow, wr->cfg, now_ms(), &flow);
                        if (claim_max != SIZE_MAX)
                                claim_max = MIN(claim_max, n_now);
                        claim_max = MIN(claim_max, free_slots);
                        n_now = MIN(n_now, claim_max);
                }
                wr->scan = false;
                cfg = wr->cfg;
                wr->busy = true;
                wr->busy_since_us = mono_us();
                pthread_mutex_unlock(&wr->lock);

                t0 = mono_us();
                rep->r_renew = rep->r_heartbeat = rep->r_listen = 1;
                if (!store) {
                        r = store_open(wr->db_path, 0, &store);
                        if (r < 0) {
                                store = NULL;
                                snprintf(rep->error, sizeof(rep->error),
                                        "cannot open the database: %s", strerror(-r));
                        }
                }
                n_fin = list_len(rep->fin);
                if (!store) {
                        rep->r = rep->fin || free_slots > 0 || n_started ? r : 0;
                        rep->r_rel = rep->rel ? r : 0;
                        rep->r_renew = renew ? r : 1;
                        rep->r_heartbeat = hb ? r : 1;
                } else {
                        if (rep->fin || free_slots > 0 || n_started)
                                finish_and_claim(wr, store, cfg, rep, started, n_started,
                                        free_slots, claim_max, n_now, ahead_bytes, &flow);
                        if (rep->rel)
                                release(wr, store, rep);
                        if (renew) {
                                rep->r_renew = events_renew(store, wr->identity,
                                        (const char *const *)renew, n_renew,
                                        store_now_ms(store) + wr->lease_ms);
                                if (rep->r_renew < 0 && !rep->error[0])
                                        snprintf(rep->error, sizeof(rep->error), "%s",
                                                store_errmsg(store));
                        }
                        if (hb) {
                                rep->r_heartbeat = store_daemon_heartbeat(
                                        store, "worker", hb_counters, hb_status);
                                if (rep->r_heartbeat >= 0 &&
                                        events_queue_counts(store, wr->queue_counts) >= 0) {
                                        pthread_mutex_lock(&wr->lock);
                                        wr->counts_valid = true;
                                        pthread_mutex_unlock(&wr->lock);
                                }
                                if (rep->r_heartbeat >= 0)
                                        read_pauses(wr, store);
                        }
                }
                if (listen)
                        rep->r_listen = listener_open(wr->db_path, STORE_TOPIC_EVENTS,
                                &rep->listen);
                dt = mono_us() - t0;
                strv_free(renew, n_renew);
                free(hb_counters);
                free(hb_status);
                ok = rep->r >= 0 && rep->r_rel >= 0 && rep->r_renew >= 0 && rep->r_heartbeat >= 0;

                pthread_mutex_lock(&wr->lock);
                /* Published with the claims: the next cycle counts them. */
                for (size_t i = 0; i < rep->n_claims; i++)
                        claimed_bytes += rep->claims[i].body_len;
                wr->busy_slots += rep->n_claims;
                if (rep->r >= 0)
                        flow_took(&wr->flow, cfg, &flow, rep->n_claims);
                wr->busy_bytes += claimed_bytes;
                wr->capacity = claim_capacity(wr->run_slots, n_fin);
                wr->healthy = ok;
                wr->cycles++;
                wr->commit_failures += !ok;
                wr->cycle_us_total += dt;
                wr->cycle_us_max = MAX(wr->cycle_us_max, dt);
                wr->batch_max = MAX(wr->batch_max, (uint64_t)MAX(n_fin, rep->n_claims));
                *wr->reply_tail = rep;
                wr->reply_tail = &rep->next;
                wr->busy = false;
                pthread_cond_broadcast(&wr->idle);
                pthread_mutex_unlock(&wr->lock);
                event_active(wr->ev_reply, EV_READ, 0);
        }
        return NULL;
}

int writer_start(worker_writer *wr, worker *w, event_callback_fn on_reply)
{
        const char *e;
        uint64_t v;
        int r;

        pthread_mutex_init(&wr->lock, NULL);
        pthread_cond_init(&wr->cond, NULL);
        pthread_cond_init(&wr->idle, NULL);
        wr->fin_tail = &wr->fin_head;
        wr->rel_tail = &wr->rel_head;
        wr->reply_tail = &wr->reply_head;
        wr->healthy = true;
        wr->name = w->d->name;
        wr->identity = w->identity;
        wr->cfg = w->d->cfg;
        wr->ahead_bytes_max = CLAIM_AHEAD_BYTES_DEFAULT;
        e = getenv("KNOCK_CLAIM_AHEAD_BYTES");
        if (e && (parse_size(e, &v) < 0 || v > INT64_MAX / 2))
                log_warning("Ignoring KNOCK_CLAIM_AHEAD_BYTES=%s: not a size", e);
        else if (e)
                wr->ahead_bytes_max = v;
        wr->run_slots = (size_t)w->d->cfg->concurrency;
        wr->capacity = claim_capacity(wr->run_slots, 0);
        wr->db_path = config_store_location(w->d->cfg);
        if (!wr->db_path)
                return -ENOMEM;
        wr->ev_reply = event_new(w->d->base, -1, 0, on_reply, w);
        if (!wr->ev_reply)
                return -ENOMEM;
        r = -pthread_create(&wr->thread, NULL, writer_main, wr);
        if (r < 0)
                return r;
        wr->started = true;
        return 0;
}

void writer_submit(
        worker_writer *wr, job *fin, job *rel, size_t n_slots, size_t n_bytes, bool scan)
{
        pthread_mutex_lock(&wr->lock);
        for (job *j = fin; j; j = j->wnext) {
                *wr->fin_tail = j;
                wr->fin_tail = &j->wnext;
        }
        for (job *j = rel; j; j = j->wnext) {
                *wr->rel_tail = j;
                wr->rel_tail = &j->wnext;
        }
        wr->busy_slots -= MIN(n_slots, wr->busy_slots);
        wr->busy_bytes -= MIN(n_bytes, wr->busy_bytes);
        wr->scan = wr->scan || scan;
        if (has_work(wr))
                pthread_cond_signal(&wr->cond);
        pthread_mutex_unlock(&wr->lock);
}

int writer_started(worker_writer *wr, job *j)
{
        int r = 0;

        pthread_mutex_lock(&wr->lock);
        if (wr->n_started == wr->cap_started) {
                size_t cap = wr->cap_started ? wr->cap_started * 2 : 16;
                job **v = reallocarray(wr->started_v, cap, sizeof(*v));

                if (!v) {
                        r = -ENOMEM;
                        goto finish;
                }
                wr->started_v = v;
                wr->cap_started = cap;
        }
        wr->started_v[wr->n_started++] = j;
finish:
        pthread_mutex_unlock(&wr->lock);
        return r;
}

void writer_listen(worker_writer *wr, bool want)
{
        pthread_mutex_lock(&wr->lock);
        wr->listen = want;
        if (want)
                pthread_cond_signal(&wr->cond);
        pthread_mutex_unlock(&wr->lock);
}

void writer_renew(worker_writer *wr, char **ids, size_t n)
{
        char **old;
        size_t n_old;

        pthread_mutex_lock(&wr->lock);
        /* The newest list supersedes one not yet written. */
        old = wr->renew_ids;
        n_old = wr->n_renew;
        wr->renew_ids = ids;
        wr->n_renew = n;
        pthread_cond_signal(&wr->cond);
        pthread_mutex_unlock(&wr->lock);
        strv_free(old, n_old);
}

int writer_heartbeat(worker_writer *wr, const char *counters, const char *status)
{
        char *c = counters ? strdup(counters) : NULL, *s = status ? strdup(status) : NULL;
        bool healthy;

        if ((counters && !c) || (status && !s)) {
                free(c);
                free(s);
                return -ENOMEM;
        }
        pthread_mutex_lock(&wr->lock);
        free(wr->hb_counters);
        free(wr->hb_status);
        wr->hb_counters = c;
        wr->hb_status = s;
        wr->hb = true;
        healthy = wr->healthy;
        pthread_cond_signal(&wr->cond);
        pthread_mutex_unlock(&wr->lock);
        return healthy ? 0 : -EIO;
}

writer_reply *writer_take_replies(worker_writer *wr)
{
        writer_reply *l;

        pthread_mutex_lock(&wr->lock);
        l = wr->reply_head;
        wr->reply_head = NULL;
        wr->reply_tail = &wr->reply_head;
        pthread_mutex_unlock(&wr->lock);
        return l;
}

void writer_set_config(worker_writer *wr, const knock_config *cfg, size_t run_slots)
{
        pthread_mutex_lock(&wr->lock);
        /* The old config is freed when we return: no cycle may be using it. */
        while (wr->busy)
                pthread_cond_wait(&wr->idle, &wr->lock);
        wr->cfg = cfg;
        wr->run_slots = run_slots;
        wr->capacity = claim_capacity(run_slots, 0);
        wr->scan = true;
        pthread_cond_signal(&wr->cond);
        pthread_mutex_unlock(&wr->lock);
}

void writer_set_capacity(worker_writer *wr, size_t run_slots)
{
        pthread_mutex_lock(&wr->lock);
        wr->run_slots = run_slots;
        wr->capacity = claim_capacity(run_slots, 0);
        pthread_mutex_unlock(&wr->lock);
}

static bool idle_locked(worker_writer *wr)
{
        return !wr->busy && !wr->reply_head && !wr->fin_head && !wr->rel_head &&
               !wr->renew_ids && !wr->hb && !wr->listen &&
               !(wr->scan && wr->capacity > wr->busy_slots);
}

bool writer_idle(worker_writer *wr)
{
        bool idle;

        pthread_mutex_lock(&wr->lock);
        idle = idle_locked(wr);
        pthread_mutex_unlock(&wr->lock);
        return idle;
}

void writer_wait_idle(worker_writer *wr)
{
        pthread_mutex_lock(&wr->lock);
        while (wr->busy || (has_work(wr) && wr->started))
                pthread_cond_wait(&wr->idle, &wr->lock);
        pthread_mutex_unlock(&wr->lock);
}

int writer_health(worker_writer *wr)
{
        bool stuck;

        /* A cycle that has not returned for 30 s means the disk is wedged:
         * the watchdog ping stops and systemd restarts us. */
        pthread_mutex_lock(&wr->lock);
        stuck = wr->busy && mono_us() - wr->busy_since_us > WRITER_STUCK_US;
        pthread_mutex_unlock(&wr->lock);
        return stuck ? -EIO : 0;
}

bool writer_queue_counts(worker_writer *wr, int64_t counts[_EVENT_STATUS_MAX])
{
        bool valid;

        pthread_mutex_lock(&wr->lock);
        valid = wr->counts_valid;
        if (valid)
                memcpy(counts, wr->queue_counts, sizeof(wr->queue_counts));
        pthread_mutex_unlock(&wr->lock);
        return valid;
}

void writer_flow_done(worker_writer *wr, const knock_claim *c)
{
        if (!c->flow_counted)
                return;
        pthread_mutex_lock(&wr->lock);
        flow_done(&wr->flow, c->event_type);
        pthread_mutex_unlock(&wr->lock);
}

void writer_paused(worker_writer *wr, char *buf, size_t len)
{
        pthread_mutex_lock(&wr->lock);
        snprintf(buf, len, "%s", wr->paused);
        pthread_mutex_unlock(&wr->lock);
}

void writer_breakers(worker_writer *wr, uint64_t *opened, uint64_t *closed)
{
        pthread_mutex_lock(&wr->lock);
        *opened = wr->breakers_opened;
        *closed = wr->breakers_closed;
        pthread_mutex_unlock(&wr->lock);
}

void writer_stats(worker_writer *wr, uint64_t *cycles, uint64_t *failures, uint64_t *us_total,
        uint64_t *us_max, uint64_t *batch_max)
{
        pthread_mutex_lock(&wr->lock);
        *cycles = wr->cycles;
        *failures = wr->commit_failures;
        *us_total = wr->cycle_us_total;
        *us_max = wr->cycle_us_max;
        *batch_max = wr->batch_max;
        pthread_mutex_unlock(&wr->lock);
}

void writer_stop(worker_writer *wr)
{
        if (wr->started) {
                pthread_mutex_lock(&wr->lock);
                wr->stop = true;
                pthread_cond_signal(&wr->cond);
                pthread_mutex_unlock(&wr->lock);
                pthread_join(wr->thread, NULL);
                wr->started = false;
        }
        /* The loop took and settled every reply before stopping us. */
        for (writer_reply *r = wr->reply_head, *next; r; r = next) {
                next = r->next;
                writer_reply_free(r);
        }
        wr->reply_head = NULL;
        if (wr->ev_reply)
                event_free(wr->ev_reply);
        wr->ev_reply = NULL;
        strv_free(wr->renew_ids, wr->n_renew);
        wr->renew_ids = NULL;
        free(wr->started_v);
        wr->started_v = NULL;
        wr->n_started = wr->cap_started = 0;
        free(wr->hb_counters);
        free(wr->hb_status);
        free(wr->db_path);
        wr->hb_counters = wr->hb_status = wr->db_path = NULL;
        flow_free(&wr->flow);
        pthread_mutex_destroy(&wr->lock);
        pthread_cond_destroy(&wr->cond);
        pthread_cond_destroy(&wr->idle);
}
