/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * daemon — the one skeleton every knock daemon runs (style.md "one daemon
 * skeleton"): parse NAME/--help/--version, set up logging, load and validate
 * the endpoint config, open (and migrate) the store, start the OOM watchdog
 * file and record the start (counting a suspected OOM kill when the previous
 * run was READY and ended without CLEAN_EXIT), refuse a database it cannot
 * write (the ingress stays up answering 503), install SIGTERM/SIGINT/SIGHUP on the
 * libevent loop, and run a watchdog tick that pings systemd and writes the
 * heartbeat only while the loop turns and the store answers.
 *
 * Order on start:  config → store → oomfile → daemons row → (role setup) →
 *                  READY=1 → loop.
 * Order on stop:   STOPPING=1 → role drain (on_stop) → heartbeat "stopped" →
 *                  CLEAN_EXIT in the oomfile → exit 0.
 * daemon_finish() runs on every exit path after setup, so STOPPING=1 is
 * always sent.
 *
 * Unlike the silent library below it, the skeleton logs: each failure once,
 * with its context, and the start, stop and reload records. That is why it
 * lives in common/daemon/ (lib_daemon) beside the logger.
 */

#include <event2/event.h>
#include <stdbool.h>

#include "config.h"
#include "notify.h"
#include "store.h"

typedef struct knock_daemon knock_daemon;

typedef struct knock_daemon_ops {
        /* Extra health condition for the watchdog tick; 0 when healthy. */
        int (*health)(knock_daemon *d);
        /* JSON object of counters stored with the heartbeat (malloc'd) and a
         * one-line STATUS= (written into buf). Either may be NULL. */
        char *(*counters)(knock_daemon *d);
        void (*status)(knock_daemon *d, char *buf, size_t len);
        /* Writes the heartbeat row without blocking the loop (the ingress
         * queues it to its writer thread). NULL: a synchronous write on
         * d->store. Return <0 when the storage path is known to be failing. */
        int (*heartbeat)(knock_daemon *d, const char *counters_json, const char *status);
        /* SIGTERM/SIGINT: stop taking new work; call daemon_exit_loop() when drained. */
        void (*stop)(knock_daemon *d);
        /* The stop deadline (daemon_stop_work) passed with work still running:
         * cut it short now (it ends as interrupted, its claims released) and
         * return how much was cut. */
        size_t (*interrupt)(knock_daemon *d);
        /* For the stop records: what the running work is ("running
         * handlers"), how it is cut short ("killing"), and the deadline when
         * $KNOCK_STOP_TIMEOUT does not say. */
        const char *work, *cut;
        uint64_t stop_timeout_ms;
        /* SIGHUP with a new valid config; the role swaps it in. Return 0 to accept. */
        int (*reload)(knock_daemon *d, knock_config *new_cfg);
} knock_daemon_ops;

struct knock_daemon {
        const char *role;        /* "ingress", "worker", "deliver" */
        const char *name;        /* endpoint name (argv) */
        knock_config *cfg;
        knock_store *store;      /* the daemon's main connection */
        struct event_base *base;
        oomfile oom;
        oomfile_state oom_state;
        const knock_daemon_ops *ops;
        void *userdata;

        bool stopping;
        bool ready;             /* READY=1 was sent */
        uint64_t last_loop_us;  /* updated by a cheap prepare-side timer */
        struct event *ev_term, *ev_int, *ev_hup, *ev_watchdog;
        struct event *ev_stop;  /* the stop deadline (daemon_stop_work) */
};

/*
 * Parses argv (NAME, --help, --version), sets up everything above. Returns
 * 0 to continue, 1 when the program should exit 0 (--help/--version), or a
 * negative errno (already logged).
 */
int daemon_setup(knock_daemon *d, const char *role, const char *usage, int argc, char **argv,
                 const knock_daemon_ops *ops, unsigned store_flags);
/* READY=1 with the status line, then event_base_dispatch until daemon_exit_loop. */
int daemon_run(knock_daemon *d);
void daemon_exit_loop(knock_daemon *d);
/* STOPPING=1, final heartbeat, CLEAN_EXIT, frees everything. */
void daemon_finish(knock_daemon *d, bool clean);
/* Heartbeat + STATUS now (also done by the watchdog tick). */
int daemon_heartbeat(knock_daemon *d);

/* Sends one datagram to $KNOCK_RUNTIME_DIR/NAME.<role>.sock to wake a sleeping
 * peer (worker, deliver). Never blocks; errors are ignored (the peer also
 * scans on its own timer). */
void daemon_wake_peer(const char *name, const char *role);
/* Binds $KNOCK_RUNTIME_DIR/NAME.<role>.sock (unix datagram, non-blocking,
 * CLOEXEC) and returns the fd; the caller adds a read event and drains it. */
int daemon_wake_socket(const char *name, const char *role);
/* Unlinks the socket daemon_wake_socket() bound and closes fd (fd < 0: no-op). */
void daemon_wake_close(const char *name, const char *role, int fd);
/* Reads and discards every pending wake-up datagram on fd: many datagrams,
 * one look at the queue. */
void daemon_wake_drain(int fd);
/* Binds the role's wake-up socket and adds a persistent read event calling
 * cb(fd, what, userdata) to d->base. A bind failure is logged as a warning
 * ("new <what> are picked up by the periodic rescan only") and leaves
 * *ret_fd = -1, *ret_ev = NULL; returns 0 then. Returns -ENOMEM (logged)
 * when the event cannot be created. */
int daemon_wake_listen(knock_daemon *d, const char *what, event_callback_fn cb, void *userdata,
                       int *ret_fd, struct event **ret_ev);

/* Arms the one-shot timer ev to fire in ms milliseconds (negative: now). */
void daemon_arm_timer(struct event *ev, int64_t ms);
/* An event callback that activates the event userdata on the next loop turn:
 * a timer that runs a deferred callback, e.g. evtimer_new(base,
 * daemon_activate, ev_pump). */
void daemon_activate(evutil_socket_t fd, short what, void *userdata);
/* The drain deadline on stop: $KNOCK_STOP_TIMEOUT when it parses as a
 * duration, otherwise default_ms. */
uint64_t daemon_stop_timeout_ms(uint64_t default_ms);
/* The common first half of a role's op_stop: the wake-up event (may be NULL)
 * and the due timer are removed, and when n_running > 0 the stop deadline is
 * armed for daemon_stop_timeout_ms(ops->stop_timeout_ms) and logged as
 * "Waiting up to N ms for <n_running> <work>". When it passes, ops->interrupt
 * cuts the work short and "Stop deadline reached: <cut> N <work> and
 * releasing their claims" is logged. */
void daemon_stop_work(knock_daemon *d, struct event *ev_wake, struct event *ev_due,
                      size_t n_running);
