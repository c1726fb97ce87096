/* SPDX-License-Identifier: MIT */
/*
 * ops — the operator's transitions (contract §7) and `migrate`.
 *
 *   requeue ID…           failed|dead|ignored → received
 *   replay ID…            handled → received (the canonical body)
 *   replay-delivery DLV   the delivery's event → received, running that
 *                         delivery's body (not while it is processing)
 *   ignore ID…            received|failed|dead → ignored (ignored: no-op)
 *
 * Promises:
 *  - one command is one transaction (BEGIN IMMEDIATE): the source states are
 *    checked under the write lock, so a worker cannot claim an event between
 *    the check and the change;
 *  - all or nothing: when any id is unknown or in a state the verb does not
 *    accept, nothing changes, every problem is printed and the exit status
 *    is 1; the operator fixes the list and runs it again;
 *  - every command that changes something, or was asked to and found nothing
 *    to do (ignore of an ignored event), writes one audit row in the same
 *    transaction: actor "user(uid)", the verb, the ids, the counts;
 *  - runnable again means a new series: attempt_count 0, next attempt now, no
 *    claim; after the commit the worker is woken (a datagram to its wake
 *    socket; if it is not running it will find the events when it starts).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "knockctl.h"

int ctl_audit(knockctl *c, const char *action, json_t *filters, json_t *counts, json_t *ids)
{
        _cleanup_free_ char *f = NULL, *n = NULL, *i = NULL;
        char actor[128];

        ctl_actor(actor, sizeof(actor));
        if (filters && !(f = json_dumps(filters, JSON_COMPACT)))
                return -ENOMEM;
        if (counts && !(n = json_dumps(counts, JSON_COMPACT)))
                return -ENOMEM;
        if (ids && !(i = json_dumps(ids, JSON_COMPACT)))
                return -ENOMEM;
        return store_audit(c->store, actor, action, f, n, i);
}

int ctl_apply(knockctl *c, const char *action, sqlite3_stmt *upd, json_t *changed,
        json_t *unchanged, json_t *filters, json_t *ids)
{
        json_t *counts, *v;
        size_t i;
        int r;

        json_array_foreach(changed, i, v)
        {
                sqlite3_reset(upd);
                ctl_bind_text(upd, ":id", json_string_value(v));
                ctl_bind_common(c, upd);
                r = store_errno(sqlite3_step(upd));
                if (r < 0)
                        return r;
        }
        counts = json_pack("{s:I, s:I}", "changed", (json_int_t)json_array_size(changed),
                "unchanged", (json_int_t)json_array_size(unchanged));
        r = counts ? ctl_audit(c, action, filters, counts, ids) : -ENOMEM;
        json_decref(counts);
        return r;
}

int ctl_begin(knockctl *c)
{
        int r = store_begin(c->store);

        if (r == -EBUSY)
                ctl_error("the database is busy (another writer holds the lock); try again");
        else if (r < 0)
                ctl_error("cannot start a transaction: %s", store_errmsg(c->store));
        return r < 0 ? KNOCKCTL_FAILED : 0;
}

int ctl_commit(knockctl *c)
{
        int r = store_commit(c->store);

        if (r < 0) {
                ctl_error("commit failed, nothing was changed: %s", strerror(-r));
                return KNOCKCTL_FAILED;
        }
        return 0;
}

/* Appends id unless it is there already. */
static int ids_add(json_t *ids, const char *id, size_t len)
{
        size_t k;
        json_t *v;

        json_array_foreach(ids, k, v) if (json_string_length(v) == len &&
                                          memcmp(json_string_value(v), id, len) == 0) return 0;
        return json_array_append_new(ids, json_text(id, len)) < 0 ? -ENOMEM : 0;
}

/* Reads ids from the arguments; "-" reads whitespace-separated ids from stdin
 * (of any length: a provider's id may be long). Duplicates are dropped (the
 * second would see the state the first set). */
int ctl_collect_ids(int argc, char **argv, json_t **ret)
{
        json_t *ids = json_array();
        int r = 0;

        if (!ids)
                return -ENOMEM;
        for (int i = 0; i < argc && r == 0; i++) {
                _cleanup_free_ char *line = NULL;
                size_t cap = 0;
                ssize_t n;

                if (!streq(argv[i], "-")) {
                        r = ids_add(ids, argv[i], strlen(argv[i]));
                        continue;
                }
                while (r == 0 && (n = getline(&line, &cap, stdin)) > 0) {
                        char *save = NULL;

                        for (char *t = strtok_r(line, " \t\r\n\v\f", &save); t && r == 0;
                                t = strtok_r(NULL, " \t\r\n\v\f", &save))
                                r = ids_add(ids, t, strlen(t));
                }
        }
        if (r < 0) {
                json_decref(ids);
                return r;
        }
        *ret = ids;
        return 0;
}

/* Prints the result of a transition: "requeued 2 events: …" or the JSON object. */
int ctl_print_result(knockctl *c, const char *action, const char *past, const char *noun,
        json_t *changed, json_t *unchanged, json_t *extra)
{
        json_t *doc;
        size_t i;
        json_t *v;
        int r = 0;

        if (c->json) {
                doc = json_pack("{s:s, s:s, s:O, s:O, s:{s:I, s:I}}", "action", action, "endpoint",
                        c->endpoint, "changed", changed, "unchanged", unchanged, "counts",
                        "changed", (json_int_t)json_array_size(changed), "unchanged",
                        (json_int_t)json_array_size(unchanged));
                if (doc && extra)
                        json_object_update(doc, extra);
                r = print_json(doc);
                json_decref(doc);
                return r;
        }
        printf("%s %zu %s%s", past, json_array_size(changed), noun,
                json_array_size(changed) == 1 ? "" : "s");
        json_array_foreach(changed, i, v)
        {
                _cleanup_free_ char *e = ctl_escape(json_string_value(v), 0);

                printf("%s%s", i == 0 ? ": " : " ", e ? e : "?");
        }
        putchar('\n');
        if (json_array_size(unchanged) > 0) {
                printf("unchanged (already in the target state):");
                json_array_foreach(unchanged, i, v)
                {
                        _cleanup_free_ char *e = ctl_escape(json_string_value(v), 0);

                        printf(" %s", e ? e : "?");
                }
                putchar('\n');
        }
        return 0;
}

typedef struct transition {
        const char *verb;
        const char *past;
        const char *const *from; /* accepted source states, NULL-terminated */
        const char *noop;        /* already the target: counted, unchanged */
        const char *update;      /* binds :id, :now */
        bool wake_worker;
} transition;

#define SET_RUNNABLE                                                                               \
        "status = 'received', status_reason = NULL, attempt_count = 0,"                            \
        " next_attempt_at = :now, updated_at = :now, claimed_by = NULL, claim_until = NULL,"       \
        " finished_at = NULL"

static const transition t_requeue = {
        .verb = "requeue",
        .past = "requeued",
        .from = (const char *const[]){"failed", "dead", "ignored", NULL},
        .update = "UPDATE events SET " SET_RUNNABLE ", run_delivery_id = NULL WHERE id = :id",
        .wake_worker = true,
};

static const transition t_replay = {
        .verb = "replay",
        .past = "replayed",
        .from = (const char *const[]){"handled", NULL},
        .update = "UPDATE events SET " SET_RUNNABLE ", run_delivery_id = NULL WHERE id = :id",
        .wake_worker = true,
};

static const transition t_ignore = {
        .verb = "ignore",
        .past = "ignored",
        .from = (const char *const[]){"received", "failed", "dead", NULL},
        .noop = "ignored",
        .update = "UPDATE events SET status = 'ignored', status_reason = 'operator',"
                  " next_attempt_at = NULL, updated_at = :now, finished_at = :now,"
                  " claimed_by = NULL, claim_until = NULL WHERE id = :id",
};

static bool strv_contains(const char *const *v, const char *s)
{
        for (; *v; v++)
                if (streq(*v, s))
                        return true;
        return false;
}

/* What to tell the operator when `status` is not accepted by `verb`. */
static const char *reject_hint(const char *verb, const char *status)
{
        if (streq(status, "processing"))
                return "a handler is running it now; wait for the attempt to end";
        if (streq(verb, "requeue") && streq(status, "handled"))
                return "use 'knockctl replay' to run a handled event again";
        if (streq(verb, "requeue") && streq(status, "received"))
                return "it is already queued";
        if (streq(verb, "replay"))
                return streq(status, "received")
                               ? "it is already queued"
                               : "use 'knockctl requeue' for failed, dead or ignored events";
        if (streq(verb, "ignore") && streq(status, "handled"))
                return "it has already run successfully";
        return NULL;
}

static void reject(const char *verb, const char *id, const char *status, const char *const *from,
        const char *claimed_by)
{
        const char *hint = reject_hint(verb, status);
        char accepted[128] = "";

        for (size_t i = 0; from[i]; i++) {
                size_t len = strlen(accepted);

                snprintf(accepted + len, sizeof(accepted) - len, "%s%s",
                        i == 0        ? ""
                        : from[i + 1] ? ", "
                                      : " or ",
                        from[i]);
        }
        fprintf(stderr, "knockctl: %s: event is %s%s%s%s; %s accepts %s events%s%s\n", id, status,
                claimed_by ? " (claimed by " : "", claimed_by ? claimed_by : "",
                claimed_by ? ")" : "", verb, accepted, hint ? ": " : "", hint ? hint : "");
}

static int run_transition(knockctl *c, const transition *t, int argc, char **argv)
{
        _cleanup_stmt_ sqlite3_stmt *sel = NULL, *upd = NULL;
        json_t *ids = NULL, *resolved = NULL, *changed = NULL, *unchanged = NULL, *v;
        size_t i, problems = 0;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (optind >= argc) {
                ctl_error("usage: knockctl %s ID… (event ids or provider event ids; '-' reads them "
                          "from stdin)",
                        t->verb);
                return KNOCKCTL_USAGE;
        }
        r = ctl_collect_ids(argc - optind, argv + optind, &ids);
        if (r < 0)
                return r;
        if (json_array_size(ids) == 0) {
                json_decref(ids);
                ctl_error("%s: no event ids given", t->verb);
                return KNOCKCTL_USAGE;
        }
        r = ctl_open_store(c, true);
        if (r != 0)
                goto out;
        r = store_prepare(c->store, "SELECT status, claimed_by FROM events WHERE id = ?", &sel);
        if (r >= 0)
                r = store_prepare(c->store, t->update, &upd);
        if (r < 0)
                goto out;
        r = ctl_begin(c);
        if (r != 0)
                goto out;

        changed = json_array();
        unchanged = json_array();
        if (!changed || !unchanged) {
                r = -ENOMEM;
                goto rollback;
        }
        /* Resolve and check every operand under the write lock before changing
         * any. Two operands naming one event (its id and its provider id)
         * count once. */
        resolved = json_array();
        if (!resolved) {
                r = -ENOMEM;
                goto rollback;
        }
        json_array_foreach(ids, i, v)
        {
                _cleanup_free_ char *id = NULL, *eid = NULL;
                const char *status;
                size_t k;
                json_t *w;
                bool dup = false;
                int rc;

                r = ctl_resolve_event(c, json_string_value(v), &id);
                if (r < 0)
                        goto rollback;
                if (r > 0) {
                        problems++;
                        continue;
                }
                json_array_foreach(resolved, k, w) dup = dup || streq(json_string_value(w), id);
                if (dup)
                        continue;
                if (json_array_append_new(resolved, json_string(id)) < 0) {
                        r = -ENOMEM;
                        goto rollback;
                }
                sqlite3_reset(sel);
                stmt_bind_text(sel, 1, id);
                rc = sqlite3_step(sel);
                if (rc != SQLITE_ROW) {
                        r = rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
                        goto rollback;
                }
                status = (const char *)sqlite3_column_text(sel, 0);
                w = json_array_get(resolved, json_array_size(resolved) - 1);
                if (t->noop && streq(status, t->noop))
                        json_array_append(unchanged, w);
                else if (strv_contains(t->from, status))
                        json_array_append(changed, w);
                else {
                        eid = ctl_escape(id, 0);
                        reject(t->verb, eid ? eid : "?", status, t->from,
                                (const char *)sqlite3_column_text(sel, 1));
                        problems++;
                }
        }
        if (problems > 0) {
                ctl_error("%s: nothing was changed (%zu of %zu ids refused)", t->verb, problems,
                        json_array_size(ids));
                r = KNOCKCTL_FAILED;
                goto rollback;
        }

        r = ctl_apply(c, t->verb, upd, changed, unchanged, NULL, resolved);
        if (r < 0)
                goto rollback;
        r = ctl_commit(c);
        if (r != 0)
                goto out;

        /* After the commit, never before: a woken worker must see the rows. */
        if (t->wake_worker && json_array_size(changed) > 0)
                daemon_wake_peer(c->endpoint, "worker");
        r = ctl_print_result(c, t->verb, t->past, "event", changed, unchanged, NULL);
        goto out;

rollback:
        store_rollback(c->store);
        if (r < 0) {
                ctl_error("%s failed, nothing was changed: %s", t->verb, strerror(-r));
                r = KNOCKCTL_FAILED;
        }
out:
        json_decref(ids);
        json_decref(resolved);
        json_decref(changed);
        json_decref(unchanged);
        return r;
}

static int verb_requeue(knockctl *c, int argc, char **argv)
{
        return run_transition(c, &t_requeue, argc, argv);
}

static int verb_replay(knockctl *c, int argc, char **argv)
{
        return run_transition(c, &t_replay, argc, argv);
}

static int verb_ignore(knockctl *c, int argc, char **argv)
{
        return run_transition(c, &t_ignore, argc, argv);
}

KNOCKCTL_VERB(requeue, .name = "requeue", .synopsis = "ID...",
        .help = "failed|dead|ignored → received, attempts reset (canonical body)",
        .section = SECTION_OPERATE, .run = verb_requeue);
KNOCKCTL_VERB(replay, .name = "replay", .synopsis = "ID...",
        .help = "handled → received: run a handled event again, attempts reset",
        .section = SECTION_OPERATE, .run = verb_replay);
KNOCKCTL_VERB(ignore, .name = "ignore", .synopsis = "ID...",
        .help = "received|failed|dead → ignored: never run it", .section = SECTION_OPERATE,
        .run = verb_ignore);

/*
 * replay-delivery: run one specific stored delivery's body (a provider retry
 * whose body differed, say) instead of the event's canonical one. The event
 * keeps the choice in run_delivery_id until the next requeue/replay.
 */
static int verb_replay_delivery(knockctl *c, int argc, char **argv)
{
        _cleanup_stmt_ sqlite3_stmt *sel = NULL, *upd = NULL;
        _cleanup_free_ char *event_id = NULL;
        const char *dlv, *status;
        json_t *changed = NULL, *unchanged = NULL, *filters = NULL, *counts = NULL, *extra = NULL;
        int o, r, rc;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (argc - optind != 1) {
                ctl_error("usage: knockctl replay-delivery DELIVERY_ID");
                return KNOCKCTL_USAGE;
        }
        dlv = argv[optind];
        r = ctl_open_store(c, true);
        if (r != 0)
                return r;
        r = store_prepare(c->store,
                "SELECT d.event_id, e.status, e.claimed_by, d.body IS NULL, d.verify_error,"
                "       d.signature_valid"
                " FROM deliveries d LEFT JOIN events e ON e.id = d.event_id WHERE d.id = ?",
                &sel);
        if (r >= 0)
                r = store_prepare(c->store,
                        "UPDATE events SET " SET_RUNNABLE ", run_delivery_id = :delivery"
                        " WHERE id = :id",
                        &upd);
        if (r < 0)
                return r;
        r = ctl_begin(c);
        if (r != 0)
                return r;

        stmt_bind_text(sel, 1, dlv);
        rc = sqlite3_step(sel);
        if (rc == SQLITE_DONE) {
                ctl_error("%s: no such delivery in endpoint %s", dlv, c->endpoint);
                r = KNOCKCTL_FAILED;
                goto rollback;
        }
        if (rc != SQLITE_ROW) {
                r = store_errno(rc);
                goto rollback;
        }
        if (sqlite3_column_type(sel, 0) == SQLITE_NULL) {
                const char *why = (const char *)sqlite3_column_text(sel, 4);

                ctl_error("%s: an orphan delivery (%s%s%s) is linked to no event and cannot be "
                          "replayed",
                        dlv,
                        sqlite3_column_int(sel, 5) ? "stored without an event"
                                                   : "signature invalid",
                        why ? ": " : "", why ? why : "");
                r = KNOCKCTL_FAILED;
                goto rollback;
        }
        event_id = stmt_strdup(sel, 0);
        status = (const char *)sqlite3_column_text(sel, 1);
        if (!event_id || !status) {
                r = -ENOMEM;
                goto rollback;
        }
        if (streq(status, "processing")) {
                const char *by = (const char *)sqlite3_column_text(sel, 2);

                ctl_error("%s: its event %s is processing%s%s%s; replay-delivery accepts an "
                          "event in any other state: wait for the attempt to end",
                        dlv, event_id, by ? " (claimed by " : "", by ? by : "", by ? ")" : "");
                r = KNOCKCTL_FAILED;
                goto rollback;
        }
        if (sqlite3_column_int(sel, 3)) {
                ctl_error("%s: the delivery has no stored body; nothing to replay", dlv);
                r = KNOCKCTL_FAILED;
                goto rollback;
        }

        stmt_bind_text(upd, sqlite3_bind_parameter_index(upd, ":id"), event_id);
        stmt_bind_text(upd, sqlite3_bind_parameter_index(upd, ":delivery"), dlv);
        ctl_bind_common(c, upd);
        r = store_errno(sqlite3_step(upd));
        if (r < 0)
                goto rollback;
        changed = json_pack("[s]", event_id);
        unchanged = json_array();
        filters = json_pack("{s:s, s:s}", "delivery_id", dlv, "previous_status", status);
        counts = json_pack("{s:i, s:i}", "changed", 1, "unchanged", 0);
        extra = json_pack("{s:s}", "delivery_id", dlv);
        if (!changed || !unchanged || !filters || !counts || !extra) {
                r = -ENOMEM;
                goto rollback;
        }
        r = ctl_audit(c, "replay-delivery", filters, counts, changed);
        if (r < 0)
                goto rollback;
        r = ctl_commit(c);
        if (r != 0)
                goto out;
        daemon_wake_peer(c->endpoint, "worker");
        if (c->json)
                r = ctl_print_result(
                        c, "replay-delivery", "replayed", "event", changed, unchanged, extra);
        else
                printf("event %s will run the body of delivery %s (attempts reset)\n", event_id,
                        dlv);
        goto out;

rollback:
        store_rollback(c->store);
        if (r < 0) {
                ctl_error("replay-delivery failed, nothing was changed: %s", strerror(-r));
                r = KNOCKCTL_FAILED;
        }
out:
        json_decref(changed);
        json_decref(unchanged);
        json_decref(filters);
        json_decref(counts);
        json_decref(extra);
        return r;
}

KNOCKCTL_VERB(replay_delivery, .name = "replay-delivery", .synopsis = "DELIVERY_ID",
        .help = "Run one stored delivery's body for its event, attempts reset",
        .section = SECTION_OPERATE, .run = verb_replay_delivery);

/* Schema version of path without migrating it (0 when empty or unreadable). */
static int peek_version(const char *path)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int v = 0;

        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
                sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_migrations",
                        -1, &st, NULL) == SQLITE_OK &&
                sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close_v2(db);
        return v;
}

/*
 * migrate: create the database or bring its schema up to this build's
 * version. Daemons do the same on start; this lets an operator do it
 * before starting them (after an upgrade, or to inspect an empty endpoint).
 */
static int verb_migrate(knockctl *c, int argc, char **argv)
{
        _cleanup_free_ char *path = NULL;
        struct stat stb, dir;
        bool existed;
        int o, r, before = 0, after = 0;
        json_t *counts;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (optind < argc) {
                ctl_error("migrate takes no arguments");
                return KNOCKCTL_USAGE;
        }
        path = config_db_path(c->endpoint);
        if (!path)
                return -ENOMEM;
        existed = stat(path, &stb) == 0;
        if (existed)
                before = peek_version(path);
        else if (mkdir(knock_state_dir(), 0755) < 0 && errno != EEXIST) {
                ctl_error("cannot create %s: %s", knock_state_dir(), strerror(errno));
                return KNOCKCTL_FAILED;
        }
        r = store_open(path, STORE_CREATE, &c->store);
        if (r == -EPROTO) {
                ctl_error("%s: the database is newer than this knockctl (schema version %d)", path,
                        STORE_SCHEMA_VERSION);
                return KNOCKCTL_FAILED;
        }
        if (r < 0) {
                ctl_error("%s: cannot create or migrate the database: %s", path, strerror(-r));
                return KNOCKCTL_FAILED;
        }
        /* Created by root: hand the file to the owner of the state directory
         * (the knock user), or the daemons could not write it. SQLite gives
         * its -wal and -shm files the database file's owner. */
        if (!existed && geteuid() == 0 && stat(knock_state_dir(), &dir) == 0 &&
                chown(path, dir.st_uid, dir.st_gid) < 0)
                ctl_error("warning: cannot chown %s: %s", path, strerror(errno));

        r = store_schema_version(c->store, &after);
        if (r < 0)
                return r;
        counts = json_pack("{s:i, s:i, s:b}", "from", before, "to", after, "created", !existed);
        r = counts ? ctl_audit(c, "migrate", NULL, counts, NULL) : -ENOMEM;
        if (r < 0) {
                json_decref(counts);
                ctl_error("cannot write the audit row: %s", strerror(-r));
                return KNOCKCTL_FAILED;
        }
        if (c->json) {
                json_t *doc = json_pack("{s:s, s:s, s:O}", "endpoint", c->endpoint, "database",
                        path, "schema", counts);
                r = print_json(doc);
                json_decref(doc);
        } else if (before == after)
                printf("%s: schema version %d is current (%s)\n", c->endpoint, after, path);
        else
                printf("%s: schema version %d → %d (%s%s)\n", c->endpoint, before, after,
                        existed ? "" : "created ", path);
        json_decref(counts);
        return r;
}

KNOCKCTL_VERB(migrate, .name = "migrate", .synopsis = "",
        .help = "Create the database or upgrade its schema", .section = SECTION_MAINTENANCE,
        .run = verb_migrate);
