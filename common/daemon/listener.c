/* SPDX-License-Identifier: MIT */
/*
 * listener — see listener.h for the promises.
 *
 * The descriptor watched is the connection's: libpq keeps it non-blocking,
 * and store_notified() only reads what is there. A loss shows as a read
 * that fails (libpq then closes the descriptor): the read event goes at
 * once, before anything could reuse that number, and so does the store.
 */
#include "listener.h"

#include <errno.h>

#include "log.h"
#include "store.h"

#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS 30000

static void retry_later(listener *l)
{
        daemon_arm_timer(l->ev_retry, (int64_t)l->retry_ms);
        l->retry_ms = MIN(l->retry_ms * 2, (uint64_t)RETRY_MAX_MS);
}

static void drop(listener *l)
{
        if (l->ev) {
                event_free(l->ev);
                l->ev = NULL;
        }
        l->store = store_close(l->store);
}

static void on_readable(evutil_socket_t fd, short what, void *userdata)
{
        listener *l = userdata;
        int n = store_notified(l->store);

        if (n > 0) {
                l->wake(l->userdata);
                return;
        }
        if (n == 0)
                return;
        log_warning("Lost the connection listening for new %s from other hosts (%s); they "
                    "are picked up by the periodic rescan until it is back",
                l->what, store_errmsg(l->store));
        l->failing = true;
        drop(l);
        l->retry_ms = RETRY_FIRST_MS;
        retry_later(l);
}

static void on_retry(evutil_socket_t fd, short what, void *userdata)
{
        listener *l = userdata;

        if (!l->active || l->store || l->asked)
                return;
        l->asked = true;
        l->connect(l);
}

int listener_init(listener *l, knock_daemon *d, const char *topic, const char *what,
        void (*connect)(listener *l), void (*wake)(void *userdata), void *userdata)
{
        *l = (listener){
                .d = d,
                .topic = topic,
                .what = what,
                .connect = connect,
                .wake = wake,
                .userdata = userdata,
                .retry_ms = RETRY_FIRST_MS,
        };
        if (d->store->engine != STORE_ENGINE_POSTGRESQL)
                return 0;
        l->ev_retry = evtimer_new(d->base, on_retry, l);
        if (!l->ev_retry)
                return log_error_errno(-ENOMEM, "Cannot create events");
        l->active = true;
        daemon_arm_timer(l->ev_retry, 0);
        return 0;
}

int listener_open(const char *location, const char *topic, knock_store **ret)
{
        knock_store *st = NULL;
        int r;

        r = store_open(location, 0, &st);
        if (r < 0)
                return r;
        r = store_listen(st, topic);
        if (r < 0) {
                store_close(st);
                return r;
        }
        *ret = st;
        return 0;
}

void listener_connect_here(listener *l)
{
        _cleanup_free_ char *location = config_store_location(l->d->cfg);
        knock_store *st = NULL;
        int r = location ? listener_open(location, l->topic, &st) : -ENOMEM;

        listener_attach(l, r < 0 ? NULL : st, r);
}

void listener_attach(listener *l, knock_store *st, int r)
{
        int fd;

        l->asked = false;
        if (!l->active || l->store) {
                store_close(st);
                return;
        }
        fd = r < 0 ? -1 : store_socket(st);
        if (fd >= 0) {
                l->ev = event_new(l->d->base, fd, EV_READ | EV_PERSIST, on_readable, l);
                if (!l->ev || event_add(l->ev, NULL) < 0) {
                        if (l->ev)
                                event_free(l->ev);
                        l->ev = NULL;
                        fd = -1;
                        r = -ENOMEM;
                }
        } else if (r >= 0)
                r = -ECONNRESET;
        if (fd < 0) {
                store_close(st);
                if (!l->failing)
                        log_warning_errno(r,
                                "Cannot listen for new %s from other hosts (%m); "
                                "they are picked up by the periodic rescan, and "
                                "listening is tried again",
                                l->what);
                l->failing = true;
                retry_later(l);
                return;
        }
        l->store = st;
        l->retry_ms = RETRY_FIRST_MS;
        if (l->failing)
                log_notice("Listening for new %s from other hosts again", l->what);
        else
                log_debug("Listening for new %s from other hosts", l->what);
        l->failing = false;
        /* What was committed before LISTEN took effect was not announced. */
        l->wake(l->userdata);
}

void listener_stop(listener *l)
{
        l->active = false;
        drop(l);
        if (l->ev_retry) {
                event_free(l->ev_retry);
                l->ev_retry = NULL;
        }
}
