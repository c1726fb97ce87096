/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * listener — wake-ups from every host of a PostgreSQL endpoint (issue 19):
 * a connection of its own that LISTENs for a topic (store.h's
 * store_listen()), watched by the daemon's event loop. The datagram
 * (daemon_wake_peer) wakes this host's daemons only; a notification sent at
 * the COMMIT that made the rows (store_notify()) wakes every host's.
 *
 * Promises:
 *  - on an SQLite endpoint it does nothing at all (one host: the datagram
 *    is enough);
 *  - wake() runs on the loop for every read that brought notifications of
 *    the topic, and each time listening starts (the first time and after a
 *    loss): what was committed while nobody listened is not announced, so
 *    the queue is looked at then;
 *  - a lost connection never stops the daemon: the loss is logged once,
 *    the daemon goes on with its datagrams and its periodic rescan, and a
 *    new connection is asked for after 1 s, then 2, 4… up to 30 s between
 *    tries; getting it back is logged;
 *  - connecting blocks (store_open, LISTEN), so the listener does not
 *    connect itself: it asks its owner (connect()), who connects where
 *    blocking is allowed — the deliverer on its loop, which waits for the
 *    database anyway (listener_connect_here), the worker on its writer
 *    thread — and hands the result to listener_attach() on the loop.
 */

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"

typedef struct listener listener;

struct listener {
        knock_daemon *d;
        const char *topic; /* STORE_TOPIC_EVENTS, STORE_TOPIC_HOOKS */
        const char *what;  /* for the records: "events", "hooks" */
        /* Ask for a connection: listener_attach() with it, now or later. */
        void (*connect)(listener *l);
        /* Notified, or listening (again): look at the queue. */
        void (*wake)(void *userdata);
        void *userdata;

        knock_store *store; /* listening; NULL while not */
        struct event *ev, *ev_retry;
        bool active;  /* a PostgreSQL endpoint, not stopped */
        bool asked;   /* connect() was called, listener_attach() not yet */
        bool failing; /* the last try failed, or the connection was lost: said once */
        uint64_t retry_ms;
};

/* Sets l up and asks for the first connection (SQLite: nothing, returns 0).
 * -ENOMEM (logged) when the loop's events cannot be made. */
int listener_init(listener *l, knock_daemon *d, const char *topic, const char *what,
        void (*connect)(listener *l), void (*wake)(void *userdata), void *userdata);
/* Blocking: opens location and LISTENs for topic; *ret is the listening store. */
int listener_open(const char *location, const char *topic, knock_store **ret);
/* A connect() that connects at once (blocking the loop) and attaches. */
void listener_connect_here(listener *l);
/* The connection asked for: st (r >= 0) or why not (r < 0; st NULL). Takes st. */
void listener_attach(listener *l, knock_store *st, int r);
/* Stopping: no more wake-ups; the connection is closed. Safe twice. */
void listener_stop(listener *l);
