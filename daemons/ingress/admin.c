/* SPDX-License-Identifier: MIT */
/*
 * admin — see admin.h. Metric names follow Prometheus conventions: the
 * knock_ prefix, base units (seconds, bytes), _total for counters, and only
 * bounded label values (statuses, results, daemon roles).
 */
#define _GNU_SOURCE
#include "admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "console.h"
#include "events.h"
#include "knock-build.h"
#include "pause.h"
#include "store.h"

#define WANTED_FOR_US (60 * 1000000ULL)
/* /readyz answers within a second whatever the database does: it waits at
 * most this long for a fresh snapshot, and calls a snapshot older than
 * SNAPSHOT_STALE_MS, or a commit running longer than WRITER_STUCK_US, a
 * failure. */
#define SNAPSHOT_WAIT_MS 500
#define SNAPSHOT_STALE_MS 3000
#define WRITER_STUCK_US (1000 * 1000ULL)
/* A commit this recent proves the database writable without the probe. */
#define WRITABLE_FRESH_US (2 * 1000000ULL)
/* A request to the admin listener: the console's probe form holds a pasted
 * request of up to max_body, form-encoded (up to three bytes a byte). */
#define ADMIN_MAX_BODY (4 * 1024 * 1024)

const double admin_batch_bounds[KNOCK_HIST_BUCKETS] = {
        1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096,
};

static const char *const daemon_roles[3] = {"ingress", "worker", "deliver"};

/* ---- snapshot (admin thread) ------------------------------------------------------ */

static int64_t query_i64(knock_store *st, const char *sql, int *err)
{
        _cleanup_stmt_ db_stmt *s = NULL;
        int64_t v = 0;
        int rc;

        if (store_prepare(st, sql, &s) < 0) {
                *err = -EIO;
                return 0;
        }
        rc = stmt_step(s);
        if (rc > 0)
                v = stmt_col_i64(s, 0);
        else if (rc < 0)
                *err = rc;
        return v;
}

/* A meta value that is a number, 0 when absent. */
static int64_t meta_i64(knock_store *st, const char *key)
{
        _cleanup_free_ char *v = NULL;
        uint64_t n;

        if (store_meta_get(st, key, &v) >= 0 && v && parse_u64_strict(v, &n) >= 0 &&
            n <= INT64_MAX)
                return (int64_t)n;
        return 0;
}

static int64_t file_size(const char *path)
{
        struct stat sb;
        return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* Handler durations: the worker's own histogram since it started, from the
 * counters of its last heartbeat (every 5 s). Not from the attempts table:
 * that scan grew with the history, and pruning made the counts go down. */
static void handler_durations(admin_snapshot *snap, const char *counters)
{
        json_t *doc = counters ? json_loads(counters, 0, NULL) : NULL;
        json_t *b = json_object_get(doc, "handler_buckets");

        if (json_is_array(b) && json_array_size(b) == KNOCK_HIST_BUCKETS) {
                for (size_t i = 0; i < KNOCK_HIST_BUCKETS; i++)
                        snap->handler_buckets[i] = (uint64_t)MAX(
                                json_integer_value(json_array_get(b, i)), (json_int_t)0);
                snap->handler_count = (uint64_t)MAX(
                        json_integer_value(json_object_get(doc, "handler_count")), (json_int_t)0);
                snap->handler_sum_s = json_number_value(json_object_get(doc, "handler_sum_s"));
        }
        snap->breakers_opened = (uint64_t)MAX(
                json_integer_value(json_object_get(doc, "breakers_opened")), (json_int_t)0);
        snap->breakers_closed = (uint64_t)MAX(
                json_integer_value(json_object_get(doc, "breakers_closed")), (json_int_t)0);
        json_decref(doc);
}

/* The pauses in force; a route name too long for the snapshot is left out. */
static void read_pauses(knock_store *st, admin_snapshot *snap, int *err)
{
        knock_pause *v = NULL;
        size_t n = 0;

        if (pause_list(st, &v, &n) < 0) {
                *err = -EIO;
                return;
        }
        for (size_t i = 0; i < n && snap->n_paused < ADMIN_MAX_PAUSES; i++) {
                admin_pause *p = &snap->paused[snap->n_paused];

                if (v[i].route && strlen(v[i].route) >= sizeof(p->route))
                        continue;
                snprintf(p->route, sizeof(p->route), "%s", v[i].route ?: "");
                p->since = v[i].since;
                snap->n_paused++;
        }
        pause_list_free(v, n);
}

/* The daemons rows' times are in the store's clock (store_now_ms(): the
 * server's, on PostgreSQL); the snapshot's are this host's, as /readyz,
 * /metrics and the console compare them with now_ms(). */
static int64_t local_time(int64_t t, int64_t skew)
{
        return t > 0 ? t - skew : t;
}

/* Another host's row (ROLE@HOST), for /readyz to list. */
static void other_daemon(admin_snapshot *snap, const char *key, db_stmt *s, int64_t skew)
{
        const char *at = strchr(key, STORE_DAEMON_HOST_SEP);
        admin_other_daemon *o;

        if (!at || snap->n_others >= ADMIN_MAX_OTHER_DAEMONS ||
            (size_t)(at - key) >= sizeof(o->name) || strlen(at + 1) >= sizeof(o->host))
                return;
        o = &snap->others[snap->n_others++];
        snprintf(o->name, sizeof(o->name), "%.*s", (int)(at - key), key);
        snprintf(o->host, sizeof(o->host), "%s", at + 1);
        o->pid = stmt_col_i64(s, 1);
        o->heartbeat_at = local_time(stmt_col_i64(s, 2), skew);
        o->stopped_at = local_time(stmt_col_i64(s, 4), skew);
}

static void take_snapshot(admin *a, knock_store *st, admin_snapshot *snap)
{
        _cleanup_stmt_ db_stmt *s = NULL;
        char key_bufs[3][STORE_DAEMON_KEY_MAX];
        const char *keys[3];
        int64_t skew = 0;
        _cleanup_free_ char *wal = NULL;
        struct statvfs vfs;
        int err = 0, rc;
        bool recent;

        memset(snap, 0, sizeof(*snap));
        snap->taken_at = now_ms();

        /* Writable: the writer committed a moment ago, or else take the
         * write lock for a moment and give it back (a held lock, a read-only
         * file or a failing disk all show there). Under ingest the probe is
         * skipped: it would take the lock from the writer once a scrape. */
        pthread_mutex_lock(&a->writer->lock);
        recent = a->writer->healthy && a->writer->last_commit_us > 0 &&
                 mono_us() - a->writer->last_commit_us < WRITABLE_FRESH_US;
        pthread_mutex_unlock(&a->writer->lock);
        if (recent)
                snap->db_writable = true;
        else {
                store_busy_timeout(st, 100);
                rc = store_begin(st);
                snap->db_writable = rc >= 0;
                if (rc < 0)
                        snprintf(snap->writable_error, sizeof(snap->writable_error),
                                 "cannot take the write lock: %s", store_errmsg(st));
                store_rollback(st);
                store_busy_timeout(st, 1000);
        }

        (void)store_schema_version(st, &snap->schema_version);
        if (events_queue_counts(st, snap->events) < 0)
                err = -EIO;
        snap->oldest_queued_at = query_i64(
                st, "SELECT coalesce(min(received_at),0) FROM events WHERE status IN "
                    "('received','processing','failed')", &err);
        snap->hooks_pending = query_i64(st, "SELECT count(*) FROM hooks WHERE state='pending'", &err);
        snap->hooks_delivered =
                query_i64(st, "SELECT count(*) FROM hooks WHERE state='delivered'", &err);
        snap->hooks_failed = query_i64(st, "SELECT count(*) FROM hooks WHERE state='failed'", &err);
        /* One pass over hook_attempts for the three results. */
        if (store_prepare(st, "SELECT count(*) FILTER (WHERE status BETWEEN 200 AND 299),"
                              " count(*) FILTER (WHERE status > 0 AND status NOT BETWEEN 200 AND 299),"
                              " count(*) FILTER (WHERE status = 0) FROM hook_attempts", &s) >= 0) {
                if (stmt_step(s) > 0) {
                        snap->hook_attempts_ok = stmt_col_i64(s, 0);
                        snap->hook_attempts_http_error = stmt_col_i64(s, 1);
                        snap->hook_attempts_error = stmt_col_i64(s, 2);
                } else
                        err = -EIO;
                stmt_finalizep(&s);
        } else
                err = -EIO;

        /* This host's rows: ROLE, or ROLE@HOST where hosts share the store. */
        snap->hosts = st->engine == STORE_ENGINE_POSTGRESQL;
        if (snap->hosts)
                skew = store_now_ms(st) - snap->taken_at;
        for (size_t i = 0; i < 3; i++)
                keys[i] = store_daemon_key(st, daemon_roles[i], key_bufs[i], sizeof(key_bufs[i]));
        if (store_prepare(st, "SELECT daemon, pid, heartbeat_at, started_at, stopped_at,"
                              " suspected_oom_kills, counters, coalesce(last_clean_exit, -1),"
                              " status FROM daemons", &s) >= 0) {
                while (stmt_step(s) > 0) {
                        const char *name = stmt_col_text(s, 0);
                        const char *counters = stmt_col_text(s, 6);
                        const char *status = stmt_col_text(s, 8);
                        bool ours = false;

                        for (size_t i = 0; i < 3; i++) {
                                admin_daemon *d = &snap->daemons[i];
                                if (!name || !streq(name, keys[i]))
                                        continue;
                                ours = true;
                                d->present = true;
                                d->pid = stmt_col_i64(s, 1);
                                d->heartbeat_at = local_time(stmt_col_i64(s, 2), skew);
                                d->started_at = local_time(stmt_col_i64(s, 3), skew);
                                d->stopped_at = local_time(stmt_col_i64(s, 4), skew);
                                d->oom_kills = stmt_col_i64(s, 5);
                                d->last_clean_exit = stmt_col_i64(s, 7);
                                snprintf(d->status, sizeof(d->status), "%s", status ? status : "");
                                /* Cut JSON is no JSON: too long means none. */
                                if (counters && strlen(counters) < sizeof(d->counters))
                                        strcpy(d->counters, counters);
                                if (i == 1)
                                        handler_durations(snap, counters);
                        }
                        if (!ours && snap->hosts && name)
                                other_daemon(snap, name, s, skew);
                }
                stmt_finalizep(&s);
        } else
                err = -EIO;
        for (size_t i = 0; i < 3; i++)
                snprintf(snap->daemons[i].name, sizeof(snap->daemons[i].name), "%s",
                         daemon_roles[i]);

        snap->last_backup_at = meta_i64(st, "last_backup_at");
        snap->last_prune_at = meta_i64(st, "last_prune_at");
        snap->last_prune_rows = meta_i64(st, "last_prune_rows");
        read_pauses(st, snap, &err);
        if (store_sqlite(st)) {
                snap->db_bytes = file_size(a->db_path);
                if (asprintf(&wal, "%s-wal", a->db_path) >= 0)
                        snap->wal_bytes = file_size(wal);
        } else
                (void)store_bytes(st, &snap->db_bytes);
        if (statvfs(a->state_dir, &vfs) == 0)
                snap->disk_free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        if (err < 0)
                snprintf(snap->error, sizeof(snap->error), "%s", store_errmsg(st));
        snap->valid = true;
}

/* One sample of the ingress's receipts into the ring, when one is due
 * (under a->lock). The counters are the loop's; reading them races a
 * receipt at worst by one. */
static void sample_counters(admin *a)
{
        uint64_t now = mono_us();
        ingest_stats st;

        if (now < (uint64_t)a->next_sample_us)
                return;
        a->next_sample_us = (int64_t)(now + ADMIN_SAMPLE_MS * 1000ULL);
        st = admin_get_stats(a);
        a->samples[a->sample_next] = (admin_sample){
                .at = now_ms(),
                .stored = st.accepted + st.duplicates,
                .rejected = st.invalid + st.too_large,
        };
        a->sample_next = (a->sample_next + 1) % ADMIN_SAMPLES;
}

static void *admin_main(void *userdata)
{
        admin *a = userdata;
        _cleanup_(store_closep) knock_store *st = NULL;

        pthread_setname_np(pthread_self(), "admin");

        pthread_mutex_lock(&a->lock);
        while (!a->stop) {
                admin_snapshot snap;
                struct timespec ts;
                bool wanted = mono_us() < a->wanted_until_us;

                sample_counters(a);

                if (wanted) {
                        pthread_mutex_unlock(&a->lock);
                        if (!st && store_open(a->db_path, 0, &st) < 0)
                                st = NULL;
                        if (st)
                                take_snapshot(a, st, &snap);
                        else {
                                memset(&snap, 0, sizeof(snap));
                                snap.valid = true;
                                snprintf(snap.error, sizeof(snap.error), "cannot open the database");
                                snprintf(snap.writable_error, sizeof(snap.writable_error),
                                         "cannot open the database");
                        }
                        pthread_mutex_lock(&a->lock);
                        a->snap = snap;
                        pthread_cond_broadcast(&a->cond);
                }
                /* Every second while someone looks, else only to sample. */
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += wanted ? 1 : ADMIN_SAMPLE_MS / 1000;
                pthread_cond_timedwait(&a->cond, &a->lock, &ts);
        }
        pthread_mutex_unlock(&a->lock);
        return NULL;
}

int admin_start(admin *a, const char *db_path, ingest_writer *w, ingest_stats *stats)
{
        bool pg = store_location_is_postgresql(db_path);
        char *slash;
        int r;

        memset(a, 0, sizeof(*a));
        pthread_mutex_init(&a->lock, NULL);
        pthread_cond_init(&a->cond, NULL);
        a->writer = w;
        a->stats = stats;
        a->db_path = strdup(db_path);
        /* The disk the store's file is on; a PostgreSQL endpoint's is its
         * server's, and here only the state directory's files are. */
        a->state_dir = strdup(pg ? knock_state_dir() : db_path);
        if (!a->db_path || !a->state_dir)
                return -ENOMEM;
        if (!pg && (slash = strrchr(a->state_dir, '/')))
                *slash = 0;
        r = -pthread_create(&a->thread, NULL, admin_main, a);
        if (r < 0)
                return r;
        a->started = true;
        return 0;
}

int admin_serve(admin *a, struct evhttp *http, struct event_base *base)
{
        evhttp_set_timeout(http, 10);
        /* The console's probe takes a pasted request, form-encoded. */
        evhttp_set_max_body_size(http, ADMIN_MAX_BODY);
        evhttp_set_max_headers_size(http, 64 * 1024);
        evhttp_set_gencb(http, admin_handle, a);
        return console_new(a, base, &a->console);
}

void admin_stop(admin *a)
{
        /* First: the console's thread reads the snapshot under a->lock. */
        a->console = console_free(a->console);
        if (a->started) {
                pthread_mutex_lock(&a->lock);
                a->stop = true;
                pthread_cond_broadcast(&a->cond);
                pthread_mutex_unlock(&a->lock);
                pthread_join(a->thread, NULL);
                a->started = false;
        }
        free(a->db_path);
        free(a->state_dir);
        a->db_path = a->state_dir = NULL;
        pthread_mutex_destroy(&a->lock);
        pthread_cond_destroy(&a->cond);
}

/* Returns a copy of the snapshot; the first request after a quiet period
 * waits (up to SNAPSHOT_WAIT_MS) for a fresh one instead of answering from
 * stale data. The caller checks taken_at: a snapshot thread stuck in the
 * database must not hold the answer. */
admin_snapshot admin_get_snapshot(admin *a)
{
        admin_snapshot snap;
        uint64_t now = mono_us();
        struct timespec ts;

        pthread_mutex_lock(&a->lock);
        if (now >= a->wanted_until_us || !a->snap.valid) {
                a->snap.valid = false;
                a->wanted_until_us = now + WANTED_FOR_US;
                pthread_cond_broadcast(&a->cond);
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += SNAPSHOT_WAIT_MS * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                while (!a->snap.valid)
                        if (pthread_cond_timedwait(&a->cond, &a->lock, &ts) != 0)
                                break;
        }
        a->wanted_until_us = now + WANTED_FOR_US;
        snap = a->snap;
        pthread_mutex_unlock(&a->lock);
        return snap;
}

void admin_get_samples(admin *a, admin_sample *out)
{
        pthread_mutex_lock(&a->lock);
        for (size_t i = 0; i < ADMIN_SAMPLES; i++)
                out[i] = a->samples[(a->sample_next + i) % ADMIN_SAMPLES];
        pthread_mutex_unlock(&a->lock);
}

ingest_stats admin_get_stats(admin *a)
{
        ingest_stats st;

        pthread_mutex_lock(&a->writer->lock);
        st = *a->stats;
        pthread_mutex_unlock(&a->writer->lock);
        return st;
}

/* ---- HTTP (loop thread) ------------------------------------------------------------ */

void http_send(struct evhttp_request *req, int code, const char *reason,
               const char *content_type, struct evbuffer *body)
{
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
        evhttp_send_reply(req, code, reason, body);
}

static bool daemon_fresh(const admin_daemon *d, int64_t now, char *msg, size_t len)
{
        if (!d->present) {
                snprintf(msg, len, "knock-%s has never run", d->name);
                return false;
        }
        if (d->stopped_at > 0) {
                snprintf(msg, len, "knock-%s is stopped", d->name);
                return false;
        }
        if (now - d->heartbeat_at > STORE_HEARTBEAT_STALE_MS) {
                snprintf(msg, len, "knock-%s heartbeat is %lld s old", d->name,
                         (long long)((now - d->heartbeat_at) / 1000));
                return false;
        }
        snprintf(msg, len, "knock-%s pid %lld, heartbeat %lld ms ago", d->name,
                 (long long)d->pid, (long long)(now - d->heartbeat_at));
        return true;
}

/* [{daemon, host, pid, state, heartbeat_age_s}], state as knockctl status says it. */
static json_t *other_hosts(const admin_snapshot *snap, int64_t now)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < snap->n_others; i++) {
                const admin_other_daemon *o = &snap->others[i];
                const char *state = o->stopped_at > 0 || o->pid == 0 ? "stopped"
                                    : now - o->heartbeat_at > STORE_HEARTBEAT_STALE_MS ? "stale"
                                                                                       : "running";

                json_array_append_new(a, json_pack("{s:s,s:s,s:I,s:s,s:f}", "daemon", o->name,
                                                   "host", o->host, "pid", (json_int_t)o->pid,
                                                   "state", state, "heartbeat_age_s",
                                                   (double)(now - o->heartbeat_at) / 1000.0));
        }
        return a;
}

static void add_check(json_t *checks, bool *all_ok, const char *name, bool ok, const char *msg)
{
        json_array_append_new(checks, json_pack("{s:s,s:b,s:s}", "name", name, "ok", ok,
                                                "message", msg));
        if (!ok)
                *all_ok = false;
}

static void handle_readyz(admin *a, struct evhttp_request *req)
{
        admin_snapshot snap = admin_get_snapshot(a);
        const knock_config *cfg = a->cfg;
        json_t *checks = json_array(), *doc;
        bool ok = true, writer_ok;
        uint64_t stuck_us;
        char msg[300], last[256];
        int64_t now = now_ms();
        struct evbuffer *buf = evbuffer_new();
        char *s;

        pthread_mutex_lock(&a->writer->lock);
        writer_ok = a->writer->healthy;
        stuck_us = a->writer->busy ? mono_us() - a->writer->busy_since_us : 0;
        snprintf(last, sizeof(last), "%s", a->writer->last_error);
        pthread_mutex_unlock(&a->writer->lock);

        if (stuck_us > WRITER_STUCK_US)
                snprintf(msg, sizeof(msg), "the writer has been committing for %llu ms",
                         (unsigned long long)(stuck_us / 1000));
        else if (!writer_ok)
                snprintf(msg, sizeof(msg), "last commit failed: %s", last);
        else if (!snap.db_writable)
                snprintf(msg, sizeof(msg), "%s", snap.writable_error);
        else
                snprintf(msg, sizeof(msg), "writable");
        add_check(checks, &ok, "database_writable",
                  writer_ok && snap.db_writable && stuck_us <= WRITER_STUCK_US, msg);

        if (!snap.valid || now - snap.taken_at > SNAPSHOT_STALE_MS)
                snprintf(msg, sizeof(msg), "the database did not answer within %d ms",
                         SNAPSHOT_WAIT_MS);
        else
                snprintf(msg, sizeof(msg), "%s", snap.error[0] ? snap.error : "answering");
        add_check(checks, &ok, "database_answers",
                  snap.valid && now - snap.taken_at <= SNAPSHOT_STALE_MS && !snap.error[0], msg);

        snprintf(msg, sizeof(msg), "schema version %d, this build %d", snap.schema_version,
                 STORE_SCHEMA_VERSION);
        add_check(checks, &ok, "schema_current", snap.schema_version == STORE_SCHEMA_VERSION, msg);

        add_check(checks, &ok, "worker_heartbeat", daemon_fresh(&snap.daemons[1], now, msg, sizeof(msg)),
                  msg);
        if (cfg->hook_url)
                add_check(checks, &ok, "deliver_heartbeat",
                          daemon_fresh(&snap.daemons[2], now, msg, sizeof(msg)), msg);

        snprintf(msg, sizeof(msg), "%llu bytes free, threshold %llu",
                 (unsigned long long)snap.disk_free_bytes, (unsigned long long)cfg->min_free_disk);
        add_check(checks, &ok, "disk_space", snap.disk_free_bytes >= cfg->min_free_disk, msg);

        doc = json_pack("{s:b,s:o}", "ready", ok, "checks", checks);
        /* Hosts sharing the endpoint: the others' daemons are listed, not judged
         * (each host's /readyz judges its own). */
        if (doc && snap.hosts)
                json_object_set_new(doc, "other_hosts", other_hosts(&snap, now));
        s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        if (buf && s)
                evbuffer_add_printf(buf, "%s\n", s);
        http_send(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "application/json", buf);
        free(s);
        json_decref(doc);
        if (buf)
                evbuffer_free(buf);
}

static void emit_histogram(struct evbuffer *b, const char *name, const char *help,
                           const uint64_t *buckets, const double *bounds, uint64_t count,
                           double sum)
{
        uint64_t cum = 0;

        evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
        for (size_t i = 0; i < KNOCK_HIST_BUCKETS; i++) {
                cum += buckets[i];
                evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
                                    (unsigned long long)cum);
        }
        evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                            (unsigned long long)count, name, sum, name, (unsigned long long)count);
}

/* knock_paused and knock_paused_since_seconds: the whole endpoint without a
 * route label (knock_paused always present, 0 or 1), each paused route with
 * one. Route names are the operator's; quotes and backslashes are escaped. */
static void emit_pauses(struct evbuffer *b, const admin_snapshot *snap)
{
        bool all = snap->n_paused > 0 && !snap->paused[0].route[0];

        evbuffer_add_printf(b, "# HELP knock_breaker_transitions_total Circuit breakers of "
                               "routes opened and closed since knock-worker started.\n"
                               "# TYPE knock_breaker_transitions_total counter\n"
                               "knock_breaker_transitions_total{to=\"open\"} %llu\n"
                               "knock_breaker_transitions_total{to=\"closed\"} %llu\n",
                            (unsigned long long)snap->breakers_opened,
                            (unsigned long long)snap->breakers_closed);
        evbuffer_add_printf(b, "# HELP knock_paused 1 while paused (knockctl pause): without a "
                               "route label the whole endpoint, with one that event type.\n"
                               "# TYPE knock_paused gauge\nknock_paused %d\n", all);
        for (int since = 0; since <= 1; since++) {
                if (since)
                        evbuffer_add_printf(b, "# HELP knock_paused_since_seconds When the "
                                               "pause in force began.\n"
                                               "# TYPE knock_paused_since_seconds gauge\n");
                for (size_t i = 0; i < snap->n_paused; i++) {
                        const admin_pause *p = &snap->paused[i];

                        if (!since && !p->route[0])
                                continue;
                        evbuffer_add_printf(b, since ? "knock_paused_since_seconds" : "knock_paused");
                        if (p->route[0]) {
                                evbuffer_add_printf(b, "{route=\"");
                                for (const char *c = p->route; *c; c++)
                                        evbuffer_add_printf(b, "%s%c",
                                                *c == '"' || *c == '\\' ? "\\" : "", *c);
                                evbuffer_add_printf(b, "\"}");
                        }
                        if (since)
                                evbuffer_add_printf(b, " %.3f\n", (double)p->since / 1000.0);
                        else
                                evbuffer_add_printf(b, " 1\n");
                }
        }
}

static void handle_metrics(admin *a, struct evhttp_request *req)
{
        admin_snapshot snap = admin_get_snapshot(a);
        struct evbuffer *b = evbuffer_new();
        ingest_stats st;
        int64_t now = now_ms();

        if (!b) {
                evhttp_send_error(req, 500, NULL);
                return;
        }
        st = admin_get_stats(a);

        evbuffer_add_printf(b, "# HELP knock_build_info Build information.\n"
                               "# TYPE knock_build_info gauge\n"
                               "knock_build_info{version=\"%s\"} 1\n", KNOCK_VERSION);

        evbuffer_add_printf(b, "# HELP knock_deliveries_total Requests received on the public "
                               "listener since start, by result.\n"
                               "# TYPE knock_deliveries_total counter\n");
        {
                const struct {
                        const char *result;
                        uint64_t v;
                } rows[] = {
                        {"stored", st.accepted},           {"duplicate", st.duplicates},
                        {"invalid_signature", st.invalid}, {"too_large", st.too_large},
                        {"handshake", st.handshakes},      {"storage_error", st.storage_errors},
                        {"rejected", st.rejected_other},
                };
                for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                        evbuffer_add_printf(b, "knock_deliveries_total{result=\"%s\"} %llu\n",
                                            rows[i].result, (unsigned long long)rows[i].v);
        }

        {
                const struct {
                        const char *name, *help;
                        uint64_t v;
                } rows[] = {
                        {"knock_ingress_connections_accepted_total",
                         "Connections accepted on the public listener since start.",
                         st.connections_accepted},
                        {"knock_ingress_connections_refused_total",
                         "Connections closed at accept: max_connections reached, or draining.",
                         st.connections_refused},
                        {"knock_ingress_request_timeouts_total",
                         "Requests cut off by header_timeout or body_timeout.", st.timeouts},
                        {"knock_ingress_bad_requests_total",
                         "Requests refused by the HTTP parser (400, 417, 431, 501, 505).",
                         st.bad_requests},
                        {"knock_ingress_overload_total",
                         "Requests answered 503 because max_buffered or the writer's queue was full.",
                         st.over_budget},
                        {"knock_ingress_orphans_dropped_total",
                         "Rejected deliveries answered but not stored: over orphan_rate.",
                         st.orphans_dropped},
                };
                for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                        evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
                                            rows[i].name, rows[i].help, rows[i].name, rows[i].name,
                                            (unsigned long long)rows[i].v);
        }

        evbuffer_add_printf(b, "# HELP knock_events Events in the database, by status.\n"
                               "# TYPE knock_events gauge\n");
        for (size_t i = 0; i < 6; i++)
                evbuffer_add_printf(b, "knock_events{status=\"%s\"} %lld\n", event_status_names[i],
                                    (long long)snap.events[i]);
        evbuffer_add_printf(b, "# HELP knock_oldest_queued_event_age_seconds Age of the oldest "
                               "received, processing or failed event (0 when none).\n"
                               "# TYPE knock_oldest_queued_event_age_seconds gauge\n"
                               "knock_oldest_queued_event_age_seconds %.3f\n",
                            snap.oldest_queued_at ? (double)(now - snap.oldest_queued_at) / 1000.0
                                                  : 0.0);

        emit_histogram(b, "knock_handler_duration_seconds",
                       "Duration of handler attempts finished since knock-worker started "
                       "(reported with its heartbeat, every 5 s).",
                       snap.handler_buckets, knock_duration_bounds, snap.handler_count,
                       snap.handler_sum_s);
        emit_histogram(b, "knock_commit_duration_seconds",
                       "Duration of ingress group-commit transactions since start.",
                       st.commit_hist, knock_duration_bounds, st.commits,
                       (double)st.batch_us_total / 1e6);
        emit_histogram(b, "knock_commit_batch_size", "Requests stored per ingress commit since start.",
                       st.batch_hist, admin_batch_bounds, st.commits,
                       (double)st.committed_items);
        evbuffer_add_printf(b, "# HELP knock_ingress_wal_frames_total WAL frames (database pages) "
                               "the WAL grew by at the ingress's commits since start, other "
                               "daemons' commits in between included (SQLite).\n"
                               "# TYPE knock_ingress_wal_frames_total counter\n"
                               "knock_ingress_wal_frames_total %" PRIu64 "\n"
                               "# HELP knock_ingress_wal_restarts_total Times the ingress's writer "
                               "copied the WAL's last frames back so that it starts over (SQLite).\n"
                               "# TYPE knock_ingress_wal_restarts_total counter\n"
                               "knock_ingress_wal_restarts_total %" PRIu64 "\n"
                               "# HELP knock_ingress_wal_restart_seconds_total Time the writer spent "
                               "on those copies, storing no batch meanwhile (SQLite).\n"
                               "# TYPE knock_ingress_wal_restart_seconds_total counter\n"
                               "knock_ingress_wal_restart_seconds_total %.6f\n",
                            st.wal_frames, st.wal_restarts, (double)st.wal_restart_us_total / 1e6);

        evbuffer_add_printf(b, "# HELP knock_hooks Completion hooks in the database, by state.\n"
                               "# TYPE knock_hooks gauge\n"
                               "knock_hooks{state=\"pending\"} %lld\n"
                               "knock_hooks{state=\"delivered\"} %lld\n"
                               "knock_hooks{state=\"failed\"} %lld\n",
                            (long long)snap.hooks_pending, (long long)snap.hooks_delivered,
                            (long long)snap.hooks_failed);
        evbuffer_add_printf(b, "# HELP knock_hook_attempts Recorded hook delivery attempts, by result.\n"
                               "# TYPE knock_hook_attempts gauge\n"
                               "knock_hook_attempts{result=\"success\"} %lld\n"
                               "knock_hook_attempts{result=\"http_error\"} %lld\n"
                               "knock_hook_attempts{result=\"network_error\"} %lld\n",
                            (long long)snap.hook_attempts_ok, (long long)snap.hook_attempts_http_error,
                            (long long)snap.hook_attempts_error);

        evbuffer_add_printf(b, "# HELP knock_suspected_oom_kills_total Runs of a daemon that "
                               "ended without a clean exit.\n"
                               "# TYPE knock_suspected_oom_kills_total counter\n");
        for (size_t i = 0; i < 3; i++)
                evbuffer_add_printf(b, "knock_suspected_oom_kills_total{daemon=\"%s\"} %lld\n",
                                    snap.daemons[i].name, (long long)snap.daemons[i].oom_kills);
        evbuffer_add_printf(b, "# HELP knock_daemon_heartbeat_age_seconds Seconds since a "
                               "daemon's last heartbeat (absent when it never ran).\n"
                               "# TYPE knock_daemon_heartbeat_age_seconds gauge\n");
        for (size_t i = 0; i < 3; i++)
                if (snap.daemons[i].present)
                        evbuffer_add_printf(b, "knock_daemon_heartbeat_age_seconds{daemon=\"%s\"} %.3f\n",
                                            snap.daemons[i].name,
                                            (double)(now - snap.daemons[i].heartbeat_at) / 1000.0);

        evbuffer_add_printf(b, "# HELP knock_database_bytes Size of the endpoint's database file.\n"
                               "# TYPE knock_database_bytes gauge\n"
                               "knock_database_bytes %lld\n"
                               "# HELP knock_wal_bytes Size of the database's write-ahead log.\n"
                               "# TYPE knock_wal_bytes gauge\n"
                               "knock_wal_bytes %lld\n"
                               "# HELP knock_disk_free_bytes Free bytes in the state directory.\n"
                               "# TYPE knock_disk_free_bytes gauge\n"
                               "knock_disk_free_bytes %llu\n",
                            (long long)snap.db_bytes, (long long)snap.wal_bytes,
                            (unsigned long long)snap.disk_free_bytes);
        evbuffer_add_printf(b, "# HELP knock_last_backup_timestamp_seconds Time of the last "
                               "successful backup (0 when never).\n"
                               "# TYPE knock_last_backup_timestamp_seconds gauge\n"
                               "knock_last_backup_timestamp_seconds %.3f\n",
                            (double)snap.last_backup_at / 1000.0);
        emit_pauses(b, &snap);
        http_send(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
        evbuffer_free(b);
}

void admin_handle(struct evhttp_request *req, void *userdata)
{
        admin *a = userdata;
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
        bool probe = path && (streq(path, "/healthz") || streq(path, "/readyz") ||
                              streq(path, "/metrics"));
        struct evbuffer *b;

        /* Everything else is the console's, when this listener serves it. */
        if (!probe && path && a->console && console_handle(a->console, req, path))
                return;
        if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
                evhttp_send_error(req, 405, NULL);
                return;
        }
        if (path && streq(path, "/healthz")) {
                b = evbuffer_new();
                if (b)
                        evbuffer_add(b, "ok\n", 3);
                http_send(req, 200, "OK", "text/plain", b);
                if (b)
                        evbuffer_free(b);
        } else if (path && streq(path, "/readyz"))
                handle_readyz(a, req);
        else if (path && streq(path, "/metrics"))
                handle_metrics(a, req);
        else
                evhttp_send_error(req, 404, NULL);
}
