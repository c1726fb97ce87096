/* SPDX-License-Identifier: MIT */
/*
 * pump — knock-deliver's attempts and the one transaction that records
 * them and claims the next hooks.
 *
 * Everything that touches the database happens in on_pump(), a deferred
 * callback that coalesces every reason to look at the queue (a wake-up
 * datagram from the worker or from `knockctl redeliver-hook`, an attempt
 * ending, a retry coming due):
 *
 *   1. flush and claim, in ONE write transaction: the attempts that ended
 *      since the last pump are recorded (attempt rows and new hook states:
 *      delivered, pending with the next attempt time, or failed), and the
 *      free slots ([hook] concurrency − attempts on the wire) are refilled
 *      with due hooks. One commit (one fsync) per batch is what bounds the
 *      rate to a fast receiver. Only after the commit is a dead-letter
 *      logged and are the new requests started; a hook is 'delivered' only
 *      together with the attempt row holding its 2xx;
 *   2. sleep: a timer is armed for the next due time (a retry, a foreign
 *      lease running out), at most SAFETY_RESCAN_MS away. No polling: a
 *      datagram (this host's worker) or a notification (any host's, on
 *      PostgreSQL: listener.h) wakes it.
 *
 * Its now is store_now_ms(): on PostgreSQL the server's clock, which every
 * host's claims and leases are compared with (store.h).
 *
 * Promises:
 *  - a claim holds a hook for [hook] timeout + LEASE_MARGIN_MS: an attempt
 *    cannot outlive [hook] timeout (send.c has a deadline), so the lease
 *    needs no renewal, and the margin covers a slow commit;
 *  - the next state of a hook is decided by schedule.c's pure functions
 *    (classification, backoff with jitter, Retry-After, the slow-down after
 *    a 429 or a timeout);
 *  - a transaction that failed changes nothing: the ended attempts stay on
 *    the done list and are recorded FLUSH_RETRY_MS later;
 *  - an attempt cut short by shutdown is released, not counted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "catalog-ids.h"
#include "deliver.h"

#define LEASE_MARGIN_MS 30000
#define SAFETY_RESCAN_MS 30000
#define FLUSH_RETRY_MS 200

/* ---- attempts ------------------------------------------------------------------------ */

static hook_send *send_free(hook_send *s)
{
        if (!s)
                return NULL;
        send_cleanup(s);
        hook_claim_clear(&s->claim);
        free(s);
        return NULL;
}

static uint64_t random_u64(void)
{
        static uint64_t fallback = 0x9e3779b97f4a7c15ULL;
        uint64_t v;

        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
                return v;
        /* Jitter needs spread, not secrecy. */
        fallback ^= mono_us();
        fallback ^= fallback << 13;
        fallback ^= fallback >> 7;
        fallback ^= fallback << 17;
        return fallback;
}

void send_complete(hook_send *s)
{
        deliverer *dl = s->dl;

        s->duration_ms = (int64_t)((mono_us() - s->started_us) / 1000);
        LIST_REMOVE(dl->running, s);
        dl->n_running--;
        LIST_PREPEND(dl->done, s);
        dl->n_done++;
        event_active(dl->ev_pump, EV_TIMEOUT, 0);
}

static void log_dead_letter(deliverer *dl, const char *hook_id, const char *event_id,
                            int64_t attempt, int status, int64_t duration_ms, const char *error)
{
        char a[24], st[16], dur[24];

        snprintf(a, sizeof(a), "%lld", (long long)attempt);
        snprintf(st, sizeof(st), "%d", status);
        snprintf(dur, sizeof(dur), "%lld", (long long)duration_ms);
        dl->n_failed++;
        log_struct(LOG_ERR, MSGID_HOOK_FAILED,
                   LOG_FIELDS(LF("KNOCK_HOOK_ID", hook_id), LF("KNOCK_EVENT_ID", event_id),
                              LF("KNOCK_STATUS", "failed"), LF("KNOCK_ATTEMPT", a),
                              LF("KNOCK_HTTP_STATUS", status > 0 ? st : NULL),
                              LF("KNOCK_DURATION_MS", dur), LF("KNOCK_ERROR", error),
                              /* Only scheme://host:port: a hook URL's path, query
                               * or userinfo may carry a credential. */
                              LF("KNOCK_HOOK_ORIGIN", dl->target.origin)),
                   "Completion hook %s for event %s failed after %lld attempts, not retried: %s",
                   hook_id, event_id ?: "-", (long long)attempt, error ?: "unknown error");
}

static void start_send(deliverer *dl, hook_claim *c)
{
        hook_send *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s) {
                /* The lease runs out and the hook is taken again. */
                hook_claim_clear(c);
                log_error_errno(-ENOMEM, "Out of memory starting a hook attempt");
                return;
        }
        s->dl = dl;
        s->claim = *c;
        *c = (hook_claim){};
        s->retry_after_ms = -1;
        LIST_PREPEND(dl->running, s);
        dl->n_running++;
        dl->n_claimed++;
        log_full_errno(LOG_DEBUG, 0, NULL,
                       LOG_FIELDS(LF("KNOCK_HOOK_ID", s->claim.id),
                                  LF("KNOCK_EVENT_ID", s->claim.event_id)),
                       "Sending hook %s, attempt %lld", s->claim.id, (long long)s->claim.attempt);

        r = send_start(s);
        if (r < 0) {
                /* Counted as an attempt without a response: retried on the schedule. */
                if (!s->started_us) {
                        s->started_at = now_ms();
                        s->started_us = mono_us();
                }
                free(s->error);
                if (asprintf(&s->error, "cannot start the request: %s", strerror(-r)) < 0)
                        s->error = NULL;
                send_complete(s);
        }
}

/* The hook's next state after this attempt, and when it is tried again. */
static void decide(deliverer *dl, hook_send *s, int64_t now, hook_result *x)
{
        const knock_config *cfg = dl->d->cfg;
        hook_verdict v = hook_classify(s->status);

        if (v == HOOK_DELIVERED)
                x->new_state = "delivered";
        else if (v == HOOK_PERMANENT || s->claim.attempt >= s->claim.max_attempts)
                x->new_state = "failed";
        else {
                bool slow = s->status == 429 || s->timed_out;
                uint64_t wait = hook_next_wait_ms(cfg->hook_schedule_ms, cfg->n_hook_schedule,
                                                  (uint64_t)s->claim.attempt + 1, random_u64(),
                                                  slow, dl->min_slow_ms, s->retry_after_ms);

                x->new_state = "pending";
                x->next_attempt_at = now + (int64_t)MIN(wait, (uint64_t)INT64_MAX / 2);
        }
}

static void log_result(deliverer *dl, hook_send *s, const hook_result *x)
{
        char a[24], st[16], dur[24], next[32];

        snprintf(a, sizeof(a), "%lld", (long long)x->attempt);
        snprintf(st, sizeof(st), "%d", x->status);
        snprintf(dur, sizeof(dur), "%lld", (long long)x->duration_ms);
#define FIELDS                                                                                     \
        LOG_FIELDS(LF("KNOCK_HOOK_ID", x->id), LF("KNOCK_EVENT_ID", s->claim.event_id),             \
                   LF("KNOCK_STATUS", x->new_state), LF("KNOCK_ATTEMPT", a),                       \
                   LF("KNOCK_HTTP_STATUS", x->status > 0 ? st : NULL),                             \
                   LF("KNOCK_DURATION_MS", dur), LF("KNOCK_ERROR", x->error))

        if (!x->applied) {
                dl->n_lost++;
                log_full_errno(LOG_WARNING, 0, NULL, FIELDS,
                               "Hook %s: lease was lost while attempt %lld ran; attempt "
                               "recorded, state left to the new holder",
                               x->id, (long long)x->attempt);
        } else if (streq(x->new_state, "delivered")) {
                dl->n_delivered++;
                log_full_errno(LOG_DEBUG, 0, NULL, FIELDS,
                               "Hook %s delivered (attempt %lld, HTTP %d, %lld ms)", x->id,
                               (long long)x->attempt, x->status, (long long)x->duration_ms);
        } else if (streq(x->new_state, "pending")) {
                uint64_t suppressed = 0;

                dl->n_retried++;
                if (log_ratelimit_ok(&dl->retry_rl, &suppressed)) {
                        if (suppressed > 0)
                                log_warning("%llu hook retry messages suppressed",
                                            (unsigned long long)suppressed);
                        log_full_errno(LOG_WARNING, 0, NULL, FIELDS,
                                       "Hook %s attempt %lld failed: %s; next attempt at %s",
                                       x->id, (long long)x->attempt, x->error ?: "unknown error",
                                       format_rfc3339(x->next_attempt_at, next, sizeof(next)));
                }
        } else
                log_dead_letter(dl, x->id, s->claim.event_id, x->attempt, x->status,
                                x->duration_ms, x->error);
#undef FIELDS
}

/* Starts what was claimed; logs lost and dead-lettered claims. */
static void start_claimed(deliverer *dl, hook_claim *claims, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                hook_claim *c = &claims[i];

                if (c->lost_holder)
                        log_full_errno(LOG_WARNING, 0, NULL,
                                       LOG_FIELDS(LF("KNOCK_HOOK_ID", c->id),
                                                  LF("KNOCK_EVENT_ID", c->event_id)),
                                       "Hook %s: %s died during an attempt (lease expired); "
                                       "attempt recorded as lost",
                                       c->id, c->lost_holder);
                if (c->dead) {
                        log_dead_letter(dl, c->id, c->event_id, c->attempt - 1, 0, 0,
                                        "the deliverer died during the last attempt");
                        hook_claim_clear(c);
                        continue;
                }
                start_send(dl, c);
        }
}

/* Gives back the claims of attempts cut short by shutdown. */
static int release_interrupted(deliverer *dl)
{
        _cleanup_free_ const char **rel = NULL;
        size_t n = 0;
        int r;

        rel = calloc(dl->n_done + 1, sizeof(*rel));
        if (!rel)
                return -ENOMEM;
        for (hook_send *s = dl->done; s; s = s->next)
                if (s->interrupted)
                        rel[n++] = s->claim.id;
        if (n == 0)
                return 0;
        r = hooks_release(dl->d->store, dl->identity, rel, n, store_now_ms(dl->d->store));
        if (r < 0)
                return log_struct_errno(LOG_ERR, r, MSGID_STORAGE_ERROR,
                                        LOG_FIELDS(LF("KNOCK_ERROR", store_errmsg(dl->d->store))),
                                        "Cannot release %zu hook claims: %m", n);
        dl->n_released += n;
        log_notice("Released %zu hooks whose attempts were cut short by shutdown; they are "
                   "sent again without counting an attempt",
                   n);
        for (hook_send *s = dl->done, *next; s; s = next) {
                next = s->next;
                if (s->interrupted) {
                        LIST_REMOVE(dl->done, s);
                        dl->n_done--;
                        send_free(s);
                }
        }
        return 0;
}

/*
 * One write transaction per pump: the attempts that ended are recorded and
 * the free slots refilled together, so a busy deliverer pays one commit
 * (one fsync) per batch of completions, not two per hook. Returns the
 * number of hooks claimed, or a negative errno when the transaction failed
 * (nothing changed: the ended attempts stay in the done list).
 */
static int flush_and_claim(deliverer *dl, size_t want)
{
        const knock_config *cfg = dl->d->cfg;
        _cleanup_free_ hook_result *res = NULL;
        _cleanup_free_ hook_send **fin = NULL;
        hook_claim *claims = NULL;
        size_t n = 0, n_claims = 0;
        int64_t now = store_now_ms(dl->d->store);
        int r;

        if (dl->n_done > 0) {
                res = calloc(dl->n_done, sizeof(*res));
                fin = calloc(dl->n_done, sizeof(*fin));
                if (!res || !fin)
                        return -ENOMEM;
        }
        for (hook_send *s = dl->done; s; s = s->next) {
                if (s->interrupted)
                        continue;
                fin[n] = s;
                res[n] = (hook_result){
                        .id = s->claim.id,
                        .attempt = s->claim.attempt,
                        .at = s->started_at,
                        .duration_ms = s->duration_ms,
                        .status = s->status,
                        .error = s->error,
                        .response = s->response,
                        .response_len = s->response_len,
                };
                decide(dl, s, now, &res[n]);
                n++;
        }
        if (n == 0 && want == 0)
                return 0;

        /* BEGIN IMMEDIATE: a deliverer overlapping a dying one serialises here. */
        r = store_begin(dl->d->store);
        if (r >= 0)
                r = hooks_finish(dl->d->store, dl->identity, now, res, n);
        if (r >= 0 && want > 0)
                r = hooks_claim(dl->d->store, dl->identity, now,
                                now + (int64_t)cfg->hook_timeout_ms + LEASE_MARGIN_MS, want,
                                (int64_t)cfg->hook_max_attempts, &claims, &n_claims);
        /* The attempt rows, the new states and the new claims commit
         * together: after this a 'delivered' hook is never claimed again. */
        if (r >= 0)
                r = store_commit(dl->d->store);
        if (r < 0) {
                store_rollback(dl->d->store);
                for (size_t i = 0; i < n_claims; i++)
                        hook_claim_clear(&claims[i]);
                free(claims);
                return log_struct_errno(LOG_ERR, r, MSGID_STORAGE_ERROR,
                                        LOG_FIELDS(LF("KNOCK_ERROR", store_errmsg(dl->d->store))),
                                        "Cannot record %zu hook attempts and claim hooks: %m", n);
        }

        /* Committed: now the journal may say so. */
        for (size_t i = 0; i < n; i++) {
                log_result(dl, fin[i], &res[i]);
                LIST_REMOVE(dl->done, fin[i]);
                dl->n_done--;
                send_free(fin[i]);
        }
        start_claimed(dl, claims, n_claims);
        free(claims);
        return (int)MIN(n_claims, (size_t)INT32_MAX);
}

/* ---- the pump ------------------------------------------------------------------------ */

static void on_pump(evutil_socket_t fd, short what, void *userdata)
{
        deliverer *dl = userdata;
        const knock_config *cfg = dl->d->cfg;
        size_t free_slots = 0;
        int64_t now, due;
        int r;

        if (!dl->stopping && dl->target.url && cfg->hook_concurrency > dl->n_running)
                free_slots = (size_t)(cfg->hook_concurrency - dl->n_running);
        if (!dl->stopping && !dl->target.url && !dl->warned_no_url) {
                log_notice("No [hook] url configured: pending hooks wait until one is");
                dl->warned_no_url = true;
        }

        r = flush_and_claim(dl, free_slots);
        if (r >= 0 && dl->stopping)
                r = release_interrupted(dl);
        if (r < 0) {
                daemon_arm_timer(dl->ev_due, FLUSH_RETRY_MS);
                return;
        }
        if (dl->stopping) {
                if (dl->n_running == 0 && dl->n_done == 0)
                        daemon_exit_loop(dl->d);
                return;
        }

        /* Full: an ending attempt pumps again. Otherwise sleep until the next
         * known due time, or the safety rescan. */
        now = store_now_ms(dl->d->store);
        if ((size_t)r < free_slots) {
                if (hooks_next_due(dl->d->store, dl->identity, now, &due) < 0)
                        due = now + FLUSH_RETRY_MS;
                due = MIN(due, now + SAFETY_RESCAN_MS);
        } else
                due = now + SAFETY_RESCAN_MS;
        daemon_arm_timer(dl->ev_due, due - now);
}

static void wake_pump(void *userdata)
{
        deliverer *dl = userdata;

        event_active(dl->ev_pump, EV_TIMEOUT, 0);
}

static void on_wake(evutil_socket_t fd, short what, void *userdata)
{
        daemon_wake_drain(fd);
        wake_pump(userdata);
}

/* ---- stop ---------------------------------------------------------------------------- */

size_t pump_cancel_all(deliverer *dl)
{
        hook_send *s = dl->running;
        size_t n = 0;

        while (s) {
                hook_send *next = s->next;

                send_cancel(s); /* moves it to the done list */
                s = next;
                n++;
        }
        return n;
}

/* After the loop: a second SIGTERM may have broken it with attempts on the
 * wire. Cancel them and give their claims back. */
void pump_finish_remaining(deliverer *dl)
{
        pump_cancel_all(dl);
        dl->stopping = true;
        if (flush_and_claim(dl, 0) >= 0)
                (void)release_interrupted(dl);
}

/* ---- the pump's events --------------------------------------------------------------- */

int pump_events_new(deliverer *dl)
{
        struct event_base *base = dl->d->base;
        int r;

        dl->ev_pump = event_new(base, -1, 0, on_pump, dl);
        if (!dl->ev_pump)
                return log_error_errno(-ENOMEM, "Cannot create events");
        dl->ev_due = evtimer_new(base, daemon_activate, dl->ev_pump);
        if (!dl->ev_due)
                return log_error_errno(-ENOMEM, "Cannot create events");

        /* The worker and knockctl send a datagram here after committing hook
         * rows; without it we still rescan on the due timer. */
        r = daemon_wake_listen(dl->d, "hooks", on_wake, dl, &dl->wake_fd, &dl->ev_wake);
        if (r < 0)
                return r;
        /* Other hosts' workers: a notification (PostgreSQL). The loop waits
         * for the database on every pump anyway: it connects itself. */
        return listener_init(&dl->listener, dl->d, STORE_TOPIC_HOOKS, "hooks",
                             listener_connect_here, wake_pump, dl);
}

void pump_events_free(deliverer *dl)
{
        struct event **evs[] = {&dl->ev_wake, &dl->ev_pump, &dl->ev_due};

        for (size_t i = 0; i < ELEMENTSOF(evs); i++)
                if (*evs[i]) {
                        event_free(*evs[i]);
                        *evs[i] = NULL;
                }
        listener_stop(&dl->listener);
        daemon_wake_close(dl->d->name, "deliver", dl->wake_fd);
        dl->wake_fd = -1;
}

void pump_free_sends(deliverer *dl)
{
        while (dl->done) {
                hook_send *s = dl->done;

                LIST_REMOVE(dl->done, s);
                send_free(s);
        }
        while (dl->running) {
                hook_send *s = dl->running;

                LIST_REMOVE(dl->running, s);
                send_free(s);
        }
}
