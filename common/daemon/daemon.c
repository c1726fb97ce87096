/* SPDX-License-Identifier: MIT */
/*
 * daemon — the shared skeleton; see daemon.h for the start and stop order.
 *
 * The watchdog tick is the only place WATCHDOG=1 is sent. It runs on the
 * event loop (so a wedged loop stops the pings) and first writes the
 * heartbeat row (so a stuck or failing disk stops them too): systemd's
 * WatchdogSec= then restarts the daemon, which is what we want when the
 * storage path is gone. The heartbeat row is also what /readyz and
 * `knockctl status` read.
 */
#define _GNU_SOURCE
#include "daemon.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "catalog-ids.h"
#include "knock-build.h"
#include "log.h"
#include "util.h"

#define HEARTBEAT_DEFAULT_US (5 * 1000000ULL)

static void log_config_errors(knock_config_errors *errors)
{
        for (size_t i = 0; i < errors->n; i++)
                log_error("%s", errors->msgs[i]);
}

int daemon_heartbeat(knock_daemon *d)
{
        _cleanup_free_ char *counters = NULL;
        char status[256] = "";
        int r;

        if (d->ops && d->ops->counters)
                counters = d->ops->counters(d);
        if (d->ops && d->ops->status)
                d->ops->status(d, status, sizeof(status));
        if (d->ops && d->ops->heartbeat)
                r = d->ops->heartbeat(d, counters, status[0] ? status : NULL);
        else
                r = store_daemon_heartbeat(d->store, d->role, counters, status[0] ? status : NULL);
        if (r < 0)
                return log_struct_errno(LOG_ERR, r, MSGID_STORAGE_ERROR, LOG_NO_FIELDS,
                                        "Heartbeat write failed, withholding the watchdog ping: %s",
                                        d->ops && d->ops->heartbeat ? "storage path failing"
                                                                    : store_errmsg(d->store));
        if (status[0])
                notify_status("%s", status);
        return 0;
}

static void on_watchdog(evutil_socket_t fd, short what, void *userdata)
{
        knock_daemon *d = userdata;

        /* The heartbeat write is the storage health probe: only when it
         * committed, and the role reports healthy, do we ping systemd. */
        if (daemon_heartbeat(d) < 0)
                return;
        if (d->ops && d->ops->health && d->ops->health(d) != 0)
                return;
        notify_watchdog();
}

static void reload(knock_daemon *d)
{
        knock_config_errors errors = {0};
        knock_config *n = NULL;
        int r;

        notify_reloading();
        r = config_load(d->name, &n, &errors);
        if (r < 0) {
                log_config_errors(&errors);
                config_errors_clear(&errors);
        } else if (d->ops && d->ops->reload && d->ops->reload(d, n) < 0) {
                n = config_free(n);
                r = -EINVAL;
        }
        if (r < 0) {
                log_struct(LOG_ERR, MSGID_CONFIG_RELOAD_FAILED, LOG_NO_FIELDS,
                           "Reload failed, keeping the previous configuration");
                notify_ready("reload failed: configuration invalid, running with the previous one");
                return;
        }
        config_free(d->cfg);
        d->cfg = n;
        log_info("Configuration reloaded");
        notify_ready("configuration reloaded");
}

static void on_signal(evutil_socket_t sig, short what, void *userdata)
{
        knock_daemon *d = userdata;

        if (sig == SIGHUP) {
                reload(d);
                return;
        }

        if (d->stopping) {
                /* A second SIGTERM/SIGINT: stop at once. */
                event_base_loopbreak(d->base);
                return;
        }
        d->stopping = true;
        notify_stopping();
        log_info("Stopping on signal %d", (int)sig);
        if (d->ops && d->ops->stop)
                d->ops->stop(d);
        else
                daemon_exit_loop(d);
}

static void on_stop_deadline(evutil_socket_t fd, short what, void *userdata)
{
        knock_daemon *d = userdata;
        size_t n = d->ops->interrupt(d);

        log_notice("Stop deadline reached: %s %zu %s and releasing their claims", d->ops->cut, n,
                   d->ops->work);
}

static int parse_args(const char *role, const char *usage, int argc, char **argv,
                      const char **ret_name)
{
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "hV", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        printf("%s", usage);
                        return 1;
                case 'V':
                        printf("knock-%s %s\n", role, KNOCK_VERSION);
                        return 1;
                default:
                        return -EINVAL;
                }
        }
        if (optind != argc - 1) {
                fprintf(stderr, "knock-%s: expected exactly one argument, the endpoint NAME\n",
                        role);
                return -EINVAL;
        }
        if (!endpoint_name_valid(argv[optind])) {
                fprintf(stderr, "knock-%s: invalid endpoint name '%s'\n", role, argv[optind]);
                return -EINVAL;
        }
        *ret_name = argv[optind];
        return 0;
}

/*
 * A database this daemon cannot write (say, left owned by root by hand) is a
 * broken endpoint, not a crash: one clear record with what to fix. -EROFS
 * when it is read-only to us.
 */
static int check_writable(knock_daemon *d, const char *db)
{
        sqlite3 *lite = store_sqlite(d->store);
        struct stat st;

        /* PostgreSQL answers a write it refuses with its own error. */
        if (!lite || sqlite3_db_readonly(lite, "main") != 1)
                return 0;
        if (stat(db, &st) < 0)
                st = (struct stat){0};
        return log_struct_errno(LOG_ERR, -EROFS, MSGID_STORAGE_ERROR,
                                LOG_FIELDS(LF("KNOCK_ERROR", "database not writable")),
                                "Database %s is not writable by knock-%s (uid %u): the file is "
                                "owned by %u:%u, mode %04o; give it back to the daemons' user "
                                "(chown knock:knock, chmod 0660) and start the endpoint again",
                                db, d->role, (unsigned)geteuid(), (unsigned)st.st_uid,
                                (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777));
}

int daemon_setup(knock_daemon *d, const char *role, const char *usage, int argc, char **argv,
                 const knock_daemon_ops *ops, unsigned store_flags)
{
        knock_config_errors errors = {0};
        _cleanup_free_ char *db = NULL;
        uint64_t wd_us;
        struct timeval tv;
        int r;

        memset(d, 0, sizeof(*d));
        d->role = role;
        d->ops = ops;
        d->oom.fd = -1;
        r = parse_args(role, usage, argc, argv, &d->name);
        if (r != 0)
                return r;

        log_setup(role, d->name);
        signal(SIGPIPE, SIG_IGN);

        r = config_load(d->name, &d->cfg, &errors);
        if (r < 0) {
                log_config_errors(&errors);
                config_errors_clear(&errors);
                return log_error_errno(r, "Configuration of endpoint %s is invalid", d->name);
        }

        if (mkdir(knock_state_dir(), 0750) < 0 && errno != EEXIST)
                log_warning_errno(errno, "Cannot create %s: %m", knock_state_dir());
        db = config_store_location(d->cfg);
        if (!db)
                return log_error_errno(-ENOMEM, "Out of memory");
        /* Migrations may take long on a big database: tell systemd. */
        notify_extend_timeout(120 * 1000000ULL);
        r = store_open(db, store_flags | STORE_CREATE, &d->store);
        if (r < 0)
                return log_struct_errno(LOG_ERR, r, MSGID_STORAGE_ERROR,
                                        LOG_FIELDS(LF("KNOCK_ERROR", strerror(-r))),
                                        "Cannot open database %s: %m", db);

        r = oomfile_start(&d->oom, knock_state_dir(), d->name, role, &d->oom_state);
        if (r < 0)
                log_warning_errno(r, "OOM watchdog file disabled, cannot write it in %s: %m",
                                  knock_state_dir());
        if (d->oom_state == OOMFILE_UNCLEAN)
                log_struct(LOG_WARNING, MSGID_PREVIOUS_RUN_UNCLEAN, LOG_NO_FIELDS,
                           "Previous run of knock-%s for %s ended unexpectedly "
                           "(OOM kill, SIGKILL or watchdog); suspected OOM kill counted",
                           role, d->name);
        else if (d->oom_state == OOMFILE_NEVER_READY)
                log_notice("Previous run of knock-%s for %s ended before it was ready "
                           "(see its start errors); not counted as a suspected OOM kill",
                           role, d->name);
        r = check_writable(d, db);
        if (r >= 0)
                r = store_daemon_started(d->store, role, d->oom_state == OOMFILE_UNCLEAN);
        if (r < 0 && !streq(role, "ingress"))
                return r == -EROFS ? r
                                   : log_struct_errno(LOG_ERR, r, MSGID_STORAGE_ERROR,
                                                      LOG_NO_FIELDS, "Cannot record daemon start: %s",
                                                      store_errmsg(d->store));
        /* The ingress stays up with a database it cannot write: webhooks get
         * 503 with Retry-After at once (the provider retries) and /readyz says
         * why, instead of connections hanging on a service that keeps
         * restarting. The worker and the deliverer exit; after their start
         * limit they and knock@NAME are failed (knock(7)). */
        if (r < 0)
                log_struct_errno(LOG_ERR, r, MSGID_STORAGE_ERROR, LOG_NO_FIELDS,
                                 "Database not writable (%s); answering 503 until it is",
                                 r == -EROFS ? "read-only to this daemon"
                                             : store_errmsg(d->store));

        d->base = event_base_new();
        if (!d->base)
                return log_error_errno(-ENOMEM, "Cannot create event loop");
        d->ev_term = evsignal_new(d->base, SIGTERM, on_signal, d);
        d->ev_int = evsignal_new(d->base, SIGINT, on_signal, d);
        d->ev_hup = evsignal_new(d->base, SIGHUP, on_signal, d);
        if (!d->ev_term || !d->ev_int || !d->ev_hup)
                return log_error_errno(-ENOMEM, "Cannot install signal handlers");
        evsignal_add(d->ev_term, NULL);
        evsignal_add(d->ev_int, NULL);
        evsignal_add(d->ev_hup, NULL);

        wd_us = notify_watchdog_interval_us();
        if (wd_us == 0 || wd_us > HEARTBEAT_DEFAULT_US)
                wd_us = HEARTBEAT_DEFAULT_US;
        tv.tv_sec = (time_t)(wd_us / 1000000);
        tv.tv_usec = (suseconds_t)(wd_us % 1000000);
        d->ev_watchdog = event_new(d->base, -1, EV_PERSIST, on_watchdog, d);
        if (!d->ev_watchdog)
                return log_error_errno(-ENOMEM, "Cannot create watchdog timer");
        if (ops && ops->interrupt) {
                d->ev_stop = evtimer_new(d->base, on_stop_deadline, d);
                if (!d->ev_stop)
                        return log_error_errno(-ENOMEM, "Cannot create the stop deadline");
        }
        evtimer_add(d->ev_watchdog, &tv);
        return 0;
}

int daemon_run(knock_daemon *d)
{
        char status[256] = "ready";

        if (d->ops && d->ops->status)
                d->ops->status(d, status, sizeof(status));
        (void)store_daemon_heartbeat(d->store, d->role, NULL, "running");
        /* Marked before it is said: whoever saw READY=1 and then saw this
         * process die must find it counted. */
        oomfile_ready(&d->oom);
        d->ready = true;
        notify_ready(status);
        log_struct(LOG_INFO, MSGID_DAEMON_STARTED, LOG_NO_FIELDS, "knock-%s %s started for %s",
                   d->role, KNOCK_VERSION, d->name);
        if (event_base_dispatch(d->base) < 0)
                return log_error_errno(-EIO, "Event loop failed");
        return 0;
}

void daemon_exit_loop(knock_daemon *d)
{
        event_base_loopexit(d->base, NULL);
}

void daemon_finish(knock_daemon *d, bool clean)
{
        notify_stopping();
        if (d->store) {
                if (clean) {
                        int r = store_daemon_stopped(d->store, d->role);
                        if (r < 0)
                                log_warning_errno(r, "Cannot record clean stop: %s",
                                                  store_errmsg(d->store));
                }
                d->store = store_close(d->store);
        }
        /* A run that never got to READY=1 failed to start; that is said in
         * its own records and is not a suspected OOM kill. */
        if (clean || !d->ready)
                oomfile_clean_exit(&d->oom);
        if (clean) {
                log_struct(LOG_INFO, MSGID_DAEMON_STOPPED, LOG_NO_FIELDS,
                           "knock-%s stopped cleanly", d->role);
        }
        if (d->ev_watchdog)
                event_free(d->ev_watchdog);
        if (d->ev_stop)
                event_free(d->ev_stop);
        if (d->ev_term)
                event_free(d->ev_term);
        if (d->ev_int)
                event_free(d->ev_int);
        if (d->ev_hup)
                event_free(d->ev_hup);
        if (d->base)
                event_base_free(d->base);
        d->cfg = config_free(d->cfg);
}

static int wake_addr(const char *name, const char *role, struct sockaddr_un *sa, socklen_t *len)
{
        int n;

        memset(sa, 0, sizeof(*sa));
        sa->sun_family = AF_UNIX;
        n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s.%s.sock", knock_runtime_dir(),
                     name, role);
        if (n < 0 || (size_t)n >= sizeof(sa->sun_path))
                return -ENAMETOOLONG;
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
        return 0;
}

void daemon_wake_peer(const char *name, const char *role)
{
        struct sockaddr_un sa;
        socklen_t len;
        int fd;

        if (wake_addr(name, role, &sa, &len) < 0)
                return;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return;
        /* A full queue (EAGAIN) means the peer has wake-ups pending anyway. */
        (void)sendto(fd, "w", 1, MSG_DONTWAIT, (struct sockaddr *)&sa, len);
        close(fd);
}

int daemon_wake_socket(const char *name, const char *role)
{
        struct sockaddr_un sa;
        socklen_t len;
        int fd, r;

        r = wake_addr(name, role, &sa, &len);
        if (r < 0)
                return r;
        if (mkdir(knock_runtime_dir(), 0755) < 0 && errno != EEXIST)
                return -errno;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        (void)unlink(sa.sun_path);
        if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

void daemon_wake_close(const char *name, const char *role, int fd)
{
        struct sockaddr_un sa;
        socklen_t len;

        if (fd < 0)
                return;
        if (wake_addr(name, role, &sa, &len) >= 0)
                (void)unlink(sa.sun_path);
        close(fd);
}

void daemon_wake_drain(int fd)
{
        char buf[64];

        while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
                ;
}

int daemon_wake_listen(knock_daemon *d, const char *what, event_callback_fn cb, void *userdata,
                       int *ret_fd, struct event **ret_ev)
{
        int fd;

        *ret_ev = NULL;
        fd = daemon_wake_socket(d->name, d->role);
        *ret_fd = fd < 0 ? -1 : fd;
        if (fd < 0) {
                log_warning_errno(fd,
                                  "Cannot bind the wake-up socket, new %s are picked up by the "
                                  "periodic rescan only: %m",
                                  what);
                return 0;
        }
        *ret_ev = event_new(d->base, fd, EV_READ | EV_PERSIST, cb, userdata);
        if (!*ret_ev)
                return log_error_errno(-ENOMEM, "Cannot create events");
        event_add(*ret_ev, NULL);
        return 0;
}

void daemon_arm_timer(struct event *ev, int64_t ms)
{
        struct timeval tv;

        if (ms < 0)
                ms = 0;
        tv.tv_sec = (time_t)(ms / 1000);
        tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
        evtimer_add(ev, &tv);
}

void daemon_activate(evutil_socket_t fd, short what, void *userdata)
{
        event_active(userdata, EV_TIMEOUT, 0);
}

uint64_t daemon_stop_timeout_ms(uint64_t default_ms)
{
        const char *e = getenv("KNOCK_STOP_TIMEOUT");
        uint64_t v;

        if (e && parse_duration_ms(e, false, &v) >= 0)
                return v;
        return default_ms;
}

void daemon_stop_work(knock_daemon *d, struct event *ev_wake, struct event *ev_due,
                      size_t n_running)
{
        uint64_t timeout_ms;

        if (ev_wake)
                event_del(ev_wake);
        evtimer_del(ev_due);
        if (n_running == 0)
                return;
        timeout_ms = daemon_stop_timeout_ms(d->ops->stop_timeout_ms);
        log_info("Waiting up to %llu ms for %zu %s", (unsigned long long)timeout_ms, n_running,
                 d->ops->work);
        daemon_arm_timer(d->ev_stop, (int64_t)timeout_ms);
}
